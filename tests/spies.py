"""A call recorder shared by the effect tests: the arguments a function was called with."""

from __future__ import annotations

from typing import Any

import pytest


def record_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[tuple]:
    """Wrap ``module.name`` (which still runs); the list of its calls' ``(args, kwargs)``."""
    calls: list[tuple] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls
