"""Compiled core of the analytic kernels of convolutional networks (CNN-GP, CNTK).

The covariance of two images ``x, y`` through a convolutional network is a
4-D array ``S[i, j, i', j']`` (position ``(i, j)`` of ``x`` against ``(i', j')``
of ``y``). A stride-1 "same" convolution moves both positions together,
``S'[i, j, i', j'] = w2/k^2 sum_{a,b} S[i+a, j+b, i'+a, j'+b] + b2``, so it never
mixes entries of different *offsets* ``(u, v) = (i' - i, j' - j)``: for each
offset the slice ``S_uv[i, j] = S[i, j, i+u, j+v]`` is a small 2-D image, on the
window where both positions exist, zero-padded around it, and every layer up to
the next pooling is a 2-D stencil (the convolution, done separably: rows then
columns) or an entry-wise map (the activation's dual) on that image. A pass
over one offset therefore stays in the first-level cache. A pooling layer
scatters each offset's result into the pooled covariance of the next
resolution (stored by pooled offsets ``(U, V)``); global average pooling sums
everything, flattening sums the ``(0, 0)`` slice only.

Only the offsets that the network's output depends on are computed: a
flattening readout needs ``(0, 0)`` alone (the spatial diagonal, O(HW) per pair),
a pool of size ``k`` before a stage that needs ``|U| <= R`` needs
``|u| <= k R + k - 1``, and global average pooling needs them all. A network
without pooling runs in :func:`diag_block` (driven by :func:`diag_tiles`), the
``(0, 0)`` offset alone over a whole block of pairs with one scratch (no per-pair
allocation, the covariance unpadded so that the activation factors line up with
it, no gather). :func:`fill` picks the driver.

Program. The layer list arrives as integer/float tables built by
:mod:`kernelcomp.conv`:

``ops[o] = (kind, p1, p2)``, ``opf[o] = (f1, f2)``
    ``CONV``: p1 = filter size k (odd), f = (w2, b2). ``ACT``: p1 = activation
    code, p2 = offset of its per-position factors, f1 = scale^2 of the
    activation. ``POOL``: p1 = k. ``GAP``, ``FLATTEN``: the reduction to a
    scalar. ``DENSE``: f = (w2, b2). ``ACT`` after the reduction: p2 = offset of
    its (single) factor.
``stages[s] = (op_start, op_end, H, W, Ru, Rv, store, pad)``
    Stage ``s`` runs ops ``op_start:op_end`` at resolution ``H x W`` on offsets
    ``|u| <= Ru, |v| <= Rv``; ``ops[op_end]`` is its reduction (``POOL``,
    ``GAP`` or ``FLATTEN``). ``store`` is where its input covariance lives in
    the pooled-storage buffers (stage 0 reads the images), ``pad`` the largest
    convolution radius of the stage.

Per-sample state (:func:`prepare`): the activations' factors (ReLU:
``sqrt(S_ii)`` and ``1/sqrt(S_ii)``; erf: ``1/sqrt(1 + 2 S_ii)``) at every
position of every activation layer, computed by running the pair recursion of
a sample with itself, which fills them as it goes (the ``(0, 0)`` offset of a
stage is processed first, and at ``(0, 0)`` the self-covariance's diagonal is the
slice itself). Because the pair pass on ``(x, x)`` performs the very same
operations, identical images reproduce the diagonal exactly.

The activation's expectations are the FC kernels' per-entry closed forms,
:func:`kernelcomp._kernels.duals.closed_step` (given the covariance and the
two samples' factors, returns ``(K, Kdot)``; :func:`dual` is the same call):
relu (and relu_unit, its factor 2 in the op's scale), leaky_relu, erf, gelu,
elu and linear. The entry loops have one copy per code, so each folds to a
single closed form and vectorises where the form does (ELU's bivariate normal
cdf does not); a code without a loop gives NaN, never another activation. A
new closed form needs its loop in :func:`pair` and :func:`pair_slab`.

Precision. Everything runs in float64 whatever the input dtype, except float32
Grams of networks in the slab layout with zero padding (:func:`slab_tiles`) and
of networks without pooling (:func:`diag_tiles` on float32 images): there the
covariances (slabs, pooled storage, or the spatial diagonal) and the
convolutions' sums are float32 (a slab's rows padded to whole 8-entry vectors),
the ReLU's closed form runs in float32
(:func:`kernelcomp._kernels.duals.relu_step32`: ``1 - |rho|`` from the float64
per-sample factors, split by :func:`_factors32` and rounded once), the other
closed forms in float64 per entry, and the per-sample factors and the final
sums over positions stay float64. The per-sample pass runs the same float32
recursion, so identical images still reproduce the diagonal exactly. The error
analysis is in :mod:`kernelcomp.convolutional` ("Precision").
"""

from __future__ import annotations

import math

import numba
import numpy as np

from kernelcomp._kernels._config import jit
from kernelcomp._kernels.activations import (
    ELU,
    ERF,
    GELU,
    LEAKY_RELU,
    LINEAR,
    RELU,
    RELU_UNIT,
)
from kernelcomp._kernels.duals import closed_state, closed_step, relu_step32, split32, typed
from kernelcomp._kernels.progress import begin, tick, tile_pairs, tile_work

CONV = 0
ACT = 1
POOL = 2
GAP = 3
FLATTEN = 4
DENSE = 5

__all__ = [
    "ACT",
    "CONV",
    "DENSE",
    "ELU",
    "ERF",
    "FLATTEN",
    "GAP",
    "GELU",
    "LEAKY_RELU",
    "LINEAR",
    "POOL",
    "RELU",
    "diag_block",
    "diag_layout",
    "diag_tiles",
    "dual",
    "factors",
    "fill",
    "pair",
    "prepare",
    "slab_tiles",
    "tiles",
]


# -- the float32 ReLU's factors ----------------------------------------------------------


@jit
def _relu_layers(ops: np.ndarray, o0: int, o1: int) -> int:
    """How many of ops ``o0:o1`` are ReLUs (relu, relu_unit): those with a float32 step."""
    nact = 0
    for o in range(o0, o1):
        if ops[o, 0] == ACT and (ops[o, 1] == RELU or ops[o, 1] == RELU_UNIT):
            nact += 1
    return nact


@jit
def _factors32(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """ReLU factors for :func:`~kernelcomp._kernels.duals.relu_step32`, entry by entry.

    ``out[0] = fl32(a)`` (``sqrt(S_ii)``) and ``out[1] + out[2] = b``
    (``1/sqrt(S_ii)`` as a double-length float32 pair, :func:`split32`).
    """
    for e in range(a.shape[0]):
        out[0, e] = np.float32(a[e])
        hi, lo = split32(b[e])
        out[1, e] = hi
        out[2, e] = lo


@jit
def _sample32(
    fa: np.ndarray, fb: np.ndarray, ops: np.ndarray, o0: int, o1: int, HW: int, out: np.ndarray
) -> None:
    """``out[a]``: :func:`_factors32` of a sample's factors at the ``a``-th ReLU of ``o0:o1``."""
    a = 0
    for o in range(o0, o1):
        if ops[o, 0] == ACT and (ops[o, 1] == RELU or ops[o, 1] == RELU_UNIT):
            off = ops[o, 2]
            _factors32(fa[off : off + HW], fb[off : off + HW], out[a])
            a += 1


# -- the activation's dual: one call per entry -------------------------------------


@jit
def factors(code: int, s: float) -> tuple[float, float]:
    """Per-sample factors ``(a, b)`` of an activation for the variance ``s``.

    See :func:`kernelcomp._kernels.duals.closed_state`.
    """
    return closed_state(code, s)


@jit
def dual(code: int, s: float, ai: float, aj: float, bi: float, bj: float, snap: float):
    """``(K, Kdot) = (E[phi(u) phi(v)], E[phi'(u) phi'(v)])`` for covariance ``s``.

    ``ai, bi`` and ``aj, bj`` are the two samples' :func:`factors` at the
    positions concerned (:func:`kernelcomp._kernels.duals.closed_step`; the
    factor 2 of ``relu_unit`` is the caller's).
    """
    return closed_step(code, s, ai, aj, bi, bj, snap)


@jit
def _tail(ops, opf, tail, s_val, t_val, self_mode, fxa, fxb, fya, fyb, snap):
    """The layers after the reduction to a scalar (dense layers and activations)."""
    for o in range(tail, ops.shape[0]):
        kind = ops[o, 0]
        if kind == DENSE:
            s_val = opf[o, 0] * s_val + opf[o, 1]
            t_val = s_val + opf[o, 0] * t_val
        else:  # ACT
            code = ops[o, 1]
            off = ops[o, 2]
            if self_mode:
                fa, fb = closed_state(code, s_val)
                fxa[off] = fa
                fxb[off] = fb
            kk, kd = closed_step(code, s_val, fxa[off], fya[off], fxb[off], fyb[off], snap)
            s_val = opf[o, 0] * kk
            t_val = opf[o, 0] * kd * t_val
    return s_val, t_val


# -- one pair -------------------------------------------------------------------------


@jit
def _offset(idx: int) -> int:
    """The idx-th offset in processing order: 0, 1, -1, 2, -2, ..."""
    if idx == 0:
        return 0
    h = (idx + 1) // 2
    return h if idx % 2 == 1 else -h


@jit
def _zero_frame(
    buf: np.ndarray, ilo: int, ihi: int, jlo: int, jhi: int, P: int
) -> None:
    """Zero the ``P``-wide frame around the window ``[ilo, ihi) x [jlo, jhi)`` (padded indices)."""
    for i in range(ilo, ilo + P):
        for j in range(jlo, jhi + 2 * P):
            buf[i, j] = 0.0
    for i in range(ihi + P, ihi + 2 * P):
        for j in range(jlo, jhi + 2 * P):
            buf[i, j] = 0.0
    for i in range(ilo + P, ihi + P):
        for j in range(jlo, jlo + P):
            buf[i, j] = 0.0
        for j in range(jhi + P, jhi + 2 * P):
            buf[i, j] = 0.0


@jit
def _conv(
    S: np.ndarray,
    tmp: np.ndarray,
    ilo: int,
    ihi: int,
    jlo: int,
    jhi: int,
    P: int,
    r: int,
    c: float,
    add: float,
    base: np.ndarray,
    use_base: bool,
) -> None:
    """``S <- c * (box sum of radius r of S) + add (+ base)`` on the window, in place.

    Rows first (into ``tmp``), then columns; entries outside the window read
    zeros (the frame) and stay untouched. With ``use_base``, ``base`` (the new
    covariance) is added instead of ``add`` (the tangent update). Every loop
    runs along a row (vectorised).
    """
    j0 = jlo + P
    j1 = jhi + P
    w = j1 - j0
    # loops run over slices with indices from 0 (numba then emits no negative-index
    # fix-up, and LLVM vectorises them)
    for i in range(ilo + P, ihi + P):
        srow = S[i]
        trow = tmp[i, j0:j1]
        if r == 1:  # one fused loop per row (the common 3 x 3 filter)
            sm = srow[j0 - 1 : j1 - 1]
            s0 = srow[j0:j1]
            sp = srow[j0 + 1 : j1 + 1]
            for jj in range(w):
                trow[jj] = sm[jj] + s0[jj] + sp[jj]
        else:
            sb = srow[j0 - r : j1 - r]
            for jj in range(w):
                trow[jj] = sb[jj]
            for b in range(-r + 1, r + 1):
                sb = srow[j0 + b : j1 + b]
                for jj in range(w):
                    trow[jj] += sb[jj]
    for i in range(ilo + P, ihi + P):
        srow = S[i, j0:j1]
        brow = base[i, j0:j1]
        if r == 1:
            t0 = tmp[i - 1, j0:j1]
            t1 = tmp[i, j0:j1]
            t2 = tmp[i + 1, j0:j1]
            if use_base:
                for jj in range(w):
                    srow[jj] = c * (t0[jj] + t1[jj] + t2[jj]) + brow[jj]
            else:
                for jj in range(w):
                    srow[jj] = c * (t0[jj] + t1[jj] + t2[jj]) + add
            continue
        first = tmp[i - r, j0:j1]
        for jj in range(w):
            srow[jj] = first[jj]
        for a in range(-r + 1, r + 1):
            ta = tmp[i + a, j0:j1]
            for jj in range(w):
                srow[jj] += ta[jj]
        if use_base:
            for jj in range(w):
                srow[jj] = c * srow[jj] + brow[jj]
        else:
            for jj in range(w):
                srow[jj] = c * srow[jj] + add


@jit
def pair(
    x: np.ndarray,
    y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    self_mode: bool,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    work: np.ndarray,
    snap: float,
    circ: bool,
    PS: np.ndarray,
    PT: np.ndarray,
) -> tuple[float, float]:
    """``(NNGP, NTK)`` of images ``x``, ``y`` (each ``(H, W, C)``).

    ``fxa, fxb`` (``fya, fyb``) are the samples' activation factors; in
    ``self_mode`` (``y is x``, the factor arrays the same) they are written as
    the recursion reaches them. ``work`` is the shape of the 2-D work images
    (the largest padded stage), ``PS``/``PT`` the pooled storage.

    The work images are allocated here, not passed in: LLVM then knows they
    alias nothing, and the loops that write them (the activation's above all)
    vectorise; with arrays passed as arguments they stay scalar.
    """
    # nothing outside a slice's window and its P-wide frame is ever read, and each
    # slice zeroes its frame and writes its window: no zero-filling needed
    S = np.empty((work[0], work[1]), dtype=np.float64)
    T = np.empty((work[0], work[1]), dtype=np.float64)
    tmp = np.empty((work[0], work[1]), dtype=np.float64)
    flat = work[0] * work[1]
    sf = np.empty(flat, dtype=np.float64)
    tf = np.empty(flat, dtype=np.float64)
    xaf = np.empty(flat, dtype=np.float64)
    xbf = np.empty(flat, dtype=np.float64)
    yaf = np.empty(flat, dtype=np.float64)
    ybf = np.empty(flat, dtype=np.float64)
    C = x.shape[2]
    inv_c = 1.0 / C
    nops = ops.shape[0]
    nst = stages.shape[0]
    s_val = 0.0
    t_val = 0.0
    tail = nops
    for st in range(nst):
        o0 = stages[st, 0]
        o1 = stages[st, 1]
        H = stages[st, 2]
        W = stages[st, 3]
        Ru = stages[st, 4]
        Rv = stages[st, 5]
        store = stages[st, 6]
        P = stages[st, 7]
        red = ops[o1, 0]
        nv = 2 * Rv + 1
        # next stage (a pool's target)
        k = 1
        nH = 0
        nW = 0
        nRu = 0
        nRv = 0
        nstore = 0
        inv_pool = 1.0
        if red == POOL:
            k = ops[o1, 1]
            nH = stages[st + 1, 2]
            nW = stages[st + 1, 3]
            nRu = stages[st + 1, 4]
            nRv = stages[st + 1, 5]
            nstore = stages[st + 1, 6]
            size = (2 * nRu + 1) * (2 * nRv + 1) * nH * nW
            for q in range(nstore, nstore + size):
                PS[q] = 0.0
                PT[q] = 0.0
            inv_pool = 1.0 / (k * k * k * k)
        acc_s = 0.0
        acc_t = 0.0
        col_s = np.zeros(W + 2 * P, dtype=np.float64)
        col_t = np.zeros(W + 2 * P, dtype=np.float64)
        for iu in range(2 * Ru + 1):
            u = _offset(iu)
            ilo = max(0, -u)
            ihi = min(H, H - u)
            for iv in range(nv):
                v = _offset(iv)
                jlo = max(0, -v)
                jhi = min(W, W - v)
                if P > 0:
                    _zero_frame(S, ilo, ihi, jlo, jhi, P)
                    _zero_frame(T, ilo, ihi, jlo, jhi, P)
                    _zero_frame(tmp, ilo, ihi, jlo, jhi, P)
                # load the stage's input covariance of this offset
                theta_zero = st == 0
                # (inner loops run over slices indexed from 0: no negative-index
                # fix-ups, so LLVM vectorises them)
                w = jhi - jlo
                if st == 0:
                    for i in range(ilo, ihi):
                        srow = S[i + P, jlo + P : jhi + P]
                        trow = T[i + P, jlo + P : jhi + P]
                        xr = x[i, jlo:jhi]
                        yr = y[i + u, jlo + v : jhi + v]
                        for jj in range(w):
                            trow[jj] = 0.0
                            srow[jj] = np.float64(xr[jj, 0]) * np.float64(yr[jj, 0])
                        for ch in range(1, C):
                            for jj in range(w):
                                srow[jj] += np.float64(xr[jj, ch]) * np.float64(yr[jj, ch])
                        if C > 1:
                            for jj in range(w):
                                srow[jj] *= inv_c
                else:
                    base = store + ((u + Ru) * nv + (v + Rv)) * H * W
                    for i in range(ilo, ihi):
                        srow = S[i + P, jlo + P : jhi + P]
                        trow = T[i + P, jlo + P : jhi + P]
                        ps = PS[base + i * W + jlo : base + i * W + jhi]
                        pt = PT[base + i * W + jlo : base + i * W + jhi]
                        for jj in range(w):
                            srow[jj] = ps[jj]
                            trow[jj] = pt[jj]
                for o in range(o0, o1):
                    kind = ops[o, 0]
                    if kind == CONV:
                        r = ops[o, 1] // 2
                        c = opf[o, 0] / (ops[o, 1] * ops[o, 1])
                        _conv(S, tmp, ilo, ihi, jlo, jhi, P, r, c, opf[o, 1], S, False)
                        # NTK parameterisation: T' = S' + w2 * box(T)
                        if theta_zero:
                            for i in range(ilo + P, ihi + P):
                                srow = S[i, jlo + P : jhi + P]
                                trow = T[i, jlo + P : jhi + P]
                                for jj in range(w):
                                    trow[jj] = srow[jj]
                            theta_zero = False
                        else:
                            _conv(T, tmp, ilo, ihi, jlo, jhi, P, r, c, 0.0, S, True)
                    elif kind == ACT:
                        code = ops[o, 1]
                        off = ops[o, 2]
                        sc2 = opf[o, 0]
                        if self_mode and iu == 0 and iv == 0:
                            for i in range(H):
                                for j in range(W):
                                    fa, fb = closed_state(code, S[i + P, j + P])
                                    fxa[off + i * W + j] = fa
                                    fxb[off + i * W + j] = fb
                        # the row loops are written here, not in a helper: LLVM must see
                        # that S and T alias nothing to vectorise them, and one copy per
                        # activation code lets dual() fold to a single closed form
                        # gather the window into flat vectors (rows are short: a
                        # row-by-row loop would run in the vector loop's scalar tail)
                        q = 0
                        for i in range(ilo, ihi):
                            srow = S[i + P, jlo + P : jhi + P]
                            trow = T[i + P, jlo + P : jhi + P]
                            xo = off + i * W + jlo
                            yo = off + (i + u) * W + v + jlo
                            xa = fxa[xo : xo + w]
                            xb = fxb[xo : xo + w]
                            ya = fya[yo : yo + w]
                            yb = fyb[yo : yo + w]
                            sq = sf[q : q + w]
                            tq = tf[q : q + w]
                            xaq = xaf[q : q + w]
                            xbq = xbf[q : q + w]
                            yaq = yaf[q : q + w]
                            ybq = ybf[q : q + w]
                            for jj in range(w):
                                sq[jj] = srow[jj]
                                tq[jj] = trow[jj]
                                xaq[jj] = xa[jj]
                                xbq[jj] = xb[jj]
                                yaq[jj] = ya[jj]
                                ybq[jj] = yb[jj]
                            q += w
                        if code == RELU or code == RELU_UNIT:
                            for e in range(q):
                                kk, kd = closed_step(
                                    RELU, sf[e], xaf[e], yaf[e], xbf[e], ybf[e], snap
                                )
                                sf[e] = sc2 * kk
                                tf[e] = sc2 * kd * tf[e]
                        elif code == ERF:
                            for e in range(q):
                                kk, kd = closed_step(
                                    ERF, sf[e], xaf[e], yaf[e], xbf[e], ybf[e], snap
                                )
                                sf[e] = sc2 * kk
                                tf[e] = sc2 * kd * tf[e]
                        elif code == LEAKY_RELU:
                            for e in range(q):
                                kk, kd = closed_step(
                                    LEAKY_RELU, sf[e], xaf[e], yaf[e], xbf[e], ybf[e], snap
                                )
                                sf[e] = sc2 * kk
                                tf[e] = sc2 * kd * tf[e]
                        elif code == GELU:
                            for e in range(q):
                                kk, kd = closed_step(
                                    GELU, sf[e], xaf[e], yaf[e], xbf[e], ybf[e], snap
                                )
                                sf[e] = sc2 * kk
                                tf[e] = sc2 * kd * tf[e]
                        elif code == ELU:
                            for e in range(q):
                                kk, kd = closed_step(
                                    ELU, sf[e], xaf[e], yaf[e], xbf[e], ybf[e], snap
                                )
                                sf[e] = sc2 * kk
                                tf[e] = sc2 * kd * tf[e]
                        elif code == LINEAR:
                            for e in range(q):
                                sf[e] = sc2 * sf[e]
                                tf[e] = sc2 * tf[e]
                        else:  # a code without a step here: NaN, never another activation
                            for e in range(q):
                                sf[e] = math.nan
                                tf[e] = math.nan
                        q = 0
                        for i in range(ilo, ihi):
                            srow = S[i + P, jlo + P : jhi + P]
                            trow = T[i + P, jlo + P : jhi + P]
                            sq = sf[q : q + w]
                            tq = tf[q : q + w]
                            for jj in range(w):
                                srow[jj] = sq[jj]
                                trow[jj] = tq[jj]
                            q += w
                # reduce
                if red == POOL:
                    for i in range(ilo, ihi):
                        I = i // k
                        Ip = (i + u) // k
                        if I >= nH or Ip >= nH:
                            continue
                        U = Ip - I
                        if U > nRu or U < -nRu:
                            continue
                        for b in range(k):
                            V = (b + v) // k
                            if V > nRv or V < -nRv:
                                continue
                            slot = (U + nRu) * (2 * nRv + 1) + (V + nRv)
                            dst = nstore + slot * nH * nW + I * nW
                            # j = k J + b inside [jlo, jhi), J < nW, J + V in [0, nW)
                            J0 = max(0, -V)
                            while k * J0 + b < jlo:
                                J0 += 1
                            J1 = min(nW, nW - V)
                            while J1 > J0 and k * (J1 - 1) + b >= jhi:
                                J1 -= 1
                            for J in range(J0, J1):
                                PS[dst + J] += inv_pool * S[i + P, k * J + b + P]
                                PT[dst + J] += inv_pool * T[i + P, k * J + b + P]
                elif red == GAP or (iu == 0 and iv == 0):
                    # column sums (vectorised), added in a fixed order at the end
                    cs = col_s[jlo + P : jhi + P]
                    ct = col_t[jlo + P : jhi + P]
                    for i in range(ilo + P, ihi + P):
                        srow = S[i, jlo + P : jhi + P]
                        trow = T[i, jlo + P : jhi + P]
                        for jj in range(w):
                            cs[jj] += srow[jj]
                            ct[jj] += trow[jj]
        for j in range(W + 2 * P):
            acc_s += col_s[j]
            acc_t += col_t[j]
        if red == GAP:
            norm = 1.0 / (H * W * H * W)
            s_val = acc_s * norm
            t_val = acc_t * norm
            tail = o1 + 1
            break
        if red == FLATTEN:
            norm = 1.0 / (H * W)
            s_val = acc_s * norm
            t_val = acc_t * norm
            tail = o1 + 1
            break
    return _tail(ops, opf, tail, s_val, t_val, self_mode, fxa, fxb, fya, fyb, snap)


# -- all offsets at once: the slab layout ----------------------------------------------


@jit
def _rezero_border(A: np.ndarray, i: int, W: int, P: int, Ws: int) -> None:
    """Zero the border of slab ``i`` of ``A`` (``W + 2P`` rows of ``Ws`` entries, flattened).

    The border: the first and last ``P`` rows, and in the others the first ``P``
    entries and those from ``W + P`` on (``Ws`` is ``W + 2P``, or more in the
    float32 recursion, whose rows are padded to whole vectors).
    """
    Wp = W + 2 * P
    row = A[i]
    for f in range(P * Ws):
        row[f] = 0.0
    for f in range((W + P) * Ws, Wp * Ws):
        row[f] = 0.0
    for j in range(P, W + P):
        for q in range(P):
            row[j * Ws + q] = 0.0
        for q in range(W + P, Ws):
            row[j * Ws + q] = 0.0


@jit
def _wrap_border(A: np.ndarray, i: int, W: int, P: int) -> None:
    """Fill the border of slab ``i`` of ``A`` periodically (circular padding)."""
    Wp = W + 2 * P
    row = A[i]
    for jp in range(Wp):
        j = (jp - P) % W + P
        for qp in range(Wp):
            if P <= jp < W + P and P <= qp < W + P:
                continue
            q = (qp - P) % W + P
            row[jp * Wp + qp] = row[j * Wp + q]


@jit
def _slab_conv(
    A: np.ndarray, tmp: np.ndarray, base: np.ndarray, use_base: bool, ilo: int, ihi: int,
    H: int, W: int, P: int, r: int, c: float, add: float, circ: bool, Ws: int,
) -> None:
    """``A <- c * box_r(A) + add`` (or ``+ base``) on slabs ``[ilo, ihi)``, in place.

    Slab ``i`` (stored at ``i + P``) holds ``M[j, j'] = S[i, j, i + u, j']`` with a
    ``P``-wide border; the box filter sums the slabs ``i - r .. i + r`` (zero
    padding: the frame slabs are zero; circular: they are copies) and then along
    the diagonal ``M[j + b, j' + b]``, a shift of ``b (W + 2P + 1)`` in the
    flattened slab (rows of ``Ws >= W + 2P`` entries). Borders are zero afterwards.
    ``c`` and ``add`` have ``A``'s float type (the loops run in it).
    """
    Wp = W + 2 * P
    Z = Wp * Ws
    if circ:  # (rows of Ws = W + 2P entries)
        for i in range(P, H + P):
            _wrap_border(A, i, W, P)
        for q in range(P):
            src_lo = A[H + q]  # slab H - P + q
            dst_lo = A[q]
            src_hi = A[P + q]  # slab q
            dst_hi = A[H + P + q]
            for f in range(Z):
                dst_lo[f] = src_lo[f]
                dst_hi[f] = src_hi[f]
    # slabs (vectorised over the whole flattened slab)
    for i in range(ilo + P, ihi + P):
        t = tmp[i]
        a0 = A[i - r]
        for f in range(Z):
            t[f] = a0[f]
        for a in range(-r + 1, r + 1):
            aa = A[i + a]
            for f in range(Z):
                t[f] += aa[f]
    # diagonal of each slab, over the flattened interior (the border columns
    # between rows get garbage, zeroed below)
    f0 = P * Ws + P
    n = (W - 1) * Ws + W
    step = Ws + 1
    for i in range(ilo + P, ihi + P):
        t = tmp[i]
        out = A[i, f0 : f0 + n]
        br = base[i, f0 : f0 + n]
        if r == 1:
            tm = t[f0 - step : f0 - step + n]
            t0 = t[f0 : f0 + n]
            tp = t[f0 + step : f0 + step + n]
            if use_base:
                for f in range(n):
                    out[f] = c * (tm[f] + t0[f] + tp[f]) + br[f]
            else:
                for f in range(n):
                    out[f] = c * (tm[f] + t0[f] + tp[f]) + add
        else:
            tb = t[f0 - r * step : f0 - r * step + n]
            for f in range(n):
                out[f] = tb[f]
            for b in range(-r + 1, r + 1):
                tb = t[f0 + b * step : f0 + b * step + n]
                for f in range(n):
                    out[f] += tb[f]
            if use_base:
                for f in range(n):
                    out[f] = c * out[f] + br[f]
            else:
                for f in range(n):
                    out[f] = c * out[f] + add
        _rezero_border(A, i, W, P, Ws)


@jit
def pair_slab(
    x: np.ndarray,
    y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    self_mode: bool,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    snap: float,
    circ: bool,
    PS: np.ndarray,
    PT: np.ndarray,
) -> tuple[float, float]:
    """``(NNGP, NTK)`` of images ``x``, ``y`` over all offsets (the slab layout).

    For each row offset ``u`` (zero padding: ``-(H-1) .. H-1`` in the order 0, 1,
    -1, ...; circular: ``0 .. H-1``, rows wrapping), the covariance is a stack of
    slabs ``M_i[j, j'] = S[i, j, i + u, j']`` (W x W, zero-bordered, flattened),
    one per row ``i`` where both rows exist. A convolution sums neighbouring
    slabs and shifts along each slab's diagonal (long vectorised loops), an
    activation maps the slabs entry-wise, a pool adds ``k x k`` blocks of a slab
    into the pooled stack of the next resolution (``PS``, ``PT``: per pooled
    offset ``U``, rows ``I``, ``W' x W'`` slabs), global average pooling sums
    every slab, flattening the diagonals at ``u = 0``.

    The slabs, the pooled storage and their arithmetic have the float type of
    ``PS`` (and of the images). In float32 (:func:`slab_tiles`; zero padding) the
    rows of a slab are padded to whole vectors of 8 entries, and the ReLU runs
    over whole padded rows in float32 (:func:`kernelcomp._kernels.duals.relu_step32`,
    its factors split from the float64 ones), so that no row ends in a scalar
    loop; the other activations' closed forms run in float64 per entry; global
    average pooling and flattening sum in float64.
    """
    C = x.shape[2]
    inv_c = 1.0 / C
    nops = ops.shape[0]
    nst = stages.shape[0]
    s_val = 0.0
    t_val = 0.0
    tail = nops
    # float32: rows of whole 8-entry vectors, and the ReLU in float32
    lanes = 8 if PS.itemsize == 4 and not circ else 1
    snap32 = typed(PS, snap)
    for st in range(nst):
        o0 = stages[st, 0]
        o1 = stages[st, 1]
        H = stages[st, 2]
        W = stages[st, 3]
        store = stages[st, 6]
        P = stages[st, 7]
        if circ and P < 1:
            P = 1
        Wp = W + 2 * P
        Ws = (Wp + lanes - 1) // lanes * lanes  # row stride
        Z = Wp * Ws
        red = ops[o1, 0]
        nslot = H if circ else 2 * H - 1
        S = np.zeros((H + 2 * P, Z), dtype=PS.dtype)
        T = np.zeros((H + 2 * P, Z), dtype=PS.dtype)
        tmp = np.zeros((H + 2 * P, Z), dtype=PS.dtype)
        colS = np.zeros(Z, dtype=np.float64)
        colT = np.zeros(Z, dtype=np.float64)
        # float32 ReLU: per activation of the stage, the factors of both images in
        # padded rows like the slabs' (zero outside: a border entry stays zero), the
        # b factors as double-length float32 pairs (hi, lo); filled at u = 0
        nact = _relu_layers(ops, o0, o1) if lanes > 1 else 0
        F32 = np.zeros((nact, 6, H, Ws), dtype=PS.dtype)
        k = 1
        nH = 0
        nW = 0
        nstore = 0
        nslot_n = 0
        inv_pool = 1.0
        if red == POOL:
            k = ops[o1, 1]
            nH = stages[st + 1, 2]
            nW = stages[st + 1, 3]
            nstore = stages[st + 1, 6]
            nslot_n = nH if circ else 2 * nH - 1
            for q in range(nstore, nstore + nslot_n * nH * nW * nW):
                PS[q] = 0.0
                PT[q] = 0.0
            inv_pool = 1.0 / (k * k * k * k)
        rs = np.empty(W, dtype=PS.dtype)
        rt = np.empty(W, dtype=PS.dtype)
        for iu in range(nslot):
            u = iu if circ else _offset(iu)
            ilo = 0 if circ else max(0, -u)
            ihi = H if circ else min(H, H - u)
            if not circ:
                for i in range(ilo, ilo + P):
                    for f in range(Z):
                        S[i, f] = 0.0
                        T[i, f] = 0.0
                for i in range(ihi + P, ihi + 2 * P):
                    for f in range(Z):
                        S[i, f] = 0.0
                        T[i, f] = 0.0
            # the stage's input covariance
            for i in range(ilo, ihi):
                ip = (i + u) % H
                srow = S[i + P]
                trow = T[i + P]
                _rezero_border(S, i + P, W, P, Ws)
                for j in range(W):
                    sr = srow[(j + P) * Ws + P : (j + P) * Ws + P + W]
                    tr = trow[(j + P) * Ws + P : (j + P) * Ws + P + W]
                    if st == 0:
                        yr = y[ip]
                        x0 = np.float64(x[i, j, 0])
                        for jj in range(W):
                            sr[jj] = x0 * np.float64(yr[jj, 0])
                        for ch in range(1, C):
                            xc = np.float64(x[i, j, ch])
                            for jj in range(W):
                                sr[jj] += xc * np.float64(yr[jj, ch])
                        if C > 1:
                            for jj in range(W):
                                sr[jj] *= inv_c
                    else:
                        slot = u if circ else u + H - 1
                        b0 = store + ((slot * H + i) * W + j) * W
                        ps = PS[b0 : b0 + W]
                        pt = PT[b0 : b0 + W]
                        for jj in range(W):
                            sr[jj] = ps[jj]
                            tr[jj] = pt[jj]
                if st > 0:
                    _rezero_border(T, i + P, W, P, Ws)
            theta_zero = st == 0
            a32 = 0  # the float32 ReLUs met so far in the stage
            for o in range(o0, o1):
                kind = ops[o, 0]
                if kind == CONV:
                    r = ops[o, 1] // 2
                    c = typed(PS, opf[o, 0] / (ops[o, 1] * ops[o, 1]))
                    add = typed(PS, opf[o, 1])
                    _slab_conv(S, tmp, S, False, ilo, ihi, H, W, P, r, c, add, circ, Ws)
                    if theta_zero:  # T' = S' (T = 0 before the first convolution)
                        for i in range(ilo + P, ihi + P):
                            srow = S[i]
                            trow = T[i]
                            for f in range(Z):
                                trow[f] = srow[f]
                        theta_zero = False
                    else:
                        _slab_conv(T, tmp, S, True, ilo, ihi, H, W, P, r, c, typed(PS, 0.0),
                                   circ, Ws)
                elif kind == ACT:
                    code = ops[o, 1]
                    off = ops[o, 2]
                    sc2 = opf[o, 0]
                    if theta_zero:  # T = 0 before the first convolution: make it so
                        for i in range(ilo + P, ihi + P):
                            for f in range(Z):
                                T[i, f] = 0.0
                        theta_zero = False
                    if self_mode and iu == 0:
                        for i in range(H):
                            for j in range(W):
                                fa, fb = closed_state(
                                    code, np.float64(S[i + P, (j + P) * Ws + j + P])
                                )
                                fxa[off + i * W + j] = fa
                                fxb[off + i * W + j] = fb
                    if lanes > 1 and (code == RELU or code == RELU_UNIT):
                        fr = F32[a32]
                        a32 += 1
                        if iu == 0:  # the factors in padded float32 rows
                            for i in range(H):
                                e = off + i * W
                                _factors32(fxa[e : e + W], fxb[e : e + W], fr[0:3, i, P : P + W])
                                _factors32(fya[e : e + W], fyb[e : e + W], fr[3:6, i, P : P + W])
                        sc2f = typed(PS, sc2)
                        for i in range(ilo, ihi):
                            ip = (i + u) % H
                            srow = S[i + P]
                            trow = T[i + P]
                            ya = fr[3, ip]
                            ybh = fr[4, ip]
                            ybl = fr[5, ip]
                            for j in range(W):
                                xa = fr[0, i, j + P]
                                xbh = fr[1, i, j + P]
                                xbl = fr[2, i, j + P]
                                # the whole padded row (whole vectors, no scalar tail)
                                sr = srow[(j + P) * Ws : (j + P) * Ws + Ws]
                                tr = trow[(j + P) * Ws : (j + P) * Ws + Ws]
                                for jj in range(Ws):
                                    kk, kd = relu_step32(
                                        sr[jj], xa, ya[jj], xbh, ybh[jj], xbl, ybl[jj], snap32
                                    )
                                    sr[jj] = sc2f * kk
                                    tr[jj] = sc2f * kd * tr[jj]
                        continue
                    for i in range(ilo, ihi):
                        ip = (i + u) % H
                        srow = S[i + P]
                        trow = T[i + P]
                        ya = fya[off + ip * W : off + ip * W + W]
                        yb = fyb[off + ip * W : off + ip * W + W]
                        for j in range(W):
                            xa = fxa[off + i * W + j]
                            xb = fxb[off + i * W + j]
                            sr = srow[(j + P) * Ws + P : (j + P) * Ws + P + W]
                            tr = trow[(j + P) * Ws + P : (j + P) * Ws + P + W]
                            # one loop per code: closed_step folds to one closed form
                            if code == RELU or code == RELU_UNIT:
                                for jj in range(W):
                                    kk, kd = closed_step(
                                        RELU, np.float64(sr[jj]), xa, ya[jj], xb, yb[jj], snap
                                    )
                                    sr[jj] = sc2 * kk
                                    tr[jj] = sc2 * kd * tr[jj]
                            elif code == ERF:
                                for jj in range(W):
                                    kk, kd = closed_step(
                                        ERF, np.float64(sr[jj]), xa, ya[jj], xb, yb[jj], snap
                                    )
                                    sr[jj] = sc2 * kk
                                    tr[jj] = sc2 * kd * tr[jj]
                            elif code == LEAKY_RELU:
                                for jj in range(W):
                                    kk, kd = closed_step(
                                        LEAKY_RELU, np.float64(sr[jj]), xa, ya[jj], xb, yb[jj],
                                        snap,
                                    )
                                    sr[jj] = sc2 * kk
                                    tr[jj] = sc2 * kd * tr[jj]
                            elif code == GELU:
                                for jj in range(W):
                                    kk, kd = closed_step(
                                        GELU, np.float64(sr[jj]), xa, ya[jj], xb, yb[jj], snap
                                    )
                                    sr[jj] = sc2 * kk
                                    tr[jj] = sc2 * kd * tr[jj]
                            elif code == ELU:
                                for jj in range(W):
                                    kk, kd = closed_step(
                                        ELU, np.float64(sr[jj]), xa, ya[jj], xb, yb[jj], snap
                                    )
                                    sr[jj] = sc2 * kk
                                    tr[jj] = sc2 * kd * tr[jj]
                            elif code == LINEAR:
                                for jj in range(W):
                                    sr[jj] = sc2 * sr[jj]
                                    tr[jj] = sc2 * tr[jj]
                            else:  # a code without a step here: NaN, never another
                                for jj in range(W):
                                    sr[jj] = math.nan
                                    tr[jj] = math.nan
            if theta_zero:  # no convolution nor activation in the stage: T = 0
                for i in range(ilo + P, ihi + P):
                    for f in range(Z):
                        T[i, f] = 0.0
            # reduce
            if red == POOL:
                nW2 = nW * nW
                for i in range(ilo, ihi):
                    I = i // k
                    Ip = ((i + u) % H) // k
                    if I >= nH or Ip >= nH:
                        continue
                    U = Ip - I
                    slot = U % nH if circ else U + nH - 1
                    dst = nstore + (slot * nH + I) * nW2
                    srow = S[i + P]
                    trow = T[i + P]
                    for J in range(nW):
                        for jj in range(W):
                            rs[jj] = 0.0
                            rt[jj] = 0.0
                        for b in range(k):
                            f = (k * J + b + P) * Ws + P
                            sr = srow[f : f + W]
                            tr = trow[f : f + W]
                            for jj in range(W):
                                rs[jj] += sr[jj]
                                rt[jj] += tr[jj]
                        ps = PS[dst + J * nW : dst + J * nW + nW]
                        pt = PT[dst + J * nW : dst + J * nW + nW]
                        for Jp in range(nW):
                            a_s = 0.0
                            a_t = 0.0
                            for bp in range(k):
                                a_s += rs[k * Jp + bp]
                                a_t += rt[k * Jp + bp]
                            ps[Jp] += inv_pool * a_s
                            pt[Jp] += inv_pool * a_t
            elif red == GAP:
                for i in range(ilo + P, ihi + P):
                    srow = S[i]
                    trow = T[i]
                    for f in range(Z):
                        colS[f] += srow[f]
                        colT[f] += trow[f]
            elif iu == 0:  # FLATTEN: the diagonals of the slabs at u = 0
                for i in range(ilo + P, ihi + P):
                    for j in range(W):
                        f = (j + P) * Ws + j + P
                        colS[f] += S[i, f]
                        colT[f] += T[i, f]
        if red == GAP or red == FLATTEN:
            acc_s = 0.0
            acc_t = 0.0
            for f in range(Z):
                acc_s += colS[f]
                acc_t += colT[f]
            norm = 1.0 / (H * W * H * W) if red == GAP else 1.0 / (H * W)
            s_val = acc_s * norm
            t_val = acc_t * norm
            tail = o1 + 1
            break
    return _tail(ops, opf, tail, s_val, t_val, self_mode, fxa, fxb, fya, fyb, snap)


# -- the spatial diagonal alone: networks without pooling ------------------------------


@jit
def diag_block(
    X: np.ndarray,
    Y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    self_mode: bool,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    snap: float,
    ntk: bool,
    i0: int,
    i1: int,
    j0: int,
    j1: int,
    upper: bool,
    res: np.ndarray,
) -> None:
    """``res[i - i0, j - j0]`` = kernel of ``X[i]`` and ``Y[j]`` for a network without pooling.

    Such a network (one stage flattened at the end, offsets ``(0, 0)`` only) needs
    the covariance of each position with itself alone: ``S[i, j] = S(x_ij, y_ij)``,
    an ``H x W`` image per pair. This is :func:`pair` restricted to that offset, run
    over a block of pairs with its scratch allocated once per block, not once per
    pair: ``S``, ``T`` and the row pass's ``tmp``, flat ``H W`` images without a
    frame. Every loop runs over the whole flat image (the convolution's row and
    column sums, the activation), and the few entries within ``r`` of an edge are
    summed again without the terms beyond it (those of the zero padding). Unpadded,
    the covariance lines up with the samples' activation factors
    (``fxa[i, off:off + H W]``): no gather. The arithmetic is :func:`pair`'s (the
    same sums in the same order, less the added zeros): the values are equal to
    the offset walk's, bit for bit up to the sign of a zero.

    The covariances and the convolutions' sums have the float type of ``X``; in
    float32 the ReLU runs :func:`~kernelcomp._kernels.duals.relu_step32` on
    float32 factors converted once per sample of the block (:func:`_sample32`),
    the other closed forms run in float64 per entry, and the flatten sums in
    float64. In float64 the arithmetic is the float64 recursion's, unchanged.

    With ``upper`` (the diagonal block of a symmetric Gram) only ``j > i`` is
    computed; ``self_mode`` is the per-sample pass (``Y is X``, one pair ``(i, i)``,
    writing the factors). The scratch is allocated here, in the function whose
    loops write it, so that LLVM knows it aliases nothing and vectorises them.
    """
    H = stages[0, 2]
    W = stages[0, 3]
    o0 = stages[0, 0]
    o1 = stages[0, 1]
    HW = H * W
    C = X.shape[3]
    inv_c = 1.0 / C
    norm = 1.0 / HW
    S = np.empty(HW, dtype=X.dtype)
    T = np.empty(HW, dtype=X.dtype)
    tmp = np.empty(HW, dtype=X.dtype)
    # float32: the ReLUs' float32 factors of X[i] (FX) and of the block's Y[j] (FY),
    # converted once per sample and block (per pair in the per-sample pass)
    nact = _relu_layers(ops, o0, o1) if X.itemsize == 4 else 0
    snap32 = typed(X, snap)
    pre = nact > 0 and not self_mode
    FX = np.empty((nact, 3, HW), dtype=X.dtype)
    FY = np.empty((j1 - j0 if pre else 0, nact, 3, HW), dtype=X.dtype)
    for j in range(j0, j1 if pre else j0):
        _sample32(fya[j], fyb[j], ops, o0, o1, HW, FY[j - j0])
    col_s = np.empty(W, dtype=np.float64)
    col_t = np.empty(W, dtype=np.float64)
    for i in range(i0, i1):
        x = X[i]
        if pre:
            _sample32(fxa[i], fxb[i], ops, o0, o1, HW, FX)
        for j in range(i + 1 if upper else j0, j1):
            y = Y[j]
            # the input covariance, position by position (channels in order)
            xf = x.reshape(HW * C)
            yf = y.reshape(HW * C)
            for ch in range(C):
                xc = xf[ch:]
                yc = yf[ch:]
                if ch == 0:
                    for e in range(HW):
                        S[e] = np.float64(xc[e * C]) * np.float64(yc[e * C])
                else:
                    for e in range(HW):
                        S[e] += np.float64(xc[e * C]) * np.float64(yc[e * C])
            if C > 1:
                for e in range(HW):
                    S[e] *= inv_c
            for e in range(HW):
                T[e] = 0.0
            theta_zero = True
            a32 = 0
            for o in range(o0, o1):
                kind = ops[o, 0]
                if kind == CONV:
                    r = ops[o, 1] // 2
                    c = typed(X, opf[o, 0] / (ops[o, 1] * ops[o, 1]))
                    add = typed(X, opf[o, 1])
                    # S <- c box_r(S) + b2, then T <- c box_r(T) + S (NTK parameterisation;
                    # T = S after the first convolution): rows into tmp, then columns
                    for pas in range(1 if theta_zero else 2):
                        A = S if pas == 0 else T
                        # rows: tmp[e] = sum_b A[e + b], flat over the image (long
                        # vectorised loops), then the r columns at each edge again
                        # without the terms beyond it (the zero padding: adding a zero
                        # changes nothing, so the sums are pair()'s)
                        n_in = HW - 2 * r
                        if r == 1:
                            am = A[0:n_in]
                            a0 = A[1 : 1 + n_in]
                            ap = A[2 : 2 + n_in]
                            tq = tmp[1 : 1 + n_in]
                            for e in range(n_in):
                                tq[e] = am[e] + a0[e] + ap[e]
                        elif n_in > 0:
                            tq = tmp[r : r + n_in]
                            ab = A[0:n_in]
                            for e in range(n_in):
                                tq[e] = ab[e]
                            for b in range(-r + 1, r + 1):
                                ab = A[r + b : r + b + n_in]
                                for e in range(n_in):
                                    tq[e] += ab[e]
                        e_lo = min(r, W)  # edge columns: [0, e_lo) and [e_hi, W)
                        e_hi = max(W - r, e_lo)
                        for rr in range(H):
                            q = rr * W
                            for jx in range(e_lo + W - e_hi):
                                jj = jx if jx < e_lo else e_hi + jx - e_lo
                                acc = typed(X, 0.0)
                                first = True
                                for b in range(max(-r, -jj), min(r, W - 1 - jj) + 1):
                                    if first:
                                        acc = A[q + jj + b]
                                        first = False
                                    else:
                                        acc += A[q + jj + b]
                                tmp[q + jj] = acc
                        # columns: A[e] = c sum_a tmp[e + a W] + add (or + S), flat over
                        # the rows with r rows above and below, then the edge rows
                        n_in = (H - 2 * r) * W
                        if n_in > 0:
                            o_in = r * W
                            ao = A[o_in : o_in + n_in]
                            bo = S[o_in : o_in + n_in]
                            if r == 1:
                                t0 = tmp[0:n_in]
                                t1 = tmp[W : W + n_in]
                                t2 = tmp[2 * W : 2 * W + n_in]
                                if pas == 0:
                                    for e in range(n_in):
                                        ao[e] = c * (t0[e] + t1[e] + t2[e]) + add
                                else:
                                    for e in range(n_in):
                                        ao[e] = c * (t0[e] + t1[e] + t2[e]) + bo[e]
                            else:
                                tb = tmp[0:n_in]
                                for e in range(n_in):
                                    ao[e] = tb[e]
                                for b in range(-r + 1, r + 1):
                                    tb = tmp[o_in + b * W : o_in + b * W + n_in]
                                    for e in range(n_in):
                                        ao[e] += tb[e]
                                if pas == 0:
                                    for e in range(n_in):
                                        ao[e] = c * ao[e] + add
                                else:
                                    for e in range(n_in):
                                        ao[e] = c * ao[e] + bo[e]
                        for rr in range(H):
                            if r <= rr < H - r:
                                continue
                            q = rr * W
                            a_lo = max(-r, -rr)
                            a_hi = min(r, H - 1 - rr)
                            for jj in range(W):
                                acc = tmp[q + a_lo * W + jj]
                                for b in range(a_lo + 1, a_hi + 1):
                                    acc += tmp[q + b * W + jj]
                                if pas == 0:
                                    A[q + jj] = c * acc + add
                                else:
                                    A[q + jj] = c * acc + S[q + jj]
                    if theta_zero:
                        for e in range(HW):
                            T[e] = S[e]
                        theta_zero = False
                elif kind == ACT:
                    code = ops[o, 1]
                    off = ops[o, 2]
                    sc2 = opf[o, 0]
                    xa = fxa[i, off : off + HW]
                    xb = fxb[i, off : off + HW]
                    if self_mode:
                        for e in range(HW):
                            fa, fb = closed_state(code, np.float64(S[e]))
                            xa[e] = fa
                            xb[e] = fb
                    ya = fya[j, off : off + HW]
                    yb = fyb[j, off : off + HW]
                    # one loop per code: closed_step folds to one closed form
                    if nact > 0 and (code == RELU or code == RELU_UNIT):
                        # float32 (relu_step32, its factors split from the float64 ones)
                        fx = FX[a32]
                        fy = FX[a32] if self_mode else FY[j - j0, a32]
                        a32 += 1
                        if self_mode:
                            _factors32(xa, xb, fx)
                        sc2f = typed(X, sc2)
                        xa32 = fx[0]
                        xbh = fx[1]
                        xbl = fx[2]
                        ya32 = fy[0]
                        ybh = fy[1]
                        ybl = fy[2]
                        for e in range(HW):
                            kk, kd = relu_step32(
                                S[e], xa32[e], ya32[e], xbh[e], ybh[e], xbl[e], ybl[e], snap32
                            )
                            S[e] = sc2f * kk
                            T[e] = sc2f * kd * T[e]
                    elif code == RELU or code == RELU_UNIT:
                        for e in range(HW):
                            kk, kd = closed_step(RELU, S[e], xa[e], ya[e], xb[e], yb[e], snap)
                            S[e] = sc2 * kk
                            T[e] = sc2 * kd * T[e]
                    elif code == ERF:
                        for e in range(HW):
                            kk, kd = closed_step(
                                ERF, np.float64(S[e]), xa[e], ya[e], xb[e], yb[e], snap
                            )
                            S[e] = sc2 * kk
                            T[e] = sc2 * kd * T[e]
                    elif code == LEAKY_RELU:
                        for e in range(HW):
                            kk, kd = closed_step(
                                LEAKY_RELU, np.float64(S[e]), xa[e], ya[e], xb[e], yb[e], snap
                            )
                            S[e] = sc2 * kk
                            T[e] = sc2 * kd * T[e]
                    elif code == GELU:
                        for e in range(HW):
                            kk, kd = closed_step(
                                GELU, np.float64(S[e]), xa[e], ya[e], xb[e], yb[e], snap
                            )
                            S[e] = sc2 * kk
                            T[e] = sc2 * kd * T[e]
                    elif code == ELU:
                        for e in range(HW):
                            kk, kd = closed_step(
                                ELU, np.float64(S[e]), xa[e], ya[e], xb[e], yb[e], snap
                            )
                            S[e] = sc2 * kk
                            T[e] = sc2 * kd * T[e]
                    elif code == LINEAR:
                        for e in range(HW):
                            S[e] = sc2 * S[e]
                            T[e] = sc2 * T[e]
                    else:  # a code without a step here: NaN, never another activation
                        for e in range(HW):
                            S[e] = math.nan
                            T[e] = math.nan
            # flatten: column sums, then the columns in order (pair's order)
            for jj in range(W):
                col_s[jj] = 0.0
                col_t[jj] = 0.0
            for a in range(H):
                sr = S[a * W : a * W + W]
                tr = T[a * W : a * W + W]
                for jj in range(W):
                    col_s[jj] += sr[jj]
                    col_t[jj] += tr[jj]
            acc_s = 0.0
            acc_t = 0.0
            for jj in range(W):
                acc_s += col_s[jj]
                acc_t += col_t[jj]
            s_val, t_val = _tail(
                ops, opf, o1 + 1, acc_s * norm, acc_t * norm, self_mode, fxa[i], fxb[i],
                fya[j], fyb[j], snap,
            )
            res[i - i0, j - j0] = t_val if ntk else s_val


@jit
def _storage(store: int):
    """Pooled storage for one thread."""
    PS = np.zeros(max(store, 1), dtype=np.float64)
    PT = np.zeros(max(store, 1), dtype=np.float64)
    return PS, PT


def prepare(
    X: np.ndarray,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    work: np.ndarray,
    store: int,
    snap: float,
    ntk: bool,
    slab: bool,
    circ: bool,
    fa: np.ndarray,
    fb: np.ndarray,
    dg: np.ndarray,
    gram_dtype: type = np.float64,
) -> None:
    """Per-sample pass: activation factors ``fa, fb`` (n, F) and the diagonal ``dg`` (n,).

    :func:`fill` in its per-sample mode: one compiled pass serves both, so the
    pair functions are compiled (and inlined by LLVM) once, not twice. Pass the
    dtype of the Gram the tiles will fill as ``gram_dtype``: the pass is then the
    very specialisation the Gram uses (its unused ``out`` has that dtype), not a
    second one.
    """
    fill(
        X, X, fa, fb, dg, fa, fb, ops, opf, stages, work, store, snap, ntk, slab, circ,
        False, 1, np.empty((0, 0), dtype=gram_dtype), np.zeros((1, 1), dtype=np.int64), True,
    )


def diag_layout(stages: np.ndarray, slab: bool) -> bool:
    """Whether a program runs in :func:`diag_tiles`: one stage, offset ``(0, 0)`` alone.

    (A pool of size 1 keeps a network on the spatial diagonal in two stages: those
    run the offset walk, :func:`tiles`.)
    """
    return not slab and stages.shape[0] == 1 and stages[0, 4] == 0 and stages[0, 5] == 0


def fill(
    X: np.ndarray,
    Y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    dgx: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    work: np.ndarray,
    store: int,
    snap: float,
    ntk: bool,
    slab: bool,
    circ: bool,
    symmetric: bool,
    tile: int,
    out: np.ndarray,
    ticks: np.ndarray,
    per_sample: bool,
) -> None:
    """:func:`tiles`' pass (same arguments) by the compiled function that fits the program.

    A network without pooling (one stage, offset ``(0, 0)`` alone, not in the slab
    layout) runs in :func:`diag_tiles`, in the images' float type; float32 images
    of any other network run the float32 recursion of the slab layout
    (:func:`slab_tiles`: global average pooling, zero padding), float64 images
    :func:`tiles`. Each is compiled on its first use only.
    """
    if diag_layout(stages, slab):
        diag_tiles(
            X, Y, fxa, fxb, dgx, fya, fyb, ops, opf, stages, snap, ntk, symmetric, tile, out,
            ticks, per_sample,
        )
    elif X.dtype == np.float32:
        if not slab or circ:
            raise ValueError(
                "float32 images run the float32 recursion of the slab layout with zero "
                "padding or of a network without pooling only; pass float64 images"
            )
        slab_tiles(
            X, Y, fxa, fxb, dgx, fya, fyb, ops, opf, stages, store, snap, ntk, symmetric, tile,
            out, ticks, per_sample,
        )
    else:
        tiles(
            X, Y, fxa, fxb, dgx, fya, fyb, ops, opf, stages, work, store, snap, ntk, slab, circ,
            symmetric, tile, out, ticks, per_sample,
        )


@jit
def _tile_list(
    nx: int, out: np.ndarray, tile: int, symmetric: bool, per_sample: bool, ticks: np.ndarray
) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """``(n, m, tile, pti, ptj)``: the tiles a pass of :func:`tiles` or :func:`slab_tiles` visits.

    In the per-sample mode, each of the ``nx`` samples is a 1 x 1 tile against itself
    (``out`` and ``ticks`` not read); otherwise the tiles of ``out`` from
    :func:`~kernelcomp._kernels.progress.tile_pairs`, whose work total starts the
    progress count in ``ticks``.
    """
    if per_sample:
        pti = np.arange(nx, dtype=np.int64)
        return nx, nx, 1, pti, pti
    n = out.shape[0]
    m = out.shape[1]
    pti, ptj, total = tile_pairs(n, m, tile, symmetric)
    begin(ticks, total)
    return n, m, tile, pti, ptj


@jit(parallel=True)
def tiles(
    X: np.ndarray,
    Y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    dgx: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    work: np.ndarray,
    store: int,
    snap: float,
    ntk: bool,
    slab: bool,
    circ: bool,
    symmetric: bool,
    tile: int,
    out: np.ndarray,
    ticks: np.ndarray,
    per_sample: bool,
) -> None:
    """Fill ``out`` (n, m) with the kernel of float64 images ``X`` against ``Y``.

    For networks with pooling: :func:`fill` runs those without in
    :func:`diag_tiles` (this pass would compute them pair by pair, offset
    ``(0, 0)`` alone). Square tiles of ``tile`` x ``tile`` pairs are spread over
    threads; with ``symmetric`` (``Y is X``) only tiles on or above the diagonal
    are computed, each pair once, mirrored, and the diagonal is ``dgx``. Each
    finished tile adds its entries to ``ticks``
    (:mod:`kernelcomp._kernels.progress`).

    With ``per_sample`` (:func:`prepare`: ``Y is X``, ``fya is fxa``) it runs
    each sample against itself in self mode instead, writing the factors
    ``fxa``, ``fxb`` and the diagonal ``dgx``; ``out``, ``ticks``, ``symmetric``
    and ``tile`` are not read. The mode is an argument from Python, never a
    literal inside compiled code: numba compiles a callee once per literal value,
    and the pair functions take tens of seconds each to compile.
    """
    n, m, tile, pti, ptj = _tile_list(X.shape[0], out, tile, symmetric, per_sample, ticks)
    npairs = pti.shape[0]
    diag_tile = symmetric and not per_sample
    for p in numba.prange(npairs):
        ti = pti[p]
        tj = ptj[p]
        PS, PT = _storage(store)
        for i in range(ti * tile, min(n, ti * tile + tile)):
            j0 = tj * tile
            if diag_tile and ti == tj:
                out[i, i] = dgx[i]
                j0 = i + 1
            for j in range(j0, min(m, tj * tile + tile)):
                if slab:
                    s, t = pair_slab(
                        X[i], Y[j], fxa[i], fxb[i], fya[j], fyb[j], per_sample, ops, opf,
                        stages, snap, circ, PS, PT,
                    )
                else:
                    s, t = pair(
                        X[i], Y[j], fxa[i], fxb[i], fya[j], fyb[j], per_sample, ops, opf,
                        stages, work, snap, circ, PS, PT,
                    )
                val = t if ntk else s
                if per_sample:
                    dgx[i] = val
                    continue
                out[i, j] = val
                if symmetric:
                    out[j, i] = val
        if not per_sample:
            tick(ticks, tile_work(ti * tile, min(n, ti * tile + tile), tj * tile,
                                  min(m, tj * tile + tile), symmetric and ti == tj))


@jit(parallel=True)
def diag_tiles(
    X: np.ndarray,
    Y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    dgx: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    snap: float,
    ntk: bool,
    symmetric: bool,
    tile: int,
    out: np.ndarray,
    ticks: np.ndarray,
    per_sample: bool,
) -> None:
    """:func:`tiles` for networks without pooling, the recursion in the images' float type.

    A network without pooling (one stage, offset ``(0, 0)`` alone) runs in whole
    blocks of pairs on the spatial diagonal (:func:`diag_block`, scratch allocated
    once per block), a function of its own so that its Grams compile
    :func:`diag_block` alone, not the whole core: float64 images run the float64
    recursion, float32 images the float32 one (``snap`` the float32 recursion's).
    The arguments are :func:`tiles`' less those of the pooled layouts (the
    per-sample mode included); the factors ``fxa``... and the diagonal stay float64.
    """
    n, m, tile, pti, ptj = _tile_list(X.shape[0], out, tile, symmetric, per_sample, ticks)
    npairs = pti.shape[0]
    diag_tile = symmetric and not per_sample
    for p in numba.prange(npairs):
        i0 = pti[p] * tile
        i1 = min(n, i0 + tile)
        j0 = ptj[p] * tile
        j1 = min(m, j0 + tile)
        upper = diag_tile and i0 == j0
        res = np.empty((i1 - i0, j1 - j0), dtype=np.float64)
        diag_block(X, Y, fxa, fxb, fya, fyb, per_sample, ops, opf, stages, snap, ntk,
                   i0, i1, j0, j1, upper, res)
        for i in range(i0, i1):
            if per_sample:
                dgx[i] = res[i - i0, i - j0]
                continue
            jb = j0
            if upper:
                out[i, i] = dgx[i]
                jb = i + 1
            for j in range(jb, j1):
                val = res[i - i0, j - j0]
                out[i, j] = val
                if symmetric:
                    out[j, i] = val
        if not per_sample:
            tick(ticks, tile_work(i0, i1, j0, j1, upper))


@jit(parallel=True)
def slab_tiles(
    X: np.ndarray,
    Y: np.ndarray,
    fxa: np.ndarray,
    fxb: np.ndarray,
    dgx: np.ndarray,
    fya: np.ndarray,
    fyb: np.ndarray,
    ops: np.ndarray,
    opf: np.ndarray,
    stages: np.ndarray,
    store: int,
    snap: float,
    ntk: bool,
    symmetric: bool,
    tile: int,
    out: np.ndarray,
    ticks: np.ndarray,
    per_sample: bool,
) -> None:
    """:func:`tiles` for the slab layout alone, its recursion in the images' float type.

    The float32 recursion of a globally pooled network with zero padding
    (:func:`pair_slab` on float32 images and float32 pooled storage, ``snap``
    the float32 recursion's): a function of its own so that a float32 Gram
    compiles :func:`pair_slab` alone for float32, not the whole core. The
    arguments are :func:`tiles`' (the per-sample mode included); the factors
    ``fxa``... and the diagonal stay float64.
    """
    n, m, tile, pti, ptj = _tile_list(X.shape[0], out, tile, symmetric, per_sample, ticks)
    npairs = pti.shape[0]
    diag_tile = symmetric and not per_sample
    for p in numba.prange(npairs):
        ti = pti[p]
        tj = ptj[p]
        PS = np.zeros(max(store, 1), dtype=X.dtype)
        PT = np.zeros(max(store, 1), dtype=X.dtype)
        for i in range(ti * tile, min(n, ti * tile + tile)):
            j0 = tj * tile
            if diag_tile and ti == tj:
                out[i, i] = dgx[i]
                j0 = i + 1
            for j in range(j0, min(m, tj * tile + tile)):
                s, t = pair_slab(
                    X[i], Y[j], fxa[i], fxb[i], fya[j], fyb[j], per_sample, ops, opf, stages,
                    snap, False, PS, PT,
                )
                val = t if ntk else s
                if per_sample:
                    dgx[i] = val
                    continue
                out[i, j] = val
                if symmetric:
                    out[j, i] = val
        if not per_sample:
            tick(ticks, tile_work(ti * tile, min(n, ti * tile + tile), tj * tile,
                                  min(m, tj * tile + tile), symmetric and ti == tj))
