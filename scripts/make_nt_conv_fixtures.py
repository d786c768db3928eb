r"""Regenerate tests/fixtures/nt_conv_reference.npz from neural-tangents' ``stax`` CNN kernels.

Run by hand, never in CI (it needs neural-tangents and JAX, which kernelcomp does not
depend on)::

    PYTHONPATH=$PWD /tmp/nt/bin/python scripts/make_nt_conv_fixtures.py --out tests/fixtures

(any environment with ``neural-tangents==0.6.5``, ``jax[cpu]==0.5.3`` and numpy;
``scripts/requirements-bench.txt``). The committed fixture was made with those
versions, float64 (``jax_enable_x64``), on the CPU.

What it writes: for each configuration of :func:`configs` (a kernelcomp layer list,
its stds and an input group), ``<name>_{nngp,ntk}_{xx,xy}`` from neural-tangents'
``kernel_fn(X, X or Y, ("nngp", "ntk"))`` of the same network built from ``stax``
layers (:func:`stax_network`), plus the inputs of each group (``<group>_X``,
``<group>_Y``, float64) and ``index_json`` (the configurations, compact JSON).

Input groups (numpy ``default_rng(SEED)``, drawn in this order):

* ``small``: 5 + 3 images 7 x 6 x 2, standard normal (non-square, two channels);
* ``sparse``: 4 + 3 images 8 x 8 x 1, non-negative with ~60 % zero pixels
  (zero-variance positions, as on MNIST's background); ``Y[0]`` is a copy of ``X[1]``;
* ``mnist``: 3 + 2 images 28 x 28 x 1 of random strokes in [0, 1] (mostly zero),
  for Myrtle-5 at MNIST's size.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SEED = 20261207
NT_VERSION = "0.6.5"
JAX_VERSION = "0.5.3"
MYRTLE5 = ["conv", "relu", "conv", "relu", "avgpool", "conv", "relu", "avgpool", "conv",
           "relu", "global_avgpool", "dense"]
MYRTLE7 = ["conv", "relu"] * 2 + ["avgpool"] + ["conv", "relu"] * 2 + ["avgpool"] + [
    "conv", "relu"] * 2 + ["global_avgpool", "dense"]
MYRTLE10 = ["conv", "relu"] * 3 + ["avgpool"] + ["conv", "relu"] * 3 + ["avgpool"] + [
    "conv", "relu"] * 3 + ["global_avgpool", "dense"]


def configs() -> list[dict]:
    """The configurations: name, layers, weight_std, bias_std, input group."""
    return [
        {"name": "flat_relu", "layers": ["conv", "relu", "conv", "relu", "flatten", "dense"],
         "weight_std": 1.5, "bias_std": 0.1, "group": "small"},
        {"name": "flat_erf_unit", "layers": ["conv", "erf", "conv5", "relu_unit", "flatten",
                                             "dense"],
         "weight_std": 1.2, "bias_std": 0.0, "group": "small"},
        {"name": "pool_gap", "layers": ["conv", "relu", "avgpool", "conv", "relu",
                                        "global_avgpool", "dense"],
         "weight_std": math.sqrt(2), "bias_std": 0.0, "group": "small"},
        {"name": "pool3_flatten", "layers": ["conv", "relu", "avgpool3", "flatten", "dense"],
         "weight_std": 1.0, "bias_std": 0.5, "group": "small"},
        {"name": "pool_flatten_tail", "layers": ["conv", "relu", "avgpool", "conv", "relu",
                                                 "flatten", "dense", "relu", "dense"],
         "weight_std": [1.1, 1.4, 0.9, 1.3], "bias_std": [0.3, 0.0, 0.2, 0.1],
         "group": "small"},
        {"name": "deep_gap", "layers": ["conv", "relu"] * 4 + ["global_avgpool", "dense"],
         "weight_std": math.sqrt(2), "bias_std": 0.2, "group": "sparse"},
        {"name": "flat_sparse", "layers": ["conv", "relu", "conv", "relu", "conv", "relu",
                                           "flatten", "dense"],
         "weight_std": math.sqrt(2), "bias_std": 0.0, "group": "sparse"},
        {"name": "myrtle7_sparse", "layers": MYRTLE7, "weight_std": math.sqrt(2),
         "bias_std": 0.0, "group": "sparse"},
        {"name": "myrtle10_sparse", "layers": MYRTLE10, "weight_std": math.sqrt(2),
         "bias_std": 0.1, "group": "sparse"},
        {"name": "myrtle5_mnist", "layers": MYRTLE5, "weight_std": math.sqrt(2),
         "bias_std": 0.0, "group": "mnist"},
        # the other closed forms of the FC kernels (neural-tangents has no ELU layer)
        {"name": "flat_leaky_gelu", "layers": ["conv", "leaky_relu", "conv", "gelu", "flatten",
                                               "dense"],
         "weight_std": 1.3, "bias_std": 0.2, "group": "small"},
        {"name": "pool_gap_gelu_leaky", "layers": ["conv", "gelu", "avgpool", "conv",
                                                   "leaky_relu", "global_avgpool", "dense"],
         "weight_std": 1.4, "bias_std": 0.1, "group": "small"},
        {"name": "linear_tail", "layers": ["conv", "linear", "conv", "relu", "avgpool", "flatten",
                                           "dense", "gelu", "dense", "leaky_relu", "dense"],
         "weight_std": [1.2, 1.1, 1.3, 0.9, 1.0], "bias_std": [0.0, 0.3, 0.1, 0.2, 0.1],
         "group": "small"},
        {"name": "deep_gap_leaky_sparse", "layers": ["conv", "leaky_relu", "conv", "gelu", "conv",
                                                     "leaky_relu", "global_avgpool", "dense"],
         "weight_std": math.sqrt(2), "bias_std": 0.0, "group": "sparse"},
    ]


def inputs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The input groups, drawn in a fixed order from ``default_rng(SEED)``."""
    rng = np.random.default_rng(SEED)
    groups = {}
    groups["small"] = (rng.standard_normal((5, 7, 6, 2)), rng.standard_normal((3, 7, 6, 2)))
    X = rng.random((4, 8, 8, 1)) * (rng.random((4, 8, 8, 1)) > 0.6)
    Y = rng.random((3, 8, 8, 1)) * (rng.random((3, 8, 8, 1)) > 0.6)
    Y[0] = X[1]
    groups["sparse"] = (X, Y)
    groups["mnist"] = (_strokes(rng, 3), _strokes(rng, 2))
    return groups


def _strokes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` 28 x 28 images with a few thick random strokes, values in [0, 1]."""
    out = np.zeros((n, 28, 28, 1))
    for img in out:
        for _ in range(3):
            p = rng.uniform(6, 22, size=2)
            d = rng.normal(size=2)
            d /= np.linalg.norm(d)
            for t in np.linspace(-7, 7, 40):
                i, j = np.round(p + t * d).astype(int)
                img[max(0, i - 1) : i + 2, max(0, j - 1) : j + 2, 0] = np.maximum(
                    img[max(0, i - 1) : i + 2, max(0, j - 1) : j + 2, 0], rng.uniform(0.5, 1.0)
                )
    return out


def stax_network(cfg: dict):
    """The neural-tangents network of a configuration (imports neural-tangents here)."""
    from neural_tangents import stax

    layers = cfg["layers"]
    n_w = sum(name.startswith("conv") or name == "dense" for name in layers)
    ws = cfg["weight_std"] if isinstance(cfg["weight_std"], list) else [cfg["weight_std"]] * n_w
    bs = cfg["bias_std"] if isinstance(cfg["bias_std"], list) else [cfg["bias_std"]] * n_w
    out = []
    wi = 0
    for name in layers:
        if name.startswith("conv"):
            k = int(name[4:] or 3)
            out.append(stax.Conv(1, (k, k), padding="SAME", W_std=ws[wi], b_std=bs[wi]))
            wi += 1
        elif name == "dense":
            out.append(stax.Dense(1, W_std=ws[wi], b_std=bs[wi]))
            wi += 1
        elif name == "relu":
            out.append(stax.Relu())
        elif name == "relu_unit":
            out.append(stax.ABRelu(0.0, math.sqrt(2.0)))
        elif name == "erf":
            out.append(stax.Erf())
        elif name == "leaky_relu":
            out.append(stax.LeakyRelu(0.01))
        elif name == "gelu":
            out.append(stax.Gelu(approximate=False))
        elif name == "linear":
            out.append(stax.Identity())
        elif name.startswith("avgpool"):
            k = int(name[7:] or 2)
            out.append(stax.AvgPool((k, k), strides=(k, k), padding="VALID"))
        elif name == "global_avgpool":
            out.append(stax.GlobalAvgPool())
        elif name == "flatten":
            out.append(stax.Flatten())
        else:
            raise ValueError(name)
    return stax.serial(*out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents

    groups = inputs()
    arrays: dict[str, np.ndarray] = {}
    for g, (X, Y) in groups.items():
        arrays[f"{g}_X"] = X
        arrays[f"{g}_Y"] = Y
    for cfg in configs():
        _, _, kernel_fn = stax_network(cfg)
        X, Y = groups[cfg["group"]]
        for key, B in (("xx", X), ("xy", Y)):
            k = kernel_fn(X, B, ("nngp", "ntk"))
            arrays[f"{cfg['name']}_nngp_{key}"] = np.asarray(k.nngp, dtype=np.float64)
            arrays[f"{cfg['name']}_ntk_{key}"] = np.asarray(k.ntk, dtype=np.float64)
        print(cfg["name"], "done", flush=True)
    index = {"seed": SEED, "jax": jax.__version__,
             "neural_tangents": neural_tangents.__version__, "x64": True, "configs": configs()}
    if (index["jax"], index["neural_tangents"]) != (JAX_VERSION, NT_VERSION):
        print(f"note: the committed fixture used jax {JAX_VERSION}, neural-tangents "
              f"{NT_VERSION}; this is jax {index['jax']}, neural-tangents "
              f"{index['neural_tangents']}")
    arrays["index_json"] = np.array(json.dumps(index, separators=(",", ":")))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "nt_conv_reference.npz", **arrays)
    print(f"wrote {len(index['configs'])} configurations to {args.out / 'nt_conv_reference.npz'}")


if __name__ == "__main__":
    main()
