"""Activations of finite networks for compiled code, chosen by an integer code.

Shared by the empirical-NTK pass and the training passes, so a network's
activation means the same thing in both (names as in
``kernelcomp.network.ACTIVATIONS``).
"""

from __future__ import annotations

import math

from kernelcomp._kernels._config import jit

RELU = 0
RELU_UNIT = 1
ERF = 2
TANH = 3
LINEAR = 4

#: activation name -> code
CODES = {"relu": RELU, "relu_unit": RELU_UNIT, "erf": ERF, "tanh": TANH, "linear": LINEAR}

SQRT2 = math.sqrt(2.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@jit
def phi(z: float, act: int) -> float:
    """The activation ``act`` at ``z`` (``relu_unit`` is sqrt(2) max(z, 0))."""
    if act == RELU:
        return z if z > 0.0 else 0.0
    if act == RELU_UNIT:
        return SQRT2 * z if z > 0.0 else 0.0
    if act == ERF:
        return math.erf(z)
    if act == TANH:
        return math.tanh(z)
    return z


@jit
def dphi(z: float, act: int) -> float:
    """The derivative of the activation ``act`` at ``z`` (0 at the ReLU kink)."""
    if act == RELU:
        return 1.0 if z > 0.0 else 0.0
    if act == RELU_UNIT:
        return SQRT2 if z > 0.0 else 0.0
    if act == ERF:
        return _TWO_OVER_SQRT_PI * math.exp(-z * z)
    if act == TANH:
        t = math.tanh(z)
        return 1.0 - t * t
    return 1.0
