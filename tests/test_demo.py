"""`kernelcomp demo --quick` and `kernelcomp train` in-process; summary.json is validated."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import demo
from kernelcomp.cli import main

TINY = demo.DemoConfig(h=32, p=(12, 24), seeds=(0, 1), n_test=400, max_steps=3000,
                       kpca_components=12, frozen_p=(24, 48, 96))
FIG = {"convention": demo.COMPRESSION_CONVENTION}


def _number(x):
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_schema(s, cfg):
    """DESIGN §2: the keys and types of summary.json."""
    n_p = len(cfg.p)
    for regime in ("feature", "lazy"):
        r = s["regimes"][regime]
        assert _number(r["alpha"]) and r["alpha"] > 0
        assert r["p"] == list(cfg.p)
        assert len(r["test_error"]) == len(r["compression"]) == n_p
        assert all(_number(v) and 0 <= v <= 1 for v in r["test_error"])
        assert all(_number(v) and v > 0 for v in r["compression"])
        e = s["exponents"][regime]
        assert set(e) >= {"beta", "ci"} and len(e["ci"]) == 2
        if e["beta"] is not None:
            assert _number(e["beta"]) and all(_number(v) for v in e["ci"])
    assert s["regimes"]["feature"]["alpha"] < s["regimes"]["lazy"]["alpha"]
    th = s["exponents"]["theory"]
    assert th["feature"] == pytest.approx(kc.curves.beta_feature(cfg.d))
    assert th["lazy"] == pytest.approx(kc.curves.beta_lazy(cfg.d))
    fk = s["frozen_kernel"]
    assert fk["p"] == max(cfg.p)
    for when in ("init", "stretched", "final"):
        v, (lo, hi) = fk[f"{when}_ntk_test_error"], fk[f"{when}_ntk_test_error_ci"]
        assert 0 <= lo <= v <= hi <= 1
    assert _number(fk["stretch_lambda"]) and fk["stretch_lambda"] > 0
    fz = s["exponents"]["lazy_frozen_ntk"]
    assert fz["p"] == list(cfg.frozen_p) and len(fz["test_error"]) == len(cfg.frozen_p)
    assert set(fz) >= {"beta", "ci", "machine"}
    theory = s["regimes"]["feature"]["compression_theory"]
    assert theory == pytest.approx(kc.curves.compression_theory(np.array(cfg.p)).tolist())
    for when in ("init", "final"):
        k = s["kpca"][when]
        assert 0 <= k["cumulative_projection_top10"] <= 1 + 1e-9
        assert len(k["mutual_information"]) == 10
        assert all(_number(v) for v in k["mutual_information"])


def test_run_demo_writes_a_valid_summary(tmp_path, capsys, monkeypatch):
    import matplotlib.pyplot as plt

    def no_pyplot(*args, **kwargs):
        raise AssertionError("the demo's figures must not go through pyplot")

    for name in ("figure", "subplots", "gcf", "gca"):
        monkeypatch.setattr(plt, name, no_pyplot)
    s = demo.run_demo(tmp_path, config=TINY, progress=True)
    text = capsys.readouterr().out
    assert "beta_feature" in text and "SVM on frozen NTK" in text
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["regimes"] == json.loads(json.dumps(s["regimes"]))
    _check_schema(on_disk, TINY)
    assert on_disk["figures"] == ["compression.png", "compression_vs_time.png",
                                  "learning_curves.png", "kpca.png", "frozen_kernel.png",
                                  "neurons.png"]  # neurons at init, t* and the end
    for name in on_disk["figures"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one run file per (regime, p, seed), readable, with the recorded numbers
    assert len(on_disk["runs"]) == 2 * len(TINY.p) * len(TINY.seeds)
    for r in on_disk["runs"]:
        run = kc.io.open_run(tmp_path / r["file"])
        assert run.complete and run.config["regime"] == r["regime"]
        assert run.data["X_train"].shape == (r["p"], TINY.d)
        assert run.checkpoints[-1].step == r["steps"]
        assert run.checkpoints[-1].test_error == pytest.approx(r["test_error"])
        # lambda(t*): the first checkpoint with more than 10 % of the margins >= 1
        k = next(i for i, ck in enumerate(run.checkpoints) if np.mean(ck.margins >= 1) > 0.1)
        assert run.checkpoints[k].step == r["t_star_step"]
        lam = kc.diagnostics.compression(run.checkpoints[k].network, informative=[0], **FIG)
        assert lam == pytest.approx(r["compression"], rel=1e-12)
        assert kc.diagnostics.compression_at(run) == pytest.approx(lam, rel=1e-12)
        lam_end = kc.diagnostics.compression(run.checkpoints[-1].network, [0], **FIG)
        assert lam_end == pytest.approx(r["compression_end"], rel=1e-12)
        # mid-training compression: the first checkpoint below MID_LOSS of the initial loss
        mid = next((ck for ck in run.checkpoints
                    if f"loss<{demo.MID_LOSS:g}" in ck.extra["reason"]), run.checkpoints[-1])
        assert mid.step == r["mid_step"]
        assert mid.loss < demo.MID_LOSS * run.checkpoints[0].loss or mid is run.checkpoints[-1]
        lam_mid = kc.diagnostics.compression(mid.network, informative=[0], **FIG)
        assert lam_mid == pytest.approx(r["compression_mid"], rel=1e-12)
    # slopes of log lambda vs log p (with seed-bootstrap intervals), and the claims
    key = f"compression_at_loss_{demo.MID_LOSS:g}"
    for r in on_disk["regimes"].values():
        for lam, slope, ci in (
            (r["compression"], r["compression_slope"], r["compression_slope_ci"]),
            (r["compression_end"], r["compression_end_slope"], r["compression_end_slope_ci"]),
            (r[key], r[f"compression_slope_at_loss_{demo.MID_LOSS:g}"],
             r[f"compression_slope_ci_at_loss_{demo.MID_LOSS:g}"]),
        ):
            fit = np.polyfit(np.log(r["p"]), np.log(lam), 1)[0]
            assert slope == pytest.approx(fit, rel=1e-9)
            assert ci[0] <= ci[1]
    # the stretched-kernel results of every seed, stored in its feature run's file too, and
    # pooled over the seeds' test points
    fk = on_disk["frozen_kernel"]
    assert fk["seeds"] == list(TINY.seeds) and len(fk["per_seed"]) == len(TINY.seeds)
    keys = ("init_ntk_test_error", "stretched_ntk_test_error", "final_ntk_test_error")
    for e in fk["per_seed"]:
        diag = kc.io.load_diagnostics(
            tmp_path / "runs" / f"feature_p{max(TINY.p)}_seed{e['seed']}.h5", name="frozen_kernel")
        for key in (*keys, "stretch_lambda"):
            assert diag.entries[0][key] == pytest.approx(e[key])
    for key in keys:
        assert fk[key] == pytest.approx(np.mean([e[key] for e in fk["per_seed"]]))
    assert fk["gain_explained_per_seed"] == [e["gain_explained"] for e in fk["per_seed"]]
    assert on_disk["claims"]["stretched_ntk_beats_initial_ntk"] == all(
        e["stretched_ntk_test_error"] < e["init_ntk_test_error"] for e in fk["per_seed"])
    # lambda and test error along the largest feature run are its checkpoints'
    tr = on_disk["compression_trajectory"]
    run = kc.io.open_run(tmp_path / on_disk["kpca"]["run"])
    assert tr["step"] == [ck.step for ck in run.checkpoints]
    assert tr["test_error"] == [ck.test_error for ck in run.checkpoints]
    for ck, lam in zip(run.checkpoints, tr["compression"], strict=True):
        assert kc.diagnostics.compression(ck.network, [0], **FIG) == pytest.approx(lam)
    assert tr["t_star_index"] == kc.diagnostics.t_star(run)  # every TINY run reaches t*
    assert fk["per_seed"][0]["stretch_lambda"] == pytest.approx(
        tr["compression"][tr["t_star_index"]])
    assert tr["loss_fraction"][0] == 1.0
    f = on_disk["regimes"]["feature"]
    assert on_disk["claims"]["feature_compression_grows_with_p"] == (
        f["compression_slope"] >= demo.GROWTH_SLOPE)
    # notes explain what the numbers cannot show: one per unfinished regime, and
    # one per exponent whose interval misses the theory
    notes = on_disk["notes"]
    assert all(isinstance(n, str) and n for n in notes)
    for regime, r in on_disk["regimes"].items():
        stopped = any(f"{regime} runs stopped on the step budget" in n for n in notes)
        assert stopped == (r["converged_runs"] < r["runs"])
    for key, regime in (("feature", "feature"), ("lazy", "lazy"), ("lazy_frozen_ntk", "lazy")):
        e, theory = on_disk["exponents"][key], on_disk["exponents"]["theory"][regime]
        if e["beta"] is not None:
            misses = not (e["ci"][0] <= theory <= e["ci"][1])
            assert misses == any(n.startswith(f"beta_{key} =") for n in notes)
    assert on_disk["claims"]["beta_feature_above_beta_lazy"] == (
        on_disk["exponents"]["feature"]["beta"] is not None
        and on_disk["exponents"]["lazy_frozen_ntk"]["beta"] is not None
        and on_disk["exponents"]["feature"]["beta"]
        > on_disk["exponents"]["lazy_frozen_ntk"]["beta"])
    assert any(n.startswith("stretched kernel") for n in notes)
    # the MI estimator's floor: measured on shuffled labels, in the notes
    for when in ("init", "final"):
        floor = on_disk["kpca"][when]["mutual_information_floor"]
        assert _number(floor) and 0 < floor < 0.5
    assert any(n.startswith("mutual information:") and "shuffled labels" in n for n in notes)
    assert any("Only the slopes are compared" in n for n in notes)
    assert all(f"note: {n}" in text for n in notes)
    _check_figures(on_disk)
    # the per-p means are the means of the runs
    for regime in ("feature", "lazy"):
        for i, p in enumerate(TINY.p):
            errs = [r["test_error"] for r in on_disk["runs"]
                    if r["regime"] == regime and r["p"] == p]
            assert on_disk["regimes"][regime]["test_error"][i] == pytest.approx(np.mean(errs))


def _check_figures(s):
    """Issue 27: the theory lines' prefactors fitted, per-seed points, no count at init."""
    from kernelcomp.plotting import _demo as figures

    lc = figures.learning_curves_figure(s).axes[0]
    for regime in ("feature", "lazy"):
        ex, theory = s["exponents"][regime], s["exponents"]["theory"][regime]
        p = np.asarray(s["regimes"][regime]["p"], dtype=float)
        mean = np.asarray(s["regimes"][regime]["test_error"])
        fitted = np.isin(p, ex.get("p_fitted") or p) & (mean > 0)
        line = next(ln for ln in lc.lines if ln.get_label().startswith(f"{regime} theory"))
        assert "prefactor fitted" in line.get_label()
        # least squares in log space: the line's geometric mean over the fitted p is the data's
        y = np.asarray(line.get_ydata())
        np.testing.assert_allclose(np.exp(np.mean(np.log(y[fitted]))),
                                   np.exp(np.mean(np.log(mean[fitted]))), rtol=1e-12)
        np.testing.assert_allclose(np.diff(np.log(y)) / np.diff(np.log(p)), -theory,
                                   rtol=1e-12)
    comp = figures.compression_figure(s).axes[0]
    assert "0.368" in " ".join(ln.get_label() for ln in comp.lines)
    assert any("prefactor fitted" in ln.get_label() for ln in comp.lines)
    fk = figures.frozen_kernel_figure(s).axes[0]
    dots = [ln for ln in fk.lines if ln.get_marker() == "."]
    assert sorted(float(v) for ln in dots for v in ln.get_ydata()) == pytest.approx(sorted(
        e[f"{w}_ntk_test_error"] for e in s["frozen_kernel"]["per_seed"]
        for w in ("init", "stretched", "final")))
    X, y = kc.datasets.stripe(24, TINY.d, seed=0)
    net = kc.FCNetwork.init(TINY.d, [16], activation="relu_unit",
                            parameterization="mean_field", seed=0)
    run = kc.training.train(net, X, y, alpha=0.05 / 4, max_steps=2000)
    titles = [ax.get_title() for ax in figures.feature_neurons_figure(
        run, kc.diagnostics.t_star(run), [0], X).axes if ax.get_title()]
    assert len(titles) == 3  # init, t* and the end
    # a count at t* and the end; none at initialisation (random weights have no attractors)
    assert "random weights (no attractors yet)" in titles[0]
    assert not re.search(r"\d+ attractors", titles[0])
    assert all(re.search(r"\d+ attractors$", t) for t in titles[1:])


def test_cli_demo_quick(tmp_path, monkeypatch, capsys):
    """What CI runs: `kernelcomp demo --out DIR --quick`."""
    assert main(["demo", "--out", str(tmp_path / "d"), "--quick"]) == 0
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    _check_schema(s, demo.DemoConfig.quick())
    assert s["config"]["quick"] is True
    # the demo's lazy runs do not compress; its feature runs do
    assert max(s["regimes"]["lazy"]["compression"]) < 1.5
    assert s["regimes"]["feature"]["compression"][-1] > 2 * max(s["regimes"]["lazy"]["compression"])


def test_cli_train(tmp_path, capsys):
    out = tmp_path / "run.h5"
    argv = ["train", "stripe", "--p", "20", "--d", "3", "--h", "32", "--regime", "lazy",
            "-o", str(out), "--n-test", "100", "--max-steps", "300", "--quiet"]
    assert main(argv) == 0
    run = kc.io.open_run(out)
    assert run.config["regime"] == "lazy" and run.config["alpha"] == pytest.approx(1000 / 32**0.5)
    assert run.data["X_test"].shape == (100, 3)
    assert main(argv) == 2  # the output is kept without --force
    assert "exists" in capsys.readouterr().err
    assert main([*argv[:-1], "--force"]) == 0
    assert main([*argv[:-1], "--force", "--integrator", "euler"]) == 0
    assert kc.io.open_run(out).config["integrator"] == "euler"
    assert main(["train", "cylinder", "--p", "10", "--d", "3", "--h", "8", "--alpha", "0.5",
                 "-o", str(tmp_path / "c.h5"), "--max-steps", "5"]) == 0
    assert "c.h5:" in capsys.readouterr().out
    # the sphere has no uninformative direction: no lambda, and still a success
    assert main(["train", "sphere", "--p", "12", "--d", "3", "--h", "8",
                 "-o", str(tmp_path / "s.h5"), "--n-test", "50", "--max-steps", "5"]) == 0
    assert "compression lambda n/a" in capsys.readouterr().out


def test_train_and_kpca_report_the_same_lambda(tmp_path, capsys):
    """kernelcomp train prints lambda(t*) in the convention kpca --informative stores."""
    out, diag = tmp_path / "run.h5", tmp_path / "d.h5"
    assert main(["train", "stripe", "--p", "40", "--d", "4", "--h", "48", "--regime", "feature",
                 "-o", str(out), "--n-test", "100", "--max-steps", "3000"]) == 0
    text = capsys.readouterr().out
    found = re.search(r"lambda ([0-9.]+) at t\* \(step (\d+)\), ([0-9.]+) at the end "
                      r"\(figures convention\)", text)
    assert found, text
    lam_star, step, lam_end = float(found[1]), int(found[2]), float(found[3])
    assert main(["kpca", str(out), "-o", str(diag), "--informative", "0",
                 "--n-components", "5"]) == 0
    assert "lambda" in capsys.readouterr().out
    d = kc.io.load_diagnostics(diag)
    assert d.config["compression_convention"] == "figures"
    by_step = {e["step"]: e["compression"] for e in d.entries}
    assert by_step[step] == pytest.approx(lam_star, abs=6e-4)
    assert d.entries[-1]["compression"] == pytest.approx(lam_end, abs=6e-4)
    run = kc.io.open_run(out)
    k = kc.diagnostics.t_star(run)
    assert run.checkpoints[k].step == step
    assert main(["kpca", str(out), "-o", str(diag), "--informative", "0", "--force",
                 "--n-components", "5", "--compression-convention", "rms", "-q"]) == 0
    rms = {e["step"]: e["compression"] for e in kc.io.load_diagnostics(diag).entries}
    assert rms[step] == pytest.approx(kc.diagnostics.compression(
        run.checkpoints[k].network, [0], convention="rms"))
    assert rms[step] != pytest.approx(lam_star, abs=6e-4)


def test_cli_errors(tmp_path, capsys):
    assert main(["train", "ring", "--p", "3", "--d", "2", "-o", "x.h5"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["train", "stripe", "--p", "0", "--d", "2", "-o", "x.h5"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["train", "stripe", "--p", "5", "--d", "2", "--alpha", "-1", "-o", "x.h5"]) == 2
    assert main(["train", "stripe", "--p", "5", "--d", "2", "--seed", "-1",
                 "-o", str(tmp_path / "x.h5")]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err
    assert main(["demo"]) == 2
    assert "--out" in capsys.readouterr().err


def test_quick_config_is_smaller_than_the_full_one():
    q, f = demo.DemoConfig.quick(), demo.DemoConfig()
    assert q.h < f.h and max(q.p) < max(f.p) and len(q.seeds) <= len(f.seeds)
    assert f.alpha("feature") * math.sqrt(f.h) == pytest.approx(demo.ALPHA_SQRT_H["feature"])


def test_default_alpha_keeps_the_lazy_regime_lazy_at_large_widths():
    assert demo.default_alpha("feature", 10_000) == pytest.approx(0.05 / 100)
    assert demo.default_alpha("lazy", 200) == pytest.approx(1000 / 200**0.5)  # 70.7
    assert demo.default_alpha("lazy", 10_000) == demo.LAZY_MIN_ALPHA
    assert demo.default_alpha("lazy", 10_000, lazy_min_alpha=0.0) == pytest.approx(10.0)
    cfg = demo.DemoConfig(h=10_000)
    assert cfg.alpha("lazy") == demo.LAZY_MIN_ALPHA and cfg.alpha("feature") < 1e-3


def test_demo_survives_runs_stopped_before_t_star(tmp_path):
    cfg = demo.DemoConfig(h=16, p=(10, 20), seeds=(0, 1), n_test=200, max_steps=3,
                          kpca_components=8, frozen_p=(20, 40))
    s = demo.run_demo(tmp_path, config=cfg, progress=False)
    f = s["regimes"]["feature"]
    assert s["compression_trajectory"]["t_star_index"] is None
    assert None in f["compression"]  # lambda(t*) is missing, not invented
    assert all(r["t_star_step"] is None for r in s["runs"] if r["compression"] is None)
    assert any("stopped before t*" in n for n in s["notes"])
    json.loads((tmp_path / "summary.json").read_text())  # valid JSON: no NaN


def test_theory_lines_have_fitted_prefactors():
    from kernelcomp.plotting._demo import fixed_slope_prefactor

    p = np.array([32.0, 64, 128, 256])
    assert fixed_slope_prefactor(p, 0.7 * p**-0.4, -0.4) == pytest.approx(0.7, rel=1e-12)
    # least squares in log space: the geometric mean of the ratios
    noisy = 0.7 * p**-0.4 * np.array([1.1, 0.9, 1.2, 1 / 1.2])
    assert fixed_slope_prefactor(p, noisy, -0.4) == pytest.approx(
        0.7 * (1.1 * 0.9) ** 0.25, rel=1e-12)


def _frozen(shares, init=0.08, stretched=0.02, final=0.03, n_test=5000):
    per_seed = [{"seed": i, "t_star_reached": True, "stretch_lambda": 10.0,
                 "init_ntk_test_error": init, "stretched_ntk_test_error": stretched,
                 "final_ntk_test_error": final, "gain_explained": s}
                for i, s in enumerate(shares)]
    return {"p": 512, "n_test": n_test, "per_seed": per_seed,
            **demo._pool_frozen(per_seed, n_test)}


def test_stretched_note_says_no_more_than_the_seeds_support():
    note = demo._stretched_note(_frozen([1.2, 1.2, 1.2]))[-1]
    assert "3 seeds x 5000 test points pooled" in note
    assert "compression accounts for most of the gain in each of the 3 seeds." in note
    assert "too few seeds" not in note
    assert "too few seeds" in demo._stretched_note(_frozen([1.2]))[-1]
    # overlapping intervals (few test points): no claim beyond "consistent with"
    weak = demo._stretched_note(_frozen([0.9, 0.9, 0.9], init=0.05, stretched=0.045,
                                        final=0.044, n_test=200))[-1]
    assert "consistent with compression" in weak and "accounts for most" not in weak
    one_bad = _frozen([1.2, 0.2, 1.2])
    assert "not in every seed" in demo._stretched_note(one_bad)[-1]
    assert "does not account" in demo._stretched_note(
        _frozen([0.2, 0.2, 0.2], stretched=0.07))[-1]
