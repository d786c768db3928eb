"""The layerwise engine of :class:`~kernelcomp._torch_ntk.TorchNTK` (``method="layerwise"``).

The per-sample gradient of a parametrised layer is a simple function of the
layer's input ``a`` and of the gradient ``delta = df/dz`` of the output with
respect to the layer's output ``z``: for ``nn.Linear`` it is ``delta a^T``, so

.. code-block:: text

    <delta(x) a(x)^T, delta(y) a(y)^T> = (delta(x) . delta(y)) (a(x) . a(y))

costs ``O(in + out)`` per pair of samples instead of ``O(in out)`` (the
*structured* product of Novak et al., 2022); for a layer applied at ``T``
positions (convolutions, a Linear layer on sequences) the sum over pairs of
positions ``sum_{p,q} (delta_p . delta'_q)(a_p . a'_q)``. Otherwise the
*explicit* per-sample gradient (for convolutions the im2col patches times
``delta``) is formed and contracted by one GEMM. Each layer takes the cheaper
of the two for its shape (:func:`choose_route`). Explicit float64
convolutions of one group and stride 1 run their forward pass and per-sample
weight gradients as GEMMs on shifted views of the padded input
(:func:`shift_eligible`, :func:`shifted_forward`), with no im2col copy.

One batched forward pass with forward hooks keeps every selected layer's
inputs and outputs; one backward pass per output (``K`` of them, or one for an
``output=k`` or the sum of the logits) gives the ``delta``. The per-sample
factors of a block of rows are then contracted by kernelcomp's bounded BLAS
helpers (:func:`kernelcomp._hadamard._hadamard_gram`). Parameters of modules
the engine does not know (custom modules, ``Conv3d``, weight-normalised
layers, parameters shared by several modules) take the per-sample Jacobian of
``torch.func`` (the ``"jacobian"`` route), for those parameters only.

PyTorch is imported by the functions of this module only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelcomp._hadamard import _hadamard_gram

#: routes a layer may take
ROUTES = ("structured", "explicit", "jacobian")
#: bytes of one pairwise scratch block of the positional (sum over position pairs) product
_PAIR_BYTES = 64 * 2**20
#: float32 convolutions with at least this many input channels per group take the
#: grouped ``convolution_backward`` for their per-sample weight gradients
_GROUPED_MIN_CHANNELS = 8
#: explicit-route float64 convolutions (one group, stride 1, zero padding) with at least
#: this many input channels run as shifted GEMMs (:func:`shifted_conv`)
_SHIFT_MIN_CHANNELS = 8
#: ... when the zero-padded grid has at most this many times the output positions
_SHIFT_MAX_GRID = 2.0
#: ... in these dtypes (float32 convolutions have oneDNN's kernels)
_SHIFT_DTYPES = ("float64",)
#: output blocks of at most this many entries are contracted with one BLAS thread
_ONE_THREAD_OUTPUT = 256 * 256
#: the structured product's per-pair cost is multiplied by this before the comparison
#: (a Hadamard pass and two GEMMs instead of one)
_STRUCTURED_OVERHEAD = 2.0
#: ... and the positional one's by this (batched products of T x T blocks)
_POSITIONAL_OVERHEAD = 4.0


@dataclass
class Layer:
    """One parametrised module the engine handles, with its route."""

    path: str  # module path ("" the root)
    module: Any
    kind: str  # "linear", "conv", "norm", "embedding"
    weight: bool  # the weight is selected
    bias: bool  # the bias is selected
    names: tuple[str, ...]  # selected parameter names
    n_params: int  # selected entries
    positions: int = 1  # positions per sample (summed over calls)
    calls: int = 1
    route: str = "explicit"
    costs: dict[str, float] = field(default_factory=dict)
    shift: bool = False  # forward pass and weight gradients as shifted GEMMs


@dataclass
class Factors:
    """Per-sample factors of the kernel for ``n`` rows (``Kc`` output channels).

    ``explicit``: ``(n, Kc, F)`` per-sample gradients (concatenated over layers);
    ``hadamard``: ``(D, A)`` with ``D`` of shape ``(n, Kc, e)`` and ``A`` of shape
    ``(n, f)``, the term ``(D D'^T) o (A A'^T)``; ``positional``: ``(D, A)`` with
    ``D`` of shape ``(n, T, Kc, e)`` and ``A`` of shape ``(n, T, f)`` (float) or
    ``(n, T)`` (integer indices: ``a_p . a'_q`` is then ``[i_p == i'_q]``).
    """

    n: int
    explicit: Any
    hadamard: list[tuple[Any, Any]]
    positional: list[tuple[Any, Any]]

    def take(self, start: int, stop: int) -> Factors:
        return Factors(
            stop - start,
            None if self.explicit is None else self.explicit[start:stop],
            [(d[start:stop], a[start:stop]) for d, a in self.hadamard],
            [(d[start:stop], a[start:stop]) for d, a in self.positional],
        )

    def nbytes(self) -> int:
        ts = [self.explicit] if self.explicit is not None else []
        for d, a in (*self.hadamard, *self.positional):
            ts += [d, a]
        return int(sum(t.numel() * t.element_size() for t in ts))


# ---------------------------------------------------------------------------
# which modules, which route
# ---------------------------------------------------------------------------
def _kind(m: Any, torch: Any) -> str | None:
    nn = torch.nn
    if type(m) is nn.Linear or isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.Conv1d | nn.Conv2d) and not isinstance(m, nn.modules.conv._ConvTransposeNd):
        return "conv"
    norms = [nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
             nn.modules.instancenorm._InstanceNorm]
    if hasattr(nn, "RMSNorm"):
        norms.append(nn.RMSNorm)
    if isinstance(m, tuple(norms)):
        return "norm"
    if isinstance(m, nn.Embedding) and m.max_norm is None:
        return "embedding"
    return None


def _channel_norm(m: Any, torch: Any) -> bool:
    """Whether a norm layer's affine parameters are per channel (dim 1) or trailing."""
    nn = torch.nn
    return isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm
                      | nn.modules.instancenorm._InstanceNorm)


def find_layers(
    module: Any, names: tuple[str, ...], torch: Any
) -> tuple[list[Layer], tuple[str, ...]]:
    """The engine's layers among the selected parameters, and the rest (fallback) names.

    A module is handled when its own parameters are exactly ``weight`` (and
    ``bias``) of a known kind and none of them is shared with another module.
    """
    selected = set(names)
    owners: dict[int, list[str]] = {}
    for n, p in module.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(n)
    layers: list[Layer] = []
    covered: set[str] = set()
    for path, m in module.named_modules():
        own = dict(m.named_parameters(recurse=False))
        full = {k: (f"{path}.{k}" if path else k) for k in own}
        mine = [full[k] for k in own if full[k] in selected]
        if not mine:
            continue
        kind = _kind(m, torch)
        if kind is None or set(own) - {"weight", "bias"}:
            continue
        if any(len(owners[id(p)]) > 1 for p in own.values()):
            continue  # shared (tied) parameters: the fallback sums their uses
        w = full.get("weight") in selected
        b = "bias" in full and full["bias"] in selected
        layers.append(Layer(path, m, kind, w, b, tuple(mine),
                            int(sum(own[k].numel() for k in own if full[k] in selected))))
        covered.update(mine)
    rest = tuple(n for n in names if n not in covered)
    return layers, rest


def choose_route(layer: Layer, k_out: int, force: str | None = None) -> str:
    """The route of one layer: the cheaper per pair of samples (or ``force`` where it applies).

    Costs are multiply-adds per pair of samples and output channel set of
    ``k_out`` outputs: explicit ``k_out * p`` (one GEMM over the per-sample
    gradients), structured ``T^2 (k_out * e + f)`` (times an overhead for the
    Hadamard pass), with ``T`` the positions, ``e`` the output width and ``f``
    the input width of the layer.
    """
    m = layer.module
    if layer.kind in ("norm",):
        layer.costs = {"explicit": float(k_out * layer.n_params)}
        return "explicit"
    e, f = _widths(layer)
    T = layer.positions
    structured = (T * T) * (k_out * e + f)
    structured *= _STRUCTURED_OVERHEAD if T == 1 else _POSITIONAL_OVERHEAD
    explicit = float(k_out * layer.n_params)
    if layer.kind == "embedding":
        explicit = float(k_out * m.weight.numel())
    layer.costs = {"explicit": explicit, "structured": float(structured)}
    if force in ("structured", "explicit"):
        return force
    return "structured" if structured < explicit else "explicit"


def _widths(layer: Layer) -> tuple[int, int]:
    """``(e, f)``: widths of ``delta`` and of the (bias-augmented) input per position and group."""
    m = layer.module
    if layer.kind == "linear":
        return m.out_features, (m.in_features if layer.weight else 0) + int(layer.bias)
    if layer.kind == "conv":
        g = m.groups
        kk = math.prod(m.kernel_size)
        f = (m.in_channels // g * kk if layer.weight else 0) + int(layer.bias)
        return m.out_channels // g, f
    if layer.kind == "embedding":
        return m.embedding_dim, 1
    return 0, 0


# ---------------------------------------------------------------------------
# per-layer factors
# ---------------------------------------------------------------------------
def _padded(m: Any, a: Any, torch: Any) -> Any:
    """A convolution's input with its padding applied (``F.pad``, the module's mode)."""
    pad = list(m._reversed_padding_repeated_twice)
    if not any(pad):
        return a
    mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
    return torch.nn.functional.pad(a, pad, mode=mode)


def _patches(m: Any, a: Any, torch: Any) -> Any:
    """im2col of a Conv1d/Conv2d input: ``(b, C * prod(kernel), L)`` (channel-major rows).

    Strided views (``Tensor.unfold``) copied once: ``F.unfold`` is several
    times slower on the CPU.
    """
    a = _padded(m, a, torch)
    b, C = a.shape[0], a.shape[1]
    nd = a.ndim - 2
    for i in range(nd):
        k, d, s = m.kernel_size[i], m.dilation[i], m.stride[i]
        a = a.unfold(2 + i, d * (k - 1) + 1, s)
        if d > 1:
            a = a[..., ::d]
    # (b, C, *out, *kernel) -> (b, C, *kernel, *out)
    perm = [0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd)]
    return a.permute(perm).reshape(b, C * math.prod(m.kernel_size), -1)


def _conv_weight_grads(m: Any, a: Any, d: Any, torch: Any) -> Any:
    """Per-sample weight gradients ``(b, Kc, weight.numel())`` of a convolution.

    ``a`` its input ``(b, C, *spatial)``, ``d`` the output gradients ``(Kc, b,
    O, *out)``. float32 with at least :data:`_GROUPED_MIN_CHANNELS` input
    channels per group: ``convolution_backward`` with the batch as groups (no
    patches formed; oneDNN's kernels); otherwise the patches times ``delta``,
    one batched GEMM over samples and groups (the grouped backward is many
    times slower for few channels and in float64).
    """
    Kc, b = d.shape[0], d.shape[1]
    g = m.groups
    O = m.out_channels
    if a.dtype == torch.float32 and a.shape[1] // g >= _GROUPED_MIN_CHANNELS:
        nd = a.ndim - 2
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            a = _padded(m, a, torch)
            padding = [0] * nd
        else:
            padding = list(m.padding)
        C = a.shape[1]
        x = a.reshape(1, b * C, *a.shape[2:])
        w = torch.empty((b * O, C // g, *m.kernel_size), dtype=a.dtype, device=a.device)
        out = []
        for k in range(Kc):
            go = d[k].reshape(1, b * O, *d.shape[3:])
            gw = torch.ops.aten.convolution_backward(
                go, x, w, None, list(m.stride), padding, list(m.dilation), False, [0] * nd,
                b * g, [False, True, False])[1]
            out.append(gw.reshape(b, -1))
        return torch.stack(out, 1)
    pt = _patches(m, a, torch)  # (b, C kk, L)
    L = pt.shape[2]
    pt = pt.reshape(b * g, pt.shape[1] // g, L)
    dd = d.reshape(Kc, b, g, O // g, L).permute(1, 2, 0, 3, 4).reshape(b * g, Kc * (O // g), L)
    gw = torch.bmm(dd, pt.transpose(1, 2))  # (b g, Kc O/g, C/g kk)
    gw = gw.reshape(b, g, Kc, O // g, -1).transpose(1, 2)
    return gw.reshape(b, Kc, -1)


# ---------------------------------------------------------------------------
# convolutions as shifted GEMMs (no im2col)
# ---------------------------------------------------------------------------
def shift_eligible(layer: Layer, dtype: Any, torch: Any) -> bool:
    """Whether a layer's convolution runs as shifted GEMMs (:func:`shifted_conv`).

    A float64 (:data:`_SHIFT_DTYPES`) explicit-route ``nn.Conv1d``/``nn.Conv2d``
    with one group, stride 1, zero padding equal on both sides, a selected
    weight and at least :data:`_SHIFT_MIN_CHANNELS` input channels. At run time
    (:func:`shifted_forward`) the padded grid must also be at most
    :data:`_SHIFT_MAX_GRID` times the output positions (the GEMMs run over the
    whole padded grid).

    Why: torch's float64 convolutions on the CPU copy im2col patches and run
    their GEMMs on them; one GEMM per kernel offset on shifted views of the
    padded input copies nothing, and the same padded input gives the
    per-sample weight gradients (:func:`shifted_weight_grads`).
    """
    m = layer.module
    if layer.kind != "conv" or layer.route != "explicit" or not layer.weight:
        return False
    if str(dtype).replace("torch.", "") not in _SHIFT_DTYPES:
        return False
    if type(m) not in (torch.nn.Conv1d, torch.nn.Conv2d) or m.groups != 1:
        return False
    if m.padding_mode != "zeros" or any(s != 1 for s in m.stride):
        return False
    if m.in_channels < _SHIFT_MIN_CHANNELS:
        return False
    if "forward" in vars(m):  # the user's own forward on this instance: it must run
        return False
    pads = list(m._reversed_padding_repeated_twice)
    return all(pads[2 * i] == pads[2 * i + 1] for i in range(len(pads) // 2))


def _shift_grid(m: Any, a: Any) -> tuple[list[int], list[int], list[int]]:
    """``(padded, out, offsets)``: the padded spatial shape, the output shape, the offsets.

    Offsets index the flattened padded grid, one per position of the kernel's
    outer dimensions (all but the last), in the weight's order.
    """
    nd = a.ndim - 2
    pads = list(m._reversed_padding_repeated_twice)
    lo = [pads[2 * (nd - 1 - i)] for i in range(nd)]
    padded = [int(a.shape[2 + i]) + 2 * lo[i] for i in range(nd)]
    out = [padded[i] - m.dilation[i] * (m.kernel_size[i] - 1) for i in range(nd)]
    stride = [math.prod(padded[i + 1:]) for i in range(nd)]
    offsets = [0]
    for i in range(nd - 1):
        step = m.dilation[i] * stride[i]
        offsets = [o + k * step for o in offsets for k in range(m.kernel_size[i])]
    return padded, out, offsets


def shift_input(m: Any, a: Any) -> tuple[Any, list[int], list[int], list[int]]:
    """The zero-padded input, channels last, flattened, its last kernel dimension unrolled.

    Returns ``(buf, padded, out, offsets)``: ``buf`` of shape
    ``(b * S + tail, k * C)`` holds in row ``q`` the ``k`` grid rows ``q,
    q + d, ..., q + (k - 1) d`` (``k`` and ``d`` the kernel size and dilation
    of the last dimension, ``S`` the padded grid's size); the ``tail`` rows
    keep every shifted view of ``b * S`` rows inside it. ``k`` times the
    padded input (im2col would copy it ``prod(kernel)`` times).
    """
    b, C = a.shape[0], a.shape[1]
    padded, out, offsets = _shift_grid(m, a)
    S = math.prod(padded)
    k, dl = m.kernel_size[-1], m.dilation[-1]
    rows = b * S + offsets[-1]
    grid_rows = rows + (k - 1) * dl
    flat = a.new_empty((grid_rows, C))
    nd = a.ndim - 2
    lo = [(padded[i] - a.shape[2 + i]) // 2 for i in range(nd)]
    grid = flat[: b * S].view(b, *padded, C)
    for i in range(nd):  # zero the borders only (the interior is written next)
        pre = (slice(None),) * (1 + i)
        grid[(*pre, slice(0, lo[i]))] = 0
        grid[(*pre, slice(lo[i] + a.shape[2 + i], None))] = 0
    flat[b * S :] = 0
    grid[(slice(None), *[slice(lo[i], lo[i] + a.shape[2 + i]) for i in range(nd)])] = (
        a.movedim(1, -1))
    if k == 1:
        return flat, padded, out, offsets
    buf = a.new_empty((rows, k, C))
    for v in range(k):
        buf[:, v] = flat[v * dl : v * dl + rows]
    return buf.view(rows, k * C), padded, out, offsets


def shifted_conv(m: Any, a: Any, buf: Any, padded: list[int], out: list[int],
                 offsets: list[int], torch: Any) -> Any:
    """The convolution ``m(a)`` as one GEMM per outer kernel offset over the padded grid.

    ``z[q] = sum_u buf[q + offset_u] W_u^T`` for every grid position ``q`` (those
    past the output's edge are computed and dropped; ``W_u`` the weights of
    the outer kernel position ``u``, last kernel dimension and channels
    together), then the bias; returned as a ``(b, O, *out)`` view of
    channels-last storage.
    """
    b, nd = a.shape[0], a.ndim - 2
    S = math.prod(padded)
    w = m.weight.detach()
    # (O, C, *kernel) -> (outer kernel positions, last kernel dim * C, O)
    wk = w.movedim(1, -1).reshape(w.shape[0], len(offsets), -1).permute(1, 2, 0)
    z = torch.mm(buf[: b * S], wk[0])
    for k in range(1, len(offsets)):
        o = offsets[k]
        z.addmm_(buf[o : o + b * S], wk[k])
    if m.bias is not None:
        z += m.bias.detach()
    keep = (slice(None), *[slice(0, out[i]) for i in range(nd)])
    return z.view(b, *padded, -1)[keep].movedim(-1, 1)


def shifted_weight_grads(m: Any, d: Any, buf: Any, padded: list[int],
                         offsets: list[int], torch: Any) -> Any:
    """Per-sample weight gradients ``(b, Kc, O * K * C)`` from the shifted input (kernel-major).

    ``d``: output gradients ``(Kc, b, O, *out)``; one batched GEMM per outer
    kernel offset, ``G_u = D (b, Kc O, L) @ buf_u (b, L, k C)`` over the grid
    rows ``L`` that hold output positions (zero ``D`` elsewhere). The entries are the
    weight gradient's in the order (O, kernel, C) instead of (O, C, kernel):
    the kernel, a sum over entries, does not depend on the order.
    """
    Kc, b, O = d.shape[0], d.shape[1], d.shape[2]
    nd = d.ndim - 3
    out = list(d.shape[3:])
    S = math.prod(padded)
    C = buf.shape[1]
    L = out[0] * math.prod(padded[1:])
    # D channels last (the layout of the gradients of the channels-last output)
    D = d.new_empty((b, out[0], *padded[1:], Kc, O))
    for i in range(1, nd):  # zero the grid positions past the output's edge only
        D[(slice(None),) * (1 + i) + (slice(out[i], None),)] = 0
    D[(slice(None), *[slice(0, out[i]) for i in range(nd)])] = d.permute(
        1, *range(3, d.ndim), 0, 2)
    D = D.view(b, L, Kc * O).transpose(1, 2)
    # (torch's bmm into a strided output slice falls back to a slow loop: stacked)
    G = torch.stack([torch.bmm(D, buf.as_strided((b, L, C), (S * C, C, 1), o * C))
                     for o in offsets], 2)  # (b, Kc O, outer K, k C)
    return G.reshape(b, Kc, -1)


@functools.cache
def _shifted_function(torch: Any) -> Any:
    """The autograd function of :func:`shifted_forward` (made once torch is imported)."""

    class ShiftedConv(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: Any, m: Any, store: list[Any]) -> Any:
            buf, padded, out, offsets = shift_input(m, a)
            store.append((buf, padded, offsets))
            ctx.m = m
            ctx.save_for_backward(a)
            return shifted_conv(m, a, buf, padded, out, offsets, torch)

        @staticmethod
        def backward(ctx: Any, gz: Any) -> tuple[Any, None, None]:
            (a,) = ctx.saved_tensors
            m = ctx.m
            nd = a.ndim - 2
            pads = list(m._reversed_padding_repeated_twice)
            padding = [pads[2 * (nd - 1 - i)] for i in range(nd)]
            gi = torch.ops.aten.convolution_backward(
                gz, a, m.weight.detach(), None, [1] * nd, padding, list(m.dilation), False,
                [0] * nd, 1, [True, False, False])[0]
            return gi, None, None

    return ShiftedConv


def shifted_forward(m: Any, store: list[Any], torch: Any, a: Any) -> Any:
    """A convolution's forward pass for the engine: shifted GEMMs, the input kept in ``store``.

    Installed as the module's ``forward`` during the engine's pass (layers with
    ``shift``); the gradient of the input is torch's. Where the padded grid
    exceeds :data:`_SHIFT_MAX_GRID` times the output positions (tiny images,
    wide padding) or the input is not floating point: the module's own
    forward, and ``None`` in ``store``.
    """
    if a.ndim == m.weight.ndim and a.is_floating_point() and a.dtype == m.weight.dtype:
        padded, out, _ = _shift_grid(m, a)
        if math.prod(padded) <= _SHIFT_MAX_GRID * math.prod(out):
            return _shifted_function(torch).apply(a, m, store)
    store.append(None)
    return type(m).forward(m, a)


def patch_elements(layer: Layer, dtype: Any, torch: Any) -> int:
    """Entries of the im2col patches one sample of a layer forms (0 if none)."""
    m = layer.module
    if layer.kind != "conv":
        return 0
    if layer.shift:  # the padded input, channels last (grid <= _SHIFT_MAX_GRID x), k + 1 times
        return int(_SHIFT_MAX_GRID * (m.kernel_size[-1] + 1) * m.in_channels * layer.positions)
    grouped = (dtype == torch.float32 and m.in_channels // m.groups >= _GROUPED_MIN_CHANNELS)
    if layer.route == "explicit" and grouped:
        return 0
    return int(m.in_channels * math.prod(m.kernel_size) * layer.positions)


def _normalised(m: Any, a: Any, torch: Any) -> Any:
    """The norm layer's output with unit weight and zero bias (the weight's per-entry factor)."""
    from torch.func import functional_call

    sub = {}
    if getattr(m, "weight", None) is not None:
        sub["weight"] = torch.ones_like(m.weight)
    if getattr(m, "bias", None) is not None:
        sub["bias"] = torch.zeros_like(m.bias)
    return functional_call(m, sub, (a,))


def layer_factors(layer: Layer, calls: list[tuple[Any, Any]], torch: Any,
                  out: Factors, shifted: list[Any] | None = None) -> list[Any]:
    """Add one layer's factors (its route) to ``out``; returns its explicit blocks ``(b, Kc, p)``.

    ``calls``: ``(a, delta)`` per call of the module in the forward pass, ``a``
    its input (detached) and ``delta`` of shape ``(Kc, *z.shape)``; ``shifted``:
    per call, the shifted input :func:`shifted_forward` kept (or None).
    """
    m = layer.module
    route = layer.route
    kind = layer.kind
    blocks: list[Any] = []
    if kind == "linear":
        As, Ds = [], []
        for a, d in calls:
            b = a.shape[0]
            Kc = d.shape[0]
            a3 = a.reshape(b, -1, a.shape[-1])  # (b, T, in)
            d4 = d.reshape(Kc, b, -1, d.shape[-1]).permute(1, 2, 0, 3)  # (b, T, Kc, out)
            As.append(a3)
            Ds.append(d4)
        a3 = torch.cat(As, 1) if len(As) > 1 else As[0]
        d4 = torch.cat(Ds, 1) if len(Ds) > 1 else Ds[0]
        b, T = a3.shape[0], a3.shape[1]
        if route == "structured":
            parts = ([a3] if layer.weight else []) + (
                [torch.ones((b, T, 1), dtype=a3.dtype, device=a3.device)] if layer.bias else [])
            A = torch.cat(parts, 2) if len(parts) > 1 else parts[0]
            if T == 1:
                out.hadamard.append((d4[:, 0], A[:, 0]))
            else:
                out.positional.append((d4, A))
            return blocks
        if layer.weight:
            blocks.append(torch.einsum("btko,bti->bkoi", d4, a3).reshape(b, d4.shape[2], -1))
        if layer.bias:
            blocks.append(d4.sum(1))
        return blocks
    if kind == "conv":
        g = m.groups
        G: list[Any] = []
        for c, (a, d) in enumerate(calls):
            Kc, b, O = d.shape[0], d.shape[1], d.shape[2]
            dl = d.reshape(Kc, b, g, O // g, -1)  # (Kc, b, g, O/g, L)
            if route == "structured":
                pt = _patches(m, a, torch) if layer.weight else None
                L = dl.shape[-1]
                for gi in range(g):
                    D = dl[:, :, gi].permute(1, 3, 0, 2)  # (b, L, Kc, O/g)
                    parts = []
                    if pt is not None:
                        rows = pt.shape[1] // g
                        parts.append(pt[:, gi * rows:(gi + 1) * rows].transpose(1, 2))
                    if layer.bias:
                        parts.append(torch.ones((b, L, 1), dtype=d.dtype, device=d.device))
                    A = torch.cat(parts, 2) if len(parts) > 1 else parts[0]
                    out.positional.append((D, A))
                continue
            cur = []
            sh = shifted[c] if shifted else None
            if layer.weight and sh is not None:
                cur.append(shifted_weight_grads(m, d, sh[0], sh[1], sh[2], torch))
            elif layer.weight:
                cur.append(_conv_weight_grads(m, a, d, torch))
            if layer.bias:
                cur.append(dl.sum(-1).reshape(Kc, b, O).transpose(0, 1))
            G = cur if not G else [x + y for x, y in zip(G, cur, strict=True)]
        return G
    if kind == "norm":
        G = []
        for a, d in calls:
            Kc, b = d.shape[0], d.shape[1]
            cur = []
            if _channel_norm(m, torch):
                dims = tuple(range(3, d.ndim))
                if layer.weight:
                    xh = _normalised(m, a, torch)
                    cur.append((d * xh).sum(dims).transpose(0, 1) if dims
                               else (d * xh).transpose(0, 1))
                if layer.bias:
                    cur.append((d.sum(dims) if dims else d).transpose(0, 1))
            else:
                nd = m.weight.ndim if m.weight is not None else m.bias.ndim
                lead = tuple(range(2, d.ndim - nd))
                if layer.weight:
                    xh = _normalised(m, a, torch)
                    s = (d * xh).sum(lead) if lead else d * xh
                    cur.append(s.reshape(Kc, b, -1).transpose(0, 1))
                if layer.bias:
                    s = d.sum(lead) if lead else d
                    cur.append(s.reshape(Kc, b, -1).transpose(0, 1))
            cur = [c.reshape(b, Kc, -1) for c in cur]
            G = cur if not G else [x + y for x, y in zip(G, cur, strict=True)]
        return G
    # embedding
    idxs, Ds = [], []
    for a, d in calls:
        Kc, b = d.shape[0], d.shape[1]
        idx = a.reshape(b, -1)
        dd = d.reshape(Kc, b, idx.shape[1], -1).permute(1, 2, 0, 3)  # (b, T, Kc, D)
        if m.padding_idx is not None:
            dd = dd * (idx != m.padding_idx)[:, :, None, None].to(dd.dtype)
        idxs.append(idx)
        Ds.append(dd)
    idx = torch.cat(idxs, 1) if len(idxs) > 1 else idxs[0]
    dd = torch.cat(Ds, 1) if len(Ds) > 1 else Ds[0]
    if route == "structured":
        out.positional.append((dd, idx))
        return blocks
    b, Kc = dd.shape[0], dd.shape[2]
    oh = torch.nn.functional.one_hot(idx, m.num_embeddings).to(dd.dtype)  # (b, T, V)
    return [torch.einsum("btv,btkd->bkvd", oh, dd).reshape(b, Kc, -1)]


# ---------------------------------------------------------------------------
# contraction
# ---------------------------------------------------------------------------
def positional_gram(dx: Any, ax: Any, dy: Any, ay: Any, torch: Any) -> Any:
    """``sum_{p,q} (D_p . D'_q)(A_p . A'_q)`` for all pairs: ``(n, m)`` (chunked pairs)."""
    n, T = dx.shape[0], dx.shape[1]
    m, S = dy.shape[0], dy.shape[1]
    dx2 = dx.reshape(n, T, -1)
    dy2 = dy.reshape(m, S, -1)
    out = torch.empty((n, m), dtype=dx.dtype, device=dx.device)
    item = dx.element_size()
    rows = max(1, _PAIR_BYTES // max(1, 2 * item * T * S * max(1, min(m, 64))))
    cols = max(1, min(m, 64))
    idx = not ax.is_floating_point()
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        for j0 in range(0, m, cols):
            j1 = min(m, j0 + cols)
            dd = torch.einsum("ipe,jqe->ijpq", dx2[i0:i1], dy2[j0:j1])
            if idx:
                aa = (ax[i0:i1, None, :, None] == ay[None, j0:j1, None, :]).to(dd.dtype)
            else:
                aa = torch.einsum("ipf,jqf->ijpq", ax[i0:i1], ay[j0:j1])
            out[i0:i1, j0:j1] = (dd * aa).sum((2, 3))
    return out


def contract(fx: Factors, fy: Factors, out: np.ndarray, symmetric: bool, torch: Any) -> None:
    """``out = sum over outputs and layers`` of the Gram block of ``fx`` against ``fy``.

    ``out`` (C-contiguous or not) is written whole (exactly symmetric when
    ``symmetric``); the products go through kernelcomp's bounded BLAS helpers.
    """
    dt = out.dtype

    def host(t: Any) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy().reshape(t.shape[0], -1), dtype=dt)

    xt: list[tuple[np.ndarray | None, np.ndarray]] = []
    yt: list[tuple[np.ndarray | None, np.ndarray]] = []
    if fx.explicit is not None and fx.explicit.shape[-1]:
        xt.append((None, host(fx.explicit)))
        yt.append((None, xt[-1][1] if symmetric else host(fy.explicit)))
    for (dx, ax), (dy, ay) in zip(fx.hadamard, fy.hadamard, strict=True):
        hx = (host(dx), host(ax))
        xt.append(hx)
        yt.append(hx if symmetric else (host(dy), host(ay)))
    if xt:
        if out.shape[0] * out.shape[1] <= _ONE_THREAD_OUTPUT:
            # small blocks: BLAS threads cost more than they give (and contend with
            # torch's OpenMP threads, still spinning after the per-sample pass)
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                _hadamard_gram(xt, yt, out, symmetric)
        else:
            _hadamard_gram(xt, yt, out, symmetric)
    else:
        out[...] = 0
    for (dx, ax), (dy, ay) in zip(fx.positional, fy.positional, strict=True):
        pg = positional_gram(dx, ax, dy, ay, torch)
        if symmetric:  # exactly symmetric, as the rest
            pg = 0.5 * (pg + pg.T)
        out += pg.cpu().numpy().astype(dt, copy=False)


def diagonal(f: Factors, torch: Any) -> Any:
    """The diagonal ``sum`` of the Gram of the factors with themselves, float64 ``(n,)``."""
    acc = torch.zeros(f.n, dtype=torch.float64, device=_device_of(f))
    if f.explicit is not None:
        e = f.explicit.reshape(f.n, -1)
        acc += torch.einsum("ip,ip->i", e, e).double()
    for d, a in f.hadamard:
        d2 = d.reshape(f.n, -1)
        acc += (torch.einsum("ip,ip->i", d2, d2) * torch.einsum("ip,ip->i", a, a)).double()
    for d, a in f.positional:
        for i in range(f.n):
            acc[i] += positional_gram(d[i:i + 1], a[i:i + 1], d[i:i + 1], a[i:i + 1],
                                      torch)[0, 0].double()
    return acc


def _device_of(f: Factors) -> Any:
    for t in [f.explicit, *(d for d, _ in f.hadamard), *(d for d, _ in f.positional)]:
        if t is not None:
            return t.device
    return "cpu"


def per_output_block(fx: Factors, fy: Factors, torch: Any) -> Any:
    """``Theta_kl(x_i, y_j)``: ``(n, m, Kc, Kc)`` (small blocks; torch products)."""
    n, m = fx.n, fy.n
    out = None

    def add(t: Any) -> None:
        nonlocal out
        out = t if out is None else out + t

    if fx.explicit is not None:
        Kc = fx.explicit.shape[1]
        g = fx.explicit.reshape(n * Kc, -1) @ fy.explicit.reshape(m * Kc, -1).T
        add(g.reshape(n, Kc, m, Kc).permute(0, 2, 1, 3))
    for (dx, ax), (dy, ay) in zip(fx.hadamard, fy.hadamard, strict=True):
        Kc = dx.shape[1]
        dd = (dx.reshape(n * Kc, -1) @ dy.reshape(m * Kc, -1).T).reshape(n, Kc, m, Kc)
        add(dd.permute(0, 2, 1, 3) * (ax @ ay.T)[:, :, None, None])
    for (dx, ax), (dy, ay) in zip(fx.positional, fy.positional, strict=True):
        Kc = dx.shape[2]
        dd = torch.einsum("ipke,jqle->ijklpq", dx, dy)
        if ax.is_floating_point():
            aa = torch.einsum("ipf,jqf->ijpq", ax, ay)
        else:
            aa = (ax[:, None, :, None] == ay[None, :, None, :]).to(dd.dtype)
        add((dd * aa[:, :, None, None]).sum((4, 5)))
    assert out is not None
    return out
