"""``kernelcomp train``: train the paper's one-hidden-layer network into a run file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kernelcomp._argtypes import positive_float, positive_int
from kernelcomp.cli._common import check_output


def add_parser(subparsers: Any) -> None:
    """Register ``train`` on the subparsers ``subparsers``."""
    t = subparsers.add_parser(
        "train", help="train the paper's one-hidden-layer net on a synthetic model",
        description="Train f(x) = (1/h) sum beta relu(w.x/sqrt(d) + b) by gradient flow "
                    "(Paccolat et al. 2021) and write a run file with checkpoints.")
    t.add_argument("dataset", choices=["stripe", "cylinder", "sphere"])
    t.add_argument("--p", type=positive_int, required=True, help="training points")
    t.add_argument("--d", type=positive_int, required=True, help="input dimension")
    t.add_argument("--regime", choices=["feature", "lazy"], default="feature")
    t.add_argument("-o", "--output", required=True, help="run file (.h5)")
    t.add_argument("--h", type=positive_int, default=1000, help="hidden width (default 1000)")
    t.add_argument("--alpha", type=positive_float, default=None,
                   help="output scale (default: alpha sqrt(h) = 0.05 feature; lazy: "
                        "alpha sqrt(h) = 1000 but alpha >= 70)")
    t.add_argument("--loss", choices=["hinge", "soft_hinge"], default="hinge")
    t.add_argument("--integrator", choices=["sliding", "euler"], default="sliding",
                   help="sliding: the hinge's kink taken implicitly (default, 60-80x fewer "
                        "steps); euler: the paper's literal explicit step")
    t.add_argument("--d-par", type=positive_int, default=2, help="cylinder: informative dims")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-test", type=positive_int, default=10_000)
    t.add_argument("--max-steps", type=positive_int, default=None)
    t.add_argument("--max-wall", type=positive_float, default=None, help="seconds")
    t.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` says and print a one-line summary; 0 on success."""
    from kernelcomp import datasets, diagnostics, training
    from kernelcomp.demo import COMPRESSION_CONVENTION, _paper_net, _t_star_or_none, default_alpha

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    out = check_output(Path(args.output), args.force)
    alpha = args.alpha
    if alpha is None:
        alpha = default_alpha(args.regime, args.h)
    X, y = datasets.load(args.dataset, args.p, args.d, args.seed, d_par=args.d_par)
    Xt, yt = datasets.load(args.dataset, args.n_test, args.d, args.seed, split="test",
                           d_par=args.d_par)
    net = _paper_net(args.d, args.h, args.seed)
    show = not args.quiet and sys.stderr.isatty()
    res = training.train(
        net, X, y, alpha=alpha, loss=args.loss, X_test=Xt, y_test=yt, path=out,
        force=args.force, max_steps=args.max_steps, max_wall=args.max_wall, progress=show,
        integrator=args.integrator,
        config={"dataset": args.dataset, "d": args.d, "d_par": args.d_par, "seed": args.seed,
                "regime": args.regime},
    )
    informative = datasets.informative_dims(args.dataset, args.d, args.d_par)
    # lambda compares informative with uninformative directions: the sphere (or a
    # cylinder with d_par = d) has none of the latter
    if len(informative) == args.d:
        lam = "n/a (no uninformative direction)"
    else:
        k = _t_star_or_none(res)

        def lam_of(net: Any) -> str:
            value = diagnostics.compression(net, informative, convention=COMPRESSION_CONVENTION)
            return f"{value:.3f}"

        at = ("n/a (stopped before t*)" if k is None
              else f"{lam_of(res.checkpoints[k].net)} at t* (step {res.checkpoints[k].step})")
        # the convention kernelcomp kpca/geometry --informative store by default
        lam = f"{at}, {lam_of(res.net)} at the end ({COMPRESSION_CONVENTION} convention)"
    if not args.quiet:
        print(f"{out}: {res.status} after {res.final.step} steps (t={res.final.time:.4g}, "
              f"{res.wall_time:.1f} s); train error {res.final.train_error:.4f}, test error "
              f"{res.checkpoints[-1].test_error:.4f}, compression lambda {lam}, "
              f"{len(res.checkpoints)} checkpoints")
    return 0
