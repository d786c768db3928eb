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

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import training
from kernelcomp.training import _kernel_flow, _network_flow
from kernelcomp.training._engine import FlowState


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
    K_test = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])  # F = 0, 2, -3
    np.testing.assert_array_equal(res.decision_function(K_test), [0.0, 2.0, -3.0])
    np.testing.assert_array_equal(res.predict(K_test), [-1.0, 1.0, -1.0])
    assert res.test_error(K_test, [1, 1, -1]) == pytest.approx(1 / 3)
    assert res.test_error(K_test, [-1, 1, -1]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="y_test"):
        res.test_error(K_test, [1, 1])
    with pytest.raises(ValueError, match="K_test"):
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
