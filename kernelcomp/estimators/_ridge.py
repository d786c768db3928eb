"""Kernel ridge regression with a frozen kernel: :class:`NTKRegressor`.

One function per solver, chosen from one table by ``solver`` and by whether the
data are Dask arrays: the exact blocked Cholesky solve (with a warned
eigendecomposition fallback for singular or indefinite systems), Falkon's
Nystrom preconditioned conjugate gradient in memory, and Falkon on Dask arrays
(the n x m cross Gram persisted on the workers).

References
----------
Rudi, Carratino, Rosasco (2017), *FALKON: An optimal large scale kernel method*,
NeurIPS; Paccolat et al. (2021), J. Stat. Mech. 044001, §5.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from kernelcomp import _falkon
from kernelcomp._base import Kernel
from kernelcomp._gram import gram
from kernelcomp._linalg import cholesky_inplace, matmul, mirror_upper
from kernelcomp._parallel import bytes_text, n_jobs_context
from kernelcomp._validation import (
    check_choice,
    check_int,
    check_real,
    check_real_dtype,
    result_dtype,
)
from kernelcomp.distributed import is_dask_array
from kernelcomp.estimators._base import (
    _FLOATS,
    SingularKernelWarning,
    _check_square,
    _is_precomputed,
    _KernelEstimator,
    _resolve_kernel,
)


def _eigh_solve(A: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Minimum-norm least-squares solution of the symmetric system ``A x = Y``.

    Eigenvalues with ``|w| <= n * eps * max|w|`` are treated as zero (the
    pseudo-inverse cut-off of :func:`numpy.linalg.pinv`/``matrix_rank``).
    ``A`` is overwritten. Returns the solution, the number of eigenvalues cut
    and the smallest eigenvalue.
    """
    n = A.shape[0]
    w, V = scipy.linalg.eigh(A.T, overwrite_a=True, check_finite=False)
    eps = float(np.finfo(A.dtype).eps)
    top = float(np.max(np.abs(w))) if n else 0.0
    keep = np.abs(w) > n * eps * top
    inv = np.zeros_like(w)
    inv[keep] = 1.0 / w[keep]
    coef = V @ ((V.T @ Y) * inv[:, None])
    return coef, int(n - keep.sum()), float(w[0]) if n else 0.0


def _solve_kernel_ridge(
    K: np.ndarray, Y: np.ndarray, alpha: float, sqrt_sw: np.ndarray | None
) -> np.ndarray:
    """Solve ``(S K S + alpha I) b = S Y`` and return ``S b`` (``S = diag(sqrt_sw)``).

    ``K`` (C-contiguous, symmetric, owned by the caller and free to be
    destroyed) is factorised in place by a blocked Cholesky
    (:func:`kernelcomp._linalg.cholesky_inplace`, safe at any n): ``K.T`` is the same
    symmetric matrix in Fortran order, so no n x n copy is made. ``Y`` is an
    (n, t) Fortran-ordered array in ``K``'s dtype (scaled in place by the weights). When the
    factorisation fails (singular or indefinite system) or gives a non-finite
    solution, the matrix is restored from its untouched lower triangle and
    solved by a symmetric eigendecomposition pseudo-inverse, with a
    :class:`SingularKernelWarning`; a ``ValueError`` when that solution is not finite
    either (it overflows the dtype).
    """
    n = K.shape[0]
    if sqrt_sw is not None:
        K *= sqrt_sw[:, None]
        K *= sqrt_sw[None, :]
        Y *= sqrt_sw[:, None]
    diagonal = np.diagonal(K).copy()
    K.flat[:: n + 1] += alpha
    reason = ""
    try:
        # the blocked Cholesky on the Fortran view K.T writes the factor over K's upper
        # triangle and diagonal only; the strict lower triangle keeps the matrix.
        cholesky_inplace(K.T)
        coef = scipy.linalg.cho_solve((K.T, True), Y, overwrite_b=False, check_finite=False)
        if np.isfinite(coef).all():
            if sqrt_sw is not None:
                coef *= sqrt_sw[:, None]
            return coef
        reason = "the Cholesky solution is not finite"
    except np.linalg.LinAlgError as exc:
        reason = f"the Cholesky factorisation failed ({exc})"
    mirror_upper(K.T)  # restore the upper triangle from the lower one
    K.flat[:: n + 1] = diagonal + alpha
    coef, n_cut, w_min = _eigh_solve(K, Y)
    if not np.isfinite(coef).all():
        # even the pseudo-inverse overflows: the solution is not representable in the dtype
        advice = ("rescale K or y or increase alpha" if K.dtype == np.float64
                  else "rescale K or y, increase alpha or use dtype='float64'")  # fmt: skip
        raise ValueError(
            f"The kernel ridge solution overflows {K.dtype} (n={n}, alpha={alpha:g}; "
            f"{reason}, and so does the eigendecomposition's, with smallest eigenvalue "
            f"{w_min:.3g}): the targets are too large for the scale of K + alpha*I; "
            f"{advice}."
        )
    warnings.warn(
        f"The regularised kernel system K + alpha*I (n={n}, alpha={alpha:g}, "
        f"dtype={K.dtype}) is singular or not positive definite: {reason}. Its smallest "
        f"eigenvalue is {w_min:.3g}. Using the minimum-norm least-squares solution from an "
        f"eigendecomposition instead ({n_cut} of {n} eigenvalues treated as zero). "
        "Duplicated samples, a non-kernel precomputed matrix, or an alpha too small for "
        "the dtype cause this; increase alpha or use dtype='float64'.",
        SingularKernelWarning,
        stacklevel=4,  # the user's fit: here < _fit_cholesky < fit < caller
    )
    if sqrt_sw is not None:
        coef *= sqrt_sw[:, None]
    return coef


_REG_SOLVERS = ("cholesky", "falkon")


def _cross_gram(xb: np.ndarray, kernel: Kernel, C: np.ndarray, dtype: str) -> np.ndarray:
    """A row block of ``K_nm`` (a Dask task: runs on a worker)."""
    return gram(kernel, xb, C, dtype=dtype)


def _predict_block(xb: np.ndarray, kernel: Kernel, C: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Predictions of a row block of Dask inputs (a Dask task)."""
    return matmul(gram(kernel, xb, C, dtype=coef.dtype), coef)


class NTKRegressor(MultiOutputMixin, RegressorMixin, _KernelEstimator):
    """Kernel ridge regression with a frozen (analytic or empirical) neural tangent kernel.

    Fits the dual coefficients ``a = (K + alpha I)^{-1} y`` of the training Gram
    ``K`` and predicts ``f(x) = sum_mu a_mu k(x, x_mu)``: the function a
    network in the lazy regime converges to when trained on the square loss
    (``alpha -> 0``), or the posterior mean of the Gaussian process with
    covariance ``k`` and noise variance ``alpha``.

    Parameters
    ----------
    kernel : None, "precomputed" or kernelcomp kernel, default None
        ``None`` means ``kc.NTK()``; any ``kc.NTK``, ``kc.NNGP`` or
        ``kc.EmpiricalNTK(net)``; with ``"precomputed"``, ``X`` is a Gram matrix:
        ``(n_train, n_train)`` in ``fit``, ``(n_test, n_train)`` in ``predict``.
    alpha : float, default 1e-4
        Absolute ridge added to the diagonal of ``K``, as in
        ``sklearn.kernel_ridge.KernelRidge(alpha=...)``. The default is small
        next to the diagonal of the NTK/NNGP of inputs with ``|x|^2 ~ d``
        (about 1), so the fit is close to the ridgeless interpolant that
        kernel theory studies, while keeping the Cholesky factorisation stable
        for thousands of samples; scale it with your kernel. ``alpha=0`` is
        allowed (exact interpolation when ``K`` is positive definite).
    dtype : {None, "float32", "float64"}, default None
        dtype of the Gram matrices and of the solve; None gives float32 when
        ``X`` is float32 and float64 otherwise. float32 halves the memory of
        the n x n system at float32 accuracy (use a larger ``alpha``).
    n_jobs : int, optional
        Threads for the Gram computation (None or -1: all).
    solver : {"cholesky", "falkon"}, default "cholesky"
        ``"cholesky"``: the exact solve, a blocked in-place Cholesky of the
        n x n system (memory n^2). ``"falkon"``: Nystrom kernel ridge
        regression on ``n_centers`` training points drawn uniformly at random
        (``random_state``), ``f(x) = sum_j beta_j k(x, c_j)`` with ``beta``
        minimising the same objective as ``KernelRidge(alpha)`` restricted to
        the centres, solved by Falkon's preconditioned conjugate gradient
        (memory n x m at most, and m^2); with ``n_centers >= n`` it is the
        exact solution. For classification at scale, fit ±1 (or one-hot)
        targets and take the sign (argmax) of ``predict``.
    n_centers : int, default 10000
        ``"falkon"``: number of Nystrom centres ``m`` (capped at n). The
        empirical NTK of a network with fewer parameters than ``m`` has a
        singular ``K_mm``, which the preconditioner handles poorly: keep ``m``
        below the parameter count.
    max_iter : int, default 50
        ``"falkon"``: conjugate-gradient iterations at most.
    tol : float, default 1e-7
        ``"falkon"``: stop when the preconditioned residual of every target is
        at most ``tol`` times its initial value.
    random_state : int, RandomState or None, default None
        ``"falkon"``: seed of the choice of centres.
    max_memory : int, optional
        ``"falkon"``: bytes allowed for keeping the n x m cross Gram ``K_nm``
        between iterations (default: half of the memory available when
        ``fit`` starts, Linux's ``MemAvailable``); beyond it the blocks are
        recomputed at every iteration, which costs one cross Gram per
        iteration. ``knm_route_`` says which ran; the ``kernelcomp`` logger
        says it at INFO level with the sizes.
    progress : bool, default False
        ``"falkon"``: a progress bar over the iterations.

    Attributes
    ----------
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        The coefficients ``a`` (``"falkon"``: ``beta``, one per centre).
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training samples (the training Gram matrix when precomputed);
        ``"falkon"``: the centres (all training columns when precomputed,
        ``dual_coef_`` being zero outside the centres).
    center_indices_ : ndarray of int
        ``"falkon"``: indices of the centres among the training samples.
    n_iter_ : int
        ``"falkon"``: conjugate-gradient iterations run (1 for ``"cholesky"``).
    knm_route_ : {"stored", "recomputed", "persisted"}
        ``"falkon"`` only: ``K_nm`` was computed once and kept (it fitted
        ``max_memory_``), recomputed by blocks at every iteration, or, for
        Dask arrays, persisted on the workers.
    max_memory_ : int or None
        ``"falkon"`` only: the budget that decided ``knm_route_`` (None for
        Dask arrays).
    kernel_ : Kernel or "precomputed"
        The kernel used (``kc.NTK()`` when ``kernel=None``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string feature names.

    Raises
    ------
    ValueError, TypeError
        From ``fit``/``predict`` for invalid parameters or inputs (NaN,
        wrong shapes, a non-square precomputed matrix, an unknown kernel).

    Warns
    -----
    SingularKernelWarning
        When ``K + alpha I`` is singular or indefinite: the minimum-norm
        least-squares solution (eigendecomposition pseudo-inverse) is used.
    UserWarning
        When a precomputed training Gram matrix is not symmetric: its
        symmetric part ``(K + K.T) / 2`` is used.

    See Also
    --------
    NTKClassifier : SVM (hinge loss) with the same kernels.
    sklearn.kernel_ridge.KernelRidge : the same model with generic kernels.

    References
    ----------
    Jacot, Gabriel, Hongler (2018), *Neural Tangent Kernel*, §5 (training with
    the square loss converges to kernel regression with the NTK);
    Paccolat et al. (2021), J. Stat. Mech. 044001, §5; Rudi, Carratino,
    Rosasco (2017), *FALKON: An optimal large scale kernel method*, NeurIPS
    (``solver="falkon"``).

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> rng = np.random.default_rng(0)
    >>> X, Xt = rng.standard_normal((50, 3)), rng.standard_normal((5, 3))
    >>> y = np.sin(X[:, 0])
    >>> model = kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-3).fit(X, y)
    >>> model.predict(Xt).shape
    (5,)
    """

    def __init__(
        self,
        kernel: Any = None,
        alpha: float = 1e-4,
        *,
        dtype: Any = None,
        n_jobs: int | None = None,
        solver: str = "cholesky",
        n_centers: int = 10_000,
        max_iter: int = 50,
        tol: float = 1e-7,
        random_state: Any = None,
        max_memory: int | None = None,
        progress: bool = False,
    ) -> None:
        self.kernel = kernel
        self.alpha = alpha
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.solver = solver
        self.n_centers = n_centers
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.max_memory = max_memory
        self.progress = progress

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NTKRegressor:
        """Fit kernel ridge regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples, or the training Gram matrix of shape
            (n_samples, n_samples) when ``kernel="precomputed"``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : float or array-like of shape (n_samples,), optional
            Non-negative weights of the squared errors (as ``KernelRidge``).

        Returns
        -------
        self : NTKRegressor

        Raises
        ------
        ValueError
            For NaN/inf, empty or mismatched inputs, a negative ``alpha``, a
            non-square precomputed matrix, or an unknown kernel string; when
            the solution overflows the dtype (targets far too large for the
            scale of ``K + alpha I``), instead of returning NaN.
        TypeError
            For a kernel that is not a kernelcomp kernel, or non-numeric input.
        """
        kernel = _resolve_kernel(self.kernel)
        alpha = check_real(self.alpha, "alpha", minimum=0.0)
        self._check_common_params()
        solver = check_choice(self.solver, "solver", _REG_SOLVERS)
        dask = is_dask_array(X) or is_dask_array(y)
        if dask and (solver != "falkon" or _is_precomputed(kernel)):
            raise ValueError(
                "Dask arrays are fitted by solver='falkon' with a kernel object; got "
                f"solver={self.solver!r}, kernel={self.kernel!r}"
            )
        if not dask:
            X, y = self._validate_fit_X(X, y, multi_output=True, y_numeric=True)
        for stale in ("knm_route_", "max_memory_"):  # from an earlier fit with Falkon
            self.__dict__.pop(stale, None)
        return _FITS[solver, dask](self, kernel, X, y, alpha, sample_weight)

    def _falkon_params(self) -> tuple[int, int, float]:
        """Validated ``n_centers``, ``max_iter`` and ``tol`` of ``solver="falkon"``."""
        return (check_int(self.n_centers, "n_centers", minimum=1),
                check_int(self.max_iter, "max_iter", minimum=1),
                check_real(self.tol, "tol", minimum=0.0))  # fmt: skip

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the fitted kernel ridge model.

        The cross Gram ``k(X, X_fit_)`` is computed in row blocks of about
        64 MiB and contracted with ``dual_coef_`` block by block.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Samples, or the (n_test, n_train) Gram matrix against the training
            samples when ``kernel="precomputed"``.

        Returns
        -------
        ndarray of shape (n_test,) or (n_test, n_targets)
            In the dtype of the fit (float32 for a float32 fit).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            For NaN/inf or a wrong number of features (columns).
        """
        check_is_fitted(self)
        coef = self.dual_coef_
        dt = coef.dtype
        if is_dask_array(X) and not _is_precomputed(self.kernel_):
            if X.ndim != 2 or X.shape[1] != self.n_features_in_:
                raise ValueError(f"X must have {self.n_features_in_} features")
            shape = (X.chunks[0],) if coef.ndim == 1 else (X.chunks[0], (coef.shape[1],))
            return X.rechunk({1: -1}).astype(dt).map_blocks(
                _predict_block, self.kernel_, self.X_fit_, coef, chunks=shape,
                drop_axis=1 if coef.ndim == 1 else None, dtype=dt)
        X = validate_data(self, X, reset=False, dtype=_FLOATS)
        if _is_precomputed(self.kernel_):
            return matmul(np.asarray(X, dtype=dt), coef)
        out = np.empty((X.shape[0], *coef.shape[1:]), dtype=dt)
        for start, stop, block in self._iter_test_gram(X, self.X_fit_, dt):
            matmul(block, coef, out=out[start:stop])
        return out


def _fit_cholesky(est: NTKRegressor, kernel: Kernel | str, X: np.ndarray, y: np.ndarray,
                  alpha: float, sample_weight: Any) -> NTKRegressor:
    """``solver="cholesky"``: the exact solve of ``(K + alpha I) a = y``."""
    K = est._train_gram(kernel, X, symmetrize=True)
    dt = K.dtype
    n = K.shape[0]
    Y = np.array(np.reshape(y, (n, -1)), dtype=dt, order="F")
    sqrt_sw = None
    if sample_weight is not None:
        sw = _check_sample_weight(sample_weight, X, dtype=dt, ensure_non_negative=True)
        sqrt_sw = np.sqrt(sw)
    coef = _solve_kernel_ridge(K, Y, alpha, sqrt_sw)
    del K
    est.dual_coef_ = np.ascontiguousarray(coef.ravel() if np.ndim(y) == 1 else coef)
    est.X_fit_ = X
    est.kernel_ = kernel
    est.n_iter_ = 1  # one direct solve
    return est


def _fit_falkon(est: NTKRegressor, kernel: Kernel | str, X: np.ndarray, y: np.ndarray,
                alpha: float, sample_weight: Any) -> NTKRegressor:
    """``solver="falkon"``: Nystrom centres and preconditioned conjugate gradient."""
    m_req, max_iter, tol = est._falkon_params()
    budget = (_falkon.default_max_memory() if est.max_memory is None
              else check_int(est.max_memory, "max_memory", minimum=0))  # fmt: skip
    precomputed = _is_precomputed(kernel)
    if precomputed:
        _check_square(X)
    n = X.shape[0]
    dt = result_dtype(X, dtype=est.dtype)
    idx = _falkon.sample_centers(n, m_req, est.random_state)
    m = idx.size
    Y = np.array(np.reshape(y, (n, -1)), dtype=dt)
    weights = None
    if sample_weight is not None:
        weights = _check_sample_weight(sample_weight, X, dtype=dt, ensure_non_negative=True)
    if precomputed:
        Kfull = np.asarray(X, dtype=dt)
        K_mm = np.ascontiguousarray(Kfull[np.ix_(idx, idx)])
        K_mm = 0.5 * (K_mm + K_mm.T)
        rows = _falkon.knm_rows(n, m, dt.itemsize)

        def knm_blocks() -> Iterator[tuple[int, int, np.ndarray]]:
            for i0 in range(0, n, rows):
                i1 = min(n, i0 + rows)
                yield i0, i1, np.ascontiguousarray(Kfull[i0:i1][:, idx])
    else:
        est.kernel_ = kernel
        C = np.ascontiguousarray(X[idx], dtype=dt)
        with n_jobs_context(est.n_jobs):
            K_mm = gram(kernel, C, dtype=dt)
        rows = _falkon.knm_rows(n, m, dt.itemsize)

        def knm_blocks() -> Iterator[tuple[int, int, np.ndarray]]:
            yield from est._iter_test_gram(X, C, dt, rows=rows)
    store = _falkon.fits(n, m, dt.itemsize, budget)
    _log_knm_route(est, n, m, dt, budget, store)
    rhs, normal = _falkon.in_memory_normal(knm_blocks, Y, weights, store=store)
    w_sum = float(n if weights is None else weights.sum())
    coef, n_iter, _ = _falkon.falkon(K_mm, rhs, normal, alpha, w_sum, max_iter=max_iter,
                                     tol=tol, progress=bool(est.progress))  # fmt: skip
    if precomputed:
        full = np.zeros((n, coef.shape[1]), dtype=dt)
        full[idx] = coef
        coef, est.X_fit_ = full, X
    else:
        est.X_fit_ = C
    est.dual_coef_ = np.ascontiguousarray(coef.ravel() if np.ndim(y) == 1 else coef)
    est.center_indices_ = idx
    est.n_iter_ = n_iter
    est.kernel_ = kernel
    est.knm_route_ = "stored" if store else "recomputed"
    est.max_memory_ = budget
    return est


def _log_knm_route(est: NTKRegressor, n: int, m: int, dt: np.dtype, budget: int,
                   store: bool) -> None:
    """Say on the ``kernelcomp`` logger (INFO) whether K_nm is kept, and why."""
    log = logging.getLogger("kernelcomp")
    if not log.isEnabledFor(logging.INFO):
        return
    origin = ("max_memory" if est.max_memory is not None
              else "default: half of the memory available")
    size = bytes_text(n * m * dt.itemsize)
    route = ("stored (computed once)" if store
             else "recomputed block by block at every iteration (a larger max_memory keeps it)")
    log.info("NTKRegressor(solver='falkon'): K_nm %d x %d %s (%s) %s; budget %s (%s)",
             n, m, dt.name, size, route, bytes_text(budget), origin)


def _fit_falkon_dask(est: NTKRegressor, kernel: Kernel, X: Any, y: Any, alpha: float,
                     sample_weight: Any) -> NTKRegressor:
    """``solver="falkon"`` on Dask arrays: K_nm blocks persisted on the workers."""
    import dask
    import dask.array as da

    from kernelcomp.distributed import is_dask_array

    m_req, max_iter, tol = est._falkon_params()
    if not is_dask_array(X):
        X = da.from_array(np.asarray(X), chunks=(y.chunks[0], -1))
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got {X.ndim}-D")
    n = X.shape[0]
    if not is_dask_array(y):
        y = da.from_array(np.asarray(y), chunks=(X.chunks[0],) + ((-1,) * (np.ndim(y) - 1)))
    if y.shape[0] != n:
        raise ValueError(f"X has {n} samples but y has {y.shape[0]}")
    if y.chunks[0] != X.chunks[0]:
        raise ValueError(
            f"the row chunks of X {X.chunks[0]} and y {y.chunks[0]} differ; rechunk them "
            "alike (e.g. y.rechunk((X.chunks[0],)))"
        )
    if kernel.n_features_in is not None and X.shape[1] != kernel.n_features_in:
        raise ValueError(f"X has {X.shape[1]} features, but the kernel expects "
                         f"{kernel.n_features_in}")  # fmt: skip
    check_real_dtype(X.dtype, "X")
    check_real_dtype(y.dtype, "y")
    x_dt = np.empty(0, dtype=X.dtype)
    dt = result_dtype(x_dt if X.dtype == np.float32 else x_dt.astype(np.float64),
                      dtype=est.dtype)  # fmt: skip
    X = X.rechunk({1: -1}).astype(dt)
    Y = (y if y.ndim == 2 else y[:, None]).rechunk({1: -1}).astype(dt)
    idx = _falkon.sample_centers(n, m_req, est.random_state)
    m = idx.size
    C = np.ascontiguousarray(X[idx].compute(), dtype=dt)
    if not np.isfinite(C).all():
        raise ValueError("X contains NaN or infinity")
    est.kernel_ = kernel
    with n_jobs_context(est.n_jobs):
        K_mm = gram(kernel, C, dtype=dt)
    knm = X.map_blocks(_cross_gram, kernel, C, dt.name, chunks=(X.chunks[0], (m,)),
                       dtype=dt).persist()  # fmt: skip
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=dt)
        if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all():
            raise ValueError("sample_weight must be n finite non-negative numbers")
        W = da.from_array(w, chunks=(X.chunks[0],))[:, None]
        w_sum = float(w.sum())
    else:
        W, w_sum = None, float(n)
    WY = Y if W is None else Y * W
    rhs, y_finite = dask.compute(knm.T @ WY, da.isfinite(Y).all())  # one pass over y
    if not y_finite:
        raise ValueError("y contains NaN or infinity; all targets must be finite")

    def normal(beta: np.ndarray) -> np.ndarray:
        u = knm @ beta
        return (knm.T @ (u if W is None else u * W)).compute()

    coef, n_iter, _ = _falkon.falkon(K_mm, rhs, normal, alpha, w_sum, max_iter=max_iter,
                                     tol=tol, progress=bool(est.progress))  # fmt: skip
    est.X_fit_ = C
    est.dual_coef_ = np.ascontiguousarray(coef.ravel() if y.ndim == 1 else coef)
    est.center_indices_ = idx
    est.n_iter_ = n_iter
    est.n_features_in_ = X.shape[1]
    est.knm_route_ = "persisted"
    est.max_memory_ = None
    return est


#: the fit of each (solver, data on Dask) pair; the other pairs are refused by ``fit``
_FITS: dict[tuple[str, bool], Callable[..., NTKRegressor]] = {
    ("cholesky", False): _fit_cholesky,
    ("falkon", False): _fit_falkon,
    ("falkon", True): _fit_falkon_dask,
}
