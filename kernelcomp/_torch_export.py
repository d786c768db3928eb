"""``torch.export`` programs for :class:`~kernelcomp._torch_ntk.TorchNTK` and the checkpoint loader.

An exported program (``torch.export.export``, ``torch.export.save``/``load``,
``.pt2`` files) is differentiated through its module, ``program.module()``: a
``torch.fx.GraphModule`` whose graph calls ATen operators on parameters held by
plain containers. The layerwise engine recognises layers by their ``torch.nn``
class, so :func:`eager_layers` gives a copy of that module in which every
``aten.linear``, ``aten.conv1d`` and ``aten.conv2d`` call (numeric or
``"same"``/``"valid"`` padding; other padding modes are ``aten.pad`` calls
before it), ``aten.layer_norm``, ``aten.group_norm`` and ``aten.batch_norm``
(running statistics) on a container's own ``weight`` (and ``bias``, running
statistics) is a call of the matching ``torch.nn`` layer holding the same
tensors; the rest of the graph is unchanged. Other parameters (tied weights,
anything else) take the per-sample Jacobian.

PyTorch is imported by the callers; nothing here imports it.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

__all__ = ["check_dynamic_batch", "eager_layers", "exported_module", "is_exported_program",
           "traced_input_shape"]

#: how to export a module with a batch dimension of any size
_DYNAMIC_HINT = ("torch.export.export(model, (x,), dynamic_shapes=({0: "
                 "torch.export.Dim('batch')},))")


def is_exported_program(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.export.ExportedProgram`` (without importing torch)."""
    return any(c.__name__ == "ExportedProgram" and c.__module__.startswith("torch.export")
               for c in type(obj).__mro__)


def traced_input_shape(module: Any, torch: Any) -> tuple[Any, ...] | None:
    """The shape of the first input a ``torch.fx.GraphModule`` was traced with, or None.

    Exported modules keep it (``meta["val"]`` of the first placeholder): its
    first entry is an int when the batch size was fixed, a symbol when dynamic.
    Graph modules traced without shapes (``torch.fx.symbolic_trace``) give None.
    """
    if not isinstance(module, torch.fx.GraphModule):
        return None
    for node in module.graph.nodes:
        if node.op == "placeholder":
            shape = getattr(node.meta.get("val"), "shape", None)
            return None if shape is None else tuple(shape)
    return None


def check_dynamic_batch(module: Any, torch: Any, name: str = "the exported module") -> None:
    """Raise ValueError if ``module`` was exported with a fixed batch size.

    kernelcomp calls the module on batches of any size (one sample under
    ``torch.func.vmap``, row blocks elsewhere).
    """
    shape = traced_input_shape(module, torch)
    if shape and isinstance(shape[0], int):
        raise ValueError(f"{name} was exported with a fixed batch size {shape[0]}; export it "
                         f"with a dynamic batch dimension: {_DYNAMIC_HINT}")


def exported_module(program: Any, torch: Any, name: str = "the exported program") -> Any:
    """The ``torch.nn.Module`` of a ``torch.export`` program (``program.module()``).

    Its parameters are the program's; the program was traced in one mode
    (train or eval), which the module keeps.

    Raises
    ------
    ValueError
        If the program was exported with a fixed batch size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pytree deprecations inside torch
        module = program.module()
    check_dynamic_batch(module, torch, name)
    return module


def _arguments(node: Any) -> dict[str, Any]:
    """The arguments of an ATen call node by name, defaults filled in from its schema."""
    out: dict[str, Any] = {}
    for i, a in enumerate(node.target._schema.arguments):
        if i < len(node.args):
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
    return out


def _builders(torch: Any) -> dict[Any, Any]:
    """ATen call -> ``make(args, weight, has_bias)``: a ``torch.nn`` layer (meta device) or None."""
    nn, aten = torch.nn, torch.ops.aten

    def conv(cls: Any) -> Any:
        def make(a: dict[str, Any], w: Any, bias: bool) -> Any:
            groups, padding = int(a["groups"]), a["padding"]
            return cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]),
                       stride=tuple(a["stride"]),
                       padding=padding if isinstance(padding, str) else tuple(padding),
                       dilation=tuple(a["dilation"]), groups=groups, bias=bias, device="meta")
        return make

    def linear(a: dict[str, Any], w: Any, bias: bool) -> Any:
        return nn.Linear(w.shape[1], w.shape[0], bias=bias, device="meta") if w.ndim == 2 else None

    def layer_norm(a: dict[str, Any], w: Any, bias: bool) -> Any:
        return nn.LayerNorm(tuple(a["normalized_shape"]), eps=float(a["eps"]), bias=bias,
                            device="meta")

    def group_norm(a: dict[str, Any], w: Any, bias: bool) -> Any:
        return (nn.GroupNorm(int(a["num_groups"]), w.shape[0], eps=float(a["eps"]),
                             device="meta") if bias else None)

    def batch_norm(a: dict[str, Any], w: Any, bias: bool) -> Any:
        ndim = getattr(getattr(a["input"], "meta", {}).get("val"), "ndim", None)
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
        if a["training"] or not bias or ndim not in cls:
            return None  # batch statistics: the samples interact (the engine's check says so)
        return cls[ndim](w.shape[0], eps=float(a["eps"]), momentum=a["momentum"],
                         device="meta")

    return {
        aten.linear.default: linear,
        aten.conv1d.default: conv(nn.Conv1d), aten.conv2d.default: conv(nn.Conv2d),
        aten.conv1d.padding: conv(nn.Conv1d), aten.conv2d.padding: conv(nn.Conv2d),
        aten.layer_norm.default: layer_norm,
        aten.group_norm.default: group_norm,
        aten.batch_norm.default: batch_norm,
    }


def _own_attr(node: Any, owner: str | None, torch: Any) -> str | None:
    """The attribute name of a ``get_attr`` node used by one call only, on ``owner``."""
    if not (isinstance(node, torch.fx.Node) and node.op == "get_attr" and len(node.users) == 1):
        return None
    path, _, attr = str(node.target).rpartition(".")
    return attr if path and (owner is None or path == owner) else None


def _layer(node: Any, gm: Any, builders: dict[Any, Any], torch: Any) -> tuple[str, Any] | None:
    """``(owner path, torch.nn layer)`` replacing one ATen layer call, or None.

    The call's parameters (and a BatchNorm's running statistics) must be all the
    tensors of one container, each read by this call alone.
    """
    make = builders.get(node.target) if node.op == "call_function" else None
    if make is None:
        return None
    args = _arguments(node)
    w = args.get("weight")
    if _own_attr(w, None, torch) != "weight":
        return None
    owner = str(w.target).rpartition(".")[0]
    tensors = {"weight": w}
    for name in ("bias", "running_mean", "running_var"):
        if args.get(name) is not None:
            if _own_attr(args[name], owner, torch) != name:
                return None
            tensors[name] = args[name]
    try:
        m = gm.get_submodule(owner)
    except AttributeError:
        return None
    own = dict(m.named_parameters(recurse=False))
    bufs = {k for k, _ in m.named_buffers(recurse=False)} - {"num_batches_tracked"}
    if list(m.children()) or set(own) | bufs != set(tensors) or bufs - {"running_mean",
                                                                         "running_var"}:
        return None
    # one graph read of each tensor: tied weights stay in the graph (the fallback sums them)
    reads = sum(1 for n in gm.graph.nodes if n.op == "get_attr"
                and str(n.target) in {f"{owner}.{k}" for k in tensors})
    if reads != len(tensors):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # meta-device construction
        layer = make(args, own["weight"], "bias" in tensors)
    if layer is None or set(dict(layer.named_parameters())) != set(own):
        return None
    for k in own:  # the container's parameters themselves
        setattr(layer, k, own[k])
    for k in bufs:
        setattr(layer, k, getattr(m, k))
    if hasattr(m, "num_batches_tracked") and hasattr(layer, "num_batches_tracked"):
        layer.num_batches_tracked = m.num_batches_tracked
    return owner, layer.train(False)


def eager_layers(module: Any, torch: Any) -> tuple[Any, int]:
    """A copy of an exported module whose layer calls are ``torch.nn`` layers.

    Returns
    -------
    (module, int)
        The copy and the number of calls replaced; ``(module, 0)`` (the module
        itself) when there is none. The caller checks that the copy computes
        the same function.
    """
    if not isinstance(module, torch.fx.GraphModule):
        return module, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # copying exported modules
        gm = copy.deepcopy(module)
    graph, n, builders = gm.graph, 0, _builders(torch)
    for node in list(graph.nodes):
        found = _layer(node, gm, builders, torch)
        if found is None:
            continue
        owner, layer = found
        gm.set_submodule(owner, layer)
        x = _arguments(node)["input"]
        with graph.inserting_before(node):
            call = graph.call_module(owner, (x,))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        getters = [a for a in node.all_input_nodes if a.op == "get_attr"]
        graph.erase_node(node)
        for g in getters:
            if not g.users:
                graph.erase_node(g)
        n += 1
    if n == 0:
        return module, 0
    graph.lint()
    gm.recompile()
    return gm, n
