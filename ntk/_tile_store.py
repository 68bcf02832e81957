"""Checkpointed tiles of `ntk.parallel.batch` (``checkpoint_dir=``).

Each finished tile is one ``tile_I_J.npz`` holding its arrays and their
SHA-256, written atomically; ``manifest.json`` identifies the job (inputs'
shapes, dtype and SHA-256, ``get``, tile geometry, the kernel's name), and
tiles are reused only under an equal manifest. The layout and the guarantees
are described in `ntk.parallel`'s module docstring.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np


def digest(*arrays) -> str:
    """SHA-256 of the arrays' shapes, dtypes and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _describe(x) -> list:
    """``[shape, dtype, SHA-256]`` of an input array; for several inputs, the
    shapes and dtypes of each, then one SHA-256 of all."""
    if hasattr(x, "shape"):
        return [list(x.shape), x.dtype.str, digest(x)]
    leaves = jax.tree_util.tree_leaves(x)
    return [[list(a.shape) for a in leaves], [a.dtype.str for a in leaves], digest(*leaves)]


def manifest(kernel_fn, x1, x2, names, rows, cols, symmetric, args, kwargs, note=None) -> dict:
    """What identifies a tiled job; tiles are reused only under an equal one.
    ``note``: what else identifies the inputs (a Kernel's static fields)."""
    extra = [np.asarray(v) for v in jax.tree_util.tree_leaves((args, kwargs))]
    job = {
        "kernel": str(
            getattr(kernel_fn, "name", getattr(kernel_fn, "__name__", type(kernel_fn).__name__))
        ),
        "x1": _describe(x1),
        "x2": None if x2 is None else _describe(x2),
        "extra_args": digest(*extra) if extra else None,
        "get": list(names),
        "rows": rows,
        "cols": cols,
        "symmetric": symmetric,
    }
    if note is not None:  # absent otherwise: earlier jobs' manifests stay equal
        job["inputs_note"] = note
    return job


class TileStore:
    """Finished tiles of one job in a directory (see the module docstring)."""

    def __init__(self, directory, job: dict):
        self.dir = Path(directory)
        self.writer = jax.process_index() == 0
        # Tiles are trusted only under a readable manifest equal to this one.
        self.trusted = True
        path = self.dir / "manifest.json"
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError):
                stored, self.trusted = None, False
            if stored is not None and stored != job:
                differ = sorted(k for k in job if stored.get(k) != job[k])
                raise ValueError(
                    f"parallel.batch: `checkpoint_dir` {str(self.dir)!r} holds tiles "
                    f"of another job (its manifest differs in {differ}); use a new "
                    f"directory, or the same inputs, get, batch_size, device_count "
                    f"and kernel as the run that wrote it."
                )
        if self.writer:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(job, indent=1).encode())

    def path(self, tile) -> Path:
        return self.dir / f"tile_{tile[0]:05d}_{tile[1]:05d}.npz"

    def load(self, tile, shapes, dtypes, names):
        """The tile's arrays, or None if absent or not trustworthy."""
        if not self.trusted:
            return None
        try:
            with np.load(self.path(tile), allow_pickle=False) as f:
                arrays = [f[name] for name in names]
                checksum = str(f["checksum"])
        except Exception:  # noqa: BLE001 - absent, truncated or foreign: recompute
            return None
        if any(a.shape != tuple(s) or a.dtype != d for a, s, d in zip(arrays, shapes, dtypes)):
            return None
        return arrays if digest(*arrays) == checksum else None

    def save(self, tile, arrays, names, first: bool = False):
        """Write a finished tile; the first tile of a run is checked against
        its stored copy (same job, same kernel) before it is overwritten."""
        if first:
            stored = self.load(tile, [a.shape for a in arrays], [a.dtype for a in arrays], names)
            if stored is not None and not all(
                np.allclose(s, a, rtol=1e-5, atol=0, equal_nan=True) for s, a in zip(stored, arrays)
            ):
                raise ValueError(
                    f"parallel.batch: the first tile differs from its copy in "
                    f"`checkpoint_dir` {str(self.dir)!r}: the kernel changed since "
                    f"those tiles were written (same name, other hyperparameters?). "
                    f"Use a new directory."
                )
        if not self.writer:
            return
        payload = {name: a for name, a in zip(names, arrays)}
        payload["checksum"] = np.asarray(digest(*arrays))
        buffer = io.BytesIO()
        np.savez(buffer, **payload)
        atomic_write(self.path(tile), buffer.getvalue())


def atomic_write(path: Path, data: bytes):
    """Write ``data`` to a temporary file beside ``path``, flush it to disk and
    rename it over ``path``: a reader sees the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
