"""Slow, obvious reference of the paper's gradient flow for a one-hidden-layer network.

Written from the training rule of Paccolat et al. (2021), §3 and appendix A (the
adaptive step of the authors' code, Geiger et al. 2020), sharing no code with
``kernelcomp.training``: the network is read from an ``FCNetwork``'s ``weights``,
``biases``, ``weight_mult`` and ``bias_mult`` and everything else is written out here.

.. code-block:: text

    f(x)  = c2 sum_n beta_n phi(c1 w_n . x + s1 b_n) + s2 b2     (b2: readout bias, if any)
    Ft    = f - f0          (center=True)    or    f             (center=False)
    L     = (1/p) sum_mu l(alpha y_mu Ft(x_mu)) / alpha
    l(z)  = (1 - z)_+  (hinge)   or   log(1 + exp(beta (1 - z))) / beta  (soft hinge)

The gradient of ``L`` is ``sum_mu u_mu dFt(x_mu)/dtheta`` with
``u_mu = l'(alpha y_mu Ft_mu) y_mu / p`` (``alpha`` cancels; the hinge's
``l'(1) = 0``) and, by the chain rule,

.. code-block:: text

    dF/dbeta_n = c2 phi(z_n),   dF/dw_n = c2 beta_n phi'(z_n) c1 x,
    dF/db_n    = c2 beta_n phi'(z_n) s1,   dF/db2 = s2.

The step (explicit Euler, the library's ``integrator="euler"``): start with
``dt = 1``; take the tentative step ``theta' = theta - dt g``; measure
``dgrad = |g - g'|^2 / (|g| |g'|)`` and ``dout = max_mu |Ft_mu - Ft'_mu|``; accept
when ``dgrad < max_dgrad`` and ``dout < max_dout / alpha``, and then multiply ``dt``
by 1.1 when both are below half their limits; otherwise undo the step and
divide ``dt`` by 10. Stop when every margin ``alpha y Ft >= 1``.

``g'`` is the gradient at the tentative point measured the way kernelcomp
documents it (``kernelcomp.training._integrators``, class ``_Euler``): the hinge's ``l'``
jumps where a margin crosses 1 and a ReLU's ``phi'`` jumps where a unit's
pre-activation crosses 0, however small the step, so ``g'`` keeps the *step's
starting* hinge pattern (``u`` of the start, for the hinge only; the soft hinge
is smooth and uses the new ``u'``) and, for ReLU activations, the starting
activation pattern: it is the gradient at ``theta'`` of the network linearised
on the starting ReLU pattern, ``phi(z) -> slope z [z_start > 0]``. The flow itself
always moves along the true gradient at each accepted point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: slopes of the piecewise-linear activations where active
RELU_SLOPES = {"relu": 1.0, "relu_unit": math.sqrt(2.0)}


@dataclass
class Params:
    """The parameters of a one-hidden-layer network, by name."""

    w: np.ndarray  # (h, d) first-layer weights
    beta: np.ndarray  # (h,) readout weights
    b: np.ndarray | None  # (h,) first-layer biases
    b2: float | None  # readout bias

    def minus(self, dt: float, g: Params) -> Params:
        return Params(
            self.w - dt * g.w,
            self.beta - dt * g.beta,
            None if self.b is None else self.b - dt * g.b,
            None if self.b2 is None else self.b2 - dt * g.b2,
        )

    def sq(self) -> float:
        """Squared Euclidean norm over every parameter."""
        total = float(np.sum(self.w**2) + np.sum(self.beta**2))
        if self.b is not None:
            total += float(np.sum(self.b**2))
        if self.b2 is not None:
            total += self.b2**2
        return total

    def diff(self, other: Params) -> Params:
        return self.minus(1.0, other)


@dataclass
class Net:
    """Architecture constants of the network (multipliers and activation)."""

    c1: float
    c2: float
    s1: float
    s2: float
    activation: str


def from_fcnetwork(net) -> tuple[Net, Params]:
    """Read a one-hidden-layer, single-output ``FCNetwork``'s parameters and multipliers."""
    assert len(net.weights) == 2 and net.weights[1].shape[0] == 1, "one hidden layer, one output"
    W1, W2 = net.weights
    b1, b2 = net.biases
    arch = Net(
        c1=float(net.weight_mult[0]),
        c2=float(net.weight_mult[1]),
        s1=float(net.bias_mult[0]) if b1 is not None else 0.0,
        s2=float(net.bias_mult[1]) if b2 is not None else 0.0,
        activation=net.activation,
    )
    params = Params(
        w=np.array(W1, dtype=np.float64),
        beta=np.array(W2[0], dtype=np.float64),
        b=None if b1 is None else np.array(b1, dtype=np.float64),
        b2=None if b2 is None else float(b2[0]),
    )
    return arch, params


def phi(act: str, z: np.ndarray) -> np.ndarray:
    if act in RELU_SLOPES:
        return RELU_SLOPES[act] * np.maximum(z, 0.0)
    if act == "tanh":
        return np.tanh(z)
    if act == "linear":
        return z.copy()
    raise ValueError(f"naive reference has no activation {act!r}")


def dphi(act: str, z: np.ndarray) -> np.ndarray:
    if act in RELU_SLOPES:
        return RELU_SLOPES[act] * (z > 0.0)
    if act == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if act == "linear":
        return np.ones_like(z)
    raise ValueError(f"naive reference has no activation {act!r}")


def preactivations(arch: Net, th: Params, X: np.ndarray) -> np.ndarray:
    """``z[mu, n] = c1 w_n . x_mu + s1 b_n``."""
    z = arch.c1 * (X @ th.w.T)
    if th.b is not None:
        z = z + arch.s1 * th.b
    return z


def network_output(arch: Net, th: Params, X: np.ndarray) -> np.ndarray:
    """``f(x_mu) = c2 sum_n beta_n phi(z_mu,n) + s2 b2``."""
    out = arch.c2 * (phi(arch.activation, preactivations(arch, th, X)) @ th.beta)
    if th.b2 is not None:
        out = out + arch.s2 * th.b2
    return out


def gradient(arch: Net, th: Params, X: np.ndarray, u: np.ndarray,
             frozen: Params | None = None) -> Params:
    """Gradient at ``th`` of ``sum_mu u_mu f(x_mu)``, by the chain rule.

    With ``frozen`` (ReLU activations only) the network is linearised on the
    activation pattern of the parameters ``frozen``: ``phi(z) = slope z [z_frozen > 0]``.
    """
    z = preactivations(arch, th, X)
    act = arch.activation
    if frozen is not None and act in RELU_SLOPES:
        on = preactivations(arch, frozen, X) > 0.0
        slope = RELU_SLOPES[act]
        ph, dph = slope * z * on, slope * on
    else:
        ph, dph = phi(act, z), dphi(act, z)
    # a[mu, n] = u_mu c2 beta_n phi'(z_mu,n)
    a = u[:, None] * arch.c2 * th.beta[None, :] * dph
    return Params(
        w=arch.c1 * (a.T @ X),
        beta=arch.c2 * (u @ ph),
        b=None if th.b is None else arch.s1 * a.sum(axis=0),
        b2=None if th.b2 is None else arch.s2 * float(u.sum()),
    )


def loss_derivative(z: np.ndarray, loss: str, beta: float) -> np.ndarray:
    """``l'(z)``: -1/0 for the hinge (``l'(1) = 0``), ``-sigmoid(beta (1 - z))`` otherwise."""
    if loss == "hinge":
        return np.where(z < 1.0, -1.0, 0.0)
    x = beta * (1.0 - z)
    return -np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))),
                     np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def loss_value(z: np.ndarray, loss: str, beta: float) -> np.ndarray:
    if loss == "hinge":
        return np.maximum(1.0 - z, 0.0)
    x = beta * (1.0 - z)
    return (np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))) / beta


@dataclass
class NaiveRun:
    """What the naive flow did: the final state and one entry per accepted step."""

    params: Params
    out: np.ndarray  # final Ft on the training points
    status: str
    steps: int
    time: float
    dt: list[float] = field(default_factory=list)  # accepted step sizes
    dgrad: list[float] = field(default_factory=list)
    dout: list[float] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # after each accepted step, [0] initial


def gradient_flow(net, X, y, *, alpha: float, loss: str = "hinge", beta: float = 20.0,
                  center: bool = True, max_dgrad: float = 1e-4, max_dout: float = 0.1,
                  max_steps: int | None = None, max_time: float = math.inf,
                  max_rejections: int = 40) -> NaiveRun:
    """The paper's adaptive explicit gradient flow of ``alpha (f - f0)`` (see the module)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    p = len(y)
    arch, th = from_fcnetwork(net)
    f0 = network_output(arch, th, X) if center else np.zeros(p)

    def model(params: Params) -> np.ndarray:
        return network_output(arch, params, X) - f0

    def weights(out: np.ndarray) -> np.ndarray:  # u = dL/dFt
        return loss_derivative(alpha * y * out, loss, beta) * y / p

    def total_loss(out: np.ndarray) -> float:
        return float(np.mean(loss_value(alpha * y * out, loss, beta))) / alpha

    out = model(th)
    u = weights(out)
    g = gradient(arch, th, X, u)
    run = NaiveRun(th, out, "", 0, 0.0)
    run.loss.append(total_loss(out))
    dt, t, step = 1.0, 0.0, 0
    while True:
        if not (np.isfinite(out).all() and math.isfinite(run.loss[-1])):
            run.status = "nan"
            break
        if (alpha * y * out >= 1.0).all():
            run.status = "converged"
            break
        if t >= max_time:
            run.status = "max_time"
            break
        if max_steps is not None and step >= max_steps:
            run.status = "max_steps"
            break
        rejected = 0
        while True:
            dt_try = min(dt, max_time - t)
            th2 = th.minus(dt_try, g)
            out2 = model(th2)
            u2 = weights(out2)
            u_ref = u if loss == "hinge" else u2  # the step's starting hinge pattern
            g_ref = gradient(arch, th2, X, u_ref, frozen=th)  # and its ReLU pattern
            n1, n2 = g.sq(), g_ref.sq()
            dgrad = 0.0 if n1 == 0.0 or n2 == 0.0 else g.diff(g_ref).sq() / math.sqrt(n1 * n2)
            dout = float(np.max(np.abs(out2 - out)))
            if math.isfinite(dgrad) and math.isfinite(dout) and (
                    dgrad < max_dgrad and dout < max_dout / alpha):
                if dgrad < max_dgrad / 2 and dout < max_dout / alpha / 2 and dt_try == dt:
                    dt *= 1.1
                break
            rejected += 1
            dt /= 10.0
            if rejected >= max_rejections:
                run.status = "stalled"
                break
        if run.status:
            break
        th, out, u = th2, out2, u2
        g = gradient(arch, th, X, u)  # the flow follows the true gradient
        step += 1
        t += dt_try
        run.dt.append(dt_try)
        run.dgrad.append(dgrad)
        run.dout.append(dout)
        run.rejected.append(rejected)
        run.loss.append(total_loss(out))
    run.params, run.out, run.steps, run.time = th, out, step, t
    return run


def kernel_soft_hinge_flow(K, y, *, alpha: float = 1.0, beta: float = 20.0,
                           max_dgrad: float = 1e-4, max_dout: float = 0.1,
                           max_steps: int | None = None) -> tuple[np.ndarray, int, list[float]]:
    """The same rule for the kernel machine ``F = K a`` and the soft hinge.

    ``a`` follows ``da/dt = -v`` with ``v_mu = l'(alpha y_mu F_mu) y_mu / p``; in the
    linearised network's parameter metric ``|g|^2 = v^T K v``, and the soft hinge is
    smooth, so ``g'`` is the plain gradient at the tentative point. Returns the
    coefficients, the number of accepted steps and the accepted ``dt``.
    """
    K = np.asarray(K, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    p = len(y)
    a = np.zeros(p)
    dt, steps, dts = 1.0, 0, []
    while (alpha * y * (K @ a) < 1.0).any():
        if max_steps is not None and steps >= max_steps:
            break
        F = K @ a
        v = loss_derivative(alpha * y * F, "soft_hinge", beta) * y / p
        while True:
            a2 = a - dt * v
            F2 = K @ a2
            v2 = loss_derivative(alpha * y * F2, "soft_hinge", beta) * y / p
            n1, n2, d2 = v @ K @ v, v2 @ K @ v2, (v - v2) @ K @ (v - v2)
            dgrad = 0.0 if n1 <= 0 or n2 <= 0 else max(d2, 0.0) / math.sqrt(n1 * n2)
            dout = float(np.max(np.abs(F2 - F)))
            if dgrad < max_dgrad and dout < max_dout / alpha:
                dts.append(dt)
                if dgrad < max_dgrad / 2 and dout < max_dout / alpha / 2:
                    dt *= 1.1
                break
            dt /= 10.0
        a = a2
        steps += 1
    return a, steps, dts
