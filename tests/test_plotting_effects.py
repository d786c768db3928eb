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


# ---------------------------------------------------------------------------
# _style: the one figure style
# ---------------------------------------------------------------------------
def test_new_figure_sizes_layout_and_pyplot():
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig, ax = _style.new_figure()
    assert tuple(fig.get_size_inches()) == (5.2, 4.0) and plt.get_fignums() == []
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert isinstance(ax, matplotlib.axes.Axes)
    fig, axes = _style.new_figure(2, 3)
    assert axes.shape == (2, 3)
    assert fig.get_size_inches() == pytest.approx((5.2 + 2 * 3.4, 4.0 * 1.8))
    fig, axes = _style.new_figure(3, 1, squeeze=False, sharex=True)
    assert axes.shape == (3, 1) and fig.get_size_inches() == pytest.approx((5.2, 4.0 * 2.6))
    assert axes[0, 0].get_shared_x_axes().joined(axes[0, 0], axes[2, 0])
    fig, _ = _style.new_figure(1, 2, size=(3.0, 2.0), pyplot=True)
    assert tuple(fig.get_size_inches()) == (3.0, 2.0) and plt.get_fignums() == [fig.number]
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)


def png_size(path):
    """(width, height) in pixels from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_save_figure_resolution_and_closing(tmp_path):
    fig, _ = _style.new_figure(size=(2.0, 1.0))
    _style.save_figure(fig, tmp_path / "plain.png")
    assert png_size(tmp_path / "plain.png") == (220, 110)  # DPI = 110
    fig, _ = _style.new_figure(size=(2.0, 1.0), pyplot=True)
    other, _ = _style.new_figure(pyplot=True)
    _style.save_figure(fig, tmp_path / "py.png")
    assert png_size(tmp_path / "py.png") == (220, 110)
    assert plt.get_fignums() == [other.number]  # only the saved one is closed


def test_axes_given_or_new():
    ax = fresh_ax()
    assert _style._axes(ax) is ax
    new = _style._axes(None)
    assert plt.get_fignums() == [new.figure.number]
    assert tuple(new.figure.get_size_inches()) == (5.2, 4.0)
    with pytest.raises(TypeError) as info:
        _style._axes([ax])
    assert str(info.value) == "ax must be a matplotlib Axes or None, got list"


def test_checkpoint_labels_exactly():
    assert kp.checkpoint_labels(1) == ["init"]
    assert kp.checkpoint_labels(2) == ["init", "final"]
    assert kp.checkpoint_labels(3) == ["init", "checkpoint 1", "final"]
    assert kp.checkpoint_labels(5)[1:4] == ["checkpoint 1", "checkpoint 2", "checkpoint 3"]
    for n, exc, message in ((0, ValueError, "n must be >= 1, got 0"),
                            (2.0, TypeError, "n must be an integer, got float 2.0")):
        with pytest.raises(exc) as info:
            kp.checkpoint_labels(n)
        assert str(info.value) == message


def test_labels_and_colours():
    names, cols = _style._labels_and_colors(1, None, "viridis")
    assert names == ["init"] and cols == [VIRIDIS(0.0)]
    names, cols = _style._labels_and_colors(3, np.array(["a", "b", "c"]), VIRIDIS)
    assert names == ["a", "b", "c"]
    assert cols == [VIRIDIS(0.0), VIRIDIS(0.425), VIRIDIS(0.85)]
    names, _ = _style._labels_and_colors(2, (1, 2.5), "magma")
    assert names == ["1", "2.5"]
    for labels, exc, message in (
        ("ab", TypeError, "labels must be a sequence of strings, got str"),
        ({"a", "b"}, TypeError, "labels must be a sequence of strings, got set"),
        (["a"], ValueError, "labels has 1 entries, but there are 2 checkpoints"),
    ):
        with pytest.raises(exc) as info:
            _style._labels_and_colors(2, labels, "viridis")
        assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        _style._labels_and_colors(2, None, "no-such-map")
    assert str(info.value) == "cmap 'no-such-map' is not a matplotlib colormap"
    assert isinstance(info.value.__cause__, KeyError)


def test_legend_only_with_labelled_artists():
    ax = fresh_ax()
    ax.plot([1, 2])
    _style._legend(ax)
    assert ax.get_legend() is None
    ax.plot([2, 1], label="x")
    _style._legend(ax)
    assert legend_texts(ax) == ["x"]
    assert_house_legend(ax)


# ---------------------------------------------------------------------------
# _geometry: neurons, layers, trajectories
# ---------------------------------------------------------------------------
from kernelcomp.diagnostics import LayerGeometry, TrajectoryEmbedding  # noqa: E402
from kernelcomp.plotting import _geometry  # noqa: E402

TAB20 = matplotlib.colormaps["tab20"]
GREY = (0.6, 0.6, 0.6)


def hand_net(readout=(0.5, -1.0, 0.25, 0.0)):
    """Four relu neurons on d=3: 0 and 1 share a pattern, 3 is dead on ``hand_X``."""
    W = [[1.0, 0.0, 0.0], [2.0, 0.5, 0.0], [-1.0, 0.0, 2.0], [0.0, -1.0, 0.0]]
    return kc.FCNetwork([W, [list(readout)]], None, "relu")


def hand_X():
    return np.array([[1.0, 1.0, 0.0], [-1.0, 2.0, 1.0], [0.5, 0.5, -1.0]])


def rgb(colors):
    return np.array([[float(v) for v in c[:3]] for c in colors])


def test_neurons_coordinates_sizes_colours_by_hand():
    net = hand_net()
    W = np.asarray(net.weights[0])
    ax = kp.plot_neurons(net, [0], X=hand_X())
    (coll,) = ax.collections
    np.testing.assert_allclose(coll.get_offsets(),
                               np.c_[W[:, 0], np.hypot(W[:, 1], W[:, 2])], rtol=1e-15)
    # areas 4 + 56 |beta| / max |beta|
    np.testing.assert_allclose(coll.get_sizes(), [32.0, 60.0, 18.0, 4.0], rtol=1e-15)
    att = dg.attractors(net, hand_X())
    assert att.labels.tolist()[:2] == [0, 0] and att.dead[att.labels[3]]
    want = [GREY if att.dead[a] else TAB20(a % TAB20.N)[:3] for a in att.labels]
    np.testing.assert_allclose(rgb(coll.get_facecolors()), want, rtol=1e-12)
    assert coll.get_alpha() == 0.8 and len(coll.get_edgecolors()) == 0
    assert ax.get_xlabel() == r"$\omega_\parallel$"
    assert ax.get_ylabel() == r"$\|\omega_\perp\|$" and ax.get_title() == ""
    fig = ax.figure
    assert plt.get_fignums() == [fig.number]
    assert fig.get_size_inches() == pytest.approx((0.6 + 3.4, 3.2))


def test_neurons_without_points_readout_or_network():
    net = hand_net(readout=(0.0, 0.0, 0.0, 0.0))  # no readout weight: one size
    ax = kp.plot_neurons(net, np.array([True, False, True]))
    coll = ax.collections[0]
    W = np.asarray(net.weights[0])
    np.testing.assert_allclose(coll.get_offsets(), np.c_[np.hypot(W[:, 0], W[:, 2]),
                                                         np.abs(W[:, 1])], rtol=1e-15)
    np.testing.assert_array_equal(coll.get_sizes(), [16.0] * 4)
    np.testing.assert_array_equal(rgb(coll.get_facecolors()), [to_rgba("C0")[:3]])
    assert ax.get_xlabel() == r"$\|\omega_\parallel\|$"
    # a bare weight matrix, as a nested list: one network, one marker size
    ax = kp.plot_neurons(W.tolist(), [2], axes=fresh_ax())
    np.testing.assert_array_equal(ax.collections[0].get_offsets()[:, 0], W[:, 2])
    np.testing.assert_array_equal(ax.collections[0].get_sizes(), [16.0] * 4)


def test_neurons_of_several_networks():
    nets = [hand_net(), hand_net(readout=(1.0, 1.0, 1.0, 2.0))]
    axes = kp.plot_neurons(nets, [0], X=hand_X())
    assert isinstance(axes, np.ndarray) and axes.dtype == object and axes.shape == (2,)
    assert [ax.get_title() for ax in axes] == ["init", "final"]
    assert [ax.get_ylabel() for ax in axes] == [r"$\|\omega_\perp\|$", ""]
    np.testing.assert_allclose(axes[1].collections[0].get_sizes(), [32.0, 32.0, 32.0, 60.0])
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert axes[0].figure.get_size_inches() == pytest.approx((0.6 + 2 * 3.4, 3.2))
    axes = kp.plot_neurons((nets[0], nets[1], nets[0]), [0])
    assert [ax.get_title() for ax in axes] == ["init", "checkpoint 1", "final"]
    grid = Figure().subplots(1, 2, squeeze=False)  # a 2-D array of axes is flattened
    out = kp.plot_neurons(nets, [0], labels=np.array(["a", "b"]), axes=grid)
    assert list(out) == list(grid[0]) and [ax.get_title() for ax in out] == ["a", "b"]
    out = kp.plot_neurons(nets[:1], [0], labels=[7], axes=fresh_ax())
    assert out.shape == (1,) and out[0].get_title() == "7"
    single = kp.plot_neurons(np.asarray(nets[0].weights[0]), [0], labels=["w"], axes=fresh_ax())
    assert single.get_title() == "w"


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (lambda n, X: kp.plot_neurons([], [0]), ValueError,
         "net_or_nets is empty; at least one network is required"),
        (lambda n, X: kp.plot_neurons([n, np.asarray(n.weights[0])], [0], X=X), TypeError,
         "X colours neurons by attractor, which needs a kc.FCNetwork; net_or_nets[1] is a "
         "ndarray"),
        (lambda n, X: kp.plot_neurons(n, [0], labels="a"), TypeError,
         "labels must be a sequence of strings, got str"),
        (lambda n, X: kp.plot_neurons(n, [0], labels=5), TypeError,
         "labels must be a sequence of strings, got int"),
        (lambda n, X: kp.plot_neurons([n, n], [0], labels=["a"]), ValueError,
         "labels has 1 entries, but there are 2 networks"),
        (lambda n, X: kp.plot_neurons([n, n], [0], axes=[fresh_ax(), "x"]), TypeError,
         "axes[1] must be a matplotlib Axes, got str"),
        (lambda n, X: kp.plot_neurons([n, n], [0], axes=fresh_ax()), ValueError,
         "axes has 1 Axes, but there are 2 networks"),
        (lambda n, X: kp.plot_neurons(kc.FCNetwork.init(3, [], seed=0), [0]), ValueError,
         "net_or_nets has no hidden layer (a linear model); it has no neurons"),
        (lambda n, X: kp.plot_neurons([n, kc.FCNetwork.init(3, [], seed=0)], [0]), ValueError,
         "net_or_nets[1] has no hidden layer (a linear model); it has no neurons"),
    ],
)
def test_neurons_errors(call, exc, message):
    with pytest.raises(exc) as info:
        call(hand_net(), hand_X())
    assert str(info.value) == message


def test_neurons_figure_panels_on_their_own_scales():
    nets = [hand_net(), hand_net(readout=(1.0, 1.0, 1.0, 2.0))]
    X2 = -hand_X()
    fig = _geometry.neurons_figure(nets, [0], [hand_X(), X2], ["one", "two"], suptitle="S")
    assert isinstance(fig, Figure) and plt.get_fignums() == []
    assert fig.get_size_inches() == pytest.approx((0.6 + 2 * 3.4, 3.4))
    a, b = fig.axes
    assert not a.get_shared_x_axes().joined(a, b)
    assert [ax.get_title() for ax in (a, b)] == ["one", "two"]
    medium = FontProperties(size="medium").get_size_in_points()
    assert a.title.get_fontsize() == medium
    assert fig._suptitle.get_text() == "S" and fig._suptitle.get_fontsize() == medium
    att = dg.attractors(nets[1], X2)  # coloured on the panel's own points
    want = [GREY if att.dead[x] else TAB20(x % TAB20.N)[:3] for x in att.labels]
    np.testing.assert_allclose(rgb(b.collections[0].get_facecolors()), want, rtol=1e-12)
    fig = _geometry.neurons_figure(nets[:1], [0], [hand_X()], ["t"])
    assert fig._suptitle is None and len(fig.axes) == 1


def layer_result():
    return LayerGeometry(eigenvalues=(), power_laws=(), effective_ranks=np.array([2.0, 1.5, 1.0]),
                         intrinsic_dimensions=np.array([3.0, np.nan, 2.5]), widths=(5, 5, 5),
                         n_samples=10)


def test_layer_geometry_lines_and_style():
    ax = kp.plot_layer_geometry(layer_result())
    dims, ranks = ax.lines
    assert dims.get_xdata().tolist() == [1, 2, 3] and ranks.get_xdata().tolist() == [1, 2, 3]
    np.testing.assert_array_equal(dims.get_ydata(), [3.0, np.nan, 2.5])
    np.testing.assert_array_equal(ranks.get_ydata(), [2.0, 1.5, 1.0])
    assert style(dims) == ("o", "-", 4.0, 1.2, None) and style(ranks) == ("s", "--", 4.0, 1.2,
                                                                           None)
    assert legend_texts(ax) == ["intrinsic dimension (TwoNN)", "effective rank"]
    assert_house_legend(ax)
    assert ax.xaxis.get_major_locator()._integer
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("hidden layer", "dimension")
    own = fresh_ax()
    assert kp.plot_layer_geometry(layer_result(), own) is own
    with pytest.raises(TypeError) as info:
        kp.plot_layer_geometry([1.0])
    assert str(info.value) == "result must be a LayerGeometry (from layer_geometry), got list"


def embedding(steps=(0, 1, 10, 100), times=(0.0, 0.5, 5.0, 50.0), k=2,
              eigenvalues=(2.0, -0.5, 0.1), fractions=(0.6, 0.15, 0.05)):
    m = len(steps)
    coords = np.arange(m * k, dtype=np.float64).reshape(m, k) ** 1.5
    return TrajectoryEmbedding(coordinates=coords, eigenvalues=np.array(eigenvalues[:k]),
                               explained_fraction=np.array(fractions[:k]),
                               distances=np.zeros((m, m)), steps=np.array(steps),
                               times=np.array(times, dtype=np.float64), split="X", n_points=5)


def test_trajectory_line_points_norm_and_labels():
    from matplotlib.colors import SymLogNorm

    emb = embedding(k=3)
    ax = kp.plot_trajectory(emb)
    x, y = emb.coordinates[:, 0], emb.coordinates[:, 1]
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), x)
    np.testing.assert_array_equal(line.get_ydata(), y)
    assert line.get_linestyle() == "-" and line.get_linewidth() == 0.8
    assert to_rgba(line.get_color()) == to_rgba("0.7") and line.get_zorder() == 1
    (points,) = ax.collections
    np.testing.assert_array_equal(points.get_offsets(), np.c_[x, y])
    np.testing.assert_array_equal(points.get_array(), [0.0, 1.0, 10.0, 100.0])
    assert points.get_sizes().tolist() == [18.0] and points.get_zorder() == 2
    assert points.get_cmap().name == "viridis"
    # symmetric-log colours: linear below the smallest positive step (1), base 10
    want = SymLogNorm(linthresh=1.0, vmin=0.0, vmax=100.0, base=10)
    probe = np.array([0.0, 0.5, 1.0, 3.0, 10.0, 50.0, 100.0])
    np.testing.assert_allclose(points.norm(probe), want(probe), rtol=1e-12)
    cbar_ax = [a for a in ax.figure.axes if a is not ax]
    assert len(cbar_ax) == 1 and cbar_ax[0].get_ylabel() == "step"
    init, final = ax.texts
    assert (init.get_text(), final.get_text()) == ("init", "final")
    assert init.xy == (x[0], y[0]) and final.xy == (x[-1], y[-1])
    small = FontProperties(size="small").get_size_in_points()
    for text in (init, final):
        assert text.get_position() == (4, 4) and text.anncoords == "offset points"
        assert text.get_fontsize() == small
    assert ax.get_xlabel() == "InPCA 1 (60.0 %)"
    assert ax.get_ylabel() == "InPCA 2 (15.0 %, $\\lambda < 0$)"


def test_trajectory_by_time_and_degenerate_ranges():
    from matplotlib.colors import Normalize, SymLogNorm

    own = fresh_ax()
    magma = matplotlib.colormaps["magma"]
    ax = kp.plot_trajectory(embedding(), own, color_by="time", cmap=magma)
    assert ax is own
    points = ax.collections[0]
    np.testing.assert_array_equal(points.get_array(), [0.0, 0.5, 5.0, 50.0])
    assert points.get_cmap() is magma or points.get_cmap().name == "magma"
    want = SymLogNorm(linthresh=0.5, vmin=0.0, vmax=50.0, base=10)
    probe = np.array([0.0, 0.25, 0.5, 2.0, 50.0])
    np.testing.assert_allclose(points.norm(probe), want(probe), rtol=1e-12)
    assert [a.get_ylabel() for a in ax.figure.axes if a is not ax] == ["time"]
    # one value only: a linear norm over [v, v + 1]
    ax = kp.plot_trajectory(embedding(steps=(5, 5), times=(1.0, 1.0)), fresh_ax())
    norm = ax.collections[0].norm
    assert type(norm) is Normalize and (norm.vmin, norm.vmax) == (5.0, 6.0)
    # no positive value: linear over the range
    ax = kp.plot_trajectory(embedding(steps=(0, 0), times=(-2.0, 0.0)), fresh_ax(),
                            color_by="time")
    norm = ax.collections[0].norm
    assert type(norm) is Normalize and (norm.vmin, norm.vmax) == (-2.0, 0.0)
    # a positive or zero eigenvalue: no sign in the label (only lambda < 0 is time-like)
    for second in (0.5, 0.0):
        ax = kp.plot_trajectory(embedding(eigenvalues=(2.0, second)), fresh_ax())
        assert ax.get_ylabel() == "InPCA 2 (15.0 %)"


@pytest.mark.parametrize(
    ("kwargs", "emb", "exc", "message"),
    [
        ({}, embedding(k=1), ValueError,
         "embedding has 1 component; plot_trajectory needs 2 (trajectory_embedding(..., "
         "n_components=2) or more, and 2 checkpoints)"),
        ({"color_by": "time"}, embedding(times=(0.0, np.nan, 1.0, 2.0)), ValueError,
         "the embedding does not record every checkpoint's time"),
        ({"color_by": "loss"}, embedding(), ValueError, "color_by must be one of"),
        ({"cmap": "no-such-map"}, embedding(), ValueError,
         "cmap 'no-such-map' is not a matplotlib colormap"),
        ({}, np.zeros((3, 2)), TypeError,
         "embedding must be a TrajectoryEmbedding (from trajectory_embedding), got ndarray"),
    ],
)
def test_trajectory_errors(kwargs, emb, exc, message):
    with pytest.raises(exc) as info:
        kp.plot_trajectory(emb, **kwargs)
    assert str(info.value).startswith(message)


def test_neurons_colours_wrap_around_the_attractor_colormap():
    # 24 neurons at distinct angles in the plane of the first two inputs: 24 half-circles of
    # the points, 24 attractors; ids 20..23 take the colours of 0..3 (tab20 has 20)
    h = 24
    theta = np.linspace(0, 2 * np.pi, h, endpoint=False) + 0.01
    net = kc.FCNetwork([np.c_[np.cos(theta), np.sin(theta), np.zeros(h)], [np.ones(h)]], None,
                       "relu")
    a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    X = np.c_[np.cos(a), np.sin(a), np.zeros(a.size)]
    att = dg.attractors(net, X)
    assert att.labels.tolist() == list(range(h)) and not att.dead.any()
    ax = kp.plot_neurons(net, [0], X=X)
    want = np.array([TAB20(a % 20)[:3] for a in range(h)])
    np.testing.assert_allclose(rgb(ax.collections[0].get_facecolors()), want, rtol=1e-12)
    np.testing.assert_array_equal(want[20:], want[:4])


def test_neurons_of_something_else_and_a_ragged_figure():
    with pytest.raises(TypeError) as info:
        kp.plot_neurons(5, [0])
    assert str(info.value) == ("net must be a network with .weights (e.g. kc.FCNetwork) or a "
                               "(h, d) first-layer weight matrix, got int")
    with pytest.raises(ValueError, match="zip"):  # one point set for two networks
        _geometry.neurons_figure([hand_net(), hand_net()], [0], [hand_X()], ["a", "b"])


def test_house_line_styles_hold_under_another_rc():
    # the format strings are explicit: a user's rc (dotted lines, markers) does not restyle them
    with matplotlib.rc_context({"lines.linestyle": ":", "lines.marker": "x"}):
        ax = kp.plot_cumulative_projection([1.0, 0.5], [1.0, 1.0])
        assert style(ax.lines[0])[:2] == ("None", "-")
        ax = kp.plot_spectrum([1.0, 0.5, 0.25], fit_range=(1, 3))
        assert [style(ln)[:2] for ln in ax.lines] == [(".", "-"), ("None", "--")]
        ax = kp.plot_trajectory(embedding(), fresh_ax())
        assert style(ax.lines[0])[:2] == ("None", "-")
