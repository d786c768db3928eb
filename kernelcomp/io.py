"""Self-describing HDF5 files: Gram matrices, training runs and diagnostics.

Every file kernelcomp writes is a plain HDF5 file (readable with ``h5py``
alone) whose root carries four attributes:

``kernelcomp_format``
    ``"gram"``, ``"run"`` or ``"diagnostics"``.
``kernelcomp_format_version``
    ``"MAJOR.MINOR"``; readers accept the same major version only.
``kernelcomp_version``
    The kernelcomp release that wrote the file.
``created``
    ISO 8601 UTC time stamp.

Layouts (version 1)
-------------------
Gram file (``"gram"``)::

    /gram               (n, m) float32/float64, chunked in square tiles
    /completed_blocks   (n_blocks,) uint8, 1 where row block b is stored
    attrs: kernel (JSON), input_hash ("sha256:..."), dtype, shape, symmetric,
           block_rows, n_blocks, complete, inputs (JSON: where X, Y came from)

Run file (``"run"``)::

    /data/X_train, /data/y_train [, /data/X_test, /data/y_test]
    /checkpoints/000000/network     (written by FCNetwork.to_hdf5)
    /checkpoints/000000/margins     (optional; any other array given)
    /checkpoints/000000 attrs: index, step, time, loss, train_error, test_error
    attrs: config (JSON), summary (JSON), complete

Diagnostics file (``"diagnostics"``)::

    /entries/000000/<name>   arrays (eigenvalues, label_projection, ...)
    /entries/000000 attrs:   scalars and strings (label, step, time, ...)
    attrs: config (JSON)

Writes are atomic: a file is written under a temporary name
(``NAME.tmp-XXXX``) and renamed when complete, so a failure never leaves a
half-written file under the final name. The two files that are written over
a long time keep a clearly named partial file instead: a Gram computation
writes ``OUT.h5.partial`` (which :func:`compute_gram_file` with
``resume=True`` continues) and a training run writes ``RUN.h5.partial``
(which keeps every checkpoint written so far if the process dies); each is
renamed to its final name when complete. No object returned by this module
keeps an HDF5 handle open.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), *Geometric compression of
invariant manifolds in neural networks*, J. Stat. Mech. 044001 (§3: the
checkpoints and kernels whose diagnostics these files hold).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
import pickle
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kernelcomp._base import Kernel
from kernelcomp._gram import _prepare_inputs, default_block_rows, iter_gram_blocks, n_blocks
from kernelcomp._h5 import (
    FORMAT_VERSIONS,
    NETWORK_FORMAT,
    FormatError,
    _as_str,
    _atomic_h5,
    _check_header,
    _check_storable,
    _dumps,
    _existing,
    _loads,
    _open_checked,
    _output_path,
    _read_values,
    _write_value,
    atomic_write,
    stamp,
)
from kernelcomp._parallel import n_jobs_context
from kernelcomp._parallel import progress as show_progress
from kernelcomp._validation import check_int, check_matrix

__all__ = [
    "FORMAT_VERSIONS",
    "Checkpoint",
    "Diagnostics",
    "FormatError",
    "GramInfo",
    "GramInterrupted",
    "Run",
    "RunWriter",
    "add_run_diagnostics",
    "compute_gram_file",
    "file_info",
    "hash_inputs",
    "load_diagnostics",
    "load_gram",
    "open_run",
    "read_array",
    "read_gram_info",
    "save_diagnostics",
    "save_gram",
]

#: edge of the square HDF5 chunks ("tiles") of a Gram dataset
TILE = 256
#: suffix of the file a resumable or incremental write works in
PARTIAL_SUFFIX = ".partial"


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


# ---------------------------------------------------------------------------
# arrays from files (command-line inputs)
# ---------------------------------------------------------------------------
def read_array(path: Any, *, key: str | None = None, name: str = "INPUT") -> np.ndarray:
    """Read one array from a ``.npy``, ``.npz``, ``.csv`` or ``.h5`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file. ``.csv`` files may have one header line; ``.h5``/``.hdf5``
        files are read with h5py.
    key : str, optional
        Which array of an ``.npz`` or HDF5 file (a dataset path in HDF5). By
        default the only array of the file, else the one named ``"X"``.
    name : str
        Name used in error messages (e.g. ``"INPUT"``, ``"--labels"``).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an unknown extension, an unreadable file, or when ``key`` is
        missing or ambiguous.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "X.npy")
    >>> np.save(path, np.eye(3))
    >>> kc.io.read_array(path).shape
    (3, 3)
    """
    p = _existing(path, name)
    ext = p.suffix.lower()
    if ext == ".npy":
        if key is not None:
            raise ValueError(f"{name}: a .npy file holds one array; --key {key!r} does not apply")
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{name}: cannot read {p} as .npy ({exc})") from exc
    if ext == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.files)
                chosen = _choose_key(keys, key, p, name, "arrays")
                return z[chosen]
        except (ValueError, OSError) as exc:
            if isinstance(exc, _KeyProblem):
                raise
            raise ValueError(f"{name}: cannot read {p} as .npz ({exc})") from exc
    if ext == ".csv":
        return _read_csv(p, name)
    if ext in (".h5", ".hdf5"):
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise ValueError(f"{name}: {p} is not an HDF5 file ({exc})") from exc
        with f:
            if key is not None:
                item = f.get(key)
                if not isinstance(item, h5py.Dataset):
                    raise _KeyProblem(f"{name}: {p} has no dataset {key!r}")
                return item[()]
            keys: list[str] = []
            f.visititems(lambda k, v: keys.append(k) if isinstance(v, h5py.Dataset) else None)
            return f[_choose_key(keys, None, p, name, "datasets")][()]
    raise ValueError(
        f"{name}: unsupported file type {p.suffix or '(no extension)'!r} for {p}; expected "
        ".npy, .npz, .csv or .h5"
    )


class _KeyProblem(ValueError):
    pass


def _choose_key(keys: list[str], key: str | None, p: Path, name: str, what: str) -> str:
    if key is not None:
        if key not in keys:
            raise _KeyProblem(f"{name}: {p} has no array {key!r}; it holds {keys}")
        return key
    if len(keys) == 1:
        return keys[0]
    if "X" in keys:
        return "X"
    raise _KeyProblem(
        f"{name}: {p} holds {len(keys)} {what} {keys}; choose one with --key"
        if keys
        else f"{name}: {p} holds no {what}"
    )


def _read_csv(p: Path, name: str) -> np.ndarray:
    with open(p, encoding="utf-8") as fh:
        first = fh.readline()
    skip = 0
    try:
        [float(v) for v in first.strip().split(",") if v.strip()]
    except ValueError:
        # a header names columns; numbers with another separator are not one
        try:
            [float(v) for v in re.split(r"[;\t ]+", first.strip()) if v]
        except ValueError:
            skip = 1
    hint = ""
    for sep, word in ((";", "semicolons"), ("\t", "tabs")):
        if sep in first and "," not in first:
            hint = f"; its first line is separated by {word}, CSV files must use commas"
    try:
        return np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{name}: cannot read {p} as numeric CSV ({exc}){hint}") from exc


# ---------------------------------------------------------------------------
# Gram files
# ---------------------------------------------------------------------------
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
        from kernelcomp.kernels import _AnalyticKernel

        if self.kernel_desc.get("kernel") not in ("NTK", "NNGP"):
            return None
        return _AnalyticKernel.from_dict(self.kernel_desc)


def _gram_info(f: h5py.File, p: Path) -> GramInfo:
    if "gram" not in f or not isinstance(f["gram"], h5py.Dataset):
        raise FormatError(f"{p} is a 'gram' file without a 'gram' dataset")
    ds = f["gram"]
    done = f["completed_blocks"][()] if "completed_blocks" in f else np.ones(1, np.uint8)
    attrs = {k: _as_str(v) for k, v in f.attrs.items()}
    return GramInfo(
        path=p,
        shape=(int(ds.shape[0]), int(ds.shape[1])),
        dtype=ds.dtype,
        symmetric=bool(f.attrs.get("symmetric", False)),
        kernel_desc=_loads(f.attrs.get("kernel")) or {},
        input_hash=_as_str(f.attrs.get("input_hash")) or None,
        block_rows=int(f.attrs.get("block_rows", ds.shape[0])),
        n_blocks=int(done.size),
        blocks_done=int(np.count_nonzero(done)),
        complete=bool(f.attrs.get("complete", True)),
        inputs=_loads(f.attrs.get("inputs")) or {},
        attrs=attrs,
    )


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
        return f["gram"][()]


def _tile_layout(n: int, m: int, block_rows: int) -> tuple[int, tuple[int, int]]:
    """Rows per block and chunk shape so that every write covers whole chunks."""
    t = min(TILE, block_rows)
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
        f.attrs["kernel"] = _dumps(desc, "kernel")
        f.attrs["kernel_fingerprint"] = fingerprint
        if hashed is not None:
            f.attrs["input_hash"] = hashed
        f.attrs["dtype"] = K.dtype.name
        f.attrs["shape"] = np.array(K.shape, dtype=np.int64)
        f.attrs["symmetric"] = bool(Y is None and n == m and np.array_equal(K, K.T))
        f.attrs["block_rows"] = n
        f.attrs["n_blocks"] = 1
        f.attrs["complete"] = True
        f.attrs["inputs"] = _dumps(dict(inputs or {}), "inputs")
    return Path(path)


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


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
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    final = Path(path)
    partial = _partial_path(final)
    Xc, Yc, dt = _prepare_inputs(kernel, X, Y, dtype)
    n = Xc.shape[0]
    m = n if Yc is None else Yc.shape[0]
    if block_rows is None:
        block_rows = default_block_rows(n, m, dt.itemsize)
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    desc, fingerprint = _kernel_desc(kernel)
    in_hash = hash_inputs(Xc, Yc)

    if final.is_dir():
        raise IsADirectoryError(f"{final} is a directory, expected a file name")
    if not final.parent.is_dir():
        raise FileNotFoundError(f"{final}: directory {final.parent} does not exist")
    if final.exists() and not force:
        if resume:
            info = read_gram_info(final)
            _check_resumable(info, final, fingerprint, in_hash, dt, (n, m))
            return info
        raise FileExistsError(f"{final} exists; pass force=True (--force) to overwrite it")

    if partial.exists() and resume:
        info = read_gram_info(partial)
        _check_resumable(info, partial, fingerprint, in_hash, dt, (n, m))
        block_rows = info.block_rows
    else:
        if partial.exists() and not force:
            raise FileExistsError(
                f"{partial} exists (an interrupted computation): pass resume=True (--resume) "
                "to continue it or force=True (--force) to start again"
            )
        block_rows, chunks = _tile_layout(n, m, block_rows)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        nb = n_blocks(n, block_rows)
        with h5py.File(partial, "w") as f:
            stamp(f, "gram")
            # all chunks allocated now (a sparse file, nothing filled): block writes then
            # touch raw data only, never the file's metadata, so even a killed process
            # leaves a readable file whose record lists the blocks that are stored
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            f.create_dataset(
                "gram", shape=(n, m), dtype=dt, chunks=chunks, dcpl=dcpl, fill_time="never"
            )
            f.create_dataset("completed_blocks", data=np.zeros(nb, dtype=np.uint8))
            f.attrs["kernel"] = _dumps(desc, "kernel")
            f.attrs["kernel_fingerprint"] = fingerprint
            f.attrs["input_hash"] = in_hash
            f.attrs["dtype"] = dt.name
            f.attrs["shape"] = np.array((n, m), dtype=np.int64)
            f.attrs["symmetric"] = Yc is None
            f.attrs["block_rows"] = block_rows
            f.attrs["n_blocks"] = nb
            f.attrs["complete"] = False
            f.attrs["inputs"] = _dumps(dict(inputs or {}), "inputs")

    total = n_blocks(n, block_rows)
    with h5py.File(partial, "r+") as f:
        record = f["completed_blocks"]
        done = {int(i) for i in np.flatnonzero(record[()])}
        bar_args = {"total": total, "initial": len(done), "unit": "block",
                    "desc": f"{desc['kernel']} Gram"}
        with show_progress(progress, **bar_args) as bar, n_jobs_context(n_jobs):
            ds = f["gram"]
            for block in iter_gram_blocks(
                kernel, Xc, Yc, dtype=dt, block_rows=block_rows, skip=done
            ):
                for key, value in block.writes:
                    ds[key] = value
                f.flush()  # the block's data reaches the file before its record
                record[block.index] = 1
                f.flush()
                done.add(block.index)
                bar.update(1)
                if should_stop is not None and len(done) < total and should_stop():
                    raise GramInterrupted(partial, len(done), total)
        f.attrs["complete"] = True
        f.flush()
    os.replace(partial, final)
    return read_gram_info(final)


def _check_resumable(
    info: GramInfo,
    p: Path,
    fingerprint: str,
    in_hash: str,
    dt: np.dtype,
    shape: tuple[int, int],
) -> None:
    problems = []
    if info.shape != shape:
        problems.append(f"shape {info.shape} != {shape}")
    if info.dtype != dt:
        problems.append(f"dtype {info.dtype} != {dt}")
    if info.attrs.get("kernel_fingerprint") != fingerprint:
        problems.append(f"another kernel ({json.dumps(info.kernel_desc)})")
    if info.input_hash != in_hash:
        problems.append("other inputs (input hash differs)")
    if problems:
        raise FormatError(
            f"{p} cannot be resumed with these arguments: it was made with "
            + "; ".join(problems)
            + " (use force=True / --force to start again)"
        )


# ---------------------------------------------------------------------------
# run files
# ---------------------------------------------------------------------------
class RunWriter:
    """Write a training run (data, configuration, checkpoints) as training goes.

    The file is written as ``PATH.partial``: the constructor stores the data
    and the configuration, each :meth:`add_checkpoint` opens the file, appends
    one checkpoint group, flushes and closes it (so a killed process keeps
    every checkpoint written so far, readable with :func:`open_run`), and
    :meth:`close` (the end of a ``with`` block without an exception) marks the
    run complete and renames it to ``PATH``. An exception inside the ``with``
    block leaves the ``.partial`` file in place.

    Parameters
    ----------
    path : str or os.PathLike
        Final run file.
    X_train, y_train : array-like
        Training data, shapes (p, d) and (p,) or (p, K).
    X_test, y_test : array-like, optional
        Test data.
    config : mapping, optional
        JSON-serialisable training configuration (alpha, loss, seeds...).
    force : bool
        Overwrite an existing ``path`` (when the run completes) and a stale
        ``PATH.partial``.

    Raises
    ------
    FileExistsError
        If ``path`` or ``PATH.partial`` exists and ``force`` is False.
    TypeError, ValueError
        For invalid data or a configuration that is not JSON serialisable.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((20, 3)), np.sign(rng.standard_normal(20))
    >>> net = kc.FCNetwork.init(3, [8], seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "run.h5")
    >>> with kc.io.RunWriter(path, X_train=X, y_train=y, config={"alpha": 1.0}) as w:
    ...     _ = w.add_checkpoint(net, step=0, time=0.0, loss=1.0, margins=y * net(X))
    >>> run = kc.io.open_run(path)
    >>> len(run.checkpoints), run.config["alpha"]
    (1, 1.0)
    """

    def __init__(
        self,
        path: Any,
        *,
        X_train: Any,
        y_train: Any,
        X_test: Any = None,
        y_test: Any = None,
        config: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> None:
        final = _output_path(path, force)
        partial = _partial_path(final)
        if partial.exists() and not force:
            raise FileExistsError(
                f"{partial} exists (a run that did not finish); remove it or pass force=True"
            )
        data = {"X_train": check_matrix(X_train, "X_train")}
        data["y_train"] = _check_labels(y_train, "y_train", data["X_train"].shape[0])
        if (X_test is None) != (y_test is None):
            raise ValueError("X_test and y_test must be given together")
        if X_test is not None:
            data["X_test"] = check_matrix(
                X_test, "X_test", n_features=data["X_train"].shape[1]
            )
            data["y_test"] = _check_labels(y_test, "y_test", data["X_test"].shape[0])
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping (dict), got {type(config).__name__}")
        config_json = _dumps(dict(config or {}), "config")
        self.path = final
        self.partial = partial
        self._n = 0
        self._closed = False
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        try:
            with h5py.File(partial, "w") as f:
                stamp(f, "run")
                f.attrs["config"] = config_json
                f.attrs["summary"] = "{}"
                f.attrs["complete"] = False
                g = f.create_group("data")
                for k, v in data.items():
                    g.create_dataset(k, data=v)
                f.create_group("checkpoints")
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True  # keep the partial file: the checkpoints written so far

    @property
    def n_checkpoints(self) -> int:
        """Number of checkpoints written."""
        return self._n

    def add_checkpoint(
        self,
        net: Any,
        *,
        step: int,
        time: float,
        loss: float,
        train_error: float | None = None,
        test_error: float | None = None,
        margins: Any = None,
        **extra: Any,
    ) -> int:
        """Append one checkpoint: the network and its metrics.

        Parameters
        ----------
        net : FCNetwork
            Stored with ``net.to_hdf5(group)``.
        step : int
            Training step.
        time : float
            Training time (gradient-flow time).
        loss : float
        train_error, test_error : float, optional
        margins : array-like, optional
            Training margins (e.g. ``alpha * y * F(x)``).
        **extra
            More values: numbers and strings become attributes, arrays datasets.

        Returns
        -------
        int
            The checkpoint's index.

        Raises
        ------
        RuntimeError
            If the writer is closed.
        TypeError
            If ``net`` has no ``to_hdf5`` or a value cannot be stored.
        """
        if self._closed:
            raise RuntimeError(f"RunWriter for {self.path} is closed")
        if not hasattr(net, "to_hdf5"):
            raise TypeError(
                f"net must be a kc.FCNetwork (with to_hdf5), got {type(net).__name__}"
            )
        step = check_int(step, "step", minimum=0)
        scalars = {
            name: _float(value, name)
            for name, value in (
                ("time", time),
                ("loss", loss),
                ("train_error", train_error),
                ("test_error", test_error),
            )
            if value is not None
        }
        arrays = {}
        if margins is not None:
            arrays["margins"] = _float_array(margins, "margins")
        reserved = {"index", "step", "network", *scalars, "time", "loss", "train_error",
                    "test_error", "margins"}
        for name, value in extra.items():
            if name in reserved:
                raise TypeError(f"extra checkpoint value {name!r} clashes with a field")
            _check_storable(value, name, "checkpoint value")
        index = self._n
        name = f"{index:06d}"
        with h5py.File(self.partial, "r+") as f:
            try:
                g = f["checkpoints"].create_group(name)
                g.attrs["index"] = index
                g.attrs["step"] = step
                for key, value in scalars.items():
                    g.attrs[key] = value
                for key, value in arrays.items():
                    g.create_dataset(key, data=value)
                for key, value in extra.items():
                    _write_value(g, key, value, "checkpoint value")
                net.to_hdf5(g.create_group("network"))
            except BaseException:
                if name in f["checkpoints"]:
                    del f["checkpoints"][name]
                raise
            f.flush()
        self._n += 1
        return index

    def set_summary(self, **values: Any) -> None:
        """Merge JSON-serialisable values into the run's ``summary`` attribute.

        Raises
        ------
        TypeError
            If a value is not JSON serialisable.
        """
        if self._closed:
            raise RuntimeError(f"RunWriter for {self.path} is closed")
        with h5py.File(self.partial, "r+") as f:
            summary = _loads(f.attrs["summary"]) or {}
            summary.update(values)
            f.attrs["summary"] = _dumps(summary, "summary")

    def close(self) -> Path:
        """Mark the run complete and rename it to its final name.

        Returns
        -------
        pathlib.Path
            The final file.
        """
        if not self._closed:
            with h5py.File(self.partial, "r+") as f:
                f.attrs["complete"] = True
            os.replace(self.partial, self.path)
            self._closed = True
        return self.path


def _float_array(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_labels(y: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, K), got {arr.shape}")
    return arr


class Checkpoint:
    """One checkpoint of a run file; the network is loaded on demand.

    Attributes
    ----------
    path : pathlib.Path
        The run file.
    index, step : int
    time, loss : float
    train_error, test_error : float or None
    margins : numpy.ndarray or None
    extra : dict
        Other stored values.
    """

    def __init__(self, path: Path, group: str, values: dict[str, Any]) -> None:
        self.path = path
        self.group = group
        self.index = int(values.pop("index"))
        self.step = int(values.pop("step"))
        self.time = _opt_float(values.pop("time", None))
        self.loss = _opt_float(values.pop("loss", None))
        self.train_error = _opt_float(values.pop("train_error", None))
        self.test_error = _opt_float(values.pop("test_error", None))
        self.margins = values.pop("margins", None)
        self.extra = values

    @property
    def network(self) -> Any:
        """The network (read from the file at each access; no handle kept)."""
        from kernelcomp.network import FCNetwork

        with _open_checked(self.path, "run") as f:
            return FCNetwork.from_hdf5(f[self.group]["network"])

    def __repr__(self) -> str:
        return (
            f"Checkpoint(index={self.index}, step={self.step}, time={self.time}, "
            f"loss={self.loss}, train_error={self.train_error}, test_error={self.test_error})"
        )


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class Run:
    """A training run read by :func:`open_run`.

    Attributes
    ----------
    path : pathlib.Path
    config : dict
    data : dict of numpy.ndarray
        ``X_train``, ``y_train`` and, when stored, ``X_test``, ``y_test``.
    checkpoints : list of Checkpoint
        In the order written (networks load lazily).
    summary : dict
    complete : bool
        False for a ``.partial`` file of a run that did not finish.
    attrs : dict
        Root attributes (format, versions, creation time).
    """

    path: Path
    config: dict[str, Any]
    data: dict[str, np.ndarray]
    checkpoints: list[Checkpoint]
    summary: dict[str, Any]
    complete: bool
    attrs: dict[str, Any]


def open_run(path: Any) -> Run:
    """Read a run file (data, configuration, checkpoint metrics).

    Parameters
    ----------
    path : str or os.PathLike
        A run file, or the ``.partial`` file of a run that did not finish.

    Returns
    -------
    Run
        Holds no open file; each checkpoint's ``network`` is read on access.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If it is not a kernelcomp run file of a supported version.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> X, y = np.ones((4, 2)), np.array([1.0, -1.0, 1.0, -1.0])
    >>> path = os.path.join(tempfile.mkdtemp(), "run.h5")
    >>> with kc.io.RunWriter(path, X_train=X, y_train=y) as w:
    ...     _ = w.add_checkpoint(kc.FCNetwork.init(2, [3], seed=1), step=0, time=0.0, loss=1.0)
    >>> kc.io.open_run(path).checkpoints[0].network.widths
    (3,)
    """
    p = Path(path) if isinstance(path, str | os.PathLike) else path
    with _open_checked(path, "run") as f:
        for part in ("data", "checkpoints"):
            if part not in f:
                raise FormatError(f"{p} is a 'run' file without its {part!r} group")
        data = {k: v[()] for k, v in f["data"].items()}
        checkpoints = []
        for name in sorted(f["checkpoints"]):
            g = f["checkpoints"][name]
            values = _read_values(g, skip=("network",))
            checkpoints.append(Checkpoint(p, f"checkpoints/{name}", values))
        return Run(
            path=p,
            config=_loads(f.attrs.get("config")) or {},
            data=data,
            checkpoints=checkpoints,
            summary=_loads(f.attrs.get("summary")) or {},
            complete=bool(f.attrs.get("complete", True)),
            attrs={k: _as_str(v) for k, v in f.attrs.items()},
        )


# ---------------------------------------------------------------------------
# diagnostics files
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Diagnostics:
    """A diagnostics file read by :func:`load_diagnostics`.

    Attributes
    ----------
    path : pathlib.Path
    config : dict
        How the diagnostics were made (source file, options).
    entries : list of dict
        One dict per entry (e.g. per checkpoint): arrays and scalars by name.
    attrs : dict
    """

    path: Path
    config: dict[str, Any]
    entries: list[dict[str, Any]]
    attrs: dict[str, Any]


def _check_entries(entries: Any, config: Any) -> str:
    if isinstance(entries, Mapping) or not isinstance(entries, Sequence):
        raise TypeError(
            f"entries must be a sequence of mappings, got {type(entries).__name__}"
        )
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise TypeError(f"entries[{i}] must be a mapping, got {type(entry).__name__}")
        for name, value in entry.items():
            if not isinstance(name, str) or not name or "/" in name or name.endswith(".__json__"):
                raise TypeError(f"entries[{i}] has an invalid name {name!r}")
            _check_storable(value, name, f"entries[{i}]")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping (dict), got {type(config).__name__}")
    return _dumps(dict(config or {}), "config")


def _write_entries(g: h5py.Group, entries: Sequence[Mapping[str, Any]], config_json: str) -> None:
    g.attrs["config"] = config_json
    root = g.create_group("entries")
    for i, entry in enumerate(entries):
        e = root.create_group(f"{i:06d}")
        for name, value in entry.items():
            _write_value(e, name, value, f"entries[{i}]")


def save_diagnostics(
    path: Any,
    entries: Sequence[Mapping[str, Any]],
    *,
    config: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write diagnostics (e.g. kernel PCA per checkpoint) to a new file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    entries : sequence of mapping
        One mapping per entry (checkpoint, Gram matrix...): numeric arrays are
        stored as datasets, numbers and strings as attributes, dicts as JSON,
        None values are skipped.
    config : mapping, optional
        JSON-serialisable description of how they were made.
    force : bool
        Overwrite an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``force`` is False.
    TypeError
        For values that cannot be stored (before anything is written).

    See Also
    --------
    add_run_diagnostics : store them inside the run file instead.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "diag.h5")
    >>> _ = kc.io.save_diagnostics(path, [{"label": "init", "eigenvalues": np.ones(3)}])
    >>> kc.io.load_diagnostics(path).entries[0]["label"]
    'init'
    """
    config_json = _check_entries(entries, config)
    with _atomic_h5(path, "diagnostics", force=force) as f:
        _write_entries(f, entries, config_json)
    return Path(path)


def add_run_diagnostics(
    path: Any,
    entries: Sequence[Mapping[str, Any]],
    *,
    name: str = "kpca",
    config: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Store diagnostics inside a run file, as the group ``diagnostics/NAME``.

    The group carries the same ``kernelcomp_format`` (``"diagnostics"``) and
    version attributes as a diagnostics file, and the same layout. The run
    file is updated atomically: a copy is written and renamed over it.

    Parameters
    ----------
    path : str or os.PathLike
        A complete run file.
    entries : sequence of mapping
        As in :func:`save_diagnostics`.
    name : str, default "kpca"
        Name of the diagnostics group.
    config : mapping, optional
    force : bool
        Replace an existing group of that name.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the run file does not exist.
    FormatError
        If it is not a kernelcomp run file of a supported version.
    FileExistsError
        If the group exists and ``force`` is False.
    TypeError, ValueError
        For values that cannot be stored or an invalid ``name``.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "run.h5")
    >>> with kc.io.RunWriter(path, X_train=np.ones((2, 2)), y_train=np.ones(2)) as w:
    ...     _ = w.add_checkpoint(kc.FCNetwork.init(2, [3], seed=0), step=0, time=0.0, loss=1.0)
    >>> _ = kc.io.add_run_diagnostics(path, [{"eigenvalues": np.ones(2)}])
    >>> kc.io.load_diagnostics(path).entries[0]["eigenvalues"].tolist()
    [1.0, 1.0]
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    config_json = _check_entries(entries, config)
    with _open_checked(path, "run") as f:
        exists = f"diagnostics/{name}" in f
    p = Path(path)
    if exists and not force:
        raise FileExistsError(
            f"{p} already holds diagnostics {name!r}; pass force=True (--force) to replace them"
        )
    with atomic_write(p, mode_from=p) as tmp:
        shutil.copyfile(p, tmp)
        with h5py.File(tmp, "r+") as f:
            parent = f.require_group("diagnostics")
            if name in parent:
                del parent[name]
            g = parent.create_group(name)
            stamp(g, "diagnostics")
            _write_entries(g, entries, config_json)
    return p


def _read_diagnostics(g: h5py.Group, p: Path) -> Diagnostics:
    entries = [_read_values(g["entries"][k]) for k in sorted(g.get("entries", {}))]
    return Diagnostics(
        path=p,
        config=_loads(g.attrs.get("config")) or {},
        entries=entries,
        attrs={k: _as_str(v) for k, v in g.attrs.items()},
    )


def load_diagnostics(path: Any, name: str | None = None) -> Diagnostics:
    """Read diagnostics from a diagnostics file or from a run file.

    Parameters
    ----------
    path : str or os.PathLike
        A diagnostics file (:func:`save_diagnostics`) or a run file holding
        diagnostics groups (:func:`add_run_diagnostics`).
    name : str, optional
        Which group of a run file (default: its only one).

    Returns
    -------
    Diagnostics

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If it is not a kernelcomp diagnostics or run file of a supported
        version, or the group is missing or ambiguous.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "diag.h5")
    >>> _ = kc.io.save_diagnostics(path, [{"eigenvalues": np.arange(3.0)}], config={"k": 3})
    >>> d = kc.io.load_diagnostics(path)
    >>> d.config, d.entries[0]["eigenvalues"].tolist()
    ({'k': 3}, [0.0, 1.0, 2.0])
    """
    p = Path(path) if isinstance(path, str | os.PathLike) else path
    with _open_checked(path, ("diagnostics", "run")) as f:
        if _as_str(f.attrs["kernelcomp_format"]) == "diagnostics":
            if name is not None:
                raise FormatError(f"{p} is a diagnostics file: name={name!r} does not apply")
            return _read_diagnostics(f, p)
        names = sorted(f.get("diagnostics", {}))
        if name is None:
            if len(names) != 1:
                raise FormatError(
                    f"{p} is a run file holding {len(names)} diagnostics groups {names}; "
                    + ("choose one with name=" if names else "compute them first")
                )
            name = names[0]
        if name not in names:
            raise FormatError(f"{p} holds no diagnostics {name!r} (it holds {names})")
        g = f["diagnostics"][name]
        _check_header(g, p, "diagnostics")
        return _read_diagnostics(g, p)


# ---------------------------------------------------------------------------
# any file
# ---------------------------------------------------------------------------
def _network_file_info(p: Any) -> dict[str, Any] | None:
    """Description of a network file (``FCNetwork.save(".h5")``), else None."""
    if not isinstance(p, Path) or not p.is_file():
        return None
    try:
        f = h5py.File(p, "r")
    except OSError:
        return None
    with f:
        if _as_str(f.attrs.get("kernelcomp_format")) != NETWORK_FORMAT:
            return None
        from kernelcomp.network import FCNetwork

        net = FCNetwork.from_hdf5(f)  # checks the network encoding's own version
        return {
            "path": os.fspath(p),
            "format": NETWORK_FORMAT,
            "format_version": _as_str(f.attrs.get("kernelcomp_format_version")),
            "kernelcomp_version": _as_str(f.attrs.get("kernelcomp_version")),
            "created": _as_str(f.attrs.get("created")),
            "input_dim": net.input_dim,
            "widths": list(net.widths),
            "n_outputs": net.n_outputs,
            "activation": net.activation,
            "parameterization": net.parameterization,
            "n_params": net.n_params,
        }


def file_info(path: Any) -> dict[str, Any]:
    """Describe any kernelcomp file: header plus a summary of its contents.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``format``, ``format_version``, ``kernelcomp_version``, ``created``,
        ``path`` and format-specific fields (JSON serialisable). Network files
        written by ``FCNetwork.save`` (format ``"network"``) are described too.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If it is not a kernelcomp file of a supported version.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> path = os.path.join(tempfile.mkdtemp(), "K.h5")
    >>> _ = kc.io.save_gram(path, np.eye(2))
    >>> kc.io.file_info(path)["format"]
    'gram'
    """
    p = Path(path) if isinstance(path, str | os.PathLike) else path
    net_info = _network_file_info(p)
    if net_info is not None:
        return net_info
    with _open_checked(path, None) as f:
        fmt = _as_str(f.attrs["kernelcomp_format"])
        info: dict[str, Any] = {
            "path": os.fspath(p),
            "format": fmt,
            "format_version": _as_str(f.attrs.get("kernelcomp_format_version")),
            "kernelcomp_version": _as_str(f.attrs.get("kernelcomp_version")),
            "created": _as_str(f.attrs.get("created")),
        }
        if fmt == "gram":
            g = _gram_info(f, p)
            info.update(
                shape=list(g.shape),
                dtype=g.dtype.name,
                symmetric=g.symmetric,
                kernel=g.kernel_desc,
                input_hash=g.input_hash,
                blocks=f"{g.blocks_done}/{g.n_blocks}",
                complete=g.complete,
                inputs=g.inputs,
            )
        elif fmt == "run":
            data = f.get("data", {})
            cks = f.get("checkpoints", {})
            info.update(
                complete=bool(f.attrs.get("complete", True)),
                config=_loads(f.attrs.get("config")) or {},
                summary=_loads(f.attrs.get("summary")) or {},
                data={k: list(v.shape) for k, v in data.items()},
                diagnostics=sorted(f.get("diagnostics", {})),
                checkpoints=[
                    {
                        "step": int(cks[k].attrs.get("step", -1)),
                        "time": _opt_float(cks[k].attrs.get("time")),
                        "loss": _opt_float(cks[k].attrs.get("loss")),
                    }
                    for k in sorted(cks)
                ],
            )
        else:
            entries = f.get("entries", {})
            info.update(
                config=_loads(f.attrs.get("config")) or {},
                entries=[
                    {
                        "label": _as_str(entries[k].attrs.get("label", k)),
                        "arrays": {
                            n: list(v.shape)
                            for n, v in entries[k].items()
                            if isinstance(v, h5py.Dataset)
                        },
                        "values": {
                            n: v.item()
                            for n, v in entries[k].attrs.items()
                            if isinstance(v, np.generic) and v.dtype.kind in "biuf"
                        },
                    }
                    for k in sorted(entries)
                ],
            )
        return info
