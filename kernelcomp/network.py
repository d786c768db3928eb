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

This module holds the network itself (construction, identity, forward pass and
backprop, the activations); its files (:meth:`FCNetwork.save`/:meth:`~FCNetwork.load`,
the HDF5 encoding) live in ``kernelcomp._network_file`` and the PyTorch import
(:meth:`FCNetwork.from_torch`) in ``kernelcomp._torch``, which the methods call.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kernelcomp import _network_file, _torch
from kernelcomp._kernels.activations import LEAKY_SLOPE as _LEAKY_SLOPE
from kernelcomp._network_file import ENCODING, ENCODING_VERSION  # noqa: F401 (names kept here)
from kernelcomp._validation import check_choice, check_int, check_matrix, check_real

__all__ = ["ACTIVATIONS", "PARAMETERIZATIONS", "FCNetwork", "ForwardCache"]

#: supported activations (see :func:`activate`); ``"relu_unit"`` is sqrt(2) * max(z, 0),
#: the ReLU with unit second moment under N(0, 1) used in the paper
ACTIVATIONS: tuple[str, ...] = (
    "relu", "relu_unit", "erf", "tanh", "linear",
    "gelu", "silu", "softplus", "leaky_relu", "sigmoid", "elu",
)
#: supported parameterizations (see the module docstring)
PARAMETERIZATIONS: tuple[str, ...] = ("ntk", "mean_field", "standard")

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


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
    return check_choice(act, name, ACTIVATIONS)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


def activate(activation: str, z: np.ndarray) -> np.ndarray:
    """phi(z) for a validated activation name (a new array, dtype of ``z``).

    The activations, with their PyTorch counterparts (what
    :meth:`FCNetwork.from_torch` imports):

    ============== ============================= ===============================
    name           phi(z)                        PyTorch
    ============== ============================= ===============================
    ``relu``       max(z, 0)                     ``nn.ReLU``
    ``relu_unit``  sqrt(2) max(z, 0)             (the paper's, unit 2nd moment)
    ``erf``        erf(z)                        ``torch.erf``
    ``tanh``       tanh(z)                       ``nn.Tanh``
    ``linear``     z                             ``nn.Identity``
    ``gelu``       z Phi(z), Phi the N(0, 1) cdf ``nn.GELU()`` (erf form)
    ``silu``       z sigmoid(z) ("swish")        ``nn.SiLU``
    ``softplus``   log(1 + e^z)                  ``nn.Softplus()`` (beta = 1)
    ``leaky_relu`` max(z, 0.01 z)                ``nn.LeakyReLU()`` (slope 0.01)
    ``sigmoid``    1 / (1 + e^-z)                ``nn.Sigmoid``
    ``elu``        z if z > 0 else e^z - 1       ``nn.ELU()`` (alpha = 1)
    ============== ============================= ===============================

    ``softplus`` is computed as ``max(z, 0) + log1p(e^-|z|)`` (no overflow, and
    exact where PyTorch switches to ``z`` above its threshold 20: the two differ
    by less than 2.1e-9 there); ``gelu`` as ``z erfc(-z / sqrt(2)) / 2`` (no
    cancellation for negative z).
    """
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
    if activation == "gelu":
        from scipy.special import erfc

        out = erfc(z * -_INV_SQRT2)
        out *= z
        out *= 0.5
        return out
    if activation == "silu":
        out = _sigmoid(z)
        out *= z
        return out
    if activation == "softplus":
        out = np.log1p(np.exp(-np.abs(z)))
        out += np.maximum(z, 0)
        return out
    if activation == "leaky_relu":
        return np.maximum(z, _LEAKY_SLOPE * z)
    if activation == "sigmoid":
        return _sigmoid(z)
    if activation == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    return z.copy()  # linear


def activate_grad(activation: str, z: np.ndarray) -> np.ndarray:
    """phi'(z) for a validated activation name (a new array, dtype of ``z``).

    At a kink the derivative takes its left-hand value, as PyTorch and JAX do:
    0 for the ReLUs at exactly 0, the negative slope 0.01 for ``leaky_relu``
    at 0. ``elu`` (alpha = 1) is continuously differentiable: 1 at 0.
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
    if activation == "gelu":
        from scipy.special import erfc

        out = np.exp(z * z * -0.5)
        out *= _INV_SQRT_2PI
        out *= z
        out += 0.5 * erfc(z * -_INV_SQRT2)
        return out
    if activation in ("silu", "sigmoid", "softplus"):
        s = _sigmoid(z)
        if activation == "softplus":
            return s
        t = 1 - s
        if activation == "silu":
            t *= z
            t += 1
        t *= s
        return t
    if activation == "leaky_relu":
        return np.where(z > 0, 1, _LEAKY_SLOPE).astype(z.dtype)
    if activation == "elu":
        return np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype, copy=False)
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


def _bias_flags(bias: Any, n_layers: int) -> list[bool]:
    """``FCNetwork.init``'s ``bias``: one flag per layer, from a bool or a sequence of them."""
    if isinstance(bias, bool | np.bool_):
        return [bool(bias)] * n_layers
    if isinstance(bias, str) or not isinstance(bias, Sequence | np.ndarray):
        raise TypeError(
            f"bias must be a bool or a sequence of {n_layers} bools, got {type(bias).__name__}"
        )
    flags = list(bias)
    if len(flags) != n_layers or not all(isinstance(b, bool | np.bool_) for b in flags):
        raise ValueError(f"bias must be a bool or {n_layers} bools (one per layer), got {bias!r}")
    return [bool(b) for b in flags]


def _generator(seed: Any) -> np.random.Generator:
    """``FCNetwork.init``'s ``seed`` (an int >= 0, a Generator or SeedSequence, or None)."""
    if not (seed is None or isinstance(seed, np.random.Generator | np.random.SeedSequence)
            or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool))):
        raise TypeError(
            f"seed must be an int, a numpy Generator or SeedSequence, or None, got "
            f"{type(seed).__name__} {seed!r}"
        )
    if isinstance(seed, numbers.Integral) and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(seed)


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
        One of :data:`ACTIVATIONS`: ``"relu"``, ``"relu_unit"`` (``sqrt(2) max(z, 0)``,
        unit second moment under N(0, 1): the paper's), ``"erf"``, ``"tanh"``,
        ``"linear"``, ``"gelu"``, ``"silu"``, ``"softplus"``, ``"leaky_relu"``,
        ``"sigmoid"``, ``"elu"`` (definitions: :func:`activate`).
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
        self.parameterization: str = check_choice(parameterization, "parameterization",
                                                  PARAMETERIZATIONS)

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
        check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
        n_layers = len(hidden) + 1
        ws = _per_layer(weight_std, "weight_std", n_layers, minimum=0.0,
                        count=": len(widths) + 1")
        if bias_std is None:
            bias_std = 1.0 if parameterization == "mean_field" else 0.0
        bstd = _per_layer(bias_std, "bias_std", n_layers, minimum=0.0,
                          count=": len(widths) + 1")
        has_bias = _bias_flags(bias, n_layers)
        if parameterization == "mean_field":
            has_bias[-1] = False
        rng = _generator(seed)
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

    def _pattern_slopes(self) -> tuple[float, float]:
        """Slopes ``(pos, neg)`` of a piecewise-linear activation.

        ``phi(z) = pos z`` where ``z > 0`` and ``neg z`` elsewhere.
        """
        if self.activation == "relu":
            return 1.0, 0.0
        if self.activation == "relu_unit":
            return _SQRT2, 0.0
        if self.activation == "leaky_relu":
            return 1.0, _LEAKY_SLOPE
        raise ValueError(
            "pattern needs a piecewise-linear activation ('relu', 'relu_unit', 'leaky_relu'), "
            f"got {self.activation!r}"
        )

    def _check_pattern(self, pattern: Any, n: int) -> list[np.ndarray]:
        """Validate an activation pattern: one bool array (n, n_l) per hidden layer."""
        self._pattern_slopes()
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
            For a piecewise-linear network ("relu", "relu_unit", "leaky_relu"):
            one bool array of shape ``(n, n_l)`` per hidden layer used in place
            of the activation pattern ``z_l > 0``, i.e. the pass of the network
            linearised on that pattern, ``phi(z) = pos z`` where the pattern is
            True and ``neg z`` where it is False (``neg = 0`` for the ReLUs,
            0.01 for leaky_relu; training's step control freezes the pattern of
            a step's start this way).

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
            pos, neg = self._pattern_slopes()
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
                if pattern is None:
                    a = activate(self.activation, z)
                elif neg == 0.0:
                    a = (pos * z) * pattern[l]
                else:
                    a = z * np.where(pattern[l], pos, neg)
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
                    pos, neg = self._pattern_slopes()
                    if neg == 0.0:
                        delta *= pattern[l - 1]
                        delta *= pos
                    else:
                        delta *= np.where(pattern[l - 1], pos, neg)
        return gW, gb

    # -- storage (kernelcomp/_network_file.py) --------------------------------------
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
        _network_file.to_hdf5(self, group)

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
        return _network_file.from_hdf5(cls, group)

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
        return _network_file.save(self, path)

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
        return _network_file.load(cls, path, group=group, activation=activation)

    # -- PyTorch (kernelcomp/_torch.py) -----------------------------------------------
    @classmethod
    def from_torch(cls, module_or_state_dict: Any, activation: str | None = None) -> FCNetwork:
        """Import a PyTorch ``Linear``/activation stack (``"standard"`` parameterization).

        PyTorch is imported only here (optional extra ``kernelcomp[torch]``); a
        plain mapping of arrays (a state dict converted with ``.numpy()``) works
        without it.

        Parameters
        ----------
        module_or_state_dict : torch.nn.Module or mapping
            An ``nn.Sequential`` of ``Linear`` layers separated by one activation
            each, read in forward order (one activation instance may be reused;
            nested Sequentials are flattened; ``Flatten`` and ``Dropout`` are
            skipped), or another module whose leaf modules, in registration
            order, are such a stack; or its ``state_dict()``: keys
            ``"<name>.weight"`` and optional ``"<name>.bias"``, in layer order.
            The activations: ``nn.ReLU`` (``"relu"``), ``nn.Tanh``, ``nn.Identity``
            (``"linear"``), ``nn.GELU()`` (exact form, ``approximate="none"``),
            ``nn.SiLU``, ``nn.Softplus()`` (``beta=1``, ``threshold >= 20``),
            ``nn.LeakyReLU()`` (``negative_slope=0.01``), ``nn.Sigmoid``,
            ``nn.ELU()`` (``alpha=1``); see :func:`activate`.
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
            For an unsupported object or layer type (the message names the layer).
        ValueError
            If the layers do not chain, a ``Linear`` layer is applied twice (shared
            weights), an activation has other options than the ones above, or the
            activations are mixed or disagree with ``activation``.

        Examples
        --------
        >>> import pytest, kernelcomp as kc
        >>> nn = pytest.importorskip("torch").nn
        >>> act = nn.GELU()  # one instance, applied twice
        >>> model = nn.Sequential(nn.Linear(5, 16), act, nn.Linear(16, 16), act, nn.Linear(16, 1))
        >>> net = kc.FCNetwork.from_torch(model)
        >>> net.widths, net.activation, net.parameterization
        ((16, 16), 'gelu', 'standard')
        """
        return _torch.from_torch(cls, module_or_state_dict, activation)

