"""The compression experiment end to end (what ``kernelcomp demo`` runs).

:func:`run_demo` reproduces, at a scale that runs in minutes on two cores, the
experiment of Paccolat et al. (2021) on the stripe model: one-hidden-layer
networks trained in the feature and in the lazy regime over several training
set sizes and seeds (run files with checkpoints), the compression ``lambda`` of
the first-layer weights, learning curves with fitted exponents next to the
theory, kernel PCA of the empirical NTK at initialisation and at the end of
feature training (label projection, mutual information), and SVMs on the
initial and on the final frozen NTK. It writes PNG figures, ``summary.json``
(the schema in the README, plus details) and prints a short report.

The ``kernelcomp demo`` and ``kernelcomp train`` subcommands
(:mod:`kernelcomp.cli`) call into this module; it knows nothing of the command
line.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp import curves, datasets, diagnostics, io, training
from kernelcomp._h5 import _json_default
from kernelcomp._validation import check_choice
from kernelcomp.diagnostics import T_STAR_FRACTION, kpca_record, stretch_inputs, t_star
from kernelcomp.empirical import EmpiricalNTK
from kernelcomp.estimators import HARD_MARGIN_C, NTKClassifier
from kernelcomp.network import FCNetwork
from kernelcomp.plotting import _demo as figures
from kernelcomp.plotting._style import save_figure

__all__ = ["DemoConfig", "default_alpha", "run_demo"]

#: default ``alpha sqrt(h)`` of each regime (feature << 1 << lazy)
ALPHA_SQRT_H: dict[str, float] = {"feature": 0.05, "lazy": 1000.0}
#: smallest default ``alpha`` of the lazy regime. With the paper's mean-field
#: ``f = (1/h) sum ...``, how lazy a run is depends on ``alpha`` itself, not on
#: ``alpha sqrt(h)``: measured (stripe, d = 5, p = 256) relative change of the
#: empirical NTK 0.073 / 0.055 / 0.078 at alpha = 70.7 for h = 200 / 1000 / 3000,
#: but 0.30 at alpha = 31.6, and at h = 1e4 alpha sqrt(h) = 1000 (alpha = 10)
#: compresses (lambda = 2.15 at p = 1000)
LAZY_MIN_ALPHA: float = 70.0
#: compression is also read mid-training, when the loss first falls below this
#: fraction of its initial value (a loss milestone of every run's checkpoints)
MID_LOSS: float = 0.05
#: a regime's compression "grows with p" when log lambda vs log p has at least
#: this slope (half of the paper's sqrt(p))
GROWTH_SLOPE: float = 0.25
#: lambda is read at t*, the first checkpoint with more than
#: diagnostics.T_STAR_FRACTION of the training margins >= 1 (the authors' figures),
#: in the figures' convention
COMPRESSION_CONVENTION: str = "figures"
#: HARD_MARGIN_C as the summary's text writes it (1e20)
_C_TEXT = f"{HARD_MARGIN_C:.0e}".replace("e+", "e")
#: the authors drop runs whose test error is >= this from learning-curve fits
MAX_ERROR: float = 0.25


@dataclass(frozen=True)
class DemoConfig:
    """Scale of the demo (the defaults are the full demo; see :meth:`quick`).

    Attributes
    ----------
    d : int
        Input dimension of the stripe model.
    h : int
        Hidden width.
    p : tuple of int
        Training-set sizes of the learning curves.
    seeds : tuple of int
        Seeds (data and initialisation).
    n_test : int
        Test points per seed.
    loss : str
        Training loss.
    alpha_sqrt_h : dict
        ``alpha sqrt(h)`` of each regime.
    lazy_min_alpha : float
        The lazy regime's ``alpha`` is at least this (``LAZY_MIN_ALPHA``; 0 turns
        the floor off): ``alpha sqrt(h) = 1000`` alone is not lazy at large ``h``.
    max_steps : int
        Step budget of one training run (the paper's "time limit"); a run that
        hits it is reported as not converged. With the default "sliding"
        integrator the demo's runs converge in 100 (lazy) to ~6,000 (feature,
        p = 512) steps; the paper's literal explicit step needs 10^4-10^5.
    kpca_components : int
        Eigenpairs computed for the kernel PCA.
    frozen_p : tuple of int
        Training-set sizes of the lazy learning curve from a hard-margin SVM on
        the frozen initial (infinite-width) NTK of the paper's network, which
        reaches larger p than the lazy networks.
    dataset : {"stripe", "cylinder"}
        The data model (the cylinder has ``d_par`` informative directions).
    d_par : int
        Informative directions of the cylinder.
    """

    d: int = 5
    h: int = 200
    p: tuple[int, ...] = (32, 64, 128, 256, 512)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_test: int = 5000
    loss: str = "hinge"
    alpha_sqrt_h: dict[str, float] = field(default_factory=lambda: dict(ALPHA_SQRT_H))
    lazy_min_alpha: float = LAZY_MIN_ALPHA
    max_steps: int = 10_000
    kpca_components: int = 50
    frozen_p: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096, 8192)
    dataset: str = "stripe"
    d_par: int = 2

    @classmethod
    def quick(cls) -> DemoConfig:
        """The ``--quick`` scale (well under a minute; for CI)."""
        return cls(h=64, p=(16, 32, 64), seeds=(0, 1), n_test=2000, max_steps=1500,
                   kpca_components=30, frozen_p=(32, 64, 128, 256))

    def alpha(self, regime: str) -> float:
        """``alpha`` of a regime at this width (see ``lazy_min_alpha``)."""
        return default_alpha(regime, self.h, self.alpha_sqrt_h[regime], self.lazy_min_alpha)


def default_alpha(regime: str, h: int, alpha_sqrt_h: float | None = None,
                  lazy_min_alpha: float = LAZY_MIN_ALPHA) -> float:
    """``alpha`` of a regime at width ``h``: ``alpha_sqrt_h / sqrt(h)``.

    At least ``lazy_min_alpha`` in the lazy regime.
    """
    a = (ALPHA_SQRT_H[regime] if alpha_sqrt_h is None else alpha_sqrt_h) / math.sqrt(h)
    return max(a, lazy_min_alpha) if regime == "lazy" else a


def _paper_net(d: int, h: int, seed: int) -> Any:
    return FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field",
                          bias=True, seed=seed)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _fit(curve: Any) -> dict[str, Any]:
    """Exponent fit of a learning curve, or the reason it could not be fitted."""
    try:
        fit = curve.fit_exponent(max_error=MAX_ERROR)
    except ValueError as exc:
        return {"beta": None, "ci": [None, None], "error": str(exc)}
    return {
        "beta": fit.beta,
        "ci": [fit.ci[0], fit.ci[1]],
        "p_fitted": fit.p.astype(int).tolist(),
        "p_dropped": fit.dropped.astype(int).tolist(),
        "intercept": fit.intercept,
    }


def run_demo(out_dir: Any, quick: bool = False, progress: bool = True,
             config: DemoConfig | None = None) -> dict[str, Any]:
    """Run the compression experiment and write its files into ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder (created; files the demo writes there are overwritten):
        ``runs/*.h5`` run files, ``*.png`` figures, ``summary.json``.
    quick : bool, default False
        The small CI scale (:meth:`DemoConfig.quick`) instead of the full demo.
    progress : bool, default True
        Print progress lines and the final report (stderr/stdout).
    config : DemoConfig, optional
        A custom scale (overrides ``quick``).

    Returns
    -------
    dict
        The content of ``summary.json``: ``regimes``, ``exponents``,
        ``frozen_kernel`` and ``kpca`` as in the README's schema, plus ``config``,
        ``runs`` (status of every training run), ``claims`` and ``timing``.

    Raises
    ------
    OSError
        If ``out_dir`` cannot be created.

    References
    ----------
    Paccolat et al. (2021), figures 2-6 (compression, learning curves, kernel PCA,
    frozen kernels).

    Examples
    --------
    >>> import tempfile
    >>> s = run_demo(tempfile.mkdtemp(), quick=True, progress=False)  # doctest: +SKIP
    >>> sorted(s["regimes"])  # doctest: +SKIP
    ['feature', 'lazy']
    """
    cfg = config if config is not None else (DemoConfig.quick() if quick else DemoConfig())
    check_choice(cfg.dataset, "dataset", ("stripe", "cylinder"))
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    exp = _Experiment(cfg, out, progress)
    exp.learning_curves()
    t_curves = time.perf_counter()
    lc_frozen = exp.frozen_initial_curve()
    feat = exp.kept[("feature", exp.p_kernel, cfg.seeds[0])]
    trajectory = exp.compression_trajectory(feat)
    X_tr, y_tr = exp.draw(exp.p_kernel, cfg.seeds[0])
    grams = _GramCache(X_tr)
    kpca, records = exp.kernel_pca(feat, grams, y_tr)
    t_frozen = time.perf_counter()
    frozen = exp.frozen_kernels(grams)
    t_frozen = time.perf_counter() - t_frozen
    summary = exp.summary(lc_frozen, frozen, kpca, trajectory, quick)
    summary["timing"] = {"curves_s": t_curves - t_start, "frozen_kernel_s": t_frozen}
    summary["notes"] = notes(summary)
    summary["figures"] = write_figures(out, summary, {
        "kpca.png": lambda: figures.kpca_figure(
            records, y_tr, ["init", "final"],
            title="Empirical NTK of the feature run: init vs end"),
        "neurons.png": lambda: figures.feature_neurons_figure(
            feat, trajectory["t_star_index"], exp.informative, X_tr),
    })
    summary["timing"]["total_s"] = time.perf_counter() - t_start
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1, allow_nan=False, default=_json_default)
    if progress:
        print(report(summary))
    return summary



def write_figures(out: Path, summary: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> list[str]:
    """The demo's PNG figures (:mod:`kernelcomp.plotting`) from its summary, into ``out``.

    ``extra`` maps further file names to functions drawing their figure (those
    that need more than the summary). Returns the file names, in order.
    """
    draw = {
        "compression.png": lambda: figures.compression_figure(summary),
        "compression_vs_time.png": lambda: figures.compression_trajectory_figure(summary),
        "learning_curves.png": lambda: figures.learning_curves_figure(summary),
        "frozen_kernel.png": lambda: figures.frozen_kernel_figure(summary),
        **(extra or {}),
    }
    order = ["compression.png", "compression_vs_time.png", "learning_curves.png", "kpca.png",
             "frozen_kernel.png", "neurons.png"]
    names = [n for n in order if n in draw] + [n for n in draw if n not in order]
    for name in names:
        save_figure(draw[name](), out / name)
    return names


class _GramCache:
    """Empirical-NTK Grams on one point set, each network's computed once.

    The feature and the lazy run of a seed start from the same network, so
    their initial Grams are one computation.
    """

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self._grams: dict[str, np.ndarray] = {}

    def __call__(self, net: Any) -> np.ndarray:
        key = net.fingerprint()
        if key not in self._grams:
            self._grams[key] = EmpiricalNTK(net)(self.X)
        return self._grams[key]


class _Experiment:
    """The steps of :func:`run_demo`, sharing the configuration and the runs kept."""

    def __init__(self, cfg: DemoConfig, out: Path, progress: bool) -> None:
        self.cfg = cfg
        self.out = out
        self.progress = progress
        self.d_par = 1 if cfg.dataset == "stripe" else cfg.d_par
        self.informative = datasets.informative_dims(cfg.dataset, cfg.d, cfg.d_par)
        self.p_kernel = max(cfg.p)
        self.runs: list[dict[str, Any]] = []
        self.kept: dict[tuple[str, int, int], Any] = {}
        self.lcs: dict[str, Any] = {}

    def draw(self, n: int, seed: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """``n`` points of the demo's data model."""
        cfg = self.cfg
        return datasets.load(cfg.dataset, n, cfg.d, seed, split=split, d_par=cfg.d_par)

    def compression(self, net: Any) -> float:
        """lambda of a network in the figures' convention."""
        return diagnostics.compression(net, informative=self.informative,
                                       convention=COMPRESSION_CONVENTION)

    def feature_run_file(self, seed: int | None = None) -> Path:
        """The run file of the largest feature run of a seed (default the first)."""
        seed = self.cfg.seeds[0] if seed is None else seed
        return self.out / "runs" / f"feature_p{self.p_kernel}_seed{seed}.h5"

    # 1. learning curves and compression in both regimes ----------------------------
    def learning_curves(self) -> None:
        """Train every (regime, p, seed) into a run file; the learning curves."""
        cfg = self.cfg
        for regime in ("feature", "lazy"):
            _say(self.progress,
                 f"[{regime}] alpha sqrt(h) = {cfg.alpha(regime) * math.sqrt(cfg.h):g}, "
                 f"h = {cfg.h}, p = {list(cfg.p)}, seeds = {list(cfg.seeds)}")
            self.lcs[regime] = curves.learning_curve(
                lambda X, y, Xt, yt, seed, regime=regime: self.train_one(regime, X, y, Xt, yt,
                                                                          seed),
                cfg.dataset, list(cfg.p), seeds=list(cfg.seeds), n_test=cfg.n_test, d=cfg.d,
                d_par=cfg.d_par)

    def train_one(self, regime: str, X: np.ndarray, y: np.ndarray, Xt: np.ndarray,
                  yt: np.ndarray, seed: int) -> dict[str, float]:
        """One training run (a run file) and its metrics for the learning curve."""
        cfg = self.cfg
        p = X.shape[0]
        net = _paper_net(cfg.d, cfg.h, seed)
        path = self.out / "runs" / f"{regime}_p{p}_seed{seed}.h5"
        t0 = time.perf_counter()
        res = training.train(
            net, X, y, alpha=cfg.alpha(regime), loss=cfg.loss, X_test=Xt, y_test=yt, path=path,
            force=True, max_steps=cfg.max_steps, checkpoints=3,
            config={"dataset": cfg.dataset, "d": cfg.d, "d_par": cfg.d_par, "seed": seed,
                    "regime": regime},
        )
        err = res.test_error(Xt, yt)
        lam_end = self.compression(res.net)
        # lambda at t* (the paper's), or NaN for a run stopped before t*
        k_star = _t_star_or_none(res)
        lam = math.nan if k_star is None else self.compression(res.checkpoints[k_star].net)
        # lambda when the loss first fell below MID_LOSS of its initial value (or
        # at the end, for a run that never got there)
        mid = next((ck for ck in res.checkpoints if f"loss<{MID_LOSS:g}" in ck.reason),
                   res.checkpoints[-1])
        lam_mid = self.compression(mid.net)
        self.runs.append({"regime": regime, "p": p, "seed": seed, "status": res.status,
                          "steps": res.final.step, "time": res.final.time,
                          "train_error": res.final.train_error, "unsatisfied": res.final.n_unsat,
                          "test_error": err, "compression": _finite_or_none(lam),
                          "t_star_step": (None if k_star is None
                                          else res.checkpoints[k_star].step),
                          "compression_end": lam_end,
                          "compression_mid": lam_mid, "mid_step": mid.step,
                          "wall_s": time.perf_counter() - t0,
                          "file": str(path.relative_to(self.out))})
        _say(self.progress, f"  {regime:7s} p={p:5d} seed={seed}: {res.status:9s} "
                            f"steps={res.final.step:6d} test_error={err:.4f} "
                            f"lambda(t*)={lam:7.2f} lambda(end)={lam_end:7.2f} "
                            f"({time.perf_counter() - t0:.1f} s)")
        if p == self.p_kernel:  # every seed: the frozen-kernel SVMs use them all
            self.kept[(regime, p, seed)] = res
        return {"test_error": err, "compression": lam, "compression_end": lam_end,
                "compression_mid": lam_mid}

    def frozen_initial_curve(self) -> Any:
        """The lazy curve from the frozen initial NTK (the infinite-alpha limit), to larger p."""
        cfg = self.cfg
        _say(self.progress,
             f"[lazy, frozen initial NTK] hard-margin SVM, p = {list(cfg.frozen_p)}")
        return curves.frozen_kernel_curve(cfg.dataset, list(cfg.frozen_p), kernel="analytic",
                                          machine="svc", seeds=list(cfg.seeds),
                                          n_test=cfg.n_test, d=cfg.d, d_par=cfg.d_par)

    # 2. along the largest feature run; kernel PCA of its NTK, init vs end ----------
    def compression_trajectory(self, feat: Any) -> dict[str, Any]:
        """lambda, losses and test errors at the checkpoints of the largest feature run."""
        loss0 = feat.checkpoints[0].loss
        return {
            "p": int(self.p_kernel), "seed": int(self.cfg.seeds[0]),
            "step": [ck.step for ck in feat.checkpoints],
            "time": [ck.time for ck in feat.checkpoints],
            "loss_fraction": [ck.loss / loss0 for ck in feat.checkpoints],
            "fitted_fraction": [ck.fitted_fraction for ck in feat.checkpoints],
            "test_error": [ck.test_error for ck in feat.checkpoints],
            "compression": [self.compression(ck.net) for ck in feat.checkpoints],
            "t_star_index": _t_star_or_none(feat),
        }

    def kernel_pca(self, feat: Any, grams: _GramCache,
                   y: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Kernel PCA of the feature run's empirical NTK at init and at the end.

        Returns the summary's ``kpca`` entries and the two full records.
        """
        kpca: dict[str, Any] = {}
        records = []
        for when, net in (("init", feat.net0), ("final", feat.net)):
            rec = kpca_record(grams(net), y,
                              n_components=min(self.cfg.kpca_components, self.p_kernel))
            P = rec["cumulative_projection"]
            kpca[when] = {"cumulative_projection_top10": float(P[min(9, P.size - 1)]),
                          "mutual_information": [float(v) for v in rec["mutual_information"]],
                          # the estimator on shuffled labels: its floor at this n
                          "mutual_information_floor": float(rec["mutual_information_floor"]),
                          "cumulative_projection": [float(v) for v in P],
                          "eigenvalues_top10": [float(v) for v in rec["eigenvalues"][:10]]}
            records.append(rec)
        kpca["kernel_change"] = float(diagnostics.kernel_change(grams(feat.net0),
                                                                grams(feat.net)))
        return kpca, records

    # 3. SVMs on the initial, the stretched initial and the final frozen NTK --------
    def frozen_kernels(self, grams: _GramCache) -> dict[str, Any]:
        """Frozen-kernel SVMs on fresh points for every seed's largest feature run.

        Each seed's errors are stored in its run file; the summary pools the
        seeds' test points (errors, Wilson intervals, the share of the gain)
        and keeps every seed's values (``per_seed``), whose spread is the
        seed-to-seed uncertainty the pooled intervals do not include.
        """
        cfg = self.cfg
        per_seed = []
        for seed in cfg.seeds:
            feat = self.kept.get(("feature", self.p_kernel, seed))
            if feat is None:
                continue
            k_star = _t_star_or_none(feat)
            X_k, y_k = self.draw(self.p_kernel, seed, split="kernel")
            X_te, y_te = self.draw(cfg.n_test, seed, split="test")
            # lambda* = lambda(t*) of that run (at its end, said in the notes, if it stopped
            # first)
            lam_star = self.compression(feat.checkpoints[-1 if k_star is None else k_star].net)
            errors = {"seed": int(seed), "t_star_reached": k_star is not None,
                      **frozen_kernel_errors(feat.net0, feat.net, self.informative, lam_star,
                                             X_k, y_k, X_te, y_te)}
            io.add_run_diagnostics(self.feature_run_file(seed),
                                   [{k: np.asarray(v) if isinstance(v, list) else v
                                     for k, v in errors.items() if v is not None}],
                                   name="frozen_kernel", force=True,
                                   config={"margin_fraction": T_STAR_FRACTION,
                                           "convention": COMPRESSION_CONVENTION})
            per_seed.append(errors)
        frozen = {"p": int(self.p_kernel), "seeds": [e["seed"] for e in per_seed],
                  "n_test": int(cfg.n_test),
                  "machine": f"hard-margin SVM (SVC, C={_C_TEXT}) on fresh training points",
                  **_pool_frozen(per_seed, cfg.n_test), "per_seed": per_seed}
        lazy = self.kept.get(("lazy", self.p_kernel, cfg.seeds[0]))
        if lazy is not None:
            frozen["lazy_kernel_change"] = float(diagnostics.kernel_change(
                grams(lazy.net0), grams(lazy.net)))
        return frozen

    # 4. summary ---------------------------------------------------------------------
    def summary(self, lc_frozen: Any, frozen: dict[str, Any], kpca: dict[str, Any],
                trajectory: dict[str, Any], quick: bool) -> dict[str, Any]:
        """summary.json without its timing, notes and figures."""
        cfg = self.cfg
        lcs = self.lcs
        runs = self.runs
        p_kernel = self.p_kernel
        regimes = {}
        exponents: dict[str, Any] = {}
        mid_key = f"compression_at_loss_{MID_LOSS:g}"
        for regime, lc in lcs.items():
            slope, slope_ci = curves.loglog_slope(lc.p, lc.metrics["compression"])
            slope_end, slope_end_ci = curves.loglog_slope(lc.p, lc.metrics["compression_end"])
            slope_mid, slope_mid_ci = curves.loglog_slope(lc.p, lc.metrics["compression_mid"])
            regimes[regime] = {
                "alpha": cfg.alpha(regime),
                "alpha_sqrt_h": cfg.alpha(regime) * math.sqrt(cfg.h),
                "p": lc.p.tolist(),
                "test_error": lc.mean().tolist(),
                "compression": _clean(curves._nanmean_rows(lc.metrics["compression"])),
                "compression_slope": slope, "compression_slope_ci": slope_ci,
                "test_error_per_seed": lc.test_error.tolist(),
                "compression_per_seed": _clean(lc.metrics["compression"]),
                "compression_end": lc.mean("compression_end").tolist(),
                "compression_end_per_seed": lc.metrics["compression_end"].tolist(),
                "compression_end_slope": slope_end, "compression_end_slope_ci": slope_end_ci,
                mid_key: lc.mean("compression_mid").tolist(),
                f"compression_slope_at_loss_{MID_LOSS:g}": slope_mid,
                f"compression_slope_ci_at_loss_{MID_LOSS:g}": slope_mid_ci,
                "converged_runs": sum(r["status"] == "converged" for r in runs
                                      if r["regime"] == regime),
                "runs": sum(r["regime"] == regime for r in runs),
            }
            exponents[regime] = _fit(lc)
        if cfg.dataset == "stripe":  # the authors' lambda_ODE is the stripe's
            regimes["feature"]["compression_theory"] = curves.compression_theory(
                lcs["feature"].p).tolist()
        exponents["lazy_frozen_ntk"] = {
            **_fit(lc_frozen), "p": lc_frozen.p.tolist(), "test_error": lc_frozen.mean().tolist(),
            "test_error_per_seed": lc_frozen.test_error.tolist(),
            "machine": f"hard-margin SVM (SVC, C={_C_TEXT}) on the frozen initial "
                       "infinite-width NTK "
                       "of the paper's network (curves.paper_ntk())"}
        exponents["theory"] = {"feature": curves.beta_feature(cfg.d, self.d_par),
                               "lazy": curves.beta_lazy(cfg.d)}
        lam_l = [v for v in regimes["lazy"]["compression"] if v is not None]
        bf = exponents["feature"]["beta"]
        bl, bln = exponents["lazy_frozen_ntk"]["beta"], exponents["lazy"]["beta"]
        slope_f = regimes["feature"]["compression_slope"]
        claims = {
            "feature_compression_grows_with_p": bool(slope_f is not None
                                                     and slope_f >= GROWTH_SLOPE),
            "lazy_compression_near_1": bool(lam_l and max(abs(v - 1) for v in lam_l) < 0.2),
            "final_ntk_beats_initial_ntk": bool(
                frozen["final_ntk_test_error"] < frozen["init_ntk_test_error"]),
            "stretched_ntk_beats_initial_ntk": bool(frozen["per_seed"]) and all(
                e["stretched_ntk_test_error"] < e["init_ntk_test_error"]
                for e in frozen["per_seed"]),
            "projection_top10_grows": bool(kpca["final"]["cumulative_projection_top10"]
                                           > kpca["init"]["cumulative_projection_top10"]),
            "mutual_information_grows": bool(np.mean(kpca["final"]["mutual_information"])
                                             > np.mean(kpca["init"]["mutual_information"])),
            "beta_feature_above_beta_lazy": bool(bf is not None and bl is not None and bf > bl),
            "beta_feature_above_beta_lazy_networks": bool(
                bf is not None and bln is not None and bf > bln),
        }
        return {
            "regimes": regimes,
            "exponents": exponents,
            "frozen_kernel": frozen,
            "kpca": {"init": kpca["init"], "final": kpca["final"],
                     "kernel_change": kpca["kernel_change"], "p": int(p_kernel),
                     "run": f"runs/feature_p{p_kernel}_seed{cfg.seeds[0]}.h5"},
            "claims": claims,
            "compression_trajectory": trajectory,
            "config": {**asdict(cfg), "quick": bool(quick),
                       "activation": "relu_unit", "parameterization": "mean_field",
                       "t_star_margin_fraction": T_STAR_FRACTION,
                       "compression_convention": COMPRESSION_CONVENTION,
                       "fit_max_error": MAX_ERROR},
            "runs": runs,
        }


def frozen_kernel_errors(net0: Any, net: Any, informative: Any, lam: float,
                         X: np.ndarray, y: np.ndarray, X_test: np.ndarray,
                         y_test: np.ndarray) -> dict[str, Any]:
    """Test errors of hard-margin SVMs on the initial, stretched-initial and final NTK.

    The paper's test of whether compression alone explains the feature regime's
    gain: the *initial* network's empirical NTK on inputs whose uninformative
    coordinates are divided by ``lam = lambda(t*)``
    (:func:`kernelcomp.diagnostics.stretch_inputs`), next to the initial and the
    final NTK on the raw inputs. ``X, y`` should be fresh points (not the
    network's own training set).

    Returns
    -------
    dict
        ``init_ntk_test_error``, ``stretched_ntk_test_error``,
        ``final_ntk_test_error`` with 95 % Wilson intervals (``*_ci``),
        ``stretch_lambda``, and ``gain_explained``: the share of the final NTK's
        gain over the initial one that the stretch recovers,
        ``(init - stretched) / (init - final)`` (None without a gain).
    """
    out: dict[str, Any] = {"stretch_lambda": float(lam)}
    cases = (("init", net0, X, X_test), ("final", net, X, X_test),
             ("stretched", net0, stretch_inputs(X, informative, lam),
              stretch_inputs(X_test, informative, lam)))
    for when, n, Xa, Xb in cases:
        clf = NTKClassifier(kernel=EmpiricalNTK(n), C=HARD_MARGIN_C).fit(Xa, y)
        wrong = int(np.count_nonzero(clf.predict(Xb) != y_test))
        out[f"{when}_ntk_test_error"] = wrong / len(y_test)
        out[f"{when}_ntk_test_error_ci"] = _wilson(wrong, len(y_test))
    gain = out["init_ntk_test_error"] - out["final_ntk_test_error"]
    out["gain_explained"] = (
        (out["init_ntk_test_error"] - out["stretched_ntk_test_error"]) / gain if gain > 0
        else None)
    return out


def _pool_frozen(per_seed: list[dict[str, Any]], n_test: int) -> dict[str, Any]:
    """The seeds' frozen-kernel errors pooled over their test points.

    Errors and 95 % Wilson intervals of the pooled test points (seeds x
    ``n_test``), the mean ``stretch_lambda`` and the pooled and per-seed share of
    the final NTK's gain that the stretch recovers.
    """
    out: dict[str, Any] = {}
    total = n_test * len(per_seed)
    for when in ("init", "stretched", "final"):
        wrong = sum(round(e[f"{when}_ntk_test_error"] * n_test) for e in per_seed)
        out[f"{when}_ntk_test_error"] = wrong / total
        out[f"{when}_ntk_test_error_ci"] = _wilson(wrong, total)
    out["stretch_lambda"] = float(np.mean([e["stretch_lambda"] for e in per_seed]))
    gain = out["init_ntk_test_error"] - out["final_ntk_test_error"]
    out["gain_explained"] = (
        (out["init_ntk_test_error"] - out["stretched_ntk_test_error"]) / gain if gain > 0
        else None)
    out["gain_explained_per_seed"] = [e["gain_explained"] for e in per_seed]
    return out


def _t_star_or_none(run: Any) -> int | None:
    """The checkpoint index of t*, or None for a run that stopped before it."""
    try:
        return t_star(run, T_STAR_FRACTION)
    except ValueError:
        return None


def _wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """95 % Wilson score interval of a binomial proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _clean(a: Any) -> Any:
    """A nested list of an array, NaN as None (JSON has no NaN)."""
    return [_clean(v) for v in a] if np.ndim(a) else _finite_or_none(float(a))














def notes(summary: dict[str, Any]) -> list[str]:
    """Caveats that a reader of the demo's numbers needs (why a result may differ).

    Each note states a measured fact of this run: runs stopped on the step
    budget, fitted exponents whose interval misses the theory value, claims that
    do not show, and the mutual-information estimator's baseline.
    """
    out: list[str] = []
    cfg = summary["config"]
    for regime, r in summary["regimes"].items():
        unfinished = r["runs"] - r["converged_runs"]
        if unfinished:
            out.append(
                f"{unfinished} of {r['runs']} {regime} runs stopped on the step budget "
                f"(max_steps={cfg['max_steps']}) before every margin reached 1; their test "
                "errors are those of an unfinished flow (mostly the larger p)."
            )
    ex = summary["exponents"]
    for key, regime in (("feature", "feature"), ("lazy", "lazy"), ("lazy_frozen_ntk", "lazy")):
        e, theory = ex[key], ex["theory"][regime]
        if e["beta"] is not None and not (e["ci"][0] <= theory <= e["ci"][1]):
            top = max(ex[key]["p"]) if key == "lazy_frozen_ntk" else max(cfg["p"])
            out.append(
                f"beta_{key} = {e['beta']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}] misses "
                f"the theory value {theory:.3f}: the theory is asymptotic (p -> infinity), "
                f"p <= {top} is pre-asymptotic at d = {cfg['d']}"
                + (", and unfinished runs bias the large-p errors"
                   if key != "lazy_frozen_ntk"
                   and any(r["runs"] > r["converged_runs"] for r in summary["regimes"].values())
                   else "")
                + "; scripts/reproduce_compression.py runs the paper's scale."
            )
    f = summary["regimes"]["feature"]
    if f["compression_slope"] is not None:
        lo, hi = f["compression_slope_ci"]
        out.append(
            f"feature-regime lambda(t*) grows as p^{f['compression_slope']:.2f} "
            f"[{lo:.2f}, {hi:.2f}] (theory p^0.5"
            + (", lambda_ODE = sqrt(0.135 p)" if "compression_theory" in f else "") + "): "
            + ", ".join("n/a" if v is None else f"{v:.1f}" for v in f["compression"])
            + ("" if "compression_theory" not in f else
               " against " + ", ".join(f"{v:.1f}" for v in f["compression_theory"]))
            + f" for p = {f['p']}." + _theory_prefactor_note(f)
            + " At the end of training (every margin >= 1) it is "
            f"p^{f['compression_end_slope']:.2f} ("
            + ", ".join(f"{v:.1f}" for v in f["compression_end"]) + ")"
            + (": fitting the last points (the authors' over-fitting phase) grows weights "
               "along the uninformative directions; the paper reads lambda at t*."
               if f["compression_end_slope"] < f["compression_slope"] else
               "; the paper reads lambda at t*.")
        )
    fk = summary["frozen_kernel"]
    out.extend(_stretched_note(fk))
    for claim, shown in summary["claims"].items():
        if not shown:
            out.append(f"claim {claim} does not show at this scale (see the numbers above).")
    k = summary["kpca"]
    floor = float(np.mean([k[w]["mutual_information_floor"] for w in ("init", "final")]))
    out.append(
        f"mutual information: the paper's kNN estimator (k = 5) gives {floor:.3f} bit on "
        f"shuffled labels at n = {k['p']} (its floor, the dashed line of kpca.png), not 0; "
        f"the top-10 means {np.mean(k['init']['mutual_information']):.3f} (init) and "
        f"{np.mean(k['final']['mutual_information']):.3f} (final) are informative only above "
        "it."
    )
    out.append(
        "figures: kpca.png divides each spectrum by its Gram's trace; the theory lines of "
        "learning_curves.png have the theory's slopes with prefactors fitted to the measured "
        "means (least squares in log space over the fitted p), so only slopes are compared; "
        "neurons.png's colours at initialisation are the clustering of random weights, not "
        "attractors (those form during training)."
    )
    return out


def _theory_prefactor_note(f: dict[str, Any]) -> str:
    """Why lambda(t*) and lambda_ODE are compared by their slopes only (stripe runs)."""
    if "compression_theory" not in f:
        return ""
    ratios = ", ".join("n/a" if v is None else f"{v / t:.1f}"
                       for v, t in zip(f["compression"], f["compression_theory"], strict=True))
    return (
        " Only the slopes are compared: both are ratios per input direction (lambda(t*) "
        "the figures' w_1 / mean_{j>=2} w_j; lambda_ODE = sqrt(p) |E[y x_1]|, the authors' "
        "ODE estimate of a neuron's informative drift against the 1/sqrt(p) spread of one "
        "uninformative component), so no convention factor separates them (the 'rms' "
        "convention differs from the figures' by a few %, 'norm' is smaller by sqrt(d - 1)). "
        "The estimate gives the sqrt(p) growth, not the prefactor at t*: "
        f"lambda(t*) / lambda_ODE = {ratios} here."
    )


def _stretched_note(fk: dict[str, Any]) -> list[str]:
    """What the stretched-kernel SVMs show, no more than their seeds support."""
    out = []
    per_seed = fk["per_seed"]
    early = [e["seed"] for e in per_seed if not e["t_star_reached"]]
    if early:
        out.append(
            f"the feature runs at p = {fk['p']} of seeds {early} stopped before t*: their "
            "stretched kernels use lambda at the end instead."
        )
    share, shares = fk["gain_explained"], fk["gain_explained_per_seed"]
    n = len(per_seed)

    def errs(when: str) -> str:
        ci = fk[f"{when}_ntk_test_error_ci"]
        return f"{fk[f'{when}_ntk_test_error']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"

    text = (
        f"stretched kernel (initial NTK, uninformative inputs divided by lambda(t*), mean "
        f"{fk['stretch_lambda']:.1f}), p = {fk['p']}, {n} seed{'s' if n > 1 else ''} x "
        f"{fk['n_test']} test points pooled (95% intervals over test points only): stretched "
        f"{errs('stretched')}, initial {errs('init')}, final {errs('final')}"
    )
    if share is None or any(v is None for v in shares):
        text += "; the final NTK does not beat the initial one in every seed, so there is no "
        text += "gain to explain."
    else:
        per = ", ".join(f"{v:.0%}" for v in shares)
        text += f": the stretch recovers {share:.0%} of the final NTK's gain (per seed: {per})"
        separated = fk["stretched_ntk_test_error_ci"][1] < fk["init_ntk_test_error_ci"][0]
        if min(shares) >= 0.5 and separated and n >= 3:
            text += f": compression accounts for most of the gain in each of the {n} seeds."
        elif min(shares) >= 0.5 and separated:
            text += (f": compression accounts for most of the gain in each of the {n} seeds; "
                     "too few seeds to say more.")
        elif share >= 0.5:
            text += (": consistent with compression accounting for the gain, but not in "
                     "every seed or not beyond the intervals at this scale.")
        else:
            text += ": compression alone does not account for the gain at this scale."
    out.append(text)
    return out


def cfg_name(summary: dict[str, Any]) -> str:
    """The data model of a summary (``"stripe"``, or ``"cylinder (d_par = 2)"``)."""
    cfg = summary["config"]
    return "stripe" if cfg["dataset"] == "stripe" else f"{cfg['dataset']} (d_par = {cfg['d_par']})"


def report(summary: dict[str, Any]) -> str:
    """A short text report of a demo summary."""
    lines = ["", f"kernelcomp demo: geometric compression on the {cfg_name(summary)} model", ""]
    cfg = summary["config"]
    lines.append(f"d={cfg['d']} h={cfg['h']} p={cfg['p']} seeds={cfg['seeds']} "
                 f"loss={cfg['loss']} n_test={cfg['n_test']}")
    for regime, r in summary["regimes"].items():
        lines.append(f"{regime:8s} alpha={r['alpha']:.3g} (alpha sqrt(h)={r['alpha_sqrt_h']:g}) "
                     f"converged {r['converged_runs']}/{r['runs']} runs")
        lines.append("   p        " + " ".join(f"{p:>8d}" for p in r["p"]))
        lines.append("   error    " + " ".join(f"{v:8.4f}" for v in r["test_error"]))
        def fmt(values: Any) -> str:
            return " ".join("     n/a" if v is None else f"{v:8.2f}" for v in values)

        def slope(value: Any, ci: Any) -> str:
            return ("" if value is None else
                    f"   ~ p^{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]")

        lines.append("   lambda   " + fmt(r["compression"])
                     + slope(r["compression_slope"], r["compression_slope_ci"]) + " (at t*)")
        lines.append("   l(end)   " + fmt(r["compression_end"])
                     + slope(r["compression_end_slope"], r["compression_end_slope_ci"])
                     + " (end of training)")
        if "compression_theory" in r:
            lines.append("   theory   " + fmt(r["compression_theory"])
                         + "   lambda_ODE = sqrt(0.135 p)")
    ex = summary["exponents"]
    for key, regime in (("feature", "feature"), ("lazy", "lazy"), ("lazy_frozen_ntk", "lazy")):
        e = ex[key]
        if e["beta"] is None:
            lines.append(f"beta_{key}: not fitted ({e['error']})")
        else:
            lines.append(f"beta_{key}: {e['beta']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"
                         f"  theory {ex['theory'][regime]:.3f}")
    fk = summary["frozen_kernel"]

    def err(key: str) -> str:
        ci = fk[f"{key}_ntk_test_error_ci"]
        return f"{fk[f'{key}_ntk_test_error']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"

    lines.append(f"SVM on frozen NTK (p={fk['p']}, fresh points, {len(fk['per_seed'])} seeds "
                 f"pooled): initial {err('init')}, "
                 f"stretched by lambda(t*)={fk['stretch_lambda']:.1f} {err('stretched')}, "
                 f"final {err('final')}")
    k = summary["kpca"]
    lines.append(f"kernel PCA (feature run, p={k['p']}): P_10 init "
                 f"{k['init']['cumulative_projection_top10']:.3f} -> final "
                 f"{k['final']['cumulative_projection_top10']:.3f}; mean MI top 10 "
                 f"{np.mean(k['init']['mutual_information']):.3f} -> "
                 f"{np.mean(k['final']['mutual_information']):.3f} bits")
    lines.append("claims: " + ", ".join(f"{k}={'yes' if v else 'NO'}"
                                        for k, v in summary["claims"].items()))
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"({summary['timing']['total_s']:.0f} s)")
    return "\n".join(lines)
