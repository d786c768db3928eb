"""Benchmark of the two routes of ``TorchNTK`` (kernelcomp/_torch_ntk.py) on a small CNN.

The model: ``Conv2d(1, 16, 3, padding=1) - ReLU - MaxPool2d(2) - Conv2d(16, 32, 3,
padding=1) - ReLU - MaxPool2d(2) - Flatten - Linear(32 * 7 * 7, 10)`` on 28 x 28
one-channel inputs (P = 20,490 parameters, K = 10 outputs), n samples (default 256).

For each dtype and output selection (the mean over the 10 outputs, and one output)
this prints the wall-clock and process CPU seconds (best of ``--repeat``) of the
symmetric n x n Gram (on shared cores, CPU seconds with ``--threads 1`` are the
stable figure) by

* ``jacobian``: row blocks of ``vmap(jacrev)`` per-sample Jacobians, contracted
  per parameter tensor (the default route);
* ``jvp``: the implicit route of Novak et al. (2022): the Jacobian rows of one
  side used as tangents of ``jvp`` through the forward pass of the other side;
* ``full J``: the naive reference, the whole n x K x P Jacobian at once
  (``vmap(jacrev)`` over all n rows, concatenated) and one product (no memory
  bound);

and the largest difference of each route from ``full J`` relative to its largest
entry. The jvp route costs about one forward pass over the n samples per row and
output, so it is measured on ``--jvp-n`` samples (default 32) and extrapolated
quadratically to n (marked ``~``) unless ``--jvp-full`` is given. The
extrapolation is a lower bound: its tangent chunks shrink as n grows (float32,
one output, n = 256 measured 35 s against 7 s extrapolated, and 0.13 s for
``jacobian``).

Measured on 2 shared CPU cores, ``--threads 1`` (wall / CPU seconds)::

    dtype    output  full J       jacobian     jvp (n=32)   jvp (n=256)
    float32  mean    2.07 / 1.31  1.47 / 0.96  1.52 / 0.99  97~ / 63~
    float32  0       0.13 / 0.09  0.13 / 0.09  0.11 / 0.09  35 (measured)
    float64  mean    3.85 / 2.42  4.39 / 2.73  4.96 / 3.29  317~ / 210~
    float64  0       0.42 / 0.28  0.44 / 0.29  0.52 / 0.36  33~ / 23~

hence ``method="jacobian"`` is the default. Within the default 256 MiB budget it
runs about as fast as the unbounded ``full J`` (the mean over 10 outputs goes in
passes of 3 outputs (float32) or 1 (float64), all rows at once).

Usage::

    python scripts/bench_torch_ntk.py             # n = 256, the issue's sizes
    python scripts/bench_torch_ntk.py --quick     # n = 32, for development
    python scripts/bench_torch_ntk.py --threads 1 # n_jobs / torch threads (shared cores)
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _blas_info import print_blas_info


def small_cnn(torch: Any) -> Any:
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def full_jacobian_ntk(torch: Any, model: Any, X: np.ndarray, dtype: Any, output: Any) -> Any:
    """The naive reference: the whole n x K x P Jacobian at once, then one product."""
    from torch.func import functional_call, jacrev, vmap

    model = copy.deepcopy(model).to(dtype).eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    x = torch.from_numpy(X).to(dtype).reshape(X.shape[0], 1, 28, 28)

    def f(p: dict[str, Any], xi: Any) -> Any:
        y = functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)
        return y if output is None else y[output : output + 1]

    with torch.no_grad():
        jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
        n = X.shape[0]
        K = next(iter(jac.values())).shape[1]
        J = torch.cat([j.reshape(n, K, -1) for j in jac.values()], dim=2).reshape(n, -1)
        del jac
        return (J @ J.T / K).numpy()


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best wall-clock and best process CPU seconds of ``repeat`` calls, and the result."""
    wall, cpu, result = np.inf, np.inf, None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--jvp-n", type=int, default=32)
    parser.add_argument("--jvp-full", action="store_true", help="time jvp at n as well")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--methods", default="jacobian,jvp")
    args = parser.parse_args(argv)
    print_blas_info()
    import torch

    from kernelcomp._torch_ntk import TorchNTK

    if args.threads:
        # numba and torch share one OpenMP runtime: kernelcomp's n_jobs (numba's thread
        # count) sets torch's too, so both are pinned, and n_jobs is passed to the kernel
        import numba

        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    n = 32 if args.quick else args.n
    n_jvp = min(n, 16 if args.quick else args.jvp_n)
    model = small_cnn(torch)
    P = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CNN P={P} K=10, n={n}")
    X = np.random.default_rng(0).standard_normal((n, 28 * 28))
    header = (
        f"{'dtype':8} {'output':7} {'route':9} {'n':>5} {'wall s':>9} {'CPU s':>9} {'rel. err':>9}"
    )
    print(header)
    print("-" * len(header))
    for dt_name in args.dtypes.split(","):
        tdt = getattr(torch, dt_name)
        Xd = X.astype(dt_name)
        for output in (None, 0):
            t_ref, c_ref, ref = best_of(
                lambda o=output, x=Xd, d=tdt: full_jacobian_ntk(torch, model, x, d, o), args.repeat
            )
            scale = float(np.abs(ref).max())
            label = "mean" if output is None else str(output)
            print(f"{dt_name:8} {label:7} {'full J':9} {n:5d} {t_ref:9.2f} {c_ref:9.2f} {'-':>9}")
            for method in args.methods.split(","):
                k = TorchNTK(
                    model, output=output, input_shape=(1, 28, 28), dtype=dt_name, method=method
                )
                m = n if (method == "jacobian" or args.jvp_full) else n_jvp
                t, c, K = best_of(lambda k=k, x=Xd[:m]: k(x, n_jobs=args.threads), args.repeat)
                err = float(np.abs(K - ref[:m, :m]).max()) / scale
                print(f"{dt_name:8} {label:7} {method:9} {m:5d} {t:9.2f} {c:9.2f} {err:9.1e}")
                if m < n:
                    f = (n / m) ** 2  # n^2 K sample passes
                    print(f"{dt_name:8} {label:7} {method:9} {n:5d} {t * f:8.0f}~ {c * f:8.0f}~")


if __name__ == "__main__":
    main()
