"""``kernelcomp gram``: a Gram matrix (analytic kernel or a network's empirical one) into HDF5."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernelcomp._argtypes import n_jobs, positive_int, stds, widths
from kernelcomp.cli._common import (
    UsageError,
    add_quiet,
    check_output,
    deferred_sigint,
    progress_on,
    say,
)
from kernelcomp.cli._sources import add_torch_options, empirical_ntk


class _ActivationNames:
    """The analytic kernels' activations, read from ``kernelcomp.kernels`` on demand.

    argparse reads them only when it needs them (a parse with ``--activation``,
    or ``gram --help``), so that building the parser imports no compiled code.
    """

    @staticmethod
    def _names() -> list[str]:
        from kernelcomp.kernels import _activation_names

        return _activation_names()

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def add_parser(sub: Any) -> None:
    """Register ``gram`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "gram",
        help="compute an NTK/NNGP Gram matrix (analytic or of a network) into HDF5",
        description=(
            "Compute the Gram matrix of an analytic kernel, or of the empirical kernel of a "
            "network checkpoint (--network), on the rows of INPUT (against the rows of --y "
            "if given) into an HDF5 Gram file, block by block. "
            "Ctrl-C stops at a block boundary and keeps the completed blocks in "
            "OUT.partial; --resume continues them."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="samples (.npy, .npz, .csv or .h5), n x d")
    p.add_argument("--key", metavar="NAME", help="array name inside an .npz/.h5 INPUT")
    p.add_argument("--y", metavar="INPUT2", help="second samples (m x d): cross Gram")
    p.add_argument("--y-key", metavar="NAME", help="array name inside an .npz/.h5 INPUT2")
    p.add_argument("--kernel", choices=("ntk", "nngp"), default="ntk", help="default: ntk")
    analytic = p.add_argument_group("analytic kernel (infinite width)")
    analytic.add_argument(
        "--depth", type=int, default=argparse.SUPPRESS, metavar="L",
        help="hidden layers (default 1)",
    )
    analytic.add_argument(
        "--activation", choices=_ActivationNames(), default=argparse.SUPPRESS,
        help="default: relu; relu, relu_unit, erf, leaky_relu, linear and gelu in closed form, "
        "tanh, silu, softplus and sigmoid as Hermite series, elu by quadrature",
    )
    analytic.add_argument(
        "--weight-std", type=stds, metavar="S", default=argparse.SUPPRESS,
        help="sigma_w, one value or one per Dense layer, comma separated (default 1.0)",
    )
    analytic.add_argument(
        "--bias-std", type=stds, metavar="S", default=argparse.SUPPRESS,
        help="sigma_b, as --weight-std; 'none' for no bias (default 0.0)",
    )
    analytic.add_argument(
        "--parameterization", choices=("ntk", "standard"), default=argparse.SUPPRESS,
        help="default: ntk",
    )
    analytic.add_argument(
        "--width", type=widths, default=argparse.SUPPRESS, metavar="N",
        help="hidden width(s), for --parameterization standard",
    )
    empirical = p.add_argument_group("empirical kernel of a finite network")
    empirical.add_argument(
        "--network", metavar="CKPT",
        help="network file (.npz, .pt/.pth, .pt2, .h5 network or run file): its empirical "
             "NTK/NNGP",
    )
    empirical.add_argument(
        "--checkpoint", type=int, default=-1, metavar="I",
        help="checkpoint index in a run file --network (default -1: the last)",
    )
    empirical.add_argument(
        "--params", default="all", metavar="P",
        help="empirical NTK parameters: all (default), last, headless",
    )
    empirical.add_argument(
        "--network-activation", metavar="A",
        help="activation of a .pt / state-dict .npz --network (default relu)",
    )
    add_torch_options(empirical)
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="Gram file to write")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default: from the input")
    p.add_argument("--n-jobs", type=n_jobs, metavar="N", help="threads (default: all)")
    p.add_argument(
        "--block-rows", type=positive_int, metavar="N",
        help="rows per block (default: about 64 MiB of output per block)",
    )
    p.add_argument("--resume", action="store_true", help="continue OUT.h5.partial")
    p.add_argument("--force", action="store_true", help="overwrite OUT.h5 / restart")
    add_quiet(p)
    p.set_defaults(func=run)


#: the analytic kernel's options; they default to "not given" (argparse.SUPPRESS), as
#: --bias-std none is a value
_ANALYTIC = ("depth", "activation", "weight_std", "bias_std", "parameterization", "width")


def _analytic_kernel(args: argparse.Namespace) -> Any:
    """The NTK/NNGP of the analytic options (refusing the empirical kernel's)."""
    from kernelcomp.kernels import NNGP, NTK

    empirical = {"--params": args.params != "all",
                 "--network-activation": args.network_activation is not None,
                 "--model": args.model is not None,
                 "--input-shape": args.input_shape is not None,
                 "--max-memory": args.max_memory is not None}
    flags = [k for k, v in empirical.items() if v]
    if flags:
        raise UsageError(f"{', '.join(flags)} {'needs' if len(flags) == 1 else 'need'} "
                         "--network")
    given = {k: getattr(args, k) for k in _ANALYTIC if hasattr(args, k)}
    defaults = {"depth": 1, "activation": "relu", "weight_std": 1.0, "bias_std": 0.0,
                "parameterization": "ntk", "width": None}
    cls = NTK if args.kernel == "ntk" else NNGP
    return cls(**{**defaults, **given})


def _network_kernel(args: argparse.Namespace) -> Any:
    """The empirical NTK/NNGP of the --network checkpoint (refusing analytic options)."""
    from kernelcomp.network import FCNetwork

    given = [k for k in _ANALYTIC if hasattr(args, k)]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags} describe an analytic kernel; they do not apply with "
                         "--network")
    from kernelcomp._checkpoints import load_network

    net = load_network(Path(args.network), args.network_activation, args.checkpoint,
                       model=args.model)
    if args.kernel == "ntk":
        return empirical_ntk(net, args.params, args.input_shape, args.dtype, args.max_memory)
    if args.params != "all" or args.input_shape is not None or args.max_memory is not None:
        flag = ("--params" if args.params != "all" else
                "--input-shape" if args.input_shape is not None else "--max-memory")
        raise UsageError(f"{flag} applies to --kernel ntk only")
    if not isinstance(net, FCNetwork):
        raise UsageError("--kernel nngp needs a kernelcomp network; the empirical kernel of a "
                         "PyTorch model is its NTK")
    from kernelcomp.empirical import EmpiricalNNGP

    return EmpiricalNNGP(net)


@contextlib.contextmanager
def _report_partial(out: Path) -> Iterator[None]:
    """Turn a hard interrupt into GramInterrupted, which says what is kept and where."""
    from kernelcomp import io

    try:
        yield
    except KeyboardInterrupt:
        partial = out.with_name(out.name + io.PARTIAL_SUFFIX)
        try:
            info = io.read_gram_info(partial)
        except (OSError, ValueError):
            raise KeyboardInterrupt from None
        raise io.GramInterrupted(partial, info.blocks_done, info.n_blocks) from None


def run(args: argparse.Namespace) -> int:
    """Compute the Gram file of ``args``; 0 on success."""
    from kernelcomp import io

    kernel = _network_kernel(args) if args.network is not None else _analytic_kernel(args)
    out = check_output(Path(args.output), args.force or args.resume)
    X = io.read_array(args.input, key=args.key, name="INPUT")
    Y = None if args.y is None else io.read_array(args.y, key=args.y_key, name="INPUT2")
    inputs = {"X": os.fspath(args.input), "X_key": args.key}
    if args.network is not None:
        inputs.update(network=os.fspath(args.network), checkpoint=args.checkpoint)
        if args.model is not None:
            inputs.update(model=args.model)
    if args.y is not None:
        inputs.update(Y=os.fspath(args.y), Y_key=args.y_key)
    t0 = time.perf_counter()
    with deferred_sigint() as should_stop, _report_partial(out):
        info = io.compute_gram_file(
            kernel,
            X,
            Y,
            out,
            dtype=args.dtype,
            n_jobs=args.n_jobs,
            progress=progress_on(args),
            resume=args.resume,
            force=args.force,
            block_rows=args.block_rows,
            inputs=inputs,
            should_stop=should_stop,
        )
    n, m = info.shape
    say(
        args,
        f"wrote {out}: {n} x {m} {info.dtype.name} {kernel!r} in "
        f"{time.perf_counter() - t0:.1f} s",
    )
    return 0
