"""Slow, obvious NumPy reference of the convolutional NNGP/NTK recursion.

The full 4-D covariance ``S[i, j, i', j']`` of every pair of images, layer by
layer, with explicit loops over the filter offsets and the closed forms written
out with ``arctan2`` (ReLU) and ``arcsin`` (erf); every other activation
(leaky_relu, gelu, elu, linear, ...) by kernelcomp's quadrature reference,
entry by entry. For images of a few pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _conv(S: np.ndarray, k: int, circular: bool = False) -> np.ndarray:
    """Mean over the k x k filter of S[p + d, p' + d], zeros outside the image.

    ``circular``: the image wraps around (positions modulo H and W), no zeros.
    """
    H, W = S.shape[0], S.shape[1]
    r = k // 2
    out = np.zeros_like(S)
    for i in range(H):
        for j in range(W):
            for i2 in range(H):
                for j2 in range(W):
                    acc = 0.0
                    for a in range(-r, r + 1):
                        for b in range(-r, r + 1):
                            p, q, p2, q2 = i + a, j + b, i2 + a, j2 + b
                            if circular:
                                p, q, p2, q2 = p % H, q % W, p2 % H, q2 % W
                            if 0 <= p < H and 0 <= q < W and 0 <= p2 < H and 0 <= q2 < W:
                                acc += S[p, q, p2, q2]
                    out[i, j, i2, j2] = acc / (k * k)
    return out


#: correlations within this distance of +-1 are set to +-1 (kernelcomp's documented rule)
SNAP = 32 * np.finfo(np.float64).eps


def _dual(act: str, s12: np.ndarray, s11: np.ndarray, s22: np.ndarray, snap: bool):
    """(K, Kdot) entry-wise (``snap``: correlations within SNAP of +-1 become +-1)."""
    if act in ("relu", "relu_unit"):
        prod = s11 * s22
        if snap:
            root = np.sqrt(prod)
            near = (prod > 0) & (np.abs(s12) >= (1 - SNAP) * root)
            s12 = np.where(near, np.sign(s12) * root, s12)
        det = np.sqrt(np.maximum(prod - s12**2, 0.0))
        theta = np.where(prod > 0, np.arctan2(det, s12), math.pi / 2)
        K = (det + (math.pi - theta) * s12) / (2 * math.pi)
        Kd = (math.pi - theta) / (2 * math.pi)
        if act == "relu_unit":
            K, Kd = 2 * K, 2 * Kd
        return K, Kd
    if act == "erf":
        d = (1 + 2 * s11) * (1 + 2 * s22)
        K = 2 / math.pi * np.arcsin(np.clip(2 * s12 / np.sqrt(d), -1, 1))
        Kd = 4 / math.pi / np.sqrt(d - 4 * s12**2)
        return K, Kd
    return _quadrature_dual(act, s12, s11, s22)


#: Gauss nodes per sector and ray of the quadrature route (4 n^2 points per entry)
QUAD_NODES = 40


def _quadrature_dual(act: str, s12: np.ndarray, s11: np.ndarray, s22: np.ndarray):
    """(K, Kdot) entry-wise by kernelcomp's quadrature reference (any activation).

    The quadrature of ``kc.NTK(method="quadrature")`` integrates the activation
    itself (``phi``, ``dphi``), never a closed form: exact to rounding for the
    piecewise-linear ones, ~1e-11 for smooth ones at variances of a few units.
    """
    from kernelcomp._kernels import quadrature
    from kernelcomp._kernels.activations import CODES

    r = quadrature.rules(QUAD_NODES)
    code = CODES[act]
    s12, s11, s22 = np.broadcast_arrays(s12, s11, s22)
    K = np.empty(s12.shape)
    Kd = np.empty(s12.shape)
    for idx in np.ndindex(s12.shape):
        a1, a2 = math.sqrt(max(s11[idx], 0.0)), math.sqrt(max(s22[idx], 0.0))
        b1, b2 = (1 / a1 if a1 > 0 else 0.0), (1 / a2 if a2 > 0 else 0.0)
        K[idx], Kd[idx] = quadrature.expectations(
            float(s12[idx]), a1, a2, b1, b2, code, True, r["gx"], r["gw"], r["rn"], r["rw"],
            SNAP,
        )
    return K, Kd


def _layer_kind(name: str) -> tuple[str, int]:
    if name.startswith("conv"):
        return "conv", int(name[4:] or 3)
    if name.startswith("avgpool"):
        return "pool", int(name[7:] or 2)
    return name, 0


def conv_kernel(
    x: np.ndarray,
    y: np.ndarray,
    layers: list[str],
    weight_std: float | list[float] = 1.0,
    bias_std: float | list[float] = 0.0,
    snap: bool = True,
    padding: str = "same",
) -> tuple[float, float]:
    """``(nngp, ntk)`` of two images ``(H, W, C)`` through ``layers``.

    ``snap=False`` evaluates the ReLU formula as neural-tangents does (``arctan2`` of
    ``sqrt(S11 S22 - S12^2)``, which loses half the digits at correlations of +-1).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_w = sum(_layer_kind(n)[0] in ("conv", "dense") for n in layers)
    ws = [weight_std] * n_w if np.isscalar(weight_std) else list(weight_std)
    bs = [bias_std] * n_w if np.isscalar(bias_std) else list(bias_std)
    C = x.shape[2]
    # three covariances: (x, y), (x, x), (y, y)
    S = [np.einsum("ijc,klc->ijkl", a, b) / C for a, b in ((x, y), (x, x), (y, y))]
    T = [np.zeros_like(s) for s in S]
    vector = False
    wi = 0
    for name in layers:
        kind, k = _layer_kind(name)
        if kind == "conv":
            w2, b2 = ws[wi] ** 2, bs[wi] ** 2
            wi += 1
            for q in range(3):
                circ = padding == "circular"
                S[q] = w2 * _conv(S[q], k, circ) + b2
                T[q] = S[q] + w2 * _conv(T[q], k, circ)
        elif kind == "dense":
            w2, b2 = ws[wi] ** 2, bs[wi] ** 2
            wi += 1
            for q in range(3):
                S[q] = w2 * S[q] + b2
                T[q] = S[q] + w2 * T[q]
        elif kind == "pool":
            H2, W2 = S[0].shape[0] // k, S[0].shape[1] // k
            for q in range(3):
                for Z in (S, T):
                    a = Z[q][: H2 * k, : W2 * k, : H2 * k, : W2 * k]
                    Z[q] = a.reshape(H2, k, W2, k, H2, k, W2, k).mean(axis=(1, 3, 5, 7))
        elif kind == "global_avgpool":
            for q in range(3):
                S[q] = S[q].mean()
                T[q] = T[q].mean()
            vector = True
        elif kind == "flatten":
            for q in range(3):
                HW = S[q].shape[0] * S[q].shape[1]
                S[q] = np.einsum("ijij->", S[q]) / HW
                T[q] = np.einsum("ijij->", T[q]) / HW
            vector = True
        else:  # activation
            new = []
            for q, (p1, p2) in enumerate(((1, 2), (1, 1), (2, 2))):
                if vector:
                    s11, s22 = S[p1], S[p2]
                else:
                    d1 = np.einsum("ijij->ij", S[p1])
                    d2 = np.einsum("ijij->ij", S[p2])
                    s11, s22 = d1[:, :, None, None], d2[None, None, :, :]
                new.append(_dual(name, S[q], s11, s22, snap))
            for q in range(3):
                S[q] = new[q][0]
                T[q] = new[q][1] * T[q]
    return float(S[0]), float(T[0])


def conv_gram(
    X: np.ndarray, Y: np.ndarray, layers: list[str], ntk: bool = True, **options: Any
) -> np.ndarray:
    """Gram matrix of images ``X`` against ``Y`` by :func:`conv_kernel`."""
    out = np.empty((len(X), len(Y)))
    for i, x in enumerate(X):
        for j, y in enumerate(Y):
            out[i, j] = conv_kernel(x, y, layers, **options)[1 if ntk else 0]
    return out
