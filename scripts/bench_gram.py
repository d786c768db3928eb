#!/usr/bin/env python
"""Benchmark of the analytic Gram matrices (kc.NTK / kc.NNGP).

Prints, for each n, d, depth and dtype: median seconds over repeats, Gram
entries per second, peak memory (numpy-visible allocations, as a multiple of
the output matrix), the time of a vectorised NumPy implementation of the same
recursion run in the same process (and the speed-up over it), and the BLAS
floor X @ X.T alone. First-call times (cold compile, and cache warm in a fresh
process) are measured in subprocesses.

Usage::

    python scripts/bench_gram.py                 # the issue's grid (slow: ~15 min)
    python scripts/bench_gram.py --quick         # n = 2000, 5000 only
    python scripts/bench_gram.py --n 5000 --d 10 --depth 1 2 4 --dtype float64
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import kernelcomp as kc
from kernelcomp._parallel import max_threads


def numpy_ntk(X: np.ndarray, depth: int, weight_std: float, bias_std: float) -> np.ndarray:
    """The same ReLU NTK recursion, vectorised over whole matrices with NumPy."""
    d = X.shape[1]
    w2, b2 = weight_std**2, bias_std**2
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    s = X @ X.T
    s *= w2 / d
    s += b2
    v = w2 * sq / d + b2
    t = s.copy()
    for _ in range(depth):
        norm = np.sqrt(np.outer(v, v))
        rho = np.clip(s / np.where(norm > 0, norm, 1.0), -1.0, 1.0)
        theta = np.arccos(rho)
        k = norm * (np.sqrt(1.0 - rho * rho) + (np.pi - theta) * rho) / (2 * np.pi)
        kd = (np.pi - theta) / (2 * np.pi)
        t *= kd
        t *= w2
        s = w2 * k + b2
        t += s
        v = w2 * v / 2 + b2
    return t


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
        out = None
    return float(np.median(times)), out


def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    res = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del res
    return peak


FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
import kernelcomp as kc
from kernelcomp._parallel import max_threads
t1 = time.perf_counter()
X = np.random.default_rng(0).standard_normal((50, {d})).astype("{dtype}")
kc.NTK(depth=2, bias_std=0.1)(X)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call(d: int, dtype: str) -> tuple[float, float, float]:
    """(import, cold-compile first call, warm-cache first call) in fresh processes."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = FIRST_CALL.format(d=d, dtype=dtype)
        cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True).stdout.split()
        warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True).stdout.split()
    return float(warm[0]), float(cold[1]), float(warm[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, nargs="+", default=[2000, 5000, 10000])
    p.add_argument("--d", type=int, nargs="+", default=[10, 784])
    p.add_argument("--depth", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-numpy", action="store_true", help="skip the NumPy reference")
    p.add_argument("--quick", action="store_true", help="n in {2000, 5000}")
    args = p.parse_args(argv)
    if args.quick:
        args.n = [n for n in args.n if n <= 5000]

    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thr)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    print(f"kernelcomp {kc.__version__}; numpy {np.__version__}; BLAS: {blas}; "
          f"numba threads: {max_threads()}")
    for d in sorted(set(args.d)):
        for dt in args.dtype:
            imp, cold, warm = first_call(d, dt)
            print(f"first call d={d} {dt}: import {imp:.2f} s, cold compile {cold:.2f} s, "
                  f"cache warm {warm:.2f} s")
    print()
    header = (f"{'n':>6} {'d':>4} {'L':>2} {'dtype':>7} | {'kc s':>7} {'Gent/s':>7} "
              f"{'peak/out':>8} | {'numpy s':>7} {'speedup':>7} | {'X@X.T s':>7}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for n in args.n:
        for d in args.d:
            X64 = rng.standard_normal((n, d))
            for dt in args.dtype:
                X = X64.astype(dt)
                floor, _ = timed(lambda X=X: X @ X.T, args.repeats)
                for depth in args.depth:
                    k = kc.NTK(depth=depth, bias_std=0.1)
                    k(X[:100])  # compile outside the timing
                    sec, _ = timed(lambda k=k, X=X: k(X), args.repeats)
                    peak = peak_bytes(lambda k=k, X=X: k(X)) / (n * n * X.dtype.itemsize)
                    if args.no_numpy:
                        ref_s, speed = float("nan"), float("nan")
                    else:
                        ref_s, _ = timed(lambda X=X, depth=depth: numpy_ntk(X, depth, 1.0, 0.1), 1)
                        speed = ref_s / sec
                    print(f"{n:>6} {d:>4} {depth:>2} {dt:>7} | {sec:7.3f} {n * n / sec / 1e9:7.2f} "
                          f"{peak:8.2f} | {ref_s:7.2f} {speed:6.1f}x | {floor:7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
