"""Gradient flow of a kernel machine on a frozen Gram (the paper's §4)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._gram import default_block_rows
from kernelcomp._linalg import matmul
from kernelcomp._validation import check_labels, check_matrix, check_square_gram
from kernelcomp.training._engine import (
    MAX_DGRAD,
    MAX_DOUT,
    SOFT_HINGE_BETA,
    FlowState,
    _control,
    _history,
    _Problem,
)
from kernelcomp.training._integrators import _flow


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
        return matmul(K_test, self.coef)

    def predict(self, K_test: Any) -> np.ndarray:
        """Labels ``sign F`` (``+1`` where ``F > 0``, ``-1`` elsewhere)."""
        return np.where(self.decision_function(K_test) > 0, 1.0, -1.0)

    def test_error(self, K_test: Any, y_test: Any) -> float:
        """Fraction of test points with ``y F <= 0`` (the paper's test error)."""
        F = self.decision_function(K_test)
        y_test = check_labels(y_test, len(F), "y_test")
        return float(np.mean(y_test * F <= 0))



def _columns_times(K: np.ndarray, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``K[:, rows] @ w`` by blocks of about 64 MiB of ``K[:, rows]``, never all of it.

    At p = 20000 with most points unsatisfied, ``K[:, rows]`` was a 3 GiB copy
    of the Gram (on every gradient); a block of rows at a time bounds the copy.
    """
    p = K.shape[0]
    block = default_block_rows(p, len(rows), K.itemsize)
    if block >= p:
        return matmul(K[:, rows], w)
    out = np.empty(p)
    for start in range(0, p, block):
        matmul(K[start:start + block, rows], w, out=out[start:start + block])
    return out


def kernel_gradient_flow(
    K: Any,
    y: Any,
    *,
    loss: str = "hinge",
    alpha: float = 1.0,
    beta: float = SOFT_HINGE_BETA,
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
    check_square_gram(K, "K")
    y = check_labels(y, p)
    c = _control(alpha, loss, beta, max_dgrad, max_dout, max_time, max_steps, max_wall,
                 integrator)

    # params = (a, F = K a); gradient = (v, K v) with v = dL/da in the RKHS metric
    def forward(params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return params[1]

    def backward(params: Any, v: np.ndarray, rows: np.ndarray | None) -> Any:
        if rows is None:
            return v, matmul(K, v)
        return v, _columns_times(K, rows, v[rows])

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
