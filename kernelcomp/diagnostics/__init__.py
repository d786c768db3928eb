"""Kernel-PCA diagnostics of geometric compression (Paccolat et al. 2021).

The paper's central diagnostic is kernel PCA on the (empirical) neural tangent
kernel along training: how much of the labels its top eigenvectors carry, and
how much they know about the labels [1]_. This package implements those
definitions exactly as the authors' experiments use them (see the documentation's
"Definitions" page), plus companions that read a kernel or the network itself:

* kernel PCA -- :func:`kernel_pca` (eigenpairs of the **uncentred** Gram matrix,
  eigenvalues descending, unit-norm eigenvectors with a deterministic sign) and
  :func:`kpca_record` (the standard record of one Gram matrix);
* labels -- :func:`label_projection`, :func:`cumulative_projection`
  (``c_r = phi_r . y`` and ``P_k = sum_{r<=k} c_r^2 / ||y||^2``),
  :func:`mutual_information` (the paper's kNN class-conditional estimator, bits),
  :func:`kernel_alignment`;
* spectrum -- :func:`effective_rank`, :func:`spectrum_power_law`,
  :func:`intrinsic_dimension`, :func:`kernel_change`;
* compression -- :func:`compression` (lambda of the first-layer weights),
  :func:`t_star`, :func:`compression_at`, :func:`stretch_inputs`;
* neurons -- :func:`attractors`, :func:`attractor_network`, :func:`layer_geometry`;
* dynamics -- :func:`gauss_newton_spectrum`, :func:`trajectory_embedding`.

Labels
------
* :func:`label_projection`, :func:`cumulative_projection` and
  :func:`kernel_alignment` take real targets: a vector ``y`` of shape ``(n,)``
  (the paper's +-1 labels, or any regression target) or a matrix of shape
  ``(n, m)`` (several outputs; for several classes pass a one-hot or +-1 coding,
  e.g. ``sklearn.preprocessing.label_binarize(y, classes=..., neg_label=-1)``).
  Class names (strings) must be encoded first.
* :func:`mutual_information` takes class labels of any type. The paper's
  estimator (``method="paper"``) is defined for **two classes** only and raises
  a ``ValueError`` otherwise; ``method="ksg"`` accepts any number of classes.
* :func:`kpca_record` (and ``kernelcomp kpca --labels``) gives three or more
  classes (integer, boolean or string labels) one meaning: the projections of
  their centred one-hot indicators (:func:`class_indicators`), ``P_k`` summed
  over the classes and normalised by the indicators' squared norm, and the
  ``"ksg"`` mutual information of each eigenvector with the class.
  Floating-point labels are real targets, projected as given; the record's
  ``label_mean_share`` says how much of ``P_k`` their mean carries.

References
----------
.. [1] J. Paccolat, L. Petrini, M. Geiger, K. Tyloo, M. Wyart, "Geometric
   compression of invariant manifolds in neural networks", J. Stat. Mech. (2021)
   044001, arXiv:2007.11471: the compression lambda of the first-layer weights
   and the kernel PCA of the empirical NTK along training.
"""

# the documented tuning constants stay importable from here (they are not in __all__)
from kernelcomp.diagnostics._compression import (  # noqa: F401
    COMPRESSION_CONVENTIONS,
    T_STAR_FRACTION,
    compression,
    compression_at,
    stretch_inputs,
    t_star,
)
from kernelcomp.diagnostics._dynamics import (
    GaussNewtonSpectrum,
    TrajectoryEmbedding,
    gauss_newton_spectrum,
    trajectory_embedding,
)
from kernelcomp.diagnostics._kernel_pca import (  # noqa: F401
    LANCZOS_MAX_FRACTION,
    LANCZOS_MIN_SAMPLES,
    LANCZOS_TOL,
    SUBSET_DRIVER,
    SUBSET_MAX_FRACTION,
    KernelPCAResult,
    kernel_pca,
    kpca_record,
)
from kernelcomp.diagnostics._labels import (
    class_indicators,
    cumulative_projection,
    kernel_alignment,
    label_projection,
    mutual_information,
    mutual_information_floor,
)
from kernelcomp.diagnostics._neurons import (
    Attractors,
    LayerGeometry,
    attractor_network,
    attractors,
    layer_geometry,
)
from kernelcomp.diagnostics._spectrum import (
    PowerLaw,
    effective_rank,
    intrinsic_dimension,
    kernel_change,
    spectrum_power_law,
)

__all__ = [
    "Attractors",
    "GaussNewtonSpectrum",
    "KernelPCAResult",
    "LayerGeometry",
    "PowerLaw",
    "TrajectoryEmbedding",
    "attractor_network",
    "attractors",
    "class_indicators",
    "compression",
    "compression_at",
    "cumulative_projection",
    "effective_rank",
    "gauss_newton_spectrum",
    "intrinsic_dimension",
    "kernel_alignment",
    "kernel_change",
    "kernel_pca",
    "kpca_record",
    "label_projection",
    "layer_geometry",
    "mutual_information",
    "mutual_information_floor",
    "spectrum_power_law",
    "stretch_inputs",
    "t_star",
    "trajectory_embedding",
]
