"""scikit-learn estimators with frozen kernels: ``NTKRegressor`` and ``NTKClassifier``.

Both estimators take any kernelcomp kernel (``kc.NTK()``, ``kc.NNGP()``,
``kc.EmpiricalNTK(net)`` frozen at a checkpoint) or ``"precomputed"`` and follow
the scikit-learn contract: ``__init__`` stores parameters, ``fit`` validates and
returns ``self``, fitted attributes end in ``_``, and they drop into
:class:`~sklearn.pipeline.Pipeline` and
:class:`~sklearn.model_selection.GridSearchCV`. Kernel parameters are reachable
as nested parameters (``kernel__depth``, ``kernel__bias_std``...), so a grid
search can tune the architecture behind the kernel.

- :class:`NTKRegressor`: kernel ridge regression, ``(K + alpha I) a = y`` solved by
  an in-place blocked Cholesky factorisation (LAPACK/BLAS blocks, safe at any n),
  with a warned eigendecomposition fallback for singular or indefinite systems. Predictions equal
  ``sklearn.kernel_ridge.KernelRidge(kernel="precomputed")`` on the same Gram.
- :class:`NTKClassifier`: support vector machine (hinge loss) on the frozen
  kernel, delegated to ``sklearn.svm.SVC(kernel="precomputed")``; the paper's
  hard margin is a large ``C`` (``C=1e20`` in the authors' code).

Test-time Gram matrices are computed in row blocks of about 64 MiB, so a large
test set never needs the whole ``n_test x n_train`` matrix at once.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), *Geometric compression of
invariant manifolds in neural networks*, J. Stat. Mech. 044001, §2 and §5
(kernel machines with the NTK frozen at initialisation and after training).
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, ClassifierMixin, MultiOutputMixin, RegressorMixin
from sklearn.svm import SVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from kernelcomp._base import Kernel
from kernelcomp._gram import default_block_rows, gram, iter_gram_blocks
from kernelcomp._linalg import cholesky_inplace, matmul, mirror_upper
from kernelcomp._parallel import n_jobs_context, resolve_n_jobs
from kernelcomp._validation import (
    SYMMETRIC_ROUNDOFF_EPS,
    check_dtype,
    check_int,
    check_real,
    check_real_dtype,
    result_dtype,
)

__all__ = ["NTKClassifier", "NTKRegressor", "SingularKernelWarning"]

_FLOATS = (np.float64, np.float32)


class SingularKernelWarning(scipy.linalg.LinAlgWarning):
    """The regularised kernel system was singular or indefinite; a fallback was used."""


# --------------------------------------------------------------------------- helpers
def _resolve_kernel(kernel: Any) -> Kernel | str:
    """The kernel an estimator uses: a kernelcomp kernel or ``"precomputed"``."""
    if kernel is None:
        from kernelcomp.kernels import NTK

        return NTK()
    if isinstance(kernel, str):
        if kernel == "precomputed":
            return kernel
        raise ValueError(
            f"unknown kernel {kernel!r}; expected None (kc.NTK()), 'precomputed' or a "
            "kernelcomp kernel object such as kc.NTK(depth=2), kc.NNGP() or "
            "kc.EmpiricalNTK(net)"
        )
    if isinstance(kernel, Kernel):
        return kernel
    inner = getattr(kernel, "kernelcomp_kernel", None)  # kc.gp.KernelcompKernel wrapper
    if isinstance(inner, Kernel):
        return inner
    raise TypeError(
        "kernel must be None, 'precomputed' or a kernelcomp kernel (kc.NTK(), kc.NNGP(), "
        f"kc.EmpiricalNTK(net)), got {type(kernel).__name__}"
    )


def _is_precomputed(kernel: Any) -> bool:
    return isinstance(kernel, str) and kernel == "precomputed"


def _check_square(K: np.ndarray) -> None:
    if K.shape[0] != K.shape[1]:
        raise ValueError(
            "Precomputed matrix must be a square matrix (the Gram matrix of the training "
            f"samples). Input is a {K.shape[0]}x{K.shape[1]} matrix."
        )



def _symmetrize(K: np.ndarray, block: int = 512) -> float:
    """Replace square ``K`` by its symmetric part ``(K + K.T) / 2`` in place.

    Exact (a no-op) for a symmetric matrix. Returns the largest asymmetry
    ``max |K - K.T|`` found, block by block without an n x n temporary.
    """
    n = K.shape[0]
    defect = 0.0
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        upper = K[i0:i1, i0:]
        lower_t = K[i0:, i0:i1].T
        diff = upper - lower_t
        if diff.size:
            defect = max(defect, float(np.max(np.abs(diff))))
        sym = 0.5 * (upper + lower_t)  # commutative: exactly symmetric, exact if symmetric
        K[i0:i1, i0:] = sym
        K[i0:, i0:i1] = sym.T
    return defect


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
    :class:`SingularKernelWarning`.
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
    warnings.warn(
        f"The regularised kernel system K + alpha*I (n={n}, alpha={alpha:g}, "
        f"dtype={K.dtype}) is singular or not positive definite: {reason}. Its smallest "
        f"eigenvalue is {w_min:.3g}. Using the minimum-norm least-squares solution from an "
        f"eigendecomposition instead ({n_cut} of {n} eigenvalues treated as zero). "
        "Duplicated samples, a non-kernel precomputed matrix, or an alpha too small for "
        "the dtype cause this; increase alpha or use dtype='float64'.",
        SingularKernelWarning,
        stacklevel=3,
    )
    if sqrt_sw is not None:
        coef *= sqrt_sw[:, None]
    return coef


# --------------------------------------------------------------------------- base
class _KernelEstimator(BaseEstimator):
    """Shared plumbing: kernel resolution, nested ``kernel__*`` parameters, tags."""

    kernel: Any
    dtype: Any
    n_jobs: int | None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator.

        With ``deep=True`` the fields of a dataclass kernel (``kc.NTK``,
        ``kc.NNGP``) are included as ``kernel__<field>``, so that
        ``GridSearchCV(est, {"kernel__depth": [1, 2, 3]})`` works.

        Parameters
        ----------
        deep : bool, default True

        Returns
        -------
        dict
        """
        params = super().get_params(deep=deep)
        if deep:
            kernel = self.kernel
            if kernel is None:
                kernel = _resolve_kernel(None)
            if dataclasses.is_dataclass(kernel) and not isinstance(kernel, type):
                for field in dataclasses.fields(kernel):
                    if field.init:
                        params[f"kernel__{field.name}"] = getattr(kernel, field.name)
        return params

    def set_params(self, **params: Any) -> _KernelEstimator:
        """Set parameters, including nested kernel parameters ``kernel__<field>``.

        A nested parameter replaces the (immutable) kernel by a copy with that
        field changed; with ``kernel=None`` the base is ``kc.NTK()``.

        Parameters
        ----------
        **params
            Estimator parameters.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a nested parameter the kernel does not have.
        """
        nested = {
            k[len("kernel__") :]: params.pop(k) for k in list(params) if k.startswith("kernel__")
        }
        super().set_params(**params)
        if nested:
            kernel = self.kernel if self.kernel is not None else _resolve_kernel(None)
            if hasattr(kernel, "set_params") and not dataclasses.is_dataclass(kernel):
                kernel.set_params(**nested)  # e.g. a kc.gp.KernelcompKernel wrapper
                return self
            if not (dataclasses.is_dataclass(kernel) and not isinstance(kernel, type)):
                raise ValueError(
                    f"cannot set kernel parameters {sorted(nested)}: the kernel "
                    f"{type(kernel).__name__} has no nested parameters (pass a new kernel "
                    "object as kernel=... instead)"
                )
            names = {f.name for f in dataclasses.fields(kernel) if f.init}
            unknown = sorted(set(nested) - names)
            if unknown:
                raise ValueError(
                    f"invalid kernel parameter(s) {unknown} for {type(kernel).__name__}; "
                    f"valid ones are {sorted(names)}"
                )
            self.kernel = dataclasses.replace(kernel, **nested)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = _is_precomputed(self.kernel)
        return tags

    # -- fit-time helpers -------------------------------------------------------
    def _check_common_params(self) -> None:
        check_dtype(self.dtype, "dtype")
        resolve_n_jobs(self.n_jobs)

    def _validate_fit_X(self, X: Any, y: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, dtype=_FLOATS, **kwargs)
        return X, y

    def _train_gram(
        self, kernel: Kernel | str, X: np.ndarray, symmetrize: bool = False
    ) -> np.ndarray:
        """The training Gram matrix, C-contiguous.

        With ``symmetrize`` the result is owned (free to be overwritten) and a
        precomputed matrix is replaced by a copy of its symmetric part (with a
        warning when it was not symmetric): the in-place Cholesky reads one
        triangle and its fallback the other. Without it, a precomputed matrix
        is passed through as validated (SVC does not modify it).
        """
        if _is_precomputed(kernel):
            _check_square(X)
            dt = result_dtype(X, dtype=self.dtype)
            if not symmetrize:
                return np.ascontiguousarray(X, dtype=dt)
            K = np.array(X, dtype=dt, order="C", copy=True)
            defect = _symmetrize(K)
            scale = float(np.max(np.abs(np.diagonal(K)))) if len(K) else 0.0
            if defect > SYMMETRIC_ROUNDOFF_EPS * np.finfo(dt).eps * max(scale, np.finfo(dt).tiny):
                warnings.warn(
                    f"The precomputed Gram matrix is not symmetric (max |K - K.T| = "
                    f"{defect:.3g}, largest diagonal value {scale:.3g}); using its symmetric "
                    "part (K + K.T) / 2.",
                    UserWarning,
                    stacklevel=3,
                )
            return K
        if kernel.n_features_in is not None and X.shape[1] != kernel.n_features_in:
            raise ValueError(
                f"X has {X.shape[1]} features, but the kernel {type(kernel).__name__} expects "
                f"{kernel.n_features_in} (the input dimension of its network)"
            )
        return gram(kernel, X, dtype=self.dtype, n_jobs=self.n_jobs)

    def _iter_test_gram(
        self, X: np.ndarray, Y: np.ndarray, dtype: np.dtype, rows: int | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Row blocks ``(start, stop, K[start:stop])`` of ``kernel_(X, Y)``.

        ``rows`` defaults to :func:`kernelcomp._gram.default_block_rows` (about 64 MiB of output).
        """
        if rows is None:
            rows = default_block_rows(X.shape[0], Y.shape[0], np.dtype(dtype).itemsize)
        with n_jobs_context(self.n_jobs):
            for block in iter_gram_blocks(self.kernel_, X, Y, dtype=dtype, block_rows=rows):
                ((_, values),) = block.writes
                yield block.start, block.stop, values


# --------------------------------------------------------------------------- regressor
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
        between iterations (default half of the physical memory); beyond it
        the blocks are recomputed at every iteration.
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
            non-square precomputed matrix, or an unknown kernel string.
        TypeError
            For a kernel that is not a kernelcomp kernel, or non-numeric input.
        """
        kernel = _resolve_kernel(self.kernel)
        alpha = check_real(self.alpha, "alpha", minimum=0.0)
        self._check_common_params()
        if self.solver not in _REG_SOLVERS:
            raise ValueError(f"solver must be one of {_REG_SOLVERS}, got {self.solver!r}")
        from kernelcomp.distributed import is_dask_array

        if is_dask_array(X) or is_dask_array(y):
            if self.solver != "falkon" or _is_precomputed(kernel):
                raise ValueError(
                    "Dask arrays are fitted by solver='falkon' with a kernel object; got "
                    f"solver={self.solver!r}, kernel={self.kernel!r}"
                )
            return self._fit_falkon_dask(kernel, X, y, alpha, sample_weight)
        X, y = self._validate_fit_X(X, y, multi_output=True, y_numeric=True)
        if self.solver == "falkon":
            return self._fit_falkon(kernel, X, y, alpha, sample_weight)
        K = self._train_gram(kernel, X, symmetrize=True)
        dt = K.dtype
        n = K.shape[0]
        Y = np.array(np.reshape(y, (n, -1)), dtype=dt, order="F")
        sqrt_sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=dt, ensure_non_negative=True)
            sqrt_sw = np.sqrt(sw)
        coef = _solve_kernel_ridge(K, Y, alpha, sqrt_sw)
        del K
        self.dual_coef_ = np.ascontiguousarray(coef.ravel() if np.ndim(y) == 1 else coef)
        self.X_fit_ = X
        self.kernel_ = kernel
        self.n_iter_ = 1  # one direct solve
        return self

    def _falkon_params(self) -> tuple[int, int, float]:
        """Validated ``n_centers``, ``max_iter`` and ``tol`` of ``solver="falkon"``."""
        return (check_int(self.n_centers, "n_centers", minimum=1),
                check_int(self.max_iter, "max_iter", minimum=1),
                check_real(self.tol, "tol", minimum=0.0))  # fmt: skip

    def _fit_falkon(self, kernel: Kernel | str, X: np.ndarray, y: np.ndarray, alpha: float,
                    sample_weight: Any) -> NTKRegressor:  # fmt: skip
        """``solver="falkon"``: Nystrom centres and preconditioned conjugate gradient."""
        from kernelcomp import _falkon

        m_req, max_iter, tol = self._falkon_params()
        budget = (_falkon.default_max_memory() if self.max_memory is None
                  else check_int(self.max_memory, "max_memory", minimum=0))  # fmt: skip
        precomputed = _is_precomputed(kernel)
        if precomputed:
            _check_square(X)
        n = X.shape[0]
        dt = result_dtype(X, dtype=self.dtype)
        idx = _falkon.sample_centers(n, m_req, self.random_state)
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
            self.kernel_ = kernel
            C = np.ascontiguousarray(X[idx], dtype=dt)
            with n_jobs_context(self.n_jobs):
                K_mm = gram(kernel, C, dtype=dt)
            rows = _falkon.knm_rows(n, m, dt.itemsize)

            def knm_blocks() -> Iterator[tuple[int, int, np.ndarray]]:
                yield from self._iter_test_gram(X, C, dt, rows=rows)
        rhs, normal = _falkon.in_memory_normal(knm_blocks, Y, weights,
                                               store=_falkon.fits(n, m, dt.itemsize, budget))
        w_sum = float(n if weights is None else weights.sum())
        coef, n_iter, _ = _falkon.falkon(K_mm, rhs, normal, alpha, w_sum, max_iter=max_iter,
                                         tol=tol, progress=bool(self.progress))  # fmt: skip
        if precomputed:
            full = np.zeros((n, coef.shape[1]), dtype=dt)
            full[idx] = coef
            coef, self.X_fit_ = full, X
        else:
            self.X_fit_ = C
        self.dual_coef_ = np.ascontiguousarray(coef.ravel() if np.ndim(y) == 1 else coef)
        self.center_indices_ = idx
        self.n_iter_ = n_iter
        self.kernel_ = kernel
        return self

    def _fit_falkon_dask(self, kernel: Kernel, X: Any, y: Any, alpha: float,
                         sample_weight: Any) -> NTKRegressor:  # fmt: skip
        """``solver="falkon"`` on Dask arrays: K_nm blocks persisted on the workers."""
        import dask
        import dask.array as da

        from kernelcomp import _falkon
        from kernelcomp.distributed import is_dask_array

        m_req, max_iter, tol = self._falkon_params()
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
                          dtype=self.dtype)  # fmt: skip
        X = X.rechunk({1: -1}).astype(dt)
        Y = (y if y.ndim == 2 else y[:, None]).rechunk({1: -1}).astype(dt)
        idx = _falkon.sample_centers(n, m_req, self.random_state)
        m = idx.size
        C = np.ascontiguousarray(X[idx].compute(), dtype=dt)
        if not np.isfinite(C).all():
            raise ValueError("X contains NaN or infinity")
        self.kernel_ = kernel
        with n_jobs_context(self.n_jobs):
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
                                         tol=tol, progress=bool(self.progress))  # fmt: skip
        self.X_fit_ = C
        self.dual_coef_ = np.ascontiguousarray(coef.ravel() if y.ndim == 1 else coef)
        self.center_indices_ = idx
        self.n_iter_ = n_iter
        self.n_features_in_ = X.shape[1]
        return self

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
        from kernelcomp.distributed import is_dask_array

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


# --------------------------------------------------------------------------- classifier
_SOLVERS = ("svc", "gradient_flow")


class NTKClassifier(ClassifierMixin, _KernelEstimator):
    """Support vector machine (hinge loss) with a frozen neural tangent kernel.

    The kernel machine of the paper's frozen-kernel experiments, ``F(x) =
    sum_mu a_mu k(x, x_mu) + b`` trained with the hinge loss. Two solvers:

    ``solver="svc"`` (default)
        ``sklearn.svm.SVC(kernel="precomputed")`` on the kernelcomp Gram matrix:
        soft margin ``C`` (the paper's hard margin is a very large ``C``,
        ``C=1e20`` in the authors' code); labels may be any hashable values and
        multiclass problems are handled as in :class:`~sklearn.svm.SVC`
        (one-vs-one, ``decision_function_shape``). At test time only the
        columns of the support vectors are computed.
    ``solver="gradient_flow"``
        The paper's other route: gradient flow of the hinge loss on
        ``F(x) = sum_mu a_mu k(x, x_mu)`` (no intercept) from ``a = 0``, with the
        adaptive step of the authors' code, until every training margin is
        ``>= 1`` (:func:`kernelcomp.training.kernel_gradient_flow`). Binary
        problems only; ``C``, ``tol``, ``class_weight`` and
        ``decision_function_shape`` do not apply (the stop rule is a hard
        margin). ``flow_options`` are passed to the flow (``loss``, ``alpha``,
        ``max_time``, ``max_wall``...).

    Parameters
    ----------
    kernel : None, "precomputed" or kernelcomp kernel, default None
        ``None`` means ``kc.NTK()``; any ``kc.NTK``, ``kc.NNGP`` or
        ``kc.EmpiricalNTK(net)``; with ``"precomputed"``, ``X`` is a Gram matrix:
        ``(n_train, n_train)`` in ``fit``, ``(n_test, n_train)`` afterwards.
    C : float, default 1.0
        Inverse regularisation of the soft margin, > 0 (as in ``SVC``). Use a
        large value (e.g. ``1e20``) for the paper's hard margin.
    solver : {"svc", "gradient_flow"}, default "svc"
    tol : float, default 1e-3
        Stopping tolerance of the SVC solver.
    class_weight : dict, "balanced" or None, default None
        As in ``SVC`` (``"svc"`` only).
    decision_function_shape : {"ovr", "ovo"}, default "ovr"
        As in ``SVC`` (multiclass only).
    break_ties : bool, default False
        As in ``SVC``.
    max_iter : int, default -1
        Iteration limit (-1: none): SVC solver iterations, or accepted flow steps.
    flow_options : dict, optional
        Keyword arguments of :func:`kernelcomp.training.kernel_gradient_flow`
        (``"gradient_flow"`` only).
    dtype : {None, "float32", "float64"}, default None
        dtype of the Gram matrices computed by kernelcomp; None gives float32
        when ``X`` is float32 (the solvers themselves work in float64).
    n_jobs : int, optional
        Threads for the Gram computation (None or -1: all).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    support_ : ndarray of shape (n_SV,)
        Indices of the support vectors (training points with a non-zero
        coefficient) in the training set.
    support_vectors_ : ndarray of shape (n_SV, n_features)
        The support vectors (empty when precomputed, as in ``SVC``).
    n_support_ : ndarray of shape (n_classes,)
    dual_coef_ : ndarray of shape (n_classes - 1, n_SV)
        Binary: ``decision_function(x) = k(x, support_vectors_) @ dual_coef_[0]
        + intercept_[0]``.
    intercept_ : ndarray of shape (n_classes * (n_classes - 1) / 2,)
    fit_status_ : int
        0 when the solver converged.
    n_iter_ : ndarray
        Solver iterations (per pair of classes for ``"svc"``; flow steps).
    svc_ : sklearn.svm.SVC
        The fitted precomputed-kernel SVC (``"svc"`` only).
    flow_result_ : kernelcomp.training.KernelFlowResult
        The flow's result, with its history (``"gradient_flow"`` only).
    kernel_ : Kernel or "precomputed"
    n_features_in_ : int

    Raises
    ------
    ValueError, TypeError
        From ``fit``/``predict`` for invalid parameters or inputs (one class,
        continuous targets, NaN, wrong shapes, unknown kernel or solver).

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When the gradient flow stops before every margin reached 1.

    See Also
    --------
    NTKRegressor : kernel ridge regression with the same kernels.
    sklearn.svm.SVC
    kernelcomp.training.kernel_gradient_flow

    References
    ----------
    Paccolat et al. (2021), J. Stat. Mech. 044001, §4-5 (kernel machines with
    the NTK frozen at initialisation and at the end of training; hard-margin
    SVM and gradient flow of the hinge loss).

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 3))
    >>> y = np.where(X[:, 0] > 0, "pos", "neg")
    >>> clf = kc.NTKClassifier(kc.NTK(depth=1), C=1e20).fit(X, y)
    >>> clf.classes_.tolist()
    ['neg', 'pos']
    >>> float(clf.score(X, y))
    1.0
    >>> flow = kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow").fit(X, y)
    >>> float(flow.score(X, y))
    1.0
    """

    def __init__(
        self,
        kernel: Any = None,
        C: float = 1.0,
        *,
        solver: str = "svc",
        tol: float = 1e-3,
        class_weight: Any = None,
        decision_function_shape: str = "ovr",
        break_ties: bool = False,
        max_iter: int = -1,
        flow_options: dict[str, Any] | None = None,
        dtype: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.kernel = kernel
        self.C = C
        self.solver = solver
        self.tol = tol
        self.class_weight = class_weight
        self.decision_function_shape = decision_function_shape
        self.break_ties = break_ties
        self.max_iter = max_iter
        self.flow_options = flow_options
        self.dtype = dtype
        self.n_jobs = n_jobs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        if self.solver == "gradient_flow":
            tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> dict[str, Any]:
        if self.solver not in _SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; expected one of {list(_SOLVERS)}")
        C = check_real(self.C, "C")
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        tol = check_real(self.tol, "tol")
        if tol <= 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        if self.decision_function_shape not in ("ovr", "ovo"):
            raise ValueError(
                "decision_function_shape must be 'ovr' or 'ovo', got "
                f"{self.decision_function_shape!r}"
            )
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, numbers.Integral):
            raise TypeError(f"max_iter must be an integer, got {self.max_iter!r}")
        if self.max_iter < -1 or self.max_iter == 0:
            raise ValueError(f"max_iter must be -1 (no limit) or >= 1, got {self.max_iter}")
        self._check_common_params()
        options: dict[str, Any] = {}
        if self.flow_options is not None:
            if not isinstance(self.flow_options, dict):
                raise TypeError(
                    "flow_options must be a dict of kernel_gradient_flow keyword arguments, "
                    f"got {type(self.flow_options).__name__}"
                )
            options = dict(self.flow_options)
        if self.solver == "gradient_flow":
            import inspect

            from kernelcomp.training import kernel_gradient_flow

            valid = set(inspect.signature(kernel_gradient_flow).parameters) - {"K", "y"}
            unknown = sorted(set(options) - valid)
            if unknown:
                raise ValueError(
                    f"unknown flow_options {unknown}; kernel_gradient_flow accepts {sorted(valid)}"
                )
            if self.max_iter != -1:
                options.setdefault("max_steps", int(self.max_iter))
        elif options:
            raise ValueError("flow_options only apply to solver='gradient_flow'")
        return options

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NTKClassifier:
        """Fit the kernel machine on the Gram matrix of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples, or their (n_samples, n_samples) Gram matrix when
            ``kernel="precomputed"``.
        y : array-like of shape (n_samples,)
            Class labels (any two or more values; two for ``"gradient_flow"``).
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample multipliers of ``C`` (as in ``SVC``; ``"svc"`` only).

        Returns
        -------
        self : NTKClassifier

        Raises
        ------
        ValueError
            For NaN/inf, empty or mismatched inputs, continuous or single-class
            targets, more than two classes with ``"gradient_flow"``, invalid
            ``C``/``tol``/``solver``, a non-square precomputed matrix or an
            unknown kernel string.
        TypeError
            For a kernel that is not a kernelcomp kernel, or non-numeric input.
        """
        kernel = _resolve_kernel(self.kernel)
        options = self._check_params()
        X, y = self._validate_fit_X(X, y)
        check_classification_targets(y)
        if self.solver == "gradient_flow":
            self._check_flow_inputs(y, sample_weight)
        K = self._train_gram(kernel, X)
        for stale in ("svc_", "flow_result_"):  # from an earlier fit with the other solver
            self.__dict__.pop(stale, None)
        self._solver = self.solver
        if self.solver == "svc":
            self._fit_svc(K, y, sample_weight)
        else:
            self._fit_flow(K, y, options)
        del K
        self.kernel_ = kernel
        if _is_precomputed(kernel):
            self.support_vectors_ = np.empty((0, 0), dtype=np.float64)
        else:
            self.support_vectors_ = X[self.support_]
        self._n_train = X.shape[0]
        self._gram_dtype = result_dtype(X, dtype=self.dtype)
        return self

    def _fit_svc(self, K: np.ndarray, y: np.ndarray, sample_weight: Any) -> None:
        svc = SVC(
            kernel="precomputed",
            C=float(self.C),
            tol=float(self.tol),
            class_weight=self.class_weight,
            decision_function_shape=self.decision_function_shape,
            break_ties=self.break_ties,
            max_iter=int(self.max_iter),
        )
        svc.fit(np.asarray(K, dtype=np.float64), y, sample_weight=sample_weight)
        self.svc_ = svc
        self.classes_ = svc.classes_
        self.support_ = svc.support_
        self.n_support_ = svc.n_support_
        self.dual_coef_ = svc.dual_coef_
        self.intercept_ = svc.intercept_
        self.fit_status_ = svc.fit_status_
        self.n_iter_ = svc.n_iter_

    def _check_flow_inputs(self, y: np.ndarray, sample_weight: Any) -> None:
        if sample_weight is not None:
            raise ValueError(
                "sample_weight is not supported by solver='gradient_flow' (the paper's flow "
                "weighs every sample equally); use solver='svc'"
            )
        if self.class_weight is not None:
            raise ValueError(
                "class_weight is not supported by solver='gradient_flow'; use solver='svc'"
            )
        n_classes = len(np.unique(y))
        if n_classes == 1:
            raise ValueError("solver='gradient_flow' needs two classes in y, got 1 class")
        if n_classes != 2:
            raise ValueError(
                "Only binary classification is supported by solver='gradient_flow'. The "
                f"target has {n_classes} classes; use solver='svc' for multiclass problems."
            )

    def _fit_flow(self, K: np.ndarray, y: np.ndarray, options: dict[str, Any]) -> None:
        from sklearn.exceptions import ConvergenceWarning

        from kernelcomp.training import kernel_gradient_flow

        classes, index = np.unique(y, return_inverse=True)
        signs = np.where(index == 1, 1.0, -1.0)
        result = kernel_gradient_flow(np.asarray(K, dtype=np.float64), signs, **options)
        if result.status != "converged":
            warnings.warn(
                f"The gradient flow stopped before every training margin reached 1 "
                f"(status {result.status!r} after {result.final.step} steps, "
                f"{result.final.n_unsat} of {len(y)} points below the margin, training error "
                f"{result.final.train_error:.3g}); relax the limits in flow_options or max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        coef = np.asarray(result.coef, dtype=np.float64)
        support = np.flatnonzero(coef)
        self.flow_result_ = result
        self.classes_ = classes
        self.support_ = support.astype(np.int32)
        self.n_support_ = np.array(
            [np.count_nonzero(index[support] == 0), np.count_nonzero(index[support] == 1)],
            dtype=np.int32,
        )
        self.dual_coef_ = coef[support][None, :]
        self.intercept_ = np.zeros(1)
        self.fit_status_ = 0 if result.status == "converged" else 1
        self.n_iter_ = np.array([result.final.step], dtype=np.int32)

    # -- prediction -----------------------------------------------------------------
    def _test_input(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=_FLOATS)

    def _flow_decision(self, X: np.ndarray) -> np.ndarray:
        coef = self.dual_coef_[0]
        if _is_precomputed(self.kernel_):
            return matmul(np.asarray(X[:, self.support_], dtype=np.float64), coef)
        out = np.zeros(X.shape[0], dtype=np.float64)
        if len(coef):
            for start, stop, block in self._iter_test_gram(
                X, self.support_vectors_, self._gram_dtype
            ):
                matmul(block, coef, out=out[start:stop])
        return out

    def _svc_apply(self, X: np.ndarray, name: str) -> np.ndarray:
        """Run the SVC method ``name`` on the test Gram matrix of ``X``, block by block."""
        method: Callable[[np.ndarray], np.ndarray] = getattr(self.svc_, name)
        if _is_precomputed(self.kernel_):
            return method(X)
        n_train, sv = self._n_train, self.support_
        rows = default_block_rows(X.shape[0], n_train, 8)
        # libsvm reads only the support-vector columns of a precomputed row:
        # compute those and leave the rest of the (reused) buffer at zero
        buffer = np.zeros((min(rows, X.shape[0]), n_train), dtype=np.float64)
        parts = []
        if len(sv) == 0:
            for start in range(0, X.shape[0], rows):
                stop = min(X.shape[0], start + rows)
                parts.append(method(buffer[: stop - start]))
        else:
            for start, stop, block in self._iter_test_gram(
                X, self.support_vectors_, self._gram_dtype, rows
            ):
                view = buffer[: stop - start]
                view[:, sv] = block
                parts.append(method(view))
        return np.concatenate(parts, axis=0)

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance to the margin, as ``SVC.decision_function``.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Samples, or their (n_test, n_train) Gram matrix against the
            training samples when ``kernel="precomputed"``.

        Returns
        -------
        ndarray of shape (n_test,) or (n_test, n_classes) / (n_test, n_pairs)
            Binary: positive values predict ``classes_[1]``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            For NaN/inf or a wrong number of features (columns).
        """
        X = self._test_input(X)
        if self._solver == "gradient_flow":
            return self._flow_decision(X)
        return self._svc_apply(X, "decision_function")

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels, as ``SVC.predict``.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Samples, or their Gram matrix when ``kernel="precomputed"``.

        Returns
        -------
        ndarray of shape (n_test,)
            Labels from ``classes_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            For NaN/inf or a wrong number of features (columns).
        """
        X = self._test_input(X)
        if self._solver == "gradient_flow":
            return self.classes_[(self._flow_decision(X) > 0).astype(np.intp)]
        return self._svc_apply(X, "predict")
