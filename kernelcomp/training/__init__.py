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
checkpoints into a run file as it goes; :func:`train_torch` runs the same flow on
any ``torch.nn.Module`` (the optional PyTorch extra); :func:`kernel_gradient_flow`
runs it for the kernel machine ``F = sum_mu a_mu K(x, x_mu)`` on a frozen Gram.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001, §3 and appendix A.
Geiger, Spigler, Jacot, Wyart, *Disentangling feature and lazy training in deep
neural networks*, J. Stat. Mech. (2020) 113301.
"""


# The documented constants (step control, integrators) stay importable from here
# as before the split; they are not in __all__.
from kernelcomp.training._engine import (
    DT_GROW,  # noqa: F401
    DT_SHRINK,  # noqa: F401
    DT_START,  # noqa: F401
    GROW_BELOW,  # noqa: F401
    MAX_DGRAD,  # noqa: F401
    MAX_DOUT,  # noqa: F401
    MAX_REJECTIONS,  # noqa: F401
    SOFT_HINGE_BETA,  # noqa: F401
    STALL_FRACTION,  # noqa: F401
    STALL_STEPS,  # noqa: F401
    STATUSES,  # noqa: F401
    FlowState,
    loss_derivative,
    loss_value,
)
from kernelcomp.training._engine import INTEGRATORS as _INTEGRATORS
from kernelcomp.training._engine import LOSSES as _LOSSES
from kernelcomp.training._integrators import KINK_TARGET, STATIONARY  # noqa: F401
from kernelcomp.training._kernel_flow import KernelFlowResult, kernel_gradient_flow
from kernelcomp.training._network_flow import (
    MARGIN_FRACTIONS,  # noqa: F401
    CheckpointRecord,
    TrainResult,
    train,
)
from kernelcomp.training._torch_flow import train_torch

#: supported losses ("softhinge" is accepted as an alias of "soft_hinge")
LOSSES: tuple[str, ...] = _LOSSES
#: integrators of the flow: "sliding" (default) treats the hinge's kink implicitly;
#: "euler" is the paper's literal explicit step everywhere
INTEGRATORS: tuple[str, ...] = _INTEGRATORS

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
    "train_torch",
]
