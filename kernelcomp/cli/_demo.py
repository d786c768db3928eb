"""``kernelcomp demo``: the compression experiment end to end (:func:`kernelcomp.demo.run_demo`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``demo`` on the subparsers ``subparsers``."""
    m = subparsers.add_parser(
        "demo", help="reproduce the compression experiment end to end",
        description="Feature vs lazy training on the stripe model: compression, learning "
                    "curves, kernel PCA of the empirical NTK, frozen-kernel SVMs, neurons "
                    "and attractors; writes run files, PNG figures and summary.json into "
                    "--out.")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--quick", action="store_true", help="small CI scale (under a minute)")
    m.add_argument("--quiet", action="store_true", help="no progress lines or report")
    m.add_argument("--force", action="store_true",
                   help="write into --out even if it already holds files (they are replaced)")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.out``; 0 on success."""
    from kernelcomp.cli._common import UsageError
    from kernelcomp.demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {os.fspath(out)} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(
            f"--out {os.fspath(out)} already holds files; use --force to replace them"
        )
    run_demo(args.out, quick=args.quick, progress=not args.quiet)
    if not args.quiet:
        print(f"written to {os.fspath(args.out)}")
    return 0
