"""Each documented parameter of the estimators has its documented effect (issue 26).

The mutation round on ``kernelcomp/estimators`` (``make mutation``) ran no test on the
Dask route of ``NTKRegressor(solver="falkon")`` (the cluster test is not in the
mutation selection: it spawns worker processes) and left options whose effect no test
showed. Each test here compares with an independent oracle: the in-memory Falkon fit
on the same centres (Dask's threaded scheduler, no cluster), scikit-learn's ``SVC`` on
the same precomputed Gram, a by-hand computation.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

import kernelcomp as kc
from kernelcomp.estimators import SingularKernelWarning

da = pytest.importorskip("dask.array", reason="the optional Dask extra is not installed")

FALKON = {"alpha": 1e-2, "solver": "falkon", "n_centers": 30, "random_state": 0, "tol": 1e-12,
          "max_iter": 100}


def _data(n=90, d=3, seed=0, targets=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(n)
    if targets:
        y = np.column_stack([y] + [np.cos(X[:, j % d]) for j in range(targets - 1)])
    return X, y


@pytest.mark.parametrize("targets", [None, 2])
def test_falkon_on_dask_arrays_is_the_in_memory_fit(targets):
    X, y = _data(targets=targets)
    Xt, _ = _data(n=25, seed=1)
    k = kc.NTK(depth=2)
    local = kc.NTKRegressor(k, **FALKON).fit(X, y)
    Xd = da.from_array(X, chunks=(40, 3))
    yd = da.from_array(y, chunks=(40,) if y.ndim == 1 else (40, -1))
    dist = kc.NTKRegressor(k, **FALKON).fit(Xd, yd)
    np.testing.assert_array_equal(dist.center_indices_, local.center_indices_)
    np.testing.assert_array_equal(dist.X_fit_, local.X_fit_)
    assert dist.dual_coef_.shape == local.dual_coef_.shape
    np.testing.assert_allclose(dist.dual_coef_, local.dual_coef_, rtol=1e-9, atol=1e-12)
    assert dist.n_iter_ == local.n_iter_ and dist.n_features_in_ == 3
    assert dist.knm_route_ == "persisted" and dist.max_memory_ is None
    assert dist.kernel_ == k and dist.dual_coef_.flags.c_contiguous
    np.testing.assert_allclose(dist.predict(Xt), local.predict(Xt), rtol=1e-9, atol=1e-12)
    # predict on a Dask array: lazy, row chunks kept, the same values
    lazy = dist.predict(da.from_array(Xt, chunks=(10, 3)))
    assert lazy.chunks[0] == (10, 10, 5) and lazy.shape == local.predict(Xt).shape
    np.testing.assert_allclose(lazy.compute(), local.predict(Xt), rtol=1e-9, atol=1e-12)
    # a NumPy y with a Dask X (and the other way round) is chunked like the other
    mixed = kc.NTKRegressor(k, **FALKON).fit(Xd, y)
    np.testing.assert_allclose(mixed.dual_coef_, dist.dual_coef_, rtol=1e-12)
    mixed = kc.NTKRegressor(k, **FALKON).fit(X, yd)
    np.testing.assert_allclose(mixed.dual_coef_, dist.dual_coef_, rtol=1e-12)


def test_falkon_on_dask_weights_alpha_and_options_act_as_in_memory():
    X, y = _data()
    Xd, yd = da.from_array(X, chunks=(40, 3)), da.from_array(y, chunks=40)
    sw = np.random.default_rng(3).uniform(0.2, 3.0, X.shape[0])
    k = kc.NTK(depth=1)
    for kw in ({"alpha": 0.3}, {"n_centers": 12, "random_state": 5}, {"max_iter": 2},
               {"tol": 1e-2}):
        opts = FALKON | kw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a capped Falkon may warn that it stopped early
            local = kc.NTKRegressor(k, **opts).fit(X, y, sample_weight=sw)
            dist = kc.NTKRegressor(k, **opts).fit(Xd, yd, sample_weight=sw)
        assert dist.n_iter_ == local.n_iter_, kw
        np.testing.assert_allclose(dist.dual_coef_, local.dual_coef_, rtol=1e-8, atol=1e-12)
    # the weights act: unweighted is another fit
    plain = kc.NTKRegressor(k, **FALKON).fit(Xd, yd)
    weighted = kc.NTKRegressor(k, **FALKON).fit(Xd, yd, sample_weight=sw)
    assert not np.allclose(plain.dual_coef_, weighted.dual_coef_, rtol=1e-3)


@pytest.mark.parametrize(("x_dtype", "dtype", "want"), [
    (np.float32, None, np.float32), (np.float64, None, np.float64),
    (np.float32, "float64", np.float64), (np.float64, "float32", np.float32),
    (np.int64, None, np.float64),
])
def test_falkon_on_dask_dtype_rule(x_dtype, dtype, want):
    X, y = _data()
    X = (X * (100 if x_dtype == np.int64 else 1)).astype(x_dtype)
    Xd, yd = da.from_array(X, chunks=(40, 3)), da.from_array(y, chunks=40)
    opts = FALKON | {"alpha": 1.0}
    dist = kc.NTKRegressor(kc.NTK(depth=1), dtype=dtype, **opts).fit(Xd, yd)
    local = kc.NTKRegressor(kc.NTK(depth=1), dtype=dtype, **opts).fit(
        X.astype(np.float64) if x_dtype == np.int64 else X, y)
    assert dist.dual_coef_.dtype == want and dist.X_fit_.dtype == want
    rtol = 1e-9 if want == np.float64 else 2e-3
    np.testing.assert_allclose(dist.dual_coef_, local.dual_coef_, rtol=rtol,
                               atol=rtol * np.abs(local.dual_coef_).max())


def test_falkon_on_dask_messages():
    X, y = _data()
    Xd, yd = da.from_array(X, chunks=(40, 3)), da.from_array(y, chunks=40)
    reg = kc.NTKRegressor(kc.NTK(depth=1), **FALKON)
    with pytest.raises(ValueError, match=r"^X must be 2-D, got 1-D$"):
        reg.fit(da.from_array(X[:, 0], chunks=40), yd)
    with pytest.raises(ValueError, match=r"^X has 90 samples but y has 80$"):
        reg.fit(Xd, da.from_array(y[:80], chunks=40))
    with pytest.raises(ValueError, match=r"^the row chunks of X \(40, 40, 10\) and y "
                                         r"\(30, 30, 30\) differ; rechunk them alike"):
        reg.fit(Xd, da.from_array(y, chunks=30))
    net = kc.FCNetwork.init(4, [8], seed=0)
    with pytest.raises(ValueError, match=r"^X has 3 features, but the kernel expects 4$"):
        kc.NTKRegressor(kc.EmpiricalNTK(net), **FALKON).fit(Xd, yd)
    with pytest.raises(TypeError, match=r"^X must hold real numbers"):
        reg.fit(Xd.astype(np.complex128), yd)
    with pytest.raises(TypeError, match=r"^y must hold real numbers"):
        reg.fit(Xd, yd.astype(np.complex128))
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"^X contains NaN or infinity$"):
        kc.NTKRegressor(kc.NTK(depth=1), **(FALKON | {"n_centers": 90})).fit(
            da.from_array(bad, chunks=(40, 3)), yd)
    ybad = y.copy()
    ybad[3] = np.inf
    with pytest.raises(ValueError, match=r"^y contains NaN or infinity; all targets must be "
                                         r"finite$"):
        reg.fit(Xd, da.from_array(ybad, chunks=40))
    for sw in (np.ones(80), -np.ones(90), np.full(90, np.nan)):
        with pytest.raises(ValueError, match=r"^sample_weight must be n finite non-negative"):
            reg.fit(Xd, yd, sample_weight=sw)
    with pytest.raises(ValueError, match=r"^X must have 3 features$"):
        reg.fit(Xd, yd).predict(da.from_array(X[:, :2], chunks=(40, 2)))
    with pytest.raises(ValueError, match=r"Dask arrays are fitted by solver='falkon' with a "
                                         r"kernel object; got solver='cholesky'"):
        kc.NTKRegressor(kc.NTK(depth=1)).fit(Xd, yd)
    with pytest.raises(ValueError, match=r"got solver='falkon', kernel='precomputed'"):
        kc.NTKRegressor("precomputed", solver="falkon").fit(Xd, yd)


# ------------------------------------------------------------------ classifier options
def _labels(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = np.where(X[:, 0] + 0.5 * rng.standard_normal(n) > 0, 1, 0)
    return X, y


def test_classifier_forwards_every_svc_option():
    X, y = _labels()
    Xt, _ = _labels(20, 1)
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    for kw in ({"C": 0.3}, {"tol": 0.5}, {"class_weight": {0: 5.0, 1: 0.2}},
               {"class_weight": "balanced"}, {"max_iter": 3}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter=3 stops libsvm early
            ours = kc.NTKClassifier(k, **kw).fit(X, y)
            ref = SVC(kernel="precomputed", **kw).fit(K, y)
        np.testing.assert_array_equal(ours.support_, ref.support_)
        np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, rtol=1e-10)
        np.testing.assert_allclose(ours.decision_function(Xt), ref.decision_function(Kt),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(ours.n_iter_, ref.n_iter_)
        assert ours.fit_status_ == ref.fit_status_


def _platt_reference(K, y, seed, sample_weight=None, **svc):
    """scikit-learn's replacement of ``SVC(probability=True)`` on a precomputed Gram."""
    return CalibratedClassifierCV(
        SVC(kernel="precomputed", **svc), method="sigmoid", ensemble=False,
        cv=StratifiedKFold(5, shuffle=True, random_state=seed),
    ).fit(K, y, sample_weight=sample_weight)


def test_classifier_probability_and_its_seed():
    X, y = _labels(80)
    Xt, _ = _labels(15, 2)
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning: SVC(probability=True) is not used
        ours = kc.NTKClassifier(k, probability=True, random_state=3).fit(X, y)
        proba = ours.predict_proba(Xt)
    ref = _platt_reference(K, y, 3)
    np.testing.assert_allclose(proba, ref.predict_proba(Kt), rtol=1e-9)
    sigmoid = ref.calibrated_classifiers_[0].calibrators[0]
    np.testing.assert_allclose(ours.probA_, [sigmoid.a_], rtol=1e-12)
    np.testing.assert_allclose(ours.probB_, [sigmoid.b_], rtol=1e-12)
    # by hand: the probability of classes_[1] is the sigmoid of the decision value
    f = ours.decision_function(Xt)
    p1 = 1.0 / (1.0 + np.exp(ours.probA_[0] * f + ours.probB_[0]))
    np.testing.assert_allclose(proba, np.column_stack([1.0 - p1, p1]), rtol=1e-12)
    np.testing.assert_allclose(ours.predict_log_proba(Xt), np.log(proba), rtol=1e-12)
    # the calibration's own SVC is the classifier's: the same decision values
    np.testing.assert_allclose(ours.calibrator_.calibrated_classifiers_[0].estimator
                               .decision_function(Kt), f, rtol=1e-12)  # fmt: skip
    other = kc.NTKClassifier(k, probability=True, random_state=4).fit(X, y)
    assert not np.allclose(other.probA_, ours.probA_, rtol=1e-6)
    np.testing.assert_allclose(other.predict_proba(Xt), _platt_reference(K, y, 4)
                               .predict_proba(Kt), rtol=1e-9)  # fmt: skip
    plain = kc.NTKClassifier(k).fit(X, y)
    assert plain.probA_.size == 0 and plain.probB_.size == 0
    assert not hasattr(plain, "predict_proba") and not hasattr(plain, "calibrator_")
    # a refit without probability drops the calibration of the previous fit
    ours.set_params(probability=False).fit(X, y)
    assert not hasattr(ours, "calibrator_") and ours.probA_.size == 0


def test_classifier_probability_honours_the_svc_options_and_weights():
    X, y = _labels(80)
    Xt, _ = _labels(15, 2)
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    sw = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    for kw, weights in [({"C": 0.3}, None), ({"class_weight": {0: 5.0, 1: 0.2}}, None),
                        ({"tol": 0.5}, None), ({}, sw)]:
        ours = kc.NTKClassifier(k, probability=True, random_state=1, **kw).fit(
            X, y, sample_weight=weights)
        ref = _platt_reference(K, y, 1, sample_weight=weights, **kw)
        np.testing.assert_allclose(ours.predict_proba(Xt), ref.predict_proba(Kt), rtol=1e-9,
                                   err_msg=str(kw))
    plain = kc.NTKClassifier(k, probability=True, random_state=1).fit(X, y)
    assert not np.allclose(plain.predict_proba(Xt), ours.predict_proba(Xt), rtol=1e-3)


@pytest.mark.parametrize("kw", [{}, {"decision_function_shape": "ovo"}, {"break_ties": True}])
def test_classifier_multiclass_probability_is_one_sigmoid_per_class(kw):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((90, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5]) * 3  # classes 0, 3, 6
    Xt = rng.standard_normal((20, 3))
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = kc.NTKClassifier(k, probability=True, random_state=2, **kw).fit(X, y)
        proba = ours.predict_proba(Xt)
    # the decision shape asked for is the classifier's; the calibration is one-vs-rest
    ref = _platt_reference(K, y, 2)
    np.testing.assert_allclose(proba, ref.predict_proba(Kt), rtol=1e-9, atol=1e-15)
    assert ours.probA_.shape == ours.probB_.shape == (3,)
    f = SVC(kernel="precomputed").fit(K, y).decision_function(Kt)  # (20, 3), one-vs-rest
    raw = 1.0 / (1.0 + np.exp(ours.probA_ * f + ours.probB_))
    np.testing.assert_allclose(proba, raw / raw.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(Xt), SVC(kernel="precomputed", **kw).fit(K, y)
                                  .predict(Kt))  # fmt: skip
    assert ours.decision_function(Xt).shape == (20, 3)  # ovo with 3 classes: 3 pairs too


def test_classifier_probability_needs_five_samples_per_class():
    X, y = _labels(40)
    y[np.flatnonzero(y == 1)[4:]] = 0  # four samples of class 1
    with pytest.raises(ValueError, match=r"Requesting 5-fold cross-validation but provided less "
                                         r"than 5 examples for at least one class"):
        kc.NTKClassifier(kc.NTK(depth=1), probability=True).fit(X, y)
    y[np.flatnonzero(y == 0)[0]] = 1  # five: enough
    kc.NTKClassifier(kc.NTK(depth=1), probability=True, random_state=0).fit(X, y)


def test_classifier_break_ties_and_decision_shape_reach_svc():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # three classes
    Xt = rng.standard_normal((40, 3))
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    for kw in ({"decision_function_shape": "ovo"}, {"break_ties": True, "C": 0.05}):
        ours = kc.NTKClassifier(k, **kw).fit(X, y)
        ref = SVC(kernel="precomputed", **kw).fit(K, y)
        np.testing.assert_allclose(ours.decision_function(Xt), ref.decision_function(Kt),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(ours.predict(Xt), ref.predict(Kt))


def test_classifier_parameter_bounds_and_messages():
    X, y = _labels()
    fit = lambda **kw: kc.NTKClassifier(kc.NTK(depth=1), **kw).fit(X, y)  # noqa: E731
    # the edges that are allowed: max_iter = -1 and 1, tiny positive C and tol
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(max_iter=1)
    fit(max_iter=-1, C=1e-8, tol=1e-12)
    for kw, exc, msg in [
        ({"C": 0.0}, ValueError, r"^C must be > 0, got 0.0$"),
        ({"C": "a"}, TypeError, r"^C must be a real number"),
        ({"tol": 0.0}, ValueError, r"^tol must be > 0, got 0.0$"),
        ({"tol": "a"}, TypeError, r"^tol must be a real number"),
        ({"max_iter": 0}, ValueError, r"^max_iter must be -1 \(no limit\) or >= 1, got 0$"),
        ({"max_iter": -2}, ValueError, r"^max_iter must be -1 \(no limit\) or >= 1, got -2$"),
        ({"max_iter": True}, TypeError, r"^max_iter must be an integer, got True$"),
        ({"max_iter": 2.0}, TypeError, r"^max_iter must be an integer, got 2.0$"),
        ({"decision_function_shape": "ova"}, ValueError,
         r"^decision_function_shape must be one of \['ovr', 'ovo'\], got 'ova'$"),
        ({"solver": "smo"}, ValueError, r"^solver must be one of \['svc', 'gradient_flow'\]"),
        ({"probability": 1}, TypeError, r"^probability must be True or False"),
        ({"solver": "gradient_flow", "probability": True}, ValueError,
         r"^probability=True is not supported by solver='gradient_flow'"),
        ({"flow_options": [("loss", "hinge")]}, TypeError,
         r"^flow_options must be a dict of kernel_gradient_flow keyword arguments, got list$"),
        ({"flow_options": {"loss": "hinge"}}, ValueError,
         r"^flow_options only apply to solver='gradient_flow'$"),
        ({"solver": "gradient_flow", "flow_options": {"steps": 3}}, ValueError,
         r"^unknown flow_options \['steps'\]; kernel_gradient_flow accepts \["),
        ({"dtype": "float16"}, ValueError, r"dtype"),
    ]:
        with pytest.raises(exc, match=msg):
            fit(**kw)


def test_flow_max_iter_caps_the_steps_unless_flow_options_do():
    X, y = _labels()
    k = kc.NTK(depth=1)
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match=r"status 'max_steps' after 3 steps"):
        capped = kc.NTKClassifier(k, solver="gradient_flow", max_iter=3).fit(X, y)
    assert capped.n_iter_.tolist() == [3] and capped.fit_status_ == 1
    K = kc.gram(k, X)
    ref = kc.training.kernel_gradient_flow(K, np.where(y == 1, 1.0, -1.0), max_steps=3)
    np.testing.assert_allclose(capped.flow_result_.coef, ref.coef, rtol=1e-12)
    # an explicit max_steps in flow_options wins over max_iter
    with pytest.warns(ConvergenceWarning, match=r"after 5 steps"):
        own = kc.NTKClassifier(k, solver="gradient_flow", max_iter=3,
                               flow_options={"max_steps": 5}).fit(X, y)
    assert own.n_iter_.tolist() == [5]
    full = kc.NTKClassifier(k, solver="gradient_flow").fit(X, y)
    assert full.fit_status_ == 0 and full.flow_result_.status == "converged"
    assert full.n_iter_.dtype == np.int32 and full.support_.dtype == np.int32
    # the flow's classes: signs -1 / +1 for classes_[0] / classes_[1], no intercept
    np.testing.assert_array_equal(full.intercept_, [0.0])
    coef = full.flow_result_.coef
    np.testing.assert_array_equal(full.support_, np.flatnonzero(coef))
    np.testing.assert_array_equal(full.dual_coef_, coef[np.flatnonzero(coef)][None, :])
    np.testing.assert_array_equal(full.n_support_, [np.sum(y[full.support_] == 0),
                                                    np.sum(y[full.support_] == 1)])


# ------------------------------------------------------------------ the exact solve's fallback
def test_singular_fallback_counts_the_eigenvalues_it_cuts():
    # K = v v^T + u u^T: rank 2 of 5; with alpha = 0 three eigenvalues are zero to round-off
    rng = np.random.default_rng(11)
    V = rng.standard_normal((5, 2))
    K = V @ V.T
    y = rng.standard_normal(5)
    est = kc.NTKRegressor("precomputed", alpha=0.0)
    with pytest.warns(SingularKernelWarning,
                      match=r"K \+ alpha\*I \(n=5, alpha=0, dtype=float64\) is singular or not "
                            r"positive definite: the Cholesky factorisation failed .*"
                            r"\(3 of 5 eigenvalues treated as zero\)"):
        est.fit(K, y)
    # the minimum-norm least-squares solution: numpy's pseudo-inverse
    np.testing.assert_allclose(est.dual_coef_, np.linalg.pinv(K, hermitian=True) @ y,
                               rtol=1e-8)
    # the smallest eigenvalue is reported: here a round-off zero
    with pytest.warns(SingularKernelWarning) as rec:
        kc.NTKRegressor("precomputed", alpha=0.0).fit(K, y)
    found = re.search(r"smallest eigenvalue is (\S+)\. Using", str(rec[0].message))
    assert abs(float(found.group(1))) < 1e-12 * np.linalg.eigvalsh(K).max()
    assert float(found.group(1)) == pytest.approx(np.linalg.eigvalsh(K).min(), abs=1e-12)


def test_empirical_kernel_width_mismatch_names_the_network():
    net = kc.FCNetwork.init(4, [8], seed=0)
    X = np.random.default_rng(0).standard_normal((6, 3))
    msg = (r"^X has 3 features, but the kernel EmpiricalNTK expects 4 \(the input dimension of "
           r"its network\)$")
    with pytest.raises(ValueError, match=msg):
        kc.NTKRegressor(kc.EmpiricalNTK(net)).fit(X, X[:, 0])
    with pytest.raises(ValueError, match=msg):
        kc.NTKClassifier(kc.EmpiricalNTK(net)).fit(X, X[:, 0] > 0)


@pytest.mark.parametrize("cls", [kc.NTKRegressor, kc.NTKClassifier])
def test_kernel_messages_in_full(cls):
    X, y = _labels(10)
    unknown = (r"^unknown kernel 'ntk'; expected None \(kc.NTK\(\)\), 'precomputed' or a "
               r"kernelcomp kernel object such as kc.NTK\(depth=2\), kc.NNGP\(\) or "
               r"kc.EmpiricalNTK\(net\)$")
    with pytest.raises(ValueError, match=unknown):
        cls("ntk").fit(X, y)
    wrong = (r"^kernel must be None, 'precomputed' or a kernelcomp kernel \(kc.NTK\(\), "
             r"kc.NNGP\(\), kc.EmpiricalNTK\(net\)\), got int$")
    with pytest.raises(TypeError, match=wrong):
        cls(3).fit(X, y)
    with pytest.raises(ValueError, match=r"^Precomputed matrix must be a square matrix \(the Gram "
                                         r"matrix of the training samples\). Input is a 10x3 "
                                         r"matrix.$"):
        cls("precomputed").fit(X, y)


@pytest.mark.parametrize(("k_dtype", "dtype", "want"), [
    (np.float32, "float64", np.float64), (np.float64, "float32", np.float32),
    (np.float32, None, np.float32),
])
def test_precomputed_gram_is_solved_in_the_dtype_asked(k_dtype, dtype, want):
    X, y = _data(40)
    K = kc.gram(kc.NTK(depth=1), X)
    est = kc.NTKRegressor("precomputed", alpha=1e-2, dtype=dtype).fit(K.astype(k_dtype), y)
    assert est.dual_coef_.dtype == want
    ref = np.linalg.solve(K.astype(k_dtype).astype(np.float64) + 1e-2 * np.eye(40), y)
    rtol = 1e-8 if want == np.float64 else 2e-3
    np.testing.assert_allclose(est.dual_coef_, ref, rtol=rtol, atol=rtol * np.abs(ref).max())



# ------------------------------------------------------------------ second mutation pass
def test_a_solution_that_overflows_the_dtype_is_refused_not_nan():
    # the exact solution 1e10 / 1e-300 = 1e310 is not a float64: the Cholesky solution is
    # not finite and neither is the pseudo-inverse's; the fit says so instead of NaN
    msg = (r"^The kernel ridge solution overflows float64 \(n=3, alpha=0; the Cholesky "
           r"solution is not finite, and so does the eigendecomposition's, with smallest "
           r"eigenvalue 1e-300\): the targets are too large")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow on the way
        with pytest.raises(ValueError, match=msg):
            kc.NTKRegressor("precomputed", alpha=0.0).fit(1e-300 * np.eye(3), np.full(3, 1e10))
        # float32: 1e10 / 1e-30 overflows; the same system in float64 is solved exactly
        K = np.float32(1e-30) * np.eye(3, dtype=np.float32)
        with pytest.raises(ValueError, match=r"^The kernel ridge solution overflows float32"):
            kc.NTKRegressor("precomputed", alpha=0.0).fit(K, np.full(3, 1e10))
        est = kc.NTKRegressor("precomputed", alpha=0.0, dtype="float64").fit(K, np.full(3, 1e10))
    np.testing.assert_allclose(est.dual_coef_, 1e10 / np.float64(np.float32(1e-30)), rtol=1e-12)


def test_precomputed_predictions_are_in_the_dtype_of_the_fit():
    X, y = _data(30)
    Xt, _ = _data(7, seed=1)
    k = kc.NTK(depth=1)
    K, Kt = kc.gram(k, X), kc.gram(k, Xt, X)
    f32 = kc.NTKRegressor("precomputed", alpha=1e-2, dtype="float32").fit(K, y)
    out = f32.predict(Kt)  # a float64 test Gram against a float32 fit
    assert f32.dual_coef_.dtype == np.float32 and out.dtype == np.float32
    np.testing.assert_allclose(out, Kt.astype(np.float32) @ f32.dual_coef_, rtol=1e-5)
    f64 = kc.NTKRegressor("precomputed", alpha=1e-2).fit(K, y)
    out = f64.predict(Kt.astype(np.float32))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, Kt.astype(np.float32).astype(np.float64) @ f64.dual_coef_,
                               rtol=1e-12)


def test_flow_options_cannot_name_the_flow_inputs():
    X, y = _labels()
    for name in ("K", "y"):
        with pytest.raises(ValueError, match=rf"^unknown flow_options \['{name}'\]"):
            kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow",
                             flow_options={name: None}).fit(X, y)


@pytest.mark.parametrize("on_dask", [False, True])
def test_falkon_progress_reaches_the_bar(monkeypatch, on_dask):
    import contextlib

    from kernelcomp import _falkon

    seen = []

    class Bar:
        def update(self, k):
            pass

        def set_postfix(self, **kw):
            pass

    @contextlib.contextmanager
    def spy(enabled, **kw):
        seen.append(enabled)
        yield Bar()

    monkeypatch.setattr(_falkon, "progress_bar", spy)
    X, y = _data(40)
    if on_dask:
        X, y = da.from_array(X, chunks=(20, 3)), da.from_array(y, chunks=20)
    for progress in (True, False, None):
        kw = {} if progress is None else {"progress": progress}  # None: the default, off
        kc.NTKRegressor(kc.NTK(depth=1), **(FALKON | {"n_centers": 10, "max_iter": 3}),
                        **kw).fit(X, y)
    assert seen == [True, False, False]


def test_flow_refuses_a_single_class_in_full():
    X, _ = _labels()
    with pytest.raises(ValueError, match=r"^solver='gradient_flow' needs two classes in y, got 1 "
                                         r"class$"):
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow").fit(X, np.ones(len(X)))


def test_precomputed_classifier_has_empty_support_vectors_as_svc():
    X, y = _labels()
    K = kc.gram(kc.NTK(depth=1), X)
    clf = kc.NTKClassifier("precomputed").fit(K, y)
    ref = SVC(kernel="precomputed").fit(K, y)
    assert isinstance(clf.support_vectors_, np.ndarray)
    assert clf.support_vectors_.shape == ref.support_vectors_.shape == (0, 0)
    assert clf.support_vectors_.dtype == np.float64


@pytest.mark.parametrize(("x_dtype", "dtype"), [(np.float64, "float32"), (np.float32, "float64")])
def test_classifier_gram_dtype_asked_holds_at_fit_and_at_test_time(x_dtype, dtype):
    # the Gram matrices (training and test) are computed in `dtype`, whatever X's dtype:
    # the same as SVC on Grams computed in that dtype, not in X's
    X, y = _labels()
    Xt, _ = _labels(20, 1)
    X, Xt = X.astype(x_dtype), Xt.astype(x_dtype)
    k = kc.NTK(depth=1)
    K = kc.gram(k, X, dtype=dtype).astype(np.float64)
    Kt = kc.gram(k, Xt, X, dtype=dtype).astype(np.float64)
    ours = kc.NTKClassifier(k, dtype=dtype).fit(X, y)
    ref = SVC(kernel="precomputed").fit(K, y)
    np.testing.assert_array_equal(ours.support_, ref.support_)
    np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ours.decision_function(Xt), ref.decision_function(Kt),
                               rtol=1e-13, atol=1e-15)
    # a precomputed Gram is rounded to the dtype asked before SVC sees it
    pre = kc.NTKClassifier("precomputed", dtype=dtype).fit(kc.gram(k, X.astype(np.float64)), y)
    ref = SVC(kernel="precomputed").fit(
        kc.gram(k, X.astype(np.float64)).astype(dtype).astype(np.float64), y)
    np.testing.assert_allclose(pre.dual_coef_, ref.dual_coef_, rtol=1e-13, atol=1e-15)


def test_classifier_integer_and_boolean_test_input_is_read_as_float():
    X, y = _labels()
    clf = kc.NTKClassifier(kc.NTK(depth=1)).fit(np.round(3 * X), y)
    Xt = np.round(3 * _labels(20, 1)[0])
    np.testing.assert_array_equal(clf.decision_function(Xt.astype(np.int64)),
                                  clf.decision_function(Xt))
    # boolean features, as the fit reads them (the Gram refuses a bool array itself)
    clf = kc.NTKClassifier(kc.NTK(depth=1)).fit(X > 0, y)
    np.testing.assert_array_equal(clf.predict(Xt > 0), clf.predict((Xt > 0).astype(float)))
    np.testing.assert_array_equal(clf.decision_function(Xt > 0),
                                  clf.decision_function((Xt > 0).astype(float)))


def test_falkon_refuses_negative_sample_weights():
    X, y = _data(40)
    sw = np.ones(40)
    sw[5] = -0.5
    for kernel, data in ((kc.NTK(depth=1), X), ("precomputed", kc.gram(kc.NTK(depth=1), X))):
        with pytest.raises(ValueError, match=r"^Negative values in data passed to `?sample_weight"):
            kc.NTKRegressor(kernel, **(FALKON | {"n_centers": 10})).fit(data, y, sample_weight=sw)


def test_asymmetry_warning_is_strict_at_its_threshold():
    # warned when max |K - K.T| > 1e3 eps max|diag K|: a defect exactly at it is not
    from kernelcomp._validation import SYMMETRIC_ROUNDOFF_EPS

    eps = np.finfo(np.float64).eps
    threshold = SYMMETRIC_ROUNDOFF_EPS * eps * max(2.0, np.finfo(np.float64).tiny)
    K = 2.0 * np.eye(2)
    K[0, 1] = threshold  # K[1, 0] = 0: the defect is exactly the threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = kc.NTKRegressor("precomputed", alpha=1.0).fit(K, [1.0, 2.0])
    K_sym = 2.0 * np.eye(2) + threshold / 2 * (1 - np.eye(2))
    np.testing.assert_allclose(est.dual_coef_, np.linalg.solve(K_sym + np.eye(2), [1.0, 2.0]),
                               rtol=1e-14)
    K[0, 1] = np.nextafter(threshold, 1.0)
    with pytest.warns(UserWarning, match=r"^The precomputed Gram matrix is not symmetric"):
        kc.NTKRegressor("precomputed", alpha=1.0).fit(K, [1.0, 2.0])


@pytest.mark.parametrize(("k_dtype", "dtype", "want"), [
    (np.float64, "float32", np.float32), (np.float32, None, np.float32),
    (np.float32, "float64", np.float64),
])
def test_precomputed_falkon_keeps_the_dtype_asked(k_dtype, dtype, want):
    X, y = _data(40)
    K = kc.gram(kc.NTK(depth=1), X).astype(k_dtype)
    opts = FALKON | {"n_centers": 40, "alpha": 1e-1}
    est = kc.NTKRegressor("precomputed", dtype=dtype, **opts).fit(K, y)
    assert est.dual_coef_.dtype == want and est.predict(K).dtype == want
    # every point a centre: the exact solution in that dtype
    ref = np.linalg.solve(K.astype(want).astype(np.float64) + 1e-1 * np.eye(40), y)
    rtol = 1e-8 if want == np.float64 else 2e-3
    np.testing.assert_allclose(est.dual_coef_, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_falkon_route_log_lines_in_full(caplog):
    import logging

    X, y = _data(40)
    opts = FALKON | {"n_centers": 10}
    with caplog.at_level(logging.INFO, logger="kernelcomp"):
        kc.NTKRegressor(kc.NTK(depth=1), max_memory=10**6, **opts).fit(X, y)
        kc.NTKRegressor(kc.NTK(depth=1), max_memory=1500, dtype="float32", **opts).fit(X, y)
    lines = [r.getMessage() for r in caplog.records if "K_nm" in r.getMessage()]
    assert lines == [
        "NTKRegressor(solver='falkon'): K_nm 40 x 10 float64 (3.1 KiB) stored (computed once); "
        "budget 976.6 KiB (max_memory)",
        "NTKRegressor(solver='falkon'): K_nm 40 x 10 float32 (1.6 KiB) recomputed block by block "
        "at every iteration (a larger max_memory keeps it); budget 1.5 KiB (max_memory)",
    ]


def test_falkon_max_memory_bounds_and_messages():
    X, y = _data(40)
    opts = FALKON | {"n_centers": 10}
    est = kc.NTKRegressor(kc.NTK(depth=1), max_memory=0, **opts).fit(X, y)  # 0 allowed
    assert est.max_memory_ == 0 and est.knm_route_ == "recomputed"
    for value, exc, msg in [(-1, ValueError, r"^max_memory must be >= 0, got -1$"),
                            (2.5, TypeError, r"^max_memory must be an integer, got float 2.5$"),
                            (True, TypeError, r"^max_memory must be an integer, got bool True$")]:
        with pytest.raises(exc, match=msg):
            kc.NTKRegressor(kc.NTK(depth=1), max_memory=value, **opts).fit(X, y)


def test_classifier_without_support_vectors_predicts_as_svc():
    # C times the class weights underflows to 0: libsvm keeps no support vector, and
    # the test Gram has no column to compute (the decision is the intercept alone)
    X, y = _labels(30)
    Xt, _ = _labels(12, 1)
    k = kc.NTK(depth=1)
    kw = {"C": 1e-200, "class_weight": {0: 1e-200, 1: 1e-200}}
    ours = kc.NTKClassifier(k, **kw).fit(X, y)
    ref = SVC(kernel="precomputed", **kw).fit(kc.gram(k, X), y)
    assert ours.support_.size == ref.support_.size == 0
    Kt = kc.gram(k, Xt, X)
    np.testing.assert_array_equal(ours.decision_function(Xt), ref.decision_function(Kt))
    np.testing.assert_array_equal(ours.predict(Xt), ref.predict(Kt))


def test_flow_attributes_have_svc_dtypes():
    X, y = _labels(30)
    flow = kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow").fit(X, y)
    svc = SVC(kernel="precomputed").fit(kc.gram(kc.NTK(depth=1), X), y)
    for name in ("support_", "n_support_", "n_iter_", "dual_coef_", "intercept_"):
        assert getattr(flow, name).dtype == getattr(svc, name).dtype, name


def test_nested_parameters_replace_a_dataclass_kernel_even_with_set_params():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        depth: int = 1

        def set_params(self, **kw):
            raise AssertionError("a dataclass kernel is replaced, not mutated")

    original = Frozen()
    est = kc.NTKRegressor(kernel=original).set_params(kernel__depth=3)
    assert est.kernel == Frozen(3) and original == Frozen(1)


def test_classifier_multiclass_tag_follows_the_solver():
    from sklearn.utils import get_tags

    assert get_tags(kc.NTKClassifier()).classifier_tags.multi_class is True
    assert get_tags(kc.NTKClassifier(solver="gradient_flow")).classifier_tags.multi_class is False
    assert get_tags(kc.NTKClassifier("precomputed")).input_tags.pairwise is True
    assert get_tags(kc.NTKClassifier()).input_tags.pairwise is False


@pytest.mark.frames
def test_fit_warnings_point_at_the_callers_line():
    # the warnings of fit name the line that called fit, not a line of kernelcomp
    K = np.eye(3)
    K[0, 1] = 0.1  # not symmetric
    with pytest.warns(UserWarning, match=r"^The precomputed Gram matrix is not symmetric") as rec:
        kc.NTKRegressor("precomputed", alpha=1.0).fit(K, [1.0, 2.0, 3.0])
    assert [r.filename for r in rec] == [__file__]
    with pytest.warns(SingularKernelWarning) as rec:
        kc.NTKRegressor("precomputed", alpha=0.0).fit(np.ones((3, 3)), [1.0, 2.0, 3.0])
    assert [r.filename for r in rec] == [__file__]
    from sklearn.exceptions import ConvergenceWarning

    X, y = _labels(30)
    with pytest.warns(ConvergenceWarning) as rec:
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow", max_iter=2).fit(X, y)
    assert [r.filename for r in rec] == [__file__]


def test_a_converged_flow_does_not_warn():
    X, y = _labels(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flow = kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow").fit(X, y)
    assert flow.flow_result_.status == "converged" and flow.fit_status_ == 0


def test_precomputed_regressor_predicts_a_dask_gram_as_numpy():
    X, y = _data(30)
    K = kc.gram(kc.NTK(depth=1), X)
    est = kc.NTKRegressor("precomputed", alpha=1e-2).fit(K, y)
    out = est.predict(da.from_array(K[:7], chunks=(3, 30)))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, est.predict(K[:7]))


def test_falkon_on_dask_chunk_message_in_full():
    X, y = _data()
    Xd = da.from_array(X, chunks=(40, 3))
    msg = (r"^the row chunks of X \(40, 40, 10\) and y \(30, 30, 30\) differ; rechunk them "
           r"alike \(e\.g\. y\.rechunk\(\(X\.chunks\[0\],\)\)\)$")
    with pytest.raises(ValueError, match=msg):
        kc.NTKRegressor(kc.NTK(depth=1), **FALKON).fit(Xd, da.from_array(y, chunks=30))


def test_falkon_parameter_bounds_inclusive_and_messages():
    X, y = _data(30)
    fit = lambda **kw: kc.NTKRegressor(kc.NTK(depth=1), **(FALKON | kw)).fit(X, y)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one iteration may warn that Falkon stopped early
        one = fit(max_iter=1, n_centers=1, tol=0.0)
    assert one.n_iter_ == 1 and one.X_fit_.shape == (1, 3)
    for kw, msg in [({"max_iter": 0}, r"^max_iter must be >= 1, got 0$"),
                    ({"n_centers": 0}, r"^n_centers must be >= 1, got 0$"),
                    ({"tol": -1e-9}, r"^tol must be >= 0")]:
        with pytest.raises(ValueError, match=msg):
            fit(**kw)


def test_singular_warning_in_full_with_the_smallest_eigenvalue():
    # K = diag(-1, 0, 2) with alpha = 0: indefinite, the Cholesky fails; eigenvalues -1, 0, 2
    K = np.diag([-1.0, 0.0, 2.0])
    msg = (r"^The regularised kernel system K \+ alpha\*I \(n=3, alpha=0, dtype=float64\) is "
           r"singular or not positive definite: the Cholesky factorisation failed \(.*\)\. Its "
           r"smallest eigenvalue is -1\. Using the minimum-norm least-squares solution from an "
           r"eigendecomposition instead \(1 of 3 eigenvalues treated as zero\)\. Duplicated "
           r"samples, a non-kernel precomputed matrix, or an alpha too small for the dtype cause "
           r"this; increase alpha or use dtype='float64'\.$")
    with pytest.warns(SingularKernelWarning, match=msg):
        est = kc.NTKRegressor("precomputed", alpha=0.0).fit(K, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(est.dual_coef_, [-1.0, 0.0, 1.5], rtol=1e-14)
    assert est.n_iter_ == 1  # one direct solve


def test_cholesky_reports_one_iteration():
    X, y = _data(20)
    assert kc.NTKRegressor(kc.NTK(depth=1)).fit(X, y).n_iter_ == 1


def test_get_params_reads_the_kernel_given():
    est = kc.NTKRegressor(kc.NTK(depth=3, weight_std=1.5))
    params = est.get_params(deep=True)
    assert params["kernel__depth"] == 3 and params["kernel__weight_std"] == 1.5
    assert kc.NTKClassifier().get_params(deep=True)["kernel__depth"] == kc.NTK().depth


def test_flow_refuses_weights_in_full():
    X, y = _labels()
    with pytest.raises(ValueError, match=r"^sample_weight is not supported by "
                                         r"solver='gradient_flow' \(the paper's flow weighs every "
                                         r"sample equally\); use solver='svc'$"):
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow").fit(X, y, np.ones(len(y)))


def test_flow_refuses_class_weight_in_full():
    X, y = _labels()
    with pytest.raises(ValueError, match=r"^class_weight is not supported by "
                                         r"solver='gradient_flow'; use solver='svc'$"):
        kc.NTKClassifier(kc.NTK(depth=1), solver="gradient_flow", class_weight="balanced").fit(X, y)


def test_cholesky_refuses_negative_sample_weights():
    X, y = _data(20)
    sw = np.ones(20)
    sw[3] = -1.0
    with pytest.raises(ValueError, match=r"^Negative values in data passed to `?sample_weight"):
        kc.NTKRegressor(kc.NTK(depth=1)).fit(X, y, sample_weight=sw)


def test_precomputed_falkon_in_several_row_blocks(monkeypatch):
    from kernelcomp import _falkon

    X, y = _data(50)
    K = kc.gram(kc.NTK(depth=1), X)
    opts = FALKON | {"n_centers": 12, "max_memory": 0}  # K_nm recomputed block by block
    whole = kc.NTKRegressor("precomputed", **opts).fit(K, y)
    monkeypatch.setattr(_falkon, "knm_rows", lambda n, m, itemsize: 7)
    blocks = kc.NTKRegressor("precomputed", **opts).fit(K, y)
    # the same fit up to the summation order of the blocks (CG amplifies it a little)
    np.testing.assert_allclose(blocks.dual_coef_, whole.dual_coef_, rtol=1e-8,
                               atol=1e-10 * np.abs(whole.dual_coef_).max())
