"""Timing harness shared by both sides of `experiments.benchmarks.kernels`.

It imports only numpy and jax, so the same code times ntk (in-process) and
neural-tangents (run as a script in NT's reference environment, Python 3.11 +
jax 0.4.25): same inputs, same jit, same warm-up and the same median. As a
script it reads a JSON spec on stdin, builds each workload with
``neural_tangents.stax`` and prints one line ``BENCH_JSON <json>``.

A workload is ``{"layers": [[name, args, kwargs], ...], "input_shape": [...]}``;
``build(stax, layers)`` calls ``stax.serial(*(getattr(stax, name)(*args,
**kwargs)))`` — both libraries share these layer names and arguments.
"""

import json
import statistics
import sys
import time

MARKER = "BENCH_JSON "


def make_input(shape, seed):
    """Standard normal float32 inputs, identical in both environments."""
    import numpy as np
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def build(stax, layers):
    """``stax.serial`` of the named layers; list arguments become tuples."""
    def tup(v):
        return tuple(v) if isinstance(v, list) else v
    made = []
    for name, args, kwargs in layers:
        made.append(getattr(stax, name)(*[tup(a) for a in args],
                                        **{k: tup(v) for k, v in kwargs.items()}))
    return stax.serial(*made)


def _block(out):
    import jax
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), out)


def time_call(fn, repeats):
    """Warm up (compile) once, then the median of ``repeats`` timed calls."""
    start = time.perf_counter()
    out = _block(fn())
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return out, {"seconds": statistics.median(times), "times": times,
                 "warmup_s": warmup}


def run_workload(stax, workload, repeats, seed, public_call=False):
    """Time ``jax.jit(kernel_fn, static_argnames="get")(x, None, get="ntk")``.

    With ``public_call`` also time the plain ``kernel_fn(x, None, get="ntk")``
    (for ntk that path adds the boundary checks, e.g. finiteness).
    """
    import jax
    import numpy as np
    _, _, kernel_fn = build(stax, workload["layers"])
    x = make_input(workload["input_shape"], seed)
    jitted = jax.jit(kernel_fn, static_argnames="get")
    out, result = time_call(lambda: jitted(x, None, get="ntk"), repeats)
    out = np.asarray(out)
    result["shape"] = list(out.shape)
    result["corner"] = out[:4, :4].reshape(4, 4, -1)[..., 0].tolist()
    result["finite"] = bool(np.isfinite(out).all())
    if public_call:
        _, public = time_call(lambda: kernel_fn(x, None, get="ntk"), repeats)
        result["public_call_seconds"] = public["seconds"]
    return result


def run_all(stax, spec, public_call=False, log=None):
    """``{name: result or {"error": ...}}`` for ``spec["workloads"]``."""
    results = {}
    for name, workload in spec["workloads"].items():
        if log:
            log(f"  {name}: {workload['title']}")
        try:
            results[name] = run_workload(stax, workload, spec["repeats"], spec["seed"],
                                         public_call=public_call)
        except Exception as e:  # noqa: BLE001 - reported in the table, others go on
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    return results


def _versions():
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for name in ("neural-tangents", "jax", "jaxlib", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main():
    spec = json.loads(sys.stdin.read())
    from neural_tangents import stax
    out = {"versions": _versions(), "results": run_all(stax, spec)}
    sys.stdout.write(MARKER + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
