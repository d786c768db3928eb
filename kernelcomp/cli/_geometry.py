"""``kernelcomp geometry``: neurons, attractors, layer geometry, Gauss-Newton spectra, trajectories.

For every network (a network file, or each checkpoint of a run file) on its
points: the attractors of a hidden layer (groups of neurons with one activation
pattern) and whether merging them is exact, the geometry of every hidden
representation (covariance spectrum, power-law exponent, effective rank, TwoNN
intrinsic dimension), the Gauss-Newton spectrum from the empirical NTK Gram,
and the compression with ``--informative``; for every run file, the InPCA
embedding of its training trajectory. The entries go into a diagnostics file
(or the run file, ``--into-run``), the figures into ``--plot DIR``.

References
----------
Paccolat et al. (2021), §4 and figure 2 (neurons in the ``(omega_par,
||omega_perp||)`` plane); Ansuini et al. (2019) (intrinsic dimension of the
representations); Quinn et al. (2019), Mao et al. (2024) (InPCA of training
trajectories, sloppy spectra).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
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
    save_figure,
    say,
    write_diagnostics,
)
from kernelcomp.cli._sources import Source, sources

#: most networks drawn side by side in neurons.png (evenly spaced, init and final kept)
_MAX_PANELS = 4
#: without --gauss-newton, the Gauss-Newton spectrum (an NTK Gram and a full p x p
#: eigendecomposition: about three p x p float64 matrices held at once, 9.6 GB at
#: p = 20000) is computed up to this many points
_GAUSS_NEWTON_UP_TO = 3000


def add_parser(sub: Any) -> None:
    """Register ``geometry`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "geometry",
        help="neurons, attractors, layer geometry, Gauss-Newton spectra, trajectories",
        description=(
            "Geometry diagnostics of kernelcomp networks: attractors of a hidden layer, "
            "the covariance spectrum, effective rank and intrinsic dimension of every hidden "
            "representation, the Gauss-Newton spectrum from the empirical NTK, and the InPCA "
            "embedding of a run's training trajectory; for a network file or every "
            "checkpoint of a run file."
        ),
    )
    p.add_argument("files", metavar="FILE", nargs="+", help="run .h5, network .h5 or .npz files")
    add_diagnostics_io(p, "geometry", labels_help="labels (+-1) of --data")
    p.add_argument(
        "--split", choices=("train", "test"), default="train",
        help="which data of a run file (default: train); the trajectory is read on it too",
    )
    p.add_argument(
        "--activation", metavar="A",
        help="activation of a state-dict .npz network (default relu)",
    )
    p.add_argument(
        "--layer", type=int, default=0, metavar="L",
        help="hidden layer of the attractors (default 0, the first)",
    )
    p.add_argument(
        "--informative", type=int_list, metavar="J[,J...]",
        help="informative input directions (e.g. 0): compression, and neurons.png",
    )
    add_compression_convention(p)
    p.add_argument(
        "--gauss-newton", action="store_true",
        help=f"the Gauss-Newton spectrum beyond {_GAUSS_NEWTON_UP_TO} points too (a full "
             "eigendecomposition of the n x n NTK Gram; about 3 such matrices in memory)",
    )
    p.add_argument(
        "--trajectory-components", type=positive_int, default=3, metavar="K",
        help="InPCA components of a run's trajectory (default 3)",
    )
    p.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--dtype", choices=("float32", "float64"), help="dtype of the NTK Grams")
    p.add_argument("--n-jobs", type=n_jobs, metavar="N", help="threads (default: all)")
    p.add_argument("--force", action="store_true", help="overwrite DIAG.h5")
    add_quiet(p)
    p.set_defaults(func=run, model=None)


def run(args: argparse.Namespace) -> int:
    """The geometry diagnostics of every network of ``args``; 0 on success."""
    out = diagnostics_destination(args)
    check_plot_dir(args.plot)
    items = sources(args, "geometry", grams=False)
    n_max = max(s.X.shape[0] for s in items)
    if n_max > _GAUSS_NEWTON_UP_TO and not args.gauss_newton:
        print(f"kernelcomp geometry: n = {n_max}: no Gauss-Newton spectrum beyond "
              f"{_GAUSS_NEWTON_UP_TO} points (pass --gauss-newton for it)", file=sys.stderr)
    entries: list[dict[str, Any]] = []
    nets: list[Any] = []
    with progress_bar(args, items, "geometry", "network") as iterator:
        for s in iterator:
            net = _network(s)
            entries.append({"label": s.label, "source": s.origin, **s.meta,
                            **analyse(net, s.X, args)})
            nets.append(net)
    trajectories = {origin: _trajectory(origin, args) for origin in _run_files(items)}
    for origin, emb in trajectories.items():
        entries.append(_trajectory_entry(origin, emb))
    write_diagnostics(args, out, entries, _config(args),
                      f"geometry of {len(nets)} networks"
                      + (f", {len(trajectories)} trajectories" if trajectories else ""))
    if args.plot is not None:
        written = plots(entries[: len(nets)], nets, items, trajectories, args, Path(args.plot))
        say(args, f"wrote {len(written)} figures into {args.plot}")
    if not getattr(args, "quiet", False):
        for e in entries[: len(nets)]:
            ids = ", ".join(f"{v:.2f}" for v in e["intrinsic_dimension"])
            gn = e.get("gauss_newton_n_effective")
            print(f"  {e['label']}: {e['n_attractors']} attractors of {e['n_neurons']} "
                  f"neurons, intrinsic dimension {ids}"
                  + ("" if gn is None else f", Gauss-Newton n_eff {gn}"))
    return 0


def _network(s: Source) -> Any:
    from kernelcomp.network import FCNetwork

    net = s.network()
    if not isinstance(net, FCNetwork):
        raise UsageError(f"{s.origin}: geometry reads kernelcomp networks (FCNetwork), not "
                         "PyTorch models")
    return net


def analyse(net: Any, X: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The geometry diagnostics of one network on its points ``X``."""
    from kernelcomp import diagnostics as dg
    from kernelcomp._gram import gram
    from kernelcomp.empirical import EmpiricalNTK

    if not -net.depth <= args.layer < net.depth:
        raise UsageError(f"--layer {args.layer} is out of range for a network with "
                         f"{net.depth} hidden layer(s)")
    att = dg.attractors(net, X, layer=args.layer)
    entry: dict[str, Any] = {
        "n_samples": int(X.shape[0]),
        "n_neurons": att.n_neurons,
        "attractor_layer": att.layer,
        "n_attractors": att.n_attractors,
        "n_dead": int(att.sizes[att.dead].sum()),
        "attractor_criterion": att.criterion,
        "attractor_labels": att.labels,
        "attractor_sizes": att.sizes,
        "attractor_beta_share": att.beta_share,
    }
    if net.n_outputs == 1 and att.layer == net.depth - 1:
        with warnings.catch_warnings():  # "not exact" is stored, not warned about
            warnings.simplefilter("ignore", RuntimeWarning)
            merged, exact = dg.attractor_network(net, X, layer=att.layer)
        entry["attractor_network_neurons"] = int(merged.widths[-1])
        entry["attractor_network_exact"] = bool(exact)
    geo = dg.layer_geometry(net, X)
    entry["intrinsic_dimension"] = np.asarray(geo.intrinsic_dimensions, dtype=float)
    entry["effective_rank"] = np.asarray(geo.effective_ranks, dtype=float)
    entry["power_law_exponent"] = np.asarray(geo.exponents, dtype=float)
    for layer, ev in enumerate(geo.eigenvalues):
        entry[f"covariance_eigenvalues_{layer}"] = np.asarray(ev)
    if X.shape[0] <= _GAUSS_NEWTON_UP_TO or args.gauss_newton:
        K = gram(EmpiricalNTK(net), X, dtype=args.dtype, n_jobs=args.n_jobs)
        gn = dg.gauss_newton_spectrum(K)
        del K
        entry.update({
            "gauss_newton_eigenvalues": gn.eigenvalues,
            "gauss_newton_n_effective": int(gn.n_effective),
            "gauss_newton_tol": float(gn.tol),
            "gauss_newton_decades": float(gn.decades),
            "gauss_newton_log_spacing_mean": float(gn.log_spacing_mean),
            "gauss_newton_log_spacing_std": float(gn.log_spacing_std),
        })
    if args.informative is not None:
        entry["compression"] = float(dg.compression(
            net, informative=args.informative, convention=args.compression_convention))
    return entry


def _run_files(items: list[Source]) -> list[str]:
    """The run files among the sources, once each, in order."""
    return list(dict.fromkeys(s.origin for s in items if "step" in s.meta))


def _trajectory(origin: str, args: argparse.Namespace) -> Any:
    from kernelcomp import diagnostics as dg

    X = None
    if args.data is not None:  # the trajectory on --data, like the other diagnostics
        from kernelcomp import io

        X = io.read_array(args.data, key=args.data_key, name="--data")
    return dg.trajectory_embedding(origin, split=args.split, X=X,
                                   n_components=args.trajectory_components)


def _trajectory_entry(origin: str, emb: Any) -> dict[str, Any]:
    return {
        "label": f"{Path(origin).stem}:trajectory",
        "source": origin,
        "trajectory_coordinates": emb.coordinates,
        "trajectory_eigenvalues": emb.eigenvalues,
        "trajectory_explained_fraction": emb.explained_fraction,
        "trajectory_steps": emb.steps,
        "trajectory_times": emb.times,
        "trajectory_split": emb.split,
        "n_samples": int(emb.n_points),
    }


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": "geometry",
        "files": [os.fspath(f) for f in args.files],
        "data": args.data,
        "labels": args.labels,
        "split": args.split,
        "layer": args.layer,
        "informative": args.informative,
        "compression_convention": args.compression_convention,
        "trajectory_components": args.trajectory_components,
        "loss_curvature": "identity (the square loss)",
        "dtype": args.dtype,
    }


def plots(entries: list[dict[str, Any]], nets: list[Any], items: list[Source],
          trajectories: dict[str, Any], args: argparse.Namespace, folder: Path) -> list[Path]:
    """neurons.png (with --informative), layer_geometry.png, gauss_newton.png, trajectory_*.png."""
    from kernelcomp import diagnostics as dg
    from kernelcomp import plotting
    from kernelcomp.plotting import _style
    from kernelcomp.plotting._geometry import neurons_figure

    folder.mkdir(parents=True, exist_ok=True)
    names = [f"step {e['step']}" if "step" in e else str(e["label"]) for e in entries]
    written = []
    if args.informative is not None:
        keep = evenly(len(nets), _MAX_PANELS)
        fig = neurons_figure([nets[i] for i in keep], args.informative,
                             [items[i].X for i in keep], [names[i] for i in keep])
        _style.save_figure(fig, folder / "neurons.png")
        written.append(folder / "neurons.png")
    last = len(nets) - 1
    written.append(save_figure(
        folder / "layer_geometry.png",
        lambda ax: plotting.plot_layer_geometry(dg.layer_geometry(nets[last], items[last].X),
                                                ax=ax),
        f"{entries[last]['label']}: hidden representations"))
    with_gn = [i for i, e in enumerate(entries) if "gauss_newton_eigenvalues" in e]
    keep = [with_gn[i] for i in evenly(len(with_gn), MAX_CURVES)]
    if keep:
        written.append(save_figure(
            folder / "gauss_newton.png",
            lambda ax: plotting.plot_spectra(
                [entries[i]["gauss_newton_eigenvalues"] for i in keep],
                [names[i] for i in keep], ax=ax),
            "Gauss-Newton spectrum (1/p) J^T J"))
    for origin, emb in trajectories.items():
        if emb.n_components >= 2:
            written.append(save_figure(folder / f"trajectory_{Path(origin).stem}.png",
                                       lambda ax, emb=emb: plotting.plot_trajectory(emb, ax=ax),
                                       f"{os.path.basename(origin)}: InPCA trajectory"))
    return written

