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

__all__ = ["from_state_dict", "from_torch"]


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
    nn = torch.nn
    known = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Identity: "linear"}
    weights, biases, acts = [], [], []
    leaves = [m for m in module_or_state_dict.modules() if not list(m.children())]
    for m in leaves:
        if isinstance(m, nn.Linear):
            weights.append(m.weight.detach().cpu().double().numpy())
            biases.append(None if m.bias is None else m.bias.detach().cpu().double().numpy())
        elif isinstance(m, nn.Flatten | nn.Dropout):
            continue
        elif type(m) in known:
            if not weights:
                raise ValueError("the module starts with an activation before any Linear")
            acts.append((len(weights), known[type(m)]))
        else:
            raise TypeError(
                f"unsupported layer {type(m).__name__} in the module; FCNetwork imports "
                "Linear layers separated by ReLU, Tanh or Identity"
            )
    if not weights:
        raise ValueError("the module has no Linear layer")
    positions = [p for p, _ in acts]
    custom = not isinstance(module_or_state_dict, nn.Sequential)
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
        raise ValueError(
            "the module must alternate Linear and activation layers (one activation "
            f"after every Linear but the last); found activations after Linear layers "
            f"{positions} of {len(weights)}"
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
