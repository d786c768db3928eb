"""The exact empirical NTK of any PyTorch module: ``TorchNTK`` (extra ``kernelcomp[torch]``).

``Theta(x, y) = sum_theta df(x)/dtheta . df(y)/dtheta`` over a module's trainable
parameters (or a chosen subset), for convolutional and residual networks,
normalisation layers in eval mode, anything ``torch.func`` can differentiate;
the n x P Jacobian is never held whole:

``method="layerwise"`` (the default)
    The layerwise engine (:mod:`kernelcomp._torch_layers`): forward hooks keep
    the inputs of every selected ``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d``
    (any stride, padding, dilation, groups, padding mode), normalisation layer
    (BatchNorm in eval mode, LayerNorm, GroupNorm, InstanceNorm, RMSNorm) and
    ``nn.Embedding``; one backward pass per output (batched over outputs)
    gives the output gradients ``delta``; each layer adds its Gram term by the
    cheaper, for its shape, of the structured product (``(delta . delta')(a .
    a')`` for a dense layer, summed over pairs of positions for a convolution)
    and the explicit per-sample gradient (patches times ``delta``) contracted
    by one GEMM (Novak et al., 2022). Parameters of other modules take the
    per-sample Jacobian below, for those parameters only. ``describe()`` shows
    each layer's route. Every row's factors are computed once when they fit
    half of the budget (:func:`kernelcomp.gram`'s blocks then only contract
    them); else outer blocks of rows are held while inner ones are recomputed.
    A TorchScript module made of ``torch.nn`` layers in ``nn.Sequential``
    containers is rebuilt as an eager module for the engine (checked on a
    probe batch); other TorchScript modules take ``"jacobian"``. Modules whose
    samples interact within a batch (checked on a probe batch) take the
    per-sample Jacobian for every parameter.
``method="jacobian"``
    Blocks of the per-sample Jacobian, ``torch.func.vmap(torch.func.jacrev(f))``
    over ``torch.func.functional_call``, one ``(rows, outputs, *shape)`` block
    per parameter tensor; the Gram block is the sum over parameter tensors (and
    outputs) of ``J_a(x) J_a(y)^T``, never concatenated. The blocks follow from
    a memory budget (``max_memory``, default :func:`default_budget`): a row over
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

``torch.export`` programs (``torch.export.export``, ``.pt2`` files read by
``torch.export.load``) are differentiated through ``program.module()``, a graph
of ATen operators: for ``method="layerwise"`` each ``aten.linear``,
``aten.conv1d``, ``aten.conv2d``, ``aten.layer_norm``, ``aten.group_norm`` and
``aten.batch_norm`` (running statistics) call on its own weight (and bias)
runs as the matching ``torch.nn`` layer holding the same tensors (checked on a
probe batch), so the engine treats them as in the eager module; the other
parameters (tied weights, other operators) take the per-sample Jacobian.
``describe()`` says so. Export the module in eval mode with a dynamic batch
dimension: ``torch.export.export(model.eval(), (x,), dynamic_shapes=({0:
torch.export.Dim("batch")},))``.

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
import logging
import math
import threading
from typing import Any

import numpy as np

from kernelcomp._base import FrozenKernel
from kernelcomp._parallel import available_memory, bytes_text
from kernelcomp._torch_autograd import _AutogradRoutes
from kernelcomp._torch_export import exported_module, is_exported_program, traced_input_shape
from kernelcomp._torch_layerwise import _LayerwiseRoute
from kernelcomp._torch_support import (  # noqa: F401 - PARAM_SELECTIONS etc. re-exported
    _FINGERPRINT_VERSION,
    _FORCED,
    METHODS,
    OUTPUTS,
    PARAM_SELECTIONS,
    _check_device,
    _check_input_shape,
    _check_kernel_dtype,
    _check_options,
    _check_output,
    _eager_version,
    _fingerprint,
    _frozen_copy,
    _import_torch,
    _is_scripted,
    _leaf_activations,
    _positions,
    _Prepared,
    _probe_module,
    _resolve_params,
    _script_activations,
    _torch_threads,
    _unscript,
)

__all__ = ["TorchNTK"]

#: the largest default memory budget of one ``_fill``/``_diag`` call (``max_memory=None``:
#: a quarter of the memory available, at most this, at least :data:`_MIN_BYTES`)
_JAC_BYTES = 8 * 2**30
#: the smallest default budget
_MIN_BYTES = 64 * 2**20


def default_budget() -> int:
    """The default ``max_memory``: a quarter of the available memory, within [64 MiB, 8 GiB].

    Read when a computation starts (:func:`kernelcomp._parallel.available_memory`).
    """
    free = available_memory()
    if free is None:  # pragma: no cover - not Linux
        return min(_JAC_BYTES, 256 * 2**20)
    return int(min(_JAC_BYTES, max(min(_MIN_BYTES, _JAC_BYTES), free // 4)))


# ---------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------
class TorchNTK(_LayerwiseRoute, _AutogradRoutes, FrozenKernel):
    """Exact empirical neural tangent kernel of a PyTorch module.

    ``Theta(x, y) = sum_theta df(x)/dtheta . df(y)/dtheta`` over the module's
    trainable parameters (``requires_grad=True``) or a chosen subset, from row
    blocks of the per-sample Jacobian (``torch.func``), never the whole n x P
    Jacobian.

    Parameters
    ----------
    module : torch.nn.Module or torch.export.ExportedProgram
        Any module (a TorchScript one too, see the module docstring) mapping a
        batch ``(b, *input_shape)`` to ``(b, ...)``, or a ``torch.export``
        program (``torch.export.export``/``torch.export.load``; its
        ``.module()`` is differentiated, its batch dimension must have been
        exported as dynamic, and its kernel pickles as the program's archive): the
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
    output : int, "mean", "sum_of_logits" or None, optional
        For K outputs, the output whose kernel is computed; None or ``"mean"``
        (default) gives the mean of the K per-output kernels (the trace over
        outputs divided by K, as :class:`kernelcomp.EmpiricalNTK`);
        ``"sum_of_logits"`` the *approximation* of that mean by the kernel of
        ``sum_k f_k / sqrt(K)`` (Mohamadi et al., 2023: the mean of all K^2
        output pairs, cross-output terms included), one backward pass instead
        of K. The full K x K per-output kernel: :meth:`per_output`.
    input_shape : int or tuple of int, optional
        The shape of one sample as the module takes it. kernelcomp's inputs are
        2-D, ``X`` of shape ``(n, d)``: row ``i`` is reshaped (C order) to
        ``input_shape``, so ``d = prod(input_shape)``; e.g. ``input_shape=(1,
        28, 28)`` with ``X = images.reshape(n, -1)``. Arrays of shape ``(n,
        *input_shape)`` are accepted too (and reshaped). Default: the shape an
        exported program was traced with (less its batch dimension), else
        ``(in_features,)`` when the first module with parameters is an
        ``nn.Linear``; required otherwise.
    dtype : {"float64", "float32"}, default "float64"
        The dtype the module computes in (inputs are cast to it). The Gram's
        dtype is kernelcomp's usual rule (float32 for float32 inputs, else
        float64, or the ``dtype`` of the call): a float32 kernel's float64 Gram
        has float32 accuracy.
    device : str or torch.device, default "cpu"
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...): where the module and the
        Jacobian blocks live (results come back as NumPy arrays). CUDA is refused
        with a ValueError when ``torch.cuda.is_available()`` is False.
    method : {"layerwise", "jacobian", "jvp"}, default "layerwise"
        How the kernel is computed (see the module docstring); the same kernel
        up to rounding. ``"jacobian"`` and ``"jvp"`` are the per-sample
        Jacobian routes (slower; ``"jvp"`` needs half the Jacobian memory).
    max_memory : int, optional
        Bytes of per-sample factors (or Jacobian blocks) and backward-pass
        activations one call may hold, besides its output block; default
        :func:`default_budget`: a quarter of the memory available when the
        call starts, at most 8 GiB, at least 64 MiB. Larger budgets mean fewer
        recomputed rows (see Notes); the ``kernelcomp`` logger says at INFO
        level which budget a Gram matrix ran under and whether every row's
        factors were held or recomputed block by block.

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

    Memory: one call holds its output block and about ``max_memory`` of
    per-sample factors (layerwise: half of it for the factors, a quarter for
    the forward and backward passes of a batch of rows) or, for the per-sample
    Jacobian routes, of Jacobian blocks and backward-pass activations (at
    least one row of one output, whatever its size), plus one accumulator the
    size of its output block. Time: when
    the rows of the call fit with ``c`` outputs at a time, every Jacobian row
    is computed once and the forward pass ``K / c`` times. When one output's
    rows do not fit, outputs go one at a time (layerwise: all of them) and rows
    are computed again for
    every outer block (3/4 of the budget) they meet: about ``n + n^2 / (2 b)``
    rows per output for a symmetric Gram with outer blocks of ``b`` rows (each
    row block of :func:`kernelcomp.gram`'s driver is one such call). Keep ``P``
    small next to the budget (``params=``) or raise ``max_memory`` for large
    ``n``. ``scripts/bench_torch_ntk.py`` compares the layerwise engine with the
    ``torch.func`` recipe, :class:`kernelcomp.EmpiricalNTK` and neural-tangents
    (figures in the changelog).

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
    Schoenholz (2022), *Fast finite width neural tangent kernel*, ICML; Mohamadi,
    Bae, Sutherland (2023), *A fast, well-founded approximation to the empirical
    neural tangent kernel*, ICML.

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
    >>> [line.split()[4] for line in k.describe().splitlines()[2:]]  # the routes
    ['explicit', 'structured']
    >>> k.per_output(X).shape
    (5, 5, 2, 2)
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
        method: str = "layerwise",
        max_memory: int | None = None,
        _route: str = "auto",
    ) -> None:
        torch = _import_torch()
        program = None
        if is_exported_program(module):  # a torch.export program: its module
            program, module = module, exported_module(module, torch)
        max_memory, dt, tdt, dev = _check_options(
            module, method, _route, max_memory, dtype, device, torch
        )
        frozen = _frozen_copy(module, dev, tdt)
        named = list(frozen.named_parameters())
        trainable = [n for n, p in named if p.requires_grad]
        names = _resolve_params(params, trainable, [n for n, p in named if not p.requires_grad])
        shape = _check_input_shape(input_shape, frozen, torch)
        scripted, eager, method = _eager_version(frozen, shape, tdt, dev, method, torch)
        # one probe sample: the module must accept it, per sample under vmap too
        probe, acts, K = _probe_module(frozen, scripted, shape, tdt, dev, torch)
        output = _check_output(output, K)

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
        if eager is not None and eager is not frozen:
            with torch.no_grad():
                self._activations = int(_leaf_activations(eager, probe)[0])
        self._lock = threading.Lock()
        self._scripted = scripted
        self._exported = traced_input_shape(frozen, torch) is not None
        self._eager = eager if eager is not None else frozen
        self._clone = [False]  # the layerwise engine copies layer inputs/outputs (see below)
        self._forced = _route
        self.n_features_in = int(math.prod(shape))
        self._layers: list[Any] = []
        self._fallback: tuple[str, ...] = names
        self._why = ""
        self._factor_row_bytes = 0
        self._work_row_bytes = 0
        self._check_differentiable(probe, torch)
        if method == "layerwise":
            self._setup_layerwise(torch, probe)
        # an exported program pickles as its torch.export archive (its module does not pickle)
        self._program = None if program is None else _program_bytes(program, torch)
        self._fingerprint = _fingerprint(frozen, names)  # set last: frozen from here

    def _check_differentiable(self, probe: Any, torch: Any) -> None:
        """Raise ValueError unless the probe's Jacobian (scripted) or vmapped forward runs."""
        scripted = self._scripted
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
        if self._program is not None:
            return (_rebuild_exported, (self._program, self._options(), self._fingerprint))
        if self._exported:
            raise TypeError(
                "a TorchNTK of an exported module (program.module()) cannot be pickled: torch's "
                "exported modules do not pickle; make the kernel from the ExportedProgram "
                "itself (e.g. EmpiricalNTK(torch.export.load(path))), which pickles"
            )
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
            **({} if self._forced == "auto" else {"_route": self._forced}),
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
            not part of it (they do not change the kernel). The module's class
            of an exported program is ``"torch.export"`` (torch's per-instance
            graph-module classes name nothing).
        """
        cls = type(self._module)
        name = "torch.export" if self._exported else f"{cls.__module__}.{cls.__qualname__}"
        return {
            "kernel": "TorchNTK",
            "params": {
                "params": list(self._names),
                "output": self._output,
                "input_shape": list(self._input_shape),
                "dtype": self._dtype.name,
                "module": {
                    "fingerprint": self._fingerprint,
                    "class": name,
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
        cls = "ExportedModule" if self._exported else type(self._module).__name__
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
    def _primals(self, names: tuple[str, ...] | None = None) -> dict[str, Any]:
        params = dict(self._eager.named_parameters())
        return {n: params[n].detach() for n in (self._names if names is None else names)}

    def _select(self, y: Any) -> Any:
        """The outputs the kernel is of, from ``y`` of shape ``(..., K)``.

        All K; the one of ``output=k``; or their sum over ``sqrt(K)`` for
        ``output="sum_of_logits"`` (its kernel is the mean of all K^2 output pairs).
        """
        if self._output is None:
            return y
        if self._output == "sum_of_logits":
            return y.sum(-1, keepdim=True) / math.sqrt(self._n_outputs)
        return y[..., self._output : self._output + 1]

    def _forward_one(self, p: dict[str, Any], xi: Any, lo: int = 0, hi: int | None = None) -> Any:
        """Outputs ``lo:hi`` of one sample (of the one output with ``output=k``)."""
        from torch.func import functional_call

        y = functional_call(self._eager, p, (xi.unsqueeze(0),)).reshape(-1)
        return self._select(y)[lo:hi]

    def _forward_batch(self, p: dict[str, Any], x: Any) -> Any:
        """The (b, K) outputs of a batch (``(b, 1)`` with ``output=k``)."""
        from torch.func import functional_call

        y = functional_call(self._eager, p, (x,)).reshape(x.shape[0], -1)
        return self._select(y)

    def _k(self) -> int:
        return 1 if self._output is not None else self._n_outputs

    def _budget(self) -> int:
        return default_budget() if self._max_memory is None else self._max_memory

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

    def describe(self) -> str:
        """How the kernel is computed, layer by layer (a table).

        Returns
        -------
        str
            One line per parametrised layer of the layerwise engine: its path,
            class, selected parameter entries, positions per sample, route
            (``structured``, ``explicit``, or ``jacobian`` for the per-sample
            Jacobian of ``torch.func``) and the per-pair costs compared
            ("shifted GEMMs": a float64 convolution whose forward pass and
            per-sample weight gradients run as one GEMM per kernel offset); or the
            method when it is not ``"layerwise"``. Also logged at DEBUG level
            (logger ``"kernelcomp"``) when the kernel is made.
        """
        head = (f"TorchNTK method={self._method!r}, P={self._n_parameters}, "
                f"K={self._n_outputs}, output={self._output}, dtype={self._dtype.name}")
        if self._method != "layerwise":
            return head + "\n  every parameter: per-sample Jacobian (" + self._method + ")"
        lines = [head]
        if self._why:
            lines.append("  " + self._why)
        if self._eager is not self._module:
            lines.append("  TorchScript module rebuilt as eager torch.nn modules" if self._scripted
                         else "  exported module: its layer calls run as torch.nn layers")
        lines.append(f"  {'layer':24} {'class':14} {'params':>9} {'pos':>6} {'route':10} "
                     "cost/pair (explicit, structured)")
        for L in self._layers:
            c = L.costs
            cost = ", ".join(f"{c[k]:.3g}" for k in ("explicit", "structured") if k in c)
            how = " (shifted GEMMs)" if L.shift else ""
            lines.append(f"  {L.path or '(root)':24} {type(L.module).__name__:14} "
                         f"{L.n_params:9d} {L.positions:6d} {L.route:10} {cost}{how}")
        if self._fallback:
            total = sum(int(dict(self._eager.named_parameters())[n].numel())
                        for n in self._fallback)
            shown = ", ".join(self._fallback[:6]) + (" ..." if len(self._fallback) > 6 else "")
            lines.append(f"  {'(others)':24} {'':14} {total:9d} {'':>6} {'jacobian':10} "
                         f"{shown}")
        return "\n".join(lines)

    def per_output(self, X: Any, Y: Any = None) -> np.ndarray:
        """The full per-output NTK ``Theta_kl(x_i, y_j)`` of all output pairs.

        Parameters
        ----------
        X : array-like of shape (n, d)
        Y : array-like of shape (m, d), optional
            Defaults to ``X``.

        Returns
        -------
        numpy.ndarray of shape (n, m, K, K)
            In the kernel's dtype; its trace over the last two axes divided by K
            is ``k(X, Y)`` for ``output=None``. Held whole: meant for moderate
            ``n m K^2``; the factors are computed in row blocks.

        Raises
        ------
        ValueError
            For a kernel of one output (``output=k`` or ``"sum_of_logits"``) or
            another method than ``"layerwise"``.
        """
        from kernelcomp import _torch_layers as tl

        if self._method != "layerwise" or self._output is not None:
            raise ValueError("per_output needs method='layerwise' and output=None (all "
                             f"outputs); this kernel has method={self._method!r}, "
                             f"output={self._output!r}")
        torch = _import_torch()
        Xc = self._check_input(X, "X").astype(self._dtype, copy=False)
        Yc = Xc if Y is None else self._check_input(Y, "Y").astype(self._dtype, copy=False)
        px, py = self._prepare(Xc), self._prepare(Yc)
        K = self._n_outputs
        res = np.empty((px.n, py.n, K, K), dtype=self._dtype)
        rows = int(max(1, self._factor_rows() // 2))
        with self._lock, _torch_threads():
            for i0 in range(0, px.n, rows):
                i1 = min(px.n, i0 + rows)
                fi = self._factors(px.x[i0:i1])
                for j0 in range(0, py.n, rows):
                    j1 = min(py.n, j0 + rows)
                    fj = self._factors(py.x[j0:j1])
                    with torch.no_grad():
                        res[i0:i1, j0:j1] = tl.per_output_block(fi, fj, torch).cpu().numpy()
        return res

    # -- hooks ------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> _Prepared:
        torch = _import_torch()
        x = torch.from_numpy(X).to(device=self._device, dtype=self._torch_dtype)
        x = x.reshape(X.shape[0], *self._input_shape)
        n = X.shape[0]
        held = self._method == "layerwise" and n <= self._factor_rows() and n > 1
        if n > 1:
            self._log_budget(n, held)
        if held:
            # every row's factors once (kc.gram's blocks then only contract them)
            with self._lock, _torch_threads():
                return _Prepared(n, x, self._factors(x))
        return _Prepared(n, x)

    def _log_budget(self, n: int, held: bool) -> None:
        """Say on the ``kernelcomp`` logger (INFO) which budget and route ``n`` rows get."""
        log = logging.getLogger("kernelcomp")
        if not log.isEnabledFor(logging.INFO):
            return
        budget = self._budget()
        origin = ("max_memory" if self._max_memory is not None
                  else "default: a quarter of the memory available, within [64 MiB, 8 GiB]")
        if self._method != "layerwise":
            route = f"{self._method} route, Jacobian blocks within the budget"
        elif held:
            route = (f"the per-sample factors of all {n} rows held "
                     f"({bytes_text(n * self._factor_row_bytes)}), computed once")
        else:
            route = (f"the per-sample factors of {n} rows "
                     f"({bytes_text(n * self._factor_row_bytes)}) exceed half the budget: "
                     f"recomputed block by block ({self._factor_rows()} rows at a time); "
                     "a larger max_memory (--max-memory) avoids it")
        log.info("TorchNTK: memory budget %s (%s): %s", bytes_text(budget), origin, route)

    def _take(self, prep: _Prepared, start: int, stop: int) -> _Prepared:
        f = None if prep.factors is None else prep.factors.take(start, stop)
        return _Prepared(stop - start, prep.x[start:stop], f)

    def _fill(self, px: _Prepared, py: _Prepared, out: np.ndarray, symmetric: bool) -> None:
        torch = _import_torch()
        if self._method == "layerwise":
            with self._lock, _torch_threads():
                self._fill_layerwise(px, py, out, symmetric)
                if self._k() != 1:
                    out /= self._k()
            return
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

    def _diag(self, px: _Prepared) -> np.ndarray:
        torch = _import_torch()
        n = px.n
        if self._method == "layerwise":
            from kernelcomp import _torch_layers as tl

            acc = torch.zeros(n, dtype=torch.float64)
            rows = self._factor_rows()
            with self._lock, _torch_threads():
                for i0 in range(0, n, rows):
                    i1 = min(n, i0 + rows)
                    f = px.factors.take(i0, i1) if px.factors is not None else self._factors(
                        px.x[i0:i1])
                    with torch.no_grad():
                        acc[i0:i1] = tl.diagonal(f, torch).cpu()
            return (acc / self._k()).numpy()
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


def _program_bytes(program: Any, torch: Any) -> bytes:
    """The ``torch.export.save`` archive of an exported program, in memory."""
    import io

    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def _rebuild_exported(archive: bytes, options: dict[str, Any], fingerprint: str) -> TorchNTK:
    """A pickled TorchNTK of an exported program, from the program's archive."""
    import io

    torch = _import_torch()
    return _rebuild(torch.export.load(io.BytesIO(archive)), options, fingerprint)
