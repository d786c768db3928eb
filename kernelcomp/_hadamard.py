"""The O(n^2) pass of the layerwise empirical NTK: sums of Hadamard products of Grams.

``out = sum_t (dx_t dy_t^T) o (fx_t fy_t^T)`` through kernelcomp._linalg's bounded
BLAS calls, in row blocks of at most ``_SCRATCH_BYTES``. Shared by the empirical NTK
of FCNetworks (:mod:`kernelcomp.empirical`) and the layerwise engine of TorchNTK
(:mod:`kernelcomp._torch_layers`), below both: neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelcomp._linalg import MIRROR_TILE, gemm_nt, mirror_upper, syrk_upper, tril_indices

#: bytes of one scratch row block of the O(n^2) pass (networks with several
#: hidden layers use two): large blocks keep the BLAS products efficient
_SCRATCH_BYTES = 128 * 2**20


# ---------------------------------------------------------------------------
# BLAS helpers (C-contiguous arrays in, results written in place; the products
# themselves are kernelcomp._linalg's, blocked so that no BLAS call crashes)
# ---------------------------------------------------------------------------
def _clear_lower(a: np.ndarray) -> None:
    """Zero the strict lower triangle of a square block (left unwritten by syrk)."""
    n = a.shape[0]
    for i0 in range(0, n, MIRROR_TILE):
        i1 = min(n, i0 + MIRROR_TILE)
        a[i0:i1, i0:i1][tril_indices(i1 - i0)] = 0
        a[i1:, i0:i1] = 0


def _block_row(
    P: np.ndarray, Q: np.ndarray, i0: int, i1: int, symmetric: bool, dtype: np.dtype
) -> np.ndarray:
    """Rows ``i0:i1`` of ``P @ Q.T``.

    All columns, or (symmetric, ``P is Q``) the columns ``i0:`` with the strict
    lower triangle of the diagonal block zeroed.
    """
    if not symmetric:
        s = np.empty((i1 - i0, Q.shape[0]), dtype=dtype)
        gemm_nt(s, P[i0:i1], Q)
        return s
    m = Q.shape[0]
    s = np.empty((i1 - i0, m - i0), dtype=dtype)
    syrk_upper(s[:, : i1 - i0], P[i0:i1])
    _clear_lower(s[:, : i1 - i0])
    if i1 < m:
        gemm_nt(s[:, i1 - i0 :], P[i0:i1], Q[i1:])
    return s


def _hadamard_gram(
    xterms: Any, yterms: Any, out: np.ndarray, symmetric: bool
) -> None:
    """``out = sum_t (dx_t dy_t^T) o (fx_t fy_t^T)`` over the terms ``(d, f)`` (``d=None``: 1).

    The terms are 2-D arrays of ``out``'s dtype with unit column stride; in the
    symmetric case ``yterms`` are ``xterms`` and only the upper triangle is
    computed (then mirrored: exactly symmetric). Every product is one of
    kernelcomp._linalg's bounded BLAS calls (row-block scratch of at most
    ``_SCRATCH_BYTES``). Shared by the empirical NTK of FCNetworks and the
    layerwise engine of TorchNTK.
    """
    n, m = out.shape
    c_out = out if out.flags.c_contiguous else np.empty((n, m), dtype=out.dtype)
    block = max(1, min(n, _SCRATCH_BYTES // max(1, m * out.itemsize)))
    # terms with delta (Hadamard products) first: the first one in place, the
    # others through row-block scratch; then the readout term(s), accumulated
    terms = sorted(zip(xterms, yterms, strict=True), key=lambda t: t[0][0] is None)
    started = False
    for (dx, fx), (dy, fy) in terms:
        if dx is None:
            beta = 1.0 if started else 0.0
            if symmetric:
                syrk_upper(c_out, fx, beta=beta)
            else:
                gemm_nt(c_out, fx, fy, beta=beta)
        elif not started:
            if symmetric:
                syrk_upper(c_out, dx)
            for i0 in range(0, n, block):
                i1 = min(n, i0 + block)
                if symmetric:
                    _clear_lower(c_out[i0:i1, i0:i1])
                else:
                    gemm_nt(c_out[i0:i1], dx[i0:i1], dy)
                c_out[i0:i1, i0 if symmetric else 0 :] *= _block_row(
                    fx, fy, i0, i1, symmetric, out.dtype
                )
        else:
            for i0 in range(0, n, block):
                i1 = min(n, i0 + block)
                s1 = _block_row(dx, dy, i0, i1, symmetric, out.dtype)
                s1 *= _block_row(fx, fy, i0, i1, symmetric, out.dtype)
                c_out[i0:i1, i0 if symmetric else 0 :] += s1
        started = True
    if symmetric:
        mirror_upper(c_out)
    if c_out is not out:
        out[...] = c_out
