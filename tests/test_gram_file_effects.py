"""Every documented parameter, attribute and boundary of the Gram file writer, pinned.

One test per documented effect of :func:`kernelcomp.io.compute_gram_file`,
:func:`~kernelcomp.io.save_gram`, :func:`~kernelcomp.io.read_gram_info`,
:func:`~kernelcomp.io.load_gram` and :func:`~kernelcomp.io.hash_inputs`, each
against an independent oracle: the in-memory Gram of the same kernel, the file
read back with plain h5py, or a hand computation (SHA-256 of the bytes, the
row counts of the blocks). The messages are matched whole: each names the file,
what was found and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import pickle
import re

import h5py
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import io
from kernelcomp.io import _gram_file
from tests.gram_blocks import record_skips

SLACK = 1 << 20  # bytes the writer reserves beyond the matrix (metadata, record)


def _X(n: int, d: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _interrupt(path, kernel, X, Y=None, *, block_rows, after=1, **kw):
    """A partial file with the first ``after`` row blocks stored; its path."""
    polls = iter(range(1, 10**6))
    with pytest.raises(io.GramInterrupted):
        io.compute_gram_file(kernel, X, Y, path, block_rows=block_rows,
                             should_stop=lambda: next(polls) >= after, **kw)
    return path.with_name(path.name + ".partial")


class _Opaque(kc.NTK):
    """A kernel that cannot describe itself as JSON (as a network kernel of a foreign engine)."""

    def to_dict(self):
        raise NotImplementedError("no JSON")


class _LongRepr(_Opaque):
    def __repr__(self) -> str:
        return "L" * 2500


# -- hash_inputs ---------------------------------------------------------------------------
def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return "sha256:" + h.hexdigest()


def test_hash_inputs_is_the_sha256_of_dtype_shape_and_bytes_of_each_input():
    X = _X(4, 3)
    Y = _X(2, 3, seed=1).astype(np.float32)
    x_part = f"{X.dtype.str}{X.shape};".encode() + X.tobytes()
    y_part = f"{Y.dtype.str}{Y.shape};".encode() + Y.tobytes()
    assert io.hash_inputs(X) == _sha(x_part, b"none;")
    assert io.hash_inputs(X, Y) == _sha(x_part, y_part)
    # the layout in memory does not count: a Fortran-ordered copy has the same hash
    assert io.hash_inputs(np.asfortranarray(X)) == io.hash_inputs(X)
    assert io.hash_inputs(X[:, ::-1][:, ::-1]) == io.hash_inputs(X)


def a_hash(X, Y, dtype):
    """The input hash of ``X, Y`` in the Gram's dtype."""
    return io.hash_inputs(X.astype(dtype), None if Y is None else Y.astype(dtype))


# -- what a file records -------------------------------------------------------------------
@pytest.mark.parametrize("cross", [False, True])
def test_compute_gram_file_records_its_request_in_the_attributes(tmp_path, dtype, cross):
    X = _X(70)
    Y = _X(30, seed=2) if cross else None
    k = kc.NNGP(depth=2, bias_std=0.2)
    out = tmp_path / "K.h5"
    info = io.compute_gram_file(k, X, Y, out, dtype=np.dtype(dtype).name, block_rows=32,
                                inputs={"X": "x.npy"})
    m = 30 if cross else 70
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert json.loads(a["kernel"]) == k.to_dict()
        assert a["kernel_fingerprint"] == "sha256:" + hashlib.sha256(
            a["kernel"].encode()).hexdigest()
        assert a["input_hash"] == io.hash_inputs(X.astype(dtype), None if Y is None
                                                 else Y.astype(dtype))
        assert a["dtype"] == np.dtype(dtype).name
        assert a["shape"].dtype == np.int64 and a["shape"].tolist() == [70, m]
        assert bool(a["symmetric"]) is (not cross)
        assert int(a["block_rows"]) == 32 and int(a["n_blocks"]) == 3
        assert bool(a["complete"]) is True
        assert json.loads(a["inputs"]) == {"X": "x.npy"}
        assert f["completed_blocks"].dtype == np.uint8
        assert f["completed_blocks"][()].tolist() == [1, 1, 1]
        assert f["gram"].dtype == dtype
        np.testing.assert_array_equal(f["gram"][()], k(X, Y, dtype=dtype))
    assert info.path == out and info.shape == (70, m) and info.dtype == dtype
    assert info.symmetric is (not cross) and info.kernel == k
    assert (info.block_rows, info.n_blocks, info.blocks_done) == (32, 3, 3)
    assert info.complete is True and info.inputs == {"X": "x.npy"}
    assert info.input_hash == a_hash(X, Y, dtype)
    assert info.attrs["kernel_fingerprint"].startswith("sha256:")


def test_a_partial_file_records_the_stored_blocks_and_is_not_complete(tmp_path):
    X = _X(250)
    partial = _interrupt(tmp_path / "K.h5", kc.NTK(), X, block_rows=100, after=2)
    with h5py.File(partial, "r") as f:
        assert f["completed_blocks"][()].tolist() == [1, 1, 0]
        assert bool(f.attrs["complete"]) is False
        assert int(f.attrs["n_blocks"]) == 3
        np.testing.assert_array_equal(f["gram"][:200], kc.NTK()(X)[:200])
    info = io.read_gram_info(partial)
    assert (info.complete, info.blocks_done, info.n_blocks) == (False, 2, 3)


def test_file_info_of_a_gram_file_lists_every_field(tmp_path):
    X, Y = _X(20), _X(7, seed=1)
    k = kc.NTK(depth=2)
    io.compute_gram_file(k, X, Y, tmp_path / "K.h5", dtype="float32", inputs={"X": "a"})
    g = io.file_info(tmp_path / "K.h5")
    assert g["shape"] == [20, 7] and g["dtype"] == "float32"
    assert g["symmetric"] is False and g["complete"] is True and g["blocks"] == "1/1"
    assert g["kernel"] == k.to_dict() and g["inputs"] == {"X": "a"}
    assert g["input_hash"] == a_hash(X, Y, np.float32)
    partial = _interrupt(tmp_path / "P.h5", k, _X(30), block_rows=10, after=1)
    p = io.file_info(partial)
    assert p["blocks"] == "1/3" and p["complete"] is False and p["symmetric"] is True
    assert p["dtype"] == "float64"


# -- kernels that cannot describe themselves -----------------------------------------------
def test_a_kernel_without_json_is_recorded_by_its_class_repr_and_pickle(tmp_path):
    X = _X(20)
    k = _Opaque(depth=2)
    info = io.compute_gram_file(k, X, None, tmp_path / "K.h5")
    assert info.kernel_desc == {"kernel": "_Opaque", "params": None, "repr": repr(k)}
    assert info.kernel is None
    fingerprint = "sha256:" + hashlib.sha256(pickle.dumps(k, protocol=4)).hexdigest()
    assert info.attrs["kernel_fingerprint"] == fingerprint
    np.testing.assert_array_equal(io.load_gram(tmp_path / "K.h5"), kc.NTK(depth=2)(X))
    # resume recognises the same kernel by its pickle, and refuses another one
    partial = _interrupt(tmp_path / "R.h5", k, _X(30), block_rows=10)
    with pytest.raises(io.FormatError, match=r"another kernel \(\{\"kernel\": \"_Opaque\""):
        io.compute_gram_file(_Opaque(depth=3), _X(30), None, tmp_path / "R.h5", resume=True)
    done = io.compute_gram_file(_Opaque(depth=2), _X(30), None, tmp_path / "R.h5", resume=True)
    assert done.complete and not partial.exists()
    # the description keeps the first 2000 characters of a long repr
    long = io.compute_gram_file(_LongRepr(), X, None, tmp_path / "L.h5")
    assert long.kernel_desc["repr"] == "L" * 2000


def test_an_unpicklable_kernel_without_json_is_fingerprinted_by_its_class_name(tmp_path):
    k = _Opaque(depth=2)
    k.hook = lambda: None  # a lambda cannot be pickled
    info = io.compute_gram_file(k, _X(10), None, tmp_path / "K.h5")
    assert info.attrs["kernel_fingerprint"] == (
        "sha256:" + hashlib.sha256(b"_Opaque").hexdigest()
    )


def test_gram_info_rebuilds_analytic_and_convolutional_kernels_only(tmp_path):
    K = np.eye(3)
    for kernel in (kc.NTK(depth=3, bias_std=0.1), kc.NNGP(activation="erf"),
                   kc.ConvNTK(["conv", "relu", "global_avgpool", "dense"]),
                   kc.ConvNNGP(["conv", "erf", "flatten", "dense"])):
        io.save_gram(tmp_path / "K.h5", K, kernel=kernel, force=True)
        assert io.read_gram_info(tmp_path / "K.h5").kernel == kernel
    net = kc.FCNetwork.init(3, [4], seed=0)
    io.save_gram(tmp_path / "E.h5", K, kernel=kc.EmpiricalNTK(net))
    assert io.read_gram_info(tmp_path / "E.h5").kernel is None


# -- save_gram ----------------------------------------------------------------------------
def test_save_gram_records_symmetry_hash_and_a_single_block(tmp_path):
    A = _X(5, 5)
    S = A + A.T
    io.save_gram(tmp_path / "S.h5", S)
    io.save_gram(tmp_path / "A.h5", A)
    X = _X(5, 2).astype(np.float32)
    io.save_gram(tmp_path / "C.h5", S, X=X, Y=X)  # a cross Gram, even if it is symmetric
    assert io.read_gram_info(tmp_path / "S.h5").symmetric is True
    assert io.read_gram_info(tmp_path / "A.h5").symmetric is False
    c = io.read_gram_info(tmp_path / "C.h5")
    assert c.symmetric is False
    # the inputs are hashed in the matrix's dtype, as compute_gram_file hashes them
    assert c.input_hash == io.hash_inputs(X.astype(np.float64), X.astype(np.float64))
    with h5py.File(tmp_path / "S.h5", "r") as f:
        assert int(f.attrs["block_rows"]) == 5 and int(f.attrs["n_blocks"]) == 1
        assert f["completed_blocks"][()].tolist() == [1]
        assert f.attrs["kernel"] == "{}" and f.attrs["kernel_fingerprint"] == ""
        assert "input_hash" not in f.attrs
        assert f["gram"].chunks == (5, 5)
    io.save_gram(tmp_path / "W.h5", _X(300, 40))
    with h5py.File(tmp_path / "W.h5", "r") as f:
        assert f["gram"].chunks == (256, 40)  # tiles of at most 256 x 256


def test_save_gram_refuses_a_y_of_another_width(tmp_path):
    with pytest.raises(ValueError, match="Y has 3 features, but 2 are expected"):
        io.save_gram(tmp_path / "K.h5", np.eye(4), X=_X(4, 2), Y=_X(4, 3))
    with pytest.raises(ValueError, match=re.escape(
            "K has shape (4, 4), but X and Y give a (4, 2) Gram matrix")):
        io.save_gram(tmp_path / "K.h5", np.eye(4), X=_X(4, 2), Y=_X(2, 2))


# -- block sizes and tiles ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "m", "block_rows", "rows", "chunks"),
    [
        (300, 10, 100, 100, (100, 10)),  # below the tile edge: the block is the tile
        (300, None, 300, 256, (256, 256)),  # above: rounded down to a multiple of 256
        (600, 3, 520, 512, (256, 3)),
        (40, None, 256, 256, (40, 40)),  # a tile is never larger than the matrix
        (5, None, 1, 1, (1, 1)),
    ],
)
def test_block_rows_and_tiles(tmp_path, n, m, block_rows, rows, chunks):
    X = _X(n, 2)
    Y = None if m is None else _X(m, 2, seed=1)
    info = io.compute_gram_file(kc.NTK(), X, Y, tmp_path / "K.h5", block_rows=block_rows)
    assert info.block_rows == rows and info.n_blocks == -(-n // rows)
    with h5py.File(tmp_path / "K.h5", "r") as f:
        assert f["gram"].chunks == chunks
    np.testing.assert_array_equal(io.load_gram(tmp_path / "K.h5"), kc.NTK()(X, Y))


def test_the_default_block_rows_come_from_the_output_size_and_dtype(tmp_path, monkeypatch):
    seen = []
    real = _gram_file.default_block_rows

    def spy(n_rows, n_cols, itemsize):
        seen.append((n_rows, n_cols, itemsize))
        return real(n_rows, n_cols, itemsize)

    monkeypatch.setattr(_gram_file, "default_block_rows", spy)
    info = io.compute_gram_file(kc.NTK(), _X(30), _X(20, seed=1), tmp_path / "K.h5",
                                dtype="float32")
    assert seen == [(30, 20, 4)] and info.block_rows == 30 and info.n_blocks == 1
    io.compute_gram_file(kc.NTK(), _X(30), None, tmp_path / "S.h5", block_rows=7)
    assert seen == [(30, 20, 4)]  # an explicit block_rows is used as given


# -- free space -----------------------------------------------------------------------------
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_the_free_space_check_needs_the_matrix_and_the_slack(tmp_path, monkeypatch, dt):
    import shutil
    from collections import namedtuple

    n, m = 40, 30
    need = n * m * np.dtype(dt).itemsize + SLACK
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    free = {"bytes": need - 1}
    monkeypatch.setattr(
        shutil, "disk_usage",
        lambda p: usage(real(p).total, real(p).used, free["bytes"]),
    )
    with pytest.raises(OSError, match=rf"a {n} x {m} Gram file") as err:
        io.compute_gram_file(kc.NTK(), _X(n), _X(m, seed=1), tmp_path / "K.h5", dtype=dt)
    assert err.value.errno == errno.ENOSPC
    assert not (tmp_path / "K.h5.partial").exists() and not (tmp_path / "K.h5").exists()
    free["bytes"] = need  # exactly enough
    io.compute_gram_file(kc.NTK(), _X(n), _X(m, seed=1), tmp_path / "K.h5", dtype=dt)


def test_the_whole_file_is_reserved_before_the_first_block(tmp_path, monkeypatch):
    events = []
    real_reserve, real_blocks = _gram_file.reserve, _gram_file.iter_gram_blocks

    def reserve(path, length, *, start=None, what=""):
        events.append(("reserve", path, length, start, what))
        return real_reserve(path, length, start=start, what=what)

    def blocks(*args, **kwargs):
        for block in real_blocks(*args, **kwargs):
            events.append(("block", block.index))
            yield block

    monkeypatch.setattr(_gram_file, "reserve", reserve)
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", blocks)
    out = tmp_path / "K.h5"
    io.compute_gram_file(kc.NTK(), _X(60), None, out, block_rows=20)
    assert [e[0] for e in events] == ["reserve", "block", "block", "block"]
    _, path, length, start, what = events[0]
    assert path == tmp_path / "K.h5.partial" and start == 0
    assert length >= 60 * 60 * 8 + SLACK and what == f"the Gram file {out}"


# -- errors while filling -------------------------------------------------------------------
def _failing(exc):
    def blocks(*args, **kwargs):
        raise exc
        yield

    return blocks


@pytest.mark.parametrize(
    ("exc", "kept"),
    [
        (ValueError("refused"), False),
        (TypeError("refused"), False),
        (OSError(errno.ENOSPC, "full"), False),
        (OSError(errno.EDQUOT, "quota"), False),
        (OSError(errno.EIO, "io"), True),
        (RuntimeError("other"), True),
    ],
)
def test_a_new_partial_file_is_removed_only_when_nothing_could_be_kept(
    tmp_path, monkeypatch, exc, kept
):
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", _failing(exc))
    with pytest.raises(type(exc)):
        io.compute_gram_file(kc.NTK(), _X(30), None, tmp_path / "K.h5", block_rows=10)
    assert (tmp_path / "K.h5.partial").exists() is kept
    assert not (tmp_path / "K.h5").exists()


@pytest.mark.parametrize(
    "exc", [ValueError("refused"), TypeError("refused"), OSError(errno.ENOSPC, "full")]
)
def test_a_resumed_partial_file_keeps_its_blocks_after_an_error(tmp_path, monkeypatch, exc):
    X = _X(30)
    partial = _interrupt(tmp_path / "K.h5", kc.NTK(), X, block_rows=10, after=2)
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", _failing(exc))
    with pytest.raises(type(exc)):
        io.compute_gram_file(kc.NTK(), X, None, tmp_path / "K.h5", resume=True)
    assert io.read_gram_info(partial).blocks_done == 2


def _poisoned(block_index: int, write: int, value: float = np.nan):
    """iter_gram_blocks with one entry of one write of one block made non-finite."""
    real = _gram_file.iter_gram_blocks

    def blocks(*args, **kwargs):
        for block in real(*args, **kwargs):
            if block.index == block_index:
                block.writes[write][1][0, -1] = value
            yield block

    return blocks


def test_a_non_finite_block_is_refused_naming_its_rows_and_leaves_no_file(
    tmp_path, monkeypatch
):
    X = _X(200, 2)
    # symmetric, blocks of 100: block 0 writes its diagonal tile, then its off-diagonal
    # part (of the same size) and that part's mirror image; an inf in the off-diagonal part
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", _poisoned(0, 1, np.inf))
    with pytest.raises(_gram_file.NonFiniteGramError, match=re.escape(
            "the Gram matrix has NaN or infinite entries in rows 0..99: NTK produces "
            "non-finite values on these inputs (a network whose outputs are NaN or infinite, "
            "or a kernel that overflows); no Gram file is written")):
        io.compute_gram_file(kc.NTK(), X, None, tmp_path / "K.h5", block_rows=100)
    assert list(tmp_path.iterdir()) == []
    # cross: the last block, of rows 100..149
    monkeypatch.undo()
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", _poisoned(1, 0))
    with pytest.raises(_gram_file.NonFiniteGramError, match=r"in rows 100\.\.149: NTK "):
        io.compute_gram_file(kc.NTK(), X[:150], _X(20, 2), tmp_path / "K.h5",
                             block_rows=100)
    assert list(tmp_path.iterdir()) == []
    # resumed: the partial file is removed too (it can never become a valid result)
    monkeypatch.undo()
    Y = _X(20, 2)
    partial = _interrupt(tmp_path / "R.h5", kc.NTK(), X, Y, block_rows=100, after=1)
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", _poisoned(1, 0))
    with pytest.raises(_gram_file.NonFiniteGramError, match=r"rows 100\.\.199"):
        io.compute_gram_file(kc.NTK(), X, Y, tmp_path / "R.h5", resume=True)
    assert not partial.exists() and list(tmp_path.iterdir()) == []


# -- should_stop and the progress bar ---------------------------------------------------------
def test_should_stop_is_polled_between_blocks_only(tmp_path):
    polls = []

    def stop():
        polls.append(1)
        return True

    info = io.compute_gram_file(kc.NTK(), _X(10), None, tmp_path / "A.h5", should_stop=stop)
    assert info.complete and polls == []  # one block: nothing to stop between
    with pytest.raises(io.GramInterrupted) as err:
        io.compute_gram_file(kc.NTK(), _X(30), None, tmp_path / "B.h5", block_rows=10,
                             should_stop=stop)
    assert polls == [1] and (err.value.done, err.value.total) == (1, 3)
    partial = tmp_path / "B.h5.partial"
    assert err.value.partial == partial
    assert str(err.value) == (
        f"interrupted after 1/3 row blocks; the completed blocks are kept in {partial} "
        "(continue with resume=True / --resume)"
    )
    # the last block is never followed by a poll: the resumed run completes
    polls.clear()
    late = iter([False, True])
    info = io.compute_gram_file(kc.NTK(), _X(30), None, tmp_path / "B.h5", resume=True,
                                should_stop=lambda: polls.append(1) or next(late))
    assert info.complete and polls == [1]


def test_resume_computes_exactly_the_missing_blocks_and_the_bar_starts_at_the_stored_rows(
    tmp_path, capsys
):
    X = _X(250)
    k = kc.NTK(depth=2)
    out = tmp_path / "K.h5"
    io.compute_gram_file(k, X, None, out, block_rows=100)
    assert capsys.readouterr().err == ""  # no bar unless asked for
    partial = tmp_path / "K.h5.partial"
    with h5py.File(out, "r+") as f:  # block 1 lost: record, and its rows and mirror zeroed
        f["completed_blocks"][1] = 0
        f.attrs["complete"] = False
        f["gram"][100:200, 100:] = 0.0  # what block 1 writes: its rows from the diagonal on
        f["gram"][200:, 100:200] = 0.0  # and their mirror image
    out.rename(partial)
    capsys.readouterr()
    info = io.compute_gram_file(k, X, None, out, resume=True, progress=True)
    err = capsys.readouterr().err
    # blocks 0 and 2 (100 + 50 rows) were stored: the bar starts at 150 of 250 rows
    assert "NTK Gram" in err and "| 150/250" in err and "| 250/250" in err
    assert "row/s]" in err  # rows are the bar's unit
    assert "| 0/250" not in err and "| 100/250" not in err
    assert info.complete and info.blocks_done == 3
    np.testing.assert_array_equal(io.load_gram(out), k(X))


# -- resume and force -------------------------------------------------------------------------
def test_an_existing_partial_file_is_refused_without_resume_or_force(tmp_path):
    X = _X(30)
    partial = _interrupt(tmp_path / "K.h5", kc.NTK(), X, block_rows=10)
    with pytest.raises(FileExistsError, match=re.escape(
            f"{partial} exists (an interrupted computation): pass resume=True (--resume) to "
            "continue it or force=True (--force) to start again")):
        io.compute_gram_file(kc.NTK(), X, None, tmp_path / "K.h5")
    # force without resume discards it and starts again, with other inputs if need be
    info = io.compute_gram_file(kc.NTK(), 2 * X, None, tmp_path / "K.h5", force=True)
    assert info.complete and not partial.exists()
    np.testing.assert_array_equal(io.load_gram(tmp_path / "K.h5"), kc.NTK()(2 * X))


def test_resume_with_force_continues_the_partial_file_and_replaces_the_final_one(
    tmp_path, monkeypatch
):
    X = _X(30)
    out = tmp_path / "K.h5"
    io.save_gram(out, np.zeros((30, 30)))  # an old, different result under the final name
    partial = _interrupt(out, kc.NTK(), X, block_rows=10, after=2, force=True)
    calls = record_skips(monkeypatch)
    info = io.compute_gram_file(kc.NTK(), X, None, out, resume=True, force=True)
    assert calls == [{0, 1}] and info.complete and not partial.exists()
    np.testing.assert_array_equal(io.load_gram(out), kc.NTK()(X))


def test_resume_of_a_final_file_that_is_incomplete_is_refused(tmp_path):
    X = _X(30)
    out = tmp_path / "K.h5"
    partial = _interrupt(out, kc.NTK(), X, block_rows=10)
    partial.rename(out)
    with pytest.raises(io.FormatError, match=re.escape(
            f"{out} is an incomplete Gram file (1/3 row blocks) under the final name, so it "
            "cannot be resumed; pass force=True (--force) to compute it again")):
        io.compute_gram_file(kc.NTK(), X, None, out, resume=True)
    # a record that lacks blocks counts even when the attribute says complete
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = True
    with pytest.raises(io.FormatError, match=r"incomplete Gram file \(1/3 row blocks\)"):
        io.compute_gram_file(kc.NTK(), X, None, out, resume=True)
    # and a complete record under an incomplete attribute as well
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = False
        f["completed_blocks"][:] = 1
    with pytest.raises(io.FormatError, match=r"incomplete Gram file \(3/3 row blocks\)"):
        io.compute_gram_file(kc.NTK(), X, None, out, resume=True)
    # a complete final file of the same request: returned as it is
    io.compute_gram_file(kc.NTK(), X, None, out, force=True, block_rows=10)
    before = out.read_bytes()
    info = io.compute_gram_file(kc.NTK(), X, None, out, resume=True)
    assert info.complete and info.n_blocks == 3 and out.read_bytes() == before


def test_resume_of_an_unreadable_final_file_names_force(tmp_path):
    out = tmp_path / "K.h5"
    out.write_bytes(b"not hdf5" * 64)
    with pytest.raises(io.FormatError, match=rf"^{re.escape(str(out))} cannot be read as a "
                       r"Gram file \(.+\); pass force=True \(--force\) to discard it and "
                       r"compute the Gram matrix again$"):
        io.compute_gram_file(kc.NTK(), _X(10), None, out, resume=True)
    info = io.compute_gram_file(kc.NTK(), _X(10), None, out, resume=True, force=True)
    assert info.complete


def test_an_unusable_partial_file_names_force(tmp_path):
    X = _X(30)
    out = tmp_path / "K.h5"
    partial = tmp_path / "K.h5.partial"
    partial.write_bytes(b"not hdf5" * 64)
    with pytest.raises(io.FormatError, match=rf"^{re.escape(str(partial))}: cannot continue it "
                       r"\(.+\); pass force=True \(--force\) to discard it and start again$"):
        io.compute_gram_file(kc.NTK(), X, None, out, resume=True)
    partial.unlink()
    io.save_diagnostics(partial, [{"x": np.ones(2)}])  # a kernelcomp file of another format
    with pytest.raises(io.FormatError, match=r"'diagnostics' file, expected a 'gram' file.*; "
                       r"pass force=True \(--force\) to discard it and start again$"):
        io.compute_gram_file(kc.NTK(), X, None, out, resume=True)
    partial.unlink()
    _interrupt(out, kc.NTK(), X, block_rows=10)
    with h5py.File(partial, "r+") as f:
        f.attrs["kernel"] = "[1, 2]"
    with pytest.raises(io.FormatError, match=r"'kernel' and 'inputs' attributes must be JSON "
                       r"objects; pass force=True \(--force\) to discard it and start again$"):
        io.compute_gram_file(kc.NTK(), X, None, out, resume=True)


def test_resume_lists_every_difference_of_the_request(tmp_path):
    X = _X(30)
    out = tmp_path / "K.h5"
    partial = _interrupt(out, kc.NTK(depth=2), X, block_rows=10)
    desc = json.dumps(kc.NTK(depth=2).to_dict(), sort_keys=True)
    with pytest.raises(io.FormatError, match=re.escape(
            f"{partial} cannot be resumed with these arguments: it was made with shape "
            "(30, 30) != (30, 5); dtype float64 != float32; another kernel "
            f"({desc}); other inputs (input hash differs) (use force=True / --force to start "
            "again)")):
        io.compute_gram_file(kc.NTK(depth=3), X, X[:5], out, dtype="float32", resume=True)
    with pytest.raises(io.FormatError, match=r"made with another kernel \(\{.*\}\) \(use"):
        io.compute_gram_file(kc.NTK(depth=3), X, None, out, resume=True)


# -- reading files that lack optional parts, or are damaged ----------------------------------
def test_a_file_without_record_or_optional_attributes_reads_as_one_complete_block(tmp_path):
    path = tmp_path / "K.h5"
    K = _X(6, 6)
    io.save_gram(path, K)
    with h5py.File(path, "r+") as f:
        del f["completed_blocks"]
        for name in ("block_rows", "symmetric", "complete", "kernel", "inputs"):
            del f.attrs[name]
        f.attrs["input_hash"] = ""
    info = io.read_gram_info(path)
    assert info.block_rows == 6 and (info.n_blocks, info.blocks_done) == (1, 1)
    assert info.complete is True and info.symmetric is False
    assert info.kernel_desc == {} and info.inputs == {} and info.input_hash is None
    assert info.kernel is None
    np.testing.assert_array_equal(io.load_gram(path), K)


def test_a_file_without_block_rows_reads_its_record_as_one_block_per_file(tmp_path):
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(4))
    with h5py.File(path, "r+") as f:
        del f.attrs["block_rows"]
        del f["completed_blocks"]
        f["completed_blocks"] = np.ones(2, np.uint8)
    with pytest.raises(io.FormatError, match=re.escape(
            f"{path}: its 'completed_blocks' record has 2 entries, but 4 rows in blocks of 4 "
            "make 1 (a damaged file)")):
        io.read_gram_info(path)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"block_rows": 0}, "record has 1 entries, but 3 rows in blocks of 0 make -1"),
        ({"block_rows": -2}, "record has 1 entries, but 3 rows in blocks of -2 make -1"),
        ({"record": np.ones(1, np.float64)}, "its 'completed_blocks' record is not a 1-D "
                                             "integer array"),
        ({"record": np.ones(1, bool)}, None),
        ({"record": np.ones(1, np.int32)}, None),
        ({"record": np.ones(1, np.uint16)}, None),
        ({"inputs": "[1]"}, "its 'kernel' and 'inputs' attributes must be JSON objects"),
        ({"gram_dtype": np.int64}, "its 'gram' dataset has shape (3, 3) and dtype int64; a "
                                   "Gram matrix is a 2-D float32 or float64 array (a damaged "
                                   "or foreign file)"),
        ({"gram_dtype": np.float32}, None),
        ({"no_gram": True}, "is a 'gram' file without a 'gram' dataset"),
        ({"gram_group": True}, "is a 'gram' file without a 'gram' dataset"),
        ({"block_rows": "many"}, "is a damaged 'gram' file (its attributes cannot be read: "),
    ],
)
def test_the_layout_is_checked_when_read(tmp_path, tamper, message):
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    with h5py.File(path, "r+") as f:
        if "block_rows" in tamper:
            f.attrs["block_rows"] = tamper["block_rows"]
        if "record" in tamper:
            del f["completed_blocks"]
            f["completed_blocks"] = tamper["record"]
        if "inputs" in tamper:
            f.attrs["inputs"] = tamper["inputs"]
        if "gram_dtype" in tamper:
            del f["gram"]
            f["gram"] = np.eye(3).astype(tamper["gram_dtype"])
        if "no_gram" in tamper:
            del f["gram"]
        if "gram_group" in tamper:
            del f["gram"]
            f.create_group("gram")
    if message is None:
        assert io.read_gram_info(path).blocks_done == 1
        return
    with pytest.raises(io.FormatError, match=re.escape(f"{path}") + ".*" + re.escape(message)):
        io.read_gram_info(path)


def test_load_gram_of_a_partial_file_says_how_far_it_got(tmp_path):
    partial = _interrupt(tmp_path / "K.h5", kc.NTK(), _X(30), block_rows=10, after=2)
    with pytest.raises(io.FormatError, match=re.escape(
            f"{partial} is an incomplete Gram file (2/3 row blocks); continue it with "
            "compute_gram_file(..., resume=True) / kernelcomp gram --resume")):
        io.load_gram(partial)


# -- the rest of the boundary: threads, JSON, foreign layouts ---------------------------------
def test_n_jobs_sets_the_threads_while_the_blocks_are_computed(tmp_path):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread only: n_jobs=1 is the default here")
    before = numba.get_num_threads()
    seen = []

    def poll() -> bool:
        seen.append(numba.get_num_threads())
        return False

    io.compute_gram_file(kc.NTK(), _X(30), None, tmp_path / "K.h5", block_rows=10, n_jobs=1,
                         should_stop=poll)
    assert seen == [1, 1]
    assert numba.get_num_threads() == before  # restored


def test_inputs_must_be_json_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match=r"^inputs must be JSON serialisable: "):
        io.compute_gram_file(kc.NTK(), _X(5), None, tmp_path / "K.h5", inputs={"f": object()})
    assert list(tmp_path.iterdir()) == []  # no partial file left to refuse the next run


def test_a_kernel_description_must_be_json_before_anything_is_written(tmp_path):
    class Unwritable(kc.NTK):
        def to_dict(self):
            return {"kernel": "Unwritable", "params": {"f": object()}}

    with pytest.raises(TypeError, match=r"^kernel must be JSON serialisable: "):
        io.compute_gram_file(Unwritable(), _X(5), None, tmp_path / "K.h5")
    assert list(tmp_path.iterdir()) == []


def test_save_gram_inputs_must_be_json(tmp_path):
    with pytest.raises(TypeError, match=r"^inputs must be JSON serialisable: "):
        io.save_gram(tmp_path / "K.h5", np.eye(2), inputs={"f": object()})
    assert list(tmp_path.iterdir()) == []


def test_save_gram_hashes_the_inputs_in_a_float32_matrix_dtype_and_names_its_arguments(
    tmp_path,
):
    X, Y = _X(4, 2), _X(3, 2, seed=1)  # float64 inputs of a float32 matrix
    K = kc.NTK()(X, Y, dtype="float32")
    io.save_gram(tmp_path / "K.h5", K, X=X, Y=Y)
    info = io.read_gram_info(tmp_path / "K.h5")
    assert info.input_hash == a_hash(X, Y, np.float32) and info.dtype == np.float32
    with h5py.File(tmp_path / "K.h5", "r") as f:
        assert f.attrs["dtype"] == "float32"
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^X contains NaN"):
        io.save_gram(tmp_path / "N.h5", np.eye(4), X=bad)
    with pytest.raises(TypeError, match=r"^kernel must be a kernelcomp kernel or None, got str$"):
        io.save_gram(tmp_path / "N.h5", np.eye(4), kernel="ntk")


def test_only_gram_files_are_read_as_gram_files(tmp_path):
    path = io.save_diagnostics(tmp_path / "d.h5", [{"x": np.ones(2)}])
    for read in (io.read_gram_info, io.load_gram):
        with pytest.raises(io.FormatError, match=re.escape(
                f"{path} is a kernelcomp 'diagnostics' file, expected a 'gram' file")):
            read(path)


def test_resume_of_a_non_hdf5_final_file_quotes_the_reason(tmp_path):
    out = tmp_path / "K.h5"
    out.write_bytes(b"not hdf5" * 64)
    with pytest.raises(io.FormatError, match=re.escape(
            f"{out} cannot be read as a Gram file ({out} is not an HDF5 file (")):
        io.compute_gram_file(kc.NTK(), _X(10), None, out, resume=True)


@pytest.mark.parametrize("record", ["group", "2-D"])
def test_a_record_that_is_not_a_1d_array_is_refused(tmp_path, record):
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    with h5py.File(path, "r+") as f:
        del f["completed_blocks"]
        if record == "group":
            f.create_group("completed_blocks")
        else:
            f["completed_blocks"] = np.ones((1, 1), np.uint8)  # one entry, as expected
    with pytest.raises(io.FormatError, match=re.escape(
            f"{path}: its 'completed_blocks' record is not a 1-D integer array")):
        io.read_gram_info(path)


@pytest.mark.parametrize("dataset", ["completed_blocks", "gram"])
def test_a_dataset_with_external_storage_is_refused_by_name(tmp_path, dataset):
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(72)))
    with h5py.File(path, "r+") as f:
        data = f[dataset][()]
        del f[dataset]
        f.create_dataset(dataset, shape=data.shape, dtype=data.dtype,
                         external=[(str(secret), 0, data.nbytes)])
    what = "its 'completed_blocks' record" if dataset == "completed_blocks" else (
        "its 'gram' dataset")
    with pytest.raises(io.FormatError, match=re.escape(what) + " .*external storage"):
        io.load_gram(path)


def test_a_new_partial_file_has_every_tile_allocated_at_once(tmp_path):
    """A killed writer never has to allocate: the file holds the whole matrix from the start."""
    X = _X(600, 2)
    partial = _interrupt(tmp_path / "K.h5", kc.NTK(), X, block_rows=256, after=1)
    assert partial.stat().st_size >= 600 * 600 * 8  # 1 of 3 blocks stored, all 9 tiles there
