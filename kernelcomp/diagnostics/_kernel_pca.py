"""Kernel PCA of a Gram matrix: eigenpairs of the uncentred kernel, and its per-Gram record.

:func:`kernel_pca` returns the eigenvalues (descending) and unit-norm eigenvectors
(deterministic sign) of the **uncentred** Gram matrix, as the paper's experiments
use it, choosing the cheapest eigensolver for the number of eigenpairs asked for;
:func:`kpca_record` is the standard record of one Gram matrix (spectrum, label
projection, mutual information, alignment) that ``kernelcomp kpca`` and the demo
both store.

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: kernel PCA of the empirical NTK along training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelcomp._gram import default_block_rows
from kernelcomp._linalg import matmul as _matmul
from kernelcomp._parallel import progress as progress_bar
from kernelcomp._validation import (
    check_bool,
    check_choice,
    check_gram,
    check_int,
    check_matrix,
    check_real,
    symmetry_tolerance,
)
from kernelcomp.diagnostics._checks import _block_rows
from kernelcomp.diagnostics._labels import (
    class_indicators,
    cumulative_projection,
    is_multiclass,
    kernel_alignment,
    label_projection,
    mutual_information,
    mutual_information_floor,
)
from kernelcomp.diagnostics._spectrum import effective_rank

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
_METHODS_KPCA = ("auto", "lanczos", "subset", "full", "arpack")



def _block_lanczos(matmul: Any, n: int, k: int, dtype: Any, **options: Any) -> Any:
    """:func:`kernelcomp._eigsolve.block_lanczos_topk`, imported on first use.

    It loads ``scipy.linalg``, which ``import kernelcomp.diagnostics`` does not need.
    """
    from kernelcomp import _eigsolve

    return _eigsolve.block_lanczos_topk(matmul, n, k, dtype, **options)

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
    row_means : ndarray of shape (n,) or None
        ``center=True`` only: the row means of the training Gram before
        centring, which :meth:`transform` needs to centre new rows the same way.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    center: bool
    trace: float
    row_means: np.ndarray | None = field(default=None, repr=False)

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

    def transform(self, K_new: Any) -> np.ndarray:
        """Coordinates of new points on the eigenvectors (the Nystrom extension).

        ``K_new @ V / sqrt(lambda)`` with ``K_new[a, i] = k(x_new_a, x_i)`` the
        Gram of the new points against the *training* points (in the order of
        the decomposed matrix), centred as the training Gram was: with
        ``center=True``, ``K_new - K_new.mean(1) - r + mean(r)`` with ``r`` the
        training Gram's row means (:class:`sklearn.preprocessing.KernelCenterer`,
        so the result equals :class:`sklearn.decomposition.KernelPCA`'s
        ``transform`` on the same Gram, up to the sign of each component).
        Components with an eigenvalue below ``1e-12`` (float32: ``2e-7``) of
        the largest, zero to rounding, give zero coordinates (scikit-learn's
        rule). On the training points themselves the coordinates are
        ``V sqrt(lambda)``.

        Parameters
        ----------
        K_new : array-like of shape (m, n)
            Gram of ``m`` new points against the ``n`` training points, e.g.
            ``kernel(X_new, X_train)``.

        Returns
        -------
        ndarray of shape (m, n_components)
            float64, or float32 when both ``K_new`` and the eigenvectors are.

        Raises
        ------
        ValueError
            If ``K_new`` is not 2-D, has not ``n`` columns, or is not finite.

        References
        ----------
        Scholkopf, Smola, Muller (1998), *Nonlinear component analysis as a
        kernel eigenvalue problem*, eq. (25); Williams and Seeger (2001), the
        Nystrom method.

        Examples
        --------
        >>> import numpy as np, kernelcomp as kc
        >>> rng = np.random.default_rng(0)
        >>> X, X_new = rng.standard_normal((40, 3)), rng.standard_normal((5, 3))
        >>> k = kc.NTK()
        >>> ev = kc.diagnostics.kernel_pca(k(X), n_components=4)
        >>> ev.transform(k(X_new, X)).shape
        (5, 4)
        >>> bool(np.allclose(ev.transform(k(X)), ev.eigenvectors * np.sqrt(ev.eigenvalues)))
        True
        """
        n = self.n_samples
        K_new = check_matrix(K_new, "K_new")
        if K_new.shape[1] != n:
            raise ValueError(
                f"K_new must have one column per training point ({n}), got shape "
                f"{K_new.shape}: pass the Gram of the new points against the training points"
            )
        dt = np.result_type(K_new.dtype, self.eigenvectors.dtype)
        Kn = np.asarray(K_new, dtype=np.float64)
        if self.center:
            r = np.asarray(self.row_means, dtype=np.float64)
            Kn = Kn - Kn.mean(axis=1, keepdims=True) - r[None, :] + float(r.mean())
        lam = np.asarray(self.eigenvalues, dtype=np.float64)
        small = 2e-7 if self.eigenvalues.dtype == np.float32 else 1e-12
        keep = lam > small * max(float(lam.max(initial=0.0)), 0.0)
        scaled = np.zeros(self.eigenvectors.shape, dtype=np.float64)
        scaled[:, keep] = self.eigenvectors[:, keep] / np.sqrt(lam[keep])
        return _matmul(Kn, scaled).astype(dt, copy=False)

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
    if check_choice(method, "method", _METHODS_KPCA) not in ("auto", "lanczos"):
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

        w, V, info = _block_lanczos(matmul, n, k, dt, tol=tol, random_state=random_state)
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
    method = check_choice(method, "method", _METHODS_KPCA)
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
    row_means = None
    if center:
        row_means = K.mean(axis=1, dtype=np.float64)
        K = _center_gram(K)
        owned = True
    trace = float(np.trace(K, dtype=np.float64))

    if method == "lanczos":
        w, V, info = _block_lanczos(lambda B: _matmul(K, B), n, k, K.dtype, tol=tol,
                                    random_state=random_state)
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
    return KernelPCAResult(eigenvalues=w, eigenvectors=V, center=bool(center), trace=trace,
                           row_means=row_means)


#: eigenvectors whose mutual information with the labels :func:`kpca_record` reports,
#: and the neighbours of the estimator (the paper's k = 5)
MI_COMPONENTS = 10
MI_NEIGHBOURS = 5


def kpca_record(
    K: Any,
    y: Any = None,
    *,
    n_components: int | None = None,
    mi_components: int = MI_COMPONENTS,
    mi_k: int = MI_NEIGHBOURS,
    eigenvectors: bool = False,
) -> dict[str, Any]:
    """The kernel-PCA record of one Gram matrix (what ``kernelcomp kpca`` stores per entry).

    Parameters
    ----------
    K : array-like of shape (n, n)
        Symmetric Gram matrix.
    y : array-like of shape (n,), optional
        Labels of the Gram's points. Real values (floating point, or two
        classes: the paper's +-1 labels): the label projections of ``y`` as
        given (uncentred, as in the paper), the kernel alignment and, for two
        classes, the paper's mutual information. Three or more classes
        (integers, booleans or strings): the projections of their centred
        one-hot indicators (:func:`class_indicators`; ``label_projection`` of
        shape (k, C), ``P_k`` summed over the classes), the alignment with them
        and the mutual information of each eigenvector with the class by
        scikit-learn's kNN estimator (``method="ksg"``: the paper's estimator
        is defined for two classes).
    n_components : int, optional
        Eigenpairs to compute (default all).
    mi_components : int, default 10
        Top eigenvectors whose mutual information with the labels is estimated
        (at most ``n_components``).
    mi_k : int, default 5
        Neighbours of the kNN estimator.
    eigenvectors : bool, default False
        Keep the eigenvectors in the record too.

    Returns
    -------
    dict
        ``n_samples``, ``trace``, ``eigenvalues`` (descending), ``effective_rank``;
        with ``y`` also ``label_projection``, ``cumulative_projection``,
        ``kernel_alignment``, ``label_mean_share`` (the share of the targets'
        squared norm carried by their mean, ``n |mean(y)|^2 / ||y||^2``: the part
        of ``P_k`` the constant direction accounts for; 0 for centred
        indicators), ``mutual_information`` (bits; two classes: the paper's
        estimator, three or more: ``"ksg"``) with ``mi_method`` naming the
        estimator, with two classes also ``mutual_information_floor`` (the
        estimator's value on shuffled labels, :func:`mutual_information_floor`); for three or more
        classes ``n_classes``; ``eigenvectors`` when asked for. Arrays are NumPy
        arrays, scalars Python numbers.

    Raises
    ------
    ValueError, TypeError
        As :func:`kernel_pca`, :func:`label_projection` and
        :func:`mutual_information` do on invalid input.

    References
    ----------
    Paccolat et al. (2021), §5: kernel PCA of the empirical NTK, the labels'
    projection on its eigenvectors and their mutual information with the labels.

    Examples
    --------
    >>> import kernelcomp as kc
    >>> X, y = kc.datasets.stripe(60, 3, seed=0)
    >>> rec = kpca_record(kc.NTK()(X), y, n_components=20)
    >>> rec["eigenvalues"].shape, rec["mutual_information"].shape
    ((20,), (10,))
    """
    K = check_gram(K, "K", symmetric=False)  # kernel_pca checks the symmetry
    mi_components = check_int(mi_components, "mi_components", minimum=1)
    mi_k = check_int(mi_k, "mi_k", minimum=1)
    eigenvectors = check_bool(eigenvectors, "eigenvectors")
    ev = kernel_pca(K, n_components=n_components)
    record: dict[str, Any] = {
        "n_samples": int(K.shape[0]),
        "trace": float(np.trace(K, dtype=np.float64)),
        "eigenvalues": np.asarray(ev.eigenvalues),
    }
    if eigenvectors:
        record["eigenvectors"] = np.asarray(ev.eigenvectors)
    record["effective_rank"] = float(effective_rank(ev.eigenvalues))
    if y is None:
        return record
    n_mi = min(mi_components, ev.eigenvectors.shape[1])
    if is_multiclass(y):
        labels = np.asarray(y).reshape(-1)
        target, classes = class_indicators(labels)
        record["n_classes"] = int(classes.size)
        mi_method = "ksg"
    else:
        target, labels = y, y
        mi_method = "paper" if np.unique(np.asarray(y)).size == 2 else None
    c = label_projection(ev.eigenvectors, target)
    record["label_projection"] = np.asarray(c)
    record["cumulative_projection"] = np.asarray(cumulative_projection(c, target))
    record["kernel_alignment"] = float(kernel_alignment(K, target))
    T = np.asarray(target, dtype=np.float64).reshape(K.shape[0], -1)
    record["label_mean_share"] = float(
        K.shape[0] * np.sum(T.mean(axis=0) ** 2) / np.sum(T * T))
    if mi_method is not None:
        record["mutual_information"] = np.asarray(mutual_information(
            ev.eigenvectors, labels, n_components=n_mi, k=mi_k, method=mi_method))
        record["mi_method"] = mi_method
    if mi_method == "paper":
        record["mutual_information_floor"] = mutual_information_floor(
            ev.eigenvectors, labels, n_components=n_mi, k=mi_k)
    return record
