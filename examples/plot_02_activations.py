"""
Activations compared
====================

The same one-hidden-layer architecture with different activations. ReLU and erf
have closed-form kernels; every other activation of :class:`kernelcomp.FCNetwork`
(tanh, GELU, SiLU, softplus, ...) is computed by Gauss-Hermite quadrature, to
about 1e-10 but much more slowly per entry, so this example evaluates them on a
few hundred pairs only.
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc

# %%
# Kernels against the angle
# -------------------------
# Unit inputs at angle θ from a reference point. Each curve is normalised by
# its value at θ = 0. Smooth activations give kernels smooth at θ = 0; the ReLU
# family has the NTK's cusp. ``"relu_unit"`` is √2·max(z, 0), the paper's
# ReLU: the same shape as ``"relu"``, twice the scale.
theta = np.linspace(0, np.pi, 120)
x0 = np.array([[1.0, 0.0]])
Xt = np.stack([np.cos(theta), np.sin(theta)], axis=1)

activations = ["relu", "relu_unit", "erf", "tanh", "gelu", "softplus"]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained", sharey=True)
for act in activations:
    for ax, kind in zip(axes, (kc.NTK, kc.NNGP), strict=True):
        v = kind(depth=1, activation=act, bias_std=0.2)(x0, Xt)[0]
        ax.plot(theta, v / v[0], label=act)
for ax, kind in zip(axes, ("NTK", "NNGP"), strict=True):
    ax.set(xlabel=r"angle $\theta$", title=f"{kind}, one hidden layer")
axes[0].set_ylabel(r"$K(\theta) / K(0)$")
axes[1].legend()

# %%
# Scale
# -----
# The kernels are not scale-invariant: for the ReLU an input twice as long gives
# a kernel four times as large (it is homogeneous of degree 2 without bias), for
# bounded activations such as erf the kernel saturates. This is why rescaling
# the inputs (e.g. a ``StandardScaler`` in front of a kernel machine) changes
# the machine, not only its regularisation.
r = np.geomspace(0.1, 10, 40)
fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for act in ("relu", "erf", "tanh"):
    k = kc.NTK(depth=1, activation=act, bias_std=0.0)
    ax.plot(r, k.diag(r[:, None] * np.array([[1.0, 0.0]])), label=act)
ax.set(xscale="log", yscale="log", xlabel="input norm $|x|$",
       ylabel=r"$\Theta(x, x)$", title="NTK diagonal against the input norm")
ax.legend()
plt.show()
