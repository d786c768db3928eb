"""kc.curves: theory exponents, exponent fits with bootstrap, learning curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

import kernelcomp as kc
from kernelcomp import curves


def test_theory_values_of_the_paper():
    # PAPER.md: stripe d = 5: 0.385 vs 0.692; d = 10: 0.357 vs 0.679; cylinder d_par=2: 1/2
    assert curves.beta_lazy(5) == pytest.approx(0.385, abs=5e-4)
    assert curves.beta_feature(5) == pytest.approx(0.692, abs=5e-4)
    assert curves.beta_lazy(10) == pytest.approx(0.357, abs=5e-4)
    assert curves.beta_feature(10) == pytest.approx(0.679, abs=5e-4)
    for d in (3, 5, 10, 30):
        assert curves.beta_feature(d, d_par=2) == pytest.approx(0.5, rel=1e-14)
        assert curves.beta_feature(d) > curves.beta_lazy(d)
    assert curves.beta_feature(6, d_par=3) == pytest.approx((6 + 1.5) / 16)


def test_theory_errors():
    with pytest.raises(ValueError, match="d must be >= 1"):
        curves.beta_lazy(0)
    with pytest.raises(ValueError, match="d_par must be <= d"):
        curves.beta_feature(3, d_par=4)
    with pytest.raises(TypeError, match="d must be an integer"):
        curves.beta_feature(2.5)


def _power_law_errors(rng, beta, p, n_seeds, n_test):
    """Binomial test errors of a true power law (the oracle)."""
    rate = 0.8 * p.astype(float) ** (-beta)
    return rng.binomial(n_test, rate[:, None], size=(p.size, n_seeds)) / n_test


@pytest.fixture
def rng():
    return np.random.default_rng(12)


def test_fit_recovers_a_power_law_with_an_interval(rng):
    p = np.array([64, 128, 256, 512, 1024, 2048])
    errs = _power_law_errors(rng, 0.6, p, n_seeds=8, n_test=20_000)
    fit = curves.fit_exponent(p, errs, n_test=20_000, n_bootstrap=500)
    assert fit.beta == pytest.approx(0.6, abs=0.03)
    assert fit.ci[0] <= fit.beta <= fit.ci[1]
    assert fit.ci[0] < 0.6 < fit.ci[1]


def test_interval_covers_the_true_exponent_most_of_the_time():
    # a 95% bootstrap interval over seeds: measured coverage 0.925 over 40 data sets
    p = np.array([64, 128, 256, 512, 1024, 2048])
    covered = 0
    for s in range(30):
        errs = _power_law_errors(np.random.default_rng(100 + s), 0.6, p, n_seeds=8, n_test=20_000)
        fit = curves.fit_exponent(p, errs, n_test=20_000, n_bootstrap=200)
        covered += fit.ci[0] < 0.6 < fit.ci[1]
    assert covered >= 24  # >= 80%: a broken interval (too narrow, or off-centre) fails
    # the plain least-squares reference, written out
    x, z = np.log(p), np.log(errs.mean(axis=1))
    slope = ((x - x.mean()) * (z - z.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert fit.beta == pytest.approx(-slope, rel=1e-10)
    np.testing.assert_allclose(fit.predict(p), np.exp(fit.intercept) * p**-fit.beta)


def test_fit_drops_sizes_with_few_test_errors():
    p = np.array([10, 100, 1000, 10_000])
    errs = np.array([[0.2, 0.2], [0.1, 0.1], [0.05, 0.05], [0.0004, 0.0006]])
    fit = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=0)
    assert fit.dropped.tolist() == [10_000]  # 5 errors on average < 10
    assert fit.p.tolist() == [10, 100, 1000]
    assert fit.ci == (fit.beta, fit.beta)
    fit_all = curves.fit_exponent(p, errs, n_test=10_000, min_errors=1, n_bootstrap=0)
    assert fit_all.p.size == 4


def test_fit_range_and_errors():
    p = np.array([10, 100, 1000])
    errs = np.array([[0.3], [0.1], [0.01]])
    fit = curves.fit_exponent(p, errs, p_range=(100, 1000), n_bootstrap=0)
    assert fit.beta == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fewer than two sizes left"):
        curves.fit_exponent(p, errs, p_range=(500, 5000))
    with pytest.raises(ValueError, match=r"errors must have shape \(len\(p\), n_seeds\)"):
        curves.fit_exponent(p, np.ones((2, 3)) * 0.1)
    with pytest.raises(ValueError, match=r"errors must hold test errors in \[0, 1\]"):
        curves.fit_exponent(p, errs * 50)
    with pytest.raises(ValueError, match="p must hold finite sizes > 0"):
        curves.fit_exponent([0, 1, 2], errs)
    with pytest.raises(ValueError, match="level must be in"):
        curves.fit_exponent(p, errs, level=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        curves.fit_exponent(p, errs, p_range=(1000, 10))


def test_bootstrap_is_seeded_and_widens_with_noise(rng):
    p = np.array([100, 200, 400, 800])
    errs = _power_law_errors(rng, 0.5, p, n_seeds=5, n_test=2000)
    a = curves.fit_exponent(p, errs, n_test=2000, seed=3)
    b = curves.fit_exponent(p, errs, n_test=2000, seed=3)
    assert a.ci == b.ci
    noisy = errs * np.exp(np.random.default_rng(1).normal(0, 0.3, errs.shape))
    c = curves.fit_exponent(p, np.clip(noisy, 0, 1), n_test=2000, seed=3)
    assert c.ci[1] - c.ci[0] > a.ci[1] - a.ci[0]


def test_learning_curve_with_an_estimator_matches_a_manual_loop():
    p = [20, 60]
    lc = curves.learning_curve(KNeighborsClassifier(3), "stripe", p, seeds=[0, 1],
                               n_test=300, d=3)
    assert lc.test_error.shape == (2, 2)
    for j, s in enumerate([0, 1]):
        Xt, yt = kc.datasets.stripe(300, 3, s, split="test")
        for i, n in enumerate(p):
            X, y = kc.datasets.stripe(n, 3, s)
            ref = np.mean(KNeighborsClassifier(3).fit(X, y).predict(Xt) != yt)
            assert lc.test_error[i, j] == ref
    assert lc.mean().shape == (2,)
    d = lc.to_dict()
    assert d["p"] == p and len(d["test_error"]) == 2


def test_learning_curve_with_a_recipe_collects_metrics():
    seen = []

    def recipe(X, y, Xt, yt, seed):
        seen.append((X.shape[0], Xt.shape[0], seed))
        return {"test_error": 1.0 / X.shape[0], "width": float(seed)}

    def data(n, seed, split):
        rng = np.random.default_rng([seed, split == "test"])
        return rng.standard_normal((n, 2)), np.ones(n)

    lc = curves.learning_curve(recipe, data, [10, 40], seeds=[3, 4], n_test=7)
    assert sorted(seen) == [(10, 7, 3), (10, 7, 4), (40, 7, 3), (40, 7, 4)]
    np.testing.assert_allclose(lc.test_error, [[0.1, 0.1], [0.025, 0.025]])
    np.testing.assert_allclose(lc.metrics["width"], [[3, 4], [3, 4]])
    np.testing.assert_allclose(lc.mean("width"), [3.5, 3.5])
    assert lc.fit_exponent(n_bootstrap=0, min_errors=0).beta == pytest.approx(1.0)


def test_estimator_recipe_factory():
    r = curves.estimator_recipe(lambda: KNeighborsClassifier(1))
    X, y = kc.datasets.stripe(30, 2, seed=0)
    assert r(X, y, X, y, 0) == 0.0
    with pytest.raises(TypeError, match="estimator must have fit/predict"):
        curves.estimator_recipe(3)


def test_learning_curve_errors():
    with pytest.raises(TypeError, match="p must be a sequence"):
        curves.learning_curve(KNeighborsClassifier(), "stripe", 10, d=2)
    with pytest.raises(ValueError, match="p must hold at least one size"):
        curves.learning_curve(KNeighborsClassifier(), "stripe", [], d=2)
    with pytest.raises(ValueError, match=r"p\[1\] must be >= 1"):
        curves.learning_curve(KNeighborsClassifier(), "stripe", [5, 0], d=2)
    with pytest.raises(ValueError, match=r"d .* is required"):
        curves.learning_curve(KNeighborsClassifier(), "stripe", [5])
    with pytest.raises(ValueError, match="data must be one of"):
        curves.learning_curve(KNeighborsClassifier(), "ring", [5], d=2)
    with pytest.raises(ValueError, match="seeds must hold at least one seed"):
        curves.learning_curve(KNeighborsClassifier(), "stripe", [5], seeds=[], d=2)
    with pytest.raises(TypeError, match="a recipe must return a test error"):
        curves.learning_curve(lambda *a: "x", "stripe", [5], seeds=[0], n_test=5, d=2)
    with pytest.raises(ValueError, match="must hold 'test_error'"):
        curves.learning_curve(lambda *a: {"e": 1}, "stripe", [5], seeds=[0], n_test=5, d=2)
