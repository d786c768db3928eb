"""Thread counts and progress bars of long computations.

* :func:`resolve_n_jobs`, :func:`n_jobs_context`: ``n_jobs`` maps to numba's
  thread count.
* :func:`progress`: a tqdm bar when asked for, a stand-in that does nothing
  otherwise, closed at the end either way.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba


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


class _NoBar:
    """What :func:`progress` yields when no bar is shown: tqdm's methods, doing nothing."""

    def update(self, n: float = 1) -> None:
        """Ignore progress."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
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
