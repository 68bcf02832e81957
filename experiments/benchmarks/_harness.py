"""Timing harness shared by both sides of `experiments.benchmarks.kernels`
(and the float32 accuracy of `experiments.benchmarks.precision`: `precision_all`).

It imports only numpy and jax, so the same code times ntk (in-process) and
neural-tangents (run as a script in NT's reference environment, Python 3.11 +
jax 0.4.25): same inputs, same jit, same warm-up and the same median. As a
script it reads a JSON spec on stdin, builds each workload with
``neural_tangents.stax`` and prints one line ``BENCH_JSON <json>``.

A workload is ``{"layers": [[name, args, kwargs], ...], "input_shape": [...]}``;
``build(stax, layers)`` calls ``stax.serial(*(getattr(stax, name)(*args,
**kwargs)))`` — both libraries share these layer names and arguments. A
workload with a ``"graph"`` entry gets a batch of random padded graphs
(`make_graph`) passed as ``pattern=`` and ``mask_constant=``. A workload
``{"myrtle": depth, ...}`` is the Myrtle network (`build_myrtle`).

Every timing records the wall time and the process CPU time (all threads)
of each call; the medians are reported.

The ntk side of the benchmarks also shares `run_nt` (a script under NT's
python, a JSON spec in and one marked JSON line out) and `write_payload`
(the JSON record with the NT environment's provenance); neither runs in NT's
environment.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MARKER = "BENCH_JSON "
DEFAULT_NT_PYTHON = "/work/envs/ntref/bin/python"


def resolve_nt_python(arg: str | None) -> str:
    """NT's python: ``arg``, else ``$NT_PYTHON``, else `DEFAULT_NT_PYTHON`."""
    return arg or os.environ.get("NT_PYTHON") or DEFAULT_NT_PYTHON


def benchmark_parser(name: str, doc: str):
    """The command line every NT-comparing benchmark shares: ``--nt-python``,
    ``--seed``, ``--out`` (``python -m experiments.benchmarks.NAME``; the
    description is ``doc``'s first paragraph)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.benchmarks.{name}", description=doc.split("\n\n")[0]
    )
    parser.add_argument(
        "--nt-python",
        default=None,
        help=f"NT env's python (default: $NT_PYTHON or {DEFAULT_NT_PYTHON})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results", help=f"writes OUT/benchmarks/{name}.json")
    return parser


def mlp(block, depth):
    """``depth`` copies of the layer records ``block``, then a ``Dense(1)`` readout."""
    return [layer for _ in range(depth) for layer in block] + [["Dense", [1], {}]]


def make_input(shape, seed):
    """Standard normal float32 inputs, identical in both environments."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def make_graph(spec, x, seed):
    """Random undirected graphs with self-loops for inputs ``x (N, V, C)``.

    ``spec``: ``{"min_nodes", "degree", "format": "dense" | "sparse",
    "mask_constant"}``. Graph ``n`` has ``size_n ~ U{min_nodes..V}`` nodes;
    the features of the others are set to ``mask_constant`` (padding). Arcs
    join real nodes with probability ``degree / size_n`` (both directions),
    plus a self-loop at every real node. Returns ``(x, kernel_fn kwargs)``:
    a dense ``(N, V, V)`` adjacency or an ``(N, E, 2)`` edge list padded
    with -1, as ``pattern=(p, p)``.
    """
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    n, v = x.shape[0], x.shape[1]
    sizes = rng.integers(spec["min_nodes"], v + 1, n)
    real = np.arange(v)[None, :] < sizes[:, None]
    x = np.where(real[..., None], x, np.float32(spec["mask_constant"]))
    upper = np.triu(rng.random((n, v, v)) < spec["degree"] / sizes[:, None, None], 1)
    adjacency = (
        (upper | upper.transpose(0, 2, 1) | np.eye(v, dtype=bool))
        & real[:, :, None]
        & real[:, None, :]
    )
    if spec["format"] == "dense":
        pattern = adjacency.astype(np.float32)
    else:
        n_edges = int(adjacency.sum((1, 2)).max())
        pattern = -np.ones((n, n_edges, 2), np.int32)
        for i in range(n):
            tails, heads = np.nonzero(adjacency[i])
            pattern[i, : len(tails), 0], pattern[i, : len(tails), 1] = tails, heads
    return x, {"pattern": (pattern, pattern), "mask_constant": float(spec["mask_constant"])}


def build(stax, layers):
    """``stax.serial`` of the named layers; list arguments become tuples."""

    def tup(v):
        return tuple(v) if isinstance(v, list) else v

    made = []
    for name, args, kwargs in layers:
        made.append(
            getattr(stax, name)(*[tup(a) for a in args], **{k: tup(v) for k, v in kwargs.items()})
        )
    return stax.serial(*made)


MYRTLE_FACTORS = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}


def build_myrtle(stax, depth, input_shape):
    """NT's README ``MyrtleNetwork(depth)`` (W_std = √2, b_std = 0).

    ``ntk.stax`` has it as ``stax.Myrtle(depth)``; neural-tangents only as its
    README's layer list, spelled out here for square images whose last map
    (a quarter of the side) is a power of two: 32×32 gives the README's
    three ``AvgPool((2, 2), (2, 2))`` and ``Flatten``.
    """
    import math

    W_std, b_std = math.sqrt(2.0), 0.0
    if hasattr(stax, "Myrtle"):
        return stax.Myrtle(depth, W_std=W_std, b_std=b_std)
    conv = lambda: stax.Conv(1, (3, 3), padding="SAME", W_std=W_std, b_std=b_std)
    layers = []
    for stage, count in enumerate(MYRTLE_FACTORS[depth]):
        layers += [conv(), stax.Relu()] * count
        if stage < 2:
            layers.append(stax.AvgPool((2, 2), strides=(2, 2)))
    side = input_shape[0] // 4
    layers += [stax.AvgPool((2, 2), strides=(2, 2))] * int(round(math.log2(side)))
    layers += [stax.Flatten(), stax.Dense(10, W_std, b_std)]
    return stax.serial(*layers)


def _block(out):
    import jax

    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), out)


def time_call(fn, repeats):
    """Warm up (compile) once, then the median of ``repeats`` timed calls."""
    start = time.perf_counter()
    out = _block(fn())
    warmup = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        _block(fn())
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return out, {
        "seconds": statistics.median(times),
        "times": times,
        "cpu_seconds": statistics.median(cpu),
        "cpu_times": cpu,
        "warmup_s": warmup,
    }


def run_workload(stax, workload, repeats, seed, public_call=False):
    """Time ``jax.jit(kernel_fn, static_argnames="get")(x, None, get="ntk")``
    (``get`` is the workload's ``"get"`` entry if it has one, e.g. both
    ``["nngp", "ntk"]``; the NTK is what the two libraries' kernels are compared by).

    With ``public_call`` also time the plain ``kernel_fn(x, None, get=get)``
    (for ntk that path adds the boundary checks, e.g. finiteness).
    """
    import jax
    import numpy as np

    if "myrtle" in workload:
        _, _, kernel_fn = build_myrtle(stax, workload["myrtle"], workload["input_shape"][1:])
    else:
        _, _, kernel_fn = build(stax, workload["layers"])
    x = make_input(workload["input_shape"], seed)
    kwargs = {}
    if "graph" in workload:
        x, kwargs = make_graph(workload["graph"], x, seed)
    get = workload.get("get", "ntk")
    get = get if isinstance(get, str) else tuple(get)  # JSON gives a list
    jitted = jax.jit(kernel_fn, static_argnames="get")
    out, result = time_call(lambda: jitted(x, None, get=get, **kwargs), repeats)
    out = np.asarray(out if isinstance(get, str) else out.ntk)
    result["shape"] = list(out.shape)
    result["corner"] = out[:4, :4].reshape(4, 4, -1)[..., 0].tolist()
    result["finite"] = bool(np.isfinite(out).all())
    if public_call:
        _, public = time_call(lambda: kernel_fn(x, None, get=get, **kwargs), repeats)
        result["public_call_seconds"] = public["seconds"]
    return result


def run_all(stax, spec, public_call=False, log=None):
    """``{name: result or {"error": ...}}`` for ``spec["workloads"]``."""
    results = {}
    for name, workload in spec["workloads"].items():
        if log:
            log(f"  {name}: {workload['title']}")
        try:
            results[name] = run_workload(
                stax, workload, spec["repeats"], spec["seed"], public_call=public_call
            )
        except Exception as e:  # noqa: BLE001 - reported in the table, others go on
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    return results


def run_nt(nt_python, script_args, spec, marker=MARKER, timeout=1800.0):
    """Run ``script_args`` (a script's path and its arguments) under NT's
    interpreter with ``spec`` as JSON on stdin; the JSON of its stdout line
    that starts with ``marker``.

    The child gets a clean ``PYTHONPATH`` and no ``XLA_FLAGS`` (no fake
    devices: time the machine as it is). Raises ``RuntimeError`` with the last
    stderr lines when no such line arrives.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu", "PYTHONPATH": ""}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [nt_python, str(Path(script_args[0]).resolve()), *script_args[1:]],
        input=json.dumps(spec),
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"NT run failed (exit {proc.returncode}); last stderr lines:\n{tail}")


def nt_side(nt_python, skip, spec, script_args=None, announce=None, log=print):
    """NT's output for ``spec`` (`run_nt` of ``script_args``, default this
    file) and ``None``, or ``None`` and the note saying why NT did not run:
    ``skip`` (--no-nt), no interpreter at ``nt_python``, or a failed run
    (logged, as is ``announce`` before the run)."""
    if skip:
        return None, "skipped (--no-nt)"
    if not Path(nt_python).exists():
        note = f"no NT environment at {nt_python}"
        log(
            f"{note}. Create one with `scripts/make_nt_env.sh DIR` (python3.11, "
            f"jax 0.4.25, neural-tangents 0.6.5; ~2.6 GB) and pass --nt-python "
            f"DIR/bin/python (or set NT_PYTHON); reporting ntk only."
        )
        return None, note
    if announce:
        log(announce)
    try:
        return run_nt(nt_python, script_args or [__file__], spec), None
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        note = f"NT run failed: {e}"
        log(note)
        return None, note


def write_payload(name, out_dir, payload, start, nt_versions, nt_python, nt_note) -> int:
    """Write ``payload`` plus the NT side's provenance (``nt_versions``,
    ``nt_python``, ``nt_note``: why NT was not timed, or None) to
    ``out_dir/benchmarks/NAME.json`` (`experiments.results.write_benchmark`,
    with ``start`` from `experiments.results.benchmark_start`), say where, and
    return the exit status 0."""
    from experiments import results

    payload = {**payload, "nt_versions": nt_versions, "nt_python": nt_python, "nt_note": nt_note}
    path = results.write_benchmark(name, out_dir, payload, start)
    print(f"wrote {path}")
    return 0


def _versions():
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("neural-tangents", "jax", "jaxlib", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def near_duplicates(shape, seed):
    """Float64 rows ``(12, *shape)``: four standard normal ones, the same plus
    noise of 1e-3 of their scale, and the same times 3."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4,) + tuple(shape))
    return np.concatenate([x, x + 1e-3 * rng.standard_normal(x.shape), 3 * x])


def _kernels_with_x64(kernel_fn, x, x64: bool):
    """``kernel_fn(x, None, ("nngp", "ntk"))`` with ``jax_enable_x64`` set to
    ``x64`` for the call (the float32 call runs with it off, as a user's),
    then restored."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", x64)
    try:
        return kernel_fn(x, None, ("nngp", "ntk"))
    finally:
        jax.config.update("jax_enable_x64", before)


def precision_all(stax, spec):
    """``{name: {"error_eps": e} or {"error": ...}}``: for each workload,
    ``max |K32 − K64| / max |K64|`` in float32 ε (the largest over NNGP and
    NTK) of ``kernel_fn(x, None)`` on `near_duplicates`."""
    import numpy as np

    eps = float(np.finfo(np.float32).eps)
    out = {}
    for name, workload in spec["workloads"].items():
        try:
            kernel_fn = build(stax, workload["layers"])[2]
            x = near_duplicates(workload["input_shape"], spec["seed"])
            ref = _kernels_with_x64(kernel_fn, x, True)
            low = _kernels_with_x64(kernel_fn, x.astype(np.float32), False)
            errors = []
            for r, l in zip(ref, low):
                r, l = np.asarray(r, np.float64), np.asarray(l, np.float64)
                errors.append(float(np.max(np.abs(l - r)) / np.max(np.abs(r)) / eps))
            out[name] = {"error_eps": max(errors)}
        except Exception as e:  # reported per workload
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def main():
    spec = json.loads(sys.stdin.read())
    from neural_tangents import stax

    run = precision_all if spec.get("mode") == "precision" else run_all
    out = {"versions": _versions(), "results": run(stax, spec)}
    sys.stdout.write(MARKER + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
