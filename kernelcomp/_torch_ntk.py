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
import logging
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

#: the largest default memory budget of one ``_fill``/``_diag`` call (``max_memory=None``:
#: a quarter of the memory available, at most this, at least :data:`_MIN_BYTES`)
_JAC_BYTES = 1024 * 2**20
#: the smallest default budget
_MIN_BYTES = 64 * 2**20
#: the computation routes
METHODS = ("layerwise", "jacobian", "jvp")
#: named output selections besides an index and None (the mean over outputs)
OUTPUTS = ("mean", "sum_of_logits")
#: forced per-layer routes of the layerwise engine (for checks; "auto" is the cheaper)
_FORCED = ("auto", "structured", "explicit", "jacobian")
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


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        return None
    return None  # pragma: no cover


def default_budget() -> int:
    """The default ``max_memory``: a quarter of the available memory, within [64 MiB, 1 GiB]."""
    free = available_memory()
    if free is None:  # pragma: no cover - not Linux
        return min(_JAC_BYTES, 256 * 2**20)
    return int(min(_JAC_BYTES, max(min(_MIN_BYTES, _JAC_BYTES), free // 4)))


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
    """Rows of ``X`` as a tensor of shape ``(n, *input_shape)`` (device, kernel dtype).

    ``factors``: the layerwise engine's per-sample factors of all rows, when
    they fit half of the memory budget (else computed block by block).
    """

    n: int
    x: Any
    factors: Any = None


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
    method : {"layerwise", "jacobian", "jvp"}, default "layerwise"
        How the kernel is computed (see the module docstring); the same kernel
        up to rounding. ``"jacobian"`` and ``"jvp"`` are the per-sample
        Jacobian routes (slower; ``"jvp"`` needs half the Jacobian memory).
    max_memory : int, optional
        Bytes of per-sample factors (or Jacobian blocks) and backward-pass
        activations one call may hold, besides its output block; default
        :func:`default_budget`: a quarter of the memory available when the
        call starts, at most 1 GiB, at least 64 MiB. Larger budgets mean fewer
        recomputed rows (see Notes).

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
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
        if _route not in _FORCED:
            raise ValueError(f"unknown _route {_route!r}; expected one of {list(_FORCED)}")
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
        eager = _unscript(frozen, torch) if scripted else frozen
        if scripted and eager is not None:  # the rebuilt copy must compute the same function
            gen = torch.Generator(device="cpu").manual_seed(0)
            xr = torch.randn((2, *shape), generator=gen, dtype=tdt).to(dev)
            try:
                with torch.no_grad():
                    same = bool(torch.allclose(eager(xr), frozen(xr)))
            except Exception:
                same = False
            if not same:
                eager = None
        if scripted and eager is None and method == "layerwise":
            method = "jacobian"  # a TorchScript module the engine cannot rebuild
        if scripted and eager is None and method != "jacobian":
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
        if isinstance(output, str):
            if output not in OUTPUTS:
                raise ValueError(f"unknown output {output!r}; expected an output index, None "
                                 f"or one of {list(OUTPUTS)}")
            output = None if (output == "mean" or K == 1) else output
        if output is not None and not isinstance(output, str):
            if isinstance(output, bool) or not isinstance(output, numbers.Integral):
                raise TypeError(f"output must be an int, None, 'mean' or 'sum_of_logits', got "
                                f"{type(output).__name__}")
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
        if eager is not None and eager is not frozen:
            with torch.no_grad():
                self._activations = int(_leaf_activations(eager, probe)[0])
        self._lock = threading.Lock()
        self._scripted = scripted
        self._eager = eager if eager is not None else frozen
        self._clone = [False]  # the layerwise engine copies layer inputs/outputs (see below)
        self._forced = _route
        self.n_features_in = int(math.prod(shape))
        self._layers: list[Any] = []
        self._fallback: tuple[str, ...] = names
        self._why = ""
        self._factor_row_bytes = 0
        self._work_row_bytes = 0
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
        if method == "layerwise":
            self._setup_layerwise(torch, probe)
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

    def _jacobian(self, x: Any, lo: int, hi: int,
                  names: tuple[str, ...] | None = None) -> list[Any]:
        """Per-parameter Jacobian blocks of rows ``x`` and outputs ``lo:hi``.

        Each is flattened to ``(b, (hi - lo) * size)``; ``names`` (default the
        selection) the parameters.
        """
        if self._scripted and self._eager is self._module:
            return self._jacobian_autograd(x, lo, hi)
        from torch.func import jacrev, vmap

        def f(p: dict[str, Any], xi: Any) -> Any:
            return self._forward_one(p, xi, lo, hi)

        names = self._names if names is None else names
        jac = vmap(jacrev(f), in_dims=(None, 0))(self._primals(names), x)
        b = x.shape[0]
        return [jac[n].reshape(b, -1) for n in names]

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
                y = self._select(self._module(x[i : i + 1]).reshape(-1))[lo:hi]
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

    # -- the layerwise engine ------------------------------------------------------
    def _setup_layerwise(self, torch: Any, probe: Any) -> None:
        """Find the engine's layers, their positions and routes; check batch independence."""
        from kernelcomp import _torch_layers as tl

        eager = self._eager
        for m in eager.modules():  # in-place activations would overwrite saved tensors
            if isinstance(getattr(m, "inplace", None), bool):
                m.inplace = False
        layers, rest = tl.find_layers(eager, self._names, torch)
        if self._forced == "jacobian":
            layers, rest = [], self._names
        self._layers = layers
        self._fallback = rest
        # samples must not interact (BatchNorm without running statistics in eval mode)
        gen = torch.Generator(device="cpu").manual_seed(0)
        x3 = torch.randn((3, *self._input_shape), generator=gen, dtype=self._torch_dtype)
        x3 = x3.to(self._device)
        with torch.no_grad():
            try:
                y3 = eager(x3).reshape(3, -1)
                y1 = torch.cat([eager(x3[i : i + 1]).reshape(1, -1) for i in range(3)])
                independent = bool(torch.allclose(y3, y1, rtol=1e-4, atol=1e-5 * (
                    1 + float(y1.abs().max()))))
            except Exception:  # integer inputs (embeddings) and such: trust the module
                independent = True
        if not independent:
            self._why = ("the samples of a batch interact (e.g. BatchNorm without running "
                         "statistics): every parameter takes the per-sample Jacobian")
            self._layers, self._fallback = [], self._names
        # positions and calls per layer on the probe sample, then the routes
        f = self._factors_batch(probe, count=True)
        kc = self._k()
        for layer in self._layers:
            layer.route = tl.choose_route(layer, kc, None if self._forced == "auto"
                                          else self._forced)
        f = self._factors_batch(probe)
        self._factor_row_bytes = max(1, f.nbytes())
        item = self._dtype.itemsize
        patches = sum(tl.patch_elements(layer, self._torch_dtype, torch)
                      for layer in self._layers)
        fb = sum(int(dict(self._eager.named_parameters())[n].numel()) for n in self._fallback)
        self._work_row_bytes = max(1, item * ((kc + 3) * self._activations + 2 * patches
                                              + kc * fb) + 2 * self._factor_row_bytes)
        log = logging.getLogger("kernelcomp")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("TorchNTK layerwise engine:\n%s", self.describe())

    def _factors_batch(self, x: Any, count: bool = False, clone: bool | None = None) -> Any:
        """The engine's per-sample factors of the rows ``x`` (one forward, Kc backward passes).

        ``count=True`` records each layer's positions and calls instead.
        ``clone``: copy the layers' inputs and outputs in the hooks (default:
        when the module was seen to modify them in place, e.g. ``out += x``);
        without copies, an in-place change is detected (version counters) and
        the batch computed again with them.
        """
        from kernelcomp import _torch_layers as tl

        torch = _import_torch()
        b = x.shape[0]
        copies = self._clone[0] if clone is None else clone
        records: dict[int, list[tuple[Any, Any, int, int]]] = {id(L): [] for L in self._layers}

        def hook_for(layer: Any) -> Any:
            def hook(_m: Any, inp: Any, out: Any) -> Any:
                a = inp[0].detach()
                if copies:
                    a = a.clone()
                records[id(layer)].append((a, out, a._version, out._version))
                # with copies, later in-place operations change the copy, not ``out``
                return out.clone() if copies else None

            return hook

        handles = [L.module.register_forward_hook(hook_for(L)) for L in self._layers]
        factors = tl.Factors(b, None, [], [])
        blocks: list[Any] = []
        try:
            with torch.enable_grad():
                y = self._select(self._eager(x).reshape(b, -1)) if self._layers else None
        finally:
            for hd in handles:
                hd.remove()
        if self._layers:
            changed = [L.path for L in self._layers if any(
                a._version != va or z._version != vz for a, z, va, vz in records[id(L)])]
            if changed:
                if copies:  # pragma: no cover - the copies are never changed in place
                    raise RuntimeError(f"layers {changed} changed in place despite copies")
                del records, y
                self._clone[0] = True  # from now on (a flag, not the kernel's identity)
                return self._factors_batch(x, count, clone=True)
            for L in self._layers:
                recs = records[id(L)]
                if count:
                    L.calls = len(recs)
                    L.positions = max(1, sum(_positions(L, a, z) for a, z, _, _ in recs))
            if count:
                return None
            zs = [z for L in self._layers for _, z, _, _ in records[id(L)]]
            kc = y.shape[1]
            if kc == 1:
                grads = torch.autograd.grad(y.sum(), zs, allow_unused=True)
                grads = [None if g is None else g.unsqueeze(0) for g in grads]
            else:
                grads = self._batched_grads(torch, y, zs)
            it = iter(grads)
            for L in self._layers:
                calls = []
                for a, z, _, _ in records[id(L)]:
                    g = next(it)
                    if g is None:
                        g = torch.zeros((kc, *z.shape), dtype=z.dtype, device=z.device)
                    calls.append((a, g.detach()))
                if calls:
                    blocks.extend(tl.layer_factors(L, calls, torch, factors))
                elif L.route == "structured":  # never called: zero factors
                    blocks.append(torch.zeros((b, kc, 1), dtype=self._torch_dtype,
                                              device=self._device))
                else:
                    blocks.append(torch.zeros((b, kc, L.n_params), dtype=self._torch_dtype,
                                              device=self._device))
            del records, zs, grads, y
        elif count:
            return None
        if self._fallback:
            kc = self._k()
            jac = self._jacobian(x, 0, kc, self._fallback)
            blocks.extend(j.reshape(b, kc, -1) for j in jac)
        if blocks:
            factors.explicit = torch.cat(blocks, 2) if len(blocks) > 1 else blocks[0]
        return factors

    @staticmethod
    def _batched_grads(torch: Any, y: Any, zs: list[Any]) -> list[Any]:
        """``d y[:, k] / d z`` for every output ``k``: ``(Kc, *z.shape)`` (None: unused)."""
        kc = y.shape[1]
        eye = torch.eye(kc, dtype=y.dtype, device=y.device)
        go = eye[:, None, :].expand(kc, y.shape[0], kc)
        try:
            return list(torch.autograd.grad(y, zs, grad_outputs=go, is_grads_batched=True,
                                            allow_unused=True, retain_graph=True))
        except Exception:  # an operation without a batching rule: one pass per output
            per = [torch.autograd.grad(y[:, k].sum(), zs, retain_graph=True, allow_unused=True)
                   for k in range(kc)]
            out = []
            for i, z in enumerate(zs):
                gs = [p[i] for p in per]
                out.append(None if all(g is None for g in gs) else torch.stack(
                    [torch.zeros_like(z) if g is None else g for g in gs]))
            return out

    def _factors(self, x: Any) -> Any:
        """:meth:`_factors_batch` of all rows ``x``, in batches within the work budget."""
        from kernelcomp import _torch_layers as tl

        torch = _import_torch()
        n = x.shape[0]
        bs = int(max(1, min(n, (self._budget() // 2) // self._work_row_bytes)))
        first = self._factors_batch(x[:bs])
        if bs >= n:
            return first

        def alloc(t: Any) -> Any:
            full = torch.empty((n, *t.shape[1:]), dtype=t.dtype, device=t.device)
            full[:bs] = t
            return full

        out = tl.Factors(
            n,
            None if first.explicit is None else alloc(first.explicit),
            [(alloc(d), alloc(a)) for d, a in first.hadamard],
            [(alloc(d), alloc(a)) for d, a in first.positional],
        )
        del first
        for i0 in range(bs, n, bs):  # the other batches, written in place
            i1 = min(n, i0 + bs)
            part = self._factors_batch(x[i0:i1])
            if part.explicit is not None:
                out.explicit[i0:i1] = part.explicit
            for (d, a), (pd, pa) in zip(out.hadamard + out.positional,
                                        part.hadamard + part.positional, strict=True):
                d[i0:i1] = pd
                a[i0:i1] = pa
            del part
        return out

    def _factor_rows(self) -> int:
        """Rows whose factors fit half of the memory budget."""
        return int(max(1, (self._budget() // 2) // self._factor_row_bytes))

    def _fill_layerwise(self, px: _Prepared, py: _Prepared, out: np.ndarray,
                        symmetric: bool) -> None:
        from kernelcomp import _torch_layers as tl

        torch = _import_torch()
        n, m = px.n, py.n
        fx = px.factors
        fy = fx if symmetric else py.factors
        if fx is None and n <= self._factor_rows() // (1 if symmetric else 2):
            fx = self._factors(px.x)
            if symmetric:
                fy = fx
        if fy is None and m <= self._factor_rows() // 2:
            fy = self._factors(py.x)
        if fx is not None and fy is not None:
            tl.contract(fx, fy, out, symmetric, torch)
            return
        # rows do not fit: outer blocks (3/4 of the factor budget) held, inner ones in turn
        rows = self._factor_rows()
        outer = int(max(1, min(n, 3 * rows // 4)))
        inner = int(max(1, rows // 4))
        for i0 in range(0, n, outer):
            i1 = min(n, i0 + outer)
            fi = fx.take(i0, i1) if fx is not None else self._factors(px.x[i0:i1])
            if symmetric:
                tl.contract(fi, fi, out[i0:i1, i0:i1], True, torch)
                j_start = i1
            else:
                j_start = 0
            for j0 in range(j_start, m, inner):
                j1 = min(m, j0 + inner)
                fj = fy.take(j0, j1) if fy is not None else self._factors(py.x[j0:j1])
                tl.contract(fi, fj, out[i0:i1, j0:j1], False, torch)
                if symmetric:
                    out[j0:j1, i0:i1] = out[i0:i1, j0:j1].T
                del fj
            del fi

    def describe(self) -> str:
        """How the kernel is computed, layer by layer (a table).

        Returns
        -------
        str
            One line per parametrised layer of the layerwise engine: its path,
            class, selected parameter entries, positions per sample, route
            (``structured``, ``explicit``, or ``jacobian`` for the per-sample
            Jacobian of ``torch.func``) and the per-pair costs compared; or the
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
            lines.append("  TorchScript module rebuilt as eager torch.nn modules")
        lines.append(f"  {'layer':24} {'class':14} {'params':>9} {'pos':>6} {'route':10} "
                     "cost/pair (explicit, structured)")
        for L in self._layers:
            c = L.costs
            cost = ", ".join(f"{c[k]:.3g}" for k in ("explicit", "structured") if k in c)
            lines.append(f"  {L.path or '(root)':24} {type(L.module).__name__:14} "
                         f"{L.n_params:9d} {L.positions:6d} {L.route:10} {cost}")
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
        if self._method == "layerwise" and n <= self._factor_rows() and n > 1:
            # every row's factors once (kc.gram's blocks then only contract them)
            with self._lock, _torch_threads():
                return _Prepared(n, x, self._factors(x))
        return _Prepared(n, x)

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


def _positions(layer: Any, a: Any, z: Any) -> int:
    """Positions per sample at which one call of a layer applies its weights."""
    b = z.shape[0]
    if layer.kind == "conv":
        return int(z[0, 0].numel())
    if layer.kind in ("linear", "embedding"):
        return int(z.numel() // (b * z.shape[-1]))
    return 1


def _unscript(module: Any, torch: Any) -> Any:
    """An eager copy of a TorchScript module made of ``torch.nn`` modules, or None.

    Containers must be ``nn.Sequential`` and every leaf a ``torch.nn`` class
    whose constructor arguments are readable attributes of the scripted module
    (the constants TorchScript keeps); the copy must give the same outputs on a
    probe batch. Anything else (custom modules, their own ``forward``) gives
    None: the scripted module is then differentiated as a black box.
    """
    import inspect
    from collections import OrderedDict

    nn = torch.nn

    def build(s: Any) -> Any:
        name = getattr(s, "original_name", None)
        cls = getattr(nn, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(name)
        children = list(s.named_children())
        if cls is nn.Sequential:
            return nn.Sequential(OrderedDict((n, build(c)) for n, c in children))
        if children:
            raise ValueError(name)
        kwargs: dict[str, Any] = {}
        for pname, prm in inspect.signature(cls.__init__).parameters.items():
            if pname in ("self", "device", "dtype") or pname.startswith("_") or prm.kind in (
                    prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
                continue
            if pname == "bias":
                kwargs["bias"] = getattr(s, "bias", None) is not None
            elif hasattr(s, pname):
                kwargs[pname] = getattr(s, pname)
            elif prm.default is inspect.Parameter.empty:
                raise ValueError(pname)
        m = cls(**kwargs)
        state = s.state_dict()
        ref = next((t for t in state.values() if t.is_floating_point()), None)
        if ref is not None:  # before loading: load_state_dict casts to the module's dtype
            m = m.to(device=ref.device, dtype=ref.dtype)
        m.load_state_dict(state, strict=True)
        for (_, p), (_, q) in zip(m.named_parameters(), s.named_parameters(), strict=True):
            p.requires_grad_(q.requires_grad)
        return m

    try:
        eager = build(module)
        p0 = next(module.parameters(), None)
        if p0 is not None:
            eager = eager.to(device=p0.device, dtype=p0.dtype)
        return eager.eval()
    except Exception:
        return None


def _rebuild(module: Any, options: dict[str, Any], fingerprint: str) -> TorchNTK:
    k = TorchNTK(module, **options)
    if k.fingerprint != fingerprint:  # pragma: no cover - a corrupted pickle
        raise ValueError("the unpickled module does not match the kernel's fingerprint")
    return k
