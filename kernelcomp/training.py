"""Full-batch gradient flow of the compression paper: networks and frozen kernels.

The trained model is the network's change from initialisation scaled by ``alpha``
(the "alpha-trick" of Chizat & Bach and Geiger et al.),

.. code-block:: text

    F(x) = alpha (f(x) - f0(x)),     Ft = f - f0,
    L    = (1/p) sum_mu l(alpha y_mu Ft(x_mu)) / alpha,

with ``l`` the hinge ``(1 - z)_+`` or the soft hinge ``softplus_beta(1 - z)``
(``beta = 20``). Small ``alpha sqrt(h)`` is the feature regime, large the lazy one.
Training is gradient flow integrated with the adaptive step of the authors' code
(Paccolat et al. 2021, appendix A; Geiger et al. 2020):

* start with ``dt = 1``; take a tentative step ``theta <- theta - dt g``;
* ``dgrad = |g - g'|^2 / (|g| |g'|)`` and ``dout = max |Ft - Ft'|`` over the
  training points; accept when ``dgrad < 1e-4`` and ``dout < 0.1 / alpha``, and
  then multiply ``dt`` by 1.1 if both are below half their limits; otherwise
  undo the step and divide ``dt`` by 10;
* stop when every training margin ``alpha y Ft >= 1`` (hinge loss exactly 0),
  on a time or step limit, or on NaN.

By default (``integrator="sliding"``) the hinge's kink is taken implicitly: the
points near margin 1 get the hinge's subgradient at the end of the step (Moreau
time-stepping), found by a small box QP on their tangent kernel. The explicit
step makes them zigzag across the kink (the true flow slides along it), and that
zigzag, not the cost of a step, made runs take 1e5 steps; the step control is
the paper's either way. ``integrator="euler"`` is the literal explicit step.

:func:`train` runs this on a :class:`kernelcomp.FCNetwork` and writes
checkpoints into a run file as it goes; :func:`kernel_gradient_flow` runs the
same flow for the kernel machine ``F = sum_mu a_mu K(x, x_mu)`` on a frozen Gram.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001, §3 and appendix A.
Geiger, Spigler, Jacot, Wyart, *Disentangling feature and lazy training in deep
neural networks*, J. Stat. Mech. (2020) 113301.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelcomp._linalg import gram_nt
from kernelcomp._validation import check_int, check_matrix, check_real

__all__ = [
    "INTEGRATORS",
    "LOSSES",
    "CheckpointRecord",
    "FlowState",
    "KernelFlowResult",
    "TrainResult",
    "kernel_gradient_flow",
    "loss_derivative",
    "loss_value",
    "train",
]

#: supported losses ("softhinge" is accepted as an alias of "soft_hinge")
LOSSES: tuple[str, ...] = ("hinge", "soft_hinge")
#: The paper's step control: accept a step when dgrad < MAX_DGRAD and dout < MAX_DOUT / alpha
MAX_DGRAD: float = 1e-4
MAX_DOUT: float = 0.1
#: integrators of the flow: "sliding" (default) treats the hinge's kink implicitly;
#: "euler" is the paper's literal explicit step everywhere
INTEGRATORS: tuple[str, ...] = ("sliding", "euler")
#: margin the "sliding" integrator holds kink points at, just above the hinge's 1,
#: so that the stop rule (every margin >= 1) holds exactly, not to rounding (the
#: offset is at most a tenth of ``max_dout`` in margin units)
KINK_TARGET: float = 1.0 + 1e-3
#: a sliding step whose gradient cancels to this fraction of its parts' norms
#: has reached a stationary point of the flow (non-separable data): status "stationary"
STATIONARY: float = 1e-12
#: consecutive rejected steps (dt divided by 10 each time) before giving up
MAX_REJECTIONS: int = 40
#: accepted steps in a row advancing the time by < 1e-9 of itself before giving up
STALL_STEPS: int = 1000


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def _check_loss(loss: Any) -> str:
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a string, one of {list(LOSSES)}, got {type(loss).__name__}")
    name = loss.lower().replace("-", "_")
    if name == "softhinge":
        name = "soft_hinge"
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    return name


def loss_value(z: Any, loss: str = "hinge", beta: float = 20.0) -> np.ndarray:
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


def loss_derivative(z: Any, loss: str = "hinge", beta: float = 20.0) -> np.ndarray:
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
# the adaptive gradient-flow engine
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
        in a row) or, with the "sliding" integrator, ``"stationary"`` (the hinge
        flow stopped moving before every margin reached 1: data it cannot
        separate, e.g. duplicated points with opposite labels).
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
    :func:`_flow`).
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


def _flow(
    problem: _Problem, params: Any, y: np.ndarray, c: _Control
) -> Iterator[tuple[FlowState, Any, np.ndarray]]:
    """Run the adaptive gradient flow with the integrator ``c.integrator`` asks for.

    "sliding" applies to the hinge on problems with ``ntk``/``jvp`` hooks; the
    soft hinge is smooth and always takes the explicit step.
    """
    sliding = c.integrator == "sliding" and c.loss == "hinge" and problem.ntk is not None
    return _integrate(problem, params, y, c, _Sliding if sliding else _Euler)


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
    return dgrad, ok, ok and dgrad < 0.5 * c.max_dgrad and dout < 0.5 * c.max_dout


class _Euler:
    """the paper's explicit step ``theta <- theta - dt g`` (``integrator="euler"``).

    Kinks. For the hinge, ``l'`` jumps where a margin crosses 1, so the
    gradient jumps by ``~1/p`` however small the step: the paper's ``dgrad``
    would reject every step across the kink and the flow would creep towards it
    forever (measured: ``dt`` collapses to 1e-16 on a 40-point problem). There,
    ``dgrad`` compares ``g`` with the new point's gradient under the *old*
    ``l'`` (the smooth part of the change; the crossing itself is bounded by
    ``dout``). ReLU units crossing zero make the same kind of jump; problems
    with a ReLU network therefore also freeze the ReLU pattern of the step's
    start in the reference gradient (``pair`` hook). The flow
    itself always follows the new point's true gradient, and for the soft hinge
    with a smooth activation this is exactly the paper's rule.
    """

    def __init__(self, problem: _Problem, params: Any, out: np.ndarray, y: np.ndarray,
                 c: _Control) -> None:
        self.problem, self.y, self.c = problem, y, c
        self.kink = c.loss == "hinge"
        self.u = _output_gradient(out, y, c)
        self.g = problem.backward(params, self.u, None)

    def prepare(self, params: Any, out: np.ndarray) -> None:
        """Nothing to do: the gradient comes with the last accepted step."""

    def trial(self, params: Any, out: np.ndarray, dt: float) -> Any:
        problem, u = self.problem, self.u
        new_params = problem.step(params, self.g, dt)
        new_out = problem.forward(new_params)
        new_u = _output_gradient(new_out, self.y, self.c)
        ref_u = u if self.kink else new_u
        if problem.pair is not None:
            new_g, ref_g = problem.pair(new_params, new_u, params, ref_u)
        else:
            new_g = problem.backward(new_params, new_u, None)
            ref_g = _reference(problem, new_params, new_g, new_u, ref_u)
        self.next = new_u, new_g
        return new_params, new_out, self.g, ref_g

    def commit(self) -> None:
        self.u, self.g = self.next


def _reference(problem: _Problem, params: Any, g: Any, u: np.ndarray, ref_u: np.ndarray) -> Any:
    """Gradient of ``sum ref_u Ft`` at ``params`` from the one ``g`` of ``sum u Ft``:
    one backward pass over the rows where the two weights differ."""
    rows = np.flatnonzero(u != ref_u)
    if not len(rows):
        return g
    return problem.sub(g, problem.backward(params, u - ref_u, rows))


def _integrate(problem: _Problem, params: Any, y: np.ndarray, c: _Control,
               integrator: type) -> Iterator[tuple[FlowState, Any, np.ndarray]]:
    """The adaptive gradient flow: the paper's step control around either integrator.

    Yields every accepted state; the last one carries its ``status``. A
    tentative step of ``dt`` is accepted when ``dgrad < max_dgrad`` and
    ``dout < max_dout / alpha`` (:func:`_judge`), and ``dt`` then grows by 1.1
    if both are below half their limits; otherwise it is undone and ``dt``
    divided by 10. A run whose ``dt`` keeps collapsing (``MAX_REJECTIONS``
    rejections in a row, or ``STALL_STEPS`` accepted steps in a row that each
    advance the time by less than ``1e-9`` of itself) stops as ``"stalled"``.
    """
    wall0 = time.perf_counter()
    out = problem.forward(params)
    stepper = integrator(problem, params, out, y, c)  # _Euler or _Sliding
    loss, err, unsat = _summary(out, y, c)
    state = FlowState(0, 0.0, 0.0, 0.0, 0.0, loss, err, unsat)
    dt, t, step, creeping = 1.0, 0.0, 0, 0
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
                    dt *= 1.1
                break
            rejected += 1
            dt /= 10.0
            if rejected >= MAX_REJECTIONS:
                state.status = "stalled"
                state.rejected = rejected
                yield state, params, out
                return
        stepper.commit()
        step += 1
        creeping = creeping + 1 if dt_try <= 1e-9 * t else 0
        t += dt_try
        params, out = new_params, new_out
        loss, err, unsat = _summary(out, y, c)
        state = FlowState(step, t, dt_try, dgrad, dout, loss, err, unsat, rejected)


def _box_qp_kkt(Q: np.ndarray, q: np.ndarray, w: np.ndarray, tol: float) -> bool:
    r = Q @ w + q
    free = (w > 0.0) & (w < 1.0)
    return bool((r[w <= 0.0] >= -tol).all() and (r[w >= 1.0] <= tol).all()
                and (np.abs(r[free]) <= tol).all())


def _kink_multipliers(Q: np.ndarray, q: np.ndarray, w0: np.ndarray | None = None) -> np.ndarray:
    """Solve the box QP ``min 1/2 w^T Q w + q^T w`` over ``0 <= w <= 1`` (``Q`` PSD).

    Its KKT conditions are the hinge's complementarity at the kink: with
    ``r = Q w + q``, ``w = 0`` needs ``r >= 0``, ``w = 1`` needs ``r <= 0``, and
    ``0 < w < 1`` needs ``r = 0``. A primal-dual active-set iteration
    (Hintermueller, Ito & Kunisch 2002) started from ``w0`` (the previous step's
    multipliers: the sets rarely change between steps) finds it in one or two
    least-squares solves, singular ``Q`` (duplicated points) included. Should it
    not reach a KKT point, projected Gauss-Seidel (exact coordinate descent, which
    converges for any PSD ``Q``) takes over from the best point found.
    """
    from kernelcomp._kernels.qp import box_qp_gauss_seidel

    k = len(q)
    scale = float(np.max(np.diag(Q))) if k else 0.0
    if not (math.isfinite(scale) and scale > 0.0):
        return (q < 0).astype(np.float64)
    Qn, qn = Q / scale, q / scale
    tol = 1e-9 * (1.0 + float(np.max(np.abs(qn))))
    start = (qn < 0).astype(np.float64) if w0 is None else np.clip(w0, 0.0, 1.0)
    w = _box_qp_active_set(Qn, qn, start)
    if w is not None and _box_qp_kkt(Qn, qn, w, tol):
        return w
    best = start if w is None or _box_qp_value(Qn, qn, start) < _box_qp_value(Qn, qn, w) else w
    best = np.ascontiguousarray(best, dtype=np.float64).copy()
    box_qp_gauss_seidel(np.ascontiguousarray(Qn), np.ascontiguousarray(qn), best, 100_000, 1e-14)
    return best


def _box_qp_value(Q: np.ndarray, q: np.ndarray, w: np.ndarray) -> float:
    return float(0.5 * w @ (Q @ w) + q @ w)


def _box_qp_active_set(Q: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """Primal-dual active-set iterations for the box QP; None if they fail."""
    lam = -(Q @ w + q)
    sets = None
    for _ in range(25):
        upper = lam + (w - 1.0) > 0.0
        lower = (lam + w < 0.0) & ~upper
        free = ~(upper | lower)
        key = (upper.tobytes(), lower.tobytes())
        if key == sets:
            break
        sets = key
        w = upper.astype(np.float64)
        if free.any():
            rhs = -(q[free] + Q[np.ix_(free, upper)].sum(axis=1))
            # least squares: the free block of a singular Q (duplicated points)
            # is singular but consistent at the solution
            w[free] = np.linalg.lstsq(Q[np.ix_(free, free)], rhs, rcond=None)[0]
        lam = -(Q @ w + q)
        lam[free] = 0.0
    if not np.isfinite(w).all():
        return None
    return np.clip(w, 0.0, 1.0)


class _Sliding:
    """The hinge's kink taken implicitly (Moreau time-stepping; ``integrator="sliding"``).

    With the paper's explicit step, points whose margin sits at the hinge's kink
    hop across it every step (the true flow *slides* along ``margin = 1``): the
    outputs zigzag (consecutive output changes anti-correlated, cosine -0.99),
    ``dout`` trips, and ``dt`` saws between its limit and a tenth of it; most of a
    run's 1e5 steps go there. Here, for each tentative step:

    * points with margin below ``1 - band`` get ``l' = -1`` and points above
      ``1 + band`` get ``l' = 0``, as in the explicit step. ``band`` is per point:
      four times the change of that point's margin in the last step, within
      [10 (target - 1), ``max_dout`` in margin units] (no point can move by more
      than ``max_dout`` in an accepted step, and points near the kink move much
      less than the largest margins that bound ``dout``). A point outside its
      band that crosses 1 anyway is treated explicitly for that step, as by
      "euler";
    * the points within their band of 1 (the kink set ``K``) get ``l' = -w`` with
      ``w`` in [0, 1] chosen so that, to first order in the step, each ends
      at the target margin ``KINK_TARGET`` (at most 1 + a tenth of the widest
      band) if ``0 < w < 1``, above it if ``w = 0``, below it if ``w = 1`` (the
      hinge's subgradient at the *end* of the step: a box QP on the tangent
      kernel of ``K``, :func:`_kink_multipliers`).

    The step is then accepted or rejected by the paper's ``dgrad``/``dout`` rule
    and ``dt`` adapted as for :class:`_Euler`; ``dgrad``'s reference gradient
    keeps the step's multipliers and ReLU pattern. As ``dt -> 0`` both
    integrators converge to the same flow (the Filippov solution, whose
    multipliers hold sliding points on the kink), up to the 1e-3 offset of the
    target (3e-4 relative difference in a kernel machine's coefficients); this
    one gets there in 60-80x fewer steps on the paper's problems. If the
    multipliers cancel the rest of the gradient (to ``STATIONARY``), the flow has
    stopped short of separating the data and the run ends as "stationary".
    """

    def __init__(self, problem: _Problem, params: Any, out: np.ndarray, y: np.ndarray,
                 c: _Control) -> None:
        self.problem, self.y, self.c = problem, y, c
        self.p = len(y)
        self.widest = c.max_dout * c.alpha  # max_dout in margin units
        self.target = 1.0 + min(KINK_TARGET - 1.0, self.widest / 10.0)
        self.narrowest = min(10.0 * (self.target - 1.0), self.widest)
        self.m, self.u_a, self.kink = self._split(out, math.inf)  # first step: widest band
        self.g_a = self._grad(params, self.u_a)
        self.w_last = np.zeros(self.p)  # the last multipliers, to start the next QP from

    def _split(self, out: np.ndarray, moved: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Margins, the explicit part of dL/dFt, and the kink set."""
        c, y = self.c, self.y
        # per point: four times its margin's last change, within [narrowest, widest]
        band = np.clip(4.0 * c.alpha * np.abs(moved), self.narrowest, self.widest)
        m = _margins(out, y, c.alpha)
        u_a = np.where(m < 1.0 - band, -y / self.p, 0.0)
        return m, u_a, np.flatnonzero(np.abs(m - 1.0) <= band)

    def _grad(self, params: Any, u: np.ndarray) -> Any:
        rows = np.flatnonzero(u)
        return self.problem.backward(params, u, rows if 0 < len(rows) < self.p else None)

    def prepare(self, params: Any, out: np.ndarray) -> None:
        """The kink set's tangent kernel and drift under the explicit part, once per state."""
        if len(self.kink):
            yk = self.y[self.kink]
            self.theta = (yk[:, None] * self.problem.ntk(params, self.kink)) * yk[None, :]
            self.drift = self.c.alpha * yk * self.problem.jvp(params, self.g_a, self.kink)

    def trial(self, params: Any, out: np.ndarray, dt: float) -> Any:
        problem, c, p, kink = self.problem, self.c, self.p, self.kink
        u, g = self.u_a, self.g_a
        if len(kink):
            yk = self.y[kink]
            w = _kink_multipliers((c.alpha * dt / p) * self.theta,
                                  self.m[kink] - self.target - dt * self.drift, self.w_last[kink])
            self.w_last[kink] = w
            if w.any():
                u = self.u_a.copy()
                u[kink] = -w * yk / p
                u_k = np.zeros(p)
                u_k[kink] = w * yk / p
                g_k = problem.backward(params, u_k, kink)
                g = problem.sub(self.g_a, g_k)
                ga2, gk2, g2 = problem.norms(self.g_a, g_k)
                if g2 <= STATIONARY**2 * (ga2 + gk2):
                    # the kink's multipliers cancel the rest: the flow has stopped
                    # short of every margin reaching 1 (non-separable data)
                    return None
        new_params = problem.step(params, g, dt)
        new_out = problem.forward(new_params)
        new_m, new_u_a, new_kink = self._split(new_out, new_out - out)
        if problem.pair is not None:
            new_g_a, ref_g = problem.pair(new_params, new_u_a, params, u)
        else:
            new_g_a = self._grad(new_params, new_u_a)
            ref_g = _reference(problem, new_params, new_g_a, new_u_a, u)
        self.next = new_m, new_u_a, new_kink, new_g_a
        return new_params, new_out, g, ref_g

    def commit(self) -> None:
        self.m, self.u_a, self.kink, self.g_a = self.next


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
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
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


def _check_labels(y: Any, n: int, name: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold the numbers -1 and +1, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels, but there are {n} samples")
    bad = ~((arr == 1.0) | (arr == -1.0))
    if bad.any():
        raise ValueError(
            f"{name} must hold labels -1 and +1 only, found {arr[bad][0]!r} "
            "(map two classes to -1/+1 first, e.g. np.where(y == c, 1.0, -1.0))"
        )
    return arr


# ---------------------------------------------------------------------------
# kernel machine on a frozen Gram
# ---------------------------------------------------------------------------
@dataclass
class KernelFlowResult:
    """A kernel machine ``F(x) = sum_mu a_mu K(x, x_mu)`` trained by gradient flow.

    Attributes
    ----------
    coef : numpy.ndarray of shape (p,)
        The coefficients ``a``.
    train_output : numpy.ndarray of shape (p,)
        ``F`` on the training points, ``K a``.
    alpha : float
        The output scale used in the loss (margins are ``alpha y F``).
    status : str
        Why the flow stopped (see :class:`FlowState`).
    final : FlowState
        The last state.
    history : dict of str to numpy.ndarray
        Per accepted step: ``step``, ``time``, ``dt``, ``dgrad``, ``dout``,
        ``loss``, ``train_error``, ``n_unsat``, ``rejected``.
    """

    coef: np.ndarray
    train_output: np.ndarray
    alpha: float
    status: str
    final: FlowState
    history: dict[str, np.ndarray]

    def decision_function(self, K_test: Any) -> np.ndarray:
        """``F`` on new points from their cross Gram ``K(x_test, x_train)``.

        Parameters
        ----------
        K_test : array-like of shape (n_test, p)
            Kernel between the test points (rows) and the training points.

        Returns
        -------
        numpy.ndarray of shape (n_test,)

        Raises
        ------
        ValueError
            If ``K_test`` does not have ``p`` columns or holds NaN/inf.
        """
        K_test = check_matrix(K_test, "K_test", dtype=np.float64, n_features=len(self.coef))
        return K_test @ self.coef

    def predict(self, K_test: Any) -> np.ndarray:
        """Labels ``sign F`` (``+1`` where ``F > 0``, ``-1`` elsewhere)."""
        return np.where(self.decision_function(K_test) > 0, 1.0, -1.0)

    def test_error(self, K_test: Any, y_test: Any) -> float:
        """Fraction of test points with ``y F <= 0`` (the paper's test error)."""
        F = self.decision_function(K_test)
        y_test = _check_labels(y_test, len(F), "y_test")
        return float(np.mean(y_test * F <= 0))


def _history(states: list[FlowState]) -> dict[str, np.ndarray]:
    keys = ("step", "time", "dt", "dgrad", "dout", "loss", "train_error", "n_unsat", "rejected")
    return {k: np.array([getattr(s, k) for s in states]) for k in keys}


def kernel_gradient_flow(
    K: Any,
    y: Any,
    *,
    loss: str = "hinge",
    alpha: float = 1.0,
    beta: float = 20.0,
    max_dgrad: float = MAX_DGRAD,
    max_dout: float = MAX_DOUT,
    max_time: float = math.inf,
    max_steps: int | None = None,
    max_wall: float | None = None,
    integrator: str = "sliding",
) -> KernelFlowResult:
    """The paper's kernel machine: gradient flow of the hinge loss on a frozen Gram.

    ``F(x) = sum_mu a_mu K(x, x_mu)`` starts from ``a = 0`` and follows
    ``da_mu/dt = -l'(alpha y_mu F_mu) y_mu / p``, the dynamics of a network
    linearised around the point where ``K`` is its tangent kernel (so
    ``dF/dt = -K l' y / p``). The step control and stop rule are those of
    :func:`train`, with ``dgrad`` measured in that network's parameter metric,
    ``|g - g'|^2 = (v - v')^T K (v - v')``, and ``dout = max |F - F'|``.

    Parameters
    ----------
    K : array-like of shape (p, p)
        Gram matrix of the training points (symmetric, positive semi-definite).
    y : array-like of shape (p,)
        Labels in {-1, +1}.
    loss : {"hinge", "soft_hinge"}, default "hinge"
        The loss ``l``.
    alpha : float, default 1.0
        Output scale in the margins ``alpha y F``; for a kernel machine it only
        rescales time (and ``F``), the decision rule does not depend on it.
    beta : float, default 20.0
        Sharpness of the soft hinge.
    max_dgrad, max_dout : float, default 1e-4, 0.1
        Step control: accept when ``dgrad < max_dgrad`` and ``dout < max_dout / alpha``.
    max_time : float, default inf
        Stop at this flow time.
    max_steps : int, optional
        Stop after this many accepted steps.
    max_wall : float, optional
        Stop after this many seconds of wall-clock time.
    integrator : {"sliding", "euler"}, default "sliding"
        How a step is taken, as in :func:`train` (the kink points' tangent
        kernel is ``K`` itself). On a stripe of 30 points "sliding" converges
        in 219 steps, "euler" in 4,972.

    Returns
    -------
    KernelFlowResult
        Coefficients, training outputs, status and per-step history; predict
        with ``result.decision_function(K(X_test, X_train))``.

    Raises
    ------
    ValueError
        If ``K`` is not square, has NaN/inf, or ``y`` is not a vector of ±1 of
        matching length, or an option is out of range.
    TypeError
        If an argument has the wrong type.

    References
    ----------
    Paccolat et al. (2021), §4 ("Kernel machines with a frozen kernel"), and the
    ``train_kernel`` dynamics of the authors' code (Geiger et al. 2020).

    Examples
    --------
    >>> import numpy as np
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(40, 3, seed=0)
    >>> K = kc.NTK(depth=1)(X)
    >>> res = kernel_gradient_flow(K, y)
    >>> res.status, res.final.n_unsat
    ('converged', 0)
    """
    K = check_matrix(K, "K", dtype=np.float64)
    p = K.shape[0]
    if K.shape[1] != p:
        raise ValueError(f"K must be a square Gram matrix, got shape {K.shape}")
    y = _check_labels(y, p)
    c = _control(alpha, loss, beta, max_dgrad, max_dout, max_time, max_steps, max_wall,
                 integrator)

    # params = (a, F = K a); gradient = (v, K v) with v = dL/da in the RKHS metric
    def forward(params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return params[1]

    def backward(params: Any, v: np.ndarray, rows: np.ndarray | None) -> Any:
        if rows is None:
            return v, K @ v
        return v, K[:, rows] @ v[rows]

    def step(params: tuple[np.ndarray, np.ndarray], g: Any, dt: float) -> Any:
        return params[0] - dt * g[0], params[1] - dt * g[1]

    def norms(g1: Any, g2: Any) -> tuple[float, float, float]:
        (v1, Kv1), (v2, Kv2) = g1, g2
        return (
            max(float(v1 @ Kv1), 0.0),
            max(float(v2 @ Kv2), 0.0),
            max(float((v1 - v2) @ (Kv1 - Kv2)), 0.0),
        )

    def sub(g1: Any, g2: Any) -> Any:
        return g1[0] - g2[0], g1[1] - g2[1]

    def ntk(params: Any, rows: np.ndarray) -> np.ndarray:
        return K[np.ix_(rows, rows)]

    def jvp(params: Any, g: Any, rows: np.ndarray) -> np.ndarray:
        return g[1][rows]

    states: list[FlowState] = []
    start: Any = (np.zeros(p), np.zeros(p))
    params, out = start, start[1]
    problem = _Problem(forward, backward, step, norms, sub, ntk=ntk, jvp=jvp)
    for state, params, out in _flow(problem, start, y, c):  # noqa: B007
        states.append(state)
    final = states[-1]
    return KernelFlowResult(
        coef=params[0],
        train_output=out,
        alpha=c.alpha,
        status=str(final.status),
        final=final,
        history=_history(states),
    )


# ---------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------
@dataclass
class CheckpointRecord:
    """A checkpoint kept in memory by :func:`train` (also written to the run file).

    Attributes
    ----------
    step : int
    time : float
        Flow time.
    loss : float
    train_error : float
    test_error : float or None
        None without a test set.
    reason : str
        ``"init"``, ``"step"`` (geometric schedule), ``"loss<FRAC"`` (first time
        the loss fell below ``FRAC`` times its initial value), ``"fitted>FRAC"``
        (first time more than ``FRAC`` of the training margins were >= 1) or
        ``"final"``; several joined by ``+`` when they coincide.
    net : FCNetwork or None
        The network at that point (None with ``keep_networks=False``).
    fitted_fraction : float
        Fraction of the training points with margin ``alpha y Ft >= 1``.
    """

    step: int
    time: float
    loss: float
    train_error: float
    test_error: float | None
    reason: str
    net: Any = None
    fitted_fraction: float = math.nan


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes
    ----------
    net : FCNetwork
        The trained network ``f``.
    net0 : FCNetwork
        The network at initialisation ``f0`` (a copy; the input network is not
        modified).
    alpha : float
    center : bool
        Whether the model is ``alpha (f - f0)`` (True, the paper's) or ``alpha f``.
    status : str
        Why training stopped (see :class:`FlowState`).
    final : FlowState
    history : dict of str to numpy.ndarray
        Per accepted step: ``step``, ``time``, ``dt``, ``dgrad``, ``dout``,
        ``loss``, ``train_error``, ``n_unsat``, ``rejected``.
    checkpoints : list of CheckpointRecord
    path : pathlib.Path or None
        The run file, when one was written.
    wall_time : float
        Seconds spent training.
    config : dict
        The training configuration (as stored in the run file), with the
        ``config`` passed to :func:`train`.
    """

    net: Any
    net0: Any
    alpha: float
    center: bool
    status: str
    final: FlowState
    history: dict[str, np.ndarray]
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    path: Any = None
    wall_time: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def decision_function(self, X: Any) -> np.ndarray:
        """The trained model ``F(x) = alpha (f(x) - f0(x))`` (``alpha f`` if not centred).

        Parameters
        ----------
        X : array-like of shape (n, d)

        Returns
        -------
        numpy.ndarray of shape (n,)
        """
        out = self.net(X)
        if self.center:
            out = out - self.net0(X)
        return self.alpha * out

    def predict(self, X: Any) -> np.ndarray:
        """Labels ``sign F`` (``+1`` where ``F > 0``, ``-1`` elsewhere)."""
        return np.where(self.decision_function(X) > 0, 1.0, -1.0)

    def test_error(self, X: Any, y: Any) -> float:
        """Fraction of points with ``y F(x) <= 0`` (the paper's test error)."""
        F = self.decision_function(X)
        return float(np.mean(_check_labels(y, len(F), "y") * F <= 0))

    def margins(self, X: Any, y: Any) -> np.ndarray:
        """``alpha y Ft(x)`` = ``y F(x)``; training stops when all are >= 1."""
        F = self.decision_function(X)
        return _check_labels(y, len(F), "y") * F


def _geometric_schedule(per_decade: int) -> Iterator[int]:
    """Steps 0, 1, 2, ... spaced geometrically, ``per_decade`` per factor of 10."""
    yield 0
    last, k = 0, 0
    while True:
        last = max(last + 1, round(10.0 ** (k / per_decade)))
        k += 1
        yield last


#: piecewise-linear activations and their slope where active
_KINKED: dict[str, float] = {"relu": 1.0, "relu_unit": math.sqrt(2.0)}


def _network_problem(net: Any, X: np.ndarray, out0: np.ndarray) -> _Problem:
    """Flow hooks for an FCNetwork: params and gradients are lists of arrays.

    For ReLU networks the ``pair`` hook gives the step control's reference
    gradient with the activation pattern of the step's start (see :func:`_flow`).
    """
    work = net.copy()
    slots = [("w", l) for l in range(len(work.weights))] + [
        ("b", l) for l, b in enumerate(work.biases) if b is not None
    ]
    last: dict[str, Any] = {}

    def load(params: list[np.ndarray]) -> None:
        for (kind, l), arr in zip(slots, params, strict=True):
            (work.weights if kind == "w" else work.biases)[l] = arr

    def forward(params: list[np.ndarray]) -> np.ndarray:
        load(params)
        out, cache = work.forward(X, cache=True)
        last["params"], last["cache"] = params, cache
        return out - out0

    def backward(params: list[np.ndarray], u: np.ndarray, rows: np.ndarray | None) -> Any:
        load(params)
        if rows is None:
            cache = last["cache"] if last.get("params") is params else None
            gW, gb = work.gradients(X, u, cache=cache)
        else:
            gW, gb = work.gradients(X[rows], u[rows])
        return [gW[l] if kind == "w" else gb[l] for kind, l in slots]

    def step(params: list[np.ndarray], g: list[np.ndarray], dt: float) -> list[np.ndarray]:
        return [p - dt * gp for p, gp in zip(params, g, strict=True)]

    def norms(g1: list[np.ndarray], g2: list[np.ndarray]) -> tuple[float, float, float]:
        a = sum(float(np.vdot(x, x)) for x in g1)
        b = sum(float(np.vdot(x, x)) for x in g2)
        c = sum(float(np.vdot(x - z, x - z)) for x, z in zip(g1, g2, strict=True))
        return a, b, c

    def sub(g1: list[np.ndarray], g2: list[np.ndarray]) -> list[np.ndarray]:
        return [x - z for x, z in zip(g1, g2, strict=True)]

    def ntk(params: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Tangent kernel on ``rows``, layer by layer (never the Jacobian)."""
        from kernelcomp.empirical import EmpiricalNTK

        load(params)
        return EmpiricalNTK(work)(X[rows])

    def jvp(params: list[np.ndarray], g: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Forward-mode derivative of Ft on ``rows`` along ``g``."""
        from kernelcomp.network import activate, activate_grad

        load(params)
        dW: list[Any] = [None] * len(work.weights)
        db: list[Any] = [None] * len(work.biases)
        for (kind, l), arr in zip(slots, g, strict=True):
            (dW if kind == "w" else db)[l] = arr
        a = X[rows]
        da = np.zeros_like(a)
        for l, (W, b) in enumerate(zip(work.weights, work.biases, strict=True)):
            z = work.weight_mult[l] * (a @ W.T)
            dz = work.weight_mult[l] * (a @ dW[l].T + da @ W.T)
            if b is not None:
                z += work.bias_mult[l] * b
                dz += work.bias_mult[l] * db[l]
            if l < work.depth:
                a, da = activate(work.activation, z), activate_grad(work.activation, z) * dz
        return dz[:, 0]

    if work.activation not in _KINKED:
        return _Problem(forward, backward, step, norms, sub, ntk=ntk, jvp=jvp)

    slope = _KINKED[work.activation]

    def pair(params: list[np.ndarray], u: np.ndarray, old: list[np.ndarray],
             uref: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        g = backward(params, u, None)
        load(old)
        _, old_cache = work.forward(X, cache=True)
        masks = [z > 0 for z in old_cache.preactivations[:-1]]
        load(params)
        # backpropagation through the network linearised on the old ReLU pattern
        L = len(work.weights) - 1
        a, inputs = X, []
        for l in range(L):
            inputs.append(a)
            z = work.weight_mult[l] * (a @ work.weights[l].T)
            if work.biases[l] is not None:
                z += work.bias_mult[l] * work.biases[l]
            a = slope * z * masks[l]
        inputs.append(a)
        delta = uref[:, None]
        gW: list[Any] = [None] * (L + 1)
        gb: list[Any] = [None] * (L + 1)
        for l in range(L, -1, -1):
            gW[l] = work.weight_mult[l] * (delta.T @ inputs[l])
            if work.biases[l] is not None:
                gb[l] = work.bias_mult[l] * delta.sum(axis=0)
            if l > 0:
                delta = (delta @ work.weights[l]) * (work.weight_mult[l] * slope) * masks[l - 1]
        return g, [gW[l] if kind == "w" else gb[l] for kind, l in slots]

    return _Problem(forward, backward, step, norms, sub, pair, ntk, jvp)


def _fused_eligible(net: Any) -> bool:
    from kernelcomp._kernels.training import CODES

    return net.depth == 1 and net.n_outputs == 1 and net.activation in CODES


def _fused_problem(net: Any, X: np.ndarray, out0: np.ndarray) -> _Problem:
    """Flow hooks for a one-hidden-layer network on the fused compiled passes.

    Same parameter layout as :func:`_network_problem` (``_params_of``):
    ``[W1 (h, d), W2 (1, h), b1 (h,) if any, b2 (1,) if any]``.
    """
    from kernelcomp._kernels import training as core

    act = core.CODES[net.activation]
    c1, c2 = float(net.weight_mult[0]), float(net.weight_mult[1])
    has_b1, has_b2 = net.biases[0] is not None, net.biases[1] is not None
    s1 = float(net.bias_mult[0]) if has_b1 else 0.0
    s2 = float(net.bias_mult[1]) if has_b2 else 0.0
    h = net.weights[0].shape[0]
    serial = X.shape[0] * h < core.PARALLEL_MIN_WORK
    fwd = core.forward_serial if serial else core.forward
    bwd = core.backward_serial if serial else core.backward
    bwd_pair = core.backward_pair_serial if serial else core.backward_pair
    zeros_h = np.zeros(h)
    all_rows = np.arange(X.shape[0], dtype=np.int64)

    def unpack(params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        W1, W2 = params[0], params[1]
        b1 = params[2] if has_b1 else zeros_h
        bias2 = s2 * float(params[-1][0]) if has_b2 else 0.0
        return W1, W2[0], b1, bias2

    def forward(params: list[np.ndarray]) -> np.ndarray:
        W1, beta, b1, bias2 = unpack(params)
        out = np.empty(X.shape[0])
        fwd(X, W1, b1, beta, c1, s1, c2, bias2, act, out)
        return out - out0

    def backward(params: list[np.ndarray], u: np.ndarray, rows: np.ndarray | None) -> Any:
        W1, beta, b1, _ = unpack(params)
        gW1, gb1, gbeta = np.empty_like(W1), np.empty(h), np.empty(h)
        rows = all_rows if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        bwd(X, W1, b1, beta, c1, s1, c2, act, np.ascontiguousarray(u), rows,
                      gW1, gb1, gbeta)
        g = [gW1, gbeta[None, :]]
        if has_b1:
            g.append(gb1)
        if has_b2:
            g.append(np.array([s2 * float(u[rows].sum())]))
        return g

    def pair(params: list[np.ndarray], u: np.ndarray, old: list[np.ndarray],
             uref: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        W1, beta, b1, _ = unpack(params)
        W1o, _, b1o, _ = unpack(old)
        g = [np.empty_like(W1), np.empty(h), np.empty(h)]
        r = [np.empty_like(W1), np.empty(h), np.empty(h)]
        bwd_pair(X, W1, b1, beta, W1o, b1o, c1, s1, c2, act,
                           np.ascontiguousarray(u), np.ascontiguousarray(uref), *g, *r)
        out = []
        for (gW1, gb1, gbeta), uu in ((g, u), (r, uref)):
            lst = [gW1, gbeta[None, :]]
            if has_b1:
                lst.append(gb1)
            if has_b2:
                lst.append(np.array([s2 * float(uu.sum())]))
            out.append(lst)
        return out[0], out[1]

    memo: dict[str, Any] = {}

    def hidden(params: list[np.ndarray], rows: np.ndarray) -> Any:
        """Inputs, phi(z) and c2 beta phi'(z) of the hidden units on ``rows``."""
        from kernelcomp.network import activate, activate_grad

        key = rows.tobytes()
        if memo.get("params") is not params or memo.get("rows") != key:
            W1, beta, b1, _ = unpack(params)
            Xk = X[rows]
            z = c1 * (Xk @ W1.T)
            if has_b1:
                z += s1 * b1
            memo["params"], memo["rows"] = params, key
            memo["value"] = (Xk, activate(net.activation, z),
                             (c2 * beta) * activate_grad(net.activation, z))
        return memo["value"]

    def ntk(params: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        # sum_n [c2^2 phi phi' + c2^2 beta^2 phi'(z) phi'(z') (c1^2 x.x' + s1^2)] + s2^2
        Xk, phi, a = hidden(params, rows)
        inner = (c1 * c1) * gram_nt(Xk) + (s1 * s1 if has_b1 else 0.0)
        theta = (c2 * c2) * gram_nt(phi) + gram_nt(a) * inner
        return theta + s2 * s2 if has_b2 else theta

    def jvp(params: list[np.ndarray], g: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        Xk, phi, a = hidden(params, rows)
        v = c1 * (Xk @ g[0].T)
        if has_b1:
            v += s1 * g[2]
        res = np.einsum("kh,kh->k", a, v) + c2 * (phi @ g[1][0])
        return res + s2 * float(g[-1][0]) if has_b2 else res

    generic = _network_problem(net, X, out0)
    return _Problem(forward, backward, generic.step, generic.norms, generic.sub, pair, ntk, jvp)


def _params_of(net: Any) -> list[np.ndarray]:
    return [*net.weights, *(b for b in net.biases if b is not None)]


def _net_from_params(net: Any, params: list[np.ndarray]) -> Any:
    out = net.copy()
    n = len(out.weights)
    out.weights = [np.array(p) for p in params[:n]]
    it = iter(params[n:])
    out.biases = [None if b is None else np.array(next(it)) for b in out.biases]
    return out


def _check_fractions(values: Any, name: str) -> tuple[float, ...]:
    """A sequence of fractions in (0, 1), sorted ascending."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(
            f"{name} must be a sequence of fractions in (0, 1), got {type(values).__name__}"
        )
    out = []
    for i, v in enumerate(values):
        v = check_real(v, f"{name}[{i}]")
        if not 0 < v < 1:
            raise ValueError(f"{name}[{i}] must be in (0, 1), got {v}")
        out.append(v)
    return tuple(sorted(out))


#: default ``margin_fractions`` of :func:`train`: t* (the first checkpoint with
#: more than 10 % of the margins >= 1, where the paper reads lambda) among them
MARGIN_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.9)


def train(
    net: Any,
    X: Any,
    y: Any,
    *,
    alpha: float,
    loss: str = "hinge",
    beta: float = 20.0,
    X_test: Any = None,
    y_test: Any = None,
    checkpoints: int | Sequence[int] = 4,
    loss_milestones: Sequence[float] = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01),
    margin_fractions: Sequence[float] = MARGIN_FRACTIONS,
    path: Any = None,
    config: dict[str, Any] | None = None,
    force: bool = False,
    center: bool = True,
    max_time: float = math.inf,
    max_steps: int | None = None,
    max_wall: float | None = None,
    max_dgrad: float = MAX_DGRAD,
    max_dout: float = MAX_DOUT,
    keep_networks: bool = True,
    progress: bool = False,
    method: str = "auto",
    integrator: str = "sliding",
) -> TrainResult:
    """Train a network by full-batch gradient flow, the paper's way.

    The model is ``F = alpha (f - f0)`` with ``f0`` the network at
    initialisation (``net``, which is copied, never modified); the loss
    ``(1/p) sum l(alpha y Ft) / alpha`` is minimised by gradient flow with the
    adaptive step of the paper (see the module docstring) until every training
    margin ``alpha y Ft`` reaches 1, a limit is hit, or NaN appears.

    Checkpoints (network, time, loss, train/test error, margins) are taken at
    step 0, at geometrically spaced steps, when the loss first falls below each
    fraction of ``loss_milestones`` times its initial value, when the fraction
    of training margins ``>= 1`` first exceeds each of ``margin_fractions`` (so
    that ``t*``, where the paper reads the compression, is a checkpoint: see
    :func:`kernelcomp.diagnostics.compression_at`), and at the end; with
    ``path`` they are appended to a run file (:class:`kernelcomp.io.RunWriter`)
    as training goes, so a killed run keeps what it did (``PATH.partial``).

    Parameters
    ----------
    net : FCNetwork
        The network at initialisation, e.g. the paper's
        ``FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field")``.
        Single output.
    X : array-like of shape (p, d)
        Training inputs.
    y : array-like of shape (p,)
        Labels in {-1, +1}.
    alpha : float
        Output scale; ``alpha sqrt(h) << 1`` is the feature regime,
        ``>> 1`` the lazy one.
    loss : {"hinge", "soft_hinge"}, default "hinge"
        The loss ``l``.
    beta : float, default 20.0
        Sharpness of the soft hinge (3 on MNIST in the paper).
    X_test, y_test : array-like, optional
        A test set, evaluated at every checkpoint and stored in the run file.
    checkpoints : int or sequence of int, default 4
        Checkpoints per decade of steps (steps 0, 1, 2, 3, 6, 10, 18, 32, 56,
        100, ... for 4), or an explicit sequence of step numbers.
    loss_milestones : sequence of float, default (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
        Fractions of the initial loss whose first crossing is checkpointed.
    margin_fractions : sequence of float, default (0.05, 0.1, 0.25, 0.5, 0.9)
        A checkpoint is taken at the first step where more than each of these
        fractions of the training points have margin ``alpha y Ft >= 1``
        (reason ``"fitted>FRAC"``); 0.1 gives the paper's ``t*``.
    path : str or os.PathLike, optional
        Run file to write (through ``kernelcomp.io.RunWriter``).
    config : dict, optional
        Extra JSON-serialisable configuration stored in the run file (seeds,
        dataset name...), next to the training options.
    force : bool, default False
        Overwrite an existing run file.
    center : bool, default True
        Train ``alpha (f - f0)`` (True) or ``alpha f``.
    max_time : float, default inf
        Stop at this flow time.
    max_steps : int, optional
        Stop after this many accepted steps.
    max_wall : float, optional
        Stop after this many seconds.
    integrator : {"sliding", "euler"}, default "sliding"
        How a step is taken (the step control is the paper's either way).
        "euler": the paper's literal explicit step ``theta - dt g``. "sliding":
        the same, except that points near the hinge's kink get the hinge's
        subgradient at the *end* of the step (implicit, Moreau time-stepping),
        so that points sliding along margin 1 no longer zigzag across it. Both
        integrate the same flow (up to holding sliding points at margin 1.001);
        "sliding" takes 60-80x fewer steps (h = 1000, p = 200: 2,889 steps
        against 179,474; h = 1e4, p = 1e3 converges in 5,057 steps, where
        "euler" still had 44 margins below 1 after 16,272). It can also end as
        "stationary" (data the flow cannot separate). The soft hinge is smooth
        and is integrated explicitly in both cases.
    max_dgrad, max_dout : float, default 1e-4, 0.1
        Step control: accept when ``dgrad < max_dgrad`` and ``dout < max_dout / alpha``.
    keep_networks : bool, default True
        Keep every checkpoint's network in memory in the result.
    progress : bool, default False
        Show a progress bar (steps, loss, unsatisfied margins).
    method : {"auto", "fused", "numpy"}, default "auto"
        ``"fused"``: compiled forward/backward passes for a one-hidden-layer
        network (no (p, h) temporaries; see ``scripts/bench_training.py``);
        ``"numpy"``: ``net.forward``/``net.gradients`` (BLAS; any depth);
        ``"auto"``: fused when the network has one hidden layer.

    Returns
    -------
    TrainResult
        Final and initial networks, status, history and checkpoints;
        ``result.predict(X)`` classifies new points.

    Raises
    ------
    TypeError
        If ``net`` is not a single-output ``FCNetwork`` or an option has the
        wrong type.
    ValueError
        If the data are malformed (shape, NaN, labels other than ±1), an option
        is out of range.
    FileExistsError
        If ``path`` exists and ``force`` is False.

    References
    ----------
    Paccolat et al. (2021), §3 and appendix A (training); Geiger et al. (2020)
    for the alpha-trick and the step control.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(50, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [100], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> res = kc.training.train(net, X, y, alpha=1e-2)
    >>> res.status, res.test_error(X, y)
    ('converged', 0.0)
    """
    from kernelcomp.network import FCNetwork

    if not isinstance(net, FCNetwork):
        raise TypeError(f"net must be a kc.FCNetwork, got {type(net).__name__}")
    if net.n_outputs != 1:
        raise TypeError(f"net must have a single output, got n_outputs={net.n_outputs}")
    X = check_matrix(X, "X", dtype=np.float64, n_features=net.input_dim)
    y = _check_labels(y, X.shape[0])
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test = check_matrix(X_test, "X_test", dtype=np.float64, n_features=net.input_dim)
        y_test = _check_labels(y_test, X_test.shape[0], "y_test")
    c = _control(alpha, loss, beta, max_dgrad, max_dout, max_time, max_steps, max_wall,
                 integrator)
    milestones = tuple(reversed(_check_fractions(loss_milestones, "loss_milestones")))
    fractions = _check_fractions(margin_fractions, "margin_fractions")
    if method not in ("auto", "fused", "numpy"):
        raise ValueError(f"method must be 'auto', 'fused' or 'numpy', got {method!r}")
    if isinstance(checkpoints, bool):
        raise TypeError("checkpoints must be an int or a sequence of step numbers, got bool")
    if isinstance(checkpoints, numbers.Integral):
        per_decade = check_int(checkpoints, "checkpoints", minimum=1)
        schedule: Iterator[int] = _geometric_schedule(per_decade)
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str):
        steps = sorted({check_int(s, f"checkpoints[{i}]", minimum=0)
                        for i, s in enumerate(checkpoints)})
        schedule = iter(steps)
    else:
        raise TypeError(
            "checkpoints must be an int (per decade of steps) or a sequence of step "
            f"numbers, got {type(checkpoints).__name__}"
        )

    net0 = net.copy()
    if method == "fused" and not _fused_eligible(net0):
        raise ValueError(
            f"method='fused' needs a one-hidden-layer network, got widths {net0.widths}"
        )
    out0 = net0(X) if center else np.zeros(X.shape[0])
    out0_test = None
    if X_test is not None:
        out0_test = net0(X_test) if center else np.zeros(X_test.shape[0])
    settings = {
        "alpha": c.alpha, "loss": c.loss, "beta": c.beta, "center": bool(center),
        "max_dgrad": c.max_dgrad, "max_dout": max_dout, "max_time": c.max_time,
        "integrator": c.integrator,
        "max_steps": c.max_steps, "max_wall": c.max_wall,
        "loss_milestones": list(milestones), "margin_fractions": list(fractions),
        "checkpoints": checkpoints if isinstance(checkpoints, int) else list(checkpoints),
        "network": {"input_dim": net.input_dim, "widths": list(net.widths),
                    "activation": net.activation, "parameterization": net.parameterization},
        "p": int(X.shape[0]),
    }
    if config is not None:
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        settings = {**config, **settings}
    if not math.isfinite(settings["max_time"]):
        settings["max_time"] = None

    writer = None
    if path is not None:
        from kernelcomp.io import RunWriter

        writer = RunWriter(path, X_train=X, y_train=y, X_test=X_test, y_test=y_test,
                           config=settings, force=force)

    records: list[CheckpointRecord] = []
    states: list[FlowState] = []
    next_step = next(schedule, None)
    pending = list(milestones)
    pending_fit = list(fractions)
    p_train = X.shape[0]
    loss0: float | None = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="train", unit="step", leave=False)
    wall0 = time.perf_counter()
    test_outputs = None
    if method == "numpy" or not _fused_eligible(net0):
        problem = _network_problem(net0, X, out0)
    else:
        problem = _fused_problem(net0, X, out0)
        if X_test is not None:  # the compiled pass, 10x faster than net(X_test)
            test_outputs = _fused_problem(net0, X_test, out0_test).forward
    params = _params_of(net0)
    try:
        for state, params, out in _flow(problem, params, y, c):  # noqa: B020
            states.append(state)
            reasons = []
            if state.step == 0:
                loss0 = state.loss
                reasons.append("init")
            while next_step is not None and next_step <= state.step:
                if next_step == state.step and state.step > 0:
                    reasons.append("step")
                next_step = next(schedule, None)
            while pending and loss0 is not None and state.loss < pending[0] * loss0:
                reasons.append(f"loss<{pending.pop(0):g}")
            fitted = 1.0 - state.n_unsat / p_train
            while pending_fit and fitted > pending_fit[0]:
                reasons.append(f"fitted>{pending_fit.pop(0):g}")
            if state.status is not None:
                reasons.append("final")
            if bar is not None:
                bar.update(1)
                if state.step % 25 == 0 or state.status is not None:
                    bar.set_postfix(loss=f"{state.loss:.3g}", unsat=state.n_unsat)
            if not reasons:
                continue
            snapshot = _net_from_params(net0, params)
            test_err = None
            if X_test is not None:
                ft = test_outputs(params) if test_outputs else snapshot(X_test) - out0_test
                test_err = float(np.mean(y_test * ft <= 0))
            reason = "+".join(reasons)
            records.append(CheckpointRecord(
                state.step, state.time, state.loss, state.train_error, test_err, reason,
                snapshot if keep_networks else None, fitted,
            ))
            if writer is not None:
                writer.add_checkpoint(
                    snapshot, step=state.step, time=state.time, loss=state.loss,
                    train_error=state.train_error, test_error=test_err,
                    margins=c.alpha * y * out, reason=reason, dt=state.dt,
                    n_unsat=state.n_unsat,
                )
    finally:  # on an exception the writer's PATH.partial keeps the checkpoints so far
        if bar is not None:
            bar.close()
    final = states[-1]
    wall = time.perf_counter() - wall0
    result_path = None
    if writer is not None:
        writer.set_summary(status=final.status, steps=final.step, time=final.time,
                           loss=final.loss, train_error=final.train_error,
                           test_error=records[-1].test_error, wall_time=wall)
        result_path = writer.close()
    return TrainResult(
        net=_net_from_params(net0, params), net0=net0, alpha=c.alpha, center=bool(center),
        status=str(final.status), final=final, history=_history(states),
        checkpoints=records, path=result_path, wall_time=wall, config=settings,
    )
