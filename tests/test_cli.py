"""Tests of the ``kernelcomp`` command line, in-process through ``main([...])``."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.linalg

import kernelcomp as kc
from kernelcomp import io
from kernelcomp.cli import build_parser, main
from kernelcomp.io import _gram_file
from tests.gram_blocks import interrupted_after

DTYPES = ["float64", "float32"]
#: eigenvalue tolerance (relative to the largest) per dtype of the Gram matrix
EIG_RTOL = {"float64": 1e-10, "float32": 2e-5}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def data(tmp_path, rng):
    """A small stripe-like problem saved as X.npy / y.npy."""
    X = rng.standard_normal((90, 5))
    y = np.where((X[:, 0] > -0.3) & (X[:, 0] < 1.18549), -1.0, 1.0)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return X, y


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _user_error(argv, capsys, pattern):
    """Exit status 2 and exactly one line on stderr matching ``pattern``."""
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------
# the program
# ---------------------------------------------------------------------------
def test_python_m_kernelcomp_help_smoke():
    proc = subprocess.run(
        [sys.executable, "-m", "kernelcomp", "--help"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("gram", "kpca", "geometry", "info"):
        assert command in proc.stdout


def test_help_version_and_no_command(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"kernelcomp {kc.__version__}"
    code, out, _ = _run(["gram", "--help"], capsys)
    assert code == 0 and "--resume" in out and "--weight-std" in out
    code, _, err = _run([], capsys)
    assert code == 2 and "usage: kernelcomp" in err
    _user_error(["frobnicate"], capsys, r"^kernelcomp: error: argument COMMAND: invalid choice")


def test_parser_dispatch_and_demo_registration(capsys):
    parser = build_parser()
    argvs = [["gram", "X.npy", "-o", "K.h5"], ["kpca", "K.h5", "-o", "d.h5"], ["info", "K.h5"]]
    has_demo = importlib.util.find_spec("kernelcomp.demo") is not None
    if has_demo:
        argvs += [["demo", "--out", "d"], ["train", "stripe", "--p", "10", "--d", "3", "-o", "r"]]
    for argv in argvs:
        args = parser.parse_args(argv)
        assert callable(args.func) and args.command == argv[0]
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    assert ("demo" in out and "train" in out) == has_demo


# ---------------------------------------------------------------------------
# gram
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_happy_path(tmp_path, data, capsys, dtype):
    X, _ = data
    out = tmp_path / "K.h5"
    code, stdout, _ = _run(
        ["gram", tmp_path / "X.npy", "--kernel", "ntk", "--depth", 3, "--activation", "relu",
         "--weight-std", "1.5", "--bias-std", "0.1", "-o", out, "--dtype", dtype,
         "--n-jobs", 1, "--block-rows", 32],
        capsys,
    )
    assert code == 0 and f"wrote {out}: 90 x 90 {dtype}" in stdout
    k = kc.NTK(depth=3, weight_std=1.5, bias_std=0.1)
    K = io.load_gram(out)
    assert K.dtype == dtype
    np.testing.assert_array_equal(K, k(X, dtype=dtype))
    info = io.read_gram_info(out)
    assert info.kernel == k and info.n_blocks == 3
    assert info.inputs["X"] == str(tmp_path / "X.npy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_cross_with_npz_csv_h5_inputs_and_layer_lists(tmp_path, rng, capsys, dtype):
    X = rng.standard_normal((40, 3))
    Y = rng.standard_normal((25, 3))
    np.savez(tmp_path / "in.npz", train=X, other=np.ones(2))
    np.savetxt(tmp_path / "Y.csv", Y, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    with h5py.File(tmp_path / "Y.h5", "w") as f:
        f["samples"] = Y
    for second, extra in ((tmp_path / "Y.csv", []), (tmp_path / "Y.h5", ["--y-key", "samples"])):
        out = tmp_path / f"K{second.suffix}.h5"
        code, _, err = _run(
            ["gram", tmp_path / "in.npz", "--key", "train", "--y", second, *extra, "-q",
             "--kernel", "nngp", "--depth", 2, "--activation", "erf",
             "--weight-std", "1,2,0.5", "--bias-std", "none,0.3,0.1", "-o", out,
             "--dtype", dtype],
            capsys,
        )
        assert code == 0, err
        k = kc.NNGP(depth=2, activation="erf", weight_std=(1.0, 2.0, 0.5),
                    bias_std=(None, 0.3, 0.1))
        np.testing.assert_array_equal(io.load_gram(out), k(X, Y, dtype=dtype))
        assert not io.read_gram_info(out).symmetric


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_of_a_network_checkpoint(tmp_path, data, capsys, dtype):
    X, y = data
    net = kc.FCNetwork.init(5, [30, 20], activation="erf", parameterization="ntk",
                            bias_std=0.5, seed=11)
    net.save(tmp_path / "net.npz")
    run, nets = _make_run(tmp_path, X, y, seeds=(1, 2, 3))
    tol = {"float64": 1e-12, "float32": 1e-5}[dtype]
    cases = [
        (["--network", tmp_path / "net.npz"], kc.EmpiricalNTK(net)),
        (["--network", tmp_path / "net.npz", "--params", "last"],
         kc.EmpiricalNTK(net, params="last")),
        (["--network", tmp_path / "net.npz", "--kernel", "nngp"], kc.EmpiricalNNGP(net)),
        (["--network", run], kc.EmpiricalNTK(nets[-1])),
        (["--network", run, "--checkpoint", "0"], kc.EmpiricalNTK(nets[0])),
    ]
    for i, (extra, kernel) in enumerate(cases):
        out = tmp_path / f"K{i}.h5"
        code, _, err = _run(["gram", tmp_path / "X.npy", *extra, "-o", out, "--dtype", dtype,
                             "--block-rows", 40, "-q"], capsys)
        assert code == 0, err
        info = io.read_gram_info(out)
        assert info.kernel_desc == kernel.to_dict() and info.kernel is None
        assert info.dtype == dtype and info.n_blocks == 3
        ref = kernel(X, dtype="float64")
        np.testing.assert_allclose(io.load_gram(out), ref, rtol=tol, atol=tol * np.abs(ref).max())
    o = tmp_path / "E.h5"
    x = tmp_path / "X.npy"
    npz = tmp_path / "net.npz"
    for argv, pattern in [
        (["--network", npz, "--depth", "2", "--bias-std", "none"],
         r"--depth, --bias-std describe an analytic kernel; they do not apply with --network"),
        (["--params", "last"], r"--params needs --network"),
        (["--network", run, "--checkpoint", "3"], r"has 3 checkpoints; checkpoint 3 is out"),
        (["--network", npz, "--kernel", "nngp", "--params", "last"], r"applies to --kernel ntk"),
        (["--network", tmp_path / "gone.npz"], r"gone\.npz: no such file"),
        (["--network", tmp_path / "y.npy"], r"unsupported network file type '\.npy'"),
        (["--network", npz, "--params", "middle"], r"params must be one of .*got 'middle'"),
        (["--network", run, "--network-activation", "tanh"], r"applies to \.pt / state-dict"),
    ]:
        _user_error(["gram", x, *argv, "-o", o], capsys, rf"^kernelcomp gram: error: .*{pattern}")
    assert not o.exists()


def test_gram_standard_parameterization_needs_width(tmp_path, data, capsys):
    out = tmp_path / "K.h5"
    _user_error(["gram", tmp_path / "X.npy", "--parameterization", "standard", "-o", out],
                capsys, r"needs the hidden width")
    code, _, _ = _run(["gram", tmp_path / "X.npy", "--parameterization", "standard",
                       "--width", 64, "-o", out, "-q"], capsys)
    assert code == 0
    assert io.read_gram_info(out).kernel == kc.NTK(parameterization="standard", width=64)


def test_gram_user_errors(tmp_path, data, capsys):
    X, _ = data
    x = tmp_path / "X.npy"
    out = tmp_path / "K.h5"
    np.save(tmp_path / "nan.npy", np.where(X > 2, np.nan, X))
    np.save(tmp_path / "Y3.npy", X[:, :3])
    np.save(tmp_path / "v.npy", X[:, 0])
    (tmp_path / "X.txt").write_text("1,2")
    cases = [
        (["gram", tmp_path / "missing.npy", "-o", out], r"missing\.npy: no such file"),
        (["gram", tmp_path / "X.txt", "-o", out], r"unsupported file type '\.txt'"),
        (["gram", tmp_path / "nan.npy", "-o", out], r"X contains NaN"),
        (["gram", x, "--y", tmp_path / "Y3.npy", "-o", out],
         r"Y has 3 features, but 5 are expected"),
        (["gram", tmp_path / "v.npy", "-o", out], r"X must be a 2-D array"),
        (["gram", x, "--depth", "-1", "-o", out], r"depth must be >= 0"),
        (["gram", x, "--weight-std", "big", "-o", out], r"argument --weight-std: expected a num"),
        (["gram", x, "--weight-std", "1,2,3", "-o", out], r"weight_std must have one value per"),
        (["gram", x, "--dtype", "float16", "-o", out], r"argument --dtype: invalid choice"),
        (["gram", x, "--n-jobs", "0", "-o", out], r"argument --n-jobs: expected a non-zero"),
        (["gram", x, "--block-rows", "0", "-o", out], r"--block-rows: expected a positive"),
        (["gram", x, "--kernel", "rbf", "-o", out], r"argument --kernel: invalid choice"),
        (["gram", x], r"required: -o/--output"),
        (["gram", x, "-o", tmp_path / "nodir" / "K.h5"], r"does not exist"),
    ]
    for argv, pattern in cases:
        _user_error(argv, capsys, rf"^kernelcomp( gram)?: error: .*{pattern}")
    assert sorted(os.listdir(tmp_path)) == ["X.npy", "X.txt", "Y3.npy", "nan.npy", "v.npy",
                                            "y.npy"]


def test_gram_keeps_existing_output_unless_force(tmp_path, data, capsys):
    X, _ = data
    out = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(out), "-q"]) == 0
    before = out.read_bytes()
    _user_error(["gram", tmp_path / "X.npy", "--depth", 2, "-o", out], capsys,
                r"K\.h5 exists; pass --force")
    assert out.read_bytes() == before
    assert main(["gram", str(tmp_path / "X.npy"), "--depth", "2", "-o", str(out), "-q",
                 "--force"]) == 0
    np.testing.assert_array_equal(io.load_gram(out), kc.NTK(depth=2)(X))
    # --resume on the complete file of the same inputs: nothing to do, success
    code, _, _ = _run(["gram", tmp_path / "X.npy", "--depth", 2, "-o", out, "--resume"],
                      capsys)
    assert code == 0


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_interrupt_then_resume_equals_uninterrupted(tmp_path, data, capsys, monkeypatch,
                                                         dtype):
    x = tmp_path / "X.npy"
    common = ["--kernel", "ntk", "--depth", "2", "--activation", "erf", "--bias-std", "0.2",
              "--block-rows", "16", "--dtype", dtype, "-q"]
    assert main(["gram", str(x), "-o", str(tmp_path / "full.h5"), *common]) == 0
    out = tmp_path / "K.h5"
    monkeypatch.setattr(_gram_file, "iter_gram_blocks",
                        interrupted_after(2, _raise_keyboard_interrupt))
    code, _, err = _run(["gram", x, "-o", out, *common], capsys)
    monkeypatch.undo()
    assert code == 130 and "Traceback" not in err
    assert "interrupted after 2/6 row blocks; the completed blocks are kept in" in err
    assert not out.exists() and (tmp_path / "K.h5.partial").exists()
    assert io.read_gram_info(tmp_path / "K.h5.partial").blocks_done == 2
    _user_error(["gram", x, "-o", out, *common], capsys, r"pass resume=True \(--resume\)")
    code, _, err = _run(["gram", x, "-o", out, *common, "--resume"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(io.load_gram(out), io.load_gram(tmp_path / "full.h5"))
    assert not (tmp_path / "K.h5.partial").exists()


def test_interrupt_before_any_block_exits_130(tmp_path, data, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "read_array", interrupted)
    code, _, err = _run(["gram", tmp_path / "X.npy", "-o", tmp_path / "K.h5"], capsys)
    assert code == 130 and err.strip() == "kernelcomp gram: interrupted"
    assert sorted(os.listdir(tmp_path)) == ["X.npy", "y.npy"]


def test_gram_ctrl_c_stops_at_a_block_boundary(tmp_path, data, capsys, monkeypatch):
    """A real SIGINT mid-run: the block in progress finishes, then the command stops."""
    X, _ = data
    x = tmp_path / "X.npy"
    out = tmp_path / "K.h5"
    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(
        _gram_file, "iter_gram_blocks",
        interrupted_after(1, lambda: os.kill(os.getpid(), signal.SIGINT)),
    )
    code, _, err = _run(["gram", x, "-o", out, "--block-rows", "16"], capsys)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert code == 130 and "Traceback" not in err
    assert "stopping after the current block" in err
    assert "interrupted after 2/6 row blocks" in err and "--resume" in err
    assert io.read_gram_info(tmp_path / "K.h5.partial").blocks_done == 2
    assert main(["gram", str(x), "-o", str(out), "--block-rows", "16", "--resume", "-q"]) == 0
    np.testing.assert_array_equal(io.load_gram(out), kc.NTK()(X))


def test_gram_resume_refused_with_other_inputs(tmp_path, data, capsys, monkeypatch):
    X, _ = data
    np.save(tmp_path / "X2.npy", X + 1e-12)
    out = tmp_path / "K.h5"
    monkeypatch.setattr(_gram_file, "iter_gram_blocks",
                        interrupted_after(1, _raise_keyboard_interrupt))
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(out), "--block-rows", "16",
                 "-q"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    _user_error(["gram", tmp_path / "X2.npy", "-o", out, "--resume"], capsys,
                r"cannot be resumed .*other inputs")
    _user_error(["gram", tmp_path / "X.npy", "--depth", 4, "-o", out, "--resume"], capsys,
                r"another kernel")
    assert main(["gram", str(tmp_path / "X2.npy"), "-o", str(out), "--force", "-q"]) == 0
    np.testing.assert_array_equal(io.load_gram(out), kc.NTK()(X + 1e-12))


def test_traceback_flag_shows_the_exception(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(["--traceback", "gram", str(tmp_path / "none.npy"), "-o", str(tmp_path / "K.h5")])


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def _make_run(tmp_path, X, y, seeds=(0, 1), name="run.h5"):
    nets = [kc.FCNetwork.init(X.shape[1], [40], activation="relu_unit",
                              parameterization="mean_field", seed=s) for s in seeds]
    with io.RunWriter(tmp_path / name, X_train=X, y_train=y, X_test=X[:30], y_test=y[:30],
                      config={"alpha": 0.01}) as w:
        for i, net in enumerate(nets):
            w.add_checkpoint(net, step=5 * i, time=float(i), loss=1.0 - 0.1 * i,
                             margins=y * net(X))
    return tmp_path / name, nets


def test_info_every_format_text_and_json(tmp_path, data, capsys, monkeypatch):
    X, y = data
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K.h5"), "-q"]) == 0
    run, _ = _make_run(tmp_path, X, y)
    io.save_diagnostics(tmp_path / "d.h5", [{"label": "init", "eigenvalues": np.ones(3),
                                             "effective_rank": 2.5}])
    monkeypatch.setattr(_gram_file, "iter_gram_blocks",
                        interrupted_after(1, _raise_keyboard_interrupt))
    main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "P.h5"), "--block-rows", "32"])
    monkeypatch.undo()
    capsys.readouterr()
    code, out, _ = _run(["info", tmp_path / "K.h5", run, tmp_path / "d.h5",
                         tmp_path / "P.h5.partial"], capsys)
    assert code == 0
    assert "kernelcomp gram file (format 1.0" in out and "90 x 90 float64, symmetric" in out
    assert "kernel:     NTK(" in out and "depth=1" in out
    assert "kernelcomp run file" in out and "checkpoints: 2" in out and '"alpha": 0.01' in out
    assert "kernelcomp diagnostics file" in out and "effective_rank=2.5" in out
    assert "INCOMPLETE (resume with --resume), blocks 1/3" in out
    code, out, _ = _run(["info", "--json", run], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["format"] == "run" and len(info["checkpoints"]) == 2
    assert info["data"]["X_test"] == [30, 5]


def test_broken_pipe_is_quiet(tmp_path, capsys, monkeypatch):
    from kernelcomp.cli import _info

    io.save_gram(tmp_path / "K.h5", np.eye(2))

    def closed_pipe(info):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(_info, "describe", closed_pipe)
    code, _, err = _run(["info", tmp_path / "K.h5"], capsys)
    assert code == 141 and err == ""


def test_info_on_a_network_file(tmp_path, capsys):
    net = kc.FCNetwork.init(6, [12, 7], activation="erf", parameterization="ntk", seed=0)
    net.save(tmp_path / "net.h5")
    code, out, _ = _run(["info", tmp_path / "net.h5"], capsys)
    assert code == 0 and "kernelcomp network file" in out
    assert f"d=6, widths [12, 7], 1 output(s), erf, ntk, {net.n_params} parameters" in out


def test_info_errors(tmp_path, capsys):
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.ones(2)
    np.save(tmp_path / "X.npy", np.ones((2, 2)))
    _user_error(["info", tmp_path / "foreign.h5"], capsys,
                r"^kernelcomp info: error: .*foreign\.h5 is not a kernelcomp file")
    _user_error(["info", tmp_path / "X.npy"], capsys, r"X\.npy is not an HDF5 file")
    _user_error(["info", tmp_path / "gone.h5"], capsys, r"gone\.h5: no such file")
    _user_error(["info"], capsys, r"required: FILE")


# ---------------------------------------------------------------------------
# kpca
# ---------------------------------------------------------------------------
def _check_entry(entry, K, y, rtol):
    w = scipy.linalg.eigh(K.astype(np.float64), eigvals_only=True)[::-1]
    k = entry["eigenvalues"].size
    np.testing.assert_allclose(entry["eigenvalues"], w[:k], rtol=0, atol=rtol * w[0])
    if y is not None:
        c = entry["label_projection"]
        P = entry["cumulative_projection"]
        if k == K.shape[0]:
            np.testing.assert_allclose(np.sum(c**2), y @ y, rtol=10 * rtol)
            np.testing.assert_allclose(P[-1], 1.0, rtol=10 * rtol)
        np.testing.assert_allclose(P, np.cumsum(c**2) / (y @ y), rtol=1e-6)
        assert np.all(np.diff(P) >= -1e-12)


def test_kpca_maps_two_class_labels_to_pm1_and_caps_large_decompositions(
    tmp_path, data, capsys, monkeypatch
):
    _, y = data
    gram_file = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(gram_file), "-q"]) == 0
    ref = tmp_path / "ref.h5"
    assert _run(["kpca", gram_file, "--labels", tmp_path / "y.npy", "-o", ref], capsys)[0] == 0
    expected = io.load_diagnostics(ref).entries[0]
    for name, labels in (("y01.npy", (y > 0).astype(int)),
                         ("ystr.npy", np.where(y > 0, "odd", "even"))):
        np.save(tmp_path / name, labels)
        code, _, err = _run(["kpca", gram_file, "--labels", tmp_path / name,
                             "-o", tmp_path / f"{name}.h5"], capsys)
        assert code == 0, err
        assert "-> -1" in err and "-> +1" in err
        got = io.load_diagnostics(tmp_path / f"{name}.h5").entries[0]
        # the same diagnostics as with the +-1 labels
        np.testing.assert_allclose(got["cumulative_projection"], expected["cumulative_projection"])
        np.testing.assert_allclose(got["mutual_information"], expected["mutual_information"])
    # three classes have a meaning (tests/test_multiclass_labels.py); one class name has none
    np.save(tmp_path / "ys1.npy", np.array(["a"] * y.size))
    _user_error(["kpca", gram_file, "--labels", tmp_path / "ys1.npy", "-o", tmp_path / "e.h5"],
                capsys, r"--labels must be numeric .* got dtype <U1 with 1 classes")
    # large Gram matrices get the top eigenpairs unless --n-components asks otherwise
    monkeypatch.setattr("kernelcomp.cli._kpca._ALL_COMPONENTS_UP_TO", 50)
    monkeypatch.setattr("kernelcomp.cli._kpca._DEFAULT_TOP", 12)
    code, _, err = _run(["kpca", gram_file, "-o", tmp_path / "top.h5"], capsys)
    assert code == 0 and "n = 90: computing the top 12 eigenpairs" in err
    assert io.load_diagnostics(tmp_path / "top.h5").entries[0]["eigenvalues"].shape == (12,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kpca_on_a_gram_file(tmp_path, data, capsys, dtype):
    _, y = data
    gram_file = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "--depth", "2", "-o", str(gram_file),
                 "--dtype", dtype, "-q"]) == 0
    code, out, err = _run(["kpca", gram_file, "--labels", tmp_path / "y.npy",
                           "-o", tmp_path / "d.h5"], capsys)
    assert code == 0, err
    assert "wrote" in out and "K.h5: P_10 =" in out
    d = io.load_diagnostics(tmp_path / "d.h5")
    assert len(d.entries) == 1 and d.config["files"] == [str(gram_file)]
    e = d.entries[0]
    assert e["label"] == "K.h5" and e["n_samples"] == 90
    _check_entry(e, io.load_gram(gram_file), y, EIG_RTOL[dtype])
    assert e["mutual_information"].shape == (10,)
    assert np.all((e["mutual_information"] >= 0) & (e["mutual_information"] <= 1))
    np.testing.assert_allclose(
        e["mutual_information"],
        kc.diagnostics.mutual_information(
            kc.diagnostics.kernel_pca(io.load_gram(gram_file)).eigenvectors, y
        ),
        atol=1e-6 if dtype == "float64" else 1e-3,
    )
    # without labels: the spectrum only; top-k only
    code, _, _ = _run(["kpca", gram_file, "-o", tmp_path / "s.h5", "--n-components", 7],
                      capsys)
    assert code == 0
    e = io.load_diagnostics(tmp_path / "s.h5").entries[0]
    assert e["eigenvalues"].shape == (7,) and "label_projection" not in e
    _check_entry(e, io.load_gram(gram_file), None, EIG_RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_kpca_on_a_run_file_every_checkpoint(tmp_path, data, capsys, dtype):
    X, y = data
    run, nets = _make_run(tmp_path, X, y)
    code, out, err = _run(["kpca", run, "-o", tmp_path / "d.h5", "--informative", "0",
                           "--dtype", dtype, "--eigenvectors", "--n-jobs", 1], capsys)
    assert code == 0, err
    assert "run:step 0: P_10" in out and "run:step 5: P_10" in out
    d = io.load_diagnostics(tmp_path / "d.h5")
    assert [e["step"] for e in d.entries] == [0, 5]
    assert [e["time"] for e in d.entries] == [0.0, 1.0]
    for e, net in zip(d.entries, nets, strict=True):
        K = kc.EmpiricalNTK(net)(X, dtype=dtype)
        _check_entry(e, K, y, EIG_RTOL[dtype])
        # the paper's figures' convention, as kernelcomp train and the demo report it
        assert e["compression"] == pytest.approx(
            kc.diagnostics.compression(net, [0], convention="figures"))
        V = e["eigenvectors"]
        assert V.shape == (90, 90) and V.dtype == dtype
        np.testing.assert_allclose(np.linalg.norm(V, axis=0), 1.0,
                                   rtol=1e-10 if dtype == "float64" else 1e-5)
    # the test split and the readout-only kernel
    code, _, err = _run(["kpca", run, "-o", tmp_path / "t.h5", "--split", "test",
                         "--params", "last", "--dtype", dtype], capsys)
    assert code == 0, err
    t = io.load_diagnostics(tmp_path / "t.h5")
    for e, net in zip(t.entries, nets, strict=True):
        assert e["n_samples"] == 30
        _check_entry(e, kc.EmpiricalNTK(net, params="last")(X[:30], dtype=dtype), y[:30],
                     EIG_RTOL[dtype])


def test_kpca_on_the_partial_file_of_an_unfinished_run(tmp_path, data, capsys):
    X, y = data
    net = kc.FCNetwork.init(5, [20], seed=2)
    with pytest.raises(KeyboardInterrupt), io.RunWriter(tmp_path / "run.h5", X_train=X,
                                                         y_train=y) as w:
        w.add_checkpoint(net, step=0, time=0.0, loss=1.0)
        raise KeyboardInterrupt
    partial = tmp_path / "run.h5.partial"
    code, _, err = _run(["kpca", partial, "-o", tmp_path / "d.h5", "-q"], capsys)
    assert code == 0, err
    e = io.load_diagnostics(tmp_path / "d.h5").entries[0]
    assert e["label"] == "run.h5:step 0"
    _check_entry(e, kc.EmpiricalNTK(net)(X), y, EIG_RTOL["float64"])
    code, out, _ = _run(["info", partial], capsys)
    assert code == 0 and "INCOMPLETE (the run did not finish)" in out


def test_kpca_into_the_run_file(tmp_path, data, capsys):
    X, y = data
    run, nets = _make_run(tmp_path, X, y)
    code, out, err = _run(["kpca", run, "--into-run", "--n-components", 12], capsys)
    assert code == 0, err
    assert f"added diagnostics/kpca to {run}" in out
    d = io.load_diagnostics(run, name="kpca")
    assert [e["step"] for e in d.entries] == [0, 5]
    for e, net in zip(d.entries, nets, strict=True):
        _check_entry(e, kc.EmpiricalNTK(net)(X), y, EIG_RTOL["float64"])
    assert len(io.open_run(run).checkpoints) == 2
    code, out, _ = _run(["info", run], capsys)
    assert "diagnostics: kpca" in out
    _user_error(["kpca", run, "--into-run"], capsys, r"already holds diagnostics 'kpca'; pass")
    assert main(["kpca", str(run), "--into-run", "--force", "-q"]) == 0
    assert main(["kpca", str(run), "--into-run", "--name", "last", "--params", "last",
                 "-q"]) == 0
    assert io.file_info(run)["diagnostics"] == ["kpca", "last"]
    gram_file = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(gram_file), "-q"]) == 0
    _user_error(["kpca", gram_file, "--into-run"], capsys, r"needs exactly one FILE, a run")
    _user_error(["kpca", run, run, "--into-run"], capsys, r"needs exactly one FILE, a run")
    _user_error(["kpca", run, "--into-run", "-o", tmp_path / "d.h5"], capsys,
                r"argument -o/--output: not allowed with argument --into-run")
    _user_error(["kpca", run], capsys, r"one of the arguments -o/--output --into-run is required")


def test_kpca_on_checkpoint_files_with_data(tmp_path, data, capsys):
    X, y = data
    net = kc.FCNetwork.init(5, [30], activation="relu", parameterization="ntk", seed=3)
    net.save(tmp_path / "net.npz")
    net.save(tmp_path / "net.h5")
    run, nets = _make_run(tmp_path, X, y, seeds=(9,))
    Xn = X[::-1].copy()
    np.save(tmp_path / "Xn.npy", Xn)
    np.save(tmp_path / "yn.npy", y[::-1].copy())
    code, _, err = _run(["kpca", tmp_path / "net.npz", tmp_path / "net.h5", run,
                         "--data", tmp_path / "Xn.npy", "--labels", tmp_path / "yn.npy",
                         "-o", tmp_path / "d.h5", "-q"], capsys)
    assert code == 0, err
    d = io.load_diagnostics(tmp_path / "d.h5")
    assert [e["label"] for e in d.entries] == ["net.npz", "net.h5", "run:step 0"]
    for e, n in zip(d.entries, [net, net, nets[0]], strict=True):
        _check_entry(e, kc.EmpiricalNTK(n)(Xn), y[::-1], EIG_RTOL["float64"])
    # a state-dict .npz (PyTorch key names) with its activation given on the command line
    np.savez(tmp_path / "sd.npz", **{"0.weight": net.weights[0], "0.bias": net.biases[0],
                                     "2.weight": net.weights[1], "2.bias": net.biases[1]})
    code, _, err = _run(["kpca", tmp_path / "sd.npz", "--activation", "relu", "--data",
                         tmp_path / "X.npy", "-o", tmp_path / "sd.h5", "-q"], capsys)
    assert code == 0, err
    sd_net = kc.FCNetwork.load(tmp_path / "sd.npz", activation="relu")
    _check_entry(io.load_diagnostics(tmp_path / "sd.h5").entries[0], kc.EmpiricalNTK(sd_net)(X),
                 None, EIG_RTOL["float64"])


def test_kpca_plots(tmp_path, data, capsys):
    X, y = data
    run, _ = _make_run(tmp_path, X, y)
    code, out, err = _run(["kpca", run, "-o", tmp_path / "d.h5", "--plot", tmp_path / "figs"],
                          capsys)
    assert code == 0, err
    pngs = sorted(os.listdir(tmp_path / "figs"))
    assert pngs and all(p.endswith(".png") for p in pngs)
    for p in pngs:
        assert (tmp_path / "figs" / p).read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {len(pngs)} figures" in out


def test_kpca_plots_subsample_many_checkpoints(tmp_path, data, capsys, monkeypatch):
    from kernelcomp import plotting

    X, y = data
    run, _ = _make_run(tmp_path, X[:30], y[:30], seeds=tuple(range(11)))
    drawn, traces, floors = [], [], []
    real, real_mi = plotting.plot_spectra, plotting.plot_mutual_informations

    def spy(spectra, labels=None, **kwargs):
        drawn.append(list(labels))
        traces.append(kwargs["traces"])
        return real(spectra, labels, **kwargs)

    def spy_mi(mis, labels=None, **kwargs):
        floors.append(kwargs["floor"])
        return real_mi(mis, labels, **kwargs)

    monkeypatch.setattr(plotting, "plot_spectra", spy)
    monkeypatch.setattr(plotting, "plot_mutual_informations", spy_mi)
    code, _, err = _run(["kpca", run, "-o", tmp_path / "d.h5", "--plot", tmp_path / "f", "-q"],
                        capsys)
    assert code == 0, err
    entries = io.load_diagnostics(tmp_path / "d.h5").entries
    assert len(entries) == 11  # all stored
    kept = (0, 1, 3, 4, 6, 7, 9, 10)
    assert drawn == [[f"step {5 * i}" for i in kept]]
    # spectra divided by each Gram's trace; the MI estimator's floor (stored) drawn once
    assert traces == [[pytest.approx(float(entries[i]["trace"])) for i in kept]]
    assert floors == [pytest.approx(np.mean([entries[i]["mutual_information_floor"]
                                             for i in kept]))]


def test_kpca_user_errors(tmp_path, data, capsys):
    X, y = data
    gram_file = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(gram_file), "-q"]) == 0
    np.save(tmp_path / "Y.npy", X[:7])
    assert main(["gram", str(tmp_path / "X.npy"), "--y", str(tmp_path / "Y.npy"),
                 "-o", str(tmp_path / "C.h5"), "-q"]) == 0
    net = kc.FCNetwork.init(5, [10], seed=0)
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "y_short.npy", y[:10])
    io.save_diagnostics(tmp_path / "diag.h5", [{"a": 1}])
    (tmp_path / "w.bin").write_bytes(b"\0")
    (tmp_path / "existing.h5").write_bytes(b"")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.ones(2)
    o = tmp_path / "d.h5"
    cases = [
        (["kpca", tmp_path / "net.npz", "-o", o], r"net\.npz is a network checkpoint: pass --data"),
        (["kpca", gram_file, "--data", tmp_path / "X.npy", "-o", o],
         r"Gram file: --data does not apply"),
        (["kpca", gram_file, "--labels", tmp_path / "y_short.npy", "-o", o],
         r"--labels has 10 labels, but there are 90 samples"),
        (["kpca", tmp_path / "C.h5", "-o", o], r"90 x 7 cross Gram; kpca needs a square one"),
        (["kpca", gram_file, "-o", tmp_path / "existing.h5"], r"existing\.h5 exists; pass --force"),
        (["kpca", tmp_path / "w.bin", "-o", o], r"unsupported file type '\.bin'"),
        (["kpca", tmp_path / "diag.h5", "-o", o], r"'diagnostics' file; kpca reads Gram, run"),
        (["kpca", tmp_path / "foreign.h5", "-o", o], r"foreign\.h5 is not a kernelcomp file"),
        (["kpca", tmp_path / "gone.h5", "-o", o], r"gone\.h5: no such file"),
        (["kpca", tmp_path / "net.npz", "--data", tmp_path / "X.npy", "--params", "first",
          "-o", o], r"--params must be all, last or headless"),
        (["kpca", tmp_path / "net.npz", "--data", tmp_path / "Y.npy", "--labels",
          tmp_path / "y.npy", "-o", o], r"--labels has 90 labels, but there are 7 samples"),
        (["kpca", gram_file, "--n-components", "0", "-o", o], r"--n-components: expected a pos"),
        (["kpca", gram_file, "--informative", "x", "-o", o], r"--informative: expected comma-sep"),
    ]
    if importlib.util.find_spec("torch") is None:
        (tmp_path / "m.pt").write_bytes(b"\0")
        cases.append((["kpca", tmp_path / "m.pt", "--data", tmp_path / "X.npy", "-o", o],
                      r"m\.pt: reading \.pt checkpoints needs PyTorch"))
    for argv, pattern in cases:
        _user_error(argv, capsys, rf"^kernelcomp( kpca)?: error: .*{pattern}")
    assert not o.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.torch
def test_kpca_on_a_pytorch_state_dict(tmp_path, data, capsys):
    torch = pytest.importorskip("torch")
    X, y = data
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 24), torch.nn.Tanh(), torch.nn.Linear(24, 1)
    ).double()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    code, _, err = _run(["kpca", tmp_path / "model.pt", tmp_path / "wrapped.pt",
                         "--activation", "tanh", "--data", tmp_path / "X.npy",
                         "--labels", tmp_path / "y.npy", "-o", tmp_path / "d.h5", "-q"], capsys)
    assert code == 0, err
    net = kc.FCNetwork.from_torch(model, activation="tanh")
    K = kc.EmpiricalNTK(net)(X)
    for e in io.load_diagnostics(tmp_path / "d.h5").entries:
        _check_entry(e, K, y, EIG_RTOL["float64"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _user_error(["kpca", tmp_path / "junk.pt", "--data", tmp_path / "X.npy", "-o",
                 tmp_path / "j.h5"], capsys, r"junk\.pt: cannot read as a PyTorch state dict")
    torch.save(model, tmp_path / "whole.pt")  # a pickled model, not a state dict
    _user_error(["kpca", tmp_path / "whole.pt", "--data", tmp_path / "X.npy", "-o",
                 tmp_path / "w.h5"], capsys,
                r"whole\.pt holds a pickled model, not a state dict; save it with "
                r"torch\.save\(model\.state_dict\(\), path\)")


# ---------------------------------------------------------------------------
# PyTorch checkpoints of any architecture
# ---------------------------------------------------------------------------
def _perturbed(model, seed=1):
    """``model`` in float64 with weights unlike any fresh factory's (so loading shows)."""
    import torch

    torch.manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model.eval()


@pytest.mark.torch
def test_gram_and_kpca_of_a_state_dict_with_its_model_factory(tmp_path, data, capsys):
    pytest.importorskip("torch")
    import torch

    from kernelcomp._torch_ntk import TorchNTK
    from tests import torch_models

    X, y = data
    model = _perturbed(torch_models.small_cnn())
    torch.save(model.state_dict(), tmp_path / "cnn.pt")
    K = TorchNTK(model, input_shape=(1, 5))(X)
    out = tmp_path / "K.h5"
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "cnn.pt", "--model",
                         "tests.torch_models:small_cnn", "--input-shape", "1,5", "-o", out, "-q"],
                        capsys)
    assert code == 0, err
    np.testing.assert_allclose(io.load_gram(out), K, rtol=1e-12, atol=1e-12 * K.max())
    assert io.read_gram_info(out).inputs["model"] == "tests.torch_models:small_cnn"
    # kpca of the same checkpoint (wrapped as {"state_dict": ...}), and a residual net
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pth")
    code, _, err = _run(["kpca", tmp_path / "wrapped.pth", "--model",
                         "tests.torch_models:small_cnn", "--input-shape", "1,5", "--data",
                         tmp_path / "X.npy", "--labels", tmp_path / "y.npy", "-o",
                         tmp_path / "d.h5", "-q"], capsys)
    assert code == 0, err
    _check_entry(io.load_diagnostics(tmp_path / "d.h5").entries[0], K, y, EIG_RTOL["float64"])
    res = _perturbed(torch_models.Factories.residual(), seed=2)
    torch.save(res.state_dict(), tmp_path / "res.pt")
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "res.pt",
                         "--model", "tests.torch_models:Factories.residual", "--params", "last",
                         "-o", tmp_path / "R.h5", "-q"], capsys)
    assert code == 0, err
    R = TorchNTK(res, params="last")(X)
    np.testing.assert_allclose(io.load_gram(tmp_path / "R.h5"), R, rtol=1e-12,
                               atol=1e-12 * R.max())
    # float32 checkpoints stay float32 models, whose kernel a float32 Gram holds
    torch.save(model.float().state_dict(), tmp_path / "cnn32.pt")
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "cnn32.pt",
                         "--model", "tests.torch_models:small_cnn", "--input-shape", "1,5",
                         "--dtype", "float32", "-o", tmp_path / "K32.h5", "-q"], capsys)
    assert code == 0, err
    K32 = io.load_gram(tmp_path / "K32.h5")
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, K, rtol=2e-4, atol=2e-4 * K.max())


@pytest.mark.torch
def test_gram_and_kpca_of_a_torchscript_file(tmp_path, data, capsys):
    pytest.importorskip("torch")
    import torch

    from kernelcomp._torch_ntk import TorchNTK
    from tests import torch_models

    X, y = data
    model = _perturbed(torch_models.small_cnn(), seed=3)
    torch.jit.save(torch.jit.script(model), tmp_path / "cnn_script.pt")
    K = TorchNTK(model, input_shape=(1, 5))(X)
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "cnn_script.pt",
                         "--input-shape", "1,5", "--block-rows", "32", "-o", tmp_path / "K.h5",
                         "-q"], capsys)
    assert code == 0, err
    np.testing.assert_allclose(io.load_gram(tmp_path / "K.h5"), K, rtol=1e-10,
                               atol=1e-12 * K.max())
    code, _, err = _run(["kpca", tmp_path / "cnn_script.pt", "--input-shape", "1,5", "--data",
                         tmp_path / "X.npy", "--labels", tmp_path / "y.npy", "-o",
                         tmp_path / "d.h5", "-q"], capsys)
    assert code == 0, err
    _check_entry(io.load_diagnostics(tmp_path / "d.h5").entries[0], K, y, EIG_RTOL["float64"])
    # a scripted Linear stack fixes its input shape itself
    mlp = _perturbed(torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(),
                                         torch.nn.Linear(7, 1)), seed=4)
    torch.jit.save(torch.jit.script(mlp), tmp_path / "mlp_script.pt")
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "mlp_script.pt",
                         "-o", tmp_path / "M.h5", "-q"], capsys)
    assert code == 0, err
    M = kc.EmpiricalNTK(kc.FCNetwork.from_torch(mlp, activation="tanh"))(X)
    np.testing.assert_allclose(io.load_gram(tmp_path / "M.h5"), M, rtol=1e-10,
                               atol=1e-12 * M.max())


@pytest.mark.torch
def test_max_memory_of_a_torch_model(tmp_path, data, capsys):
    """``--max-memory`` bounds the PyTorch engine; it is refused where it has no meaning."""
    pytest.importorskip("torch")
    import torch

    from kernelcomp._argtypes import byte_size
    from kernelcomp._torch_ntk import TorchNTK
    from tests import torch_models

    assert [byte_size(t) for t in ("4096", "512K", "2M", "1.5GiB", "3gb")] == [
        4096, 512 * 2**10, 2 * 2**20, 3 * 2**29, 3 * 2**30]
    X, _ = data
    model = _perturbed(torch_models.small_cnn(), seed=5)
    torch.jit.save(torch.jit.script(model), tmp_path / "cnn.pt")
    K = TorchNTK(model, input_shape=(1, 5))(X)
    code, _, err = _run(["gram", tmp_path / "X.npy", "--network", tmp_path / "cnn.pt",
                         "--input-shape", "1,5", "--max-memory", "16K", "-o",
                         tmp_path / "K.h5", "-q"], capsys)
    assert code == 0, err
    np.testing.assert_allclose(io.load_gram(tmp_path / "K.h5"), K, rtol=1e-10,
                               atol=1e-12 * K.max())
    code, _, err = _run(["kpca", tmp_path / "cnn.pt", "--input-shape", "1,5", "--max-memory",
                         "2M", "--data", tmp_path / "X.npy", "-o", tmp_path / "d.h5", "-q"],
                        capsys)
    assert code == 0, err
    _user_error(["gram", tmp_path / "X.npy", "--max-memory", "1G", "-o", tmp_path / "A.h5"],
                capsys, r"--max-memory needs --network")
    _user_error(["gram", tmp_path / "X.npy", "--network", tmp_path / "cnn.pt", "--input-shape",
                 "1,5", "--max-memory", "lots", "-o", tmp_path / "B.h5"], capsys,
                r"expected a size in bytes such as 512M or 2G, got 'lots'")


@pytest.mark.torch
def test_torch_checkpoint_user_errors(tmp_path, data, capsys):
    pytest.importorskip("torch")
    import torch

    from tests import torch_models

    cnn = torch_models.small_cnn()
    torch.save(cnn.state_dict(), tmp_path / "cnn.pt")
    torch.jit.save(torch.jit.script(cnn), tmp_path / "script.pt")
    torch.save(cnn, tmp_path / "whole.pt")  # a pickled model
    bigger = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 2), torch.nn.Tanh(),
                                 torch.nn.Flatten(), torch.nn.Linear(16, 2), torch.nn.Linear(2, 1))
    torch.save(bigger.state_dict(), tmp_path / "bigger.pt")
    torch.save({"a": 1}, tmp_path / "notensors.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    x = tmp_path / "X.npy"
    good = ["--model", "tests.torch_models:small_cnn", "--input-shape", "1,5"]

    def gram(ckpt, *extra):
        return ["gram", x, "--network", tmp_path / ckpt, *extra, "-o", tmp_path / "K.h5"]

    cases = [
        (gram("cnn.pt", "--model", "small_cnn"), r"model must be package\.module:factory"),
        (gram("cnn.pt", "--model", "a:b:c"), r"model must be package\.module:factory"),
        (gram("cnn.pt", "--model", "no_such_pkg_kc.models:f"),
         r"model no_such_pkg_kc\.models:f: cannot import no_such_pkg_kc\.models"),
        (gram("cnn.pt", "--model", "tests.torch_models:nothing"),
         r"tests\.torch_models has no 'nothing'"),
        (gram("cnn.pt", "--model", "tests.torch_models:CONSTANT"), r"CONSTANT is a int, not a"),
        (gram("cnn.pt", "--model", "tests.torch_models:failing"),
         r"the factory failed \(RuntimeError: no GPU in this test\)"),
        (gram("cnn.pt", "--model", "tests.torch_models:not_a_module"),
         r"the factory returned a dict, not a torch\.nn\.Module"),
        (gram("bigger.pt", *good),
         r"bigger\.pt does not fit the model of tests\.torch_models:small_cnn: "
         r"unexpected 4\.weight, 4\.bias; shapes \(file vs model\) 0\.weight \(4, 1, 2\) vs "
         r"\(3, 1, 2\)"),
        (gram("cnn.pt", "--model", "tests.torch_models:Factories.residual"),
         r"missing inp\.weight, inp\.bias, block\.0\.weight and 3 more; unexpected 0\.weight"),
        (gram("script.pt", *good), r"script\.pt is a TorchScript file, which holds its model"),
        (gram("whole.pt", *good), r"whole\.pt holds a pickled model, not a state dict; save it "
                                  r"with torch\.save\(model\.state_dict\(\), path\) .* "
                                  r"torch\.export\.save\(torch\.export\.export\(model, "
                                  r".*'model\.pt2'\), .*"
                                  r"torch\.jit\.save\(torch\.jit\.script\(model\), path\)"),
        (gram("junk.pt", *good), r"junk\.pt: cannot read as a PyTorch state dict"),
        (gram("notensors.pt", *good), r"notensors\.pt holds a dict, not a state dict"),
        (gram("cnn.pt", "--model", "tests.torch_models:small_cnn"),
         r"does not fix the shape of one sample: pass --input-shape"),
        (gram("script.pt"), r"does not fix the shape of one sample: pass --input-shape"),
        (gram("cnn.pt", *good, "--params", "headless"),
         r"--params headless applies to kernelcomp networks"),
        (gram("cnn.pt", *good, "--network-activation", "tanh"),
         r"activation applies to state dicts of Linear stacks"),
        (gram("script.pt", "--kernel", "nngp"), r"--kernel nngp needs a kernelcomp network"),
        (["gram", x, "--model", "tests.torch_models:small_cnn", "-o", tmp_path / "K.h5"],
         r"--model needs --network"),
        (["kpca", tmp_path / "cnn.pt", *good, "--data", x, "--informative", "0",
          "-o", tmp_path / "d.h5"], r"--informative .* needs kernelcomp networks"),
        (["kpca", tmp_path / "cnn.pt", "--model", "tests.torch_models:small_cnn",
          "--input-shape", "1,6", "--data", x, "-o", tmp_path / "d.h5"],
         r"input_shape=\(1, 6\)"),
    ]
    for argv, pattern in cases:
        _user_error(argv, capsys, rf"^kernelcomp (gram|kpca): error: .*{pattern}")
    assert not (tmp_path / "K.h5").exists() and not (tmp_path / "d.h5").exists()


# ---------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------
def _trained_run(tmp_path, X, y, name="trained.h5"):
    """A short feature-regime run (its neurons move and gather) with checkpoints."""
    net = kc.FCNetwork.init(X.shape[1], [30], activation="relu_unit",
                            parameterization="mean_field", seed=3)
    kc.training.train(net, X, y, alpha=0.05 / 30**0.5, X_test=X[:40], y_test=y[:40],
                      path=tmp_path / name, max_steps=400, checkpoints=2)
    return tmp_path / name


def _check_geometry_entry(e, net, X):
    """An entry against explicit patterns, the library's diagnostics and an explicit JᵀJ."""
    dg = kc.diagnostics
    # neurons with one label have one activation pattern, different labels differ
    _, cache = net.forward(X, cache=True)
    patterns = (cache.preactivations[0] > 0).T  # (h, n)
    labels = e["attractor_labels"]
    assert labels.shape == (net.widths[0],) and labels[0] == 0
    for a in range(e["n_attractors"]):
        members = patterns[labels == a]
        assert (members == members[0]).all()
    firsts = np.array([patterns[labels == a][0] for a in range(e["n_attractors"])])
    assert np.unique(firsts, axis=0).shape[0] == e["n_attractors"]
    np.testing.assert_array_equal(e["attractor_sizes"], np.bincount(labels))
    assert e["n_dead"] == int((~patterns.any(axis=1)).sum())
    merged, exact = dg.attractor_network(net, X)
    assert e["attractor_network_exact"] == exact
    assert e["attractor_network_neurons"] == merged.widths[0]
    geo = dg.layer_geometry(net, X)
    np.testing.assert_allclose(e["intrinsic_dimension"], geo.intrinsic_dimensions)
    np.testing.assert_allclose(e["covariance_eigenvalues_0"], geo.eigenvalues[0])
    # Gauss-Newton spectrum (square loss): the nonzero eigenvalues of (1/p) J^T J
    rows = []
    for x in X:  # one backward pass per point: the rows of the Jacobian
        gW, gb = net.gradients(x[None, :], np.ones(1))
        rows.append(np.concatenate([g.ravel() for g in [*gW, *(b for b in gb if b is not None)]]))
    J = np.array(rows)
    G = J.T @ J / X.shape[0]
    w = np.sort(np.linalg.eigvalsh(G))[::-1][: X.shape[0]]
    np.testing.assert_allclose(e["gauss_newton_eigenvalues"], w, rtol=0, atol=1e-9 * w[0])
    assert e["gauss_newton_n_effective"] == dg.gauss_newton_spectrum(J @ J.T).n_effective


def test_geometry_of_a_run_file_every_checkpoint(tmp_path, data, capsys):
    X, y = data
    run_file = _trained_run(tmp_path, X, y)
    out = tmp_path / "g.h5"
    code, text, err = _run(["geometry", run_file, "-o", out, "--informative", "0",
                            "--plot", tmp_path / "figs"], capsys)
    assert code == 0, err
    run = io.open_run(run_file)
    diag = io.load_diagnostics(out)
    assert diag.config["command"] == "geometry" and diag.config["informative"] == [0]
    nets = [c.network for c in run.checkpoints]
    assert len(diag.entries) == len(nets) + 1  # every checkpoint, then the trajectory
    for e, c, net in zip(diag.entries, run.checkpoints, nets, strict=False):
        assert e["step"] == c.step and e["label"] == f"trained:step {c.step}"
        _check_geometry_entry(e, net, run.data["X_train"])
        # the paper's figures' convention, as kernelcomp train and the demo report it
        assert e["compression"] == pytest.approx(
            kc.diagnostics.compression(net, [0], convention="figures"))
    traj = diag.entries[-1]
    emb = kc.diagnostics.trajectory_embedding(run_file, split="train")
    np.testing.assert_allclose(traj["trajectory_coordinates"], emb.coordinates)
    np.testing.assert_array_equal(traj["trajectory_steps"], [c.step for c in run.checkpoints])
    assert traj["label"] == "trained:trajectory"
    # the neurons move: fewer attractors at the end than at init
    assert diag.entries[len(nets) - 1]["n_attractors"] < diag.entries[0]["n_attractors"]
    figs = sorted(os.listdir(tmp_path / "figs"))
    assert figs == ["gauss_newton.png", "layer_geometry.png", "neurons.png",
                    "trajectory_trained.png"]
    for f in figs:
        assert (tmp_path / "figs" / f).read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {out}: geometry of {len(nets)} networks, 1 trajectories" in text
    # into the run file itself, next to kpca's groups; the test split
    code, _, err = _run(["geometry", run_file, "--into-run", "--split", "test", "-q"], capsys)
    assert code == 0, err
    inside = io.load_diagnostics(run_file, name="geometry")
    assert inside.entries[0]["n_samples"] == 40 and inside.config["split"] == "test"
    _user_error(["geometry", run_file, "--into-run"], capsys,
                r"already holds diagnostics 'geometry'; pass --force")


def test_geometry_leaves_large_gauss_newton_spectra_out_unless_asked(tmp_path, data, capsys,
                                                                     monkeypatch):
    X, _ = data
    kc.FCNetwork.init(5, [16], seed=0).save(tmp_path / "net.h5")
    monkeypatch.setattr("kernelcomp.cli._geometry._GAUSS_NEWTON_UP_TO", 50)
    argv = ["geometry", tmp_path / "net.h5", "--data", tmp_path / "X.npy", "-q"]
    code, _, err = _run([*argv, "-o", tmp_path / "a.h5", "--plot", tmp_path / "f"], capsys)
    assert code == 0 and "n = 90: no Gauss-Newton spectrum beyond 50 points" in err
    assert "gauss_newton_eigenvalues" not in io.load_diagnostics(tmp_path / "a.h5").entries[0]
    assert not (tmp_path / "f" / "gauss_newton.png").exists()
    code, _, err = _run([*argv, "-o", tmp_path / "b.h5", "--gauss-newton"], capsys)
    assert code == 0 and err == ""
    assert io.load_diagnostics(tmp_path / "b.h5").entries[0]["gauss_newton_eigenvalues"].shape == (
        X.shape[0],)


def test_geometry_of_network_files_on_data(tmp_path, data, capsys):
    X, _ = data
    net = kc.FCNetwork.init(5, [16, 12], activation="relu", seed=0)
    net.save(tmp_path / "deep.h5")
    net.save(tmp_path / "deep.npz")
    out = tmp_path / "g.h5"
    code, _, err = _run(["geometry", tmp_path / "deep.h5", tmp_path / "deep.npz", "--data",
                         tmp_path / "X.npy", "--layer", "1", "-o", out, "-q"], capsys)
    assert code == 0, err
    entries = io.load_diagnostics(out).entries
    assert len(entries) == 2  # no run file: no trajectory
    for e in entries:
        att = kc.diagnostics.attractors(net, X, layer=1)
        np.testing.assert_array_equal(e["attractor_labels"], att.labels)
        assert e["attractor_layer"] == 1 and e["intrinsic_dimension"].shape == (2,)
        assert "covariance_eigenvalues_1" in e and "compression" not in e
        assert e["attractor_network_exact"]  # the last hidden layer, ReLU: exact
    o = tmp_path / "e.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(tmp_path / "K.h5"), "-q"]) == 0
    cases = [
        (["geometry", tmp_path / "K.h5", "-o", o], r"'gram' file; geometry reads run or network"),
        (["geometry", tmp_path / "deep.h5", "-o", o], r"network checkpoint: pass --data"),
        (["geometry", tmp_path / "deep.h5", "--data", tmp_path / "X.npy", "--layer", "2",
          "-o", o], r"--layer 2 is out of range for a network with 2 hidden layer"),
        (["geometry", tmp_path / "deep.h5", "--data", tmp_path / "X.npy", "-o", out],
         r"g\.h5 exists; pass --force"),
        (["geometry", tmp_path / "deep.h5", "-o", o, "--into-run"], r"not allowed with"),
    ]
    for argv, pattern in cases:
        _user_error(argv, capsys, rf"^kernelcomp( geometry)?: error: .*{pattern}")
    assert not o.exists()


@pytest.mark.slow
def test_geometry_at_mnist_size(tmp_path):
    """``kernelcomp geometry`` on n = 20000 points.

    The attractors and the TwoNN dimension of the representations at the scale
    of MNIST; the Gauss-Newton spectrum (a full n x n eigendecomposition,
    ~10 GB) is left out unless asked.
    """
    from tests.test_linalg import N_MNIST, _run_at_mnist_size

    _run_at_mnist_size(f"""
        import contextlib, io as _io
        from kernelcomp import io
        from kernelcomp.cli import main
        X = rng.standard_normal(({N_MNIST}, 5))
        net = kc.FCNetwork.init(5, [24], activation="relu", seed=0)
        net.save({str(tmp_path)!r} + "/net.h5")
        np.save({str(tmp_path)!r} + "/X.npy", X)
        out = {str(tmp_path)!r} + "/g.h5"
        err = _io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["geometry", {str(tmp_path)!r} + "/net.h5", "--data",
                         {str(tmp_path)!r} + "/X.npy", "-o", out, "-q"]) == 0
        assert "no Gauss-Newton spectrum beyond 3000 points" in err.getvalue()
        e = io.load_diagnostics(out).entries[0]
        assert e["n_samples"] == {N_MNIST} and "gauss_newton_eigenvalues" not in e
        _, cache = net.forward(X, cache=True)
        patterns = (cache.preactivations[0] > 0).T
        labels = e["attractor_labels"]
        for a in range(e["n_attractors"]):
            assert (patterns[labels == a] == patterns[labels == a][0]).all()
        assert 3 < e["intrinsic_dimension"][0] < 7  # a 5-D Gaussian through one ReLU layer
    """, timeout=3000)


def test_gram_takes_every_activation_of_the_analytic_kernels(tmp_path):
    # tanh has no closed form: the analytic kernel computes it as a Hermite series
    X = np.random.default_rng(0).standard_normal((6, 3))
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "K.h5"
    assert main(["gram", str(tmp_path / "X.npy"), "-o", str(out), "--activation", "tanh",
                 "--depth", "2"]) == 0
    np.testing.assert_allclose(kc.io.load_gram(out), kc.NTK(depth=2, activation="tanh")(X),
                               rtol=1e-12)


def test_compression_conventions_of_the_parser_are_the_librarys():
    from kernelcomp.cli._common import COMPRESSION_CONVENTIONS

    assert set(COMPRESSION_CONVENTIONS) == set(kc.diagnostics.COMPRESSION_CONVENTIONS)
    assert COMPRESSION_CONVENTIONS[0] == "figures"  # the default, as train and demo report
