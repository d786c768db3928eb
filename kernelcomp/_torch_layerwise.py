"""The layerwise route of :class:`~kernelcomp._torch_ntk.TorchNTK` (``method="layerwise"``).

Its setup, the per-sample factors and their contraction; a mixin of the class (it reads
the kernel's attributes). The per-layer algebra is in :mod:`kernelcomp._torch_layers`.

PyTorch is imported inside the methods of this module only.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from kernelcomp._parallel import add_ticks
from kernelcomp._torch_support import _import_torch, _positions, _Prepared


class _LayerwiseRoute:
    """The ``layerwise`` route of :class:`~kernelcomp._torch_ntk.TorchNTK`."""

    def _setup_layerwise(self, torch: Any, probe: Any) -> None:
        """Find the engine's layers, their positions and routes; check batch independence."""
        from kernelcomp import _torch_layers as tl

        eager = self._eager
        for m in eager.modules():  # in-place activations would overwrite saved tensors
            if isinstance(getattr(m, "inplace", None), bool):
                m.inplace = False
        layers, rest = tl.find_layers(eager, self._names, torch)
        if self._forced == "jacobian":
            layers, rest = [], self._names
        self._layers = layers
        self._fallback = rest
        # samples must not interact (BatchNorm without running statistics in eval mode)
        gen = torch.Generator(device="cpu").manual_seed(0)
        x3 = torch.randn((3, *self._input_shape), generator=gen, dtype=self._torch_dtype)
        x3 = x3.to(self._device)
        with torch.no_grad():
            try:
                y3 = eager(x3).reshape(3, -1)
                y1 = torch.cat([eager(x3[i : i + 1]).reshape(1, -1) for i in range(3)])
                independent = bool(torch.allclose(y3, y1, rtol=1e-4, atol=1e-5 * (
                    1 + float(y1.abs().max()))))
            except Exception:  # integer inputs (embeddings) and such: trust the module
                independent = True
        if not independent:
            self._why = ("the samples of a batch interact (e.g. BatchNorm without running "
                         "statistics): every parameter takes the per-sample Jacobian")
            self._layers, self._fallback = [], self._names
        # positions and calls per layer on the probe sample, then the routes
        f = self._factors_batch(probe, count=True)
        kc = self._k()
        for layer in self._layers:
            layer.route = tl.choose_route(layer, kc, None if self._forced == "auto"
                                          else self._forced)
            layer.shift = tl.shift_eligible(layer, self._torch_dtype, torch)
        f = self._factors_batch(probe)
        self._factor_row_bytes = max(1, f.nbytes())
        item = self._dtype.itemsize
        patches = sum(tl.patch_elements(layer, self._torch_dtype, torch)
                      for layer in self._layers)
        fb = sum(int(dict(self._eager.named_parameters())[n].numel()) for n in self._fallback)
        self._work_row_bytes = max(1, item * ((kc + 3) * self._activations + 2 * patches
                                              + kc * fb) + 2 * self._factor_row_bytes)
        log = logging.getLogger("kernelcomp")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("TorchNTK layerwise engine:\n%s", self.describe())

    def _factors_batch(self, x: Any, count: bool = False, clone: bool | None = None) -> Any:
        """The engine's per-sample factors of the rows ``x`` (one forward, Kc backward passes).

        ``count=True`` records each layer's positions and calls instead.
        ``clone``: copy the layers' inputs and outputs in the hooks (default:
        when the module was seen to modify them in place, e.g. ``out += x``);
        without copies, an in-place change is detected (version counters) and
        the batch computed again with them.
        """
        from kernelcomp import _torch_layers as tl

        torch = _import_torch()
        b = x.shape[0]
        copies = self._clone[0] if clone is None else clone
        records: dict[int, list[tuple[Any, Any, int, int]]] = {id(L): [] for L in self._layers}

        def hook_for(layer: Any) -> Any:
            def hook(_m: Any, inp: Any, out: Any) -> Any:
                a = inp[0].detach()
                if copies:
                    a = a.clone()
                records[id(layer)].append((a, out, a._version, out._version))
                # with copies, later in-place operations change the copy, not ``out``
                return out.clone() if copies else None

            return hook

        handles = [L.module.register_forward_hook(hook_for(L)) for L in self._layers]
        # convolutions as shifted GEMMs: their forward replaced (an instance attribute
        # over the class's method) for this pass only, removed in the finally below
        shifted: dict[int, list[Any]] = {id(L): [] for L in self._layers if L.shift}
        factors = tl.Factors(b, None, [], [])
        blocks: list[Any] = []
        try:
            for L in self._layers:
                if L.shift:
                    L.module.forward = functools.partial(tl.shifted_forward, L.module,
                                                         shifted[id(L)], torch)
            with torch.enable_grad():
                y = self._select(self._eager(x).reshape(b, -1)) if self._layers else None
        finally:
            for hd in handles:
                hd.remove()
            for L in self._layers:
                if L.shift:
                    vars(L.module).pop("forward", None)
        if self._layers:
            changed = [L.path for L in self._layers if any(
                a._version != va or z._version != vz for a, z, va, vz in records[id(L)])]
            if changed:
                if copies:  # pragma: no cover - the copies are never changed in place
                    raise RuntimeError(f"layers {changed} changed in place despite copies")
                del records, y
                self._clone[0] = True  # from now on (a flag, not the kernel's identity)
                return self._factors_batch(x, count, clone=True)
            for L in self._layers:
                recs = records[id(L)]
                if count:
                    L.calls = len(recs)
                    L.positions = max(1, sum(_positions(L, a, z) for a, z, _, _ in recs))
            if count:
                return None
            zs = [z for L in self._layers for _, z, _, _ in records[id(L)]]
            kc = y.shape[1]
            if kc == 1:
                grads = torch.autograd.grad(y.sum(), zs, allow_unused=True)
                grads = [None if g is None else g.unsqueeze(0) for g in grads]
            else:
                grads = self._batched_grads(torch, y, zs)
            it = iter(grads)
            for L in self._layers:
                calls = []
                for a, z, _, _ in records[id(L)]:
                    g = next(it)
                    if g is None:
                        g = torch.zeros((kc, *z.shape), dtype=z.dtype, device=z.device)
                    calls.append((a, g.detach()))
                if calls:
                    blocks.extend(tl.layer_factors(L, calls, torch, factors,
                                                   shifted.get(id(L))))
                elif L.route == "structured":  # never called: zero factors
                    blocks.append(torch.zeros((b, kc, 1), dtype=self._torch_dtype,
                                              device=self._device))
                else:
                    blocks.append(torch.zeros((b, kc, L.n_params), dtype=self._torch_dtype,
                                              device=self._device))
            del records, zs, grads, y
        elif count:
            return None
        if self._fallback:
            kc = self._k()
            jac = self._jacobian(x, 0, kc, self._fallback)
            blocks.extend(j.reshape(b, kc, -1) for j in jac)
        if blocks:
            factors.explicit = torch.cat(blocks, 2) if len(blocks) > 1 else blocks[0]
        return factors

    @staticmethod
    def _batched_grads(torch: Any, y: Any, zs: list[Any]) -> list[Any]:
        """``d y[:, k] / d z`` for every output ``k``: ``(Kc, *z.shape)`` (None: unused)."""
        kc = y.shape[1]
        eye = torch.eye(kc, dtype=y.dtype, device=y.device)
        go = eye[:, None, :].expand(kc, y.shape[0], kc)
        try:
            return list(torch.autograd.grad(y, zs, grad_outputs=go, is_grads_batched=True,
                                            allow_unused=True, retain_graph=True))
        except Exception:  # an operation without a batching rule: one pass per output
            per = [torch.autograd.grad(y[:, k].sum(), zs, retain_graph=True, allow_unused=True)
                   for k in range(kc)]
            out = []
            for i, z in enumerate(zs):
                gs = [p[i] for p in per]
                out.append(None if all(g is None for g in gs) else torch.stack(
                    [torch.zeros_like(z) if g is None else g for g in gs]))
            return out

    def _factors(self, x: Any) -> Any:
        """:meth:`_factors_batch` of all rows ``x``, in batches within the work budget."""
        from kernelcomp import _torch_layers as tl

        torch = _import_torch()
        n = x.shape[0]
        bs = int(max(1, min(n, (self._budget() // 2) // self._work_row_bytes)))
        first = self._factors_batch(x[:bs])
        if bs >= n:
            return first

        def alloc(t: Any) -> Any:
            full = torch.empty((n, *t.shape[1:]), dtype=t.dtype, device=t.device)
            full[:bs] = t
            return full

        out = tl.Factors(
            n,
            None if first.explicit is None else alloc(first.explicit),
            [(alloc(d), alloc(a)) for d, a in first.hadamard],
            [(alloc(d), alloc(a)) for d, a in first.positional],
        )
        del first
        for i0 in range(bs, n, bs):  # the other batches, written in place
            i1 = min(n, i0 + bs)
            part = self._factors_batch(x[i0:i1])
            if part.explicit is not None:
                out.explicit[i0:i1] = part.explicit
            for (d, a), (pd, pa) in zip(out.hadamard + out.positional,
                                        part.hadamard + part.positional, strict=True):
                d[i0:i1] = pd
                a[i0:i1] = pa
            del part
        return out

    def _factor_rows(self) -> int:
        """Rows whose factors fit half of the memory budget."""
        return int(max(1, (self._budget() // 2) // self._factor_row_bytes))

    def _fill_layerwise(self, px: _Prepared, py: _Prepared, out: np.ndarray,
                        symmetric: bool) -> None:
        from kernelcomp import _torch_layers as tl

        torch = _import_torch()
        n, m = px.n, py.n
        fx = px.factors
        fy = fx if symmetric else py.factors
        if fx is None and n <= self._factor_rows() // (1 if symmetric else 2):
            fx = self._factors(px.x)
            if symmetric:
                fy = fx
        if fy is None and m <= self._factor_rows() // 2:
            fy = self._factors(py.x)
        if fx is not None and fy is not None:
            tl.contract(fx, fy, out, symmetric, torch)
            return
        # rows do not fit: outer blocks (3/4 of the factor budget) held, inner ones in turn
        rows = self._factor_rows()
        outer = int(max(1, min(n, 3 * rows // 4)))
        inner = int(max(1, rows // 4))
        total = n * (n + 1) // 2 if symmetric else n * m  # progress: entries
        for i0 in range(0, n, outer):
            i1 = min(n, i0 + outer)
            fi = fx.take(i0, i1) if fx is not None else self._factors(px.x[i0:i1])
            if symmetric:
                tl.contract(fi, fi, out[i0:i1, i0:i1], True, torch)
                add_ticks((i1 - i0) * (i1 - i0 + 1) // 2, total)
                j_start = i1
            else:
                j_start = 0
            for j0 in range(j_start, m, inner):
                j1 = min(m, j0 + inner)
                fj = fy.take(j0, j1) if fy is not None else self._factors(py.x[j0:j1])
                tl.contract(fi, fj, out[i0:i1, j0:j1], False, torch)
                if symmetric:
                    out[j0:j1, i0:i1] = out[i0:i1, j0:j1].T
                del fj
                add_ticks((i1 - i0) * (j1 - j0), total)
            del fi
