"""Slow, obvious reference implementations of kernelcomp.diagnostics (test oracles).

Plain Python loops written straight from the definitions in docs/definitions.rst
(Paccolat et al. 2021) and the cited papers, sharing no code with the fast paths.
"""

from __future__ import annotations

import math

import numpy as np


def mutual_information_paper(v, y, k=5):
    """The paper's estimator for one component ``v``, with explicit loops.

    z-score; for each point the distance to its k-th nearest neighbour of each
    class, itself included in its own class; q = 1/(1 + r_a/r_b); I = 1 - mean H2.
    """
    v = [float(t) for t in v]
    n = len(v)
    mean = sum(v) / n
    sd = math.sqrt(sum((t - mean) ** 2 for t in v) / n)
    z = [(t - mean) / sd if sd > 0 else 0.0 for t in v]
    classes = sorted(set(y.tolist() if hasattr(y, "tolist") else y))
    assert len(classes) == 2
    total = 0.0
    for i in range(n):
        radii = []
        for c in classes:
            dists = sorted(abs(z[i] - z[j]) for j in range(n) if y[j] == c)
            radii.append(dists[k - 1])
        ra, rb = radii
        if ra + rb == 0.0:
            q = 0.5
        else:
            q = 1.0 / (1.0 + ra / rb) if rb > 0 else 0.0
        h = 0.0
        for p in (q, 1.0 - q):
            if p > 0.0:
                h -= p * math.log2(p)
        total += h
    return 1.0 - total / n


def compression(W, informative):
    """lambda = sqrt(mean_par <w_j^2> / mean_perp <w_j^2>) with explicit loops."""
    h, d = len(W), len(W[0])
    msq = []
    for j in range(d):
        msq.append(sum(float(W[i][j]) ** 2 for i in range(h)) / h)
    par = [msq[j] for j in range(d) if j in informative]
    perp = [msq[j] for j in range(d) if j not in informative]
    return math.sqrt((sum(par) / len(par)) / (sum(perp) / len(perp)))


def kernel_alignment(K, y, center=False):
    """<K, yy^T> / (||K|| ||yy^T||) with explicit centring matrices."""
    K = np.array(K, dtype=np.float64)
    Y = np.array(y, dtype=np.float64).reshape(len(K), -1)
    n = len(K)
    if center:
        H = np.eye(n) - np.ones((n, n)) / n
        K = H @ K @ H
        Y = H @ Y
    T = Y @ Y.T
    num = sum(K[i, j] * T[i, j] for i in range(n) for j in range(n))
    return num / (math.sqrt((K * K).sum()) * math.sqrt((T * T).sum()))


def effective_rank_entropy(lam):
    lam = [max(float(t), 0.0) for t in lam]
    s = sum(lam)
    return math.exp(-sum((t / s) * math.log(t / s) for t in lam if t > 0))


def twonn(K, discard_fraction=0.1):
    """TwoNN (Facco et al. 2017) on the kernel distance, with explicit loops."""
    K = np.array(K, dtype=np.float64)
    n = len(K)
    mus = []
    for i in range(n):
        d = sorted(math.sqrt(max(K[i, i] + K[j, j] - 2 * K[i, j], 0.0)) for j in range(n) if j != i)
        if d[0] > 0:
            mus.append(d[1] / d[0])
    mus.sort()
    m = len(mus)
    keep = min(max(2, math.floor(m * (1 - discard_fraction))), m - 1)
    num = den = 0.0
    for i in range(keep):
        x = math.log(mus[i])
        t = -math.log(1 - (i + 1) / m)
        num += x * t
        den += x * x
    return num / den


def power_law_fit(lam, lo, hi):
    """Slope of log lambda against log rank over ranks lo..hi via np.polyfit."""
    lam = np.sort(np.asarray(lam, dtype=np.float64))[::-1]
    r = np.arange(lo, hi + 1)
    slope, intercept = np.polyfit(np.log(r), np.log(lam[lo - 1 : hi]), 1)
    return -slope, math.exp(intercept)
