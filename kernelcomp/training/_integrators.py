"""Integrators of the gradient flow: the explicit step and the sliding step at the hinge's kink.

:class:`_Euler` is the paper's literal explicit step; :class:`_Sliding` takes the
hinge's kink implicitly (Moreau time-stepping) with the multipliers of a small
box QP (:func:`_kink_multipliers`). Both run inside the step control of
:func:`kernelcomp.training._engine._integrate`; :func:`_flow` picks one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from kernelcomp.training._engine import (
    FlowState,
    _Control,
    _integrate,
    _margins,
    _output_gradient,
    _Problem,
    _reference,
)

#: margin the "sliding" integrator holds kink points at, just above the hinge's 1,
#: so that the stop rule (every margin >= 1) holds exactly, not to rounding (the
#: offset is at most a tenth of ``max_dout`` in margin units)
KINK_TARGET: float = 1.0 + 1e-3
#: a sliding step whose gradient cancels to this fraction of its parts' norms
#: has reached a stationary point of the flow (non-separable data): status "stationary"
STATIONARY: float = 1e-12


def _flow(
    problem: _Problem, params: Any, y: np.ndarray, c: _Control
) -> Iterator[tuple[FlowState, Any, np.ndarray]]:
    """Run the adaptive gradient flow with the integrator ``c.integrator`` asks for.

    "sliding" applies to the hinge on problems with ``ntk``/``jvp`` hooks; the
    soft hinge is smooth and always takes the explicit step.
    """
    sliding = c.integrator == "sliding" and c.loss == "hinge" and problem.ntk is not None
    return _integrate(problem, params, y, c, _Sliding if sliding else _Euler)


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



# ---------------------------------------------------------------------------
# the kink's box QP
# ---------------------------------------------------------------------------
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
