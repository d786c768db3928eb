"""Parameter effects, boundaries and derived defaults of the Falkon solver (issue 26).

Each test pins a documented parameter, output or boundary of ``kernelcomp._falkon`` that a
mutmut survivor of ``make mutation MODULE=kernelcomp/_falkon.py`` showed unpinned, against a
dense Nystrom kernel ridge solve in numpy (``(K_nm^T W K_nm + alpha K_mm) beta = K_nm^T W y``)
or the preconditioner written out from its documented definition. The mutants left alive on
purpose are listed with their reason in tests/mutation_equivalents.md.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import scipy.linalg

from kernelcomp import _falkon
from kernelcomp._gram import default_block_rows


def _problem(rng, n=120, m=15, d=4, t=2, dtype=np.float64):
    """A cross Gram K_nm, K_mm of the same (RBF) kernel, targets and weights."""
    X = rng.standard_normal((n, d))
    C = X[rng.choice(n, m, replace=False)]

    def rbf(A, B):
        sq = np.sum(A**2, 1)[:, None] + np.sum(B**2, 1)[None, :] - 2 * A @ B.T
        return np.exp(-0.25 * sq)

    K_nm, K_mm = rbf(X, C), rbf(C, C)
    Y = np.c_[np.sin(X[:, 0]), np.cos(X[:, 1])][:, :t]
    w = rng.uniform(0.2, 3.0, n)
    return K_nm.astype(dtype), K_mm.astype(dtype), Y.astype(dtype), w.astype(dtype)


def _dense(K_nm, K_mm, Y, w, alpha):
    K_nm, K_mm, Y = (np.asarray(a, dtype=np.float64) for a in (K_nm, K_mm, Y))
    Wk = K_nm * (1.0 if w is None else np.asarray(w, np.float64)[:, None])
    return np.linalg.solve(K_nm.T @ Wk + alpha * K_mm, Wk.T @ Y)


def _blocks(K_nm, rows):
    n = K_nm.shape[0]
    calls = []

    def knm_blocks():
        calls.append(1)
        for i0 in range(0, n, rows):
            yield i0, min(n, i0 + rows), K_nm[i0 : i0 + rows]

    return knm_blocks, calls


def _solve(K_nm, K_mm, Y, w, alpha, **kw):
    blocks, _ = _blocks(K_nm, 37)
    rhs, normal = _falkon.in_memory_normal(blocks, Y, w, store=True)
    w_sum = float(len(K_nm) if w is None else np.sum(w))
    return _falkon.falkon(K_mm, rhs, normal, alpha, w_sum, **kw)


def _preconditioned_residual(K_nm, K_mm, Y, w, alpha, beta):
    """max_j ||A^-T T^-T (rhs - H beta)_j|| / ||A^-T T^-T rhs_j||, the documented P."""
    K_nm, K_mm, Y, beta = (np.asarray(a, dtype=np.float64) for a in (K_nm, K_mm, Y, beta))
    m = K_mm.shape[0]
    ww = np.ones(len(K_nm)) if w is None else np.asarray(w, np.float64)
    w_sum = ww.sum()
    jitter = np.finfo(np.float64).eps * m * np.mean(np.diagonal(K_mm))
    T = scipy.linalg.cholesky(K_mm + jitter * np.eye(m), lower=False)
    AA = (w_sum / m) * T @ T.T + (alpha + jitter * w_sum / m) * np.eye(m)
    A = scipy.linalg.cholesky(AA, lower=False)

    def pt(v):
        return scipy.linalg.solve_triangular(
            A, scipy.linalg.solve_triangular(T, v, trans="T"), trans="T"
        )

    rhs = K_nm.T @ (ww[:, None] * Y)
    H = K_nm.T @ (ww[:, None] * K_nm) + alpha * K_mm
    r, b = pt(rhs - H @ beta), pt(rhs)
    return float(np.max(np.linalg.norm(r, axis=0) / np.linalg.norm(b, axis=0)))


# ---------------------------------------------------------------------------
# falkon(): the solution, alpha, w_sum, max_iter, tol and the residual it reports
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_falkon_solves_the_nystrom_ridge_system(rng, dtype, tol, weighted):
    K_nm, K_mm, Y, w = _problem(rng, dtype=dtype)
    w = w if weighted else None
    alpha = 1e-2
    beta, it, _res = _solve(K_nm, K_mm, Y, w, alpha, max_iter=200, tol=1e-12 if dtype ==
                           np.float64 else 1e-6)  # fmt: skip
    assert beta.dtype == dtype and beta.shape == (15, 2)
    ref = _dense(K_nm, K_mm, Y, w, alpha)
    # predictions K_nm beta (beta itself is ill-determined along K_mm's small eigenvalues)
    pred, pred_ref = K_nm.astype(float) @ beta, K_nm.astype(float) @ ref
    assert np.abs(pred - pred_ref).max() <= tol("solve") * 10 * np.abs(pred_ref).max()
    assert 1 < it < 200


def test_alpha_moves_the_solution_as_ridge_regression(rng):
    K_nm, K_mm, Y, w = _problem(rng)
    for alpha in (0.0, 1e-3, 1.0, 30.0):
        beta, _, _ = _solve(K_nm, K_mm, Y, w, alpha, max_iter=300, tol=1e-13)
        ref = _dense(K_nm, K_mm, Y, w, alpha)
        np.testing.assert_allclose(K_nm @ beta, K_nm @ ref, rtol=0,
                                   atol=1e-7 * np.abs(K_nm @ ref).max())  # fmt: skip


def test_reported_residual_is_the_preconditioned_one(rng):
    # three iterations: the residual is far from 0, and CG's recursive residual equals the
    # residual of the returned beta under P = T^T A^T A T with A^T A = (w_sum / m) T T^T +
    # alpha I (jitter on both), written out here
    K_nm, K_mm, Y, w = _problem(rng)
    for alpha, weights in ((1e-2, w), (0.5, None)):
        beta, it, res = _solve(K_nm, K_mm, Y, weights, alpha, max_iter=3, tol=0.0)
        assert it == 3 and 1e-8 < res < 1
        assert res == pytest.approx(
            _preconditioned_residual(K_nm, K_mm, Y, weights, alpha, beta), rel=1e-6
        )


def test_max_iter_and_tol_boundaries(rng):
    K_nm, K_mm, Y, w = _problem(rng)
    # tol = 0 is never met: exactly max_iter iterations
    for cap in (1, 2, 5):
        assert _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=cap, tol=0.0)[1] == cap
    # no iteration: beta = 0 and the residual is the initial one, 1
    beta, it, res = _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=0, tol=0.0)
    assert it == 0 and res == 1.0 and not beta.any()
    # the stop is res <= tol: at tol = 1 (the initial residual) nothing runs
    assert _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=10, tol=1.0)[1] == 0
    assert _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=10, tol=np.nextafter(1.0, 0.0))[1] == 1
    # and it stops at the first iteration whose residual is <= tol
    _, _it5, res5 = _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=5, tol=0.0)
    _, it_b, res_b = _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=50, tol=res5)
    assert it_b == 5 and res_b == res5
    assert _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=50, tol=res5 * 1.5)[1] <= 5
    # defaults: max_iter=50, tol=1e-7
    _, it_d, res_d = _solve(K_nm, K_mm, Y, w, 1e-2)
    assert res_d <= 1e-7 and 1 < it_d < 50
    assert _solve(K_nm, K_mm, Y, w, 1e-2, tol=0.0)[1] == 50


def test_a_zero_target_column_stays_zero(rng):
    # a zero right-hand side: b_norm taken as 1, the CG step divides 0 by 0 nowhere
    K_nm, K_mm, Y, w = _problem(rng)
    Y = Y.copy()
    Y[:, 1] = 0.0
    beta, _it, res = _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=100, tol=1e-10)
    assert np.isfinite(res) and res <= 1e-10 and np.isfinite(beta).all()
    assert not beta[:, 1].any()
    ref = _dense(K_nm, K_mm, Y[:, :1], w, 1e-2)
    np.testing.assert_allclose(K_nm @ beta[:, :1], K_nm @ ref, atol=1e-7)
    beta0, it0, res0 = _solve(K_nm, K_mm, np.zeros_like(Y), w, 1e-2)
    assert it0 == 0 and res0 == 0.0 and not beta0.any()


def test_w_sum_only_scales_the_preconditioner(rng):
    # w_sum enters the preconditioner only: the residual after a few iterations follows
    # it (the oracle writes out (w_sum / m) T T^T), the converged solution does not
    K_nm, K_mm, Y, w = _problem(rng)
    blocks, _ = _blocks(K_nm, 50)
    rhs, normal = _falkon.in_memory_normal(blocks, Y, w, store=True)
    right = _falkon.falkon(K_mm, rhs, normal, 1e-2, float(w.sum()), max_iter=8, tol=0.0)
    wrong = _falkon.falkon(K_mm, rhs, normal, 1e-2, 1e-3 * float(w.sum()), max_iter=8, tol=0.0)
    assert right[2] != wrong[2]
    assert right[2] == pytest.approx(
        _preconditioned_residual(K_nm, K_mm, Y, w, 1e-2, right[0]), rel=1e-6
    )
    a = _falkon.falkon(K_mm, rhs, normal, 1e-2, float(w.sum()), max_iter=400, tol=1e-13)
    b = _falkon.falkon(K_mm, rhs, normal, 1e-2, 1e-3 * float(w.sum()), max_iter=400, tol=1e-13)
    np.testing.assert_allclose(K_nm @ a[0], K_nm @ b[0], atol=1e-8)


def test_k_mm_is_not_modified_and_a_singular_k_mm_is_conditioned(rng):
    K_nm, K_mm, Y, w = _problem(rng)
    before = K_mm.copy()
    _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=3)
    np.testing.assert_array_equal(K_mm, before)
    F_mm = np.asfortranarray(K_mm)  # the layout of the factor: no copy would be needed
    _solve(K_nm, F_mm, Y, w, 1e-2, max_iter=3)
    np.testing.assert_array_equal(F_mm, before)
    # a rank-3 linear kernel with 8 centres: K_mm is singular, the jitter of the
    # preconditioner lets its Cholesky factor exist; the system keeps the exact K_mm
    X = rng.standard_normal((60, 3))
    C = X[:8]
    K_nm, K_mm = X @ C.T, C @ C.T
    y = X @ [1.0, -2.0, 0.5]
    beta, _it, res = _solve(K_nm, K_mm, y[:, None], None, 1e-3, max_iter=100, tol=1e-10)
    assert np.isfinite(beta).all() and res < 1e-5
    # beta is not unique (K_mm's null space), the predictions are: ridge on X's span
    ref_pred = X @ np.linalg.solve(X.T @ X + 1e-3 * np.eye(3), X.T @ y)
    np.testing.assert_allclose(K_nm @ beta[:, 0], ref_pred, atol=1e-5 * np.abs(ref_pred).max())


def test_progress_bar_counts_iterations(rng, monkeypatch):
    seen = {}

    class Bar:
        def __init__(self):
            self.n, self.post = 0, []

        def update(self, k):
            self.n += k

        def set_postfix(self, **kw):
            self.post.append(kw)

    @contextlib.contextmanager
    def spy(enabled, **kw):
        seen.update(kw, enabled=enabled)
        bar = Bar()
        seen["bar"] = bar
        yield bar

    monkeypatch.setattr(_falkon, "progress_bar", spy)
    K_nm, K_mm, Y, w = _problem(rng)
    _, it, res = _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=7, tol=0.0, progress=True)
    bar = seen.pop("bar")
    assert seen == {"enabled": True, "total": 7, "desc": "falkon CG", "unit": "it",
                    "leave": False}  # fmt: skip
    assert bar.n == it == 7 and len(bar.post) == 7
    assert bar.post[-1] == {"residual": f"{res:.2e}"}
    _solve(K_nm, K_mm, Y, w, 1e-2, max_iter=2)
    assert seen["enabled"] is False


# ---------------------------------------------------------------------------
# the normal product, the block helpers, the centres, the budget
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_in_memory_normal_products(rng, store, weighted):
    K_nm, _, Y, w = _problem(rng, n=100, m=9)
    w = w if weighted else None
    blocks, calls = _blocks(K_nm, 30)  # blocks of 30, 30, 30, 10 rows
    rhs, normal = _falkon.in_memory_normal(blocks, Y, w, store=store)
    W = np.ones(100) if w is None else w
    np.testing.assert_allclose(rhs, K_nm.T @ (W[:, None] * Y), rtol=1e-13, atol=1e-13)
    beta = rng.standard_normal((9, 2))
    for _ in range(2):
        np.testing.assert_allclose(normal(beta), K_nm.T @ (W[:, None] * (K_nm @ beta)),
                                   rtol=1e-13, atol=1e-12)  # fmt: skip
    # stored: the blocks are computed once; recomputed: once more per product
    assert len(calls) == (1 if store else 3)


def test_chol_upper(rng):
    B = rng.standard_normal((7, 7))
    S = B @ B.T + 7 * np.eye(7)
    F = np.asfortranarray(S.copy())
    _falkon._chol_upper(F)
    np.testing.assert_array_equal(np.tril(F, -1), 0.0)
    np.testing.assert_allclose(F, scipy.linalg.cholesky(S, lower=False), rtol=1e-13)
    np.testing.assert_allclose(F.T @ F, S, rtol=1e-13)


def test_block_rows_and_budget_boundary():
    for n, m, size in [(10_000, 300, 8), (50, 40, 4), (1_000_000, 2000, 4)]:
        assert _falkon.knm_rows(n, m, size) == default_block_rows(n, m, size)
    assert _falkon.fits(100, 30, 8, 24_000)  # exactly the budget fits
    assert not _falkon.fits(100, 30, 8, 23_999)
    assert _falkon.fits(100, 30, 4, 12_000) and not _falkon.fits(100, 30, 4, 11_999)


def test_sample_centers():
    from sklearn.utils import check_random_state

    np.testing.assert_array_equal(_falkon.sample_centers(10, 10, 0), np.arange(10))
    np.testing.assert_array_equal(_falkon.sample_centers(10, 50, 0), np.arange(10))
    idx = _falkon.sample_centers(100, 7.0, 3)  # a float count is taken as an int
    assert idx.dtype.kind == "i" and idx.size == 7
    ref = np.sort(check_random_state(3).choice(100, size=7, replace=False))
    np.testing.assert_array_equal(idx, ref)
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(_falkon.sample_centers(100, 7, 3), idx)
    assert not np.array_equal(_falkon.sample_centers(100, 7, 4), idx)
    gen = np.random.RandomState(3)
    np.testing.assert_array_equal(_falkon.sample_centers(100, 7, gen), idx)


def test_default_budget_when_nothing_is_known(monkeypatch):
    monkeypatch.setattr(_falkon, "available_memory", lambda: None)
    monkeypatch.setattr(_falkon, "physical_memory", lambda: None)
    assert _falkon.default_max_memory() == 4 * 2**30
    monkeypatch.setattr(_falkon, "available_memory", lambda: 2**30 + 1)
    assert _falkon.default_max_memory() == 2**29
    assert isinstance(_falkon.default_max_memory(), int)
