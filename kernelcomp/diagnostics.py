"""Kernel-PCA diagnostics of geometric compression (Paccolat et al. 2021).

The paper's central diagnostic is kernel PCA on the (empirical) neural tangent
kernel along training: how much of the labels its top eigenvectors carry, and
how much they know about the labels [1]_. This module implements those
definitions exactly as the authors' experiments use them (see the documentation's
"Definitions" page), plus a few companions that help read a kernel:

* :func:`kernel_pca` -- eigenpairs of the **uncentred** Gram matrix, eigenvalues
  descending, unit-norm eigenvectors with a deterministic sign, top ones through
  LAPACK's subset driver.
* :func:`label_projection`, :func:`cumulative_projection` -- ``c_r = phi_r . y``
  and ``P_k = sum_{r<=k} c_r^2 / ||y||^2``.
* :func:`mutual_information` -- the paper's kNN class-conditional estimator
  (bits), or scikit-learn's ``mutual_info_classif`` for comparison.
* :func:`compression` -- lambda of the first-layer weights.
* :func:`kernel_alignment`, :func:`kernel_change`, :func:`effective_rank`,
  :func:`spectrum_power_law`, :func:`intrinsic_dimension`.

Labels
------
* :func:`label_projection`, :func:`cumulative_projection` and
  :func:`kernel_alignment` take real targets: a vector ``y`` of shape ``(n,)``
  (the paper's +-1 labels, or any regression target) or a matrix of shape
  ``(n, m)`` (several outputs; for several classes pass a one-hot or +-1 coding,
  e.g. ``sklearn.preprocessing.label_binarize(y, classes=..., neg_label=-1)``).
  Class names (strings) must be encoded first.
* :func:`mutual_information` takes class labels of any type. The paper's
  estimator (``method="paper"``) is defined for **two classes** only and raises
  a ``ValueError`` otherwise; ``method="ksg"`` accepts any number of classes.

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: the compression lambda of the first-layer weights
   and the kernel PCA of the empirical NTK along training.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelcomp._gram import default_block_rows
from kernelcomp._linalg import matmul as _matmul
from kernelcomp._parallel import progress as progress_bar
from kernelcomp._validation import (
    check_gram,
    check_int,
    check_matrix,
    check_real,
    symmetry_tolerance,
)

__all__ = [
    "Attractors",
    "GaussNewtonSpectrum",
    "KernelPCAResult",
    "LayerGeometry",
    "PowerLaw",
    "TrajectoryEmbedding",
    "attractor_network",
    "attractors",
    "compression",
    "compression_at",
    "cumulative_projection",
    "effective_rank",
    "gauss_newton_spectrum",
    "intrinsic_dimension",
    "kernel_alignment",
    "kernel_change",
    "kernel_pca",
    "label_projection",
    "layer_geometry",
    "mutual_information",
    "spectrum_power_law",
    "stretch_inputs",
    "t_star",
    "trajectory_embedding",
]

if TYPE_CHECKING:
    from kernelcomp._geometry import (
        Attractors,
        GaussNewtonSpectrum,
        LayerGeometry,
        TrajectoryEmbedding,
        attractor_network,
        attractors,
        gauss_newton_spectrum,
        layer_geometry,
        trajectory_embedding,
    )

#: names defined in kernelcomp._geometry (neurons, layers, Gauss-Newton spectra,
#: trajectories), imported on first use: that module builds on this one
_GEOMETRY = (
    "Attractors",
    "GaussNewtonSpectrum",
    "LayerGeometry",
    "TrajectoryEmbedding",
    "attractor_network",
    "attractors",
    "gauss_newton_spectrum",
    "layer_geometry",
    "trajectory_embedding",
)


def __getattr__(name: str) -> Any:
    if name in _GEOMETRY:
        from kernelcomp import _geometry

        value = getattr(_geometry, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazily loaded names are listed too (autodoc and tab completion read dir())
    return sorted({*globals(), *_GEOMETRY})

#: ``kernel_pca(method="auto")`` picks the route with the least work, as measured by
#: ``scripts/bench_diagnostics.py`` (NTK Grams, 2 threads): thick-restart block
#: Lanczos (kernelcomp._eigsolve, O(k n^2) in BLAS-3 products, about seven matrix
#: columns per eigenpair) when ``n >= LANCZOS_MIN_SAMPLES`` and
#: ``k <= LANCZOS_MAX_FRACTION * n`` (falling back to LAPACK's subset driver if it
#: does not reach its tolerance); LAPACK's subset driver (O(n^3) tridiagonal
#: reduction, only k eigenvectors) up to ``k <= SUBSET_MAX_FRACTION * n``; the
#: full divide-and-conquer beyond. ARPACK (``method="arpack"``) is memory-bound,
#: one matrix-vector product at a time.
LANCZOS_MAX_FRACTION = 0.05
LANCZOS_MIN_SAMPLES = 500
#: default residual tolerance of the block Lanczos route: ``||K v - l v|| <= tol * l_1``
LANCZOS_TOL = 1e-9
SUBSET_MAX_FRACTION = 0.25
#: LAPACK driver of the subset route (``"evx"``: bisection + inverse iteration; as
#: fast as ``"evr"`` (MRRR) for k <= n/5 in the benchmark, and more robust there)
SUBSET_DRIVER = "evx"
#: rows per block in the O(n^2) passes that would otherwise allocate an n x n temporary
_BLOCK_ELEMS = 2**22
_METHODS_KPCA = ("auto", "lanczos", "subset", "full", "arpack")
_METHODS_MI = ("paper", "ksg")
_METHODS_ERANK = ("entropy", "participation")


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _block_rows(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMS // max(n_cols, 1))




def _check_vectors(V: Any, name: str = "eigenvectors") -> np.ndarray:
    """Eigenvectors as an ``(n, k)`` matrix (a 1-D vector becomes one column)."""
    arr = np.asarray(V) if not hasattr(V, "toarray") else V
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        arr = arr[:, None]
    return check_matrix(arr, name)


def _check_targets(
    y: Any, n: int, name: str = "y", *, against: str = "the eigenvectors have"
) -> np.ndarray:
    """Real targets of shape (n,) or (n, m), as float64."""
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "fiu":
        raise TypeError(
            f"{name} must hold real numbers (e.g. +-1 labels), got dtype {arr.dtype}; "
            "encode class labels first, e.g. with "
            "sklearn.preprocessing.label_binarize(y, classes=..., neg_label=-1)"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, m), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} samples, but {against} {n} rows")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns (shape {arr.shape}); at least 1 is required")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr


def _check_classes(y: Any, n: int, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """1-D class labels of any type -> (classes, integer codes)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class labels of shape ({n},), got shape "
            f"{arr.shape}" + ("; use y.ravel()" if arr.ndim == 2 and arr.shape[1] == 1 else "")
        )
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} samples, but the eigenvectors have {n} rows")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; class labels must be finite")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must hold class labels (numbers or strings), got {arr.dtype}")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:  # object arrays of mixed, unorderable types
        raise TypeError(
            f"{name} must hold class labels of one orderable type (numbers or strings): {exc}"
        ) from exc
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise ValueError(f"{name} contains NaN or infinity; class labels must be finite")
    return classes, codes.ravel()


def _eigenvalues_of(eigenvalues: Any, name: str = "eigenvalues") -> np.ndarray:
    """A finite, non-empty 1-D spectrum (a :class:`KernelPCAResult` is accepted)."""
    if hasattr(eigenvalues, "eigenvalues"):
        eigenvalues = eigenvalues.eigenvalues
    arr = np.asarray(eigenvalues)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one eigenvalue is required")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return arr


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# kernel PCA
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class KernelPCAResult:
    """Eigenpairs of a Gram matrix, as returned by :func:`kernel_pca`.

    Attributes
    ----------
    eigenvalues : ndarray of shape (k,)
        Eigenvalues in descending order (the Gram's dtype).
    eigenvectors : ndarray of shape (n, k)
        Unit-norm eigenvectors as columns, ``eigenvectors[:, r]`` belonging to
        ``eigenvalues[r]``; the sign of each is fixed so that its entry of largest
        magnitude is positive.
    center : bool
        Whether the Gram matrix was centred in feature space before the
        decomposition (the paper does not centre).
    trace : float
        Trace of the decomposed (centred or not) matrix, i.e. the sum of *all*
        its eigenvalues, so truncated spectra still give explained fractions.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    center: bool
    trace: float

    @property
    def n_samples(self) -> int:
        """Number of samples ``n`` (rows of the eigenvectors)."""
        return int(self.eigenvectors.shape[0])

    @property
    def n_components(self) -> int:
        """Number of eigenpairs ``k`` kept."""
        return int(self.eigenvalues.shape[0])

    @property
    def explained_ratio(self) -> np.ndarray:
        """Each eigenvalue over the trace (the fraction of the kernel's 'variance')."""
        if self.trace == 0.0:
            return np.zeros_like(self.eigenvalues, dtype=np.float64)
        return np.asarray(self.eigenvalues, dtype=np.float64) / self.trace

    def __repr__(self) -> str:
        top = ", ".join(f"{v:.4g}" for v in self.eigenvalues[:3])
        more = ", ..." if self.n_components > 3 else ""
        return (
            f"KernelPCAResult(n_samples={self.n_samples}, n_components={self.n_components}, "
            f"center={self.center}, eigenvalues=[{top}{more}])"
        )


def _fix_signs(V: np.ndarray) -> np.ndarray:
    """Flip columns so that each one's entry of largest magnitude is positive."""
    if V.shape[1] == 0:
        return V
    idx = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[idx, np.arange(V.shape[1])])
    signs[signs == 0] = 1
    V *= signs.astype(V.dtype)
    return V


def _center_gram(K: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I - 11^T/n``, written into a new array (row blocks)."""
    n = K.shape[0]
    r = K.mean(axis=1, dtype=np.float64)
    m = float(r.mean())
    out = np.empty_like(K)
    step = _block_rows(n)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        block = K[i0:i1].astype(np.float64) - r[i0:i1, None] - r[None, :] + m
        out[i0:i1] = block
    return out


def _lanczos_options(tol: Any, random_state: Any, dtype: np.dtype) -> tuple[float, int]:
    """Validated ``tol`` and ``random_state`` of the block Lanczos route.

    ``tol`` is raised to the dtype's floor: ``100 eps`` in float64, ``1e-5`` in
    float32.
    """
    tol = check_real(tol, "tol")
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    random_state = check_int(random_state, "random_state", minimum=0)
    floor = 100 * float(np.finfo(np.float64).eps) if dtype == np.float64 else 1e-5
    return max(tol, floor), random_state


def _is_dataset(K: Any) -> bool:
    """An h5py-like dataset: sliceable, with shape and dtype, not in memory."""
    return (not isinstance(K, np.ndarray) and hasattr(K, "shape") and hasattr(K, "dtype")
            and hasattr(K, "chunks") and hasattr(K, "__getitem__"))  # fmt: skip



def _kernel_pca_out_of_core(
    D: Any, n_components: Any, center: bool, method: str, check_symmetric: bool,
    tol: float, random_state: int, progress: bool,
) -> KernelPCAResult:  # fmt: skip
    """:func:`kernel_pca` on a Gram held in an h5py dataset, by streamed row blocks."""
    from kernelcomp._eigsolve import block_lanczos_topk

    shape = tuple(D.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"K must be a square Gram matrix, got shape {tuple(shape)}")
    if np.dtype(D.dtype).kind != "f":
        raise TypeError(f"K must hold floating-point numbers, got dtype {D.dtype}")
    n = shape[0]
    dt = np.dtype(np.float32 if D.dtype == np.float32 else np.float64)
    if n_components is None:
        raise ValueError("a Gram on disk needs n_components (its top eigenpairs, < n)")
    k = check_int(n_components, "n_components", minimum=1)
    if k >= n:
        raise ValueError(f"n_components must be < n = {n} for a Gram on disk, got {k}")
    if _check_choice(method, "method", _METHODS_KPCA) not in ("auto", "lanczos"):
        raise ValueError(f"a Gram on disk is read by method='lanczos' only, got {method!r}")
    if center:
        raise ValueError("center=True is not available for a Gram on disk")
    tol, random_state = _lanczos_options(tol, random_state, dt)
    rows = default_block_rows(n, n, dt.itemsize)
    # one pass for the trace, the finiteness and the symmetry of the diagonal tiles
    trace, scale, worst = 0.0, 0.0, 0.0
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        block = np.asarray(D[i0:i1], dtype=dt)
        if not np.isfinite(block).all():
            raise ValueError(f"K contains NaN or infinity (rows {i0}:{i1})")
        scale = max(scale, float(np.abs(block).max()))
        tile = block[:, i0:i1]
        trace += float(np.trace(tile, dtype=np.float64))
        if check_symmetric:
            worst = max(worst, float(np.abs(tile - tile.T).max()))
    if check_symmetric and worst > symmetry_tolerance(dt) * scale:
        raise ValueError(
            f"K must be symmetric: max |K - K.T| on the diagonal blocks = {worst:.3g} exceeds "
            f"{symmetry_tolerance(dt) * scale:.3g} (sqrt(eps) x max|K|)"
        )
    with progress_bar(progress, desc="kernel PCA passes", unit="pass") as bar:

        def matmul(V: np.ndarray) -> np.ndarray:
            out = np.empty_like(V)
            for i0 in range(0, n, rows):
                i1 = min(n, i0 + rows)
                _matmul(np.asarray(D[i0:i1], dtype=dt), V, out=out[i0:i1])
            bar.update(1)
            return out

        w, V, info = block_lanczos_topk(matmul, n, k, dt, tol=tol,
                                        random_state=random_state)  # fmt: skip
    if not info.converged:
        raise RuntimeError(
            f"the block Lanczos iteration did not reach tol={tol:g} on the Gram on disk "
            f"(largest residual {info.max_residual:.3g} x lambda_1); load the matrix into "
            "memory for LAPACK, or raise tol"
        )
    return KernelPCAResult(eigenvalues=w, eigenvectors=_fix_signs(V), center=False, trace=trace)


def kernel_pca(
    K: Any,
    n_components: int | None = None,
    center: bool = False,
    *,
    method: str = "auto",
    check_symmetric: bool = True,
    tol: float = LANCZOS_TOL,
    random_state: int = 0,
    progress: bool = False,
) -> KernelPCAResult:
    """Kernel PCA of a Gram matrix: its top eigenpairs, uncentred as in the paper.

    Parameters
    ----------
    K : array-like of shape (n, n), or an h5py dataset
        Symmetric Gram matrix (float32 stays float32; anything else becomes float64).
        Only its lower triangle is read by LAPACK, after a symmetry check. An
        h5py dataset (e.g. ``kc.io`` Gram file's ``"K"``) is read out of core:
        row blocks of about 64 MiB are streamed from the file for every block
        product of the ``"lanczos"`` route (the only one out of core), so the
        peak memory is a few ``n x n_components`` panels, not the matrix.
    n_components : int, optional
        Number of leading eigenpairs, ``1 <= n_components <= n``. None: all ``n``.
    center : bool, default False
        Centre the kernel in feature space (``H K H``, ``H = I - 11^T/n``) first,
        as in classical kernel PCA. The paper's diagnostic is uncentred.
    method : {"auto", "lanczos", "subset", "full", "arpack"}, default "auto"
        ``"lanczos"``: thick-restart block Lanczos (BLAS-3 products of ``K`` with
        blocks of vectors, Rayleigh-Ritz, residual-based stopping; only for
        ``n_components < n``); ``"subset"``: LAPACK's subset driver
        (``scipy.linalg.eigh`` with ``subset_by_index``, driver
        :data:`SUBSET_DRIVER`), which never computes the discarded eigenvectors;
        ``"full"``: the complete divide-and-conquer decomposition, then
        truncation; ``"arpack"``: ARPACK's Lanczos iterations
        (``scipy.sparse.linalg.eigsh``, only for ``n_components < n``).
        ``"auto"`` takes ``"lanczos"`` for a few leading eigenpairs of a large
        matrix (``n >= LANCZOS_MIN_SAMPLES``, ``n_components <=
        LANCZOS_MAX_FRACTION * n``; falling back to ``"subset"`` if it does not
        reach ``tol``), ``"subset"`` up to ``n_components <= SUBSET_MAX_FRACTION
        * n`` and ``"full"`` beyond: the fastest correct routes measured by
        ``scripts/bench_diagnostics.py``.
    check_symmetric : bool, default True
        Check ``max |K - K.T| <= sqrt(eps) max |K|`` (one O(n^2) pass).
    tol : float, default 1e-9
        ``"lanczos"``: every returned pair has ``||K v - l v|| <= tol * l_1``
        (``l_1`` the largest eigenvalue), so eigenvalues agree with LAPACK's to
        about ``tol * l_1`` or better. Not below ``100 * eps`` of the dtype
        (float32 defaults to ``1e-5``).
    random_state : int, default 0
        Seed of the ``"lanczos"`` starting block: results are deterministic for
        a seed.
    progress : bool, default False
        Out of core: a progress bar over the passes through the file.

    Returns
    -------
    KernelPCAResult
        ``eigenvalues`` (k,) in descending order and ``eigenvectors`` (n, k) of
        unit norm, the sign of each fixed so that its largest-magnitude entry is
        positive (eigenvectors of repeated eigenvalues are only defined up to a
        rotation within their eigenspace). ``trace`` and ``center`` are recorded.

    Raises
    ------
    ValueError
        If ``K`` is not square, not symmetric, empty or not finite; if
        ``n_components`` is out of range; for an unknown ``method``.
    TypeError
        If ``K`` does not hold real numbers or ``n_components`` is not an integer.

    References
    ----------
    Paccolat, Petrini, Geiger, Tyloo, Wyart (2021), kernel PCA of the empirical
    NTK: the Gram matrix is diagonalised without centring; eigenvectors have unit norm.

    Examples
    --------
    >>> import numpy as np
    >>> import kernelcomp as kc
    >>> X = np.random.default_rng(0).standard_normal((50, 3))
    >>> ev = kc.diagnostics.kernel_pca(kc.NTK()(X), n_components=5)
    >>> ev.eigenvectors.shape
    (50, 5)
    >>> bool(np.all(np.diff(ev.eigenvalues) <= 0))
    True
    """
    import scipy.linalg

    if _is_dataset(K):
        return _kernel_pca_out_of_core(K, n_components, center, method, check_symmetric, tol,
                                       random_state, progress)  # fmt: skip
    K = check_gram(K, "K", symmetric=bool(check_symmetric))
    n = K.shape[0]
    if n_components is None:
        k = n
    else:
        k = check_int(n_components, "n_components", minimum=1)
        if k > n:
            raise ValueError(f"n_components must be <= the number of samples n = {n}, got {k}")
    method = _check_choice(method, "method", _METHODS_KPCA)
    if method in ("arpack", "lanczos") and k >= n:
        raise ValueError(
            f"method={method!r} needs n_components < n (got n_components={k}, n={n}); "
            "use method='full' for the whole spectrum"
        )
    tol, random_state = _lanczos_options(tol, random_state, K.dtype)
    auto = method == "auto"
    if auto:
        if n >= LANCZOS_MIN_SAMPLES and k <= LANCZOS_MAX_FRACTION * n:
            method = "lanczos"
        elif k <= SUBSET_MAX_FRACTION * n:
            method = "subset"
        else:
            method = "full"

    owned = False
    if center:
        K = _center_gram(K)
        owned = True
    trace = float(np.trace(K, dtype=np.float64))

    if method == "lanczos":
        from kernelcomp._eigsolve import block_lanczos_topk

        w, V, info = block_lanczos_topk(lambda B: _matmul(K, B), n, k, K.dtype, tol=tol,
                                        random_state=random_state)  # fmt: skip
        if not info.converged:
            method = "subset"  # LAPACK: exact to round-off
    if method == "arpack":
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        # a fixed pseudo-random start vector: reproducible results (never the constant
        # vector, which a centred Gram annihilates)
        v0 = np.random.default_rng(0).standard_normal(n).astype(K.dtype)
        try:
            w, V = eigsh(K, k=k, which="LA", v0=v0)
        except ArpackNoConvergence:
            if not auto:
                raise
            method = "subset"
        else:
            w = w.astype(K.dtype, copy=False)
            V = V.astype(K.dtype, copy=False)
    if method == "subset" and k < n:
        w, V = scipy.linalg.eigh(
            K,
            subset_by_index=[n - k, n - 1],
            driver=SUBSET_DRIVER,
            overwrite_a=owned,
            check_finite=False,
        )
    elif method not in ("arpack", "lanczos"):
        w, V = scipy.linalg.eigh(K, driver="evd", overwrite_a=owned, check_finite=False)
        w, V = w[n - k :], V[:, n - k :]
    order = np.argsort(w, kind="stable")[::-1]
    w = np.ascontiguousarray(w[order])
    V = np.ascontiguousarray(V[:, order])
    V = _fix_signs(V)
    return KernelPCAResult(eigenvalues=w, eigenvectors=V, center=bool(center), trace=trace)


# ---------------------------------------------------------------------------
# label projection
# ---------------------------------------------------------------------------
def label_projection(eigenvectors: Any, y: Any) -> np.ndarray:
    """Projection of the labels on each eigenvector, ``c_r = phi_r . y``.

    Parameters
    ----------
    eigenvectors : array-like of shape (n, k) or (n,)
        Eigenvectors as columns (e.g. ``kernel_pca(K).eigenvectors``).
    y : array-like of shape (n,) or (n, m)
        Real targets: the paper's +-1 labels, a regression target, or several
        columns (one-hot / +-1 coding of several classes, several outputs).

    Returns
    -------
    ndarray of shape (k,) or (k, m)
        ``c[r] = sum_i eigenvectors[i, r] * y[i]`` (float64). For a complete
        orthonormal basis ``sum_r c_r^2 = ||y||^2``.

    Raises
    ------
    ValueError
        On shape mismatch, empty or non-finite input.
    TypeError
        If ``y`` is not numeric (encode class names first).

    References
    ----------
    Paccolat et al. (2021), kernel PCA of the NTK: ``c_r = phi_r . y``,
    ``sum_r c_r^2 = p``.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import label_projection
    >>> label_projection(np.eye(3), [1.0, -1.0, 1.0])
    array([ 1., -1.,  1.])
    """
    V = _check_vectors(eigenvectors)
    Y = _check_targets(y, V.shape[0])
    return V.astype(np.float64, copy=False).T @ Y


def cumulative_projection(c: Any, y: Any) -> np.ndarray:
    """Cumulative fraction of the labels captured, ``P_k = sum_{r<=k} c_r^2 / ||y||^2``.

    Parameters
    ----------
    c : array-like of shape (k,) or (k, m)
        Label projections from :func:`label_projection`.
    y : array-like of shape (n,) or (n, m)
        The same targets (only ``||y||^2``, summed over columns, is used).

    Returns
    -------
    ndarray of shape (k,)
        Non-decreasing; it ends at 1 when ``c`` covers a complete eigenbasis.

    Raises
    ------
    ValueError
        If the shapes do not match (number of columns), if ``y`` is all zero,
        or on empty / non-finite input.

    References
    ----------
    Paccolat et al. (2021), kernel PCA of the NTK: ``P_k`` against ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import cumulative_projection
    >>> cumulative_projection([1.0, -1.0, 1.0], [1.0, -1.0, 1.0])
    array([0.33333333, 0.66666667, 1.        ])
    """
    carr = np.asarray(c)
    if carr.dtype.kind not in "fiu":
        raise TypeError(f"c must hold real numbers, got dtype {carr.dtype}")
    if carr.ndim not in (1, 2) or carr.shape[0] == 0:
        raise ValueError(f"c must be a non-empty array of shape (k,) or (k, m), got {carr.shape}")
    carr = carr.astype(np.float64)
    if not np.isfinite(carr).all():
        raise ValueError("c contains NaN or infinity; all values must be finite")
    yarr = np.asarray(y)
    if yarr.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D (n,) or 2-D (n, m), got shape {yarr.shape}")
    Y = _check_targets(yarr, yarr.shape[0])
    if Y.size == 0:
        raise ValueError("y is empty; at least one sample is required")
    cols_c = 1 if carr.ndim == 1 else carr.shape[1]
    cols_y = 1 if Y.ndim == 1 else Y.shape[1]
    if cols_c != cols_y:
        raise ValueError(f"c has {cols_c} column(s) but y has {cols_y}; pass the y that produced c")
    norm2 = float(np.sum(Y * Y))
    if norm2 == 0.0:
        raise ValueError("y is all zero; the fraction of ||y||^2 is undefined")
    sq = carr * carr
    if sq.ndim == 2:
        sq = sq.sum(axis=1)
    return np.cumsum(sq) / norm2


# ---------------------------------------------------------------------------
# mutual information
# ---------------------------------------------------------------------------
def _kth_distance(sorted_vals: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each ``x`` to its k-th nearest value in ``sorted_vals`` (1-D).

    The k nearest values of a point on a line are a contiguous window of the
    sorted values; the window starts between ``pos - k`` and ``pos`` where
    ``pos`` is the point's insertion index, and its farthest member is one of
    its two ends. Duplicates and the point itself (distance 0) count.
    """
    m = sorted_vals.shape[0]
    pos = np.searchsorted(sorted_vals, x, side="left")
    starts = np.clip(pos[:, None] + np.arange(-k, 1)[None, :], 0, m - k)
    lo = sorted_vals[starts]
    hi = sorted_vals[starts + (k - 1)]
    xc = x[:, None]
    return np.maximum(np.abs(xc - lo), np.abs(hi - xc)).min(axis=1)


def _binary_entropy_bits(q: np.ndarray) -> np.ndarray:
    """``H2(q)`` in bits with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(q * np.log2(q)) - (1.0 - q) * np.log2(1.0 - q)
    return np.where((q <= 0.0) | (q >= 1.0), 0.0, h)


def _mi_paper_1d(v: np.ndarray, codes: np.ndarray, k: int) -> float:
    """The paper's estimator for one component (float64 values, codes in {0, 1})."""
    sd = v.std()
    z = (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)
    a = np.sort(z[codes == 0])
    b = np.sort(z[codes == 1])
    ra = _kth_distance(a, z, k)
    rb = _kth_distance(b, z, k)
    # q = 1 / (1 + (ra/rb)^D), D = 1, written so that ra = rb = 0 gives 1/2 (no
    # information, the limit of the authors' +1e-10 regularisation) and rb = 0 gives 0
    den = ra + rb
    q = np.divide(rb, den, out=np.full_like(den, 0.5), where=den > 0)
    return float(1.0 - _binary_entropy_bits(q).mean())


def mutual_information(
    eigenvectors: Any,
    y: Any,
    n_components: int | None = 10,
    k: int = 5,
    method: str = "paper",
    *,
    random_state: int | None = 0,
) -> np.ndarray:
    """Mutual information (bits) between each eigenvector's components and the labels.

    ``method="paper"`` is the authors' kNN class-conditional estimator, for each
    of the first ``n_components`` eigenvectors ``phi``:

    1. z-score the components ``phi_i`` (mean 0, standard deviation 1);
    2. for each point ``i``, ``r+`` (``r-``) is the distance to its ``k``-th
       nearest neighbour among the points of the first (second) class, the point
       itself included in its own class (at distance 0);
    3. ``q_i = 1 / (1 + (r+/r-)^D)`` with ``D = 1`` (the estimate of
       ``P(class+ | phi_i)``; ``r+ = r- = 0`` gives ``q = 1/2``);
    4. ``I = 1 - mean_i H2(q_i)`` bits, ``H2(q) = -q log2 q - (1-q) log2(1-q)``.

    It is about 1 bit for an eigenvector that separates the classes and close to
    0 for an uninformative one: with ``k = 5`` a random vector scores about 0.08
    bits, a bias of the estimator (the own class counts the point itself) that
    does not shrink with ``n``. ``1`` stands for the label entropy ``H(Y)`` of
    balanced classes:
    with unbalanced classes the estimate is biased by ``1 - H2(fraction)``. The
    z-scoring does not change the result for ``D = 1`` (``q`` is scale free); it
    is kept for fidelity. The nearest-neighbour distances use a sorted 1-D
    search (O(n log n) per component).

    ``method="ksg"`` is scikit-learn's ``mutual_info_classif`` (the kNN estimator
    of Ross 2014, in the Kraskov-Stoegbauer-Grassberger family) with
    ``n_neighbors=k``, converted from nats to bits; it accepts any number of
    classes and is offered for comparison.

    Parameters
    ----------
    eigenvectors : array-like of shape (n, K) or (n,)
        Eigenvectors as columns, leading one first.
    y : array-like of shape (n,)
        Class labels of any type (numbers, strings). ``method="paper"``: exactly
        two distinct labels, each with at least ``k`` points.
    n_components : int or None, default 10
        Use the first ``min(n_components, K)`` eigenvectors; None: all of them.
    k : int, default 5
        Number of neighbours; ``k >= 2`` for ``"paper"`` (with ``k = 1`` the
        point itself is its own nearest neighbour and every estimate is 1 bit),
        ``1 <= k < n`` for ``"ksg"``.
    method : {"paper", "ksg"}, default "paper"
    random_state : int or None, default 0
        Seed of the tiny noise ``mutual_info_classif`` adds to break ties
        (``"ksg"`` only; the paper method is deterministic).

    Returns
    -------
    ndarray of shape (min(n_components, K),)
        Mutual information in bits, per eigenvector (float64).

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or its length differs from ``n``; if
        ``method="paper"`` and ``y`` does not have exactly two classes or a
        class has fewer than ``k`` points; if ``k`` or ``n_components`` is out of
        range; for an unknown ``method``; on non-finite eigenvectors.
    TypeError
        If ``k`` or ``n_components`` is not an integer.

    References
    ----------
    Paccolat et al. (2021), kernel PCA of the NTK: mutual information of the
    top-10 eigenvectors with the labels, k = 5, D = 1 (authors' estimator).
    B. C. Ross, "Mutual information between discrete and continuous data sets",
    PLoS ONE 9 (2014) e87357 (``method="ksg"``).

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import mutual_information
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([-1, 1], 200)
    >>> separating = y + 0.1 * rng.standard_normal(400)
    >>> noise = rng.standard_normal(400)
    >>> mi = mutual_information(np.c_[separating, noise], y)
    >>> bool(mi[0] > 0.95 and abs(mi[1]) < 0.15)
    True
    """
    V = _check_vectors(eigenvectors)
    n, ncols = V.shape
    method = _check_choice(method, "method", _METHODS_MI)
    if n_components is None:
        nc = ncols
    else:
        nc = min(check_int(n_components, "n_components", minimum=1), ncols)
    k = check_int(k, "k", minimum=1)
    classes, codes = _check_classes(y, n)
    V = V[:, :nc].astype(np.float64)

    if method == "ksg":
        if k >= n:
            raise ValueError(f"k must be < the number of samples n = {n}, got {k}")
        if classes.size < 2:
            raise ValueError(
                f"y must contain at least 2 classes for mutual information, found "
                f"{classes.size} ({classes.tolist()})"
            )
        from sklearn.feature_selection import mutual_info_classif

        nats = mutual_info_classif(
            V, codes, discrete_features=False, n_neighbors=k, random_state=random_state
        )
        return np.asarray(nats, dtype=np.float64) / math.log(2.0)

    if classes.size != 2:
        raise ValueError(
            f"method='paper' needs exactly 2 classes in y, found {classes.size} "
            f"({classes.tolist()[:10]}); use method='ksg' for several classes"
        )
    if k < 2:
        raise ValueError(
            "k must be >= 2 for method='paper' (the point itself counts in its own class, "
            "so k = 1 always gives 1 bit), got 1"
        )
    counts = np.bincount(codes, minlength=2)
    if counts.min() < k:
        small = classes[int(np.argmin(counts))].item()
        raise ValueError(
            f"every class needs at least k = {k} points for method='paper'; class "
            f"{small!r} has {int(counts.min())}"
        )
    return np.array([_mi_paper_1d(V[:, r], codes, k) for r in range(nc)], dtype=np.float64)


# ---------------------------------------------------------------------------
# compression of the first-layer weights
# ---------------------------------------------------------------------------
def _first_layer(net: Any) -> np.ndarray:
    if hasattr(net, "weights"):
        weights = net.weights
        try:
            W = weights[0]
        except (TypeError, IndexError, KeyError) as exc:
            raise TypeError(
                "net.weights must be a sequence of layer weight matrices with the first "
                f"layer at index 0, got {type(weights).__name__}"
            ) from exc
        name = "net.weights[0]"
    elif isinstance(net, np.ndarray | list | tuple):
        W, name = net, "net"
    else:
        raise TypeError(
            "net must be a network with .weights (e.g. kc.FCNetwork) or a (h, d) "
            f"first-layer weight matrix, got {type(net).__name__}"
        )
    return check_matrix(W, name, dtype=np.float64)


def _informative_mask(informative: Any, d: int) -> np.ndarray:
    if isinstance(informative, numbers.Integral) and not isinstance(informative, bool):
        informative = [informative]
    arr = np.asarray(informative)
    if arr.dtype.kind == "b":
        if arr.shape != (d,):
            raise ValueError(
                f"informative as a boolean mask must have shape ({d},) (one entry per input "
                f"direction), got {arr.shape}"
            )
        mask = arr.copy()
    else:
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise TypeError(
                "informative must be an int, a sequence of input-direction indices or a "
                f"boolean mask of length {d}, got {arr.dtype} array of shape {arr.shape}"
            )
        idx = arr.astype(np.int64)
        bad = idx[(idx < -d) | (idx >= d)]
        if bad.size:
            raise ValueError(
                f"informative indices must lie in [0, {d}) (the input dimension), got "
                f"{bad.tolist()}"
            )
        idx = np.where(idx < 0, idx + d, idx)
        if np.unique(idx).size != idx.size:
            raise ValueError(f"informative has repeated indices: {arr.tolist()}")
        mask = np.zeros(d, dtype=bool)
        mask[idx] = True
    if not mask.any():
        raise ValueError("informative is empty; at least one informative direction is needed")
    if mask.all():
        raise ValueError(
            f"informative covers all {d} input directions; at least one uninformative "
            "direction is needed"
        )
    return mask


#: conventions of :func:`compression`
COMPRESSION_CONVENTIONS = ("rms", "figures", "norm")


def compression(net: Any, informative: Any, *, convention: str = "rms") -> float:
    """Compression ``lambda`` of the first-layer weights.

    With ``w_j = sqrt(<W_nj^2>)`` the RMS over the first layer's neurons ``n``
    of the weights on input direction ``j``, ``par`` the informative and
    ``perp`` the other directions:

    * ``"rms"`` (default): ``sqrt(mean_{par} w_j^2 / mean_{perp} w_j^2)``;
    * ``"figures"``: ``mean_{par} w_j / mean_{perp} w_j``, the convention of the
      paper's figures (for the stripe ``w_1 / mean_{j >= 2} w_j``); it differs
      from ``"rms"`` only by a mean of RMS values against an RMS;
    * ``"norm"``: ``sqrt(mean_{par} w_j^2 / sum_{perp} w_j^2)``, the authors'
      second convention (the informative weight against the norm of the
      uninformative ones), smaller by ``sqrt(d_perp)``.

    At initialisation (isotropic weights) ``"rms"`` and ``"figures"`` give
    ``lambda ~ 1``; a net that becomes insensitive to the uninformative
    directions has ``lambda >> 1``. A global rescaling of the weights (the
    parameterization's multipliers) cancels.

    Parameters
    ----------
    net : FCNetwork-like or array-like of shape (h, d)
        Anything with ``.weights[0]`` of shape ``(h, d)`` (e.g. ``kc.FCNetwork``),
        or the first-layer weight matrix itself.
    informative : int, sequence of int, or bool array of shape (d,)
        The informative input directions (e.g. ``[0]`` for the stripe, ``[0, 1]``
        for the cylinder).
    convention : {"rms", "figures", "norm"}, default "rms"
        Which of the conventions above.

    Returns
    -------
    float
        ``lambda``; ``inf`` when the uninformative weights are exactly zero.

    Raises
    ------
    TypeError
        If ``net`` has no first-layer weights or ``informative`` is not indices
        or a mask.
    ValueError
        If an index is out of range or repeated, if ``informative`` is empty or
        covers every direction, if all weights are zero, if the weights are
        not finite, or if ``convention`` is unknown.

    References
    ----------
    Paccolat et al. (2021), §5 and figure 3: compression of the first-layer
    weights, ``lambda = w_par / w_perp`` from the RMS weights along the
    informative and uninformative directions.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import compression
    >>> W = np.array([[4.0, 1.0, -1.0], [-4.0, 1.0, 1.0]])
    >>> compression(W, informative=[0])
    4.0
    >>> round(compression(W, informative=[0], convention="norm"), 6)  # 4 / sqrt(2)
    2.828427
    """
    convention = _check_choice(convention, "convention", COMPRESSION_CONVENTIONS)
    W = _first_layer(net)
    mask = _informative_mask(informative, W.shape[1])
    sq = np.mean(W * W, axis=0)  # w_j^2 = <W_nj^2> over neurons
    if convention == "figures":
        rms = np.sqrt(sq)
        par, perp = float(rms[mask].mean()), float(rms[~mask].mean())
    else:
        par = float(sq[mask].mean())
        perp = float(sq[~mask].sum() if convention == "norm" else sq[~mask].mean())
    if perp == 0.0:
        if par == 0.0:
            raise ValueError("the first-layer weights are all zero; lambda is undefined")
        return math.inf
    return par / perp if convention == "figures" else math.sqrt(par / perp)


#: the paper's t*: the first checkpoint where more than this fraction of the
#: training margins are >= 1
T_STAR_FRACTION = 0.1


def _run_checkpoints(run: Any) -> tuple[list[float], list[Any], dict[str, Any]]:
    """(fitted fraction of each checkpoint, a network getter each, run config)."""
    from kernelcomp import io

    if isinstance(run, str | os.PathLike):
        run = io.open_run(run)
    if isinstance(run, io.Run):
        fractions = []
        for ck in run.checkpoints:
            if ck.margins is None:
                raise ValueError(
                    f"{run.path}: checkpoint {ck.index} stores no margins; t* cannot be found"
                )
            fractions.append(float(np.mean(np.asarray(ck.margins) >= 1.0)))
        return fractions, [lambda ck=ck: ck.network for ck in run.checkpoints], run.config
    checkpoints = getattr(run, "checkpoints", None)
    if checkpoints is None or not hasattr(run, "net0"):
        raise TypeError(
            "run must be a kc.training.train result, a kc.io.open_run result or the path of "
            f"a run file, got {type(run).__name__}"
        )
    fractions = [float(ck.fitted_fraction) for ck in checkpoints]
    if any(math.isnan(f) for f in fractions):
        raise ValueError("the run's checkpoints do not record their fitted fraction")
    return fractions, [lambda ck=ck: ck.net for ck in checkpoints], getattr(run, "config", {})


def t_star(run: Any, margin_fraction: float = T_STAR_FRACTION) -> int:
    """Index of the checkpoint ``t*``.

    ``t*`` is the first checkpoint with more than ``margin_fraction`` of the
    training margins ``alpha y Ft >= 1``.

    Parameters
    ----------
    run : TrainResult, kc.io.Run, str or os.PathLike
        A result of :func:`kernelcomp.training.train`, a run read by
        :func:`kernelcomp.io.open_run`, or the path of a run file.
    margin_fraction : float, default 0.1
        The fraction, in [0, 1).

    Returns
    -------
    int
        Index into the run's checkpoints.

    Raises
    ------
    ValueError
        If no checkpoint passes ``margin_fraction`` (the run stopped first), or
        the checkpoints lack margins.

    References
    ----------
    Paccolat et al. (2021), §5: the compression is read at ``t*``, when 10 % of
    the training points are fitted.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(64, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [50], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> run = kc.training.train(net, X, y, alpha=1e-2)
    >>> k = t_star(run)
    >>> run.checkpoints[k].fitted_fraction > 0.1 >= run.checkpoints[k - 1].fitted_fraction
    True
    """
    margin_fraction = check_real(margin_fraction, "margin_fraction", minimum=0.0)
    if margin_fraction >= 1:
        raise ValueError(f"margin_fraction must be in [0, 1), got {margin_fraction}")
    fractions, _, _ = _run_checkpoints(run)
    for i, f in enumerate(fractions):
        if f > margin_fraction:
            return i
    best = max(fractions) if fractions else 0.0
    raise ValueError(
        f"no checkpoint has more than {margin_fraction:g} of the margins >= 1 (at most "
        f"{best:.3g}): the run stopped before t*"
    )


def compression_at(run: Any, margin_fraction: float = T_STAR_FRACTION, *,
                   informative: Any = None, convention: str = "figures") -> float:
    """Compression ``lambda(t*)`` of a training run, where the paper reads it.

    ``t*`` is the first checkpoint at which more than ``margin_fraction`` of
    the training points have margin ``alpha y Ft >= 1`` (:func:`t_star`); the
    compression at the end of training (every margin >= 1) is a later,
    over-fitting phase and can be far smaller. :func:`kernelcomp.training.train`
    takes a checkpoint at each of its ``margin_fractions`` (0.1 among them),
    so ``t*`` is read at ``t*``.

    Parameters
    ----------
    run : TrainResult, kc.io.Run, str or os.PathLike
        As in :func:`t_star`.
    margin_fraction : float, default 0.1
    informative : int, sequence of int or bool mask, optional
        The informative directions; by default from the run's configuration
        (its ``dataset``, ``d`` and ``d_par``, as ``kernelcomp train`` and the
        demo record them).
    convention : {"figures", "rms", "norm"}, default "figures"
        As in :func:`compression`; the paper's figures use ``"figures"``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If no checkpoint passes ``margin_fraction``, ``informative`` is needed
        and not given, or the networks were not kept (``keep_networks=False``).

    References
    ----------
    Paccolat et al. (2021), §5 and figure 3 (``lambda`` at ``t*`` against ``p``,
    next to ``sqrt(p)``).

    Examples
    --------
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(64, 3, seed=0)
    >>> net = kc.FCNetwork.init(3, [50], activation="relu_unit",
    ...                         parameterization="mean_field", seed=0)
    >>> run = kc.training.train(net, X, y, alpha=1e-2)
    >>> compression_at(run, informative=[0]) > 1
    True
    """
    k = t_star(run, margin_fraction)
    _, nets, config = _run_checkpoints(run)
    if informative is None:
        from kernelcomp import datasets

        if config.get("dataset") not in datasets.DATASETS or "d" not in config:
            raise ValueError(
                "informative is required: the run's configuration does not name a "
                "kernelcomp dataset and its dimension"
            )
        informative = datasets.informative_dims(config["dataset"], int(config["d"]),
                                                int(config.get("d_par", 2)))
    net = nets[k]()
    if net is None:
        raise ValueError("the run kept no networks (keep_networks=False); use its run file")
    return compression(net, informative, convention=convention)


def stretch_inputs(X: Any, informative: Any, lam: float) -> np.ndarray:
    """Divide the uninformative coordinates of ``X`` by ``lam``: the stretched inputs.

    The paper's test of whether compression alone explains the feature
    regime's gain: a kernel machine with the *initial* NTK trained on
    stretched inputs, ``lam = lambda(t*)`` (:func:`compression_at`), against
    the initial and the final NTK machines on the raw ones.

    Parameters
    ----------
    X : array-like of shape (n, d)
    informative : int, sequence of int or bool mask
    lam : float
        The stretch, > 0.

    Returns
    -------
    ndarray of shape (n, d)
        A new float64 array.

    Raises
    ------
    ValueError
        For invalid inputs or ``lam <= 0``.

    References
    ----------
    Paccolat et al. (2021), §5 (the stretched kernel).

    Examples
    --------
    >>> import numpy as np
    >>> stretch_inputs(np.ones((1, 3)), [0], 4.0)
    array([[1.  , 0.25, 0.25]])
    """
    X = check_matrix(X, "X", dtype=np.float64)
    lam = check_real(lam, "lam")
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    mask = _informative_mask(informative, X.shape[1])
    out = X.copy()
    out[:, ~mask] /= lam
    return out


# ---------------------------------------------------------------------------
# companions
# ---------------------------------------------------------------------------
def kernel_alignment(K: Any, y: Any, *, center: bool = False) -> float:
    """Kernel-target alignment ``<K, y y^T>_F / (||K||_F ||y y^T||_F)``.

    Parameters
    ----------
    K : array-like of shape (n, n)
        Symmetric Gram matrix.
    y : array-like of shape (n,) or (n, m)
        Real targets (for several columns ``y y^T`` becomes ``Y Y^T``).
    center : bool, default False
        Centre both ``K`` and ``Y`` first (centred alignment of Cortes et al.),
        which removes the constant mode that dominates uncentred NTKs.

    Returns
    -------
    float
        In ``[-1, 1]``; 1 when ``K`` is proportional to ``y y^T``.

    Raises
    ------
    ValueError
        On shape mismatch, non-symmetric or non-finite ``K``, or a zero ``K`` or
        ``y`` (after centring).

    References
    ----------
    N. Cristianini, J. Shawe-Taylor, A. Elisseeff, J. Kandola, "On kernel-target
    alignment", NIPS 2001. C. Cortes, M. Mohri, A. Rostamizadeh, "Algorithms for
    learning kernels based on centered alignment", JMLR 13 (2012).

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import kernel_alignment
    >>> y = np.array([1.0, -1.0, 1.0])
    >>> round(kernel_alignment(np.outer(y, y), y), 12)
    1.0
    """
    K = check_gram(K, "K")
    n = K.shape[0]
    Y = _check_targets(y, n, against="K has")
    if Y.ndim == 1:
        Y = Y[:, None]
    if center:
        Y = Y - Y.mean(axis=0)
        r = K.mean(axis=1, dtype=np.float64)
        mu = float(r.mean())
    step = _block_rows(n)
    num = 0.0
    norm2 = 0.0
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        block = K[i0:i1].astype(np.float64)
        if center:
            block = block - r[i0:i1, None] - r[None, :] + mu
        num += float(np.sum(Y[i0:i1] * (block @ Y)))
        norm2 += float(np.sum(block * block))
    ynorm = float(np.linalg.norm(Y.T @ Y))
    if norm2 == 0.0:
        raise ValueError(
            "K is zero" + (" after centring" if center else "") + "; alignment undefined"
        )
    if ynorm == 0.0:
        raise ValueError(
            "y is zero" + (" after centring" if center else "") + "; alignment undefined"
        )
    return num / (math.sqrt(norm2) * ynorm)


def kernel_change(K0: Any, K1: Any) -> float:
    """Relative change of a kernel, ``||K1 - K0||_F / ||K0||_F``.

    Parameters
    ----------
    K0 : array-like of shape (n, m)
        Reference kernel (e.g. at initialisation).
    K1 : array-like of shape (n, m)
        Kernel to compare (e.g. at the end of training). Cross Grams are allowed.

    Returns
    -------
    float
        Computed in float64, by row blocks (no n x m temporary).

    Raises
    ------
    ValueError
        If the shapes differ, ``K0`` is zero, or a matrix is not finite.

    References
    ----------
    Geiger, Spigler, Jacot, Wyart, "Disentangling feature and lazy training in
    deep neural networks", J. Stat. Mech. (2020) 113301: the relative kernel
    change separates the lazy (-> 0) and feature regimes.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import kernel_change
    >>> kernel_change(np.eye(2), 2 * np.eye(2))
    1.0
    """
    A = check_matrix(K0, "K0")
    B = check_matrix(K1, "K1")
    if A.shape != B.shape:
        raise ValueError(f"K0 and K1 must have the same shape, got {A.shape} and {B.shape}")
    step = _block_rows(A.shape[1])
    diff2 = 0.0
    ref2 = 0.0
    for i0 in range(0, A.shape[0], step):
        a = A[i0 : i0 + step].astype(np.float64)
        b = B[i0 : i0 + step].astype(np.float64)
        diff2 += float(np.sum((b - a) ** 2))
        ref2 += float(np.sum(a * a))
    if ref2 == 0.0:
        raise ValueError("K0 is zero; the relative change is undefined")
    return math.sqrt(diff2 / ref2)


def effective_rank(eigenvalues: Any, method: str = "entropy") -> float:
    """Effective rank of a spectrum.

    Parameters
    ----------
    eigenvalues : array-like of shape (k,) or KernelPCAResult
        The spectrum (any order). Negative values (round-off of a positive
        semi-definite matrix) count as zero. A truncated spectrum gives the
        effective rank of its top part.
    method : {"entropy", "participation"}, default "entropy"
        ``"entropy"``: ``exp(-sum p_r log p_r)`` with ``p = lambda / sum lambda``
        (Roy & Vetterli); ``"participation"``: ``(sum lambda)^2 / sum lambda^2``.

    Returns
    -------
    float
        Between 1 (one dominant eigenvalue) and the number of eigenvalues
        (flat spectrum).

    Raises
    ------
    ValueError
        If the spectrum is empty, not finite, has no positive value, or
        ``method`` is unknown.

    References
    ----------
    O. Roy, M. Vetterli, "The effective rank: a measure of effective
    dimensionality", EUSIPCO 2007.

    Examples
    --------
    >>> from kernelcomp.diagnostics import effective_rank
    >>> round(effective_rank([1.0, 1.0, 1.0, 1.0]), 12)
    4.0
    """
    lam = np.clip(_eigenvalues_of(eigenvalues).astype(np.float64), 0.0, None)
    method = _check_choice(method, "method", _METHODS_ERANK)
    total = float(lam.sum())
    if total <= 0.0:
        raise ValueError("eigenvalues has no positive value; the effective rank is undefined")
    if method == "participation":
        return total**2 / float(np.sum(lam * lam))
    p = lam[lam > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


@dataclass(frozen=True)
class PowerLaw:
    """A power law ``lambda_r ~ amplitude * r^(-exponent)`` fitted to a spectrum.

    Attributes
    ----------
    exponent : float
        Decay exponent ``a`` (positive for a decaying spectrum).
    amplitude : float
        Prefactor ``A``.
    fit_range : tuple of int
        First and last rank (1-based, inclusive) used by the fit.
    stderr : float
        Standard error of the exponent from the least-squares fit (NaN for two
        points).
    r_squared : float
        Coefficient of determination of the log-log fit.
    """

    exponent: float
    amplitude: float
    fit_range: tuple[int, int]
    stderr: float
    r_squared: float

    def __call__(self, rank: Any) -> np.ndarray:
        """The fitted law at ``rank`` (1-based)."""
        r = np.asarray(rank, dtype=np.float64)
        return self.amplitude * r ** (-self.exponent)


def spectrum_power_law(eigenvalues: Any, fit_range: tuple[int, int] | None = None) -> PowerLaw:
    """Fit ``lambda_r = A r^(-a)`` by least squares on log-log axes.

    Parameters
    ----------
    eigenvalues : array-like of shape (k,) or KernelPCAResult
        The spectrum; it is sorted in descending order first. Rank ``r`` is 1-based.
    fit_range : (int, int), optional
        First and last rank (inclusive) of the fit. Default: from rank 2 (the top
        eigenvalue of an uncentred NTK is the constant mode) to the smaller of
        ``k // 2`` (the tail of a finite-sample spectrum bends) and the last rank
        above ``1e3 eps * lambda_1`` (round-off floor), widened to at least two
        points.

    Returns
    -------
    PowerLaw
        ``exponent``, ``amplitude``, ``fit_range``, ``stderr``, ``r_squared``;
        callable on ranks.

    Raises
    ------
    ValueError
        If fewer than two positive eigenvalues lie in the range, if the range is
        malformed, or the spectrum is empty / not finite.

    References
    ----------
    Paccolat et al. (2021): NTK spectra decay as power laws of the rank.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import spectrum_power_law
    >>> fit = spectrum_power_law(3.0 * np.arange(1, 101.0) ** -1.5, fit_range=(1, 100))
    >>> round(fit.exponent, 9), round(fit.amplitude, 9)
    (1.5, 3.0)
    """
    raw = _eigenvalues_of(eigenvalues)
    lam = np.sort(raw.astype(np.float64))[::-1]
    m = lam.size
    if fit_range is None:
        eps = np.finfo(raw.dtype if raw.dtype.kind == "f" else np.float64).eps
        floor = 1e3 * eps * lam[0]
        above = np.nonzero(lam > max(floor, 0.0))[0]
        last_ok = int(above[-1]) + 1 if above.size else 0
        hi = min(m // 2, last_ok)
        lo = 2
        if hi - lo < 1:
            lo, hi = 1, min(m, max(last_ok, 2))
    else:
        if (
            not isinstance(fit_range, Sequence | np.ndarray)
            or isinstance(fit_range, str)
            or len(fit_range) != 2
        ):
            raise ValueError(f"fit_range must be a pair (first_rank, last_rank), got {fit_range!r}")
        lo = check_int(fit_range[0], "fit_range[0]", minimum=1)
        hi = check_int(fit_range[1], "fit_range[1]", minimum=1)
        if hi > m or lo >= hi:
            raise ValueError(
                f"fit_range must satisfy 1 <= first < last <= {m} (number of eigenvalues), "
                f"got ({lo}, {hi})"
            )
    ranks = np.arange(lo, hi + 1, dtype=np.float64)
    vals = lam[lo - 1 : hi]
    keep = vals > 0
    if int(keep.sum()) < 2:
        raise ValueError(
            f"need at least 2 positive eigenvalues in ranks {lo}..{hi} to fit a power law, "
            f"got {int(keep.sum())}"
        )
    x = np.log(ranks[keep])
    t = np.log(vals[keep])
    xm, tm = x.mean(), t.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (t - tm)) / sxx)
    intercept = float(tm - slope * xm)
    resid = t - (intercept + slope * x)
    sst = float(np.sum((t - tm) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / sst if sst > 0 else 1.0
    dof = x.size - 2
    stderr = math.sqrt(float(np.sum(resid**2)) / dof / sxx) if dof > 0 else math.nan
    return PowerLaw(
        exponent=-slope,
        amplitude=math.exp(intercept),
        fit_range=(int(lo), int(hi)),
        stderr=stderr,
        r_squared=r2,
    )


def intrinsic_dimension(K: Any, *, discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension of the data in the kernel's feature space.

    Distances are those the kernel induces, ``d(i, j)^2 = K_ii + K_jj - 2 K_ij``
    (clipped at 0). For each point ``mu_i = r2 / r1``, the ratio of its second to
    first nearest-neighbour distance; under the TwoNN model ``mu`` is Pareto
    distributed with index ``d``, and ``d`` is the slope through the origin of
    ``-log(1 - F(mu))`` against ``log mu`` over the smallest
    ``1 - discard_fraction`` of the ratios (Facco et al.).

    Parameters
    ----------
    K : array-like of shape (n, n)
        Symmetric Gram matrix, ``n >= 3``.
    discard_fraction : float, default 0.1
        Fraction of the largest ratios left out of the fit, in ``[0, 1)``.

    Returns
    -------
    float
        The estimated dimension. Points with a duplicate (``r1 = 0``) are left out.

    Raises
    ------
    ValueError
        If ``K`` is not a finite symmetric square matrix with at least 3 rows,
        if fewer than 3 points have distinct neighbours, or ``discard_fraction``
        is out of range.

    References
    ----------
    E. Facco, M. d'Errico, A. Rodriguez, A. Laio, "Estimating the intrinsic
    dimension of datasets by a minimal neighborhood information", Sci. Rep. 7
    (2017) 12140.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import intrinsic_dimension
    >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
    >>> 1.7 < intrinsic_dimension(X @ X.T) < 2.3
    True
    """
    K = check_gram(K, "K")
    n = K.shape[0]
    if n < 3:
        raise ValueError(f"K must have at least 3 rows for the TwoNN estimate, got {n}")
    frac = check_real(discard_fraction, "discard_fraction", minimum=0.0)
    if frac >= 1.0:
        raise ValueError(f"discard_fraction must be in [0, 1), got {frac}")
    dg = np.diagonal(K).astype(np.float64)
    r1 = np.empty(n)
    r2 = np.empty(n)
    step = _block_rows(n)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        d2 = dg[i0:i1, None] + dg[None, :] - 2.0 * K[i0:i1].astype(np.float64)
        np.maximum(d2, 0.0, out=d2)
        rows = np.arange(i1 - i0)
        d2[rows, rows + i0] = np.inf  # not its own neighbour
        two = np.partition(d2, 1, axis=1)[:, :2]
        r1[i0:i1] = np.sqrt(two[:, 0])
        r2[i0:i1] = np.sqrt(two[:, 1])
    ok = r1 > 0
    if int(ok.sum()) < 3:
        raise ValueError(
            "fewer than 3 points have a nearest neighbour at non-zero kernel distance; "
            "the TwoNN estimate is undefined"
        )
    mu = np.sort(r2[ok] / r1[ok])
    m = mu.size
    F = np.arange(1, m + 1) / m
    keep = max(2, math.floor(m * (1.0 - frac)))
    keep = min(keep, m - 1)  # F = 1 at the largest ratio: -log(0)
    x = np.log(mu[:keep])
    t = -np.log1p(-F[:keep])
    sxx = float(np.dot(x, x))
    if sxx == 0.0:
        raise ValueError("all neighbour-distance ratios are 1; the TwoNN estimate is undefined")
    return float(np.dot(x, t) / sxx)
