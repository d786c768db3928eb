"""docs/cli.rst: the command-line reference is generated from the parser and lists everything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "kernelcomp_cli_docs", ROOT / "docs" / "_ext" / "kernelcomp_cli.py"
)
assert _spec is not None and _spec.loader is not None
ext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ext)


def test_every_subcommand_and_option_is_on_the_page():
    from kernelcomp.cli import SUBCOMMANDS, build_parser

    parser = build_parser()
    subs = ext._subparsers(parser)
    assert len(subs) == len(SUBCOMMANDS) >= 6
    assert {"gram", "kpca", "info", "train", "demo"} <= set(subs)
    nodes = ext.KernelcompCli.run(object.__new__(ext.KernelcompCli))
    page = "\n".join(n.astext() for n in nodes)
    for name, sub in subs.items():
        assert f"kernelcomp {name}" in page
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in page, (name, flag)


def test_help_width_is_fixed_and_restored(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    from kernelcomp.cli import build_parser

    text = ext._help(build_parser())
    assert max(map(len, text.splitlines())) > 40  # laid out at HELP_COLUMNS, not the caller's 40
    assert max(map(len, text.splitlines())) <= ext.HELP_COLUMNS
    import os

    assert os.environ["COLUMNS"] == "40"
