"""Parameter effects of the ``kernelcomp`` command line (issue 26, the mutation round on cli/).

Each option's effect is read back from what the command wrote (the HDF5 file through
h5py / ``kernelcomp.io``, stdout, stderr) and compared with the library call it stands
for; each documented user error with its exact message and exit status.

The parser itself (options, defaults, types, choices, help texts: the command-line
reference page ``docs/cli.rst`` is generated from it) is pinned in
``tests/fixtures/cli_parser.json``, so that every change of the user-facing surface is a
deliberate one: after changing the parser on purpose, rewrite the file with
``python -m tests.test_cli_effects`` and review its diff.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import io
from kernelcomp.cli import _common, build_parser, main
from tests.spies import record_calls

SPEC = Path(__file__).resolve().parent / "fixtures" / "cli_parser.json"


def _name(value: Any) -> Any:
    """A JSON-able stand-in of an argparse attribute (functions by their name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if value is argparse.SUPPRESS:
        return "==SUPPRESS=="
    if callable(value) and hasattr(value, "__name__"):
        return f"<{value.__module__}.{value.__qualname__}>"
    if isinstance(value, (list, tuple)):
        return [_name(v) for v in value]
    if isinstance(value, dict):
        return {k: _name(v) for k, v in value.items()}
    try:
        return [_name(v) for v in value]  # the activation names, read on demand
    except TypeError:
        return repr(value)


def _parser_spec(parser: argparse.ArgumentParser) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "prog": parser.prog,
        "description": parser.description,
        "defaults": _name(parser._defaults),
        "groups": [[g.title, [a.dest for a in g._group_actions]] for g in parser._action_groups],
        "exclusive": [[g.required, [a.dest for a in g._group_actions]]
                      for g in parser._mutually_exclusive_groups],
        "actions": [],
        "subcommands": {},
    }
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            spec["subcommand_help"] = {c.dest: c.help for c in a._choices_actions}
            spec["subcommand_dest"] = a.dest
            spec["subcommand_metavar"] = a.metavar
            spec["subcommands"] = {k: _parser_spec(v) for k, v in a.choices.items()}
            continue
        spec["actions"].append({
            "kind": type(a).__name__,
            **{k: _name(getattr(a, k)) for k in ("option_strings", "dest", "nargs", "const",
                                                  "default", "type", "choices", "required",
                                                  "help", "metavar")},
        })
    return spec


def _current_spec() -> dict[str, Any]:
    return json.loads(json.dumps(_parser_spec(build_parser())))


# ---------------------------------------------------------------------------
# the parser: the user-facing surface, pinned
# ---------------------------------------------------------------------------
def test_parser_is_the_pinned_one():
    pinned = json.loads(SPEC.read_text())
    current = _current_spec()
    assert current.keys() == pinned.keys()
    assert current["subcommands"].keys() == pinned["subcommands"].keys()
    for name in pinned["subcommands"]:
        assert current["subcommands"][name] == pinned["subcommands"][name], (
            f"kernelcomp {name}: the parser changed; if on purpose, rewrite {SPEC.name} "
            "with python -m tests.test_cli_effects"
        )
    assert current == pinned



def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error(argv, capsys, line):
    """Exit status 2 and exactly ``line`` (one line) on stderr, nothing on stdout."""
    code, out, err = _run(argv, capsys)
    assert (code, out, err) == (2, "", line + "\n")


# ---------------------------------------------------------------------------
# _common: errors, output policy, progress, labels
# ---------------------------------------------------------------------------
def test_parse_errors_are_one_line_naming_the_subcommands_help(tmp_path, capsys):
    _error(["gram", tmp_path / "X.npy"], capsys,
           "kernelcomp: error: the following arguments are required: -o/--output "
           "(see 'kernelcomp gram --help')")
    _error(["kpca", "K.h5", "-o", "d.h5", "--mi-k", "0"], capsys,
           "kernelcomp: error: argument --mi-k: expected a positive integer, got 0 "
           "(see 'kernelcomp kpca --help')")


def test_an_existing_output_is_refused_without_force(tmp_path, capsys):
    X = np.ones((3, 2))
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "K.h5"
    out.write_bytes(b"keep")
    _error(["gram", tmp_path / "X.npy", "-o", out], capsys,
           f"kernelcomp gram: error: {out} exists; pass --force to overwrite it")
    assert out.read_bytes() == b"keep"
    assert _common.check_output(tmp_path / "new.h5", False) == tmp_path / "new.h5"


def test_labels_two_classes_become_pm1_with_a_note(capsys):
    for y, shown in (([0, 1, 1, 0], "0 -> -1 and 1 -> +1"),
                     ([True, False, False, True], "False -> -1 and True -> +1"),
                     (["b", "a", "a", "b"], "'a' -> -1 and 'b' -> +1"),
                     ([[2.0], [5.0], [5.0], [2.0]], "2.0 -> -1 and 5.0 -> +1")):
        got = _common.labels(np.asarray(y), "y", 4)
        assert got.dtype == np.float64 and got.shape == (4,)
        lo = -1.0 if np.asarray(y).ravel()[0] == np.unique(y)[0] else 1.0
        np.testing.assert_array_equal(got, [lo, -lo, -lo, lo])
        assert capsys.readouterr().err == (
            f"kernelcomp: y: classes {shown} (the paper's +-1 labels)\n")
    # +-1 already: unchanged (as float64), no note
    for y in (np.array([-1, 1, 1]), np.array([1.0, -1.0, -1.0], dtype=np.float32)):
        got = _common.labels(y, "y", 3)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, y)
        assert capsys.readouterr().err == ""


def test_labels_three_or_more_classes_kept_with_a_note(capsys):
    y = np.array([2, 0, 1, 1])
    got = _common.labels(y, "--labels", 4)
    np.testing.assert_array_equal(got, y)
    assert got.dtype == y.dtype
    assert capsys.readouterr().err == (
        "kernelcomp: --labels: 3 classes (0, 1, 2): P_k of their centred one-hot indicators, "
        "mutual information by the kNN (KSG) estimator\n")
    for n_classes, tail in ((5, ""), (6, ", ...")):
        y = np.array([f"c{i}" for i in range(n_classes)])
        got = _common.labels(y, "y", n_classes)
        assert got.dtype == y.dtype
        np.testing.assert_array_equal(got, y)
        assert capsys.readouterr().err == (
            f"kernelcomp: y: {n_classes} classes ('c0', 'c1', 'c2', 'c3', 'c4'{tail}): P_k of "
            "their centred one-hot indicators, mutual information by the kNN (KSG) estimator\n")


def test_labels_real_targets_and_errors(capsys):
    y = np.array([0.5, 1.5, 2.5], dtype=np.float32)
    got = _common.labels(y, "y", 3)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, y.astype(np.float64))
    one = _common.labels(np.array([3, 3]), "y", 2)  # one class: as real targets
    assert one.dtype == np.float64 and one.tolist() == [3.0, 3.0]
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match=r"^y must be a 1-D array of labels, got shape "
                                         r"\(3, 2\)$"):
        _common.labels(np.ones((3, 2)), "y", 3)
    with pytest.raises(ValueError, match=r"^y has 3 labels, but there are 4 samples$"):
        _common.labels(np.ones(3), "y", 4)
    with pytest.raises(ValueError, match=r"^y must be numeric \(real targets\) or have two "
                                         r"classes, got dtype complex128 with 3 classes$"):
        _common.labels(np.array([1, 2, 3], dtype=complex), "y", 3)
    with pytest.raises(ValueError, match=r"^y contains NaN or infinity$"):
        _common.labels(np.array([1.0, np.inf, 2.0]), "y", 3)


def test_deferred_sigint_stops_then_aborts_and_restores_the_handler(capsys):
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    with _common.deferred_sigint() as should_stop:
        assert should_stop() is False
        signal.raise_signal(signal.SIGINT)
        assert should_stop() is True
        assert capsys.readouterr().err == (
            "\nkernelcomp: stopping after the current block (Ctrl-C again to abort)\n")
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert should_stop() is True
    assert signal.getsignal(signal.SIGINT) is previous
    seen = []

    def in_a_thread():  # no handler can be installed there: never asks to stop
        with _common.deferred_sigint() as stop:
            seen.append(stop())

    t = threading.Thread(target=in_a_thread)
    t.start()
    t.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is previous


def test_verbose_logging_prefixes_and_restores(capsys):
    import logging

    log = logging.getLogger("kernelcomp")
    level, handlers = log.level, list(log.handlers)
    with _common.verbose_logging(True):
        log.info("route %s", "A")
    assert capsys.readouterr().err == "kernelcomp: route A\n"
    assert log.level == level and log.handlers == handlers
    with _common.verbose_logging(False):
        log.info("route B")
    assert capsys.readouterr().err == ""


def test_progress_on_and_say(capsys, monkeypatch):
    ns = argparse.Namespace
    assert _common.progress_on(ns(quiet=False, progress=True)) is True
    assert _common.progress_on(ns(quiet=True, progress=True)) is False
    assert _common.progress_on(ns()) is False  # not a terminal under pytest
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _common.progress_on(ns(quiet=False, progress=False)) is True
    assert _common.progress_on(ns(quiet=True)) is False
    _common.say(ns(quiet=False), "line")
    _common.say(ns(), "other")
    _common.say(ns(quiet=True), "hidden")
    assert capsys.readouterr().out == "line\nother\n"


def test_progress_bar_only_with_progress_and_several_items(capsys):
    ns = argparse.Namespace
    items = [1, 2, 3]
    with _common.progress_bar(ns(progress=False), items, "D", "u") as it:
        assert it is items
    with _common.progress_bar(ns(progress=True), [7], "D", "u") as it:
        assert it == [7]
    assert capsys.readouterr().err == ""
    with _common.progress_bar(ns(progress=True), items, "work", "thing") as bar:
        assert list(bar) == items
        assert bar.desc == "work" and bar.unit == "thing" and bar.pos == 0
    err = capsys.readouterr().err
    assert "work: 100%" in err and "3/3" in err and "thing/s" in err
    assert bar.disable or bar.n == 3


def test_check_plot_dir(tmp_path):
    assert _common.check_plot_dir(None) is None
    _common.check_plot_dir(str(tmp_path))
    _common.check_plot_dir(str(tmp_path / "new"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(_common.UsageError, match=f"^--plot {re.escape(str(tmp_path / 'f'))} "
                                                 "exists and is not a directory$"):
        _common.check_plot_dir(str(tmp_path / "f"))


def test_save_figure_draws_titles_and_saves(tmp_path, monkeypatch):
    from matplotlib.font_manager import FontProperties

    from kernelcomp.plotting import _style

    saved = []
    monkeypatch.setattr(_style, "save_figure", lambda fig, path: saved.append((fig, path)))
    drawn = []
    path = _common.save_figure(tmp_path / "a.png", lambda ax: drawn.append(ax) or ax, "T")
    assert path == tmp_path / "a.png" and saved[0][1] == path
    ax = saved[0][0].axes[0]
    assert drawn == [ax] and ax.get_title() == "T"
    assert ax.title.get_fontsize() == FontProperties(size="medium").get_size_in_points()
    _common.save_figure(tmp_path / "b.png", lambda ax: ax)
    assert saved[1][0].axes[0].get_title() == ""
    # a drawing that returns no axes gets no title (and no error)
    assert _common.save_figure(tmp_path / "c.png", lambda ax: None, "T") == tmp_path / "c.png"
    assert saved[2][0].axes[0].get_title() == ""


@pytest.mark.parametrize(("n", "most", "expected"), [
    (0, 8, []), (3, 8, [0, 1, 2]), (8, 8, list(range(8))),
    (9, 8, [0, 1, 2, 3, 5, 6, 7, 8]), (20, 4, [0, 6, 13, 19]),
])
def test_evenly(n, most, expected):
    # np.linspace(0, n - 1, most).round(): first and last kept
    assert _common.evenly(n, most) == expected



def test_diagnostics_into_the_run_file_and_over_an_output(tmp_path, xy, capsys, monkeypatch):
    from kernelcomp.cli import _kpca

    X, y = xy
    run, _ = _small_run(tmp_path, X, y)
    code, out, err = _run(["kpca", run, "--into-run", "-q", "--n-components", 3], capsys)
    assert (code, out) == (0, ""), err
    d = io.load_diagnostics(run, name="kpca")
    assert d.config["command"] == "kpca" and d.config["n_components"] == 3
    code, out, _ = _run(["kpca", run, "--into-run", "--name", "two"], capsys)
    assert code == 0
    assert out.startswith(f"added diagnostics/two to {run}: kernel PCA of 2 Gram matrices\n")
    # refused before any work, in the command line's words
    calls = record_calls(monkeypatch, _kpca, "sources")
    _error(["kpca", run, "--into-run"], capsys,
           f"kernelcomp kpca: error: {run} already holds diagnostics 'kpca'; pass --force to "
           "replace them")
    _error(["kpca", run, run, "--into-run"], capsys,
           "kernelcomp kpca: error: --into-run needs exactly one FILE, a run file")
    assert calls == []
    # -o over an existing file with --force
    (tmp_path / "d.h5").write_bytes(b"old")
    code, out, err = _run(["kpca", run, "-o", tmp_path / "d.h5", "--force", "-q"], capsys)
    assert (code, out) == (0, ""), err
    assert len(io.load_diagnostics(tmp_path / "d.h5").entries) == 2



# ---------------------------------------------------------------------------
# gram
# ---------------------------------------------------------------------------
@pytest.fixture
def xy(tmp_path):
    rng = np.random.default_rng(26)
    X = rng.standard_normal((20, 3))
    y = np.where(np.arange(20) % 2 == 0, 1.0, -1.0)  # 5 of each class in any 10 first
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return X, y


def test_gram_defaults_are_the_documented_kernel(tmp_path, xy, capsys):
    X, _ = xy
    for kernel, cls in (("ntk", kc.NTK), ("nngp", kc.NNGP)):
        out = tmp_path / f"{kernel}.h5"
        extra = [] if kernel == "ntk" else ["--kernel", "nngp"]
        t0 = time.perf_counter()
        code, stdout, err = _run(["gram", tmp_path / "X.npy", *extra, "-o", out], capsys)
        took = time.perf_counter() - t0
        assert code == 0, err
        # the time it says it took is at most the call's
        assert float(stdout.rsplit(" in ", 1)[1].split()[0]) <= took + 0.05
        # default: depth 1, relu, sigma_w 1, sigma_b 0, NTK parameterization
        k = cls(depth=1, activation="relu", weight_std=1.0, bias_std=0.0,
                parameterization="ntk", width=None)
        info = io.read_gram_info(out)
        assert info.kernel == k
        np.testing.assert_array_equal(io.load_gram(out), k(X))
        assert info.inputs == {"X": str(tmp_path / "X.npy"), "X_key": None}
        assert re.fullmatch(rf"wrote {re.escape(str(out))}: 20 x 20 float64 "
                            rf"{re.escape(repr(k))} in \d+\.\d s\n", stdout), stdout


def test_gram_records_its_inputs(tmp_path, xy, capsys):
    X, _ = xy
    np.savez(tmp_path / "in.npz", a=X, b=X[:5])
    net = kc.FCNetwork.init(3, [8], seed=1)
    net.save(tmp_path / "net.npz")
    out = tmp_path / "K.h5"
    code, _, err = _run(["gram", tmp_path / "in.npz", "--key", "a", "--y", tmp_path / "in.npz",
                         "--y-key", "b", "--network", tmp_path / "net.npz", "-o", out, "-q"],
                        capsys)
    assert code == 0, err
    assert io.read_gram_info(out).inputs == {
        "X": str(tmp_path / "in.npz"), "X_key": "a", "network": str(tmp_path / "net.npz"),
        "checkpoint": -1, "Y": str(tmp_path / "in.npz"), "Y_key": "b"}
    np.testing.assert_allclose(io.load_gram(out), kc.EmpiricalNTK(net)(X, X[:5]), rtol=1e-12)


def test_gram_passes_its_options_to_compute_gram_file(tmp_path, xy, capsys, monkeypatch):
    calls = record_calls(monkeypatch, io, "compute_gram_file")
    out = tmp_path / "K.h5"
    code, _, err = _run(["gram", tmp_path / "X.npy", "-o", out, "--n-jobs", 2,
                         "--block-rows", 5, "--dtype", "float32", "--progress"], capsys)
    assert code == 0, err
    (_, kwargs), = calls
    assert kwargs["n_jobs"] == 2 and kwargs["block_rows"] == 5 and kwargs["dtype"] == "float32"
    assert kwargs["progress"] is True and kwargs["resume"] is False
    assert kwargs["force"] is False and callable(kwargs["should_stop"])
    assert kwargs["should_stop"]() is False
    assert io.read_gram_info(out).n_blocks == 4
    code, stdout, err = _run(["gram", tmp_path / "X.npy", "-o", out, "--force", "-q"], capsys)
    assert (code, stdout, err) == (0, "", "")
    assert calls[1][1]["force"] is True and calls[1][1]["progress"] is False
    assert calls[1][1]["n_jobs"] is None and calls[1][1]["block_rows"] is None


@pytest.mark.parametrize(("flags", "message"), [
    (["--params", "last"], "--params needs --network"),
    (["--network-activation", "tanh"], "--network-activation needs --network"),
    (["--model", "a.b:c"], "--model needs --network"),
    (["--input-shape", "1,3"], "--input-shape needs --network"),
    (["--max-memory", "1G"], "--max-memory needs --network"),
    (["--params", "last", "--max-memory", "1G"], "--params, --max-memory need --network"),
])
def test_gram_empirical_options_need_a_network(tmp_path, xy, capsys, flags, message):
    _error(["gram", tmp_path / "X.npy", *flags, "-o", tmp_path / "K.h5"], capsys,
           f"kernelcomp gram: error: {message}")


def test_gram_network_options(tmp_path, xy, capsys):
    X, _ = xy
    net = kc.FCNetwork.init(3, [8], activation="tanh", seed=4)
    np.savez(tmp_path / "sd.npz", **{"0.weight": net.weights[0], "0.bias": net.biases[0],
                                     "2.weight": net.weights[1], "2.bias": net.biases[1]})
    out = tmp_path / "K.h5"
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "sd.npz",
                         "--network-activation", "tanh", "-o", out, "-q"], capsys)
    assert code == 0, err
    sd_net = kc.FCNetwork.load(tmp_path / "sd.npz", activation="tanh")
    np.testing.assert_allclose(io.load_gram(out), kc.EmpiricalNTK(sd_net)(X), rtol=1e-12)
    net.save(tmp_path / "net.npz")
    base = ["gram", tmp_path / "X.npy", "--network", tmp_path / "net.npz", "--kernel", "nngp"]
    for flags, flag in ((["--input-shape", "3"], "--input-shape"),
                        (["--max-memory", "1G"], "--max-memory"),
                        (["--params", "last", "--input-shape", "3"], "--params")):
        _error([*base, *flags, "-o", out, "--force"], capsys,
               f"kernelcomp gram: error: {flag} applies to --kernel ntk only")
    for flags, flag in ((["--input-shape", "3"], "--input-shape"),
                        (["--max-memory", "1G"], "--max-memory")):
        _error(["gram", tmp_path / "X.npy", "--network", tmp_path / "net.npz", *flags, "-o",
                out, "--force"], capsys,
               f"kernelcomp gram: error: {flag} applies to PyTorch models (torch.export, "
               "TorchScript or --model)")
    _error(["gram", tmp_path / "X.npy", "--network", tmp_path / "net.npz", "--depth", "2",
            "-o", out, "--force"], capsys,
           "kernelcomp gram: error: --depth describe an analytic kernel; they do not apply "
           "with --network")



def test_gram_names_its_inputs_in_errors(tmp_path, xy, capsys):
    (tmp_path / "a.txt").write_text("1")
    for argv, name in ((["gram", tmp_path / "a.txt"], "INPUT"),
                       (["gram", tmp_path / "X.npy", "--y", tmp_path / "a.txt"], "INPUT2")):
        code, out, err = _run([*argv, "-o", tmp_path / "K.h5"], capsys)
        assert (code, out) == (2, "")
        assert err.startswith(f"kernelcomp gram: error: {name}: unsupported file type '.txt' "
                              f"for {tmp_path / 'a.txt'}; expected ")


def test_gram_of_a_torch_model_in_the_asked_dtype(tmp_path, xy, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    from kernelcomp.cli import _gram

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    torch.jit.save(torch.jit.script(model), tmp_path / "m.pt")
    calls = record_calls(monkeypatch, _gram, "empirical_ntk")
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "m.pt", "--dtype",
                         "float32", "-o", tmp_path / "K.h5", "-q"], capsys)
    assert code == 0, err
    (args, _), = calls
    assert args[1:] == ("all", None, "float32", None)
    _error(["gram", tmp_path / "X.npy", "--network", tmp_path / "m.pt", "--kernel", "nngp",
            "-o", tmp_path / "N.h5"], capsys,
           "kernelcomp gram: error: --kernel nngp needs a kernelcomp network; the empirical "
           "kernel of a PyTorch model is its NTK")



# ---------------------------------------------------------------------------
# kpca
# ---------------------------------------------------------------------------
def _small_run(tmp_path, X, y, seeds=(0, 1), name="run.h5"):
    nets = [kc.FCNetwork.init(X.shape[1], [10], seed=s) for s in seeds]
    with io.RunWriter(tmp_path / name, X_train=X, y_train=y, X_test=X[:12],
                      y_test=y[:12], config={"alpha": 0.01}) as w:
        for i, net in enumerate(nets):
            w.add_checkpoint(net, step=3 * i, time=0.5 * i, loss=1.0)
    return tmp_path / name, nets


def _same_entry(got, expected):
    assert got.keys() >= expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
        else:
            assert got[key] == pytest.approx(value), key


def test_kpca_options_reach_the_kpca_record(tmp_path, xy, capsys):
    from kernelcomp import diagnostics as dg

    X, y = xy
    K = kc.NTK()(X)
    io.save_gram(tmp_path / "K.h5", K)
    out = tmp_path / "d.h5"
    code, _, err = _run(["kpca", tmp_path / "K.h5", "--labels", tmp_path / "y.npy", "-o", out,
                         "--n-components", 25, "--mi-components", 3, "--mi-k", 2,
                         "--eigenvectors", "-q"], capsys)
    assert code == 0, err
    e = io.load_diagnostics(out).entries[0]
    # --n-components beyond n: all n
    _same_entry(e, dg.kpca_record(K, y, n_components=20, mi_components=3, mi_k=2,
                                  eigenvectors=True))
    assert e["eigenvectors"].shape == (20, 20) and e["mutual_information"].size == 3
    assert e["label"] == "K.h5" and e["source"] == str(tmp_path / "K.h5")
    code, _, err = _run(["kpca", tmp_path / "K.h5", "--labels", tmp_path / "y.npy", "-o", out,
                         "--n-components", 4, "--force", "-q"], capsys)
    assert code == 0, err
    e = io.load_diagnostics(out).entries[0]
    # the defaults: mi_components 10, mi_k 5, no eigenvectors
    _same_entry(e, dg.kpca_record(K, y, n_components=4, mi_components=10, mi_k=5))
    assert "eigenvectors" not in e


def test_kpca_config_and_compression_convention(tmp_path, xy, capsys):
    from kernelcomp import diagnostics as dg

    X, y = xy
    run, nets = _small_run(tmp_path, X, y)
    out = tmp_path / "d.h5"
    code, stdout, err = _run(["kpca", run, "-o", out, "--informative", "0,1",
                              "--compression-convention", "rms", "--params", "last",
                              "--dtype", "float64", "--n-components", 5, "--split", "test",
                              "--n-jobs", 1], capsys)
    assert code == 0, err
    d = io.load_diagnostics(out)
    assert d.config == {
        "command": "kpca", "files": [str(run)], "data": None, "labels": None,
        "split": "test", "params": "last", "n_components": 5, "mi_components": 10, "mi_k": 5,
        "informative": [0, 1], "compression_convention": "rms", "dtype": "float64",
        "model": None, "input_shape": None}
    for e, net in zip(d.entries, nets, strict=True):
        lam = dg.compression(net, informative=[0, 1], convention="rms")
        assert e["compression"] == pytest.approx(lam, rel=1e-12)
        _same_entry(e, dg.kpca_record(kc.EmpiricalNTK(net, params="last")(X[:12]), y[:12],
                                      n_components=5))
        assert f"  run:step {e['step']}: P_10 = " in stdout
        assert f", lambda {lam:.3f} (rms)\n" in stdout
    assert stdout.startswith(f"wrote {out}: kernel PCA of 2 Gram matrices\n")
    assert [(e["step"], e["time"], e["checkpoint"]) for e in d.entries] == [(0, 0.0, 0),
                                                                          (3, 0.5, 1)]


def test_kpca_summary_line():
    from kernelcomp.cli._kpca import summary

    P = np.linspace(0.1, 1.0, 12)
    assert summary({"cumulative_projection": P}) == f"P_10 = {P[9]:.3f}"
    assert summary({"cumulative_projection": P[:4]}) == f"P_10 = {P[3]:.3f}"
    e = {"cumulative_projection": P, "n_classes": 3, "mutual_information": np.array([0.5, 1.0]),
         "mi_method": "ksg"}
    assert summary(e) == f"P_10 = {P[9]:.3f} (one-hot, 3 classes), MI top-2 mean 0.750 bit (KSG)"
    e["mi_method"] = "other"
    assert summary(e).endswith("MI top-2 mean 0.750 bit")


def test_kpca_notes_a_label_mean(tmp_path, xy, capsys):
    X, _ = xy
    io.save_gram(tmp_path / "K.h5", kc.NTK()(X))
    for y, note in ((np.r_[np.ones(15), -np.ones(5)], True),  # mean share 0.25
                    (np.r_[np.ones(10), -np.ones(10)], False)):
        np.save(tmp_path / "yy.npy", y)
        code, stdout, err = _run(["kpca", tmp_path / "K.h5", "--labels", tmp_path / "yy.npy",
                                  "-o", tmp_path / "d.h5", "--force"], capsys)
        assert code == 0
        line = ("kernelcomp kpca: the labels' mean carries 25% of ||y||^2, which P_k counts "
                "(uncentred, as in the paper); centre them to leave it out\n")
        assert err == (line if note else "")
        assert "K.h5: P_10 = " in stdout
    code, stdout, err = _run(["kpca", tmp_path / "K.h5", "--labels", tmp_path / "yy.npy",
                              "-o", tmp_path / "d.h5", "--force", "-q"], capsys)
    assert (code, stdout, err) == (0, "", "")



def _record_plots(monkeypatch):
    """The calls of kpca's plotting functions and figure saves (which still draw)."""
    from kernelcomp import plotting
    from kernelcomp.cli import _kpca

    calls = []
    for name in ("plot_spectra", "plot_label_projections", "plot_cumulative_projections",
                 "plot_mutual_informations"):
        real = getattr(plotting, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, args, {k: v for k, v in kwargs.items() if k != "ax"}))
            return _real(*args, **kwargs)

        monkeypatch.setattr(plotting, name, spy)
    real_save = _kpca.save_figure

    def save(path, draw, title=None):
        calls.append(("save", Path(path).name, title))
        return real_save(path, draw, title)

    monkeypatch.setattr(_kpca, "save_figure", save)
    return calls


def test_kpca_figures_of_a_run(tmp_path, xy, capsys, monkeypatch):
    X, y = xy
    run, _ = _small_run(tmp_path, X, y)
    calls = _record_plots(monkeypatch)
    figs = tmp_path / "figs"
    code, stdout, err = _run(["kpca", run, "-o", tmp_path / "d.h5", "--plot", figs], capsys)
    assert code == 0, err
    entries = io.load_diagnostics(tmp_path / "d.h5").entries
    names = ["step 0", "step 3"]
    spectra = [c for c in calls if c[0] == "plot_spectra"]
    (_, args, kw), = spectra
    assert args[1] == names and kw["power_law"] is False
    assert kw["traces"] == [pytest.approx(float(e["trace"])) for e in entries]
    for got, e in zip(args[0], entries, strict=True):
        np.testing.assert_array_equal(got, e["eigenvalues"])
    for name in ("plot_label_projections", "plot_cumulative_projections"):
        (_, args, _), = [c for c in calls if c[0] == name]
        np.testing.assert_array_equal(args[1], y)
        assert args[2] == names
        for got, e in zip(args[0], entries, strict=True):
            np.testing.assert_array_equal(got, e["label_projection"])
    (_, args, kw), = [c for c in calls if c[0] == "plot_mutual_informations"]
    assert args[1] == names
    assert kw["floor"] == pytest.approx(np.mean([e["mutual_information_floor"]
                                                 for e in entries]))
    assert [c[1:] for c in calls if c[0] == "save"] == [
        (f, "run.h5") for f in ("spectrum.png", "label_projection.png",
                                "cumulative_projection.png", "mutual_information.png")]
    assert f"wrote 4 figures into {figs}\n" in stdout
    assert sorted(p.name for p in figs.iterdir()) == [
        "cumulative_projection.png", "label_projection.png", "mutual_information.png",
        "spectrum.png"]


def test_kpca_figures_of_several_files(tmp_path, xy, capsys, monkeypatch):
    X, _ = xy
    K = kc.NTK()(X)
    io.save_gram(tmp_path / "A.h5", K)
    io.save_gram(tmp_path / "B.h5", 2 * K)
    calls = _record_plots(monkeypatch)
    # no labels: the spectrum only; one Gram: its power law, its file in the title
    code, _, err = _run(["kpca", tmp_path / "A.h5", "-o", tmp_path / "d.h5", "--plot",
                         tmp_path / "f1", "-q"], capsys)
    assert code == 0, err
    assert [(c[0], c[2].get("power_law")) for c in calls if c[0] != "save"] == [
        ("plot_spectra", True)]
    assert [c[1:] for c in calls if c[0] == "save"] == [("spectrum.png", "A.h5")]
    calls.clear()
    # two files, the same labels: the labels' figures, named by label, no title
    code, _, err = _run(["kpca", tmp_path / "A.h5", tmp_path / "B.h5", "--labels",
                         tmp_path / "y.npy", "-o", tmp_path / "e.h5", "--plot", tmp_path / "f2",
                         "-q"], capsys)
    assert code == 0, err
    assert [c[0] for c in calls if c[0] != "save"] == [
        "plot_spectra", "plot_label_projections", "plot_cumulative_projections",
        "plot_mutual_informations"]
    assert all(c[1][1 if c[0] == "plot_spectra" or c[0] == "plot_mutual_informations"
                    else 2] == ["A.h5", "B.h5"] for c in calls if c[0] != "save")
    assert [c[2] for c in calls if c[0] == "save"] == [None] * 4
    calls.clear()
    # three classes: no label-projection figures (their P_k is of one-hot indicators)
    np.save(tmp_path / "y3.npy", np.arange(20) % 3)
    code, _, err = _run(["kpca", tmp_path / "A.h5", tmp_path / "B.h5", "--labels",
                         tmp_path / "y3.npy", "-o", tmp_path / "g.h5", "--plot", tmp_path / "f3",
                         "-q"], capsys)
    assert code == 0, err
    assert [c[0] for c in calls if c[0] != "save"] == ["plot_spectra",
                                                       "plot_mutual_informations"]


def test_kpca_progress_names_each_stage(tmp_path, xy, capsys):
    X, y = xy
    run, _ = _small_run(tmp_path, X, y)
    code, _, err = _run(["kpca", run, "-o", tmp_path / "e.h5", "--progress"], capsys)
    assert code == 0
    for stage in ("run:step 0: Gram", "run:step 0: eigenpairs, projections, MI",
                  "run:step 3: Gram", "run:step 3: eigenpairs, projections, MI"):
        assert stage in err
    assert "kernel PCA: " in err and "2/2" in err


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def _head(info):
    return (f"{info['path']}: kernelcomp {info['format']} file (format 1.0, written by "
            f"kernelcomp {kc.__version__} at {info['created']})")


def test_info_text_of_every_format(tmp_path, xy, capsys):
    X, y = xy
    x = tmp_path / "X.npy"
    g = tmp_path / "K.h5"
    assert main(["gram", str(x), "--depth", "2", "--bias-std", "0.5", "-o", str(g), "-q"]) == 0
    plain = tmp_path / "P.h5"
    io.save_gram(plain, np.eye(2))
    run, _ = _small_run(tmp_path, X, y)
    net = kc.FCNetwork.init(3, [4, 2], activation="erf", seed=0)
    net.save(tmp_path / "n.h5")
    io.save_diagnostics(tmp_path / "d.h5", [{"label": "a", "v": 1.23456789,
                                             "arr": np.ones((2, 3))}], config={"c": 2})
    files = [g, plain, run, tmp_path / "n.h5", tmp_path / "d.h5"]
    code, out, err = _run(["info", *files], capsys)
    assert code == 0, err
    infos = [io.file_info(f) for f in files]
    gi = infos[0]
    # the stored description (keys sorted), None-valued parameters (width) left out
    kernel = "activation=relu, bias_std=0.5, depth=2, parameterization=ntk, weight_std=1.0"
    expected = [
        _head(gi),
        f"  matrix:     20 x 20 float64, symmetric, complete, blocks {gi['blocks']}",
        f"  kernel:     NTK({kernel})",
        f"  input hash: {gi['input_hash']}",
        f"  inputs:     {json.dumps({'X': str(x)})}",
        _head(infos[1]),
        "  matrix:     2 x 2 float64, symmetric, complete, blocks 1/1",
        "  kernel:     -()",
        "  input hash: -",
        _head(infos[2]),
        "  state:      complete",
        "  data:       X_test (12, 3), X_train (20, 3), y_test (12,), y_train (20,)",
        f"  config:     {json.dumps(infos[2]['config'])}",
        "  checkpoints: 2",
        "       0  step        0  time          0  loss          1",
        "       1  step        3  time        0.5  loss          1",
        _head(infos[3]),
        f"  network:    d=3, widths [4, 2], 1 output(s), erf, ntk, {net.n_params} parameters",
        _head(infos[4]),
        '  config:     {"c": 2}',
        "  entries:    1",
        "       0  a: v=1.235",
        "          arrays: arr (2, 3)",
    ]
    assert gi["input_hash"]
    assert out.splitlines() == expected


def test_info_of_a_run_with_summary_and_diagnostics(tmp_path, xy, capsys):
    from kernelcomp.cli._info import describe

    info = {"path": "r.h5", "format": "run", "format_version": "1.0",
            "kernelcomp_version": "9", "created": "now", "complete": False, "config": {},
            "summary": {"status": "ok"}, "data": {"X_train": [3, 2]}, "diagnostics": ["a", "b"],
            "checkpoints": [{"step": 12345, "time": None, "loss": 0.000123456}]}
    assert describe(info) == [
        "r.h5: kernelcomp run file (format 1.0, written by kernelcomp 9 at now)",
        "  state:      INCOMPLETE (the run did not finish)",
        "  data:       X_train (3, 2)",
        "  config:     {}",
        '  summary:    {"status": "ok"}',
        "  diagnostics: a, b",
        "  checkpoints: 1",
        "       0  step    12345  time          -  loss  0.0001235",
    ]
    gram = {"path": "K.h5", "format": "gram", "format_version": "1.0",
            "kernelcomp_version": "9", "created": "now", "shape": [2, 3], "dtype": "float32",
            "symmetric": False, "kernel": None, "input_hash": None, "blocks": "0/1",
            "complete": False, "inputs": {"X": "a.npy", "X_key": None}}
    assert describe(gram)[1:] == [
        "  matrix:     2 x 3 float32, INCOMPLETE (resume with --resume), blocks 0/1",
        "  kernel:     -()",
        "  input hash: -",
        '  inputs:     {"X": "a.npy"}',
    ]
    diag = {"path": "d.h5", "format": "diagnostics", "format_version": "1.0",
            "kernelcomp_version": "9", "created": "now", "config": {"c": [1, 2]},
            "entries": [{"label": "e", "values": {"k": 3, "s": "x", "f": 0.123456, "n": None},
                         "arrays": {"a": [2, 3], "b": [4]}},
                        {"label": "g", "arrays": {}}]}  # no values
    assert describe(diag)[1:] == [
        '  config:     {"c": [1, 2]}',
        "  entries:    2",
        "       0  e: k=3, s=x, f=0.1235, n=-",
        "          arrays: a (2, 3), b (4,)",
        "       1  g: ",
        "          arrays: ",
    ]


def test_info_json_one_file_or_several(tmp_path, capsys, monkeypatch):
    io.save_gram(tmp_path / "A.h5", np.eye(2))
    io.save_gram(tmp_path / "B.h5", np.eye(3))
    code, out, _ = _run(["info", "--json", tmp_path / "A.h5"], capsys)
    assert code == 0
    assert out == json.dumps(io.file_info(tmp_path / "A.h5"), indent=2, default=str) + "\n"
    code, out, _ = _run(["info", "--json", tmp_path / "A.h5", tmp_path / "B.h5"], capsys)
    assert json.loads(out) == [json.loads(json.dumps(io.file_info(tmp_path / n), default=str))
                               for n in ("A.h5", "B.h5")]
    assert out.startswith("[\n  {\n    ")
    # what JSON cannot hold is written as its text
    monkeypatch.setattr(io, "file_info", lambda f: {"path": Path("a/b.h5"), "n": 2})
    code, out, _ = _run(["info", "--json", tmp_path / "A.h5"], capsys)
    assert (code, out) == (0, '{\n  "path": "a/b.h5",\n  "n": 2\n}\n')



# ---------------------------------------------------------------------------
# _sources: what kpca and geometry read
# ---------------------------------------------------------------------------
def test_sources_refuse_what_they_cannot_read(tmp_path, xy, capsys):
    X, y = xy
    io.save_gram(tmp_path / "K.h5", kc.NTK()(X))
    io.save_diagnostics(tmp_path / "d.h5", [{"a": 1}])
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.ones(2)
    (tmp_path / "w.bin").write_bytes(b"\0")
    (tmp_path / "noext").write_bytes(b"\0")
    with io.RunWriter(tmp_path / "empty.h5", X_train=X, y_train=y):
        pass
    o = ["-o", tmp_path / "o.h5"]
    p = tmp_path
    for command, name, message in [
        ("kpca", "gone.h5", f"{p / 'gone.h5'}: no such file"),
        ("kpca", "foreign.h5", f"{p / 'foreign.h5'} is not a kernelcomp file (no "
                               "'kernelcomp_format' attribute)"),
        ("kpca", "d.h5", f"{p / 'd.h5'} is a kernelcomp 'diagnostics' file; kpca reads Gram, "
                         "run or network files"),
        ("geometry", "K.h5", f"{p / 'K.h5'} is a kernelcomp 'gram' file; geometry reads run or "
                             "network files"),
        ("kpca", "w.bin", f"{p / 'w.bin'}: unsupported file type '.bin'; kpca reads .h5 "
                          "(Gram/run files), .npz, .pt and .pt2 checkpoints"),
        ("geometry", "noext", f"{p / 'noext'}: unsupported file type '(none)'; geometry reads "
                              ".h5 (run/network files), .npz, .pt and .pt2 checkpoints"),
        ("kpca", "empty.h5", f"{p / 'empty.h5'} holds no checkpoints"),
    ]:
        _error([command, p / name, *o], capsys, f"kernelcomp {command}: error: {message}")
    run, _ = _small_run(tmp_path, X, y)
    with io.RunWriter(tmp_path / "notest.h5", X_train=X, y_train=y) as w:
        w.add_checkpoint(kc.FCNetwork.init(3, [4], seed=0), step=0, time=0.0, loss=1.0)
    _error(["kpca", p / "notest.h5", "--split", "test", *o], capsys,
           f"kernelcomp kpca: error: {p / 'notest.h5'} stores no test data (--split test)")
    np.save(p / "v.npy", X[:, 0])
    _error(["kpca", run, "--data", p / "v.npy", *o], capsys,
           "kernelcomp kpca: error: --data must be a 2-D array of shape (n_samples, n_features), "
           "got 1-D array of shape (20,); reshape with X.reshape(-1, 1) for one feature or "
           "X.reshape(1, -1) for one sample")
    _error(["kpca", p / "K.h5", "--data", p / "X.npy", *o], capsys,
           f"kernelcomp kpca: error: {p / 'K.h5'} is a Gram file: --data does not apply to it")
    kc.FCNetwork.init(3, [4], seed=0).save(p / "net.npz")
    _error(["kpca", p / "net.npz", *o], capsys,
           f"kernelcomp kpca: error: {p / 'net.npz'} is a network checkpoint: pass --data "
           "(and --labels)")
    assert not (p / "o.h5").exists()


def test_sources_data_labels_keys_and_label_names(tmp_path, xy, capsys):
    X, y = xy
    y01 = (y > 0).astype(int)
    # a run whose stored labels are 0/1: the note names them "labels"
    net = kc.FCNetwork.init(3, [6], seed=5)
    with io.RunWriter(tmp_path / "r.h5", X_train=X, y_train=y01) as w:
        w.add_checkpoint(net, step=7, time=1.5, loss=1.0)
    code, _, err = _run(["kpca", tmp_path / "r.h5", "-o", tmp_path / "a.h5", "-q"], capsys)
    assert code == 0
    assert err == "kernelcomp: labels: classes 0 -> -1 and 1 -> +1 (the paper's +-1 labels)\n"
    e = io.load_diagnostics(tmp_path / "a.h5").entries[0]
    assert e["label"] == "r:step 7" and e["source"] == str(tmp_path / "r.h5")
    assert (e["step"], e["time"], e["checkpoint"]) == (7, 1.5, 0)
    _same_entry(e, kc.diagnostics.kpca_record(kc.EmpiricalNTK(net)(X), y))
    # --data/--labels with their keys, on the run's network and on a network .h5
    Xn, yn = X[::-1] * 2, y01[::-1]
    np.savez(tmp_path / "in.npz", pts=Xn, other=np.ones(3))
    with h5py.File(tmp_path / "lab.h5", "w") as f:
        f["lab"] = yn
    net.save(tmp_path / "n.h5")
    code, _, err = _run(["kpca", tmp_path / "r.h5", tmp_path / "n.h5", "--data",
                         tmp_path / "in.npz", "--data-key", "pts", "--labels",
                         tmp_path / "lab.h5", "--labels-key", "lab", "-o", tmp_path / "b.h5",
                         "-q"], capsys)
    assert code == 0, err
    assert err == ("kernelcomp: --labels: classes 0 -> -1 and 1 -> +1 (the paper's +-1 "
                   "labels)\n") * 2
    ref = kc.diagnostics.kpca_record(kc.EmpiricalNTK(net)(Xn), np.where(yn == 1, 1.0, -1.0))
    entries = io.load_diagnostics(tmp_path / "b.h5").entries
    assert [e["label"] for e in entries] == ["r:step 7", "n.h5"]
    for e in entries:
        _same_entry(e, ref)
    # a Gram file's labels: named --labels
    io.save_gram(tmp_path / "K.h5", kc.NTK()(X))
    np.save(tmp_path / "y01.npy", y01)
    code, _, err = _run(["kpca", tmp_path / "K.h5", "--labels", tmp_path / "y01.npy", "-o",
                         tmp_path / "c.h5", "-q"], capsys)
    assert code == 0 and err.startswith("kernelcomp: --labels: classes 0 -> -1")


def test_empirical_ntk_of_each_kind_of_network():
    from kernelcomp.cli._common import UsageError
    from kernelcomp.cli._sources import empirical_ntk

    net = kc.FCNetwork.init(3, [4], seed=0)
    assert empirical_ntk(net).to_dict() == kc.EmpiricalNTK(net).to_dict()
    assert empirical_ntk(net, "headless").to_dict() == kc.EmpiricalNTK(
        net, params="headless").to_dict()
    torch = pytest.importorskip("torch")
    from kernelcomp._torch_ntk import TorchNTK

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    k = empirical_ntk(model, "last")
    assert isinstance(k, TorchNTK)
    assert k.to_dict() == TorchNTK(model, params="last", dtype="float64").to_dict()
    k = empirical_ntk(model, "all", dtype="float32", max_memory=2**20)
    assert k.to_dict() == TorchNTK(model, params="all", dtype="float32").to_dict()
    assert k._max_memory == 2**20
    with pytest.raises(UsageError, match=r"^--params headless applies to kernelcomp networks; "
                                         r"a PyTorch model takes all or last$"):
        empirical_ntk(model, "headless")



# ---------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------
def test_geometry_options_reach_the_diagnostics(tmp_path, xy, capsys):
    dg = kc.diagnostics
    X, y = xy
    run, nets = _small_run(tmp_path, X, y, seeds=(0, 1, 2))
    Xd = X[:, ::-1] * 1.5
    np.savez(tmp_path / "d.npz", pts=Xd)
    out = tmp_path / "g.h5"
    code, stdout, err = _run(["geometry", run, "-o", out, "--informative", "1",
                              "--compression-convention", "norm", "--trajectory-components", 2,
                              "--dtype", "float32", "--n-jobs", 1, "--data", tmp_path / "d.npz",
                              "--data-key", "pts", "--layer", "-1"], capsys)
    assert code == 0, err
    d = io.load_diagnostics(out)
    assert d.config == {
        "command": "geometry", "files": [str(run)], "data": str(tmp_path / "d.npz"),
        "labels": None, "split": "train", "layer": -1, "informative": [1],
        "compression_convention": "norm", "trajectory_components": 2,
        "loss_curvature": "identity (the square loss)", "dtype": "float32"}
    assert len(d.entries) == 4
    lines = [f"wrote {out}: geometry of 3 networks, 1 trajectories"]
    for e, net in zip(d.entries, nets, strict=False):
        att = dg.attractors(net, Xd, layer=-1)
        assert e["attractor_layer"] == att.layer == 0 and e["n_samples"] == 20
        assert (e["n_neurons"], e["n_attractors"]) == (att.n_neurons, att.n_attractors)
        assert e["n_dead"] == int(att.sizes[att.dead].sum())
        assert e["attractor_criterion"] == att.criterion
        np.testing.assert_array_equal(e["attractor_beta_share"], att.beta_share)
        merged, exact = dg.attractor_network(net, Xd, layer=0)
        assert e["attractor_network_neurons"] == merged.widths[-1]
        assert e["attractor_network_exact"] == exact
        geo = dg.layer_geometry(net, Xd)
        np.testing.assert_allclose(e["effective_rank"], geo.effective_ranks)
        np.testing.assert_allclose(e["power_law_exponent"], geo.exponents)
        gn = dg.gauss_newton_spectrum(kc.EmpiricalNTK(net)(Xd, dtype="float32"))
        np.testing.assert_array_equal(e["gauss_newton_eigenvalues"], gn.eigenvalues)
        assert e["gauss_newton_n_effective"] == gn.n_effective
        for key in ("tol", "decades", "log_spacing_mean", "log_spacing_std"):
            assert e[f"gauss_newton_{key}"] == pytest.approx(float(getattr(gn, key)))
        assert e["compression"] == pytest.approx(
            dg.compression(net, informative=[1], convention="norm"), rel=1e-12)
        ids = ", ".join(f"{v:.2f}" for v in geo.intrinsic_dimensions)
        lines.append(f"  {e['label']}: {att.n_attractors} attractors of {att.n_neurons} "
                     f"neurons, intrinsic dimension {ids}, Gauss-Newton n_eff {gn.n_effective}")
    assert stdout.splitlines() == lines
    traj = d.entries[-1]
    emb = dg.trajectory_embedding(run, split="train", X=Xd, n_components=2)
    np.testing.assert_allclose(traj["trajectory_coordinates"], emb.coordinates, atol=1e-10)
    np.testing.assert_allclose(traj["trajectory_eigenvalues"], emb.eigenvalues, atol=1e-10)
    np.testing.assert_allclose(traj["trajectory_explained_fraction"], emb.explained_fraction)
    np.testing.assert_array_equal(traj["trajectory_times"], emb.times)
    assert traj["trajectory_split"] == emb.split and traj["n_samples"] == 20
    assert traj["source"] == str(run) and traj["label"] == "run:trajectory"


def test_geometry_layer_range_and_deep_networks(tmp_path, xy, capsys):
    del xy  # X.npy is written by the fixture
    net = kc.FCNetwork.init(3, [6, 5], seed=0)
    net.save(tmp_path / "deep.h5")
    base = ["geometry", tmp_path / "deep.h5", "--data", tmp_path / "X.npy", "-q"]
    for layer, ok in ((-2, True), (1, True), (2, False), (-3, False)):
        code, _, err = _run([*base, "--layer", layer, "-o", tmp_path / f"g{layer}.h5"], capsys)
        if ok:
            assert code == 0, err
            e = io.load_diagnostics(tmp_path / f"g{layer}.h5").entries[0]
            assert e["attractor_layer"] == layer % 2
            # the merged network only of the last hidden layer (one output)
            assert ("attractor_network_exact" in e) == (layer % 2 == 1)
        else:
            assert (code, err) == (2, f"kernelcomp geometry: error: --layer {layer} is out of "
                                      "range for a network with 2 hidden layer(s)\n")
    two = kc.FCNetwork.init(3, [6], n_outputs=2, seed=0)
    two.save(tmp_path / "two.h5")
    code, _, err = _run(["geometry", tmp_path / "two.h5", "--data", tmp_path / "X.npy", "-q",
                         "-o", tmp_path / "two_g.h5"], capsys)
    assert code == 0, err
    assert "attractor_network_exact" not in io.load_diagnostics(tmp_path / "two_g.h5").entries[0]


def test_geometry_figures(tmp_path, xy, capsys, monkeypatch):
    from kernelcomp.cli import _geometry
    from kernelcomp.plotting import _geometry as plot_geometry

    X, y = xy
    run, _ = _small_run(tmp_path, X, y, seeds=tuple(range(6)))
    saved, panels = [], []
    real_save, real_neurons = _geometry.save_figure, plot_geometry.neurons_figure

    def save(path, draw, title=None):
        saved.append((Path(path).name, title))
        return real_save(path, draw, title)

    def neurons(nets_, informative, Xs, titles, **kw):
        panels.append((len(nets_), informative, titles))
        return real_neurons(nets_, informative, Xs, titles, **kw)

    monkeypatch.setattr(_geometry, "save_figure", save)
    monkeypatch.setattr(plot_geometry, "neurons_figure", neurons)
    figs = tmp_path / "figs"
    code, stdout, err = _run(["geometry", run, "-o", tmp_path / "g.h5", "--plot", figs,
                              "--informative", "0"], capsys)
    assert code == 0, err
    # at most 4 panels, evenly spaced, first and last kept: checkpoints 0, 2, 3, 5
    assert panels == [(4, [0], ["step 0", "step 6", "step 9", "step 15"])]
    assert saved == [("layer_geometry.png", "run:step 15: hidden representations"),
                     ("gauss_newton.png", "Gauss-Newton spectrum (1/p) J^T J"),
                     ("trajectory_run.png", "run.h5: InPCA trajectory")]
    assert sorted(p.name for p in figs.iterdir()) == [
        "gauss_newton.png", "layer_geometry.png", "neurons.png", "trajectory_run.png"]
    assert f"wrote 4 figures into {figs}\n" in stdout
    saved.clear()
    panels.clear()
    code, _, err = _run(["geometry", run, "-o", tmp_path / "h.h5", "--plot", tmp_path / "f2",
                         "--trajectory-components", 1, "-q"], capsys)
    assert code == 0, err
    assert panels == [] and [name for name, _ in saved] == ["layer_geometry.png",
                                                             "gauss_newton.png"]



# ---------------------------------------------------------------------------
# train, demo
# ---------------------------------------------------------------------------
def test_train_options_reach_the_training(tmp_path, capsys, monkeypatch):
    from kernelcomp import datasets, demo, diagnostics, training

    calls = record_calls(monkeypatch, training, "train")
    results = []
    real = training.train

    def keep(*args, **kwargs):
        weights.append([w.copy() for w in args[0].weights])
        res = real(*args, **kwargs)
        for i, c in enumerate(res.checkpoints):  # tell the checkpoints apart in the summary
            c.test_error = 0.125 * (i + 1)
        results.append(res)
        return res

    weights = []

    monkeypatch.setattr(training, "train", keep)
    out = tmp_path / "r.h5"
    monkeypatch.setattr(demo, "_t_star_or_none", lambda res: 1)  # t* at the 2nd checkpoint
    code, stdout, err = _run(["train", "cylinder", "--p", 12, "--d", 3, "--d-par", 1, "--h", 16,
                              "--seed", 3, "--n-test", 7, "--max-steps", 4, "--max-wall", 50,
                              "--loss", "soft_hinge", "--integrator", "euler", "--regime",
                              "lazy", "-o", out], capsys)
    assert code == 0, err
    (args, kwargs), = calls
    _, X, y = args
    X0, y0 = datasets.load("cylinder", 12, 3, 3, d_par=1)
    Xt, yt = datasets.load("cylinder", 7, 3, 3, split="test", d_par=1)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(kwargs["X_test"], Xt)
    np.testing.assert_array_equal(kwargs["y_test"], yt)
    ref = demo._paper_net(3, 16, 3)
    for w, w_ref in zip(weights[0], ref.weights, strict=True):
        np.testing.assert_array_equal(w, w_ref)
    assert kwargs["alpha"] == demo.default_alpha("lazy", 16)
    assert (kwargs["loss"], kwargs["integrator"], kwargs["max_steps"], kwargs["max_wall"],
            kwargs["force"], kwargs["progress"], kwargs["path"]) == (
        "soft_hinge", "euler", 4, 50.0, False, False, out)
    assert kwargs["config"] == {"dataset": "cylinder", "d": 3, "d_par": 1, "seed": 3,
                                "regime": "lazy"}
    res = results[0]
    k = demo._t_star_or_none(res)

    def lam(n):
        return f"{diagnostics.compression(n, [0], convention='figures'):.3f}"

    assert k == 1 and len(res.checkpoints) >= 3
    at = f"{lam(res.checkpoints[1].net)} at t* (step {res.checkpoints[1].step})"
    assert stdout == (
        f"{out}: {res.status} after {res.final.step} steps (t={res.final.time:.4g}, "
        f"{res.wall_time:.1f} s); train error {res.final.train_error:.4f}, test error "
        f"{res.checkpoints[-1].test_error:.4f}, compression lambda {at}, {lam(res.net)} at the "
        f"end (figures convention), {len(res.checkpoints)} checkpoints\n")
    # the sphere has no uninformative direction; --alpha given; --quiet
    code, stdout, err = _run(["train", "sphere", "--p", 10, "--d", 2, "--h", 8, "--n-test", 5,
                              "--max-steps", 2, "--alpha", 0.5, "-o", tmp_path / "s.h5"],
                             capsys)
    assert code == 0, err
    assert calls[1][1]["alpha"] == 0.5 and calls[1][1]["loss"] == "hinge"
    assert calls[1][1]["integrator"] == "sliding"
    assert "compression lambda n/a (no uninformative direction), " in stdout
    monkeypatch.setattr(demo, "_t_star_or_none", lambda res: None)
    code, stdout, err = _run(["train", "stripe", "--p", 10, "--d", 2, "--h", 8, "--n-test", 5,
                              "--max-steps", 2, "-o", tmp_path / "t0.h5"], capsys)
    assert code == 0 and "compression lambda n/a (stopped before t*), " in stdout
    code, stdout, err = _run(["train", "stripe", "--p", 10, "--d", 2, "--h", 8, "--n-test", 5,
                              "--max-steps", 2, "--quiet", "-o", tmp_path / "t.h5"], capsys)
    assert (code, stdout) == (0, "")
    assert calls[3][1]["alpha"] == demo.default_alpha("feature", 8)
    assert calls[3][1]["config"]["seed"] == 0 and calls[3][1]["config"]["d_par"] == 2
    _error(["train", "stripe", "--p", 10, "--d", 2, "--seed", -1, "-o", tmp_path / "u.h5"],
           capsys, "kernelcomp train: error: --seed must be >= 0, got -1")
    _error(["train", "stripe", "--p", 10, "--d", 2, "-o", out], capsys,
           f"kernelcomp train: error: {out} exists; pass --force to overwrite it")
    # --force overwrites; progress bars on a terminal unless --quiet
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    for quiet in ([], ["--quiet"]):
        code, _, err = _run(["train", "stripe", "--p", 10, "--d", 2, "--h", 8, "--n-test", 5,
                             "--max-steps", 2, "--force", *quiet, "-o", out], capsys)
        assert code == 0, err
        assert calls[-1][1]["force"] is True and calls[-1][1]["progress"] is (not quiet)
    assert len(calls) == 6


def test_demo_options_reach_run_demo(tmp_path, capsys, monkeypatch):
    import kernelcomp.demo

    calls = []
    monkeypatch.setattr(kernelcomp.demo, "run_demo",
                        lambda out, **kw: calls.append((out, kw)))
    out = tmp_path / "d"
    code, stdout, _ = _run(["demo", "--out", out], capsys)
    assert (code, stdout) == (0, f"written to {out}\n")
    code, stdout, _ = _run(["demo", "--out", out, "--quick", "--quiet"], capsys)
    assert (code, stdout) == (0, "")
    assert calls == [(str(out), {"quick": False, "progress": True}),
                     (str(out), {"quick": True, "progress": False})]
    (out / "x").mkdir(parents=True)
    _error(["demo", "--out", out], capsys, f"kernelcomp demo: error: --out {out} already holds "
                                           "files; use --force to replace them")
    (tmp_path / "f").write_text("")
    _error(["demo", "--out", tmp_path / "f", "--force"], capsys,
           f"kernelcomp demo: error: --out {tmp_path / 'f'} exists and is not a folder")


# ---------------------------------------------------------------------------
# main: exit statuses and messages
# ---------------------------------------------------------------------------
def test_subcommands_and_their_order():
    import kernelcomp.cli as cli

    assert [m.__name__ for m in cli.SUBCOMMANDS] == [
        f"kernelcomp.cli._{n}" for n in ("gram", "kpca", "geometry", "info", "train", "demo")]
    assert list(_current_spec()["subcommands"]) == ["gram", "kpca", "geometry", "info",
                                                     "train", "demo"]
    with pytest.raises(AttributeError, match=r"^module 'kernelcomp.cli' has no attribute "
                                             r"'NOPE'$"):
        cli.NOPE  # noqa: B018


def test_one_line_messages():
    from kernelcomp.cli import _one_line

    assert _one_line(KeyError("k")) == "missing 'k'"
    assert _one_line(KeyError()) == "KeyError"
    assert _one_line(ValueError("a\n  b   c")) == "a b c"
    assert _one_line(FileNotFoundError(2, "No such file", "f.h5")) == (
        "[Errno 2] No such file: 'f.h5'")

    class ReadFailed(OSError):  # an OSError whose text does not name its file
        def __str__(self):
            return "read failed"

    assert _one_line(ReadFailed(5, "x", "g.h5")) == "g.h5: read failed"
    assert _one_line(OSError(5, "bad")) == "[Errno 5] bad"

    class Broken(OSError):  # one whose text names its file already
        def __str__(self):
            return "f.h5 is broken"

    assert _one_line(Broken(5, "x", "f.h5")) == "f.h5 is broken"


def test_main_exit_statuses(tmp_path, capsys, monkeypatch):
    from kernelcomp.cli import _info

    code, out, err = _run([], capsys)
    assert code == 2 and out == "" and err.startswith("usage: kernelcomp ")
    code, out, _ = _run(["info", "--help"], capsys)
    assert code == 0 and out.startswith("usage: kernelcomp info ")

    def boom(_args):
        raise SystemExit("a message")

    monkeypatch.setattr(build_parser().__class__, "parse_args", lambda self, a: boom(a))
    assert main(["info", "x"]) == 2
    monkeypatch.setattr(build_parser().__class__, "parse_args",
                        lambda self, a: (_ for _ in ()).throw(SystemExit(None)))
    assert main(["info", "x"]) == 0
    monkeypatch.undo()

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("kernelcomp.cli.build_parser", interrupted)
    code, out, err = _run(["info", "x"], capsys)
    assert (code, out, err) == (130, "", "kernelcomp: interrupted\n")
    monkeypatch.undo()
    io.save_gram(tmp_path / "K.h5", np.eye(2))

    def fails(info):
        raise ValueError("bad\nfile")

    monkeypatch.setattr(_info, "describe", fails)
    code, out, err = _run(["info", tmp_path / "K.h5"], capsys)
    assert (code, out, err) == (2, "", "kernelcomp info: error: bad file\n")
    for value, raises in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv("KERNELCOMP_TRACEBACK", value)
        if raises:
            with pytest.raises(ValueError, match="bad"):
                main(["info", str(tmp_path / "K.h5")])
        else:
            assert main(["info", str(tmp_path / "K.h5")]) == 2
        capsys.readouterr()


if __name__ == "__main__":
    SPEC.write_text(json.dumps(_current_spec(), indent=1) + "\n")
    print(f"wrote {SPEC}", file=sys.stderr)
