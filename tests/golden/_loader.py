"""Where a golden family's files lie, and how its architectures module is imported.

A family ``NAME`` is ``architectures_NAME.py`` with its fixture
``nt_golden_NAME.npz``; the core family is ``architectures.py`` with
``nt_golden.npz``. Shared by ``scripts/nt_golden.py`` (run by the NT reference
environment's python, where ``ntk`` need not import) and
``tests/test_stax_golden.py``, so it imports the standard library only.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent


def family_of(path: Path) -> str:
    """``architectures.py`` -> "core", ``architectures_graph.py`` -> "graph"."""
    return Path(path).stem.partition("_")[2] or "core"


def family_paths(family: str | None) -> tuple[Path, Path]:
    """``(architectures module, fixture)`` of a family (None or "core": the core one)."""
    suffix = "" if family in (None, "core") else f"_{family}"
    return GOLDEN_DIR / f"architectures{suffix}.py", GOLDEN_DIR / f"nt_golden{suffix}.npz"


def load_module(path: Path):
    """Import an architectures module by path (tests/ is no package).

    Its directory is on ``sys.path`` only while it runs, for the families'
    ``from _family import accessors``.
    """
    spec = importlib.util.spec_from_file_location(f"golden_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(Path(path).parent))
    return module
