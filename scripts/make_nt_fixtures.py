r"""Regenerate tests/fixtures/nt_reference.npz and nt_reference_index.json from neural-tangents.

Run by hand, never in CI (it needs neural-tangents and JAX, which kernelcomp does not
depend on). The committed fixture was made with

* neural-tangents 0.6.5, jax / jaxlib 0.5.3, float64 (``jax_enable_x64``), CPU;
* numpy's ``default_rng(20240607)``: ``X`` (40 x 7) drawn first, then ``Y`` (30 x 7).

Set-up and run (in a scratch environment, not kernelcomp's venv)::

    python -m venv /tmp/nt && /tmp/nt/bin/pip install "neural-tangents==0.6.5" \
        "jax[cpu]==0.5.3" numpy
    /tmp/nt/bin/python scripts/make_nt_fixtures.py --out tests/fixtures

What it writes (reconstructed from the committed index and the ``.npz`` keys, and
checked against them by ``tests/test_documented_outputs.py``, which imports this file
without JAX):

* 52 configurations (:func:`configs`): the full factorial ``L in {1, 2, 3}`` x
  activation ``{relu, erf}`` x ``W_std in {1, sqrt 2}`` x ``b_std in {0.0, 0.3}`` x
  parameterization ``{ntk, standard}`` (48, in that nesting order, parameterization
  innermost), then ``L = 2``, ``W_std = sqrt 2``, ``b_std = None`` (no bias parameter)
  for relu/ntk, relu/standard, erf/ntk, erf/standard. Each network is
  ``stax.serial(*[stax.Dense(512, W_std, b_std, parameterization=P), Act()] * L,
  stax.Dense(1, W_std, b_std, parameterization=P))`` (the width only matters for the
  standard NTK);
* per configuration ``cID_{nngp,ntk}_{xx,xy}`` from ``kernel_fn(X, X or Y, ("nngp",
  "ntk"))`` and the exact diagonals ``cID_{nngp,ntk}_xx_diag_exact`` from the closed-form
  per-point recursion (:func:`exact_diagonal`), plus ``X``, ``Y`` and ``index_json``
  (the index, compact JSON);
* the index (``indent=1``): per configuration ``formula_max_rel_diff`` (max-norm relative
  difference, ``max |a - b| / max |b|``, of an independent NumPy implementation of the
  documented recursion, :func:`formula_kernel`, against neural-tangents), and
  ``nt_diag_max_rel_err_vs_exact`` (largest entry-wise relative error of
  neural-tangents' own diagonal against the exact one); ``formula_max_rel_diff_all`` is
  the largest ``formula_max_rel_diff``.

Note. The index's description (kept verbatim, :data:`DESCRIPTION`) says neural-tangents'
ReLU diagonal carries ~1e-9 relative error; in the committed data that diagonal equals
the exact one (``nt_diag_max_rel_err_vs_exact`` is 0 for every ReLU configuration) and the
~1e-9 in ``formula_max_rel_diff`` (``ntk_xx``) comes from the full-matrix NumPy formula,
whose ``arctan2(sqrt(S11 S22 - S12^2), S12)`` cancels on the diagonal.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SEED = 20240607
N, M, D = 40, 30, 7
WIDTH = 512
JAX_VERSION = "0.5.3"
NT_VERSION = "0.6.5"

DESCRIPTION = (
    "Reference-values fixture from neural-tangents 0.6.5 (float64, jax_enable_x64).\n\n"
    "X: n=40 x d=7, Y: m=30 x d=7, both N(0,1) from numpy default_rng(SEED) (X drawn "
    "first, then Y).\n"
    "Configs: full factorial L in {1,2,3} x activation in {relu, erf} x W_std in "
    "{1, sqrt 2} x b_std in {0.0, 0.3}\n"
    "x parameterization in {'ntk','standard'} (48), plus 4 with b_std=None (no bias "
    "parameter at all), which differs\n"
    "from b_std=0.0 under 'standard' (a zero-initialised but trainable bias adds +1 per "
    "layer to the NTK).\n"
    "Network for each config (hidden width 512; the width only matters for 'standard' "
    "NTK):\n"
    "    stax.serial(*[stax.Dense(512, W_std, b_std, parameterization=P), Act()] * L,\n"
    "                stax.Dense(1, W_std, b_std, parameterization=P))\n"
    "For each config saves nngp_xx, ntk_xx (40x40) and nngp_xy, ntk_xy (40x30) from "
    "kernel_fn(X, X / Y, ('nngp','ntk')),\n"
    "plus the exact diagonal of (X, X) from the closed-form per-point recursion "
    "(nngp_xx_diag_exact, ntk_xx_diag_exact):\n"
    "NT's own ReLU diagonal carries ~1e-9..1e-8 relative rounding error (arctan2 of "
    "sqrt(K11 K22 - K12^2) with\n"
    "K12 ~= sqrt(K11 K22)), recorded per config as nt_diag_max_rel_err_vs_exact.\n"
    "Every value is also recomputed with an independent numpy implementation of the "
    "documented recursion\n"
    "(formula_*), and the max relative difference is stored in the index (check of the "
    "documented mapping).\n\n"
    "Files: nt_reference.npz (arrays 'X', 'Y', 'index_json', and "
    "c{ID:02d}_{nngp,ntk}_{xx,xy} plus the exact diagonals) and this index.\n"
)

SQRT2 = math.sqrt(2.0)
PARTS = ("nngp_xx", "ntk_xx", "nngp_xy", "ntk_xy")


def _literal(v: float | None) -> str:
    """How a std appears in the configuration's ``code`` string."""
    if v is None:
        return "None"
    return "math.sqrt(2.0)" if v == SQRT2 else repr(float(v))


def configs() -> list[dict]:
    """The 52 configurations, in the fixture's order, with their ``code`` and array keys."""
    grid = [
        (L, act, w, b, par)
        for L in (1, 2, 3)
        for act in ("relu", "erf")
        for w in (1.0, SQRT2)
        for b in (0.0, 0.3)
        for par in ("ntk", "standard")
    ]
    grid += [(2, act, SQRT2, None, par) for act in ("relu", "erf") for par in ("ntk", "standard")]
    out = []
    for i, (L, act, w, b, par) in enumerate(grid):
        dense = (f"W_std={_literal(w)}, b_std={_literal(b)}, parameterization='{par}'")
        layer = "stax.Relu()" if act == "relu" else "stax.Erf()"
        code = (f"stax.serial(*[stax.Dense({WIDTH}, {dense}), {layer}] * {L}, "
                f"stax.Dense(1, {dense}))")
        keys = {part: f"c{i:02d}_{part}" for part in PARTS}
        keys.update({f"{k}_xx_diag_exact": f"c{i:02d}_{k}_xx_diag_exact" for k in ("nngp", "ntk")})
        out.append({"id": i, "L": L, "activation": act, "W_std": w, "b_std": b,
                    "parameterization": par, "code": code, "keys": keys})
    return out


def inputs() -> tuple[np.ndarray, np.ndarray]:
    """``X`` (40 x 7) then ``Y`` (30 x 7) from one ``default_rng(SEED)``."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((N, D))
    Y = rng.standard_normal((M, D))
    return X, Y


def _layers(cfg: dict) -> tuple[list[float], list[float], list[float]]:
    L = cfg["L"]
    w2 = [cfg["W_std"] ** 2] * (L + 1)
    b2 = [0.0 if cfg["b_std"] is None else cfg["b_std"] ** 2] * (L + 1)
    has_b = [0.0 if cfg["b_std"] is None else 1.0] * (L + 1)
    return w2, b2, has_b


def _dual(act: str, s11, s22, s12):
    """``E[phi(u) phi(v)]``, ``E[phi'(u) phi'(v)]`` and the new variances, for (u, v) ~ N(0, S)."""
    if act == "relu":
        det = np.sqrt(np.maximum(s11 * s22 - s12**2, 0.0))
        theta = np.arctan2(det, s12)
        k = (det + (np.pi - theta) * s12) / (2 * np.pi)
        kd = (np.pi - theta) / (2 * np.pi)
        return k, kd, s11 / 2, s22 / 2
    a, b = 1 + 2 * s11, 1 + 2 * s22
    k = 2 / np.pi * np.arcsin(np.clip(2 * s12 / np.sqrt(a * b), -1.0, 1.0))
    kd = 4 / np.pi / np.sqrt(a * b - 4 * s12**2)
    return k, kd, 2 / np.pi * np.arcsin(2 * s11 / a), 2 / np.pi * np.arcsin(2 * s22 / b)


def formula_kernel(cfg: dict, X: np.ndarray, Y: np.ndarray, want: str) -> np.ndarray:
    """NNGP (``want="nngp"``) or NTK by the documented recursion (kernelcomp.kernels).

    ``S1 = sw^2 x.x'/d + sb^2``, ``S(l+1) = sw^2 K(S(l)) + sb^2``, NTK
    ``T(l+1) = S(l+1) + sw^2 Kdot(S(l)) T(l)``, ``T1 = S1`` ("ntk"); under "standard"
    ``T1 = x.x' + [bias]`` and ``T(l+1) = n K(S(l)) + [bias] + sw^2 Kdot T(l)``.
    """
    w2, b2, has_b = _layers(cfg)
    d = X.shape[1]
    s12 = w2[0] * (X @ Y.T) / d + b2[0]
    s11 = np.broadcast_to((w2[0] * np.sum(X * X, 1) / d + b2[0])[:, None], s12.shape)
    s22 = np.broadcast_to((w2[0] * np.sum(Y * Y, 1) / d + b2[0])[None, :], s12.shape)
    standard = cfg["parameterization"] == "standard"
    t = (X @ Y.T + has_b[0]) if standard else s12.copy()
    for layer in range(cfg["L"]):
        k, kd, k11, k22 = _dual(cfg["activation"], s11, s22, s12)
        w, b = w2[layer + 1], b2[layer + 1]
        if standard:
            t = WIDTH * k + has_b[layer + 1] + w * kd * t
        else:
            t = (w * k + b) + w * kd * t
        s12, s11, s22 = w * k + b, w * k11 + b, w * k22 + b
    return t if want == "ntk" else s12


def exact_diagonal(cfg: dict, X: np.ndarray, want: str) -> np.ndarray:
    """``k(x, x)`` by the per-point recursion (``S12 = S11``: no cancellation)."""
    w2, b2, has_b = _layers(cfg)
    sq = np.sum(X * X, axis=1)
    s = w2[0] * sq / X.shape[1] + b2[0]
    standard = cfg["parameterization"] == "standard"
    t = sq + has_b[0] if standard else s.copy()
    for layer in range(cfg["L"]):
        if cfg["activation"] == "relu":
            k, kd = s / 2, np.full_like(s, 0.5)
        else:
            k = 2 / np.pi * np.arcsin(2 * s / (1 + 2 * s))
            kd = 4 / np.pi / np.sqrt((1 + 2 * s) ** 2 - 4 * s**2)
        w, b = w2[layer + 1], b2[layer + 1]
        t = (WIDTH * k + has_b[layer + 1] + w * kd * t) if standard else (w * k + b) + w * kd * t
        s = w * k + b
    return t if want == "ntk" else s


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|``: the index's ``formula_max_rel_diff``."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def entrywise_rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """``max_i |a_i - b_i| / |b_i|``: the index's ``nt_diag_max_rel_err_vs_exact``."""
    return float(np.max(np.abs(a - b) / np.abs(b)))


def nt_kernels(cfg: dict, X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """neural-tangents' values for one configuration (imports JAX here, not at load time)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    act = stax.Relu if cfg["activation"] == "relu" else stax.Erf
    dense = {"W_std": cfg["W_std"], "b_std": cfg["b_std"],
             "parameterization": cfg["parameterization"]}
    _, _, kernel_fn = stax.serial(*[stax.Dense(WIDTH, **dense), act()] * cfg["L"],
                                  stax.Dense(1, **dense))
    out = {}
    for part, (a, b) in (("xx", (X, X)), ("xy", (X, Y))):
        kern = kernel_fn(a, b, ("nngp", "ntk"))
        out[f"nngp_{part}"] = np.asarray(kern.nngp, dtype=np.float64)
        out[f"ntk_{part}"] = np.asarray(kern.ntk, dtype=np.float64)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    args = parser.parse_args(argv)
    import jax
    import neural_tangents

    X, Y = inputs()
    arrays: dict[str, np.ndarray] = {"X": X, "Y": Y}
    entries = []
    for cfg in configs():
        nt = nt_kernels(cfg, X, Y)
        keys = cfg["keys"]
        formula = {}
        for part in PARTS:
            want, pair = part.split("_")
            arrays[keys[part]] = nt[part]
            ref = formula_kernel(cfg, X, X if pair == "xx" else Y, want)
            formula[part] = max_rel_diff(ref, nt[part])
        diag_err = {}
        for want in ("nngp", "ntk"):
            exact = exact_diagonal(cfg, X, want)
            arrays[keys[f"{want}_xx_diag_exact"]] = exact
            diag_err[want] = entrywise_rel_err(np.diag(nt[f"{want}_xx"]), exact)
        entries.append({**cfg, "formula_max_rel_diff": formula,
                        "nt_diag_max_rel_err_vs_exact": diag_err})
    index = {
        "description": DESCRIPTION, "seed": SEED, "X_shape": [N, D], "Y_shape": [M, D],
        "width": WIDTH, "jax": jax.__version__, "neural_tangents": neural_tangents.__version__,
        "x64": True, "configs": entries,
        "formula_max_rel_diff_all": max(max(e["formula_max_rel_diff"].values())
                                        for e in entries),
    }
    if (index["jax"], index["neural_tangents"]) != (JAX_VERSION, NT_VERSION):
        print(f"note: the committed fixture used jax {JAX_VERSION}, neural-tangents "
              f"{NT_VERSION}; this is jax {index['jax']}, neural-tangents "
              f"{index['neural_tangents']}")
    arrays["index_json"] = np.array(json.dumps(index))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "nt_reference.npz", **arrays)
    (args.out / "nt_reference_index.json").write_text(json.dumps(index, indent=1))
    print(f"wrote {len(entries)} configurations to {args.out}; largest formula difference "
          f"{index['formula_max_rel_diff_all']:.3g}")


if __name__ == "__main__":
    main()
