"""Benchmark of the empirical NTK (``kc.EmpiricalNTK``) against references in the same process.

For each configuration this prints the seconds (best of ``--repeat``), the peak
memory of NumPy allocations (tracemalloc; BLAS-internal buffers are not
counted) and the ratios against

* ``two-GEMM``: the plain NumPy closed form of a one-hidden-layer net,
  ``Phi Phi^T + (Psi Psi^T) o (c^2 X X^T + s^2)`` (docs/definitions.rst), or for deeper
  nets the same layer-by-layer formula written with plain ``@`` products;
* ``jacobian``: the explicit n x P Jacobian ``J J^T`` (only where J fits in
  ``--jacobian-budget`` GB).

The first call of each configuration (compilation / warm-up) is reported
separately from the steady state. Ratios > 1 mean kernelcomp is faster.

Usage::

    python scripts/bench_empirical.py            # the issue's sizes
    python scripts/bench_empirical.py --quick    # small sizes, for development
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import kernelcomp as kc
from kernelcomp.network import activate, activate_grad


def two_gemm(net: kc.FCNetwork, X: np.ndarray) -> np.ndarray:
    """Plain NumPy layer-by-layer formula (one output), ``@`` products, full matrices."""
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
    theta = Phi @ Phi.T
    if net.biases[L] is not None:
        theta += net.bias_mult[L] ** 2
    delta = net.weight_mult[L] * ders[L - 1] * net.weights[L][0].astype(dt)
    for l in range(L - 1, -1, -1):
        G = net.weight_mult[l] ** 2 * (inputs[l] @ inputs[l].T)
        if net.biases[l] is not None:
            G += net.bias_mult[l] ** 2
        theta += (delta @ delta.T) * G
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


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float, Any]:
    """(first-call seconds, best steady seconds, peak MB of the first call, result)."""
    gc.collect()
    tracemalloc.start()
    t = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    best = first
    for _ in range(repeat - 1):
        del result
        gc.collect()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return first, best, peak, result


def run(configs: list[tuple[int, list[int], int]], repeat: int, budget_gb: float) -> None:
    header = (
        f"{'config':<28} {'dtype':<8} {'kc s':>8} {'first s':>8} {'kc MB':>8} "
        f"{'2gemm s':>8} {'2gemm MB':>9} {'x 2gemm':>8} {'jac s':>8} {'x jac':>7} "
        f"{'rel.err':>9}"
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
            first, t_kc, mem_kc, K = measure(lambda X=X, k=k: k(X), repeat)
            _, t_ref, mem_ref, R = measure(lambda X=X, net=net: two_gemm(net, X), repeat)
            if dt == np.float64:
                ref64 = R.astype(np.float64)
            del R
            err = np.linalg.norm(K - ref64) / np.linalg.norm(ref64)
            del K
            P = net.n_params
            jac = ""
            if n * P * np.dtype(dt).itemsize / 1e9 <= budget_gb:
                _, t_jac, _, J = measure(lambda X=X, net=net: jacobian_ntk(net, X), 1)
                del J
                jac = f"{t_jac:8.2f} {t_jac / t_kc:7.1f}"
            else:
                jac = f"{'n/a':>8} {'-':>7}"
            name = f"d={d} h={widths} n={n}"
            print(
                f"{name:<28} {np.dtype(dt).name:<8} {t_kc:8.3f} {first:8.3f} {mem_kc:8.0f} "
                f"{t_ref:8.3f} {mem_ref:9.0f} {t_ref / t_kc:8.2f} {jac} {err:9.1e}",
                flush=True,
            )
            gc.collect()
    print(
        "\nx 2gemm / x jac: reference seconds / kernelcomp seconds (same process, best of "
        f"{repeat}); MB: peak NumPy allocations of one call (n^2 float64 = "
        "n*n*8/2**20 MB); rel.err: Frobenius error against the float64 two-GEMM result."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (development)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measurement")
    parser.add_argument(
        "--jacobian-budget", type=float, default=2.0, help="max GB for the explicit Jacobian"
    )
    args = parser.parse_args(argv)
    if args.quick:
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
