"""
NTKRegressor in a Pipeline and GridSearchCV
===========================================

:class:`kernelcomp.NTKRegressor` is kernel ridge regression with a frozen kernel
and the scikit-learn estimator API: it goes into a
:class:`~sklearn.pipeline.Pipeline`, and the kernel's own parameters
(``kernel__depth``, ``kernel__bias_std``, ...) are searched by
:class:`~sklearn.model_selection.GridSearchCV` like any other. The task is the
paper's parity of handwritten digits, on scikit-learn's bundled 8 × 8 digits
(:func:`kernelcomp.datasets.digits_parity`: ±1 labels, centred images of norm 8).
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

import kernelcomp as kc

X, y = kc.datasets.digits_parity(seed=0)
X_train, X_test, y_train, y_test = train_test_split(X[:700], y[:700], test_size=200,
                                                    random_state=0)


def accuracy(model, X, y):
    """Fraction of the signs of the regression right (the parity)."""
    return float(np.mean(np.sign(model.predict(X)) == y))


# %%
# A grid search over the ridge and the depth
# ------------------------------------------
# Nested parameters reach the kernel through the estimator: ``kernel__depth``
# sets the ``depth`` of the :class:`kernelcomp.NTK` that the regressor holds.
search = GridSearchCV(
    kc.NTKRegressor(kc.NTK(depth=1)),
    {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "kernel__depth": [1, 2, 3]},
    cv=3,
    scoring=accuracy,
)
search.fit(X_train, y_train)
print("best:", search.best_params_, f"CV accuracy {search.best_score_:.3f}")
print(f"test accuracy of the refitted best model: {accuracy(search, X_test, y_test):.3f}")

scores = search.cv_results_["mean_test_score"].reshape(4, 3)
fig, ax = plt.subplots(figsize=(5, 3.8), layout="constrained")
im = ax.imshow(scores, cmap="viridis", aspect="auto")
ax.set(xticks=range(3), xticklabels=[1, 2, 3], yticks=range(4),
       yticklabels=["1e-3", "1e-2", "0.1", "1"], xlabel="depth",
       ylabel="ridge alpha", title="3-fold CV accuracy (digit parity)")
for (i, j), s in np.ndenumerate(scores):
    ax.text(j, i, f"{s:.3f}", ha="center", va="center", color="w", fontsize=8)
fig.colorbar(im, ax=ax)

# %%
# Preprocessing in a Pipeline
# ---------------------------
# The NTK is not scale-invariant (see the activations example): standardising each
# pixel changes the geometry of the inputs the kernel sees, and on these digits it
# costs accuracy. Even :class:`~sklearn.preprocessing.Normalizer`, which only
# rescales every image (already of norm 8) to norm 1, keeping every angle,
# changes the kernel and with it the predictions.
pipes = {
    "NTK alone": kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-2),
    "StandardScaler + NTK": make_pipeline(StandardScaler(),
                                          kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-2)),
    "Normalizer + NTK": make_pipeline(Normalizer(),
                                      kc.NTKRegressor(kc.NTK(depth=2), alpha=1e-2)),
}
acc = {name: accuracy(p.fit(X_train, y_train), X_test, y_test) for name, p in pipes.items()}
for name, a in acc.items():
    print(f"{name:22s} test accuracy {a:.3f}")

fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
ax.barh(list(acc), list(acc.values()), color=["tab:gray", "tab:orange", "tab:blue"])
ax.set(xlim=(min(acc.values()) - 0.05, 1.0), xlabel="test accuracy (200 digits)",
       title="Preprocessing before a depth-2 NTK")
plt.show()
