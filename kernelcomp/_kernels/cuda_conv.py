"""CUDA kernel of the analytic kernels of convolutional networks (CNN-GP, CNTK).

The GPU counterpart of :func:`kernelcomp._kernels.conv.pair`: **one thread per
pair of images**, running the CPU core's recursion operation for operation
from the same program tables (``ops``, ``opf``, ``stages``, ``work``, ``store``
of :mod:`kernelcomp.convolutional`) and the same per-sample activation factors
(the CPU ``prepare`` pass, copied to the device):

* a launch takes a list of pairs ``(pi[t], pj[t])`` (host-made, a chunk of the
  output's entries: the upper triangle with the diagonal in the symmetric case)
  and thread ``t`` computes pair ``t``;
* every thread walks the same offsets, layers and loops in the same order (the
  program depends on the image shape only), so a warp runs in lock-step but
  for the branches of the activation's dual;
* each thread's work images (``S``, ``T`` and the row-pass buffer, each
  ``work[0] x work[1]`` with its zero frame), pooled storage (``PS``, ``PT``:
  ``store`` entries) and column sums live in global memory, **element-major**
  (``S[e, t]``): at each step the 32 threads of a warp touch 32 consecutive
  doubles, so every access is coalesced. Myrtle-5 on 28 x 28 images needs
  about 2.4 MB per pair; a launch holds as many pairs as
  :func:`scratch_budget_bytes` allows.

Rounding: every product is an explicitly rounded multiply (``_mul``, as in
:mod:`kernelcomp._kernels.cuda`: never fused into a multiply-add), divisions and
square roots are IEEE, sums are taken in the CPU core's order (convolution rows
then columns, the pool's scatter, global average pooling's column sums), and
the activation's dual is :mod:`kernelcomp._kernels.cuda`'s device port of
:mod:`kernelcomp._kernels.analytic`'s closed forms. So each entry follows the CPU
core's sequence of IEEE operations: by design the result equals the CPU core
bit for bit (the tests check it in numba's simulator, and
``scripts/bench_cuda_conv.py --check`` on a GPU); the tests' tolerance is
that of a different summation order (see ``tests/test_cuda_conv.py``).

Only the launch lives here; validation, device selection and the driver's
blocks are the public layer's (:mod:`kernelcomp._conv_cuda`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelcomp._kernels._config import cuda_jit
from kernelcomp._kernels.conv import ACT, CONV, DENSE, FLATTEN, GAP, POOL
from kernelcomp._kernels.cuda import (
    CLOSED_CODES,
    _device,
    _mul,
    closed_step,
    cuda,
    require,
)

__all__ = ["THREADS", "ConvProgram", "fill", "require", "scratch_budget_bytes"]

#: threads of a block (one pair each)
THREADS = 64
#: device bytes the per-pair scratch of one launch may take; None: half of
#: the free memory (tests lower it to exercise several launches)
MAX_SCRATCH_BYTES: int | None = None


@_device
def _offset(idx):
    """The idx-th offset in processing order: 0, 1, -1, 2, -2, ... (the CPU's)."""
    if idx == 0:
        return 0
    h = (idx + 1) // 2
    return h if idx % 2 == 1 else -h


@_device
def _zero_frame(buf, t, cols, ilo, ihi, jlo, jhi, P):
    """Zero the ``P``-wide frame around the window ``[ilo, ihi) x [jlo, jhi)`` of thread ``t``."""
    for i in range(ilo, ilo + P):
        for j in range(jlo, jhi + 2 * P):
            buf[i * cols + j, t] = 0.0
    for i in range(ihi + P, ihi + 2 * P):
        for j in range(jlo, jhi + 2 * P):
            buf[i * cols + j, t] = 0.0
    for i in range(ilo + P, ihi + P):
        for j in range(jlo, jlo + P):
            buf[i * cols + j, t] = 0.0
        for j in range(jhi + P, jhi + 2 * P):
            buf[i * cols + j, t] = 0.0


@_device
def _conv(S, tmp, t, cols, ilo, ihi, jlo, jhi, P, r, c, add, base, use_base):
    """``S <- c * (box sum of radius r of S) + add (or + base)`` on the window (CPU ``_conv``)."""
    for i in range(ilo + P, ihi + P):
        for j in range(jlo + P, jhi + P):
            e = i * cols + j
            if r == 1:
                acc = S[e - 1, t] + S[e, t] + S[e + 1, t]
            else:
                acc = S[e - r, t]
                for b in range(-r + 1, r + 1):
                    acc += S[e + b, t]
            tmp[e, t] = acc
    for i in range(ilo + P, ihi + P):
        for j in range(jlo + P, jhi + P):
            e = i * cols + j
            if r == 1:
                acc = tmp[e - cols, t] + tmp[e, t] + tmp[e + cols, t]
            else:
                acc = tmp[e - r * cols, t]
                for a in range(-r + 1, r + 1):
                    acc += tmp[e + a * cols, t]
            if use_base:
                S[e, t] = _mul(c, acc) + base[e, t]
            else:
                S[e, t] = _mul(c, acc) + add


@_device
def _pair(X, Y, xi, yj, fxa, fxb, fya, fyb, ops, opf, stages, cols, snap,
          S, T, tmp, PS, PT, CS, CT, t):
    """``(NNGP, NTK)`` of ``X[xi]`` and ``Y[yj]`` (:func:`kernelcomp._kernels.conv.pair`)."""
    C = X.shape[3]
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
                PS[q, t] = 0.0
                PT[q, t] = 0.0
            inv_pool = 1.0 / (k * k * k * k)
        for j in range(W + 2 * P):
            CS[j, t] = 0.0
            CT[j, t] = 0.0
        for iu in range(2 * Ru + 1):
            u = _offset(iu)
            ilo = max(0, -u)
            ihi = min(H, H - u)
            for iv in range(nv):
                v = _offset(iv)
                jlo = max(0, -v)
                jhi = min(W, W - v)
                if P > 0:
                    _zero_frame(S, t, cols, ilo, ihi, jlo, jhi, P)
                    _zero_frame(T, t, cols, ilo, ihi, jlo, jhi, P)
                    _zero_frame(tmp, t, cols, ilo, ihi, jlo, jhi, P)
                # the stage's input covariance of this offset
                theta_zero = st == 0
                if st == 0:
                    for i in range(ilo, ihi):
                        for j in range(jlo, jhi):
                            e = (i + P) * cols + j + P
                            acc = _mul(np.float64(X[xi, i, j, 0]),
                                       np.float64(Y[yj, i + u, j + v, 0]))
                            for ch in range(1, C):
                                acc += _mul(np.float64(X[xi, i, j, ch]),
                                            np.float64(Y[yj, i + u, j + v, ch]))
                            if C > 1:
                                acc = _mul(acc, inv_c)
                            S[e, t] = acc
                            T[e, t] = 0.0
                else:
                    base = store + ((u + Ru) * nv + (v + Rv)) * H * W
                    for i in range(ilo, ihi):
                        for j in range(jlo, jhi):
                            e = (i + P) * cols + j + P
                            S[e, t] = PS[base + i * W + j, t]
                            T[e, t] = PT[base + i * W + j, t]
                for o in range(o0, o1):
                    kind = ops[o, 0]
                    if kind == CONV:
                        r = ops[o, 1] // 2
                        c = opf[o, 0] / (ops[o, 1] * ops[o, 1])
                        _conv(S, tmp, t, cols, ilo, ihi, jlo, jhi, P, r, c, opf[o, 1], S, False)
                        # NTK parameterisation: T' = S' + w2 * box(T)
                        if theta_zero:
                            for i in range(ilo + P, ihi + P):
                                for j in range(jlo + P, jhi + P):
                                    T[i * cols + j, t] = S[i * cols + j, t]
                            theta_zero = False
                        else:
                            _conv(T, tmp, t, cols, ilo, ihi, jlo, jhi, P, r, c, 0.0, S, True)
                    elif kind == ACT:
                        code = ops[o, 1]
                        off = ops[o, 2]
                        sc2 = opf[o, 0]
                        for i in range(ilo, ihi):
                            for j in range(jlo, jhi):
                                e = (i + P) * cols + j + P
                                fx = off + i * W + j
                                fy = off + (i + u) * W + j + v
                                kk, kd = closed_step(code, S[e, t], fxa[xi, fx], fya[yj, fy],
                                                     fxb[xi, fx], fyb[yj, fy], snap)
                                S[e, t] = _mul(sc2, kk)
                                T[e, t] = _mul(_mul(sc2, kd), T[e, t])
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
                            J0 = max(0, -V)
                            while k * J0 + b < jlo:
                                J0 += 1
                            J1 = min(nW, nW - V)
                            while J1 > J0 and k * (J1 - 1) + b >= jhi:
                                J1 -= 1
                            for J in range(J0, J1):
                                e = (i + P) * cols + k * J + b + P
                                PS[dst + J, t] = PS[dst + J, t] + _mul(inv_pool, S[e, t])
                                PT[dst + J, t] = PT[dst + J, t] + _mul(inv_pool, T[e, t])
                elif red == GAP or (iu == 0 and iv == 0):
                    for i in range(ilo + P, ihi + P):
                        for j in range(jlo + P, jhi + P):
                            CS[j, t] = CS[j, t] + S[i * cols + j, t]
                            CT[j, t] = CT[j, t] + T[i * cols + j, t]
        acc_s = 0.0
        acc_t = 0.0
        for j in range(W + 2 * P):
            acc_s += CS[j, t]
            acc_t += CT[j, t]
        if red == GAP:
            norm = 1.0 / (H * W * H * W)
            s_val = _mul(acc_s, norm)
            t_val = _mul(acc_t, norm)
            tail = o1 + 1
            break
        if red == FLATTEN:
            norm = 1.0 / (H * W)
            s_val = _mul(acc_s, norm)
            t_val = _mul(acc_t, norm)
            tail = o1 + 1
            break
    for o in range(tail, nops):
        kind = ops[o, 0]
        if kind == DENSE:
            s_val = _mul(opf[o, 0], s_val) + opf[o, 1]
            t_val = s_val + _mul(opf[o, 0], t_val)
        else:  # ACT after the reduction: one factor per sample
            code = ops[o, 1]
            off = ops[o, 2]
            kk, kd = closed_step(code, s_val, fxa[xi, off], fya[yj, off], fxb[xi, off],
                                 fyb[yj, off], snap)
            s_val = _mul(opf[o, 0], kk)
            t_val = _mul(_mul(opf[o, 0], kd), t_val)
    return s_val, t_val


@cuda_jit
def _conv_kernel(X, Y, fxa, fxb, fya, fyb, dgx, ops, opf, stages, cols, snap, ntk, pi, pj,
                 npairs, symmetric, S, T, tmp, PS, PT, CS, CT, vals, row0, col0, write_out, out):
    """``vals[t] = k(X[pi[t]], Y[pj[t]])`` for ``t < npairs``.

    With ``write_out``, also ``out[pi - row0, pj - col0]`` (and its mirror when
    ``symmetric``).
    """
    t = cuda.grid(1)
    if t >= npairs:
        return
    xi = pi[t]
    yj = pj[t]
    if symmetric and xi == yj:
        val = dgx[xi]
    else:
        s, tv = _pair(X, Y, xi, yj, fxa, fxb, fya, fyb, ops, opf, stages, cols, snap,
                      S, T, tmp, PS, PT, CS, CT, t)
        val = tv if ntk else s
    vals[t] = val
    if write_out:
        out[xi - row0, yj - col0] = val
        if symmetric:
            out[yj - col0, xi - row0] = val


# -- host side --------------------------------------------------------------------


def scratch_budget_bytes() -> int:
    """Device bytes the per-pair scratch of one launch may take."""
    if MAX_SCRATCH_BYTES is not None:
        return int(MAX_SCRATCH_BYTES)
    free = float(cuda.current_context().get_memory_info()[0])
    return int(min(free / 2.0, 2.0**62))  # the simulator reports infinite memory


class ConvProgram:
    """A conv kernel's program tables on the device, and the scratch of its launches.

    Parameters
    ----------
    program : kernelcomp.convolutional._Program
        The tables of the CPU core (``ops``, ``opf``, ``stages``, ``work``, ``store``).
    ntk : bool
        NTK (the final ``T``) rather than NNGP (the final ``S``).
    snap : float
        Correlations within ``snap`` of +-1 snap to +-1 (the CPU's value).
    """

    def __init__(self, program: Any, ntk: bool, snap: float) -> None:
        ops = np.asarray(program.ops)
        for code in ops[ops[:, 0] == ACT, 1]:
            if int(code) not in CLOSED_CODES:  # the device step would give NaN
                raise NotImplementedError(
                    f"device='cuda' has no closed-form step for activation code {int(code)} of "
                    f"this convolutional kernel (device codes {sorted(CLOSED_CODES)}); compute "
                    "it on the CPU (device='cpu')"
                )
        self.ops = cuda.to_device(np.ascontiguousarray(program.ops, dtype=np.int64))
        self.opf = cuda.to_device(np.ascontiguousarray(program.opf, dtype=np.float64))
        self.stages = cuda.to_device(np.ascontiguousarray(program.stages, dtype=np.int64))
        self.rows = int(program.work[0])
        self.cols = int(program.work[1])
        self.store = max(int(program.store), 1)
        self.ntk = bool(ntk)
        self.snap = float(snap)
        self._scratch: tuple[int, tuple[Any, ...]] | None = None

    @property
    def pair_bytes(self) -> int:
        """Device bytes of one pair's scratch."""
        return 8 * (3 * self.rows * self.cols + 2 * self.store + 2 * self.cols + 3)

    def batch(self, npairs: int) -> int:
        """Pairs per launch: all of ``npairs`` if the scratch budget allows."""
        return max(1, min(npairs, scratch_budget_bytes() // self.pair_bytes))

    def scratch(self, batch: int) -> tuple[Any, ...]:
        """``(S, T, tmp, PS, PT, CS, CT, vals, pi, pj)`` for ``batch`` pairs, reused."""
        if self._scratch is None or self._scratch[0] < batch:
            e = self.rows * self.cols
            arrays = (
                cuda.device_array((e, batch)),
                cuda.device_array((e, batch)),
                cuda.device_array((e, batch)),
                cuda.device_array((self.store, batch)),
                cuda.device_array((self.store, batch)),
                cuda.device_array((self.cols, batch)),
                cuda.device_array((self.cols, batch)),
                cuda.device_array(batch),
                cuda.device_array(batch, dtype=np.int64),
                cuda.device_array(batch, dtype=np.int64),
            )
            self._scratch = (batch, arrays)
        return self._scratch[1]


class ConvSamples:
    """Images (n, H, W, C) and their activation factors (n, F) on the device."""

    def __init__(self, X: Any, fa: np.ndarray, fb: np.ndarray, dg: np.ndarray) -> None:
        self.X = X if getattr(X, "__cuda_ndarray__", False) else cuda.to_device(
            np.ascontiguousarray(X))
        self.fa = cuda.to_device(np.ascontiguousarray(fa))
        self.fb = cuda.to_device(np.ascontiguousarray(fb))
        self.dg = cuda.to_device(np.ascontiguousarray(dg))


def pair_chunks(nr: int, nc: int, symmetric: bool, batch: int):
    """Chunks ``(rows, cols)`` of at most ``batch`` entries of an ``nr x nc`` output.

    Row-major order; ``symmetric``: the upper triangle, diagonal included.
    """
    if symmetric:
        lengths = np.arange(nr, 0, -1, dtype=np.int64)
    else:
        lengths = np.full(nr, nc, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    total = int(starts[-1])
    for q0 in range(0, total, batch):
        q = np.arange(q0, min(total, q0 + batch), dtype=np.int64)
        r = np.searchsorted(starts, q, side="right") - 1
        c = q - starts[r] + (r if symmetric else 0)
        yield r, c


def fill(prog: ConvProgram, xs: ConvSamples, ys: ConvSamples, row0: int, col0: int,
         nr: int, nc: int, symmetric: bool, out: Any) -> None:
    """``out[r, c] = k(xs.X[row0 + r], ys.X[col0 + c])`` for an ``nr x nc`` block.

    ``out`` is a host array (values come back per launch and are scattered, in
    its dtype) or a 2-D device array (written by the kernel). With
    ``symmetric``, ``xs is ys``, ``row0 == col0``, and only the upper triangle
    is computed (the diagonal is the per-sample value), mirrored.
    """
    host = not getattr(out, "__cuda_ndarray__", False)
    total = nr * (nr + 1) // 2 if symmetric else nr * nc
    if total == 0:
        return
    batch = prog.batch(total)
    S, T, tmp, PS, PT, CS, CT, vals, dpi, dpj = prog.scratch(batch)
    dummy = out if not host else cuda.device_array((1, 1))
    for r, c in pair_chunks(nr, nc, symmetric, batch):
        m = r.shape[0]
        dpi[:m].copy_to_device(r + row0)
        dpj[:m].copy_to_device(c + col0)
        blocks = (m + THREADS - 1) // THREADS
        _conv_kernel[blocks, THREADS](
            xs.X, ys.X, xs.fa, xs.fb, ys.fa, ys.fb, xs.dg, prog.ops, prog.opf, prog.stages,
            prog.cols, prog.snap, prog.ntk, dpi, dpj, m, bool(symmetric), S, T, tmp, PS, PT,
            CS, CT, vals, int(row0), int(col0), not host, dummy,
        )
        if host:
            v = vals[:m].copy_to_host()
            out[r, c] = v
            if symmetric:
                out[c, r] = v
