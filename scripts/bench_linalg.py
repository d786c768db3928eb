"""Benchmark of kernelcomp's blocked dense linear algebra against one LAPACK/BLAS call.

kernelcomp never hands OpenBLAS's ``syrk`` or ``potrf`` an operand larger than
``kernelcomp._linalg.SAFE_BLOCK`` (they crash the process beyond ~16000 rows on
some CPUs): symmetric products go by row blocks (``syrk`` on the diagonal
blocks, GEMM right of them) and the Cholesky is blocked (``potrf``/``trsm``
and ``syrk``/GEMM updates). This script times, in one process and on the same
inputs,

* ``syrk_upper(C, A)`` against one ``scipy.linalg.blas.dsyrk`` writing into
  the same C-ordered output (``A`` of shape (n, d)),
* ``cholesky_inplace(K.T)`` against ``scipy.linalg.cho_factor(K.T, lower=True,
  overwrite_a=True)``, the call kernelcomp made before,
* end to end: ``kc.NTK(depth=2)(X)`` with d = 784 (the BLAS dot-product path)
  and ``kc.NTKRegressor(kc.NTK(depth=2)).fit`` with d = 10,

and prints the times, the blocked/reference ratios and the largest difference.
The references run only where they are safe on this machine: with
``--reference-max-n`` (default 12000) larger sizes are timed without them
(run with ``OPENBLAS_CORETYPE`` set, e.g. ``Haswell``, where the references
survive, to compare them at 20000).

Usage::

    python scripts/bench_linalg.py                          # n = 10000, 20000
    OPENBLAS_CORETYPE=Haswell python scripts/bench_linalg.py --reference-max-n 20000
    python scripts/bench_linalg.py --sizes 4000 --repeat 1  # quick
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg
from _blas_info import print_blas_info
from scipy.linalg import blas

import kernelcomp as kc
from kernelcomp import _linalg


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def spd(n: int, rng: np.random.Generator) -> np.ndarray:
    """A well-conditioned SPD matrix (an NTK Gram plus a ridge), C-ordered."""
    X = rng.standard_normal((n, 10))
    K = kc.NTK(depth=1)(X)
    K.flat[:: n + 1] += 1e-2
    return K


def bench_syrk(n: int, d: int, repeat: int, ref: bool, rng: np.random.Generator) -> None:
    A = rng.standard_normal((n, d))
    C = np.empty((n, n))
    t_blocked = best_of(lambda: _linalg.syrk_upper(C, A), repeat)
    line = f"syrk      n={n:6d} d={d:4d}  blocked {t_blocked:7.2f} s"
    if ref:
        C2 = np.empty((n, n))
        t_ref = best_of(lambda: blas.dsyrk(1.0, A.T, trans=1, lower=1, c=C2.T, overwrite_c=1),
                        repeat)  # fmt: skip
        iu = np.triu_indices(min(n, 2000))
        diff = float(np.abs(C[iu] - C2[iu]).max())
        line += f"  one dsyrk {t_ref:7.2f} s  ratio {t_blocked / t_ref:5.2f}  max diff {diff:.1e}"
    print(line, flush=True)


def bench_cholesky(n: int, repeat: int, ref: bool, rng: np.random.Generator) -> None:
    K0 = spd(n, rng)
    K = np.empty_like(K0)

    def blocked() -> None:
        K[...] = K0
        _linalg.cholesky_inplace(K.T)

    t_blocked = best_of(blocked, repeat) - best_of(lambda: K.__setitem__(Ellipsis, K0), 1)
    line = f"cholesky  n={n:6d}         blocked {t_blocked:7.2f} s"
    if ref:
        K2 = np.empty_like(K0)

        def lapack() -> None:
            K2[...] = K0
            scipy.linalg.cho_factor(K2.T, lower=True, overwrite_a=True, check_finite=False)

        t_ref = best_of(lapack, repeat) - best_of(lambda: K2.__setitem__(Ellipsis, K0), 1)
        m = min(n, 2000)
        diff = float(np.abs(np.triu(K[:m, :m]) - np.triu(K2[:m, :m])).max())
        line += f"  one dpotrf {t_ref:7.2f} s  ratio {t_blocked / t_ref:5.2f}  max diff {diff:.1e}"
    print(line, flush=True)


def bench_end_to_end(n: int, repeat: int, rng: np.random.Generator) -> None:
    X = rng.standard_normal((n, 784))
    k = kc.NTK(depth=2)
    t_gram = best_of(lambda: k(X), repeat)
    Xs = X[:, :10].copy()
    y = np.sign(Xs[:, 0])
    t_fit = best_of(lambda: kc.NTKRegressor(k, alpha=1e-3).fit(Xs, y), repeat)
    print(f"end2end   n={n:6d}  NTK(depth=2) Gram d=784 {t_gram:6.2f} s   "
          f"NTKRegressor.fit d=10 {t_fit:6.2f} s", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--dims", type=int, nargs="+", default=[300, 784])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--reference-max-n", type=int, default=12000,
                        help="largest n at which the single LAPACK/BLAS call is timed")  # fmt: skip
    args = parser.parse_args()
    print_blas_info()
    rng = np.random.default_rng(0)
    spd(100, rng)  # compile
    print(f"SAFE_BLOCK = {_linalg.SAFE_BLOCK}; best of {args.repeat}")
    for n in args.sizes:
        ref = n <= args.reference_max_n
        for d in args.dims:
            bench_syrk(n, d, args.repeat, ref, rng)
        bench_cholesky(n, args.repeat, ref, rng)
        bench_end_to_end(n, 1, rng)


if __name__ == "__main__":
    main()
