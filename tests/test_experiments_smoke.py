"""``python -m experiments run NAME --full --smoke``: the full settings end to end on a CPU.

Each experiment runs in a subprocess as a user would start it (float32, one
CPU device, XLA's default optimisation: the dtype, device and code a full run
has; the suite's own XLA flags are not passed on), with its loops cut to one
iteration by its sizes' ``smoke`` mapping and every shape, width and data size
at its full value, so a full GPU/TPU run cannot fail hours in on a shape,
dtype or layout error that this test would have caught. The test checks the
run finished (exit status 0, a complete ``metrics.json``) and that the
recorded config is the full config with only the declared loop counts changed.

Even cut to one iteration per loop the full shapes take 1-21 minutes per
experiment on the 2-core CPU (the k = 16 joint GP draws, one Θ̂·Q product of
the width-10,000 network on 512 MNIST images, four Myrtle-10 tiles of 64 × 64
pairs of 32×32 images, random features at n = k = 10⁴, exact GPs on 10,000 UCI
points). Even the shortest (giapitzakis25) took 119 s inside the suite, which
then ran 21 minutes on 2 cores, past its 20-minute budget, so these tests run
only when ``NTK_FULL_SMOKE=1`` is set (before a GPU/TPU full run, or in a
nightly job).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import registry

REPO = Path(__file__).resolve().parents[1]


def _as_json(value):
    return json.loads(json.dumps(value, default=str))


@pytest.mark.skipif(
    os.environ.get("NTK_FULL_SMOKE") != "1",
    reason="minutes per experiment at the full shapes: set NTK_FULL_SMOKE=1",
)
@pytest.mark.parametrize("name", registry.names())
def test_full_smoke_run_finishes_at_the_full_shapes(name, tmp_path, user_env):
    exp = registry.get(name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments",
            "run",
            name,
            "--full",
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    payload = json.loads((tmp_path / name / "metrics.json").read_text())
    assert payload["size"] == "full --smoke"
    full = dataclasses.asdict(exp.config("full"))
    recorded = payload["config"]
    for field, value in full.items():
        if field in exp.sizes.smoke:
            assert recorded[field] == _as_json(exp.sizes.smoke[field]), field
        else:
            assert recorded[field] == _as_json(value), field
    assert [p["name"] for p in payload["parts"]] == [p.name for p in exp.parts]
