#!/usr/bin/env python
"""Benchmark of the CUDA Gram path (``device="cuda"``) against the CPU path.

For each n, depth and dtype (d = 784 by default, the NTK with ReLU): the first
CUDA call (numba compiles the kernel, or loads it from its cache), the median
seconds of the CUDA Gram into a device array (kernel only), into a NumPy array
(kernel, copy back, and the CPU per-sample pass), of the CPU Gram, the
speed-up, and how far the two agree (max relative difference; exact symmetry
and diagonal of the CUDA result). Needs a real GPU and numba-cuda: it refuses,
with exit status 2, without them or under numba's simulator.

``--check`` instead compares the GPU with the CPU over every activation,
parameterization and bias setting at small sizes (the simulator tests' cases,
on the real device), and exits 1 on a mismatch.

Usage::

    python scripts/bench_cuda.py                    # n = 5000, 20000; depth 1, 4; both dtypes
    python scripts/bench_cuda.py --quick            # n = 5000 only
    python scripts/bench_cuda.py --n 10000 --depth 2 --dtype float32 --no-cpu
    python scripts/bench_cuda.py --check
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from _blas_info import print_blas_info

import kernelcomp as kc


def refuse_without_gpu() -> None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("bench_cuda: NUMBA_ENABLE_CUDASIM is set: the simulator is not a benchmark",
              file=sys.stderr)
        sys.exit(2)
    from kernelcomp._kernels._config import CudaUnavailableError

    try:
        from kernelcomp._kernels import cuda as kcu

        kcu.require()
    except CudaUnavailableError as exc:
        print(f"bench_cuda: {exc}", file=sys.stderr)
        sys.exit(2)
    dev = kcu.cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    free, total = kcu.cuda.current_context().get_memory_info()
    print(f"device: {name}, compute capability {dev.compute_capability}, "
          f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free")


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench(ns, d, depths, dtypes, repeats, run_cpu) -> None:
    from numba import cuda

    rng = np.random.default_rng(0)
    head = (f"{'n':>6} {'depth':>5} {'dtype':>8} {'first':>7} {'kernel':>8} {'to host':>8} "
            f"{'entries/s':>10} {'cpu':>8} {'speed-up':>8} {'max rel':>9} {'sym':>4} {'diag':>4}")
    print(head)
    for n in ns:
        X64 = rng.standard_normal((n, d))
        for dtype in dtypes:
            X = X64.astype(dtype)
            dX = cuda.to_device(X)
            for depth in depths:
                k = kc.NTK(depth=depth, bias_std=0.1)
                t0 = time.perf_counter()
                G = kc.gram(k, X, device="cuda")
                first = time.perf_counter() - t0
                dout = cuda.device_array((n, n), dtype=dtype)

                def on_device(k=k, dX=dX, dout=dout):
                    kc.gram(k, dX, out=dout, device="cuda")  # synchronizes

                t_dev = median_time(on_device, repeats)
                t_host = median_time(lambda k=k, X=X: kc.gram(k, X, device="cuda"), repeats)
                del dout
                sym = bool(np.array_equal(G, G.T))
                diag = bool(np.array_equal(np.diag(G), k.diag(X)))
                cpu = speed = rel = float("nan")
                if run_cpu:
                    t0 = time.perf_counter()
                    C = k(X)
                    cpu = time.perf_counter() - t0
                    speed = cpu / t_host
                    rel = float(np.abs(G.astype(np.float64) - C).max() / np.abs(C).max())
                    del C
                del G
                print(f"{n:>6} {depth:>5} {np.dtype(dtype).name:>8} {first:>7.2f} {t_dev:>8.3f} "
                      f"{t_host:>8.3f} {n * n / t_dev:>10.3g} {cpu:>8.2f} {speed:>8.1f} "
                      f"{rel:>9.2e} {'yes' if sym else 'NO':>4} {'yes' if diag else 'NO':>4}",
                      flush=True)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


def check_one(k, X64: np.ndarray, Y64: np.ndarray, cuda) -> int:
    """Mismatches (0 or 1) of one kernel and shape, in float64 and float32."""
    d = X64.shape[1]
    bad = []
    for dtype in (np.float64, np.float32):
        X, Y = X64.astype(dtype), Y64.astype(dtype)
        G = kc.gram(k, cuda.to_device(X), device="cuda")
        H = k(X, Y, device="cuda")
        # reference: the float64 CPU recursion of these (possibly float32) values
        C = k(X.astype(np.float64)).astype(dtype)
        D = k(X.astype(np.float64), Y.astype(np.float64)).astype(dtype)
        tol = 1e-12 if dtype == np.float64 else 1e-6
        if not (_rel(G, C) <= tol and _rel(H, D) <= tol):
            bad.append(f"{dtype.__name__}: max rel {_rel(G, C):.3g} / {_rel(H, D):.3g}")
        if not (np.array_equal(G, G.T) and np.array_equal(np.diag(G), k.diag(X))):
            bad.append(f"{dtype.__name__}: not exactly symmetric or not the CPU diagonal")
        if not (G[1, 3] == G[1, 1] and np.isfinite(G).all() and np.isfinite(H).all()):
            bad.append(f"{dtype.__name__}: duplicates differ from the diagonal, or not finite")
        if d <= 64 and not (np.array_equal(G, k(X)) and np.array_equal(H, k(X, Y))):
            # documented: the same rounding as the CPU's fused path (d <= 64)
            bad.append(f"{dtype.__name__}: not bit for bit the CPU's (d <= 64)")
    for line in bad:
        print(f"MISMATCH {k!r} n={X64.shape[0]} m={Y64.shape[0]} d={d} {line}")
    return 1 if bad else 0


def check() -> int:
    """GPU against CPU at small sizes: every activation, parameterization, bias style."""
    from numba import cuda

    rng = np.random.default_rng(1)
    failures = 0
    shapes = ((37, 50, 5), (50, 37, 40), (45, 33, 100))  # ragged; several feature tiles; BLAS
    X0 = rng.standard_normal((64, 100))
    X0[3] = X0[1]  # duplicates
    X0[5] = 0.0
    for act in ("relu", "relu_unit", "erf"):
        for depth in (0, 1, 2, 3):
            for param in ("ntk", "standard"):
                for bias in (0.0, 0.3, "layers"):
                    p = {"depth": depth, "activation": act, "parameterization": param}
                    if bias == "layers":
                        p["weight_std"] = tuple(1.0 + 0.25 * i for i in range(depth + 1))
                        p["bias_std"] = tuple(0.2 if i % 2 else None for i in range(depth + 1))
                    else:
                        p["bias_std"] = bias
                    if param == "standard" and depth:
                        p["width"] = 64
                    for cls in (kc.NTK, kc.NNGP):
                        k = cls(**p)
                        for n, m, d in shapes:
                            failures += check_one(k, X0[:n, :d], X0[-m:, :d], cuda)
    print(f"check: {failures} mismatches")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--depth", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"],
                        choices=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 5000 only")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU timings")
    parser.add_argument("--check", action="store_true",
                        help="compare GPU and CPU results instead of timing")
    args = parser.parse_args()
    print_blas_info()
    refuse_without_gpu()
    if args.check:
        sys.exit(check())
    ns = [5000] if args.quick else args.n
    bench(ns, args.d, args.depth, args.dtype, args.repeats, not args.no_cpu)


if __name__ == "__main__":
    main()
