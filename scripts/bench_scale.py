"""Benchmark of kernel machines beyond one machine's memory: Falkon, Gram files, Dask.

Sections (``--only`` picks some), generated data (no downloads):

``exact``
    ``NTKRegressor`` with the exact solver (the blocked Cholesky) against
    ``solver="falkon"`` at n = 2e4 (d = 784, ``kc.NTK(depth=2)``): test MSE
    ratio, fit seconds and peak memory of each, in one process.
``falkon``
    Falkon alone at n = 2e5, m = 1e4, d = 784, float32: fit seconds and peak
    memory (the stored ``K_nm`` is n x m).
``gramfile``
    ``kernelcomp gram`` of n = 6e4, d = 784 float32 into HDF5 (the
    MNIST-size matrix, 14 GB): seconds and peak memory, then an interrupted
    run (killed after a few blocks) resumed with ``--resume``.
``dask``
    The same Falkon fit (n = 2e4) on a ``distributed.LocalCluster`` of two
    single-threaded worker processes against the in-process fit: seconds and
    the largest prediction difference.

Peak memory is the process's maximum resident set (``ru_maxrss``) of a child
process running one measurement, so measurements do not inherit each other's.

Usage::

    python scripts/bench_scale.py                        # everything (~15 minutes)
    python scripts/bench_scale.py --only exact dask --n 5000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _blas_info import print_blas_info

CHILD = """
import json, resource, time, numpy as np, kernelcomp as kc
rng = np.random.default_rng(0)
def data(n, d, dtype):
    # a target the kernel can learn: a function in the span of 200 NTK features
    # (a "teacher" kernel machine), plus noise of variance 0.01
    X = rng.standard_normal((n, d)).astype(dtype)
    Z = rng.standard_normal((200, d))
    y = kc.NTK(depth=2)(X.astype(np.float64), Z) @ rng.standard_normal(200) / 200
    y = (y - y.mean()) / y.std()
    return X, (y + 0.1 * rng.standard_normal(n)).astype(dtype)
"""


def run_child(body: str, timeout: float = 3600) -> dict:
    """Run ``body`` in a fresh interpreter; it prints one JSON line."""
    code = CHILD + textwrap.dedent(body) + (
        "\nout['peak_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20"
        "\nprint(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_body(n: int, d: int, solver: str, m: int, dtype: str, extra: str = "") -> str:
    return f"""
        X, y = data({n} + 2000, {d}, np.{dtype})
        Xt, yt, X, y = X[:2000], y[:2000], X[2000:], y[2000:]
        k = kc.NTK(depth=2)
        t = time.perf_counter()
        reg = kc.NTKRegressor(k, alpha=1e-3 * {n}, solver={solver!r}, n_centers={m},
                              random_state=0, max_iter=30{extra}).fit(X, y)
        fit_s = time.perf_counter() - t
        mse = float(np.mean((reg.predict(Xt) - yt) ** 2))
        out = {{"fit_s": fit_s, "mse": mse, "n_iter": getattr(reg, "n_iter_", None)}}
    """


def bench_exact(args: argparse.Namespace) -> None:
    n, d = args.n, 784
    print(f"\n== exact (blocked Cholesky) vs falkon, n = {n}, d = {d}, NTK(depth=2), float64 ==")
    ex = run_child(fit_body(n, d, "cholesky", n, "float64"))
    print(f"cholesky          fit {ex['fit_s']:7.1f} s  peak {ex['peak_gib']:5.2f} GiB  "
          f"test MSE {ex['mse']:.5f}")  # fmt: skip
    for m in args.centers:
        fa = run_child(fit_body(n, d, "falkon", m, "float64"))
        print(f"falkon m={m:<6d}   fit {fa['fit_s']:7.1f} s  peak {fa['peak_gib']:5.2f} GiB  "
              f"test MSE {fa['mse']:.5f}  MSE ratio {fa['mse'] / ex['mse']:.3f}  "
              f"CG iterations {fa['n_iter']}")  # fmt: skip


def bench_falkon(args: argparse.Namespace) -> None:
    n, m, d = args.big_n, args.big_m, 784
    print(f"\n== falkon alone, n = {n}, m = {m}, d = {d}, float32 ==")
    fa = run_child(fit_body(n, d, "falkon", m, "float32"))
    print(f"falkon            fit {fa['fit_s']:7.1f} s  peak {fa['peak_gib']:5.2f} GiB  "
          f"test MSE {fa['mse']:.5f}  CG iterations {fa['n_iter']}")  # fmt: skip


def bench_gramfile(args: argparse.Namespace) -> None:
    n, d = args.file_n, 784
    folder = Path(tempfile.mkdtemp(dir=args.tmp))
    try:
        X = folder / "X.npy"
        run_child(f"""
            np.save({str(X)!r}, rng.standard_normal(({n}, {d})).astype(np.float32))
            out = {{}}
        """)
        cli = [sys.executable, "-m", "kernelcomp", "gram", str(X), "--kernel", "ntk",
               "--depth", "3", "--dtype", "float32", "-o", str(folder / "K.h5"), "--quiet"]
        print(f"\n== kernelcomp gram, n = {n}, d = {d}, float32, depth 3, into HDF5 ==")
        t = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cli], capture_output=True,
                              text=True)  # fmt: skip
        wall = time.perf_counter() - t
        peak = int(proc.stderr.strip().splitlines()[-1]) / 2**20
        size = (folder / "K.h5").stat().st_size / 2**30
        print(f"complete run      {wall:7.1f} s  peak {peak:5.2f} GiB  file {size:5.1f} GiB  "
              f"({n * n / wall:.2e} entries/s)")  # fmt: skip
        (folder / "K.h5").unlink()
        child = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.interrupt_after)
        child.send_signal(signal.SIGINT)
        child.wait()
        t = time.perf_counter()
        res = subprocess.run([*cli, "--resume"], capture_output=True, text=True)
        print(f"interrupted after {args.interrupt_after:.0f} s (exit {child.returncode}), "
              f"resumed in {time.perf_counter() - t:.1f} s (exit {res.returncode})")
        check = run_child(f"""
            import h5py
            with h5py.File({str(folder / 'K.h5')!r}, "r") as f:
                D = f["gram"]
                Xs = np.load({str(X)!r}, mmap_mode="r")
                idx = np.sort(rng.choice({n}, 20, replace=False))
                ref = kc.NTK(depth=3)(np.asarray(Xs[idx]), np.asarray(Xs), dtype="float32")
                got = np.stack([D[i] for i in idx])
                out = {{"max_rel": float(np.abs(got - ref).max() / np.abs(ref).max())}}
        """)
        print(f"resumed file vs direct rows: max relative difference {check['max_rel']:.1e}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_dask(args: argparse.Namespace) -> None:
    n, d, m = args.n, 784, args.centers[0]
    print(f"\n== falkon on a LocalCluster (2 workers x 1 thread) vs in-process, n = {n} ==")
    res = run_child(f"""
        import dask.array as da, distributed
        X, y = data({n} + 2000, {d}, np.float64)
        Xt, X, y = X[:2000], X[2000:], y[2000:]
        kw = dict(alpha=1e-3 * {n}, solver="falkon", n_centers={m}, random_state=0,
                  max_iter=30)
        t = time.perf_counter()
        local = kc.NTKRegressor(kc.NTK(depth=2), **kw).fit(X, y)
        t_local = time.perf_counter() - t
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           dashboard_address=None, silence_logs=40)
        with distributed.Client(cluster):
            Xd = da.from_array(X, chunks=(2000, {d}))
            yd = da.from_array(y, chunks=2000)
            t = time.perf_counter()
            dist = kc.NTKRegressor(kc.NTK(depth=2), **kw).fit(Xd, yd)
            t_dist = time.perf_counter() - t
        cluster.close()
        diff = float(np.abs(dist.predict(Xt) - local.predict(Xt)).max())
        out = {{"local_s": t_local, "dask_s": t_dist, "diff": diff}}
    """)
    print(f"in-process {res['local_s']:6.1f} s   LocalCluster {res['dask_s']:6.1f} s   "
          f"max prediction difference {res['diff']:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=["exact", "falkon", "gramfile", "dask"],
                    default=["exact", "falkon", "gramfile", "dask"])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--centers", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--big-n", type=int, default=200_000)
    ap.add_argument("--big-m", type=int, default=10_000)
    ap.add_argument("--file-n", type=int, default=60_000)
    ap.add_argument("--interrupt-after", type=float, default=20.0)
    ap.add_argument("--tmp", default=os.environ.get("TMPDIR", "/tmp"))
    args = ap.parse_args()
    print_blas_info()
    for name in args.only:
        {"exact": bench_exact, "falkon": bench_falkon, "gramfile": bench_gramfile,
         "dask": bench_dask}[name](args)  # fmt: skip


if __name__ == "__main__":
    main()
