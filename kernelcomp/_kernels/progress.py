"""Progress of a compiled pass, counted per thread and read from Python while it runs.

``ticks`` is an int64 array of shape ``(slots + 1, 8)`` made by
:func:`kernelcomp._parallel.new_ticks`: row ``t < slots`` holds, in column 0,
the work done so far by numba thread ``t`` (one row per thread, so no two
threads write the same word and no atomics are needed; the 8 columns keep
the rows on separate cache lines), and the last row holds the pass's total
work, written once before the parallel loop. Python reads
``ticks[:-1, 0].sum() / ticks[-1, 0]`` from another thread (the passes
release the GIL). The counts touch no value of the result.
"""

from __future__ import annotations

import numba
import numpy as np

from kernelcomp._kernels._config import jit


@jit
def begin(ticks: np.ndarray, total: int) -> None:
    """Announce the total work of the pass about to run."""
    ticks[ticks.shape[0] - 1, 0] = total


@jit
def tick(ticks: np.ndarray, work: int) -> None:
    """Add ``work`` done by the calling thread."""
    slot = numba.get_thread_id()
    last = ticks.shape[0] - 2
    if slot > last:  # more threads than slots: share the last one (counts may be lost)
        slot = last
    ticks[slot, 0] += work


@jit
def tile_work(i0: int, i1: int, j0: int, j1: int, on_diag: bool) -> int:
    """Entries computed in the tile ``[i0, i1) x [j0, j1)`` (above the diagonal on it)."""
    r = i1 - i0
    if on_diag:
        return r * (r - 1) // 2 + r
    return r * (j1 - j0)


@jit
def tile_pairs(n: int, m: int, tile: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The tiles of an ``n x m`` output, in the order a tiled pass visits them.

    Returns ``(pti, ptj, total)``: tile ``p`` covers rows ``[pti[p] * tile, ...)`` and
    columns ``[ptj[p] * tile, ...)``; a symmetric output keeps only ``ti <= tj``.
    ``total`` is the number of entries the pass computes (:func:`tile_work` summed).
    """
    nti = (n + tile - 1) // tile
    ntj = (m + tile - 1) // tile
    npairs = nti * (nti + 1) // 2 if symmetric else nti * ntj
    pti = np.empty(npairs, dtype=np.int64)
    ptj = np.empty(npairs, dtype=np.int64)
    p = 0
    total = 0
    for ti in range(nti):
        for tj in range(ti if symmetric else 0, ntj):
            pti[p] = ti
            ptj[p] = tj
            total += tile_work(ti * tile, min(n, ti * tile + tile), tj * tile,
                               min(m, tj * tile + tile), symmetric and ti == tj)
            p += 1
    return pti, ptj, total
