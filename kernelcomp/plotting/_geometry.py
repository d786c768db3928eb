"""Figures of the network-geometry diagnostics (neurons, layers, training trajectories).

As for the kernel-PCA figures, every function imports matplotlib when it is
called, draws on the axes it is given (new ones when None), returns the axes,
and never calls ``plt.show()``:

* :func:`plot_neurons` -- the first-layer neurons in the plane (weight along the
  informative direction, norm of the uninformative weights), sized by their
  readout weight and coloured by attractor; several checkpoints side by side;
* :func:`plot_layer_geometry` -- intrinsic dimension and effective rank against
  the hidden layer;
* :func:`plot_trajectory` -- the InPCA trajectory of a training run, coloured
  along training.

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001: the neurons of the feature regime in the (omega_par, omega_perp) plane.
.. [2] A. Ansuini, A. Laio, J. H. Macke, D. Zoccolan, "Intrinsic dimension of data
   representations in deep neural networks", NeurIPS 2019.
.. [3] J. Mao et al., "The training process of many deep networks explores the
   same low-dimensional manifold", PNAS 121 (2024) e2310002121.
"""


from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelcomp._validation import check_choice
from kernelcomp.diagnostics import (
    LayerGeometry,
    TrajectoryEmbedding,
    attractors,
)
from kernelcomp.diagnostics._compression import _first_layer, _informative_mask
from kernelcomp.diagnostics._neurons import _check_net, _outgoing_norms
from kernelcomp.network import FCNetwork
from kernelcomp.plotting._style import PANEL_WIDTH, _axes, _legend, checkpoint_labels, new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

#: marker areas (points^2) of :func:`plot_neurons`: smallest, added for the largest
#: |beta|, and the one size of neurons without a readout (a bare weight matrix)
_SIZE_MIN, _SIZE_SPAN, _SIZE_PLAIN = 4.0, 56.0, 16.0
#: colour of dead neurons and the qualitative colormap of the attractors
_DEAD_COLOR = (0.6, 0.6, 0.6, 1.0)
_ATTRACTOR_CMAP = "tab20"
_COLOR_BY = ("step", "time")


def _is_single(item: Any) -> bool:
    return isinstance(item, FCNetwork) or (isinstance(item, np.ndarray) and item.ndim == 2)


def _networks(net_or_nets: Any) -> tuple[bool, list[Any]]:
    """(single, items): one network or weight matrix, or a sequence of them."""
    if _is_single(net_or_nets):
        return True, [net_or_nets]
    if isinstance(net_or_nets, Sequence | np.ndarray) and not isinstance(net_or_nets, str):
        items = list(net_or_nets)
        if not items:
            raise ValueError("net_or_nets is empty; at least one network is required")
        if all(_is_single(item) for item in items):
            return False, items
    return True, [net_or_nets]  # e.g. a nested list: a weight matrix, or an error below


def _axes_row(axes: Any, n: int) -> list[Axes]:
    """``n`` axes: a new row of panels, or the ones given (checked)."""
    from matplotlib.axes import Axes

    if axes is None:
        _, grid = new_figure(1, n, size=(0.6 + PANEL_WIDTH * n, 3.2), pyplot=True, sharex=True,
                             sharey=True, squeeze=False)
        return list(grid[0])
    row = [axes] if isinstance(axes, Axes) else list(np.ravel(np.asarray(axes, dtype=object)))
    for i, ax in enumerate(row):
        if not isinstance(ax, Axes):
            raise TypeError(f"axes[{i}] must be a matplotlib Axes, got {type(ax).__name__}")
    if len(row) != n:
        raise ValueError(f"axes has {len(row)} Axes, but there are {n} networks")
    return row


def _titles(labels: Any, n: int) -> list[str | None]:

    if labels is None:
        return [None] if n == 1 else checkpoint_labels(n)
    if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
        raise TypeError(f"labels must be a sequence of strings, got {type(labels).__name__}")
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries, but there are {n} networks")
    return labels


def plot_neurons(
    net_or_nets: Any,
    informative: Any,
    *,
    X: Any = None,
    labels: Any = None,
    axes: Any = None,
) -> Any:
    """The first-layer neurons in the (informative weight, uninformative norm) plane.

    Each neuron ``n`` with first-layer weights ``omega_n`` (as stored, without the
    layer's multiplier) is a point at ``x = omega_n,par`` (its weight on the
    informative direction; with several informative directions the norm
    ``||omega_n,par||``) and ``y = ||omega_n,perp||`` (the norm of its weights on
    the other directions). Marker areas grow with the readout weight ``|beta_n|``
    (the norm of the next layer's column for deeper networks). With ``X`` the
    neurons are coloured by attractor (:func:`kernelcomp.diagnostics.attractors` of
    the first layer on ``X``), dead ones grey. Several networks (checkpoints) are
    drawn side by side, sharing their scales.

    Parameters
    ----------
    net_or_nets : FCNetwork, array-like of shape (h, d), or a sequence of them
        One network (or first-layer weight matrix), or several, e.g.
        ``[ck.net for ck in run.checkpoints]``.
    informative : int, sequence of int, or bool array of shape (d,)
        The informative input directions (``[0]`` for the stripe).
    X : array-like of shape (n, d), optional
        Points whose activation patterns colour the neurons (networks only).
    labels : sequence of str, optional
        Panel titles, one per network; default none for one network and
        ``init, checkpoint 1, ..., final`` for several.
    axes : matplotlib.axes.Axes or sequence of Axes, optional
        One Axes per network; default a new figure with a row of panels.

    Returns
    -------
    matplotlib.axes.Axes or ndarray of Axes
        The Axes for a single network, an array of shape ``(n_networks,)`` for a
        sequence. Each holds one scatter collection, whose offsets are the
        neurons' ``(x, y)``.

    Raises
    ------
    TypeError
        If an item has no first-layer weights, ``X`` is given for a bare weight
        matrix, ``axes`` holds something else than Axes or ``labels`` is not a
        sequence.
    ValueError
        On an empty sequence, invalid ``informative`` (out of range, empty, all
        directions), invalid ``X``, or counts of ``axes`` / ``labels`` that differ
        from the number of networks.

    References
    ----------
    Paccolat et al. (2021), §4 and figure 2: the neurons of a trained network
    in the ``(omega_par, ||omega_perp||)`` plane; in the feature regime they
    leave the axis ``omega_par = 0`` and gather in a few attractors.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> from kernelcomp.plotting import plot_neurons
    >>> X, y = kc.datasets.stripe(40, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [20], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> ax = plot_neurons(net, [0], X=X)
    >>> ax.collections[0].get_offsets().shape
    (20, 2)
    >>> plot_neurons([net, net], [0]).shape
    (2,)
    """
    import matplotlib


    single, items = _networks(net_or_nets)
    n = len(items)
    titles = _titles(labels, n)
    panels = []
    for i, item in enumerate(items):
        if isinstance(item, FCNetwork):
            _check_net(item, "net_or_nets" if single else f"net_or_nets[{i}]")
        W = _first_layer(item)
        mask = _informative_mask(informative, W.shape[1])
        par = W[:, mask]
        x = par[:, 0] if par.shape[1] == 1 else np.linalg.norm(par, axis=1)
        y = np.linalg.norm(W[:, ~mask], axis=1)
        sizes = np.full(x.size, _SIZE_PLAIN)
        if isinstance(item, FCNetwork):
            norms = _outgoing_norms(item, 0)
            top = float(norms.max())
            if top > 0:
                sizes = _SIZE_MIN + _SIZE_SPAN * norms / top
        if X is None:
            colors: Any = "C0"
        else:
            if not isinstance(item, FCNetwork):
                where = "net_or_nets" if single else f"net_or_nets[{i}]"
                raise TypeError(
                    f"X colours neurons by attractor, which needs a kc.FCNetwork; {where} is a "
                    f"{type(item).__name__}"
                )
            att = attractors(item, X)
            cmap = matplotlib.colormaps[_ATTRACTOR_CMAP]
            colors = np.array([_DEAD_COLOR if att.dead[a] else cmap(a % cmap.N)
                               for a in att.labels])  # fmt: skip
        panels.append((x, y, sizes, colors, par.shape[1] == 1))
    row = _axes_row(axes, n)
    for ax, (x, y, sizes, colors, one), title in zip(row, panels, titles, strict=True):
        ax.scatter(x, y, s=sizes, c=colors, edgecolors="none", alpha=0.8)
        ax.set_xlabel(r"$\omega_\parallel$" if one else r"$\|\omega_\parallel\|$")
        if title is not None:
            ax.set_title(title)
    row[0].set_ylabel(r"$\|\omega_\perp\|$")
    return row[0] if single else np.array(row, dtype=object)


def plot_layer_geometry(result: Any, ax: Any = None) -> Axes:
    """Intrinsic dimension and effective rank of the representations, layer by layer.

    Parameters
    ----------
    result : LayerGeometry
        From :func:`kernelcomp.diagnostics.layer_geometry`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        Two lines against the hidden layer (1-based, integer ticks): the TwoNN
        intrinsic dimension and the effective rank of the covariance spectrum
        (undefined values are not drawn).

    Raises
    ------
    TypeError
        If ``result`` is not a ``LayerGeometry`` or ``ax`` is not an Axes.

    References
    ----------
    Ansuini et al. (2019): the intrinsic dimension of the representations
    against depth.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> from kernelcomp.diagnostics import layer_geometry
    >>> from kernelcomp.plotting import plot_layer_geometry
    >>> net = kc.FCNetwork.init(3, [30, 30, 30], seed=0)
    >>> X = np.random.default_rng(0).standard_normal((100, 3))
    >>> ax = plot_layer_geometry(layer_geometry(net, X))
    >>> ax.lines[0].get_xdata().tolist()
    [1, 2, 3]
    """
    from matplotlib.ticker import MaxNLocator


    if not isinstance(result, LayerGeometry):
        raise TypeError(
            f"result must be a LayerGeometry (from layer_geometry), got {type(result).__name__}"
        )
    ax = _axes(ax)
    layers = np.arange(1, result.depth + 1)
    ax.plot(layers, result.intrinsic_dimensions, "o-", ms=4, lw=1.2,
            label="intrinsic dimension (TwoNN)")  # fmt: skip
    ax.plot(layers, result.effective_ranks, "s--", ms=4, lw=1.2, label="effective rank")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("dimension")
    _legend(ax)
    return ax


def _component_label(embedding: TrajectoryEmbedding, r: int) -> str:
    sign = ", $\\lambda < 0$" if embedding.eigenvalues[r] < 0 else ""
    return f"InPCA {r + 1} ({100 * embedding.explained_fraction[r]:.1f} %{sign})"


def plot_trajectory(
    embedding: Any, ax: Any = None, *, color_by: str = "step", cmap: Any = "viridis"
) -> Axes:
    """The InPCA trajectory of a training run on its first two components.

    Parameters
    ----------
    embedding : TrajectoryEmbedding
        From :func:`kernelcomp.diagnostics.trajectory_embedding`, with at least two
        components.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    color_by : {"step", "time"}, default "step"
        Colour of the checkpoints (symmetric-log scale: the checkpoints of a run
        are spaced geometrically), with a colour bar.
    cmap : str or Colormap, default "viridis"

    Returns
    -------
    matplotlib.axes.Axes
        A grey line through the checkpoints in training order, one scatter
        collection (offsets: the first two coordinates), ``init`` and ``final``
        marked; the axis labels give each component's explained fraction and
        its sign.

    Raises
    ------
    TypeError
        If ``embedding`` is not a ``TrajectoryEmbedding`` or ``ax`` is not an Axes.
    ValueError
        If it has fewer than two components, ``color_by`` is unknown, the times
        are not recorded (``color_by="time"``), or ``cmap`` is not a colormap.

    References
    ----------
    Mao et al. (2024): training trajectories in the InPCA embedding of the
    predicted probabilities; Quinn et al. (2019) for InPCA.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> from kernelcomp.diagnostics import trajectory_embedding
    >>> from kernelcomp.plotting import plot_trajectory
    >>> X, y = kc.datasets.stripe(64, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [40], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> run = kc.training.train(net, X, y, alpha=1e-2)
    >>> ax = plot_trajectory(trajectory_embedding(run, X=X))
    >>> len(ax.collections[0].get_offsets()) == len(run.checkpoints)
    True
    """
    import matplotlib
    from matplotlib.colors import Normalize, SymLogNorm


    if not isinstance(embedding, TrajectoryEmbedding):
        raise TypeError(
            "embedding must be a TrajectoryEmbedding (from trajectory_embedding), got "
            f"{type(embedding).__name__}"
        )
    if embedding.n_components < 2:
        raise ValueError(
            f"embedding has {embedding.n_components} component; plot_trajectory needs 2 "
            "(trajectory_embedding(..., n_components=2) or more, and 2 checkpoints)"
        )
    color_by = check_choice(color_by, "color_by", _COLOR_BY)
    values = (embedding.steps if color_by == "step" else embedding.times).astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"the embedding does not record every checkpoint's {color_by}")
    try:
        colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError as exc:
        raise ValueError(f"cmap {cmap!r} is not a matplotlib colormap") from exc
    positive = values[values > 0]
    lo, hi = float(values.min()), float(values.max())
    if positive.size and hi > lo:
        norm: Any = SymLogNorm(linthresh=float(positive.min()), vmin=lo, vmax=hi, base=10)
    else:
        norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)
    ax = _axes(ax)
    x, y = embedding.coordinates[:, 0], embedding.coordinates[:, 1]
    ax.plot(x, y, "-", color="0.7", lw=0.8, zorder=1)
    points = ax.scatter(x, y, c=values, cmap=colormap, norm=norm, s=18, zorder=2)
    ax.figure.colorbar(points, ax=ax, label=color_by)
    ax.annotate("init", (x[0], y[0]), textcoords="offset points", xytext=(4, 4),
                fontsize="small")  # fmt: skip
    ax.annotate("final", (x[-1], y[-1]), textcoords="offset points", xytext=(4, 4),
                fontsize="small")  # fmt: skip
    ax.set_xlabel(_component_label(embedding, 0))
    ax.set_ylabel(_component_label(embedding, 1))
    return ax


def neurons_figure(nets: Sequence[Any], informative: Any, Xs: Sequence[Any],
                   titles: Sequence[str], *, suptitle: str | None = None) -> Any:
    """Several networks' neurons side by side, each on its own scale, coloured by attractor.

    The figure of ``kernelcomp demo`` and ``kernelcomp geometry --plot``: one
    :func:`plot_neurons` panel per network, on its own points ``Xs[i]``; each
    panel keeps its own scale (early checkpoints are orders of magnitude smaller
    than late ones in the feature regime).

    Returns
    -------
    matplotlib.figure.Figure
        A figure not registered with pyplot (save it with ``savefig``).
    """
    fig, grid = new_figure(1, len(nets), size=(0.6 + PANEL_WIDTH * len(nets), 3.4),
                           squeeze=False)
    axes = grid[0]
    for ax, net, X, title in zip(axes, nets, Xs, titles, strict=True):
        plot_neurons(net, informative, X=X, axes=ax)
        ax.set_title(title, fontsize="medium")
    if suptitle is not None:
        fig.suptitle(suptitle, fontsize="medium")
    return fig
