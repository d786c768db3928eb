"""Geometric compression of the first-layer weights: lambda, t* and stretched inputs.

* :func:`compression` -- lambda of the first-layer weights, in three conventions.
* :func:`t_star`, :func:`compression_at` -- the paper's checkpoint t* (the first
  where more than :data:`T_STAR_FRACTION` of the training margins are >= 1) and
  lambda there.
* :func:`stretch_inputs` -- the inputs with the uninformative coordinates divided
  by lambda (the stretched-kernel experiment).

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: the compression lambda of the first-layer weights.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from kernelcomp import datasets, io
from kernelcomp._validation import (
    check_choice,
    check_matrix,
    check_real,
)


def _first_layer(net: Any) -> np.ndarray:
    if hasattr(net, "weights"):
        weights = net.weights
        try:
            W = weights[0]
        except (TypeError, IndexError, KeyError) as exc:
            raise TypeError(
                "net.weights must be a sequence of layer weight matrices with the first "
                f"layer at index 0, got {type(weights).__name__}"
            ) from exc
        name = "net.weights[0]"
    elif isinstance(net, np.ndarray | list | tuple):
        W, name = net, "net"
    else:
        raise TypeError(
            "net must be a network with .weights (e.g. kc.FCNetwork) or a (h, d) "
            f"first-layer weight matrix, got {type(net).__name__}"
        )
    return check_matrix(W, name, dtype=np.float64)


def _informative_mask(informative: Any, d: int) -> np.ndarray:
    if isinstance(informative, numbers.Integral) and not isinstance(informative, bool):
        informative = [informative]
    arr = np.asarray(informative)
    if arr.dtype.kind == "b":
        if arr.shape != (d,):
            raise ValueError(
                f"informative as a boolean mask must have shape ({d},) (one entry per input "
                f"direction), got {arr.shape}"
            )
        mask = arr.copy()
    else:
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise TypeError(
                "informative must be an int, a sequence of input-direction indices or a "
                f"boolean mask of length {d}, got {arr.dtype} array of shape {arr.shape}"
            )
        idx = arr.astype(np.int64)
        bad = idx[(idx < -d) | (idx >= d)]
        if bad.size:
            raise ValueError(
                f"informative indices must lie in [0, {d}) (the input dimension), got "
                f"{bad.tolist()}"
            )
        idx = np.where(idx < 0, idx + d, idx)
        if np.unique(idx).size != idx.size:
            raise ValueError(f"informative has repeated indices: {arr.tolist()}")
        mask = np.zeros(d, dtype=bool)
        mask[idx] = True
    if not mask.any():
        raise ValueError("informative is empty; at least one informative direction is needed")
    if mask.all():
        raise ValueError(
            f"informative covers all {d} input directions; at least one uninformative "
            "direction is needed"
        )
    return mask


#: conventions of :func:`compression`
COMPRESSION_CONVENTIONS = ("rms", "figures", "norm")


def compression(net: Any, informative: Any, *, convention: str = "rms") -> float:
    """Compression ``lambda`` of the first-layer weights.

    With ``w_j = sqrt(<W_nj^2>)`` the RMS over the first layer's neurons ``n``
    of the weights on input direction ``j``, ``par`` the informative and
    ``perp`` the other directions:

    * ``"rms"`` (default): ``sqrt(mean_{par} w_j^2 / mean_{perp} w_j^2)``;
    * ``"figures"``: ``mean_{par} w_j / mean_{perp} w_j``, the convention of the
      paper's figures (for the stripe ``w_1 / mean_{j >= 2} w_j``); it differs
      from ``"rms"`` only by a mean of RMS values against an RMS;
    * ``"norm"``: ``sqrt(mean_{par} w_j^2 / sum_{perp} w_j^2)``, the authors'
      second convention (the informative weight against the norm of the
      uninformative ones), smaller by ``sqrt(d_perp)``.

    At initialisation (isotropic weights) ``"rms"`` and ``"figures"`` give
    ``lambda ~ 1``; a net that becomes insensitive to the uninformative
    directions has ``lambda >> 1``. A global rescaling of the weights (the
    parameterization's multipliers) cancels.

    Parameters
    ----------
    net : FCNetwork-like or array-like of shape (h, d)
        Anything with ``.weights[0]`` of shape ``(h, d)`` (e.g. ``kc.FCNetwork``),
        or the first-layer weight matrix itself.
    informative : int, sequence of int, or bool array of shape (d,)
        The informative input directions (e.g. ``[0]`` for the stripe, ``[0, 1]``
        for the cylinder).
    convention : {"rms", "figures", "norm"}, default "rms"
        Which of the conventions above.

    Returns
    -------
    float
        ``lambda``; ``inf`` when the uninformative weights are exactly zero.

    Raises
    ------
    TypeError
        If ``net`` has no first-layer weights or ``informative`` is not indices
        or a mask.
    ValueError
        If an index is out of range or repeated, if ``informative`` is empty or
        covers every direction, if all weights are zero, if the weights are
        not finite, or if ``convention`` is unknown.

    References
    ----------
    Paccolat et al. (2021), §5 and figure 3: compression of the first-layer
    weights, ``lambda = w_par / w_perp`` from the RMS weights along the
    informative and uninformative directions.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import compression
    >>> W = np.array([[4.0, 1.0, -1.0], [-4.0, 1.0, 1.0]])
    >>> compression(W, informative=[0])
    4.0
    >>> round(compression(W, informative=[0], convention="norm"), 6)  # 4 / sqrt(2)
    2.828427
    """
    convention = check_choice(convention, "convention", COMPRESSION_CONVENTIONS)
    W = _first_layer(net)
    mask = _informative_mask(informative, W.shape[1])
    sq = np.mean(W * W, axis=0)  # w_j^2 = <W_nj^2> over neurons
    if convention == "figures":
        rms = np.sqrt(sq)
        par, perp = float(rms[mask].mean()), float(rms[~mask].mean())
    else:
        par = float(sq[mask].mean())
        perp = float(sq[~mask].sum() if convention == "norm" else sq[~mask].mean())
    if perp == 0.0:
        if par == 0.0:
            raise ValueError("the first-layer weights are all zero; lambda is undefined")
        return math.inf
    return par / perp if convention == "figures" else math.sqrt(par / perp)


#: the paper's t*: the first checkpoint where more than this fraction of the
#: training margins are >= 1
T_STAR_FRACTION = 0.1


def _run_checkpoints(run: Any) -> tuple[list[float], list[Any], dict[str, Any]]:
    """(fitted fraction of each checkpoint, a network getter each, run config)."""
    if isinstance(run, str | os.PathLike):
        run = io.open_run(run)
    if isinstance(run, io.Run):
        fractions = []
        for ck in run.checkpoints:
            if ck.margins is None:
                raise ValueError(
                    f"{run.path}: checkpoint {ck.index} stores no margins; t* cannot be found"
                )
            fractions.append(float(np.mean(np.asarray(ck.margins) >= 1.0)))
        return fractions, [lambda ck=ck: ck.network for ck in run.checkpoints], run.config
    checkpoints = getattr(run, "checkpoints", None)
    if checkpoints is None or not hasattr(run, "net0"):
        raise TypeError(
            "run must be a kc.training.train result, a kc.io.open_run result or the path of "
            f"a run file, got {type(run).__name__}"
        )
    fractions = [float(ck.fitted_fraction) for ck in checkpoints]
    if any(math.isnan(f) for f in fractions):
        raise ValueError("the run's checkpoints do not record their fitted fraction")
    return fractions, [lambda ck=ck: ck.net for ck in checkpoints], getattr(run, "config", {})


def t_star(run: Any, margin_fraction: float = T_STAR_FRACTION) -> int:
    """Index of the checkpoint ``t*``.

    ``t*`` is the first checkpoint with more than ``margin_fraction`` of the
    training margins ``alpha y Ft >= 1``.

    Parameters
    ----------
    run : TrainResult, kc.io.Run, str or os.PathLike
        A result of :func:`kernelcomp.training.train`, a run read by
        :func:`kernelcomp.io.open_run`, or the path of a run file.
    margin_fraction : float, default 0.1
        The fraction, in [0, 1).

    Returns
    -------
    int
        Index into the run's checkpoints.

    Raises
    ------
    ValueError
        If no checkpoint passes ``margin_fraction`` (the run stopped first), or
        the checkpoints lack margins.

    References
    ----------
    Paccolat et al. (2021), §5: the compression is read at ``t*``, when 10 % of
    the training points are fitted.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(64, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [50], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> run = kc.training.train(net, X, y, alpha=1e-2)
    >>> k = t_star(run)
    >>> run.checkpoints[k].fitted_fraction > 0.1 >= run.checkpoints[k - 1].fitted_fraction
    True
    """
    margin_fraction = check_real(margin_fraction, "margin_fraction", minimum=0.0)
    if margin_fraction >= 1:
        raise ValueError(f"margin_fraction must be in [0, 1), got {margin_fraction}")
    fractions, _, _ = _run_checkpoints(run)
    for i, f in enumerate(fractions):
        if f > margin_fraction:
            return i
    best = max(fractions) if fractions else 0.0
    raise ValueError(
        f"no checkpoint has more than {margin_fraction:g} of the margins >= 1 (at most "
        f"{best:.3g}): the run stopped before t*"
    )


def compression_at(run: Any, margin_fraction: float = T_STAR_FRACTION, *,
                   informative: Any = None, convention: str = "figures") -> float:
    """Compression ``lambda(t*)`` of a training run, where the paper reads it.

    ``t*`` is the first checkpoint at which more than ``margin_fraction`` of
    the training points have margin ``alpha y Ft >= 1`` (:func:`t_star`); the
    compression at the end of training (every margin >= 1) is a later,
    over-fitting phase and can be far smaller. :func:`kernelcomp.training.train`
    takes a checkpoint at each of its ``margin_fractions`` (0.1 among them),
    so ``t*`` is read at ``t*``.

    Parameters
    ----------
    run : TrainResult, kc.io.Run, str or os.PathLike
        As in :func:`t_star`.
    margin_fraction : float, default 0.1
    informative : int, sequence of int or bool mask, optional
        The informative directions; by default from the run's configuration
        (its ``dataset``, ``d`` and ``d_par``, as ``kernelcomp train`` and the
        demo record them).
    convention : {"figures", "rms", "norm"}, default "figures"
        As in :func:`compression`; the paper's figures use ``"figures"``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If no checkpoint passes ``margin_fraction``, ``informative`` is needed
        and not given, or the networks were not kept (``keep_networks=False``).

    References
    ----------
    Paccolat et al. (2021), §5 and figure 3 (``lambda`` at ``t*`` against ``p``,
    next to ``sqrt(p)``).

    Examples
    --------
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(64, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [50], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> run = kc.training.train(net, X, y, alpha=1e-2)
    >>> compression_at(run, informative=[0]) > 1
    True
    """
    k = t_star(run, margin_fraction)
    _, nets, config = _run_checkpoints(run)
    if informative is None:
        if config.get("dataset") not in datasets.DATASETS or "d" not in config:
            raise ValueError(
                "informative is required: the run's configuration does not name a "
                "kernelcomp dataset and its dimension"
            )
        informative = datasets.informative_dims(config["dataset"], int(config["d"]),
                                                int(config.get("d_par", 2)))
    net = nets[k]()
    if net is None:
        raise ValueError("the run kept no networks (keep_networks=False); use its run file")
    return compression(net, informative, convention=convention)


def stretch_inputs(X: Any, informative: Any, lam: float) -> np.ndarray:
    """Divide the uninformative coordinates of ``X`` by ``lam``: the stretched inputs.

    The paper's test of whether compression alone explains the feature
    regime's gain: a kernel machine with the *initial* NTK trained on
    stretched inputs, ``lam = lambda(t*)`` (:func:`compression_at`), against
    the initial and the final NTK machines on the raw ones.

    Parameters
    ----------
    X : array-like of shape (n, d)
    informative : int, sequence of int or bool mask
    lam : float
        The stretch, > 0.

    Returns
    -------
    ndarray of shape (n, d)
        A new float64 array.

    Raises
    ------
    ValueError
        For invalid inputs or ``lam <= 0``.

    References
    ----------
    Paccolat et al. (2021), §5 (the stretched kernel).

    Examples
    --------
    >>> import numpy as np
    >>> stretch_inputs(np.ones((1, 3)), [0], 4.0)
    array([[1.  , 0.25, 0.25]])
    """
    X = check_matrix(X, "X", dtype=np.float64)
    lam = check_real(lam, "lam")
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    mask = _informative_mask(informative, X.shape[1])
    out = X.copy()
    out[:, ~mask] /= lam
    return out
