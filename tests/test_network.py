"""Tests of kernelcomp.network.FCNetwork against per-sample loop references."""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp.network import ACTIVATIONS, FCNetwork, activate, activate_grad
from tests import naive_empirical as naive

PARAMETERIZATIONS = ("ntk", "mean_field", "standard")
DTYPES = {np.float64: 1e-12, np.float32: 1e-6}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20210401)


def _net(par: str, act: str = "tanh", widths=(6, 5), K: int = 2, bias=True, seed=0):
    bias_std = None if par == "mean_field" else 0.7
    return kc.FCNetwork.init(
        4,
        list(widths),
        n_outputs=K,
        activation=act,
        parameterization=par,
        bias=bias,
        bias_std=bias_std,
        weight_std=1.3,
        seed=seed,
    )


# -- init and multipliers ----------------------------------------------------------
def test_paper_network_is_the_papers_formula(rng):
    d, h = 5, 40
    net = kc.FCNetwork.init(
        d, [h], activation="relu_unit", parameterization="mean_field", bias=True, seed=1
    )
    assert net.biases[1] is None and net.biases[0] is not None
    omega, b, beta = net.weights[0], net.biases[0], net.weights[1][0]
    for dt, tol in DTYPES.items():
        X = rng.standard_normal((7, d)).astype(dt)
        x64 = X.astype(np.float64)
        ref = np.array(
            [
                sum(
                    beta[n] * math.sqrt(2) * max(float(omega[n] @ x) / math.sqrt(d) + b[n], 0.0)
                    for n in range(h)
                )
                / h
                for x in x64
            ]
        )
        out = net(X)
        assert out.shape == (7,) and out.dtype == np.float64
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


def test_paper_network_parameters_are_standard_normal():
    net = kc.FCNetwork.init(
        10, [20000], activation="relu_unit", parameterization="mean_field", seed=0
    )
    for arr in (net.weights[0], net.biases[0], net.weights[1]):
        assert abs(arr.mean()) < 0.03
        assert abs(arr.std() - 1.0) < 0.03


@pytest.mark.parametrize("par", PARAMETERIZATIONS)
def test_multipliers_and_init_scales(par):
    d, h1, h2 = 40, 3000, 50
    net = kc.FCNetwork.init(d, [h1, h2], parameterization=par, weight_std=1.5, bias_std=0.5, seed=2)
    c, s = net.weight_mult, net.bias_mult
    if par == "ntk":
        assert c == pytest.approx((1.5 / math.sqrt(d), 1.5 / math.sqrt(h1), 1.5 / math.sqrt(h2)))
        assert s == (0.5, 0.5, 0.5)
        assert net.weights[0].std() == pytest.approx(1.0, abs=0.02)
        assert net.biases[0].std() == pytest.approx(1.0, abs=0.1)
    elif par == "mean_field":
        assert c == pytest.approx((1 / math.sqrt(d), 1 / math.sqrt(h1), 1 / h2))
        assert s == (1.0, 1.0, 0.0)
        assert net.biases[2] is None
        assert net.weights[0].std() == pytest.approx(1.5, abs=0.03)
        assert net.biases[0].std() == pytest.approx(0.5, abs=0.05)
    else:
        assert c == (1.0, 1.0, 1.0) and s == (1.0, 1.0, 1.0)
        assert net.weights[0].std() == pytest.approx(1.5 / math.sqrt(d), rel=0.02)
        assert net.weights[1].std() == pytest.approx(1.5 / math.sqrt(h1), rel=0.02)
        assert net.biases[0].std() == pytest.approx(0.5, abs=0.05)


def test_bias_std_default_depends_on_parameterization():
    assert kc.FCNetwork.init(3, [4], parameterization="ntk", seed=0).bias_mult == (0.0, 0.0)
    mf = kc.FCNetwork.init(3, [4], parameterization="mean_field", seed=0)
    assert mf.bias_mult == (1.0, 0.0)
    std = kc.FCNetwork.init(3, [4], parameterization="standard", seed=0)
    assert all(np.all(b == 0) for b in std.biases)  # N(0, 0)


def test_shape_properties_and_per_layer_options():
    net = kc.FCNetwork.init(
        7, [5, 3], n_outputs=4, bias=[True, False, True], weight_std=[1, 2, 3], seed=0
    )
    assert net.input_dim == 7 and net.widths == (5, 3) and net.n_outputs == 4
    assert net.depth == 2 and net.n_layers == 3
    assert net.has_bias == (True, False, True)
    assert net.n_params == 5 * 7 + 5 + 3 * 5 + 4 * 3 + 4
    assert [W.shape for W in net.weights] == [(5, 7), (3, 5), (4, 3)]
    assert net.weight_mult == pytest.approx((1 / math.sqrt(7), 2 / math.sqrt(5), 3 / math.sqrt(3)))
    assert "widths=[5, 3]" in repr(net)
    lin = kc.FCNetwork.init(3, [], seed=0)
    assert lin.depth == 0 and lin.widths == () and lin(np.ones((2, 3))).shape == (2,)


def test_seed_reproducible_and_generator_accepted():
    a = kc.FCNetwork.init(3, [4], seed=5)
    assert a == kc.FCNetwork.init(3, [4], seed=5)
    assert a != kc.FCNetwork.init(3, [4], seed=6)
    g = np.random.default_rng(5)
    assert kc.FCNetwork.init(3, [4], seed=g) == a


# -- forward pass and gradients ------------------------------------------------------
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activations_match_reference_and_finite_differences(act, rng):
    z = rng.standard_normal(200) * 2
    z = z[np.abs(z) > 1e-3]  # keep away from the ReLU kink for finite differences
    np.testing.assert_allclose(activate(act, z), naive.phi(act, z), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(activate_grad(act, z), naive.dphi(act, z), rtol=1e-12, atol=1e-15)
    eps = 1e-6
    fd = (naive.phi(act, z + eps) - naive.phi(act, z - eps)) / (2 * eps)
    np.testing.assert_allclose(activate_grad(act, z), fd, rtol=1e-6, atol=1e-8)
    for dt in DTYPES:
        assert activate(act, z.astype(dt)).dtype == dt
        assert activate_grad(act, z.astype(dt)).dtype == dt


def test_relu_derivative_is_zero_at_zero():
    z = np.array([-1.0, 0.0, 1.0])
    assert activate_grad("relu", z).tolist() == [0.0, 0.0, 1.0]
    assert activate_grad("relu_unit", z).tolist() == [0.0, 0.0, math.sqrt(2)]


@pytest.mark.parametrize("par", PARAMETERIZATIONS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_matches_per_sample_loop(par, act, rng):
    for widths, K, bias in [((6, 5), 2, True), ((3,), 1, False), ((), 3, True)]:
        net = _net(par, act, widths, K, bias)
        for dt, tol in DTYPES.items():
            X = rng.standard_normal((5, 4)).astype(dt)
            ref = np.array([naive.forward_one(net, x)[1][-1] for x in X.astype(np.float64)])
            out, cache = net.forward(X, cache=True)
            expected = ref[:, 0] if K == 1 else ref
            np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
            assert len(cache.inputs) == len(cache.preactivations) == net.n_layers
            np.testing.assert_array_equal(cache.inputs[0], X.astype(np.float64))
            for l in range(1, net.n_layers):
                np.testing.assert_allclose(
                    cache.inputs[l], activate(act, cache.preactivations[l - 1]), rtol=1e-15
                )
            np.testing.assert_array_equal(net(X), out)


@pytest.mark.parametrize("par", PARAMETERIZATIONS)
@pytest.mark.parametrize("act", ["relu", "relu_unit", "erf", "tanh", "linear"])
def test_gradients_match_explicit_jacobian(par, act, rng):
    for widths, K, bias in [((6, 5), 2, True), ((4,), 1, True), ((3, 3, 3), 3, False)]:
        net = _net(par, act, widths, K, bias)
        X = rng.standard_normal((6, 4))
        G = rng.standard_normal((6, K))
        J = naive.jacobian(net, X)  # (K, n, P), layer by layer: W_l then b_l
        ref = np.einsum("kmp,mk->p", J, G)
        gW, gb = net.gradients(X, G[:, 0] if K == 1 else G)
        flat = []
        for l in range(net.n_layers):
            assert gW[l].shape == net.weights[l].shape
            flat.append(gW[l].ravel())
            if net.biases[l] is None:
                assert gb[l] is None
            else:
                assert gb[l].shape == net.biases[l].shape
                flat.append(gb[l])
        np.testing.assert_allclose(np.concatenate(flat), ref, rtol=1e-11, atol=1e-12)


def test_gradients_reuse_a_forward_cache(rng):
    net = _net("mean_field", "relu_unit", (6,), 1)
    X = rng.standard_normal((5, 4))
    g = rng.standard_normal(5)
    _, cache = net.forward(X, cache=True)
    for a, b in zip(net.gradients(X, g, cache=cache)[0], net.gradients(X, g)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="cache was computed for another X"):
        net.gradients(X + 1, g, cache=cache)
    with pytest.raises(ValueError, match="cache must be the ForwardCache"):
        net.gradients(X, g, cache=([X], [X]))


def _linearised_outputs(net, weights, biases, X, pattern):
    """Explicit reference: the network with phi(z) -> pos z where pattern[l], else neg z."""
    pos = math.sqrt(2.0) if net.activation == "relu_unit" else 1.0
    neg = 0.01 if net.activation == "leaky_relu" else 0.0
    a = X
    for l, (W, b) in enumerate(zip(weights, biases, strict=True)):
        z = net.weight_mult[l] * (a @ W.T)
        if b is not None:
            z = z + net.bias_mult[l] * b
        a = np.where(pattern[l], pos * z, neg * z) if l < net.depth else z
    return a


@pytest.mark.parametrize("act", ["relu", "relu_unit", "leaky_relu"])
@pytest.mark.parametrize("widths", [(6,), (5, 4)])
def test_forward_and_gradients_on_a_frozen_pattern(act, widths, rng):
    net = FCNetwork.init(3, list(widths), activation=act, parameterization="mean_field",
                         bias=True, bias_std=1.0, seed=2)
    X = rng.standard_normal((7, 3))
    u = rng.standard_normal(7)
    # the network's own pattern gives the plain pass, exactly
    out, cache = net.forward(X, cache=True)
    own = [z > 0 for z in cache.preactivations[:-1]]
    np.testing.assert_array_equal(net.forward(X, pattern=own), out)
    for a, b in zip(net.gradients(X, u, pattern=own)[0], net.gradients(X, u)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    # another pattern: the linearised network, against its explicit pass and finite differences
    pattern = [rng.random((7, w)) < 0.5 for w in widths]
    lin = net.forward(X, pattern=pattern)
    np.testing.assert_allclose(lin, _linearised_outputs(net, net.weights, net.biases, X,
                                                        pattern)[:, 0], rtol=1e-13)
    assert not np.allclose(lin, out)
    _, lin_cache = net.forward(X, cache=True, pattern=pattern)
    gW, gb = net.gradients(X, u, cache=lin_cache, pattern=pattern)
    gW2, _ = net.gradients(X, u, pattern=pattern)
    eps = 1e-6
    for l in range(net.n_layers):
        np.testing.assert_array_equal(gW[l], gW2[l])
        for which, grads in (("w", gW), ("b", gb)):
            base = net.weights[l] if which == "w" else net.biases[l]
            if base is None:
                assert grads[l] is None
                continue
            fd = np.zeros_like(base)
            for idx in np.ndindex(base.shape):
                vals = []
                for sign in (1, -1):
                    arrs = ([w.copy() for w in net.weights],
                            [None if b is None else b.copy() for b in net.biases])
                    (arrs[0] if which == "w" else arrs[1])[l][idx] += sign * eps
                    vals.append(u @ _linearised_outputs(net, *arrs, X, pattern)[:, 0])
                fd[idx] = (vals[0] - vals[1]) / (2 * eps)
            np.testing.assert_allclose(grads[l], fd, rtol=1e-6, atol=1e-8)


def test_pattern_errors(rng):
    X = rng.standard_normal((4, 3))
    net = FCNetwork.init(3, [5, 2], activation="relu", seed=0)
    good = [np.ones((4, 5), bool), np.ones((4, 2), bool)]
    with pytest.raises(ValueError, match="pattern must have one array per hidden layer"):
        net.forward(X, pattern=good[:1])
    with pytest.raises(ValueError, match=r"pattern\[1\] must be a bool array of shape \(4, 2\)"):
        net.forward(X, pattern=[good[0], np.ones((4, 2))])
    with pytest.raises(TypeError, match="pattern must be a sequence"):
        net.gradients(X, np.ones(4), pattern=np.ones((2, 4, 5), bool))
    with pytest.raises(ValueError, match="pattern needs a piecewise-linear activation"):
        FCNetwork.init(3, [5, 2], activation="tanh", seed=0).forward(X, pattern=good)


def test_gradients_accept_float32_inputs(rng):
    net = _net("ntk", "erf", (5,), 1)
    X = rng.standard_normal((4, 4)).astype(np.float32)
    g = rng.standard_normal(4).astype(np.float32)
    gW, _ = net.gradients(X, g)
    gW64, _ = net.gradients(X.astype(np.float64), g.astype(np.float64))
    for a, b in zip(gW, gW64, strict=True):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)


def test_gradient_errors(rng):
    net = _net("ntk", K=2)
    X = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(3, 2\)"):
        net.gradients(X, np.ones(3))
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.gradients(X, np.full((3, 2), np.nan))
    with pytest.raises(TypeError, match="grad_output must hold real numbers"):
        net.gradients(X, np.array([["a", "b"]] * 3))


def test_forward_input_errors(rng):
    net = _net("ntk")
    with pytest.raises(ValueError, match="X has 3 features, but 4 are expected"):
        net(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="X contains NaN"):
        net(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="2-D array"):
        net(np.ones(4))


# -- construction errors ---------------------------------------------------------------
def test_constructor_validation():
    W0, W1 = np.ones((3, 2)), np.ones((1, 3))
    with pytest.raises(TypeError, match="weights must be a list"):
        kc.FCNetwork(np.ones((3, 2)))
    with pytest.raises(ValueError, match="at least one layer"):
        kc.FCNetwork([])
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(1, 4\): it takes 4 inputs"):
        kc.FCNetwork([W0, np.ones((1, 4))])
    with pytest.raises(ValueError, match=r"weights\[0\] must be a 2-D array"):
        kc.FCNetwork([np.ones(3)])
    with pytest.raises(ValueError, match="NaN or infinity"):
        kc.FCNetwork([np.full((1, 2), np.inf)])
    with pytest.raises(TypeError, match="must hold real numbers"):
        kc.FCNetwork([np.array([["a"]])])
    with pytest.raises(ValueError, match=r"one entry .* per layer: 2, got 1"):
        kc.FCNetwork([W0, W1], [None])
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \(3,\)"):
        kc.FCNetwork([W0, W1], [np.ones(2), None])
    with pytest.raises(ValueError, match=r"activation must be one of .*got 'selu'"):
        kc.FCNetwork([W0, W1], activation="selu")
    with pytest.raises(TypeError, match="activation must be a string"):
        kc.FCNetwork([W0, W1], activation=3)
    with pytest.raises(ValueError, match=r"parameterization must be one of .*got 'xavier'"):
        kc.FCNetwork([W0, W1], parameterization="xavier")
    with pytest.raises(ValueError, match="weight_mult must have 2 values"):
        kc.FCNetwork([W0, W1], weight_mult=[1.0])
    with pytest.raises(ValueError, match=r"bias_mult\[1\] must be finite"):
        kc.FCNetwork([W0, W1], bias_mult=[1.0, np.nan])


def test_constructor_copies_to_float64():
    W = np.ones((2, 3), dtype=np.float32)
    net = kc.FCNetwork([W], [np.zeros(2, dtype=np.int64)])
    assert net.weights[0].dtype == np.float64 and net.biases[0].dtype == np.float64
    W[0, 0] = 5
    assert net.weights[0][0, 0] == 1.0


def test_init_validation():
    with pytest.raises(ValueError, match="d must be >= 1"):
        kc.FCNetwork.init(0, [3])
    with pytest.raises(TypeError, match=r"widths must be a sequence of ints \(e.g. \[10\]\)"):
        kc.FCNetwork.init(3, 10)
    with pytest.raises(ValueError, match=r"widths\[1\] must be >= 1"):
        kc.FCNetwork.init(3, [4, 0])
    with pytest.raises(ValueError, match="n_outputs must be >= 1"):
        kc.FCNetwork.init(3, [4], n_outputs=0)
    with pytest.raises(ValueError, match="weight_std must be >= 0"):
        kc.FCNetwork.init(3, [4], weight_std=-1.0)
    with pytest.raises(ValueError, match="bias_std must have 2 values"):
        kc.FCNetwork.init(3, [4], bias_std=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="bias must be a bool or 2 bools"):
        kc.FCNetwork.init(3, [4], bias=[True])
    with pytest.raises(ValueError, match=r"parameterization must be one of .*got 'lazy'"):
        kc.FCNetwork.init(3, [4], parameterization="lazy")
    with pytest.raises(ValueError, match="activation must be one of"):
        kc.FCNetwork.init(3, [4], activation="selu")


# -- copy, equality, fingerprint ----------------------------------------------------------
def test_copy_is_independent_and_equal():
    net = _net("ntk")
    other = net.copy()
    assert other == net and other.fingerprint() == net.fingerprint()
    other.weights[0][0, 0] += 1e-12
    assert other != net and other.fingerprint() != net.fingerprint()
    assert net != "not a network"
    with pytest.raises(TypeError, match="unhashable"):
        hash(net)


def test_fingerprint_depends_on_multipliers_and_activation():
    net = _net("ntk")
    changed = kc.FCNetwork(net.weights, net.biases, "relu", net.weight_mult, net.bias_mult, "ntk")
    assert changed.fingerprint() != net.fingerprint()
    scaled = kc.FCNetwork(net.weights, net.biases, net.activation, [2.0] * 3, net.bias_mult, "ntk")
    assert scaled.fingerprint() != net.fingerprint()


# -- storage -------------------------------------------------------------------------------
@pytest.mark.parametrize("par", PARAMETERIZATIONS)
def test_hdf5_round_trip(tmp_path, par, rng):
    net = _net(par, "erf", (4, 3), 2, bias=[True, False, True] if par != "mean_field" else True)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        net.to_hdf5(f.create_group("ckpt/0"))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        g = f["ckpt/0"]
        assert g.attrs["kernelcomp_encoding"] == "fcnetwork"
        assert sorted(g.keys()) == sorted(
            [f"W{l}" for l in range(3)] + [f"b{l}" for l in range(3) if net.has_bias[l]]
        )
        back = kc.FCNetwork.from_hdf5(g)
    assert back == net
    X = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(back(X), net(X))


def test_hdf5_errors(tmp_path):
    net = _net("ntk")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        net.to_hdf5(f.create_group("a"))
        with pytest.raises(ValueError, match="already holds 'W0'"):
            net.to_hdf5(f["a"])
        f.create_group("empty")
        with pytest.raises(ValueError, match="does not hold a kernelcomp network"):
            kc.FCNetwork.from_hdf5(f["empty"])
        net.to_hdf5(f.create_group("future"))
        f["future"].attrs["kernelcomp_encoding_version"] = "2.0"
        with pytest.raises(ValueError, match=r"encoding version '2\.0'"):
            kc.FCNetwork.from_hdf5(f["future"])
        net.to_hdf5(f.create_group("missing"))
        del f["missing/W1"]
        with pytest.raises(ValueError, match="lacks the weight matrix 'W1'"):
            kc.FCNetwork.from_hdf5(f["missing"])
        net.to_hdf5(f.create_group("nobias"))
        del f["nobias/b0"]
        with pytest.raises(ValueError, match="lacks the bias 'b0'"):
            kc.FCNetwork.from_hdf5(f["nobias"])
        net.to_hdf5(f.create_group("badshape"))
        del f["badshape/W1"]
        f["badshape/W1"] = np.ones((5, 7))
        with pytest.raises(ValueError, match=r"invalid network: weights\[1\] has shape \(5, 7\)"):
            kc.FCNetwork.from_hdf5(f["badshape"])
        net.to_hdf5(f.create_group("badmult"))
        f["badmult"].attrs["weight_mult"] = [1.0]
        with pytest.raises(ValueError, match="weight_mult has 1 values but the network has 3"):
            kc.FCNetwork.from_hdf5(f["badmult"])


@pytest.mark.parametrize("ext", ["npz", "h5", "hdf5"])
def test_save_load_round_trip_is_atomic(tmp_path, ext):
    net = _net("mean_field", "relu_unit", (5,), 1)
    path = net.save(tmp_path / f"net.{ext}")
    assert os.listdir(tmp_path) == [f"net.{ext}"]  # no temporary left behind
    assert kc.FCNetwork.load(path) == net
    assert kc.FCNetwork.load(str(path)) == net
    if ext != "npz":
        with h5py.File(path, "r") as f:
            assert f.attrs["kernelcomp_format"] == "network"


def test_save_failure_leaves_no_file(tmp_path, monkeypatch):
    net = _net("ntk")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        net.save(tmp_path / "net.npz")
    assert os.listdir(tmp_path) == []


def test_load_group_inside_run_file(tmp_path):
    net = _net("ntk")
    with h5py.File(tmp_path / "run.h5", "w") as f:
        net.to_hdf5(f.create_group("checkpoints/3/network"))
    assert kc.FCNetwork.load(tmp_path / "run.h5", group="checkpoints/3/network") == net
    with pytest.raises(ValueError, match="has no group 'nope'"):
        kc.FCNetwork.load(tmp_path / "run.h5", group="nope")


def test_save_load_errors(tmp_path):
    net = _net("ntk")
    with pytest.raises(ValueError, match=r"extension must be \.npz, \.h5 or \.hdf5"):
        net.save(tmp_path / "net.pt")
    with pytest.raises(FileNotFoundError, match="no network file"):
        kc.FCNetwork.load(tmp_path / "absent.npz")
    np.savez(tmp_path / "foreign.npz", x=np.ones(3))
    with pytest.raises(
        ValueError, match=r"holds neither a kernelcomp network, a state dict .* nor a weight list"
    ):
        kc.FCNetwork.load(tmp_path / "foreign.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not a readable \.npz file"):
        kc.FCNetwork.load(tmp_path / "junk.npz")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        kc.FCNetwork.load(tmp_path / "junk.h5")
    (tmp_path / "w.txt").write_text("1")
    with pytest.raises(ValueError, match=r"extension must be \.npz, \.h5 or \.hdf5"):
        kc.FCNetwork.load(tmp_path / "w.txt")
    net.save(tmp_path / "net.npz")
    with pytest.raises(ValueError, match="activation is only used for state-dict"):
        kc.FCNetwork.load(tmp_path / "net.npz", activation="tanh")
    with pytest.raises(ValueError, match="group is only used with HDF5"):
        kc.FCNetwork.load(tmp_path / "net.npz", group="x")


# -- state dicts and PyTorch ------------------------------------------------------------------
def _state_dict(rng):
    return {
        "0.weight": rng.standard_normal((5, 3)),
        "0.bias": rng.standard_normal(5),
        "2.weight": rng.standard_normal((4, 5)),
        "2.bias": rng.standard_normal(4),
        "4.weight": rng.standard_normal((1, 4)),
    }


def test_from_state_dict_mapping(rng, tmp_path):
    sd = _state_dict(rng)
    net = kc.FCNetwork.from_torch(sd, activation="tanh")
    assert net.parameterization == "standard" and net.activation == "tanh"
    assert net.weight_mult == (1.0, 1.0, 1.0) and net.bias_mult == (1.0, 1.0, 1.0)
    assert net.has_bias == (True, True, False)
    for dt, tol in DTYPES.items():
        X = rng.standard_normal((6, 3)).astype(dt)
        x = X.astype(np.float64)
        ref = np.tanh(
            np.tanh(x @ sd["0.weight"].T + sd["0.bias"]) @ sd["2.weight"].T + sd["2.bias"]
        )
        ref = ref @ sd["4.weight"].T
        np.testing.assert_allclose(net(X), ref[:, 0], rtol=tol, atol=tol)
    np.savez(tmp_path / "sd.npz", **sd)
    assert kc.FCNetwork.load(tmp_path / "sd.npz", activation="tanh") == net
    assert kc.FCNetwork.load(tmp_path / "sd.npz").activation == "relu"


def test_from_state_dict_errors(rng):
    sd = _state_dict(rng)
    sd["2.weight"] = np.ones((4, 6))
    with pytest.raises(ValueError, match="do not form a network: weights\\[1\\] has shape"):
        kc.FCNetwork.from_torch(sd)
    with pytest.raises(ValueError, match="only Linear layers"):
        kc.FCNetwork.from_torch({"0.running_mean": np.ones(3)})
    with pytest.raises(ValueError, match="bias but no weight for layer '0'"):
        kc.FCNetwork.from_torch({"0.bias": np.ones(3)})
    with pytest.raises(ValueError, match="not of the form"):
        kc.FCNetwork.from_torch({"weight": np.ones((1, 3))})
    with pytest.raises(ValueError, match="the state dict is empty"):
        kc.FCNetwork.from_torch({})


def test_from_torch_rejects_other_objects():
    with pytest.raises(TypeError, match=r"from_torch needs a torch\.nn\.Module"):
        kc.FCNetwork.from_torch([np.ones((2, 2))])


@pytest.mark.parametrize("layout", ["positional", "named", "no_bias"])
def test_load_npz_weight_lists(tmp_path, rng, layout):
    # docs/formats.rst (Network): checkpoints also come from .npz weight lists
    bias = layout != "no_bias"
    net = FCNetwork.init(4, [6, 5], parameterization="standard", bias=bias, seed=1)
    path = tmp_path / "w.npz"
    if layout == "positional":
        np.savez(path, *[a for W, b in zip(net.weights, net.biases, strict=True) for a in (W, b)])
    elif layout == "named":
        arrays = {f"W{l}": W for l, W in enumerate(net.weights)}
        arrays |= {f"b{l}": b for l, b in enumerate(net.biases)}
        np.savez(path, **arrays)
    else:
        np.savez(path, *net.weights)
    loaded = FCNetwork.load(path, activation="relu")
    X = rng.standard_normal((7, 4))
    assert loaded.parameterization == "standard"
    np.testing.assert_array_equal(loaded(X), net(X))
    assert loaded.has_bias == net.has_bias


def test_load_npz_weight_list_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", np.ones((3, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(2, 2\)"):
        FCNetwork.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "odd.npz", np.ones(3), np.ones((3, 4)))
    with pytest.raises(ValueError, match="nor a weight list"):
        FCNetwork.load(tmp_path / "odd.npz")


def test_init_seed_errors():
    for bad in ("a", 1.5, True, [1, 2.5]):
        with pytest.raises(TypeError, match="seed must be an int"):
            kc.FCNetwork.init(3, [4], seed=bad)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        kc.FCNetwork.init(3, [4], seed=-1)
    # every accepted form gives numpy's stream
    a = kc.FCNetwork.init(3, [4], seed=7)
    for same in (np.int64(7), np.random.SeedSequence(7), np.random.default_rng(7)):
        b = kc.FCNetwork.init(3, [4], seed=same)
        assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))


def test_save_into_a_missing_folder_or_onto_a_folder_says_so(tmp_path):
    net = FCNetwork.init(3, [4], seed=0)
    with pytest.raises(FileNotFoundError, match=r"directory .*nowhere does not exist"):
        net.save(tmp_path / "nowhere" / "net.npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        net.save(tmp_path / "d.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # no temporary left
