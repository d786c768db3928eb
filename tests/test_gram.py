"""The Gram driver: outputs, blocks, progress, threads and validation."""

from __future__ import annotations

from typing import ClassVar

import h5py
import numba
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp._base import Kernel
from kernelcomp._gram import iter_gram_blocks
from kernelcomp._parallel import n_jobs_context, resolve_n_jobs


@pytest.fixture
def X(rng):
    return rng.standard_normal((57, 4))


def test_out_array_is_filled_and_returned(X):
    k = kc.NTK(depth=2)
    ref = k(X)
    out = np.full((57, 57), np.nan)
    res = kc.gram(k, X, out=out)
    assert res is out and np.array_equal(out, ref)
    # float32 output of float64 inputs: written by blocks, cast on store
    out32 = np.empty((57, 57), dtype=np.float32)
    kc.gram(k, X, out=out32, block_rows=10)
    assert np.allclose(out32, ref, rtol=1e-6)
    # a non-contiguous view works too
    big = np.zeros((57, 80))
    kc.gram(k, X, out=big[:, :57])
    assert np.array_equal(big[:, :57], ref) and not big[:, 57:].any()


@pytest.mark.parametrize("symmetric", [True, False])
def test_out_of_core_into_hdf5(tmp_path, X, symmetric):
    k = kc.NNGP(depth=3, bias_std=0.3)
    Y = None if symmetric else X[:31] * 0.5
    ref = k(X, Y)
    with h5py.File(tmp_path / "K.h5", "w") as f:
        dset = f.create_dataset("K", shape=ref.shape, dtype="f8", chunks=(16, 16))
        res = kc.gram(k, X, Y, out=dset, block_rows=16)
        assert res is dset
    with h5py.File(tmp_path / "K.h5", "r") as f:
        assert np.array_equal(f["K"][...], ref)


def test_positional_options_follow_the_documented_order(X):
    k = kc.NTK()
    assert kc.gram(k, X, None, "float32").dtype == np.float32
    assert np.array_equal(kc.gram(k, X, None, None, 1), k(X))


def test_progress_bar(capsys, X):
    k = kc.NTK()
    K = kc.gram(k, X, progress=True, block_rows=20)
    assert np.array_equal(K, k(X))
    err = capsys.readouterr().err
    assert "NTK Gram" in err and "57/57" in err


def test_iter_gram_blocks_skip_and_cover(X):
    k = kc.NTK(depth=1)
    ref = k(X)
    out = np.full_like(ref, np.nan)
    blocks = list(iter_gram_blocks(k, X, block_rows=10, skip={2}))
    assert [b.index for b in blocks] == [0, 1, 3, 4, 5]
    for b in blocks:
        for key, value in b.writes:
            out[key] = value
    rows = slice(20, 30)
    # rows 20..29 are only missing where block 2 alone writes them
    assert np.isnan(out[rows, 20:]).all()
    assert np.array_equal(out[rows, :20], ref[rows, :20])
    for b in iter_gram_blocks(k, X, block_rows=10, skip={0, 1, 3, 4, 5}):
        for key, value in b.writes:
            out[key] = value
    assert np.array_equal(out, ref)


def test_input_layouts_give_the_same_result(X):
    k = kc.NTK(depth=2)
    ref = k(X)
    assert np.array_equal(k(np.asfortranarray(X)), ref)
    wide = np.zeros((57, 8))
    wide[:, ::2] = X
    assert np.array_equal(k(wide[:, ::2]), ref)
    ro = X.copy()
    ro.setflags(write=False)
    assert np.array_equal(k(ro), ref)


class _ThreadProbe(Kernel):
    """A trivial linear kernel that records numba's thread count when it runs."""

    seen: ClassVar[list[int]] = []

    def _prepare(self, X):
        return X

    def _take(self, prep, start, stop):
        return prep[start:stop]

    def _fill(self, px, py, out, symmetric):
        type(self).seen.append(numba.get_num_threads())
        np.matmul(px, py.T, out=out)

    def _diag(self, px):
        return np.einsum("ij,ij->i", px, px)


def test_n_jobs_is_honoured_and_restored(X):
    before = numba.get_num_threads()
    probe = _ThreadProbe()
    _ThreadProbe.seen.clear()
    K = kc.gram(probe, X, n_jobs=1)
    assert np.allclose(K, X @ X.T)
    assert _ThreadProbe.seen == [1]
    assert numba.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        with n_jobs_context(1):
            raise ZeroDivisionError
    assert numba.get_num_threads() == before
    top = numba.config.NUMBA_NUM_THREADS
    assert resolve_n_jobs(None) == resolve_n_jobs(-1) == top
    assert resolve_n_jobs(10**6) == top
    assert resolve_n_jobs(np.int64(1)) == 1


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n_jobs=0), ValueError, "n_jobs must be a non-zero integer"),
        (dict(n_jobs=-1000), ValueError, "leaves no thread"),
        (dict(n_jobs=1.5), TypeError, "n_jobs must be an int or None"),
        (dict(dtype="int32"), ValueError, "dtype must be float32, float64 or None"),
        (dict(dtype="banana"), TypeError, "dtype must be float32, float64 or None"),
        (dict(out=np.empty((3, 3))), ValueError, r"out has shape \(3, 3\)"),
        (dict(out=np.empty((57, 57), dtype=int)), TypeError, "out must be a floating array"),
        (dict(out=[[0.0]]), TypeError, "out must be a numpy array or an h5py dataset"),
        (dict(block_rows=0), ValueError, "block_rows must be >= 1"),
    ],
)
def test_driver_errors(X, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kc.gram(kc.NTK(), X, **kwargs)


def test_read_only_out_and_bad_kernel(X):
    out = np.empty((57, 57))
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        kc.gram(kc.NTK(), X, out=out)
    with pytest.raises(TypeError, match="kernel must be a kernelcomp kernel"):
        kc.gram(lambda a, b: a @ b.T, X)
