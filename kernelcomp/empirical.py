"""Empirical (frozen) tangent kernels of finite networks: ``EmpiricalNTK``, ``EmpiricalNNGP``.

For an :class:`~kernelcomp.network.FCNetwork` with layers
``z_l = c_l W_l a_l + s_l b_l`` (see :mod:`kernelcomp.network`), the tangent kernel over the
parameters of a set of layers is exactly

.. code-block:: text

    Theta(x, y) = sum_l  <delta_l(x), delta_l(y)> * (c_l^2 a_l(x).a_l(y) + s_l^2 [bias])

with ``delta_l = df/dz_l`` (``delta_L = 1`` at the readout). Each term is the
Hadamard product of two Gram matrices of n x n_l blocks, so the n x P Jacobian
is never built: per layer, one BLAS product of the back-propagated vectors and
one of the (scaled, bias-augmented) activations ``[c_l a_l, s_l]``. For a
one-hidden-layer network this is the two-GEMM closed form
``Theta = Phi Phi^T + (Psi Psi^T) o (c_1^2 X X^T + s_1^2)``.

For K outputs the default is the mean of the K per-output kernels (the trace
over outputs divided by K, neural-tangents' default); ``output=k`` selects one.
The back-propagated vectors of all outputs share the activation derivatives, so
the last hidden layer's term costs one GEMM whatever K is.

Pre-activations are always computed in float64, also when float32 is asked:
a ReLU derivative would otherwise flip for pre-activations that round across
zero, which would cost several orders of magnitude of accuracy. The O(n^2)
products then run in the requested dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._base import FrozenKernel
from kernelcomp._hadamard import _hadamard_gram
from kernelcomp._kernels import empirical as _core
from kernelcomp._linalg import (
    matmul,
)
from kernelcomp._validation import check_choice
from kernelcomp.network import FCNetwork

__all__ = ["EmpiricalNNGP", "EmpiricalNTK"]

#: named parameter selections (layer sets)
PARAM_SELECTIONS = ("all", "last", "headless")
#: float64 pre-activations computed at once in the per-sample pass (elements)
_PREACT_ELEMENTS = 4 * 2**20


@contextmanager
def _blas_threads() -> Iterator[None]:
    """Limit BLAS threads to numba's current thread count (set by ``n_jobs``)."""
    import numba

    n = numba.get_num_threads()
    if n >= int(numba.config.NUMBA_NUM_THREADS):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


# ---------------------------------------------------------------------------
# prepared per-sample state
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prepared:
    """Per-sample factors of the kernel for ``n`` rows.

    ``terms[t] = (delta, feat)``: the kernel is
    ``sum_t (delta delta^T) o (feat feat^T)``, ``delta=None`` meaning 1.
    """

    n: int
    terms: tuple[tuple[np.ndarray | None, np.ndarray], ...]


def _rows(A: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if A is None else A[start:stop]


class _EmpiricalKernel(FrozenKernel):
    """Shared machinery of :class:`EmpiricalNTK` and :class:`EmpiricalNNGP`."""

    def __init__(self, net: FCNetwork, layers: tuple[int, ...], output: int | None) -> None:
        if not isinstance(net, FCNetwork):
            raise TypeError(
                f"net must be a kc.FCNetwork, got {type(net).__name__} (import PyTorch models "
                "with kc.FCNetwork.from_torch)"
            )
        frozen = net.copy()
        for arr in [*frozen.weights, *(b for b in frozen.biases if b is not None)]:
            arr.flags.writeable = False
        self._net = frozen
        self._layers = layers
        self._output = output
        self.n_features_in = frozen.input_dim
        self._fingerprint = frozen.fingerprint()  # set last: the object is frozen from here

    # -- immutability, equality, copies ----------------------------------------
    @property
    def net(self) -> FCNetwork:
        """The kernel's frozen copy of the network (read-only arrays)."""
        return self._net

    @property
    def layers(self) -> tuple[int, ...]:
        """Indices of the layers whose parameters (weights and bias) enter the kernel."""
        return self._layers

    @property
    def output(self) -> int | None:
        """The output whose kernel is computed (None: mean over outputs)."""
        return self._output

    @property
    def fingerprint(self) -> str:
        """The network's SHA-256 fingerprint (see :meth:`FCNetwork.fingerprint`)."""
        return self._fingerprint

    def _key(self) -> tuple[Any, ...]:
        return (type(self).__name__, self._layers, self._output, self._fingerprint)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._net, self._layers, self._output))

    # -- description ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON description (the weights themselves are summarised by a fingerprint).

        Returns
        -------
        dict
            ``{"kernel": name, "params": {"layers": [...], "output": k or None,
            "network": {...}}}``; rebuild with :meth:`from_dict` and the network.
        """
        net = self._net
        return {
            "kernel": type(self).__name__,
            "params": {
                "layers": list(self._layers),
                "output": self._output,
                "network": {
                    "fingerprint": self._fingerprint,
                    "input_dim": net.input_dim,
                    "widths": list(net.widths),
                    "n_outputs": net.n_outputs,
                    "activation": net.activation,
                    "parameterization": net.parameterization,
                    "weight_mult": list(net.weight_mult),
                    "bias_mult": list(net.bias_mult),
                    "has_bias": list(net.has_bias),
                },
            },
        }

    @staticmethod
    def from_dict(desc: dict[str, Any], net: FCNetwork) -> _EmpiricalKernel:
        """Rebuild a kernel from :meth:`to_dict`'s output and its network.

        Raises
        ------
        ValueError
            If the description is not an empirical kernel's, or ``net`` is not
            the network it was computed with (fingerprints differ).
        """
        classes = {"EmpiricalNTK": EmpiricalNTK, "EmpiricalNNGP": EmpiricalNNGP}
        name = desc.get("kernel")
        if name not in classes:
            raise ValueError(
                f"unknown kernel {name!r} in description; expected EmpiricalNTK or EmpiricalNNGP"
            )
        params = desc.get("params", {})
        if name == "EmpiricalNTK":
            k: _EmpiricalKernel = EmpiricalNTK(
                net, params=list(params.get("layers", "all")), output=params.get("output")
            )
        else:
            k = EmpiricalNNGP(net)
        want = params.get("network", {}).get("fingerprint")
        if want is not None and want != k.fingerprint:
            raise ValueError(
                "net is not the network this kernel was described with (fingerprint "
                f"{k.fingerprint[:12]}..., expected {str(want)[:12]}...)"
            )
        return k

    # -- hooks ------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> _Prepared:
        with _blas_threads():
            return self._prepare_impl(X)

    def _prepare_impl(self, X: np.ndarray) -> _Prepared:
        net = self._net
        dt = X.dtype
        n = X.shape[0]
        L = net.depth
        K = net.n_outputs
        layers = set(self._layers)
        lowest = min(self._layers)
        act = _core.CODES[net.activation]
        empty = np.empty((0, 0), dtype=dt)
        cL = net.weight_mult[L]
        WL = net.weights[L]
        # the last hidden layer's derivative scale: with it, phi'(z) * scale is
        # already that layer's back-propagated vector (or, for the mean over K
        # outputs, a vector with the same Gram: the derivatives are shared)
        if self._output is not None:
            last_scale = cL * WL[self._output]
        elif K == 1:
            last_scale = cL * WL[0]
        else:
            last_scale = cL * np.sqrt(np.mean(WL**2, axis=0))
        last_is_delta = self._output is not None or K == 1

        def features(width: int, l: int) -> np.ndarray:
            use_bias = net.biases[l] is not None and net.bias_mult[l] != 0.0
            f = np.empty((n, width + int(use_bias)), dtype=dt)
            if use_bias:
                f[:, -1] = net.bias_mult[l]
            return f

        feats: dict[int, np.ndarray] = {}
        dact: dict[int, np.ndarray] = {}
        a = X.astype(np.float64, copy=False)  # forward pass in float64 (signs of z)
        if 0 in layers:
            feats[0] = features(a.shape[1], 0)
            np.multiply(a, net.weight_mult[0], out=feats[0][:, : a.shape[1]], casting="same_kind")
        for l in range(L):
            W, b = net.weights[l], net.biases[l]
            h = W.shape[0]
            sb = np.zeros(h) if b is None else net.bias_mult[l] * b
            a_out = np.empty((n, h)) if l + 1 < L else np.empty((0, 0))
            f_out = features(h, l + 1) if l + 1 in layers else empty
            if l >= lowest:
                d_out = np.empty((n, h), dtype=dt)
                d_scale = last_scale if (l == L - 1 and last_is_delta) else np.ones(h)
            else:
                d_out, d_scale = empty, np.ones(0)
            d_scale = np.ascontiguousarray(d_scale, dtype=np.float64)
            fused = (
                _core.post_activation
                if n * h >= _core.PARALLEL_MIN_SIZE
                else _core.post_activation_serial
            )
            # pre-activations in row chunks: only a bounded float64 block lives at once
            rows = max(1, _PREACT_ELEMENTS // h)
            for r0 in range(0, n, rows):
                r1 = min(n, r0 + rows)
                P = a[r0:r1] @ W.T  # BLAS, float64
                fused(
                    P, float(net.weight_mult[l]), sb, act, a_out[r0:r1], f_out[r0:r1],
                    float(net.weight_mult[l + 1]), d_out[r0:r1], d_scale,
                )  # fmt: skip
                del P
            if f_out.shape[0]:
                feats[l + 1] = f_out
            if d_out.shape[0]:
                dact[l] = d_out
            a = a_out
        return _Prepared(n, self._backward(feats, dact, last_scale, last_is_delta, n, dt))

    def _backward(self, feats: dict[int, np.ndarray], dact: dict[int, np.ndarray],
                  last_scale: np.ndarray, last_is_delta: bool, n: int,
                  dt: np.dtype) -> tuple[tuple[np.ndarray | None, np.ndarray], ...]:
        """The (back-propagated vectors, features) term of each selected layer, top down.

        ``dact`` (the activation derivatives of the forward pass) is consumed.
        """
        net = self._net
        L, K = net.depth, net.n_outputs
        layers = set(self._layers)
        lowest = min(self._layers)
        cL, WL = net.weight_mult[L], net.weights[L]
        terms: list[tuple[np.ndarray | None, np.ndarray]] = []
        if L in layers:
            terms.append((None, feats[L]))
        delta: np.ndarray | None = None  # (n, Kc, n_l) back-propagated vectors
        for l in range(L - 1, lowest - 1, -1):
            D = dact.pop(l)
            if l == L - 1:
                if last_is_delta:
                    delta = D[:, None, :]
                    if l in layers:
                        terms.append((D, feats[l]))
                else:
                    if l in layers:
                        terms.append((D * last_scale.astype(dt), feats[l]))
                    if l > lowest:
                        delta = (cL / math.sqrt(K)) * D[:, None, :] * WL.astype(dt)[None, :, :]
            else:
                assert delta is not None
                Kc, width = delta.shape[1], delta.shape[2]
                W = net.weights[l + 1].astype(dt)
                nxt = matmul(delta.reshape(n * Kc, width), W).reshape(n, Kc, W.shape[1])
                nxt *= net.weight_mult[l + 1]
                nxt *= D[:, None, :]
                delta = nxt
                if l in layers:
                    terms.append((delta.reshape(n, -1), feats[l]))
            del D
        return tuple(terms)

    def _take(self, prep: _Prepared, start: int, stop: int) -> _Prepared:
        return _Prepared(
            stop - start, tuple((_rows(d, start, stop), f[start:stop]) for d, f in prep.terms)
        )

    def _fill(self, px: _Prepared, py: _Prepared, out: np.ndarray, symmetric: bool) -> None:
        with _blas_threads():
            self._fill_impl(px, py, out, symmetric)

    def _fill_impl(self, px: _Prepared, py: _Prepared, out: np.ndarray, symmetric: bool) -> None:
        _hadamard_gram(px.terms, py.terms, out, symmetric)

    def _diag(self, px: _Prepared) -> np.ndarray:
        dt = px.terms[0][1].dtype
        acc = np.zeros(px.n, dtype=np.float64)
        for d, f in px.terms:
            ff = np.einsum("ij,ij->i", f, f, dtype=np.float64)
            if d is not None:
                ff *= np.einsum("ij,ij->i", d, d, dtype=np.float64)
            acc += ff
        return acc.astype(dt, copy=False)

    def __repr__(self) -> str:
        net = self._net
        return (
            f"{type(self).__name__}(net=<FCNetwork d={net.input_dim} widths={list(net.widths)} "
            f"K={net.n_outputs} {net.activation} {net.parameterization} "
            f"#{self._fingerprint[:8]}>, layers={list(self._layers)}, output={self._output})"
        )


def _rebuild(
    cls: type, net: FCNetwork, layers: tuple[int, ...], output: int | None
) -> _EmpiricalKernel:
    if cls is EmpiricalNNGP:
        return EmpiricalNNGP(net)
    return cls(net, params=list(layers), output=output)


def _is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` or a ``torch.export`` program.

    Without importing torch (by its class's MRO).
    """
    return any(
        (c.__name__ == "Module" and c.__module__ == "torch.nn.modules.module")
        or (c.__name__ == "ExportedProgram" and c.__module__.startswith("torch.export"))
        for c in type(obj).__mro__
    )


def _resolve_layers(params: Any, n_layers: int) -> tuple[int, ...]:
    L = n_layers - 1
    if isinstance(params, str):
        if params == "all":
            return tuple(range(n_layers))
        if params == "last":
            return (L,)
        if params == "headless":
            if n_layers == 1:
                raise ValueError(
                    "params='headless' (all layers but the first) is empty for a network "
                    "without hidden layers"
                )
            return tuple(range(1, n_layers))
        check_choice(params, "params", PARAM_SELECTIONS, what="a list of layer indices")
    if isinstance(params, numbers.Integral) or not isinstance(params, Sequence | np.ndarray):
        raise TypeError(
            f"params must be one of {list(PARAM_SELECTIONS)} or a list of layer indices, got "
            f"{type(params).__name__}"
        )
    idx = list(np.ravel(params)) if isinstance(params, np.ndarray) else list(params)
    if not idx:
        raise ValueError("params is an empty list; select at least one layer")
    out = set()
    for i in idx:
        if isinstance(i, bool | np.bool_) or not isinstance(i, numbers.Integral):
            raise TypeError(f"params must hold layer indices (ints), got {i!r}")
        i = int(i)
        if not -n_layers <= i < n_layers:
            raise ValueError(
                f"layer index {i} in params is out of range for a network with {n_layers} "
                f"layers (valid: {-n_layers} .. {n_layers - 1})"
            )
        out.add(i % n_layers)
    return tuple(sorted(out))


class EmpiricalNTK(_EmpiricalKernel):
    """Empirical (frozen) neural tangent kernel of a finite network.

    ``Theta(x, y) = sum_theta df(x)/dtheta . df(y)/dtheta`` over the parameters
    of the selected layers, exactly, computed layer by layer from activations
    and back-propagated vectors (BLAS products of n x n_l blocks) without the
    n x P Jacobian.

    Any ``torch.nn.Module`` (CNNs, residual nets...) or ``torch.export`` program
    (``torch.export.load("model.pt2")``) may be passed instead of an
    ``FCNetwork``: ``EmpiricalNTK(module, params, output, input_shape=...)``
    then returns a :class:`kernelcomp._torch_ntk.TorchNTK` (``kc.TorchNTK``),
    computed layer by layer as here (structured products for dense layers,
    per-sample gradients for convolutions, the per-sample Jacobian for other
    modules) in row blocks under a memory budget (PyTorch is an optional extra).

    Parameters
    ----------
    net : FCNetwork
        The network (e.g. a training checkpoint). The kernel keeps a frozen
        copy: later changes to ``net`` do not affect it.
    params : {"all", "last", "headless"} or sequence of int, default "all"
        Whose parameters the kernel sums over: ``"all"`` every layer;
        ``"last"`` the readout only (the "last-layer kernel"); ``"headless"``
        every layer but the first (the paper's third variant); or layer indices
        (``0`` the first layer, ``-1`` the readout). A layer's weights and bias
        are selected together.
    output : int, optional
        For a K-output network, the output whose kernel is computed; None
        (default) gives the mean of the K per-output kernels (the trace over
        outputs divided by K, neural-tangents' default).

    Attributes
    ----------
    net : FCNetwork
        The frozen copy.
    layers : tuple of int
        The selected layers.
    n_features_in : int
        Input dimension; ``k(X)`` checks it.

    Raises
    ------
    TypeError, ValueError
        For a non-network ``net``, an unknown ``params`` or an out-of-range
        layer or output index.

    Notes
    -----
    Use like any kernelcomp kernel: ``k(X)``, ``k(X, Y)``, ``k.diag(X)``, or
    :func:`kernelcomp.gram` for tiles, threads, progress and out-of-core output.
    float64 by default; with float32 the pre-activations (hence ReLU masks) are
    still computed in float64. Kernels are immutable, hashable by content and
    cheap to copy (copies share the frozen network) and pickle.

    References
    ----------
    Jacot, Gabriel, Hongler (2018), *Neural Tangent Kernel*; Paccolat et al.
    (2021), *Geometric compression of invariant manifolds in neural networks*,
    §5 (kernel PCA of the empirical NTK along training; readout-only and
    all-but-first-layer variants).

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> net = kc.FCNetwork.init(3, [50], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> X = np.random.default_rng(1).standard_normal((6, 3))
    >>> k = kc.EmpiricalNTK(net)
    >>> K = k(X)
    >>> K.shape, bool(np.allclose(np.diag(K), k.diag(X)))
    ((6, 6), True)
    >>> kc.EmpiricalNTK(net, params="last")(X, X[:2]).shape
    (6, 2)
    """

    def __new__(cls, net: Any = None, *args: Any, **kwargs: Any) -> Any:
        # any torch.nn.Module (or torch.export program): the kernel of kernelcomp._torch_ntk
        # (torch is then imported already; nothing here imports it)
        if cls is EmpiricalNTK and _is_torch_module(net):
            from kernelcomp._torch_ntk import TorchNTK

            return TorchNTK(net, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, net: FCNetwork, params: Any = "all", output: int | None = None) -> None:
        if not isinstance(net, FCNetwork):
            raise TypeError(
                f"net must be a kc.FCNetwork, got {type(net).__name__} (import PyTorch models "
                "with kc.FCNetwork.from_torch)"
            )
        layers = _resolve_layers(params, net.n_layers)
        if output is not None:
            if isinstance(output, bool) or not isinstance(output, numbers.Integral):
                raise TypeError(f"output must be an int or None, got {type(output).__name__}")
            K = net.n_outputs
            if not -K <= int(output) < K:
                raise ValueError(
                    f"output={output} is out of range for a network with {K} output(s)"
                )
            output = int(output) % K
            if K == 1:
                output = None  # the same kernel; keeps equality simple
        super().__init__(net, layers, output)


class EmpiricalNNGP(_EmpiricalKernel):
    """Empirical NNGP kernel: the Gram of the network's last-hidden-layer features.

    ``K(x, y) = c_L^2 a_L(x) . a_L(y) + s_L^2 [readout bias]``: the covariance of
    the output over unit-variance readout weights (and bias) with the hidden
    layers frozen. It equals ``EmpiricalNTK(net, params="last")`` and, for a wide
    network in the ``"ntk"`` parameterization, approaches ``kc.NNGP`` with the
    same stds.

    Parameters
    ----------
    net : FCNetwork
        The network; the kernel keeps a frozen copy.

    Raises
    ------
    TypeError
        If ``net`` is not an FCNetwork.

    References
    ----------
    Lee et al. (2018), *Deep neural networks as Gaussian processes*.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> net = kc.FCNetwork.init(3, [50], seed=0)
    >>> X = np.random.default_rng(1).standard_normal((4, 3))
    >>> bool(np.allclose(kc.EmpiricalNNGP(net)(X), kc.EmpiricalNTK(net, params="last")(X)))
    True
    """

    def __init__(self, net: FCNetwork) -> None:
        if not isinstance(net, FCNetwork):
            raise TypeError(
                f"net must be a kc.FCNetwork, got {type(net).__name__} (import PyTorch models "
                "with kc.FCNetwork.from_torch)"
            )
        super().__init__(net, (net.depth,), None)
