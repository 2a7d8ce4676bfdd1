"""Sphinx configuration: the guide (the README's sections), the API reference generated from the
numpydoc docstrings, and the report's chart. Build: sphinx-build -W -b html docs docs/_build
(after `python -m fastembed.bench --quick --png docs/_static/report.png` for the chart)."""

from pathlib import Path

import fastembed

project = "fastembed"
release = version = fastembed.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_static_path = ["_static"]
myst_heading_anchors = 3
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": False}
suppress_warnings = ["myst.xref_missing"]

if not (Path(__file__).parent / "_static" / "report.png").is_file():
    raise RuntimeError(
        "docs/_static/report.png is missing: run python -m fastembed.bench --quick --png docs/_static/report.png"
    )
