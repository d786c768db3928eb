"""The adaptive gradient-flow engine: losses, the paper's step control, stop reasons.

A model enters the engine as a :class:`_Problem` (forward pass, gradient, step,
metric, optional tangent-kernel hooks); :func:`_integrate` runs the paper's
step control (Paccolat et al. 2021, appendix A; Geiger et al. 2020) around an
integrator (:mod:`kernelcomp.training._integrators`) and yields every accepted
:class:`FlowState`, the last one carrying why the flow stopped.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._validation import check_choice, check_int, check_real

#: supported losses ("softhinge" is accepted as an alias of "soft_hinge")
LOSSES: tuple[str, ...] = ("hinge", "soft_hinge")
#: integrators of the flow: "sliding" (default) treats the hinge's kink implicitly;
#: "euler" is the paper's literal explicit step everywhere
INTEGRATORS: tuple[str, ...] = ("sliding", "euler")
#: sharpness of the soft hinge ``softplus_beta(1 - z)`` (the authors' value)
SOFT_HINGE_BETA: float = 20.0

# The paper's step control (Paccolat et al. 2021, appendix A; Geiger et al. 2020),
# applied by _judge and _integrate: a tentative step of dt is accepted when
# dgrad < MAX_DGRAD and dout < MAX_DOUT / alpha; after an accepted step dt is
# multiplied by DT_GROW if both measures are below GROW_BELOW times their limits; a
# rejected step is undone and dt divided by DT_SHRINK.

#: accept a step when ``dgrad < MAX_DGRAD`` (relative change of the gradient)
MAX_DGRAD: float = 1e-4
#: ... and ``dout < MAX_DOUT / alpha`` (largest change of a training output)
MAX_DOUT: float = 0.1
#: the first tentative step
DT_START: float = 1.0
#: factor by which ``dt`` grows after a step well inside both limits
DT_GROW: float = 1.1
#: "well inside": both measures below this fraction of their limits
GROW_BELOW: float = 0.5
#: factor by which ``dt`` shrinks after a rejected step
DT_SHRINK: float = 10.0
#: consecutive rejected steps (dt divided by DT_SHRINK each time) before giving up
MAX_REJECTIONS: int = 40
#: an accepted step "creeps" when it advances the time by at most this fraction of it
STALL_FRACTION: float = 1e-9
#: creeping accepted steps in a row before giving up (status "stalled")
STALL_STEPS: int = 1000
#: why a flow stops (:attr:`FlowState.status` of the last state)
STATUSES: tuple[str, ...] = ("converged", "max_time", "max_steps", "max_wall", "nan",
                             "stalled", "stationary")

# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def _check_loss(loss: Any) -> str:
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a string, one of {list(LOSSES)}, got {type(loss).__name__}")
    name = loss.lower().replace("-", "_")
    if name == "softhinge":
        name = "soft_hinge"
    return check_choice(name, "loss", LOSSES)


def loss_value(z: Any, loss: str = "hinge", beta: float = SOFT_HINGE_BETA) -> np.ndarray:
    """The per-sample loss ``l(z)`` of a margin ``z = alpha y Ft``.

    Parameters
    ----------
    z : array-like
        Margins.
    loss : {"hinge", "soft_hinge"}, default "hinge"
        ``(1 - z)_+`` or ``softplus_beta(1 - z) = log(1 + exp(beta (1 - z))) / beta``.
    beta : float, default 20.0
        Sharpness of the soft hinge (the paper uses 20, and 3 on MNIST).

    Returns
    -------
    numpy.ndarray
        ``l(z)``, same shape as ``z``.

    Raises
    ------
    ValueError
        If ``loss`` is unknown or ``beta`` is not positive.

    Examples
    --------
    >>> loss_value([0.0, 2.0], "hinge").tolist()
    [1.0, 0.0]
    """
    name = _check_loss(loss)
    z = np.asarray(z, dtype=np.float64)
    if name == "hinge":
        return np.maximum(1.0 - z, 0.0)
    beta = _check_beta(beta)
    return np.logaddexp(0.0, beta * (1.0 - z)) / beta


def loss_derivative(z: Any, loss: str = "hinge", beta: float = SOFT_HINGE_BETA) -> np.ndarray:
    """The derivative ``l'(z)`` of :func:`loss_value` (``-1``/``0`` for the hinge).

    Parameters
    ----------
    z : array-like
        Margins.
    loss : {"hinge", "soft_hinge"}, default "hinge"
        The loss.
    beta : float, default 20.0
        Sharpness of the soft hinge.

    Returns
    -------
    numpy.ndarray
        ``l'(z)``; the hinge uses ``l'(1) = 0`` (a point on the margin is done).

    Raises
    ------
    ValueError
        If ``loss`` is unknown or ``beta`` is not positive.

    Examples
    --------
    >>> loss_derivative([0.0, 1.0], "hinge").tolist()
    [-1.0, 0.0]
    """
    name = _check_loss(loss)
    z = np.asarray(z, dtype=np.float64)
    if name == "hinge":
        return np.where(z < 1.0, -1.0, 0.0)
    beta = _check_beta(beta)
    from scipy.special import expit

    return -expit(beta * (1.0 - z))  # -sigmoid(beta (1 - z)), accurate in both tails


def _check_beta(beta: Any) -> float:
    beta = check_real(beta, "beta")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return beta



# ---------------------------------------------------------------------------
# states, problems and the control options
# ---------------------------------------------------------------------------
@dataclass
class FlowState:
    """One accepted state of the gradient flow.

    Attributes
    ----------
    step : int
        Number of accepted steps so far (0: the initial state).
    time : float
        Flow time ``t`` (sum of accepted ``dt``).
    dt : float
        The step that led here (0 for the initial state).
    dgrad, dout : float
        The step-control measures of that step.
    loss : float
        ``(1/p) sum l(alpha y Ft) / alpha`` on the training set.
    train_error : float
        Fraction of training points with ``y Ft <= 0``.
    n_unsat : int
        Training points with margin ``alpha y Ft < 1``.
    rejected : int
        Tentative steps rejected before this one was accepted.
    status : str or None
        None while running; on the last state, why the flow stopped:
        ``"converged"`` (all margins >= 1), ``"max_time"``, ``"max_steps"``,
        ``"max_wall"``, ``"nan"``, ``"stalled"`` (``MAX_REJECTIONS`` rejections
        in a row, or ``STALL_STEPS`` accepted steps in a row that each move the
        time by less than ``STALL_FRACTION`` of it) or ``"stationary"`` (the flow
        cannot move before every margin reached 1: a zero gradient with either
        integrator, or, with "sliding", a hinge flow held at rest by data it
        cannot separate, e.g. duplicated points with opposite labels).
    """

    step: int
    time: float
    dt: float
    dgrad: float
    dout: float
    loss: float
    train_error: float
    n_unsat: int
    rejected: int = 0
    status: str | None = None


@dataclass
class _Problem:
    """What the engine needs from a model (a network or a kernel machine).

    ``forward(params) -> out``: the training outputs ``Ft``.
    ``backward(params, u, rows) -> g``: the parameter gradient of
    ``sum_mu u_mu Ft(x_mu)`` at ``params`` (``rows``: the only rows where ``u``
    may be non-zero, or None for all), in whatever form ``step``/``norms`` read.
    ``step(params, g, dt) -> params``: the tentative point ``theta - dt g``.
    ``norms(g, g2) -> (|g|^2, |g2|^2, |g - g2|^2)`` in the flow's metric.
    ``sub(g, g2) -> g - g2``.
    ``pair(new_params, new_u, old_params, ref_u) -> (g, g_ref)`` (optional): the
    new gradient and the step control's reference gradient in one pass (see
    :func:`kernelcomp.training._integrators._flow`).
    ``ntk(params, rows) -> Theta`` (optional, for the "sliding" integrator): the
    tangent kernel ``J J^T`` of ``Ft`` on ``rows`` in the flow's metric, so that a
    step along ``backward(u)`` changes the outputs by ``-dt Theta u`` to first order.
    ``jvp(params, g, rows) -> J g`` (optional, with ``ntk``): that first-order change
    of ``Ft[rows]`` along ``g``.
    """

    forward: Callable[[Any], np.ndarray]
    backward: Callable[[Any, np.ndarray, np.ndarray | None], Any]
    step: Callable[[Any, Any, float], Any]
    norms: Callable[[Any, Any], tuple[float, float, float]]
    sub: Callable[[Any, Any], Any]
    pair: Callable[[Any, np.ndarray, Any, np.ndarray], tuple[Any, Any]] | None = None
    ntk: Callable[[Any, np.ndarray], np.ndarray] | None = None
    jvp: Callable[[Any, Any, np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class _Control:
    alpha: float
    loss: str
    beta: float
    max_dgrad: float
    max_dout: float
    max_time: float
    max_steps: int | None
    max_wall: float | None
    integrator: str = "sliding"


def _margins(out: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * y * out


def _summary(out: np.ndarray, y: np.ndarray, c: _Control) -> tuple[float, float, int]:
    z = _margins(out, y, c.alpha)
    loss = float(np.mean(loss_value(z, c.loss, c.beta))) / c.alpha
    return loss, float(np.mean(y * out <= 0)), int(np.count_nonzero(z < 1.0))


def _output_gradient(out: np.ndarray, y: np.ndarray, c: _Control) -> np.ndarray:
    """dL/dFt_mu = l'(alpha y Ft) y / p (alpha cancels)."""
    return loss_derivative(_margins(out, y, c.alpha), c.loss, c.beta) * y / len(y)


def _control(
    alpha: Any,
    loss: Any,
    beta: Any,
    max_dgrad: Any,
    max_dout: Any,
    max_time: Any,
    max_steps: Any,
    max_wall: Any,
    integrator: Any = "sliding",
) -> _Control:
    check_choice(integrator, "integrator", INTEGRATORS)
    alpha = check_real(alpha, "alpha")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    name = _check_loss(loss)
    beta = _check_beta(beta)
    max_dgrad = check_real(max_dgrad, "max_dgrad")
    if max_dgrad <= 0:
        raise ValueError(f"max_dgrad must be > 0, got {max_dgrad}")
    max_dout = check_real(max_dout, "max_dout")
    if max_dout <= 0:
        raise ValueError(f"max_dout must be > 0, got {max_dout}")
    if isinstance(max_time, bool) or not isinstance(max_time, numbers.Real):
        raise TypeError(f"max_time must be a real number, got {type(max_time).__name__}")
    max_time = float(max_time)
    if math.isnan(max_time) or max_time <= 0:
        raise ValueError(f"max_time must be > 0 (inf for no limit), got {max_time}")
    if max_steps is not None:
        max_steps = check_int(max_steps, "max_steps", minimum=0)
    if max_wall is not None:
        max_wall = check_real(max_wall, "max_wall")
        if max_wall <= 0:
            raise ValueError(f"max_wall must be > 0 seconds, got {max_wall}")
    return _Control(alpha, name, beta, max_dgrad, max_dout / alpha, max_time, max_steps, max_wall,
                    integrator)


# ---------------------------------------------------------------------------
# the step control
# ---------------------------------------------------------------------------
def _stop_reason(state: FlowState, out: np.ndarray, t: float, step: int, c: _Control,
                 wall0: float, creeping: int) -> str | None:
    if not (np.isfinite(out).all() and np.isfinite(state.loss)):
        return "nan"
    if state.n_unsat == 0:
        return "converged"
    if t >= c.max_time:
        return "max_time"
    if c.max_steps is not None and step >= c.max_steps:
        return "max_steps"
    if c.max_wall is not None and time.perf_counter() - wall0 >= c.max_wall:
        return "max_wall"
    if creeping >= STALL_STEPS:
        return "stalled"
    return None


def _judge(problem: _Problem, g: Any, ref_g: Any, dout: float,
           c: _Control) -> tuple[float, bool, bool]:
    """the paper's test of a tentative step: ``(dgrad, accept, grow dt)``."""
    g2, h2, d2 = problem.norms(g, ref_g)
    dgrad = 0.0 if g2 == 0.0 or h2 == 0.0 else d2 / math.sqrt(g2 * h2)
    if not (math.isfinite(dout) and math.isfinite(dgrad)):
        return dgrad, False, False  # an overflowing step is too large: shrink it
    ok = dgrad < c.max_dgrad and dout < c.max_dout
    return dgrad, ok, ok and dgrad < GROW_BELOW * c.max_dgrad and dout < GROW_BELOW * c.max_dout


def _reference(problem: _Problem, params: Any, g: Any, u: np.ndarray, ref_u: np.ndarray) -> Any:
    """Gradient of ``sum ref_u Ft`` at ``params`` from the one ``g`` of ``sum u Ft``.

    One backward pass over the rows where the two weights differ.
    """
    rows = np.flatnonzero(u != ref_u)
    if not len(rows):
        return g
    return problem.sub(g, problem.backward(params, u - ref_u, rows))


def _integrate(problem: _Problem, params: Any, y: np.ndarray, c: _Control,
               integrator: type) -> Iterator[tuple[FlowState, Any, np.ndarray]]:
    """The adaptive gradient flow: the paper's step control around either integrator.

    Yields every accepted state; the last one carries its ``status``. A
    tentative step of ``dt`` is accepted when ``dgrad < max_dgrad`` and
    ``dout < max_dout / alpha`` (:func:`_judge`), and ``dt`` then grows by
    ``DT_GROW`` if both are below ``GROW_BELOW`` times their limits; otherwise it
    is undone and ``dt`` divided by ``DT_SHRINK``. A run whose ``dt`` keeps
    collapsing (``MAX_REJECTIONS`` rejections in a row, or ``STALL_STEPS``
    accepted steps in a row that each advance the time by at most
    ``STALL_FRACTION`` of itself) stops as ``"stalled"``.
    """
    wall0 = time.perf_counter()
    out = problem.forward(params)
    stepper = integrator(problem, params, out, y, c)  # _Euler or _Sliding
    loss, err, unsat = _summary(out, y, c)
    state = FlowState(0, 0.0, 0.0, 0.0, 0.0, loss, err, unsat)
    dt, t, step, creeping = DT_START, 0.0, 0, 0
    while True:
        state.status = _stop_reason(state, out, t, step, c, wall0, creeping)
        yield state, params, out
        if state.status is not None:
            return
        stepper.prepare(params, out)
        rejected = 0
        while True:
            dt_try = min(dt, c.max_time - t)  # a tentative step, never past the time limit
            tried = stepper.trial(params, out, dt_try)
            if tried is None:
                state.status = "stationary"
                yield state, params, out
                return
            new_params, new_out, g, ref_g = tried
            dout = float(np.max(np.abs(out - new_out)))
            if dout == 0.0 and problem.norms(g, g)[0] == 0.0:
                # a zero gradient with margins below 1: the flow cannot move (dt would
                # grow by 1.1 per empty step until it overflows)
                state.status = "stationary"
                yield state, params, out
                return
            dgrad, ok, grow = _judge(problem, g, ref_g, dout, c)
            if ok:
                if grow and dt_try == dt:
                    dt *= DT_GROW
                break
            rejected += 1
            dt /= DT_SHRINK
            if rejected >= MAX_REJECTIONS:
                state.status = "stalled"
                state.rejected = rejected
                yield state, params, out
                return
        stepper.commit()
        step += 1
        creeping = creeping + 1 if dt_try <= STALL_FRACTION * t else 0
        t += dt_try
        params, out = new_params, new_out
        loss, err, unsat = _summary(out, y, c)
        state = FlowState(step, t, dt_try, dgrad, dout, loss, err, unsat, rejected)


def _history(states: list[FlowState]) -> dict[str, np.ndarray]:
    keys = ("step", "time", "dt", "dgrad", "dout", "loss", "train_error", "n_unsat", "rejected")
    return {k: np.array([getattr(s, k) for s in states]) for k in keys}
