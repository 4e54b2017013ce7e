"""Sphinx configuration of the skrec documentation.

Build (warnings are errors): ``bash docs/build.sh``, or
``sphinx-build -W -b html docs docs/_build/html``.

The example gallery is executed by default. To skip running the examples (CI), use any of:

* ``SKREC_DOCS_PLOT_GALLERY=0`` in the environment;
* ``-D plot_gallery=0`` or ``-D sphinx_gallery_conf.plot_gallery=0`` on the command line.

``SKREC_EXAMPLES_FAST=1`` makes executed examples short (few epochs). Intersphinx links to
Python, NumPy, SciPy, scikit-learn and PyTorch need a network and are off unless
``SKREC_DOCS_INTERSPHINX=1``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))
# The repository's skrec, first: the docs describe this source tree whether skrec is not
# installed, installed regularly (perhaps an older copy) or installed in editable mode.
sys.path.insert(0, str(DOCS.parent))

from skrec_docs import write_api_page  # noqa: E402

import skrec  # noqa: E402

if Path(skrec.__file__).resolve().parent != DOCS.parent / "skrec":
    raise RuntimeError(
        f"The docs build imported skrec from {skrec.__file__}, not from the source tree "
        f"{DOCS.parent / 'skrec'}: something imported another skrec before conf.py ran. "
        "Build with `bash docs/build.sh`."
    )

write_api_page(DOCS / "api.rst")  # from the modules' __all__, so new public objects appear

# -- Project ------------------------------------------------------------------------------------
project = "skrec"
author = "skrec developers"
copyright = "skrec developers, BSD-3-Clause"
release = skrec.__version__
version = ".".join(release.split(".")[:2])

# -- General ------------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "skrec_docs",
]
if os.environ.get("SKREC_DOCS_INTERSPHINX", "0") not in ("", "0"):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "literal"
nitpicky = False

# -- autodoc / autosummary / numpydoc -----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "groupwise"}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say it in words
autodoc_inherit_docstrings = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- sphinx-gallery -----------------------------------------------------------------------------
# (a private name: a module-level ``plot_gallery`` would be the config value itself and hide
# ``-D sphinx_gallery_conf.plot_gallery=0``)
_run_examples = os.environ.get("SKREC_DOCS_PLOT_GALLERY", "1") not in ("", "0", "false", "False")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # run the quickstart too, not only the plot_*.py files
    "filename_pattern": r"/(plot_|quickstart)",
    "ignore_pattern": r"__init__\.py|/_",
    "within_subsection_order": "skrec_docs.ExampleOrder",
    "plot_gallery": str(_run_examples),
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skrec",),
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 1,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "show_signature": False,
}

# Examples run in this process: keep torch and BLAS to one thread, as on a shared CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# matplotlib is only used by the examples; Agg keeps the build headless.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message="Matplotlib is currently using agg, which is a non-GUI backend",
)

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skrec {release}"
html_static_path = ["_static"]
html_css_files = ["skrec.css"]
html_theme_options = {
    "logo": {"text": "skrec"},
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": {"**": ["page-toc"], "benchmarks": []},
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "benchmarks": []}
html_show_sourcelink = False
html_context = {"default_mode": "light"}
