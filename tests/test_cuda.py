"""The CUDA path (``device="cuda"``) of the analytic kernels, in numba's CUDA simulator.

No GPU is needed: the CUDA code runs in subprocesses with
``NUMBA_ENABLE_CUDASIM=1`` (it must be set before numba.cuda is imported), and
each returns its measurements as JSON. The simulator runs one Python thread
per CUDA thread (~1e3 entries per second here), so matrices stay small: the
recursion cases use 4 x 4 thread blocks (``cuda.CUDA_TILE`` is read at run time by
the simulator; the kernel is written for any tile), the layout cases the
production tile (16 x 16) with ragged sizes (n = 37, 50, d = 40, 80). Tests
that need numba-cuda are skipped without it; the errors for a missing
numba-cuda or a missing device are checked either way where they can be.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kernelcomp as kc
from kernelcomp.kernels import _activation_names

HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
needs_numba_cuda = pytest.mark.skipif(
    not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install 'kernelcomp[cuda]')"
)


def _run(script: str, payload: object = None, *, simulator: bool = True, timeout: int = 900):
    """Run ``script`` in a fresh interpreter; its last stdout line is JSON."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the recursion: every activation, depth, parameterization, bias, dtype ----------


#: every activation the CPU's analytic kernels accept, by route
ALL_ACTIVATIONS = _activation_names()
ON_GPU = [a for a in ALL_ACTIVATIONS if kc.NTK(activation=a)._route != "quadrature"]
CPU_ONLY = [a for a in ALL_ACTIVATIONS if a not in ON_GPU]


def _recursion_cases() -> list[dict]:
    cases = []
    # every activation the GPU computes: depth 2, both parameterizations, a bias
    for act in ON_GPU:
        for param in ("ntk", "standard"):
            p: dict = {"depth": 2, "activation": act, "parameterization": param,
                       "bias_std": 0.3, "weight_std": 1.4}
            if param == "standard":
                p["width"] = 64
            for kernel in ("NTK", "NNGP"):
                name = f"{kernel}-{act}-depth2-{param}-all"
                cases.append({"name": name, "kernel": kernel, "params": p, "dtype": "float64"})
    i = 0
    for act in ("relu", "relu_unit", "erf"):
        for depth in (1, 2, 3):
            for param in ("ntk", "standard"):
                style = ("none", "scalar", "layers")[i % 3]
                i += 1
                p: dict = {"depth": depth, "activation": act, "parameterization": param}
                if style == "scalar":
                    p["bias_std"] = 0.3
                elif style == "layers":  # per-layer stds, a layer without bias
                    p["weight_std"] = [1.0 + 0.25 * layer for layer in range(depth + 1)]
                    p["bias_std"] = [0.2 if layer % 2 == 0 else None for layer in range(depth + 1)]
                if param == "standard":
                    p["width"] = 64 if depth == 1 else [64, 32, 16][:depth]
                for kernel in ("NTK", "NNGP"):
                    name = f"{kernel}-{act}-depth{depth}-{param}-bias_{style}"
                    cases.append({"name": name, "kernel": kernel, "params": p, "dtype": "float64"})
                    if param == ("ntk" if depth % 2 else "standard"):
                        cases.append(
                            {"name": name + "-float32", "kernel": kernel, "params": p,
                             "dtype": "float32"}
                        )
    cases.append({"name": "NTK-relu-depth0", "kernel": "NTK", "params": {"depth": 0},
                  "dtype": "float64"})
    return cases


RECURSION_CASES = _recursion_cases()

_RECURSION_SCRIPT = """
import json, sys
import numpy as np
import kernelcomp as kc
import kernelcomp._kernels.cuda as kcu

assert kcu.SIMULATOR
kcu.CUDA_TILE, kcu._TILE_PAD = 4, 5  # small blocks: the simulator's cost is one thread per entry
rng = np.random.default_rng(7)
X0 = rng.standard_normal((7, 3))  # 2 x 2 blocks of 4 x 4 (ragged)
Y0 = rng.standard_normal((5, 3))
res = {}
for case in json.load(sys.stdin):
    params = {
        k: tuple(v) if isinstance(v, list) else v for k, v in case["params"].items()
    }
    k = getattr(kc, case["kernel"])(**params)
    X, Y = X0.astype(case["dtype"]), Y0.astype(case["dtype"])
    out = {}
    for label, args in (("sym", (X,)), ("cross", (X, Y))):
        G = kc.gram(k, *args, device="cuda")
        C = k(*args)
        out[label] = {
            "dtype": str(G.dtype),
            "shape": list(G.shape),
            "finite": bool(np.isfinite(G).all()),
            "rel": float(np.abs(G.astype(float) - C).max() / np.abs(C).max()),
            "bitwise": bool(np.array_equal(G, C)),
        }
        if label == "sym":
            out[label]["symmetric"] = bool(np.array_equal(G, G.T))
            out[label]["diag"] = bool(np.array_equal(np.diag(G), k.diag(X)))
    res[case["name"]] = out
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def recursion_results():
    return _run(_RECURSION_SCRIPT, RECURSION_CASES)


@needs_numba_cuda
@pytest.mark.parametrize("case", RECURSION_CASES, ids=[c["name"] for c in RECURSION_CASES])
def test_cuda_gram_equals_cpu_gram(recursion_results, case):
    tol = 1e-12 if case["dtype"] == "float64" else 1e-6
    res = recursion_results[case["name"]]
    for label, shape in (("sym", [7, 7]), ("cross", [7, 5])):
        r = res[label]
        assert r["dtype"] == case["dtype"] and r["shape"] == shape
        assert r["finite"]
        assert r["rel"] <= tol, (label, r["rel"])
        # the device recursion rounds like the CPU's fused path (d <= 64): bit for bit
        assert r["bitwise"], (label, r["rel"])
    assert res["sym"]["symmetric"] and res["sym"]["diag"]


def test_every_cpu_activation_runs_on_the_gpu_or_is_refused_in_words():
    assert set(ON_GPU) >= {"relu", "relu_unit", "erf", "leaky_relu", "linear", "gelu", "tanh",
                           "silu", "softplus", "sigmoid"}
    covered = {c["params"].get("activation", "relu") for c in RECURSION_CASES}
    assert covered == set(ON_GPU)
    for act in CPU_ONLY:
        with pytest.raises(NotImplementedError, match=f"activation '{act}' by quadrature"):
            kc.NTK(activation=act)(np.ones((2, 3)), device="cuda")


@needs_numba_cuda
def test_the_device_elu_step_is_the_cpu_step_in_every_branch():
    # every branch of Genz's method (|rho| < 0.3, < 0.75, < 0.925, beyond, +-1) and
    # variances from 1e-8 to 10: the device function's operations are the CPU's
    res = _run("""
        import json, math
        import numpy as np
        import kernelcomp._kernels.cuda as kcu
        from kernelcomp._kernels import duals
        assert kcu.SIMULATOR
        snap = 32.0 * float(np.finfo(np.float64).eps)
        same, n = True, 0
        for q1 in (1e-8, 0.05, 1.0, 10.0):
            for q2 in (1e-8, 0.7, 10.0):
                for rho in (-1.0, -0.9999, -0.93, -0.8, -0.5, -0.1, 0.0, 0.2, 0.6, 0.9, 0.95, 1.0):
                    a1, a2 = math.sqrt(q1), math.sqrt(q2)
                    args = (rho * a1 * a2, a1, a2, 1.0 / a1, 1.0 / a2, snap)
                    same = same and duals.elu_step(*args) == kcu._elu_step(*args)
                    n += 1
        print(json.dumps({"same": bool(same), "n": n}))
    """)
    assert res["same"] and res["n"] == 144


@needs_numba_cuda
def test_the_kernel_refuses_an_unknown_activation_code_in_words():
    res = _run("""
        import json
        import kernelcomp as kc
        import kernelcomp._kernels.cuda as kcu
        from kernelcomp._kernels.activations import TANH
        p = kc.NTK(depth=1)._layer_params(3)
        msgs = []
        for code in (99, TANH):
            try:
                kcu.Recursion({**p, "act": code}, 1e-14)
            except ValueError as exc:
                msgs.append(str(exc))
        print(json.dumps(msgs))
    """)
    assert len(res) == 2
    assert "no closed-form step for activation code 99 ('not an activation')" in res[0]
    assert "code 3 ('tanh')" in res[1] and "Hermite series" in res[1]


# -- the launch layout: production tiles, ragged sizes, several feature tiles -----

_LAYOUT_SCRIPT = """
import json
import numpy as np
import kernelcomp as kc
import kernelcomp._kernels.cuda as kcu

assert kcu.SIMULATOR and kcu.CUDA_TILE == 16
rng = np.random.default_rng(3)
res = {}

def record(name, G, C, symmetric_of=None, k=None):
    r = {
        "shape": list(G.shape),
        "rel": float(np.abs(G.astype(float) - C).max() / np.abs(C).max()),
        "bitwise": bool(np.array_equal(G, C)),
        "finite": bool(np.isfinite(G).all()),
    }
    if symmetric_of is not None:
        r["symmetric"] = bool(np.array_equal(G, G.T))
        r["diag"] = bool(np.array_equal(np.diag(G), k.diag(symmetric_of)))
    res[name] = r

k = kc.NTK(depth=2, bias_std=0.2)
X = rng.standard_normal((37, 40))  # 3 x 3 blocks, 3 feature tiles (the last one ragged)
record("sym-37x37-d40", kc.gram(k, X, device="cuda"), k(X), X, k)
A = rng.standard_normal((50, 80))  # d > FUSED_MAX_FEATURES: the CPU uses BLAS
B = rng.standard_normal((37, 80))
record("cross-50x37-d80", kc.gram(k, A, B, device="cuda"), k(A, B))
k32 = kc.NNGP(depth=1, activation="erf", bias_std=0.1)
X32 = rng.standard_normal((20, 5)).astype(np.float32)
record("sym-20x20-float32", k32(X32, device="cuda"), k32(X32), X32, k32)
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def layout_results():
    return _run(_LAYOUT_SCRIPT)


@needs_numba_cuda
def test_ragged_sizes_with_the_production_tile(layout_results):
    r = layout_results["sym-37x37-d40"]
    assert r["shape"] == [37, 37] and r["finite"]
    assert r["bitwise"] and r["symmetric"] and r["diag"]
    r = layout_results["cross-50x37-d80"]
    assert r["shape"] == [50, 37] and r["finite"]
    # the CPU sums these dot products with BLAS: rounding differs, a little
    assert r["rel"] <= 1e-12
    r = layout_results["sym-20x20-float32"]
    assert r["shape"] == [20, 20] and r["rel"] <= 1e-6
    assert r["bitwise"] and r["symmetric"] and r["diag"]


# -- degenerate rows ------------------------------------------------------------------

_DEGENERATE_SCRIPT = """
import json
import numpy as np
import kernelcomp as kc
import kernelcomp._kernels.cuda as kcu

kcu.CUDA_TILE, kcu._TILE_PAD = 4, 5
rng = np.random.default_rng(11)
X = rng.standard_normal((12, 4))
X[0] = 0.0
X[1] = 0.0
X[5] = X[3]
X[7] = X[3]
X[9] = -X[4]  # antiparallel
X[10] = 2.0 * X[4]  # parallel
Y = rng.standard_normal((6, 4))
Y[1] = X[3]
Y[4] = X[8]
Y[5] = 0.0
kernels = {
    "ntk-relu": kc.NTK(depth=2),
    "ntk-relu-bias": kc.NTK(depth=3, bias_std=0.1),
    "nngp-relu_unit": kc.NNGP(depth=2, activation="relu_unit"),
    "ntk-erf": kc.NTK(depth=2, activation="erf"),
    "ntk-standard-nobias": kc.NTK(depth=2, bias_std=None, parameterization="standard", width=8),
}
res = {}
for name, k in kernels.items():
    G = kc.gram(k, X, device="cuda")
    H = kc.gram(k, X, Y, device="cuda")
    dg = k.diag(X)
    res[name] = {
        "finite": bool(np.isfinite(G).all() and np.isfinite(H).all()),
        "bitwise": bool(np.array_equal(G, k(X)) and np.array_equal(H, k(X, Y))),
        "duplicates": bool(
            G[3, 5] == G[3, 3] == G[5, 5] == G[3, 7] == G[7, 5] == dg[3]
            and G[0, 1] == dg[0]
        ),
        "cross_duplicates": bool(H[3, 1] == dg[3] and H[5, 1] == dg[3] and H[8, 4] == dg[8]),
        "symmetric": bool(np.array_equal(G, G.T)),
    }
print(json.dumps(res))
"""


@needs_numba_cuda
def test_degenerate_rows_are_finite_and_duplicates_give_the_diagonal():
    res = _run(_DEGENERATE_SCRIPT)
    assert len(res) == 5
    for name, r in res.items():
        assert all(r.values()), (name, r)


# -- GPU arrays in and out, row blocks, chunks, HDF5 ----------------------------------

_IO_SCRIPT = """
import json, sys
import h5py
import numpy as np
from numba import cuda
import kernelcomp as kc
import kernelcomp._kernels.cuda as kcu
from kernelcomp._gram import iter_gram_blocks

kcu.CUDA_TILE, kcu._TILE_PAD = 4, 5
tmp = json.load(sys.stdin)  # a temporary folder
rng = np.random.default_rng(5)
X = rng.standard_normal((13, 3))
Y = rng.standard_normal((9, 3))
k = kc.NTK(depth=2, bias_std=0.1)
K, KXY = k(X), k(X, Y)
res = {}
res["device_X"] = bool(np.array_equal(kc.gram(k, cuda.to_device(X), device="cuda"), K))
res["call_device_X"] = bool(np.array_equal(k(cuda.to_device(X), device="cuda"), K))
res["device_X_Y"] = bool(
    np.array_equal(kc.gram(k, cuda.to_device(X), cuda.to_device(Y), device="cuda"), KXY)
)
res["host_X_device_Y"] = bool(np.array_equal(k(X, cuda.to_device(Y), device="cuda"), KXY))
X32 = X.astype(np.float32)
G32 = kc.gram(k, cuda.to_device(X32), device="cuda")
res["device_X_float32"] = bool(G32.dtype == np.float32 and np.array_equal(G32, k(X32)))
wide = cuda.to_device(np.repeat(X, 2, axis=1))
res["device_X_strided"] = bool(np.array_equal(kc.gram(k, wide[:, ::2], device="cuda"), K))
res["device_X_fortran"] = bool(
    np.array_equal(kc.gram(k, cuda.to_device(np.asfortranarray(X)), device="cuda"), K)
)
# device out: written in place, returned, exactly symmetric
dout = cuda.device_array((13, 13))
got = kc.gram(k, X, out=dout, device="cuda")
host = dout.copy_to_host()
res["device_out"] = bool(got is dout and np.array_equal(host, K) and np.array_equal(host, host.T))
dxy = cuda.device_array((13, 9), dtype=np.float32)
kc.gram(k, cuda.to_device(X), Y, out=dxy, device="cuda")
res["device_out_float32_cast"] = bool(np.array_equal(dxy.copy_to_host(), KXY.astype(np.float32)))
big = cuda.to_device(np.zeros((13, 20)))
kc.gram(k, X, out=big[:, 2:15], device="cuda", progress=True)
b = big.copy_to_host()
res["device_out_view"] = bool(
    np.array_equal(b[:, 2:15], K) and not b[:, :2].any() and not b[:, 15:].any()
)
# host outputs by the driver's row blocks, cast on store, into HDF5
res["blocks_sym"] = bool(np.array_equal(kc.gram(k, X, device="cuda", block_rows=5), K))
res["blocks_cross"] = bool(np.array_equal(kc.gram(k, X, Y, device="cuda", block_rows=4), KXY))
o32 = np.empty((13, 13), dtype=np.float32)
kc.gram(k, X, out=o32, device="cuda")
res["host_out_float32_cast"] = bool(np.array_equal(o32, K.astype(np.float32)))
res["progress"] = bool(np.array_equal(kc.gram(k, X, Y, device="cuda", progress=True), KXY))
with h5py.File(tmp + "/K.h5", "w") as f:
    dset = f.create_dataset("K", shape=(13, 13), dtype="f8")
    got = kc.gram(k, cuda.to_device(X), out=dset, device="cuda", block_rows=6)
    res["hdf5"] = bool(got is dset and np.array_equal(dset[...], K))
blocks = np.empty((13, 9))
for blk in iter_gram_blocks(k, X, Y, block_rows=5, device="cuda"):
    for key, value in blk.writes:
        blocks[key] = value
res["iter_gram_blocks"] = bool(np.array_equal(blocks, KXY))
# one device buffer too small for the matrix: row chunks inside one fill
kcu.MAX_OUT_BYTES = 5 * 13 * 8
res["chunks_sym"] = bool(np.array_equal(kc.gram(k, X, device="cuda"), K))
res["chunks_cross"] = bool(np.array_equal(k(X, Y, device="cuda"), KXY))
kcu.MAX_OUT_BYTES = None
# more blocks of rows than a grid may have (CUDA: 65535): launched in pieces
kcu.MAX_GRID = 2
G = kc.gram(k, X, device="cuda")
res["grid_pieces_sym"] = bool(np.array_equal(G, K) and np.array_equal(G, G.T))
res["grid_pieces_cross"] = bool(np.array_equal(kc.gram(k, X, Y, device="cuda"), KXY))
kcu.MAX_GRID = 65535
nngp = kc.NNGP(depth=1, activation="erf")
res["nngp_call"] = bool(np.array_equal(nngp(X, Y, device="cuda"), nngp(X, Y)))

errors = {}
def error(name, fn):
    try:
        fn()
    except Exception as exc:
        errors[name] = [type(exc).__name__, str(exc)]
    else:
        errors[name] = None
error("out_shape", lambda: kc.gram(k, X, out=cuda.device_array((13, 12)), device="cuda"))
error("out_int", lambda: kc.gram(
    k, X, out=cuda.device_array((13, 13), dtype=np.int32), device="cuda"))
error("out_device_cpu", lambda: kc.gram(k, X, out=cuda.device_array((13, 13))))
Xnan = X.copy()
Xnan[2, 1] = np.nan
error("nan", lambda: kc.gram(k, cuda.to_device(Xnan), device="cuda"))
error("one_d", lambda: kc.gram(k, cuda.to_device(X[0]), device="cuda"))
error("features", lambda: k(
    cuda.to_device(X), cuda.to_device(np.ascontiguousarray(Y[:, :2])), device="cuda"))
error("empirical", lambda: kc.gram(
    kc.EmpiricalNTK(kc.FCNetwork.init(3, [4], seed=0)), X, device="cuda"))
print(json.dumps({"results": res, "errors": errors}))
"""


@needs_numba_cuda
def test_device_arrays_blocks_and_outputs(tmp_path):
    out = _run(_IO_SCRIPT, str(tmp_path))
    failed = [name for name, ok in out["results"].items() if not ok]
    assert not failed, failed
    assert len(out["results"]) == 21
    errors = out["errors"]
    assert errors["out_shape"][0] == "ValueError" and "shape" in errors["out_shape"][1]
    assert errors["out_int"][0] == "TypeError" and "float32 or float64" in errors["out_int"][1]
    assert errors["out_device_cpu"][0] == "TypeError"
    assert "device='cuda'" in errors["out_device_cpu"][1]
    assert errors["nan"][0] == "ValueError" and "NaN" in errors["nan"][1]
    assert errors["one_d"][0] == "ValueError" and "2-D" in errors["one_d"][1]
    assert errors["features"][0] == "ValueError" and "features" in errors["features"][1]
    assert errors["empirical"][0] == "NotImplementedError"


# -- availability errors ----------------------------------------------------------------

_NO_NUMBA_CUDA_SCRIPT = """
import json, sys
sys.modules["numba_cuda"] = None  # as if numba-cuda were not installed
import numpy as np
import kernelcomp as kc
import kernelcomp._kernels.cuda as kcu  # imports all the same
from kernelcomp._kernels._config import CudaUnavailableError

X = np.random.default_rng(0).standard_normal((4, 3))
msgs = []
for fn in (lambda: kc.gram(kc.NTK(), X, device="cuda"), lambda: kc.NNGP()(X, device="cuda"),
           lambda: kcu._gram_kernel[1, 1]()):
    try:
        fn()
    except CudaUnavailableError as exc:
        msgs.append(str(exc))
cpu = bool(np.array_equal(kc.NTK()(X, device="cpu"), kc.NTK()(X)))
print(json.dumps({"msgs": msgs, "cpu": cpu, "cuda_module": kcu.cuda is None}))
"""


def test_without_numba_cuda_device_cuda_says_so():
    res = _run(_NO_NUMBA_CUDA_SCRIPT, simulator=False, timeout=300)
    assert res["cuda_module"] and res["cpu"]
    assert len(res["msgs"]) == 3
    assert all("numba-cuda" in m and "not installed" in m for m in res["msgs"])


_NO_DEVICE_SCRIPT = """
import json
import numpy as np
from numba import cuda
import kernelcomp as kc
from kernelcomp._kernels._config import CudaUnavailableError

if cuda.is_available():
    print(json.dumps({"gpu": True}))
else:
    X = np.random.default_rng(0).standard_normal((4, 3))
    try:
        kc.gram(kc.NTK(), X, device="cuda")
    except CudaUnavailableError as exc:
        print(json.dumps({"gpu": False, "msg": str(exc), "runtime": isinstance(exc, RuntimeError)}))
"""


@needs_numba_cuda
def test_without_a_device_device_cuda_says_so():
    res = _run(_NO_DEVICE_SCRIPT, simulator=False, timeout=300)
    if res["gpu"]:
        pytest.skip("this machine has a CUDA device")
    assert res["runtime"]
    assert "no CUDA device" in res["msg"] and "NUMBA_ENABLE_CUDASIM" in res["msg"]


# -- in process: argument checks that need no CUDA ----------------------------------------


def test_device_argument_is_checked_and_cpu_is_the_default():
    X = np.random.default_rng(0).standard_normal((6, 3))
    k = kc.NTK(depth=2)
    assert np.array_equal(k(X, device="cpu"), k(X))
    assert np.array_equal(kc.gram(k, X, device="cpu"), kc.gram(k, X))
    for bad, exc in (("gpu", ValueError), ("CUDA", ValueError), (0, TypeError), (None, TypeError)):
        with pytest.raises(exc, match="device"):
            kc.gram(k, X, device=bad)
        with pytest.raises(exc, match="device"):
            k(X, device=bad)


def test_empirical_kernels_refuse_cuda_before_touching_it():
    net = kc.FCNetwork.init(3, [4], seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    for k in (kc.EmpiricalNTK(net), kc.EmpiricalNNGP(net)):
        with pytest.raises(NotImplementedError, match=r"not supported .* yet"):
            k(X, device="cuda")
        with pytest.raises(NotImplementedError, match="device='cpu'"):
            kc.gram(k, X, device="cuda")
