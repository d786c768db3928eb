"""The ``kernelcomp`` command line.

.. code-block:: text

    kernelcomp gram INPUT [--y INPUT2] --kernel {ntk,nngp} --depth L --activation A
                    --weight-std S --bias-std S -o OUT.h5 [--dtype float32|float64]
                    [--n-jobs N] [--resume] [--force]
    kernelcomp gram INPUT --network CKPT [--checkpoint I] [--params P] -o OUT.h5 ...
    kernelcomp kpca RUN_OR_GRAM.h5 -o DIAG.h5 [--n-components K] [--plot DIR]
    kernelcomp kpca RUN.h5 --into-run [--name kpca]      (diagnostics inside the run file)
    kernelcomp kpca CKPT [CKPT ...] --data X.npy --labels y.npy -o DIAG.h5
    kernelcomp gram INPUT --network MODEL.pt [--model PKG.MODULE:FACTORY] [--input-shape C,H,W]
    kernelcomp geometry RUN.h5 -o DIAG.h5 [--informative J] [--plot DIR]
    kernelcomp info FILE.h5
    kernelcomp train DATASET --p P --d D -o RUN.h5 ...
    kernelcomp demo --out DIR [--quick] [--force]

One module per subcommand, its parser beside its handler (``_gram``, ``_kpca``,
``_geometry``, ``_info``, ``_train``, ``_demo``); what they share is in ``_common`` (errors,
output policy, progress) and ``_sources`` (networks and Gram matrices from files).

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
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kernelcomp._argtypes import (  # noqa: F401  (the option types, as kernelcomp.cli.*)
    int_list,
    n_jobs,
    positive_float,
    positive_int,
    stds,
    widths,
)
from kernelcomp._version import __version__
from kernelcomp.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Parser,
    UsageError,
    verbose_logging,
)

__all__ = ["build_parser", "main"]


def _subcommands() -> tuple[Any, ...]:
    """The subcommand modules, in the order of ``kernelcomp --help``.

    Imported when the parser is built, inside :func:`main`'s handling of
    Ctrl-C: importing ``kernelcomp.cli`` itself loads neither NumPy nor any
    subcommand, so an interrupt during start-up ends in one line, not a traceback.
    """
    from kernelcomp.cli import _demo, _geometry, _gram, _info, _kpca, _train

    return (_gram, _kpca, _geometry, _info, _train, _demo)


def __getattr__(name: str) -> Any:
    if name == "SUBCOMMANDS":  # the subcommand modules, in the order of ``kernelcomp --help``
        return _subcommands()
    raise AttributeError(f"module 'kernelcomp.cli' has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``kernelcomp`` argument parser.

    Every subcommand sets ``func`` (``func(args) -> int``).

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
    parser = Parser(
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
    for module in _subcommands():
        module.add_parser(sub)
    return parser


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
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a subcommand runs: while importing, parsing
        print("kernelcomp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    """:func:`main` (its Ctrl-C before the subcommand's own handling aside)."""
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
        with verbose_logging(bool(getattr(args, "verbose", False))):
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

