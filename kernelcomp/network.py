"""Finite fully connected networks: weights, forward pass, backprop, checkpoints.

:class:`FCNetwork` holds the weights of a fully connected network as plain
NumPy arrays together with per-layer multipliers, so that one class covers the
usual parameterizations:

.. code-block:: text

    a_0 = x
    z_l = c_l * a_l @ W_l.T + s_l * b_l        l = 0 .. L   (W_l: (n_l, n_{l-1}))
    a_{l+1} = phi(z_l)                          l = 0 .. L-1
    f(x) = z_L                                  (readout, no activation)

- ``"ntk"``: ``c_l = weight_std_l / sqrt(n_{l-1})``, ``s_l = bias_std_l``;
  parameters initialised N(0, 1) (the network of ``kc.NTK`` with the same stds).
- ``"mean_field"``: hidden ``c_l = 1 / sqrt(n_{l-1})``, readout ``c_L = 1 / h``,
  ``s_l = 1``, no readout bias; W ~ N(0, weight_std^2), b ~ N(0, bias_std^2).
- ``"standard"``: ``c_l = s_l = 1`` (weights used as stored, e.g. from PyTorch);
  W ~ N(0, weight_std^2 / n_{l-1}), b ~ N(0, bias_std^2).

The paper's network (Paccolat et al. 2021, §2) is
``FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field")``:
``f(x) = (1/h) sum_n beta_n sigma(omega_n . x / sqrt(d) + b_n)`` with omega, b, beta
~ N(0, 1), ``sigma(z) = sqrt(2) max(z, 0)`` and no readout bias.

Weights are stored as C-contiguous float64 arrays; computations run in float64.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kernelcomp._h5 import NETWORK_FORMAT, atomic_write, stamp
from kernelcomp._validation import check_int, check_matrix, check_real

__all__ = ["ACTIVATIONS", "PARAMETERIZATIONS", "FCNetwork", "ForwardCache"]

#: supported activations; ``"relu_unit"`` is sqrt(2) * max(z, 0), the ReLU with
#: unit second moment under N(0, 1) used in the paper
ACTIVATIONS: tuple[str, ...] = ("relu", "relu_unit", "erf", "tanh", "linear")
#: supported parameterizations (see the module docstring)
PARAMETERIZATIONS: tuple[str, ...] = ("ntk", "mean_field", "standard")

#: name and version of the on-disk encoding (HDF5 group attributes / npz keys)
ENCODING = "fcnetwork"
ENCODING_VERSION = "1.0"

_SQRT2 = math.sqrt(2.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
def check_activation(activation: Any, name: str = "activation") -> str:
    """Validate an activation name (case-insensitive) and return it lower-case.

    Raises
    ------
    TypeError
        If ``activation`` is not a string.
    ValueError
        If it is not one of :data:`ACTIVATIONS`.
    """
    if not isinstance(activation, str):
        raise TypeError(
            f"{name} must be a string, one of {list(ACTIVATIONS)}, got {type(activation).__name__}"
        )
    act = activation.strip().lower()
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown {name} {activation!r}; expected one of {list(ACTIVATIONS)}")
    return act


def activate(activation: str, z: np.ndarray) -> np.ndarray:
    """phi(z) for a validated activation name (a new array, dtype of ``z``)."""
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "relu_unit":
        out = np.maximum(z, 0)
        out *= _SQRT2
        return out
    if activation == "tanh":
        return np.tanh(z)
    if activation == "erf":
        from scipy.special import erf

        return erf(z)
    return z.copy()  # linear


def activate_grad(activation: str, z: np.ndarray) -> np.ndarray:
    """phi'(z) for a validated activation name (a new array, dtype of ``z``).

    The ReLU derivative at exactly 0 is 0 (PyTorch's and JAX's convention).
    """
    if activation in ("relu", "relu_unit"):
        out = (z > 0).astype(z.dtype)
        if activation == "relu_unit":
            out *= _SQRT2
        return out
    if activation == "tanh":
        t = np.tanh(z)
        return 1 - t * t
    if activation == "erf":
        out = np.exp(-(z * z))
        out *= _TWO_OVER_SQRT_PI
        return out
    return np.ones_like(z)  # linear


class ForwardCache(NamedTuple):
    """Intermediate values of a forward pass.

    Attributes
    ----------
    inputs : list of numpy.ndarray
        ``inputs[l]`` is the input ``a_l`` of layer ``l``, shape ``(n, n_{l-1})``
        (``inputs[0]`` is ``X``).
    preactivations : list of numpy.ndarray
        ``preactivations[l]`` is ``z_l``, shape ``(n, n_l)``; the last one is the
        output ``f`` as an ``(n, K)`` matrix.
    """

    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _as_weight(W: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(W)
    except Exception as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_out, n_in), got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name} has an empty dimension (shape {arr.shape})")
    arr = np.array(arr, dtype=np.float64, order="C", copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr


def _as_bias(b: Any, n_out: int, name: str) -> np.ndarray | None:
    if b is None:
        return None
    try:
        arr = np.asarray(b)
    except Exception as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n_out:
        raise ValueError(f"{name} must have shape ({n_out},), got shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64, copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr


def _per_layer(value: Any, name: str, n_layers: int, *, minimum: float | None = None,
               count: str = "") -> tuple[float, ...]:
    """A number or one per layer (``count`` says how many, in messages) as a tuple."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (check_real(value, name, minimum=minimum),) * n_layers
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            f"{name} must be a number or a sequence of {n_layers} numbers (one per layer"
            f"{count}), got {type(value).__name__}"
        )
    values = list(np.ravel(value)) if isinstance(value, np.ndarray) else list(value)
    if len(values) != n_layers:
        raise ValueError(
            f"{name} must have {n_layers} values (one per layer{count}), got {len(values)}"
        )
    return tuple(check_real(v, f"{name}[{i}]", minimum=minimum) for i, v in enumerate(values))


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------
class FCNetwork:
    """A fully connected network with explicit weights and per-layer multipliers.

    ``z_l = c_l W_l a_l + s_l b_l``, ``a_{l+1} = phi(z_l)``, ``f = z_L`` (linear
    readout). See the module docstring for the parameterizations.

    Parameters
    ----------
    weights : sequence of array-like
        ``W_l`` of shape ``(n_l, n_{l-1})`` for ``l = 0 .. L``; the last one is
        the readout ``(K, n_{L-1})``. Copied to C-contiguous float64.
    biases : sequence of (array-like or None), optional
        ``b_l`` of shape ``(n_l,)``, or None for a layer without bias. Default:
        no biases.
    activation : str, default "relu"
        One of ``"relu"``, ``"relu_unit"`` (``sqrt(2) max(z, 0)``, unit second
        moment under N(0, 1): the paper's), ``"erf"``, ``"tanh"``, ``"linear"``.
    weight_mult : float or sequence of float, default 1.0
        ``c_l``, one value or one per layer.
    bias_mult : float or sequence of float, default 1.0
        ``s_l``, one value or one per layer (ignored where a layer has no bias).
    parameterization : {"standard", "ntk", "mean_field"}, default "standard"
        A label recording how the multipliers were chosen (:meth:`init` sets
        them; the multipliers are what the computations use).

    Attributes
    ----------
    weights : list of numpy.ndarray
    biases : list of (numpy.ndarray or None)
    activation : str
    weight_mult : tuple of float
    bias_mult : tuple of float
    parameterization : str

    Raises
    ------
    TypeError, ValueError
        If the shapes do not chain, values are not finite, or an option is unknown.

    References
    ----------
    Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), *Geometric compression of
    invariant manifolds in neural networks*, J. Stat. Mech. 044001, §2 (network
    and regimes); Jacot et al. (2018) for the NTK parameterization.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> net = kc.FCNetwork.init(3, [8], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> net.widths, net.n_outputs, net.n_params
    ((8,), 1, 40)
    >>> net(np.ones((2, 3))).shape
    (2,)
    """

    __hash__ = None  # type: ignore[assignment]  # mutable: weights change in training

    def __init__(
        self,
        weights: Sequence[Any],
        biases: Sequence[Any] | None = None,
        activation: str = "relu",
        weight_mult: Any = 1.0,
        bias_mult: Any = 1.0,
        parameterization: str = "standard",
    ) -> None:
        if isinstance(weights, np.ndarray | str) or not isinstance(weights, Iterable):
            raise TypeError(
                "weights must be a list of 2-D arrays (one per layer), got "
                f"{type(weights).__name__}"
            )
        Ws = [_as_weight(W, f"weights[{i}]") for i, W in enumerate(weights)]
        if not Ws:
            raise ValueError("weights must hold at least one layer (the readout)")
        for i in range(1, len(Ws)):
            if Ws[i].shape[1] != Ws[i - 1].shape[0]:
                raise ValueError(
                    f"weights[{i}] has shape {Ws[i].shape}: it takes {Ws[i].shape[1]} inputs, "
                    f"but layer {i - 1} has {Ws[i - 1].shape[0]} outputs"
                )
        n_layers = len(Ws)
        if biases is None:
            bs: list[np.ndarray | None] = [None] * n_layers
        else:
            if isinstance(biases, np.ndarray | str) or not isinstance(biases, Iterable):
                raise TypeError(
                    "biases must be a list with one 1-D array or None per layer, got "
                    f"{type(biases).__name__}"
                )
            blist = list(biases)
            if len(blist) != n_layers:
                raise ValueError(
                    f"biases must have one entry (array or None) per layer: {n_layers}, got "
                    f"{len(blist)}"
                )
            bs = [_as_bias(b, Ws[i].shape[0], f"biases[{i}]") for i, b in enumerate(blist)]
        self.weights: list[np.ndarray] = Ws
        self.biases: list[np.ndarray | None] = bs
        self.activation: str = check_activation(activation)
        self.weight_mult: tuple[float, ...] = _per_layer(weight_mult, "weight_mult", n_layers)
        self.bias_mult: tuple[float, ...] = _per_layer(bias_mult, "bias_mult", n_layers)
        if not isinstance(parameterization, str) or parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {parameterization!r}; expected one of "
                f"{list(PARAMETERIZATIONS)}"
            )
        self.parameterization: str = parameterization

    # -- construction ---------------------------------------------------------
    @classmethod
    def init(
        cls,
        d: int,
        widths: Sequence[int],
        *,
        n_outputs: int = 1,
        activation: str = "relu",
        parameterization: str = "ntk",
        weight_std: Any = 1.0,
        bias_std: Any = None,
        bias: bool | Sequence[bool] = True,
        seed: Any = None,
    ) -> FCNetwork:
        """A randomly initialised network.

        Parameters
        ----------
        d : int
            Input dimension.
        widths : sequence of int
            Hidden widths (``[]``: a linear model).
        n_outputs : int, default 1
            Number of outputs K.
        activation : str, default "relu"
            See :class:`FCNetwork`; ``"relu_unit"`` is the paper's sqrt(2) max(z, 0).
        parameterization : {"ntk", "mean_field", "standard"}, default "ntk"
            ``"ntk"``: parameters ~ N(0, 1), ``c_l = weight_std_l / sqrt(n_{l-1})``,
            ``s_l = bias_std_l`` (the network of ``kc.NTK`` with the same stds).
            ``"mean_field"``: hidden ``c_l = 1/sqrt(n_{l-1})``, readout ``c = 1/h``,
            ``s_l = 1``, parameters ~ N(0, std^2) and no readout bias (the paper's
            network). ``"standard"``: ``c = s = 1`` and weights
            ~ N(0, weight_std^2 / n_{l-1}), biases ~ N(0, bias_std^2).
        weight_std : float or sequence of float, default 1.0
            One value or one per layer (``len(widths) + 1``).
        bias_std : float, sequence of float or None, default None
            None means 1.0 under ``"mean_field"`` (the paper's b ~ N(0, 1)) and 0.0
            otherwise (neural-tangents' default).
        bias : bool or sequence of bool, default True
            Whether layers have a bias (one value or one per layer). Under
            ``"mean_field"`` the readout never has one.
        seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
            Seed of ``np.random.default_rng`` (a non-negative int); anything else
            raises ``TypeError``.

        Returns
        -------
        FCNetwork

        Raises
        ------
        TypeError, ValueError
            For invalid dimensions, stds or options.

        References
        ----------
        Paccolat et al. (2021), §2: ``f(x) = (1/h) sum beta sigma(omega.x/sqrt(d) + b)``.

        Examples
        --------
        >>> import kernelcomp as kc
        >>> net = kc.FCNetwork.init(5, [100], activation="relu_unit",
        ...                         parameterization="mean_field", seed=0)
        >>> net.weight_mult, net.bias_mult
        ((0.4472135954999579, 0.01), (1.0, 0.0))
        """
        d = check_int(d, "d", minimum=1)
        if isinstance(widths, numbers.Integral) and not isinstance(widths, bool):
            raise TypeError(f"widths must be a sequence of ints (e.g. [{widths}]), got an int")
        if isinstance(widths, str) or not isinstance(widths, Iterable):
            raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}")
        hidden = [check_int(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths)]
        K = check_int(n_outputs, "n_outputs", minimum=1)
        act = check_activation(activation)
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {parameterization!r}; expected one of "
                f"{list(PARAMETERIZATIONS)}"
            )
        n_layers = len(hidden) + 1
        ws = _per_layer(weight_std, "weight_std", n_layers, minimum=0.0,
                        count=": len(widths) + 1")
        if bias_std is None:
            bias_std = 1.0 if parameterization == "mean_field" else 0.0
        bstd = _per_layer(bias_std, "bias_std", n_layers, minimum=0.0,
                          count=": len(widths) + 1")
        if isinstance(bias, bool | np.bool_):
            has_bias = [bool(bias)] * n_layers
        else:
            if isinstance(bias, str) or not isinstance(bias, Sequence | np.ndarray):
                raise TypeError(
                    f"bias must be a bool or a sequence of {n_layers} bools, got "
                    f"{type(bias).__name__}"
                )
            has_bias = list(bias)
            if len(has_bias) != n_layers or not all(
                isinstance(b, bool | np.bool_) for b in has_bias
            ):
                raise ValueError(
                    f"bias must be a bool or {n_layers} bools (one per layer), got {bias!r}"
                )
            has_bias = [bool(b) for b in has_bias]
        if parameterization == "mean_field":
            has_bias[-1] = False
        if not (seed is None or isinstance(seed, np.random.Generator | np.random.SeedSequence)
                or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool))):
            raise TypeError(
                f"seed must be an int, a numpy Generator or SeedSequence, or None, got "
                f"{type(seed).__name__} {seed!r}"
            )
        if isinstance(seed, numbers.Integral) and seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        rng = np.random.default_rng(seed)
        fan_in = [d, *hidden]
        fan_out = [*hidden, K]
        weights, biases = [], []
        wmult, bmult = [], []
        for l in range(n_layers):
            W = rng.standard_normal((fan_out[l], fan_in[l]))
            b = rng.standard_normal(fan_out[l]) if has_bias[l] else None
            if parameterization == "ntk":
                wmult.append(ws[l] / math.sqrt(fan_in[l]))
                bmult.append(bstd[l] if has_bias[l] else 0.0)
            elif parameterization == "mean_field":
                W *= ws[l]
                if b is not None:
                    b *= bstd[l]
                last = l == n_layers - 1
                wmult.append(1.0 / fan_in[l] if last and l > 0 else 1.0 / math.sqrt(fan_in[l]))
                bmult.append(1.0 if has_bias[l] else 0.0)
            else:
                W *= ws[l] / math.sqrt(fan_in[l])
                if b is not None:
                    b *= bstd[l]
                wmult.append(1.0)
                bmult.append(1.0 if has_bias[l] else 0.0)
            weights.append(W)
            biases.append(b)
        return cls(weights, biases, act, tuple(wmult), tuple(bmult), parameterization)

    # -- shape ------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """Number of input features d."""
        return int(self.weights[0].shape[1])

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden widths ``(n_0, ..., n_{L-1})``."""
        return tuple(int(W.shape[0]) for W in self.weights[:-1])

    @property
    def n_outputs(self) -> int:
        """Number of outputs K."""
        return int(self.weights[-1].shape[0])

    @property
    def depth(self) -> int:
        """Number of hidden layers L."""
        return len(self.weights) - 1

    @property
    def n_layers(self) -> int:
        """Number of weight layers (``depth + 1``)."""
        return len(self.weights)

    @property
    def n_params(self) -> int:
        """Number of parameters (weights and present biases)."""
        return int(
            sum(W.size for W in self.weights) + sum(b.size for b in self.biases if b is not None)
        )

    @property
    def has_bias(self) -> tuple[bool, ...]:
        """Whether each layer has a bias."""
        return tuple(b is not None for b in self.biases)

    def __repr__(self) -> str:
        return (
            f"FCNetwork(d={self.input_dim}, widths={list(self.widths)}, "
            f"n_outputs={self.n_outputs}, activation={self.activation!r}, "
            f"parameterization={self.parameterization!r}, bias={list(self.has_bias)})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FCNetwork):
            return NotImplemented
        return (
            self.activation == other.activation
            and self.parameterization == other.parameterization
            and self.weight_mult == other.weight_mult
            and self.bias_mult == other.bias_mult
            and len(self.weights) == len(other.weights)
            and all(
                a.shape == b.shape and np.array_equal(a, b)
                for a, b in zip(self.weights, other.weights, strict=True)
            )
            and all(
                (a is None and b is None)
                or (a is not None and b is not None and np.array_equal(a, b))
                for a, b in zip(self.biases, other.biases, strict=True)
            )
        )

    def fingerprint(self) -> str:
        """A SHA-256 hex digest of the architecture, multipliers and parameter values.

        Two networks have the same fingerprint exactly when they compute the
        same function with the same parameters (used to hash kernels and to
        check that a stored Gram matrix belongs to a network).
        """
        h = hashlib.sha256()
        h.update(
            repr(
                (
                    ENCODING_VERSION,
                    self.activation,
                    self.parameterization,
                    self.weight_mult,
                    self.bias_mult,
                    tuple(W.shape for W in self.weights),
                    self.has_bias,
                )
            ).encode()
        )
        for W, b in zip(self.weights, self.biases, strict=True):
            h.update(np.ascontiguousarray(W, dtype=np.float64).tobytes())
            if b is not None:
                h.update(np.ascontiguousarray(b, dtype=np.float64).tobytes())
        return h.hexdigest()

    def copy(self) -> FCNetwork:
        """A deep copy (new arrays)."""
        return FCNetwork(
            [W.copy() for W in self.weights],
            [None if b is None else b.copy() for b in self.biases],
            self.activation,
            self.weight_mult,
            self.bias_mult,
            self.parameterization,
        )

    # -- computation --------------------------------------------------------------
    def _check_X(self, X: Any, name: str = "X") -> np.ndarray:
        return check_matrix(X, name, dtype=np.float64, n_features=self.input_dim)

    def _squeeze(self, f: np.ndarray) -> np.ndarray:
        return f[:, 0] if self.n_outputs == 1 else f

    def _pattern_slope(self) -> float:
        """``slope`` of a piecewise-linear activation ``phi(z) = slope z [z > 0]``."""
        if self.activation == "relu":
            return 1.0
        if self.activation == "relu_unit":
            return _SQRT2
        raise ValueError(
            f"pattern needs a ReLU activation ('relu', 'relu_unit'), got {self.activation!r}"
        )

    def _check_pattern(self, pattern: Any, n: int) -> list[np.ndarray]:
        """Validate an activation pattern: one bool array (n, n_l) per hidden layer."""
        self._pattern_slope()
        if isinstance(pattern, np.ndarray) or not isinstance(pattern, Sequence):
            raise TypeError(
                f"pattern must be a sequence of {self.depth} bool arrays (one per hidden "
                f"layer), got {type(pattern).__name__}"
            )
        if len(pattern) != self.depth:
            raise ValueError(
                f"pattern must have one array per hidden layer ({self.depth}), got {len(pattern)}"
            )
        out = []
        for l, m in enumerate(pattern):
            m = np.asarray(m)
            if m.dtype != np.bool_ or m.shape != (n, self.widths[l]):
                raise ValueError(
                    f"pattern[{l}] must be a bool array of shape ({n}, {self.widths[l]}), "
                    f"got {m.dtype} {m.shape}"
                )
            out.append(m)
        return out

    def forward(self, X: Any, *, cache: bool = False, pattern: Any = None) -> Any:
        """Forward pass, optionally keeping every layer's input and pre-activation.

        Parameters
        ----------
        X : array-like of shape (n, d)
        cache : bool, default False
            Also return a :class:`ForwardCache` with ``inputs[l] = a_l`` and
            ``preactivations[l] = z_l``.
        pattern : sequence of numpy.ndarray, optional
            For a ReLU network ("relu", "relu_unit"): one bool array of shape
            ``(n, n_l)`` per hidden layer used in place of the activation
            pattern ``z_l > 0``, i.e. the pass of the network linearised on that
            pattern, ``phi(z) = slope z pattern[l]`` (training's step control
            freezes the pattern of a step's start this way).

        Returns
        -------
        out : numpy.ndarray of shape (n,) or (n, K)
            float64 outputs; ``(n,)`` for a single-output network.
        cache : ForwardCache
            Only when ``cache=True``.

        Raises
        ------
        ValueError, TypeError
            If ``X`` is not a finite 2-D array with ``input_dim`` columns, or
            ``pattern`` does not match the network and ``X``.

        Examples
        --------
        >>> import numpy as np, kernelcomp as kc
        >>> net = kc.FCNetwork.init(2, [4, 4], n_outputs=3, seed=0)
        >>> out, c = net.forward(np.ones((5, 2)), cache=True)
        >>> out.shape, [z.shape for z in c.preactivations]
        ((5, 3), [(5, 4), (5, 4), (5, 3)])
        """
        a = self._check_X(X)
        if pattern is not None:
            pattern = self._check_pattern(pattern, a.shape[0])
            slope = self._pattern_slope()
        inputs, pre = [], []
        for l, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = a @ W.T
            if self.weight_mult[l] != 1.0:
                z *= self.weight_mult[l]
            if b is not None and self.bias_mult[l] != 0.0:
                z += self.bias_mult[l] * b
            if cache:
                inputs.append(a)
                pre.append(z)
            if l < self.depth:
                a = activate(self.activation, z) if pattern is None else (slope * z) * pattern[l]
        out = self._squeeze(z)
        if cache:
            return out, ForwardCache(inputs, pre)
        return out

    def __call__(self, X: Any) -> np.ndarray:
        """Outputs ``f(X)``: shape ``(n,)`` for one output, ``(n, K)`` for K."""
        return self.forward(X)

    def gradients(
        self, X: Any, grad_output: Any, *, cache: ForwardCache | None = None,
        pattern: Any = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Gradient of ``sum_mu grad_output[mu] . f(x_mu)`` with respect to every parameter.

        Backpropagation with matrix products (BLAS); this is the vector-Jacobian
        product that full-batch training needs (``grad_output`` = dLoss/df).

        Parameters
        ----------
        X : array-like of shape (n, d)
        grad_output : array-like of shape (n,) or (n, K)
            Weights of each output; ``(n,)`` is accepted for a single output.
        cache : ForwardCache, optional
            The cache of ``forward(X, cache=True)`` with the current weights, to
            skip the forward pass (training computes the outputs first anyway).
        pattern : sequence of numpy.ndarray, optional
            The gradient of the network linearised on this activation pattern
            (see :meth:`forward`); a ``cache`` must then come from
            ``forward(X, cache=True, pattern=pattern)``.

        Returns
        -------
        grad_weights : list of numpy.ndarray
            Same shapes as :attr:`weights`.
        grad_biases : list of (numpy.ndarray or None)
            Same shapes as :attr:`biases` (None where a layer has no bias).

        Raises
        ------
        ValueError, TypeError
            If ``X`` or ``grad_output`` has the wrong shape or non-finite values.

        Examples
        --------
        >>> import numpy as np, kernelcomp as kc
        >>> net = kc.FCNetwork.init(3, [5], bias=True, bias_std=1.0, seed=0)
        >>> gW, gb = net.gradients(np.ones((4, 3)), np.ones(4))
        >>> [g.shape for g in gW], [g.shape for g in gb]
        ([(5, 3), (1, 5)], [(5,), (1,)])
        >>> out, cache = net.forward(np.ones((4, 3)), cache=True)
        >>> gW2, _ = net.gradients(np.ones((4, 3)), np.ones(4), cache=cache)
        >>> all(np.array_equal(a, b) for a, b in zip(gW, gW2))
        True
        """
        if cache is None:
            _, c = self.forward(X, cache=True, pattern=pattern)
        else:
            c = cache
            if not isinstance(c, ForwardCache) or len(c.inputs) != self.n_layers:
                raise ValueError(
                    "cache must be the ForwardCache of this network's forward(X, cache=True)"
                )
            Xc = self._check_X(X)
            if c.inputs[0].shape != Xc.shape or not np.array_equal(c.inputs[0], Xc):
                raise ValueError("cache was computed for another X")
        n, K = c.inputs[0].shape[0], self.n_outputs
        if pattern is not None:
            pattern = self._check_pattern(pattern, n)
        g = np.asarray(grad_output)
        if g.dtype.kind not in "fiu":
            raise TypeError(f"grad_output must hold real numbers, got dtype {g.dtype}")
        if g.ndim == 1 and K == 1:
            g = g[:, None]
        if g.shape != (n, K):
            raise ValueError(
                f"grad_output must have shape ({n}, {K})"
                + (f" or ({n},)" if K == 1 else "")
                + f" to match X and the network's outputs, got shape {g.shape}"
            )
        delta = np.array(g, dtype=np.float64, order="C")
        if not np.isfinite(delta).all():
            raise ValueError("grad_output contains NaN or infinity; all values must be finite")
        gW: list[np.ndarray] = [None] * self.n_layers  # type: ignore[list-item]
        gb: list[np.ndarray | None] = [None] * self.n_layers
        for l in range(self.depth, -1, -1):
            gW[l] = self.weight_mult[l] * (delta.T @ c.inputs[l])
            if self.biases[l] is not None:
                gb[l] = self.bias_mult[l] * delta.sum(axis=0)
            if l > 0:
                delta = (delta @ self.weights[l]) * self.weight_mult[l]
                if pattern is None:
                    delta *= activate_grad(self.activation, c.preactivations[l - 1])
                else:
                    delta *= pattern[l - 1]
                    delta *= self._pattern_slope()
        return gW, gb

    # -- storage ------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "kernelcomp_encoding": ENCODING,
            "kernelcomp_encoding_version": ENCODING_VERSION,
            "activation": self.activation,
            "parameterization": self.parameterization,
            "n_layers": self.n_layers,
            "weight_mult": np.asarray(self.weight_mult, dtype=np.float64),
            "bias_mult": np.asarray(self.bias_mult, dtype=np.float64),
            "has_bias": np.asarray(self.has_bias, dtype=np.int8),
        }

    def to_hdf5(self, group: Any) -> None:
        """Write the network into an h5py group (plain datasets and attributes).

        Datasets ``W0 .. WL`` and ``b{l}`` for layers with a bias; attributes
        ``kernelcomp_encoding="fcnetwork"``, ``kernelcomp_encoding_version``,
        ``activation``, ``parameterization``, ``n_layers``, ``weight_mult``,
        ``bias_mult``, ``has_bias``. Readable with plain h5py.

        Parameters
        ----------
        group : h5py.Group
            An empty group (or file) opened for writing.

        Raises
        ------
        ValueError
            If the group already holds datasets named ``W*``/``b*``.

        Examples
        --------
        >>> import h5py, io, kernelcomp as kc
        >>> net = kc.FCNetwork.init(3, [4], seed=0)
        >>> with h5py.File(io.BytesIO(), "w") as f:
        ...     net.to_hdf5(f.create_group("net"))
        ...     kc.FCNetwork.from_hdf5(f["net"]) == net
        True
        """
        for l in range(self.n_layers):
            for key in (f"W{l}", f"b{l}"):
                if key in group:
                    raise ValueError(f"group {group.name!r} already holds {key!r}")
        for key, value in self._meta().items():
            group.attrs[key] = value
        for l, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            group.create_dataset(f"W{l}", data=W)
            if b is not None:
                group.create_dataset(f"b{l}", data=b)

    @classmethod
    def _from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, Any], where: str) -> Any:
        enc = _plain(meta.get("kernelcomp_encoding"))
        if enc != ENCODING:
            raise ValueError(
                f"{where} does not hold a kernelcomp network (kernelcomp_encoding is "
                f"{enc!r}, expected {ENCODING!r})"
            )
        version = str(_plain(meta.get("kernelcomp_encoding_version", "")))
        if version.split(".")[0] != ENCODING_VERSION.split(".")[0]:
            raise ValueError(
                f"{where} holds network encoding version {version!r}; this kernelcomp reads "
                f"major version {ENCODING_VERSION.split('.')[0]}"
            )
        try:
            n_layers = int(_plain(meta["n_layers"]))
            has_bias = [bool(v) for v in np.ravel(meta["has_bias"])]
            weight_mult = [float(v) for v in np.ravel(meta["weight_mult"])]
            bias_mult = [float(v) for v in np.ravel(meta["bias_mult"])]
            activation = str(_plain(meta["activation"]))
            parameterization = str(_plain(meta["parameterization"]))
        except KeyError as exc:
            raise ValueError(f"{where} lacks the network attribute {exc.args[0]!r}") from exc
        for name, vals in (
            ("has_bias", has_bias),
            ("weight_mult", weight_mult),
            ("bias_mult", bias_mult),
        ):
            if len(vals) != n_layers:
                raise ValueError(
                    f"{where}: {name} has {len(vals)} values but the network has {n_layers} layers"
                )
        weights, biases = [], []
        for l in range(n_layers):
            if f"W{l}" not in arrays:
                raise ValueError(f"{where} lacks the weight matrix 'W{l}' ({n_layers} layers)")
            weights.append(np.asarray(arrays[f"W{l}"]))
            if has_bias[l]:
                if f"b{l}" not in arrays:
                    raise ValueError(f"{where} lacks the bias 'b{l}' of layer {l}")
                biases.append(np.asarray(arrays[f"b{l}"]))
            else:
                biases.append(None)
        try:
            return cls(weights, biases, activation, weight_mult, bias_mult, parameterization)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} holds an invalid network: {exc}") from exc

    @classmethod
    def from_hdf5(cls, group: Any) -> FCNetwork:
        """Read a network written by :meth:`to_hdf5`.

        Parameters
        ----------
        group : h5py.Group

        Returns
        -------
        FCNetwork

        Raises
        ------
        ValueError
            If the group is not a kernelcomp network, has an unsupported major
            version, or its arrays do not fit together (the message says which).
        """
        where = f"HDF5 group {getattr(group, 'name', '?')!r}"
        f = getattr(group, "file", None)
        if f is not None and getattr(f, "filename", None):
            where += f" of {f.filename!r}"
        arrays = {k: group[k][()] for k in group.keys() if k[:1] in ("W", "b")}
        return cls._from_arrays(dict(group.attrs), arrays, where)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to ``.npz`` (or ``.h5``/``.hdf5`` via :meth:`to_hdf5` at the file root).

        The file is written under a temporary name and renamed when complete,
        so an interrupted save never leaves a half-written file under ``path``;
        it gets the permissions of a newly created file (``0o666`` less the
        umask), like every file kernelcomp writes.

        Parameters
        ----------
        path : str or path-like
            Ends in ``.npz``, ``.h5`` or ``.hdf5``.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        ValueError
            For another extension.

        Examples
        --------
        >>> import tempfile, os, kernelcomp as kc
        >>> net = kc.FCNetwork.init(3, [4], seed=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = net.save(os.path.join(tmp, "net.npz"))
        ...     kc.FCNetwork.load(p) == net
        True
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".h5", ".hdf5"):
            raise ValueError(
                f"cannot save a network to {str(path)!r}: the extension must be .npz, .h5 or .hdf5"
            )
        with atomic_write(path) as tmp:
            if suffix == ".npz":
                arrays: dict[str, Any] = dict(self._meta())
                for l, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                    arrays[f"W{l}"] = W
                    if b is not None:
                        arrays[f"b{l}"] = b
                with open(tmp, "wb") as fh:  # a file object: savez adds no ".npz" to it
                    np.savez(fh, **arrays)
            else:
                import h5py

                with h5py.File(tmp, "w") as f:
                    stamp(f, NETWORK_FORMAT, ENCODING_VERSION)
                    self.to_hdf5(f)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        group: str | None = None,
        activation: str | None = None,
    ) -> FCNetwork:
        """Load a network from ``.npz`` or ``.h5``/``.hdf5``.

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save`; an HDF5 file holding a network group
            (use ``group``); a ``.npz`` of a PyTorch-style state dict (keys
            ``"<layer>.weight"``/``"<layer>.bias"``), read as by :meth:`from_torch`;
            or a ``.npz`` weight list, ``np.savez(f, W0, b0, W1, b1, ...)`` or keys
            ``W0, b0, W1, ...`` (each bias optional), read as a ``"standard"`` stack
            (weights used as stored) of ``activation`` layers.
        group : str, optional
            Path of the network's group inside an HDF5 file (default: the root).
        activation : str, optional
            Only for state-dict and weight-list ``.npz`` files, which do not record it
            (default "relu").

        Returns
        -------
        FCNetwork

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file does not hold a network, or its arrays do not fit together.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no network file at {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            if group is not None:
                raise ValueError("group is only used with HDF5 files")
            try:
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            except (OSError, ValueError) as exc:
                raise ValueError(f"{str(path)!r} is not a readable .npz file: {exc}") from exc
            if "kernelcomp_encoding" in data:
                if activation is not None:
                    raise ValueError(
                        "activation is only used for state-dict .npz files; "
                        f"{str(path)!r} records its own"
                    )
                return cls._from_arrays(data, data, f"file {str(path)!r}")
            if data and all(k.endswith((".weight", ".bias")) for k in data):
                return cls.from_torch(data, activation=activation or "relu")
            layers = _weight_list(data)
            if layers is not None:
                return cls.from_torch(layers, activation=activation or "relu")
            raise ValueError(
                f"{str(path)!r} holds neither a kernelcomp network, a state dict "
                "('<layer>.weight'/'<layer>.bias' keys) nor a weight list (np.savez(f, W0, b0, "
                f"W1, b1, ...) or keys W0, b0, ...); found keys {sorted(data)[:8]}"
            )
        if suffix in (".h5", ".hdf5"):
            import h5py

            if activation is not None:
                raise ValueError("activation is only used for state-dict .npz files")
            try:
                f = h5py.File(path, "r")
            except OSError as exc:
                raise ValueError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from exc
            with f:
                g = f if group is None else f.get(group)
                if g is None:
                    raise ValueError(f"{str(path)!r} has no group {group!r}")
                return cls.from_hdf5(g)
        raise ValueError(
            f"cannot load a network from {str(path)!r}: the extension must be .npz, .h5 or .hdf5"
        )

    # -- PyTorch ------------------------------------------------------------------
    @classmethod
    def from_torch(cls, module_or_state_dict: Any, activation: str | None = None) -> FCNetwork:
        """Import a PyTorch ``Linear``/activation stack (``"standard"`` parameterization).

        PyTorch is imported only here (optional extra ``kernelcomp[torch]``); a
        plain mapping of arrays (a state dict converted with ``.numpy()``) works
        without it.

        Parameters
        ----------
        module_or_state_dict : torch.nn.Module or mapping
            An ``nn.Sequential`` (or any module whose leaf modules, in order, are
            ``Linear`` layers separated by one activation each: ``ReLU``, ``Tanh``,
            ``Identity``), or its ``state_dict()``: keys ``"<name>.weight"`` and
            optional ``"<name>.bias"``, in layer order.
        activation : str, optional
            For a module, inferred from its activation layers (if given, it must
            agree). For a state dict, which does not record it, default ``"relu"``.

        Returns
        -------
        FCNetwork
            With ``weight_mult = bias_mult = 1``: the weights are used as stored.

        Raises
        ------
        TypeError
            For an unsupported object or layer type.
        ValueError
            If the layers do not chain, or the activations are mixed or disagree
            with ``activation``.
        """
        if isinstance(module_or_state_dict, Mapping):
            return cls._from_state_dict(module_or_state_dict, activation or "relu")
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
        if activation is not None and inferred is not None:
            if check_activation(activation) != inferred:
                raise ValueError(
                    f"activation={activation!r} disagrees with the module's {inferred!r} layers"
                )
        act = activation or inferred or "relu"
        return cls(weights, biases, act, 1.0, 1.0, "standard")

    @classmethod
    def _from_state_dict(cls, sd: Mapping[str, Any], activation: str) -> FCNetwork:
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


def _weight_list(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """A state dict from a ``.npz`` weight list, or None if ``data`` is not one.

    Accepts ``np.savez(f, W0, b0, W1, b1, ...)`` (keys ``arr_0, arr_1, ...``) and
    keys ``W0, b0, W1, ...``; a 1-D array right after a weight matrix with one
    value per output is that layer's bias.
    """
    import re

    positional = {k: int(k[4:]) for k in data if re.fullmatch(r"arr_\d+", k)}
    if data and len(positional) == len(data):
        arrays = [data[k] for k in sorted(data, key=positional.__getitem__)]
    else:
        named = [re.fullmatch(r"([Wb])(\d+)", k) for k in data]
        if not data or not all(named):
            return None
        order = sorted(data, key=lambda k: (int(k[1:]), k[0] != "W"))
        arrays = [data[k] for k in order]
    sd: dict[str, np.ndarray] = {}
    layer = -1
    for arr in arrays:
        if arr.ndim == 2:
            layer += 1
            sd[f"{layer}.weight"] = arr
        elif arr.ndim == 1 and layer >= 0 and f"{layer}.bias" not in sd:
            sd[f"{layer}.bias"] = arr
        else:
            return None
    return sd or None


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v
