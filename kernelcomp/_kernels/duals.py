"""Dual activations: ``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]`` per entry, compiled.

For a pair of pre-activations ``(u, v) ~ N(0, [[S11, S12], [S12, S22]])`` one
layer of the NNGP/NTK recursion needs ``K = E[phi(u) phi(v)]`` and
``Kdot = E[phi'(u) phi'(v)]`` (``Kdot = dK/dS12``, Price's theorem). Activations
are chosen by their code in :mod:`kernelcomp._kernels.activations` (one code
space for the finite networks, the analytic CPU core and the CUDA kernel).

Two routes, both exact to rounding or to a stated bound:

**Closed forms** (:func:`closed_step`), from two per-sample numbers ``a``,
``b`` per layer (:func:`closed_state`) so that an entry costs a few flops:

* ``relu``/``relu_unit``: the arc-cosine kernel (Cho & Saul 2009), ``a = sqrt(S)``,
  ``b = 1/sqrt(S)`` (0 for ``S = 0``); ``relu_unit``'s factor 2 is folded into
  the recursion's weights by the caller;
* ``leaky_relu`` and the whole family ``phi = sa max(z, 0) + sb min(z, 0)``
  (:func:`abrelu_step`; neural-tangents' ``ABRelu``): with ``rho = cos(theta)``
  and ``g = (sa^2 + sb^2)(pi - theta) + 2 sa sb theta``,
  ``K = sqrt(S11 S22) [(sa - sb)^2 sin(theta) + g rho] / (2 pi)`` and
  ``Kdot = g / (2 pi)``;
* ``linear``: ``K = S12``, ``Kdot = 1``;
* ``erf``: the arcsine kernel (Williams 1997), ``a = b = 1/sqrt(1 + 2 S)``;
* ``gelu`` (``phi = z Phi(z)``, :func:`gelu_step`; Tsuchida et al. 2021, the
  form of neural-tangents' ``stax.Gelu``), ``a = S``, ``b = 1 + S``: with
  ``P = (1 + S11)(1 + S22)``, ``D = sqrt(P - S12^2)`` (``>= sqrt(1 + S11 + S22)``:
  no singularity at ``rho = +-1``) and ``A = asin(S12/sqrt(P))``,
  ``K = S12/4 + [S12 A + (S12^2 + S11 S22 D^2)/(P D)] / (2 pi)`` and
  ``Kdot = 1/4 + [A + S12/D (1 + (1 - S11 S22)/P + 1/D^2)] / (2 pi)``;
* ``elu`` (``z`` for ``z > 0``, ``e^z - 1`` else; :func:`elu_step`),
  ``a = sqrt(S)``, ``b = 1/sqrt(S)``: by exponential tilting
  (``E[e^u 1_A(u, v)] = e^{S11/2} P((u + S11, v + S12) in A)``) every term is a
  bivariate normal cdf ``Phi_2`` at the pair's correlation, three per entry
  (:func:`bvn_cdf3`, Genz's method, ~1e-15; formulas in :func:`elu_step`).

**Hermite (Mehler) series** for smooth activations without a closed form
(``tanh``, ``silu``, ``softplus``, ``sigmoid``; any smooth code works): with
the orthonormal Hermite polynomials ``h_k`` of ``N(0, 1)`` and a sample's
coefficients ``c_k(S) = E[phi(sqrt(S) z) h_k(z)]``, ``d_k(S) = E[phi'(sqrt(S) z) h_k(z)]``,

.. code-block:: text

    K = sum_k c_k(S11) c_k(S22) rho^k,    Kdot = sum_k d_k(S11) d_k(S22) rho^k

(Mehler's formula), evaluated per entry by Horner's rule (:func:`series_step`)
from per-sample coefficient vectors computed once in the O(n) pass
(:func:`series_coefficients`, a high-order Gauss-Hermite rule). Truncated after
degree ``m``, the error is at most ``sqrt(T_i T_j)`` for every
``rho in [-1, 1]`` (Cauchy-Schwarz), ``T_i = sum_{k > m} c_k(S_ii)^2`` the
tail energy of sample ``i``; the degree is chosen per layer so that every
sample's tail is below ``tol`` times its own ``E[phi^2] = sum_k c_k^2`` (and
the same for ``phi'``), so the error is at most ``tol sqrt(E_i E_j)``, at most
``tol`` times the largest diagonal value. The tails are measured from the
coefficients up to twice the degree (beyond, they decay like
``exp(-c sqrt(k))``: what is left is orders of magnitude smaller; the tests
check the result against an independent 2-D integral).

The per-entry functions are plain ``@jit`` scalar functions that other compiled
kernels may call: :func:`closed_step`, :func:`closed_dual` (from the raw
``S11, S22, S12``), :func:`series_step`, :func:`series_dual` and the bivariate
normal cdf :func:`bvn_cdf` / :func:`bvn_cdf3`.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from kernelcomp._kernels._config import jit
from kernelcomp._kernels.activations import (
    ELU,
    ERF,
    GELU,
    LEAKY_RELU,
    LEAKY_SLOPE,
    LINEAR,
    RELU,
    RELU_UNIT,
    SIGMOID,
    SILU,
    SOFTPLUS,
    TANH,
    dphi,
    phi,
)

#: codes with a closed form (their per-entry step is :func:`closed_step`)
CLOSED_CODES = (RELU, RELU_UNIT, ERF, LEAKY_RELU, LINEAR, GELU, ELU)
#: codes computed by the Hermite series when no closed form exists (smooth)
SERIES_CODES = (TANH, SILU, SOFTPLUS, SIGMOID, ERF, GELU)

_PI = math.pi
_HALF_PI = 0.5 * math.pi
_INV_2PI = 1.0 / (2.0 * math.pi)
_2_OVER_PI = 2.0 / math.pi
_4_OVER_PI = 4.0 / math.pi
_TINY = 1e-300

# leaky_relu = sa max(z, 0) + sb min(z, 0) with sa = 1, sb = LEAKY_SLOPE
_LK_C1 = (1.0 - LEAKY_SLOPE) ** 2  # (sa - sb)^2
_LK_C2 = 1.0 + LEAKY_SLOPE * LEAKY_SLOPE  # sa^2 + sb^2
_LK_C3 = 2.0 * LEAKY_SLOPE  # 2 sa sb

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
def snap_rho(s: float, bi: float, bj: float, snap: float) -> float:
    """``rho = s bi bj``, set to +-1 within ``snap`` of it (and clipped to [-1, 1])."""
    rho = s * (bi * bj)
    return math.copysign(1.0, rho) if 1.0 - abs(rho) <= snap else rho


# -- closed forms -------------------------------------------------------------------


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


# -- the float32 ReLU step of the convolutional kernels' float32 recursion --------------

# fdlibm's float asin (e_asinf.c): asin(x)/x - 1 on |x| <= 0.5, rational in x^2
_F32_PS0 = 1.6666586697e-01
_F32_PS1 = -4.2743422091e-02
_F32_PS2 = -8.6563630030e-03
_F32_QS1 = -7.0662963390e-01


def typed(like, v):
    """``v`` as a constant of the float type of ``like`` (a float or a float array).

    For compiled code that runs in float32 or float64 as its arguments are: a
    Python float constant is a float64, and ``float32 op float64`` is a float64
    op (the loop then vectorises at float64 width). Outside compiled code it
    returns ``v``.
    """
    return v


@overload(typed)
def _typed(like, v):
    dt = like.dtype if isinstance(like, types.Array) else like
    if dt == types.float32:
        return lambda like, v: np.float32(v)
    return lambda like, v: np.float64(v)


@intrinsic
def fma(typingctx, a, b, c):
    """``a b + c`` rounded once (LLVM's ``llvm.fma``: one instruction where the CPU has FMA)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fnty = llvm_ir.FunctionType(ty, [ty, ty, ty])
        name = "llvm.fma.f32" if isinstance(ty, llvm_ir.FloatType) else "llvm.fma.f64"
        return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), args)

    return a(a, b, c), codegen


@jit
def split32(b: float) -> tuple[float, float]:
    """``(hi, lo)``: float32 numbers with ``hi = fl32(b)``, ``hi + lo = b`` to ~2^-48 relative."""
    hi = np.float32(b)
    return hi, np.float32(b - np.float64(hi))


@jit
def relu_step32(s, ai, aj, bih, bjh, bil, bjl, snap):
    """float32 ReLU expectations ``(K, Kdot)``: :func:`relu_step` in float32 arithmetic.

    All arguments float32 (it compiles for float64 too, in float64): the
    covariance ``s``, the factors ``ai = sqrt(S_ii)`` and ``bi = 1/sqrt(S_ii)``
    as a double-length pair ``bih + bil``
    (:func:`split32` of the float64 factor). The arc-cosine's argument is
    ``|rho| = |s| bi bj``, and near ``|rho| = 1``, where ``theta = acos|rho|
    ~ sqrt(2 d)`` amplifies an error ``delta`` of ``d = 1 - |rho|`` to
    ``delta / theta``, ``d`` is computed with the factors' product to
    ~2^-48 (``bih bjh`` split exactly by :func:`fma`) and ``1 - |s| p`` rounded
    once (:func:`fma`): its only error is then ``s``'s own (float32 rounding of
    the recursion, a few units in ``2^-24`` relative), not the spacing of float32
    numbers near 1 (``6e-8``) nor the factors' rounding. ``d <= snap`` snaps
    ``|rho|`` to 1, as :func:`relu_step` does (identical images give ``d`` of
    ~1e-14 here). The arc-cosine is fdlibm's float ``asin`` polynomial
    (branch-free, vectorises at 8 float32 lanes).
    """
    one = typed(s, 1.0)
    zero = typed(s, 0.0)
    half = typed(s, 0.5)
    p = bih * bjh
    pl = fma(bih, bjh, -p) + (bih * bjl + bil * bjh)
    a_s = abs(s)
    ax = a_s * p + a_s * pl
    d = fma(-a_s, p, one) - a_s * pl
    snapped = d <= snap
    d = zero if snapped else d
    ax = one if snapped else ax
    c = d * (typed(s, 2.0) - d)
    sin_t = math.sqrt(c if c > zero else zero)
    big = ax > half
    z = half * d if big else ax * ax
    sq = math.sqrt(z)
    w = sq if big else ax
    num = z * (typed(s, _F32_PS0) + z * (typed(s, _F32_PS1) + z * typed(s, _F32_PS2)))
    q = num / (one + z * typed(s, _F32_QS1))
    r = w + w * q
    t = typed(s, 2.0) * r if big else typed(s, _HALF_PI) - r  # acos |rho|
    pos = s >= zero
    pm = typed(s, _PI) - t if pos else t  # pi - acos(rho)
    rho = ax if pos else -ax
    k = (ai * aj) * (sin_t + pm * rho) * typed(s, _INV_2PI)
    kd = pm * typed(s, _INV_2PI)
    return k, kd


@jit
def abrelu_step(
    s: float, ai: float, aj: float, bi: float, bj: float, snap: float,
    c1: float, c2: float, c3: float,
):
    """``(K, Kdot)`` of ``phi = sa max(z, 0) + sb min(z, 0)``.

    ``c1 = (sa - sb)^2``, ``c2 = sa^2 + sb^2``, ``c3 = 2 sa sb``; ``ai``, ``bi``
    and the snapping as in :func:`relu_step`.
    """
    rho = s * (bi * bj)
    rho = math.copysign(1.0, rho) if 1.0 - abs(rho) <= snap else rho
    c = (1.0 - rho) * (1.0 + rho)
    sin_t = math.sqrt(c if c > 0.0 else 0.0)
    t = acos(rho)
    g = c2 * (_PI - t) + c3 * t
    k = (ai * aj) * (c1 * sin_t + g * rho) * _INV_2PI
    kd = g * _INV_2PI
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
def gelu_step(s: float, ai: float, aj: float, bi: float, bj: float):
    """GELU (``z Phi(z)``) expectations ``(K, Kdot)``; ``ai = S_ii``, ``bi = 1 + S_ii``.

    ``D^2 = P - s^2 >= 1`` for any valid covariance, so nothing is singular at
    ``rho = +-1`` and no snapping is needed; a rounding excess of ``|s|`` over
    ``sqrt(S11 S22)`` is harmless.
    """
    pq = ai * aj
    p = bi * bj
    d2 = p - s * s
    d2 = d2 if d2 > 1.0 else 1.0  # >= 1 + S11 + S22 in exact arithmetic
    dl = math.sqrt(d2)
    x = s / math.sqrt(p)
    x = math.copysign(1.0, x) if abs(x) > 1.0 else x
    ang = asin(x)
    k = 0.25 * s + _INV_2PI * (s * ang + (s * s + pq * d2) / (p * dl))
    kd = 0.25 + _INV_2PI * (ang + (s / dl) * ((1.0 + (1.0 - pq) / p) + 1.0 / d2))
    return k, kd


# -- ELU: the bivariate normal cdf (Genz's method) ---------------------------------------


def _gauss_legendre_on_0_2(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre rule of ``n`` nodes on [0, 2] (Genz's ``1 -+ x``), padded to 20."""
    x, w = np.polynomial.legendre.leggauss(n)
    t = np.zeros(20)
    v = np.zeros(20)
    t[:n] = 1.0 + x
    v[:n] = w
    return t, v


#: Genz's three rules: 6 nodes for |rho| < 0.3, 12 below 0.75, 20 from there on
_GL_T = np.stack([_gauss_legendre_on_0_2(n)[0] for n in (6, 12, 20)])
_GL_W = np.stack([_gauss_legendre_on_0_2(n)[1] for n in (6, 12, 20)])
_TWO_PI = 2.0 * math.pi
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_8PI = 1.0 / math.sqrt(8.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
# Taylor coefficients of sin(t)/t in t^2: (-1)^m / (2m + 1)!
_S1 = -0.16666666666666666
_S2 = 0.008333333333333333
_S3 = -0.0001984126984126984
_S4 = 2.7557319223985893e-06
_S5 = -2.505210838544172e-08
_S6 = 1.6059043836821613e-10
_S7 = -7.647163731819816e-13
_S8 = 2.8114572543455206e-15
_S9 = -8.22063524662433e-18


@jit
def norm_cdf(x: float) -> float:
    """The N(0, 1) cdf, ``erfc(-x / sqrt(2)) / 2`` (relative accuracy in the lower tail)."""
    return 0.5 * math.erfc(-x * _INV_SQRT2)


@jit
def _bvn_sorted(h: float, k: float) -> tuple[float, float]:
    """``(min, max)`` of a pair: the evaluation order of Phi_2's arguments is fixed."""
    return (h, k) if h <= k else (k, h)


@jit
def _sin_small(t: float) -> float:
    """``sin(t)`` for ``|t| <= 1.2`` by its Taylor polynomial to degree 19 (~1 ulp).

    The node angles of :func:`bvn_cdf3` stay below 1.19 (truncation below
    1e-18); a polynomial is the same bits on every target (no libm).
    """
    z = t * t
    p = _S9
    p = p * z + _S8
    p = p * z + _S7
    p = p * z + _S6
    p = p * z + _S5
    p = p * z + _S4
    p = p * z + _S3
    p = p * z + _S2
    p = p * z + _S1
    p = p * z + 1.0
    return t * p


@jit
def _bvnu_head(h: float, k: float, a: float, a2: float):
    """Genz's ``|r| >= 0.925`` branch of ``P(X > h, Y > k)``: the closed-form part.

    ``a = sqrt(1 - r^2) > 0``, ``a2 = 1 - r^2``, ``k`` already negated for
    ``r < 0``. The branch integrates, over ``x = sqrt(1 - r'^2)`` from 0 to
    ``a``, the correction to the ``|r| = 1`` limit: the first terms of its
    expansion in closed form (here) and the remainder by the 20-node
    Gauss-Legendre rule (:func:`_bvnu_node`). Returns that closed-form part
    and ``hk``, ``bs``, ``c``, ``d`` for the nodes.
    """
    hk = h * k
    bs = (h - k) * (h - k)
    c = (4.0 - hk) / 8.0
    d = (12.0 - hk) / 16.0
    e0 = -0.5 * (bs / a2 + hk)
    bvn = 0.0
    if e0 > -100.0:
        bvn = a * math.exp(e0) * (
            1.0 - c * (bs - a2) * (1.0 - d * bs / 5.0) / 3.0 + c * d * a2 * a2 / 5.0
        )
    if hk > -100.0:
        b = math.sqrt(bs)
        bvn = bvn - math.exp(-0.5 * hk) * (_SQRT_2PI * norm_cdf(-b / a)) * b * (
            1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0
        )
    return bvn, hk, bs, c, d


@jit
def _bvnu_node(x: float, er: float, rinv: float, wq: float, hk: float, bs: float, c: float,
               d: float) -> float:
    """One node's term of Genz's asymptotic branch (0 below ``e^-100``).

    ``x`` the squared node, ``er = x / (1 + sqrt(1 - x))^2``, ``rinv = 1/sqrt(1 - x)``,
    ``wq`` the weight times half the interval.
    """
    e = -0.5 * (bs / x + hk)
    if e > -100.0:
        sp = 1.0 + c * x * (1.0 + d * x)
        ep = math.exp(-0.5 * hk * er) * rinv
        return wq * math.exp(e) * (ep - sp)
    return 0.0


@jit
def _bvnu_finish(h: float, k: float, r: float, bvn: float) -> float:
    """Genz's last step of the ``|r| >= 0.925`` branch (``k`` negated for ``r < 0``)."""
    if r > 0.0:
        bvn = bvn + norm_cdf(-max(h, k))
    else:
        bvn = -bvn + max(0.0, norm_cdf(-h) - norm_cdf(-k))
    return min(max(bvn, 0.0), 1.0)


@jit
def bvn_core3(r: float, h1: float, k1: float, h2: float, k2: float, h3: float, k3: float,
              q1: float, q2: float, q3: float, same12: bool):
    """:func:`bvn_cdf3` given ``q = Phi(h) Phi(k)`` of each pair (read for ``|r| < 0.925``).

    ``same12``: the first two pairs (and ``q``) are the same numbers, whose
    result is then computed once (the same bits as twice).
    """
    # upper probabilities P(X > -h, Y > -k), each pair sorted
    h1, k1 = _bvn_sorted(-h1, -k1)
    h2, k2 = _bvn_sorted(-h2, -k2)
    h3, k3 = _bvn_sorted(-h3, -k3)
    ar = abs(r)
    if ar < 0.925:
        rule = 0 if ar < 0.3 else (1 if ar < 0.75 else 2)
        nodes = _GL_T[rule]
        weights = _GL_W[rule]
        hk1 = h1 * k1
        hk2 = h2 * k2
        hk3 = h3 * k3
        hs1 = 0.5 * (h1 * h1 + k1 * k1)
        hs2 = 0.5 * (h2 * h2 + k2 * k2)
        hs3 = 0.5 * (h3 * h3 + k3 * k3)
        asr = 0.5 * asin(r)
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for q in range(6 + 6 * rule + 2 * (rule // 2)):  # 6, 12, 20 nodes
            sn = _sin_small(asr * nodes[q])
            den = 1.0 / (1.0 - sn * sn)
            wq = weights[q]
            s1 += wq * math.exp((sn * hk1 - hs1) * den)
            if not same12:
                s2 += wq * math.exp((sn * hk2 - hs2) * den)
            s3 += wq * math.exp((sn * hk3 - hs3) * den)
        f = asr / _TWO_PI
        p1 = s1 * f + q1
        p2 = p1 if same12 else s2 * f + q2
        p3 = s3 * f + q3
        return (min(max(p1, 0.0), 1.0), min(max(p2, 0.0), 1.0), min(max(p3, 0.0), 1.0))
    a2 = (1.0 - r) * (1.0 + r)
    a2 = a2 if a2 > 0.0 else 0.0
    a = math.sqrt(a2)
    if r < 0.0:
        k1 = -k1
        k2 = -k2
        k3 = -k3
    b1 = b2 = b3 = 0.0
    if a2 > 0.0:  # |r| = 1: the limit alone
        b1, hk1, bs1, c1, d1 = _bvnu_head(h1, k1, a, a2)
        b2, hk2, bs2, c2, d2 = _bvnu_head(h2, k2, a, a2)
        b3, hk3, bs3, c3, d3 = _bvnu_head(h3, k3, a, a2)
        ah = 0.5 * a
        for q in range(20):  # the node terms that depend on r only, shared
            xq = ah * _GL_T[2, q]
            x = xq * xq
            rs = math.sqrt(1.0 - x)
            er = x / ((1.0 + rs) * (1.0 + rs))
            rinv = 1.0 / rs
            wq = ah * _GL_W[2, q]
            b1 = b1 + _bvnu_node(x, er, rinv, wq, hk1, bs1, c1, d1)
            if not same12:
                b2 = b2 + _bvnu_node(x, er, rinv, wq, hk2, bs2, c2, d2)
            b3 = b3 + _bvnu_node(x, er, rinv, wq, hk3, bs3, c3, d3)
        b1 = -b1 / _TWO_PI
        b2 = -b2 / _TWO_PI
        b3 = -b3 / _TWO_PI
    p1 = _bvnu_finish(h1, k1, r, b1)
    p2 = p1 if same12 else _bvnu_finish(h2, k2, r, b2)
    p3 = _bvnu_finish(h3, k3, r, b3)
    return p1, p2, p3


@jit
def bvn_cdf3(r: float, h1: float, k1: float, h2: float, k2: float, h3: float, k3: float):
    """Three bivariate normal cdfs ``Phi_2(h, k; r) = P(X < h, Y < k)`` at one correlation.

    Genz's method (Genz 2004, *Statistics and Computing* 14, 251-260; the
    Drezner-Wesolowsky integral over ``asin``): Gauss-Legendre rules of 6, 12
    and 20 nodes for ``|r| < 0.3``, ``< 0.75`` and ``< 0.925``, Genz's asymptotic
    form with 20 nodes beyond, exact at ``r = +-1``. About 1e-15 absolute.
    The node terms that depend on ``r`` only are shared by the three pairs;
    each pair is sorted first, so ``Phi_2(h, k; r)`` and ``Phi_2(k, h; r)`` are
    the same bits.
    """
    q1 = norm_cdf(h1) * norm_cdf(k1)
    q2 = norm_cdf(h2) * norm_cdf(k2)
    q3 = norm_cdf(h3) * norm_cdf(k3)
    return bvn_core3(r, h1, k1, h2, k2, h3, k3, q1, q2, q3, False)


@jit
def bvn_cdf(h: float, k: float, r: float) -> float:
    """``Phi_2(h, k; r) = P(X < h, Y < k)`` for standard normals of correlation ``r``.

    The route of :func:`bvn_cdf3` (one pair); ``r`` in [-1, 1].
    """
    return bvn_cdf3(r, h, k, h, k, h, k)[0]


@jit
def elu_step(s: float, ai: float, aj: float, bi: float, bj: float, snap: float):
    """ELU (``z`` for ``z > 0``, ``e^z - 1`` else) expectations ``(K, Kdot)``.

    ``ai = sqrt(S_ii)``, ``bi = 1/sqrt(S_ii)`` (0 for 0) and the snapping of
    ``rho`` as in :func:`relu_step`. With ``sigma_i = ai``, ``c = rho ai aj``,
    ``r = sqrt(1 - rho^2)``, ``P = (pi - acos(rho)) / (2 pi)`` and, by
    exponential tilting, ``A_i = Phi_2(-sigma_i, -rho sigma_i; rho)``,
    ``C = Phi_2(-(sigma_i + rho sigma_j), -(sigma_j + rho sigma_i); rho)``,
    ``G_i = e^{S_ii/2} (Phi(-sigma_i) - A_i)`` (``= E[e^{u_i}; u_i < 0 < u_j]``),
    ``H_i = e^{S_ii/2} A_i`` (``= E[e^{u_i}; u_i, u_j < 0]``),
    ``F_i = e^{S_ii r^2/2} Phi(-sigma_i r) / sqrt(2 pi)`` and
    ``E = e^{(S_ii + S_jj)/2 + c} C`` (``= E[e^{u_i + u_j}; u_i, u_j < 0]``):

    .. code-block:: text

        Kdot = P + E + G_i + G_j
        K    = ai aj (r + (pi - acos(rho)) rho) / (2 pi) + P + E + X_ij + X_ji
        X_ij = c G_j + sigma_i F_j - sigma_i / sqrt(8 pi) - H_i

    (Tsuchida et al. 2021 derive the equal-variance case.) The two
    per-sample halves are summed last, so ``k(x, y)`` and ``k(y, x)`` are
    the same bits; the three ``Phi_2`` share one correlation
    (:func:`bvn_cdf3`). The factors ``e^{S}`` overflow for variances beyond ~350.
    """
    ni = norm_cdf(-ai)
    nj = norm_cdf(-aj)
    return elu_step_pre(s, ai, aj, bi, bj, snap, ni, nj, math.exp(0.5 * (ai * ai)),
                        math.exp(0.5 * (aj * aj)))


@jit
def elu_sample(a: float) -> tuple[float, float]:
    """The per-sample terms ``(Phi(-sigma), e^{S/2})`` of :func:`elu_step_pre` (``a = sigma``)."""
    return norm_cdf(-a), math.exp(0.5 * (a * a))


@jit
def elu_step_pre(s: float, ai: float, aj: float, bi: float, bj: float, snap: float,
                 ni: float, nj: float, ei: float, ej: float):
    """:func:`elu_step` given each sample's ``Phi(-sigma)`` and ``e^{S/2}`` (:func:`elu_sample`).

    The tile pass computes those once per sample and layer; any caller gets
    the same bits as :func:`elu_step`.
    """
    rho = s * (bi * bj)
    rho = math.copysign(1.0, rho) if 1.0 - abs(rho) <= snap else rho
    r2 = (1.0 - rho) * (1.0 + rho)
    r2 = r2 if r2 > 0.0 else 0.0
    r = math.sqrt(r2)
    aa = ai * aj
    c = rho * aa
    pm = _PI - acos(rho)
    p = pm * _INV_2PI
    qi = ai * ai
    qj = aj * aj
    # equal variances (e.g. normalised inputs): the terms of j are those of i,
    # computed once (the same bits as twice)
    same = ai == aj
    hi_ = -(ai + rho * aj)
    hj_ = -(aj + rho * ai)
    q1 = q2 = q3 = 0.0
    if abs(rho) < 0.925:  # the products bvn_core3 reads on this branch
        q1 = ni * norm_cdf(-(rho * ai))
        q2 = q1 if same else nj * norm_cdf(-(rho * aj))
        ci = norm_cdf(hi_)
        q3 = ci * (ci if same else norm_cdf(hj_))
    a_i, a_j, cc = bvn_core3(rho, -ai, -(rho * ai), -aj, -(rho * aj), hi_, hj_, q1, q2, q3,
                             same)
    gi = ei * (ni - a_i)
    gj = ej * (nj - a_j)
    hi = ei * a_i
    hj = ej * a_j
    fi = math.exp(0.5 * (qi * r2)) * norm_cdf(-(ai * r)) * _INV_SQRT_2PI
    fj = fi if same else math.exp(0.5 * (qj * r2)) * norm_cdf(-(aj * r)) * _INV_SQRT_2PI
    e = math.exp(0.5 * (qi + qj) + c) * cc
    kd = (p + e) + (gi + gj)
    xij = ((c * gj + ai * fj) - ai * _INV_SQRT_8PI) - hi
    xji = ((c * gi + aj * fi) - aj * _INV_SQRT_8PI) - hj
    k = ((aa * (r + pm * rho) * _INV_2PI + p) + e) + (xij + xji)
    return k, kd


@jit
def closed_state(act: int, s: float) -> tuple[float, float]:
    """Per-sample numbers ``(a, b)`` of a variance ``s`` that :func:`closed_step` takes."""
    s = max(s, 0.0)
    if act == ERF:
        a = 1.0 / math.sqrt(1.0 + 2.0 * s)
        return a, a
    if act == GELU:
        return s, 1.0 + s
    a = math.sqrt(s)
    return a, (1.0 / a if a > 0.0 else 0.0)


@jit
def closed_step(act: int, s: float, ai: float, aj: float, bi: float, bj: float, snap: float):
    """``(K, Kdot)`` of a closed-form activation ``act`` for covariance ``s``.

    ``ai``, ``bi`` from :func:`closed_state`. ``relu_unit`` is computed as the
    ReLU (its factor 2 is folded into the recursion's weights by the caller);
    an activation without a closed form gives NaN.
    """
    if act == RELU or act == RELU_UNIT:
        return relu_step(s, ai, aj, bi, bj, snap)
    if act == ERF:
        return erf_step(s, ai, aj)
    if act == LEAKY_RELU:
        return abrelu_step(s, ai, aj, bi, bj, snap, _LK_C1, _LK_C2, _LK_C3)
    if act == LINEAR:
        return s, 1.0
    if act == GELU:
        return gelu_step(s, ai, aj, bi, bj)
    if act == ELU:
        return elu_step(s, ai, aj, bi, bj, snap)
    return math.nan, math.nan


@jit
def closed_dual(act: int, s11: float, s22: float, s12: float, snap: float):
    """``(E[phi(u) phi(v)], E[phi'(u) phi'(v)])`` of a closed-form ``act`` from the covariance.

    For callers without per-sample state (e.g. another compiled kernel);
    ``relu_unit`` includes its factor 2 here. NaN for codes without a closed form.
    """
    ai, bi = closed_state(act, s11)
    aj, bj = closed_state(act, s22)
    k, kd = closed_step(act, s12, ai, aj, bi, bj, snap)
    if act == RELU_UNIT:
        return 2.0 * k, 2.0 * kd
    return k, kd


# -- Hermite series -------------------------------------------------------------------


@jit
def series_step(rho: float, ci: np.ndarray, cj: np.ndarray, di: np.ndarray, dj: np.ndarray,
                deg: int):
    """``(K, Kdot)`` from two samples' Hermite coefficients at correlation ``rho``.

    Horner's rule from degree ``deg`` down; each term's coefficient is
    ``ci[k] * cj[k]`` (symmetric in the pair, bit for bit). ``rho`` as from
    :func:`snap_rho`.
    """
    k = ci[deg] * cj[deg]
    kd = di[deg] * dj[deg]
    for m in range(deg - 1, -1, -1):
        k = k * rho + ci[m] * cj[m]
        kd = kd * rho + di[m] * dj[m]
    return k, kd


@jit
def series_dual(s11: float, s22: float, s12: float, ci: np.ndarray, cj: np.ndarray,
                di: np.ndarray, dj: np.ndarray, deg: int, snap: float):
    """:func:`series_step` from the covariance (``ci``.. of ``s11`` and ``s22``)."""
    bi = 1.0 / math.sqrt(s11) if s11 > 0.0 else 0.0
    bj = 1.0 / math.sqrt(s22) if s22 > 0.0 else 0.0
    return series_step(snap_rho(s12, bi, bj, snap), ci, cj, di, dj, deg)


@jit(parallel=True)
def _activation_table(z: np.ndarray, act: int, f: np.ndarray, df: np.ndarray) -> None:
    """``f[i, n] = phi(z[i, n])``, ``df[i, n] = phi'(z[i, n])``."""
    for i in numba.prange(z.shape[0]):
        for m in range(z.shape[1]):
            f[i, m] = phi(z[i, m], act)
            df[i, m] = dphi(z[i, m], act)


@jit(parallel=True)
def _project(f: np.ndarray, df: np.ndarray, psi: np.ndarray, c: np.ndarray, d: np.ndarray) -> None:
    """``c[i, k] = sum_n f[i, n] psi[0, n] psi[k, n]`` (and ``d`` of ``df``), summed in order.

    A fixed sequential sum per coefficient (not BLAS, whose order depends on the
    shapes), so a sample's coefficients are the same bits in any set of samples.
    """
    for i in numba.prange(f.shape[0]):
        for k in range(psi.shape[0]):
            a = 0.0
            b = 0.0
            for m in range(psi.shape[1]):
                w = psi[0, m] * psi[k, m]
                a += f[i, m] * w
                b += df[i, m] * w
            c[i, k] = a
            d[i, k] = b


@functools.lru_cache(maxsize=8)
def _hermite_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite rule of ``N(0, 1)`` and the Hermite functions at its nodes.

    Returns ``x`` (nodes,) and ``psi`` (nodes // 2 + 1, nodes) with
    ``psi[k, n] = h_k(x_n) sqrt(w_n)``, by the stable three-term recurrence.
    """
    from scipy.special import roots_hermitenorm

    x, w = roots_hermitenorm(nodes)
    w = w / w.sum()
    kmax = nodes // 2
    psi = np.empty((kmax + 1, nodes))
    psi[0] = np.sqrt(w)
    psi[1] = x * psi[0]
    for k in range(1, kmax):
        psi[k + 1] = (x * psi[k] - math.sqrt(k) * psi[k - 1]) / math.sqrt(k + 1)
    return x, psi


#: largest series degree (beyond it the coefficients of a very steep layer are
#: truncated with the bound reported by :func:`series_coefficients`)
MAX_DEGREE = 2048


def rule_nodes(m: int) -> int:
    """Gauss-Hermite nodes used for coefficients up to degree ``m``: a power of two >= 4 m."""
    return max(128, 1 << math.ceil(math.log2(max(4 * m, 1))))


def _coefficients(act: int, root: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(u, nodes // 2 + 1)`` of ``phi(root_u z)`` and ``phi'(root_u z)``."""
    x, psi = _hermite_rule(nodes)
    z = np.ascontiguousarray(root[:, None] * x[None, :])
    f = np.empty_like(z)
    df = np.empty_like(z)
    _activation_table(z, act, f, df)
    c = np.empty((z.shape[0], psi.shape[0]))
    d = np.empty_like(c)
    _project(f, df, psi, c, d)
    return c, d


def series_degree(act: int, s: np.ndarray, tol: float) -> tuple[int, float]:
    """The Hermite-series degree of a layer with variances ``s``.

    The smallest ``m`` such that every sample's tail energy beyond ``m`` is at
    most ``tol`` times its own ``E[phi^2]`` (and likewise for ``phi'``), the
    tails measured from the coefficients of a Gauss-Hermite rule of at least
    ``4 m`` nodes (128 first, doubled until the degree is found; at most
    :data:`MAX_DEGREE`, where the returned bound may exceed ``tol``).

    Parameters
    ----------
    act : int
        Activation code.
    s : numpy.ndarray of shape (n,)
        Pre-activation variances (negative values are taken as 0).
    tol : float
        Relative tail energy.

    Returns
    -------
    m : int
        The degree (at least 1).
    bound : float
        The largest tail energy beyond ``m`` relative to its sample's energy.
    """
    uq = np.unique(np.maximum(np.asarray(s, dtype=np.float64), 0.0))
    root = np.sqrt(uq)
    nodes = 128
    while True:
        c, d = _coefficients(act, root, nodes)
        kmax = c.shape[1] - 1
        ec = np.cumsum((c * c)[:, ::-1], axis=1)[:, ::-1]  # ec[:, k] = sum_{j >= k}
        ed = np.cumsum((d * d)[:, ::-1], axis=1)[:, ::-1]
        # every sample's tail relative to its own energy (then |error| <= tol sqrt(E_i E_j))
        rc = ec[:, 1:] / np.maximum(ec[:, :1], _TINY)
        rd = ed[:, 1:] / np.maximum(ed[:, :1], _TINY)
        tail = np.maximum(rc.max(axis=0), rd.max(axis=0))  # tail[m] beyond degree m
        half = kmax // 2  # tails are read from coefficients up to twice the degree
        ok = np.nonzero(tail[:half] <= tol)[0]
        if ok.size:
            m = max(int(ok[0]), 1)
            return m, float(tail[m])
        if kmax >= MAX_DEGREE:
            return half, float(tail[half])
        nodes *= 2


def series_coefficients(act: int, s: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Hermite coefficients of ``phi(sqrt(s_i) z)`` and ``phi'(sqrt(s_i) z)`` up to degree ``m``.

    Computed with the ``rule_nodes(m)``-point Gauss-Hermite rule, so a
    sample's coefficients depend on its variance and ``m`` only (the same bits
    in any set of samples).

    Parameters
    ----------
    act : int
        Activation code.
    s : numpy.ndarray of shape (n,)
        Pre-activation variances (negative values are taken as 0).
    m : int
        Degree (from :func:`series_degree`).

    Returns
    -------
    C, D : numpy.ndarray of shape (m + 1, n)
        Coefficients of ``phi`` and ``phi'``, C-contiguous.
    """
    s = np.maximum(np.asarray(s, dtype=np.float64), 0.0)
    uq, inv = np.unique(s, return_inverse=True)
    c, d = _coefficients(act, np.sqrt(uq), rule_nodes(m))
    return np.ascontiguousarray(c[inv, : m + 1].T), np.ascontiguousarray(d[inv, : m + 1].T)
