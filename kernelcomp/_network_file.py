"""FCNetwork files: the ``fcnetwork`` encoding in HDF5 groups and ``.npz`` files.

The persistence behind :meth:`FCNetwork.to_hdf5 <kernelcomp.network.FCNetwork.to_hdf5>`,
``from_hdf5``, ``save`` and ``load``. The functions take the network (or the
class to build) as their first argument, so this module never imports
:mod:`kernelcomp.network` (nor :mod:`kernelcomp.io`): the network delegates
here, and loading a state-dict ``.npz`` goes back through
``cls.from_torch``.

Encoding (version :data:`ENCODING_VERSION`): datasets ``W0 .. WL`` and ``b{l}``
for the layers with a bias; attributes ``kernelcomp_encoding="fcnetwork"``,
``kernelcomp_encoding_version``, ``activation``, ``parameterization``,
``n_layers``, ``weight_mult``, ``bias_mult``, ``has_bias``. An ``.h5`` file
written by :func:`save` holds them at its root, stamped with the ``network``
file format; an ``.npz`` holds the same keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp._h5 import (
    NETWORK_FORMAT,
    FormatError,
    _open_h5,
    _output_path,
    atomic_write,
    check_stored,
    stamp,
)

__all__ = ["ENCODING", "ENCODING_VERSION", "from_arrays", "from_hdf5", "load", "meta", "plain",
           "save", "to_hdf5", "weight_list"]

#: name and version of the on-disk encoding (HDF5 group attributes / npz keys)
ENCODING = "fcnetwork"
ENCODING_VERSION = "1.0"


def meta(net: Any) -> dict[str, Any]:
    """The encoding's attributes of ``net`` (everything but the arrays)."""
    return {
        "kernelcomp_encoding": ENCODING,
        "kernelcomp_encoding_version": ENCODING_VERSION,
        "activation": net.activation,
        "parameterization": net.parameterization,
        "n_layers": net.n_layers,
        "weight_mult": np.asarray(net.weight_mult, dtype=np.float64),
        "bias_mult": np.asarray(net.bias_mult, dtype=np.float64),
        "has_bias": np.asarray(net.has_bias, dtype=np.int8),
    }


def to_hdf5(net: Any, group: Any) -> None:
    """Write ``net`` into an empty h5py group (see ``FCNetwork.to_hdf5``)."""
    for l in range(net.n_layers):
        for key in (f"W{l}", f"b{l}"):
            if key in group:
                raise ValueError(f"group {group.name!r} already holds {key!r}")
    for key, value in meta(net).items():
        group.attrs[key] = value
    for l, (W, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        group.create_dataset(f"W{l}", data=W)
        if b is not None:
            group.create_dataset(f"b{l}", data=b)


def from_arrays(cls: Any, attrs: Mapping[str, Any], arrays: Mapping[str, Any], where: str) -> Any:
    """Build a ``cls`` network from the encoding's attributes ``attrs`` and ``arrays``.

    ``where`` names the source in error messages (a file, an HDF5 group).
    """
    enc = plain(attrs.get("kernelcomp_encoding"))
    if enc != ENCODING:
        raise ValueError(
            f"{where} does not hold a kernelcomp network (kernelcomp_encoding is "
            f"{enc!r}, expected {ENCODING!r})"
        )
    version = str(plain(attrs.get("kernelcomp_encoding_version", "")))
    if version.split(".")[0] != ENCODING_VERSION.split(".")[0]:
        raise ValueError(
            f"{where} holds network encoding version {version!r}; this kernelcomp reads "
            f"major version {ENCODING_VERSION.split('.')[0]}"
        )
    try:
        n_layers = int(plain(attrs["n_layers"]))
        has_bias = [bool(v) for v in np.ravel(attrs["has_bias"])]
        weight_mult = [float(v) for v in np.ravel(attrs["weight_mult"])]
        bias_mult = [float(v) for v in np.ravel(attrs["bias_mult"])]
        activation = str(plain(attrs["activation"]))
        parameterization = str(plain(attrs["parameterization"]))
    except KeyError as exc:
        raise ValueError(f"{where} lacks the network attribute {exc.args[0]!r}") from exc
    for name, vals in (
        ("has_bias", has_bias),
        ("weight_mult", weight_mult),
        ("bias_mult", bias_mult),
    ):
        if len(vals) != n_layers:
            raise ValueError(
                f"{where}: {name} has {len(vals)} values but the network has {n_layers} layers"
            )
    weights, biases = [], []
    for l in range(n_layers):
        if f"W{l}" not in arrays:
            raise ValueError(f"{where} lacks the weight matrix 'W{l}' ({n_layers} layers)")
        weights.append(np.asarray(arrays[f"W{l}"]))
        if has_bias[l]:
            if f"b{l}" not in arrays:
                raise ValueError(f"{where} lacks the bias 'b{l}' of layer {l}")
            biases.append(np.asarray(arrays[f"b{l}"]))
        else:
            biases.append(None)
    try:
        return cls(weights, biases, activation, weight_mult, bias_mult, parameterization)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} holds an invalid network: {exc}") from exc


def from_hdf5(cls: Any, group: Any) -> Any:
    """Read a ``cls`` network from an h5py group (see ``FCNetwork.from_hdf5``)."""
    where = f"HDF5 group {getattr(group, 'name', '?')!r}"
    f = getattr(group, "file", None)
    if f is not None and getattr(f, "filename", None):
        where += f" of {f.filename!r}"
    arrays = {}
    for k in group.keys():
        if k[:1] in ("W", "b"):
            if f is not None and getattr(f, "filename", None):
                try:  # in the file, and holding the bytes it declares
                    check_stored(group[k], Path(f.filename), f"weights {k!r}")
                except FormatError as exc:
                    raise ValueError(str(exc)) from None
            arrays[k] = group[k][()]
    return from_arrays(cls, dict(group.attrs), arrays, where)


def save(net: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``net`` to ``.npz`` or ``.h5``/``.hdf5``, atomically (see ``FCNetwork.save``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".h5", ".hdf5"):
        raise ValueError(
            f"cannot save a network to {str(path)!r}: the extension must be .npz, .h5 or .hdf5"
        )
    # the library's output-path policy (a file name, in an existing folder); a
    # network file is overwritten, as numpy.save and torch.save do
    _output_path(path, force=True)
    with atomic_write(path) as tmp:
        if suffix == ".npz":
            arrays: dict[str, Any] = dict(meta(net))
            for l, (W, b) in enumerate(zip(net.weights, net.biases, strict=True)):
                arrays[f"W{l}"] = W
                if b is not None:
                    arrays[f"b{l}"] = b
            with open(tmp, "wb") as fh:  # a file object: savez adds no ".npz" to it
                np.savez(fh, **arrays)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                stamp(f, NETWORK_FORMAT, ENCODING_VERSION)
                net.to_hdf5(f)  # the method: a subclass or a test may replace it
    return path


def load(
    cls: Any,
    path: str | os.PathLike[str],
    *,
    group: str | None = None,
    activation: str | None = None,
) -> Any:
    """Read a ``cls`` network from a file (see ``FCNetwork.load``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no network file at {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if group is not None:
            raise ValueError("group is only used with HDF5 files")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{str(path)!r} is not a readable .npz file: {exc}") from exc
        if "kernelcomp_encoding" in data:
            if activation is not None:
                raise ValueError(
                    "activation is only used for state-dict .npz files; "
                    f"{str(path)!r} records its own"
                )
            return from_arrays(cls, data, data, f"file {str(path)!r}")
        if data and all(k.endswith((".weight", ".bias")) for k in data):
            return cls.from_torch(data, activation=activation or "relu")
        layers = weight_list(data)
        if layers is not None:
            return cls.from_torch(layers, activation=activation or "relu")
        raise ValueError(
            f"{str(path)!r} holds neither a kernelcomp network, a state dict "
            "('<layer>.weight'/'<layer>.bias' keys) nor a weight list (np.savez(f, W0, b0, "
            f"W1, b1, ...) or keys W0, b0, ...); found keys {sorted(data)[:8]}"
        )
    if suffix in (".h5", ".hdf5"):

        if activation is not None:
            raise ValueError("activation is only used for state-dict .npz files")
        try:
            f = _open_h5(Path(path))
        except FormatError as exc:
            raise ValueError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from exc
        with f:
            g = f if group is None else f.get(group)
            if g is None:
                raise ValueError(f"{str(path)!r} has no group {group!r}")
            return cls.from_hdf5(g)
    raise ValueError(
        f"cannot load a network from {str(path)!r}: the extension must be .npz, .h5 or .hdf5"
    )


def weight_list(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """A state dict from a ``.npz`` weight list, or None if ``data`` is not one.

    Accepts ``np.savez(f, W0, b0, W1, b1, ...)`` (keys ``arr_0, arr_1, ...``) and
    keys ``W0, b0, W1, ...``; a 1-D array right after a weight matrix with one
    value per output is that layer's bias.
    """
    positional = {k: int(k[4:]) for k in data if re.fullmatch(r"arr_\d+", k)}
    if data and len(positional) == len(data):
        arrays = [data[k] for k in sorted(data, key=positional.__getitem__)]
    else:
        named = [re.fullmatch(r"([Wb])(\d+)", k) for k in data]
        if not data or not all(named):
            return None
        order = sorted(data, key=lambda k: (int(k[1:]), k[0] != "W"))
        arrays = [data[k] for k in order]
    sd: dict[str, np.ndarray] = {}
    layer = -1
    for arr in arrays:
        if arr.ndim == 2:
            layer += 1
            sd[f"{layer}.weight"] = arr
        elif arr.ndim == 1 and layer >= 0 and f"{layer}.bias" not in sd:
            sd[f"{layer}.bias"] = arr
        else:
            return None
    return sd or None


def plain(v: Any) -> Any:
    """A str, or a Python scalar, from an attribute read back by h5py or numpy."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v
