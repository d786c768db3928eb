"""kc.curves: theory exponents, exponent fits with bootstrap, learning curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

import kernelcomp as kc
from kernelcomp import curves


def test_theory_values_of_the_paper():
    # Paccolat et al. (2021), learning curves (docs/definitions.rst): stripe d = 5: 0.385 vs
    # 0.692; d = 10: 0.357 vs 0.679; cylinder d_par=2: 1/2
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


# ---------------------------------------------------------------------------
# the authors' ODE estimate of the compression
# ---------------------------------------------------------------------------
def test_compression_theory_constant_and_sqrt_p_scaling():
    import math

    # the default stripe holds half of the Gaussian mass
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    assert phi(1.18549) - phi(-0.3) == pytest.approx(0.5, abs=1e-5)
    assert (kc.datasets.STRIPE_LOW, kc.datasets.STRIPE_HIGH) == (-0.3, 1.18549)
    exact = (2 / math.pi) * (math.exp(-0.3**2 / 2) - math.exp(-(1.18549**2) / 2)) ** 2
    lam1 = curves.compression_theory(1.0)
    assert isinstance(lam1, float)
    assert lam1**2 == pytest.approx(exact, rel=1e-12)
    assert lam1**2 == pytest.approx(0.13514, abs=1e-5)
    assert lam1 == pytest.approx(0.368, abs=5e-4)
    for p in (10, 100, 1e4):
        assert curves.compression_theory(p) == pytest.approx(math.sqrt(exact * p), rel=1e-12)
    assert curves.compression_theory(400) / curves.compression_theory(100) == pytest.approx(2.0)
    # another stripe
    other = (2 / math.pi) * (math.exp(-0.5) - math.exp(-2.0)) ** 2
    assert curves.compression_theory(3, x_min=1.0, x_max=2.0) == pytest.approx(
        math.sqrt(3 * other), rel=1e-12
    )


def test_compression_theory_arrays_in_arrays_out():
    p = [100, 200, 400, 800]
    lam = curves.compression_theory(p)
    assert isinstance(lam, np.ndarray) and lam.shape == (4,)
    np.testing.assert_allclose(lam, [curves.compression_theory(v) for v in p], rtol=1e-14)
    np.testing.assert_allclose(lam / np.sqrt(p), lam[0] / 10, rtol=1e-12)
    grid = curves.compression_theory(np.array([[1.0, 4.0], [9.0, 16.0]]))
    assert grid.shape == (2, 2)
    np.testing.assert_allclose(grid / grid[0, 0], [[1, 2], [3, 4]], rtol=1e-12)
    assert isinstance(curves.compression_theory(np.int64(5)), float)


def test_compression_theory_errors():
    with pytest.raises(ValueError, match="p must hold finite sizes > 0"):
        curves.compression_theory(0)
    with pytest.raises(ValueError, match="p must hold finite sizes > 0"):
        curves.compression_theory([10, -1])
    with pytest.raises(ValueError, match="p must hold finite sizes > 0"):
        curves.compression_theory(np.array([10, np.nan]))
    with pytest.raises(ValueError, match="p must be finite"):
        curves.compression_theory(float("inf"))
    with pytest.raises(TypeError, match="p must be a real number"):
        curves.compression_theory("100")
    with pytest.raises(TypeError, match="p must hold real numbers"):
        curves.compression_theory(["a", "b"])
    with pytest.raises(ValueError, match="x_min must be < x_max"):
        curves.compression_theory(10, x_min=1.0, x_max=1.0)
    with pytest.raises(TypeError, match="x_max must be a real number"):
        curves.compression_theory(10, x_max=None)


# ---------------------------------------------------------------------------
# max_error: the authors' drop rule for failed runs
# ---------------------------------------------------------------------------
def test_max_error_drops_a_failed_run_from_the_mean():
    p = np.array([100, 200, 400, 800])
    errs = np.array([
        [0.20, 0.22, 0.18],
        [0.14, 0.40, 0.15],  # seed 1 failed at p = 200
        [0.10, 0.11, 0.09],
        [0.07, 0.08, 0.065],
    ])
    fit = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=0, max_error=0.25)
    ref_mean = np.array([errs[0].mean(), (0.14 + 0.15) / 2, errs[2].mean(), errs[3].mean()])
    slope, icpt = np.polyfit(np.log(p), np.log(ref_mean), 1)
    assert fit.beta == pytest.approx(-slope, rel=1e-12)
    assert fit.intercept == pytest.approx(icpt, rel=1e-12)
    np.testing.assert_allclose(fit.mean_error, ref_mean, rtol=1e-14)
    assert fit.dropped.size == 0 and fit.p.tolist() == p.tolist()
    # without the rule the failed run pulls the mean up
    plain = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=0)
    assert plain.mean_error[1] == pytest.approx(errs[1].mean())
    assert plain.beta != pytest.approx(fit.beta, rel=1e-3)
    # a threshold above every error changes nothing (also through the bootstrap)
    a = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=200, seed=1)
    b = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=200, seed=1, max_error=1.0)
    assert a.beta == pytest.approx(b.beta, rel=1e-12)
    assert a.ci == pytest.approx(b.ci, rel=1e-12)
    # LearningCurve.fit_exponent forwards it
    lc = curves.LearningCurve(p, np.arange(3), errs, 10_000)
    assert lc.fit_exponent(n_bootstrap=0, max_error=0.25).beta == fit.beta


def test_max_error_bootstrap_averages_the_kept_runs_of_a_resample():
    p = np.array([100, 200, 400, 800])
    errs = np.array([
        [0.20, 0.22, 0.18, 0.21],
        [0.14, 0.40, 0.15, 0.50],
        [0.10, 0.11, 0.30, 0.30],  # only seeds 0 and 1 kept
        [0.07, 0.08, 0.065, 0.075],
    ])
    fit = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=300, seed=5, max_error=0.25)
    # the bootstrap written out: same resamples, kept runs only, empty sizes skipped
    rng = np.random.default_rng(5)
    ok = errs < 0.25
    betas = []
    for _ in range(300):
        idx = rng.integers(0, 4, 4)
        means = []
        for i in range(p.size):
            kept = [errs[i, j] for j in idx if ok[i, j]]
            means.append(np.mean(kept) if kept else np.nan)
        if np.isnan(means).any():
            continue
        betas.append(-np.polyfit(np.log(p), np.log(means), 1)[0])
    assert 0 < len(betas) < 300  # some resamples left p = 400 without a run
    ref = np.quantile(betas, [0.025, 0.975])
    assert fit.ci == pytest.approx(tuple(ref), rel=1e-10)


def test_max_error_drops_a_size_whose_every_run_failed():
    p = np.array([50, 100, 200, 400])
    errs = np.array([[0.30, 0.45], [0.2, 0.21], [0.14, 0.15], [0.1, 0.11]])
    fit = curves.fit_exponent(p, errs, n_test=10_000, n_bootstrap=50, max_error=0.25)
    assert fit.dropped.tolist() == [50]
    assert fit.p.tolist() == [100, 200, 400]
    slope = np.polyfit(np.log(p[1:]), np.log(errs[1:].mean(axis=1)), 1)[0]
    assert fit.beta == pytest.approx(-slope, rel=1e-12)
    assert np.isfinite(fit.ci).all()
    # min_errors counts on the mean over kept runs: 0.0012 -> 12 errors, the failed run ignored
    p2 = np.array([100, 200, 400])
    errs2 = np.array([[0.2, 0.2], [0.1, 0.1], [0.0012, 0.9]])
    kept = curves.fit_exponent(p2, errs2, n_test=10_000, n_bootstrap=0, max_error=0.25)
    assert kept.p.tolist() == [100, 200, 400]
    assert kept.mean_error[2] == pytest.approx(0.0012)
    few = curves.fit_exponent(p2, errs2, n_test=5000, n_bootstrap=0, max_error=0.25)
    assert few.dropped.tolist() == [400]  # 6 errors < 10
    with pytest.raises(ValueError, match=r"every run >= max_error=0\.25"):
        curves.fit_exponent(p, errs, max_error=0.25, p_range=(50, 100))


def test_max_error_out_of_range():
    p, errs = np.array([10, 100, 1000]), np.array([[0.3], [0.1], [0.01]])
    for bad in (0, 0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"max_error must be in \(0, 1\]"):
            curves.fit_exponent(p, errs, max_error=bad)
    with pytest.raises(ValueError, match="max_error must be finite"):
        curves.fit_exponent(p, errs, max_error=float("nan"))
    with pytest.raises(TypeError, match="max_error must be a real number"):
        curves.fit_exponent(p, errs, max_error="0.25")


# ---------------------------------------------------------------------------
# lazy curves from the frozen initial NTK
# ---------------------------------------------------------------------------
def _by_hand(make_kernel, p, seeds, n_test, d, **clf_options):
    """The frozen-kernel curve written out, with learning_curve's draws."""
    out = np.empty((len(p), len(seeds)))
    for j, s in enumerate(seeds):
        Xt, yt = kc.datasets.load("stripe", n_test, d, s, split="test")
        X_all, y_all = kc.datasets.load("stripe", max(p), d, s, split="train")
        for i, n in enumerate(p):
            clf = kc.NTKClassifier(make_kernel(s), **clf_options).fit(X_all[:n], y_all[:n])
            out[i, j] = np.mean(clf.predict(Xt) != yt)
    return out


def test_paper_ntk_is_the_kernel_of_the_paper_network():
    k = curves.paper_ntk()
    assert k == kc.NTK(depth=1, activation="relu_unit", weight_std=1.0, bias_std=[1.0, None])
    # h times the empirical NTK of the width-h network tends to it (1/h readout);
    # measured: max relative deviation 2.5% at h = 20000 (seed 0; 1.7-3.9% over seeds 0-4),
    # the O(1/sqrt(h)) fluctuation of a finite network
    X = np.random.default_rng(7).standard_normal((10, 3))
    h = 20_000
    net = kc.FCNetwork.init(3, [h], activation="relu_unit", parameterization="mean_field",
                            bias=True, seed=0)
    np.testing.assert_allclose(h * kc.EmpiricalNTK(net)(X), k(X), rtol=0.05)


def test_frozen_kernel_curve_analytic_matches_a_manual_loop():
    p, seeds = [32, 64], [0, 1]
    lc = curves.frozen_kernel_curve("stripe", p, seeds=seeds, n_test=500, d=3)
    assert isinstance(lc, curves.LearningCurve)
    assert lc.test_error.shape == (2, 2) and lc.n_test == 500
    ref = _by_hand(lambda s: curves.paper_ntk(), p, seeds, 500, 3, C=1e20)
    np.testing.assert_array_equal(lc.test_error, ref)
    assert (lc.test_error < 0.5).all()
    # a kernel object is used as is
    same = curves.frozen_kernel_curve("stripe", p, kernel=curves.paper_ntk(), seeds=seeds,
                                      n_test=500, d=3)
    np.testing.assert_array_equal(same.test_error, lc.test_error)
    other = curves.frozen_kernel_curve("stripe", [32], kernel=kc.NTK(depth=2), seeds=[0],
                                       n_test=500, d=3)
    ref2 = _by_hand(lambda s: kc.NTK(depth=2), [32], [0], 500, 3, C=1e20)
    np.testing.assert_array_equal(other.test_error, ref2)


def test_frozen_kernel_curve_empirical_uses_a_fresh_paper_network_per_seed():
    p, seeds, h = [32, 64], [0, 1], 64

    def kernel(s):
        net = kc.FCNetwork.init(3, [h], activation="relu_unit", parameterization="mean_field",
                                bias=True, seed=s)
        return kc.EmpiricalNTK(net)

    lc = curves.frozen_kernel_curve("stripe", p, kernel="empirical", h=h, seeds=seeds,
                                    n_test=500, d=3)
    np.testing.assert_array_equal(lc.test_error, _by_hand(kernel, p, seeds, 500, 3, C=1e20))


def test_frozen_kernel_curve_gradient_flow():
    p = [16, 32]
    lc = curves.frozen_kernel_curve("stripe", p, machine="gradient_flow", seeds=[0],
                                    n_test=200, d=3)
    assert lc.test_error.shape == (2, 1)
    assert ((lc.test_error >= 0) & (lc.test_error <= 1)).all()
    ref = _by_hand(lambda s: curves.paper_ntk(), p, [0], 200, 3, solver="gradient_flow")
    np.testing.assert_array_equal(lc.test_error, ref)


def test_frozen_kernel_curve_errors():
    with pytest.raises(ValueError, match=r"kernel must be one of \['analytic', 'empirical'\]"):
        curves.frozen_kernel_curve("stripe", [8], kernel="lazy", d=2)
    with pytest.raises(TypeError, match=r"kernel must be one of .* or a kernelcomp kernel"):
        curves.frozen_kernel_curve("stripe", [8], kernel=3, d=2)
    with pytest.raises(ValueError, match=r"machine must be one of \['svc', 'gradient_flow'\]"):
        curves.frozen_kernel_curve("stripe", [8], machine="ridge", d=2)
    with pytest.raises(TypeError, match="machine must be one of"):
        curves.frozen_kernel_curve("stripe", [8], machine=None, d=2)
    with pytest.raises(ValueError, match="h must be >= 1"):
        curves.frozen_kernel_curve("stripe", [8], kernel="empirical", h=0, d=2)
    with pytest.raises(ValueError, match=r"d .* is required"):
        curves.frozen_kernel_curve("stripe", [8])


def _naive_slope_ci(p, per_seed, n_boot=1000, level=0.95):
    """The demo's former fit (np.polyfit, one resample of the seeds per draw): the oracle."""
    p = np.asarray(p, dtype=float)

    def slope(v):
        with np.errstate(invalid="ignore"):
            m = np.array([np.mean(r[np.isfinite(r) & (r > 0)]) if np.any(r > 0) else np.nan
                          for r in v])
        ok = np.isfinite(m)
        return np.polyfit(np.log(p[ok]), np.log(m[ok]), 1)[0] if ok.sum() >= 2 else np.nan

    s = slope(per_seed)
    gen = np.random.default_rng(0)
    n = per_seed.shape[1]
    boots = np.array([slope(per_seed[:, gen.integers(0, n, n)]) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    q = (1 - level) / 2
    return s, [np.quantile(boots, q), np.quantile(boots, 1 - q)]


def test_loglog_slope_matches_the_naive_seed_bootstrap(rng):
    p = np.array([16.0, 32.0, 64.0, 128.0])
    lam = np.sqrt(p)[:, None] * np.exp(0.3 * rng.standard_normal((4, 5)))
    lam[1, 2] = np.nan  # a run stopped before t*: left out of its size's mean
    slope, ci = curves.loglog_slope(p, lam)
    ref, ref_ci = _naive_slope_ci(p, lam)
    assert slope == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(ci, ref_ci, rtol=1e-10)
    assert ci[0] < slope < ci[1]
    assert curves.loglog_slope(p[:1], lam[:1]) == (None, [None, None])
