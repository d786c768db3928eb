"""
Feature and lazy training of the stripe model: the compression λ
=================================================================

The paper's experiment in small: the one-hidden-layer network
f(x) = (1/h) ∑_n β_n σ(ω_n · x / √d + b_n) learns the stripe model (labels set by
x₁ alone, d = 5) by gradient flow of the hinge loss on α (f − f₀), with the
scale α deciding the regime (:func:`kernelcomp.training.train`):

- **feature regime**, α√h small: the first-layer weights move, and the network
  *compresses* the four uninformative directions. The compression
  λ = w₁ / mean_{j≥2} w_j (w_j the RMS of the first-layer weights on input j,
  :func:`kernelcomp.diagnostics.compression`) grows far above its initial
  value;
- **lazy regime**, α√h large: the weights hardly move, the network is its
  initial tangent kernel and λ stays where it started.

The paper reads λ at t*, the first checkpoint where more than 10 % of the
training margins are ≥ 1 (:func:`kernelcomp.diagnostics.compression_at`).
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc
from kernelcomp import diagnostics as dg

d, h, p = 5, 64, 128
X, y = kc.datasets.stripe(p, d, seed=0)
X_test, y_test = kc.datasets.stripe(2000, d, seed=0, split="test")
alphas = {"feature": 0.05 / np.sqrt(h), "lazy": 1000 / np.sqrt(h)}

runs = {}
for regime, alpha in alphas.items():
    net = kc.FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field",
                            seed=0)
    runs[regime] = kc.training.train(net, X, y, alpha=alpha, X_test=X_test, y_test=y_test,
                                     max_steps=5000)
    run = runs[regime]
    print(f"{regime:7s} alpha*sqrt(h) = {alpha * np.sqrt(h):g}: {run.status} after "
          f"{run.final.step} steps, test error {run.test_error(X_test, y_test):.3f}, "
          f"lambda(t*) = {dg.compression_at(run, informative=[0]):.2f}, "
          f"lambda(end) = {dg.compression(run.net, [0], convention='figures'):.2f}")

# %%
# Compression and test error along training
# -----------------------------------------
# Checkpoints are taken on a geometric schedule of steps and at milestones (t*
# among them). In the feature regime λ rises by an order of magnitude around
# t* and falls back somewhat at the end, when the last margins are fitted (the
# authors' over-fitting phase); the lazy network's λ does not move.
colors = {"feature": "tab:red", "lazy": "tab:blue"}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.8), layout="constrained")
for regime, run in runs.items():
    t = np.array([ck.time for ck in run.checkpoints])
    lam = [dg.compression(ck.net, [0], convention="figures") for ck in run.checkpoints]
    err = [ck.test_error for ck in run.checkpoints]
    k = dg.t_star(run)
    ax1.plot(t[1:], lam[1:], "o-", ms=3, color=colors[regime], label=regime)
    ax1.plot(t[k], lam[k], "k*", ms=10)
    ax2.plot(t[1:], err[1:], "o-", ms=3, color=colors[regime], label=regime)
ax1.plot([], [], "k*", label="$t^*$")
ax1.set(xscale="log", yscale="log", xlabel="flow time t", ylabel=r"compression $\lambda$",
        title="First-layer compression")
ax2.set(xscale="log", xlabel="flow time t", ylabel="test error", title="Test error")
ax1.legend()
ax2.legend()

# %%
# The first-layer weights
# -----------------------
# Each neuron's weight on the informative input against the norm of its weights
# on the others, at initialisation and at the end (both networks started from
# the same weights). The feature network's neurons leave the cloud along x₁;
# :doc:`the neurons example <plot_10_neurons_attractors>` follows them in detail.
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), layout="constrained", sharey=True)
for ax, (regime, run) in zip(axes, runs.items(), strict=True):
    for net, style, name in ((run.net0, "o", "init"), (run.net, "x", "end")):
        W = net.weights[0]
        ax.plot(W[:, 0], np.linalg.norm(W[:, 1:], axis=1), style, ms=4, label=name,
                color="gray" if name == "init" else colors[regime])
    ax.set(title=regime, xlabel=r"$\omega_{n,1}$ (informative)")
    ax.legend()
axes[0].set_ylabel(r"$\|\omega_{n,\perp}\|$")
plt.show()
