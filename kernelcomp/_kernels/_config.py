"""The one decorator factory for compiled kernels.

Every compiled function in kernelcomp goes through :func:`jit`, so caching and
floating-point flags are set in one place:

* ``cache=True`` by default (on-disk cache next to the sources); set the
  environment variable ``KERNELCOMP_NUMBA_CACHE=0`` to turn it off (read-only
  installs, debugging).
* No eager signatures: each function compiles lazily, once per argument type;
  the public layer normalises inputs to C-contiguous float32/float64 so a
  kernel compiles at most twice.
* ``error_model="numpy"``: float division by zero gives inf/NaN as in NumPy
  instead of a Python exception; the check it avoids blocks vectorisation of
  every loop that divides. Kernels guard their divisions explicitly.
* ``fastmath`` is off: the element-wise loops vectorise without it, and keeping
  IEEE semantics makes every entry bit-identical whatever the tiling or the
  thread count (and keeps NaN/inf checks meaningful).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numba

CACHE: bool = os.environ.get("KERNELCOMP_NUMBA_CACHE", "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}


def jit(
    func: Callable[..., Any] | None = None, *, parallel: bool = False
) -> Callable[..., Any]:
    """Compile ``func`` in nopython mode with kernelcomp's shared options.

    Parameters
    ----------
    func : callable, optional
        The function to compile. When omitted, returns a decorator.
    parallel : bool, default False
        Enable ``numba.prange`` loops.

    Returns
    -------
    callable
        The compiled dispatcher (or a decorator producing it).
    """

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        return numba.njit(
            f,
            cache=CACHE,
            parallel=parallel,
            fastmath=False,
            nogil=True,
            error_model="numpy",
        )

    return wrap if func is None else wrap(func)
