"""The experiment registry and the runner behind ``python -m experiments``.

Each paper is one module in this package that registers itself::

    @dataclasses.dataclass(frozen=True)
    class Config:
        width: int = 256
        seed: int = 0

        @classmethod
        def quick(cls):  # ~1 minute on 2 CPU cores (CI, notebooks)
            return cls()

        @classmethod
        def full(cls):   # the paper's setting (GPU/TPU)
            return cls(width=4096)

        @classmethod
        def tiny(cls):   # optional: seconds, for tests
            return cls(width=16)

    @register("my_paper", Config, description="…", paper="Author et al. 2020")
    def run(config: Config, out_dir: Path) -> dict:
        ...                      # figures via results.save_figure(fig, out_dir / "x.png")
        return {"metrics": ..., "paper_vs_ours": [results.comparison(...)],
                "figures": ["x.png"]}

Modules are discovered by scanning the package, so adding a paper touches no
shared file. `run_experiment` times the run and writes
``OUT/NAME/metrics.json`` (config, seed, versions, device, wall time, the
paper-vs-ours table and the returned metrics) atomically.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import time
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from experiments import results

SIZES = ("tiny", "quick", "full")

# Modules of this package that are infrastructure, not experiments.
_NOT_EXPERIMENTS = {"registry", "results", "benchmarks"}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``run(config, out_dir) -> dict``."""

    name: str
    config_cls: type
    run: Callable[[Any, Path], Mapping]
    description: str = ""
    paper: str = ""

    def config(self, size: str = "quick", seed: Optional[int] = None,
               overrides: Optional[Mapping[str, str]] = None,
               data_dir: Optional[str] = None):
        """Build the config of a size, then apply ``seed``, ``data_dir`` and overrides.

        ``data_dir`` (the directory holding real datasets: text8, Omniglot,
        CIFAR-10, UCI) goes to the config's ``data_dir`` field; an experiment
        without one uses only offline data and ignores it.
        """
        if size not in SIZES:
            raise ValueError(f"{self.name}: size must be one of {SIZES}; got {size!r}.")
        make = getattr(self.config_cls, size, None)
        if make is None:
            raise ValueError(f"{self.name}: its config has no {size!r} size "
                             f"({self.config_cls.__name__}.{size}() is missing).")
        config = make()
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


_REGISTRY: dict[str, Experiment] = {}
_DISCOVERED = False


def register(name: str, config_cls: type, *, description: str = "",
             paper: str = "") -> Callable:
    """Decorator registering ``run(config, out_dir) -> dict`` under ``name``."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"register({name!r}): config must be a dataclass; got "
                        f"{config_cls!r}.")
    missing = [s for s in ("quick", "full") if not hasattr(config_cls, s)]
    if missing or "seed" not in {f.name for f in dataclasses.fields(config_cls)}:
        raise TypeError(f"register({name!r}): {config_cls.__name__} needs "
                        f"classmethods quick() and full() and a `seed` field.")

    def decorate(run):
        if name in _REGISTRY and _REGISTRY[name].run is not run:
            raise ValueError(f"experiment {name!r} is registered twice "
                             f"({_REGISTRY[name].run.__module__} and {run.__module__}).")
        _REGISTRY[name] = Experiment(name, config_cls, run, description, paper)
        return run

    return decorate


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
    """Registered experiment names, sorted."""
    discover()
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    """The experiment called ``name``; ValueError listing the known ones."""
    discover()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise ValueError(f"unknown experiment {name!r}; available: {known}. "
                         f"`python -m experiments list` describes them.")
    return _REGISTRY[name]


def parse_field(config, key: str, text: str):
    """Parse ``text`` as the type of field ``key`` of ``config``.

    Tuples are comma-separated (``widths=64,128``); bools accept
    true/false/1/0.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    if key not in fields:
        raise ValueError(f"{type(config).__name__}: unknown config field {key!r}; "
                         f"fields are {sorted(fields)}.")
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
        raise ValueError(f"{type(config).__name__}.{key}: cannot parse {text!r} as "
                         f"{type(current).__name__} ({e}).") from None


def _tuple_item_type(config, key):
    hint = typing.get_type_hints(type(config)).get(key)
    args = typing.get_args(hint)
    return args[0] if args and args[0] is not Ellipsis else str


def run_experiment(experiment: Experiment, config, out_root: Path | str = "results",
                   *, size: str = "quick", echo: Callable[[str], None] = print) -> dict:
    """Run one experiment into ``out_root/NAME/`` and write its metrics JSON.

    Returns the metrics payload written to ``metrics.json``.
    """
    results.use_agg_backend()
    out_dir = Path(out_root) / experiment.name
    out_dir.mkdir(parents=True, exist_ok=True)
    echo(f"== {experiment.name} ({size}) -> {out_dir}")
    start = time.perf_counter()
    returned = dict(experiment.run(config, out_dir))
    wall = time.perf_counter() - start
    table = list(returned.pop("paper_vs_ours", []))
    figures = [str(f) for f in returned.pop("figures", [])]
    payload = {
        "experiment": experiment.name,
        "description": experiment.description,
        "paper": experiment.paper,
        "size": size,
        "seed": getattr(config, "seed", None),
        "config": dataclasses.asdict(config),
        "wall_time_s": round(wall, 3),
        "paper_vs_ours": table,
        "figures": figures,
        "metrics": returned.get("metrics", returned),
        **results.provenance(),
    }
    results.atomic_write_json(out_dir / "metrics.json", payload)
    if table:
        echo(results.format_comparison(table))
    echo(f"   wall time {wall:.1f} s; wrote {out_dir / 'metrics.json'}"
         + (f" and {', '.join(figures)}" if figures else ""))
    return payload


def run_many(names_: Sequence[str], *, size: str = "quick", out_root="results",
             seed: Optional[int] = None, overrides=None, data_dir: Optional[str] = None,
             echo: Callable[[str], None] = print) -> dict[str, Optional[BaseException]]:
    """Run several experiments; a failure is reported and the rest still run."""
    outcome: dict[str, Optional[BaseException]] = {}
    for name in names_:
        try:
            experiment = get(name)
            config = experiment.config(size, seed=seed, overrides=overrides,
                                       data_dir=data_dir)
            run_experiment(experiment, config, out_root, size=size, echo=echo)
            outcome[name] = None
        except Exception as e:  # noqa: BLE001 - reported, the others still run
            if len(names_) == 1:
                raise
            import traceback
            traceback.print_exc()
            echo(f"!! {name} failed: {type(e).__name__}: {e}")
            outcome[name] = e
    return outcome
