"""Benchmark of the empirical NTK (``kc.EmpiricalNTK``) against references in the same process.

For each configuration this prints wall and CPU seconds (best of ``--repeat``,
the candidates interleaved: one call of each per round), the peak memory of
NumPy allocations (tracemalloc; BLAS-internal buffers are not counted) and the
ratios against

* ``two-GEMM``: the plain NumPy closed form of a one-hidden-layer net,
  ``Phi Phi^T + (Psi Psi^T) o (c^2 X X^T + s^2)`` (docs/definitions.rst), or for deeper
  nets the same layer-by-layer formula written with plain ``@`` products. NumPy hands
  ``A @ A.T`` (one buffer, transposed) to BLAS ``syrk``: this reference already
  does half the flops of two GEMMs;
* ``full GEMM``: the same formula with each product ``A @ B.T`` on a copy
  ``B`` of ``A``, i.e. the flops of two general GEMMs (what "half the flops"
  is measured against);
* ``syrk floor``: kernelcomp's own two big products alone, ``syrk`` on the
  upper triangle of ``Psi Psi^T`` and ``Phi Phi^T`` (one-hidden-layer nets),
  on the prepared factors: the BLAS time no exact float64 route can avoid;
* ``jacobian``: the explicit n x P Jacobian ``J J^T`` (only where J fits in
  ``--jacobian-budget`` GB);
* ``kc scipy BLAS``: kernelcomp with its products in scipy's OpenBLAS build
  instead of numpy's (the route before issue 29; numpy's and scipy's wheels
  bundle different OpenBLAS versions), interleaved in the same rounds.

The first call of each configuration (compilation / warm-up) is reported
separately from the steady state. Ratios > 1 mean kernelcomp is faster. The
machine may be shared: compare the ratios (measured in one process, interleaved),
not the seconds across runs.

Usage::

    python scripts/bench_empirical.py            # the issue's sizes
    python scripts/bench_empirical.py --quick    # small sizes, for development
    python scripts/bench_empirical.py --n 2000 --widths 20000 --repeat 5   # one configuration
"""

from __future__ import annotations

import argparse
import gc
import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from _blas_info import print_blas_info

import kernelcomp as kc
from kernelcomp import _linalg
from kernelcomp._linalg import syrk_upper
from kernelcomp.network import activate, activate_grad


def _gram(A: np.ndarray, full: bool) -> np.ndarray:
    """``A @ A.T``: NumPy's syrk route, or (``full``) a general GEMM on a copy."""
    return A @ (A.copy() if full else A).T


def two_gemm(net: kc.FCNetwork, X: np.ndarray, full: bool = False) -> np.ndarray:
    """Plain NumPy layer-by-layer formula (one output), ``@`` products, full matrices.

    With ``full``, every ``A @ A.T`` is a general GEMM (``A @ B.T``, ``B`` a copy).
    """
    dt = X.dtype
    a = X.astype(np.float64)
    inputs, ders = [], []
    for l in range(net.depth + 1):
        inputs.append(a.astype(dt))
        if l == net.depth:
            break
        z = net.weight_mult[l] * (a @ net.weights[l].T)
        if net.biases[l] is not None:
            z += net.bias_mult[l] * net.biases[l]
        ders.append(activate_grad(net.activation, z).astype(dt))
        a = activate(net.activation, z)
    L = net.depth
    Phi = net.weight_mult[L] * inputs[L]
    theta = _gram(Phi, full)
    if net.biases[L] is not None:
        theta += net.bias_mult[L] ** 2
    delta = net.weight_mult[L] * ders[L - 1] * net.weights[L][0].astype(dt)
    for l in range(L - 1, -1, -1):
        G = net.weight_mult[l] ** 2 * _gram(inputs[l], full)
        if net.biases[l] is not None:
            G += net.bias_mult[l] ** 2
        theta += _gram(delta, full) * G
        if l > 0:
            delta = net.weight_mult[l] * (delta @ net.weights[l].astype(dt)) * ders[l - 1]
    return theta


def jacobian_ntk(net: kc.FCNetwork, X: np.ndarray) -> np.ndarray:
    """Explicit Jacobian J (n x P, one output) by vectorised backprop, then J J^T."""
    n = X.shape[0]
    _, cache = net.forward(X, cache=True)
    blocks = []
    delta = np.ones((n, 1))
    for l in range(net.depth, -1, -1):
        a = cache.inputs[l]
        blocks.append((net.weight_mult[l] * delta[:, :, None] * a[:, None, :]).reshape(n, -1))
        if net.biases[l] is not None:
            blocks.append(net.bias_mult[l] * delta)
        if l > 0:
            delta = net.weight_mult[l] * (delta @ net.weights[l])
            delta *= activate_grad(net.activation, cache.preactivations[l - 1])
    J = np.concatenate(blocks, axis=1).astype(X.dtype)
    del blocks
    return J @ J.T


def syrk_floor(k: kc.EmpiricalNTK, X: np.ndarray) -> Callable[[], Any] | None:
    """kernelcomp's big symmetric products alone (one-hidden-layer nets), on prepared factors."""
    if k.net.depth != 1:
        return None
    prep = k._prepare(X)
    n = X.shape[0]
    big = [d if d is not None else f for d, f in prep.terms]
    C = np.empty((n, n), dtype=X.dtype)

    def run() -> np.ndarray:
        for i, A in enumerate(big):
            syrk_upper(C, A, beta=float(i > 0))
        return C

    return run


def with_scipy_blas(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with kernelcomp's products in scipy's OpenBLAS build (numpy's by default)."""

    def run() -> Any:
        saved = _linalg._products
        _linalg._products = _linalg._scipy_products
        try:
            return fn()
        finally:
            _linalg._products = saved

    return run


def peak_mb(fn: Callable[[], Any]) -> float:
    """Peak MB of NumPy allocations during one call."""
    gc.collect()
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del result
    return peak


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of each callable over ``repeat`` rounds of one call each."""
    best = {name: (math.inf, math.inf) for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            result = fn()
            w, c = time.perf_counter() - w, time.process_time() - c
            del result
            bw, bc = best[name]
            best[name] = (min(bw, w), min(bc, c))
    return best


def run(configs: list[tuple[int, list[int], int]], repeat: int, budget_gb: float) -> None:
    header = (
        f"{'config':<28} {'dtype':<8} {'kc s':>7} {'kc cpu':>7} {'first s':>7} {'kc MB':>6} "
        f"{'2gemm s':>7} {'MB':>6} {'x2gemm':>6} {'cpu':>5} {'full s':>7} {'xfull':>6} "
        f"{'floor s':>7} {'xfloor':>6} {'jac s':>7} {'x jac':>6} {'rel.err':>8}"
    )
    print(header)
    print("-" * len(header))
    for d, widths, n in configs:
        net = kc.FCNetwork.init(
            d, widths, activation="relu", parameterization="ntk", bias_std=0.5, seed=0
        )
        X64 = np.random.default_rng(1).standard_normal((n, d))
        k = kc.EmpiricalNTK(net)
        ref64 = None
        for dt in (np.float64, np.float32):
            X = X64.astype(dt)
            t = time.perf_counter()
            K = k(X)
            first = time.perf_counter() - t
            R = two_gemm(net, X)
            if dt == np.float64:
                ref64 = R.astype(np.float64)
            err = np.linalg.norm(K - ref64) / np.linalg.norm(ref64)
            del K, R
            fns: dict[str, Callable[[], Any]] = {
                "kc": lambda X=X, k=k: k(X),
                "two_gemm": lambda X=X, net=net: two_gemm(net, X),
                "full": lambda X=X, net=net: two_gemm(net, X, full=True),
            }
            floor = syrk_floor(k, X)
            if floor is not None:
                fns["floor"] = floor
            if _linalg.products_library() != "scipy":
                fns["kc_scipy"] = with_scipy_blas(fns["kc"])
            best = interleaved(fns, repeat)
            mem_kc = peak_mb(fns["kc"])
            mem_ref = peak_mb(fns["two_gemm"])
            t_kc, c_kc = best["kc"]
            t_ref, t_full = best["two_gemm"][0], best["full"][0]
            fl = (
                f"{best['floor'][0]:7.3f} {best['floor'][0] / t_kc:6.2f}"
                if floor is not None
                else f"{'-':>7} {'-':>6}"
            )
            P = net.n_params
            if n * P * np.dtype(dt).itemsize / 1e9 <= budget_gb:
                t_jac = interleaved({"jac": lambda X=X, net=net: jacobian_ntk(net, X)}, 1)["jac"][0]
                jac = f"{t_jac:7.2f} {t_jac / t_kc:6.1f}"
            else:
                jac = f"{'n/a':>7} {'-':>6}"
            name = f"d={d} h={widths} n={n}"
            print(
                f"{name:<28} {np.dtype(dt).name:<8} {t_kc:7.3f} {c_kc:7.3f} {first:7.3f} "
                f"{mem_kc:6.0f} {t_ref:7.3f} {mem_ref:6.0f} {t_ref / t_kc:6.2f} "
                f"{best['two_gemm'][1] / c_kc:5.2f} {t_full:7.3f} "
                f"{t_full / t_kc:6.2f} {fl} {jac} {err:8.1e}",
                flush=True,
            )
            if "kc_scipy" in best:
                t_sp, c_sp = best["kc_scipy"]
                print(f"{'':<28} {'':<8} kc with scipy's BLAS: {t_sp:.3f} s wall, {c_sp:.3f} s "
                      f"cpu; x2gemm {t_ref / t_sp:.2f} (cpu {best['two_gemm'][1] / c_sp:.2f})",
                      flush=True)  # fmt: skip
            gc.collect()
    print(
        "\nseconds: wall, best of "
        f"{repeat} interleaved rounds (kc cpu: CPU seconds of all threads); x2gemm (cpu: the "
        "same ratio of CPU seconds) / xfull / "
        "x jac: reference wall seconds / kernelcomp wall seconds; xfloor: syrk floor / "
        "kernelcomp (1.0 = nothing left outside the two big products); MB: peak NumPy "
        "allocations of one call (n^2 float64 = n*n*8/2**20 MB); rel.err: Frobenius error "
        "against the float64 two-GEMM result."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (development)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measurement")
    parser.add_argument(
        "--jacobian-budget", type=float, default=2.0, help="max GB for the explicit Jacobian"
    )
    parser.add_argument("--n", type=int, help="one configuration: number of samples")
    parser.add_argument("--widths", type=int, nargs="+", help="its hidden widths")
    parser.add_argument("--d", type=int, default=10, help="its input dimension")
    args = parser.parse_args(argv)
    print_blas_info()
    if args.n is not None:
        configs = [(args.d, args.widths or [1000], args.n)]
    elif args.quick:
        configs = [(10, [1000], 500), (10, [2000], 1000), (10, [300, 300, 300], 500)]
    else:
        configs = [
            (10, [1000], 2000),
            (10, [1000], 5000),
            (10, [10000], 2000),
            (10, [10000], 5000),
            (10, [1000, 1000, 1000], 2000),
            (10, [1000, 1000, 1000], 5000),
        ]
    import numba

    print(f"kernelcomp {kc.__version__}, numpy {np.__version__}, threads {numba.get_num_threads()}")
    run(configs, args.repeat, args.jacobian_budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
