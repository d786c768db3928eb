"""The Gram driver: one entry point for big matrices.

Row-block tiles, threads, a progress bar and out-of-core output (a
preallocated array or an h5py dataset written block by block), on the CPU or,
with ``device="cuda"``, on the GPU (the kernel's ``_cuda_backend``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._base import Kernel, is_device_array
from kernelcomp._parallel import NO_TICKER, n_jobs_context, ticking
from kernelcomp._parallel import progress as progress_bar
from kernelcomp._validation import check_int

#: default size of one row block, in bytes of output (when blocks are used)
_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class GramBlock:
    """One row block of a Gram matrix, ready to be written.

    Attributes
    ----------
    index : int
        Block number (0-based).
    start, stop : int
        Rows ``start:stop`` of the output.
    writes : list of (tuple of slice, ndarray)
        ``out[key] = value`` assignments that store the block (in the symmetric
        case, the block's upper part and its mirror image).
    """

    index: int
    start: int
    stop: int
    writes: list[tuple[tuple[slice, slice], np.ndarray]]


def _check_kernel(kernel: Any) -> None:
    if not isinstance(kernel, Kernel):
        raise TypeError(
            "kernel must be a kernelcomp kernel (e.g. kc.NTK(), kc.NNGP(), "
            f"kc.EmpiricalNTK(net)), got {type(kernel).__name__}"
        )


def _prepare_inputs(
    kernel: Kernel, X: Any, Y: Any, dtype: Any
) -> tuple[np.ndarray, np.ndarray | None, np.dtype]:
    _check_kernel(kernel)
    return kernel._gram_inputs(X, Y, dtype)


def default_block_rows(n_rows: int, n_cols: int, itemsize: int) -> int:
    """Rows per block so that one block holds about 64 MiB of output."""
    rows = max(1, _BLOCK_BYTES // max(1, n_cols * itemsize))
    return int(min(n_rows, rows))


def n_blocks(n_rows: int, block_rows: int) -> int:
    """Number of row blocks of ``block_rows`` rows covering ``n_rows`` rows."""
    return -(-n_rows // block_rows)


def iter_gram_blocks(
    kernel: Kernel,
    X: Any,
    Y: Any = None,
    *,
    dtype: Any = None,
    block_rows: int | None = None,
    skip: Any = (),
    device: str = "cpu",
    ticker: Any = NO_TICKER,
) -> Iterator[GramBlock]:
    """Compute a Gram matrix one row block at a time.

    The caller owns threads (wrap the loop in ``n_jobs_context``) and storage.
    Used by :func:`gram` and by resumable writers (the command line).

    Parameters
    ----------
    kernel : Kernel
    X, Y : array-like
        As in :func:`gram`.
    dtype : {None, "float32", "float64"}
    block_rows : int, optional
        Rows per block; default about 64 MiB of output per block.
    skip : container of int
        Block indices not to compute (already stored).
    device : {"cpu", "cuda"}, default "cpu"
        As in :func:`gram` (blocks are host arrays either way).
    ticker : object, optional
        A :func:`kernelcomp._parallel.ticking` ticker: each block moves its bar
        by the block's rows while it is computed.

    Yields
    ------
    GramBlock
    """
    _check_kernel(kernel)
    kernel = kernel._for_device(device)
    X, Yc, dt = _prepare_inputs(kernel, X, Y, dtype)
    yield from _iter_prepared(kernel, X, Yc, dt, block_rows, skip, ticker)


def _iter_prepared(
    kernel: Kernel,
    X: np.ndarray,
    Y: np.ndarray | None,
    dt: np.dtype,
    block_rows: int | None,
    skip: Any,
    ticker: Any = NO_TICKER,
) -> Iterator[GramBlock]:
    """The blocks of :func:`iter_gram_blocks` from prepared inputs.

    ``ticker`` (:func:`kernelcomp._parallel.ticking`) advances a bar by a
    block's rows while the block is computed, split between its two passes in
    the symmetric case in proportion to their entries.
    """
    n = X.shape[0]
    symmetric = Y is None
    m = n if symmetric else Y.shape[0]
    if block_rows is None:
        block_rows = default_block_rows(n, m, dt.itemsize)
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    ticker.note("per-sample pass")
    px = kernel._prepare(X)
    py = px if symmetric else kernel._prepare(Y)
    ticker.note("")
    for b in range(n_blocks(n, block_rows)):
        if b in skip:
            continue
        i0, i1 = b * block_rows, min(n, (b + 1) * block_rows)
        pb = kernel._take(px, i0, i1)
        r = i1 - i0
        if symmetric:
            # rows' shares of the two passes, by the entries each computes
            diag_share = r * (r + 1) / (r * (r + 1) + 2 * r * (n - i1))
            diag_block = np.empty((r, r), dtype=dt)
            with ticker.span(r * diag_share):
                kernel._fill(pb, pb, diag_block, True)
            writes = [((slice(i0, i1), slice(i0, i1)), diag_block)]
            if i1 < n:
                off = np.empty((r, n - i1), dtype=dt)
                with ticker.span(r * (1.0 - diag_share)):
                    kernel._fill(pb, kernel._take(px, i1, n), off, False)
                writes.append(((slice(i0, i1), slice(i1, n)), off))
                writes.append(((slice(i1, n), slice(i0, i1)), off.T))
        else:
            block = np.empty((r, m), dtype=dt)
            with ticker.span(r):
                kernel._fill(pb, py, block, False)
            writes = [((slice(i0, i1), slice(0, m)), block)]
        yield GramBlock(b, i0, i1, writes)


def _check_out(out: Any, shape: tuple[int, int]) -> None:
    """Refuse an ``out`` that cannot hold the Gram matrix (wrong kind, shape or dtype).

    Any real floating dtype is accepted: the values, computed in the result
    dtype, are cast to it when stored (numpy's ``casting="same_kind"`` rule of
    ufunc outputs). Integer, bool, complex and other dtypes are refused.
    """
    if isinstance(out, np.ndarray):
        if out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, but the Gram matrix is {shape}")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
    elif not (hasattr(out, "shape") and hasattr(out, "__setitem__") and hasattr(out, "dtype")):
        raise TypeError(
            "out must be a numpy array or an h5py dataset (anything with shape, dtype and "
            f"slice assignment), got {type(out).__name__}"
        )
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, but the Gram matrix is {shape}")
    dtype = np.dtype(out.dtype)
    if dtype.kind != "f":
        raise TypeError(f"out must be a floating array, got dtype {dtype}")


def _check_not_aliased(out: Any, X: np.ndarray, Y: np.ndarray | None) -> None:
    """Refuse an ``out`` sharing memory with the inputs it is computed from.

    The Gram matrix is written while its inputs are read: ``out=X`` would
    overwrite samples before their last use and give a wrong matrix.

    Raises
    ------
    ValueError
        If ``out`` may share memory with ``X`` or ``Y``.
    """
    if not isinstance(out, np.ndarray):
        return
    for name, arr in (("X", X), ("Y", Y)):
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(
                f"out shares memory with {name}: the Gram matrix would overwrite the inputs "
                "it is computed from; pass a separate array (or out=None)"
            )


def gram(
    kernel: Kernel,
    X: Any,
    Y: Any = None,
    dtype: Any = None,
    n_jobs: int | None = None,
    progress: bool = False,
    out: Any = None,
    block_rows: int | None = None,
    device: str = "cpu",
) -> Any:
    """Gram matrix of a kernelcomp kernel, tiled, threaded and out-of-core if asked.

    Parameters
    ----------
    kernel : Kernel
        ``kc.NTK``, ``kc.NNGP``, ``kc.EmpiricalNTK``...
    X : array-like of shape (n, d)
        With ``device="cuda"``, also a GPU array: a numba device array or any
        ``__cuda_array_interface__`` object (cupy, torch...).
    Y : array-like of shape (m, d), optional
        Defaults to ``X``: the symmetric Gram (upper triangle computed once,
        mirrored, exactly symmetric).
    dtype : {None, "float32", "float64"}
        None gives float32 when every input is float32, else float64.
    n_jobs : int, optional
        Threads (None or -1: all; restored afterwards).
    progress : bool
        Show a tqdm progress bar (:func:`tqdm.auto.tqdm`: a widget in notebooks)
        in rows. It moves while a row block is computed: the compiled passes
        of the analytic and convolutional kernels count the tiles they finish
        and a thread polls the count four times a second (other kernels move
        it once per block).
    out : numpy.ndarray or h5py.Dataset, optional
        Where to write the (n, m) result, block by block; a dataset larger
        than memory is fine. Its dtype must be floating (an integer or bool
        ``out`` is refused with a TypeError). The matrix is computed in the
        result dtype (see ``dtype``) and cast to ``out``'s dtype when stored,
        as numpy ufuncs do with ``out=`` (``casting="same_kind"``): a float32
        ``out`` of a float64 Gram holds the float64 values rounded to float32.
        To compute in float32, pass ``dtype="float32"``.
        With ``device="cuda"``, ``out`` may also be a GPU array (float32 or
        float64, C-contiguous or not): the matrix is written there in one
        launch and stays on the device.
    block_rows : int, optional
        Rows per block when writing by blocks (default about 64 MiB of output);
        host outputs only (a device ``out`` is written in one launch).
    device : {"cpu", "cuda"}, default "cpu"
        ``"cuda"``: the O(n m) work runs on the GPU (``NTK``/``NNGP``,
        ``ConvNTK``/``ConvNNGP``; needs
        numba-cuda and a CUDA device); the per-sample pass stays on the CPU.
        Host outputs are computed in device buffers and copied back: one
        buffer for the whole matrix when it takes at most a quarter of the free
        device memory, else row chunks; where the CPU path writes by blocks
        (``block_rows``, ``progress``, an h5py dataset, an ``out`` of another
        dtype or layout), the same row blocks, each computed on the GPU, copied
        back and written in turn (synchronously: a block's computation does not
        overlap the previous block's copy and write).

    Returns
    -------
    numpy.ndarray or the object passed as ``out``

    Raises
    ------
    TypeError, ValueError
        For invalid kernels, inputs or outputs (before any compiled code runs).
    NotImplementedError
        For ``device="cuda"`` with a kernel that has no GPU implementation.
    kernelcomp._kernels._config.CudaUnavailableError
        A RuntimeError, for ``device="cuda"`` without numba-cuda or a CUDA device.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((100, 5))
    >>> K = kc.gram(kc.NTK(depth=2), X)
    >>> K.shape, bool((K == K.T).all())
    ((100, 100), True)
    """
    _check_kernel(kernel)
    label = f"{type(kernel).__name__} Gram"
    kernel = kernel._for_device(device)
    X, Yc, dt = _prepare_inputs(kernel, X, Y, dtype)
    n = X.shape[0]
    m = n if Yc is None else Yc.shape[0]
    dev_out = None
    if out is not None:
        if device == "cuda":
            dev_out = kernel._device_out(out, (n, m))
        if dev_out is None:
            if is_device_array(out):
                raise TypeError(
                    f"out is a GPU array ({type(out).__name__}): pass device='cuda' to "
                    "compute on the GPU, or give a host array"
                )
            _check_out(out, (n, m))
            _check_not_aliased(out, X, Yc)
    if block_rows is not None:
        block_rows = check_int(block_rows, "block_rows", minimum=1)
    if dev_out is not None:
        return _gram_device_out(kernel, X, Yc, out, dev_out, n_jobs, progress, label)
    one_shot = (
        not progress
        and block_rows is None
        and (
            out is None
            or (isinstance(out, np.ndarray) and out.dtype == dt and out.flags.c_contiguous)
        )
    )
    with n_jobs_context(n_jobs):
        if one_shot:
            result = np.empty((n, m), dtype=dt) if out is None else out
            kernel._fill_gram(X, Yc, result)
            return result
        result = np.empty((n, m), dtype=dt) if out is None else out
        if block_rows is None:
            block_rows = default_block_rows(n, m, dt.itemsize)
        with (
            progress_bar(progress, total=n, unit="row", desc=label) as bar,
            ticking(bar) as ticker,
        ):
            for block in _iter_prepared(kernel, X, Yc, dt, block_rows, (), ticker):
                for key, value in block.writes:
                    result[key] = value
        return result


def _gram_device_out(
    kernel: Kernel,
    X: np.ndarray,
    Y: np.ndarray | None,
    out: Any,
    dev_out: Any,
    n_jobs: int | None,
    progress: bool,
    label: str,
) -> Any:
    """The whole Gram in one launch into the device array ``dev_out`` (a view of ``out``)."""
    with progress_bar(progress, total=X.shape[0], unit="row", desc=label) as bar:
        with n_jobs_context(n_jobs):
            kernel._fill_gram(X, Y, dev_out)
        kernel._synchronize()  # visible to other streams (cupy, torch) on return
        bar.update(X.shape[0])
    return out
