"""Tests of kernelcomp.empirical (EmpiricalNTK, EmpiricalNNGP).

Oracles: the explicit per-sample Jacobian J J^T (tests/naive_empirical.py), the
one-hidden-layer closed form of docs/definitions.rst, the analytic kernels for wide
networks, and ``torch.func`` when PyTorch is installed.
"""

from __future__ import annotations

import copy
import io
import math
import pickle

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelcomp as kc
import kernelcomp.empirical as emp
from kernelcomp import _hadamard
from kernelcomp.network import ACTIVATIONS
from tests import naive_empirical as naive
from tests.conftest import TOLERANCES

PARAMETERIZATIONS = ("ntk", "mean_field", "standard")
#: relative (to the largest entry) tolerances per dtype, the suite's Gram tolerances
TOL = TOLERANCES["gram"]


def _net(par, act="tanh", widths=(6, 5), K=1, bias=True, seed=0, d=4):
    return kc.FCNetwork.init(
        d,
        list(widths),
        n_outputs=K,
        activation=act,
        parameterization=par,
        bias=bias,
        bias_std=None if par == "mean_field" else 0.6,
        weight_std=1.2,
        seed=seed,
    )


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


# -- against the explicit Jacobian ----------------------------------------------------------
@pytest.mark.parametrize("par", PARAMETERIZATIONS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_matches_explicit_jacobian(par, act, rng):
    """Every parameterization x activation against the explicit Jacobian.

    With and without biases, 0-3 hidden layers, 1 or 3 outputs (mean and single
    output), every params selection.
    """
    cases = 0
    for widths in [(), (7,), (6, 5), (5, 4, 3)]:
        for K in (1, 3):
            for bias in (True, False):
                net = _net(par, act, widths, K, bias, seed=len(widths) + K)
                X = rng.standard_normal((5, 4))
                Y = rng.standard_normal((3, 4))
                selections = ["all", "last", [0], [0, -1]]
                if widths:
                    selections += ["headless", [1]]
                for params in selections:
                    for output in {None, K - 1}:
                        k = kc.EmpiricalNTK(net, params=params, output=output)
                        R = naive.ntk(net, X, layers=k.layers, output=output)
                        Rxy = naive.ntk(net, X, Y, layers=k.layers, output=output)
                        for dt, tol in TOL.items():
                            Xd, Yd = X.astype(dt), Y.astype(dt)
                            K_xx, K_xy, dg = k(Xd), k(Xd, Yd), k.diag(Xd)
                            assert K_xx.dtype == K_xy.dtype == dg.dtype == dt
                            assert _rel(K_xx, R) < tol
                            assert _rel(K_xy, Rxy) < tol
                            assert _rel(dg, np.diag(R)) < tol
                            np.testing.assert_array_equal(K_xx, K_xx.T)
                            cases += 1
    assert cases == 16 * (4 + 3 * 6)  # (K, output, bias, dtype) x every selection ran


def test_params_selections_resolve_to_layers():
    net = _net("ntk", widths=(4, 3, 2))
    assert kc.EmpiricalNTK(net).layers == (0, 1, 2, 3)
    assert kc.EmpiricalNTK(net, params="last").layers == (3,)
    assert kc.EmpiricalNTK(net, params="headless").layers == (1, 2, 3)
    assert kc.EmpiricalNTK(net, params=[-1, 0, 0]).layers == (0, 3)
    assert kc.EmpiricalNTK(net, params=np.array([2])).layers == (2,)


def test_layer_kernels_add_up(rng):
    net = _net("ntk", "erf", (5, 4), K=2)
    X = rng.standard_normal((9, 4))
    total = sum(kc.EmpiricalNTK(net, params=[l])(X) for l in range(3))
    np.testing.assert_allclose(kc.EmpiricalNTK(net)(X), total, rtol=1e-13)


def test_mean_over_outputs_is_mean_of_single_outputs(rng):
    net = _net("standard", "relu", (6, 5), K=4)
    X = rng.standard_normal((7, 4))
    for params in ("all", "headless", [0]):
        single = [kc.EmpiricalNTK(net, params=params, output=k)(X) for k in range(4)]
        np.testing.assert_allclose(
            kc.EmpiricalNTK(net, params=params)(X), np.mean(single, axis=0), rtol=1e-13
        )


# -- one-hidden-layer closed form ---------------------------------------------------------------
@pytest.mark.parametrize("par", PARAMETERIZATIONS)
@pytest.mark.parametrize("act", ["relu_unit", "erf"])
def test_one_hidden_layer_closed_form(par, act, rng):
    for bias in (True, False):
        net = kc.FCNetwork.init(
            10, [300], activation=act, parameterization=par, bias=bias, bias_std=0.5, seed=3
        )
        X = rng.standard_normal((150, 10))
        ref = naive.one_hidden_closed_form(net, X)
        k = kc.EmpiricalNTK(net)
        for dt, tol in TOL.items():
            assert _rel(k(X.astype(dt)), ref) < tol


def test_readout_bias_adds_its_constant(rng):
    net = _net("ntk", "relu", (5,), bias=True)
    X = rng.standard_normal((6, 4))
    no_bias = kc.FCNetwork(
        net.weights, [net.biases[0], None], "relu", net.weight_mult, net.bias_mult, "ntk"
    )
    diff = kc.EmpiricalNTK(net, params="last")(X) - kc.EmpiricalNTK(no_bias, params="last")(X)
    np.testing.assert_allclose(diff, net.bias_mult[1] ** 2, rtol=1e-12)


# -- float32: pre-activation signs from float64 ---------------------------------------------
def test_float32_uses_float64_relu_masks():
    """A pre-activation that rounds across zero in float32 must keep its float64 sign."""
    d, h = 2, 3
    W0 = np.array([[1.0 + 2e-9, -1.0], [1.0, 1.0], [-1.0, 0.5]])
    net = kc.FCNetwork([W0, np.array([[1.0, -2.0, 0.5]])], activation="relu")
    X = np.array([[1.0, 1.0], [0.5, -0.25], [1.0, 1.0]], dtype=np.float32)
    # setting check: a float32 forward pass gets the first unit's mask wrong
    z64 = X.astype(np.float64) @ W0.T
    z32 = X @ W0.astype(np.float32).T
    assert z64[0, 0] > 0 and not z32[0, 0] > 0
    ref = naive.ntk(net, X.astype(np.float64))
    got = kc.EmpiricalNTK(net)(X)
    assert got.dtype == np.float32
    assert _rel(got, ref) < TOL[np.float32]
    assert d == X.shape[1] and h == W0.shape[0]


def test_float32_precision_on_a_realistic_size(rng):
    net = kc.FCNetwork.init(10, [2000], activation="relu", bias_std=0.3, seed=0)
    X = rng.standard_normal((300, 10))
    k = kc.EmpiricalNTK(net)
    K64, K32 = k(X), k(X.astype(np.float32))
    assert np.linalg.norm(K32 - K64) / np.linalg.norm(K64) < 2e-6
    K32b = k(X, dtype="float32")
    assert K32b.dtype == np.float32
    assert np.linalg.norm(K32b - K64) / np.linalg.norm(K64) < 2e-6


# -- wide networks approach the analytic kernels ------------------------------------------------
def _mean_errors(widths, make_pair, seeds=3):
    errs = []
    for h in widths:
        e = [make_pair(h, s) for s in range(seeds)]
        errs.append(float(np.mean(e)))
    return np.array(errs)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "erf", "relu_unit"])
def test_wide_ntk_parameterized_nets_approach_kc_ntk(act, rng):
    X = rng.standard_normal((20, 5))
    ws, bs = 1.4, 0.3
    ref = {
        1: (
            kc.NTK(depth=1, activation=act, weight_std=ws, bias_std=bs)(X),
            kc.NNGP(depth=1, activation=act, weight_std=ws, bias_std=bs)(X),
        ),
        2: (
            kc.NTK(depth=2, activation=act, weight_std=ws, bias_std=bs)(X),
            kc.NNGP(depth=2, activation=act, weight_std=ws, bias_std=bs)(X),
        ),
    }

    def err(depth, h, seed, which):
        net = kc.FCNetwork.init(
            5, [h] * depth, activation=act, weight_std=ws, bias_std=bs, seed=seed
        )
        kern = kc.EmpiricalNTK(net) if which == 0 else kc.EmpiricalNNGP(net)
        R = ref[depth][which]
        return np.linalg.norm(kern(X) - R) / np.linalg.norm(R)

    for depth, widths in ((1, [100, 1000, 10000]), (2, [100, 400, 1600])):
        for which in (0, 1):
            e = _mean_errors(widths, lambda h, s, d=depth, w=which: err(d, h, s, w))
            slope = np.polyfit(np.log(widths), np.log(e), 1)[0]
            # Monte-Carlo error ~ C / sqrt(h): slope -1/2
            assert -0.8 < slope < -0.3, (depth, which, e, slope)
            assert e[-1] < 5.0 / math.sqrt(widths[-1]), (depth, which, e)


@pytest.mark.slow
def test_wide_standard_parameterized_net_approaches_kc_ntk_standard(rng):
    X = rng.standard_normal((15, 4))
    widths = [100, 1000, 10000]

    def err(h, seed):
        net = kc.FCNetwork.init(
            4,
            [h],
            activation="relu",
            parameterization="standard",
            weight_std=1.2,
            bias_std=0.4,
            seed=seed,
        )
        R = kc.NTK(depth=1, weight_std=1.2, bias_std=0.4, parameterization="standard", width=h)(X)
        return np.linalg.norm(kc.EmpiricalNTK(net)(X) - R) / np.linalg.norm(R)

    e = _mean_errors(widths, err)
    slope = np.polyfit(np.log(widths), np.log(e), 1)[0]
    assert -0.8 < slope < -0.3, (e, slope)


# -- kernel contract: Gram driver, tiles, threads, out-of-core --------------------------------
def test_nngp_equals_last_layer_kernel(rng):
    for par in PARAMETERIZATIONS:
        net = _net(par, "relu_unit", (6, 5), K=2)
        X = rng.standard_normal((8, 4))
        np.testing.assert_array_equal(
            kc.EmpiricalNNGP(net)(X), kc.EmpiricalNTK(net, params="last")(X)
        )


def test_gram_driver_blocks_out_and_threads(dtype, tol, rng):
    net = _net("ntk", "tanh", (6, 5), K=2)
    k = kc.EmpiricalNTK(net)
    X = rng.standard_normal((37, 4)).astype(dtype)
    Y = rng.standard_normal((11, 4)).astype(dtype)
    gram_tol = tol("gram")
    full, cross = k(X), k(X, Y)
    R = naive.ntk(net, X.astype(np.float64))
    assert _rel(full, R) < gram_tol
    for rows in (1, 5, 16, 37, 100):
        blocked = kc.gram(k, X, block_rows=rows)
        np.testing.assert_array_equal(blocked, blocked.T)
        assert _rel(blocked, R) < gram_tol
        assert _rel(kc.gram(k, X, Y, block_rows=rows), cross) < gram_tol
    out = np.zeros((37, 37), dtype=dtype)
    assert kc.gram(k, X, out=out) is out
    assert _rel(out, R) < gram_tol
    with h5py.File(io.BytesIO(), "w") as f:
        ds = f.create_dataset("K", shape=(37, 11), dtype=dtype)
        kc.gram(k, X, Y, out=ds, block_rows=8, progress=False)
        assert _rel(ds[()], cross) < gram_tol
    for n_jobs in (1, None):
        assert _rel(kc.gram(k, X, n_jobs=n_jobs), R) < gram_tol


@pytest.mark.parametrize("budget", [8, 200, 8 * 37 * 9])
def test_small_scratch_blocks_give_the_same_kernel(budget, monkeypatch, rng):
    """Row-block scratch (deep nets) and pre-activation chunks with ragged edges."""
    net = _net("standard", "erf", (5, 4, 3), K=2)
    X = rng.standard_normal((37, 4))
    Y = rng.standard_normal((13, 4))
    R, Rxy = naive.ntk(net, X), naive.ntk(net, X, Y)
    monkeypatch.setattr(_hadamard, "_SCRATCH_BYTES", budget)
    monkeypatch.setattr(emp, "_PREACT_ELEMENTS", budget // 8)  # pre-activation row chunks
    k = kc.EmpiricalNTK(net)
    for dt, tol in TOL.items():
        Kxx = k(X.astype(dt))
        np.testing.assert_array_equal(Kxx, Kxx.T)
        assert _rel(Kxx, R) < tol
        assert _rel(k(X.astype(dt), Y.astype(dt)), Rxy) < tol


@pytest.mark.parametrize("budget", [None, 8 * 600 * 100])
def test_symmetric_path_on_many_tiles_matches_cross_path(budget, monkeypatch, rng):
    """n larger than the triangle-copy tile (ragged), one and several row blocks."""
    if budget is not None:
        monkeypatch.setattr(_hadamard, "_SCRATCH_BYTES", budget)
    X = rng.standard_normal((600, 4))
    one = kc.FCNetwork.init(4, [40], activation="relu", bias_std=0.5, seed=1)
    deep = _net("ntk", "erf", (12, 9), K=2)
    for net in (one, deep):
        k = kc.EmpiricalNTK(net)
        for dt, tol in TOL.items():
            Xd = X.astype(dt)
            K = k(Xd)
            np.testing.assert_array_equal(K, K.T)
            assert _rel(K, k(Xd, Xd.copy()).astype(np.float64)) < tol
            if net is one:
                assert _rel(K, naive.one_hidden_closed_form(net, X)) < tol


def _count_blas_flops(monkeypatch):
    """Multiply-adds handed to BLAS by the empirical NTK's O(n^2) products (_hadamard)."""
    flops = {"syrk": 0, "gemm": 0}
    syrk, gemm = _hadamard.syrk_upper, _hadamard.gemm_nt

    def counted_syrk(C, A, *args, **kwargs):
        flops["syrk"] += C.shape[0] * (C.shape[0] + 1) // 2 * A.shape[1]
        syrk(C, A, *args, **kwargs)

    def counted_gemm(C, A, B, *args, **kwargs):
        flops["gemm"] += C.shape[0] * C.shape[1] * A.shape[1]
        gemm(C, A, B, *args, **kwargs)

    monkeypatch.setattr(_hadamard, "syrk_upper", counted_syrk)
    monkeypatch.setattr(_hadamard, "gemm_nt", counted_gemm)
    return flops


@pytest.mark.parametrize("budget", [None, 8 * 300 * 70])
@pytest.mark.parametrize("widths,K", [((200,), 1), ((30, 20), 1), ((30, 20), 3)])
def test_symmetric_gram_needs_half_the_products(budget, widths, K, monkeypatch, rng):
    """k(X) computes one triangle of every n x n product, mirrored.

    syrk on diagonal blocks, GEMM right of them: half the multiply-adds of
    k(X, X'); exactly symmetric and equal to the cross path and to the explicit
    Jacobian.
    """
    if budget is not None:
        monkeypatch.setattr(_hadamard, "_SCRATCH_BYTES", budget)  # several row blocks
    net = _net("ntk", "relu", widths, K=K, d=5)
    X = rng.standard_normal((300, 5))
    k = kc.EmpiricalNTK(net)
    k(X[:3])  # compile outside the counts
    R = naive.ntk(net, X)
    flops = _count_blas_flops(monkeypatch)
    cross = k(X, X.copy())
    full = flops["syrk"] + flops["gemm"]
    flops["syrk"] = flops["gemm"] = 0
    K_sym = k(X)
    half = flops["syrk"] + flops["gemm"]
    assert flops["syrk"] > 0
    n = X.shape[0]
    assert half <= full * (n + 1) / (2 * n) * 1.02, (half, full)
    np.testing.assert_array_equal(K_sym, K_sym.T)
    assert _rel(K_sym, cross) < TOL[np.float64]
    assert _rel(K_sym, R) < TOL[np.float64]


def test_psd_and_duplicates(rng):
    net = _net("mean_field", "relu_unit", (30,))
    X = rng.standard_normal((25, 4))
    X[7] = X[3]
    K = kc.EmpiricalNTK(net)(X)
    assert np.linalg.eigvalsh(K).min() > -1e-12 * np.abs(K).max()
    np.testing.assert_array_equal(K[7], K[3])


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    n=st.integers(1, 12),
    m=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
    par=st.sampled_from(PARAMETERIZATIONS),
    act=st.sampled_from(ACTIVATIONS),
    params=st.sampled_from(["all", "last", "headless"]),
)
def test_properties_symmetry_transpose_permutation(n, m, seed, par, act, params):
    g = np.random.default_rng(seed)
    net = _net(par, act, (4, 3), K=2, seed=seed % 7)
    k = kc.EmpiricalNTK(net, params=params)
    X = g.standard_normal((n, 4))
    Y = g.standard_normal((m, 4))
    K = k(X)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(k(X, Y), k(Y, X).T, rtol=1e-12, atol=1e-14 * np.abs(K).max())
    perm = g.permutation(n)
    np.testing.assert_allclose(
        k(X[perm]), K[np.ix_(perm, perm)], rtol=1e-12, atol=1e-14 * np.abs(K).max()
    )


# -- immutability, equality, copies, pickling, description -----------------------------------------
def test_kernel_is_frozen_against_later_training(rng):
    net = _net("ntk")
    X = rng.standard_normal((5, 4))
    k = kc.EmpiricalNTK(net)
    before = k(X)
    net.weights[0] += 1.0
    np.testing.assert_array_equal(k(X), before)
    assert k != kc.EmpiricalNTK(net)
    with pytest.raises(ValueError, match="read-only"):
        k.net.weights[0][0, 0] = 3.0
    with pytest.raises(AttributeError, match="EmpiricalNTK is immutable"):
        k.output = 1


def test_equality_hash_copy_and_pickle(rng):
    net = _net("ntk", K=2)
    k = kc.EmpiricalNTK(net, params="headless")
    same = kc.EmpiricalNTK(net.copy(), params=[1, 2])
    assert k == same and hash(k) == hash(same)
    assert k != kc.EmpiricalNTK(net, params="all")
    assert k != kc.EmpiricalNTK(net, params="headless", output=1)
    assert kc.EmpiricalNNGP(net) != kc.EmpiricalNTK(net, params="last")
    assert k != "kernel"
    assert len({k, same, kc.EmpiricalNTK(net)}) == 2
    assert copy.deepcopy(k) == k and copy.copy(k) == k
    back = pickle.loads(pickle.dumps(k))
    assert back == k and back.layers == (1, 2)
    X = rng.standard_normal((4, 4))
    np.testing.assert_array_equal(back(X), k(X))
    assert not back.net.weights[0].flags.writeable
    nngp = pickle.loads(pickle.dumps(kc.EmpiricalNNGP(net)))
    assert isinstance(nngp, kc.EmpiricalNNGP)
    assert "EmpiricalNTK(net=<FCNetwork d=4" in repr(k)


def test_single_output_index_normalises_to_none():
    net = _net("ntk", K=1)
    assert kc.EmpiricalNTK(net, output=0) == kc.EmpiricalNTK(net)
    assert kc.EmpiricalNTK(_net("ntk", K=3), output=-1).output == 2


def test_to_dict_from_dict(rng):
    import json

    net = _net("mean_field", "relu_unit", (5,), K=2)
    k = kc.EmpiricalNTK(net, params="last", output=1)
    desc = json.loads(json.dumps(k.to_dict()))
    assert desc["kernel"] == "EmpiricalNTK"
    assert desc["params"]["network"]["fingerprint"] == net.fingerprint()
    assert kc.EmpiricalNTK.from_dict(desc, net) == k
    nngp = kc.EmpiricalNNGP(net)
    assert kc.EmpiricalNNGP.from_dict(nngp.to_dict(), net) == nngp
    other = _net("mean_field", "relu_unit", (5,), K=2, seed=9)
    with pytest.raises(ValueError, match="net is not the network this kernel was described"):
        kc.EmpiricalNTK.from_dict(desc, other)
    with pytest.raises(ValueError, match="unknown kernel 'NTK'"):
        kc.EmpiricalNTK.from_dict(kc.NTK().to_dict(), net)


# -- validation ---------------------------------------------------------------------------------
def test_input_validation(rng):
    net = _net("ntk")
    k = kc.EmpiricalNTK(net)
    assert k.n_features_in == 4
    with pytest.raises(ValueError, match="X has 3 features, but 4 are expected"):
        k(rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="Y has 2 features, but 4 are expected"):
        k(rng.standard_normal((5, 4)), rng.standard_normal((2, 2)))
    with pytest.raises(ValueError, match="X contains NaN"):
        k(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="X has 3 features"):
        kc.gram(k, rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="X has 3 features"):
        k.diag(rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="dtype must be float32, float64 or None"):
        k(rng.standard_normal((5, 4)), dtype="float16")


def test_constructor_validation():
    net = _net("ntk", widths=(3,), K=2)
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork, got dict"):
        kc.EmpiricalNTK({"0.weight": np.ones((2, 2))})
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork"):
        kc.EmpiricalNNGP(None)
    with pytest.raises(ValueError, match=r"params must be one of .*indices, got 'first'"):
        kc.EmpiricalNTK(net, params="first")
    with pytest.raises(TypeError, match="params must be one of"):
        kc.EmpiricalNTK(net, params=1)
    with pytest.raises(ValueError, match="params is an empty list"):
        kc.EmpiricalNTK(net, params=[])
    with pytest.raises(ValueError, match=r"layer index 2 in params is out of range .* 2 layers"):
        kc.EmpiricalNTK(net, params=[2])
    with pytest.raises(TypeError, match="params must hold layer indices"):
        kc.EmpiricalNTK(net, params=[0.5])
    with pytest.raises(ValueError, match="output=2 is out of range for a network with 2"):
        kc.EmpiricalNTK(net, output=2)
    with pytest.raises(TypeError, match="output must be an int or None"):
        kc.EmpiricalNTK(net, output="0")
    with pytest.raises(ValueError, match=r"'headless' .* is empty for a network without hidden"):
        kc.EmpiricalNTK(kc.FCNetwork.init(3, [], seed=0), params="headless")


# -- PyTorch (optional extra) -------------------------------------------------------------------
def _torch_ntk(model, X):
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), (None, 0))(params, X)  # dict of (n, K, *shape)
    n = X.shape[0]
    J = torch.cat([j.reshape(n, j.shape[1], -1) for j in jac.values()], dim=2)
    return torch.einsum("ikp,jkp->ij", J, J).numpy() / J.shape[1]


@pytest.mark.torch
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_against_torch_func(act, rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    A = torch.nn.ReLU if act == "relu" else torch.nn.Tanh
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 16), A(), torch.nn.Linear(16, 12), A(), torch.nn.Linear(12, 3)
    ).double()
    net = kc.FCNetwork.from_torch(model)
    assert net.activation == act and net.parameterization == "standard"
    X = rng.standard_normal((9, 5))
    Xt = torch.from_numpy(X)
    with torch.no_grad():
        np.testing.assert_allclose(net(X), model(Xt).numpy(), rtol=1e-12, atol=1e-14)
    ref = _torch_ntk(model, Xt)
    for dt, tol in TOL.items():
        assert _rel(kc.EmpiricalNTK(net)(X.astype(dt)), ref) < tol
    sd_net = kc.FCNetwork.from_torch(model.state_dict(), activation=act)
    assert sd_net == net


@pytest.mark.torch
def test_from_torch_module_errors():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(ValueError, match="mixes activations"):
        kc.FCNetwork.from_torch(
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
        )
    with pytest.raises(TypeError, match="unsupported layer Conv1d"):
        kc.FCNetwork.from_torch(nn.Sequential(nn.Conv1d(1, 1, 1)))
    with pytest.raises(ValueError, match="must alternate Linear and activation"):
        kc.FCNetwork.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="disagrees with the module's 'relu'"):
        kc.FCNetwork.from_torch(
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), activation="tanh"
        )
    with pytest.raises(ValueError, match="starts with an activation"):
        kc.FCNetwork.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))
    with pytest.raises(TypeError, match=r"needs a torch\.nn\.Module or a state dict"):
        kc.FCNetwork.from_torch(3.0)


@pytest.mark.torch
def test_from_torch_custom_module_with_functional_activations(rng):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 8), nn.Linear(8, 1)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    torch.manual_seed(0)
    model = Net().double()
    with pytest.raises(ValueError, match=r"no activation modules .* pass activation="):
        kc.FCNetwork.from_torch(model)
    net = kc.FCNetwork.from_torch(model, activation="tanh")
    X = rng.standard_normal((5, 3))
    expected = model(torch.from_numpy(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(net(X), expected, rtol=1e-12)
