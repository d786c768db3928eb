"""Parameter effects, boundaries and derived defaults of the block Lanczos solver (issue 26).

Each test pins a documented parameter, output or boundary of ``kernelcomp._eigsolve`` that a
mutmut survivor of ``make mutation MODULE=kernelcomp/_eigsolve.py`` showed unpinned, against
``scipy.linalg.eigh`` or a hand-computed case: the block and basis sizes (read off the widths
of the products and the sizes of the Rayleigh--Ritz problems), the thick-restart rule, the
convergence test ``<= tol`` and the drop rule of the Gram--Schmidt step. The mutants left
alive on purpose are listed with their reason in tests/mutation_equivalents.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

import kernelcomp._eigsolve as eigsolve
from kernelcomp._eigsolve import (
    EigshInfo,
    _cholqr,
    _orthonormalize,
    block_lanczos_topk,
    default_sizes,
    drop_tolerance,
)
from tests.test_eigsolve import _matrix as _psd  # a symmetric matrix of a given spectrum


def _power_law(rng, n, p=1.0):
    return _psd(rng, np.arange(1, n + 1, dtype=float) ** -p)


def _top(K, k):
    w, V = scipy.linalg.eigh(K)
    return w[::-1][:k], V[:, ::-1][:, :k]


class _Trace:
    """Records the width of every product and the size of every Rayleigh--Ritz problem."""

    def __init__(self, K, monkeypatch):
        self.K = K
        self.widths: list[int] = []
        self.rr: list[int] = []
        eigh = scipy.linalg.eigh

        def spy(H, *args, **kwargs):
            self.rr.append(H.shape[0])
            return eigh(H, *args, **kwargs)

        monkeypatch.setattr(scipy.linalg, "eigh", spy)

    def __call__(self, V):
        self.widths.append(V.shape[1])
        return self.K @ V


def _rr_sizes(n, k, b, m, cycles):
    """The Rayleigh--Ritz sizes the documented rules give: grow by b to >= m, keep, regrow."""
    keep = min(m - b, max(k + b // 2, int(0.7 * m)))
    first = b * math.ceil(m / b)
    sizes = [first]
    for _ in range(cycles - 1):
        cur = min(keep, sizes[-1]) + b
        while cur < m:
            cur += b
        sizes.append(cur)
    return sizes


# ---------------------------------------------------------------------------
# sizes: block, max_basis, their defaults and the thick restart
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k", "b", "m"), [
    (5000, 100, 34, 350), (5000, 10, 8, 48), (40, 30, 10, 40), (5000, 3, 8, 48),
    (5000, 24, 8, 84), (5000, 25, 9, 88), (5000, 13, 8, 48), (5000, 14, 8, 49),
    (6, 3, 6, 6), (30, 1, 8, 30),
])  # fmt: skip
def test_default_sizes_follow_the_documented_formula(n, k, b, m):
    # b = max(8, ceil(k / 3)), m = max(ceil(3.5 k), 6 b), both capped at n; the rows sit
    # on each max / ceil / cap switching over
    assert default_sizes(n, k) == (b, m)
    assert default_sizes(n, k) == (
        min(n, max(8, math.ceil(k / 3))),
        min(n, max(math.ceil(3.5 * k), 6 * max(8, math.ceil(k / 3)))),
    )


def test_block_and_max_basis_set_the_products_and_the_restarts(rng, monkeypatch):
    n, k, b, m = 120, 4, 3, 20
    K = _power_law(rng, n, 2.0)
    trace = _Trace(K, monkeypatch)
    w, _, info = block_lanczos_topk(trace, n, k, np.float64, tol=1e-10, block=b, max_basis=m)
    assert info.converged and info.restarts >= 2, info
    # every product is one block of b columns; the basis grows to 21 >= m = 20, then keeps
    # min(m - b, max(k + b // 2, int(0.7 m))) = 14 Ritz vectors and regrows to 20
    assert set(trace.widths) == {b}
    assert trace.rr == _rr_sizes(n, k, b, m, info.restarts + 1) == [21] + [20] * info.restarts
    assert info.n_passes == len(trace.widths) == 7 + 2 * info.restarts
    assert info.n_products == b * info.n_passes
    w_ref, _ = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-9 * w_ref[0])


def test_default_block_and_basis(rng, monkeypatch):
    n, k = 200, 4
    K = _power_law(rng, n, 1.0)
    trace = _Trace(K, monkeypatch)
    w, _, info = block_lanczos_topk(trace, n, k, np.float64, tol=1e-8)
    b, m = default_sizes(n, k)
    assert (b, m) == (8, 48)
    assert info.converged and info.restarts >= 1, info
    assert set(trace.widths) == {8}
    # keep = min(40, max(4 + 4, int(0.7 * 48) = 33)) = 33, then 33 + 8 = 41 -> 49
    assert trace.rr == [48] + [49] * info.restarts
    w_ref, _ = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-7 * w_ref[0])


def test_a_basis_too_small_for_k_grows_to_k_plus_a_block(rng, monkeypatch):
    # max_basis = 5 < k + b = 7: the basis is raised to k + b, and keep = m - b = k
    n, k, b = 120, 4, 3
    K = _power_law(rng, n, 2.0)
    trace = _Trace(K, monkeypatch)
    w, _, info = block_lanczos_topk(trace, n, k, np.float64, tol=1e-6, block=b, max_basis=5,
                                    max_restarts=400)  # fmt: skip
    assert info.converged, info
    assert trace.rr[0] == 9 and set(trace.rr[1:]) == {7}
    w_ref, _ = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-5 * w_ref[0])


def test_keep_rule_with_a_large_block(rng, monkeypatch):
    # k + b // 2 = 10 + 2 = 12 > int(0.7 * 17) = 11, and < m - b = 13: 12 are kept
    n, k, b, m = 150, 10, 4, 17
    K = _power_law(rng, n, 2.0)
    trace = _Trace(K, monkeypatch)
    w, _, info = block_lanczos_topk(trace, n, k, np.float64, tol=1e-8, block=b, max_basis=m)
    assert info.converged and info.restarts >= 1, info
    assert trace.rr == [20] + [20] * info.restarts  # 12 kept + 4 = 16 -> 20
    # the cap m - b: max_basis = 18 is raised to k + b = 19 with a block of 9, and the
    # restart keeps m - b = 10 (not max(10 + 4, 13) = 14)
    trace2 = _Trace(K, monkeypatch)
    _, _, info2 = block_lanczos_topk(trace2, n, k, np.float64, tol=1e-8, block=9,
                                     max_basis=18)  # fmt: skip
    assert info2.restarts >= 1
    assert trace2.rr == [27] + [19] * info2.restarts
    w_ref, _ = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-7 * w_ref[0])


def test_sizes_capped_at_n(rng, monkeypatch):
    # block and basis larger than n: both capped at n; the whole space is one basis, no
    # restart, exact eigenpairs
    n, k = 10, 3
    K = _power_law(rng, n, 1.0)
    trace = _Trace(K, monkeypatch)
    w, V, info = block_lanczos_topk(trace, n, k, np.float64, block=50, max_basis=80)
    assert trace.widths == [n] and trace.rr == [n]
    assert info.restarts == 0 and info.converged and info.n_products == n
    w_ref, V_ref = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.abs(np.sum(V * V_ref, axis=0)), 1.0, atol=1e-12)


# ---------------------------------------------------------------------------
# the convergence test, the restarts, the residuals reported
# ---------------------------------------------------------------------------


def test_tol_is_an_inclusive_bound_on_the_relative_residual(rng):
    # max_restarts=0 stops at the first Rayleigh-Ritz whatever tol, so the same pairs come
    # back; converged then reads res <= tol exactly at res == tol
    n, k = 150, 5
    K = _power_law(rng, n, 1.0)

    def run(tol):
        return block_lanczos_topk(lambda B: K @ B, n, k, np.float64, tol=tol, block=4,
                                  max_basis=16, max_restarts=0)  # fmt: skip

    w, V, info = run(1e-300)
    r = info.max_residual
    assert not info.converged and info.restarts == 0 and r > 1e-6
    # the reported residual is max ||K v - theta v|| / theta_1, recomputed here
    res = np.linalg.norm(K @ V - V * w, axis=0) / w[0]
    assert r == pytest.approx(res.max(), rel=1e-6)
    assert run(r)[2].converged
    assert not run(np.nextafter(r, 0.0))[2].converged
    np.testing.assert_array_equal(run(r)[0], w)


def test_a_looser_tol_stops_earlier_and_max_restarts_caps_the_restarts(rng):
    n, k = 300, 6
    K = _power_law(rng, n, 1.0)
    tight = block_lanczos_topk(lambda B: K @ B, n, k, np.float64, tol=1e-12)[2]
    loose = block_lanczos_topk(lambda B: K @ B, n, k, np.float64, tol=1e-4)[2]
    assert tight.converged and loose.converged
    assert loose.n_products < tight.n_products and loose.restarts < tight.restarts
    assert 1e-12 < loose.max_residual <= 1e-4 and tight.max_residual <= 1e-12
    for cap in (0, 1, 2):
        info = block_lanczos_topk(lambda B: K @ B, n, k, np.float64, tol=1e-14, block=2,
                                  max_basis=12, max_restarts=cap)[2]  # fmt: skip
        assert info.restarts == cap and not info.converged


def test_returned_pairs_are_the_top_k_descending_and_orthonormal(rng, dtype):
    n, k = 160, 7
    K = _power_law(rng, n, 1.2)
    Kd = K.astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    w, V, info = block_lanczos_topk(lambda B: Kd @ B, n, k, dtype, tol=tol)
    assert isinstance(info, EigshInfo)
    assert w.shape == (k,) and V.shape == (n, k) and w.dtype == V.dtype == dtype
    assert w.flags.c_contiguous and V.flags.c_contiguous
    assert np.all(np.diff(w) < 0)
    w_ref, V_ref = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=10 * tol * w_ref[0])
    np.testing.assert_allclose(V.T.astype(float) @ V, np.eye(k), atol=10 * tol)
    np.testing.assert_allclose(np.abs(np.sum(V * V_ref, axis=0)), 1.0, atol=1e-3 if
                               dtype == np.float32 else 1e-8)  # fmt: skip
    res = np.linalg.norm(K @ V - V * w, axis=0) / w[0]
    assert info.max_residual == pytest.approx(res.max(), rel=1e-2, abs=tol * 1e-2)


def test_zero_matrix_and_negative_top(rng):
    # theta_1 = 0: the relative residuals divide by the smallest positive float, not by 0
    n, k = 40, 3
    w, V, info = block_lanczos_topk(lambda B: np.zeros_like(B), n, k, np.float64)
    assert info.converged and info.max_residual == 0.0 and info.restarts == 0
    np.testing.assert_array_equal(w, 0.0)
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-12)
    # a negative definite matrix: the largest eigenvalues are the least negative, residuals
    # relative to |theta_1|
    K = -_power_law(rng, 60, 1.0) - 0.5 * np.eye(60)
    w, V, info = block_lanczos_topk(lambda B: K @ B, 60, 3, np.float64, tol=1e-10)
    w_ref, _ = _top(K, 3)
    assert info.converged
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-9)


def test_invariant_subspace_restarts_from_a_random_block(rng, monkeypatch):
    # rank 3 and a block of 4: the Krylov space is invariant after one product; a random
    # block keeps the basis growing, and the zero eigenvalues come back exactly
    n, k = 50, 5
    U, _ = np.linalg.qr(rng.standard_normal((n, 3)))
    K = (U * [3.0, 2.0, 1.0]) @ U.T
    trace = _Trace(K, monkeypatch)
    w, V, info = block_lanczos_topk(trace, n, k, np.float64, block=4, max_basis=12)
    assert info.converged
    np.testing.assert_allclose(w, [3.0, 2.0, 1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(K @ V - V * w, 0.0, atol=1e-12)


# ---------------------------------------------------------------------------
# the Gram-Schmidt step and its drop rule
# ---------------------------------------------------------------------------


def test_drop_tolerance_formula():
    for n, c, dt in [(200, 36, np.float64), (10_000, 1, np.float32), (1, 1, np.float64)]:
        eps = np.finfo(dt).eps
        assert drop_tolerance(n, c, dt) == pytest.approx(4 * eps * (math.sqrt(n) + math.sqrt(c)),
                                                         rel=1e-15)  # fmt: skip
    assert drop_tolerance(100, 4, np.float32) > drop_tolerance(100, 4, np.float64)


def test_cholqr_factors_and_pivots(rng, dtype):
    n, c = 60, 5
    V = (rng.standard_normal((n, c)) * [1.0, 1e3, 1e-3, 5.0, 0.2]).astype(dtype)
    drop = drop_tolerance(n, c, dtype)
    Y, R, kept = _cholqr(V, drop)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert Y.flags.f_contiguous and Y.dtype == dtype
    np.testing.assert_array_equal(kept, np.arange(c))
    np.testing.assert_allclose(Y.T @ Y, np.eye(c), atol=10 * tol)
    np.testing.assert_allclose(Y @ R, V, rtol=0, atol=10 * tol * np.abs(V).max())
    np.testing.assert_allclose(np.triu(R), R, atol=0)
    assert np.all(np.diagonal(R) > 0)
    # R against LAPACK's QR (signs made positive): the scaled Cholesky QR gives the same R
    R_ref = np.linalg.qr(V.astype(np.float64), mode="r")
    R_ref *= np.sign(np.diagonal(R_ref))[:, None]
    np.testing.assert_allclose(R, R_ref, rtol=10 * tol, atol=10 * tol * np.abs(R_ref).max())


def test_cholqr_drops_a_zero_and_a_dependent_column(rng):
    n = 50
    V = rng.standard_normal((n, 4))
    V[:, 1] = 0.0  # a zero column: Householder QR, dropped
    V[:, 3] = V[:, 0] - 2.0 * V[:, 2]  # dependent: dropped
    Y, R, kept = _cholqr(V, drop_tolerance(n, 4, V.dtype))
    assert kept.size == 2 and 1 not in kept
    assert Y.shape == (n, 2) and R.shape == (2, 4) and Y.flags.f_contiguous
    np.testing.assert_allclose(Y.T @ Y, np.eye(2), atol=1e-13)
    np.testing.assert_allclose(Y @ R, V, atol=1e-12)


def test_orthonormalize_keeps_v_after_a_dependent_column_in_the_middle(rng):
    # regression (issue 26): the Householder fallback dropped the rows of the dependent
    # columns without pivoting; the reflector of a dependent column in the middle also
    # held part of the later columns, so V = Q C + Y R failed by O(|V|) (0.24 here)
    n = 80
    Q, _ = np.linalg.qr(rng.standard_normal((n, 10)))
    a, b, c = rng.standard_normal((3, n))
    V = np.c_[a, b, a + b, c]
    Y, C, R = _orthonormalize(V, Q)
    assert Y.shape == (n, 3)
    np.testing.assert_allclose(Y.T @ Y, np.eye(3), atol=1e-14)
    np.testing.assert_allclose(Q.T @ Y, 0.0, atol=1e-14)
    np.testing.assert_allclose(Q @ C + Y @ R, V, atol=1e-13)


def test_cholqr_drop_is_relative_to_the_given_scale(rng):
    # a column of norm 1e-6 is kept relative to its own norm, dropped relative to a
    # scale of 1 (its part left by a projection) only when below drop
    n = 40
    V = rng.standard_normal((n, 3))
    V /= np.linalg.norm(V, axis=0)
    V[:, 2] *= 1e-6
    drop = 1e-4
    assert _cholqr(V, drop)[2].tolist() == [0, 1, 2]
    assert _cholqr(V, drop, np.ones(3))[2].tolist() == [0, 1]
    assert _cholqr(V, 1e-7, np.ones(3))[2].tolist() == [0, 1, 2]
    # the boundary: a diagonal of exactly drop (relative) is dropped (kept only when > drop)
    E = np.eye(n)[:, :3] * [1.0, 1.0, 0.25]
    assert _cholqr(E, 0.25, np.ones(3))[2].tolist() == [0, 1]
    assert _cholqr(E, np.nextafter(0.25, 0.0), np.ones(3))[2].tolist() == [0, 1, 2]
    # Cholesky's diagonal at the rounding floor: decided by the Householder QR
    floor = math.sqrt(4.0 * np.finfo(np.float64).eps * (n + 3))
    F = np.eye(n)[:, :3] * [1.0, 1.0, floor]
    Y, R, kept = _cholqr(F, 1e-12, np.ones(3))
    assert kept.tolist() == [0, 1, 2]
    np.testing.assert_allclose(Y @ R, F, atol=1e-15)


def test_orthonormalize_defaults_and_passes(rng):
    n = 80
    Q, _ = np.linalg.qr(rng.standard_normal((n, 10)))
    V = Q @ rng.standard_normal((10, 4)) + 1e-2 * rng.standard_normal((n, 4))
    Y, C, R = _orthonormalize(V, Q)
    assert C.dtype == R.dtype == np.float64 and C.shape == (10, 4) and R.shape == (4, 4)
    np.testing.assert_allclose(Q.T @ Y, 0.0, atol=1e-15)
    np.testing.assert_allclose(Q @ C + Y @ R, V, atol=1e-14)
    np.testing.assert_allclose(C, Q.T @ V, atol=1e-14)  # the coefficients of V on Q
    # one pass leaves more of Q in Y than two on an ill-conditioned projection
    W = Q @ rng.standard_normal((10, 4)) + 1e-9 * rng.standard_normal((n, 4))
    one = np.abs(Q.T @ _orthonormalize(W, Q, drop=1e-14, passes=1)[0]).max()
    two = np.abs(Q.T @ _orthonormalize(W, Q, drop=1e-14)[0]).max()
    assert two < 1e-14 < one
    # without Q: the QR of V, C empty
    Y0, C0, R0 = _orthonormalize(V, None)
    assert C0.shape == (0, 4)
    np.testing.assert_allclose(Y0 @ R0, V, atol=1e-14)
    # everything in span(Q): no column left, C still the coefficients
    Yz, Cz, Rz = _orthonormalize(Q[:, :3] @ np.ones((3, 2)), Q)
    assert Yz.shape == (n, 0) and Rz.shape == (0, 2)
    np.testing.assert_allclose(Cz[:3], 1.0, atol=1e-14)
    # the default drop is drop_tolerance of (n, q + c): a column 1e-13 outside span(Q) is
    # below it (80 ** 0.5 + 14 ** 0.5 ~ 12.7 -> 1.1e-14 relative... times its norm)
    tiny = Q[:, :1] + 1e-13 * np.linalg.qr(np.c_[Q, rng.standard_normal(n)])[0][:, -1:]
    assert _orthonormalize(tiny, Q)[0].shape[1] == 1
    assert _orthonormalize(tiny, Q, drop=1e-12)[0].shape[1] == 0


def test_dense_threads_none_leaves_the_callers_setting(rng, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return max(p["num_threads"] for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas")  # fmt: skip

    n = 100
    K = _power_law(rng, n)
    seen = set()
    cholqr = eigsolve._cholqr

    def spy(*args, **kwargs):
        seen.add(blas_threads())
        return cholqr(*args, **kwargs)

    monkeypatch.setattr(eigsolve, "_cholqr", spy)
    monkeypatch.setattr(eigsolve, "DENSE_THREADS", None)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if blas_threads() < 2:
            pytest.skip("this BLAS runs one thread only")
        block_lanczos_topk(lambda B: K @ B, n, 3, np.float64)
    assert seen == {2}
    # one thread outside: nothing to limit, the dense work runs on it
    seen.clear()
    monkeypatch.setattr(eigsolve, "DENSE_THREADS", 1)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        block_lanczos_topk(lambda B: K @ B, n, 3, np.float64)
        assert blas_threads() == 1
    assert seen == {1}


def test_documented_defaults_of_max_restarts_and_random_state(rng):
    # max_restarts=100: an unreachable tol stops after exactly 100 restarts; random_state=0
    n = 40
    K = _power_law(rng, n, 1.0)
    info = block_lanczos_topk(lambda B: K @ B, n, 1, np.float64, tol=1e-300, block=1,
                              max_basis=3)[2]  # fmt: skip
    assert info.restarts == 100 and not info.converged
    _w0, V0, _ = block_lanczos_topk(lambda B: K @ B, n, 2, np.float64, block=2, max_basis=6)
    _w1, V1, _ = block_lanczos_topk(lambda B: K @ B, n, 2, np.float64, block=2, max_basis=6,
                                   random_state=0)  # fmt: skip
    _w2, V2, _ = block_lanczos_topk(lambda B: K @ B, n, 2, np.float64, block=2, max_basis=6,
                                   random_state=1)  # fmt: skip
    np.testing.assert_array_equal(V0, V1)
    assert not np.array_equal(V0, V2)


def test_a_matmul_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"matmul returned shape \(20, 1\), expected \(20, 8\)"):
        block_lanczos_topk(lambda B: B[:, :1], 20, 2, np.float64)


def test_orthonormalize_drop_scale_is_per_column_and_n_sized(rng):
    # the default drop is drop_tolerance(n, q + c): at n = 400, q + c = 11 it is 2.1e-14; a
    # column whose part outside span(Q) is 1e-14 of its norm is dropped (a bound from c
    # instead of n, 3.8e-15, would keep it), one at 1e-13 is kept
    n = 400
    Q, _ = np.linalg.qr(rng.standard_normal((n, 10)))
    out = np.linalg.qr(np.c_[Q, rng.standard_normal(n)])[0][:, -1:]
    assert drop_tolerance(n, 11, np.float64) > 2e-14 > 4e-15 > drop_tolerance(1, 11, np.float64)
    assert _orthonormalize(Q[:, :1] + 1e-14 * out, Q)[0].shape[1] == 0
    assert _orthonormalize(Q[:, :1] + 1e-13 * out, Q)[0].shape[1] == 1
    # each column is judged against its own norm: a tiny independent column next to a
    # large one is kept
    V = np.c_[rng.standard_normal(n), 1e-20 * rng.standard_normal(n)]
    Y, _, R = _orthonormalize(V, None)
    assert Y.shape == (n, 2)
    np.testing.assert_allclose(Y @ R, V, rtol=1e-12, atol=0)


def test_cholqr_float32_nearly_dependent_columns_stay_orthonormal(rng):
    # a float32 column 1e-3 outside the others: Cholesky QR would lose orthogonality
    # (eps32 * cond^2 ~ 0.1); the float32 rounding floor sends it to Householder
    n = 60
    V = rng.standard_normal((n, 3))
    V[:, 2] = V[:, 0] + 1e-3 * rng.standard_normal(n)
    V = V.astype(np.float32)
    Y, R, _ = _cholqr(V, drop_tolerance(n, 3, np.float32))
    assert Y.shape == (n, 3) and Y.dtype == np.float32
    np.testing.assert_allclose(Y.T @ Y, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(Y @ R, V, atol=1e-5)


# ---------------------------------------------------------------------------
# block_lanczos_topk, second part of the round: invariant subspaces smaller than k, a block
# of one column, warnings
# ---------------------------------------------------------------------------


def test_an_invariant_subspace_smaller_than_k_is_left_by_a_random_block(rng, monkeypatch):
    # an exactly rank-1 matrix (entries +-0.125 ** 2 * 2.5, no rounding) and a block of 2:
    # after one product the basis (3 vectors: the start and the part of u outside it) spans
    # an invariant subspace holding fewer than k = 4 vectors; random blocks of 2 let it grow
    # to max_basis, and the zero eigenvalues come back with exact residuals
    n, k = 64, 4
    u = rng.choice([-0.125, 0.125], n)
    K = 2.5 * np.outer(u, u)
    trace = _Trace(K, monkeypatch)
    w, V, info = block_lanczos_topk(trace, n, k, np.float64, block=2, max_basis=8)
    assert trace.widths == [2, 1, 2, 2, 2] and trace.rr == [9]
    assert w.shape == (k,) and V.shape == (n, k)
    assert info.converged and info.restarts == 0
    np.testing.assert_allclose(w, [2.5, 0.0, 0.0, 0.0], atol=1e-13)
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-13)
    np.testing.assert_allclose(K @ V - V * w, 0.0, atol=1e-13)


def test_a_block_of_one_column_grows_the_basis_to_max_basis(rng, monkeypatch):
    # block=1: every Krylov block has one column; the basis grows one vector at a time to
    # max_basis before each Rayleigh-Ritz, keeps min(m - 1, max(k, int(0.7 m))) = 2 of 4
    n, k, m = 40, 1, 4
    K = _power_law(rng, n, 1.0)
    trace = _Trace(K, monkeypatch)
    w, _, info = block_lanczos_topk(trace, n, k, np.float64, tol=1e-10, block=1, max_basis=m)
    assert info.converged and info.restarts >= 2, info
    assert set(trace.widths) == {1}
    assert trace.rr == _rr_sizes(n, k, 1, m, info.restarts + 1) == [4] * (info.restarts + 1)
    w_ref, _ = _top(K, k)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-9 * w_ref[0])


@pytest.mark.parametrize("dtype_", [np.float64, np.float32])
def test_no_warning_is_raised(rng, dtype_):
    # a caller running with warnings as errors (-W error) gets results, not a deprecation
    # of numpy or scipy from inside the solver; also the zero matrix (theta_1 = 0)
    import warnings

    n = 60
    K = _power_law(rng, n, 1.0).astype(dtype_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block_lanczos_topk(lambda B: K @ B, n, 3, dtype_, tol=1e-4, block=2, max_basis=8)
        block_lanczos_topk(lambda B: np.zeros_like(B), n, 3, dtype_)


@pytest.mark.parametrize("scale", [2.0**-40, 2.0**40])
def test_a_power_of_two_scale_gives_the_same_iterations(rng, scale):
    # every test of the solver is relative to theta_1 (the estimates from the Lanczos
    # relation and the explicit residuals alike): scaling the matrix by a power of two
    # scales every rounded operation exactly, so the same restarts, products and residuals
    # come back, the eigenvalues scaled and the eigenvectors unchanged
    n, k = 200, 5
    K = _power_law(rng, n, 1.0)
    Ks = K * scale
    kw = dict(tol=1e-10, block=3, max_basis=15)
    w, V, info = block_lanczos_topk(lambda B: K @ B, n, k, np.float64, **kw)
    ws, Vs, infos = block_lanczos_topk(lambda B: Ks @ B, n, k, np.float64, **kw)
    assert info.converged and info.restarts >= 2, info
    same = ("restarts", "n_products", "n_passes")
    assert [getattr(infos, a) for a in same] == [getattr(info, a) for a in same]
    assert infos.max_residual == pytest.approx(info.max_residual, rel=1e-6)
    np.testing.assert_allclose(ws / scale, w, rtol=1e-14)
    np.testing.assert_allclose(Vs, V, rtol=0, atol=1e-12)


def test_tol_zero_is_met_by_exact_residuals(rng):
    # tol is inclusive for both the estimates and the explicit residuals: on the zero matrix
    # (n = 100 > max_basis = 48, so nothing else stops the iteration) every estimate and every
    # residual is exactly 0, and tol = 0 converges at the first Rayleigh-Ritz
    n, k = 100, 3
    w, V, info = block_lanczos_topk(lambda B: np.zeros_like(B), n, k, np.float64, tol=0.0)
    assert info.converged and info.restarts == 0 and info.max_residual == 0.0, info
    np.testing.assert_array_equal(w, 0.0)
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-13)


def test_float32_keeps_the_basis_and_its_image_in_float32(rng):
    # dtype: "the basis is kept in this dtype". The panels Q, W (and their restart copies)
    # are the solver's memory: a float32 run peaks at about half a float64 one (0.55 here:
    # the float64 Rayleigh-Ritz and the random start block add the rest); W in float64 or
    # the thick restart computed in float64 (a float64 copy of Q) takes it to 0.77-0.92
    import tracemalloc

    n = 3000
    d = np.arange(1, n + 1, dtype=float) ** -1.0

    def peak(dt):
        dd = d.astype(dt)[:, None]
        started = not tracemalloc.is_tracing()
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        w, V, info = block_lanczos_topk(lambda B: B * dd, n, 5, dt, tol=1e-4, max_restarts=2)
        top = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
        assert w.dtype == V.dtype == dt and info.restarts >= 1
        return top

    assert peak(np.float32) < 0.6 * peak(np.float64)
