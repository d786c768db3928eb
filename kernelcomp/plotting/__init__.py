"""Figures of the kernelcomp diagnostics (Paccolat et al. 2021 [1]_).

Every function imports matplotlib when it is called (``import kernelcomp`` stays
light), draws on ``ax`` (a new figure and axes when ``ax=None``), returns the
axes, and never calls ``plt.show()``: save with ``ax.figure.savefig(...)``. All
figures share one style (sizes, resolution, colours).

Kernel PCA, single results:

* :func:`plot_spectrum` -- eigenvalues against rank, log-log, with the fitted
  power law;
* :func:`plot_label_projection` -- ``c_r^2 / ||y||^2`` per eigenvector;
* :func:`plot_cumulative_projection` -- ``P_k`` against ``k``;
* :func:`plot_mutual_information` -- bits per eigenvector.

Across checkpoints (a sequence ordered from initialisation to the end of
training, coloured along a sequential colormap): :func:`plot_spectra`,
:func:`plot_label_projections`, :func:`plot_cumulative_projections`,
:func:`plot_mutual_informations`, and :func:`plot_kpca_summary` for all four
panels in one figure.

Networks: :func:`plot_neurons` (the first-layer neurons, coloured by attractor),
:func:`plot_layer_geometry` (intrinsic dimension and effective rank per layer),
:func:`plot_trajectory` (the InPCA trajectory of a training run).

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: kernel PCA of the empirical NTK along training.
"""

from kernelcomp.plotting._geometry import plot_layer_geometry, plot_neurons, plot_trajectory
from kernelcomp.plotting._kpca import (
    plot_cumulative_projection,
    plot_cumulative_projections,
    plot_kpca_summary,
    plot_label_projection,
    plot_label_projections,
    plot_mutual_information,
    plot_mutual_informations,
    plot_spectra,
    plot_spectrum,
)
from kernelcomp.plotting._style import checkpoint_labels

__all__ = [
    "checkpoint_labels",
    "plot_cumulative_projection",
    "plot_cumulative_projections",
    "plot_kpca_summary",
    "plot_label_projection",
    "plot_label_projections",
    "plot_layer_geometry",
    "plot_mutual_information",
    "plot_mutual_informations",
    "plot_neurons",
    "plot_spectra",
    "plot_spectrum",
    "plot_trajectory",
]
