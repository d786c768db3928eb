#!/usr/bin/env python
"""Benchmark of the analytic kernels by quadrature (kc.NTK(..., method="quadrature")).

Two parts, measured in one process, best of ``--repeats``:

1. Quadrature against the closed forms (ReLU, erf) on the same inputs: time of
   each, the ratio, and the max relative error of the quadrature, for several
   node counts.
2. Time per Gram entry for tanh (no closed form) at n = 5000, depth 2, NTK and
   NNGP: the full n x n matrix is ~1.25e7 entries x 2 layers, about an hour of
   one core, so by default the rows ``X[:rows]`` are computed against all n
   columns (same compiled tile pass, same cost per entry) and the time of the
   full matrix is extrapolated; ``--full`` computes the whole matrix.

Threads: ``--threads`` (default all; report the figure per thread-second as
well). Compile time is excluded (a warm-up call on a small input first).

Usage::

    python scripts/bench_quadrature.py                   # ~2 min on 2 cores
    python scripts/bench_quadrature.py --rows 200 --threads 16
    python scripts/bench_quadrature.py --full --threads 16
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
from _blas_info import print_blas_info

import kernelcomp as kc
from kernelcomp._parallel import max_threads


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    X = rng.standard_normal((n, d))
    return np.sqrt(d) * X / np.linalg.norm(X, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-closed", type=int, default=300, help="n of part 1 (default 300)")
    ap.add_argument("--nodes", type=int, nargs="+", default=[8, 16, 24, 32])
    ap.add_argument("--n", type=int, default=5000, help="n of part 2 (default 5000)")
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--rows", type=int, default=24, help="rows of part 2 (default 24)")
    ap.add_argument("--full", action="store_true", help="the whole n x n matrix in part 2")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print_blas_info()
    threads = args.threads or max_threads()
    rng = np.random.default_rng(0)

    # warm-up: compile every variant used below (float64, both paths, NTK and NNGP)
    Xw = rng.standard_normal((5, args.d))
    for act in ("relu", "erf", "tanh"):
        for cls in (kc.NTK, kc.NNGP):
            k = cls(depth=2, activation=act, method="quadrature", quadrature_nodes=2)
            k(Xw), k(Xw, Xw[:2])

    print(f"threads: {threads}")
    print(f"\n1. quadrature vs closed form: n = {args.n_closed}, d = {args.d}, depth 2, "
          "bias_std 0.2, NTK, symmetric Gram")
    print(f"{'activation':>10} {'nodes':>5} {'closed s':>9} {'quad s':>9} {'ratio':>7} "
          f"{'us/entry/layer*thread':>22} {'rel. error':>10}")
    X = sphere(rng, args.n_closed, args.d)
    entries = args.n_closed * (args.n_closed + 1) / 2
    for act in ("relu", "erf"):
        exact = kc.NTK(depth=2, activation=act, bias_std=0.2)
        for nodes in args.nodes:
            q = kc.NTK(depth=2, activation=act, bias_std=0.2, method="quadrature",
                       quadrature_nodes=nodes)
            tc, tq = float("inf"), float("inf")
            for _ in range(args.repeats):  # interleaved
                t, Kc = best_time(partial(exact, X, n_jobs=threads), 1)
                tc = min(tc, t)
                t, Kq = best_time(partial(q, X, n_jobs=threads), 1)
                tq = min(tq, t)
            err = float(np.abs(Kq - Kc).max() / np.abs(Kc).max())
            per = tq * threads / (entries * 2) * 1e6
            print(f"{act:>10} {nodes:>5} {tc:9.4f} {tq:9.3f} {tq / tc:7.0f} {per:22.2f} "
                  f"{err:10.1e}")

    n = args.n
    rows = n if args.full else min(args.rows, n)
    X = sphere(rng, n, args.d)
    what = "the full matrix" if args.full else f"rows X[:{rows}] against all {n} columns"
    print(f"\n2. tanh, n = {n}, d = {args.d}, depth 2, default nodes "
          f"({kc.kernels.QUADRATURE_NODES}): {what}")
    print(f"{'kernel':>6} {'seconds':>9} {'us/entry':>9} {'us/entry*thread':>16} "
          f"{'full n x n (h, extrapolated)':>29}")
    full_entries = n * (n + 1) / 2
    for cls in (kc.NTK, kc.NNGP):
        k = cls(depth=2, activation="tanh", bias_std=0.2)
        if args.full:
            t, _ = best_time(partial(k, X, n_jobs=threads), 1)
            m = full_entries
        else:
            t, _ = best_time(partial(k, X[:rows], X, n_jobs=threads), args.repeats)
            m = rows * n
        per = t / m * 1e6
        print(f"{cls.__name__:>6} {t:9.2f} {per:9.2f} {per * threads:16.1f} "
              f"{per * full_entries / 3.6e9:29.2f}")


if __name__ == "__main__":
    main()
