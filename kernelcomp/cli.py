"""The ``kernelcomp`` command line.

.. code-block:: text

    kernelcomp gram INPUT [--y INPUT2] --kernel {ntk,nngp} --depth L --activation A
                    --weight-std S --bias-std S -o OUT.h5 [--dtype float32|float64]
                    [--n-jobs N] [--resume] [--force]
    kernelcomp gram INPUT --network CKPT [--checkpoint I] [--params P] -o OUT.h5 ...
    kernelcomp kpca RUN_OR_GRAM.h5 -o DIAG.h5 [--n-components K] [--plot DIR]
    kernelcomp kpca RUN.h5 --into-run [--name kpca]      (diagnostics inside the run file)
    kernelcomp kpca CKPT [CKPT ...] --data X.npy --labels y.npy -o DIAG.h5
    kernelcomp info FILE.h5
    kernelcomp train ... / kernelcomp demo ...   (from kernelcomp.demo, when present)

:func:`main` returns the exit status: 0 on success, 2 for a user error (one
line on stderr, never a traceback; ``--traceback`` shows it), 130 when
interrupted (Ctrl-C). :func:`build_parser` builds the argument parser.

References
----------
Paccolat et al. (2021), *Geometric compression of invariant manifolds in
neural networks*, §3 (kernel PCA of the empirical NTK along training).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp._argtypes import int_list, n_jobs, positive_int, stds, widths
from kernelcomp._version import __version__

__all__ = ["build_parser", "main"]

#: exit status of a user error / of an interrupted command
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised (one line), not printed with usage."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")


def _add_gram(sub: Any) -> None:
    p = sub.add_parser(
        "gram",
        help="compute an NTK/NNGP Gram matrix (analytic or of a network) into HDF5",
        description=(
            "Compute the Gram matrix of an analytic kernel, or of the empirical kernel of a "
            "network checkpoint (--network), on the rows of INPUT (against the rows of --y "
            "if given) into an HDF5 Gram file, block by block. "
            "Ctrl-C stops at a block boundary and keeps the completed blocks in "
            "OUT.partial; --resume continues them."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="samples (.npy, .npz, .csv or .h5), n x d")
    p.add_argument("--key", metavar="NAME", help="array name inside an .npz/.h5 INPUT")
    p.add_argument("--y", metavar="INPUT2", help="second samples (m x d): cross Gram")
    p.add_argument("--y-key", metavar="NAME", help="array name inside an .npz/.h5 INPUT2")
    p.add_argument("--kernel", choices=("ntk", "nngp"), default="ntk", help="default: ntk")
    analytic = p.add_argument_group("analytic kernel (infinite width)")
    analytic.add_argument(
        "--depth", type=int, default=argparse.SUPPRESS, metavar="L",
        help="hidden layers (default 1)",
    )
    analytic.add_argument(
        "--activation", choices=("relu", "relu_unit", "erf"), default=argparse.SUPPRESS,
        help="default: relu",
    )
    analytic.add_argument(
        "--weight-std", type=stds, metavar="S", default=argparse.SUPPRESS,
        help="sigma_w, one value or one per Dense layer, comma separated (default 1.0)",
    )
    analytic.add_argument(
        "--bias-std", type=stds, metavar="S", default=argparse.SUPPRESS,
        help="sigma_b, as --weight-std; 'none' for no bias (default 0.0)",
    )
    analytic.add_argument(
        "--parameterization", choices=("ntk", "standard"), default=argparse.SUPPRESS,
        help="default: ntk",
    )
    analytic.add_argument(
        "--width", type=widths, default=argparse.SUPPRESS, metavar="N",
        help="hidden width(s), for --parameterization standard",
    )
    empirical = p.add_argument_group("empirical kernel of a finite network")
    empirical.add_argument(
        "--network", metavar="CKPT",
        help="network file (.npz, .pt, .h5 network or run file): its empirical NTK/NNGP",
    )
    empirical.add_argument(
        "--checkpoint", type=int, default=-1, metavar="I",
        help="checkpoint index in a run file --network (default -1: the last)",
    )
    empirical.add_argument(
        "--params", default="all", metavar="P",
        help="empirical NTK parameters: all (default), last, headless",
    )
    empirical.add_argument(
        "--network-activation", metavar="A",
        help="activation of a .pt / state-dict .npz --network (default relu)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="Gram file to write")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default: from the input")
    p.add_argument("--n-jobs", type=n_jobs, metavar="N", help="threads (default: all)")
    p.add_argument(
        "--block-rows", type=positive_int, metavar="N",
        help="rows per block (default: about 64 MiB of output per block)",
    )
    p.add_argument("--resume", action="store_true", help="continue OUT.h5.partial")
    p.add_argument("--force", action="store_true", help="overwrite OUT.h5 / restart")
    _common(p)
    p.set_defaults(func=_cmd_gram)


def _add_kpca(sub: Any) -> None:
    p = sub.add_parser(
        "kpca",
        help="kernel PCA diagnostics of Gram files or of checkpoints' empirical NTK",
        description=(
            "Uncentred kernel PCA (spectrum, label projection, mutual information) of a Gram "
            "file, or of the empirical NTK of every checkpoint of a run file, or of network "
            "checkpoints (.npz, .pt state dicts, run files) on --data/--labels."
        ),
    )
    p.add_argument("files", metavar="FILE", nargs="+", help="Gram/run .h5, .npz or .pt files")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", metavar="DIAG.h5", help="diagnostics file to write")
    where.add_argument(
        "--into-run", action="store_true",
        help="store the diagnostics inside the (single) run file, as group diagnostics/NAME",
    )
    p.add_argument("--name", default="kpca", help="group name for --into-run (default kpca)")
    p.add_argument("--data", metavar="X", help="samples for checkpoints (.npy/.npz/.csv/.h5)")
    p.add_argument("--labels", metavar="Y", help="labels (+-1) of --data or of a Gram file")
    p.add_argument("--data-key", metavar="NAME", help="array name inside an .npz/.h5 --data")
    p.add_argument("--labels-key", metavar="NAME", help="array name inside an .npz/.h5 --labels")
    p.add_argument(
        "--split", choices=("train", "test"), default="train",
        help="which data of a run file (default: train)",
    )
    p.add_argument(
        "--params", default="all", metavar="P",
        help="parameters of the empirical NTK: all (default), last, headless",
    )
    p.add_argument(
        "--activation", metavar="A",
        help="activation of .pt / state-dict .npz checkpoints (default relu)",
    )
    p.add_argument(
        "--n-components", type=positive_int, metavar="K",
        help="top eigenpairs (default: all up to n = 3000, else the top 200)"
    )
    p.add_argument(
        "--mi-components", type=positive_int, default=10, metavar="K",
        help="eigenvectors for the mutual information (default 10)",
    )
    p.add_argument(
        "--mi-k", type=positive_int, default=5, metavar="K", help="kNN k of the MI (default 5)"
    )
    p.add_argument(
        "--informative", type=int_list, metavar="J[,J...]",
        help="informative input directions (e.g. 0 or 0,1): also compute compression",
    )
    p.add_argument(
        "--eigenvectors", action="store_true", help="store the eigenvectors too"
    )
    p.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--dtype", choices=("float32", "float64"), help="dtype of the Gram matrices")
    p.add_argument("--n-jobs", type=n_jobs, metavar="N", help="threads (default: all)")
    p.add_argument("--force", action="store_true", help="overwrite DIAG.h5")
    _common(p)
    p.set_defaults(func=_cmd_kpca)


def _add_info(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="describe a kernelcomp HDF5 file",
        description="Print the format, versions and contents of kernelcomp files.",
    )
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``kernelcomp`` argument parser.

    The ``train`` and ``demo`` subcommands come from ``kernelcomp.demo``'s
    ``register(subparsers)`` when that module is present. Every subcommand
    sets ``func`` (``func(args) -> int``).

    Returns
    -------
    argparse.ArgumentParser
        Its ``error`` raises :class:`UsageError` instead of exiting.

    Examples
    --------
    >>> from kernelcomp.cli import build_parser
    >>> args = build_parser().parse_args(["info", "K.h5"])
    >>> args.command, args.files
    ('info', ['K.h5'])
    """
    parser = _Parser(
        prog="kernelcomp",
        description=(
            "Tangent kernels and the geometric compression of invariant manifolds "
            "(Paccolat et al. 2021): Gram matrices, kernel-PCA diagnostics, training runs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"kernelcomp {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_gram(sub)
    _add_kpca(sub)
    _add_info(sub)
    if importlib.util.find_spec("kernelcomp.demo") is not None:
        from kernelcomp import demo

        demo.register(sub)
    return parser


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        text = f"missing {exc.args[0]!r}"
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kernelcomp`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 success, 2 user error, 130 interrupted.

    Examples
    --------
    >>> from kernelcomp.cli import main
    >>> main(["info", "/nonexistent.h5"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"kernelcomp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = getattr(args, "command", None) or ""
    show_tb = args.traceback or os.environ.get("KERNELCOMP_TRACEBACK", "") not in ("", "0")
    from kernelcomp.io import GramInterrupted

    try:
        return int(func(args) or 0)
    except GramInterrupted as exc:
        print(f"kernelcomp {command}: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"kernelcomp {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_BROKEN_PIPE
    except (UsageError, ValueError, TypeError, OSError, KeyError, ImportError) as exc:
        if show_tb:
            raise
        print(f"kernelcomp {command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


@contextlib.contextmanager
def _deferred_sigint() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C: ask to stop at the next block boundary; second: abort."""
    state = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        if state["hit"]:
            raise KeyboardInterrupt
        state["hit"] = True
        print(
            "\nkernelcomp: stopping after the current block (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: state["hit"]
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------
# gram
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _report_partial(out: Path) -> Iterator[None]:
    """Turn a hard interrupt into GramInterrupted, which says what is kept and where."""
    from kernelcomp import io

    try:
        yield
    except KeyboardInterrupt:
        partial = out.with_name(out.name + io.PARTIAL_SUFFIX)
        try:
            info = io.read_gram_info(partial)
        except (OSError, ValueError):
            raise KeyboardInterrupt from None
        raise io.GramInterrupted(partial, info.blocks_done, info.n_blocks) from None


def _load_network(p: Path, activation: str | None, checkpoint: int = -1) -> Any:
    """A network from a .npz, .pt, network .h5 or run file (one of its checkpoints)."""
    from kernelcomp import io
    from kernelcomp.network import FCNetwork

    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    ext = p.suffix.lower()
    if ext == ".partial":
        ext = Path(p.stem).suffix.lower()
    if ext in (".pt", ".pth"):
        return _load_torch(p, activation)
    if activation is not None and ext != ".npz":
        raise UsageError(f"{p}: the activation option applies to .pt / state-dict .npz files")
    if ext == ".npz":
        return FCNetwork.load(p, **({} if activation is None else {"activation": activation}))
    if ext in (".h5", ".hdf5"):
        fmt = _h5_format(p)
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


def _cmd_gram(args: argparse.Namespace) -> int:
    from kernelcomp import io
    from kernelcomp.kernels import NNGP, NTK

    # analytic options default to "not given" (argparse.SUPPRESS): --bias-std none is a value
    names = ("depth", "activation", "weight_std", "bias_std", "parameterization", "width")
    given = {k: getattr(args, k) for k in names if hasattr(args, k)}
    if args.network is not None:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags} describe an analytic kernel; they do not apply with "
                             "--network")
        from kernelcomp.empirical import EmpiricalNNGP, EmpiricalNTK

        net = _load_network(Path(args.network), args.network_activation, args.checkpoint)
        if args.kernel == "ntk":
            kernel: Any = EmpiricalNTK(net, params=args.params)
        else:
            if args.params != "all":
                raise UsageError("--params applies to --kernel ntk only")
            kernel = EmpiricalNNGP(net)
    else:
        if args.params != "all" or args.network_activation is not None:
            raise UsageError("--params and --network-activation need --network")
        defaults = {"depth": 1, "activation": "relu", "weight_std": 1.0, "bias_std": 0.0,
                    "parameterization": "ntk", "width": None}
        cls = NTK if args.kernel == "ntk" else NNGP
        kernel = cls(**{**defaults, **given})
    out = Path(args.output)
    if out.exists() and not (args.force or args.resume):
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    X = io.read_array(args.input, key=args.key, name="INPUT")
    Y = None if args.y is None else io.read_array(args.y, key=args.y_key, name="INPUT2")
    inputs = {"X": os.fspath(args.input), "X_key": args.key}
    if args.network is not None:
        inputs.update(network=os.fspath(args.network), checkpoint=args.checkpoint)
    if args.y is not None:
        inputs.update(Y=os.fspath(args.y), Y_key=args.y_key)
    t0 = time.perf_counter()
    with _deferred_sigint() as should_stop, _report_partial(out):
        info = io.compute_gram_file(
            kernel,
            X,
            Y,
            out,
            dtype=args.dtype,
            n_jobs=args.n_jobs,
            progress=_progress(args),
            resume=args.resume,
            force=args.force,
            block_rows=args.block_rows,
            inputs=inputs,
            should_stop=should_stop,
        )
    n, m = info.shape
    _say(
        args,
        f"wrote {out}: {n} x {m} {info.dtype.name} {kernel!r} in "
        f"{time.perf_counter() - t0:.1f} s",
    )
    return 0


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _describe(info: dict[str, Any]) -> list[str]:
    lines = [
        f"{info['path']}: kernelcomp {info['format']} file (format {info['format_version']}, "
        f"written by kernelcomp {info['kernelcomp_version']} at {info['created']})"
    ]
    if info["format"] == "network":
        lines.append(
            f"  network:    d={info['input_dim']}, widths {info['widths']}, "
            f"{info['n_outputs']} output(s), {info['activation']}, {info['parameterization']}, "
            f"{info['n_params']} parameters"
        )
    elif info["format"] == "gram":
        n, m = info["shape"]
        state = "complete" if info["complete"] else "INCOMPLETE (resume with --resume)"
        sym = "symmetric, " if info["symmetric"] else ""
        lines.append(
            f"  matrix:     {n} x {m} {info['dtype']}, {sym}{state}, blocks {info['blocks']}"
        )
        kernel = info["kernel"] or {}
        params = kernel.get("params") or {}
        desc = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)
        lines.append(f"  kernel:     {kernel.get('kernel', '-')}({desc})")
        lines.append(f"  input hash: {info['input_hash'] or '-'}")
        if info["inputs"]:
            shown = {k: v for k, v in info["inputs"].items() if v is not None}
            lines.append(f"  inputs:     {json.dumps(shown)}")
    elif info["format"] == "run":
        state = "complete" if info["complete"] else "INCOMPLETE (the run did not finish)"
        lines.append(f"  state:      {state}")
        data = ", ".join(f"{k} {tuple(v)}" for k, v in info["data"].items())
        lines.append(f"  data:       {data}")
        lines.append(f"  config:     {json.dumps(info['config'])}")
        if info["summary"]:
            lines.append(f"  summary:    {json.dumps(info['summary'])}")
        if info["diagnostics"]:
            lines.append(f"  diagnostics: {', '.join(info['diagnostics'])}")
        lines.append(f"  checkpoints: {len(info['checkpoints'])}")
        for i, c in enumerate(info["checkpoints"]):
            lines.append(
                f"    {i:4d}  step {c['step']:>8}  time {_fmt(c['time']):>10}  "
                f"loss {_fmt(c['loss']):>10}"
            )
    else:
        lines.append(f"  config:     {json.dumps(info['config'])}")
        lines.append(f"  entries:    {len(info['entries'])}")
        for i, e in enumerate(info["entries"]):
            values = ", ".join(f"{k}={_fmt(v)}" for k, v in e.get("values", {}).items())
            arrays = ", ".join(f"{k} {tuple(v)}" for k, v in e["arrays"].items())
            lines.append(f"    {i:4d}  {e['label']}: {values}")
            lines.append(f"          arrays: {arrays}")
    return lines


def _cmd_info(args: argparse.Namespace) -> int:
    from kernelcomp import io

    infos = [io.file_info(f) for f in args.files]  # all checked before printing
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2, default=str))
    else:
        for info in infos:
            print("\n".join(_describe(info)))
    return 0


# ---------------------------------------------------------------------------
# kpca
# ---------------------------------------------------------------------------
def _h5_format(path: Path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("kernelcomp_format")
    except OSError as exc:
        raise ValueError(f"{path} is not an HDF5 file ({exc})") from exc
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    return None if fmt is None else str(fmt)


class _Source:
    """One Gram matrix to analyse: from a Gram file or a checkpoint's network."""

    def __init__(
        self,
        label: str,
        origin: str,
        *,
        gram_path: Path | None = None,
        network: Callable[[], Any] | None = None,
        X: np.ndarray | None = None,
        y: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.label = label
        self.origin = origin
        self.gram_path = gram_path
        self.network = network
        self.X = X
        self.y = y
        self.meta = meta or {}


#: without --n-components, kpca decomposes fully up to this n, else the top _DEFAULT_TOP
_ALL_COMPONENTS_UP_TO = 3000
_DEFAULT_TOP = 200


def _labels(y: Any, name: str, n: int) -> np.ndarray:
    """Labels as float64; two classes other than -1/+1 are mapped to -1/+1.

    The paper's projections and MI use +-1 labels: with 0/1 labels the label
    vector has a large mean and the projections measure something else.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels, but there are {n} samples")
    classes = np.unique(arr)
    if classes.size == 2 and not (arr.dtype.kind in "iuf" and set(classes.tolist()) == {-1, 1}):
        print(
            f"kernelcomp: {name}: classes {classes[0]!r} -> -1 and {classes[1]!r} -> +1 "
            "(the paper's +-1 labels)",
            file=sys.stderr,
        )
        return np.where(arr == classes[1], 1.0, -1.0)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be numeric (real targets) or have two classes, got dtype {arr.dtype} "
            f"with {classes.size} classes"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr.astype(np.float64)


def _load_torch(path: Path, activation: str | None) -> Any:
    from kernelcomp.network import FCNetwork

    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{path}: reading .pt checkpoints needs PyTorch (pip install 'kernelcomp[torch]')"
        ) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc):
            # a whole pickled model (classes to import): loading it would run arbitrary code
            raise ValueError(
                f"{path} holds a pickled model, not a state dict; save it with "
                "torch.save(model.state_dict(), path) and pass that file"
            ) from exc
        raise ValueError(f"{path}: cannot read as a PyTorch state dict ({exc})") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return FCNetwork.from_torch(obj, activation=activation or "relu")


def _sources(args: argparse.Namespace) -> list[_Source]:
    from kernelcomp import io

    X_cli = None if args.data is None else io.read_array(args.data, key=args.data_key,
                                                         name="--data")
    y_cli = None if args.labels is None else io.read_array(
        args.labels, key=args.labels_key, name="--labels"
    )
    if X_cli is not None:
        from kernelcomp._validation import check_matrix

        X_cli = check_matrix(X_cli, "--data")
    sources: list[_Source] = []
    for name in args.files:
        p = Path(name)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        ext = p.suffix.lower()
        if ext == ".partial":  # the partial file of a run that did not finish
            ext = Path(p.stem).suffix.lower()
        if ext in (".h5", ".hdf5"):
            fmt = _h5_format(p)
            if fmt == "gram":
                info = io.read_gram_info(p)
                if X_cli is not None:
                    raise UsageError(f"{p} is a Gram file: --data does not apply to it")
                n, m = info.shape
                if n != m:
                    raise ValueError(f"{p} holds a {n} x {m} cross Gram; kpca needs a square one")
                y = None if y_cli is None else _labels(y_cli, "--labels", n)
                sources.append(_Source(p.name, os.fspath(p), gram_path=p, y=y))
            elif fmt == "run":
                run = io.open_run(p)
                if X_cli is not None:
                    X = X_cli
                    y = None if y_cli is None else _labels(y_cli, "--labels", X.shape[0])
                else:
                    key = "train" if args.split == "train" else "test"
                    if f"X_{key}" not in run.data:
                        raise ValueError(f"{p} stores no {key} data (--split {key})")
                    X = run.data[f"X_{key}"]
                    y_raw = run.data[f"y_{key}"] if y_cli is None else y_cli
                    y = _labels(y_raw, "labels" if y_cli is None else "--labels", X.shape[0])
                if not run.checkpoints:
                    raise ValueError(f"{p} holds no checkpoints")
                for c in run.checkpoints:
                    sources.append(
                        _Source(
                            f"{p.stem}:step {c.step}",
                            os.fspath(p),
                            network=(lambda c=c: c.network),
                            X=X,
                            y=y,
                            meta={"step": c.step, "time": c.time, "checkpoint": c.index},
                        )
                    )
            elif fmt == "network":
                sources.append(_checkpoint_source(p, lambda p=p: _load_network(p, None), X_cli,
                                                  y_cli))
            elif fmt is None:
                raise ValueError(f"{p} is not a kernelcomp file (no 'kernelcomp_format' attribute)")
            else:
                raise ValueError(
                    f"{p} is a kernelcomp {fmt!r} file; kpca reads Gram, run or network files"
                )
        elif ext in (".npz", ".pt", ".pth"):
            sources.append(
                _checkpoint_source(p, lambda p=p: _load_network(p, args.activation), X_cli,
                                   y_cli)
            )
        else:
            raise ValueError(
                f"{p}: unsupported file type {p.suffix or '(none)'!r}; kpca reads .h5 "
                "(Gram/run files), .npz and .pt checkpoints"
            )
    return sources


def _checkpoint_source(
    p: Path, load: Callable[[], Any], X: np.ndarray | None, y: Any
) -> _Source:
    if X is None:
        raise UsageError(f"{p} is a network checkpoint: pass --data (and --labels)")
    yv = None if y is None else _labels(y, "--labels", X.shape[0])
    return _Source(p.name, os.fspath(p), network=load, X=X, y=yv)


def _analyse(K: np.ndarray, y: np.ndarray | None, net: Any, args: argparse.Namespace) -> dict:
    from kernelcomp import diagnostics as dg

    n = K.shape[0]
    if args.n_components is None and n > _ALL_COMPONENTS_UP_TO:
        # a full decomposition of a large Gram takes minutes per checkpoint
        k = min(_DEFAULT_TOP, n)
        print(
            f"kernelcomp kpca: n = {n}: computing the top {k} eigenpairs "
            "(pass --n-components N for more)",
            file=sys.stderr,
        )
    else:
        k = None if args.n_components is None else min(args.n_components, n)
    ev = dg.kernel_pca(K, n_components=k)
    entry: dict[str, Any] = {
        "n_samples": n,
        "trace": float(np.trace(K, dtype=np.float64)),
        "eigenvalues": np.asarray(ev.eigenvalues),
    }
    if args.eigenvectors:
        entry["eigenvectors"] = np.asarray(ev.eigenvectors)
    if hasattr(dg, "effective_rank"):
        entry["effective_rank"] = float(dg.effective_rank(ev.eigenvalues))
    if y is not None:
        c = dg.label_projection(ev.eigenvectors, y)
        entry["label_projection"] = np.asarray(c)
        entry["cumulative_projection"] = np.asarray(dg.cumulative_projection(c, y))
        if hasattr(dg, "kernel_alignment"):
            entry["kernel_alignment"] = float(dg.kernel_alignment(K, y))
        if np.unique(y).size == 2:
            n_mi = min(args.mi_components, ev.eigenvectors.shape[1])
            entry["mutual_information"] = np.asarray(
                dg.mutual_information(ev.eigenvectors, y, n_components=n_mi, k=args.mi_k)
            )
    if net is not None and args.informative is not None:
        entry["compression"] = float(dg.compression(net, informative=args.informative))
    return entry


def _cmd_kpca(args: argparse.Namespace) -> int:
    from kernelcomp import io
    from kernelcomp._gram import gram

    if args.into_run:
        if len(args.files) != 1 or _h5_format(Path(args.files[0])) != "run":
            raise UsageError("--into-run needs exactly one FILE, a run file")
        out = Path(args.files[0])
        if args.name in io.file_info(out).get("diagnostics", []) and not args.force:
            raise UsageError(
                f"{out} already holds diagnostics {args.name!r}; pass --force to replace them"
            )
    else:
        out = Path(args.output)
        if out.exists() and not args.force:
            raise UsageError(f"{out} exists; pass --force to overwrite it")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"{out}: directory {out.parent} does not exist")
    if args.plot is not None and Path(args.plot).exists() and not Path(args.plot).is_dir():
        raise UsageError(f"--plot {args.plot} exists and is not a directory")
    params = args.params
    if params not in ("all", "last", "headless"):
        raise UsageError(f"--params must be all, last or headless, got {params!r}")
    if args.plot is not None:
        import kernelcomp.plotting  # noqa: F401  (fail before the work, not after it)
    sources = _sources(args)
    entries: list[dict[str, Any]] = []
    ys: list[np.ndarray | None] = []
    iterator: Any = sources
    bar = None
    if _progress(args) and len(sources) > 1:
        from tqdm.auto import tqdm

        iterator = bar = tqdm(sources, unit="kernel", desc="kernel PCA")
    try:
        for s in iterator:
            net = None
            if s.gram_path is not None:
                K = io.load_gram(s.gram_path)
            else:
                from kernelcomp.empirical import EmpiricalNTK

                net = s.network()
                K = gram(EmpiricalNTK(net, params=params), s.X, dtype=args.dtype,
                         n_jobs=args.n_jobs)
            entry = {"label": s.label, "source": s.origin, **s.meta}
            entry.update(_analyse(K, s.y, net, args))
            entries.append(entry)
            ys.append(s.y)
    finally:
        if bar is not None:
            bar.close()
    config = {
        "command": "kpca",
        "files": [os.fspath(f) for f in args.files],
        "data": args.data,
        "labels": args.labels,
        "split": args.split,
        "params": params,
        "n_components": args.n_components,
        "mi_components": args.mi_components,
        "mi_k": args.mi_k,
        "informative": args.informative,
        "dtype": args.dtype,
    }
    if args.into_run:
        io.add_run_diagnostics(out, entries, name=args.name, config=config, force=args.force)
        _say(args, f"added diagnostics/{args.name} to {out}: kernel PCA of {len(entries)} "
             "Gram matrices")
    else:
        io.save_diagnostics(out, entries, config=config, force=args.force)
        _say(args, f"wrote {out}: kernel PCA of {len(entries)} Gram matrices")
    if args.plot is not None:
        written = _plots(entries, ys, Path(args.plot))
        _say(args, f"wrote {len(written)} figures into {args.plot}")
    for e in entries:
        if "cumulative_projection" in e and not getattr(args, "quiet", False):
            P = e["cumulative_projection"]
            top = P[min(9, P.size - 1)]
            mi = e.get("mutual_information")
            mi_text = "" if mi is None else f", MI top-{mi.size} mean {float(np.mean(mi)):.3f} bit"
            print(f"  {e['label']}: P_10 = {top:.3f}{mi_text}")
    return 0


#: most curves drawn in one figure (checkpoints are subsampled evenly beyond it)
_MAX_CURVES = 8


def _plots(
    entries: list[dict[str, Any]], ys: list[np.ndarray | None], folder: Path
) -> list[Path]:
    """PNG figures of the diagnostics across entries (init -> final), one per quantity."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    from kernelcomp import plotting

    folder.mkdir(parents=True, exist_ok=True)
    if len(entries) > _MAX_CURVES:  # evenly spaced, always init and final
        keep = np.unique(np.linspace(0, len(entries) - 1, _MAX_CURVES).round().astype(int))
        entries = [entries[i] for i in keep]
        ys = [ys[i] for i in keep]
    sources = {e.get("source") for e in entries}
    if len(sources) == 1 and all("step" in e for e in entries):
        labels = [f"step {e['step']}" for e in entries]  # one run: the file is in the title
    else:
        labels = [str(e["label"]) for e in entries]
    figures: list[tuple[str, Callable[[Any], Any]]] = [
        ("spectrum.png", lambda ax: plotting.plot_spectra(
            [e["eigenvalues"] for e in entries], labels, ax=ax,
            power_law=len(entries) == 1)),
    ]
    y0 = ys[0]
    same_y = y0 is not None and all(
        y is not None and y.shape == y0.shape and float(y @ y) == float(y0 @ y0) for y in ys
    )
    if same_y:
        projections = [e["label_projection"] for e in entries]
        figures.append(("label_projection.png", lambda ax: plotting.plot_label_projections(
            projections, y0, labels, ax=ax)))
        figures.append(("cumulative_projection.png",
                        lambda ax: plotting.plot_cumulative_projections(
                            projections, y0, labels, ax=ax)))
    if all("mutual_information" in e for e in entries):
        figures.append(("mutual_information.png", lambda ax: plotting.plot_mutual_informations(
            [e["mutual_information"] for e in entries], labels, ax=ax)))
    title = os.path.basename(sources.pop()) if len(sources) == 1 else None
    written = []
    for fname, draw in figures:
        fig = Figure(figsize=(5.5, 4), layout="constrained")
        ax = draw(fig.add_subplot())
        if title:
            ax.set_title(title, fontsize="medium")
        fig.savefig(folder / fname, dpi=120)
        written.append(folder / fname)
    return written
