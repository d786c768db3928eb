"""A curated mutation-testing harness: deliberately wrong documented outputs must fail a test.

Each mutant is one exact source snippet of ``kernelcomp/`` and its replacement (a
plausible mistake in a documented output: a wrong normalisation, a factor, an option
ignored, an off-by-one in a range), with the test files (or test node ids) that should
catch it. For every mutant the harness

1. copies the repository into a temporary folder (``shutil.copytree`` without
   ``.venv``, ``.git`` and caches; the compiled-kernel cache in ``__pycache__`` comes
   along, so nothing recompiles),
2. applies the replacement there, failing loudly unless the snippet occurs exactly
   once in the file,
3. runs ``python -m pytest -q -x -p no:cacheprovider TESTS`` in that copy with the
   repository's venv Python and ``PYTHONPATH`` set to the copy, so that the copy's
   package is imported and not the editable install (checked once, by printing
   ``kernelcomp.__file__`` from a child started the same way),
4. records "killed" (a test failed), "survived" (every test passed), "error" (pytest
   could not run the tests, e.g. the mutant does not import) or "timeout".

The repository itself is never written to. A baseline run of every mutant's tests on an
unmutated copy comes first: if it fails, the results would mean nothing and the
harness stops.

Usage::

    python scripts/mutants.py --list             # the mutants
    python scripts/mutants.py --check            # every snippet occurs exactly once
    python scripts/mutants.py                    # run them all (about 10 minutes on 2 cores)
    python scripts/mutants.py NAME [NAME ...]    # run some
    python scripts/mutants.py --timeout 300 --no-baseline NAME
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".venv", ".git", ".hypothesis", ".ruff_cache", ".pytest_cache",
                                "*.egg-info", "demo_out", "paper_out", "*.partial")

OPT = "tests/test_training_options.py"
DOC = "tests/test_documented_outputs.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    snippet: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # test files or node ids, relative to the repository root
    description: str


def _t(path: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{path}::{n}" for n in names) if names else (path,)


MUTANTS: list[Mutant] = [
    # --- the faults of issue 18 ------------------------------------------------------
    Mutant("cumprojection_over_n", "kernelcomp/diagnostics/_labels.py",
           "norm2 = float(np.sum(Y * Y))", "norm2 = float(Y.shape[0])",
           _t(DOC, "test_cumulative_projection_divides_by_the_norm_of_y",
              "test_readme_kpca_numbers"),
           "cumulative_projection divides by n instead of ||y||^2"),
    Mutant("dgrad_100x_small", "kernelcomp/training/_engine.py",
           "dgrad = 0.0 if g2 == 0.0 or h2 == 0.0 else d2 / math.sqrt(g2 * h2)",
           "dgrad = 0.0 if g2 == 0.0 or h2 == 0.0 else d2 / math.sqrt(g2 * h2) / 100",
           _t(OPT, "test_known_step_counts_pin_the_step_control",
              "test_euler_flow_equals_the_naive_rule"),
           "the step control measures dgrad 100x too small"),
    Mutant("explained_ratio_over_kept", "kernelcomp/diagnostics/_kernel_pca.py",
           "return np.asarray(self.eigenvalues, dtype=np.float64) / self.trace",
           "return np.asarray(self.eigenvalues, dtype=np.float64)"
           " / float(np.sum(self.eigenvalues))",
           _t(DOC, "test_explained_ratio_of_a_truncated_spectrum_is_over_the_trace"),
           "KernelPCAResult.explained_ratio normalised by the kept eigenvalues, not the trace"),
    Mutant("powerlaw_stderr_no_dof", "kernelcomp/diagnostics/_spectrum.py",
           "stderr = math.sqrt(float(np.sum(resid**2)) / dof / sxx)",
           "stderr = math.sqrt(float(np.sum(resid**2)) / x.size / sxx)",
           _t(DOC, "test_power_law_statistics_match_linregress"),
           "spectrum_power_law's stderr divides by n instead of n - 2"),
    Mutant("powerlaw_r2_uncentred", "kernelcomp/diagnostics/_spectrum.py",
           "sst = float(np.sum((t - tm) ** 2))", "sst = float(np.sum(t**2))",
           _t(DOC, "test_power_law_statistics_match_linregress",
              "test_power_law_r_squared_is_centred_and_two_points_have_no_stderr"),
           "spectrum_power_law's r_squared uncentred"),
    Mutant("powerlaw_default_end", "kernelcomp/diagnostics/_spectrum.py",
           "hi = min(m // 2, last_ok)", "hi = min(m // 2 + 1, last_ok)",
           _t(DOC, "test_power_law_default_fit_range_is_the_documented_one"),
           "spectrum_power_law's default fit range ends one rank past k // 2"),
    Mutant("bootstrap_too_wide", "kernelcomp/curves.py",
           "lo, hi = np.quantile(values, [q, 1 - q])",
           "lo, hi = np.quantile(values, [q / 2, 1 - q / 2])",
           _t(DOC, "test_bootstrap_interval_equals_the_direct_quantiles"),
           "fit_exponent's bootstrap interval too wide (a 97.5% interval for 95%)"),
    Mutant("train_center_ignored", "kernelcomp/training/_network_flow.py",
           "out0 = net0(X) if center else np.zeros(X.shape[0])", "out0 = net0(X)",
           _t(OPT, "test_center_false_trains_alpha_f"),
           "train(center=False) still trains alpha (f - f0)"),
    Mutant("train_beta_ignored", "kernelcomp/training/_network_flow.py",
           'y_test = check_labels(y_test, X_test.shape[0], "y_test")\n'
           "    c = _control(alpha, loss, beta,",
           'y_test = check_labels(y_test, X_test.shape[0], "y_test")\n'
           "    c = _control(alpha, loss, 20.0,",
           _t(OPT, "test_soft_hinge_beta_is_the_naive_flow", "test_two_betas_give_two_flows"),
           "train(beta=...) ignored (always 20)"),
    Mutant("runfile_margins_no_alpha", "kernelcomp/training/_network_flow.py",
           "margins=setup.control.alpha * setup.y * out,", "margins=setup.y * out,",
           _t(OPT, "test_run_file_margins_carry_alpha"),
           "run-file margins stored without alpha"),
    # --- more documented outputs -----------------------------------------------------
    Mutant("powerlaw_default_start", "kernelcomp/diagnostics/_spectrum.py",
           "        lo = 2\n        if hi - lo < 1:", "        lo = 1\n        if hi - lo < 1:",
           _t(DOC, "test_power_law_default_fit_range_is_the_documented_one"),
           "spectrum_power_law's default fit starts at rank 1 (the constant mode)"),
    Mutant("label_projection_sign", "kernelcomp/diagnostics/_labels.py",
           "return V.astype(np.float64, copy=False).T @ Y",
           "return V.astype(np.float64, copy=False).T @ np.sign(Y)",
           _t(DOC, "test_label_projection_of_real_targets"),
           "label_projection projects sign(y) (the same for +-1 labels)"),
    Mutant("compression_figures_rms", "kernelcomp/diagnostics/_compression.py",
           "par, perp = float(rms[mask].mean()), float(rms[~mask].mean())",
           "par, perp = float(rms[mask].mean()), float(np.sqrt(sq[~mask].mean()))",
           _t(DOC, "test_readme_training_numbers"),
           'compression(convention="figures") takes an RMS of the perpendicular RMS values'),
    Mutant("t_star_at_or_above", "kernelcomp/diagnostics/_compression.py",
           "if f > margin_fraction:", "if f >= margin_fraction:",
           _t(DOC, "test_readme_training_numbers",
              "test_t_star_is_the_first_checkpoint_with_more_than_the_fraction"),
           "t_star: at least (not more than) the margin fraction"),
    Mutant("stretch_multiplies", "kernelcomp/diagnostics/_compression.py",
           "out[:, ~mask] /= lam", "out[:, ~mask] *= lam",
           _t(DOC, "test_readme_training_numbers"),
           "stretch_inputs multiplies the uninformative inputs by lambda"),
    Mutant("bootstrap_level_ignored", "kernelcomp/curves.py",
           "q = (1 - level) / 2", "q = 0.025",
           _t(DOC, "test_bootstrap_interval_equals_the_direct_quantiles",
              "test_bootstrap_interval_narrows_with_the_level"),
           "fit_exponent's interval is 95% whatever level"),
    Mutant("bootstrap_per_size_resample", "kernelcomp/curves.py",
           "m = sub[:, idx].mean(axis=1) if run_ok is None",
           "m = np.array([row[np.random.default_rng(i).integers(0, idx.size, idx.size)].mean()"
           " for i, row in enumerate(sub)]) if run_ok is None",
           _t(DOC, "test_bootstrap_interval_equals_the_direct_quantiles"),
           "the bootstrap draws a new resample at every p (documented: the same one)"),
    Mutant("compression_theory_factor", "kernelcomp/curves.py",
           "c = (2 / math.pi) * (math.exp", "c = (1 / math.pi) * (math.exp",
           _t(DOC, "test_readme_theory_numbers"),
           "compression_theory loses its factor 2"),
    Mutant("beta_lazy_denominator", "kernelcomp/curves.py",
           "return d / (3 * d - 2)", "return d / (3 * d - 1)",
           _t(DOC, "test_readme_theory_numbers"),
           "beta_lazy = d / (3d - 1)"),
    Mutant("grow_factor", "kernelcomp/training/_engine.py",
           "DT_GROW: float = 1.1", "DT_GROW: float = 1.2",
           _t(OPT, "test_known_step_counts_pin_the_step_control"),
           "dt grows by 1.2 instead of 1.1"),
    Mutant("grow_ignores_dgrad", "kernelcomp/training/_engine.py",
           "ok and dgrad < GROW_BELOW * c.max_dgrad and dout < GROW_BELOW * c.max_dout",
           "ok and dout < GROW_BELOW * c.max_dout",
           _t(OPT, "test_known_step_counts_pin_the_step_control"),
           "dt grows whenever dout is below half its limit (dgrad left out)"),
    Mutant("dout_mean", "kernelcomp/training/_engine.py",
           "dout = float(np.max(np.abs(out - new_out)))",
           "dout = float(np.mean(np.abs(out - new_out)))",
           _t(OPT, "test_known_step_counts_pin_the_step_control",
              "test_smaller_max_dout_is_the_naive_flow"),
           "dout is the mean, not the max, output change"),
    Mutant("max_time_overshoot", "kernelcomp/training/_engine.py",
           "dt_try = min(dt, c.max_time - t)", "dt_try = dt",
           _t(OPT, "test_max_time_stops_exactly_there"),
           "the last step may run past max_time"),
    Mutant("hinge_ref_new_pattern", "kernelcomp/training/_integrators.py",
           "ref_u = u if self.kink else new_u", "ref_u = new_u",
           _t(OPT, "test_known_step_counts_pin_the_step_control"),
           "dgrad's reference gradient takes the new hinge pattern (not the step's start)"),
    Mutant("keep_networks_ignored", "kernelcomp/training/_network_flow.py",
           "snapshot if setup.keep_networks else None,", "snapshot,",
           _t(OPT, "test_keep_networks_false_keeps_them_on_disk"),
           "train(keep_networks=False) keeps them anyway"),
    Mutant("max_dgrad_ignored", "kernelcomp/training/_engine.py",
           "return _Control(alpha, name, beta, max_dgrad, max_dout / alpha",
           "return _Control(alpha, name, beta, MAX_DGRAD, max_dout / alpha",
           _t(OPT, "test_smaller_max_dgrad_takes_more_steps"),
           "the max_dgrad option ignored"),
    Mutant("max_dout_not_over_alpha", "kernelcomp/training/_engine.py",
           "return _Control(alpha, name, beta, max_dgrad, max_dout / alpha",
           "return _Control(alpha, name, beta, max_dgrad, max_dout",
           _t(OPT, "test_euler_flow_equals_the_naive_rule"),
           "dout's limit is max_dout, not max_dout / alpha"),
    Mutant("rejections_off_by_one", "kernelcomp/training/_engine.py",
           "if rejected >= MAX_REJECTIONS:", "if rejected > MAX_REJECTIONS:",
           _t(OPT, "test_status_stalled_after_max_rejections"),
           '"stalled" after MAX_REJECTIONS + 1 rejections'),
    Mutant("stall_never_counted", "kernelcomp/training/_engine.py",
           "creeping = creeping + 1 if dt_try <= STALL_FRACTION * t else 0", "creeping = 0",
           _t(OPT, "test_status_stalled_when_time_stops_advancing"),
           '"stalled" never reached by a flow whose time stops advancing'),
    Mutant("stall_off_by_one", "kernelcomp/training/_engine.py",
           "if creeping >= STALL_STEPS:", "if creeping > STALL_STEPS:",
           _t(OPT, "test_status_stalled_when_time_stops_advancing"),
           '"stalled" after STALL_STEPS + 1 creeping steps'),
    Mutant("nan_check_loss_only", "kernelcomp/training/_engine.py",
           "if not (np.isfinite(out).all() and np.isfinite(state.loss)):",
           "if not np.isfinite(state.loss):",
           _t(OPT, "test_status_nan_from_overflowing_outputs",
              "test_status_nan_before_converged"),
           '"nan" only from the loss (infinite outputs with infinite margins look converged)'),
    Mutant("max_wall_ignored", "kernelcomp/training/_engine.py",
           "if c.max_wall is not None and time.perf_counter() - wall0 >= c.max_wall:",
           "if False:",
           _t(OPT, "test_status_max_wall", "test_kernel_flow_max_wall"),
           "max_wall ignored"),
    Mutant("loss_not_over_alpha", "kernelcomp/training/_engine.py",
           "loss = float(np.mean(loss_value(z, c.loss, c.beta))) / c.alpha",
           "loss = float(np.mean(loss_value(z, c.loss, c.beta)))",
           _t(OPT, "test_euler_flow_equals_the_naive_rule"),
           "the reported loss is not divided by alpha"),
    Mutant("kernel_flow_beta_ignored", "kernelcomp/training/_kernel_flow.py",
           "y = check_labels(y, p)\n    c = _control(alpha, loss, beta,",
           "y = check_labels(y, p)\n    c = _control(alpha, loss, 20.0,",
           _t(OPT, "test_kernel_flow_soft_hinge_beta_is_the_naive_flow"),
           "kernel_gradient_flow(beta=...) ignored"),
    Mutant("frozen_pattern_ignored", "kernelcomp/network.py",
           "                    delta *= pattern[l - 1]\n",
           "                    delta *= activate_grad(self.activation, c.preactivations[l - 1])\n"
           "                    delta /= self._pattern_slope()\n",
           ("tests/test_network.py::test_forward_and_gradients_on_a_frozen_pattern",
            "tests/test_training.py::test_numpy_pair_matches_the_explicit_frozen_pattern"),
           "FCNetwork.gradients(pattern=...) backpropagates through the current ReLU pattern"),
    Mutant("train_center_unchecked", "kernelcomp/training/_network_flow.py",
           'center = check_bool(center, "center")', "center = bool(center)",
           ("tests/test_training.py::test_train_checks_every_argument_before_creating_a_file",),
           "train(center='no') trains the centred model instead of raising"),
    Mutant("ridge_alpha_ignored", "kernelcomp/estimators/_ridge.py",
           "K.flat[:: n + 1] += alpha", "K.flat[:: n + 1] += 1e-10",
           _t(DOC, "test_readme_kernel_machines_equal_scikit_learn"),
           "NTKRegressor ignores alpha"),
    Mutant("flow_classifier_signs", "kernelcomp/estimators/_classifier.py",
           "signs = np.where(index == 1, 1.0, -1.0)", "signs = np.where(index == 0, 1.0, -1.0)",
           _t(DOC, "test_readme_kernel_machines_equal_scikit_learn"),
           "NTKClassifier(solver='gradient_flow') maps the classes to the wrong signs"),
    Mutant("ntk_input_scale", "kernelcomp/kernels.py",
           "s0a = w2[0] / d", "s0a = w2[0] / (d + 1)",
           _t(DOC, "test_readme_analytic_ntk_numbers"),
           "the first layer's covariance divides by d + 1"),
    Mutant("relu_unit_scale", "kernelcomp/kernels.py",
           '_ACTIVATION_SCALE2 = {"relu_unit": 2.0}', '_ACTIVATION_SCALE2 = {"relu_unit": 1.0}',
           _t(DOC, "test_readme_frozen_kernel_curve_numbers", "test_paper_ntk_is_twice_relu"),
           "relu_unit's kernel is the plain ReLU's (the factor 2 lost)"),
    # --- blocked linear algebra, block Lanczos, Falkon (issues 10, 13, 14) ---------------
    Mutant("syrk_offdiag_skipped", "kernelcomp/_linalg.py",
           "            gemm_nt(C[i0:i1, i1:], A[i0:i1], A[i1:], alpha, beta)",
           "            pass",
           ("tests/test_linalg.py",),
           "syrk_upper leaves the blocks right of the diagonal unwritten"),
    Mutant("cholesky_trailing_sign", "kernelcomp/_linalg.py",
           "_char(\"L\"), _char(\"N\"), _int(i1 - i0), _int(b), minus_one,",
           "_char(\"L\"), _char(\"N\"), _int(i1 - i0), _int(b), one,",
           ("tests/test_linalg.py",),
           "the blocked Cholesky adds the trailing update instead of subtracting it"),
    Mutant("cross_gram_one_blas_call", "kernelcomp/kernels.py",
           "        gemm_nt(out, X, Y)\n", "        np.matmul(X, Y.T, out=out)\n",
           ("tests/test_linalg.py",),
           "the cross Gram is one unbounded numpy product again (a syrk when Y is X, issue 28)"),
    Mutant("gemm_columns_unbounded", "kernelcomp/_linalg.py",
           "        for j0 in range(0, m, SAFE_BLOCK):", "        for j0 in range(0, m, 10**9):",
           ("tests/test_linalg.py",),
           "gemm_nt hands one GEMM all the output columns"),
    Mutant("cholqr_accepts_sqrt_eps", "kernelcomp/_eigsolve.py",
           "np.diagonal(R).min() <= max(drop, gram_floor)", "np.diagonal(R).min() <= drop",
           ("tests/test_eigsolve.py",),
           "the Cholesky QR keeps a dependent column at sqrt(eps) level (issue 28 item 2)"),
    Mutant("lanczos_tol_ignored", "kernelcomp/_eigsolve.py",
           "                if bool((res <= tol).all()) or stop:",
           "                if True:",
           ("tests/test_eigsolve.py",),
           "block Lanczos stops after the first Rayleigh-Ritz whatever the residuals"),
    Mutant("lanczos_one_cgs_pass", "kernelcomp/_eigsolve.py",
           "                    passes: int = 2) -> tuple",
           "                    passes: int = 1) -> tuple",
           ("tests/test_eigsolve.py",),
           "one Gram-Schmidt pass instead of two (equivalent if the tests cannot see it)"),
    Mutant("falkon_ridge_dropped", "kernelcomp/_falkon.py",
           "return np.asarray(normal(beta), dtype=dt) + alpha * matmul(K_mm, beta)",
           "return np.asarray(normal(beta), dtype=dt)",
           ("tests/test_falkon.py",),
           "Falkon's system loses its ridge alpha K_mm"),
    Mutant("falkon_centres_not_random", "kernelcomp/_falkon.py",
           "return np.sort(rng.choice(n, size=m, replace=False))",
           "return np.arange(m)",
           ("tests/test_falkon.py",),
           "the Nystrom centres are the first m rows, not a random subset"),
    Mutant("stretch_wrong_axis", "kernelcomp/diagnostics/_compression.py",
           "    out[:, ~mask] /= lam", "    out[:, mask] /= lam",
           ("tests/test_diagnostics.py::test_stretch_inputs_and_the_stretched_kernel_on_a_tiny_problem",),
           "stretch_inputs divides the informative coordinates"),
]


def _by_name() -> dict[str, Mutant]:
    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names), "duplicate mutant names"
    return {m.name: m for m in MUTANTS}


def _venv_python() -> str:
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _child_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _copy_repository() -> Path:
    dest = Path(tempfile.mkdtemp(prefix="kc-mutant-")) / "repo"
    assert ROOT not in dest.parents and dest != ROOT
    shutil.copytree(ROOT, dest, ignore=IGNORE)
    return dest


def apply(mutant: Mutant, copy: Path) -> None:
    """Write the mutant into the copy (never into ROOT); the snippet must occur once."""
    if copy.resolve() == ROOT:
        raise RuntimeError("refusing to mutate the repository itself")
    target = copy / mutant.file
    text = target.read_text()
    count = text.count(mutant.snippet)
    if count != 1:
        raise RuntimeError(
            f"mutant {mutant.name}: the snippet occurs {count} times in {mutant.file} "
            f"(expected exactly once): {mutant.snippet!r}"
        )
    target.write_text(text.replace(mutant.snippet, mutant.replacement))
    stale = target.parent / "__pycache__"
    for pyc in stale.glob(f"{target.stem}.*.pyc"):
        pyc.unlink()


def check_snippets(mutants: list[Mutant]) -> list[str]:
    """Problems with the snippets in the working tree (read only)."""
    problems = []
    for m in mutants:
        count = (ROOT / m.file).read_text().count(m.snippet)
        if count != 1:
            problems.append(f"{m.name}: snippet found {count} times in {m.file}")
        if m.snippet == m.replacement:
            problems.append(f"{m.name}: the replacement equals the snippet")
        for t in m.tests:
            if not (ROOT / t.split("::")[0]).exists():
                problems.append(f"{m.name}: no test file {t}")
    return problems


def verify_import(copy: Path) -> str:
    """The child processes import the copy's kernelcomp, not the editable install."""
    out = subprocess.run(
        [_venv_python(), "-c", "import kernelcomp; print(kernelcomp.__file__)"],
        cwd=copy, env=_child_env(copy), capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        raise RuntimeError(f"the child imported {out}, not the copy in {copy}")
    return out


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """Run pytest in the copy: (outcome, seconds, first failing test or a note)."""
    cmd = [_venv_python(), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_child_env(copy), capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, f"over {timeout:g} s"
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)
    if proc.returncode == 0:
        return "survived", seconds, ""
    if proc.returncode == 1:
        return "killed", seconds, failed[0] if failed else "a test failed"
    tail = output.strip().splitlines()[-1:] or [""]
    return "error", seconds, f"pytest exit {proc.returncode}: {tail[0][:120]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="curated mutation testing of kernelcomp")
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true",
                        help="check that every snippet occurs exactly once, then exit")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the tests on an unmutated copy")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)
    table = _by_name()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:30s} {m.file:28s} {m.description}")
        return 0
    unknown = [n for n in args.names if n not in table]
    if unknown:
        parser.error(f"unknown mutants {unknown}; see --list")
    chosen = [table[n] for n in args.names] if args.names else list(MUTANTS)
    problems = check_snippets(chosen)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"{len(chosen)} mutants: every snippet occurs exactly once")
        return 0

    copies: list[Path] = []
    try:
        base = _copy_repository()
        copies.append(base)
        print(f"children import {verify_import(base)}")
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            outcome, seconds, note = run_tests(base, tests, args.timeout * 4)
            print(f"baseline (unmutated, {len(tests)} targets): {outcome} in {seconds:.0f} s")
            if outcome != "survived":
                print(f"the unmutated tests do not pass ({note}); stopping", file=sys.stderr)
                return 2
        results = []
        for m in chosen:
            copy = _copy_repository()
            copies.append(copy)
            apply(m, copy)
            outcome, seconds, note = run_tests(copy, m.tests, args.timeout)
            results.append((m, outcome))
            print(f"{m.name:30s} {outcome:8s} {seconds:6.1f} s  {note}", flush=True)
            if not args.keep:
                shutil.rmtree(copy.parent, ignore_errors=True)
                copies.pop()
    finally:
        if not args.keep:
            for c in copies:
                shutil.rmtree(c.parent, ignore_errors=True)
    killed = sum(outcome != "survived" for _, outcome in results)
    print(f"\nkill rate: {killed}/{len(results)} = {killed / len(results):.0%}")
    survivors = [m for m, outcome in results if outcome == "survived"]
    for m in survivors:
        print(f"survivor: {m.name} ({m.file}): {m.description}")
    flagged = [(m, o) for m, o in results if o in ("error", "timeout")]
    for m, o in flagged:
        print(f"{o}: {m.name} (counted as killed)")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
