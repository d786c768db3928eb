"""Activations of finite networks for compiled code, chosen by an integer code.

Shared by the empirical-NTK pass and the training passes, so a network's
activation means the same thing in both (names and definitions as in
``kernelcomp.network.ACTIVATIONS``; the NumPy versions are
``kernelcomp.network.activate`` / ``activate_grad``).

Derivatives at the kinks take the left-hand value: 0 for the ReLUs at 0
(PyTorch's and JAX's convention), the negative slope 0.01 for ``leaky_relu``
at 0 (also PyTorch's). ``elu`` (alpha = 1) is continuously differentiable, so
its derivative at 0 is 1 from either side.
"""

from __future__ import annotations

import math

from kernelcomp._kernels._config import jit

RELU = 0
RELU_UNIT = 1
ERF = 2
TANH = 3
LINEAR = 4
GELU = 5
SILU = 6
SOFTPLUS = 7
LEAKY_RELU = 8
SIGMOID = 9
ELU = 10

#: activation name -> code
CODES = {
    "relu": RELU,
    "relu_unit": RELU_UNIT,
    "erf": ERF,
    "tanh": TANH,
    "linear": LINEAR,
    "gelu": GELU,
    "silu": SILU,
    "softplus": SOFTPLUS,
    "leaky_relu": LEAKY_RELU,
    "sigmoid": SIGMOID,
    "elu": ELU,
}

SQRT2 = math.sqrt(2.0)
#: the slope of ``leaky_relu`` for z < 0 (PyTorch's ``nn.LeakyReLU()`` default)
LEAKY_SLOPE = 0.01
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jit
def _sigmoid(z: float) -> float:
    """1 / (1 + exp(-z)) without overflow for either sign of ``z``."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@jit
def phi(z: float, act: int) -> float:
    """The activation ``act`` at ``z``.

    ``relu_unit`` is sqrt(2) max(z, 0); ``gelu`` z Phi(z) (exact, erf form);
    ``silu`` z sigmoid(z); ``softplus`` log(1 + e^z); ``leaky_relu``
    max(z, 0.01 z); ``elu`` z for z > 0, else e^z - 1.
    """
    if act == RELU:
        return z if z > 0.0 else 0.0
    if act == RELU_UNIT:
        return SQRT2 * z if z > 0.0 else 0.0
    if act == ERF:
        return math.erf(z)
    if act == TANH:
        return math.tanh(z)
    if act == GELU:
        return 0.5 * z * math.erfc(-z / SQRT2)
    if act == SILU:
        return z * _sigmoid(z)
    if act == SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    if act == LEAKY_RELU:
        return z if z > 0.0 else LEAKY_SLOPE * z
    if act == SIGMOID:
        return _sigmoid(z)
    if act == ELU:
        return z if z > 0.0 else math.expm1(z)
    return z


@jit
def dphi(z: float, act: int) -> float:
    """The derivative of the activation ``act`` at ``z`` (left-hand value at a kink)."""
    if act == RELU:
        return 1.0 if z > 0.0 else 0.0
    if act == RELU_UNIT:
        return SQRT2 if z > 0.0 else 0.0
    if act == ERF:
        return _TWO_OVER_SQRT_PI * math.exp(-z * z)
    if act == TANH:
        t = math.tanh(z)
        return 1.0 - t * t
    if act == GELU:
        return 0.5 * math.erfc(-z / SQRT2) + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    if act == SILU:
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    if act == SOFTPLUS:
        return _sigmoid(z)
    if act == LEAKY_RELU:
        return 1.0 if z > 0.0 else LEAKY_SLOPE
    if act == SIGMOID:
        s = _sigmoid(z)
        return s * (1.0 - s)
    if act == ELU:
        return 1.0 if z > 0.0 else math.exp(z)
    return 1.0
