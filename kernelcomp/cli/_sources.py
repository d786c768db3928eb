"""What ``kpca`` and ``geometry`` read: networks from checkpoint files, and their sources.

:func:`load_network` reads ``.npz`` (``FCNetwork.save`` or a state dict of
arrays), network ``.h5``, a checkpoint of a run file, and PyTorch ``.pt``/``.pth``
checkpoints of any architecture (:func:`load_torch`: TorchScript files, or
state dicts with the model's factory; never arbitrary pickles).
:func:`sources` turns the FILE arguments of a subcommand into :class:`Source`
items: a Gram file, or a network (loaded when needed) with its points and labels.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp.cli._common import UsageError, file_kind, h5_format, labels

#: extensions of PyTorch checkpoints
TORCH_EXTENSIONS = (".pt", ".pth")


def load_network(p: Path, activation: str | None, checkpoint: int = -1,
                 model: str | None = None) -> Any:
    """A network from a .npz, .pt, network .h5 or run file (one of its checkpoints).

    An :class:`~kernelcomp.network.FCNetwork`, or a ``torch.nn.Module`` for a
    TorchScript file or a state dict with ``model`` (see :func:`load_torch`).
    """
    from kernelcomp import io
    from kernelcomp.network import FCNetwork

    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    ext = file_kind(p)
    if ext in TORCH_EXTENSIONS:
        return load_torch(p, activation, model)
    if model is not None:
        raise UsageError(f"{p}: --model applies to PyTorch .pt/.pth checkpoints")
    if activation is not None and ext != ".npz":
        raise UsageError(f"{p}: the activation option applies to .pt / state-dict .npz files")
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
                raise ValueError(f"{p} has {n} checkpoints; --checkpoint {checkpoint} is out "
                                 "of range")
            return run.checkpoints[checkpoint].network
        raise ValueError(f"{p} is not a kernelcomp network or run file")
    raise ValueError(f"{p}: unsupported network file type {p.suffix or '(none)'!r}; expected "
                     ".npz, .pt or .h5")


#: what a pickled whole model should be saved as instead
_PICKLE_HINT = (
    "save it with torch.save(model.state_dict(), path) and pass that file (with "
    "--model package.module:factory unless the model is a Linear stack), or save a "
    "TorchScript file: torch.jit.save(torch.jit.script(model), path)"
)


def _import_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{path}: reading .pt checkpoints needs PyTorch (pip install 'kernelcomp[torch]')"
        ) from exc
    return torch


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.split("/")[1:2] == ["code"] for name in z.namelist())


def load_torch(path: Path, activation: str | None, model: str | None = None) -> Any:
    """A network from a PyTorch checkpoint, never unpickling arbitrary objects.

    * a TorchScript file: ``torch.jit.load`` (a ``torch.nn.Module``);
    * a state dict (``torch.load(weights_only=True)``, also ``{"state_dict": ...}``)
      with ``model = "package.module:factory"``: the factory's module with these
      weights (``load_state_dict(strict=True)``, eval mode);
    * a state dict of a Linear stack without ``model``:
      :meth:`FCNetwork.from_torch <kernelcomp.network.FCNetwork.from_torch>`.
    """
    from kernelcomp.network import FCNetwork

    torch = _import_torch(path)
    if is_torchscript(path):
        if model is not None:
            raise UsageError(f"{path} is a TorchScript file, which holds its model; drop --model")
        if activation is not None:
            raise UsageError(f"{path} is a TorchScript file: the activation option does not "
                             "apply to it")
        try:
            return torch.jit.load(path, map_location="cpu").eval()
        except Exception as exc:
            raise ValueError(f"{path}: cannot read as a TorchScript file ({exc})") from exc
    state = _state_dict(path, torch)
    if model is None:
        return FCNetwork.from_torch(state, activation=activation or "relu")
    if activation is not None:
        raise UsageError("the activation option applies to state dicts of Linear stacks, not "
                         "with --model (the factory's module has its activations)")
    module = build_model(model, torch)
    _check_state_dict(state, module, path, model)
    floating = [v.dtype for v in state.values() if v.is_floating_point()]
    if floating:  # the checkpoint's precision, not the factory's default float32
        module = module.to(floating[0])
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ValueError(f"{path} does not fit the model of --model {model} ({exc})") from exc
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
        raise ValueError(f"{path}: cannot read as a PyTorch state dict ({exc})") from exc
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
        raise UsageError(f"--model must be package.module:factory, got {spec!r}")
    module_name, attr = match.groups()
    with _cwd_on_path():
        try:
            mod = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(f"--model {spec}: cannot import {module_name} ({exc})") from exc
        except Exception as exc:
            raise ValueError(f"--model {spec}: importing {module_name} failed "
                             f"({type(exc).__name__}: {exc})") from exc
    factory: Any = mod
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"--model {spec}: {module_name} has no {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TypeError(f"--model {spec}: {attr} is a {type(factory).__name__}, not a factory")
    try:
        obj = factory()
    except Exception as exc:
        raise ValueError(f"--model {spec}: the factory failed ({type(exc).__name__}: "
                         f"{exc})") from exc
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"--model {spec}: the factory returned a {type(obj).__name__}, not a "
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
        raise ValueError(f"{path} does not fit the model of --model {spec}: "
                         + "; ".join(problems))


def add_torch_options(p: Any) -> None:
    """``--model`` and ``--input-shape``: PyTorch checkpoints of any architecture."""
    from kernelcomp._argtypes import byte_size, int_list

    p.add_argument(
        "--max-memory", type=byte_size, metavar="BYTES",
        help="memory budget of a PyTorch model's empirical NTK besides the Gram itself, e.g. "
             "512M or 2G (default: a quarter of the memory available, at most 1G)",
    )
    p.add_argument(
        "--model", metavar="PKG.MODULE:FACTORY",
        help=".pt/.pth files are state dicts of the module FACTORY() returns (imported with "
             "the current folder on the path); TorchScript files need none",
    )
    p.add_argument(
        "--input-shape", type=int_list, metavar="C,H,W",
        help="shape of one sample of a PyTorch model whose first layer is not Linear (the "
             "rows of the data are flattened samples)",
    )


@dataclass
class Source:
    """One item to analyse: a Gram file, or a checkpoint's network with its points."""

    label: str
    origin: str
    gram_path: Path | None = None
    network: Callable[[], Any] | None = None
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def sources(args: argparse.Namespace, command: str, *, grams: bool = True) -> list[Source]:
    """The sources named by ``args.files`` (with ``--data``/``--labels``/``--split``).

    Every file is checked (and the data read) before any work. ``grams=False``
    refuses Gram files (the subcommand needs networks).
    """
    from kernelcomp import io

    X_cli = None if args.data is None else io.read_array(args.data, key=args.data_key,
                                                         name="--data")
    y_cli = None if args.labels is None else io.read_array(
        args.labels, key=args.labels_key, name="--labels"
    )
    if X_cli is not None:
        from kernelcomp._validation import check_matrix

        X_cli = check_matrix(X_cli, "--data")
    reads = "Gram, run or network files" if grams else "run or network files"
    found: list[Source] = []
    for name in args.files:
        p = Path(name)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        ext = file_kind(p)
        if ext in (".h5", ".hdf5"):
            fmt = h5_format(p)
            if fmt == "gram" and grams:
                found.append(_gram_source(p, X_cli, y_cli, command))
            elif fmt == "run":
                found.extend(_run_sources(p, X_cli, y_cli, args.split))
            elif fmt == "network":
                found.append(_checkpoint_source(p, lambda p=p: load_network(p, None), X_cli,
                                                y_cli))
            elif fmt is None:
                raise ValueError(f"{p} is not a kernelcomp file (no 'kernelcomp_format' attribute)")
            else:
                raise ValueError(f"{p} is a kernelcomp {fmt!r} file; {command} reads {reads}")
        elif ext in (".npz", *TORCH_EXTENSIONS):
            found.append(_checkpoint_source(p, _checkpoint_loader(p, args), X_cli, y_cli))
        else:
            raise ValueError(
                f"{p}: unsupported file type {p.suffix or '(none)'!r}; {command} reads .h5 "
                f"({'Gram/run' if grams else 'run/network'} files), .npz and .pt checkpoints"
            )
    return found


def _checkpoint_loader(p: Path, args: argparse.Namespace) -> Callable[[], Any]:
    return lambda: load_network(p, args.activation, model=getattr(args, "model", None))


def _gram_source(p: Path, X: np.ndarray | None, y: Any, command: str) -> Source:
    from kernelcomp import io

    info = io.read_gram_info(p)
    if X is not None:
        raise UsageError(f"{p} is a Gram file: --data does not apply to it")
    n, m = info.shape
    if n != m:
        raise ValueError(f"{p} holds a {n} x {m} cross Gram; {command} needs a square one")
    return Source(p.name, os.fspath(p), gram_path=p,
                  y=None if y is None else labels(y, "--labels", n))


def _run_sources(p: Path, X_cli: np.ndarray | None, y_cli: Any, split: str) -> list[Source]:
    """One source per checkpoint of a run file, on its data (or on --data)."""
    from kernelcomp import io

    run = io.open_run(p)
    if X_cli is not None:
        X = X_cli
        y = None if y_cli is None else labels(y_cli, "--labels", X.shape[0])
    else:
        if f"X_{split}" not in run.data:
            raise ValueError(f"{p} stores no {split} data (--split {split})")
        X = run.data[f"X_{split}"]
        y_raw = run.data[f"y_{split}"] if y_cli is None else y_cli
        y = labels(y_raw, "labels" if y_cli is None else "--labels", X.shape[0])
    if not run.checkpoints:
        raise ValueError(f"{p} holds no checkpoints")
    return [
        Source(f"{p.stem}:step {c.step}", os.fspath(p), network=(lambda c=c: c.network), X=X,
               y=y, meta={"step": c.step, "time": c.time, "checkpoint": c.index})
        for c in run.checkpoints
    ]


def _checkpoint_source(
    p: Path, load: Callable[[], Any], X: np.ndarray | None, y: Any
) -> Source:
    if X is None:
        raise UsageError(f"{p} is a network checkpoint: pass --data (and --labels)")
    yv = None if y is None else labels(y, "--labels", X.shape[0])
    return Source(p.name, os.fspath(p), network=load, X=X, y=yv)


def empirical_ntk(net: Any, params: str = "all", input_shape: Any = None,
                  dtype: str | None = None, max_memory: int | None = None) -> Any:
    """The empirical NTK of a loaded network: EmpiricalNTK, or TorchNTK for a torch module."""
    from kernelcomp.network import FCNetwork

    if isinstance(net, FCNetwork):
        if input_shape is not None or max_memory is not None:
            flag = "--input-shape" if input_shape is not None else "--max-memory"
            raise UsageError(f"{flag} applies to PyTorch models (TorchScript or --model)")
        from kernelcomp.empirical import EmpiricalNTK

        return EmpiricalNTK(net, params=params)
    if params not in ("all", "last"):
        raise UsageError(f"--params {params} applies to kernelcomp networks; a PyTorch model "
                         "takes all or last")
    from kernelcomp._torch_ntk import TorchNTK

    try:
        return TorchNTK(net, params=params, input_shape=input_shape, dtype=dtype or "float64",
                        max_memory=max_memory)
    except ValueError as exc:
        if input_shape is None and "input_shape is required" in str(exc):
            raise UsageError("the PyTorch model does not fix the shape of one sample: pass "
                             "--input-shape (e.g. 1,28,28; the rows of the data are then "
                             "flattened samples)") from exc
        raise
