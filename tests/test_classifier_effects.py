"""The classifier's and the estimators' base class's remaining documented effects (issue 26).

Each test pins a behaviour that a surviving mutant of ``kernelcomp/estimators/_classifier.py``
or ``_base.py`` changed without any test failing (see ``tests/mutation_equivalents.md``),
against an independent oracle: scikit-learn's ``SVC(kernel="precomputed")`` on the same
Gram matrix, the Gram matrix itself times the dual coefficients, or the documented rule.
"""

from __future__ import annotations

import dataclasses
import re
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC
from sklearn.utils import get_tags

import kernelcomp as kc
from kernelcomp.estimators import _classifier
from kernelcomp.estimators._base import _symmetrize


def _labels(n=60, seed=0, d=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.where(X[:, 0] + 0.5 * rng.standard_normal(n) > 0, 1, 0)
    return X, y


def test_only_the_string_precomputed_makes_the_input_pairwise():
    # as SVC: the pairwise tag (how cross-validation splits X) is for "precomputed" only
    for kernel in ("rbf", "Precomputed", ""):
        assert get_tags(SVC(kernel=kernel)).input_tags.pairwise is False
        assert get_tags(kc.NTKClassifier(kernel)).input_tags.pairwise is False
        assert get_tags(kc.NTKRegressor(kernel)).input_tags.pairwise is False
    assert get_tags(kc.NTKRegressor("precomputed")).input_tags.pairwise is True


def test_symmetrize_makes_no_n_by_n_temporary():
    # documented: block by block, without an n x n temporary; the result is the
    # symmetric part and the defect max |K - K.T|
    n = 2048
    rng = np.random.default_rng(0)
    K = rng.standard_normal((n, n))
    want = 0.5 * (K + K.T)
    defect_want = float(np.max(np.abs(K - K.T)))
    tracemalloc.start()
    try:
        defect = _symmetrize(K)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(K, want)
    assert defect == defect_want
    # blocks of 512 rows: three 512 x n temporaries at most (8 MiB each, 24 MiB), under one
    # n x n (32 MiB); the whole matrix at once makes at least two n x n temporaries
    assert peak < K.nbytes, peak


def test_nested_parameter_messages_in_full():
    with pytest.raises(ValueError, match=r"^cannot set kernel parameters \['depth'\]: the kernel "
                                         r"str has no nested parameters \(pass a new kernel object "
                                         r"as kernel=\.\.\. instead\)$"):
        kc.NTKClassifier("precomputed").set_params(kernel__depth=2)
    names = sorted(f.name for f in dataclasses.fields(kc.NTK()) if f.init)
    with pytest.raises(ValueError, match=r"^invalid kernel parameter\(s\) \['foo'\] for NTK; "
                                         r"valid ones are " + re.escape(str(names)) + "$"):
        kc.NTKRegressor(kc.NTK()).set_params(kernel__foo=2)


def test_parameters_are_checked_before_the_data():
    # as scikit-learn's estimators: a bad dtype or n_jobs is named even when X is bad too
    bad_X = np.array([[np.nan, 1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match=r"^dtype must be float32, float64 or None, got int32$"):
        kc.NTKClassifier(dtype="int32").fit(bad_X, [0, 1])
    with pytest.raises(ValueError, match=r"^n_jobs must be a non-zero integer or None, got 0$"):
        kc.NTKRegressor(n_jobs=0).fit(bad_X, [0.0, 1.0])


def test_precomputed_fit_refuses_a_bad_n_jobs():
    # n_jobs does not reach a precomputed fit, but it is still refused there (not at predict)
    X, y = _labels(20)
    K = kc.gram(kc.NTK(depth=1), X)
    with pytest.raises(ValueError, match=r"^n_jobs must be a non-zero integer or None, got 0$"):
        kc.NTKClassifier("precomputed", n_jobs=0).fit(K, y)
    with pytest.raises(TypeError, match=r"^n_jobs must be an int or None, got float$"):
        kc.NTKRegressor("precomputed", n_jobs=1.0).fit(K, y.astype(float))


def test_an_asymmetric_precomputed_gram_reaches_svc_unchanged():
    # the classifier does not symmetrize (SVC does not): the same fit as SVC on the
    # same asymmetric matrix, and no asymmetry warning
    X, y = _labels(30)
    Xt, _ = _labels(9, 1)
    k = kc.NTK(depth=1)
    K = kc.gram(k, X)
    K += 0.05 * np.random.default_rng(2).standard_normal(K.shape)
    Kt = kc.gram(k, Xt, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = kc.NTKClassifier("precomputed").fit(K, y)
    ref = SVC(kernel="precomputed").fit(K, y)
    np.testing.assert_array_equal(ours.support_, ref.support_)
    np.testing.assert_array_equal(ours.dual_coef_, ref.dual_coef_)
    np.testing.assert_array_equal(ours.decision_function(Kt), ref.decision_function(Kt))


def test_asymmetry_warning_in_full():
    K = np.eye(3)
    K[0, 1] = 0.1
    with pytest.warns(UserWarning, match=r"^The precomputed Gram matrix is not symmetric "
                                         r"\(max \|K - K\.T\| = 0\.1, largest diagonal value 1\); "
                                         r"using its symmetric part \(K \+ K\.T\) / 2\.$"):
        kc.NTKRegressor("precomputed", alpha=1.0).fit(K, [1.0, 2.0, 3.0])


def test_flow_gram_dtype_asked_holds_at_test_time():
    # the flow's test Gram is computed in `dtype` (float32 here) from float64 rows:
    # decision = Kt(float32) @ dual_coef, not the float64 Gram's
    X, y = _labels(40)
    Xt, _ = _labels(15, 1)
    k = kc.NTK(depth=1)
    flow = kc.NTKClassifier(k, solver="gradient_flow", dtype="float32").fit(X, y)
    sv = X[flow.support_]
    Kt32 = kc.gram(k, Xt, sv, dtype="float32").astype(np.float64)
    Kt64 = kc.gram(k, Xt, sv)
    want = Kt32 @ flow.dual_coef_[0]
    got = flow.decision_function(Xt)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(Kt64 @ flow.dual_coef_[0] - want)) > 1e-9  # the two differ


def test_flow_predicts_the_first_class_at_a_zero_decision():
    # documented: positive decision values predict classes_[1]; zero is not positive
    # (as scikit-learn's linear classifiers: scores > 0)
    X, y = _labels(30)
    K = kc.gram(kc.NTK(depth=1), X)
    flow = kc.NTKClassifier("precomputed", solver="gradient_flow").fit(K, np.where(y, "b", "a"))
    Kt = np.vstack([np.zeros(len(X)), K[:3]])
    dec = flow.decision_function(Kt)
    assert dec[0] == 0.0
    pred = flow.predict(Kt)
    assert pred[0] == "a"
    np.testing.assert_array_equal(pred[1:], np.where(dec[1:] > 0, "b", "a"))


def test_parameter_messages_in_full():
    X, y = _labels()
    with pytest.raises(ValueError, match=r"^probability=True is not supported by "
                                         r"solver='gradient_flow' \(the paper's flow has no "
                                         r"calibrated probabilities\); use solver='svc'$"):
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow", probability=True).fit(X, y)
    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    with pytest.raises(ValueError, match=r"^Only binary classification is supported by "
                                         r"solver='gradient_flow'\. The target has 3 classes; use "
                                         r"solver='svc' for multiclass problems\.$"):
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow").fit(X, y3)


def test_refit_with_another_solver_leaves_no_stale_attribute():
    # an attribute documented for one solver (or for probability=True) is gone after a
    # refit that does not make it
    X, y = _labels(40)
    clf = kc.NTKClassifier(kc.NTK(depth=1), probability=True, random_state=0).fit(X, y)
    assert hasattr(clf, "svc_") and hasattr(clf, "calibrator_")
    clf.set_params(probability=False).fit(X, y)
    assert hasattr(clf, "svc_") and not hasattr(clf, "calibrator_")
    assert not hasattr(clf, "predict_proba")
    clf.set_params(solver="gradient_flow").fit(X, y)
    assert hasattr(clf, "flow_result_") and not hasattr(clf, "svc_")
    clf.set_params(solver="svc").fit(X, y)
    assert hasattr(clf, "svc_") and not hasattr(clf, "flow_result_")


def test_flow_platt_attributes_are_empty_arrays():
    # documented: probA_, probB_ empty without probability=True (the flow never has it)
    X, y = _labels(30)
    for solver in ("gradient_flow", "svc"):
        clf = kc.NTKClassifier(kc.NTK(depth=1), solver=solver).fit(X, y)
        for name in ("probA_", "probB_"):
            value = getattr(clf, name)
            assert isinstance(value, np.ndarray) and value.shape == (0,), (solver, name)
            assert value.dtype == np.float64


@pytest.mark.parametrize("support", [False, True])
def test_svc_predictions_in_several_row_blocks(monkeypatch, support):
    # 7 test rows in blocks of 2 (the last one shorter), with and without support
    # vectors (C times the class weights underflowing to 0 leaves none): SVC's results
    monkeypatch.setattr(_classifier, "default_block_rows", lambda n, m, itemsize: 2)
    X, y = _labels(30, d=2)
    Xt, _ = _labels(7, 1, d=2)
    k = kc.NTK(depth=1)
    kw = {"C": 1e-200, "class_weight": {0: 1e-200, 1: 1e-200}} if not support else {}
    ours = kc.NTKClassifier(k, probability=support, random_state=0, **kw).fit(X, y)
    ref = SVC(kernel="precomputed", **kw).fit(kc.gram(k, X), y)
    assert (ours.support_.size > 0) == support
    Kt = kc.gram(k, Xt, X)
    np.testing.assert_allclose(ours.decision_function(Xt), ref.decision_function(Kt),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ours.predict(Xt), ref.predict(Kt))
    if support:
        cal = CalibratedClassifierCV(
            SVC(kernel="precomputed"), method="sigmoid", ensemble=False,
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
        ).fit(kc.gram(k, X), y)
        np.testing.assert_allclose(ours.predict_proba(Xt), cal.predict_proba(Kt),
                                   rtol=1e-10, atol=1e-12)


def test_break_ties_reaches_svc_where_it_changes_a_prediction():
    # three classes with ovr votes tied at some test points: break_ties=True follows the
    # largest decision value (SVC with break_ties=True), not the first class of the tie
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    Xt = rng.standard_normal((200, 3))
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    ref = SVC(kernel="precomputed", break_ties=True, C=10.0).fit(K, y)
    plain = SVC(kernel="precomputed", C=10.0).fit(K, y)
    assert np.any(ref.predict(Kt) != plain.predict(Kt))  # some tie is broken differently
    ours = kc.NTKClassifier(k, break_ties=True, C=10.0).fit(X, y)
    np.testing.assert_array_equal(ours.predict(Xt), ref.predict(Kt))


def test_flow_convergence_warning_names_the_callers_line():
    X, y = _labels(30)
    with pytest.warns(ConvergenceWarning, match=r"^The gradient flow stopped before") as rec:
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow", max_iter=2).fit(X, y)
    assert [r.filename for r in rec] == [__file__]
