"""Figures of the kernel-PCA diagnostics (Paccolat et al. 2021 [1]_).

Single results: :func:`plot_spectrum` (eigenvalues against rank, log-log, with
the fitted power law), :func:`plot_label_projection` (``c_r^2 / ||y||^2`` per
eigenvector), :func:`plot_cumulative_projection` (``P_k`` against ``k``),
:func:`plot_mutual_information` (bits per eigenvector).

Across checkpoints (a sequence ordered from initialisation to the end of
training, coloured along a sequential colormap): :func:`plot_spectra`,
:func:`plot_label_projections`, :func:`plot_cumulative_projections`,
:func:`plot_mutual_informations`, and :func:`plot_kpca_summary` for all four
panels in one figure.

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: kernel PCA of the empirical NTK along training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelcomp import diagnostics
from kernelcomp._validation import check_int, check_real
from kernelcomp.diagnostics import (
    KernelPCAResult,
    cumulative_projection,
    label_projection,
    spectrum_power_law,
)
from kernelcomp.diagnostics._checks import _eigenvalues_of
from kernelcomp.plotting._style import _axes, _labels_and_colors, _legend, new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes


def _vector(values: Any, name: str) -> np.ndarray:
    """A finite, non-empty 1-D float64 array."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr


def _limit(n_components: int | None, size: int) -> int:
    if n_components is None:
        return size
    return min(check_int(n_components, "n_components", minimum=1), size)


def _sequence(items: Any, name: str) -> list[Any]:
    if isinstance(items, np.ndarray) and items.ndim == 2:
        return list(items)  # one row per checkpoint
    if isinstance(items, np.ndarray) and (items.ndim != 1 or items.dtype.kind in "fiu"):
        raise TypeError(
            f"{name} must be a sequence with one entry per checkpoint (e.g. a list of "
            f"arrays), got an array of shape {items.shape}; wrap a single result in a list"
        )
    if isinstance(items, str | bytes) or not isinstance(items, Sequence | np.ndarray):
        raise TypeError(
            f"{name} must be a sequence with one entry per checkpoint, got {type(items).__name__}"
        )
    items = list(items)
    if not items:
        raise ValueError(f"{name} is empty; at least one checkpoint is required")
    return items


def _overlay(draw: Any, values: Any, what: str, labels: Any, cmap: Any, ax: Any, *args: Any,
             **kwargs: Any) -> Axes:
    """One ``draw(item, *args, ax=, label=, color=, **kwargs)`` per checkpoint, init -> final."""
    items = _sequence(values, what)
    names, colors = _labels_and_colors(len(items), labels, cmap)
    ax = _axes(ax)
    for item, name, color in zip(items, names, colors, strict=True):
        draw(item, *args, ax=ax, label=name, color=color, **kwargs)
    return ax


def plot_spectrum(
    eigenvalues: Any,
    *,
    power_law: bool = True,
    fit_range: tuple[int, int] | None = None,
    ax: Any = None,
    label: str | None = None,
    color: Any = None,
    trace: float | bool | None = None,
) -> Axes:
    """Eigenvalues against their rank on log-log axes, with a fitted power law.

    Parameters
    ----------
    eigenvalues : array-like of shape (k,) or KernelPCAResult
        The spectrum; it is sorted in descending order. Non-positive values
        (round-off) are not drawn.
    power_law : bool, default True
        Overlay the power law fitted by
        :func:`kernelcomp.diagnostics.spectrum_power_law` over its fit range
        (dashed), its exponent in the legend.
    fit_range : (int, int), optional
        Ranks of the fit (see :func:`~kernelcomp.diagnostics.spectrum_power_law`).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    label, color : optional
        Legend label and colour of the spectrum.
    trace : float or True, optional
        Draw ``lambda_r / trace`` (the fraction of the kernel's trace, which
        makes spectra of kernels of different scales comparable), the y label
        saying so: the Gram's trace, or True for a ``KernelPCAResult``'s own.
        None: the raw eigenvalues.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError, TypeError
        On an empty / non-finite spectrum or a bad ``fit_range`` (from the fit);
        on a non-positive ``trace``, or ``trace=True`` without a ``KernelPCAResult``.

    References
    ----------
    Paccolat et al. (2021): NTK spectra along training.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.plotting import plot_spectrum
    >>> ax = plot_spectrum(np.arange(1, 51.0) ** -1.5)
    >>> ax.get_xscale(), ax.get_yscale()
    ('log', 'log')
    """
    lam = np.sort(_eigenvalues_of(eigenvalues).astype(np.float64))[::-1]
    if trace is not None:
        lam = lam / _trace_of(eigenvalues, trace)
    ax = _axes(ax)
    ranks = np.arange(1, lam.size + 1)
    pos = lam > 0
    (line,) = ax.plot(ranks[pos], lam[pos], ".-", ms=3, lw=1, label=label, color=color)
    if power_law:
        fit = spectrum_power_law(lam, fit_range=fit_range)
        lo, hi = fit.fit_range
        rr = np.array([lo, hi], dtype=np.float64)
        ax.plot(
            rr,
            fit(rr),
            "--",
            lw=1.2,
            color=line.get_color(),
            alpha=0.8,
            label=rf"$\propto r^{{-{fit.exponent:.2f}}}$ (ranks {lo}-{hi})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank $r$")
    ax.set_ylabel(r"eigenvalue / trace  $\lambda_r / \mathrm{Tr}\,K$" if trace is not None
                  else r"eigenvalue $\lambda_r$")
    _legend(ax)
    return ax


def _trace_of(eigenvalues: Any, trace: Any) -> float:
    """The trace to normalise a spectrum by (``trace=`` of :func:`plot_spectrum`)."""
    if trace is True:
        if not isinstance(eigenvalues, KernelPCAResult):
            raise TypeError("trace=True needs a KernelPCAResult (which records its trace); "
                            "pass the Gram's trace as a number")
        value = float(eigenvalues.trace)
    elif isinstance(trace, bool):
        raise TypeError("trace must be a positive number, True or None, got False")
    else:
        value = check_real(trace, "trace")
    if not value > 0:
        raise ValueError(f"trace must be > 0 to normalise a spectrum, got {value}")
    return value


def plot_label_projection(
    c: Any,
    y: Any,
    *,
    n_components: int | None = None,
    ax: Any = None,
    label: str | None = None,
    color: Any = None,
) -> Axes:
    r"""Fraction of the labels on each eigenvector, ``c_r^2 / ||y||^2``, against ``r``.

    Parameters
    ----------
    c : array-like of shape (k,) or (k, m)
        Label projections (:func:`kernelcomp.diagnostics.label_projection`);
        several columns are summed (``||c_r||^2``).
    y : array-like of shape (n,) or (n, m)
        The targets that gave ``c`` (for ``||y||^2``).
    n_components : int, optional
        Draw the first ``n_components`` eigenvectors only.
    ax, label, color : optional
        As in :func:`plot_spectrum`.

    Returns
    -------
    matplotlib.axes.Axes
        Log-log axes; exact zeros are not drawn.

    Raises
    ------
    ValueError, TypeError
        On invalid ``c`` / ``y`` (see :func:`~kernelcomp.diagnostics.cumulative_projection`).

    References
    ----------
    Paccolat et al. (2021): projection of the labels on the NTK eigenvectors.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.plotting import plot_label_projection
    >>> ax = plot_label_projection([3.0, 1.0, 0.5], [1.0, -1.0, 1.0])
    >>> ax.get_ylabel()
    '$c_r^2 / \\|y\\|^2$'
    """
    P = cumulative_projection(c, y)
    frac = np.diff(P, prepend=0.0)
    k = _limit(n_components, frac.size)
    frac = frac[:k]
    ax = _axes(ax)
    ranks = np.arange(1, k + 1)
    pos = frac > 0
    ax.plot(ranks[pos], frac[pos], "o-", ms=3, lw=0.6, label=label, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvector rank $r$")
    ax.set_ylabel(r"$c_r^2 / \|y\|^2$")
    _legend(ax)
    return ax


def plot_cumulative_projection(
    c: Any,
    y: Any,
    *,
    n_components: int | None = None,
    ax: Any = None,
    label: str | None = None,
    color: Any = None,
) -> Axes:
    """Cumulative fraction of the labels ``P_k`` against ``k`` (log ``k``).

    Parameters
    ----------
    c : array-like of shape (k,) or (k, m)
        Label projections.
    y : array-like of shape (n,) or (n, m)
        The targets that gave ``c``.
    n_components : int, optional
        Draw ``P_1 .. P_{n_components}`` only.
    ax, label, color : optional
        As in :func:`plot_spectrum`.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError, TypeError
        On invalid ``c`` / ``y``.

    References
    ----------
    Paccolat et al. (2021): ``P_k = sum_{r<=k} c_r^2 / p``.

    Examples
    --------
    >>> from kernelcomp.plotting import plot_cumulative_projection
    >>> ax = plot_cumulative_projection([1.0, 1.0], [1.0, 1.0])
    >>> ax.lines[0].get_ydata().tolist()
    [0.5, 1.0]
    """
    P = cumulative_projection(c, y)
    k = _limit(n_components, P.size)
    ax = _axes(ax)
    ax.plot(np.arange(1, k + 1), P[:k], "-", lw=1.5, label=label, color=color)
    ax.set_xscale("log")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("number of eigenvectors $k$")
    ax.set_ylabel(r"$P_k = \sum_{r \leq k} c_r^2 / \|y\|^2$")
    _legend(ax)
    return ax


def plot_mutual_information(
    mi: Any,
    *,
    ax: Any = None,
    label: str | None = None,
    color: Any = None,
    floor: float | None = None,
) -> Axes:
    """Mutual information (bits) of each eigenvector with the labels.

    Parameters
    ----------
    mi : array-like of shape (k,)
        From :func:`kernelcomp.diagnostics.mutual_information`.
    ax, label, color : optional
        As in :func:`plot_spectrum`.
    floor : float, optional
        The estimator's floor (its value on shuffled labels,
        :func:`kernelcomp.diagnostics.mutual_information_floor`), drawn as a
        grey dashed line: estimates at or below it carry no information.

    Returns
    -------
    matplotlib.axes.Axes
        Eigenvector rank (1-based, integer ticks) against bits, the y axis from 0
        to at least 1 bit.

    Raises
    ------
    ValueError, TypeError
        If ``mi`` is not a non-empty finite 1-D array.

    References
    ----------
    Paccolat et al. (2021): mutual information of the top eigenvectors.

    Examples
    --------
    >>> from kernelcomp.plotting import plot_mutual_information
    >>> ax = plot_mutual_information([0.9, 0.2, 0.1])
    >>> ax.lines[0].get_xdata().tolist()
    [1, 2, 3]
    """
    from matplotlib.ticker import MaxNLocator

    values = _vector(mi, "mi")
    ax = _axes(ax)
    ax.plot(np.arange(1, values.size + 1), values, "o-", ms=4, lw=1, label=label, color=color)
    if floor is not None:
        level = check_real(floor, "floor")
        ax.axhline(level, color="0.45", ls="--", lw=1,
                   label=f"estimator floor (shuffled labels), {level:.2f} bit")
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines])
    ax.set_ylim(min(0.0, 1.05 * float(ys.min())), max(1.05, 1.05 * float(ys.max())))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("eigenvector rank $r$")
    ax.set_ylabel(r"$I(\phi_r; y)$ [bits]")
    _legend(ax)
    return ax


def plot_spectra(
    spectra: Any,
    labels: Any = None,
    *,
    power_law: bool = False,
    ax: Any = None,
    cmap: Any = "viridis",
    traces: Any = None,
) -> Axes:
    """Spectra of several checkpoints on one log-log plot, init -> final.

    Parameters
    ----------
    spectra : sequence of array-like or KernelPCAResult
        One spectrum per checkpoint, in training order.
    labels : sequence of str, optional
        Legend labels; default :func:`checkpoint_labels` (``init ... final``).
    power_law : bool, default False
        Overlay each spectrum's fitted power law.
    ax : matplotlib.axes.Axes, optional
    cmap : str or Colormap, default "viridis"
        Colours along training (dark = init).
    traces : sequence of float, or True, optional
        Normalise each spectrum by its Gram's trace (``trace=`` of
        :func:`plot_spectrum`): one trace per spectrum, or True for
        ``KernelPCAResult`` spectra.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError, TypeError
        On an empty sequence, a label count that differs from the number of
        checkpoints, an unknown colormap or an invalid spectrum; on a number
        of traces that differs from the number of spectra.

    References
    ----------
    Paccolat et al. (2021): the NTK spectrum along feature training.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.plotting import plot_spectra
    >>> r = np.arange(1, 30.0)
    >>> ax = plot_spectra([r**-1.0, r**-2.0])
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['init', 'final']
    """
    if traces is None or traces is True:
        return _overlay(plot_spectrum, spectra, "spectra", labels, cmap, ax,
                        power_law=power_law, trace=traces)
    items = _sequence(spectra, "spectra")
    values = list(traces)
    if len(values) != len(items):
        raise ValueError(f"traces must have one value per spectrum ({len(items)}), got "
                         f"{len(values)}")
    names, colors = _labels_and_colors(len(items), labels, cmap)
    ax = _axes(ax)
    for item, name, color, tr in zip(items, names, colors, values, strict=True):
        plot_spectrum(item, ax=ax, label=name, color=color, power_law=power_law, trace=tr)
    return ax


def plot_label_projections(
    projections: Any,
    y: Any,
    labels: Any = None,
    *,
    n_components: int | None = None,
    ax: Any = None,
    cmap: Any = "viridis",
) -> Axes:
    """``c_r^2 / ||y||^2`` per eigenvector for several checkpoints, init -> final.

    Parameters
    ----------
    projections : sequence of array-like
        One label projection ``c`` per checkpoint (same targets ``y``).
    y : array-like of shape (n,) or (n, m)
        The targets.
    labels, ax, cmap : optional
        As in :func:`plot_spectra`.
    n_components : int, optional
        Draw the first ``n_components`` eigenvectors only.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError, TypeError
        As :func:`plot_spectra`, and on invalid projections.

    References
    ----------
    Paccolat et al. (2021): the labels concentrate on the top eigenvectors
    along feature training.

    Examples
    --------
    >>> from kernelcomp.plotting import plot_label_projections
    >>> ax = plot_label_projections([[1.0, 1.0], [1.4, 0.2]], [1.0, 1.0])
    >>> len(ax.lines)
    2
    """
    return _overlay(plot_label_projection, projections, "projections", labels, cmap, ax, y,
                    n_components=n_components)


def plot_cumulative_projections(
    projections: Any,
    y: Any,
    labels: Any = None,
    *,
    n_components: int | None = None,
    ax: Any = None,
    cmap: Any = "viridis",
) -> Axes:
    """``P_k`` against ``k`` for several checkpoints, init -> final.

    Parameters
    ----------
    projections : sequence of array-like
        One label projection ``c`` per checkpoint (same targets ``y``).
    y : array-like of shape (n,) or (n, m)
        The targets.
    labels, ax, cmap : optional
        As in :func:`plot_spectra`.
    n_components : int, optional
        Draw ``P_1 .. P_{n_components}`` only.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError, TypeError
        As :func:`plot_spectra`, and on invalid projections.

    References
    ----------
    Paccolat et al. (2021): cumulative projection along feature training.

    Examples
    --------
    >>> from kernelcomp.plotting import plot_cumulative_projections
    >>> ax = plot_cumulative_projections([[1.0, 1.0], [1.4, 0.2]], [1.0, 1.0])
    >>> [round(float(v), 2) for v in ax.lines[1].get_ydata()]
    [0.98, 1.0]
    """
    return _overlay(plot_cumulative_projection, projections, "projections", labels, cmap, ax, y,
                    n_components=n_components)


def plot_mutual_informations(
    mis: Any,
    labels: Any = None,
    *,
    ax: Any = None,
    cmap: Any = "viridis",
    floor: float | None = None,
) -> Axes:
    """Mutual information per eigenvector for several checkpoints, init -> final.

    Parameters
    ----------
    mis : sequence of array-like, or array of shape (n_checkpoints, k)
        One mutual-information vector per checkpoint.
    labels, ax, cmap : optional
        As in :func:`plot_spectra`.
    floor : float, optional
        The estimator's floor on these data, drawn once (see
        :func:`plot_mutual_information`).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError, TypeError
        As :func:`plot_spectra`, and on invalid values.

    References
    ----------
    Paccolat et al. (2021): the top eigenvectors gain information on the
    labels along feature training.

    Examples
    --------
    >>> from kernelcomp.plotting import plot_mutual_informations
    >>> ax = plot_mutual_informations([[0.3, 0.1], [0.9, 0.2]], labels=["t=0", "t=T"])
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['t=0', 't=T']
    """
    ax = _overlay(plot_mutual_information, mis, "mis", labels, cmap, ax)
    if floor is not None:
        level = check_real(floor, "floor")
        ax.axhline(level, color="0.45", ls="--", lw=1,
                   label=f"estimator floor (shuffled labels), {level:.2f} bit")
        ax.set_ylim(min(ax.get_ylim()[0], 0.0), max(ax.get_ylim()[1], 1.05 * level))
        _legend(ax)
    return ax


def plot_kpca_summary(
    results: Any,
    y: Any,
    labels: Any = None,
    *,
    mutual_information: Any = None,
    n_components: int = 10,
    n_projection: int | None = 50,
    k: int = 5,
    cmap: Any = "viridis",
    title: str | None = None,
) -> np.ndarray:
    """Four panels of the kernel-PCA diagnostics across checkpoints.

    Spectrum (log-log), ``c_r^2/||y||^2`` per eigenvector, ``P_k``, and the
    mutual information of the top ``n_components`` eigenvectors, one curve per
    checkpoint from init to final.

    Parameters
    ----------
    results : sequence of KernelPCAResult (or a single one)
        Kernel PCA of each checkpoint's Gram on the same points.
    y : array-like of shape (n,)
        Labels of those points: real (e.g. +-1) for the projections; for the
        mutual information two classes unless ``mutual_information`` is given.
    labels : sequence of str, optional
        One per checkpoint; default ``init ... final``.
    mutual_information : sequence of array-like, optional
        Precomputed MI per checkpoint; default: computed with
        :func:`kernelcomp.diagnostics.mutual_information` (paper estimator).
    n_components : int, default 10
        Eigenvectors in the MI panel.
    n_projection : int or None, default 50
        Eigenvectors in the per-eigenvector projection panel (None: all).
    k : int, default 5
        Neighbours of the MI estimator.
    cmap : str or Colormap, default "viridis"
    title : str, optional
        Figure title.

    Returns
    -------
    ndarray of matplotlib.axes.Axes, shape (2, 2)
        ``[[spectrum, projection], [cumulative, mutual information]]`` (the
        spectra divided by their Gram's trace; for two classes the MI panel
        shows the estimator's floor on shuffled labels); the
        figure is ``axes[0, 0].figure``.

    Raises
    ------
    ValueError, TypeError
        On invalid results, labels or targets.

    References
    ----------
    Paccolat et al. (2021): kernel PCA of the empirical NTK along training.

    Examples
    --------
    >>> import numpy as np
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(60, 3, seed=0)
    >>> ev = kc.diagnostics.kernel_pca(kc.NTK()(X))
    >>> axes = kc.plotting.plot_kpca_summary([ev], y)
    >>> axes.shape
    (2, 2)
    """
    if isinstance(results, KernelPCAResult):
        results = [results]
    items = _sequence(results, "results")
    for i, res in enumerate(items):
        if not isinstance(res, KernelPCAResult):
            raise TypeError(
                f"results[{i}] must be a KernelPCAResult (from kernel_pca), got "
                f"{type(res).__name__}"
            )
    proj = [label_projection(res.eigenvectors, y) for res in items]
    if mutual_information is None:
        mis = [
            diagnostics.mutual_information(res.eigenvectors, y, n_components=n_components, k=k)
            for res in items
        ]
    else:
        mis = _sequence(mutual_information, "mutual_information")
        if len(mis) != len(items):
            raise ValueError(
                f"mutual_information has {len(mis)} entries, but there are {len(items)} results"
            )
    fig, axes = new_figure(2, 2, size=(10.0, 7.2), pyplot=True)
    # the estimator's floor depends on n, k and the class balance, not on the vectors
    floor = (diagnostics.mutual_information_floor(items[-1].eigenvectors, y,
                                                  n_components=n_components, k=k)
             if np.unique(np.asarray(y)).size == 2 else None)
    plot_spectra(items, labels, ax=axes[0, 0], cmap=cmap, traces=True)
    plot_label_projections(proj, y, labels, n_components=n_projection, ax=axes[0, 1], cmap=cmap)
    plot_cumulative_projections(proj, y, labels, ax=axes[1, 0], cmap=cmap)
    plot_mutual_informations(mis, labels, ax=axes[1, 1], cmap=cmap, floor=floor)
    axes[0, 0].set_title("spectrum")
    top = "" if n_projection is None else f" (top {min(n_projection, items[0].n_components)})"
    axes[0, 1].set_title(f"label projection per eigenvector{top}")
    axes[1, 0].set_title("cumulative label projection")
    axes[1, 1].set_title("mutual information with the labels")
    if title is not None:
        fig.suptitle(title)
    return axes
