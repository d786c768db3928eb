"""Analytic NNGP/NTK of any activation by quadrature (kernelcomp._kernels.quadrature).

Parametrized over every compiled activation code, so activations added to
``kernelcomp._kernels.activations`` are covered without a change here.
References: the closed forms (ReLU, unit ReLU, erf), the linear kernel, an
independent adaptive 2-D quadrature (tests/naive.py), and wide random networks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp._kernels import quadrature as quad
from kernelcomp._kernels.activations import CODES, dphi, phi
from tests.naive import gaussian_pair_expectation, relative_error

FIXTURES = Path(__file__).parent / "fixtures"
ALL = sorted(CODES)
CLOSED = ["relu", "relu_unit", "erf"]
SNAP = 32.0 * float(np.finfo(np.float64).eps)


def _sphere(rng, n, d, radius=1.0):
    """Rows of norm ``radius sqrt(d)``: first-layer variance ``radius^2 w^2 + b^2``."""
    X = rng.standard_normal((n, d))
    return radius * math.sqrt(d) * X / np.linalg.norm(X, axis=1, keepdims=True)


def _expect(act, s11, s22, s12, nodes=quad.DEFAULT_NODES, ntk=True):
    a1, a2 = math.sqrt(s11), math.sqrt(s22)
    b1 = 1.0 / a1 if a1 > 0 else 0.0
    b2 = 1.0 / a2 if a2 > 0 else 0.0
    return quad.expectations(s12, a1, a2, b1, b2, CODES[act], ntk, snap=SNAP, **quad.rules(nodes))


# ---------------------------------------------------------------- the rules


@pytest.mark.parametrize("n", [2, 5, 24, 60])
def test_radial_rule_integrates_polynomials_exactly(n):
    r, w = quad.radial_rule(n)
    assert r.shape == w.shape == (n,) and (np.diff(r) > 0).all() and (w > 0).all()
    # degree 2n - 1 (beyond degree 24 the tiny weights of the far nodes are only
    # accurate in absolute terms, and the moments grow like Gamma(k/2))
    for k in range(min(2 * n, 25)):
        # int_0^inf r^k r exp(-r^2/2) dr = 2^(k/2) Gamma(k/2 + 1)
        exact = 2.0 ** (k / 2) * math.gamma(k / 2 + 1)
        assert abs(w @ r**k - exact) <= 1e-13 * exact, k


def test_angular_rule_is_symmetric():
    x, w = quad.angular_rule(7)
    assert np.array_equal(x, -x[::-1]) and np.array_equal(w, w[::-1])
    assert abs(w.sum() - 2.0) <= 1e-15 and abs(w @ x**12 - 2 / 13) <= 1e-15


# ---------------------------------------------------------------- per-pair expectations

PAIRS = [(1.0, 1.0, 0.5), (0.5, 2.0, -0.8), (1.3, 0.7, 0.95)]


@pytest.mark.parametrize("act", ALL)
@pytest.mark.parametrize("s11,s22,s12", PAIRS)
def test_expectations_match_adaptive_quadrature(act, s11, s22, s12):
    code = CODES[act]
    f = lambda z: phi(z, code)  # noqa: E731
    df = lambda z: dphi(z, code)  # noqa: E731
    k, kd = _expect(act, s11, s22, s12)
    assert abs(k - gaussian_pair_expectation(f, f, s11, s22, s12)) <= 1e-10
    assert abs(kd - gaussian_pair_expectation(df, df, s11, s22, s12)) <= 1e-10
    # NNGP only: the same K, no Kdot
    assert _expect(act, s11, s22, s12, ntk=False) == (k, 0.0)


@pytest.mark.parametrize("act", ALL)
def test_expectations_degenerate_pairs(act):
    code = CODES[act]
    f = lambda z: phi(z, code)  # noqa: E731
    df = lambda z: dphi(z, code)  # noqa: E731
    # identical and opposite units (rho = +-1), and a zero variance (u = 0)
    cases = ((1.2, 1.2, 1.2), (0.8, 0.8, -0.8), (0.6, 1.5, math.sqrt(0.9)), (0.0, 1.1, 0.0))
    for s11, s22, s12 in cases:
        k, kd = _expect(act, s11, s22, s12)
        assert math.isfinite(k) and math.isfinite(kd)
        assert abs(k - gaussian_pair_expectation(f, f, s11, s22, s12)) <= 1e-10
        assert abs(kd - gaussian_pair_expectation(df, df, s11, s22, s12)) <= 1e-10


@pytest.mark.parametrize("act", ALL)
def test_expectations_are_symmetric_in_the_pair(act):
    # bit-identical under swapping the two units: k(x, y) == k(y, x) exactly
    for s11, s22, s12 in PAIRS:
        assert _expect(act, s11, s22, s12) == _expect(act, s22, s11, s12)


def test_linear_expectations_are_the_covariance():
    for s11, s22, s12 in PAIRS:
        k, kd = _expect("linear", s11, s22, s12)
        assert abs(k - s12) <= 1e-14 and abs(kd - 1.0) <= 1e-14


def test_more_nodes_converge_at_large_variance():
    # erf at variances 4 and 6: the default is ~1e-9 there; 48 nodes reach 1e-12
    s11, s22, s12 = 4.0, 6.0, 3.1
    u = 1.0 / math.sqrt((1 + 2 * s11) * (1 + 2 * s22))
    exact_k = 2 / math.pi * math.asin(2 * s12 * u)
    exact_kd = 4 / math.pi * u / math.sqrt(1 - (2 * s12 * u) ** 2)
    errs = []
    for n in (12, 24, 48):
        k, kd = _expect("erf", s11, s22, s12, nodes=n)
        errs.append(max(abs(k - exact_k), abs(kd - exact_kd)))
    assert errs[0] > errs[1] > errs[2] and errs[2] <= 1e-12 and errs[1] <= 1e-8


# ---------------------------------------------------------------- kernels: closed forms

CLOSED_CONFIGS = [
    dict(depth=1),
    dict(depth=2, weight_std=1.3, bias_std=0.2),
    dict(depth=3, weight_std=[1.0, 1.4, 0.8, 1.1], bias_std=[0.1, 0.0, 0.3, None]),
    dict(depth=2, parameterization="standard", width=[50, 20], bias_std=0.3),
]


@pytest.mark.parametrize("act", CLOSED)
@pytest.mark.parametrize("cfg", CLOSED_CONFIGS, ids=lambda c: str(sorted(c.items())))
@pytest.mark.parametrize("d", [5, 90])  # fused dot products, and BLAS
@pytest.mark.parametrize("cls", [kc.NTK, kc.NNGP])
def test_quadrature_reproduces_closed_forms(rng, act, cfg, d, cls):
    X = _sphere(rng, 17, d)
    Y = _sphere(rng, 9, d, radius=0.8)
    X[4] = X[1]  # a duplicate
    exact = cls(activation=act, **cfg)
    q = cls(activation=act, method="quadrature", **cfg)
    assert q != exact and q._quadrature and not exact._quadrature
    assert relative_error(q(X), exact(X)) <= 1e-10
    assert relative_error(q(X, Y), exact(X, Y)) <= 1e-10
    assert relative_error(q.diag(X), exact.diag(X)) <= 1e-10
    K = q(X)
    assert np.array_equal(K, K.T) and K[1, 4] == K[1, 1] == K[4, 4] == q.diag(X)[1]


@pytest.mark.parametrize("cls", [kc.NTK, kc.NNGP])
def test_closed_form_route_is_unchanged(cls):
    # values written by the code before quadrature existed (commit d94ebb7; fused dot
    # products, so no BLAS summation order is involved): bit-identical
    ref = np.load(FIXTURES / "closed_form_route.npz")
    X, Y = ref["X"], ref["Y"]
    configs = [
        dict(depth=2, activation="relu", bias_std=0.3),
        dict(depth=3, activation="relu_unit", weight_std=1.2, bias_std=0.1),
        dict(depth=2, activation="erf", weight_std=1.4, bias_std=0.2),
        dict(depth=2, activation="relu", parameterization="standard", width=[40, 7], bias_std=None),
    ]
    for i, cfg in enumerate(configs):
        name = f"{cls.__name__}{i}"
        for method in ("auto", "closed_form"):
            k = cls(method=method, **cfg)
            assert not k._quadrature
            assert np.array_equal(k(X), ref[name + "_xx"]), (name, method)
            assert np.array_equal(k(X, Y), ref[name + "_xy"]), (name, method)
            assert np.array_equal(k.diag(X), ref[name + "_diag"]), (name, method)
            assert np.array_equal(k(X.astype(np.float32)), ref[name + "_xx32"]), (name, method)
        assert cls(**cfg).to_dict() == cls(method="auto", **cfg).to_dict()
        assert "quadrature_nodes" not in cls(**cfg).to_dict()["params"]


# ---------------------------------------------------------------- kernels: known values


@pytest.mark.parametrize("d", [4, 80])
def test_linear_activation_is_the_linear_kernel(rng, d):
    X = rng.standard_normal((15, d))
    Y = rng.standard_normal((7, d))
    ws, bs = [1.2, 0.9, 1.5], [0.3, 0.2, 0.0]
    # NNGP: S' = w^2 S + b^2 at every layer; NTK: T' = S' + w^2 T
    s = ws[0] ** 2 * X @ Y.T / d + bs[0] ** 2
    t = s.copy()
    for w, b in zip(ws[1:], bs[1:], strict=True):
        s, t = w * w * s + b * b, (w * w * s + b * b) + w * w * t
    nngp = kc.NNGP(depth=2, activation="linear", weight_std=ws, bias_std=bs)
    ntk = kc.NTK(depth=2, activation="linear", weight_std=ws, bias_std=bs)
    assert relative_error(nngp(X, Y), s) <= 1e-13
    assert relative_error(ntk(X, Y), t) <= 1e-13


@pytest.mark.parametrize("act", ALL)
def test_kernel_matches_the_recursion_on_adaptive_quadrature(rng, act):
    # the documented recursion, each layer's expectations by tests.naive's quadrature
    X = _sphere(rng, 3, 4)
    X[2] *= 0.6
    ws, bs = 1.1, 0.3
    code = CODES[act]
    f = lambda z: phi(z, code)  # noqa: E731
    df = lambda z: dphi(z, code)  # noqa: E731
    S = ws**2 * X @ X.T / 4 + bs**2
    T = S.copy()
    for _ in range(2):
        K = np.empty_like(S)
        Kd = np.empty_like(S)
        for i in range(3):
            for j in range(i, 3):
                args = (S[i, i], S[j, j], S[i, j])
                K[i, j] = K[j, i] = gaussian_pair_expectation(f, f, *args)
                Kd[i, j] = Kd[j, i] = gaussian_pair_expectation(df, df, *args)
        S, T = ws**2 * K + bs**2, ws**2 * K + bs**2 + ws**2 * Kd * T
    for cls, want in ((kc.NTK, T), (kc.NNGP, S)):
        k = cls(depth=2, activation=act, weight_std=ws, bias_std=bs, method="quadrature")
        assert relative_error(k(X), want) <= 1e-10, cls
        assert relative_error(k.diag(X), np.diag(want)) <= 1e-10, cls


# ---------------------------------------------------------------- kernels: contract


@pytest.mark.parametrize("act", ALL)
def test_gram_properties(rng, act):
    X = rng.standard_normal((21, 6))
    Y = rng.standard_normal((8, 6))
    k = kc.NTK(depth=2, activation=act, bias_std=0.2, method="quadrature")
    K = k(X)
    assert np.array_equal(K, K.T)
    assert np.linalg.eigvalsh(K).min() >= -1e-12 * np.abs(K).max()
    assert np.array_equal(k(X, Y), k(Y, X).T)
    assert np.array_equal(np.diag(K), k.diag(X))
    # float32: float64 arithmetic inside, rounded once
    K32 = k(X.astype(np.float32))
    assert K32.dtype == np.float32
    assert relative_error(K32, k(X.astype(np.float32).astype(np.float64))) <= 2e-7
    assert relative_error(K32, K) <= 2e-6


@pytest.mark.parametrize("d", [6, 70])
def test_gram_blocking_out_and_threads(rng, d):
    X = rng.standard_normal((45, d))
    Y = rng.standard_normal((13, d))
    k = kc.NNGP(depth=2, activation="tanh", weight_std=1.2, bias_std=0.1, method="quadrature")
    K = k(X)
    # fused dot products: bit-identical whatever the blocks; BLAS sums blocks in
    # its own order (rounding only)
    tol = 0.0 if d <= kc.kernels.FUSED_MAX_FEATURES else 1e-14
    B = kc.gram(k, X, block_rows=16)
    assert np.array_equal(B, B.T) and relative_error(B, K) <= tol
    out = np.empty((45, 45))
    kc.gram(k, X, block_rows=7, out=out)
    assert relative_error(out, K) <= tol
    C = np.empty((45, 13), dtype=np.float32)
    kc.gram(k, X, Y, block_rows=10, out=C)
    assert relative_error(C, k(X, Y)) <= 2e-7
    assert np.array_equal(k(X, n_jobs=1), K)
    assert relative_error(kc.gram(k, X, Y, block_rows=5), k(X, Y)) <= tol


def test_tile_size_does_not_change_the_result(rng, monkeypatch):
    import kernelcomp.kernels as kk

    X = rng.standard_normal((40, 5))
    k = kc.NTK(depth=1, activation="tanh", method="quadrature")
    K = k(X)
    monkeypatch.setattr(kk, "QUADRATURE_TILE", 7)
    assert np.array_equal(k(X), K)


def test_parameters_and_description():
    k = kc.NTK(depth=2, activation="ELU", method="quadrature", quadrature_nodes=12)
    assert k.activation == "elu" and k._quadrature
    desc = k.to_dict()
    assert desc["params"]["quadrature_nodes"] == 12 and desc["params"]["method"] == "quadrature"
    assert kc.NTK.from_dict(desc) == k
    q = kc.NNGP(activation="relu", method="quadrature")
    assert q.to_dict()["params"]["method"] == "quadrature"
    assert kc.NTK.from_dict(q.to_dict()) == q
    assert kc.NTK(activation="elu") != k
    # the closed form does not use the nodes: the same kernel with any of them
    assert kc.NTK(activation="elu", quadrature_nodes=12) == kc.NTK(activation="elu")
    assert "quadrature_nodes" not in kc.NTK(activation="elu").to_dict()["params"]
    for act in ALL:
        kc.NTK(activation=act)  # every compiled activation is accepted


BAD = [
    (dict(method="exact"), ValueError, "unknown method 'exact'"),
    (dict(method=None), ValueError, "unknown method None"),
    (dict(activation="tanh", method="closed_form"), ValueError, "'tanh' has no closed form"),
    (dict(quadrature_nodes=1), ValueError, "quadrature_nodes must be >= 2"),
    (dict(quadrature_nodes=500), ValueError, "quadrature_nodes must be <= 200"),
    (dict(quadrature_nodes=2.5), TypeError, "quadrature_nodes must be an integer"),
    (dict(activation="cosine"), ValueError, r"unknown activation 'cosine'; expected one of .*tanh"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kc.NTK(**kwargs)


def test_cuda_refuses_quadrature():
    match = "activation 'elu' by quadrature .* runs on device='cpu'"
    with pytest.raises(NotImplementedError, match=match):
        kc.NTK(activation="elu", method="quadrature")(np.ones((2, 3)), device="cuda")
    with pytest.raises(NotImplementedError, match="activation 'relu' by quadrature"):
        kc.NTK(method="quadrature")(np.ones((2, 3)), device="cuda")


# ---------------------------------------------------------------- wide random networks


@pytest.mark.parametrize(
    "depth,width", [(1, 20000), pytest.param(2, 3000, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("act", ALL)
def test_wide_random_networks_approach_the_kernels(rng, act, depth, width):
    # FCNetwork ("ntk" parameterization, N(0, 1) weights and biases): its last hidden
    # layer gives the NNGP estimate w^2 a a^T / h + b^2, kc.EmpiricalNTK its NTK; both
    # deviate from the infinite-width kernels by a Monte-Carlo error C / sqrt(h).
    # Measured C (mean of 3 seeds, max over entries): 1.2 to 4.8 over these cases;
    # the kernel of another activation (tanh for the others, erf for tanh) is 0.15 to
    # 0.8 away, so the bound 8 / sqrt(h) tells activations apart.
    X = _sphere(rng, 8, 5)
    ws, bs = 1.2, 0.3
    kw = dict(depth=depth, activation=act, weight_std=ws, bias_std=bs, method="quadrature")
    nngp, ntk = kc.NNGP(**kw)(X), kc.NTK(**kw)(X)
    e_nngp, e_ntk = [], []
    for seed in range(3):
        net = kc.FCNetwork.init(
            5, [width] * depth, activation=act, parameterization="ntk",
            weight_std=ws, bias_std=bs, bias=True, seed=seed,
        )
        _, cache = net.forward(X, cache=True)
        a = cache.inputs[-1]
        e_nngp.append(relative_error(ws**2 * a @ a.T / width + bs**2, nngp))
        e_ntk.append(relative_error(kc.EmpiricalNTK(net)(X), ntk))
    bound = 8.0 / math.sqrt(width)
    assert np.mean(e_nngp) <= bound and np.mean(e_ntk) <= bound, (e_nngp, e_ntk)
    other = kc.NTK(**{**kw, "activation": "erf" if act == "tanh" else "tanh"})
    assert relative_error(other(X), ntk) > 1.5 * bound


# ---------------------------------------------------------------- n = 20000


@pytest.mark.slow
def test_quadrature_gram_at_mnist_size():
    # the quadrature tile pass through kc.gram's blocks at n = 20000, both dot-product
    # paths (d <= 64 fused, d > 64 BLAS); 2 nodes keep it to a few minutes on 2 cores
    # (the homogeneous ReLU is then still exact in r; the check is self-consistency)
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        for d in (8, 100):
            X = rng.standard_normal(({N_MNIST}, d)).astype(np.float32)
            k = kc.NTK(depth=1, activation="relu", method="quadrature", quadrature_nodes=2)
            K = kc.gram(k, X, block_rows=7000)
            assert K.shape == ({N_MNIST}, {N_MNIST}) and K.dtype == np.float32
            assert bool((K == K.T).all()) and bool(np.isfinite(K).all())
            close(K[idx], k(X[idx], X), 1e-6)
            close(np.diag(K), k.diag(X), 1e-7)
            del K
    """, timeout=3000)


def test_closed_form_kernels_ignore_quadrature_nodes():
    # the closed forms never read quadrature_nodes: equal kernels, equal hashes, and a
    # description that round-trips (a Gram file's kernel compares equal to the caller's)
    a, b = kc.NTK(depth=2, quadrature_nodes=30), kc.NTK(depth=2)
    assert a == b and hash(a) == hash(b)
    assert kc.NTK.from_dict(a.to_dict()) == a
    q = kc.NTK(depth=2, activation="tanh", method="quadrature", quadrature_nodes=30)
    assert q != kc.NTK(depth=2, activation="tanh", method="quadrature")
    assert q.quadrature_nodes == 30
    assert kc.NTK.from_dict(q.to_dict()) == q
