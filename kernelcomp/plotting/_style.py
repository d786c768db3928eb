"""The one figure style of kernelcomp's plots, and the helpers every figure shares.

Sizes, resolution, the colours of the two training regimes, the part of a
sequential colormap used for checkpoints, legends and default checkpoint labels.
Figures that the library saves itself (``kernelcomp demo``, ``--plot`` of the
command line) are built with :func:`new_figure`, plain
:class:`matplotlib.figure.Figure` objects that pyplot never sees; only the
``ax=None`` convenience of the public ``plot_*`` functions opens a pyplot figure
(so that ``plt.show()`` shows it in an interactive session).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelcomp._validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes


#: size (inches) of a one-panel figure, and the width of each extra panel in a row
FIGSIZE: tuple[float, float] = (5.2, 4.0)
PANEL_WIDTH: float = 3.4
#: resolution of the PNG files the library writes
DPI: int = 110
#: colours of the two training regimes
REGIME_COLORS: dict[str, str] = {"feature": "tab:red", "lazy": "tab:blue"}
#: part of the colormap used for checkpoints (the light end of viridis is
#: unreadable on white)
_CMAP_RANGE = (0.0, 0.85)


def new_figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None,
               pyplot: bool = False, **subplots: Any) -> tuple[Any, Any]:
    """A new figure in the house style and its axes (``Figure.subplots`` arguments).

    Parameters
    ----------
    nrows, ncols : int, default 1
        The grid of panels.
    size : (float, float), optional
        Inches; default :data:`FIGSIZE` for one panel, wider by
        :data:`PANEL_WIDTH` per extra column.
    pyplot : bool, default False
        Open it through pyplot (the ``ax=None`` convenience of the public
        functions, so that ``plt.show()`` shows it); otherwise a plain
        :class:`matplotlib.figure.Figure` that pyplot never sees (the figures the
        library saves itself).
    **subplots
        Passed to :meth:`matplotlib.figure.Figure.subplots` (``squeeze``, ``sharex``...).

    Returns
    -------
    (Figure, Axes or ndarray of Axes)
    """
    if size is None:
        size = (FIGSIZE[0] + PANEL_WIDTH * (ncols - 1), FIGSIZE[1] * (1 + 0.8 * (nrows - 1)))
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size, layout="constrained")
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Any, path: Any) -> None:
    """Write ``fig`` as a PNG at :data:`DPI` (a pyplot figure is closed afterwards)."""
    fig.savefig(path, dpi=DPI)
    if getattr(fig.canvas, "manager", None) is not None:  # registered with pyplot
        import matplotlib.pyplot as plt

        plt.close(fig)


def _axes(ax: Any) -> Axes:
    """``ax``, or new axes in a new pyplot figure (pyplot is imported only then)."""
    from matplotlib.axes import Axes

    if ax is None:
        return new_figure(pyplot=True)[1]
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def checkpoint_labels(n: int) -> list[str]:
    """Default legend labels of ``n`` checkpoints: ``init, 1, ..., final``.

    Parameters
    ----------
    n : int
        Number of checkpoints, at least 1.

    Returns
    -------
    list of str
        ``["init"]`` for one, ``["init", "final"]`` for two, and
        ``["init", "checkpoint 1", ..., "final"]`` beyond.

    Examples
    --------
    >>> checkpoint_labels(3)
    ['init', 'checkpoint 1', 'final']
    """
    n = check_int(n, "n", minimum=1)
    if n == 1:
        return ["init"]
    return ["init", *[f"checkpoint {i}" for i in range(1, n - 1)], "final"]


def _labels_and_colors(n: int, labels: Any, cmap: Any) -> tuple[list[str], list[Any]]:
    import matplotlib

    if labels is None:
        labels = checkpoint_labels(n)
    else:
        if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
            raise TypeError(f"labels must be a sequence of strings, got {type(labels).__name__}")
        labels = [str(s) for s in labels]
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries, but there are {n} checkpoints")
    try:
        colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError as exc:
        raise ValueError(f"cmap {cmap!r} is not a matplotlib colormap") from exc
    lo, hi = _CMAP_RANGE
    points = np.linspace(lo, hi, n) if n > 1 else np.array([lo])
    return labels, [colormap(float(t)) for t in points]


def _legend(ax: Axes) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize="small", frameon=False)
