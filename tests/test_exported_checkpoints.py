"""``torch.export`` programs (``.pt2``) wherever TorchScript checkpoints are accepted.

References: the eager module's kernel by the per-sample Jacobian (``_route="jacobian"``,
no layer rewriting) and by the layerwise engine.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import _checkpoints as ck
from kernelcomp import io
from kernelcomp.cli import main

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

#: one sample of the CNN: 2 channels of 7 x 7
SHAPE = (2, 7, 7)


def _cnn(seed=0):
    """A small 2-D CNN, float64: grouped strided padded conv, BatchNorm (eval), dilated conv."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), torch.nn.BatchNorm2d(4),
        torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 2, dilation=2, bias=False), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(12, 2),
    ).double()
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


class _Tied(torch.nn.Module):
    """A Conv1d ("same"), then one Linear applied twice (tied weights): reused parameters."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 2, 3, padding="same")  # aten.conv1d.padding
        self.lin = torch.nn.Linear(10, 10)
        self.out = torch.nn.Linear(10, 1)

    def forward(self, x):
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.out(torch.tanh(self.lin(torch.tanh(self.lin(h)))))


def _export(model, path=None, dynamic=True, shape=SHAPE):
    x = torch.randn(3, *shape, dtype=torch.float64)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    program = torch.export.export(model, (x,), dynamic_shapes=shapes)
    if path is None:
        return program
    torch.export.save(program, path)
    return path


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((24, int(np.prod(SHAPE))))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return X, y


def _reference(model, X, dtype, shape=SHAPE):
    """The eager module's NTK by the per-sample Jacobian of every parameter."""
    return kc.EmpiricalNTK(model, input_shape=shape, dtype=np.dtype(dtype).name,
                           _route="jacobian")(X)


def test_an_exported_program_gives_the_eager_modules_ntk(tmp_path, data, dtype, tol):
    X, _ = data
    model = _cnn()
    path = _export(model, tmp_path / "cnn.pt2")
    assert ck.is_exported_file(path) and not ck.is_torchscript(path)
    loaded = ck.load_network(path)
    assert isinstance(loaded, torch.nn.Module)
    with pytest.raises(ValueError, match=r"torch\.export program, which holds its model"):
        ck.load_network(path, model="tests.torch_models:small_cnn")
    with pytest.raises(ValueError, match="the activation option does not apply"):
        ck.load_network(path, activation="relu")
    name = np.dtype(dtype).name
    K = _reference(model, X, dtype)
    eager = kc.EmpiricalNTK(model, input_shape=SHAPE, dtype=name)(X)
    np.testing.assert_allclose(eager, K, rtol=tol("gram"), atol=tol("gram") * K.max())
    # the program knows the shape of one sample: no input_shape needed
    for net in (loaded, torch.export.load(path), _export(model)):
        for method in ("layerwise", "jacobian"):
            k = kc.EmpiricalNTK(net, dtype=name, method=method)
            assert isinstance(k, kc.TorchNTK) and k.input_shape == SHAPE
            np.testing.assert_allclose(k(X), K, rtol=tol("gram"), atol=tol("gram") * K.max())
            np.testing.assert_allclose(k(X[:5], X[7:]), K[:5, 7:], rtol=tol("gram"),
                                       atol=tol("gram") * K.max())


def test_the_layerwise_engine_reads_the_exported_modules_layers(data):
    X, _ = data
    model = _cnn(seed=3)
    k = kc.EmpiricalNTK(_export(model))
    text = k.describe()
    assert "exported module: its layer calls run as torch.nn layers" in text
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines()[2:]}
    assert rows == {"layer": "class", "0": "Conv2d", "1": "BatchNorm2d", "3": "Conv2d",
                    "6": "Linear"}  # every parameter in a layer of the engine
    # the per-layer routes give the same kernel as the eager module's
    K = _reference(model, X, np.float64)
    for route in ("structured", "explicit"):
        Kr = kc.EmpiricalNTK(_export(model), _route=route)(X)
        np.testing.assert_allclose(Kr, K, rtol=1e-12, atol=1e-12 * K.max())
    # normalisation layers (eval-mode BatchNorm's running statistics shared too)
    norms = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.LayerNorm(100), torch.nn.Linear(100, 6),
        torch.nn.BatchNorm1d(6), torch.nn.Tanh(), torch.nn.Linear(6, 1),
    ).double()
    with torch.no_grad():
        for p in norms.parameters():
            p.add_(0.3 * torch.randn_like(p))  # affine parameters away from 1 and 0
    norms[6].running_mean.uniform_(-0.5, 0.5)
    norms[6].running_var.uniform_(0.5, 2.0)
    norms.eval()
    kn = kc.EmpiricalNTK(_export(norms))
    classes = [ln.split()[1] for ln in kn.describe().splitlines()[3:]]
    assert classes == ["Conv2d", "GroupNorm", "LayerNorm", "Linear", "BatchNorm1d", "Linear"]
    Kn = _reference(norms, X, np.float64)
    np.testing.assert_allclose(kn(X), Kn, rtol=1e-12, atol=1e-12 * Kn.max())
    # tied weights stay in the graph (their parameter is used twice): the fallback sums them
    tied = _Tied().double().eval()
    kt = kc.EmpiricalNTK(_export(tied, shape=(2, 5)))
    lines = kt.describe().splitlines()
    assert [ln.split()[0] for ln in lines[3:]] == ["conv", "out", "(others)"]
    assert lines[-1].rstrip().endswith("lin.weight, lin.bias")
    Xt = np.random.default_rng(5).standard_normal((9, 10))
    Kt = kc.EmpiricalNTK(tied, input_shape=(2, 5), _route="jacobian")(Xt)
    np.testing.assert_allclose(kt(Xt), Kt, rtol=1e-12, atol=1e-12 * Kt.max())


def test_a_rewritten_module_that_computes_another_function_is_not_used(data, monkeypatch):
    from kernelcomp import _torch_support

    real = _torch_support.eager_layers

    def wrong(module, torch_):
        gm, n = real(module, torch_)
        if n:  # an exported module's copy (an eager module comes back as itself)
            with torch.no_grad():
                gm.get_submodule("0").weight.mul_(2.0)  # the copy's own parameter: another NTK
        return gm, n

    monkeypatch.setattr(_torch_support, "eager_layers", wrong)
    X, _ = data
    model = _cnn(seed=4)
    k = kc.EmpiricalNTK(_export(model))
    assert "layer calls run as torch.nn layers" not in k.describe()
    assert k.describe().splitlines()[-1].split()[0] == "(others)"  # every parameter
    K = _reference(model, X, np.float64)
    np.testing.assert_allclose(k(X), K, rtol=1e-12, atol=1e-12 * K.max())


def test_kernels_of_exported_programs_pickle(data):
    X, _ = data
    program = _export(_cnn(seed=2))
    for dtype in ("float64", "float32"):
        k = kc.EmpiricalNTK(program, dtype=dtype, params="last")
        k2 = pickle.loads(pickle.dumps(k))
        assert k2 == k and k2.fingerprint == k.fingerprint and k2.param_names == ("6.weight",
                                                                                   "6.bias")
        np.testing.assert_array_equal(k2(X), k(X))
    # a kernel of program.module() cannot: torch's exported modules do not pickle
    with pytest.raises(TypeError, match=r"make the kernel from the ExportedProgram itself"):
        pickle.dumps(kc.EmpiricalNTK(program.module()))
    with pytest.raises(ValueError, match=r"fixed batch size 3; export it with a dynamic batch"):
        kc.EmpiricalNTK(_export(_cnn(), dynamic=False))


def test_cli_gram_and_kpca_of_an_exported_program(tmp_path, data, capsys):
    X, y = data
    model = _cnn(seed=1)
    path = _export(model, tmp_path / "cnn.pt2")
    K = _reference(model, X, np.float64)
    assert main(["gram", str(tmp_path / "X.npy"), "--network", str(path), "-o",
                 str(tmp_path / "K.h5"), "-v"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"kernelcomp: TorchNTK: memory budget [\d.]+ [KMG]iB \(default", err)
    assert "TorchNTK(module=<ExportedModule P=" in out + err
    info = io.read_gram_info(tmp_path / "K.h5")
    assert info.kernel_desc["params"]["module"]["class"] == "torch.export"
    np.testing.assert_allclose(io.load_gram(tmp_path / "K.h5"), K, rtol=1e-12,
                               atol=1e-12 * K.max())
    assert main(["kpca", str(path), str(path), "--data", str(tmp_path / "X.npy"), "--labels",
                 str(tmp_path / "y.npy"), "-o", str(tmp_path / "d.h5"), "-q"]) == 0
    expected = kc.diagnostics.kpca_record(K, y)
    for e in io.load_diagnostics(tmp_path / "d.h5").entries:
        np.testing.assert_allclose(e["eigenvalues"], expected["eigenvalues"], rtol=1e-10)
        np.testing.assert_allclose(e["cumulative_projection"],
                                   expected["cumulative_projection"], rtol=1e-8, atol=1e-12)


def _one_line_error(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_cli_one_line_errors_for_torch_checkpoints(tmp_path, data, capsys):
    model = _cnn()
    static = _export(model, tmp_path / "static.pt2", dynamic=False)
    err = _one_line_error(["kpca", static, "--data", tmp_path / "X.npy", "-o",
                           tmp_path / "d.h5"], capsys)
    assert "fixed batch size 3" in err and "Dim('batch')" in err
    # a CNN's state dict without its model: the first error names --model and --input-shape
    torch.save(model.state_dict(), tmp_path / "cnn.pt")
    for argv in (["kpca", tmp_path / "cnn.pt", "--data", tmp_path / "X.npy", "-o",
                  tmp_path / "e.h5"],
                 ["gram", tmp_path / "X.npy", "--network", tmp_path / "cnn.pt", "-o",
                  tmp_path / "E.h5"]):
        err = _one_line_error(argv, capsys)
        assert "not a Linear stack" in err and "--model" in err and "--input-shape" in err
    # any other state dict that is not a Linear stack (BatchNorm between Linear layers) too
    mlp = torch.nn.Sequential(torch.nn.Linear(98, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 1))
    torch.save(mlp.state_dict(), tmp_path / "bn.pt")
    err = _one_line_error(["gram", tmp_path / "X.npy", "--network", tmp_path / "bn.pt", "-o",
                           tmp_path / "G.h5"], capsys)
    assert "only Linear layers" in err and "--model package.module:factory" in err
    assert "--input-shape" in err and ".pt2" in err
    # a .pt2 with a model factory
    path = _export(model, tmp_path / "cnn.pt2")
    err = _one_line_error(["gram", tmp_path / "X.npy", "--network", path, "--model",
                           "tests.torch_models:small_cnn", "-o", tmp_path / "F.h5"], capsys)
    assert "torch.export program, which holds its model" in err


@pytest.mark.slow
def test_n20000_cli_gram_of_an_exported_cnn_in_a_subprocess(tmp_path):
    """``kernelcomp gram`` of a 20000-point float32 NTK of an exported CNN (P = 2497).

    In a subprocess; sampled entries against the eager module's kernel.
    """
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    probe = textwrap.dedent(
        f"""
        import h5py, numpy as np, torch, kernelcomp as kc
        from kernelcomp.cli import main
        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1)).eval()
        program = torch.export.export(model, (torch.zeros(2, 1, 14, 14),),
                                      dynamic_shapes=({{0: torch.export.Dim("batch")}},))
        torch.export.save(program, {str(tmp_path / "cnn.pt2")!r})
        X = np.random.default_rng(0).standard_normal((20000, 196)).astype(np.float32)
        np.save({str(tmp_path / "X.npy")!r}, X)
        assert main(["gram", {str(tmp_path / "X.npy")!r}, "--network",
                     {str(tmp_path / "cnn.pt2")!r}, "--dtype", "float32", "-o",
                     {str(tmp_path / "K.h5")!r}, "-q"]) == 0
        idx = [0, 7, 12345, 19999]
        with h5py.File({str(tmp_path / "K.h5")!r}, "r") as f:
            sub = f["gram"][idx][:, idx]
        ref = kc.TorchNTK(model, input_shape=(1, 14, 14), dtype="float32")(X[idx])
        err = float(np.abs(sub - ref).max() / np.abs(ref).max())
        print("ERR", err)
        assert err < 1e-5, err
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=5400, check=False, cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ERR" in out.stdout


def test_a_junk_pt2_names_the_error_and_the_formats(tmp_path):
    path = tmp_path / "junk.pt2"
    path.write_bytes(b"not a checkpoint")
    want = (r"(?s)junk\.pt2: cannot read as a PyTorch state dict \(\w+:"
            r".*torch\.export programs \(\.pt2\), TorchScript files or state dicts")
    with pytest.raises(ValueError, match=want):
        ck.load_network(path)
