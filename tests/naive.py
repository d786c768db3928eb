"""Slow, obvious references for the compiled analytic kernels.

A direct transcription of the NNGP/NTK recursions of docs/definitions.rst in NumPy
(float64, whole matrices, numpy's own arccos/arcsin), independent of kernelcomp's code.
Used as the oracle of the fast paths.
"""

from __future__ import annotations

import numpy as np


def _per_layer(v, n):
    if v is None or np.isscalar(v):
        return [v] * n
    return list(v)


def analytic_kernel(
    X,
    Y=None,
    *,
    depth=1,
    activation="relu",
    weight_std=1.0,
    bias_std=0.0,
    parameterization="ntk",
    width=None,
    want="ntk",
):
    """NNGP or NTK Gram matrix by the documented recursion, entry formulas verbatim."""
    X = np.asarray(X, dtype=np.float64)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64)
    d = X.shape[1]
    ws = _per_layer(weight_std, depth + 1)
    bs = _per_layer(bias_std, depth + 1)
    widths = _per_layer(width, depth)
    w2 = [w**2 for w in ws]
    b2 = [0.0 if b is None else b**2 for b in bs]
    has_b = [0.0 if b is None else 1.0 for b in bs]

    # covariances of the pair (x, y) and the two variances
    s12 = w2[0] * (X @ Y.T) / d + b2[0]
    s11 = (w2[0] * np.sum(X * X, axis=1) / d + b2[0])[:, None] * np.ones_like(s12)
    s22 = (w2[0] * np.sum(Y * Y, axis=1) / d + b2[0])[None, :] * np.ones_like(s12)
    if parameterization == "ntk":
        t = s12.copy()
    else:
        t = X @ Y.T + has_b[0]
    for layer in range(depth):
        if activation == "relu":
            det = np.maximum(s11 * s22 - s12**2, 0.0)
            theta = np.arctan2(np.sqrt(det), s12)
            # neural-tangents' convention for a zero variance (x = 0 without bias)
            theta = np.where(s11 * s22 == 0.0, np.pi / 2, theta)
            k = (np.sqrt(det) + (np.pi - theta) * s12) / (2 * np.pi)
            kd = (np.pi - theta) / (2 * np.pi)
            k11, k22 = s11 / 2, s22 / 2
        elif activation == "erf":
            den = np.sqrt((1 + 2 * s11) * (1 + 2 * s22))
            k = 2 / np.pi * np.arcsin(np.clip(2 * s12 / den, -1, 1))
            kd = 4 / np.pi / np.sqrt((1 + 2 * s11) * (1 + 2 * s22) - 4 * s12**2)
            k11 = 2 / np.pi * np.arcsin(2 * s11 / (1 + 2 * s11))
            k22 = 2 / np.pi * np.arcsin(2 * s22 / (1 + 2 * s22))
        else:  # pragma: no cover
            raise ValueError(activation)
        w2n, b2n = w2[layer + 1], b2[layer + 1]
        if parameterization == "ntk":
            t = (w2n * k + b2n) + w2n * kd * t
        else:
            t = widths[layer] * k + has_b[layer + 1] + w2n * kd * t
        s12, s11, s22 = w2n * k + b2n, w2n * k11 + b2n, w2n * k22 + b2n
    return t if want == "ntk" else s12


def relative_error(a, b) -> float:
    """max |a - b| / max |b| (the max-norm relative error)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def analytic_diag(X, **kwargs):
    """The exact diagonal k(x, x): the recursion with Sigma12 = Sigma11 (no cancellation).

    The full-matrix recursion above loses ~1e-8 relative accuracy on the
    diagonal, where ``Sigma11 Sigma22 - Sigma12^2`` cancels to rounding noise;
    the per-point closed forms (theta = 0) do not.
    """
    X = np.asarray(X, dtype=np.float64)
    depth = kwargs.get("depth", 1)
    activation = kwargs.get("activation", "relu")
    parameterization = kwargs.get("parameterization", "ntk")
    want = kwargs.get("want", "ntk")
    d = X.shape[1]
    ws = _per_layer(kwargs.get("weight_std", 1.0), depth + 1)
    bs = _per_layer(kwargs.get("bias_std", 0.0), depth + 1)
    widths = _per_layer(kwargs.get("width"), depth)
    w2 = [w**2 for w in ws]
    b2 = [0.0 if b is None else b**2 for b in bs]
    has_b = [0.0 if b is None else 1.0 for b in bs]
    sq = np.sum(X * X, axis=1)
    s = w2[0] * sq / d + b2[0]
    t = s.copy() if parameterization == "ntk" else sq + has_b[0]
    for layer in range(depth):
        if activation == "relu":
            k, kd = s / 2, np.full_like(s, 0.5)
        else:
            k = 2 / np.pi * np.arcsin(2 * s / (1 + 2 * s))
            kd = 4 / np.pi / np.sqrt((1 + 2 * s) ** 2 - 4 * s**2)
        w2n, b2n = w2[layer + 1], b2[layer + 1]
        if parameterization == "ntk":
            t = (w2n * k + b2n) + w2n * kd * t
        else:
            t = widths[layer] * k + has_b[layer + 1] + w2n * kd * t
        s = w2n * k + b2n
    return t if want == "ntk" else s


def symmetric_error(K, X, **kwargs) -> float:
    """Relative error of a symmetric Gram.

    The off-diagonal is compared with the matrix recursion, the diagonal with the
    exact per-point recursion.
    """
    ref = analytic_kernel(X, **kwargs)
    np.fill_diagonal(ref, analytic_diag(X, **kwargs))
    return relative_error(K, ref)


def gaussian_pair_expectation(f, g, s11, s22, s12, tol=1e-12):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]]) by adaptive quadrature.

    Nested ``scipy.integrate.quad`` in Cholesky coordinates ``u = a z1``,
    ``v = b (rho z1 + c z2)``, each line integral split where ``u`` or ``v`` is 0
    (the kink of the ReLU family, leaky ReLU, ELU). ``f`` and ``g`` are scalar
    functions. Slow (~1e5 calls) and independent of kernelcomp's polar rule.
    """
    import itertools
    import warnings

    from scipy.integrate import IntegrationWarning, quad

    a, b = np.sqrt(s11), np.sqrt(s22)
    rho = 0.0 if a * b == 0 else float(np.clip(s12 / (a * b), -1.0, 1.0))
    c = np.sqrt(max(0.0, 1.0 - rho * rho))
    pdf = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # noqa: E731

    def line(h, kink):
        # over [-12, 12] (the Gaussian mass outside is 4e-33), split at 0 and the kink
        cuts = sorted({-12.0, 0.0, float(np.clip(kink, -12.0, 12.0)), 12.0})
        with warnings.catch_warnings():
            # QUADPACK reports its roundoff at tol ~1e-12; callers compare at 1e-10
            warnings.simplefilter("ignore", IntegrationWarning)
            return sum(
                quad(h, lo, hi, epsabs=tol, epsrel=tol, limit=200)[0]
                for lo, hi in itertools.pairwise(cuts)
            )

    if c == 0.0:
        return line(lambda z: f(a * z) * g(b * rho * z) * pdf(z), 0.0)

    def inner(z1):
        return line(lambda z2: g(b * (rho * z1 + c * z2)) * pdf(z2), -rho * z1 / c)

    return line(lambda z1: f(a * z1) * inner(z1) * pdf(z1), 0.0)


def split_gauss_legendre_pair(f, g, s11, s22, s12, *, panels=24, nodes=40, half_width=12.0):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]]) by a split Gauss-Legendre rule.

    Vectorised: ``f`` and ``g`` take NumPy arrays. Cholesky coordinates
    ``u = a z1``, ``v = b (rho z1 + c z2)`` on ``[-half_width, half_width]^2``;
    the outer line is split at ``z1 = 0`` (the kink of ``f``) into ``2 panels``
    uniform panels graded geometrically towards 0 down to ``c / 16``, each
    inner line at ``z2 = -rho z1 / c`` (the kink of ``g``) into ``panels``
    panels on either side, each panel ``nodes`` Gauss-Legendre points.
    ``rho = +-1`` (or a zero variance) is a 1-D integral. Independent of
    kernelcomp's rules (polar, Hermite).
    """
    a, b = np.sqrt(s11), np.sqrt(s22)
    rho = 0.0 if a * b == 0 else float(np.clip(s12 / (a * b), -1.0, 1.0))
    if 1.0 - abs(rho) <= 1e-13:  # +-1 up to the rounding of s12 / (a b)
        rho = float(np.sign(rho))
    c = np.sqrt(max(0.0, (1.0 - rho) * (1.0 + rho)))
    x, w = np.polynomial.legendre.leggauss(nodes)

    def rule(lo, hi):
        """Nodes and weights on [lo, hi] (arrays of the same shape), panels x nodes."""
        lo, hi = np.asarray(lo, float)[..., None], np.asarray(hi, float)[..., None]
        edges = lo + (hi - lo) * np.linspace(0.0, 1.0, panels + 1)
        h = 0.5 * np.diff(edges, axis=-1)[..., None]
        mid = 0.5 * (edges[..., 1:] + edges[..., :-1])[..., None]
        pts = (mid + h * x).reshape(*lo.shape[:-1], -1)
        wts = (h * w).reshape(*lo.shape[:-1], -1) * np.ones_like(pts)
        return pts, wts

    def pdf(z):
        return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)

    L = half_width
    # the outer line: uniform panels, plus a grading towards 0 on the scale c, where
    # the inner integral of a kinked g turns within |z1| ~ c (rho near +-1)
    grade = c * 2.0 ** np.arange(-4, 60)
    cuts = np.unique(np.concatenate([
        np.linspace(-L, L, 2 * panels + 1), grade[grade < L], -grade[grade < L], [0.0]
    ]))
    h = 0.5 * np.diff(cuts)[:, None]
    mid = 0.5 * (cuts[1:] + cuts[:-1])[:, None]
    z1 = (mid + h * x).ravel()
    w1 = (h * w).ravel() * pdf(z1)
    if c == 0.0:
        return float(np.sum(w1 * f(a * z1) * g(b * rho * z1)))
    kink = np.clip(-rho * z1 / c, -L, L)
    p1, q1 = rule(np.full_like(z1, -L), kink)
    p2, q2 = rule(kink, np.full_like(z1, L))
    z2 = np.concatenate([p1, p2], axis=1)
    w2 = np.concatenate([q1, q2], axis=1) * pdf(z2)
    inner = np.sum(w2 * g(b * (rho * z1[:, None] + c * z2)), axis=1)
    return float(np.sum(w1 * f(a * z1) * inner))
