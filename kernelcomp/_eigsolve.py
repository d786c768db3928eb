"""Top eigenpairs of a large symmetric matrix by thick-restart block Lanczos (BLAS-3).

The matrix enters only through ``matmul(V) -> A @ V`` on blocks of ``b``
vectors, so the same solver serves an in-memory Gram (one GEMM), a Gram in an
HDF5 file (row blocks streamed) and a matrix-free Gram (recomputed tiles).

Algorithm (a block Krylov method with Rayleigh--Ritz extraction and thick
restarts, as in Stathopoulos & Saad's thick-restart Lanczos and block
Davidson without preconditioner):

1. ``Q`` holds an orthonormal basis and ``W = A Q`` its image (so the Ritz
   values, Ritz vectors and residuals never need another product);
2. the basis grows by blocks: the next block is ``A`` applied to the last one,
   orthogonalised against the whole basis by two passes of block classical
   Gram--Schmidt (CGS2) and a QR, until it holds ``max_basis`` vectors;
3. Rayleigh--Ritz on ``H = Q^T W`` gives Ritz pairs ``(theta, Q s)`` and their
   residuals ``W s - theta Q s``; a pair has converged when its residual norm
   is at most ``tol * theta_1``;
4. restart: keep the ``keep`` leading Ritz vectors (and their images), add the
   residuals of the leading unconverged pairs as the next block, and go on.

Every product is a GEMM on ``n x b`` or ``n x m`` panels; the dense work per
restart is O(n m^2) with ``m = max_basis``, small next to the ``n^2 b``
products for ``m << n``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["EigshInfo", "block_lanczos_topk"]


@dataclass(frozen=True)
class EigshInfo:
    """How a :func:`block_lanczos_topk` call went.

    Attributes
    ----------
    converged : bool
        Every requested pair met the tolerance.
    n_products : int
        Columns multiplied by the matrix (``A @ V`` with ``V`` of ``b`` columns
        counts ``b``).
    n_passes : int
        Calls of ``matmul`` (passes over the matrix).
    restarts : int
    max_residual : float
        Largest ``||A v - theta v|| / theta_1`` of the returned pairs.
    """

    converged: bool
    n_products: int
    n_passes: int
    restarts: int
    max_residual: float


def _orthonormalize(V: np.ndarray, Q: np.ndarray | None, drop: float) -> np.ndarray:
    """Orthonormal columns spanning ``V`` minus its part in ``span(Q)``.

    Two passes of block classical Gram-Schmidt against ``Q``, each followed by
    a Cholesky QR (``V^T V = R^T R``, ``V R^-1``: BLAS-3); Householder QR
    where the Cholesky fails (nearly dependent columns), dropping columns that
    are numerically in ``span(Q)``: the result may have fewer columns. The
    columns are scaled to unit norm first, so the test is relative to each
    column's own size (whatever the matrix's scale).
    """
    norms = np.linalg.norm(V, axis=0)
    V = V[:, norms > 0] / norms[norms > 0]
    for _ in range(2):
        if V.shape[1] == 0:
            break
        if Q is not None and Q.shape[1]:
            V = V - Q @ (Q.T @ V)
        G = V.T @ V
        try:
            R = scipy.linalg.cholesky(G, lower=False, check_finite=False)
            if np.diagonal(R).min() <= drop:
                raise np.linalg.LinAlgError("nearly dependent columns")
            V = scipy.linalg.solve_triangular(R, V.T, trans="T", lower=False,
                                              check_finite=False).T  # fmt: skip
        except np.linalg.LinAlgError:
            Y, R = scipy.linalg.qr(V, mode="economic", check_finite=False)
            V = Y[:, np.abs(np.diagonal(R)) > drop]
    return np.ascontiguousarray(V)


def block_lanczos_topk(
    matmul: Callable[[np.ndarray], np.ndarray],
    n: int,
    k: int,
    dtype: np.dtype,
    *,
    tol: float = 1e-9,
    block: int | None = None,
    max_basis: int | None = None,
    max_restarts: int = 100,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, EigshInfo]:
    """The ``k`` largest eigenpairs of a symmetric ``n x n`` matrix known by its products.

    Parameters
    ----------
    matmul : callable
        ``matmul(V)`` returns ``A @ V`` for ``V`` of shape (n, b), in ``dtype``.
    n, k : int
        Size of the matrix and number of eigenpairs (``k < n``).
    dtype : numpy.dtype
        float32 or float64: the basis is kept in this dtype, Rayleigh--Ritz
        runs in float64.
    tol : float, default 1e-9
        A pair has converged when ``||A v - theta v|| <= tol * theta_1``.
    block : int, optional
        Block size; default ``max(8, ceil(k / 3))`` capped by ``n``.
    max_basis : int, optional
        Basis size before a restart; default ``max(ceil(3.5 k), 6 b)``, capped
        at ``n`` (the fastest of the settings compared on NTK Grams).
    max_restarts : int, default 100
    random_state : int, default 0
        Seed of the starting block: results are deterministic for a seed
        (and a BLAS thread count).

    Returns
    -------
    w : ndarray of shape (k,)
        Eigenvalues, descending.
    V : ndarray of shape (n, k)
        Orthonormal eigenvectors, ``V[:, r]`` for ``w[r]``.
    info : EigshInfo
    """
    dtype = np.dtype(dtype)
    b = min(n, block if block is not None else max(8, math.ceil(k / 3)))
    m = min(n, max_basis if max_basis is not None else max(math.ceil(3.5 * k), 6 * b))
    m = max(m, min(n, k + b))
    keep = min(m - b, max(k + b // 2, m // 2))
    eps = float(np.finfo(dtype).eps)
    drop = 10.0 * eps
    rng = np.random.default_rng(random_state)
    Q = np.empty((n, m), dtype=dtype)
    W = np.empty((n, m), dtype=dtype)
    products = passes = 0

    def apply(V: np.ndarray) -> np.ndarray:
        nonlocal products, passes
        products += V.shape[1]
        passes += 1
        out = np.asarray(matmul(V), dtype=dtype)
        if out.shape != V.shape:  # pragma: no cover - a caller's bug
            raise ValueError(f"matmul returned shape {out.shape}, expected {V.shape}")
        return out

    start = _orthonormalize(rng.standard_normal((n, b)).astype(dtype), None, drop)
    cur = start.shape[1]
    Q[:, :cur] = start
    W[:, :cur] = apply(start)
    last = slice(0, cur)
    theta = S = res = None
    restarts = 0
    while True:
        # grow the basis by Krylov blocks
        while cur < m:
            nxt = _orthonormalize(W[:, last].copy(), Q[:, :cur], drop)
            if nxt.shape[1] == 0:  # invariant subspace: a random direction keeps going
                nxt = _orthonormalize(rng.standard_normal((n, b)).astype(dtype), Q[:, :cur],
                                      drop)  # fmt: skip
                if nxt.shape[1] == 0:
                    break
            nxt = nxt[:, : m - cur]
            c = nxt.shape[1]
            Q[:, cur : cur + c] = nxt
            W[:, cur : cur + c] = apply(nxt)
            last = slice(cur, cur + c)
            cur += c
        # Rayleigh-Ritz in float64
        Qc, Wc = Q[:, :cur], W[:, :cur]
        H = (Qc.T @ Wc).astype(np.float64)
        H = 0.5 * (H + H.T)
        theta, S = scipy.linalg.eigh(H, check_finite=False)
        theta, S = theta[::-1], S[:, ::-1]
        top = max(abs(float(theta[0])), np.finfo(np.float64).tiny)
        nk = min(keep, cur)
        Sk = S[:, :nk].astype(dtype)
        X = Qc @ Sk
        AX = Wc @ Sk
        R = AX - X * theta[:nk].astype(dtype)
        res = np.linalg.norm(R, axis=0) / top
        done = bool((res[:k] <= tol).all())
        if done or restarts >= max_restarts or cur >= n:
            break
        restarts += 1
        # thick restart: the leading Ritz pairs, then the unconverged residuals
        Q[:, :nk] = X
        W[:, :nk] = AX
        cur = nk
        bad = np.flatnonzero(res[:nk] > tol)[:b]
        nxt = _orthonormalize(R[:, bad], Q[:, :cur], drop) if bad.size else np.empty((n, 0))
        if nxt.shape[1] == 0:
            nxt = _orthonormalize(rng.standard_normal((n, b)).astype(dtype), Q[:, :cur], drop)
        nxt = nxt[:, : m - cur]
        c = nxt.shape[1]
        Q[:, cur : cur + c] = nxt
        W[:, cur : cur + c] = apply(nxt)
        last = slice(cur, cur + c)
        cur += c
    w = np.ascontiguousarray(theta[:k]).astype(dtype)
    V = np.ascontiguousarray(X[:, :k])
    info = EigshInfo(bool((res[:k] <= tol).all()), products, passes, restarts,
                     float(res[:k].max()))  # fmt: skip
    return w, V, info
