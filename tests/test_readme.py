"""The README's Python examples run as written (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(python_blocks()) >= 5


@pytest.mark.slow
def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    # the examples leave their files behind, as a user would see them
    assert (tmp_path / "Kfile.h5").exists() and (tmp_path / "net.npz").exists()
    assert (tmp_path / "spectrum.png").exists() and (tmp_path / "run.h5").exists()
    # and what the comments promise holds
    assert namespace["lam"] > 5  # feature-regime compression (measured ~40)
    assert namespace["K"].shape == (1000, 1000)
