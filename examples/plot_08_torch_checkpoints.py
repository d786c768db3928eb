"""
Kernel PCA of a PyTorch model's checkpoints
===========================================

The empirical NTK of any :class:`torch.nn.Module` comes from
:class:`kernelcomp.TorchNTK` (per-sample Jacobians by ``torch.func``, in row
blocks). Here a small convolutional network learns the parity of scikit-learn's
8 × 8 digits; the NTK of three checkpoints (initialisation, early, end) on the
same 300 digits is decomposed by kernel PCA. Even this short training moves the
kernel towards the task: the labels' share of the top eigenvectors (P_k) and the
kernel's alignment with them grow.

This example needs the optional PyTorch extra (``pip install "kernelcomp[torch]"``);
without it, it prints a message and draws nothing.
"""

import copy

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp import plotting as kp

try:
    import torch
    from torch import nn
except ImportError:
    torch = None
    print("PyTorch is not installed: this example is skipped "
          "(pip install 'kernelcomp[torch]' to run it).")

# %%
# Training, keeping checkpoints
# -----------------------------
# Full-batch Adam on the squared error for 200 steps, in float32; a checkpoint
# is a deep copy of the module (a saved ``state_dict`` would do the same job).
X, y = kc.datasets.digits_parity(seed=0)
X_train, y_train = X[:500], y[:500]
X_kpca, y_kpca = X[500:800], y[500:800]
X_test, y_test = X[800:], y[800:]

if torch is not None:
    torch.set_num_threads(1)  # a model this small runs fastest on one thread
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 1),
    )
    images = torch.from_numpy(X_train).float().reshape(-1, 1, 8, 8)
    targets = torch.from_numpy(y_train).float()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    checkpoints = {0: copy.deepcopy(model)}
    for step in range(1, 201):
        opt.zero_grad()
        loss = 0.5 * ((model(images).squeeze(1) - targets) ** 2).mean()
        loss.backward()
        opt.step()
        if step in (30, 200):
            checkpoints[step] = copy.deepcopy(model)
    with torch.no_grad():
        out = model(torch.from_numpy(X_test).float().reshape(-1, 1, 8, 8)).squeeze(1).numpy()
    print(f"final training loss {loss.item():.3f}, "
          f"test error {np.mean(np.sign(out) != y_test):.3f}")

# %%
# The empirical NTK of each checkpoint
# ------------------------------------
# kernelcomp's inputs are rows; ``input_shape`` says how a row becomes one sample
# of the module. The kernel keeps a frozen copy of the module (cast to float64 by
# default), so training on does not change it.
if torch is not None:
    results = []
    for step, net in checkpoints.items():
        K = kc.TorchNTK(net, input_shape=(1, 8, 8))(X_kpca)
        results.append(dg.kernel_pca(K, n_components=60))
        mi = dg.mutual_information(results[-1].eigenvectors, y_kpca, n_components=10)
        P = dg.cumulative_projection(dg.label_projection(results[-1].eigenvectors, y_kpca),
                                     y_kpca)
        print(f"step {step:3d}: P_10 = {P[9]:.2f}, P_30 = {P[29]:.2f}, "
              f"alignment with the labels {dg.kernel_alignment(K, y_kpca):.3f}, "
              f"max MI (top 10) = {mi.max():.2f} bit")

# %%
# Checkpoints on disk: ``torch.export`` programs
# ----------------------------------------------
# A checkpoint saved as a ``torch.export`` program (``.pt2``) holds its model:
# ``torch.export.load`` gives it back without the model's code, and
# ``kernelcomp kpca ckpt.pt2 --data X.npy`` or ``kernelcomp gram X.npy --network
# ckpt.pt2`` read it the same way. Export in eval mode with a dynamic batch
# dimension; the program knows the shape of one sample (no ``input_shape``),
# and its kernel is the eager module's.
if torch is not None:
    import os
    import tempfile

    sample = torch.zeros(2, 1, 8, 8)
    program = torch.export.export(model.eval(), (sample,),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "final.pt2")
        torch.export.save(program, path)
        K_file = kc.TorchNTK(torch.export.load(path))(X_kpca)
    K_eager = kc.TorchNTK(model, input_shape=(1, 8, 8))(X_kpca)
    print(f"NTK of the .pt2 file vs the eager module: largest relative difference "
          f"{np.abs(K_file - K_eager).max() / np.abs(K_eager).max():.1e}")

# %%
# Kernel-PCA diagnostics along training
# -------------------------------------
if torch is not None:
    kp.plot_kpca_summary(results, y_kpca, labels=[f"step {s}" for s in checkpoints],
                         title="Empirical NTK of a small CNN (digit parity)")
    plt.show()
