"""Top eigenpairs of a large symmetric matrix by thick-restart block Lanczos (BLAS-3).

The matrix enters only through ``matmul(V) -> A @ V`` on blocks of ``b``
vectors, so the same solver serves an in-memory Gram (one GEMM), a Gram in an
HDF5 file (row blocks streamed) and a matrix-free Gram (recomputed tiles).

Algorithm (a block Krylov method with Rayleigh--Ritz extraction and thick
restarts, as in Stathopoulos & Saad's thick-restart Lanczos and block
Davidson without preconditioner):

1. ``Q`` holds an orthonormal basis and ``W = A Q`` its image (so the Ritz
   vectors' images and the final residuals need no further product);
2. the basis grows by whole blocks: the image of the last block is
   orthogonalised against the whole basis by two passes of block classical
   Gram--Schmidt (CGS2), each with a Cholesky QR, ``A Q_last = Q C + Q_next B``;
   the coefficients ``C`` are the new column of ``H = Q^T A Q`` (no separate
   ``Q^T W`` product) and ``Q_next`` is the next block, until the basis holds
   ``max_basis`` vectors;
3. Rayleigh--Ritz on ``H`` gives Ritz pairs ``(theta, Q s)``; by the block
   Lanczos relation ``A Q = Q H + Q_next B E_last^T`` their residual norms are
   ``||B s_last||`` (the last block's rows of ``s``), so no ``n x m`` residual
   is formed while iterating; once these estimates are below
   ``tol * theta_1`` for the ``k`` wanted pairs the residuals are recomputed
   explicitly (``W s - theta Q s``), and the iteration goes on if one fails;
4. thick restart: keep the ``keep`` leading Ritz vectors and their images
   (``H`` becomes ``diag(theta)`` there), append ``Q_next``, and go on.

The panels are column-major, so every leading block of columns is one
contiguous BLAS operand. Every product is a GEMM on ``n x b`` or ``n x m``
panels; the dense work per restart is O(n m^2) with ``m = max_basis``, small
next to the ``n^2 b`` products for ``m << n``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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


def drop_tolerance(n: int, n_columns: int, dtype: Any) -> float:
    """Relative size below which a projected column is round-off: it is dropped.

    The rounding of the block Gram--Schmidt step ``Y = V - Q (Q^T V)`` and the
    QR of ``Y``: products with inner dimensions ``n`` (``Q^T V``) and
    ``n_columns`` (``Q D``, ``Q`` and ``V`` together), each of relative error
    about ``sqrt(inner) * eps`` (the statistical rounding bound, Higham, *Accuracy
    and Stability of Numerical Algorithms*, 2002, sec. 3.1), with a safety
    factor 4: ``4 eps (sqrt(n) + sqrt(n_columns))``. A column whose part outside
    the others is smaller than that relative to its norm before the projection
    is numerically dependent, whatever BLAS kernels rounded it (the measured
    remainder of an exactly dependent column is up to ~5 eps at n = 200 and
    36 columns, against 80 eps for this bound there).
    """
    eps = float(np.finfo(dtype).eps)
    return 4.0 * eps * (math.sqrt(n) + math.sqrt(n_columns))


def _cholqr(
    V: np.ndarray, drop: float, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``V = Y R`` with orthonormal ``Y``: Cholesky QR, Householder where it fails.

    Returns ``Y``, ``R`` (upper triangular; where a column of ``V`` is
    numerically dependent on the others, ``Y`` has fewer columns and ``R`` is
    the upper triangular factor of a column-pivoted QR with its columns put
    back in ``V``'s order, so that ``V = Y R`` still holds to ``drop``) and the
    sorted indices of the columns kept as pivots. ``drop`` is relative to
    ``scale``, by default each column's norm (a caller projecting ``V`` passes
    the norms before the projection, so that what the projection left at
    round-off level is dropped, not blown up).

    The Cholesky factor of the Gram ``V^T V`` resolves a column's independent
    part only down to the square root of the Gram's rounding (``(n + c) eps``
    for unit columns, worst case): where a diagonal entry of ``R`` is below
    that, the column may be dependent and the Householder QR, whose ``R`` is
    accurate to ``drop``, decides.
    """
    if scale is None:
        scale = np.linalg.norm(V, axis=0)
    live = scale > 0
    scale = np.where(live, scale, 1.0)
    Vs = V / scale
    n, c = V.shape
    gram_floor = math.sqrt(4.0 * float(np.finfo(V.dtype).eps) * (n + c))
    try:
        R = scipy.linalg.cholesky(Vs.T @ Vs, lower=False, check_finite=False)
        if np.diagonal(R).min() <= max(drop, gram_floor) or not live.all():
            raise np.linalg.LinAlgError("nearly dependent columns")
        Y = scipy.linalg.solve_triangular(R, Vs.T, trans="T", lower=False,
                                          check_finite=False).T  # fmt: skip
        return np.asfortranarray(Y), R * scale, np.arange(V.shape[1])
    except np.linalg.LinAlgError:
        # column pivoting moves the dependent columns last, so the rows dropped carry
        # only what is below drop; without it the reflector of a dependent column in
        # the middle also holds part of the later columns, and V = Y R lost it
        Y, R, piv = scipy.linalg.qr(Vs, mode="economic", pivoting=True, check_finite=False)
        rank = int(np.count_nonzero(np.abs(np.diagonal(R)) > drop))
        R_cols = np.empty_like(R)
        R_cols[:, piv] = R
        return np.asfortranarray(Y[:, :rank]), (R_cols * scale)[:rank], np.sort(piv[:rank])


def _orthonormalize(V: np.ndarray, Q: np.ndarray | None, drop: float | None = None,
                    passes: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Orthonormal columns spanning ``V`` minus its part in ``span(Q)``.

    Block classical Gram--Schmidt against ``Q`` and a Cholesky QR, done twice
    (CGS2, "twice is enough"): ``V = Q C + Y R``. Columns numerically in
    ``span(Q)`` (or in that of the others) are dropped, so ``Y`` may have fewer
    columns than ``V``. Returns ``Y``, ``C`` (float64) and ``R``. ``drop``
    defaults to :func:`drop_tolerance` of the shapes.
    """
    c = V.shape[1]
    q = 0 if Q is None else Q.shape[1]
    if drop is None:
        drop = drop_tolerance(V.shape[0], q + c, V.dtype)
    C = np.zeros((q, c))
    R = np.eye(c)
    Y = V
    scale = np.linalg.norm(V, axis=0)
    for _ in range(passes):
        if Y.shape[1] == 0:
            break
        if Q is not None and Q.shape[1]:
            D = Q.T @ Y
            Y = Y - Q @ D
            C += D.astype(np.float64) @ R
        Y, R2, _ = _cholqr(Y, drop, scale)
        scale = None
        R = R2.astype(np.float64) @ R
    return Y, C, R


#: BLAS threads of the dense work (Gram-Schmidt, Cholesky QR, Rayleigh-Ritz) while the
#: products ``matmul(V)`` keep the caller's: these GEMMs on ``n x b`` panels are too
#: skinny to gain from threads on few cores. On the 2 shared cores of the reference
#: machine (top 100 at n = 5000) the dense work took 0.28 s with one thread against
#: 0.7 s with two; ``None`` leaves the caller's setting alone.
DENSE_THREADS: int | None = 1

_CONTROLLER: list[Any] = []


@contextlib.contextmanager
def _dense_blas_threads() -> Iterator[Callable[[], contextlib.AbstractContextManager[Any]]]:
    """Limit BLAS to ``DENSE_THREADS``; yield a context that restores the caller's threads."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield contextlib.nullcontext
        return
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
    ctl = _CONTROLLER[0]
    outer = max((lib["num_threads"] for lib in ctl.info()), default=0)
    if DENSE_THREADS is None or outer <= DENSE_THREADS:
        yield contextlib.nullcontext
        return
    with ctl.limit(limits=DENSE_THREADS):
        yield lambda: ctl.limit(limits=outer)


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
        Block size; default :func:`default_sizes`.
    max_basis : int, optional
        Basis size before a restart; default :func:`default_sizes`.
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
    with _dense_blas_threads() as caller_threads:
        dtype = np.dtype(dtype)
        b0, m0 = default_sizes(n, k)
        b = min(n, block if block is not None else b0)
        m = min(n, max_basis if max_basis is not None else max(m0, k + b))
        m = max(m, min(n, k + b))
        keep = min(m - b, max(k + b // 2, int(KEEP_FRACTION * m)))
        rng = np.random.default_rng(random_state)
        # column-major panels: every Q[:, :j] is one contiguous BLAS operand
        # the basis grows by whole blocks (a truncated block would break the Lanczos
        # relation the residual estimates rest on), so it may end up to b - 1 past m
        Q = np.empty((n, m + 2 * b), dtype=dtype, order="F")
        W = np.empty((n, m + b), dtype=dtype, order="F")
        Q2 = np.empty_like(Q)
        W2 = np.empty_like(W)
        H = np.zeros((m + b, m + b))
        products = passes = 0

        def apply(V: np.ndarray) -> np.ndarray:
            nonlocal products, passes
            products += V.shape[1]
            passes += 1
            with caller_threads():
                out = np.asarray(matmul(V), dtype=dtype)
            if out.shape != V.shape:  # pragma: no cover - a caller's bug
                raise ValueError(f"matmul returned shape {out.shape}, expected {V.shape}")
            return out

        def random_block(cur: int) -> np.ndarray:
            Z = rng.standard_normal((n, b)).astype(dtype)
            return _orthonormalize(Z, Q[:, :cur] if cur else None)[0]

        start = random_block(0)
        cur = start.shape[1]
        Q[:, :cur] = start
        W[:, :cur] = apply(start)
        last = slice(0, cur)
        restarts = 0
        X = AX = theta = res = None
        while True:
            # grow by Krylov blocks; H = Q^T A Q comes from the Gram-Schmidt coefficients
            while True:
                Wl = W[:, last]
                nxt, C, B = _orthonormalize(Wl, Q[:, :cur])
                H[:cur, last] = C
                H[last, :cur] = C.T
                if nxt.shape[1] == 0:  # invariant subspace: a random direction keeps going
                    nxt = random_block(cur)
                    B = np.zeros((nxt.shape[1], last.stop - last.start))
                if cur >= m or nxt.shape[1] == 0:
                    break
                c = nxt.shape[1]
                Q[:, cur : cur + c] = nxt
                W[:, cur : cur + c] = apply(nxt)
                last = slice(cur, cur + c)
                cur += c
            # Rayleigh-Ritz in float64; residual norms from the Lanczos relation
            # A Q = Q H + Q_next B E_last^T, so ||A y - theta y|| = ||B s_last||
            Hc = 0.5 * (H[:cur, :cur] + H[:cur, :cur].T)
            theta, S = scipy.linalg.eigh(Hc, check_finite=False)
            theta, S = theta[::-1], S[:, ::-1]
            top = max(abs(float(theta[0])), np.finfo(np.float64).tiny)
            nk = min(keep, cur)
            est = np.linalg.norm(B @ S[last, :nk], axis=0) / top
            stop = restarts >= max_restarts or cur >= n or nxt.shape[1] == 0
            if bool((est[:k] <= tol).all()) or stop:
                # explicit residuals of the k returned pairs (no product: W = A Q)
                Sk = S[:, :k].astype(dtype)
                X = Q[:, :cur] @ Sk
                AX = W[:, :cur] @ Sk
                res = np.linalg.norm(AX - X * theta[:k].astype(dtype), axis=0) / top
                if bool((res <= tol).all()) or stop:
                    break
            restarts += 1
            # thick restart: the leading Ritz vectors and the next Krylov block
            Sk = S[:, :nk].astype(dtype)
            np.matmul(Q[:, :cur], Sk, out=Q2[:, :nk])
            np.matmul(W[:, :cur], Sk, out=W2[:, :nk])
            c = nxt.shape[1]
            Q2[:, nk : nk + c] = nxt
            Q, Q2, W, W2 = Q2, Q, W2, W
            H[:] = 0.0
            H[np.arange(nk), np.arange(nk)] = theta[:nk]
            W[:, nk : nk + c] = apply(Q[:, nk : nk + c])
            last = slice(nk, nk + c)
            cur = nk + c
        w = np.ascontiguousarray(theta[:k]).astype(dtype)
        V = np.ascontiguousarray(X)
        info = EigshInfo(bool((res <= tol).all()), products, passes, restarts,
                         float(res.max()))  # fmt: skip
        return w, V, info


#: Fraction of the basis kept at a thick restart (at least ``k + b / 2``, at most
#: ``m - b``). On an n = 5000 NTK Gram, top 100 (b = 34, m = 350): 0.5 needs 782
#: products, 0.65-0.7 need 646, 0.75-0.8 need 680; top 10: 72 against 64.
KEEP_FRACTION = 0.7


def default_sizes(n: int, k: int) -> tuple[int, int]:
    """Default block size ``b`` and basis size ``m`` for the top ``k`` of ``n``.

    ``b = max(8, ceil(k / 3))`` and ``m = max(ceil(3.5 k), 6 b)``, both capped
    at ``n``: the fastest of the settings compared on NTK Grams at n = 5000
    (top 100: b = 25, 34, 40, 50, 67, 100 with m = 300-500; larger blocks
    make each product cheaper per column but need more of them, 850-1600
    against 646).
    """
    b = max(8, math.ceil(k / 3))
    m = max(math.ceil(3.5 * k), 6 * b)
    return min(n, b), min(n, m)
