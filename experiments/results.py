"""Writing results: staged run directories, atomic files, provenance, tables.

A run of experiment NAME writes into its own staging directory
``OUT/.NAME.staging-<run_id>/`` (`StagedRun`); when the run is complete the
directory is published as ``OUT/NAME/`` by renames, so ``OUT/NAME/`` always
holds one whole run — the previous one until the new one has finished. A run
that fails, is interrupted (Ctrl-C) or terminated (SIGTERM) removes its
staging directory and leaves ``OUT/NAME/`` as it was; one killed outright
(SIGKILL, power loss) leaves its staging directory behind, and the next run
into ``OUT`` removes it.

Each file inside is written by `atomic_write`: the bytes go to a temporary
file in the same directory, are flushed to disk and moved over the destination
with `os.replace` (atomic on POSIX and Windows), so a file is either the old or
the new one, never a truncated one. Files get mode ``0666 & ~umask`` and
directories ``0777 & ~umask``, like files made by ``open``/``mkdir``.

Every file records the run that wrote it: ``metrics.json`` has ``run_id``
(and the size and SHA-256 of every other file of the run), PNGs carry
``run_id`` as a PNG text chunk, JSON written with `atomic_write_json` during a
run gets a top-level ``run_id``.

    >>> import pathlib, tempfile
    >>> import matplotlib.pyplot as plt
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> fig, ax = plt.subplots()
    >>> with StagedRun(out / "demo") as run:
    ...     png = save_figure(fig, run.path / "demo.png")
    ...     metrics = atomic_write_json(run.path / "metrics.json", {"error": 0.01})
    ...     final = run.publish()
    >>> final == out / "demo", sorted(p.name for p in final.iterdir())
    (True, ['demo.png', 'metrics.json'])
    >>> "run_id" in json.loads((final / "metrics.json").read_text())
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import errno
import hashlib
import importlib.metadata
import json
import math
import numbers
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

try:  # advisory locks tell live runs from dead ones; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: Packages whose versions every metrics file records.
TRACKED_PACKAGES = ("ntk", "jax", "jaxlib", "flax", "optax", "chex", "numpy", "scipy", "matplotlib")


# ------------------------------------------------------------------ run ids


_RUN_ID: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "experiments_run_id", default=None
)


def new_run_id() -> str:
    """``YYYYmmddTHHMMSSZ-<8 hex digits>``: sortable by start time, unique."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def current_run_id() -> Optional[str]:
    """The id of the `StagedRun` being written in this context, or None."""
    return _RUN_ID.get()


# ------------------------------------------------------------------ file modes


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    # Elsewhere it can only be read by setting it: set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_like_open(fd: int, path) -> None:
    """Give a file made by mkstemp (mode 0600) the mode ``open`` would: 0666 & ~umask."""
    mode = 0o666 & ~_umask()
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # pragma: no cover - Windows: no fchmod, and only the read-only bit
        os.chmod(path, mode)


# ------------------------------------------------------------------ atomic IO


def atomic_write(
    path: os.PathLike | str, write: Callable[[Any], None], *, binary: bool = False
) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, then rename it.

    If ``write`` raises, the temp file is deleted, ``path`` is untouched and
    the exception propagates. Parent directories are created. The file gets
    mode ``0666 & ~umask``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8"})) as f:
            _chmod_like_open(f.fileno(), tmp)
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
    raise TypeError(f"atomic_write_json: cannot serialise a {type(obj).__name__} ({obj!r:.80}).")


def atomic_write_json(
    path: os.PathLike | str, payload: Any, *, run_id: Optional[str] = None
) -> Path:
    """Write ``payload`` as indented JSON, atomically (see `atomic_write`).

    The payload is streamed into the temp file, so an object that fails to
    serialise half-way leaves no partial file behind. A mapping gets a
    top-level ``run_id`` (``run_id`` or the current run's, if any) unless it
    has one already.
    """
    run_id = run_id or current_run_id()
    if run_id and isinstance(payload, Mapping) and "run_id" not in payload:
        payload = {"run_id": run_id, **payload}

    def write(f):
        json.dump(payload, f, indent=2, default=_json_default)
        f.write("\n")

    return atomic_write(path, write)


def save_figure(
    fig, path: os.PathLike | str, *, dpi: int = 120, run_id: Optional[str] = None
) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it.

    ``run_id`` (default: the current run's) is stored as the PNG text chunk
    ``run_id`` (readable with e.g. ``PIL.Image.open(path).text``).
    """
    import matplotlib.pyplot as plt

    run_id = run_id or current_run_id()
    metadata = {"run_id": run_id} if run_id else None
    try:
        return atomic_write(
            path,
            lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight", metadata=metadata),
            binary=True,
        )
    finally:
        plt.close(fig)


#: How a figure draws the paper's numbers beside ours: grey and thin.
PAPER_COLOR = "0.45"


def draw_paper(ax, source: str, points: Optional[Mapping] = None, lines: Sequence = ()) -> None:
    """Draw the paper's numbers on ``ax`` in `PAPER_COLOR`: ``points``
    ``{x: y}`` as crosses, labelled "``source`` (read from its plot)", and
    ``lines`` of ``(label, y, linestyle)`` as thin horizontal lines labelled
    "``source``: label (y)"."""
    if points:
        xs = sorted(points)
        ax.plot(
            xs,
            [points[x] for x in xs],
            "x",
            color=PAPER_COLOR,
            label=f"{source} (read from its plot)",
        )
    for label, y, ls in lines:
        ax.axhline(y, color=PAPER_COLOR, ls=ls, lw=0.8, label=f"{source}: {label} ({y})")


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
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "host": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def git_commit(repo: os.PathLike | str | None = None) -> Optional[str]:
    """The checked-out commit (with ``+dirty`` if modified), or None."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            text=True,
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance(commit: Optional[str]) -> dict:
    """What a result needs to be reproduced: versions, device, commit, time.

    ``commit`` is `git_commit` read by the caller when the work started: a
    commit made during an hour-long run is not the run's source."""
    return {
        "versions": package_versions(),
        "device": device_info(),
        "git_commit": commit,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------ tables

#: The marks of a paper-vs-ours row, and the rule that gives each.
MARKS = {
    "agree": "our value passes the row's stated check: |ours − ref| ≤ tol "
    "(absolute), |ours/ref − 1| ≤ tol (relative), where ref is the paper's "
    "published number or the theory's prediction as the row's rule says, or "
    "the claim, evaluated on our numbers, holds",
    "differs": "the check fails (or our value is not a finite number)",
    "not comparable": "no check is possible: the paper's number is for other data or "
    "settings, or is not available; the row says why",
}

#: The columns of a paper-vs-ours table, in print order: the paper's published
#: number (or its stated claim), the theory's prediction, ours (computed by the run).
COLUMNS = ("mark", "quantity", "paper", "theory", "ours", "rule", "note")

#: How a row without a theory prediction shows it.
NO_THEORY = "—"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def comparison(
    quantity: str,
    paper: Any,
    ours: Any,
    note: str = "",
    *,
    theory: Any = None,
    against: str = "paper",
    within: Optional[float] = None,
    rel: Optional[float] = None,
    holds: Optional[bool] = None,
    rule: str = "",
    not_comparable: Optional[str] = None,
) -> dict:
    """One row of a paper-vs-ours table, with its mark computed by exactly one check.

    Three values are kept apart: ``paper`` (the paper's published number, or
    its stated claim where it prints none), ``theory`` (the theory's
    prediction, e.g. a slope −0.5 or the eigenframework's risk; None if the
    row has none) and ``ours`` (computed by the run). The check is one of

    * ``within=tol``: agree iff ``|ours − ref| ≤ tol`` (both numbers);
    * ``rel=tol``: agree iff ``|ours − ref| ≤ tol·|ref|`` (both numbers);
    * ``holds=flag, rule="…"``: a claim (the paper's or the theory's) that the
      experiment evaluated on its numbers (``flag``); ``rule`` says how;
    * ``not_comparable="why"``: no check is possible (other data, no number),

    where ``ref`` is ``paper`` (``against="paper"``, the default) or
    ``theory`` (``against="theory"``). A non-finite ``ours`` differs. The row
    is ``{quantity, paper, theory, ours, note, mark, rule}``: ``rule`` is the
    condition for agree, naming its reference (or why no check is possible);
    see `MARKS`.

        >>> comparison("slope", "not in the paper's tables", -0.46, theory=-0.5,
        ...            against="theory", within=0.1)["rule"]
        '|ours − theory| ≤ 0.1'
    """
    given = [
        k
        for k, v in (
            ("within", within),
            ("rel", rel),
            ("holds", holds),
            ("not_comparable", not_comparable),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise TypeError(
            f"comparison({quantity!r}): give exactly one of within=, rel=, "
            f"holds= or not_comparable=; got {given or 'none'}."
        )
    if against not in ("paper", "theory"):
        raise ValueError(
            f"comparison({quantity!r}): against= must be 'paper' or 'theory'; got {against!r}."
        )
    if within is not None or rel is not None:
        tol = within if within is not None else rel
        ref = paper if against == "paper" else theory
        if not (_is_number(ref) and _is_number(ours)):
            raise TypeError(
                f"comparison({quantity!r}): within=/rel= compare numbers; got "
                f"{against}={ref!r}, ours={ours!r}."
            )
        if within is not None:
            rule = f"|ours − {against}| ≤ {tol:g}"
            ok = abs(ours - ref) <= tol
        else:
            rule = f"|ours/{against} − 1| ≤ {tol:g}"
            ok = abs(ours - ref) <= tol * abs(ref)
        mark = "agree" if math.isfinite(ours) and ok else "differs"
    elif holds is not None:
        if not isinstance(holds, (bool, np.bool_)):
            raise TypeError(
                f"comparison({quantity!r}): holds= must be a bool; got {type(holds).__name__}."
            )
        if not rule:
            raise TypeError(
                f"comparison({quantity!r}): holds= needs rule= saying how the claim was checked."
            )
        mark = "agree" if holds else "differs"
    else:
        rule = not_comparable
        mark = "not comparable"
    return {
        "quantity": quantity,
        "paper": paper,
        "theory": theory,
        "ours": ours,
        "note": note,
        "mark": mark,
        "rule": rule,
    }


def within_se(ours: float, ref, se: float, against: str = "theory", k: float = 3) -> dict:
    """`comparison`'s check for a measured value held to ``k`` of its standard
    errors (``se``, measured in the run) around ``ref``, a number or a range
    ``(lo, hi)``: ``holds``/``rule``, or ``not_comparable`` when there is no
    standard error (one draw per point).

        >>> within_se(-0.46, -0.5, 0.02)["rule"]
        '|ours − theory| ≤ 3 s.e. = 0.060'
        >>> within_se(-0.45, (-1.0, -0.5), 0.02)["rule"]
        '−1 − 3 s.e. ≤ ours ≤ −0.5 + 3 s.e. (3 s.e. = 0.060)'
        >>> within_se(-0.46, -0.5, float("nan"))
        {'not_comparable': 'one draw per point: no standard error'}
    """
    if not math.isfinite(se):
        return dict(not_comparable="one draw per point: no standard error")
    if isinstance(ref, tuple):
        lo, hi = ref
        return dict(
            holds=bool(lo - k * se <= ours <= hi + k * se),
            rule=f"{lo:g} − {k:g} s.e. ≤ ours ≤ {hi:g} + {k:g} s.e. ({k:g} s.e. = {k * se:.3f})".replace(
                "-", "−"
            ),
        )
    return dict(
        holds=bool(abs(ours - ref) <= k * se),
        rule=f"|ours − {against}| ≤ {k:g} s.e. = {k * se:.3f}",
    )


def check_row(row: Mapping, where: str = "") -> dict:
    """``row`` if it is a `comparison` row (with a mark and its rule); else ValueError."""
    missing = {"quantity", "paper", "theory", "ours", "mark", "rule"} - set(row)
    if missing or row["mark"] not in MARKS:
        raise ValueError(
            f"{where}: a paper-vs-ours row must come from "
            f"results.comparison (missing {sorted(missing)} or unknown mark "
            f"{row.get('mark')!r}); got {dict(row)!r:.200}."
        )
    return dict(row)


def format_value(value) -> str:
    """A table cell: floats to 4 significant digits (scientific outside 1e-3…1e5)."""
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
    cells += [[format_value(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_cells(row: Mapping) -> dict:
    """A row's cells for printing: a missing theory prediction (or a row
    written before rows had one), or an "ours" the run did not compute (the
    row's note says why), shows as `NO_THEORY`."""
    row = dict(row)
    for column in ("theory", "ours"):
        if row.get(column) is None:
            row[column] = NO_THEORY
    return row


def format_comparison(rows: Sequence[Mapping]) -> str:
    """The paper-vs-ours table printed after each experiment: paper, theory and
    ours in separate columns, then the rule of the row's mark and its note."""
    return format_table([table_cells(r) for r in rows], COLUMNS)


def benchmark_start() -> dict:
    """What a benchmark records of its start, read before it times anything:
    the commit it runs and the load average (timings are only comparable on a
    quiet machine). Pass it to `write_benchmark` at the end."""
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"git_commit": git_commit(), "load_average_at_start": load}


def write_benchmark(
    name: str, out_root: os.PathLike | str, payload: Mapping, start: Mapping
) -> Path:
    """Write ``OUT/benchmarks/NAME.json`` atomically, with the provenance and
    ``start``, the `benchmark_start` the benchmark read before its timings."""
    return atomic_write_json(
        Path(out_root) / "benchmarks" / f"{name}.json",
        {
            "benchmark": name,
            **payload,
            "load_average_at_start": start["load_average_at_start"],
            **provenance(start["git_commit"]),
        },
        run_id=current_run_id() or new_run_id(),
    )


# ------------------------------------------------------------------ staged runs


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM while a `StagedRun` is open.

    A SystemExit with status 128 + signal number (the shell's convention), so
    ``finally`` blocks run and staging directories are removed, and an
    uncaught one ends the interpreter without a traceback.
    """

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class _Signals:
    """SIGTERM → `Terminated` and SIGINT → KeyboardInterrupt, deferrable.

    Installed only from the main thread (the only one Python runs handlers
    in) and only over handlers left at their defaults, so an application's
    own handlers are kept. Inside `deferred` a signal is held back and raised
    on leaving it, so the renames publishing a run are never split by one.
    """

    def __init__(self):
        self.depth = 0
        self.saved: dict = {}
        self.defer = 0
        self.pending: Optional[int] = None

    @staticmethod
    def _raise(signum: int):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    def handler(self, signum, frame):
        if self.defer:
            self.pending = self.pending or signum
            return
        self._raise(signum)

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        if self.depth == 0:
            for signum, default in (
                (signal.SIGTERM, signal.SIG_DFL),
                (signal.SIGINT, signal.default_int_handler),
            ):
                if signal.getsignal(signum) is default:
                    self.saved[signum] = signal.signal(signum, self.handler)
        self.depth += 1
        return True

    def uninstall(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            for signum, previous in self.saved.items():
                signal.signal(signum, previous)
            self.saved.clear()

    @contextlib.contextmanager
    def deferred(self):
        self.defer += 1
        try:
            yield
        finally:
            self.defer -= 1
            if not self.defer and self.pending is not None:
                signum, self.pending = self.pending, None
                self._raise(signum)


_SIGNALS = _Signals()

# ``.NAME.staging-RUNID`` (a run being written) and ``.NAME.old-RUNID`` (the
# previous run, renamed aside while RUNID publishes).
_STAGED = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>staging|old)-"
    r"(?P<run_id>\d{8}T\d{6}Z-[0-9a-f]{8})$"
)


def _open_dir(path) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _try_lock(fd: int, blocking: bool) -> Optional[bool]:
    """flock ``fd``: True if acquired, False if another process holds it,
    None if this system or filesystem has no such locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None


@contextlib.contextmanager
def _locked_dir(path):
    """Hold a lock on the directory ``path``; yields whether locks work here."""
    fd = _open_dir(path)
    try:
        yield _try_lock(fd, blocking=True) is not None
    finally:
        os.close(fd)


def _fsync_dir(path) -> None:
    with contextlib.suppress(OSError):
        fd = _open_dir(path)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_stale(out_root: Path) -> list[str]:
    """Remove what dead runs left in ``out_root``; the caller holds its lock.

    A staging directory is dead when nobody holds its lock. An ``.old``
    directory exists outside the lock only if its run died between the two
    renames of `StagedRun.publish`: it is the previous complete run, and goes
    back to ``NAME`` if that is missing. Returns the names removed/restored.
    """
    done = []
    for entry in os.scandir(out_root):
        m = _STAGED.match(entry.name)
        if not m:
            continue
        path = Path(entry.path)
        if m["kind"] == "old":
            final = out_root / m["name"]
            if os.path.lexists(final):
                _remove(path)
            else:
                os.rename(path, final)
            done.append(entry.name)
            continue
        try:
            fd = _open_dir(path)
        except OSError:
            continue
        try:
            if _try_lock(fd, blocking=False) is True:
                _remove(path)
                done.append(entry.name)
        finally:
            os.close(fd)
    return done


def file_manifest(directory: os.PathLike | str, exclude: Iterable[str] = ()) -> dict:
    """``{relative path: {"bytes": size, "sha256": hex digest}}`` of the files
    under ``directory`` (sorted), except the relative paths in ``exclude``."""
    directory, skip = Path(directory), set(exclude)
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel in skip:
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        out[rel] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


class StagedRun:
    """Write the directory ``final`` (``OUT/NAME``) as a whole: stage, then publish.

    ``with StagedRun(OUT / NAME) as run:`` removes what dead runs left in
    OUT, creates ``OUT/.NAME.staging-<run_id>/`` (``run.path``), makes
    ``run.run_id`` the current run id (`current_run_id`, recorded by
    `save_figure` and `atomic_write_json`) and turns SIGTERM into `Terminated`
    (SIGINT raises KeyboardInterrupt as usual). Leaving the block without
    `publish` — an exception, Ctrl-C, SIGTERM — deletes the staging directory
    and leaves ``OUT/NAME`` as it was.

    `publish` swaps the run in: ``OUT/NAME`` is renamed to
    ``OUT/.NAME.old-<run_id>``, the staging directory to ``OUT/NAME``, and the
    old one deleted, with signals held back until the swap is done. POSIX has
    no atomic exchange of two directories, so a SIGKILL between the two
    renames leaves ``OUT/NAME`` missing for a moment and the previous run in
    the ``.old`` directory; the next run into OUT renames it back.

    Live runs are told from dead ones by a lock (flock) each holds on its
    staging directory; a lock on OUT itself serialises cleanup, creation and
    publishing. Where locks are unavailable nothing is cleaned up.
    """

    def __init__(self, final: os.PathLike | str, run_id: Optional[str] = None):
        self.final = Path(final)
        self.run_id = run_id or new_run_id()
        self.path = self.final.parent / f".{self.final.name}.staging-{self.run_id}"
        self.published = False
        self._fd: Optional[int] = None
        self._token = None
        self._signals = False

    def __enter__(self) -> "StagedRun":
        parent = self.final.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._signals = _SIGNALS.install()
        try:
            with _locked_dir(parent) as locks_work:
                if locks_work:
                    _remove_stale(parent)
                os.mkdir(self.path)  # 0777 & ~umask
                self._fd = _open_dir(self.path)
                _try_lock(self._fd, blocking=False)
        except BaseException:
            self._discard()
            raise
        self._token = _RUN_ID.set(self.run_id)
        return self

    def publish(self) -> Path:
        """Replace ``final`` by the staged run; returns ``final``."""
        if self.published:
            raise RuntimeError(f"run {self.run_id} is already published to {self.final}.")
        parent = self.final.parent
        aside = parent / f".{self.final.name}.old-{self.run_id}"
        with _SIGNALS.deferred(), _locked_dir(parent):
            had_previous = os.path.lexists(self.final)
            if had_previous:
                os.rename(self.final, aside)
            try:
                os.rename(self.path, self.final)
            except BaseException:
                if had_previous:
                    os.rename(aside, self.final)
                raise
            self.published = True
            _fsync_dir(parent)
            if had_previous:
                _remove(aside)
        return self.final

    def _discard(self) -> None:
        try:
            with _SIGNALS.deferred():
                if not self.published:
                    _remove(self.path)
        finally:
            if self._fd is not None:
                os.close(self._fd)  # releases the lock
                self._fd = None
            if self._signals:
                _SIGNALS.uninstall()
                self._signals = False

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._token is not None:
            _RUN_ID.reset(self._token)
            self._token = None
        self._discard()
        return False
