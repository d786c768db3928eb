"""Benchmark ``kernelcomp gram``: an analytic NTK Gram matrix into HDF5, block by block.

The issue's case (default): n = 20000 samples, d = 784 features, depth 3,
float32, i.e. a 1.6 GB matrix written tile by tile. Prints the command's
wall time, entries per second and peak memory, next to a reference run in the
same process: the same matrix computed in memory by ``kernelcomp._gram.gram``
(the one-shot route, which must hold the whole matrix). Compile time is
measured separately, before both.

Peak memory is the process's peak resident set size (``ru_maxrss``) above the
baseline taken after the data file is written; the command runs first, so its
peak is not masked by the in-memory reference that follows.

Usage::

    python scripts/bench_cli_gram.py                 # the issue's case
    python scripts/bench_cli_gram.py --n 4000 --d 100  # a quick check
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _blas_info import print_blas_info


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--block-rows", type=int, default=None)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)
    print_blas_info()

    import kernelcomp as kc
    from kernelcomp import io
    from kernelcomp._gram import gram, iter_gram_blocks
    from kernelcomp._parallel import resolve_n_jobs
    from kernelcomp.cli import main as cli_main

    n, d, dt = args.n, args.d, np.dtype(args.dtype)
    kernel = kc.NTK(depth=args.depth)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_cli_gram_"))
    x_path, out = folder / "X.npy", folder / "K.h5"
    for p in (out, folder / "K.h5.partial"):
        if p.exists():
            p.unlink()

    rng = np.random.default_rng(0)
    np.save(x_path, rng.standard_normal((n, d), dtype=np.float32).astype(dt, copy=False))
    threads = resolve_n_jobs(args.n_jobs)
    print(f"kernelcomp gram benchmark: n={n}, d={d}, depth={args.depth}, {dt.name}, "
          f"{threads} threads, matrix {n * n * dt.itemsize / 2**30:.2f} GiB")

    # compile (first call) separately from the steady state
    small = np.load(x_path, mmap_mode="r")[:64].astype(dt)
    t0 = time.perf_counter()
    gram(kernel, small)
    for b in iter_gram_blocks(kernel, small, dtype=dt, block_rows=32):
        del b
    print(f"  compile (first call):           {time.perf_counter() - t0:8.2f} s")
    base = peak_rss_mb()

    # the command, into HDF5, block by block
    argv_cli = ["gram", str(x_path), "--kernel", "ntk", "--depth", str(args.depth),
                "--dtype", dt.name, "-o", str(out), "-q"]
    if args.n_jobs is not None:
        argv_cli += ["--n-jobs", str(args.n_jobs)]
    if args.block_rows is not None:
        argv_cli += ["--block-rows", str(args.block_rows)]
    t0 = time.perf_counter()
    code = cli_main(argv_cli)
    t_cli = time.perf_counter() - t0
    if code != 0:
        print(f"kernelcomp gram failed with exit status {code}", file=sys.stderr)
        return code
    peak_cli = peak_rss_mb() - base
    info = io.read_gram_info(out)
    size_mb = out.stat().st_size / 2**20

    # cost of the input hash (part of the command's time)
    X = np.load(x_path)
    t0 = time.perf_counter()
    io.hash_inputs(X)
    t_hash = time.perf_counter() - t0

    # reference: the whole matrix in memory, one shot
    t0 = time.perf_counter()
    K = gram(kernel, X, dtype=dt, n_jobs=args.n_jobs)
    t_mem = time.perf_counter() - t0
    peak_mem = peak_rss_mb() - base

    # agreement (rows sampled from the file; d > 64 uses BLAS per block, so the
    # dot products may round differently from the one-shot product)
    import h5py

    rows = np.sort(rng.choice(n, size=min(n, 64), replace=False))
    with h5py.File(out, "r") as f:
        sample = f["gram"][rows, :]
    ref = K[rows, :]
    rel = float(np.max(np.abs(sample.astype(np.float64) - ref)) / np.max(np.abs(ref)))
    entries = float(n) * n

    print(f"  kernelcomp gram -> HDF5:        {t_cli:8.2f} s   {entries / t_cli:10.3e} "
          f"entries/s   peak +{peak_cli:7.0f} MiB   ({info.n_blocks} blocks of "
          f"{info.block_rows} rows, file {size_mb:.0f} MiB)")
    print(f"  reference gram() in memory:     {t_mem:8.2f} s   {entries / t_mem:10.3e} "
          f"entries/s   peak +{peak_mem:7.0f} MiB")
    print(f"  input hash (sha256 of X):       {t_hash:8.2f} s")
    print(f"  ratio time   CLI / in-memory:   {t_cli / t_mem:8.2f}")
    print(f"  ratio memory CLI / matrix size: {peak_cli / (entries * dt.itemsize / 2**20):8.3f}")
    print(f"  max |file - in-memory| / max|K|: {rel:.2e}")
    if args.dir is None:
        out.unlink()
        x_path.unlink()
        os.rmdir(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
