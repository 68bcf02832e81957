"""Benchmark: the NTK of 20,000 inputs on one machine, memory-bounded.

    python -m experiments.benchmarks.parallel [--n 20000] [--budget-gib 1]

Workload (issue 3 §3): ``10 × [Dense(512), Relu] + Dense(1)``, NTK of N inputs
of dimension 784 with themselves, in float32, through `ntk.parallel.batch`
with the output kept on the host. Prints the wall time, the process's peak
resident memory (``ru_maxrss``) and the bound ``2 × output + 1 GiB``, and
writes ``results/benchmarks/parallel.json`` atomically.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import numpy as np

from experiments.results import atomic_write_json
from ntk import parallel, stax

GIB = 2 ** 30


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=784)
    ap.add_argument("--budget-gib", type=float, default=1.0)
    ap.add_argument("--out", default="results/benchmarks/parallel.json")
    args = ap.parse_args(argv)

    layers = []
    for _ in range(10):
        layers += [stax.Dense(512, W_std=1.4, b_std=0.1), stax.Relu()]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1))
    x = np.random.RandomState(0).randn(args.n, args.dim).astype(np.float32)
    kfn = parallel.batch(kernel_fn, store_on_device=False,
                         memory_bytes=int(args.budget_gib * GIB), progress=True)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    ntk = kfn(x, None, "ntk")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out_bytes = ntk.nbytes
    bound = 2 * out_bytes + GIB
    finite = bool(np.isfinite(ntk).all())
    row = {"n": args.n, "dim": args.dim, "devices": jax.device_count(),
           "seconds": round(seconds, 2), "output_gib": out_bytes / GIB,
           "peak_rss_gib": peak / GIB, "rss_before_gib": rss_before / GIB,
           "bound_gib": bound / GIB, "within_bound": peak <= bound,
           "finite": finite, "jax": jax.__version__}
    print(f"NTK {args.n}x{args.n} (float32, {jax.device_count()} device(s)): "
          f"{seconds:.1f} s; peak RSS {peak / GIB:.2f} GiB; output "
          f"{out_bytes / GIB:.2f} GiB; bound 2*output+1GiB = {bound / GIB:.2f} GiB "
          f"-> {'met' if row['within_bound'] else 'MISSED'}; finite: {finite}")
    atomic_write_json(args.out, row)
    return row


if __name__ == "__main__":
    main()
