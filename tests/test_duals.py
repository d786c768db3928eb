"""Per-entry duals of the activations (kernelcomp._kernels.duals) and their kernels.

The closed forms (ReLU family, leaky ReLU, linear, erf, GELU, ELU with the
bivariate normal cdf, itself checked against scipy and mpmath) and the Hermite
series of the smooth activations (tanh, SiLU, softplus, sigmoid; erf and GELU
too, through ``method="series"``) against an independent split Gauss-Legendre
2-D integral (tests/naive.py) at a few dozen covariances, ``rho = +-1``, tiny
and large variances included; then the kernels built on them: accuracy against
the recursion on that integral at pre-activation variances up to ~10 with
duplicated and antiparallel rows, bitwise properties, neural-tangents' GELU and
leaky ReLU (fixtures from scripts/make_nt_activation_fixtures.py), and a
Gram matrix at n = 20000.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy.special import erf, expit

import kernelcomp as kc
from kernelcomp._kernels import duals
from kernelcomp._kernels.activations import CODES
from tests.naive import relative_error, split_gauss_legendre_pair

FIXTURES = Path(__file__).parent / "fixtures"
SNAP = 32.0 * float(np.finfo(np.float64).eps)
SQ2 = math.sqrt(2.0)


def _gelu(z):
    return 0.5 * z * (1.0 + erf(z / SQ2))


def _dgelu(z):
    return 0.5 * (1.0 + erf(z / SQ2)) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


#: NumPy definitions, written independently of kernelcomp's compiled ones
NUMPY = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "relu_unit": (lambda z: SQ2 * np.maximum(z, 0.0), lambda z: SQ2 * (z > 0)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1.0, 0.01)),
    "linear": (lambda z: z, np.ones_like),
    "erf": (erf, lambda z: 2.0 / math.sqrt(math.pi) * np.exp(-z * z)),
    "gelu": (_gelu, _dgelu),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "silu": (lambda z: z * expit(z), lambda z: expit(z) * (1.0 + z * (1.0 - expit(z)))),
    "softplus": (lambda z: np.logaddexp(0.0, z), expit),
    "sigmoid": (expit, lambda z: expit(z) * (1.0 - expit(z))),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
            lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))),
}
CLOSED = ["relu", "relu_unit", "leaky_relu", "linear", "erf", "gelu", "elu"]
SERIES = ["tanh", "silu", "softplus", "sigmoid", "erf", "gelu"]

#: (S11, S22, rho): tiny and large variances, rho = +-1 and near it
TRIPLES = [
    (1.0, 1.0, 0.0), (1.0, 1.0, 1.0), (1.0, 1.0, -1.0), (0.3, 2.0, 0.45),
    (2.0, 0.3, -0.7), (10.0, 10.0, 1.0), (10.0, 10.0, -1.0), (10.0, 9.0, 0.9999),
    (10.0, 0.5, -0.999), (9.5, 7.0, 0.2), (1e-8, 3.0, 0.5), (1e-8, 1e-8, 1.0),
    (0.05, 0.02, -0.3), (4.0, 6.0, 0.97), (6.0, 4.0, -0.6), (3.7, 3.7, -0.9999),
]


def _ref(f, g, s11, s22, s12):
    return split_gauss_legendre_pair(f, g, s11, s22, s12, panels=12, nodes=32)


@functools.cache
def reference(act: str, s11: float, s22: float, rho: float) -> tuple[float, float, float]:
    """``(K, Kdot, scale)`` by the split Gauss-Legendre rule; ``scale = sqrt(E_1 E_2)``."""
    f, df = NUMPY[act]
    s12 = rho * math.sqrt(s11 * s22)
    k = _ref(f, f, s11, s22, s12)
    kd = _ref(df, df, s11, s22, s12)
    energy = [_ref(h, h, s, s, s) for h in (f, df) for s in (s11, s22)]
    scale = max(math.sqrt(energy[0] * energy[1]), math.sqrt(energy[2] * energy[3]))
    return k, kd, scale


def _series(act: str, s11: float, s22: float, s12: float) -> tuple[float, float]:
    s = np.array([s11, s22])
    m, bound = duals.series_degree(CODES[act], s, 1e-11)
    assert bound <= 1e-11
    c, e = duals.series_coefficients(CODES[act], s, m)
    cols = [np.ascontiguousarray(a[:, i]) for a in (c, e) for i in (0, 1)]
    return duals.series_dual(s11, s22, s12, *cols, m, SNAP)


@pytest.mark.parametrize("act", CLOSED)
@pytest.mark.parametrize("triple", TRIPLES, ids=str)
def test_closed_forms_match_the_2d_integral(act, triple):
    s11, s22, rho = triple
    k, kd = duals.closed_dual(CODES[act], s11, s22, rho * math.sqrt(s11 * s22), SNAP)
    rk, rkd, scale = reference(act, *triple)
    assert abs(k - rk) <= 1e-12 * scale + 1e-300, (k, rk)
    assert abs(kd - rkd) <= 1e-12 * scale + 1e-300, (kd, rkd)


#: ELU at the edges of Genz's branches (|rho| = 0.3, 0.75, 0.925) and tiny/large variances
ELU_TRIPLES = [
    (10.0, 10.0, 0.2999), (10.0, 10.0, -0.3), (10.0, 0.01, 0.75), (0.1, 7.0, -0.7499),
    (1e-8, 10.0, -0.9249), (3.0, 3.0, 0.925), (10.0, 10.0, 0.99), (7.0, 1e-4, -0.95),
    (1e-8, 1e-8, -1.0), (10.0, 1e-8, 1.0),
]


@pytest.mark.parametrize("triple", ELU_TRIPLES, ids=str)
def test_elu_closed_form_at_the_branch_edges(triple):
    s11, s22, rho = triple
    s12 = rho * math.sqrt(s11 * s22)
    k, kd = duals.closed_dual(CODES["elu"], s11, s22, s12, SNAP)
    rk, rkd, scale = reference("elu", *triple)
    assert abs(k - rk) <= 1e-12 * scale and abs(kd - rkd) <= 1e-12 * scale, (k, rk, kd, rkd)
    # symmetric in the pair, bit for bit
    assert duals.closed_dual(CODES["elu"], s22, s11, s12, SNAP) == (k, kd)


def _bvn_mpmath(h, k, r):
    """P(X < h, Y < k) as the 1-D integral of phi(x) Phi((k - r x) / sqrt(1 - r^2)), 30 digits."""
    import mpmath as mp

    mp.mp.dps = 30
    h, k, r = mp.mpf(h), mp.mpf(k), mp.mpf(r)
    s = mp.sqrt(1 - r * r)
    # split where the inner cdf steps (x = k / r, width s / r) and near h
    edges = [k / r + j * s / r for j in (-8, -2, 0, 2, 8)] if r else []
    cuts = sorted({e for e in edges if e < h - 1e-6} | {h - 1})
    return float(mp.quad(lambda x: mp.npdf(x) * mp.ncdf((k - r * x) / s),
                         [-mp.inf, *[c for c in cuts if c < h], h]))


#: correlations on both sides of Genz's branch edges, near +-1, and +-1
BVN_RHOS = [-1.0, -0.999999, -0.99, -0.925, -0.9249, -0.75, -0.7499, -0.3, -0.2999, -0.05, 0.0,
            0.2999, 0.3, 0.7499, 0.75, 0.9249, 0.925, 0.99, 0.999999, 1.0]


@pytest.mark.parametrize("rho", BVN_RHOS)
def test_bivariate_normal_cdf_against_scipy(rho):
    from scipy.stats import multivariate_normal, norm

    rng = np.random.default_rng(int(1000 * (rho + 2)))
    for h, k in [*rng.uniform(-5.0, 5.0, size=(6, 2)).tolist(), [0.0, 0.0], [1.5, -1.5]]:
        got = duals.bvn_cdf(h, k, rho)
        assert got == duals.bvn_cdf(k, h, rho)  # order-independent, bit for bit
        if abs(rho) == 1.0:  # Y = +-X
            want = norm.cdf(min(h, k)) if rho > 0 else max(0.0, norm.cdf(h) - norm.cdf(-k))
        else:
            mvn = multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]],
                                      abseps=1e-13, releps=1e-13, maxpts=10**7)
            want = mvn.cdf([h, k])
        assert abs(got - want) <= 1e-14, (h, k, got, want)


@pytest.mark.parametrize("rho", [0.0, 0.2, 0.5, 0.8, 0.93, 0.999])
def test_bivariate_normal_cdf_is_relatively_exact_in_the_lower_tail(rho):
    # the ELU terms multiply Phi_2 far in the lower tail by e^{S}: relative accuracy counts
    for h, k in ((-6.0, -6.5), (-7.5, -2.0), (-4.0, -4.0), (-1.0, -7.0)):
        got = duals.bvn_cdf(h, k, rho)
        want = _bvn_mpmath(h, k, rho)
        assert abs(got - want) <= 1e-8 * want, (h, k, got, want)


@pytest.mark.parametrize("act", SERIES)
@pytest.mark.parametrize("triple", TRIPLES, ids=str)
def test_series_matches_the_2d_integral(act, triple):
    s11, s22, rho = triple
    k, kd = _series(act, s11, s22, rho * math.sqrt(s11 * s22))
    rk, rkd, scale = reference(act, *triple)
    # the tail bound is 1e-11 sqrt(E_1 E_2); the Gauss-Hermite coefficients add rounding
    assert abs(k - rk) <= 2e-11 * scale, (k, rk)
    assert abs(kd - rkd) <= 2e-11 * scale, (kd, rkd)


def test_series_degree_grows_with_the_variance_and_reports_its_bound():
    degs = [duals.series_degree(CODES["tanh"], np.array([q]), 1e-11) for q in (0.1, 1.0, 10.0)]
    assert degs[0][0] < degs[1][0] < degs[2][0] <= duals.MAX_DEGREE
    assert all(b <= 1e-11 for _, b in degs)
    # a sample's coefficients do not depend on the other samples
    c1, _ = duals.series_coefficients(CODES["silu"], np.array([0.7, 3.0]), 40)
    c2, _ = duals.series_coefficients(CODES["silu"], np.array([3.0, 0.1, 0.7]), 40)
    assert np.array_equal(c1[:, 0], c2[:, 2]) and np.array_equal(c1[:, 1], c2[:, 0])


def test_closed_dual_of_unknown_codes_is_nan():
    assert all(math.isnan(v) for v in duals.closed_dual(CODES["tanh"], 1.0, 1.0, 0.5, SNAP))


def test_gelu_closed_form_is_neural_tangents_diagonal():
    # neural-tangents' separate diagonal formula (nngp_fn_diag) agrees with the pair's at rho = 1
    for q in (1e-6, 0.5, 3.0, 10.0):
        want = q * (0.25 + (q / ((q + 1) * math.sqrt(1 + 2 * q))
                            + 0.5 * math.atan2(q, math.sqrt(1 + 2 * q))) / math.pi)
        got, _ = duals.closed_dual(CODES["gelu"], q, q, q, SNAP)
        assert abs(got - want) <= 1e-15 * max(1.0, want)


# ---------------------------------------------------------------- kernels


def _recursion(act, X, ws, bs):
    """The NTK/NNGP recursion of depth 2 on the split Gauss-Legendre integral."""
    f, df = NUMPY[act]
    n, d = X.shape
    S = ws**2 * X @ X.T / d + bs**2
    T = S.copy()
    for _ in range(2):
        K = np.empty_like(S)
        Kd = np.empty_like(S)
        for i in range(n):
            for j in range(i, n):
                args = (S[i, i], S[j, j], S[i, j])
                K[i, j] = K[j, i] = _ref(f, f, *args)
                Kd[i, j] = Kd[j, i] = _ref(df, df, *args)
        S, T = ws**2 * K + bs**2, ws**2 * K + bs**2 + ws**2 * Kd * T
    return S, T


KERNEL_ACTS = [a for a in NUMPY if a != "relu_unit"]


@pytest.mark.parametrize("act", KERNEL_ACTS)
def test_kernels_to_1e9_at_large_variances_with_duplicate_and_antiparallel_rows(rng, act):
    # rows of squared norm up to 2.2 d, weight_std 2: first-layer variances up to ~9,
    # correlations +1 (duplicate), -1 (antiparallel) and in between
    d = 6
    x = rng.standard_normal(d)
    x *= math.sqrt(2.2 * d) / np.linalg.norm(x)
    X = np.stack([x, x, -x, 0.3 * rng.standard_normal(d), 0.9 * x + 0.2 * rng.standard_normal(d)])
    ws, bs = 2.0, 0.3
    S, T = _recursion(act, X, ws, bs)
    assert np.diag(ws**2 * X @ X.T / d).max() > 8.0
    for cls, want in ((kc.NTK, T), (kc.NNGP, S)):
        k = cls(depth=2, activation=act, weight_std=ws, bias_std=bs)
        assert k._route == ("closed" if act in CLOSED else "series")
        K = k(X)
        assert relative_error(K, want) <= 1e-9, cls
        assert np.array_equal(K[0], K[1]) and np.array_equal(K, K.T)
        assert K[0, 1] == K[0, 0] == k.diag(X)[0]


@pytest.mark.parametrize("act", sorted(set(CLOSED + SERIES)))
def test_gram_properties_of_every_route(rng, act, monkeypatch):
    import kernelcomp.kernels as kk

    X = rng.standard_normal((45, 6)) * rng.uniform(0.2, 1.8, size=(45, 1))
    X[7] = X[3]
    X[9] = -X[3]
    Y = rng.standard_normal((13, 6)) * 1.7
    Y[2] = X[3]
    k = kc.NTK(depth=2, activation=act, bias_std=0.2, weight_std=1.3)
    K = k(X)
    assert np.array_equal(K, K.T) and np.array_equal(np.diag(K), k.diag(X))
    assert K[3, 7] == K[3, 3] and np.isfinite(K).all()
    assert np.array_equal(k(X, n_jobs=1), K)
    assert np.array_equal(kc.gram(k, X, block_rows=7), K)
    C = k(X, Y)
    assert np.array_equal(C, k(Y, X).T)
    assert relative_error(C, k(np.vstack([X, Y]))[:45, 45:]) <= 1e-12
    monkeypatch.setattr(kk, "CPU_TILE", 5)
    assert np.array_equal(k(X), K) and np.array_equal(k(X, Y), C)


def test_series_route_through_the_method_argument(rng):
    X = rng.standard_normal((20, 4))
    for act in ("erf", "gelu"):
        closed = kc.NTK(depth=3, activation=act, bias_std=0.1)(X)
        series = kc.NTK(depth=3, activation=act, bias_std=0.1, method="series")(X)
        assert relative_error(series, closed) <= 1e-10
    with pytest.raises(ValueError, match="'relu' is not smooth"):
        kc.NTK(activation="relu", method="series")
    assert kc.NTK(activation="elu")._route == "closed"
    assert kc.NTK(activation="elu", method="quadrature")._route == "quadrature"


def test_neural_tangents_gelu_and_leaky_relu_fixtures():
    data = np.load(FIXTURES / "nt_activations.npz")
    X, Y = data["X"], data["Y"]
    names = [str(v) for v in data["names"]]
    assert len(names) >= 8
    for name in names:
        act, kernel, depth, ws, bs = name.split("|")
        cls = kc.NTK if kernel == "ntk" else kc.NNGP
        k = cls(depth=int(depth), activation=act, weight_std=float(ws), bias_std=float(bs))
        for label, args in (("xx", (X,)), ("xy", (X, Y))):
            want = data[f"{name}|{label}"]
            assert relative_error(k(*args), want) <= 1e-12, (name, label)


@pytest.mark.slow
def test_series_gram_at_mnist_size():
    # the Hermite-series tile pass through kc.gram's blocks at n = 20000, unequal variances
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 12)) * rng.uniform(0.3, 1.2, size=({N_MNIST}, 1))
        k = kc.NTK(depth=2, activation="sigmoid", bias_std=0.1)
        K = kc.gram(k, X.astype(np.float32), block_rows=7000)
        assert K.shape == ({N_MNIST}, {N_MNIST}) and K.dtype == np.float32
        assert bool((K == K.T).all()) and bool(np.isfinite(K).all())
        close(K[idx], k(X[idx].astype(np.float32), X.astype(np.float32)), 1e-6)
        close(np.diag(K), k.diag(X.astype(np.float32)), 1e-7)
        del K
    """, timeout=3000)


def test_elu_closed_form_refuses_variances_whose_exponentials_overflow():
    # e^{2S} of the diagonal overflows beyond S ~ 355: refused in words, not NaN entries
    X = np.array([[19.0], [-19.0], [9.5]])  # first-layer variances 361, 361, 90
    with pytest.raises(ValueError, match=r"overflows .*ELU's closed form holds to .* 350"):
        kc.NTK(depth=1, activation="elu")(X)
    K = kc.NTK(depth=1, activation="elu")(X * (18.0 / 19.0))  # variances up to 324
    assert np.isfinite(K).all() and np.array_equal(K, K.T)
    assert np.isfinite(kc.NTK(depth=1, activation="elu", method="quadrature")(X)).all()


def test_relu_step32_in_float32_within_its_error_analysis(rng):
    """The float32 ReLU step against the float64 one on the same (float32) covariances.

    Inputs: variances in [0.1, 3] and correlations uniform in [-1, 1], ones at
    ``1 - |rho| = 10^-k`` (k = 1 ... 12) and log-uniform in [1e-7, 1e-1], both signs,
    and zero-variance factors. The covariance is rounded to float32 first, and the
    float64 step gets that very value, so the difference is the float32 step's own:
    ``K`` (slope ``Kdot <= 1`` in ``rho``) within ~8 u of ``sqrt(S_ii S_jj)``;
    ``Kdot`` within ``~u / (2 pi theta)`` in general, within ``u / (4 pi theta)``
    where ``theta`` is small (``d = 1 - |rho|`` exact to ~u relative, not to float32's
    spacing near 1: a step that took ``d`` from the float32 ``rho`` is off by
    ~2.3 u / (2 pi theta) there), and where ``d <= snap`` (float32's ``u = 2^-24``
    here: rounding noise) snapped to ``|rho| = 1``, off by at most
    ``sqrt(2 snap) / (2 pi)``.
    """
    step32 = duals.relu_step32
    split = duals.split32
    u = 2.0**-24
    snap32 = np.float32(u)
    n = 4000
    sii = rng.uniform(0.1, 3.0, n)
    sjj = rng.uniform(0.1, 3.0, n)
    rho = rng.uniform(-1.0, 1.0, n)
    near = 1.0 - 10.0 ** -np.arange(1, 13)
    rho[: 2 * near.size] = np.concatenate([near, -near])
    rho[100:2000] = np.sign(rho[100:2000]) * (1.0 - 10.0 ** rng.uniform(-7.0, -1.0, 1900))
    rho[-2:] = [1.0, -1.0]
    s32 = (rho * np.sqrt(sii * sjj)).astype(np.float32)
    sii[-3] = 0.0  # a zero-variance position: its factors are 0
    for e in range(n):
        ai, bi = math.sqrt(sii[e]), (1.0 / math.sqrt(sii[e]) if sii[e] > 0 else 0.0)
        aj, bj = math.sqrt(sjj[e]), 1.0 / math.sqrt(sjj[e])
        s = np.float64(s32[e])
        k64, kd64 = duals.relu_step(s, ai, aj, bi, bj, 32 * 2.0**-52)
        bih, bil = split(bi)
        bjh, bjl = split(bj)
        k32, kd32 = step32(
            s32[e], np.float32(ai), np.float32(aj), *(np.float32(v) for v in (bih, bjh, bil, bjl)),
            snap32,
        )
        # compiled for float32 arguments (a float64 conv recursion in the same process may
        # have compiled a float64 version too: the test must not depend on test order)
        assert (numba.float32,) * 8 in step32.signatures
        assert np.isfinite(k32) and np.isfinite(kd32)
        assert abs(float(k32) - k64) <= 8 * u * max(ai * aj, 1e-300), (e, rho[e])
        d = 1.0 - min(abs(s * bi * bj), 1.0)
        theta = math.acos(1.0 - d)
        if d <= 2 * u:  # snapped (or within rounding of the snap)
            bound = math.sqrt(2 * 2 * u) / (2 * math.pi) + 8 * u
        elif d < 1e-3:  # d exact to ~u relative: far below float32's spacing near 1
            bound = 2 * u + 0.5 * u / (2 * math.pi * math.sin(theta))
        else:
            bound = 8 * u + 4 * u / (2 * math.pi * max(math.sin(theta), 1e-300))
        assert abs(float(kd32) - kd64) <= bound, (e, rho[e], d, kd32, kd64)
