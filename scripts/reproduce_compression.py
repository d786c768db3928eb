"""The compression experiment of Paccolat et al. (2021) at (closer to) the paper's scale.

The same pipeline as ``kernelcomp demo`` (``kernelcomp.demo.run_demo``) with
larger widths, more training-set sizes and the paper's five seeds: expect tens
of minutes on 2 cores (each feature-regime run is thousands of gradient-flow
steps of an ``h x p`` network; one run at h = 10^4, p = 10^3 takes about a
minute, and ``--h 1000 --p 64 128 256 512 1024 --seeds 0 1 2`` about 70 s in
all). Everything is written to ``--out`` as the demo does.

Usage::

    python scripts/reproduce_compression.py --out paper_out
    python scripts/reproduce_compression.py --out paper_out --h 10000 --d 10 \\
        --p 128 256 512 1024 2048 4096 --max-steps 200000
"""

from __future__ import annotations

import argparse

from kernelcomp.demo import ALPHA_SQRT_H, LAZY_MIN_ALPHA, DemoConfig, run_demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--d", type=int, default=5, help="input dimension (paper: 5 and 10)")
    ap.add_argument("--h", type=int, default=2000, help="hidden width (paper: 10^4)")
    ap.add_argument("--p", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-test", type=int, default=20_000)
    ap.add_argument("--loss", choices=["hinge", "soft_hinge"], default="hinge")
    ap.add_argument("--feature-alpha-sqrt-h", type=float, default=ALPHA_SQRT_H["feature"])
    ap.add_argument("--lazy-alpha-sqrt-h", type=float, default=ALPHA_SQRT_H["lazy"])
    ap.add_argument("--lazy-min-alpha", type=float, default=LAZY_MIN_ALPHA,
                    help="floor of the lazy alpha (0: none); alpha sqrt(h) alone is not lazy "
                         "at large h")
    ap.add_argument("--max-steps", type=int, default=100_000)
    args = ap.parse_args()
    cfg = DemoConfig(
        d=args.d, h=args.h, p=tuple(args.p), seeds=tuple(args.seeds), n_test=args.n_test,
        loss=args.loss, max_steps=args.max_steps, kpca_components=100,
        alpha_sqrt_h={"feature": args.feature_alpha_sqrt_h, "lazy": args.lazy_alpha_sqrt_h},
        lazy_min_alpha=args.lazy_min_alpha,
    )
    run_demo(args.out, config=cfg, progress=True)


if __name__ == "__main__":
    main()
