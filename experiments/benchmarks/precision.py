"""Float32 accuracy of the kernels at nearly identical inputs, against NT.

    python -m experiments.benchmarks.precision [--nt-python PATH] [--no-nt] [--out results]

JAX computes in float32 by default, and a GPU or TPU runs fast only there.
Inputs that are nearly identical (near-duplicate images, an input and its
scaled copy) differ in their covariances only in the last float32 digits,
where kinked activations read the angle between them. For each workload
both libraries evaluate ``kernel_fn(x, None, ("nngp", "ntk"))`` on float32
and on float64 copies of the same inputs (four standard normal rows, the
same rows plus noise of 1e-3 of their scale, and the rows times 3), and
report the float32 error

    max |K_float32 − K_float64| / max |K_float64| / ε_float32

of each library's own kernel (its float64 kernel is the reference; the
golden tests hold the two float64 kernels within 1e-6 of each other).

What to expect: vector networks carry the inputs' chords (README, dtype),
from the inputs' directions for at most 16 features (ours within about 1 ε,
NT ten), from their Gram matrices above (hundreds of ε; NT's error grows
with the width, to a thousand at 784 features). With
positions (convolutions, attention, a `Flatten` first) no chord is carried
and ours takes two inputs less than ~3e-3 rad apart as identical (so that an
input's kernel with itself stays exact in deep stacks), which costs hundreds
of ε where NT, keeping the rounding noise, is 2–11× closer. The script prints both,
side by side, and writes ``OUT/benchmarks/precision.json`` atomically.

Run as a script in NT's environment, ``_harness.py`` computes NT's side
(``{"mode": "precision"}``).
"""

from __future__ import annotations

import sys

from experiments.benchmarks import _harness


def _conv(chan=16, filt=(3,), **kw):
    return ["Conv", [chan, list(filt)], {"padding": "SAME", **kw}]


_DENSE_RELU = [["Dense", [64], {"b_std": 0.1}], ["Relu", [], {}]]

WORKLOADS = {
    **{
        name: {
            "title": f"3x[Dense(64, b_std=0.1), Relu] + Dense(1); vectors ({n},)",
            "layers": _harness.mlp(_DENSE_RELU, 3),
            "input_shape": [n],
        }
        for name, n in (("mlp_relu", 16), ("mlp_relu_64", 64), ("mlp_relu_784", 784))
    },
    "flatten_mlp_relu": {
        "title": "Flatten + 2x[Dense(64, b_std=0.1), Relu] + Dense(1); sequences (8, 2)",
        "layers": [["Flatten", [], {}]] + _harness.mlp(_DENSE_RELU, 2),
        "input_shape": [8, 2],
    },
    **{
        f"conv_{act.lower()}_gap": {
            "title": f"2x[Conv(16, (3,), SAME), {act}] + GlobalAvgPool + Dense(1); "
            "sequences (8, 2)",
            "layers": [_conv(), [act, [], {}], _conv(), [act, [], {}]]
            + [["GlobalAvgPool", [], {}], ["Dense", [1], {}]],
            "input_shape": [8, 2],
        }
        for act in ("Relu", "Erf")
    },
    "conv_abrelu_flatten": {
        "title": "Conv(16, (2, 2), SAME) + ABRelu(-0.4, 1.3) + Conv + Abs + Flatten + Dense(1); "
        "images (6, 4, 2)",
        "layers": [
            _conv(filt=(2, 2), b_std=0.2),
            ["ABRelu", [-0.4, 1.3], {}],
            _conv(filt=(2, 2)),
            ["Abs", [], {}],
            ["Flatten", [], {}],
            ["Dense", [1], {}],
        ],
        "input_shape": [6, 4, 2],
    },
    "attention_sin": {
        "title": "Conv(8, (1,)) + GlobalSelfAttention(8, 8, 8, 2) + Sin + Flatten + Dense(1); "
        "sequences (6, 3)",
        "layers": [
            ["Conv", [8, [1]], {}],
            ["GlobalSelfAttention", [8, 8, 8, 2], {"linear_scaling": True}],
            ["Sin", [], {}],
            ["Flatten", [], {}],
            ["Dense", [1], {}],
        ],
        "input_shape": [6, 3],
    },
}


def run_ntk(workloads, seed):
    """Our side: `_harness.precision_all` with ``ntk.stax`` in this process."""
    from ntk import stax

    return _harness.precision_all(stax, {"workloads": workloads, "seed": seed})


def main(argv=None) -> int:
    parser = _harness.benchmark_parser("precision", __doc__)
    parser.add_argument("--no-nt", action="store_true", help="ntk only")
    args = parser.parse_args(argv)

    from experiments import results

    start = results.benchmark_start()
    workloads = {
        name: {k: w[k] for k in ("layers", "input_shape")} for name, w in WORKLOADS.items()
    }
    ours = run_ntk(workloads, args.seed)
    nt_python = _harness.resolve_nt_python(args.nt_python)
    spec = {"mode": "precision", "workloads": workloads, "seed": args.seed}
    out, note = _harness.nt_side(nt_python, args.no_nt, spec)
    nt, nt_versions = (out["results"], out["versions"]) if out else ({}, None)

    print(f"{'workload':22s} {'ntk (eps)':>10s} {'NT (eps)':>10s} {'ntk / NT':>9s}")
    rows = {}
    for name, w in WORKLOADS.items():
        mine, theirs = ours.get(name, {}), nt.get(name, {})
        ratio = None
        if "error_eps" in mine and "error_eps" in theirs and theirs["error_eps"] > 0:
            ratio = mine["error_eps"] / theirs["error_eps"]
        rows[name] = {"title": w["title"], "ntk": mine, "nt": theirs or None, "ratio": ratio}
        cells = ["n/a" if "error_eps" not in r else f"{r['error_eps']:.1f}" for r in (mine, theirs)]
        print(
            f"{name:22s} {cells[0]:>10s} {cells[1]:>10s} "
            f"{'n/a' if ratio is None else f'{ratio:.2f}':>9s}"
        )
    payload = {"workloads": rows, "seed": args.seed}
    return _harness.write_payload(
        "precision", args.out, payload, start, nt_versions, nt_python, note
    )


if __name__ == "__main__":
    sys.exit(main())
