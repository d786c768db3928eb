"""Shared fixtures of the kernelcomp test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest

# tests never need a display
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(20240607)
