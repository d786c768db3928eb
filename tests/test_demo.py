"""`kernelcomp demo --quick` and `kernelcomp train` in-process; summary.json is validated."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp import demo
from kernelcomp.cli import main

TINY = demo.DemoConfig(h=32, p=(12, 24), seeds=(0, 1), n_test=400, max_steps=400,
                       kpca_components=12)


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
    assert 0 <= fk["init_ntk_test_error"] <= 1 and 0 <= fk["final_ntk_test_error"] <= 1
    for when in ("init", "final"):
        k = s["kpca"][when]
        assert 0 <= k["cumulative_projection_top10"] <= 1 + 1e-9
        assert len(k["mutual_information"]) == 10
        assert all(_number(v) for v in k["mutual_information"])


def test_run_demo_writes_a_valid_summary(tmp_path, capsys):
    s = demo.run_demo(tmp_path, config=TINY, progress=True)
    text = capsys.readouterr().out
    assert "beta_feature" in text and "SVM on frozen NTK" in text
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["regimes"] == json.loads(json.dumps(s["regimes"]))
    _check_schema(on_disk, TINY)
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
        lam = kc.diagnostics.compression(run.checkpoints[-1].network, informative=[0])
        assert lam == pytest.approx(r["compression"], rel=1e-12)
        # mid-training compression: the first checkpoint below MID_LOSS of the initial loss
        mid = next((ck for ck in run.checkpoints
                    if f"loss<{demo.MID_LOSS:g}" in ck.extra["reason"]), run.checkpoints[-1])
        assert mid.step == r["mid_step"]
        assert mid.loss < demo.MID_LOSS * run.checkpoints[0].loss or mid is run.checkpoints[-1]
        lam_mid = kc.diagnostics.compression(mid.network, informative=[0])
        assert lam_mid == pytest.approx(r["compression_mid"], rel=1e-12)
    # slopes of log lambda vs log p, and the claims read from them
    key = f"compression_at_loss_{demo.MID_LOSS:g}"
    for r in on_disk["regimes"].values():
        for lam, slope in ((r["compression"], r["compression_slope"]),
                           (r[key], r[f"compression_slope_at_loss_{demo.MID_LOSS:g}"])):
            fit = np.polyfit(np.log(r["p"]), np.log(lam), 1)[0]
            assert slope == pytest.approx(fit, rel=1e-9)
    # lambda and test error along the largest feature run are its checkpoints'
    tr = on_disk["compression_trajectory"]
    run = kc.io.open_run(tmp_path / on_disk["kpca"]["run"])
    assert tr["step"] == [ck.step for ck in run.checkpoints]
    assert tr["test_error"] == [ck.test_error for ck in run.checkpoints]
    for ck, lam in zip(run.checkpoints, tr["compression"], strict=True):
        assert kc.diagnostics.compression(ck.network, informative=[0]) == pytest.approx(lam)
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
    for regime in ("feature", "lazy"):
        e, theory = on_disk["exponents"][regime], on_disk["exponents"]["theory"][regime]
        if e["beta"] is not None:
            misses = not (e["ci"][0] <= theory <= e["ci"][1])
            assert misses == any(n.startswith(f"beta_{regime} =") for n in notes)
    assert all(f"note: {n}" in text for n in notes)
    # the per-p means are the means of the runs
    for regime in ("feature", "lazy"):
        for i, p in enumerate(TINY.p):
            errs = [r["test_error"] for r in on_disk["runs"]
                    if r["regime"] == regime and r["p"] == p]
            assert on_disk["regimes"][regime]["test_error"][i] == pytest.approx(np.mean(errs))


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
