"""Every example in a docstring of the package and of the experiments runs and
prints what it shows.

One test per module (the module's docstring and those of the objects defined
in it), in the suite's float64 / 4-device configuration (tests/conftest.py).
Outputs are compared with ELLIPSIS and NORMALIZE_WHITESPACE.

Besides the module's own names, examples may use ``jax``, ``jnp`` and ``np``
without importing them (as JAX's own docs do), and examples in ``ntk.stax``'s
files may use ``stax`` and its public names unqualified (the API page shows
them under ``ntk.stax``).
"""

import doctest
import importlib
import inspect
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments
import ntk
from ntk import stax


def _modules(package) -> list[str]:
    """``package`` and every module under it, by dotted name."""
    inside = pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    return [package.__name__] + sorted(m.name for m in inside)


MODULES = _modules(ntk) + _modules(experiments)
_FINDER = doctest.DocTestFinder()


def _globals(name):
    names = {"jax": jax, "jnp": jnp, "np": np}
    if name.startswith("ntk.stax"):
        names.update({n: getattr(stax, n) for n in stax.__all__}, stax=stax)
    return names


def _examples(name):
    module = importlib.import_module(name)
    return [t for t in _FINDER.find(module, name, extraglobs=_globals(name)) if t.examples]


WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_examples_are_found():
    # Guards against the finder silently collecting nothing.
    assert len(WITH_EXAMPLES) >= 40, WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test, out=report.append, clear_globs=True)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


# Packages whose public names must each show an example (``>>>``) in their docstring.
PUBLIC_PACKAGES = [
    "ntk.stax",
    "ntk.empirical",
    "ntk.predict",
    "ntk.parallel",
    "ntk.kernel",
    "ntk.ode",
    "ntk.power_law",
    "ntk.mup",
    "ntk.dkm",
    "ntk.random_features",
    "ntk.permutations",
    "ntk.data",
]

# Public names whose docstrings still lack an example. This set may only shrink:
# give a name an example and remove it here; never add a name (a new public
# name comes with its example). The test fails when a name here has an example
# or is no longer public, so the set cannot go stale.
MISSING_EXAMPLES: set[str] = set()


def _is_ntk(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "ntk" or module.startswith("ntk.")


def _public_objects() -> dict:
    """``{qualified name: object}`` over `PUBLIC_PACKAGES`.

    A package's ``__all__``, or else the functions and classes defined in the
    module itself whose names do not start with ``_``; only this library's
    objects (``__module__`` under ``ntk``), not re-exported JAX/NumPy names.
    """
    out = {}
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [
                n
                for n, o in vars(module).items()
                if not n.startswith("_")
                and (inspect.isfunction(o) or inspect.isclass(o))
                and o.__module__ == package
            ]
        for n in names:
            obj = getattr(module, n)
            if _is_ntk(obj):
                out[f"{package}.{n}"] = obj
    return out


def _has_example(obj) -> bool:
    # The object's own docstring (an instance's is its class's), not one
    # inherited by `inspect.getdoc` from a base class.
    return ">>>" in (getattr(obj, "__doc__", None) or "")


def test_public_names_have_examples():
    objects = _public_objects()
    assert len(objects) >= 150, sorted(objects)  # the enumeration found the packages
    missing = sorted(
        n for n, o in objects.items() if n not in MISSING_EXAMPLES and not _has_example(o)
    )
    assert not missing, f"public names without a `>>>` example in their docstring: {missing}"
    gone = sorted(MISSING_EXAMPLES - objects.keys())
    assert not gone, f"MISSING_EXAMPLES lists names that are not public (remove them): {gone}"
    done = sorted(n for n in MISSING_EXAMPLES & objects.keys() if _has_example(objects[n]))
    assert not done, f"MISSING_EXAMPLES lists names that have examples now (remove them): {done}"
