"""Slow, obvious references for the network geometry of kernelcomp.diagnostics (test oracles).

Written from the definitions (Paccolat et al. 2021 for the attractors; Ansuini et
al. 2019 for the layer representations; Quinn et al. 2019 and Mao et al. 2024 for
InPCA of the Bhattacharyya distances), sharing no code with the fast paths: Python
loops over neurons and points, explicit Jacobians (tests/naive_empirical.py),
NumPy's covariance for PCA, and the Bhattacharyya coefficient point by point.
"""

from __future__ import annotations

import math

import numpy as np

from tests.naive_empirical import forward_one, jacobian, phi


def preactivations(net, X, layer):
    """``Z[mu][k]``: pre-activation of neuron k of ``layer`` at point mu, one point at a time."""
    return [list(forward_one(net, x)[1][layer]) for x in np.asarray(X, dtype=np.float64)]


def representations(net, X):
    """Post-activations ``phi(z_l)`` of every hidden layer, as (n, n_l) arrays."""
    L = len(net.weights) - 1
    rows = [[] for _ in range(L)]
    for x in np.asarray(X, dtype=np.float64):
        _, pre = forward_one(net, x)
        for l in range(L):
            rows[l].append(phi(net.activation, pre[l]))
    return [np.array(r) for r in rows]


def attractor_partition(net, X, layer=0, tol=0.0):
    """Attractors by double loops: (labels, patterns, sizes, beta_share, dead).

    Neuron k's pattern lists, point by point, whether its pre-activation is > tol;
    neurons get the id of the first earlier neuron with the same pattern, or a new
    id. Dead: never active, for the ReLU family only.
    """
    Z = preactivations(net, X, layer)
    n, h = len(Z), len(Z[0])
    reps, labels = [], []
    for k in range(h):
        pattern = tuple(Z[mu][k] > tol for mu in range(n))
        for a, rep in enumerate(reps):
            if rep == pattern:
                labels.append(a)
                break
        else:
            labels.append(len(reps))
            reps.append(pattern)
    W_next = np.asarray(net.weights[layer + 1], dtype=np.float64)
    out = []
    for k in range(h):
        out.append(math.sqrt(sum(float(W_next[i, k]) ** 2 for i in range(W_next.shape[0]))))
    total = sum(out)
    sizes = [labels.count(a) for a in range(len(reps))]
    share = [sum(out[k] for k in range(h) if labels[k] == a) / total for a in range(len(reps))]
    relu = net.activation in ("relu", "relu_unit")
    dead = [relu and not any(rep) for rep in reps]
    return labels, [list(r) for r in reps], sizes, share, dead


def covariance_eigenvalues(A):
    """Eigenvalues of the centred covariance (1/n) sum (a - mean)(a - mean)^T, descending.

    The top ``min(n, width)`` (the others are 0), clipped at 0.
    """
    A = np.asarray(A, dtype=np.float64)
    C = np.cov(A, rowvar=False, bias=True).reshape(A.shape[1], A.shape[1])
    w = np.sort(np.linalg.eigvalsh(C))[::-1]
    return np.clip(w[: min(A.shape)], 0.0, None)


def gauss_newton_eigenvalues(net, X, curvature=None):
    """Eigenvalues of G = (1/p) J^T D J from the explicit Jacobian, descending (all P)."""
    J = jacobian(net, np.asarray(X, dtype=np.float64))[0]  # (p, P), one output
    p = J.shape[0]
    d = np.ones(p) if curvature is None else np.asarray(curvature, dtype=np.float64)
    G = np.zeros((J.shape[1], J.shape[1]))
    for mu in range(p):
        G += d[mu] * np.outer(J[mu], J[mu])
    G /= p
    return np.sort(np.linalg.eigvalsh(G))[::-1], J


def bhattacharyya_distances(outputs):
    """D_ij = -sum_x log(sqrt(p_i p_j) + sqrt((1 - p_i)(1 - p_j))), p = 1/(1 + exp(-2F)).

    ``outputs[i][x]`` is the trained model F of checkpoint i at point x.
    """
    probs = [[1.0 / (1.0 + math.exp(-2.0 * float(F))) for F in row] for row in outputs]
    m = len(probs)
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            total = 0.0
            for pi, pj in zip(probs[i], probs[j], strict=True):
                bc = math.sqrt(pi * pj) + math.sqrt((1.0 - pi) * (1.0 - pj))
                total -= math.log(min(bc, 1.0))
            D[i, j] = total
    return D


def inpca(D, k):
    """InPCA: W = -P D P / 2 with an explicit centring matrix; the k largest |lambda|.

    Returns (signed eigenvalues, coordinates V sqrt|lambda|, |lambda| / sum |lambda|);
    the coordinates' column signs are arbitrary.
    """
    D = np.asarray(D, dtype=np.float64)
    m = D.shape[0]
    P = np.eye(m) - np.ones((m, m)) / m
    W = -0.5 * P @ D @ P
    w, V = np.linalg.eigh(W)
    order = sorted(range(m), key=lambda r: -abs(w[r]))[:k]
    lam = w[order]
    coords = V[:, order] * np.sqrt(np.abs(lam))
    return lam, coords, np.abs(lam) / np.abs(w).sum()
