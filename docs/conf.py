"""Sphinx configuration of the kernelcomp documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

import kernelcomp  # noqa: E402

project = "kernelcomp"
author = "kernelcomp developers"
copyright = "kernelcomp developers"  # noqa: A001
release = kernelcomp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "kernelcomp_cli",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build"]
root_doc = "index"

# API reference: one page per public module, generated from the docstrings
autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections already give the types
add_module_names = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# no network at build time: intersphinx inventories are optional (none configured)
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

# the example gallery: every examples/plot_*.py runs when the documentation is built
# (figures from matplotlib's Agg backend, printed output captured); a failing example
# fails the build. Nothing is downloaded: no zip archives, no Binder/JupyterLite, code
# links resolved against this documentation only.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "image_scrapers": ("matplotlib",),
    "reference_url": {"kernelcomp": None},
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
}

html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"kernelcomp {release}"


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing methods (``set_*_request``)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _resolve_top_level(app, env, node, contnode):
    """Resolve ``kernelcomp.FCNetwork`` (and its members) to the name's home module.

    ``kc.FCNetwork``, ``kc.NTK``... are the package's lazily imported aliases of names
    documented in their public modules; docstrings may cite either spelling.
    """
    if node.get("refdomain") != "py":
        return None
    parts = node.get("reftarget", "").split(".")
    if len(parts) < 2 or parts[0] != "kernelcomp":
        return None
    home = kernelcomp._LAZY_ATTRS.get(parts[1])
    if home is None or home.rsplit(".", 1)[-1].startswith("_"):
        return None  # not an alias, or documented under kernelcomp itself
    target = ".".join([home, *parts[1:]])
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
    )


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("missing-reference", _resolve_top_level)

# unresolved references to kernelcomp's own names are errors; other libraries' names
# (numpy, h5py, the standard library) are left as plain text (no intersphinx offline)
nitpicky = True
# (nor private modules, which the reference does not document)
nitpick_ignore_regex = [(r"py:.*", r"(?!kernelcomp\b).*"), (r"py:.*", r"kernelcomp(\.\w+)*\._.*")]
