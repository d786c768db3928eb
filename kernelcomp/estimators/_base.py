"""What both estimators share: the kernel argument, nested parameters, the Gram plumbing.

:class:`_KernelEstimator` resolves ``kernel`` (None, ``"precomputed"`` or a
kernelcomp kernel), exposes the kernel's own parameters as nested estimator
parameters (``kernel__depth``...), validates the common parameters and computes
the training Gram (symmetrised) and the test Gram in row blocks of about 64 MiB.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator
from sklearn.utils.validation import validate_data

from kernelcomp._base import Kernel
from kernelcomp._gram import default_block_rows, gram, iter_gram_blocks
from kernelcomp._parallel import n_jobs_context, resolve_n_jobs
from kernelcomp._validation import (
    SYMMETRIC_ROUNDOFF_EPS,
    check_dtype,
    result_dtype,
)
from kernelcomp.kernels import NTK

_FLOATS = (np.float64, np.float32)


class SingularKernelWarning(scipy.linalg.LinAlgWarning):
    """The regularised kernel system was singular or indefinite; a fallback was used."""


def _resolve_kernel(kernel: Any) -> Kernel | str:
    """The kernel an estimator uses: a kernelcomp kernel or ``"precomputed"``."""
    if kernel is None:
        return NTK()
    if isinstance(kernel, str):
        if kernel == "precomputed":
            return kernel
        raise ValueError(
            f"unknown kernel {kernel!r}; expected None (kc.NTK()), 'precomputed' or a "
            "kernelcomp kernel object such as kc.NTK(depth=2), kc.NNGP() or "
            "kc.EmpiricalNTK(net)"
        )
    if isinstance(kernel, Kernel):
        return kernel
    inner = getattr(kernel, "kernelcomp_kernel", None)  # kc.gp.KernelcompKernel wrapper
    if isinstance(inner, Kernel):
        return inner
    raise TypeError(
        "kernel must be None, 'precomputed' or a kernelcomp kernel (kc.NTK(), kc.NNGP(), "
        f"kc.EmpiricalNTK(net)), got {type(kernel).__name__}"
    )


def _is_precomputed(kernel: Any) -> bool:
    return isinstance(kernel, str) and kernel == "precomputed"


def _check_square(K: np.ndarray) -> None:
    if K.shape[0] != K.shape[1]:
        raise ValueError(
            "Precomputed matrix must be a square matrix (the Gram matrix of the training "
            f"samples). Input is a {K.shape[0]}x{K.shape[1]} matrix."
        )


def _symmetrize(K: np.ndarray, block: int = 512) -> float:
    """Replace square ``K`` by its symmetric part ``(K + K.T) / 2`` in place.

    Exact (a no-op) for a symmetric matrix. Returns the largest asymmetry
    ``max |K - K.T|`` found, block by block without an n x n temporary.
    """
    n = K.shape[0]
    defect = 0.0
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        upper = K[i0:i1, i0:]
        lower_t = K[i0:, i0:i1].T
        diff = upper - lower_t
        if diff.size:
            defect = max(defect, float(np.max(np.abs(diff))))
        sym = 0.5 * (upper + lower_t)  # commutative: exactly symmetric, exact if symmetric
        K[i0:i1, i0:] = sym
        K[i0:, i0:i1] = sym.T
    return defect


class _KernelEstimator(BaseEstimator):
    """Shared plumbing: kernel resolution, nested ``kernel__*`` parameters, tags."""

    kernel: Any
    dtype: Any
    n_jobs: int | None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator.

        With ``deep=True`` the fields of a dataclass kernel (``kc.NTK``,
        ``kc.NNGP``) are included as ``kernel__<field>``, so that
        ``GridSearchCV(est, {"kernel__depth": [1, 2, 3]})`` works.

        Parameters
        ----------
        deep : bool, default True

        Returns
        -------
        dict
        """
        params = super().get_params(deep=deep)
        if deep:
            kernel = self.kernel
            if kernel is None:
                kernel = _resolve_kernel(None)
            if dataclasses.is_dataclass(kernel) and not isinstance(kernel, type):
                for field in dataclasses.fields(kernel):
                    if field.init:
                        params[f"kernel__{field.name}"] = getattr(kernel, field.name)
        return params

    def set_params(self, **params: Any) -> _KernelEstimator:
        """Set parameters, including nested kernel parameters ``kernel__<field>``.

        A nested parameter replaces the (immutable) kernel by a copy with that
        field changed; with ``kernel=None`` the base is ``kc.NTK()``.

        Parameters
        ----------
        **params
            Estimator parameters.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a nested parameter the kernel does not have.
        """
        nested = {
            k[len("kernel__") :]: params.pop(k) for k in list(params) if k.startswith("kernel__")
        }
        super().set_params(**params)
        if nested:
            kernel = self.kernel if self.kernel is not None else _resolve_kernel(None)
            if hasattr(kernel, "set_params") and not dataclasses.is_dataclass(kernel):
                kernel.set_params(**nested)  # e.g. a kc.gp.KernelcompKernel wrapper
                return self
            if not (dataclasses.is_dataclass(kernel) and not isinstance(kernel, type)):
                raise ValueError(
                    f"cannot set kernel parameters {sorted(nested)}: the kernel "
                    f"{type(kernel).__name__} has no nested parameters (pass a new kernel "
                    "object as kernel=... instead)"
                )
            names = {f.name for f in dataclasses.fields(kernel) if f.init}
            unknown = sorted(set(nested) - names)
            if unknown:
                raise ValueError(
                    f"invalid kernel parameter(s) {unknown} for {type(kernel).__name__}; "
                    f"valid ones are {sorted(names)}"
                )
            self.kernel = dataclasses.replace(kernel, **nested)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = _is_precomputed(self.kernel)
        return tags

    # -- fit-time helpers -------------------------------------------------------
    def _check_common_params(self) -> None:
        check_dtype(self.dtype, "dtype")
        resolve_n_jobs(self.n_jobs)

    def _validate_fit_X(self, X: Any, y: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, dtype=_FLOATS, **kwargs)
        return X, y

    def _train_gram(
        self, kernel: Kernel | str, X: np.ndarray, symmetrize: bool = False
    ) -> np.ndarray:
        """The training Gram matrix, C-contiguous.

        With ``symmetrize`` the result is owned (free to be overwritten) and a
        precomputed matrix is replaced by a copy of its symmetric part (with a
        warning when it was not symmetric): the in-place Cholesky reads one
        triangle and its fallback the other. Without it, a precomputed matrix
        is passed through as validated (SVC does not modify it).
        """
        if _is_precomputed(kernel):
            _check_square(X)
            dt = result_dtype(X, dtype=self.dtype)
            if not symmetrize:
                return np.ascontiguousarray(X, dtype=dt)
            K = np.array(X, dtype=dt, order="C", copy=True)
            defect = _symmetrize(K)
            scale = float(np.max(np.abs(np.diagonal(K)))) if len(K) else 0.0
            if defect > SYMMETRIC_ROUNDOFF_EPS * np.finfo(dt).eps * max(scale, np.finfo(dt).tiny):
                warnings.warn(
                    f"The precomputed Gram matrix is not symmetric (max |K - K.T| = "
                    f"{defect:.3g}, largest diagonal value {scale:.3g}); using its symmetric "
                    "part (K + K.T) / 2.",
                    UserWarning,
                    stacklevel=4,  # the user's fit: here < _fit_cholesky < fit < caller
                )
            return K
        if kernel.n_features_in is not None and X.shape[1] != kernel.n_features_in:
            raise ValueError(
                f"X has {X.shape[1]} features, but the kernel {type(kernel).__name__} expects "
                f"{kernel.n_features_in} (the input dimension of its network)"
            )
        return gram(kernel, X, dtype=self.dtype, n_jobs=self.n_jobs)

    def _iter_test_gram(
        self, X: np.ndarray, Y: np.ndarray, dtype: np.dtype, rows: int | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Row blocks ``(start, stop, K[start:stop])`` of ``kernel_(X, Y)``.

        ``rows`` defaults to :func:`kernelcomp._gram.default_block_rows` (about 64 MiB of output).
        """
        if rows is None:
            rows = default_block_rows(X.shape[0], Y.shape[0], np.dtype(dtype).itemsize)
        with n_jobs_context(self.n_jobs):
            for block in iter_gram_blocks(self.kernel_, X, Y, dtype=dtype, block_rows=rows):
                ((_, values),) = block.writes
                yield block.start, block.stop, values
