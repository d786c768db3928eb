"""Slow, obvious references for the empirical NTK: explicit per-sample Jacobians.

Nothing here is optimised: per-sample forward and backward passes in float64
with Python loops, the Jacobian J (n x P) of every output laid out explicitly,
and the kernel as J J^T. Used as the oracle of ``kernelcomp.empirical``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def phi(name: str, z: np.ndarray) -> np.ndarray:
    """Activation, written out independently of kernelcomp.network."""
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "relu_unit":
        return math.sqrt(2.0) * np.where(z > 0, z, 0.0)
    if name == "erf":
        return erf(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "linear":
        return z.copy()
    if name == "gelu":
        return z * 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
    if name == "silu":
        return z / (1.0 + np.exp(-z))
    if name == "softplus":
        return np.log(1.0 + np.exp(z))
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "elu":
        return np.where(z > 0, z, np.exp(np.minimum(z, 0.0)) - 1.0)
    raise ValueError(name)


def dphi(name: str, z: np.ndarray) -> np.ndarray:
    """Derivative of :func:`phi` (left-hand value at a kink: ReLU 0, leaky ReLU 0.01 at 0)."""
    if name == "relu":
        return np.where(z > 0, 1.0, 0.0)
    if name == "relu_unit":
        return np.where(z > 0, math.sqrt(2.0), 0.0)
    if name == "erf":
        return 2.0 / math.sqrt(math.pi) * np.exp(-(z**2))
    if name == "tanh":
        return 1.0 / np.cosh(z) ** 2
    if name == "linear":
        return np.ones_like(z)
    if name == "gelu":
        return 0.5 * (1.0 + erf(z / math.sqrt(2.0))) + z * np.exp(-(z**2) / 2) / math.sqrt(
            2.0 * math.pi
        )
    if name == "silu":
        s = 1.0 / (1.0 + np.exp(-z))
        return s + z * s * (1.0 - s)
    if name in ("softplus", "sigmoid"):
        e = np.exp(-z)
        return 1.0 / (1.0 + e) if name == "softplus" else e / (1.0 + e) ** 2
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    raise ValueError(name)


def forward_one(net, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inputs a_l and pre-activations z_l of one sample, layer by layer."""
    a = np.asarray(x, dtype=np.float64)
    inputs, pre = [], []
    for l, W in enumerate(net.weights):
        W = np.asarray(W, dtype=np.float64)
        z = np.zeros(W.shape[0])
        for i in range(W.shape[0]):
            z[i] = net.weight_mult[l] * float(np.dot(W[i], a))
        b = net.biases[l]
        if b is not None:
            z = z + net.bias_mult[l] * np.asarray(b, dtype=np.float64)
        inputs.append(a)
        pre.append(z)
        if l < len(net.weights) - 1:
            a = phi(net.activation, z)
    return inputs, pre


def jacobian(net, X: np.ndarray, layers=None) -> np.ndarray:
    """Explicit Jacobian ``J[k, mu, p] = d f_k(x_mu) / d theta_p``.

    Parameters are ordered layer by layer (W_l row-major, then b_l), over the
    selected layers only (default: all).
    """
    L = len(net.weights) - 1
    if layers is None:
        layers = range(L + 1)
    layers = sorted(set(int(l) % (L + 1) for l in layers))
    K = net.weights[-1].shape[0]
    sizes = []
    for l in layers:
        size = net.weights[l].size + (0 if net.biases[l] is None else net.biases[l].size)
        sizes.append(size)
    P = sum(sizes)
    J = np.zeros((K, X.shape[0], P))
    for mu in range(X.shape[0]):
        inputs, pre = forward_one(net, X[mu])
        for k in range(K):
            # backward pass for output k: delta_l = df_k / dz_l
            deltas = [None] * (L + 1)
            delta = np.zeros(K)
            delta[k] = 1.0
            deltas[L] = delta
            for l in range(L, 0, -1):
                W = np.asarray(net.weights[l], dtype=np.float64)
                back = np.zeros(W.shape[1])
                for i in range(W.shape[0]):
                    back += net.weight_mult[l] * deltas[l][i] * W[i]
                deltas[l - 1] = back * dphi(net.activation, pre[l - 1])
            row = []
            for l in layers:
                gW = net.weight_mult[l] * np.outer(deltas[l], inputs[l])
                row.append(gW.ravel())
                if net.biases[l] is not None:
                    row.append(net.bias_mult[l] * deltas[l])
            J[k, mu] = np.concatenate(row)
    return J


def ntk(net, X: np.ndarray, Y: np.ndarray | None = None, layers=None, output=None) -> np.ndarray:
    """Empirical NTK as J J^T: mean over outputs, or one output."""
    JX = jacobian(net, X, layers)
    JY = JX if Y is None else jacobian(net, Y, layers)
    per_output = np.einsum("kip,kjp->kij", JX, JY)
    if output is None:
        return per_output.mean(axis=0)
    return per_output[output]


def one_hidden_closed_form(net, X: np.ndarray) -> np.ndarray:
    """Theta = Phi Phi^T + (Psi Psi^T) o (c1^2 X X^T + s1^2) (one output).

    The one-hidden-layer closed form of docs/definitions.rst (Empirical NTK).
    """
    W0, W1 = net.weights
    c1, c2 = net.weight_mult
    s1, s2 = net.bias_mult
    b0, b1 = net.biases
    Z = c1 * X @ W0.T + (0.0 if b0 is None else s1 * b0)
    Phi = c2 * phi(net.activation, Z)
    Psi = c2 * dphi(net.activation, Z) * W1[0]
    G = c1**2 * X @ X.T + (0.0 if b0 is None else s1**2)
    theta = Phi @ Phi.T + (Psi @ Psi.T) * G
    if b1 is not None:
        theta = theta + s2**2
    return theta
