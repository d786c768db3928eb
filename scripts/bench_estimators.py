"""Benchmark of kc.NTKRegressor / kc.NTKClassifier against scikit-learn, in one process.

For each training size it times ``fit`` + ``predict`` of

* ``kc.NTKRegressor(kc.NTK(depth))`` (Gram by kernelcomp, in-place Cholesky,
  row-blocked prediction),
* (a) ``sklearn.kernel_ridge.KernelRidge(kernel="precomputed")`` fed kernelcomp's
  Gram matrices (the time of both Gram matrices is added): target ratio <= 1.1,
* (b) ``KernelRidge(kernel=<python callable>)``, what a user writes without
  kernelcomp: a pure-Python NTK of one pair of samples, called by
  ``pairwise_kernels`` once per pair. It is timed on ``--callable-n`` samples and
  extrapolated to the full sizes by its cost per kernel evaluation (printed as
  such); the solve is added from (a).

It also reports peak traced memory (``tracemalloc``, which sees NumPy and SciPy
arrays) of the regression fits, and, for ``--clf-sizes``, ``kc.NTKClassifier``
against ``SVC(kernel="precomputed")`` fed kernelcomp's Gram matrices.

Usage::

    python scripts/bench_estimators.py                   # n_train 2000, 5000, 10000
    python scripts/bench_estimators.py --sizes 500 1000  # quick
"""

from __future__ import annotations

import argparse
import gc
import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from _blas_info import print_blas_info
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC

import kernelcomp as kc
from kernelcomp._gram import gram


def python_ntk_relu(x: np.ndarray, z: np.ndarray, depth: int = 1) -> float:
    """Plain-Python NTK of one pair (``kc.NTK(depth)`` defaults: relu, sigma_w=1, no bias)."""
    d = len(x)
    sxx = float(x @ x) / d
    szz = float(z @ z) / d
    sxz = float(x @ z) / d
    theta = sxz
    for _ in range(depth):
        det = math.sqrt(max(sxx * szz - sxz * sxz, 0.0))
        angle = math.atan2(det, sxz)
        k = (det + (math.pi - angle) * sxz) / (2 * math.pi)
        kdot = (math.pi - angle) / (2 * math.pi)
        sxx, szz = sxx / 2, szz / 2  # relu: E[phi(u)^2] = Sigma/2
        sxz = k
        theta = sxz + kdot * theta
    return theta


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def peak_memory(fn: Callable[[], Any]) -> float:
    """Peak traced memory of ``fn()`` in MiB (run separately from the timings)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def bench_regression(n: int, args: argparse.Namespace, per_eval: float) -> None:
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, args.d))
    Xt = rng.standard_normal((args.n_test, args.d))
    y = np.abs(X[:, 0]) + 0.1 * rng.standard_normal(n)
    k = kc.NTK(depth=args.depth)

    def ours() -> np.ndarray:
        return kc.NTKRegressor(k, alpha=args.alpha).fit(X, y).predict(Xt)

    def reference() -> tuple[np.ndarray, float]:
        t_gram, (K, Kt) = timed(lambda: (gram(k, X), gram(k, Xt, X)))
        krr = KernelRidge(alpha=args.alpha, kernel="precomputed")
        return krr.fit(K, y).predict(Kt), t_gram

    t_ours = t_ref = t_gram = math.inf
    for _ in range(args.repeat):  # alternate, keep the best of each (a shared machine)
        t, pred = timed(ours)
        t_ours = min(t_ours, t)
        t, (ref, tg) = timed(reference)
        if t < t_ref:
            t_ref, t_gram = t, tg
    err = float(np.max(np.abs(pred - ref)) / np.max(np.abs(ref)))
    t_callable_gram = per_eval * (n * (n + 1) / 2 + n * args.n_test)
    t_callable = per_eval * (n * (n + 1) / 2 + n * args.n_test) + (t_ref - t_gram)
    mem_ours = peak_memory(ours) if args.memory else float("nan")
    mem_ref = peak_memory(reference) if args.memory else float("nan")
    print(
        f"{n:>7d} {t_ours:9.2f} {t_ref:9.2f} {t_gram:8.2f} {t_ours / t_ref:8.3f} "
        f"{t_callable:12.0f} {t_callable / t_ours:10.0f} {t_callable_gram / t_gram:11.0f} "
        f"{mem_ours:9.0f} {mem_ref:9.0f} "
        f"{err:9.1e}",
        flush=True,
    )


def bench_classifier(n: int, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(n + 1)
    X = rng.standard_normal((n, args.d))
    Xt = rng.standard_normal((args.n_test, args.d))
    y = np.where(X[:, 0] ** 2 + 0.5 * X[:, 1] > 1.0, 1, -1)
    k = kc.NTK(depth=args.depth)

    def ours() -> np.ndarray:
        return kc.NTKClassifier(k, C=args.C).fit(X, y).decision_function(Xt)

    def reference() -> np.ndarray:
        K, Kt = gram(k, X), gram(k, Xt, X)
        return SVC(kernel="precomputed", C=args.C).fit(K, y).decision_function(Kt)

    t_ours = t_ref = math.inf
    for _ in range(args.repeat):
        t, dec = timed(ours)
        t_ours = min(t_ours, t)
        t, ref = timed(reference)
        t_ref = min(t_ref, t)
    print(
        f"{n:>7d} {t_ours:9.2f} {t_ref:9.2f} {t_ours / t_ref:8.3f} "
        f"{np.max(np.abs(dec - ref)):9.1e}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--clf-sizes", type=int, nargs="*", default=[2000, 5000])
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--callable-n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="best of N alternated runs")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    args = parser.parse_args(argv)
    print_blas_info()

    import numba

    print(
        f"kernelcomp {kc.__version__}, numba threads {numba.get_num_threads()}, "
        f"d={args.d}, depth={args.depth}, alpha={args.alpha}, n_test={args.n_test}, "
        f"best of {args.repeat}"
    )
    # compile (first call) outside the timings
    Xw = np.random.default_rng(0).standard_normal((50, args.d))
    t_compile, _ = timed(
        lambda: kc.NTKRegressor(kc.NTK(depth=args.depth)).fit(Xw, Xw[:, 0]).predict(Xw)
    )
    print(f"first call (compile or cache load): {t_compile:.2f} s")

    # (b) the user's Python callable, timed small and extrapolated per evaluation
    rng = np.random.default_rng(1)
    Xc = rng.standard_normal((args.callable_n, args.d))
    check = kc.NTK(depth=args.depth)(Xc[:5])
    for i in range(5):
        for j in range(5):
            assert math.isclose(
                python_ntk_relu(Xc[i], Xc[j], args.depth), check[i, j], rel_tol=1e-9
            )
    krr_callable = KernelRidge(
        alpha=args.alpha, kernel=python_ntk_relu, kernel_params={"depth": args.depth}
    )
    t_small, _ = timed(lambda: krr_callable.fit(Xc, Xc[:, 0]).predict(Xc))
    nc = args.callable_n
    per_eval = t_small / (nc * (nc + 1) / 2 + nc * nc)  # fit: upper triangle; predict: all
    print(
        f"KernelRidge(kernel=<python callable>) on n={args.callable_n}: {t_small:.2f} s "
        f"-> {per_eval * 1e6:.2f} us per kernel evaluation (extrapolated below)"
    )

    print(
        "\nregression: fit + predict (seconds), ratio = ours / (a); (b)/(a)gram compares the "
        "Gram matrices alone"
    )
    print(
        f"{'n_train':>7} {'ours':>9} {'(a)KRR':>9} {'(a)gram':>8} {'ratio':>8} "
        f"{'(b)callable':>12} {'(b)/ours':>10} {'(b)/(a)gram':>11} "
        f"{'MiB ours':>9} {'MiB (a)':>9} {'rel.err':>9}"
    )
    for n in args.sizes:
        bench_regression(n, args, per_eval)

    if args.clf_sizes:
        print(f"\nclassification (C={args.C}): fit + decision_function, vs SVC(precomputed) + Gram")
        print(f"{'n_train':>7} {'ours':>9} {'SVC':>9} {'ratio':>8} {'max|diff|':>9}")
        for n in args.clf_sizes:
            bench_classifier(n, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
