"""Tests of kernelcomp._linalg: blocked BLAS/LAPACK products and Cholesky, safe at any n.

The fast paths are compared with plain NumPy (``A @ B.T``, ``np.linalg.cholesky``)
on random, ragged and strided inputs. The slow tests run the public API at MNIST
size (n = 20000) in a subprocess, so that a segmentation fault fails the test
instead of killing the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kernelcomp import _linalg as la

TOL = {np.float64: 1e-12, np.float32: 2e-5}


def _ref(A, B=None):
    A = A.astype(np.float64)
    return A @ (A if B is None else B.astype(np.float64)).T


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("n", "k", "block"), [(1, 3, 4096), (7, 3, 2), (301, 50, 7), (600, 40, 256)]
)
def test_syrk_upper_matches_numpy_and_leaves_lower(rng, dtype, n, k, block):
    A = rng.standard_normal((n, k)).astype(dtype)
    C = np.full((n, n), 5.0, dtype=dtype)
    la.syrk_upper(C, A, alpha=2.0, beta=0.5, block=block)
    ref = 2.0 * _ref(A) + 2.5
    iu, il = np.triu_indices(n), np.tril_indices(n, -1)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(C[iu], ref[iu], rtol=0, atol=TOL[dtype] * scale * k)
    assert (C[il] == 5.0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_nt_writes_a_strided_view_only(rng, dtype):
    A = rng.standard_normal((33, 9)).astype(dtype)
    B = rng.standard_normal((20, 9)).astype(dtype)
    big = np.ones((40, 30), dtype=dtype)
    view = big[3:36, 5:25]
    la.gemm_nt(view, A, B, alpha=-1.0, beta=2.0)
    np.testing.assert_allclose(view, 2.0 - _ref(A, B), rtol=0, atol=TOL[dtype] * 30)
    mask = np.ones_like(big, dtype=bool)
    mask[3:36, 5:25] = False
    assert (big[mask] == 1.0).all()


def test_gemm_nt_rejects_mismatched_operands(rng):
    C = np.zeros((3, 4))
    with pytest.raises(ValueError, match="shapes/dtypes do not match"):
        la.gemm_nt(C, np.zeros((3, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="shapes/dtypes do not match"):
        la.gemm_nt(C, np.zeros((3, 2), np.float32), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unit column stride"):
        la.gemm_nt(C, np.zeros((2, 3)).T, np.zeros((4, 2)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 5, 300, 4097])
def test_gram_nt_is_symmetric_and_equal_to_numpy(rng, dtype, n):
    A = rng.standard_normal((n, 6)).astype(dtype)
    G = la.gram_nt(A)
    assert G.dtype == dtype
    assert (G == G.T).all()
    np.testing.assert_allclose(G, _ref(A), rtol=0, atol=TOL[dtype] * 6 * np.abs(G).max())


@pytest.mark.parametrize("n", [1, 5, 255, 256, 257, 700])
def test_mirror_upper_both_directions(rng, n):
    A = rng.standard_normal((n, n))
    up = A.copy()
    la.mirror_upper(up)
    np.testing.assert_array_equal(up, np.triu(A) + np.triu(A, 1).T)
    low = A.copy()
    la.mirror_upper(low.T)  # the lower triangle onto the upper one
    np.testing.assert_array_equal(low, np.tril(A) + np.tril(A, -1).T)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "block"), [(1, 4), (9, 2), (300, 64), (301, 7), (500, 4096)])
def test_cholesky_inplace_matches_numpy_and_keeps_upper(rng, dtype, n, block):
    A = rng.standard_normal((n, n // 2 + 1))
    M = (A @ A.T + n * np.eye(n)).astype(dtype)
    F = M.copy(order="F")
    upper = np.triu(F, 1).copy()
    la.cholesky_inplace(F, block=block)
    L = np.linalg.cholesky(M.astype(np.float64))
    np.testing.assert_allclose(np.tril(F), L, rtol=0, atol=TOL[dtype] * 10 * np.abs(L).max())
    np.testing.assert_array_equal(np.triu(F, 1), upper)


def test_cholesky_inplace_names_the_failing_minor():
    M = np.eye(600)
    M[400, 400] = -1.0
    with pytest.raises(np.linalg.LinAlgError, match="401-th leading minor"):
        la.cholesky_inplace(np.asfortranarray(M), block=128)
    with pytest.raises(ValueError, match="Fortran-ordered"):
        la.cholesky_inplace(np.eye(3)[:, :2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_nt_and_matmul_never_hand_blas_more_than_a_block(rng, monkeypatch, dtype):
    # every product on a large operand is split into calls of at most SAFE_BLOCK
    # output rows and columns, and the blocks add up to the one-call product
    A = rng.standard_normal((50, 9)).astype(dtype)
    B = rng.standard_normal((23, 9)).astype(dtype)
    V = rng.standard_normal((23, 3)).astype(dtype)
    one_gemm, one_matmul = np.empty((50, 23), dtype), A @ B.T @ V
    la.gemm_nt(one_gemm, A, B)
    seen = []
    gemm_block, np_matmul = la._gemm_block, np.matmul
    monkeypatch.setattr(la, "SAFE_BLOCK", 8)
    monkeypatch.setattr(la, "_gemm_block", lambda C, *a: (seen.append(C.shape), gemm_block(C, *a)))
    def spy_matmul(a, *args, **kwargs):
        seen.append(a.shape)
        return np_matmul(a, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy_matmul)
    C = np.full((50, 23), 3.0, dtype)
    la.gemm_nt(C, A, B, alpha=2.0, beta=-1.0)
    np.testing.assert_allclose(C, 2.0 * one_gemm - 3.0, rtol=0, atol=TOL[dtype] * 50)
    assert len(seen) == 7 * 3 and max(max(s) for s in seen) == 8
    seen.clear()
    out = la.matmul(one_gemm, V)
    np.testing.assert_allclose(out, one_matmul, rtol=0, atol=TOL[dtype] * 500)
    assert len(seen) == 7 and max(s[0] for s in seen) == 8
    seen.clear()
    G = la.gram_nt(A)  # syrk on 8-row diagonal blocks, GEMM right of them
    assert (G == G.T).all() and seen
    np.testing.assert_allclose(G, _ref(A), rtol=0, atol=TOL[dtype] * 50)


def test_matmul_vector_and_strided_operands(rng, monkeypatch):
    K = rng.standard_normal((30, 20))
    v = rng.standard_normal(20)
    monkeypatch.setattr(la, "SAFE_BLOCK", 7)
    np.testing.assert_allclose(la.matmul(K, v), K @ v, rtol=1e-14)
    np.testing.assert_allclose(la.matmul(K.T, K[:, :4]), K.T @ K[:, :4], rtol=1e-13)
    out = np.zeros((40, 4))
    assert la.matmul(K[:, ::2].T.T, K[::2, :4][:10], out=out[5:35]) is not None
    np.testing.assert_allclose(out[5:35], K[:, ::2] @ K[::2, :4][:10], rtol=1e-13)
    assert (out[:5] == 0).all() and (out[35:] == 0).all()


def test_cross_gram_of_one_array_goes_through_bounded_gemm(rng, monkeypatch):
    # k(X, X) used to be numpy's X @ X.T: one syrk on the whole matrix, the call
    # that crashes at n ~ 20000 (issue 28); now GEMMs on blocks, equal to k(X)
    import kernelcomp as kc

    X = rng.standard_normal((70, 100))  # d > 64: BLAS dot products
    k = kc.NTK(depth=1)
    ref_sym, ref_cross = k(X), k(X, X)
    seen = []
    gemm_block = la._gemm_block
    monkeypatch.setattr(la, "SAFE_BLOCK", 16)
    monkeypatch.setattr(la, "_gemm_block", lambda C, *a: (seen.append(C.shape), gemm_block(C, *a)))
    K = k(X, X)
    assert seen and max(max(s) for s in seen) <= 16
    np.testing.assert_allclose(K, ref_cross, rtol=1e-13)
    np.testing.assert_allclose(K, ref_sym, rtol=1e-13)


def test_products_library_is_numpys_or_forced_to_scipys(rng):
    # numpy's own OpenBLAS runs the products when numpy is the pip wheel (so a
    # product is never slower than the same product in numpy); KERNELCOMP_BLAS=scipy
    # selects scipy's build; both give the product to rounding
    code = textwrap.dedent("""
        import numpy as np
        from kernelcomp import _linalg as la
        A = np.random.default_rng(0).standard_normal((300, 40))
        C = np.zeros((300, 300)); la.syrk_upper(C, A); la.mirror_upper(C)
        D = np.empty((300, 300)); la.gemm_nt(D, A, A)
        err = max(abs(C - A @ A.T).max(), abs(D - A @ A.T).max()) / abs(C).max()
        print(la.products_library(), err < 1e-14)
    """)
    out = {}
    for choice in ("", "scipy"):
        env = dict(os.environ, KERNELCOMP_BLAS=choice)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out[choice] = proc.stdout.split()
    assert out["scipy"] == ["scipy", "True"]
    assert out[""][1] == "True" and out[""][0] in ("numpy", "scipy")
    if la._numpy_openblas() is not None:
        assert out[""][0] == "numpy"


# ---------------------------------------------------------------------------
# MNIST size, in a subprocess
# ---------------------------------------------------------------------------
#: n of the slow tests: the size users have, above where one multithreaded
#: OpenBLAS syrk (n ~ 19000) or potrf (n ~ 16000) crashes
N_MNIST = 20000

_PRELUDE = """
import numpy as np, kernelcomp as kc
rng = np.random.default_rng(0)
idx = np.sort(rng.choice({n}, 40, replace=False))
def close(a, b, rtol):
    err = float(np.abs(a - b).max() / np.abs(b).max())
    assert err <= rtol, f"relative error {{err:.3g}} > {{rtol}}"
"""


def _run_at_mnist_size(body: str, timeout: float = 900) -> str:
    """Run ``body`` in a fresh interpreter; a crash (e.g. SIGSEGV) fails the test.

    The child runs with the kernels OpenBLAS picks for the CPU itself:
    ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (which some machines of this
    type set, and which hide the crash) are removed, so that the test fails on
    code that hands a large operand to a crashing routine. The results are
    checked against references, so that wrong numbers fail too.
    """
    hidden = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    code = textwrap.dedent(_PRELUDE.format(n=N_MNIST)) + textwrap.dedent(body) + "\nprint('OK')\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (negative: killed by signal {-proc.returncode})"
        f"\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.strip().endswith("OK"), proc.stdout
    return proc.stdout


@pytest.mark.slow
def test_analytic_gram_blas_path_at_mnist_size():
    # float64, d > 64: dot products from BLAS, the symmetric product by blocks
    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 300))
        k = kc.NTK(depth=2, bias_std=0.1)
        K = k(X)
        assert K.shape == ({N_MNIST}, {N_MNIST})
        assert bool((K[idx][:, idx] == K[idx][:, idx].T).all())
        close(K[idx], k(X[idx], X), 1e-12)   # cross Gram: GEMM, row by row
        close(K[:, idx].T, k(X[idx], X), 1e-12)
    """)


@pytest.mark.slow
def test_empirical_ntk_at_mnist_size():
    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 10))
        e = kc.EmpiricalNTK(kc.FCNetwork.init(10, [500], seed=0))
        K = e(X)
        close(K[idx], e(X[idx], X), 1e-12)
        close(K[:, idx].T, e(X[idx], X), 1e-12)
        assert bool((K[idx][:, idx] == K[idx][:, idx].T).all())
    """)


@pytest.mark.slow
def test_regressor_cholesky_at_mnist_size():
    _run_at_mnist_size(f"""
        import warnings
        X = rng.standard_normal(({N_MNIST}, 10))
        y = np.sign(X[:, 0]) + 0.1 * rng.standard_normal({N_MNIST})
        k = kc.NTK(depth=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")     # no fallback: the Cholesky itself must work
            reg = kc.NTKRegressor(k, alpha=1e-3).fit(X, y)
        a = reg.dual_coef_
        # the rows idx of (K + alpha I) a = y, from a cross Gram
        res = k(X[idx], X) @ a + 1e-3 * a[idx] - y[idx]
        assert float(np.abs(res).max()) < 1e-6 * float(np.abs(y).max()), np.abs(res).max()
    """)


@pytest.mark.slow
def test_kernel_pca_at_mnist_size():
    # the default route for a few eigenpairs (ARPACK); LAPACK's subset driver is
    # safe at this size too, but takes ~8 minutes on 2 cores (scripts/probe_blas_limits.py)
    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 10))
        K = kc.NTK(depth=1)(X)
        ev = kc.diagnostics.kernel_pca(K, n_components=5, method='arpack')
        R = K @ ev.eigenvectors - ev.eigenvectors * ev.eigenvalues
        assert float(np.abs(R).max()) < 1e-8 * ev.eigenvalues[0], np.abs(R).max()
        G = ev.eigenvectors.T @ ev.eigenvectors
        assert float(np.abs(G - np.eye(5)).max()) < 1e-10
    """)


@pytest.mark.slow
def test_cross_gram_of_one_array_at_issue_size():
    # issue 28: kc.NTK(depth=1)(X, X), X 22000 x 300 float64, died with SIGSEGV in
    # numpy's X @ X.T (one syrk on the whole matrix)
    _run_at_mnist_size("""
        n = 22000
        X = rng.standard_normal((n, 300))
        k = kc.NTK(depth=1)
        K = k(X, X)
        sub = np.sort(rng.choice(n, 40, replace=False))
        close(K[sub], k(X[sub], X), 1e-12)
        close(K[sub][:, sub], k(X[sub]), 1e-12)
    """)


@pytest.mark.slow
def test_products_on_a_gram_at_mnist_size():
    # empirical cross products of one array, the Gram times a panel (kernel PCA,
    # Falkon, predictions) and T T^T: bounded blocks, checked against rows
    _run_at_mnist_size(f"""
        from kernelcomp import _linalg as la
        X = rng.standard_normal(({N_MNIST}, 10))
        e = kc.EmpiricalNTK(kc.FCNetwork.init(10, [300], seed=0))
        K = e(X, X)
        close(K[idx], e(X[idx], X), 1e-12)
        V = rng.standard_normal(({N_MNIST}, 8))
        close(la.matmul(K, V)[idx], K[idx] @ V, 1e-12)
        close(la.matmul(K.T, V[:, 0])[idx], K[idx] @ V[:, 0], 1e-12)
        del K
        A = rng.standard_normal(({N_MNIST}, 50))
        G = la.gram_nt(A)
        close(G[idx], A[idx] @ A.T, 1e-12)
    """)
