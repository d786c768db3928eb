"""Run mutmut on one pure-Python module of kernelcomp with the tests that cover it.

``make mutation MODULE=kernelcomp/curves.py TESTS="tests/test_curves.py"`` calls this
script. It lays a scratch copy of the package, the tests and ``pyproject.toml`` under
``build/mutation/<module>/`` (the repository itself is never rewritten), adds a
``[tool.mutmut]`` section that mutates only MODULE (a file, or a folder for a whole
package) and runs only TESTS, stops each pytest run at its first failure (``-x``), then
runs ``mutmut run`` there and prints the survivors and the score.

It is not part of CI (a module takes minutes to an hour); see CONTRIBUTING.md. The
compiled kernels (numba) are out of mutmut's reach: ``scripts/mutants.py`` keeps the
hand-made mutants for them.

Examples
--------
``python scripts/mutation.py kernelcomp/diagnostics tests/test_diagnostics.py``

``python scripts/mutation.py kernelcomp/curves.py tests/test_curves.py --max-children 1``

``python scripts/mutation.py kernelcomp/curves.py tests/test_curves.py --show`` lists the
survivors of the previous run (no new run) with their diffs.

``python scripts/mutation.py kernelcomp/curves.py tests/test_curves.py --survivors`` lays
out the current tests again and reruns only the mutants that survived (or had no test)
in the previous run: mutmut keeps every other verdict, so this is the cheap re-measure
after new tests (the score it prints is then over all mutants of the module).

mutmut calls "suspicious" a mutant whose worker died on a signal other than its timeout;
on this package that happens to every mutant of some functions (the out-of-core kernel
PCA, for one), and some of those mutants pass the tests. They do not count as killed.
``--recheck`` reruns each of them by hand (one ``pytest.main`` per mutant, in one child
process, with the tests mutmut maps to its function), keeps the verdicts in
``build/mutation/<module>/recheck.json`` and counts them from then on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mutmut() -> list[str]:
    exe = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if exe is None:
        sys.exit("mutmut is not installed: pip install -e '.[mutation]'")
    return [exe]


#: every pytest run on mutants (mutmut's and the recheck's): fast fail, no cache folder, no
#: doctests of the whole package, and not the tests marked ``frames``, which read a caller's
#: stack frame: mutmut's trampolines add frames, so they fail on the unmutated code and
#: mutmut stops before testing any mutant
_PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-W",
                "ignore::DeprecationWarning", "-m", "not frames"]  # fmt: skip


#: a mutant's tests may take this multiple of their clean duration, plus this many seconds,
#: before it counts as timed out (killed: an endless loop), in mutmut's run and the recheck
_TIMEOUT_MULTIPLIER = 5.0
_TIMEOUT_CONSTANT = 20.0
#: the recheck's least limit per mutant, in seconds
_RECHECK_MIN_TIMEOUT = 300.0


def _scratch(module: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", module.strip("/"))
    return ROOT / "build" / "mutation" / name


def _config(module: str, tests: list[str]) -> str:
    path = module.rstrip("/")
    pattern = path if path.endswith(".py") else path + "/*"
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["kernelcomp"]\n'
        f"only_mutate = {json.dumps([pattern])}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        f"pytest_add_cli_args = {json.dumps(_PYTEST_ARGS)}\n"
        "use_git_change_detection = false\n"
        f"timeout_multiplier = {_TIMEOUT_MULTIPLIER}\n"
        f"timeout_constant = {_TIMEOUT_CONSTANT}\n"
    )


def _lay_out(scratch: Path, module: str, tests: list[str]) -> None:
    if scratch.exists():
        # keep mutmut's results (mutants/) so that a rerun only tests what changed
        for entry in ("kernelcomp", "tests", "pyproject.toml"):
            target = scratch / entry
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    scratch.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    shutil.copytree(ROOT / "kernelcomp", scratch / "kernelcomp", ignore=ignore)
    shutil.copytree(ROOT / "tests", scratch / "tests", ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in text:
        sys.exit("pyproject.toml already has a [tool.mutmut] section; this script writes its own")
    (scratch / "pyproject.toml").write_text(text + _config(module, tests))


def _results(scratch: Path, env: dict[str, str]) -> dict[str, str]:
    """mutmut's verdict per mutant name of the run in ``scratch``."""
    out = subprocess.run(
        [*_mutmut(), "results", "--all", "true"], cwd=scratch, env=env,
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    status: dict[str, str] = {}
    for line in out.splitlines():
        name, _, verdict = line.strip().rpartition(": ")
        if name:
            status[name] = verdict
    return status


def _forget_rechecks(path: Path, names: list[str] | None) -> None:
    """Drop the hand verdicts of mutants mutmut is about to rerun (all when None)."""
    _merge_parts(path)
    if not path.exists():
        return
    if names is None:
        path.unlink()
        return
    kept = {k: v for k, v in json.loads(path.read_text()).items() if k not in set(names)}
    path.write_text(json.dumps(kept, indent=1))


def _saved_verdicts(scratch: Path) -> dict[str, str]:
    """mutmut's verdicts of the last run, with the ones it kept from earlier runs."""
    path = scratch / "verdicts.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _survivors(status: dict[str, str]) -> list[str]:
    return sorted(n for n, v in status.items() if v in ("survived", "no tests"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="file or package folder to mutate (kernelcomp/curves.py)")
    parser.add_argument("tests", nargs="+", help="test files (or node ids) that cover it")
    parser.add_argument(
        "--max-children", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")),
        help="parallel mutant runs (default 2, or $MUTATION_JOBS)",
    )
    parser.add_argument(
        "--show", action="store_true", help="print the survivors of the last run with diffs"
    )
    parser.add_argument(
        "--recheck", action="store_true",
        help="rerun the 'suspicious' mutants of the last run by hand and count their verdicts",
    )  # fmt: skip
    parser.add_argument(
        "--skip-clean", action="store_true",
        help="--recheck without the run on the unmutated code (mutmut's clean run just passed)",
    )  # fmt: skip
    parser.add_argument("--recheck-worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--survivors", action="store_true",
        help="rerun only the survivors and no-test mutants of the last run, with the current tests",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.recheck_worker:
        return _recheck_worker(Path(args.recheck_worker))
    if not (ROOT / args.module).exists():
        parser.error(f"module: {args.module!r} does not exist under {ROOT}")
    scratch = _scratch(args.module)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the scratch copy, not the checkout, must be imported
    # mutmut forks a worker per mutant from a process that has already run numba's parallel
    # kernels; GNU OpenMP (numba's default layer here) aborts a forked child that uses them
    # ("fork() called from a process already using GNU OpenMP"): the "suspicious" verdicts.
    # The workqueue layer is fork-safe (and the tests run single-threaded anyway).
    env.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    names: list[str] = []
    before: dict[str, str] = {}
    if args.survivors:
        if not (scratch / "mutants").is_dir():
            parser.error(f"--survivors: no previous run under {scratch}")
        before = _results(scratch, env)
        # a chain of --survivors runs: mutmut reset the verdicts the previous run kept
        saved = _saved_verdicts(scratch)
        before = {n: saved.get(n, v) if v == "not checked" else v for n, v in before.items()}
        names = _survivors(before)
        if not names:
            print(f"{args.module}: no survivor to rerun")
    # --show and --recheck read the last run; --survivors reruns only its survivors
    fresh_run = not (args.show or args.recheck or args.survivors)
    if fresh_run or (args.survivors and names):
        _lay_out(scratch, args.module, args.tests)
        _forget_rechecks(scratch / "recheck.json", None if fresh_run else names)
        if fresh_run:
            (scratch / "verdicts.json").unlink(missing_ok=True)
        code = subprocess.call(
            [*_mutmut(), "run", "--max-children", str(args.max_children), *names],
            cwd=scratch, env=env,
        )  # fmt: skip
        if code not in (0, 1):
            return code
    status = _results(scratch, env)
    if not fresh_run:  # --show / --recheck: the verdicts an earlier run kept stand
        saved = _saved_verdicts(scratch)
        status = {n: saved.get(n, v) if v == "not checked" else v for n, v in status.items()}
    # mutmut resets every cached verdict when the test selection changes; the mutants that
    # were not rerun keep the verdict of the previous run (same source, a superset of tests)
    kept = [n for n, v in before.items() if n not in names and status.get(n) == "not checked"]
    for name in kept:
        status[name] = before[name]
    if kept:
        print(f"{args.module}: {len(kept)} verdicts kept from the previous run")
    # mutmut's verdicts and the kept ones, before the hand verdicts (those stay in recheck.json)
    (scratch / "verdicts.json").write_text(json.dumps(status, indent=1))
    recheck_file = scratch / "recheck.json"
    if args.recheck:
        # the suspicious ones, those a previous recheck left alive (new tests may kill them)
        # and those mutmut found no test for when the current stats map tests to them
        earlier = _merge_parts(recheck_file)
        stats = json.loads((scratch / "mutants" / "mutmut-stats.json").read_text())
        mapped = stats["tests_by_mangled_function_name"]
        todo = sorted(n for n, v in status.items()
                      if v == "suspicious" or earlier.get(n) == "survived"
                      or (v == "no tests" and mapped.get(n.rsplit("__mutmut_", 1)[0])))
        code = _recheck(scratch, args.module, todo, args.max_children, env,
                        clean=not args.skip_clean)  # fmt: skip
        if code:
            return code
    # a hand verdict stands for a mutant mutmut has not rerun since (the entries of rerun
    # mutants are forgotten, and a fresh run forgets them all)
    rechecked = _merge_parts(recheck_file)
    for name, verdict in rechecked.items():
        if name in status:
            status[name] = verdict
    counts: dict[str, int] = {}
    for verdict in status.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    survivors = sorted(n for n, v in status.items() if v in ("survived", "no tests"))
    for name in survivors:
        print(f"{status[name]}: {name}")
        if args.show:
            diff = subprocess.run(
                [*_mutmut(), "show", name], cwd=scratch, env=env,
                capture_output=True, text=True, check=False,
            ).stdout
            print(diff)
    tested = sum(c for v, c in counts.items() if v not in ("skipped", "not checked"))
    killed = sum(counts.get(v, 0) for v in ("killed", "timeout", "segfault", "killed by hand"))
    score = 100.0 * killed / tested if tested else float("nan")
    print(f"{args.module}: {counts}")
    print(f"{args.module}: mutation score {killed}/{tested} = {score:.1f} %"
          + (f" ({counts['suspicious']} suspicious not counted: --recheck)"
             if counts.get("suspicious") else ""))  # fmt: skip
    return 0



def _tests_fingerprint(mutants: Path) -> str:
    """A hash of the test files laid out in ``mutants/`` (a survivor is retried when it changes)."""
    digest = hashlib.sha256()
    for path in sorted((mutants / "tests").rglob("*.py")):
        digest.update(str(path.relative_to(mutants)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _merge_parts(recheck_file: Path) -> dict[str, str]:
    """Fold the workers' part files (``recheck.json.part<i>``) into ``recheck.json``."""
    done = json.loads(recheck_file.read_text()) if recheck_file.exists() else {}
    parts = sorted(recheck_file.parent.glob(recheck_file.name + ".part*"))
    for part in parts:
        done.update(json.loads(part.read_text() or "{}"))
    if parts or recheck_file.exists():
        recheck_file.write_text(json.dumps(done, indent=1))
    for part in parts:
        part.unlink()
    return done


def _recheck(scratch: Path, module: str, todo: list[str], jobs: int, env: dict[str, str],
             clean: bool = True) -> int:
    """Rerun ``todo`` by hand in ``jobs`` worker processes; resumable.

    Each worker writes its verdicts after every mutant to its own part file; the parts are
    folded into ``recheck.json`` when the workers end and at the start of the next
    ``--recheck`` (after an interrupted one), so a killed recheck loses at most the
    mutants in flight. A mutant a recheck left alive is retried only when the laid-out
    tests changed since (``recheck_tests.json`` keeps the fingerprint it survived).
    ``clean=False`` skips the run of the tests on the unmutated code (when mutmut's own
    clean run has just passed in the same scratch).
    """
    mutants = scratch / "mutants"
    recheck_file = scratch / "recheck.json"
    done = _merge_parts(recheck_file)
    kept_file = scratch / "recheck_tests.json"
    survived_with = json.loads(kept_file.read_text()) if kept_file.exists() else {}
    fingerprint = _tests_fingerprint(mutants)
    todo = [n for n in todo if done.get(n, "survived") == "survived"
            and survived_with.get(n) != fingerprint]  # fmt: skip
    # a fixed pseudo-random order (the same on every resume): the verdicts of an unfinished
    # recheck are then a fair sample of the rest, not the first functions in name order
    todo.sort(key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    print(f"{module}: rechecking {len(todo)} mutants by hand ({len(done)} hand verdicts kept)",
          flush=True)  # fmt: skip
    if not todo:
        return 0
    # the unmutated code must pass the tests that will be run, or every mutant "dies"
    stats = json.loads((mutants / "mutmut-stats.json").read_text())
    tests_of = stats["tests_by_mangled_function_name"]
    wanted = sorted({t for n in todo for t in tests_of.get(n.rsplit("__mutmut_", 1)[0], ())})
    code = subprocess.call(
        [sys.executable, "-m", "pytest", *_PYTEST_ARGS, *wanted], cwd=mutants,
        env=env | {"MUTANT_UNDER_TEST": ""}, stdout=subprocess.DEVNULL,
    ) if clean else 0  # fmt: skip
    if code != 0:
        print(f"{module}: the unmutated code fails the selected tests (pytest exit {code}); "
              "no recheck", file=sys.stderr)  # fmt: skip
        return 3
    workers = []
    for i in range(max(1, jobs)):
        names = todo[i :: max(1, jobs)]
        if not names:
            continue
        job = scratch / f"recheck_job{i}.json"
        part = recheck_file.with_name(f"{recheck_file.name}.part{i}")
        job.write_text(json.dumps({"names": names, "out": str(part), "done": str(recheck_file)}))
        workers.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), module, "-",
             "--recheck-worker", str(job)], cwd=mutants, env=env,
        ))  # fmt: skip
    for worker in workers:
        worker.wait()
    done = _merge_parts(recheck_file)
    for name in todo:
        if done.get(name) == "survived":
            survived_with[name] = fingerprint
    kept_file.write_text(json.dumps(survived_with, indent=1))
    return 0


def _recheck_worker(job_file: Path) -> int:
    """Rerun mutants by hand in this process (cwd: the scratch's ``mutants/``)."""
    import pytest

    job = json.loads(job_file.read_text())
    out = Path(job["out"])
    done = json.loads(out.read_text()) if out.exists() else {}
    stats = json.loads(Path("mutmut-stats.json").read_text())
    tests_of = stats["tests_by_mangled_function_name"]
    duration = stats["duration_by_test"]
    sys.path.insert(0, os.getcwd())
    expired = []

    def _expire(signum: int, frame: object) -> None:  # a mutant that never ends (a loop)
        expired.append(True)
        raise KeyboardInterrupt  # pytest stops the session and returns "interrupted"

    signal.signal(signal.SIGALRM, _expire)
    for name in job["names"]:
        tests = sorted(tests_of.get(name.rsplit("__mutmut_", 1)[0], ()),
                       key=lambda t: duration.get(t, 0.0))  # fmt: skip
        if not tests:
            continue
        os.environ["MUTANT_UNDER_TEST"] = name
        expired.clear()
        # mutmut's limit (a multiple of the tests' clean duration plus a constant), at least
        # _RECHECK_MIN_TIMEOUT: this process imports and compiles on its first mutants
        limit = _TIMEOUT_CONSTANT + _TIMEOUT_MULTIPLIER * sum(duration.get(t, 1.0) for t in tests)
        signal.setitimer(signal.ITIMER_REAL, max(limit, _RECHECK_MIN_TIMEOUT))
        try:
            code = int(pytest.main([*_PYTEST_ARGS, *tests]))
        except KeyboardInterrupt:  # the limit struck outside a test (collection, set-up)
            if not expired:
                raise
            code = -1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        done[name] = ("timeout" if expired else "killed by hand" if code == 1
                      else "survived" if code == 0 else "suspicious")  # fmt: skip
        out.write_text(json.dumps(done, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
