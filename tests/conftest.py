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
import re
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


# -- parallel runs (pytest-xdist) -------------------------------------------------------
#
# ``make test`` runs the suite in two pytest-xdist workers (``-n 2 --dist loadgroup``):
# while one worker compiles (numba compiles on one thread), the other computes. The
# workers are fresh interpreters started by execnet (never forked), so numba's OpenMP
# threading layer is safe in them. The MNIST-size tests (n ~ 20000, each in a subprocess,
# several GiB each) form one group, which one worker runs one after the other: two of them
# at once could exceed the memory of a small CI machine.
#
# The group is chosen on the controller, by test name, in a scheduler of our own: xdist's
# ``xdist_group`` mark works by renaming ``item._nodeid`` in the worker, which pytest >= 9
# no longer reads (``Node.nodeid`` comes from ``Node._id``), so the mark silently groups
# nothing there.

#: test names of the slow tests that handle n x n data at n ~ 20000 (the house rule's
#: "at MNIST size" tests; a new one named that way joins the group by itself)
MNIST_SIZE = re.compile(r"_mnist_size|n20000|_issue_size|large_gram")


def mnist_size_scope(nodeid: str) -> str | None:
    """``"mnist_size"`` for the node id of an MNIST-size test, else None."""
    name = nodeid.rsplit("::", 1)[-1]
    return "mnist_size" if MNIST_SIZE.search(name) else None


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With ``--dist loadgroup``: xdist's load balancing, the MNIST-size tests as one unit."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class MnistSizeScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return mnist_size_scope(nodeid) or super()._split_scope(nodeid)

    return MnistSizeScheduling(config, log)
