"""Where do this machine's BLAS/LAPACK routines stop being safe? Each call in a subprocess.

Multithreaded OpenBLAS crashes (SIGSEGV) in some routines once the operand
is large; a crash kills the process, so each probe runs in a fresh
interpreter and its exit status is printed (-11: segmentation fault). This
is how ``kernelcomp._linalg.SAFE_BLOCK`` and the routines kernelcomp calls
on n x n operands were chosen.

Usage::

    python scripts/probe_blas_limits.py                       # the default table
    python scripts/probe_blas_limits.py dsyrk:19000:300 dpotrf:16000
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/probe_blas_limits.py

Each probe is ``ROUTINE:N[:K]`` (K: the inner dimension or the number of
right-hand sides / eigenpairs). Routines: ``dsyrk``/``ssyrk`` (scipy's build),
``matmul_aat``/``matmul_aat32`` (numpy's ``A @ A.T``, one ``syrk`` in numpy's
build), ``matmul_abt`` (numpy's ``A @ B.T``, a GEMM), ``dgemm``/``sgemm``,
``dsyr2k``, ``dtrsm``, ``dpotrf``, ``dpotrs``, ``eigh_subset`` (LAPACK ``evr``
for the top K), ``eigsh`` (ARPACK, top K), and kernelcomp's own ``kc_syrk``,
``kc_gemm``, ``kc_cholesky`` and ``kc_cross``/``kc_cross32`` (``kc.NTK(depth=1)(X, X)``,
the cross Gram of one array, issue 28). Each line also says whether
``OPENBLAS_CORETYPE`` was set for the child (it inherits this process's
environment).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

_SETUP = "import numpy as np, scipy.linalg as sl\nfrom scipy.linalg import blas, lapack\n" \
         "rng = np.random.default_rng(0)\n"  # fmt: skip
_SPD = "K = np.zeros(({n}, {n})); K.flat[::{n} + 1] = 2.0; K += 1.0 / {n}\n"
CASES = {
    "dsyrk": "A = rng.standard_normal(({n}, {k})); blas.dsyrk(1.0, A.T, trans=1, lower=1)",
    "matmul_aat": "A = rng.standard_normal(({n}, {k})); A @ A.T",
    "dgemm": "A = rng.standard_normal(({n}, {k})); blas.dgemm(1.0, A.T, (A + 1).T, trans_a=1)",
    "dsyr2k": "A = rng.standard_normal(({n}, {k})); blas.dsyr2k(1.0, A.T, (A + 1).T, trans=1)",
    "dtrsm": "L = np.asfortranarray(np.eye({n}) * 2); "
    "blas.dtrsm(1.0, L, np.ones(({n}, {k}), order='F'), lower=1)",
    "dpotrf": _SPD + "lapack.dpotrf(K, lower=1, overwrite_a=1)",
    "dpotrs": _SPD + "lapack.dpotrs(np.asfortranarray(K), np.ones(({n}, {k})), lower=1)",
    "eigh_subset": _SPD + "sl.eigh(K, subset_by_index=({n} - {k}, {n} - 1), driver='evr')",
    "eigsh": _SPD + "from scipy.sparse.linalg import eigsh; eigsh(K, k={k}, which='LA')",
    "ssyrk": "A = rng.standard_normal(({n}, {k}), dtype=np.float32); "
    "blas.ssyrk(1.0, A.T, trans=1, lower=1)",
    "matmul_aat32": "A = rng.standard_normal(({n}, {k}), dtype=np.float32); A @ A.T",
    "matmul_abt": "A = rng.standard_normal(({n}, {k})); A @ (A + 1).T",
    "sgemm": "A = rng.standard_normal(({n}, {k}), dtype=np.float32); "
    "blas.sgemm(1.0, A.T, (A + 1).T, trans_a=1)",
    "kc_gemm": "from kernelcomp._linalg import gemm_nt\n"
    "A = rng.standard_normal(({n}, {k})); gemm_nt(np.empty(({n}, {n})), A, A)",
    "kc_cross": "import kernelcomp as kc\n"
    "X = rng.standard_normal(({n}, {k})); kc.NTK(depth=1)(X, X)",
    "kc_cross32": "import kernelcomp as kc\n"
    "X = rng.standard_normal(({n}, {k}), dtype=np.float32); kc.NTK(depth=1)(X, X)",
    "kc_syrk": "from kernelcomp._linalg import syrk_upper\n"
    "A = rng.standard_normal(({n}, {k})); syrk_upper(np.empty(({n}, {n})), A)",
    "kc_cholesky": _SPD + "from kernelcomp._linalg import cholesky_inplace; cholesky_inplace(K.T)",
}
DEFAULT = [
    "dsyrk:16000:300", "dsyrk:19000:300", "matmul_aat:20000:300", "dgemm:20000:300",
    "dsyr2k:20000:32", "dtrsm:20000:4096", "dpotrf:12000", "dpotrf:16000", "dpotrs:20000:1",
    "eigsh:20000:10", "kc_syrk:20000:300", "kc_cholesky:20000",
]  # fmt: skip


def probe(spec: str) -> None:
    name, n, *rest = spec.split(":")
    k = int(rest[0]) if rest else 1
    code = _SETUP + CASES[name].format(n=int(n), k=k)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    status = "ok" if proc.returncode == 0 else f"CRASH (exit {proc.returncode})"
    tail = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
    core = os.environ.get("OPENBLAS_CORETYPE", "unset")
    print(f"{name:12s} n={int(n):6d} k={k:5d} CORETYPE={core:8s} {status:18s} "
          f"{time.perf_counter() - t:7.1f} s "
          + " ".join(tail), flush=True)  # fmt: skip


def main() -> None:
    for spec in sys.argv[1:] or DEFAULT:
        probe(spec)


if __name__ == "__main__":
    main()
