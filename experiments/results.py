"""Writing results: atomic files, provenance, and the paper-vs-ours table.

Everything an experiment leaves in ``results/NAME/`` goes through `atomic_write`:
the bytes are written to a temporary file in the same directory, flushed to
disk, and then moved over the destination with `os.replace`, which is atomic
on POSIX and Windows. A crash or an exception mid-write therefore leaves either
the previous file or the new one — never a truncated file that looks whole —
and the temporary file is removed.

    >>> atomic_write_json("results/demo/metrics.json", {"error": 0.01})
    >>> save_figure(fig, "results/demo/demo.png")
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

#: Packages whose versions every metrics file records.
TRACKED_PACKAGES = ("ntk", "jax", "jaxlib", "flax", "optax", "chex", "numpy",
                    "scipy", "matplotlib")


# ------------------------------------------------------------------ atomic IO


def atomic_write(path: os.PathLike | str, write: Callable[[Any], None], *,
                 binary: bool = False) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, then rename it.

    If ``write`` raises, the temp file is deleted, ``path`` is untouched and
    the exception propagates. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=".tmp")
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _json_default(obj):
    """Serialise numpy/jax scalars and arrays, dataclasses and paths."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / jax arrays and numpy scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"atomic_write_json: cannot serialise a "
                    f"{type(obj).__name__} ({obj!r:.80}).")


def atomic_write_json(path: os.PathLike | str, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically (see `atomic_write`).

    The payload is streamed into the temp file, so an object that fails to
    serialise half-way leaves no partial file behind.
    """
    def write(f):
        json.dump(payload, f, indent=2, default=_json_default)
        f.write("\n")
    return atomic_write(path, write)


def save_figure(fig, path: os.PathLike | str, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi,
                                                        bbox_inches="tight"),
                            binary=True)
    finally:
        plt.close(fig)


def use_agg_backend() -> None:
    """Select matplotlib's non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")


# ------------------------------------------------------------------ provenance


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict:
    """``{name: version or None}``; ntk falls back to ``ntk.__version__``."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if out.get("ntk") is None:
        with contextlib.suppress(ImportError):
            import ntk
            out["ntk"] = ntk.__version__
    return out


def device_info() -> dict:
    """Platform, device kind and count of the default JAX backend."""
    import jax
    devices = jax.devices()
    return {"platform": devices[0].platform,
            "device_kind": devices[0].device_kind,
            "device_count": len(devices),
            "process_count": jax.process_count(),
            "x64": bool(jax.config.jax_enable_x64),
            "host": platform.platform(),
            "cpu_count": os.cpu_count()}


def git_commit(repo: os.PathLike | str | None = None) -> Optional[str]:
    """The checked-out commit (with ``+dirty`` if modified), or None."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, text=True, capture_output=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance() -> dict:
    """What a result needs to be reproduced: versions, device, commit, time."""
    return {"versions": package_versions(),
            "device": device_info(),
            "git_commit": git_commit(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "finished_at": datetime.datetime.now(datetime.timezone.utc)
                                            .isoformat(timespec="seconds")}


# ------------------------------------------------------------------ tables


def loglog_slope(x, values) -> float:
    """Least-squares slope of ``log(values)`` against ``log(x)``: the exponent
    p of a power law ``values ∝ x^p`` (e.g. an error against width, theory −½)."""
    import numpy as np
    return float(np.polyfit(np.log(np.asarray(x, float)),
                            np.log(np.asarray(values, float)), 1)[0])


def comparison(quantity: str, paper: Any, ours: Any, note: str = "") -> dict:
    """One row of a paper-vs-ours table (numbers or short strings)."""
    return {"quantity": quantity, "paper": paper, "ours": ours, "note": note}


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and not 1e-3 <= abs(value) < 1e5:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """A plain-text table with one line per row and aligned columns."""
    cells = [[str(c) for c in columns]]
    cells += [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_comparison(rows: Sequence[Mapping]) -> str:
    """The paper-vs-ours table printed after each experiment."""
    return format_table(rows, ("quantity", "paper", "ours", "note"))


def write_benchmark(name: str, out_root: os.PathLike | str, payload: Mapping) -> Path:
    """Write ``OUT/benchmarks/NAME.json`` atomically, with the provenance and
    the load average at the start (timings are only comparable on a quiet
    machine)."""
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return atomic_write_json(Path(out_root) / "benchmarks" / f"{name}.json",
                             {"benchmark": name, **payload,
                              "load_average_at_start": load, **provenance()})
