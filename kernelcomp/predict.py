r"""Predictions of wide networks at a finite training time under gradient flow on the MSE.

A network in the kernel (lazy) regime evolves as its linearisation: trained by
gradient flow on ``L = 1/(2 N) sum (f(x_i) - y_i)^2`` (``N = y_train.size``, the
convention of neural-tangents' ``predict.gradient_descent_mse``), its outputs
follow

.. math::

    f_t(X) = y + e^{-\eta \Theta t / N} (f_0(X) - y), \qquad
    f_t(x) = f_0(x) + \Theta_{xX} \Theta^{-1} (I - e^{-\eta \Theta t / N})
             (y - f_0(X)),

with :math:`\Theta` the tangent kernel on the training set. Both functions here
eigendecompose the training Gram once; each time is then O(n^2) (O(n m) on ``m``
test points). At ``t = inf`` the test prediction is kernel regression with the
absolute ridge ``diag_reg`` (what :class:`kernelcomp.estimators.NTKRegressor`
fits). The hinge-loss flow of the paper is
:class:`kernelcomp.estimators.NTKClassifier` with ``solver="gradient_flow"``.

References
----------
Jacot, Gabriel, Hongler (2018), *Neural tangent kernel*, §5.
Lee et al. (2019), *Wide neural networks of any depth evolve as linear models
under gradient descent*, §2.3-2.4 (the mean and covariance of the ensemble).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg

from kernelcomp._validation import check_gram, check_matrix, check_real

__all__ = ["gradient_descent_mse", "gradient_descent_mse_ensemble"]


def _targets(y: Any, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, k), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_train contains NaN or infinity")
    return y


def _times(t: Any) -> tuple[np.ndarray, bool]:
    """Times as a 1-D float array, and whether ``t`` was a scalar (None is infinity)."""
    if t is None:
        return np.array([np.inf]), True
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-D array of times, got shape {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any():
        raise ValueError("t must hold times >= 0 (np.inf for the end of training)")
    return np.atleast_1d(arr), arr.ndim == 0


class _Flow:
    """The eigendecomposition of ``Theta + diag_reg I`` and the flow's spectral filters."""

    def __init__(self, theta: np.ndarray, size: int, learning_rate: float, diag_reg: float):
        a = np.array(theta, dtype=np.float64, copy=True)
        a[np.diag_indices_from(a)] += diag_reg
        lam, self.V = scipy.linalg.eigh(a, check_finite=False)
        # a Gram is PSD: eigenvalues below the rounding of the largest are null modes,
        # along which gradient flow never moves (and which t = inf must not invert)
        floor = a.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(lam).max()), 0.0)
        self.lam = np.where(lam > floor, lam, 0.0)
        self.rate = learning_rate / size

    def decay(self, t: float) -> np.ndarray:
        """``exp(-eta lam t / N)`` per mode: the fraction of the residual left at ``t``."""
        if np.isinf(t):
            return (self.lam == 0).astype(np.float64)
        return np.exp(-self.rate * self.lam * t)

    def gain(self, t: float) -> np.ndarray:
        """``(1 - exp(-eta lam t / N)) / lam`` per mode (``eta t / N`` on a null mode)."""
        lam = self.lam
        safe = np.where(lam > 0, lam, 1.0)
        if np.isinf(t):
            return np.where(lam > 0, 1.0 / safe, 0.0)
        return np.where(lam > 0, -np.expm1(-self.rate * lam * t) / safe, self.rate * t)

    def apply(self, filt: np.ndarray, r: np.ndarray) -> np.ndarray:
        """``V diag(filt) V^T r`` for a vector or a matrix ``r``."""
        c = self.V.T @ r
        c = c * (filt[:, None] if c.ndim == 2 else filt)
        return self.V @ c


def _check_common(
    k_train_train: Any, y_train: Any, learning_rate: Any, diag_reg: Any
) -> tuple[np.ndarray, np.ndarray, float, float]:
    K = check_gram(k_train_train, "k_train_train")
    y = _targets(y_train, K.shape[0])
    lr = check_real(learning_rate, "learning_rate", minimum=0.0)
    if lr == 0.0:
        raise ValueError("learning_rate must be > 0, got 0.0")
    reg = check_real(diag_reg, "diag_reg", minimum=0.0)
    return K, y, lr, reg


def gradient_descent_mse(
    k_train_train: Any, y_train: Any, *, learning_rate: float = 1.0, diag_reg: float = 0.0
) -> Callable[..., Any]:
    """Outputs of a linearised network trained by gradient flow on the MSE, at any time.

    Parameters
    ----------
    k_train_train : array-like of shape (n, n)
        The tangent kernel on the training set (analytic, or the empirical NTK of a
        checkpoint).
    y_train : array-like of shape (n,) or (n, k)
        Targets.
    learning_rate : float, default 1.0
        eta in ``df/dt = -(eta / N) Theta (f - y)``, ``N = y_train.size``.
    diag_reg : float, default 0.0
        Absolute ridge added to the kernel's diagonal (as ``NTKRegressor``'s
        ``alpha``): the flow runs with ``Theta + diag_reg I``, so the training
        outputs still reach ``y`` at ``t = inf`` while the test outputs there are
        kernel ridge regression (as neural-tangents' ``diag_reg``).

    Returns
    -------
    callable
        ``predict_fn(t=None, fx_train_0=0.0, fx_test_0=0.0, k_test_train=None)``:
        the training outputs at time ``t`` (None: the end of training), and with
        ``k_test_train`` of shape (m, n) the pair ``(fx_train_t, fx_test_t)``.
        ``fx_*_0`` are the outputs at initialisation (a scalar or an array shaped
        like the outputs). An array of times adds a leading axis.

    Raises
    ------
    ValueError
        If the kernel is not a finite symmetric square matrix, the targets do not
        match it, ``learning_rate <= 0``, ``diag_reg < 0``, a time is negative, or
        ``k_test_train`` has the wrong shape.

    References
    ----------
    Lee et al. (2019), *Wide neural networks of any depth evolve as linear models
    under gradient descent*, eq. (9)-(10).

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((20, 3)); y = np.sign(X[:, 0])
    >>> k = kc.NTK(depth=1)
    >>> predict_fn = kc.predict.gradient_descent_mse(k(X), y, diag_reg=1e-6)
    >>> f0, ft, finf = predict_fn([0.0, 100.0, np.inf])
    >>> bool(np.abs(finf - y).max() < 1e-3 < np.abs(ft - y).max() < np.abs(f0 - y).max())
    True
    """
    K, y, lr, reg = _check_common(k_train_train, y_train, learning_rate, diag_reg)
    flow = _Flow(K, y.size, lr, reg)
    n = K.shape[0]

    def predict_fn(
        t: Any = None, fx_train_0: Any = 0.0, fx_test_0: Any = 0.0, k_test_train: Any = None
    ) -> Any:
        times, scalar = _times(t)
        f0 = np.broadcast_to(np.asarray(fx_train_0, dtype=np.float64), y.shape)
        r0 = f0 - y  # residual at initialisation
        train = np.stack([y + flow.apply(flow.decay(s), r0) for s in times])
        if k_test_train is None:
            return train[0] if scalar else train
        Kx = check_matrix(k_test_train, "k_test_train", dtype=np.float64, n_features=n)
        g0 = np.broadcast_to(np.asarray(fx_test_0, dtype=np.float64), (Kx.shape[0], *y.shape[1:]))
        test = np.stack([g0 - Kx @ flow.apply(flow.gain(s), r0) for s in times])
        return (train[0], test[0]) if scalar else (train, test)

    return predict_fn


def _nngp_of(kernel: Any) -> Any:
    """The NNGP of an analytic ``NTK`` (the same network), else None."""
    from kernelcomp.kernels import NNGP, NTK

    if isinstance(kernel, NTK):
        desc = kernel.to_dict()
        return NNGP.from_dict({"kernel": "NNGP", "params": desc["params"]})
    if isinstance(kernel, NNGP):
        return kernel
    return None


def gradient_descent_mse_ensemble(
    kernel: Any,
    X_train: Any,
    y_train: Any,
    *,
    nngp: Any = None,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
) -> Callable[..., Any]:
    """Mean and covariance of the infinite ensemble of wide networks trained on the MSE.

    At initialisation the outputs are a Gaussian process with the NNGP kernel
    ``K``; gradient flow with the tangent kernel ``Theta`` maps them linearly, so
    at time ``t`` the outputs on test points ``x`` are Gaussian with
    ``mean = A y`` and ``cov = K_xx - A K_Xx - K_xX A^T + A K_XX A^T``, where
    ``A = Theta_xX Theta^{-1} (I - exp(-eta Theta t / N))``.

    Parameters
    ----------
    kernel : kernel object
        The tangent kernel of training (e.g. ``kc.NTK(...)``; ``kc.NNGP`` for a
        network whose readout alone is trained).
    X_train : array-like of shape (n, d)
    y_train : array-like of shape (n,) or (n, k)
    nngp : kernel object, optional
        The kernel of the outputs at initialisation, for the covariance. Default:
        the NNGP of the same network when ``kernel`` is an analytic ``NTK`` (or
        ``kernel`` itself when it is an ``NNGP``).
    learning_rate, diag_reg : float
        As in :func:`gradient_descent_mse`.

    Returns
    -------
    callable
        ``predict_fn(t=None, X_test=None, compute_cov=False)``: the mean on
        ``X_test`` (the training set when None) at time ``t`` (None: the end of
        training), and with ``compute_cov=True`` the pair ``(mean, cov)``, ``cov``
        of shape (m, m) (the same for every output). An array of times adds a
        leading axis.

    Raises
    ------
    ValueError
        As :func:`gradient_descent_mse`; also if ``compute_cov=True`` without an
        NNGP kernel.

    References
    ----------
    Lee et al. (2019), *Wide neural networks of any depth evolve as linear models
    under gradient descent*, eq. (13)-(16).

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((30, 4)); y = np.sign(X[:, 0])
    >>> predict_fn = kc.predict.gradient_descent_mse_ensemble(kc.NTK(depth=2), X, y)
    >>> mean, cov = predict_fn(10.0, X[:5], compute_cov=True)
    >>> mean.shape, cov.shape
    ((5,), (5, 5))
    """
    X = check_matrix(X_train, "X_train")
    theta = kernel(X)
    K, y, lr, reg = _check_common(theta, y_train, learning_rate, diag_reg)
    flow = _Flow(K, y.size, lr, reg)
    K_reg = K + reg * np.eye(K.shape[0])
    prior = nngp if nngp is not None else _nngp_of(kernel)
    k_train = None  # the NNGP on the training set, computed on the first covariance

    def predict_fn(t: Any = None, X_test: Any = None, compute_cov: bool = False) -> Any:
        nonlocal k_train
        times, scalar = _times(t)
        if not isinstance(compute_cov, (bool, np.bool_)):
            raise TypeError(f"compute_cov must be a bool, got {compute_cov!r}")
        if compute_cov and prior is None:
            raise ValueError(
                "compute_cov=True needs the NNGP kernel of the outputs at initialisation: "
                "pass nngp= (it is derived only for an analytic NTK)"
            )
        Xt = X if X_test is None else check_matrix(X_test, "X_test", n_features=X.shape[1])
        # on the training set the flow's own (regularised) kernel, as gradient_descent_mse
        theta_x = K_reg if X_test is None else np.asarray(kernel(Xt, X), dtype=np.float64)
        means, covs = [], []
        if compute_cov:
            if k_train is None:
                k_train = np.asarray(prior(X), dtype=np.float64)
            k_x = k_train if X_test is None else np.asarray(prior(Xt, X), dtype=np.float64)
            k_xx = k_train if X_test is None else np.asarray(prior(Xt), dtype=np.float64)
        for s in times:
            g = flow.gain(s)
            means.append(theta_x @ flow.apply(g, y))
            if compute_cov:
                A = flow.apply(g, theta_x.T).T  # Theta_xX Theta^-1 (I - E), (m, n)
                cross = A @ k_x.T
                cov = k_xx - cross - cross.T + A @ k_train @ A.T
                covs.append((cov + cov.T) / 2)
        mean = means[0] if scalar else np.stack(means)
        if not compute_cov:
            return mean
        return mean, (covs[0] if scalar else np.stack(covs))

    return predict_fn
