"""Each documented parameter has its documented effect (issue 26, item 1).

The second round of hand-made faults showed documented parameters that no test
shows to act: an option honoured on the diagonal only, a neighbour count equal to
the library default of the reference, a default read from a file and not passed on,
the non-centred model downstream of training, a boundary documented as ``>=``
never sat on, a dtype of a mixed Dask product, weights on a fallback path, the
order of a classifier's classes. Each test here moves one parameter away from its
default and compares with an independent oracle (scikit-learn, scipy, a by-hand
computation), so that dropping the parameter on any path fails it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import curves, datasets
from kernelcomp import diagnostics as dg
from kernelcomp._kernels import quadrature as quad
from kernelcomp._kernels.activations import CODES
from kernelcomp.estimators import SingularKernelWarning

SNAP = 32.0 * float(np.finfo(np.float64).eps)


# ------------------------------------------------------------------ diagnostics


def test_ksg_neighbour_count_reaches_scikit_learn():
    # k = 3 is scikit-learn's own default: only k != 3 shows that k is passed on
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(11)
    n = 240
    y = rng.integers(0, 2, size=n)
    V = y[:, None] + 0.8 * rng.standard_normal((n, 3))
    got = {k: dg.mutual_information(V, y, k=k, method="ksg", random_state=3) for k in (3, 9)}
    for k, mi in got.items():
        want = mutual_info_classif(V, y, n_neighbors=k, random_state=3) / math.log(2)
        np.testing.assert_allclose(mi, want, rtol=1e-12)
    assert np.abs(got[3] - got[9]).max() > 1e-3
    # random_state seeds the noise that breaks ties: it shows on tied values
    T = np.round(V)
    a, b = (dg.mutual_information(T, y, k=9, method="ksg", random_state=s) for s in (3, 4))
    want = mutual_info_classif(T, y, n_neighbors=9, random_state=4) / math.log(2)
    np.testing.assert_allclose(b, want, rtol=1e-12)
    assert not np.array_equal(a, b)


def test_paper_mi_class_size_boundary_is_inclusive():
    # "each class with at least k points": a class of exactly k points is accepted
    y = np.array([0] * 4 + [1] * 9)
    V = np.arange(13.0)[:, None]
    assert dg.mutual_information(V, y, k=4).shape == (1,)
    with pytest.raises(ValueError, match="at least k = 5 points"):
        dg.mutual_information(V, y, k=5)


def _train(X, y, **kw):
    net = kc.FCNetwork.init(X.shape[1], [40], activation="relu_unit",
                            parameterization="mean_field", seed=0)
    return kc.training.train(net, X, y, alpha=1e-2, **kw)


@pytest.fixture(scope="module")
def cylinder_runs(tmp_path_factory):
    """A centred and a non-centred run on a cylinder with d_par = 3, kept and on file."""
    X, y = datasets.cylinder(64, 5, seed=0, d_par=3)
    Xt, yt = datasets.cylinder(40, 5, seed=1, d_par=3)
    out = {}
    for center in (True, False):
        path = tmp_path_factory.mktemp("runs") / f"run_{center}.h5"
        run = _train(X, y, X_test=Xt, y_test=yt, center=center, path=path,
                     config={"dataset": "cylinder", "d": 5, "d_par": 3})
        out[center] = run
    return X, Xt, out


def test_compression_at_reads_d_par_from_the_run(cylinder_runs):
    _, _, runs = cylinder_runs
    run = runs[True]
    k = dg.t_star(run)
    net = run.checkpoints[k].net
    want = dg.compression(net, [0, 1, 2], convention="figures")
    assert dg.compression_at(run) == pytest.approx(want, rel=1e-12)
    assert dg.compression_at(run.path) == pytest.approx(want, rel=1e-12)
    # the default d_par = 2 would give another value
    assert abs(dg.compression(net, [0, 1], convention="figures") - want) > 1e-6 * abs(want)
    # convention is passed on too
    rms = dg.compression(net, [0, 1, 2], convention="rms")
    assert dg.compression_at(run, convention="rms") == pytest.approx(rms, rel=1e-12)
    assert abs(rms - want) > 1e-6 * abs(want)


def _sigmoid_log(z):
    return -np.logaddexp(0.0, -z)


def _bhattacharyya(F):
    """Summed Bhattacharyya distances of p_i(y|x) = sigmoid(2 y F_i(x)), by hand."""
    m = F.shape[0]
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            pi, pj = np.exp(_sigmoid_log(2 * F[i])), np.exp(_sigmoid_log(2 * F[j]))
            bc = np.sqrt(pi * pj) + np.sqrt((1 - pi) * (1 - pj))
            D[i, j] = -np.log(np.minimum(bc, 1.0)).sum()
    np.fill_diagonal(D, 0.0)
    return D


@pytest.mark.parametrize("center", [True, False])
def test_trajectory_embedding_follows_the_run_centring(cylinder_runs, center):
    _, Xt, runs = cylinder_runs
    run = runs[center]
    assert run.center is center and run.config["center"] is center
    f0 = run.net0(Xt) if center else 0.0
    F = np.stack([run.alpha * (ck.net(Xt) - f0) for ck in run.checkpoints])
    want = _bhattacharyya(F)
    tol = 1e-9 * max(1.0, np.abs(want).max())
    kept = dg.trajectory_embedding(run, X=Xt)
    np.testing.assert_allclose(kept.distances, want, atol=tol)
    on_file = dg.trajectory_embedding(run.path)  # the stored test split
    np.testing.assert_allclose(on_file.distances, want, atol=tol)
    # the other centring gives other distances: the test can tell
    g0 = 0.0 if center else run.net0(Xt)
    G = np.stack([run.alpha * (ck.net(Xt) - g0) for ck in run.checkpoints])
    assert np.abs(_bhattacharyya(G) - want).max() > 100 * tol


def test_t_star_needs_strictly_more_than_the_fraction(cylinder_runs):
    _, _, runs = cylinder_runs
    run = runs[True]
    fr = [ck.fitted_fraction for ck in run.checkpoints]
    k = dg.t_star(run)
    # "more than margin_fraction": a checkpoint exactly at it is not t*
    assert dg.t_star(run, margin_fraction=fr[k]) > k
    assert dg.t_star(run, margin_fraction=math.nextafter(fr[k], 0.0)) <= k


# ------------------------------------------------------------------ quadrature


def _recursion(S, act, nodes, depth, ws, bs):
    """NTK by the layer recursion, each entry's expectations at ``nodes`` nodes."""
    n = S.shape[0]
    T = S.copy()
    for _ in range(depth):
        K = np.empty_like(S)
        Kd = np.empty_like(S)
        for i in range(n):
            for j in range(n):
                a1, a2 = math.sqrt(S[i, i]), math.sqrt(S[j, j])
                K[i, j], Kd[i, j] = quad.expectations(
                    S[i, j], a1, a2, 1 / a1, 1 / a2, CODES[act], True, snap=SNAP,
                    **quad.rules(nodes),
                )
        S, T = ws**2 * K + bs**2, ws**2 * K + bs**2 + ws**2 * Kd * T
    return T


@pytest.mark.parametrize("d", [4, 90])  # fused dot products, and BLAS
def test_quadrature_nodes_reach_every_entry(d):
    # few nodes at a large variance: an error far above rounding, the same on the
    # diagonal, the off-diagonal entries and a cross Gram
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, d))
    X *= math.sqrt(d) / np.linalg.norm(X, axis=1, keepdims=True)
    ws, bs = 2.2, 0.4
    S = ws**2 * X @ X.T / d + bs**2
    nodes = 3
    k = kc.NTK(depth=2, activation="tanh", weight_std=ws, bias_std=bs, method="quadrature",
               quadrature_nodes=nodes)
    want = _recursion(S, "tanh", nodes, 2, ws, bs)
    fine = _recursion(S, "tanh", 40, 2, ws, bs)
    off = ~np.eye(4, dtype=bool)
    assert np.abs(want - fine)[off].min() > 1e-6 * np.abs(fine).max()  # nodes matter
    np.testing.assert_allclose(k(X), want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(k(X[:2], X[2:]), want[:2, 2:], rtol=1e-12, atol=0)
    np.testing.assert_allclose(k.diag(X), np.diag(want), rtol=1e-12, atol=0)


# ------------------------------------------------------------------ curves


def test_fit_exponent_drops_a_run_exactly_at_max_error():
    p = np.array([100.0, 200.0, 400.0])
    errors = np.array([[0.25, 0.2], [0.1, 0.1], [0.05, 0.05]])
    fit = curves.fit_exponent(p, errors, n_bootstrap=0, max_error=0.25)
    # ">= max_error is dropped": the 0.25 run goes, the size keeps its other seed
    np.testing.assert_allclose(fit.mean_error, [0.2, 0.1, 0.05])
    slope = np.polyfit(np.log(p), np.log([0.2, 0.1, 0.05]), 1)[0]
    assert fit.beta == pytest.approx(-slope, rel=1e-12)
    # just above the error, the run stays
    kept = curves.fit_exponent(p, errors, n_bootstrap=0, max_error=0.2500001)
    np.testing.assert_allclose(kept.mean_error, [0.225, 0.1, 0.05])


def test_fit_exponent_inclusive_range_and_min_errors():
    p = np.array([100.0, 200.0, 400.0, 800.0])
    err = np.array([0.4, 0.2, 0.1, 0.01])[:, None] * np.ones((1, 3))
    # p_range is inclusive at both ends
    fit = curves.fit_exponent(p, err, n_bootstrap=0, p_range=(200, 400))
    np.testing.assert_array_equal(fit.p, [200.0, 400.0])
    # a mean of exactly min_errors test errors counts (0.01 * 1000 = 10)
    fit = curves.fit_exponent(p, err, n_test=1000, n_bootstrap=0, min_errors=10)
    np.testing.assert_array_equal(fit.p, p)
    fit = curves.fit_exponent(p, err, n_test=1000, n_bootstrap=0, min_errors=10.5)
    np.testing.assert_array_equal(fit.p, p[:3])
    np.testing.assert_array_equal(fit.dropped, [800.0])


def test_learning_curve_passes_d_par_to_the_dataset():
    seen = []

    def recipe(X, y, Xt, yt, seed):
        seen.append((X, y, Xt, yt, seed))
        return 0.5

    curves.learning_curve(recipe, "cylinder", [20, 30], seeds=[4], n_test=25, d=6, d_par=3)
    Xw, yw = datasets.load("cylinder", 30, 6, 4, split="train", d_par=3)
    Xtw, ytw = datasets.load("cylinder", 25, 6, 4, split="test", d_par=3)
    _, y2 = datasets.load("cylinder", 30, 6, 4, split="train", d_par=2)
    assert not np.array_equal(yw, y2)  # d_par changes the labels
    for (X, y, Xt, yt, seed), n in zip(seen, (20, 30), strict=True):
        assert seed == 4
        np.testing.assert_array_equal(X, Xw[:n])
        np.testing.assert_array_equal(y, yw[:n])
        np.testing.assert_array_equal(Xt, Xtw)
        np.testing.assert_array_equal(yt, ytw)


def test_frozen_kernel_curve_passes_d_par_on():
    from kernelcomp.estimators import HARD_MARGIN_C, NTKClassifier

    p, n_test, d = [24, 48], 300, 5
    got = curves.frozen_kernel_curve("cylinder", p, seeds=[0], n_test=n_test, d=d, d_par=4)
    Xt, yt = datasets.load("cylinder", n_test, d, 0, split="test", d_par=4)
    X, y = datasets.load("cylinder", max(p), d, 0, split="train", d_par=4)
    want = []
    for n in p:
        clf = NTKClassifier(curves.paper_ntk(), C=HARD_MARGIN_C).fit(X[:n], y[:n])
        want.append(float(np.mean(clf.predict(Xt) != yt)))
    np.testing.assert_allclose(got.test_error[:, 0], want, rtol=0, atol=0)
    other = curves.frozen_kernel_curve("cylinder", p, seeds=[0], n_test=n_test, d=d)
    assert not np.array_equal(other.test_error, got.test_error)


# ------------------------------------------------------------------ estimators


def test_singular_fallback_honours_sample_weights():
    # a rank-4 PSD matrix of 10 samples with alpha = 0: the Cholesky fails and the
    # minimum-norm solution of the weighted system is used; oracle: numpy's pinv
    rng = np.random.default_rng(2)
    A = rng.standard_normal((10, 4))
    K = A @ A.T
    y = rng.standard_normal(10)
    w = rng.uniform(0.2, 3.0, size=10)
    s = np.sqrt(w)
    want = s * (np.linalg.pinv(s[:, None] * K * s[None, :], rcond=1e-10, hermitian=True)
                @ (s * y))
    est = kc.NTKRegressor(kernel="precomputed", alpha=0.0)
    with pytest.warns(SingularKernelWarning):
        est.fit(K, y, sample_weight=w)
    np.testing.assert_allclose(est.dual_coef_, want, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(est.predict(K), K @ want, rtol=1e-7, atol=1e-9)
    with pytest.warns(SingularKernelWarning):
        plain = kc.NTKRegressor(kernel="precomputed", alpha=0.0).fit(K, y)
    assert np.abs(plain.dual_coef_ - want).max() > 1e-3


@pytest.mark.parametrize("solver", ["svc", "gradient_flow"])
def test_classifier_classes_are_sorted_and_the_positive_class_is_the_second(solver):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 2))
    X[:, 0] += np.where(np.arange(40) % 2 == 0, 3.0, -3.0)
    labels = np.where(X[:, 0] > 0, "zebra", "ant")  # given in no particular order
    clf = kc.NTKClassifier(kc.NTK(depth=1), solver=solver).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["ant", "zebra"])
    probe = np.array([[6.0, 0.0], [-6.0, 0.0]])
    dec = clf.decision_function(probe)
    assert dec[0] > 0 > dec[1]  # positive decision = classes_[1]
    np.testing.assert_array_equal(clf.predict(probe), ["zebra", "ant"])
    # the support counts follow classes_: every support vector of its class
    sup = clf.support_
    np.testing.assert_array_equal(
        clf.n_support_, [np.sum(labels[sup] == "ant"), np.sum(labels[sup] == "zebra")]
    )


# ------------------------------------------------------------------ Dask


@pytest.mark.parametrize(("dx", "dy"), [("float32", "float64"), ("float64", "float32"),
                                        ("float32", "float32")])
def test_dask_cross_gram_dtype_follows_both_inputs(dx, dy):
    pytest.importorskip("dask.array")
    from kernelcomp import distributed

    rng = np.random.default_rng(8)
    X = rng.standard_normal((9, 3)).astype(dx)
    Y = rng.standard_normal((7, 3)).astype(dy)
    k = kc.NTK(depth=1)
    want = kc.gram(k, X, Y)  # the in-memory rule: float64 if either input is
    assert want.dtype == np.result_type(dx, dy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lazy = distributed.gram(k, X, Y, chunks=4)
        assert lazy.dtype == want.dtype
        got = lazy.compute(scheduler="synchronous")
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
