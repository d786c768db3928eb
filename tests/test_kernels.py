"""Analytic NTK/NNGP: reference values, the NumPy recursion, degenerate inputs, errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

import kernelcomp as kc
import kernelcomp.kernels as kernels_module
from kernelcomp._kernels import analytic as core
from kernelcomp._parallel import new_ticks
from tests.naive import analytic_diag, analytic_kernel, relative_error, symmetric_error

FIXTURES = Path(__file__).parent / "fixtures"
TOL = {np.float64: 1e-10, np.float32: 2e-6}


def _fixture_cases():
    index = json.loads((FIXTURES / "nt_reference_index.json").read_text())
    return index["configs"]


@pytest.fixture(scope="module")
def nt_reference():
    return np.load(FIXTURES / "nt_reference.npz")


def _kwargs(cfg):
    kw = dict(
        depth=cfg["L"],
        activation=cfg["activation"],
        weight_std=cfg["W_std"],
        bias_std=cfg["b_std"],
        parameterization=cfg["parameterization"],
    )
    if cfg["parameterization"] == "standard":
        kw["width"] = 512
    return kw


# ---------------------------------------------------------------- neural-tangents


@pytest.mark.parametrize("cfg", _fixture_cases(), ids=lambda c: f"c{c['id']:02d}")
def test_matches_neural_tangents(cfg, nt_reference):
    X, Y = nt_reference["X"], nt_reference["Y"]
    for name, cls in (("nngp", kc.NNGP), ("ntk", kc.NTK)):
        k = cls(**_kwargs(cfg))
        for part, args in (("xx", (X,)), ("xy", (X, Y))):
            ref = nt_reference[cfg["keys"][f"{name}_{part}"]]
            got = k(*args)
            assert relative_error(got, ref) <= 1e-6, (name, part)  # the bound
            # off the diagonal we agree to rounding (neural-tangents' diagonal is
            # only ~1e-8 accurate; ours is checked against the exact values below)
            off = ~np.eye(*ref.shape, dtype=bool) if part == "xx" else np.ones(ref.shape, bool)
            assert relative_error(got[off], ref[off]) <= 1e-12, (name, part)
        # our diagonal is exact (neural-tangents' own is only ~1e-8 accurate)
        exact = nt_reference[cfg["keys"][f"{name}_xx_diag_exact"]]
        assert relative_error(k.diag(X), exact) <= 1e-13
        assert relative_error(np.diag(k(X)), exact) <= 1e-13


# ---------------------------------------------------------------- NumPy reference

CONFIGS = [
    dict(depth=0),
    dict(depth=1),
    dict(depth=1, activation="erf", bias_std=0.5),
    dict(depth=2, weight_std=1.4, bias_std=0.2),
    dict(depth=3, weight_std=[1.0, 2.0, 0.5, 1.2], bias_std=[0.1, 0.0, 0.3, None]),
    dict(depth=4, activation="erf", weight_std=1.3, bias_std=0.1),
    dict(depth=2, parameterization="standard", width=[100, 30], bias_std=0.3),
    dict(depth=2, parameterization="standard", width=64, bias_std=None, activation="erf"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: json.dumps(c, sort_keys=True))
@pytest.mark.parametrize("d", [5, 100])  # fused dot products, and BLAS
@pytest.mark.parametrize("cls,want", [(kc.NTK, "ntk"), (kc.NNGP, "nngp")])
def test_matches_numpy_recursion(rng, cfg, d, cls, want):
    X = rng.standard_normal((37, d))
    Y = rng.standard_normal((23, d)) * 2.0
    k = cls(**cfg)
    ref_xy = analytic_kernel(X, Y, want=want, **cfg)
    assert symmetric_error(k(X), X, want=want, **cfg) <= TOL[np.float64]
    assert relative_error(k(X, Y), ref_xy) <= TOL[np.float64]
    assert relative_error(k.diag(X), analytic_diag(X, want=want, **cfg)) <= TOL[np.float64]


@pytest.mark.parametrize("cls", [kc.NTK, kc.NNGP])
def test_unit_relu_is_relu_with_scaled_weights(rng, cls):
    # sqrt(2) relu(z) feeding a Dense layer of std s == relu(z) feeding std sqrt(2) s
    X = rng.standard_normal((30, 4))
    s2 = 1.2 * math.sqrt(2)
    unit = cls(depth=2, activation="relu_unit", weight_std=1.2, bias_std=0.3)
    plain = cls(depth=2, activation="relu", weight_std=[1.2, s2, s2], bias_std=0.3)
    assert relative_error(unit(X), plain(X)) <= 1e-14
    assert relative_error(unit.diag(X), plain.diag(X)) <= 1e-14
    std = cls(depth=1, activation="relu_unit", parameterization="standard", width=50)
    cfg = dict(depth=1, parameterization="standard", width=100, weight_std=[1.0, math.sqrt(2)])
    # standard: the width term n_l K doubles too, i.e. width 50 of sqrt(2) relu == width 100
    assert symmetric_error(std(X), X, want=cls.__name__.lower(), **cfg) <= 1e-10


@pytest.mark.parametrize("d", [6, 90])
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_float32(rng, d, activation):
    X = rng.standard_normal((60, d)).astype(np.float32)
    Y = rng.standard_normal((20, d)).astype(np.float32)
    k = kc.NTK(depth=3, activation=activation, bias_std=0.2)
    K32, C32, D32 = k(X), k(X, Y), k.diag(X)
    assert K32.dtype == C32.dtype == D32.dtype == np.float32
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    assert relative_error(K32, k(X64)) <= TOL[np.float32]
    assert relative_error(C32, k(X64, Y64)) <= TOL[np.float32]
    assert relative_error(D32, k.diag(X64)) <= TOL[np.float32]
    # mixed inputs and explicit dtypes
    assert k(X, Y64).dtype == np.float64
    assert k(X64, dtype="float32").dtype == np.float32
    assert k(X, dtype=np.float64).dtype == np.float64


# ---------------------------------------------------------------- dot-product routes


def _force_route(monkeypatch, fused: bool) -> None:
    monkeypatch.setattr(kernels_module, "FUSED_MAX_FEATURES", 10**9 if fused else 0)


def test_neural_tangents_fixtures_with_blas_dot_products(nt_reference, monkeypatch):
    # the fixtures' d = 7 takes the fused route; the BLAS route must agree with them too
    _force_route(monkeypatch, fused=False)
    X, Y = nt_reference["X"], nt_reference["Y"]
    for cfg in _fixture_cases():
        for name, cls in (("nngp", kc.NNGP), ("ntk", kc.NTK)):
            k = cls(**_kwargs(cfg))
            for part, args in (("xx", (X,)), ("xy", (X, Y))):
                ref = nt_reference[cfg["keys"][f"{name}_{part}"]]
                got = k(*args)
                off = ~np.eye(*ref.shape, dtype=bool) if part == "xx" else np.ones(ref.shape, bool)
                assert relative_error(got[off], ref[off]) <= 1e-12, (cfg["id"], name, part)
            exact = nt_reference[cfg["keys"][f"{name}_xx_diag_exact"]]
            assert relative_error(np.diag(k(X)), exact) <= 1e-13


@pytest.mark.parametrize(
    "d,dtype",
    # the last fused dimension and the first BLAS one
    [(64, np.float64), (65, np.float64), (64, np.float32), (65, np.float32)],
)
@pytest.mark.parametrize("cfg", [CONFIGS[3], CONFIGS[5], CONFIGS[6]], ids=["relu", "erf", "std"])
def test_routes_near_the_crossover_match_the_reference(rng, monkeypatch, d, dtype, cfg):
    X = rng.standard_normal((45, d))
    X[5] = X[2]  # identical rows must still reproduce the diagonal exactly
    Y = rng.standard_normal((21, d))
    k = kc.NTK(**cfg)
    Xd, Yd = X.astype(dtype), Y.astype(dtype)
    K, C = k(Xd), k(Xd, Yd)
    assert K.dtype == C.dtype == dtype
    x64, y64 = Xd.astype(np.float64), Yd.astype(np.float64)
    tol = TOL[dtype]
    ref = analytic_kernel(x64, **cfg)
    np.fill_diagonal(ref, analytic_diag(x64, **cfg))
    ref[5, 2] = ref[2, 5] = ref[2, 2]  # the matrix recursion is ~1e-8 there: use the exact value
    assert relative_error(K, ref) <= tol
    assert relative_error(C, analytic_kernel(x64, y64, **cfg)) <= tol
    assert np.array_equal(K, K.T) and np.array_equal(np.diag(K), k.diag(Xd))
    assert K[5, 2] == K[2, 2] == K[5, 5]
    for fused in (True, False):  # both routes agree wherever they are taken
        _force_route(monkeypatch, fused)
        assert relative_error(k(Xd), K) <= (1e-13 if dtype == np.float64 else tol)
        assert relative_error(k(Xd, Yd), C) <= (1e-13 if dtype == np.float64 else tol)


@pytest.mark.parametrize("d", [1, 3, 4, 5, 8, 11, 16])
def test_fused_dot_products_sum_features_in_order(rng, d):
    """The fused loop (four features per sweep) gives exactly the sequential float64 sum.

    That is ``((x0 y0 + x1 y1) + x2 y2) + ...``: the tile pass fed these sums as
    precomputed dot products (no snapping) must then reproduce the fused result
    bit for bit.
    """
    X = rng.standard_normal((70, d)) * rng.uniform(0.1, 10.0, size=d)
    Y = rng.standard_normal((50, d))
    seq = np.zeros((70, 50))
    for j in range(d):
        seq = seq + X[:, j, None] * Y[None, :, j]
    k = kc.NTK(depth=2, bias_std=0.3)
    px, py = k._prepare(X), k._prepare(Y)
    assert px.Xt.dtype == np.float64 and px.Xt.shape == (d, 70)
    args = (px.X, py.Xt, px.a, px.b, px.dg, px.sqn, px.rsq, py.a, py.b, py.sqn, py.rsq)
    p = k._layer_params(d)
    p.update(series=False, deg=px.deg, cx=px.c, ex=px.e, cy=py.c, ey=py.e)
    fused = np.empty((70, 50))
    none = np.empty((0, 0))
    core.tiles(*args, symmetric=False, use_out_dot=False, tile=16, out=fused, nngp=none,
               dg_nngp=np.empty(0), ticks=new_ticks(), snap=kernels_module._SNAP,
               snap_dot=0.0, **p)  # fmt: skip
    given = seq.copy()
    core.tiles(*args, symmetric=False, use_out_dot=True, tile=16, out=given, nngp=none,
               dg_nngp=np.empty(0), ticks=new_ticks(), snap=kernels_module._SNAP,
               snap_dot=-1.0, **p)  # fmt: skip
    assert np.array_equal(fused, given)
    assert np.array_equal(fused, k(X, Y))


@pytest.mark.slow
def test_fused_gram_at_mnist_size():
    # float64, d <= FUSED_MAX_FEATURES: the tile pass's own dot products, n = 20000
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 10))
        k = kc.NTK(depth=4, bias_std=0.1)
        K = k(X)
        assert K.shape == ({N_MNIST}, {N_MNIST})
        # the same operations wherever an entry lies: rows of a cross Gram are bit-identical
        assert bool((K[idx] == k(X[idx], X)).all())
        assert bool((K[:, idx].T == k(X[idx], X)).all())
        assert bool((np.diag(K)[idx] == k.diag(X[idx])).all())
    """)


# ---------------------------------------------------------------- degenerate inputs


@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("d", [4, 80])
def test_degenerate_inputs(rng, activation, d):
    x = rng.standard_normal(d)
    X = np.stack([x, x, 2.0 * x, -x, np.zeros(d), rng.standard_normal(d), x])
    for cls, want in ((kc.NTK, "ntk"), (kc.NNGP, "nngp")):
        for bias_std in (0.0, 0.4):
            k = cls(depth=3, activation=activation, bias_std=bias_std)
            K = k(X)
            assert np.isfinite(K).all()
            cfg = dict(depth=3, activation=activation, bias_std=bias_std, want=want)
            # the NumPy oracle itself is only ~1e-8 accurate at correlations of +-1
            # (sqrt of a cancelling determinant); exact checks follow
            assert symmetric_error(K, X, **cfg) <= 1e-7
            # identical rows reproduce the diagonal exactly, in both paths
            diag = k.diag(X)
            for i, j in ((0, 1), (0, 6), (1, 6)):
                assert K[i, j] == diag[i] == K[j, j] == K[j, i]
            C = k(X[:2], X)
            assert C[0, 0] == C[0, 1] == C[1, 6] == diag[0]
            assert np.isfinite(C).all()


def test_zero_rows_without_bias_follow_neural_tangents(rng):
    X = np.zeros((3, 5))
    K = kc.NTK(depth=2, bias_std=0.0)(X)
    assert np.array_equal(K, np.zeros((3, 3)))
    # theta = pi/2 convention: Kdot = 1/4 multiplies the incoming tangent kernel
    Z = np.vstack([np.zeros(5), rng.standard_normal(5)])
    K = kc.NTK(depth=1, bias_std=0.0)(Z)
    assert K[0, 1] == 0.0 and np.isfinite(K).all()


def test_scalar_and_parallel_correlations():
    # correlations of exactly +-1 for vectors of different norms
    x = np.array([[1.0, 2.0, 3.0]])
    X = np.vstack([x, 3.0 * x, -0.5 * x])
    K = kc.NNGP(depth=1)(X)
    norms = np.linalg.norm(X, axis=1) / math.sqrt(3)
    assert K[0, 1] == pytest.approx(norms[0] * norms[1] / 2, rel=1e-15)
    assert K[0, 2] == 0.0  # anti-parallel: E[relu(u) relu(-u)] = 0


def test_compiled_arccos_arcsin_accuracy():
    xs = np.concatenate([np.linspace(-1, 1, 20001), [1 - 1e-16, -1 + 1e-16, 0.5, -0.5, 1e-300]])
    ac = np.array([core.acos(v) for v in xs])
    asn = np.array([core.asin(v) for v in xs])
    assert np.max(np.abs(ac - np.arccos(xs))) <= 4.5e-16
    assert np.max(np.abs(asn - np.arcsin(xs))) <= 4.5e-16
    assert core.acos(1.0) == 0.0 and core.acos(-1.0) == math.pi


# ---------------------------------------------------------------- kernel objects


def test_kernel_objects_are_values():
    k = kc.NTK(depth=2, weight_std=[1.0, 2.0, 3.0], bias_std=0.1)
    assert k == kc.NTK(depth=2, weight_std=(1.0, 2.0, 3.0), bias_std=0.1)
    assert hash(k) == hash(kc.NTK(depth=2, weight_std=(1.0, 2.0, 3.0), bias_std=0.1))
    assert k != kc.NNGP(depth=2, weight_std=[1.0, 2.0, 3.0], bias_std=0.1)
    assert k != kc.NTK(depth=3)
    assert pickle.loads(pickle.dumps(k)) == k
    assert copy.deepcopy(k) == k
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.depth = 3  # type: ignore[misc]
    assert "NTK(depth=2" in repr(k)
    assert kc.NTK.from_dict(json.loads(json.dumps(k.to_dict()))) == k
    s = kc.NNGP(depth=1, parameterization="standard", width=[7], bias_std=None)
    assert kc.NTK.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# ---------------------------------------------------------------- errors

BAD_KERNELS = [
    (dict(depth=-1), ValueError, "depth must be >= 0"),
    (dict(depth=1.5), TypeError, "depth must be an integer"),
    (dict(activation="cosine"), ValueError, "unknown activation 'cosine'"),
    (dict(activation=3), TypeError, "activation must be a string"),
    (dict(weight_std=[1.0, 2.0, 3.0]), ValueError, r"weight_std must have one value per Dense"),
    (dict(bias_std=[0.1]), ValueError, r"bias_std must have one value per Dense"),
    (dict(weight_std=-1.0), ValueError, "weight_std must be >= 0"),
    (dict(weight_std=float("nan")), ValueError, "weight_std must be finite"),
    (dict(weight_std="big"), TypeError, "weight_std must be a number or a sequence"),
    (dict(parameterization="mean_field"), ValueError, "unknown parameterization"),
    (dict(parameterization="standard"), ValueError, "needs the hidden width"),
    (dict(parameterization="standard", width=0), ValueError, "width must be >= 1"),
    (dict(parameterization="standard", depth=2, width=[3]), ValueError, "one value per hidden"),
    (dict(width=10), ValueError, "width is only used with parameterization='standard'"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_KERNELS)
def test_bad_kernel_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kc.NTK(**kwargs)


BAD_INPUTS = [
    (np.array([[1.0, np.nan]]), None, ValueError, "X contains NaN"),
    (np.array([[1.0, np.inf]]), None, ValueError, "X contains infinity"),
    (np.ones(3), None, ValueError, r"X must be a 2-D array.*got 1-D"),
    (np.ones((2, 2, 2)), None, ValueError, r"X must be a 2-D array.*got 3-D"),
    (np.ones((0, 3)), None, ValueError, "X has 0 samples"),
    (np.ones((2, 0)), None, ValueError, "X has 0 features"),
    (np.ones((2, 3)), np.ones((2, 4)), ValueError, "Y has 4 features, but 3 are expected"),
    (np.array([["a", "b"]]), None, TypeError, "X must hold real numbers"),
    (np.ones((2, 2), dtype=bool), None, TypeError, "got dtype bool"),
    (np.ones((2, 2), dtype=complex), None, TypeError, "complex"),
    (np.ones((2, 3)), np.array([[1.0, 2.0, np.nan]]), ValueError, "Y contains NaN"),
    (np.full((2, 3), 1e160), None, ValueError, "X has values too large.*overflow float64"),
    (np.array([[1.0, None]], dtype=object), None, TypeError, "X contains None"),
    (np.ones((2, 3)), np.full((1, 3), 1e200), ValueError, "Y has values too large"),
]


@pytest.mark.parametrize("X,Y,exc,match", BAD_INPUTS)
def test_bad_inputs(X, Y, exc, match):
    k = kc.NTK()
    with pytest.raises(exc, match=match):
        k(X, Y)
    if Y is None:
        with pytest.raises(exc, match=match):
            k.diag(X)


def test_integer_and_list_inputs_are_accepted():
    K = kc.NTK()([[1, 2], [3, 4]])
    assert K.dtype == np.float64 and K.shape == (2, 2)


# ------------------------------------------------------------------ NNGP and NTK in one pass
@pytest.mark.parametrize(
    "params",
    [
        {"depth": 2, "bias_std": 0.3},  # closed form (ReLU)
        {"depth": 1, "activation": "erf", "weight_std": 1.3},
        {"depth": 2, "activation": "gelu", "bias_std": (0.1, 0.2, 0.3)},
        {"depth": 1, "activation": "tanh"},  # Hermite series
        {"depth": 1, "activation": "elu", "quadrature_nodes": 8},  # quadrature
        {"depth": 0},
        {"depth": 2, "parameterization": "standard", "width": 7, "bias_std": 0.5},
    ],
)
@pytest.mark.parametrize("d", [3, kernels_module.FUSED_MAX_FEATURES + 5])  # fused / BLAS dots
def test_gram_pair_equals_the_two_separate_calls_bit_for_bit(rng, dtype, params, d):
    small = params.get("activation") in ("elu", "tanh")
    n, m = (23, 9) if small else (kernels_module.CPU_TILE + 21, 40)  # ragged edge tiles
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = rng.standard_normal((m, d)).astype(dtype)
    X[3] = X[1]  # duplicated rows reproduce the diagonal
    ntk, nngp = kc.NTK(**params), kc.NNGP(**params)
    for k in (ntk, nngp):  # the same method on either kernel
        for pair, A, B in ((k.gram_pair(X), X, None), (k.gram_pair(X, Y, n_jobs=1), X, Y)):
            assert isinstance(pair, kc.kernels.KernelPair)
            assert pair.ntk.dtype == dtype and pair.nngp.dtype == dtype
            np.testing.assert_array_equal(pair.ntk, ntk(A, B))
            np.testing.assert_array_equal(pair.nngp, nngp(A, B))
    sym = ntk.gram_pair(X)
    np.testing.assert_array_equal(sym.nngp, sym.nngp.T)
    np.testing.assert_array_equal(np.diag(sym.nngp), nngp.diag(X))


def test_gram_pair_validates_like_a_call(rng):
    k = kc.NTK()
    with pytest.raises(ValueError, match="features"):
        k.gram_pair(rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match=r"NaN|finite"):
        k.gram_pair(np.full((3, 2), np.nan))
    a, b = k.gram_pair(rng.standard_normal((4, 3)), dtype="float32")
    assert a.dtype == b.dtype == np.float32
