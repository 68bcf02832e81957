"""Every example in a docstring of the package runs and prints what it shows.

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
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import stax

MODULES = ["ntk"] + sorted(m.name for m in pkgutil.walk_packages(ntk.__path__, "ntk."))
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
