"""Fused forward/backward passes of a one-hidden-layer network for training.

``f(x) = c2 sum_n beta_n phi(c1 w_n . x + s1 b_n) + s2 b2`` on C-contiguous
float64 arrays, without materialising the (p, h) pre-activations: the forward
pass owns one sample per iteration, the backward pass one neuron per iteration
(its rows of the gradient), so both are race-free and their results do not
depend on the thread count. Inputs are validated by ``kernelcomp.training``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernelcomp._kernels._config import jit
from kernelcomp._kernels.activations import (  # noqa: F401 (CODES: used by kernelcomp.training)
    CODES,
    RELU,
    RELU_UNIT,
)
from kernelcomp._kernels.activations import SQRT2 as _SQRT2
from kernelcomp._kernels.activations import dphi as _dphi
from kernelcomp._kernels.activations import phi as _phi


def _forward(
    X: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    beta: np.ndarray,
    c1: float,
    s1: float,
    c2: float,
    bias2: float,
    act: int,
    out: np.ndarray,
) -> None:
    """``out[mu] = c2 sum_n beta_n phi(c1 W[n] . X[mu] + s1 b[n]) + bias2``."""
    p, d = X.shape
    h = W.shape[0]
    for mu in prange(p):
        acc = 0.0
        for n in range(h):
            z = 0.0
            for j in range(d):
                z += W[n, j] * X[mu, j]
            acc += beta[n] * _phi(c1 * z + s1 * b[n], act)
        out[mu] = c2 * acc + bias2


def _backward(
    X: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    beta: np.ndarray,
    c1: float,
    s1: float,
    c2: float,
    act: int,
    u: np.ndarray,
    rows: np.ndarray,
    gW: np.ndarray,
    gb: np.ndarray,
    gbeta: np.ndarray,
) -> None:
    """Gradient of ``sum_{mu in rows} u[mu] f(X[mu])`` w.r.t. ``W``, ``b``, ``beta``."""
    d = X.shape[1]
    h = W.shape[0]
    for n in prange(h):
        gbn = 0.0
        gbetan = 0.0
        for j in range(d):
            gW[n, j] = 0.0
        for k in range(rows.shape[0]):
            mu = rows[k]
            um = u[mu]
            if um == 0.0:
                continue
            z = 0.0
            for j in range(d):
                z += W[n, j] * X[mu, j]
            z = c1 * z + s1 * b[n]
            gbetan += um * _phi(z, act)
            s = um * _dphi(z, act)
            if s != 0.0:
                gbn += s
                for j in range(d):
                    gW[n, j] += s * X[mu, j]
        scale = c2 * beta[n]
        for j in range(d):
            gW[n, j] *= scale * c1
        gb[n] = scale * s1 * gbn
        gbeta[n] = c2 * gbetan


def _backward_pair(
    X: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    beta: np.ndarray,
    Wold: np.ndarray,
    bold: np.ndarray,
    c1: float,
    s1: float,
    c2: float,
    act: int,
    u: np.ndarray,
    uref: np.ndarray,
    gW: np.ndarray,
    gb: np.ndarray,
    gbeta: np.ndarray,
    rW: np.ndarray,
    rb: np.ndarray,
    rbeta: np.ndarray,
) -> None:
    """:func:`backward` over all rows, plus the step control's reference gradient.

    The reference is the gradient at the same (new) parameters of
    ``sum_mu uref[mu] f(X[mu])`` with, for the ReLUs, the activation pattern
    ``c1 Wold[n] . X[mu] + s1 bold[n] > 0`` of the step's starting point: the
    smooth part of the gradient's change, without the jumps of units crossing
    their kink.
    """
    p, d = X.shape
    h = W.shape[0]
    kinked = act == RELU or act == RELU_UNIT
    slope = _SQRT2 if act == RELU_UNIT else 1.0
    for n in prange(h):
        gbn = 0.0
        gbetan = 0.0
        rbn = 0.0
        rbetan = 0.0
        for j in range(d):
            gW[n, j] = 0.0
            rW[n, j] = 0.0
        for mu in range(p):
            um = u[mu]
            ur = uref[mu]
            if um == 0.0 and ur == 0.0:
                continue
            z = 0.0
            for j in range(d):
                z += W[n, j] * X[mu, j]
            z = c1 * z + s1 * b[n]
            s = um * _dphi(z, act)
            gbetan += um * _phi(z, act)
            if kinked:
                zo = 0.0
                for j in range(d):
                    zo += Wold[n, j] * X[mu, j]
                on = c1 * zo + s1 * bold[n] > 0.0
                r = ur * slope if on else 0.0
                rbetan += r * z
            else:
                r = ur * _dphi(z, act)
                rbetan += ur * _phi(z, act)
            if s != 0.0 or r != 0.0:
                gbn += s
                rbn += r
                for j in range(d):
                    gW[n, j] += s * X[mu, j]
                    rW[n, j] += r * X[mu, j]
        scale = c2 * beta[n]
        for j in range(d):
            gW[n, j] *= scale * c1
            rW[n, j] *= scale * c1
        gb[n] = scale * s1 * gbn
        rb[n] = scale * s1 * rbn
        gbeta[n] = c2 * gbetan
        rbeta[n] = c2 * rbetan


#: parallel (prange over samples / neurons) and serial compilations of each pass:
#: below ~PARALLEL_MIN_WORK pairs (sample, neuron) a thread launch costs more than
#: the pass (measured: 1.7 ms vs 0.02 ms for p = h = 64 on a loaded 2-core machine)
PARALLEL_MIN_WORK = 200_000
forward = jit(_forward, parallel=True)
backward = jit(_backward, parallel=True)
backward_pair = jit(_backward_pair, parallel=True)
forward_serial = jit(_forward)
backward_serial = jit(_backward)
backward_pair_serial = jit(_backward_pair)
