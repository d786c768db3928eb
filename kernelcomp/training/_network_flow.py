"""Training an FCNetwork by gradient flow, with checkpoints and a run file."""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelcomp._parallel import progress as progress_bar
from kernelcomp._validation import (
    check_bool,
    check_choice,
    check_int,
    check_labels,
    check_matrix,
    check_real,
)
from kernelcomp.io import RunWriter
from kernelcomp.network import FCNetwork
from kernelcomp.training._engine import (
    MAX_DGRAD,
    MAX_DOUT,
    SOFT_HINGE_BETA,
    FlowState,
    _Control,
    _control,
    _history,
    _Problem,
)
from kernelcomp.training._integrators import _flow
from kernelcomp.training._network_hooks import (
    _fused_eligible,
    _fused_problem,
    _net_from_params,
    _network_problem,
    _params_of,
)

#: how :func:`train` runs a step: "fused" (one compiled pass), "numpy", or "auto"
METHODS: tuple[str, ...] = ("auto", "fused", "numpy")


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


class _Classifier:
    """``predict``, ``test_error`` and ``margins`` of a trained ``F`` (``decision_function``)."""

    def decision_function(self, X: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Labels ``sign F`` (``+1`` where ``F > 0``, ``-1`` elsewhere)."""
        return np.where(self.decision_function(X) > 0, 1.0, -1.0)

    def test_error(self, X: Any, y: Any) -> float:
        """Fraction of points with ``y F(x) <= 0`` (the paper's test error)."""
        F = self.decision_function(X)
        return float(np.mean(check_labels(y, len(F), "y") * F <= 0))

    def margins(self, X: Any, y: Any) -> np.ndarray:
        """``alpha y Ft(x)`` = ``y F(x)``; training stops when all are >= 1."""
        F = self.decision_function(X)
        return check_labels(y, len(F), "y") * F


@dataclass
class TrainResult(_Classifier):
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




def _geometric_schedule(per_decade: int) -> Iterator[int]:
    """Steps 0, 1, 2, ... spaced geometrically, ``per_decade`` per factor of 10."""
    yield 0
    last, k = 0, 0
    while True:
        last = max(last + 1, round(10.0 ** (k / per_decade)))
        k += 1
        yield last



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
    beta: float = SOFT_HINGE_BETA,
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
    adaptive step of the paper (see :mod:`kernelcomp.training`) until every training
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
        wrong type (``center``, ``force``, ``keep_networks`` and ``progress``
        take True or False only).
    ValueError
        If the data are malformed (shape, NaN, labels other than ±1), an option
        is out of range.
    FileExistsError
        If ``path`` exists and ``force`` is False.

    Every argument is checked before the run file is created: a call that
    raises one of the errors above leaves no file behind.

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
    setup = _setup(
        net, X, y, alpha=alpha, loss=loss, beta=beta, X_test=X_test, y_test=y_test,
        checkpoints=checkpoints, loss_milestones=loss_milestones,
        margin_fractions=margin_fractions, config=config, force=force, center=center,
        max_time=max_time, max_steps=max_steps, max_wall=max_wall, max_dgrad=max_dgrad,
        max_dout=max_dout, keep_networks=keep_networks, progress=progress, method=method,
        integrator=integrator,
    )  # every argument checked: nothing below fails on the caller's input
    problem, test_outputs = _problems(setup)
    policy = _CheckpointPolicy(setup.checkpoints, setup.milestones, setup.fractions,
                               setup.X.shape[0])
    records: list[CheckpointRecord] = []
    states: list[FlowState] = []
    params = _params_of(setup.net0)
    wall0 = time.perf_counter()
    # on an exception the writer's PATH.partial keeps the checkpoints so far
    with progress_bar(setup.progress, desc="train", unit="step", leave=False) as bar:
        writer = None if path is None else _open_run_file(setup, path)
        with writer if writer is not None else contextlib.nullcontext():
            for state, params, out in _flow(problem, params, setup.y,  # noqa: B020
                                            setup.control):
                states.append(state)
                if state.step:  # the bar counts steps; state 0 is the initial point
                    bar.update(1)
                if setup.progress and (state.step % 25 == 0 or state.status is not None):
                    bar.set_postfix(loss=f"{state.loss:.3g}", unsat=state.n_unsat)
                reasons = policy.reasons(state)
                if reasons:
                    records.append(_take_checkpoint(setup, state, params, out,
                                                    "+".join(reasons), test_outputs, writer))
            if writer is not None:  # inside the with: an error here keeps the partial file
                final = states[-1]
                writer.set_summary(status=final.status, steps=final.step, time=final.time,
                                   loss=final.loss, train_error=final.train_error,
                                   test_error=records[-1].test_error,
                                   wall_time=time.perf_counter() - wall0)
    final = states[-1]
    wall = time.perf_counter() - wall0
    result_path = None
    if writer is not None:
        result_path = writer.path  # closed (complete, renamed) by its with-block
    return TrainResult(
        net=_net_from_params(setup.net0, params), net0=setup.net0, alpha=setup.control.alpha,
        center=setup.center, status=str(final.status), final=final, history=_history(states),
        checkpoints=records, path=result_path, wall_time=wall, config=setup.settings,
    )


# ---------------------------------------------------------------------------
# train's parts: validation-first setup, the checkpoint policy, checkpoint taking
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Setup:
    """:func:`train`'s arguments, validated, and what follows from them without side effects."""

    net0: Any  # a copy of the input network
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    out0: np.ndarray  # f0 on X (zeros when not centred)
    out0_test: np.ndarray | None
    control: _Control
    center: bool
    checkpoints: int | tuple[int, ...]  # per decade, or the explicit steps (sorted, unique)
    milestones: tuple[float, ...]  # loss fractions, descending (first crossed first)
    fractions: tuple[float, ...]  # margin fractions, ascending
    fused: bool  # the compiled one-hidden-layer passes (else FCNetwork's BLAS passes)
    keep_networks: bool
    progress: bool
    force: bool
    settings: dict[str, Any]  # the configuration stored in the run file


def _check_checkpoints(checkpoints: Any) -> int | tuple[int, ...]:
    """Checkpoints per decade of steps (an int >= 1), or a sequence of step numbers."""
    if isinstance(checkpoints, bool):
        raise TypeError("checkpoints must be an int or a sequence of step numbers, got bool")
    if isinstance(checkpoints, numbers.Integral):
        return check_int(checkpoints, "checkpoints", minimum=1)
    if isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str):
        return tuple(sorted({check_int(s, f"checkpoints[{i}]", minimum=0)
                             for i, s in enumerate(checkpoints)}))
    raise TypeError(
        "checkpoints must be an int (per decade of steps) or a sequence of step "
        f"numbers, got {type(checkpoints).__name__}"
    )


def _setup(net: Any, X: Any, y: Any, *, alpha: Any, loss: Any, beta: Any, X_test: Any,
           y_test: Any, checkpoints: Any, loss_milestones: Any, margin_fractions: Any,
           config: Any, force: Any, center: Any, max_time: Any, max_steps: Any, max_wall: Any,
           max_dgrad: Any, max_dout: Any, keep_networks: Any, progress: Any, method: Any,
           integrator: Any) -> _Setup:
    """Check every argument of :func:`train` (creating no file) and derive the run's setup."""
    if not isinstance(net, FCNetwork):
        raise TypeError(f"net must be a kc.FCNetwork, got {type(net).__name__}")
    if net.n_outputs != 1:
        raise TypeError(f"net must have a single output, got n_outputs={net.n_outputs}")
    X = check_matrix(X, "X", dtype=np.float64, n_features=net.input_dim)
    y = check_labels(y, X.shape[0])
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test = check_matrix(X_test, "X_test", dtype=np.float64, n_features=net.input_dim)
        y_test = check_labels(y_test, X_test.shape[0], "y_test")
    c = _control(alpha, loss, beta, max_dgrad, max_dout, max_time, max_steps, max_wall,
                 integrator)
    milestones = tuple(reversed(_check_fractions(loss_milestones, "loss_milestones")))
    fractions = _check_fractions(margin_fractions, "margin_fractions")
    check_choice(method, "method", METHODS)
    if method == "fused" and not _fused_eligible(net):
        raise ValueError(
            "method='fused' needs a one-hidden-layer, single-output network with an "
            f"activation other than leaky_relu, got widths {net.widths}, "
            f"{net.n_outputs} output(s), activation {net.activation!r}"
        )
    schedule = _check_checkpoints(checkpoints)
    center = check_bool(center, "center")
    flags = {name: check_bool(value, name) for name, value in
             (("force", force), ("keep_networks", keep_networks), ("progress", progress))}
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    settings = {
        "alpha": c.alpha, "loss": c.loss, "beta": c.beta, "center": center,
        "max_dgrad": c.max_dgrad, "max_dout": float(max_dout), "max_time": c.max_time,
        "integrator": c.integrator,
        "max_steps": c.max_steps, "max_wall": c.max_wall,
        "loss_milestones": list(milestones), "margin_fractions": list(fractions),
        "checkpoints": schedule if isinstance(schedule, int) else list(checkpoints),
        "network": {"input_dim": net.input_dim, "widths": list(net.widths),
                    "activation": net.activation, "parameterization": net.parameterization},
        "p": int(X.shape[0]),
    }
    if config is not None:
        settings = {**config, **settings}
    if not math.isfinite(settings["max_time"]):
        settings["max_time"] = None
    net0 = net.copy()
    fused = method != "numpy" and _fused_eligible(net0)
    out0 = _initial_outputs(net0, X, center, fused)
    out0_test = None if X_test is None else _initial_outputs(net0, X_test, center, fused)
    return _Setup(net0, X, y, X_test, y_test, out0, out0_test, c, center, schedule, milestones,
                  fractions, fused, settings=settings, **flags)


def _initial_outputs(net0: Any, X: np.ndarray, center: bool, fused: bool) -> np.ndarray:
    """``f0(X)`` by the pass the flow evaluates ``f`` with (zeros when not centred).

    The same pass on the same parameters gives the same floats, so ``Ft = f - f0`` is
    exactly zero at the start: the fused and the numpy forward passes round
    differently, and a ``+-1e-17`` start would give each margin ``y Ft`` a random
    sign at the step-0 checkpoint (its errors read as noise instead of 1).
    """
    if not center:
        return np.zeros(X.shape[0])
    if fused:
        return _fused_problem(net0, X, np.zeros(X.shape[0])).forward(_params_of(net0))
    return net0(X)


def _problems(setup: _Setup) -> tuple[_Problem, Callable[[Any], np.ndarray] | None]:
    """The flow's hooks, and the test outputs ``Ft(X_test)`` from the parameters (or None)."""
    if not setup.fused:
        return _network_problem(setup.net0, setup.X, setup.out0), None
    problem = _fused_problem(setup.net0, setup.X, setup.out0)
    test_outputs = None
    if setup.X_test is not None:  # the compiled pass, 10x faster than net(X_test)
        test_outputs = _fused_problem(setup.net0, setup.X_test, setup.out0_test).forward
    return problem, test_outputs



def _open_run_file(setup: _Setup, path: Any) -> Any:
    return RunWriter(path, X_train=setup.X, y_train=setup.y, X_test=setup.X_test,
                     y_test=setup.y_test, config=setup.settings, force=setup.force)


class _CheckpointPolicy:
    """Which accepted states of the flow :func:`train` checkpoints, and why.

    ``reasons(state)``, called on every accepted state in order, lists the reasons
    that state is a checkpoint (see :class:`CheckpointRecord`): ``"init"`` at step 0,
    ``"step"`` on the schedule (geometric per decade, or the explicit steps),
    ``"loss<FRAC"`` the first time the loss falls below ``FRAC`` of its initial
    value, ``"fitted>FRAC"`` the first time more than ``FRAC`` of the ``p`` training
    margins are >= 1, and ``"final"`` on the last state; empty for no checkpoint.
    """

    def __init__(self, checkpoints: int | tuple[int, ...], milestones: tuple[float, ...],
                 fractions: tuple[float, ...], p: int) -> None:
        self.schedule: Iterator[int] = (
            _geometric_schedule(checkpoints) if isinstance(checkpoints, int)
            else iter(checkpoints)
        )
        self.next_step = next(self.schedule, None)
        self.pending_loss = list(milestones)  # descending: the next to cross comes first
        self.pending_fit = list(fractions)  # ascending
        self.p = p
        self.loss0: float | None = None

    def reasons(self, state: FlowState) -> list[str]:
        reasons = []
        if state.step == 0:
            self.loss0 = state.loss
            reasons.append("init")
        while self.next_step is not None and self.next_step <= state.step:
            if self.next_step == state.step and state.step > 0:
                reasons.append("step")
            self.next_step = next(self.schedule, None)
        pending = self.pending_loss
        while pending and self.loss0 is not None and state.loss < pending[0] * self.loss0:
            reasons.append(f"loss<{pending.pop(0):g}")
        fitted = 1.0 - state.n_unsat / self.p
        while self.pending_fit and fitted > self.pending_fit[0]:
            reasons.append(f"fitted>{self.pending_fit.pop(0):g}")
        if state.status is not None:
            reasons.append("final")
        return reasons


def _take_checkpoint(setup: _Setup, state: FlowState, params: list[np.ndarray],
                     out: np.ndarray, reason: str,
                     test_outputs: Callable[[Any], np.ndarray] | None,
                     writer: Any) -> CheckpointRecord:
    """Snapshot the network at ``state``, score the test set and append to the run file."""
    snapshot = _net_from_params(setup.net0, params)
    test_err = None
    if setup.X_test is not None:
        ft = (test_outputs(params) if test_outputs is not None
              else snapshot(setup.X_test) - setup.out0_test)
        test_err = float(np.mean(setup.y_test * ft <= 0))
    if writer is not None:
        writer.add_checkpoint(
            snapshot, step=state.step, time=state.time, loss=state.loss,
            train_error=state.train_error, test_error=test_err,
            margins=setup.control.alpha * setup.y * out, reason=reason, dt=state.dt,
            n_unsat=state.n_unsat,
        )
    return CheckpointRecord(
        state.step, state.time, state.loss, state.train_error, test_err, reason,
        snapshot if setup.keep_networks else None, 1.0 - state.n_unsat / setup.X.shape[0],
    )
