"""The compiled-code contract of kernelcomp._kernels._config.

* Every compiled function goes through ``kernelcomp._kernels._config.jit``:
  no other module calls numba's decorators.
* The public layer normalises inputs (dtype, memory layout, read-only flag),
  so each compiled function is specialised at most twice (float32, float64)
  whatever arrays users pass.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kernelcomp

PACKAGE = Path(kernelcomp.__file__).parent
CONFIG = PACKAGE / "_kernels" / "_config.py"
#: numba's compiling decorators
COMPILERS = {"jit", "njit", "generated_jit", "vectorize", "guvectorize", "cfunc", "stencil"}

# Runs in a fresh interpreter, so that no other test's direct calls of the
# compiled core count, and prints {dispatcher: number of signatures}.
_PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil
    import numpy as np
    from numba.core.dispatcher import Dispatcher
    import kernelcomp as kc
    import kernelcomp._kernels as pkg

    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 3))
    variants = []
    for dt in (np.float64, np.float32):
        X = base.astype(dt)
        ro = X.copy()
        ro.setflags(write=False)
        ro_f = np.asfortranarray(X)
        ro_f.setflags(write=False)
        variants += [X, np.asfortranarray(X), ro, ro_f, X[::2], np.repeat(X, 2, axis=1)[:, ::2]]
    variants.append(np.round(base * 10).astype(np.int64))  # integers: float64
    net = kc.FCNetwork.init(3, [16], seed=0)
    kernels = [
        kc.NTK(), kc.NNGP(), kc.NTK(activation="erf", depth=2), kc.NNGP(activation="erf"),
        kc.EmpiricalNTK(net), kc.EmpiricalNNGP(net),
    ]
    for X in variants:
        for k in kernels:
            k(X)
            k(X, X[:7])
            k.diag(X)
            kc.gram(k, X, block_rows=16)
    counts = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == mod.__name__:
                counts[f"{mod.__name__}.{name}"] = [str(s) for s in obj.signatures]
    print(json.dumps(counts))
    """
)


def test_public_kernels_compile_each_function_at_most_twice():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr
    signatures = json.loads(out.stdout.strip().splitlines()[-1])
    too_many = {name: sigs for name, sigs in signatures.items() if len(sigs) > 2}
    assert not too_many, json.dumps(too_many, indent=1)
    # the probe did run compiled code (a function loaded from numba's on-disk
    # cache lists the signatures it was called with; the functions it calls, not)
    assert len(signatures["kernelcomp._kernels.analytic.tiles"]) == 2


def _numba_decorator_uses(path: Path) -> list[str]:
    """Lines of ``path`` that use one of numba's compiling decorators directly."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    numba_names = set()  # what `numba` is called here (import numba [as nb])
    direct = set()  # compilers imported by name (from numba import njit)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "numba":
                    numba_names.add(a.asname or "numba")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numba"):
            for a in node.names:
                if a.name in COMPILERS:
                    direct.add(a.asname or a.name)
                    hits.append(f"{path}:{node.lineno}: from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in COMPILERS
            and isinstance(node.value, ast.Name)
            and node.value.id in numba_names
        ):
            hits.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in direct:
            hits.append(f"{path}:{node.lineno}: {node.id}")
    return hits


def test_only_the_config_module_calls_numba_decorators():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert CONFIG in sources
    hits = [hit for p in sources if p != CONFIG for hit in _numba_decorator_uses(p)]
    assert not hits, "\n".join(hits)
    # and the check does see a direct use
    line = _line_of(CONFIG, "numba.njit")
    assert _numba_decorator_uses(CONFIG) == [f"{CONFIG}:{line}: numba.njit"]


def _line_of(path: Path, text: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not in {path}")


def test_stale_cache_is_dropped_when_any_compiled_source_changes(tmp_path):
    """numba keys a cache entry on its own file only: a changed helper file must clear the cache."""
    from kernelcomp._kernels import _config

    (tmp_path / "helper.py").write_text("A = 1\n")
    (tmp_path / "kernel.py").write_text("B = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "kernel.f-1.py311.nbi").write_bytes(b"index")
    (cache / "kernel.f-1.py311.1.nbc").write_bytes(b"code")
    (cache / "kernel.cpython-311.pyc").write_bytes(b"pyc")
    assert _config._drop_stale_cache(tmp_path)  # no stamp yet: cleared
    assert sorted(p.name for p in cache.iterdir()) == [
        "kernel.cpython-311.pyc", _config._STAMP_NAME
    ]
    (cache / "kernel.f-1.py311.nbi").write_bytes(b"index")
    assert not _config._drop_stale_cache(tmp_path)  # same sources: kept
    assert (cache / "kernel.f-1.py311.nbi").exists()
    (tmp_path / "helper.py").write_text("A = 3\n")  # only the helper changes
    assert _config._drop_stale_cache(tmp_path)
    assert not (cache / "kernel.f-1.py311.nbi").exists()


def test_the_package_cache_stamp_matches_its_sources():
    from kernelcomp._kernels import _config

    if not _config.CACHE:
        pytest.skip("numba cache turned off (KERNELCOMP_NUMBA_CACHE=0)")
    stamp = _config._HERE / "__pycache__" / _config._STAMP_NAME
    if not stamp.exists():
        pytest.skip("read-only install: no stamp written")
    assert stamp.read_text().strip() == _config._sources_fingerprint()
