r"""Regenerate tests/fixtures/nt_activations.npz from neural-tangents' GELU and leaky ReLU.

Run by hand, never in CI (it needs neural-tangents and JAX, which kernelcomp does not
depend on). The committed fixture was made with neural-tangents 0.6.5, jax 0.5.3,
float64 (``jax_enable_x64``), CPU::

    python scripts/make_nt_activation_fixtures.py --out tests/fixtures

What it writes: ``X`` (12 x 5) and ``Y`` (8 x 5) from numpy's ``default_rng(20261207)``
(``X`` first; rows scaled by 0.3 to 2 so the variances differ), ``names`` (one
string ``act|kernel|depth|W_std|b_std`` per configuration: ``gelu`` (``stax.Gelu()``,
exact erf form) and ``leaky_relu`` (``stax.LeakyRelu(0.01)``, i.e. ``ABRelu(0.01, 1)``)
x ``ntk``/``nngp`` x depth 1, 3 x ``(W_std, b_std)`` in ``(1.0, 0.0)``, ``(1.5, 0.3)``,
NTK parameterization), and per configuration ``<name>|xx`` and ``<name>|xy``: the
kernel of ``stax.serial(*[Dense(512, W_std, b_std), Act()] * depth, Dense(1, W_std, b_std))``
on ``(X, X)`` and ``(X, Y)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    args = ap.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from neural_tangents import stax

    rng = np.random.default_rng(20261207)
    X = rng.standard_normal((12, 5)) * rng.uniform(0.3, 2.0, size=(12, 1))
    Y = rng.standard_normal((8, 5)) * rng.uniform(0.3, 2.0, size=(8, 1))
    acts = {"gelu": stax.Gelu, "leaky_relu": lambda: stax.LeakyRelu(0.01)}
    out: dict[str, np.ndarray] = {"X": X, "Y": Y}
    names = []
    for act, layer in acts.items():
        for kernel in ("ntk", "nngp"):
            for depth in (1, 3):
                for ws, bs in ((1.0, 0.0), (1.5, 0.3)):
                    layers = [stax.Dense(512, ws, bs), layer()] * depth
                    _, _, kfn = stax.serial(*layers, stax.Dense(1, ws, bs))
                    name = f"{act}|{kernel}|{depth}|{ws}|{bs}"
                    names.append(name)
                    out[f"{name}|xx"] = np.asarray(kfn(jnp.asarray(X), None, kernel))
                    out[f"{name}|xy"] = np.asarray(kfn(jnp.asarray(X), jnp.asarray(Y), kernel))
    out["names"] = np.array(names)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "nt_activations.npz", **out)
    print(f"wrote {len(names)} configurations to {args.out / 'nt_activations.npz'}")


if __name__ == "__main__":
    main()
