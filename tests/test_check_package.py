"""scripts/check_package.py: the archive checks reject what a broken build would ship.

The full check (build, fresh venvs, smoke test) runs in CI as ``make package-check``;
these tests exercise its content checks on small hand-made archives.
"""

from __future__ import annotations

import importlib.util
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "check_package", ROOT / "scripts" / "check_package.py"
)
assert _spec is not None and _spec.loader is not None
cp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cp)

MODULES = {"kernelcomp/__init__.py", "kernelcomp/_kernels/analytic.py"}


def _sdist(path: Path, names: set[str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name in sorted(names):
            info = tarfile.TarInfo(f"kernelcomp-0.1/{name}")
            info.size = 0
            tf.addfile(info, io.BytesIO(b""))
    return path


def _wheel(path: Path, names: set[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted(names):
            zf.writestr(name, "")
    return path


def test_package_modules_lists_the_real_package():
    modules = cp.package_modules()
    assert "kernelcomp/__init__.py" in modules
    assert "kernelcomp/_kernels/_config.py" in modules
    assert all(m.startswith("kernelcomp/") and m.endswith(".py") for m in modules)


def test_sdist_check(tmp_path):
    good = {"pyproject.toml", "README.md", "PKG-INFO", "LICENSE", *MODULES}
    cp.check_sdist(_sdist(tmp_path / "good.tar.gz", good), MODULES)
    for left_out in ("pyproject.toml", "README.md", "LICENSE", "kernelcomp/_kernels/analytic.py"):
        bad = _sdist(tmp_path / "bad.tar.gz", good - {left_out})
        with pytest.raises(cp.CheckFailed, match=rf"lacks .*{re.escape(left_out)}"):
            cp.check_sdist(bad, MODULES)


def test_wheel_check(tmp_path):
    meta = {
        "kernelcomp-0.1.dist-info/entry_points.txt",
        "kernelcomp-0.1.dist-info/METADATA",
        "kernelcomp-0.1.dist-info/licenses/LICENSE",
    }
    good = MODULES | meta
    cp.check_wheel(_wheel(tmp_path / "good.whl", good), MODULES)
    no_analytic = _wheel(tmp_path / "a.whl", good - {"kernelcomp/_kernels/analytic.py"})
    with pytest.raises(cp.CheckFailed, match=r"lacks .*analytic\.py"):
        cp.check_wheel(no_analytic, MODULES)
    for stray in (
        "tests/test_x.py",
        "kernelcomp/__pycache__/x.cpython-311.pyc",
        "kernelcomp/_kernels/analytic.tiles-1.py311.nbi",
    ):
        with pytest.raises(cp.CheckFailed, match="development tree"):
            cp.check_wheel(_wheel(tmp_path / "b.whl", good | {stray}), MODULES)
    with pytest.raises(cp.CheckFailed, match="no console script"):
        cp.check_wheel(_wheel(tmp_path / "c.whl", MODULES), MODULES)
    no_license = good - {"kernelcomp-0.1.dist-info/licenses/LICENSE"}
    with pytest.raises(cp.CheckFailed, match="no LICENSE"):
        cp.check_wheel(_wheel(tmp_path / "d.whl", no_license), MODULES)


def test_the_license_is_the_declared_one():
    """pyproject declares BSD-3-Clause; the LICENSE file holds that licence's text."""
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder" in text  # the third clause
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "BSD-3-Clause"$', pyproject, re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', pyproject, re.M)
