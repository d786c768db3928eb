"""kc.training: losses, the adaptive gradient flow, networks and frozen kernels."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import training
from kernelcomp._kernels import training as core
from kernelcomp.training import _integrators, _network_flow, _network_hooks


@pytest.fixture
def rng():
    return np.random.default_rng(2021)


def _paper_net(d, h, seed=0, **kw):
    return kc.FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field",
                             seed=seed, **kw)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def test_losses_against_their_formulas(rng):
    z = np.concatenate([rng.normal(0, 3, 50), [1.0, -40.0, 40.0]])
    for zi, l, dl in zip(z, training.loss_value(z, "hinge"), training.loss_derivative(z),
                         strict=True):
        assert l == max(0.0, 1.0 - zi)
        assert dl == (-1.0 if zi < 1 else 0.0)
    beta = 20.0
    l = training.loss_value(z, "soft_hinge", beta)
    dl = training.loss_derivative(z, "softhinge", beta)
    for zi, li, dli in zip(z, l, dl, strict=True):
        ref = math.log1p(math.exp(beta * (1 - zi))) / beta if beta * (1 - zi) < 700 else 1 - zi
        assert li == pytest.approx(ref, rel=1e-12, abs=1e-300)
        x = beta * (1 - zi)
        sig = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
        assert dli == pytest.approx(-sig, rel=1e-12, abs=1e-300)
    # the derivative is the derivative (central differences)
    eps = 1e-6
    num = (training.loss_value(z + eps, "soft_hinge", 3.0)
           - training.loss_value(z - eps, "soft_hinge", 3.0)) / (2 * eps)
    np.testing.assert_allclose(training.loss_derivative(z, "soft_hinge", 3.0), num, atol=1e-7)


def test_loss_errors():
    with pytest.raises(ValueError, match="loss must be one of"):
        training.loss_value([0.0], "square")
    with pytest.raises(TypeError, match="loss must be a string"):
        training.loss_derivative([0.0], 3)
    with pytest.raises(ValueError, match="beta must be > 0"):
        training.loss_value([0.0], "soft_hinge", beta=0.0)


# ---------------------------------------------------------------------------
# the step rule, checked on histories
# ---------------------------------------------------------------------------
def _check_step_rule(res, alpha, max_dgrad=1e-4, max_dout=0.1):
    h = res.history
    assert h["step"].tolist() == list(range(len(h["step"])))
    assert h["dt"][0] == 0 and h["time"][0] == 0
    np.testing.assert_allclose(np.cumsum(h["dt"]), h["time"], rtol=1e-12)
    assert (h["dgrad"][1:] < max_dgrad).all()
    assert (h["dout"][1:] < max_dout / alpha).all()
    assert h["dt"][1] == pytest.approx(1.0) or h["dt"][1] < 1.0  # starts at dt = 1
    ratio = h["dt"][2:] / h["dt"][1:-1]
    # between accepted steps dt is kept, grown by 1.1, or cut by powers of 10
    k = np.round(-np.log10(ratio / np.where(np.isclose(ratio * 10 ** np.round(
        -np.log10(ratio)), 1.1), 1.1, 1.0)))
    rebuilt = 10.0 ** -k * np.where(np.isclose(ratio * 10**k, 1.1), 1.1, 1.0)
    np.testing.assert_allclose(ratio, rebuilt, rtol=1e-9)
    assert (k >= 0).all()


def _naive_kernel_flow(K, y, alpha=1.0, max_dgrad=1e-4, max_dout=0.1):
    """PAPER.md's rule written out for F = K a (hinge; kink frozen in dgrad)."""
    p = len(y)
    a = np.zeros(p)
    dt = 1.0
    steps = 0
    while (alpha * y * (K @ a) < 1).any():
        F = K @ a
        v = np.where(alpha * y * F < 1, -1.0, 0.0) * y / p
        for _ in range(100):
            a2 = a - dt * v
            F2 = K @ a2
            v2 = np.where(alpha * y * F2 < 1, -1.0, 0.0) * y / p
            ref = np.where(alpha * y * F < 1, -1.0, 0.0) * y / p  # same l' as the start
            num = (v - ref) @ K @ (v - ref)
            den = math.sqrt((v @ K @ v) * (ref @ K @ ref))
            dgrad = 0.0 if den == 0 else num / den
            dout = np.abs(F2 - F).max()
            if dgrad < max_dgrad and dout < max_dout / alpha:
                if dgrad < max_dgrad / 2 and dout < max_dout / alpha / 2:
                    dt *= 1.1
                break
            dt /= 10
        a = a2
        del v2
        steps += 1
    return a, steps


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_kernel_flow_matches_the_naive_rule(alpha):
    X, y = kc.datasets.stripe(30, 3, seed=4)
    K = kc.NTK(depth=1)(X)
    res = training.kernel_gradient_flow(K, y, alpha=alpha, integrator="euler")
    a, steps = _naive_kernel_flow(K, y, alpha)
    assert res.status == "converged"
    assert res.final.step == steps
    np.testing.assert_allclose(res.coef, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.train_output, K @ res.coef, rtol=1e-9, atol=1e-9)
    assert (alpha * y * res.train_output >= 1).all()
    assert (res.coef * y >= 0).all()  # the hinge only ever pushes a_mu along y_mu
    _check_step_rule(res, alpha)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_flow_soft_hinge_and_prediction(dtype):
    X, y = kc.datasets.stripe(60, 3, seed=1)
    Xt, yt = kc.datasets.stripe(400, 3, seed=1, split="test")
    k = kc.NTK(depth=1)
    K, Kt = k(X.astype(dtype)), k(Xt.astype(dtype), X.astype(dtype))
    res = training.kernel_gradient_flow(K, y, loss="soft_hinge")
    assert res.status == "converged" and res.final.n_unsat == 0
    _check_step_rule(res, 1.0)
    F = Kt.astype(np.float64) @ res.coef
    np.testing.assert_allclose(res.decision_function(Kt), F, rtol=1e-12)
    assert res.test_error(Kt, yt) == np.mean(yt * F <= 0)
    np.testing.assert_array_equal(res.predict(Kt), np.where(F > 0, 1.0, -1.0))
    assert res.test_error(Kt, yt) < 0.35


def test_kernel_flow_limits_and_errors():
    X, y = kc.datasets.stripe(30, 3, seed=0)
    K = kc.NTK()(X)
    assert training.kernel_gradient_flow(K, y, max_steps=5).status == "max_steps"
    r = training.kernel_gradient_flow(K, y, max_time=3.0)
    assert r.status == "max_time" and r.final.time == pytest.approx(3.0)
    with pytest.raises(ValueError, match="K must be a square Gram matrix"):
        training.kernel_gradient_flow(K[:, :5], y)
    with pytest.raises(ValueError, match="y must hold labels -1 and \\+1 only"):
        training.kernel_gradient_flow(K, (y > 0).astype(float))
    with pytest.raises(ValueError, match="y has 29 labels, but there are 30 samples"):
        training.kernel_gradient_flow(K, y[:-1])
    with pytest.raises(ValueError, match="K contains NaN"):
        training.kernel_gradient_flow(np.full((3, 3), np.nan), [1, -1, 1])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        training.kernel_gradient_flow(K, y, alpha=0.0)
    with pytest.raises(ValueError, match="max_time must be > 0"):
        training.kernel_gradient_flow(K, y, max_time=-1.0)
    with pytest.raises(ValueError, match="max_dgrad must be > 0"):
        training.kernel_gradient_flow(K, y, max_dgrad=0.0)
    with pytest.raises(ValueError, match="K_test has 3 features, but 30 are expected"):
        training.kernel_gradient_flow(K, y, max_steps=1).decision_function(np.ones((2, 3)))


# ---------------------------------------------------------------------------
# compiled passes against the NumPy network
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "relu_unit", "tanh", "erf", "linear"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_passes_match_the_network(rng, activation, bias):
    d, h, p = 4, 37, 23
    net = kc.FCNetwork.init(d, [h], activation=activation, parameterization="mean_field",
                            bias=bias, seed=3)
    X = rng.standard_normal((p, d))
    out0 = rng.standard_normal(p)
    fused = _network_hooks._fused_problem(net, X, out0)
    ref = _network_hooks._network_problem(net, X, out0)
    prm = _network_hooks._params_of(net)
    np.testing.assert_allclose(fused.forward(prm), ref.forward(prm), rtol=1e-12, atol=1e-14)
    u = rng.standard_normal(p)
    u[::4] = 0.0
    for rows in (None, np.array([0, 5, 7])):
        for a, b in zip(fused.backward(prm, u, rows), ref.backward(prm, u, rows), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)
    # the pair pass: the new gradient, and the reference with the old ReLU pattern
    old = [q + 0.3 * rng.standard_normal(q.shape) for q in prm]
    uref = rng.standard_normal(p)
    g, r = fused.pair(prm, u, old, uref)
    for a, b in zip(g, ref.backward(prm, u, None), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)
    expect = _frozen_pattern_gradient(net, prm, old, X, uref)
    for a, b in zip(r, expect, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)


def _frozen_pattern_gradient(net, prm, old, X, u):
    """Explicit loops: gradient at prm of sum u f, ReLU pattern taken at old."""
    W, beta = prm[0], prm[1][0]
    Wo = old[0]
    has_b = net.biases[0] is not None
    b = prm[2] if has_b else np.zeros(W.shape[0])
    bo = old[2] if has_b else np.zeros(W.shape[0])
    c1, c2 = net.weight_mult
    s1 = net.bias_mult[0] if has_b else 0.0
    act = net.activation
    gW, gb, gbeta = np.zeros_like(W), np.zeros(W.shape[0]), np.zeros(W.shape[0])
    for n in range(W.shape[0]):
        for mu in range(X.shape[0]):
            z = c1 * W[n] @ X[mu] + s1 * b[n]
            if act in ("relu", "relu_unit"):
                k = math.sqrt(2) if act == "relu_unit" else 1.0
                on = c1 * Wo[n] @ X[mu] + s1 * bo[n] > 0
                phi, dphi = (k * z, k) if on else (0.0, 0.0)
            elif act == "tanh":
                phi, dphi = math.tanh(z), 1 - math.tanh(z) ** 2
            elif act == "erf":
                phi, dphi = math.erf(z), 2 / math.sqrt(math.pi) * math.exp(-z * z)
            else:
                phi, dphi = z, 1.0
            gbeta[n] += c2 * u[mu] * phi
            gW[n] += c2 * beta[n] * u[mu] * dphi * c1 * X[mu]
            gb[n] += c2 * beta[n] * u[mu] * dphi * s1
    out = [gW, gbeta[None, :]]
    if has_b:
        out.append(gb)
    return out


def test_activation_codes_cover_the_network_names():
    assert set(core.CODES) <= set(kc.network.ACTIVATIONS)


# ---------------------------------------------------------------------------
# training networks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fused", "numpy"])
def test_tiny_problem_reaches_zero_hinge_loss(method):
    X, y = kc.datasets.stripe(24, 3, seed=0)
    net = _paper_net(3, 64, seed=1)
    w0 = [W.copy() for W in net.weights]
    res = training.train(net, X, y, alpha=1.0, method=method, max_steps=20_000)
    assert res.status == "converged"
    assert res.final.loss == 0.0 and res.final.n_unsat == 0
    assert (res.margins(X, y) >= 1).all()
    assert res.test_error(X, y) == 0.0
    _check_step_rule(res, 1.0)
    # the input network is f0, untouched
    assert all(np.array_equal(a, b) for a, b in zip(w0, net.weights, strict=True))
    np.testing.assert_array_equal(res.net0.weights[0], w0[0])
    F = res.alpha * (res.net(X) - res.net0(X))
    np.testing.assert_allclose(res.decision_function(X), F, rtol=1e-12)


def test_fused_and_numpy_follow_the_same_smooth_flow():
    # smooth activation and loss: both step rules are PAPER.md's exactly
    X, y = kc.datasets.stripe(20, 3, seed=2)
    net = kc.FCNetwork.init(3, [30], activation="tanh", parameterization="mean_field", seed=0)
    a = training.train(net, X, y, alpha=1.0, loss="soft_hinge", method="fused", max_steps=60)
    b = training.train(net, X, y, alpha=1.0, loss="soft_hinge", method="numpy", max_steps=60)
    np.testing.assert_allclose(a.history["dt"], b.history["dt"], rtol=1e-9)
    for wa, wb in zip(a.net.weights, b.net.weights, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float32_inputs_train_in_float64(dtype):
    X, y = kc.datasets.stripe(16, 2, seed=5)
    net = _paper_net(2, 20)
    a = training.train(net, X.astype(dtype), y.astype(dtype), alpha=1.0, max_steps=30)
    b = training.train(net, X.astype(dtype).astype(np.float64), y, alpha=1.0, max_steps=30)
    assert a.net.weights[0].dtype == np.float64
    np.testing.assert_array_equal(a.net.weights[0], b.net.weights[0])


def test_lazy_kernel_barely_moves_feature_kernel_moves_a_lot():
    d, h = 3, 400
    X, y = kc.datasets.stripe(30, d, seed=3)
    net = _paper_net(d, h, seed=0)
    K0 = kc.EmpiricalNTK(net)(X)
    change = {}
    for regime, alpha in (("lazy", 1e3), ("feature", 1e-2)):
        res = training.train(net, X, y, alpha=alpha, max_wall=40.0)
        assert res.status == "converged", regime
        K1 = kc.EmpiricalNTK(res.net)(X)
        change[regime] = np.linalg.norm(K1 - K0) / np.linalg.norm(K0)
    assert change["lazy"] < 0.02
    assert change["feature"] > 1.0


def test_checkpoints_round_trip_through_the_run_file(tmp_path):
    X, y = kc.datasets.stripe(20, 3, seed=0)
    Xt, yt = kc.datasets.stripe(50, 3, seed=0, split="test")
    net = _paper_net(3, 16)
    path = tmp_path / "run.h5"
    res = training.train(net, X, y, alpha=1.0, X_test=Xt, y_test=yt, path=path,
                         config={"seed": 0, "dataset": "stripe"})
    assert res.path == path and path.exists()
    run = kc.io.open_run(path)
    assert run.complete
    assert run.config["alpha"] == 1.0 and run.config["dataset"] == "stripe"
    assert run.summary["status"] == res.status
    np.testing.assert_array_equal(run.data["X_train"], X)
    np.testing.assert_array_equal(run.data["y_test"], yt)
    assert len(run.checkpoints) == len(res.checkpoints) >= 3
    assert res.checkpoints[0].reason.startswith("init")
    assert res.checkpoints[-1].reason.endswith("final")
    for rec, ck in zip(res.checkpoints, run.checkpoints, strict=True):
        assert ck.step == rec.step and ck.time == rec.time and ck.loss == rec.loss
        assert ck.test_error == rec.test_error and ck.train_error == rec.train_error
        assert ck.extra["reason"] == rec.reason
        stored = ck.network
        for a, b in zip(stored.weights, rec.net.weights, strict=True):
            np.testing.assert_array_equal(a, b)
        F = stored(X) - run.checkpoints[0].network(X)
        np.testing.assert_allclose(ck.margins, y * F, rtol=1e-12, atol=1e-12)
    # geometric steps and loss milestones are there
    reasons = "+".join(r.reason for r in res.checkpoints)
    assert "step" in reasons and "loss<0.5" in reasons
    with pytest.raises(FileExistsError):
        training.train(net, X, y, alpha=1.0, path=path)


def test_a_killed_run_keeps_its_checkpoints(tmp_path, monkeypatch):
    X, y = kc.datasets.stripe(20, 3, seed=0)
    net = _paper_net(3, 16)
    calls = {"n": 0}
    original = _network_hooks._net_from_params

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(_network_flow, "_net_from_params", dying)
    path = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        training.train(net, X, y, alpha=1.0, path=path)
    assert not path.exists()
    run = kc.io.open_run(tmp_path / "run.h5.partial")
    assert not run.complete and len(run.checkpoints) == 3


def test_geometric_schedule():
    it = _network_flow._geometric_schedule(4)
    steps = [next(it) for _ in range(12)]
    assert steps == [0, 1, 2, 3, 6, 10, 18, 32, 56, 100, 178, 316]
    it = _network_flow._geometric_schedule(20)
    first = [next(it) for _ in range(15)]
    assert first == list(range(15))  # never repeats a step


def test_explicit_checkpoint_steps():
    X, y = kc.datasets.stripe(20, 3, seed=0)
    res = training.train(_paper_net(3, 16), X, y, alpha=1.0, checkpoints=[0, 5, 7],
                         loss_milestones=(), max_steps=10)
    assert [r.step for r in res.checkpoints] == [0, 5, 7, 10]
    assert res.status == "max_steps"


def test_train_errors():
    X, y = kc.datasets.stripe(10, 3, seed=0)
    net = _paper_net(3, 8)
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork"):
        training.train(object(), X, y, alpha=1.0)
    with pytest.raises(TypeError, match="net must have a single output"):
        training.train(kc.FCNetwork.init(3, [4], n_outputs=2), X, y, alpha=1.0)
    with pytest.raises(ValueError, match="X has 2 features, but 3 are expected"):
        training.train(net, X[:, :2], y, alpha=1.0)
    with pytest.raises(ValueError, match="y must hold labels -1 and \\+1 only"):
        training.train(net, X, y * 2, alpha=1.0)
    with pytest.raises(ValueError, match="X_test and y_test must be given together"):
        training.train(net, X, y, alpha=1.0, X_test=X)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        training.train(net, X, y, alpha=-1.0)
    with pytest.raises(ValueError, match=r"loss_milestones\[0\] must be in \(0, 1\)"):
        training.train(net, X, y, alpha=1.0, loss_milestones=[2.0])
    with pytest.raises(TypeError, match="checkpoints must be an int"):
        training.train(net, X, y, alpha=1.0, checkpoints=True)
    with pytest.raises(ValueError, match="method must be"):
        training.train(net, X, y, alpha=1.0, method="torch")
    with pytest.raises(ValueError, match="method='fused' needs a one-hidden-layer"):
        training.train(kc.FCNetwork.init(3, [4, 4]), X, y, alpha=1.0, method="fused")
    with pytest.raises(TypeError, match="config must be a dict"):
        training.train(net, X, y, alpha=1.0, config=[1])


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"method": "bogus"}, ValueError, "method must be"),
        ({"integrator": "rk4"}, ValueError, "integrator must be one of"),
        ({"loss": "square"}, ValueError, "loss must be one of"),
        ({"alpha": 0.0}, ValueError, "alpha must be > 0"),
        ({"max_steps": -1}, ValueError, "max_steps must be >= 0"),
        ({"checkpoints": [1, "a"]}, TypeError, r"checkpoints\[1\] must be an integer"),
        ({"margin_fractions": "0.1"}, TypeError, "margin_fractions must be a sequence"),
        ({"config": [1]}, TypeError, "config must be a dict"),
        ({"config": {"seed": object()}}, TypeError, "config must be JSON serialisable"),
        ({"center": "no"}, TypeError, "center must be True or False"),
        ({"force": "yes"}, TypeError, "force must be True or False"),
        ({"keep_networks": "no"}, TypeError, "keep_networks must be True or False"),
        ({"progress": 1}, TypeError, "progress must be True or False"),
        ({"y_test": np.ones(3)}, ValueError, "X_test and y_test must be given together"),
    ],
)
def test_train_checks_every_argument_before_creating_a_file(tmp_path, bad, error, message):
    # a failed call leaves no file behind (no PATH.partial that would make the next,
    # correct call fail with FileExistsError)
    X, y = kc.datasets.stripe(10, 3, seed=0)
    net = _paper_net(3, 8)
    path = tmp_path / "run.h5"
    with pytest.raises(error, match=message):
        training.train(net, X, y, path=path, **{"alpha": 1.0, "max_steps": 3, **bad})
    assert list(tmp_path.iterdir()) == []
    res = training.train(net, X, y, alpha=1.0, path=path, max_steps=3)
    assert res.path == path and path.exists()


def test_train_accepts_numpy_scalars_for_its_options():
    X, y = kc.datasets.stripe(10, 3, seed=0)
    res = training.train(_paper_net(3, 8), X, y, alpha=np.float32(1.0), max_steps=np.int64(3),
                         checkpoints=np.int64(2), center=np.bool_(True))
    assert res.final.step == 3 and res.config["checkpoints"] == 2 and res.center is True


def test_deeper_networks_train_on_the_numpy_path():
    X, y = kc.datasets.stripe(16, 3, seed=0)
    net = kc.FCNetwork.init(3, [12, 12], activation="tanh", parameterization="ntk", seed=0)
    res = training.train(net, X, y, alpha=1.0, loss="soft_hinge", max_steps=5000)
    assert res.status == "converged"
    assert (res.margins(X, y) >= 1).all()


def test_progress_bar_runs(capsys):
    X, y = kc.datasets.stripe(12, 2, seed=0)
    res = training.train(_paper_net(2, 8), X, y, alpha=1.0, progress=True, max_steps=30)
    assert res.final.step <= 30
    err = capsys.readouterr().err
    assert "train" in err and f"{res.final.step}step" in err.replace(" ", "")
    training.train(_paper_net(2, 8), X, y, alpha=1.0, max_steps=30)
    assert capsys.readouterr().err == ""  # no bar unless asked


@pytest.mark.parametrize("activation", ["relu", "relu_unit"])
def test_numpy_pair_matches_the_explicit_frozen_pattern(rng, activation):
    d, h, p = 3, 11, 9
    net = kc.FCNetwork.init(d, [h], activation=activation, parameterization="mean_field", seed=1)
    X = rng.standard_normal((p, d))
    prob = _network_hooks._network_problem(net, X, np.zeros(p))
    prm = _network_hooks._params_of(net)
    old = [q + 0.3 * rng.standard_normal(q.shape) for q in prm]
    u, uref = rng.standard_normal(p), rng.standard_normal(p)
    g, r = prob.pair(prm, u, old, uref)
    for a, b in zip(g, prob.backward(prm, u, None), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(r, _frozen_pattern_gradient(net, prm, old, X, uref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)


def test_history_counts_rejected_steps():
    X, y = kc.datasets.stripe(40, 3, seed=0)
    res = training.kernel_gradient_flow(kc.NTK()(X), y)
    h = res.history
    assert h["rejected"][0] == 0 and h["rejected"].sum() > 0
    # every rejection divides dt by 10 before the step is accepted
    ratio = h["dt"][2:] / h["dt"][1:-1]
    cut = h["rejected"][2:] > 0
    np.testing.assert_allclose(ratio[cut] * 10.0 ** h["rejected"][2:][cut],
                               np.where(np.isclose(ratio[cut] * 10.0 ** h["rejected"][2:][cut],
                                                   1.1), 1.1, 1.0), rtol=1e-9)


def test_parallel_and_serial_passes_agree_exactly(rng):
    p, d, h = 50, 4, 30
    X = rng.standard_normal((p, d))
    W, Wo = rng.standard_normal((h, d)), rng.standard_normal((h, d))
    b, bo, beta = rng.standard_normal(h), rng.standard_normal(h), rng.standard_normal(h)
    u, uref = rng.standard_normal(p), rng.standard_normal(p)
    args = (0.5, 1.0, 1.0 / h)
    outs = []
    for fwd, bwd in ((core.forward, core.backward_pair),
                     (core.forward_serial, core.backward_pair_serial)):
        out = np.empty(p)
        fwd(X, W, b, beta, *args, 0.0, core.RELU_UNIT, out)
        g = [np.empty((h, d)), np.empty(h), np.empty(h), np.empty((h, d)), np.empty(h),
             np.empty(h)]
        bwd(X, W, b, beta, Wo, bo, *args, core.RELU_UNIT, u, uref, *g)
        outs.append([out, *g])
    for a, c in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("activation", ["relu", "relu_unit", "tanh", "erf", "linear"])
def test_blocked_passes_do_not_depend_on_the_thread_count(rng, activation):
    # several sample and neuron blocks, a neuron count that is no multiple of
    # the block, zero output gradients, and a ragged tail of active samples
    p, d, h = 2 * core._SAMPLE_BLOCK + 37, 7, 2 * core._NEURON_BLOCK + 45
    net = kc.FCNetwork.init(d, [h], activation=activation, parameterization="mean_field",
                            seed=5)
    X = rng.standard_normal((p, d))
    prm = _network_hooks._params_of(net)
    old = [q + 0.1 * rng.standard_normal(q.shape) for q in prm]
    W, b, beta = prm[0], prm[2], prm[1][0]
    Wo, bo = old[0], old[2]
    u, uref = rng.standard_normal(p), rng.standard_normal(p)
    u[::3] = 0.0
    uref[::5] = 0.0
    u[-7:] = uref[-7:] = 0.0
    rows = np.flatnonzero(rng.random(p) < 0.4)
    c1, c2 = float(net.weight_mult[0]), float(net.weight_mult[1])
    s1 = float(net.bias_mult[0])
    act = core.CODES[activation]

    def run(fwd, bwd, pair):
        out = np.empty(p)
        fwd(X, W, b, beta, c1, s1, c2, 0.25, act, out)
        g = [np.empty((h, d)), np.empty(h), np.empty(h)]
        bwd(X, W, b, beta, c1, s1, c2, act, u, rows, *g)
        r = [np.empty((h, d)), np.empty(h), np.empty(h), np.empty((h, d)), np.empty(h),
             np.empty(h)]
        pair(X, W, b, beta, Wo, bo, c1, s1, c2, act, u, uref, *r)
        return [out, *g, *r]

    runs = [run(core.forward_serial, core.backward_serial, core.backward_pair_serial)]
    n0 = numba.get_num_threads()
    try:
        for n in sorted({1, 2, n0}):
            if n <= numba.config.NUMBA_NUM_THREADS:
                numba.set_num_threads(n)
                runs.append(run(core.forward, core.backward, core.backward_pair))
    finally:
        numba.set_num_threads(n0)
    for other in runs[1:]:
        for a, c in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a.view(np.int64), c.view(np.int64))
    # and the blocked passes are right: against the NumPy network
    out0 = np.zeros(p)
    fused = _network_hooks._fused_problem(net, X, out0)
    ref = _network_hooks._network_problem(net, X, out0)
    np.testing.assert_allclose(fused.forward(prm), ref.forward(prm), rtol=1e-12, atol=1e-14)
    for a, c in zip(fused.backward(prm, u, rows), ref.backward(prm, u, rows), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-11, atol=1e-15)
    g, r = fused.pair(prm, u, old, uref)
    rg = ref.pair(prm, u, old, uref) if ref.pair is not None else (
        ref.backward(prm, u, None), ref.backward(prm, uref, None))
    for a, c in zip([*g, *r], [*rg[0], *rg[1]], strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------
# the "sliding" integrator: the hinge's kink taken implicitly
# ---------------------------------------------------------------------------
def _box_qp_bruteforce(Q, q):
    """Minimum of 1/2 w^T Q w + q^T w on [0, 1]^k over every face of the box."""
    import itertools

    k = len(q)
    best = math.inf
    for code in itertools.product((0, 1, 2), repeat=k):  # 0, 1 or free
        code = np.array(code)
        w = np.where(code == 1, 1.0, 0.0)
        free = np.flatnonzero(code == 2)
        if len(free):
            fixed = np.flatnonzero(code != 2)
            rhs = -(q[free] + Q[np.ix_(free, fixed)] @ w[fixed])
            w[free] = np.linalg.lstsq(Q[np.ix_(free, free)], rhs, rcond=None)[0]
            if (w[free] < -1e-12).any() or (w[free] > 1 + 1e-12).any():
                continue
        best = min(best, 0.5 * w @ Q @ w + q @ w)
    return best


@pytest.mark.parametrize("rank", [6, 3])
def test_kink_multipliers_solve_the_box_qp(rng, rank):
    from kernelcomp._kernels.qp import box_qp_gauss_seidel

    for _ in range(20):
        B = rng.standard_normal((6, rank))
        Q = B @ B.T * 10.0 ** rng.uniform(-3, 3)  # PSD, singular when rank < 6
        q = rng.standard_normal(6) * np.sqrt(np.diag(Q).max())
        best = _box_qp_bruteforce(Q, q)
        # active-set iteration (cold and warm started) and the Gauss-Seidel fallback
        gs = rng.uniform(0, 1, 6)
        box_qp_gauss_seidel(Q, q, gs, 100_000, 1e-15)
        for w in (_integrators._kink_multipliers(Q, q),
                  _integrators._kink_multipliers(Q, q, rng.uniform(0, 1, 6)), gs):
            assert ((w >= 0) & (w <= 1)).all()
            r = Q @ w + q
            tol = 1e-8 * (np.abs(q).max() + np.abs(Q).max())
            # KKT: the hinge's complementarity at the kink
            assert (r[w == 0] >= -tol).all() and (r[w == 1] <= tol).all()
            inside = (w > 1e-9) & (w < 1 - 1e-9)
            assert (np.abs(r[inside]) <= tol).all()
            obj = 0.5 * w @ Q @ w + q @ w
            assert obj == pytest.approx(best, abs=tol)
    # a zero or empty problem: the explicit hinge
    w = _integrators._kink_multipliers(np.zeros((2, 2)), np.array([-1.0, 1.0]))
    np.testing.assert_array_equal(w, [1.0, 0.0])
    assert _integrators._kink_multipliers(np.zeros((0, 0)), np.zeros(0)).shape == (0,)


def test_kink_multipliers_on_singular_problems(rng):
    # duplicated points (equal rows of Q) and low rank: the cases where least squares
    # and, failing it, Gauss-Seidel must still find the optimum
    for seed in range(30):
        r = np.random.default_rng(seed)
        k = int(r.integers(4, 13))
        B = r.standard_normal((k, int(r.integers(1, 4))))
        B[1] = B[0]
        Q, q = B @ B.T, r.standard_normal(k)
        w = _integrators._kink_multipliers(Q, q)
        ref = rng.uniform(0, 1, k)
        from kernelcomp._kernels.qp import box_qp_gauss_seidel

        box_qp_gauss_seidel(Q, q, ref, 1_000_000, 1e-15)
        value = 0.5 * w @ Q @ w + q @ w
        assert value <= 0.5 * ref @ Q @ ref + q @ ref + 1e-9 * (1 + abs(value))


def _naive_sliding_kernel_flow(K, y, alpha=1.0, max_dout=0.1):
    """The sliding step written out for F = K a, with projected Gauss-Seidel for the kink."""
    p = len(y)
    a, dt, steps = np.zeros(p), 1.0, 0
    target = 1.0 + min(1e-3, max_dout / 10)
    moved = np.full(p, np.inf)  # each margin's last change sets its band
    while (alpha * y * (K @ a) < 1).any():
        F = K @ a
        m = alpha * y * F
        band = np.clip(4 * alpha * moved, min(10 * (target - 1), max_dout), max_dout)
        kink = np.flatnonzero(np.abs(m - 1) <= band)
        while True:
            v = np.where(m < 1 - band, -1.0, 0.0) * y / p
            if len(kink):
                yk = y[kink]
                M = alpha * dt / p * yk[:, None] * K[np.ix_(kink, kink)] * yk[None, :]
                q = m[kink] - target - alpha * dt * yk * (K[kink] @ v)
                w = np.zeros(len(kink))
                for _ in range(100_000):  # projected Gauss-Seidel to convergence
                    w_old = w.copy()
                    for i in range(len(kink)):
                        if M[i, i] > 0:
                            w[i] = min(1.0, max(0.0, w[i] - (M[i] @ w + q[i]) / M[i, i]))
                        else:
                            w[i] = float(q[i] < 0)
                    if np.abs(w - w_old).max() < 1e-15:
                        break
                v[kink] = -w * yk / p
            a2 = a - dt * v
            moved = np.abs(K @ a2 - F)
            dout = moved.max()  # dgrad is 0: the model is linear in a
            if dout < max_dout / alpha:
                if dout < max_dout / alpha / 2:
                    dt *= 1.1
                break
            dt /= 10
        a = a2
        steps += 1
    return a, steps


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_sliding_kernel_flow_matches_the_naive_step(alpha):
    X, y = kc.datasets.stripe(30, 3, seed=4)
    K = kc.NTK(depth=1)(X)
    res = training.kernel_gradient_flow(K, y, alpha=alpha)  # "sliding" is the default
    a, steps = _naive_sliding_kernel_flow(K, y, alpha)
    assert res.status == "converged"
    assert res.final.step == steps
    np.testing.assert_allclose(res.coef, a, rtol=1e-7, atol=1e-9 * np.abs(a).max())
    assert (alpha * y * res.train_output >= 1).all()
    assert (res.coef * y >= 0).all()
    _check_step_rule(res, alpha)
    euler = training.kernel_gradient_flow(K, y, alpha=alpha, integrator="euler")
    assert res.final.step < euler.final.step / 5
    # sliding points end held at the target margin; the explicit step's do not
    target = _integrators.KINK_TARGET
    near = [np.sum(np.abs(alpha * y * r.train_output - target) < 1e-4) for r in (res, euler)]
    assert near[0] >= 3 > near[1]


def test_sliding_with_a_small_dout_limit():
    # the target offset shrinks with the band, so held points do not zigzag again
    X, y = kc.datasets.stripe(12, 3, seed=4)
    K = kc.NTK(depth=1)(X)
    res = training.kernel_gradient_flow(K, y, max_dout=0.002, max_steps=60_000)
    a, steps = _naive_sliding_kernel_flow(K, y, max_dout=0.002)
    assert res.status == "converged" and res.final.step == steps
    np.testing.assert_allclose(res.coef, a, rtol=1e-6, atol=1e-9 * np.abs(a).max())
    assert (y * res.train_output >= 1).all()
    _check_step_rule(res, 1.0, max_dout=0.002)
    coarse = training.kernel_gradient_flow(K, y, max_dout=0.02)
    assert res.final.step < 20 * coarse.final.step  # ~10x for a 10x tighter limit


def test_sliding_stops_where_the_flow_stops():
    # a duplicated point with the opposite label: the hinge flow has a stationary
    # point with a non-zero loss; the sliding step finds it and stops there
    X, y = kc.datasets.stripe(30, 3, seed=4)
    X, y = np.vstack([X, X[:1]]), np.append(y, -y[0])
    K = kc.NTK(depth=1)(X)
    res = training.kernel_gradient_flow(K, y, max_steps=3000)
    euler = training.kernel_gradient_flow(K, y, integrator="euler", max_steps=3000)
    assert res.status == "stationary" and euler.status == "max_steps"
    np.testing.assert_allclose(K @ res.coef, res.train_output, atol=1e-10)
    assert np.diff(res.history["loss"]).max() <= 1e-12  # the loss never goes up
    assert res.final.loss <= euler.final.loss
    # a linear kernel and labels it cannot separate
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    y = np.sign(X[:, 0] + 0.8 * rng.standard_normal(60))
    res = training.kernel_gradient_flow(X @ X.T, y, max_steps=1000)
    assert res.status == "stationary"
    np.testing.assert_allclose(X @ X.T @ res.coef, res.train_output, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["relu_unit", "tanh"])
def test_tangent_kernel_hooks_match_the_explicit_jacobian(rng, activation, bias):
    d, h, p = 3, 13, 10
    net = kc.FCNetwork.init(d, [h], activation=activation, parameterization="mean_field",
                            bias=bias, seed=2)
    X = rng.standard_normal((p, d))
    prm = [q + 0.2 * rng.standard_normal(q.shape) for q in _network_hooks._params_of(net)]
    fused = _network_hooks._fused_problem(net, X, np.zeros(p))
    generic = _network_hooks._network_problem(net, X, np.zeros(p))
    rows = np.array([7, 1, 4, 5])
    J = np.stack([np.concatenate([a.ravel() for a in generic.backward(prm, e, None)])
                  for e in np.eye(p)[rows]])  # row mu of the Jacobian = gradient of Ft(x_mu)
    g = generic.backward(prm, rng.standard_normal(p), None)
    gflat = np.concatenate([a.ravel() for a in g])
    for prob in (fused, generic):
        np.testing.assert_allclose(prob.ntk(prm, rows), J @ J.T, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(prob.jvp(prm, g, rows), J @ gflat, rtol=1e-12, atol=1e-14)
    # and it is the empirical NTK of the network at those parameters
    trained = _network_hooks._net_from_params(net, prm)
    np.testing.assert_allclose(fused.ntk(prm, rows), kc.EmpiricalNTK(trained)(X[rows]),
                               rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("par", ["ntk", "standard", "mean_field"])
def test_tangent_kernel_hooks_of_deeper_networks(rng, par):
    d, p = 4, 9
    net = kc.FCNetwork.init(d, [7, 5], activation="erf", parameterization=par, seed=3)
    X = rng.standard_normal((p, d))
    prm = [q + 0.1 * rng.standard_normal(q.shape) for q in _network_hooks._params_of(net)]
    prob = _network_hooks._network_problem(net, X, np.zeros(p))
    rows = np.array([2, 8, 0])
    J = np.stack([np.concatenate([a.ravel() for a in prob.backward(prm, e, None)])
                  for e in np.eye(p)[rows]])
    g = prob.backward(prm, rng.standard_normal(p), None)
    np.testing.assert_allclose(prob.ntk(prm, rows), J @ J.T, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(prob.jvp(prm, g, rows),
                               J @ np.concatenate([a.ravel() for a in g]), rtol=1e-11, atol=1e-14)


def test_sliding_and_fine_euler_reach_the_same_network():
    # PAPER.md's explicit step with a 10x tighter dout is the reference flow; the
    # sliding integrator at the default control lands on it in far fewer steps
    d, h, p = 3, 40, 40
    X, y = kc.datasets.stripe(p, d, seed=0)
    Xt, _ = kc.datasets.stripe(2000, d, seed=0, split="test")
    net = _paper_net(d, h, seed=0)
    alpha = 0.05 / math.sqrt(h)
    slide = training.train(net, X, y, alpha=alpha)
    fine = training.train(net, X, y, alpha=alpha, integrator="euler", max_dout=0.01)
    coarse = training.train(net, X, y, alpha=alpha, integrator="euler")
    for res in (slide, fine, coarse):
        assert res.status == "converged"
        assert (res.margins(X, y) >= 1).all()
    _check_step_rule(slide, alpha)
    assert slide.final.step * 5 < coarse.final.step < fine.final.step
    lam = {k: kc.diagnostics.compression(r.net, informative=[0])
           for k, r in (("slide", slide), ("fine", fine))}
    assert lam["slide"] == pytest.approx(lam["fine"], rel=0.02)
    assert slide.final.time == pytest.approx(fine.final.time, rel=0.02)
    agree = np.mean(np.sign(slide.decision_function(Xt)) == np.sign(fine.decision_function(Xt)))
    assert agree > 0.99


def test_sliding_reaches_the_stop_rule_exactly_and_is_recorded(tmp_path):
    X, y = kc.datasets.stripe(30, 3, seed=1)
    res = training.train(_paper_net(3, 50), X, y, alpha=1e-2, path=tmp_path / "r.h5")
    assert res.status == "converged"
    m = res.margins(X, y)
    assert m.min() >= 1.0
    # points held on the kink sit at KINK_TARGET, within the step's second-order error
    assert m.min() < _integrators.KINK_TARGET + 1e-2
    assert kc.io.open_run(res.path).config["integrator"] == "sliding"


def test_integrator_errors():
    X, y = kc.datasets.stripe(10, 2, seed=0)
    with pytest.raises(ValueError, match="integrator must be one of"):
        training.train(_paper_net(2, 5), X, y, alpha=1.0, integrator="rk4")
    with pytest.raises(ValueError, match="integrator must be one of"):
        training.kernel_gradient_flow(np.eye(10), y, integrator=None)


@pytest.mark.parametrize("widths,method", [([20, 20], "auto"), ([30], "numpy")])
def test_sliding_trains_smooth_networks_on_the_numpy_path(widths, method):
    # no pair hook: the reference gradient is a backward pass on the changed rows
    X, y = kc.datasets.stripe(20, 3, seed=0)
    net = kc.FCNetwork.init(3, widths, activation="tanh", parameterization="mean_field", seed=0)
    slide = training.train(net, X, y, alpha=1.0, method=method, max_steps=20_000)
    euler = training.train(net, X, y, alpha=1.0, method=method, integrator="euler",
                           max_steps=200_000)
    for res in (slide, euler):
        assert res.status == "converged"
        assert (res.margins(X, y) >= 1).all()
    _check_step_rule(slide, 1.0)
    assert slide.final.step < euler.final.step
    assert slide.final.time == pytest.approx(euler.final.time, rel=0.05)


def test_soft_hinge_ignores_the_integrator():
    X, y = kc.datasets.stripe(20, 3, seed=1)
    net = _paper_net(3, 16)
    a = training.train(net, X, y, alpha=1.0, loss="soft_hinge", max_steps=300)
    b = training.train(net, X, y, alpha=1.0, loss="soft_hinge", max_steps=300, integrator="euler")
    np.testing.assert_array_equal(a.history["dt"], b.history["dt"])
    for wa, wb in zip(a.net.weights, b.net.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_fused_tangent_kernel_is_not_cached_across_parameter_lists(rng):
    net = _paper_net(3, 9, bias=True)
    X = rng.standard_normal((8, 3))
    fused = _network_hooks._fused_problem(net, X, np.zeros(8))
    generic = _network_hooks._network_problem(net, X, np.zeros(8))
    rows = np.array([1, 4, 7])
    for _ in range(5):  # freed lists give their ids to the next ones
        prm = [q + 0.5 * rng.standard_normal(q.shape) for q in _network_hooks._params_of(net)]
        np.testing.assert_allclose(fused.ntk(prm, rows), generic.ntk(prm, rows), rtol=1e-10)
        del prm


# ---------------------------------------------------------------------------
# checkpoints where the margins' fitted fraction first passes each level (t*)
# ---------------------------------------------------------------------------
def _first_steps_past(history, p, levels):
    fitted = 1.0 - np.asarray(history["n_unsat"]) / p
    steps = np.asarray(history["step"])
    return {lv: int(steps[np.flatnonzero(fitted > lv)[0]]) for lv in levels
            if (fitted > lv).any()}


@pytest.mark.parametrize("levels", [(0.05, 0.1, 0.25, 0.5, 0.9), (0.3, 0.7)])
def test_margin_fraction_checkpoints_land_where_the_fraction_first_passes(tmp_path, levels):
    X, y = kc.datasets.stripe(80, 3, seed=2)
    net = kc.FCNetwork.init(3, [60], activation="relu_unit", parameterization="mean_field",
                            seed=2)
    path = tmp_path / "run.h5"
    res = training.train(net, X, y, alpha=1e-2, checkpoints=[0], margin_fractions=levels,
                         path=path, max_steps=5000)
    assert res.status == "converged"
    expected = _first_steps_past(res.history, len(y), levels)
    assert set(expected) == set(levels)
    saved = kc.io.open_run(path)
    for lv, step in expected.items():
        tag = f"fitted>{lv:g}"
        hits = [i for i, ck in enumerate(res.checkpoints) if tag in ck.reason.split("+")]
        assert len(hits) == 1, (tag, [ck.reason for ck in res.checkpoints])
        ck = res.checkpoints[hits[0]]
        assert ck.step == step
        assert ck.fitted_fraction > lv
        # the run file's margins at that checkpoint give the same fraction
        stored = saved.checkpoints[hits[0]]
        assert stored.step == step
        assert np.mean(stored.margins >= 1.0) == pytest.approx(ck.fitted_fraction)
    # every checkpoint records its fraction, and the fractions never skip a level unseen
    fr = np.array([ck.fitted_fraction for ck in res.checkpoints])
    assert np.isfinite(fr).all() and fr[0] == 0.0 and fr[-1] == 1.0


def test_margin_fractions_validated_before_any_file(tmp_path):
    X, y = kc.datasets.stripe(20, 3, seed=0)
    net = kc.FCNetwork.init(3, [10], seed=0)
    path = tmp_path / "run.h5"
    with pytest.raises(ValueError, match=r"margin_fractions\[1\] must be in \(0, 1\)"):
        training.train(net, X, y, alpha=1.0, margin_fractions=[0.1, 1.0], path=path)
    with pytest.raises(TypeError, match="margin_fractions must be a sequence"):
        training.train(net, X, y, alpha=1.0, margin_fractions=0.1, path=path)
    # an unknown method used to be refused only after RunWriter had created PATH.partial
    with pytest.raises(ValueError, match="method must be"):
        training.train(net, X, y, alpha=1.0, method="bogus", path=path)
    assert list(tmp_path.iterdir()) == []
    res = training.train(net, X, y, alpha=1.0, path=path, max_steps=3)  # then works
    assert res.path is not None


@pytest.mark.slow
def test_kernel_flow_at_mnist_size_never_copies_the_gram():
    # p = 20000 (a 3 GiB Gram) with most margins below 1: the gradient on a subset
    # of rows used to copy K[:, rows] (3 GiB, on every step); now by row blocks
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        import resource
        from kernelcomp.training import kernel_gradient_flow
        X = rng.standard_normal(({N_MNIST}, 30))
        y = np.where(X[:, 0] > 0, 1.0, -1.0)
        K = X @ X.T
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        res = kernel_gradient_flow(K, y, max_steps=8)
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        assert res.status == "max_steps" and res.final.n_unsat > 0, res.status
        assert growth < 0.25 * K.nbytes, f"peak memory grew by {{growth / 2**30:.2f}} GiB"
        # F = K a is kept up to date by the gradients' K v: check it against K a
        close(K[idx] @ res.coef, res.train_output[idx], 1e-10)
    """)
