#!/usr/bin/env python
"""Benchmark of the analytic Gram matrices (kc.NTK / kc.NNGP).

Prints, for each n, d, depth and dtype: wall and CPU seconds (best of
``--repeat`` interleaved rounds: one call of each candidate per round), Gram
entries per second, peak memory (numpy-visible allocations, as a multiple of
the output matrix), and next to them, measured in the same rounds,

* ``other route``: the same Gram with the dot products taken the other way
  (fused in the tile pass when kernelcomp uses BLAS, BLAS when it fuses), i.e.
  what the ``FUSED_MAX_FEATURES`` threshold decides between;
* the BLAS floor ``X @ X.T`` alone;
* a vectorised NumPy implementation of the same recursion (one call) and the
  speed-up over it;
* with ``--neural-tangents`` (run with a Python that has neural-tangents, e.g.
  ``scripts/requirements-bench.txt``): neural-tangents' jitted ``kernel_fn`` of
  the same network (float64 with ``jax_enable_x64``; XLA's own dot products, so
  ``OPENBLAS_CORETYPE`` changes only kernelcomp's and NumPy's side), interleaved
  in the same rounds.

First-call times (cold compile, and cache warm in a fresh process) are
measured in subprocesses. ``--crossover`` instead prints fused vs BLAS over a
range of d (the measurement behind ``FUSED_MAX_FEATURES``). The machine may be
shared: compare ratios within one run, not seconds across runs.

Usage::

    python scripts/bench_gram.py                 # the issue's grid (slow: ~15 min)
    python scripts/bench_gram.py --quick         # n = 2000, 5000 only
    python scripts/bench_gram.py --n 5000 --d 10 --depth 1 2 4 --dtype float64
    python scripts/bench_gram.py --crossover --n 5000 --depth 2 4   # fused vs BLAS over d
    # the issue 29 check, under both settings (neural-tangents in its own venv)
    python scripts/bench_gram.py --n 5000 --d 784 --depth 2 --dtype float64 \
        --neural-tangents --no-first-call --no-numpy
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_gram.py ...
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
from _blas_info import print_blas_info

import kernelcomp as kc
import kernelcomp.kernels as kernels_module
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


def nt_kernel_fn(depth: int, weight_std: float, bias_std: float):
    """neural-tangents' jitted NTK of the same ReLU network (float64), ``fn(X) -> K``."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    dense = {"W_std": weight_std, "b_std": bias_std}
    _, _, kernel_fn = stax.serial(*[stax.Dense(512, **dense), stax.Relu()] * depth,
                                  stax.Dense(1, **dense))  # fmt: skip
    fn = jax.jit(kernel_fn, static_argnames="get")

    def run(X: np.ndarray) -> np.ndarray:
        return np.asarray(fn(X, None, get="ntk").block_until_ready())

    return run


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of each callable over ``repeats`` rounds of one call each."""
    best = {name: (float("inf"), float("inf")) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            out = fn()
            w, c = time.perf_counter() - w, time.process_time() - c
            del out
            best[name] = (min(best[name][0], w), min(best[name][1], c))
    return best


class route:
    """Context manager forcing the dot-product route: fused (True) or BLAS (False)."""

    def __init__(self, fused: bool) -> None:
        self.limit = 10**9 if fused else -1

    def __enter__(self) -> None:
        self.saved = kernels_module.FUSED_MAX_FEATURES
        kernels_module.FUSED_MAX_FEATURES = self.limit

    def __exit__(self, *exc: object) -> None:
        kernels_module.FUSED_MAX_FEATURES = self.saved


def forced(k, X, fused: bool):
    """``k(X)`` with the dot products taken by the given route."""
    with route(fused):
        return k(X)


def crossover(args: argparse.Namespace) -> None:
    """Fused vs BLAS dot products over d, for each n, depth and dtype."""
    ds = args.d if args.d != [10, 784] else [8, 16, 24, 32, 40, 48, 56, 64, 80]
    rng = np.random.default_rng(0)
    print(f"{'n':>6} {'d':>4} {'L':>2} {'dtype':>7} | {'fused s':>7} {'cpu':>6} | "
          f"{'BLAS s':>7} {'cpu':>6} | {'fused/BLAS':>10} | kernelcomp takes")
    for n in args.n:
        for dt in args.dtype:
            limit = kernels_module.FUSED_MAX_FEATURES
            for depth in args.depth:
                k = kc.NTK(depth=depth, bias_std=0.1)
                for d in ds:
                    X = rng.standard_normal((n, d)).astype(dt)
                    for fused in (True, False):
                        forced(k, X[:50], fused)  # compile outside the timing
                    b = interleaved({"fused": lambda k=k, X=X: forced(k, X, True),
                                     "blas": lambda k=k, X=X: forced(k, X, False)}, args.repeats)
                    (fw, fc), (bw, bc) = b["fused"], b["blas"]
                    print(f"{n:>6} {d:>4} {depth:>2} {dt:>7} | {fw:7.3f} {fc:6.3f} | {bw:7.3f} "
                          f"{bc:6.3f} | {fw / bw:10.2f} | {'fused' if d <= limit else 'BLAS'}",
                          flush=True)
    print(f"\nFUSED_MAX_FEATURES = {kernels_module.FUSED_MAX_FEATURES}; best of {args.repeats} "
          "interleaved rounds")


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
import kernelcomp.kernels as kernels_module
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
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-numpy", action="store_true", help="skip the NumPy reference")
    p.add_argument("--quick", action="store_true", help="n in {2000, 5000}")
    p.add_argument("--crossover", action="store_true", help="fused vs BLAS dot products over d")
    p.add_argument("--no-first-call", action="store_true", help="skip the subprocess timings")
    p.add_argument("--neural-tangents", action="store_true",
                   help="also time neural-tangents' kernel_fn (needs neural-tangents)")
    args = p.parse_args(argv)
    print_blas_info()
    if args.quick:
        args.n = [n for n in args.n if n <= 5000]

    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thr)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    print(f"kernelcomp {kc.__version__}; numpy {np.__version__}; BLAS: {blas}; "
          f"numba threads: {max_threads()}; load average {os.getloadavg()[0]:.1f}")
    if args.crossover:
        crossover(args)
        return 0
    if not args.no_first_call:
        for d in sorted(set(args.d)):
            for dt in args.dtype:
                imp, cold, warm = first_call(d, dt)
                print(f"first call d={d} {dt}: import {imp:.2f} s, cold compile {cold:.2f} s, "
                      f"cache warm {warm:.2f} s")
    print()
    header = (f"{'n':>6} {'d':>4} {'L':>2} {'dtype':>7} {'route':>5} | {'kc s':>7} {'cpu':>6} "
              f"{'Gent/s':>6} {'peak/out':>8} | {'other s':>7} {'x other':>7} | {'X@X.T s':>7} | "
              f"{'numpy s':>7} {'speedup':>7} | {'NT s':>7} {'x NT':>6} {'NT rel.err':>10}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for n in args.n:
        for d in args.d:
            X64 = rng.standard_normal((n, d))
            for dt in args.dtype:
                X = X64.astype(dt)
                fused = d <= kernels_module.FUSED_MAX_FEATURES
                for depth in args.depth:
                    k = kc.NTK(depth=depth, bias_std=0.1)
                    k(X[:100])  # compile outside the timing
                    forced(k, X[:100], not fused)
                    fns = {"kc": lambda k=k, X=X: k(X),
                           "other": lambda k=k, X=X, f=fused: forced(k, X, not f),
                           "blas": lambda X=X: X @ X.T}
                    nt_s, nt_x, nt_err = float("nan"), float("nan"), float("nan")
                    if args.neural_tangents and dt == "float64":
                        nt = nt_kernel_fn(depth, 1.0, 0.1)
                        K_nt, K_kc = nt(X), k(X)  # compile outside the timing
                        nt_err = float(np.abs(K_nt - K_kc).max() / np.abs(K_kc).max())
                        del K_nt, K_kc
                        fns["nt"] = lambda nt=nt, X=X: nt(X)
                    b = interleaved(fns, args.repeats)
                    (sec, cpu), (other, ocpu), floor = b["kc"], b["other"], b["blas"][0]
                    peak = peak_bytes(lambda k=k, X=X: k(X)) / (n * n * X.dtype.itemsize)
                    if args.no_numpy:
                        ref_s, speed = float("nan"), float("nan")
                    else:
                        ref_s = interleaved({"np": lambda X=X, depth=depth:
                                             numpy_ntk(X, depth, 1.0, 0.1)}, 1)["np"][0]
                        speed = ref_s / sec
                    if "nt" in b:
                        nt_s, nt_x = b["nt"][0], b["nt"][0] / sec
                    print(f"{n:>6} {d:>4} {depth:>2} {dt:>7} {'fused' if fused else 'BLAS':>5} | "
                          f"{sec:7.3f} {cpu:6.3f} {n * n / sec / 1e9:6.2f} {peak:8.2f} | "
                          f"{other:7.3f} {ocpu:6.3f} {other / sec:6.2f}x | {floor:7.3f} | "
                          f"{ref_s:7.2f} {speed:6.1f}x | {nt_s:7.3f} {nt_x:5.1f}x {nt_err:10.1e}",
                          flush=True)
    print(f"\nbest of {args.repeats} interleaved rounds; x other: the other dot-product route's "
          "seconds / kernelcomp's; cpu: CPU seconds of all threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
