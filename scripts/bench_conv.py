"""Benchmark: kc.ConvNTK against neural-tangents' jitted stax kernel_fn on 28 x 28 x 1 images.

Run in a peer environment that has both (neural-tangents is never a dependency; see
``scripts/requirements-bench.txt``)::

    PYTHONPATH=$PWD /path/to/peer-venv/bin/python scripts/bench_conv.py [--n 16] [--repeats 2]

For each architecture (Myrtle-5, and a plain CNN without pooling: conv-relu x 3,
flatten, dense) and dtype (float64, float32), it times, interleaved in one process:

* neural-tangents: ``jax.jit(kernel_fn)(X, X, "ntk")`` after a warm-up call (the full
  n x n matrix, which is how its kernel_fn computes a Gram); float32 with jax's x64
  disabled (with it enabled, as for float64, neural-tangents promotes float32 inputs
  to a float64 result);
* kernelcomp: ``kc.ConvNTK(...)(X)`` (the symmetric Gram, each unique pair once), on
  all threads, and on one thread (``n_jobs=1``), after a warm-up (compilation) call.

float32 Grams run kernelcomp's float32 recursion (Myrtle-5: the slab layout's; the
no-pooling CNN: the spatial diagonal's); after each architecture kernelcomp's float64
and float32 Grams are also timed alone, interleaved, on one thread (the recursion's own
gain). kernelcomp's first call per dtype is timed too (process CPU: numba's compile, or
its load from the on-disk cache; run with an empty ``NUMBA_CACHE_DIR`` for the compile). It prints
wall seconds, milliseconds per unique pair (n (n + 1) / 2), the per-core
figure of the one-thread run (process CPU time per unique pair), the ratios
neural-tangents / kernelcomp of wall times and of process CPU times (all threads;
the CPU ratio is the one that survives a loaded machine), the largest relative
difference between the two Grams, the load average and the BLAS/thread info
(threadpoolctl). Each timed call comes after a pause (``--settle``): XLA's and
numba's worker threads keep spinning for a moment after a call, and process CPU
time is the whole process's, so without the pause one library's spin was counted
against the other (kernelcomp's all-thread CPU per pair read ~1.7x its one-thread
figure right after neural-tangents' call). Images are 28 x 28 MNIST-like strokes
(``make_nt_conv_fixtures``'s).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _images(n: int) -> np.ndarray:
    from make_nt_conv_fixtures import _strokes

    return _strokes(np.random.default_rng(0), n)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="images for Myrtle-5 (default 16)")
    parser.add_argument("--n-flat", type=int, default=200,
                        help="images for the CNN without pooling (its pairs are cheap)")
    parser.add_argument("--arch", choices=["all", "myrtle5", "cnn3-flatten"], default="all")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds of pause before each timed call (default 1): the "
                        "other library's idle worker threads spin for a while after a "
                        "call, and process CPU time would count that spin against the "
                        "next one")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import numba
    from jax.experimental import disable_x64
    from make_nt_conv_fixtures import stax_network
    from threadpoolctl import threadpool_info

    import kernelcomp as kc

    print("numba threads:", numba.get_num_threads(), "| cpus:", os.cpu_count())
    for info in threadpool_info():
        print("  threadpool:", info.get("internal_api"), info.get("num_threads"),
              info.get("version"))
    archs = {
        "myrtle5": list(kc.ConvNTK.myrtle(5).layers),
        "cnn3-flatten": ["conv", "relu"] * 3 + ["flatten", "dense"],
    }
    for name, layers in archs.items():
        if args.arch not in ("all", name):
            continue
        n = args.n if name == "myrtle5" else args.n_flat
        X64 = _images(n)
        unique = n * (n + 1) / 2
        ours = kc.ConvNTK(layers, weight_std=math.sqrt(2.0), bias_std=0.0)
        _, _, kfn = stax_network({"layers": layers, "weight_std": math.sqrt(2.0),
                                  "bias_std": 0.0})
        kfn = jax.jit(kfn, static_argnames="get")
        for dt in (np.float64, np.float32):
            X = X64.astype(dt)
            # float32: neural-tangents with x64 disabled (enabled, it promotes to float64)
            nt_ctx = disable_x64 if dt == np.float32 else contextlib.nullcontext
            with nt_ctx():
                kfn(X[:2], X[:2], get="ntk").block_until_ready()  # compile
                kfn(X, X, get="ntk").block_until_ready()
            c0 = time.process_time()
            ours(X[:2])
            print(f"{name:13s} {np.dtype(dt).name:7s} kc first call (compile or cache load): "
                  f"{time.process_time() - c0:.1f} s cpu | load {os.getloadavg()}", flush=True)
            ours(X[:2], n_jobs=1)
            for rep in range(args.repeats):
                time.sleep(args.settle)
                c0 = time.process_time()
                t0 = time.perf_counter()
                with nt_ctx():
                    Knt = np.asarray(kfn(X, X, get="ntk").block_until_ready())
                t_nt = time.perf_counter() - t0
                c_nt = time.process_time() - c0
                time.sleep(args.settle)
                c0 = time.process_time()
                t0 = time.perf_counter()
                K = ours(X)
                t_kc = time.perf_counter() - t0
                c_kc = time.process_time() - c0
                time.sleep(args.settle)
                c0 = time.process_time()
                t0 = time.perf_counter()
                ours(X, n_jobs=1)
                t_1 = time.perf_counter() - t0
                c_1 = time.process_time() - c0
                err = float(np.max(np.abs(K - Knt)) / np.max(np.abs(Knt)))
                print(
                    f"{name:13s} {np.dtype(dt).name:7s} rep {rep}: "
                    f"NT {t_nt:7.3f} s ({1e3 * t_nt / unique:8.3f} ms/pair) | "
                    f"kc {t_kc:7.3f} s ({1e3 * t_kc / unique:8.3f} ms/pair) | "
                    f"kc 1 thread {1e3 * t_1 / unique:8.3f} ms/pair wall, "
                    f"{1e3 * c_1 / unique:8.3f} ms/pair cpu | ratio NT/kc {t_nt / t_kc:6.2f} wall, "
                    f"{c_nt / c_kc:6.2f} cpu (NT {1e3 * c_nt / unique:.3f}, kc "
                    f"{1e3 * c_kc / unique:.3f} ms/pair cpu) | "
                    f"max rel diff {err:.1e} | load {os.getloadavg()}",
                    flush=True,
                )
        _recursions(ours, X64, args.repeats, args.settle)


def _recursions(ours, X64: np.ndarray, repeats: int, settle: float) -> None:
    """kernelcomp alone, float64 against float32 Grams, one thread, interleaved (CPU per pair)."""
    n = len(X64)
    unique = n * (n + 1) / 2
    X32 = X64.astype(np.float32)
    cpu: dict[str, list[float]] = {"float64": [], "float32": []}
    for _ in range(repeats):
        for name, X in (("float64", X64), ("float32", X32)):
            time.sleep(settle)
            c0 = time.process_time()
            ours(X, n_jobs=1)
            cpu[name].append(1e3 * (time.process_time() - c0) / unique)
    ratio = float(np.median(cpu["float64"]) / np.median(cpu["float32"]))
    print(
        "  kc alone, 1 thread, interleaved: float64 "
        + ", ".join(f"{v:.3f}" for v in cpu["float64"])
        + " | float32 "
        + ", ".join(f"{v:.3f}" for v in cpu["float32"])
        + f" ms/pair cpu | float64/float32 {ratio:.2f} (medians) | load {os.getloadavg()}",
        flush=True,
    )


if __name__ == "__main__":
    main()
