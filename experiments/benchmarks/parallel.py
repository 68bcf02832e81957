"""Peak memory of `ntk.parallel.batch` on a kernel bigger than a few GiB.

    python -m experiments.benchmarks.parallel [--n 20000] [--dim 784] [--out results]

Workload: the NTK of ``3 × [Dense(512), Relu] + Dense(1)`` on N inputs of
dimension 784 with themselves (``kernel_fn(x, None, "ntk")``), through
``parallel.batch(kernel_fn)`` with its default 1 GiB step budget. At N =
20,000 the output is 1.5 GiB in float32 and 3.0 GiB in float64.

Each of four configurations — float32 / float64, ``store_on_device`` True
(the default) / False — runs in its own fresh subprocess (a process's peak
resident memory, ``ru_maxrss``, only ever grows). Each reports its peak RSS
beside the bound ``output bytes + 1 GiB`` (the peak includes the interpreter,
JAX and the inputs), the growth over the resident size just before the call,
the wall time, and a check of a few entries against the unbatched
``kernel_fn``. Writes ``OUT/benchmarks/parallel.json`` (`results.write_benchmark`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from experiments import results
from experiments.benchmarks import _harness

GIB = 2**30
CONFIGS = [("float32", True), ("float64", True), ("float32", False), ("float64", False)]


def _resident_bytes() -> int:
    import resource

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(n: int, dim: int, dtype: str, store_on_device: bool, seed: int = 0) -> dict:
    """Run one configuration in this process; call it in a fresh process."""
    import resource
    import time

    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    from ntk import parallel, stax

    layers = [layer for _ in range(3) for layer in (stax.Dense(512), stax.Relu())]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1))
    x = _harness.make_input((n, dim), seed).astype(dtype)
    batched = parallel.batch(kernel_fn, store_on_device=store_on_device)
    tile = parallel.choose_tile(
        kernel_fn, x, x, ("ntk",), jax.device_count(), GIB
    )  # the default budget

    before = _resident_bytes()
    start = time.perf_counter()
    k = batched(x, None, "ntk")
    if isinstance(k, jax.Array):
        k.block_until_ready()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # A few rows against the unbatched kernel, including the mirrored part.
    rows = np.asarray([0, n // 2, n - 1])
    cols = np.unique(np.linspace(0, n - 1, 64).astype(int))
    ref = np.asarray(kernel_fn(x[rows], x[cols], "ntk"))
    got = np.asarray(k)[np.ix_(rows, cols)]
    output = int(k.nbytes)
    bound = output + GIB
    return {
        "n": n,
        "dim": dim,
        "dtype": dtype,
        "store_on_device": store_on_device,
        "returned": type(k).__name__,
        "devices": jax.device_count(),
        "tile": tile,
        "seconds": round(seconds, 2),
        "output_bytes": output,
        "peak_rss_bytes": peak,
        "rss_before_call_bytes": before,
        "growth_bytes": peak - before,
        "bound_bytes": bound,
        "within_bound": peak <= bound,
        "max_rel_err_vs_unbatched": float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))),
    }


def run_in_subprocess(
    n: int, dim: int, dtype: str, store_on_device: bool, timeout: float = 3600
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "experiments.benchmarks.parallel",
        "--worker",
        "--n",
        str(n),
        "--dim",
        str(dim),
        "--dtype",
        dtype,
        "--store-on-device",
        str(int(store_on_device)),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_harness.MARKER):
            return json.loads(line[len(_harness.MARKER) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
    return {
        "dtype": dtype,
        "store_on_device": store_on_device,
        "error": f"exit {proc.returncode}: {tail}",
    }


def format_rows(rows: list[dict]) -> str:
    table = []
    for r in rows:
        if "error" in r:
            table.append(
                {
                    "dtype": r["dtype"],
                    "store_on_device": r["store_on_device"],
                    "peak RSS GiB": "failed",
                }
            )
            continue
        table.append(
            {
                "dtype": r["dtype"],
                "store_on_device": r["store_on_device"],
                "output GiB": f"{r['output_bytes'] / GIB:.2f}",
                "peak RSS GiB": f"{r['peak_rss_bytes'] / GIB:.2f}",
                "bound GiB": f"{r['bound_bytes'] / GIB:.2f}",
                "within?": "yes" if r["within_bound"] else "NO",
                "growth GiB": f"{r['growth_bytes'] / GIB:.2f}",
                "seconds": f"{r['seconds']:.1f}",
                "max rel err": f"{r['max_rel_err_vs_unbatched']:.1e}",
            }
        )
    return results.format_table(
        table,
        (
            "dtype",
            "store_on_device",
            "output GiB",
            "peak RSS GiB",
            "bound GiB",
            "within?",
            "growth GiB",
            "seconds",
            "max rel err",
        ),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.parallel", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=20000, help="number of inputs")
    parser.add_argument("--dim", type=int, default=784, help="input dimension")
    parser.add_argument("--out", default="results", help="writes OUT/benchmarks/parallel.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=("float32", "float64"), help=argparse.SUPPRESS)
    parser.add_argument("--store-on-device", type=int, choices=(0, 1), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.dim < 1:
        parser.error(f"--n and --dim must be >= 1; got {args.n} and {args.dim}")
    if not sys.platform.startswith("linux"):
        parser.error("reads /proc/self/statm: Linux only")
    if args.worker:
        row = measure(args.n, args.dim, args.dtype, bool(args.store_on_device))
        sys.stdout.write(_harness.MARKER + json.dumps(row) + "\n")
        return 0

    start = results.benchmark_start()
    rows = []
    for dtype, store in CONFIGS:
        print(f"N={args.n} {dtype} store_on_device={store} (fresh process) ...", flush=True)
        rows.append(run_in_subprocess(args.n, args.dim, dtype, store))
        if "error" in rows[-1]:
            print(f"  failed: {rows[-1]['error']}")
    print()
    print(format_rows(rows))
    default_ok = all(r.get("within_bound") for r in rows if r.get("store_on_device"))
    print(f"\ndefault settings within output + 1 GiB: {'yes' if default_ok else 'NO'}")
    path = results.write_benchmark(
        "parallel",
        args.out,
        {
            "n": args.n,
            "dim": args.dim,
            "bound": "output + 1 GiB",
            "default_within_bound": default_ok,
            "rows": rows,
        },
        start,
    )
    print(f"wrote {path}")
    return 0 if default_ok else 1


if __name__ == "__main__":
    sys.exit(main())
