"""Threads, memory and progress bars of long computations.

* :func:`resolve_n_jobs`, :func:`n_jobs_context`: ``n_jobs`` maps to numba's
  thread count.
* :func:`available_memory`: the memory free for new allocations, from which
  the default budgets are derived (the torch engine's blocks, Falkon's stored
  cross Gram); :func:`bytes_text` writes a byte count for log lines.
* :func:`progress`: a tqdm bar when asked for, a stand-in that does nothing
  otherwise, closed at the end either way.
* :func:`ticking`, :func:`active_ticks`: a bar that moves while one compiled
  pass runs. The pass counts its work per thread into an array
  (:mod:`kernelcomp._kernels.progress`); a polling thread turns the count into
  bar updates, so a row block that takes minutes moves the bar tile by tile.
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np


def max_threads() -> int:
    """The number of threads numba was started with."""
    return int(numba.config.NUMBA_NUM_THREADS)


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Turn an sklearn/joblib-style ``n_jobs`` into a thread count.

    ``None`` and ``-1`` mean all threads; ``-2`` all but one, and so on;
    positive values are capped at numba's maximum.

    Raises
    ------
    TypeError
        If ``n_jobs`` is not an integer or None.
    ValueError
        If ``n_jobs`` is 0 or asks for fewer than one thread.
    """
    top = max_threads()
    if n_jobs is None:
        return top
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"n_jobs must be an int or None, got {type(n_jobs).__name__}")
    n = int(n_jobs)
    if n == 0:
        raise ValueError("n_jobs must be a non-zero integer or None, got 0")
    if n < 0:
        n = top + 1 + n
        if n < 1:
            raise ValueError(
                f"n_jobs={n_jobs} leaves no thread (numba has {top} threads)"
            )
    return min(n, top)


@contextmanager
def n_jobs_context(n_jobs: int | None) -> Iterator[int]:
    """Run a block with numba's thread count set from ``n_jobs``, then restore it.

    Yields
    ------
    int
        The thread count in force inside the block.
    """
    n = resolve_n_jobs(n_jobs)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations, or None where unknown.

    Linux's ``MemAvailable`` (free memory plus the caches the kernel can drop),
    read when called; elsewhere ``os.sysconf``'s available pages where the
    platform has them.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - not Linux
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def bytes_text(nbytes: float) -> str:
    """A byte count for log lines, in powers of 1024 (``1.5 GiB``)."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(nbytes) < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


class _NoBar:
    """What :func:`progress` yields when no bar is shown: tqdm's methods, doing nothing."""

    def update(self, n: float = 1) -> None:
        """Ignore progress."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Ignore the bar's suffix."""

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        """Ignore the bar's suffix."""

    def close(self) -> None:
        """Nothing to close."""


@contextmanager
def progress(enabled: bool, **tqdm_kwargs: Any) -> Iterator[Any]:
    """A progress bar for a ``with`` block: tqdm when ``enabled``, a silent stand-in otherwise.

    The caller calls ``bar.update(n)`` (and ``bar.set_postfix(...)``) without
    checking whether a bar is shown; the bar is closed when the block ends,
    also when it raises. tqdm is imported only when a bar is shown.

    Parameters
    ----------
    enabled : bool
        Show a bar (:func:`tqdm.auto.tqdm`).
    **tqdm_kwargs
        Passed to tqdm (``total``, ``initial``, ``unit``, ``desc``, ``leave``...).

    Yields
    ------
    tqdm.tqdm or object
        The bar, or an object whose ``update``, ``set_postfix`` and ``close``
        do nothing.

    Examples
    --------
    >>> with progress(False, total=3, unit="block") as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    """
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(**tqdm_kwargs)
    try:
        yield bar
    finally:
        bar.close()


# -- progress inside compiled passes ----------------------------------------------

#: how often the polling thread moves a bar (seconds)
TICK_INTERVAL = 0.25

_local = threading.local()


def new_ticks() -> np.ndarray:
    """A zeroed work counter for one compiled pass (layout: :mod:`kernelcomp._kernels.progress`)."""
    return np.zeros((max_threads() + 1, 8), dtype=np.int64)


#: the counter passes write into when nobody watches (its counts are never read)
_UNWATCHED = new_ticks()


def active_ticks() -> np.ndarray:
    """The counter a kernel passes to its compiled pass.

    The watched one inside :meth:`Ticker.span` on this thread, else a shared
    one nobody reads.
    """
    ticks = getattr(_local, "ticks", None)
    return _UNWATCHED if ticks is None else ticks


def add_ticks(work: int, total: int) -> None:
    """Count ``work`` of ``total`` done from Python (kernels whose loop is Python's)."""
    ticks = active_ticks()
    ticks[-1, 0] = total
    ticks[0, 0] += work


class Ticker:
    """Moves a bar by the work the compiled passes of each :meth:`span` report.

    A daemon thread polls the span's counter every :data:`TICK_INTERVAL`
    seconds and advances the bar to ``start + units * done / total`` (whole
    units); the span's end moves it to ``start + units`` whatever was counted,
    so kernels that count nothing advance as before, once per span.
    """

    def __init__(self, bar: Any, interval: float | None = None) -> None:
        interval = TICK_INTERVAL if interval is None else interval
        self._bar = bar
        self._lock = threading.Lock()
        self._base = 0.0
        self._units = 0.0
        self._ticks: np.ndarray | None = None
        self._shown = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)
        self._thread.start()

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.refresh()

    def refresh(self) -> None:
        """Move the bar to the work counted so far."""
        with self._lock:
            pos = self._base
            ticks = self._ticks
            if ticks is not None:
                total = int(ticks[-1, 0])
                if total > 0:
                    pos += self._units * min(1.0, float(ticks[:-1, 0].sum()) / total)
            self._move(pos)

    def _move(self, pos: float) -> None:
        step = int(pos + 1e-9) - self._shown
        if step > 0:
            self._bar.update(step)
            self._shown += step

    @contextmanager
    def span(self, units: float) -> Iterator[None]:
        """Calls in this block (on this thread) advance the bar by ``units`` in all."""
        ticks = new_ticks()
        with self._lock:
            self._ticks = ticks
            self._units = units
        _local.ticks = ticks
        try:
            yield
        finally:
            _local.ticks = None
            with self._lock:
                self._ticks = None
                self._base += units
                self._move(self._base)

    def note(self, text: str) -> None:
        """Show ``text`` after the bar (what runs now; ``""`` clears it)."""
        with self._lock:
            self._bar.set_postfix_str(text)

    def close(self) -> None:
        """Stop the polling thread."""
        self._stop.set()
        self._thread.join()


class _NoTicker:
    """What :func:`ticking` yields without a bar: spans that count nothing."""

    @contextmanager
    def span(self, units: float) -> Iterator[None]:
        """Do nothing."""
        yield

    def note(self, text: str) -> None:
        """Do nothing."""


#: a ticker that does nothing (for callers without a bar)
NO_TICKER = _NoTicker()


@contextmanager
def ticking(bar: Any, interval: float | None = None) -> Iterator[Ticker | _NoTicker]:
    """A :class:`Ticker` on ``bar`` for a ``with`` block (nothing for a stand-in bar).

    Examples
    --------
    >>> with progress(False, total=10) as bar, ticking(bar) as ticker:
    ...     with ticker.span(10):
    ...         pass
    """
    if isinstance(bar, _NoBar):
        yield NO_TICKER
        return
    ticker = Ticker(bar, interval)
    try:
        yield ticker
    finally:
        ticker.close()
