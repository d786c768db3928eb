r"""The compression experiment of Paccolat et al. (2021) at the paper's scale, with its protocol.

Runs the pipeline of ``kernelcomp demo`` (``kernelcomp.demo.run_demo``) for each
of the paper's data models -- the stripe in d = 5 and d = 10, the cylinder in
d = 3 with d_par = 2 -- with wide networks (h >> p), the hinge loss, alpha << 1
(feature) and alpha >> 1 (lazy), several seeds, and the lazy learning curve also
from a hard-margin SVM on the frozen initial NTK up to larger p. Compression is
read at t* (the first checkpoint with more than 10 % of the training margins
>= 1), as in the authors' figures, in both of the authors' conventions:

* ``figures``: w_1 / mean_{j >= 2} w_j, with w_j the RMS over neurons of the
  first-layer weights on input j (about 1 at initialisation);
* ``norm``: w_par / ||w_perp||, smaller by about sqrt(d - 1),

next to the authors' ODE estimate for the stripe, lambda_ODE = sqrt(0.1351 p).
Each experiment's run files, figures and ``summary.json`` go to ``OUT/NAME/``;
``OUT/report.txt`` and ``OUT/compression_conventions.png`` put them together.

Runtime on 2 cores (one feature run at h = 10^4, p = 10^3 takes about a minute;
the cost grows about as h p^1.5): the defaults (h = 10^4, p up to 4096,
3 seeds, three models) take many hours; ``--h 2000 --p 64 128 256 512 1024
--frozen-p 256 1024 4096 16384 --experiments stripe5`` about 15 minutes.

Usage::

    python scripts/reproduce_compression.py --out paper_out
    python scripts/reproduce_compression.py --out quick_out --experiments stripe5 \
        --h 1000 --p 64 128 256 512 --frozen-p 256 1024 4096 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp import curves, diagnostics
from kernelcomp.demo import ALPHA_SQRT_H, LAZY_MIN_ALPHA, DemoConfig, report, run_demo

#: the paper's data models: name -> (dataset, d, d_par)
EXPERIMENTS = {"stripe5": ("stripe", 5, 1), "stripe10": ("stripe", 10, 1),
               "cylinder3": ("cylinder", 3, 2)}  # fmt: skip


def conventions(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """lambda(t*) of every feature run in both conventions, means over seeds per p."""
    table: dict[str, Any] = {"p": summary["regimes"]["feature"]["p"]}
    for conv in ("figures", "norm"):
        per_p = []
        for p in table["p"]:
            values = []
            for r in summary["runs"]:
                if r["regime"] != "feature" or r["p"] != p:
                    continue
                try:
                    values.append(diagnostics.compression_at(out / r["file"], convention=conv))
                except ValueError:  # stopped before t*
                    continue
            per_p.append(float(np.mean(values)) if values else None)
        table[conv] = per_p
        ok = [(p, v) for p, v in zip(table["p"], per_p, strict=True) if v]
        table[f"{conv}_slope"] = (
            float(np.polyfit(np.log([p for p, _ in ok]), np.log([v for _, v in ok]), 1)[0])
            if len(ok) >= 2 else None)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--experiments", nargs="+", choices=sorted(EXPERIMENTS),
                    default=["stripe5", "stripe10", "cylinder3"])
    ap.add_argument("--h", type=int, default=10_000, help="hidden width (paper: 10^4)")
    ap.add_argument("--p", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    ap.add_argument("--frozen-p", type=int, nargs="+",
                    default=[128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                    help="sizes of the frozen-initial-NTK (lazy) curve")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=20_000)
    ap.add_argument("--loss", choices=["hinge", "soft_hinge"], default="hinge")
    ap.add_argument("--feature-alpha-sqrt-h", type=float, default=ALPHA_SQRT_H["feature"])
    ap.add_argument("--lazy-alpha-sqrt-h", type=float, default=ALPHA_SQRT_H["lazy"])
    ap.add_argument("--lazy-min-alpha", type=float, default=LAZY_MIN_ALPHA,
                    help="floor of the lazy alpha (0: none); with the 1/h readout laziness "
                         "is set by alpha itself")
    ap.add_argument("--max-steps", type=int, default=200_000)
    args = ap.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    lines, tables = [], {}
    t0 = time.perf_counter()
    for name in args.experiments:
        dataset, d, d_par = EXPERIMENTS[name]
        cfg = DemoConfig(
            d=d, h=args.h, p=tuple(args.p), seeds=tuple(args.seeds), n_test=args.n_test,
            loss=args.loss, max_steps=args.max_steps, kpca_components=100,
            alpha_sqrt_h={"feature": args.feature_alpha_sqrt_h,
                          "lazy": args.lazy_alpha_sqrt_h},
            lazy_min_alpha=args.lazy_min_alpha, frozen_p=tuple(args.frozen_p),
            dataset=dataset, d_par=d_par,
        )
        t1 = time.perf_counter()
        summary = run_demo(root / name, config=cfg, progress=True)
        table = conventions(root / name, summary)
        if dataset == "stripe":
            table["theory"] = curves.compression_theory(np.array(table["p"])).tolist()
        tables[name] = table
        lines += [f"== {name}: {dataset}, d = {d}" + (f", d_par = {d_par}" if d_par > 1 else "")
                  + f" ({time.perf_counter() - t1:.0f} s)", report(summary), ""]
        lines.append("lambda(t*), mean over seeds, both conventions:")
        lines.append("   p        " + " ".join(f"{p:>8d}" for p in table["p"]))
        for key in ("figures", "norm", "theory"):
            if key in table:
                vals = " ".join("     n/a" if v is None else f"{v:8.2f}" for v in table[key])
                slope = table.get(f"{key}_slope")
                lines.append(f"   {key:8s} {vals}"
                             + ("" if slope is None else f"   ~ p^{slope:.2f}"))
        lines.append("")
    lines.append(f"total wall time {time.perf_counter() - t0:.0f} s")
    text = "\n".join(lines)
    (root / "report.txt").write_text(text + "\n")
    (root / "conventions.json").write_text(json.dumps(tables, indent=1))
    plot(root, tables)
    print(text)


def plot(root: Path, tables: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 3.8), squeeze=False,
                             layout="constrained")
    for ax, (name, t) in zip(axes[0], tables.items(), strict=True):
        p = np.asarray(t["p"], dtype=float)
        for key, style in (("figures", "o-"), ("norm", "s-")):
            v = np.array([math.nan if x is None else x for x in t[key]])
            ax.plot(p, v, style, label=f"$\\lambda(t^*)$, {key} convention")
        if "theory" in t:
            ax.plot(p, t["theory"], "k--", label=r"$\lambda_{ODE}=\sqrt{0.135\,p}$")
        ax.set(xscale="log", yscale="log", xlabel="p", ylabel=r"$\lambda(t^*)$", title=name)
        ax.legend(fontsize=7)
    fig.savefig(root / "compression_conventions.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
