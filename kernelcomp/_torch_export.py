"""``torch.export`` programs for :class:`~kernelcomp._torch_ntk.TorchNTK` and the checkpoint loader.

An exported program (``torch.export.export``, ``torch.export.save``/``load``,
``.pt2`` files) is differentiated through its module, ``program.module()``: a
``torch.fx.GraphModule`` whose graph calls ATen operators on parameters held by
plain containers. The layerwise engine recognises layers by their ``torch.nn``
class, so :func:`eager_layers` gives a copy of that module in which every
``aten.linear``, ``aten.conv1d`` and ``aten.conv2d`` call (numeric or
``"same"``/``"valid"`` padding; other padding modes are ``aten.pad`` calls
before it) on a container's own ``weight`` (and ``bias``) is a call of the
matching ``torch.nn`` layer holding the same parameters; the rest of the graph
is unchanged. Other parameters (normalisation layers, anything else) take the
per-sample Jacobian.

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


def _layer(node: Any, gm: Any, torch: Any) -> tuple[str, Any] | None:
    """``(owner path, torch.nn layer)`` replacing one ATen linear/conv call, or None."""
    nn, aten = torch.nn, torch.ops.aten
    convs = {aten.conv1d.default: nn.Conv1d, aten.conv2d.default: nn.Conv2d,
             aten.conv1d.padding: nn.Conv1d, aten.conv2d.padding: nn.Conv2d}  # "same"/"valid"
    if node.op != "call_function" or (node.target is not aten.linear.default
                                      and node.target not in convs):
        return None
    args = _arguments(node)
    w, b = args.get("weight"), args.get("bias")
    if not (isinstance(w, torch.fx.Node) and w.op == "get_attr" and len(w.users) == 1):
        return None
    owner, _, attr = str(w.target).rpartition(".")
    if attr != "weight" or not owner:
        return None
    if b is not None and not (isinstance(b, torch.fx.Node) and b.op == "get_attr"
                              and b.target == f"{owner}.bias" and len(b.users) == 1):
        return None
    try:
        m = gm.get_submodule(owner)
    except AttributeError:
        return None
    own = dict(m.named_parameters(recurse=False))
    if (list(m.children()) or list(m.buffers(recurse=False))
            or set(own) != ({"weight", "bias"} if b is not None else {"weight"})):
        return None
    # one graph use of each parameter: tied weights stay in the graph (the fallback sums them)
    uses = sum(1 for n in gm.graph.nodes if n.op == "get_attr"
               and str(n.target) in (f"{owner}.weight", f"{owner}.bias"))
    if uses != len(own):
        return None
    weight = own["weight"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # meta-device construction
        if node.target is aten.linear.default:
            if weight.ndim != 2:
                return None
            layer = nn.Linear(weight.shape[1], weight.shape[0], bias=b is not None,
                              device="meta")
        else:
            groups, padding = int(args["groups"]), args["padding"]
            layer = convs[node.target](
                weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                stride=tuple(args["stride"]),
                padding=padding if isinstance(padding, str) else tuple(padding),
                dilation=tuple(args["dilation"]), groups=groups, bias=b is not None,
                device="meta")
    layer.weight = weight  # the container's parameters themselves
    if b is not None:
        layer.bias = own["bias"]
    return owner, layer


def eager_layers(module: Any, torch: Any) -> tuple[Any, int]:
    """A copy of an exported module whose linear/conv calls are ``torch.nn`` layers.

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
    graph, n = gm.graph, 0
    for node in list(graph.nodes):
        found = _layer(node, gm, torch)
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
