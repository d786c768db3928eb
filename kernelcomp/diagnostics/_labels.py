"""How much of the labels the eigenvectors of a kernel carry, and how much they know.

* :func:`label_projection`, :func:`cumulative_projection` -- ``c_r = phi_r . y``
  and ``P_k = sum_{r<=k} c_r^2 / ||y||^2``.
* :func:`mutual_information` -- the paper's kNN class-conditional estimator
  (bits), or scikit-learn's ``mutual_info_classif`` for comparison.
* :func:`kernel_alignment` -- the kernel-target alignment.
* :func:`class_indicators` -- the centred one-hot coding of several classes
  (what :func:`~kernelcomp.diagnostics.kpca_record` projects for them).

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: label projections and mutual information of the NTK's
   eigenvectors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kernelcomp._validation import (
    check_choice,
    check_gram,
    check_int,
)
from kernelcomp.diagnostics._checks import (
    _block_rows,
    _check_classes,
    _check_targets,
    _check_vectors,
)

_METHODS_MI = ("paper", "ksg")


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


def is_multiclass(y: Any) -> bool:
    """Whether ``y`` holds class labels of three or more classes.

    Labels of any type but floating point (integers, booleans, strings) with at
    least three distinct values; floating-point ``y`` are real targets.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.dtype.kind in "fc":
        return False
    try:
        return np.unique(arr).size >= 3
    except TypeError:  # unorderable objects: the checks downstream say so
        return False


def class_indicators(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Centred one-hot indicators of the classes of ``y``.

    ``Y[i, j] = [y_i = class_j] - n_j / n``: column ``j`` is the indicator of
    class ``j`` minus its mean, so the constant vector carries none of
    ``||Y||_F^2 = n - sum_j n_j^2 / n``. This is the target :func:`kpca_record`
    projects for three or more classes: ``c_rj = phi_r . Y_j`` and
    ``P_k = sum_{r<=k} sum_j c_rj^2 / ||Y||_F^2``
    (:func:`label_projection` and :func:`cumulative_projection` of ``Y``).
    For two classes ``Y``'s two columns are ``+-(y - mean(y)) / 2`` of the
    +-1 labels ``y``, so ``P_k`` is then that of the centred +-1 labels.

    Parameters
    ----------
    y : array-like of shape (n,)
        Class labels of any type (numbers, strings).

    Returns
    -------
    Y : ndarray of shape (n, C)
        float64, one column per class, in the order of ``classes``.
    classes : ndarray of shape (C,)
        The distinct labels, sorted (``numpy.unique``).

    Raises
    ------
    ValueError
        If ``y`` is not 1-D, holds NaN, or has a single class (no column
        survives the centring).
    TypeError
        For complex or unorderable labels.

    Examples
    --------
    >>> from kernelcomp.diagnostics import class_indicators
    >>> Y, classes = class_indicators(["a", "b", "c", "a"])
    >>> classes.tolist(), Y[:, 0].tolist()
    (['a', 'b', 'c'], [0.5, -0.5, -0.5, 0.5])
    """
    arr = np.asarray(y)
    classes, codes = _check_classes(arr, arr.shape[0] if arr.ndim else 0)
    if classes.size < 2:
        raise ValueError(f"y has a single class ({classes.tolist()}); its centred "
                         "indicator is zero")
    n = codes.size
    Y = np.zeros((n, classes.size), dtype=np.float64)
    Y[np.arange(n), codes] = 1.0
    Y -= np.bincount(codes, minlength=classes.size) / n
    return Y, classes


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
    method = check_choice(method, "method", _METHODS_MI)
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


#: label shuffles of :func:`mutual_information_floor`
MI_FLOOR_SHUFFLES = 10


def mutual_information_floor(
    eigenvectors: Any,
    y: Any,
    n_components: int | None = 10,
    k: int = 5,
    *,
    n_shuffles: int = MI_FLOOR_SHUFFLES,
    random_state: int = 0,
) -> float:
    """The paper's MI estimator on shuffled labels: its floor (bias) on these data.

    The mean, over ``n_shuffles`` random permutations of ``y`` and over the same
    eigenvectors, of :func:`mutual_information` (``method="paper"``). Shuffled
    labels carry no information, so this is what the estimator reports for an
    uninformative eigenvector at this ``n``, ``k`` and class balance (about
    0.08 bit at ``k = 5``): an estimate is informative only above it. Draw it
    beside the estimates (``floor=`` of
    :func:`kernelcomp.plotting.plot_mutual_information`).

    Parameters
    ----------
    eigenvectors : array-like of shape (n, K) or (n,)
    y : array-like of shape (n,)
        Two classes, as for :func:`mutual_information`.
    n_components : int or None, default 10
    k : int, default 5
        As for :func:`mutual_information`.
    n_shuffles : int, default 10
        Random permutations of ``y``.
    random_state : int, default 0
        Seed of the permutations.

    Returns
    -------
    float
        Bits.

    Raises
    ------
    ValueError, TypeError
        As :func:`mutual_information`; ``n_shuffles < 1``.

    References
    ----------
    Paccolat et al. (2021): the kNN estimator (k = 5, D = 1) of the mutual
    information of the NTK's top eigenvectors with the labels.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelcomp.diagnostics import mutual_information_floor
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([-1, 1], 200)
    >>> floor = mutual_information_floor(rng.standard_normal((400, 3)), y)
    >>> bool(0.03 < floor < 0.15)
    True
    """
    n_shuffles = check_int(n_shuffles, "n_shuffles", minimum=1)
    y = np.asarray(y)
    rng = np.random.default_rng(random_state)
    values = [mutual_information(eigenvectors, y[rng.permutation(y.shape[0])],
                                 n_components=n_components, k=k)
              for _ in range(n_shuffles)]
    return float(np.mean(values))


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
