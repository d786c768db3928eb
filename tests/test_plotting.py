"""Tests of kernelcomp.plotting: the axes hold the diagnostics' numbers (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp import plotting as kp

DTYPES = [np.float64, np.float32]


@pytest.fixture(autouse=True)
def _no_show_and_close(monkeypatch):
    def show(*args, **kwargs):
        raise AssertionError("plotting functions must never call plt.show()")

    monkeypatch.setattr(plt, "show", show)
    yield
    plt.close("all")


@pytest.fixture
def kpca(rng):
    """Kernel PCA of an NTK Gram on stripe data, and the labels."""
    X, y = kc.datasets.stripe(80, 3, seed=1)
    return dg.kernel_pca(kc.NTK(bias_std=0.5)(X)), y


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


# ---------------------------------------------------------------------------
# single results
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_plot_spectrum_data_and_power_law(rng, dtype):
    r = np.arange(1, 41.0)
    lam = (2.0 * r**-1.5).astype(dtype)
    lam[-1] = 0.0  # not drawn on log axes
    ax = kp.plot_spectrum(rng.permutation(lam), fit_range=(1, 30))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    data, fit = ax.lines
    np.testing.assert_array_equal(data.get_xdata(), r[:-1])
    np.testing.assert_allclose(data.get_ydata(), np.sort(lam)[::-1][:-1], rtol=1e-7)
    np.testing.assert_array_equal(fit.get_xdata(), [1.0, 30.0])
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(fit.get_ydata(), [2.0, 2.0 * 30**-1.5], rtol=rtol)
    assert fit.get_linestyle() == "--"
    assert legend_texts(ax) == [r"$\propto r^{-1.50}$ (ranks 1-30)"]
    assert ax.get_xlabel() == "rank $r$"


def test_plot_spectrum_result_existing_axes_and_no_fit(kpca):
    ev, _ = kpca
    fig, ax = plt.subplots()
    out = kp.plot_spectrum(ev, power_law=False, ax=ax, label="NTK", color="red")
    assert out is ax
    (line,) = ax.lines
    assert line.get_label() == "NTK"
    assert to_rgba(line.get_color()) == to_rgba("red")
    pos = ev.eigenvalues > 0
    np.testing.assert_allclose(line.get_ydata(), ev.eigenvalues[pos])
    fit_default = dg.spectrum_power_law(ev)
    ax2 = kp.plot_spectrum(ev)
    lo, hi = fit_default.fit_range
    np.testing.assert_array_equal(ax2.lines[1].get_xdata(), [lo, hi])
    assert ax2.figure is not fig


@pytest.mark.parametrize("dtype", DTYPES)
def test_plot_label_projection_and_cumulative(kpca, dtype):
    ev, y = kpca
    V = ev.eigenvectors.astype(dtype)
    c = dg.label_projection(V, y)
    want = c**2 / np.sum(y**2)
    ax = kp.plot_label_projection(c, y, label="init")
    (line,) = ax.lines
    pos = want > 0
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, c.size + 1)[pos])
    np.testing.assert_allclose(line.get_ydata(), want[pos], rtol=1e-6, atol=1e-15)
    assert ax.get_yscale() == "log" and legend_texts(ax) == ["init"]
    ax = kp.plot_label_projection(c, y, n_components=5)
    assert ax.lines[0].get_xdata().max() <= 5
    ax = kp.plot_cumulative_projection(c, y, label="P")
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), dg.cumulative_projection(c, y))
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, c.size + 1))
    assert line.get_ydata()[-1] == pytest.approx(1.0, rel=1e-5)
    assert ax.get_ylim() == (0.0, 1.02) and ax.get_xscale() == "log"
    ax = kp.plot_cumulative_projection(c, y, n_components=7)
    assert ax.lines[0].get_ydata().size == 7


def test_plot_mutual_information(kpca):
    ev, y = kpca
    mi = dg.mutual_information(ev.eigenvectors, y, n_components=6)
    ax = kp.plot_mutual_information(mi, label="final", color="C3")
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 7))
    np.testing.assert_allclose(line.get_ydata(), mi)
    lo, hi = ax.get_ylim()
    assert lo == 0.0 and hi >= 1.05
    assert ax.get_ylabel() == r"$I(\phi_r; y)$ [bits]"
    # the y range grows to hold every curve on the axes, negative values included
    kp.plot_mutual_information([1.5, -0.2], ax=ax)
    lo, hi = ax.get_ylim()
    assert lo == pytest.approx(-0.21) and hi == pytest.approx(1.575)


# ---------------------------------------------------------------------------
# across checkpoints
# ---------------------------------------------------------------------------
def test_checkpoint_labels():
    assert kp.checkpoint_labels(1) == ["init"]
    assert kp.checkpoint_labels(2) == ["init", "final"]
    assert kp.checkpoint_labels(4) == ["init", "checkpoint 1", "checkpoint 2", "final"]
    with pytest.raises(ValueError, match="n must be >= 1"):
        kp.checkpoint_labels(0)


def test_plot_spectra_colours_run_init_to_final(kpca):
    ev, _ = kpca
    spectra = [ev, ev.eigenvalues * 0.5, ev.eigenvalues * 0.25]
    ax = kp.plot_spectra(spectra)
    assert legend_texts(ax) == ["init", "checkpoint 1", "final"]
    cmap = matplotlib.colormaps["viridis"]
    lo, hi = kp._style._CMAP_RANGE
    for line, t in zip(ax.lines, np.linspace(lo, hi, 3), strict=True):
        assert to_rgba(line.get_color()) == pytest.approx(cmap(t))
    np.testing.assert_allclose(ax.lines[2].get_ydata(), 0.25 * ev.eigenvalues[ev.eigenvalues > 0])
    ax = kp.plot_spectra(spectra[:2], labels=["t=0", "t=T"], power_law=True, cmap="magma")
    assert len(ax.lines) == 4
    assert legend_texts(ax)[0] == "t=0" and legend_texts(ax)[2] == "t=T"


def test_plot_projections_and_mi_across_checkpoints(kpca, rng):
    ev, y = kpca
    c0 = dg.label_projection(ev.eigenvectors, y)
    c1 = dg.label_projection(dg.kernel_pca(np.outer(y, y) + np.eye(y.size)).eigenvectors, y)
    ax = kp.plot_label_projections([c0, c1], y, n_components=10)
    assert len(ax.lines) == 2 and legend_texts(ax) == ["init", "final"]
    assert ax.lines[1].get_ydata()[0] == pytest.approx(1.0)  # y is the top eigenvector
    ax = kp.plot_cumulative_projections([c0, c1], y)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 1.0)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), dg.cumulative_projection(c0, y))
    mis = np.array([[0.1, 0.2, 0.1], [0.9, 0.3, 0.2]])  # 2-D: one row per checkpoint
    ax = kp.plot_mutual_informations(mis, labels=["a", "b"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), mis[1])
    assert legend_texts(ax) == ["a", "b"]


def test_plot_kpca_summary(kpca):
    ev, y = kpca
    ev2 = dg.kernel_pca(np.outer(y, y) + kc.NTK()(kc.datasets.stripe(80, 3, seed=1)[0]))
    axes = kp.plot_kpca_summary([ev, ev2], y, labels=["init", "final"], title="stripe")
    assert axes.shape == (2, 2)
    fig = axes[0, 0].figure
    assert fig._suptitle.get_text() == "stripe"
    spec, proj, cum, mi = axes.ravel()
    # the MI panel also has the estimator's floor (a dashed line)
    assert len(spec.lines) == 2 and len(cum.lines) == 2 and len(mi.lines) == 3
    want_mi = dg.mutual_information(ev2.eigenvectors, y)
    np.testing.assert_allclose(mi.lines[1].get_ydata(), want_mi)
    assert proj.lines[0].get_xdata().max() <= 50
    assert proj.get_title() == "label projection per eigenvector (top 50)"
    # a single result, precomputed MI
    axes = kp.plot_kpca_summary(ev, y, mutual_information=[[0.5, 0.25]], n_projection=None)
    np.testing.assert_allclose(axes[1, 1].lines[0].get_ydata(), [0.5, 0.25])
    assert axes[0, 1].get_title() == "label projection per eigenvector"


def test_figure_can_be_saved(tmp_path, kpca):
    ev, y = kpca
    axes = kp.plot_kpca_summary([ev], y)
    path = tmp_path / "kpca.png"
    axes[0, 0].figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: kp.plot_spectrum([1.0, 0.5], ax="ax"), TypeError, "ax must be a matplotlib Axes"),
        (lambda: kp.plot_spectrum([]), ValueError, "eigenvalues is empty"),
        (lambda: kp.plot_spectrum([1.0, 0.5], fit_range=(1, 5)), ValueError, "fit_range"),
        (lambda: kp.plot_mutual_information([]), ValueError, "non-empty 1-D"),
        (lambda: kp.plot_mutual_information([np.nan]), ValueError, "mi contains NaN"),
        (lambda: kp.plot_mutual_information(["a"]), TypeError, "mi must hold real numbers"),
        (lambda: kp.plot_label_projection([1.0], [0.0]), ValueError, "y is all zero"),
        (
            lambda: kp.plot_label_projection([1.0], [1.0], n_components=0),
            ValueError,
            "n_components must be >= 1",
        ),
        (lambda: kp.plot_spectra([]), ValueError, "spectra is empty"),
        (lambda: kp.plot_spectra(np.ones(3)), TypeError, "wrap a single result in a list"),
        (lambda: kp.plot_spectra("abc"), TypeError, "one entry per checkpoint"),
        (
            lambda: kp.plot_spectra([[1.0, 0.5]], labels=["a", "b"], power_law=False),
            ValueError,
            "labels has 2 entries, but there are 1 checkpoints",
        ),
        (lambda: kp.plot_spectra([[1.0, 0.5]], labels="a"), TypeError, "labels must be a seq"),
        (lambda: kp.plot_spectra([[1.0, 0.5]], cmap="nope"), ValueError, "not a matplotlib col"),
        (lambda: kp.plot_kpca_summary([1], [1.0]), TypeError, r"results\[0\] must be a Kernel"),
        (lambda: kp.plot_mutual_informations([[0.1], [0.2]], labels=["x"]), ValueError, "labels"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_summary_mi_count_mismatch(kpca):
    ev, y = kpca
    with pytest.raises(ValueError, match="mutual_information has 2 entries, but there are 1"):
        kp.plot_kpca_summary([ev], y, mutual_information=[[0.1], [0.2]])


def test_given_axes_need_no_pyplot(kpca):
    """With ``ax`` given, drawing works on a pyplot-free Figure (as the CLI does)."""
    from matplotlib.figure import Figure

    ev, y = kpca
    plt.close("all")
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert kp.plot_spectra([ev], ax=ax1) is ax1
    assert kp.plot_cumulative_projection(dg.label_projection(ev.eigenvectors, y), y, ax=ax2) is ax2
    assert ax1.figure is fig and plt.get_fignums() == []


def test_one_figure_style_and_no_pyplot_for_saved_figures(tmp_path):
    from kernelcomp.plotting import _style

    plt.close("all")
    fig, ax = _style.new_figure()
    assert plt.get_fignums() == [] and tuple(fig.get_size_inches()) == _style.FIGSIZE
    fig, axes = _style.new_figure(1, 3, squeeze=False)
    assert axes.shape == (1, 3)
    assert fig.get_size_inches()[0] == pytest.approx(_style.FIGSIZE[0] + 2 * _style.PANEL_WIDTH)
    _style.save_figure(fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    # ax=None opens a pyplot figure (plt.show() shows it); save_figure closes it
    ax = kp.plot_spectrum([3.0, 2.0, 1.0])
    assert plt.get_fignums() == [ax.figure.number]
    assert tuple(ax.figure.get_size_inches()) == _style.FIGSIZE
    _style.save_figure(ax.figure, tmp_path / "b.png")
    assert plt.get_fignums() == []


# ---------------------------------------------------------------------------
# issue 27: spectra divided by the trace, the MI estimator's floor
# ---------------------------------------------------------------------------
def test_plot_spectra_divided_by_the_trace(kpca):
    ev, _ = kpca
    ax = kp.plot_spectrum(ev, trace=True, power_law=False)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ev.eigenvalues[ev.eigenvalues > 0]
                               / ev.trace)
    assert "trace" in ax.get_ylabel()
    assert "trace" not in kp.plot_spectrum(ev, power_law=False).get_ylabel()
    ax = kp.plot_spectra([ev.eigenvalues, 2 * ev.eigenvalues], traces=[ev.trace, 2 * ev.trace])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ax.lines[1].get_ydata())
    assert "trace" in ax.get_ylabel()
    with pytest.raises(ValueError, match=r"traces must have one value per spectrum \(2\)"):
        kp.plot_spectra([ev.eigenvalues, ev.eigenvalues], traces=[1.0])
    with pytest.raises(ValueError, match="trace must be > 0"):
        kp.plot_spectrum(ev.eigenvalues, trace=0.0)
    with pytest.raises(TypeError, match="trace=True needs a KernelPCAResult"):
        kp.plot_spectrum(ev.eigenvalues, trace=True)


def test_plot_mutual_informations_draws_the_floor(kpca):
    ev, y = kpca
    mi = dg.mutual_information(ev.eigenvectors, y, n_components=6)
    floor = dg.mutual_information_floor(ev.eigenvectors, y, n_components=6)
    ax = kp.plot_mutual_informations([mi, mi], floor=floor)
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.all(np.asarray(dashed[0].get_ydata()) == floor)
    assert any("floor" in t.get_text() for t in ax.get_legend().get_texts())
    axes = kp.plot_kpca_summary([ev], y)
    assert any(ln.get_linestyle() == "--" for ln in axes[1, 1].lines)
    assert "trace" in axes[0, 0].get_ylabel()
