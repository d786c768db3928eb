"""argparse ``type=`` converters of the command line (:mod:`kernelcomp.cli`).

Each takes the option's text and returns its value, or raises
:class:`argparse.ArgumentTypeError` with a message that says what was expected
(argparse prefixes it with the option's name).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["int_list", "n_jobs", "positive_float", "positive_int", "stds", "widths"]


def stds(text: str) -> Any:
    """``"1.0"`` -> 1.0, ``"1,2,1"`` -> (1.0, 2.0, 1.0), ``"none"`` -> None."""
    if text.strip().lower() == "none":
        return None
    try:
        values = [
            None if v.strip().lower() == "none" else float(v) for v in text.split(",")
        ]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers (one per Dense layer), got {text!r}"
        ) from exc
    return values[0] if len(values) == 1 else tuple(values)


def widths(text: str) -> Any:
    """``"64"`` -> 64, ``"64,32"`` -> (64, 32)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an integer or comma-separated integers, got {text!r}"
        ) from exc
    return values[0] if len(values) == 1 else tuple(values)


def int_list(text: str) -> list[int]:
    """``"0,2"`` -> [0, 2]."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers (input directions), got {text!r}"
        ) from exc


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def byte_size(text: str) -> int:
    """Bytes: ``"536870912"``, ``"512M"``, ``"2G"``, ``"1.5GiB"`` (powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t[: len(t) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size in bytes such as 512M or 2G, got {text!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive size in bytes, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def n_jobs(text: str) -> int:
    """A non-zero integer thread count (negative: joblib style, -1 all cores)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value == 0:
        raise argparse.ArgumentTypeError("expected a non-zero integer (-1: all cores)")
    return value
