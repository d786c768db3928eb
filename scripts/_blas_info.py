"""Which BLAS a benchmark ran on: one line per library, printed by every ``bench_*.py``.

OpenBLAS picks its kernels from the CPU unless ``OPENBLAS_CORETYPE`` names
them (some machines set it, with ``OPENBLAS_L2_SIZE``); the same figures can
differ several-fold between the two, so every benchmark prints which builds,
versions, kernels ("core type") and thread counts ran, and whether the
variables were set. To measure what users without the variables get, run the
script with them removed in that command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_gram.py
"""

from __future__ import annotations

import os

_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_info() -> list[dict[str, object]]:
    """threadpoolctl's description of each BLAS loaded in this process (numpy's, scipy's...)."""
    import numpy  # noqa: F401 - load the BLAS libraries before asking
    import scipy.linalg  # noqa: F401

    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return []
    return [p for p in threadpool_info() if p.get("user_api") == "blas"]


def setting() -> str:
    """``OPENBLAS_CORETYPE=... OPENBLAS_L2_SIZE=...`` as set here, or "unset"."""
    found = [f"{v}={os.environ[v]}" for v in _VARIABLES if v in os.environ]
    return " ".join(found) if found else "OPENBLAS_CORETYPE unset (OpenBLAS's own kernel choice)"


def blas_lines() -> list[str]:
    """One line per BLAS library (file, version, internal API, core type, threads)."""
    from kernelcomp import _linalg

    lines = [f"BLAS setting: {setting()}; kernelcomp's products run in "
             f"{_linalg.products_library()}'s build"]  # fmt: skip
    for p in blas_info():
        lines.append(
            f"  {os.path.basename(str(p.get('filepath')))}: {p.get('internal_api')} "
            f"{p.get('version')}, core type {p.get('architecture')}, "
            f"{p.get('num_threads')} threads ({p.get('threading_layer')})"
        )
    return lines


def print_blas_info() -> None:
    """Print :func:`blas_lines` and the load average (benchmarks share machines)."""
    for line in blas_lines():
        print(line)
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
