"""The experiments CLI, its result files, the kernel benchmark's plumbing, and CI.

Numbers of the experiment itself are checked where a closed form exists (the
empirical NTK of a linear model, the slope of an exact power law); the CLI
tests check what a user sees and what the files contain.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import registry, results
from experiments.__main__ import main
from experiments.benchmarks import _harness
from experiments.benchmarks import kernels as bench
from experiments import jacot18
from ntk import stax

REPO = Path(__file__).resolve().parents[1]


def _cli(*args, timeout=120):
    """Run ``python -m experiments ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------ CLI


def test_list_shows_jacot18():
    proc = _cli("list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert "jacot18" in names


def test_unknown_experiment_name_exits_2_and_lists_the_known_ones():
    proc = _cli("run", "no_such_experiment")
    assert proc.returncode == 2
    assert "unknown experiment 'no_such_experiment'" in proc.stderr
    assert "jacot18" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_registry_get_unknown_name_raises_value_error():
    with pytest.raises(ValueError, match="unknown experiment 'nope'.*jacot18"):
        registry.get("nope")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``run jacot18 --tiny --seed 7`` into a fresh results directory."""
    out = tmp_path_factory.mktemp("results")
    code = main(["run", "jacot18", "--tiny", "--seed", "7", "--out", str(out)])
    return code, out / "jacot18"


FIGURES = ["fig1_ntk_convergence.png", "fig2_function_dynamics.png",
           "fig3_principal_components.png", "fig4_rates.png"]


@pytest.mark.parametrize("name", FIGURES)
def test_tiny_run_exits_0_and_writes_each_png(tiny_run, name):
    code, out_dir = tiny_run
    assert code == 0
    png = out_dir / name
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_tiny_run_metrics_json_has_provenance_and_table(tiny_run):
    _, out_dir = tiny_run
    payload = json.loads((out_dir / "metrics.json").read_text())
    assert payload["experiment"] == "jacot18"
    assert payload["size"] == "tiny"
    assert payload["seed"] == 7 and payload["config"]["seed"] == 7
    assert payload["config"]["slope_widths"] == list(jacot18.Config.tiny().slope_widths)
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "ntk"):
        assert payload["versions"][pkg], f"version of {pkg} missing"
    assert payload["versions"]["jax"] == jax.__version__
    assert payload["device"]["platform"] == jax.devices()[0].platform
    assert payload["device"]["device_count"] == jax.device_count()
    assert payload["device"]["device_kind"]
    assert payload["wall_time_s"] > 0
    assert payload["figures"] == FIGURES
    rows = payload["paper_vs_ours"]
    assert rows and all({"quantity", "paper", "ours"} <= set(r) for r in rows)
    slope_row = next(r for r in rows if r["quantity"].startswith("slope of ‖Θ̂₀"))
    assert slope_row["paper"] == -0.5
    assert math.isclose(slope_row["ours"], payload["metrics"]["ntk_init_error_slope"],
                        abs_tol=1e-3)


def test_tiny_run_leaves_no_temporary_files(tiny_run):
    _, out_dir = tiny_run
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(FIGURES + ["metrics.json"])


# ------------------------------------------------------------------ atomic writes


class _Unserialisable:
    pass


def test_failed_json_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    results.atomic_write_json(path, {"version": 1})
    before = path.read_bytes()
    # The list is streamed into the file before the bad object is reached, so a
    # non-atomic writer would leave a truncated file here.
    payload = {"a": list(range(5000)), "z": _Unserialisable()}
    with pytest.raises(TypeError, match="_Unserialisable"):
        results.atomic_write_json(path, payload)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_figure_write_keeps_the_previous_png(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = tmp_path / "fig.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    results.save_figure(fig, path)
    before = path.read_bytes()

    def exploding_savefig(f, **kwargs):
        f.write(b"\x89PNG partial")
        raise RuntimeError("disk full")

    fig2, _ = plt.subplots()
    fig2.savefig = exploding_savefig
    with pytest.raises(RuntimeError, match="disk full"):
        results.save_figure(fig2, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_json_writer_converts_numpy_values(tmp_path):
    path = results.atomic_write_json(tmp_path / "m.json",
                                     {"a": np.float32(0.5), "b": np.arange(3),
                                      "c": jnp.ones(2)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": [1.0, 1.0]}


# ------------------------------------------------------------------ config overrides


def test_set_overrides_parse_by_field_type():
    config = registry.get("jacot18").config(
        "quick", seed=3, overrides={"slope_widths": "8,16", "fig1_inits": "4", "b_std": "0.5"})
    assert config.slope_widths == (8, 16) and config.fig1_inits == 4
    assert config.b_std == 0.5 and config.seed == 3


def test_set_override_of_unknown_field_names_the_fields():
    with pytest.raises(ValueError, match="unknown config field 'slope_widht'.*slope_widths"):
        registry.get("jacot18").config("quick", overrides={"slope_widht": "8"})


def test_set_override_with_bad_value_says_what_was_expected():
    with pytest.raises(ValueError, match="fig1_inits: cannot parse 'many' as int"):
        registry.get("jacot18").config("quick", overrides={"fig1_inits": "many"})


# ------------------------------------------------------------------ jacot18 pieces


@pytest.mark.parametrize("W_std,b_std", [(1.0, None), (1.7, 0.3)])
def test_ntk_row_of_a_linear_model_is_its_closed_form(W_std, b_std):
    # f(x) = W_std <w, x> / sqrt(d) + b_std b  =>  Θ(x0, x) = W_std² <x0, x>/d + b_std²
    init_fn, apply_fn, _ = stax.Dense(1, W_std=W_std, b_std=b_std)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    expected = W_std ** 2 * x @ x[0] / 3 + (b_std or 0.0) ** 2
    np.testing.assert_allclose(jacot18.ntk_row(apply_fn, params, x[0], x), expected,
                               rtol=1e-10)


def test_ntk_row_matches_a_brute_force_jacobian():
    # two outputs: the row must use output 0's gradients only
    init_fn, apply_fn, _ = stax.serial(stax.Dense(6, b_std=0.1), stax.Relu(),
                                       stax.Dense(2, b_std=0.1))
    x = jacot18.circle(jnp.linspace(0.0, 3.0, 5))
    params = jax.jit(lambda k: init_fn(k, x.shape)[1])(jax.random.PRNGKey(2))
    jac = jax.jacrev(lambda p: apply_fn(p, x)[:, 0])(params)
    flat = jnp.concatenate([j.reshape(x.shape[0], -1) for j in jax.tree_util.tree_leaves(jac)],
                           axis=1)
    np.testing.assert_allclose(jacot18.ntk_row(apply_fn, params, x[2], x),
                               flat @ flat[2], rtol=1e-5)


def test_loglog_slope_recovers_an_exact_power_law():
    widths = np.array([16, 64, 256, 1024])
    assert results.loglog_slope(widths, 3.0 * widths ** -0.5) == pytest.approx(-0.5)



# ------------------------------------------------------------------ benchmark plumbing


def test_benchmark_reports_missing_layers_instead_of_failing():
    partial = types.SimpleNamespace(Dense=None, Relu=None, Erf=None, serial=None)
    assert bench.missing_layers(partial, bench.WORKLOADS["a"]) == []
    assert bench.missing_layers(partial, bench.WORKLOADS["c"]) == ["Conv", "GlobalAvgPool"]


def test_benchmark_harness_times_the_kernel_it_was_given():
    workload = {"layers": [["Dense", [8], {"W_std": 1.4, "b_std": 0.1}], ["Relu", [], {}],
                           ["Dense", [1], {}]],
                "input_shape": [6, 5]}
    result = _harness.run_workload(stax, workload, repeats=2, seed=0)
    assert result["seconds"] > 0 and len(result["times"]) == 2
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=1.4, b_std=0.1), stax.Relu(),
                                  stax.Dense(1))
    x = _harness.make_input([6, 5], 0)
    np.testing.assert_allclose(result["corner"], np.asarray(kernel_fn(x, None, "ntk"))[:4, :4],
                               rtol=1e-6)


def test_benchmark_speedup_and_target():
    ours = {"seconds": 0.2, "corner": [[1.0]]}
    nt = {"seconds": 1.0, "corner": [[1.0 + 1e-7]]}
    row = bench.compare(ours, nt, {"target": 3.0, "nt_issue_s": 1.1})
    assert row["speedup"] == pytest.approx(5.0) and row["met"] is True
    assert row["max_rel_diff_corner"] == pytest.approx(1e-7, rel=1e-3)
    assert bench.compare(ours, None, {"target": 3.0, "nt_issue_s": 1.1})["met"] is None


# ------------------------------------------------------------------ README and CI


def _quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quickstart_has_exactly_two_commands():
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert "experiments run all" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _quickstart_commands()[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert any(line.strip().startswith(test_command) for line in ci.splitlines()), (
        f"README's test command not found verbatim in .ci/run:\n{test_command}")


def test_ci_script_is_strict_executable_bash_that_fails_on_no_tests():
    path = REPO / ".ci" / "run"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert os.access(path, os.X_OK)
    assert re.search(r"status -eq 5 \]\]; then(.|\n)*?exit 1", text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


# ------------------------------------------------------------------ --data-dir


def test_data_dir_flag_is_refused_by_an_offline_only_experiment():
    proc = _cli("run", "jacot18", "--tiny", "--data-dir", "/nowhere")
    assert proc.returncode == 2
    assert "--data-dir: jacot18 uses only offline data" in proc.stderr


def test_data_dir_reaches_the_config_field_of_experiments_that_have_one():
    import dataclasses as dc

    @dc.dataclass(frozen=True)
    class Cfg:
        data_dir: str = ""
        seed: int = 0

        @classmethod
        def quick(cls):
            return cls()

        @classmethod
        def full(cls):
            return cls()

    exp = registry.Experiment("demo", Cfg, lambda c, o: {})
    assert exp.uses_data_dir
    assert exp.config("quick", data_dir="/data").data_dir == "/data"
    assert registry.get("jacot18").config("tiny", data_dir="/data") == jacot18.Config.tiny()
