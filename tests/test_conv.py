"""kc.ConvNTK / kc.ConvNNGP: neural-tangents fixtures, the naive 4-D recursion, the driver."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp._kernels import conv as _core
from tests.naive_conv import conv_gram, conv_kernel

FIXTURES = Path(__file__).parent / "fixtures"


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Max-norm relative difference ``max |a - b| / max |b|``."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def nt():
    return np.load(FIXTURES / "nt_conv_reference.npz")


def _nt_configs() -> list[dict]:
    with np.load(FIXTURES / "nt_conv_reference.npz") as f:
        return json.loads(str(f["index_json"]))["configs"]


def _kernel(cls, cfg: dict, **extra):
    ws, bs = cfg["weight_std"], cfg["bias_std"]
    return cls(
        cfg["layers"],
        weight_std=tuple(ws) if isinstance(ws, list) else ws,
        bias_std=tuple(bs) if isinstance(bs, list) else bs,
        **extra,
    )


# ---------------------------------------------------------------- neural-tangents


@pytest.mark.parametrize("cfg", _nt_configs(), ids=lambda c: c["name"])
def test_matches_neural_tangents(cfg, nt):
    X, Y = nt[f"{cfg['group']}_X"], nt[f"{cfg['group']}_Y"]
    same = {
        "xx": np.array([[np.array_equal(a, b) for b in X] for a in X]),
        "xy": np.array([[np.array_equal(a, b) for b in Y] for a in X]),
    }
    for name, cls in (("nngp", kc.ConvNNGP), ("ntk", kc.ConvNTK)):
        k = _kernel(cls, cfg)
        for part, args in (("xx", (X,)), ("xy", (X, Y))):
            ref = nt[f"{cfg['name']}_{name}_{part}"]
            got = k(*args)
            # neural-tangents' ReLU formula, arctan2(sqrt(S11 S22 - S12^2), S12), loses
            # half the digits where two positions' correlation is exactly +-1: between
            # identical images, and on the sparse and stroke images (proportional
            # patches) also between different ones; kernelcomp snaps those to +-1
            # (test_neural_tangents_gap_is_its_formula shows that is the whole gap)
            if cfg["group"] == "small":
                assert relative_error(got[~same[part]], ref[~same[part]]) <= 1e-12, (name, part)
                assert relative_error(got, ref) <= 1e-8, (name, part)
            else:
                assert relative_error(got, ref) <= 1e-10, (name, part)
            # float32 inputs: float32 results (the float32 recursion for networks without
            # pooling or with global pooling, zero padding; else the float64 one)
            got32 = k(*(a.astype(np.float32) for a in args))
            assert got32.dtype == np.float32
            assert relative_error(got32, ref) <= 1e-6, (name, part)


def test_neural_tangents_gap_is_its_formula(nt):
    """On the sparse images, neural-tangents equals the naive recursion without the snap."""
    cfg = next(c for c in _nt_configs() if c["name"] == "flat_sparse")
    X, Y = nt["sparse_X"], nt["sparse_Y"]
    stds = {"weight_std": cfg["weight_std"], "bias_std": cfg["bias_std"]}
    ref = nt["flat_sparse_ntk_xy"]
    unsnapped = conv_gram(X, Y, cfg["layers"], snap=False, **stds)
    snapped = conv_gram(X, Y, cfg["layers"], snap=True, **stds)
    assert relative_error(unsnapped, ref) <= 1e-14
    assert relative_error(_kernel(kc.ConvNTK, cfg)(X, Y), snapped) <= 1e-14
    assert relative_error(snapped, ref) > 1e-13  # the fixture does exercise the gap


# ---------------------------------------------------------------- naive reference

ARCHS = [
    ["conv", "relu", "flatten", "dense"],
    ["conv", "relu", "conv", "relu", "avgpool", "conv", "relu", "global_avgpool", "dense"],
    ["conv", "erf", "conv5", "relu_unit", "global_avgpool", "dense", "relu", "dense"],
    ["relu", "conv", "relu", "avgpool3", "flatten", "dense", "erf", "dense"],
    ["conv", "relu", "avgpool", "avgpool", "flatten", "dense"],
    ["conv", "relu", "avgpool", "conv", "relu", "flatten", "dense"],
]


@pytest.mark.parametrize("layers", ARCHS, ids=lambda a: "-".join(a))
def test_matches_naive_recursion(layers, rng, dtype, tol):
    X = rng.standard_normal((3, 6, 6, 2)).astype(dtype)
    Y = np.abs(rng.standard_normal((2, 6, 6, 2))).astype(dtype)
    Y[1, :3] = 0.0  # zero-variance positions
    stds = {"weight_std": 1.3, "bias_std": 0.2}
    for cls, ntk in ((kc.ConvNTK, True), (kc.ConvNNGP, False)):
        k = cls(layers, **stds)
        got = k(X, Y)
        assert got.dtype == dtype
        ref = conv_gram(X, Y, layers, ntk=ntk, **stds)
        assert relative_error(got, ref) <= tol("gram")
        assert relative_error(k.diag(Y), np.diag(conv_gram(Y, Y, layers, ntk=ntk, **stds))) <= (
            tol("gram")
        )


#: the closed forms of the FC kernels beyond relu / relu_unit / erf
NEW_ACTIVATIONS = ["leaky_relu", "gelu", "elu", "linear"]


@pytest.mark.parametrize("act", NEW_ACTIVATIONS)
def test_activations_match_naive_recursion_and_fc_kernel(act, rng):
    """Every closed-form activation of kc.NTK, in both layouts and after the reduction.

    The reference integrates the activation itself (kernelcomp's quadrature route,
    40 x 40 nodes per sector), never the closed forms the core calls: exact to
    rounding for the piecewise-linear leaky_relu and linear, ~1e-11 absolute for the
    smooth gelu and elu at these variances (a few units); 1e-9 relative bounds both.
    """
    # offsets one by one (pool, flatten) with an activation after the reduction, and
    # all offsets at once (slab layout: global average pooling)
    archs = [
        ["conv", act, "avgpool", "conv", act, "flatten", "dense", act, "dense"],
        [act, "conv", act, "conv", act, "global_avgpool", "dense"],
    ]
    X = rng.standard_normal((2, 5, 5, 1))
    Y = np.abs(rng.standard_normal((2, 5, 5, 1)))
    Y[1, :2] = 0.0  # zero-variance positions
    stds = {"weight_std": 1.3, "bias_std": 0.2}
    for layers in archs:
        assert (kc.ConvNTK(layers)._program((5, 5, 1)).slab) == (layers[-2] == "global_avgpool")
        ref = np.array([[conv_kernel(x, y, layers, **stds) for y in Y] for x in X])
        ref_diag = np.array([conv_kernel(y, y, layers, **stds) for y in Y])
        for cls, part in ((kc.ConvNNGP, 0), (kc.ConvNTK, 1)):
            k = cls(layers, **stds)
            assert relative_error(k(X, Y), ref[..., part]) <= 1e-9, (layers, part)
            assert relative_error(k.diag(Y), ref_diag[:, part]) <= 1e-9, (layers, part)
            got32 = k(X.astype(np.float32), Y.astype(np.float32))
            assert got32.dtype == np.float32
            assert relative_error(got32, ref[..., part]) <= 1e-6
    # a 1 x 1 image with 1 x 1 convolutions is the FC network: kc.NTK's closed form
    Z = rng.standard_normal((4, 1, 1, 3))
    for cls, fc in ((kc.ConvNTK, kc.NTK), (kc.ConvNNGP, kc.NNGP)):
        conv = cls(["conv1", act, "conv1", act, "flatten", "dense"], weight_std=1.2, bias_std=0.3)
        ref = fc(depth=2, activation=act, weight_std=1.2, bias_std=0.3)(Z.reshape(4, 3))
        assert relative_error(conv(Z), ref) <= 1e-13


@pytest.mark.parametrize("layers", ARCHS[:4], ids=lambda a: "-".join(a))
def test_circular_padding_matches_naive_recursion(layers, rng):
    X = rng.standard_normal((3, 6, 6, 2))
    Y = np.abs(rng.standard_normal((2, 6, 6, 2)))
    stds = {"weight_std": 1.3, "bias_std": 0.2}
    for cls, ntk in ((kc.ConvNTK, True), (kc.ConvNNGP, False)):
        k = cls(layers, padding="circular", **stds)
        ref = conv_gram(X, Y, layers, ntk=ntk, padding="circular", **stds)
        assert relative_error(k(X, Y), ref) <= 1e-12
        zero = conv_gram(X, Y, layers, ntk=ntk, **stds)
        assert relative_error(zero, ref) > 1e-3  # the padding matters on 6 x 6 images


def test_circular_padding_makes_global_pooling_shift_invariant(rng):
    layers = ["conv", "relu", "conv", "relu", "global_avgpool", "dense"]
    X = rng.standard_normal((3, 7, 7, 1))
    shifted = np.roll(X, (2, -3), axis=(1, 2))
    circ = kc.ConvNTK(layers, padding="circular")
    K = circ(X, X)
    np.testing.assert_allclose(circ(X, shifted), K, rtol=1e-13, atol=0)
    np.testing.assert_allclose(circ(shifted, shifted), K, rtol=1e-13, atol=0)
    zero = kc.ConvNTK(layers)  # zero padding: the borders see the shift
    assert relative_error(zero(X, shifted), zero(X, X)) > 1e-3


def test_bad_padding():
    with pytest.raises(ValueError, match="padding must be one of"):
        kc.ConvNTK(["conv", "relu", "flatten", "dense"], padding="valid")
    with pytest.raises(ValueError, match="circular padding wraps"):
        kc.ConvNTK(["conv7", "relu", "flatten", "dense"], padding="circular",
                   image_shape=(5, 5, 1))


def test_per_layer_stds_and_no_bias(rng):
    layers = ["conv", "relu", "avgpool", "conv5", "relu", "flatten", "dense", "relu", "dense"]
    X = rng.standard_normal((2, 7, 6, 1))
    ws, bs = [1.1, 1.5, 0.9, 1.2], [0.3, None, 0.0, 0.4]
    got = kc.ConvNTK(layers, weight_std=ws, bias_std=bs)(X)
    ref = conv_gram(X, X, layers, weight_std=ws, bias_std=[b or 0.0 for b in bs])
    assert relative_error(got, ref) <= 1e-12


# ---------------------------------------------------------------- properties


def test_symmetry_diag_and_identical_images(rng, dtype):
    k = kc.ConvNTK.myrtle(5, image_shape=(8, 8, 1))
    X = rng.random((7, 8, 8, 1)).astype(dtype)
    K = k(X)
    assert (K == K.T).all()
    assert np.array_equal(np.diag(K), k.diag(X))
    # a copy of an image in Y reproduces the diagonal exactly; K(X, Y) = K(Y, X)^T
    Y = np.concatenate([X[3:5], rng.random((2, 8, 8, 1)).astype(dtype)])
    Kxy = k(X, Y)
    assert Kxy[3, 0] == K[3, 3] and Kxy[4, 1] == K[4, 4]
    np.testing.assert_allclose(Kxy, k(Y, X).T, rtol=1e-12 if dtype == np.float64 else 1e-6)
    # (pair(x, y) and pair(y, x) sum in other orders: equal to rounding, not bitwise)
    np.testing.assert_allclose(Kxy[:, :2], K[:, 3:5], rtol=1e-12 if dtype == np.float64 else 1e-6)
    assert np.linalg.eigvalsh(K.astype(np.float64)).min() > -1e-6 * K.max()


@pytest.fixture(scope="module")
def near_duplicates(nt):
    """Stroke images 28 x 28 (the fixtures'), near-duplicates of the first and a scaled copy."""
    X = np.concatenate([nt["mnist_X"], nt["mnist_Y"]])
    rng = np.random.default_rng(5)
    dups = [X[0] + eps * rng.standard_normal(X[0].shape) for eps in (1e-2, 1e-3, 1e-4, 1e-6)]
    return X, np.concatenate([dups, 1.5 * X[:1]])


def _check_float32_recursion(k, near_duplicates, distinct: float, near: float) -> None:
    """``k``'s float32 Gram of stroke images and near-duplicates against its float64 one.

    The float32 recursion runs; the Gram is finite, symmetric, its diagonal the
    per-sample values, within ``distinct`` (relative, entry by entry) of the float64
    recursion between distinct images and ``near`` against near-duplicates, and not
    the float64 kernel rounded; a copy of an image reproduces the diagonal;
    ``dtype=np.float64`` on float32 images runs the float64 recursion.
    """
    X, D = near_duplicates
    n = len(X)
    A32 = np.concatenate([X, D]).astype(np.float32)
    A = A32.astype(np.float64)  # the same images: the recursions' difference alone
    assert k._float32_recursion(k._program((28, 28, 1)), np.float32)
    K64 = k(A)
    K32 = k(A32)
    assert K32.dtype == np.float32 and np.all(np.isfinite(K32))
    assert np.array_equal(K32, K32.T)
    assert np.array_equal(np.diag(K32), k.diag(A32).astype(np.float32))
    rel = np.abs(K32 - K64) / K64
    assert rel[:n, :n].max() <= distinct, k
    assert rel[0, n:].max() <= near, (k, rel[0, n:])
    # it is a float32 recursion: not the float64 kernel rounded to float32
    assert not np.array_equal(K32, K64.astype(np.float32))
    # a copy of an image reproduces the diagonal exactly; K(X, Y) = K(Y, X)^T to rounding
    Kxy = k(A32[:3], A32[[0, 5, 2]])
    assert Kxy[0, 0] == K32[0, 0] and Kxy[2, 2] == K32[2, 2]
    np.testing.assert_allclose(k(A32[[0, 5, 2]], A32[:3]).T, Kxy, rtol=1e-6)
    # dtype=np.float64 on float32 images: the float64 recursion
    np.testing.assert_array_equal(k(A32[:3], dtype=np.float64), K64[:3, :3])


def test_float32_recursion_of_globally_pooled_networks(near_duplicates):
    """float32 Grams of Myrtle-5 run the float32 recursion, within its error analysis.

    Bounds (kernelcomp.convolutional, "Precision"): every entry carries a few float32
    roundings (u = 6e-8) per layer, so the NNGP, whose closed form has a bounded
    slope, is within ~1e-7 (asserted 1e-6); so is the NTK between distinct images.
    The NTK's Kdot has the slope 1/(2 pi theta) near rho = 1: where two images are
    nearly proportional an entry may be off by up to ~sqrt(2 u)/(2 pi) of Kdot
    (~1e-4 relative to Kdot >= 1/2), compounded over 4 ReLU layers ~4e-4 at worst;
    the pooled average of near-duplicates measures ~1e-5 (asserted 1e-4).
    """
    _check_float32_recursion(kc.ConvNNGP.myrtle(5), near_duplicates, 1e-6, 1e-6)
    _check_float32_recursion(kc.ConvNTK.myrtle(5), near_duplicates, 1e-6, 1e-4)


def test_float32_recursion_without_pooling(near_duplicates):
    """float32 Grams of a CNN without pooling run the float32 recursion, within its analysis.

    Bounds (kernelcomp.convolutional, "Precision"): the NNGP within ~1e-7 (asserted
    1e-6), the NTK between distinct images too, up to the positions where two stroke
    images' windows are nearly proportional (measured 2e-7, asserted 2e-6). Between
    near-duplicates nearly every position is: each ReLU layer's Kdot (>= 1/2) may be
    off by up to ~sqrt(4 u)/(2 pi) at every position (the snap at d = 2u; u = 2^-24),
    ~1.6e-4 relative, ~5e-4 over the 3 layers' products at worst (asserted; measured
    6e-5: the positions' errors have both signs).
    """
    layers = ["conv", "relu"] * 3 + ["flatten", "dense"]
    stds = {"weight_std": np.sqrt(2.0), "bias_std": 0.1}
    assert kc.ConvNTK(layers)._program((28, 28, 1)).diagonal_only
    _check_float32_recursion(kc.ConvNNGP(layers, **stds), near_duplicates, 1e-6, 1e-6)
    _check_float32_recursion(kc.ConvNTK(layers, **stds), near_duplicates, 2e-6, 5e-4)
    # float32 images ran diag_tiles (and its diag_block) compiled for float32 images
    # (the dispatcher Python calls: its callees' own dispatchers stay empty when it
    # loads from numba's cache; other tests may have compiled other signatures first:
    # membership, not equality)
    assert any(sig[0].dtype == numba.float32 for sig in _core.diag_tiles.signatures)


def test_float32_recursion_only_where_it_runs(rng):
    """The float32 recursion runs in the slab layout with zero padding and without pooling.

    Elsewhere (pooling before a flatten, circular padding) float64's.
    """
    X = rng.random((3, 7, 7, 1))  # rows of 7 + 2: padded to 16 in float32
    gap = ["conv", "relu", "conv", "relu", "global_avgpool", "dense"]
    flat = ["conv", "relu", "conv", "relu", "flatten", "dense"]
    cases = [
        (kc.ConvNTK(gap, bias_std=0.3), True),  # (biases: the padded columns must stay zero)
        (kc.ConvNTK(gap, padding="circular"), False),
        (kc.ConvNTK(["conv", "relu", "avgpool", "conv", "relu", "flatten", "dense"]), False),
        (kc.ConvNTK(flat, bias_std=0.3), True),
        (kc.ConvNTK(flat, padding="circular"), False),
        # a pool of size 1: the spatial diagonal in two stages (the offset walk)
        (kc.ConvNTK(["conv", "relu", "avgpool1", "conv", "relu", "flatten", "dense"]), False),
    ]
    for k, f32 in cases:
        assert k._float32_recursion(k._program((7, 7, 1)), np.float32) == f32
        assert not k._float32_recursion(k._program((7, 7, 1)), np.float64)
        got = k(X.astype(np.float32))
        ref = k(X.astype(np.float32).astype(np.float64))
        if not f32:  # the float64 recursion, rounded to float32
            np.testing.assert_array_equal(got, ref.astype(np.float32))
        else:
            assert relative_error(got, ref) <= 1e-6


def test_flattened_rows_are_c_order_images(rng):
    X = rng.standard_normal((4, 5, 6, 3))
    k = kc.ConvNNGP(["conv", "relu", "avgpool", "global_avgpool", "dense"], image_shape=(5, 6, 3))
    np.testing.assert_array_equal(k(X.reshape(4, -1)), k(X))
    np.testing.assert_array_equal(k(X.reshape(4, -1), X[:2]), k(X, X[:2]))
    assert k.n_features_in == 90
    # another layout (channels first) is another kernel
    Xt = X.transpose(0, 3, 1, 2).reshape(4, -1)
    assert not np.allclose(k(Xt), k(X))


def test_threads_do_not_change_values(rng):
    k = kc.ConvNTK(["conv", "relu", "avgpool", "conv", "relu", "global_avgpool", "dense"])
    X = rng.standard_normal((9, 6, 6, 1))
    np.testing.assert_array_equal(k(X, n_jobs=1), k(X, n_jobs=2))


#: networks without pooling (the spatial diagonal alone, whole blocks of pairs per call):
#: mixed filter sizes (a frame wider than a 3 x 3 filter's), activations after the flatten
DIAGONAL_ARCHS = [
    ["conv", "relu"] * 3 + ["flatten", "dense"],
    ["conv5", "erf", "conv", "relu_unit", "conv", "flatten", "dense", "relu", "dense"],
    ["relu", "flatten", "dense"],  # no convolution: the tangent stays the zero it starts as
]


@pytest.mark.parametrize("layers", DIAGONAL_ARCHS, ids=["cnn3", "mixed", "no-conv"])
def test_no_pooling_blocks_reuse_their_scratch_exactly(layers, rng, dtype, tol):
    """Each pair of a Gram equals the same pair computed alone, bit for bit, in every tile.

    The blocks of pairs (32 x 32 per call) reuse one scratch between pairs: a pair
    computed after others (n = 70: three tile rows, the last partial, off-diagonal
    and diagonal blocks, X against Y) must not see anything of the pairs before
    (float32: nor the float32 ReLU factors of the block's other samples).
    Images of very different scales and zero patches make stale entries visible.
    """
    X = rng.standard_normal((70, 7, 6, 2)) * rng.uniform(0.1, 10.0, (70, 1, 1, 1))
    X[::5, 2:5] = 0.0
    Y = np.abs(rng.standard_normal((37, 7, 6, 2)))
    Y[3] = X[41]
    X = X.astype(dtype)
    Y = Y.astype(dtype)
    k = kc.ConvNTK(layers, weight_std=1.3, bias_std=0.2)
    K = k(X)
    Kxy = k(X, Y)
    assert (K == K.T).all()
    assert np.array_equal(np.diag(K), k.diag(X))
    assert Kxy[41, 3] == K[41, 41]  # a copy of an image reproduces its diagonal exactly
    pick = rng.integers(0, 70, (60, 2))
    for i, j in pick:
        i, j = min(i, j), max(i, j)  # the Gram computes pair (i, j), i <= j, and mirrors it
        assert k(X[i : i + 1], X[j : j + 1])[0, 0] == K[i, j], (i, j)
    for i, j in zip(pick[:40, 0], pick[:40, 1] % 37, strict=True):
        assert k(X[i : i + 1], Y[j : j + 1])[0, 0] == Kxy[i, j], (i, j)
    np.testing.assert_array_equal(k(X, n_jobs=1), k(X, n_jobs=2))
    np.testing.assert_array_equal(k(X, Y, n_jobs=1), Kxy)
    # and the values are the recursion's
    ref = conv_gram(X[:4], Y[:3], layers, weight_std=1.3, bias_std=0.2)
    assert relative_error(Kxy[:4, :3], ref) <= tol("gram")


def test_no_pooling_uses_the_spatial_diagonal_only():
    k = kc.ConvNTK(["conv", "relu"] * 3 + ["flatten", "dense"])
    assert k._program((28, 28, 1)).diagonal_only
    assert not kc.ConvNTK.myrtle(5)._program((28, 28, 1)).diagonal_only
    # a pool before a flatten needs the offsets |u|, |v| <= 1 only
    prog = kc.ConvNTK(["conv", "relu", "avgpool", "flatten", "dense"])._program((8, 8, 1))
    assert prog.stages[0, 4:6].tolist() == [1, 1]


def test_description_equality_and_pickle():
    k = kc.ConvNTK.myrtle(7, image_shape=(16, 16, 3), bias_std=0.1)
    desc = json.loads(json.dumps(k.to_dict()))
    assert desc["kernel"] == "ConvNTK"
    assert kc.convolutional._ConvKernel.from_dict(desc) == k
    # every parameter survives the description (a Gram file's resume rebuilds the kernel)
    circ = kc.ConvNNGP(["conv", "elu", "global_avgpool", "dense"], padding="circular")
    assert kc.convolutional._ConvKernel.from_dict(json.loads(json.dumps(circ.to_dict()))) == circ
    assert pickle.loads(pickle.dumps(k)) == k
    assert hash(k) == hash(kc.ConvNTK.myrtle(7, image_shape=(16, 16, 3), bias_std=0.1))
    assert k != kc.ConvNNGP.myrtle(7, image_shape=(16, 16, 3), bias_std=0.1)
    assert kc.ConvNTK(["CONV", "Relu", "flatten", "dense"]).layers == (
        "conv", "relu", "flatten", "dense")


def test_myrtle_layers():
    layers = kc.ConvNTK.myrtle(5).layers
    assert layers == ("conv", "relu", "conv", "relu", "avgpool", "conv", "relu", "avgpool",
                      "conv", "relu", "global_avgpool", "dense")
    assert kc.ConvNTK.myrtle(10).layers.count("conv") == 9
    assert kc.ConvNTK.myrtle(5).weight_std == pytest.approx(2**0.5)
    with pytest.raises(ValueError, match="depth must be one of"):
        kc.ConvNTK.myrtle(6)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        (["conv", "tanh", "flatten", "dense"], ValueError, "unknown layer 'tanh' at layers"),
        (["conv4", "relu", "flatten", "dense"], ValueError, "odd filter size"),
        (["conv", "relu", "dense"], ValueError, "exactly once"),
        (["conv", "flatten", "global_avgpool", "dense"], ValueError, "exactly once"),
        (["conv", "dense", "flatten", "dense"], ValueError, "before the reduction"),
        (["flatten", "conv", "dense"], ValueError, "after the reduction"),
        (["conv", "relu", "flatten"], ValueError, "last layer must be 'dense'"),
        ([], ValueError, "layers is empty"),
        (["conv", 3, "flatten", "dense"], TypeError, r"layers\[1\] must be a string"),
        ("conv relu flatten dense", TypeError, "layers must be a list"),
    ],
)
def test_bad_layer_lists(layers, error, match):
    with pytest.raises(error, match=match):
        kc.ConvNTK(layers)


def test_unknown_activation_lists_the_closed_forms():
    with pytest.raises(ValueError, match=r"unknown layer 'tanh'.*'leaky_relu'.*'gelu', 'elu'"):
        kc.ConvNTK(["conv", "tanh", "flatten", "dense"])


def test_overflow_is_refused_with_one_line(rng):
    X = rng.standard_normal((3, 5, 5, 1))
    # ELU's factors e^S overflow from variances of ~350 (here ~900 after the first conv)
    k = kc.ConvNTK(["conv", "elu", "conv", "elu", "global_avgpool", "dense"], weight_std=40.0)
    with pytest.raises(ValueError, match=r"overflows on these inputs.*ELU's closed form holds"):
        k(X)
    with pytest.raises(ValueError, match=r"overflows on these inputs.*ELU's closed form holds"):
        kc.ConvNNGP(k.layers, weight_std=40.0)(X[:1], X)
    assert np.isfinite(kc.ConvNTK(k.layers, weight_std=3.0)(X)).all()
    # any activation: a float64 overflow of the recursion
    with pytest.raises(ValueError, match=r"overflows on these inputs: the recursion of 3 of 3"):
        kc.ConvNTK(["conv", "relu"] * 3 + ["flatten", "dense"], weight_std=1e110)(X)


def test_bad_stds():
    with pytest.raises(ValueError, match="one value per conv/dense layer"):
        kc.ConvNTK(["conv", "relu", "flatten", "dense"], weight_std=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="weight_std"):
        kc.ConvNTK(["conv", "relu", "flatten", "dense"], weight_std=-1.0)


def test_bad_image_shapes(rng):
    k = kc.ConvNTK.myrtle(5)
    with pytest.raises(ValueError, match=r"add a channel axis with X\[..., None\]"):
        k(rng.random((2, 8, 8)))
    with pytest.raises(ValueError, match="no image_shape"):
        k(rng.random((2, 64)))
    with pytest.raises(ValueError, match="cannot pool a 1x1 image"):
        k(rng.random((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="cannot pool"):
        kc.ConvNTK.myrtle(5, image_shape=(3, 3, 1))
    with pytest.raises(ValueError, match=r"image_shape must be \(height, width, channels\)"):
        kc.ConvNTK.myrtle(5, image_shape=(8, 8))
    k8 = kc.ConvNTK.myrtle(5, image_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="X has 63 features, but 64 are expected"):
        k8(rng.random((2, 63)))
    with pytest.raises(ValueError, match=r"Y holds images of shape \(8, 8, 2\), but \(8, 8, 1\)"):
        k8(rng.random((2, 8, 8, 1)), rng.random((2, 8, 8, 2)))
    with pytest.raises(ValueError, match="X contains NaN"):
        k8(np.full((2, 8, 8, 1), np.nan))


# ---------------------------------------------------------------- driver, files, estimators


def test_gram_blocks_into_hdf5_with_resume(rng, tmp_path):
    h5py = pytest.importorskip("h5py")
    k = kc.ConvNTK(["conv", "relu", "avgpool", "conv", "relu", "global_avgpool", "dense"],
                   image_shape=(8, 8, 1), bias_std=0.1)
    X = rng.random((40, 64))
    ref = k(X)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        ds = f.create_dataset("K", shape=(40, 40), dtype="f8")
        kc.gram(k, X, out=ds, block_rows=7, progress=True, n_jobs=2)
        np.testing.assert_array_equal(ds[()], ref)
    # an interrupted file computation resumes and gives the same matrix
    path = tmp_path / "gram.h5"
    with pytest.raises(kc.io.GramInterrupted):
        kc.io.compute_gram_file(k, X, None, path, block_rows=8, should_stop=lambda: True)
    info = kc.io.compute_gram_file(k, X, None, path, block_rows=8, resume=True)
    np.testing.assert_array_equal(kc.io.load_gram(path), ref)
    assert info.kernel == k


def test_estimator_and_diagnostics_take_the_kernel(rng):
    from sklearn.kernel_ridge import KernelRidge

    k = kc.ConvNTK(["conv", "relu", "avgpool", "global_avgpool", "dense"], image_shape=(6, 6, 1))
    X = rng.random((30, 36))
    y = X[:, :18].sum(1) - X[:, 18:].sum(1)
    reg = kc.NTKRegressor(kernel=k, alpha=1e-3).fit(X[:20], y[:20])
    ref = KernelRidge(alpha=1e-3, kernel="precomputed").fit(k(X[:20]), y[:20])
    np.testing.assert_allclose(reg.predict(X[20:]), ref.predict(k(X[20:], X[:20])), rtol=1e-8)
    ev = kc.diagnostics.kernel_pca(kc.gram(k, X), n_components=5)
    assert ev.eigenvalues.shape == (5,)


@pytest.mark.slow
def test_large_gram_in_a_subprocess():
    """n = 20000 small images (float32, the symmetric Gram): no crash, symmetric, exact diagonal."""
    code = textwrap.dedent(
        """
        import numpy as np, kernelcomp as kc
        X = np.random.default_rng(0).random((20000, 4, 4, 1), dtype=np.float32)
        k = kc.ConvNTK(["conv", "relu", "flatten", "dense"], bias_std=0.1)  # O(HW) per pair
        K = kc.gram(k, X, progress=False)
        assert K.dtype == np.float32 and K.shape == (20000, 20000)
        idx = np.random.default_rng(1).integers(0, 20000, 50)
        assert (K[idx][:, idx] == K[idx][:, idx].T).all()
        assert np.array_equal(np.diag(K)[idx], k.diag(X[idx]))
        np.testing.assert_allclose(K[idx][:, idx], k(X[idx]), rtol=1e-6)
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=3600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")
