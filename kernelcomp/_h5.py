"""File helpers shared by :mod:`kernelcomp.io` and :mod:`kernelcomp.network`.

A leaf module: it imports nothing from kernelcomp but the version string, and
not h5py either (it only sets attributes on objects the caller opened).

* :func:`now`: the ISO 8601 UTC time stamp of the ``created`` attribute.
* :func:`stamp`: the four root attributes every kernelcomp HDF5 file carries.
* :func:`atomic_write`: write under a temporary name, rename when complete.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernelcomp._version import __version__

#: ``kernelcomp_format`` of a network file (``FCNetwork.save`` to .h5/.hdf5)
NETWORK_FORMAT = "network"


def now() -> str:
    """The current UTC time, ISO 8601 to the second (``2024-06-07T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def stamp(obj: Any, fmt: str, version: str) -> None:
    """Write the kernelcomp header attributes on an h5py file or group.

    Parameters
    ----------
    obj : h5py.File or h5py.Group
        Opened for writing.
    fmt : str
        ``kernelcomp_format`` (``"gram"``, ``"run"``, ``"diagnostics"``, ``"network"``).
    version : str
        ``kernelcomp_format_version`` (``"MAJOR.MINOR"``).
    """
    obj.attrs["kernelcomp_format"] = fmt
    obj.attrs["kernelcomp_format_version"] = version
    obj.attrs["kernelcomp_version"] = __version__
    obj.attrs["created"] = now()


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
