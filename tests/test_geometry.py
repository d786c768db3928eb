"""Tests of the network geometry (diagnostics and figures) against tests/naive_geometry.py."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp import diagnostics as geo
from kernelcomp import plotting as gp
from tests import naive_diagnostics
from tests import naive_geometry as naive


@pytest.fixture(autouse=True)
def _no_show_and_close(monkeypatch):
    def show(*args, **kwargs):
        raise AssertionError("plotting functions must never call plt.show()")

    monkeypatch.setattr(plt, "show", show)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def stripe_run():
    """The paper's network trained on a tiny stripe problem (feature regime), with a test set."""
    X, y = kc.datasets.stripe(64, 3, seed=0)
    Xt, yt = kc.datasets.stripe(80, 3, seed=0, split="test")
    net = kc.FCNetwork.init(3, [40], activation="relu_unit", parameterization="mean_field",
                            seed=0)  # fmt: skip
    run = kc.training.train(net, X, y, alpha=1e-2, X_test=Xt, y_test=yt)
    assert run.status == "converged"
    return {"X": X, "y": y, "X_test": Xt, "y_test": yt, "net": net, "run": run}


def random_net(rng, widths, d=3, activation="relu", bias=True):
    """A "standard" network with N(0, 1) weights (biases too, when present)."""
    fan = [d, *widths]
    weights = [rng.standard_normal((w, f)) for w, f in zip([*widths, 1], fan, strict=True)]
    biases = [rng.standard_normal(w) if bias else None for w in [*widths, 1]]
    return kc.FCNetwork(weights, biases, activation)


def partition(labels):
    """The groups of a labelling, as a set of frozensets of neuron indices."""
    labels = np.asarray(labels)
    return {frozenset(np.flatnonzero(labels == a).tolist()) for a in np.unique(labels)}


def assert_matches_naive(att, net, X, layer=0, tol=0.0):
    labels, patterns, sizes, share, dead = naive.attractor_partition(net, X, layer, tol)
    assert att.labels.tolist() == labels
    assert att.patterns.tolist() == patterns
    assert att.sizes.tolist() == sizes
    np.testing.assert_allclose(att.beta_share, share, rtol=1e-12, atol=1e-15)
    assert att.dead.tolist() == dead


def duplicated_net(activation="relu_unit"):
    """Two identical first-layer neurons with same-sign readouts (0.7, 0.3), mean field."""
    w, b = [0.8, -0.5, 1.2], 0.1
    return kc.FCNetwork([[w, w], [[0.7, 0.3]]], [[b, b], None], activation,
                        weight_mult=(1 / math.sqrt(3), 0.5),
                        parameterization="mean_field")  # fmt: skip


# ---------------------------------------------------------------------------
# attractors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("tol", [0.0, 0.3])
def test_attractors_of_trained_net_match_naive(stripe_run, tol):
    net, X = stripe_run["run"].net, stripe_run["X"][:6]  # few points: patterns repeat
    att = geo.attractors(net, X, tol=tol)
    assert_matches_naive(att, net, X, tol=tol)
    assert att.n_attractors < att.n_neurons == 40 and att.criterion == "active"
    assert att.sizes.sum() == 40 and math.isclose(att.beta_share.sum(), 1.0, rel_tol=1e-12)
    assert att.labels[0] == 0 and np.all(np.diff(np.unique(att.labels, return_index=True)[1]) > 0)
    for a in range(att.n_attractors):
        assert att.members(a).tolist() == np.flatnonzero(att.labels == a).tolist()


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_attractors_of_a_deep_net_match_naive(rng, layer):
    net = random_net(rng, [12, 9])
    X = rng.standard_normal((5, 3))
    att = geo.attractors(net, X, layer=layer)
    assert att.layer == layer % 2
    assert_matches_naive(att, net, X, layer=layer % 2)  # layer 0: next layer's column norms


def test_attractors_of_smooth_activations_group_by_sign(rng):
    net = random_net(rng, [10], activation="tanh")
    net.biases[0][3] = -50.0  # never positive, but tanh(z) = -1 is not dead
    X = rng.standard_normal((4, 3))
    att = geo.attractors(net, X)
    assert att.criterion == "sign" and not att.dead.any()
    assert_matches_naive(att, net, X)
    assert not att.patterns[att.labels[3]].any()


def test_permuting_neurons_permutes_labels_not_groups(stripe_run, rng):
    net, X = stripe_run["run"].net, stripe_run["X"][:6]
    perm = rng.permutation(40)
    permuted = kc.FCNetwork([net.weights[0][perm], net.weights[1][:, perm]],
                            [net.biases[0][perm], None], net.activation, net.weight_mult,
                            net.bias_mult, net.parameterization)  # fmt: skip
    a, b = geo.attractors(net, X), geo.attractors(permuted, X)
    assert partition(a.labels) == {frozenset(perm[list(g)].tolist()) for g in partition(b.labels)}
    assert sorted(map(tuple, a.patterns.tolist())) == sorted(map(tuple, b.patterns.tolist()))
    # attractor of each neuron carries the same pattern and share, whatever its id
    np.testing.assert_array_equal(a.patterns[a.labels[perm]], b.patterns[b.labels])
    np.testing.assert_allclose(a.beta_share[a.labels[perm]], b.beta_share[b.labels], rtol=1e-12)


def test_rotating_the_uninformative_subspace_changes_nothing(stripe_run, rng):
    net, X = stripe_run["run"].net, stripe_run["X"][:8]
    R, _ = np.linalg.qr(rng.standard_normal((2, 2)))
    Q = np.eye(3)
    Q[1:, 1:] = R  # rotation of the uninformative directions 1, 2
    rotated = net.copy()
    rotated.weights[0] = net.weights[0] @ Q.T  # omega . x is unchanged for x -> Q x
    a, b = geo.attractors(net, X), geo.attractors(rotated, X @ Q.T)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.patterns, b.patterns)
    np.testing.assert_allclose(a.beta_share, b.beta_share, rtol=1e-12)
    ax1 = gp.plot_neurons(net, [0], X=X)
    ax2 = gp.plot_neurons(rotated, [0], X=X @ Q.T)
    c1, c2 = ax1.collections[0], ax2.collections[0]
    np.testing.assert_allclose(c1.get_offsets(), c2.get_offsets(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(c1.get_facecolors(), c2.get_facecolors())


def test_attractors_of_degenerate_layers(rng):
    X = rng.standard_normal((7, 3))
    dead = kc.FCNetwork([np.zeros((5, 3)), np.ones((1, 5))], [-np.ones(5), None], "relu")
    att = geo.attractors(dead, X)
    assert att.n_attractors == 1 and att.sizes.tolist() == [5] and att.dead.tolist() == [True]
    assert att.beta_share.tolist() == [1.0] and not att.patterns.any()
    one = kc.FCNetwork.init(3, [1], activation="relu_unit", seed=0)
    att = geo.attractors(one, X)
    assert att.labels.tolist() == [0] and att.n_attractors == 1
    att = geo.attractors(duplicated_net(), X)
    assert att.n_attractors == 1 and att.sizes.tolist() == [2]
    zero_readout = kc.FCNetwork([rng.standard_normal((3, 3)), np.zeros((1, 3))], None, "relu")
    assert np.all(geo.attractors(zero_readout, X).beta_share == 0.0)


def test_attractors_errors(rng):
    net = random_net(rng, [4])
    X = rng.standard_normal((3, 3))
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork"):
        geo.attractors(net.weights[0], X)
    with pytest.raises(ValueError, match="no hidden layer"):
        geo.attractors(kc.FCNetwork([np.ones((1, 3))]), X)
    with pytest.raises(ValueError, match=r"layer must index a hidden layer, in \[-1, 1\)"):
        geo.attractors(net, X, layer=1)
    with pytest.raises(TypeError, match="layer must be an integer"):
        geo.attractors(net, X, layer=0.0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        geo.attractors(net, X, tol=-1.0)
    with pytest.raises(ValueError, match="X has 2 features, but 3 are expected"):
        geo.attractors(net, X[:, :2])
    with pytest.raises(ValueError, match="attractor must be < n_attractors"):
        geo.attractors(net, X).members(99)


# ---------------------------------------------------------------------------
# attractor_network
# ---------------------------------------------------------------------------
def expected_width(net, X):
    """Number of (living attractor, readout sign) pairs, from the naive partition."""
    labels, _, _, _, dead = naive.attractor_partition(net, X)
    beta = net.weights[-1][0]
    pairs = {(a, np.sign(beta[k])) for k, a in enumerate(labels) if not dead[a] and beta[k] != 0}
    return len(pairs)


@pytest.mark.parametrize("n_points", [6, 64])
def test_attractor_network_is_exact_on_a_trained_net(stripe_run, n_points):
    net, X = stripe_run["run"].net, stripe_run["X"][:n_points]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged, exact = geo.attractor_network(net, X)
    assert exact and merged.widths == (expected_width(net, X),)
    if n_points == 6:
        assert merged.widths[0] < 40
    f = net(X)  # of order 1/alpha: the same outputs to 1e-12 relative
    assert np.max(np.abs(merged(X) - f)) <= 1e-12 * np.max(np.abs(f))
    assert merged.weight_mult == net.weight_mult and merged.activation == net.activation
    # the merged neurons keep the patterns: each one is a (attractor, sign) group
    att, att_m = geo.attractors(net, X), geo.attractors(merged, X)
    alive = {tuple(p) for p, d in zip(att.patterns.tolist(), att.dead, strict=True) if not d}
    assert {tuple(p) for p in att_m.patterns.tolist()} <= alive


def test_attractor_network_merges_duplicated_neurons(rng):
    net = duplicated_net()
    X = rng.standard_normal((20, 3))
    merged, exact = geo.attractor_network(net, X)
    assert exact and merged.widths == (1,)
    # |beta|-weighted sum of two identical neurons: w (0.7 + 0.3) = w, readout +1
    np.testing.assert_allclose(merged.weights[0][0], net.weights[0][0], rtol=1e-15)
    assert merged.weights[1].tolist() == [[1.0]]
    np.testing.assert_allclose(merged(X), net(X), rtol=0, atol=1e-12)
    # opposite readout signs: one neuron per sign, still exact
    mixed = net.copy()
    mixed.weights[1] = np.array([[0.7, -0.3]])
    merged, exact = geo.attractor_network(mixed, X)
    assert exact and merged.widths == (2,) and merged.weights[1].tolist() == [[1.0, -1.0]]
    np.testing.assert_allclose(merged(X), mixed(X), rtol=0, atol=1e-12)


def test_attractor_network_drops_dead_and_silent_neurons(rng):
    X = rng.standard_normal((9, 3))
    W = rng.standard_normal((4, 3))
    W[1] = 0.0
    net = kc.FCNetwork([W, [[0.5, 2.0, 0.0, -1.0]]], [[0.1, -1.0, 0.2, 0.3], [0.25]], "relu")
    merged, exact = geo.attractor_network(net, X)
    assert exact and merged.widths == (expected_width(net, X),) and merged.widths[0] <= 2
    np.testing.assert_allclose(merged(X), net(X), rtol=0, atol=1e-12)
    # every neuron dead: one zero neuron, the readout bias stays
    dead = kc.FCNetwork([np.zeros((5, 3)), np.ones((1, 5))], [-np.ones(5), [0.25]], "relu")
    merged, exact = geo.attractor_network(dead, X)
    assert exact and merged.widths == (1,) and not merged.weights[0].any()
    np.testing.assert_array_equal(merged(X), np.full(9, 0.25))


def test_attractor_network_of_a_deep_and_a_linear_net(rng):
    X = rng.standard_normal((6, 3))
    deep = random_net(rng, [8, 10])
    merged, exact = geo.attractor_network(deep, X, layer=-1)
    assert exact and merged.widths[0] == 8 and merged.widths[1] == expected_width_deep(deep, X)
    np.testing.assert_allclose(merged(X), deep(X), rtol=0, atol=1e-12)
    linear = random_net(rng, [7], activation="linear")
    merged, exact = geo.attractor_network(linear, X)
    assert exact and merged.widths[0] <= 7  # linear: never dead, merged by sign pattern
    np.testing.assert_allclose(merged(X), linear(X), rtol=0, atol=1e-12)


def expected_width_deep(net, X):
    labels, _, _, _, dead = naive.attractor_partition(net, X, layer=net.depth - 1)
    beta = net.weights[-1][0]
    return len({(a, np.sign(beta[k])) for k, a in enumerate(labels) if not dead[a]})


def test_attractor_network_of_smooth_activations_is_not_exact(rng):
    X = rng.standard_normal((2, 3))  # 12 neurons, at most 4 sign patterns: distinct neurons merge
    net = random_net(rng, [12], activation="tanh")
    with pytest.warns(RuntimeWarning, match="'tanh' is not positively homogeneous"):
        merged, exact = geo.attractor_network(net, X)
    assert not exact and isinstance(merged, kc.FCNetwork)
    with warnings.catch_warnings():  # identical neurons merge exactly by their mean
        warnings.simplefilter("error")
        merged, exact = geo.attractor_network(duplicated_net("erf"), X)
    assert exact and merged.widths == (1,)
    np.testing.assert_allclose(merged(X), duplicated_net("erf")(X), rtol=0, atol=1e-12)


def test_attractor_network_errors(rng):
    X = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="layer must be the last hidden layer"):
        geo.attractor_network(random_net(rng, [4, 4]), X, layer=0)
    two = kc.FCNetwork.init(3, [4], n_outputs=2, seed=0)
    with pytest.raises(ValueError, match="net must have a single output"):
        geo.attractor_network(two, X)
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork"):
        geo.attractor_network("net", X)


# ---------------------------------------------------------------------------
# layer_geometry
# ---------------------------------------------------------------------------
def test_layer_geometry_matches_numpy_pca(rng):
    net = random_net(rng, [30, 20], activation="relu")
    X = rng.standard_normal((60, 3))
    res = geo.layer_geometry(net, X)
    assert res.depth == 2 and res.widths == (30, 20) and res.n_samples == 60
    for l, A in enumerate(naive.representations(net, X)):
        lam = naive.covariance_eigenvalues(A)
        np.testing.assert_allclose(res.eigenvalues[l], lam, rtol=1e-9, atol=1e-12 * lam[0])
        law = res.power_laws[l]
        lo, hi = law.fit_range
        exponent, _ = naive_diagnostics.power_law_fit(lam, lo, hi)
        assert math.isclose(law.exponent, exponent, rel_tol=1e-6)
        assert math.isclose(res.exponents[l], exponent, rel_tol=1e-6)
        assert math.isclose(res.effective_ranks[l], naive_diagnostics.effective_rank_entropy(lam),
                            rel_tol=1e-9)  # fmt: skip
        gram = A @ A.T
        assert math.isclose(res.intrinsic_dimensions[l], naive_diagnostics.twonn(gram),
                            rel_tol=1e-9)  # fmt: skip


def test_layer_geometry_keeps_n_components(rng):
    net = random_net(rng, [25, 40], activation="tanh")
    X = rng.standard_normal((30, 3))
    full, top = geo.layer_geometry(net, X), geo.layer_geometry(net, X, n_components=5)
    assert [ev.shape for ev in full.eigenvalues] == [(25,), (30,)]  # min(n, n_l)
    for l in range(2):
        np.testing.assert_array_equal(top.eigenvalues[l], full.eigenvalues[l][:5])
        assert math.isclose(top.effective_ranks[l], dg.effective_rank(full.eigenvalues[l][:5]))
    np.testing.assert_array_equal(top.intrinsic_dimensions, full.intrinsic_dimensions)


def test_layer_geometry_of_a_dead_layer(rng):
    X = rng.standard_normal((10, 3))
    dead = kc.FCNetwork([np.zeros((5, 3)), np.ones((1, 5))], [-np.ones(5), None], "relu")
    res = geo.layer_geometry(dead, X)
    assert not res.eigenvalues[0].any() and res.power_laws == (None,)
    assert math.isnan(res.effective_ranks[0]) and math.isnan(res.intrinsic_dimensions[0])
    assert math.isnan(res.exponents[0])


def test_layer_geometry_errors(rng):
    net = random_net(rng, [4])
    with pytest.raises(ValueError, match="X must have at least 3 rows"):
        geo.layer_geometry(net, rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        geo.layer_geometry(net, rng.standard_normal((5, 3)), n_components=0)
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork"):
        geo.layer_geometry(None, rng.standard_normal((5, 3)))


# ---------------------------------------------------------------------------
# gauss_newton_spectrum
# ---------------------------------------------------------------------------
def sloppiness(lam):
    logs = np.log10(lam)
    gaps = logs[:-1] - logs[1:]
    return logs[0] - logs[-1], gaps.mean(), gaps.std()


@pytest.mark.parametrize("activation", ["tanh", "relu_unit"])
def test_gauss_newton_matches_explicit_jacobian(rng, activation):
    net = kc.FCNetwork.init(2, [4], activation=activation, bias_std=0.5, seed=3)  # P = 17
    X = rng.standard_normal((10, 2))
    d = rng.uniform(0.1, 2.0, size=10)
    G_eigs, J = naive.gauss_newton_eigenvalues(net, X, d)
    for K in (J @ J.T, kc.EmpiricalNTK(net)(X)):
        gn = geo.gauss_newton_spectrum((K + K.T) / 2, d)
        np.testing.assert_allclose(gn.eigenvalues, G_eigs[:10], rtol=1e-9, atol=1e-12 * G_eigs[0])
    assert gn.n_effective == 10 and gn.n_samples == 10
    decades, mean, std = sloppiness(G_eigs[:10])
    assert math.isclose(gn.decades, decades, rel_tol=1e-8)
    assert math.isclose(gn.log_spacing_mean, mean, rel_tol=1e-8)
    assert math.isclose(gn.log_spacing_std, std, rel_tol=1e-7)
    # the square loss: D = I, and a scalar curvature scales the spectrum
    G_sq, _ = naive.gauss_newton_eigenvalues(net, X)
    K = J @ J.T
    np.testing.assert_allclose(geo.gauss_newton_spectrum(K).eigenvalues, G_sq[:10], rtol=1e-9,
                               atol=1e-12 * G_sq[0])  # fmt: skip
    scaled = geo.gauss_newton_spectrum(K, 3.0).eigenvalues
    np.testing.assert_allclose(scaled, 3.0 * geo.gauss_newton_spectrum(K).eigenvalues, rtol=1e-12)


def test_gauss_newton_of_a_rank_deficient_jacobian(rng):
    net = kc.FCNetwork.init(2, [2], activation="tanh", bias_std=0.5, seed=1)  # P = 9 < p
    X = rng.standard_normal((20, 2))
    G_eigs, J = naive.gauss_newton_eigenvalues(net, X)
    rank = np.linalg.matrix_rank(J)
    gn = geo.gauss_newton_spectrum(J @ J.T)
    assert gn.n_effective == rank == 9
    np.testing.assert_allclose(gn.eigenvalues[:9], G_eigs, rtol=1e-9)
    assert np.all(np.abs(gn.eigenvalues[9:]) <= 1e-12 * gn.eigenvalues[0])
    assert math.isclose(gn.decades, sloppiness(G_eigs)[0], rel_tol=1e-8)
    # a looser threshold counts fewer parameters
    tol = float(G_eigs[4] / G_eigs[0]) * 0.999
    assert geo.gauss_newton_spectrum(J @ J.T, tol=tol).n_effective == 5


def test_gauss_newton_of_zero_curvature():
    gn = geo.gauss_newton_spectrum(np.eye(3), np.zeros(3))
    assert gn.n_effective == 0 and gn.decades == 0.0
    assert math.isnan(gn.log_spacing_mean) and math.isnan(gn.log_spacing_std)
    one = geo.gauss_newton_spectrum(np.diag([2.0, 0.0, 0.0]))
    assert one.n_effective == 1 and one.decades == 0.0 and math.isnan(one.log_spacing_mean)


def test_gauss_newton_errors():
    K = np.eye(3)
    with pytest.raises(ValueError, match="loss_curvature must be >= 0"):
        geo.gauss_newton_spectrum(K, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=r"loss_curvature must be a number or have shape \(3,\)"):
        geo.gauss_newton_spectrum(K, [1.0, 1.0])
    with pytest.raises(ValueError, match="loss_curvature contains NaN"):
        geo.gauss_newton_spectrum(K, [1.0, np.nan, 1.0])
    with pytest.raises(TypeError, match="loss_curvature must hold real numbers"):
        geo.gauss_newton_spectrum(K, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"tol must be in \(0, 1\)"):
        geo.gauss_newton_spectrum(K, tol=1.5)
    with pytest.raises(ValueError, match="K must be symmetric"):
        geo.gauss_newton_spectrum(np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="K must be a square Gram matrix"):
        geo.gauss_newton_spectrum(np.ones((3, 2)))


# ---------------------------------------------------------------------------
# trajectory_embedding
# ---------------------------------------------------------------------------
def reference_embedding(run, X, k):
    f0 = run.net0(X)
    outputs = [run.alpha * (ck.net(X) - f0) for ck in run.checkpoints]
    D = naive.bhattacharyya_distances(outputs)
    return D, *naive.inpca(D, k)


def test_trajectory_embedding_matches_brute_force(stripe_run):
    run, Xt = stripe_run["run"], stripe_run["X_test"]
    k = 10  # down to the first negative ("time-like") eigenvalue of W, rank 8 here
    emb = geo.trajectory_embedding(run, X=Xt, n_components=k)
    m = len(run.checkpoints)
    D, lam, coords, frac = reference_embedding(run, Xt, k)
    np.testing.assert_allclose(emb.distances, D, rtol=1e-9, atol=1e-12 * D.max())
    assert np.all(np.diag(emb.distances) == 0) and np.all(emb.distances >= 0)
    np.testing.assert_allclose(emb.eigenvalues, lam, rtol=1e-8, atol=1e-10 * abs(lam[0]))
    assert (emb.eigenvalues < 0).any() and np.all(np.diff(np.abs(emb.eigenvalues)) <= 0)
    np.testing.assert_allclose(emb.explained_fraction, frac, rtol=1e-8, atol=1e-12)
    signs = np.sign(np.sum(emb.coordinates * coords, axis=0))
    np.testing.assert_allclose(emb.coordinates, coords * signs, rtol=1e-7, atol=1e-8)
    assert emb.coordinates.shape == (m, k) and emb.n_checkpoints == m and emb.n_components == k
    assert emb.steps.tolist() == [ck.step for ck in run.checkpoints] and emb.split == "X"
    np.testing.assert_array_equal(emb.times, [ck.time for ck in run.checkpoints])
    assert emb.n_points == 80 and emb.explained_fraction.sum() <= 1.0
    # signs: each column's largest-magnitude entry is positive
    idx = np.abs(emb.coordinates).argmax(axis=0)
    assert np.all(emb.coordinates[idx, np.arange(k)] > 0)
    # more components than checkpoints are clipped
    assert geo.trajectory_embedding(run, X=Xt, n_components=500).n_components == m


def test_trajectory_embedding_of_a_run_file(stripe_run, tmp_path):
    s = stripe_run
    path = tmp_path / "run.h5"
    run = kc.training.train(s["net"], s["X"], s["y"], alpha=1e-2, X_test=s["X_test"],
                            y_test=s["y_test"], path=path)  # fmt: skip
    ref = geo.trajectory_embedding(run, X=s["X_test"])
    for source in (path, str(path), kc.io.open_run(path)):
        emb = geo.trajectory_embedding(source)
        assert emb.split == "test"
        np.testing.assert_allclose(emb.distances, ref.distances, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(emb.coordinates, ref.coordinates, rtol=1e-9, atol=1e-10)
        np.testing.assert_array_equal(emb.steps, ref.steps)
    train = geo.trajectory_embedding(path, split="train")
    on_X = geo.trajectory_embedding(run, X=s["X"])
    np.testing.assert_allclose(train.distances, on_X.distances, rtol=1e-12)


def test_trajectory_embedding_errors(stripe_run, tmp_path):
    s = stripe_run
    with pytest.raises(ValueError, match=r"X is required for a kc\.training\.train result"):
        geo.trajectory_embedding(s["run"])
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\]"):
        geo.trajectory_embedding(s["run"], "val", X=s["X"])
    with pytest.raises(TypeError, match=r"run must be a kc\.training\.train result"):
        geo.trajectory_embedding(object())
    with pytest.raises(ValueError, match="X has 2 features, but 3 are expected"):
        geo.trajectory_embedding(s["run"], X=s["X"][:, :2])
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        geo.trajectory_embedding(s["run"], X=s["X"], n_components=0)
    lean = kc.training.train(s["net"], s["X"], s["y"], alpha=1e-2, max_steps=5,
                             keep_networks=False, path=tmp_path / "lean.h5")  # fmt: skip
    with pytest.raises(ValueError, match="the run kept no networks"):
        geo.trajectory_embedding(lean, X=s["X"])
    with pytest.raises(ValueError, match="the run stores no test set"):
        geo.trajectory_embedding(tmp_path / "lean.h5")
    assert geo.trajectory_embedding(tmp_path / "lean.h5", split="train").n_points == 64


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------
def test_plot_neurons_coordinates_sizes_and_colours(stripe_run):
    net, X = stripe_run["run"].net, stripe_run["X"][:6]
    ax = gp.plot_neurons(net, [0], X=X)
    coll = ax.collections[0]
    W = net.weights[0]
    expected = np.c_[W[:, 0], [math.hypot(W[k, 1], W[k, 2]) for k in range(40)]]
    np.testing.assert_allclose(coll.get_offsets(), expected, rtol=1e-12)
    beta = np.abs(net.weights[1][0])
    sizes = coll.get_sizes()
    assert np.argmax(sizes) == np.argmax(beta) and np.argmin(sizes) == np.argmin(beta)
    np.testing.assert_allclose(np.diff(sizes) / np.diff(beta), (sizes.max() - sizes.min())
                               / (beta.max() - beta.min()), rtol=1e-9)  # fmt: skip
    att = geo.attractors(net, X)
    colors = coll.get_facecolors()
    for k in range(40):  # same attractor, same colour; dead neurons grey
        same = np.flatnonzero(att.labels == att.labels[k])
        assert np.all(colors[same] == colors[k])
        if att.dead[att.labels[k]]:
            assert tuple(colors[k][:3]) == to_rgba((0.6, 0.6, 0.6))[:3]
    assert ax.get_xlabel() == r"$\omega_\parallel$" and ax.get_ylabel() == r"$\|\omega_\perp\|$"


def test_plot_neurons_of_several_checkpoints(stripe_run):
    run = stripe_run["run"]
    nets = [run.checkpoints[0].net, run.checkpoints[-1].net]
    axes = gp.plot_neurons(nets, [0, 1])
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)
    assert [a.get_title() for a in axes] == ["init", "final"]
    W = nets[1].weights[0]
    expected = np.c_[np.hypot(W[:, 0], W[:, 1]), np.abs(W[:, 2])]
    np.testing.assert_allclose(axes[1].collections[0].get_offsets(), expected, rtol=1e-12)
    assert axes[0].get_xlabel() == r"$\|\omega_\parallel\|$"
    _, given = plt.subplots(1, 2)
    out = gp.plot_neurons(nets, np.array([True, False, False]), labels=["a", "b"], axes=given)
    assert list(out) == list(given) and given[1].get_title() == "b"
    bare = gp.plot_neurons(nets[0].weights[0], [0])  # a weight matrix: one marker size
    assert len(set(bare.collections[0].get_sizes().tolist())) == 1


def test_plot_neurons_errors(stripe_run):
    net, X = stripe_run["run"].net, stripe_run["X"]
    with pytest.raises(ValueError, match="axes has 1 Axes, but there are 2 networks"):
        gp.plot_neurons([net, net], [0], axes=plt.subplots()[1])
    with pytest.raises(ValueError, match="labels has 1 entries, but there are 2 networks"):
        gp.plot_neurons([net, net], [0], labels=["x"])
    with pytest.raises(TypeError, match=r"which needs a kc\.FCNetwork; net_or_nets is a ndarray"):
        gp.plot_neurons(net.weights[0], [0], X=X)
    with pytest.raises(ValueError, match="informative covers all 3 input directions"):
        gp.plot_neurons(net, [0, 1, 2])
    with pytest.raises(ValueError, match="net_or_nets is empty"):
        gp.plot_neurons([], [0])
    with pytest.raises(TypeError, match=r"axes\[0\] must be a matplotlib Axes"):
        gp.plot_neurons(net, [0], axes=["ax"])


def test_plot_layer_geometry(rng):
    net = random_net(rng, [20, 20, 20], activation="tanh")
    res = geo.layer_geometry(net, rng.standard_normal((40, 3)))
    ax = gp.plot_layer_geometry(res)
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 3]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), res.intrinsic_dimensions)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), res.effective_ranks)
    _, own = plt.subplots()
    assert gp.plot_layer_geometry(res, ax=own) is own
    with pytest.raises(TypeError, match="result must be a LayerGeometry"):
        gp.plot_layer_geometry({"eigenvalues": []})


def test_plot_trajectory(stripe_run):
    run, Xt = stripe_run["run"], stripe_run["X_test"]
    emb = geo.trajectory_embedding(run, X=Xt)
    ax = gp.plot_trajectory(emb)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), emb.coordinates[:, :2])
    np.testing.assert_array_equal(ax.collections[0].get_array(), emb.steps)
    assert len(ax.figure.axes) == 2  # the colour bar
    assert ax.get_xlabel().startswith("InPCA 1 (") and "%" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts] == ["init", "final"]
    _, own = plt.subplots()
    assert gp.plot_trajectory(emb, ax=own, color_by="time", cmap="plasma") is own
    np.testing.assert_array_equal(own.collections[0].get_array(), emb.times)
    with pytest.raises(ValueError, match="plot_trajectory needs 2"):
        gp.plot_trajectory(geo.trajectory_embedding(run, X=Xt, n_components=1))
    with pytest.raises(ValueError, match=r"color_by must be one of \['step', 'time'\]"):
        gp.plot_trajectory(emb, color_by="loss")
    with pytest.raises(ValueError, match="is not a matplotlib colormap"):
        gp.plot_trajectory(emb, cmap="no-such-map")
    with pytest.raises(TypeError, match="embedding must be a TrajectoryEmbedding"):
        gp.plot_trajectory(emb.coordinates)


def test_attractor_network_of_a_leaky_relu_net_is_exact(rng):
    # leaky_relu is linear on each side of 0: same-pattern neurons merge exactly; neurons
    # inactive on every point still contribute 0.01 z, so they are not dead
    net = kc.FCNetwork.init(3, [60], activation="leaky_relu", parameterization="mean_field",
                            bias=True, bias_std=2.0, seed=5)
    X = rng.standard_normal((4, 3))
    att = geo.attractors(net, X)
    inactive = ~att.patterns.any(axis=1)  # an attractor of neurons inactive on all of X
    assert inactive.any() and not att.dead[inactive].any() and att.n_attractors < 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged, exact = geo.attractor_network(net, X)
    assert exact and merged.widths[0] < 60
    np.testing.assert_allclose(merged(X), net(X), rtol=1e-12, atol=1e-14)
