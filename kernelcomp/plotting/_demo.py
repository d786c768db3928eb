"""The figures of ``kernelcomp demo``, one function per figure, drawn from its summary.

Each function takes the demo's summary (the content of ``summary.json``) and
returns a new :class:`matplotlib.figure.Figure` in the house style that pyplot
never sees; :func:`kernelcomp.demo.run_demo` saves them as PNG files.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001: figures 2-6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kernelcomp.diagnostics import attractors
from kernelcomp.plotting._geometry import neurons_figure
from kernelcomp.plotting._kpca import (
    plot_cumulative_projections,
    plot_label_projections,
    plot_mutual_informations,
    plot_spectra,
)
from kernelcomp.plotting._style import REGIME_COLORS, new_figure


def _p_ticks(ax: Any, p: Any) -> None:
    """Label the x axis with the sizes themselves (no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks([float(v) for v in p])
    ax.set_xticklabels([str(int(v)) for v in p])
    ax.xaxis.set_minor_formatter(NullFormatter())


def compression_figure(summary: dict[str, Any]) -> Any:
    """Compression against p in both regimes: at t*, at the end, and the theory."""
    fig, ax = new_figure()
    for regime, r in summary["regimes"].items():
        color = REGIME_COLORS[regime]
        p = np.asarray(r["p"], dtype=float)
        per_seed = np.asarray(r["compression_per_seed"], dtype=float)
        ax.plot(np.repeat(p, per_seed.shape[1]), per_seed.ravel(), ".", color=color, alpha=0.35)
        ax.plot(p, np.asarray(r["compression"], dtype=float), "o-", color=color,
                label=f"{regime} ($\\alpha\\sqrt{{h}}$={r['alpha_sqrt_h']:g}), $t^*$")
        if regime == "feature":
            ax.plot(p, r["compression_end"], "s:", color=color, mfc="none",
                    label=f"{regime}, end of training")
    feature = summary["regimes"]["feature"]
    p = np.asarray(feature["p"], dtype=float)
    if "compression_theory" in feature:
        ax.plot(p, feature["compression_theory"], "k--", lw=1,
                label=r"theory $\lambda_{ODE} = \sqrt{p}\,|E[y x_1]| \approx 0.368\sqrt{p}$"
                      "\n(the authors' ODE estimate: compare slopes only)")
    lam = np.asarray(feature["compression"], dtype=float)
    ok = np.isfinite(lam) & (lam > 0)
    if ok.any():
        # sqrt(p) with its prefactor fitted to lambda(t*) (least squares in log space)
        c = fixed_slope_prefactor(p[ok], lam[ok], 0.5)
        ax.plot(p, c * np.sqrt(p), color="0.5", lw=0.8,
                label=f"$\\propto\\sqrt{{p}}$, prefactor fitted ({c:.2f})")
    ax.set(xscale="log", yscale="log", xlabel="training set size p",
           ylabel=r"compression $\lambda$ ($w_1$ / mean$_{j\geq 2}\, w_j$)",
           title=f"First-layer compression at $t^*$ ({summary['config']['dataset']})")
    _p_ticks(ax, p)
    ax.legend(fontsize=8)
    return fig


def compression_trajectory_figure(summary: dict[str, Any]) -> Any:
    """Compression and test error along the largest feature run, with t* marked."""
    tr = summary["compression_trajectory"]
    fig, ax = new_figure()
    t = np.asarray(tr["time"], dtype=float)
    keep = t > 0
    ax.plot(t[keep], np.asarray(tr["compression"])[keep], "o-", color=REGIME_COLORS["feature"],
            ms=3, label=r"compression $\lambda$")
    ax.set(xscale="log", yscale="log", xlabel="flow time t", ylabel=r"compression $\lambda$",
           title=f"Along training (feature, p={tr['p']}, seed {tr['seed']})")
    if tr["t_star_index"] is not None:
        fraction = summary["config"]["t_star_margin_fraction"]
        ax.axvline(t[tr["t_star_index"]], color="gray", ls=":", lw=1,
                   label=f"$t^*$ (> {fraction:.0%} of margins $\\geq$ 1)")
    ax2 = ax.twinx()
    ax2.plot(t[keep], np.asarray(tr["test_error"], dtype=float)[keep], "s-", color="k", ms=3,
             lw=1, label="test error")
    ax2.set(ylabel="test error", yscale="log")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center left")
    return fig


def fixed_slope_prefactor(x: Any, y: Any, slope: float) -> float:
    """``c`` of ``y = c x^slope`` by least squares in log space (the slope fixed).

    ``log c = mean(log y - slope log x)`` over the points given (positive ``y``).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return float(np.exp(np.mean(np.log(y) - slope * np.log(x))))


def _beta(fit: dict[str, Any]) -> str:
    return "n/a" if fit["beta"] is None else f"{fit['beta']:.2f}"


def learning_curves_figure(summary: dict[str, Any]) -> Any:
    """Test error against p in both regimes and on the frozen NTK, fitted and theory slopes."""
    fig, ax = new_figure()
    ex = summary["exponents"]
    for regime, r in summary["regimes"].items():
        color = REGIME_COLORS[regime]
        p = np.asarray(r["p"], dtype=float)
        errors = np.asarray(r["test_error_per_seed"], dtype=float)
        mean = errors.mean(axis=1)
        sem = errors.std(axis=1) / math.sqrt(errors.shape[1])
        ax.errorbar(p, mean, yerr=sem, fmt="o-", color=color, capsize=2,
                    label=f"{regime}: fit $\\beta$=" + _beta(ex[regime]))
        theory = ex["theory"][regime]
        fitted = np.isin(p, ex[regime].get("p_fitted") or p) & (mean > 0)
        if fitted.any():
            # the theory's slope, its prefactor fitted to the measured means
            c = fixed_slope_prefactor(p[fitted], mean[fitted], -theory)
            ax.plot(p, c * p ** (-theory), ":", color=color,
                    label=f"{regime} theory $\\beta$={theory:.3f} (prefactor fitted)")
    fz = ex["lazy_frozen_ntk"]
    ax.plot(np.asarray(fz["p"], dtype=float), fz["test_error"], "^--", color="tab:cyan", ms=4,
            label="frozen initial NTK (SVM): fit $\\beta$=" + _beta(fz))
    ax.set(xscale="log", yscale="log", xlabel="training set size p", ylabel="test error",
           title=f"Learning curves ({summary['config']['dataset']})")
    ax.legend(fontsize=7)
    return fig


def kpca_figure(records: Sequence[dict[str, Any]], y: Any, labels: Sequence[str], *,
                title: str | None = None, n_projection: int = 50) -> Any:
    """The four kernel-PCA panels of :func:`kernelcomp.plotting.plot_kpca_summary`.

    Drawn from :func:`kernelcomp.diagnostics.kpca_record` records (labels
    given), so nothing is computed again.
    """
    fig, axes = new_figure(2, 2, size=(10.0, 7.2))
    projections = [r["label_projection"] for r in records]
    floors = [r["mutual_information_floor"] for r in records if "mutual_information_floor" in r]
    plot_spectra([r["eigenvalues"] for r in records], labels, ax=axes[0, 0],
                 traces=[r["trace"] for r in records])
    plot_label_projections(projections, y, labels, n_components=n_projection, ax=axes[0, 1])
    plot_cumulative_projections(projections, y, labels, ax=axes[1, 0])
    plot_mutual_informations([r["mutual_information"] for r in records], labels, ax=axes[1, 1],
                             floor=float(np.mean(floors)) if floors else None)
    axes[0, 0].set_title("spectrum (divided by the trace)")
    top = min(n_projection, np.asarray(projections[0]).shape[0])
    axes[0, 1].set_title(f"label projection per eigenvector (top {top})")
    axes[1, 0].set_title("cumulative label projection")
    axes[1, 1].set_title("mutual information with the labels")
    if title is not None:
        fig.suptitle(title)
    return fig


def frozen_kernel_figure(summary: dict[str, Any]) -> Any:
    """Test errors of the SVMs on the initial, stretched-initial and final frozen NTK."""
    fk = summary["frozen_kernel"]
    fig, ax = new_figure(size=(5.0, 3.8))
    keys = ("init", "stretched", "final")
    vals = [fk[f"{k}_ntk_test_error"] for k in keys]
    cis = [fk[f"{k}_ntk_test_error_ci"] for k in keys]
    err = np.array([[v - ci[0], ci[1] - v] for v, ci in zip(vals, cis, strict=True)]).T
    ax.bar(["initial NTK", f"initial NTK,\nstretched by $\\lambda^*$={fk['stretch_lambda']:.1f}",
            "final NTK"], vals, yerr=err, capsize=3,
           color=["tab:gray", "tab:orange", REGIME_COLORS["feature"]])
    for i, (v, ci) in enumerate(zip(vals, cis, strict=True)):
        ax.text(i, ci[1], f"{v:.3f}", ha="center", va="bottom")
    per_seed = fk.get("per_seed", [])
    for i, key in enumerate(keys):  # each seed's error: the seed-to-seed spread
        seeds = [e[f"{key}_ntk_test_error"] for e in per_seed]
        ax.plot(i + np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else [i] * len(seeds),
                seeds, "k.", ms=5, label="one seed" if i == 0 and seeds else None)
    if per_seed:
        ax.legend(fontsize=8)
    n = len(per_seed)
    ax.set(ylabel="test error",
           title=f"SVM on the frozen NTK (p={fk['p']}, {n} seed{'s' if n != 1 else ''} pooled)")
    return fig


def feature_neurons_figure(run: Any, k_star: int | None, informative: Any, X: Any) -> Any:
    """The first-layer neurons of a feature run at init, t* and the end (paper's figure 2).

    Coloured by attractor on the run's training points ``X``.
    """
    picks = [("init", 0), *([] if k_star is None else [("$t^*$", k_star)]),
             ("end", len(run.checkpoints) - 1)]
    nets = [run.checkpoints[i].net for _, i in picks]
    # at initialisation the weights are random: there are no attractors to count yet
    titles = [f"{name}, step {run.checkpoints[i].step}: "
              + ("random weights (no attractors yet)" if i == 0 else
                 f"{attractors(net, X).n_attractors} attractors")
              for (name, i), net in zip(picks, nets, strict=True)]
    return neurons_figure(nets, informative, [X] * len(nets), titles,
                          suptitle=f"Neurons of the feature run (p={X.shape[0]}), coloured by "
                          "attractor (at init: the same clustering of random weights)")
