"""Compiled core of the analytic (infinite-width) NNGP and NTK kernels.

Layout of the per-sample state of ``n`` samples through ``L`` hidden layers
(computed once, O(nL), by :func:`prepare`):

``a[l, i]``, ``b[l, i]``
    ReLU: ``sqrt(S_ii)`` and ``1/sqrt(S_ii)`` (0 when ``S_ii == 0``) of the
    pre-activation variance of layer ``l``; Erf: ``1/sqrt(1 + 2 S_ii)`` (both).
``dg[i]``
    The kernel's diagonal value.

The O(n^2) pass (:func:`tiles`) owns square tiles of the output; each tile
computes, row by row, the dot products of its block (unless they were already
written into ``out`` by BLAS), then every layer of the recursion as a
vectorisable loop over the tile's columns. In the symmetric case only tiles on
or above the diagonal are computed and each is mirrored while hot; diagonal
entries are the exact per-sample values. Every entry follows the same sequence
of operations wherever it lies, so the result does not depend on the tile size
or on the number of threads.

Activations are chosen by an integer code, never by passing a function.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from kernelcomp._kernels._config import jit

RELU = 0
ERF = 1

_PI = math.pi
_HALF_PI = 0.5 * math.pi
_INV_2PI = 1.0 / (2.0 * math.pi)
_2_OVER_PI = 2.0 / math.pi
_4_OVER_PI = 4.0 / math.pi
_TINY = 1e-300

# rational approximation of asin(x)/x - 1 on |x| <= 0.5 (fdlibm, e_asin.c)
_PS0 = 1.66666666666666657415e-01
_PS1 = -3.25565818622400915405e-01
_PS2 = 2.01212532134862925881e-01
_PS3 = -4.00555345006794114027e-02
_PS4 = 7.91534994289814532176e-04
_PS5 = 3.47933107596021167570e-05
_QS1 = -2.40339491173441421878e00
_QS2 = 2.02094576023350569471e00
_QS3 = -6.88283971605453293030e-01
_QS4 = 7.70381505559019352791e-02


@jit
def _asin_core(ax: float) -> tuple[float, bool]:
    """For ``0 <= ax <= 1``: ``r`` and ``big`` with asin(ax) = r (small) or pi/2 - 2r (big)."""
    big = ax > 0.5
    z = (1.0 - ax) * 0.5 if big else ax * ax
    sq = math.sqrt(z)
    s = sq if big else ax
    p = z * (_PS0 + z * (_PS1 + z * (_PS2 + z * (_PS3 + z * (_PS4 + z * _PS5)))))
    q = 1.0 + z * (_QS1 + z * (_QS2 + z * (_QS3 + z * _QS4)))
    return s + s * (p / q), big


@jit
def acos(x: float) -> float:
    """Branch-free arccos for ``-1 <= x <= 1`` (vectorises; ~1 ulp)."""
    ax = abs(x)
    r, big = _asin_core(ax)
    a = 2.0 * r if big else _HALF_PI - r
    return a if x >= 0.0 else _PI - a


@jit
def asin(x: float) -> float:
    """Branch-free arcsin for ``-1 <= x <= 1`` (vectorises; ~1 ulp)."""
    ax = abs(x)
    r, big = _asin_core(ax)
    a = _HALF_PI - 2.0 * r if big else r
    return a if x >= 0.0 else -a


@jit
def relu_step(s: float, ai: float, aj: float, bi: float, bj: float, snap: float):
    """ReLU arc-cosine expectations ``(K, Kdot)`` for covariance ``s`` of two units.

    ``ai = sqrt(S_ii)``, ``bi = 1/sqrt(S_ii)`` (0 for a zero variance).
    Correlations within ``snap`` of +-1 are set to +-1: they are rounding noise,
    and this makes identical rows reproduce the diagonal exactly. Per-sample
    factors are multiplied pairwise first, so ``k(x, y)`` and ``k(y, x)`` are
    bit-identical.
    """
    rho = s * (bi * bj)
    arho = abs(rho)
    # clip to [-1, 1] and snap rounding-level distances from +-1 (selects, no branches)
    rho = math.copysign(1.0, rho) if 1.0 - arho <= snap else rho
    c = (1.0 - rho) * (1.0 + rho)
    sin_t = math.sqrt(c if c > 0.0 else 0.0)
    pi_minus_t = _PI - acos(rho)
    k = (ai * aj) * (sin_t + pi_minus_t * rho) * _INV_2PI
    kd = pi_minus_t * _INV_2PI
    return k, kd


@jit
def erf_step(s: float, ai: float, aj: float):
    """Erf expectations ``(K, Kdot)``; ``ai = 1/sqrt(1 + 2 S_ii)``."""
    u = ai * aj
    r = 2.0 * s * u
    r = math.copysign(1.0, r) if abs(r) > 1.0 else r
    c = (1.0 - r) * (1.0 + r)
    k = _2_OVER_PI * asin(r)
    kd = _4_OVER_PI * u / math.sqrt(c if c > _TINY else _TINY)
    return k, kd


@jit
def _row_sqnorm(X: np.ndarray, i: int) -> float:
    """Sequential ``x_i . x_i`` in float64 (the same order as the tile loop)."""
    acc = 0.0
    for k in range(X.shape[1]):
        v = np.float64(X[i, k])
        acc += v * v
    return acc


@jit(parallel=True)
def prepare(
    X: np.ndarray,
    act: int,
    ntk: bool,
    s0a: float,
    t0a: float,
    t0b: float,
    w2: np.ndarray,
    b2: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    snap: float,
    a: np.ndarray,
    b: np.ndarray,
    dg: np.ndarray,
    sqn: np.ndarray,
    rsq: np.ndarray,
) -> None:
    """Per-sample recursion: fills ``a``, ``b`` (L, n) and the diagonal ``dg`` (n,).

    Also the squared input norms ``sqn`` and ``rsq = 1/sqrt(sqn)`` (0 for a zero
    row), which the tile pass uses to snap BLAS dot products of parallel rows.

    Layer ``l`` (0-based, 0..L) has covariance update ``S' = w2[l] K + b2[l]``
    (``S = s0a x.x' + b2[0]`` for the first Dense layer) and tangent update
    ``T' = ta[l-1] K + tb[l-1] + w2[l] Kdot T`` (``T = t0a x.x' + t0b`` first).
    """
    n = X.shape[0]
    L = a.shape[0]
    for i in numba.prange(n):
        acc = _row_sqnorm(X, np.int64(i))  # one index type (prange's is unsigned)
        sqn[i] = acc
        rsq[i] = 1.0 / math.sqrt(acc) if acc > 0.0 else 0.0
        s = s0a * acc + b2[0]
        t = t0a * acc + t0b
        for l in range(L):
            if act == RELU:
                ai = math.sqrt(max(s, 0.0))
                bi = 1.0 / ai if ai > 0.0 else 0.0
                k, kd = relu_step(s, ai, ai, bi, bi, snap)
            else:
                ai = 1.0 / math.sqrt(1.0 + 2.0 * max(s, 0.0))
                bi = ai
                k, kd = erf_step(s, ai, ai)
            a[l, i] = ai
            b[l, i] = bi
            sn = w2[l + 1] * k + b2[l + 1]
            t = ta[l] * k + tb[l] + w2[l + 1] * kd * t
            s = sn
        dg[i] = t if ntk else s


@jit(parallel=True)
def tiles(
    X: np.ndarray,
    Yt: np.ndarray,
    ax: np.ndarray,
    bx: np.ndarray,
    dgx: np.ndarray,
    sqx: np.ndarray,
    rsx: np.ndarray,
    ay: np.ndarray,
    by: np.ndarray,
    sqy: np.ndarray,
    rsy: np.ndarray,
    act: int,
    ntk: bool,
    s0a: float,
    t0a: float,
    t0b: float,
    w2: np.ndarray,
    b2: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    snap: float,
    snap_dot: float,
    symmetric: bool,
    use_out_dot: bool,
    tile: int,
    out: np.ndarray,
) -> None:
    """Fill ``out`` (n, m) with the kernel of rows ``X`` against columns ``Yt``.

    ``Yt`` is the transposed second input (d, m), C-contiguous. With
    ``use_out_dot``, ``out`` already holds the dot products (e.g. from BLAS)
    and ``X``/``Yt`` are not read; a dot product within ``snap_dot`` (relative)
    of ``+-|x||y|`` is then replaced by ``+-sqrt(|x|^2 |y|^2)``, which is exactly
    the squared norm for identical rows, so they reproduce the diagonal exactly
    although BLAS sums in another order than the per-sample pass. With
    ``symmetric``, rows and columns are the same samples: tiles above the
    diagonal are computed and mirrored.
    """
    n = out.shape[0]
    m = out.shape[1]
    L = ax.shape[0]
    d = X.shape[1]
    nti = (n + tile - 1) // tile
    ntj = (m + tile - 1) // tile
    if symmetric:
        npairs = nti * (nti + 1) // 2
    else:
        npairs = nti * ntj
    pti = np.empty(npairs, dtype=np.int64)
    ptj = np.empty(npairs, dtype=np.int64)
    p = 0
    for ti in range(nti):
        for tj in range(ti if symmetric else 0, ntj):
            pti[p] = ti
            ptj[p] = tj
            p += 1
    for p in numba.prange(npairs):
        ti = pti[p]
        tj = ptj[p]
        i0 = ti * tile
        i1 = min(n, i0 + tile)
        j0 = tj * tile
        j1 = min(m, j0 + tile)
        on_diag = symmetric and ti == tj
        acc = np.empty(tile, dtype=np.float64)
        s = np.empty(tile, dtype=np.float64)
        t = np.empty(tile, dtype=np.float64)
        for i in range(i0, i1):
            js = i + 1 if on_diag else j0
            w = j1 - js
            if w > 0:
                orow = out[i, js:j1]
                if use_out_dot:
                    ri = rsx[i]
                    ni = sqx[i]
                    rsyr = rsy[js:j1]
                    sqyr = sqy[js:j1]
                    for jj in range(w):
                        g = np.float64(orow[jj])
                        c = g * (ri * rsyr[jj])
                        e = math.copysign(math.sqrt(ni * sqyr[jj]), g)
                        acc[jj] = e if 1.0 - abs(c) <= snap_dot else g
                else:
                    for jj in range(w):
                        acc[jj] = 0.0
                    # four features per sweep over the row: the same sequential sum
                    # (((acc + x0 y0) + x1 y1) + ...) with a quarter of acc's loads/stores
                    k4 = d - d % 4
                    for k in range(0, k4, 4):
                        x0 = np.float64(X[i, k])
                        x1 = np.float64(X[i, k + 1])
                        x2 = np.float64(X[i, k + 2])
                        x3 = np.float64(X[i, k + 3])
                        y0 = Yt[k, js:j1]
                        y1 = Yt[k + 1, js:j1]
                        y2 = Yt[k + 2, js:j1]
                        y3 = Yt[k + 3, js:j1]
                        for jj in range(w):
                            acc[jj] = (
                                acc[jj] + x0 * y0[jj] + x1 * y1[jj] + x2 * y2[jj] + x3 * y3[jj]
                            )
                    for k in range(k4, d):
                        xik = np.float64(X[i, k])
                        ycol = Yt[k, js:j1]
                        for jj in range(w):
                            acc[jj] += xik * ycol[jj]
                for jj in range(w):
                    s[jj] = s0a * acc[jj] + b2[0]
                    t[jj] = t0a * acc[jj] + t0b
                for l in range(L):
                    ai = ax[l, i]
                    bi = bx[l, i]
                    ayl = ay[l, js:j1]
                    byl = by[l, js:j1]
                    w2n = w2[l + 1]
                    b2n = b2[l + 1]
                    tal = ta[l]
                    tbl = tb[l]
                    if act == RELU:
                        for jj in range(w):
                            k, kd = relu_step(
                                s[jj], ai, ayl[jj], bi, byl[jj], snap
                            )
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                    else:
                        for jj in range(w):
                            k, kd = erf_step(s[jj], ai, ayl[jj])
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                res = t if ntk else s
                for jj in range(w):
                    orow[jj] = res[jj]
                if symmetric:
                    ocol = out[js:j1, i]
                    for jj in range(w):
                        ocol[jj] = res[jj]
            if on_diag:
                out[i, i] = dgx[i]
