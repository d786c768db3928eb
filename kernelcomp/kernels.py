"""Analytic (infinite-width) kernels of fully connected networks: ``NTK`` and ``NNGP``.

The recursion is exactly neural-tangents' ``stax`` for
``stax.serial(*[Dense(N, W_std, b_std), Act()] * depth, Dense(1, W_std, b_std))``:

.. code-block:: text

    S1(x, x') = sw0^2 x.x'/d + sb0^2,                 T1 = S1
    S(l+1)    = sw_l^2 K(S(l)) + sb_l^2
    T(l+1)    = S(l+1) + sw_l^2 Kdot(S(l)) T(l)
    NNGP = S(L+1),  NTK = T(L+1)

with ``K = E[phi(u) phi(v)]``, ``Kdot = E[phi'(u) phi'(v)]`` under the layer's
Gaussian. In the ``"standard"`` parameterization (weights ``N(0, sw^2/fan_in)``,
trained as stored) the NNGP is the same and the tangent update reads
``T(l+1) = n_l K(S(l)) + [bias] + sw_l^2 Kdot T(l)`` with ``n_l`` the width of
hidden layer ``l`` (``T1 = x.x' + [bias]``), so the NTK grows with the width.

Activations (:mod:`kernelcomp._kernels.duals`): ``"relu"``, ``"relu_unit"``,
``"erf"``, ``"leaky_relu"``, ``"linear"`` and ``"gelu"`` have closed forms; the
smooth ``"tanh"``, ``"silu"``, ``"softplus"`` and ``"sigmoid"`` are Hermite
(Mehler) series of per-sample coefficients with a tail bound (``method="series"``,
erf and GELU accept it too); ``"elu"`` is computed by quadrature
(:mod:`kernelcomp._kernels.quadrature`: four sectors in polar coordinates split
where ``u = 0`` or ``v = 0``, ``4 n^2`` points per pair and layer,
``n = quadrature_nodes``), which ``method="quadrature"`` also forces for the others.

``device="cuda"`` computes the O(n m) part on the GPU (:mod:`kernelcomp._kernels.cuda`,
numba-cuda): the per-sample pass stays on the CPU and its results are copied
to the device; inputs may be GPU arrays, and ``kc.gram``'s ``out`` a device array.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np

from kernelcomp._base import Kernel, is_device_array
from kernelcomp._kernels import analytic as _core
from kernelcomp._kernels import duals as _duals
from kernelcomp._kernels import quadrature as _quad
from kernelcomp._kernels.activations import CODES as _CODES
from kernelcomp._linalg import gemm_nt, syrk_upper
from kernelcomp._parallel import active_ticks, n_jobs_context
from kernelcomp._validation import check_int, per_layer

__all__ = ["NNGP", "NTK", "Kernel", "KernelPair"]


class KernelPair(NamedTuple):
    """The NNGP and the NTK Gram matrices of one network, from one pass.

    Returned by :meth:`NTK.gram_pair` (and :meth:`NNGP.gram_pair`), like
    neural-tangents' ``kernel_fn(x1, x2, ("nngp", "ntk"))``.

    Attributes
    ----------
    nngp : ndarray of shape (n, m)
    ntk : ndarray of shape (n, m)
    """

    nngp: np.ndarray
    ntk: np.ndarray

#: activations with closed-form expectations (their step in the analytic core)
_CLOSED_FORMS = ("relu", "relu_unit", "erf", "leaky_relu", "linear", "gelu")
#: smooth activations the Hermite series computes (route of "auto" for those
#: without a closed form; ``method="series"`` for the others)
_SERIES = ("tanh", "silu", "softplus", "sigmoid", "erf", "gelu")
#: phi = scale * base activation: K and Kdot are multiplied by scale^2 (closed forms)
_ACTIVATION_SCALE2 = {"relu_unit": 2.0}
#: values of ``method``
_METHODS = ("auto", "closed_form", "series", "quadrature")
#: default ``quadrature_nodes``
QUADRATURE_NODES = _quad.DEFAULT_NODES
#: tail energy of the Hermite series relative to each sample's ``E[phi^2]`` (and
#: ``E[phi'^2]``): a layer's truncation error is at most this times
#: ``sqrt(E_i E_j)`` <= max |K| for every correlation (Cauchy-Schwarz)
SERIES_TOL = 1e-11


def _activation_names() -> list[str]:
    """Every activation the analytic kernels accept: closed forms and quadrature codes."""
    return sorted(set(_CLOSED_FORMS) | set(_CODES))


_PARAMETERIZATIONS = ("ntk", "standard")
#: input dimension up to which dot products are computed inside the tile pass
#: (above it, BLAS writes them into the output first), float32 and float64 alike.
#: Measured with scripts/bench_gram.py --crossover at n = 5000, depth 2 and 4, on 2
#: threads: the fused pass is faster than BLAS + tile pass up to d ~ 96 (float64)
#: and d ~ 64 (float32); on one thread BLAS wins from d ~ 48 (float64) and d ~ 24
#: (float32). A thread-dependent route would make results depend on the thread count.
FUSED_MAX_FEATURES = 64
#: tile edge of the O(n^2) pass
CPU_TILE = 128
#: tile edge of the quadrature pass (each entry costs ~1e4 flops: small tiles balance threads)
QUADRATURE_TILE = 16
_EPS64 = float(np.finfo(np.float64).eps)
#: correlations within this distance of +-1 are rounding noise and snap to +-1
_SNAP = 32.0 * _EPS64


def _blas_dots(X: np.ndarray, Y: np.ndarray | None, out: np.ndarray) -> None:
    """Dot products into ``out``: ``X @ Y.T``, or the upper triangle of ``X @ X.T``.

    The symmetric case writes one triangle only, by row blocks (``syrk`` on
    the diagonal blocks, GEMM right of them: :func:`kernelcomp._linalg.syrk_upper`,
    safe at any n where one large ``syrk`` crashes); the cross case by GEMMs on
    bounded blocks (:func:`kernelcomp._linalg.gemm_nt`), never numpy's
    ``X @ Y.T``, which hands one ``syrk`` the whole matrix when ``Y`` is ``X``.
    """
    if Y is not None:
        gemm_nt(out, X, Y)
        return
    syrk_upper(out, X)


def _check_scale(kernel: Any, dtype: np.dtype, a: np.ndarray, b: np.ndarray,
                 dg: np.ndarray) -> None:
    """Refuse a kernel whose recursion overflows for these inputs, before the O(n m) work.

    Every entry of a layer's covariance (and of the NTK) is bounded by the
    geometric mean of its two diagonal entries (Cauchy-Schwarz). The tile
    pass multiplies two per-sample terms of ``a`` and ``b`` (in float64), so
    these must stay below ``sqrt(finfo(float64).max) / 4`` (about 3e153), and
    the diagonal ``dg`` within the largest ``dtype`` value. The
    check is O(n depth).

    Raises
    ------
    ValueError
        If a value is not finite or beyond its limit.
    """
    inner = math.sqrt(float(np.finfo(np.float64).max)) / 4.0
    outer = float(np.finfo(dtype).max)
    for values, limit in ((a, inner), (b, inner), (dg, outer)):
        peak = float(np.max(np.abs(values))) if values.size else 0.0
        if not peak <= limit:  # NaN fails too
            raise ValueError(
                f"{kernel!r} overflows on these inputs: its recursion reaches {peak:.3g}, "
                f"beyond the {limit:.3g} from which {np.dtype(dtype).name} Gram entries can "
                "be computed; the variances grow like weight_std**2 per layer: lower "
                "weight_std or depth, or rescale the inputs"
            )


@dataclass(frozen=True)
class _Prepared:
    """Per-sample state of the analytic recursion for ``n`` rows."""

    X: np.ndarray  # (n, d) rows
    Xt: np.ndarray  # (d, n) C-contiguous transpose (fused path only, else empty)
    a: np.ndarray  # (L, n)
    b: np.ndarray  # (L, n)
    dg: np.ndarray  # (n,) diagonal, float64
    sqn: np.ndarray  # (n,) squared input norms, float64
    rsq: np.ndarray  # (n,) 1 / input norms (0 for zero rows)
    #: series route: per-layer degrees (L,), coefficients of phi and phi' (L, M + 1, n)
    #: and the layer variances (L, n); empty otherwise
    deg: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    c: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1)))
    e: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1)))
    var: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))

    @property
    def n(self) -> int:
        return self.X.shape[0]


@dataclass(frozen=True)
class _AnalyticKernel(Kernel):
    """Shared implementation of :class:`NTK` and :class:`NNGP`."""

    depth: int = 1
    activation: str = "relu"
    weight_std: Any = 1.0
    bias_std: Any = 0.0
    parameterization: str = "ntk"
    width: Any = None
    method: str = "auto"
    quadrature_nodes: int = QUADRATURE_NODES

    _ntk: ClassVar[bool] = True

    def __post_init__(self) -> None:
        depth = check_int(self.depth, "depth", minimum=0)
        object.__setattr__(self, "depth", depth)
        if not isinstance(self.activation, str):
            raise TypeError(
                f"activation must be a string, one of {_activation_names()}, got "
                f"{type(self.activation).__name__}"
            )
        act = self.activation.lower()
        if act not in _CLOSED_FORMS and act not in _CODES:
            raise ValueError(
                f"unknown activation {self.activation!r}; expected one of {_activation_names()}"
            )
        object.__setattr__(self, "activation", act)
        if not isinstance(self.method, str) or self.method not in _METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {list(_METHODS)}")
        if self.method == "closed_form" and act not in _CLOSED_FORMS:
            raise ValueError(
                f"activation {act!r} has no closed form (those are {sorted(_CLOSED_FORMS)}); "
                "use method='auto', 'series' or 'quadrature'"
            )
        if self.method == "series" and act not in _SERIES:
            raise ValueError(
                f"activation {act!r} is not smooth: the Hermite series is for "
                f"{sorted(_SERIES)}; use method='auto' or 'quadrature'"
            )
        nodes = check_int(self.quadrature_nodes, "quadrature_nodes", minimum=2)
        if nodes > 200:
            raise ValueError(f"quadrature_nodes must be <= 200, got {nodes}")
        if not self._quadrature:
            # unused by the closed forms: kernels that compute the same Gram compare
            # equal, hash alike and survive to_dict / from_dict
            nodes = QUADRATURE_NODES
        object.__setattr__(self, "quadrature_nodes", nodes)
        if self.parameterization not in _PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {self.parameterization!r}; expected one of "
                f"{list(_PARAMETERIZATIONS)}"
            )
        n_dense = depth + 1
        ws = per_layer(self.weight_std, "weight_std", n_dense)
        bs = per_layer(self.bias_std, "bias_std", n_dense, allow_none=True)
        # keep scalars as scalars (readable repr, stable equality)
        if not isinstance(self.weight_std, int | float) or isinstance(self.weight_std, bool):
            object.__setattr__(self, "weight_std", ws)
        else:
            object.__setattr__(self, "weight_std", ws[0])
        if self.bias_std is None or (
            isinstance(self.bias_std, int | float) and not isinstance(self.bias_std, bool)
        ):
            object.__setattr__(self, "bias_std", bs[0])
        else:
            object.__setattr__(self, "bias_std", bs)
        if self.parameterization == "standard":
            if depth > 0:
                if self.width is None:
                    raise ValueError(
                        "parameterization='standard' needs the hidden width: its NTK grows "
                        "with it (pass width=N or one width per hidden layer)"
                    )
                if isinstance(self.width, int | np.integer) and not isinstance(self.width, bool):
                    object.__setattr__(self, "width", check_int(self.width, "width", minimum=1))
                else:
                    try:
                        widths = tuple(self.width)
                    except TypeError as exc:
                        raise TypeError(
                            f"width must be an int or a sequence of {depth} ints, got "
                            f"{type(self.width).__name__}"
                        ) from exc
                    if len(widths) != depth:
                        raise ValueError(
                            f"width must have one value per hidden layer ({depth}), got "
                            f"{len(widths)}"
                        )
                    object.__setattr__(
                        self,
                        "width",
                        tuple(check_int(w, f"width[{i}]", minimum=1) for i, w in enumerate(widths)),
                    )
        elif self.width is not None:
            raise ValueError("width is only used with parameterization='standard'")

    # -- parameters of the recursion -------------------------------------------
    @property
    def _route(self) -> str:
        """How the layer expectations are computed: "closed", "series" or "quadrature"."""
        if self.method in ("quadrature", "series", "closed_form"):
            return {"closed_form": "closed"}.get(self.method, self.method)
        if self.activation in _CLOSED_FORMS:
            return "closed"
        return "series" if self.activation in _SERIES else "quadrature"

    @property
    def _quadrature(self) -> bool:
        """Whether the layer expectations are computed by quadrature."""
        return self._route == "quadrature"

    def _layer_params(self, d: int) -> dict[str, Any]:
        L = self.depth
        ws = per_layer(self.weight_std, "weight_std", L + 1)
        bs = per_layer(self.bias_std, "bias_std", L + 1, allow_none=True)
        w2 = np.array([w * w for w in ws], dtype=np.float64)
        b2 = np.array([0.0 if v is None else v * v for v in bs], dtype=np.float64)
        s0a = w2[0] / d
        if self.parameterization == "ntk":
            t0a, t0b = s0a, b2[0]
            ta, tb = w2[1:].copy(), b2[1:].copy()
        else:
            has_bias = np.array([0.0 if v is None else 1.0 for v in bs])
            widths = (self.width,) * L if isinstance(self.width, int) else (self.width or ())
            t0a, t0b = 1.0, has_bias[0]
            ta = np.array(widths, dtype=np.float64)
            tb = has_bias[1:].copy()
        act = _CODES[self.activation]
        if self._route == "closed":
            # a scaled activation multiplies K and Kdot, i.e. every term after layer 0
            # (the compiled activation of the other routes includes its scale)
            scale2 = _ACTIVATION_SCALE2.get(self.activation, 1.0)
            w2[1:] *= scale2
            ta = ta * scale2
        return {
            "act": act,
            "ntk": self._ntk,
            "s0a": float(s0a),
            "t0a": float(t0a),
            "t0b": float(t0b),
            "w2": w2,
            "b2": b2,
            "ta": np.ascontiguousarray(ta, dtype=np.float64),
            "tb": np.ascontiguousarray(tb, dtype=np.float64),
        }

    # -- hooks ------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> _Prepared:
        n, d = X.shape
        p = self._layer_params(d)
        a = np.empty((self.depth, n), dtype=np.float64)
        b = np.empty((self.depth, n), dtype=np.float64)
        dg = np.empty(n, dtype=np.float64)
        sqn = np.empty(n, dtype=np.float64)
        rsq = np.empty(n, dtype=np.float64)
        series: dict[str, np.ndarray] = {}
        if self._route == "quadrature":
            rules = _quad.rules(self.quadrature_nodes)
            _quad.prepare(X, snap=_SNAP, a=a, b=b, dg=dg, sqn=sqn, rsq=rsq, **p, **rules)
        elif self._route == "series":
            series = self._prepare_series(X, p, a, b, dg, sqn, rsq)
        else:
            _core.prepare(X, snap=_SNAP, a=a, b=b, dg=dg, sqn=sqn, rsq=rsq, **p)
        _check_scale(self, X.dtype, a, b, dg)
        # the transpose feeds the fused dot products (in float64: exact for float32
        # inputs, and no conversion in the inner loop); BLAS needs none
        fused = d <= FUSED_MAX_FEATURES
        Xt = np.ascontiguousarray(X.T, dtype=np.float64) if fused else np.empty((0, 0))
        return _Prepared(X, Xt, a, b, dg, sqn, rsq, **series)

    def _prepare_series(
        self, X: np.ndarray, p: dict[str, Any], a: np.ndarray, b: np.ndarray, dg: np.ndarray,
        sqn: np.ndarray, rsq: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Per-sample pass of the Hermite-series route, layer by layer.

        Each layer's degree is the smallest meeting :data:`SERIES_TOL` for all
        of its samples (:func:`kernelcomp._kernels.duals.series_degree`).
        """
        n = X.shape[0]
        L = self.depth
        act, ntk = p["act"], p["ntk"]
        w2, b2, ta, tb = p["w2"], p["b2"], p["ta"], p["tb"]
        s = np.empty(n)
        t = np.empty(n)
        _core.series_init(X, p["s0a"], p["t0a"], p["t0b"], float(b2[0]), sqn, rsq, s, t)
        var = np.empty((L, n))
        degs: list[int] = []
        layers = []
        for layer in range(L):
            var[layer] = s
            m, bound = _duals.series_degree(act, s, SERIES_TOL)
            if bound > SERIES_TOL:
                warnings.warn(
                    f"{self.activation!r} layer {layer + 1}: pre-activation variances up to "
                    f"{float(s.max()):.3g} need a Hermite series beyond degree "
                    f"{_duals.MAX_DEGREE}; its truncation error may reach {bound:.1e} of the "
                    "kernel's scale (method='quadrature' is the alternative)",
                    RuntimeWarning,
                    stacklevel=4,
                )
            degs.append(m)
            c, e = _duals.series_coefficients(act, s, m)
            layers.append((c, e))
            _core.series_layer(
                c, e, m, ntk, float(w2[layer + 1]), float(b2[layer + 1]), float(ta[layer]),
                float(tb[layer]), _SNAP, s, t, a[layer], b[layer],
            )
        dg[:] = t if ntk else s
        top = max(degs, default=0)
        cs = np.zeros((max(L, 1), top + 1, n))
        es = np.zeros((max(L, 1), top + 1, n))
        for layer, (c, e) in enumerate(layers):
            cs[layer, : c.shape[0]] = c
            es[layer, : e.shape[0]] = e
        deg = np.array(degs if L else [0], dtype=np.int64)
        return {"deg": deg, "c": cs, "e": es, "var": var}

    def _take(self, prep: _Prepared, start: int, stop: int) -> _Prepared:
        series = self._route == "series" and self.depth > 0
        return _Prepared(
            prep.X[start:stop],
            np.ascontiguousarray(prep.Xt[:, start:stop]) if prep.Xt.size else prep.Xt,
            np.ascontiguousarray(prep.a[:, start:stop]),
            np.ascontiguousarray(prep.b[:, start:stop]),
            prep.dg[start:stop],
            prep.sqn[start:stop],
            prep.rsq[start:stop],
            prep.deg,
            np.ascontiguousarray(prep.c[:, :, start:stop]) if series else prep.c,
            np.ascontiguousarray(prep.e[:, :, start:stop]) if series else prep.e,
            np.ascontiguousarray(prep.var[:, start:stop]) if series else prep.var,
        )

    def _series_pair(
        self, px: _Prepared, py: _Prepared
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``deg, cx, ex, cy, ey`` at the larger of the two sides' degrees, layer by layer.

        Rows and columns prepared apart may have chosen different degrees; the
        side with the lower degree gets its coefficients again at the higher one.
        """
        if np.array_equal(px.deg, py.deg):
            return px.deg, px.c, px.e, py.c, py.e
        deg = np.maximum(px.deg, py.deg)
        act = _CODES[self.activation]

        def widen(pr: _Prepared) -> tuple[np.ndarray, np.ndarray]:
            n = pr.var.shape[1]
            c = np.zeros((deg.shape[0], int(deg.max()) + 1, n))
            e = np.zeros_like(c)
            for layer, m in enumerate(deg):
                if m == pr.deg[layer]:
                    c[layer, : m + 1] = pr.c[layer, : m + 1]
                    e[layer, : m + 1] = pr.e[layer, : m + 1]
                else:
                    c[layer, : m + 1], e[layer, : m + 1] = _duals.series_coefficients(
                        act, pr.var[layer], int(m)
                    )
            return c, e

        cx, ex = widen(px)
        cy, ey = widen(py)
        return deg, cx, ex, cy, ey

    def gram_pair(self, X: Any, Y: Any = None, *, dtype: Any = None,
                  n_jobs: int | None = None) -> KernelPair:
        """The NNGP and the NTK Gram matrices of this network from one pass.

        The NTK recursion carries the NNGP covariance along, so one tile pass
        writes both: each equals the separate call (``NNGP(...)(X, Y)`` and
        ``NTK(...)(X, Y)`` with the same parameters) bit for bit. The dot
        products and the recursion run once, so it costs less than the two
        calls (most when ``d`` is large and the dot products dominate); only
        the second output is extra (neural-tangents' ``kernel_fn(x1, x2,
        ("nngp", "ntk"))``). The same on ``NTK`` and ``NNGP`` objects.

        Parameters
        ----------
        X : array-like of shape (n, d)
        Y : array-like of shape (m, d), optional
            None: the symmetric Gram matrices of ``X``.
        dtype : {None, "float32", "float64"}
            As for ``k(X, Y)``.
        n_jobs : int, optional
            Threads (None: all).

        Returns
        -------
        KernelPair
            ``(nngp, ntk)``, each of shape (n, m).

        Raises
        ------
        ValueError, TypeError
            For invalid inputs, as ``k(X, Y)``.

        Examples
        --------
        >>> import numpy as np, kernelcomp as kc
        >>> X = np.random.default_rng(0).standard_normal((5, 3))
        >>> nngp, ntk = kc.NTK(depth=2, bias_std=0.1).gram_pair(X)
        >>> bool(np.array_equal(nngp, kc.NNGP(depth=2, bias_std=0.1)(X)))
        True
        """
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        k_ntk, k_nngp = NTK(**params), NNGP(**params)
        X, Yc, dt = k_ntk._gram_inputs(X, Y, dtype)
        shape = (X.shape[0], X.shape[0] if Yc is None else Yc.shape[0])
        ntk, nngp = np.empty(shape, dtype=dt), np.empty(shape, dtype=dt)
        with n_jobs_context(n_jobs):
            px = k_ntk._prepare(X)
            py = px if Yc is None else k_ntk._prepare(Yc)
            # the diagonal of the symmetric NNGP: its own per-sample pass, O(n L)
            dg = k_nngp._prepare(X).dg if Yc is None else np.empty(0)
            k_ntk._fill(px, py, ntk, Yc is None, nngp=nngp, dg_nngp=dg)
        return KernelPair(nngp=nngp, ntk=ntk)

    def _fill(self, px: _Prepared, py: _Prepared, out: np.ndarray, symmetric: bool,
              nngp: np.ndarray | None = None, dg_nngp: np.ndarray | None = None) -> None:
        # nngp (NTK only): the NNGP block written by the same pass (see gram_pair)
        if nngp is None:
            nngp = np.empty((0, 0), dtype=out.dtype)
        if dg_nngp is None or dg_nngp.size == 0:
            dg_nngp = np.empty(0)
        d = px.X.shape[1]
        p = self._layer_params(d)
        fused = d <= FUSED_MAX_FEATURES
        snap_dot = 0.0
        if not fused:
            _blas_dots(px.X, None if symmetric else py.X, out)
            # BLAS sums in its own order: allow its rounding when snapping +-1
            snap_dot = _SNAP + 8.0 * float(np.finfo(out.dtype).eps) * math.sqrt(d)
        if self._route == "quadrature":
            _quad.tiles(
                px.X, py.Xt, px.a, px.b, px.dg, px.sqn, px.rsq, py.a, py.b, py.sqn, py.rsq,
                symmetric=symmetric, use_out_dot=not fused, tile=QUADRATURE_TILE, out=out,
                nngp=nngp, dg_nngp=dg_nngp, snap=_SNAP, snap_dot=snap_dot,
                ticks=active_ticks(), **p,
                **_quad.rules(self.quadrature_nodes),
            )
            return
        series = self._route == "series" and self.depth > 0
        if series:
            deg, cx, ex, cy, ey = self._series_pair(px, py)
        else:
            deg, cx, ex, cy, ey = px.deg, px.c, px.e, py.c, py.e
        _core.tiles(
            px.X,
            py.Xt,
            px.a,
            px.b,
            px.dg,
            px.sqn,
            px.rsq,
            py.a,
            py.b,
            py.sqn,
            py.rsq,
            series=series,
            deg=deg,
            cx=cx,
            ex=ex,
            cy=cy,
            ey=ey,
            symmetric=symmetric,
            use_out_dot=not fused,
            tile=CPU_TILE,
            out=out,
            nngp=nngp,
            dg_nngp=dg_nngp,

            ticks=active_ticks(),
            snap=_SNAP,
            snap_dot=snap_dot,
            **p,
        )

    def _diag(self, px: _Prepared) -> np.ndarray:
        return px.dg

    def _cuda_backend(self) -> _CudaAnalytic:
        if self._quadrature:
            raise NotImplementedError(
                f"device='cuda' has no route for activation {self.activation!r} by quadrature "
                "(closed forms and Hermite series run on the GPU); this kernel runs on "
                "device='cpu'"
            )
        return _CudaAnalytic(self)

    # -- description ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON description: ``{"kernel": "NTK", "params": {...}}``."""

        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        params = {
            "depth": self.depth,
            "activation": self.activation,
            "weight_std": plain(self.weight_std),
            "bias_std": plain(self.bias_std),
            "parameterization": self.parameterization,
            "width": plain(self.width),
        }
        # closed-form kernels keep the description they always had
        if self.method != "auto":
            params["method"] = self.method
        if self._quadrature:
            params["quadrature_nodes"] = self.quadrature_nodes
        return {"kernel": type(self).__name__, "params": params}

    @staticmethod
    def from_dict(desc: dict[str, Any]) -> _AnalyticKernel:
        """Rebuild a kernel from :meth:`to_dict`'s output."""
        classes = {"NTK": NTK, "NNGP": NNGP}
        name = desc.get("kernel")
        if name not in classes:
            raise ValueError(f"unknown kernel {name!r} in description; expected NTK or NNGP")
        params = dict(desc.get("params", {}))
        for key in ("weight_std", "bias_std", "width"):
            if isinstance(params.get(key), list):
                params[key] = tuple(params[key])
        return classes[name](**params)


@dataclass(frozen=True)
class _DevicePrepared:
    """Rows ``start:stop`` of a CPU-prepared state whose arrays are also on the GPU."""

    host: _Prepared  # all rows, on the host
    dev: Any  # kernelcomp._kernels.cuda.DeviceSamples of all rows
    start: int
    stop: int

    @property
    def n(self) -> int:
        return self.stop - self.start


class _CudaAnalytic(Kernel):
    """The ``device="cuda"`` backend of an analytic kernel, made for one call.

    Same validation and per-sample (CPU) pass as the kernel it wraps; ``_fill``
    launches the fused CUDA kernel. Inputs may be device arrays (copied to the
    host for validation and the per-sample pass; used in place on the device
    when already C-contiguous in the result dtype). ``out`` may be a device
    array (written in place) or a host array (through device buffers, in row
    chunks when one buffer would take more than
    :func:`kernelcomp._kernels.cuda.out_budget_bytes`).
    """

    def __init__(self, base: _AnalyticKernel) -> None:
        from kernelcomp._kernels import cuda as _cuda  # numba-cuda, on demand

        _cuda.require()
        self.base = base
        self.n_features_in = base.n_features_in
        self._cuda = _cuda
        self._device_inputs: dict[int, tuple[np.ndarray, Any]] = {}
        self._buffers: dict[tuple[str, str], Any] = {}
        self._recursions: dict[tuple[int, Any], Any] = {}
        self._widened: dict[tuple[int, int], Any] = {}

    def __repr__(self) -> str:
        return f"{self.base!r} on device='cuda'"

    # -- inputs and outputs -----------------------------------------------------
    def _check_input(self, X: Any, name: str, n_features: int | None = None) -> np.ndarray:
        return self.base._check_input(X, name, n_features)

    def _to_host(self, A: Any, name: str) -> tuple[Any, Any]:
        """``(host copy, device array)`` of a device array; ``(A, None)`` otherwise."""
        if A is None or not is_device_array(A):
            return A, None
        dev = self._cuda.as_device_array(A)
        try:
            host = dev.copy_to_host()
        except NotImplementedError as exc:  # negative strides
            raise ValueError(
                f"{name} is a device array that cannot be copied to the host ({exc}); "
                "pass a contiguous one"
            ) from exc
        return host, dev

    def _gram_inputs(
        self, X: Any, Y: Any, dtype: Any
    ) -> tuple[np.ndarray, np.ndarray | None, np.dtype]:
        Xh, Xd = self._to_host(X, "X")
        Yh, Yd = self._to_host(Y, "Y")
        X, Yc, dt = self.base._gram_inputs(Xh, Yh, dtype)
        for host, validated, dev in ((Xh, X, Xd), (Yh, Yc, Yd)):
            # the device array itself serves when validation kept the host copy as is
            if dev is not None and validated is host and dev.is_c_contiguous():
                self._device_inputs[id(validated)] = (validated, dev)
        return X, Yc, dt

    def _device_out(self, out: Any, shape: tuple[int, int]) -> Any:
        """A numba view of a device-array ``out`` after checks; None for a host ``out``."""
        if not is_device_array(out):
            return None
        dev = self._cuda.as_device_array(out)
        if tuple(dev.shape) != shape:
            raise ValueError(
                f"out has shape {tuple(dev.shape)}, but the Gram matrix is {shape}"
            )
        if np.dtype(dev.dtype) not in (np.float32, np.float64):
            raise TypeError(
                f"a device out must be float32 or float64, got dtype {np.dtype(dev.dtype)}"
            )
        return dev

    def _synchronize(self) -> None:
        self._cuda.synchronize()

    # -- hooks --------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> _DevicePrepared:
        host = self.base._prepare(X)
        known = self._device_inputs.get(id(X))
        Xd = known[1] if known is not None and known[0] is X else self._cuda.to_device(X)
        series = self.base._route == "series" and self.base.depth > 0
        dev = self._cuda.DeviceSamples(
            Xd, host.a, host.b, host.dg, host.c if series else None, host.e if series else None
        )
        return _DevicePrepared(host, dev, 0, X.shape[0])

    def _take(self, prep: _DevicePrepared, start: int, stop: int) -> _DevicePrepared:
        return _DevicePrepared(prep.host, prep.dev, prep.start + start, prep.start + stop)

    def _diag(self, px: _DevicePrepared) -> np.ndarray:
        return px.host.dg[px.start : px.stop]

    def _recursion(self, d: int, deg: np.ndarray | None = None) -> Any:
        key = (d, None if deg is None else tuple(int(m) for m in deg))
        if key not in self._recursions:
            params = self.base._layer_params(d)
            if deg is not None:
                params["series"] = True
                params["deg"] = deg
            self._recursions[key] = self._cuda.Recursion(params, _SNAP)
        return self._recursions[key]

    def _series_samples(self, px: _DevicePrepared, py: _DevicePrepared) -> tuple[Any, Any, Any]:
        """The recursion and both sides' device state, at a common series degree."""
        d = px.host.X.shape[1]
        hx, hy = px.host, py.host
        if np.array_equal(hx.deg, hy.deg):
            return self._recursion(d, hx.deg), px.dev, py.dev
        key = (id(hx), id(hy))
        if key not in self._widened:
            deg, cx, ex, cy, ey = self.base._series_pair(hx, hy)
            cu = self._cuda
            xs = cu.DeviceSamples(px.dev.X, hx.a, hx.b, hx.dg, cx, ex)
            ys = cu.DeviceSamples(py.dev.X, hy.a, hy.b, hy.dg, cy, ey)
            self._widened[key] = (deg, xs, ys, hx, hy)  # (keeps hx, hy: ids stay valid)
        deg, xs, ys = self._widened[key][:3]
        return self._recursion(d, deg), xs, ys

    def _buffer(self, key: str, shape: tuple[int, int], dtype: np.dtype) -> Any:
        """A C-contiguous device array of ``shape``, reusing this call's allocation."""
        size = shape[0] * shape[1]
        flat = self._buffers.get((key, dtype.str))
        if flat is None or flat.shape[0] < size:
            flat = self._cuda.device_array((size,), dtype)
            self._buffers[(key, dtype.str)] = flat
        return flat[:size].reshape(shape)

    def _fill(
        self, px: _DevicePrepared, py: _DevicePrepared, out: Any, symmetric: bool
    ) -> None:
        cu = self._cuda
        if self.base._route == "series" and self.base.depth > 0:
            rec, xdev, ydev = self._series_samples(px, py)
            px = _DevicePrepared(px.host, xdev, px.start, px.stop)
            py = _DevicePrepared(py.host, ydev, py.start, py.stop)
        else:
            rec = self._recursion(px.host.X.shape[1])
        if is_device_array(out):
            cu.fill(rec, px.dev, py.dev, px.start, py.start, symmetric, out)
            return
        nr, nc = out.shape
        dt = out.dtype
        rows = max(1, int(cu.out_budget_bytes() // (nc * dt.itemsize)))
        if rows >= nr:
            buf = self._buffer("a", (nr, nc), dt)
            cu.fill(rec, px.dev, py.dev, px.start, py.start, symmetric, buf)
            buf.copy_to_host(out)
            return
        # larger than one device buffer: row chunks (symmetric: each chunk's
        # upper-diagonal block, and the part right of it, mirrored on the host)
        for i0 in range(0, nr, rows):
            i1 = min(nr, i0 + rows)
            if not symmetric:
                buf = self._buffer("a", (i1 - i0, nc), dt)
                cu.fill(rec, px.dev, py.dev, px.start + i0, py.start, False, buf)
                buf.copy_to_host(out[i0:i1])
                continue
            buf = self._buffer("a", (i1 - i0, i1 - i0), dt)
            cu.fill(rec, px.dev, px.dev, px.start + i0, px.start + i0, True, buf)
            out[i0:i1, i0:i1] = buf.copy_to_host()
            if i1 < nr:
                off = self._buffer("b", (i1 - i0, nr - i1), dt)
                cu.fill(rec, px.dev, px.dev, px.start + i0, px.start + i1, False, off)
                h = off.copy_to_host()
                out[i0:i1, i1:] = h
                out[i1:, i0:i1] = h.T


@dataclass(frozen=True)
class NTK(_AnalyticKernel):
    """Neural tangent kernel of an infinitely wide fully connected network.

    ``depth`` hidden layers of ``activation`` followed by a linear readout,
    matching neural-tangents' ``stax`` (Dense/Relu/Erf) exactly.

    Parameters
    ----------
    depth : int, default 1
        Number of hidden layers (0: the linear readout alone).
    activation : str, default "relu"
        Any activation of :class:`kernelcomp.FCNetwork` (``"relu"``,
        ``"relu_unit"``, ``"erf"``, ``"tanh"``, ``"linear"``...), with the same
        definition. ``"relu_unit"`` is ``sqrt(2) max(z, 0)``, the ReLU of unit
        second moment used by Paccolat et al. (2021). ReLU, unit ReLU, erf,
        leaky ReLU, linear and GELU have closed forms (exactly neural-tangents'
        ``stax.Relu``/``Erf``/``LeakyRelu``/``Gelu``); tanh, SiLU, softplus and
        sigmoid are Hermite series exact to 1e-11 of the kernel's scale per
        layer; ELU is computed by quadrature.
    weight_std : float or sequence of float, default 1.0
        sigma_w, one value or one per Dense layer (``depth + 1``).
    bias_std : float, None or sequence, default 0.0
        sigma_b, one value or one per Dense layer; None means no bias
        parameter (differs from 0 only under ``"standard"``).
    parameterization : {"ntk", "standard"}, default "ntk"
    width : int or sequence of int, optional
        Hidden widths, required with ``"standard"`` (its NTK scales with them).
    method : {"auto", "closed_form", "series", "quadrature"}, default "auto"
        How ``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]`` are computed at each
        layer: ``"auto"`` uses the closed form where there is one, the Hermite
        series for the other smooth activations and quadrature otherwise (ELU);
        ``"series"`` (smooth activations) and ``"quadrature"`` (any) force
        those routes, to compare with the closed forms. The series keeps every
        sample's tail energy below 1e-11 of its own ``E[phi^2]`` (and
        ``E[phi'^2]``), which bounds a layer's truncation error by 1e-11 of
        the kernel's scale for every correlation (Cauchy-Schwarz); its degree
        grows with the pre-activation variance (tanh: ~110 at 1, ~1000 at 10).
    quadrature_nodes : int, default 24
        ``n``, 2 to 200: Gauss-Legendre nodes per sector in the angle and Gauss
        nodes of the weight ``r exp(-r^2/2)`` in the radius, ``4 n^2`` points
        per pair and layer. The integrals are split where ``u`` or ``v``
        changes sign, so kinks at 0 cost no accuracy: positively homogeneous
        activations (the ReLU family, linear) come out exact to ~1e-15, and
        smooth ones to about 1e-10 with the default when the pre-activation
        variances are <= 2 (3e-9 up to 4; the error grows with the variance).
        The cost grows as ``n^2``: with the default, about 50 us (erf, tanh
        NNGP) to 100 us (tanh NTK) per entry and layer on one thread
        (``scripts/bench_quadrature.py``). Unused by the closed forms and the
        series.

    Notes
    -----
    Kernels are immutable, hashable, comparable and picklable. Call ``k(X)``,
    ``k(X, Y)``, ``k.diag(X)`` or use :func:`kernelcomp.gram` for large,
    progress-reporting or out-of-core matrices. Degenerate inputs (zero rows
    without bias, duplicated rows, correlations at +-1) give finite values and
    identical rows reproduce the diagonal exactly.

    References
    ----------
    Jacot, Gabriel, Hongler (2018), *Neural Tangent Kernel*; Novak et al. (2020),
    *Neural Tangents*; Paccolat et al. (2021), §2 (the kernels compared with
    the trained network's).

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((4, 3))
    >>> K = kc.NTK(depth=2, bias_std=0.1)(X)
    >>> K.shape
    (4, 4)
    >>> bool(np.allclose(np.diag(K), kc.NTK(depth=2, bias_std=0.1).diag(X)))
    True
    >>> kc.NTK(depth=2, activation="tanh")(X).shape  # by its Hermite series
    (4, 4)
    """

    _ntk: ClassVar[bool] = True


@dataclass(frozen=True)
class NNGP(_AnalyticKernel):
    """NNGP kernel (output covariance at initialisation) of an infinitely wide network.

    Same parameters and conventions as :class:`NTK`; ``NNGP`` is the covariance
    ``S(L+1)`` of the readout, i.e. the Gaussian-process prior of the network.

    Parameters
    ----------
    depth : int, default 1
    activation : str, default "relu"
        Any activation of :class:`kernelcomp.FCNetwork` (routes as for
        :class:`NTK`).
    weight_std : float or sequence of float, default 1.0
    bias_std : float, None or sequence, default 0.0
    parameterization : {"ntk", "standard"}, default "ntk"
    width : int or sequence of int, optional
        Accepted with ``"standard"`` for symmetry with :class:`NTK` (unused).
    method : {"auto", "closed_form", "series", "quadrature"}, default "auto"
    quadrature_nodes : int, default 24
        As for :class:`NTK`.

    References
    ----------
    Lee et al. (2018), *Deep neural networks as Gaussian processes*.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((4, 3))
    >>> kc.NNGP(depth=1)(X).shape
    (4, 4)
    """

    _ntk: ClassVar[bool] = False
