"""The one decorator factory for compiled kernels.

Every compiled function in kernelcomp goes through :func:`jit`, so caching and
floating-point flags are set in one place:

* ``cache=True`` by default (on-disk cache next to the sources); set the
  environment variable ``KERNELCOMP_NUMBA_CACHE=0`` to turn it off (read-only
  installs, debugging). numba keys a cached function on its own file only, so a
  kernel inlining a helper from another file (every kernel calls ``phi`` of
  ``activations.py``) would keep running the old helper after that file
  changed. :func:`_drop_stale_cache` therefore fingerprints all the compiled
  sources and clears the package's cache when the fingerprint changes, in
  every folder where numba really keeps it (``__pycache__`` next to the
  sources, ``NUMBA_CACHE_DIR``, or numba's user-wide cache of a read-only
  install): :func:`jit` asks each new dispatcher for its cache folder.
* No eager signatures: each function compiles lazily, once per argument type;
  the public layer normalises inputs to C-contiguous float32/float64 so a
  kernel compiles at most twice.
* ``error_model="numpy"``: float division by zero gives inf/NaN as in NumPy
  instead of a Python exception; the check it avoids blocks vectorisation of
  every loop that divides. Kernels guard their divisions explicitly.
* ``fastmath`` is off: the element-wise loops vectorise without it, and keeping
  IEEE semantics makes every entry bit-identical whatever the tiling or the
  thread count (and keeps NaN/inf checks meaningful).

GPU kernels go through :func:`cuda_jit`, the CUDA counterpart (numba's CUDA
target, the optional package numba-cuda: ``pip install 'kernelcomp[cuda]'``).
numba-cuda is imported only when a CUDA function is defined, so kernelcomp
imports and runs on the CPU without it; where it is missing, :func:`cuda_jit`
returns a placeholder that raises :class:`CudaUnavailableError` when used.
Set ``NUMBA_ENABLE_CUDASIM=1`` before numba is first imported to run the CUDA
code in numba's simulator (no GPU needed; slow: for tests).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba

CACHE: bool = os.environ.get("KERNELCOMP_NUMBA_CACHE", "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}

_HERE = Path(__file__).resolve().parent
_STAMP_NAME = "kernelcomp-sources.sha256"


def _sources_fingerprint(folder: Path = _HERE) -> str:
    """SHA-256 of the compiled sources (``*.py`` of ``folder``) and of numba's version."""
    h = hashlib.sha256(numba.__version__.encode())
    for path in sorted(folder.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _drop_stale_cache(folder: Path = _HERE, cache: Path | None = None) -> bool:
    """Remove numba's cache files in ``cache`` when any source of ``folder`` changed.

    Parameters
    ----------
    folder : pathlib.Path
        The compiled sources.
    cache : pathlib.Path, optional
        Where numba keeps their cache (default ``folder/__pycache__``).

    Returns True when files were removed. Errors (a read-only install, a
    concurrent cleaner) leave the cache as it is: numba then recompiles or
    falls back to its own user-wide cache.
    """
    cache = folder / "__pycache__" if cache is None else Path(cache)
    stamp = cache / _STAMP_NAME
    fingerprint = _sources_fingerprint(folder)
    try:
        if stamp.read_text(encoding="ascii").strip() == fingerprint:
            return False
    except OSError:
        pass
    removed = False
    try:
        cache.mkdir(exist_ok=True)
        for path in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            path.unlink(missing_ok=True)
            removed = True
        # written aside and renamed: a process importing kernelcomp at the same time
        # (pytest-xdist workers, a test's subprocess) never reads a half-written stamp,
        # which would make it clear the cache again
        partial = stamp.with_name(f"{_STAMP_NAME}.{os.getpid()}.tmp")
        partial.write_text(fingerprint + "\n", encoding="ascii")
        os.replace(partial, stamp)
    except OSError:
        pass
    return removed


#: cache folders already checked in this process
_CHECKED: set[str] = set()


def _check_cache_of(dispatcher: Any) -> None:
    """Drop stale entries where numba keeps ``dispatcher``'s cache (once per folder)."""
    cache_obj = getattr(dispatcher, "_cache", None)
    path = getattr(cache_obj, "_cache_path", None)
    if not path or path in _CHECKED:
        return
    _CHECKED.add(path)
    if Path(path).resolve() == (_HERE / "__pycache__").resolve():
        return  # checked at import
    _drop_stale_cache(_HERE, Path(path))


if CACHE:
    _drop_stale_cache()
    _CHECKED.add(str(_HERE / "__pycache__"))


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
        dispatcher = numba.njit(
            f,
            cache=CACHE,
            parallel=parallel,
            fastmath=False,
            nogil=True,
            error_model="numpy",
        )
        if CACHE:
            _check_cache_of(dispatcher)
        return dispatcher

    return wrap if func is None else wrap(func)


# -- CUDA target -----------------------------------------------------------------


class CudaUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for, but numba-cuda or a CUDA device is missing."""


def cuda_module() -> Any:
    """numba's CUDA target (``numba.cuda`` from the package numba-cuda), imported now.

    Raises
    ------
    CudaUnavailableError
        If numba-cuda is not installed (numba's own deprecated ``numba.cuda``
        is not used).
    """
    if importlib.util.find_spec("numba_cuda") is None:
        raise CudaUnavailableError(
            "device='cuda' needs numba-cuda, which is not installed: "
            "pip install 'kernelcomp[cuda]' (or pip install numba-cuda)"
        )
    from numba import cuda

    return cuda


def cuda_simulator(cuda: Any) -> bool:
    """Whether ``cuda`` (from :func:`cuda_module`) is numba's CUDA simulator."""
    try:
        from numba.cuda.core import config  # numba-cuda >= 0.20 keeps its own config
    except ImportError:  # pragma: no cover - older numba-cuda
        from numba.core import config
    return bool(getattr(config, "ENABLE_CUDASIM", False))


class _CudaMissing:
    """Stands for a CUDA function where numba-cuda is not installed."""

    def __init__(self, func: Callable[..., Any], reason: str) -> None:
        self.py_func = func
        self.reason = reason
        self.__name__ = getattr(func, "__name__", "cuda_function")
        self.__doc__ = getattr(func, "__doc__", None)

    def __getitem__(self, config: Any) -> Any:
        raise CudaUnavailableError(self.reason)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise CudaUnavailableError(self.reason)


def cuda_jit(
    func: Callable[..., Any] | None = None, *, device: bool = False
) -> Callable[..., Any]:
    """Compile ``func`` for numba's CUDA target with kernelcomp's shared options.

    Compilation is lazy (on the first launch, once per argument types); on a
    GPU, kernels use the on-disk cache like :func:`jit` (``KERNELCOMP_NUMBA_CACHE``).
    ``fastmath`` is off: IEEE division and square roots (the compiler may still
    contract a multiply and an add into one fused multiply-add; kernels that
    must round like the CPU say so explicitly).

    Parameters
    ----------
    func : callable, optional
        The function to compile. When omitted, returns a decorator.
    device : bool, default False
        A device function (called from kernels) rather than a kernel.

    Returns
    -------
    callable
        The CUDA dispatcher; where numba-cuda is not installed, a placeholder
        raising :class:`CudaUnavailableError` when launched or called.
    """

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        try:
            cuda = cuda_module()
        except CudaUnavailableError as exc:
            return _CudaMissing(f, str(exc))
        options: dict[str, Any] = {"device": device, "fastmath": False}
        if not device:
            options["cache"] = CACHE and not cuda_simulator(cuda)
        return cuda.jit(f, **options)

    return wrap if func is None else wrap(func)
