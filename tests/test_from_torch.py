"""``FCNetwork.from_torch`` (kernelcomp/_torch.py) against PyTorch itself.

References: the module's own forward pass, and the empirical NTK as the explicit
per-sample Jacobian ``J J^T`` from ``torch.func.jacrev`` (mean over outputs), in
float64 and float32, for every activation PyTorch has a module for.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import _torch
from kernelcomp.network import ACTIVATIONS

torch = pytest.importorskip("torch", reason="from_torch of a module needs the PyTorch extra")
nn = torch.nn

pytestmark = pytest.mark.torch

#: FCNetwork activation -> a torch module computing it (PyTorch's defaults, spelt out)
MODULES = {
    "relu": lambda: nn.ReLU(),
    "tanh": lambda: nn.Tanh(),
    "linear": lambda: nn.Identity(),
    "gelu": lambda: nn.GELU(approximate="none"),
    "silu": lambda: nn.SiLU(),
    "softplus": lambda: nn.Softplus(beta=1),
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "sigmoid": lambda: nn.Sigmoid(),
    "elu": lambda: nn.ELU(alpha=1.0),
}
#: largest |difference| / largest |entry|, by working dtype
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}
NP_DTYPE = {torch.float64: np.float64, torch.float32: np.float32}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1202)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _jacobian_ntk(model, X: torch.Tensor, output: int | None = None) -> np.ndarray:
    """Theta(x, x') = (1/K) sum_k J_k(x) . J_k(x') from torch.func, every parameter."""
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), (None, 0))(params, X)
    n = X.shape[0]
    J = torch.cat([j.reshape(n, j.shape[1], -1) for j in jac.values()], dim=2)
    if output is not None:
        J = J[:, output : output + 1]
    return (torch.einsum("ikp,jkp->ij", J, J) / J.shape[1]).detach().double().numpy()


def _stack(act: str, reuse: bool, dtype) -> nn.Module:
    torch.manual_seed(3)
    a = MODULES[act]()
    b = a if reuse else MODULES[act]()
    return nn.Sequential(nn.Linear(5, 16), a, nn.Linear(16, 12), b, nn.Linear(12, 3)).to(dtype)


def test_every_torch_activation_has_a_network_name():
    assert set(_torch.ACTIVATION_MODULES.values()) <= set(ACTIVATIONS)
    assert set(MODULES) == set(_torch.ACTIVATION_MODULES.values())


def test_a_reused_activation_instance_is_read_in_forward_order(rng):
    torch.manual_seed(0)
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(5, 16), act, nn.Linear(16, 16), act, nn.Linear(16, 1)).double()
    net = kc.FCNetwork.from_torch(model)
    assert net.widths == (16, 16) and net.activation == "relu"
    X = rng.standard_normal((7, 5))
    with torch.no_grad():
        np.testing.assert_allclose(net(X), model(torch.from_numpy(X))[:, 0].numpy(), rtol=1e-12)
    assert _rel(kc.EmpiricalNTK(net)(X), _jacobian_ntk(model, torch.from_numpy(X))) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("act", sorted(MODULES))
def test_forward_and_empirical_ntk_match_torch(act, dtype, rng):
    for reuse in (False, True):
        model = _stack(act, reuse, dtype)
        net = kc.FCNetwork.from_torch(model)
        assert net.activation == act and net.parameterization == "standard"
        assert net.widths == (16, 12) and net.n_outputs == 3
        X = rng.standard_normal((9, 5))
        Xt = torch.from_numpy(X).to(dtype)
        with torch.no_grad():
            ref = model(Xt).double().numpy()
        # the network runs in float64 on the module's (exactly converted) weights
        assert _rel(net(Xt.double().numpy()), ref) < TOL[dtype]
        tol, np_dt = TOL[dtype], NP_DTYPE[dtype]
        Xw = Xt.double().numpy().astype(np_dt)
        for output in (None, 1):
            theta = kc.EmpiricalNTK(net, output=output)(Xw)
            assert theta.dtype == np_dt
            assert _rel(theta, _jacobian_ntk(model, Xt, output)) < tol


def test_nested_sequentials_and_pass_through_layers(rng):
    torch.manual_seed(1)
    act = nn.SiLU()
    block = nn.Sequential(nn.Linear(8, 8), act)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 8), act, nn.Dropout(0.0), block, block[0].__class__(8, 2)
    ).double()
    with pytest.raises(ValueError, match=r"Linear layer '2\.0' is applied twice \(at '3\.0'\)"):
        kc.FCNetwork.from_torch(nn.Sequential(model[1], act, block, block, nn.Linear(8, 1)))
    net = kc.FCNetwork.from_torch(model)
    assert net.widths == (8, 8) and net.activation == "silu"
    X = rng.standard_normal((6, 4))
    with torch.no_grad():
        np.testing.assert_allclose(net(X), model(torch.from_numpy(X)).numpy(), rtol=1e-12)


def test_shared_linear_weights_are_refused():
    lin = nn.Linear(6, 6)
    with pytest.raises(ValueError, match=r"Linear layer '2' is applied twice \(at '4'\): shared"):
        kc.FCNetwork.from_torch(
            nn.Sequential(nn.Linear(3, 6), nn.Tanh(), lin, nn.Tanh(), lin, nn.Tanh(),
                          nn.Linear(6, 1))
        )


@pytest.mark.parametrize(
    "module, message",
    [
        (nn.GELU(approximate="tanh"), r"GELU\(approximate='tanh'\) at layer '1'"),
        (nn.LeakyReLU(0.2), r"LeakyReLU\(negative_slope=0.2\) at layer '1'"),
        (nn.ELU(alpha=0.5), r"ELU\(alpha=0.5\) at layer '1'"),
        (nn.Softplus(beta=2), r"Softplus\(beta=2\) at layer '1'"),
        (nn.Softplus(threshold=5), r"Softplus\(threshold=5\) at layer '1'"),
    ],
)
def test_other_activation_options_are_refused_in_one_line(module, message):
    with pytest.raises(ValueError, match="unsupported option " + message) as info:
        kc.FCNetwork.from_torch(nn.Sequential(nn.Linear(2, 3), module, nn.Linear(3, 1)))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("module", [nn.CELU(), nn.Hardtanh(), nn.BatchNorm1d(3), nn.Softmax(1)])
def test_unsupported_layers_are_named(module):
    name = type(module).__name__
    with pytest.raises(TypeError, match=rf"unsupported layer {name} at layer '1' .* GELU") as info:
        kc.FCNetwork.from_torch(nn.Sequential(nn.Linear(2, 3), module, nn.Linear(3, 1)))
    assert "\n" not in str(info.value)


def test_subclasses_of_activations_are_not_taken_for_them():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return super().forward(x) + 1

    with pytest.raises(TypeError, match="unsupported layer Shifted at layer '1'"):
        kc.FCNetwork.from_torch(nn.Sequential(nn.Linear(2, 3), Shifted(), nn.Linear(3, 1)))


def test_mixed_disagreeing_and_misplaced_activations():
    act = nn.GELU()
    with pytest.raises(ValueError, match=r"mixes activations \['gelu', 'silu'\]"):
        kc.FCNetwork.from_torch(
            nn.Sequential(nn.Linear(2, 3), act, nn.Linear(3, 3), nn.SiLU(), nn.Linear(3, 3), act,
                          nn.Linear(3, 1))
        )
    with pytest.raises(ValueError, match="activation='silu' disagrees with the module's 'gelu'"):
        kc.FCNetwork.from_torch(nn.Sequential(nn.Linear(2, 3), act, nn.Linear(3, 1)),
                                activation="silu")
    assert kc.FCNetwork.from_torch(nn.Sequential(nn.Linear(2, 3), act, nn.Linear(3, 1)),
                                   activation=" GELU").activation == "gelu"
    with pytest.raises(ValueError, match=r"starts with an activation \(GELU at layer '0'\)"):
        kc.FCNetwork.from_torch(nn.Sequential(act, nn.Linear(2, 1)))
    with pytest.raises(ValueError, match=r"after Linear layers \[1, 1\] of 3"):
        kc.FCNetwork.from_torch(
            nn.Sequential(nn.Linear(2, 3), act, act, nn.Linear(3, 3), nn.Linear(3, 1))
        )


def test_a_custom_module_reusing_an_activation_gets_a_hint():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2, self.fc3 = (nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 4),
                                                      nn.Linear(4, 1))

        def forward(self, x):
            return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))

    with pytest.raises(ValueError, match=r"registration order: an nn\.Sequential is read in"):
        kc.FCNetwork.from_torch(Net())


@pytest.mark.parametrize("act", ["gelu", "softplus", "leaky_relu"])
def test_state_dicts_take_the_activation_by_name(act, rng):
    model = _stack(act, True, torch.float64)
    net = kc.FCNetwork.from_torch(model)
    assert kc.FCNetwork.from_torch(model.state_dict(), activation=act) == net
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    assert kc.FCNetwork.from_torch(sd, activation=act) == net
