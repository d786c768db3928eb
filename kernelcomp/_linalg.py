"""Dense linear algebra on n x n operands that stays safe at any n.

Multithreaded OpenBLAS (0.3.30 / 0.3.31, as bundled with the scipy 1.17 and
numpy 2.4 wheels) crashes the process with a segmentation fault in two
routines once the matrix is large: ``?syrk`` (numpy's ``A @ A.T`` calls it)
from n ~ 19000 and ``?potrf`` (``scipy.linalg.cho_factor``, numpy's
``cholesky``) from n ~ 16000, on CPUs where OpenBLAS picks its own kernels
(AMD Zen here; the upstream fault class is OpenBLAS issue #2821, a crash in
``dsyrk_thread_UT`` under ``dpotrf_U_parallel``, only with several threads).
GEMM, TRSM, ``?syr2k``, ``?potrs``, matrix-vector products, ARPACK and
LAPACK's symmetric eigensolver (``evr``, whose reduction uses ``syr2k``, not
``syrk``) are safe at every size measured (up to 20000 x 20000,
``scripts/probe_blas_limits.py``), so eigendecompositions need no change.

So every symmetric product and every Cholesky factorisation of kernelcomp
goes through this module, which never hands ``syrk`` or ``potrf`` an
operand larger than :data:`SAFE_BLOCK` (measured safe up to 16000 and 12000):

* :func:`syrk_upper` -- ``C = alpha A A^T + beta C`` on the upper triangle,
  ``syrk`` on the diagonal blocks and GEMM on the blocks right of them;
* :func:`gram_nt` -- the full symmetric ``A @ A.T`` (the same, mirrored);
* :func:`cholesky_inplace` -- a right-looking blocked Cholesky: ``potrf`` on
  a diagonal block, ``trsm`` on the panel below it, ``syrk``/GEMM updates of
  the trailing matrix (the algorithm LAPACK's own ``potrf`` uses);
* :func:`gemm_nt` -- ``A @ B.T`` into a (strided) output, by output blocks of
  at most :data:`SAFE_BLOCK` x :data:`SAFE_BLOCK` (cross Grams, the empirical
  NTK's cross products);
* :func:`matmul` -- ``A @ B`` (a Gram times coefficients or a panel of
  vectors: predictions, kernel PCA, Falkon) by row blocks of ``A``, through
  ``np.matmul``.

No BLAS call of kernelcomp on an n x n or n x m operand goes elsewhere: a
single large call is what crashes (numpy's ``X @ X.T`` hands one ``syrk`` the
whole matrix when both operands are the same buffer, so even a "cross" Gram
``k(X, X)`` went through the crashing routine).

Which OpenBLAS: the products (GEMM, ``syrk``) run in numpy's own BLAS when
numpy is the pip wheel (its bundled ``scipy_openblas64_``, 64-bit integers),
else in scipy's; the Cholesky's routines are always scipy's (LAPACK).
numpy's and scipy's wheels bundle two different OpenBLAS builds (0.3.31 and
0.3.30 here), and on some CPUs (AVX-512, OpenBLAS picking its own kernels)
the older one's ``syrk`` was slower than numpy's ``A @ A.T``, so a half-work
symmetric product lost to numpy's full formula; through numpy's build,
kernelcomp's products are never slower than the same product in numpy
(:func:`products_library` names the one in use;
``KERNELCOMP_BLAS=scipy`` forces scipy's). Both are called through
``ctypes`` on strided views: outputs are written in place, with no n x n
temporaries and no extra pass over memory.
Row-major (C-ordered) arrays are handed over as the Fortran-ordered
transposes they are, so a C-ordered ``A`` of shape (r, k) is the Fortran
(k, r) matrix with leading dimension ``A.strides[0] / itemsize``.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "SAFE_BLOCK",
    "cholesky_inplace",
    "gemm_nt",
    "gram_nt",
    "matmul",
    "mirror_upper",
    "products_library",
    "syrk_upper",
]

#: the largest operand edge handed to ``syrk`` or ``potrf`` (both measured safe
#: well above it); also the block size of the blocked Cholesky
SAFE_BLOCK = 4096

_c_int_p = ctypes.POINTER(ctypes.c_int)
_PREFIX = {np.dtype(np.float64): "d", np.dtype(np.float32): "s"}


def _capsule_address(capsule: Any) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    sig = ctypes.pythonapi.PyCapsule_GetName
    sig.restype = ctypes.c_char_p
    sig.argtypes = [ctypes.py_object]
    return int(get(capsule, sig(capsule)))


_N_ARGS = {"gemm": 13, "syrk": 10, "trsm": 11, "potrf": 5}


@functools.cache
def _routine(name: str) -> Any:
    """The ctypes function of scipy's BLAS or LAPACK routine ``name`` (e.g. ``"dgemm"``)."""
    import scipy.linalg.cython_blas as cython_blas
    import scipy.linalg.cython_lapack as cython_lapack

    lib = cython_blas if name[1:] in ("gemm", "syrk", "trsm") else cython_lapack
    address = _capsule_address(lib.__pyx_capi__[name])
    # every argument of the Fortran interface is a pointer; CFUNCTYPE releases the GIL
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * _N_ARGS[name[1:]]))(address)


class _Products(NamedTuple):
    """The BLAS that runs :func:`gemm_nt` and :func:`syrk_upper`."""

    name: str  # "numpy" or "scipy"
    int_type: Any  # ctypes integer of the Fortran interface
    routines: dict[str, Any]  # "dgemm", "dsyrk", "sgemm", "ssyrk" -> ctypes function


def _numpy_openblas() -> ctypes.CDLL | None:
    """numpy's bundled OpenBLAS (pip wheels: ``scipy_openblas64_``), or None."""
    import numpy

    root = os.path.dirname(os.path.dirname(numpy.__file__))
    pattern = "*scipy_openblas64_*"
    paths = sorted(
        glob.glob(os.path.join(root, "numpy.libs", pattern))  # Linux, Windows
        + glob.glob(os.path.join(os.path.dirname(numpy.__file__), ".dylibs", pattern))  # macOS
    )
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: the same handle
            lib.scipy_dgemm_64_, lib.scipy_dsyrk_64_  # noqa: B018 - both symbols present
        except (OSError, AttributeError):
            continue
        return lib
    return None


@functools.cache
def _numpy_products() -> _Products | None:
    """GEMM and ``syrk`` of numpy's bundled OpenBLAS, or None where there is none."""
    lib = _numpy_openblas()
    if lib is None:
        return None
    routines = {}
    for name in ("dgemm", "sgemm", "dsyrk", "ssyrk"):
        fn = getattr(lib, f"scipy_{name}_64_")
        fn.argtypes = [ctypes.c_void_p] * _N_ARGS[name[1:]]
        fn.restype = None
        routines[name] = fn
    return _Products("numpy", ctypes.c_int64, routines)


@functools.cache
def _scipy_products() -> _Products:
    """GEMM and ``syrk`` of scipy's BLAS (``cython_blas``)."""
    names = ("dgemm", "sgemm", "dsyrk", "ssyrk")
    return _Products("scipy", ctypes.c_int, {name: _routine(name) for name in names})


@functools.cache
def _products() -> _Products:
    """numpy's OpenBLAS when available (unless ``KERNELCOMP_BLAS=scipy``), else scipy's BLAS."""
    if os.environ.get("KERNELCOMP_BLAS", "").lower() != "scipy":
        found = _numpy_products()
        if found is not None:
            return found
    return _scipy_products()


def products_library() -> str:
    """Which build runs kernelcomp's GEMM/``syrk`` products: ``"numpy"`` or ``"scipy"``."""
    return _products().name


def _char(c: str) -> ctypes.c_char_p:
    return ctypes.c_char_p(c.encode())


def _int(v: int, int_type: Any = ctypes.c_int) -> Any:
    return ctypes.byref(int_type(int(v)))


def _scalar(v: float, dtype: np.dtype) -> Any:
    ctype = ctypes.c_double if dtype == np.float64 else ctypes.c_float
    return ctypes.byref(ctype(v))


def _check_rows(a: np.ndarray, name: str) -> int:
    """Leading dimension of a row-major 2-D view with unit column stride."""
    if a.ndim != 2 or a.dtype not in _PREFIX:
        raise TypeError(f"{name} must be a 2-D float32/float64 array, got {a.dtype} {a.shape}")
    item = a.itemsize
    if a.shape[1] > 1 and a.strides[1] != item:
        raise ValueError(f"{name} must have unit column stride, got strides {a.strides}")
    ld = a.strides[0] // item if a.shape[0] > 1 else a.shape[1]
    if a.strides[0] % item or ld < a.shape[1]:
        raise ValueError(f"{name} has unsupported strides {a.strides}")
    return max(1, ld)


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.__array_interface__["data"][0])


def gemm_nt(C: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float = 1.0,
            beta: float = 0.0) -> None:  # fmt: skip
    """``C = alpha A B^T + beta C`` in place, for row-major views (any row stride).

    By output blocks of at most :data:`SAFE_BLOCK` rows and columns (one GEMM
    each, so no call sees a larger operand); each entry is summed in the same
    order whatever the blocking.

    Parameters
    ----------
    C : ndarray of shape (r, m)
        Written in place; may be a slice of a larger C-ordered array.
    A : ndarray of shape (r, k)
    B : ndarray of shape (m, k)
        Same dtype as ``C`` (float32 or float64), unit column stride.
    alpha, beta : float
    """
    r, m = C.shape
    k = A.shape[1]
    if r == 0 or m == 0:
        return
    if not C.flags.writeable:
        raise ValueError("C is read-only")
    if A.shape != (r, k) or B.shape != (m, k) or not A.dtype == B.dtype == C.dtype:
        raise ValueError(f"gemm_nt shapes/dtypes do not match: C {C.shape} {C.dtype}, "
                         f"A {A.shape} {A.dtype}, B {B.shape} {B.dtype}")  # fmt: skip
    _check_rows(C, "C"), _check_rows(A, "A"), _check_rows(B, "B")
    if k == 0:
        C *= beta
        return
    for i0 in range(0, r, SAFE_BLOCK):
        i1 = min(r, i0 + SAFE_BLOCK)
        for j0 in range(0, m, SAFE_BLOCK):
            j1 = min(m, j0 + SAFE_BLOCK)
            _gemm_block(C[i0:i1, j0:j1], A[i0:i1], B[j0:j1], alpha, beta)


def _gemm_block(C: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float, beta: float) -> None:
    """One GEMM ``C = alpha A B^T + beta C`` (checked operands)."""
    (r, m), k = C.shape, A.shape[1]
    ldc, lda, ldb = _check_rows(C, "C"), _check_rows(A, "A"), _check_rows(B, "B")
    dt = C.dtype
    lib = _products()
    it = lib.int_type
    # Fortran view: C^T (m x r) = B (m x k) . A^T (k x r); B^T, A^T are the stored matrices
    lib.routines[_PREFIX[dt] + "gemm"](
        _char("T"), _char("N"), _int(m, it), _int(r, it), _int(k, it), _scalar(alpha, dt),
        _ptr(B), _int(ldb, it), _ptr(A), _int(lda, it), _scalar(beta, dt), _ptr(C), _int(ldc, it),
    )  # fmt: skip


def _syrk_block(C: np.ndarray, A: np.ndarray, alpha: float, beta: float) -> None:
    """Upper triangle of the square block ``C = alpha A A^T + beta C`` (one ``syrk``)."""
    n, k = A.shape
    dt = C.dtype
    ldc, lda = _check_rows(C, "C"), _check_rows(A, "A")
    lib = _products()
    it = lib.int_type
    # the Fortran lower triangle of C^T is C's upper triangle; A^T is stored (k x n)
    lib.routines[_PREFIX[dt] + "syrk"](
        _char("L"), _char("T"), _int(n, it), _int(k, it), _scalar(alpha, dt), _ptr(A),
        _int(lda, it), _scalar(beta, dt), _ptr(C), _int(ldc, it),
    )  # fmt: skip


def matmul(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``A @ B`` by row blocks of at most :data:`SAFE_BLOCK` rows of ``A`` (``np.matmul`` each).

    For a large ``A`` (a Gram matrix, n x n or n x m) times a few columns or a
    vector: predictions, kernel PCA's block products, Falkon's ``K_nm``
    products. Each row of the result is computed as by one ``np.matmul``.

    Parameters
    ----------
    A : ndarray of shape (r, k)
        Any strides (a transposed view is handed to BLAS as such).
    B : ndarray of shape (k,) or (k, c)
    out : ndarray of shape (r,) or (r, c), optional
        Written in place.

    Returns
    -------
    ndarray
        ``out``, or a new array of numpy's result type.
    """
    A, B = np.asarray(A), np.asarray(B)
    r = A.shape[0]
    if out is None:
        out = np.empty((r, *B.shape[1:]), dtype=np.result_type(A, B))
    if r <= SAFE_BLOCK:
        return np.matmul(A, B, out=out)
    for i0 in range(0, r, SAFE_BLOCK):
        i1 = min(r, i0 + SAFE_BLOCK)
        np.matmul(A[i0:i1], B, out=out[i0:i1])
    return out


def syrk_upper(C: np.ndarray, A: np.ndarray, alpha: float = 1.0, beta: float = 0.0,
               block: int = SAFE_BLOCK) -> None:  # fmt: skip
    """Upper triangle (diagonal included) of ``C = alpha A A^T + beta C``, in place.

    Row blocks of ``block`` rows: one ``syrk`` on each diagonal block, one GEMM
    on the part of the row block right of it. The strict lower triangle of
    ``C`` is not touched. Same flops as one ``syrk``, safe at any ``n``.

    Parameters
    ----------
    C : ndarray of shape (n, n)
        Row-major (any row stride), float32 or float64.
    A : ndarray of shape (n, k)
        Same dtype, unit column stride.
    alpha, beta : float
    block : int
        Rows per block; at most :data:`SAFE_BLOCK` is safe.
    """
    n = C.shape[0]
    if C.shape != (n, n) or A.shape[0] != n or A.dtype != C.dtype:
        raise ValueError(f"syrk_upper needs C (n, n) and A (n, k) of one dtype, got "
                         f"C {C.shape} {C.dtype}, A {A.shape} {A.dtype}")  # fmt: skip
    if n == 0:
        return
    if not C.flags.writeable:
        raise ValueError("C is read-only")
    block = max(1, min(int(block), SAFE_BLOCK))
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        if A.shape[1] == 0:
            C[i0:i1, i0:] *= beta
            continue
        _syrk_block(C[i0:i1, i0:i1], A[i0:i1], alpha, beta)
        if i1 < n:
            gemm_nt(C[i0:i1, i1:], A[i0:i1], A[i1:], alpha, beta)


#: tile edge of the triangle copies
MIRROR_TILE = 256


@functools.lru_cache(maxsize=4)
def tril_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the strict lower triangle of an n x n tile (cached)."""
    return np.tril_indices(n, -1)


def mirror_upper(C: np.ndarray, tile: int = MIRROR_TILE) -> None:
    """Copy the strict upper triangle of square ``C`` onto its lower triangle, in place.

    Tile by tile (each tile of the lower triangle is written once, from its
    transposed twin), without an n x n temporary. ``mirror_upper(C.T)``
    copies the lower triangle onto the upper one.
    """
    n = C.shape[0]
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        d = C[i0:i1, i0:i1]
        lo = tril_indices(i1 - i0)
        d[lo] = d.T[lo]
        if i1 < n:
            C[i1:, i0:i1] = C[i0:i1, i1:].T


def gram_nt(A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The symmetric product ``A @ A.T`` (exactly symmetric), safe at any size.

    Parameters
    ----------
    A : ndarray of shape (n, k)
        float32 or float64 (other dtypes are converted to float64).
    out : ndarray of shape (n, n), optional
        C-ordered array of ``A``'s dtype to write into.

    Returns
    -------
    ndarray of shape (n, n)
    """
    A = np.asarray(A)
    if A.dtype not in _PREFIX:
        A = A.astype(np.float64)
    if A.ndim != 2 or A.strides[-1] != A.itemsize:
        A = np.ascontiguousarray(A)
    n = A.shape[0]
    if n <= SAFE_BLOCK:  # one syrk is safe: numpy's (mirrored, exactly symmetric)
        return np.matmul(A, A.T, out=out)
    if out is None:
        out = np.empty((n, n), dtype=A.dtype)
    syrk_upper(out, A)
    mirror_upper(out)
    return out


def cholesky_inplace(A: np.ndarray, block: int = SAFE_BLOCK) -> None:
    """Lower Cholesky factor of the Fortran-ordered symmetric ``A``, in place.

    Only the lower triangle (diagonal included) is read and overwritten with
    ``L`` such that ``A = L L^T``; the strict upper triangle keeps its values
    (so a C-ordered ``K`` passed as ``K.T`` keeps the matrix in its lower
    triangle). Right-looking and blocked: ``potrf`` on each ``block`` x
    ``block`` diagonal block, ``trsm`` on the panel below, and the trailing
    update by :func:`syrk_upper`'s blocks (``syrk`` on diagonal blocks, GEMM
    elsewhere), so no ``syrk`` or ``potrf`` sees more than ``block`` rows.

    Parameters
    ----------
    A : ndarray of shape (n, n)
        Fortran-contiguous float32 or float64.
    block : int
        Block size, at most :data:`SAFE_BLOCK`.

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``A`` is not positive definite (names the failing leading minor, as
        LAPACK does).
    """
    n = A.shape[0]
    if A.shape != (n, n) or not A.flags.f_contiguous or A.dtype not in _PREFIX:
        raise ValueError(f"cholesky_inplace needs a square Fortran-ordered float array, got "
                         f"{A.dtype} {A.shape}")  # fmt: skip
    if not A.flags.writeable:
        raise ValueError("A is read-only")
    if n == 0:
        return
    block = max(1, min(int(block), SAFE_BLOCK))
    dt = A.dtype
    pre = _PREFIX[dt]
    potrf, trsm = _routine(pre + "potrf"), _routine(pre + "trsm")
    syrk, gemm = _routine(pre + "syrk"), _routine(pre + "gemm")
    one, minus_one, ld = _scalar(1.0, dt), _scalar(-1.0, dt), _int(n)
    info = ctypes.c_int(0)
    # all calls in Fortran terms on A (column-major, leading dimension n);
    # _ptr(A[i:, j:]) is the address of A[i, j]
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        b = j1 - j0
        potrf(_char("L"), _int(b), _ptr(A[j0:, j0:]), ld, ctypes.byref(info))
        if info.value > 0:
            raise np.linalg.LinAlgError(
                f"{j0 + info.value}-th leading minor of the array is not positive definite"
            )
        if info.value < 0:  # pragma: no cover - argument error: a bug here
            raise RuntimeError(f"potrf: illegal value in argument {-info.value}")
        if j1 == n:
            break
        # the panel below the diagonal block: P = A[j1:, j0:j1] L_jj^{-T}
        trsm(
            _char("R"), _char("L"), _char("T"), _char("N"), _int(n - j1), _int(b), one,
            _ptr(A[j0:, j0:]), ld, _ptr(A[j1:, j0:]), ld,
        )  # fmt: skip
        # trailing update of the lower triangle, A[j1:, j1:] -= P P^T, by blocks:
        # syrk on each diagonal block, GEMM on the blocks below it
        for i0 in range(j1, n, block):
            i1 = min(n, i0 + block)
            syrk(
                _char("L"), _char("N"), _int(i1 - i0), _int(b), minus_one,
                _ptr(A[i0:, j0:]), ld, one, _ptr(A[i0:, i0:]), ld,
            )  # fmt: skip
            if i1 < n:
                gemm(
                    _char("N"), _char("T"), _int(n - i1), _int(i1 - i0), _int(b), minus_one,
                    _ptr(A[i1:, j0:]), ld, _ptr(A[i0:, j0:]), ld, one, _ptr(A[i1:, i0:]), ld,
                )  # fmt: skip
