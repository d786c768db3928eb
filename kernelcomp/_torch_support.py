"""Module-level helpers of :class:`~kernelcomp._torch_ntk.TorchNTK`.

The torch import, thread limits, argument checks, parameter selection, the fingerprint,
activation counts and TorchScript detection/rebuilding.

PyTorch is imported inside the functions of this module only.
"""

from __future__ import annotations

import copy
import hashlib
import numbers
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._torch_export import check_dynamic_batch, eager_layers, traced_input_shape
from kernelcomp._validation import check_dtype, check_int

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
        traced = traced_input_shape(module, torch)  # an exported module knows it
        if traced and len(traced) > 1 and all(isinstance(d, int) for d in traced[1:]):
            return tuple(int(d) for d in traced[1:])
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


# ---------------------------------------------------------------------------
# the steps of TorchNTK.__init__
# ---------------------------------------------------------------------------
def _check_options(module: Any, method: Any, route: Any, max_memory: Any, dtype: Any,
                   device: Any, torch: Any) -> tuple[int | None, np.dtype, Any, Any]:
    """Check the module's type and the options; ``(max_memory, dtype, torch dtype, device)``."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_dynamic_batch(module, torch)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    if route not in _FORCED:
        raise ValueError(f"unknown _route {route!r}; expected one of {list(_FORCED)}")
    if max_memory is not None:
        max_memory = check_int(max_memory, "max_memory", minimum=1)
    dt = _check_kernel_dtype(dtype, torch)
    tdt = torch.float32 if dt == np.float32 else torch.float64
    dev = _check_device(device, torch)
    return max_memory, dt, tdt, dev


def _frozen_copy(module: Any, dev: Any, tdt: Any) -> Any:
    """A deep copy of ``module`` on ``dev`` in dtype ``tdt``, in eval mode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # copying exported programs' modules
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
    return frozen


def _eager_version(frozen: Any, shape: tuple[int, ...], tdt: Any, dev: Any, method: str,
                   torch: Any) -> tuple[bool, Any, str]:
    """``(scripted, eager copy or None, method)``: the module the layerwise engine reads.

    A TorchScript module is rebuilt from ``torch.nn`` modules (:func:`_unscript`);
    one that cannot be rebuilt (or whose rebuild differs) takes
    ``method="jacobian"`` in place of the default; other methods then raise. An
    exported module (``torch.export``) gets its layer calls as ``torch.nn``
    layers for ``method="layerwise"`` (:func:`~kernelcomp._torch_export.eager_layers`);
    if that copy differs, the module itself (every parameter by the per-sample
    Jacobian).
    """
    scripted = _is_scripted(frozen, torch)
    if scripted:
        eager = _unscript(frozen, torch)
    elif method == "layerwise":
        eager = eager_layers(frozen, torch)[0]
    else:
        eager = frozen
    if eager is not None and eager is not frozen:  # the copy must compute the same function
        gen = torch.Generator(device="cpu").manual_seed(0)
        xr = torch.randn((2, *shape), generator=gen, dtype=tdt).to(dev)
        try:
            with torch.no_grad():
                ye, yf = eager(xr), frozen(xr)
                if scripted:
                    same = bool(torch.allclose(ye, yf))
                else:  # the same ATen calls: equal to a few rounding errors
                    tol = 64 * torch.finfo(tdt).eps
                    same = bool(torch.allclose(ye, yf, rtol=tol,
                                               atol=tol * float(yf.abs().max())))
        except Exception:
            same = False
        if not same:
            eager = None if scripted else frozen
    if scripted and eager is None and method == "layerwise":
        method = "jacobian"  # a TorchScript module the engine cannot rebuild
    if scripted and eager is None and method != "jacobian":
        raise ValueError(
            f"method={method!r} needs torch.func, which TorchScript modules do not support; "
            "use method='jacobian'"
        )
    return scripted, eager, method


def _probe_module(frozen: Any, scripted: bool, shape: tuple[int, ...], tdt: Any, dev: Any,
                  torch: Any) -> tuple[Any, int, int]:
    """``(probe, activations, K)``: the module applied to one zero sample, its output checked."""
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
    return probe, acts, K


def _check_output(output: Any, K: int) -> int | str | None:
    """The output selection of a module with ``K`` outputs (None: the mean)."""
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
    return output
