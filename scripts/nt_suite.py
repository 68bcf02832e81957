"""Run neural-tangents' own test suite against ntk.

Run with the dev python (the one that imports ``ntk``), never NT's: NT's tests
run on the current jax against ``ntk`` posing as ``neural_tangents``. Nothing
of NT is committed; at run time this script

1. finds NT 0.6.5's test package (``tests/``, shipped in NT's wheel) and
   ``neural_tangents/_src/utils/utils.py`` in the pinned reference
   environment (``--nt-env``, ``$NT_ENV``, or ``/work/envs/ntref``; made by
   ``scripts/make_nt_env.sh``) by asking that env's python where they are;
2. copies the tests to a temporary directory, leaving out the ones that test
   NT's internals (``rules_test.py``: structured-derivative rules on
   ``jax.core``) or NT's ``examples/`` scripts (not in the wheel) and the
   TensorFlow ones (``tests/experimental``), and applies the mechanical
   renames current jax needs (``jax.tree_map`` is gone: ``jax.tree.map``);
3. writes a shim package ``neural_tangents`` next to them that re-exports
   ``ntk``'s public API under NT's module names (``neural_tangents.stax`` is
   ``ntk.stax``, ``_src.batching`` is ``ntk.parallel``, ...), plus NT's
   ``_src/utils/utils.py``, copied from the reference env because the tests
   import it;
4. runs ``python -m pytest`` there with this interpreter, the working tree's
   ``ntk`` first on the path, and prints the failed/passed counts and the
   failures grouped by exception type.

The shim's layer constructors defer a construction error to the first call
of the layer's functions: NT's tests build every parameterized network
before deciding to skip it, so a constructor raising at once (a ``ValueError``
for a layout ntk rejects) would fail tests NT itself skips.

Usage (from the repository root; 10-20 min on 2 cores):

    python scripts/nt_suite.py -n 2
    python scripts/nt_suite.py -n 2 --out /tmp/nt_after.tsv --compare /tmp/nt_before.tsv
    python scripts/nt_suite.py --keep /tmp/nt_suite -k DotGeneral   # keep the tree

Arguments this script does not know (``-n 2``, ``-k EXPR``, ``-x``, test
paths relative to the copied tree such as ``tests/stax/linear_test.py``) go to
pytest; put them after ``--`` if they clash with ours. ``--out PATH`` writes
one line per test, ``outcome<TAB>node id<TAB>first line of the error``, and
``--compare PATH`` prints the tests whose outcome differs from such a file.
Exit status: 0 when the suite ran (whatever it found), 2 on a usage or
environment error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NT_VERSION = "0.6.5"
DEFAULT_NT_ENV = "/work/envs/ntref"

# Entries of the top level of NT's `tests/` that cannot run against ntk: they
# import NT's internals (`rules`), its `examples/` package (not shipped in the
# wheel) or TensorFlow (`experimental`).
DROPPED = (
    "rules_test.py",
    "elementwise_numerical_test.py",
    "elementwise_test.py",
    "empirical_ntk_test.py",
    "function_space_test.py",
    "imdb_test.py",
    "infinite_fcn_test.py",
    "weight_space_test.py",
    "experimental",
)

# (pattern, replacement): APIs removed from jax since NT 0.6.5's jax 0.4.25,
# replaced by their documented successors; nothing else in the tests changes.
RENAMES = (
    (r"\bfrom jax import tree_map\b", "from jax.tree_util import tree_map"),
    (r"\bjax\.tree_map\(", "jax.tree.map("),
)

# The shim, as module path -> source. Only ntk's public names appear here.
SHIM = {
    "neural_tangents/__init__.py": """
        import ntk as _ntk

        for _name in dir(_ntk):
            if not _name.startswith("__") and _name not in ("stax", "predict"):
                globals()[_name] = getattr(_ntk, _name)

        from . import predict, stax  # noqa: E402,F401
    """,
    "neural_tangents/stax.py": """
        import functools

        import ntk.stax as _stax
        from ntk.stax.layer import make_layer as _make_layer


        def _deferring(constructor):
            # NT's tests build every parameterized network before skipping the
            # unsupported ones; a constructor that raises at once would fail them.
            @functools.wraps(constructor)
            def deferred(*args, **kwargs):
                try:
                    return constructor(*args, **kwargs)
                except Exception as e:
                    error = e

                    def raiser(*a, **k):
                        raise error

                    return (raiser, raiser, raiser)

            return deferred


        for _name in dir(_stax):
            if _name.startswith("__"):
                continue
            _value = getattr(_stax, _name)
            if (
                callable(_value)
                and _name[:1].isupper()
                and not isinstance(_value, type)
                and _name != "Bool"
            ):
                _value = _deferring(_value)
            globals()[_name] = _value


        def layer(constructor):
            # NT's decorator: a function returning (init_fn, apply_fn, kernel_fn)
            # becomes a layer; ntk's make_layer takes the same three functions.
            @functools.wraps(constructor)
            def made(*args, **kwargs):
                init_fn, apply_fn, kernel_fn = constructor(*args, **kwargs)[:3]
                return _make_layer(constructor.__name__, init_fn, apply_fn, kernel_fn)

            return made
    """,
    "neural_tangents/predict.py": """
        import sys

        import ntk.predict

        sys.modules[__name__] = ntk.predict
    """,
    "neural_tangents/_src/__init__.py": "",
    "neural_tangents/_src/batching.py": """
        from ntk.parallel import *  # noqa: F401,F403
        from ntk.parallel import batch


        # NT's two strategies behind `batch`, which its tests call by name:
        # tiles on one device, and inputs split over devices.
        def _serial(kernel_fn, batch_size=0, store_on_device=True):
            return batch(kernel_fn, batch_size, 0, store_on_device)


        def _parallel(kernel_fn, device_count=-1):
            return batch(kernel_fn, 0, device_count)
    """,
    "neural_tangents/_src/empirical.py": """
        from ntk import NtkImplementation
        from ntk.empirical import *  # noqa: F401,F403

        _DEFAULT_TESTING_NTK_IMPLEMENTATION = NtkImplementation.STRUCTURED_DERIVATIVES
    """,
    "neural_tangents/_src/monte_carlo.py": """
        from ntk.empirical.monte_carlo import *  # noqa: F401,F403
        from ntk.empirical.monte_carlo import monte_carlo_kernel_fn  # noqa: F401
    """,
    "neural_tangents/_src/predict.py": """
        import jax

        from ntk.predict import *  # noqa: F401,F403


        def _is_on_cpu(x):
            return all(
                "cpu" in str(next(iter(leaf.devices()))).lower()
                for leaf in jax.tree_util.tree_leaves(x)
            )
    """,
    "neural_tangents/_src/utils/__init__.py": "",
    # NT's linear_test.py needs only `powerset`, the itertools recipe; used
    # when more_itertools is not installed.
    "_extra/more_itertools.py": """
        from itertools import chain, combinations


        def powerset(iterable):
            items = list(iterable)
            return chain.from_iterable(combinations(items, r) for r in range(len(items) + 1))
    """,
    # Records every test's outcome for --out/--compare; under xdist only the
    # controller writes (the workers' reports reach it through this hook).
    "conftest.py": """
        import json
        import os

        _PATH = os.environ.get("NT_SUITE_OUTCOMES")
        _RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
        _tests = {}
        _subtests = {"passed": 0, "failed": 0, "skipped": 0}


        def _reason(report):
            crash = getattr(report.longrepr, "reprcrash", None)
            text = crash.message if crash is not None else str(report.longrepr or "")
            return (text.strip().splitlines() or [""])[0][:240]


        def pytest_runtest_logreport(report):
            if hasattr(report, "context"):  # a subtest
                if report.when == "call":
                    _subtests[report.outcome] += 1
                return
            outcome = report.outcome
            if outcome == "failed" and report.when != "call":
                outcome = "error"
            if report.when != "call" and outcome == "passed":
                outcome = None
            if outcome is None:
                _tests.setdefault(report.nodeid, ("passed", ""))
                return
            old = _tests.get(report.nodeid)
            if old is None or _RANK[outcome] >= _RANK[old[0]]:
                _tests[report.nodeid] = (outcome, _reason(report) if outcome != "passed" else "")


        def pytest_sessionfinish(session):
            if _PATH and not hasattr(session.config, "workerinput"):
                with open(_PATH, "w") as f:
                    json.dump({"tests": _tests, "subtests": _subtests}, f)
    """,
    "pytest.ini": """
        [pytest]
        python_files = *_test.py
        addopts = -p no:cacheprovider
    """,
}


def nt_paths(nt_env: Path) -> tuple[Path, Path]:
    """NT's ``tests`` directory and ``_src/utils/utils.py`` in ``nt_env``.

    Asks the env's own python (without importing NT, which loads TensorFlow)
    for the installed version and the package location.
    """
    python = nt_env / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"error: --nt-env {nt_env}: no bin/python there; "
            f"create it with scripts/make_nt_env.sh {nt_env}"
        )
    probe = (
        "import importlib.metadata as m, importlib.util as u\n"
        "print(m.version('neural-tangents'))\n"
        "print(u.find_spec('neural_tangents').submodule_search_locations[0])\n"
    )
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"error: --nt-env {nt_env}: its python cannot locate neural_tangents:\n"
            + proc.stderr.strip()[-2000:]
        )
    version, package = proc.stdout.split()
    if version != NT_VERSION:
        raise SystemExit(
            f"error: --nt-env {nt_env}: expected neural-tangents {NT_VERSION}, found {version}"
        )
    package_dir = Path(package)
    tests = package_dir.parent / "tests"
    utils = package_dir / "_src" / "utils" / "utils.py"
    for path in (tests / "test_utils.py", utils):
        if not path.is_file():
            raise SystemExit(f"error: --nt-env {nt_env}: {path} is missing")
    return tests, utils


def copy_tests(src: Path, dst: Path) -> dict[str, int]:
    """Copy NT's tests minus `DROPPED`, applying `RENAMES`; count each rename."""

    def ignore(directory, names):
        # DROPPED names modules of the top level only (stax/ has its own
        # elementwise_test.py, which stays).
        top = Path(directory) == src
        return [
            n for n in names if n == "__pycache__" or n.endswith(".pyc") or top and n in DROPPED
        ]

    shutil.copytree(src, dst, ignore=ignore)
    counts: Counter[str] = Counter()
    for path in sorted(dst.rglob("*.py")):
        text = path.read_text()
        for pattern, replacement in RENAMES:
            text, n = re.subn(pattern, replacement, text)
            counts[replacement] += n
        path.write_text(text)
    return dict(counts)


def write_shim(root: Path, utils: Path) -> bool:
    """Write `SHIM` under ``root``; True if more_itertools had to be shimmed."""
    try:
        import more_itertools  # noqa: F401

        need_extra = False
    except ImportError:
        need_extra = True
    for rel, source in SHIM.items():
        if rel.startswith("_extra/") and not need_extra:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    shutil.copyfile(utils, root / "neural_tangents" / "_src" / "utils" / "utils.py")
    return need_extra


def read_outcomes_tsv(path: Path) -> dict[str, str]:
    outcomes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            outcome, nodeid = line.split("\t")[:2]
            outcomes[nodeid] = outcome
    return outcomes


def report(results: dict, out: Path | None, compare: Path | None) -> None:
    tests = results["tests"]
    counts = Counter(outcome for outcome, _ in tests.values())
    subtests = results["subtests"]
    # pytest's own summary line counts failed subtests among the failed.
    print(
        f"\nNT {NT_VERSION} suite against ntk: tests "
        + ", ".join(f"{counts[k]} {k}" for k in ("failed", "error", "passed", "skipped"))
        + f"; subtests {subtests['passed']} passed, {subtests['failed']} failed "
        f"(pytest's count: {counts['failed'] + subtests['failed']} failed)"
    )
    kinds = Counter(
        (reason.split(":")[0] or "?")
        for outcome, reason in tests.values()
        if outcome in ("failed", "error")
    )
    if kinds:
        print("failures by exception: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    if out is not None:
        lines = [f"{o}\t{nodeid}\t{reason}" for nodeid, (o, reason) in sorted(tests.items())]
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out} ({len(lines)} tests)")
    if compare is not None:
        before = read_outcomes_tsv(compare)
        changed = [
            (nodeid, before.get(nodeid, "absent"), tests.get(nodeid, ("absent",))[0])
            for nodeid in sorted(set(before) | set(tests))
            if before.get(nodeid, "absent") != tests.get(nodeid, ("absent",))[0]
        ]
        print(f"\n{len(changed)} tests changed outcome against {compare}:")
        for nodeid, was, now in changed:
            print(f"  {was:>7} -> {now:<7} {nodeid}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other arguments are passed to pytest.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--nt-env",
        type=Path,
        default=Path(os.environ.get("NT_ENV", DEFAULT_NT_ENV)),
        help=f"NT reference env (default: $NT_ENV or {DEFAULT_NT_ENV})",
    )
    parser.add_argument(
        "--out", type=Path, help="write 'outcome<TAB>node id<TAB>error' per test here"
    )
    parser.add_argument("--compare", type=Path, help="an earlier --out file to diff against")
    parser.add_argument(
        "--keep", type=Path, help="build the tree in this (new) directory and keep it"
    )
    args, pytest_args = parser.parse_known_args(argv)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    if args.compare is not None and not args.compare.is_file():
        parser.error(f"--compare {args.compare}: no such file")

    nt_tests, nt_utils = nt_paths(args.nt_env)
    if args.keep is not None:
        if args.keep.exists():
            parser.error(f"--keep {args.keep}: exists; give a new directory")
        args.keep.mkdir(parents=True)
        work, cleanup = args.keep, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="nt_suite.")
        work = Path(cleanup.name)
    try:
        renamed = copy_tests(nt_tests, work / "tests")
        need_extra = write_shim(work, nt_utils)
        print(
            f"NT tests from {nt_tests} -> {work / 'tests'} (renames: "
            + ", ".join(f"{n} x {r!r}" for r, n in renamed.items())
            + ")"
        )
        outcomes = work / "outcomes.json"
        path = [str(ROOT), str(work)] + ([str(work / "_extra")] if need_extra else [])
        if os.environ.get("PYTHONPATH"):
            path.append(os.environ["PYTHONPATH"])
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(path),
            NT_SUITE_OUTCOMES=str(outcomes),
        )
        env.setdefault("JAX_PLATFORMS", "cpu")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Paths among the pytest arguments (relative to the copied tree) replace
        # the default of the whole suite.
        targets = [] if any(a.startswith("tests") for a in pytest_args) else ["tests"]
        cmd = [sys.executable, "-m", "pytest", *targets, *pytest_args]
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=work, env=env)
        if not outcomes.is_file():
            print("error: pytest wrote no outcomes (did collection fail?)", file=sys.stderr)
            return 2
        report(json.loads(outcomes.read_text()), args.out, args.compare)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
