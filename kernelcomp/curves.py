"""Learning curves ``test error vs p`` over seeds, fitted exponents and theory values.

:func:`learning_curve` runs any estimator (sklearn contract) or any training
recipe (a function of the data) over training-set sizes ``p`` and seeds;
:func:`fit_exponent` fits ``error ~ p^(-beta)`` by least squares on log-log axes
over a chosen range, drops points with too few test errors to be measured, and
bootstraps over seeds for the interval (optionally dropping failed runs, as the
authors do); :func:`beta_lazy` and :func:`beta_feature` are the paper's
predictions and :func:`compression_theory` the authors' ODE estimate of the
compression. :func:`frozen_kernel_curve` is the lazy-regime curve of the paper's
protocol from a kernel machine on the frozen initial NTK (:func:`paper_ntk`).

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001, §4 (learning
curves, eqs. for beta_lazy and beta_feature) and §6 (experiments).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelcomp import datasets
from kernelcomp._base import Kernel
from kernelcomp._parallel import progress as progress_bar
from kernelcomp._validation import check_choice, check_int, check_real
from kernelcomp.empirical import EmpiricalNTK
from kernelcomp.kernels import NTK
from kernelcomp.network import FCNetwork

__all__ = [
    "ExponentFit",
    "LearningCurve",
    "beta_feature",
    "beta_lazy",
    "compression_theory",
    "estimator_recipe",
    "fit_exponent",
    "frozen_kernel_curve",
    "learning_curve",
    "paper_ntk",
]


# ---------------------------------------------------------------------------
# theory
# ---------------------------------------------------------------------------
def beta_lazy(d: int) -> float:
    """Learning-curve exponent of the lazy regime (NTK): ``beta = d / (3d - 2)``.

    Parameters
    ----------
    d : int
        Input dimension, >= 1.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        If ``d`` is not an integer >= 1.

    References
    ----------
    Paccolat et al. (2021), §4 (eq. for the lazy regime).

    Examples
    --------
    >>> round(beta_lazy(5), 3)
    0.385
    """
    d = check_int(d, "d", minimum=1)
    return d / (3 * d - 2)


def beta_feature(d: int, d_par: int = 1) -> float:
    """Learning-curve exponent of the feature regime.

    ``(2d - 1)/(3d - 2)`` for one informative direction (stripe) and
    ``(d + d_perp/2)/(3d - 2)`` with ``d_perp = d - d_par`` otherwise (1/2 for a
    cylinder with ``d_par = 2``).

    Parameters
    ----------
    d : int
        Input dimension, >= 1.
    d_par : int, default 1
        Informative directions, 1 <= d_par <= d.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        If the arguments are not integers in range.

    References
    ----------
    Paccolat et al. (2021), §4 (feature regime, stripe and cylinder).

    Examples
    --------
    >>> round(beta_feature(5), 3), beta_feature(7, d_par=2)
    (0.692, 0.5)
    """
    d = check_int(d, "d", minimum=1)
    d_par = check_int(d_par, "d_par", minimum=1)
    if d_par > d:
        raise ValueError(f"d_par must be <= d ({d}), got {d_par}")
    if d_par == 1:
        return (2 * d - 1) / (3 * d - 2)
    return (d + (d - d_par) / 2) / (3 * d - 2)


def compression_theory(p: Any, x_min: float = -0.3, x_max: float = 1.18549) -> Any:
    """The authors' ODE estimate of the feature-regime compression of the stripe model.

    ``lambda_ODE = sqrt((2/pi) (exp(-x_min^2/2) - exp(-x_max^2/2))^2 p)``: the
    authors' ODE estimate (the paper's ``lambda_ODE``) of the compression that
    feature learning reaches for the stripe ``x_min < x_1 < x_max`` after ``p``
    training points, read at ``t*`` (the first checkpoint where more than 10%
    of the training margins are >= 1). For the default stripe
    ``-0.3 < x_1 < 1.18549`` (the stripe that holds half of the Gaussian mass,
    :func:`kernelcomp.datasets.stripe`) it is ``sqrt(0.1351 p)``, about
    ``0.368 sqrt(p)``.

    Parameters
    ----------
    p : float or array-like of float
        Training-set sizes, finite and > 0.
    x_min : float, default -0.3
        Lower edge of the stripe.
    x_max : float, default 1.18549
        Upper edge of the stripe, > ``x_min``.

    Returns
    -------
    float or numpy.ndarray
        A float for a scalar ``p``, else an array of the shape of ``p``.

    Raises
    ------
    TypeError
        If ``p`` is not numeric or an edge is not a real number.
    ValueError
        If a size is not finite and > 0, or ``x_min >= x_max``.

    References
    ----------
    Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
    manifolds in neural networks*, J. Stat. Mech. (2021) 044001 (arXiv:2007.11471),
    §5 (compression of the stripe model, the ODE estimate ``lambda_ODE``).

    Examples
    --------
    >>> round(compression_theory(1.0) ** 2, 4)
    0.1351
    >>> compression_theory([100, 400]).round(3)
    array([3.676, 7.352])
    """
    x_min = check_real(x_min, "x_min")
    x_max = check_real(x_max, "x_max")
    if not x_min < x_max:
        raise ValueError(f"x_min must be < x_max, got x_min={x_min} and x_max={x_max}")
    scalar = np.ndim(p) == 0
    if scalar:
        arr = np.float64(check_real(p, "p"))
    else:
        arr = np.asarray(p)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"p must hold real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"p must hold finite sizes > 0, got {p!r}")
    c = (2 / math.pi) * (math.exp(-x_min**2 / 2) - math.exp(-x_max**2 / 2)) ** 2
    out = np.sqrt(c * arr)
    return float(out) if scalar else out


# ---------------------------------------------------------------------------
# exponent fits
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ExponentFit:
    """A fitted power law ``error = A p^(-beta)``.

    Attributes
    ----------
    beta : float
        Fitted exponent (minus the log-log slope of the mean error).
    ci : tuple of float
        Bootstrap interval over seeds (``level`` quantiles).
    intercept : float
        ``log A`` (natural log).
    p : numpy.ndarray
        The sizes used in the fit.
    mean_error : numpy.ndarray
        Mean test error over seeds at those sizes.
    dropped : numpy.ndarray
        Sizes in range left out for having fewer than ``min_errors`` test errors
        (or, with ``max_error``, for having every run dropped).
    level : float
        Coverage of ``ci``.
    n_bootstrap : int
    """

    beta: float
    ci: tuple[float, float]
    intercept: float
    p: np.ndarray
    mean_error: np.ndarray
    dropped: np.ndarray
    level: float
    n_bootstrap: int

    def predict(self, p: Any) -> np.ndarray:
        """The fitted law at sizes ``p``."""
        return np.exp(self.intercept) * np.asarray(p, dtype=np.float64) ** (-self.beta)


def _slope(logp: np.ndarray, logerr: np.ndarray) -> tuple[float, float]:
    A = np.column_stack([logp, np.ones_like(logp)])
    (slope, icpt), *_ = np.linalg.lstsq(A, logerr, rcond=None)
    return float(slope), float(icpt)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean of each row over its finite entries (NaN where there is none)."""
    ok = np.isfinite(a)
    counts = ok.sum(axis=1)
    sums = np.where(ok, a, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _seed_bootstrap(statistic: Callable[[np.ndarray], float], n_seeds: int, n_bootstrap: int,
                    level: float, seed: int) -> tuple[float, float] | None:
    """Interval of ``statistic(columns)`` over resamples of the seeds with replacement.

    Each resample draws ``n_seeds`` column indices (the same for every size);
    resamples whose statistic is not finite are skipped. None when none is left.
    """
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n_seeds, n_seeds))
                       for _ in range(n_bootstrap)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    q = (1 - level) / 2
    lo, hi = np.quantile(values, [q, 1 - q])
    return float(lo), float(hi)


def loglog_slope(p: Any, per_seed: Any, *, n_bootstrap: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float | None, list[float | None]]:
    """Log-log slope of the seed mean of a positive metric against ``p``, with an interval.

    The twin of :func:`fit_exponent` for metrics that are not test errors (the
    compression lambda): entries that are not positive or NaN (a run stopped
    before t*) are left out of the seed means, sizes without any are left out of
    the fit, and the interval is the seed bootstrap of :func:`fit_exponent`.

    Parameters
    ----------
    p : array-like of shape (n_p,)
        Sizes.
    per_seed : array-like of shape (n_p, n_seeds)
        The metric per size and seed.
    n_bootstrap : int, default 1000
        Resamples of the seeds.
    level : float, default 0.95
        Coverage of the interval.
    seed : int, default 0
        Seed of the bootstrap.

    Returns
    -------
    (float or None, [low, high])
        The slope (None when fewer than two sizes have a value) and its interval
        (``[slope, slope]`` when no resample has two sizes).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([16.0, 64.0, 256.0])
    >>> slope, ci = loglog_slope(p, np.sqrt(p)[:, None] * np.ones((1, 3)))
    >>> round(slope, 6), [round(v, 6) for v in ci]
    (0.5, [0.5, 0.5])
    """
    p = np.asarray(p, dtype=float)
    per_seed = np.asarray(per_seed, dtype=float)

    def slope(v: np.ndarray) -> float:
        m = _nanmean_rows(np.where(v > 0, v, np.nan))
        ok = np.isfinite(m)
        return _slope(np.log(p[ok]), np.log(m[ok]))[0] if ok.sum() >= 2 else math.nan

    s = slope(per_seed)
    if not math.isfinite(s):
        return None, [None, None]
    ci = _seed_bootstrap(lambda idx: slope(per_seed[:, idx]), per_seed.shape[1], n_bootstrap,
                         level, seed)
    return s, [s, s] if ci is None else list(ci)


def fit_exponent(
    p: Any,
    errors: Any,
    *,
    n_test: int | None = None,
    p_range: tuple[float, float] | None = None,
    min_errors: float = 10.0,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    max_error: float | None = None,
) -> ExponentFit:
    """Fit ``mean error ~ p^(-beta)`` with a bootstrap over seeds.

    Least squares of ``log(mean over seeds of the test error)`` on ``log p``
    over the sizes in ``p_range``, leaving out sizes whose mean number of test
    errors (``mean error * n_test``) is below ``min_errors``: a handful of
    errors does not measure a rate. The interval resamples the seeds with
    replacement (the same resample at every ``p``) and refits.

    With ``max_error``, runs (one size and seed) whose test error is
    ``>= max_error`` are dropped, as the authors drop failed runs (0.25 in their
    code): the mean at each size is over its remaining seeds, a size with no
    run left is left out (and listed in ``dropped``), and a bootstrap resample
    averages the runs it holds that are not dropped (a resample leaving a size
    without a run is skipped, like one with a zero mean).

    Parameters
    ----------
    p : array-like of shape (n_p,)
        Training-set sizes, > 0.
    errors : array-like of shape (n_p, n_seeds)
        Test error of each size and seed, in [0, 1].
    n_test : int, optional
        Test-set size, to count errors; None keeps every size with a positive
        mean error.
    p_range : (float, float), optional
        Inclusive range of sizes to fit (the asymptotic range); default all.
    min_errors : float, default 10
        Minimum mean number of test errors for a size to count.
    n_bootstrap : int, default 1000
        Bootstrap resamples (0: no interval, ``ci = (beta, beta)``).
    level : float, default 0.95
        Coverage of the interval.
    seed : int, default 0
        Seed of the bootstrap.
    max_error : float, optional
        In (0, 1]: drop the runs with a test error ``>= max_error`` (the authors
        use 0.25). None keeps every run.

    Returns
    -------
    ExponentFit

    Raises
    ------
    ValueError
        If the shapes disagree, values are out of range, or fewer than two sizes
        remain to fit.

    References
    ----------
    Paccolat et al. (2021), §6 (fits of the learning curves; the authors' code
    leaves out the runs with a test error >= 0.25).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([100, 200, 400, 800])
    >>> err = 2.0 * p[:, None] ** -0.5 * np.ones((1, 5))
    >>> round(fit_exponent(p, err, n_test=10_000).beta, 6)
    0.5
    """
    p = np.asarray(p, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"p must be a non-empty 1-D array of sizes, got shape {p.shape}")
    if errors.ndim == 1:
        errors = errors[:, None]
    if errors.ndim != 2 or errors.shape[0] != p.size:
        raise ValueError(
            f"errors must have shape (len(p), n_seeds) = ({p.size}, n_seeds), got "
            f"{errors.shape}"
        )
    if not (np.isfinite(p).all() and (p > 0).all()):
        raise ValueError("p must hold finite sizes > 0")
    if not np.isfinite(errors).all() or errors.min() < 0 or errors.max() > 1:
        raise ValueError("errors must hold test errors in [0, 1] (no NaN)")
    if n_test is not None:
        n_test = check_int(n_test, "n_test", minimum=1)
    min_errors = check_real(min_errors, "min_errors", minimum=0.0)
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", minimum=0)
    level = check_real(level, "level")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    run_ok = None
    if max_error is not None:
        max_error = check_real(max_error, "max_error")
        if not 0 < max_error <= 1:
            raise ValueError(f"max_error must be in (0, 1], got {max_error}")
        run_ok = errors < max_error
    keep = np.ones(p.size, dtype=bool)
    if p_range is not None:
        if not isinstance(p_range, Sequence) or len(p_range) != 2:
            raise ValueError(f"p_range must be a pair (low, high), got {p_range!r}")
        lo, hi = (check_real(v, "p_range") for v in p_range)
        if lo > hi:
            raise ValueError(f"p_range must have low <= high, got {p_range!r}")
        keep &= (p >= lo) & (p <= hi)
    if run_ok is None:
        mean = errors.mean(axis=1)
        runs = np.full(p.size, errors.shape[1])
    else:
        runs = run_ok.sum(axis=1)
        mean = _nanmean_rows(np.where(run_ok, errors, np.nan))
    with np.errstate(invalid="ignore"):
        enough = mean > 0 if n_test is None else (mean * n_test >= max(min_errors, 1e-300))
    enough &= runs > 0
    dropped = p[keep & ~enough]
    keep &= enough
    if keep.sum() < 2:
        why = f"< {min_errors:g} test errors"
        if run_ok is not None:
            why += f" or every run >= max_error={max_error:g}"
        raise ValueError(
            f"fewer than two sizes left to fit ({int(keep.sum())}): widen p_range or use a "
            f"larger test set (sizes dropped for {why}: {dropped.astype(int).tolist()})"
        )
    lp = np.log(p[keep])
    slope, icpt = _slope(lp, np.log(mean[keep]))
    beta = -slope
    if n_bootstrap == 0:
        ci = (beta, beta)
    else:
        sub = errors[keep] if run_ok is None else np.where(run_ok[keep], errors[keep], np.nan)

        def resampled_beta(idx: np.ndarray) -> float:
            m = sub[:, idx].mean(axis=1) if run_ok is None else _nanmean_rows(sub[:, idx])
            return -_slope(lp, np.log(m))[0] if (m > 0).all() else math.nan

        ci = _seed_bootstrap(resampled_beta, errors.shape[1], n_bootstrap, level,
                             check_int(seed, "seed", minimum=0)) or (math.nan, math.nan)
    return ExponentFit(beta, ci, icpt, p[keep], mean[keep], dropped, level, n_bootstrap)


# ---------------------------------------------------------------------------
# learning curves
# ---------------------------------------------------------------------------
@dataclass
class LearningCurve:
    """Test errors (and other metrics) over sizes and seeds.

    Attributes
    ----------
    p : numpy.ndarray of shape (n_p,)
    seeds : numpy.ndarray of shape (n_seeds,)
    test_error : numpy.ndarray of shape (n_p, n_seeds)
    n_test : int
    metrics : dict of str to numpy.ndarray of shape (n_p, n_seeds)
        Other numbers a recipe returned (e.g. ``compression``); NaN where a run
        did not return it.
    """

    p: np.ndarray
    seeds: np.ndarray
    test_error: np.ndarray
    n_test: int
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self, name: str = "test_error") -> np.ndarray:
        """Mean over seeds of ``test_error`` or of a metric, one value per ``p``."""
        arr = self.test_error if name == "test_error" else self.metrics[name]
        return np.nanmean(arr, axis=1)

    def fit_exponent(self, **kwargs: Any) -> ExponentFit:
        """:func:`fit_exponent` on this curve (``n_test`` filled in).

        Every keyword of :func:`fit_exponent` is forwarded, ``max_error``
        included (``max_error=0.25``: the authors' rule of dropping failed runs).
        """
        kwargs.setdefault("n_test", self.n_test)
        return fit_exponent(self.p, self.test_error, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable content."""
        return {
            "p": self.p.tolist(),
            "seeds": self.seeds.tolist(),
            "n_test": self.n_test,
            "test_error": self.test_error.tolist(),
            "metrics": {k: v.tolist() for k, v in self.metrics.items()},
        }


Recipe = Callable[..., Any]
Data = Callable[..., tuple[np.ndarray, np.ndarray]]


def estimator_recipe(estimator: Any) -> Recipe:
    """A recipe that fits a fresh clone of an sklearn-style estimator.

    Parameters
    ----------
    estimator : estimator instance or callable
        An object with ``fit``/``predict`` (cloned with ``sklearn.base.clone``
        for every run) or a zero-argument factory returning one.

    Returns
    -------
    callable
        ``recipe(X_train, y_train, X_test, y_test, seed) -> float``, the
        fraction of test points predicted wrong.

    Raises
    ------
    TypeError
        If ``estimator`` is neither.

    Examples
    --------
    >>> from sklearn.svm import SVC
    >>> r = estimator_recipe(SVC())
    >>> callable(r)
    True
    """
    if hasattr(estimator, "fit"):
        from sklearn.base import clone

        def make() -> Any:
            return clone(estimator)
    elif callable(estimator):
        make = estimator
    else:
        raise TypeError(
            "estimator must have fit/predict or be a factory returning such an object, got "
            f"{type(estimator).__name__}"
        )

    def recipe(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, seed: int) -> float:
        model = make()
        if "random_state" in getattr(model, "get_params", dict)():
            model.set_params(random_state=seed)
        model.fit(X, y)
        return float(np.mean(model.predict(Xt) != yt))

    return recipe


def _dataset(data: Any, d: int | None, d_par: int) -> Data:
    if callable(data):
        return data
    if isinstance(data, str):
        check_choice(data, "data", datasets.DATASETS, what="a callable")
        if d is None:
            raise ValueError(f"d (the input dimension) is required with data={data!r}")

        def draw(n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
            return datasets.load(data, n, d, seed, split=split, d_par=d_par)

        return draw
    raise TypeError(f"data must be a dataset name or a callable, got {type(data).__name__}")


def learning_curve(
    model: Any,
    data: Any,
    p: Sequence[int],
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    n_test: int = 10_000,
    d: int | None = None,
    d_par: int = 2,
    progress: bool = False,
) -> LearningCurve:
    """Test error over training-set sizes and seeds.

    For every seed, one test set of ``n_test`` points is drawn (split
    ``"test"``), and for every size ``p`` a training set of ``p`` points (split
    ``"train"``; training sets of one seed are nested). The model is then fitted
    and scored on each.

    Parameters
    ----------
    model : estimator, factory or callable
        An object with ``fit``/``predict`` (cloned per run), or a *recipe*
        ``model(X_train, y_train, X_test, y_test, seed)`` returning the test
        error as a float or a dict with ``"test_error"`` and any other numbers
        (e.g. ``"compression"``), which are collected in ``metrics``.
        A zero-argument factory of estimators can be wrapped with
        :func:`estimator_recipe`.
    data : {"stripe", "cylinder", "sphere"} or callable
        A model of :mod:`kernelcomp.datasets` (with ``d``), or
        ``data(n, seed, split) -> (X, y)``.
    p : sequence of int
        Training-set sizes.
    seeds : sequence of int, default (0, 1, 2, 3, 4)
        Seeds (data and, through the recipe, initialisation).
    n_test : int, default 10000
        Test points per seed.
    d : int, optional
        Input dimension, with a dataset name.
    d_par : int, default 2
        Informative directions of the cylinder.
    progress : bool, default False
        Show a progress bar over runs.

    Returns
    -------
    LearningCurve

    Raises
    ------
    TypeError, ValueError
        For invalid sizes, seeds, data or a recipe returning something else than
        a number or a dict with ``"test_error"``.

    References
    ----------
    Paccolat et al. (2021), §6 (learning curves, 5 seeds).

    Examples
    --------
    >>> from sklearn.svm import SVC
    >>> lc = learning_curve(SVC(), "stripe", [20, 40], seeds=[0, 1], n_test=200, d=3)
    >>> lc.test_error.shape
    (2, 2)
    """
    if isinstance(p, str | numbers.Integral) or not isinstance(p, Sequence | np.ndarray):
        raise TypeError(f"p must be a sequence of sizes, got {type(p).__name__}")
    sizes = np.array([check_int(v, f"p[{i}]", minimum=1) for i, v in enumerate(p)], dtype=np.int64)
    if sizes.size == 0:
        raise ValueError("p must hold at least one size")
    if isinstance(seeds, str) or not isinstance(seeds, Sequence | np.ndarray):
        raise TypeError(f"seeds must be a sequence of ints, got {type(seeds).__name__}")
    seed_arr = np.array([check_int(s, f"seeds[{i}]", minimum=0) for i, s in enumerate(seeds)],
                        dtype=np.int64)
    if seed_arr.size == 0:
        raise ValueError("seeds must hold at least one seed")
    n_test = check_int(n_test, "n_test", minimum=1)
    draw = _dataset(data, d, d_par)
    recipe = estimator_recipe(model) if hasattr(model, "fit") else model
    if not callable(recipe):
        raise TypeError(
            f"model must be an estimator or a callable recipe, got {type(model).__name__}"
        )
    err = np.full((sizes.size, seed_arr.size), np.nan)
    metrics: dict[str, np.ndarray] = {}
    with progress_bar(progress, total=err.size, desc="learning curve", unit="run",
                      leave=False) as bar:  # fmt: skip
        for j, s in enumerate(seed_arr):
            Xt, yt = draw(n_test, int(s), "test")
            X_all, y_all = draw(int(sizes.max()), int(s), "train")
            for i, n in enumerate(sizes):
                res = recipe(X_all[:n], y_all[:n], Xt, yt, int(s))
                if isinstance(res, Mapping):
                    if "test_error" not in res:
                        raise ValueError("a recipe's dict must hold 'test_error'")
                    for k, v in res.items():
                        if k == "test_error":
                            continue
                        metrics.setdefault(k, np.full(err.shape, np.nan))[i, j] = float(v)
                    res = res["test_error"]
                if isinstance(res, bool) or not isinstance(res, numbers.Real):
                    raise TypeError(
                        "a recipe must return a test error (float) or a dict with "
                        f"'test_error', got {type(res).__name__}"
                    )
                err[i, j] = float(res)
                bar.update(1)
    return LearningCurve(sizes, seed_arr, err, n_test, metrics)


# ---------------------------------------------------------------------------
# lazy-regime curves from the frozen initial NTK
# ---------------------------------------------------------------------------
#: ``kernel`` names of :func:`frozen_kernel_curve`
FROZEN_KERNELS: tuple[str, ...] = ("analytic", "empirical")
#: ``machine`` names of :func:`frozen_kernel_curve`
FROZEN_MACHINES: tuple[str, ...] = ("svc", "gradient_flow")


def paper_ntk() -> Any:
    """The infinite-width NTK of the paper's network.

    The network is ``f(x) = (1/h) sum_n beta_n sigma(omega_n . x / sqrt(d) + b_n)``
    with omega, b, beta ~ N(0, 1), ``sigma(z) = sqrt(2) max(z, 0)`` and no readout
    bias; its kernel is ``kc.NTK(depth=1, activation="relu_unit", weight_std=1.0,
    bias_std=[1.0, None])``: one hidden layer, unit weight and bias variances,
    no readout bias. The paper's ``1/h`` readout (instead of ``1/sqrt(h)``) only
    rescales the kernel (``h`` times the empirical NTK of the width-``h``
    network tends to it), which a hard-margin machine ignores.

    Returns
    -------
    kernelcomp.kernels.NTK

    References
    ----------
    Paccolat et al. (2021), §2 (the network) and §4 (the lazy regime: a kernel
    machine on the NTK at initialisation).

    Examples
    --------
    >>> from kernelcomp.kernels import NTK
    >>> paper_ntk() == NTK(depth=1, activation="relu_unit", bias_std=[1.0, None])
    True
    """
    return NTK(depth=1, activation="relu_unit", weight_std=1.0, bias_std=[1.0, None])


def frozen_kernel_curve(
    data: Any,
    p: Sequence[int],
    *,
    kernel: Any = "analytic",
    machine: str = "svc",
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    n_test: int = 10_000,
    d: int | None = None,
    d_par: int = 2,
    h: int = 1000,
    progress: bool = False,
) -> LearningCurve:
    """The lazy-regime learning curve from a kernel machine on the frozen initial NTK.

    The lazy curve of the paper's protocol: the infinite-``alpha`` limit of
    lazy training is a kernel machine on the tangent kernel of the network at
    initialisation, which reaches ``p ~ 1e4`` cheaply. The network is the
    paper's ``f(x) = (1/h) sum_n beta_n sigma(omega_n . x / sqrt(d) + b_n)``
    (omega, b, beta ~ N(0, 1), ``sigma(z) = sqrt(2) max(z, 0)``, no readout
    bias). Runs :func:`learning_curve` with a recipe that fits the machine and
    returns the fraction of test points misclassified; the kernel and machine
    used are not recorded in the returned curve (its fields are the sizes,
    seeds and errors). Fit it with ``fit_exponent(max_error=0.25)`` to drop
    failed runs as the authors do.

    Parameters
    ----------
    data : {"stripe", "cylinder", "sphere"} or callable
        As in :func:`learning_curve`.
    p : sequence of int
        Training-set sizes.
    kernel : {"analytic", "empirical"} or kernelcomp kernel, default "analytic"
        ``"analytic"``: the infinite-width NTK of the paper's network,
        :func:`paper_ntk`. ``"empirical"``: the empirical NTK at initialisation
        of the paper's network of width ``h``, a fresh network per seed
        (``kc.EmpiricalNTK(kc.FCNetwork.init(d, [h], activation="relu_unit",
        parameterization="mean_field", bias=True, seed=seed))``). A kernel
        object (``kc.NTK(...)``, ``kc.EmpiricalNTK(net)``...) is used as is.
    machine : {"svc", "gradient_flow"}, default "svc"
        ``"svc"``: the hard-margin SVM ``kc.NTKClassifier(kernel, C=1e20)``, the
        max-margin alternative to the authors' machine (fast).
        ``"gradient_flow"``: the authors' kernel machine,
        ``kc.NTKClassifier(kernel, solver="gradient_flow")``, gradient flow of
        the hinge loss from zero until every training margin is >= 1 (slower).
    seeds : sequence of int, default (0, 1, 2, 3, 4)
        Seeds of the data and, with ``"empirical"``, of the network.
    n_test : int, default 10000
        Test points per seed.
    d : int, optional
        Input dimension, with a dataset name.
    d_par : int, default 2
        Informative directions of the cylinder.
    h : int, default 1000
        Width of the network of ``kernel="empirical"`` (unused otherwise), >= 1.
    progress : bool, default False
        Show a progress bar over runs.

    Returns
    -------
    LearningCurve

    Raises
    ------
    TypeError
        If ``kernel`` is neither a name nor a kernelcomp kernel, ``machine`` is
        not a string, or :func:`learning_curve` rejects an argument.
    ValueError
        If ``kernel`` or ``machine`` is an unknown name, ``h`` < 1, or
        :func:`learning_curve` rejects an argument.

    See Also
    --------
    learning_curve, paper_ntk, fit_exponent
    kernelcomp.estimators.NTKClassifier

    References
    ----------
    Paccolat et al. (2021), §4 (lazy regime: kernel machine on the NTK at
    initialisation) and §6 (learning curves; the authors' code leaves the runs
    with a test error >= 0.25 out of the fits).

    Examples
    --------
    >>> lc = frozen_kernel_curve("stripe", [32, 64], seeds=[0], n_test=500, d=3)
    >>> lc.test_error.shape
    (2, 1)
    """
    h = check_int(h, "h", minimum=1)
    if isinstance(kernel, str):
        check_choice(kernel, "kernel", FROZEN_KERNELS, what="a kernelcomp kernel object")
    elif not isinstance(kernel, Kernel):
        raise TypeError(
            f"kernel must be one of {list(FROZEN_KERNELS)} or a kernelcomp kernel object "
            f"(kc.NTK(), kc.EmpiricalNTK(net)...), got {type(kernel).__name__}"
        )
    if not isinstance(machine, str):
        raise TypeError(
            f"machine must be one of {list(FROZEN_MACHINES)}, got {type(machine).__name__}"
        )
    check_choice(machine, "machine", FROZEN_MACHINES)
    fixed = paper_ntk() if isinstance(kernel, str) and kernel == "analytic" else kernel

    def recipe(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, seed: int) -> float:
        # scikit-learn, on first use: kernelcomp.curves loads without it
        from kernelcomp.estimators import HARD_MARGIN_C, NTKClassifier

        k = fixed
        if isinstance(k, str):  # "empirical": the paper's network at initialisation
            net = FCNetwork.init(X.shape[1], [h], activation="relu_unit",
                                 parameterization="mean_field", bias=True, seed=seed)
            k = EmpiricalNTK(net)
        if machine == "svc":
            clf = NTKClassifier(k, C=HARD_MARGIN_C)
        else:
            clf = NTKClassifier(k, solver="gradient_flow")
        clf.fit(X, y)
        return float(np.mean(clf.predict(Xt) != yt))

    return learning_curve(recipe, data, p, seeds=seeds, n_test=n_test, d=d, d_par=d_par,
                          progress=progress)
