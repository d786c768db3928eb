"""The options and hooks of ``kernelcomp.training`` pinned one by one, by hand (issue 26).

Tiny networks, a few steps, hand-computed cases: the checkpoint policy and its
schedule, the argument checks of :func:`kernelcomp.training.train` (their exact
messages), the run file's configuration, the classifiers' boundaries (``F = 0``),
the blocked product of the kernel flow, the kink's box QP and the constants of the
sliding integrator, and the flow hooks of :class:`kernelcomp.FCNetwork` against
finite differences and the empirical NTK. The mutants left alive on purpose are
listed with their reason in tests/mutation_equivalents.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import training
from kernelcomp.training import _integrators, _kernel_flow, _network_flow, _network_hooks
from kernelcomp.training._engine import FlowState, _control


def _net(d=2, h=5, activation="tanh", seed=0, **kw):
    return kc.FCNetwork.init(d, [h], activation=activation, seed=seed, **kw)


def _state(step, loss=1.0, n_unsat=4, status=None):
    return FlowState(step, float(step), 0.1, 0.0, 0.0, loss, 0.0, n_unsat, 0, status)


# ---------------------------------------------------------------------------
# checkpoints: schedule, policy, argument checks
# ---------------------------------------------------------------------------
def test_geometric_schedule_per_decade():
    it = _network_flow._geometric_schedule(1)
    assert [next(it) for _ in range(5)] == [0, 1, 10, 100, 1000]
    it = _network_flow._geometric_schedule(2)
    assert [next(it) for _ in range(6)] == [0, 1, 3, 10, 32, 100]


def test_checkpoint_policy_reasons_by_hand():
    pol = _network_flow._CheckpointPolicy(2, (0.5, 0.25), (0.25, 0.5), 4)
    # schedule 0, 1, 3, 10; loss milestones 0.5 then 0.25 of loss0 = 2; fit > 1/4 then > 1/2
    assert pol.reasons(_state(0, loss=2.0, n_unsat=4)) == ["init"]
    assert pol.reasons(_state(1, loss=1.0, n_unsat=4)) == ["step"]  # 1.0 is not < 0.5 * 2
    assert pol.reasons(_state(2, loss=0.99, n_unsat=3)) == ["loss<0.5"]  # 1/4 fitted: not >
    assert pol.reasons(_state(4, loss=0.4, n_unsat=2)) == ["loss<0.25", "fitted>0.25"]
    assert pol.reasons(_state(5, loss=0.1, n_unsat=1)) == ["fitted>0.5"]
    assert pol.reasons(_state(10, loss=0.1, n_unsat=1)) == ["step"]
    assert pol.reasons(_state(11, loss=0.1, n_unsat=0, status="converged")) == ["final"]
    # explicit steps: a step skipped over is not taken later, step 0 is only "init"
    pol = _network_flow._CheckpointPolicy((0, 2, 3), (), (), 4)
    assert pol.reasons(_state(0)) == ["init"]
    assert pol.reasons(_state(1)) == []
    assert pol.reasons(_state(3)) == ["step"]  # 2 was passed over between states
    assert pol.reasons(_state(4)) == []
    assert pol.next_step is None
    # several milestones crossed at once, in order
    pol = _network_flow._CheckpointPolicy((0,), (0.5, 0.2, 0.1), (0.1, 0.2, 0.9), 10)
    pol.reasons(_state(0, loss=1.0, n_unsat=10))
    assert pol.reasons(_state(1, loss=0.15, n_unsat=7)) == [
        "loss<0.5", "loss<0.2", "fitted>0.1", "fitted>0.2"]


def test_check_checkpoints_and_fractions():
    f = _network_flow._check_checkpoints
    assert f(3) == 3
    assert f([5, 0, 5, 2]) == (0, 2, 5)
    assert f(np.int64(2)) == 2
    with pytest.raises(TypeError, match=r"^checkpoints must be an int or a sequence of step "
                       r"numbers, got bool$"):  # fmt: skip
        f(True)
    with pytest.raises(ValueError, match="checkpoints"):
        f(0)
    with pytest.raises(ValueError, match=r"checkpoints\[1\]"):
        f([0, -1])
    with pytest.raises(TypeError, match=r"^checkpoints must be an int \(per decade of steps\) "
                       "or a sequence of step numbers, got str$"):  # fmt: skip
        f("4")
    with pytest.raises(TypeError, match="got float"):
        f(4.0)
    g = _network_flow._check_fractions
    assert g([0.5, 0.1], "x") == (0.1, 0.5)
    assert g((), "x") == ()
    for bad in ("0.5", 0.5):
        with pytest.raises(TypeError, match=r"^fr must be a sequence of fractions in \(0, 1\), "
                           f"got {type(bad).__name__}$"):  # fmt: skip
            g(bad, "fr")
    for v in (0.0, 1.0, -0.5, 2.0):
        with pytest.raises(ValueError, match=rf"^fr\[1\] must be in \(0, 1\), got {v}$"):
            g([0.5, v], "fr")
    with pytest.raises(TypeError, match=r"fr\[0\]"):
        g(["a"], "fr")


# ---------------------------------------------------------------------------
# the trained classifiers: F, its sign at 0, errors and margins
# ---------------------------------------------------------------------------
def _result(center, alpha=2.0):
    net0 = _net(seed=0)
    net = _net(seed=1)
    return training.TrainResult(net=net, net0=net0, alpha=alpha, center=center,
                                status="converged", final=_state(0), history={})


def test_train_result_decision_function_centred_or_not():
    X = np.random.default_rng(0).standard_normal((6, 2))
    res = _result(True)
    np.testing.assert_allclose(res.decision_function(X), 2.0 * (res.net(X) - res.net0(X)),
                               rtol=1e-15)  # fmt: skip
    res = _result(False)
    np.testing.assert_allclose(res.decision_function(X), 2.0 * res.net(X), rtol=1e-15)


def test_classifier_boundaries_at_zero():
    class Fixed(_network_flow._Classifier):
        def decision_function(self, X):
            return np.asarray(X, dtype=float)[:, 0]

    clf = Fixed()
    F = np.array([[-1.0], [0.0], [2.0], [0.5]])
    np.testing.assert_array_equal(clf.predict(F), [-1.0, -1.0, 1.0, 1.0])
    # y F <= 0 is an error: F = 0 counts as one whatever the label
    assert clf.test_error(F, [1, 1, 1, -1]) == 0.75
    assert clf.test_error(F, [-1, -1, 1, 1]) == 0.25
    np.testing.assert_array_equal(clf.margins(F, [1, -1, 1, -1]), [-1.0, -0.0, 2.0, -0.5])
    with pytest.raises(ValueError, match="y"):
        clf.margins(F, [1, 1, 1])
    with pytest.raises(ValueError, match=r"^y "):
        clf.test_error(F, [1, 1, 1])


def test_kernel_flow_result_boundaries_at_zero():
    res = _kernel_flow.KernelFlowResult(coef=np.array([1.0, -1.0]), train_output=np.zeros(2),
                                        alpha=1.0, status="converged", final=_state(0),
                                        history={})  # fmt: skip
    K_test = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.5, 1.0]])  # F = 0, 2, -3, 0.5
    np.testing.assert_array_equal(res.decision_function(K_test), [0.0, 2.0, -3.0, 0.5])
    np.testing.assert_array_equal(res.predict(K_test), [-1.0, 1.0, -1.0, 1.0])
    # y F <= 0 is an error: y F = 0 is, 0 < y F < 1 is not
    assert res.test_error(K_test, [1, 1, -1, 1]) == 0.25
    assert res.test_error(K_test, [-1, 1, -1, -1]) == 0.5
    with pytest.raises(ValueError, match=r"^y_test has 2 labels, but there are 4 samples$"):
        res.test_error(K_test, [1, 1])
    with pytest.raises(ValueError, match=r"^K_test has 3 features, but 2 are expected$"):
        res.decision_function(np.ones((2, 3)))


# ---------------------------------------------------------------------------
# the kernel flow: blocked products and its hooks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("block", [1, 3, 4, 7, 100])
def test_columns_times_by_blocks(monkeypatch, block):
    rng = np.random.default_rng(1)
    K = rng.standard_normal((7, 7))
    rows = np.array([0, 3, 4, 6])
    w = rng.standard_normal(4)
    seen = []

    def blocks(p, n, itemsize):
        seen.append((p, n, itemsize))
        return block

    monkeypatch.setattr(_kernel_flow, "default_block_rows", blocks)
    np.testing.assert_allclose(_kernel_flow._columns_times(K, rows, w), K[:, rows] @ w,
                               rtol=1e-13, atol=1e-14)  # fmt: skip
    assert seen == [(7, 4, 8)]
    for _ in range(3):  # fresh weights: a result left in a reused buffer would not do
        w = rng.standard_normal(4)
        expected = K[:, rows] @ w
        np.testing.assert_allclose(_kernel_flow._columns_times(K, rows, w), expected,
                                   rtol=1e-13, atol=1e-14)  # fmt: skip


def test_kernel_flow_first_steps_by_hand():
    """Two points, K = diag(2, 3): a step moves a by dt y / p and F by dt K y / p.

    dt = 1 and 0.1 move F by 1.5 and 0.15 >= max_dout: two rejections, then dt = 0.01.
    """
    K = np.diag([2.0, 3.0])
    y = np.array([1.0, -1.0])
    for integrator in ("euler", "sliding"):
        res = training.kernel_gradient_flow(K, y, max_steps=1, integrator=integrator)
        np.testing.assert_allclose(res.coef, [0.005, -0.005], rtol=1e-14)
        np.testing.assert_allclose(res.train_output, [0.01, -0.015], rtol=1e-14)
        assert res.history["rejected"].tolist() == [0, 2]
        assert res.history["dt"][1] == pytest.approx(0.01, rel=1e-15)
        assert res.alpha == 1.0 and res.status == "max_steps"
        assert res.history["step"].tolist() == [0, 1]
        assert res.final.n_unsat == 2 and res.final.loss == pytest.approx(0.9875, rel=1e-14)


# ---------------------------------------------------------------------------
# the integrators: which one runs, the sliding step's constants and kink set
# ---------------------------------------------------------------------------
def _kernel_problem(monkeypatch, K, y, **options):
    """The flow hooks kernel_gradient_flow builds for ``K`` (and its control)."""
    seen = {}

    def spy(problem, params, y, c):
        seen.update(problem=problem, c=c)
        return _integrators._flow(problem, params, y, c)

    monkeypatch.setattr(_kernel_flow, "_flow", spy)
    training.kernel_gradient_flow(K, y, max_steps=1, **options)
    monkeypatch.undo()
    return seen["problem"], seen["c"]


@pytest.mark.parametrize(("integrator", "loss", "hooks", "expected"), [
    ("sliding", "hinge", True, "_Sliding"),
    ("euler", "hinge", True, "_Euler"),
    ("sliding", "soft_hinge", True, "_Euler"),
    ("sliding", "hinge", False, "_Euler"),  # no ntk/jvp hooks (train_torch): explicit
    ("euler", "soft_hinge", False, "_Euler"),
])  # fmt: skip
def test_flow_picks_the_integrator(monkeypatch, integrator, loss, hooks, expected):
    problem, _ = _kernel_problem(monkeypatch, np.eye(2), np.array([1.0, -1.0]))
    if not hooks:
        problem = _engine_problem(problem)
    c = _control(1.0, loss, 20.0, 1e-4, 0.1, math.inf, None, None, integrator)
    picked = []
    monkeypatch.setattr(_integrators, "_integrate",
                        lambda problem, params, y, c, cls: picked.append(cls.__name__))
    _integrators._flow(problem, None, np.ones(2), c)
    assert picked == [expected]


def _engine_problem(problem):
    from kernelcomp.training._engine import _Problem

    return _Problem(problem.forward, problem.backward, problem.step, problem.norms, problem.sub)


@pytest.mark.parametrize(("alpha", "max_dout", "target", "narrowest", "widest"), [
    (1.0, 0.1, 1.001, 0.01, 0.1),
    (4.0, 0.1, 1.001, 0.01, 0.1),  # max_dout / alpha in outputs is max_dout in margins
    (1.0, 0.002, 1.0002, 0.002, 0.002),  # target 1 + widest / 10, narrowest capped by widest
    (0.5, 0.005, 1.0005, 0.005, 0.005),
    (1.0, 0.02, 1.001, 0.01, 0.02),
])  # fmt: skip
def test_sliding_constants(monkeypatch, alpha, max_dout, target, narrowest, widest):
    K, y = np.eye(3), np.array([1.0, -1.0, 1.0])
    problem, c = _kernel_problem(monkeypatch, K, y, alpha=alpha, max_dout=max_dout)
    start = (np.zeros(3), np.zeros(3))
    s = _integrators._Sliding(problem, start, np.zeros(3), y, c)
    assert s.p == 3
    assert s.widest == pytest.approx(widest, rel=1e-15)
    assert s.target == pytest.approx(target, rel=1e-15)
    assert s.narrowest == pytest.approx(narrowest, rel=1e-14)
    # the first step: every margin 0, far below its (widest) band; all explicit
    np.testing.assert_array_equal(s.m, 0.0)
    np.testing.assert_allclose(s.u_a, -y / 3, rtol=1e-15)
    assert s.kink.tolist() == []
    np.testing.assert_allclose(s.g_a[0], -y / 3, rtol=1e-15)
    np.testing.assert_array_equal(s.w_last, np.zeros(3))


def test_sliding_split_bands_by_hand(monkeypatch):
    # alpha = 1, max_dout = 0.1: bands within [0.01, 0.1], four times a margin's last move
    y = np.array([1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
    problem, c = _kernel_problem(monkeypatch, np.eye(7), y)
    s = _integrators._Sliding(problem, (np.zeros(7), np.zeros(7)), np.zeros(7), y, c)
    moved = np.array([2.0**-6, -(2.0**-6), 0.0, 1.0, 2.0**-6, 2.0**-6, 0.0])
    # bands: 1/16, 1/16, 0.01, 0.1, 1/16, 1/16, 0.01
    m = np.array([1 - 2.0**-4, 1 + 2.0**-4, 0.5, 0.9, 0.9375 - 2.0**-20, 1.0625 + 2.0**-20, 1.0])
    out = m * y
    margins, u_a, kink = s._split(out, moved)
    np.testing.assert_array_equal(margins, m)
    # on the band's edge: in the kink set, not explicit; outside it: explicit below 1
    assert kink.tolist() == [0, 1, 3, 6]
    np.testing.assert_array_equal(u_a, np.where([0, 0, 1, 0, 1, 0, 0], -y / 7, 0.0))
    # first step: an infinite move gives the widest band
    _, u_a, kink = s._split(out, math.inf)
    assert kink.tolist() == [0, 1, 3, 4, 5, 6]
    np.testing.assert_array_equal(u_a, np.where([0, 0, 1, 0, 0, 0, 0], -y / 7, 0.0))
    # alpha scales the move into margin units
    problem, c = _kernel_problem(monkeypatch, np.eye(7), y, alpha=2.0)
    s = _integrators._Sliding(problem, (np.zeros(7), np.zeros(7)), np.zeros(7), y, c)
    _, _, kink = s._split(out / 2.0, moved / 2.0)
    assert kink.tolist() == [0, 1, 3, 6]


# ---------------------------------------------------------------------------
# the kink's box QP: KKT test, objective, active set and its fallback
# ---------------------------------------------------------------------------
def test_box_qp_kkt_at_its_boundaries():
    kkt = _integrators._box_qp_kkt
    Z = np.zeros((1, 1))  # r = q
    tol = 2.0**-10
    # w = 0 needs r >= -tol; w = 1 needs r <= tol; 0 < w < 1 needs |r| <= tol
    for w, q, ok in [(0.0, -tol, True), (0.0, -2 * tol, False), (0.0, 5.0, True),
                     (-0.5, 5.0, True), (-0.5, -1.0, False),
                     (1.0, tol, True), (1.0, 2 * tol, False), (1.0, -5.0, True),
                     (1.5, -5.0, True), (1.5, 1.0, False),
                     (0.5, tol, True), (0.5, -tol, True), (0.5, 2 * tol, False),
                     (0.5, -2 * tol, False)]:  # fmt: skip
        assert kkt(Z, np.array([q]), np.array([w]), tol) is ok, (w, q)
    # r = Q w + q, every point checked
    Q = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert kkt(Q, np.array([-1.0, 1.0]), np.array([0.5, 0.0]), 1e-12) is True
    assert kkt(Q, np.array([-1.0, 1.0]), np.array([0.5, 0.5]), 1e-12) is False
    assert kkt(Q, np.array([-1.0, -1.0]), np.array([0.5, 0.0]), 1e-12) is False


def test_box_qp_value_by_hand():
    Q = np.array([[2.0, 1.0], [1.0, 4.0]])
    assert _integrators._box_qp_value(Q, np.array([3.0, -1.0]), np.array([0.5, 1.0])) == 0.25 \
        + 0.5 + 2.0 + 1.5 - 1.0  # fmt: skip


@pytest.mark.parametrize(("Q", "q", "w"), [
    ([[1.0, 0.0], [0.0, 0.5]], [-0.5, -0.25], [0.5, 0.5]),
    ([[1.0, 0.5], [0.5, 1.0]], [-0.5, 0.5], [0.5, 0.0]),
    ([[1.0, 0.5], [0.5, 0.75]], [-0.5, -2.5], [0.0, 1.0]),
    ([[1.0, 0.0], [0.0, 1.0]], [-2.0, 3.0], [1.0, 0.0]),
])  # fmt: skip
def test_box_qp_active_set_and_multipliers_by_hand(monkeypatch, Q, q, w):
    Q, q = np.array(Q), np.array(q)
    for start in ([0.0, 0.0], [1.0, 1.0], [0.3, 0.9]):
        np.testing.assert_allclose(_integrators._box_qp_active_set(Q, q, np.array(start)), w,
                                   atol=1e-15)  # fmt: skip

    # a KKT point of the active set is returned as such, without Gauss-Seidel
    def no_gauss_seidel(*args):
        raise AssertionError("Gauss-Seidel called")

    import kernelcomp._kernels.qp as qp

    monkeypatch.setattr(qp, "box_qp_gauss_seidel", no_gauss_seidel)
    for scale in (1.0, 3.0, 1e-6):
        np.testing.assert_allclose(_integrators._kink_multipliers(scale * Q, scale * q), w,
                                   atol=1e-12)  # fmt: skip
        np.testing.assert_allclose(
            _integrators._kink_multipliers(scale * Q, scale * q, np.array([2.0, -1.0])), w,
            atol=1e-12)  # fmt: skip


def test_kink_multipliers_fall_back_to_gauss_seidel(monkeypatch):
    import kernelcomp._kernels.qp as qp

    calls = []
    real = qp.box_qp_gauss_seidel

    def spy(Q, q, w, sweeps, tol):
        calls.append((Q.copy(), q.copy(), w.copy(), sweeps, tol))
        return real(Q, q, w, sweeps, tol)

    monkeypatch.setattr(qp, "box_qp_gauss_seidel", spy)
    Q = np.array([[4.0, 0.0], [0.0, 2.0]])  # scale 4: Qn = diag(1, 1/2)
    q = np.array([-2.0, -1.0])
    # the active set fails (None): Gauss-Seidel from the start point, on the scaled problem
    monkeypatch.setattr(_integrators, "_box_qp_active_set", lambda Q, q, w: None)
    w = _integrators._kink_multipliers(Q, q)
    np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-12)
    (Qn, qn, w0, sweeps, tol), = calls
    np.testing.assert_array_equal(Qn, Q / 4)
    np.testing.assert_array_equal(qn, q / 4)
    np.testing.assert_array_equal(w0, [1.0, 1.0])  # cold start: 1 where q < 0
    assert (sweeps, tol) == (100_000, 1e-14)
    calls.clear()
    _integrators._kink_multipliers(Q, np.array([-2.0, 0.0]), np.array([0.25, 1.5]))
    np.testing.assert_array_equal(calls[0][2], [0.25, 1.0])  # warm start, clipped to the box
    calls.clear()
    _integrators._kink_multipliers(Q, np.array([-2.0, 0.0]), np.array([-0.5, 0.75]))
    np.testing.assert_array_equal(calls[0][2], [0.0, 0.75])
    # a non-KKT answer of the active set: Gauss-Seidel starts from the better of it and start
    # value(start) < value(bad) picks the start, else (a tie included) the active set's
    for start, bad, first in (([0.0, 0.0], [0.5, 0.0], [0.5, 0.0]),  # -1/8 < 0
                              ([0.5, 0.0], [1.0, 1.0], [0.5, 0.0]),  # -1/8 < 0
                              ([0.0, 0.0], [1.0, 1.0], [1.0, 1.0])):  # 0 = 0  # fmt: skip
        calls.clear()
        monkeypatch.setattr(_integrators, "_box_qp_active_set",
                            lambda Q, q, w, bad=bad: np.array(bad))  # fmt: skip
        w = _integrators._kink_multipliers(Q, q, np.array(start))
        np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-12)
        assert calls[0][2].tolist() == first


def test_kink_multipliers_degenerate_scale():
    # no positive finite diagonal: the explicit hinge, 1 where q < 0 (0 at q = 0)
    for Q in (np.zeros((3, 3)), np.full((3, 3), np.nan), np.full((3, 3), np.inf)):
        w = _integrators._kink_multipliers(Q, np.array([-1.0, 0.0, 2.0]))
        np.testing.assert_array_equal(w, [1.0, 0.0, 0.0])
        assert w.dtype == np.float64
    w = _integrators._kink_multipliers(np.zeros((0, 0)), np.zeros(0))
    assert w.shape == (0,) and w.dtype == np.float64
    # the tolerance is relative to the scaled q: a tiny problem is solved exactly too
    Q = np.array([[1.0, 0.0], [0.0, 1.0]]) * 1e-200
    np.testing.assert_allclose(_integrators._kink_multipliers(Q, np.array([-0.5e-200, 2e-200])),
                               [0.5, 0.0], atol=1e-12)  # fmt: skip


@pytest.mark.parametrize(("alpha", "max_dout"), [(0.5, 0.1), (2.0, 0.02)])
def test_sliding_kernel_flow_small_problems_match_the_naive_step(alpha, max_dout):
    from tests.test_training import _naive_sliding_kernel_flow

    X, y = kc.datasets.stripe(16, 3, seed=2)
    K = kc.NTK(depth=1)(X)
    res = training.kernel_gradient_flow(K, y, alpha=alpha, max_dout=max_dout)
    a, steps = _naive_sliding_kernel_flow(K, y, alpha, max_dout)
    assert res.status == "converged" and res.final.step == steps
    np.testing.assert_allclose(res.coef, a, rtol=1e-7, atol=1e-9 * np.abs(a).max())
    np.testing.assert_allclose(res.train_output, K @ res.coef, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------
# train: the run file (read back with h5py), the summary, the method's choice
# ---------------------------------------------------------------------------
def _data(p=6, d=2, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((p, d))
    y = np.where(np.arange(p) % 2 == 0, 1.0, -1.0)
    return X, y


def test_train_writes_its_settings_and_summary(tmp_path):
    import json

    import h5py

    X, y = _data()
    Xt, yt = _data(4, seed=4)
    net = _net(2, 4, "tanh")
    path = tmp_path / "run.h5"
    res = training.train(net, X, y, alpha=2.0, loss="soft_hinge", beta=5.0, X_test=Xt,
                         y_test=yt, checkpoints=[2, 0], loss_milestones=(0.9,),
                         margin_fractions=(0.6, 0.3), path=path,
                         config={"seed": 7, "alpha": "theirs"}, max_steps=3, max_dgrad=1e-3,
                         max_dout=0.05, integrator="euler", method="numpy")  # fmt: skip
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["config"])
        summary = json.loads(f.attrs["summary"])
        groups = [f["checkpoints"][k] for k in sorted(f["checkpoints"])]
        stored = [(int(g.attrs["step"]), str(g.attrs["reason"]), float(g.attrs["dt"]),
                   int(g.attrs["n_unsat"]), float(g.attrs["test_error"]),
                   np.array(g["margins"])) for g in groups]  # fmt: skip
    assert config == {
        "seed": 7, "alpha": 2.0, "loss": "soft_hinge", "beta": 5.0, "center": True,
        "max_dgrad": 1e-3, "max_dout": 0.05, "max_time": None, "integrator": "euler",
        "max_steps": 3, "max_wall": None, "loss_milestones": [0.9],
        "margin_fractions": [0.3, 0.6], "checkpoints": [2, 0],
        "network": {"input_dim": 2, "widths": [4], "activation": "tanh",
                    "parameterization": net.parameterization},
        "p": 6,
    }  # fmt: skip
    assert res.config == config
    final = res.final
    assert summary.pop("wall_time") >= 0.0
    assert summary == {"status": "max_steps", "steps": 3, "time": final.time,
                       "loss": final.loss, "train_error": final.train_error,
                       "test_error": res.checkpoints[-1].test_error}  # fmt: skip
    assert [s[0] for s in stored] == [r.step for r in res.checkpoints]
    assert [s[1] for s in stored] == [r.reason for r in res.checkpoints]
    assert stored[0][1].startswith("init")
    assert stored[-1][1].endswith("final")
    hist = res.history
    for step, _, dt, n_unsat, test_err, margins in stored:
        assert dt == hist["dt"][step] and n_unsat == hist["n_unsat"][step]
        snap = res.checkpoints[[r.step for r in res.checkpoints].index(step)]
        Ft = snap.net(Xt) - res.net0(Xt)
        assert test_err == np.mean(yt * Ft <= 0) == snap.test_error
        np.testing.assert_allclose(margins, 2.0 * y * (snap.net(X) - res.net0(X)), rtol=1e-12,
                                   atol=1e-15)  # fmt: skip
        assert snap.fitted_fraction == 1.0 - n_unsat / 6
        assert snap.loss == hist["loss"][step] and snap.time == hist["time"][step]
        assert snap.train_error == hist["train_error"][step]
    assert res.path == path and res.wall_time > 0.0
    assert res.alpha == 2.0 and res.center is True and res.status == "max_steps"


def test_train_max_time_is_stored_as_a_number(tmp_path):
    X, y = _data()
    res = training.train(_net(2, 4), X, y, alpha=1.0, max_time=0.5, checkpoints=1,
                         path=tmp_path / "r.h5")  # fmt: skip
    assert res.config["max_time"] == 0.5 and res.config["checkpoints"] == 1
    assert kc.io.open_run(tmp_path / "r.h5").config["max_time"] == 0.5


@pytest.mark.parametrize(("activation", "method", "fused"), [
    ("tanh", "auto", True), ("tanh", "fused", True), ("tanh", "numpy", False),
    ("leaky_relu", "auto", False), ("relu", "auto", True),
])  # fmt: skip
def test_train_method_picks_the_hooks(monkeypatch, activation, method, fused):
    calls = []
    real = _network_flow._fused_problem

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(_network_flow, "_fused_problem", spy)
    X, y = _data()
    Xt, yt = _data(3, seed=5)
    res = training.train(_net(2, 4, activation), X, y, alpha=1.0, X_test=Xt, y_test=yt,
                         max_steps=2, method=method)  # fmt: skip
    # f0 by the fused pass, then its hooks, for the training set and, for the test errors,
    # the test set
    assert len(calls) == (4 if fused else 0)
    if fused:
        # f0 of each set from the fused pass itself (reference zeros), then the hooks
        # that subtract it: the test set's f0 is the network's outputs to rounding
        for k, A in enumerate((X, Xt)):
            np.testing.assert_array_equal(calls[k][1], A)
            np.testing.assert_array_equal(calls[k][2], np.zeros(len(A)))
        np.testing.assert_array_equal(calls[3][1], Xt)
        np.testing.assert_allclose(calls[3][2], res.net0(Xt), rtol=1e-14, atol=1e-15)
    for r in res.checkpoints[1:]:  # at step 0, Ft is exactly 0
        Ft = r.net(Xt) - res.net0(Xt)
        assert np.abs(Ft).min() > 1e-9
        assert r.test_error == np.mean(yt * Ft <= 0)


def test_train_method_fused_needs_one_hidden_layer():
    X, y = _data()
    deep = kc.FCNetwork.init(2, [3, 3], activation="tanh", seed=0)
    with pytest.raises(ValueError, match=r"^method='fused' needs a one-hidden-layer, "
                       r"single-output network with an activation other than leaky_relu, got "
                       r"widths \(3, 3\), 1 output\(s\), activation 'tanh'$"):  # fmt: skip
        training.train(deep, X, y, alpha=1.0, method="fused")
    with pytest.raises(ValueError, match="activation 'leaky_relu'"):
        training.train(_net(2, 4, "leaky_relu"), X, y, alpha=1.0, method="fused")
    assert training.train(deep, X, y, alpha=1.0, max_steps=1, method="auto").status == \
        "max_steps"  # fmt: skip


def test_train_center_false_uses_zero_reference():
    X, y = _data()
    Xt, yt = _data(3, seed=5)
    for method in ("numpy", "fused"):
        res = training.train(_net(2, 4), X, y, alpha=0.5, center=False, X_test=Xt, y_test=yt,
                             max_steps=2, method=method)  # fmt: skip
        assert res.center is False and res.config["center"] is False
        for r in res.checkpoints:
            assert r.test_error == np.mean(yt * r.net(Xt) <= 0)
        # the loss is that of alpha f, not alpha (f - f0)
        z = 0.5 * y * res.net0(X)
        assert res.history["loss"][0] == pytest.approx(np.mean(np.maximum(1 - z, 0)) / 0.5,
                                                       rel=1e-12)  # fmt: skip


# ---------------------------------------------------------------------------
# the FCNetwork hooks: against finite differences and by hand
# ---------------------------------------------------------------------------
def _flat(g):
    return np.concatenate([np.ravel(a) for a in g])


def _hook_cases():
    return [
        (kc.FCNetwork.init(3, [4, 5], activation="tanh", bias=[True, False, True], seed=1),
         "generic"),
        (kc.FCNetwork.init(3, [6], activation="tanh", bias=[False, True],
                           parameterization="standard", seed=2), "fused"),
        (kc.FCNetwork.init(3, [6], activation="erf", bias=[True, False], seed=3), "fused"),
        (kc.FCNetwork.init(3, [6], activation="erf", bias=True, bias_std=0.7, seed=4), "fused"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(4))
def test_network_hooks_against_finite_differences(case):
    net, kind = _hook_cases()[case]
    rng = np.random.default_rng(case)
    p = 7
    X = rng.standard_normal((p, 3))
    out0 = rng.standard_normal(p)
    make = _network_hooks._fused_problem if kind == "fused" else _network_hooks._network_problem
    prob = make(net, X, out0)
    prm = [a + 0.3 * rng.standard_normal(a.shape) for a in _network_hooks._params_of(net)]
    trained = _network_hooks._net_from_params(net, prm)
    np.testing.assert_allclose(prob.forward(prm), trained(X) - out0, rtol=1e-12, atol=1e-13)
    u = rng.standard_normal(p)
    direction = [rng.standard_normal(a.shape) for a in prm]
    eps = 1e-6

    def F(t):
        return prob.forward([a + t * b for a, b in zip(prm, direction, strict=True)])

    fd = (F(eps) - F(-eps)) / (2 * eps)  # d Ft / d theta along direction
    g = prob.backward(prm, u, None)
    assert [a.shape for a in g] == [a.shape for a in prm]
    assert _flat(g) @ _flat(direction) == pytest.approx(u @ fd, rel=1e-7, abs=1e-9)
    rows = np.array([5, 1, 2])
    np.testing.assert_allclose(prob.jvp(prm, direction, rows), fd[rows], rtol=1e-7, atol=1e-9)
    # the gradient on some rows is that of u zeroed elsewhere
    u_rows = np.where(np.isin(np.arange(p), rows), u, 0.0)
    np.testing.assert_allclose(_flat(prob.backward(prm, u, rows)),
                               _flat(prob.backward(prm, u_rows, None)), rtol=1e-12,
                               atol=1e-14)  # fmt: skip
    # the tangent kernel on rows: Jacobian rows by backward of unit vectors
    J = np.stack([_flat(prob.backward(prm, e, None)) for e in np.eye(p)[rows]])
    np.testing.assert_allclose(prob.ntk(prm, rows), J @ J.T, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(prob.ntk(prm, rows), kc.EmpiricalNTK(trained)(X[rows]),
                               rtol=1e-10, atol=1e-13)  # fmt: skip


def test_network_hooks_algebra_by_hand():
    net = _net(2, 3)
    prob = _network_hooks._network_problem(net, np.zeros((2, 2)), np.zeros(2))
    g1 = [np.array([[1.0, 2.0]]), np.array([3.0])]
    g2 = [np.array([[0.0, -1.0]]), np.array([1.0])]
    assert prob.norms(g1, g2) == (14.0, 2.0, 1.0 + 9.0 + 4.0)
    np.testing.assert_array_equal(_flat(prob.sub(g1, g2)), [1.0, 3.0, 2.0])
    np.testing.assert_array_equal(_flat(prob.step(g1, g2, 0.5)), [1.0, 2.5, 2.5])
    assert prob.pair is None  # tanh has no kink
    for act in ("relu", "relu_unit", "leaky_relu"):
        assert _network_hooks._network_problem(_net(2, 3, act), np.zeros((2, 2)),
                                               np.zeros(2)).pair is not None  # fmt: skip


def test_fused_eligibility():
    ok = _network_hooks._fused_eligible
    assert ok(_net(2, 3, "tanh")) and ok(_net(2, 3, "relu"))
    assert not ok(_net(2, 3, "leaky_relu"))
    assert not ok(kc.FCNetwork.init(2, [3, 3], activation="tanh", seed=0))
    assert not ok(kc.FCNetwork.init(2, [3], activation="tanh", n_outputs=2, seed=0))


def test_params_round_trip_through_a_network():
    net = kc.FCNetwork.init(3, [4, 2], activation="tanh", bias=[False, True, True], seed=0)
    prm = _network_hooks._params_of(net)
    assert [a.shape for a in prm] == [(4, 3), (2, 4), (1, 2), (2,), (1,)]
    new = [a + 1.0 for a in prm]
    out = _network_hooks._net_from_params(net, new)
    assert out.biases[0] is None
    for a, b in zip(_network_hooks._params_of(out), new, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a is not b  # copies, not views of the flow's arrays
    np.testing.assert_array_equal(net.weights[0], prm[0])  # the input is left alone


def test_train_progress_bar_calls(monkeypatch):
    import contextlib

    log = []

    class Bar:
        def update(self, n):
            log.append(("update", n))

        def set_postfix(self, **kw):
            log.append(("postfix", kw))

    @contextlib.contextmanager
    def fake(enabled, **kw):
        log.append(("open", enabled, kw))
        yield Bar()

    monkeypatch.setattr(_network_flow, "progress_bar", fake)
    X, y = _data()
    res = training.train(_net(2, 4), X, y, alpha=1.0, max_steps=30, progress=True)
    assert log[0] == ("open", True, {"desc": "train", "unit": "step", "leave": False})
    assert [e for e in log if e[0] == "update"] == [("update", 1)] * 30
    posts = [e[1] for e in log if e[0] == "postfix"]
    loss, unsat = res.history["loss"], res.history["n_unsat"]
    assert posts == [{"loss": f"{loss[s]:.3g}", "unsat": unsat[s]} for s in (0, 25, 30)]
    log.clear()
    training.train(_net(2, 4), X, y, alpha=1.0, max_steps=3)
    assert log[0][1] is False and not [e for e in log if e[0] == "postfix"]


def test_train_run_file_data_force_and_kept_networks(tmp_path):
    X, y = _data()
    Xt, yt = _data(3, seed=5)
    path = tmp_path / "run.h5"
    res = training.train(_net(2, 4), X, y, alpha=1.0, X_test=Xt, y_test=yt, max_steps=2,
                         path=path, keep_networks=False)  # fmt: skip
    assert all(r.net is None for r in res.checkpoints)
    run = kc.io.open_run(path)
    for key, value in (("X_train", X), ("y_train", y), ("X_test", Xt), ("y_test", yt)):
        np.testing.assert_array_equal(run.data[key], value)
    with pytest.raises(FileExistsError):
        training.train(_net(2, 4), X, y, alpha=1.0, max_steps=1, path=path)
    res = training.train(_net(2, 4), X, y, alpha=1.0, max_steps=1, path=path, force=True)
    assert res.path == path and len(kc.io.open_run(path).checkpoints) == len(res.checkpoints)
    res = training.train(_net(2, 4), X, y, alpha=1.0, max_steps=1)
    assert res.path is None and all(r.net is not None for r in res.checkpoints)
    assert res.checkpoints[-1].test_error is None


def test_sliding_bands_follow_each_margins_last_move(monkeypatch):
    # K = I, y = 1, alpha = 1: F = a; from F = (0.9, 0.5) with only point 0 explicit
    y = np.array([1.0, 1.0])
    problem, c = _kernel_problem(monkeypatch, np.eye(2), y)
    s = _integrators._Sliding(problem, (np.zeros(2), np.zeros(2)), np.zeros(2), y, c)
    out = np.array([0.9, 0.5])
    params = (out.copy(), out.copy())
    s.kink = np.array([], dtype=np.int64)
    s.u_a = np.array([-0.5, 0.0])
    s.g_a = s._grad(params, s.u_a)
    s.prepare(params, out)
    new_params, new_out, g, ref = s.trial(params, out, 2.0**-6)
    np.testing.assert_array_equal(new_out, [0.9 + 2.0**-7, 0.5])
    np.testing.assert_array_equal(new_params[0], new_out)
    np.testing.assert_array_equal(g[0], [-0.5, 0.0])  # the step's explicit gradient
    np.testing.assert_array_equal(ref[0], [-0.5, 0.0])  # dgrad's reference keeps the step's l'
    new_m, new_u_a, new_kink, new_g_a = s.next
    np.testing.assert_array_equal(new_m, new_out)
    # point 0 moved by 2^-7: band 4 * 2^-7 = 1/32, and 1 - m = 0.092 is outside it (it
    # would be inside the widest band, 0.1); point 1 did not move: band 0.01
    assert new_kink.tolist() == []
    np.testing.assert_array_equal(new_u_a, [-0.5, -0.5])
    np.testing.assert_array_equal(new_g_a[0], [-0.5, -0.5])
    s.commit()
    assert s.kink.tolist() == [] and s.m is new_m


def test_box_qp_active_set_needs_two_iterations():
    # the first guess (both free) is wrong; the second set (w_1 at 1) is the solution, and
    # its free multiplier is reset to 0 before the next test of the sets
    Q = np.array([[1.0, 1 / 12], [1 / 12, 0.25]])
    q = np.array([-0.25, -1.0])
    w = _integrators._box_qp_active_set(Q, q, np.zeros(2))
    np.testing.assert_allclose(w, [1 / 6, 1.0], atol=1e-15)
    assert _integrators._box_qp_kkt(Q, q, w, 1e-14)


def test_sliding_stationary_threshold(monkeypatch):
    # K = I, y = 1: point 0 on the kink (margin 1), point 1 explicit (margin 0.5); the
    # multiplier w = 0.2 of point 0 holds it at 1.001; the norms of the step's gradient
    # and of its two parts are replaced to pin the test g2 <= STATIONARY^2 (ga2 + gk2)
    import dataclasses

    y = np.array([1.0, 1.0])
    problem, c = _kernel_problem(monkeypatch, np.eye(2), y)
    out = np.array([1.0, 0.5])
    params = (out.copy(), out.copy())
    limit = _integrators.STATIONARY**2 * (0.5 + 1.5)
    for g2, stationary in ((limit, True), (limit * (1 + 1e-12), False), (1e-20, False)):
        fake = dataclasses.replace(problem, norms=lambda a, b, g2=g2: (0.5, 1.5, g2))
        s = _integrators._Sliding(fake, params, out, y, c)
        s.m, s.kink = out.copy(), np.array([0])
        s.u_a = np.array([0.0, -0.5])
        s.g_a = s._grad(params, s.u_a)
        s.prepare(params, out)
        tried = s.trial(params, out, 0.01)
        assert (tried is None) is stationary, g2
        np.testing.assert_allclose(s.w_last, [0.2, 0.0], rtol=1e-12)
        if not stationary:
            # the kink point's l' is -w: F_0 moves by dt w / p, to the target 1.001
            assert tried[1][0] == pytest.approx(1.001, rel=1e-13)
            assert tried[1][1] == pytest.approx(0.5 + 0.01 * 0.5, rel=1e-14)


def test_box_qp_active_set_two_free_one_upper():
    # w_2 at its upper bound couples to w_0 only: each free row takes its own column
    Q = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
    q = np.array([-1.0, -0.5, -2.0])
    for start in ([0.0, 0.0, 0.0], [0.5, 0.5, 1.0]):
        w = _integrators._box_qp_active_set(Q, q, np.array(start))
        np.testing.assert_allclose(w, [0.5, 0.5, 1.0], atol=1e-15)


@pytest.mark.parametrize("integrator", ["euler", "sliding"])
def test_smooth_network_hinge_flow_same_on_both_paths(integrator):
    # tanh has no kink: the numpy path takes dgrad's reference gradient through
    # _reference (at the new parameters), the fused one through its pair pass
    X, y = _data(8, seed=6)
    res = {m: training.train(_net(2, 6, "tanh", seed=1), X, y, alpha=1.0, method=m,
                             integrator=integrator, max_steps=150)
           for m in ("numpy", "fused")}  # fmt: skip
    a, b = res["numpy"], res["fused"]
    assert a.status == b.status == "max_steps"
    assert len(set(a.history["n_unsat"])) > 2  # margins crossed 1 on the way
    np.testing.assert_allclose(a.history["dgrad"], b.history["dgrad"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X), rtol=1e-9)


@pytest.mark.parametrize("method", ["numpy", "fused"])
def test_the_start_is_exactly_the_initial_network(method):
    # Ft = f - f0 is exactly 0 at the start, whichever pass the flow uses: a f0 from
    # another pass (the numpy forward under the fused flow) left +-1e-17 outputs, so the
    # step-0 checkpoint's errors were the fraction of random signs (0.5-0.7) instead of 1
    rng = np.random.default_rng(0)
    X, Xt = rng.standard_normal((40, 5)), rng.standard_normal((30, 5))
    y, yt = np.sign(X[:, 0]), np.sign(Xt[:, 0])
    for seed in range(3):
        net = kc.FCNetwork.init(5, [64], seed=seed)
        res = training.train(net, X, y, alpha=1.0, X_test=Xt, y_test=yt, checkpoints=3,
                             method=method, max_steps=3)
        first = res.checkpoints[0]
        assert first.step == 0
        assert first.train_error == 1.0 and first.test_error == 1.0
        assert first.loss == pytest.approx(1.0, rel=1e-15)  # hinge at Ft = 0, (1/p) sum 1 / alpha
