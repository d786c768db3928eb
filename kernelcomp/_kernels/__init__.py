"""Private compiled core of kernelcomp.

Everything here takes validated, C-contiguous float32/float64 arrays and a
preallocated output, and raises no user errors: validation lives in the public
modules. All kernels are compiled through :func:`kernelcomp._kernels._config.jit`.
"""
