"""Argument checks shared by the diagnostics: eigenvectors, targets, classes, spectra.

Also the row-block size of the O(n^2) passes over a Gram matrix (``_BLOCK_ELEMS``
elements per block), so that no pass allocates a second n x n array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelcomp._validation import check_matrix

#: rows per block in the O(n^2) passes that would otherwise allocate an n x n temporary
_BLOCK_ELEMS = 2**22


def _block_rows(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMS // max(n_cols, 1))


def _check_vectors(V: Any, name: str = "eigenvectors") -> np.ndarray:
    """Eigenvectors as an ``(n, k)`` matrix (a 1-D vector becomes one column)."""
    arr = np.asarray(V) if not hasattr(V, "toarray") else V
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        arr = arr[:, None]
    return check_matrix(arr, name)


def _check_targets(
    y: Any, n: int, name: str = "y", *, against: str = "the eigenvectors have"
) -> np.ndarray:
    """Real targets of shape (n,) or (n, m), as float64."""
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "fiu":
        raise TypeError(
            f"{name} must hold real numbers (e.g. +-1 labels), got dtype {arr.dtype}; "
            "encode class labels first, e.g. with "
            "sklearn.preprocessing.label_binarize(y, classes=..., neg_label=-1)"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, m), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} samples, but {against} {n} rows")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns (shape {arr.shape}); at least 1 is required")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr


def _check_classes(y: Any, n: int, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """1-D class labels of any type -> (classes, integer codes)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class labels of shape ({n},), got shape "
            f"{arr.shape}" + ("; use y.ravel()" if arr.ndim == 2 and arr.shape[1] == 1 else "")
        )
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} samples, but the eigenvectors have {n} rows")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; class labels must be finite")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must hold class labels (numbers or strings), got {arr.dtype}")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:  # object arrays of mixed, unorderable types
        raise TypeError(
            f"{name} must hold class labels of one orderable type (numbers or strings): {exc}"
        ) from exc
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise ValueError(f"{name} contains NaN or infinity; class labels must be finite")
    return classes, codes.ravel()


def _eigenvalues_of(eigenvalues: Any, name: str = "eigenvalues") -> np.ndarray:
    """A finite, non-empty 1-D spectrum (a :class:`KernelPCAResult` is accepted)."""
    if hasattr(eigenvalues, "eigenvalues"):
        eigenvalues = eigenvalues.eigenvalues
    arr = np.asarray(eigenvalues)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one eigenvalue is required")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr
