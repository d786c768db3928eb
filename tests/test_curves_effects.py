"""Each documented parameter of ``kc.curves`` has its documented effect (issue 26).

The mutation round on ``kernelcomp/curves.py`` (``make mutation``) left mutants that no
test told apart: a bound of a validated argument moved, a name in a message, a
boundary (``>`` vs ``>=``) never sat on, a key of a serialised curve, the ``n_test``
a curve hands to its own fit, the seed an estimator recipe passes on. Each test here
sits on one of them with an independent oracle: the paper's formula by hand, a plain
float64 computation, a recording estimator.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import ClassVar

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from kernelcomp import curves, datasets


# ------------------------------------------------------------------ theory
def test_beta_feature_bounds_of_d_and_d_par():
    # d = 1 is allowed (one direction, the stripe): (2 - 1) / (3 - 2) = 1
    assert curves.beta_feature(1) == 1.0
    assert curves.beta_lazy(1) == 1.0
    # d_par = d is allowed (no perpendicular direction): d / (3d - 2)
    assert curves.beta_feature(3, d_par=3) == pytest.approx(3 / 7, rel=1e-15)
    assert curves.beta_feature(2, d_par=2) == pytest.approx(2 / 4, rel=1e-15)
    with pytest.raises(ValueError, match=r"^d must be >= 1, got 0$"):
        curves.beta_feature(0)
    with pytest.raises(ValueError, match=r"^d_par must be >= 1, got 0$"):
        curves.beta_feature(3, d_par=0)
    with pytest.raises(TypeError, match=r"^d_par must be an integer"):
        curves.beta_feature(3, d_par=1.5)


def test_compression_theory_edges_and_scalar_type():
    with pytest.raises(TypeError, match=r"^x_min must be a real number"):
        curves.compression_theory(1.0, x_min="a")
    with pytest.raises(TypeError, match=r"^x_max must be a real number"):
        curves.compression_theory(1.0, x_max="a")
    with pytest.raises(ValueError, match=r"x_min must be < x_max, got x_min=1.0 and x_max=1.0"):
        curves.compression_theory(1.0, x_min=1.0, x_max=1.0)
    # "a float for a scalar p": a Python float, not a numpy scalar
    assert type(curves.compression_theory(4.0)) is float
    assert type(curves.compression_theory(np.int64(4))) is float
    out = curves.compression_theory(np.array([1, 4], dtype=np.int32))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    # a stripe of other edges, by hand
    c = (2 / math.pi) * (math.exp(-0.0**2 / 2) - math.exp(-1.0**2 / 2)) ** 2
    assert curves.compression_theory(9.0, x_min=0.0, x_max=1.0) == pytest.approx(
        math.sqrt(9 * c), rel=1e-14)


# ------------------------------------------------------------------ log-log slope
def test_loglog_slope_computes_in_float64_whatever_the_input():
    rng = np.random.default_rng(3)
    p = np.array([10, 30, 90, 270], dtype=np.float32)
    per_seed = (np.sqrt(p.astype(np.float64))[:, None]
                * np.exp(0.2 * rng.standard_normal((4, 6)))).astype(np.float32)
    got = curves.loglog_slope(p, per_seed, n_bootstrap=50)
    ref = curves.loglog_slope(p.astype(np.float64), per_seed.astype(np.float64),
                              n_bootstrap=50)
    assert got == ref
    # integer inputs are read as float64 too
    ints = curves.loglog_slope([10, 30, 90], [[1, 2], [2, 3], [4, 5]], n_bootstrap=0)
    flts = curves.loglog_slope([10.0, 30.0, 90.0], [[1.0, 2.0], [2.0, 3.0], [4.0, 5.0]],
                               n_bootstrap=0)
    assert ints[0] == flts[0]


def test_loglog_slope_leaves_out_zero_and_keeps_values_below_one():
    p = np.array([1.0, 4.0, 16.0])
    # values below 1 are positive: kept; a zero is "not positive": left out of its mean
    per_seed = np.array([[0.1, 0.1], [0.2, 0.2], [0.4, 0.0]])
    slope, _ = curves.loglog_slope(p, per_seed, n_bootstrap=0)
    # means 0.1, 0.2, 0.4 (the zero left out): slope log(2)/log(4) = 0.5
    assert slope == pytest.approx(0.5, rel=1e-12)


# ------------------------------------------------------------------ LearningCurve
def _curve():
    p = np.array([100, 200, 400, 800])
    err = np.array([[0.2, 0.2], [0.1, 0.1], [0.05, 0.05], [0.004, 0.004]])
    return curves.LearningCurve(p, np.array([0, 1]), err, n_test=1000,
                                metrics={"lam": np.array([[1.0, 2.0]] * 4)})


def test_learning_curve_fit_reads_its_own_n_test():
    lc = _curve()
    # 0.004 * 1000 = 4 test errors < 10: the last size is dropped with the curve's n_test
    fit = lc.fit_exponent(n_bootstrap=0)
    assert fit.dropped.tolist() == [800]
    ref = curves.fit_exponent(lc.p, lc.test_error, n_test=1000, n_bootstrap=0)
    assert fit.beta == ref.beta and fit.p.tolist() == [100, 200, 400]
    # an explicit n_test wins
    assert lc.fit_exponent(n_bootstrap=0, n_test=10_000).dropped.tolist() == []


def test_learning_curve_to_dict_is_the_documented_json():
    d = _curve().to_dict()
    assert d == {
        "p": [100, 200, 400, 800],
        "seeds": [0, 1],
        "n_test": 1000,
        "test_error": [[0.2, 0.2], [0.1, 0.1], [0.05, 0.05], [0.004, 0.004]],
        "metrics": {"lam": [[1.0, 2.0]] * 4},
    }
    json.dumps(d)


# ------------------------------------------------------------------ estimator_recipe
class _Recorder(ClassifierMixin, BaseEstimator):
    """Predicts class 1 everywhere and records the random_state it was fitted with."""

    seen: ClassVar[list] = []

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        _Recorder.seen.append(self.random_state)
        return self

    def predict(self, X):
        return np.ones(len(X))


class _Plain:
    """fit/predict and nothing else (no get_params): left as the factory made it."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_estimator_recipe_passes_the_seed_as_random_state():
    _Recorder.seen = []
    recipe = curves.estimator_recipe(_Recorder())
    X, y = np.zeros((4, 2)), np.array([0, 1, 1, 1])
    assert recipe(X, y, X, y, 7) == 0.25
    assert _Recorder.seen == [7]
    # an object without get_params runs as is
    assert curves.estimator_recipe(lambda: _Plain())(X, y, X, y, 3) == 0.75
    with pytest.raises(TypeError, match=r"a factory returning such an object, got int$"):
        curves.estimator_recipe(3)


# ------------------------------------------------------------------ fit_exponent
def _law(p, beta=0.5, a=2.0, n_seeds=3):
    p = np.asarray(p, dtype=np.float64)
    return a * p[:, None] ** -beta * np.ones((1, n_seeds))


def test_fit_exponent_validates_each_argument_with_its_message():
    p = np.array([100.0, 200.0, 400.0])
    err = _law(p) / 10
    with pytest.raises(ValueError, match=r"^p must be a non-empty 1-D array of sizes, got "
                                         r"shape \(3, 1\)$"):
        curves.fit_exponent(p[:, None], err)
    with pytest.raises(ValueError, match=r"p must be a non-empty 1-D array of sizes, got "
                                         r"shape \(0,\)"):
        curves.fit_exponent([], np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"^p must hold finite sizes > 0$"):
        curves.fit_exponent([0.0, 200.0, 400.0], err)
    with pytest.raises(ValueError, match=r"^errors must hold test errors in \[0, 1\] \(no NaN\)$"):
        curves.fit_exponent(p, np.where(np.eye(3, dtype=bool), np.nan, err))
    with pytest.raises(ValueError, match=r"errors must hold test errors in \[0, 1\]"):
        curves.fit_exponent(p, err * 0 + 1.5)
    with pytest.raises(ValueError, match=r"errors must hold test errors in \[0, 1\]"):
        curves.fit_exponent(p, err * 0 - 0.1)
    with pytest.raises(ValueError, match=r"^n_test must be >= 1, got 0$"):
        curves.fit_exponent(p, err, n_test=0)
    # one size: a valid p, refused only for having fewer than two sizes to fit
    with pytest.raises(ValueError, match=r"fewer than two sizes left to fit \(1\)"):
        curves.fit_exponent([100.0], [[0.1, 0.1]])


def test_fit_exponent_accepts_the_edges_of_its_ranges():
    # p = 1 and fractional sizes are sizes > 0; errors of exactly 0 and exactly 1 are in [0, 1]
    p = np.array([0.5, 1.0, 4.0])
    err = np.array([[1.0, 1.0], [0.5, 0.5], [0.25, 0.0]])
    fit = curves.fit_exponent(p, err, n_bootstrap=0)
    # means 1, 0.5, 0.125: least squares on log-log by hand
    lp, le = np.log(p), np.log([1.0, 0.5, 0.125])
    ref = np.polyfit(lp, le, 1)
    assert fit.beta == pytest.approx(-ref[0], rel=1e-12)
    assert fit.intercept == pytest.approx(ref[1], rel=1e-12, abs=1e-14)


def test_fit_exponent_reads_one_seed_from_a_1d_array():
    p = np.array([100.0, 200.0, 400.0])
    err = _law(p, n_seeds=1)
    one = curves.fit_exponent(p, err[:, 0], n_bootstrap=20)
    two = curves.fit_exponent(p, err, n_bootstrap=20)
    assert one.beta == two.beta and one.ci == two.ci


def test_fit_exponent_computes_in_float64_whatever_the_input():
    rng = np.random.default_rng(5)
    p = np.array([100, 300, 900, 2700], dtype=np.float32)
    err = (0.9 * p[:, None].astype(np.float64) ** -0.4
           * np.exp(0.1 * rng.standard_normal((4, 5)))).astype(np.float32)
    got = curves.fit_exponent(p, err, n_test=10_000, n_bootstrap=30)
    ref = curves.fit_exponent(p.astype(np.float64), err.astype(np.float64), n_test=10_000,
                              n_bootstrap=30)
    assert got.beta == ref.beta and got.ci == ref.ci and got.intercept == ref.intercept
    # predict is float64 for float32 sizes too
    out = ref.predict(np.array([1000.0], dtype=np.float32))
    assert out.dtype == np.float64
    assert out[0] == pytest.approx(math.exp(ref.intercept) * 1000.0 ** -ref.beta, rel=1e-14)


def test_fit_exponent_documented_defaults():
    rng = np.random.default_rng(9)
    p = np.array([100, 200, 400, 800])
    err = 0.5 * p[:, None] ** -0.5 * np.exp(0.2 * rng.standard_normal((4, 6)))
    # exactly 10 test errors (0.01 * 1000) sits on the default min_errors: kept
    err[3] = 0.01
    fit = curves.fit_exponent(p, err, n_test=1000)
    assert fit.p.tolist() == [100, 200, 400, 800] and fit.dropped.size == 0
    assert fit.n_bootstrap == 1000 and fit.level == 0.95
    explicit = curves.fit_exponent(p, err, n_test=1000, min_errors=10.0, n_bootstrap=1000,
                                   level=0.95, seed=0)
    assert fit.ci == explicit.ci
    assert curves.fit_exponent(p, err, n_test=1000, seed=1).ci != fit.ci
    # 9.99 errors: below the default, dropped
    err[3] = 0.00999
    assert curves.fit_exponent(p, err, n_test=1000, n_bootstrap=0).dropped.tolist() == [800]


def test_fit_exponent_validates_the_options_with_their_names():
    p = np.array([100.0, 200.0, 400.0])
    err = _law(p) / 10

    def fit(**kw):
        return curves.fit_exponent(p, err, n_bootstrap=0, **kw)

    # n_test = 1 is allowed (with min_errors = 0 every positive mean counts)
    assert fit(n_test=1, min_errors=0).p.tolist() == [100, 200, 400]
    for kw, exc, msg in [
        ({"n_test": 0}, ValueError, r"^n_test must be >= 1, got 0$"),
        ({"n_test": 1.5}, TypeError, r"^n_test must be an integer"),
        ({"min_errors": -1.0}, ValueError, r"^min_errors must be >= 0.0, got -1.0$"),
        ({"min_errors": "a"}, TypeError, r"^min_errors must be a real number"),
        ({"n_bootstrap": -1}, ValueError, r"^n_bootstrap must be >= 0, got -1$"),
        ({"n_bootstrap": 1.5}, TypeError, r"^n_bootstrap must be an integer"),
        ({"level": "a"}, TypeError, r"^level must be a real number"),
        ({"level": 0.0}, ValueError, r"^level must be in \(0, 1\), got 0.0$"),
        ({"level": 1.0}, ValueError, r"^level must be in \(0, 1\), got 1.0$"),
        ({"p_range": 5}, ValueError, r"^p_range must be a pair \(low, high\), got 5$"),
        ({"p_range": (1, 2, 3)}, ValueError, r"^p_range must be a pair \(low, high\), got"),
        ({"p_range": ("a", 500)}, TypeError, r"^p_range must be a real number"),
        ({"p_range": (400, 100)}, ValueError, r"^p_range must have low <= high"),
        # low == high is a valid range, holding one size here
        ({"p_range": (200, 200)}, ValueError, r"^fewer than two sizes left to fit \(1\)"),
    ]:
        with pytest.raises(exc, match=msg):
            curves.fit_exponent(p, err, **({"n_bootstrap": 0} | kw))
    with pytest.raises(ValueError, match=r"^n_bootstrap must be >= 0"):
        curves.fit_exponent(p, err, n_bootstrap=-1)


def test_fit_exponent_without_n_test_drops_zero_means():
    # "None keeps every size with a positive mean error": a zero mean is not positive
    p = np.array([100.0, 200.0, 400.0, 800.0])
    err = _law(p) / 10
    err[3] = 0.0
    fit = curves.fit_exponent(p, err, n_bootstrap=0)
    assert fit.dropped.tolist() == [800] and fit.p.tolist() == [100, 200, 400]
    assert fit.beta == pytest.approx(0.5, rel=1e-12)


def test_fit_exponent_message_lists_the_dropped_sizes_and_both_reasons():
    p = np.array([100.0, 200.0, 400.0])
    err = np.array([[0.3, 0.3], [0.001, 0.001], [0.1, 0.1]])
    msg = (r"^fewer than two sizes left to fit \(1\): widen p_range or use a larger test set "
           r"\(sizes dropped for < 10 test errors or every run >= max_error=0.25: "
           r"\[100, 200\]\)$")
    with pytest.raises(ValueError, match=msg):
        curves.fit_exponent(p, err, n_test=1000, max_error=0.25)
    with pytest.raises(ValueError, match=r"\(sizes dropped for < 10 test errors: \[200\]\)$"):
        curves.fit_exponent(p[1:], err[1:], n_test=1000)


def test_fit_exponent_bootstrap_skips_zero_means_without_a_warning():
    # seed 0 failed at p = 200 (error 0 is a measured zero): the resamples that draw only
    # seed 0 have a zero mean there and are skipped, with no log(0) warning on the way
    p = np.array([100.0, 200.0, 400.0])
    err = np.array([[0.2, 0.22], [0.0, 0.15], [0.1, 0.11]])
    with np.errstate(all="raise"):
        fit = curves.fit_exponent(p, err, n_bootstrap=200)
    assert np.isfinite(fit.ci).all()
    # the by-hand bootstrap: the same resamples, zero means skipped
    rng = np.random.default_rng(0)
    betas = []
    for _ in range(200):
        m = err[:, rng.integers(0, 2, 2)].mean(axis=1)
        if (m > 0).all():
            betas.append(-np.polyfit(np.log(p), np.log(m), 1)[0])
    np.testing.assert_allclose(fit.ci, np.quantile(betas, [0.025, 0.975]), rtol=1e-10)


def test_fit_exponent_validates_the_bootstrap_seed():
    p = np.array([100.0, 200.0, 400.0])
    err = _law(p) / 10
    with pytest.raises(ValueError, match=r"^seed must be >= 0, got -1$"):
        curves.fit_exponent(p, err, seed=-1, n_bootstrap=5)
    with pytest.raises(TypeError, match=r"^seed must be an integer"):
        curves.fit_exponent(p, err, seed=0.5, n_bootstrap=5)


# ------------------------------------------------------------------ learning_curve
def _toy_data(log):
    """``data(n, seed, split)`` that records its calls; row i of a draw holds i."""

    def data(n, seed, split):
        log.append((n, seed, split))
        X = np.arange(n, dtype=np.float64)[:, None] + (0.5 if split == "test" else 0.0)
        return X, np.full(n, float(seed))

    return data


def test_learning_curve_draws_nested_sets_and_passes_ints():
    log, calls = [], []

    def recipe(X, y, Xt, yt, seed):
        calls.append((X[:, 0].tolist(), Xt.shape[0], type(seed), seed, y[0]))
        return {"test_error": X.shape[0] / 100, "only_some": 1.0} if seed else 0.5

    lc = curves.learning_curve(recipe, _toy_data(log), np.array([3, 1]), seeds=np.array([0, 2]),
                               n_test=4)
    # one test draw and one training draw of max(p) per seed
    assert log == [(4, 0, "test"), (3, 0, "train"), (4, 2, "test"), (3, 2, "train")]
    # nested training sets: the first n rows of the largest; seeds as Python ints
    assert calls == [([0.0, 1.0, 2.0], 4, int, 0, 0.0), ([0.0], 4, int, 0, 0.0),
                     ([0.0, 1.0, 2.0], 4, int, 2, 2.0), ([0.0], 4, int, 2, 2.0)]
    np.testing.assert_array_equal(lc.test_error, [[0.5, 0.03], [0.5, 0.01]])
    # a metric is NaN where a run did not return it
    np.testing.assert_array_equal(lc.metrics["only_some"], [[np.nan, 1.0], [np.nan, 1.0]])
    assert set(lc.metrics) == {"only_some"}  # the test error is not a metric
    assert lc.p.dtype == np.int64 and lc.p.tolist() == [3, 1]
    assert lc.seeds.dtype == np.int64 and lc.seeds.tolist() == [0, 2] and lc.n_test == 4
    # the default seeds are 0..4 and the default test set holds 10000 points
    log.clear()
    default = curves.learning_curve(lambda *a: 0.0, _toy_data(log), [1])
    assert default.seeds.tolist() == [0, 1, 2, 3, 4] and default.n_test == 10_000
    assert [c for c in log if c[2] == "test"] == [(10_000, s, "test") for s in range(5)]


def test_learning_curve_validates_with_the_names_of_the_arguments():
    data = _toy_data([])
    ok = lambda *a: 0.0  # noqa: E731
    # seed 0 and size 1 sit on the documented bounds
    assert curves.learning_curve(ok, data, [1], seeds=[0], n_test=1).test_error.shape == (1, 1)
    for args, kw, exc, msg in [
        ((ok, data, "12"), {}, TypeError, r"^p must be a sequence of sizes, got str$"),
        ((ok, data, 12), {}, TypeError, r"^p must be a sequence of sizes, got int$"),
        ((ok, data, {3}), {}, TypeError, r"^p must be a sequence of sizes, got set$"),
        ((ok, data, [2, 1.5]), {}, TypeError, r"^p\[1\] must be an integer"),
        ((ok, data, []), {}, ValueError, r"^p must hold at least one size$"),
        ((ok, data, [2]), {"seeds": []}, ValueError, r"^seeds must hold at least one seed$"),
        ((ok, data, [2]), {"seeds": "01"}, TypeError,
         r"^seeds must be a sequence of ints, got str$"),
        ((ok, data, [2]), {"seeds": 3}, TypeError, r"^seeds must be a sequence of ints, got int$"),
        ((ok, data, [2]), {"seeds": [0, -1]}, ValueError, r"^seeds\[1\] must be >= 0, got -1$"),
        ((ok, data, [2]), {"n_test": 0}, ValueError, r"^n_test must be >= 1, got 0$"),
        ((3, data, [2]), {}, TypeError,
         r"^model must be an estimator or a callable recipe, got int$"),
        ((ok, 3, [2]), {}, TypeError, r"^data must be a dataset name or a callable, got int$"),
        ((ok, "ring", [2]), {"d": 2}, ValueError,
         r"^data must be one of \['cylinder', 'sphere', 'stripe'\] or a callable, got 'ring'$"),
        ((ok, "stripe", [2]), {}, ValueError,
         r"^d \(the input dimension\) is required with data='stripe'$"),
        ((lambda *a: True, data, [2]), {}, TypeError,
         r"^a recipe must return a test error \(float\) or a dict with 'test_error', got bool$"),
        ((lambda *a: {"x": 1.0}, data, [2]), {}, ValueError,
         r"^a recipe's dict must hold 'test_error'$"),
    ]:
        with pytest.raises(exc, match=msg):
            curves.learning_curve(*args, **kw)


def test_loglog_slope_with_two_sizes_and_tiny_bootstraps():
    p = np.array([4.0, 16.0, 64.0])
    per_seed = np.array([[2.0, 2.2], [4.0, 3.6], [np.nan, np.nan]])
    # two sizes with a value are enough for a slope
    s, ci = curves.loglog_slope(p, per_seed, n_bootstrap=0)
    assert s == pytest.approx(np.log(3.8 / 2.1) / np.log(4.0), rel=1e-12)
    # no resample: the interval is [slope, slope]
    assert ci == [s, s]
    # one resample: its slope is both ends (rng(0) draws the seed indices)
    idx = np.random.default_rng(0).integers(0, 2, 2)
    m = per_seed[:2, idx].mean(axis=1)
    one = np.log(m[1] / m[0]) / np.log(4.0)
    s1, ci1 = curves.loglog_slope(p, per_seed, n_bootstrap=1)
    assert s1 == s and ci1 == pytest.approx([one, one], rel=1e-12)
    # fit_exponent: one resample gives (beta*, beta*), none gives (beta, beta)
    err = np.array([[0.2, 0.25], [0.1, 0.14], [0.05, 0.06]])
    fit = curves.fit_exponent(np.array([100.0, 200.0, 400.0]), err, n_bootstrap=1)
    m = err[:, np.random.default_rng(0).integers(0, 2, 2)].mean(axis=1)
    b = -np.polyfit(np.log([100.0, 200.0, 400.0]), np.log(m), 1)[0]
    assert fit.ci == pytest.approx((b, b), rel=1e-12)
    none = curves.fit_exponent(np.array([100.0, 200.0, 400.0]), err, n_bootstrap=0)
    assert none.ci == (none.beta, none.beta)


# ------------------------------------------------------------------ frozen_kernel_curve
def test_frozen_kernel_curve_hands_its_defaults_to_learning_curve(monkeypatch):
    seen = {}

    def fake(recipe, data, p, **kw):
        seen.update(kw, data=data, p=p)
        return "curve"

    monkeypatch.setattr(curves, "learning_curve", fake)
    assert curves.frozen_kernel_curve("cylinder", [8], d=3) == "curve"
    assert seen == {"data": "cylinder", "p": [8], "seeds": (0, 1, 2, 3, 4), "n_test": 10_000,
                    "d": 3, "d_par": 2, "progress": False}
    curves.frozen_kernel_curve("cylinder", [8], d=3, d_par=3, n_test=7, seeds=[1],
                               progress=True)
    assert (seen["d_par"], seen["n_test"], seen["seeds"], seen["progress"]) == (3, 7, [1], True)


def test_frozen_kernel_curve_progress_shows_a_bar(capsys):
    curves.frozen_kernel_curve("stripe", [8], seeds=[0], n_test=20, d=2)
    assert capsys.readouterr().err == ""
    curves.frozen_kernel_curve("stripe", [8], seeds=[0], n_test=20, d=2, progress=True)
    assert "learning curve" in capsys.readouterr().err


def test_frozen_kernel_curve_empirical_network_is_the_papers(monkeypatch):
    from kernelcomp import FCNetwork

    nets = []
    real = curves.EmpiricalNTK

    def record(net):
        nets.append(net)
        return real(net)

    monkeypatch.setattr(curves, "EmpiricalNTK", record)
    curves.frozen_kernel_curve("stripe", [6], kernel="empirical", seeds=[3], n_test=5, d=2)
    (net,) = nets
    # the default width h = 1000, sqrt(2) relu, mean-field, hidden bias, no readout bias
    assert [w.shape for w in net.weights] == [(1000, 2), (1, 1000)]
    assert net.activation == "relu_unit" and net.parameterization == "mean_field"
    assert net.biases[0] is not None and net.biases[1] is None
    ref = FCNetwork.init(2, [1000], activation="relu_unit", parameterization="mean_field",
                         bias=True, seed=3)
    np.testing.assert_array_equal(net.weights[0], ref.weights[0])
    np.testing.assert_array_equal(net.biases[0], ref.biases[0])


def test_frozen_kernel_curve_messages_name_what_was_passed():
    with pytest.raises(ValueError, match=r"^kernel must be one of \['analytic', 'empirical'\] "
                                         r"or a kernelcomp kernel object, got 'lazy'$"):
        curves.frozen_kernel_curve("stripe", [8], kernel="lazy", d=2)
    with pytest.raises(TypeError, match=r"\(kc.NTK\(\), kc.EmpiricalNTK\(net\)...\), got int$"):
        curves.frozen_kernel_curve("stripe", [8], kernel=3, d=2)
    with pytest.raises(TypeError, match=r"^machine must be one of \['svc', 'gradient_flow'\], "
                                         r"got int$"):
        curves.frozen_kernel_curve("stripe", [8], machine=3, d=2)
    with pytest.raises(ValueError, match=r"^h must be >= 1, got 0$"):
        curves.frozen_kernel_curve("stripe", [8], h=0, d=2)


def test_learning_curve_progress_bar_counts_runs(monkeypatch, capsys):
    from kernelcomp import _parallel

    opened, updates = [], []
    real = _parallel.progress

    @contextlib.contextmanager
    def record(enabled, **kw):
        opened.append((enabled, kw))
        with real(enabled, **kw) as bar:
            update = bar.update

            def counted(n=1):
                updates.append(n)
                return update(n)

            bar.update = counted
            yield bar

    monkeypatch.setattr(curves, "progress_bar", record)
    data = _toy_data([])
    curves.learning_curve(lambda *a: 0.0, data, [1, 2], seeds=[0, 1], n_test=3)
    assert capsys.readouterr().err == ""  # no bar by default
    curves.learning_curve(lambda *a: 0.0, data, [1, 2], seeds=[0, 1], n_test=3, progress=True)
    assert "learning curve" in capsys.readouterr().err
    kw = {"total": 4, "desc": "learning curve", "unit": "run", "leave": False}
    assert opened == [(False, kw), (True, kw)]
    assert updates == [1] * 8  # one per run, both calls


def test_learning_curve_cylinder_default_d_par_is_two():
    seen = []

    def recipe(X, y, Xt, yt, seed):
        seen.append((X, y))
        return 0.0

    curves.learning_curve(recipe, "cylinder", [30], seeds=[2], n_test=5, d=5)
    X, y = datasets.load("cylinder", 30, 5, 2, split="train", d_par=2)
    np.testing.assert_array_equal(seen[0][0], X)
    np.testing.assert_array_equal(seen[0][1], y)
    assert not np.array_equal(y, datasets.load("cylinder", 30, 5, 2, split="train", d_par=3)[1])
