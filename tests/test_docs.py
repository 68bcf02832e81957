"""The documentation site (docs/) builds in strict mode and documents every public name,
and the Python examples of the README and docs/ run.

The build is Sphinx's, as in the README: ``-W --keep-going`` with ``nitpicky``
(docs/conf.py), so an unresolved cross-reference, malformed reST/MyST or a
malformed formula is an error. It runs once per session in a subprocess (a
fresh interpreter imports the package as a reader's build would). The examples
run each in a namespace of its own, in JAX's default float32, as a reader
pastes them.
"""

import importlib
import importlib.util
import os
import pickle
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import ntk

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# The public modules: ntk's non-underscore submodules. Each has an API page.
PUBLIC_MODULES = sorted(
    f"ntk.{m.name}" for m in pkgutil.iter_modules(ntk.__path__) if not m.name.startswith("_")
)


def _sphinx(src, out, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-E",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            *extra,
            str(src),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = _sphinx(DOCS, out)
    objects = None
    pickled = out / "doctrees" / "environment.pickle"
    if pickled.exists():
        with open(pickled, "rb") as f:
            objects = pickle.load(f).domaindata["py"]["objects"]
    return proc, out, objects


def _public_names(module_name):
    """(module, name, object) for the names a public module exports, and for the
    names of the public submodules it exports (``ntk.mup.dmft``...)."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module_name
        ]
    for name in names:
        obj = getattr(module, name)
        if type(obj) is type(module):
            yield from _public_names(obj.__name__)
        else:
            yield module_name, name, obj


def _docstring_missing(obj):
    import inspect

    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        fields = getattr(obj, "_fields", None)
        # NamedTuple's generated docstring, "Name(a, b)", documents nothing.
        if fields is not None and doc == f"{obj.__name__}({', '.join(fields)})":
            return True
        return not (doc or "").strip()
    if callable(obj):
        return not (getattr(obj, "__doc__", None) or "").strip()
    return False  # constants: documented on their API page (checked by the build test)


def test_site_builds_strictly_without_warnings(site):
    proc, out, _ = site
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr[-8000:]
    assert (out / "html" / "index.html").exists()
    assert (out / "html" / "api" / "stax.html").exists()


@pytest.mark.parametrize("page", ["ntk", "mup", "dkm", "random_features", "permutations"])
def test_every_paper_page_renders_its_formulas_as_math(site, page):
    # MathJax typesets the nodes MyST makes of ``$…$`` / ``$$…$$``; a formula
    # left in a code span or in plain Unicode produces none.
    _, out, _ = site
    html = (out / "html" / f"{page}.html").read_text()
    assert html.count('class="math') >= 20, f"{page}.html has too few math nodes"


def test_every_public_module_has_an_api_page():
    listed = (DOCS / "api" / "index.md").read_text()
    for module in PUBLIC_MODULES:
        short = module.split(".", 1)[1]
        page = DOCS / "api" / f"{short}.md"
        assert page.exists(), f"no API page docs/api/{short}.md for {module}"
        text = page.read_text()
        assert f".. automodule:: {module}\n   :members:" in text, f"{page} lacks automodule"
        assert f"\n{short}\n" in listed, f"docs/api/index.md does not list {short}"


def test_every_public_name_is_on_the_site(site):
    proc, _, objects = site
    assert objects is not None, proc.stderr[-4000:]
    missing = [
        f"{m}.{n}"
        for module in PUBLIC_MODULES
        for m, n, _ in _public_names(module)
        if f"{m}.{n}" not in objects
    ]
    assert not missing, f"public names the API reference does not document: {missing}"


def test_every_public_name_has_a_docstring():
    import inspect

    missing = []
    for module in PUBLIC_MODULES:
        if not (importlib.import_module(module).__doc__ or "").strip():
            missing.append(module)
        for m, name, obj in _public_names(module):
            if _docstring_missing(obj):
                missing.append(f"{m}.{name}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, (staticmethod, classmethod)):
                        value = value.__func__
                    if (inspect.isfunction(value) or isinstance(value, property)) and not (
                        value.__doc__ or ""
                    ).strip():
                        missing.append(f"{m}.{name}.{attr}")
    assert not missing, f"public names without a docstring: {missing}"


def _load_conf():
    spec = importlib.util.spec_from_file_location("ntk_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


@pytest.mark.parametrize(
    "tex",
    [
        r"\Theta(x, x') = \nabla_\theta f(x) \cdot \nabla_\theta f(x')",
        r"\left\{ a \right. \quad \leftarrow \rightarrow",
        r"\begin{aligned} a &= \frac{1}{2} \\ b &= \{c\} \end{aligned}",
    ],
)
def test_math_check_accepts_wellformed_formulas(tex):
    assert _load_conf().math_problem(tex) is None


@pytest.mark.parametrize(
    "tex",
    [
        r"\frac{1}{2",  # unclosed brace
        r"a}",  # closing brace without opening
        r"\left( x",  # \left without \right
        r"\begin{aligned} a \end{array}",  # mismatched environments
        r"x^2 $ y",  # a '$' leaked into the formula
    ],
)
def test_math_check_rejects_malformed_formulas(tex):
    assert _load_conf().math_problem(tex) is not None


def test_strict_build_fails_on_broken_reference_and_formula(tmp_path):
    """The site's configuration turns a broken reference and a malformed formula
    into errors (on a two-line page, so the check itself is what is tested)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text((DOCS / "conf.py").read_text())
    (src / "index.md").write_text("# t\n\nSee {py:obj}`ntk.no_such_name`.\n\n$\\frac{1}{2$\n")
    proc = _sphinx(src, tmp_path)
    assert proc.returncode != 0
    assert "ntk.no_such_name" in proc.stderr, proc.stderr
    assert "malformed formula" in proc.stderr, proc.stderr


# ------------------------------------------------------------ the examples run

#: Each example block: its id ``file#k`` (k-th ``python`` block of the file) and code.
EXAMPLES = {
    f"{path.relative_to(ROOT)}#{k}": m.group(1)
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for k, m in enumerate(re.finditer(r"```python\n(.*?)```", path.read_text(), re.S))
}


def _run_example(name, capsys) -> str:
    """Run a block as a reader pastes it: a namespace of its own, JAX's default
    float32 (the suite runs in float64), figures closed after; returns its output."""
    import matplotlib.pyplot as plt

    capsys.readouterr()
    try:
        with jax.enable_x64(False):
            exec(compile(EXAMPLES[name], name, "exec"), {"__name__": "__example__"})
    finally:
        plt.close("all")
    return capsys.readouterr().out


def test_examples_are_found():
    assert len(EXAMPLES) >= 10
    assert "README.md#0" in EXAMPLES and "kernel_fn" in EXAMPLES["README.md#0"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_python_example_runs_as_pasted(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _run_example(name, capsys)
    # a float32 kernel that is not positive definite turns a solve into NaN silently
    assert not re.search(r"\bnan\b", out, re.I), out


def test_readme_quick_start_prints_the_predictions_its_comment_quotes(capsys):
    # the comment: "≈ sin(x_test): a b c", the converged NTK predictor's output
    quoted = re.search(r"≈ sin\(x_test\): (.*)", EXAMPLES["README.md#0"]).group(1).split()
    printed = re.findall(r"-?\d+\.\d+", _run_example("README.md#0", capsys))
    np.testing.assert_allclose([float(v) for v in printed], [float(v) for v in quoted], atol=1e-3)
    # and they are near sin at the test inputs, as it says (20 points on [-3, 3])
    np.testing.assert_allclose([float(v) for v in quoted], np.sin([-2.5, 0.3, 1.7]), atol=0.02)
