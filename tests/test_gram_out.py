"""kc.gram(..., out=): which output dtypes are accepted, and what they hold."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import kernelcomp as kc


@pytest.fixture
def X(rng):
    return rng.standard_normal((37, 4))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, bool, np.complex128])
def test_non_floating_out_array_is_refused(X, dtype):
    out = np.zeros((37, 37), dtype=dtype)
    with pytest.raises(TypeError, match=r"out must be a floating array, got dtype"):
        kc.gram(kc.NTK(), X, out=out)
    assert not out.any()  # nothing written


@pytest.mark.parametrize("dtype", ["i8", "u1", "?"])
def test_non_floating_out_dataset_is_refused(tmp_path, X, dtype):
    with h5py.File(tmp_path / "K.h5", "w") as f:
        dset = f.create_dataset("K", shape=(37, 37), dtype=dtype)
        with pytest.raises(TypeError, match=r"out must be a floating array, got dtype"):
            kc.gram(kc.NTK(), X, out=dset)


def test_float32_out_of_a_float64_gram_holds_the_rounded_values(tmp_path, X):
    k = kc.NTK(depth=2)
    ref = kc.gram(k, X)
    assert ref.dtype == np.float64
    out = np.full((37, 37), np.nan, dtype=np.float32)
    assert kc.gram(k, X, out=out) is out
    np.testing.assert_array_equal(out, ref.astype(np.float32))  # computed in float64, cast
    with h5py.File(tmp_path / "K.h5", "w") as f:
        dset = f.create_dataset("K", shape=(37, 37), dtype="f4")
        kc.gram(k, X, out=dset, block_rows=10)
        np.testing.assert_array_equal(dset[()], ref.astype(np.float32))


def test_float64_out_of_a_float32_gram_holds_the_float32_values(X):
    k = kc.NNGP()
    X32 = X.astype(np.float32)
    ref = kc.gram(k, X32)
    assert ref.dtype == np.float32
    out = np.empty((37, 37))
    kc.gram(k, X32, out=out)
    np.testing.assert_array_equal(out, ref.astype(np.float64))


def test_dtype_argument_chooses_the_computation_dtype(X):
    k = kc.NTK()
    out = np.empty((37, 37), dtype=np.float32)
    kc.gram(k, X, dtype="float32", out=out)
    np.testing.assert_array_equal(out, kc.gram(k, X.astype(np.float32)))
