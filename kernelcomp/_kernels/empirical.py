"""Compiled per-sample pass of the empirical NTK: one fused sweep over a layer's pre-activations.

Given the BLAS product ``P = a_l @ W_l.T`` (float64), :func:`post_activation`
forms ``z = c P + sb`` and writes, in one parallel pass over the rows and
without temporaries,

* ``a_out = phi(z)`` (float64, the next layer's input),
* ``f_out[:, :h] = f_scale * phi(z)`` (the next layer's scaled features, in
  the working dtype; an extra last column, when present, is left alone),
* ``d_out = phi'(z) * d_scale`` (activation derivatives, working dtype).

Each output is skipped when it has zero rows. Pre-activations are always
float64, so a float32 request gets the same ReLU masks (signs of the float64
pre-activations) as a float64 one.
Activations are chosen by an integer code.
"""

from __future__ import annotations

import numba
import numpy as np

from kernelcomp._kernels._config import jit
from kernelcomp._kernels.activations import CODES  # noqa: F401 (used by kernelcomp.empirical)
from kernelcomp._kernels.activations import dphi as _dphi
from kernelcomp._kernels.activations import phi as _phi


def _post_activation(
    P: np.ndarray,
    c: float,
    sb: np.ndarray,
    act: int,
    a_out: np.ndarray,
    f_out: np.ndarray,
    f_scale: float,
    d_out: np.ndarray,
    d_scale: np.ndarray,
) -> None:
    """Fused ``z = c P + sb``, then the activations and derivatives of one layer.

    ``a_out = phi(z)``, ``f_out = f_scale phi(z)`` and ``d_out = phi'(z) d_scale``.

    Parameters
    ----------
    P : float64 array (n, h)
    c : float
    sb : float64 array (h,)
        ``s_l * b_l`` (zeros without bias).
    act : int
        Activation code.
    a_out : float64 array (n, h) or (0, 0)
    f_out : float32/float64 array (n, >= h) or (0, 0)
    f_scale : float
    d_out : array (n, h) or (0, 0), same dtype as ``f_out``
    d_scale : float64 array (h,)
    """
    n, h = P.shape
    want_a = a_out.shape[0] > 0
    want_f = f_out.shape[0] > 0
    want_d = d_out.shape[0] > 0
    for i in numba.prange(n):
        for j in range(h):
            z = c * P[i, j] + sb[j]
            if want_a or want_f:
                y = _phi(z, act)
                if want_a:
                    a_out[i, j] = y
                if want_f:
                    f_out[i, j] = f_scale * y
            if want_d:
                d_out[i, j] = _dphi(z, act) * d_scale[j]


#: row-parallel version (for large layers) and serial version (small ones: a
#: parallel region costs more than the work there, especially on busy cores)
post_activation = jit(_post_activation, parallel=True)
post_activation_serial = jit(_post_activation)
#: elements (n * h) from which the parallel version is used
PARALLEL_MIN_SIZE = 2**18
