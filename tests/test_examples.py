"""The example gallery (examples/plot_*.py) runs as plain scripts.

A broken example then fails ``make test`` as well as ``make docs`` (where sphinx-gallery
runs them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kernelcomp

ROOT = Path(kernelcomp.__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(EXAMPLES.glob("plot_*.py"))


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Python with this checkout's kernelcomp first on the path, figures off screen."""
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_gallery_layout():
    # sphinx-gallery needs the README.txt; the docs build runs every file named plot_*.py
    assert (EXAMPLES / "README.txt").is_file()
    assert len(SCRIPTS) >= 12
    conf = (ROOT / "docs" / "conf.py").read_text()
    pattern = re.search(r'"filename_pattern":\s*r?"([^"]+)"', conf).group(1)
    assert all(re.search(pattern, f"{os.sep}{s.name}") for s in SCRIPTS)
    for script in SCRIPTS:
        head = script.read_text().split('"""')[1].strip().splitlines()
        # a reST title: the line, then an underline of "=" at least as long
        assert len(head) >= 2 and set(head[1]) == {"="} and len(head[1]) >= len(head[0]), script


# Runs a script as sphinx-gallery does: its "# %%" blocks one after the other in one
# namespace, each started in the same folder (sphinx-gallery's is examples/), so a script
# that relies on os.chdir or writes into the current folder fails here.
BLOCKWISE = """
import os, re, sys
script, folder = sys.argv[1], os.getcwd()
source = open(script, encoding="utf-8").read()
namespace = {"__name__": "__main__", "__file__": script}
line = 0
for block in re.split(r"(?m)^# %%.*$", source):
    os.chdir(folder)
    exec(compile("\\n" * line + block, script, "exec"), namespace)  # tracebacks: file lines
    line += block.count("\\n")
"""


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs(script, tmp_path):
    out = _run(["-c", BLOCKWISE, str(script)], cwd=tmp_path)
    assert out.returncode == 0, f"{script.name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # the scripts clean up after themselves


def test_torch_example_skips_without_torch(tmp_path):
    # the docs may be built without the optional PyTorch extra: that example then
    # prints why and draws nothing, instead of failing the build
    script = EXAMPLES / "plot_08_torch_checkpoints.py"
    probe = textwrap.dedent(
        f"""
        import importlib.abc, runpy, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, NoTorch())  # "import torch" now raises ImportError
        runpy.run_path({str(script)!r}, run_name="__main__")
        import matplotlib.pyplot as plt
        print("figures:", len(plt.get_fignums()))
        """
    )
    out = _run(["-c", probe], cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "PyTorch is not installed: this example is skipped" in out.stdout
    assert "figures: 0" in out.stdout
