"""Property tests (hypothesis) of the analytic kernels and the Gram driver."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kernelcomp as kc
import kernelcomp.kernels as kernels_module
from tests.naive import relative_error

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# tiny magnitudes are flushed to 0: their kernel values underflow float32's range
finite = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False, width=64).map(
    lambda v: 0.0 if abs(v) < 1e-3 else v
)


@st.composite
def samples(draw, max_rows=40, max_d=6):
    d = draw(st.integers(1, max_d))
    n = draw(st.integers(1, max_rows))
    X = draw(arrays(np.float64, (n, d), elements=finite))
    # duplicated rows and zero rows are part of the domain
    if n > 2 and draw(st.booleans()):
        X[-1] = X[0]
    if n > 3 and draw(st.booleans()):
        X[1] = 0.0
    return X


kernels = st.builds(
    lambda cls, depth, act, w, b: cls(depth=depth, activation=act, weight_std=w, bias_std=b),
    st.sampled_from([kc.NTK, kc.NNGP]),
    st.integers(0, 4),
    st.sampled_from(["relu", "erf"]),
    st.floats(0.5, 2.0),
    st.sampled_from([0.0, 0.1, 0.7]),
)


@SETTINGS
@given(X=samples(), k=kernels)
def test_symmetric_psd_and_finite(X, k):
    K = k(X)
    assert np.isfinite(K).all()
    assert np.array_equal(K, K.T)
    assert np.array_equal(np.diag(K), k.diag(X))
    eig = np.linalg.eigvalsh(K)
    assert eig[0] >= -1e-10 * max(eig[-1], 1e-300)


@SETTINGS
@given(X=samples(), Y=samples(max_rows=15), k=kernels)
def test_cross_gram_is_transposed_and_consistent(X, Y, k):
    Y = Y[:, : X.shape[1]] if Y.shape[1] >= X.shape[1] else np.resize(Y, (Y.shape[0], X.shape[1]))
    Y = np.ascontiguousarray(Y)
    assert np.array_equal(k(X, Y), k(Y, X).T)
    # the cross path on (X, X) equals the symmetric path bit for bit
    assert np.array_equal(k(X, X), k(X))


@SETTINGS
@given(X=samples(), k=kernels, seed=st.integers(0, 2**32 - 1))
def test_permutation_equivariance(X, k, seed):
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    assert np.array_equal(k(X[perm]), k(X)[np.ix_(perm, perm)])


@SETTINGS
@given(X=samples(max_rows=70), k=kernels, tile=st.sampled_from([1, 3, 16, 64]),
       block=st.integers(1, 80))
def test_tile_block_and_thread_invariance(X, k, tile, block):
    ref = k(X, n_jobs=1)
    old = kernels_module.CPU_TILE
    kernels_module.CPU_TILE = tile
    try:
        assert np.array_equal(k(X, n_jobs=2), ref)
        assert np.array_equal(k(X, X[::-1], n_jobs=2), ref[:, ::-1])
    finally:
        kernels_module.CPU_TILE = old
    assert np.array_equal(kc.gram(k, X, block_rows=block), ref)
    assert np.array_equal(kc.gram(k, X, X[:5], block_rows=block), ref[:, :5])


@SETTINGS
@given(X=samples(), k=kernels)
def test_float32_close_to_float64(X, k):
    X32 = X.astype(np.float32)
    K32 = k(X32)
    assert K32.dtype == np.float32
    assert relative_error(K32, k(X32.astype(np.float64))) <= 2e-6


@pytest.mark.parametrize("d", [3, 100])  # fused and BLAS dot products
def test_large_thread_and_tile_invariance(rng, d):
    X = rng.standard_normal((333, d))
    k = kc.NTK(depth=3, bias_std=0.2)
    ref = k(X, n_jobs=1)
    old = kernels_module.CPU_TILE
    try:
        for tile in (5, 64, 200):
            kernels_module.CPU_TILE = tile
            assert np.array_equal(k(X, n_jobs=2), ref)
    finally:
        kernels_module.CPU_TILE = old
    for block in (1, 37, 100):
        blocked = kc.gram(k, X, block_rows=block)
        if d <= kernels_module.FUSED_MAX_FEATURES:
            assert np.array_equal(blocked, ref)
        else:
            # BLAS sums a block's dot products in its own order: within an ulp or so
            assert relative_error(blocked, ref) <= 4 * np.finfo(np.float64).eps
            assert np.array_equal(blocked, blocked.T)
