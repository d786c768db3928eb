"""Full-batch gradient flow of the compression paper: networks and frozen kernels.

The trained model is the network's change from initialisation scaled by ``alpha``
(the "alpha-trick" of Chizat & Bach and Geiger et al.),

.. code-block:: text

    F(x) = alpha (f(x) - f0(x)),     Ft = f - f0,
    L    = (1/p) sum_mu l(alpha y_mu Ft(x_mu)) / alpha,

with ``l`` the hinge ``(1 - z)_+`` or the soft hinge ``softplus_beta(1 - z)``
(``beta = 20``). Small ``alpha sqrt(h)`` is the feature regime, large the lazy one.
Training is gradient flow integrated with the adaptive step of the authors' code
(PAPER.md, "Training"):

* start with ``dt = 1``; take a tentative step ``theta <- theta - dt g``;
* ``dgrad = |g - g'|^2 / (|g| |g'|)`` and ``dout = max |Ft - Ft'|`` over the
  training points; accept when ``dgrad < 1e-4`` and ``dout < 0.1 / alpha``, and
  then multiply ``dt`` by 1.1 if both are below half their limits; otherwise
  undo the step and divide ``dt`` by 10;
* stop when every training margin ``alpha y Ft >= 1`` (hinge loss exactly 0),
  on a time or step limit, or on NaN.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._validation import check_int, check_matrix, check_real

__all__ = [
    "LOSSES",
    "FlowState",
    "KernelFlowResult",
    "kernel_gradient_flow",
    "loss_derivative",
    "loss_value",
]

#: supported losses ("softhinge" is accepted as an alias of "soft_hinge")
LOSSES: tuple[str, ...] = ("hinge", "soft_hinge")
#: PAPER.md step control: accept a step when dgrad < MAX_DGRAD and dout < MAX_DOUT / alpha
MAX_DGRAD: float = 1e-4
MAX_DOUT: float = 0.1
#: consecutive rejected steps (dt divided by 10 each time) before giving up
MAX_REJECTIONS: int = 40


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
    # -sigmoid(beta (1 - z)), written to stay finite for any z
    return -0.5 * (1.0 + np.tanh(0.5 * beta * (1.0 - z)))


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
        ``"max_wall"``, ``"nan"`` or ``"stalled"`` (``MAX_REJECTIONS`` rejections
        in a row).
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
    """

    forward: Callable[[Any], np.ndarray]
    backward: Callable[[Any, np.ndarray, np.ndarray | None], Any]
    step: Callable[[Any, Any, float], Any]
    norms: Callable[[Any, Any], tuple[float, float, float]]
    sub: Callable[[Any, Any], Any]


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
    """Run the adaptive gradient flow, yielding every accepted state.

    The last state yielded carries its ``status``.

    For the hinge, ``l'`` jumps where a margin crosses 1, so the gradient jumps
    by ``~1/p`` however small the step: PAPER.md's ``dgrad`` would reject every
    step across the kink and the flow would creep towards it forever. There,
    ``dgrad`` compares ``g`` with the new point's gradient under the *old*
    ``l'`` (the smooth part of the change; the kink is left to ``dout``), and
    the flow itself always uses the new point's true gradient. For the soft
    hinge this is exactly PAPER.md's rule.
    """
    wall0 = time.perf_counter()
    kink = c.loss == "hinge"
    out = problem.forward(params)
    u = _output_gradient(out, y, c)
    g = problem.backward(params, u, None)
    loss, err, unsat = _summary(out, y, c)
    state = FlowState(0, 0.0, 0.0, 0.0, 0.0, loss, err, unsat)
    dt, t, step = 1.0, 0.0, 0
    while True:
        if not (np.isfinite(out).all() and np.isfinite(loss)):
            state.status = "nan"
        elif unsat == 0:
            state.status = "converged"
        elif t >= c.max_time:
            state.status = "max_time"
        elif c.max_steps is not None and step >= c.max_steps:
            state.status = "max_steps"
        elif c.max_wall is not None and time.perf_counter() - wall0 >= c.max_wall:
            state.status = "max_wall"
        if state.status is not None:
            yield state, params, out
            return
        yield state, params, out
        rejected = 0
        while True:
            # a tentative step, never past the time limit
            dt_try = min(dt, c.max_time - t)
            new_params = problem.step(params, g, dt_try)
            new_out = problem.forward(new_params)
            new_u = _output_gradient(new_out, y, c)
            new_g = problem.backward(new_params, new_u, None)
            ref_g = new_g
            if kink:
                rows = np.flatnonzero(new_u != u)
                if rows.size:
                    ref_g = problem.sub(new_g, problem.backward(new_params, new_u - u, rows))
            dout = float(np.max(np.abs(out - new_out)))
            g2, h2, d2 = problem.norms(g, ref_g)
            dgrad = 0.0 if g2 == 0.0 or h2 == 0.0 else d2 / math.sqrt(g2 * h2)
            if not (math.isfinite(dout) and math.isfinite(dgrad)):
                ok = False  # an overflowing step is too large: shrink it
            else:
                ok = dgrad < c.max_dgrad and dout < c.max_dout
            if ok:
                if dgrad < 0.5 * c.max_dgrad and dout < 0.5 * c.max_dout and dt_try == dt:
                    dt *= 1.1
                break
            rejected += 1
            dt /= 10.0
            if rejected >= MAX_REJECTIONS:
                state.status = "stalled"
                state.rejected = rejected
                yield state, params, out
                return
        step += 1
        t += dt_try
        params, out, u, g = new_params, new_out, new_u, new_g
        loss, err, unsat = _summary(out, y, c)
        state = FlowState(step, t, dt_try, dgrad, dout, loss, err, unsat, rejected)


def _control(
    alpha: Any,
    loss: Any,
    beta: Any,
    max_dgrad: Any,
    max_dout: Any,
    max_time: Any,
    max_steps: Any,
    max_wall: Any,
) -> _Control:
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
    return _Control(alpha, name, beta, max_dgrad, max_dout / alpha, max_time, max_steps, max_wall)


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
        ``loss``, ``train_error``, ``n_unsat``.
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
    keys = ("step", "time", "dt", "dgrad", "dout", "loss", "train_error", "n_unsat")
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
    c = _control(alpha, loss, beta, max_dgrad, max_dout, max_time, max_steps, max_wall)

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

    states: list[FlowState] = []
    start: Any = (np.zeros(p), np.zeros(p))
    params, out = start, start[1]
    for state, params, out in _flow(_Problem(forward, backward, step, norms, sub), start, y, c):  # noqa: B007
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
