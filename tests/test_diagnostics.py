"""Tests of kernelcomp.diagnostics against plain references (tests/naive_diagnostics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelcomp as kc
import kernelcomp._validation
from kernelcomp import diagnostics as dg
from kernelcomp.diagnostics import _checks, _labels
from tests import naive_diagnostics as naive


def spd_with_spectrum(rng, n, lam, dtype=np.float64):
    """A symmetric matrix Q diag(lam) Q^T with a random orthogonal Q."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    K = (Q * lam) @ Q.T
    K = (K + K.T) / 2
    return K.astype(dtype), Q


def distinct_gram(rng, n, dtype=np.float64):
    lam = 10.0 * 0.8 ** np.arange(n)  # well separated, positive
    return spd_with_spectrum(rng, n, lam, dtype)


# ---------------------------------------------------------------------------
# kernel_pca
# ---------------------------------------------------------------------------
# arpack needs n_components < n (the error path is tested below)
PCA_ROUTES = [
    (method, k)
    for method in ("auto", "subset", "full", "arpack")
    for k in (None, 1, 6, 39)
    if not (method == "arpack" and k is None)
]


@pytest.mark.parametrize(("method", "n_components"), PCA_ROUTES)
def test_kernel_pca_matches_full_eigh(rng, dtype, tol, method, n_components):
    n = 40
    K, _ = distinct_gram(rng, n, dtype)
    ev = dg.kernel_pca(K, n_components=n_components, method=method)
    k = n if n_components is None else n_components
    w_ref, V_ref = scipy.linalg.eigh(K.astype(np.float64))
    w_ref, V_ref = w_ref[::-1][:k], V_ref[:, ::-1][:, :k]
    assert ev.eigenvalues.dtype == dtype and ev.eigenvectors.dtype == dtype
    assert ev.eigenvalues.shape == (k,) and ev.eigenvectors.shape == (n, k)
    eig = tol("eig")
    np.testing.assert_allclose(ev.eigenvalues, w_ref, rtol=eig * 10, atol=eig * 10 * w_ref[0])
    # same vectors up to sign, then the sign convention: largest |entry| positive
    overlap = np.abs(np.sum(ev.eigenvectors.astype(np.float64) * V_ref, axis=0))
    np.testing.assert_allclose(overlap, 1.0, atol=eig * 100)
    cols = np.arange(k)
    big = ev.eigenvectors[np.argmax(np.abs(ev.eigenvectors), axis=0), cols]
    assert np.all(big > 0)
    np.testing.assert_allclose(np.linalg.norm(ev.eigenvectors, axis=0), 1.0, atol=eig * 10)
    # residual K v = lambda v
    V64 = ev.eigenvectors.astype(np.float64)
    resid = K.astype(np.float64) @ V64 - V64 * ev.eigenvalues.astype(np.float64)
    assert np.abs(resid).max() < eig * 100 * w_ref[0]


def test_kernel_pca_ntk_gram_descending_and_trace(rng, dtype, tol):
    X = rng.standard_normal((60, 4))
    K = kc.NTK(depth=2)(X).astype(dtype)
    ev = dg.kernel_pca(K, n_components=10)
    assert np.all(np.diff(ev.eigenvalues) <= 0)
    assert ev.center is False and ev.n_samples == 60 and ev.n_components == 10
    np.testing.assert_allclose(ev.trace, np.trace(K.astype(np.float64)), rtol=1e-6)
    full = dg.kernel_pca(K)
    np.testing.assert_allclose(full.explained_ratio.sum(), 1.0, rtol=tol("eig") * 10)
    np.testing.assert_allclose(ev.eigenvalues, full.eigenvalues[:10], rtol=tol("eig") * 10)
    assert "KernelPCAResult(n_samples=60, n_components=10" in repr(ev)


def test_kernel_pca_sign_is_deterministic(rng):
    n = 30
    lam = 5.0 * 0.7 ** np.arange(n)
    K, Q = spd_with_spectrum(rng, n, lam)
    flips = rng.choice([-1.0, 1.0], size=n)
    K2 = ((Q * flips) * lam) @ (Q * flips).T  # the same matrix, built from flipped vectors
    K2 = (K2 + K2.T) / 2
    a = dg.kernel_pca(K, n_components=8)
    b = dg.kernel_pca(K2, n_components=8)
    np.testing.assert_allclose(a.eigenvectors, b.eigenvectors, atol=1e-9)
    # and the subset, full and arpack routes agree entry by entry (not only up to sign)
    for method in ("full", "arpack"):
        c = dg.kernel_pca(K, n_components=8, method=method)
        np.testing.assert_allclose(a.eigenvectors, c.eigenvectors, atol=1e-8)


def test_kernel_pca_center_equals_explicit_centring(rng, dtype, tol):
    X = rng.standard_normal((35, 3))
    K = kc.NTK()(X).astype(dtype)
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    Kc = H @ K.astype(np.float64) @ H
    ev = dg.kernel_pca(K, n_components=5, center=True)
    w_ref = np.linalg.eigvalsh(Kc)[::-1][:5]
    assert ev.center is True
    np.testing.assert_allclose(ev.eigenvalues, w_ref, rtol=tol("eig") * 10)
    np.testing.assert_allclose(ev.trace, np.trace(Kc), rtol=tol("eig") * 10)
    # centred eigenvectors of non-zero eigenvalues are orthogonal to the constant vector
    np.testing.assert_allclose(ev.eigenvectors.sum(axis=0), 0.0, atol=tol("eig") * 100)
    assert not np.shares_memory(ev.eigenvectors, K)


@pytest.mark.parametrize("center", [True, False])
def test_kernel_pca_transform_is_sklearns_nystrom_extension(rng, dtype, tol, center):
    from sklearn.decomposition import KernelPCA

    X, X_new = rng.standard_normal((60, 4)), rng.standard_normal((9, 4))
    k = kc.NTK(depth=2, bias_std=0.3)
    K, K_new = k(X).astype(dtype), k(X_new, X).astype(dtype)
    ev = dg.kernel_pca(K, n_components=6, center=center)
    Z = ev.transform(K_new)
    assert Z.shape == (9, 6) and Z.dtype == dtype
    # on the training points: the embedding V sqrt(lambda)
    np.testing.assert_allclose(ev.transform(K), ev.eigenvectors * np.sqrt(ev.eigenvalues),
                               atol=tol("eig") * 10 * float(np.sqrt(ev.eigenvalues[0])))
    if center:
        # scikit-learn centres with the training Gram's statistics: same coordinates up to
        # each component's sign
        ref = KernelPCA(n_components=6, kernel="precomputed").fit(
            K.astype(np.float64)).transform(K_new.astype(np.float64))
    else:  # the uncentred Nystrom extension, written out
        ref = K_new.astype(np.float64) @ ev.eigenvectors.astype(np.float64) / np.sqrt(
            ev.eigenvalues.astype(np.float64))
    signs = np.sign(np.sum(Z * ref, axis=0))
    np.testing.assert_allclose(Z, ref * signs, atol=tol("eig") * 10 * np.abs(ref).max())


def test_kernel_pca_transform_zero_eigenvalues_and_errors(rng):
    X = rng.standard_normal((10, 2))
    ev = dg.kernel_pca(kc.NTK()(X), center=True)  # the centred Gram has a null vector
    null = np.abs(ev.eigenvalues) <= 1e-12 * ev.eigenvalues[0]
    assert null.sum() == 1  # round-off, of either sign
    Z = ev.transform(kc.NTK()(rng.standard_normal((3, 2)), X))
    assert np.all(np.isfinite(Z)) and np.all(np.abs(Z[:, ~null]) > 0)
    np.testing.assert_array_equal(Z[:, null], 0.0)
    with pytest.raises(ValueError, match=r"one column per training point \(10\)"):
        ev.transform(np.ones((3, 9)))
    with pytest.raises(ValueError, match="K_new"):
        ev.transform(np.full((3, 10), np.nan))


def test_kernel_pca_integer_input_and_input_untouched(rng):
    K = np.array([[2, 1], [1, 2]])
    ev = dg.kernel_pca(K)
    assert ev.eigenvalues.dtype == np.float64
    np.testing.assert_allclose(ev.eigenvalues, [3.0, 1.0])
    np.testing.assert_allclose(ev.eigenvectors[:, 0], [1 / math.sqrt(2)] * 2)
    K2, _ = distinct_gram(rng, 20)
    before = K2.copy()
    dg.kernel_pca(K2, n_components=3, center=True)
    dg.kernel_pca(K2, n_components=3)
    np.testing.assert_array_equal(K2, before)


def test_symmetry_check_covers_every_tile(rng, monkeypatch):
    monkeypatch.setattr(kernelcomp._validation, "SYM_TILE", 3)  # ragged tiles: 10 = 3 + 3 + 3 + 1
    K, _ = distinct_gram(rng, 10)
    dg.kernel_pca(K, n_components=2)
    for i, j in [(0, 9), (9, 0), (4, 5), (8, 3), (9, 8)]:
        bad = K.copy()
        bad[i, j] += 1e-3
        with pytest.raises(ValueError, match=r"max \|K - K.T\| = 0.001 exceeds"):
            dg.kernel_pca(bad, n_components=2)


def test_kernel_pca_accepts_roundoff_asymmetry(rng):
    K, _ = distinct_gram(rng, 20)
    K[3, 5] += 1e-12
    dg.kernel_pca(K, n_components=2)
    K32 = K.astype(np.float32)
    K32[1, 2] *= 1 + 1e-6
    dg.kernel_pca(K32, n_components=2)


@pytest.mark.parametrize(
    ("K", "kwargs", "exc", "match"),
    [
        (np.ones((3, 4)), {}, ValueError, r"square Gram matrix, got shape \(3, 4\)"),
        (np.array([[1.0, 2.0], [0.0, 1.0]]), {}, ValueError, "must be symmetric"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), {}, ValueError, "contains NaN"),
        (np.ones(3), {}, ValueError, "2-D array"),
        (np.eye(3), {"n_components": 0}, ValueError, "n_components must be >= 1"),
        (np.eye(3), {"n_components": 4}, ValueError, r"n_components must be <= .* n = 3"),
        (np.eye(3), {"n_components": 2.0}, TypeError, "n_components must be an integer"),
        (np.eye(3), {"method": "bogus"}, ValueError, "method must be one of"),
        (np.eye(3), {"method": "arpack"}, ValueError, "arpack' needs n_components < n"),
        (np.eye(3, dtype=complex), {}, TypeError, "real numbers"),
        (np.zeros((0, 0)), {}, ValueError, "0 samples"),
    ],
)
def test_kernel_pca_errors(K, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dg.kernel_pca(K, **kwargs)


def test_kernel_pca_symmetry_check_can_be_skipped():
    K = np.array([[2.0, 1.0], [0.0, 2.0]])  # lower triangle read: [[2, 0], [0, 2]]
    ev = dg.kernel_pca(K, check_symmetric=False)
    np.testing.assert_allclose(ev.eigenvalues, [2.0, 2.0])


# ---------------------------------------------------------------------------
# label projection
# ---------------------------------------------------------------------------
def test_label_projection_parseval_and_loop(rng, dtype, tol):
    n = 50
    K, _ = distinct_gram(rng, n, dtype)
    ev = dg.kernel_pca(K)
    y = rng.choice([-1, 1], size=n)
    c = dg.label_projection(ev.eigenvectors, y)
    assert c.shape == (n,) and c.dtype == np.float64
    loop = [sum(float(ev.eigenvectors[i, r]) * y[i] for i in range(n)) for r in range(n)]
    np.testing.assert_allclose(c, loop, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sum(c**2), np.sum(y**2), rtol=tol("eig") * 10)
    P = dg.cumulative_projection(c, y)
    assert P.shape == (n,)
    assert np.all(np.diff(P) >= 0)
    np.testing.assert_allclose(P[-1], 1.0, rtol=tol("eig") * 10)
    expected = np.cumsum(np.array(loop) ** 2) / n
    np.testing.assert_allclose(P, expected, rtol=1e-12)


def test_label_projection_multicolumn_and_single_vector(rng):
    n = 30
    K, _ = distinct_gram(rng, n)
    V = dg.kernel_pca(K).eigenvectors
    Y = np.eye(3)[rng.integers(0, 3, size=n)]  # one-hot, three classes
    C = dg.label_projection(V, Y)
    assert C.shape == (n, 3)
    for j in range(3):
        np.testing.assert_allclose(C[:, j], dg.label_projection(V, Y[:, j]))
    P = dg.cumulative_projection(C, Y)
    np.testing.assert_allclose(P[-1], 1.0, rtol=1e-12)
    np.testing.assert_allclose(P, np.cumsum((C**2).sum(axis=1)) / n)
    # a single eigenvector as a 1-D array, booleans as 0/1
    c1 = dg.label_projection(V[:, 0], Y[:, 0] > 0)
    np.testing.assert_allclose(c1, [V[:, 0] @ Y[:, 0]])
    # a partial basis: P_k below 1
    Pk = dg.cumulative_projection(C[:5], Y)
    assert Pk[-1] < 1.0


@pytest.mark.parametrize(
    ("V", "y", "exc", "match"),
    [
        (np.eye(3), [1.0, 2.0], ValueError, "y has 2 samples, but the eigenvectors have 3"),
        (np.eye(3), ["a", "b", "a"], TypeError, "label_binarize"),
        (np.eye(3), [1.0, np.nan, 1.0], ValueError, "y contains NaN"),
        (np.eye(3), np.ones((3, 1, 1)), ValueError, "y must be 1-D"),
        (np.eye(3), np.ones((3, 0)), ValueError, "0 columns"),
        (np.array([[1.0, np.inf]]), [1.0], ValueError, "eigenvectors contains infinity"),
    ],
)
def test_label_projection_errors(V, y, exc, match):
    with pytest.raises(exc, match=match):
        dg.label_projection(V, y)


@pytest.mark.parametrize(
    ("c", "y", "exc", "match"),
    [
        ([1.0, 2.0], [0.0, 0.0], ValueError, "y is all zero"),
        (np.ones((2, 2)), [1.0, 1.0], ValueError, "c has 2 column"),
        ([1.0, np.nan], [1.0, 1.0], ValueError, "c contains NaN"),
        (["a"], [1.0], TypeError, "c must hold real numbers"),
        ([], [1.0], ValueError, "non-empty"),
        ([1.0], 3.0, ValueError, "y must be 1-D"),
    ],
)
def test_cumulative_projection_errors(c, y, exc, match):
    with pytest.raises(exc, match=match):
        dg.cumulative_projection(c, y)


# ---------------------------------------------------------------------------
# mutual information
# ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    vals=st.lists(st.integers(-6, 6), min_size=1, max_size=25),
    queries=st.lists(st.integers(-8, 8), min_size=1, max_size=10),
    k=st.integers(1, 25),
)
def test_kth_distance_is_brute_force(vals, queries, k):
    """The sorted-window search equals sorting all distances (ties included)."""
    if k > len(vals):
        k = len(vals)
    a = np.sort(np.array(vals, dtype=np.float64) / 2)
    x = np.array(queries, dtype=np.float64) / 2
    got = _labels._kth_distance(a, x, k)
    want = [sorted(abs(q - t) for t in a)[k - 1] for q in x]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", [2, 5])
def test_mutual_information_matches_naive(rng, dtype, k):
    n = 120
    y = rng.choice([-1, 1], size=n)
    V = np.column_stack(
        [
            y + 1.5 * rng.standard_normal(n),  # partly informative
            rng.standard_normal(n),  # uninformative
            np.round(y + rng.standard_normal(n), 1),  # ties / duplicates
            np.where(y > 0, 1.0, 2.0),  # duplicates only: r_own = 0
            np.full(n, 3.0),  # constant: 0 bits
        ]
    ).astype(dtype)
    got = dg.mutual_information(V, y, k=k)
    want = [naive.mutual_information_paper(V[:, r].astype(np.float64), y, k) for r in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got.shape == (5,) and got.dtype == np.float64
    assert got[3] == pytest.approx(1.0) and got[4] == pytest.approx(0.0)


def test_mutual_information_separating_and_random(rng, dtype):
    n = 1000
    y = np.repeat([-1, 1], n // 2)
    separating = y * (1.0 + rng.uniform(size=n))  # a gap between the classes
    V = np.column_stack([separating, rng.standard_normal((n, 12))]).astype(dtype)
    mi = dg.mutual_information(V, y)  # n_components=10 by default
    assert mi.shape == (10,)
    assert mi[0] > 0.95
    # uninformative eigenvectors: the estimator's small positive bias (~0.08 bit at k=5)
    assert 0.0 < mi[1:].mean() < 0.12
    assert mi[1:].max() < 0.2


def test_mutual_information_floor_is_the_estimator_on_shuffled_labels(rng):
    y = np.repeat([-1, 1], 150)
    V = np.c_[y + 0.1 * rng.standard_normal(300), rng.standard_normal((300, 3))]
    floor = dg.mutual_information_floor(V, y, n_shuffles=4, random_state=7)
    shuffles = np.random.default_rng(7)
    ref = np.mean([dg.mutual_information(V, y[shuffles.permutation(300)]) for _ in range(4)])
    assert floor == pytest.approx(ref, rel=1e-12)
    # the estimator's bias (~0.08 bit at k = 5), well below an informative vector
    assert 0.03 < floor < 0.15 < dg.mutual_information(V, y)[0]
    assert dg.mutual_information_floor(V, y) == dg.mutual_information_floor(V, y)
    with pytest.raises(ValueError, match="n_shuffles"):
        dg.mutual_information_floor(V, y, n_shuffles=0)
    rec = dg.kpca_record(kc.NTK()(V), y, n_components=12)
    assert rec["mutual_information_floor"] == pytest.approx(
        dg.mutual_information_floor(dg.kernel_pca(kc.NTK()(V), n_components=12).eigenvectors,
                                    y), rel=1e-12)


def test_mutual_information_label_types_and_symmetry(rng):
    n = 90
    codes = rng.integers(0, 2, size=n)
    V = codes[:, None] + rng.standard_normal((n, 3))
    ref = dg.mutual_information(V, codes * 2 - 1, k=4)
    names = np.array(["cat", "dog"])[codes]
    for labels in (codes, codes.astype(bool), names, names.astype(object), 1 - codes):
        np.testing.assert_allclose(dg.mutual_information(V, labels, k=4), ref, rtol=1e-14)
    # sign of an eigenvector does not matter
    np.testing.assert_allclose(dg.mutual_information(-V, codes, k=4), ref, rtol=1e-12)
    # n_components: clipped to the columns available; None takes all; 1-D vector
    assert dg.mutual_information(V, codes, n_components=100, k=4).shape == (3,)
    np.testing.assert_allclose(dg.mutual_information(V, codes, n_components=None, k=4), ref)
    np.testing.assert_allclose(dg.mutual_information(V, codes, n_components=2, k=4), ref[:2])
    np.testing.assert_allclose(dg.mutual_information(V[:, 1], codes, k=4), ref[1:2])


def test_mutual_information_ksg_matches_sklearn(rng):
    from sklearn.feature_selection import mutual_info_classif

    n = 300
    y = rng.integers(0, 3, size=n)  # three classes: fine for ksg
    V = y[:, None] + rng.standard_normal((n, 4))
    got = dg.mutual_information(V, y, k=3, method="ksg", random_state=7)
    want = mutual_info_classif(V, y, n_neighbors=3, random_state=7) / math.log(2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.shape == (4,)
    yb = np.repeat([0, 1], 200)
    sep = dg.mutual_information(yb * 3.0 + rng.uniform(size=400), yb, method="ksg")
    assert sep[0] > 0.9


@pytest.mark.parametrize(
    ("V", "y", "kwargs", "exc", "match"),
    [
        (np.ones((9, 2)), np.arange(9) % 3, {"k": 2}, ValueError, "exactly 2 classes.*ksg"),
        (np.ones((9, 2)), np.r_[np.zeros(7), 1, 1], {"k": 3}, ValueError, "class 1.0 has 2"),
        (np.ones((9, 2)), np.arange(9) % 2, {"k": 1}, ValueError, "k must be >= 2"),
        (np.ones((9, 2)), np.arange(9) % 2, {"k": 9, "method": "ksg"}, ValueError, "k must be <"),
        (np.ones((9, 2)), np.zeros(9), {"k": 2, "method": "ksg"}, ValueError, "at least 2 cl"),
        (np.ones((9, 2)), np.ones((9, 1)), {}, ValueError, r"1-D array.*y.ravel\(\)"),
        (np.ones((9, 2)), np.ones(8), {}, ValueError, "y has 8 samples"),
        (np.ones((9, 2)), np.arange(9) % 2, {"method": "kraskov"}, ValueError, "method must"),
        (np.ones((9, 2)), np.arange(9) % 2, {"n_components": 0}, ValueError, "n_components"),
        (np.ones((9, 2)), np.arange(9) % 2, {"k": 2.5}, TypeError, "k must be an integer"),
        (np.full((9, 2), np.nan), np.arange(9) % 2, {}, ValueError, "contains NaN"),
        (np.ones((9, 2)), np.r_[np.zeros(8), np.nan], {}, ValueError, "y contains NaN"),
        (np.ones((2, 2)), np.array([1, "a"], dtype=object), {}, TypeError, "orderable type"),
        (np.ones((2, 2)), np.array([1j, 2j]), {}, TypeError, "class labels"),
    ],
)
def test_mutual_information_errors(V, y, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dg.mutual_information(V, y, **kwargs)


# ---------------------------------------------------------------------------
# compression
# ---------------------------------------------------------------------------
def test_compression_hand_computation():
    W = np.array([[4.0, 1.0, -1.0], [-4.0, 1.0, 1.0]])
    assert dg.compression(W, informative=[0]) == pytest.approx(4.0, rel=1e-15)
    # <w^2> = [16, 1, 1] ; informative {0, 1}: sqrt(8.5 / 1)
    assert dg.compression(W, [0, 1]) == pytest.approx(math.sqrt(8.5), rel=1e-15)
    assert dg.compression(W, [True, False, False]) == pytest.approx(4.0, rel=1e-15)
    assert dg.compression(W, 0) == pytest.approx(4.0)
    assert dg.compression(W, [-3]) == pytest.approx(4.0)
    assert dg.compression(W.tolist(), [0]) == pytest.approx(4.0)
    W0 = np.array([[1.0, 0.0], [2.0, 0.0]])
    assert dg.compression(W0, [0]) == math.inf


def test_compression_matches_naive_and_network(rng, dtype, tol):
    W = rng.standard_normal((40, 6)).astype(dtype)
    W[:, 2] *= 5.0
    for informative in ([2], [0, 2], [1, 3, 5]):
        assert dg.compression(W, informative) == pytest.approx(
            naive.compression(W.astype(np.float64), informative), rel=1e-12
        )
    # a global rescaling cancels
    assert dg.compression(3.0 * W, [2]) == pytest.approx(dg.compression(W, [2]), rel=tol("eig"))
    net = kc.FCNetwork.init(6, widths=[4000], parameterization="mean_field", seed=0)
    assert dg.compression(net, [0]) == pytest.approx(
        naive.compression(net.weights[0], [0]), rel=1e-12
    )
    assert 0.9 < dg.compression(net, [0]) < 1.1  # isotropic at initialisation


class _NoWeights:
    weights = 3


@pytest.mark.parametrize(
    ("net", "informative", "exc", "match"),
    [
        (np.ones((2, 3)), [], ValueError, "informative is empty"),
        (np.ones((2, 3)), [0, 1, 2], ValueError, "covers all 3 input directions"),
        (np.ones((2, 3)), [3], ValueError, r"in \[0, 3\).*\[3\]"),
        (np.ones((2, 3)), [0, 0], ValueError, "repeated indices"),
        (np.ones((2, 3)), [0.5], TypeError, "informative must be an int"),
        (np.ones((2, 3)), [True, False], ValueError, r"boolean mask must have shape \(3,\)"),
        (np.zeros((2, 3)), [0], ValueError, "all zero"),
        (np.full((2, 3), np.nan), [0], ValueError, "net contains NaN"),
        ("weights", [0], TypeError, "net must be a network with .weights"),
        (_NoWeights(), [0], TypeError, "net.weights must be a sequence"),
        (np.ones(3), [0], ValueError, "2-D array"),
    ],
)
def test_compression_errors(net, informative, exc, match):
    with pytest.raises(exc, match=match):
        dg.compression(net, informative)


# ---------------------------------------------------------------------------
# kernel alignment, kernel change, effective rank
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("center", [False, True])
def test_kernel_alignment_matches_naive(rng, dtype, tol, center, monkeypatch):
    X = rng.standard_normal((25, 3))
    K = kc.NTK()(X).astype(dtype)
    y = np.sign(X[:, 0])
    want = naive.kernel_alignment(K, y, center=center)
    got = dg.kernel_alignment(K, y, center=center)
    assert got == pytest.approx(want, rel=tol("eig") * 10)
    Y = np.column_stack([y, X[:, 1]])
    assert dg.kernel_alignment(K, Y, center=center) == pytest.approx(
        naive.kernel_alignment(K, Y, center=center), rel=tol("eig") * 10
    )
    monkeypatch.setattr(_checks, "_BLOCK_ELEMS", 60)  # several row blocks
    assert dg.kernel_alignment(K, y, center=center) == pytest.approx(got, rel=1e-12)


def test_kernel_alignment_perfect_and_errors():
    y = np.array([1.0, -1.0, 1.0, 1.0])
    assert dg.kernel_alignment(np.outer(y, y), y) == pytest.approx(1.0, rel=1e-15)
    assert dg.kernel_alignment(np.outer(y, y), -y) == pytest.approx(1.0, rel=1e-15)
    with pytest.raises(ValueError, match="K is zero"):
        dg.kernel_alignment(np.zeros((4, 4)), y)
    with pytest.raises(ValueError, match="y is zero after centring"):
        dg.kernel_alignment(np.eye(4), np.ones(4), center=True)
    with pytest.raises(ValueError, match="K is zero after centring"):
        dg.kernel_alignment(np.ones((4, 4)), y, center=True)
    with pytest.raises(ValueError, match="y has 3 samples, but K has 4 rows"):
        dg.kernel_alignment(np.eye(4), y[:3])
    with pytest.raises(ValueError, match="must be symmetric"):
        dg.kernel_alignment(np.triu(np.ones((4, 4))), y)


def test_kernel_change(rng, dtype, tol, monkeypatch):
    K0 = rng.standard_normal((30, 20)).astype(dtype)
    K1 = (K0 + 0.1 * rng.standard_normal((30, 20))).astype(dtype)
    want = np.linalg.norm(K1.astype(np.float64) - K0) / np.linalg.norm(K0.astype(np.float64))
    assert dg.kernel_change(K0, K1) == pytest.approx(want, rel=tol("eig"))
    monkeypatch.setattr(_checks, "_BLOCK_ELEMS", 50)
    assert dg.kernel_change(K0, K1) == pytest.approx(want, rel=tol("eig"))
    assert dg.kernel_change(K0, K0) == 0.0
    with pytest.raises(ValueError, match=r"same shape, got \(30, 20\) and \(20, 30\)"):
        dg.kernel_change(K0, K1.T)
    with pytest.raises(ValueError, match="K0 is zero"):
        dg.kernel_change(np.zeros((2, 2)), np.eye(2))
    with pytest.raises(ValueError, match="K1 contains NaN"):
        dg.kernel_change(np.eye(2), np.full((2, 2), np.nan))


def test_effective_rank(rng, dtype):
    lam = (rng.uniform(size=20) ** 3).astype(dtype)
    assert dg.effective_rank(lam) == pytest.approx(naive.effective_rank_entropy(lam), rel=1e-6)
    want_pr = float(lam.astype(np.float64).sum() ** 2 / (lam.astype(np.float64) ** 2).sum())
    assert dg.effective_rank(lam, "participation") == pytest.approx(want_pr, rel=1e-6)
    assert dg.effective_rank(np.ones(7, dtype=dtype)) == pytest.approx(7.0, rel=1e-6)
    assert dg.effective_rank([5.0, 0.0, -1e-17]) == pytest.approx(1.0)
    K, _ = distinct_gram(rng, 12, dtype)
    ev = dg.kernel_pca(K)
    assert dg.effective_rank(ev) == pytest.approx(dg.effective_rank(ev.eigenvalues))
    with pytest.raises(ValueError, match="no positive value"):
        dg.effective_rank([0.0, -1.0])
    with pytest.raises(ValueError, match="method must be one of"):
        dg.effective_rank([1.0], method="renyi")
    with pytest.raises(ValueError, match="eigenvalues is empty"):
        dg.effective_rank([])
    with pytest.raises(ValueError, match="1-D array"):
        dg.effective_rank(np.ones((2, 2)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        dg.effective_rank([1.0, np.inf])
    with pytest.raises(TypeError, match="real numbers"):
        dg.effective_rank(["a"])


# ---------------------------------------------------------------------------
# power law, intrinsic dimension
# ---------------------------------------------------------------------------
def test_spectrum_power_law_exact_and_vs_polyfit(rng, dtype, tol):
    r = np.arange(1, 201.0)
    lam = (2.5 * r**-1.7).astype(dtype)
    fit = dg.spectrum_power_law(lam[::-1], fit_range=(1, 200))  # order does not matter
    assert fit.exponent == pytest.approx(1.7, rel=tol("eig") * 10)
    assert fit.amplitude == pytest.approx(2.5, rel=tol("eig") * 100)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(fit(r), 2.5 * r**-1.7, rtol=tol("eig") * 1000)
    noisy = 2.5 * r**-1.2 * np.exp(0.1 * rng.standard_normal(200))
    noisy = np.sort(noisy)[::-1].astype(dtype)
    fit = dg.spectrum_power_law(noisy, fit_range=(5, 120))
    a, A = naive.power_law_fit(noisy, 5, 120)
    assert fit.exponent == pytest.approx(a, rel=1e-9)
    assert fit.amplitude == pytest.approx(A, rel=1e-9)
    assert fit.fit_range == (5, 120) and fit.stderr > 0


def test_spectrum_power_law_default_range(rng):
    X = rng.standard_normal((200, 3))
    ev = dg.kernel_pca(kc.NTK()(X))
    fit = dg.spectrum_power_law(ev)
    lo, hi = fit.fit_range
    assert lo == 2 and 2 < hi <= 100
    a, _ = naive.power_law_fit(ev.eigenvalues, lo, hi)
    assert fit.exponent == pytest.approx(a, rel=1e-9)
    # round-off floor: the default range stops above it
    lam = np.r_[1.0, 0.5, 0.25, 0.125, np.full(20, 1e-20)]
    assert dg.spectrum_power_law(lam).fit_range == (2, 4)
    assert dg.spectrum_power_law([3.0, 1.0]).fit_range == (1, 2)


@pytest.mark.parametrize(
    ("lam", "kwargs", "match"),
    [
        ([1.0, 0.5, 0.2], {"fit_range": (2, 2)}, "1 <= first < last <= 3"),
        ([1.0, 0.5, 0.2], {"fit_range": (1, 4)}, "1 <= first < last <= 3"),
        ([1.0, 0.5, 0.2], {"fit_range": (1,)}, "pair"),
        ([1.0, 0.0, 0.0], {"fit_range": (1, 3)}, "at least 2 positive"),
        ([1.0], {}, "at least 2 positive"),
    ],
)
def test_spectrum_power_law_errors(lam, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dg.spectrum_power_law(lam, **kwargs)


def test_intrinsic_dimension_matches_naive(rng, dtype, tol, monkeypatch):
    X = rng.standard_normal((80, 3))
    K = kc.NTK()(X).astype(dtype)
    want = naive.twonn(K)
    assert dg.intrinsic_dimension(K) == pytest.approx(want, rel=tol("eig") * 100)
    monkeypatch.setattr(_checks, "_BLOCK_ELEMS", 200)  # row blocks
    assert dg.intrinsic_dimension(K) == pytest.approx(want, rel=tol("eig") * 100)
    assert dg.intrinsic_dimension(K, discard_fraction=0.0) == pytest.approx(
        naive.twonn(K, 0.0), rel=tol("eig") * 100
    )


def test_intrinsic_dimension_of_a_plane(rng):
    # 2-D data embedded linearly in 6-D: the linear kernel sees dimension 2
    Z = rng.uniform(size=(1500, 2))
    X = Z @ rng.standard_normal((2, 6))
    assert 1.8 < dg.intrinsic_dimension(X @ X.T) < 2.2
    # duplicates are left out, not fatal
    Xd = np.vstack([X[:200], X[:5]])
    assert np.isfinite(dg.intrinsic_dimension(Xd @ Xd.T))


@pytest.mark.parametrize(
    ("K", "kwargs", "match"),
    [
        (np.eye(2), {}, "at least 3 rows"),
        (np.eye(4), {"discard_fraction": 1.0}, r"in \[0, 1\)"),
        (np.eye(4), {"discard_fraction": -0.1}, "discard_fraction must be >= 0"),
        (np.ones((4, 4)), {}, "fewer than 3 points"),
        (np.ones((4, 3)), {}, "square"),
    ],
)
def test_intrinsic_dimension_errors(K, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dg.intrinsic_dimension(K, **kwargs)


def test_public_names_and_lazy_module():
    assert kc.diagnostics is dg
    for name in dg.__all__:
        assert getattr(dg, name).__doc__


def test_kernel_pca_arpack_is_reproducible_and_handles_centring(rng):
    X = rng.standard_normal((50, 3))
    K = kc.NTK(bias_std=1.0)(X)
    a = dg.kernel_pca(K, n_components=4, method="arpack")
    b = dg.kernel_pca(K, n_components=4, method="arpack")
    np.testing.assert_array_equal(a.eigenvectors, b.eigenvectors)
    c = dg.kernel_pca(K, n_components=4, center=True, method="arpack")
    d = dg.kernel_pca(K, n_components=4, center=True, method="full")
    np.testing.assert_allclose(c.eigenvalues, d.eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(c.eigenvectors, d.eigenvectors, atol=1e-8)


def test_kernel_pca_auto_routes_agree(rng, dtype, tol, monkeypatch):
    """auto takes block Lanczos for a few eigenpairs of a large Gram, LAPACK otherwise."""
    import scipy.sparse.linalg

    from kernelcomp import _eigsolve

    X = rng.standard_normal((dg.LANCZOS_MIN_SAMPLES, 4))
    K = kc.NTK(bias_std=1.0)(X).astype(dtype)
    n = K.shape[0]
    full = dg.kernel_pca(K, method="full")
    calls = []
    real = _eigsolve.block_lanczos_topk

    def spy(matmul, n, k, *args, **kwargs):
        calls.append(k)
        return real(matmul, n, k, *args, **kwargs)

    monkeypatch.setattr(_eigsolve, "block_lanczos_topk", spy)
    k_small = int(dg.LANCZOS_MAX_FRACTION * n)
    for k in (3, k_small, k_small + 1, int(dg.SUBSET_MAX_FRACTION * n) + 1):
        ev = dg.kernel_pca(K, n_components=k)
        rtol = tol("eig") * 10
        np.testing.assert_allclose(ev.eigenvalues, full.eigenvalues[:k], rtol=rtol)
        top = ev.eigenvalues > 1e-3 * ev.eigenvalues[0]  # well separated part
        np.testing.assert_allclose(
            ev.eigenvectors[:, top], full.eigenvectors[:, :k][:, top], atol=tol("eig") * 100
        )
    assert calls == [3, k_small]  # Lanczos only for k <= LANCZOS_MAX_FRACTION * n

    def not_converged(matmul, n, k, dtype, **kwargs):
        w, V, _ = real(matmul, n, k, dtype, **kwargs)
        return np.zeros_like(w), np.zeros_like(V), _eigsolve.EigshInfo(False, 0, 0, 0, 1.0)

    monkeypatch.setattr(_eigsolve, "block_lanczos_topk", not_converged)
    for method in ("auto", "lanczos"):  # both fall back to LAPACK's subset driver
        ev = dg.kernel_pca(K, n_components=3, method=method)
        np.testing.assert_allclose(ev.eigenvalues, full.eigenvalues[:3], rtol=tol("eig") * 10)

    def no_convergence(*args, **kwargs):
        raise scipy.sparse.linalg.ArpackNoConvergence("no convergence", np.ones(1), None)

    monkeypatch.setattr(scipy.sparse.linalg, "eigsh", no_convergence)
    with pytest.raises(scipy.sparse.linalg.ArpackNoConvergence, match="no convergence"):
        dg.kernel_pca(K, n_components=3, method="arpack")


def test_permutation_equivariance_and_affine_invariance(rng):
    """Relabelling the samples permutes eigenvector rows; MI ignores order and affine maps."""
    n = 60
    K, _ = distinct_gram(rng, n)
    perm = rng.permutation(n)
    a = dg.kernel_pca(K, n_components=5)
    b = dg.kernel_pca(K[np.ix_(perm, perm)], n_components=5)
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(b.eigenvectors, a.eigenvectors[perm], atol=1e-10)
    y = rng.choice([-1, 1], size=n)
    V = y[:, None] + rng.standard_normal((n, 4))
    mi = dg.mutual_information(V, y, k=3)
    np.testing.assert_allclose(dg.mutual_information(V[perm], y[perm], k=3), mi, rtol=1e-12)
    np.testing.assert_allclose(dg.mutual_information(-3.0 * V + 7.0, y, k=3), mi, rtol=1e-9)
    c = dg.label_projection(a.eigenvectors, y)
    np.testing.assert_allclose(dg.label_projection(b.eigenvectors, y[perm]), c, atol=1e-10)


# ---------------------------------------------------------------------------
# compression conventions, lambda at t*, stretched inputs
# ---------------------------------------------------------------------------
def test_compression_conventions_against_their_formulas(rng):
    W = rng.standard_normal((50, 6)) * np.array([5.0, 3.0, 1.0, 2.0, 0.5, 1.5])
    rms = np.sqrt(np.mean(W**2, axis=0))
    par, perp = [0, 1], [2, 3, 4, 5]
    assert dg.compression(W, par) == pytest.approx(
        math.sqrt(np.mean(rms[par] ** 2) / np.mean(rms[perp] ** 2)), rel=1e-14)
    assert dg.compression(W, par, convention="figures") == pytest.approx(
        np.mean(rms[par]) / np.mean(rms[perp]), rel=1e-14)
    assert dg.compression(W, par, convention="norm") == pytest.approx(
        math.sqrt(np.mean(rms[par] ** 2) / np.sum(rms[perp] ** 2)), rel=1e-14)
    with pytest.raises(ValueError, match="convention"):
        dg.compression(W, par, convention="mean")


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory):
    X, y = kc.datasets.stripe(96, 4, seed=1)
    net = kc.FCNetwork.init(4, [80], activation="relu_unit", parameterization="mean_field",
                            seed=1)
    path = tmp_path_factory.mktemp("run") / "run.h5"
    res = kc.training.train(net, X, y, alpha=1e-2, path=path, max_steps=5000,
                            config={"dataset": "stripe", "d": 4})
    return res, path


def test_compression_at_t_star_equals_a_direct_computation(feature_run):
    res, path = feature_run
    # t* by hand: the first checkpoint with more than 10 % of the margins >= 1
    saved = kc.io.open_run(path)
    fractions = [np.mean(ck.margins >= 1.0) for ck in saved.checkpoints]
    k = next(i for i, f in enumerate(fractions) if f > 0.1)
    assert "fitted>0.1" in res.checkpoints[k].reason
    assert dg.t_star(res) == dg.t_star(path) == dg.t_star(saved) == k
    W = saved.checkpoints[k].network.weights[0]
    rms = np.sqrt(np.mean(W**2, axis=0))
    direct = rms[0] / np.mean(rms[1:])
    for run in (res, path, saved):
        assert dg.compression_at(run) == pytest.approx(direct, rel=1e-12)
        assert dg.compression_at(run, informative=[0]) == pytest.approx(direct, rel=1e-12)
    assert dg.compression_at(res, convention="rms") == pytest.approx(
        dg.compression(res.checkpoints[k].net, [0]), rel=1e-12)
    # another level, and lambda at t* differs from lambda at the end
    k5 = dg.t_star(res, 0.5)
    assert k5 > k and res.checkpoints[k5].fitted_fraction > 0.5
    assert dg.compression_at(res) != dg.compression(res.net, [0], convention="figures")


def test_t_star_errors(feature_run):
    res, _ = feature_run
    X, y = kc.datasets.stripe(40, 3, seed=0)
    short = kc.training.train(kc.FCNetwork.init(3, [20], seed=0), X, y, alpha=1e-2,
                              max_steps=1)
    with pytest.raises(ValueError, match="stopped before t"):
        dg.t_star(short)
    with pytest.raises(ValueError, match=r"margin_fraction must be in \[0, 1\)"):
        dg.t_star(res, 1.0)
    with pytest.raises(TypeError, match="run must be"):
        dg.t_star(object())
    with pytest.raises(ValueError, match="informative is required"):
        dg.compression_at(kc.training.train(kc.FCNetwork.init(3, [20], seed=0), X, y,
                                            alpha=1e-2))


def test_stretch_inputs_and_the_stretched_kernel_on_a_tiny_problem(rng):
    X = rng.standard_normal((30, 4))
    S = dg.stretch_inputs(X, [0], 5.0)
    np.testing.assert_array_equal(S[:, 0], X[:, 0])
    np.testing.assert_allclose(S[:, 1:], X[:, 1:] / 5.0, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        dg.stretch_inputs(X, [0], 0.0)
    # the demo's stretched machine: the initial NTK on stretched train and test inputs
    from kernelcomp.demo import frozen_kernel_errors

    Xk, yk = kc.datasets.stripe(60, 4, seed=3, split="kernel")
    Xt, yt = kc.datasets.stripe(400, 4, seed=3, split="test")
    net0 = kc.FCNetwork.init(4, [50], activation="relu_unit", parameterization="mean_field",
                             seed=3)
    net1 = net0.copy()
    net1.weights[0][:, 1:] *= 0.1  # a "trained" net insensitive to the perp directions
    out = frozen_kernel_errors(net0, net1, [0], 4.0, Xk, yk, Xt, yt)
    Kx = kc.EmpiricalNTK(net0)(dg.stretch_inputs(Xk, [0], 4.0))
    Kt = kc.EmpiricalNTK(net0)(dg.stretch_inputs(Xt, [0], 4.0),
                               dg.stretch_inputs(Xk, [0], 4.0))
    from sklearn.svm import SVC

    svc = SVC(kernel="precomputed", C=1e20).fit(Kx, yk)
    assert out["stretched_ntk_test_error"] == np.mean(svc.predict(Kt) != yt)
    lo, hi = out["stretched_ntk_test_error_ci"]
    assert lo <= out["stretched_ntk_test_error"] <= hi
    assert out["stretch_lambda"] == 4.0
    gain = out["init_ntk_test_error"] - out["final_ntk_test_error"]
    if gain > 0:
        assert out["gain_explained"] == pytest.approx(
            (out["init_ntk_test_error"] - out["stretched_ntk_test_error"]) / gain)


# ---------------------------------------------------------------------------
# kpca_record: the per-Gram record of `kernelcomp kpca` and the demo
# ---------------------------------------------------------------------------
def test_kpca_record_is_the_sum_of_its_parts(rng):
    X = rng.standard_normal((40, 3))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    K = kc.NTK(depth=1)(X)
    rec = dg.kpca_record(K, y, n_components=12, mi_components=4, mi_k=3, eigenvectors=True)
    ev = dg.kernel_pca(K, n_components=12)
    c = dg.label_projection(ev.eigenvectors, y)
    assert rec["n_samples"] == 40 and rec["trace"] == pytest.approx(float(np.trace(K)))
    np.testing.assert_array_equal(rec["eigenvalues"], ev.eigenvalues)
    np.testing.assert_array_equal(rec["eigenvectors"], ev.eigenvectors)
    np.testing.assert_array_equal(rec["label_projection"], c)
    np.testing.assert_array_equal(rec["cumulative_projection"], dg.cumulative_projection(c, y))
    np.testing.assert_array_equal(
        rec["mutual_information"],
        dg.mutual_information(ev.eigenvectors, y, n_components=4, k=3))
    assert rec["effective_rank"] == dg.effective_rank(ev.eigenvalues)
    assert rec["kernel_alignment"] == dg.kernel_alignment(K, y)


def test_kpca_record_keeps_only_what_the_labels_allow(rng):
    X = rng.standard_normal((30, 3))
    K = kc.NNGP(depth=1)(X)
    bare = dg.kpca_record(K)
    assert set(bare) == {"n_samples", "trace", "eigenvalues", "effective_rank"}
    three = dg.kpca_record(K, np.arange(30) % 3 - 1.0, n_components=5, mi_components=50)
    assert "label_projection" in three and "mutual_information" not in three  # 3 classes
    two = dg.kpca_record(K, np.where(X[:, 1] > 0, 1.0, -1.0), n_components=5,
                         mi_components=50)
    assert two["mutual_information"].shape == (5,)  # at most the eigenvectors computed
    with pytest.raises(TypeError, match="eigenvectors must be True or False"):
        dg.kpca_record(K, eigenvectors=1)
    with pytest.raises(ValueError, match="mi_k must be >= 1"):
        dg.kpca_record(K, mi_k=0)
