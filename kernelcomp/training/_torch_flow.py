"""The paper's adaptive gradient flow for any PyTorch module (extra ``kernelcomp[torch]``).

:func:`train_torch` trains ``F = alpha (f - f0)`` of a ``torch.nn.Module`` ``f``
(``f0`` the module at initialisation) on the loss
``(1/p) sum_mu l(alpha y_mu Ft(x_mu)) / alpha`` with exactly the engine of
:func:`kernelcomp.training.train`: the same step control (a tentative step
``theta - dt g`` is accepted when ``dgrad = |g - g'|^2 / (|g| |g'|) < 1e-4`` and
``dout = max |Ft - Ft'| < 0.1 / alpha``; ``dt`` grows by 1.1 when both are below
half their limits, else the step is undone and ``dt`` divided by 10), the same
losses (hinge, soft hinge ``softplus_beta(1 - z)``), the same stop rule (every
training margin ``alpha y Ft >= 1``, a time/step/wall limit, NaN) and the same
constants (:data:`kernelcomp.training.MAX_DGRAD`, ``MAX_DOUT``). The module is a
black box: its trainable parameters are one flat float64 vector, outputs and
gradients come from ``torch.func.functional_call`` and autograd, full batch.

The step is the explicit one (``integrator="euler"`` of ``kc.training``): the
paper's rule as written, exact for the soft hinge and a smooth activation (the
MNIST protocol); with the hinge the kink is handled as by ``"euler"`` (the
step control's reference gradient keeps the step's ``l'``).

Cost of one tentative step: one forward pass with its autograd graph kept, and
one backward pass through it (the graph of the accepted step's forward pass is
reused for its gradient), i.e. about the cost of one training epoch of the module
on the ``p`` points.

PyTorch is imported inside the functions of this module only.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001, §3, §5 and appendix A.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelcomp._torch_ntk import _import_torch
from kernelcomp._validation import check_bool, check_int, check_matrix
from kernelcomp._validation import check_labels as _check_labels
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
from kernelcomp.training._network_flow import (
    MARGIN_FRACTIONS,
    _check_checkpoints,
    _check_fractions,
    _Classifier,
    _geometric_schedule,
)

__all__ = ["TorchCheckpoint", "TorchTrainResult", "train_torch"]

#: default samples per forward/backward batch (the graphs of all batches are kept)
BATCH: int = 4096


@dataclass
class TorchCheckpoint:
    """One checkpoint of :func:`train_torch`.

    Attributes
    ----------
    step, time, loss, train_error : int, float, float, float
        As in :class:`kernelcomp.training.FlowState`.
    test_error : float or None
        Fraction of test points with ``y Ft <= 0`` (None without a test set).
    fitted_fraction : float
        Fraction of training margins ``alpha y Ft >= 1`` (``t*`` is the first
        checkpoint where it exceeds 0.1).
    reason : str
        Why it was taken (``"init"``, ``"step"``, ``"fitted>0.1"``, ``"final"``,
        joined by ``+``).
    module : torch.nn.Module or None
        The module at that point (None with ``keep_modules=False``, except at
        the initial and final checkpoints of the result's ``module0``/``module``).
    """

    step: int
    time: float
    loss: float
    train_error: float
    test_error: float | None
    fitted_fraction: float
    reason: str
    module: Any = None


@dataclass
class TorchTrainResult(_Classifier):
    """The outcome of :func:`train_torch`.

    Attributes
    ----------
    module, module0 : torch.nn.Module
        The trained module ``f`` and the one at initialisation ``f0`` (copies in
        float64, eval mode; the input module is not modified).
    alpha : float
    center : bool
        Whether the model is ``alpha (f - f0)`` (True, the paper's) or ``alpha f``.
    status : str
        Why training stopped (see :class:`kernelcomp.training.FlowState`).
    final : FlowState
    history : dict of str to numpy.ndarray
        Per accepted step: ``step``, ``time``, ``dt``, ``dgrad``, ``dout``,
        ``loss``, ``train_error``, ``n_unsat``, ``rejected``.
    checkpoints : list of TorchCheckpoint
    train_output : numpy.ndarray of shape (p,)
        ``Ft`` on the training points at the end.
    input_shape : tuple of int
        The shape one sample is reshaped to.
    wall_time : float
        Seconds spent training.
    """

    module: Any
    module0: Any
    alpha: float
    center: bool
    status: str
    final: FlowState
    history: dict[str, np.ndarray]
    checkpoints: list[TorchCheckpoint] = field(default_factory=list)
    train_output: np.ndarray = field(default_factory=lambda: np.zeros(0))
    input_shape: tuple[int, ...] = ()
    wall_time: float = 0.0

    def decision_function(self, X: Any) -> np.ndarray:
        """The trained model ``F(x) = alpha (f(x) - f0(x))`` (``alpha f`` if not centred).

        Parameters
        ----------
        X : array-like of shape ``(n, prod(input_shape))`` or ``(n, *input_shape)``

        Returns
        -------
        numpy.ndarray of shape (n,)
        """
        X = _as_inputs(X, self.input_shape)
        out = _evaluate(self.module, X, self.input_shape)
        if self.center:
            out = out - _evaluate(self.module0, X, self.input_shape)
        return self.alpha * out



def _as_inputs(X: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``X`` as a float64 ``(n, prod(shape))`` matrix (``(n, *shape)`` accepted)."""
    arr = np.asarray(X)
    d = int(math.prod(shape))
    if arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape):
        arr = arr.reshape(arr.shape[0], d)
    return check_matrix(arr, "X", dtype=np.float64, n_features=d)


def _evaluate(module: Any, X: np.ndarray, shape: tuple[int, ...], batch: int = BATCH) -> np.ndarray:
    """``module(X)`` as a float64 vector, in batches, without a graph."""
    torch = _import_torch("train_torch")
    outs = []
    with torch.no_grad():
        for lo in range(0, X.shape[0], batch):
            xb = torch.from_numpy(X[lo:lo + batch]).reshape(-1, *shape)
            outs.append(module(xb).reshape(-1).numpy())
    return np.concatenate(outs) if outs else np.zeros(0)


def _input_shape(module: Any, input_shape: Any, d: int) -> tuple[int, ...]:
    if input_shape is None:
        return (d,)
    if isinstance(input_shape, int | np.integer) and not isinstance(input_shape, bool):
        input_shape = (int(input_shape),)
    try:
        shape = tuple(check_int(s, "input_shape", minimum=1) for s in input_shape)
    except TypeError as exc:
        raise TypeError(
            f"input_shape must be an int or a tuple of ints, got {input_shape!r}"
        ) from exc
    if math.prod(shape) != d:
        raise ValueError(f"input_shape {shape} has {math.prod(shape)} entries, X has {d} columns")
    return shape


def _module_problem(module: Any, X: np.ndarray, out0: np.ndarray, shape: tuple[int, ...],
                    batch: int) -> tuple[_Problem, Any, Any]:
    """The engine's view of a torch module: parameters as one flat float64 vector.

    Returns the problem, the initial flat vector and ``load(vector) -> module``.
    """
    torch = _import_torch("train_torch")
    from torch.func import functional_call

    names = [n for n, p in module.named_parameters() if p.requires_grad]
    tensors = dict(module.named_parameters())
    shapes = [tuple(tensors[n].shape) for n in names]
    sizes = [int(math.prod(s)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    theta0 = torch.cat([tensors[n].detach().reshape(-1) for n in names]).clone()
    xs = [torch.from_numpy(X[lo:lo + batch]).reshape(-1, *shape)
          for lo in range(0, X.shape[0], batch)]
    ref = torch.from_numpy(out0)
    cache: dict[str, Any] = {}

    def unflat(v: Any) -> dict[str, Any]:
        return {n: v[offsets[i]:offsets[i + 1]].view(shapes[i]) for i, n in enumerate(names)}

    def outputs(v: Any) -> list[Any]:
        pv = unflat(v)
        outs = [functional_call(module, pv, (xb,)).reshape(-1) for xb in xs]
        if outs and outs[0].shape[0] != xs[0].shape[0]:
            raise ValueError(
                f"the module must have a single output per sample, got {outs[0].shape[0]} "
                f"outputs for a batch of {xs[0].shape[0]}"
            )
        return outs

    def forward(v: Any) -> np.ndarray:
        # keep the graph: the accepted step's gradient is taken through it
        leaf = v.detach().requires_grad_(True)
        with torch.enable_grad():
            outs = outputs(leaf)
        cache.clear()
        cache.update(v=v, leaf=leaf, outs=outs)
        return (torch.cat([o.detach() for o in outs]) - ref).numpy()

    def backward(v: Any, u: np.ndarray, rows: np.ndarray | None) -> Any:
        # gradient of sum_mu u_mu Ft_mu (u is zero outside rows: rows need no special case)
        if cache.get("v") is not v:
            forward(v)
        leaf, outs = cache["leaf"], cache["outs"]
        ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64))
        grads, lo = [], 0
        for o in outs:
            grads.append(ut[lo:lo + o.shape[0]])
            lo += o.shape[0]
        (g,) = torch.autograd.grad(outs, leaf, grad_outputs=grads, retain_graph=True)
        return g.detach()

    def step(v: Any, g: Any, dt: float) -> Any:
        return v - dt * g

    def norms(g1: Any, g2: Any) -> tuple[float, float, float]:
        return float(g1 @ g1), float(g2 @ g2), float((g1 - g2) @ (g1 - g2))

    def sub(g1: Any, g2: Any) -> Any:
        return g1 - g2

    def load(v: Any) -> Any:
        out = copy.deepcopy(module)
        with torch.no_grad():
            for n, t in unflat(v.detach()).items():
                out.get_parameter(n).copy_(t)
        return out

    return _Problem(forward, backward, step, norms, sub), theta0, load


def _check_data(module: Any, X: Any, y: Any, X_test: Any, y_test: Any,
                input_shape: Any) -> tuple[Any, ...]:
    """(X, y, X_test, y_test, shape of one sample) of :func:`train_torch`, checked."""
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"X must have shape (p, d) or (p, *input_shape), got {X.shape}")
    shape = _input_shape(module, input_shape, int(math.prod(X.shape[1:])))
    X = _as_inputs(X, shape)
    y = _check_labels(y, X.shape[0])
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test = _as_inputs(X_test, shape)
        y_test = _check_labels(y_test, X_test.shape[0], "y_test")
    return X, y, X_test, y_test, shape


def _initial(module: Any, torch: Any, X: np.ndarray, X_test: np.ndarray | None,
             shape: tuple[int, ...], batch: int, center: bool) -> tuple[Any, Any, Any]:
    """The float64 copy ``f0`` of the module and its outputs on X and X_test (0 uncentred)."""
    net0 = copy.deepcopy(module).to(torch.float64).eval()
    for prm in net0.parameters():
        prm.grad = None
    out0 = _evaluate(net0, X, shape, batch) if center else np.zeros(X.shape[0])
    out0_test = None
    if X_test is not None:
        out0_test = (_evaluate(net0, X_test, shape, batch) if center
                     else np.zeros(X_test.shape[0]))
    return net0, out0, out0_test


def train_torch(
    module: Any,
    X: Any,
    y: Any,
    *,
    alpha: float,
    loss: str = "soft_hinge",
    beta: float = SOFT_HINGE_BETA,
    input_shape: Any = None,
    X_test: Any = None,
    y_test: Any = None,
    checkpoints: int | Sequence[int] = 4,
    margin_fractions: Sequence[float] = MARGIN_FRACTIONS,
    center: bool = True,
    max_time: float = math.inf,
    max_steps: int | None = None,
    max_wall: float | None = None,
    max_dgrad: float = MAX_DGRAD,
    max_dout: float = MAX_DOUT,
    keep_modules: bool = False,
    batch_size: int = BATCH,
    callback: Any = None,
) -> TorchTrainResult:
    """Train a torch module by the paper's full-batch adaptive gradient flow.

    The rule, constants and stop criterion are those of
    :func:`kernelcomp.training.train` (see the module docstring); only the
    model differs: any ``torch.nn.Module`` with one output per sample, computed
    in float64 (a float64 deep copy; the input module is not modified).

    Parameters
    ----------
    module : torch.nn.Module
        The network at initialisation, mapping ``(b, *input_shape)`` to ``(b,)``
        or ``(b, 1)``. Its trainable parameters (``requires_grad``) are trained;
        it is used in eval mode (no dropout, running BatchNorm statistics).
    X : array-like of shape ``(p, prod(input_shape))`` or ``(p, *input_shape)``
        Training inputs.
    y : array-like of shape (p,)
        Labels in {-1, +1}.
    alpha : float
        Output scale of ``F = alpha (f - f0)``: ``alpha << 1`` is the feature
        regime of a 1/h readout, ``alpha >> 1`` the lazy one.
    loss : {"soft_hinge", "hinge"}, default "soft_hinge"
        The loss ``l``.
    beta : float, default 20.0
        Sharpness of the soft hinge (the paper: 20, and 3 on MNIST).
    input_shape : int or tuple of int, optional
        Shape one sample is reshaped to (e.g. ``(1, 28, 28)``); default ``(d,)``.
    X_test, y_test : array-like, optional
        A test set, evaluated at every checkpoint.
    checkpoints : int or sequence of int, default 4
        Checkpoints per decade of steps, or explicit step numbers.
    margin_fractions : sequence of float, default (0.05, 0.1, 0.25, 0.5, 0.9)
        A checkpoint at the first step where more than each of these fractions
        of the training margins is ``>= 1`` (0.1: the paper's ``t*``).
    center : bool, default True
        Train ``alpha (f - f0)`` (True) or ``alpha f``.
    max_time, max_steps, max_wall : optional
        Limits on the flow time, the accepted steps and the seconds.
    max_dgrad, max_dout : float, default 1e-4, 0.1
        Step control: accept when ``dgrad < max_dgrad`` and ``dout < max_dout / alpha``.
    keep_modules : bool, default False
        Keep a copy of the module at every checkpoint.
    batch_size : int, default 4096
        Samples per forward batch (the graphs of all batches of the training
        set are held until the backward pass).
    callback : callable, optional
        Called as ``callback(state)`` with every accepted
        :class:`~kernelcomp.training.FlowState` (progress reports).

    Returns
    -------
    TorchTrainResult

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError
        If ``module`` is not a ``torch.nn.Module`` or an option has the wrong type.
    ValueError
        On malformed data, labels other than ±1, a module with several outputs
        per sample, or an out-of-range option.

    References
    ----------
    Paccolat et al. (2021), §3 and appendix A (training), §5 (MNIST: soft hinge, beta = 3).

    Examples
    --------
    >>> import numpy as np, pytest
    >>> torch = pytest.importorskip("torch")
    >>> from kernelcomp.training import train_torch
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 20), torch.nn.Tanh(), torch.nn.Linear(20, 1))
    >>> X = np.random.default_rng(0).standard_normal((20, 3)); y = np.sign(X[:, 0])
    >>> res = train_torch(net, X, y, alpha=1.0, loss="soft_hinge", beta=3.0)
    >>> res.status, res.test_error(X, y)
    ('converged', 0.0)
    """
    torch = _import_torch("train_torch")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    X, y, X_test, y_test, shape = _check_data(module, X, y, X_test, y_test, input_shape)
    c = _control(alpha, loss, beta, max_dgrad, max_dout, max_time, max_steps, max_wall, "euler")
    fractions = _check_fractions(margin_fractions, "margin_fractions")
    batch = check_int(batch_size, "batch_size", minimum=1)
    steps = _check_checkpoints(checkpoints)
    schedule = _geometric_schedule(steps) if isinstance(steps, int) else iter(steps)
    center = check_bool(center, "center")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")

    net0, out0, out0_test = _initial(module, torch, X, X_test, shape, batch, center)
    problem, theta, load = _module_problem(net0, X, out0, shape, batch)

    records: list[TorchCheckpoint] = []
    states: list[FlowState] = []
    next_step = next(schedule, None)
    pending_fit = list(fractions)
    p = X.shape[0]
    out = out0
    wall0 = time.perf_counter()
    for state, theta, out in _flow(problem, theta, y, c):  # noqa: B007, B020
        states.append(state)
        if callback is not None:
            callback(state)
        reasons = ["init"] if state.step == 0 else []
        while next_step is not None and next_step <= state.step:
            if next_step == state.step and state.step > 0:
                reasons.append("step")
            next_step = next(schedule, None)
        fitted = 1.0 - state.n_unsat / p
        while pending_fit and fitted > pending_fit[0]:
            reasons.append(f"fitted>{pending_fit.pop(0):g}")
        if state.status is not None:
            reasons.append("final")
        if not reasons:
            continue
        snap = load(theta) if (keep_modules or X_test is not None) else None
        test_err = None
        if X_test is not None:
            ft = _evaluate(snap, X_test, shape, batch) - out0_test
            test_err = float(np.mean(y_test * ft <= 0))
        records.append(TorchCheckpoint(state.step, state.time, state.loss, state.train_error,
                                       test_err, fitted, "+".join(reasons),
                                       snap if keep_modules else None))
    final = states[-1]
    return TorchTrainResult(
        module=load(theta).eval(), module0=net0, alpha=c.alpha, center=bool(center),
        status=str(final.status), final=final, history=_history(states), checkpoints=records,
        train_output=np.asarray(out, dtype=np.float64).copy(), input_shape=shape,
        wall_time=time.perf_counter() - wall0,
    )
