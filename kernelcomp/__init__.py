"""kernelcomp: tangent kernels and the geometric compression of invariant manifolds.

Analytic (infinite-width) NNGP/NTK and empirical NTK Gram matrices from a
Numba-compiled parallel core, sklearn-compatible kernel machines, kernel-PCA
diagnostics, HDF5 storage and a command line, reproducing Paccolat et al. (2021),
*Geometric compression of invariant manifolds in neural networks*.

Submodules and heavy dependencies (scikit-learn, h5py, matplotlib) are imported
lazily, on first use of the name that needs them, so ``import kernelcomp`` is fast.

Examples
--------
>>> import numpy as np
>>> import kernelcomp as kc
>>> X = np.random.default_rng(0).standard_normal((5, 3))
>>> kc.NTK(depth=2)(X).shape
(5, 5)
"""

from __future__ import annotations

import importlib
from typing import Any

from kernelcomp._version import __version__

# public name -> module that defines it
_LAZY_ATTRS: dict[str, str] = {
    "Kernel": "kernelcomp.kernels",
    "NTK": "kernelcomp.kernels",
    "NNGP": "kernelcomp.kernels",
    "ConvNTK": "kernelcomp.convolutional",
    "ConvNNGP": "kernelcomp.convolutional",
    "gram": "kernelcomp._gram",
    "FCNetwork": "kernelcomp.network",
    "EmpiricalNTK": "kernelcomp.empirical",
    "EmpiricalNNGP": "kernelcomp.empirical",
    "TorchNTK": "kernelcomp._torch_ntk",
    "NTKRegressor": "kernelcomp.estimators",
    "NTKClassifier": "kernelcomp.estimators",
}
_LAZY_MODULES = (
    "diagnostics",
    "io",
    "plotting",
    "datasets",
    "training",
    "curves",
    "cli",
    "gp",
    "distributed",
    "predict",
)

__all__ = ["__version__", *_LAZY_ATTRS, *_LAZY_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"kernelcomp.{name}")
    else:
        raise AttributeError(f"module 'kernelcomp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
