"""Projected Gauss-Seidel for the box QP of the sliding integrator's kink multipliers.

``min 1/2 w^T Q w + q^T w`` over ``0 <= w <= 1`` with ``Q`` symmetric positive
semi-definite: cyclic exact coordinate minimisation, which converges to a
minimiser for any such ``Q`` (a singular one included) as long as every
coordinate with ``Q[i, i] = 0`` is left alone (its value does not change the
objective's quadratic part; it is set from the sign of its gradient). The
residual ``r = Q w + q`` is kept up to date column by column. Inputs are
validated by ``kernelcomp.training``.
"""

from __future__ import annotations

import numpy as np

from kernelcomp._kernels._config import jit


@jit
def box_qp_gauss_seidel(Q: np.ndarray, q: np.ndarray, w: np.ndarray, max_sweeps: int,
                        tol: float) -> int:
    """Improve ``w`` in place; return the number of sweeps taken.

    Stops when a whole sweep moves no coordinate by more than ``tol``.
    """
    k = q.shape[0]
    r = np.empty(k)
    for i in range(k):
        acc = q[i]
        for j in range(k):
            acc += Q[i, j] * w[j]
        r[i] = acc
    for sweep in range(max_sweeps):
        biggest = 0.0
        for i in range(k):
            qii = Q[i, i]
            if qii > 0.0:
                new = w[i] - r[i] / qii
            else:
                new = 1.0 if r[i] < 0.0 else 0.0
            new = min(1.0, max(0.0, new))
            delta = new - w[i]
            if delta != 0.0:
                w[i] = new
                for j in range(k):
                    r[j] += delta * Q[j, i]
                if abs(delta) > biggest:
                    biggest = abs(delta)
        if biggest <= tol:
            return sweep + 1
    return max_sweeps
