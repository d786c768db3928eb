#!/usr/bin/env python
"""Benchmark of ``NTK.gram_pair`` (NNGP and NTK from one tile pass) against two calls.

For each n, d and depth, interleaved rounds time (wall seconds, best of
``--repeat``): ``k.gram_pair(X)``, ``NNGP(...)(X)`` followed by ``NTK(...)(X)``,
and ``NTK(...)(X)`` alone, and print the ratios and the largest difference
between the pair and the separate calls (0: bit for bit). Compiled code is
warmed up first. The machine may be shared: the load average is printed beside
the figures; compare ratios within one run, not seconds across runs.

Usage::

    python scripts/bench_gram_pair.py                       # n = 3000, d = 10 and 784
    python scripts/bench_gram_pair.py --n 5000 --d 784 --depth 1 3 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _blas_info import print_blas_info

import kernelcomp as kc


def bench(X: np.ndarray, depth: int, repeat: int) -> str:
    """One configuration: best-of-``repeat`` interleaved wall times and the ratios."""
    params = {"depth": depth, "weight_std": 1.3, "bias_std": 0.2}
    ntk, nngp = kc.NTK(**params), kc.NNGP(**params)
    ntk.gram_pair(X[:50]), nngp(X[:50]), ntk(X[:50])  # compile / warm up every route
    candidates = {"pair": lambda: ntk.gram_pair(X), "two calls": lambda: (nngp(X), ntk(X)),
                  "NTK alone": lambda: ntk(X)}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):  # interleaved: one call of each per round
        for name, fn in candidates.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    pair = ntk.gram_pair(X)
    diff = max(float(np.max(np.abs(pair.nngp - nngp(X)))),
               float(np.max(np.abs(pair.ntk - ntk(X)))))
    best = {k: min(v) for k, v in times.items()}
    return (f"n={X.shape[0]} d={X.shape[1]} depth={depth}: pair {best['pair']:.3f} s, two "
            f"calls {best['two calls']:.3f} s, NTK alone {best['NTK alone']:.3f} s; two calls / "
            f"pair = {best['two calls'] / best['pair']:.2f}, pair / NTK alone = "
            f"{best['pair'] / best['NTK alone']:.2f}; max |pair - separate| = {diff:.1e}; "
            f"load {tuple(round(v, 1) for v in os.getloadavg())}")


def main() -> None:
    """Parse the grid and print one line per configuration."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[3000])
    ap.add_argument("--d", type=int, nargs="+", default=[10, 784])
    ap.add_argument("--depth", type=int, nargs="+", default=[2])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print_blas_info()
    rng = np.random.default_rng(0)
    for n in args.n:
        for d in args.d:
            X = rng.standard_normal((n, d))
            for depth in args.depth:
                print(bench(X, depth, args.repeat), flush=True)


if __name__ == "__main__":
    main()
