"""Speed of analytic NTK evaluation: ntk vs neural-tangents, same machine, one run.

    python -m experiments.benchmarks.kernels [--nt-python PATH] [--repeats N]

Workloads, NTK of the inputs with themselves, float32:

  (a) 10 × [Dense(512, W_std=1.4, b_std=0.1), Relu] + Dense(1); 2000 inputs of dim 784
  (b) 5 × [Dense(512), Erf] + Dense(1); the same inputs
  (c) 3 × [Conv(64, (3, 3), padding="SAME"), Relu] + GlobalAvgPool + Dense(1);
      64 images 8×8×3
  (attn) Conv(64, (1,)) + GlobalSelfAttention(64, 64, 64, 2) (softmax) + Relu +
      GlobalAvgPool + Dense(1); 64 sequences of length 32 with 16 channels
  (graph, graph_dense) 2 × [Dense(64), Aggregate, Relu] + GlobalAvgPool + Dense(1);
      48 random graphs of 10-28 nodes (mean degree 2.2, self-loops) padded to 28
      and masked, 8 features; edge lists (SPARSE) / adjacency matrices (DENSE)
  (deep) 20 × [Dense(512, W_std=1.4, b_std=0.1), Gelu] + Dense(1); NNGP and NTK
      together (``get=("nngp", "ntk")``) of 1000 inputs of dim 784
  (myrtle5, myrtle10) the Myrtle-5 / Myrtle-10 CNTK (NT's README
      ``MyrtleNetwork(depth)``: 3×3 SAME Conv + Relu stages, W_std = √2,
      b_std = 0; `ntk.stax.Myrtle`) of 8 / 4 random 32×32×3 images

For the Myrtle rows the table adds the time per pair of images (ntk
computes the N(N+1)/2 pairs i ≤ j; NT all N² and the N self-covariances)
beside a floor: the flops one pair needs, counted per covariance entry of
each layer (`myrtle_flops_per_pair`), over the machine's elementwise
throughput measured in the same run (`elementwise_throughput`: float32
multiply-adds, 8 independent chains per element, per second of process CPU
time). Wall and process CPU time are both reported (medians), with the load
average: the machine is shared, and CPU time is the steadier of the two.

Both sides run the same harness (`_harness.py`): the same inputs,
``jax.jit(kernel_fn, static_argnames="get")``, one warm-up (compiling) call,
then the median of ``--repeats`` timed calls. ntk runs in this process; NT runs
as a subprocess in its reference environment (python from ``--nt-python``, the
``NT_PYTHON`` variable, or ``/work/envs/ntref/bin/python``; create one with
``scripts/make_nt_env.sh``). Without NT only ntk's times are reported. The
top-left 4×4 block of each kernel is compared between the two, to show that
the same quantity was timed. Writes ``OUT/benchmarks/kernels.json`` atomically.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from experiments import results
from experiments.benchmarks import _harness


# A two-layer graph network (GNTK, Du et al. 2019) read out by the mean over
# each graph's real nodes; molecule-sized graphs (MUTAG: ≤ 28 nodes), padded
# nodes masked. "graph" gives the graphs as edge lists (Aggregate's SPARSE
# implementation, the format neural-tangents recommends for sparse graphs),
# "graph_dense" as adjacency matrices.
def _gnn(implementation):
    block = [
        ["Dense", [64], {"W_std": 1.4, "b_std": 0.1}],
        ["Aggregate", [], {"implementation": implementation}],
        ["Relu", [], {}],
    ]
    return block + block + [["GlobalAvgPool", [], {}], ["Dense", [1], {}]]


WORKLOADS = {
    "a": {
        "title": "10x[Dense(512, W_std=1.4, b_std=0.1), Relu] + Dense(1); NTK 2000x784",
        "layers": _harness.mlp(
            [["Dense", [512], {"W_std": 1.4, "b_std": 0.1}], ["Relu", [], {}]], 10
        ),
        "input_shape": [2000, 784],
        "target": 3.0,
        "nt_issue_s": 1.1,
    },
    "b": {
        "title": "5x[Dense(512), Erf] + Dense(1); NTK 2000x784",
        "layers": _harness.mlp([["Dense", [512], {}], ["Erf", [], {}]], 5),
        "input_shape": [2000, 784],
        "target": 3.0,
        "nt_issue_s": 0.37,
    },
    "c": {
        "title": "3x[Conv(64, (3,3), SAME), Relu] + GlobalAvgPool + Dense(1); NTK 64x8x8x3",
        "layers": [
            layer
            for _ in range(3)
            for layer in (["Conv", [64, [3, 3]], {"padding": "SAME"}], ["Relu", [], {}])
        ]
        + [["GlobalAvgPool", [], {}], ["Dense", [1], {}]],
        "input_shape": [64, 8, 8, 3],
        "target": 5.0,
        "nt_issue_s": 8.5,
    },
    "attn": {
        "title": "Conv(64,(1,)) + GlobalSelfAttention(64,64,64,2) + Relu + "
        "GlobalAvgPool + Dense(1); NTK 64x32x16",
        "layers": [
            ["Conv", [64, [1]], {}],
            ["GlobalSelfAttention", [64, 64, 64, 2], {}],
            ["Relu", [], {}],
            ["GlobalAvgPool", [], {}],
            ["Dense", [1], {}],
        ],
        "input_shape": [64, 32, 16],
        "target": 3.0,
        "nt_issue_s": None,
    },
    **{
        name: {
            "title": f"2x[Dense(64), Aggregate, Relu] + GlobalAvgPool + Dense(1); NTK of "
            f"48 padded graphs (10-28 nodes, degree 2.2), {fmt} pattern",
            "layers": _gnn(fmt.upper()),
            "input_shape": [48, 28, 8],
            "target": 3.0,
            "nt_issue_s": None,
            "graph": {"min_nodes": 10, "degree": 2.2, "format": fmt, "mask_constant": -1e4},
        }
        for name, fmt in (("graph", "sparse"), ("graph_dense", "dense"))
    },
    "deep": {
        "title": "20x[Dense(512, W_std=1.4, b_std=0.1), Gelu] + Dense(1); NNGP and NTK 1000x784",
        "layers": _harness.mlp(
            [["Dense", [512], {"W_std": 1.4, "b_std": 0.1}], ["Gelu", [], {}]], 20
        ),
        "input_shape": [1000, 784],
        "get": ["nngp", "ntk"],
        "target": 3.0,
        "nt_issue_s": None,
    },
    "myrtle5": {
        "title": "Myrtle-5 CNTK (NT README MyrtleNetwork(5)); NTK 8x32x32x3",
        "myrtle": 5,
        "input_shape": [8, 32, 32, 3],
        "target": 30.0,
        "nt_issue_s": 19.1,
    },
    "myrtle10": {
        "title": "Myrtle-10 CNTK (NT README MyrtleNetwork(10)); NTK 4x32x32x3",
        "myrtle": 10,
        "input_shape": [4, 32, 32, 3],
        "target": 30.0,
        "nt_issue_s": None,
    },
}

# Flops per covariance entry of each kernel operation of a Myrtle layer (NNGP K
# and NTK Θ together), counted in the formulas `ntk.stax.myrtle` evaluates:
# - 3×3 SAME convolution: the 9-tap shift-together sum of K and of Θ (8 adds
#   each), K' = aS + b² and Θ' = K' + aS_Θ (2 each);
# - its first layer instead: the 9C-long inner product of patches (2·9C) and
#   the scale and bias (2), with Θ = K;
# - ReLU dual: ρ = c12·r1r2 (2), π − arccos ρ by the degree-5 arcsine
#   polynomial with its reduction (26), sin θ (3), K_r (5), K̇ (1), Θ·K̇ (1);
# - 2×2 stride-2 average pooling of K and Θ: 16 reads summed and scaled per
#   output entry (16 each), i.e. 2 per input entry;
# - the global average and Dense: 2 per entry of the last map.
CONV_FLOPS, RELU_FLOPS, POOL_FLOPS_PER_INPUT, READOUT_FLOPS = 20, 38, 2, 2


def myrtle_flops_per_pair(depth: int, h: int, w: int, channels: int) -> float:
    """Flops for the Myrtle-``depth`` kernel of one pair of h×w×C images."""
    factors = _harness.MYRTLE_FACTORS[depth]
    total = 0.0
    for stage, count in enumerate(factors):
        entries = float(h * w) ** 2
        for layer in range(count):
            conv = 2 * 9 * channels + 2 if stage == layer == 0 else CONV_FLOPS
            total += (conv + RELU_FLOPS) * entries
        if stage < 2:
            total += POOL_FLOPS_PER_INPUT * entries
            h, w = h // 2, w // 2
    return total + READOUT_FLOPS * float(h * w) ** 2


def elementwise_throughput(
    repeats: int = 7, n: int = 1 << 22, depth: int = 64, chains: int = 8
) -> dict:
    """Float32 flop/s of XLA's fused elementwise code on this machine.

    ``chains`` independent multiply-add chains of length ``depth`` per element
    of an n-element array (one fused loop, compute-bound); medians over
    ``repeats`` calls of wall and process CPU time.
    """
    import time

    import jax
    import jax.numpy as jnp

    x = jnp.asarray(np.random.default_rng(0).random(n, np.float32))

    def f(x):
        ys = [x + 0.1 * i for i in range(chains)]
        for _ in range(depth):
            ys = [y * 0.999 + 1e-4 for y in ys]
        return sum(ys)

    f = jax.jit(f)
    f(x).block_until_ready()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        f(x).block_until_ready()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    flops = 2.0 * depth * chains * n
    return {
        "flops_per_cpu_s": flops / float(np.median(cpu)),
        "flops_per_wall_s": flops / float(np.median(wall)),
        "device": str(jax.devices()[0].device_kind),
    }


def pair_costs(workload: dict, row: dict, throughput: dict) -> dict:
    """Per-pair times of a Myrtle row beside the flop floor (milliseconds)."""
    n, h, w, c = workload["input_shape"]
    flops = myrtle_flops_per_pair(workload["myrtle"], h, w, c)
    ours_pairs = n * (n + 1) / 2
    out = {
        "flops_per_pair": flops,
        "pairs_ntk": ours_pairs,
        "pairs_nt": n * n + n,
        "floor_ms": 1e3 * flops / throughput["flops_per_cpu_s"],
    }
    ours = row.get("ntk") or {}
    if "seconds" in ours:
        out["ntk_ms_per_pair_wall"] = 1e3 * ours["seconds"] / ours_pairs
        out["ntk_ms_per_pair_cpu"] = 1e3 * ours["cpu_seconds"] / ours_pairs
        out["cpu_over_floor"] = out["ntk_ms_per_pair_cpu"] / out["floor_ms"]
    nt = row.get("nt") or {}
    if "seconds" in nt:
        out["nt_ms_per_pair_wall"] = 1e3 * nt["seconds"] / (n * n + n)
        out["nt_ms_per_pair_cpu"] = 1e3 * nt["cpu_seconds"] / (n * n + n)
        if "cpu_seconds" in ours:
            out["speedup_cpu"] = nt["cpu_seconds"] / ours["cpu_seconds"]
    return out


def missing_layers(stax, workload) -> list[str]:
    """Layer names a workload needs that ``stax`` does not (yet) have."""
    if "myrtle" in workload:
        return [] if hasattr(stax, "Myrtle") else ["Myrtle"]
    return sorted(
        {name for name, _, _ in workload["layers"] if not hasattr(stax, name)}
        | ({"serial"} - set(dir(stax)))
    )


def compare(ours: dict, nt: dict | None, workload: dict) -> dict:
    """One table row: times, speed-up, target met, and the kernels' agreement."""
    row = {
        "ntk_s": ours.get("seconds"),
        "nt_s": None,
        "speedup": None,
        "target": workload["target"],
        "met": None,
        "max_rel_diff_corner": None,
        "nt_issue_s": workload["nt_issue_s"],
    }
    if nt and "seconds" in nt and row["ntk_s"]:
        row["nt_s"] = nt["seconds"]
        row["speedup"] = nt["seconds"] / ours["seconds"]
        row["met"] = row["speedup"] >= workload["target"]
        a, b = np.asarray(ours["corner"]), np.asarray(nt["corner"])
        row["max_rel_diff_corner"] = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    return row


def format_rows(rows: dict, nt_available: bool) -> str:
    table = []
    for name, r in rows.items():
        status = r.get("status", "ok")
        table.append(
            {
                "workload": name,
                "NT s": "n/a" if r["nt_s"] is None else f"{r['nt_s']:.3f}",
                "ntk s": status if r["ntk_s"] is None else f"{r['ntk_s']:.3f}",
                "speed-up": "n/a" if r["speedup"] is None else f"{r['speedup']:.1f}x",
                "target": f"{r['target']:g}x",
                "met?": {None: "n/a", True: "yes", False: "NO"}[r["met"]],
                "max rel diff": (
                    "n/a" if r["max_rel_diff_corner"] is None else f"{r['max_rel_diff_corner']:.1e}"
                ),
            }
        )
    text = results.format_table(
        table, ("workload", "NT s", "ntk s", "speed-up", "target", "met?", "max rel diff")
    )
    pairs = [
        {
            "workload": name,
            "NT cpu s": _fmt(r["nt"], "cpu_seconds"),
            "ntk cpu s": _fmt(r["ntk"], "cpu_seconds"),
            "speed-up (cpu)": _fmt(r["pairs"], "speedup_cpu", "{:.1f}x"),
            "NT ms/pair": _fmt(r["pairs"], "nt_ms_per_pair_wall", "{:.1f}"),
            "ntk ms/pair wall": _fmt(r["pairs"], "ntk_ms_per_pair_wall", "{:.2f}"),
            "ntk ms/pair cpu": _fmt(r["pairs"], "ntk_ms_per_pair_cpu", "{:.2f}"),
            "floor ms/pair": _fmt(r["pairs"], "floor_ms", "{:.2f}"),
            "cpu/floor": _fmt(r["pairs"], "cpu_over_floor", "{:.1f}x"),
        }
        for name, r in rows.items()
        if r.get("pairs")
    ]
    if pairs:
        text += "\n\nper pair of images (Myrtle rows):\n" + results.format_table(
            pairs, tuple(pairs[0])
        )
    if not nt_available:
        text += "\n(NT not run: speed-ups unavailable)"
    return text


SCALE_TILE = 50


def measure_myrtle_scale(
    n: int, tile: int = SCALE_TILE, checkpoint_dir=None, depth: int = 5
) -> dict:
    """Myrtle-``depth`` NTK of the first ``n`` MNIST-5k images (28×28, zero-padded
    to 32×32, standardised) through `ntk.parallel.batch` in this process, with
    the progress bar; run it in a fresh process (peak RSS only grows)."""
    import resource
    import time

    import jax

    from ntk import data, parallel, stax

    x, _ = data.mnist_5k()
    x = np.pad(x[:n], [(0, 0), (2, 2), (2, 2), (0, 0)]).astype(np.float32)
    x = (x - x.mean()) / x.std()
    batched = parallel.batch(
        stax.Myrtle(depth)[2],
        tile,
        progress=True,
        store_on_device=False,
        checkpoint_dir=checkpoint_dir,
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    k = batched(x, None, "ntk")
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "n": n,
        "depth": depth,
        "tile": tile,
        "wall_s": wall,
        "cpu_s": cpu,
        "pairs": n * (n + 1) // 2,
        "ms_per_pair_wall": 1e3 * wall / (n * (n + 1) / 2),
        "peak_rss_bytes": peak,
        "output_bytes": int(k.nbytes),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "load_average_after": list(os.getloadavg()),
        "finite": bool(np.isfinite(k).all()),
        "symmetric": bool(np.array_equal(k, k.T)),
    }


def run_scale(sizes, cores: int, tile: int) -> list:
    """`measure_myrtle_scale` for each size in a fresh subprocess; ``cores`` CPU
    devices (each runs its share of a tile's rows on its own thread)."""
    out = []
    for n in sizes:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={cores}")
        code = (
            "import json, sys; from experiments.benchmarks.kernels import "
            f"measure_myrtle_scale as m; print('SCALE_JSON', json.dumps(m({n}, {tile})))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, text=True, stdout=subprocess.PIPE, stderr=None
        )
        lines = [l for l in proc.stdout.splitlines() if l.startswith("SCALE_JSON ")]
        if proc.returncode or not lines:
            out.append({"n": n, "error": f"exit {proc.returncode}"})
            continue
        res = json.loads(lines[-1][len("SCALE_JSON ") :])
        print(
            f"  N = {n}: {res['wall_s']:.1f} s wall, {res['cpu_s']:.1f} s CPU, "
            f"{res['ms_per_pair_wall']:.2f} ms per pair, peak RSS "
            f"{res['peak_rss_bytes'] / 2**20:.0f} MiB (output "
            f"{res['output_bytes'] / 2**20:.1f} MiB), {res['device_kind']} x "
            f"{len(res['devices'])}"
        )
        out.append(res)
    return out


def _fmt(record, key, pattern="{:.3f}"):
    value = (record or {}).get(key)
    return "n/a" if value is None else pattern.format(value)


def main(argv=None) -> int:
    parser = _harness.benchmark_parser("kernels", __doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument("--no-nt", action="store_true", help="time ntk only")
    parser.add_argument(
        "--myrtle-scale",
        default="",
        help="comma-separated N: time the Myrtle-5 NTK of N MNIST-5k "
        "images (32×32) through parallel.batch instead, each N in a "
        "fresh process; writes OUT/benchmarks/myrtle_scale.json",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU devices for --myrtle-scale (default: all cores)",
    )
    parser.add_argument(
        "--tile", type=int, default=SCALE_TILE, help="images per tile side for --myrtle-scale"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    if args.myrtle_scale:
        sizes = [int(v) for v in args.myrtle_scale.split(",") if v.strip()]
        start = results.benchmark_start()
        print(
            f"Myrtle-5 NTK of MNIST-5k images (32×32) via parallel.batch, "
            f"{args.cores} CPU device(s), tiles of {args.tile}; load average "
            f"{start['load_average_at_start']}"
        )
        runs = run_scale(sizes, args.cores, args.tile)
        ok = [r for r in runs if "wall_s" in r]
        growth = None
        if len(ok) >= 2:
            from ntk.power_law import loglog_slope

            # Exponent of wall time against N (2 for work ∝ pairs).
            growth = loglog_slope([r["n"] for r in ok], [r["wall_s"] for r in ok])
            print(f"  wall time grows as N^{growth:.2f}")
        path = results.write_benchmark(
            "myrtle_scale",
            args.out,
            {"runs": runs, "growth_exponent": growth, "cores": args.cores, "tile": args.tile},
            start,
        )
        print(f"wrote {path}")
        return 0
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")

    from ntk import stax

    rows, ours, available = {}, {}, {}
    for name in chosen:
        missing = missing_layers(stax, WORKLOADS[name])
        if missing:
            ours[name] = {"error": f"not available: ntk.stax lacks {', '.join(missing)}"}
        else:
            available[name] = WORKLOADS[name]
    spec = {"workloads": available, "repeats": args.repeats, "seed": args.seed}
    start = results.benchmark_start()
    load_before = start["load_average_at_start"]
    throughput = None
    if any("myrtle" in WORKLOADS[n] for n in chosen):
        throughput = elementwise_throughput()
        print(
            f"elementwise throughput: {throughput['flops_per_cpu_s'] / 1e9:.1f} "
            f"GFLOP per CPU second, {throughput['flops_per_wall_s'] / 1e9:.1f} per "
            f"wall second ({throughput['device']})"
        )
    print(
        f"ntk: timing {sorted(available) or 'nothing'} "
        f"(median of {args.repeats} after a warm-up call); load average "
        f"{load_before}"
    )
    ours.update(_harness.run_all(stax, spec, public_call=True, log=print))

    nt_python = _harness.resolve_nt_python(args.nt_python)
    nt_spec = {**spec, "workloads": {n: WORKLOADS[n] for n in chosen}}
    nt, nt_note = _harness.nt_side(
        nt_python, args.no_nt, nt_spec, announce=f"NT: timing {chosen} with {nt_python}"
    )

    for name in chosen:
        nt_result = nt["results"].get(name) if nt else None
        rows[name] = compare(ours[name], nt_result, WORKLOADS[name])
        rows[name]["title"] = WORKLOADS[name]["title"]
        if "error" in ours[name]:
            rows[name]["status"] = (
                "not available" if ours[name]["error"].startswith("not available") else "failed"
            )
        rows[name]["ntk"] = ours[name]
        rows[name]["nt"] = nt_result
        if "myrtle" in WORKLOADS[name] and throughput is not None:
            rows[name]["pairs"] = pair_costs(WORKLOADS[name], rows[name], throughput)
    print()
    print(format_rows(rows, nt is not None))
    for name, r in rows.items():
        for side in ("ntk", "nt"):
            if r[side] and "error" in r[side]:
                print(f"  {name} [{side}]: {r[side]['error']}")

    payload = {
        "repeats": args.repeats,
        "seed": args.seed,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "elementwise_throughput": throughput,
        "rows": rows,
    }
    nt_versions = nt["versions"] if nt else None
    return _harness.write_payload(
        "kernels", args.out, payload, start, nt_versions, nt_python, nt_note
    )


if __name__ == "__main__":
    sys.exit(main())
