"""The autograd routes of :class:`~kernelcomp._torch_ntk.TorchNTK`.

The ``method="jacobian"`` and ``method="jvp"`` routes: per-parameter Jacobian blocks,
their contraction, and the forward-mode products; a mixin of the class (it reads the
kernel's attributes).

PyTorch is imported inside the methods of this module only.
"""

from __future__ import annotations

from typing import Any

from kernelcomp._parallel import add_ticks
from kernelcomp._torch_support import _import_torch, _Prepared


class _AutogradRoutes:
    """The ``jacobian`` and ``jvp`` routes of :class:`~kernelcomp._torch_ntk.TorchNTK`."""

    def _jacobian(self, x: Any, lo: int, hi: int,
                  names: tuple[str, ...] | None = None) -> list[Any]:
        """Per-parameter Jacobian blocks of rows ``x`` and outputs ``lo:hi``.

        Each is flattened to ``(b, (hi - lo) * size)``; ``names`` (default the
        selection) the parameters.
        """
        if self._scripted and self._eager is self._module:
            return self._jacobian_autograd(x, lo, hi)
        from torch.func import jacrev, vmap

        def f(p: dict[str, Any], xi: Any) -> Any:
            return self._forward_one(p, xi, lo, hi)

        names = self._names if names is None else names
        jac = vmap(jacrev(f), in_dims=(None, 0))(self._primals(names), x)
        b = x.shape[0]
        return [jac[n].reshape(b, -1) for n in names]

    def _jacobian_autograd(self, x: Any, lo: int, hi: int) -> list[Any]:
        """:meth:`_jacobian` of a TorchScript module (no torch.func).

        One forward pass per row and one ``torch.autograd.grad`` per row and
        output, in the same layout.
        """
        torch = _import_torch()
        params = dict(self._module.named_parameters())
        ps = [params[n] for n in self._names]
        b, c = x.shape[0], hi - lo
        blocks = [torch.empty((b, c, *p.shape), dtype=p.dtype, device=p.device) for p in ps]
        with torch.enable_grad():
            for i in range(b):
                y = self._select(self._module(x[i : i + 1]).reshape(-1))[lo:hi]
                for k in range(c):
                    grads = torch.autograd.grad(y[k], ps, retain_graph=k < c - 1,
                                                allow_unused=True)
                    for blk, g in zip(blocks, grads, strict=True):
                        if g is None:  # a parameter the output does not depend on
                            blk[i, k] = 0
                        else:
                            blk[i, k] = g
        return [blk.reshape(b, -1) for blk in blocks]

    @staticmethod
    def _contract(acc: Any, ja: list[Any], jb: list[Any]) -> None:
        """``acc += sum_a J_a(x) J_a(y)^T`` (per parameter tensor, never concatenated)."""
        for a, b in zip(ja, jb, strict=True):
            acc.addmm_(a, b.T)

    def _jvp_block(self, x: Any, tangents: dict[str, Any], b2: int) -> Any:
        """``K Theta(x, y)`` of rows ``x`` against the rows whose Jacobian is ``tangents``."""
        from torch.func import jvp, vmap

        K = self._k()
        primals = self._primals()

        def push(t: dict[str, Any]) -> Any:
            return jvp(lambda p: self._forward_batch(p, x), (primals,), (t,))[1]

        item = self._dtype.itemsize
        per_tangent = max(1, 2 * x.shape[0] * (self._activations + K) * item)
        chunk = int(max(1, min(b2 * K, (self._budget() // 2) // per_tangent)))
        o = vmap(push, chunk_size=chunk)(tangents)  # (b2 * K, n1, K)
        o = o.reshape(b2, K, x.shape[0], K)
        return o.diagonal(dim1=1, dim2=3).sum(-1).T  # (n1, b2)

    def _tangents(self, y: Any) -> tuple[dict[str, Any], int]:
        from torch.func import jacrev, vmap

        jac = vmap(jacrev(self._forward_one), in_dims=(None, 0))(self._primals(), y)
        b = y.shape[0]
        K = self._k()
        return {n: jac[n].reshape(b * K, *jac[n].shape[2:]) for n in self._names}, b


    def _fill_jacobian(self, px: _Prepared, py: _Prepared, acc: Any, symmetric: bool) -> None:
        n = px.n
        m = 0 if symmetric else py.n
        c, bo, bi = self._plan(n, m)
        total = c * n  # progress: rows of every parameter chunk
        for lo, hi in self._chunks(c):
            if symmetric:
                for i0 in range(0, n, bo):
                    i1 = min(n, i0 + bo)
                    Ji = self._jacobian(px.x[i0:i1], lo, hi)
                    self._contract(acc[i0:i1, i0:i1], Ji, Ji)
                    for j0 in range(i1, n, bi):
                        j1 = min(n, j0 + bi)
                        self._contract(acc[i0:i1, j0:j1], Ji, self._jacobian(px.x[j0:j1], lo, hi))
                    del Ji
                    add_ticks(i1 - i0, total)
                continue
            Jy = self._jacobian(py.x, lo, hi) if m <= bi else None  # computed once
            for i0 in range(0, n, bo):
                i1 = min(n, i0 + bo)
                Ji = self._jacobian(px.x[i0:i1], lo, hi)
                for j0 in range(0, m, bi):
                    j1 = min(m, j0 + bi)
                    Jj = Jy if Jy is not None else self._jacobian(py.x[j0:j1], lo, hi)
                    self._contract(acc[i0:i1, j0:j1], Ji, Jj)
                    del Jj
                del Ji
                add_ticks(i1 - i0, total)
            del Jy

    def _fill_jvp(self, px: _Prepared, py: _Prepared, acc: Any, symmetric: bool) -> None:
        m = py.n
        # only the tangent side's Jacobian is held (half the budget; the jvp chunks the rest)
        b = int(max(1, min(m, self._budget() // (2 * self._row_bytes()))))
        for j0 in range(0, m, b):
            j1 = min(m, j0 + b)
            t, bt = self._tangents(py.x[j0:j1])
            if symmetric:  # columns j0:j1 against rows 0:j1: the upper triangle's part
                acc[:j1, j0:j1] = self._jvp_block(px.x[:j1], t, bt)
            else:
                acc[:, j0:j1] = self._jvp_block(px.x, t, bt)
            del t
            add_ticks(j1 - j0, m)
