"""Parameter-effect tests of kernelcomp.plotting (issue 26: mutation round on plotting/).

Every figure is read back from its Figure/Axes objects (line data, labels, scales,
limits, colours, legend entries, panels), never from pixels, with the Agg backend.
The oracles are independent: hand-computed data, the diagnostics' own functions
(:mod:`kernelcomp.diagnostics`), matplotlib's colormaps, and the documented
messages. The house style (marker, line style and width, alpha, legend font) is
pinned too: it is the one figure style the package promises (``_style``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp import plotting as kp
from kernelcomp.plotting import _style

SMALL = FontProperties(size="small").get_size_in_points()
VIRIDIS = matplotlib.colormaps["viridis"]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def ev_y():
    """Kernel PCA of a small NTK Gram on stripe data (two classes), and the labels."""
    X, y = kc.datasets.stripe(40, 3, seed=2)
    return dg.kernel_pca(kc.NTK(bias_std=0.5)(X)), y


def style(line):
    """(marker, linestyle, markersize, linewidth, alpha) of a Line2D."""
    return (line.get_marker(), line.get_linestyle(), line.get_markersize(),
            line.get_linewidth(), line.get_alpha())


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def assert_house_legend(ax):
    leg = ax.get_legend()
    assert leg is not None and not leg.get_frame_on()
    assert all(t.get_fontsize() == SMALL for t in leg.get_texts())


def fresh_ax():
    return Figure().subplots()


# ---------------------------------------------------------------------------
# plot_spectrum
# ---------------------------------------------------------------------------
def test_spectrum_line_fit_labels_and_style():
    lam = np.array([0.5, 0.25, 0.5 / 3, 0.125, 0.0, -1e-3])  # 0.5 / r, then dropped values
    ax = kp.plot_spectrum(lam, fit_range=(1, 4), label="K", color="tab:green")
    data, fit = ax.lines
    np.testing.assert_array_equal(data.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(data.get_ydata(), lam[:4])
    assert style(data) == (".", "-", 3.0, 1.0, None)
    assert data.get_label() == "K" and to_rgba(data.get_color()) == to_rgba("tab:green")
    # fit: lambda = 0.5 * r^-1 exactly, dashed, the data's colour, over its fit range
    np.testing.assert_array_equal(fit.get_xdata(), [1.0, 4.0])
    assert fit.get_xdata().dtype == np.float64
    np.testing.assert_allclose(fit.get_ydata(), [0.5, 0.125], rtol=1e-12)
    assert style(fit) == ("None", "--", 6.0, 1.2, 0.8)
    assert to_rgba(fit.get_color()) == to_rgba("tab:green")
    assert legend_texts(ax) == ["K", r"$\propto r^{-1.00}$ (ranks 1-4)"]
    assert_house_legend(ax)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "rank $r$"
    assert ax.get_ylabel() == r"eigenvalue $\lambda_r$"


def test_spectrum_default_fit_range_is_the_fits():
    r = np.arange(1, 61.0)
    lam = 3.0 * r**-2.0
    ax = kp.plot_spectrum(lam)
    want = dg.spectrum_power_law(lam)
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), list(want.fit_range))
    assert ax.lines[0].get_label().startswith("_")  # no label: no legend entry
    assert legend_texts(ax) == [rf"$\propto r^{{-2.00}}$ (ranks {want.fit_range[0]}-"
                                rf"{want.fit_range[1]})"]


def test_spectrum_divided_by_a_trace_and_its_label(ev_y):
    ev, _ = ev_y
    ax = kp.plot_spectrum([4.0, 2.0, 1.0], trace=8, power_law=False, ax=fresh_ax())
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.5, 0.25, 0.125])
    assert ax.get_ylabel() == r"eigenvalue / trace  $\lambda_r / \mathrm{Tr}\,K$"
    assert ax.get_legend() is None  # nothing labelled
    ax = kp.plot_spectrum(ev, trace=True, power_law=False)
    pos = ev.eigenvalues > 0
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ev.eigenvalues[pos] / ev.trace,
                               rtol=1e-12)


@pytest.mark.parametrize(
    ("trace", "exc", "message"),
    [
        (False, TypeError, "trace must be a positive number, True or None, got False"),
        ("big", TypeError, "trace must be a real number, got str 'big'"),
        (-2.0, ValueError, "trace must be > 0 to normalise a spectrum, got -2.0"),
        (0.0, ValueError, "trace must be > 0 to normalise a spectrum, got 0.0"),
    ],
)
def test_spectrum_trace_errors(trace, exc, message):
    with pytest.raises(exc) as info:
        kp.plot_spectrum([1.0, 0.5], trace=trace)
    assert str(info.value) == message


def test_spectrum_trace_true_needs_a_result_and_a_small_trace_works():
    with pytest.raises(TypeError) as info:
        kp.plot_spectrum([1.0, 0.5], trace=True)
    assert str(info.value) == ("trace=True needs a KernelPCAResult (which records its trace); "
                               "pass the Gram's trace as a number")
    # a trace in (0, 1] is valid
    ax = kp.plot_spectrum([1.0, 0.5], trace=0.5, power_law=False)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [2.0, 1.0])


# ---------------------------------------------------------------------------
# plot_label_projection / plot_cumulative_projection
# ---------------------------------------------------------------------------
def test_label_projection_by_hand():
    # ||y||^2 = 4; c_r^2 / 4 = 0.25, 0, 0.5625, 0.0625 (the exact zero is not drawn)
    c, y = [1.0, 0.0, 1.5, 0.5], [1.0, -1.0, 1.0, -1.0]
    ax = kp.plot_label_projection(c, y, label="a", color="C2")
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), [1, 3, 4])
    np.testing.assert_allclose(line.get_ydata(), [0.25, 0.5625, 0.0625], rtol=1e-12)
    assert style(line) == ("o", "-", 3.0, 0.6, None)
    assert to_rgba(line.get_color()) == to_rgba("C2") and legend_texts(ax) == ["a"]
    assert_house_legend(ax)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "eigenvector rank $r$"
    assert ax.get_ylabel() == r"$c_r^2 / \|y\|^2$"
    # n_components: the first ones only; 1 is valid; more than k draws k
    ax = kp.plot_label_projection(c, y, n_components=1, ax=fresh_ax())
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.25])
    ax = kp.plot_label_projection(c, y, n_components=3, ax=fresh_ax())
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 3])
    ax = kp.plot_label_projection(c, y, n_components=99, ax=fresh_ax())
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 3, 4])


def test_cumulative_projection_by_hand():
    c, y = [1.0, 0.0, 1.5, 0.5], [1.0, -1.0, 1.0, -1.0]
    ax = kp.plot_cumulative_projection(c, y, label="P", color="k")
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(line.get_ydata(), [0.25, 0.25, 0.8125, 0.875], rtol=1e-12)
    assert style(line) == ("None", "-", 6.0, 1.5, None)
    assert to_rgba(line.get_color()) == to_rgba("k") and legend_texts(ax) == ["P"]
    assert_house_legend(ax)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert ax.get_ylim() == (0.0, 1.02)
    assert ax.get_xlabel() == "number of eigenvectors $k$"
    assert ax.get_ylabel() == r"$P_k = \sum_{r \leq k} c_r^2 / \|y\|^2$"
    ax = kp.plot_cumulative_projection(c, y, n_components=2, ax=fresh_ax())
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2])
    ax = kp.plot_cumulative_projection(c, y, n_components=1, ax=fresh_ax())
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.25])
    ax = kp.plot_cumulative_projection(c, y, n_components=10, ax=fresh_ax())
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("plot", [kp.plot_label_projection, kp.plot_cumulative_projection])
@pytest.mark.parametrize(
    ("n", "exc", "message"),
    [(0, ValueError, "n_components must be >= 1, got 0"),
     (1.5, TypeError, "n_components must be an integer, got float 1.5")],
)
def test_n_components_errors(plot, n, exc, message):
    with pytest.raises(exc) as info:
        plot([1.0, 0.5], [1.0, 1.0], n_components=n)
    assert str(info.value) == message


# ---------------------------------------------------------------------------
# plot_mutual_information
# ---------------------------------------------------------------------------
def test_mutual_information_line_limits_and_style():
    ax = kp.plot_mutual_information([0.5, 0.25, 0.125], label="MI", color="C1")
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(line.get_ydata(), [0.5, 0.25, 0.125])
    assert style(line) == ("o", "-", 4.0, 1.0, None)
    assert to_rgba(line.get_color()) == to_rgba("C1") and legend_texts(ax) == ["MI"]
    assert_house_legend(ax)
    assert ax.get_ylim() == (0.0, 1.05)
    assert ax.xaxis.get_major_locator()._integer
    assert ax.get_xlabel() == "eigenvector rank $r$"
    assert ax.get_ylabel() == r"$I(\phi_r; y)$ [bits]"
    # one value; integers; above one bit and below zero: 5 % margins
    ax = kp.plot_mutual_information([2], ax=fresh_ax())
    assert ax.lines[0].get_ydata().tolist() == [2.0] and ax.get_ylim() == (0.0, 2.1)
    ax = kp.plot_mutual_information(np.array([3, 1], dtype=np.uint8), ax=fresh_ax())
    assert ax.get_ylim() == pytest.approx((0.0, 3.15))
    ax = kp.plot_mutual_information([-0.5, 0.2], ax=fresh_ax())
    assert ax.get_ylim() == pytest.approx((-0.525, 1.05))


def test_mutual_information_floor_line():
    ax = kp.plot_mutual_information([0.5, 0.25], floor=0.125)
    _, floor = ax.lines
    np.testing.assert_array_equal(floor.get_ydata(), [0.125, 0.125])
    assert floor.get_linestyle() == "--" and floor.get_linewidth() == 1.0
    assert to_rgba(floor.get_color()) == to_rgba("0.45")
    assert legend_texts(ax) == ["estimator floor (shuffled labels), 0.12 bit"]
    # a floor above the values and above one bit raises the top of the y range
    ax = kp.plot_mutual_information([0.5], floor=2.0, ax=fresh_ax())
    assert ax.get_ylim() == pytest.approx((0.0, 2.1))
    with pytest.raises(TypeError) as info:
        kp.plot_mutual_information([0.5], floor="low")
    assert str(info.value) == "floor must be a real number, got str 'low'"


@pytest.mark.parametrize(
    ("mi", "exc", "message"),
    [
        (["a"], TypeError, "mi must hold real numbers, got dtype <U1"),
        ([True, False], TypeError, "mi must hold real numbers, got dtype bool"),
        ([[0.1, 0.2]], ValueError, "mi must be a non-empty 1-D array, got shape (1, 2)"),
        ([], ValueError, "mi must be a non-empty 1-D array, got shape (0,)"),
        ([0.1, np.inf], ValueError, "mi contains NaN or infinity; all values must be finite"),
    ],
)
def test_mutual_information_errors(mi, exc, message):
    with pytest.raises(exc) as info:
        kp.plot_mutual_information(mi)
    assert str(info.value) == message


# ---------------------------------------------------------------------------
# across checkpoints
# ---------------------------------------------------------------------------
def colours(n, cmap=VIRIDIS):
    lo, hi = _style._CMAP_RANGE
    return [cmap(float(t)) for t in (np.linspace(lo, hi, n) if n > 1 else [lo])]


def assert_checkpoint_lines(lines, labels, cmap=VIRIDIS):
    assert [ln.get_label() for ln in lines] == labels
    for line, want in zip(lines, colours(len(labels), cmap), strict=True):
        assert to_rgba(line.get_color()) == pytest.approx(want)


def test_spectra_overlay_labels_colours_and_options():
    r = np.arange(1, 21.0)
    spectra = [r**-1.0, 2 * r**-2.0, 0.5 * r**-3.0]
    ax = kp.plot_spectra(spectra)
    assert len(ax.lines) == 3  # no power law by default
    assert_checkpoint_lines(ax.lines, ["init", "checkpoint 1", "final"])
    for line, lam in zip(ax.lines, spectra, strict=True):
        np.testing.assert_array_equal(line.get_ydata(), lam)
    assert legend_texts(ax) == ["init", "checkpoint 1", "final"]
    magma = matplotlib.colormaps["magma"]
    own = fresh_ax()
    out = kp.plot_spectra(spectra[:2], labels=("a", "b"), power_law=True, ax=own, cmap=magma)
    assert out is own and len(own.lines) == 4
    assert_checkpoint_lines(own.lines[::2], ["a", "b"], magma)
    # the fits: exponents 1 and 2
    assert legend_texts(own)[1].startswith(r"$\propto r^{-1.00}$")
    assert legend_texts(own)[3].startswith(r"$\propto r^{-2.00}$")


def test_spectra_with_traces():
    r = np.arange(1, 21.0)
    own = fresh_ax()
    ax = kp.plot_spectra([r**-1.0, 4 * r**-1.0], labels=["x", "y"], traces=(2.0, 8.0), ax=own,
                         cmap="magma", power_law=True)
    assert ax is own and len(ax.lines) == 4
    data = ax.lines[::2]
    assert_checkpoint_lines(data, ["x", "y"], matplotlib.colormaps["magma"])
    for line in data:
        np.testing.assert_allclose(line.get_ydata(), r**-1.0 / 2, rtol=1e-15)
    assert ax.get_ylabel() == r"eigenvalue / trace  $\lambda_r / \mathrm{Tr}\,K$"
    ax = kp.plot_spectra([r**-1.0], traces=[2.0])
    assert len(ax.lines) == 1 and legend_texts(ax) == ["init"]  # no fit by default
    assert_checkpoint_lines(ax.lines, ["init"])
    with pytest.raises(ValueError) as info:
        kp.plot_spectra([r, r, r], traces=[1.0, 2.0])
    assert str(info.value) == "traces must have one value per spectrum (3), got 2"
    with pytest.raises(ValueError) as info:
        kp.plot_spectra([], traces=[1.0])
    assert str(info.value) == "spectra is empty; at least one checkpoint is required"


def test_spectra_traces_true_reads_each_results_trace(ev_y):
    ev, _ = ev_y
    ax = kp.plot_spectra([ev, ev], traces=True)
    pos = ev.eigenvalues > 0
    for line in ax.lines:
        np.testing.assert_allclose(line.get_ydata(), ev.eigenvalues[pos] / ev.trace, rtol=1e-12)
    assert ax.get_ylabel().startswith("eigenvalue / trace")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (np.ones((2, 2, 2)), "spectra must be a sequence with one entry per checkpoint (e.g. a "
         "list of arrays), got an array of shape (2, 2, 2); wrap a single result in a list"),
        (np.ones(3), "spectra must be a sequence with one entry per checkpoint (e.g. a list "
         "of arrays), got an array of shape (3,); wrap a single result in a list"),
        (5, "spectra must be a sequence with one entry per checkpoint, got int"),
        (b"ab", "spectra must be a sequence with one entry per checkpoint, got bytes"),
    ],
)
def test_checkpoint_sequence_type_errors(items, message):
    with pytest.raises(TypeError) as info:
        kp.plot_spectra(items)
    assert str(info.value) == message


def test_checkpoint_sequences_of_every_accepted_kind():
    r = np.arange(1, 11.0)
    rows = np.vstack([r**-1.0, r**-2.0])
    ax = kp.plot_spectra(rows)  # 2-D array: one row per checkpoint
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), r**-2.0)
    objects = np.empty(2, dtype=object)  # 1-D object array of arrays
    objects[0], objects[1] = r**-1.0, r[:5] ** -2.0
    ax = kp.plot_spectra(objects)
    assert [ln.get_xdata().size for ln in ax.lines] == [10, 5]
    ax = kp.plot_spectra((r**-1.0,))  # a tuple
    assert legend_texts(ax) == ["init"]


def test_projections_overlays(ev_y):
    c0, c1, y = [1.0, 0.0, 1.5, 0.5], [2.0, 0.5, 0.1, 0.0], [1.0, -1.0, 1.0, -1.0]
    magma = matplotlib.colormaps["magma"]
    own = fresh_ax()
    ax = kp.plot_label_projections([c0, c1], y, ["a", "b"], n_components=3, ax=own, cmap=magma)
    assert ax is own
    assert_checkpoint_lines(ax.lines, ["a", "b"], magma)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 3])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 0.0625, 0.0025], rtol=1e-12)
    ax = kp.plot_label_projections([c0, c1], y)
    assert_checkpoint_lines(ax.lines, ["init", "final"])
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 3, 4])
    own = fresh_ax()
    ax = kp.plot_cumulative_projections([c0, c1], y, ["a", "b"], n_components=2, ax=own,
                                        cmap=magma)
    assert ax is own
    assert_checkpoint_lines(ax.lines, ["a", "b"], magma)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 1.0625], rtol=1e-12)
    ax = kp.plot_cumulative_projections([c0, c1], y)
    assert_checkpoint_lines(ax.lines, ["init", "final"])
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 3, 4]
    for plot in (kp.plot_label_projections, kp.plot_cumulative_projections):
        with pytest.raises(ValueError) as info:
            plot([], y)
        assert str(info.value) == "projections is empty; at least one checkpoint is required"
        with pytest.raises(TypeError) as info:
            plot(3, y)
        assert str(info.value) == ("projections must be a sequence with one entry per "
                                   "checkpoint, got int")


def test_mutual_informations_overlay_and_floor():
    magma = matplotlib.colormaps["magma"]
    own = fresh_ax()
    ax = kp.plot_mutual_informations([[0.5, 0.25], [0.75, 0.5]], ["a", "b"], ax=own, cmap=magma)
    assert ax is own and len(ax.lines) == 2
    assert_checkpoint_lines(ax.lines, ["a", "b"], magma)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.75, 0.5])
    ax = kp.plot_mutual_informations([[0.5, 0.25], [0.75, 0.5]], floor=1.5)
    curves, floor = ax.lines[:2], ax.lines[2]
    assert_checkpoint_lines(curves, ["init", "final"])
    np.testing.assert_array_equal(floor.get_ydata(), [1.5, 1.5])
    assert floor.get_linestyle() == "--" and floor.get_linewidth() == 1.0
    assert to_rgba(floor.get_color()) == to_rgba("0.45")
    assert legend_texts(ax) == ["init", "final", "estimator floor (shuffled labels), 1.50 bit"]
    assert_house_legend(ax)
    assert ax.get_ylim() == pytest.approx((0.0, 1.575))  # 5 % above the floor
    ax = kp.plot_mutual_informations([[-0.5, 0.25]], floor=0.1)
    assert ax.get_ylim() == pytest.approx((-0.525, 1.05))  # the curves' range kept
    with pytest.raises(ValueError) as info:
        kp.plot_mutual_informations([])
    assert str(info.value) == "mis is empty; at least one checkpoint is required"
    with pytest.raises(TypeError) as info:
        kp.plot_mutual_informations([[0.5]], floor="x")
    assert str(info.value) == "floor must be a real number, got str 'x'"


# ---------------------------------------------------------------------------
# plot_kpca_summary
# ---------------------------------------------------------------------------
def test_kpca_summary_panels_against_the_diagnostics(ev_y):
    ev, y = ev_y
    ev2 = dg.kernel_pca(np.outer(y, y) + np.eye(y.size))
    magma = matplotlib.colormaps["magma"]
    axes = kp.plot_kpca_summary([ev, ev2], y, ("a", "b"), n_components=4, n_projection=7, k=3,
                                cmap=magma)
    fig = axes[0, 0].figure
    assert axes.shape == (2, 2) and plt.get_fignums() == [fig.number]
    assert tuple(fig.get_size_inches()) == (10.0, 7.2) and fig._suptitle is None
    spec, proj, cum, mi = axes.ravel()
    assert [ax.get_title() for ax in axes.ravel()] == [
        "spectrum", "label projection per eigenvector (top 7)", "cumulative label projection",
        "mutual information with the labels"]
    # spectra divided by their trace, no fit
    assert_checkpoint_lines(spec.lines, ["a", "b"], magma)
    for line, res in zip(spec.lines, (ev, ev2), strict=True):
        pos = res.eigenvalues > 0
        np.testing.assert_allclose(line.get_ydata(), res.eigenvalues[pos] / res.trace,
                                   rtol=1e-12)
    # projections of y on each result's eigenvectors
    for panel in (proj, cum):
        assert_checkpoint_lines(panel.lines, ["a", "b"], magma)
    for line, res in zip(cum.lines, (ev, ev2), strict=True):
        want = dg.cumulative_projection(dg.label_projection(res.eigenvectors, y), y)
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
    assert proj.lines[0].get_xdata().max() <= 7 and proj.lines[1].get_xdata().tolist() == [1]
    # MI with n_components=4 and k=3, and the floor of the estimator (two classes)
    assert_checkpoint_lines(mi.lines[:2], ["a", "b"], magma)
    for line, res in zip(mi.lines[:2], (ev, ev2), strict=True):
        want = dg.mutual_information(res.eigenvectors, y, n_components=4, k=3)
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
    floor = dg.mutual_information_floor(ev2.eigenvectors, y, n_components=4, k=3)
    np.testing.assert_allclose(mi.lines[2].get_ydata(), floor, rtol=1e-12)
    assert legend_texts(mi)[-1] == f"estimator floor (shuffled labels), {floor:.2f} bit"


def test_kpca_summary_defaults(ev_y):
    ev, y = ev_y
    axes = kp.plot_kpca_summary([ev], y, title="T")
    assert axes[0, 0].figure._suptitle.get_text() == "T"
    spec, proj, _, mi = axes.ravel()
    assert_checkpoint_lines(spec.lines, ["init"])
    want = dg.mutual_information(ev.eigenvectors, y, n_components=10, k=5)
    assert mi.lines[0].get_xdata().tolist() == list(range(1, 11))
    np.testing.assert_allclose(mi.lines[0].get_ydata(), want, rtol=1e-12)
    floor = dg.mutual_information_floor(ev.eigenvectors, y, n_components=10, k=5)
    np.testing.assert_allclose(mi.lines[1].get_ydata(), floor, rtol=1e-12)
    top = min(50, ev.n_components)
    assert proj.get_title() == f"label projection per eigenvector (top {top})"
    c = dg.label_projection(ev.eigenvectors, y)
    frac = c**2 / np.sum(y**2)
    keep = np.flatnonzero(frac[:50] > 0) + 1
    np.testing.assert_array_equal(proj.lines[0].get_xdata(), keep)


def test_kpca_summary_more_than_two_classes_has_no_floor(ev_y):
    ev, y = ev_y
    y3 = np.where(np.arange(y.size) % 3 == 0, 2.0, y)  # three label values
    axes = kp.plot_kpca_summary(ev, y3, mutual_information=[[0.25, 0.5]], n_projection=None)
    mi = axes[1, 1]
    assert len(mi.lines) == 1 and legend_texts(mi) == ["init"]
    np.testing.assert_array_equal(mi.lines[0].get_ydata(), [0.25, 0.5])
    assert axes[0, 1].get_title() == "label projection per eigenvector"
    c = dg.label_projection(ev.eigenvectors, y3)
    frac = c**2 / np.sum(y3**2)
    np.testing.assert_array_equal(axes[0, 1].lines[0].get_xdata(), np.flatnonzero(frac > 0) + 1)


def test_kpca_summary_errors(ev_y):
    ev, y = ev_y
    with pytest.raises(TypeError) as info:
        kp.plot_kpca_summary([ev, "x"], y)
    assert str(info.value) == "results[1] must be a KernelPCAResult (from kernel_pca), got str"
    with pytest.raises(ValueError) as info:
        kp.plot_kpca_summary([], y)
    assert str(info.value) == "results is empty; at least one checkpoint is required"
    with pytest.raises(ValueError) as info:
        kp.plot_kpca_summary([ev], y, mutual_information=[])
    assert str(info.value) == "mutual_information is empty; at least one checkpoint is required"
    with pytest.raises(ValueError) as info:
        kp.plot_kpca_summary([ev, ev], y, mutual_information=[[0.1]])
    assert str(info.value) == "mutual_information has 1 entries, but there are 2 results"
