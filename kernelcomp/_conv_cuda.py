"""The ``device="cuda"`` backend of :class:`kernelcomp.ConvNTK` / :class:`kernelcomp.ConvNNGP`.

Same validation and per-sample (CPU) pass as the kernel it wraps (the
activation factors and the diagonal of :func:`kernelcomp._kernels.conv.prepare`,
copied to the device with the images); ``_fill`` launches the one-thread-per-pair
CUDA kernel of :mod:`kernelcomp._kernels.cuda_conv`. Inputs may be device arrays
(copied to the host for validation and the per-sample pass); ``out`` may be a
device array (written in place) or a host array (values copied back per launch).
Device arrays, device outputs and the errors for a missing numba-cuda or GPU are
those of the analytic kernels' backend, which this one extends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelcomp._base import Kernel, is_device_array
from kernelcomp.kernels import _CudaAnalytic, _DevicePrepared

__all__ = ["cuda_backend"]


class _CudaConv(_CudaAnalytic):
    """The ``device="cuda"`` backend of a convolutional kernel, made for one call."""

    def __init__(self, base: Any, snap: float) -> None:
        if base.padding != "same":
            raise NotImplementedError(
                f"device='cuda' runs convolutional kernels with padding='same' only, got "
                f"padding={base.padding!r}; compute this kernel on the CPU (device='cpu')"
            )
        super().__init__(base)  # numba-cuda and a device, or CudaUnavailableError
        from kernelcomp._kernels import cuda_conv as _cc  # numba-cuda, on demand

        self._cc = _cc
        self._programs: dict[tuple[int, ...], Any] = {}
        self._snap = float(snap)

    def _program(self, shape: tuple[int, ...]) -> Any:
        key = tuple(int(v) for v in shape)
        if key not in self._programs:
            self._programs[key] = self._cc.ConvProgram(
                # the CUDA kernel walks the offsets one by one: their storage layout
                self.base._program(key, slab_ok=False), self.base._ntk, self._snap
            )
        return self._programs[key]

    def _prepare(self, X: np.ndarray) -> _DevicePrepared:
        self._program(X.shape[1:])  # refuses a program the device cannot run, first
        # the diagonal by the recursion the device runs, so duplicates reproduce it
        host = self.base._prepare(X, slab_ok=False)
        dev = self._cc.ConvSamples(X, host.fa, host.fb, host.dg)
        return _DevicePrepared(host, dev, 0, X.shape[0])

    def _fill(
        self, px: _DevicePrepared, py: _DevicePrepared, out: Any, symmetric: bool
    ) -> None:
        prog = self._program(px.host.X.shape[1:])
        dest = self._cuda.as_device_array(out) if is_device_array(out) else out
        self._cc.fill(
            prog, px.dev, py.dev, px.start, py.start, px.n, py.n, symmetric, dest
        )


def cuda_backend(kernel: Any, snap: float) -> Kernel:
    """The GPU backend of a :class:`kernelcomp.ConvNTK`/:class:`kernelcomp.ConvNNGP`.

    ``snap`` is the kernel's snapping distance of correlations from +-1.
    """
    return _CudaConv(kernel, snap)
