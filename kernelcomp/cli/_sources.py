"""What ``kpca`` and ``geometry`` read: Gram files, and networks with their points.

:func:`sources` turns the FILE arguments of a subcommand into :class:`Source`
items: a Gram file, or a network (loaded when needed, by
:func:`kernelcomp._checkpoints.load_network`) with its points and labels.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp.cli._common import UsageError, labels


def add_torch_options(p: Any) -> None:
    """``--model`` and ``--input-shape``: PyTorch checkpoints of any architecture."""
    from kernelcomp._argtypes import byte_size, int_list

    p.add_argument(
        "--max-memory", type=byte_size, metavar="BYTES",
        help="memory budget of a PyTorch model's empirical NTK besides the Gram itself, e.g. "
             "512M or 2G (default: a quarter of the memory available, at most 8G; -v says "
             "which budget ran and whether the per-sample factors were recomputed)",
    )
    p.add_argument(
        "--model", metavar="PKG.MODULE:FACTORY",
        help=".pt/.pth files are state dicts of the module FACTORY() returns (imported with "
             "the current folder on the path); torch.export (.pt2) and TorchScript files "
             "need none",
    )
    p.add_argument(
        "--input-shape", type=int_list, metavar="C,H,W",
        help="shape of one sample of a PyTorch model whose first layer is not Linear (the "
             "rows of the data are flattened samples; a torch.export program knows it)",
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
    from kernelcomp._checkpoints import TORCH_EXTENSIONS, file_kind, h5_format, load_network

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
                f"({'Gram/run' if grams else 'run/network'} files), .npz, .pt and .pt2 checkpoints"
            )
    return found


def _checkpoint_loader(p: Path, args: argparse.Namespace) -> Callable[[], Any]:
    from kernelcomp._checkpoints import load_network

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
            raise UsageError(f"{flag} applies to PyTorch models (torch.export, TorchScript or "
                             "--model)")
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
