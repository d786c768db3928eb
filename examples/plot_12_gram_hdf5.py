"""
Gram matrices in HDF5 files, interrupted and resumed
====================================================

A Gram matrix that does not fit in memory is written block by block into any
array-like that takes slices, an :mod:`h5py` dataset included:
``kc.gram(kernel, X, out=dataset)`` never holds more than a few blocks.
:func:`kernelcomp.io.compute_gram_file` (what ``kernelcomp gram`` runs) adds a
completion record: an interrupted computation stays in ``PATH.partial`` and
``resume=True`` continues it, with a result identical to an uninterrupted run.
Files are plain HDF5, readable with :mod:`h5py` alone (layout in
:doc:`/formats`).
"""

import shutil
import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc

tmp = Path(tempfile.mkdtemp())
X = np.random.default_rng(0).standard_normal((1200, 8)).astype(np.float32)
ntk = kc.NTK(depth=3, bias_std=0.1)

# %%
# Into an h5py dataset
# --------------------
# Chunks aligned with the row blocks keep the writes cheap; float32 inputs give a
# float32 Gram.
with h5py.File(tmp / "K_direct.h5", "w") as f:
    dset = f.create_dataset("K", shape=(1200, 1200), dtype="f4", chunks=(256, 256))
    kc.gram(ntk, X, out=dset, block_rows=256)
    print("first entries:", dset[0, :3])

# %%
# Interrupted, then resumed
# -------------------------
# ``should_stop`` is polled after each row block (Ctrl-C does the same on the
# command line); here it stops after two of the five blocks.
path = tmp / "K.h5"
blocks = []


def stop_after_two():
    blocks.append(1)
    return len(blocks) >= 2


try:
    kc.io.compute_gram_file(ntk, X, None, path, block_rows=256, should_stop=stop_after_two)
except kc.io.GramInterrupted as exc:
    print(f"interrupted: {exc.done} of {exc.total} blocks in {exc.partial.name}")

with h5py.File(tmp / "K.h5.partial", "r") as f:  # what the partial file holds so far
    partial = f["gram"][...]
    print("completed blocks:", f["completed_blocks"][...], " complete:", f.attrs["complete"])

info = kc.io.compute_gram_file(ntk, X, None, path, resume=True)
print(f"resumed: complete={info.complete}, {info.n_blocks} blocks, dtype {info.dtype}")
K = kc.io.load_gram(path)
with h5py.File(tmp / "K_direct.h5", "r") as f:
    print("identical to the direct computation:", np.array_equal(K, f["K"][...]))
print("the file's root attributes:", sorted(kc.io.read_gram_info(path).attrs))

# %%
# What the partial file held (the rows of the two completed blocks; entries not
# yet written read as zero, white here), and the complete Gram.
fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), layout="constrained")
for ax, M, title in ((axes[0], partial, "K.h5.partial after the interruption"),
                     (axes[1], K, "K.h5 after resume=True")):
    ax.imshow(np.where(M == 0, np.nan, M), cmap="viridis", vmin=K.min(), vmax=K.max())
    ax.set(title=title, xticks=[], yticks=[])
plt.show()

shutil.rmtree(tmp)  # the example's files
