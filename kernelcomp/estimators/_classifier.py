"""The support vector machine with a frozen kernel: :class:`NTKClassifier`.

``solver="svc"`` delegates to ``sklearn.svm.SVC(kernel="precomputed")``;
``solver="gradient_flow"`` is the paper's hinge-loss gradient flow on the kernel
(:func:`kernelcomp.training.kernel_gradient_flow`).

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), *Geometric compression of
invariant manifolds in neural networks*, J. Stat. Mech. 044001, §2 and §5.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from kernelcomp._gram import default_block_rows
from kernelcomp._linalg import matmul
from kernelcomp._validation import (
    check_bool,
    check_choice,
    check_real,
    result_dtype,
)
from kernelcomp.estimators._base import _FLOATS, _is_precomputed, _KernelEstimator, _resolve_kernel
from kernelcomp.training import kernel_gradient_flow

#: the paper's hard margin: an SVM with this ``C`` (the authors' value) never
#: leaves a training margin below 1 on separable data
HARD_MARGIN_C: float = 1e20
_SOLVERS = ("svc", "gradient_flow")
#: folds of the cross-validation behind ``probability=True`` (libsvm's and Platt's 5)
_PLATT_FOLDS: int = 5


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
    probability : bool, default False
        Fit Platt's sigmoid on out-of-fold decision values and offer
        :meth:`predict_proba` / :meth:`predict_log_proba`, which do not exist
        otherwise. This is scikit-learn's replacement of the deprecated
        ``SVC(probability=True)``:
        ``CalibratedClassifierCV(SVC(kernel="precomputed"), ensemble=False)``
        (sigmoid method) on the same Gram matrix and ``SVC`` options, with a
        shuffled, stratified 5-fold cross-validation (six more SVC fits, so
        ``fit`` is slower, and each fold copies its 0.64 n^2 training block of
        the Gram); multiclass problems get one sigmoid per
        class (one-vs-rest), normalised to sum to 1. Every class needs at least 5
        training samples. ``"svc"`` only (the flow refuses it). The probabilities
        may disagree with :meth:`predict` near the boundary.
    random_state : int, RandomState or None, default None
        Seed of the shuffle of that cross-validation (``probability=True``).
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
    probA_, probB_ : ndarray of shape (1,) or (n_classes,)
        Platt's sigmoid parameters (``probability=True``; empty otherwise): the
        probability of ``classes_[1]`` (binary), or the unnormalised one of each
        class against the rest (multiclass), is ``1 / (1 + exp(probA_ * f +
        probB_))`` of the decision value ``f``.
    fit_status_ : int
        0 when the solver converged.
    n_iter_ : ndarray
        Solver iterations (per pair of classes for ``"svc"``; flow steps).
    svc_ : sklearn.svm.SVC
        The fitted precomputed-kernel SVC (``"svc"`` only).
    calibrator_ : sklearn.calibration.CalibratedClassifierCV
        The fitted sigmoid calibration of :meth:`predict_proba` on precomputed
        Gram matrices (``probability=True`` only).
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
        probability: bool = False,
        random_state: Any = None,
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
        self.probability = probability
        self.random_state = random_state
        self.flow_options = flow_options
        self.dtype = dtype
        self.n_jobs = n_jobs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        if self.solver == "gradient_flow":
            tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> dict[str, Any]:
        check_choice(self.solver, "solver", _SOLVERS)
        C = check_real(self.C, "C")
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        tol = check_real(self.tol, "tol")
        if tol <= 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        check_choice(self.decision_function_shape, "decision_function_shape", ("ovr", "ovo"))
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, numbers.Integral):
            raise TypeError(f"max_iter must be an integer, got {self.max_iter!r}")
        if self.max_iter < -1 or self.max_iter == 0:
            raise ValueError(f"max_iter must be -1 (no limit) or >= 1, got {self.max_iter}")
        check_bool(self.probability, "probability")
        if self.probability and self.solver == "gradient_flow":
            raise ValueError(
                "probability=True is not supported by solver='gradient_flow' (the paper's "
                "flow has no calibrated probabilities); use solver='svc'"
            )
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
        for stale in ("svc_", "flow_result_", "calibrator_"):  # from an earlier fit
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
        # never SVC's own probability=True: deprecated in scikit-learn 1.9, gone in 1.11
        svc = SVC(
            kernel="precomputed",
            C=float(self.C),
            tol=float(self.tol),
            class_weight=self.class_weight,
            decision_function_shape=self.decision_function_shape,
            break_ties=self.break_ties,
            max_iter=int(self.max_iter),
        )
        K = np.asarray(K, dtype=np.float64)
        svc.fit(K, y, sample_weight=sample_weight)
        self.svc_ = svc
        self.classes_ = svc.classes_
        self.support_ = svc.support_
        self.n_support_ = svc.n_support_
        self.dual_coef_ = svc.dual_coef_
        self.intercept_ = svc.intercept_
        self.probA_ = self.probB_ = np.empty(0)
        if self.probability:
            self._fit_platt(svc, K, y, sample_weight)
        self.fit_status_ = svc.fit_status_
        self.n_iter_ = svc.n_iter_

    def _fit_platt(self, svc: SVC, K: np.ndarray, y: np.ndarray, sample_weight: Any) -> None:
        """Platt scaling as scikit-learn recommends in place of ``SVC(probability=True)``."""
        # one decision value per class (one-vs-rest) whatever the shape asked for predict
        base = SVC(**(svc.get_params() | {"decision_function_shape": "ovr", "break_ties": False}))
        folds = StratifiedKFold(_PLATT_FOLDS, shuffle=True, random_state=self.random_state)
        calibrator = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=False)
        calibrator.fit(K, y, sample_weight=sample_weight)
        sigmoids = calibrator.calibrated_classifiers_[0].calibrators
        self.calibrator_ = calibrator
        self.probA_ = np.array([float(s.a_) for s in sigmoids])
        self.probB_ = np.array([float(s.b_) for s in sigmoids])

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
        self.probA_ = self.probB_ = np.empty(0)
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

    def _svc_apply(self, X: np.ndarray, method: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Run ``method`` (of ``svc_`` or ``calibrator_``) on the test Gram of ``X``, by blocks."""
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
        return self._svc_apply(X, self.svc_.decision_function)

    def _check_proba(self) -> bool:
        # available_if turns this into "has no attribute 'predict_proba'", as for SVC
        return bool(self.probability)

    @available_if(_check_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (Platt scaling of the decision values).

        Only with ``probability=True`` (otherwise the method does not exist, as
        in ``SVC``): ``CalibratedClassifierCV.predict_proba`` of the calibration
        fitted with the classifier (see ``probability``).

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Samples, or their Gram matrix when ``kernel="precomputed"``.

        Returns
        -------
        ndarray of shape (n_test, n_classes)
            Columns in the order of ``classes_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            For NaN/inf or a wrong number of features (columns).
        """
        X = self._test_input(X)
        return self._svc_apply(X, self.calibrator_.predict_proba)

    @available_if(_check_proba)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Samples, or their Gram matrix when ``kernel="precomputed"``.

        Returns
        -------
        ndarray of shape (n_test, n_classes)
        """
        return np.log(self.predict_proba(X))

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
        return self._svc_apply(X, self.svc_.predict)
