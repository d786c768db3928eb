"""Tests of kc.io: versioned HDF5 Gram, run and diagnostics files."""

from __future__ import annotations

import os
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelcomp as kc
from kernelcomp import io
from kernelcomp.io import _diag_file, _gram_file
from kernelcomp.io._info import _read_network
from tests.gram_blocks import raising_after, record_skips

DTYPES = [np.float64, np.float32]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20210414)


def _no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if ".tmp-" in p]


def _gram_reference(kernel, X, Y=None, dtype=None):
    """The in-memory Gram of the same kernel: the oracle of the file writer."""
    return kernel(X, Y, dtype=dtype)


# ---------------------------------------------------------------------------
# Gram files
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_compute_gram_file_symmetric_equals_in_memory(tmp_path, rng, dtype):
    X = rng.standard_normal((530, 7)).astype(dtype)
    k = kc.NTK(depth=2, bias_std=0.3)
    info = io.compute_gram_file(k, X, None, tmp_path / "K.h5", block_rows=128)
    assert info.complete and info.symmetric
    assert info.n_blocks == 5 and info.blocks_done == 5 and info.block_rows == 128
    assert info.dtype == dtype and info.shape == (530, 530)
    K = io.load_gram(tmp_path / "K.h5")
    assert K.dtype == dtype
    np.testing.assert_array_equal(K, _gram_reference(k, X))
    np.testing.assert_array_equal(K, K.T)
    assert not (tmp_path / "K.h5.partial").exists()


@pytest.mark.parametrize("dtype", DTYPES)
def test_compute_gram_file_cross_and_dtype_request(tmp_path, rng, dtype):
    X = rng.standard_normal((300, 5))
    Y = rng.standard_normal((170, 5))
    k = kc.NNGP(depth=3, activation="erf", weight_std=1.3)
    info = io.compute_gram_file(k, X, Y, tmp_path / "K.h5", dtype=dtype, block_rows=64)
    assert not info.symmetric and info.shape == (300, 170) and info.dtype == dtype
    K = io.load_gram(tmp_path / "K.h5")
    ref = _gram_reference(k, X, Y, dtype=dtype)
    np.testing.assert_array_equal(K, ref)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 70),
    m=st.one_of(st.none(), st.integers(1, 40)),
    block_rows=st.integers(1, 300),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_gram_file_is_invariant_to_the_block_size(n, m, block_rows, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(dtype)
    Y = None if m is None else rng.standard_normal((m, 3)).astype(dtype)
    k = kc.NNGP(depth=2, bias_std=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "K.h5")
        info = io.compute_gram_file(k, X, Y, path, block_rows=block_rows)
        assert info.n_blocks == -(-n // info.block_rows)
        np.testing.assert_array_equal(io.load_gram(path), k(X, Y))


def test_gram_file_chunks_are_tiles_aligned_with_blocks(tmp_path, rng):
    X = rng.standard_normal((700, 3))
    info = io.compute_gram_file(kc.NTK(), X, None, tmp_path / "K.h5", block_rows=600)
    # block rows are rounded down to a multiple of the tile edge
    assert info.block_rows == 512 and info.n_blocks == 2
    with h5py.File(tmp_path / "K.h5", "r") as f:
        assert f["gram"].chunks == (io.CHUNK, io.CHUNK)
    small = io.compute_gram_file(kc.NTK(), X[:50], None, tmp_path / "S.h5", block_rows=20)
    assert small.block_rows == 20
    with h5py.File(tmp_path / "S.h5", "r") as f:
        assert f["gram"].chunks == (20, 20)


def test_gram_file_readable_with_plain_h5py(tmp_path, rng):
    X = rng.standard_normal((40, 4))
    k = kc.NTK(depth=2, weight_std=[1.0, 1.5, 0.5])
    io.compute_gram_file(k, X, None, tmp_path / "K.h5")
    with h5py.File(tmp_path / "K.h5", "r") as f:
        assert f.attrs["kernelcomp_format"] == "gram"
        assert f.attrs["kernelcomp_format_version"] == io.FORMAT_VERSIONS["gram"]
        assert f.attrs["kernelcomp_version"] == kc.__version__
        assert "T" in f.attrs["created"]
        np.testing.assert_array_equal(f["gram"][()], _gram_reference(k, X))
        assert f["completed_blocks"][()].all()
        import json

        desc = json.loads(f.attrs["kernel"])
    assert desc == k.to_dict()
    assert io.read_gram_info(tmp_path / "K.h5").kernel == k


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_gram_round_trip(tmp_path, rng, dtype):
    X = rng.standard_normal((25, 3)).astype(dtype)
    k = kc.NTK(depth=1)
    K = k(X)
    path = io.save_gram(tmp_path / "K.h5", K, kernel=k, X=X, inputs={"X": "somewhere.npy"})
    out = io.load_gram(path)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, K)
    info = io.read_gram_info(path)
    assert info.kernel == k and info.symmetric and info.complete
    assert info.input_hash == io.hash_inputs(X)
    assert info.inputs == {"X": "somewhere.npy"}
    # the same hash as the resumable writer stores for the same inputs
    computed = io.compute_gram_file(k, X, None, tmp_path / "K2.h5")
    assert computed.input_hash == info.input_hash


def test_save_gram_without_kernel_and_errors(tmp_path, rng):
    K = rng.standard_normal((4, 6))
    io.save_gram(tmp_path / "K.h5", K)
    info = io.read_gram_info(tmp_path / "K.h5")
    assert info.kernel is None and info.input_hash is None and not info.symmetric
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        io.save_gram(tmp_path / "K.h5", K)
    io.save_gram(tmp_path / "K.h5", 2 * K, force=True)
    np.testing.assert_array_equal(io.load_gram(tmp_path / "K.h5"), 2 * K)
    with pytest.raises(ValueError, match="K contains NaN"):
        io.save_gram(tmp_path / "N.h5", np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"K has shape \(4, 6\), but X and Y give a \(3, 3\)"):
        io.save_gram(tmp_path / "N.h5", K, X=np.ones((3, 2)))
    with pytest.raises(TypeError, match="kernel must be a kernelcomp kernel"):
        io.save_gram(tmp_path / "N.h5", K, kernel="ntk")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.save_gram(tmp_path / "nodir" / "K.h5", K)
    assert not (tmp_path / "N.h5").exists()
    assert _no_temp_files(tmp_path)


def test_gram_file_of_an_empirical_ntk(tmp_path, rng):
    X = rng.standard_normal((90, 3))
    net = kc.FCNetwork.init(3, [20], seed=4)
    e = kc.EmpiricalNTK(net)
    info = io.compute_gram_file(e, X, None, tmp_path / "E.h5", block_rows=40)
    assert info.kernel is None and info.kernel_desc == e.to_dict()
    np.testing.assert_allclose(io.load_gram(tmp_path / "E.h5"), e(X), rtol=1e-12, atol=1e-12)
    other = kc.EmpiricalNTK(kc.FCNetwork.init(3, [20], seed=5))
    with pytest.raises(io.FormatError, match="another kernel"):
        io.compute_gram_file(other, X, None, tmp_path / "E.h5", resume=True)


def test_hash_inputs_sensitivity(rng):
    X = rng.standard_normal((5, 3))
    h = io.hash_inputs(X)
    assert h.startswith("sha256:") and h == io.hash_inputs(X.copy())
    X2 = X.copy()
    X2[4, 2] = np.nextafter(X2[4, 2], 10)
    assert io.hash_inputs(X2) != h
    assert io.hash_inputs(X.astype(np.float32)) != h
    assert io.hash_inputs(X.reshape(3, 5)) != h
    assert io.hash_inputs(X, X) != h


# -- interruption and resume ------------------------------------------------
class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_interrupted_gram_resumes_to_the_exact_matrix(
    tmp_path, rng, monkeypatch, dtype, symmetric
):
    X = rng.standard_normal((450, 9)).astype(dtype)
    Y = None if symmetric else rng.standard_normal((130, 9)).astype(dtype)
    k = kc.NTK(depth=3, activation="erf", bias_std=0.2)
    full = io.compute_gram_file(k, X, Y, tmp_path / "full.h5", block_rows=64)
    out = tmp_path / "K.h5"
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", raising_after(3, _Boom("stop")))
    with pytest.raises(_Boom, match="stop"):
        io.compute_gram_file(k, X, Y, out, block_rows=64)
    monkeypatch.undo()
    partial = tmp_path / "K.h5.partial"
    assert not out.exists() and partial.exists()
    info = io.read_gram_info(partial)
    assert not info.complete and info.blocks_done == 3 and info.n_blocks == full.n_blocks
    with pytest.raises(io.FormatError, match=r"incomplete Gram file .*3/8 row blocks"):
        io.load_gram(partial)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        io.compute_gram_file(k, X, Y, out, block_rows=64)
    # resume: only the missing blocks are computed
    calls = record_skips(monkeypatch)
    done = io.compute_gram_file(k, X, Y, out, block_rows=999, resume=True)
    assert calls == [{0, 1, 2}]
    assert done.complete and done.block_rows == 64  # the partial file's own layout
    assert not partial.exists()
    np.testing.assert_array_equal(io.load_gram(out), io.load_gram(tmp_path / "full.h5"))


def test_keyboard_interrupt_and_should_stop_keep_completed_blocks(tmp_path, rng, monkeypatch):
    X = rng.standard_normal((300, 4))
    k = kc.NNGP(depth=2)
    out = tmp_path / "K.h5"
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", raising_after(1, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        io.compute_gram_file(k, X, None, out, block_rows=32)
    monkeypatch.undo()
    assert io.read_gram_info(tmp_path / "K.h5.partial").blocks_done == 1
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) >= 2

    with pytest.raises(io.GramInterrupted, match="after 3/10 row blocks") as err:
        io.compute_gram_file(k, X, None, out, resume=True, should_stop=stop)
    assert err.value.partial == tmp_path / "K.h5.partial"
    assert (err.value.done, err.value.total) == (3, 10)
    info = io.compute_gram_file(k, X, None, out, resume=True, should_stop=lambda: False)
    assert info.complete
    np.testing.assert_array_equal(io.load_gram(out), kc.NNGP(depth=2)(X))


def test_gram_file_progress_bar_counts_rows_from_the_resume_point(tmp_path, rng, capsys):
    X = rng.standard_normal((200, 3))
    k = kc.NTK(depth=2)
    out = tmp_path / "K.h5"
    with pytest.raises(io.GramInterrupted):
        io.compute_gram_file(k, X, None, out, block_rows=50, should_stop=lambda: True)
    assert capsys.readouterr().err == ""  # no bar unless asked for
    io.compute_gram_file(k, X, None, out, resume=True, progress=True)
    err = capsys.readouterr().err
    # rows, starting at the 50 rows already stored
    assert "NTK Gram" in err and "| 50/200" in err and "| 200/200" in err
    assert "| 0/200" not in err
    np.testing.assert_array_equal(io.load_gram(out), k(X))


_KILL_SCRIPT = """
import os, signal, sys
import numpy as np
import kernelcomp as kc
from kernelcomp import io
from kernelcomp.io import _gram_file
real = _gram_file.iter_gram_blocks
def dying(*args, **kwargs):
    for i, block in enumerate(real(*args, **kwargs)):
        if i == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no close, no flush
        yield block
_gram_file.iter_gram_blocks = dying
X = np.load(sys.argv[1])
io.compute_gram_file(kc.NTK(depth=2), X, None, sys.argv[2], block_rows=32)
"""


def test_killed_process_leaves_a_resumable_partial_file(tmp_path, rng):
    """SIGKILL with the file open: the record still lists the blocks stored."""
    import subprocess
    import sys

    X = rng.standard_normal((150, 6))
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "K.h5"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "X.npy"), str(out)],
        capture_output=True, timeout=300, check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    info = io.read_gram_info(tmp_path / "K.h5.partial")
    assert not out.exists() and info.blocks_done == 2 and not info.complete
    io.compute_gram_file(kc.NTK(depth=2), X, None, out, resume=True)
    np.testing.assert_array_equal(io.load_gram(out), kc.NTK(depth=2)(X))


@pytest.mark.slow
def test_gram_file_at_mnist_size_interrupted_and_resumed(tmp_path):
    """n = 20000 (a 1.5 GiB float32 matrix): stop after 5 of 27 blocks, resume, check rows.

    The process's resident set grows far less than the matrix: the file is
    written block by block.
    """
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    out = _run_at_mnist_size(f"""
        import os, threading, time
        import h5py
        n = {N_MNIST}
        X = rng.standard_normal((n, 10)).astype(np.float32)
        k = kc.NTK(depth=2, bias_std=0.1)
        # compile first (in a fresh clone numba's compiler alone peaks near 1 GiB), then
        # track the resident set while the file is written: its growth is what is bounded
        k(X[:50]); k(X[:50], X[:60])
        page = os.sysconf("SC_PAGE_SIZE")

        def rss():
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * page

        base, peak, done = rss(), [0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        path = {str(tmp_path / "K.h5")!r}
        polls = []
        try:
            kc.io.compute_gram_file(k, X, None, path, should_stop=lambda: polls.append(1) or
                                    len(polls) == 5)
            raise AssertionError("not interrupted")
        except kc.io.GramInterrupted as exc:
            assert (exc.done, exc.total) == (5, 27), (exc.done, exc.total)
        assert kc.io.read_gram_info(path + ".partial").blocks_done == 5
        info = kc.io.compute_gram_file(k, X, None, path, resume=True)
        assert info.complete and info.shape == (n, n) and info.block_rows == 768
        with h5py.File(path, "r") as f:
            rows = f["gram"][idx]
            cols = f["gram"][:, idx[:4]]
        close(rows, k(X[idx], X), 1e-5)
        assert bool((rows[:, idx] == rows[:, idx].T).all())
        assert bool((cols == rows[:4].T).all())  # the mirrored lower triangle, whole columns
        done.set()
        watcher.join()
        grew_mib = (peak[0] - base) / 2**20
        assert grew_mib < 600, f"resident set grew by {{grew_mib:.0f}} MiB; the matrix is 1526 MiB"
        print(f"resident set grew by {{grew_mib:.0f}} MiB, {{time.perf_counter() - t0:.1f}} s")
    """)
    print(out.strip().splitlines()[-2])  # shown with -s


def test_resume_refuses_other_inputs_kernel_or_dtype(tmp_path, rng, monkeypatch):
    X = rng.standard_normal((200, 4))
    k = kc.NTK(depth=2)
    out = tmp_path / "K.h5"
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", raising_after(1, _Boom()))
    with pytest.raises(_Boom):
        io.compute_gram_file(k, X, None, out, block_rows=50)
    monkeypatch.undo()
    X2 = X.copy()
    X2[0, 0] += 1e-9
    with pytest.raises(io.FormatError, match=r"cannot be resumed .*other inputs"):
        io.compute_gram_file(k, X2, None, out, resume=True)
    with pytest.raises(io.FormatError, match="another kernel"):
        io.compute_gram_file(kc.NTK(depth=3), X, None, out, resume=True)
    with pytest.raises(io.FormatError, match="dtype float64 != float32"):
        io.compute_gram_file(k, X, None, out, resume=True, dtype="float32")
    with pytest.raises(io.FormatError, match=r"shape \(200, 200\) != \(200, 10\)"):
        io.compute_gram_file(k, X, X[:10], out, resume=True)
    # force restarts from scratch with the new inputs
    info = io.compute_gram_file(k, X2, None, out, force=True)
    assert info.complete
    np.testing.assert_array_equal(io.load_gram(out), k(X2))


def test_existing_output_kept_unless_force_and_resume_of_a_complete_file(
    tmp_path, rng, monkeypatch
):
    X = rng.standard_normal((60, 3))
    k = kc.NTK()
    out = tmp_path / "K.h5"
    io.compute_gram_file(k, X, None, out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        io.compute_gram_file(k, X, None, out)
    # resume on a complete file with the same inputs: nothing to compute
    monkeypatch.setattr(_gram_file, "iter_gram_blocks", raising_after(0, _Boom("computed")))
    info = io.compute_gram_file(k, X, None, out, resume=True)
    assert info.complete and out.read_bytes() == before
    with pytest.raises(io.FormatError, match="other inputs"):
        io.compute_gram_file(k, 2 * X, None, out, resume=True)
    # a forced run that fails keeps the old file intact
    with pytest.raises(_Boom):
        io.compute_gram_file(k, 2 * X, None, out, force=True)
    monkeypatch.undo()
    assert out.read_bytes() == before
    io.compute_gram_file(k, 2 * X, None, out, force=True)
    np.testing.assert_array_equal(io.load_gram(out), k(2 * X))


def test_compute_gram_file_validates_before_writing(tmp_path, rng):
    out = tmp_path / "K.h5"
    with pytest.raises(TypeError, match="kernel must be a kernelcomp kernel"):
        io.compute_gram_file("ntk", np.ones((3, 2)), None, out)
    with pytest.raises(ValueError, match="X contains NaN"):
        io.compute_gram_file(kc.NTK(), np.full((3, 2), np.nan), None, out)
    with pytest.raises(ValueError, match="Y has 3 features, but 2 are expected"):
        io.compute_gram_file(kc.NTK(), np.ones((3, 2)), np.ones((3, 3)), out)
    with pytest.raises(ValueError, match="block_rows must be >= 1"):
        io.compute_gram_file(kc.NTK(), np.ones((3, 2)), None, out, block_rows=0)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        io.compute_gram_file(kc.NTK(), np.ones((3, 2)), None, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.compute_gram_file(kc.NTK(), np.ones((3, 2)), None, tmp_path / "no" / "K.h5")
    assert os.listdir(tmp_path) == []


# -- headers ----------------------------------------------------------------
def _saved_gram(tmp_path, name="K.h5"):
    return io.save_gram(tmp_path / name, np.eye(3))


def test_foreign_and_non_hdf5_files_are_refused_naming_the_file(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(io.FormatError, match=r"foreign\.h5 is not a kernelcomp file"):
        io.load_gram(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(io.FormatError, match=r"notes\.h5 is not an HDF5 file"):
        io.open_run(text)
    with pytest.raises(FileNotFoundError, match=r"missing\.h5: no such file"):
        io.load_diagnostics(tmp_path / "missing.h5")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.file_info(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        io.load_gram(42)


def test_format_and_version_checks(tmp_path):
    path = _saved_gram(tmp_path)
    with pytest.raises(
        io.FormatError, match=r"K\.h5 is a kernelcomp 'gram' file, expected a 'run'"
    ):
        io.open_run(path)
    with pytest.raises(io.FormatError, match="expected a 'diagnostics' or 'run' file"):
        io.load_diagnostics(path)
    with h5py.File(path, "r+") as f:
        f.attrs["kernelcomp_format_version"] = "1.7"  # newer minor: still readable
    np.testing.assert_array_equal(io.load_gram(path), np.eye(3))
    with h5py.File(path, "r+") as f:
        f.attrs["kernelcomp_format_version"] = "2.0"
    with pytest.raises(
        io.FormatError, match=r"K\.h5 has 'gram' format version 2\.0.*reads version 1"
    ):
        io.load_gram(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["kernelcomp_format_version"]
    with pytest.raises(io.FormatError, match=r"version \(missing\)"):
        io.read_gram_info(path)
    with h5py.File(path, "r+") as f:
        f.attrs["kernelcomp_format"] = "spreadsheet"
    with pytest.raises(io.FormatError, match="unknown kernelcomp_format 'spreadsheet'"):
        io.file_info(path)


def test_atomic_write_leaves_nothing_after_a_failure(tmp_path):
    with pytest.raises(TypeError, match=r"entries\[1\] 'bad' must be a number"):
        io.save_diagnostics(
            tmp_path / "d.h5",
            [{"ok": np.ones(3)}, {"bad": np.array(["a", "b"], dtype=object)}],
        )
    assert os.listdir(tmp_path) == []
    good = io.save_diagnostics(tmp_path / "d.h5", [{"x": np.arange(3.0)}])
    before = good.read_bytes()
    with pytest.raises(TypeError, match="config must be JSON serialisable"):
        io.save_diagnostics(good, [{"x": np.zeros(3)}], config={"f": object()}, force=True)
    with pytest.raises(TypeError, match=r"entries\[0\] 'x'"):
        io.save_diagnostics(good, [{"x": {1, 2}}], force=True)
    assert good.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["d.h5"]


def test_failure_in_the_middle_of_a_write_leaves_the_old_file(tmp_path, monkeypatch):
    good = io.save_diagnostics(tmp_path / "d.h5", [{"x": np.arange(3.0)}])
    before = good.read_bytes()
    real = _diag_file._write_value

    def failing(group, name, value, what):
        if name == "c":  # the last value: "a" and "b" are already written
            raise _Boom("disk full")
        real(group, name, value, what)

    monkeypatch.setattr(_diag_file, "_write_value", failing)
    entries = [{"a": np.ones(2), "b": 1.0}, {"c": np.zeros(4)}]
    with pytest.raises(_Boom, match="disk full"):
        io.save_diagnostics(good, entries, force=True)
    with pytest.raises(_Boom, match="disk full"):
        io.save_diagnostics(tmp_path / "new.h5", entries)
    assert good.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["d.h5"]
    # files get the usual permissions, not mkstemp's private 0600
    mask = os.umask(0)
    os.umask(mask)
    assert (good.stat().st_mode & 0o777) == (0o666 & ~mask)


# ---------------------------------------------------------------------------
# run files
# ---------------------------------------------------------------------------
def _run_data(rng, p=30, d=4):
    X = rng.standard_normal((p, d))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    Xt = rng.standard_normal((12, d))
    yt = np.where(Xt[:, 0] > 0, 1.0, -1.0)
    return X, y, Xt, yt


def test_run_writer_round_trip(tmp_path, rng):
    X, y, Xt, yt = _run_data(rng)
    nets = [kc.FCNetwork.init(4, [16], activation="relu_unit", parameterization="mean_field",
                              seed=s) for s in range(3)]
    path = tmp_path / "run.h5"
    config = {"alpha": 1e-3, "loss": "hinge", "h": 16, "seeds": [0, 1]}
    with io.RunWriter(path, X_train=X, y_train=y, X_test=Xt, y_test=yt, config=config) as w:
        assert (tmp_path / "run.h5.partial").exists() and not path.exists()
        for i, net in enumerate(nets):
            idx = w.add_checkpoint(
                net, step=10 * i, time=0.5 * i, loss=1.0 / (i + 1),
                train_error=0.1 * i, test_error=None if i == 0 else 0.2,
                margins=y * net(X), dt=0.25, grad_norm=np.arange(3.0),
            )
            assert idx == i
        w.set_summary(stop_reason="converged", steps=20)
        assert w.n_checkpoints == 3
    assert path.exists() and not (tmp_path / "run.h5.partial").exists()
    run = io.open_run(path)
    assert run.complete and run.config == config
    assert run.summary == {"stop_reason": "converged", "steps": 20}
    np.testing.assert_array_equal(run.data["X_train"], X)
    np.testing.assert_array_equal(run.data["y_test"], yt)
    assert [c.step for c in run.checkpoints] == [0, 10, 20]
    assert [c.time for c in run.checkpoints] == [0.0, 0.5, 1.0]
    assert run.checkpoints[0].test_error is None and run.checkpoints[2].test_error == 0.2
    assert run.checkpoints[1].extra["dt"] == 0.25
    np.testing.assert_array_equal(run.checkpoints[1].extra["grad_norm"], np.arange(3.0))
    for c, net in zip(run.checkpoints, nets, strict=True):
        np.testing.assert_array_equal(c.margins, y * net(X))
        loaded = c.network
        assert loaded == net
        np.testing.assert_array_equal(loaded(X), net(X))
    # no handle is kept: the file can be opened for writing again
    with h5py.File(path, "r+") as f:
        assert f.attrs["kernelcomp_format"] == "run"
        assert len(f["checkpoints"]) == 3
    assert "step=10" in repr(run.checkpoints[1])


def test_run_writer_failure_keeps_checkpoints_in_the_partial_file(tmp_path, rng):
    X, y, _, _ = _run_data(rng)
    net = kc.FCNetwork.init(4, [8], seed=1)
    path = tmp_path / "run.h5"
    with pytest.raises(_Boom), io.RunWriter(path, X_train=X, y_train=y) as w:
        w.add_checkpoint(net, step=0, time=0.0, loss=1.0)
        w.add_checkpoint(net, step=5, time=1.0, loss=0.5)
        raise _Boom("training diverged")
    assert not path.exists()
    partial = tmp_path / "run.h5.partial"
    run = io.open_run(partial)
    assert not run.complete and [c.step for c in run.checkpoints] == [0, 5]
    assert run.checkpoints[1].network == net
    with pytest.raises(FileExistsError, match=r"run\.h5\.partial exists"):
        io.RunWriter(path, X_train=X, y_train=y)
    with io.RunWriter(path, X_train=X, y_train=y, force=True) as w:
        w.add_checkpoint(net, step=0, time=0.0, loss=1.0)
    assert io.open_run(path).complete and len(io.open_run(path).checkpoints) == 1
    with pytest.raises(FileExistsError, match=r"run\.h5 exists; pass force=True"):
        io.RunWriter(path, X_train=X, y_train=y)


def test_run_writer_errors(tmp_path, rng):
    X, y, Xt, yt = _run_data(rng)
    path = tmp_path / "run.h5"
    with pytest.raises(ValueError, match="X_test and y_test must be given together"):
        io.RunWriter(path, X_train=X, y_train=y, X_test=Xt)
    with pytest.raises(ValueError, match=r"y_train must have shape \(30,\) or \(30, K\)"):
        io.RunWriter(path, X_train=X, y_train=y[:5])
    with pytest.raises(ValueError, match="X_test has 3 features, but 4 are expected"):
        io.RunWriter(path, X_train=X, y_train=y, X_test=Xt[:, :3], y_test=yt)
    with pytest.raises(TypeError, match="config must be JSON serialisable"):
        io.RunWriter(path, X_train=X, y_train=y, config={"f": print})
    with pytest.raises(TypeError, match="config must be a mapping"):
        io.RunWriter(path, X_train=X, y_train=y, config=[1, 2])
    with pytest.raises(TypeError, match="y_train must hold numbers"):
        io.RunWriter(path, X_train=X, y_train=np.array(["a"] * 30))
    assert os.listdir(tmp_path) == []
    w = io.RunWriter(path, X_train=X, y_train=y)
    with pytest.raises(TypeError, match=r"net must be a kc\.FCNetwork"):
        w.add_checkpoint(np.ones((2, 2)), step=0, time=0.0, loss=1.0)
    with pytest.raises(TypeError, match="loss must be a real number"):
        w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=0, time=0.0, loss="low")
    with pytest.raises(ValueError, match="step must be >= 0"):
        w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=-1, time=0.0, loss=1.0)
    with pytest.raises(TypeError, match="'network' clashes"):
        w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=0, time=0.0, loss=1.0,
                         margins=np.ones(30), **{"network": 1})
    with pytest.raises(TypeError, match="margins must be a numeric array"):
        w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=0, time=0.0, loss=1.0,
                         margins=["a", "b"])
    with pytest.raises(TypeError, match="checkpoint value 'tag' must be a number"):
        w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=0, time=0.0, loss=1.0,
                         tag=object())

    class Broken:
        def to_hdf5(self, group):
            group.create_dataset("W0", data=np.ones(2))
            raise _Boom("disk full")

    with pytest.raises(_Boom, match="disk full"):
        w.add_checkpoint(Broken(), step=0, time=0.0, loss=1.0)
    # failed checkpoints leave nothing behind: the next one is number 0
    assert w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=0, time=0.0, loss=1.0) == 0
    w.close()
    assert [c.step for c in io.open_run(path).checkpoints] == [0]
    assert w.close() == path  # idempotent
    with pytest.raises(RuntimeError, match="is closed"):
        w.add_checkpoint(kc.FCNetwork.init(4, [3], seed=0), step=0, time=0.0, loss=1.0)
    with pytest.raises(RuntimeError, match="is closed"):
        w.set_summary(a=1)


# ---------------------------------------------------------------------------
# diagnostics files and file_info
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_diagnostics_round_trip(tmp_path, rng, dtype):
    ev = np.sort(rng.random(10).astype(dtype))[::-1]
    entries = [
        {"label": "init", "step": 0, "eigenvalues": ev, "mi": np.zeros(3), "skip": None},
        {"label": "final", "step": 99, "eigenvalues": ev / 2, "meta": {"a": [1, 2]},
         "flag": True},
    ]
    path = io.save_diagnostics(tmp_path / "d.h5", entries, config={"n_components": 10})
    d = io.load_diagnostics(path)
    assert d.config == {"n_components": 10} and len(d.entries) == 2
    assert d.entries[0]["label"] == "init" and d.entries[1]["step"] == 99
    assert "skip" not in d.entries[0] and d.entries[1]["meta"] == {"a": [1, 2]}
    assert d.entries[1]["flag"] is True
    assert d.entries[0]["eigenvalues"].dtype == dtype
    np.testing.assert_array_equal(d.entries[1]["eigenvalues"], ev / 2)
    with h5py.File(path, "r") as f:  # plain h5py layout
        np.testing.assert_array_equal(f["entries/000000/eigenvalues"][()], ev)
        assert f["entries/000001"].attrs["label"] == "final"


def test_diagnostics_inside_a_run_file(tmp_path, rng, monkeypatch):
    X, y, _, _ = _run_data(rng)
    path = tmp_path / "run.h5"
    with io.RunWriter(path, X_train=X, y_train=y, config={"alpha": 2.0}) as w:
        w.add_checkpoint(kc.FCNetwork.init(4, [5], seed=0), step=0, time=0.0, loss=1.0)
    with pytest.raises(io.FormatError, match=r"holding 0 diagnostics groups \[\]"):
        io.load_diagnostics(path)
    ev = np.linspace(2.0, 0.5, 4)
    io.add_run_diagnostics(path, [{"label": "init", "eigenvalues": ev}], config={"k": 4})
    d = io.load_diagnostics(path)
    assert d.config == {"k": 4} and d.entries[0]["label"] == "init"
    np.testing.assert_array_equal(d.entries[0]["eigenvalues"], ev)
    assert d.attrs["kernelcomp_format"] == "diagnostics"
    # the run itself is untouched
    run = io.open_run(path)
    assert run.config == {"alpha": 2.0} and len(run.checkpoints) == 1
    np.testing.assert_array_equal(run.data["X_train"], X)
    with pytest.raises(FileExistsError, match="already holds diagnostics 'kpca'"):
        io.add_run_diagnostics(path, [{"v": 1}])
    io.add_run_diagnostics(path, [{"v": 1}], name="other")
    assert io.file_info(path)["diagnostics"] == ["kpca", "other"]
    with pytest.raises(io.FormatError, match=r"holding 2 diagnostics groups .*choose one"):
        io.load_diagnostics(path)
    assert io.load_diagnostics(path, name="other").entries == [{"v": 1}]
    with pytest.raises(io.FormatError, match="holds no diagnostics 'third'"):
        io.load_diagnostics(path, name="third")
    io.add_run_diagnostics(path, [{"v": 2}], name="other", force=True)
    assert io.load_diagnostics(path, name="other").entries == [{"v": 2}]
    # a failure while adding leaves the run file as it was
    before = path.read_bytes()
    failing = lambda *a: (_ for _ in ()).throw(_Boom("full"))  # noqa: E731
    monkeypatch.setattr(_diag_file, "_write_entries", failing)
    with pytest.raises(_Boom):
        io.add_run_diagnostics(path, [{"v": 3}], name="third")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]
    monkeypatch.undo()
    diag = io.save_diagnostics(tmp_path / "d.h5", [{"v": 1}])
    with pytest.raises(io.FormatError, match="kernelcomp 'diagnostics' file, expected a 'run'"):
        io.add_run_diagnostics(diag, [{"v": 1}])
    with pytest.raises(io.FormatError, match="diagnostics file: name='x' does not apply"):
        io.load_diagnostics(diag, name="x")
    with pytest.raises(ValueError, match="name must be a non-empty string without '/'"):
        io.add_run_diagnostics(path, [{"v": 1}], name="a/b")


def test_save_diagnostics_errors(tmp_path):
    with pytest.raises(TypeError, match="entries must be a sequence of mappings, got dict"):
        io.save_diagnostics(tmp_path / "d.h5", {"a": 1})
    with pytest.raises(TypeError, match=r"entries\[0\] must be a mapping, got int"):
        io.save_diagnostics(tmp_path / "d.h5", [1])
    with pytest.raises(TypeError, match="invalid name 'a/b'"):
        io.save_diagnostics(tmp_path / "d.h5", [{"a/b": 1}])
    with pytest.raises(TypeError, match="config must be a mapping"):
        io.save_diagnostics(tmp_path / "d.h5", [], config="x")
    assert os.listdir(tmp_path) == []


def test_file_info_for_every_format(tmp_path, rng):
    X, y, _, _ = _run_data(rng)
    io.compute_gram_file(kc.NTK(depth=2), X, None, tmp_path / "K.h5")
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y, config={"a": 1}) as w:
        w.add_checkpoint(kc.FCNetwork.init(4, [5], seed=0), step=3, time=2.0, loss=0.5)
    io.save_diagnostics(tmp_path / "d.h5", [{"label": "x", "v": np.ones(4), "rank": 2.5}])
    g = io.file_info(tmp_path / "K.h5")
    assert g["format"] == "gram" and g["shape"] == [30, 30] and g["blocks"] == "1/1"
    assert g["kernel"] == kc.NTK(depth=2).to_dict() and g["complete"] is True
    r = io.file_info(tmp_path / "run.h5")
    assert r["format"] == "run" and r["config"] == {"a": 1}
    assert r["data"] == {"X_train": [30, 4], "y_train": [30]}
    assert r["checkpoints"] == [{"step": 3, "time": 2.0, "loss": 0.5}]
    d = io.file_info(tmp_path / "d.h5")
    assert d["entries"] == [{"label": "x", "arrays": {"v": [4]}, "values": {"rank": 2.5}}]
    for info in (g, r, d):
        assert info["kernelcomp_version"] == kc.__version__
        assert info["format_version"] == "1.0"


def test_read_network_from_any_file_that_holds_one(tmp_path, rng):
    X, y, _, _ = _run_data(rng)
    nets = [kc.FCNetwork.init(4, [5], seed=s) for s in range(3)]
    assert _read_network(nets[0].save(tmp_path / "net.h5")) == nets[0]
    assert _read_network(nets[1].save(tmp_path / "net.npz")) == nets[1]
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y) as w:
        for i, net in enumerate(nets):
            w.add_checkpoint(net, step=i, time=float(i), loss=1.0)
    assert _read_network(tmp_path / "run.h5") == nets[2]  # the last checkpoint by default
    assert _read_network(tmp_path / "run.h5", checkpoint=0) == nets[0]
    assert _read_network(tmp_path / "run.h5", checkpoint=-3) == nets[0]
    with pytest.raises(ValueError, match="has 3 checkpoints; checkpoint 3 is out of range"):
        _read_network(tmp_path / "run.h5", checkpoint=3)
    with pytest.raises(ValueError, match="checkpoint -4 is out of range"):
        _read_network(tmp_path / "run.h5", checkpoint=-4)
    # the partial file of a run that did not finish
    with pytest.raises(_Boom), io.RunWriter(tmp_path / "cut.h5", X_train=X, y_train=y) as w:
        w.add_checkpoint(nets[1], step=0, time=0.0, loss=1.0)
        raise _Boom
    assert _read_network(tmp_path / "cut.h5.partial") == nets[1]
    state = {"0.weight": np.ones((3, 4)), "0.bias": np.zeros(3), "2.weight": np.ones((1, 3))}
    np.savez(tmp_path / "sd.npz", **state)
    assert _read_network(tmp_path / "sd.npz", activation="tanh").activation == "tanh"
    with pytest.raises(ValueError, match=r"activation applies to .*\.npz files only"):
        _read_network(tmp_path / "run.h5", activation="tanh")


def test_read_network_names_what_it_cannot_read(tmp_path):
    gram = io.save_gram(tmp_path / "K.h5", np.eye(2))
    with pytest.raises(io.FormatError, match=r"K\.h5 is not a kernelcomp network or run file "
                       r"\(its format is 'gram'\)"):
        _read_network(gram)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.ones(2)
    with pytest.raises(io.FormatError, match="it has no kernelcomp_format"):
        _read_network(tmp_path / "plain.h5")
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(io.FormatError, match="is not an HDF5 file"):
        _read_network(tmp_path / "bad.h5")
    (tmp_path / "net.txt").write_text("")
    with pytest.raises(ValueError, match=r"unsupported network file type '\.txt'"):
        _read_network(tmp_path / "net.txt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        _read_network(tmp_path / "missing.h5")
    with pytest.raises(TypeError, match="checkpoint must be an integer"):
        _read_network(gram, checkpoint=1.0)


# ---------------------------------------------------------------------------
# read_array
# ---------------------------------------------------------------------------
def test_read_array_formats(tmp_path, rng):
    A = rng.standard_normal((6, 3))
    np.save(tmp_path / "a.npy", A)
    np.testing.assert_array_equal(io.read_array(tmp_path / "a.npy"), A)
    np.savez(tmp_path / "one.npz", data=A)
    np.testing.assert_array_equal(io.read_array(tmp_path / "one.npz"), A)
    np.savez(tmp_path / "two.npz", X=A, y=A[:, 0])
    np.testing.assert_array_equal(io.read_array(tmp_path / "two.npz"), A)
    np.testing.assert_array_equal(io.read_array(tmp_path / "two.npz", key="y"), A[:, 0])
    np.savetxt(tmp_path / "h.csv", A, delimiter=",", header="a,b,c", comments="")
    np.testing.assert_allclose(io.read_array(tmp_path / "h.csv"), A, rtol=1e-15)
    np.savetxt(tmp_path / "n.csv", A[:1], delimiter=",")
    assert io.read_array(tmp_path / "n.csv").shape == (1, 3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["group/inner"] = A
    np.testing.assert_array_equal(io.read_array(tmp_path / "a.h5"), A)
    np.testing.assert_array_equal(io.read_array(tmp_path / "a.h5", key="group/inner"), A)


def test_read_array_errors(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match=r"nope\.npy: no such file"):
        io.read_array(tmp_path / "nope.npy")
    np.savez(tmp_path / "two.npz", a=np.ones(2), b=np.ones(2))
    with pytest.raises(ValueError, match=r"INPUT: .*two\.npz holds 2 arrays \['a', 'b'\]; choose"):
        io.read_array(tmp_path / "two.npz")
    with pytest.raises(ValueError, match=r"--data: .* has no array 'c'"):
        io.read_array(tmp_path / "two.npz", key="c", name="--data")
    np.save(tmp_path / "a.npy", np.ones(2))
    with pytest.raises(ValueError, match=r"a \.npy file holds one array"):
        io.read_array(tmp_path / "a.npy", key="x")
    (tmp_path / "a.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'.*expected \.npy"):
        io.read_array(tmp_path / "a.txt")
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match=r"cannot read .* as numeric CSV"):
        io.read_array(tmp_path / "bad.csv")
    # numbers with another separator are data, not a header: refused with the reason
    for sep, word in ((";", "semicolons"), ("\t", "tabs")):
        (tmp_path / "semi.csv").write_text(f"1e-3{sep}2{sep}3\n4{sep}5{sep}6\n")
        with pytest.raises(ValueError, match=f"separated by {word}, CSV files must use commas"):
            io.read_array(tmp_path / "semi.csv")
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.npy as \.npy"):
        io.read_array(tmp_path / "bad.npy")
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        io.read_array(tmp_path / "bad.h5")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.create_group("empty")
    with pytest.raises(ValueError, match="holds no datasets"):
        io.read_array(tmp_path / "e.h5")
    with pytest.raises(ValueError, match="has no dataset 'empty'"):
        io.read_array(tmp_path / "e.h5", key="empty")
