"""Gram files: a Gram matrix in HDF5, written whole or row block by row block, resumably.

Layout (format ``"gram"``, version 1)::

    /gram               (n, m) float32/float64, chunked in square tiles
    /completed_blocks   (n_blocks,) uint8, 1 where row block b is stored
    attrs: kernel (JSON), kernel_fingerprint, input_hash ("sha256:..."), dtype,
           shape, symmetric, block_rows, n_blocks, complete, inputs (JSON)

:func:`compute_gram_file` is a short sequence of named steps: validate the
request (:func:`_request`), check a final file or a partial file it may
resume (:func:`_check_resumable`), create the partial file
(:func:`_create_partial`), fill the missing row blocks (:func:`_fill_blocks`)
and rename it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kernelcomp._base import Kernel
from kernelcomp._gram import _prepare_inputs, default_block_rows, iter_gram_blocks, n_blocks
from kernelcomp._h5 import (
    FormatError,
    _as_str,
    _atomic_h5,
    _check_header,
    _dumps,
    _loads,
    _open_checked,
    _open_h5,
    _output_path,
    _partial_path,
    _path_arg,
    _publish,
    _refuse_partial,
    check_free_space,
    check_stored,
    reserve,
    stamp,
    write_lock,
)
from kernelcomp._parallel import n_jobs_context, ticking
from kernelcomp._parallel import progress as show_progress
from kernelcomp._validation import check_int, check_matrix

#: edge of the square HDF5 chunks ("tiles") of a Gram dataset
CHUNK = 256


class GramInterrupted(Exception):
    """A Gram computation stopped at a block boundary before the end.

    Attributes
    ----------
    partial : pathlib.Path
        The partial file that keeps the completed blocks.
    done, total : int
        Completed and total row blocks.
    """

    def __init__(self, partial: Path, done: int, total: int) -> None:
        self.partial = Path(partial)
        self.done = int(done)
        self.total = int(total)
        super().__init__(
            f"interrupted after {done}/{total} row blocks; the completed blocks are kept in "
            f"{self.partial} (continue with resume=True / --resume)"
        )


def hash_inputs(X: np.ndarray, Y: np.ndarray | None = None) -> str:
    """SHA-256 of the (validated) inputs of a Gram matrix: shapes, dtypes, bytes.

    Parameters
    ----------
    X : numpy.ndarray
    Y : numpy.ndarray, optional

    Returns
    -------
    str
        ``"sha256:<hex>"``.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> kc.io.hash_inputs(np.zeros((2, 2))) == kc.io.hash_inputs(np.zeros((2, 2)))
    True
    """
    h = hashlib.sha256()
    for arr in (X, Y):
        if arr is None:
            h.update(b"none;")
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return "sha256:" + h.hexdigest()


def _kernel_desc(kernel: Kernel) -> tuple[dict[str, Any], str]:
    """JSON description and fingerprint of a kernel."""
    try:
        desc = kernel.to_dict()
        fingerprint = hashlib.sha256(_dumps(desc, "kernel").encode()).hexdigest()
    except NotImplementedError:
        desc = {"kernel": type(kernel).__name__, "params": None, "repr": repr(kernel)[:2000]}
        try:
            fingerprint = hashlib.sha256(pickle.dumps(kernel, protocol=4)).hexdigest()
        except Exception:  # unpicklable: no check beyond the class name
            fingerprint = hashlib.sha256(type(kernel).__name__.encode()).hexdigest()
    return desc, "sha256:" + fingerprint


@dataclass(frozen=True)
class GramInfo:
    """What a Gram file holds (without its matrix).

    Attributes
    ----------
    path : pathlib.Path
    shape : tuple of int
    dtype : numpy.dtype
    symmetric : bool
    kernel_desc : dict
        The kernel's JSON description (``kernel.to_dict()``).
    input_hash : str or None
    block_rows, n_blocks, blocks_done : int
    complete : bool
    inputs : dict
        Where the inputs came from (free-form, e.g. file names).
    attrs : dict
        The root attributes.
    """

    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    symmetric: bool
    kernel_desc: dict[str, Any]
    input_hash: str | None
    block_rows: int
    n_blocks: int
    blocks_done: int
    complete: bool
    inputs: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def kernel(self) -> Kernel | None:
        """The analytic kernel rebuilt from its description.

        None for a matrix saved without a kernel or made by a kernel that its
        description cannot rebuild (an empirical NTK needs its network).
        """
        from kernelcomp.convolutional import _ConvKernel
        from kernelcomp.kernels import _AnalyticKernel

        name = self.kernel_desc.get("kernel")
        if name in ("ConvNTK", "ConvNNGP"):
            return _ConvKernel.from_dict(self.kernel_desc)
        if name not in ("NTK", "NNGP"):
            return None
        return _AnalyticKernel.from_dict(self.kernel_desc)


def _gram_info(f: h5py.File, p: Path) -> GramInfo:
    """The description of an open Gram file, its layout checked (FormatError if damaged)."""
    try:
        return _gram_info_unchecked(f, p)
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise FormatError(
            f"{p} is a damaged 'gram' file (its attributes cannot be read: {exc})"
        ) from None


def _gram_info_unchecked(f: h5py.File, p: Path) -> GramInfo:
    if "gram" not in f or not isinstance(f["gram"], h5py.Dataset):
        raise FormatError(f"{p} is a 'gram' file without a 'gram' dataset")
    ds = f["gram"]
    if ds.ndim != 2 or ds.dtype not in (np.float32, np.float64):
        raise FormatError(
            f"{p}: its 'gram' dataset has shape {ds.shape} and dtype {ds.dtype}; a Gram matrix "
            "is a 2-D float32 or float64 array (a damaged or foreign file)"
        )
    n = int(ds.shape[0])
    block_rows = int(f.attrs.get("block_rows", n))
    if "completed_blocks" in f:
        rec = f["completed_blocks"]
        if not isinstance(rec, h5py.Dataset) or rec.ndim != 1 or rec.dtype.kind not in "biu":
            raise FormatError(f"{p}: its 'completed_blocks' record is not a 1-D integer array")
        expected = n_blocks(n, block_rows) if block_rows >= 1 else -1
        if rec.shape[0] != expected:
            raise FormatError(
                f"{p}: its 'completed_blocks' record has {rec.shape[0]} entries, but "
                f"{n} rows in blocks of {block_rows} make {expected} (a damaged file)"
            )
        check_stored(rec, p, "its 'completed_blocks' record")
        done = rec[()]
    else:
        done = np.ones(1, np.uint8)
    kernel_desc = _loads(f.attrs.get("kernel")) or {}
    inputs = _loads(f.attrs.get("inputs")) or {}
    if not isinstance(kernel_desc, dict) or not isinstance(inputs, dict):
        raise FormatError(f"{p}: its 'kernel' and 'inputs' attributes must be JSON objects")
    attrs = {k: _as_str(v) for k, v in f.attrs.items()}
    return GramInfo(
        path=p,
        shape=(n, int(ds.shape[1])),
        dtype=ds.dtype,
        symmetric=bool(f.attrs.get("symmetric", False)),
        kernel_desc=kernel_desc,
        input_hash=_as_str(f.attrs.get("input_hash")) or None,
        block_rows=block_rows,
        n_blocks=int(done.size),
        blocks_done=int(np.count_nonzero(done)),
        complete=bool(f.attrs.get("complete", True)),
        inputs=inputs,
        attrs=attrs,
    )


def _gram_summary(f: h5py.File, p: Path) -> dict[str, Any]:
    """The Gram-file fields of :func:`kernelcomp.io.file_info` (JSON serialisable)."""
    g = _gram_info(f, p)
    return {
        "shape": list(g.shape),
        "dtype": g.dtype.name,
        "symmetric": g.symmetric,
        "kernel": g.kernel_desc,
        "input_hash": g.input_hash,
        "blocks": f"{g.blocks_done}/{g.n_blocks}",
        "complete": g.complete,
        "inputs": g.inputs,
    }


def read_gram_info(path: Any) -> GramInfo:
    """Read a Gram file's description without loading its matrix.

    Parameters
    ----------
    path : str or os.PathLike
        A Gram file (final or ``.partial``).

    Returns
    -------
    GramInfo

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If it is not a kernelcomp Gram file of a supported version.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "K.h5")
    >>> _ = kc.io.save_gram(path, np.eye(3), kernel=kc.NTK())
    >>> info = kc.io.read_gram_info(path)
    >>> info.shape, info.complete, info.kernel == kc.NTK()
    ((3, 3), True, True)
    """
    with _open_checked(path, "gram") as f:
        return _gram_info(f, Path(path))


def load_gram(path: Any) -> np.ndarray:
    """Load the matrix of a complete Gram file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    numpy.ndarray of shape (n, m)

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If it is not a kernelcomp Gram file of a supported version, or is
        incomplete (an interrupted computation: resume it first).

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "K.h5")
    >>> _ = kc.io.save_gram(path, np.eye(3))
    >>> kc.io.load_gram(path).shape
    (3, 3)
    """
    with _open_checked(path, "gram") as f:
        info = _gram_info(f, Path(path))
        if not info.complete:
            raise FormatError(
                f"{path} is an incomplete Gram file ({info.blocks_done}/{info.n_blocks} row "
                "blocks); continue it with compute_gram_file(..., resume=True) / "
                "kernelcomp gram --resume"
            )
        check_stored(f["gram"], Path(path), "its 'gram' dataset")
        return f["gram"][()]


def _tile_layout(n: int, m: int, block_rows: int) -> tuple[int, tuple[int, int]]:
    """Rows per block and chunk shape so that every write covers whole chunks."""
    t = min(CHUNK, block_rows)
    block_rows = max(t, (block_rows // t) * t)
    return block_rows, (min(t, n), min(t, m))


def save_gram(
    path: Any,
    K: Any,
    *,
    kernel: Kernel | None = None,
    X: Any = None,
    Y: Any = None,
    inputs: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write a Gram matrix to a new Gram file (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    K : array-like of shape (n, m)
        The matrix (float32 or float64).
    kernel : Kernel, optional
        The kernel that made it; its :meth:`to_dict` description is stored.
    X, Y : array-like, optional
        The inputs, to store their hash (for comparison at resume / reuse).
    inputs : mapping, optional
        Free-form JSON description of the inputs (e.g. file names).
    force : bool
        Overwrite an existing file.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``force`` is False.
    TypeError, ValueError
        For a non-numeric, non-2-D or non-finite ``K``.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((10, 3))
    >>> k = kc.NTK(depth=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "K.h5")
    >>> _ = kc.io.save_gram(path, k(X), kernel=k, X=X)
    >>> bool(np.array_equal(kc.io.load_gram(path), k(X)))
    True
    """
    K = check_matrix(K, "K")
    if kernel is not None and not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a kernelcomp kernel or None, got {type(kernel).__name__}")
    desc, fingerprint = _kernel_desc(kernel) if kernel is not None else ({}, "")
    hashed = None
    if X is not None:
        Xc = check_matrix(X, "X")
        Yc = None if Y is None else check_matrix(Y, "Y", n_features=Xc.shape[1])
        expected = (Xc.shape[0], Xc.shape[0] if Yc is None else Yc.shape[0])
        if K.shape != expected:
            raise ValueError(f"K has shape {K.shape}, but X and Y give a {expected} Gram matrix")
        hashed = hash_inputs(Xc.astype(K.dtype, copy=False), None if Yc is None else Yc.astype(
            K.dtype, copy=False))
    n, m = K.shape
    _, chunks = _tile_layout(n, m, n)
    with _atomic_h5(path, "gram", force=force) as f:
        f.create_dataset("gram", data=K, chunks=chunks)
        f.create_dataset("completed_blocks", data=np.ones(1, dtype=np.uint8))
        _write_gram_attrs(
            f,
            desc=desc,
            fingerprint=fingerprint,
            input_hash=hashed,
            dtype=K.dtype,
            shape=(n, m),
            symmetric=bool(Y is None and n == m and np.array_equal(K, K.T)),
            block_rows=n,
            complete=True,
            inputs=inputs,
        )
    return Path(path)


def _write_gram_attrs(
    f: h5py.File,
    *,
    desc: Mapping[str, Any],
    fingerprint: str,
    input_hash: str | None,
    dtype: np.dtype,
    shape: tuple[int, int],
    symmetric: bool,
    block_rows: int,
    complete: bool,
    inputs: Mapping[str, Any] | None,
) -> None:
    """The root attributes of a Gram file (one home for :func:`save_gram` and partial files)."""
    f.attrs["kernel"] = _dumps(dict(desc), "kernel")
    f.attrs["kernel_fingerprint"] = fingerprint
    if input_hash is not None:
        f.attrs["input_hash"] = input_hash
    f.attrs["dtype"] = np.dtype(dtype).name
    f.attrs["shape"] = np.array(shape, dtype=np.int64)
    f.attrs["symmetric"] = bool(symmetric)
    f.attrs["block_rows"] = int(block_rows)
    f.attrs["n_blocks"] = n_blocks(shape[0], block_rows)
    f.attrs["complete"] = bool(complete)
    f.attrs["inputs"] = _dumps(dict(inputs or {}), "inputs")


def compute_gram_file(
    kernel: Kernel,
    X: Any,
    Y: Any,
    path: Any,
    *,
    dtype: Any = None,
    n_jobs: int | None = None,
    progress: bool = False,
    resume: bool = False,
    force: bool = False,
    block_rows: int | None = None,
    inputs: Mapping[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GramInfo:
    """Compute a Gram matrix into an HDF5 file, block by block, resumably.

    The matrix is written row block by row block into ``PATH.partial``
    (chunked in square tiles aligned with the blocks, so memory stays at a
    few blocks whatever the matrix size); after each block the completion
    record is updated and the file flushed. When every block is stored the
    partial file is renamed to ``path``. An interrupted run (an exception,
    Ctrl-C, or ``should_stop()`` returning True) keeps the partial file, and
    ``resume=True`` continues it; the result is identical to an
    uninterrupted run.

    Parameters
    ----------
    kernel : Kernel
        e.g. ``kc.NTK(depth=3)``.
    X : array-like of shape (n, d)
    Y : array-like of shape (m, d) or None
        None: the symmetric Gram of ``X``.
    path : str or os.PathLike
        Final output file.
    dtype : {None, "float32", "float64"}
        As in :func:`kernelcomp.gram`.
    n_jobs : int, optional
        Threads (None: all).
    progress : bool
        Show a tqdm progress bar.
    resume : bool
        Continue ``PATH.partial`` if it exists (refused if it was made with
        other inputs, another kernel, dtype or shape); if ``path`` already
        holds the same complete result, return at once.
    force : bool
        Overwrite an existing ``path`` (replaced only when the new file is
        complete) and discard a stale partial file when not resuming.
    block_rows : int, optional
        Rows per block (default about 64 MiB of output), rounded down to a
        multiple of the tile edge (256) when larger. A resumed file keeps its
        own.
    inputs : mapping, optional
        Free-form JSON description of the inputs (stored, shown by ``info``).
    should_stop : callable, optional
        Polled after each block; when it returns True the computation stops
        there and :class:`GramInterrupted` is raised.

    Returns
    -------
    GramInfo
        Description of the complete file.

    Raises
    ------
    FileExistsError
        If ``path`` exists (without ``force``), or a partial file exists and
        neither ``resume`` nor ``force`` is given.
    FormatError
        If the partial file cannot be resumed with these inputs.
    GramInterrupted
        If ``should_stop`` asked to stop.
    TypeError, ValueError
        For invalid kernels or inputs (before anything is written).

    References
    ----------
    Paccolat et al. (2021), §3 (kernels on the training set).

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((300, 4))
    >>> path = os.path.join(tempfile.mkdtemp(), "K.h5")
    >>> info = kc.io.compute_gram_file(kc.NTK(depth=2), X, None, path, block_rows=100)
    >>> info.complete, info.n_blocks
    (True, 3)
    >>> bool(np.array_equal(kc.io.load_gram(path), kc.NTK(depth=2)(X)))
    True
    """
    _path_arg(path)  # a wrong type is refused before the inputs are validated
    req = _request(kernel, X, Y, dtype, block_rows)
    _dumps(dict(inputs or {}), "inputs")  # refused now, not after the partial file is made
    final = _output_path(path, force=force or resume)
    partial = _partial_path(final)
    with write_lock(final):  # one writer of final and partial, from the checks to the rename
        if resume and not force and final.exists():  # the same complete result: nothing to do
            return _check_final(_read_existing(final, "file"), req)
        created = not (resume and partial.exists())
        if created:
            _refuse_partial(
                partial,
                force,
                "(an interrupted computation): pass resume=True (--resume) to continue it or "
                "force=True (--force) to start again",
            )
            n, m = req.shape
            check_free_space(
                final.parent, n * m * req.dtype.itemsize + _SLACK, f"a {n} x {m} Gram file"
            )
            _create_partial(partial, req, inputs)
        try:
            with _open_partial(partial, req) as (f, info):  # one handle, from here to the end
                reserve(partial, f.id.get_filesize() + _SLACK, start=0,
                        what=f"the Gram file {final}")
                _fill_blocks(f, req, info.block_rows, n_jobs=n_jobs, progress=progress,
                             should_stop=should_stop)
        except NonFiniteGramError:
            partial.unlink(missing_ok=True)  # it can never become a valid result
            raise
        except (ValueError, TypeError):
            if created:  # the kernel refused these inputs (e.g. it overflows): no empty file
                partial.unlink(missing_ok=True)
            raise
        except OSError as exc:
            if created and getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                partial.unlink(missing_ok=True)  # nothing computed yet: leave no empty file
            raise
        _publish(partial, final)
    return read_gram_info(final)


#: bytes reserved beyond a Gram file's data (HDF5 metadata, the completion record)
_SLACK = 1 << 20


class NonFiniteGramError(ValueError):
    """A kernel produced NaN or infinite Gram entries (refused rather than stored)."""


def _read_existing(path: Path, what: str) -> GramInfo:
    """The description of an existing final or partial Gram file, or an error naming --force.

    Raises
    ------
    FormatError
        If it cannot be read as a Gram file (damaged, foreign, truncated).
    BlockingIOError
        If another process holds it open for writing.
    """
    try:
        return read_gram_info(path)
    except BlockingIOError:
        raise
    except (OSError, ValueError) as exc:
        raise FormatError(
            f"{path} cannot be read as a Gram {what} ({' '.join(str(exc).split())}); pass "
            "force=True (--force) to discard it and compute the Gram matrix again"
        ) from None


@contextlib.contextmanager
def _open_partial(partial: Path, req: _GramRequest) -> Any:
    """The partial file opened for writing once, rechecked against ``req`` through that handle.

    Yields the open file and its :class:`GramInfo`.

    Raises
    ------
    FormatError
        If it is not a readable Gram file of this request, naming --force.
    BlockingIOError
        If another process holds it open for writing.
    """
    hint = "; pass force=True (--force) to discard it and start again"
    try:
        with _open_h5(partial):  # the read checks: HDF5, lock, self-contained
            pass
        f = h5py.File(partial, "r+")
    except BlockingIOError:
        raise
    except (OSError, ValueError) as exc:
        raise FormatError(f"{partial}: cannot continue it ({' '.join(str(exc).split())})"
                          f"{hint}") from None
    with f:
        try:
            _check_header(f, partial, "gram")
            info = _gram_info(f, partial)
        except FormatError as exc:
            raise FormatError(f"{exc}{hint}") from None
        yield f, _check_resumable(info, req)


def _check_final(info: GramInfo, req: _GramRequest) -> GramInfo:
    """An existing final file that ``resume`` would return: complete and of this request."""
    if not info.complete or info.blocks_done != info.n_blocks:
        raise FormatError(
            f"{info.path} is an incomplete Gram file ({info.blocks_done}/{info.n_blocks} row "
            "blocks) under the final name, so it cannot be resumed; pass force=True (--force) "
            "to compute it again"
        )
    return _check_resumable(info, req)


@dataclass(frozen=True)
class _GramRequest:
    """A validated :func:`compute_gram_file` request and the identity its file records."""

    kernel: Kernel
    X: np.ndarray
    Y: np.ndarray | None
    dtype: np.dtype
    block_rows: int
    desc: dict[str, Any]
    fingerprint: str
    input_hash: str

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the Gram matrix."""
        n = self.X.shape[0]
        return n, n if self.Y is None else self.Y.shape[0]


def _request(kernel: Kernel, X: Any, Y: Any, dtype: Any, block_rows: int | None) -> _GramRequest:
    """Step 1: validate the kernel, inputs and block size (before anything is written)."""
    Xc, Yc, dt = _prepare_inputs(kernel, X, Y, dtype)
    n = Xc.shape[0]
    m = n if Yc is None else Yc.shape[0]
    if block_rows is None:
        block_rows = default_block_rows(n, m, dt.itemsize)
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    desc, fingerprint = _kernel_desc(kernel)
    return _GramRequest(
        kernel, Xc, Yc, dt, block_rows, desc, fingerprint, hash_inputs(Xc, Yc)
    )


def _check_resumable(info: GramInfo, req: _GramRequest) -> GramInfo:
    """Step 2: a final or partial Gram file was made by this request; return its description.

    Raises
    ------
    FormatError
        If the file has another shape or dtype, or was made with another
        kernel or other inputs.
    """
    problems = []
    if info.shape != req.shape:
        problems.append(f"shape {info.shape} != {req.shape}")
    if info.dtype != req.dtype:
        problems.append(f"dtype {info.dtype} != {req.dtype}")
    if info.attrs.get("kernel_fingerprint") != req.fingerprint:
        problems.append(f"another kernel ({json.dumps(info.kernel_desc)})")
    if info.input_hash != req.input_hash:
        problems.append("other inputs (input hash differs)")
    if problems:
        raise FormatError(
            f"{info.path} cannot be resumed with these arguments: it was made with "
            + "; ".join(problems)
            + " (use force=True / --force to start again)"
        )
    return info


def _create_partial(partial: Path, req: _GramRequest, inputs: Mapping[str, Any] | None) -> int:
    """Step 3: a new, empty partial file for the request; return its rows per block.

    Every chunk is allocated now (a sparse file, nothing filled): block writes
    then touch raw data only, never the file's metadata, so even a killed
    process leaves a readable file whose record lists the blocks that are
    stored.
    """
    n, m = req.shape
    block_rows, chunks = _tile_layout(n, m, req.block_rows)
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    with h5py.File(partial, "w") as f:
        stamp(f, "gram")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        f.create_dataset(
            "gram", shape=(n, m), dtype=req.dtype, chunks=chunks, dcpl=dcpl, fill_time="never"
        )
        f.create_dataset("completed_blocks", data=np.zeros(n_blocks(n, block_rows), np.uint8))
        _write_gram_attrs(
            f,
            desc=req.desc,
            fingerprint=req.fingerprint,
            input_hash=req.input_hash,
            dtype=req.dtype,
            shape=(n, m),
            symmetric=req.Y is None,
            block_rows=block_rows,
            complete=False,
            inputs=inputs,
        )
    return block_rows


def _fill_blocks(
    f: h5py.File,
    req: _GramRequest,
    block_rows: int,
    *,
    n_jobs: int | None,
    progress: bool,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Step 4: compute and store the row blocks the record lacks, then mark the file complete.

    After each block its data is flushed before its record, so the record
    never lists a block that is not stored.

    Raises
    ------
    GramInterrupted
        If ``should_stop()`` returns True after a block, before the last one.
    """
    partial = Path(f.filename)
    n = req.shape[0]
    total = n_blocks(n, block_rows)
    record = f["completed_blocks"]
    ds = f["gram"]
    try:
        done = {int(i) for i in np.flatnonzero(record[()])}
        rows_done = sum(min(n, (b + 1) * block_rows) - b * block_rows for b in done)
        bar_args = {"total": n, "initial": rows_done, "unit": "row"}
        with (
            show_progress(progress, desc=f"{req.desc['kernel']} Gram", **bar_args) as bar,
            ticking(bar) as ticker,
            n_jobs_context(n_jobs),
        ):
            blocks = iter_gram_blocks(
                req.kernel, req.X, req.Y, dtype=req.dtype, block_rows=block_rows, skip=done,
                ticker=ticker,
            )
            for block in blocks:
                _check_finite_block(block, req)
                for key, value in block.writes:
                    ds[key] = value
                f.flush()  # the block's data reaches the file before its record
                record[block.index] = 1
                f.flush()
                done.add(block.index)
                if should_stop is not None and len(done) < total and should_stop():
                    raise GramInterrupted(partial, len(done), total)
        f.attrs["complete"] = True
        f.flush()
    finally:
        del ds, record  # the datasets close before their file (h5py closes in that order)


def _check_finite_block(block: Any, req: _GramRequest) -> None:
    """Refuse a block with NaN or infinite entries before it is stored.

    Raises
    ------
    NonFiniteGramError
        Naming the rows and the kernel.
    """
    checked: list[np.ndarray] = []
    for _, value in block.writes:
        if any(value.base is c and value.size == c.size for c in checked):
            continue  # a whole view (the mirrored transpose) of a block already checked
        checked.append(value)
        if not np.isfinite(value).all():
            raise NonFiniteGramError(
                f"the Gram matrix has NaN or infinite entries in rows {block.start}.."
                f"{block.stop - 1}: {req.desc.get('kernel', 'the kernel')} produces non-finite "
                "values on these inputs (a network whose outputs are NaN or infinite, or a "
                "kernel that overflows); no Gram file is written"
            )
