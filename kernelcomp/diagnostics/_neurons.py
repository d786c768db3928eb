"""Geometry of a trained network's neurons and layers.

* :func:`attractors` -- the neurons of a hidden layer grouped by their activation
  pattern on the data: in the feature regime the first-layer neurons of a ReLU
  network collapse onto a few attractors (Paccolat et al. 2021, §4);
  :func:`attractor_network` merges each attractor into one neuron (two when its
  readout weights have both signs), a smaller network with the same outputs on
  the data.
* :func:`layer_geometry` -- per hidden layer, the spectrum of the representation
  covariance, its power-law exponent and effective rank, and the TwoNN intrinsic
  dimension of the representations (Ansuini et al. 2019).

The figures of these results are in :mod:`kernelcomp.plotting`.

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: neurons of the feature regime align on a few
   attractors; the first-layer weights compress the uninformative directions.
.. [2] A. Ansuini, A. Laio, J. H. Macke, D. Zoccolan, "Intrinsic dimension of data
   representations in deep neural networks", NeurIPS 2019: TwoNN dimension of the
   representations, layer by layer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._validation import (
    check_int,
    check_matrix,
    check_real,
)
from kernelcomp.diagnostics._spectrum import effective_rank, intrinsic_dimension, spectrum_power_law
from kernelcomp.network import FCNetwork

#: activations grouped by where the neuron is active (``z > tol``); the others by sign
RELU_FAMILY: tuple[str, ...] = ("relu", "relu_unit")
#: positively homogeneous activations, ``phi(c z) = c phi(z)`` for ``c > 0``, linear on
#: each side of 0: the merge of :func:`attractor_network` is exact for them
HOMOGENEOUS: tuple[str, ...] = ("relu", "relu_unit", "leaky_relu", "linear")
#: :func:`attractor_network` calls the merge exact when ``max |f_merged - f|`` on X is
#: at most this times ``max_x sum_n |c beta_n phi(z_n(x))| + |s b_out|`` (round-off of
#: the regrouped sums)
EXACT_RTOL = 1e-10


def _check_net(net: Any, name: str = "net") -> FCNetwork:
    """A :class:`FCNetwork` with at least one hidden layer."""
    if not isinstance(net, FCNetwork):
        raise TypeError(f"{name} must be a kc.FCNetwork, got {type(net).__name__}")
    if net.depth == 0:
        raise ValueError(f"{name} has no hidden layer (a linear model); it has no neurons")
    return net


def _layer_index(net: FCNetwork, layer: Any) -> int:
    """A hidden-layer index in ``[0, depth)`` (negative values count from the last)."""
    layer = check_int(layer, "layer")
    depth = net.depth
    if not -depth <= layer < depth:
        raise ValueError(
            f"layer must index a hidden layer, in [-{depth}, {depth}) for a network of "
            f"depth {depth}, got {layer}"
        )
    return layer % depth


def _outgoing_norms(net: FCNetwork, layer: int) -> np.ndarray:
    """``||W_{layer+1}[:, n]||`` per neuron ``n``: ``|beta_n|`` for a single-output readout."""
    return np.linalg.norm(net.weights[layer + 1], axis=0)


@dataclass(frozen=True, eq=False)
class Attractors:
    """Neurons of a hidden layer grouped by activation pattern, from :func:`attractors`.

    Attributes
    ----------
    labels : ndarray of shape (h,)
        Attractor id of each neuron (int64); ids are numbered by the first neuron
        of each attractor, so ``labels[0] == 0``.
    patterns : ndarray of shape (n_attractors, n)
        Boolean pattern of each attractor on the ``n`` points: where its neurons'
        pre-activation is ``> tol``.
    sizes : ndarray of shape (n_attractors,)
        Number of neurons per attractor (int64).
    beta_share : ndarray of shape (n_attractors,)
        Share of ``sum_n ||w_out_n||`` that each attractor carries, ``w_out_n`` the
        neuron's outgoing weights (``|beta_n|`` for the readout of a single-output
        network); all zero when every outgoing weight is zero.
    dead : ndarray of shape (n_attractors,)
        True for the attractor of the neurons that are never active on the points
        (ReLU family only; at most one attractor).
    layer : int
        The hidden layer (0-based).
    tol : float
        The activity threshold.
    criterion : {"active", "sign"}
        ``"active"``: patterns of activity of a ReLU-family activation;
        ``"sign"``: sign patterns of the pre-activation (other activations).
    """

    labels: np.ndarray
    patterns: np.ndarray
    sizes: np.ndarray
    beta_share: np.ndarray
    dead: np.ndarray
    layer: int
    tol: float
    criterion: str

    @property
    def n_attractors(self) -> int:
        """Number of distinct patterns."""
        return int(self.sizes.shape[0])

    @property
    def n_neurons(self) -> int:
        """Number of neurons ``h`` of the layer."""
        return int(self.labels.shape[0])

    @property
    def n_samples(self) -> int:
        """Number of points ``n`` the patterns are read on."""
        return int(self.patterns.shape[1])

    def members(self, attractor: int) -> np.ndarray:
        """Indices of the neurons of one attractor, ascending.

        Parameters
        ----------
        attractor : int
            An id in ``[0, n_attractors)``.

        Returns
        -------
        ndarray of int64

        Raises
        ------
        ValueError
            If the id is out of range.
        """
        a = check_int(attractor, "attractor", minimum=0)
        if a >= self.n_attractors:
            raise ValueError(f"attractor must be < n_attractors = {self.n_attractors}, got {a}")
        return np.flatnonzero(self.labels == a)

    def __repr__(self) -> str:
        return (
            f"Attractors(layer={self.layer}, n_neurons={self.n_neurons}, "
            f"n_attractors={self.n_attractors}, dead={int(self.sizes[self.dead].sum())}, "
            f"criterion={self.criterion!r})"
        )


def _group_columns(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the distinct columns of a boolean ``(n, h)`` matrix, by first occurrence.

    Returns ``(labels, first)``: ``labels[k]`` the id of column ``k`` and ``first[a]``
    the first column of id ``a`` (ascending).
    """
    keys = np.ascontiguousarray(np.packbits(A, axis=0).T)  # one byte row per column
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[np.ravel(inverse)].astype(np.int64), first[order]


def attractors(net: Any, X: Any, *, layer: int = 0, tol: float = 0.0) -> Attractors:
    """Group the neurons of a hidden layer by their activation pattern on ``X``.

    The pattern of neuron ``n`` is the set of points where its pre-activation
    ``z_n(x) > tol``. For the ReLU family (``"relu"``, ``"relu_unit"``) these are
    the points where the neuron is active, and neurons with the same pattern act
    as one on ``X`` (see :func:`attractor_network`). For the other activations
    (``"tanh"``, ``"erf"``, ``"linear"``) the grouping is by **sign pattern** of the
    pre-activation, which does not make neurons equivalent. Neurons never active
    (ReLU family) form one attractor flagged ``dead``.

    Parameters
    ----------
    net : FCNetwork
        A network with at least one hidden layer.
    X : array-like of shape (n, d)
        The points the patterns are read on (e.g. the training set).
    layer : int, default 0
        The hidden layer, ``0 <= layer < net.depth`` (negative values count from
        the last).
    tol : float, default 0.0
        Activity threshold, ``>= 0``: a point counts for a neuron when
        ``z > tol``. With ``tol > 0`` a neuron is "dead" at that tolerance.

    Returns
    -------
    Attractors
        ``labels`` (neuron -> attractor, numbered by first neuron), ``patterns``,
        ``sizes``, ``beta_share`` and ``dead``. ``beta_share`` weighs neurons by
        their outgoing weights: ``|beta_n|`` for the readout of a single-output
        network (``layer = net.depth - 1``), the Euclidean norm of the next
        layer's column ``W_{layer+1}[:, n]`` otherwise.

    Raises
    ------
    TypeError
        If ``net`` is not a ``kc.FCNetwork`` or ``layer`` / ``tol`` have the wrong type.
    ValueError
        If ``net`` has no hidden layer, ``layer`` is out of range, ``tol < 0``, or
        ``X`` is not a finite 2-D array with ``net.input_dim`` columns.

    References
    ----------
    Paccolat et al. (2021), §4: in the feature regime the first-layer neurons of
    the stripe model align on a few directions (attractors) fixed by the data.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> from kernelcomp.diagnostics import attractors
    >>> W = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
    >>> net = kc.FCNetwork([W, [[1.0, 1.0, -1.0, 1.0]]], activation="relu")
    >>> att = attractors(net, [[1.0, 0.5], [-1.0, 2.0]])
    >>> att.labels.tolist(), att.sizes.tolist(), att.dead.tolist()
    ([0, 0, 1, 2], [2, 1, 1], [False, False, True])
    >>> att.beta_share.tolist()
    [0.5, 0.25, 0.25]
    """
    net = _check_net(net)
    X = check_matrix(X, "X", dtype=np.float64, n_features=net.input_dim)
    layer = _layer_index(net, layer)
    tol = check_real(tol, "tol", minimum=0.0)
    _, cache = net.forward(X, cache=True)
    active = cache.preactivations[layer] > tol  # (n, h)
    labels, first = _group_columns(active)
    patterns = np.ascontiguousarray(active[:, first].T)
    m = first.size
    sizes = np.bincount(labels, minlength=m).astype(np.int64)
    norms = _outgoing_norms(net, layer)
    total = float(norms.sum())
    share = np.bincount(labels, weights=norms, minlength=m)
    share = share / total if total > 0 else np.zeros(m)
    relu = net.activation in RELU_FAMILY
    dead = ~patterns.any(axis=1) if relu else np.zeros(m, dtype=bool)
    return Attractors(
        labels=labels, patterns=patterns, sizes=sizes, beta_share=share, dead=dead,
        layer=layer, tol=tol, criterion="active" if relu else "sign",
    )  # fmt: skip


def attractor_network(net: Any, X: Any, *, layer: int = 0) -> tuple[FCNetwork, bool]:
    """Merge each attractor into one neuron per readout sign: a smaller, equal network on X.

    The neurons ``n`` of an attractor are active on the same points ``S`` of
    ``X`` (:func:`attractors` with ``tol = 0``). Split them by the sign ``s`` of
    their readout weight ``beta_n`` and replace each part by one neuron

    .. code-block:: text

        w = sum_n |beta_n| w_n,   b = sum_n |beta_n| b_n,   readout s

    For a positively homogeneous activation (``phi(c z) = c phi(z)``, ``c > 0``:
    ReLU, ``relu_unit``, linear) this is exact on ``X``: the merged
    pre-activation ``sum_n |beta_n| z_n`` is a positive combination of values
    ``> 0`` on ``S`` and ``<= 0`` off ``S``, so it keeps the pattern, and on ``S``
    ``s phi(sum |beta_n| z_n) = sum_n beta_n phi(z_n)``. Mixing the signs would
    not keep the pattern, hence one neuron per (attractor, sign). Dead neurons
    (never active) and neurons with ``beta_n = 0`` contribute nothing on ``X`` and
    are dropped; a neuron that is not dead but never positive (``tanh``,
    ``erf``, linear) is kept. Other activations (``tanh``, ``erf``) are not
    homogeneous: their parts become the ``|beta|``-weighted mean neuron with
    readout ``sum_n beta_n``, exact only for identical neurons.

    The multipliers (``weight_mult``, ``bias_mult``) and the parameterization label
    are copied, so a mean-field readout keeps ``c = 1/h`` of the original width.
    Whether the merge is exact is checked on ``X``: ``max |f_merged - f| <=
    EXACT_RTOL * (max_x sum_n |c beta_n phi(z_n(x))| + |s b_out|)``.

    Parameters
    ----------
    net : FCNetwork
        A single-output network.
    X : array-like of shape (n, d)
        The points on which the merged network must agree with ``net``.
    layer : int, default 0
        The layer whose neurons merge; it must be the last hidden layer
        (``net.depth - 1``, or ``-1``), the one the readout weights ``beta`` read:
        0 for the paper's one-hidden-layer network.

    Returns
    -------
    merged : FCNetwork
        One neuron per (living attractor, readout sign), in attractor order with
        the positive part first; one zero neuron when no neuron contributes (the
        output is then the readout bias).
    exact : bool
        Whether ``merged(X)`` equals ``net(X)`` to round-off. When it is False a
        ``RuntimeWarning`` says why.

    Raises
    ------
    TypeError
        If ``net`` is not a ``kc.FCNetwork``.
    ValueError
        If ``net`` has no hidden layer or several outputs, ``layer`` is not the
        last hidden layer, or ``X`` is invalid.

    Warns
    -----
    RuntimeWarning
        When the merge is not exact on ``X`` (a non-homogeneous activation whose
        attractors hold distinct neurons), with the largest deviation.

    References
    ----------
    Paccolat et al. (2021), §4: the neurons of the feature regime collapse on a
    few attractors, so the trained network is effectively a narrow one.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> from kernelcomp.diagnostics import attractor_network
    >>> W = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
    >>> net = kc.FCNetwork([W, [[1.0, 1.0, -1.0, 1.0]]], activation="relu")
    >>> X = np.array([[1.0, 0.5], [-1.0, 2.0]])
    >>> small, exact = attractor_network(net, X)
    >>> small.widths, exact, np.allclose(small(X), net(X))
    ((2,), True, True)
    >>> small.weights[0].tolist()
    [[3.0, 0.0], [0.0, 1.0]]
    """
    net = _check_net(net)
    X = check_matrix(X, "X", dtype=np.float64, n_features=net.input_dim)
    if net.n_outputs != 1:
        raise ValueError(
            f"net must have a single output to merge neurons by readout sign, got "
            f"n_outputs={net.n_outputs}"
        )
    layer = _layer_index(net, layer)
    if layer != net.depth - 1:
        raise ValueError(
            f"layer must be the last hidden layer ({net.depth - 1}, or -1), whose neurons "
            f"the readout reads, got {layer}"
        )
    att = attractors(net, X, layer=layer)
    beta = net.weights[-1][0]
    W, b = net.weights[layer], net.biases[layer]
    homogeneous = net.activation in HOMOGENEOUS
    rows, biases, readout = [], [], []
    for a in range(att.n_attractors):
        if att.dead[a]:
            continue
        members = att.members(a)
        for sign in (1.0, -1.0):
            part = members[np.sign(beta[members]) == sign]
            if part.size == 0:
                continue
            weight = np.abs(beta[part])
            scale = 1.0 if homogeneous else float(weight.sum())
            rows.append((weight @ W[part]) / scale)
            biases.append(float(weight @ b[part]) / scale if b is not None else 0.0)
            readout.append(sign * scale)
    if not rows:  # nothing contributes on X: one neuron that outputs nothing
        rows, biases, readout = [np.zeros(W.shape[1])], [0.0], [0.0]
    merged = FCNetwork(
        [*net.weights[:layer], np.array(rows), np.array([readout])],
        [*net.biases[:layer], None if b is None else np.array(biases), net.biases[-1]],
        net.activation, net.weight_mult, net.bias_mult, net.parameterization,
    )  # fmt: skip
    f, cache = net.forward(X, cache=True)
    contributions = np.abs(cache.inputs[layer + 1] * beta).sum(axis=1)
    scale = abs(net.weight_mult[-1]) * float(contributions.max())
    if net.biases[-1] is not None:
        scale += abs(net.bias_mult[-1] * float(net.biases[-1][0]))
    deviation = float(np.max(np.abs(merged(X) - f)))
    exact = deviation <= EXACT_RTOL * scale
    if not exact:
        why = (
            f"activation {net.activation!r} is not positively homogeneous, so the neurons of "
            "an attractor merge into their |beta|-weighted mean, exact only for identical "
            "neurons"
            if not homogeneous
            else "the regrouped sums differ by more than round-off"
        )
        warnings.warn(
            f"attractor_network is not exact on X: {why}; max |f_merged - f| = "
            f"{deviation:.3g} (outputs up to {scale:.3g})",
            RuntimeWarning,
            stacklevel=2,
        )
    return merged, bool(exact)


@dataclass(frozen=True, eq=False)
class LayerGeometry:
    """Geometry of each hidden layer's representation, from :func:`layer_geometry`.

    Attributes
    ----------
    eigenvalues : tuple of ndarray
        Per hidden layer, the eigenvalues of the centred covariance of its
        post-activations, descending, clipped at 0 (at most ``min(n, n_l)``).
    power_laws : tuple of (PowerLaw or None)
        Per layer, :func:`kernelcomp.diagnostics.spectrum_power_law` of the
        spectrum (default fit range); None where fewer than two positive
        eigenvalues lie in that range.
    effective_ranks : ndarray of shape (depth,)
        Entropy effective rank (:func:`kernelcomp.diagnostics.effective_rank`);
        NaN for a layer whose representation is constant.
    intrinsic_dimensions : ndarray of shape (depth,)
        TwoNN dimension of the representations
        (:func:`kernelcomp.diagnostics.intrinsic_dimension` of their Gram); NaN
        where it is undefined (fewer than 3 points with distinct neighbours).
    widths : tuple of int
        The hidden widths.
    n_samples : int
        Number of points.
    """

    eigenvalues: tuple[np.ndarray, ...]
    power_laws: tuple[Any, ...]
    effective_ranks: np.ndarray
    intrinsic_dimensions: np.ndarray
    widths: tuple[int, ...]
    n_samples: int

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    @property
    def exponents(self) -> np.ndarray:
        """Power-law exponent per layer (NaN where no law was fitted)."""
        return np.array([math.nan if p is None else p.exponent for p in self.power_laws])

    def __repr__(self) -> str:
        ids = ", ".join(f"{v:.3g}" for v in self.intrinsic_dimensions)
        return (
            f"LayerGeometry(widths={list(self.widths)}, n_samples={self.n_samples}, "
            f"intrinsic_dimensions=[{ids}])"
        )


def layer_geometry(net: Any, X: Any, *, n_components: int | None = None) -> LayerGeometry:
    """Spectrum, effective rank and intrinsic dimension of every hidden representation.

    For hidden layer ``l`` with post-activations ``A_l`` (``n x n_l``, the layer's
    output ``phi(z_l)`` on the ``n`` points): the eigenvalues of the **centred**
    covariance ``C_l = (1/n) (A_l - mean)^T (A_l - mean)`` (from the singular
    values of the centred ``A_l``; centring removes the mean activation, a
    constant mode that would otherwise dominate), the power law fitted to them,
    their effective rank, and the TwoNN intrinsic dimension of the points
    ``A_l``, through the Gram ``A_l A_l^T`` whose kernel distance is the Euclidean
    one.

    Parameters
    ----------
    net : FCNetwork
        A network with at least one hidden layer.
    X : array-like of shape (n, d)
        At least 3 points.
    n_components : int, optional
        Keep the leading ``n_components`` eigenvalues of each layer (all when
        None or when a layer has fewer); the power law and the effective rank are
        those of the kept spectrum.

    Returns
    -------
    LayerGeometry
        ``eigenvalues``, ``power_laws``, ``effective_ranks``,
        ``intrinsic_dimensions``, one entry per hidden layer.

    Raises
    ------
    TypeError
        If ``net`` is not a ``kc.FCNetwork`` or ``n_components`` is not an integer.
    ValueError
        If ``net`` has no hidden layer, ``X`` is invalid or has fewer than 3 rows,
        or ``n_components < 1``.

    References
    ----------
    Ansuini et al. (2019): TwoNN intrinsic dimension of the representations
    along the layers. Paccolat et al. (2021): power-law spectra of the kernels
    of trained networks.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> from kernelcomp.diagnostics import layer_geometry
    >>> net = kc.FCNetwork.init(3, [50, 50], seed=0)
    >>> X = np.random.default_rng(0).standard_normal((200, 3))
    >>> geo = layer_geometry(net, X)
    >>> geo.widths, [ev.shape for ev in geo.eigenvalues]
    ((50, 50), [(50,), (50,)])
    >>> bool(np.all(geo.intrinsic_dimensions < 4.5))
    True
    """
    net = _check_net(net)
    X = check_matrix(X, "X", dtype=np.float64, n_features=net.input_dim)
    n = X.shape[0]
    if n < 3:
        raise ValueError(f"X must have at least 3 rows (points) for the TwoNN estimate, got {n}")
    k = None if n_components is None else check_int(n_components, "n_components", minimum=1)
    _, cache = net.forward(X, cache=True)
    spectra, laws, ranks, dims = [], [], [], []
    for l in range(net.depth):
        A = cache.inputs[l + 1]  # phi(z_l)
        s = np.linalg.svd(A - A.mean(axis=0), compute_uv=False)
        lam = np.maximum(s * s / n, 0.0)[:k]
        spectra.append(lam)
        try:
            laws.append(spectrum_power_law(lam))
        except ValueError:  # fewer than two positive eigenvalues in the fit range
            laws.append(None)
        ranks.append(effective_rank(lam) if lam.max() > 0 else math.nan)
        G = A @ A.T
        G = (G + G.T) / 2
        try:
            dims.append(intrinsic_dimension(G))
        except ValueError:  # duplicated points: no distinct neighbours
            dims.append(math.nan)
    return LayerGeometry(
        eigenvalues=tuple(spectra), power_laws=tuple(laws),
        effective_ranks=np.array(ranks, dtype=np.float64),
        intrinsic_dimensions=np.array(dims, dtype=np.float64),
        widths=net.widths, n_samples=n,
    )  # fmt: skip
