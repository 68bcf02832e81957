"""Sphinx configuration of the ntk documentation site.

Build (from the repository root, offline):

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning — a broken cross-reference, malformed markup or a
malformed formula — into an error; tests/test_docs.py builds the site this way
and also checks that every public name has a docstring.

Why this stack: Sphinx + MyST + autodoc is what neural-tangents' and Optax's
readers already know, MyST renders the existing Markdown pages (and their
``$…$`` math) unchanged, and autodoc with napoleon reads the Google-style
docstrings the code already has.
"""

import os
import re
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
# KernelFn documents the arguments of a call, not of its constructor.
napoleon_custom_sections = [("Call arguments", "params_style")]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Pages ask for ``:members:`` explicitly; a module's ``__all__`` decides which.
autodoc_default_options = {"undoc-members": True, "show-inheritance": False}
# `name` in a docstring is a cross-reference; an unresolved one is an error.
default_role = "py:obj"
nitpicky = True
# References into other libraries are checked by their own docs, not ours
# (intersphinx would need the network at build time).
nitpick_ignore_regex = [
    (
        "py:.*",
        r"(jax|jnp|np|numpy|optax|flax|nnx|chex|scipy|matplotlib|tqdm|typing|collections|enum|dataclasses|os)(\..*)?",
    ),
    (
        "py:.*",
        r"(Array|ArrayLike|Callable|Any|Optional|Sequence|Mapping|Iterable|NamedTuple|PyTree)",
    ),
]
html_theme = "sphinx_book_theme"
html_title = "ntk"
html_theme_options = {"show_toc_level": 2}
# The build needs no network: MathJax is a <script> the reader's browser loads.


# A formula MathJax cannot parse would only fail in the reader's browser, so
# the build checks what it can offline: balanced braces, \left/\right and
# \begin/\end pairs. A problem is a warning, hence an error under -W.
_TOKEN = re.compile(r"\\[{}]|\\left\b|\\right\b|\\begin\{(\w+\*?)\}|\\end\{(\w+\*?)\}|[{}]")


def math_problem(tex):
    """What is malformed in the TeX source ``tex``, or None."""
    stack = []
    for m in _TOKEN.finditer(tex):
        tok = m.group(0)
        if tok in ("\\{", "\\}"):
            continue
        if tok == "{" or tok.startswith("\\left") or tok.startswith("\\begin"):
            stack.append(
                "{"
                if tok == "{"
                else ("\\left" if tok.startswith("\\left") else "\\begin{%s}" % m.group(1))
            )
            continue
        want = {"}": "{"}.get(
            tok, "\\left" if tok.startswith("\\right") else "\\begin{%s}" % m.group(2)
        )
        if not stack or stack[-1] != want:
            return f"{tok!r} at offset {m.start()} does not close {stack[-1] if stack else 'anything'!r}"
        stack.pop()
    if stack:
        return f"{stack[-1]!r} is never closed"
    if "$" in tex.replace("\\$", ""):
        return "a stray '$' inside the formula"
    return None


def _check_math(app, doctree, docname):
    from docutils import nodes
    from sphinx.util import logging

    logger = logging.getLogger("ntk.math")
    for node in doctree.findall(lambda n: isinstance(n, (nodes.math, nodes.math_block))):
        problem = math_problem(node.astext())
        if problem:
            logger.warning("malformed formula %r: %s", node.astext()[:80], problem, location=node)


# A docstring names things where its reader meets them: `FullDKM` inside
# ntk.dkm.full, `mup.sgd` inside ntk.mup, `ntk.Kernel`. Autodoc documents each
# object once, under the public module that exports it (ntk.dkm.FullDKM), so an
# unresolved reference is looked up as a Python object from the docstring's
# module and its parent packages and sent to wherever that same object is
# documented (the scopes are the documented module and class, then the module
# the docstring was written in). A name that imports nowhere, or whose object is documented
# nowhere, stays a broken reference.
_MISSING = object()


def _import(dotted):
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


def _documented(env):
    """id(object) -> the name it is documented under (classes, functions, modules)."""
    cache = getattr(env, "_ntk_documented", None)
    if cache is None:
        cache = {}
        for name, entry in sorted(env.get_domain("py").objects.items(), key=lambda kv: len(kv[0])):
            obj = _import(name)
            # Numbers and strings share ids with unrelated equal values.
            if obj is not _MISSING and not isinstance(
                obj, (int, float, complex, str, bytes, tuple, type(None))
            ):
                cache.setdefault(id(obj), (name, entry))
        env._ntk_documented = cache
    return cache


def _resolve_public(app, env, node, contnode):
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py" or not node["reftarget"].replace(".", "").isidentifier():
        return None
    target, module = node["reftarget"], node.get("py:module") or ""
    scopes = [module + "." + node["py:class"]] if node.get("py:class") else []
    parts = module.split(".") if module else []
    scopes += [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    # A docstring shown under its public name still reads in its own module.
    source = str(node.source or "")
    if "docstring of " in source:
        parts = source.split("docstring of ")[-1].split(".")
        scopes += [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    scopes.append("")
    for scope in scopes:
        obj = _import(f"{scope}.{target}" if scope else target)
        if obj is _MISSING:
            continue
        found = _documented(env).get(id(obj))
        if found is None:
            return None
        name, entry = found
        return make_refnode(
            app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
        )
    return None


def _forget_documented(app, env, *args):
    env._ntk_documented = None


def setup(app):
    app.connect("doctree-resolved", _check_math)
    app.connect("missing-reference", _resolve_public)
    app.connect("env-updated", _forget_documented)
