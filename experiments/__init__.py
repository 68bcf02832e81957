"""Paper reproductions built on ntk, one module per paper.

    python -m experiments list
    python -m experiments run NAME|all [--tiny|--full] [--out results] [--seed N]
    python -m experiments report [--out results]

See `experiments.registry` for the protocol an experiment follows (sizes
declared once, named parts returning metrics, marked paper-vs-ours rows and
figures), `experiments.results` for the atomic result files and the rows'
marks, and `experiments.report` for the report of every reproduction;
`load_run` reads a finished run back (the notebooks show one instead of
repeating it when its config is the one asked for). Speed
benchmarks live in `experiments.benchmarks`
(``python -m experiments.benchmarks.kernels``). This package is run from the
repository; it is not installed with ``ntk``.
"""

import dataclasses as _dataclasses
import json as _json
import os as _os
from pathlib import Path as _Path


def load_run(name: str, out_root="results", config=None):
    """The ``metrics.json`` payload of the finished run ``out_root/NAME/``, or None.

    A run is published as ``out_root/NAME/`` only once complete (see
    `experiments.results.StagedRun`), so a ``metrics.json`` there is a whole
    run. With ``config`` (the experiment's config dataclass, e.g.
    ``registry.get(NAME).config("tiny", seed=7)``) the payload is returned only
    if the run's recorded ``config`` is that one: same fields and values once
    both are in JSON form (tuples as lists). Returns None when there is no
    finished run, or it was made with another config. The payload's keys are
    those `experiments.registry.run_experiment` writes and returns
    (``paper_vs_ours``, ``figures``, ``metrics``, ``config``, ``run_id`` …), so
    a notebook can show a finished run instead of repeating it::

        payload = load_run("jacot18", "results", config)
        if payload is None:
            payload = registry.run_experiment(registry.get("jacot18"), config, "results")
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"load_run: `name` must be an experiment name (str); got {name!r}.")
    if not isinstance(out_root, (str, _os.PathLike)):
        raise TypeError(
            f"load_run: `out_root` must be a path (str or os.PathLike); got "
            f"{type(out_root).__name__}."
        )
    if config is not None and (not _dataclasses.is_dataclass(config) or isinstance(config, type)):
        raise TypeError(
            f"load_run: `config` must be an experiment's config dataclass "
            f"instance or None; got {type(config).__name__}."
        )
    path = _Path(out_root) / name / "metrics.json"
    try:
        payload = _json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if config is not None:
        # a JSON round trip gives the form metrics.json stores (tuples as lists,
        # paths as strings), so equal configs compare equal
        wanted = _json.loads(_json.dumps(_dataclasses.asdict(config), default=str))
        if payload.get("config") != wanted:
            return None
    return payload
