"""
Analytic NTK and NNGP Gram matrices and their spectra
=====================================================

The infinite-width kernels of a fully connected ReLU network, :class:`kernelcomp.NTK`
and :class:`kernelcomp.NNGP`, on points of the sphere: the Gram matrix, the kernel
as a function of the angle between two inputs, and the eigenvalues of the Gram
(its kernel-PCA spectrum), whose power-law decay sets how fast a kernel machine
learns.
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp import plotting as kp

# %%
# A Gram matrix
# -------------
# 600 points uniform on the sphere in d = 3, sorted by their first coordinate so
# that the matrix shows its structure. Calling a kernel on one array gives the
# symmetric Gram (exactly symmetric, computed by a tiled, compiled core), on two
# arrays the cross Gram.
rng = np.random.default_rng(0)
X = rng.standard_normal((600, 3))
X /= np.linalg.norm(X, axis=1, keepdims=True)
X = X[np.argsort(X[:, 0])]

ntk = kc.NTK(depth=2, activation="relu", bias_std=0.1)
nngp = kc.NNGP(depth=2, activation="relu", bias_std=0.1)
K_ntk = ntk(X)
K_nngp = nngp(X)
print(K_ntk.shape, K_ntk.dtype, "symmetric:", np.array_equal(K_ntk, K_ntk.T))
print("cross Gram:", ntk(X[:5], X).shape, " diagonal alone:", ntk.diag(X[:3]))

fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
for ax, K, name in zip(axes, (K_ntk, K_nngp), ("NTK", "NNGP"), strict=True):
    im = ax.imshow(K, cmap="viridis")
    ax.set(title=f"{name}, depth 2 (points sorted by $x_1$)", xticks=[], yticks=[])
    fig.colorbar(im, ax=ax, shrink=0.8)

# %%
# The kernel as a function of the angle
# -------------------------------------
# For inputs of equal norm both kernels depend only on the angle θ between them.
# The NTK has a cusp at θ = 0 (the ReLU's kink), the NNGP is smoother; deeper
# networks give flatter kernels away from the diagonal.
theta = np.linspace(0, np.pi, 200)
x0 = np.array([[1.0, 0.0, 0.0]])
Xt = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=1)

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for depth, ls in ((1, "-"), (3, "--")):
    for kind, color in ((kc.NTK, "tab:red"), (kc.NNGP, "tab:blue")):
        k = kind(depth=depth, bias_std=0.1)
        v = k(x0, Xt)[0]
        ax.plot(theta, v / v[0], ls, color=color, label=f"{kind.__name__}, depth {depth}")
ax.set(xlabel=r"angle $\theta$ between the inputs", ylabel=r"$K(\theta) / K(0)$",
       title="Normalised kernels on the sphere")
ax.legend()

# %%
# Spectrum
# --------
# :func:`kernelcomp.diagnostics.kernel_pca` gives the top eigenpairs of a Gram
# (uncentred, as in the paper); :func:`kernelcomp.plotting.plot_spectra` draws
# spectra normalised by their trace. On the sphere both decay as power laws; the
# NTK's decays more slowly (its cusp holds more high-frequency power).
evs = [dg.kernel_pca(K, n_components=200) for K in (K_ntk, K_nngp)]
for name, ev in zip(("NTK", "NNGP"), evs, strict=True):
    fit = dg.spectrum_power_law(ev)
    print(f"{name}: top eigenvalue {ev.eigenvalues[0]:.1f}, "
          f"power-law exponent over ranks {fit.fit_range}: {fit.exponent:.2f}")

ax = kp.plot_spectra(evs, labels=["NTK", "NNGP"], traces=True)
ax.set_title("Kernel-PCA spectra (depth 2, 600 points on $S^2$)")
plt.show()
