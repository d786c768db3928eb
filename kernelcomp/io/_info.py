"""Any kernelcomp file: what it holds (:func:`file_info`) and the network it holds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from kernelcomp._h5 import (
    NETWORK_FORMAT,
    PARTIAL_SUFFIX,
    FormatError,
    _as_str,
    _existing,
    _file_format,
    _open_checked,
    _open_h5,
)
from kernelcomp._validation import check_int
from kernelcomp.io._diag_file import _diagnostics_summary
from kernelcomp.io._gram_file import _gram_summary
from kernelcomp.io._run_file import _run_summary, open_run

if TYPE_CHECKING:
    from kernelcomp.network import FCNetwork


def _network_file_info(p: Any) -> dict[str, Any] | None:
    """Description of a network file (``FCNetwork.save(".h5")``), else None."""
    if not isinstance(p, Path) or not p.is_file():
        return None
    try:
        f = _open_h5(p)
    except FormatError:
        return None
    with f:
        if _as_str(f.attrs.get("kernelcomp_format")) != NETWORK_FORMAT:
            return None
        from kernelcomp.network import FCNetwork

        net = FCNetwork.from_hdf5(f)  # checks the network encoding's own version
        return {
            **_header_summary(f, p),
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
        return {**_header_summary(f, p), **_SUMMARIES[fmt](f, p)}


def _header_summary(f: h5py.File, p: Path) -> dict[str, Any]:
    """The fields of :func:`file_info` every kernelcomp file has (its header)."""
    return {
        "path": os.fspath(p),
        "format": _as_str(f.attrs.get("kernelcomp_format")),
        "format_version": _as_str(f.attrs.get("kernelcomp_format_version")),
        "kernelcomp_version": _as_str(f.attrs.get("kernelcomp_version")),
        "created": _as_str(f.attrs.get("created")),
    }


#: format -> the format-specific fields of :func:`file_info`
_SUMMARIES: dict[str, Callable[[h5py.File, Path], dict[str, Any]]] = {
    "gram": _gram_summary,
    "run": _run_summary,
    "diagnostics": _diagnostics_summary,
}

def _read_network(
    path: Any, *, checkpoint: int = -1, activation: str | None = None
) -> FCNetwork:
    """The network a file holds: a network file, or one checkpoint of a run file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file (:meth:`FCNetwork.save <kernelcomp.FCNetwork.save>`, a
        state dict or a weight list), a network ``.h5``/``.hdf5`` file, or a run
        file (also the ``.partial`` file of a run that did not finish).
    checkpoint : int, default -1
        Which checkpoint of a run file, indexed as a Python list (-1: the last).
    activation : str, optional
        For state-dict and weight-list ``.npz`` files, which do not record it
        (as in :meth:`FCNetwork.load <kernelcomp.FCNetwork.load>`).

    Returns
    -------
    FCNetwork

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If an HDF5 file holds neither a network nor a run.
    ValueError
        For another extension, a checkpoint out of range, or ``activation``
        with a file that records its own.

    Examples
    --------
    >>> import numpy as np, tempfile, os, kernelcomp as kc
    >>> net = kc.FCNetwork.init(3, [4], seed=0)
    >>> path = net.save(os.path.join(tempfile.mkdtemp(), "net.h5"))
    >>> _read_network(path) == net
    True
    """
    from kernelcomp.network import FCNetwork

    p = _existing(path)
    checkpoint = check_int(checkpoint, "checkpoint")
    ext = p.suffix.lower()
    if ext == PARTIAL_SUFFIX:
        ext = Path(p.stem).suffix.lower()
    if ext == ".npz":
        return FCNetwork.load(p, activation=activation)
    if ext not in (".h5", ".hdf5"):
        raise ValueError(
            f"{p}: unsupported network file type {p.suffix or '(none)'!r}; expected .npz or .h5"
        )
    if activation is not None:
        raise ValueError(f"{p}: activation applies to state-dict and weight-list .npz files only")
    fmt = _file_format(p)
    if fmt == NETWORK_FORMAT:
        with _open_h5(p) as f:
            return FCNetwork.from_hdf5(f)
    if fmt != "run":
        found = "it has no kernelcomp_format" if fmt is None else f"its format is {fmt!r}"
        raise FormatError(f"{p} is not a kernelcomp network or run file ({found})")
    checkpoints = open_run(p).checkpoints
    n = len(checkpoints)
    if not -n <= checkpoint < n:
        raise ValueError(f"{p} has {n} checkpoints; checkpoint {checkpoint} is out of range")
    return checkpoints[checkpoint].network
