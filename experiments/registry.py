"""The experiment protocol and the runner behind ``python -m experiments``.

An experiment is a config dataclass (its defaults are the ``quick`` size), its
other sizes declared once as field changes, and named parts that run in order::

    @dataclasses.dataclass(frozen=True)
    class Config:
        width: int = 256            # defaults: the quick size
        seed: int = 0

    EXPERIMENT = register(
        "author20", Config, sizes=Sizes(full=dict(width=4096), tiny=dict(width=16)),
        paper="Author et al. 2020", description="…", seconds={"tiny": 20, "quick": 60})

    @EXPERIMENT.part("fig1", "Fig. 1: the kernel against width",
                     metrics={"slope": "log-log slope of the error vs width"})
    def fig1(run: Run) -> Result:
        key = jax.random.PRNGKey(run.config.seed)
        for width in run.progress(run.config.widths, "width"):   # advances the stage bar
            ...
        run.save_figure(fig, "fig1.png")                        # recorded in the run
        return Result(metrics={"slope": s},
                      rows=[results.comparison("slope", -0.5, s, within=0.1)],
                      data="synthetic points on the circle")

Each part returns its metrics (exactly the names it declares: nested specs
declare nested dicts, a name ending ``[*]`` a family ``name[label]``; the
registry checks on write), rows of the paper-vs-ours table (whose agree /
differs / not comparable mark `results.comparison` computes) and a note on
the data it used; it may leave values for later parts in ``run.state``, and a
part that reads them names those parts in ``needs`` (``run NAME --parts P``
runs P with what it needs, see `Experiment.select`). The
runner shows one progress bar per part that stays on screen, with the part's
time, when the part ends, and records each part's time in ``metrics.json``.

Modules are discovered by scanning the package, so adding a paper touches no
shared file. `run_experiment` runs an experiment into a staging directory
(``run.out_dir`` is ``OUT/.NAME.staging-<run_id>/``, not ``OUT/NAME/``),
writes ``metrics.json`` there (run id, config, seed, versions, device, wall
time, part times, data used, the paper-vs-ours table, the metrics and a
manifest of the other files) and then publishes the directory as
``OUT/NAME/`` (see `results.StagedRun`): ``OUT/NAME/`` holds the previous
complete run until the new one is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import pkgutil
import sys
import threading
import time
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from experiments import results

SIZES = ("tiny", "quick", "full")

#: Where the ``seconds`` of each registration were measured.
MEASURED_ON = (
    "the idle 2-core development machine (CPU, load average below 2); a "
    "machine shared with other jobs is 2-4x slower"
)

#: Seconds between redraws of a part's bar while nothing advances it (on a
#: terminal; 15× that into a file or a pipe, to keep logs short).
_HEARTBEAT_S = 1.0

# Modules of this package that are infrastructure, not experiments.
_NOT_EXPERIMENTS = {"registry", "results", "report", "benchmarks", "plan"}


# ------------------------------------------------------------------ sizes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """An experiment's sizes: ``quick`` is its config's defaults; ``full`` (the
    paper's setting, for a GPU/TPU) and ``tiny`` (for tests; numbers not
    meaningful) are changes to them, ``{field: value}``.

    ``smoke`` changes only the loop counts (training steps, meta-steps,
    epochs, samples, trials, initialisations → 1; a sweep over sizes → its two
    ends; a kernel computed tile by tile → a few tiles of the full tile shape)
    and is applied on top of ``full`` by ``run NAME --full --smoke``: every
    shape, width and data size a step sees stays full, so a run checks end to
    end on a CPU that the full setting has no shape, dtype or memory-layout
    error before hours on a GPU/TPU.
    """

    full: Mapping[str, Any]
    tiny: Mapping[str, Any]
    smoke: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def changes(self, size: str, smoke: bool = False, where: str = "Sizes") -> Mapping[str, Any]:
        if size not in SIZES:
            raise ValueError(f"{where}: size must be one of {SIZES}; got {size!r}.")
        if smoke and size != "full":
            raise ValueError(f"{where}: smoke applies to the full size only; got size {size!r}.")
        changes = {} if size == "quick" else dict(getattr(self, size))
        return {**changes, **self.smoke} if smoke else changes


# ------------------------------------------------------------------ metric specs


def _spec_key(spec: Mapping, key: str) -> Optional[str]:
    """The entry of ``spec`` that declares ``key`` (itself, or ``name[*]``)."""
    if key in spec:
        return key
    base, bracket, _ = key.partition("[")
    if bracket and key.endswith("]") and f"{base}[*]" in spec:
        return f"{base}[*]"
    return None


def check_metrics(spec: Mapping, metrics: Mapping, where: str) -> None:
    """Raise ValueError unless ``metrics`` has exactly the names ``spec`` declares.

    A spec maps a name to its description (any value) or to a nested spec
    (the value must then be a dict with exactly those names); ``name[*]``
    declares the family ``name[label]`` for any labels (at least one).
    """
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{where}: metrics must be a dict; got {type(metrics).__name__}.")
    used = set()
    for key, value in metrics.items():
        declared = _spec_key(spec, key)
        if declared is None:
            raise ValueError(f"{where}: metric {key!r} is not declared; declared: {sorted(spec)}.")
        used.add(declared)
        if isinstance(spec[declared], Mapping):
            check_metrics(spec[declared], value, f"{where}.{key}")
    missing = sorted(set(spec) - used)
    if missing:
        raise ValueError(f"{where}: declared metric(s) {missing} were not written.")


def _merge(into: dict, new: Mapping, where: str) -> None:
    """Merge ``new`` into ``into``; dicts merge by key, any other value only once."""
    for key, value in new.items():
        if key in into and not (isinstance(into[key], dict) and isinstance(value, Mapping)):
            raise ValueError(f"{where}: metric {key!r} is written by two parts.")
        if isinstance(value, Mapping):  # a fresh dict: later parts merge into it
            _merge(into.setdefault(key, {}), value, f"{where}.{key}")
        else:
            into[key] = value


# ------------------------------------------------------------------ parts


@dataclasses.dataclass(frozen=True)
class Result:
    """What a part returns: its metrics, rows of the paper-vs-ours table
    (`results.comparison`) and a note on the data it used (say whether it is
    the paper's data or an offline stand-in; empty for synthetic-only parts
    that have nothing to say beyond the experiment's description)."""

    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rows: Sequence[Mapping] = ()
    data: str = ""


@dataclasses.dataclass(frozen=True)
class Part:
    """A named step of an experiment: ``fn(run) -> Result``; ``needs`` names the
    earlier parts whose ``run.state`` it reads."""

    name: str
    title: str
    fn: Callable[["Run"], Result]
    metrics: Mapping[str, Any]
    needs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """A part's plan, ``fn(config) -> list[plan.Step]``, and what it leaves out."""

    fn: Callable[[Any], Sequence[Any]]
    not_covered: str = ""


class _StageBar:
    """The progress bar of one part.

    It grows with `Run.progress` loops, its elapsed time keeps ticking during
    long calls (a background redraw every `_HEARTBEAT_S`), and it stays on
    screen with the part's time when the part ends. It is drawn from the first
    loop or redraw on, so a part that fails at once (a usage error: a dataset
    missing from ``--data-dir``) prints nothing but its error.
    """

    def __init__(self, desc: str, stream):
        self.desc, self.stream = desc, stream
        self.start = time.time()
        self.total: Optional[int] = None
        self.n = 0
        self.postfix = ""
        self.bar = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        tty = bool(getattr(stream, "isatty", lambda: False)())
        interval = _HEARTBEAT_S if tty else 15 * _HEARTBEAT_S
        self._thread = threading.Thread(target=self._heartbeat, args=(interval,), daemon=True)
        self._thread.start()

    def _shown(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.n,
                desc=self.desc,
                leave=True,
                file=self.stream,
                dynamic_ncols=True,
                bar_format=None if self.total else "{desc}: {elapsed}{postfix}",
            )
            self.bar.start_t = self.start  # elapsed counts from the part's start
            if self.postfix:
                self.bar.set_postfix_str(self.postfix, refresh=False)
            self.bar.refresh()
        return self.bar

    def _heartbeat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock, contextlib.suppress(Exception):  # a closed stream must not
                self._shown().refresh()  # kill the run

    def grow(self, n: int) -> None:
        with self._lock:
            self.total = (self.total or 0) + n
            bar = self._shown()
            bar.total, bar.bar_format = self.total, None  # tqdm's default: bar, count, rate
            bar.refresh()

    def note(self, postfix: str) -> None:
        """Show ``postfix`` (the item being worked on) at the next redraw."""
        with self._lock:
            self.postfix = postfix
            if self.bar is not None:
                self.bar.set_postfix_str(postfix, refresh=False)

    def advance(self) -> None:
        with self._lock:
            self.n += 1
            if self.bar is not None:
                self.bar.update(1)

    def close(self, seconds: Optional[float]) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            if seconds is None and self.bar is None:
                return  # failed before it was drawn
            if seconds is not None:
                self.total = self.total or 1
                bar = self._shown()
                bar.total = bar.n = self.total
                bar.bar_format = None
                bar.set_postfix_str(f"done in {seconds:.1f} s", refresh=False)
            else:  # failed or interrupted mid-way
                bar = self._shown()
                bar.set_postfix_str(
                    f"{self.postfix + ', ' if self.postfix else ''}stopped", refresh=False
                )
            bar.close()


class Run:
    """What a part is given: the config, the staging directory, values left
    by earlier parts (``state``), progress and figure saving."""

    def __init__(self, config, out_dir: Path):
        self.config = config
        self.out_dir = Path(out_dir)
        self.state = types.SimpleNamespace()
        self.figures: list[str] = []
        self._bar: Optional[_StageBar] = None
        self._steps_declared = False

    def steps(self, n: int) -> None:
        """Declare that this part's `progress` loops yield ``n`` items in all
        (for nested loops; otherwise each loop adds its own length)."""
        if self._bar is not None:
            self._bar.grow(n)
        self._steps_declared = True

    def progress(self, iterable: Iterable, what: str = ""):
        """Iterate ``iterable``, advancing this part's bar by one per item.

        Each loop adds its length to the bar's total, unless `steps` declared
        the total; ``what`` names the item in the bar's postfix (``n=512``).
        """
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        bar = self._bar
        if bar is not None and not self._steps_declared:
            bar.grow(len(items))
        for i, item in enumerate(items, 1):
            if bar is not None and what:
                bar.note(
                    f"{what}={item}"
                    if isinstance(item, (str, int, float))
                    else f"{what} {i}/{len(items)}"
                )
            yield item
            if bar is not None:
                bar.advance()

    def save_figure(self, fig, name: str) -> str:
        """Save ``fig`` as ``out_dir/name`` (`results.save_figure`); record it."""
        results.save_figure(fig, self.out_dir / name)
        self.figures.append(name)
        return name


# ------------------------------------------------------------------ experiments


class Experiment:
    """A registered experiment: config, sizes, parts (added by `part`)."""

    def __init__(
        self,
        name: str,
        config_cls: type,
        sizes: Sizes,
        *,
        description: str = "",
        paper: str = "",
        aliases: Sequence[str] = (),
        seconds: Optional[Mapping[str, float]] = None,
    ):
        self.name = name
        self.config_cls = config_cls
        self.sizes = sizes
        self.description = description
        self.paper = paper
        self.aliases = tuple(aliases)
        self.seconds = dict(seconds or {})
        self.parts: list[Part] = []
        self.plans: dict[str, PlanEntry] = {}
        fields = {f.name for f in dataclasses.fields(config_cls)}
        for size, changes in (("full", sizes.full), ("tiny", sizes.tiny), ("smoke", sizes.smoke)):
            unknown = sorted(set(changes) - fields)
            if unknown:
                raise TypeError(
                    f"{name}: its {size} size changes unknown config field(s) "
                    f"{unknown}; {config_cls.__name__} has {sorted(fields)}."
                )
        # a smoke run keeps every loop with one pass, so a count of 0 (a loop
        # skipped, or an argument the library refuses) is a declaration error
        skipped = sorted(
            k
            for k, v in sizes.smoke.items()
            if isinstance(v, int) and not isinstance(v, bool) and v < 1
        )
        if skipped:
            raise TypeError(
                f"{name}: its smoke size must cut loops to one iteration, not skip them; "
                f"got {', '.join(f'{k}={sizes.smoke[k]}' for k in skipped)}."
            )

    def part(
        self, name: str, title: str, *, metrics: Mapping[str, Any], needs: Sequence[str] = ()
    ) -> Callable:
        """Decorator adding ``fn(run) -> Result`` as the next part.

        ``needs``: the earlier parts that leave the ``run.state`` values this
        one reads, so that selecting it (`select`) runs them first.
        """
        if any(p.name == name for p in self.parts):
            raise ValueError(f"{self.name}: part {name!r} is declared twice.")
        if isinstance(needs, str):
            needs = (needs,)
        earlier = [p.name for p in self.parts]
        for need in needs:
            if need not in earlier:
                raise ValueError(
                    f"{self.name}.{name}: needs: expected names of parts declared "
                    f"before it {earlier}; got {need!r}."
                )

        def decorate(fn):
            self.parts.append(Part(name, title, fn, dict(metrics), tuple(needs)))
            return fn

        return decorate

    def select(self, names: Optional[Sequence[str]] = None) -> list[Part]:
        """The parts to run for ``names`` (all when None): those named and,
        transitively, the parts they need, in the experiment's order.

        >>> [p.name for p in get("simon24_rf").select(["overfitting"])]
        ['synthetic', 'image', 'overfitting']
        """
        if names is None:
            return list(self.parts)
        if isinstance(names, str) or not names:
            raise ValueError(
                f"--parts: expected a non-empty list of part names of {self.name}; got {names!r}."
            )
        by_name = {p.name: p for p in self.parts}
        wanted: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in by_name:
                raise ValueError(
                    f"--parts: {self.name} has the parts {list(by_name)}; got {name!r}."
                )
            if name not in wanted:
                wanted.add(name)
                todo += by_name[name].needs
        return [p for p in self.parts if p.name in wanted]

    def plan(self, name: str, *, not_covered: str = "") -> Callable:
        """Decorator adding ``fn(config) -> list[plan.Step]`` as part ``name``'s plan.

        The steps are the part's dominant jitted computations at ``config``,
        with abstract arguments and call counts (see `experiments.plan`);
        ``not_covered`` says what the part does outside them (numpy data
        loading, host-side LAPACK, plotting).
        """

        def decorate(fn):
            if name in self.plans:
                raise ValueError(f"{self.name}: part {name!r} has two plans.")
            self.plans[name] = PlanEntry(fn, not_covered)
            return fn

        return decorate

    @property
    def metrics(self) -> dict:
        """The metric spec of the whole experiment (its parts' specs merged)."""
        spec: dict = {}
        for p in self.parts:
            _merge(spec, p.metrics, f"{self.name}.{p.name} (declared)")
        return spec

    def config(
        self,
        size: str = "quick",
        seed: Optional[int] = None,
        overrides: Optional[Mapping[str, str]] = None,
        data_dir: Optional[str] = None,
        *,
        smoke: bool = False,
    ):
        """Build the config of a size, then apply ``seed``, ``data_dir`` and overrides.

        ``smoke=True`` (with ``size="full"`` only) applies the sizes' ``smoke``
        loop counts on top of ``full``.

        ``data_dir`` (the directory holding real datasets: text8, Omniglot,
        CIFAR-10, UCI) goes to the config's ``data_dir`` field; an experiment
        without one uses only offline data and ignores it.
        """
        config = self.config_cls(**self.sizes.changes(size, smoke, self.name))
        changes = {k: parse_field(config, k, v) for k, v in (overrides or {}).items()}
        if seed is not None:
            changes["seed"] = int(seed)
        if data_dir is not None and self.uses_data_dir:
            changes["data_dir"] = str(data_dir)
        return dataclasses.replace(config, **changes) if changes else config

    @property
    def uses_data_dir(self) -> bool:
        """Whether the config has a ``data_dir`` field for real datasets."""
        return "data_dir" in {f.name for f in dataclasses.fields(self.config_cls)}

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, parts={[p.name for p in self.parts]})"


class OutDirError(OSError):
    """The results directory cannot be created or written (a user error)."""


class DataDirError(OSError):
    """A dataset the config's ``data_dir`` should hold is missing or unreadable."""


def _is_under(path, root) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        return True
    except ValueError:
        return False


def _about_data_dir(error: OSError, data_dir) -> bool:
    """Whether an OSError concerns the datasets in ``data_dir``.

    True when the failing path lies inside ``data_dir`` (``error.filename``,
    or the path quoted in the message, as ``ntk.data``'s loaders do), or the
    message starts ``data_dir:`` (those loaders' convention for naming the
    argument). Any other OSError is a bug and keeps its traceback.
    """
    if not data_dir:
        return False
    names = [f for f in (error.filename, error.filename2) if f is not None]
    if any(_is_under(os.fsdecode(f), data_dir) for f in names):
        return True
    text = str(error)
    return (
        text.startswith("data_dir:") or str(data_dir) in text or os.path.abspath(data_dir) in text
    )


_REGISTRY: dict[str, Experiment] = {}
_ALIASES: dict[str, str] = {}
_DISCOVERED = False


def register(name: str, config_cls: type, *, sizes: Sizes, **about: Any) -> Experiment:
    """Register an experiment; add its parts with ``@experiment.part(...)``.

    ``about``: `Experiment`'s keywords — ``description``, ``paper``,
    ``aliases`` (old names that `get` and the CLI still accept, with a
    deprecation note) and ``seconds`` (measured run times per size, see
    `MEASURED_ON`, shown by ``python -m experiments list``).
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"register({name!r}): config must be a dataclass; got {config_cls!r}.")
    if not isinstance(sizes, Sizes):
        raise TypeError(
            f"register({name!r}): sizes must be a registry.Sizes; got {type(sizes).__name__}."
        )
    if "seed" not in {f.name for f in dataclasses.fields(config_cls)}:
        raise TypeError(f"register({name!r}): {config_cls.__name__} needs a `seed` field.")
    previous = _REGISTRY.get(name)
    if previous is not None and previous.config_cls.__module__ != config_cls.__module__:
        raise ValueError(
            f"experiment {name!r} is registered twice "
            f"({previous.config_cls.__module__} and {config_cls.__module__})."
        )
    experiment = Experiment(name, config_cls, sizes, **about)
    _REGISTRY[name] = experiment
    for alias in experiment.aliases:
        _ALIASES[alias] = name
    return experiment


def discover() -> None:
    """Import every experiment module of this package (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import experiments

    for info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _NOT_EXPERIMENTS:
            continue
        importlib.import_module(f"experiments.{info.name}")
    _DISCOVERED = True


def names() -> list[str]:
    """Registered experiment names, sorted (aliases not included)."""
    discover()
    return sorted(_REGISTRY)


def canonical(name: str) -> str:
    """``name``, or the experiment an alias stands for (with a DeprecationWarning)."""
    discover()
    if name not in _REGISTRY and name in _ALIASES:
        warnings.warn(
            f"experiment {name!r} is now called {_ALIASES[name]!r}; the old name "
            f"is accepted for one more release.",
            DeprecationWarning,
            stacklevel=3,
        )
        return _ALIASES[name]
    return name


def get(name: str) -> Experiment:
    """The experiment called ``name`` (or an alias of it); ValueError listing the known ones."""
    name = canonical(name)
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise ValueError(
            f"unknown experiment {name!r}; available: {known}. "
            f"`python -m experiments list` describes them."
        )
    return _REGISTRY[name]


def parse_field(config, key: str, text: str):
    """Parse ``text`` as the type of field ``key`` of ``config``.

    Tuples are comma-separated (``widths=64,128``); bools accept
    true/false/1/0.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    if key not in fields:
        raise ValueError(
            f"{type(config).__name__}: unknown config field {key!r}; fields are {sorted(fields)}."
        )
    current = getattr(config, key)

    def scalar(kind, s):
        s = s.strip()
        if kind is bool:
            if s.lower() in ("1", "true", "yes"):
                return True
            if s.lower() in ("0", "false", "no"):
                return False
            raise ValueError(f"{key}: expected true/false; got {s!r}.")
        if kind is type(None):
            return None if s.lower() in ("none", "") else s
        return kind(s)

    try:
        if isinstance(current, tuple):
            kind = type(current[0]) if current else _tuple_item_type(config, key)
            return tuple(scalar(kind, s) for s in text.split(",") if s.strip())
        return scalar(type(current), text)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{type(config).__name__}.{key}: cannot parse {text!r} as "
            f"{type(current).__name__} ({e})."
        ) from None


def _tuple_item_type(config, key):
    hint = typing.get_type_hints(type(config)).get(key)
    args = typing.get_args(hint)
    return args[0] if args and args[0] is not Ellipsis else str


# ------------------------------------------------------------------ running


def _run_parts(experiment: Experiment, parts: list[Part], config, out_dir: Path, stream) -> dict:
    """Run ``parts`` (`Experiment.select`'s choice) in order: metrics (checked
    and merged), rows, figures, times."""
    run = Run(config, out_dir)
    metrics: dict = {}
    rows, data, timings = [], {}, []
    total = len(parts)
    for i, part in enumerate(parts, 1):
        run._bar = _StageBar(f"{experiment.name} [{i}/{total}] {part.title}", stream)
        run._steps_declared = False
        start, seconds = time.perf_counter(), None
        try:
            out = part.fn(run)
            seconds = time.perf_counter() - start
        finally:
            run._bar.close(seconds)
            run._bar = None
        where = f"{experiment.name}.{part.name}"
        if not isinstance(out, Result):
            raise TypeError(
                f"{where}: a part must return registry.Result; got {type(out).__name__}."
            )
        check_metrics(part.metrics, out.metrics, where)
        _merge(metrics, out.metrics, where)
        rows += [results.check_row(r, where) for r in out.rows]
        if out.data:
            data[part.name] = out.data
        timings.append({"name": part.name, "title": part.title, "seconds": round(seconds, 3)})
    return {
        "metrics": metrics,
        "paper_vs_ours": rows,
        "figures": list(run.figures),
        "data_used": data,
        "parts": timings,
    }


def run_experiment(
    experiment: Experiment,
    config,
    out_root: Path | str = "results",
    *,
    size: str = "quick",
    echo: Callable[[str], None] = print,
    stream=None,
    parts: Optional[Sequence[str]] = None,
) -> dict:
    """Run one experiment into ``out_root/NAME/`` and write its metrics JSON.

    ``parts`` runs only those parts and the parts they need (`Experiment.select`);
    ``metrics.json`` then holds their metrics, rows and figures only.

    The experiment writes into a staging directory that replaces
    ``out_root/NAME/`` only once ``metrics.json`` is written; if it raises (or
    is interrupted by Ctrl-C / SIGTERM) the staging directory is removed and
    ``out_root/NAME/`` keeps the previous run. Progress bars go to ``stream``
    (default: stderr). Returns the payload written to ``metrics.json``.

    Raises:
      OutDirError: ``out_root`` cannot be created or written.
      DataDirError: the experiment failed to read a dataset in its config's
        ``data_dir`` (an OSError about a path there).
    """
    chosen = experiment.select(parts)  # a typo fails before any work
    results.use_agg_backend()
    final = Path(out_root) / experiment.name

    def unwritable(e: OSError) -> OutDirError:
        where = f" on {os.fsdecode(e.filename)}" if e.filename is not None else ""
        return OutDirError(
            f"cannot write results to {str(out_root)!r}: "
            f"{e.strerror or e} ({type(e).__name__}{where})."
        )

    with contextlib.ExitStack() as stack:
        try:
            stage = stack.enter_context(results.StagedRun(final))
        except OSError as e:
            raise unwritable(e) from e
        echo(f"== {experiment.name} ({size}) -> {final} (run {stage.run_id})")
        # the code the run executes is the checkout's at its start: a commit
        # made during an hour-long run must not be recorded as its source
        commit = results.git_commit()
        start = time.perf_counter()
        try:
            returned = _run_parts(
                experiment, chosen, config, stage.path, sys.stderr if stream is None else stream
            )
        except OSError as e:
            data_dir = getattr(config, "data_dir", None)
            if _about_data_dir(e, data_dir):
                detail = str(e).removeprefix("data_dir:").strip()
                raise DataDirError(
                    f"a dataset is missing or unreadable in {str(data_dir)!r}: {detail}"
                ) from e
            if e.filename is not None and _is_under(os.fsdecode(e.filename), stage.path):
                raise unwritable(e) from e
            raise
        wall = time.perf_counter() - start
        try:
            payload = {
                "experiment": experiment.name,
                "run_id": stage.run_id,
                "description": experiment.description,
                "paper": experiment.paper,
                "size": size,
                "seed": getattr(config, "seed", None),
                "config": dataclasses.asdict(config),
                "wall_time_s": round(wall, 3),
                "parts": returned["parts"],
                "data_used": returned["data_used"],
                "paper_vs_ours": returned["paper_vs_ours"],
                "figures": returned["figures"],
                "files": results.file_manifest(stage.path, exclude=("metrics.json",)),
                "metrics": returned["metrics"],
                **results.provenance(commit),
            }
            results.atomic_write_json(stage.path / "metrics.json", payload)
            stage.publish()
        except OSError as e:
            raise unwritable(e) from e
    table = payload["paper_vs_ours"]
    if table:
        echo(results.format_comparison(table))
    figures = payload["figures"]
    echo(
        f"   wall time {wall:.1f} s; wrote {final / 'metrics.json'}"
        + (f" and {', '.join(figures)}" if figures else "")
    )
    return payload


def run_many(
    names_: Sequence[str],
    *,
    size: str = "quick",
    out_root="results",
    seed: Optional[int] = None,
    overrides=None,
    data_dir: Optional[str] = None,
    echo: Callable[[str], None] = print,
    smoke: bool = False,
    parts: Optional[Sequence[str]] = None,
) -> dict[str, Optional[BaseException]]:
    """Run several experiments; a failure is reported and the rest still run.

    ``parts`` (one experiment only) runs only those parts, with the parts they
    need; the recorded size says so (``full --parts maml``).

    A single experiment's error propagates. Of several, a missing dataset
    (`DataDirError`) is reported in one line and the others run; an
    unwritable ``out_root`` (`OutDirError`) stops them all (each would fail);
    any other exception is reported with its traceback.
    """
    if parts is not None and len(names_) != 1:
        raise ValueError(
            f"--parts: selects parts of one experiment; got {len(names_)} experiments."
        )
    label = size + (" --smoke" if smoke else "")
    if parts is not None:
        label += f" --parts {','.join(parts)}"
    outcome: dict[str, Optional[BaseException]] = {}
    for name in names_:
        try:
            experiment = get(name)
            config = experiment.config(
                size, seed=seed, overrides=overrides, data_dir=data_dir, smoke=smoke
            )
            run_experiment(experiment, config, out_root, size=label, echo=echo, parts=parts)
            outcome[experiment.name] = None
        except Exception as e:  # noqa: BLE001 - reported, the others still run
            if len(names_) == 1 or isinstance(e, OutDirError):
                raise
            if not isinstance(e, DataDirError):
                import traceback

                traceback.print_exc()
            echo(f"!! {name} failed: {type(e).__name__}: {e}")
            outcome[name] = e
    return outcome
