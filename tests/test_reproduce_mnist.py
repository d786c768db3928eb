"""``scripts/reproduce_mnist.py``'s infinite-width CNN kernel at a tiny size (no MNIST needed).

The kernel's curve and kernel PCA on random rows, its estimators against
scikit-learn on the same Grams, the comparison table and the figure. The whole
script (nets, frozen NTK and the infinite-width kernel on real digits) runs in
``tests/test_torch_flow.py::test_reproduce_mnist_quick_runs`` (slow).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import kernelcomp as kc

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_mnist.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("reproduce_mnist", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(rng, n_train=24, n_test=10):
    X = rng.standard_normal((n_train + n_test, 784))
    X *= 28.0 / np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(np.arange(n_train + n_test) % 2 == 0, 1.0, -1.0)  # balanced: MI needs both
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    return Xtr, ytr, Xtr, ytr, Xte, yte


def test_pooled_digits_give_the_kernel_with_an_input_pool(script):
    # the "paper" analogue runs on 2 x 2 mean-pooled 14 x 14 digits: the same kernel
    # as an average pool on the 28 x 28 input (the pool is linear)
    X = _data(np.random.default_rng(0))[0][:3]
    layers, pool, ws, bs = script.INFINITE_ARCHS["paper"]
    assert pool == 2
    pooled = kc.ConvNTK(layers, weight_std=ws, bias_std=bs)(script.digit_images(X, 2))
    direct = kc.ConvNTK(["avgpool", *layers], weight_std=ws, bias_std=bs)(
        X.reshape(3, 28, 28, 1))
    np.testing.assert_allclose(pooled, direct, rtol=1e-13)
    assert script.digit_images(X, 1).shape == (3, 28, 28, 1)


def test_infinite_width_curve_blocks_machines_and_kpca(script):
    data = _data(np.random.default_rng(1))
    args = argparse.Namespace(infinite_arch="paper", infinite_device="cpu", max_wall=60.0,
                              kernel_max_p=16, kpca_components=10)
    runs = script.infinite_width(data, [16, 12, 24], 3, args)
    assert [r["p"] for r in runs] == [12, 16, 24]
    for r in runs:
        assert r["seed"] == 3 and r["arch"] == "paper" and 0 <= r["test_error"] <= 1
        assert r["status"] in ("converged", "max_wall", "max_steps")
        assert ("kpca" in r) == (r["p"] <= 16)
    assert 0 <= runs[1]["kpca"]["P"]["10"] <= 1 and len(runs[1]["kpca"]["MI_top10"]) == 10
    P = np.array(runs[1]["kpca"]["P_curve"])  # P_1 .. P_10 of the p = 16 block
    assert P.shape == (10,) and np.all(np.diff(P) >= -1e-12) and P[9] == runs[1]["kpca"]["P"]["10"]
    assert "wall_gram" in runs[-1]
    # the machine at p = 16 is the one on the leading block of the largest Gram
    layers, pool, ws, bs = script.INFINITE_ARCHS["paper"]
    k = kc.ConvNTK(layers, weight_std=ws, bias_std=bs)
    Xtr, ytr, _, _, Xte, yte = data
    A = script.digit_images(Xtr[:16], pool)
    m = script.kernel_machine(k(A), ytr[:16], k(script.digit_images(Xte, pool), A), yte, 60.0)
    assert m["test_error"] == runs[1]["test_error"]
    e = script.estimators(k(A), ytr[:16], k(script.digit_images(Xte, pool), A), yte)
    assert e == {key: runs[1][key] for key in ("svm_test_error", "ridge_test_error")}
    # fits and the comparison table of the report
    summary = {"runs": [], "frozen": [], "infinite": runs,
               "fits": {}, "config": {}}
    lines = script.compare_curves(summary)
    assert lines[1].lstrip().startswith("infinite-width CNN NTK (paper)")
    assert len(lines[1].split()[-3:]) == 3


def test_estimators_are_the_svm_and_ridge_of_the_gram(script):
    # against scikit-learn on the same precomputed Grams (hard margin, tiny ridge)
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.svm import SVC

    rng = np.random.default_rng(4)
    Z = rng.standard_normal((40, 5))
    y = np.where(Z[:, 0] + 0.3 * Z[:, 1] > 0, 1.0, -1.0)
    K = (Z @ Z.T + 1.0) ** 2
    tr, te = slice(0, 30), slice(30, 40)
    got = script.estimators(K[tr, tr], y[tr], K[te, tr], y[te])
    svc = SVC(kernel="precomputed", C=1e20).fit(K[tr, tr], y[tr])
    kr = KernelRidge(kernel="precomputed", alpha=script.RIDGE * np.mean(np.diag(K[tr, tr])))
    kr.fit(K[tr, tr], y[tr])
    assert got["svm_test_error"] == np.mean(svc.predict(K[te, tr]) != y[te])
    assert got["ridge_test_error"] == np.mean(np.sign(kr.predict(K[te, tr])) != y[te])
    # a Gram whose labels are a function of the kernel's features is learnt (not chance)
    assert got["svm_test_error"] <= 0.2


def test_figure_compares_the_kernels_at_the_largest_infinite_kpca_p(script, tmp_path):
    def kp(level):
        return {"P": {"10": level}, "P_curve": [level] * 10, "MI_top10": [0.1] * 10,
                "MI_mean10": 0.1}

    inf = [{"p": p, "seed": s, "arch": "paper", "test_error": e, "status": "converged",
            "svm_test_error": e, "ridge_test_error": e, "kpca": kp(0.9)}
           for s in (0, 1) for p, e in ((8, 0.4), (16, 0.3), (32, 0.2))]
    del inf[2]["kpca"]  # seed 0, p = 32: beyond --kernel-max-p
    frozen = [{"p": p, "seed": 0, "test_error": 0.45, "status": "converged", "kpca": kp(0.5)}
              for p in (8, 16)]
    net = {"p": 16, "seed": 0, "regime": "feature", "test_error": 0.35, "status": "converged",
           "machines": {"final": {"test_error": 0.3}}, "kpca": {"final": kp(0.7)}}
    summary = {"runs": [net], "frozen": frozen, "infinite": inf, "config": {},
               "fits": {"infinite_width_ntk": {"beta": 0.5}}}
    p, seed, got = script.kpca_at(summary)
    assert (p, seed) == (16, 0)
    assert [v["P"]["10"] for v in got.values()] == [0.5, 0.7, 0.9]
    assert script.kpca_at({**summary, "infinite": []}) is None
    path = script.plot(tmp_path, summary)
    assert path == tmp_path / "learning_curves.png" and path.stat().st_size > 10_000
    # the table's rows: means over the two seeds
    lines = script.compare_curves(summary)
    inf_row = next(line for line in lines if "infinite-width CNN NTK (paper)" in line)
    assert inf_row.split()[-3:] == ["0.4000", "0.3000", "0.2000"]
