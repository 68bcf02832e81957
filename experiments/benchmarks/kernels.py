"""Speed of analytic NTK evaluation: ntk vs neural-tangents, same machine, one run.

    python -m experiments.benchmarks.kernels [--nt-python PATH] [--repeats N]

Workloads (issue 2, section 4), NTK of the inputs with themselves, float32:

  (a) 10 × [Dense(512, W_std=1.4, b_std=0.1), Relu] + Dense(1); 2000 inputs of dim 784
  (b) 5 × [Dense(512), Erf] + Dense(1); the same inputs
  (c) 3 × [Conv(64, (3, 3), padding="SAME"), Relu] + GlobalAvgPool + Dense(1);
      64 images 8×8×3

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

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments import results
from experiments.benchmarks import _harness

DEFAULT_NT_PYTHON = "/work/envs/ntref/bin/python"


def _mlp(block, depth):
    return [layer for _ in range(depth) for layer in block] + [["Dense", [1], {}]]


WORKLOADS = {
    "a": {"title": "10x[Dense(512, W_std=1.4, b_std=0.1), Relu] + Dense(1); NTK 2000x784",
          "layers": _mlp([["Dense", [512], {"W_std": 1.4, "b_std": 0.1}],
                          ["Relu", [], {}]], 10),
          "input_shape": [2000, 784], "target": 3.0, "nt_issue_s": 1.1},
    "b": {"title": "5x[Dense(512), Erf] + Dense(1); NTK 2000x784",
          "layers": _mlp([["Dense", [512], {}], ["Erf", [], {}]], 5),
          "input_shape": [2000, 784], "target": 3.0, "nt_issue_s": 0.37},
    "c": {"title": "3x[Conv(64, (3,3), SAME), Relu] + GlobalAvgPool + Dense(1); NTK 64x8x8x3",
          "layers": [layer for _ in range(3)
                     for layer in (["Conv", [64, [3, 3]], {"padding": "SAME"}],
                                   ["Relu", [], {}])]
          + [["GlobalAvgPool", [], {}], ["Dense", [1], {}]],
          "input_shape": [64, 8, 8, 3], "target": 5.0, "nt_issue_s": 8.5},
}


def missing_layers(stax, workload) -> list[str]:
    """Layer names a workload needs that ``stax`` does not (yet) have."""
    return sorted({name for name, _, _ in workload["layers"]
                   if not hasattr(stax, name)} | ({"serial"} - set(dir(stax))))


def resolve_nt_python(arg: str | None) -> str:
    return arg or os.environ.get("NT_PYTHON") or DEFAULT_NT_PYTHON


def run_nt(nt_python: str, spec: dict, timeout: float = 1800) -> dict:
    """Run the harness under NT's interpreter; ``{"results": ..., "versions": ...}``."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": ""}
    env.pop("XLA_FLAGS", None)  # no fake devices: time the machine as it is
    proc = subprocess.run([nt_python, str(Path(_harness.__file__).resolve())],
                          input=json.dumps(spec), text=True, capture_output=True,
                          env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(_harness.MARKER):
            return json.loads(line[len(_harness.MARKER):])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"NT run failed (exit {proc.returncode}); last stderr lines:\n{tail}")


def compare(ours: dict, nt: dict | None, workload: dict) -> dict:
    """One table row: times, speed-up, target met, and the kernels' agreement."""
    row = {"ntk_s": ours.get("seconds"), "nt_s": None, "speedup": None,
           "target": workload["target"], "met": None, "max_rel_diff_corner": None,
           "nt_issue_s": workload["nt_issue_s"]}
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
        table.append({
            "workload": name,
            "NT s": "n/a" if r["nt_s"] is None else f"{r['nt_s']:.3f}",
            "ntk s": status if r["ntk_s"] is None else f"{r['ntk_s']:.3f}",
            "speed-up": "n/a" if r["speedup"] is None else f"{r['speedup']:.1f}x",
            "target": f"{r['target']:g}x",
            "met?": {None: "n/a", True: "yes", False: "NO"}[r["met"]],
            "max rel diff": ("n/a" if r["max_rel_diff_corner"] is None
                             else f"{r['max_rel_diff_corner']:.1e}"),
        })
    text = results.format_table(table, ("workload", "NT s", "ntk s", "speed-up",
                                        "target", "met?", "max rel diff"))
    if not nt_available:
        text += "\n(NT not run: speed-ups unavailable)"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmarks.kernels",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nt-python", default=None,
                        help=f"NT env's python (default: $NT_PYTHON or {DEFAULT_NT_PYTHON})")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", default="a,b,c",
                        help="comma-separated subset of a,b,c")
    parser.add_argument("--no-nt", action="store_true", help="time ntk only")
    parser.add_argument("--out", default="results", help="writes OUT/benchmarks/kernels.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
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
    print(f"ntk: timing {sorted(available) or 'nothing'} "
          f"(median of {args.repeats} after a warm-up call)")
    ours.update(_harness.run_all(stax, spec, public_call=True, log=print))

    nt, nt_note = None, None
    nt_python = resolve_nt_python(args.nt_python)
    if args.no_nt:
        nt_note = "skipped (--no-nt)"
    elif not Path(nt_python).exists():
        nt_note = f"no NT environment at {nt_python}"
        print(f"{nt_note}. Create one with `scripts/make_nt_env.sh DIR` (python3.11, "
              f"jax 0.4.25, neural-tangents 0.6.5; ~2.6 GB) and pass --nt-python "
              f"DIR/bin/python (or set NT_PYTHON); reporting ntk only.")
    else:
        nt_spec = {**spec, "workloads": {n: WORKLOADS[n] for n in chosen}}
        print(f"NT: timing {chosen} with {nt_python}")
        try:
            nt = run_nt(nt_python, nt_spec)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            nt_note = f"NT run failed: {e}"
            print(nt_note)

    for name in chosen:
        nt_result = nt["results"].get(name) if nt else None
        rows[name] = compare(ours[name], nt_result, WORKLOADS[name])
        rows[name]["title"] = WORKLOADS[name]["title"]
        if "error" in ours[name]:
            rows[name]["status"] = ("not available" if ours[name]["error"].startswith(
                "not available") else "failed")
        rows[name]["ntk"] = ours[name]
        rows[name]["nt"] = nt_result
    print()
    print(format_rows(rows, nt is not None))
    for name, r in rows.items():
        for side in ("ntk", "nt"):
            if r[side] and "error" in r[side]:
                print(f"  {name} [{side}]: {r[side]['error']}")

    payload = {"repeats": args.repeats, "seed": args.seed,
               "rows": rows, "nt_versions": nt["versions"] if nt else None,
               "nt_python": nt_python, "nt_note": nt_note}
    path = results.write_benchmark("kernels", args.out, payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
