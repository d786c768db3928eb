#!/usr/bin/env python
"""Benchmark of ``ConvNTK(device="cuda")`` (Myrtle-5, 28 x 28 MNIST digits) against the CPU core.

In one process, on the same machine, interleaved:

* CPU core: ``k(X)`` on ``--n-cpu`` digits, all threads (the per-sample pass and
  the unique pairs);
* GPU: ``k(X, device="cuda")`` on the same digits (the results compared: max
  relative difference, bit-for-bit equality), then on each ``--n`` digits
  (a few thousand: the per-sample pass on the CPU, the pairs on the GPU, timed
  apart); sizes whose time, extrapolated from the previous size, would exceed
  ``--max-seconds`` are skipped.

It prints unique pairs per second (n (n + 1) / 2 pairs) of each, the speed-up
(GPU pairs per second over the CPU core's, "GPU/CPU"), the device, the load
average and the BLAS/thread info. The defaults take a few minutes of device time
(each size after the first is skipped past ``--max-seconds`` per dtype). Needs a
real GPU and numba-cuda (exit status 2 without them or under the simulator).

``--check`` instead compares the GPU with the CPU core on several
architectures at small sizes (pools, biases, erf, Myrtle-5/7 on 8 x 8 and
28 x 28 images, float64 and float32) and exits 1 on a mismatch.

Usage::

    python scripts/bench_cuda_conv.py                   # n = 500, 2000; CPU on 48 digits
    python scripts/bench_cuda_conv.py --n 500 --n-cpu 24 --max-seconds 120
    python scripts/bench_cuda_conv.py --check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _blas_info import print_blas_info
from bench_cuda import refuse_without_gpu

import kernelcomp as kc


def digits(n: int) -> np.ndarray:
    """The first ``n`` of the 5000 MNIST digits (shuffled), as (n, 28, 28, 1) float64."""
    X, _ = kc.datasets.mnist5k_parity(seed=0)
    if n > X.shape[0]:
        raise SystemExit(f"bench_cuda_conv: at most {X.shape[0]} digits, asked for {n}")
    return X[:n].reshape(n, 28, 28, 1)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


def bench(ns: list[int], n_cpu: int, dtypes: list[str], max_seconds: float) -> None:
    from numba import cuda

    k = kc.ConvNTK.myrtle(5, image_shape=(28, 28, 1))
    print(f"kernel: {k!r}")
    for dtype in dtypes:
        Xc = digits(n_cpu).astype(dtype)
        k(Xc[:2])  # compile the CPU core
        k(Xc[:2], device="cuda")  # compile the CUDA kernel
        pairs = n_cpu * (n_cpu + 1) / 2
        t0 = time.perf_counter()
        C = k(Xc)
        t_cpu = time.perf_counter() - t0
        t0 = time.perf_counter()
        G = k(Xc, device="cuda")
        t_gpu = time.perf_counter() - t0
        print(f"{dtype:8s} n={n_cpu:5d}: CPU {pairs / t_cpu:10.1f} pairs/s ({t_cpu:7.2f} s) | "
              f"GPU {pairs / t_gpu:10.1f} pairs/s ({t_gpu:7.2f} s, per-sample pass "
              f"included) | GPU/CPU {t_cpu / t_gpu:6.1f}x | max rel {_rel(G, C):.1e}, "
              f"bitwise {np.array_equal(G, C)} | load {os.getloadavg()}", flush=True)
        cpu_rate = pairs / t_cpu
        prev = None
        for n in ns:
            pairs = n * (n + 1) / 2
            if prev is not None and prev[1] * pairs / prev[0] > max_seconds:
                print(f"{dtype:8s} n={n:5d}: skipped (about {prev[1] * pairs / prev[0]:.0f} s "
                      f"> --max-seconds {max_seconds:g})", flush=True)
                continue
            X = digits(n).astype(dtype)
            base = k._for_device("cuda")
            t0 = time.perf_counter()
            px = base._prepare(X)  # the per-sample pass (CPU) and the copies
            t_prep = time.perf_counter() - t0
            dout = cuda.device_array((n, n), dtype=dtype)
            t0 = time.perf_counter()
            base._fill(px, px, dout, True)
            cuda.synchronize()
            t_pairs = time.perf_counter() - t0
            K = dout.copy_to_host()
            ok = bool(np.isfinite(K).all() and np.array_equal(K, K.T))
            rate = pairs / t_pairs
            print(f"{dtype:8s} n={n:5d}: GPU {rate:10.1f} pairs/s ({t_pairs:7.2f} s pairs, "
                  f"{t_prep:6.2f} s per-sample pass on the CPU) | GPU/CPU {rate / cpu_rate:6.1f}x "
                  f"| finite and symmetric {ok} | load {os.getloadavg()}", flush=True)
            prev = (pairs, t_pairs)
            del dout, K


def check(sizes=(((8, 8, 3), 40, 17), ((28, 28, 1), 9, 4))) -> int:
    """GPU against the CPU core at small sizes on several architectures.

    ``sizes``: ``(image shape, n, m)`` of the symmetric (n) and cross (n x m) Grams.
    """
    rng = np.random.default_rng(2)
    archs = [
        ("flatten-bias", kc.ConvNTK(["conv", "relu"] * 3 + ["flatten", "dense"], bias_std=0.1)),
        ("pool3-erf", kc.ConvNNGP(["conv5", "erf", "avgpool3", "conv", "erf", "flatten",
                                   "dense", "relu", "dense"], weight_std=1.3, bias_std=0.2)),
        ("gap-relu_unit", kc.ConvNTK(["conv", "relu_unit", "conv", "relu_unit",
                                      "global_avgpool", "dense"])),
        ("myrtle5", kc.ConvNTK.myrtle(5)),
        ("myrtle7", kc.ConvNTK.myrtle(7)),
        ("myrtle5-nngp", kc.ConvNNGP.myrtle(5)),
        ("leaky-gelu-lin", kc.ConvNTK(["conv", "leaky_relu", "avgpool", "conv", "gelu",
                                       "global_avgpool", "dense", "linear", "dense"],
                                      bias_std=0.1)),
        # the device's exp may differ from the CPU's in the last bit: ELU's duplicates and
        # diagonal agree to rounding, not bit for bit
        ("elu", kc.ConvNTK(["conv", "elu", "conv", "elu", "flatten", "dense", "elu", "dense"],
                           weight_std=1.2, bias_std=0.1)),
    ]
    failures = 0
    for shape, n, m in sizes:
        for name, k in archs:
            X64 = rng.standard_normal((n, *shape))
            Y64 = rng.standard_normal((m, *shape))
            X64[3] = X64[1]
            for dtype in (np.float64, np.float32):
                X, Y = X64.astype(dtype), Y64.astype(dtype)
                G, H = k(X, device="cuda"), k(X, Y, device="cuda")
                C, D = k(X), k(X, Y)
                tol = 1e-12 if dtype == np.float64 else 1e-6
                bad = []
                if not (_rel(G, C) <= tol and _rel(H, D) <= tol):
                    bad.append(f"max rel {_rel(G, C):.3g} / {_rel(H, D):.3g}")
                same = (
                    (lambda a, b, t=tol: _rel(a, b) <= t) if "elu" in k.layers else np.array_equal
                )
                # the device walks the offsets one by one: its diagonal is the per-sample
                # pass in that layout (the CPU's slab layout differs by rounding)
                dg = k._prepare(X, slab_ok=False).dg.astype(G.dtype)
                if not (np.array_equal(G, G.T) and same(np.diag(G), dg)
                        and same(G[1, 3], G[1, 1])):
                    bad.append("not symmetric, not the CPU diagonal, or a duplicate differs")
                bitwise = np.array_equal(G, C) and np.array_equal(H, D)
                print(f"{name:14s} {shape} {np.dtype(dtype).name:8s} max rel "
                      f"{max(_rel(G, C), _rel(H, D)):.1e} bitwise {bitwise} "
                      f"{'MISMATCH ' + '; '.join(bad) if bad else 'ok'}", flush=True)
                failures += bool(bad)
    print(f"check: {failures} mismatches")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--n-cpu", type=int, default=48, help="digits of the CPU comparison")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                        choices=["float64", "float32"])
    parser.add_argument("--max-seconds", type=float, default=90.0,
                        help="skip sizes predicted to take longer (seconds of GPU pairs)")
    parser.add_argument("--check", action="store_true",
                        help="compare GPU and CPU results instead of timing")
    args = parser.parse_args()
    print_blas_info()
    refuse_without_gpu()
    if args.check:
        sys.exit(check())
    bench(args.n, args.n_cpu, args.dtype, args.max_seconds)


if __name__ == "__main__":
    main()
