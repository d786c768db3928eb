"""kernelcomp kernels as scikit-learn Gaussian-process kernels.

:class:`KernelcompKernel` wraps any kernelcomp kernel in a
:class:`sklearn.gaussian_process.kernels.Kernel`, so that

- ``GaussianProcessRegressor(kernel=KernelcompKernel(kc.NNGP(depth=L)))`` is the
  exact Bayesian posterior of an infinitely wide network of depth ``L`` (its
  NNGP prior; Lee et al. 2018), and
- ``KernelcompKernel(kc.NTK(...))`` gives the NTK-GP, whose posterior mean is the
  function an infinitely wide network trained to convergence on the square
  loss computes (Jacot et al. 2018).

The wrapped kernel's parameters are fixed (no hyperparameters to optimise);
compose with sklearn kernels for the usual ones, e.g.
``ConstantKernel() * KernelcompKernel(kc.NNGP()) + WhiteKernel()`` learns an
output scale and a noise level by marginal likelihood.

Examples
--------
>>> import numpy as np, kernelcomp as kc
>>> from sklearn.gaussian_process import GaussianProcessRegressor
>>> rng = np.random.default_rng(0)
>>> X, y = rng.standard_normal((30, 3)), rng.standard_normal(30)
>>> gpr = GaussianProcessRegressor(kc.gp.as_sklearn_kernel(kc.NNGP(depth=2)), alpha=1e-6)
>>> mean, std = gpr.fit(X, y).predict(X[:4], return_std=True)
>>> mean.shape, std.shape
((4,), (4,))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.gaussian_process.kernels import Hyperparameter
from sklearn.gaussian_process.kernels import Kernel as _SkKernel

from kernelcomp._base import Kernel
from kernelcomp._parallel import resolve_n_jobs

__all__ = ["KernelcompKernel", "as_sklearn_kernel"]


class KernelcompKernel(_SkKernel):
    """A kernelcomp kernel (``kc.NTK``, ``kc.NNGP``, ``kc.EmpiricalNTK``) as a sklearn GP kernel.

    Gram matrices are computed in float64 by kernelcomp's compiled core. The
    kernel has no hyperparameters (``theta`` is empty, its gradient has zero
    columns), so it composes with sklearn kernels by ``+`` and ``*`` and only the
    parameters of those kernels are optimised.

    Parameters
    ----------
    kernel : kernelcomp Kernel
        The kernel to wrap.
    n_jobs : int, optional
        Threads for the Gram computation (None or -1: all).

    Raises
    ------
    TypeError
        If ``kernel`` is not a kernelcomp kernel (raised at first use, as
        sklearn kernels validate lazily; :func:`as_sklearn_kernel` checks at once).

    References
    ----------
    Lee et al. (2018), *Deep neural networks as Gaussian processes*;
    Jacot, Gabriel, Hongler (2018), *Neural Tangent Kernel*;
    Paccolat et al. (2021), J. Stat. Mech. 044001, §2.

    Examples
    --------
    >>> import numpy as np, kernelcomp as kc
    >>> from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
    >>> k = ConstantKernel(2.0) * kc.gp.KernelcompKernel(kc.NTK(depth=1)) + WhiteKernel(0.1)
    >>> X = np.random.default_rng(0).standard_normal((5, 3))
    >>> k(X).shape, k.diag(X).shape
    ((5, 5), (5,))
    """

    def __init__(self, kernel: Kernel, n_jobs: int | None = None) -> None:
        self.kernel = kernel
        self.n_jobs = n_jobs

    # sklearn reads hyperparameters from attributes named hyperparameter_*; there are none
    @property
    def hyperparameters(self) -> list[Hyperparameter]:
        """No hyperparameters: the wrapped kernel is fixed."""
        return []

    @property
    def requires_vector_input(self) -> bool:
        """Inputs are feature vectors (2-D arrays)."""
        return True

    @property
    def kernelcomp_kernel(self) -> Kernel:
        """The wrapped kernelcomp kernel (validated)."""
        if not isinstance(self.kernel, Kernel):
            raise TypeError(
                "KernelcompKernel wraps a kernelcomp kernel (kc.NTK(), kc.NNGP(), "
                f"kc.EmpiricalNTK(net)), got {type(self.kernel).__name__}"
            )
        return self.kernel

    def __call__(
        self, X: Any, Y: Any = None, eval_gradient: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Gram matrix ``k(X, Y)`` (``Y=None``: of ``X`` with itself).

        Parameters
        ----------
        X : array-like of shape (n, d)
        Y : array-like of shape (m, d), optional
        eval_gradient : bool, default False
            Also return the gradient with respect to the (empty) log
            hyperparameters; only with ``Y=None``.

        Returns
        -------
        K : ndarray of shape (n, m), float64
        K_gradient : ndarray of shape (n, n, 0)
            Only with ``eval_gradient=True``.

        Raises
        ------
        ValueError
            If ``eval_gradient`` is asked with ``Y``, or for invalid inputs.
        """
        kernel = self.kernelcomp_kernel
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        n_jobs = resolve_n_jobs(self.n_jobs)
        K = kernel(X, Y, dtype=np.float64, n_jobs=n_jobs)
        if eval_gradient:
            return K, np.empty((K.shape[0], K.shape[0], 0), dtype=np.float64)
        return K

    def diag(self, X: Any) -> np.ndarray:
        """The diagonal ``k(x_i, x_i)`` without the n x n matrix.

        Parameters
        ----------
        X : array-like of shape (n, d)

        Returns
        -------
        ndarray of shape (n,), float64
        """
        return self.kernelcomp_kernel.diag(X, dtype=np.float64, n_jobs=resolve_n_jobs(self.n_jobs))

    def is_stationary(self) -> bool:
        """False: NTK/NNGP kernels depend on the norms of the inputs, not only on x - x'."""
        return False

    def __repr__(self) -> str:
        return f"KernelcompKernel({self.kernel!r})"


def as_sklearn_kernel(kernel: Kernel, *, n_jobs: int | None = None) -> KernelcompKernel:
    """Wrap a kernelcomp kernel as a :mod:`sklearn.gaussian_process` kernel.

    Parameters
    ----------
    kernel : kernelcomp Kernel
        ``kc.NTK(...)``, ``kc.NNGP(...)`` or ``kc.EmpiricalNTK(net)``.
    n_jobs : int, optional
        Threads for the Gram computation (None or -1: all).

    Returns
    -------
    KernelcompKernel

    Raises
    ------
    TypeError
        If ``kernel`` is not a kernelcomp kernel or ``n_jobs`` not an integer.
    ValueError
        For an invalid ``n_jobs`` (0).

    Examples
    --------
    >>> import kernelcomp as kc
    >>> kc.gp.as_sklearn_kernel(kc.NNGP(depth=2)).is_stationary()
    False
    """
    wrapped = KernelcompKernel(kernel, n_jobs=n_jobs)
    wrapped.kernelcomp_kernel  # noqa: B018 - validate now
    resolve_n_jobs(n_jobs)
    return wrapped
