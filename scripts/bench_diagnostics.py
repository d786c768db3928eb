#!/usr/bin/env python
"""Benchmark of the kernel-PCA diagnostics (kc.diagnostics).

Sections (``--only`` picks some):

``kpca``
    Top-``k`` (default 100) eigenpairs of an analytic NTK Gram matrix at each
    ``n``: LAPACK's subset driver (``evx``, ``evr``), the full divide-and-conquer
    ``eigh`` (``evd``, the reference), ARPACK ``eigsh(k)``, kernelcomp's block Lanczos, and
    ``kc.diagnostics.kernel_pca`` with its default route, all in the same
    process. Prints median seconds, the ratio to the full ``eigh`` and the
    accuracy against it (largest relative eigenvalue error, smallest
    eigenvector overlap |<v, v_ref>|).
``mi``
    Mutual information of the top 10 eigenvectors with the labels at ``n``
    (default 10000): the sorted 1-D window search of
    ``kc.diagnostics.mutual_information`` against per-class ``cKDTree`` queries
    (vectorised) and the authors' per-point ``cKDTree`` loop, plus scikit-learn's
    ``mutual_info_classif`` (``method="ksg"``), with the largest difference to
    the per-point loop.

Usage::

    python scripts/bench_diagnostics.py                      # n = 5000, 10000; MI at 10000
    python scripts/bench_diagnostics.py --quick              # n = 1000, 2000; MI at 2000
    python scripts/bench_diagnostics.py --only kpca --n 3000 --k 10 100 --dtype float32
    python scripts/bench_diagnostics.py --only kpca --n 5000 --threads 1
    python scripts/bench_diagnostics.py --only kpca --n 5000 --k 10 100 --repeat 3 --best
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
from _blas_info import print_blas_info
from scipy.sparse.linalg import eigsh
from scipy.spatial import cKDTree

import kernelcomp as kc
from kernelcomp import diagnostics as dg

#: How ``timed`` summarises its repeats: ``statistics.median``, or ``min`` (``--best``).
SUMMARY: Callable[[list[float]], float] = statistics.median


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median (or best, ``--best``) wall and CPU seconds of ``repeat`` calls, and the last result.

    CPU time, summed over the process's threads, is the figure to compare when
    the machine is shared: it does not count the time spent waiting for a core.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return SUMMARY(walls), SUMMARY(cpus), out


def ntk_gram(n: int, d: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stripe data and the NTK Gram of a one-hidden-layer ReLU net (with bias)."""
    X, y = kc.datasets.stripe(n, d, seed=seed)
    K = kc.NTK(depth=1, bias_std=1.0)(X, dtype=dtype)
    return K, y


# ---------------------------------------------------------------------------
# kernel PCA
# ---------------------------------------------------------------------------
def auto_route(n: int, k: int) -> str:
    """The route ``kernel_pca(method="auto")`` takes (mirrors its rule)."""
    if n >= dg.LANCZOS_MIN_SAMPLES and k <= dg.LANCZOS_MAX_FRACTION * n:
        return "lanczos"
    return "subset" if k <= dg.SUBSET_MAX_FRACTION * n else "full"


def bench_kpca(args: argparse.Namespace) -> None:
    print(f"\n== kernel PCA: top-k eigenpairs of an NTK Gram (stripe, d={args.d}) ==")
    header = (
        f"{'n':>6} {'k':>4} {'dtype':>8} {'route':<26} {'wall s':>8} {'cpu s':>8} "
        f"{'vs evd':>7} {'cpu vs':>7} {'max rel dλ':>11} {'min |<v,vref>|':>15}"
    )
    print(header)
    print("-" * len(header))
    for n in args.n:
        K, _ = ntk_gram(n, args.d, args.dtype)
        # reference: the full divide-and-conquer decomposition
        t_ref, c_ref, (w_all, V_all) = timed(
            lambda K=K: scipy.linalg.eigh(K, driver="evd", check_finite=False), args.repeat
        )
        print(
            f"{n:>6} {'all':>4} {args.dtype:>8} {'eigh full (evd), reference':<26} "
            f"{t_ref:>8.2f} {c_ref:>8.2f} {1:>7.2f} {1:>7.2f}"
        )
        v0 = np.random.default_rng(0).standard_normal(n)
        for k in args.k:
            lo = n - k
            w_ref = w_all[lo:][::-1].astype(np.float64)
            V_ref = V_all[:, lo:][:, ::-1].astype(np.float64)
            # compare only well-defined eigenvectors (gap to the neighbours > 1e-6 lambda_1)
            gap = np.abs(np.diff(w_ref))
            defined = np.r_[gap[0], np.minimum(gap[:-1], gap[1:]), gap[-1]] > 1e-6 * w_ref[0]
            routes: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = [
                (
                    "eigh subset (evx)",
                    lambda K=K, lo=lo, n=n: scipy.linalg.eigh(
                        K, subset_by_index=[lo, n - 1], driver="evx", check_finite=False
                    ),
                ),
                (
                    "eigh subset (evr)",
                    lambda K=K, lo=lo, n=n: scipy.linalg.eigh(
                        K, subset_by_index=[lo, n - 1], driver="evr", check_finite=False
                    ),
                ),
                ("eigsh (ARPACK)", lambda K=K, k=k, v0=v0: eigsh(K, k=k, which="LA", v0=v0)),
                (
                    "block Lanczos (kernelcomp)",
                    lambda K=K, k=k: (lambda r: (r.eigenvalues, r.eigenvectors))(
                        dg.kernel_pca(K, n_components=k, method="lanczos")
                    ),
                ),
                (
                    f"kernel_pca (auto: {auto_route(n, k)})",
                    lambda K=K, k=k: (lambda r: (r.eigenvalues, r.eigenvectors))(
                        dg.kernel_pca(K, n_components=k)
                    ),
                ),
            ]
            for name, fn in routes:
                t, c, (w, V) = timed(fn, args.repeat)
                order = np.argsort(w)[::-1]
                w = np.asarray(w)[order].astype(np.float64)
                V = np.asarray(V)[:, order].astype(np.float64)
                dlam = float(np.max(np.abs(w - w_ref) / np.abs(w_ref[0])))
                overlap = np.abs(np.sum(V * V_ref, axis=0))[defined]
                print(
                    f"{n:>6} {k:>4} {args.dtype:>8} {name:<26} {t:>8.2f} {c:>8.2f} "
                    f"{t_ref / t:>7.2f} {c_ref / c:>7.2f} {dlam:>11.2e} "
                    f"{float(overlap.min()):>15.9f}"
                )
                sys.stdout.flush()
        del K, V_all, w_all


# ---------------------------------------------------------------------------
# mutual information
# ---------------------------------------------------------------------------
def mi_kdtree_vectorised(V: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The paper's estimator with one cKDTree per class, queried for all points."""
    out = []
    classes = np.unique(y)
    for r in range(V.shape[1]):
        z = (V[:, r] - V[:, r].mean()) / V[:, r].std()
        radii = []
        for c in classes:
            tree = cKDTree(z[y == c][:, None])
            dist, _ = tree.query(z[:, None], k=k)
            radii.append(dist[:, -1])
        ra, rb = radii
        den = ra + rb
        q = np.divide(rb, den, out=np.full_like(den, 0.5), where=den > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -(q * np.log2(q)) - (1 - q) * np.log2(1 - q)
        h = np.where((q <= 0) | (q >= 1), 0.0, h)
        out.append(1.0 - h.mean())
    return np.array(out)


def mi_authors_loop(V: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The authors' route: one cKDTree on all points, one query per point.

    For each point the query grows until it holds k points of each class (the
    point itself included), as in the paper's published code (without its
    1e-10 jitter, so that the result is deterministic).
    """
    out = []
    for r in range(V.shape[1]):
        z = (V[:, r] - V[:, r].mean()) / V[:, r].std()
        tree = cKDTree(z[:, None])
        n = z.size
        h_sum = 0.0
        for i in range(n):
            kk = k
            rp = rm = None
            while rp is None or rm is None:
                kk = min(2 * kk + 5, n)
                dist, idx = tree.query([z[i]], k=kk)
                pos = y[idx] > 0
                if rp is None and pos.sum() >= k:
                    rp = dist[np.nonzero(pos)[0][k - 1]]
                if rm is None and (~pos).sum() >= k:
                    rm = dist[np.nonzero(~pos)[0][k - 1]]
            q = 0.5 if rp + rm == 0 else rm / (rp + rm)
            if 0 < q < 1:
                h_sum += -q * np.log2(q) - (1 - q) * np.log2(1 - q)
        out.append(1.0 - h_sum / n)
    return np.array(out)


def bench_mi(args: argparse.Namespace) -> None:
    n, k, ncomp = args.mi_n, 5, 10
    print(f"\n== mutual information: top {ncomp} eigenvectors, n = {n}, k = {k} ==")
    K, y = ntk_gram(n, args.d, "float64", seed=1)
    V = dg.kernel_pca(K, n_components=ncomp).eigenvectors
    del K
    t_fast, _, mi_fast = timed(lambda: dg.mutual_information(V, y, n_components=ncomp, k=k), 5)
    t_tree, _, mi_tree = timed(lambda: mi_kdtree_vectorised(V, y, k), 3)
    t_loop, _, mi_loop = timed(lambda: mi_authors_loop(V, y, k), 1)
    t_ksg, _, mi_ksg = timed(
        lambda: dg.mutual_information(V, y, n_components=ncomp, method="ksg"), 3
    )
    header = f"{'route':<44} {'seconds':>9} {'vs loop':>8} {'max |dI| vs loop (bits)':>24}"
    print(header)
    print("-" * len(header))
    print(f"{'authors per-point cKDTree loop (reference)':<44} {t_loop:>9.3f} {1:>8.1f}")
    for name, t, mi in [
        ("cKDTree per class, vectorised", t_tree, mi_tree),
        ("mutual_information, sorted 1-D search", t_fast, mi_fast),
        ("sklearn mutual_info_classif (ksg)", t_ksg, mi_ksg),
    ]:
        print(f"{name:<44} {t:>9.3f} {t_loop / t:>8.1f} {float(np.abs(mi - mi_loop).max()):>24.2e}")
    print("MI (paper), bits:", np.array2string(mi_fast, precision=3))
    print("MI (ksg),   bits:", np.array2string(mi_ksg, precision=3))


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"kpca": bench_kpca, "mi": bench_mi}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes (n = 1000, 2000)")
    parser.add_argument("--n", type=int, nargs="+", help="Gram sizes for kernel PCA")
    parser.add_argument("--k", type=int, nargs="+", default=[100], help="eigenpairs (100)")
    parser.add_argument("--threads", type=int, help="BLAS threads (default: all)")
    parser.add_argument("--d", type=int, default=10, help="input dimension (default 10)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--mi-n", type=int, help="samples of the MI benchmark")
    parser.add_argument("--repeat", type=int, default=1, help="repeats per timing (median)")
    parser.add_argument("--best", action="store_true", help="report the best of the repeats")
    args = parser.parse_args(argv)
    print_blas_info()
    if args.best:
        global SUMMARY
        SUMMARY = min
    if args.n is None:
        args.n = [1000, 2000] if args.quick else [5000, 10000]
    if args.mi_n is None:
        args.mi_n = 2000 if args.quick else 10000
    try:
        from threadpoolctl import threadpool_info

        pools = [f"{p['internal_api']} x{p['num_threads']}" for p in threadpool_info()]
    except ImportError:  # threadpoolctl comes with scikit-learn, but stay safe
        pools = ["unknown"]
    print(
        f"kernelcomp {kc.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"thread pools: {', '.join(pools)}, load average {os.getloadavg()[0]:.2f}"
    )
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        print(f"BLAS threads limited to {args.threads}")
    for name in args.only:
        SECTIONS[name](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
