"""Analytic kernels of infinitely wide convolutional networks: ``ConvNTK`` and ``ConvNNGP``.

The network is a list of layers applied to images of shape ``(H, W, C)``:

``"conv"`` (3 x 3) or ``"convK"`` (K odd)
    Convolution, stride 1, ``padding="same"`` (zeros), weights ``N(0, sw^2 /
    (K^2 C_in))`` and biases ``N(0, sb^2)`` in the NTK parameterisation.
``"relu"``, ``"relu_unit"``, ``"leaky_relu"``, ``"erf"``, ``"gelu"``, ``"elu"``, ``"linear"``
    The activations with closed forms, the same names and definitions as in
    :class:`kernelcomp.NTK` (``"relu_unit"`` is ``sqrt(2) max(z, 0)``,
    ``"leaky_relu"`` ``max(z, 0.01 z)``, ``"gelu"`` ``z Phi(z)``, ``"elu"``
    ``z`` for ``z > 0`` and ``e^z - 1`` else); their expectations are the FC
    kernels' closed forms, entry by entry. ELU's hold to pre-activation
    variances of about 350 (beyond, its factors ``e^S`` overflow: refused).
``"avgpool"`` (2 x 2) or ``"avgpoolK"``
    Average pooling, stride = size, valid (a ragged last row or column is dropped).
``"global_avgpool"``, ``"flatten"``
    The reduction of the image to a vector: the mean over positions, or all
    positions side by side.
``"dense"``
    A fully connected layer (after the reduction); the last layer must be one
    (the readout).

With ``S`` the covariance of two images over positions ``p = (i, j)`` and ``p'``
and ``T`` the tangent kernel (neural-tangents' ``stax`` conventions; Novak et
al. 2019, Arora et al. 2019):

.. code-block:: text

    input:    S[p, p'] = x[p] . x'[p'] / C,                          T = 0
    conv:     S <- sw^2 mean_{|d| <= K//2} S[p + d, p' + d] + sb^2     (zero outside)
              T <- S + sw^2 mean_{|d| <= K//2} T[p + d, p' + d]
    act:      S <- K(S),  T <- Kdot(S) T    with the variances S[p, p], S'[p', p']
    avgpool:  S, T <- their means over the two windows
    global_avgpool: S, T <- their means over all (p, p');  flatten: over p = p'
    dense:    S <- sw^2 S + sb^2,  T <- S + sw^2 T

``ConvNNGP`` is the final ``S``, ``ConvNTK`` the final ``T``. The compiled core
(:mod:`kernelcomp._kernels.conv`) computes each pair once, offset by offset,
and only the offsets the output depends on (a network without pooling that
ends in ``"flatten"`` needs the spatial diagonal alone).

Precision. The recursion runs in float64, and float32 inputs give float32 Grams
of the float64 recursion (within ~1e-7 of float64), with two exceptions: a
float32 Gram (float32 inputs, or ``dtype=np.float32``) of a network that ends in
global average pooling with zero padding (the Myrtle family), or of a network
without pooling (``"flatten"``, the spatial diagonal alone), runs a float32
recursion, faster per pair on a CPU core (8 float32 lanes per vector instead of
4 float64 ones; the measured gains are in the changelog). Its error, relative to
the float64 kernel:

* Every covariance entry carries the float32 rounding of the sums and closed
  forms that made it, a few units of ``u = 2^-24`` (6e-8) per layer, and the
  NNGP's closed form ``K(rho)`` has a bounded slope (``dK/drho = Kdot <= 1``):
  the NNGP is within ~1e-7.
* The NTK's ``Kdot = (pi - theta)/(2 pi)``, ``theta = acos(rho)``, has the
  slope ``1/(2 pi sin theta)``, unbounded at ``|rho| = 1``: an error ``delta`` of
  ``d = 1 - |rho|`` moves ``Kdot`` by ``~delta / (2 pi theta)`` with
  ``theta ~ sqrt(2 d)``. ``d`` is computed from the float64 per-sample factors
  and rounded once, so ``delta`` is the covariance's own rounding (a few ``u``
  relative), not the float32 spacing near 1 (``u``) nor the factors'; below
  ``d = u`` the correlation is rounding noise and is snapped to 1 (``theta = 0``).
  The worst entry is then off by ``~sqrt(2 u)/(2 pi)``, about 5e-5 of
  ``Kdot``'s range: at positions where the two images are nearly proportional
  (near-duplicate images, a scaled copy). Averaged over all pairs of
  positions by the pooling, the NTK is within ~1e-7 for distinct images and
  ~1e-5 for near-duplicates (the measured figures, and neural-tangents' own
  float32 error, are in the changelog).
* Without pooling the readout averages the spatial diagonal alone, the ``H W``
  positions' ``S(x_p, y_p)``, not all ``(H W)^2`` pairs of positions. Between
  near-duplicate images nearly every position sits where ``Kdot`` is steepest,
  at once: at each, and at each ReLU layer, ``Kdot`` (``>= 1/2`` there) may be
  off by up to ``~sqrt(2 snap)/(2 pi)`` (``snap = 2u``: the largest ``theta``
  not snapped), ~1.6e-4 relative, and the NTK's products of ``L`` layers' ``Kdot``
  by ``~L`` times that at worst (~5e-4 for three ReLU layers); the positions'
  errors have both signs, and near-duplicates measure ~1e-5 to ~1e-4. Between
  distinct images only the positions where the two images' windows are nearly
  proportional (strokes crossing the same pixels) carry that error, weighted by
  their share of the ``H W``: ~1e-7 to ~1e-6. The NNGP stays within ~1e-7.
* Identical images reproduce the diagonal exactly (the per-sample pass runs the
  same float32 recursion), the Gram is symmetric, and sums over all positions
  (global average pooling) are accumulated in float64.

Ask for ``dtype=np.float64`` for the float64 recursion (to ~1e-15).

On an NVIDIA GPU (numba-cuda, ``pip install 'kernelcomp[cuda]'``),
``k(X, device="cuda")`` and ``kc.gram(k, X, device="cuda")`` compute the pairs
with one CUDA thread per pair running the same recursion, operation for
operation (:mod:`kernelcomp._kernels.cuda_conv`); the per-sample pass stays on
the CPU. Inputs and ``out`` may be device arrays, as for :class:`kernelcomp.NTK`;
without numba-cuda or a device, ``device="cuda"`` raises a RuntimeError that
says which. Each pair needs ``8 (3 (H+2r)(W+2r) + 2 s)`` bytes of device
scratch (``s``: the pooled covariances, ~2.4 MB for Myrtle-5 on 28 x 28 images),
and a launch takes as many pairs as half the free device memory holds.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kernelcomp import _conv_cuda
from kernelcomp._base import Kernel
from kernelcomp._kernels import conv as _core
from kernelcomp._parallel import active_ticks
from kernelcomp._validation import check_int, check_real, result_dtype

__all__ = ["ConvNNGP", "ConvNTK"]

#: activations with closed forms (those of kc.NTK): code of the core and the scale^2 of phi
_ACTIVATIONS = {
    "relu": (_core.RELU, 1.0),
    "relu_unit": (_core.RELU, 2.0),
    "leaky_relu": (_core.LEAKY_RELU, 1.0),
    "erf": (_core.ERF, 1.0),
    "gelu": (_core.GELU, 1.0),
    "elu": (_core.ELU, 1.0),
    "linear": (_core.LINEAR, 1.0),
}
_EPS64 = float(np.finfo(np.float64).eps)
_SQRT2 = math.sqrt(2.0)
#: correlations within this distance of +-1 are rounding noise and snap to +-1
_SNAP = 32.0 * _EPS64
#: the same for the float32 recursion (slab layout, spatial diagonal): float32 covariances
_SNAP32 = float(np.finfo(np.float32).eps)
#: depth -> conv-relu blocks at each of the three resolutions (Shankar et al. 2020)
_MYRTLE = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}
_PADDINGS = ("same", "circular")
_LAYER_HELP = (
    "'conv' or 'convK' (K odd), an activation ("
    + ", ".join(repr(a) for a in _ACTIVATIONS)
    + "), 'avgpool' or 'avgpoolK', 'global_avgpool', 'flatten', 'dense'"
)


@dataclass(frozen=True)
class _Layer:
    kind: str  # conv, act, pool, gap, flatten, dense
    size: int = 0  # filter or window size
    activation: str = ""


def _parse_layer(spec: Any, index: int) -> _Layer:
    if not isinstance(spec, str):
        raise TypeError(
            f"layers[{index}] must be a string ({_LAYER_HELP}), got {type(spec).__name__}"
        )
    name = spec.strip().lower()
    if name in _ACTIVATIONS:
        return _Layer("act", activation=name)
    if name in ("global_avgpool", "flatten", "dense"):
        return _Layer({"global_avgpool": "gap"}.get(name, name))
    m = re.fullmatch(r"(conv|avgpool)(\d*)", name)
    if m is None:
        raise ValueError(f"unknown layer {spec!r} at layers[{index}]; expected {_LAYER_HELP}")
    size = int(m.group(2)) if m.group(2) else (3 if m.group(1) == "conv" else 2)
    if m.group(1) == "conv":
        if size % 2 == 0 or size < 1:
            raise ValueError(
                f"layers[{index}] = {spec!r}: convolutions need an odd filter size "
                f"(padding 'same' centres the filter), got {size}"
            )
        return _Layer("conv", size)
    if size < 1:
        raise ValueError(f"layers[{index}] = {spec!r}: the pooling window must be >= 1")
    return _Layer("pool", size)


def _parse_layers(layers: Any) -> tuple[_Layer, ...]:
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise TypeError(
            f"layers must be a list of layer names ({_LAYER_HELP}), got {type(layers).__name__}"
        )
    parsed = tuple(_parse_layer(s, i) for i, s in enumerate(layers))
    if not parsed:
        raise ValueError(
            "layers is empty; a network needs at least a reduction and a dense readout"
        )
    reductions = [i for i, lay in enumerate(parsed) if lay.kind in ("gap", "flatten")]
    if len(reductions) != 1:
        raise ValueError(
            "layers must reduce the image to a vector exactly once ('global_avgpool' or "
            f"'flatten'), found {len(reductions)}"
        )
    r = reductions[0]
    for i, lay in enumerate(parsed):
        if i < r and lay.kind == "dense":
            raise ValueError(
                f"layers[{i}] is 'dense' before the reduction at layers[{r}]; dense layers "
                "act on vectors: put 'flatten' or 'global_avgpool' first"
            )
        if i > r and lay.kind in ("conv", "pool"):
            raise ValueError(
                f"layers[{i}] ({lay.kind}) comes after the reduction to a vector at layers[{r}]"
            )
    if parsed[-1].kind != "dense":
        raise ValueError("the last layer must be 'dense' (the readout)")
    return parsed


def _n_weighted(layers: tuple[_Layer, ...]) -> int:
    return sum(lay.kind in ("conv", "dense") for lay in layers)


def _expand_std(value: Any, name: str, n: int, *, allow_none: bool) -> tuple[float, ...]:
    """One value per weighted layer (conv and dense)."""
    if value is None and allow_none:
        return (0.0,) * n
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (check_real(value, name, minimum=0.0),) * n
    if isinstance(value, str) or not hasattr(value, "__len__"):
        raise TypeError(
            f"{name} must be a number or a sequence of {n} numbers (one per conv/dense "
            f"layer), got {type(value).__name__}"
        )
    values = list(np.asarray(value, dtype=object).ravel())
    if len(values) != n:
        raise ValueError(
            f"{name} must have one value per conv/dense layer ({n}), got {len(values)}"
        )
    return tuple(
        0.0 if (v is None and allow_none) else check_real(v, f"{name}[{i}]", minimum=0.0)
        for i, v in enumerate(values)
    )


def _check_image_shape(shape: Any, name: str = "image_shape") -> tuple[int, int, int]:
    if isinstance(shape, str) or not hasattr(shape, "__len__") or len(shape) != 3:
        raise ValueError(f"{name} must be (height, width, channels), got {shape!r}")
    return tuple(check_int(v, f"{name}[{i}]", minimum=1) for i, v in enumerate(shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class _Program:
    """The layer list compiled for one image shape (tables of :mod:`kernelcomp._kernels.conv`)."""

    ops: np.ndarray
    opf: np.ndarray
    stages: np.ndarray
    work: np.ndarray
    store: int
    n_factors: int
    diagonal_only: bool
    slab: bool  # all offsets, in the slab layout (:func:`kernelcomp._kernels.conv.pair_slab`)
    circular: bool


@dataclass(frozen=True)
class _Prepared:
    X: np.ndarray  # (n, H, W, C)
    fa: np.ndarray  # (n, F) activation factors
    fb: np.ndarray
    dg: np.ndarray  # (n,) diagonal, float64

    @property
    def n(self) -> int:
        return self.X.shape[0]


@dataclass(frozen=True)
class _ConvKernel(Kernel):
    """Shared implementation of :class:`ConvNTK` and :class:`ConvNNGP`."""

    layers: Any = ()
    image_shape: Any = None
    weight_std: Any = 1.0
    bias_std: Any = 0.0
    padding: str = "same"

    _ntk: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.padding, str) or self.padding.strip().lower() not in _PADDINGS:
            raise ValueError(
                f"padding must be one of {list(_PADDINGS)} (zeros, or the image wrapped "
                f"around as a torus), got {self.padding!r}"
            )
        object.__setattr__(self, "padding", self.padding.strip().lower())
        parsed = _parse_layers(self.layers)
        object.__setattr__(self, "layers", tuple(str(s).strip().lower() for s in self.layers))
        n = _n_weighted(parsed)
        ws = _expand_std(self.weight_std, "weight_std", n, allow_none=False)
        bs = _expand_std(self.bias_std, "bias_std", n, allow_none=True)
        scalar = isinstance(self.weight_std, numbers.Real) and not isinstance(self.weight_std, bool)
        object.__setattr__(self, "weight_std", ws[0] if scalar else ws)
        scalar = self.bias_std is None or (
            isinstance(self.bias_std, numbers.Real) and not isinstance(self.bias_std, bool)
        )
        object.__setattr__(self, "bias_std", bs[0] if scalar else bs)
        if self.image_shape is not None:
            shape = _check_image_shape(self.image_shape)
            object.__setattr__(self, "image_shape", shape)
            self._program(shape)  # refuses shapes the pools cannot take, now
            object.__setattr__(self, "n_features_in", shape[0] * shape[1] * shape[2])

    # -- the compiled program ------------------------------------------------------
    def _program(self, shape: tuple[int, int, int], slab_ok: bool = True) -> _Program:
        """The compiled program of this network for images of ``shape``.

        ``slab_ok=False`` keeps the offset-by-offset layout of the pooled
        storage (the one the CUDA kernel runs) where the CPU core would use the
        slab layout.
        """
        H, W, _ = shape
        circular = self.padding == "circular"
        parsed = _parse_layers(self.layers)
        n = _n_weighted(parsed)
        ws = _expand_std(self.weight_std, "weight_std", n, allow_none=False)
        bs = _expand_std(self.bias_std, "bias_std", n, allow_none=True)
        ops: list[tuple[int, int, int]] = []
        opf: list[tuple[float, float]] = []
        # stage: [op_start, op_end, H, W, Ru, Rv, store, pad]
        stages: list[list[int]] = [[0, -1, H, W, 0, 0, 0, 0]]
        n_factors = 0
        wi = 0
        h, w = H, W
        reduced = False
        for idx, lay in enumerate(parsed):
            if lay.kind == "conv":
                if circular and lay.size > min(h, w):
                    raise ValueError(
                        f"layers[{idx}] = 'conv{lay.size}' is larger than the {h}x{w} image it "
                        f"filters (image_shape {tuple(shape)}); circular padding wraps the "
                        "image once at most"
                    )
                ops.append((_core.CONV, lay.size, 0))
                opf.append((ws[wi] ** 2, bs[wi] ** 2))
                wi += 1
                stages[-1][7] = max(stages[-1][7], lay.size // 2)
            elif lay.kind == "dense":
                ops.append((_core.DENSE, 0, 0))
                opf.append((ws[wi] ** 2, bs[wi] ** 2))
                wi += 1
            elif lay.kind == "act":
                code, scale2 = _ACTIVATIONS[lay.activation]
                ops.append((_core.ACT, code, n_factors))
                opf.append((scale2, 0.0))
                n_factors += 1 if reduced else h * w
            elif lay.kind == "pool":
                k = lay.size
                if h // k < 1 or w // k < 1:
                    raise ValueError(
                        f"layers[{idx}] = 'avgpool{k}' cannot pool a {h}x{w} image (image_shape "
                        f"{tuple(shape)}): it needs at least {k}x{k}"
                    )
                ops.append((_core.POOL, k, 0))
                opf.append((0.0, 0.0))
                stages[-1][1] = len(ops) - 1
                h, w = h // k, w // k
                stages.append([len(ops), -1, h, w, 0, 0, 0, 0])
            else:  # gap / flatten
                ops.append((_core.GAP if lay.kind == "gap" else _core.FLATTEN, 0, 0))
                opf.append((0.0, 0.0))
                stages[-1][1] = len(ops) - 1
                reduced = True
        # offsets each stage needs, from the output backwards
        last = stages[-1]
        if ops[last[1]][0] == _core.GAP:
            last[4], last[5] = last[2] - 1, last[3] - 1
        for s in range(len(stages) - 2, -1, -1):
            k = ops[stages[s][1]][1]
            nxt = stages[s + 1]
            stages[s][4] = min(stages[s][2] - 1, k * nxt[4] + k - 1)
            stages[s][5] = min(stages[s][3] - 1, k * nxt[5] + k - 1)
        diagonal_only = all(st[4] == 0 and st[5] == 0 for st in stages)
        # global average pooling needs (nearly) every offset: the slab layout, all of them
        # at once in long loops; circular padding runs in the slab layout only (the
        # offset-by-offset walk pads with zeros), even where the diagonal would suffice
        slab = slab_ok and (circular or (not diagonal_only and ops[last[1]][0] == _core.GAP))
        store = 0
        for st in stages[1:]:
            st[6] = store
            if slab:  # pooled offsets U (2H - 1, or H wrapping), rows, W x W slabs
                store += (st[2] if circular else 2 * st[2] - 1) * st[2] * st[3] * st[3]
            else:
                store += (2 * st[4] + 1) * (2 * st[5] + 1) * st[2] * st[3]
        rows = max(st[2] + 2 * st[7] for st in stages)
        cols = max(st[3] + 2 * st[7] for st in stages)
        return _Program(
            ops=np.array(ops, dtype=np.int64).reshape(-1, 3),
            opf=np.array(opf, dtype=np.float64).reshape(-1, 2),
            stages=np.array(stages, dtype=np.int64),
            work=np.array([rows, cols], dtype=np.int64),
            store=int(store),
            n_factors=max(1, n_factors),
            diagonal_only=diagonal_only,
            slab=slab,
            circular=circular,
        )

    # -- inputs -------------------------------------------------------------------
    def _check_input(
        self, X: Any, name: str, n_features: Any = None
    ) -> np.ndarray:
        """Validate images: ``(n, H, W, C)``, or ``(n, H*W*C)`` rows with ``image_shape``.

        Returns a C-contiguous ``(n, H, W, C)`` float32/float64 array. ``n_features``
        may be an image shape ``(H, W, C)`` the images must have (that of ``X``
        when checking ``Y``).
        """
        shape = self.image_shape if n_features is None else n_features
        if isinstance(shape, int):  # a flat width from a caller that knows rows only
            shape = self.image_shape
        ndim = np.ndim(X) if not hasattr(X, "ndim") else X.ndim
        if ndim == 4:
            arr = np.asarray(X)
            if shape is not None and tuple(arr.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"{name} holds images of shape {tuple(arr.shape[1:])}, but "
                    f"{tuple(shape)} are expected"
                )
            img = tuple(int(v) for v in arr.shape[1:])
            if min(img, default=0) < 1:
                raise ValueError(f"{name} has an empty image shape {img}")
            flat = super()._check_input(arr.reshape(arr.shape[0], -1), name, int(np.prod(img)))
            return flat.reshape((flat.shape[0], *img))
        if ndim == 2:
            if shape is None:
                raise ValueError(
                    f"{name} is a 2-D array of flattened images, but the kernel has no "
                    "image_shape: pass image_shape=(H, W, C) or images of shape (n, H, W, C)"
                )
            d = int(np.prod(shape))
            flat = super()._check_input(X, name, d)
            return flat.reshape((flat.shape[0], *shape))
        raise ValueError(
            f"{name} must be images of shape (n, H, W, C) or flattened rows (n, H*W*C), got "
            f"a {ndim}-D array of shape {np.shape(X)}"
            + ("; add a channel axis with X[..., None]" if ndim == 3 else "")
        )

    def _gram_inputs(
        self, X: Any, Y: Any, dtype: Any
    ) -> tuple[np.ndarray, np.ndarray | None, np.dtype]:
        X = self._check_input(X, "X")
        Yc = None if Y is None else self._check_input(Y, "Y", X.shape[1:])
        dt = result_dtype(X, Yc, dtype=dtype)
        X = X.astype(dt, copy=False)
        if Yc is not None:
            Yc = Yc.astype(dt, copy=False)
        return X, Yc, dt

    # -- hooks --------------------------------------------------------------------
    def _prepare(self, X: np.ndarray, slab_ok: bool = True) -> _Prepared:
        prog = self._program(X.shape[1:], slab_ok)
        n = X.shape[0]
        fa = np.zeros((n, prog.n_factors), dtype=np.float64)
        fb = np.zeros((n, prog.n_factors), dtype=np.float64)
        dg = np.empty(n, dtype=np.float64)
        gram_dtype = X.dtype
        # the float32 recursion on the CPU only (slab_ok): the CUDA kernel runs the
        # float64 one, and the diagonal must be that of the recursion the pairs run
        f32 = slab_ok and self._float32_recursion(prog, X.dtype)
        # the float64 recursion: a float64 copy of float32 images (n * H * W * C * 8
        # bytes) lets the core compile for one input dtype, not two (minutes of
        # compile each), with the same values (products are formed in float64)
        X = np.ascontiguousarray(X, dtype=np.float32 if f32 else np.float64)
        _core.prepare(
            X, prog.ops, prog.opf, prog.stages, prog.work, prog.store, _SNAP32 if f32 else _SNAP,
            self._ntk, prog.slab, prog.circular, fa, fb, dg, gram_dtype=gram_dtype,
        )
        if not np.all(np.isfinite(dg)):
            # every entry is bounded by its diagonal values (Cauchy-Schwarz, and for ELU
            # e^{S12} <= e^{(S11 + S22)/2}): finite diagonals, finite pairs
            hint = (
                " (ELU's closed form holds to pre-activation variances of about 350: its "
                "factors e^S overflow beyond)" if "elu" in self.layers else ""
            )
            raise ValueError(
                f"{self!r} overflows on these inputs: the recursion of "
                f"{int(np.sum(~np.isfinite(dg)))} of {n} images is not finite in float64; "
                f"the variances grow like weight_std**2 per layer: lower weight_std or depth, "
                f"or rescale the inputs{hint}"
            )
        return _Prepared(X, fa, fb, dg)

    @staticmethod
    def _float32_recursion(prog: _Program, dtype: np.dtype) -> bool:
        """Whether a Gram of ``dtype`` runs the float32 recursion.

        float32 Grams of networks in the slab layout (global average pooling) with
        zero padding (:func:`_core.slab_tiles`) and of networks without pooling
        (:func:`_core.diag_tiles`); every other Gram runs the float64 recursion.
        """
        return np.dtype(dtype) == np.float32 and (
            (prog.slab and not prog.circular) or _core.diag_layout(prog.stages, prog.slab)
        )

    def _take(self, prep: _Prepared, start: int, stop: int) -> _Prepared:
        return _Prepared(
            prep.X[start:stop], prep.fa[start:stop], prep.fb[start:stop], prep.dg[start:stop]
        )

    def _fill(self, px: _Prepared, py: _Prepared, out: np.ndarray, symmetric: bool) -> None:
        prog = self._program(px.X.shape[1:])
        # a pair costs microseconds on the diagonal alone, milliseconds with pooling
        tile = 32 if prog.diagonal_only else 4
        # _prepare kept float32 images for the float32 recursion alone
        snap = _SNAP32 if px.X.dtype == np.float32 else _SNAP
        _core.fill(
            px.X, py.X, px.fa, px.fb, px.dg, py.fa, py.fb, prog.ops, prog.opf, prog.stages,
            prog.work, prog.store, snap, self._ntk, prog.slab, prog.circular, symmetric,
            tile, out, active_ticks(), False,
        )

    def _diag(self, px: _Prepared) -> np.ndarray:
        return px.dg

    def _cuda_backend(self) -> Kernel:
        # device="cuda": the one-thread-per-pair CUDA kernel (kernelcomp._conv_cuda)
        return _conv_cuda.cuda_backend(self, _SNAP)

    # -- description ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON description: ``{"kernel": "ConvNTK", "params": {...}}``."""

        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {
            "kernel": type(self).__name__,
            "params": {
                "layers": list(self.layers),
                "image_shape": plain(self.image_shape),
                "weight_std": plain(self.weight_std),
                "bias_std": plain(self.bias_std),
                "padding": self.padding,
            },
        }

    @staticmethod
    def from_dict(desc: dict[str, Any]) -> _ConvKernel:
        """Rebuild a kernel from :meth:`to_dict`'s output."""
        classes = {"ConvNTK": ConvNTK, "ConvNNGP": ConvNNGP}
        name = desc.get("kernel")
        if name not in classes:
            raise ValueError(
                f"unknown kernel {name!r} in description; expected ConvNTK or ConvNNGP"
            )
        params = dict(desc.get("params", {}))
        for key in ("image_shape", "weight_std", "bias_std", "layers"):
            if isinstance(params.get(key), list):
                params[key] = tuple(params[key])
        return classes[name](**params)

    @classmethod
    def myrtle(
        cls,
        depth: int = 5,
        image_shape: Any = None,
        weight_std: Any = _SQRT2,
        bias_std: Any = 0.0,
    ) -> _ConvKernel:
        """The Myrtle architectures of Shankar et al. (2020).

        Three resolutions of 3 x 3 conv-ReLU blocks, 2 x 2 average pools between
        them, global average pooling and a dense readout: depth 5 is conv-relu x 2,
        pool, conv-relu, pool, conv-relu (``myrtle5_mnist`` for 28 x 28 images);
        depth 7 has two blocks at each resolution, depth 10 three.

        Parameters
        ----------
        depth : {5, 7, 10}, default 5
        image_shape : tuple of int (H, W, C), optional
            Needed for flattened inputs; at least 4 x 4.
        weight_std, bias_std : float or sequence of float
            Default ``sqrt(2)`` and 0, as in the paper.

        Returns
        -------
        ConvNTK or ConvNNGP

        References
        ----------
        Shankar, Fang, Guo, Fridovich-Keil, Schmidt, Ragan-Kelley, Recht (2020),
        *Neural kernels without tangents*, ICML (section 3, the Myrtle family).

        Examples
        --------
        >>> import kernelcomp as kc
        >>> k = kc.ConvNTK.myrtle(depth=5, image_shape=(28, 28, 1))
        >>> k.layers[:5]
        ('conv', 'relu', 'conv', 'relu', 'avgpool')
        """
        depth = check_int(depth, "depth")
        if depth not in _MYRTLE:
            raise ValueError(f"depth must be one of {sorted(_MYRTLE)} for Myrtle, got {depth}")
        a, b, c = _MYRTLE[depth]
        layers = (
            ["conv", "relu"] * a
            + ["avgpool"]
            + ["conv", "relu"] * b
            + ["avgpool"]
            + ["conv", "relu"] * c
            + ["global_avgpool", "dense"]
        )
        return cls(
            layers=tuple(layers), image_shape=image_shape, weight_std=weight_std,
            bias_std=bias_std,
        )


@dataclass(frozen=True)
class ConvNTK(_ConvKernel):
    """Neural tangent kernel of an infinitely wide convolutional network (CNTK).

    Exactly neural-tangents' ``stax`` kernel of the same architecture in the NTK
    parameterisation (``stax.Conv(N, (K, K), padding="SAME")``, ``stax.Relu()``,
    ``stax.LeakyRelu(0.01)``, ``stax.Erf()``, ``stax.Gelu(approximate=False)``,
    ``stax.Identity()`` for ``"linear"``, ``stax.AvgPool((k, k), (k, k))``,
    ``stax.GlobalAvgPool()``, ``stax.Flatten()``, ``stax.Dense(N)``), computed in
    float64 (float32 Grams of globally pooled networks and of networks without
    pooling: a float32 recursion, see
    :mod:`kernelcomp.convolutional`, "Precision"). (neural-tangents has no ELU
    layer; ``"elu"`` is the closed form of
    :class:`kernelcomp.NTK`'s ``activation="elu"``.)

    Parameters
    ----------
    layers : sequence of str
        The network, e.g. ``["conv", "relu", "conv", "relu", "flatten", "dense"]``:
        ``"conv"``/``"convK"`` (K odd, stride 1, zero "same" padding), the
        activations with closed forms of :class:`kernelcomp.NTK` (``"relu"``,
        ``"relu_unit"``, ``"leaky_relu"``, ``"erf"``, ``"gelu"``, ``"elu"``,
        ``"linear"``; same definitions), ``"avgpool"``/``"avgpoolK"``
        (stride K, valid), then exactly one of ``"global_avgpool"`` and
        ``"flatten"``, then dense layers (and activations); the last layer is
        ``"dense"``.
    image_shape : tuple of int (H, W, C), optional
        Shape of one image. Needed for inputs given as flattened rows
        ``(n, H*W*C)`` in C order (e.g. ``X.reshape(n, -1)`` of ``(n, H, W, C)``
        images, and inside estimators); images ``(n, H, W, C)`` may be passed
        without it.
    weight_std : float or sequence of float, default 1.0
        sigma_w, one value or one per conv/dense layer in order.
    bias_std : float, None or sequence, default 0.0
        sigma_b, likewise (None: no bias).
    padding : {"same", "circular"}, default "same"
        Border of every convolution: zeros (neural-tangents' ``"SAME"``), or
        the image wrapped around as a torus (``"circular"``; then a network
        ending in global average pooling gives the same kernel for circular
        shifts of either image). Filters may not be larger than the image
        they filter with ``"circular"``.

    Notes
    -----
    Cost per pair of images: O(HW) per layer when the network has no pooling
    and ends in ``"flatten"``; O((HW)^2) per layer at the resolutions where the
    output depends on all pairs of positions (pooling, global average pooling).
    Kernels are immutable, hashable, comparable and picklable, and work with
    :func:`kernelcomp.gram`, the estimators and the diagnostics like
    :class:`kernelcomp.NTK`.

    References
    ----------
    Arora, Du, Hu, Li, Salakhutdinov, Wang (2019), *On exact computation with an
    infinitely wide neural net* (the CNTK); Novak et al. (2019), *Bayesian deep
    convolutional networks with many channels are Gaussian processes*; Novak et
    al. (2020), *Neural Tangents*.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((3, 6, 6, 1))
    >>> k = kc.ConvNTK(["conv", "relu", "avgpool", "conv", "relu", "global_avgpool", "dense"])
    >>> K = k(X)
    >>> K.shape, bool(np.allclose(np.diag(K), k.diag(X)))
    ((3, 3), True)
    """

    _ntk: ClassVar[bool] = True


@dataclass(frozen=True)
class ConvNNGP(_ConvKernel):
    """NNGP kernel (CNN-GP) of an infinitely wide convolutional network.

    Same parameters and conventions as :class:`ConvNTK`; the covariance of the
    readout at initialisation.

    Parameters
    ----------
    layers : sequence of str
    image_shape : tuple of int (H, W, C), optional
    weight_std : float or sequence of float, default 1.0
    bias_std : float, None or sequence, default 0.0
    padding : {"same", "circular"}, default "same"
        As for :class:`ConvNTK`.

    References
    ----------
    Novak et al. (2019), *Bayesian deep convolutional networks with many
    channels are Gaussian processes*; Garriga-Alonso, Rasmussen, Aitchison
    (2019), *Deep convolutional networks as shallow Gaussian processes*.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((3, 8 * 8))
    >>> kc.ConvNNGP.myrtle(5, image_shape=(8, 8, 1))(X).shape
    (3, 3)
    """

    _ntk: ClassVar[bool] = False
