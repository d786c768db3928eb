"""scikit-learn estimators with frozen kernels: ``NTKRegressor`` and ``NTKClassifier``.

Both estimators take any kernelcomp kernel (``kc.NTK()``, ``kc.NNGP()``,
``kc.EmpiricalNTK(net)`` frozen at a checkpoint) or ``"precomputed"`` and follow
the scikit-learn contract: ``__init__`` stores parameters, ``fit`` validates and
returns ``self``, fitted attributes end in ``_``, and they drop into
:class:`~sklearn.pipeline.Pipeline` and
:class:`~sklearn.model_selection.GridSearchCV`. Kernel parameters are reachable
as nested parameters (``kernel__depth``, ``kernel__bias_std``...), so a grid
search can tune the architecture behind the kernel.

- :class:`NTKRegressor`: kernel ridge regression, ``(K + alpha I) a = y`` solved by
  an in-place blocked Cholesky factorisation (LAPACK/BLAS blocks, safe at any n),
  with a warned eigendecomposition fallback for singular or indefinite systems. Predictions equal
  ``sklearn.kernel_ridge.KernelRidge(kernel="precomputed")`` on the same Gram.
- :class:`NTKClassifier`: support vector machine (hinge loss) on the frozen
  kernel, delegated to ``sklearn.svm.SVC(kernel="precomputed")``; the paper's
  hard margin is a large ``C`` (``C=1e20`` in the authors' code).

Test-time Gram matrices are computed in row blocks of about 64 MiB, so a large
test set never needs the whole ``n_test x n_train`` matrix at once.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), *Geometric compression of
invariant manifolds in neural networks*, J. Stat. Mech. 044001, §2 and §5
(kernel machines with the NTK frozen at initialisation and after training).
"""

from kernelcomp.estimators._base import SingularKernelWarning
from kernelcomp.estimators._classifier import HARD_MARGIN_C, NTKClassifier  # noqa: F401
from kernelcomp.estimators._ridge import NTKRegressor

__all__ = ["NTKClassifier", "NTKRegressor", "SingularKernelWarning"]
