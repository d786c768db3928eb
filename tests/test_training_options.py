"""kc.training.train's options and stop statuses against the naive flow (tests/naive_training.py).

The naive flow is the paper's adaptive explicit step (Paccolat et al. 2021, §3 and
appendix A) written from the rule, for a one-hidden-layer network, with its own
forward pass and gradients. ``train(..., integrator="euler")`` must take the same
accepted steps (count and every ``dt``), stop with the same status and end at the same
weights.

Tolerance of the final weights and outputs: ``rtol=1e-9, atol=1e-12``. Both sides do the
same arithmetic up to the order of the sums (BLAS or the compiled passes against NumPy
here), so they differ by rounding, ~1e-16 per step, carried by a stable flow over
~1000 steps (measured: <= 1e-14). Any change of the rule (a factor in ``dgrad``,
``dout``, the loss or the model) changes the accepted steps, which the exact step
count and ``dt`` sequence catch, and moves the weights by far more than 1e-9.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import training
from kernelcomp.training import _engine
from tests import naive_training as naive

D, H, P = 3, 8, 12
WEIGHT_TOL = {"rtol": 1e-9, "atol": 1e-12}
METHODS = ["numpy", "fused"]


def _paper_net(d=D, h=H, seed=0, activation="relu_unit", **kw):
    return kc.FCNetwork.init(d, [h], activation=activation, parameterization="mean_field",
                             seed=seed, **kw)


@pytest.fixture(scope="module")
def data():
    return kc.datasets.stripe(P, D, seed=0)


def _assert_same_flow(res, ref, *, check_dgrad=True):
    """``train``'s result and the naive run took the same steps and ended at the same net."""
    assert res.status == ref.status
    assert res.final.step == ref.steps
    h = res.history
    # every accepted dt, in order (dt[0] = 0 is the initial state)
    np.testing.assert_allclose(h["dt"][1:], ref.dt, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(h["rejected"][1:], ref.rejected)
    if check_dgrad:
        np.testing.assert_allclose(h["dgrad"][1:], ref.dgrad, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(h["dout"][1:], ref.dout, rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(h["loss"], ref.loss, rtol=1e-9, atol=1e-12)
    assert res.final.time == pytest.approx(ref.time, rel=1e-12)
    np.testing.assert_allclose(res.net.weights[0], ref.params.w, **WEIGHT_TOL)
    np.testing.assert_allclose(res.net.weights[1][0], ref.params.beta, **WEIGHT_TOL)
    if ref.params.b is not None:
        np.testing.assert_allclose(res.net.biases[0], ref.params.b, **WEIGHT_TOL)


# ---------------------------------------------------------------------------
# the naive reference itself
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "relu_unit"])
@pytest.mark.parametrize("bias", [True, False])
def test_naive_gradient_is_the_derivative(rng, activation, bias):
    # central finite differences of sum_mu u_mu f(x_mu), away from ReLU kinks
    net = kc.FCNetwork.init(D, [H], activation=activation, parameterization="ntk",
                            bias=bias, bias_std=0.5, seed=3)
    arch, th = naive.from_fcnetwork(net)
    X = rng.standard_normal((P, D))
    u = rng.standard_normal(P)
    g = naive.gradient(arch, th, X, u)
    np.testing.assert_allclose(naive.network_output(arch, th, X), net(X), rtol=1e-12, atol=1e-14)
    eps = 1e-6

    def objective(t):
        return float(u @ naive.network_output(arch, t, X))

    names = ["w", "beta"] + (["b"] if bias else []) + (["b2"] if bias else [])
    for name in names:
        value = getattr(th, name)
        grad = getattr(g, name)
        if name == "b2":
            up = naive.Params(th.w, th.beta, th.b, value + eps)
            dn = naive.Params(th.w, th.beta, th.b, value - eps)
            assert grad == pytest.approx((objective(up) - objective(dn)) / (2 * eps), rel=1e-7)
            continue
        num = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            hi, lo = value.copy(), value.copy()
            hi[idx] += eps
            lo[idx] -= eps
            num[idx] = (objective(naive.Params(**{**vars(th), name: hi}))
                        - objective(naive.Params(**{**vars(th), name: lo}))) / (2 * eps)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


def test_naive_frozen_pattern_is_the_linearised_network(rng):
    # at the pattern's own point the frozen gradient is the true one
    net = _paper_net(seed=4)
    arch, th = naive.from_fcnetwork(net)
    X = rng.standard_normal((P, D))
    u = rng.standard_normal(P)
    g, gf = naive.gradient(arch, th, X, u), naive.gradient(arch, th, X, u, frozen=th)
    for name in ("w", "beta", "b"):
        np.testing.assert_array_equal(getattr(g, name), getattr(gf, name))


# ---------------------------------------------------------------------------
# the network flow against the naive one
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("d", "h", "p", "alpha", "seed"),
                         [(3, 8, 12, 1.0, 0), (2, 5, 8, 1.0, 1), (3, 8, 12, 0.3, 2)])
def test_euler_flow_equals_the_naive_rule(method, d, h, p, alpha, seed):
    X, y = kc.datasets.stripe(p, d, seed=seed)
    net = _paper_net(d, h, seed=seed)
    ref = naive.gradient_flow(net, X, y, alpha=alpha, max_steps=20_000)
    res = training.train(net, X, y, alpha=alpha, integrator="euler", method=method,
                         max_steps=20_000)
    assert ref.status == "converged" and ref.steps > 300
    _assert_same_flow(res, ref)
    np.testing.assert_allclose(res.decision_function(X), alpha * ref.out, **WEIGHT_TOL)
    # dgrad really is what limits some steps: a dgrad measured too small (or too large)
    # would accept (or reject) them and change the step count asserted above
    dg = res.history["dgrad"][1:]
    assert ((dg >= 0.5 * _engine.MAX_DGRAD) & (dg < _engine.MAX_DGRAD)).sum() >= 10
    assert (res.history["dout"][1:] < _engine.MAX_DOUT / alpha).all()


def test_known_step_counts_pin_the_step_control(data):
    # numbers of the naive rule on this problem (computed by tests/naive_training.py):
    # a dgrad 100x too small takes far fewer steps, one 100x too large far more
    X, y = data
    net = _paper_net()
    ref = naive.gradient_flow(net, X, y, alpha=1.0, max_steps=20_000)
    assert ref.steps == 980
    for method in METHODS:
        res = training.train(net, X, y, alpha=1.0, integrator="euler", method=method,
                             max_steps=20_000)
        assert res.final.step == 980
        np.testing.assert_allclose(res.history["dt"][1:51], ref.dt[:50], rtol=1e-12)


# ---------------------------------------------------------------------------
# every option of train
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_center_false_trains_alpha_f(data, method):
    X, y = data
    net = _paper_net()
    ref = naive.gradient_flow(net, X, y, alpha=1.0, center=False, max_steps=20_000)
    res = training.train(net, X, y, alpha=1.0, integrator="euler", center=False,
                         method=method, max_steps=20_000)
    assert res.center is False and res.config["center"] is False
    _assert_same_flow(res, ref)
    # the model is alpha f, not alpha (f - f0): the initial loss is that of alpha y f0
    f0 = net(X)
    assert res.history["loss"][0] == pytest.approx(float(np.mean(np.maximum(1 - y * f0, 0))))
    assert res.history["loss"][0] != pytest.approx(1.0)
    np.testing.assert_allclose(res.decision_function(X), res.net(X), rtol=1e-12)
    assert (res.margins(X, y) >= 1).all()
    centred = naive.gradient_flow(net, X, y, alpha=1.0, center=True, max_steps=20_000)
    assert centred.steps != ref.steps


@pytest.mark.parametrize(("activation", "beta", "steps"),
                         [("tanh", 5.0, 726), ("tanh", 20.0, 898), ("relu_unit", 5.0, 2118)])
def test_soft_hinge_beta_is_the_naive_flow(data, activation, beta, steps):
    X, y = data
    net = _paper_net(activation=activation)
    ref = naive.gradient_flow(net, X, y, alpha=1.0, loss="soft_hinge", beta=beta,
                              max_steps=5000)
    assert ref.status == "converged" and ref.steps == steps
    for method in METHODS:
        res = training.train(net, X, y, alpha=1.0, loss="soft_hinge", beta=beta,
                             integrator="euler", method=method, max_steps=5000)
        assert res.config["beta"] == beta
        _assert_same_flow(res, ref)
        # the reported loss is the soft hinge of that beta
        m = res.margins(X, y)
        assert res.final.loss == pytest.approx(
            float(np.mean(np.log1p(np.exp(beta * (1 - m))) / beta)), rel=1e-9)


def test_two_betas_give_two_flows(data):
    X, y = data
    net = _paper_net(activation="tanh")
    a, b = (training.train(net, X, y, alpha=1.0, loss="soft_hinge", beta=beta, max_steps=5000)
            for beta in (5.0, 20.0))
    assert a.final.step != b.final.step
    assert np.abs(a.net.weights[0] - b.net.weights[0]).max() > 1e-3


def test_keep_networks_false_keeps_them_on_disk(data, tmp_path):
    X, y = data
    net = _paper_net()
    kept = training.train(net, X, y, alpha=1.0, max_steps=200, path=tmp_path / "a.h5")
    lean = training.train(net, X, y, alpha=1.0, max_steps=200, keep_networks=False,
                          path=tmp_path / "b.h5")
    assert len(lean.checkpoints) == len(kept.checkpoints) >= 3
    assert all(ck.net is None for ck in lean.checkpoints)
    assert all(ck.net is not None for ck in kept.checkpoints)
    # the final network is still returned, and the run file has every checkpoint's
    np.testing.assert_array_equal(lean.net.weights[0], kept.net.weights[0])
    run = kc.io.open_run(lean.path)
    assert len(run.checkpoints) == len(lean.checkpoints)
    for ck, rec in zip(run.checkpoints, kept.checkpoints, strict=True):
        assert ck.step == rec.step
        for a, b in zip(ck.network.weights, rec.net.weights, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_max_time_stops_exactly_there(data, method):
    X, y = data
    net = _paper_net()
    ref = naive.gradient_flow(net, X, y, alpha=1.0, max_time=30.0, max_steps=20_000)
    res = training.train(net, X, y, alpha=1.0, integrator="euler", method=method,
                         max_time=30.0)
    assert res.status == "max_time" == ref.status
    assert res.final.time <= 30.0
    assert res.final.time == pytest.approx(30.0, rel=1e-12)
    _assert_same_flow(res, ref)
    assert res.config["max_time"] == 30.0


@pytest.mark.parametrize("method", METHODS)
def test_smaller_max_dgrad_takes_more_steps(data, method):
    X, y = data
    net = _paper_net()
    default = training.train(net, X, y, alpha=1.0, integrator="euler", method=method)
    ref = naive.gradient_flow(net, X, y, alpha=1.0, max_dgrad=1e-5, max_steps=20_000)
    res = training.train(net, X, y, alpha=1.0, integrator="euler", method=method,
                         max_dgrad=1e-5)
    assert res.config["max_dgrad"] == 1e-5
    assert res.final.step > 2 * default.final.step
    _assert_same_flow(res, ref)
    assert (res.history["dgrad"][1:] < 1e-5).all()


def test_smaller_max_dout_is_the_naive_flow(data):
    X, y = data
    net = _paper_net()
    ref = naive.gradient_flow(net, X, y, alpha=1.0, max_dout=0.02, max_steps=20_000)
    res = training.train(net, X, y, alpha=1.0, integrator="euler", max_dout=0.02)
    _assert_same_flow(res, ref)
    assert (res.history["dout"][1:] < 0.02).all()


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("integrator", ["euler", "sliding"])
def test_run_file_margins_carry_alpha(data, tmp_path, center, integrator):
    X, y = data
    alpha = 0.3
    net = _paper_net()
    path = tmp_path / "run.h5"
    res = training.train(net, X, y, alpha=alpha, path=path, center=center,
                         integrator=integrator, max_steps=3000)
    run = kc.io.open_run(path)
    assert run.config["alpha"] == alpha
    Xs, ys = run.data["X_train"], run.data["y_train"]
    f0 = run.checkpoints[0].network(Xs) if center else np.zeros(len(ys))
    assert len(run.checkpoints) >= 3
    for ck in run.checkpoints:
        expected = alpha * ys * (ck.network(Xs) - f0)
        np.testing.assert_allclose(ck.margins, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(run.checkpoints[-1].margins, res.margins(X, y), rtol=1e-9,
                               atol=1e-12)


# ---------------------------------------------------------------------------
# kernel_gradient_flow: beta and max_wall
# ---------------------------------------------------------------------------
def test_kernel_flow_soft_hinge_beta_is_the_naive_flow():
    X, y = kc.datasets.stripe(30, 3, seed=4)
    K = kc.NTK(depth=1)(X)
    results = {}
    for beta in (3.0, 20.0):
        a, steps, dts = naive.kernel_soft_hinge_flow(K, y, beta=beta)
        res = training.kernel_gradient_flow(K, y, loss="soft_hinge", beta=beta)
        assert res.status == "converged"
        assert res.final.step == steps
        np.testing.assert_allclose(res.history["dt"][1:], dts, rtol=1e-12)
        np.testing.assert_allclose(res.coef, a, rtol=1e-9, atol=1e-12 * np.abs(a).max())
        results[beta] = res
    assert results[3.0].final.step != results[20.0].final.step


def test_kernel_flow_max_wall():
    X, y = kc.datasets.stripe(30, 3, seed=4)
    K = kc.NTK(depth=1)(X)
    res = training.kernel_gradient_flow(K, y, max_wall=1e-9)
    assert res.status == "max_wall"
    assert res.final.step == 0 and res.final.n_unsat == 30
    # a generous wall-clock limit does not change the flow
    free = training.kernel_gradient_flow(K, y)
    walled = training.kernel_gradient_flow(K, y, max_wall=600.0)
    assert walled.status == "converged" and walled.final.step == free.final.step
    with pytest.raises(ValueError, match="max_wall must be > 0 seconds"):
        training.kernel_gradient_flow(K, y, max_wall=0.0)


# ---------------------------------------------------------------------------
# every stop status (FlowState.status) from a constructed case
# ---------------------------------------------------------------------------
def test_statuses_are_the_documented_ones():
    # the tuple the engine names its stop reasons in, and FlowState's documentation
    import re

    documented = re.findall(r'``"(\w+)"``', training.FlowState.__doc__.split("status :")[1])
    assert sorted(documented) == sorted(_engine.STATUSES)


def test_status_converged_and_max_steps(data):
    X, y = data
    net = _paper_net()
    res = training.train(net, X, y, alpha=1.0)
    assert res.status == "converged" and res.final.n_unsat == 0
    res = training.train(net, X, y, alpha=1.0, max_steps=7)
    assert res.status == "max_steps" and res.final.step == 7 and res.final.n_unsat > 0


def test_status_max_wall(data):
    X, y = data
    res = training.train(_paper_net(), X, y, alpha=1.0, max_wall=1e-9)
    assert res.status == "max_wall"
    assert res.final.step == 0  # the initial forward pass alone takes more than 1 ns


@pytest.mark.parametrize("center", [True, False])
def test_status_nan_from_overflowing_outputs(data, center):
    # weights of 1e200 make f = inf (and f - f0 = inf - inf = NaN): the run stops at once
    X, y = data
    net = _paper_net()
    net.weights = [net.weights[0] * 1e200, net.weights[1] * 1e200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = training.train(net, X, y, alpha=1.0, center=center)
    assert res.status == "nan"
    assert res.final.step == 0 and math.isnan(res.final.loss)


def test_status_nan_before_converged(data):
    # f = +inf at every point with every label +1: the margins are +inf >= 1 and the hinge
    # loss is 0, yet the outputs are not finite: "nan", not "converged"
    X, _ = data
    net = _paper_net()
    W = np.abs(net.weights[0]) * 1e200
    net.weights = [np.vstack([W[: H // 2], -W[: H // 2]]), np.abs(net.weights[1]) * 1e200]
    net.biases = [np.zeros(H), None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isposinf(net(X)).all()
        res = training.train(net, X, np.ones(P), alpha=1.0, center=False)
    assert res.status == "nan" and res.final.step == 0


@pytest.mark.parametrize("method", METHODS)
def test_status_stalled_after_max_rejections(data, method):
    # a huge readout on tiny first-layer weights and huge inputs: finite outputs, an
    # overflowing (infinite) gradient, so every tentative step, however small, is not
    # finite and is rejected; after MAX_REJECTIONS in a row the run gives up
    X, y = data
    net = _paper_net()
    net.weights = [net.weights[0] * 1e-20, net.weights[1] * 1e300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = training.train(net, X * 1e10, y, alpha=1.0, integrator="euler", method=method)
    assert res.status == "stalled"
    assert res.final.step == 0 and res.final.rejected == _engine.MAX_REJECTIONS


def test_status_stalled_when_time_stops_advancing():
    # a kernel with a huge constant mode: the two points' gradients cancel on it until the
    # second one reaches margin 1; from then the explicit step zigzags across its kink with
    # dt ~ 1e-13 at t ~ 1, and after STALL_STEPS such steps in a row the run gives up
    K = 1e12 * np.ones((2, 2)) + np.diag([1.0, 2.0])
    y = np.array([1.0, -1.0])
    res = training.kernel_gradient_flow(K, y, integrator="euler", max_steps=20_000)
    assert res.status == "stalled" and res.final.rejected == 0
    h = res.history
    creeping = h["dt"][1:] <= 1e-9 * h["time"][:-1]  # dt of a step against the time before it
    run = len(creeping) - np.flatnonzero(~creeping)[-1] - 1  # trailing creeping steps
    assert run == _engine.STALL_STEPS


def test_status_stalled_follows_the_documented_stall_limit(monkeypatch):
    # STALL_STEPS is the other public, documented knob of "stalled": with 1, the first
    # step that advances the time by less than 1e-9 of itself ends the run
    monkeypatch.setattr(_engine, "STALL_STEPS", 1)
    K = 1e12 * np.ones((2, 2)) + np.diag([1.0, 2.0])
    res = training.kernel_gradient_flow(K, np.array([1.0, -1.0]), integrator="euler")
    assert res.status == "stalled"
    assert res.history["dt"][-1] <= 1e-9 * res.history["time"][-2]
    assert (res.history["dt"][1:-1] > 1e-9 * res.history["time"][:-2]).all()


def test_status_stalled_follows_the_documented_rejection_limit(data, monkeypatch):
    # MAX_REJECTIONS is the public, documented knob of the "stalled" status (FlowState):
    # with a limit of 1, the first rejected step (dt = 1 is far too large at alpha = 1e-3)
    # ends the run
    X, y = data
    monkeypatch.setattr(_engine, "MAX_REJECTIONS", 1)
    res = training.train(_paper_net(), X, y, alpha=1e-3, integrator="euler")
    assert res.status == "stalled" and res.final.step == 0 and res.final.rejected == 1


@pytest.mark.parametrize("method", METHODS)
def test_status_stationary_on_contradictory_labels(data, method):
    # a duplicated point with the opposite label cannot be fitted: the sliding integrator
    # finds the flow's stationary point; the explicit one stops there too when the pair's
    # gradients cancel exactly (the fused passes), else runs into its step limit
    X, y = data
    Xd, yd = np.vstack([X, X[:1]]), np.append(y, -y[0])
    net = _paper_net()
    res = training.train(net, Xd, yd, alpha=1.0, method=method, max_steps=5000)
    assert res.status == "stationary" and res.final.n_unsat >= 1
    euler = training.train(net, Xd, yd, alpha=1.0, method=method, integrator="euler",
                           max_steps=2000)
    assert euler.final.n_unsat >= 1
    assert euler.status == ("stationary" if method == "fused" else "max_steps")


def test_every_documented_status_is_covered():
    # the statuses FlowState documents; each has a test above
    doc = training.FlowState.__doc__
    for status in ("converged", "max_time", "max_steps", "max_wall", "nan", "stalled",
                   "stationary"):
        assert f'"{status}"' in doc


# ---------------------------------------------------------------------------
# a flow whose gradient is exactly zero before every margin reaches 1: it used to
# accept ~10^4 empty steps while dt grew by 1.1 each until it overflowed, and end
# as "max_time" at time = inf although no time limit was set
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("integrator", ["sliding", "euler"])
def test_zero_gradient_flow_is_not_a_time_limit(integrator):
    # a zero Gram matrix: F = K a stays 0 whatever a, so the hinge flow cannot move
    res = training.kernel_gradient_flow(np.zeros((3, 3)), np.array([1.0, -1.0, 1.0]),
                                        integrator=integrator)
    assert res.final.n_unsat == 3
    assert math.isfinite(res.final.time)
    assert res.status == "stationary" and res.final.step <= 1


def test_dead_units_on_the_last_unfitted_point_end_as_stationary():
    # the one point left below margin 1 has every ReLU unit off and there is no readout
    # bias: the gradient is exactly zero, the flow has stopped short of the margin
    X, y = kc.datasets.stripe(10, 3, seed=0)
    net = _paper_net(3, 6, seed=0)
    res = training.train(net, X, y, alpha=0.1, max_steps=20_000)
    assert res.final.n_unsat == 1
    m = res.margins(X, y)
    z = res.net.weight_mult[0] * X @ res.net.weights[0].T + res.net.biases[0]
    assert not (z[m < 1] > 0).any()  # every unit off on the unfitted point
    assert res.status == "stationary" and math.isfinite(res.final.time)
