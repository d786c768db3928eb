"""Faults of issue 28: concurrent writers, stale compiled code, hostile files, full disks.

Each test injects its fault deterministically (a monkeypatched step, a hook
module, a lock held by the test, a tiny tmpfs) and checks what the user gets:
a clear error naming the way out, never a silently wrong or lost result, never
a crash. Crashes are observed in subprocesses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import io

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.pop("KERNELCOMP_TRACEBACK", None)
    env.update(extra)
    return env


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelcomp", *args], cwd=cwd, env=env or _env(),
        capture_output=True, text=True, timeout=timeout,
    )


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str):
    """A tmpfs of ``size`` mounted on ``folder`` (skips where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small file system for a full disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no permission): "
                    f"{done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# ---------------------------------------------------------------------------
# item 4: stale compiled code with NUMBA_CACHE_DIR
# ---------------------------------------------------------------------------
_PROBE = """
from kernelcomp._kernels._config import jit
from kernelcomp._kernels.activations import RELU, phi


@jit
def probe(z):
    return phi(z, RELU)
"""


def test_a_changed_activation_is_compiled_again_with_numba_cache_dir(tmp_path):
    """numba keeps the cache in NUMBA_CACHE_DIR there; a changed helper file must reach it."""
    pkg = tmp_path / "src" / "kernelcomp"
    shutil.copytree(ROOT / "kernelcomp", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_kernels" / "probe.py").write_text(_PROBE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    env.pop("KERNELCOMP_NUMBA_CACHE", None)
    code = "from kernelcomp._kernels.probe import probe; print(probe(2.0))"

    def value() -> float:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.strip())

    assert value() == 2.0
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))  # numba cached it there
    acts = pkg / "_kernels" / "activations.py"
    text = acts.read_text()
    old = "        return z if z > 0.0 else 0.0\n"
    assert text.count(old) == 1
    acts.write_text(text.replace(old, "        return 7.0 * z if z > 0.0 else 0.0\n"))
    assert value() == 14.0


def _X(n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


# ---------------------------------------------------------------------------
# item 3: concurrent writers
# ---------------------------------------------------------------------------
def test_a_second_gram_writer_of_one_output_is_refused_while_the_first_runs(tmp_path):
    """Two `gram --force` on one output: the second is refused, the first's file is its own."""
    out = tmp_path / "K.h5"
    X, X2 = _X(), _X(seed=1)
    kernel = kc.NTK(depth=2)
    second: list[BaseException] = []

    def meanwhile() -> bool:  # runs between two blocks of the first writer
        if not second:
            try:
                io.compute_gram_file(kernel, X2, None, out, force=True, block_rows=100)
            except BaseException as exc:
                second.append(exc)
            else:
                second.append(AssertionError("the second writer was not refused"))
        return False

    io.compute_gram_file(kernel, X, None, out, force=True, block_rows=100, should_stop=meanwhile)
    assert isinstance(second[0], BlockingIOError), second[0]
    assert "being written by another" in str(second[0])
    np.testing.assert_array_equal(io.load_gram(out), kernel(X))
    assert io.read_gram_info(out).input_hash == io.hash_inputs(X)
    assert not (tmp_path / "K.h5.lock").exists()  # released and removed
    # and a later --resume trusts only a file of its own inputs
    with pytest.raises(io.FormatError, match="other inputs"):
        io.compute_gram_file(kernel, X2, None, out, resume=True, block_rows=100)


def _run_file(path: Path, **kw) -> Path:
    X, y = _X(6, 2), np.array([1.0, -1.0] * 3)
    with io.RunWriter(path, X_train=X, y_train=y, **kw) as w:
        w.add_checkpoint(kc.FCNetwork.init(2, [3], seed=0), step=0, time=0.0, loss=1.0)
    return path


def test_concurrent_diagnostics_of_one_run_file_are_never_lost(tmp_path, monkeypatch):
    """Two `kpca --into-run` at once: none exits 0 with its group lost."""
    from kernelcomp.io import _diag_file

    run = _run_file(tmp_path / "run.h5")
    entries = [{"eigenvalues": np.ones(2)}]
    inner: list[BaseException | None] = []
    write = _diag_file._write_entries
    monkeypatch.setattr(_diag_file, "_LOCK_WAIT", 0.2)

    def write_then_race(g, *args):
        if not inner:  # the second writer starts while the first is writing its copy
            try:
                io.add_run_diagnostics(run, entries, name="second")
                inner.append(None)
            except BlockingIOError as exc:
                inner.append(exc)
        write(g, *args)

    monkeypatch.setattr(_diag_file, "_write_entries", write_then_race)
    io.add_run_diagnostics(run, entries, name="first")
    names = io.file_info(run)["diagnostics"]
    assert "first" in names
    # the second either failed loudly or its group is there too
    assert isinstance(inner[0], BlockingIOError) or "second" in names, (inner, names)
    assert isinstance(inner[0], BlockingIOError)
    monkeypatch.setattr(_diag_file, "_write_entries", write)
    io.add_run_diagnostics(run, entries, name="second")  # once the first is done: added
    assert sorted(io.file_info(run)["diagnostics"]) == ["first", "second"]


def test_diagnostics_are_not_added_to_a_run_still_being_trained(tmp_path):
    X, y = _X(6, 2), np.array([1.0, -1.0] * 3)
    w = io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    w.add_checkpoint(kc.FCNetwork.init(2, [3], seed=0), step=0, time=0.0, loss=1.0)
    with pytest.raises(io.FormatError, match="did not finish"):
        io.add_run_diagnostics(w.partial, [{"eigenvalues": np.ones(2)}])
    with pytest.raises(BlockingIOError, match="being written by another"):
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y, force=True)
    w.close()
    assert io.open_run(tmp_path / "run.h5").complete
    _run_file(tmp_path / "run.h5", force=True)  # the lock went with the first writer


# ---------------------------------------------------------------------------
# item 5: reading what it should not; replacing what is not a file
# ---------------------------------------------------------------------------
def _external_gram(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(9, dtype=np.float64).tobytes())
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    with h5py.File(path, "r+") as f:
        del f["gram"]
        f.create_dataset("gram", shape=(3, 3), dtype="f8", external=[(str(secret), 0, 72)])
    return path


def test_external_storage_is_never_followed(tmp_path):
    path = _external_gram(tmp_path)
    with pytest.raises(io.FormatError, match="external storage"):
        io.load_gram(path)
    with h5py.File(path, "r+") as f:  # the record too (info reads it)
        del f["completed_blocks"]
        f.create_dataset("completed_blocks", shape=(1,), dtype="u1",
                         external=[(str(tmp_path / "secret.bin"), 0, 1)])
    with pytest.raises(io.FormatError, match="external storage"):
        io.file_info(path)
    done = _cli("kpca", str(path), "-o", str(tmp_path / "D.h5"), "--eigenvectors",
                cwd=tmp_path)
    assert done.returncode == 2 and "external storage" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_virtual_datasets_and_external_links_are_refused(tmp_path):
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f["X"] = _X(5, 2)
    virtual = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(5, 2), dtype="f8")
    layout[:] = h5py.VirtualSource(str(src), "X", shape=(5, 2))
    with h5py.File(virtual, "w") as f:
        f.create_virtual_dataset("X", layout)
    with pytest.raises(ValueError, match="virtual dataset"):
        io.read_array(virtual)
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f["X"] = h5py.ExternalLink(str(src), "X")
    with pytest.raises(ValueError, match="external link"):
        io.read_array(linked, key="X")


def test_force_never_replaces_a_fifo_or_a_device(tmp_path):
    fifo = tmp_path / "out.h5"
    os.mkfifo(fifo)
    for force in (False, True):
        with pytest.raises(ValueError, match="a FIFO, not a regular file"):
            io.save_gram(fifo, np.eye(2), force=force)
    link = tmp_path / "null.h5"
    link.symlink_to(os.devnull)
    with pytest.raises(ValueError, match="a character device"):
        io.save_gram(link, np.eye(2), force=True)
    done = _cli("gram", "X.npy", "-o", str(fifo), "--force", cwd=tmp_path)
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr
    assert fifo.is_fifo() and link.is_symlink()


# ---------------------------------------------------------------------------
# item 6: silent wrong numbers become errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{"depth": 200, "weight_std": 10.0},
                                    {"depth": 1, "weight_std": 1e150}])
def test_a_kernel_that_overflows_is_refused_not_nan(params, tmp_path):
    X = _X(20, 3)
    for cls in (kc.NTK, kc.NNGP):
        with pytest.raises(ValueError, match="overflows on these inputs"):
            cls(**params)(X)
    with pytest.raises(ValueError, match="overflows on these inputs"):
        kc.NTKRegressor(kernel=kc.NTK(**params)).fit(X, X[:, 0])
    out = tmp_path / "K.h5"
    with pytest.raises(ValueError, match="overflows on these inputs"):
        io.compute_gram_file(kc.NTK(**params), X, None, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no empty partial left behind
    K = kc.NTK(depth=200, weight_std=1.0)(X)  # deep but stable: finite, as before
    assert np.isfinite(K).all()


def test_a_network_gram_with_nan_is_refused_and_not_written(tmp_path):
    net = kc.FCNetwork.init(3, [4], seed=0)
    for W in net.weights:
        W *= 1e160  # finite weights, infinite outputs
    out = tmp_path / "K.h5"
    with pytest.raises(ValueError, match="NaN or infinite entries"):
        io.compute_gram_file(kc.EmpiricalNTK(net), _X(10, 3), None, out)
    assert not out.exists() and not (tmp_path / "K.h5.partial").exists()


def test_gram_refuses_an_out_that_is_its_input():
    A = _X(6, 6)
    with pytest.raises(ValueError, match="out shares memory with X"):
        kc.gram(kc.NTK(), A, out=A)
    B = _X(6, 6, seed=1)
    with pytest.raises(ValueError, match="out shares memory with Y"):
        kc.gram(kc.NTK(), A, B, out=B)
    out = np.empty((6, 6))
    np.testing.assert_array_equal(kc.gram(kc.NTK(), A, out=out), kc.NTK()(A))


def test_dask_falkon_refuses_nan_targets_and_complex_data():
    da = pytest.importorskip("dask.array")
    X = _X(40, 3)
    y = X[:, 0].copy()
    y[5] = np.nan
    est = kc.NTKRegressor(kernel=kc.NTK(), solver="falkon", n_centers=10, random_state=0)
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        est.fit(da.from_array(X, chunks=(20, 3)), da.from_array(y, chunks=20))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        est.fit(da.from_array(X + 1j, chunks=(20, 3)), da.from_array(X[:, 0], chunks=20))


# ---------------------------------------------------------------------------
# item 7: full disks and hostile sizes
# ---------------------------------------------------------------------------
def test_gram_on_a_full_disk_is_one_line_not_a_crash(tmp_path):
    np.save(tmp_path / "X.npy", _X(1000, 5))
    with _tmpfs(tmp_path / "small", "1m") as small:
        done = _cli("gram", "X.npy", "-o", str(small / "K.h5"), cwd=tmp_path)
        assert done.returncode == 2, (done.returncode, done.stderr)
        assert "not enough free space" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in small.iterdir()) == []  # nothing left behind
        # the disk fills after the check (another process): the blocks are reserved first
        probe = textwrap.dedent(f"""
            import sys
            from kernelcomp.io import _gram_file
            from kernelcomp.cli import main
            _gram_file.check_free_space = lambda *a: None  # the check passes, the disk is full
            sys.exit(main(["gram", "X.npy", "-o", {str(small / "K.h5")!r}]))
        """)
        done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (done.returncode, done.stderr)
        assert "not enough free space" in done.stderr and "Traceback" not in done.stderr


def test_a_run_on_a_full_disk_stops_with_an_error_not_a_crash(tmp_path):
    with _tmpfs(tmp_path / "small", "3m") as small:
        probe = textwrap.dedent(f"""
            import numpy as np, kernelcomp as kc
            X, y = np.ones((4, 50)), np.array([1.0, -1.0, 1.0, -1.0])
            net = kc.FCNetwork.init(50, [1000], seed=0)  # 400 KB a checkpoint
            w = kc.io.RunWriter({str(small / "run.h5")!r}, X_train=X, y_train=y)
            try:
                for i in range(100):
                    w.add_checkpoint(net, step=i, time=float(i), loss=1.0)
            except OSError as exc:
                print("stopped:", exc)
            print(len(kc.io.open_run(w.partial).checkpoints))
        """)
        done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (done.returncode, done.stderr)
        assert "stopped: not enough free space" in done.stdout, done.stdout
        assert int(done.stdout.split()[-1]) >= 2  # the checkpoints before the full disk


def test_a_small_gram_file_declaring_a_huge_matrix_is_refused(tmp_path):
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    with h5py.File(path, "r+") as f:  # 8 KB declaring 40000 x 40000 float64 (12.8 GB)
        del f["gram"]
        f.create_dataset("gram", shape=(40000, 40000), dtype="f8", chunks=(256, 256))
        f.attrs["block_rows"] = 40000
    assert path.stat().st_size < 100_000
    probe = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the test machine survives
        from kernelcomp import io
        try:
            io.load_gram({str(path)!r})
        except io.FormatError as exc:
            print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "declares shape (40000, 40000)" in done.stdout


def test_an_npy_header_declaring_a_huge_array_is_refused(tmp_path):
    path = tmp_path / "X.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
        )
        fh.write(b"\0" * 64)
    with pytest.raises(ValueError, match=r"declares an array of shape \(1000000, 1000000\)"):
        io.read_array(path)
    z = tmp_path / "X.npz"
    np.savez(z, X=np.ones(3))
    with pytest.raises(ValueError, match="declares shape"):  # a member's header likewise
        _forge_npz(z, tmp_path / "forged.npz")
        io.read_array(tmp_path / "forged.npz")


def _forge_npz(src: Path, dst: Path) -> None:
    import io as _io
    import zipfile

    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("X.npy", buf.getvalue() + b"\0" * 64)


# ---------------------------------------------------------------------------
# item 8: dead ends and messages
# ---------------------------------------------------------------------------
def test_an_unreadable_partial_names_force(tmp_path):
    out = tmp_path / "K.h5"
    (tmp_path / "K.h5.partial").write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(io.FormatError, match=r"--force"):
        io.compute_gram_file(kc.NTK(), _X(20, 3), None, out, resume=True)
    io.compute_gram_file(kc.NTK(), _X(20, 3), None, out, force=True)  # and --force works
    assert io.read_gram_info(out).complete


def _interrupted(tmp_path: Path, X: np.ndarray) -> Path:
    out = tmp_path / "K.h5"
    with pytest.raises(io.GramInterrupted):
        io.compute_gram_file(kc.NTK(), X, None, out, block_rows=100, should_stop=lambda: True)
    return out.with_name("K.h5.partial")


def test_resume_on_an_incomplete_final_file_is_an_error_not_wrote(tmp_path):
    X = _X()
    np.save(tmp_path / "X.npy", X)
    partial = _interrupted(tmp_path, X)
    os.replace(partial, tmp_path / "K.h5")  # an incomplete file under the final name
    done = _cli("gram", "X.npy", "-o", "K.h5", "--resume", "--block-rows", "100", cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "incomplete" in done.stderr and "--force" in done.stderr
    assert "wrote" not in done.stdout


@pytest.mark.parametrize("tamper", ["short record", "record 2-D", "block_rows text", "3-D gram"])
def test_a_tampered_partial_is_a_format_error_not_a_traceback(tmp_path, tamper):
    X = _X()
    partial = _interrupted(tmp_path, X)
    with h5py.File(partial, "r+") as f:
        if tamper == "short record":
            del f["completed_blocks"]
            f["completed_blocks"] = np.ones(1, np.uint8)
        elif tamper == "record 2-D":
            del f["completed_blocks"]
            f["completed_blocks"] = np.zeros((3, 1), np.uint8)
        elif tamper == "block_rows text":
            f.attrs["block_rows"] = "many"
        else:
            del f["gram"]
            f["gram"] = np.zeros((300, 300, 2))
    with pytest.raises(io.FormatError, match="--force"):
        io.compute_gram_file(kc.NTK(), X, None, tmp_path / "K.h5", resume=True)


@pytest.mark.parametrize("shape", [(), (3, 3, 3), (9,)])
def test_a_gram_dataset_that_is_not_2d_is_refused(tmp_path, shape):
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    with h5py.File(path, "r+") as f:
        del f["gram"]
        f["gram"] = np.zeros(shape)
    with pytest.raises(io.FormatError, match="a Gram matrix is a 2-D"):
        io.load_gram(path)
    done = _cli("info", str(path), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_a_file_open_for_writing_elsewhere_is_reported_as_such(tmp_path):
    if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() in ("FALSE", "0"):
        pytest.skip("HDF5 file locking is turned off (HDF5_USE_FILE_LOCKING=FALSE)")
    path = tmp_path / "K.h5"
    io.save_gram(path, np.eye(3))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import h5py, sys; f = h5py.File({str(path)!r}, 'r+'); print('open', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "open"  # synchronised, not timed
        with pytest.raises(BlockingIOError, match="open for writing in another process"):
            io.read_gram_info(path)
        done = _cli("info", str(path), cwd=tmp_path)
        assert done.returncode == 2 and "open for writing" in done.stderr, done.stderr
        assert "not an HDF5 file" not in done.stderr
    finally:
        holder.communicate("", timeout=60)


_INTERRUPT_AT_IMPORT = """
import sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:  # Ctrl-C arrives while this module is being imported
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, Interrupt())
from kernelcomp.cli import main  # as the console script does
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize("module", ["numpy", "h5py"])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, module):
    code = _INTERRUPT_AT_IMPORT.format(module=module, argv=["info", "K.h5"])
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == "kernelcomp: interrupted"


def test_files_are_fsynced_before_the_final_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def record_replace(src, dst):
        events.append(("replace", os.fspath(src)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    io.compute_gram_file(kc.NTK(), _X(20, 3), None, tmp_path / "K.h5")
    io.save_gram(tmp_path / "S.h5", np.eye(2))
    _run_file(tmp_path / "run.h5")
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 3
    for _, src in renames:
        before = events[: events.index(("replace", src))]
        assert ("fsync", str(Path(src).resolve())) in before, (src, events)


def test_every_reader_refuses_a_dataset_that_stores_less_than_it_declares(tmp_path):
    """A declared (4000, 4000) float64 with no chunk written: refused, not 128 MB of zeros."""

    def hollow(g, name):
        if name in g:
            del g[name]
        g.create_dataset(name, shape=(4000, 4000), dtype="f8", chunks=(500, 500))

    inputs = tmp_path / "X.h5"
    with h5py.File(inputs, "w") as f:
        hollow(f, "X")
    with pytest.raises(ValueError, match="declares shape"):
        io.read_array(inputs)
    diag = tmp_path / "D.h5"
    io.save_diagnostics(diag, [{"eigenvalues": np.ones(2)}])
    with h5py.File(diag, "r+") as f:
        hollow(f["entries"][next(iter(f["entries"]))], "eigenvalues")
    with pytest.raises(io.FormatError, match="declares shape"):
        io.load_diagnostics(diag)
    net_path = tmp_path / "net.h5"
    net = kc.FCNetwork.init(3, [4], seed=0)
    net.save(net_path)
    with h5py.File(net_path, "r+") as f:
        hollow(f, "W0")
    with pytest.raises(ValueError, match="declares shape"):
        kc.FCNetwork.load(net_path)
