"""Diagnostics files: entries of arrays and values (e.g. kernel PCA per checkpoint).

Layout (format ``"diagnostics"``, version 1), as a file of its own or as the
group ``diagnostics/NAME`` of a run file (with the same header attributes)::

    /entries/000000/<name>   arrays (eigenvalues, label_projection, ...)
    /entries/000000 attrs:   scalars and strings (label, step, time, ...)
    attrs: config (JSON)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kernelcomp._h5 import (
    FormatError,
    _as_str,
    _atomic_h5,
    _check_header,
    _check_storable,
    _dumps,
    _loads,
    _open_checked,
    _read_values,
    _write_value,
    atomic_write,
    check_free_space,
    reserve,
    stamp,
    write_lock,
)


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
    with _open_checked(path, "run"):  # a readable run file (clear errors) before the lock
        pass
    p = Path(path)
    # one writer at a time: a second one waits for the first's copy, then adds to its result
    with write_lock(p, wait=_LOCK_WAIT):
        with _open_checked(p, "run") as f:
            exists = f"diagnostics/{name}" in f
            complete = bool(f.attrs.get("complete", True))
        if not complete:
            raise FormatError(
                f"{p} is the file of a run that did not finish (or is still being trained); "
                "diagnostics are added to complete run files only"
            )
        if exists and not force:
            raise FileExistsError(
                f"{p} already holds diagnostics {name!r}; pass force=True (--force) to replace "
                "them"
            )
        need = p.stat().st_size + _entries_size(entries) + (1 << 20)
        check_free_space(p.parent, need, f"a copy of {p} with its new diagnostics")
        _add_group(p, entries, name, config_json)
    return p


#: seconds add_run_diagnostics waits for another writer of the same run file
_LOCK_WAIT = 10.0


def _entries_size(entries: Sequence[Mapping[str, Any]]) -> int:
    """Bytes of the arrays of diagnostics entries (a bound for their space on disk)."""
    total = 0
    for entry in entries:
        for value in entry.values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
    return total


def _add_group(p: Path, entries: Sequence[Mapping[str, Any]], name: str,
               config_json: str) -> None:
    """Write a copy of the run file ``p`` with the group ``diagnostics/NAME``; rename it over."""
    with atomic_write(p, mode_from=p) as tmp:
        shutil.copyfile(p, tmp)
        reserve(tmp, 2 * _entries_size(entries) + (1 << 20), what=f"the diagnostics of {p}")
        with h5py.File(tmp, "r+") as f:
            parent = f.require_group("diagnostics")
            if name in parent:
                del parent[name]
            g = parent.create_group(name)
            stamp(g, "diagnostics")
            _write_entries(g, entries, config_json)


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


def _diagnostics_summary(f: h5py.File, p: Path) -> dict[str, Any]:
    """The diagnostics-file fields of :func:`kernelcomp.io.file_info` (JSON serialisable)."""
    entries = f.get("entries", {})
    return {
        "config": _loads(f.attrs.get("config")) or {},
        "entries": [
            {
                "label": _as_str(entries[k].attrs.get("label", k)),
                "arrays": {
                    n: list(v.shape) for n, v in entries[k].items() if isinstance(v, h5py.Dataset)
                },
                "values": {
                    n: v.item()
                    for n, v in entries[k].attrs.items()
                    # the ".__json__" flags mark a dict stored as JSON: not values
                    if isinstance(v, np.generic) and v.dtype.kind in "biuf"
                    and not n.endswith(".__json__")
                },
            }
            for k in sorted(entries)
        ],
    }
