"""Reading a kernel's spectrum and geometry: effective rank, power law, TwoNN dimension.

:func:`effective_rank`, :func:`spectrum_power_law`, :func:`intrinsic_dimension`
and :func:`kernel_change` (the relative change between two Gram matrices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelcomp._validation import (
    check_choice,
    check_gram,
    check_int,
    check_matrix,
    check_real,
)
from kernelcomp.diagnostics._checks import _block_rows, _eigenvalues_of

_METHODS_ERANK = ("entropy", "participation")


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
    method = check_choice(method, "method", _METHODS_ERANK)
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
