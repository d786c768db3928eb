"""Networks from checkpoint files of every kind, in one place below the command line.

:func:`load_network` reads ``.npz`` (``FCNetwork.save`` or a state dict of
arrays), network ``.h5``, a checkpoint of a run file, and PyTorch
``.pt``/``.pth``/``.pt2`` checkpoints of any architecture (:func:`load_torch`:
``torch.export`` programs, TorchScript files, or state dicts with the model's
factory ``package.module:factory``; never arbitrary pickles). ``kernelcomp
gram``, ``kpca`` and ``geometry`` read their networks through it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernelcomp import _torch_ntk, io
from kernelcomp._h5 import _file_format
from kernelcomp._torch_export import exported_module
from kernelcomp.network import FCNetwork

__all__ = [
    "TORCH_EXTENSIONS",
    "file_kind",
    "h5_format",
    "is_exported_file",
    "load_network",
    "load_torch",
]


#: extensions of PyTorch checkpoints (``.pt2``: ``torch.export.save``'s programs)
TORCH_EXTENSIONS = (".pt", ".pth", ".pt2")


def file_kind(p: Path) -> str:
    """The extension that says how to read ``p`` (that of ``x.h5`` for ``x.h5.partial``)."""
    ext = p.suffix.lower()
    if ext == ".partial":  # the partial file of a run that did not finish
        ext = Path(p.stem).suffix.lower()
    return ext


def h5_format(path: Path) -> str | None:
    """The ``kernelcomp_format`` of an HDF5 file (None for a foreign one)."""
    return _file_format(path)


def load_network(p: Path, activation: str | None = None, checkpoint: int = -1,
                 model: str | None = None) -> Any:
    """A network from a .npz, .pt, network .h5 or run file (one of its checkpoints).

    An :class:`~kernelcomp.network.FCNetwork`, or a ``torch.nn.Module`` for an
    exported program, a TorchScript file or a state dict with ``model`` (see
    :func:`load_torch`).
    """
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    ext = file_kind(p)
    if ext in TORCH_EXTENSIONS:
        return load_torch(p, activation, model)
    if model is not None:
        raise ValueError(f"{p}: model (a factory) applies to PyTorch .pt/.pth checkpoints")
    if activation is not None and ext != ".npz":
        raise ValueError(f"{p}: activation applies to .pt / state-dict .npz files")
    if ext == ".npz":
        return FCNetwork.load(p, **({} if activation is None else {"activation": activation}))
    if ext in (".h5", ".hdf5"):
        fmt = h5_format(p)
        if fmt == "network":
            return FCNetwork.load(p)
        if fmt == "run":
            run = io.open_run(p)
            n = len(run.checkpoints)
            if not -n <= checkpoint < n:
                raise ValueError(f"{p} has {n} checkpoints; checkpoint {checkpoint} is out "
                                 "of range")
            return run.checkpoints[checkpoint].network
        raise ValueError(f"{p} is not a kernelcomp network or run file")
    raise ValueError(f"{p}: unsupported network file type {p.suffix or '(none)'!r}; expected "
                     ".npz, .pt, .pt2 or .h5")


#: what a pickled whole model should be saved as instead
_PICKLE_HINT = (
    "save it with torch.save(model.state_dict(), path) and pass that file (with "
    "the model's factory (package.module:factory) unless it is a Linear stack), or export "
    "it: torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: "
    "torch.export.Dim('batch')},)), 'model.pt2'), or save a TorchScript file: "
    "torch.jit.save(torch.jit.script(model), path)"
)


def _import_torch(path: Path) -> Any:
    return _torch_ntk._import_torch(f"{path}: reading .pt checkpoints")


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.split("/")[1:2] == ["code"] for name in z.namelist())


def is_exported_file(path: Path) -> bool:
    """Whether ``path`` is a ``torch.export.save`` archive (a zip with an ``archive_format``)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.split("/")[-1] == "archive_format" for name in z.namelist())


def load_torch(path: Path, activation: str | None, model: str | None = None) -> Any:
    """A network from a PyTorch checkpoint, never unpickling arbitrary objects.

    * an exported program (``torch.export.save``, ``.pt2``): ``torch.export.load``
      and its ``.module()``, a ``torch.nn.Module`` (its batch dimension must
      have been exported as dynamic);
    * a TorchScript file: ``torch.jit.load`` (a ``torch.nn.Module``);
    * a state dict (``torch.load(weights_only=True)``, also ``{"state_dict": ...}``)
      with ``model = "package.module:factory"``: the factory's module with these
      weights (``load_state_dict(strict=True)``, eval mode);
    * a state dict of a Linear stack without ``model``:
      :meth:`FCNetwork.from_torch <kernelcomp.network.FCNetwork.from_torch>`.
    """
    torch = _import_torch(path)
    if is_exported_file(path):
        if model is not None or activation is not None:
            what = "the model (a factory)" if model is not None else "the activation option"
            raise ValueError(f"{path} is a torch.export program, which holds its model; "
                             f"{what} does not apply to it")
        try:
            program = torch.export.load(path)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read as a torch.export program ({exc})") from exc
        return exported_module(program, torch, str(path))
    if is_torchscript(path):
        if model is not None:
            raise ValueError(f"{path} is a TorchScript file, which holds its model; drop the model")
        if activation is not None:
            raise ValueError(f"{path} is a TorchScript file: the activation option does not "
                             "apply to it")
        try:
            return torch.jit.load(path, map_location="cpu").eval()
        except Exception as exc:
            raise ValueError(f"{path}: cannot read as a TorchScript file ({exc})") from exc
    state = _state_dict(path, torch)
    if model is None:
        shaped = [k for k, v in state.items() if v.ndim > 2]
        if shaped:
            raise ValueError(
                f"{path} is the state dict of a model that is not a Linear stack ({shaped[0]} "
                f"has shape {tuple(state[shaped[0]].shape)}): pass its factory with --model "
                "package.module:factory (and --input-shape, e.g. 1,28,28, when the model "
                "does not fix the shape of one sample), or save it with torch.export (.pt2)"
            )
        try:
            return FCNetwork.from_torch(state, activation=activation or "relu")
        except ValueError as exc:  # not a Linear stack after all (BatchNorm, embeddings...)
            raise ValueError(
                f"{path}: {exc}; a state dict of another architecture needs its factory: "
                "--model package.module:factory (and --input-shape when the model does not "
                "fix the shape of one sample), or save it with torch.export (.pt2)"
            ) from exc
    if activation is not None:
        raise ValueError("activation applies to state dicts of Linear stacks, not with a model "
                         "factory (the factory's module has its activations)")
    module = build_model(model, torch)
    _check_state_dict(state, module, path, model)
    floating = [v.dtype for v in state.values() if v.is_floating_point()]
    if floating:  # the checkpoint's precision, not the factory's default float32
        module = module.to(floating[0])
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ValueError(f"{path} does not fit the model of {model} ({exc})") from exc
    return module.eval()


def _state_dict(path: Path, torch: Any) -> dict[str, Any]:
    """The tensors of a state-dict file (``weights_only=True``: no arbitrary objects)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc):
            # a whole pickled model (classes to import): loading it would run arbitrary code
            raise ValueError(
                f"{path} holds a pickled model, not a state dict; {_PICKLE_HINT}"
            ) from exc
        raise ValueError(
            f"{path}: cannot read as a PyTorch state dict ({type(exc).__name__}: {exc}); "
            "PyTorch checkpoints are torch.export programs (.pt2), TorchScript files or "
            "state dicts saved with torch.save"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict (names -> "
                         "tensors)")
    return obj


#: ``package.module:factory`` (the factory may be an attribute path, ``Class.create``)
_MODEL_SPEC = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")


def build_model(spec: str, torch: Any) -> Any:
    """The module ``factory()`` of ``--model package.module:factory``.

    The module is imported with the current folder on ``sys.path`` (as
    ``python -m`` would); the factory is called without arguments and must
    return a ``torch.nn.Module``.
    """
    match = _MODEL_SPEC.match(spec)
    if match is None:
        raise ValueError(f"model must be package.module:factory, got {spec!r}")
    module_name, attr = match.groups()
    with _cwd_on_path():
        try:
            mod = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(f"model {spec}: cannot import {module_name} ({exc})") from exc
        except Exception as exc:
            raise ValueError(f"model {spec}: importing {module_name} failed "
                             f"({type(exc).__name__}: {exc})") from exc
    factory: Any = mod
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"model {spec}: {module_name} has no {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TypeError(f"model {spec}: {attr} is a {type(factory).__name__}, not a factory")
    try:
        obj = factory()
    except Exception as exc:
        raise ValueError(f"model {spec}: the factory failed ({type(exc).__name__}: "
                         f"{exc})") from exc
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"model {spec}: the factory returned a {type(obj).__name__}, not a "
                        "torch.nn.Module")
    return obj


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def _check_state_dict(state: dict[str, Any], module: Any, path: Path, spec: str) -> None:
    """One line naming what does not match (missing, unexpected, differently shaped)."""
    expected = module.state_dict()

    def some(names: list[str]) -> str:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = ([f"missing {some(missing)}"] if missing else []) + (
        [f"unexpected {some(unexpected)}"] if unexpected else []) + (
        [f"shapes (file vs model) {some(shapes)}"] if shapes else [])
    if problems:
        raise ValueError(f"{path} does not fit the model of {spec}: "
                         + "; ".join(problems))
