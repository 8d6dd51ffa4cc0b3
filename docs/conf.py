"""Sphinx configuration of the trajinfer documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Environment variables:

``TRAJINFER_DOCS_FAST``
    ``1`` (the default in a docs build): the gallery examples use small iteration counts so the
    whole build takes a few minutes on two CPU cores. ``0`` runs them at full size.
``TRAJINFER_DOCS_INTERSPHINX``
    ``1`` links types to the numpy, torch, anndata, scanpy and POT documentation (needs the
    network). Off by default so that an offline build is warning-free.
``TRAJINFER_DOCS_GALLERY``
    ``0`` skips executing the gallery (pages are built without outputs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(REPO))

# Gallery examples read this flag; small settings unless the user asks for the full ones.
os.environ.setdefault("TRAJINFER_DOCS_FAST", "1")
os.environ.setdefault("MPLBACKEND", "agg")

import trajinfer_docs  # noqa: E402  (docs/_ext: API pages and benchmark pages generated at build time)

import trajinfer  # noqa: E402

# -- project ---------------------------------------------------------------------------------
project = "trajinfer"
author = "the trajinfer developers"
copyright = "2025, the trajinfer developers"
release = trajinfer.__version__
version = ".".join(release.split(".")[:2])

# -- general ---------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "trajinfer_docs",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.codeobj.json", "auto_examples/*.md5"]
root_doc = "index"
default_role = "obj"
# Broken internal references fail a ``-W`` build: Sphinx warns on unknown :ref:/:doc: targets
# and docs/_ext/trajinfer_docs.py warns on any ``trajinfer.*`` object that is documented
# nowhere. References to external types (torch.Tensor, anndata.AnnData, ...) are not checked,
# so an offline build without intersphinx stays clean.
nitpicky = False
suppress_warnings: list[str] = []

# -- optional parts: ``.. only:: cli`` blocks appear when the command-line module exists ------
if trajinfer_docs._import("trajinfer.cli") is not None:
    tags.add("cli")  # noqa: F821  (Sphinx provides ``tags`` to conf.py)

# -- API pages -------------------------------------------------------------------------------
trajinfer_docs.write_api_pages(DOCS / "generated" / "api")
trajinfer_docs.write_benchmark_pages(REPO / "benchmarks" / "results", DOCS / "generated" / "benchmarks")

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc shows the documented types; signatures stay short
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- intersphinx (needs the network: opt in) -------------------------------------------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "ot": ("https://pythonot.github.io/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
}
if os.environ.get("TRAJINFER_DOCS_INTERSPHINX", "0") != "1":
    intersphinx_disabled_reftypes = ["*"]
    intersphinx_mapping = {}

# -- gallery ---------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": trajinfer_docs.gallery_ignore_pattern(),
    "within_subsection_order": "trajinfer_docs.GalleryOrder",
    "plot_gallery": os.environ.get("TRAJINFER_DOCS_GALLERY", "1") != "0",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib", "seaborn", "trajinfer_docs.reset_random_state"),
    "doc_module": ("trajinfer",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"trajinfer": None},
    "min_reported_time": 1,
    "show_memory": False,
    "show_signature": False,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "capture_repr": ("_repr_html_",),  # DataFrames as tables; no "<Axes ...>" lines
    "thumbnail_size": (320, 240),
    "image_srcset": [],
    "write_computation_times": True,
}

# -- HTML ------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"trajinfer {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "sidebar_hide_name": False,
    "navigation_with_keys": True,
}
pygments_style = "friendly"
pygments_dark_style = "monokai"
