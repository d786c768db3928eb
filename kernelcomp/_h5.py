"""The HDF5 file layer shared by :mod:`kernelcomp.io` and :mod:`kernelcomp.network`.

A leaf module: it imports nothing from kernelcomp but the version string, and
imports h5py only inside the functions that open files (so that
``import kernelcomp.network`` stays light).

* The format registry: :data:`FORMAT_VERSIONS` (the formats :mod:`kernelcomp.io`
  reads) and the kernelcomp formats read elsewhere (``"network"``).
* Headers: :func:`stamp` writes the four root attributes every kernelcomp HDF5
  file carries; :func:`_check_header` checks them when reading
  (:class:`FormatError`).
* Writing: :func:`atomic_write` (a temporary name, renamed when complete),
  :func:`_output_path` (the one policy for output paths: no directory, an
  existing folder, no overwrite without ``force``), :func:`_atomic_h5`
  (both, for a new HDF5 file with its header) and the ``PATH.partial`` file
  of the writes that take long (:func:`_partial_path`, :func:`_refuse_partial`).
* Safety of writes: :func:`write_lock` (one writer per output path, ``PATH.lock``),
  :func:`check_free_space` and :func:`reserve` (a full disk is reported before
  HDF5 writes anything it cannot finish), :func:`_fsync_path` (data on disk
  before the final rename).
* Reading: :func:`_existing`, :func:`_open_h5` (every HDF5 open: a clear error
  for a file locked by a writer), :func:`_open_checked` (with the header check),
  :func:`_file_format` (any kernelcomp format, without one) and
  :func:`check_stored` (before every dataset read: its data is in the file, no
  external storage, virtual dataset or external link, and it holds the bytes
  its shape declares).
* Attribute codecs: :func:`_dumps` / :func:`_loads` (JSON attributes),
  :func:`_write_value` / :func:`_read_values` (arrays as datasets, scalars and
  strings as attributes, dicts as JSON).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import numbers
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelcomp._version import __version__

if TYPE_CHECKING:
    import h5py

#: ``kernelcomp_format`` of a network file (``FCNetwork.save`` to .h5/.hdf5)
NETWORK_FORMAT = "network"
#: current ``kernelcomp_format_version`` of each format :mod:`kernelcomp.io` reads
FORMAT_VERSIONS: dict[str, str] = {"gram": "1.0", "run": "1.0", "diagnostics": "1.0"}
#: kernelcomp formats written and read elsewhere: format -> where to read it
_OTHER_FORMATS: dict[str, str] = {
    NETWORK_FORMAT: "written by FCNetwork.save; read it with kc.FCNetwork.load",
}


#: suffix of the file a resumable or incremental write works in
PARTIAL_SUFFIX = ".partial"


class FormatError(ValueError):
    """A file is not a kernelcomp file of the expected format or version."""


# ---------------------------------------------------------------------------
# headers
# ---------------------------------------------------------------------------
def now() -> str:
    """The current UTC time, ISO 8601 to the second (``2024-06-07T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def stamp(obj: Any, fmt: str, version: str | None = None) -> None:
    """Write the kernelcomp header attributes on an h5py file or group.

    Parameters
    ----------
    obj : h5py.File or h5py.Group
        Opened for writing.
    fmt : str
        ``kernelcomp_format`` (``"gram"``, ``"run"``, ``"diagnostics"``, ``"network"``).
    version : str, optional
        ``kernelcomp_format_version`` (``"MAJOR.MINOR"``); by default the
        current version of ``fmt`` in :data:`FORMAT_VERSIONS`.
    """
    obj.attrs["kernelcomp_format"] = fmt
    obj.attrs["kernelcomp_format_version"] = FORMAT_VERSIONS[fmt] if version is None else version
    obj.attrs["kernelcomp_version"] = __version__
    obj.attrs["created"] = now()


def _as_str(value: Any) -> Any:
    """An attribute as h5py returns it, with bytes and 0-d string arrays as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.shape == ():
        return _as_str(value[()])
    return value


def _check_header(f: h5py.Group, path: Path, fmt: str | Sequence[str] | None) -> str:
    """Check the root attributes of ``f`` (read from ``path``); return its format.

    Parameters
    ----------
    f : h5py.File or h5py.Group
    path : pathlib.Path
        Named in the messages.
    fmt : str or sequence of str or None
        The format(s) accepted; None: any format of :data:`FORMAT_VERSIONS`.

    Raises
    ------
    FormatError
        If ``f`` has no kernelcomp header, another or an unknown format, or a
        format version of another major version.
    """
    found = _as_str(f.attrs.get("kernelcomp_format"))
    if found is None:
        raise FormatError(
            f"{path} is not a kernelcomp file (no 'kernelcomp_format' attribute at its root)"
        )
    allowed = [fmt] if isinstance(fmt, str) else (list(fmt) if fmt is not None else None)
    if found in _OTHER_FORMATS:
        want = " or ".join(repr(a) for a in (allowed or sorted(FORMAT_VERSIONS)))
        raise FormatError(
            f"{path} is a kernelcomp {found!r} file, expected a {want} file "
            f"({_OTHER_FORMATS[found]})"
        )
    if found not in FORMAT_VERSIONS:
        raise FormatError(
            f"{path} has unknown kernelcomp_format {found!r}; expected one of "
            f"{sorted(FORMAT_VERSIONS)}"
        )
    if allowed is not None and found not in allowed:
        want = " or ".join(repr(a) for a in allowed)
        raise FormatError(f"{path} is a kernelcomp {found!r} file, expected a {want} file")
    version = str(_as_str(f.attrs.get("kernelcomp_format_version", "")))
    major = version.split(".", 1)[0]
    ours = FORMAT_VERSIONS[found].split(".", 1)[0]
    if major != ours:
        raise FormatError(
            f"{path} has {found!r} format version {version or '(missing)'}, but this kernelcomp "
            f"({__version__}) reads version {ours}.x only"
        )
    return str(found)


# ---------------------------------------------------------------------------
# paths, atomic writes
# ---------------------------------------------------------------------------
def _path_arg(path: Any, name: str = "path") -> Path:
    """``path`` as a :class:`~pathlib.Path`; TypeError for anything but str or PathLike."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _existing(path: Any, name: str = "path") -> Path:
    """An input file: it exists and is not a directory."""
    p = _path_arg(path, name)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory, expected a file")
    return p


def _output_path(path: Any, force: bool) -> Path:
    """An output file name: not a directory, in an existing folder, new unless ``force``.

    Raises
    ------
    TypeError
        If ``path`` is not a str or os.PathLike.
    IsADirectoryError, FileNotFoundError
        If ``path`` is a directory or its folder does not exist.
    FileExistsError
        If ``path`` exists and ``force`` is False.
    ValueError
        If ``path`` exists and is not a regular file (a FIFO, a device, a
        socket; or a link to one), whatever ``force``.
    """
    p = _path_arg(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory, expected a file name")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"{p}: directory {p.parent} does not exist")
    kind = _special_kind(p)
    if kind is not None:
        raise ValueError(
            f"{p} is {kind}, not a regular file; kernelcomp writes regular files only and "
            "never replaces it (not even with --force): choose another output name"
        )
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists; pass force=True (--force) to overwrite it")
    return p


def _special_kind(p: Path) -> str | None:
    """What ``p`` (following links) is when it exists and is not a regular file, else None."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "a special file"


def _partial_path(path: Path) -> Path:
    """The file a long write works in before it is renamed to ``path`` (``PATH.partial``)."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _refuse_partial(partial: Path, force: bool, why: str) -> None:
    """Refuse to start over a partial file unless ``force``; ``why`` says what it is and what to do.

    Raises
    ------
    FileExistsError
        If ``partial`` exists and ``force`` is False.
    """
    if partial.exists() and not force:
        raise FileExistsError(f"{partial} exists {why}")


#: suffix of the lock file held beside an output while it is written
LOCK_SUFFIX = ".lock"


def _busy(message: str) -> BlockingIOError:
    """A BlockingIOError (errno EWOULDBLOCK) whose text is ``message`` alone."""
    exc = BlockingIOError(message)
    exc.errno = errno.EWOULDBLOCK
    return exc


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


@contextlib.contextmanager
def write_lock(path: Any, *, wait: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive write lock of the output ``path`` (the file ``PATH.lock``).

    Every kernelcomp writer of ``path`` (and of ``PATH.partial``) holds it from
    its first check of the existing files to the final rename, so two
    processes never write one output at once: the second gets a clear error
    (or waits up to ``wait`` seconds) instead of mixing its work with the
    first's. The lock is :func:`fcntl.flock` on the lock file, released by the
    kernel when the process dies; the lock file is removed when released.

    Parameters
    ----------
    path : str or os.PathLike
        The output file (its folder must exist).
    wait : float
        Seconds to wait for another writer before giving up.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    BlockingIOError
        If another process (or another writer in this one) holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): no locking
        yield _lock_path(Path(path))
        return
    lock = _lock_path(Path(path))
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                yield lock  # a file system without locks: as before, unlocked
                return
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise _busy(
                f"{path} is being written by another kernelcomp process (it holds {lock}); "
                "wait for it to finish"
            ) from None
        # the previous holder may have removed the lock file after we opened it
        try:
            current = os.stat(lock)
            mine = os.fstat(fd)
            same = (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _size(nbytes: float) -> str:
    """A byte count for people (``1.5 GB``)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"  # pragma: no cover


def _no_space(folder: Path, needed: int, free: int, what: str) -> OSError:
    exc = OSError(
        f"not enough free space in {folder} for {what}: it needs {_size(needed)}, "
        f"{_size(free)} are free"
    )
    exc.errno = errno.ENOSPC
    return exc


def check_free_space(folder: Any, needed: int, what: str) -> None:
    """Refuse to start a write of ``needed`` bytes into ``folder`` when less is free.

    Raises
    ------
    OSError
        With ``errno.ENOSPC``, naming the folder, the need and the free space.
    """
    folder = Path(folder)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # no statvfs here: the reservation (reserve) still protects the write
        return
    if needed > free:
        raise _no_space(folder, needed, free, what)


def reserve(path: Any, length: int, *, start: int | None = None, what: str = "") -> None:
    """Allocate disk blocks for ``path[start:start + length]`` (``start``: its end).

    HDF5 cannot recover from a write that fails for lack of space (its file
    is left unflushable and the process may crash when it exits), so the
    writers reserve the blocks their next writes need before HDF5 writes
    them: a full disk then fails here, with a one-line error, and the file
    stays as it was. A file system without ``posix_fallocate`` is left as is.

    Raises
    ------
    OSError
        With ``errno.ENOSPC`` when the blocks cannot be allocated.
    """
    p = Path(path)
    if not hasattr(os, "posix_fallocate") or length <= 0:
        return
    fd = os.open(p, os.O_RDWR)
    try:
        offset = os.fstat(fd).st_size if start is None else start
        try:
            os.posix_fallocate(fd, offset, length)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                free = 0
                with contextlib.suppress(OSError):
                    free = shutil.disk_usage(p.parent).free
                raise _no_space(p.parent, length, free, what or str(p)) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
    finally:
        os.close(fd)


def _fsync_path(path: Any, *, folder: bool = False) -> None:
    """``fsync`` the file ``path`` (``folder``: its folder, after a rename)."""
    p = Path(path)
    target = p.parent if folder else p
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (some platforms): nothing to sync
        if not folder:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def _publish(tmp: Any, final: Any) -> None:
    """Rename a complete file to its final name, its data on disk first (fsync, rename, fsync)."""
    _fsync_path(tmp)
    os.replace(tmp, final)
    _fsync_path(final, folder=True)


def file_mode() -> int:
    """The mode a plainly created file gets under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode_from: Any = None) -> Iterator[str]:
    """Write a file under a temporary name and rename it to ``path`` when complete.

    Yields the temporary file's name (``NAME.tmp-XXXX``, an empty file in the
    directory of ``path``), for the caller to write. When the ``with`` block
    ends normally the file gets its permissions, its data is flushed to disk
    (``fsync``) and it replaces ``path`` (atomically, with :func:`os.replace`);
    when it raises, the temporary file
    is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The final file; its directory must exist.
    mode_from : str or os.PathLike, optional
        Copy this file's permission bits (when rewriting an existing file).
        By default the file gets the usual mode of a new file under the
        current umask (:func:`file_mode`), not the private 0600 of
        :func:`tempfile.mkstemp`.

    Yields
    ------
    str
        The temporary file name.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".tmp-", dir=p.parent)
    os.close(fd)
    try:
        yield tmp
        if mode_from is None:
            os.chmod(tmp, file_mode())
        else:
            shutil.copymode(mode_from, tmp)
        _publish(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _atomic_h5(path: Any, fmt: str, *, force: bool = False) -> Iterator[h5py.File]:
    """Write a new HDF5 file of format ``fmt`` under a temporary name, rename it when done.

    The output path is checked by :func:`_output_path` and the header written
    by :func:`stamp` before the caller's block runs; the output's
    :func:`write_lock` is held until the rename.
    """
    import h5py

    p = _output_path(path, force)
    with write_lock(p), atomic_write(p) as tmp:
        with h5py.File(tmp, "w") as f:
            stamp(f, fmt)
            yield f


def _open_h5(p: Path) -> h5py.File:
    """``h5py.File(p, "r")`` for every kernelcomp read of an HDF5 file.

    Raises
    ------
    BlockingIOError
        If another process holds the file open for writing (HDF5's file lock).
    FormatError
        If ``p`` is not an HDF5 file.

    Every dataset read from it goes through :func:`check_stored` first.
    """
    import h5py

    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        text = str(exc)
        if "unable to lock file" in text or getattr(exc, "errno", None) in (
            errno.EAGAIN, errno.EWOULDBLOCK
        ):
            raise _busy(
                f"{p} is open for writing in another process (HDF5 file lock); wait for that "
                "process to finish (or read a copy)"
            ) from None
        raise FormatError(f"{p} is not an HDF5 file ({exc})") from exc
    return f


def check_stored(ds: h5py.Dataset, p: Path, what: str) -> None:
    """Check a dataset before reading it: its data is in ``p``, as many bytes as it declares.

    Every kernelcomp read of an HDF5 dataset goes through this check (a few
    property-list queries, no data read):

    * external storage (``external=``), virtual datasets and external links
      make HDF5 read other files when the dataset is read: a crafted file
      would have kernelcomp read (and e.g. rebuild, through its eigenvectors)
      any file the user can read. kernelcomp never writes them;
    * a complete dataset has every chunk (or its contiguous block)
      allocated: a small file declaring a huge shape would otherwise make the
      reader allocate it in memory.

    Raises
    ------
    FormatError
        Naming the dataset and what is wrong.
    """
    import h5py

    name = getattr(ds, "name", "?")
    outside = None
    if os.path.abspath(ds.file.filename) != os.path.abspath(p):
        outside = f"is an external link (to {ds.file.filename})"
    elif ds.is_virtual:
        outside = "is a virtual dataset"
    elif ds.external:
        outside = "has external storage"
    if outside is not None:
        raise FormatError(
            f"{p}: {what} ({name!r}) {outside}: its data would be read from other files; "
            "kernelcomp reads only self-contained HDF5 files"
        )
    declared = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize if ds.shape else 0
    if declared == 0:
        return
    stored = ds.id.get_storage_size()
    if ds.id.get_create_plist().get_layout() == h5py.h5d.CHUNKED:
        expected = np.prod([-(-s // c) for s, c in zip(ds.shape, ds.chunks, strict=True)])
        complete = ds.id.get_num_chunks() >= int(expected)
    else:
        complete = stored >= declared
    if not complete:
        raise FormatError(
            f"{p}: {what} declares shape {tuple(ds.shape)} {ds.dtype} ({_size(declared)}) but "
            f"the file stores only {_size(stored)} of it: a damaged or forged file"
        )


@contextlib.contextmanager
def _open_checked(path: Any, fmt: str | Sequence[str] | None) -> Iterator[h5py.File]:
    """Open a kernelcomp HDF5 file for reading and check its header (:func:`_check_header`)."""
    p = _existing(path)
    with _open_h5(p) as f:
        _check_header(f, p, fmt)
        yield f


def _file_format(path: Any) -> str | None:
    """The ``kernelcomp_format`` of an HDF5 file (any, ``"network"`` too); None if it has none.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If it is not an HDF5 file.
    """
    p = _existing(path)
    with _open_h5(p) as f:
        found = _as_str(f.attrs.get("kernelcomp_format"))
    return None if found is None else str(found)


# ---------------------------------------------------------------------------
# attribute codecs
# ---------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    """JSON for NumPy scalars and arrays and for paths (``json.dumps(default=...)``)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(value: Any, name: str) -> str:
    """``value`` as a JSON attribute (sorted keys); TypeError naming ``name`` if it cannot be."""
    try:
        return json.dumps(value, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON serialisable: {exc}") from exc


def _loads(value: Any) -> Any:
    """A JSON attribute read back (None for a missing attribute)."""
    value = _as_str(value)
    return None if value is None else json.loads(value)


def _check_storable(value: Any, name: str, what: str) -> None:
    """Raise the error :func:`_write_value` would raise, before anything is written."""
    if value is None or isinstance(value, str | bool | numbers.Number | np.generic):
        return
    if isinstance(value, Mapping):
        _dumps(value, f"{what} {name!r}")
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{what} {name!r} must be a number, a string, a dict or a numeric array, got "
            f"{type(value).__name__} of dtype {arr.dtype}"
        )


def _write_value(group: h5py.Group, name: str, value: Any, what: str) -> None:
    """Arrays become datasets, scalars and strings attributes, dicts JSON; None is skipped."""
    _check_storable(value, name, what)
    if value is None:
        return
    if isinstance(value, str | bool | numbers.Number | np.generic):
        group.attrs[name] = value
    elif isinstance(value, Mapping):
        group.attrs[name] = _dumps(value, f"{what} {name!r}")
        group.attrs[f"{name}.__json__"] = True
    else:
        group.create_dataset(name, data=np.asarray(value))


def _read_values(group: h5py.Group, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The values :func:`_write_value` stored in ``group``, by name (``skip``: names left out)."""
    import h5py

    out: dict[str, Any] = {}
    for key, value in group.attrs.items():
        if key in skip or key.endswith(".__json__"):
            continue
        if group.attrs.get(f"{key}.__json__", False):
            out[key] = _loads(value)
        else:
            value = _as_str(value)
            out[key] = value.item() if isinstance(value, np.generic) else value
    for key, item in group.items():
        if key in skip:
            continue
        if isinstance(item, h5py.Dataset):
            check_stored(item, Path(group.file.filename), f"dataset {item.name!r}")
            out[key] = item[()]
    return out
