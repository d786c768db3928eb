"""
The command line, from Python
=============================

Everything above is also a shell command: ``kernelcomp gram``, ``train``,
``kpca``, ``geometry``, ``info`` and ``demo`` (:doc:`/cli`). The command line's
entry point, ``kernelcomp.cli.main``, takes the arguments as a list and
returns the exit status, so the same steps run from Python (or a notebook)
exactly as in a terminal::

    kernelcomp gram X.npy --kernel ntk --depth 2 -o K.h5
    kernelcomp train stripe --p 128 --d 5 --h 64 --regime feature -o run.h5
    kernelcomp kpca run.h5 -o diag.h5 --informative 0 --plot figs
"""

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc
from kernelcomp.cli import main

tmp = Path(tempfile.mkdtemp())


def path(name):
    """Where the example keeps its files (a temporary folder)."""
    return str(tmp / name)


# %%
# A Gram file
# -----------
# ``gram`` reads ``.npy``/``.npz``/``.csv``/``.h5`` inputs and writes a Gram file
# (Ctrl-C and ``--resume`` continue it); ``info`` describes any kernelcomp file.
X, y = kc.datasets.stripe(500, 5, seed=0)
np.save(path("X.npy"), X)
status = main(["gram", path("X.npy"), "--kernel", "ntk", "--depth", "2", "-o", path("K.h5"),
               "--quiet"])
print("exit status", status)
main(["info", path("K.h5")])

# %%
# User errors print one line and return status 2 (the shell sees the exit status);
# nothing is written.
with contextlib.redirect_stderr(sys.stdout):
    status = main(["gram", path("X.npy"), "--kernel", "ntk", "--activation", "swish",
                   "-o", path("K2.h5")])
    status_missing = main(["gram", path("Z.npy"), "-o", path("K2.h5")])
print("exit status", status, status_missing, "| K2.h5 exists:", Path(path("K2.h5")).exists())

# %%
# A training run and its kernel PCA
# ---------------------------------
# ``train`` writes a run file with the network at every checkpoint; ``kpca``
# computes the empirical NTK of each checkpoint on the training points, its
# kernel PCA, the labels' projections and mutual information (and, with
# ``--informative``, the compression), into a diagnostics file, and with
# ``--plot`` draws them.
main(["train", "stripe", "--p", "128", "--d", "5", "--h", "64", "--regime", "feature",
      "-o", path("run.h5"), "--quiet"])
main(["kpca", path("run.h5"), "-o", path("diag.h5"), "--informative", "0",
      "--n-components", "60", "--plot", path("figs"), "--quiet"])
print(sorted(p.name for p in Path(path("figs")).iterdir()))

# %%
# The files are plain HDF5; :mod:`kernelcomp.io` reads them back.
diag = kc.io.load_diagnostics(path("diag.h5"))
print(type(diag).__name__, "with", len(diag.entries), "entries")

# %%
# The figures ``kpca --plot`` drew, one curve per checkpoint of the run.
fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), layout="constrained")
for ax, name in zip(axes.flat, sorted(Path(path("figs")).iterdir()), strict=True):
    ax.imshow(plt.imread(name))
    ax.set_axis_off()
plt.show()

shutil.rmtree(tmp)  # the example's files
