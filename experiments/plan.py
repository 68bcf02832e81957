"""What an experiment will cost, from XLA's ahead-of-time analysis, without running it.

``python -m experiments plan NAME [--tiny|--full]`` lists, per part of the
experiment, the jitted computations that dominate it (`Step`): their
arguments' shapes, how many times the part calls them, the FLOPs and bytes
XLA's cost analysis gives for one call, the peak memory of one call from its
memory analysis, and an estimated time on the current device. Nothing is
executed: each step is lowered from abstract arguments
(`jax.ShapeDtypeStruct`) and compiled, public JAX API only::

    compiled = jax.jit(step.fn).lower(*step.args).compile()
    compiled.cost_analysis()["flops"], compiled.memory_analysis()

The estimate is a roofline: one call takes ``max(F / P, B / W)`` seconds,
``F`` its FLOPs, ``B`` its bytes accessed, ``P`` the device's measured
matmul throughput (FLOP/s) and ``W`` its measured memory bandwidth (bytes/s),
both probed at plan time (`measure`); a step then costs ``count`` calls.
XLA counts a loop's body once (a ``lax.scan`` of 1000 steps costs what one
step costs), so a step is planned per iteration with ``count`` multiplying
it; a step whose program still holds a loop (one inside a library call) is
marked ``*`` in the table, one that calls a LAPACK/cuSOLVER routine (eigh,
Cholesky, QR: custom calls XLA does not count) ``+``, its FLOPs and time
then lower bounds. The peak memory
is the executable's arguments + outputs + temporaries. What runs outside jit (numpy data loading and preprocessing, LAPACK
calls on the host, plotting) is not covered; each part's plan says what it
leaves out.

An experiment attaches a plan to a part with ``@EXPERIMENT.plan(name)``::

    @EXPERIMENT.plan("fig1", not_covered="numpy post-processing")
    def fig1_plan(config) -> list[Step]:
        x = jax.ShapeDtypeStruct((config.points, 2), jnp.float32)
        return [Step("kernel", kernel, (x, x), count=config.inits)]
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp

F32 = jnp.float32


def shaped(shape: Sequence[int], dtype=F32) -> jax.ShapeDtypeStruct:
    """An abstract array of ``shape`` (a tuple of ints) and ``dtype`` (default float32)."""
    return jax.ShapeDtypeStruct(tuple(int(s) for s in shape), jnp.dtype(dtype))


def abstract(fn: Callable, *args, **kwargs):
    """The abstract (ShapeDtypeStruct) pytree ``fn(*args)`` returns, without running it.

    For a parameter pytree: ``abstract(init_fn, key, input_shape)[1]``.
    """
    return jax.eval_shape(fn, *args, **kwargs)


KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)
"""An abstract legacy PRNG key (``jax.random.PRNGKey``'s shape and dtype)."""


def abstract_params(init_fn: Callable, input_shape: Sequence[int]):
    """The abstract parameters ``init_fn(key, input_shape)[1]`` of a stax network."""
    return jax.eval_shape(lambda k: init_fn(k, tuple(input_shape))[1], KEY)


@dataclasses.dataclass(frozen=True)
class Step:
    """One jitted computation of a part, called ``count`` times.

    ``fn(*args)`` must be jittable; ``args`` are pytrees of
    `jax.ShapeDtypeStruct` (Python scalars among them are traced as scalars,
    as ``jax.jit`` does). ``label`` names it in the plan (``GD step
    n=10000``); ``count`` is how many times the part calls it. A step with a
    float64 argument is lowered in JAX's x64 mode (`analyse`), as its part
    runs, so that it is not traced as float32.
    """

    label: str
    fn: Callable
    args: tuple
    count: int = 1

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise TypeError(f"Step: label must be a non-empty str; got {self.label!r}.")
        if not callable(self.fn):
            raise TypeError(
                f"Step {self.label!r}: fn must be callable; got {type(self.fn).__name__}."
            )
        if not isinstance(self.args, tuple):
            raise TypeError(
                f"Step {self.label!r}: args must be a tuple of abstract "
                f"arrays; got {type(self.args).__name__}."
            )
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"Step {self.label!r}: count must be an int >= 0; got {self.count!r}.")


@dataclasses.dataclass(frozen=True)
class Cost:
    """XLA's analysis of one call of a step: FLOPs, bytes accessed, peak memory (bytes).

    ``loop``: the program keeps a loop whose body is counted once;
    ``library``: it calls a library routine (a custom call: LAPACK's or
    cuSOLVER's eigh, Cholesky, QR) whose work XLA does not count. Either makes
    the FLOPs and the time lower bounds.
    """

    flops: float
    bytes_accessed: float
    peak_bytes: float
    known: bool = True
    loop: bool = False
    library: bool = False


@dataclasses.dataclass(frozen=True)
class Throughput:
    """The device's matmul throughput (FLOP/s) and memory bandwidth (bytes/s)."""

    flops_per_s: float
    bytes_per_s: float
    device: str

    def seconds(self, cost: Cost, count: int = 1) -> float:
        """Roofline estimate of ``count`` calls: ``count · max(F/P, B/W)``."""
        return count * max(cost.flops / self.flops_per_s, cost.bytes_accessed / self.bytes_per_s)


def analyse(step: Step) -> Cost:
    """Lower and compile ``step`` from its abstract args (nothing runs); its `Cost`.

    FLOPs and bytes are XLA's cost analysis of one call; the peak memory is
    the compiled executable's (arguments, outputs and temporaries live at
    once), from its memory analysis.
    """
    x64 = any(
        getattr(leaf, "dtype", None) == jnp.float64 for leaf in jax.tree_util.tree_leaves(step.args)
    )
    with jax.enable_x64(True) if x64 else contextlib.nullcontext():
        compiled = jax.jit(step.fn).lower(*step.args).compile()
    cost: Any = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
        cost = cost[0] if cost else {}
    cost = cost or {}
    mem = compiled.memory_analysis()
    # arguments + outputs + the temporaries' buffer assignment (outputs that
    # alias inputs counted once); the stats' own peak_memory_in_bytes is not
    # filled in by every backend
    peak = (
        0.0
        if mem is None
        else float(
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    )
    # XLA reports a negative count for what it cannot see into (a LAPACK custom
    # call): counted as 0 and shown as "n/a"
    flops, moved = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    text = _hlo_text(compiled)
    return Cost(
        flops=max(flops, 0.0),
        bytes_accessed=max(moved, 0.0),
        peak_bytes=peak,
        known=flops >= 0,
        loop=bool(re.search(r"\swhile\(", text)),
        library=bool(re.search(r"\scustom-call\(", text)),
    )


def _hlo_text(compiled) -> str:
    """The compiled program's HLO text ("" on a backend that has none)."""
    try:
        return compiled.as_text() or ""
    except Exception:  # noqa: BLE001 - no text: no flags
        return ""


def trace(step: Step):
    """Trace ``step`` abstractly (``jax.eval_shape``): its output shapes; a shape or
    dtype error in the plan surfaces here, without compiling."""
    return jax.eval_shape(step.fn, *step.args)


def measure(n: int = 1024, elements: int = 1 << 23, repeats: int = 3) -> Throughput:
    """Probe the default device: float32 ``n × n`` matmuls (2n³ FLOPs each) and an
    elementwise ``a·x + 1`` over ``elements`` floats (8 bytes moved per element);
    the best of ``repeats`` timed calls after a warm-up call."""
    dev = jax.devices()[0]
    a = jnp.ones((n, n), F32)
    x = jnp.ones((elements,), F32)
    matmul = jax.jit(lambda a: a @ a)
    axpy = jax.jit(lambda x: 1.0001 * x + 1.0)

    def best(f, arg) -> float:
        f(arg).block_until_ready()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            f(arg).block_until_ready()
            times.append(time.perf_counter() - start)
        return max(min(times), 1e-9)

    return Throughput(
        flops_per_s=2 * n**3 / best(matmul, a),
        bytes_per_s=8 * elements / best(axpy, x),
        device=_device_name(dev),
    )


def _device_name(dev) -> str:
    kind = str(getattr(dev, "device_kind", "") or "")
    return dev.platform if kind.lower() in ("", dev.platform) else f"{dev.platform} ({kind})"


# ------------------------------------------------------------------ plans of experiments


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """A step with its cost: what `plan_experiment` reports per step."""

    part: str
    step: Step
    cost: Cost
    seconds: float

    @property
    def total_flops(self) -> float:
        return self.cost.flops * self.step.count


@dataclasses.dataclass(frozen=True)
class PartPlan:
    name: str
    title: str
    steps: tuple[StepPlan, ...]
    not_covered: str

    @property
    def flops(self) -> float:
        return sum(s.total_flops for s in self.steps)

    @property
    def peak_bytes(self) -> float:
        return max((s.cost.peak_bytes for s in self.steps), default=0.0)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


def part_steps(experiment, part_name: str, config) -> list[Step]:
    """The steps ``experiment``'s plan for ``part_name`` lists at ``config``."""
    entry = experiment.plans.get(part_name)
    if entry is None:
        raise ValueError(
            f"{experiment.name}: part {part_name!r} has no plan; planned: "
            f"{sorted(experiment.plans)}."
        )
    steps = list(entry.fn(config))
    for s in steps:
        if not isinstance(s, Step):
            raise TypeError(
                f"{experiment.name}.{part_name}: a plan must return plan.Step "
                f"items; got {type(s).__name__}."
            )
    return steps


def plan_experiment(
    experiment,
    config,
    throughput: Throughput,
    progress: Optional[Callable[[str], None]] = None,
    parts: Optional[Sequence[str]] = None,
) -> list[PartPlan]:
    """Analyse every part's steps at ``config`` (compiling, never running them);
    ``parts``: only those and the parts they need (`registry.Experiment.select`)."""
    out = []
    for part in experiment.select(parts):
        entry = experiment.plans.get(part.name)
        if entry is None:
            out.append(PartPlan(part.name, part.title, (), "everything: this part has no plan"))
            continue
        planned = []
        for step in part_steps(experiment, part.name, config):
            if progress is not None:
                progress(f"{part.name}: {step.label}")
            cost = analyse(step)
            planned.append(StepPlan(part.name, step, cost, throughput.seconds(cost, step.count)))
        out.append(PartPlan(part.name, part.title, tuple(planned), entry.not_covered))
    return out


# ------------------------------------------------------------------ formatting


def describe_args(args, limit: int = 3) -> str:
    """``f32[10,2], f32[10,1]``; a long pytree (parameters) shows its first
    ``limit`` leaves and the count and total size of the rest."""
    leaves = [x for x in jax.tree_util.tree_leaves(args) if hasattr(x, "shape")]

    def one(x) -> str:
        kind = jnp.dtype(x.dtype).name
        for long, short in (("float", "f"), ("uint", "u"), ("int", "i")):
            kind = kind.replace(long, short)
        return f"{kind}[{','.join(map(str, x.shape))}]"

    head = ", ".join(one(x) for x in leaves[:limit])
    rest = leaves[limit:]
    if rest:
        size = sum(math.prod(x.shape) for x in rest)
        head += f", +{len(rest)} more ({human(size, '')} elements)"
    return head or "(no arrays)"


def human(value: float, unit: str) -> str:
    """``1.2 G`` + unit: a number with an SI prefix (no prefix below 1000)."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def format_plan(experiment, size: str, parts: list[PartPlan], throughput: Throughput) -> str:
    """The table ``python -m experiments plan`` prints: a header, per part its
    steps and a total row, then the experiment's totals."""
    lines = [
        f"== plan of {experiment.name} ({size}) on {throughput.device}: "
        f"matmul {human(throughput.flops_per_s, 'FLOP/s')}, memory "
        f"{human(throughput.bytes_per_s, 'B/s')} (measured now); "
        f"time = calls × max(FLOPs / matmul rate, bytes / memory rate)"
    ]
    head = (
        f"  {'step':<34} {'calls':>7} {'FLOPs/call':>11} {'FLOPs':>10} {'peak mem':>9} "
        f"{'est. time':>10}  args"
    )
    for i, p in enumerate(parts, 1):
        lines += ["", f"[{i}/{len(parts)}] {p.name}: {p.title}", head]
        for s in p.steps:
            mark = ("*" if s.cost.loop else "") + ("+" if s.cost.library else "")
            mark = mark or " "
            lines.append(
                f" {mark}{s.step.label[:34]:<34} {s.step.count:>7} "
                f"{human(s.cost.flops, '') if s.cost.known else 'n/a':>11} "
                f"{human(s.total_flops, '') if s.cost.known else 'n/a':>10} "
                f"{human(s.cost.peak_bytes, 'B'):>9} {duration(s.seconds):>10}  "
                f"{describe_args(s.step.args)}"
            )
        if any(s.cost.loop for s in p.steps):
            lines.append(
                "  * keeps a loop (lax.scan / map / while) that XLA's cost analysis "
                "counts once: FLOPs and time are a lower bound"
            )
        if any(s.cost.library for s in p.steps):
            lines.append(
                "  + calls a library routine (eigh, Cholesky, QR: a custom call) whose "
                "work XLA's cost analysis does not count: FLOPs and time are a lower "
                "bound"
            )
        lines.append(
            f"  part {p.name}: {human(p.flops, 'FLOPs')}, peak "
            f"{human(p.peak_bytes, 'B')}, est. {duration(p.seconds)}"
        )
        if p.not_covered:
            lines.append(f"  not covered: {p.not_covered}")
    flops = sum(p.flops for p in parts)
    peak = max((p.peak_bytes for p in parts), default=0.0)
    secs = sum(p.seconds for p in parts)
    lines += [
        "",
        f"total {experiment.name} ({size}): {human(flops, 'FLOPs')}, peak memory "
        f"{human(peak, 'B')} (largest single step), est. {duration(secs)} on "
        f"{throughput.device}",
    ]
    return "\n".join(lines)


def totals(parts: list[PartPlan]) -> dict:
    """FLOPs, peak bytes and estimated seconds of a whole plan."""
    return {
        "flops": float(sum(p.flops for p in parts)),
        "peak_bytes": float(max((p.peak_bytes for p in parts), default=0.0)),
        "seconds": float(sum(p.seconds for p in parts)),
    }
