"""CUDA kernel of the analytic (infinite-width) NNGP and NTK Gram matrices.

One fused kernel computes a block of the Gram matrix of rows ``X`` against
rows ``Y``, dot products included (no separate GEMM, no cupy or torch):

* a 2-D grid of ``CUDA_TILE x CUDA_TILE`` thread blocks; thread ``(ty, tx)`` of block
  ``(by, bx)`` owns output entry ``(by*CUDA_TILE + ty, bx*CUDA_TILE + tx)`` (columns
  along ``x``, so a warp writes consecutive entries of one row);
* the dot product ``x_i . y_j`` accumulates in float64 over shared-memory
  tiles of ``CUDA_TILE`` rows of ``X`` and of ``Y`` by ``CUDA_TILE`` features (float32
  inputs are widened when loaded), feature by feature in order, as the CPU's
  fused tile loop does;
* then every layer of the recursion of :mod:`kernelcomp._kernels.analytic`,
  with the activation chosen by its integer code, from the per-sample
  quantities of the CPU ``prepare`` pass (``a``, ``b`` and the diagonal,
  copied to the device);
* symmetric case: only blocks with ``by <= bx`` compute; each writes its
  entries and, through a shared-memory transpose (coalesced), their mirror
  images, so the result is exactly symmetric; the diagonal is the CPU's
  per-sample value.

Rounding: every product is an explicitly rounded multiply (``__dmul_rn``),
which the CUDA compiler never fuses into a multiply-add (the generated PTX has
no ``fma``), and divisions and square roots are IEEE (no fastmath). So each
entry follows the CPU's sequence of IEEE operations, its dot product summed in
the CPU fused loop's order: by design the GPU reproduces the CPU's fused path
(``d <= FUSED_MAX_FEATURES``) bit for bit, and above that it differs from the
CPU's BLAS dot products by their rounding only (it never snaps dot products:
it does not need to). Identical rows give exactly the diagonal, and so do
duplicates across ``X`` and ``Y``. One exception: ELU's step calls ``exp`` and
``erfc``, which are the C library's on the CPU and libdevice's on a GPU; they
may differ in the last bit, so on a real GPU ELU's entries agree with the CPU's
to rounding (~1e-15) rather than bit for bit, and a duplicated row's entry may
differ from the CPU's diagonal by as much (symmetry is exact either way; the
simulator, which runs the C library's, matches bit for bit). The tests check all this in numba's
simulator, where the device functions run as Python on NumPy float64 scalars
(the same IEEE operations); ``scripts/bench_cuda.py --check`` checks it on a GPU.

Only the launch lives here: validation, device selection and block handling
are the public layer's (:mod:`kernelcomp.kernels`, :mod:`kernelcomp._gram`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kernelcomp._kernels._config import (
    CudaUnavailableError,
    cuda_jit,
    cuda_module,
    cuda_simulator,
)
from kernelcomp._kernels.activations import (
    CODES,
    ELU,
    ERF,
    GELU,
    LEAKY_RELU,
    LINEAR,
    RELU,
    RELU_UNIT,
)
from kernelcomp._kernels.duals import (
    _2_OVER_PI,
    _4_OVER_PI,
    _GL_T,
    _GL_W,
    _HALF_PI,
    _INV_2PI,
    _INV_SQRT2,
    _INV_SQRT_2PI,
    _INV_SQRT_8PI,
    _LK_C1,
    _LK_C2,
    _LK_C3,
    _PI,
    _PS0,
    _PS1,
    _PS2,
    _PS3,
    _PS4,
    _PS5,
    _QS1,
    _QS2,
    _QS3,
    _QS4,
    _S1,
    _S2,
    _S3,
    _S4,
    _S5,
    _S6,
    _S7,
    _S8,
    _S9,
    _SQRT_2PI,
    _TINY,
    _TWO_PI,
)

#: codes with a closed-form step in :func:`closed_step` (the codes of
#: :mod:`kernelcomp._kernels.activations`); any smooth code also runs as a Hermite series
CLOSED_CODES = (RELU, RELU_UNIT, ERF, LEAKY_RELU, LINEAR, GELU, ELU)

#: edge of a thread block (CUDA_TILE x CUDA_TILE threads, one output entry each) and of
#: the shared-memory tiles of X and Y (CUDA_TILE rows by CUDA_TILE features)
CUDA_TILE = 16
#: row length of the shared tiles (one pad column: conflict-free column reads)
_TILE_PAD = CUDA_TILE + 1
#: device memory one output buffer may take (bytes); None: a quarter of the free
#: memory (tests lower it to exercise the row chunks)
MAX_OUT_BYTES: int | None = None
#: most thread blocks along a grid's y axis (CUDA's limit; x allows 2**31 - 1):
#: larger outputs are launched in pieces (tests lower it)
MAX_GRID = 65535

try:
    cuda: Any = cuda_module()
except CudaUnavailableError:
    cuda = None
SIMULATOR = cuda is not None and cuda_simulator(cuda)


def _plain(func: Any) -> Any:
    return func


#: decorator of the device functions. The simulator would only wrap them (they
#: use no CUDA intrinsics) in a per-call swap of this module's globals, which
#: slows simulated kernels down: there they stay plain Python
_device = _plain if SIMULATOR else cuda_jit(device=True)

if cuda is not None and not SIMULATOR:
    from numba.cuda import libdevice

    @_device
    def _mul(x, y):
        """``x * y`` rounded once, never fused with a following add."""
        return libdevice.dmul_rn(x, y)

else:
    # NumPy float64 products are rounded already (and numba-cuda may be missing)

    @_device
    def _mul(x, y):
        """``x * y`` rounded once, never fused with a following add."""
        return x * y


@_device
def _asin_core(ax):
    """:func:`kernelcomp._kernels.analytic._asin_core` on the device (same operations)."""
    big = ax > 0.5
    z = _mul(1.0 - ax, 0.5) if big else _mul(ax, ax)
    sq = math.sqrt(z)
    s = sq if big else ax
    h = _PS4 + _mul(z, _PS5)  # Horner, innermost first (the CPU's order)
    h = _PS3 + _mul(z, h)
    h = _PS2 + _mul(z, h)
    h = _PS1 + _mul(z, h)
    p = _mul(z, _PS0 + _mul(z, h))
    q = 1.0 + _mul(z, _QS1 + _mul(z, _QS2 + _mul(z, _QS3 + _mul(z, _QS4))))
    return s + _mul(s, p / q), big


@_device
def _acos(x):
    ax = abs(x)
    r, big = _asin_core(ax)
    a = _mul(2.0, r) if big else _HALF_PI - r
    return a if x >= 0.0 else _PI - a


@_device
def _asin(x):
    ax = abs(x)
    r, big = _asin_core(ax)
    a = _HALF_PI - _mul(2.0, r) if big else r
    return a if x >= 0.0 else -a


@_device
def _relu_step(s, ai, aj, bi, bj, snap):
    """:func:`kernelcomp._kernels.analytic.relu_step` on the device."""
    rho = _mul(s, _mul(bi, bj))
    arho = abs(rho)
    rho = math.copysign(1.0, rho) if 1.0 - arho <= snap else rho
    c = _mul(1.0 - rho, 1.0 + rho)
    sin_t = math.sqrt(c if c > 0.0 else 0.0)
    pi_minus_t = _PI - _acos(rho)
    k = _mul(_mul(_mul(ai, aj), sin_t + _mul(pi_minus_t, rho)), _INV_2PI)
    kd = _mul(pi_minus_t, _INV_2PI)
    return k, kd


@_device
def _erf_step(s, ai, aj):
    """:func:`kernelcomp._kernels.analytic.erf_step` on the device."""
    u = _mul(ai, aj)
    r = _mul(_mul(2.0, s), u)
    r = math.copysign(1.0, r) if abs(r) > 1.0 else r
    c = _mul(1.0 - r, 1.0 + r)
    k = _mul(_2_OVER_PI, _asin(r))
    kd = _mul(_4_OVER_PI, u) / math.sqrt(c if c > _TINY else _TINY)
    return k, kd


@_device
def _abrelu_step(s, ai, aj, bi, bj, snap, c1, c2, c3):
    """:func:`kernelcomp._kernels.duals.abrelu_step` on the device."""
    rho = _mul(s, _mul(bi, bj))
    rho = math.copysign(1.0, rho) if 1.0 - abs(rho) <= snap else rho
    c = _mul(1.0 - rho, 1.0 + rho)
    sin_t = math.sqrt(c if c > 0.0 else 0.0)
    t = _acos(rho)
    g = _mul(c2, _PI - t) + _mul(c3, t)
    k = _mul(_mul(_mul(ai, aj), _mul(c1, sin_t) + _mul(g, rho)), _INV_2PI)
    kd = _mul(g, _INV_2PI)
    return k, kd


@_device
def _gelu_step(s, ai, aj, bi, bj):
    """:func:`kernelcomp._kernels.duals.gelu_step` on the device."""
    pq = _mul(ai, aj)
    p = _mul(bi, bj)
    d2 = p - _mul(s, s)
    d2 = d2 if d2 > 1.0 else 1.0
    dl = math.sqrt(d2)
    x = s / math.sqrt(p)
    x = math.copysign(1.0, x) if abs(x) > 1.0 else x
    ang = _asin(x)
    k = _mul(0.25, s) + _mul(_INV_2PI, _mul(s, ang) + (_mul(s, s) + _mul(pq, d2)) / _mul(p, dl))
    kd = 0.25 + _mul(_INV_2PI, ang + _mul(s / dl, (1.0 + (1.0 - pq) / p) + 1.0 / d2))
    return k, kd


@_device
def _norm_cdf(x):
    """:func:`kernelcomp._kernels.duals.norm_cdf` on the device."""
    return _mul(0.5, math.erfc(_mul(-x, _INV_SQRT2)))


@_device
def _sin_small(t):
    """:func:`kernelcomp._kernels.duals._sin_small` on the device."""
    z = _mul(t, t)
    p = _S9
    p = _mul(p, z) + _S8
    p = _mul(p, z) + _S7
    p = _mul(p, z) + _S6
    p = _mul(p, z) + _S5
    p = _mul(p, z) + _S4
    p = _mul(p, z) + _S3
    p = _mul(p, z) + _S2
    p = _mul(p, z) + _S1
    p = _mul(p, z) + 1.0
    return _mul(t, p)


@_device
def _bvnu_head(h, k, a, a2):
    """:func:`kernelcomp._kernels.duals._bvnu_head` on the device."""
    hk = _mul(h, k)
    bs = _mul(h - k, h - k)
    c = (4.0 - hk) / 8.0
    d = (12.0 - hk) / 16.0
    e0 = _mul(-0.5, bs / a2 + hk)
    bvn = 0.0
    if e0 > -100.0:
        bvn = _mul(_mul(a, math.exp(e0)),
                   1.0 - _mul(_mul(c, bs - a2), 1.0 - _mul(d, bs) / 5.0) / 3.0
                   + _mul(_mul(_mul(c, d), a2), a2) / 5.0)
    if hk > -100.0:
        b = math.sqrt(bs)
        bvn = bvn - _mul(_mul(_mul(math.exp(_mul(-0.5, hk)), _mul(_SQRT_2PI, _norm_cdf(-b / a))),
                              b),
                         1.0 - _mul(_mul(c, bs), 1.0 - _mul(d, bs) / 5.0) / 3.0)
    return bvn, hk, bs, c, d


@_device
def _bvnu_node(x, er, rinv, wq, hk, bs, c, d):
    """:func:`kernelcomp._kernels.duals._bvnu_node` on the device."""
    e = _mul(-0.5, bs / x + hk)
    if e > -100.0:
        sp = 1.0 + _mul(_mul(c, x), 1.0 + _mul(d, x))
        ep = _mul(math.exp(_mul(_mul(-0.5, hk), er)), rinv)
        return _mul(_mul(wq, math.exp(e)), ep - sp)
    return 0.0


@_device
def _bvnu_finish(h, k, r, bvn):
    """:func:`kernelcomp._kernels.duals._bvnu_finish` on the device."""
    if r > 0.0:
        bvn = bvn + _norm_cdf(-max(h, k))
    else:
        bvn = -bvn + max(0.0, _norm_cdf(-h) - _norm_cdf(-k))
    return min(max(bvn, 0.0), 1.0)


@_device
def _bvn_sorted(h, k):
    return (h, k) if h <= k else (k, h)


@_device
def _bvn_core3(r, h1, k1, h2, k2, h3, k3, q1, q2, q3):
    """:func:`kernelcomp._kernels.duals.bvn_core3` on the device (same operations)."""
    h1, k1 = _bvn_sorted(-h1, -k1)
    h2, k2 = _bvn_sorted(-h2, -k2)
    h3, k3 = _bvn_sorted(-h3, -k3)
    ar = abs(r)
    if ar < 0.925:
        rule = 0 if ar < 0.3 else (1 if ar < 0.75 else 2)
        hk1 = _mul(h1, k1)
        hk2 = _mul(h2, k2)
        hk3 = _mul(h3, k3)
        hs1 = _mul(0.5, _mul(h1, h1) + _mul(k1, k1))
        hs2 = _mul(0.5, _mul(h2, h2) + _mul(k2, k2))
        hs3 = _mul(0.5, _mul(h3, h3) + _mul(k3, k3))
        asr = _mul(0.5, _asin(r))
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for q in range(6 + 6 * rule + 2 * (rule // 2)):
            sn = _sin_small(_mul(asr, _GL_T[rule, q]))
            den = 1.0 / (1.0 - _mul(sn, sn))
            wq = _GL_W[rule, q]
            s1 += _mul(wq, math.exp(_mul(_mul(sn, hk1) - hs1, den)))
            s2 += _mul(wq, math.exp(_mul(_mul(sn, hk2) - hs2, den)))
            s3 += _mul(wq, math.exp(_mul(_mul(sn, hk3) - hs3, den)))
        f = asr / _TWO_PI
        p1 = _mul(s1, f) + q1
        p2 = _mul(s2, f) + q2
        p3 = _mul(s3, f) + q3
        return (min(max(p1, 0.0), 1.0), min(max(p2, 0.0), 1.0), min(max(p3, 0.0), 1.0))
    a2 = _mul(1.0 - r, 1.0 + r)
    a2 = a2 if a2 > 0.0 else 0.0
    a = math.sqrt(a2)
    if r < 0.0:
        k1 = -k1
        k2 = -k2
        k3 = -k3
    b1 = 0.0
    b2 = 0.0
    b3 = 0.0
    if a2 > 0.0:
        b1, hk1, bs1, c1, d1 = _bvnu_head(h1, k1, a, a2)
        b2, hk2, bs2, c2, d2 = _bvnu_head(h2, k2, a, a2)
        b3, hk3, bs3, c3, d3 = _bvnu_head(h3, k3, a, a2)
        ah = _mul(0.5, a)
        for q in range(20):
            xq = _mul(ah, _GL_T[2, q])
            x = _mul(xq, xq)
            rs = math.sqrt(1.0 - x)
            er = x / _mul(1.0 + rs, 1.0 + rs)
            rinv = 1.0 / rs
            wq = _mul(ah, _GL_W[2, q])
            b1 = b1 + _bvnu_node(x, er, rinv, wq, hk1, bs1, c1, d1)
            b2 = b2 + _bvnu_node(x, er, rinv, wq, hk2, bs2, c2, d2)
            b3 = b3 + _bvnu_node(x, er, rinv, wq, hk3, bs3, c3, d3)
        b1 = -b1 / _TWO_PI
        b2 = -b2 / _TWO_PI
        b3 = -b3 / _TWO_PI
    p1 = _bvnu_finish(h1, k1, r, b1)
    p2 = _bvnu_finish(h2, k2, r, b2)
    p3 = _bvnu_finish(h3, k3, r, b3)
    return p1, p2, p3


@_device
def _elu_step(s, ai, aj, bi, bj, snap):
    """:func:`kernelcomp._kernels.duals.elu_step` on the device (same operations)."""
    rho = _mul(s, _mul(bi, bj))
    rho = math.copysign(1.0, rho) if 1.0 - abs(rho) <= snap else rho
    r2 = _mul(1.0 - rho, 1.0 + rho)
    r2 = r2 if r2 > 0.0 else 0.0
    r = math.sqrt(r2)
    aa = _mul(ai, aj)
    c = _mul(rho, aa)
    pm = _PI - _acos(rho)
    p = _mul(pm, _INV_2PI)
    qi = _mul(ai, ai)
    qj = _mul(aj, aj)
    ni = _norm_cdf(-ai)
    nj = _norm_cdf(-aj)
    hi_ = -(ai + _mul(rho, aj))
    hj_ = -(aj + _mul(rho, ai))
    q1 = 0.0
    q2 = 0.0
    q3 = 0.0
    if abs(rho) < 0.925:
        q1 = _mul(ni, _norm_cdf(-_mul(rho, ai)))
        q2 = _mul(nj, _norm_cdf(-_mul(rho, aj)))
        q3 = _mul(_norm_cdf(hi_), _norm_cdf(hj_))
    a_i, a_j, cc = _bvn_core3(rho, -ai, -_mul(rho, ai), -aj, -_mul(rho, aj), hi_, hj_,
                              q1, q2, q3)
    ei = math.exp(_mul(0.5, qi))
    ej = math.exp(_mul(0.5, qj))
    gi = _mul(ei, ni - a_i)
    gj = _mul(ej, nj - a_j)
    hi = _mul(ei, a_i)
    hj = _mul(ej, a_j)
    fi = _mul(_mul(math.exp(_mul(0.5, _mul(qi, r2))), _norm_cdf(-_mul(ai, r))), _INV_SQRT_2PI)
    fj = _mul(_mul(math.exp(_mul(0.5, _mul(qj, r2))), _norm_cdf(-_mul(aj, r))), _INV_SQRT_2PI)
    e = _mul(math.exp(_mul(0.5, qi + qj) + c), cc)
    kd = (p + e) + (gi + gj)
    xij = ((_mul(c, gj) + _mul(ai, fj)) - _mul(ai, _INV_SQRT_8PI)) - hi
    xji = ((_mul(c, gi) + _mul(aj, fi)) - _mul(aj, _INV_SQRT_8PI)) - hj
    k = ((_mul(_mul(aa, r + _mul(pm, rho)), _INV_2PI) + p) + e) + (xij + xji)
    return k, kd


@_device
def closed_step(act, s, ai, aj, bi, bj, snap):
    """:func:`kernelcomp._kernels.duals.closed_step` on the device: ``(K, Kdot)`` of a code.

    One explicit step per code of :data:`CLOSED_CODES` (``relu_unit`` computed as
    the ReLU: its factor 2 is the caller's); NaN for any other code (callers
    refuse those on the host first).
    """
    if act == RELU or act == RELU_UNIT:
        return _relu_step(s, ai, aj, bi, bj, snap)
    if act == ERF:
        return _erf_step(s, ai, aj)
    if act == LEAKY_RELU:
        return _abrelu_step(s, ai, aj, bi, bj, snap, _LK_C1, _LK_C2, _LK_C3)
    if act == LINEAR:
        return s, 1.0
    if act == GELU:
        return _gelu_step(s, ai, aj, bi, bj)
    if act == ELU:
        return _elu_step(s, ai, aj, bi, bj, snap)
    return math.nan, math.nan


@_device
def _series_step(s, i, j, l, bi, bj, snap, deg, cx, cy, ex, ey, ntk):
    """:func:`kernelcomp._kernels.duals.series_step` (Horner) on the device."""
    rho = _mul(s, _mul(bi, bj))
    rho = math.copysign(1.0, rho) if 1.0 - abs(rho) <= snap else rho
    m = deg[l]
    k = _mul(cx[l, m, i], cy[l, m, j])
    for q in range(m - 1, -1, -1):
        k = _mul(k, rho) + _mul(cx[l, q, i], cy[l, q, j])
    kd = 0.0
    if ntk:
        kd = _mul(ex[l, m, i], ey[l, m, j])
        for q in range(m - 1, -1, -1):
            kd = _mul(kd, rho) + _mul(ex[l, q, i], ey[l, q, j])
    return k, kd


@_device
def _entry(acc, i, j, ax, bx, ay, by, par, n_layers, act, ntk, s0a, t0a, t0b, snap,
           series, deg, cx, ex, cy, ey):
    """Kernel value of rows ``i`` and ``j`` from their dot product ``acc``.

    ``par`` packs ``w2`` (L+1), ``b2`` (L+1), ``ta`` (L), ``tb`` (L). One
    explicit step per activation code (shared with
    :mod:`kernelcomp._kernels.activations`); with ``series``, the Hermite series
    of the coefficients ``cx``.. (a code without a step gives NaN, but the
    host refuses it first: :class:`Recursion`).
    """
    L = n_layers
    s = _mul(s0a, acc) + par[L + 1]
    t = _mul(t0a, acc) + t0b
    for l in range(L):
        if series:
            k, kd = _series_step(s, i, j, l, bx[l, i], by[l, j], snap, deg, cx, cy, ex, ey, ntk)
        else:  # relu_unit's factor 2 is in par
            k, kd = closed_step(act, s, ax[l, i], ay[l, j], bx[l, i], by[l, j], snap)
        w2n = par[l + 1]
        if ntk:
            t = (_mul(par[2 * L + 2 + l], k) + par[3 * L + 2 + l]) + _mul(_mul(w2n, kd), t)
        s = _mul(w2n, k) + par[L + 2 + l]
    return t if ntk else s


@cuda_jit
def _gram_kernel(
    X, Y, ax, bx, dgx, ay, by, par, n_layers, act, ntk, s0a, t0a, t0b, snap,
    series, deg, cx, ex, cy, ey, row0, col0, symmetric, out,
):
    """``out[r, c] = k(X[row0 + r], Y[col0 + c])``; ``symmetric``: ``Y is X``, row0 == col0."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    bxi = cuda.blockIdx.x
    byi = cuda.blockIdx.y
    if symmetric and byi > bxi:
        return  # the whole block: its mirror block writes it
    nr = out.shape[0]
    nc = out.shape[1]
    d = X.shape[1]
    r0 = byi * CUDA_TILE
    c0 = bxi * CUDA_TILE
    r = r0 + ty
    c = c0 + tx
    sx = cuda.shared.array((CUDA_TILE, _TILE_PAD), np.float64)
    sy = cuda.shared.array((CUDA_TILE, _TILE_PAD), np.float64)
    acc = 0.0
    for k0 in range(0, d, CUDA_TILE):
        kk = k0 + tx
        # thread (ty, tx) loads feature kk of row r0+ty of X and of row c0+ty of Y
        if r < nr and kk < d:
            sx[ty, tx] = X[row0 + r, kk]
        else:
            sx[ty, tx] = 0.0
        if c0 + ty < nc and kk < d:
            sy[ty, tx] = Y[col0 + c0 + ty, kk]
        else:
            sy[ty, tx] = 0.0
        cuda.syncthreads()
        for q in range(min(CUDA_TILE, d - k0)):
            acc += _mul(sx[ty, q], sy[tx, q])
        if k0 + CUDA_TILE < d:  # (uniform) the next loads overwrite the tiles
            cuda.syncthreads()
    inside = r < nr and c < nc
    upper = (not symmetric) or byi < bxi or ty <= tx
    res = 0.0
    if inside and upper:
        i = row0 + r
        j = col0 + c
        if symmetric and i == j:
            res = dgx[i]
        else:
            res = _entry(
                acc, i, j, ax, bx, ay, by, par, n_layers, act, ntk, s0a, t0a, t0b, snap,
                series, deg, cx, ex, cy, ey,
            )
        out[r, c] = res
    if symmetric:
        # mirror through shared memory: thread (ty, tx) writes entry (c0+ty, r0+tx),
        # the value thread (tx, ty) computed (rows of out stay coalesced)
        sres = cuda.shared.array((CUDA_TILE, _TILE_PAD), np.float64)
        sres[ty, tx] = res
        cuda.syncthreads()
        mr = c0 + ty
        mc = r0 + tx
        if mr < nr and mc < nc and (byi < bxi or tx < ty):
            out[mr, mc] = sres[tx, ty]


# -- host side --------------------------------------------------------------------


def require() -> Any:
    """The ``numba.cuda`` module, or :class:`CudaUnavailableError` with the reason."""
    if cuda is None:
        cuda_module()  # raises "numba-cuda is not installed"
    if not cuda.is_available():
        raise CudaUnavailableError(
            "device='cuda': no CUDA device is available (numba.cuda.is_available() is "
            "False: no GPU or no driver). Use device='cpu', or set NUMBA_ENABLE_CUDASIM=1 "
            "before numba is imported to run numba's (slow) CUDA simulator"
        )
    return cuda


def as_device_array(obj: Any) -> Any:
    """A numba device array viewing ``obj`` (no copy; syncs the producer's stream)."""
    if getattr(obj, "__cuda_ndarray__", False):
        return obj
    return cuda.as_cuda_array(obj)


def to_device(a: np.ndarray) -> Any:
    return cuda.to_device(np.ascontiguousarray(a))


def device_array(shape: tuple[int, ...], dtype: Any) -> Any:
    return cuda.device_array(shape, dtype=dtype)


def synchronize() -> None:
    cuda.synchronize()


def out_budget_bytes() -> int:
    """Device bytes one output buffer may take."""
    if MAX_OUT_BYTES is not None:
        return int(MAX_OUT_BYTES)
    free = float(cuda.current_context().get_memory_info()[0])
    return int(min(free / 4.0, 2.0**62))  # the simulator reports infinite memory


class DeviceSamples:
    """Per-sample state of ``n`` rows on the device.

    ``X`` (n, d) in the inputs' dtype; ``a``, ``b`` (max(L, 1), n) and ``dg``
    (n,) in float64, from the CPU ``prepare`` pass.
    """

    def __init__(
        self, X: Any, a: np.ndarray, b: np.ndarray, dg: np.ndarray,
        c: np.ndarray | None = None, e: np.ndarray | None = None,
    ) -> None:
        n = a.shape[1]
        if a.shape[0] == 0:  # depth 0: no per-layer state (keep the arrays non-empty)
            a = np.zeros((1, n))
            b = np.zeros((1, n))
        self.X = X
        self.a = to_device(a)
        self.b = to_device(b)
        self.dg = to_device(dg)
        # Hermite coefficients (L, M + 1, n) of the series route; a placeholder otherwise
        self.c = to_device(np.zeros((1, 1, 1)) if c is None else c)
        self.e = to_device(np.zeros((1, 1, 1)) if e is None else e)


class Recursion:
    """The recursion's parameters (``_layer_params``' output) on the device."""

    def __init__(self, params: dict[str, Any], snap: float) -> None:
        w2 = np.asarray(params["w2"], dtype=np.float64)
        self.n_layers = w2.shape[0] - 1
        par = np.concatenate([w2, params["b2"], params["ta"], params["tb"]]).astype(np.float64)
        self.par = to_device(par)
        self.act = int(params["act"])
        self.series = bool(params.get("series", False))
        if not self.series and self.act not in CLOSED_CODES:
            names = {v: k for k, v in CODES.items()}
            known = ", ".join(f"{c} ({names[c]})" for c in CLOSED_CODES)
            raise ValueError(
                f"the CUDA kernel has no closed-form step for activation code {self.act} "
                f"({names.get(self.act, 'not an activation')!r}); its closed forms are "
                f"{known}, and smooth activations run as Hermite series"
            )
        self.deg = to_device(np.asarray(params.get("deg", np.zeros(1)), dtype=np.int64))
        self.ntk = bool(params["ntk"])
        self.s0a = float(params["s0a"])
        self.t0a = float(params["t0a"])
        self.t0b = float(params["t0b"])
        self.snap = float(snap)


def fill(
    rec: Recursion,
    xs: DeviceSamples,
    ys: DeviceSamples,
    row0: int,
    col0: int,
    symmetric: bool,
    out: Any,
) -> None:
    """Launch the kernel: ``out[r, c] = k(xs.X[row0 + r], ys.X[col0 + c])``.

    ``out`` is a 2-D device array (float32 or float64, any strides). With
    ``symmetric``, ``xs is ys``, ``row0 == col0`` and ``out`` is square.
    Asynchronous on a GPU (the default stream).

    More than ``MAX_GRID`` blocks of rows are launched in pieces, as
    non-symmetric launches of row ranges (a symmetric matrix stays exactly
    symmetric: every operation of an entry is symmetric in its two samples, and
    identical rows give the per-sample diagonal).
    """
    nr = out.shape[0]
    step = MAX_GRID * CUDA_TILE
    if nr <= step:
        _launch(rec, xs, ys, row0, col0, symmetric, out)
        return
    for a in range(0, nr, step):
        _launch(rec, xs, ys, row0 + a, col0, False, out[a : a + step])


def _launch(rec: Recursion, xs: DeviceSamples, ys: DeviceSamples, row0: int, col0: int,
            symmetric: bool, out: Any) -> None:
    nr, nc = out.shape
    grid = ((nc + CUDA_TILE - 1) // CUDA_TILE, (nr + CUDA_TILE - 1) // CUDA_TILE)
    _gram_kernel[grid, (CUDA_TILE, CUDA_TILE)](
        xs.X,
        ys.X,
        xs.a,
        xs.b,
        xs.dg,
        ys.a,
        ys.b,
        rec.par,
        rec.n_layers,
        rec.act,
        rec.ntk,
        rec.s0a,
        rec.t0a,
        rec.t0b,
        rec.snap,
        rec.series,
        rec.deg,
        xs.c,
        xs.e,
        ys.c,
        ys.e,
        int(row0),
        int(col0),
        bool(symmetric),
        out,
    )
