"""What the subcommands share: user errors, the parser, output policy, progress, inputs.

Every subcommand module (``_gram``, ``_kpca``, ``_geometry``, ``_info``,
``_train``, ``_demo``) builds on this one; this module imports none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: exit status of a user error / of an interrupted command / of a closed pipe
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised (one line), not printed with usage."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_quiet(p: argparse.ArgumentParser) -> None:
    """The ``-q/--quiet`` and ``--progress`` flags of the long-running subcommands."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    g.add_argument(
        "--progress", action="store_true",
        help="progress bars on stderr even when it is not a terminal (default: on a terminal)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="say on stderr which memory budgets and routes the computation chose",
    )


@contextlib.contextmanager
def verbose_logging(on: bool) -> Iterator[None]:
    """With ``on``, the ``kernelcomp`` logger's INFO lines go to stderr for the block."""
    if not on:
        yield
        return
    import logging

    log = logging.getLogger("kernelcomp")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kernelcomp: %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


#: conventions of lambda (kernelcomp.diagnostics.COMPRESSION_CONVENTIONS, the paper's
#: figures' first, as ``kernelcomp train`` and the demo report it); spelled out here
#: so that building the parser imports no NumPy
COMPRESSION_CONVENTIONS = ("figures", "rms", "norm")


def add_compression_convention(p: argparse.ArgumentParser) -> None:
    """The ``--compression-convention`` option of the subcommands that report lambda."""
    p.add_argument(
        "--compression-convention", choices=COMPRESSION_CONVENTIONS, default="figures",
        metavar="C",
        help="convention of the compression lambda with --informative: figures (default; "
             "the paper's figures' w_par / mean w_perp, as kernelcomp train and demo report "
             "it), rms (sqrt of the mean squared weights' ratio) or norm (against the "
             "norm of the uninformative weights)",
    )


def progress_on(args: argparse.Namespace) -> bool:
    """Progress bars: with ``--progress``, else on a terminal unless ``--quiet``."""
    if getattr(args, "quiet", False):
        return False
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()


def say(args: argparse.Namespace, text: str) -> None:
    """A summary line on stdout, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)


def check_output(out: Path, force: bool) -> Path:
    """An output file to (over)write: refused if it exists without ``--force``.

    The library's output-path policy (:func:`kernelcomp._h5._output_path`), with
    the command line's wording for an existing file.
    """
    from kernelcomp._h5 import _output_path

    try:
        return _output_path(out, force)
    except FileExistsError:
        raise UsageError(f"{out} exists; pass --force to overwrite it") from None


def check_plot_dir(plot: str | None) -> None:
    """``--plot DIR``: a folder (or a new one); matplotlib importable before the work."""
    if plot is None:
        return
    if Path(plot).exists() and not Path(plot).is_dir():
        raise UsageError(f"--plot {plot} exists and is not a directory")
    import kernelcomp.plotting  # noqa: F401  (fail before the work, not after it)


def save_figure(path: Path, draw: Callable[[Any], Any], title: str | None = None) -> Path:
    """Draw ``draw(ax)`` on a new figure in the house style (no pyplot) and save it as a PNG."""
    from kernelcomp.plotting import _style

    fig, ax = _style.new_figure()
    ax = draw(ax)
    if title and hasattr(ax, "set_title"):
        ax.set_title(title, fontsize="medium")
    _style.save_figure(fig, path)
    return path


def labels(y: Any, name: str, n: int) -> np.ndarray:
    """Labels: two classes as -1/+1, three or more as they are, real targets as float64.

    The paper's projections and MI use +-1 labels: with 0/1 labels the label
    vector has a large mean and the projections measure something else. Three
    or more classes (integer, boolean or string labels) are returned unchanged:
    :func:`kernelcomp.diagnostics.kpca_record` projects their centred one-hot
    indicators. Floating-point labels with more than two values are real targets.
    """
    import numpy as np

    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels, but there are {n} samples")
    classes = np.unique(arr)
    if classes.size == 2 and not (arr.dtype.kind in "iuf" and set(classes.tolist()) == {-1, 1}):
        lo, hi = classes.tolist()  # Python scalars: 0, not NumPy 2's np.int64(0)
        print(
            f"kernelcomp: {name}: classes {lo!r} -> -1 and {hi!r} -> +1 "
            "(the paper's +-1 labels)",
            file=sys.stderr,
        )
        return np.where(arr == classes[1], 1.0, -1.0)
    if classes.size >= 3 and arr.dtype.kind in "biuUSO":
        shown = ", ".join(repr(c) for c in classes[:5].tolist())
        print(
            f"kernelcomp: {name}: {classes.size} classes ({shown}"
            f"{', ...' if classes.size > 5 else ''}): P_k of their centred one-hot "
            "indicators, mutual information by the kNN (KSG) estimator",
            file=sys.stderr,
        )
        return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be numeric (real targets) or have two classes, got dtype {arr.dtype} "
            f"with {classes.size} classes"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr.astype(np.float64)


@contextlib.contextmanager
def deferred_sigint() -> Iterator[Callable[[], bool]]:
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


def add_diagnostics_io(p: argparse.ArgumentParser, name: str, labels_help: str) -> None:
    """The options every diagnostics subcommand shares: where it writes, and its data.

    ``-o DIAG.h5`` or ``--into-run`` (with ``--name``, default ``name``; read by
    :func:`diagnostics_destination`), ``--data``/``--labels`` for network files and
    their ``--data-key``/``--labels-key``.
    """
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", metavar="DIAG.h5", help="diagnostics file to write")
    where.add_argument(
        "--into-run", action="store_true",
        help="store the diagnostics inside the (single) run file, as group diagnostics/NAME",
    )
    p.add_argument("--name", default=name, help=f"group name for --into-run (default {name})")
    p.add_argument("--data", metavar="X", help="samples for checkpoints (.npy/.npz/.csv/.h5)")
    p.add_argument("--labels", metavar="Y", help=labels_help)
    p.add_argument("--data-key", metavar="NAME", help="array name inside an .npz/.h5 --data")
    p.add_argument("--labels-key", metavar="NAME", help="array name inside an .npz/.h5 --labels")


def diagnostics_destination(args: argparse.Namespace) -> Path:
    """Where a diagnostics subcommand writes: ``-o DIAG.h5`` or ``--into-run`` (checked)."""
    if args.into_run:
        from kernelcomp._checkpoints import h5_format

        if len(args.files) != 1 or h5_format(Path(args.files[0])) != "run":
            raise UsageError("--into-run needs exactly one FILE, a run file")
        from kernelcomp import io

        out = Path(args.files[0])
        if args.name in io.file_info(out).get("diagnostics", []) and not args.force:
            raise UsageError(
                f"{out} already holds diagnostics {args.name!r}; pass --force to replace them"
            )
        return out
    return check_output(Path(args.output), args.force)


def write_diagnostics(args: argparse.Namespace, out: Path, entries: list[dict[str, Any]],
                      config: dict[str, Any], what: str) -> None:
    """Store ``entries`` in the diagnostics file ``out`` (or the run file, ``--into-run``)."""
    from kernelcomp import io

    if args.into_run:
        io.add_run_diagnostics(out, entries, name=args.name, config=config, force=args.force)
        say(args, f"added diagnostics/{args.name} to {out}: {what}")
    else:
        io.save_diagnostics(out, entries, config=config, force=args.force)
        say(args, f"wrote {out}: {what}")


@contextlib.contextmanager
def progress_bar(args: argparse.Namespace, items: list[Any], desc: str,
                 unit: str) -> Iterator[Any]:
    """``items``, wrapped in a tqdm bar on a terminal when there are several.

    The bar's postfix (``bar.set_postfix_str``) says what runs on the current item.
    """
    if not (progress_on(args) and len(items) > 1):
        yield items
        return
    from tqdm.auto import tqdm

    bar = tqdm(items, unit=unit, desc=desc, position=0)
    try:
        yield bar
    finally:
        bar.close()


#: most curves drawn in one figure (checkpoints are subsampled evenly beyond it)
MAX_CURVES = 8


def evenly(n: int, most: int) -> list[int]:
    """At most ``most`` indices of ``range(n)``, evenly spaced, first and last kept."""
    if n <= most:
        return list(range(n))
    import numpy as np

    return np.unique(np.linspace(0, n - 1, most).round().astype(int)).tolist()
