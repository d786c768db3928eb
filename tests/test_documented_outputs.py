"""Known answers for documented outputs: diagnostics, curves, datasets, the README's numbers.

Each value is recomputed by hand from its documented definition (NumPy, SciPy,
scikit-learn, the naive recursions of tests/naive.py), with real-valued and rescaled
targets where +-1 labels would hide a wrong normalisation (||y||^2 = n only for +-1).
References: Paccolat et al. (2021), *Geometric compression of invariant manifolds in
neural networks* (kernel PCA of the NTK, learning-curve exponents, lambda_ODE).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import kernelcomp as kc
from kernelcomp import curves
from kernelcomp import diagnostics as dg
from tests.naive import analytic_kernel

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FIXTURES = ROOT / "tests" / "fixtures"


def _random_gram(rng, n, decay=0.85):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    K = (Q * (5.0 * decay ** np.arange(n))) @ Q.T
    return (K + K.T) / 2


def _top_eigh(K, k):
    w, V = np.linalg.eigh(K)
    return w[::-1][:k], V[:, ::-1][:, :k]


# ---------------------------------------------------------------------------
# label projection and cumulative projection with real targets
# ---------------------------------------------------------------------------
def test_label_projection_of_real_targets(rng):
    n, k = 30, 12
    K = _random_gram(rng, n)
    y = 3.7 * rng.standard_normal(n)
    ev = dg.kernel_pca(K, n_components=k)
    c = dg.label_projection(ev.eigenvectors, y)
    by_hand = [sum(ev.eigenvectors[i, r] * y[i] for i in range(n)) for r in range(k)]
    np.testing.assert_allclose(c, by_hand, rtol=1e-12, atol=1e-12)
    # several columns: one projection per column
    Y = np.column_stack([y, -0.5 * y + rng.standard_normal(n)])
    C = dg.label_projection(ev.eigenvectors, Y)
    assert C.shape == (k, 2)
    np.testing.assert_allclose(C, ev.eigenvectors.T @ Y, rtol=1e-12, atol=1e-12)


def test_cumulative_projection_divides_by_the_norm_of_y(rng):
    n, k = 30, 12
    K = _random_gram(rng, n)
    y = 3.7 * rng.standard_normal(n)  # ||y||^2 = 13.69 n on average, not n
    _, V = _top_eigh(K, n)
    # by hand from numpy's eigh: c_r = phi_r . y, P_k = sum_{r<=k} c_r^2 / ||y||^2
    c_full = V.T @ y
    expected = np.cumsum(c_full**2) / float(y @ y)
    ev = dg.kernel_pca(K)
    c = dg.label_projection(ev.eigenvectors, y)
    np.testing.assert_allclose(np.abs(c), np.abs(c_full), rtol=1e-9, atol=1e-12)
    P = dg.cumulative_projection(c, y)
    np.testing.assert_allclose(P, expected, rtol=1e-10)
    assert P[-1] == pytest.approx(1.0, rel=1e-12)
    # a truncated basis does not reach 1, and the scale of y cancels
    ev_k = dg.kernel_pca(K, n_components=k)
    c_k = dg.label_projection(ev_k.eigenvectors, y)
    P_k = dg.cumulative_projection(c_k, y)
    np.testing.assert_allclose(P_k, expected[:k], rtol=1e-10)
    assert P_k[-1] < 1.0
    P_scaled = dg.cumulative_projection(dg.label_projection(ev_k.eigenvectors, 10 * y), 10 * y)
    np.testing.assert_allclose(P_scaled, P_k, rtol=1e-12)
    # several columns: ||Y||^2 summed over columns, c_r^2 summed over columns
    Y = np.column_stack([y, 0.3 * rng.standard_normal(n)])
    C = dg.label_projection(ev_k.eigenvectors, Y)
    np.testing.assert_allclose(dg.cumulative_projection(C, Y),
                               np.cumsum((C**2).sum(axis=1)) / float(np.sum(Y * Y)), rtol=1e-12)


def test_cumulative_projection_errors():
    with pytest.raises(ValueError, match="y is all zero"):
        dg.cumulative_projection([1.0, 2.0], np.zeros(3))
    with pytest.raises(ValueError, match=r"c has 2 column\(s\) but y has 1"):
        dg.cumulative_projection(np.ones((2, 2)), np.ones(3))


# ---------------------------------------------------------------------------
# explained ratio: eigenvalues over the trace, also for a truncated spectrum
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("center", [False, True])
def test_explained_ratio_of_a_truncated_spectrum_is_over_the_trace(rng, center):
    n, k = 40, 6
    X = rng.standard_normal((n, 3))
    K = kc.NTK(depth=2)(X)
    ev = dg.kernel_pca(K, n_components=k, center=center)
    Kd = K
    if center:
        H = np.eye(n) - np.ones((n, n)) / n
        Kd = H @ K @ H
    w, _ = _top_eigh(Kd, k)
    expected = w / np.trace(Kd)
    np.testing.assert_allclose(ev.explained_ratio, expected, rtol=1e-9)
    assert ev.trace == pytest.approx(np.trace(Kd), rel=1e-12)
    assert ev.explained_ratio.sum() < 0.999  # the kept part only, not renormalised
    full = dg.kernel_pca(K, center=center)
    np.testing.assert_allclose(ev.explained_ratio, full.explained_ratio[:k], rtol=1e-9)


# ---------------------------------------------------------------------------
# spectrum_power_law: least squares on log-log axes, as scipy.stats.linregress
# ---------------------------------------------------------------------------
def test_power_law_statistics_match_linregress(rng):
    r = np.arange(1, 81.0)
    lam = 2.5 * r**-1.3 * np.exp(0.2 * rng.standard_normal(r.size))  # noisy power law
    for fit_range in [(1, 80), (3, 40), (5, 7)]:
        fit = dg.spectrum_power_law(lam, fit_range=fit_range)
        lo, hi = fit_range
        srt = np.sort(lam)[::-1]
        ref = stats.linregress(np.log(np.arange(lo, hi + 1.0)), np.log(srt[lo - 1 : hi]))
        assert fit.fit_range == fit_range
        assert fit.exponent == pytest.approx(-ref.slope, rel=1e-10)
        assert fit.amplitude == pytest.approx(math.exp(ref.intercept), rel=1e-10)
        # stderr with n - 2 degrees of freedom, centred R^2
        assert fit.stderr == pytest.approx(ref.stderr, rel=1e-9)
        assert fit.r_squared == pytest.approx(ref.rvalue**2, rel=1e-9)
        np.testing.assert_allclose(fit(np.arange(lo, hi + 1)),
                                   np.exp(ref.intercept) * np.arange(lo, hi + 1.0) ** ref.slope,
                                   rtol=1e-9)


def test_power_law_r_squared_is_centred_and_two_points_have_no_stderr():
    # a constant spectrum has zero centred variance: an exact fit, R^2 = 1 by definition;
    # a poor fit on a centred basis has R^2 near 0 (uncentred it would be near 1)
    wavy = np.array([10.0, 9.0, 10.0, 9.0, 10.0, 9.0, 10.0, 9.0])
    fit = dg.spectrum_power_law(wavy, fit_range=(1, 8))
    srt = np.sort(wavy)[::-1]
    x, t = np.log(np.arange(1, 9.0)), np.log(srt)
    resid = t - np.polyval(np.polyfit(x, t, 1), x)
    assert fit.r_squared == pytest.approx(1 - np.sum(resid**2) / np.sum((t - t.mean()) ** 2),
                                          rel=1e-9)
    assert fit.r_squared < 0.9
    two = dg.spectrum_power_law([4.0, 1.0], fit_range=(1, 2))
    assert math.isnan(two.stderr) and two.exponent == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("k", "a", "dtype", "expected"),
    [
        (60, 1.5, np.float64, (2, 30)),  # k // 2
        (61, 1.5, np.float64, (2, 30)),
        (100, 8.0, np.float64, (2, 38)),  # last rank above 1e3 eps lambda_1: 38^-8 > 2.2e-13
        (400, 2.0, np.float32, (2, 91)),  # float32's eps: 91^-2 > 1.19e-4 > 92^-2
    ],
)
def test_power_law_default_fit_range_is_the_documented_one(k, a, dtype, expected):
    lam = (np.arange(1, k + 1.0) ** -a).astype(dtype)
    eps = np.finfo(dtype).eps
    floor = 1e3 * eps * float(lam[0])
    last_above = int(np.nonzero(lam.astype(np.float64) > floor)[0][-1]) + 1
    assert expected == (2, min(k // 2, last_above))  # the docstring's rule, by hand
    fit = dg.spectrum_power_law(lam)
    assert fit.fit_range == expected
    explicit = dg.spectrum_power_law(lam, fit_range=expected)
    assert fit.exponent == explicit.exponent
    # and on a kernel-PCA result, k = n_components (the README's ev of 100 components)
    ev = dg.KernelPCAResult(lam, np.eye(k)[:, :k], False, float(lam.sum()))
    assert dg.spectrum_power_law(ev).fit_range == expected


def test_power_law_default_range_of_a_short_spectrum_has_two_points():
    for k in (2, 3, 4):
        fit = dg.spectrum_power_law(np.arange(1, k + 1.0) ** -1.0)
        lo, hi = fit.fit_range
        assert 1 <= lo < hi <= k  # "widened to at least two points"
        assert fit.exponent == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------------------
# fit_exponent's bootstrap interval, re-implemented from its docstring
# ---------------------------------------------------------------------------
def _bootstrap_by_hand(p, errors, *, n_bootstrap, level, seed, max_error=None):
    """Resample the seeds with replacement (one resample for every p), refit, take quantiles."""
    rng = np.random.default_rng(seed)
    n_seeds = errors.shape[1]
    ok = np.ones_like(errors, dtype=bool) if max_error is None else errors < max_error
    betas = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n_seeds, n_seeds)
        cnt = ok[:, idx].sum(axis=1)
        if (cnt == 0).any():
            continue
        m = np.where(ok[:, idx], errors[:, idx], 0.0).sum(axis=1) / cnt
        if (m > 0).all():
            slope = np.polyfit(np.log(p), np.log(m), 1)[0]
            betas.append(-slope)
    q = (1 - level) / 2
    return np.array(betas), tuple(np.quantile(betas, [q, 1 - q]))


@pytest.mark.parametrize("level", [0.95, 0.8])
@pytest.mark.parametrize("seed", [0, 7])
def test_bootstrap_interval_equals_the_direct_quantiles(level, seed):
    rng = np.random.default_rng(20240607)
    p = np.array([64, 128, 256, 512, 1024])
    errors = rng.binomial(20_000, 0.8 * p[:, None] ** -0.6 * np.ones((1, 6))) / 20_000
    fit = curves.fit_exponent(p, errors, n_test=20_000, n_bootstrap=400, level=level, seed=seed)
    betas, ci = _bootstrap_by_hand(p, errors, n_bootstrap=400, level=level, seed=seed)
    np.testing.assert_allclose(fit.ci, ci, rtol=1e-9)
    # the interval holds `level` of the bootstrap exponents: neither too wide nor too narrow
    inside = np.mean((betas >= fit.ci[0]) & (betas <= fit.ci[1]))
    assert inside == pytest.approx(level, abs=0.01)
    assert fit.ci[0] < fit.beta < fit.ci[1]


def test_bootstrap_interval_with_dropped_runs():
    rng = np.random.default_rng(3)
    p = np.array([50, 100, 200, 400])
    errors = np.clip(0.9 * p[:, None] ** -0.4 * np.exp(0.1 * rng.standard_normal((4, 5))), 0, 1)
    errors[0, 1] = 0.4  # a failed run, dropped with max_error = 0.25
    fit = curves.fit_exponent(p, errors, n_bootstrap=300, max_error=0.25)
    _, ci = _bootstrap_by_hand(p, errors, n_bootstrap=300, level=0.95, seed=0, max_error=0.25)
    np.testing.assert_allclose(fit.ci, ci, rtol=1e-9)
    kept = np.where(errors < 0.25, errors, np.nan)
    slope = np.polyfit(np.log(p), np.log(np.nanmean(kept, axis=1)), 1)[0]
    assert fit.beta == pytest.approx(-slope, rel=1e-9)


def test_bootstrap_interval_narrows_with_the_level():
    rng = np.random.default_rng(5)
    p = np.array([64, 128, 256, 512])
    errors = rng.binomial(10_000, 0.5 * p[:, None] ** -0.5 * np.ones((1, 8))) / 10_000
    wide = curves.fit_exponent(p, errors, n_test=10_000, n_bootstrap=300, level=0.99)
    narrow = curves.fit_exponent(p, errors, n_test=10_000, n_bootstrap=300, level=0.5)
    assert wide.ci[0] < narrow.ci[0] < narrow.ci[1] < wide.ci[1]


# ---------------------------------------------------------------------------
# datasets: the test split is another stream, with the same documented labels
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("d_par", [2, 3])
def test_cylinder_test_split(d_par):
    X, y = kc.datasets.cylinder(500, 5, d_par=d_par, seed=4)
    Xt, yt = kc.datasets.cylinder(500, 5, d_par=d_par, seed=4, split="test")
    assert Xt.shape == (500, 5) and not np.isin(Xt, X).any()
    Xt2, yt2 = kc.datasets.cylinder(300, 5, d_par=d_par, seed=4, split="test")
    np.testing.assert_array_equal(Xt2, Xt[:300])
    np.testing.assert_array_equal(yt2, yt[:300])  # reproducible and nested
    threshold = 2 * math.log(2) if d_par == 2 else d_par - 2 / 3
    for x, label in zip(Xt, yt, strict=True):
        r2 = sum(float(v) ** 2 for v in x[:d_par])
        assert label == (-1.0 if r2 > threshold else 1.0)
    assert 0.35 < np.mean(yt == 1) < 0.65
    assert not np.array_equal(y, yt)


def test_sphere_test_split():
    d = 6
    X, y = kc.datasets.sphere(500, d, seed=4)
    Xt, yt = kc.datasets.sphere(500, d, seed=4, split="test")
    assert not np.isin(Xt, X).any()
    np.testing.assert_array_equal(kc.datasets.sphere(500, d, seed=4, split="test")[0], Xt)
    r2 = d * (1 - 2 / (9 * d)) ** 3
    for x, label in zip(Xt, yt, strict=True):
        assert label == (-1.0 if float(x @ x) > r2 else 1.0)
    assert 0.4 < np.mean(yt == 1) < 0.6
    assert not np.array_equal(y, yt)
    # the other splits are streams of their own too
    others = [kc.datasets.sphere(50, d, seed=4, split=s)[0] for s in kc.datasets.SPLITS]
    for i in range(len(others)):
        for j in range(i):
            assert not np.isin(others[i], others[j]).any()


# ---------------------------------------------------------------------------
# the README's examples, with their numbers checked
# ---------------------------------------------------------------------------
def _in_readme(*lines):
    """The snippet lines these tests run are the README's (whitespace aside)."""
    squash = re.sub(r"\s+", " ", README)
    for line in lines:
        assert re.sub(r"\s+", " ", line.strip()) in squash, line


def _relu_ntk_entry(x, z, depth, w_std, b_std):
    """One entry of the ReLU NTK (ntk parameterization) by the scalar recursion."""
    d = len(x)
    w2, b2 = w_std**2, b_std**2
    s11 = w2 * sum(v * v for v in x) / d + b2
    s22 = w2 * sum(v * v for v in z) / d + b2
    s12 = w2 * sum(a * b for a, b in zip(x, z, strict=True)) / d + b2
    t = s12
    for _ in range(depth):
        cos = max(-1.0, min(1.0, s12 / math.sqrt(s11 * s22)))
        th = math.acos(cos)
        k = math.sqrt(s11 * s22) * (math.sin(th) + (math.pi - th) * cos) / (2 * math.pi)
        kdot = (math.pi - th) / (2 * math.pi)
        s12, s11, s22 = w2 * k + b2, w2 * s11 / 2 + b2, w2 * s22 / 2 + b2
        t = s12 + w2 * kdot * t
    return t


def test_readme_analytic_ntk_numbers():
    _in_readme(
        "X = np.random.default_rng(0).standard_normal((1000, 10))",
        'k = kc.NTK(depth=2, activation="relu", weight_std=1.0, bias_std=0.1)',
    )
    X = np.random.default_rng(0).standard_normal((1000, 10))
    k = kc.NTK(depth=2, activation="relu", weight_std=1.0, bias_std=0.1)
    K = k(X)
    Kxy = k(X[:10], X)
    d = k.diag(X)
    K32 = k(X.astype(np.float32))
    assert K.shape == (1000, 1000) and Kxy.shape == (10, 1000)
    np.testing.assert_array_equal(K, K.T)  # "exactly symmetric"
    for i, j in [(0, 0), (0, 1), (3, 999), (500, 17), (998, 999)]:
        assert K[i, j] == pytest.approx(_relu_ntk_entry(X[i], X[j], 2, 1.0, 0.1), rel=1e-10)
    np.testing.assert_allclose(Kxy, K[:10], rtol=1e-12)
    np.testing.assert_allclose(d, np.diag(K), rtol=1e-12)
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, K, rtol=2e-6)


def test_readme_kernel_machines_equal_scikit_learn():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.svm import SVC

    _in_readme(
        "Xtr, ytr = kc.datasets.stripe(300, 5, seed=1)",
        "reg = kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-4).fit(Xtr, ytr)",
        "clf = kc.NTKClassifier(kc.EmpiricalNTK(kc.FCNetwork.init(5, [256], seed=0)), "
        "C=1e20).fit(Xtr, ytr)",
        'flow = kc.NTKClassifier(solver="gradient_flow").fit(Xtr, ytr)',
        "gpr = GaussianProcessRegressor(kc.gp.as_sklearn_kernel(kc.NNGP(depth=3)), "
        "alpha=1e-6).fit(Xtr, ytr)",
    )
    Xtr, ytr = kc.datasets.stripe(300, 5, seed=1)
    Xte, _ = kc.datasets.stripe(200, 5, seed=1, split="test")
    reg = kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-4).fit(Xtr, ytr)
    K, Kt = kc.NTK(depth=2)(Xtr), kc.NTK(depth=2)(Xte, Xtr)
    ridge = KernelRidge(alpha=1e-4, kernel="precomputed").fit(K, ytr)
    np.testing.assert_allclose(reg.predict(Xte), ridge.predict(Kt), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(reg.dual_coef_, ridge.dual_coef_, rtol=1e-6, atol=1e-8)

    net = kc.FCNetwork.init(5, [256], seed=0)
    clf = kc.NTKClassifier(kc.EmpiricalNTK(net), C=1e20).fit(Xtr, ytr)
    Ke, Ket = kc.EmpiricalNTK(net)(Xtr), kc.EmpiricalNTK(net)(Xte, Xtr)
    svc = SVC(kernel="precomputed", C=1e20).fit(Ke, ytr)
    np.testing.assert_allclose(clf.decision_function(Xte), svc.decision_function(Ket),
                               rtol=1e-6, atol=1e-6)

    flow = kc.NTKClassifier(solver="gradient_flow").fit(Xtr, ytr)
    res = kc.training.kernel_gradient_flow(kc.NTK()(Xtr), ytr)
    assert flow.flow_result_.status == res.status == "converged"
    np.testing.assert_allclose(flow.decision_function(Xte),
                               res.decision_function(kc.NTK()(Xte, Xtr)), rtol=1e-9, atol=1e-12)

    gpr = GaussianProcessRegressor(kc.gp.as_sklearn_kernel(kc.NNGP(depth=3)),
                                   alpha=1e-6).fit(Xtr, ytr)
    G, Gt = kc.NNGP(depth=3)(Xtr), kc.NNGP(depth=3)(Xte, Xtr)
    mean = Gt @ np.linalg.solve(G + 1e-6 * np.eye(len(ytr)), ytr)  # the GP posterior mean
    np.testing.assert_allclose(gpr.predict(Xte), mean, rtol=1e-5, atol=1e-7)


def test_readme_kpca_numbers():
    _in_readme(
        "X, y = kc.datasets.stripe(1000, 5, seed=0)",
        "K = kc.EmpiricalNTK(net)(X)",
        'net = kc.FCNetwork.init(5, [500], activation="relu_unit", '
        'parameterization="mean_field", seed=0)',
        "ev = dg.kernel_pca(K, n_components=100)",
        "c = dg.label_projection(ev.eigenvectors, y)",
        "P = dg.cumulative_projection(c, y)",
        "lam = dg.compression(net, informative=[0])",
        "fit = dg.spectrum_power_law(ev)",
    )
    X, y = kc.datasets.stripe(1000, 5, seed=0)
    net = kc.FCNetwork.init(5, [500], activation="relu_unit", parameterization="mean_field",
                            seed=0)
    K = kc.EmpiricalNTK(net)(X)
    ev = dg.kernel_pca(K, n_components=100)
    c = dg.label_projection(ev.eigenvectors, y)
    P = dg.cumulative_projection(c, y)
    lam = dg.compression(net, informative=[0])
    fit = dg.spectrum_power_law(ev)

    w, V = _top_eigh(K, 100)
    np.testing.assert_allclose(ev.eigenvalues, w, rtol=1e-8, atol=1e-10 * w[0])
    np.testing.assert_allclose(ev.explained_ratio, w / np.trace(K), rtol=1e-8,
                               atol=1e-10)
    # the sign convention: the largest-magnitude entry of each eigenvector is positive
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(100)])
    np.testing.assert_allclose(c, (V * signs).T @ y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(P, np.cumsum(((V * signs).T @ y) ** 2) / 1000.0, rtol=1e-6,
                               atol=1e-9)
    assert np.all(np.diff(P) >= 0) and P[-1] < 1
    W = net.weights[0]
    assert lam == pytest.approx(math.sqrt(np.mean(W[:, 0] ** 2) / np.mean(W[:, 1:] ** 2)),
                                rel=1e-12)
    assert 0.8 < lam < 1.2  # isotropic at initialisation
    assert fit.fit_range == (2, 50)  # from rank 2 to k // 2 of the 100 kept
    ref = stats.linregress(np.log(np.arange(2, 51.0)), np.log(w[1:50]))
    assert fit.exponent == pytest.approx(-ref.slope, rel=1e-8)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-6)


def test_readme_training_numbers(tmp_path):
    _in_readme(
        "X, y = kc.datasets.stripe(512, 5, seed=0)",
        'net = kc.FCNetwork.init(5, [200], activation="relu_unit", '
        'parameterization="mean_field", seed=0)',
        'run = kc.training.train(net, X, y, alpha=0.05 / 200**0.5, path="run.h5", '
        "max_steps=5000)",
        "lam = kc.diagnostics.compression_at(run, informative=[0])",
        "k = kc.diagnostics.t_star(run)",
        'lam_end = kc.diagnostics.compression(run.net, informative=[0], convention="figures")',
        "kc.curves.compression_theory(512), kc.curves.beta_lazy(5), kc.curves.beta_feature(5)",
        "X_s = kc.diagnostics.stretch_inputs(X, [0], lam)",
    )
    X, y = kc.datasets.stripe(512, 5, seed=0)
    net = kc.FCNetwork.init(5, [200], activation="relu_unit", parameterization="mean_field",
                            seed=0)
    alpha = 0.05 / 200**0.5
    run = kc.training.train(net, X, y, alpha=alpha, path=tmp_path / "run.h5", max_steps=5000)
    lam = kc.diagnostics.compression_at(run, informative=[0])
    k = kc.diagnostics.t_star(run)
    lam_end = kc.diagnostics.compression(run.net, informative=[0], convention="figures")
    X_s = kc.diagnostics.stretch_inputs(X, [0], lam)
    saved = kc.io.open_run(tmp_path / "run.h5")

    def figures(W):  # w_1 / mean_{j>=2} w_j, w_j the RMS over neurons
        rms = np.sqrt(np.mean(W**2, axis=0))
        return rms[0] / rms[1:].mean()

    assert run.status == "converged"
    # t*: the first checkpoint with more than 10% of the stored margins >= 1
    stored = [float(np.mean(ck.margins >= 1.0)) for ck in saved.checkpoints]
    assert k == next(i for i, f in enumerate(stored) if f > 0.1)
    np.testing.assert_allclose(saved.checkpoints[k].margins,
                               alpha * y * (run.checkpoints[k].net(X) - net(X)), rtol=1e-9,
                               atol=1e-12)
    assert lam == pytest.approx(figures(saved.checkpoints[k].network.weights[0]), rel=1e-12)
    assert lam > 5  # feature-regime compression, the README's "lambda(t*) >> 1"
    assert lam_end == pytest.approx(figures(run.net.weights[0]), rel=1e-12)
    np.testing.assert_array_equal(X_s[:, 0], X[:, 0])
    np.testing.assert_allclose(X_s[:, 1:], X[:, 1:] / lam, rtol=1e-15)
    net_T = saved.checkpoints[-1].network
    np.testing.assert_array_equal(net_T.weights[0], run.net.weights[0])
    assert (saved.checkpoints[-1].margins >= 1).all()


def test_t_star_is_the_first_checkpoint_with_more_than_the_fraction(tmp_path, rng):
    # fractions 0.0, exactly 0.1, 0.2: "more than 10 %" is the third checkpoint, not the second
    X, y = rng.standard_normal((20, 3)), np.where(rng.standard_normal(20) > 0, 1.0, -1.0)
    path = tmp_path / "run.h5"
    nets = []
    with kc.io.RunWriter(path, X_train=X, y_train=y, config={"alpha": 1.0}) as w:
        for i, n_fitted in enumerate([0, 2, 4]):
            net = kc.FCNetwork.init(3, [6], seed=i)
            margins = np.where(np.arange(20) < n_fitted, 1.0, 0.5)
            w.add_checkpoint(net, step=i, time=float(i), loss=1.0, margins=margins)
            nets.append(net)
    assert kc.diagnostics.t_star(path) == 2
    assert kc.diagnostics.t_star(path, margin_fraction=0.05) == 1
    lam = kc.diagnostics.compression_at(path, informative=[0])
    assert lam == kc.diagnostics.compression(nets[2], informative=[0], convention="figures")
    with pytest.raises(ValueError, match=r"no checkpoint has more than 0\.2 of the margins"):
        kc.diagnostics.t_star(path, margin_fraction=0.2)


def test_readme_theory_numbers():
    # lambda_ODE = sqrt(0.1351 p); the exponents 0.385 (lazy) and 0.692 (feature) for d = 5
    assert curves.compression_theory(512) == pytest.approx(math.sqrt(0.13514 * 512), rel=1e-4)
    c = (2 / math.pi) * (math.exp(-0.3**2 / 2) - math.exp(-1.18549**2 / 2)) ** 2
    assert curves.compression_theory(512) == pytest.approx(math.sqrt(c * 512), rel=1e-14)
    assert curves.beta_lazy(5) == pytest.approx(5 / 13) and round(curves.beta_lazy(5), 3) == 0.385
    assert curves.beta_feature(5) == pytest.approx(9 / 13)
    assert round(curves.beta_feature(5), 3) == 0.692


def test_paper_ntk_is_twice_relu(rng):
    # sqrt(2) relu doubles E[phi phi] and E[phi' phi'] after the first layer; with no
    # readout bias the whole NTK doubles
    X, Y = rng.standard_normal((12, 5)), rng.standard_normal((7, 5))
    kw = {"depth": 1, "activation": "relu", "weight_std": 1.0, "bias_std": [1.0, None]}
    np.testing.assert_allclose(curves.paper_ntk()(X, Y), 2 * analytic_kernel(X, Y, **kw),
                               rtol=1e-12)


def test_readme_frozen_kernel_curve_numbers():
    _in_readme('lazy = kc.curves.frozen_kernel_curve("stripe", [128, 512, 2048], d=5, '
               "seeds=[0, 1], n_test=2000)")
    from sklearn.svm import SVC

    lazy = kc.curves.frozen_kernel_curve("stripe", [128, 512], d=5, seeds=[0, 1], n_test=2000)
    kw = {"depth": 1, "activation": "relu", "weight_std": 1.0, "bias_std": [1.0, None]}
    for j, seed in enumerate([0, 1]):
        Xt, yt = kc.datasets.stripe(2000, 5, seed=seed, split="test")
        for i, p in enumerate([128, 512]):
            X, y = kc.datasets.stripe(p, 5, seed=seed)
            # relu_unit = sqrt(2) relu doubles the kernel after the first layer: the hard
            # margin ignores the scale, so the naive ReLU kernel's machine is the same
            K, Kt = analytic_kernel(X, **kw), analytic_kernel(Xt, X, **kw)
            err = np.mean(SVC(kernel="precomputed", C=1e20).fit(K, y).predict(Kt) != yt)
            assert lazy.test_error[i, j] == pytest.approx(err, abs=1.5 / 2000)


# ---------------------------------------------------------------------------
# scripts/make_nt_fixtures.py describes the committed neural-tangents fixture
# ---------------------------------------------------------------------------
def _fixture_script():
    spec = importlib.util.spec_from_file_location(
        "make_nt_fixtures", ROOT / "scripts" / "make_nt_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixture_generator_matches_the_fixture_index():
    had_jax = "jax" in sys.modules
    mk = _fixture_script()
    assert ("jax" in sys.modules) == had_jax  # loading it never imports JAX
    index = json.loads((FIXTURES / "nt_reference_index.json").read_text())
    fields = ("id", "L", "activation", "W_std", "b_std", "parameterization", "code", "keys")
    assert mk.configs() == [{f: cfg[f] for f in fields} for cfg in index["configs"]]
    assert mk.DESCRIPTION == index["description"]
    assert (mk.SEED, [mk.N, mk.D], [mk.M, mk.D], mk.WIDTH) == (
        index["seed"], index["X_shape"], index["Y_shape"], index["width"])
    assert (mk.JAX_VERSION, mk.NT_VERSION) == (index["jax"], index["neural_tangents"])
    ref = np.load(FIXTURES / "nt_reference.npz")
    expected_keys = ["X", "Y", *(k for cfg in mk.configs() for k in cfg["keys"].values()),
                     "index_json"]
    assert list(ref.keys()) == expected_keys
    assert json.loads(str(ref["index_json"])) == index


def test_fixture_generator_reproduces_the_numpy_parts():
    mk = _fixture_script()
    index = json.loads((FIXTURES / "nt_reference_index.json").read_text())
    ref = np.load(FIXTURES / "nt_reference.npz")
    X, Y = mk.inputs()
    np.testing.assert_array_equal(X, ref["X"])
    np.testing.assert_array_equal(Y, ref["Y"])
    for cfg, stored in zip(mk.configs(), index["configs"], strict=True):
        keys = cfg["keys"]
        for want in ("nngp", "ntk"):
            exact = ref[keys[f"{want}_xx_diag_exact"]]
            assert mk.entrywise_rel_err(mk.exact_diagonal(cfg, X, want), exact) < 1e-15
            nt_diag = np.diag(ref[keys[f"{want}_xx"]])
            assert mk.entrywise_rel_err(nt_diag, exact) == stored[
                "nt_diag_max_rel_err_vs_exact"][want]
        for part in mk.PARTS:
            want, pair = part.split("_")
            diff = mk.max_rel_diff(mk.formula_kernel(cfg, X, X if pair == "xx" else Y, want),
                                   ref[keys[part]])
            assert diff <= 4 * stored["formula_max_rel_diff"][part] + 1e-15, (cfg["id"], part)
