"""
Hard-margin SVM and the hinge gradient flow on a frozen NTK
===========================================================

:class:`kernelcomp.NTKClassifier` fits the paper's kernel machine
F(x) = ∑_μ a_μ k(x, x_μ) (+ b) with the hinge loss, by two routes:

- ``solver="svc"``: scikit-learn's :class:`~sklearn.svm.SVC` on the kernelcomp Gram,
  a hard margin for a very large ``C``;
- ``solver="gradient_flow"``: gradient flow of the hinge loss from a = 0 until
  every training margin is ≥ 1, as in the authors' code
  (:func:`kernelcomp.training.kernel_gradient_flow`).

Both reach zero training error; they stop at different solutions (the SVM's is
the maximum margin one, the flow's is the first one with every margin ≥ 1).
The data are the stripe model in d = 2, so the decision boundaries can be drawn.
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc

X, y = kc.datasets.stripe(200, 2, seed=0)
X_test, y_test = kc.datasets.stripe(2000, 2, seed=0, split="test")
kernel = kc.curves.paper_ntk()  # the infinite-width NTK of the paper's network

svm = kc.NTKClassifier(kernel, C=1e20).fit(X, y)
flow = kc.NTKClassifier(kernel, solver="gradient_flow").fit(X, y)
for name, clf in (("hard-margin SVM", svm), ("gradient flow", flow)):
    print(f"{name:16s} train error {1 - clf.score(X, y):.3f}  "
          f"test error {1 - clf.score(X_test, y_test):.3f}  "
          f"support vectors {len(clf.support_)}")

# %%
# Decision functions
# ------------------
# The stripe (y = -1 for -0.3 < x₁ < 1.185) is invariant along x₂; with only 200
# points both machines bend their boundary where the data are sparse. The SVM's
# support vectors are circled; every coefficient of the flow is non-zero.
g = np.linspace(-3, 3, 120)
G = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained", sharey=True)
for ax, (name, clf) in zip(axes, (("hard-margin SVM", svm), ("gradient flow", flow)),
                           strict=True):
    F = clf.decision_function(G).reshape(len(g), len(g))
    scale = np.abs(F).max()
    ax.contourf(g, g, F, levels=20, cmap="RdBu_r", vmin=-scale, vmax=scale)
    ax.contour(g, g, F, levels=[0], colors="k")
    ax.scatter(*X.T, c=y, cmap="RdBu_r", s=10, edgecolors="k", linewidths=0.3)
    if clf is svm:  # the flow's coefficients are all non-zero
        ax.scatter(*X[clf.support_].T, s=40, facecolors="none", edgecolors="y", linewidths=0.8,
                   label="support vectors")
        ax.legend(loc="lower left", fontsize=8)
    for x1 in (-0.3, 1.18549):
        ax.axvline(x1, color="gray", ls=":")
    ax.set(title=f"{name}: test error {1 - clf.score(X_test, y_test):.3f}",
           xlabel="$x_1$ (informative)")
axes[0].set_ylabel("$x_2$ (uninformative)")

# %%
# The flow's history
# ------------------
# ``flow_result_`` holds the flow's history: the hinge loss and the number of
# training points whose margin is still below 1, against the flow time.
h = flow.flow_result_.history
fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
ax.plot(h["time"], h["loss"], label="hinge loss")
ax.plot(h["time"], h["n_unsat"] / len(y), label="fraction of margins < 1")
ax.set(xscale="log", yscale="log", xlabel="flow time", title="Hinge gradient flow")
ax.legend()
plt.show()
