"""kernelcomp._h5: one atomic write and one header for every file kernelcomp writes."""

from __future__ import annotations

import os
import stat

import h5py
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import _h5, io


class _Boom(Exception):
    pass


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    """Run the test under a known umask (two of them: the result must follow it)."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _plain_mode(folder) -> int:
    """The mode of a plainly created file in ``folder`` under the current umask."""
    plain = folder / "plain.txt"
    with open(plain, "w") as fh:
        fh.write("x")
    mode = _mode(plain)
    plain.unlink()
    return mode


def _net():
    return kc.FCNetwork.init(3, [5], seed=0)


# ---------------------------------------------------------------------------
# permissions: every writer gives the mode of a plainly created file
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["npz", "h5", "hdf5"])
def test_network_files_get_the_usual_mode(tmp_path, umask, ext):
    expected = _plain_mode(tmp_path)
    assert expected == 0o666 & ~umask
    path = _net().save(tmp_path / f"net.{ext}")
    assert _mode(path) == expected  # not mkstemp's private 0600
    assert os.listdir(tmp_path) == [f"net.{ext}"]
    assert kc.FCNetwork.load(path) == _net()


def test_gram_and_other_files_get_the_usual_mode(tmp_path, umask):
    expected = _plain_mode(tmp_path)
    X = np.random.default_rng(0).standard_normal((6, 3))
    written = [
        io.save_gram(tmp_path / "saved.h5", kc.NTK()(X)),
        io.compute_gram_file(kc.NTK(), X, None, tmp_path / "computed.h5").path,
        io.save_diagnostics(tmp_path / "diag.h5", [{"x": np.arange(3.0)}]),
    ]
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=np.ones(6)) as w:
        w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)
    written.append(w.path)
    for path in written:
        assert _mode(path) == expected, path


def test_rewriting_a_run_file_keeps_its_mode(tmp_path):
    X = np.ones((4, 3))
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=np.ones(4)) as w:
        w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)
    os.chmod(w.path, 0o640)
    io.add_run_diagnostics(w.path, [{"eigenvalues": np.ones(2)}])
    assert _mode(w.path) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]


# ---------------------------------------------------------------------------
# failures leave nothing behind
# ---------------------------------------------------------------------------
def test_atomic_write_success_and_failure(tmp_path, umask):
    target = tmp_path / "out.bin"
    with _h5.atomic_write(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert os.path.basename(tmp).startswith("out.bin.tmp-")
        with open(tmp, "wb") as fh:
            fh.write(b"new")
        assert not target.exists()  # renamed only at the end
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o666 & ~umask
    with pytest.raises(_Boom), _h5.atomic_write(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise _Boom
    assert target.read_bytes() == b"new"  # the old file is untouched
    assert os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(_Boom), _h5.atomic_write(tmp_path / "fresh.bin"):
        raise _Boom
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("ext", ["npz", "h5", "hdf5"])
def test_failed_network_save_leaves_no_file(tmp_path, monkeypatch, ext):
    def boom(*args, **kwargs):
        raise _Boom("disk full")

    if ext == "npz":
        monkeypatch.setattr(np, "savez", boom)
    else:
        monkeypatch.setattr(kc.FCNetwork, "to_hdf5", boom)
    with pytest.raises(_Boom, match="disk full"):
        _net().save(tmp_path / f"net.{ext}")
    assert os.listdir(tmp_path) == []


def test_failed_network_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = _net().save(tmp_path / "net.h5")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise _Boom("disk full")

    monkeypatch.setattr(kc.FCNetwork, "to_hdf5", boom)
    with pytest.raises(_Boom):
        kc.FCNetwork.init(3, [7], seed=1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.h5"]


def test_failed_gram_save_leaves_no_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise _Boom("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(_Boom):
        io.save_gram(tmp_path / "K.h5", np.eye(3))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# headers: one stamp, and a network file is named as such
# ---------------------------------------------------------------------------
def test_network_and_gram_files_share_the_header(tmp_path):
    net_path = _net().save(tmp_path / "net.h5")
    gram_path = io.save_gram(tmp_path / "K.h5", np.eye(2))
    for path, fmt in ((net_path, "network"), (gram_path, "gram")):
        with h5py.File(path, "r") as f:
            assert set(f.attrs) >= {
                "kernelcomp_format",
                "kernelcomp_format_version",
                "kernelcomp_version",
                "created",
            }
            assert f.attrs["kernelcomp_format"] == fmt
            assert f.attrs["kernelcomp_version"] == kc.__version__
            assert f.attrs["created"].endswith("+00:00")


@pytest.mark.parametrize(
    ("reader", "want"),
    [
        (io.load_gram, "'gram'"),
        (io.read_gram_info, "'gram'"),
        (io.open_run, "'run'"),
        (io.load_diagnostics, "'diagnostics' or 'run'"),
    ],
)
def test_readers_name_a_network_file(tmp_path, reader, want):
    path = _net().save(tmp_path / "net.h5")
    with pytest.raises(
        io.FormatError,
        match=(
            rf"net\.h5 is a kernelcomp 'network' file, expected a {want} file "
            r"\(written by FCNetwork\.save; read it with kc\.FCNetwork\.load\)"
        ),
    ):
        reader(path)


def test_file_info_still_describes_network_files(tmp_path):
    path = _net().save(tmp_path / "net.h5")
    info = io.file_info(path)
    assert info["format"] == "network"
    assert info["widths"] == [5]


# ---------------------------------------------------------------------------
# the shared layer itself: registry, header check, path policy, codecs
# ---------------------------------------------------------------------------
def test_stamp_takes_the_registry_version_and_the_check_reads_it(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        _h5.stamp(f, "run")
        assert f.attrs["kernelcomp_format_version"] == _h5.FORMAT_VERSIONS["run"]
        assert _h5._check_header(f, path, "run") == "run"
        assert _h5._check_header(f, path, None) == "run"
        with pytest.raises(_h5.FormatError, match=r"x\.h5 is a kernelcomp 'run' file, expected "
                           r"a 'gram' or 'diagnostics' file$"):
            _h5._check_header(f, path, ("gram", "diagnostics"))
        f.attrs["kernelcomp_format_version"] = "2.0"
        with pytest.raises(_h5.FormatError, match=r"'run' format version 2\.0, but this "
                           r"kernelcomp \(.*\) reads version 1\.x only"):
            _h5._check_header(f, path, "run")
        f.attrs["kernelcomp_format"] = "weights"
        with pytest.raises(_h5.FormatError, match="unknown kernelcomp_format 'weights'"):
            _h5._check_header(f, path, None)
        del f.attrs["kernelcomp_format"]
        with pytest.raises(_h5.FormatError, match="is not a kernelcomp file"):
            _h5._check_header(f, path, None)
    assert _h5._file_format(path) is None
    assert _h5._file_format(_net().save(tmp_path / "net.h5")) == "network"
    assert io.FormatError is _h5.FormatError and io.FORMAT_VERSIONS is _h5.FORMAT_VERSIONS


def test_output_path_policy(tmp_path):
    new = tmp_path / "new.h5"
    assert _h5._output_path(str(new), force=False) == new
    new.write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"new\.h5 exists; pass force=True \(--force\)"):
        _h5._output_path(new, force=False)
    assert _h5._output_path(new, force=True) == new
    with pytest.raises(IsADirectoryError, match="is a directory, expected a file name"):
        _h5._output_path(tmp_path, force=True)
    with pytest.raises(FileNotFoundError, match=r"directory .*nowhere does not exist"):
        _h5._output_path(tmp_path / "nowhere" / "K.h5", force=True)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike, got int"):
        _h5._output_path(3, force=True)
    partial = _h5._partial_path(new)
    assert partial.name == "new.h5.partial"
    _h5._refuse_partial(partial, False, "(never raised: no such file)")
    partial.write_bytes(b"x")
    _h5._refuse_partial(partial, True, "(force: not refused)")
    with pytest.raises(FileExistsError, match=r"new\.h5\.partial exists \(why\)$"):
        _h5._refuse_partial(partial, False, "(why)")


def test_value_codecs_round_trip(tmp_path):
    values = {
        "label": "init",
        "step": np.int64(3),
        "flag": True,
        "rate": 0.25,
        "options": {"k": [1, 2], "path": tmp_path, "x": np.float32(0.5)},
        "v": np.arange(3.0),
        "skipped": None,
    }
    with h5py.File(tmp_path / "v.h5", "w") as f:
        g = f.create_group("g")
        for name, value in values.items():
            _h5._write_value(g, name, value, "entry")
        with pytest.raises(TypeError, match=r"entry 'bad' must be a number, a string, a dict or "
                           r"a numeric array, got list of dtype <U1"):
            _h5._write_value(g, "bad", ["a"], "entry")
        with pytest.raises(TypeError, match=r"entry 'cfg' must be JSON serialisable"):
            _h5._write_value(g, "cfg", {"f": object()}, "entry")
        back = _h5._read_values(g)
        assert set(back) == set(values) - {"skipped"}
        assert _h5._read_values(g, skip=("v", "label")).keys() == set(back) - {"v", "label"}
    assert back["label"] == "init" and back["step"] == 3 and back["flag"] is True
    assert back["options"] == {"k": [1, 2], "path": str(tmp_path), "x": 0.5}
    np.testing.assert_array_equal(back["v"], np.arange(3.0))
    assert _h5._loads(_h5._dumps({"b": 1, "a": np.arange(2)}, "x")) == {"a": [0, 1], "b": 1}
    assert _h5._loads(None) is None


def test_the_file_layer_imports_h5py_only_when_a_file_is_opened():
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import kernelcomp._h5, kernelcomp.network\n"
        "print('h5py' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
