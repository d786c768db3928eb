"""Accuracy of kernelcomp's float32 recursion of convolutional kernels and of neural-tangents'.

Run in a peer environment that has both (``scripts/requirements-bench.txt``)::

    PYTHONPATH=$PWD /path/to/peer-venv/bin/python scripts/conv_float32_error.py [--n 8]

Networks (``--arch``): Myrtle-5 (global average pooling: the slab layout's float32
recursion) and a plain CNN without pooling (conv-relu x 3, flatten, dense: the spatial
diagonal's float32 recursion), weight_std = sqrt(2), bias_std = 0. Images: ``--n`` 28 x 28
stroke images (``make_nt_conv_fixtures``'s), then near-duplicates of the first one
(Gaussian noise of standard deviation 1e-2 ... 1e-6 added: correlations near 1 at many
positions, where a float32 recursion loses most) and a copy scaled by 1.5 (correlations
exactly 1). For the NTK and the NNGP it prints the largest relative
difference ``|a - b| / |b|`` entry by entry, over the pairs of distinct stroke images and
over the pairs with a near-duplicate, of:

* kernelcomp float32 (its float32 recursion) against kernelcomp float64;
* kernelcomp float32 against neural-tangents float64;
* neural-tangents float32 (``jax.jit(kernel_fn)`` on float32 images, x64 disabled:
  with it enabled neural-tangents promotes to float64) against
  neural-tangents float64;
* kernelcomp float64 against neural-tangents float64 (their formulas at correlations
  of exactly 1 differ: see CHANGELOG),

and whether kernelcomp's float32 Gram is finite, symmetric and its diagonal the
per-sample values.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

NOISE = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def images(n: int) -> np.ndarray:
    """``n`` stroke images, the first one's near-duplicates and a scaled copy of it."""
    from make_nt_conv_fixtures import _strokes

    rng = np.random.default_rng(0)
    base = _strokes(rng, n)
    dups = [base[0] + eps * rng.standard_normal(base[0].shape) for eps in NOISE]
    return np.concatenate([base, np.array(dups), 1.5 * base[:1]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="distinct stroke images (default 8)")
    parser.add_argument("--arch", choices=["all", "myrtle5", "cnn3-flatten"], default="all")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import kernelcomp as kc

    X = images(args.n)
    n = args.n
    distinct = np.zeros((len(X), len(X)), dtype=bool)
    distinct[:n, :n] = ~np.eye(n, dtype=bool)
    near = np.zeros_like(distinct)
    near[0, n:] = near[n:, 0] = True
    print(f"{n} stroke images + {len(NOISE)} near-duplicates of the first (noise "
          f"{', '.join(f'{e:g}' for e in NOISE)}) + a copy scaled by 1.5; load {os.getloadavg()}")
    archs = {
        "myrtle5": list(kc.ConvNTK.myrtle(5).layers),
        "cnn3-flatten": ["conv", "relu"] * 3 + ["flatten", "dense"],
    }
    for name, layers in archs.items():
        if args.arch in ("all", name):
            _errors(name, layers, X, n, distinct, near)


def _errors(name, layers, X, n, distinct, near) -> None:
    """Print the differences for one network."""
    import jax
    from jax.experimental import disable_x64
    from make_nt_conv_fixtures import stax_network

    import kernelcomp as kc

    _, _, kfn = stax_network({"layers": layers, "weight_std": math.sqrt(2.0), "bias_std": 0.0})
    kfn = jax.jit(kfn, static_argnames="get")
    print(f"{name}:")
    for get, cls in (("ntk", kc.ConvNTK), ("nngp", kc.ConvNNGP)):
        k = cls(layers, weight_std=math.sqrt(2.0), bias_std=0.0)
        kc64 = k(X)
        kc32 = k(X.astype(np.float32))
        nt64 = np.asarray(kfn(X, X, get=get))
        with disable_x64():  # float32 all through (with x64 on, it promotes to float64)
            nt32 = np.asarray(kfn(X.astype(np.float32), X.astype(np.float32), get=get))
        assert kc32.dtype == np.float32 and nt32.dtype == np.float32
        checks = (
            np.all(np.isfinite(kc32)),
            np.array_equal(kc32, kc32.T),
            np.array_equal(np.diag(kc32), k.diag(X.astype(np.float32)).astype(np.float32)),
        )
        print(f"{get}: kc float32 finite {checks[0]}, symmetric {checks[1]}, "
              f"diagonal = per-sample values {checks[2]}")
        for label, a, b in (
            ("kc float32 vs kc float64", kc32, kc64),
            ("kc float32 vs NT float64", kc32, nt64),
            ("NT float32 vs NT float64", nt32, nt64),
            ("kc float64 vs NT float64", kc64, nt64),
        ):
            rel = np.abs(a.astype(np.float64) - b) / np.abs(b)
            per_noise = " ".join(f"{v:.1e}" for v in rel[0, n : n + len(NOISE) + 1])
            print(f"  {get} {label}: distinct pairs {rel[distinct].max():.1e}, near-duplicate "
                  f"pairs {rel[near].max():.1e} (by noise, then the scaled copy: {per_noise})")


if __name__ == "__main__":
    main()
