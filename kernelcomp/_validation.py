"""Input validation at the public boundary (before any compiled code runs)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.float64, np.float32)


def check_matrix(
    X: Any,
    name: str = "X",
    *,
    dtype: Any = None,
    n_features: int | None = None,
    allow_empty: bool = False,
    writeable: bool = False,
) -> np.ndarray:
    """Validate a 2-D sample matrix and return it C-contiguous as float32/float64.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The samples.
    name : str
        The argument's name, used in error messages.
    dtype : {None, numpy.float32, numpy.float64}
        Target dtype; None keeps float32 and float64 and turns everything else
        numeric into float64.
    n_features : int, optional
        Required number of columns.
    allow_empty : bool
        Accept zero rows.
    writeable : bool
        Also make the result aligned and writeable (copying a read-only or
        unaligned ``X``). For arrays handed to compiled code: numba compiles a
        separate specialisation for a read-only array, so this keeps one array
        type per dtype (each compiled kernel specialised at most twice, for
        float32 and float64).

    Returns
    -------
    numpy.ndarray
        A C-contiguous float32 or float64 array (a copy only when needed:
        another dtype or memory layout, or with ``writeable=True`` a read-only
        or unaligned array).

    Raises
    ------
    TypeError
        If the values are not real numbers (strings, objects, complex, bool).
    ValueError
        If the array is not 2-D, is empty, contains NaN or infinity, or has the
        wrong number of features.
    """
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} must be a dense array; sparse matrices are not supported")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        if arr.dtype.kind == "b":
            raise TypeError(f"{name} must hold real numbers, got dtype bool")
        if arr.dtype.kind == "c":
            raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
        if arr.dtype.kind == "O":
            if any(v is None for v in arr.ravel()):
                raise TypeError(f"{name} contains None; all values must be real numbers")
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{name} must hold real numbers, got an object array that does not "
                    f"convert to float ({exc})"
                ) from exc
        else:
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1:
            hint = (
                "; reshape with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for "
                "one sample"
            )
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got "
            f"{arr.ndim}-D array of shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} has 0 samples (shape {arr.shape}); at least 1 is required")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {arr.shape}); at least 1 is required")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but {n_features} are expected"
        )
    if dtype is None:
        target = arr.dtype if arr.dtype in FLOAT_DTYPES else np.dtype(np.float64)
    else:
        target = np.dtype(dtype)
    arr = np.require(arr, dtype=target, requirements=("C", "A", "W") if writeable else ("C",))
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(f"{name} contains {bad}; all values must be finite")
    return arr


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype | None:
    """Validate a requested floating dtype (None, float32 or float64)."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32, float64 or None, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32, float64 or None, got {dt}")
    return dt


def result_dtype(*arrays: np.ndarray, dtype: Any = None) -> np.dtype:
    """float32 when every input is float32 (or when asked), else float64."""
    dt = check_dtype(dtype)
    if dt is not None:
        return dt
    if all(a.dtype == np.float32 for a in arrays if a is not None):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_real_dtype(dtype: Any, name: str) -> np.dtype:
    """``dtype`` of an array that must hold real numbers (bool, integer or floating).

    For arrays checked by their dtype only (Dask arrays, before any value is
    computed): a complex array would otherwise be cast to real silently.

    Raises
    ------
    TypeError
        For a complex, string, object or other non-real dtype.
    """
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {dt}")
    return dt


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Validate an integer parameter (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: Sequence[Any], *,
                 what: str = "") -> Any:
    """Validate that ``value`` is one of ``choices`` (the one wording of every such check).

    Parameters
    ----------
    value : object
        The value given.
    name : str
        The argument's name, for the message.
    choices : sequence
        The allowed values (strings, usually).
    what : str, optional
        An alternative the caller also accepts, named in the message
        (e.g. ``"a list of layer indices"``); the caller checks it before.

    Returns
    -------
    object
        ``value`` itself.

    Raises
    ------
    ValueError
        If ``value`` is not one of ``choices``: "NAME must be one of [...], got VALUE".
    """
    try:  # a bool is not the choice 1, an array is not a string it equals elementwise
        ok = not isinstance(value, bool | np.bool_ | np.ndarray) and value in choices
    except (TypeError, ValueError):  # unhashable against a set or dict of choices
        ok = False
    if not ok:
        listed = sorted(choices) if isinstance(choices, set | frozenset | dict) else list(choices)
        alt = f" or {what}" if what else ""
        raise ValueError(f"{name} must be one of {listed}{alt}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Validate a flag: ``True`` or ``False`` (NumPy booleans too), never 0/1 or None.

    Raises
    ------
    TypeError
        If ``value`` is not a boolean.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_real(value: Any, name: str, *, minimum: float | None = None) -> float:
    """Validate a finite real scalar."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def per_layer(
    value: Any, name: str, n_layers: int, *, minimum: float = 0.0, allow_none: bool = False
) -> tuple[float | None, ...]:
    """Expand a scalar or a sequence of ``n_layers`` values into a tuple."""
    if value is None and allow_none:
        return (None,) * n_layers
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = check_real(value, name, minimum=minimum)
        return (v,) * n_layers
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            f"{name} must be a number or a sequence of {n_layers} numbers (one per Dense "
            f"layer), got {type(value).__name__}"
        )
    values = list(value.ravel()) if isinstance(value, np.ndarray) else list(value)
    if len(values) != n_layers:
        raise ValueError(
            f"{name} must have one value per Dense layer: {n_layers} (depth + 1) values, "
            f"got {len(values)}"
        )
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None and allow_none:
            out.append(None)
        else:
            out.append(check_real(v, f"{name}[{i}]", minimum=minimum))
    return tuple(out)


#: what :func:`check_labels` accepts, by ``kind``
LABEL_KINDS: tuple[str, ...] = ("binary", "real")


def check_labels(y: Any, n: int, name: str = "y", *, kind: str = "binary") -> np.ndarray:
    """Validate labels (or real targets) of ``n`` samples and return them as float64.

    Parameters
    ----------
    y : array-like of shape (n,)
        The labels or targets.
    n : int
        Number of samples they must match.
    name : str, default "y"
        The argument's name, used in error messages.
    kind : {"binary", "real"}, default "binary"
        ``"binary"``: the labels -1 and +1 only (the paper's convention);
        ``"real"``: any finite real targets.

    Returns
    -------
    numpy.ndarray of shape (n,)
        float64 (a copy only when the dtype differs).

    Raises
    ------
    TypeError
        If the values are not real numbers (strings, objects, bool, complex).
    ValueError
        If ``y`` is not 1-D, does not have ``n`` entries, holds NaN or infinity,
        or (``kind="binary"``) holds a value other than -1 and +1.

    Examples
    --------
    >>> check_labels([1, -1, 1], 3).tolist()
    [1.0, -1.0, 1.0]
    """
    check_choice(kind, "kind", LABEL_KINDS)
    binary = kind == "binary"
    what = "labels" if binary else "targets"
    try:
        arr = np.asarray(y)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        numbers_ = "the numbers -1 and +1" if binary else "real numbers"
        raise TypeError(f"{name} must hold {numbers_}, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape ({n},), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} {what}, but there are {n} samples")
    arr = arr.astype(np.float64, copy=False)
    if binary:
        bad = ~((arr == 1.0) | (arr == -1.0))
        if bad.any():
            raise ValueError(
                f"{name} must hold labels -1 and +1 only, found {float(arr[bad][0])!r} "
                "(map two classes to -1/+1 first, e.g. np.where(y == c, 1.0, -1.0))"
            )
    elif not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all {what} must be finite")
    return arr


# -- Gram matrices -------------------------------------------------------------------
#: tile edge of the symmetry check
SYM_TILE = 256
#: relative asymmetry, in units of machine epsilon, up to which a Gram matrix counts
#: as exactly symmetric: above it the estimators warn that they use (K + K.T) / 2
SYMMETRIC_ROUNDOFF_EPS = 1e3


def symmetry_tolerance(dtype: Any) -> float:
    """Relative asymmetry ``max|K - K.T| / max|K|`` above which a Gram matrix is refused.

    ``sqrt(eps)`` of ``dtype``: far above the round-off of any Gram computation
    (those are symmetric to a few eps, or exactly), far below a wrong input.
    Below it, an asymmetry larger than :data:`SYMMETRIC_ROUNDOFF_EPS` eps is
    round-off that the estimators average away (with a warning).

    Examples
    --------
    >>> symmetry_tolerance(np.float32) > symmetry_tolerance(np.float64)
    True
    """
    return float(np.sqrt(np.finfo(dtype).eps))


def check_square_gram(K: np.ndarray, name: str = "K") -> None:
    """Raise ValueError unless the 2-D array ``K`` is square (one message everywhere)."""
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square Gram matrix, got shape {K.shape}")


def check_gram(K: Any, name: str = "K", *, symmetric: bool = True) -> np.ndarray:
    """A finite, square, (numerically) symmetric float32/float64 matrix.

    Parameters
    ----------
    K : array-like of shape (n, n)
    name : str, default "K"
        The argument's name, used in error messages.
    symmetric : bool, default True
        Check ``max|K - K.T| <= symmetry_tolerance(dtype) * max|K|`` (one pass
        over square tiles of the upper triangle and their mirror images, which
        both stay in cache).

    Returns
    -------
    numpy.ndarray
        ``K`` as validated by :func:`check_matrix` (no copy when it already
        qualifies).

    Raises
    ------
    ValueError
        If ``K`` is not square, or not symmetric within the tolerance.
    """
    K = check_matrix(K, name)
    check_square_gram(K, name)
    if symmetric:
        n = K.shape[0]
        scale = max(abs(float(K.max())), abs(float(K.min()))) if n else 0.0
        tol = symmetry_tolerance(K.dtype) * scale
        worst = 0.0
        b = SYM_TILE
        for i0 in range(0, n, b):
            for j0 in range(i0, n, b):
                d = float(np.abs(K[i0 : i0 + b, j0 : j0 + b] - K[j0 : j0 + b, i0 : i0 + b].T).max())
                worst = max(worst, d)
        if worst > tol:
            raise ValueError(
                f"{name} must be symmetric: max |{name} - {name}.T| = {worst:.3g} exceeds "
                f"{tol:.3g} (sqrt(eps) x max|{name}|); pass (K + K.T) / 2 if the asymmetry "
                "is round-off"
            )
    return K
