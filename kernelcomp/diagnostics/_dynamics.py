"""Training dynamics: the Gauss-Newton spectrum and the trajectory of the predictions.

* :func:`gauss_newton_spectrum` -- the spectrum of the Gauss-Newton matrix from the
  empirical NTK Gram, its effective number of parameters and its sloppiness.
* :func:`trajectory_embedding` -- intensive PCA (Quinn et al. 2019) of the
  checkpoints' predicted label distributions: the training trajectory in a few
  dimensions (Mao et al. 2024).

The figures of these results are in :mod:`kernelcomp.plotting`.

References
----------
.. [1] K. N. Quinn, C. B. Clement, F. De Bernardis, M. D. Niemack, J. P. Sethna,
   "Visualizing probabilistic models and data with Intensive Principal Component
   Analysis", PNAS 116 (2019) 13762: InPCA.
.. [2] J. Mao, I. Griniasty, H. K. Teoh, R. Ramesh, R. Yang, M. K. Transtrum,
   J. P. Sethna, P. Chaudhari, "The training process of many deep networks explores
   the same low-dimensional manifold", PNAS 121 (2024) e2310002121: InPCA of the
   predicted probabilities along training, Bhattacharyya distances summed over
   samples.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp import io
from kernelcomp._validation import (
    check_choice,
    check_gram,
    check_int,
    check_matrix,
    check_real,
)
from kernelcomp.diagnostics._kernel_pca import _fix_signs

#: :func:`trajectory_embedding` splits of a run file
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True, eq=False)
class GaussNewtonSpectrum:
    """Spectrum of the Gauss-Newton matrix, from :func:`gauss_newton_spectrum`.

    Attributes
    ----------
    eigenvalues : ndarray of shape (p,)
        The ``p`` eigenvalues of ``(1/p) D^{1/2} K D^{1/2}`` (float64), descending:
        the nonzero spectrum of the Gauss-Newton matrix ``(1/p) J^T D J`` (its
        other eigenvalues are 0).
    n_effective : int
        Number of eigenvalues above ``tol * eigenvalues[0]``: the effective
        number of parameters (0 when the matrix is zero).
    tol : float
        The relative threshold used.
    decades : float
        ``log10`` of the largest over the smallest eigenvalue above the
        threshold (0 for one such eigenvalue or none).
    log_spacing_mean, log_spacing_std : float
        Mean and standard deviation of the gaps between consecutive ``log10``
        eigenvalues above the threshold (NaN for fewer than two): a sloppy
        spectrum has roughly even gaps over many decades.
    """

    eigenvalues: np.ndarray
    n_effective: int
    tol: float
    decades: float
    log_spacing_mean: float
    log_spacing_std: float

    @property
    def n_samples(self) -> int:
        """Number of points ``p``."""
        return int(self.eigenvalues.shape[0])

    def __repr__(self) -> str:
        return (
            f"GaussNewtonSpectrum(n_samples={self.n_samples}, n_effective={self.n_effective}, "
            f"decades={self.decades:.3g})"
        )


def _curvature(values: Any, p: int) -> np.ndarray:
    """Per-point loss curvature: a number or a (p,) array, finite and >= 0."""
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        return np.full(p, check_real(values, "loss_curvature", minimum=0.0))
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"loss_curvature must hold real numbers, got dtype {arr.dtype}")
    if arr.shape != (p,):
        raise ValueError(
            f"loss_curvature must be a number or have shape ({p},) (one value per point of K), "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("loss_curvature contains NaN or infinity; all values must be finite")
    if (arr < 0).any():
        raise ValueError(
            "loss_curvature must be >= 0 (the second derivative of a convex loss), got "
            f"{float(arr.min()):.3g}"
        )
    return arr


def gauss_newton_spectrum(
    K: Any, loss_curvature: Any = None, *, tol: float | None = None
) -> GaussNewtonSpectrum:
    """Eigenvalues of the Gauss-Newton matrix from the empirical NTK Gram.

    With ``J`` the ``p x P`` Jacobian of the outputs on the ``p`` points and
    ``D = diag(l''(f(x_mu)))`` the loss curvature, the Gauss-Newton matrix
    ``G = (1/p) J^T D J`` (``P x P``) has the same nonzero eigenvalues as the
    ``p x p`` matrix ``(1/p) D^{1/2} K D^{1/2}``, ``K = J J^T`` the empirical NTK
    Gram: ``A^T A`` and ``A A^T`` share them for ``A = D^{1/2} J / sqrt(p)``. So the
    spectrum costs one ``p x p`` eigendecomposition, never the Jacobian.

    Parameters
    ----------
    K : array-like of shape (p, p)
        Symmetric NTK Gram on the points (e.g. ``kc.EmpiricalNTK(net)(X)``).
    loss_curvature : float or array-like of shape (p,), optional
        ``l''`` of the loss with respect to the output at each point, ``>= 0``;
        None: 1 everywhere (``D = I``, the square loss ``(f - y)^2 / 2``).
    tol : float, optional
        Relative threshold in ``(0, 1)``: eigenvalues above ``tol * lambda_max``
        count as parameters. Default ``p * eps`` (``eps`` of ``K``'s dtype).

    Returns
    -------
    GaussNewtonSpectrum
        ``eigenvalues`` (descending), ``n_effective``, ``decades``,
        ``log_spacing_mean``, ``log_spacing_std``.

    Raises
    ------
    TypeError
        If ``K`` or ``loss_curvature`` does not hold real numbers, or ``tol`` is not
        a number.
    ValueError
        If ``K`` is not a finite symmetric square matrix, ``loss_curvature`` has
        the wrong shape or negative / non-finite values, or ``tol`` is not in
        ``(0, 1)``.

    References
    ----------
    Paccolat et al. (2021): the empirical NTK ``K = J J^T`` along training.
    Mao et al. (2024): sloppy spectra (eigenvalues spread evenly over many
    decades) of the Hessian and input correlations of trained networks; M. K.
    Transtrum, B. B. Machta, J. P. Sethna, "Why are nonlinear fits to data so
    challenging?", Phys. Rev. Lett. 104 (2010) 060201, for sloppiness.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import gauss_newton_spectrum
    >>> gn = gauss_newton_spectrum(np.diag([3.0, 0.3, 0.03]))
    >>> np.round(gn.eigenvalues, 12).tolist(), gn.n_effective, round(gn.decades, 12)
    ([1.0, 0.1, 0.01], 3, 2.0)
    """
    import scipy.linalg

    K = check_gram(K, "K")
    p = K.shape[0]
    eps = float(np.finfo(K.dtype).eps)
    if tol is None:
        tol = min(p * eps, 0.5)
    else:
        tol = check_real(tol, "tol")
        if not 0 < tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {tol}")
    # one float64 copy, scaled in place; LAPACK reads its lower triangle (K was
    # checked symmetric), so no symmetrised temporary either
    M = np.array(K, dtype=np.float64, order="F", copy=True)
    if loss_curvature is not None:
        r = np.sqrt(_curvature(loss_curvature, p))
        M *= r[:, None]
        M *= r[None, :]
    M /= p
    w = scipy.linalg.eigvalsh(M, lower=True, overwrite_a=True, check_finite=False)[::-1].copy()
    top = float(w[0])
    kept = w[w > tol * top] if top > 0 else w[:0]
    logs = np.log10(kept)
    gaps = -np.diff(logs)
    return GaussNewtonSpectrum(
        eigenvalues=w,
        n_effective=int(kept.size),
        tol=float(tol),
        decades=float(logs[0] - logs[-1]) if kept.size else 0.0,
        log_spacing_mean=float(gaps.mean()) if gaps.size else math.nan,
        log_spacing_std=float(gaps.std()) if gaps.size else math.nan,
    )


@dataclass(frozen=True, eq=False)
class TrajectoryEmbedding:
    """InPCA embedding of a training run's checkpoints, from :func:`trajectory_embedding`.

    Attributes
    ----------
    coordinates : ndarray of shape (m, k)
        Coordinates of the ``m`` checkpoints on the ``k`` components,
        ``V sqrt(|lambda|)``; each column's largest-magnitude entry is positive.
    eigenvalues : ndarray of shape (k,)
        Eigenvalues of ``W = -P D P / 2``, by decreasing ``|lambda|``, with their
        signs: a negative one is a "time-like" direction of the Minkowski
        embedding.
    explained_fraction : ndarray of shape (k,)
        ``|lambda| / sum |lambda|`` over all ``m`` eigenvalues.
    distances : ndarray of shape (m, m)
        Bhattacharyya distances between the checkpoints, summed over the points.
    steps : ndarray of shape (m,)
        Step of each checkpoint (int64).
    times : ndarray of shape (m,)
        Flow time of each checkpoint (NaN where a run file does not record it).
    split : str
        ``"train"`` or ``"test"``, or ``"X"`` when the points were passed.
    n_points : int
        Number of points the distributions are read on.
    """

    coordinates: np.ndarray
    eigenvalues: np.ndarray
    explained_fraction: np.ndarray
    distances: np.ndarray
    steps: np.ndarray
    times: np.ndarray
    split: str
    n_points: int

    @property
    def n_checkpoints(self) -> int:
        """Number of checkpoints ``m``."""
        return int(self.coordinates.shape[0])

    @property
    def n_components(self) -> int:
        """Number of components ``k``."""
        return int(self.coordinates.shape[1])

    def __repr__(self) -> str:
        frac = ", ".join(f"{v:.3g}" for v in self.explained_fraction)
        return (
            f"TrajectoryEmbedding(n_checkpoints={self.n_checkpoints}, "
            f"n_components={self.n_components}, split={self.split!r}, "
            f"explained_fraction=[{frac}])"
        )


def _trajectory_inputs(run: Any, split: str, X: Any) -> tuple[Any, ...]:
    """(networks, steps, times, f0 network or None, alpha, points) of a run."""
    split = check_choice(split, "split", SPLITS)
    if isinstance(run, str | os.PathLike):
        run = io.open_run(run)
    if hasattr(run, "checkpoints") and hasattr(run, "net0") and hasattr(run, "alpha"):
        records = list(run.checkpoints)
        if not records:
            raise ValueError("the run has no checkpoints")
        nets = [ck.net for ck in records]
        if any(net is None for net in nets):
            raise ValueError("the run kept no networks (keep_networks=False); use its run file")
        if X is None:
            raise ValueError(
                "X is required for a kc.training.train result, which does not keep its "
                "data: pass the points, e.g. X=X_test"
            )
        steps = [ck.step for ck in records]
        times = [ck.time for ck in records]
        net0 = run.net0 if run.center else None
        alpha = float(run.alpha)
        input_dim = run.net0.input_dim
    else:
        if not isinstance(run, io.Run):
            raise TypeError(
                "run must be a kc.training.train result, a kc.io.open_run result or the "
                f"path of a run file, got {type(run).__name__}"
            )
        if not run.checkpoints:
            raise ValueError(f"{run.path}: the run has no checkpoints")
        if "alpha" not in run.config:
            raise ValueError(f"{run.path}: the run's configuration does not record alpha")
        alpha = float(run.config["alpha"])
        center = bool(run.config.get("center", True))
        if center and run.checkpoints[0].step != 0:
            raise ValueError(
                f"{run.path}: the first checkpoint is at step {run.checkpoints[0].step}, "
                "not 0, so the initial network f0 of the model alpha (f - f0) is unknown"
            )
        if X is None:
            key = f"X_{split}"
            if key not in run.data:
                raise ValueError(
                    f"{run.path}: the run stores no {split} set ({key}); use split="
                    f"{'train' if split == 'test' else 'test'!r} or pass X"
                )
            X = run.data[key]
        nets = [ck.network for ck in run.checkpoints]
        steps = [ck.step for ck in run.checkpoints]
        times = [math.nan if ck.time is None else ck.time for ck in run.checkpoints]
        net0 = nets[0] if center else None
        input_dim = nets[0].input_dim
    X = check_matrix(X, "X", dtype=np.float64, n_features=input_dim)
    return nets, steps, times, net0, alpha, X


def _log_probabilities(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log p(+1|x)`` and ``log p(-1|x)`` for ``p(+1|x) = sigmoid(2 F)``, stably."""
    return -np.logaddexp(0.0, -2.0 * F), -np.logaddexp(0.0, 2.0 * F)


def trajectory_embedding(
    run: Any, split: str = "test", *, X: Any = None, n_components: int = 3
) -> TrajectoryEmbedding:
    """InPCA of the checkpoints' predicted label distributions: the training trajectory.

    Each checkpoint ``i`` defines a distribution of the label on each point,
    through a logistic link on the trained model ``F_i = alpha (f_i - f0)``
    (``alpha f_i`` for a run that does not centre):

    .. code-block:: text

        p_i(y = +1 | x) = sigmoid(2 F_i(x)) = e^F / (e^F + e^-F)

    so that the log-odds are ``2 F`` and the margin ``y F`` the model trains on
    sets ``p_i(y | x) = sigmoid(2 y F)``. Checkpoints ``i, j`` are compared by the
    Bhattacharyya distance summed over the ``n`` points,

    .. code-block:: text

        D_ij = -sum_x log sum_{y = +-1} sqrt(p_i(y|x) p_j(y|x)),

    and InPCA diagonalises ``W = -P D P / 2`` (``P = I - 11^T/m`` the centring
    matrix): ``W`` can have negative eigenvalues, so the components are those of
    largest ``|lambda|``, with their signs, and the coordinates ``V sqrt(|lambda|)``.

    Parameters
    ----------
    run : TrainResult, kc.io.Run, str or os.PathLike
        A result of :func:`kernelcomp.training.train` (with its networks kept), a
        run read by :func:`kernelcomp.io.open_run`, or the path of a run file.
    split : {"test", "train"}, default "test"
        Which of the run file's data sets the distributions are read on.
    X : array-like of shape (n, d), optional
        The points instead of a split; required for a ``TrainResult``, which
        does not keep its data.
    n_components : int, default 3
        Number of components, at most the number of checkpoints (larger values
        are clipped).

    Returns
    -------
    TrajectoryEmbedding
        ``coordinates``, signed ``eigenvalues``, ``explained_fraction``,
        ``distances``, and each checkpoint's ``steps`` and ``times``.

    Raises
    ------
    TypeError
        If ``run`` is none of the above, or ``n_components`` is not an integer.
    ValueError
        If ``split`` is unknown or the run file lacks that set, ``X`` is missing
        for a ``TrainResult`` or invalid, the networks were not kept, the run has
        no checkpoints, or a centred run file does not start at step 0.

    References
    ----------
    Quinn et al. (2019): InPCA, ``W = -P D P / 2`` with the Bhattacharyya
    distance, a Minkowski embedding. Mao et al. (2024): InPCA of the predicted
    probabilities of deep networks along training, the distance summed over
    the samples.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> from kernelcomp.diagnostics import trajectory_embedding
    >>> X, y = kc.datasets.stripe(64, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [40], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> run = kc.training.train(net, X, y, alpha=1e-2)
    >>> emb = trajectory_embedding(run, X=X, n_components=2)
    >>> emb.coordinates.shape == (len(run.checkpoints), 2)
    True
    >>> bool(emb.explained_fraction[0] > 0.5)
    True
    """
    import scipy.linalg


    given = X is not None
    nets, steps, times, net0, alpha, X = _trajectory_inputs(run, split, X)
    k = min(check_int(n_components, "n_components", minimum=1), len(nets))
    f0 = net0(X) if net0 is not None else 0.0
    F = np.stack([alpha * (net(X) - f0) for net in nets])  # (m, n)
    logp, logq = _log_probabilities(F)
    m = F.shape[0]
    D = np.empty((m, m))
    for i in range(m):
        D[i] = -np.logaddexp((logp[i] + logp) / 2, (logq[i] + logq) / 2).sum(axis=1)
    D = np.maximum((D + D.T) / 2, 0.0)  # the Bhattacharyya coefficient is <= 1
    np.fill_diagonal(D, 0.0)
    Pc = np.eye(m) - 1.0 / m
    W = -0.5 * (Pc @ D @ Pc)
    w, V = scipy.linalg.eigh((W + W.T) / 2, check_finite=False)
    order = np.argsort(-np.abs(w), kind="stable")
    total = float(np.abs(w).sum())
    w, V = w[order][:k], np.ascontiguousarray(V[:, order][:, :k])
    V = _fix_signs(V)
    return TrajectoryEmbedding(
        coordinates=V * np.sqrt(np.abs(w)),
        eigenvalues=w,
        explained_fraction=np.abs(w) / total if total > 0 else np.zeros(k),
        distances=D,
        steps=np.array(steps, dtype=np.int64),
        times=np.array(times, dtype=np.float64),
        split="X" if given else split,
        n_points=int(X.shape[0]),
    )
