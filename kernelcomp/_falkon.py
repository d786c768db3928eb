"""Nystrom kernel ridge regression by preconditioned conjugate gradient (Falkon).

With ``m`` centres ``C`` (a random subset of the training points), the model
is ``f(x) = sum_j beta_j k(x, c_j)`` and ``beta`` minimises

.. code-block:: text

    sum_i w_i (f(x_i) - y_i)^2 + alpha beta^T K_mm beta,

the objective of kernel ridge regression (``KernelRidge(alpha)``) restricted
to the span of the centres: with every training point a centre it is exactly
kernel ridge regression. The normal equations ``H beta = K_nm^T W y`` with
``H = K_nm^T W K_nm + alpha K_mm`` are solved by conjugate gradient with
Falkon's preconditioner ``P = T^T A^T A T``, ``K_mm = T^T T`` and
``A^T A = (sum(w) / m) T T^T + alpha I``, which approximates ``H`` by
replacing ``K_nm^T W K_nm`` with ``(sum(w) / m) K_mm^2`` (Rudi, Carratino,
Rosasco, "FALKON: An optimal large scale kernel method", NeurIPS 2017;
Meanti et al., "Kernel methods through the roof", NeurIPS 2020).

``K_nm`` is computed by kernelcomp's Gram driver in row blocks; it is kept
when it fits ``max_memory`` bytes, and recomputed at every iteration
otherwise. Only ``m x m`` and ``m x t`` matrices are factorised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.linalg

from kernelcomp._gram import default_block_rows
from kernelcomp._linalg import cholesky_inplace, gram_nt, matmul
from kernelcomp._parallel import available_memory, physical_memory
from kernelcomp._parallel import progress as progress_bar

__all__ = [
    "default_max_memory",
    "falkon",
    "fits",
    "in_memory_normal",
    "knm_rows",
    "sample_centers",
]


def default_max_memory() -> int:
    """Bytes allowed for a stored ``K_nm``: half of the memory available now.

    :func:`kernelcomp._parallel.available_memory` (Linux ``MemAvailable``);
    half of the physical memory where it is unknown, 4 GiB where both are.
    """
    free = available_memory()
    if free is None:  # pragma: no cover - not Linux
        free = physical_memory() or 8 * 2**30
    return int(free // 2)


def falkon(
    K_mm: np.ndarray,
    rhs: np.ndarray,
    normal: Callable[[np.ndarray], np.ndarray],
    alpha: float,
    w_sum: float,
    *,
    max_iter: int = 50,
    tol: float = 1e-7,
    progress: bool = False,
) -> tuple[np.ndarray, int, float]:
    """Solve ``(K_nm^T W K_nm + alpha K_mm) beta = rhs`` by preconditioned CG.

    Parameters
    ----------
    K_mm : ndarray of shape (m, m)
        Gram matrix of the centres (not modified).
    rhs : ndarray of shape (m, t)
        ``K_nm^T W Y``.
    normal : callable
        ``normal(beta) -> K_nm^T W K_nm beta`` for ``beta`` of shape (m, t):
        the only access to the n x m cross Gram (in memory, recomputed by
        blocks, or on a Dask cluster).
    alpha : float
        Ridge, >= 0.
    w_sum : float
        Sum of the sample weights (n without weights), for the preconditioner.
    max_iter : int
    tol : float
        Stop when every column's preconditioned residual is at most ``tol``
        times its initial norm.
    progress : bool
        A progress bar over iterations.

    Returns
    -------
    beta : ndarray of shape (m, t)
    iterations : int
    residual : float
        Largest relative preconditioned residual at the end.
    """
    m = K_mm.shape[0]
    dt = K_mm.dtype
    # T: upper Cholesky factor of K_mm + jitter (the jitter only conditions the
    # preconditioner; the system keeps the exact K_mm)
    eps = float(np.finfo(dt).eps)
    jitter = eps * m * max(float(np.mean(np.diagonal(K_mm))), np.finfo(dt).tiny)
    T = np.array(K_mm, dtype=dt, order="F", copy=True)
    T.flat[:: m + 1] += jitter
    _chol_upper(T)
    A = gram_nt(np.ascontiguousarray(T))  # T T^T, by bounded blocks
    A *= w_sum / m
    A = np.asfortranarray(A.astype(dt, copy=False))
    A.flat[:: m + 1] += alpha + jitter * (w_sum / m)
    _chol_upper(A)

    def solve(F: np.ndarray, v: np.ndarray, trans: str) -> np.ndarray:
        return scipy.linalg.solve_triangular(F, v, trans=trans, lower=False, check_finite=False)

    def prec(v: np.ndarray) -> np.ndarray:  # beta = T^-1 A^-1 v
        return solve(T, solve(A, v, "N"), "N")

    def prec_t(v: np.ndarray) -> np.ndarray:  # A^-T T^-T v
        return solve(A, solve(T, v, "T"), "T")

    def H(beta: np.ndarray) -> np.ndarray:
        return np.asarray(normal(beta), dtype=dt) + alpha * matmul(K_mm, beta)

    b = prec_t(np.asarray(rhs, dtype=dt))
    b_norm = np.linalg.norm(b, axis=0)
    b_norm[b_norm == 0] = 1.0
    gamma = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs = np.sum(r * r, axis=0)
    it = 0
    res = float(np.max(np.sqrt(rs) / b_norm))
    with progress_bar(progress, total=max_iter, desc="falkon CG", unit="it", leave=False) as bar:
        while it < max_iter and res > tol:
            Ap = prec_t(H(prec(p)))
            denom = np.sum(p * Ap, axis=0)
            step = np.divide(rs, denom, out=np.zeros_like(rs), where=denom > 0)
            gamma += p * step
            r -= Ap * step
            rs_new = np.sum(r * r, axis=0)
            p = r + p * np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 0)
            rs = rs_new
            it += 1
            res = float(np.max(np.sqrt(rs) / b_norm))
            bar.update(1)
            bar.set_postfix(residual=f"{res:.2e}")
    return prec(gamma), it, res


def in_memory_normal(
    knm_blocks: Callable[[], Iterator[tuple[int, int, np.ndarray]]],
    Y: np.ndarray,
    weights: np.ndarray | None,
    store: bool,
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``K_nm^T W Y`` and the ``normal`` product of :func:`falkon` from row blocks.

    ``knm_blocks()`` yields ``(start, stop, K_nm[start:stop])``; it is called
    once when ``store`` (the blocks are kept), else at every product.
    """
    kept: list[tuple[int, int, np.ndarray]] = []

    def weighted(u: np.ndarray, start: int, stop: int) -> np.ndarray:
        return u if weights is None else u * weights[start:stop, None]

    rhs = None
    for start, stop, block in knm_blocks():
        part = matmul(block.T, weighted(Y[start:stop], start, stop))
        rhs = part if rhs is None else rhs + part
        if store:
            kept.append((start, stop, block))

    def normal(beta: np.ndarray) -> np.ndarray:
        out = None
        for start, stop, block in (kept if store else knm_blocks()):
            part = matmul(block.T, weighted(matmul(block, beta), start, stop))
            out = part if out is None else out + part
        return out

    return rhs, normal


def _chol_upper(F: np.ndarray) -> None:
    """In-place upper Cholesky factor of a Fortran-ordered SPD matrix (zeroed below)."""
    # the lower factor of the Fortran matrix is the upper factor of its transpose
    cholesky_inplace(F)
    L = np.tril(F)
    F[...] = L.T


def knm_rows(n: int, m: int, itemsize: int) -> int:
    """Rows per block of ``K_nm`` (about 64 MiB of output)."""
    return default_block_rows(n, m, itemsize)


def fits(n: int, m: int, itemsize: int, max_memory: int) -> bool:
    """Whether an ``n x m`` matrix of ``itemsize`` bytes fits ``max_memory``."""
    return n * m * itemsize <= max_memory


def sample_centers(n: int, n_centers: int, random_state: Any) -> np.ndarray:
    """``min(n, n_centers)`` distinct indices, uniformly at random, sorted."""
    from sklearn.utils import check_random_state

    m = min(n, int(n_centers))
    if m == n:
        return np.arange(n)
    rng = check_random_state(random_state)
    return np.sort(rng.choice(n, size=m, replace=False))

