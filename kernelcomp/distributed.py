"""Gram matrices as Dask arrays of kernelcomp tiles (optional extra ``kernelcomp[dask]``).

:func:`gram` builds a lazy ``dask.array.Array`` whose blocks are computed by
kernelcomp's compiled tiles, on whatever Dask scheduler is active: the local
threaded scheduler, or a ``distributed`` cluster (workers must be separate
processes started with ``spawn`` -- ``distributed``'s default --, since numba's
OpenMP threading layer does not survive a ``fork``). The result can be reduced,
stored with ``.to_zarr()`` / ``.to_hdf5()``, or fed to Dask linear algebra.
``kc.NTKRegressor(solver="falkon")`` also takes Dask arrays for ``X`` and
``y``: its cross-Gram products then run on the cluster, with only ``m x m``
matrices on the driver.

References
----------
Rocklin (2015), *Dask: Parallel computation with blocked algorithms and task
scheduling*, SciPy; Meanti et al. (2020), *Kernel methods through the roof*,
NeurIPS (out-of-core Falkon).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from kernelcomp._base import Kernel
from kernelcomp._gram import default_block_rows
from kernelcomp._gram import gram as _gram
from kernelcomp._validation import check_dtype, result_dtype

__all__ = ["gram", "is_dask_array"]


def _dask() -> Any:
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "kernelcomp.distributed needs Dask: pip install 'kernelcomp[dask]' "
            "(dask[array] and distributed)"
        ) from exc
    return dask, da


def is_dask_array(x: Any) -> bool:
    """Whether ``x`` is a ``dask.array.Array`` (without importing Dask otherwise)."""
    mod = type(x).__module__
    if not mod.startswith("dask"):
        return False
    _, da = _dask()
    return isinstance(x, da.Array)


def _row_chunks(x: Any, chunks: Any, name: str) -> tuple[int, ...]:
    """Row chunk sizes of ``x`` for ``chunks`` (None: Dask's own, or ~64 MiB tiles)."""
    n = x.shape[0]
    if chunks is None:
        if is_dask_array(x):
            return tuple(int(c) for c in x.chunks[0])
        rows = default_block_rows(n, n, 8)
        chunks = rows
    if isinstance(chunks, numbers.Integral) and not isinstance(chunks, bool):
        if chunks < 1:
            raise ValueError(f"chunks must be a positive int or a sequence of sizes, got {chunks}")
        c = int(chunks)
        return tuple([c] * (n // c) + ([n % c] if n % c else []))
    if isinstance(chunks, Sequence) and not isinstance(chunks, str):
        sizes = tuple(int(c) for c in chunks)
        if any(c < 1 for c in sizes) or sum(sizes) != n:
            raise ValueError(
                f"chunks for {name} must be positive sizes that add up to its {n} rows, got "
                f"{list(sizes)} (sum {sum(sizes)})"
            )
        return sizes
    raise TypeError(
        f"chunks must be None, an int or a sequence of ints, got {type(chunks).__name__}"
    )


def _as_blocks(x: Any, sizes: tuple[int, ...], name: str, kernel: Kernel) -> tuple[list[Any], Any]:
    """The row blocks of ``x`` (delayed for a Dask array), and ``x``'s dtype."""
    if is_dask_array(x):
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {x.ndim}-D")
        if np.dtype(x.dtype).kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if kernel.n_features_in is not None and x.shape[1] != kernel.n_features_in:
            raise ValueError(
                f"{name} has {x.shape[1]} features, but the kernel expects {kernel.n_features_in}"
            )
        x = x.rechunk((sizes, -1))
        return list(x.to_delayed().ravel()), x.dtype
    x = kernel._check_input(x, name)
    starts = np.cumsum((0, *sizes))
    return [x[a:b] for a, b in itertools.pairwise(starts)], x.dtype


def _tile(kernel: Kernel, xi: np.ndarray, xj: np.ndarray | None, dtype: str) -> np.ndarray:
    return _gram(kernel, xi, xj, dtype=dtype)


def _transpose(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block.T)


def gram(kernel: Kernel, X: Any, Y: Any = None, *, chunks: Any = None,
         dtype: Any = None) -> Any:  # fmt: skip
    """The Gram matrix ``kernel(X, Y)`` as a lazy Dask array of kernelcomp tiles.

    Parameters
    ----------
    kernel : Kernel
        ``kc.NTK``, ``kc.NNGP``, ``kc.EmpiricalNTK``...
    X : array-like or dask.array.Array of shape (n, d)
    Y : array-like or dask.array.Array of shape (m, d), optional
        Defaults to ``X``: the symmetric Gram, each off-diagonal block computed
        once (its mirror is its transpose), diagonal blocks exactly symmetric.
    chunks : int, sequence of int, or pair of sequences, optional
        The output's blocks: an int is the block edge along both axes; a
        sequence of sizes the row chunks of ``X`` (and of ``Y`` when it is
        ``X``); a pair ``(rows, cols)`` the chunks of ``X`` and of ``Y``, as in
        Dask. Default: a Dask input's own row chunks, else about 64 MiB tiles.
    dtype : {None, "float32", "float64"}
        None gives float32 when every input is float32, else float64.

    Returns
    -------
    dask.array.Array of shape (n, m)

    Raises
    ------
    ImportError
        Without Dask.
    TypeError, ValueError
        For a non-kernel, bad inputs, or chunks that do not tile the rows.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((300, 4))
    >>> G = kc.distributed.gram(kc.NTK(depth=2), X, chunks=100)
    >>> G.chunks
    ((100, 100, 100), (100, 100, 100))
    >>> bool(np.allclose(G.compute(), kc.NTK(depth=2)(X)))
    True
    """
    dask, da = _dask()
    if not isinstance(kernel, Kernel):
        raise TypeError(
            "kernel must be a kernelcomp kernel (e.g. kc.NTK(), kc.EmpiricalNTK(net)), got "
            f"{type(kernel).__name__}"
        )
    check_dtype(dtype, "dtype")
    symmetric = Y is None
    row_spec = col_spec = chunks
    if (isinstance(chunks, Sequence) and len(chunks) == 2
            and all(isinstance(c, Sequence) for c in chunks)):  # fmt: skip
        row_spec, col_spec = chunks
    elif isinstance(chunks, Sequence) and not symmetric:
        col_spec = None
    rows = _row_chunks(X, row_spec, "X")
    xs, x_dtype = _as_blocks(X, rows, "X", kernel)
    if symmetric:
        if col_spec is not row_spec and tuple(_row_chunks(X, col_spec, "X")) != rows:
            raise ValueError("a symmetric Gram needs the same row and column chunks")
        cols, ys, y_dtype = rows, xs, None
    else:
        if Y.shape[1:] != X.shape[1:]:
            raise ValueError(f"Y has {Y.shape[1]} features but X has {X.shape[1]}")
        cols = _row_chunks(Y, col_spec, "Y")
        ys, y_dtype = _as_blocks(Y, cols, "Y", kernel)
    probe_x = np.empty((0, 1), dtype=x_dtype)
    probe_y = None if y_dtype is None else np.empty((0, 1), dtype=y_dtype)
    dt = np.dtype(result_dtype(probe_x, probe_y, dtype=dtype))
    tiles: dict[tuple[int, int], Any] = {}
    grid = []
    for i, ci in enumerate(rows):
        line = []
        for j, cj in enumerate(cols):
            if symmetric and j < i:
                task = dask.delayed(_transpose, pure=True)(tiles[(j, i)])
            else:
                other = None if (symmetric and i == j) else ys[j]
                task = dask.delayed(_tile, pure=True)(kernel, xs[i], other, dt.name)
                tiles[(i, j)] = task
            line.append(da.from_delayed(task, shape=(ci, cj), dtype=dt))
        grid.append(line)
    return da.block(grid)
