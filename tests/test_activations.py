"""The activations of FCNetwork: NumPy, compiled and PyTorch definitions agree.

``kernelcomp.network.activate``/``activate_grad`` (forward and backprop) and
``kernelcomp._kernels.activations.phi``/``dphi`` (the empirical-NTK and training
passes) against the written-out references of ``tests/naive_empirical.py``,
against PyTorch's modules and autograd, and through the public APIs that use
them: ``kc.EmpiricalNTK`` and ``kc.training.train``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import training
from kernelcomp._kernels import activations as core
from kernelcomp.network import ACTIVATIONS, activate, activate_grad
from tests import naive_empirical as naive

#: the activations added with the PyTorch names (the original five are tested in test_network)
NEW = ("gelu", "silu", "softplus", "leaky_relu", "sigmoid", "elu")
#: torch.nn module of each activation that has one (constructed with PyTorch's defaults)
TORCH_MODULES = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "linear": "Identity",
    "gelu": "GELU",
    "silu": "SiLU",
    "softplus": "Softplus",
    "leaky_relu": "LeakyReLU",
    "sigmoid": "Sigmoid",
    "elu": "ELU",
}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261202)


def _compiled(fn, act: str, z: np.ndarray) -> np.ndarray:
    code = core.CODES[act]
    return np.array([fn(float(v), code) for v in z])


def test_every_activation_has_one_compiled_code():
    assert set(core.CODES) == set(ACTIVATIONS)
    assert len(set(core.CODES.values())) == len(core.CODES)
    assert set(NEW) <= set(ACTIVATIONS)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_numpy_and_compiled_match_the_reference(act, rng):
    z = np.concatenate([rng.standard_normal(300) * 3, np.linspace(-12, 12, 97)])
    z = z[np.abs(z) > 1e-3]  # away from the kinks for the finite differences
    ref, dref = naive.phi(act, z), naive.dphi(act, z)
    for got in (activate(act, z), _compiled(core.phi, act, z)):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    for got in (activate_grad(act, z), _compiled(core.dphi, act, z)):
        np.testing.assert_allclose(got, dref, rtol=1e-12, atol=1e-15)
    eps = 1e-6
    fd = (naive.phi(act, z + eps) - naive.phi(act, z - eps)) / (2 * eps)
    np.testing.assert_allclose(activate_grad(act, z), fd, rtol=1e-6, atol=1e-8)
    for dt in (np.float32, np.float64):
        zd = z.astype(dt)
        assert activate(act, zd).dtype == dt and activate_grad(act, zd).dtype == dt
        np.testing.assert_allclose(activate(act, zd), ref, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_stable_at_extreme_arguments(act):
    # no overflow, no invalid value, no warning (underflow to 0 is the right answer)
    z = np.array([-800.0, -50.0, -20.0, 20.0, 50.0, 800.0])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, grad = activate(act, z), activate_grad(act, z)
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(_compiled(core.phi, act, z), out, rtol=1e-13, atol=0)
    np.testing.assert_allclose(_compiled(core.dphi, act, z), grad, rtol=1e-13, atol=0)
    limits = {  # phi and phi' far out on both sides
        "softplus": ((0.0, 800.0), (0.0, 1.0)),
        "silu": ((0.0, 800.0), (0.0, 1.0)),
        "gelu": ((0.0, 800.0), (0.0, 1.0)),
        "sigmoid": ((0.0, 1.0), (0.0, 0.0)),
        "elu": ((-1.0, 800.0), (0.0, 1.0)),
        "leaky_relu": ((-8.0, 800.0), (0.01, 1.0)),
    }
    if act in limits:
        (lo, hi), (dlo, dhi) = limits[act]
        assert out[0] == pytest.approx(lo, abs=1e-300) and out[-1] == pytest.approx(hi)
        assert grad[0] == pytest.approx(dlo, abs=1e-300) and grad[-1] == pytest.approx(dhi)


def test_derivatives_at_the_kink_take_the_left_hand_value():
    z = np.array([-1.0, 0.0, 1.0])
    expected = {
        "relu": [0.0, 0.0, 1.0],
        "relu_unit": [0.0, 0.0, math.sqrt(2)],
        "leaky_relu": [0.01, 0.01, 1.0],
        "elu": [math.exp(-1.0), 1.0, 1.0],
    }
    for act, want in expected.items():
        assert activate_grad(act, z).tolist() == pytest.approx(want, rel=1e-15)
        assert _compiled(core.dphi, act, z).tolist() == pytest.approx(want, rel=1e-15)
    assert activate("leaky_relu", z).tolist() == [-0.01, 0.0, 1.0]
    assert activate("gelu", np.zeros(1))[0] == 0.0 and activate_grad("gelu", np.zeros(1))[0] == 0.5


@pytest.mark.torch
@pytest.mark.parametrize("act", sorted(TORCH_MODULES))
def test_against_torch_modules_and_autograd(act):
    torch = pytest.importorskip("torch")
    module = getattr(torch.nn, TORCH_MODULES[act])()
    z = np.concatenate([np.linspace(-19.0, 19.0, 761), [-1e-8, 1e-8]])
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = module(zt)
    (grad,) = torch.autograd.grad(out.sum(), zt)
    np.testing.assert_allclose(activate(act, z), out.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(activate_grad(act, z), grad.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(_compiled(core.phi, act, z), out.detach().numpy(), rtol=1e-14,
                               atol=1e-15)
    np.testing.assert_allclose(_compiled(core.dphi, act, z), grad.numpy(), rtol=1e-13, atol=1e-15)


# -- through the public APIs ---------------------------------------------------------------
def _net(act: str, widths=(6, 5), K: int = 2, seed: int = 0) -> kc.FCNetwork:
    return kc.FCNetwork.init(4, list(widths), n_outputs=K, activation=act, parameterization="ntk",
                             bias_std=0.5, weight_std=1.4, seed=seed)


@pytest.mark.parametrize("act", NEW)
def test_gradients_match_explicit_jacobian(act, rng):
    for widths, K in [((6, 5), 2), ((4,), 1)]:
        net = _net(act, widths, K)
        X = rng.standard_normal((6, 4))
        G = rng.standard_normal((6, K))
        ref = np.einsum("kmp,mk->p", naive.jacobian(net, X), G)
        gW, gb = net.gradients(X, G[:, 0] if K == 1 else G)
        flat = []
        for l in range(net.n_layers):
            flat += [gW[l].ravel(), gb[l]]
        np.testing.assert_allclose(np.concatenate(flat), ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("act", NEW)
def test_empirical_ntk_matches_explicit_jacobian(act, rng):
    net = _net(act, (7, 5), 3, seed=1)
    X, Y = rng.standard_normal((6, 4)), rng.standard_normal((4, 4))
    for params, output in [("all", None), ("all", 2), ("headless", None), ([0], None)]:
        k = kc.EmpiricalNTK(net, params=params, output=output)
        R = naive.ntk(net, X, layers=k.layers, output=output)
        Rxy = naive.ntk(net, X, Y, layers=k.layers, output=output)
        for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            got, gxy = k(X.astype(dt)), k(X.astype(dt), Y.astype(dt))
            assert got.dtype == dt
            assert np.abs(got - R).max() <= tol * np.abs(R).max()
            assert np.abs(gxy - Rxy).max() <= tol * np.abs(Rxy).max()
            assert np.abs(k.diag(X.astype(dt)) - np.diag(R)).max() <= tol * np.abs(R).max()


def test_leaky_relu_trains_on_the_numpy_passes_only():
    # the compiled pair pass freezes a one-slope (ReLU) pattern; leaky_relu's
    # two-slope pattern goes through FCNetwork, and asking for "fused" says so
    X, y = kc.datasets.stripe(20, 3, seed=2)
    net = kc.FCNetwork.init(3, [30], activation="leaky_relu", parameterization="mean_field",
                            seed=0)
    with pytest.raises(ValueError, match="activation other than leaky_relu"):
        training.train(net, X, y, alpha=1.0, method="fused", max_steps=5)
    res = training.train(net, X, y, alpha=1.0, max_steps=200)
    assert res.final.step == 200 and res.final.dt > 1e-3
    assert res.final.loss < 0.97 * res.checkpoints[0].loss


@pytest.mark.parametrize("act", [a for a in NEW if a != "leaky_relu"])
def test_training_fused_and_numpy_passes_follow_the_same_flow(act):
    # one hidden layer, one output: the fused compiled passes (phi/dphi) and the
    # NumPy network (activate/activate_grad) integrate the same smooth flow
    X, y = kc.datasets.stripe(20, 3, seed=2)
    net = kc.FCNetwork.init(3, [30], activation=act, parameterization="mean_field", seed=0)
    a = training.train(net, X, y, alpha=1.0, loss="soft_hinge", method="fused", max_steps=40)
    b = training.train(net, X, y, alpha=1.0, loss="soft_hinge", method="numpy", max_steps=40)
    assert a.final.step == b.final.step == 40
    np.testing.assert_allclose(a.history["dt"], b.history["dt"], rtol=1e-9)
    for wa, wb in zip(a.net.weights, b.net.weights, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-9, atol=1e-12)
    assert a.final.loss < a.checkpoints[0].loss
    assert a.net.activation == act


@pytest.mark.parametrize("act", ["gelu", "silu", "softplus", "sigmoid", "elu", "leaky_relu"])
def test_training_a_deeper_network(act):
    X, y = kc.datasets.stripe(16, 3, seed=4)
    net = kc.FCNetwork.init(3, [12, 8], activation=act, parameterization="mean_field", seed=3)
    res = training.train(net, X, y, alpha=1.0, max_steps=300)
    assert res.final.step == 300
    # the flow moves: a step size that does not collapse, and a loss that falls
    assert res.final.dt > 1e-3
    assert res.final.loss < 0.97 * res.checkpoints[0].loss
    F = res.alpha * (res.net(X) - res.net0(X))
    np.testing.assert_allclose(res.decision_function(X), F, rtol=1e-12)


@pytest.mark.slow
def test_empirical_ntk_with_a_new_activation_at_mnist_size():
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    # two hidden layers: the compiled pass evaluates phi and phi' of gelu at every
    # (sample, unit); the full Gram agrees with its cross rows and small blocks
    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 10))
        e = kc.EmpiricalNTK(kc.FCNetwork.init(10, [300, 200], activation="gelu", seed=0))
        K = e(X)
        assert K.shape == ({N_MNIST}, {N_MNIST}) and np.isfinite(K).all()
        close(K[idx], e(X[idx], X), 1e-12)
        close(K[idx][:, idx], e(X[idx]), 1e-12)
        assert bool((K[idx][:, idx] == K[idx][:, idx].T).all())
    """)
