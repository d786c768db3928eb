"""``kernelcomp info``: describe kernelcomp files (text or JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    """Register ``info`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "info",
        help="describe a kernelcomp HDF5 file",
        description="Print the format, versions and contents of kernelcomp files.",
    )
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe(info: dict[str, Any]) -> list[str]:
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


def run(args: argparse.Namespace) -> int:
    """Print the description of every file of ``args``; 0 on success."""
    from kernelcomp import io

    infos = [io.file_info(f) for f in args.files]  # all checked before printing
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2, default=str))
    else:
        for info in infos:
            print("\n".join(describe(info)))
    return 0
