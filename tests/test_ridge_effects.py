"""Effects of ``NTKRegressor`` that the third mutation pass found untested (issue 26).

Each test pins one documented behaviour of ``kernelcomp/estimators/_ridge.py`` against
an independent oracle: numpy's pseudo-inverse or solve, a by-hand solution, the
in-memory Falkon fit (for the Dask route), the rows of ``X`` themselves.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp.estimators import SingularKernelWarning

FALKON = {"alpha": 1e-2, "solver": "falkon", "n_centers": 30, "random_state": 0, "tol": 1e-12,
          "max_iter": 100}


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(n)


# ------------------------------------------------------------------ the exact solve
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_overflow_advice_depends_on_the_dtype(dtype):
    # the solution 1e10 / tiny is not representable: float32 is told of float64, float64 is not
    tiny = 1e-300 if dtype == np.float64 else 1e-30
    K = (dtype(tiny) * np.eye(3)).astype(dtype)
    name = np.dtype(dtype).name
    advice = ("rescale K or y or increase alpha" if dtype == np.float64
              else "rescale K or y, increase alpha or use dtype='float64'")
    msg = (rf"^The kernel ridge solution overflows {name} \(n=3, alpha=0; the Cholesky "
           r"solution is not finite, and so does the eigendecomposition's, with smallest "
           rf"eigenvalue 1e-(300|30)\): the targets are too large for the scale of "
           rf"K \+ alpha\*I; {re.escape(advice)}\.$")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow on the way
        with pytest.raises(ValueError, match=msg):
            kc.NTKRegressor("precomputed", alpha=0.0).fit(K, np.full(3, 1e10))


def test_a_solution_that_overflows_in_one_component_only_is_refused():
    # K = V diag(1e-10, 2e-10) V^T with V the 45-degree rotation, y chosen so that the
    # exact solution is V (1.5e308, 1.5e308) = (2.1e308, 0): the first component
    # overflows, the second does not; no eigenvalue is cut (their ratio is 2)
    s = np.sqrt(0.5)
    V = np.array([[s, s], [s, -s]])
    w = np.array([1e-10, 2e-10])
    K = V @ np.diag(w) @ V.T
    y = V @ (np.array([1.5e308, 1.5e308]) * w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=r"^The kernel ridge solution overflows float64 "
                                             r"\(n=2, alpha=0; "):
            kc.NTKRegressor("precomputed", alpha=0.0).fit(K, y)


def test_a_cholesky_solution_that_overflows_falls_back_to_the_pseudo_inverse():
    # K = diag(1e-300, 1), alpha = 0: the Cholesky succeeds but its solution 1e10 / 1e-300
    # overflows; the eigendecomposition cuts 1e-300 (below n eps max|w|) and its
    # minimum-norm solution [0, 1] is finite: numpy's pseudo-inverse gives the same
    K = np.diag([1e-300, 1.0])
    y = np.array([1e10, 1.0])
    msg = (r"^The regularised kernel system K \+ alpha\*I \(n=2, alpha=0, dtype=float64\) is "
           r"singular or not positive definite: the Cholesky solution is not finite\. Its "
           r"smallest eigenvalue is 1e-300\. Using the minimum-norm least-squares solution "
           r"from an eigendecomposition instead \(1 of 2 eigenvalues treated as zero\)\.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(SingularKernelWarning, match=msg):
            est = kc.NTKRegressor("precomputed", alpha=0.0).fit(K, y)
    np.testing.assert_array_equal(est.dual_coef_, np.linalg.pinv(K, hermitian=True) @ y)
    np.testing.assert_array_equal(est.dual_coef_, [0.0, 1.0])


def test_a_zero_gram_without_ridge_gives_the_zero_solution():
    # every eigenvalue is 0 (the cut-off n eps max|w| is 0 too): all are cut, as numpy's
    # pseudo-inverse of the zero matrix, not divided by
    y = np.array([1.0, 2.0, 3.0])
    with pytest.warns(SingularKernelWarning, match=r"\(3 of 3 eigenvalues treated as zero\)"):
        est = kc.NTKRegressor("precomputed", alpha=0.0).fit(np.zeros((3, 3)), y)
    np.testing.assert_array_equal(est.dual_coef_, np.linalg.pinv(np.zeros((3, 3))) @ y)


def test_a_ridge_that_overflows_the_diagonal_gives_the_vanishing_solution():
    # K + alpha I = 2e308 I overflows to inf: the exact solution y / 2e308 (5e-309, 1e-308)
    # is below the normal range; the fit returns it as 0 to within 1e-307, not an error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow in the addition
        est = kc.NTKRegressor("precomputed", alpha=1e308).fit(1e308 * np.eye(2), [1.0, 2.0])
    assert np.isfinite(est.dual_coef_).all()
    np.testing.assert_allclose(est.dual_coef_, [5e-309, 1e-308], rtol=0, atol=1e-307)


def test_an_overflowed_diagonal_reaches_the_pseudo_inverse():
    # K + alpha I = diag(inf, 0): the Cholesky fails at the zero pivot; the eigendecomposition
    # of the matrix with its infinite entry cuts the zero eigenvalue and maps the infinite
    # one to 0, the minimum-norm solution (0, 0), instead of refusing the infinite entry
    K = np.array([[1e308, 0.0], [0.0, -1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(SingularKernelWarning, match=r"the Cholesky factorisation failed"):
            est = kc.NTKRegressor("precomputed", alpha=1e308).fit(K, [1.0, 2.0])
    np.testing.assert_array_equal(est.dual_coef_, [0.0, 0.0])


@pytest.mark.parametrize("solver", ["cholesky", "falkon"])
def test_a_float32_fit_reads_the_weights_in_float32(solver):
    # a weight beyond float32's range is refused by a float32 fit (it would overflow the
    # weighted system), and accepted by the same fit in float64
    X, y = _data(20)
    sw = np.full(20, 1e39)
    opts = {"solver": solver} | ({"n_centers": 5, "random_state": 0} if solver == "falkon" else {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow in the cast
        with pytest.raises(ValueError, match=r"^Input sample_weight contains infinity or a "
                                             r"value too large for dtype\('float32'\)"):
            kc.NTKRegressor(kc.NTK(depth=1), dtype="float32", **opts).fit(X, y, sample_weight=sw)
    est = kc.NTKRegressor(kc.NTK(depth=1), dtype="float64", **opts).fit(X, y, sample_weight=sw)
    assert np.isfinite(est.dual_coef_).all()


# ------------------------------------------------------------------ Falkon in memory
def test_falkon_stored_route_computes_knm_once(monkeypatch):
    # knm_route_ "stored": K_nm is computed once and kept; "recomputed": once per product
    calls = []
    original = kc.NTKRegressor._iter_test_gram

    def counted(self, *args, **kw):
        calls.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(kc.NTKRegressor, "_iter_test_gram", counted)
    X, y = _data(40)
    opts = FALKON | {"n_centers": 10, "max_iter": 4, "tol": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # four iterations may warn that Falkon stopped early
        stored = kc.NTKRegressor(kc.NTK(depth=1), max_memory=10**9, **opts).fit(X, y)
        assert stored.knm_route_ == "stored" and len(calls) == 1
        calls.clear()
        again = kc.NTKRegressor(kc.NTK(depth=1), max_memory=0, **opts).fit(X, y)
    assert again.knm_route_ == "recomputed" and len(calls) > 1
    np.testing.assert_allclose(again.dual_coef_, stored.dual_coef_, rtol=1e-10)


@pytest.mark.parametrize(("x_dtype", "dtype"), [(np.float64, "float32"), (np.float32, "float64")])
def test_falkon_centres_are_rows_of_x_in_the_dtype_of_the_fit(x_dtype, dtype):
    X, y = _data(40)
    X = X.astype(x_dtype)
    est = kc.NTKRegressor(kc.NTK(depth=1), dtype=dtype, **(FALKON | {"n_centers": 10})).fit(X, y)
    assert est.X_fit_.dtype == est.dual_coef_.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(est.X_fit_, X[est.center_indices_].astype(dtype))


def test_falkon_route_log_names_the_default_budget(caplog):
    X, y = _data(40)
    with caplog.at_level(logging.INFO, logger="kernelcomp"):
        kc.NTKRegressor(kc.NTK(depth=1), **(FALKON | {"n_centers": 10})).fit(X, y)
    lines = [r.getMessage() for r in caplog.records if "K_nm" in r.getMessage()]
    assert len(lines) == 1
    assert re.fullmatch(r"NTKRegressor\(solver='falkon'\): K_nm 40 x 10 float64 \(3\.1 KiB\) "
                        r"stored \(computed once\); budget \S+ \S+ \(default: half of the "
                        r"memory available\)", lines[0]), lines[0]


# ------------------------------------------------------------------ Falkon on Dask
def test_falkon_on_dask_accepts_zero_weights():
    da = pytest.importorskip("dask.array", reason="the optional Dask extra is not installed")
    X, y = _data(90)
    sw = np.random.default_rng(3).uniform(0.2, 3.0, 90)
    sw[::7] = 0.0  # non-negative: zero is a weight, the sample does not count
    k = kc.NTK(depth=1)
    local = kc.NTKRegressor(k, **FALKON).fit(X, y, sample_weight=sw)
    dist = kc.NTKRegressor(k, **FALKON).fit(da.from_array(X, chunks=(40, 3)),
                                            da.from_array(y, chunks=40), sample_weight=sw)
    np.testing.assert_allclose(dist.dual_coef_, local.dual_coef_, rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------ predict
@pytest.mark.parametrize("kind", [np.int64, bool])
def test_integer_and_boolean_test_input_is_read_as_float(kind):
    X, y = _data(30)
    est = kc.NTKRegressor(kc.NTK(depth=1), alpha=1e-2).fit(X, y)
    Xt = (np.random.default_rng(1).standard_normal((7, 3)) > 0).astype(kind)
    out = est.predict(Xt)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, est.predict(Xt.astype(np.float64)))
