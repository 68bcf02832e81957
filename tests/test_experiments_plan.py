"""`experiments.plan`: XLA's ahead-of-time costs of an experiment's steps, without running them.

The analysis is checked against closed forms (a matmul's 2·m·n·k FLOPs, the
bytes of its arguments and output), the roofline estimate against its
formula, and every registered experiment's plan at every size is traced
(full) or built (tiny, quick) with the parts' functions replaced by ones
that fail, so a plan that runs a stage, or whose shapes do not fit at the
full size, fails here.
"""

from __future__ import annotations

import dataclasses
import io
import re
from contextlib import redirect_stdout

import jax.numpy as jnp
import pytest

from experiments import plan, registry
from experiments.__main__ import main


def _matmul_step(m=64, n=48, k=32, count=5):
    return plan.Step(
        "matmul", lambda a, b: a @ b, (plan.shaped((m, k)), plan.shaped((k, n))), count=count
    )


def test_matmul_flops_are_two_m_n_k():
    m, n, k = 64, 48, 32
    cost = plan.analyse(_matmul_step(m, n, k))
    assert cost.flops == 2 * m * n * k
    assert cost.known and not cost.loop and not cost.library


def test_matmul_memory_holds_its_arguments_and_output():
    m, n, k = 64, 48, 32
    cost = plan.analyse(_matmul_step(m, n, k))
    # float32: the two arguments and the output must be live at once; the
    # temporaries of a plain dot are small next to them (< one more output)
    floor = 4 * (m * k + k * n + m * n)
    assert floor <= cost.peak_bytes <= floor + 4 * m * n


def test_scan_is_flagged_as_a_loop_counted_once():
    def body(x):
        return jnp.tanh(x @ x)

    one = plan.analyse(plan.Step("one", body, (plan.shaped((32, 32)),)))
    looped = plan.analyse(
        plan.Step(
            "scan",
            lambda x: __import__("jax").lax.scan(lambda c, _: (body(c), None), x, None, length=7)[
                0
            ],
            (plan.shaped((32, 32)),),
        )
    )
    assert looped.loop and not one.loop
    # XLA counts the body once, not seven times: why plans count steps themselves
    assert looped.flops < 2 * one.flops


def test_decomposition_is_flagged_as_an_uncounted_library_call():
    # eigh runs as a LAPACK custom call on CPU: XLA's count misses its ~n³ work
    cost = plan.analyse(
        plan.Step("eigh", lambda a: jnp.linalg.eigh(a)[0], (plan.shaped((64, 64)),))
    )
    assert cost.library
    assert not plan.analyse(_matmul_step()).library


def test_roofline_time_is_count_times_the_slower_bound():
    tp = plan.Throughput(flops_per_s=1e9, bytes_per_s=1e8, device="test")
    cost = plan.Cost(flops=2e9, bytes_accessed=1e8, peak_bytes=0)
    assert tp.seconds(cost, 3) == pytest.approx(3 * max(2.0, 1.0))
    cost = plan.Cost(flops=1e6, bytes_accessed=5e8, peak_bytes=0)
    assert tp.seconds(cost, 2) == pytest.approx(2 * 5.0)


def test_step_rejects_bad_arguments_by_name():
    with pytest.raises(TypeError, match="args must be a tuple"):
        plan.Step("x", lambda a: a, [plan.shaped((2,))])
    with pytest.raises(ValueError, match="count must be an int >= 0; got -1"):
        plan.Step("x", lambda a: a, (plan.shaped((2,)),), count=-1)
    with pytest.raises(TypeError, match="fn must be callable"):
        plan.Step("x", None, ())


def _failing_parts(exp):
    def boom(run):
        raise AssertionError(f"{exp.name}: plan ran a part")

    return [dataclasses.replace(p, fn=boom) for p in exp.parts]


@pytest.mark.parametrize("name", registry.names())
def test_every_part_has_a_plan_at_every_size_that_traces_at_full_without_running(name, monkeypatch):
    exp = registry.get(name)
    assert set(exp.plans) == {p.name for p in exp.parts}
    monkeypatch.setattr(exp, "parts", _failing_parts(exp))
    for size in registry.SIZES:
        config = exp.config(size)
        for part in exp.parts:
            for step in plan.part_steps(exp, part.name, config):
                assert isinstance(step, plan.Step) and step.count >= 0
                # abstract tracing (shapes and dtypes, nothing computed) of the
                # size a GPU/TPU run uses; the others only build their steps,
                # which keeps the test within the suite's budget
                if size == "full":
                    plan.trace(step)


def _plan_cli(monkeypatch, *args) -> str:
    """stdout of ``plan giapitzakis25 ARGS`` with parts that may not run and a
    fixed throughput (fast, and the estimate checkable)."""
    exp = registry.get("giapitzakis25")
    monkeypatch.setattr(exp, "parts", _failing_parts(exp))
    monkeypatch.setattr(plan, "measure", lambda: plan.Throughput(1e10, 1e10, "test"))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["plan", "giapitzakis25", *args]) == 0
    return out.getvalue()


def test_cli_plan_prints_a_row_per_part_and_a_total(monkeypatch):
    text = _plan_cli(monkeypatch, "--tiny")
    for part in registry.get("giapitzakis25").parts:
        assert f"] {part.name}: " in text
        assert f"  part {part.name}: " in text
    assert "total giapitzakis25 (tiny)" in text
    assert "not covered:" in text


def test_cli_plan_of_selected_parts_prints_them_and_the_parts_they_need(monkeypatch):
    text = _plan_cli(monkeypatch, "--tiny", "--parts", "sampled")
    assert set(re.findall(r"  part (\w+): ", text)) == {"theory", "enumerated", "sampled"}


def test_cli_smoke_needs_full():
    assert main(["plan", "jacot18", "--tiny", "--smoke"]) == 2
    assert main(["run", "jacot18", "--smoke"]) == 2


def test_smoke_changes_only_declared_fields_on_top_of_full():
    for name in registry.names():
        exp = registry.get(name)
        full, smoke = exp.config("full"), exp.config("full", smoke=True)
        changed = {
            f.name
            for f in dataclasses.fields(full)
            if getattr(full, f.name) != getattr(smoke, f.name)
        }
        assert changed <= set(exp.sizes.smoke), name
    with pytest.raises(ValueError, match="smoke applies to the full size only"):
        registry.get("jacot18").config("quick", smoke=True)
