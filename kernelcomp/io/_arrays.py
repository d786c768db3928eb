"""Arrays from files: the inputs of the command line (``.npy``, ``.npz``, ``.csv``, ``.h5``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kernelcomp._h5 import FormatError, _existing, _open_h5, _size, check_stored


class _KeyProblem(ValueError):
    """The array asked for (or the only one) cannot be told apart; not a read error."""


def read_array(path: Any, *, key: str | None = None, name: str = "INPUT") -> np.ndarray:
    """Read one array from a ``.npy``, ``.npz``, ``.csv`` or ``.h5`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file. ``.csv`` files (UTF-8) may have one header line; ``.h5``/``.hdf5``
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
            _check_npy_size(p, name)
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            if isinstance(exc, _KeyProblem):
                raise
            raise ValueError(f"{name}: cannot read {p} as .npy ({exc})") from exc
    if ext == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.files)
                chosen = _choose_key(keys, key, p, name, "arrays")
                _check_npz_member(z, chosen, p, name)
                return z[chosen]
        except (ValueError, OSError) as exc:
            if isinstance(exc, _KeyProblem):
                raise
            raise ValueError(f"{name}: cannot read {p} as .npz ({exc})") from exc
    if ext == ".csv":
        return _read_csv(p, name)
    if ext in (".h5", ".hdf5"):
        try:
            f = _open_h5(p)
        except FormatError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        with f:
            if key is not None:
                item = f.get(key)
                if not isinstance(item, h5py.Dataset):
                    raise _KeyProblem(f"{name}: {p} has no dataset {key!r}")
            else:
                keys: list[str] = []
                f.visititems(lambda k, v: keys.append(k) if isinstance(v, h5py.Dataset) else None)
                item = f[_choose_key(keys, None, p, name, "datasets")]
            try:
                check_stored(item, p, f"dataset {item.name!r}")
            except FormatError as exc:
                raise ValueError(f"{name}: {exc}") from None
            return item[()]
    raise ValueError(
        f"{name}: unsupported file type {p.suffix or '(no extension)'!r} for {p}; expected "
        ".npy, .npz, .csv or .h5"
    )


def _read_header(fh: Any, version: tuple[int, int]) -> tuple[Any, bool, np.dtype]:
    """An .npy header (shape, fortran_order, dtype) after its magic string."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)  # 3.0 differs in its text encoding only


def _declared(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.float64)) * dtype.itemsize


def _check_npy_size(p: Path, name: str) -> None:
    """Refuse a .npy file whose header declares more data than the file holds.

    ``np.load`` would allocate the declared array before finding the file
    short (a few bytes declaring (10**6, 10**6) floats ask for 8 TB).
    """
    with open(p, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = _read_header(fh, version)
        held = p.stat().st_size - fh.tell()
    declared = _declared(shape, dtype)
    if declared > held:
        raise _KeyProblem(
            f"{name}: {p} declares an array of shape {shape} {dtype} ({_size(declared)}) but "
            f"holds only {_size(held)} of data: a truncated or forged file"
        )


def _check_npz_member(z: Any, key: str, p: Path, name: str) -> None:
    """As :func:`_check_npy_size`, for one member of an .npz archive (before inflating it)."""
    member = z.zip.getinfo(key if key in z.zip.namelist() else key + ".npy")
    with z.zip.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        shape, _, dtype = _read_header(fh, version)
        header = fh.tell()
    declared = _declared(shape, dtype)
    held = member.file_size - header
    if declared > held:
        raise _KeyProblem(
            f"{name}: {p}: array {key!r} declares shape {shape} {dtype} ({_size(declared)}) "
            f"but holds only {_size(held)} of data: a truncated or forged file"
        )


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
        return np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64,
                          encoding="utf-8")  # as the header test above, whatever the locale
    except ValueError as exc:
        raise ValueError(f"{name}: cannot read {p} as numeric CSV ({exc}){hint}") from exc
