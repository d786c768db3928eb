"""
Empirical NTK of a finite network against the analytic kernel
=============================================================

The empirical NTK of a network at initialisation, Θ(x, y) = ∑_θ ∂f(x)/∂θ · ∂f(y)/∂θ,
is random; as the width grows it concentrates on the analytic (infinite-width)
NTK (Jacot et al. 2018), with fluctuations of order 1/√width.
:class:`kernelcomp.EmpiricalNTK` computes it layer by layer from matrix products,
never through the n × P Jacobian.
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc

# %%
# Relative error against the width
# --------------------------------
# Networks of two hidden layers in the NTK parameterization with the same weight
# and bias standard deviations as the analytic kernel; three initialisations per
# width.
rng = np.random.default_rng(0)
X = rng.standard_normal((100, 5))
stds = {"weight_std": 1.0, "bias_std": 0.1}
K_inf = kc.NTK(depth=2, **stds)(X)

widths = [16, 64, 256, 1024, 2048]
seeds = [0, 1, 2]
errors = np.empty((len(widths), len(seeds)))
for i, w in enumerate(widths):
    for j, seed in enumerate(seeds):
        net = kc.FCNetwork.init(5, [w, w], parameterization="ntk", seed=seed, **stds)
        K = kc.EmpiricalNTK(net)(X)
        errors[i, j] = np.linalg.norm(K - K_inf) / np.linalg.norm(K_inf)
    print(f"width {w:5d}: relative Frobenius error {errors[i].mean():.4f}")

slope = np.polyfit(np.log(widths), np.log(errors.mean(axis=1)), 1)[0]
print(f"log-log slope {slope:.2f} (theory -0.5)")

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
ax.plot(np.repeat(widths, len(seeds)), errors.ravel(), ".", color="tab:gray", alpha=0.6)
ax.plot(widths, errors.mean(axis=1), "o-", label=f"mean over seeds (slope {slope:.2f})")
w = np.asarray(widths, dtype=float)
ax.plot(w, errors.mean(axis=1)[0] * (w / w[0]) ** -0.5, "k:", label=r"$\propto$ width$^{-1/2}$")
ax.set(xscale="log", yscale="log", xlabel="hidden width",
       ylabel=r"$\|\hat\Theta - \Theta\|_F / \|\Theta\|_F$",
       title="Empirical NTK at initialisation vs analytic NTK")
ax.legend()

# %%
# One row of the kernel
# ---------------------
# The kernel between the first point and the others, for a narrow and a wide
# network, against the analytic values.
order = np.argsort(K_inf[0])
fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for w, color in ((16, "tab:orange"), (2048, "tab:green")):
    net = kc.FCNetwork.init(5, [w, w], parameterization="ntk", seed=0, **stds)
    ax.plot(kc.EmpiricalNTK(net)(X[:1], X)[0, order], ".", color=color, label=f"width {w}")
ax.plot(K_inf[0, order], "k-", label="analytic NTK")
ax.set(xlabel="points, sorted by the analytic kernel", ylabel=r"$\Theta(x_0, x)$",
       title="One row of the Gram")
ax.legend()
plt.show()
