"""The experiment protocol, the CLI, result files, the report, the benchmark's plumbing, CI.

The registry's checks (declared sizes and metrics, marked rows, timed parts
with progress) are tested on small fake experiments; the CLI tests check what
a user sees and what the files contain; the report is checked on the tiny runs
of every experiment that the session shares (tests/tiny_runs.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html.parser
import io
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import registry, report, results
from experiments.__main__ import main
from experiments.benchmarks import _harness
from experiments.benchmarks import kernels as bench
from experiments.benchmarks import precision
from ntk import stax
from tiny_runs import results_root, tiny_run

REPO = Path(__file__).resolve().parents[1]


def _cli(*args, timeout=120):
    """Run ``python -m experiments ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


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
    path = results.atomic_write_json(
        tmp_path / "m.json", {"a": np.float32(0.5), "b": np.arange(3), "c": jnp.ones(2)}
    )
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": [1.0, 1.0]}


# ------------------------------------------------------------------ config overrides


def test_set_overrides_parse_by_field_type():
    config = registry.get("jacot18").config(
        "quick", seed=3, overrides={"slope_widths": "8,16", "fig1_inits": "4", "b_std": "0.5"}
    )
    assert config.slope_widths == (8, 16) and config.fig1_inits == 4
    assert config.b_std == 0.5 and config.seed == 3


def test_set_override_of_unknown_field_names_the_fields():
    with pytest.raises(ValueError, match="unknown config field 'slope_widht'.*slope_widths"):
        registry.get("jacot18").config("quick", overrides={"slope_widht": "8"})


def test_set_override_with_bad_value_says_what_was_expected():
    with pytest.raises(ValueError, match="fig1_inits: cannot parse 'many' as int"):
        registry.get("jacot18").config("quick", overrides={"fig1_inits": "many"})


# ------------------------------------------------------------------ benchmark plumbing


def test_benchmark_reports_missing_layers_instead_of_failing():
    partial = types.SimpleNamespace(Dense=None, Relu=None, Erf=None, serial=None)
    assert bench.missing_layers(partial, bench.WORKLOADS["a"]) == []
    assert bench.missing_layers(partial, bench.WORKLOADS["c"]) == ["Conv", "GlobalAvgPool"]


def test_benchmark_harness_times_the_kernel_it_was_given():
    workload = {
        "layers": [
            ["Dense", [8], {"W_std": 1.4, "b_std": 0.1}],
            ["Relu", [], {}],
            ["Dense", [1], {}],
        ],
        "input_shape": [6, 5],
    }
    result = _harness.run_workload(stax, workload, repeats=2, seed=0)
    assert result["seconds"] > 0 and len(result["times"]) == 2
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=1.4, b_std=0.1), stax.Relu(), stax.Dense(1))
    x = _harness.make_input([6, 5], 0)
    np.testing.assert_allclose(
        result["corner"], np.asarray(kernel_fn(x, None, "ntk"))[:4, :4], rtol=1e-6
    )


def test_precision_harness_measures_float32_against_float64():
    """A ReLU MLP's float32 kernel at nearly identical inputs is within a few
    ε thanks to the chords (README, dtype): not 0, as a harness comparing a
    kernel with itself would report; a network that cannot be built is
    reported, not raised; float64 stays on afterwards."""
    workloads = {
        "mlp_relu": precision.WORKLOADS["mlp_relu"],
        "bad": {"layers": [["Relu", [], {}]], "input_shape": [3]},
    }
    out = _harness.precision_all(stax, {"workloads": workloads, "seed": 0})
    assert 0 < out["mlp_relu"]["error_eps"] < 8
    assert "error" in out["bad"] and "Relu" in out["bad"]["error"]
    assert jax.config.jax_enable_x64


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


def test_quick_and_tiny_times_quoted_in_the_cli_and_readme_cover_the_registered_ones(capsys):
    # the registry's `seconds` are the measured times (`list` prints them); the
    # ranges written in the CLI's help, its module docstring and the README
    # must contain them and not overstate them by more than 10 s
    from experiments import __main__ as cli

    registry.discover()
    times = {s: [registry.get(n).seconds[s] for n in registry.names()] for s in ("quick", "tiny")}
    readme = (REPO / "README.md").read_text()
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    quoted = {
        "quick": [
            re.search(r"(\d+) s to (\d+) s per", help_text).groups(),
            re.search(r"quick \(the default: (\d+)–(\d+) s each", readme).groups(),
            re.search(r"``quick`` \(default\): (\d+) s \(\w+\) to (\d+) s", cli.__doc__).groups(),
        ],
        "tiny": [
            re.search(r"`--tiny` \((\d+)–(\d+) s per experiment", readme).groups(),
            re.search(r"for tests: (\d+)–(\d+) s per experiment", help_text).groups(),
            re.search(r"not meaningful\): (\d+)-(\d+) s per", cli.__doc__).groups(),
        ],
    }
    for size, ranges in quoted.items():
        for lo, hi in ranges:
            assert int(lo) <= min(times[size]) <= int(lo) + 10, (size, lo, times[size])
            assert int(hi) - 10 <= max(times[size]) <= int(hi), (size, hi, times[size])


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _quickstart_commands()[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert any(line.strip().startswith(test_command) for line in ci.splitlines()), (
        f"README's test command not found verbatim in .ci/run:\n{test_command}"
    )


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

    exp = registry.Experiment("demo", Cfg, registry.Sizes(full={}, tiny={}))
    assert exp.uses_data_dir
    assert exp.config("quick", data_dir="/data").data_dir == "/data"
    jacot = registry.get("jacot18")
    assert jacot.config("tiny", data_dir="/data") == jacot.config_cls(**jacot.sizes.tiny)


# ------------------------------------------------------------------ staged runs


@dataclasses.dataclass(frozen=True)
class _FakeConfig:
    """Config of the fake experiments below (registered per test, never discovered)."""

    seed: int = 0
    label: str = "first"
    interrupt_after_first_figure: bool = False
    data_dir: str = ""


def _line_figure(y):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(y)
    return fig


def _fake_run(run):
    """Two figures; with ``interrupt_after_first_figure`` a Ctrl-C after the first."""
    run.save_figure(_line_figure([0, 1, 0]), "first.png")
    if run.config.interrupt_after_first_figure:
        raise KeyboardInterrupt
    run.save_figure(_line_figure([1, 0, 1]), "second.png")
    return registry.Result(metrics={"label": run.config.label})


def _fake_cifar_run(run):
    """Reads CIFAR-10 from ``data_dir`` through the real loader."""
    from ntk import data

    data.cifar10(run.config.data_dir)
    return registry.Result()


def _fake_buggy_run(run):
    """An OSError that has nothing to do with ``data_dir``: a bug."""
    open(os.path.join(os.sep, "nonexistent-ntk-test-dir", "cache.bin"), "rb")


def _fake_experiment(name, *parts, config=_FakeConfig):
    """An experiment of ``(fn, metric spec)`` parts, registered nowhere."""
    exp = registry.Experiment(name, config, registry.Sizes(full={}, tiny={}))
    for i, (fn, spec) in enumerate(parts):
        exp.part(f"part{i}", f"part {i} of {name}", metrics=spec)(fn)
    return exp


@pytest.fixture
def fake_experiments(monkeypatch):
    registry.discover()
    for name, run, spec in (
        ("fake", _fake_run, {"label": "the config's label"}),
        ("fake_cifar", _fake_cifar_run, {}),
        ("fake_buggy", _fake_buggy_run, {}),
    ):
        monkeypatch.setitem(registry._REGISTRY, name, _fake_experiment(name, (run, spec)))
    return registry.get("fake")


def _run_fake(out, **changes):
    exp = registry.get("fake")
    return registry.run_experiment(
        exp, dataclasses.replace(_FakeConfig(), **changes), out, echo=lambda *_: None
    )


def _snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _png_text_chunks(path: Path) -> dict:
    """The tEXt chunks of a PNG, read from the byte layout of the format."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"tEXt":
            key, _, value = data[pos + 8 : pos + 8 + length].partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length  # length, type, body, CRC
    return chunks


def test_interrupted_run_keeps_the_previous_complete_run_and_leaves_no_temp_files(
    tmp_path, fake_experiments
):
    first = _run_fake(tmp_path)
    before = _snapshot(tmp_path / "fake")
    with pytest.raises(KeyboardInterrupt):
        _run_fake(tmp_path, label="second", interrupt_after_first_figure=True)
    assert [p.name for p in tmp_path.iterdir()] == ["fake"]
    assert _snapshot(tmp_path / "fake") == before
    assert json.loads((tmp_path / "fake" / "metrics.json").read_text())["run_id"] == first["run_id"]


def test_interrupted_run_restores_the_signal_handlers_and_joins_its_progress_thread(
    tmp_path, fake_experiments
):
    # A simulated Ctrl-C must leave nothing behind that a later SIGINT (or the
    # end of the test session) would run into.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        _run_fake(tmp_path, interrupt_after_first_figure=True)
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert set(threading.enumerate()) <= threads


def test_complete_run_replaces_the_previous_run_whole(tmp_path, fake_experiments):
    _run_fake(tmp_path)
    second = _run_fake(tmp_path, label="second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake"]
    assert sorted(_snapshot(tmp_path / "fake")) == ["first.png", "metrics.json", "second.png"]
    metrics = json.loads((tmp_path / "fake" / "metrics.json").read_text())
    assert metrics["metrics"] == {"label": "second"}
    assert metrics["run_id"] == second["run_id"]


_SIGNAL_SCRIPT = textwrap.dedent("""
    import dataclasses, sys, time
    from experiments import registry, results
    from experiments.__main__ import main

    @dataclasses.dataclass(frozen=True)
    class Config:
        seed: int = 0

    def run(run):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1, 0])
        run.save_figure(fig, "first.png")
        print("WROTE", flush=True)
        time.sleep(60)
        raise AssertionError("the test should have stopped this run")

    registry._DISCOVERED = True          # run only this fake experiment
    fake = registry.Experiment("fake", Config, registry.Sizes(full={}, tiny={}))
    fake.part("only", "the only part", metrics={})(run)
    registry._REGISTRY["fake"] = fake
    sys.exit(main(["run", "fake", "--out", sys.argv[1]]))
""")


def _start_and_signal_after_first_figure(out: Path, signum: int):
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_SCRIPT, str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        for line in proc.stdout:
            if line.strip() == "WROTE":
                break
        else:
            pytest.fail(f"the run never wrote its first figure:\n{proc.stderr.read()}")
        staging = [p.name for p in out.iterdir() if ".staging-" in p.name]
        assert len(staging) == 1 and (out / staging[0] / "first.png").exists()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigterm_after_the_first_figure_keeps_the_previous_run_and_removes_staging(
    tmp_path, fake_experiments
):
    first = _run_fake(tmp_path)
    before = _snapshot(tmp_path / "fake")
    code, err = _start_and_signal_after_first_figure(tmp_path, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    assert "terminated by signal 15" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["fake"]
    assert _snapshot(tmp_path / "fake") == before
    assert json.loads(before["metrics.json"])["run_id"] == first["run_id"]


def test_staging_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path, fake_experiments):
    _run_fake(tmp_path)
    code, _ = _start_and_signal_after_first_figure(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert len(list(tmp_path.iterdir())) == 2  # SIGKILL cannot be cleaned up after
    third = _run_fake(tmp_path, label="third")
    assert [p.name for p in tmp_path.iterdir()] == ["fake"]
    assert json.loads((tmp_path / "fake" / "metrics.json").read_text())["run_id"] == third["run_id"]


def test_previous_run_renamed_aside_by_a_publisher_that_died_is_put_back(
    tmp_path, fake_experiments
):
    first = _run_fake(tmp_path)
    before = _snapshot(tmp_path / "fake")
    # The state a SIGKILL between publish's two renames leaves behind.
    aside = tmp_path / f".fake.old-{results.new_run_id()}"
    (tmp_path / "fake").rename(aside)
    with results.StagedRun(tmp_path / "fake"):
        pass  # opened, never published
    assert [p.name for p in tmp_path.iterdir()] == ["fake"]
    assert _snapshot(tmp_path / "fake") == before
    assert json.loads(before["metrics.json"])["run_id"] == first["run_id"]


def test_metrics_and_every_png_carry_the_same_run_id_and_the_manifest_matches(
    tmp_path, fake_experiments
):
    first = _run_fake(tmp_path)
    out = tmp_path / "fake"
    metrics = json.loads((out / "metrics.json").read_text())
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", metrics["run_id"])
    assert metrics["run_id"] == first["run_id"]
    for name in ("first.png", "second.png"):
        assert _png_text_chunks(out / name)["run_id"] == metrics["run_id"]
        data = (out / name).read_bytes()
        assert metrics["files"][name] == {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert set(metrics["files"]) == {"first.png", "second.png"}
    assert _run_fake(tmp_path)["run_id"] != first["run_id"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_result_files_and_directories_follow_the_umask(tmp_path, fake_experiments, umask):
    previous = os.umask(umask)
    try:
        _run_fake(tmp_path / "results")
        bench = results.write_benchmark(
            "demo", tmp_path / "results", {"x": 1}, results.benchmark_start()
        )
    finally:
        os.umask(previous)
    out = tmp_path / "results" / "fake"
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for name in ("first.png", "second.png", "metrics.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE(bench.stat().st_mode) == 0o666 & ~umask
    assert json.loads(bench.read_text())["run_id"]


# ------------------------------------------------------------------ CLI errors


def _single_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_out_below_a_regular_file_is_one_error_line_with_status_2(
    tmp_path, fake_experiments, capsys
):
    (tmp_path / "a_file").write_text("")
    code = main(["run", "fake", "--out", str(tmp_path / "a_file" / "results")])
    assert code == 2
    line = _single_error_line(capsys)
    assert "--out" in line and "a_file" in line and "NotADirectoryError" in line


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root may write into read-only directories"
)
def test_read_only_out_is_one_error_line_with_status_2(tmp_path, fake_experiments, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code = main(["run", "fake", "--out", str(locked)])
    finally:
        locked.chmod(0o700)
    assert code == 2
    assert "PermissionError" in _single_error_line(capsys)


def test_missing_data_dir_is_one_error_line_with_status_2(tmp_path, fake_experiments, capsys):
    code = main(
        ["run", "fake_cifar", "--out", str(tmp_path), "--data-dir", str(tmp_path / "nowhere")]
    )
    assert code == 2
    assert "--data-dir" in _single_error_line(capsys)


def test_dataset_missing_from_data_dir_is_one_error_line_with_status_2(
    tmp_path, fake_experiments, capsys
):
    (tmp_path / "data").mkdir()
    code = main(
        ["run", "fake_cifar", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data")]
    )
    assert code == 2
    line = _single_error_line(capsys)
    assert line.startswith("error: --data-dir:") and "data_batch_1" in line
    assert list((tmp_path / "out").iterdir()) == []


def test_unexpected_os_error_inside_an_experiment_keeps_its_traceback(tmp_path, fake_experiments):
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="nonexistent-ntk-test-dir"):
        main(
            [
                "run",
                "fake_buggy",
                "--out",
                str(tmp_path / "out"),
                "--data-dir",
                str(tmp_path / "data"),
            ]
        )
    assert list((tmp_path / "out").iterdir()) == []


# ------------------------------------------------------------------ the protocol


def test_a_size_that_changes_an_unknown_field_is_refused_at_registration():
    with pytest.raises(TypeError, match=r"tiny size changes unknown config field\(s\) \['widht'\]"):
        registry.Experiment("demo", _FakeConfig, registry.Sizes(full={}, tiny={"widht": 3}))


def test_a_smoke_size_that_skips_a_loop_is_refused_at_registration():
    sizes = registry.Sizes(full={}, tiny={}, smoke={"seed": 0})
    with pytest.raises(TypeError, match="cut loops to one iteration, not skip them; got seed=0"):
        registry.Experiment("demo", _FakeConfig, sizes)


def test_each_size_is_the_defaults_changed_by_its_declaration():
    exp = registry.Experiment(
        "demo", _FakeConfig, registry.Sizes(full={"label": "big"}, tiny={"label": "small"})
    )
    assert exp.config("quick") == _FakeConfig()
    assert exp.config("full").label == "big" and exp.config("tiny").label == "small"
    with pytest.raises(ValueError, match="size must be one of"):
        exp.config("huge")


def _metrics_part(metrics):
    return lambda run: registry.Result(metrics=metrics)


@pytest.mark.parametrize(
    "written, message",
    [
        ({"label": 1, "extra": 2}, "metric 'extra' is not declared"),
        ({}, r"declared metric\(s\) \['label'\] were not written"),
    ],
)
def test_a_part_writing_other_metrics_than_it_declares_fails_and_publishes_nothing(
    tmp_path, written, message
):
    exp = _fake_experiment("demo", (_metrics_part(written), {"label": "a label"}))
    with pytest.raises(ValueError, match=f"demo.part0: {message}"):
        registry.run_experiment(
            exp, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=io.StringIO()
        )
    assert list(tmp_path.iterdir()) == []


def test_nested_and_family_metric_specs_are_checked_to_the_leaf():
    spec = {"fit": {"slope": "s", "offset": "o"}, "ratio[*]": "per task"}
    registry.check_metrics(
        spec, {"fit": {"slope": 1, "offset": 2}, "ratio[a]": 1, "ratio[b, c]": 2}, "x"
    )
    with pytest.raises(ValueError, match=r"x.fit: declared metric\(s\) \['offset'\]"):
        registry.check_metrics(spec, {"fit": {"slope": 1}, "ratio[a]": 1}, "x")
    with pytest.raises(ValueError, match=r"\['ratio\[\*\]'\] were not written"):
        registry.check_metrics(spec, {"fit": {"slope": 1, "offset": 2}}, "x")


def test_parts_merge_their_metrics_and_two_parts_may_not_write_one_leaf(tmp_path):
    a = (_metrics_part({"fits": {"a": 1}}), {"fits": {"a": ""}})
    b = (_metrics_part({"fits": {"b": 2}}), {"fits": {"b": ""}})
    exp = _fake_experiment("demo", a, b)
    payload = registry.run_experiment(
        exp, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=io.StringIO()
    )
    assert payload["metrics"] == {"fits": {"a": 1, "b": 2}}
    clash = _fake_experiment("clash", a, a)
    with pytest.raises(ValueError, match="metric 'a' is written by two parts"):
        registry.run_experiment(
            clash, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=io.StringIO()
        )


def test_each_part_is_timed_and_its_bar_stays_with_its_time(tmp_path):
    def loop(run):
        for _ in run.progress(range(3), "step"):
            pass
        return registry.Result()

    stream = io.StringIO()
    exp = _fake_experiment("demo", (loop, {}), (lambda run: registry.Result(), {}))
    payload = registry.run_experiment(
        exp, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=stream
    )
    assert [p["name"] for p in payload["parts"]] == ["part0", "part1"]
    final = [line.rsplit("\r", 1)[-1] for line in stream.getvalue().split("\n")]
    assert re.search(r"demo \[1/2\] part 0 of demo.*3/3.*done in \d+\.\d s", final[0]), final
    assert re.search(r"demo \[2/2\] part 1 of demo.*1/1.*done in \d+\.\d s", final[1]), final


def test_a_long_call_inside_a_part_keeps_its_elapsed_time_ticking(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(registry, "_HEARTBEAT_S", 0.05)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    exp = _fake_experiment("demo", (lambda run: time.sleep(0.6) or registry.Result(), {}))
    registry.run_experiment(exp, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=stream)
    # one redraw when the bar opens and one when it closes; the rest are the heartbeat's
    assert stream.getvalue().count("\r") >= 5


def _chain_experiment(name="chain"):
    """Four parts: ``b`` reads what ``a`` leaves in ``run.state``; ``d`` needs ``b``."""

    def leave(run):
        run.state.a = 2
        return registry.Result(metrics={"a": 1})

    def read(key):
        return lambda run: registry.Result(metrics={key: run.state.a * 10})

    exp = registry.Experiment(name, _FakeConfig, registry.Sizes(full={}, tiny={}))
    exp.part("a", "leaves a", metrics={"a": ""})(leave)
    exp.part("b", "reads a", metrics={"b": ""}, needs=("a",))(read("b"))
    exp.part("c", "alone", metrics={"c": ""})(lambda run: registry.Result(metrics={"c": 3}))
    exp.part("d", "needs b", metrics={"d": ""}, needs="b")(read("d"))
    return exp


def test_selected_parts_run_after_the_parts_they_need_and_only_those(tmp_path):
    exp = _chain_experiment()
    assert [p.name for p in exp.select(["d"])] == ["a", "b", "d"]
    assert [p.name for p in exp.select(["c", "b"])] == ["a", "b", "c"]
    payload = registry.run_experiment(
        exp, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=io.StringIO(), parts=["d"]
    )
    assert [p["name"] for p in payload["parts"]] == ["a", "b", "d"]
    assert payload["metrics"] == {"a": 1, "b": 20, "d": 20}


def test_an_unknown_part_or_a_need_not_declared_before_is_refused_by_name():
    exp = _chain_experiment()
    with pytest.raises(
        ValueError, match=r"--parts: chain has the parts \['a', 'b', 'c', 'd'\]; got 'e'"
    ):
        exp.select(["b", "e"])
    with pytest.raises(ValueError, match="--parts: expected a non-empty list"):
        exp.select([])
    with pytest.raises(ValueError, match=r"chain.e: needs: .*\['a', 'b', 'c', 'd'\]; got 'f'"):
        exp.part("e", "needs a later part", metrics={}, needs=("f",))


def test_run_parts_records_the_selection_in_the_size_and_refuses_run_all(
    tmp_path, monkeypatch, capsys
):
    registry.discover()
    monkeypatch.setitem(registry._REGISTRY, "chain", _chain_experiment())
    assert main(["run", "chain", "--parts", "b", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "chain" / "metrics.json").read_text())
    assert payload["size"] == "quick --parts b"
    assert [p["name"] for p in payload["parts"]] == ["a", "b"]
    capsys.readouterr()
    assert main(["run", "all", "--parts", "b", "--out", str(tmp_path)]) == 2
    assert "--parts: selects parts of one experiment" in _single_error_line(capsys)
    assert main(["run", "chain", "--parts", "x", "--out", str(tmp_path)]) == 2
    assert "--parts: chain has the parts" in _single_error_line(capsys)


def test_a_real_part_run_alone_brings_in_the_parts_whose_state_it_reads(tmp_path):
    """The sampled part of giapitzakis25 reads the theory and enumerated parts'
    state: run alone at tiny size, its declared needs must bring them in."""
    exp = registry.get("giapitzakis25")
    payload = registry.run_experiment(
        exp,
        exp.config("tiny"),
        tmp_path,
        size="tiny",
        echo=lambda *_: None,
        stream=io.StringIO(),
        parts=["sampled"],
    )
    assert [p["name"] for p in payload["parts"]] == ["theory", "enumerated", "sampled"]


def test_comparison_marks_follow_their_stated_rules():
    c = results.comparison
    assert c("q", -0.5, -0.45, within=0.1)["mark"] == "agree"
    assert c("q", -0.5, -0.65, within=0.1)["mark"] == "differs"
    assert c("q", -0.5, float("nan"), within=0.1)["mark"] == "differs"
    assert c("q", 100.0, 108.0, rel=0.1)["mark"] == "agree"
    assert c("q", 100.0, 112.0, rel=0.1)["rule"] == "|ours/paper − 1| ≤ 0.1"
    assert c("q", 100.0, 112.0, rel=0.1)["mark"] == "differs"
    assert c("q", "shrinks", "0.3 vs 0.1", holds=True, rule="b < a")["mark"] == "agree"
    assert c("q", "shrinks", "0.1 vs 0.3", holds=False, rule="b < a")["mark"] == "differs"
    row = c("q", 43.3, 61.9, not_comparable="other corpus")
    assert row["mark"] == "not comparable" and "other corpus" in row["rule"]


def test_comparison_keeps_paper_theory_and_ours_apart_and_checks_the_named_reference():
    c = results.comparison
    row = c("slope", "no rate stated", -0.46, theory=-0.5, against="theory", within=0.1)
    assert (row["paper"], row["theory"], row["ours"]) == ("no rate stated", -0.5, -0.46)
    assert row["mark"] == "agree" and row["rule"] == "|ours − theory| ≤ 0.1"
    # the same ours against the paper's number instead: far from it, so it differs
    row = c("slope", -0.9, -0.46, theory=-0.5, within=0.1)
    assert row["mark"] == "differs" and row["rule"] == "|ours − paper| ≤ 0.1"
    assert c("q", 10.0, 10.5, theory=20.0, against="theory", rel=0.1)["mark"] == "differs"
    assert c("q", "claim", 0.3, holds=True, rule="r")["theory"] is None


def test_comparison_against_a_missing_theory_or_unknown_reference_is_refused():
    with pytest.raises(TypeError, match="theory=None"):
        results.comparison("q", 0.5, 0.4, against="theory", within=0.1)
    with pytest.raises(ValueError, match="against= must be 'paper' or 'theory'"):
        results.comparison("q", 0.5, 0.4, against="both", within=0.1)


def test_printed_table_has_paper_theory_and_ours_columns_in_order():
    rows = [
        results.comparison("slope", "claim", -0.46, "n", theory=-0.5, against="theory", within=0.1),
        results.comparison("acc", 66.42, 64.0, within=3.0),
    ]
    lines = results.format_comparison(rows).splitlines()
    head = lines[0].split()
    assert head == ["mark", "quantity", "paper", "theory", "ours", "rule", "note"]
    # each value starts in its own column, under its header
    for line, (paper, theory, ours) in zip(
        lines[2:], (("claim", "-0.5", "-0.46"), ("66.42", "—", "64"))
    ):
        for header, value in (("paper", paper), ("theory", theory), ("ours", ours)):
            assert line[lines[0].index(header) :].startswith(value), (header, line)


def test_a_row_without_theory_is_not_a_comparison_row():
    row = results.comparison("q", 0.5, 0.4, within=0.1)
    del row["theory"]
    with pytest.raises(ValueError, match="theory"):
        results.check_row(row, "x.part")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of"),
        ({"within": 0.1, "holds": True}, "exactly one of"),
        ({"within": 0.1, "ours": "0.3 vs 0.1"}, "compare numbers"),
        ({"holds": True}, "needs rule="),
        ({"holds": 1, "rule": "r"}, "must be a bool"),
    ],
)
def test_comparison_without_exactly_one_valid_check_is_a_type_error(kwargs, message):
    args = {"ours": 0.4, **kwargs}
    ours = args.pop("ours")
    with pytest.raises(TypeError, match=message):
        results.comparison("q", 0.5, ours, **args)


def test_old_name_perm25_reaches_giapitzakis25_with_a_deprecation_note(capsys):
    with pytest.warns(DeprecationWarning, match="'perm25' is now called 'giapitzakis25'"):
        assert registry.get("perm25") is registry.get("giapitzakis25")
    assert "perm25" not in registry.names()
    # the CLI resolves the alias first: the error names the new experiment
    assert main(["run", "perm25", "--data-dir", "/nowhere"]) == 2
    err = capsys.readouterr().err
    assert "note: experiment 'perm25' is now called 'giapitzakis25'" in err
    assert "giapitzakis25 uses only offline data" in err


# ------------------------------------------------------------------ the report


class _Page(html.parser.HTMLParser):
    """Collects the tags, image sources, links and text of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.hrefs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag in ("img", "script"):
            self.srcs.append(attrs.get("src", ""))
        if tag == "link" or "href" in attrs:
            self.hrefs.append(attrs.get("href", ""))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """REPORT.md and index.html of the session's tiny runs of every experiment."""
    payloads = {name: tiny_run(name, tmp_path_factory)[1] for name in registry.names()}
    root = results_root(tmp_path_factory)
    assert main(["report", "--out", str(root)]) == 0
    return root, payloads


def test_report_markdown_has_every_experiment_table_and_existing_figures(tiny_report):
    root, payloads = tiny_report
    md = (root / "REPORT.md").read_text()
    for name, p in payloads.items():
        assert f"\n## {name}\n" in md
        assert f"| [{name}](#{name}) | " in md and "not run" not in md
        for figure in p["figures"]:
            assert f"]({name}/{figure})" in md
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert links and all((root / link).is_file() for link in links)
    rows = sum(len(p["paper_vs_ours"]) for p in payloads.values())
    marked = re.findall(r"^\| (✓ agree|✗ differs|– not comparable) \|", md, re.M)
    assert len(marked) == rows


def test_report_tables_give_paper_theory_and_ours_their_own_columns(tiny_report):
    root, payloads = tiny_report
    md = (root / "REPORT.md").read_text()
    header = "| mark | quantity | paper | theory | ours | rule | note |"
    assert md.count(header) == len(payloads)
    page = (root / "index.html").read_text()
    assert page.count("<th>paper</th><th>theory</th><th>ours</th>") == len(payloads)
    # every row of every table: paper, theory and ours in adjacent cells, in that order
    cell = lambda v: results.format_value(v).replace("|", "\\|").replace("\n", " ")
    for p in payloads.values():
        for r in p["paper_vs_ours"]:
            theory = "—" if r["theory"] is None else r["theory"]
            expected = f"| {cell(r['paper'])} | {cell(theory)} | {cell(r['ours'])} |"
            assert expected in md, expected


def test_report_html_parses_and_embeds_every_figure_offline(tiny_report):
    root, payloads = tiny_report
    page = _Page()
    page.feed((root / "index.html").read_text())
    page.close()
    assert page.tags[:1] == ["html"] and "script" not in page.tags
    figures = sum(len(p["figures"]) for p in payloads.values())
    assert len(page.srcs) == figures
    assert all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert all(h.startswith("#") for h in page.hrefs)  # nothing to fetch
    text = "".join(page.text)
    for name, p in payloads.items():
        assert p["versions"]["jax"] in text and p["run_id"] in text


def test_report_lists_an_experiment_without_a_run_as_not_run(tmp_path):
    md, page = report.write(tmp_path)
    assert md.read_text().count("| not run |") == len(registry.names())
    assert "not run" in page.read_text()


def test_run_all_ends_by_writing_the_report(tmp_path, fake_experiments, monkeypatch):
    monkeypatch.setattr(registry, "names", lambda: ["fake"])
    assert main(["run", "all", "--out", str(tmp_path)]) == 0
    assert "## fake" in (tmp_path / "REPORT.md").read_text()
    assert "first.png" in (tmp_path / "index.html").read_text()


def test_report_of_a_missing_directory_is_one_error_line(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in _single_error_line(capsys)


def test_a_run_records_the_commit_it_started_from_not_the_one_at_its_end(tmp_path, monkeypatch):
    head = {"commit": "started-here"}

    def part(run):
        head["commit"] = "committed-during-the-run"
        return registry.Result()

    monkeypatch.setattr(results, "git_commit", lambda repo=None: head["commit"])
    exp = _fake_experiment("demo", (part, {}))
    payload = registry.run_experiment(
        exp, _FakeConfig(), tmp_path, echo=lambda *_: None, stream=io.StringIO()
    )
    assert payload["git_commit"] == "started-here"
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["git_commit"] == (
        "started-here"
    )


def test_a_benchmark_records_the_commit_and_load_it_started_with(tmp_path, monkeypatch):
    machine = {"commit": "started-here", "load": (0.1, 0.2, 0.3)}
    monkeypatch.setattr(results, "git_commit", lambda repo=None: machine["commit"])
    monkeypatch.setattr(results.os, "getloadavg", lambda: machine["load"])
    start = results.benchmark_start()
    machine.update(commit="committed-while-timing", load=(2.0, 2.0, 2.0))
    record = json.loads(results.write_benchmark("demo", tmp_path, {"x": 1}, start).read_text())
    assert record["git_commit"] == "started-here"
    assert record["load_average_at_start"] == [0.1, 0.2, 0.3]
    assert record["x"] == 1 and record["benchmark"] == "demo"
