"""The exact empirical NTK of any PyTorch module: ``TorchNTK`` (extra ``kernelcomp[torch]``).

``Theta(x, y) = sum_theta df(x)/dtheta . df(y)/dtheta`` over a module's trainable
parameters (or a chosen subset), for convolutional and residual networks,
normalisation layers in eval mode, anything ``torch.func`` can differentiate.
:class:`kernelcomp.EmpiricalNTK` computes the same kernel for a
:class:`~kernelcomp.network.FCNetwork` layer by layer; here the module is a black
box and the kernel comes from its Jacobian, never held whole:

``method="jacobian"`` (the default)
    Blocks of the per-sample Jacobian, ``torch.func.vmap(torch.func.jacrev(f))``
    over ``torch.func.functional_call``, one ``(rows, outputs, *shape)`` block
    per parameter tensor; the Gram block is the sum over parameter tensors (and
    outputs) of ``J_a(x) J_a(y)^T``, never concatenated. The blocks follow from
    a memory budget (``max_memory``, default :data:`_JAC_BYTES`): a row over
    ``c`` outputs costs ``c P`` Jacobian entries plus ``(c + 1) A`` for the
    backward pass, ``A`` the per-sample activations counted on a probe sample
    (outputs of the leaf modules; this matches the measured peak of
    ``vmap(jacrev)`` on a CNN to within 10%). Outputs are split into passes
    first (all rows, ``c < K`` outputs at a time: each Jacobian row still
    computed once per output), rows into blocks only when one output's rows
    do not fit (then rows are recomputed; see :class:`TorchNTK`).
``method="jvp"``
    The implicit route of Novak et al. (2022): the Jacobian of ``y``'s rows
    only, its rows used as tangents of ``torch.func.jvp`` through the forward
    pass of ``x``'s rows (``J(x) v`` without ``J(x)``). Half the Jacobian
    memory, but one forward-mode pass over all ``x`` rows per row of ``y`` and
    output (``n^2 K`` sample passes instead of ``n K``), hence far slower and
    not the default (``scripts/bench_torch_ntk.py`` compares the two; its
    figures are in the changelog).

TorchScript modules (``torch.jit.load``, ``torch.jit.script``) take neither
``torch.func`` nor forward hooks: their Jacobian blocks come from
``torch.autograd.grad``, one forward pass per row and one backward pass per row
and output, in the same layout and under the same budget (whose activation
estimate is then the input and output sizes only); ``method="jacobian"`` only.

PyTorch is imported inside the functions and methods of this module only:
``import kernelcomp`` (and this module) works without it.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._base import FrozenKernel
from kernelcomp._validation import check_dtype, check_int

__all__ = ["TorchNTK"]

#: default bytes of Jacobian blocks (plus an estimate of the backward pass's
#: activations) held at once by one ``_fill``/``_diag`` call (``max_memory=None``)
_JAC_BYTES = 256 * 2**20
#: the computation routes
METHODS = ("jacobian", "jvp")
#: named parameter selections
PARAM_SELECTIONS = ("all", "last")
#: version of the fingerprint's encoding
_FINGERPRINT_VERSION = 1


def _import_torch(what: str = "TorchNTK") -> Any:
    """``torch``, or an ImportError saying that ``what`` needs the optional extra."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} needs PyTorch (the optional extra: pip install 'kernelcomp[torch]'); "
            "for a fully connected network without PyTorch use kc.FCNetwork and "
            "kc.EmpiricalNTK"
        ) from exc
    return torch


@contextmanager
def _torch_threads() -> Iterator[None]:
    """Limit torch's intra-op threads to numba's current thread count (set by ``n_jobs``).

    Where numba and torch share one OpenMP runtime (the Linux CPU wheels), setting
    numba's count already sets torch's and this does nothing.
    """
    import numba

    torch = _import_torch()
    n = numba.get_num_threads()
    previous = torch.get_num_threads()
    if n >= int(numba.config.NUMBA_NUM_THREADS) or n >= previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class _Prepared:
    """Rows of ``X`` as a tensor of shape ``(n, *input_shape)`` (device, kernel dtype)."""

    n: int
    x: Any


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------
def _check_kernel_dtype(dtype: Any, torch: Any) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        names = {torch.float32: "float32", torch.float64: "float64"}
        if dtype not in names:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        dtype = names[dtype]
    if dtype is None:
        raise ValueError("dtype must be float32 or float64, got None")
    dt = check_dtype(dtype, "dtype")
    assert dt is not None
    return dt


def _check_device(device: Any, torch: Any) -> Any:
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device must be 'cpu' or 'cuda' (e.g. 'cuda:0'), got {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was asked, but CUDA is not available "
                "(torch.cuda.is_available() is False: no GPU, or a CPU-only PyTorch); "
                "use device='cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: there are only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda' (e.g. 'cuda:0'), got {device!r}")
    return dev


def _check_input_shape(input_shape: Any, module: Any, torch: Any) -> tuple[int, ...]:
    if input_shape is None:
        for m in module.modules():
            if next(m.parameters(recurse=False), None) is not None:
                if isinstance(m, torch.nn.Linear) or (  # a scripted Linear too
                    getattr(m, "original_name", None) == "Linear" and hasattr(m, "in_features")
                ):
                    return (int(m.in_features),)
                raise ValueError(
                    "input_shape is required: the module's first layer with parameters "
                    f"({type(m).__name__}) does not fix the shape of one sample; pass it, e.g. "
                    "input_shape=(1, 28, 28) for one-channel 28 x 28 images (the rows of X "
                    "are then flattened images)"
                )
        raise ValueError("input_shape is required for a module without parameters")
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if isinstance(input_shape, str) or not isinstance(input_shape, Sequence | np.ndarray):
        raise TypeError(
            "input_shape must be a tuple of positive ints (the shape of one sample), got "
            f"{type(input_shape).__name__}"
        )
    shape = tuple(input_shape)
    if not shape:
        raise ValueError("input_shape must have at least one dimension, got ()")
    for s in shape:
        if isinstance(s, bool | np.bool_) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"input_shape must hold positive ints, got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _resolve_params(params: Any, trainable: list[str], frozen: list[str]) -> tuple[str, ...]:
    """The names of the selected parameters, in ``named_parameters()`` order."""
    if not trainable:
        raise ValueError(
            "the module has no trainable parameters (none with requires_grad=True); "
            "its tangent kernel is zero"
        )
    if isinstance(params, str):
        if params == "all":
            return tuple(trainable)
        if params == "last":
            owner = trainable[-1].rpartition(".")[0]
            return tuple(n for n in trainable if n.rpartition(".")[0] == owner)
        raise ValueError(
            f"unknown params {params!r}; expected one of {list(PARAM_SELECTIONS)} or a list of "
            f"parameter-name prefixes (e.g. [{params!r}])"
        )
    if not isinstance(params, Sequence | np.ndarray):
        raise TypeError(
            f"params must be one of {list(PARAM_SELECTIONS)} or a list of parameter-name "
            f"prefixes, got {type(params).__name__}"
        )
    prefixes = list(params)
    if not prefixes:
        raise ValueError("params is an empty list; select at least one parameter")
    chosen: set[str] = set()
    for p in prefixes:
        if not isinstance(p, str) or not p:
            raise TypeError(f"params must hold non-empty parameter-name prefixes (str), got {p!r}")

        def matches(name: str, p: str = p) -> bool:
            return name == p or name.startswith(p + ".")

        hit = [n for n in trainable if matches(n)]
        if not hit:
            if any(matches(n) for n in frozen):
                raise ValueError(
                    f"params prefix {p!r} selects only parameters with requires_grad=False"
                )
            owners = sorted({n.rpartition(".")[0] or n for n in trainable})
            raise ValueError(
                f"params prefix {p!r} matches no trainable parameter of the module; its "
                f"parameters belong to {owners[:20]}{' ...' if len(owners) > 20 else ''}"
            )
        chosen.update(hit)
    return tuple(n for n in trainable if n in chosen)


def _fingerprint(module: Any, names: tuple[str, ...]) -> str:
    """SHA-256 of the module's class, printed architecture, parameter flags and state."""
    torch = _import_torch()
    h = hashlib.sha256()
    cls = type(module)
    flags = [
        (n, tuple(p.shape), str(p.dtype), bool(p.requires_grad))
        for n, p in module.named_parameters()
    ]
    h.update(
        repr(
            (
                _FINGERPRINT_VERSION,
                f"{cls.__module__}.{cls.__qualname__}",
                repr(module),
                flags,
                names,
            )
        ).encode()
    )
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name};{t.dtype};{tuple(t.shape)};".encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _leaf_activations(module: Any, x: Any) -> tuple[int, Any]:
    """Rough per-sample count of the activations: outputs of the leaf modules on ``x``."""
    total = [0]

    def hook(_m: Any, _inp: Any, out: Any) -> None:
        if hasattr(out, "numel"):
            total[0] += int(out.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        y = module(x)
    finally:
        for hd in handles:
            hd.remove()
    return total[0], y


def _is_scripted(module: Any, torch: Any) -> bool:
    """A TorchScript module (``torch.jit.load``/``torch.jit.script``): no hooks, no torch.func."""
    return isinstance(module, torch.jit.ScriptModule)


def _script_activations(module: Any, x: Any) -> tuple[int, Any]:
    """``_leaf_activations`` of a TorchScript module, which takes no hooks.

    Its input and output sizes: a lower bound of the backward pass's activations.
    """
    y = module(x)
    return int(x.numel()) + (int(y.numel()) if hasattr(y, "numel") else 0), y


# ---------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------
class TorchNTK(FrozenKernel):
    """Exact empirical neural tangent kernel of a PyTorch module.

    ``Theta(x, y) = sum_theta df(x)/dtheta . df(y)/dtheta`` over the module's
    trainable parameters (``requires_grad=True``) or a chosen subset, from row
    blocks of the per-sample Jacobian (``torch.func``), never the whole n x P
    Jacobian.

    Parameters
    ----------
    module : torch.nn.Module
        Any module (a TorchScript one too, see the module docstring) mapping a
        batch ``(b, *input_shape)`` to ``(b, ...)``: the
        outputs of one sample (flattened) are its K outputs. The kernel keeps a
        frozen deep copy, cast with ``.to(dtype)``, on ``device``, in eval mode
        (running BatchNorm statistics, no dropout: one sample's output must not
        depend on the rest of the batch), with the ``requires_grad`` flags
        preserved: later training of ``module`` does not change the kernel.
    params : {"all", "last"} or sequence of str, default "all"
        Whose parameters the kernel sums over (only trainable ones ever):
        ``"all"`` every trainable parameter; ``"last"`` those of the last module
        that owns trainable parameters, in ``module.named_parameters()`` order
        (registration order, which is usually but not always the order of the
        forward pass: for ``nn.Sequential(conv, relu, flatten, linear)`` the
        linear layer's weight and bias); or parameter-name prefixes as in
        ``named_parameters()``: ``"0"`` selects ``"0.weight"`` and ``"0.bias"``,
        ``"layer1"`` everything under ``layer1.`` (a whole name selects that
        parameter alone).
    output : int, optional
        For K outputs, the output whose kernel is computed; None (default) gives
        the mean of the K per-output kernels (the trace over outputs divided by
        K, as :class:`kernelcomp.EmpiricalNTK`).
    input_shape : int or tuple of int, optional
        The shape of one sample as the module takes it. kernelcomp's inputs are
        2-D, ``X`` of shape ``(n, d)``: row ``i`` is reshaped (C order) to
        ``input_shape``, so ``d = prod(input_shape)``; e.g. ``input_shape=(1,
        28, 28)`` with ``X = images.reshape(n, -1)``. Arrays of shape ``(n,
        *input_shape)`` are accepted too (and reshaped). Default: ``(in_features,)``
        when the first module with parameters is an ``nn.Linear``; required
        otherwise.
    dtype : {"float64", "float32"}, default "float64"
        The dtype the module computes in (inputs are cast to it). The Gram's
        dtype is kernelcomp's usual rule (float32 for float32 inputs, else
        float64, or the ``dtype`` of the call): a float32 kernel's float64 Gram
        has float32 accuracy.
    device : str or torch.device, default "cpu"
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...): where the module and the
        Jacobian blocks live (results come back as NumPy arrays). CUDA is refused
        with a ValueError when ``torch.cuda.is_available()`` is False.
    method : {"jacobian", "jvp"}, default "jacobian"
        How the kernel is computed (see the module docstring); the same kernel
        up to rounding. ``"jvp"`` needs half the Jacobian memory and is slower.
    max_memory : int, optional
        Bytes of Jacobian blocks (and backward-pass activations) one call may
        hold; default :data:`_JAC_BYTES`, 256 MiB. Larger blocks mean fewer
        recomputed Jacobian rows (see Notes).

    Attributes
    ----------
    param_names : tuple of str
        The selected parameters' names.
    n_parameters : int
        P, their total number of entries.
    n_outputs : int
        K, the module's outputs per sample.
    input_shape : tuple of int
    n_features_in : int
        ``prod(input_shape)``; ``k(X)`` checks it.
    fingerprint : str
        SHA-256 of the frozen module (class, printed architecture, parameter
        flags, state dict) and of the selection.

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError, ValueError
        For a non-module, an unknown ``params`` prefix or selection, an
        out-of-range ``output``, an ``input_shape`` the module does not accept,
        an invalid ``dtype``, ``device`` or ``method``.

    Notes
    -----
    Use like any kernelcomp kernel: ``k(X)``, ``k(X, Y)``, ``k.diag(X)`` (the
    per-sample squared gradient norms, averaged over outputs), or
    :func:`kernelcomp.gram` for tiles, progress and out-of-core output. ``n_jobs``
    caps torch's intra-op threads during a call. Calls on one kernel from
    several threads are serialised (``functional_call`` swaps the module's
    tensors while it runs).

    Memory: one call holds about ``max_memory`` (256 MiB) of Jacobian blocks
    and backward-pass activations (at least one row of one output, whatever
    its size), plus one accumulator the size of its output block. Time: when
    the rows of the call fit with ``c`` outputs at a time, every Jacobian row
    is computed once and the forward pass ``K / c`` times. When one output's
    rows do not fit, outputs go one at a time and rows are computed again for
    every outer block (3/4 of the budget) they meet: about ``n + n^2 / (2 b)``
    rows per output for a symmetric Gram with outer blocks of ``b`` rows (each
    row block of :func:`kernelcomp.gram`'s driver is one such call). Keep ``P``
    small next to the budget (``params=``) or raise ``max_memory`` for large
    ``n``. With the default budget a Gram takes about the time of the unbounded
    full Jacobian on a small CNN, at a fraction of its peak memory
    (``scripts/bench_torch_ntk.py`` measures both; figures in the changelog).

    Kernels are immutable (the ``module`` property returns a copy), equal and
    hashed by content: the fingerprint, ``param_names``, ``output``,
    ``input_shape`` and ``dtype``, not ``method`` or ``device`` (how it is
    computed). A deep copy is the kernel itself. Pickling a TorchNTK pickles
    the frozen module object itself (its class must be importable where it is
    unpickled, and its state dict travels with it): meant for Dask/joblib
    workers, not for files from untrusted sources (unpickling runs code).

    References
    ----------
    Jacot, Gabriel, Hongler (2018), *Neural Tangent Kernel*; Novak, Sohl-Dickstein,
    Schoenholz (2022), *Fast finite width neural tangent kernel*, ICML.

    Examples
    --------
    >>> import numpy as np, pytest, kernelcomp as kc
    >>> torch = pytest.importorskip("torch")
    >>> from kernelcomp._torch_ntk import TorchNTK
    >>> _ = torch.manual_seed(0)
    >>> cnn = torch.nn.Sequential(
    ...     torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...     torch.nn.Linear(4 * 6 * 6, 2))
    >>> k = TorchNTK(cnn, input_shape=(1, 8, 8))
    >>> X = np.random.default_rng(0).standard_normal((5, 64))
    >>> K = k(X)
    >>> K.shape, bool((K == K.T).all()), bool(np.allclose(np.diag(K), k.diag(X)))
    ((5, 5), True, True)
    >>> TorchNTK(cnn, params="last", input_shape=(1, 8, 8)).param_names
    ('3.weight', '3.bias')
    """

    def __init__(
        self,
        module: Any,
        params: Any = "all",
        output: int | None = None,
        *,
        input_shape: Any = None,
        dtype: Any = "float64",
        device: Any = "cpu",
        method: str = "jacobian",
        max_memory: int | None = None,
    ) -> None:
        torch = _import_torch()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
        if max_memory is not None:
            max_memory = check_int(max_memory, "max_memory", minimum=1)
        dt = _check_kernel_dtype(dtype, torch)
        tdt = torch.float32 if dt == np.float32 else torch.float64
        dev = _check_device(device, torch)
        try:
            frozen = copy.deepcopy(module)
        except Exception as exc:
            raise TypeError(
                f"module could not be deep-copied ({type(exc).__name__}: {exc}); the kernel "
                "keeps a frozen copy"
            ) from exc
        with warnings.catch_warnings():
            # .to() of a TorchScript module reads each parameter's .grad (a UserWarning)
            warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor")
            frozen = frozen.to(device=dev, dtype=tdt).eval()
        named = list(frozen.named_parameters())
        trainable = [n for n, p in named if p.requires_grad]
        names = _resolve_params(params, trainable, [n for n, p in named if not p.requires_grad])
        shape = _check_input_shape(input_shape, frozen, torch)

        scripted = _is_scripted(frozen, torch)
        if scripted and method != "jacobian":
            raise ValueError(
                f"method={method!r} needs torch.func, which TorchScript modules do not support; "
                "use method='jacobian'"
            )
        # one probe sample: the module must accept it, per sample under vmap too
        probe = torch.zeros((1, *shape), dtype=tdt, device=dev)
        with torch.no_grad():
            try:
                acts, y = (_script_activations if scripted else _leaf_activations)(frozen, probe)
            except Exception as exc:
                raise ValueError(
                    f"the module cannot be applied to a batch of shape {tuple(probe.shape)} "
                    f"(input_shape={shape}): {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(y, torch.Tensor) or not y.is_floating_point():
                raise TypeError(
                    "the module must return one floating tensor of shape (batch, ...), got "
                    f"{type(y).__name__}" + (f" of dtype {y.dtype}" if hasattr(y, "dtype") else "")
                )
            if y.ndim == 0 or y.shape[0] != 1:
                raise ValueError(
                    f"the module maps a batch of 1 sample to shape {tuple(y.shape)}; the first "
                    "dimension of its output must be the batch"
                )
            K = int(y[0].numel())
            if K == 0:
                raise ValueError("the module has no outputs (an empty output per sample)")
        if output is not None:
            if isinstance(output, bool) or not isinstance(output, numbers.Integral):
                raise TypeError(f"output must be an int or None, got {type(output).__name__}")
            if not -K <= int(output) < K:
                raise ValueError(f"output={output} is out of range for a module with {K} output(s)")
            output = int(output) % K
            if K == 1:
                output = None  # the same kernel; keeps equality simple

        self._module = frozen
        self._names = names
        self._output = output
        self._input_shape = shape
        self._dtype = dt
        self._torch_dtype = tdt
        self._device = dev
        self._method = method
        self._max_memory = max_memory
        self._n_outputs = K
        self._sizes = tuple(int(dict(named)[n].numel()) for n in names)
        self._n_parameters = int(sum(self._sizes))
        self._activations = int(acts)
        self._lock = threading.Lock()
        self._scripted = scripted
        self.n_features_in = int(math.prod(shape))
        try:
            if scripted:
                self._jacobian(probe, 0, 1)
            else:
                torch.func.vmap(self._forward_one, in_dims=(None, 0))(self._primals(), probe)
        except Exception as exc:
            if scripted:
                raise ValueError(
                    "the TorchScript module cannot be differentiated with respect to its "
                    f"parameters ({type(exc).__name__}: {exc})"
                ) from exc
            raise ValueError(
                "the module cannot be evaluated one sample at a time under torch.func.vmap "
                f"({type(exc).__name__}: {exc}); TorchNTK needs a module without "
                "data-dependent Python control flow or in-place updates of its state"
            ) from exc
        self._fingerprint = _fingerprint(frozen, names)  # set last: frozen from here

    # -- immutability, equality, copies ----------------------------------------
    @property
    def module(self) -> Any:
        """A copy of the kernel's frozen module (eval mode; changing it changes nothing)."""
        return copy.deepcopy(self._module)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the selected parameters, in ``named_parameters()`` order."""
        return self._names

    @property
    def output(self) -> int | None:
        """The output whose kernel is computed (None: mean over outputs)."""
        return self._output

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample (rows of ``X`` are reshaped to it)."""
        return self._input_shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype the module computes in."""
        return self._dtype

    @property
    def device(self) -> str:
        """Where the computation runs (``"cpu"``, ``"cuda:0"``...)."""
        return str(self._device)

    @property
    def method(self) -> str:
        """The computation route, ``"jacobian"`` or ``"jvp"``."""
        return self._method

    @property
    def n_parameters(self) -> int:
        """P, the number of selected parameter entries."""
        return self._n_parameters

    @property
    def n_outputs(self) -> int:
        """K, the module's outputs per sample."""
        return self._n_outputs

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the frozen module's class, architecture, flags and state."""
        return self._fingerprint

    def _key(self) -> tuple[Any, ...]:
        return (
            "TorchNTK",
            self._fingerprint,
            self._names,
            self._output,
            self._input_shape,
            self._dtype.name,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (self._module, self._options(), self._fingerprint),
        )

    def _options(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this kernel from its module."""
        return {
            "params": list(self._names),
            "output": self._output,
            "input_shape": self._input_shape,
            "dtype": self._dtype.name,
            "device": str(self._device),
            "method": self._method,
            "max_memory": self._max_memory,
        }

    # -- description ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON description (the module itself is summarised by its fingerprint).

        Returns
        -------
        dict
            ``{"kernel": "TorchNTK", "params": {"params": [names], "output": k or
            None, "input_shape": [...], "dtype": ..., "module": {...}}}``; rebuild
            with :meth:`from_dict` and the module. ``method`` and ``device`` are
            not part of it (they do not change the kernel).
        """
        cls = type(self._module)
        return {
            "kernel": "TorchNTK",
            "params": {
                "params": list(self._names),
                "output": self._output,
                "input_shape": list(self._input_shape),
                "dtype": self._dtype.name,
                "module": {
                    "fingerprint": self._fingerprint,
                    "class": f"{cls.__module__}.{cls.__qualname__}",
                    "n_parameters": self._n_parameters,
                    "n_outputs": self._n_outputs,
                },
            },
        }

    @staticmethod
    def from_dict(desc: dict[str, Any], module: Any, **options: Any) -> TorchNTK:
        """Rebuild a kernel from :meth:`to_dict`'s output and its module.

        Parameters
        ----------
        desc : dict
        module : torch.nn.Module
        **options
            ``device=``, ``method=``.

        Raises
        ------
        ValueError
            If the description is not a TorchNTK's, or ``module`` is not the one
            it was computed with (fingerprints differ).
        """
        if not isinstance(desc, dict) or desc.get("kernel") != "TorchNTK":
            name = desc.get("kernel") if isinstance(desc, dict) else desc
            raise ValueError(f"unknown kernel {name!r} in description; expected TorchNTK")
        p = desc.get("params", {})
        k = TorchNTK(
            module,
            params=list(p.get("params", [])) or "all",
            output=p.get("output"),
            input_shape=p.get("input_shape"),
            dtype=p.get("dtype", "float64"),
            **options,
        )
        want = p.get("module", {}).get("fingerprint")
        if want is not None and want != k.fingerprint:
            raise ValueError(
                "module is not the one this kernel was described with (fingerprint "
                f"{k.fingerprint[:12]}..., expected {str(want)[:12]}...)"
            )
        return k

    def __repr__(self) -> str:
        cls = type(self._module).__name__
        return (
            f"TorchNTK(module=<{cls} P={self._n_parameters} K={self._n_outputs} "
            f"#{self._fingerprint[:8]}>, params={len(self._names)} tensors, "
            f"output={self._output}, input_shape={self._input_shape}, dtype={self._dtype.name}, "
            f"device={self.device!r}, method={self._method!r})"
        )

    # -- validation ---------------------------------------------------------
    def _check_input(self, X: Any, name: str, n_features: int | None = None) -> np.ndarray:
        """Validate ``X``: rows of ``prod(input_shape)`` values, or ``(n, *input_shape)``."""
        nd = getattr(X, "ndim", None)
        if nd is None and isinstance(X, list | tuple):
            nd = np.ndim(X)
        if nd is not None and nd > 2:
            arr = np.asarray(X)
            if arr.shape[1:] != self._input_shape:
                raise ValueError(
                    f"{name} has shape {arr.shape}; expected (n, {self.n_features_in}) "
                    f"(flattened samples) or (n, *input_shape) = (n, "
                    f"{', '.join(map(str, self._input_shape))})"
                )
            X = arr.reshape(arr.shape[0], -1)
        return super()._check_input(X, name, n_features)

    # -- torch.func pieces ------------------------------------------------------
    def _primals(self) -> dict[str, Any]:
        params = dict(self._module.named_parameters())
        return {n: params[n].detach() for n in self._names}

    def _forward_one(self, p: dict[str, Any], xi: Any, lo: int = 0, hi: int | None = None) -> Any:
        """Outputs ``lo:hi`` of one sample (of the one output with ``output=k``)."""
        from torch.func import functional_call

        y = functional_call(self._module, p, (xi.unsqueeze(0),)).reshape(-1)
        if self._output is not None:
            y = y[self._output : self._output + 1]
        return y[lo:hi]

    def _forward_batch(self, p: dict[str, Any], x: Any) -> Any:
        """The (b, K) outputs of a batch (``(b, 1)`` with ``output=k``)."""
        from torch.func import functional_call

        y = functional_call(self._module, p, (x,)).reshape(x.shape[0], -1)
        if self._output is not None:
            y = y[:, self._output : self._output + 1]
        return y

    def _k(self) -> int:
        return 1 if self._output is not None else self._n_outputs

    def _budget(self) -> int:
        return _JAC_BYTES if self._max_memory is None else self._max_memory

    def _row_bytes(self, c: int | None = None) -> int:
        """Bytes per row of a Jacobian block over ``c`` outputs (default all).

        The backward pass's activations count too (``c`` cotangents and the saved
        forward pass).
        """
        c = self._k() if c is None else c
        item = self._dtype.itemsize
        return max(1, item * (c * self._n_parameters + (c + 1) * self._activations))

    def _plan(self, n: int, m: int) -> tuple[int, int, int]:
        """``(outputs per pass, outer rows, inner rows)`` for ``n`` rows against ``m``.

        ``m=0`` stands for the symmetric Gram of the ``n`` rows.

        The most outputs per pass (up to K) for which all rows fit the budget: every
        Jacobian row is then computed once (per pass; more passes only repeat the
        cheaper forward pass). When one output's rows do not fit either: one output
        per pass, outer blocks of 3/4 of the budget held while the inner ones (1/4)
        are computed in turn, so rows are recomputed (``n + ceil(n / outer) * m``
        rows per output), fewer the larger the outer block.
        """
        item = self._dtype.itemsize
        P, A = self._n_parameters, self._activations
        c = int((self._budget() / ((n + m) * item) - A) // (P + A))
        if c >= 1:
            return min(c, self._k()), n, max(m, 1)
        row = self._row_bytes(1)
        outer = int(max(1, min(n, (3 * self._budget()) // (4 * row))))
        inner = int(max(1, min(max(m, n), self._budget() // (4 * row))))
        return 1, outer, inner

    def _chunks(self, c: int) -> list[tuple[int, int]]:
        K = self._k()
        return [(k0, min(K, k0 + c)) for k0 in range(0, K, c)]

    def _jacobian(self, x: Any, lo: int, hi: int) -> list[Any]:
        """Per-parameter Jacobian blocks of rows ``x`` and outputs ``lo:hi``.

        Each is flattened to ``(b, (hi - lo) * size)``.
        """
        if self._scripted:
            return self._jacobian_autograd(x, lo, hi)
        from torch.func import jacrev, vmap

        def f(p: dict[str, Any], xi: Any) -> Any:
            return self._forward_one(p, xi, lo, hi)

        jac = vmap(jacrev(f), in_dims=(None, 0))(self._primals(), x)
        b = x.shape[0]
        return [jac[n].reshape(b, -1) for n in self._names]

    def _jacobian_autograd(self, x: Any, lo: int, hi: int) -> list[Any]:
        """:meth:`_jacobian` of a TorchScript module (no torch.func).

        One forward pass per row and one ``torch.autograd.grad`` per row and
        output, in the same layout.
        """
        torch = _import_torch()
        params = dict(self._module.named_parameters())
        ps = [params[n] for n in self._names]
        b, c = x.shape[0], hi - lo
        blocks = [torch.empty((b, c, *p.shape), dtype=p.dtype, device=p.device) for p in ps]
        with torch.enable_grad():
            for i in range(b):
                y = self._module(x[i : i + 1]).reshape(-1)
                if self._output is not None:
                    y = y[self._output : self._output + 1]
                y = y[lo:hi]
                for k in range(c):
                    grads = torch.autograd.grad(y[k], ps, retain_graph=k < c - 1,
                                                allow_unused=True)
                    for blk, g in zip(blocks, grads, strict=True):
                        if g is None:  # a parameter the output does not depend on
                            blk[i, k] = 0
                        else:
                            blk[i, k] = g
        return [blk.reshape(b, -1) for blk in blocks]

    @staticmethod
    def _contract(acc: Any, ja: list[Any], jb: list[Any]) -> None:
        """``acc += sum_a J_a(x) J_a(y)^T`` (per parameter tensor, never concatenated)."""
        for a, b in zip(ja, jb, strict=True):
            acc.addmm_(a, b.T)

    def _jvp_block(self, x: Any, tangents: dict[str, Any], b2: int) -> Any:
        """``K Theta(x, y)`` of rows ``x`` against the rows whose Jacobian is ``tangents``."""
        from torch.func import jvp, vmap

        K = self._k()
        primals = self._primals()

        def push(t: dict[str, Any]) -> Any:
            return jvp(lambda p: self._forward_batch(p, x), (primals,), (t,))[1]

        item = self._dtype.itemsize
        per_tangent = max(1, 2 * x.shape[0] * (self._activations + K) * item)
        chunk = int(max(1, min(b2 * K, (self._budget() // 2) // per_tangent)))
        o = vmap(push, chunk_size=chunk)(tangents)  # (b2 * K, n1, K)
        o = o.reshape(b2, K, x.shape[0], K)
        return o.diagonal(dim1=1, dim2=3).sum(-1).T  # (n1, b2)

    def _tangents(self, y: Any) -> tuple[dict[str, Any], int]:
        from torch.func import jacrev, vmap

        jac = vmap(jacrev(self._forward_one), in_dims=(None, 0))(self._primals(), y)
        b = y.shape[0]
        K = self._k()
        return {n: jac[n].reshape(b * K, *jac[n].shape[2:]) for n in self._names}, b

    # -- hooks ------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> _Prepared:
        torch = _import_torch()
        x = torch.from_numpy(X).to(device=self._device, dtype=self._torch_dtype)
        return _Prepared(X.shape[0], x.reshape(X.shape[0], *self._input_shape))

    def _take(self, prep: _Prepared, start: int, stop: int) -> _Prepared:
        return _Prepared(stop - start, prep.x[start:stop])

    def _fill(self, px: _Prepared, py: _Prepared, out: np.ndarray, symmetric: bool) -> None:
        torch = _import_torch()
        with self._lock, _torch_threads(), torch.no_grad():
            # K * Theta, accumulated over output passes and parameter tensors; in the
            # symmetric case only the upper triangle's blocks (and diagonal blocks)
            acc = torch.zeros(out.shape, dtype=self._torch_dtype, device=self._device)
            if self._method == "jvp":
                self._fill_jvp(px, py, acc, symmetric)
            else:
                self._fill_jacobian(px, py, acc, symmetric)
            if symmetric:  # exactly symmetric: the upper triangle, mirrored
                acc = torch.triu(acc) + torch.triu(acc, 1).T
            acc /= self._k()
            out[...] = acc.cpu().numpy()

    def _fill_jacobian(self, px: _Prepared, py: _Prepared, acc: Any, symmetric: bool) -> None:
        n = px.n
        m = 0 if symmetric else py.n
        c, bo, bi = self._plan(n, m)
        for lo, hi in self._chunks(c):
            if symmetric:
                for i0 in range(0, n, bo):
                    i1 = min(n, i0 + bo)
                    Ji = self._jacobian(px.x[i0:i1], lo, hi)
                    self._contract(acc[i0:i1, i0:i1], Ji, Ji)
                    for j0 in range(i1, n, bi):
                        j1 = min(n, j0 + bi)
                        self._contract(acc[i0:i1, j0:j1], Ji, self._jacobian(px.x[j0:j1], lo, hi))
                    del Ji
                continue
            Jy = self._jacobian(py.x, lo, hi) if m <= bi else None  # computed once
            for i0 in range(0, n, bo):
                i1 = min(n, i0 + bo)
                Ji = self._jacobian(px.x[i0:i1], lo, hi)
                for j0 in range(0, m, bi):
                    j1 = min(m, j0 + bi)
                    Jj = Jy if Jy is not None else self._jacobian(py.x[j0:j1], lo, hi)
                    self._contract(acc[i0:i1, j0:j1], Ji, Jj)
                    del Jj
                del Ji
            del Jy

    def _fill_jvp(self, px: _Prepared, py: _Prepared, acc: Any, symmetric: bool) -> None:
        m = py.n
        # only the tangent side's Jacobian is held (half the budget; the jvp chunks the rest)
        b = int(max(1, min(m, self._budget() // (2 * self._row_bytes()))))
        for j0 in range(0, m, b):
            j1 = min(m, j0 + b)
            t, bt = self._tangents(py.x[j0:j1])
            if symmetric:  # columns j0:j1 against rows 0:j1: the upper triangle's part
                acc[:j1, j0:j1] = self._jvp_block(px.x[:j1], t, bt)
            else:
                acc[:, j0:j1] = self._jvp_block(px.x, t, bt)
            del t

    def _diag(self, px: _Prepared) -> np.ndarray:
        torch = _import_torch()
        n = px.n
        c, b, _ = self._plan(n, 0)
        if c == 1 and b < n:  # one block at a time: all of the budget
            b = int(max(1, min(n, self._budget() // self._row_bytes(1))))
        acc = torch.zeros(n, dtype=torch.float64, device=self._device)
        with self._lock, _torch_threads(), torch.no_grad():
            for lo, hi in self._chunks(c):
                for i0 in range(0, n, b):
                    i1 = min(n, i0 + b)
                    for j in self._jacobian(px.x[i0:i1], lo, hi):
                        acc[i0:i1] += torch.einsum("ip,ip->i", j, j).double()
        return (acc / self._k()).cpu().numpy()


def _rebuild(module: Any, options: dict[str, Any], fingerprint: str) -> TorchNTK:
    k = TorchNTK(module, **options)
    if k.fingerprint != fingerprint:  # pragma: no cover - a corrupted pickle
        raise ValueError("the unpickled module does not match the kernel's fingerprint")
    return k
