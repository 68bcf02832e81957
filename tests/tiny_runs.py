"""One ``--tiny`` run of each experiment per test session, shared by every test that reads it.

A tiny run takes 15–60 s (mostly compilation), and the experiment tests, the
report test and the CLI tests all read the same runs. Under pytest-xdist each
worker has its own session- and module-scoped fixtures, so a fixture alone
would run an experiment once per worker: the runs go into one directory that
every worker of the session shares, and a lock per experiment makes the first
test that asks run it (through the CLI, as a user would) and the others wait
for it and read its files. The runs are made under
``jax_numpy_rank_promotion="raise"``, as the library's tests are, so that the
experiments' broadcasts stay explicit too.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import jax

from experiments.__main__ import main

#: Extra CLI arguments of an experiment's shared run (jacot18's seed checks
#: that ``--seed`` reaches the config and metrics.json).
ARGS = {"jacot18": ["--seed", "7"]}


def results_root(tmp_path_factory) -> Path:
    """The session's shared results directory (the same for every xdist worker)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tiny_results"
    root.mkdir(parents=True, exist_ok=True)
    return root


def tiny_run(name: str, tmp_path_factory) -> tuple[Path, dict]:
    """``(OUT/NAME, metrics.json payload)`` of the session's tiny run of ``name``."""
    root = results_root(tmp_path_factory)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        metrics = root / name / "metrics.json"
        if not metrics.exists():
            with jax.numpy_rank_promotion("raise"):
                code = main(["run", name, "--tiny", "--out", str(root), *ARGS.get(name, [])])
            assert code == 0, f"python -m experiments run {name} --tiny exited {code}"
    return root / name, json.loads(metrics.read_text())
