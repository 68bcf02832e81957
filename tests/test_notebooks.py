"""Every notebook teaches with inline figures, runs top to bottom and shows its experiment.

A notebook first walks through its paper's computation with the library (tiny
arrays, seconds on a CPU, plots drawn inline), then shows the experiment's
figures and paper-vs-ours table. CI runs the experiment part at the tiny size
and does not repeat the run: ``NTK_NOTEBOOK_OUT`` points at the session's
shared tiny runs (tests/tiny_runs.py), which the experiment tests read too, and
the notebook shows the finished run (`experiments.load_run`) because its
config is the one the notebook asks for. To execute them as a user would on a
CPU, the experiments run by the notebooks at the quick size:
``NTK_NOTEBOOK_SIZE=quick python -m pytest tests/test_notebooks.py``.
"""

import dataclasses
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import experiments
import tiny_runs
from experiments import registry

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))

#: The experiment each notebook runs.
EXPERIMENT = {
    "jacot18_ntk": "jacot18",
    "yang21_mup": "yang21_mup",
    "yang23_dkm": "yang23_dkm",
    "simon24_rf": "simon24_rf",
    "giapitzakis25": "giapitzakis25",
}

#: Tag of the code cells that set the notebook up (the install cell) and may print nothing.
SETUP_TAG = "setup"


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _is_setup(cell) -> bool:
    return SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def _images(cells):
    return [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def _texts(cells) -> str:
    """The printed text of ``cells``: streams and plain-text results."""
    return "\n".join(
        o.get("text", "")
        if o.get("output_type") == "stream"
        else o.get("data", {}).get("text/plain", "")
        for c in cells
        for o in c.get("outputs", [])
    )


def _shared_run_seed(name: str):
    """The ``--seed`` of the session's shared tiny run of ``name`` (None: the default)."""
    args = list(tiny_runs.ARGS.get(name, []))
    seed = None
    if "--seed" in args:
        i = args.index("--seed")
        seed = args[i + 1]
        del args[i : i + 2]
    # Any other CLI argument would change the config in a way the notebook cannot
    # reproduce through its environment variables: the reuse would silently stop.
    assert not args, f"tiny_runs.ARGS[{name!r}] has arguments the notebook cannot match: {args}"
    return seed


def test_there_is_a_notebook_per_paper_so_far():
    assert {p.stem for p in NOTEBOOKS} >= set(EXPERIMENT)
    assert set(EXPERIMENT) >= {p.stem for p in NOTEBOOKS}, "add the new notebook to EXPERIMENT"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs_and_tags_its_setup_cells(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    assert all(not c.outputs and c.execution_count is None for c in cells), (
        f"{path.name}: clear the outputs before saving"
    )
    assert _is_setup(cells[0]) and "pip" in cells[0].source, (
        f"{path.name}: the first code cell is the install cell, tagged {SETUP_TAG!r}"
    )


def test_load_run_returns_a_finished_run_only_for_its_config(tmp_path_factory):
    out_dir, payload = tiny_runs.tiny_run("jacot18", tmp_path_factory)
    root = out_dir.parent
    experiment = registry.get("jacot18")
    seed = _shared_run_seed("jacot18")
    config = experiment.config("tiny", seed=None if seed is None else int(seed))
    assert experiments.load_run("jacot18", root, config) == payload
    assert experiments.load_run("jacot18", str(root)) == payload  # no config: any run
    other_seed = dataclasses.replace(config, seed=config.seed + 1)
    assert experiments.load_run("jacot18", root, other_seed) is None
    assert experiments.load_run("jacot18", root, experiment.config("quick")) is None
    assert experiments.load_run("jacot18", root / "nothing-here", config) is None
    with pytest.raises(TypeError, match="config"):
        experiments.load_run("jacot18", root, dataclasses.asdict(config))
    with pytest.raises(TypeError, match="name"):
        experiments.load_run(None, root)


@pytest.fixture
def notebook_out(request, tmp_path, tmp_path_factory, monkeypatch):
    """``(OUT, NAME)`` for a notebook's experiment, with the notebook's environment set.

    At the tiny size OUT is the session's shared tiny runs (made here if no test
    made them yet), so the notebook shows the finished run instead of repeating
    it; at another size the notebook runs the experiment into ``tmp_path``.
    """
    path = request.node.callspec.params["path"]
    name = EXPERIMENT[path.stem]
    size = os.environ.get("NTK_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("NTK_NOTEBOOK_SIZE", size)
    monkeypatch.delenv("NTK_NOTEBOOK_REUSE", raising=False)
    if size == "tiny":
        out = tiny_runs.tiny_run(name, tmp_path_factory)[0].parent
        seed = _shared_run_seed(name)
        if seed is None:
            monkeypatch.delenv("NTK_NOTEBOOK_SEED", raising=False)
        else:
            monkeypatch.setenv("NTK_NOTEBOOK_SEED", seed)
    else:
        out = tmp_path / "results"
        monkeypatch.delenv("NTK_NOTEBOOK_SEED", raising=False)
    monkeypatch.setenv("NTK_NOTEBOOK_OUT", str(out))
    return out, name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_outputs_every_cell_and_draws_inline(path, notebook_out, tmp_path):
    out, name = notebook_out
    metrics = out / name / "metrics.json"
    run_before = experiments.load_run(name, out)
    nb = nbformat.read(path, as_version=4)
    # Executing raises CellExecutionError (with the cell and traceback) if a cell fails.
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    cells = _code_cells(nb)
    silent = [i for i, c in enumerate(cells) if not _is_setup(c) and not c.outputs]
    assert not silent, (
        f"{path.name}: code cells {silent} (counting code cells from 0) printed "
        f"and drew nothing; tag setup cells {SETUP_TAG!r}"
    )

    # The walkthrough is everything before the cell that picks the experiment.
    start = next((i for i, c in enumerate(cells) if f'registry.get("{name}")' in c.source), None)
    assert start is not None, f'{path.name}: no cell calls registry.get("{name}")'
    assert _images(cells[:start]), f"{path.name}: the walkthrough drew no inline figure"
    # The walkthrough runs the library in float32, where a kernel that is not
    # positive definite turns a solve into NaN without an error.
    walkthrough = _texts(cells[:start])
    assert not re.search(r"\bnan\b", walkthrough, re.I), f"{path.name} printed NaN:\n{walkthrough}"

    assert metrics.exists(), f"{path.name}: no {metrics}"
    payload = experiments.load_run(name, out)
    assert len(_images(cells[start:])) >= len(payload["figures"]) > 0, (
        f"{path.name}: the experiment's figures were not all displayed"
    )
    if run_before is not None:
        assert payload["run_id"] == run_before["run_id"], (
            f"{path.name} ran {name} again instead of showing the finished run: its config "
            f"differs from the shared tiny run's"
        )
