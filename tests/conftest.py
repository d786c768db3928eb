"""Shared fixtures of the kernelcomp test suite.

Numeric tests run in float64 and float32 through the ``dtype`` fixture and read their
tolerance from one table, :data:`TOLERANCES`, through the ``tol`` fixture::

    def test_something(rng, dtype, tol):
        K = make_gram(rng).astype(dtype)
        np.testing.assert_allclose(fast(K), slow(K), rtol=tol("eig"))

A test that parametrizes ``dtype`` itself (jointly with another argument, say) still
gets the matching ``tol``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

# tests never need a display
os.environ.setdefault("MPLBACKEND", "Agg")

#: the two floating dtypes every numeric test runs in
DTYPES: tuple[type[np.floating], ...] = (np.float64, np.float32)

#: per-dtype tolerances: the relative error a correct implementation stays below, by kind
#: of result (a test may scale one by a stated factor where its quantity amplifies errors)
TOLERANCES: dict[str, dict[type[np.floating], float]] = {
    # entries of a Gram matrix against a naive recursion or an explicit Jacobian (float32
    # results come from float64 recursions or float64 ReLU masks: a few float32 ulps)
    "gram": {np.float64: 1e-12, np.float32: 2e-6},
    # eigenpairs of a Gram and reductions over its entries (LAPACK / block Lanczos)
    "eig": {np.float64: 1e-9, np.float32: 2e-4},
    # solutions of a kernel system (ridge / SVM / Falkon predictions and coefficients)
    "solve": {np.float64: 1e-8, np.float32: 2e-3},
}


def tolerance(kind: str, dtype: type[np.floating] | np.dtype | str) -> float:
    """The tolerance of ``kind`` (a key of :data:`TOLERANCES`) for ``dtype``."""
    return TOLERANCES[kind][np.dtype(dtype).type]


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(20240607)


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request: pytest.FixtureRequest) -> type[np.floating]:
    """Each floating dtype in turn (``np.float64``, then ``np.float32``)."""
    return request.param


@pytest.fixture
def tol(dtype: type[np.floating]) -> Callable[[str], float]:
    """``tol(kind)``: the tolerance of that kind of result for the test's ``dtype``."""
    return lambda kind: tolerance(kind, dtype)
