"""
Neurons and attractors in the feature regime
============================================

The paper's figure 2 in small. Each first-layer neuron n of the stripe network
is drawn at (ω_{n,1}, ‖ω_{n,⊥}‖): its weight on the informative input against
the norm of its weights on the uninformative ones, the marker's area growing
with the size of its readout weight β_n (:func:`kernelcomp.plotting.plot_neurons`). In the
feature regime the neurons that matter leave the axis ω₁ = 0 and gather in a
few *attractors*: groups of neurons active on exactly the same training points
(:func:`kernelcomp.diagnostics.attractors`), which act on the data as one neuron
(:func:`kernelcomp.diagnostics.attractor_network` merges them into one).
"""

import matplotlib.pyplot as plt
import numpy as np

import kernelcomp as kc
from kernelcomp import diagnostics as dg
from kernelcomp import plotting as kp

d, h, p = 5, 64, 128
X, y = kc.datasets.stripe(p, d, seed=0)
net = kc.FCNetwork.init(d, [h], activation="relu_unit", parameterization="mean_field", seed=0)
run = kc.training.train(net, X, y, alpha=0.05 / np.sqrt(h), max_steps=5000)
k_star = dg.t_star(run)

# %%
# Attractors at t* and at the end
# -------------------------------
# The count at initialisation is not a measure of anything: random neurons have
# (almost) all different activation patterns, so nearly every neuron is its own
# group. What matters is how few groups carry the readout weight after training.
picks = {"init": 0, "t*": k_star, "end": len(run.checkpoints) - 1}
for name, i in picks.items():
    att = dg.attractors(run.checkpoints[i].net, X)
    top = np.sort(att.beta_share)[::-1][:4]
    print(f"{name:6s} step {run.checkpoints[i].step:5d}: {len(att.sizes):3d} groups of "
          f"{h} neurons; the 4 largest carry {top.sum():.0%} of sum |beta|")

merged, exact = dg.attractor_network(run.net, X)
print(f"merged network: {merged.weights[0].shape[0]} neurons instead of {h}, "
      f"same outputs on the training points: {exact}")

# %%
# The neurons, coloured by attractor
# ----------------------------------
# Dead neurons (never active on the training points) are grey. The weights grow
# by two orders of magnitude during training, so each panel has its own scale
# here (``plot_neurons`` shares them when it makes the figure itself). At the end
# the living neurons sit on a few rays, one per attractor.
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), layout="constrained")
kp.plot_neurons([run.checkpoints[i].net for i in picks.values()], [0], X=X, axes=axes,
                labels=[f"{name} (step {run.checkpoints[i].step})" for name, i in picks.items()])
fig.suptitle(f"First-layer neurons of the feature run (p = {p}, h = {h})")
plt.show()
