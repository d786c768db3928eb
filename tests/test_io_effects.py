"""Every documented parameter, attribute and boundary of the run, diagnostics and array files.

One test per documented effect of :class:`kernelcomp.io.RunWriter`,
:func:`~kernelcomp.io.open_run`, :func:`~kernelcomp.io.save_diagnostics`,
:func:`~kernelcomp.io.add_run_diagnostics`, :func:`~kernelcomp.io.load_diagnostics`,
:func:`~kernelcomp.io.read_array` and :func:`~kernelcomp.io.file_info`, each against an
independent oracle: the file read back with plain h5py, a file laid out by hand with
h5py, numpy's own readers, or a hand computation (the bytes reserved). The messages are
matched whole: each names the file, what was found and what is expected.
"""

from __future__ import annotations

import errno
import os
import re

import h5py
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import io
from kernelcomp._h5 import stamp
from kernelcomp.io import _diag_file, _run_file
from tests.spies import record_calls

SLACK = 1 << 20  # bytes reserved beyond a run file's data and for a summary or the close
CHECKPOINT_SLACK = 256 << 10  # bytes reserved beyond a checkpoint's arrays


class _Boom(RuntimeError):
    pass


def _data(p: int = 6, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((p, d))
    return X, np.where(X[:, 0] > 0, 1.0, -1.0)


def _net(d: int = 3, seed: int = 0, **kw) -> kc.FCNetwork:
    return kc.FCNetwork.init(d, [4], seed=seed, **kw)


def _full(message: str) -> str:
    return "^" + re.escape(message) + "$"


# -- RunWriter: the file it starts ---------------------------------------------------------
def test_the_partial_run_file_holds_data_config_and_an_empty_summary(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    w = io.RunWriter(path, X_train=X, y_train=y, config={"b": 2, "a": [1]})
    assert w.path == path and w.partial == tmp_path / "run.h5.partial"
    assert w.n_checkpoints == 0
    with h5py.File(w.partial, "r") as f:
        assert f.attrs["kernelcomp_format"] == "run"
        assert f.attrs["config"] == '{"a": [1], "b": 2}'
        assert f.attrs["summary"] == "{}"
        assert not f.attrs["complete"] and isinstance(f.attrs["complete"], np.bool_)
        assert sorted(f["data"]) == ["X_train", "y_train"]
        np.testing.assert_array_equal(f["data/X_train"][()], X)
        np.testing.assert_array_equal(f["data/y_train"][()], y)
        assert isinstance(f["checkpoints"], h5py.Group) and len(f["checkpoints"]) == 0
    assert w.close() == path
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"]
    run = io.open_run(path)
    assert run.config == {"a": [1], "b": 2} and run.summary == {} and run.checkpoints == []


def test_a_run_without_config_stores_an_empty_object(tmp_path):
    X, y = _data()
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y):
        pass
    with h5py.File(tmp_path / "run.h5", "r") as f:
        assert f.attrs["config"] == "{}"
    assert io.open_run(tmp_path / "run.h5").config == {}


def test_test_data_is_stored_and_checked_against_the_training_data(tmp_path):
    X, y = _data()
    Xt, yt = _data(4, seed=1)
    path = tmp_path / "run.h5"
    with pytest.raises(ValueError, match=_full(
            "y_test must have shape (4,) or (4, K), got (3,)")):
        io.RunWriter(path, X_train=X, y_train=y, X_test=Xt, y_test=yt[:3])
    with pytest.raises(ValueError, match=_full("X_test and y_test must be given together")):
        io.RunWriter(path, X_train=X, y_train=y, y_test=yt)
    with pytest.raises(TypeError, match=_full("y_test must hold numbers, got dtype <U1")):
        io.RunWriter(path, X_train=X, y_train=y, X_test=Xt, y_test=np.array(["a"] * 4))
    assert os.listdir(tmp_path) == []
    with io.RunWriter(path, X_train=X, y_train=y, X_test=Xt, y_test=yt):
        pass
    with h5py.File(path, "r") as f:
        assert sorted(f["data"]) == ["X_test", "X_train", "y_test", "y_train"]
        np.testing.assert_array_equal(f["data/X_test"][()], Xt)
        np.testing.assert_array_equal(f["data/y_test"][()], yt)


def test_labels_of_any_numeric_kind_and_two_dimensional_targets_are_stored_as_given(tmp_path):
    X, _ = _data()
    Y = np.arange(12).reshape(6, 2)  # integer targets, two outputs
    for i, labels in enumerate((Y, Y > 3, Y.astype(np.uint8), Y[:, 0].astype(np.float32))):
        path = tmp_path / f"run{i}.h5"
        with io.RunWriter(path, X_train=X, y_train=labels):
            pass
        with h5py.File(path, "r") as f:
            stored = f["data/y_train"][()]
        assert stored.dtype == labels.dtype
        np.testing.assert_array_equal(stored, labels)
    with pytest.raises(ValueError, match=_full(
            "y_train must have shape (6,) or (6, K), got (6, 1, 1)")):
        io.RunWriter(tmp_path / "r.h5", X_train=X, y_train=np.ones((6, 1, 1)))
    with pytest.raises(ValueError, match=_full("y_train must have shape (6,) or (6, K), got ()")):
        io.RunWriter(tmp_path / "r.h5", X_train=X, y_train=1.0)
    with pytest.raises(TypeError, match=_full("y_train must hold numbers, got dtype complex128")):
        io.RunWriter(tmp_path / "r.h5", X_train=X, y_train=np.ones(6) * 1j)


def test_config_must_be_a_mapping_named_by_its_type(tmp_path):
    X, y = _data()
    with pytest.raises(TypeError, match=_full("config must be a mapping (dict), got list")):
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y, config=[1])
    with pytest.raises(TypeError, match=r"^config must be JSON serialisable: "):
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y, config={"f": print})
    assert os.listdir(tmp_path) == []


def test_the_free_space_check_asks_for_the_data_plus_one_mebibyte(tmp_path, monkeypatch):
    X, y = _data()
    Xt, yt = _data(4, seed=1)
    calls = record_calls(monkeypatch, _run_file, "check_free_space")
    path = tmp_path / "run.h5"
    with io.RunWriter(path, X_train=X, y_train=y, X_test=Xt, y_test=yt):
        pass
    need = X.nbytes + y.nbytes + Xt.nbytes + yt.nbytes + SLACK
    assert calls == [((tmp_path, need, f"the run file {path}"), {})]


def test_a_full_disk_is_refused_before_the_partial_file_is_made(tmp_path, monkeypatch):
    X, y = _data()
    free = X.nbytes + y.nbytes + SLACK - 1  # one byte short
    real = _run_file.check_free_space.__globals__["shutil"].disk_usage
    monkeypatch.setattr(
        _run_file.check_free_space.__globals__["shutil"], "disk_usage",
        lambda p: real(p)._replace(free=free),
    )
    with pytest.raises(OSError, match=r"^not enough free space in .* for the run file "
                       + re.escape(str(tmp_path / "run.h5"))) as info:
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    assert info.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == []
    monkeypatch.setattr(
        _run_file.check_free_space.__globals__["shutil"], "disk_usage",
        lambda p: real(p)._replace(free=free + 1),
    )
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y):
        pass


def test_a_failure_while_the_partial_file_is_made_removes_it_and_the_lock(tmp_path, monkeypatch):
    X, y = _data()

    def boom(f, fmt):
        raise _Boom("cannot stamp")

    monkeypatch.setattr(_run_file, "stamp", boom)
    with pytest.raises(_Boom, match="cannot stamp"):
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    assert not (tmp_path / "run.h5.partial").exists()
    monkeypatch.undo()
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y):  # not refused: no lock left
        pass


def test_a_stale_partial_file_is_named_and_replaced_with_force(tmp_path):
    X, y = _data()
    partial = tmp_path / "run.h5.partial"
    partial.write_text("stale")
    with pytest.raises(FileExistsError, match=_full(
            f"{partial} exists (a run that did not finish); remove it or pass force=True")):
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    assert partial.read_text() == "stale"
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y, force=True):
        pass
    assert io.open_run(tmp_path / "run.h5").complete and not partial.exists()


def test_force_replaces_a_stale_partial_that_is_a_link_not_its_target(tmp_path):
    X, y = _data()
    target = tmp_path / "keep.txt"
    target.write_text("not mine")
    (tmp_path / "run.h5.partial").symlink_to(target)
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y, force=True):
        pass
    assert target.read_text() == "not mine"
    assert io.open_run(tmp_path / "run.h5").complete


def test_the_writer_holds_the_lock_from_start_to_close(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    w = io.RunWriter(path, X_train=X, y_train=y)
    with pytest.raises(BlockingIOError):
        io.RunWriter(path, X_train=X, y_train=y, force=True)
    w.close()
    w2 = io.RunWriter(path, X_train=X, y_train=y, force=True)  # released by close
    with pytest.raises(_Boom), w2:
        raise _Boom
    w3 = io.RunWriter(path, X_train=X, y_train=y, force=True)  # released by the failed block
    w3.close()


# -- RunWriter: checkpoints ----------------------------------------------------------------
def test_a_checkpoint_group_holds_exactly_its_values(tmp_path):
    X, y = _data()
    net = _net()
    path = tmp_path / "run.h5"
    with io.RunWriter(path, X_train=X, y_train=y) as w:
        assert w.add_checkpoint(net, step=0, time=0.0, loss=1.0) == 0
        assert w.add_checkpoint(net, step=7, time=np.float32(1.5), loss=2, train_error=0.25,
                                test_error=0.5, margins=np.arange(6), tag="x",
                                lr=np.float64(0.1), grads=np.ones(2, np.float32)) == 1
        assert w.n_checkpoints == 2
    with h5py.File(path, "r") as f:
        g0, g1 = f["checkpoints/000000"], f["checkpoints/000001"]
        assert dict(g0.attrs) == {"index": 0, "step": 0, "time": 0.0, "loss": 1.0}
        assert sorted(g0) == ["network"]
        assert {k: g1.attrs[k] for k in g1.attrs} == {
            "index": 1, "step": 7, "time": 1.5, "loss": 2.0, "train_error": 0.25,
            "test_error": 0.5, "tag": "x", "lr": 0.1}
        assert g1.attrs["loss"].dtype == np.float64 and g1.attrs["time"].dtype == np.float64
        assert sorted(g1) == ["grads", "margins", "network"]
        assert g1["margins"].dtype == np.float64
        np.testing.assert_array_equal(g1["margins"][()], np.arange(6.0))
        assert g1["grads"].dtype == np.float32
        assert kc.FCNetwork.from_hdf5(g1["network"]) == net
    c = io.open_run(path).checkpoints[1]
    assert (c.index, c.step, c.time, c.loss, c.train_error, c.test_error) == (
        1, 7, 1.5, 2.0, 0.25, 0.5)
    assert c.group == "checkpoints/000001" and c.path == path
    assert sorted(c.extra) == ["grads", "lr", "tag"]
    assert repr(c) == ("Checkpoint(index=1, step=7, time=1.5, loss=2.0, train_error=0.25, "
                       "test_error=0.5)")


def test_a_checkpoint_may_leave_time_and_loss_out(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    with io.RunWriter(path, X_train=X, y_train=y) as w:
        w.add_checkpoint(_net(), step=3, time=None, loss=None)
    with h5py.File(path, "r") as f:
        assert dict(f["checkpoints/000000"].attrs) == {"index": 0, "step": 3}
    c = io.open_run(path).checkpoints[0]
    assert (c.time, c.loss, c.train_error, c.test_error, c.margins, c.extra) == (
        None, None, None, None, None, {})
    assert io.file_info(path)["checkpoints"] == [{"step": 3, "time": None, "loss": None}]


@pytest.mark.parametrize("field", ["index", "network"])  # the others are keyword parameters
def test_an_extra_value_may_not_reuse_a_fields_name(tmp_path, field):
    X, y = _data()
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y) as w:
        with pytest.raises(TypeError, match=_full(
                f"extra checkpoint value {field!r} clashes with a field")):
            # the optional fields left out: the name is refused all the same
            w.add_checkpoint(_net(), step=0, time=None, loss=None, **{field: 1.0})
        assert w.n_checkpoints == 0


def test_checkpoint_values_are_refused_by_name_and_type(tmp_path):
    X, y = _data()
    with io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y) as w:
        with pytest.raises(TypeError, match=_full("time must be a real number, got bool")):
            w.add_checkpoint(_net(), step=0, time=True, loss=1.0)
        with pytest.raises(TypeError, match=_full("train_error must be a real number, got str")):
            w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0, train_error="0")
        with pytest.raises(TypeError, match=_full("test_error must be a real number, got complex")):
            w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0, test_error=1j)
        with pytest.raises(TypeError, match=_full(
                "margins must be a numeric array, got dtype complex128")):
            w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0, margins=np.ones(2) * 1j)
        with pytest.raises(TypeError, match=_full(
                "net must be a kc.FCNetwork (with to_hdf5), got dict")):
            w.add_checkpoint({}, step=0, time=0.0, loss=1.0)
        with pytest.raises(TypeError, match=_full("step must be an integer, got float 1.0")):
            w.add_checkpoint(_net(), step=1.0, time=0.0, loss=1.0)
        # bool margins are numbers: stored as float64
        w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0, margins=np.array([True, False]))
    m = io.open_run(tmp_path / "run.h5").checkpoints[0].margins
    assert m.dtype == np.float64 and m.tolist() == [1.0, 0.0]


def test_a_closed_writer_names_its_file(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    w = io.RunWriter(path, X_train=X, y_train=y)
    w.close()
    with pytest.raises(RuntimeError, match=_full(f"RunWriter for {path} is closed")):
        w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)
    with pytest.raises(RuntimeError, match=_full(f"RunWriter for {path} is closed")):
        w.set_summary(a=1)


def _bytes(net) -> int:
    return sum(a.nbytes for a in net.weights) + sum(
        b.nbytes for b in net.biases if b is not None)


def test_a_checkpoint_reserves_its_arrays_plus_an_eighth_and_its_slack(tmp_path, monkeypatch):
    X, y = _data()
    path = tmp_path / "run.h5"
    w = io.RunWriter(path, X_train=X, y_train=y)
    calls = record_calls(monkeypatch, _run_file, "reserve")
    net = _net(bias=[True, False])  # a layer without bias counts no bias bytes
    assert net.biases[1] is None
    margins = np.arange(6, dtype=np.int32)  # counted as stored: float64
    extra = {"grads": np.ones(5, np.float32), "lr": 0.5, "meta": {"a": [1, 2, 3]}}
    w.add_checkpoint(net, step=0, time=0.0, loss=1.0, margins=margins, **extra)
    need = _bytes(net) + 6 * 8 + 5 * 4 + 8  # the scalar lr counts as a float64; meta not
    assert calls == [((w.partial, need + need // 8 + CHECKPOINT_SLACK),
                      {"what": f"checkpoint 0 of {path}"})]
    w.add_checkpoint(net, step=1, time=0.0, loss=1.0)
    need = _bytes(net)
    assert calls[1] == ((w.partial, need + need // 8 + CHECKPOINT_SLACK),
                        {"what": f"checkpoint 1 of {path}"})
    w.set_summary(a=1)
    assert calls[2] == ((w.partial, SLACK), {"what": f"the summary of {path}"})
    w.close()
    assert calls[3] == ((w.partial, SLACK), {"what": f"the run file {path}"})
    assert len(calls) == 4


def test_a_checkpoint_that_does_not_fit_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    X, y = _data()
    path = tmp_path / "run.h5"
    w = io.RunWriter(path, X_train=X, y_train=y)
    w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)

    def full(p, length, *, start=None, what=""):
        exc = OSError(f"no room for {what}")
        exc.errno = errno.ENOSPC
        raise exc

    monkeypatch.setattr(_run_file, "reserve", full)
    with pytest.raises(OSError, match=_full(f"no room for checkpoint 1 of {path}")):
        w.add_checkpoint(_net(), step=1, time=0.0, loss=1.0)
    assert w.n_checkpoints == 1
    # a close that fails keeps the writer open and the lock held: it can be retried
    with pytest.raises(OSError, match=_full(f"no room for the run file {path}")):
        w.close()
    assert not path.exists() and w.partial.exists()
    with pytest.raises(BlockingIOError):
        io.RunWriter(path, X_train=X, y_train=y, force=True)
    monkeypatch.undo()
    assert w.add_checkpoint(_net(), step=2, time=0.0, loss=1.0) == 1
    assert w.close() == path
    assert [c.step for c in io.open_run(path).checkpoints] == [0, 2]


def test_the_summary_merges_values_across_calls(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    with io.RunWriter(path, X_train=X, y_train=y) as w:
        w.set_summary(a=1, b=[1, 2])
        w.set_summary(b="x", c=np.float64(2.5))
        with pytest.raises(TypeError, match=r"^summary must be JSON serialisable: "):
            w.set_summary(d=object())
    with h5py.File(path, "r") as f:
        assert f.attrs["summary"] == '{"a": 1, "b": "x", "c": 2.5}'
    assert io.open_run(path).summary == {"a": 1, "b": "x", "c": 2.5}


# -- open_run and file_info on files laid out by hand --------------------------------------
def _bare_run(path, *, groups=("data", "checkpoints")):
    with h5py.File(path, "w") as f:
        stamp(f, "run")
        for g in groups:
            f.create_group(g)
    return path


@pytest.mark.parametrize("missing", ["data", "checkpoints"])
def test_a_run_file_without_a_group_is_refused_naming_it(tmp_path, missing):
    kept = [g for g in ("data", "checkpoints") if g != missing]
    path = _bare_run(tmp_path / "run.h5", groups=kept)
    with pytest.raises(io.FormatError, match=_full(
            f"{path} is a 'run' file without its {missing!r} group")):
        io.open_run(path)
    # file_info describes it all the same
    assert io.file_info(path)[missing] == ({} if missing == "data" else [])


def test_a_run_file_without_attributes_reads_with_the_documented_defaults(tmp_path):
    path = _bare_run(tmp_path / "run.h5")
    with h5py.File(path, "r+") as f:
        f["data/X_train"] = np.ones((2, 3))
        g = f["checkpoints"].create_group("000000")
        g.attrs["index"] = 0
        g.attrs["step"] = 4
    run = io.open_run(path)
    assert run.config == {} and run.summary == {} and run.complete is True
    assert run.attrs["kernelcomp_format"] == "run" and isinstance(run.attrs["created"], str)
    assert run.checkpoints[0].time is None and run.checkpoints[0].step == 4
    info = io.file_info(path)
    assert info["complete"] is True and info["config"] == {} and info["summary"] == {}
    assert info["data"] == {"X_train": [2, 3]} and info["diagnostics"] == []
    assert info["checkpoints"] == [{"step": 4, "time": None, "loss": None}]


def test_file_info_of_a_run_file_lists_everything_with_json_types(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    with io.RunWriter(path, X_train=X, y_train=y, config={"alpha": 0.5}) as w:
        w.add_checkpoint(_net(), step=2, time=np.float32(0.5), loss=3)
        w.add_checkpoint(_net(), step=5, time=1.0, loss=0.25)
        w.set_summary(steps=5)
    io.add_run_diagnostics(path, [{"v": 1}], name="zeta")
    io.add_run_diagnostics(path, [{"v": 1}], name="alpha")
    info = io.file_info(path)
    assert info["complete"] is True and info["config"] == {"alpha": 0.5}
    assert info["summary"] == {"steps": 5}
    assert info["data"] == {"X_train": [6, 3], "y_train": [6]}
    assert info["diagnostics"] == ["alpha", "zeta"]
    assert info["checkpoints"] == [{"step": 2, "time": 0.5, "loss": 3.0},
                                   {"step": 5, "time": 1.0, "loss": 0.25}]
    assert type(info["checkpoints"][0]["step"]) is int
    assert type(info["checkpoints"][0]["loss"]) is float
    with pytest.raises(_Boom), io.RunWriter(tmp_path / "cut.h5", X_train=X, y_train=y):
        raise _Boom
    cut = io.file_info(tmp_path / "cut.h5.partial")
    assert cut["complete"] is False and cut["checkpoints"] == []
    assert io.open_run(tmp_path / "cut.h5.partial").complete is False


def test_file_info_of_a_run_file_without_its_groups(tmp_path):
    path = _bare_run(tmp_path / "run.h5", groups=())
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
        f.attrs["config"] = '{"a": 1}'
        f.attrs["summary"] = "null"
        g = f.create_group("checkpoints/000000")
        g.attrs["time"] = 2
    info = io.file_info(path)
    assert info["complete"] is False and info["config"] == {"a": 1} and info["summary"] == {}
    assert info["data"] == {} and info["diagnostics"] == []
    assert info["checkpoints"] == [{"step": -1, "time": 2.0, "loss": None}]


# -- diagnostics files ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "a/b", "x.__json__", 3])
def test_an_entry_name_is_refused_whole(tmp_path, name):
    with pytest.raises(TypeError, match=_full(f"entries[1] has an invalid name {name!r}")):
        io.save_diagnostics(tmp_path / "d.h5", [{"ok": 1}, {name: 1}])
    assert os.listdir(tmp_path) == []


def test_entries_and_config_are_refused_naming_their_type(tmp_path):
    d = tmp_path / "d.h5"
    with pytest.raises(TypeError, match=_full("entries must be a sequence of mappings, got dict")):
        io.save_diagnostics(d, {"a": 1})
    with pytest.raises(TypeError, match=_full("entries must be a sequence of mappings, got int")):
        io.save_diagnostics(d, 3)
    with pytest.raises(TypeError, match=_full("entries[1] must be a mapping, got list")):
        io.save_diagnostics(d, [{}, [1]])
    with pytest.raises(TypeError, match=_full("config must be a mapping (dict), got str")):
        io.save_diagnostics(d, [], config="x")
    with pytest.raises(TypeError, match=_full(
            "entries[0] 'x' must be a number, a string, a dict or a numeric array, got "
            "list of dtype <U1")):
        io.save_diagnostics(d, [{"x": ["a"]}])
    assert os.listdir(tmp_path) == []


def test_entries_are_checked_before_the_output_or_the_run_file(tmp_path):
    old = io.save_diagnostics(tmp_path / "d.h5", [])
    bad = [{"ok": 1}, {"x": object()}]
    message = r"^entries\[1\] 'x' must be a number, a string, a dict or a numeric array"
    with pytest.raises(TypeError, match=message):  # not FileExistsError: the entries first
        io.save_diagnostics(old, bad)
    with pytest.raises(TypeError, match=message):  # not FileNotFoundError
        io.add_run_diagnostics(tmp_path / "missing.h5", bad)
    with pytest.raises(TypeError, match=r"^entries\[0\] 'm' must be JSON serialisable"):
        io.add_run_diagnostics(tmp_path / "missing.h5", [{"m": {"f": object()}}])


def test_a_diagnostics_file_read_back_with_h5py(tmp_path):
    entries = [{"label": "a", "ev": np.arange(3.0), "k": 2, "none": None},
               {"meta": {"b": 1}}, {}]
    path = io.save_diagnostics(tmp_path / "d.h5", entries, config={"z": 1, "a": 2})
    assert path == tmp_path / "d.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["kernelcomp_format"] == "diagnostics"
        assert f.attrs["config"] == '{"a": 2, "z": 1}'
        assert sorted(f["entries"]) == ["000000", "000001", "000002"]
        e0 = f["entries/000000"]
        assert dict(e0.attrs) == {"label": "a", "k": 2} and sorted(e0) == ["ev"]
        assert f["entries/000001"].attrs["meta"] == '{"b": 1}'
    d = io.load_diagnostics(str(path))
    assert d.path == path and d.config == {"a": 2, "z": 1}
    assert d.entries[1] == {"meta": {"b": 1}} and d.entries[2] == {}
    assert d.attrs["kernelcomp_format"] == "diagnostics"
    empty = io.save_diagnostics(tmp_path / "e.h5", [])
    assert io.load_diagnostics(empty).entries == [] and io.load_diagnostics(empty).config == {}


def test_a_diagnostics_file_without_entries_or_config_reads_empty(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        stamp(f, "diagnostics")
    d = io.load_diagnostics(path)
    assert d.entries == [] and d.config == {}
    info = io.file_info(path)
    assert info["config"] == {} and info["entries"] == []


def test_file_info_of_a_diagnostics_file(tmp_path):
    entries = [{"label": "init", "ev": np.ones((2, 3)), "rank": 2, "gap": np.float32(0.5),
                "ok": True, "name": "x", "meta": {"a": 1}},
               {"ev": np.ones(1)}]
    path = io.save_diagnostics(tmp_path / "d.h5", entries, config={"k": 1})
    info = io.file_info(path)
    assert info["config"] == {"k": 1}
    assert info["entries"] == [
        {"label": "init", "arrays": {"ev": [2, 3]},
         "values": {"rank": 2, "gap": 0.5, "ok": True}},
        {"label": "000001", "arrays": {"ev": [1]}, "values": {}},
    ]
    assert type(info["entries"][0]["values"]["rank"]) is int


def _run(tmp_path, name="run.h5"):
    X, y = _data()
    path = tmp_path / name
    with io.RunWriter(path, X_train=X, y_train=y) as w:
        w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)
    return path


def test_diagnostics_in_a_run_file_carry_the_diagnostics_header(tmp_path):
    path = _run(tmp_path)
    assert io.add_run_diagnostics(str(path), [{"ev": np.ones(2)}], config={"k": 2}) == path
    with h5py.File(path, "r") as f:
        g = f["diagnostics/kpca"]
        assert g.attrs["kernelcomp_format"] == "diagnostics"
        assert g.attrs["kernelcomp_format_version"] == "1.0"
        assert g.attrs["config"] == '{"k": 2}'
        np.testing.assert_array_equal(g["entries/000000/ev"][()], np.ones(2))
        assert f.attrs["kernelcomp_format"] == "run"
    d = io.load_diagnostics(path)
    assert d.config == {"k": 2} and d.path == path
    again = io.load_diagnostics(path, name="kpca")
    np.testing.assert_array_equal(again.entries[0]["ev"], d.entries[0]["ev"])


def test_replacing_diagnostics_removes_the_old_entries(tmp_path):
    path = _run(tmp_path)
    io.add_run_diagnostics(path, [{"a": 1}, {"b": np.ones(2)}], name="g")
    io.add_run_diagnostics(path, [{"c": 3}], name="g", force=True, config={"v": 2})
    d = io.load_diagnostics(path, name="g")
    assert d.entries == [{"c": 3}] and d.config == {"v": 2}
    with h5py.File(path, "r") as f:
        assert sorted(f["diagnostics/g/entries"]) == ["000000"]


@pytest.mark.parametrize("name", ["", "a/b", None, 3])
def test_a_diagnostics_group_name_is_refused_whole(tmp_path, name):
    path = _run(tmp_path)
    with pytest.raises(ValueError, match=_full(
            f"name must be a non-empty string without '/', got {name!r}")):
        io.add_run_diagnostics(path, [{"v": 1}], name=name)


def test_adding_diagnostics_refuses_a_run_still_being_trained_or_an_existing_group(tmp_path):
    X, y = _data()
    w = io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    with pytest.raises(io.FormatError, match=_full(
            f"{w.partial} is the file of a run that did not finish (or is still being "
            "trained); diagnostics are added to complete run files only")):
        io.add_run_diagnostics(w.partial, [{"v": 1}])
    w.close()
    path = w.path
    io.add_run_diagnostics(path, [{"v": 1}], name="g")
    with pytest.raises(FileExistsError, match=_full(
            f"{path} already holds diagnostics 'g'; pass force=True (--force) to replace them")):
        io.add_run_diagnostics(path, [{"v": 2}], name="g")
    # a run file without the complete attribute counts as complete
    with h5py.File(path, "r+") as f:
        del f.attrs["complete"]
    io.add_run_diagnostics(path, [{"v": 3}], name="h")
    assert io.load_diagnostics(path, name="h").entries == [{"v": 3}]


def test_adding_diagnostics_checks_the_space_of_a_copy_and_reserves_twice_the_arrays(
        tmp_path, monkeypatch):
    path = _run(tmp_path)
    size = path.stat().st_size
    free = record_calls(monkeypatch, _diag_file, "check_free_space")
    res = record_calls(monkeypatch, _diag_file, "reserve")
    entries = [{"ev": np.ones(5), "x": 2.0, "m": np.ones((2, 2), np.float32)},
               {"ev": np.ones(3)}, {"l": [1.0, 2.0]}]  # a list is stored, not counted
    io.add_run_diagnostics(path, entries)
    arrays = 5 * 8 + 4 * 4 + 3 * 8
    assert free == [((tmp_path, size + arrays + (1 << 20),
                      f"a copy of {path} with its new diagnostics"), {})]
    assert len(res) == 1
    (tmp,), kw = res[0][0][:1], res[0][1]
    assert res[0][0][1] == 2 * arrays + (1 << 20)
    assert kw == {"what": f"the diagnostics of {path}"}
    assert ".tmp-" in os.fspath(tmp)


def test_adding_diagnostics_waits_for_another_writer(tmp_path, monkeypatch):
    path = _run(tmp_path)
    calls = record_calls(monkeypatch, _diag_file, "write_lock")
    io.add_run_diagnostics(path, [{"v": 1}])
    assert calls == [((path,), {"wait": 10.0})]


def test_a_run_file_with_zero_or_several_groups_asks_for_a_name(tmp_path):
    path = _run(tmp_path)
    with pytest.raises(io.FormatError, match=_full(
            f"{path} is a run file holding 0 diagnostics groups []; compute them first")):
        io.load_diagnostics(path)
    io.add_run_diagnostics(path, [{"v": 1}], name="b")
    io.add_run_diagnostics(path, [{"v": 2}], name="a")
    with pytest.raises(io.FormatError, match=_full(
            f"{path} is a run file holding 2 diagnostics groups ['a', 'b']; choose one with "
            "name=")):
        io.load_diagnostics(path)
    with pytest.raises(io.FormatError, match=_full(
            f"{path} holds no diagnostics 'c' (it holds ['a', 'b'])")):
        io.load_diagnostics(path, name="c")
    assert io.load_diagnostics(path, name="a").entries == [{"v": 2}]
    diag = io.save_diagnostics(tmp_path / "d.h5", [])
    with pytest.raises(io.FormatError, match=_full(
            f"{diag} is a diagnostics file: name='a' does not apply")):
        io.load_diagnostics(diag, name="a")


def test_a_diagnostics_group_of_another_version_is_refused(tmp_path):
    path = _run(tmp_path)
    io.add_run_diagnostics(path, [{"v": 1}])
    with h5py.File(path, "r+") as f:
        f["diagnostics/kpca"].attrs["kernelcomp_format_version"] = "2.0"
    with pytest.raises(io.FormatError, match=r"^" + re.escape(
            f"{path} has 'diagnostics' format version 2.0, but this kernelcomp")):
        io.load_diagnostics(path)


def test_a_diagnostics_group_of_another_format_is_refused(tmp_path):
    path = _run(tmp_path)
    io.add_run_diagnostics(path, [{"v": 1}])
    with h5py.File(path, "r+") as f:
        f["diagnostics/kpca"].attrs["kernelcomp_format"] = "gram"
    with pytest.raises(io.FormatError, match=_full(
            f"{path} is a kernelcomp 'gram' file, expected a 'diagnostics' file")):
        io.load_diagnostics(path)


def test_an_existing_diagnostics_file_is_kept_without_force(tmp_path):
    path = io.save_diagnostics(tmp_path / "d.h5", [{"v": 1}])
    with pytest.raises(FileExistsError, match=_full(
            f"{path} exists; pass force=True (--force) to overwrite it")):
        io.save_diagnostics(path, [{"v": 2}])
    assert io.load_diagnostics(path).entries == [{"v": 1}]
    io.save_diagnostics(path, [{"v": 2}], force=True)
    assert io.load_diagnostics(path).entries == [{"v": 2}]


def test_readers_refuse_a_path_of_another_type_naming_it(tmp_path):
    for read in (io.load_diagnostics, io.open_run):
        with pytest.raises(TypeError, match=_full("path must be a str or os.PathLike, got int")):
            read(42)


def test_a_file_of_another_format_is_refused_before_its_lock_is_waited_for(
        tmp_path, monkeypatch):
    from kernelcomp._h5 import write_lock

    monkeypatch.setattr(_diag_file, "_LOCK_WAIT", 0.1)
    diag = io.save_diagnostics(tmp_path / "d.h5", [])
    with write_lock(diag):  # another writer holds it: the format is refused first
        with pytest.raises(io.FormatError, match="kernelcomp 'diagnostics' file, expected a 'run'"):
            io.add_run_diagnostics(diag, [{"v": 1}])


def test_the_run_file_is_checked_again_once_the_lock_is_held(tmp_path, monkeypatch):
    """A writer that held the lock may have replaced the run file by another format."""
    import contextlib

    path = _run(tmp_path)
    real = _diag_file.write_lock

    @contextlib.contextmanager
    def replaced_while_waiting(p, *, wait=0.0):
        with real(p, wait=wait) as lock:
            os.replace(io.save_gram(tmp_path / "other.h5", np.eye(2)), p)
            yield lock

    monkeypatch.setattr(_diag_file, "write_lock", replaced_while_waiting)
    with pytest.raises(io.FormatError, match=_full(
            f"{path} is a kernelcomp 'gram' file, expected a 'run' file")):
        io.add_run_diagnostics(path, [{"v": 1}])


# -- read_array ----------------------------------------------------------------------------
def test_extensions_are_matched_in_any_case(tmp_path):
    A = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "a.npy", A)
    os.rename(tmp_path / "a.npy", tmp_path / "A.NPY")
    np.testing.assert_array_equal(io.read_array(tmp_path / "A.NPY"), A)
    np.savez(tmp_path / "b.npz", A)
    os.rename(tmp_path / "b.npz", tmp_path / "B.NpZ")
    np.testing.assert_array_equal(io.read_array(tmp_path / "B.NpZ"), A)
    np.savetxt(tmp_path / "C.CSV", A, delimiter=",")
    np.testing.assert_array_equal(io.read_array(tmp_path / "C.CSV"), A)
    for ext in ("H5", "HDF5", "hdf5"):
        with h5py.File(tmp_path / f"d.{ext}", "w") as f:
            f["A"] = A
        np.testing.assert_array_equal(io.read_array(str(tmp_path / f"d.{ext}")), A)


def test_an_unsupported_extension_is_named(tmp_path):
    (tmp_path / "data").write_text("1")
    with pytest.raises(ValueError, match=_full(
            f"--labels: unsupported file type '(no extension)' for {tmp_path / 'data'}; "
            "expected .npy, .npz, .csv or .h5")):
        io.read_array(tmp_path / "data", name="--labels")
    with pytest.raises(ValueError, match=_full(
            "INPUT: a .npy file holds one array; --key 'x' does not apply")):
        np.save(tmp_path / "a.npy", np.ones(1))
        io.read_array(tmp_path / "a.npy", key="x")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_files_of_every_header_version_are_read(tmp_path, version):
    A = np.arange(12, dtype=np.int16).reshape(3, 4)
    with open(tmp_path / "a.npy", "wb") as fh:
        np.lib.format.write_array(fh, A, version=version)
    got = io.read_array(tmp_path / "a.npy")
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, A)


def _npy_bytes(A, version=(1, 0)) -> bytes:
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array(buf, A, version=version)
    return buf.getvalue()


def test_a_truncated_npy_file_is_refused_before_it_is_allocated(tmp_path):
    A = np.arange(10.0)
    raw = _npy_bytes(A)
    (tmp_path / "ok.npy").write_bytes(raw)  # declared == held: read
    np.testing.assert_array_equal(io.read_array(tmp_path / "ok.npy"), A)
    (tmp_path / "cut.npy").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=_full(
            f"X: {tmp_path / 'cut.npy'} declares an array of shape (10,) float64 (80 bytes) but "
            "holds only 79 bytes of data: a truncated or forged file")):
        io.read_array(tmp_path / "cut.npy", name="X")


def test_a_forged_npy_header_whose_size_overflows_int64_is_refused(tmp_path):
    # 2**32 * 2**32 entries: the product of the shape is 0 in int64 arithmetic
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**32, 2**32)}
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    (tmp_path / "big.npy").write_bytes(buf.getvalue() + b"\0" * 16)
    with pytest.raises(ValueError, match=r"declares an array of shape \(4294967296, "
                       r"4294967296\) float64 \(147573952\.6 TB\) but holds only 16 bytes"):
        io.read_array(tmp_path / "big.npy")


def test_a_truncated_npz_member_is_refused_before_it_is_inflated(tmp_path):
    import zipfile

    A = np.arange(10.0)
    raw = _npy_bytes(A)
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("X.npy", raw[:-8])
        z.writestr("y.npy", _npy_bytes(np.ones(2), version=(2, 0)))
    with pytest.raises(ValueError, match=_full(
            f"INPUT: {tmp_path / 'z.npz'}: array 'X' declares shape (10,) float64 (80 bytes) "
            "but holds only 72 bytes of data: a truncated or forged file")):
        io.read_array(tmp_path / "z.npz")
    np.testing.assert_array_equal(io.read_array(tmp_path / "z.npz", key="y"), np.ones(2))
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as z:  # a member named without .npy
        z.writestr("X", raw)
    np.testing.assert_array_equal(io.read_array(tmp_path / "w.npz"), A)


def test_an_unreadable_npz_is_a_value_error_naming_the_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"^INPUT: cannot read .*bad\.npz as \.npz \("):
        io.read_array(tmp_path / "bad.npz")


def test_the_array_named_X_is_chosen_among_several_and_keys_are_listed(tmp_path):
    np.savez(tmp_path / "a.npz", y=np.ones(2), X=np.zeros(3), w=np.ones(1))
    np.testing.assert_array_equal(io.read_array(tmp_path / "a.npz"), np.zeros(3))
    np.savez(tmp_path / "b.npz", y=np.ones(2), w=np.ones(1))
    with pytest.raises(ValueError, match=_full(
            f"INPUT: {tmp_path / 'b.npz'} holds 2 arrays ['y', 'w']; choose one with --key")):
        io.read_array(tmp_path / "b.npz")
    with pytest.raises(ValueError, match=_full(
            f"INPUT: {tmp_path / 'b.npz'} has no array 'X'; it holds ['y', 'w']")):
        io.read_array(tmp_path / "b.npz", key="X")
    np.savez(tmp_path / "c.npz")
    with pytest.raises(ValueError, match=_full(f"INPUT: {tmp_path / 'c.npz'} holds no arrays")):
        io.read_array(tmp_path / "c.npz")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["a/y"] = np.ones(2)
        f["X"] = np.zeros(3)
        f["b"] = np.ones(1)
    np.testing.assert_array_equal(io.read_array(tmp_path / "d.h5"), np.zeros(3))
    np.testing.assert_array_equal(io.read_array(tmp_path / "d.h5", key="a/y"), np.ones(2))
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["a/y"] = np.ones(2)
        f["b"] = np.ones(1)
    with pytest.raises(ValueError, match=_full(
            f"INPUT: {tmp_path / 'e.h5'} holds 2 datasets ['a/y', 'b']; choose one with --key")):
        io.read_array(tmp_path / "e.h5")
    with pytest.raises(ValueError, match=_full(f"--x: {tmp_path / 'e.h5'} has no dataset 'a'")):
        io.read_array(tmp_path / "e.h5", key="a", name="--x")
    with pytest.raises(ValueError, match=_full(f"INPUT: {tmp_path / 'e.h5'} has no dataset 'z'")):
        io.read_array(tmp_path / "e.h5", key="z")


def test_an_incomplete_hdf5_dataset_is_a_value_error_naming_the_input(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("X", shape=(1000, 1000), dtype="f8", chunks=(100, 100))
    with pytest.raises(ValueError, match=r"^--data: .*a\.h5: dataset '/X' declares shape "
                       r"\(1000, 1000\) float64") as info:
        io.read_array(tmp_path / "a.h5", name="--data")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    (tmp_path / "b.h5").write_text("x")
    with pytest.raises(ValueError, match=r"^--data: .*b\.h5 is not an HDF5 file"):
        io.read_array(tmp_path / "b.h5", name="--data")


def test_csv_headers_numbers_and_separators(tmp_path):
    cases = {
        "a,b\n1,2\n3,4\n": [[1, 2], [3, 4]],          # a header line
        "1,2\n3,4\n": [[1, 2], [3, 4]],               # none
        "1,2,\n3,4,\n": None,                         # a trailing comma: not a header
        " 1 , 2 \n3,4\n": [[1, 2], [3, 4]],
        "5\n6\n": [[5], [6]],                         # one column: 2-D
        "1,2\n": [[1, 2]],                            # one row: 2-D
    }
    for i, (text, want) in enumerate(cases.items()):
        p = tmp_path / f"{i}.csv"
        p.write_text(text)
        if want is None:
            with pytest.raises(ValueError, match=r"^INPUT: cannot read .* as numeric CSV \("):
                io.read_array(p)
            continue
        got = io.read_array(p)
        assert got.dtype == np.float64 and got.ndim == 2
        np.testing.assert_array_equal(got, want)
    (tmp_path / "s.csv").write_text("1;2\n3;4\n")
    with pytest.raises(ValueError, match=re.escape(
            "; its first line is separated by semicolons, CSV files must use commas") + "$"):
        io.read_array(tmp_path / "s.csv")
    (tmp_path / "h.csv").write_text("a;b\n1;2\n")  # a header with semicolons: still the hint
    with pytest.raises(ValueError, match="separated by semicolons"):
        io.read_array(tmp_path / "h.csv")
    (tmp_path / "m.csv").write_text("1;2,3\n4;5,6\n")  # commas too: no hint
    with pytest.raises(ValueError, match=r"as numeric CSV \([^)]*\)$"):
        io.read_array(tmp_path / "m.csv")
    (tmp_path / "t.csv").write_text("1 2\t3\n")
    with pytest.raises(ValueError, match=r"separated by tabs, CSV files must use commas$"):
        io.read_array(tmp_path / "t.csv")


# -- file_info and the network reader -------------------------------------------------------
def test_file_info_of_a_network_file_lists_the_network(tmp_path):
    net = kc.FCNetwork.init(3, [4, 5], n_outputs=2, activation="tanh",
                            parameterization="mean_field", seed=0)
    path = net.save(tmp_path / "net.h5")
    info = io.file_info(str(path))
    assert info == {
        "path": os.fspath(path), "format": "network", "format_version": info["format_version"],
        "kernelcomp_version": kc.__version__, "created": info["created"],
        "input_dim": 3, "widths": [4, 5], "n_outputs": 2, "activation": "tanh",
        "parameterization": "mean_field", "n_params": net.n_params,
    }
    with h5py.File(path, "r") as f:
        assert info["format_version"] == f.attrs["kernelcomp_format_version"]
        assert info["created"] == f.attrs["created"]


def test_file_info_header_fields_of_every_format(tmp_path):
    gram = io.save_gram(tmp_path / "K.h5", np.eye(2))
    info = io.file_info(str(gram))
    assert info["path"] == os.fspath(gram) and info["format"] == "gram"
    with h5py.File(gram, "r") as f:
        assert info["created"] == f.attrs["created"]
        assert info["kernelcomp_version"] == f.attrs["kernelcomp_version"]
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(io.FormatError, match="is not an HDF5 file"):
        io.file_info(tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.file_info(tmp_path / "missing.h5")
    with pytest.raises(TypeError, match=_full("path must be a str or os.PathLike, got int")):
        io.file_info(42)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.file_info(str(tmp_path))


def test_the_network_of_a_run_checkpoint_by_index(tmp_path):
    from kernelcomp.io._info import _read_network

    X, y = _data()
    nets = [_net(seed=s) for s in range(2)]
    path = tmp_path / "run.hdf5"
    with io.RunWriter(path, X_train=X, y_train=y) as w:
        for i, net in enumerate(nets):
            w.add_checkpoint(net, step=i, time=0.0, loss=1.0)
    assert _read_network(path, checkpoint=1) == nets[1]
    assert _read_network(path, checkpoint=-2) == nets[0]
    with pytest.raises(ValueError, match=_full(
            f"{path} has 2 checkpoints; checkpoint 2 is out of range")):
        _read_network(path, checkpoint=2)
    with pytest.raises(ValueError, match=_full(
            f"{path} has 2 checkpoints; checkpoint -3 is out of range")):
        _read_network(path, checkpoint=-3)
    with pytest.raises(ValueError, match=_full(
            f"{path}: activation applies to state-dict and weight-list .npz files only")):
        _read_network(path, activation="relu")
    # the partial file of a .H5 run counts by its inner extension, in any case
    with pytest.raises(_Boom), io.RunWriter(tmp_path / "cut.H5", X_train=X, y_train=y) as w:
        w.add_checkpoint(nets[0], step=0, time=0.0, loss=1.0)
        raise _Boom
    assert _read_network(tmp_path / "cut.H5.partial") == nets[0]
    npz = nets[1].save(tmp_path / "n.npz")
    os.rename(npz, tmp_path / "n.NPZ")
    assert _read_network(tmp_path / "n.NPZ") == nets[1]
    (tmp_path / "noext").write_text("")
    with pytest.raises(ValueError, match=_full(
            f"{tmp_path / 'noext'}: unsupported network file type '(none)'; expected .npz or "
            ".h5")):
        _read_network(tmp_path / "noext")
    with pytest.raises(ValueError, match=_full(
            f"{tmp_path / 'x.partial'}: unsupported network file type '.partial'; expected .npz "
            "or .h5")):
        (tmp_path / "x.partial").write_text("")
        _read_network(tmp_path / "x.partial")
    h5 = nets[0].save(tmp_path / "net.HDF5")
    assert _read_network(h5) == nets[0]
    diag = io.save_diagnostics(tmp_path / "d.h5", [])
    with pytest.raises(io.FormatError, match=_full(
            f"{diag} is not a kernelcomp network or run file (its format is 'diagnostics')")):
        _read_network(diag)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(io.FormatError, match=_full(
            f"{tmp_path / 'plain.h5'} is not a kernelcomp network or run file (it has no "
            "kernelcomp_format)")):
        _read_network(tmp_path / "plain.h5")


def test_open_run_names_the_file_as_a_path_and_reads_data_checked(tmp_path):
    path = _run(tmp_path)
    run = io.open_run(str(path))
    assert isinstance(run.path, type(path)) and run.path == path
    assert run.checkpoints[0].path == path
    # an attribute named like the network group is not an extra value
    with h5py.File(path, "r+") as f:
        f["checkpoints/000000"].attrs["network"] = 1
    assert io.open_run(path).checkpoints[0].extra == {}
    with h5py.File(path, "r+") as f:
        del f["data/X_train"]
        f["data"].create_dataset("X_train", shape=(1000, 1000), dtype="f8", chunks=(100, 100))
    with pytest.raises(io.FormatError, match=r"^" + re.escape(
            f"{path}: dataset '/data/X_train' declares shape (1000, 1000) float64")):
        io.open_run(path)


def test_a_csv_header_is_read_as_utf8_whatever_the_locale(tmp_path):
    import locale
    import sys

    if sys.flags.utf8_mode:
        pytest.skip("Python's UTF-8 mode reads every file as UTF-8")
    (tmp_path / "t.csv").write_text("température,b\n1,2\n", encoding="utf-8")
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale
    try:
        got = io.read_array(tmp_path / "t.csv")
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
    np.testing.assert_array_equal(got, [[1.0, 2.0]])


def test_a_writer_left_by_an_exception_is_closed_and_keeps_its_partial_file(tmp_path):
    X, y = _data()
    path = tmp_path / "run.h5"
    w = io.RunWriter(path, X_train=X, y_train=y)
    with pytest.raises(_Boom), w:
        w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)
        raise _Boom
    with pytest.raises(RuntimeError, match=_full(f"RunWriter for {path} is closed")):
        w.add_checkpoint(_net(), step=1, time=0.0, loss=1.0)
    assert w.close() == path  # nothing more: the run did not finish
    assert not path.exists() and w.partial.exists()
    assert io.open_run(w.partial).complete is False


def test_the_data_arrays_are_named_in_their_messages(tmp_path):
    X, y = _data()
    for kw, name in (({"X_train": np.ones(6)}, "X_train"),
                     ({"X_test": np.ones(2), "y_test": np.ones(2)}, "X_test")):
        args = {"X_train": X, "y_train": y, **kw}
        with pytest.raises(ValueError, match=_full(
                f"{name} must be a 2-D array of shape (n_samples, n_features), got 1-D array of "
                f"shape ({args[name].shape[0]},); reshape with X.reshape(-1, 1) for one feature "
                "or X.reshape(1, -1) for one sample")):
            io.RunWriter(tmp_path / "run.h5", **args)


def test_object_arrays_are_never_unpickled(tmp_path):
    A = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", A, allow_pickle=True)
    np.savez(tmp_path / "o.npz", X=A)
    for ext in ("npy", "npz"):
        with pytest.raises(ValueError, match=r"^INPUT: cannot read .*o\." + ext + r" as \." + ext
                           + r" \(Object arrays cannot be loaded when allow_pickle=False\)$"):
            io.read_array(tmp_path / f"o.{ext}")


def test_a_failure_that_removed_the_partial_file_is_reported_as_itself(tmp_path, monkeypatch):
    X, y = _data()
    partial = tmp_path / "run.h5.partial"

    def boom(f, fmt):
        partial.unlink()
        raise _Boom("gone")

    monkeypatch.setattr(_run_file, "stamp", boom)
    with pytest.raises(_Boom, match="gone"):
        io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    assert os.listdir(tmp_path) == []


def test_a_path_of_another_type_is_refused_under_the_inputs_name():
    with pytest.raises(TypeError, match=_full("--data must be a str or os.PathLike, got int")):
        io.read_array(42, name="--data")


def test_a_refused_checkpoint_value_is_refused_before_any_space_is_reserved(
        tmp_path, monkeypatch):
    X, y = _data()
    w = io.RunWriter(tmp_path / "run.h5", X_train=X, y_train=y)
    w.add_checkpoint(_net(), step=0, time=0.0, loss=1.0)
    before = w.partial.read_bytes()

    def full(p, length, *, start=None, what=""):
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(_run_file, "reserve", full)  # a full disk: the value's error first
    with pytest.raises(TypeError, match=_full(
            "checkpoint value 'tag' must be a number, a string, a dict or a numeric array, got "
            "object of dtype object")):
        w.add_checkpoint(_net(), step=1, time=0.0, loss=1.0, tag=object())
    assert w.partial.read_bytes() == before
    monkeypatch.undo()
    assert w.add_checkpoint(_net(), step=1, time=0.0, loss=1.0) == 1
    w.close()
