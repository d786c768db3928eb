"""The step control of the gradient-flow engine, step by step, by hand (issue 26).

``kernelcomp.training._engine._integrate`` runs the paper's step control around an
integrator. Here the integrator is a scripted stand-in whose tentative steps move the
outputs by ``dt * speed`` and report a chosen ``dgrad``, so that every accepted ``dt``,
rejection, time and stop reason is computed by hand from the documented rules: accept when
``dgrad < max_dgrad`` and ``dout < max_dout / alpha``, grow ``dt`` by ``DT_GROW`` when both
are below ``GROW_BELOW`` of their limits, shrink it by ``DT_SHRINK`` on a rejection, stop as
documented by :class:`FlowState`. The losses and the validation of the options are pinned
against their formulas. The mutants left alive on purpose are listed with their reason in
tests/mutation_equivalents.md.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from kernelcomp.training import _engine
from kernelcomp.training._engine import (
    FlowState,
    _control,
    _integrate,
    _Problem,
    loss_derivative,
    loss_value,
)

# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


def test_losses_follow_their_formulas():
    z = np.array([-3.0, 0.0, 0.5, 1.0, 1.0 + 1e-12, 4.0])
    np.testing.assert_array_equal(loss_value(z), np.maximum(1 - z, 0))
    np.testing.assert_array_equal(loss_derivative(z), [-1, -1, -1, 0, 0, 0])  # l'(1) = 0
    for beta in (20.0, 3.0):
        soft = np.log1p(np.exp(beta * (1 - z))) / beta
        np.testing.assert_allclose(loss_value(z, "soft_hinge", beta), soft, rtol=1e-14)
        sig = -1 / (1 + np.exp(-beta * (1 - z)))
        np.testing.assert_allclose(loss_derivative(z, "soft_hinge", beta), sig, rtol=1e-14)
    # the default sharpness is 20, and the aliases name the same loss
    np.testing.assert_array_equal(loss_value(z, "soft_hinge"), loss_value(z, "soft_hinge", 20.0))
    np.testing.assert_array_equal(loss_derivative(z, "softhinge"),
                                  loss_derivative(z, "Soft-Hinge", 20.0))  # fmt: skip
    np.testing.assert_array_equal(loss_value(z, "HINGE"), loss_value(z))
    # accurate far in both tails (no overflow to inf / nan)
    far = loss_derivative([-1e6, 1e6], "soft_hinge")
    assert far.tolist() == [-1.0, -0.0]
    assert loss_value([-1e6], "soft_hinge", 2.0)[0] == pytest.approx(1e6 + 1, rel=1e-12)


def test_loss_arguments_are_checked():
    with pytest.raises(TypeError, match=r"loss must be a string, one of \['hinge', "
                       r"'soft_hinge'\], got int"):  # fmt: skip
        loss_value([0.0], 3)
    with pytest.raises(ValueError, match=r"^loss must be one of \['hinge', 'soft_hinge'\]"):
        loss_value([0.0], "square")
    # any beta > 0 is a sharpness, also below 1
    assert loss_value([1.0], "soft_hinge", 0.5)[0] == pytest.approx(math.log(2.0) / 0.5)
    # the margins are taken in float64 whatever their dtype
    z32 = np.array([0.1, 1.3], dtype=np.float32)
    for f in (loss_value, loss_derivative):
        for loss in ("hinge", "soft_hinge"):
            assert f(z32, loss).dtype == np.float64
    assert loss_value(z32, "soft_hinge", 7.0)[0] == pytest.approx(
        np.logaddexp(0.0, 7.0 * (1.0 - np.float64(np.float32(0.1)))) / 7.0, rel=1e-15)  # fmt: skip
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=f"beta must be > 0, got {bad}"):
            loss_derivative([0.0], "soft_hinge", bad)
        with pytest.raises(ValueError, match="beta must be > 0"):
            loss_value([0.0], "soft_hinge", bad)
    # the hinge does not read beta
    assert loss_value([0.0], "hinge", -1.0).tolist() == [1.0]


def test_control_options_and_their_boundaries():
    c = _control(2.0, "softhinge", 3.0, 1e-4, 0.1, 50.0, 7, 9.0, "euler")
    assert c == _engine._Control(2.0, "soft_hinge", 3.0, 1e-4, 0.05, 50.0, 7, 9.0, "euler")
    assert _control(1.0, "hinge", 20.0, 1e-4, 0.1, math.inf, 0, None).max_steps == 0
    assert _control(1.0, "hinge", 20.0, 1e-4, 0.1, 1, None, None).integrator == "sliding"
    # limits below 1 are limits too: a wall time of half a second, a sharpness of 0.5
    assert _control(1.0, "soft_hinge", 0.5, 1e-4, 0.1, 1, None, 0.5).max_wall == 0.5
    bad = [
        (dict(alpha=0.0), ValueError, "alpha must be > 0, got 0.0"),
        (dict(alpha=-1.0), ValueError, "alpha must be > 0"),
        (dict(beta=0.0), ValueError, "beta must be > 0"),
        (dict(max_dgrad=0.0), ValueError, "max_dgrad must be > 0, got 0.0"),
        (dict(max_dout=0.0), ValueError, "max_dout must be > 0, got 0.0"),
        (dict(max_time=0.0), ValueError, r"max_time must be > 0 \(inf for no limit\), got 0.0"),
        (dict(max_time=-1.0), ValueError, "max_time must be > 0"),
        (dict(max_time=math.nan), ValueError, "max_time must be > 0"),
        (dict(max_time=True), TypeError, "max_time must be a real number, got bool"),
        (dict(max_time="1"), TypeError, "max_time must be a real number, got str"),
        (dict(max_steps=-1), ValueError, "max_steps"),
        (dict(max_wall=0.0), ValueError, "max_wall must be > 0 seconds, got 0.0"),
        (dict(integrator="rk4"), ValueError, r"^integrator must be one of \['sliding', "
         r"'euler'\], got 'rk4'"),
        (dict(alpha="x"), TypeError, "^alpha must be a real number, got str"),
        (dict(max_dgrad="x"), TypeError, "^max_dgrad must be a real number, got str"),
        (dict(max_dout="x"), TypeError, "^max_dout must be a real number, got str"),
        (dict(max_wall="x"), TypeError, "^max_wall must be a real number, got str"),
        (dict(beta="x"), TypeError, "^beta must be a real number, got str"),
        (dict(max_steps=1.5), TypeError, "^max_steps must be an integer, got float"),
        (dict(loss="l2"), ValueError, "loss"),
    ]
    base = dict(alpha=1.0, loss="hinge", beta=20.0, max_dgrad=1e-4, max_dout=0.1,
                max_time=10.0, max_steps=None, max_wall=None)  # fmt: skip
    for change, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            _control(**{**base, **change})


def test_summary_and_output_gradient_by_hand():
    c = _control(2.0, "hinge", 20.0, 1e-4, 0.1, 10.0, None, None)
    out = np.array([0.5, -0.25, 0.0, 1.0])
    y = np.array([1.0, 1.0, -1.0, -1.0])
    # margins alpha y out = [1, -0.5, 0, -2]: losses [0, 1.5, 1, 3] / 4 / alpha
    loss, err, unsat = _engine._summary(out, y, c)
    assert loss == pytest.approx(5.5 / 4 / 2.0)
    assert err == 0.75  # y out <= 0: a zero output is an error
    assert unsat == 3  # margin < 1: the point at exactly 1 is satisfied
    u = _engine._output_gradient(out, y, c)
    np.testing.assert_array_equal(u, np.array([0.0, -1.0, 1.0, 1.0]) / 4)
    # dL/dFt = l'(alpha y Ft) y / p for any y; the soft hinge with the control's beta
    y2 = np.array([2.0, 0.5, -1.0, -3.0])
    for loss, beta in (("hinge", 20.0), ("soft_hinge", 3.0)):
        c2 = _control(2.0, loss, beta, 1e-4, 0.1, 10.0, None, None)
        ref = loss_derivative(2.0 * y2 * out, loss, beta) * y2 / 4
        np.testing.assert_allclose(_engine._output_gradient(out, y2, c2), ref, rtol=1e-15)
        assert _engine._summary(out, y2, c2)[0] == pytest.approx(
            np.mean(loss_value(2.0 * y2 * out, loss, beta)) / 2.0)  # fmt: skip


# ---------------------------------------------------------------------------
# the step control, with a scripted integrator
# ---------------------------------------------------------------------------


class _Script:
    """Tentative steps move every output by ``dt * speed(t)`` with ``dgrad = dt * bend(t)``.

    The parameters are the flow time. Every hook checks that the engine hands it the
    current parameters and outputs (those of the last accepted step).
    """

    speed = staticmethod(lambda t: 0.01)
    bend = staticmethod(lambda t: 0.0)
    stationary_after = math.inf
    trials: ClassVar[list[float]] = []
    prepared: ClassVar[int] = 0

    def __init__(self, problem, params, out, y, c):
        assert isinstance(problem, _Problem) and isinstance(c, _engine._Control)
        assert params == 0.0 and isinstance(out, np.ndarray) and isinstance(y, np.ndarray)
        np.testing.assert_array_equal(out, problem.forward(0.0))
        type(self).trials = []
        type(self).prepared = 0
        self.params, self.out = params, out

    def _is_current(self, params, out):
        assert params == self.params and out is not None
        np.testing.assert_array_equal(out, self.out)

    def prepare(self, params, out):
        self._is_current(params, out)
        type(self).prepared += 1

    def trial(self, params, out, dt):
        self._is_current(params, out)
        type(self).trials.append(dt)
        if params >= self.stationary_after:
            return None
        new = params + dt
        self.pending = new, out + dt * self.speed(params)
        return *self.pending, "g", dt * self.bend(params)

    def commit(self):
        self.params, self.out = self.pending


def _problem(out0, zero_gradient=False):
    # norms(g, ref) = (|g|^2, |ref|^2, dgrad) with |g| = |ref| = 1, so that dgrad is the
    # (float) reference itself; ref == "g" is the gradient itself
    def norms(g, ref):
        assert g == "g" and (ref == "g" or isinstance(ref, float)), (g, ref)
        if zero_gradient:
            return 0.0, 0.0, 0.0
        return 1.0, 1.0, (0.0 if isinstance(ref, str) else ref)

    def forward(p):
        assert p == 0.0
        return np.array(out0, dtype=float)

    return _Problem(forward=forward, backward=None, step=None, norms=norms, sub=None)


def _flow(script, out0=(0.0, 0.0), y=(1.0, 1.0), zero_gradient=False, **options):
    opts = dict(alpha=1.0, loss="hinge", beta=20.0, max_dgrad=1e-4, max_dout=0.1,
                max_time=1e9, max_steps=None, max_wall=None)  # fmt: skip
    opts.update(options)
    c = _control(**opts)
    states = []
    for s, params, out in _integrate(_problem(out0, zero_gradient), 0.0, np.array(y), c, script):
        assert params == s.time  # the parameters of the state yielded
        assert out.shape == (len(y),)
        states.append(FlowState(**vars(s)))
    return states


def _script(**kw):
    return type("S", (_Script,), {k: staticmethod(v) if callable(v) else v for k, v in kw.items()})


def test_dt_grows_by_dt_grow_well_inside_the_limits():
    S = _script(speed=lambda t: 0.01)  # dout = 0.01 dt < 0.05 while dt < 5
    states = _flow(S, max_steps=5)
    assert [s.step for s in states] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose([s.dt for s in states], [0, 1, 1.1, 1.21, 1.331, 1.4641])
    np.testing.assert_allclose([s.time for s in states], np.cumsum([0, 1, 1.1, 1.21, 1.331,
                                                                    1.4641]))  # fmt: skip
    np.testing.assert_allclose([s.dout for s in states[1:]], 0.01 * np.array(
        [1, 1.1, 1.21, 1.331, 1.4641]))  # fmt: skip
    assert [s.status for s in states] == [None] * 5 + ["max_steps"]
    assert all(s.rejected == 0 and s.dgrad == 0.0 for s in states)
    # the summaries of each state: outputs 0.01 t, margins < 1
    last = states[-1]
    assert last.n_unsat == 2 and last.train_error == 0.0
    assert last.loss == pytest.approx(1 - 0.01 * last.time)
    assert states[0] == FlowState(0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2, 0, None)


def test_a_rejected_step_is_retried_at_a_tenth():
    S = _script(speed=lambda t: 0.3)  # dout = 0.3 dt: dt = 1 rejected, 0.1 accepted (grows)
    states = _flow(S, max_steps=2)
    assert S.trials == pytest.approx([1.0, 0.1, 0.11], rel=1e-15)
    assert [s.rejected for s in states] == [0, 1, 0]
    np.testing.assert_allclose([s.dt for s in states], [0, 0.1, 0.11])


def test_acceptance_and_growth_are_strict_inequalities():
    # dout == max_dout exactly: rejected; dout == GROW_BELOW * max_dout: accepted, no growth
    at_limit = _flow(_script(speed=lambda t: 0.1), max_steps=1)
    assert at_limit[1].rejected == 1 and at_limit[1].dt == pytest.approx(0.1)
    assert 0.5 * 0.1 == 0.05 and 1.0 * 0.05 == 0.05
    S = _script(speed=lambda t: 0.05)
    at_grow = _flow(S, max_steps=2)
    assert S.trials == [1.0, 1.0] and at_grow[1].rejected == 0
    # the same on dgrad: dgrad == max_dgrad rejected, == half of it not grown
    S = _script(speed=lambda t: 0.0, bend=lambda t: 1e-4)
    states = _flow(S, out0=(0.0, 0.0), max_steps=1)
    assert S.trials[:2] == [1.0, 0.1] and states[1].dgrad == pytest.approx(1e-5)
    S = _script(speed=lambda t: 0.0, bend=lambda t: 5e-5)
    _flow(S, max_steps=2)
    assert S.trials == [1.0, 1.0]
    # just inside both: grows
    S = _script(speed=lambda t: 0.0499, bend=lambda t: 4.99e-5)
    _flow(S, max_steps=2)
    assert S.trials == [1.0, 1.1]
    # max_dout is relative to alpha: with alpha = 2 the limit is 0.05
    S = _script(speed=lambda t: 0.06)
    _flow(S, alpha=2.0, max_steps=1)
    assert S.trials == [1.0, 0.1]
    S = _script(speed=lambda t: 0.06)
    _flow(S, alpha=1.0, max_steps=1)
    assert S.trials == [1.0]


def test_max_time_caps_the_last_step_and_stops():
    S = _script(speed=lambda t: 0.01)
    states = _flow(S, max_time=2.5)
    assert S.trials == pytest.approx([1.0, 1.1, 0.4])
    assert states[-1].time == pytest.approx(2.5) and states[-1].status == "max_time"
    assert states[-1].dt == pytest.approx(0.4)
    # t >= max_time: a flow that lands exactly on it stops there
    states = _flow(_script(speed=lambda t: 0.01), max_time=1.0)
    assert [s.status for s in states] == [None, "max_time"] and states[1].time == 1.0


def test_stop_reasons_and_their_order():
    # converged: every margin >= 1 (here at the start), before any other limit
    s = _flow(_script(), out0=(1.0, 2.0), max_steps=0)
    assert len(s) == 1 and s[0].status == "converged" and s[0].n_unsat == 0
    # max_steps = 0: the initial state only
    s = _flow(_script(), max_steps=0)
    assert len(s) == 1 and s[0].status == "max_steps"
    # outputs that reach the margin: converged at the step that gets there
    s = _flow(_script(speed=lambda t: 0.04), out0=(0.9, 0.95), max_steps=100)
    assert s[-1].status == "converged" and s[-1].step == 3  # 0.9 + 0.04 (1 + 1.1 + 1.21)
    # nan outputs: "nan", even though no margin is below 1 (nan < 1 is false)
    s = _flow(_script(), out0=(math.nan, 0.0))
    assert s[0].status == "nan"
    s = _flow(_script(), out0=(math.nan, math.nan))
    assert s[0].status == "nan" and s[0].n_unsat == 0
    # an infinite loss with finite outputs is "nan" too
    with np.errstate(over="ignore"):
        s = _flow(_script(), out0=(-1e308, 0.0), loss="soft_hinge")
    assert s[0].status == "nan" and not math.isfinite(s[0].loss)


def test_max_wall_reads_the_clock(monkeypatch):
    ticks = iter(range(100, 1000))
    monkeypatch.setattr(_engine, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    # wall0 = 100, then one tick per check: 1 >= 2 no, 2 >= 2 stops at step 1
    s = _flow(_script(), max_wall=2.0)
    assert [x.status for x in s] == [None, "max_wall"]
    ticks = iter(range(100, 1000))
    s = _flow(_script(), max_wall=2.5)
    assert [x.status for x in s] == [None, None, "max_wall"]


def test_stalled_after_max_rejections_in_a_row():
    S = _script(speed=lambda t: 0.01 if t < 0.5 else math.inf)
    states = _flow(S)
    assert states[-1].status == "stalled" and states[-1].rejected == _engine.MAX_REJECTIONS == 40
    assert states[-1].step == 1 and len(S.trials) == 1 + 40
    np.testing.assert_allclose(S.trials[1:], 1.1 * 10.0 ** -np.arange(40), rtol=1e-12)


def test_stalled_after_creeping_steps():
    # after t = 1 only steps of dt < 1e-10 are accepted (1.1e-11, then growing to 5e-11):
    # each advances the time by less than STALL_FRACTION of it; the 1000th in a row stops
    S = _script(speed=lambda t: 0.01 if t < 0.5 else -1e9)  # away from the margin
    states = _flow(S)
    last = states[-1]
    assert last.status == "stalled" and last.step == 1 + _engine.STALL_STEPS == 1001
    assert last.rejected == 0 and states[2].rejected == 11
    assert all(s.dt <= 1e-9 * s.time for s in states[2:])
    assert S.prepared == 1001  # once per accepted state that goes on


def test_creeping_counts_from_zero(monkeypatch):
    # with a stall limit of 1, the initial state is not stalled (no creeping step yet)
    monkeypatch.setattr(_engine, "STALL_STEPS", 1)
    S = _script(speed=lambda t: 0.01 if t < 0.5 else -1e9)
    states = _flow(S)
    assert states[0].status is None and states[-1].status == "stalled"
    assert states[-1].step == 2


def test_a_step_of_exactly_the_stall_fraction_creeps(monkeypatch):
    # "at most STALL_FRACTION of it": with the fraction 0.1 and the limit 1, a step of
    # dt = 0.1 at t = 1 (dt = 1 not grown at dout = 0.05, then 1 rejected) stalls the flow
    monkeypatch.setattr(_engine, "STALL_FRACTION", 0.1)
    monkeypatch.setattr(_engine, "STALL_STEPS", 1)
    S = _script(speed=lambda t: 0.05 if t < 0.5 else 0.3)
    states = _flow(S)
    assert S.trials == [1.0, 1.0, 0.1]
    assert [s.status for s in states] == [None, None, "stalled"]
    assert states[-1].dt == 0.1 and states[-1].time == 1.1


def test_stationary_flows():
    # the integrator cannot move (None): stationary, state unchanged
    S = _script(stationary_after=0.5)
    states = _flow(S)
    assert [s.status for s in states] == [None, None, "stationary"]
    assert states[-1].step == 1 and states[-1].time == 1.0
    # zero gradient and zero output change with margins below 1
    s = _flow(_script(speed=lambda t: 0.0), zero_gradient=True)
    assert [x.status for x in s] == [None, "stationary"] and s[-1].step == 0
    # zero output change alone is not stationary: the gradient moves the parameters
    s = _flow(_script(speed=lambda t: 0.0), max_steps=2)
    assert s[-1].status == "max_steps"


def test_reference_gradient_rows():
    calls = []

    def backward(params, u, rows):
        assert params == 0.5
        calls.append((u.copy(), None if rows is None else rows.tolist()))
        return 10.0 * u.sum()

    p = _Problem(forward=None, backward=backward, step=None, norms=None,
                 sub=lambda a, b: a - b)  # fmt: skip
    u, ref = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 3.0])
    assert _engine._reference(p, 0.5, 7.0, u, u.copy()) == 7.0 and calls == []
    assert _engine._reference(p, 0.5, 7.0, u, ref) == 7.0 - 10.0 * (-3.0)
    assert calls[0][1] == [1] and calls[0][0].tolist() == [0.0, -3.0, 0.0]


def test_judge_measures():
    c = _control(1.0, "hinge", 20.0, 1e-2, 0.1, 10.0, None, None)

    def prob(g2, h2, d2):
        return _Problem(None, None, None, lambda a, b: (g2, h2, d2), None)

    # dgrad = |g - g'|^2 / (|g| |g'|)
    assert _engine._judge(prob(4.0, 9.0, 0.03), "g", "h", 0.01, c) == (
        pytest.approx(0.005), True, False)  # fmt: skip
    assert _engine._judge(prob(4.0, 9.0, 0.029), "g", "h", 0.01, c)[2] is True
    assert _engine._judge(prob(0.0, 9.0, 5.0), "g", "h", 0.01, c) == (0.0, True, True)
    assert _engine._judge(prob(4.0, 0.0, 5.0), "g", "h", 0.01, c) == (0.0, True, True)
    # an overflowing step: rejected, not grown
    assert _engine._judge(prob(4.0, 9.0, 0.0), "g", "h", math.inf, c)[1:] == (False, False)
    assert _engine._judge(prob(4.0, 9.0, math.inf), "g", "h", 0.0, c)[1:] == (False, False)
    assert _engine._judge(prob(1.0, 1.0, math.nan), "g", "h", 0.0, c)[1:] == (False, False)


def test_history_collects_every_field():
    states = [FlowState(0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 3),
              FlowState(1, 1.0, 1.0, 1e-5, 0.01, 0.9, 0.25, 2, 2, "max_steps")]  # fmt: skip
    h = _engine._history(states)
    assert list(h) == ["step", "time", "dt", "dgrad", "dout", "loss", "train_error",
                       "n_unsat", "rejected"]  # fmt: skip
    assert h["rejected"].tolist() == [0, 2] and h["n_unsat"].tolist() == [3, 2]
    assert h["loss"].tolist() == [1.0, 0.9] and h["dt"].tolist() == [0.0, 1.0]
