"""The kernel protocol shared by analytic and empirical kernels.

A kernelcomp kernel is a small immutable object. The public entry points
(``k(X)``, ``k(X, Y)``, ``k.diag(X)`` and :func:`kernelcomp.gram`) validate the
inputs and then talk to the kernel through four private hooks, which subclasses
implement:

``_prepare(X)``
    O(n) per-sample work on a validated, C-contiguous float32/float64 matrix
    (norms, per-layer diagonals, activations...). Returns an opaque object.
``_take(prep, start, stop)``
    The prepared state of rows ``start:stop`` (a view where possible).
``_fill(px, py, out, symmetric)``
    Write the Gram block of ``px`` against ``py`` into the preallocated
    C-contiguous ``out`` (same dtype as the inputs). With ``symmetric=True``,
    ``px is py`` and the result must be exactly symmetric.
``_diag(px)``
    The diagonal ``k(x_i, x_i)`` as a 1-D array.

Threads are set by the caller (:func:`kernelcomp._parallel.n_jobs_context`);
hooks never change them.

Devices: ``device="cuda"`` (``k(X, device="cuda")``, ``kc.gram(..., device="cuda")``)
runs the same entry points on :meth:`Kernel._for_device`'s result, a kernel
whose hooks compute on the GPU (:meth:`Kernel._cuda_backend`; kernels without
one refuse ``"cuda"`` with a NotImplementedError).

This module sits below the Gram driver (:mod:`kernelcomp._gram`), which builds
its tiled, out-of-core computation on :meth:`Kernel._gram_inputs` and
:meth:`Kernel._fill_gram`; it never imports the driver.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from kernelcomp._parallel import n_jobs_context
from kernelcomp._validation import check_choice, check_matrix, result_dtype

#: values of the ``device`` argument
DEVICES = ("cpu", "cuda")


def is_device_array(obj: Any) -> bool:
    """Whether ``obj`` lives on a GPU.

    True for a numba device array or any ``__cuda_array_interface__`` object
    (cupy, torch...). Imports nothing.
    """
    if isinstance(obj, np.ndarray):
        return False
    return bool(getattr(obj, "__cuda_ndarray__", False)) or (
        getattr(obj, "__cuda_array_interface__", None) is not None
    )


def check_device(device: Any) -> str:
    """Validate a ``device`` argument: ``"cpu"`` or ``"cuda"``."""
    if not isinstance(device, str):
        raise TypeError(f"device must be 'cpu' or 'cuda', got {type(device).__name__} {device!r}")
    check_choice(device, "device", DEVICES)
    return device


class Kernel(abc.ABC):
    """Base class of kernelcomp kernels.

    Subclasses implement the private hooks described in the module docstring;
    users call the kernel (``k(X)``, ``k(X, Y)``), :meth:`diag` or
    :func:`kernelcomp.gram`.
    """

    #: number of input features the kernel requires (None: any)
    n_features_in: int | None = None

    # -- public API ---------------------------------------------------------
    def __call__(
        self,
        X: Any,
        Y: Any = None,
        *,
        dtype: Any = None,
        n_jobs: int | None = None,
        device: str = "cpu",
    ) -> np.ndarray:
        """Gram matrix ``K[i, j] = k(x_i, y_j)`` (``Y=None``: of ``X`` with itself).

        Parameters
        ----------
        X : array-like of shape (n, d)
            With ``device="cuda"``, also a GPU array (a numba device array or
            any ``__cuda_array_interface__`` object: cupy, torch...).
        Y : array-like of shape (m, d), optional
        dtype : {None, "float32", "float64"}
            Output dtype; None gives float32 when every input is float32 and
            float64 otherwise.
        n_jobs : int, optional
            Threads to use (None: all).
        device : {"cpu", "cuda"}, default "cpu"
            Where the O(n m) work runs; ``"cuda"`` needs numba-cuda and a GPU
            (``NTK``/``NNGP``, ``ConvNTK``/``ConvNNGP``). The result is a NumPy
            array either way.

        Returns
        -------
        numpy.ndarray of shape (n, m)
        """
        k = self._for_device(device)
        X, Yc, dt = k._gram_inputs(X, Y, dtype)
        m = X.shape[0] if Yc is None else Yc.shape[0]
        out = np.empty((X.shape[0], m), dtype=dt)
        with n_jobs_context(n_jobs):
            k._fill_gram(X, Yc, out)
        return out

    def _for_device(self, device: Any) -> Kernel:
        """The kernel whose hooks run on ``device``: ``self`` for ``"cpu"``.

        Raises
        ------
        TypeError, ValueError
            For an invalid ``device``.
        NotImplementedError
            For ``"cuda"`` with a kernel that has no GPU implementation.
        kernelcomp._kernels._config.CudaUnavailableError
            (a RuntimeError) for ``"cuda"`` without numba-cuda or a CUDA device.
        """
        if check_device(device) == "cpu":
            return self
        return self._cuda_backend()

    def _cuda_backend(self) -> Kernel:
        """A kernel computing this one's Gram matrices on the GPU (override to provide one).

        Its ``_gram_inputs`` also accepts device arrays, and its ``_fill`` a
        device array as ``out``.
        """
        raise NotImplementedError(
            f"device='cuda' is not supported for {type(self).__name__} yet (only the analytic "
            "NTK, NNGP, ConvNTK and ConvNNGP run on the GPU); use device='cpu'"
        )

    def diag(self, X: Any, *, dtype: Any = None, n_jobs: int | None = None) -> np.ndarray:
        """The diagonal ``k(x_i, x_i)`` without forming the n x n matrix.

        Parameters
        ----------
        X : array-like of shape (n, d)
        dtype : {None, "float32", "float64"}
        n_jobs : int, optional

        Returns
        -------
        numpy.ndarray of shape (n,)
        """
        X = self._check_input(X, "X")
        dt = result_dtype(X, dtype=dtype)
        X = X.astype(dt, copy=False)
        with n_jobs_context(n_jobs):
            return np.asarray(self._diag(self._prepare(X)), dtype=dt)

    # -- validation ---------------------------------------------------------
    def _check_input(self, X: Any, name: str, n_features: int | None = None) -> np.ndarray:
        """Validate a sample matrix for this kernel (override to add checks).

        Besides :func:`check_matrix`'s checks, the squared norms must be finite
        in float64: beyond |x| ~ 1e154 every dot product overflows to inf/NaN.
        The result is writeable (a read-only input is copied), so the compiled
        hooks see one array type per dtype.
        """
        if n_features is None:
            n_features = self.n_features_in
        X = check_matrix(X, name, n_features=n_features, writeable=True)
        big = float(np.max(np.abs(X)))
        if not np.isfinite(big * big * X.shape[1]):
            raise ValueError(
                f"{name} has values too large for a Gram matrix (max |value| = {big:.3g}): "
                "their squared norms overflow float64; rescale the inputs"
            )
        return X

    def _gram_inputs(
        self, X: Any, Y: Any, dtype: Any
    ) -> tuple[np.ndarray, np.ndarray | None, np.dtype]:
        """Validate ``X`` (and ``Y``, or None) and cast them to the result dtype.

        Returns ``(X, Y, dtype)``: C-contiguous arrays of that dtype (``Y`` None
        for the symmetric Gram of ``X``).
        """
        X = self._check_input(X, "X")
        Yc = None if Y is None else self._check_input(Y, "Y", n_features=X.shape[1])
        dt = result_dtype(X, Yc, dtype=dtype)
        X = X.astype(dt, copy=False)
        if Yc is not None:
            Yc = Yc.astype(dt, copy=False)
        return X, Yc, dt

    def _fill_gram(self, X: np.ndarray, Y: np.ndarray | None, out: np.ndarray) -> None:
        """Write the whole Gram of validated ``X`` against ``Y`` (None: ``X``) into ``out``.

        ``out`` is a C-contiguous array of the inputs' dtype; threads are the caller's.
        """
        px = self._prepare(X)
        py = px if Y is None else self._prepare(Y)
        self._fill(px, py, out, Y is None)

    # -- hooks ----------------------------------------------------------------
    @abc.abstractmethod
    def _prepare(self, X: np.ndarray) -> Any:
        """Per-sample state of validated rows ``X``."""

    @abc.abstractmethod
    def _take(self, prep: Any, start: int, stop: int) -> Any:
        """Prepared state of rows ``start:stop``."""

    @abc.abstractmethod
    def _fill(self, px: Any, py: Any, out: np.ndarray, symmetric: bool) -> None:
        """Write the Gram block of ``px`` against ``py`` into ``out``."""

    @abc.abstractmethod
    def _diag(self, px: Any) -> np.ndarray:
        """The diagonal of the Gram matrix of ``px``."""

    # -- description ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description ``{"kernel": name, "params": {...}}``.

        Raises
        ------
        NotImplementedError
            For kernels that cannot be described by parameters alone.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be described as JSON")


class FrozenKernel(Kernel):
    """A kernel that freezes itself once ``_fingerprint`` is set (the empirical NTKs).

    Equal and hashed by ``(type, _key())``; attributes cannot be set afterwards;
    ``copy.copy`` and ``copy.deepcopy`` return the kernel itself (nothing in it
    can change, so a copy may share everything).
    """

    @abc.abstractmethod
    def _key(self) -> tuple[Any, ...]:
        """What identifies the kernel's values (network fingerprint, layers, output...)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrozenKernel):
            return NotImplemented
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_fingerprint"):
            raise AttributeError(f"{type(self).__name__} is immutable")
        object.__setattr__(self, name, value)

    def __copy__(self) -> FrozenKernel:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenKernel:
        return self
