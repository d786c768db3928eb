"""kc.gp.KernelcompKernel: kernelcomp kernels inside sklearn's Gaussian processes."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

import kernelcomp as kc
from kernelcomp.gp import KernelcompKernel, as_sklearn_kernel

DTYPES = (np.float64, np.float32)
KERNELS = [kc.NNGP(depth=2, bias_std=0.2), kc.NTK(depth=1), kc.NTK(depth=2, activation="erf")]
IDS = ["nngp2", "ntk1", "ntk2erf"]


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_gram_diag_and_gradient(rng, kernel, dtype):
    X = rng.standard_normal((12, 3)).astype(dtype)
    Y = rng.standard_normal((5, 3)).astype(dtype)
    k = KernelcompKernel(kernel)
    K = k(X)
    # always float64 (GP inference), equal to the kernel's own float64 Gram
    assert K.dtype == np.float64
    np.testing.assert_array_equal(K, kernel(X.astype(np.float64)))
    np.testing.assert_array_equal(k(X, Y), kernel(X.astype(np.float64), Y.astype(np.float64)))
    np.testing.assert_allclose(k.diag(X), np.diag(K), rtol=1e-13)
    K2, grad = k(X, eval_gradient=True)
    np.testing.assert_array_equal(K2, K)
    assert grad.shape == (12, 12, 0)
    with pytest.raises(ValueError, match="Gradient can only be evaluated when Y is None"):
        k(X, Y, eval_gradient=True)


def test_kernel_interface():
    k = KernelcompKernel(kc.NNGP(depth=3))
    assert k.is_stationary() is False
    assert k.requires_vector_input is True
    assert k.n_dims == 0 and k.theta.shape == (0,) and k.bounds.shape == (0,)
    assert k.hyperparameters == []
    assert k.get_params() == {"kernel": kc.NNGP(depth=3), "n_jobs": None}
    assert repr(k).startswith("KernelcompKernel(NNGP(depth=3")
    assert k == KernelcompKernel(kc.NNGP(depth=3))
    assert k != KernelcompKernel(kc.NNGP(depth=2))
    assert k != KernelcompKernel(kc.NTK(depth=3))
    assert clone(k) == k and pickle.loads(pickle.dumps(k)) == k and copy.deepcopy(k) == k
    assert k.clone_with_theta(np.array([])) == k


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_gp_regression_is_the_exact_posterior(rng, kernel):
    X = rng.standard_normal((40, 3))
    Xt = rng.standard_normal((9, 3))
    y = np.abs(X[:, 0]) - X[:, 1] + 0.1 * rng.standard_normal(40)
    noise = 1e-2
    gpr = GaussianProcessRegressor(KernelcompKernel(kernel), alpha=noise).fit(X, y)
    mean, cov = gpr.predict(Xt, return_cov=True)
    _, std = gpr.predict(Xt, return_std=True)
    # the slow obvious oracle: the Gaussian conditioning formulas
    K, Ks, Kss = kernel(X), kernel(Xt, X), kernel(Xt)
    A = K + noise * np.eye(40)
    ref_mean = Ks @ np.linalg.solve(A, y)
    ref_cov = Kss - Ks @ np.linalg.solve(A, Ks.T)
    assert _rel(mean, ref_mean) <= 1e-8
    np.testing.assert_allclose(cov, ref_cov, atol=1e-8 * np.abs(Kss).max())
    np.testing.assert_allclose(std**2, np.clip(np.diag(ref_cov), 0, None), atol=1e-8)
    # the posterior mean is kernel ridge regression with alpha = noise variance
    krr = kc.NTKRegressor(kernel, alpha=noise).fit(X, y)
    assert _rel(mean, krr.predict(Xt)) <= 1e-8


def test_composition_with_sklearn_kernels(rng):
    X = rng.standard_normal((30, 2))
    y = X[:, 0] + 0.3 * rng.standard_normal(30)
    base = KernelcompKernel(kc.NNGP(depth=1))
    k = ConstantKernel(2.0) * base + WhiteKernel(0.1)
    np.testing.assert_allclose(k(X), 2.0 * base(X) + 0.1 * np.eye(30), rtol=1e-14)
    np.testing.assert_allclose(k.diag(X), 2.0 * base.diag(X) + 0.1, rtol=1e-14)
    assert k.n_dims == 2 and not k.is_stationary()
    K, grad = k(X, eval_gradient=True)
    np.testing.assert_array_equal(K, k(X))
    assert grad.shape == (30, 30, 2)
    # d K / d log(constant) = constant * base, d K / d log(noise) = noise * I
    np.testing.assert_allclose(grad[:, :, 0], 2.0 * base(X), rtol=1e-14)
    np.testing.assert_allclose(grad[:, :, 1], 0.1 * np.eye(30), rtol=1e-14)
    mixed = base + RBF(1.0)
    assert mixed.n_dims == 1
    gpr = GaussianProcessRegressor(k, random_state=0).fit(X, y)
    fitted = gpr.kernel_
    assert fitted.k1.k2 == base  # the wrapped kernel survives cloning and fitting
    assert fitted.k2.noise_level > 0.01  # the noise level was learned from the data
    assert gpr.log_marginal_likelihood_value_ >= gpr.log_marginal_likelihood(k.theta)


def test_gp_classifier(rng):
    X = rng.standard_normal((60, 3))
    y = np.where(X[:, 0] > 0, "pos", "neg")
    gpc = GaussianProcessClassifier(as_sklearn_kernel(kc.NTK(depth=2))).fit(X, y)
    assert gpc.score(X, y) > 0.9
    proba = gpc.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_empirical_ntk_wrapped(rng):
    net = kc.FCNetwork.init(3, widths=[16], seed=1)
    e = kc.EmpiricalNTK(net)
    X = rng.standard_normal((10, 3))
    k = as_sklearn_kernel(e)
    np.testing.assert_array_equal(k(X), e(X, dtype=np.float64))
    np.testing.assert_array_equal(clone(k)(X), k(X))


def test_n_jobs_and_errors(rng):
    X = rng.standard_normal((8, 3))
    k1 = as_sklearn_kernel(kc.NTK(), n_jobs=1)
    np.testing.assert_array_equal(k1(X), as_sklearn_kernel(kc.NTK())(X))
    with pytest.raises(TypeError, match=r"wraps a kernelcomp kernel .* got RBF"):
        as_sklearn_kernel(RBF())
    with pytest.raises(TypeError, match=r"wraps a kernelcomp kernel .* got str"):
        KernelcompKernel("ntk")(X)
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
        as_sklearn_kernel(kc.NTK(), n_jobs=0)
    with pytest.raises(ValueError, match="X contains NaN"):
        k1(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="Y has 2 features, but 3 are expected"):
        k1(X, X[:, :2])
