"""kernelcomp.predict: gradient-flow predictions against an ODE solver, sklearn and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from sklearn.kernel_ridge import KernelRidge

import kernelcomp as kc
from kernelcomp.predict import gradient_descent_mse, gradient_descent_mse_ensemble


@pytest.fixture
def data(rng):
    X = rng.standard_normal((12, 3))
    Xt = rng.standard_normal((5, 3))
    y = np.stack([np.sign(X[:, 0]), X[:, 1]], axis=1)  # two outputs
    return X, Xt, y


def _ode(theta, theta_x, y, f0, g0, lr, t):
    """The flow integrated by an ODE solver: df/dt = -(lr/N) Theta (f - y) on train and test."""
    N = y.size
    shape = y.shape

    def rhs(_, z):
        r = z[: y.size].reshape(shape) - y
        return np.concatenate([(-(lr / N) * theta @ r).ravel(), (-(lr / N) * theta_x @ r).ravel()])

    z0 = np.concatenate([np.broadcast_to(f0, shape).ravel(), g0.ravel()])
    sol = scipy.integrate.solve_ivp(rhs, (0, t), z0, method="DOP853", rtol=1e-11, atol=1e-12)
    z = sol.y[:, -1]
    return z[: y.size].reshape(shape), z[y.size :].reshape(len(g0), *shape[1:])


@pytest.mark.parametrize("t", [0.0, 3.0, 40.0])
def test_flow_matches_an_ode_solver(data, rng, t):
    X, Xt, y = data
    k = kc.NTK(depth=2, bias_std=0.2)
    theta, theta_x = k(X), k(Xt, X)
    f0 = 0.3 * rng.standard_normal(y.shape)
    g0 = 0.3 * rng.standard_normal((len(Xt), 2))
    lr = 2.0
    ft, gt = gradient_descent_mse(theta, y, learning_rate=lr)(t, f0, g0, k_test_train=theta_x)
    ref_f, ref_g = _ode(theta, theta_x, y, f0, g0, lr, t)
    np.testing.assert_allclose(ft, ref_f, atol=1e-8)
    np.testing.assert_allclose(gt, ref_g, atol=1e-8)


def test_end_of_training_is_kernel_ridge(data):
    X, Xt, y = data
    k = kc.NTK(depth=1)
    theta, theta_x = k(X), k(Xt, X)
    fn = gradient_descent_mse(theta, y, diag_reg=1e-2)
    ft, gt = fn(None, k_test_train=theta_x)
    kr = KernelRidge(alpha=1e-2, kernel="precomputed").fit(theta, y)
    np.testing.assert_allclose(gt, kr.predict(theta_x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ft, y, atol=1e-9)  # the flow runs with Theta + diag_reg I
    np.testing.assert_allclose(gradient_descent_mse_ensemble(k, X, y, diag_reg=1e-2)(), y,
                               atol=1e-9)
    np.testing.assert_allclose(gradient_descent_mse_ensemble(k, X, y, diag_reg=1e-2)(None, Xt),
                               gt, atol=1e-12)
    # np.inf is the same time as None, and an array of times adds a leading axis
    f_arr, g_arr = fn([0.0, np.inf], k_test_train=theta_x)
    assert f_arr.shape == (2, *y.shape) and g_arr.shape == (2, 5, 2)
    np.testing.assert_array_equal(g_arr[1], gt)
    np.testing.assert_allclose(f_arr[0], 0.0, atol=1e-12)  # zero initial outputs at t = 0


def test_null_modes_do_not_move(rng):
    """A rank-deficient kernel: the residual outside its range stays, even at t = inf."""
    F = rng.standard_normal((6, 2))
    theta = F @ F.T  # rank 2
    y = rng.standard_normal(6)
    f = gradient_descent_mse(theta, y)(None)
    P = F @ np.linalg.pinv(F)  # projector on the range
    np.testing.assert_allclose(f, P @ y, atol=1e-10)
    assert np.all(np.isfinite(f))


def test_ensemble_mean_and_covariance_against_monte_carlo(rng):
    """Draw f0 ~ GP(0, K), evolve each draw by the matrix exponential, compare moments."""
    X = rng.standard_normal((6, 2))
    Xt = rng.standard_normal((3, 2))
    y = np.sign(X[:, 0])
    ntk, nngp = kc.NTK(depth=1, bias_std=0.1), kc.NNGP(depth=1, bias_std=0.1)
    t, lr = 5.0, 1.5
    mean, cov = gradient_descent_mse_ensemble(ntk, X, y, learning_rate=lr)(
        t, Xt, compute_cov=True
    )
    Z = np.vstack([X, Xt])
    joint = nngp(Z)
    draws = rng.multivariate_normal(np.zeros(9), joint, size=40000, method="eigh")
    theta = ntk(X)
    E = scipy.linalg.expm(-(lr / len(y)) * theta * t)
    A = ntk(Xt, X) @ np.linalg.solve(theta, np.eye(6) - E)  # direct inverse: a second route
    f_test = draws[:, 6:] + (y - draws[:, :6]) @ A.T
    np.testing.assert_allclose(mean, f_test.mean(axis=0), atol=0.03)
    np.testing.assert_allclose(cov, np.cov(f_test.T), atol=0.03)
    # and the same covariance from the closed formula with the direct inverse, tightly
    K, Kx, Kxx = nngp(X), nngp(Xt, X), nngp(Xt)
    ref = Kxx - A @ Kx.T - Kx @ A.T + A @ K @ A.T
    np.testing.assert_allclose(cov, ref, atol=1e-9)


def test_nngp_flow_has_the_textbook_covariance(rng):
    """Readout-only training (Theta = K): cov = K_xx - K_x K^-1 (I - E^2) K_x^T."""
    X, Xt = rng.standard_normal((7, 3)), rng.standard_normal((4, 3))
    y = rng.standard_normal(7)
    k = kc.NNGP(depth=2)
    t = 2.0
    mean, cov = gradient_descent_mse_ensemble(k, X, y)(t, Xt, compute_cov=True)
    K, Kx = k(X), k(Xt, X)
    E = scipy.linalg.expm(-K * t / len(y))
    np.testing.assert_allclose(mean, Kx @ np.linalg.solve(K, (np.eye(7) - E) @ y), atol=1e-9)
    ref = k(Xt) - Kx @ np.linalg.solve(K, (np.eye(7) - E @ E) @ Kx.T)
    np.testing.assert_allclose(cov, ref, atol=1e-9)
    # on the training set the mean is (I - E) y
    np.testing.assert_allclose(gradient_descent_mse_ensemble(k, X, y)(t), (np.eye(7) - E) @ y,
                               atol=1e-10)


def test_errors(data):
    X, Xt, y = data
    K = kc.NTK()(X)
    with pytest.raises(ValueError, match=r"y_train must have shape \(12,\)"):
        gradient_descent_mse(K, y[:5])
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        gradient_descent_mse(K, y, learning_rate=0)
    with pytest.raises(ValueError, match="diag_reg must be >= 0"):
        gradient_descent_mse(K, y, diag_reg=-1)
    with pytest.raises(ValueError, match="must be a square Gram"):
        gradient_descent_mse(K[:3], y)
    fn = gradient_descent_mse(K, y)
    with pytest.raises(ValueError, match="t must hold times >= 0"):
        fn(-1.0)
    with pytest.raises(ValueError, match="k_test_train"):
        fn(1.0, k_test_train=np.ones((3, 4)))
    e = kc.EmpiricalNTK(kc.FCNetwork.init(3, [16], seed=0))
    efn = gradient_descent_mse_ensemble(e, X, y)
    assert efn(1.0, Xt).shape == (5, 2)  # the mean needs no NNGP
    with pytest.raises(ValueError, match="needs the NNGP kernel"):
        efn(1.0, Xt, compute_cov=True)
    with pytest.raises(TypeError, match="compute_cov must be a bool"):
        efn(1.0, Xt, compute_cov="yes")
