"""Flow hooks for an FCNetwork: the model side of :class:`~kernelcomp.training._engine._Problem`.

Parameters and gradients are lists of arrays ``[W_0, ..., W_L, b_l if any...]``
(:func:`_params_of`). :func:`_network_problem` works at any depth on
``FCNetwork.forward``/``FCNetwork.gradients`` (BLAS); :func:`_fused_problem` runs
a one-hidden-layer network on the fused compiled passes of
``kernelcomp._kernels.training``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelcomp._linalg import gram_nt
from kernelcomp.empirical import EmpiricalNTK
from kernelcomp.network import activate, activate_grad
from kernelcomp.training._engine import _Problem

#: ReLU activations: gradients jump where a unit's pre-activation crosses 0, so the
#: step control's reference gradient freezes the activation pattern (``pair`` hook)
_KINKED: frozenset[str] = frozenset({"relu", "relu_unit", "leaky_relu"})


def _network_problem(net: Any, X: np.ndarray, out0: np.ndarray) -> _Problem:
    """Flow hooks for an FCNetwork: params and gradients are lists of arrays.

    For ReLU networks the ``pair`` hook gives the step control's reference
    gradient with the activation pattern of the step's start (see
    :class:`kernelcomp.training._integrators._Euler`).
    """
    work = net.copy()
    slots = [("w", l) for l in range(len(work.weights))] + [
        ("b", l) for l, b in enumerate(work.biases) if b is not None
    ]
    last: dict[str, Any] = {}

    def load(params: list[np.ndarray]) -> None:
        for (kind, l), arr in zip(slots, params, strict=True):
            (work.weights if kind == "w" else work.biases)[l] = arr

    def forward(params: list[np.ndarray]) -> np.ndarray:
        load(params)
        out, cache = work.forward(X, cache=True)
        last["params"], last["cache"] = params, cache
        return out - out0

    def backward(params: list[np.ndarray], u: np.ndarray, rows: np.ndarray | None) -> Any:
        load(params)
        if rows is None:
            cache = last["cache"] if last.get("params") is params else None
            gW, gb = work.gradients(X, u, cache=cache)
        else:
            gW, gb = work.gradients(X[rows], u[rows])
        return [gW[l] if kind == "w" else gb[l] for kind, l in slots]

    def step(params: list[np.ndarray], g: list[np.ndarray], dt: float) -> list[np.ndarray]:
        return [p - dt * gp for p, gp in zip(params, g, strict=True)]

    def norms(g1: list[np.ndarray], g2: list[np.ndarray]) -> tuple[float, float, float]:
        a = sum(float(np.vdot(x, x)) for x in g1)
        b = sum(float(np.vdot(x, x)) for x in g2)
        c = sum(float(np.vdot(x - z, x - z)) for x, z in zip(g1, g2, strict=True))
        return a, b, c

    def sub(g1: list[np.ndarray], g2: list[np.ndarray]) -> list[np.ndarray]:
        return [x - z for x, z in zip(g1, g2, strict=True)]

    def ntk(params: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Tangent kernel on ``rows``, layer by layer (never the Jacobian)."""
        load(params)
        return EmpiricalNTK(work)(X[rows])

    def jvp(params: list[np.ndarray], g: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Forward-mode derivative of Ft on ``rows`` along ``g``.

        The primal pass is ``FCNetwork.forward``'s (its cache); only the tangent
        ``dz_l = c_l (a_l dW_l^T + da_l W_l^T) + s_l db_l``, ``da_{l+1} = phi'(z_l) dz_l``
        is computed here (FCNetwork has no forward-mode pass).
        """
        load(params)
        dW: list[Any] = [None] * len(work.weights)
        db: list[Any] = [None] * len(work.biases)
        for (kind, l), arr in zip(slots, g, strict=True):
            (dW if kind == "w" else db)[l] = arr
        _, cache = work.forward(X[rows], cache=True)
        da = None
        for l, W in enumerate(work.weights):
            dz = cache.inputs[l] @ dW[l].T
            if da is not None:
                dz += da @ W.T
            dz *= work.weight_mult[l]
            if db[l] is not None:
                dz += work.bias_mult[l] * db[l]
            if l < work.depth:
                da = activate_grad(work.activation, cache.preactivations[l]) * dz
        return dz[:, 0]

    if work.activation not in _KINKED:
        return _Problem(forward, backward, step, norms, sub, ntk=ntk, jvp=jvp)

    def pair(params: list[np.ndarray], u: np.ndarray, old: list[np.ndarray],
             uref: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The gradient at ``params``, and the reference gradient of ``uref`` there.

        The reference goes through the network linearised on the activation
        pattern at ``old`` (two slopes for leaky_relu).
        """
        g = backward(params, u, None)
        load(old)
        _, old_cache = work.forward(X, cache=True)
        pattern = [z > 0 for z in old_cache.preactivations[:-1]]
        load(params)
        gW, gb = work.gradients(X, uref, pattern=pattern)
        return g, [gW[l] if kind == "w" else gb[l] for kind, l in slots]

    return _Problem(forward, backward, step, norms, sub, pair, ntk, jvp)


def _fused_eligible(net: Any) -> bool:
    from kernelcomp._kernels.training import CODES

    # the compiled pair pass freezes the ReLUs' one-slope pattern only: leaky_relu's
    # reference gradient goes through FCNetwork's two-slope pattern instead
    return (net.depth == 1 and net.n_outputs == 1 and net.activation in CODES
            and net.activation != "leaky_relu")  # fmt: skip


def _fused_problem(net: Any, X: np.ndarray, out0: np.ndarray) -> _Problem:
    """Flow hooks for a one-hidden-layer network on the fused compiled passes.

    Same parameter layout as :func:`_network_problem` (``_params_of``):
    ``[W1 (h, d), W2 (1, h), b1 (h,) if any, b2 (1,) if any]``.
    """
    from kernelcomp._kernels import training as core

    act = core.CODES[net.activation]
    c1, c2 = float(net.weight_mult[0]), float(net.weight_mult[1])
    has_b1, has_b2 = net.biases[0] is not None, net.biases[1] is not None
    s1 = float(net.bias_mult[0]) if has_b1 else 0.0
    s2 = float(net.bias_mult[1]) if has_b2 else 0.0
    h = net.weights[0].shape[0]
    serial = X.shape[0] * h < core.PARALLEL_MIN_WORK
    fwd = core.forward_serial if serial else core.forward
    bwd = core.backward_serial if serial else core.backward
    bwd_pair = core.backward_pair_serial if serial else core.backward_pair
    zeros_h = np.zeros(h)
    all_rows = np.arange(X.shape[0], dtype=np.int64)

    def unpack(params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        W1, W2 = params[0], params[1]
        b1 = params[2] if has_b1 else zeros_h
        bias2 = s2 * float(params[-1][0]) if has_b2 else 0.0
        return W1, W2[0], b1, bias2

    def forward(params: list[np.ndarray]) -> np.ndarray:
        W1, beta, b1, bias2 = unpack(params)
        out = np.empty(X.shape[0])
        fwd(X, W1, b1, beta, c1, s1, c2, bias2, act, out)
        return out - out0

    def backward(params: list[np.ndarray], u: np.ndarray, rows: np.ndarray | None) -> Any:
        W1, beta, b1, _ = unpack(params)
        gW1, gb1, gbeta = np.empty_like(W1), np.empty(h), np.empty(h)
        rows = all_rows if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        bwd(X, W1, b1, beta, c1, s1, c2, act, np.ascontiguousarray(u), rows,
                      gW1, gb1, gbeta)
        g = [gW1, gbeta[None, :]]
        if has_b1:
            g.append(gb1)
        if has_b2:
            g.append(np.array([s2 * float(u[rows].sum())]))
        return g

    def pair(params: list[np.ndarray], u: np.ndarray, old: list[np.ndarray],
             uref: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        W1, beta, b1, _ = unpack(params)
        W1o, _, b1o, _ = unpack(old)
        g = [np.empty_like(W1), np.empty(h), np.empty(h)]
        r = [np.empty_like(W1), np.empty(h), np.empty(h)]
        bwd_pair(X, W1, b1, beta, W1o, b1o, c1, s1, c2, act,
                           np.ascontiguousarray(u), np.ascontiguousarray(uref), *g, *r)
        out = []
        for (gW1, gb1, gbeta), uu in ((g, u), (r, uref)):
            lst = [gW1, gbeta[None, :]]
            if has_b1:
                lst.append(gb1)
            if has_b2:
                lst.append(np.array([s2 * float(uu.sum())]))
            out.append(lst)
        return out[0], out[1]

    memo: dict[str, Any] = {}

    def hidden(params: list[np.ndarray], rows: np.ndarray) -> Any:
        """Inputs, phi(z) and c2 beta phi'(z) of the hidden units on ``rows``."""
        key = rows.tobytes()
        if memo.get("params") is not params or memo.get("rows") != key:
            W1, beta, b1, _ = unpack(params)
            Xk = X[rows]
            z = c1 * (Xk @ W1.T)
            if has_b1:
                z += s1 * b1
            memo["params"], memo["rows"] = params, key
            memo["value"] = (Xk, activate(net.activation, z),
                             (c2 * beta) * activate_grad(net.activation, z))
        return memo["value"]

    def ntk(params: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        # sum_n [c2^2 phi phi' + c2^2 beta^2 phi'(z) phi'(z') (c1^2 x.x' + s1^2)] + s2^2
        Xk, phi, a = hidden(params, rows)
        inner = (c1 * c1) * gram_nt(Xk) + (s1 * s1 if has_b1 else 0.0)
        theta = (c2 * c2) * gram_nt(phi) + gram_nt(a) * inner
        return theta + s2 * s2 if has_b2 else theta

    def jvp(params: list[np.ndarray], g: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        Xk, phi, a = hidden(params, rows)
        v = c1 * (Xk @ g[0].T)
        if has_b1:
            v += s1 * g[2]
        res = np.einsum("kh,kh->k", a, v) + c2 * (phi @ g[1][0])
        return res + s2 * float(g[-1][0]) if has_b2 else res

    generic = _network_problem(net, X, out0)
    return _Problem(forward, backward, generic.step, generic.norms, generic.sub, pair, ntk, jvp)


def _params_of(net: Any) -> list[np.ndarray]:
    return [*net.weights, *(b for b in net.biases if b is not None)]


def _net_from_params(net: Any, params: list[np.ndarray]) -> Any:
    out = net.copy()
    n = len(out.weights)
    out.weights = [np.array(p) for p in params[:n]]
    it = iter(params[n:])
    out.biases = [None if b is None else np.array(next(it)) for b in out.biases]
    return out
