"""
Learning curves and their exponents
===================================

Test error against the number of training points p decays as a power law,
ε ∝ p^(−β). For the stripe model in dimension d the paper predicts
β = d / (3d − 2) in the lazy regime (a kernel machine with the initial NTK,
:func:`kernelcomp.curves.beta_lazy`) and the larger
β = (2d − 1) / (3d − 2) in the feature regime, where the network compresses
the uninformative directions (:func:`kernelcomp.curves.beta_feature`).

:func:`kernelcomp.curves.learning_curve` runs any estimator or training recipe
over sizes and seeds, :func:`kernelcomp.curves.frozen_kernel_curve` the paper's
frozen-kernel SVM, and ``fit_exponent`` fits β with a bootstrap interval over
seeds. The sizes here are small (seconds, not hours): the exponents are rough.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

import kernelcomp as kc
from kernelcomp import diagnostics as dg

d = 5
seeds = [0, 1, 2]

# %%
# Lazy: a hard-margin SVM on the frozen initial NTK
# -------------------------------------------------
lazy = kc.curves.frozen_kernel_curve("stripe", [64, 128, 256, 512], d=d, seeds=seeds,
                                     n_test=1000)
fit_lazy = lazy.fit_exponent()
print(f"frozen initial NTK: beta = {fit_lazy.beta:.2f} "
      f"[{fit_lazy.ci[0]:.2f}, {fit_lazy.ci[1]:.2f}], theory {kc.curves.beta_lazy(d):.3f}")


# %%
# Feature: the trained network
# ----------------------------
# A recipe receives the training and test sets and a seed and returns the test
# error, here with the compression at t* as an extra metric (collected in
# ``metrics``).
def train_feature(X, y, X_test, y_test, seed, h=64):
    net = kc.FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field",
                            seed=seed)
    run = kc.training.train(net, X, y, alpha=0.05 / np.sqrt(h), max_steps=5000)
    return {"test_error": run.test_error(X_test, y_test),
            "compression": dg.compression_at(run, informative=[0])}


feature = kc.curves.learning_curve(train_feature, "stripe", [32, 64, 128], d=d,
                                   seeds=seeds[:2], n_test=1000)
fit_feature = feature.fit_exponent()
print(f"trained network (feature): beta = {fit_feature.beta:.2f} "
      f"[{fit_feature.ci[0]:.2f}, {fit_feature.ci[1]:.2f}], "
      f"theory {kc.curves.beta_feature(d):.3f}")
print("compression at t* (rows p, columns seeds):")
print(np.round(feature.metrics["compression"], 1))

# %%
# The curves
# ----------
# Dotted lines: the fitted power laws. The theory's exponents are asymptotic
# (large p, and for the feature regime large width); they are drawn with the
# prefactor of the fit, for their slope only.
fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
for lc, fit, color, name, beta_th in (
        (lazy, fit_lazy, "tab:blue", "lazy: frozen initial NTK", kc.curves.beta_lazy(d)),
        (feature, fit_feature, "tab:red", "feature: trained network",
         kc.curves.beta_feature(d))):
    p = lc.p.astype(float)
    sem = lc.test_error.std(axis=1) / np.sqrt(lc.test_error.shape[1])
    ax.errorbar(p, lc.mean(), yerr=sem, fmt="o", color=color, capsize=2,
                label=f"{name}: fit β = {fit.beta:.2f}")
    ax.plot(p, np.exp(fit.intercept) * p ** -fit.beta, ":", color=color)
    ax.plot(p, np.exp(fit.intercept) * p[0] ** -fit.beta * (p / p[0]) ** -beta_th, "--",
            color=color, alpha=0.5, lw=1, label=f"theory slope β = {beta_th:.3f}")
ax.set(xscale="log", yscale="log", xlabel="training set size p", ylabel="test error",
       title=f"Stripe model, d = {d}")
ax.set_xticks([32, 64, 128, 256, 512], labels=["32", "64", "128", "256", "512"])
ax.xaxis.set_minor_formatter(NullFormatter())
ax.legend(fontsize=8)
plt.show()
