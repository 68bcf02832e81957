"""Sphinx configuration of the ntk documentation site.

Build (from the repository root, offline):

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning — a broken cross-reference, a public symbol without
a docstring, malformed markup or math — into an error; the test suite builds
the site this way (tests/test_docs.py).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "ntk"
author = "the ntk developers"
copyright = "2026, the ntk developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# Docstrings are Google style (Args:/Returns:) with reST inline markup.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": True,
                           "show-inheritance": False}
# `name` in a docstring is a cross-reference; an unresolved one is an error.
default_role = "py:obj"
nitpicky = True
# References into other libraries are checked by their own docs, not ours
# (intersphinx would need the network at build time).
nitpick_ignore_regex = [
    ("py:.*", r"(jax|jnp|np|numpy|optax|flax|nnx|chex|scipy|matplotlib|tqdm|typing|collections|enum|dataclasses)(\..*)?"),
    ("py:.*", r"(Array|ArrayLike|Callable|Any|Optional|Sequence|Mapping|Iterable|NamedTuple|PyTree)"),
]

html_theme = "sphinx_book_theme"
html_title = "ntk"
html_theme_options = {"show_toc_level": 2}
# Offline: no external assets beyond MathJax, which the reader's browser loads.
