"""Parameter effects, boundaries and messages of kernelcomp.diagnostics (issue 26).

Each test pins a documented parameter, output or boundary that a mutmut survivor of
``make mutation MODULE=kernelcomp/diagnostics`` showed unpinned, against a hand-computed
case or a slow obvious reference. The mutants left alive on purpose are listed with
their reason in tests/mutation_equivalents.md.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp.diagnostics import _neurons

# ---------------------------------------------------------------------------
# helpers: tiny hand-made networks
# ---------------------------------------------------------------------------


def doc_net():
    """The network of the docstring examples of attractors / attractor_network."""
    W = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
    return kc.FCNetwork([W, [[1.0, 1.0, -1.0, 1.0]]], activation="relu")


DOC_X = np.array([[1.0, 0.5], [-1.0, 2.0]])


def deep_net(rng, activation="relu", bias=True, out_bias=True):
    """Depth 2, distinct multipliers per layer and a readout bias (b_out = 0.7)."""
    W = [rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((1, 5))]
    b_out = np.array([0.7]) if out_bias else None
    b = [rng.standard_normal(4), rng.standard_normal(5), b_out] if bias else None
    return kc.FCNetwork(W, b, activation, weight_mult=(0.9, 0.6, 0.3), bias_mult=(1.1, 1.3, 2.5))


def naive_output_scale(net, X):
    """``max_x sum_n |c beta_n phi(z_n(x))| + |s b_out|`` by explicit loops."""
    _, cache = net.forward(X, cache=True)
    A = cache.inputs[net.depth]
    beta = net.weights[-1][0]
    c = net.weight_mult[-1]
    best = 0.0
    for x in range(A.shape[0]):
        best = max(best, sum(abs(c * beta[n] * A[x, n]) for n in range(A.shape[1])))
    if net.biases[-1] is not None:
        best += abs(net.bias_mult[-1] * net.biases[-1][0])
    return best


# ---------------------------------------------------------------------------
# attractors and Attractors
# ---------------------------------------------------------------------------


def test_attractors_threshold_is_strict():
    # neuron 0 has z = 0 exactly on the second point: "z > tol" leaves it inactive there
    net = kc.FCNetwork([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0]]], activation="relu")
    X = np.array([[1.0, 1.0], [0.0, 1.0]])
    att = dg.attractors(net, X)
    assert att.patterns.tolist() == [[True, False], [True, True]]
    # and with tol = 1, z = 1 exactly is not above the threshold: both neurons dead there
    att1 = dg.attractors(net, X, tol=1.0)
    assert att1.tol == 1.0
    assert att1.patterns.tolist() == [[False, False]]
    assert att1.dead.tolist() == [True]


def test_attractors_beta_share_of_small_readout_weights():
    # sum of |beta| below 1: still normalised to shares that add up to 1
    W = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    net = kc.FCNetwork([W, [[0.1, 0.2, 0.1]]], activation="relu")
    att = dg.attractors(net, [[1.0, 0.5], [-1.0, 2.0]])
    np.testing.assert_allclose(att.beta_share, [0.75, 0.25], rtol=1e-15)


def test_attractors_outputs_dtypes_and_recorded_arguments():
    att = dg.attractors(doc_net(), DOC_X, layer=-1, tol=0.25)
    assert att.layer == 0 and att.tol == 0.25 and att.criterion == "active"
    assert att.labels.dtype == np.int64 and att.sizes.dtype == np.int64
    assert att.dead.dtype == bool and att.patterns.dtype == bool
    smooth = kc.FCNetwork(doc_net().weights, activation="tanh")
    att = dg.attractors(smooth, DOC_X)
    assert att.criterion == "sign" and att.dead.dtype == bool and not att.dead.any()
    assert repr(att).endswith("dead=0, criterion='sign')")


def test_attractors_repr_and_members():
    att = dg.attractors(doc_net(), DOC_X)
    assert repr(att) == (
        "Attractors(layer=0, n_neurons=4, n_attractors=3, dead=1, criterion='active')"
    )
    assert att.members(0).tolist() == [0, 1]
    assert att.members(2).tolist() == [3]  # the last id is valid ...
    with pytest.raises(ValueError, match=r"attractor must be < n_attractors = 3, got 3"):
        att.members(3)  # ... and n_attractors is not
    with pytest.raises(ValueError, match=r"^attractor must be >= 0, got -1$"):
        att.members(-1)
    with pytest.raises(TypeError, match=r"^attractor must be an integer, got str"):
        att.members("0")


def test_neuron_functions_validate_X_by_name_and_width():
    net = doc_net()
    for f in (dg.attractors, dg.attractor_network, dg.layer_geometry):
        with pytest.raises(ValueError, match=r"^X has 3 features, but 2 are expected$"):
            f(net, np.ones((4, 3)))
        with pytest.raises(ValueError, match=r"^X contains NaN"):
            f(net, [[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]])
        with pytest.raises(TypeError, match=r"^net must be a kc.FCNetwork, got list$"):
            f([[1.0]], DOC_X)


def test_neuron_functions_cast_X_to_float64():
    # float32 points: the patterns and spectra are those of the float64 points
    rng = np.random.default_rng(3)
    net = deep_net(rng)
    X = rng.standard_normal((30, 3)).astype(np.float32)
    X64 = X.astype(np.float64)
    a32, a64 = dg.attractors(net, X, layer=1), dg.attractors(net, X64, layer=1)
    assert a32.labels.tolist() == a64.labels.tolist()
    g32, g64 = dg.layer_geometry(net, X), dg.layer_geometry(net, X64)
    for e32, e64 in zip(g32.eigenvalues, g64.eigenvalues, strict=True):
        assert e32.dtype == np.float64
        np.testing.assert_array_equal(e32, e64)


def test_layer_index_accepts_minus_depth():
    rng = np.random.default_rng(0)
    net = deep_net(rng)
    X = rng.standard_normal((10, 3))
    assert dg.attractors(net, X, layer=-2).layer == 0
    with pytest.raises(ValueError, match=r"in \[-2, 2\) for a network of depth 2, got -3"):
        dg.attractors(net, X, layer=-3)


# ---------------------------------------------------------------------------
# attractor_network
# ---------------------------------------------------------------------------


def test_attractor_network_of_identical_smooth_neurons_is_their_mean():
    # two identical tanh neurons (readouts 1 and 2) and one other: the identical ones
    # merge into one neuron equal to each, with readout 1 + 2 = 3, exactly
    w, b = [0.8, -0.5], 0.3
    net = kc.FCNetwork([[w, w, [0.2, 0.9]], [[1.0, 2.0, -0.5]]], [[b, b, -0.1], [0.4]], "tanh")
    X = np.random.default_rng(1).standard_normal((20, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small, exact = dg.attractor_network(net, X)
    assert exact
    np.testing.assert_allclose(small.weights[0], [w, [0.2, 0.9]], rtol=1e-15)
    np.testing.assert_allclose(small.biases[0], [b, -0.1], rtol=1e-15)
    np.testing.assert_allclose(small.weights[1], [[3.0, -0.5]], rtol=1e-15)
    np.testing.assert_allclose(small(X), net(X), rtol=1e-13)


def test_attractor_network_without_biases_keeps_none():
    net = kc.FCNetwork(doc_net().weights, [None, None], "relu")
    small, exact = dg.attractor_network(net, DOC_X)
    assert exact and small.biases[0] is None and small.biases[1] is None
    np.testing.assert_allclose(small(DOC_X), net(DOC_X), rtol=1e-15)


def test_attractor_network_of_a_silent_net_is_one_zero_neuron():
    # every neuron dead on X and no readout bias: f = 0 = merged(X), an exact merge
    # whose tolerance is 0 (the boundary deviation == EXACT_RTOL * scale is exact)
    net = kc.FCNetwork([[[-1.0, 0.0], [0.0, -2.0]], [[1.0, 1.0]]], activation="relu")
    X = np.array([[1.0, 1.0], [2.0, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small, exact = dg.attractor_network(net, X)
    assert exact is True
    assert small.weights[0].tolist() == [[0.0, 0.0]]
    assert small.biases[0] is None
    assert small.weights[1].tolist() == [[0.0]]
    withb = kc.FCNetwork(net.weights, [[0.0, -1.0], None], "relu")
    small, exact = dg.attractor_network(withb, X)
    assert exact and small.biases[0].tolist() == [0.0]
    assert small.weights[0].tolist() == [[0.0, 0.0]] and small.weights[1].tolist() == [[0.0]]


def test_attractor_network_keeps_the_parameterization():
    net = kc.FCNetwork.init(2, [6], activation="relu", parameterization="mean_field", seed=0)
    small, _ = dg.attractor_network(net, DOC_X)
    assert small.parameterization == "mean_field"
    assert small.weight_mult == net.weight_mult and small.bias_mult == net.bias_mult


def test_attractor_network_layer_message_names_the_last_layer():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"last hidden layer \(1, or -1\), whose neurons .* got 0"):
        dg.attractor_network(deep_net(rng), rng.standard_normal((5, 3)), layer=0)


@pytest.mark.parametrize(("activation", "out_bias"), [("relu", True), ("tanh", True),
                                                     ("relu", False)])  # fmt: skip
def test_attractor_network_warning_reports_the_output_scale(monkeypatch, activation, out_bias):
    # a negative tolerance forces the warning, whose message carries the documented
    # scale max_x sum_n |c beta_n phi(z_n(x))| + |s b_out| (computed here by loops)
    rng = np.random.default_rng(5)
    net = deep_net(rng, activation, out_bias=out_bias)
    X = rng.standard_normal((12, 3))
    monkeypatch.setattr(_neurons, "EXACT_RTOL", -1.0)
    with pytest.warns(RuntimeWarning) as record:
        _, exact = dg.attractor_network(net, X, layer=1)
    assert exact is False
    (w,) = record
    assert issubclass(w.category, RuntimeWarning)
    msg = str(w.message)
    why = (
        "the regrouped sums differ by more than round-off"
        if activation == "relu"
        else "activation 'tanh' is not positively homogeneous, so the neurons of an attractor "
        "merge into their |beta|-weighted mean, exact only for identical neurons"
    )
    assert msg.startswith(f"attractor_network is not exact on X: {why}; max |f_merged - f| = ")
    # stacklevel: the warning is the caller's, not a line of kernelcomp's own module
    assert not w.filename.endswith(os.path.join("diagnostics", "_neurons.py"))
    scale = float(re.search(r"\(outputs up to ([^)]+)\)$", msg).group(1))
    assert scale == pytest.approx(naive_output_scale(net, X), rel=5e-3)


# ---------------------------------------------------------------------------
# layer_geometry and LayerGeometry
# ---------------------------------------------------------------------------


def test_layer_geometry_on_three_points_and_small_spectra():
    # 3 points is the documented minimum; a tiny scale (every eigenvalue < 1) still
    # has an effective rank, that of the numpy spectrum
    rng = np.random.default_rng(2)
    net = deep_net(rng)
    X = 1e-3 * rng.standard_normal((3, 3))
    geo = dg.layer_geometry(net, X)
    assert geo.n_samples == 3
    _, cache = net.forward(X, cache=True)
    for l in range(2):
        A = cache.inputs[l + 1]
        lam = np.sort(np.linalg.eigvalsh(np.cov(A.T, bias=True)))[::-1][: min(3, A.shape[1])]
        lam = np.maximum(lam, 0.0)
        assert 0 < lam.max() < 1
        assert geo.effective_ranks[l] == pytest.approx(dg.effective_rank(lam), rel=1e-6)
    with pytest.raises(ValueError, match=r"at least 3 rows \(points\) for the TwoNN .* got 2"):
        dg.layer_geometry(net, X[:2])


def test_layer_geometry_repr():
    rng = np.random.default_rng(0)
    geo = dg.layer_geometry(deep_net(rng), rng.standard_normal((40, 3)))
    ids = ", ".join(f"{v:.3g}" for v in geo.intrinsic_dimensions)
    assert repr(geo) == f"LayerGeometry(widths=[4, 5], n_samples=40, intrinsic_dimensions=[{ids}])"
    assert geo.effective_ranks.dtype == np.float64
    assert geo.intrinsic_dimensions.dtype == np.float64


# ---------------------------------------------------------------------------
# kernel_change and PowerLaw
# ---------------------------------------------------------------------------


def test_kernel_change_names_its_arguments():
    K = np.eye(3)
    bad = K.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^K0 contains NaN"):
        dg.kernel_change(bad, K)
    with pytest.raises(ValueError, match=r"^K1 contains NaN"):
        dg.kernel_change(K, bad)
    with pytest.raises(ValueError, match=r"^K0 is zero; the relative change is undefined$"):
        dg.kernel_change(np.zeros((2, 2)), K[:2, :2])


def test_kernel_change_of_float32_is_computed_in_float64():
    # float32 Grams, the documented float64 arithmetic: the float64 norms to round-off
    rng = np.random.default_rng(4)
    K0 = rng.standard_normal((70, 50)).astype(np.float32)
    K1 = (K0 + 1e-3 * rng.standard_normal((70, 50))).astype(np.float32)
    a, b = K0.astype(np.float64), K1.astype(np.float64)
    diff2 = sum(float(v) ** 2 for v in (b - a).ravel())
    want = math.sqrt(diff2 / sum(float(v) ** 2 for v in a.ravel()))
    assert dg.kernel_change(K0, K1) == pytest.approx(want, rel=1e-12)


def test_power_law_call_is_float64():
    law = dg.spectrum_power_law(np.arange(1, 40, dtype=np.float64) ** -1.3)
    r = np.array([3, 7, 11], dtype=np.float32)
    want = law.amplitude * r.astype(np.float64) ** (-law.exponent)
    got = law(r)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert law(2) == pytest.approx(law.amplitude * 2.0 ** (-law.exponent), rel=1e-15)


# ---------------------------------------------------------------------------
# compression, stretch_inputs, t_star, compression_at (duck-typed TrainResult runs)
# ---------------------------------------------------------------------------


def first_layer_net(W1):
    W1 = np.asarray(W1, dtype=np.float64)
    return kc.FCNetwork([W1, np.ones((1, W1.shape[0]))], activation="relu")


def fake_train_run(fractions, nets, config=None, net0=None, alpha=1.0, center=True):
    """The attributes of a kc.training.train result that the diagnostics read."""
    cks = [SimpleNamespace(fitted_fraction=f, net=n, step=10 * i, time=0.5 * i)
           for i, (f, n) in enumerate(zip(fractions, nets, strict=True))]  # fmt: skip
    if net0 is None and nets:
        net0 = nets[0]
    run = SimpleNamespace(checkpoints=cks, net0=net0, alpha=alpha, center=center)
    if config is not None:
        run.config = config
    return run


def test_first_layer_messages():
    with pytest.raises(
        TypeError,
        match=r"^net.weights must be a sequence of layer weight "
        r"matrices with the first layer at index 0, got int$",
    ):
        dg.compression(SimpleNamespace(weights=5), [0])
    with pytest.raises(ValueError, match=r"^net.weights\[0\] contains NaN"):
        dg.compression(SimpleNamespace(weights=[[[1.0, np.nan]]]), [0])
    with pytest.raises(
        TypeError,
        match=r"^net must be a network with .weights \(e.g. "
        r"kc.FCNetwork\) or a \(h, d\) first-layer weight matrix, got str$",
    ):
        dg.compression("W", [0])


def test_informative_mask_wraps_negative_indices_and_messages():
    W = [[2.0, 1.0, 1.0]]
    # -3 is direction 0: the same value as [0]
    assert dg.compression(W, [-3]) == dg.compression(W, [0]) == 2.0
    with pytest.raises(ValueError, match=r"^informative has repeated indices: \[-1, 2\]$"):
        dg.compression(W, [-1, 2])
    with pytest.raises(
        TypeError,
        match=r"^informative must be an int, a sequence of "
        r"input-direction indices or a boolean mask of length 3, got float64",
    ):
        dg.compression(W, [0.5])
    with pytest.raises(
        ValueError,
        match=r"^informative is empty; at least one informative "
        r"direction is needed$",
    ):
        dg.compression(W, np.zeros(3, dtype=bool))
    with pytest.raises(
        ValueError,
        match=r"^informative covers all 3 input directions; at "
        r"least one uninformative direction is needed$",
    ):
        dg.compression(W, [0, 1, 2])
    with pytest.raises(ValueError, match=r"^convention must be one of"):
        dg.compression(W, [0], convention="max")
    with pytest.raises(
        ValueError,
        match=r"^the first-layer weights are all zero; lambda is "
        r"undefined$",
    ):
        dg.compression(np.zeros((2, 3)), [0])


def test_stretch_inputs_accepts_lam_below_one_and_names_its_arguments():
    X = np.array([[1.0, 2.0, 4.0]], dtype=np.float32)
    out = dg.stretch_inputs(X, [0], 0.5)  # lam < 1 widens the uninformative directions
    assert out.dtype == np.float64
    assert out.tolist() == [[1.0, 4.0, 8.0]]
    with pytest.raises(TypeError, match=r"^lam must be a real number, got str"):
        dg.stretch_inputs(X, [0], "2")
    with pytest.raises(ValueError, match=r"^lam must be a finite number > 0, got 0.0$"):
        dg.stretch_inputs(X, [0], 0.0)
    with pytest.raises(ValueError, match=r"^X contains NaN"):
        dg.stretch_inputs([[np.nan, 1.0]], [0], 2.0)


def test_t_star_messages_and_bounds():
    net = first_layer_net([[1.0, 0.0, 0.0]])
    run = fake_train_run([0.0, 0.05], [net, net])
    with pytest.raises(ValueError, match=r"more than 0.1 of the margins >= 1 \(at most 0.05\)"):
        dg.t_star(run)
    with pytest.raises(ValueError, match=r"\(at most 0\): the run stopped before t\*"):
        dg.t_star(fake_train_run([], []))
    assert dg.t_star(run, 0.0) == 1  # 0 is a valid fraction: the first f > 0
    with pytest.raises(ValueError, match=r"^margin_fraction must be >= 0.0, got -0.1$"):
        dg.t_star(run, -0.1)
    with pytest.raises(TypeError, match=r"^margin_fraction must be a real number"):
        dg.t_star(run, "0.1")
    with pytest.raises(
        ValueError,
        match=r"^the run's checkpoints do not record their fitted "
        r"fraction$",
    ):
        dg.t_star(fake_train_run([math.nan], [net]))
    with pytest.raises(
        TypeError,
        match=r"^run must be a kc.training.train result, a "
        r"kc.io.open_run result or the path of a run file, got SimpleNamespace$",
    ):
        dg.t_star(SimpleNamespace(checkpoints=[]))  # no net0: not a TrainResult


def test_compression_at_margin_fraction_and_derived_informative():
    # checkpoint k has first-layer weights [[k + 1, 1, 1, 1, 1]]: compressions differ
    nets = [first_layer_net([[k + 1.0, 1.0, 2.0, 1.0, 1.0]]) for k in range(3)]
    fracs = [0.0, 0.2, 0.6]
    cfg = {"dataset": "cylinder", "d": 5}  # d_par not recorded: its default 2
    run = fake_train_run(fracs, nets, config=cfg)
    want = {k: dg.compression(nets[k], [0, 1], convention="figures") for k in range(3)}
    assert len(set(want.values())) == 3
    assert dg.compression_at(run) == want[1]
    assert dg.compression_at(run, 0.5) == want[2]  # margin_fraction is passed on
    d3 = fake_train_run(fracs, nets, config={**cfg, "d_par": 3})
    assert dg.compression_at(d3) == dg.compression(nets[1], [0, 1, 2], convention="figures")
    msg = (
        r"^informative is required: the run's configuration does not name a kernelcomp "
        r"dataset and its dimension$"
    )
    for bad in ({"dataset": "cylinder"}, {"d": 5}, {}):
        with pytest.raises(ValueError, match=msg):
            dg.compression_at(fake_train_run(fracs, nets, config=bad))
    with pytest.raises(ValueError, match=msg):  # no config at all
        dg.compression_at(fake_train_run(fracs, nets))
    given = dg.compression_at(fake_train_run(fracs, nets), informative=[0])
    assert given == dg.compression(nets[1], [0], convention="figures")
    sphere = fake_train_run(fracs, nets, config={"dataset": "sphere", "d": 5})
    with pytest.raises(ValueError, match=r"informative covers all 5 input directions"):
        dg.compression_at(sphere)  # the sphere's informative set is read from d
    dropped = fake_train_run(fracs, [None, None, None], config=cfg, net0=nets[0])
    with pytest.raises(
        ValueError,
        match=r"^the run kept no networks \(keep_networks=False\); "
        r"use its run file$",
    ):
        dg.compression_at(dropped)


# ---------------------------------------------------------------------------
# gauss_newton_spectrum
# ---------------------------------------------------------------------------


def test_gauss_newton_threshold_is_strict_and_tol_is_recorded():
    # M = K / p = diag(0.5, 0.125): 0.125 = tol * lambda_max is not above the threshold
    gn = dg.gauss_newton_spectrum(np.diag([1.0, 0.25]), tol=0.25)
    assert gn.eigenvalues.tolist() == [0.5, 0.125]
    assert gn.n_effective == 1 and gn.tol == 0.25
    assert gn.decades == 0.0
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"^tol must be in \(0, 1\), got {bad}$"):
            dg.gauss_newton_spectrum(np.eye(2), tol=bad)
    with pytest.raises(TypeError, match=r"^tol must be a real number"):
        dg.gauss_newton_spectrum(np.eye(2), tol="0.1")


def test_gauss_newton_one_or_no_eigenvalue_kept_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = dg.gauss_newton_spectrum(np.diag([1.0, 0.0]))
        none = dg.gauss_newton_spectrum(-np.eye(3))  # lambda_max < 0: nothing kept
    assert one.n_effective == 1 and math.isnan(one.log_spacing_mean)
    assert math.isnan(one.log_spacing_std)
    assert none.n_effective == 0 and none.decades == 0.0 and math.isnan(none.log_spacing_mean)


def test_gauss_newton_float32_default_tol_and_float64_arithmetic():
    rng = np.random.default_rng(6)
    A = rng.standard_normal((40, 40))
    K = (A @ A.T).astype(np.float32)
    K = (K + K.T) / 2
    gn = dg.gauss_newton_spectrum(K)
    assert gn.tol == 40 * float(np.finfo(np.float32).eps)
    want = np.sort(np.linalg.eigvalsh(K.astype(np.float64) / 40))[::-1]
    assert gn.eigenvalues.dtype == np.float64
    np.testing.assert_allclose(gn.eigenvalues, want, rtol=1e-10, atol=1e-12 * want[0])


def test_gauss_newton_leaves_a_fortran_ordered_gram_untouched():
    K = np.asfortranarray(np.diag([4.0, 2.0, 1.0]) + 0.1)
    before = K.copy()
    dg.gauss_newton_spectrum(K, loss_curvature=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(K, before)


def test_gauss_newton_scalar_and_array_curvatures():
    K = np.diag([3.0, 0.3, 0.03])
    half = dg.gauss_newton_spectrum(K, loss_curvature=0.5)  # below 1 is fine
    np.testing.assert_allclose(half.eigenvalues, [0.5, 0.05, 0.005], rtol=1e-14)
    ints = dg.gauss_newton_spectrum(K, loss_curvature=np.array([1, 2, 4]))
    np.testing.assert_allclose(ints.eigenvalues, [1.0, 0.2, 0.04], rtol=1e-14)
    with pytest.raises(ValueError, match=r"^loss_curvature must be >= 0.0, got -1.0$"):
        dg.gauss_newton_spectrum(K, loss_curvature=-1.0)
    with pytest.raises(TypeError, match=r"^loss_curvature must hold real numbers, got dtype"):
        dg.gauss_newton_spectrum(K, loss_curvature=np.array(["a", "b", "c"]))
    with pytest.raises(
        ValueError,
        match=r"^loss_curvature contains NaN or infinity; all values "
        r"must be finite$",
    ):
        dg.gauss_newton_spectrum(K, loss_curvature=[1.0, np.inf, 1.0])
    with pytest.raises(
        ValueError,
        match=r"^loss_curvature must be >= 0 \(the second derivative "
        r"of a convex loss\), got -2$",
    ):
        dg.gauss_newton_spectrum(K, loss_curvature=[1.0, -2.0, 1.0])


# ---------------------------------------------------------------------------
# trajectory_embedding (duck-typed TrainResult runs)
# ---------------------------------------------------------------------------


def scaled_nets(scales, d=2):
    """Single-neuron linear nets f(x) = s * (x_0 - x_1 / 2)."""
    return [kc.FCNetwork([[[1.0, -0.5]], [[s]]], activation="linear") for s in scales]


def naive_inpca(F):
    """Bhattacharyya distances, W = -P D P / 2 and its eigenvalues by |lambda|, by hand."""
    m = F.shape[0]
    pp = 1 / (1 + np.exp(-2 * F))
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                bc = np.sqrt(pp[i] * pp[j]) + np.sqrt((1 - pp[i]) * (1 - pp[j]))
                D[i, j] = -np.log(np.minimum(bc, 1.0)).sum()
    P = np.eye(m) - np.ones((m, m)) / m
    w = np.linalg.eigvalsh(-P @ D @ P / 2)
    return D, w[np.argsort(-np.abs(w))]


@pytest.mark.parametrize("center", [True, False])
def test_trajectory_embedding_of_a_train_result(center):
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    nets = scaled_nets([0.0, 0.5, 1.0, 3.0, 4.0])
    net0 = scaled_nets([0.7])[0]
    run = fake_train_run([0.0] * 5, nets, net0=net0, alpha=0.3, center=center)
    emb = dg.trajectory_embedding(run, X=X)
    f0 = net0(X) if center else 0.0
    D, w = naive_inpca(np.stack([0.3 * (n(X) - f0) for n in nets]))
    np.testing.assert_allclose(emb.distances, D, atol=1e-12)
    assert emb.n_components == 3  # the default
    np.testing.assert_allclose(emb.eigenvalues, w[:3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(emb.explained_fraction, np.abs(w[:3]) / np.abs(w).sum(), rtol=1e-9)
    assert np.abs(w).sum() < 1  # small distances: the fraction is still normalised
    assert emb.steps.dtype == np.int64 and emb.steps.tolist() == [0, 10, 20, 30, 40]
    assert emb.times.dtype == np.float64 and emb.split == "X" and emb.n_points == 3
    frac = ", ".join(f"{v:.3g}" for v in emb.explained_fraction)
    assert repr(emb) == (f"TrajectoryEmbedding(n_checkpoints=5, n_components=3, split='X', "
                         f"explained_fraction=[{frac}])")  # fmt: skip


def test_trajectory_embedding_of_a_still_run_and_missing_times():
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    run = fake_train_run([0.0] * 3, scaled_nets([1.0, 1.0, 1.0]))
    for ck in run.checkpoints:
        ck.time = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb = dg.trajectory_embedding(run, X=X, n_components=2)
    assert emb.explained_fraction.tolist() == [0.0, 0.0]
    assert emb.times.dtype == np.float64 and np.isnan(emb.times).all()


def test_trajectory_inputs_messages():
    X = np.ones((2, 2))
    nets = scaled_nets([1.0, 2.0])
    with pytest.raises(ValueError, match=r"^the run has no checkpoints$"):
        dg.trajectory_embedding(fake_train_run([], [], net0=nets[0]), X=X)
    dropped = fake_train_run([0.0, 0.0], [None, None], net0=nets[0])
    with pytest.raises(
        ValueError,
        match=r"^the run kept no networks \(keep_networks=False\); "
        r"use its run file$",
    ):
        dg.trajectory_embedding(dropped, X=X)
    with pytest.raises(
        ValueError,
        match=r"^X is required for a kc.training.train result, which "
        r"does not keep its data: pass the points, e.g. X=X_test$",
    ):
        dg.trajectory_embedding(fake_train_run([0.0, 0.0], nets))
    with pytest.raises(ValueError, match=r"^X has 3 features, but 2 are expected$"):
        dg.trajectory_embedding(fake_train_run([0.0, 0.0], nets), X=np.ones((2, 3)))
    for bad in (5, SimpleNamespace(alpha=1.0)):
        with pytest.raises(
            TypeError,
            match=r"^run must be a kc.training.train result, a "
            r"kc.io.open_run result or the path of a run file, got "
            rf"{type(bad).__name__}$",
        ):
            dg.trajectory_embedding(bad, X=X)


# ---------------------------------------------------------------------------
# run files written by hand (kc.io.RunWriter): the kc.io.Run paths
# ---------------------------------------------------------------------------

RUN_X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 3.0]])


def write_run(path, scales, *, config, steps=None, margins=None, X_test=None):
    """A run file whose checkpoint i holds scaled_nets(scales)[i] at step steps[i]."""
    steps = list(range(0, 10 * len(scales), 10)) if steps is None else steps
    y = np.array([1.0, -1.0, 1.0, -1.0])
    kw = {} if X_test is None else {"X_test": X_test, "y_test": y[: len(X_test)]}
    with kc.io.RunWriter(path, X_train=RUN_X, y_train=y, config=config, **kw) as w:
        for i, net in enumerate(scaled_nets(scales)):
            m = None if margins is None else margins[i]
            w.add_checkpoint(net, step=steps[i], time=0.25 * i, loss=1.0, margins=m)
    return path


def test_t_star_of_a_run_file_counts_margins_equal_to_one(tmp_path):
    # margins exactly 1 count as fitted (alpha y F >= 1): fractions 0.25 and 0.5
    margins = [[1.0, 0.5, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5]]
    path = write_run(tmp_path / "r.h5", [1.0, 2.0], config={"alpha": 1.0}, margins=margins)
    assert dg.t_star(path, 0.2) == 0
    assert dg.t_star(str(path), 0.3) == 1
    bare = write_run(tmp_path / "bare.h5", [1.0, 2.0], config={"alpha": 1.0})
    with pytest.raises(ValueError, match=r"bare.h5: checkpoint 0 stores no margins; t\* cannot"):
        dg.t_star(bare)


def test_compression_at_of_a_run_file_defaults_d_par_to_two(tmp_path):
    margins = [[0.0] * 4, [1.0] * 4]
    cfg = {"alpha": 1.0, "dataset": "cylinder", "d": 2}
    path = write_run(tmp_path / "r.h5", [1.0, 2.0], config=cfg, margins=margins)
    with pytest.raises(ValueError, match=r"informative covers all 2 input directions"):
        dg.compression_at(path)  # d_par = 2 of d = 2: the default is read, not d_par = 1
    one = write_run(tmp_path / "one.h5", [1.0, 2.0], config={**cfg, "d_par": 1}, margins=margins)
    net = scaled_nets([2.0])[0]
    assert dg.compression_at(one) == dg.compression(net, [0], convention="figures")


def test_trajectory_embedding_of_a_run_file(tmp_path):
    scales = [0.8, 0.5, 1.5, 3.0]
    path = write_run(tmp_path / "r.h5", scales, config={"alpha": 0.5})  # center not recorded
    with pytest.raises(
        ValueError,
        match=r"r.h5: the run stores no test set \(X_test\); use split='train' or pass X$",
    ):
        dg.trajectory_embedding(path)
    emb = dg.trajectory_embedding(path, split="train")
    nets = scaled_nets(scales)
    # the default centring is True: F_i = alpha (f_i - f_0)
    D, w = naive_inpca(np.stack([0.5 * (n(RUN_X) - nets[0](RUN_X)) for n in nets]))
    np.testing.assert_allclose(emb.distances, D, atol=1e-12)
    np.testing.assert_allclose(emb.eigenvalues, w[:3], rtol=1e-9, atol=1e-12)
    assert emb.split == "train" and emb.n_points == 4
    assert emb.times.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert emb.steps.tolist() == [0, 10, 20, 30]
    uncentred = write_run(tmp_path / "u.h5", scales, config={"alpha": 0.5, "center": False})
    Du, _ = naive_inpca(np.stack([0.5 * n(RUN_X) for n in nets]))
    got = dg.trajectory_embedding(uncentred, split="train").distances
    np.testing.assert_allclose(got, Du, atol=1e-12)
    assert np.abs(Du - D).max() > 1e-3  # the centring shows
    with pytest.raises(ValueError, match=r"^X has 3 features, but 2 are expected$"):
        dg.trajectory_embedding(path, X=np.ones((2, 3)))


def test_trajectory_embedding_run_file_errors(tmp_path):
    late = write_run(tmp_path / "late.h5", [1.0, 2.0], config={"alpha": 1.0}, steps=[5, 10])
    with pytest.raises(
        ValueError,
        match=r"late.h5: the first checkpoint is at step 5, not 0, so the initial network f0 "
        r"of the model alpha \(f - f0\) is unknown$",
    ):
        dg.trajectory_embedding(late, split="train")
    free = write_run(tmp_path / "free.h5", [1.0, 2.0], config={"alpha": 1.0, "center": False},
                     steps=[5, 10])  # fmt: skip
    assert dg.trajectory_embedding(free, split="train").steps.tolist() == [5, 10]
    no_alpha = write_run(tmp_path / "na.h5", [1.0, 2.0], config={"center": True})
    with pytest.raises(ValueError, match=r"na.h5: the run's configuration does not record alpha$"):
        dg.trajectory_embedding(no_alpha, split="train")
    empty = write_run(tmp_path / "empty.h5", [], config={"alpha": 1.0})
    with pytest.raises(ValueError, match=r"empty.h5: the run has no checkpoints$"):
        dg.trajectory_embedding(empty, split="train")


# ---------------------------------------------------------------------------
# kernel_pca of a Gram on disk (h5py dataset): checks, boundaries, outputs
# ---------------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path):
    """An open HDF5 file and a 30 x 30 Gram with distinct eigenvalues (max |K| known)."""
    import h5py

    rng = np.random.default_rng(8)
    A = rng.standard_normal((30, 6))
    K = A @ A.T + np.diag(np.linspace(1.0, 0.1, 30))
    with h5py.File(tmp_path / "K.h5", "w") as f:
        yield f, K


def test_kernel_pca_on_disk_messages(disk):
    f, K = disk
    f["K"], f["rect"], f["cube"], f["int"] = K, K[:, :5], np.zeros((2, 2, 2)), np.ones((3, 3), int)
    bad = K.copy()
    bad[3, 4] = np.nan
    f["nan"] = bad
    cases = [
        (f["rect"], {}, ValueError, r"^K must be a square Gram matrix, got shape \(30, 5\)$"),
        (f["cube"], {}, ValueError, r"^K must be a square Gram matrix, got shape \(2, 2, 2\)$"),
        (f["int"], {}, TypeError, r"^K must hold floating-point numbers, got dtype int64$"),
        (f["K"], {"n_components": None}, ValueError,
         r"^a Gram on disk needs n_components \(its top eigenpairs, < n\)$"),
        (f["K"], {"n_components": 30}, ValueError,
         r"^n_components must be < n = 30 for a Gram on disk, got 30$"),
        (f["K"], {"n_components": 0}, ValueError, r"^n_components must be >= 1, got 0$"),
        (f["K"], {"n_components": "2"}, TypeError, r"^n_components must be an integer"),
        (f["K"], {"method": "full"}, ValueError,
         r"^a Gram on disk is read by method='lanczos' only, got 'full'$"),
        (f["K"], {"method": "nope"}, ValueError, r"^method must be one of"),
        (f["K"], {"center": True}, ValueError,
         r"^center=True is not available for a Gram on disk$"),
        (f["nan"], {}, ValueError, r"^K contains NaN or infinity \(rows 0:30\)$"),
    ]  # fmt: skip
    for D, kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            dg.kernel_pca(D, **{"n_components": 3, **kw})


@pytest.mark.parametrize("method", ["auto", "lanczos"])
def test_kernel_pca_on_disk_outputs_and_smallest_request(disk, method):
    f, K = disk
    f["K"] = K
    want = np.linalg.eigvalsh(K)[::-1]
    one = dg.kernel_pca(f["K"], 1, method=method)  # n_components = 1 is allowed
    np.testing.assert_allclose(one.eigenvalues, want[:1], rtol=1e-8)
    res = dg.kernel_pca(f["K"], 4, method=method)
    assert res.center is False
    assert res.trace == pytest.approx(float(np.trace(K)), rel=1e-14)
    np.testing.assert_allclose(res.eigenvalues, want[:4], rtol=1e-8)


def test_kernel_pca_on_disk_trace_is_summed_in_float64(disk):
    f, K = disk
    K32 = K.astype(np.float32)
    f["K"] = K32
    want = sum(float(v) for v in np.diagonal(K32))  # float64 sum of the float32 diagonal
    assert dg.kernel_pca(f["K"], 2).trace == pytest.approx(want, rel=1e-13)


def test_kernel_pca_on_disk_symmetry_threshold(disk):
    f, _ = disk
    # max |K| = 2 and an asymmetry of exactly sqrt(eps) * 2 = 2^-25: not above, accepted
    K = np.diag([2.0, 1.5, 1.0, 0.25])
    K[1, 0], K[0, 1] = 0.5, 0.5 + 2.0**-25
    f["edge"] = K
    assert dg.kernel_pca(f["edge"], 2, tol=1e-6).eigenvalues.shape == (2,)
    K[0, 1] = 0.5 + 1e-3
    f["far"] = K
    tol = f"{2.0**-26 * 2.0:.3g}"
    with pytest.raises(ValueError, match=rf"= 0.001 exceeds {tol} \(sqrt\(eps\) x max\|K\|\)$"):
        dg.kernel_pca(f["far"], 2, tol=1e-6)
    # float32: its own sqrt(eps) ~ 3.5e-4, far above float64's
    K32 = np.diag([4.0, 3.0, 2.0, 1.0]).astype(np.float32)
    K32[0, 1] += np.float32(1e-5)
    f["k32"] = K32
    assert dg.kernel_pca(f["k32"], 2, tol=1e-4).eigenvalues.dtype == np.float32


def test_kernel_pca_on_disk_progress_bar(disk, capsys):
    f, K = disk
    f["K"] = K
    dg.kernel_pca(f["K"], 2, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"kernel PCA passes: \d+pass", err)
    dg.kernel_pca(f["K"], 2)
    assert capsys.readouterr().err == ""


def test_kernel_pca_result_repr():
    K = np.diag([4.0, 3.0, 2.0, 1.0])
    three = dg.kernel_pca(K, 3)
    assert repr(three) == (
        "KernelPCAResult(n_samples=4, n_components=3, center=False, eigenvalues=[4, 3, 2])"
    )
    four = dg.kernel_pca(K, 4, center=True)
    top = ", ".join(f"{v:.4g}" for v in four.eigenvalues[:3])
    assert repr(four) == (
        f"KernelPCAResult(n_samples=4, n_components=4, center=True, eigenvalues=[{top}, ...])"
    )


def test_kpca_record_mi_components_and_trace():
    X, y = kc.datasets.stripe(40, 3, seed=1)
    K = kc.NTK()(X).astype(np.float32)
    rec = dg.kpca_record(K, y, n_components=8, mi_components=1)  # 1 is allowed
    assert rec["mutual_information"].shape == (1,)
    want = sum(float(v) for v in np.diagonal(K))  # float64 sum of the float32 diagonal
    assert rec["trace"] == pytest.approx(want, rel=1e-13)
    with pytest.raises(ValueError, match=r"^mi_components must be >= 1, got 0$"):
        dg.kpca_record(K, y, mi_components=0)
    with pytest.raises(TypeError, match=r"^mi_components must be an integer"):
        dg.kpca_record(K, y, mi_components=2.0)
    bad = np.array(K, dtype=np.float64)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^K contains NaN"):
        dg.kpca_record(bad, y)
