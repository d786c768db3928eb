"""Benchmark of kernelcomp.training: one gradient-flow step and whole runs.

Figures and ratios against reference runs in the same process:

1. one tentative step (forward pass + gradient + the step control's reference
   gradient) of the paper's one-hidden-layer net: the fused compiled passes
   (``method="fused"``) against ``FCNetwork.forward``/``gradients`` (BLAS,
   ``method="numpy"``), with the fused forward pass and pair pass timed
   separately, and a check that the parallel and serial compiled passes agree
   bit for bit at this size;
2. whole training runs (``kc.training.train``, feature and lazy regime) at
   h = 10^4, p = 10^3: the default "sliding" integrator to convergence against
   the paper's literal explicit step (``integrator="euler"``) under a wall-clock
   cap of twice that time (at least 60 s): steps, wall time, final status,
   unsatisfied margins, test error and compression; then steps per second of the
   fused and the NumPy/BLAS passes.

Usage::

    python scripts/bench_training.py            # h = 10000, p = 1000, d = 5
    python scripts/bench_training.py --small    # h = 1000, p = 200 (development)
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
from _blas_info import print_blas_info

import kernelcomp as kc
from kernelcomp import training
from kernelcomp._parallel import max_threads
from kernelcomp.training import _network_hooks as hooks


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_step(d: int, h: int, p: int, repeat: int) -> None:
    X, y = kc.datasets.stripe(p, d, seed=0)
    net = kc.FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field",
                            seed=0)
    out0 = net(X)
    prm = hooks._params_of(net)
    old = [q * (1 + 1e-3) for q in prm]
    u = y / p
    print(f"one step (forward + gradient + reference gradient), d={d} h={h} p={p}")
    res = {}
    for name, make in (("fused", hooks._fused_problem), ("numpy", hooks._network_problem)):
        prob = make(net, X, out0)
        t0 = time.perf_counter()
        prob.forward(prm)
        prob.pair(prm, u, old, u)
        first = time.perf_counter() - t0
        res[name] = _best(lambda prob=prob: (prob.forward(prm), prob.pair(prm, u, old, u)),
                          repeat)
        print(f"  {name:6s} first call {first * 1e3:8.1f} ms   steady {res[name] * 1e3:8.2f} ms")
    print(f"  ratio numpy / fused: {res['numpy'] / res['fused']:.2f}x")
    fused = hooks._fused_problem(net, X, out0)
    t_fwd = _best(lambda: fused.forward(prm), repeat)
    t_pair = _best(lambda: fused.pair(prm, u, old, u), repeat)
    pairs = p * h
    print(f"  fused forward {t_fwd * 1e3:7.2f} ms ({t_fwd / pairs * 1e9:.2f} ns/pair), "
          f"gradient + reference {t_pair * 1e3:7.2f} ms ({t_pair / pairs * 1e9:.2f} ns/pair)")
    _check_threads(X, prm, old, u, net)


def _check_threads(X, prm, old, u, net) -> None:
    """The parallel and the serial compiled passes give the same bits."""
    from kernelcomp._kernels import training as core

    W, beta, b = prm[0], prm[1][0], prm[2]
    c1, c2, s1 = float(net.weight_mult[0]), float(net.weight_mult[1]), float(net.bias_mult[0])
    act = core.CODES[net.activation]
    p, (h, d) = X.shape[0], W.shape
    got = []
    for fwd, pair in ((core.forward, core.backward_pair),
                      (core.forward_serial, core.backward_pair_serial)):
        out = np.empty(p)
        fwd(X, W, b, beta, c1, s1, c2, 0.0, act, out)
        g = [np.empty((h, d)), np.empty(h), np.empty(h), np.empty((h, d)), np.empty(h),
             np.empty(h)]
        pair(X, W, b, beta, old[0], old[2], c1, s1, c2, act, u, u, *g)
        got.append([out, *g])
    same = all(np.array_equal(a.view(np.int64), c.view(np.int64))
               for a, c in zip(*got, strict=True))
    print(f"  parallel ({max_threads()} threads) and serial passes bit-identical: {same}")
    if not same:
        raise SystemExit("parallel and serial compiled passes differ")


def bench_runs(d: int, h: int, p: int, wall: float) -> None:
    X, y = kc.datasets.stripe(p, d, seed=0)
    Xt, yt = kc.datasets.stripe(10_000, d, seed=0, split="test")
    net = kc.FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field",
                            seed=0)
    print(f"\nwhole runs, d={d} h={h} p={p} (hinge loss, stop when every margin >= 1)")

    def run(label: str, **kw) -> Any:
        res = training.train(net, X, y, checkpoints=2, **kw)
        lam = kc.diagnostics.compression(res.net, informative=[0])
        print(f"  {label:24s} {res.status:9s} steps={res.final.step:7d} "
              f"rejected={int(res.history['rejected'].sum()):6d} wall={res.wall_time:6.1f} s "
              f"({res.final.step / res.wall_time:6.1f} steps/s) unsat={res.final.n_unsat:4d}/{p} "
              f"test_error={res.test_error(Xt, yt):.4f} lambda={lam:6.2f}")
        return res

    for regime, a_sqrt_h in (("feature", 0.05), ("lazy", 1000.0)):
        alpha = a_sqrt_h / math.sqrt(h)
        slide = run(f"{regime} sliding", alpha=alpha, max_wall=wall)
        cap = max(60.0, 2.0 * slide.wall_time)
        euler = run(
            f"{regime} euler (the paper's step)", alpha=alpha, integrator="euler", max_wall=cap
        )
        if euler.status == "converged" and slide.status == "converged":
            print(f"  {regime}: euler / sliding wall time to convergence = "
                  f"{euler.wall_time / slide.wall_time:.1f}x, steps "
                  f"{euler.final.step / slide.final.step:.1f}x")
        elif slide.status == "converged":
            print(f"  {regime}: sliding converged in {slide.wall_time:.1f} s; euler had not after "
                  f"{euler.wall_time:.0f} s ({euler.final.n_unsat} margins < 1 left)")
    print("\nsteps per second, fused vs NumPy/BLAS passes (feature, sliding, 30 s cap)")
    rates = {}
    for method in ("fused", "numpy"):
        res = run(f"feature {method}", alpha=0.05 / math.sqrt(h), method=method, max_wall=30.0)
        rates[method] = res.final.step / res.wall_time
    print(f"  fused / numpy steps per second = {rates['fused'] / rates['numpy']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="h = 1000, p = 200")
    ap.add_argument("--wall", type=float, default=None,
                    help="wall-clock cap of a sliding run, seconds")
    args = ap.parse_args()
    print_blas_info()
    d = 5
    h, p = (1000, 200) if args.small else (10_000, 1000)
    wall = args.wall if args.wall is not None else (60.0 if args.small else 300.0)
    print(f"numba threads: {max_threads()}")
    bench_step(d, h, p, repeat=5)
    bench_runs(d, h, p, wall)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
