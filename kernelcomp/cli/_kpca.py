"""``kernelcomp kpca``: kernel-PCA diagnostics of Gram files or of checkpoints' empirical NTK.

The diagnostics policy (what is computed per Gram matrix: spectrum, label
projection, mutual information, compression) is :func:`analyse`; the figures
across checkpoints are :func:`plots`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernelcomp._argtypes import int_list, n_jobs, positive_int
from kernelcomp.cli._common import (
    MAX_CURVES,
    UsageError,
    add_compression_convention,
    add_diagnostics_io,
    add_quiet,
    check_plot_dir,
    diagnostics_destination,
    evenly,
    progress_bar,
    progress_on,
    save_figure,
    say,
    write_diagnostics,
)
from kernelcomp.cli._sources import Source, add_torch_options, empirical_ntk, sources

#: without --n-components, kpca decomposes fully up to this n, else the top _DEFAULT_TOP
_ALL_COMPONENTS_UP_TO = 3000
_DEFAULT_TOP = 200
#: the share of ||y||^2 in the labels' mean above which kpca says so
_MEAN_SHARE_NOTE = 0.05


def add_parser(sub: Any) -> None:
    """Register ``kpca`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "kpca",
        help="kernel PCA diagnostics of Gram files or of checkpoints' empirical NTK",
        description=(
            "Uncentred kernel PCA (spectrum, label projection, mutual information) of a Gram "
            "file, or of the empirical NTK of every checkpoint of a run file, or of network "
            "checkpoints (.npz, .pt state dicts, .pt2 torch.export programs, run files) on "
            "--data/--labels."
        ),
    )
    p.add_argument("files", metavar="FILE", nargs="+", help="Gram/run .h5, .npz, .pt or .pt2 files")
    add_diagnostics_io(
        p, "kpca",
        labels_help="labels of --data or of a Gram file: two classes (as +-1), three or more "
                    "(integers or strings: centred one-hot P_k, KSG mutual information) or real "
                    "targets (floats)",
    )
    p.add_argument(
        "--split", choices=("train", "test"), default="train",
        help="which data of a run file (default: train)",
    )
    p.add_argument(
        "--params", default="all", metavar="P",
        help="parameters of the empirical NTK: all (default), last, headless",
    )
    p.add_argument(
        "--activation", metavar="A",
        help="activation of .pt / state-dict .npz checkpoints (default relu)",
    )
    add_torch_options(p)
    p.add_argument(
        "--n-components", type=positive_int, metavar="K",
        help="top eigenpairs (default: all up to n = 3000, else the top 200)"
    )
    p.add_argument(
        "--mi-components", type=positive_int, default=10, metavar="K",
        help="eigenvectors for the mutual information (default 10)",
    )
    p.add_argument(
        "--mi-k", type=positive_int, default=5, metavar="K", help="kNN k of the MI (default 5)"
    )
    p.add_argument(
        "--informative", type=int_list, metavar="J[,J...]",
        help="informative input directions (e.g. 0 or 0,1): also compute compression",
    )
    add_compression_convention(p)
    p.add_argument(
        "--eigenvectors", action="store_true", help="store the eigenvectors too"
    )
    p.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--dtype", choices=("float32", "float64"), help="dtype of the Gram matrices")
    p.add_argument("--n-jobs", type=n_jobs, metavar="N", help="threads (default: all)")
    p.add_argument("--force", action="store_true", help="overwrite DIAG.h5")
    add_quiet(p)
    p.set_defaults(func=run)


def analyse(K: np.ndarray, y: np.ndarray | None, net: Any, args: argparse.Namespace) -> dict:
    """The diagnostics of one Gram matrix: spectrum, label projection, MI, compression."""
    from kernelcomp import diagnostics as dg
    from kernelcomp.network import FCNetwork

    n = K.shape[0]
    if args.n_components is None and n > _ALL_COMPONENTS_UP_TO:
        # a full decomposition of a large Gram takes minutes per checkpoint
        k = min(_DEFAULT_TOP, n)
        print(
            f"kernelcomp kpca: n = {n}: computing the top {k} eigenpairs "
            "(pass --n-components N for more)",
            file=sys.stderr,
        )
    else:
        k = None if args.n_components is None else min(args.n_components, n)
    entry = dg.kpca_record(K, y, n_components=k, mi_components=args.mi_components,
                           mi_k=args.mi_k, eigenvectors=args.eigenvectors)
    if net is not None and args.informative is not None:
        if not isinstance(net, FCNetwork):
            raise UsageError("--informative (the compression of the first layer) needs "
                             "kernelcomp networks, not PyTorch models")
        entry["compression"] = float(dg.compression(
            net, informative=args.informative, convention=args.compression_convention))
    return entry


def run(args: argparse.Namespace) -> int:
    """Kernel PCA of every source of ``args`` into a diagnostics file; 0 on success."""
    out = diagnostics_destination(args)
    check_plot_dir(args.plot)
    if args.params not in ("all", "last", "headless"):
        raise UsageError(f"--params must be all, last or headless, got {args.params!r}")
    items = sources(args, "kpca")
    entries = []
    with progress_bar(args, items, "kernel PCA", "kernel") as iterator:
        stage = getattr(iterator, "set_postfix_str", lambda text: None)
        for s in iterator:
            stage(f"{s.label}: Gram")
            K, net = gram_of(s, args)
            stage(f"{s.label}: eigenpairs, projections, MI")
            entries.append({"label": s.label, "source": s.origin, **s.meta,
                            **analyse(K, s.y, net, args)})
            stage("")
    write_diagnostics(args, out, entries, _config(args),
                      f"kernel PCA of {len(entries)} Gram matrices")
    if args.plot is not None:
        written = plots(entries, [s.y for s in items], Path(args.plot))
        say(args, f"wrote {len(written)} figures into {args.plot}")
    if not getattr(args, "quiet", False):
        for e in entries:
            if "cumulative_projection" in e:
                lam = e.get("compression")
                lam_text = ("" if lam is None else
                            f", lambda {lam:.3f} ({args.compression_convention})")
                print(f"  {e['label']}: {summary(e)}{lam_text}")
        shares = [e["label_mean_share"] for e in entries if "label_mean_share" in e]
        if shares and max(shares) > _MEAN_SHARE_NOTE:
            print(f"kernelcomp kpca: the labels' mean carries {max(shares):.0%} of ||y||^2, "
                  "which P_k counts (uncentred, as in the paper); centre them to leave it "
                  "out", file=sys.stderr)
    return 0


def summary(e: dict[str, Any]) -> str:
    """One line of an entry's label diagnostics: P_10 (and its coding), the mean MI."""
    P = e["cumulative_projection"]
    top = P[min(9, P.size - 1)]
    coding = f" (one-hot, {e['n_classes']} classes)" if "n_classes" in e else ""
    mi = e.get("mutual_information")
    mi_text = ("" if mi is None else f", MI top-{mi.size} mean {float(np.mean(mi)):.3f} bit"
               + (" (KSG)" if e.get("mi_method") == "ksg" else ""))
    return f"P_10 = {top:.3f}{coding}{mi_text}"


def gram_of(s: Source, args: argparse.Namespace) -> tuple[np.ndarray, Any]:
    """The Gram matrix of a source (read, or the empirical NTK of its network) and the network."""
    if s.gram_path is not None:
        from kernelcomp import io

        return io.load_gram(s.gram_path), None
    from kernelcomp._gram import gram

    net = s.network()
    kernel = empirical_ntk(net, args.params, args.input_shape, args.dtype, args.max_memory)
    K = gram(kernel, s.X, dtype=args.dtype, n_jobs=args.n_jobs, progress=progress_on(args))
    return K, net


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": "kpca",
        "files": [os.fspath(f) for f in args.files],
        "data": args.data,
        "labels": args.labels,
        "split": args.split,
        "params": args.params,
        "n_components": args.n_components,
        "mi_components": args.mi_components,
        "mi_k": args.mi_k,
        "informative": args.informative,
        "compression_convention": args.compression_convention,
        "dtype": args.dtype,
        "model": args.model,
        "input_shape": args.input_shape,
    }


def plots(
    entries: list[dict[str, Any]], ys: list[np.ndarray | None], folder: Path
) -> list[Path]:
    """PNG figures of the diagnostics across entries (init -> final), one per quantity."""
    from kernelcomp import plotting

    folder.mkdir(parents=True, exist_ok=True)
    keep = evenly(len(entries), MAX_CURVES)
    entries = [entries[i] for i in keep]
    ys = [ys[i] for i in keep]
    origins = {e.get("source") for e in entries}
    if len(origins) == 1 and all("step" in e for e in entries):
        names = [f"step {e['step']}" for e in entries]  # one run: the file is in the title
    else:
        names = [str(e["label"]) for e in entries]
    figures: list[tuple[str, Callable[[Any], Any]]] = [
        ("spectrum.png", lambda ax: plotting.plot_spectra(
            [e["eigenvalues"] for e in entries], names, ax=ax,
            power_law=len(entries) == 1, traces=[e["trace"] for e in entries])),
    ]
    y0 = ys[0]
    same_y = y0 is not None and not any("n_classes" in e for e in entries) and all(
        y is not None and y.shape == y0.shape and float(y @ y) == float(y0 @ y0) for y in ys
    )
    if same_y:
        projections = [e["label_projection"] for e in entries]
        figures.append(("label_projection.png", lambda ax: plotting.plot_label_projections(
            projections, y0, names, ax=ax)))
        figures.append(("cumulative_projection.png",
                        lambda ax: plotting.plot_cumulative_projections(
                            projections, y0, names, ax=ax)))
    if all("mutual_information" in e for e in entries):
        floors = [e["mutual_information_floor"] for e in entries
                  if "mutual_information_floor" in e]
        figures.append(("mutual_information.png", lambda ax: plotting.plot_mutual_informations(
            [e["mutual_information"] for e in entries], names, ax=ax,
            floor=float(np.mean(floors)) if floors else None)))
    title = os.path.basename(origins.pop()) if len(origins) == 1 else None
    return [save_figure(folder / fname, draw, title) for fname, draw in figures]
