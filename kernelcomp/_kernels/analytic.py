"""Compiled core of the analytic (infinite-width) NNGP and NTK kernels.

Layout of the per-sample state of ``n`` samples through ``L`` hidden layers
(computed once, O(nL), by :func:`prepare` or, for the Hermite-series route,
layer by layer with :func:`series_layer`):

``a[l, i]``, ``b[l, i]``
    The two numbers of :func:`kernelcomp._kernels.duals.closed_state` for the
    pre-activation variance ``S_ii`` of layer ``l`` (ReLU family: ``sqrt(S_ii)``
    and ``1/sqrt(S_ii)``, ELU too; erf: ``1/sqrt(1 + 2 S_ii)`` twice; GELU: ``S_ii``
    and ``1 + S_ii``); series route: ``sqrt(S_ii)`` and ``1/sqrt(S_ii)``.
``c[l, :, i]``, ``e[l, :, i]``
    Series route only: Hermite coefficients of ``phi`` and ``phi'`` at that
    variance, to degree ``deg[l]`` (:func:`kernelcomp._kernels.duals.series_coefficients`).
``dg[i]``
    The kernel's diagonal value.

The O(n^2) pass (:func:`tiles`) owns square tiles of the output; each tile
computes, row by row, the dot products of its block (unless they were already
written into ``out`` by BLAS), then every layer of the recursion as a
vectorisable loop over the tile's columns, one loop per activation (an explicit
branch per code of :mod:`kernelcomp._kernels.activations`). In the symmetric
case only tiles on or above the diagonal are computed and each is mirrored
while hot; diagonal entries are the exact per-sample values. Every entry
follows the same sequence of operations wherever it lies, so the result does
not depend on the tile size or on the number of threads.

Activations are chosen by an integer code, never by passing a function.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from kernelcomp._kernels._config import jit
from kernelcomp._kernels.activations import ELU, ERF, GELU, LEAKY_RELU, LINEAR, RELU, RELU_UNIT
from kernelcomp._kernels.duals import (  # noqa: F401  (acos, asin: re-exported)
    _LK_C1,
    _LK_C2,
    _LK_C3,
    abrelu_step,
    acos,
    asin,
    closed_state,
    closed_step,
    elu_sample,
    elu_step_pre,
    erf_step,
    gelu_step,
    relu_step,
    series_step,
    snap_rho,
)
from kernelcomp._kernels.progress import begin, tick, tile_pairs, tile_work


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
            ai, bi = closed_state(act, s)
            k, kd = closed_step(act, s, ai, ai, bi, bi, snap)
            a[l, i] = ai
            b[l, i] = bi
            sn = w2[l + 1] * k + b2[l + 1]
            t = ta[l] * k + tb[l] + w2[l + 1] * kd * t
            s = sn
        dg[i] = t if ntk else s


@jit(parallel=True)
def series_init(
    X: np.ndarray, s0a: float, t0a: float, t0b: float, b20: float,
    sqn: np.ndarray, rsq: np.ndarray, s: np.ndarray, t: np.ndarray,
) -> None:
    """Series route, before the layers: norms (as :func:`prepare`) and the first ``s``, ``t``."""
    for i in numba.prange(X.shape[0]):
        acc = _row_sqnorm(X, np.int64(i))
        sqn[i] = acc
        rsq[i] = 1.0 / math.sqrt(acc) if acc > 0.0 else 0.0
        s[i] = s0a * acc + b20
        t[i] = t0a * acc + t0b


@jit(parallel=True)
def series_layer(
    c: np.ndarray, e: np.ndarray, deg: int, ntk: bool, w2n: float, b2n: float, tal: float,
    tbl: float, snap: float, s: np.ndarray, t: np.ndarray, a: np.ndarray, b: np.ndarray,
) -> None:
    """Series route, one layer of the per-sample recursion (``s``, ``t`` updated in place).

    ``c``, ``e`` (deg + 1, n) are the layer's coefficients of the variances
    ``s``; fills ``a = sqrt(s)``, ``b = 1/sqrt(s)`` (0 for 0). The diagonal
    entry is :func:`kernelcomp._kernels.duals.series_step` at
    ``rho = snap_rho(s, b, b)``, the operations :func:`tiles` performs for two
    identical rows.
    """
    for i in numba.prange(s.shape[0]):
        si = s[i]
        ai = math.sqrt(max(si, 0.0))
        bi = 1.0 / ai if ai > 0.0 else 0.0
        a[i] = ai
        b[i] = bi
        rho = snap_rho(si, bi, bi, snap)
        k = c[deg, i] * c[deg, i]
        kd = e[deg, i] * e[deg, i]
        for m in range(deg - 1, -1, -1):
            k = k * rho + c[m, i] * c[m, i]
            if ntk:
                kd = kd * rho + e[m, i] * e[m, i]
        t[i] = tal * k + tbl + w2n * kd * t[i]
        s[i] = w2n * k + b2n


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
    series: bool,
    deg: np.ndarray,
    cx: np.ndarray,
    ex: np.ndarray,
    cy: np.ndarray,
    ey: np.ndarray,
    snap: float,
    snap_dot: float,
    symmetric: bool,
    use_out_dot: bool,
    tile: int,
    out: np.ndarray,
    nngp: np.ndarray,
    dg_nngp: np.ndarray,

    ticks: np.ndarray,
) -> None:
    """Fill ``out`` (n, m) with the kernel of rows ``X`` against columns ``Yt``.

    With ``ntk`` and a non-empty ``nngp`` (n, m), the same pass also writes
    the NNGP (the covariance ``S`` the NTK recursion carries) into ``nngp``,
    with ``dg_nngp`` (n,) as its diagonal in the symmetric case: the very
    operations, in the same order, as a pass with ``ntk=False``, so both
    outputs equal the two separate passes bit for bit. ``nngp`` of shape
    (0, 0) turns this off.

    ``Yt`` is the transposed second input (d, m), C-contiguous. With
    ``use_out_dot``, ``out`` already holds the dot products (e.g. from BLAS)
    and ``X``/``Yt`` are not read; a dot product within ``snap_dot`` (relative)
    of ``+-|x||y|`` is then replaced by ``+-sqrt(|x|^2 |y|^2)``, which is exactly
    the squared norm for identical rows, so they reproduce the diagonal exactly
    although BLAS sums in another order than the per-sample pass. With
    ``symmetric``, rows and columns are the same samples: tiles above the
    diagonal are computed and mirrored. With ``series``, every layer is the
    Hermite series of the coefficients ``cx``/``ex`` (rows) and ``cy``/``ey``
    (columns), (L, >= deg[l] + 1, n) each, to degree ``deg[l]``; otherwise
    the closed form of ``act`` (those arrays are not read). Each finished tile
    adds its entries to ``ticks`` (:mod:`kernelcomp._kernels.progress`).
    """
    n = out.shape[0]
    m = out.shape[1]
    L = ax.shape[0]
    d = X.shape[1]
    both = ntk and nngp.shape[0] == n and nngp.shape[1] == m and n > 0
    pti, ptj, total = tile_pairs(n, m, tile, symmetric)
    npairs = pti.shape[0]
    begin(ticks, total)
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
        rho = np.empty(tile, dtype=np.float64)
        kk = np.empty(tile, dtype=np.float64)
        kkd = np.empty(tile, dtype=np.float64)
        if act == ELU and not series:  # the columns' per-sample terms, once per tile
            eln = np.empty((L, tile), dtype=np.float64)
            ele = np.empty((L, tile), dtype=np.float64)
            for l in range(L):
                for jj in range(j1 - j0):
                    eln[l, jj], ele[l, jj] = elu_sample(ay[l, j0 + jj])
        else:
            eln = np.empty((1, 1), dtype=np.float64)
            ele = eln
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
                    if series:
                        mdeg = deg[l]
                        for jj in range(w):
                            rho[jj] = snap_rho(s[jj], bi, byl[jj], snap)
                        ci = cx[l, mdeg, i]
                        cyl = cy[l, mdeg, js:j1]
                        for jj in range(w):
                            kk[jj] = ci * cyl[jj]
                        for q in range(mdeg - 1, -1, -1):
                            ci = cx[l, q, i]
                            cyl = cy[l, q, js:j1]
                            for jj in range(w):
                                kk[jj] = kk[jj] * rho[jj] + ci * cyl[jj]
                        if ntk:
                            ci = ex[l, mdeg, i]
                            cyl = ey[l, mdeg, js:j1]
                            for jj in range(w):
                                kkd[jj] = ci * cyl[jj]
                            for q in range(mdeg - 1, -1, -1):
                                ci = ex[l, q, i]
                                cyl = ey[l, q, js:j1]
                                for jj in range(w):
                                    kkd[jj] = kkd[jj] * rho[jj] + ci * cyl[jj]
                            for jj in range(w):
                                t[jj] = tal * kk[jj] + tbl + w2n * kkd[jj] * t[jj]
                        for jj in range(w):
                            s[jj] = w2n * kk[jj] + b2n
                    elif act == RELU or act == RELU_UNIT:  # relu_unit's 2 is in w2, ta
                        for jj in range(w):
                            k, kd = relu_step(s[jj], ai, ayl[jj], bi, byl[jj], snap)
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                    elif act == ERF:
                        for jj in range(w):
                            k, kd = erf_step(s[jj], ai, ayl[jj])
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                    elif act == LEAKY_RELU:
                        for jj in range(w):
                            k, kd = abrelu_step(
                                s[jj], ai, ayl[jj], bi, byl[jj], snap, _LK_C1, _LK_C2, _LK_C3
                            )
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                    elif act == LINEAR:
                        for jj in range(w):
                            k = s[jj]
                            t[jj] = tal * k + tbl + w2n * 1.0 * t[jj]
                            s[jj] = w2n * k + b2n
                    elif act == GELU:
                        for jj in range(w):
                            k, kd = gelu_step(s[jj], ai, ayl[jj], bi, byl[jj])
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                    elif act == ELU:
                        ni, ei = elu_sample(ai)
                        nyl = eln[l, js - j0:]
                        eyl = ele[l, js - j0:]
                        for jj in range(w):
                            k, kd = elu_step_pre(s[jj], ai, ayl[jj], bi, byl[jj], snap, ni,
                                                 nyl[jj], ei, eyl[jj])
                            t[jj] = tal * k + tbl + w2n * kd * t[jj]
                            s[jj] = w2n * k + b2n
                    else:  # not a closed form: the public layer never gets here
                        for jj in range(w):
                            t[jj] = math.nan
                            s[jj] = math.nan
                res = t if ntk else s
                for jj in range(w):
                    orow[jj] = res[jj]
                if symmetric:
                    ocol = out[js:j1, i]
                    for jj in range(w):
                        ocol[jj] = res[jj]
                if both:
                    grow = nngp[i, js:j1]
                    for jj in range(w):
                        grow[jj] = s[jj]
                    if symmetric:
                        gcol = nngp[js:j1, i]
                        for jj in range(w):
                            gcol[jj] = s[jj]
            if on_diag:
                out[i, i] = dgx[i]
                if both:
                    nngp[i, i] = dg_nngp[i]

        tick(ticks, tile_work(ti * tile, min(n, ti * tile + tile), tj * tile,
                              min(m, tj * tile + tile), symmetric and ti == tj))
