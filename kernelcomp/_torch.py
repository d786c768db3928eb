"""The PyTorch import of FCNetwork: ``Linear``/activation stacks and state dicts.

The code behind :meth:`FCNetwork.from_torch <kernelcomp.network.FCNetwork.from_torch>`.
PyTorch (the optional extra ``kernelcomp[torch]``) is imported only when a
module is given; a state dict of NumPy arrays needs no torch. The functions
take the class to build as their first argument, so this module never imports
:mod:`kernelcomp.network`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kernelcomp._kernels.activations import LEAKY_SLOPE

__all__ = ["ACTIVATION_MODULES", "from_state_dict", "from_torch"]


#: torch.nn activation class name -> FCNetwork activation (exact types: a subclass
#: may change forward); options checked by :func:`_activation_name`
ACTIVATION_MODULES: dict[str, str] = {
    "ReLU": "relu",
    "Tanh": "tanh",
    "Identity": "linear",
    "GELU": "gelu",
    "SiLU": "silu",
    "Softplus": "softplus",
    "LeakyReLU": "leaky_relu",
    "Sigmoid": "sigmoid",
    "ELU": "elu",
}
#: layers that are the identity on a batch of vectors in eval mode
_PASS_THROUGH = ("Flatten", "Dropout")
#: the smallest ``nn.Softplus`` threshold accepted: above it PyTorch returns ``x``,
#: which differs from log(1 + e^x) by less than e^-20 ~ 2.1e-9
SOFTPLUS_MIN_THRESHOLD = 20.0


def _torch_layer_name(m: Any) -> str | None:
    """The torch.nn class name of ``m`` if it is exactly that class, else None."""
    import torch

    name = type(m).__name__
    return name if getattr(torch.nn, name, None) is type(m) else None


def _activation_name(m: Any, where: str) -> str:
    """FCNetwork's name for the activation module ``m``; ValueError for other options."""
    kind = type(m).__name__
    refused = None
    if kind == "GELU" and m.approximate != "none":
        refused = (f"GELU(approximate={m.approximate!r})", "'gelu' is the exact x Phi(x) of "
                   "nn.GELU() (approximate='none')")
    elif kind == "LeakyReLU" and float(m.negative_slope) != LEAKY_SLOPE:
        refused = (f"LeakyReLU(negative_slope={m.negative_slope!r})",
                   f"'leaky_relu' has the default slope {LEAKY_SLOPE}")
    elif kind == "ELU" and float(m.alpha) != 1.0:
        refused = (f"ELU(alpha={m.alpha!r})", "'elu' has the default alpha=1")
    elif kind == "Softplus" and float(m.beta) != 1.0:
        refused = (f"Softplus(beta={m.beta!r})", "'softplus' is log(1 + e^x), beta=1")
    elif kind == "Softplus" and float(m.threshold) < SOFTPLUS_MIN_THRESHOLD:
        refused = (f"Softplus(threshold={m.threshold!r})",
                   "'softplus' is log(1 + e^x) everywhere, which PyTorch's matches (within "
                   f"2.1e-9) only for threshold >= {SOFTPLUS_MIN_THRESHOLD:g}, the default")
    if refused is not None:
        raise ValueError(f"unsupported option {refused[0]} at {where}; FCNetwork's {refused[1]}")
    return ACTIVATION_MODULES[kind]


def _layers_in_order(module: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(name, leaf module)`` in the order the module applies them.

    An ``nn.Sequential`` is walked in its forward order, a module used twice
    appearing twice (``children()`` and ``modules()`` list a reused module once);
    nested Sequentials are flattened. Any other container's leaves come in
    registration order (its forward order cannot be read without running it).
    """
    import torch

    if isinstance(module, torch.nn.Sequential):
        out: list[tuple[str, Any]] = []
        # _modules, not named_children(): the latter lists a reused module once
        for name, child in module._modules.items():
            if child is not None:
                out += _layers_in_order(child, f"{prefix}.{name}" if prefix else name)
        return out
    if not list(module.children()):
        return [(prefix or type(module).__name__, module)]
    return [
        (name, m) for name, m in module.named_modules(prefix=prefix) if not list(m.children())
    ]


def from_torch(cls: Any, module_or_state_dict: Any, activation: str | None = None) -> Any:
    """A ``cls`` network from a torch module or state dict (see ``FCNetwork.from_torch``)."""
    if isinstance(module_or_state_dict, Mapping):
        return from_state_dict(cls, module_or_state_dict, activation or "relu")
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TypeError(
            "from_torch needs a torch.nn.Module (PyTorch is not installed) or a mapping "
            f"state dict, got {type(module_or_state_dict).__name__}"
        ) from exc
    if not isinstance(module_or_state_dict, torch.nn.Module):
        raise TypeError(
            "from_torch needs a torch.nn.Module or a state dict (mapping), got "
            f"{type(module_or_state_dict).__name__}"
        )
    weights, biases, acts = [], [], []
    seen: dict[int, str] = {}
    for name, m in _layers_in_order(module_or_state_dict):
        where = f"layer {name!r}"
        kind = _torch_layer_name(m)
        if kind == "Linear":
            if id(m) in seen:
                raise ValueError(
                    f"the Linear layer {seen[id(m)]!r} is applied twice (at {name!r}): shared "
                    "weights are not supported, FCNetwork's layers have parameters of their own"
                )
            seen[id(m)] = name
            weights.append(m.weight.detach().cpu().double().numpy())
            biases.append(None if m.bias is None else m.bias.detach().cpu().double().numpy())
        elif kind in _PASS_THROUGH:
            continue
        elif kind in ACTIVATION_MODULES:
            act = _activation_name(m, where)
            if not weights:
                raise ValueError(
                    f"the module starts with an activation ({kind} at {where}) before any Linear"
                )
            acts.append((len(weights), act))
        else:
            raise TypeError(
                f"unsupported layer {type(m).__name__} at {where} in the module; FCNetwork "
                "imports Linear layers separated by one activation, one of "
                + ", ".join(ACTIVATION_MODULES)
            )
    if not weights:
        raise ValueError("the module has no Linear layer")
    positions = [p for p, _ in acts]
    custom = not isinstance(module_or_state_dict, torch.nn.Sequential)
    if not acts and len(weights) > 1 and custom:
        # a custom module applying its activations in forward() (e.g. F.relu):
        # its Linear layers, in registration order, with the activation named here
        if activation is None:
            raise ValueError(
                "the module has Linear layers but no activation modules (activations "
                "applied in forward()?); pass activation=... to import it"
            )
        positions = list(range(1, len(weights)))
    if positions != list(range(1, len(weights))):
        hint = (" (a custom module's layers are read in registration order: an nn.Sequential "
                "is read in forward order)") if custom else ""
        raise ValueError(
            "the module must alternate Linear and activation layers (one activation "
            f"after every Linear but the last); found activations after Linear layers "
            f"{positions} of {len(weights)}{hint}"
        )
    names = {a for _, a in acts}
    if len(names) > 1:
        raise ValueError(f"the module mixes activations {sorted(names)}; FCNetwork has one")
    inferred = names.pop() if names else None
    net = cls(weights, biases, activation or inferred or "relu", 1.0, 1.0, "standard")
    if inferred is not None and net.activation != inferred:
        raise ValueError(
            f"activation={activation!r} disagrees with the module's {inferred!r} layers"
        )
    return net


def from_state_dict(cls: Any, sd: Mapping[str, Any], activation: str) -> Any:
    """A ``"standard"`` ``cls`` network from a state dict's ``.weight``/``.bias`` entries."""
    layers: dict[str, dict[str, Any]] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or "." not in key:
            raise ValueError(f"state dict key {key!r} is not of the form '<layer>.weight'")
        prefix, kind = key.rsplit(".", 1)
        if kind not in ("weight", "bias"):
            raise ValueError(
                f"state dict key {key!r}: only Linear layers ('.weight', '.bias') are supported"
            )
        if hasattr(value, "detach"):
            value = value.detach().cpu().double().numpy()
        layers.setdefault(prefix, {})[kind] = np.asarray(value)
    weights, biases = [], []
    for prefix, entry in layers.items():
        if "weight" not in entry:
            raise ValueError(f"state dict has a bias but no weight for layer {prefix!r}")
        weights.append(entry["weight"])
        biases.append(entry.get("bias"))
    if not weights:
        raise ValueError("the state dict is empty")
    try:
        return cls(weights, biases, activation, 1.0, 1.0, "standard")
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"the state dict's layers {list(layers)} do not form a network: {exc}"
        ) from exc
