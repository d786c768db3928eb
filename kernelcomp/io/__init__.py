"""Self-describing HDF5 files: Gram matrices, training runs and diagnostics.

Every file kernelcomp writes is a plain HDF5 file (readable with ``h5py``
alone) whose root carries four attributes:

``kernelcomp_format``
    ``"gram"``, ``"run"`` or ``"diagnostics"`` (and ``"network"`` for the
    ``.h5`` files of ``FCNetwork.save``, which :func:`file_info` describes and
    ``FCNetwork.load`` reads).
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

Modules
-------
One module per format: ``_arrays`` (arrays from ``.npy``/``.npz``/``.csv``/
``.h5`` files, the command line's inputs), ``_gram_file``, ``_run_file``,
``_diag_file`` and ``_info`` (any file); the header, atomic-write and
attribute-codec layer they share is :mod:`kernelcomp._h5`.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), *Geometric compression of
invariant manifolds in neural networks*, J. Stat. Mech. 044001 (§3: the
checkpoints and kernels whose diagnostics these files hold).
"""

from __future__ import annotations

from kernelcomp._h5 import FORMAT_VERSIONS, PARTIAL_SUFFIX, FormatError  # noqa: F401
from kernelcomp.io._arrays import read_array
from kernelcomp.io._diag_file import (
    Diagnostics,
    add_run_diagnostics,
    load_diagnostics,
    save_diagnostics,
)
from kernelcomp.io._gram_file import (  # noqa: F401
    CHUNK,
    GramInfo,
    GramInterrupted,
    compute_gram_file,
    hash_inputs,
    load_gram,
    read_gram_info,
    save_gram,
)
from kernelcomp.io._info import file_info
from kernelcomp.io._run_file import Checkpoint, Run, RunWriter, open_run

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
# PARTIAL_SUFFIX (used by the command line) and CHUNK are importable too, not in __all__
