"""kernelcomp._checkpoints: networks from checkpoint files of every kind, below the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import _checkpoints as ck


@pytest.fixture
def net():
    return kc.FCNetwork.init(3, [5], activation="tanh", seed=0)


def test_kernelcomp_files_load_back(tmp_path, net, rng):
    X = rng.standard_normal((7, 3))
    for ext in ("npz", "h5"):
        back = ck.load_network(net.save(tmp_path / f"net.{ext}"))
        np.testing.assert_array_equal(back(X), net(X))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    kc.training.train(net, X, y, alpha=1.0, path=tmp_path / "run.h5", max_steps=3,
                      checkpoints=[0, 3])
    run = kc.io.open_run(tmp_path / "run.h5")
    first = ck.load_network(tmp_path / "run.h5", checkpoint=0)
    np.testing.assert_array_equal(first(X), run.checkpoints[0].network(X))
    np.testing.assert_array_equal(ck.load_network(tmp_path / "run.h5")(X),
                                  run.checkpoints[-1].network(X))


def test_file_kind_reads_through_partial_files():
    assert ck.file_kind(Path("a/run.H5.partial")) == ".h5"
    assert ck.file_kind(Path("net.NPZ")) == ".npz"


def test_errors_name_the_argument_not_a_command_line_flag(tmp_path, net):
    path = net.save(tmp_path / "net.npz")
    with pytest.raises(ValueError, match=r"net\.npz: model \(a factory\) applies to PyTorch"):
        ck.load_network(path, model="pkg.mod:factory")
    h5 = net.save(tmp_path / "net.h5")
    with pytest.raises(ValueError, match=r"activation applies to \.pt / state-dict \.npz files"):
        ck.load_network(h5, activation="relu")
    (tmp_path / "net.txt").write_text("1")
    with pytest.raises(ValueError, match=r"unsupported network file type '\.txt'"):
        ck.load_network(tmp_path / "net.txt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ck.load_network(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"model must be package\.module:factory, got 'f'"):
        ck.build_model("f", None)


@pytest.mark.torch
def test_pytorch_checkpoints_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    from tests import torch_models

    cnn = torch_models.small_cnn().double().eval()
    torch.save(cnn.state_dict(), tmp_path / "cnn.pt")
    torch.jit.save(torch.jit.script(cnn), tmp_path / "script.pt")
    x = torch.randn(4, 1, 5, dtype=torch.float64)
    built = ck.load_network(tmp_path / "cnn.pt", model="tests.torch_models:small_cnn")
    scripted = ck.load_network(tmp_path / "script.pt")
    assert ck.is_torchscript(tmp_path / "script.pt") and not ck.is_torchscript(tmp_path / "cnn.pt")
    with torch.no_grad():
        np.testing.assert_array_equal(built(x).numpy(), cnn(x).numpy())
        np.testing.assert_allclose(scripted(x).numpy(), cnn(x).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="is a TorchScript file, which holds its model"):
        ck.load_network(tmp_path / "script.pt", model="tests.torch_models:small_cnn")
    torch.save(cnn, tmp_path / "whole.pt")
    with pytest.raises(ValueError, match="holds a pickled model, not a state dict"):
        ck.load_network(tmp_path / "whole.pt", model="tests.torch_models:small_cnn")
