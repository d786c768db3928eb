"""The block Lanczos top-k eigensolver (kernelcomp._eigsolve) against LAPACK.

Random symmetric PSD matrices with power-law, clustered, degenerate and
rank-deficient spectra: eigenvalues against ``numpy.linalg.eigh``, residuals
``||K v - l v||`` recomputed here, orthonormality, and eigenvectors (or, inside
a cluster of equal eigenvalues, the spanned subspace) against LAPACK's.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernelcomp as kc
import kernelcomp._eigsolve as eigsolve
import kernelcomp._gram
from kernelcomp import diagnostics as dg
from kernelcomp._eigsolve import (
    _orthonormalize,
    block_lanczos_topk,
    default_sizes,
    drop_tolerance,
)


def _matrix(rng, spectrum):
    n = spectrum.size
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    K = (U * spectrum) @ U.T
    return 0.5 * (K + K.T)


def _spectra(n):
    r = np.arange(1, n + 1, dtype=float)
    spread = 1 + 1e-9 * np.tile(np.arange(5), n // 5)
    clustered = np.repeat(np.logspace(0, -3, n // 5), 5) * spread
    degenerate = np.r_[np.full(4, 2.0), np.full(8, 1.0), np.linspace(0.5, 0.01, n - 12)]
    rank_deficient = np.r_[np.linspace(3, 1, 15), np.zeros(n - 15)]
    return {"power_law": r**-1.5, "clustered": clustered, "degenerate": degenerate,
            "rank_deficient": rank_deficient}  # fmt: skip


def _check(K, w, V, k, tol):
    w_ref, V_ref = np.linalg.eigh(K)
    w_ref, V_ref = w_ref[::-1][:k], V_ref[:, ::-1][:, :k]
    top = w_ref[0]
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-10 * top)
    res = np.linalg.norm(K @ V - V * w, axis=0)
    assert res.max() <= tol * top * 1.0001, res.max() / top
    np.testing.assert_allclose(V.T @ V, np.eye(k), rtol=0, atol=1e-10)
    # eigenvectors of well-separated eigenvalues match; clusters match as subspaces
    groups = np.split(np.arange(k), np.flatnonzero(np.diff(w_ref) < -1e-6 * top) + 1)
    full_w, full_V = np.linalg.eigh(K)
    for g in groups:
        if g[-1] == k - 1 and g.size > 1:
            continue  # a cluster cut by the k-th eigenvalue is not defined by the top k
        near = np.abs(full_w - w_ref[g[0]]) <= 1e-6 * top + 1e-3 * np.ptp(w_ref[g]) + 1e-9
        P_ref = full_V[:, near] @ full_V[:, near].T
        P = V[:, g] @ V[:, g].T
        if near.sum() == g.size:
            np.testing.assert_allclose(P, P_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["power_law", "clustered", "degenerate", "rank_deficient"])
@pytest.mark.parametrize("k", [5, 20])
def test_block_lanczos_against_lapack(rng, name, k):
    n = 400
    K = _matrix(rng, _spectra(n)[name])
    w, V, info = block_lanczos_topk(lambda B: K @ B, n, k, np.float64, tol=1e-10)
    assert info.converged and info.max_residual <= 1e-10
    assert info.n_products >= k and info.n_passes >= 1
    _check(K, w, V, k, 1e-10)


def test_block_lanczos_is_deterministic_and_seeded(rng):
    n = 300
    K = _matrix(rng, _spectra(n)["power_law"])
    a = block_lanczos_topk(lambda B: K @ B, n, 10, np.float64, random_state=3)
    b = block_lanczos_topk(lambda B: K @ B, n, 10, np.float64, random_state=3)
    c = block_lanczos_topk(lambda B: K @ B, n, 10, np.float64, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(c[0], a[0], rtol=1e-9)
    assert not np.array_equal(c[1], a[1])  # another start, the same answer to tol


def test_block_lanczos_float32_and_small_blocks(rng):
    n = 300
    K = _matrix(rng, _spectra(n)["power_law"]).astype(np.float32)
    w, V, info = block_lanczos_topk(lambda B: K @ B, n, 8, np.float32, tol=1e-5, block=3,
                                    max_basis=30)  # fmt: skip
    assert info.converged and w.dtype == V.dtype == np.float32
    w_ref = np.linalg.eigvalsh(K.astype(np.float64))[::-1][:8]
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-5 * w_ref[0])


def test_block_lanczos_reports_no_convergence(rng):
    n = 300
    K = _matrix(rng, _spectra(n)["clustered"])
    *_, info = block_lanczos_topk(lambda B: K @ B, n, 20, np.float64, tol=1e-14, block=2,
                                  max_basis=24, max_restarts=1)  # fmt: skip
    assert not info.converged and info.restarts == 1 and info.max_residual > 1e-14


def test_kernel_pca_lanczos_route_on_an_ntk_gram(rng):
    X, _ = kc.datasets.stripe(1500, 5, seed=0)
    K = kc.NTK(depth=2, bias_std=1.0)(X)
    ev = dg.kernel_pca(K, n_components=30, method="lanczos", tol=1e-11)
    ref = dg.kernel_pca(K, n_components=30, method="subset")
    np.testing.assert_allclose(ev.eigenvalues, ref.eigenvalues, rtol=0,
                               atol=1e-10 * ref.eigenvalues[0])  # fmt: skip
    res = np.linalg.norm(K @ ev.eigenvectors - ev.eigenvectors * ev.eigenvalues, axis=0)
    assert res.max() <= 1e-11 * ev.eigenvalues[0]
    sep = np.r_[np.abs(np.diff(ref.eigenvalues)) > 1e-6 * ref.eigenvalues[0], False]
    sep &= np.r_[True, sep[:-1]]
    np.testing.assert_allclose(ev.eigenvectors[:, sep], ref.eigenvectors[:, sep], atol=1e-6)
    with pytest.raises(ValueError, match=r"tol must be in \(0, 1\)"):
        dg.kernel_pca(K, n_components=3, method="lanczos", tol=0.0)
    with pytest.raises(ValueError, match="needs n_components < n"):
        dg.kernel_pca(K[:5, :5], n_components=5, method="lanczos")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_orthonormalize_gives_the_gram_schmidt_coefficients(rng, dtype):
    # V = Q C + Y R: the Rayleigh-Ritz matrix is assembled from C and the residual
    # estimates use R, so both must be right, not only the orthonormal Y
    n = 200
    Q, _ = np.linalg.qr(rng.standard_normal((n, 30)))
    V = Q @ rng.standard_normal((30, 6)) + 1e-3 * rng.standard_normal((n, 6))
    V = np.c_[V, V[:, :1] + V[:, 1:2]].astype(dtype)  # one dependent column: dropped
    Y, C, R = _orthonormalize(V, Q.astype(dtype))
    assert Y.shape == (n, 6) and C.shape == (30, 7) and R.shape == (6, 7)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(Y.T @ Y, np.eye(6), atol=tol * 10)
    np.testing.assert_allclose(Q.T @ Y, 0, atol=tol * 10)
    np.testing.assert_allclose(Q @ C + Y @ R, V, atol=tol * np.abs(V).max() * 10)


@pytest.mark.parametrize("seed", range(40))
def test_orthonormalize_drops_a_dependent_column_whatever_the_rounding(dtype, seed):
    # the drop rule is a rounding bound, not one BLAS kernel's luck: with the old
    # fixed 10 eps (and the Cholesky QR accepting a diagonal at sqrt(eps) level)
    # the dependent column was kept for ~40 % of these seeds, on any OpenBLAS kernels
    rng = np.random.default_rng(seed)
    n = 200
    Q, _ = np.linalg.qr(rng.standard_normal((n, 30)))
    V = Q @ rng.standard_normal((30, 6)) + 1e-3 * rng.standard_normal((n, 6))
    V = np.c_[V, V[:, :1] + V[:, 1:2], V[:, 2:3] - V[:, 3:4]].astype(dtype)
    Y = _orthonormalize(V, Q.astype(dtype))[0]
    assert Y.shape == (n, 6)
    assert drop_tolerance(n, 38, dtype) < 1e-3 / 10  # the independent parts are kept


def test_default_sizes_and_thick_restart_rule(rng, monkeypatch):
    # the rules tuned on an n = 5000 NTK Gram (scripts/bench_diagnostics.py): b = k / 3,
    # m = 3.5 k, and 70 % of the basis kept at a restart (646 products for the top 100
    # there, against 782 when keeping half)
    assert default_sizes(5000, 100) == (34, 350)
    assert default_sizes(5000, 10) == (8, 48)
    assert default_sizes(40, 30) == (10, 40)
    n, k = 1500, 60
    K = _matrix(rng, np.arange(1, n + 1, dtype=float) ** -1.0)
    w, V, tuned = block_lanczos_topk(lambda B: K @ B, n, k, np.float64)
    assert tuned.converged and tuned.restarts >= 1
    _check(K, w, V, k, 1e-9)
    monkeypatch.setattr(eigsolve, "KEEP_FRACTION", 0.5)
    *_, half = block_lanczos_topk(lambda B: K @ B, n, k, np.float64)
    assert half.converged and tuned.n_products < half.n_products, (tuned, half)


def test_products_keep_the_callers_blas_threads(rng, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return max(p["num_threads"] for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas")  # fmt: skip

    n = 300
    K = _matrix(rng, _spectra(n)["power_law"])
    seen = {"products": set(), "dense": set()}
    cholqr = eigsolve._cholqr

    def spy(*args, **kwargs):
        seen["dense"].add(blas_threads())
        return cholqr(*args, **kwargs)

    def matmul(B):
        seen["products"].add(blas_threads())
        return K @ B

    monkeypatch.setattr(eigsolve, "_cholqr", spy)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if blas_threads() < 2:
            pytest.skip("this BLAS runs one thread only")
        w, _, info = block_lanczos_topk(matmul, n, 10, np.float64)
        assert blas_threads() == 2  # restored
    assert info.converged and seen == {"products": {2}, "dense": {eigsolve.DENSE_THREADS}}
    np.testing.assert_allclose(w, np.linalg.eigvalsh(K)[::-1][:10], rtol=0, atol=1e-10 * w[0])


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_block_lanczos_is_scale_invariant(rng, scale):
    n = 300
    K = _matrix(rng, _spectra(n)["power_law"])
    w1, V1, _ = block_lanczos_topk(lambda B: K @ B, n, 6, np.float64)
    Ks = K * scale
    w2, V2, info = block_lanczos_topk(lambda B: Ks @ B, n, 6, np.float64)
    assert info.converged
    np.testing.assert_allclose(w2 / scale, w1, rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(V1 * V2, axis=0)), 1.0, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_pca_out_of_core_matches_in_memory(tmp_path, monkeypatch, dtype):
    import h5py

    X, _ = kc.datasets.stripe(700, 4, seed=1)
    K = kc.NTK(depth=1, bias_std=1.0)(X).astype(dtype)
    with h5py.File(tmp_path / "K.h5", "w") as f:
        f.create_dataset("K", data=K, chunks=(64, 700))
    monkeypatch.setattr(kernelcomp._gram, "_BLOCK_BYTES", 100 * 700 * K.itemsize)  # 7 row blocks
    tol = 1e-10 if dtype == np.float64 else 1e-5
    mem = dg.kernel_pca(K, n_components=12, method="lanczos", tol=tol)
    with h5py.File(tmp_path / "K.h5", "r") as f:
        disk = dg.kernel_pca(f["K"], n_components=12, tol=tol, progress=True)
        assert disk.eigenvalues.dtype == dtype
        np.testing.assert_allclose(disk.eigenvalues, mem.eigenvalues, rtol=0,
                                   atol=10 * tol * mem.eigenvalues[0])  # fmt: skip
        assert disk.trace == pytest.approx(float(np.trace(K, dtype=np.float64)), rel=1e-6)
        sep = np.abs(np.diff(mem.eigenvalues)) > 1e-3 * mem.eigenvalues[0]
        sep = np.r_[sep, False] & np.r_[True, sep]
        np.testing.assert_allclose(disk.eigenvectors[:, sep], mem.eigenvectors[:, sep],
                                   atol=1e-6 if dtype == np.float64 else 2e-2)  # fmt: skip
        with pytest.raises(ValueError, match="needs n_components"):
            dg.kernel_pca(f["K"])
        with pytest.raises(ValueError, match="method='lanczos' only"):
            dg.kernel_pca(f["K"], n_components=3, method="subset")
        with pytest.raises(ValueError, match="center=True is not available"):
            dg.kernel_pca(f["K"], n_components=3, center=True)
    asym = K.copy()
    asym[0, 1] += 1.0
    with h5py.File(tmp_path / "A.h5", "w") as f:
        f.create_dataset("K", data=asym)
        with pytest.raises(ValueError, match="must be symmetric"):
            dg.kernel_pca(f["K"], n_components=3)


@pytest.mark.slow
def test_kernel_pca_lanczos_in_memory_and_on_disk_at_mnist_size(tmp_path):
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        import h5py
        X = rng.standard_normal(({N_MNIST}, 10))
        K = kc.NTK(depth=1)(X, dtype="float32")
        ev = kc.diagnostics.kernel_pca(K, n_components=20)        # auto: block Lanczos
        R = K @ ev.eigenvectors - ev.eigenvectors * ev.eigenvalues
        assert float(np.abs(R).max()) < 1e-4 * ev.eigenvalues[0], np.abs(R).max()
        path = {str(tmp_path / "K.h5")!r}
        with h5py.File(path, "w") as f:
            f.create_dataset("K", data=K, chunks=(256, {N_MNIST}))
        del K
        with h5py.File(path, "r") as f:
            disk = kc.diagnostics.kernel_pca(f["K"], n_components=20)
        close(disk.eigenvalues, ev.eigenvalues, 1e-4)
    """)
