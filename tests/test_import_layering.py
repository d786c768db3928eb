"""Module layering: no import circles hidden behind function-level imports.

* ``_base`` (the Kernel protocol) sits below ``_gram`` (the driver): ``_gram``
  imports ``_base``, never the other way round, and calling a kernel does not
  need the driver.
* ``_h5`` is a leaf shared by ``io`` and the network files; neither ``network``
  nor ``_h5`` imports ``io`` or any of its modules. ``network`` delegates
  persistence to ``_network_file`` and the PyTorch import to ``_torch``; neither
  imports ``network`` back (they take the class), and torch is imported only when
  a torch module is given.
* ``_argtypes`` is a leaf shared by the command lines.
* ``cli`` (a package, one module per subcommand) sits above ``demo``: the demo is
  library code that knows nothing of the command line.
* No module of the package takes part in an import circle, counting every import
  (function-level ones too, and the ``__init__`` of each package an import runs),
  and the public packages (``diagnostics``, ``plotting``, ``estimators``,
  ``training``, ``io``) are thin: explicit re-exports, no module ``__getattr__``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import kernelcomp

PACKAGE = Path(kernelcomp.__file__).parent


def _source(name: str) -> Path:
    """The file of module ``name``: ``pkg/mod.py``, or ``pkg/mod/__init__.py`` for a package."""
    base = PACKAGE.parent / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _is_module(name: str) -> bool:
    return _source(name).exists()


def _module_file(name: str) -> Path | None:
    """The source of module ``name`` (a package's ``__init__.py``), or None."""
    path = _source(name)
    return path if path.exists() else None


def _imported_modules(name: str) -> set[str]:
    """kernelcomp modules that module ``name`` imports, anywhere in its source.

    For a package: what any of its modules imports (outside the package itself).
    Importing ``a.b.c`` imports the packages ``a.b`` and ``a`` too, so they are
    listed as well.
    """
    path = _module_file(name)
    assert path is not None, name
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    found = set()
    for node in (n for f in files for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kernelcomp")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kernelcomp"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    parents = {m.rsplit(".", k)[0] for m in found for k in range(1, m.count(".") + 1)}
    inside = f"{name}." if path.name == "__init__.py" else None
    return {m for m in found | parents
            if m != "kernelcomp" and _is_module(m)
            and not (inside and (m == name or m.startswith(inside)))}


def _package_modules(package: str) -> list[str]:
    """The modules of a kernelcomp package (``kernelcomp.io`` and ``kernelcomp.io._arrays``...)."""
    folder = _source(package).parent
    return [package] + [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py"))
                        if p.stem != "__init__"]


def test_leaf_modules_import_only_leaves():
    assert _imported_modules("kernelcomp._h5") == {"kernelcomp._version"}
    assert _imported_modules("kernelcomp._argtypes") == set()


def _imports_torch_at_module_level(name: str) -> bool:
    path = PACKAGE / (name.removeprefix("kernelcomp.").replace(".", "/") + ".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch"
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def test_torch_is_imported_lazily():
    for name in ("kernelcomp.network", "kernelcomp._torch", "kernelcomp._network_file"):
        assert not _imports_torch_at_module_level(name), name


def test_no_back_edges():
    assert "kernelcomp._gram" not in _imported_modules("kernelcomp._base")
    assert "kernelcomp._base" in _imported_modules("kernelcomp._gram")
    assert "kernelcomp.io" not in _imported_modules("kernelcomp.network")
    assert {"kernelcomp._network_file", "kernelcomp._torch"} <= _imported_modules(
        "kernelcomp.network"
    )
    assert "kernelcomp._h5" in _imported_modules("kernelcomp._network_file")
    for helper in ("kernelcomp._network_file", "kernelcomp._torch"):
        assert not _imported_modules(helper) & {"kernelcomp.network", "kernelcomp.io"}, helper
    assert "kernelcomp._h5" in _imported_modules("kernelcomp.io")
    assert "kernelcomp._argtypes" in _imported_modules("kernelcomp.cli")


def test_the_file_layer_sits_below_io():
    """``network`` and ``_h5`` never import ``io`` (nor any module of the package)."""
    assert _is_module("kernelcomp.io") and _is_module("kernelcomp.io._gram_file")
    # the helper sees an import of a package's module as an import of the package
    assert "kernelcomp.io" in _imported_modules("kernelcomp.io._info")
    for low in ("kernelcomp.network", "kernelcomp._network_file", "kernelcomp._torch",
                "kernelcomp._h5"):
        found = _imported_modules(low)
        assert not {m for m in found if m == "kernelcomp.io" or m.startswith("kernelcomp.io.")}
    io_modules = _package_modules("kernelcomp.io")
    assert len(io_modules) >= 6
    users_of_h5 = [m for m in io_modules if "kernelcomp._h5" in _imported_modules(m)]
    assert users_of_h5 == io_modules  # every module of io reads or writes through _h5


def test_kernels_and_network_files_need_neither_driver_nor_io(tmp_path):
    probe = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import kernelcomp.kernels as kernels
        import kernelcomp.network as network
        X = np.random.default_rng(0).standard_normal((5, 3))
        kernels.NTK()(X)
        kernels.NNGP().diag(X)
        net = network.FCNetwork.init(3, [4], seed=0)
        for ext in ("npz", "h5"):
            network.FCNetwork.load(net.save({str(tmp_path)!r} + "/net." + ext))
        mods = [m for m in sys.modules if m.startswith("kernelcomp") or m == "torch"]
        print(json.dumps(sorted(mods)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "kernelcomp._gram" not in loaded
    assert "kernelcomp.io" not in loaded
    assert "kernelcomp._h5" in loaded
    assert "torch" not in loaded


def test_cli_type_helpers_come_from_argtypes():
    from kernelcomp import _argtypes, cli
    from kernelcomp.cli import _train

    for name in _argtypes.__all__:
        assert getattr(cli, name) is getattr(_argtypes, name)
    assert _train.positive_int is _argtypes.positive_int


def test_demo_is_library_code_below_the_cli():
    imported = _imported_modules("kernelcomp.demo")
    assert not {m for m in imported if m == "kernelcomp.cli" or m.startswith("kernelcomp.cli.")}
    assert "kernelcomp._argtypes" not in imported
    source = (PACKAGE / "demo.py").read_text(encoding="utf-8")
    assert "argparse" not in source
    assert "kernelcomp.demo" in _imported_modules("kernelcomp.cli")
    # every subcommand module keeps its parser beside its handler
    from kernelcomp import cli

    for module in cli.SUBCOMMANDS:
        assert callable(module.add_parser) and callable(module.run), module.__name__


def test_cli_submodules_do_not_import_each_other_in_circles():
    shared = {"kernelcomp.cli._common", "kernelcomp.cli._sources"}
    assert not {m for m in _imported_modules("kernelcomp.cli._common")
                if m.startswith("kernelcomp.cli")}
    for name in ("_gram", "_kpca", "_geometry", "_info", "_train", "_demo"):
        deps = {m for m in _imported_modules(f"kernelcomp.cli.{name}")
                if m.startswith("kernelcomp.cli.")}
        assert deps <= shared, (name, deps)


def test_building_the_command_line_loads_no_compiled_code():
    # `kernelcomp --help`, `kernelcomp info` and argument errors stay instant: the parser
    # imports neither numba nor the kernels
    probe = textwrap.dedent(
        """
        import json, sys
        import kernelcomp.cli as cli
        cli.build_parser()
        print(json.dumps(sorted(m for m in sys.modules
                                if m == "numba" or m.startswith("kernelcomp._kernels"))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# ---------------------------------------------------------------------------
# every import of the package: no circles
# ---------------------------------------------------------------------------
# the import graph is the one scripts/layout_metrics.py reports (one home for the rules:
# function-level imports count, an import of ``a.b.c`` runs the ``__init__`` of ``a.b``
# first, ``if TYPE_CHECKING:`` imports never run)
_spec = importlib.util.spec_from_file_location(
    "layout_metrics", PACKAGE.parent / "scripts" / "layout_metrics.py"
)
assert _spec is not None and _spec.loader is not None
layout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layout)
_circles = layout.circles


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules its imports run (a module's own packages are not edges)."""
    return layout.import_graph(layout.known_modules())


def test_the_cycle_finder_finds_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set(), "c": {"b"}}) == []
    # an import of a package's module runs the package's __init__ first
    graph = _import_graph()
    assert "kernelcomp.diagnostics" in graph["kernelcomp.plotting._kpca"]
    assert "kernelcomp.io" in graph["kernelcomp.training._network_flow"]
    # function-level imports count: the CLI defers most of its imports
    assert "kernelcomp.demo" in graph["kernelcomp.cli._demo"]


def test_no_import_circles_anywhere():
    """Every import of every module, function-level ones included: no circle."""
    assert _circles(_import_graph()) == []


#: function-level imports of the package's own modules outside the command line:
#: the compiled core and the optional extras (CUDA, Dask) loaded on demand, and the
#: file layer under io/ that reads networks back; the CLI defers its imports to
#: keep `kernelcomp --help` instant and is not counted
FUNCTION_LEVEL_IMPORTS_OUTSIDE_CLI = 30


def test_function_level_imports_stay_few():
    modules = layout.known_modules()
    late = sorted({(name, line) for name, path in modules.items()
                   if not name.startswith("kernelcomp.cli")
                   for _, line, inside in layout.imports(path, modules) if inside})
    assert len(late) <= FUNCTION_LEVEL_IMPORTS_OUTSIDE_CLI, late


def test_public_packages_are_thin():
    """Explicit re-exports in each public package's ``__init__``; no module __getattr__."""
    for package in ("diagnostics", "plotting", "estimators", "training", "io"):
        path = PACKAGE / package / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        assert not defined & {"__getattr__", "__dir__"}, package
        module = importlib.import_module(f"kernelcomp.{package}")
        for name in module.__all__:
            assert hasattr(module, name), (package, name)
