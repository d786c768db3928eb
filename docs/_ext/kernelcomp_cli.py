"""Sphinx directive ``.. kernelcomp-cli::``: the command-line reference from the parser itself.

Every subcommand's ``--help`` text, as :func:`kernelcomp.cli.build_parser` builds it, so the
page cannot drift from the options the program accepts.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from docutils.parsers.rst import Directive

#: the help text's width on the page (argparse reads ``COLUMNS``)
HELP_COLUMNS = 88


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers of ``parser``, in ``--help`` order."""
    for action in parser._actions:  # argparse keeps no public list of them
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    try:
        return parser.format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


class KernelcompCli(Directive):
    """One section per subcommand, each with its ``--help`` text."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from kernelcomp.cli import build_parser

        parser = build_parser()
        out: list[nodes.Node] = [nodes.literal_block(text=_help(parser))]
        for name, sub in _subparsers(parser).items():
            section = nodes.section(ids=[f"kernelcomp-{name}"])
            section += nodes.title(text=f"kernelcomp {name}")
            section += nodes.literal_block(text=_help(sub))
            out.append(section)
        return out


def setup(app):
    app.add_directive("kernelcomp-cli", KernelcompCli)
    return {"parallel_read_safe": True, "version": "1"}
