"""Wide random networks (plain NumPy) approach the analytic NNGP and NTK.

The finite-width kernels are computed here from scratch, independently of
``kc.EmpiricalNTK``: the NNGP from the last hidden layer's features, the NTK
from per-layer back-propagated vectors (sum over layers of
``c^2 (delta delta^T) o (a a^T) + s^2 delta delta^T``). Their deviation from
the infinite-width limit is a Monte-Carlo error ~ 1/sqrt(width).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

import kernelcomp as kc
from tests.naive import relative_error

ACT = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "erf": (erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-(z**2))),
}


def finite_kernels(X, width, depth, activation, ws, bs, seed):
    """(NNGP estimate, NTK) of one random NTK-parameterized network."""
    rng = np.random.default_rng(seed)
    phi, dphi = ACT[activation]
    sizes = [X.shape[1], *([width] * depth), 1]
    Ws = [rng.standard_normal((sizes[i + 1], sizes[i])) for i in range(depth + 1)]
    bvec = [rng.standard_normal(sizes[i + 1]) for i in range(depth + 1)]
    c = [ws / np.sqrt(sizes[i]) for i in range(depth + 1)]
    acts, zs = [X], []
    for layer in range(depth):
        z = acts[-1] @ (c[layer] * Ws[layer]).T + bs * bvec[layer]
        zs.append(z)
        acts.append(phi(z))
    nngp = ws**2 * acts[-1] @ acts[-1].T / width + bs**2
    delta = np.ones((X.shape[0], 1))
    ntk = np.zeros((X.shape[0], X.shape[0]))
    for layer in range(depth, -1, -1):
        a = acts[layer]
        dd = delta @ delta.T
        ntk += c[layer] ** 2 * dd * (a @ a.T) + bs**2 * dd
        if layer > 0:
            delta = (delta @ (c[layer] * Ws[layer])) * dphi(zs[layer - 1])
    return nngp, ntk


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [1, 2])
def test_wide_networks_converge_to_analytic_kernels(rng, activation, depth):
    X = rng.standard_normal((12, 5))
    ws, bs = 1.3, 0.2
    nngp = kc.NNGP(depth=depth, activation=activation, weight_std=ws, bias_std=bs)(X)
    ntk = kc.NTK(depth=depth, activation=activation, weight_std=ws, bias_std=bs)(X)
    errors = {}
    for width in (64, 4096):
        e_nngp, e_ntk = [], []
        for seed in range(4):
            fn, ft = finite_kernels(X, width, depth, activation, ws, bs, seed)
            e_nngp.append(relative_error(fn, nngp))
            e_ntk.append(relative_error(ft, ntk))
        errors[width] = (np.mean(e_nngp), np.mean(e_ntk))
    # Monte-Carlo error ~ C / sqrt(width); measured C = 1.3 to 4.4 (max over entries)
    for width, (en, et) in errors.items():
        assert en <= 8.0 / np.sqrt(width), (width, en)
        assert et <= 8.0 / np.sqrt(width), (width, et)
    # and it shrinks with the width (64x wider: ~8x smaller; demand 3x)
    assert errors[4096][0] * 3 < errors[64][0]
    assert errors[4096][1] * 3 < errors[64][1]
