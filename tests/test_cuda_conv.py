"""The CUDA path (``device="cuda"``) of ``ConvNTK``/``ConvNNGP``, in numba's CUDA simulator.

As in ``tests/test_cuda.py``: no GPU is needed, the CUDA code runs in
subprocesses with ``NUMBA_ENABLE_CUDASIM=1`` and returns its measurements as
JSON; tests needing numba-cuda are skipped without it. The simulator runs one
Python thread per pair (Myrtle-5 on 8 x 8 images: about 0.5 s per pair), so the
sets of images are small; thread blocks of 4 threads and a small scratch budget
make several blocks and several launches out of them.

Tolerance (float64). The device kernel performs the CPU core's operations in
the CPU core's order (it is equal bit for bit today, and the results record
it), but what is asserted is what a different summation order may change: the
longest sum of an entry is global average pooling's over ``(HW)^2 = 4096``
products on 8 x 8 images, which a reordering changes by at most
``4095 u sum|terms|`` (``u = 2^-53``, Higham, *Accuracy and Stability of
Numerical Algorithms*, §4.2), 4.5e-13 of the sum of magnitudes; the 3 x 3
convolutions (9 terms) and pools (16) add ``~25 u`` per layer; after a ReLU the
terms are non-negative, so the sum of magnitudes is the value itself. 1e-12 of
the largest entry bounds this. float32 outputs are the float64 values rounded
once: 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernelcomp as kc
from tests.test_cuda import _run, needs_numba_cuda

#: architectures and image shapes: (name, kernel class, kwargs, image shape, n, m)
CASES = [
    ("flatten-bias-2ch", "ConvNTK",
     {"layers": ["conv", "relu", "conv", "relu", "flatten", "dense"], "bias_std": 0.2},
     (6, 6, 2), 5, 3),
    ("flatten-bias-2ch-nngp", "ConvNNGP",
     {"layers": ["conv", "relu", "conv", "relu", "flatten", "dense"], "bias_std": 0.2},
     (6, 6, 2), 5, 3),
    ("gap-relu_unit", "ConvNTK",
     {"layers": ["conv", "relu_unit", "conv", "relu_unit", "global_avgpool", "dense"]},
     (5, 5, 1), 3, 2),
    ("pool3-conv5-erf-layers", "ConvNTK",
     {"layers": ["conv5", "erf", "avgpool3", "conv", "erf", "flatten", "dense", "relu",
                 "dense"],
      "weight_std": [1.2, 0.9, 1.5, 1.1], "bias_std": [0.1, None, 0.3, 0.2]},
     (7, 7, 1), 3, 2),
    # every closed form of the FC kernels, in both reductions and after the reduction
    ("acts-flatten-tail", "ConvNTK",
     {"layers": ["conv", "leaky_relu", "conv", "gelu", "conv", "linear", "flatten", "dense",
                 "elu", "dense", "gelu", "dense"], "bias_std": 0.1},
     (5, 5, 1), 3, 2),
    ("acts-pool-gap", "ConvNTK",
     {"layers": ["conv", "elu", "avgpool", "conv", "gelu", "conv", "leaky_relu",
                 "global_avgpool", "dense", "linear", "dense"], "weight_std": 1.3},
     (6, 6, 1), 3, 2),
    ("myrtle5", "ConvNTK", {"myrtle": 5}, (8, 8, 1), 3, 2),
    ("myrtle5-nngp", "ConvNNGP", {"myrtle": 5}, (8, 8, 1), 3, 0),
]

_SCRIPT = """
import json, sys
import numpy as np
import kernelcomp as kc
import kernelcomp._kernels.cuda_conv as kcc
from kernelcomp._kernels.cuda import SIMULATOR

assert SIMULATOR
kcc.THREADS = 4  # several blocks, a ragged last one
rng = np.random.default_rng(17)
res = {}
for name, cls, kw, shape, n, m in json.load(sys.stdin):
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    cls = getattr(kc, cls)
    if "myrtle" in kw:
        k = cls.myrtle(kw["myrtle"], image_shape=tuple(shape))
    else:
        k = cls(image_shape=tuple(shape), **kw)
    X = rng.standard_normal((n, *shape))
    X[n - 1] = X[0]  # a duplicate: its entries are the diagonal
    labels = [("sym", (X,))]
    if m:
        labels.append(("cross", (X, rng.standard_normal((m, *shape)))))
    out = {}
    for label, args in labels:
        G = k(*args, device="cuda")
        C = k(*args)
        r = {
            "shape": list(G.shape),
            "finite": bool(np.isfinite(G).all()),
            "rel": float(np.abs(G - C).max() / np.abs(C).max()),
            "bitwise": bool(np.array_equal(G, C)),
        }
        if label == "sym":
            # the device walks the offsets one by one: its diagonal is the per-sample
            # pass in that layout (the CPU's slab layout may differ by rounding)
            dg = k._prepare(X, slab_ok=False).dg
            r["symmetric"] = bool(np.array_equal(G, G.T))
            r["diag"] = bool(np.array_equal(np.diag(G), dg))
            r["duplicate"] = bool(G[0, n - 1] == dg[0] == G[n - 1, 0])
        # float32 images: float32 result of the float64 recursion
        G32 = k(*(a.astype(np.float32) for a in args), device="cuda")
        C32 = k(*(a.astype(np.float32) for a in args))
        r["dtype32"] = str(G32.dtype)
        r["rel32"] = float(np.abs(G32.astype(float) - C32).max() / np.abs(C32).max())
        out[label] = r
    res[name] = out
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def results():
    return _run(_SCRIPT, CASES)


@needs_numba_cuda
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cuda_conv_gram_equals_cpu_core(results, case):
    name, _, _, _, n, m = case
    res = results[name]
    for label, shape in (("sym", [n, n]), ("cross", [n, m])):
        if label == "cross" and not m:
            continue
        r = res[label]
        assert r["shape"] == shape and r["finite"]
        assert r["rel"] <= 1e-12, (label, r["rel"])
        assert r["dtype32"] == "float32" and r["rel32"] <= 1e-6, (label, r["rel32"])
    sym = res["sym"]
    # properties of the device path itself: mirrored, the diagonal is the per-sample
    # value, and a duplicate image runs the self pair's operations
    assert sym["symmetric"] and sym["diag"] and sym["duplicate"]


_IO_SCRIPT = """
import json, sys
import h5py
import numpy as np
from numba import cuda
import kernelcomp as kc
import kernelcomp._kernels.cuda_conv as kcc
import kernelcomp.convolutional as kconv

tmp = json.load(sys.stdin)
kcc.THREADS = 4
rng = np.random.default_rng(5)
shape = (6, 6, 1)
# the plumbing is the same for every architecture: the cheap one (spatial diagonal)
k = kc.ConvNTK(["conv", "relu", "conv", "relu", "flatten", "dense"], image_shape=shape,
               bias_std=0.1)
X = rng.standard_normal((7, *shape))
Y = rng.standard_normal((4, *shape))
K, KXY = k(X), k(X, Y)
res = {}
# flattened rows (image_shape), driver blocks, a progress bar
res["flat_rows"] = bool(np.array_equal(k(X.reshape(7, -1), device="cuda"), K))
res["blocks_sym"] = bool(np.array_equal(kc.gram(k, X, device="cuda", block_rows=3), K))
res["blocks_cross"] = bool(np.array_equal(
    kc.gram(k, X, Y, device="cuda", block_rows=2, progress=True), KXY))
# a scratch budget of 3 pairs: several launches per block
kcc.MAX_SCRATCH_BYTES = 3 * kcc.ConvProgram(k._program(shape), True, 0.0).pair_bytes
res["launches_sym"] = bool(np.array_equal(kc.gram(k, X, device="cuda"), K))
res["launches_cross"] = bool(np.array_equal(k(X, Y, device="cuda"), KXY))
kcc.MAX_SCRATCH_BYTES = None
# device arrays in and out
res["device_X"] = bool(np.array_equal(kc.gram(k, cuda.to_device(X), device="cuda"), K))
dout = cuda.device_array((7, 7))
got = kc.gram(k, X, out=dout, device="cuda")
h = dout.copy_to_host()
res["device_out"] = bool(got is dout and np.array_equal(h, K))
dxy = cuda.device_array((7, 4), dtype=np.float32)
kc.gram(k, X, Y, out=dxy, device="cuda")
res["device_out_float32"] = bool(np.array_equal(dxy.copy_to_host(), KXY.astype(np.float32)))
with h5py.File(tmp + "/K.h5", "w") as f:
    dset = f.create_dataset("K", shape=(7, 7), dtype="f8")
    kc.gram(k, X, out=dset, device="cuda", block_rows=4)
    res["hdf5"] = bool(np.array_equal(dset[...], K))
errors = {}
for name, fn in {
    "shape": lambda: k(rng.standard_normal((3, 5, 5, 1)), device="cuda"),
    "nan": lambda: k(np.full((2, *shape), np.nan), device="cuda"),
    "device": lambda: k(X, device="gpu"),
    # an activation code without a device step (tanh has no closed form: smuggled in)
    "code": lambda: (kconv._ACTIVATIONS.__setitem__("tanh", (3, 1.0)),
                     kc.ConvNTK(["conv", "tanh", "flatten", "dense"])(X, device="cuda")),
}.items():
    try:
        fn()
    except Exception as exc:
        errors[name] = [type(exc).__name__, str(exc)]
print(json.dumps({"results": res, "errors": errors}))
"""


@needs_numba_cuda
def test_cuda_conv_blocks_launches_device_arrays_and_hdf5(tmp_path):
    out = _run(_IO_SCRIPT, str(tmp_path))
    failed = [name for name, ok in out["results"].items() if not ok]
    assert not failed, failed
    assert len(out["results"]) == 9
    errors = out["errors"]
    assert errors["shape"][0] == "ValueError" and "(6, 6, 1) are expected" in errors["shape"][1]
    assert errors["nan"][0] == "ValueError" and "NaN" in errors["nan"][1]
    assert errors["device"][0] == "ValueError" and "device" in errors["device"][1]
    # refused with one line before any launch (the device step would give NaN)
    assert errors["code"][0] == "NotImplementedError", errors["code"]
    assert "no closed-form step for activation code 3" in errors["code"][1]
    assert "\n" not in errors["code"][1]


_NO_NUMBA_CUDA_SCRIPT = """
import json, sys
sys.modules["numba_cuda"] = None  # as if numba-cuda were not installed
import numpy as np
import kernelcomp as kc
from kernelcomp._kernels._config import CudaUnavailableError

X = np.random.default_rng(0).standard_normal((3, 6, 6, 1))
k = kc.ConvNTK.myrtle(5)
msgs = []
for fn in (lambda: k(X, device="cuda"), lambda: kc.gram(k, X, device="cuda")):
    try:
        fn()
    except CudaUnavailableError as exc:
        msgs.append(str(exc))
print(json.dumps({"msgs": msgs, "cpu": bool(np.array_equal(k(X, device="cpu"), k(X)))}))
"""


def test_cuda_conv_without_numba_cuda_says_so():
    res = _run(_NO_NUMBA_CUDA_SCRIPT, simulator=False, timeout=300)
    assert res["cpu"] and len(res["msgs"]) == 2
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
    X = np.random.default_rng(0).standard_normal((3, 6, 6, 1))
    try:
        kc.ConvNNGP(["conv", "relu", "flatten", "dense"])(X, device="cuda")
    except CudaUnavailableError as exc:
        print(json.dumps({"gpu": False, "msg": str(exc), "runtime": isinstance(exc, RuntimeError)}))
"""


@needs_numba_cuda
def test_cuda_conv_without_a_device_says_so():
    res = _run(_NO_DEVICE_SCRIPT, simulator=False, timeout=300)
    if res["gpu"]:
        pytest.skip("this machine has a CUDA device")
    assert res["runtime"]
    assert "no CUDA device" in res["msg"] and "NUMBA_ENABLE_CUDASIM" in res["msg"]


def test_pair_chunks_cover_the_triangle_and_the_rectangle_once():
    from kernelcomp._kernels.cuda_conv import pair_chunks

    cases = ((7, 7, True, 5), (4, 9, False, 4), (1, 1, True, 3), (5, 3, False, 100))
    for nr, nc, sym, batch in cases:
        seen = np.zeros((nr, nc), dtype=int)
        for r, c in pair_chunks(nr, nc, sym, batch):
            assert r.shape[0] <= batch
            np.add.at(seen, (r, c), 1)
        want = np.triu(np.ones((nr, nc), dtype=int)) if sym else np.ones((nr, nc), dtype=int)
        assert np.array_equal(seen, want)


def test_device_argument_is_checked_for_conv_kernels():
    X = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    k = kc.ConvNTK(["conv", "relu", "flatten", "dense"])
    assert np.array_equal(k(X, device="cpu"), k(X))
    for bad, exc in (("gpu", ValueError), (0, TypeError)):
        with pytest.raises(exc, match="device"):
            k(X, device=bad)


def test_circular_padding_is_refused_on_the_device_before_any_device_work():
    # the device kernel pads with zeros only; the refusal comes before numba-cuda is needed
    X = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    k = kc.ConvNTK(["conv", "relu", "flatten", "dense"], padding="circular")
    with pytest.raises(NotImplementedError, match=r"padding='same' only.*device='cpu'"):
        k(X, device="cuda")
