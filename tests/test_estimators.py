"""NTKRegressor / NTKClassifier: parity with sklearn on the same Gram, the sklearn contract."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

import kernelcomp as kc
import kernelcomp._gram
from kernelcomp import estimators as est
from kernelcomp._gram import gram
from kernelcomp.estimators import _base as est_base
from tests.conftest import tolerance


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _data(rng, n=60, m=25, d=4, dtype=np.float64):
    X = rng.standard_normal((n, d)).astype(dtype)
    Xt = rng.standard_normal((m, d)).astype(dtype)
    return X, Xt


# ----------------------------------------------------------------------- sklearn checks
def _expected_failures(estimator):
    if isinstance(estimator, kc.NTKRegressor) and estimator.solver == "falkon":
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "the Nystrom centres are drawn at random among the training rows, so a "
                "dataset with repeated rows gets other centres than the weighted one"
            ),
        }
    if isinstance(estimator, kc.NTKClassifier):
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "delegated to SVC, whose libsvm sample_weight rescales C per sample and is "
                "not equivalent to repeating samples (sklearn lists the same failure for SVC)"
            ),
        }
    return {}


# check_positive_only_tag_during_fit feeds the precomputed estimators iris minus its
# mean as a "Gram matrix": not positive definite, so the regressor warns and falls back
@pytest.mark.filterwarnings("ignore::kernelcomp.estimators.SingularKernelWarning")
@parametrize_with_checks(
    [
        kc.NTKRegressor(),
        kc.NTKClassifier(),
        kc.NTKRegressor(kernel="precomputed"),
        kc.NTKClassifier(kernel="precomputed"),
        kc.NTKRegressor(solver="falkon", n_centers=15, random_state=0, tol=1e-10),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------- regressor parity
# float32 solves need a ridge well above eps32 * ||K||: no float32 case at alpha=1e-6
@pytest.mark.parametrize(
    ("dtype", "alpha"),
    [
        (np.float64, 1e-6),
        (np.float64, 1e-2),
        (np.float64, 1.0),
        (np.float32, 1e-2),
        (np.float32, 1.0),
    ],
)
@pytest.mark.parametrize(
    "kernel",
    [kc.NTK(), kc.NNGP(depth=2, bias_std=0.3), kc.NTK(depth=3, activation="erf")],
    ids=["ntk1", "nngp2", "ntk3erf"],
)
@pytest.mark.parametrize("n_targets", [None, 3])
def test_regressor_matches_kernel_ridge(rng, dtype, tol, alpha, kernel, n_targets):
    X, Xt = _data(rng, dtype=dtype)
    y = rng.standard_normal(X.shape[0] if n_targets is None else (X.shape[0], n_targets))
    model = kc.NTKRegressor(kernel, alpha=alpha).fit(X, y)
    K, Kt = gram(kernel, X), gram(kernel, Xt, X)
    assert K.dtype == dtype and model.dual_coef_.dtype == dtype
    ref = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, y)
    pred = model.predict(Xt)
    assert pred.dtype == dtype and pred.shape == ref.predict(Kt).shape
    assert _rel(pred, ref.predict(Kt)) <= tol("solve")
    assert _rel(model.dual_coef_, ref.dual_coef_) <= tol("solve") * (1e2 if alpha < 1e-3 else 1)
    # the slow obvious oracle: a dense float64 solve
    coef = np.linalg.solve(K.astype(np.float64) + alpha * np.eye(len(K)), y)
    assert _rel(pred, Kt.astype(np.float64) @ coef) <= tol("solve")
    # "precomputed" gives the same model
    pre = kc.NTKRegressor("precomputed", alpha=alpha).fit(K, y)
    assert _rel(pre.predict(Kt), pred) <= tol("solve")


def test_regressor_sample_weight_matches_kernel_ridge(rng, dtype, tol):
    X, Xt = _data(rng, dtype=dtype)
    y = rng.standard_normal((X.shape[0], 2))
    sw = rng.uniform(0.0, 3.0, X.shape[0])
    sw[:5] = 0.0
    k = kc.NTK(depth=2)
    pred = kc.NTKRegressor(k, alpha=0.1).fit(X, y, sample_weight=sw).predict(Xt)
    ref = KernelRidge(alpha=0.1, kernel="precomputed").fit(gram(k, X), y, sample_weight=sw)
    assert _rel(pred, ref.predict(gram(k, Xt, X))) <= tol("solve")


def test_regressor_dtype_option(rng):
    X, Xt = _data(rng)
    y = rng.standard_normal(X.shape[0])
    m32 = kc.NTKRegressor(alpha=0.1, dtype="float32").fit(X, y)
    assert m32.dual_coef_.dtype == np.float32 and m32.predict(Xt).dtype == np.float32
    m64 = kc.NTKRegressor(alpha=0.1, dtype="float64").fit(X.astype(np.float32), y)
    assert m64.dual_coef_.dtype == np.float64
    assert _rel(m32.predict(Xt), m64.predict(Xt)) <= tolerance("solve", np.float32)


def test_regressor_n_jobs_does_not_change_results(rng):
    X, Xt = _data(rng)
    y = rng.standard_normal(X.shape[0])
    a = kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-3, n_jobs=1).fit(X, y).predict(Xt)
    b = kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-3, n_jobs=-1).fit(X, y).predict(Xt)
    np.testing.assert_array_equal(a, b)


def test_n_jobs_and_dtype_reach_the_kernel(rng, monkeypatch):
    X, Xt = _data(rng, n=30)
    y = np.where(X[:, 0] > 0, 1, -1)
    calls = []
    original_gram, original_context = est_base.gram, est_base.n_jobs_context

    def spy_gram(*args, **kwargs):
        calls.append(("gram", kwargs["n_jobs"], kwargs["dtype"]))
        return original_gram(*args, **kwargs)

    def spy_context(n_jobs):
        calls.append(("predict", n_jobs, None))
        return original_context(n_jobs)

    monkeypatch.setattr(est_base, "gram", spy_gram)
    monkeypatch.setattr(est_base, "n_jobs_context", spy_context)
    for model in (kc.NTKRegressor(n_jobs=1, dtype="float32"), kc.NTKClassifier(n_jobs=1)):
        calls.clear()
        model.fit(X, y).predict(Xt)
        assert calls == [("gram", 1, model.dtype), ("predict", 1, None)]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 25), n_targets=st.integers(1, 3))
def test_regressor_is_permutation_equivariant(seed, n, n_targets):
    """Reordering the training set does not change the model (property test)."""
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, 3))
    y = gen.standard_normal((n, n_targets))
    Xt = gen.standard_normal((5, 3))
    perm = gen.permutation(n)
    k = kc.NTK(depth=2, bias_std=0.1)
    a = kc.NTKRegressor(k, alpha=0.05).fit(X, y)
    b = kc.NTKRegressor(k, alpha=0.05).fit(X[perm], y[perm])
    np.testing.assert_allclose(b.dual_coef_, a.dual_coef_[perm], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.predict(Xt), a.predict(Xt), rtol=1e-9, atol=1e-12)


def test_regressor_predict_in_row_blocks(rng, dtype, monkeypatch):
    X, Xt = _data(rng, n=50, m=37, dtype=dtype)
    y = rng.standard_normal((50, 2))
    k = kc.NNGP(depth=2)
    model = kc.NTKRegressor(k, alpha=0.1).fit(X, y)
    full = gram(k, Xt, X) @ model.dual_coef_
    seen = []
    original = est_base.iter_gram_blocks

    def spy(*args, **kwargs):
        for block in original(*args, **kwargs):
            seen.append(block.stop - block.start)
            yield block

    monkeypatch.setattr(est_base, "iter_gram_blocks", spy)
    itemsize = np.dtype(dtype).itemsize
    monkeypatch.setattr(kernelcomp._gram, "_BLOCK_BYTES", 8 * 50 * itemsize)  # 8 rows per block
    pred = model.predict(Xt)
    assert seen == [8, 8, 8, 8, 5]
    assert _rel(pred, full) <= 10 * np.finfo(dtype).eps


# ----------------------------------------------------------------------- singular systems
def _pinv_solution(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(A.astype(np.float64))
    keep = np.abs(w) > len(w) * np.finfo(A.dtype).eps * np.abs(w).max()
    return V[:, keep] @ ((V[:, keep].T @ y) / w[keep][:, None])


def test_regressor_singular_system_warns_and_falls_back(rng, dtype, tol):
    X0 = rng.standard_normal((15, 3)).astype(dtype)
    X = np.vstack([X0, X0])  # every sample twice: K is singular, alpha=0
    y = rng.standard_normal((30, 2))
    k = kc.NTK(depth=2)
    with pytest.warns(est.SingularKernelWarning, match="singular or not positive definite"):
        model = kc.NTKRegressor(k, alpha=0.0).fit(X, y)
    assert np.isfinite(model.dual_coef_).all()
    K = gram(k, X)
    np.testing.assert_allclose(
        model.dual_coef_, _pinv_solution(K, y), rtol=0, atol=tol("solve") * 10
    )
    Xt = rng.standard_normal((10, 3)).astype(dtype)
    pred = model.predict(Xt)
    assert np.isfinite(pred).all()
    # averaging duplicates is the least-squares answer at the training points
    y_mean = 0.5 * (y[:15] + y[15:])
    assert _rel(model.predict(X0), y_mean) <= 100 * tol("solve")


def test_regressor_indefinite_precomputed_warns_and_matches_pinv(rng, dtype, tol):
    A = rng.standard_normal((20, 20))
    K = ((A + A.T) / 2).astype(dtype)  # symmetric, indefinite
    K_before = K.copy()
    y = rng.standard_normal(20)
    with pytest.warns(est.SingularKernelWarning, match="smallest eigenvalue is -"):
        model = kc.NTKRegressor("precomputed", alpha=0.5).fit(K, y)
    np.testing.assert_array_equal(K, K_before)  # the user's matrix is untouched
    ref = _pinv_solution(K + 0.5 * np.eye(20, dtype=dtype), y[:, None])[:, 0]
    assert _rel(model.dual_coef_, ref) <= tol("solve") * 10
    assert np.isfinite(model.predict(K[:5])).all()


def test_regressor_does_not_modify_precomputed_input(rng):
    X, _ = _data(rng)
    K = gram(kc.NTK(), X)
    K_before = K.copy()
    kc.NTKRegressor("precomputed", alpha=1e-3).fit(K, rng.standard_normal(len(K)))
    np.testing.assert_array_equal(K, K_before)
    kc.NTKClassifier("precomputed").fit(K, np.where(X[:, 0] > 0, 1, 0))
    np.testing.assert_array_equal(K, K_before)


@pytest.mark.parametrize("n", [1, 7, 512, 1030])
def test_symmetrize_matches_reference(rng, n):
    A = rng.standard_normal((n, n))
    expected, defect = (A + A.T) / 2, np.max(np.abs(A - A.T))
    assert est_base._symmetrize(A) == defect
    np.testing.assert_array_equal(A, expected)
    S = A + A.T
    S_before = S.copy()
    assert est_base._symmetrize(S) == 0.0
    np.testing.assert_array_equal(S, S_before)  # symmetric input: bit-for-bit unchanged


def test_regressor_asymmetric_precomputed_uses_symmetric_part(rng, dtype, tol):
    X, _ = _data(rng, n=30, dtype=dtype)
    k = kc.NTK()
    K = gram(k, X)
    noisy = K + (0.01 * rng.standard_normal(K.shape)).astype(dtype)
    y = rng.standard_normal(30)
    with pytest.warns(UserWarning, match=r"not symmetric .* using its symmetric part"):
        model = kc.NTKRegressor("precomputed", alpha=0.1).fit(noisy, y)
    ref = KernelRidge(alpha=0.1, kernel="precomputed").fit((noisy + noisy.T) / 2, y)
    assert _rel(model.dual_coef_, ref.dual_coef_) <= tol("solve")


# ----------------------------------------------------------------------- classifier parity
@pytest.mark.parametrize("C", [0.1, 1.0, 1e20])
@pytest.mark.parametrize("labels", ["strings", "multiclass"])
def test_classifier_matches_svc(rng, dtype, C, labels):
    X, Xt = _data(rng, n=80, m=30, dtype=dtype)
    if labels == "strings":
        y = np.where(X[:, 0] * X[:, 1] > 0, "same", "diff")
    else:
        y = np.digitize(X[:, 0] + 0.5 * X[:, 2], [-0.5, 0.5]) * 10 - 3  # -3, 7, 17
    k = kc.NTK(depth=2, bias_std=0.2)
    clf = kc.NTKClassifier(k, C=C).fit(X, y)
    K, Kt = gram(k, X).astype(np.float64), gram(k, Xt, X).astype(np.float64)
    ref = SVC(kernel="precomputed", C=C).fit(K, y)
    np.testing.assert_array_equal(clf.classes_, ref.classes_)
    np.testing.assert_array_equal(clf.support_, ref.support_)
    np.testing.assert_array_equal(clf.predict(Xt), ref.predict(Kt))
    np.testing.assert_allclose(clf.decision_function(Xt), ref.decision_function(Kt), atol=1e-6)
    np.testing.assert_allclose(clf.dual_coef_, ref.dual_coef_)
    np.testing.assert_array_equal(clf.support_vectors_, X[ref.support_])
    pre = kc.NTKClassifier("precomputed", C=C).fit(K, y)
    np.testing.assert_array_equal(pre.predict(Kt), ref.predict(Kt))
    np.testing.assert_allclose(pre.decision_function(Kt), ref.decision_function(Kt), atol=1e-6)


@pytest.mark.parametrize("labels", ["binary", "multiclass"])
def test_classifier_svc_conventions_and_probabilities(rng, dtype, labels):
    """classes_ order, decision_function shapes/signs and Platt probabilities as SVC's."""
    X, Xt = _data(rng, n=90, m=25, dtype=dtype)
    if labels == "binary":
        y = np.where(X[:, 0] + 0.3 * X[:, 1] > 0, "yes", "no")  # classes_ = ["no", "yes"]
    else:
        y = np.digitize(X[:, 0], [-0.4, 0.4]) * 2 - 5  # -5, -3, -1
    k = kc.NTK(depth=1, bias_std=0.1)
    K, Kt = gram(k, X).astype(np.float64), gram(k, Xt, X).astype(np.float64)
    with warnings.catch_warnings():  # no FutureWarning: SVC(probability=True) is not used
        warnings.simplefilter("error")
        clf = kc.NTKClassifier(k, C=2.0, probability=True, random_state=3).fit(X, y)
    ref = SVC(kernel="precomputed", C=2.0).fit(K, y)
    # scikit-learn's replacement of SVC(probability=True) on the same Gram and folds
    cal = CalibratedClassifierCV(
        SVC(kernel="precomputed", C=2.0), method="sigmoid", ensemble=False,
        cv=StratifiedKFold(5, shuffle=True, random_state=3),
    ).fit(K, y)
    np.testing.assert_array_equal(clf.classes_, ref.classes_)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    dec = clf.decision_function(Xt)
    assert dec.shape == ref.decision_function(Kt).shape
    if labels == "binary":
        assert dec.shape == (25,)  # positive values predict classes_[1]
        np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[(dec > 0).astype(int)])
    else:
        assert dec.shape == (25, 3)
    proba = clf.predict_proba(Xt)
    assert proba.shape == (25, len(clf.classes_))
    np.testing.assert_allclose(proba, cal.predict_proba(Kt), atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(Xt), np.log(cal.predict_proba(Kt)), atol=1e-5)
    sigmoids = cal.calibrated_classifiers_[0].calibrators
    assert clf.probA_.shape == clf.probB_.shape == (1 if labels == "binary" else 3,)
    np.testing.assert_allclose(clf.probA_, [s.a_ for s in sigmoids])
    np.testing.assert_allclose(clf.probB_, [s.b_ for s in sigmoids])
    pre = kc.NTKClassifier("precomputed", C=2.0, probability=True, random_state=3).fit(K, y)
    np.testing.assert_allclose(pre.predict_proba(Kt), cal.predict_proba(Kt), atol=1e-12)
    # without probability=True the methods do not exist, as in SVC
    with warnings.catch_warnings():  # scikit-learn >= 1.9 deprecates passing probability
        warnings.simplefilter("error")
        plain = kc.NTKClassifier(k, C=2.0).fit(X, y)
    assert plain.probA_.size == 0 and plain.probB_.size == 0
    assert not hasattr(plain, "predict_proba") and not hasattr(SVC(), "predict_proba")
    with pytest.raises(AttributeError, match="has no attribute 'predict_proba'"):
        plain.predict_proba(Xt)
    with pytest.raises(ValueError, match="probability=True is not supported by solver="):
        kc.NTKClassifier(k, solver="gradient_flow", probability=True).fit(X, y)
    with pytest.raises(TypeError, match="probability"):
        kc.NTKClassifier(k, probability=1).fit(X, y)


def test_classifier_binary_decision_formula(rng):
    X, Xt = _data(rng, n=70)
    y = np.where(X[:, 0] > 0.2, 1, -1)
    k = kc.NTK(depth=1)
    clf = kc.NTKClassifier(k, C=10.0).fit(X, y)
    manual = gram(k, Xt, clf.support_vectors_) @ clf.dual_coef_[0] + clf.intercept_[0]
    np.testing.assert_allclose(clf.decision_function(Xt), manual, atol=1e-10)
    assert set(clf.predict(Xt)) <= {-1, 1}


@pytest.mark.parametrize("shape", ["ovr", "ovo"])
def test_classifier_multiclass_options_match_svc(rng, shape):
    X, Xt = _data(rng, n=90, m=20)
    y = np.argmax(X[:, :4], axis=1)
    k = kc.NNGP(depth=1)
    clf = kc.NTKClassifier(k, C=5.0, decision_function_shape=shape, break_ties=shape == "ovr")
    clf.fit(X, y)
    ref = SVC(kernel="precomputed", C=5.0, decision_function_shape=shape)
    ref.set_params(break_ties=shape == "ovr").fit(gram(k, X), y)
    Kt = gram(k, Xt, X)
    assert clf.decision_function(Xt).shape == ref.decision_function(Kt).shape
    np.testing.assert_allclose(clf.decision_function(Xt), ref.decision_function(Kt), atol=1e-6)
    np.testing.assert_array_equal(clf.predict(Xt), ref.predict(Kt))


def test_classifier_predict_in_row_blocks(rng, monkeypatch):
    X, Xt = _data(rng, n=60, m=41)
    y = np.where(X[:, 0] > 0, "a", "b")
    k = kc.NTK(depth=2)
    clf = kc.NTKClassifier(k, C=1e3).fit(X, y)
    full_dec, full_pred = clf.decision_function(Xt), clf.predict(Xt)
    monkeypatch.setattr(kernelcomp._gram, "_BLOCK_BYTES", 60 * 8 * 7)  # 7 rows per block
    np.testing.assert_allclose(clf.decision_function(Xt), full_dec, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(Xt), full_pred)


def test_classifier_sample_and_class_weight_match_svc(rng):
    X, Xt = _data(rng, n=70)
    y = np.where(X[:, 1] > 0.3, 1, 0)
    sw = rng.uniform(0.5, 2.0, len(y))
    k = kc.NTK()
    clf = kc.NTKClassifier(k, C=2.0, class_weight="balanced").fit(X, y, sample_weight=sw)
    ref = SVC(kernel="precomputed", C=2.0, class_weight="balanced")
    ref.fit(gram(k, X), y, sample_weight=sw)
    np.testing.assert_allclose(
        clf.decision_function(Xt), ref.decision_function(gram(k, Xt, X)), atol=1e-6
    )


# ----------------------------------------------------------------------- gradient flow solver
def _stripe(n, seed):
    X, y = kc.datasets.stripe(n, 3, seed=seed)
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def test_gradient_flow_matches_kernel_gradient_flow():
    from kernelcomp.training import kernel_gradient_flow

    X, y = _stripe(30, 0)
    Xt, _ = _stripe(30, 1)
    labels = np.where(y > 0, "out", "in")  # classes_ = ["in", "out"]: "out" is +1
    k = kc.NTK(depth=1)
    clf = kc.NTKClassifier(k, solver="gradient_flow").fit(X, labels)
    ref = kernel_gradient_flow(gram(k, X), np.where(labels == "out", 1.0, -1.0))
    assert clf.flow_result_.status == ref.status == "converged"
    np.testing.assert_array_equal(clf.classes_, ["in", "out"])
    dec = clf.decision_function(Xt)
    assert _rel(dec, ref.decision_function(gram(k, Xt, X))) <= 1e-12
    np.testing.assert_array_equal(clf.predict(Xt), np.where(dec > 0, "out", "in"))
    assert clf.score(X, labels) == 1.0  # every training margin >= 1
    assert clf.fit_status_ == 0 and clf.n_iter_[0] == ref.final.step
    pre = kc.NTKClassifier("precomputed", solver="gradient_flow").fit(gram(k, X), labels)
    assert _rel(pre.decision_function(gram(k, Xt, X)), dec) <= 1e-12
    # refitting with the other solver forgets the flow
    clf.set_params(solver="svc", C=1e20).fit(X, labels)
    assert not hasattr(clf, "flow_result_")
    assert clf.score(X, labels) == 1.0


def test_gradient_flow_options_and_warning():
    X, y = _stripe(40, 0)
    clf = kc.NTKClassifier(solver="gradient_flow", max_iter=2)
    with pytest.warns(ConvergenceWarning, match="stopped before every training margin"):
        clf.fit(X, y)
    assert clf.fit_status_ == 1 and clf.flow_result_.final.step == 2
    soft = kc.NTKClassifier(solver="gradient_flow", flow_options={"loss": "soft_hinge"})
    assert soft.fit(X, y).flow_result_.status == "converged"


def test_gradient_flow_errors():
    X, y = _stripe(30, 0)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        kc.NTKClassifier(solver="gradient_flow").fit(X, np.arange(30) % 3)
    with pytest.raises(ValueError, match="two classes in y, got 1 class"):
        kc.NTKClassifier(solver="gradient_flow").fit(X, np.ones(30))
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        kc.NTKClassifier(solver="gradient_flow").fit(X, y, sample_weight=np.ones(30))
    with pytest.raises(ValueError, match="class_weight is not supported"):
        kc.NTKClassifier(solver="gradient_flow", class_weight="balanced").fit(X, y)
    with pytest.raises(ValueError, match=r"unknown flow_options \['step'\]"):
        kc.NTKClassifier(solver="gradient_flow", flow_options={"step": 1}).fit(X, y)
    with pytest.raises(ValueError, match="only apply to solver='gradient_flow'"):
        kc.NTKClassifier(flow_options={"loss": "hinge"}).fit(X, y)
    with pytest.raises(TypeError, match="flow_options must be a dict"):
        kc.NTKClassifier(solver="gradient_flow", flow_options=[("loss", "hinge")]).fit(X, y)
    with pytest.raises(ValueError, match=r"solver must be one of .*got 'smo'"):
        kc.NTKClassifier(solver="smo").fit(X, y)


# ----------------------------------------------------------------------- sklearn contract
@pytest.mark.parametrize(
    "model",
    [
        kc.NTKRegressor(kc.NNGP(depth=2), alpha=1e-3),
        kc.NTKClassifier(kc.NTK(depth=2), C=3.0),
        kc.NTKClassifier(
            kc.NTK(depth=1), solver="gradient_flow", flow_options={"loss": "soft_hinge"}
        ),
    ],
    ids=["regressor", "classifier", "flow"],
)
def test_clone_and_pickle(model):
    X, y = _stripe(40, 0)
    Xt, _ = _stripe(20, 1)
    cloned = clone(model)
    assert cloned.get_params() == model.get_params() and cloned is not model
    fitted = cloned.fit(X, y)
    assert not hasattr(model, "n_features_in_")  # fitting the clone left the original alone
    method = "predict" if isinstance(model, kc.NTKRegressor) else "decision_function"
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(getattr(restored, method)(Xt), getattr(fitted, method)(Xt))
    assert fitted.n_features_in_ == 3


def test_nested_kernel_parameters():
    model = kc.NTKRegressor()
    params = model.get_params()
    assert params["kernel__depth"] == 1 and params["kernel__activation"] == "relu"
    assert "kernel__depth" not in model.get_params(deep=False)
    model.set_params(kernel__depth=3, kernel__bias_std=0.5, alpha=0.2)
    assert model.kernel == kc.NTK(depth=3, bias_std=0.5) and model.alpha == 0.2
    clf = kc.NTKClassifier(kc.NNGP(depth=2)).set_params(kernel__activation="erf")
    assert clf.kernel == kc.NNGP(depth=2, activation="erf")
    with pytest.raises(ValueError, match=r"invalid kernel parameter\(s\) \['widht'\]"):
        kc.NTKRegressor().set_params(kernel__widht=3)
    with pytest.raises(ValueError, match="has no nested parameters"):
        kc.NTKRegressor("precomputed").set_params(kernel__depth=2)
    with pytest.raises(ValueError, match="Invalid parameter 'alhpa'"):
        kc.NTKRegressor().set_params(alhpa=1.0)


def test_pipeline_and_grid_search_regression(rng):
    X = rng.standard_normal((80, 3))
    # homogeneous of degree 1, like the bias-free ReLU NTK's functions
    y = np.abs(X[:, 0]) + 0.5 * X[:, 1] + 0.05 * rng.standard_normal(80)
    pipe = make_pipeline(StandardScaler(), kc.NTKRegressor())
    search = GridSearchCV(
        pipe,
        {"ntkregressor__alpha": [1e-3, 1e-1], "ntkregressor__kernel__depth": [1, 3]},
        cv=3,
        n_jobs=1,
    ).fit(X, y)
    assert search.best_params_["ntkregressor__kernel__depth"] in (1, 3)
    assert set(search.cv_results_["param_ntkregressor__alpha"]) == {1e-3, 1e-1}
    best = search.best_estimator_[-1]
    assert best.kernel_.depth == search.best_params_["ntkregressor__kernel__depth"]
    assert search.best_score_ > 0.9


def test_grid_search_over_kernel_objects(rng):
    X = rng.standard_normal((90, 3))
    y = np.where(X[:, 0] ** 2 + X[:, 1] ** 2 > 1.4, "out", "in")
    kernels = [kc.NTK(depth=1), kc.NNGP(depth=2), kc.NTK(depth=2, activation="erf")]
    search = GridSearchCV(
        kc.NTKClassifier(), {"kernel": kernels, "C": [1.0, 100.0]}, cv=3, n_jobs=1
    ).fit(X, y)
    assert search.best_params_["kernel"] in kernels
    assert len(search.cv_results_["params"]) == 6
    assert search.best_score_ > 0.7


def test_load_digits_parity_with_svc():
    digits = load_digits()
    X = digits.data[:600] - digits.data[:600].mean(axis=0)
    X *= np.sqrt(X.shape[1]) / np.linalg.norm(X, axis=1, keepdims=True)  # the paper's MNIST scaling
    y = np.where(digits.target[:600] % 2 == 0, "even", "odd")
    Xtr, Xte, ytr, yte = X[:400], X[400:], y[:400], y[400:]
    k = kc.NTK(depth=2)
    clf = kc.NTKClassifier(k, C=1e20).fit(Xtr, ytr)
    ref = SVC(kernel="precomputed", C=1e20).fit(gram(k, Xtr), ytr)
    Kte = gram(k, Xte, Xtr)
    np.testing.assert_array_equal(clf.predict(Xte), ref.predict(Kte))
    np.testing.assert_allclose(clf.decision_function(Xte), ref.decision_function(Kte), atol=1e-6)
    assert clf.score(Xte, yte) > 0.9
    reg = kc.NTKRegressor(k, alpha=1e-2).fit(Xtr, (ytr == "even").astype(float))
    krr = KernelRidge(alpha=1e-2, kernel="precomputed").fit(gram(k, Xtr), ytr == "even")
    assert _rel(reg.predict(Xte), krr.predict(Kte)) <= 1e-8
    scores = cross_val_score(make_pipeline(StandardScaler(), kc.NTKClassifier()), Xtr, ytr, cv=3)
    assert scores.mean() > 0.85


def test_empirical_ntk_kernel(rng):
    net = kc.FCNetwork.init(4, widths=[32], seed=3)
    e = kc.EmpiricalNTK(net)
    X, Xt = _data(rng, n=40, m=15, d=4)
    y = rng.standard_normal(40)
    model = kc.NTKRegressor(e, alpha=1e-2).fit(X, y)
    ref = KernelRidge(alpha=1e-2, kernel="precomputed").fit(e(X), y)
    assert _rel(model.predict(Xt), ref.predict(e(Xt, X))) <= 1e-8
    labels = np.where(X[:, 0] > 0, 1, -1)
    clf = kc.NTKClassifier(e, C=10.0).fit(X, labels)
    svc = SVC(kernel="precomputed", C=10.0).fit(e(X), labels)
    np.testing.assert_allclose(
        clf.decision_function(Xt), svc.decision_function(e(Xt, X)), atol=1e-6
    )
    np.testing.assert_array_equal(clone(model).fit(X, y).predict(Xt), model.predict(Xt))
    with pytest.raises(ValueError, match="X has 3 features, but the kernel EmpiricalNTK expects 4"):
        kc.NTKRegressor(e).fit(X[:, :3], y)


# ----------------------------------------------------------------------- bad input
def test_errors_at_fit(rng):
    X, _ = _data(rng, n=20)
    y = rng.standard_normal(20)
    labels = np.where(y > 0, 1, 0)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        kc.NTKRegressor().fit(Xnan, y)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        kc.NTKRegressor().fit(X, np.where(y > 1, np.nan, y))
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        kc.NTKRegressor("rbf").fit(X, y)
    with pytest.raises(TypeError, match="must be None, 'precomputed' or a kernelcomp kernel"):
        kc.NTKClassifier(lambda a, b: a @ b.T).fit(X, labels)
    with pytest.raises(ValueError, match=r"must be a square matrix.*Input is a 20x4 matrix"):
        kc.NTKRegressor("precomputed").fit(X, y)
    with pytest.raises(ValueError, match=r"must be a square matrix.*Input is a 20x4 matrix"):
        kc.NTKClassifier("precomputed").fit(X, labels)
    with pytest.raises(ValueError, match=r"alpha must be >= 0\.0, got -1\.0"):
        kc.NTKRegressor(alpha=-1.0).fit(X, y)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        kc.NTKRegressor(alpha="small").fit(X, y)
    with pytest.raises(ValueError, match=r"C must be > 0, got 0\.0"):
        kc.NTKClassifier(C=0.0).fit(X, labels)
    with pytest.raises(ValueError, match="tol must be > 0"):
        kc.NTKClassifier(tol=-1.0).fit(X, labels)
    with pytest.raises(ValueError,
                       match=r"decision_function_shape must be one of \['ovr', 'ovo'\]"):
        kc.NTKClassifier(decision_function_shape="ova").fit(X, labels)
    with pytest.raises(ValueError, match=r"max_iter must be -1 \(no limit\) or >= 1"):
        kc.NTKClassifier(max_iter=0).fit(X, labels)
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
        kc.NTKRegressor(n_jobs=0).fit(X, y)
    with pytest.raises(ValueError, match="dtype must be float32, float64 or None"):
        kc.NTKRegressor(dtype="int32").fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        kc.NTKClassifier().fit(X, y)
    with pytest.raises(ValueError, match="1 class"):
        kc.NTKClassifier().fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        kc.NTKRegressor().fit(X, y[:10])
    with pytest.raises(TypeError, match="dense data is required"):
        kc.NTKRegressor().fit(scipy.sparse.csr_matrix(X), y)


@pytest.mark.parametrize(
    "model",
    [kc.NTKRegressor(alpha=0.1), kc.NTKClassifier(), kc.NTKClassifier(solver="gradient_flow")],
    ids=["regressor", "classifier", "flow"],
)
def test_errors_at_predict(rng, model):
    # a fresh copy: the parametrized instance outlives one run of the session (pytest.main
    # called twice in one process, as mutmut does, would find it fitted)
    model = clone(model)
    X, _ = _stripe(30, 0)
    y = X[:, 0] if isinstance(model, kc.NTKRegressor) else np.where(X[:, 0] > 0, 1, -1)
    method = "predict" if isinstance(model, kc.NTKRegressor) else "decision_function"
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        getattr(model, method)(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    with pytest.raises(ValueError, match=r"X has 2 features, but .* is expecting 3 features"):
        getattr(model, method)(X[:, :2])
    bad = X[:4].copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        getattr(model, method)(bad)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        getattr(model, method)(X[0])


def test_precomputed_predict_needs_n_train_columns(rng):
    X, Xt = _data(rng, n=30)
    k = kc.NTK()
    K = gram(k, X)
    y = np.where(X[:, 0] > 0, 1, -1)
    for model in (kc.NTKRegressor("precomputed"), kc.NTKClassifier("precomputed")):
        model.fit(K, y)
        with pytest.raises(ValueError, match=r"X has 29 features, but .* is expecting 30"):
            model.predict(gram(k, Xt, X[:29]))


def test_gp_kernel_wrapper_is_accepted(rng):
    X, Xt = _data(rng, n=30)
    y = rng.standard_normal(30)
    wrapped = kc.gp.KernelcompKernel(kc.NNGP(depth=2))
    a = kc.NTKRegressor(wrapped, alpha=0.1).fit(X, y)
    b = kc.NTKRegressor(kc.NNGP(depth=2), alpha=0.1).fit(X, y)
    assert a.kernel_ == kc.NNGP(depth=2)
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    # nested parameters reach the wrapper the sklearn way
    assert a.get_params()["kernel__kernel"] == kc.NNGP(depth=2)
    a.set_params(kernel__kernel=kc.NTK(depth=3))
    assert a.kernel.kernel == kc.NTK(depth=3)
    assert a.fit(X, y).kernel_ == kc.NTK(depth=3)
