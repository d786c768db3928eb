"""The public modules list what they export (autodoc and tab completion read ``dir()``)."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = ["kernelcomp", "kernelcomp.kernels", "kernelcomp.convolutional", "kernelcomp.empirical",
          "kernelcomp.estimators", "kernelcomp.diagnostics", "kernelcomp.curves", "kernelcomp.io",
          "kernelcomp.training",
          "kernelcomp.network", "kernelcomp.plotting", "kernelcomp.datasets",
          "kernelcomp.distributed", "kernelcomp.gp", "kernelcomp.predict"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_exported_name_resolves_and_is_listed_by_dir(name):
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if n not in dir(module)]
    assert not missing, f"{name}: {missing} are in __all__ but not in dir()"
    for n in module.__all__:
        getattr(module, n)
