"""The layerwise engine of ``TorchNTK`` (kernelcomp/_torch_layers.py) layer kind by layer kind.

Reference: the explicit Jacobian of the batched forward pass (``torch.func.jacrev``
of the whole batch, float64), contracted as ``J J^T`` per output; the engine's
structured, explicit and per-sample-Jacobian routes are each forced in turn and
compared with it and with each other.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kernelcomp as kc

torch = pytest.importorskip("torch", reason="TorchNTK needs the optional PyTorch extra")
nn = torch.nn

from kernelcomp._torch_ntk import TorchNTK  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ["auto", "structured", "explicit", "jacobian"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def jacobians(model, X, input_shape, names=None):
    """``(n, K, P)``: the explicit Jacobian of the batched forward pass (float64, eval)."""
    from torch.func import functional_call, jacrev

    model = copy.deepcopy(model).double().eval()
    params = {n: p.detach() for n, p in model.named_parameters()
              if p.requires_grad and (names is None or n in names)}
    x = torch.from_numpy(np.asarray(X, dtype=np.float64)).reshape(len(X), *input_shape)

    def f(p):
        return functional_call(model, p, (x,)).reshape(len(X), -1)

    with torch.no_grad():
        jac = jacrev(f)(params)
        return torch.cat([j.reshape(len(X), j.shape[1], -1) for j in jac.values()], 2).numpy()


def reference(J, Jy=None, output=None):
    """The Gram of ``J`` against ``Jy`` for an output selection (trace/K, one, sum of logits)."""
    Jy = J if Jy is None else Jy
    K = J.shape[1]
    if output is None:
        return np.einsum("ikp,jkp->ij", J, Jy) / K
    if output == "sum_of_logits":
        return J.sum(1) @ Jy.sum(1).T / K
    return J[:, output] @ Jy[:, output].T


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - b).max() / np.abs(b).max())


# -- models (float64, small) -----------------------------------------------------------
class Residual(nn.Module):
    """Conv-BN-ReLU(inplace)-Conv-BN, in-place ``*=`` and ``+=``, GAP, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out *= 1.5  # changes the hooked layer's output in place
        out += x
        out = self.relu(out)
        return self.head(out.mean((2, 3)))


class Reshaping(nn.Module):
    """Takes flat rows of 2*6*6 values and reshapes them itself (input_shape=(72,))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2)
        self.lin = nn.Linear(3 * 2 * 2, 2)

    def forward(self, x):
        h = torch.tanh(self.conv(x.view(-1, 2, 6, 6)))
        return self.lin(h.flatten(1))


class Sequence(nn.Module):
    """A Linear layer on every position of a sequence (4 positions of 3), then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Linear(3, 5)
        self.norm = nn.LayerNorm(5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.tanh(self.norm(self.tok(x.view(-1, 4, 3))))
        return self.head(h.mean(1))


class Twice(nn.Module):
    """One Linear module called twice (a shared layer), and a tied pair of modules."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(4, 2)
        self.b.weight = self.a.weight  # tied: handled by the per-sample Jacobian

    def forward(self, x):
        h = torch.tanh(self.shared(torch.tanh(self.shared(x))))
        return self.a(h) + self.b(h * h)


class Custom(nn.Module):
    """A module with its own parameter (not a known layer) next to known ones."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 3))
        self.conv3 = nn.Conv3d(1, 1, 1)  # unknown kind too

    def forward(self, x):
        h = torch.tanh(self.lin(x)) * self.scale
        return h + self.conv3(h.view(-1, 1, 1, 1, 3)).view(-1, 3)


class Embed(nn.Module):
    """Integer tokens (as floats in the rows) through an embedding with a padding index."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 3, padding_idx=0)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x.long())).sum(1))


def _bn_stats(model, shape):
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.randn(8, *shape, dtype=torch.float64) * 2 + 0.5)
        for m in model.modules():
            if getattr(m, "weight", None) is not None and isinstance(
                    m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    return model


def make(name: str):
    """``(model, input_shape)`` of the named test model (float64, seeded)."""
    torch.manual_seed(3)
    if name == "mlp":
        m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3))
        return m.double(), (5,)
    if name == "conv2d":  # strided, dilated, grouped, 'same', reflect padding
        m = nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Tanh(),
            nn.Conv2d(4, 4, 3, dilation=2, padding="same", groups=2), nn.Tanh(),
            nn.Conv2d(4, 6, (2, 3), groups=2, padding=1, padding_mode="reflect"), nn.Tanh(),
            nn.Flatten(), nn.LazyLinear(3))
        m(torch.zeros(1, 2, 7, 7))
        return m.double(), (2, 7, 7)
    if name == "conv1d":
        m = nn.Sequential(
            nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2), nn.Tanh(),
            nn.Conv1d(4, 4, 2, groups=4, padding_mode="circular", padding=1), nn.Tanh(),
            nn.Flatten(), nn.LazyLinear(2))
        m(torch.zeros(1, 2, 9))
        return m.double(), (2, 9)
    if name == "norms":  # batch norm (eval), group norm, instance norm, layer norm
        m = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.GroupNorm(2, 4),
            nn.InstanceNorm2d(4, affine=True), nn.Tanh(), nn.Flatten(),
            nn.Linear(4 * 4 * 4, 5), nn.BatchNorm1d(5), nn.LayerNorm(5), nn.Linear(5, 2))
        return _bn_stats(m.double(), (1, 6, 6)), (1, 6, 6)
    if name == "residual":
        return _bn_stats(Residual().double(), (2, 5, 5)), (2, 5, 5)
    if name == "reshaping":
        return Reshaping().double(), (72,)
    if name == "sequence":
        return Sequence().double(), (12,)
    if name == "twice":
        return Twice().double(), (4,)
    if name == "custom":
        return Custom().double(), (4,)
    if name == "embed":
        return Embed().double(), (4,)
    raise KeyError(name)


MODELS = ["mlp", "conv2d", "conv1d", "norms", "residual", "reshaping", "sequence", "twice",
          "custom", "embed"]


def data(name, shape, n, rng):
    if name == "embed":
        return rng.integers(0, 5, size=(n, 4)).astype(np.float64)
    return rng.standard_normal((n, math.prod(shape)))


# -- every layer kind against the explicit Jacobian ---------------------------------------
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("route", ROUTES)
def test_layer_kinds_match_the_explicit_jacobian(name, route, rng):
    model, shape = make(name)
    X, Y = data(name, shape, 6, rng), data(name, shape, 3, rng)
    J, Jy = jacobians(model, X, shape), jacobians(model, Y, shape)
    for output in [None, 1, "sum_of_logits"]:
        k = TorchNTK(model, input_shape=shape, output=output, _route=route)
        K = k(X)
        assert (K == K.T).all()
        ref = reference(J, output=output)
        assert rel(K, ref) < 1e-12, (output, k.describe())
        assert rel(k(X, Y), reference(J, Jy, output)) < 1e-12
        assert rel(k.diag(X), np.diag(ref)) < 1e-12


def test_routes_are_used_as_described():
    """``auto`` takes the structured product for dense layers, explicit for wide convolutions."""
    model, shape = make("conv2d")
    text = TorchNTK(model, input_shape=shape).describe()
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert "explicit" in rows["0"] and "structured" in rows["7"], text
    forced = TorchNTK(model, input_shape=shape, _route="structured").describe()
    assert "explicit" not in forced.split("cost/pair")[1].replace("(explicit", "")
    custom = TorchNTK(make("custom")[0], input_shape=(4,)).describe()
    assert "(others)" in custom and "scale" in custom and "conv3.weight" in custom
    assert any(line.split()[:2] == ["lin", "Linear"] for line in custom.splitlines())
    twice = TorchNTK(make("twice")[0], input_shape=(4,)).describe()
    assert "a.weight" in twice.split("(others)")[1]  # the tied weight
    shared = [line for line in twice.splitlines() if line.strip().startswith("shared")]
    assert shared and " 2 " in shared[0]  # two positions: the two calls
    jac = TorchNTK(model, input_shape=shape, method="jacobian").describe()
    assert "per-sample Jacobian (jacobian)" in jac


def test_describe_is_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="kernelcomp"):
        TorchNTK(make("mlp")[0], input_shape=(5,))
    assert "layerwise engine" in caplog.text and "structured" in caplog.text


@pytest.mark.parametrize("name", ["mlp", "conv2d", "embed", "sequence"])
def test_structured_and_explicit_routes_agree(name, rng, dtype, tol):
    model, shape = make(name)
    X = data(name, shape, 9, rng).astype(dtype)
    dt = np.dtype(dtype).name
    a = TorchNTK(model, input_shape=shape, dtype=dt, _route="structured")(X)
    b = TorchNTK(model, input_shape=shape, dtype=dt, _route="explicit")(X)
    assert a.dtype == b.dtype == dtype
    assert rel(a, b) < 50 * tol("gram")


def test_parameter_subsets(rng):
    model, shape = make("norms")
    X = data("norms", shape, 5, rng)
    names = [n for n, _ in model.named_parameters()]
    for sel in (["0"], ["1.weight"], ["7.bias", "3"], ["9", "10.weight"], "last"):
        k = TorchNTK(model, params=sel, input_shape=shape)
        J = jacobians(model, X, shape, names=[n for n in names if n in k.param_names])
        assert rel(k(X), reference(J)) < 1e-12, sel


def test_per_output_ntk(rng):
    model, shape = make("residual")
    X, Y = data("residual", shape, 4, rng), data("residual", shape, 3, rng)
    J, Jy = jacobians(model, X, shape), jacobians(model, Y, shape)
    ref = np.einsum("ikp,jlp->ijkl", J, Jy)
    for route in ("structured", "explicit", "jacobian"):
        k = TorchNTK(model, input_shape=shape, _route=route)
        full = k.per_output(X, Y)
        assert full.shape == (4, 3, 3, 3)
        assert rel(full, ref) < 1e-12
        np.testing.assert_allclose(np.einsum("ijkk->ij", full) / 3, k(X, Y), rtol=1e-12)
    with pytest.raises(ValueError, match="per_output needs method='layerwise' and output=None"):
        TorchNTK(model, input_shape=shape, output=0).per_output(X)


def test_sum_of_logits_is_named_and_an_approximation(rng):
    model, shape = make("mlp")
    X = data("mlp", shape, 6, rng)
    exact = TorchNTK(model, input_shape=shape)(X)
    approx = TorchNTK(model, input_shape=shape, output="sum_of_logits")
    assert approx.output == "sum_of_logits" and "sum_of_logits" in repr(approx)
    assert rel(approx(X), exact) > 1e-3  # not the same kernel
    assert TorchNTK(model, input_shape=shape, output="mean") == TorchNTK(model, input_shape=shape)
    with pytest.raises(ValueError, match="unknown output 'sum'"):
        TorchNTK(model, input_shape=shape, output="sum")


# -- blocks, budget, gram driver -------------------------------------------------------
@pytest.mark.parametrize("route", ["structured", "explicit"])
def test_blocked_equals_unblocked(rng, route, tmp_path):
    model, shape = make("residual")
    X, Y = data("residual", shape, 11, rng), data("residual", shape, 4, rng)
    k = TorchNTK(model, input_shape=shape, _route=route)
    K, C, d = k(X), k(X, Y), k.diag(X)
    row = k._factor_row_bytes
    for budget in (1, 2 * 3 * row, 2 * 5 * row, 20 * k._work_row_bytes):
        small = TorchNTK(model, input_shape=shape, _route=route, max_memory=budget)
        assert small == k
        Ks = small(X)
        assert (Ks == Ks.T).all()
        assert rel(Ks, K) < 1e-12 and rel(small(X, Y), C) < 1e-12
        assert rel(small.diag(X), d) < 1e-12
        assert rel(kc.gram(small, X, block_rows=4, progress=True), K) < 1e-12
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "g.h5", "w") as f:
        dset = f.create_dataset("K", shape=(11, 11), dtype="float32")
        kc.gram(k, X, out=dset, block_rows=3)
        np.testing.assert_allclose(dset[...], K, rtol=1e-6)


def test_default_budget_follows_free_memory(monkeypatch):
    from kernelcomp import _torch_ntk

    monkeypatch.setattr(_torch_ntk, "available_memory", lambda: 40 * 2**30)
    assert _torch_ntk.default_budget() == 8 * 2**30  # a quarter of 40 GiB, capped (issue 27)
    monkeypatch.setattr(_torch_ntk, "available_memory", lambda: 1 * 2**30)
    assert _torch_ntk.default_budget() == 2**28
    monkeypatch.setattr(_torch_ntk, "available_memory", lambda: 2**20)
    assert _torch_ntk.default_budget() == 64 * 2**20


class BatchCentred(nn.Module):
    """Subtracts the batch mean: one sample's output depends on the others."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(h - 0.5 * h.mean(0, keepdim=True))


def test_batch_interaction_falls_back_to_per_sample(rng):
    """Samples that interact in a batch take the per-sample Jacobian (per-sample semantics)."""
    torch.manual_seed(0)
    model = BatchCentred().double()
    k = TorchNTK(model)
    assert "interact" in k.describe()
    X = rng.standard_normal((4, 3))
    assert rel(k(X), TorchNTK(model, method="jacobian")(X)) < 1e-12


# -- TorchScript -----------------------------------------------------------------------
def _script_roundtrip(model):
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buf)
    buf.seek(0)
    return torch.jit.load(buf)


def test_torchscript_sequential_is_rebuilt(rng):
    model, shape = make("conv2d")
    model = nn.Sequential(*list(model)[:-1], nn.Linear(model[-1].in_features, 3)).double()
    scripted = _script_roundtrip(model)
    X = data("conv2d", shape, 5, rng)
    k = TorchNTK(scripted, input_shape=shape)
    assert "rebuilt" in k.describe() and "structured" in k.describe()
    assert rel(k(X), reference(jacobians(model, X, shape))) < 1e-12


def test_torchscript_custom_module_takes_the_autograd_route(rng):
    eager, shape = make("reshaping")
    k = TorchNTK(_script_roundtrip(eager), input_shape=shape)
    assert k.method == "jacobian"
    X = data("reshaping", shape, 4, rng)
    assert rel(k(X), reference(jacobians(eager, X, shape))) < 1e-12


# -- memory ----------------------------------------------------------------------------
# The measuring half of the memory probes below: a fresh process builds ``k``, ``X`` and
# ``small = k(X[:4])`` in its setup, runs a warm-up call, then the peak resident set is reset
# and the growth of the peak over the resident set before the measured call ``k(X)`` is printed.
_PEAK_PROBE = """
import json, resource
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    peak_of = hwm
except OSError:  # no reset of the peak here: the lifetime peak, compile included
    peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
K = k(X)
peak = peak_of()
err = float(np.abs(K[:4, :4] - small).max() / np.abs(small).max())
print(json.dumps({"P": k.n_parameters, "grow": peak - base, "err": err, "out": K.nbytes}))
"""


def _peak_growth(setup: str, timeout: int) -> dict:
    """Run ``setup`` (ending with its warm-up call) then ``_PEAK_PROBE`` in a fresh process."""
    probe = textwrap.dedent(setup) + _PEAK_PROBE
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=timeout, check=False, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                              "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth {res['grow'] / 2**20:.0f} MiB; output {res['out'] / 2**20:.0f} MiB")
    return res


def test_memory_is_the_output_plus_the_budget():
    """Peak RSS growth of an n = 3000 Gram of a P ~ 1.1e6 MLP stays within output + budget.

    The n x P float32 Jacobian would take 13 GB; the budget is 128 MiB. Measured in a
    fresh process as the growth of the peak resident set over the resident set
    before the call (torch's CPU tensors are invisible to tracemalloc).
    """
    res = _peak_growth(
        """
        import numpy as np, torch
        from kernelcomp._torch_ntk import TorchNTK
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(1000, 1000), torch.nn.ReLU(),
                                    torch.nn.Linear(1000, 100), torch.nn.ReLU(),
                                    torch.nn.Linear(100, 10))
        k = TorchNTK(model, dtype="float32", max_memory=128 * 2**20)
        X = np.random.default_rng(0).standard_normal((3000, 1000)).astype(np.float32)
        small = k(X[:4])
        # a first full call compiles whatever the full-size path needs (numba's cache is
        # cold in a fresh clone, and LLVM's compile memory is no part of the engine's
        # bound); the probe then resets the peak so that only the measured call counts
        k(X)
        """,
        timeout=600,
    )
    assert res["P"] > 1e6 and res["err"] < 1e-5
    assert res["grow"] < res["out"] + 128 * 2**20 + 200 * 2**20  # + scratch and allocator slack


@pytest.mark.slow
def test_n20000_small_cnn_in_a_subprocess(tmp_path):
    """The 20000^2 float32 Gram of a small CNN (P = 2497) into an HDF5 file, in a subprocess."""
    probe = textwrap.dedent(
        f"""
        import h5py, numpy as np, torch, kernelcomp as kc
        from kernelcomp._torch_ntk import TorchNTK
        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1))
        k = TorchNTK(model, input_shape=(1, 14, 14), dtype="float32")
        X = np.random.default_rng(0).standard_normal((20000, 196)).astype(np.float32)
        with h5py.File({str(tmp_path / "g.h5")!r}, "w") as f:
            d = f.create_dataset("K", shape=(20000, 20000), dtype="float32")
            kc.gram(k, X, out=d)
            idx = [0, 7, 12345, 19999]
            sub = d[idx][:, idx]
        ref = k(X[idx])
        err = float(np.abs(sub - ref).max() / np.abs(ref).max())
        print("ERR", err)
        assert err < 1e-5, err
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=3600, check=False, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ERR" in out.stdout


def test_float32_wide_convolutions(rng):
    """float32 convolutions with many channels take the grouped backward (all paddings)."""
    from kernelcomp import _torch_layers

    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(),
        nn.Conv2d(8, 16, 3, stride=2, dilation=2, padding=2, groups=1), nn.Tanh(),
        nn.Conv2d(16, 16, 3, padding="same", groups=2), nn.Tanh(),
        nn.Conv2d(16, 8, 2, padding=1, padding_mode="reflect"), nn.Tanh(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).double()
    shape = (1, 8, 8)
    X = rng.standard_normal((5, 64))
    ref = reference(jacobians(model, X, shape))
    assert _torch_layers._GROUPED_MIN_CHANNELS <= 8
    k = TorchNTK(model, input_shape=shape, dtype="float32", _route="explicit")
    assert rel(k(X.astype(np.float32)), ref) < 2e-6


class ShiftedConvs(nn.Module):
    """Wide float64 convolutions of every shape the shifted GEMMs take, and one they refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(2, 8, 3, padding=1)  # 2 input channels: not shifted
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        # padded grid 10 x 9 > 2x the 6 x 5 output: the module's own forward
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.c3 = nn.Conv2d(8, 9, (2, 3), padding="same")  # uneven: torch pads one side
        self.c4 = nn.Conv2d(9, 8, (3, 2), padding=(1, 0))
        self.c5 = nn.Conv1d(8, 8, 3, padding=2, dilation=2)
        self.c6 = nn.Conv2d(8, 8, 1, padding=3)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.c0(x))
        h = torch.relu(self.c2(torch.tanh(self.c1(h))))
        h = torch.tanh(self.c4(torch.tanh(self.c3(h))))  # (b, 8, 6, 4)
        s = torch.tanh(self.c5(h.flatten(2)))  # a Conv1d over the 24 positions
        h = torch.tanh(self.c6(s.view_as(h)))  # (b, 8, 12, 10)
        return self.head(h.mean((2, 3)))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_shifted_convolutions_match_the_explicit_jacobian(rng, monkeypatch):
    """float64 convolutions as shifted GEMMs: forward, input gradient and weight gradients."""
    from kernelcomp import _torch_layers

    calls = []
    real = _torch_layers.shifted_weight_grads
    monkeypatch.setattr(_torch_layers, "shifted_weight_grads",
                        lambda *a: calls.append(a[0]) or real(*a))
    torch.manual_seed(5)
    model, shape = ShiftedConvs().double(), (2, 6, 5)
    X, Y = rng.standard_normal((6, 60)), rng.standard_normal((3, 60))
    J, Jy = jacobians(model, X, shape), jacobians(model, Y, shape)
    k = TorchNTK(model, input_shape=shape, output=None)
    shifted = {L.path for L in k._layers if L.shift}
    assert shifted == {"c1", "c2", "c4", "c5", "c6"}, k.describe()  # c3: uneven padding
    assert "(shifted GEMMs)" in k.describe()
    calls.clear()
    K = k(X)
    eager = k._eager  # the kernel's own copy of the module
    assert {id(m) for m in calls} == {id(getattr(eager, c)) for c in ("c1", "c4", "c5", "c6")}
    assert (K == K.T).all()
    assert rel(K, reference(J)) < 1e-12
    assert rel(k(X, Y), reference(J, Jy)) < 1e-12
    assert rel(k.diag(X), np.diag(reference(J))) < 1e-12
    assert all("forward" not in getattr(eager, c).__dict__ for c in shifted)  # restored
    for output in (1, "sum_of_logits"):
        ko = TorchNTK(model, input_shape=shape, output=output)
        assert rel(ko(X), reference(J, output=output)) < 1e-12, output
    per = k.per_output(X, Y)
    assert rel(per, np.einsum("ikp,jlp->ijkl", J, Jy)) < 1e-12
    # a float32 kernel keeps torch's (oneDNN) convolutions
    assert not any(L.shift for L in TorchNTK(model, input_shape=shape, dtype="float32")._layers)


def test_memory_of_shifted_convolutions():
    """Peak RSS growth of an n = 3000 float64 Gram of a 16-channel CNN (shifted GEMMs).

    One batch of all rows would hold ~ 0.6 GB of padded inputs and activations; the
    budget is 64 MiB (the per-row work estimate must count the shifted buffers).
    """
    res = _peak_growth(
        """
        import numpy as np, torch
        from kernelcomp._torch_ntk import TorchNTK
        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1))
        k = TorchNTK(model, input_shape=(1, 16, 16), max_memory=64 * 2**20)
        assert [L.shift for L in k._layers] == [False, True, False]
        X = np.random.default_rng(0).standard_normal((3000, 256))
        small = k(X[:4])
        k(X[:600])
        """,
        timeout=900,
    )
    assert res["err"] < 1e-13
    assert res["grow"] < res["out"] + 64 * 2**20 + 200 * 2**20  # + scratch and allocator slack


def test_a_convolution_with_its_own_instance_forward_keeps_it():
    """A Conv2d whose instance carries its own ``forward`` is not replaced by shifted GEMMs."""
    import functools

    torch.manual_seed(5)
    model = ShiftedConvs().double()
    model.c1.forward = functools.partial(type(model.c1).forward, model.c1)
    k = TorchNTK(model, input_shape=(2, 6, 5), output=None)
    shift = {L.path: L.shift for L in k._layers}
    assert shift["c1"] is False and shift["c2"] is True, k.describe()
