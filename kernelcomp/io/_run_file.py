"""Run files: a training run's data, configuration and checkpoints, written as training goes.

Layout (format ``"run"``, version 1)::

    /data/X_train, /data/y_train [, /data/X_test, /data/y_test]
    /checkpoints/000000/network     (written by FCNetwork.to_hdf5)
    /checkpoints/000000/margins     (optional; any other array given)
    /checkpoints/000000 attrs: index, step, time, loss, train_error, test_error
    /diagnostics/NAME               (optional; see kernelcomp.io.add_run_diagnostics)
    attrs: config (JSON), summary (JSON), complete
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kernelcomp._h5 import (
    FormatError,
    _as_str,
    _check_storable,
    _dumps,
    _loads,
    _open_checked,
    _output_path,
    _partial_path,
    _publish,
    _read_values,
    _refuse_partial,
    _write_value,
    check_free_space,
    check_stored,
    reserve,
    stamp,
    write_lock,
)
from kernelcomp._validation import check_int, check_matrix

#: bytes reserved beyond a run file's data (HDF5 metadata)
_SLACK = 1 << 20
#: bytes reserved beyond a checkpoint's arrays (its group, attributes, metadata)
_CHECKPOINT_SLACK = 256 << 10


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
        self._lock = contextlib.ExitStack()  # held from the checks to the final rename
        self._lock.enter_context(write_lock(final))
        try:
            _refuse_partial(
                partial, force, "(a run that did not finish); remove it or pass force=True"
            )
            self._create(final, partial, X_train, y_train, X_test, y_test, config)
        except BaseException:
            self._lock.close()
            raise

    def _create(self, final: Path, partial: Path, X_train: Any, y_train: Any, X_test: Any,
                y_test: Any, config: Mapping[str, Any] | None) -> None:
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
        need = sum(v.nbytes for v in data.values()) + _SLACK
        check_free_space(final.parent, need, f"the run file {final}")
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
            self._lock.close()

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
        need = sum(np.asarray(a).nbytes for a in getattr(net, "weights", ()))
        need += sum(np.asarray(a).nbytes for a in getattr(net, "biases", ()) if a is not None)
        need += sum(v.nbytes for v in arrays.values())
        need += sum(np.asarray(v).nbytes for v in extra.values() if not isinstance(v, Mapping))
        # HDF5 cannot recover from a full disk in the middle of a write: the blocks the
        # checkpoint needs are reserved first (a full disk fails here, the file intact)
        reserve(self.partial, need + need // 8 + _CHECKPOINT_SLACK,
                what=f"checkpoint {index} of {self.path}")
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
        reserve(self.partial, _SLACK, what=f"the summary of {self.path}")
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
            try:
                reserve(self.partial, _SLACK, what=f"the run file {self.path}")
                with h5py.File(self.partial, "r+") as f:
                    f.attrs["complete"] = True
                _publish(self.partial, self.path)
                self._closed = True
            finally:
                if self._closed:
                    self._lock.close()
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
        data = {}
        for k, v in f["data"].items():
            check_stored(v, p, f"dataset {v.name!r}")
            data[k] = v[()]
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


def _run_summary(f: h5py.File, p: Path) -> dict[str, Any]:
    """The run-file fields of :func:`kernelcomp.io.file_info` (JSON serialisable)."""
    data = f.get("data", {})
    cks = f.get("checkpoints", {})
    return {
        "complete": bool(f.attrs.get("complete", True)),
        "config": _loads(f.attrs.get("config")) or {},
        "summary": _loads(f.attrs.get("summary")) or {},
        "data": {k: list(v.shape) for k, v in data.items()},
        "diagnostics": sorted(f.get("diagnostics", {})),
        "checkpoints": [
            {
                "step": int(cks[k].attrs.get("step", -1)),
                "time": _opt_float(cks[k].attrs.get("time")),
                "loss": _opt_float(cks[k].attrs.get("loss")),
            }
            for k in sorted(cks)
        ],
    }
