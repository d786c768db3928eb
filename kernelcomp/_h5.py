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
* Reading: :func:`_existing`, :func:`_open_checked` (with the header check) and
  :func:`_file_format` (any kernelcomp format, without one).
* Attribute codecs: :func:`_dumps` / :func:`_loads` (JSON attributes),
  :func:`_write_value` / :func:`_read_values` (arrays as datasets, scalars and
  strings as attributes, dicts as JSON).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import numbers
import os
import shutil
import tempfile
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
    """
    p = _path_arg(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory, expected a file name")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"{p}: directory {p.parent} does not exist")
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists; pass force=True (--force) to overwrite it")
    return p


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
    ends normally the file gets its permissions and replaces ``path``
    (atomically, with :func:`os.replace`); when it raises, the temporary file
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
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _atomic_h5(path: Any, fmt: str, *, force: bool = False) -> Iterator[h5py.File]:
    """Write a new HDF5 file of format ``fmt`` under a temporary name, rename it when done.

    The output path is checked by :func:`_output_path` and the header written
    by :func:`stamp` before the caller's block runs.
    """
    import h5py

    p = _output_path(path, force)
    with atomic_write(p) as tmp, h5py.File(tmp, "w") as f:
        stamp(f, fmt)
        yield f


def _open_h5(p: Path) -> h5py.File:
    """``h5py.File(p, "r")``; FormatError (not OSError) for a file that is not HDF5."""
    import h5py

    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(f"{p} is not an HDF5 file ({exc})") from exc


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
            out[key] = item[()]
    return out
