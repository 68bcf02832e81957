"""Every notebook runs top to bottom and shows its figures.

CI runs them at the experiments' tiny size (the quick-size runs take minutes
each; the experiments' own tests check their numbers). To execute them as a
user would on a CPU: ``NTK_NOTEBOOK_SIZE=quick python -m pytest tests/test_notebooks.py``.
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_per_paper_so_far():
    assert {p.stem for p in NOTEBOOKS} >= {"jacot18_ntk", "yang21_mup", "yang23_dkm",
                                          "simon24_rf", "giapitzakis25"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_displays_figures(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NTK_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("NTK_NOTEBOOK_SIZE", os.environ.get("NTK_NOTEBOOK_SIZE", "tiny"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} displayed no figure"
    assert list(tmp_path.glob("*/metrics.json")), f"{path.name} wrote no metrics.json"
