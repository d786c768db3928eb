"""Check kernelcomp as users install it: build the sdist and the wheel, install each fresh.

``python scripts/check_package.py`` (``make package-check``):

1. ``python -m build --outdir DIST`` builds the sdist, then the wheel *from the sdist*, so a
   file the wheel build needs but the sdist lacks fails here;
2. checks the archives' contents: the sdist holds the sources a wheel build needs
   (``pyproject.toml``, ``README.md``, every module of the package), the wheel holds every
   module and neither tests, nor numba cache files, nor ``__pycache__``;
3. installs each archive into its own fresh virtual environment (pip's cache makes the second
   install quick) and runs a smoke test from an empty directory, so that the source tree
   cannot be imported by mistake: ``import kernelcomp``, a small ``kc.gram(kc.NTK(depth=2), X)``
   checked against the kernel's own call, and ``kernelcomp --help``.

Everything happens in a temporary directory (``--keep`` keeps it). Exit status 0 when every
check passes, 1 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SMOKE = r"""
import sys
from pathlib import Path

import numpy as np

import kernelcomp as kc

src = Path(sys.argv[1]).resolve()
where = Path(kc.__file__).resolve()
assert src not in where.parents, f"imported the source tree ({where}), not the installed package"
X = np.random.default_rng(0).standard_normal((20, 4))
k = kc.NTK(depth=2)
K = kc.gram(k, X)
assert K.shape == (20, 20) and np.array_equal(K, K.T), "the Gram matrix is not symmetric"
np.testing.assert_allclose(K, k(X), rtol=1e-12)
print(f"kernelcomp {kc.__version__} from {where.parent}: gram {K.shape} ok")
"""


class CheckFailed(Exception):
    """A check failed; the message says which and why."""


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command, raising :class:`CheckFailed` with its output tail when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        head = f"{' '.join(map(str, cmd))} exited {proc.returncode}"
        raise CheckFailed(head + ":\n" + "\n".join(tail))
    return proc


def package_modules() -> set[str]:
    """The package's modules, as paths relative to the repository root."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "kernelcomp").rglob("*.py")}


def check_sdist(sdist: Path, modules: set[str]) -> None:
    """The sdist holds what a wheel build needs."""
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    need = {"pyproject.toml", "README.md", "PKG-INFO", "LICENSE"} | modules
    missing = sorted(need - names)
    if missing:
        raise CheckFailed(f"{sdist.name} lacks {missing}")


def check_wheel(wheel: Path, modules: set[str]) -> None:
    """The wheel holds every module and nothing of the development tree."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = sorted(modules - names)
    if missing:
        raise CheckFailed(f"{wheel.name} lacks {missing}")
    stray = sorted(
        n
        for n in names
        if n.startswith("tests/") or "__pycache__" in n or n.endswith((".nbi", ".nbc"))
    )
    if stray:
        raise CheckFailed(f"{wheel.name} holds files of the development tree: {stray[:5]}")
    if not any(n.endswith("entry_points.txt") for n in names):
        raise CheckFailed(f"{wheel.name} declares no console script")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        raise CheckFailed(f"{wheel.name} carries no LICENSE (the declared BSD-3-Clause text)")


def install_and_smoke(archive: Path, work: Path) -> float:
    """Install ``archive`` into a fresh venv under ``work``, smoke-test it, return the seconds."""
    t0 = time.perf_counter()
    env_dir = work / f"venv-{'wheel' if archive.suffix == '.whl' else 'sdist'}"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # --no-compile: byte-compiling scipy, matplotlib & co. would be most of the install time
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    t1 = time.perf_counter()
    run([*pip, str(archive)])
    print(f"  installed in {time.perf_counter() - t1:.0f} s")
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    out = run([str(py), "-c", SMOKE, str(ROOT)], cwd=empty)
    print("  " + out.stdout.strip())
    helped = run([str(env_dir / "bin" / "kernelcomp"), "--help"], cwd=empty)
    if "usage: kernelcomp" not in helped.stdout:
        raise CheckFailed(f"kernelcomp --help printed no usage line:\n{helped.stdout[:300]}")
    print("  kernelcomp --help ok")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Build, inspect, install and smoke-test; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kernelcomp-package-"))
    try:
        t0 = time.perf_counter()
        dist = work / "dist"
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
        sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            found = sorted(p.name for p in dist.iterdir())
            raise CheckFailed(f"expected one sdist and one wheel in {dist}, found {found}")
        print(f"built {sdists[0].name} and {wheels[0].name} in {time.perf_counter() - t0:.0f} s")
        modules = package_modules()
        check_sdist(sdists[0], modules)
        check_wheel(wheels[0], modules)
        print(f"contents ok ({len(modules)} modules in each)")
        for archive in (wheels[0], sdists[0]):
            print(f"installing {archive.name} into a fresh venv")
            print(f"  done in {install_and_smoke(archive, work):.0f} s")
    except CheckFailed as exc:
        print(f"package check failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"package check passed in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
