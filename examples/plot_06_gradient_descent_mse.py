"""
Learning dynamics of a wide network: ``kc.predict``
===================================================

A wide network trained by gradient flow on the mean squared error evolves as its
linearisation (Lee et al. 2019): with the NTK Θ of the training set, the
training outputs relax as f_t = y + exp(-ηΘt/N)(f₀ - y), every eigenmode of Θ at
its own rate. :func:`kernelcomp.predict.gradient_descent_mse` gives these outputs
(and the test outputs) at any time from one eigendecomposition;
:func:`kernelcomp.predict.gradient_descent_mse_ensemble` gives the mean and the
covariance over the infinite ensemble of random initialisations (outputs at
initialisation drawn from the NNGP), as neural-tangents' functions of the same
names.
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc

# %%
# Losses against time
# -------------------
# The stripe model in d = 5 with the depth-2 ReLU NTK; zero outputs at
# initialisation (the mean of the ensemble).
X, y = kc.datasets.stripe(300, 5, seed=0)
X_test, y_test = kc.datasets.stripe(1000, 5, seed=0, split="test")
ntk = kc.NTK(depth=2, bias_std=0.1)
K = ntk(X)
predict_fn = kc.predict.gradient_descent_mse(K, y)

t = np.concatenate([[0.0], np.geomspace(1e-2, 1e5, 60)])
f_train, f_test = predict_fn(t, k_test_train=ntk(X_test, X))  # shapes (61, 300), (61, 1000)
train_loss = 0.5 * np.mean((f_train - y) ** 2, axis=1)
test_loss = 0.5 * np.mean((f_test - y_test) ** 2, axis=1)
test_error = np.mean(np.sign(f_test) != y_test, axis=1)
print(f"t = inf: train loss {0.5 * np.mean((predict_fn(np.inf) - y) ** 2):.2e}, "
      f"test error {test_error[-1]:.3f}")

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
ax.plot(t[1:], train_loss[1:], label="train loss")
ax.plot(t[1:], test_loss[1:], label="test loss")
ax.plot(t[1:], test_error[1:], "--", label="test error (sign)")
ax.set(xscale="log", yscale="log", xlabel=r"training time $t$ ($\eta = 1$)",
       title="MSE gradient flow of the infinitely wide network")
ax.legend()

# %%
# Eigenmodes
# ----------
# The label's component along the r-th eigenvector of Θ decays as
# exp(-λ_r t / N): the top modes are learnt first, which is why the spectrum of
# the kernel (and how much of the labels sits in its top modes) controls how
# fast the network learns.
lam, phi = np.linalg.eigh(K)
lam, phi = lam[::-1], phi[:, ::-1]
residual = (f_train - y) @ phi  # components of f_t - y on the eigenvectors
fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for r in (0, 3, 30, 200):
    ax.plot(t[1:], np.abs(residual[1:, r]) / (np.abs(residual[0, r]) + 1e-300),
            label=rf"mode {r + 1}, $\lambda$={lam[r]:.2g}")
ax.set(xscale="log", ylim=(-0.05, 1.05), xlabel="training time $t$",
       ylabel="remaining fraction", title="Each eigenmode relaxes at its own rate")
ax.legend(fontsize=8)

# %%
# The ensemble of networks
# ------------------------
# On a one-dimensional cut through the input space (x₁ varies, the other
# coordinates are zero), the mean prediction of the ensemble and its standard
# deviation over initialisations, at three times. At t = 0 the mean is zero and
# the spread is the NNGP prior's; training pulls the mean to the labels and
# shrinks the spread near the training points.
x1 = np.linspace(-3, 3, 150)
X_cut = np.zeros((len(x1), 5))
X_cut[:, 0] = x1
ens = kc.predict.gradient_descent_mse_ensemble(ntk, X, y)
fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for time, color in ((1.0, "tab:orange"), (100.0, "tab:green"), (np.inf, "tab:blue")):
    mean, cov = ens(time, X_cut, compute_cov=True)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    ax.plot(x1, mean, color=color, label=f"t = {time:g}")
    ax.fill_between(x1, mean - std, mean + std, color=color, alpha=0.2)
ax.step(x1, np.where((x1 > -0.3) & (x1 < 1.18549), -1, 1), "k:", where="mid",
        label="stripe labels")
ax.set(xlabel="$x_1$ (other coordinates 0)", ylabel="output",
       title="Ensemble mean ± one standard deviation")
ax.legend(fontsize=8)
plt.show()
