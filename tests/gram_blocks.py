"""Spies on ``kernelcomp.io._gram_file.iter_gram_blocks`` shared by the Gram-file tests.

``compute_gram_file`` pulls its row blocks from that generator; the tests replace it to see
which blocks a resumed run skips, or to stop a run after some blocks were stored.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kernelcomp.io import _gram_file


def record_skips(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """Record the ``skip`` set of every call of ``iter_gram_blocks``; the list of them."""
    calls: list[set[int]] = []
    real = _gram_file.iter_gram_blocks

    def spy(*args, **kwargs):
        calls.append(set(kwargs["skip"]))
        yield from real(*args, **kwargs)

    monkeypatch.setattr(_gram_file, "iter_gram_blocks", spy)
    return calls


def interrupted_after(n_ok: int, action: Callable[[], None]) -> Callable:
    """An ``iter_gram_blocks`` that calls ``action`` before yielding block ``n_ok``.

    ``action`` raises (an exception, ``KeyboardInterrupt``) or signals the process.
    """
    real = _gram_file.iter_gram_blocks

    def wrapper(*args, **kwargs):
        for i, block in enumerate(real(*args, **kwargs)):
            if i == n_ok:
                action()
            yield block

    return wrapper


def raising_after(n_ok: int, exc: BaseException) -> Callable:
    """An ``iter_gram_blocks`` that raises ``exc`` after ``n_ok`` blocks."""

    def throw() -> None:
        raise exc

    return interrupted_after(n_ok, throw)
