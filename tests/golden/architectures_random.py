"""Golden architectures of the ``random`` family: seeded random compositions.

Same interface as ``architectures.py`` (read its docstring). The other families
each check a layer in a few hand-written settings; this one checks the layers
in combinations nobody wrote down. ``draw(seed)`` composes one to three units,
each starting with an affine layer, then a readout:

* plain: Dense / Conv / ConvTranspose / ConvLocal (random filter, strides,
  padding VALID / SAME / CIRCULAR, parameterization, W_std, b_std), an
  activation, and on images sometimes AvgPool / SumPool;
* LayerNorm between the affine layer and the activation (over channels, or
  channels and positions);
* a residual block, ``FanOut(2), parallel([activation, affine], Identity), FanInSum``;
* two branches merged by FanInConcat (channels) or FanInProd;
* on sequences, a 1×1 Conv and GlobalSelfAttention (softmax, linear scaling);

on vectors ``(5,)``, sequences ``(7, 3)`` or images ``(5, 5, 2)``, ``(6, 4, 2)``,
read out by Flatten, GlobalAvgPool or GlobalSumPool and a Dense layer.
``draw_mixing(seed)`` adds the layers that mix positions or normalise:
GlobalSelfAttention with every mechanism and positional embedding (1-D and
2-D), ImageResize, Hermite after LayerNorm, test-mode Dropout. Each
architecture is a list of ``[layer name, args, kwargs]`` records, built by
`build_layers` from either library's ``stax``.

Left out, because NT 0.6.5 is wrong there:

* a non-square ConvLocal filter or stride (after a Conv NT applies it
  transposed), so ConvLocal filters and strides are square here;
* Sign in a network with positions (NT sets an input's covariance between
  any two positions to 1 after Sign), so Sign appears on vectors only;

  for these two, Monte Carlo of the finite network (NT's own as well as ours)
  sides with our kernel, and ``tests/test_stax_conv.py`` checks ours against it;
* ExpNormalized in a branch of FanInConcat (NT weights the branches by
  their channel counts, which it infers by running ``apply_fn``; ExpNormalized
  has none, and NT then counts the branch's input channels instead: its
  kernel equals the equal-weight mean);
* RectifiedMonomial (NaN in NT wherever a variance is read again; see
  ``architectures_activations.py``).

`SEEDS` are the first 40 draws and `MIXING_SEEDS` the first 16 of
`draw_mixing` (every one a valid network whose kernel NT returns finite);
`X2_NONE` the even ones of each. At correlation 1 NT takes square
roots of round-off, so its kernel of an input with itself can be off by more
than the test's 1e-6 after a deep stack (seed 21: 1.2e-6 in one diagonal NTK
entry); ours is exact there, and ``tests/test_stax_properties.py`` checks it.
Regenerate the fixture with ``scripts/nt_golden.py --family random``.
"""

from __future__ import annotations

import random

from _family import accessors, normal_inputs

N1 = 3
N2 = 2

SHAPES = ((5,), (7, 3), (5, 5, 2), (6, 4, 2))

ACTIVATIONS = (
    ("Relu", []),
    ("Erf", []),
    ("Erf", [1.3, 0.7, 0.1]),
    ("Gelu", []),
    ("Abs", []),
    ("LeakyRelu", [0.2]),
    ("ABRelu", [-0.4, 1.3]),
    ("Sin", []),
    ("Sin", [1.1, 0.8, 0.3]),
    ("Cos", []),
    ("Rbf", [0.7]),
    ("Sigmoid_like", []),
    ("Gaussian", []),
    ("Exp", []),
    ("Monomial", [2]),
    ("Polynomial", [[0.3, -0.5, 0.2]]),
    ("Gabor", []),
    ("ExpNormalized", []),
    ("Sign", []),
)


def _std(r: random.Random) -> float:
    return round(r.uniform(0.6, 1.8), 3)


def _b_std(r: random.Random):
    return r.choice([None, 0.0, round(r.uniform(0.05, 1.0), 3)])


def _activation(r: random.Random, nd: int, concat: bool = False) -> list:
    left_out = {"Sign"} if nd else set()
    left_out |= {"ExpNormalized"} if concat else set()
    name, args = r.choice([a for a in ACTIVATIONS if a[0] not in left_out])
    return [name, args, {}]


def _affine(r: random.Random, nd: int, chan: int = 3) -> list:
    kw = {"W_std": _std(r), "b_std": _b_std(r), "parameterization": r.choice(["ntk", "standard"])}
    if nd == 0:
        return ["Dense", [chan], kw]
    kind = r.choice(["Conv", "Conv", "ConvTranspose", "ConvLocal"])
    filt = [r.choice([1, 2, 3]) for _ in range(nd)]
    strides = r.choice([None, [r.choice([1, 2]) for _ in range(nd)]])
    padding = r.choice(["VALID", "SAME", "CIRCULAR"])
    if kind == "ConvLocal":
        filt = [filt[0]] * nd
        strides = None if strides is None else [strides[0]] * nd
    return [kind, [chan, filt], {"strides": strides, "padding": padding, **kw}]


def _same(r: random.Random, nd: int, chan: int) -> list:
    """An affine layer that keeps the positions (for merges)."""
    kw = {"W_std": _std(r), "b_std": _b_std(r)}
    if nd == 0:
        return ["Dense", [chan], kw]
    filt = [r.choice([1, 2, 3]) for _ in range(nd)]
    return ["Conv", [chan, filt], {"padding": r.choice(["SAME", "CIRCULAR"]), **kw}]


def _unit(r: random.Random, nd: int) -> list:
    kind = r.choices(["plain", "norm", "res", "cat", "prod", "attn"], [5, 1, 2, 1, 1, nd == 1])[0]
    if kind == "plain":
        layers = [_affine(r, nd), _activation(r, nd)]
        if nd and r.random() < 0.4:
            window = [r.choice([1, 2]) for _ in range(nd)]
            kw = {
                "strides": r.choice([None, window]),
                "padding": r.choice(["VALID", "SAME", "CIRCULAR"]),
            }
            pool = r.choice(["AvgPool", "SumPool"])
            if pool == "AvgPool" and kw["padding"] == "SAME":
                kw["normalize_edges"] = r.choice([True, False])
            layers.append([pool, [window], kw])
        return layers
    if kind == "norm":
        axis = r.choice([[-1], list(range(1, nd + 2))]) if nd else [-1]
        return [_affine(r, nd), ["LayerNorm", [], {"axis": axis}], _activation(r, nd)]
    if kind == "res":
        main = [_activation(r, nd), _same(r, nd, 3)]
        return [
            _same(r, nd, 3),
            ["branch", [main, [["Identity", [], {}]]], "FanInSum"],
            _activation(r, nd),
        ]
    if kind in ("cat", "prod"):
        chans = (3, 2) if kind == "cat" else (3, 3)
        branches = [[_same(r, nd, c), _activation(r, nd, kind == "cat")] for c in chans]
        return [["branch", branches, "FanInConcat" if kind == "cat" else "FanInProd"]]
    stds = {f"W_{w}_std": _std(r) for w in ("key", "value", "query", "out")}
    return [
        ["Conv", [4, [1]], {"W_std": _std(r), "b_std": _b_std(r)}],
        ["GlobalSelfAttention", [4, 4, 4, r.choice([1, 2])], {"linear_scaling": True, **stds}],
    ]


def draw(seed: int) -> tuple[list, tuple]:
    """``(layers, input_shape)`` of the architecture with this seed."""
    r = random.Random(seed)
    shape = r.choice(SHAPES)
    nd = len(shape) - 1
    layers = []
    for _ in range(r.choice([1, 2, 2, 3])):
        layers += _unit(r, nd)
    if nd:
        layers.append([r.choice(["Flatten", "GlobalAvgPool", "GlobalSumPool"]), [], {}])
    layers.append(["Dense", [2], {"W_std": _std(r), "b_std": _b_std(r)}])
    return layers, shape


def build_layers(stax, layers: list):
    """``stax.serial`` of the records (lists become tuples, as layers expect)."""

    def tup(v):
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    made = []
    for record in layers:
        if record[0] == "branch":
            _, branches, merge = record
            made.append(
                stax.serial(
                    stax.FanOut(len(branches)),
                    stax.parallel(*[build_layers(stax, b) for b in branches]),
                    stax.FanInConcat(-1) if merge == "FanInConcat" else getattr(stax, merge)(),
                )
            )
            continue
        name, args, kwargs = record
        args = [a if name == "Polynomial" else tup(a) for a in args]
        made.append(getattr(stax, name)(*args, **{k: tup(v) for k, v in kwargs.items()}))
    return stax.serial(*made)


def draw_mixing(seed: int) -> tuple[list, tuple]:
    """``(layers, input_shape)`` of a network of the layers that mix positions
    or normalise: one or two units of GlobalSelfAttention (any mechanism and
    positional embedding, 1-D or 2-D), a square ImageResize after a Conv, Hermite
    after LayerNorm, or test-mode Dropout, each followed by a 1×1 Conv."""
    r = random.Random(seed)
    shape = r.choice(((6, 3), (5, 5, 2), (4, 4, 3)))
    nd = len(shape) - 1
    ones = [1] * nd
    layers = []
    for _ in range(r.choice([1, 2])):
        kind = r.choice(["attention", "attention", "resize", "hermite", "dropout"])
        if kind == "attention":
            chan = r.choice([3, 4])
            emb = r.choice(["NONE", "SUM", "CONCAT"])
            kw = {
                "linear_scaling": True,
                "attention_mechanism": r.choice(["SOFTMAX", "IDENTITY", "ABS", "RELU"]),
                "pos_emb_type": emb,
                **{f"W_{w}_std": _std(r) for w in ("key", "value", "query", "out")},
                "b_std": _b_std(r),
            }
            if emb != "NONE":
                kw |= {"val_pos_emb": r.choice([True, False]), "W_pos_emb_std": _std(r)}
                kw["n_chan_pos_emb"] = 2 if emb == "CONCAT" else None
            layers += [
                ["Conv", [chan, ones], {"W_std": _std(r), "b_std": _b_std(r)}],
                ["GlobalSelfAttention", [chan, chan, chan, r.choice([1, 2])], kw],
                _activation(r, nd),
            ]
        elif kind == "resize":
            # Square targets: NT swaps H and W after a Conv (README, ImageResize).
            size = [-1] + [r.choice([3, 4, 6])] * nd + [-1]
            layers += [
                _same(r, nd, 3),
                _activation(r, nd),
                ["ImageResize", [size, r.choice(["linear", "nearest"])], {}],
            ]
        elif kind == "hermite":
            layers += [
                _same(r, nd, 3),
                ["LayerNorm", [], {"axis": [-1]}],
                ["Hermite", [r.choice([1, 2, 3])], {}],
            ]
        else:
            layers += [
                _same(r, nd, 3),
                _activation(r, nd),
                ["Dropout", [r.choice([0.5, 0.9])], {"mode": "test"}],
            ]
        layers.append(["Conv", [3, ones], {"W_std": _std(r)}])
    layers.append([r.choice(["Flatten", "GlobalAvgPool"]), [], {}])
    layers.append(["Dense", [2], {"W_std": _std(r), "b_std": _b_std(r)}])
    return layers, shape


SEEDS: tuple[int, ...] = tuple(range(40))
MIXING_SEEDS: tuple[int, ...] = tuple(range(16))
X2_NONE = frozenset(
    [f"random_{seed:03d}" for seed in SEEDS if seed % 2 == 0]
    + [f"random_mixing_{seed:02d}" for seed in MIXING_SEEDS if seed % 2 == 0]
)


def draw_inputs(name: str, input_shape: tuple):
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2, *input_shape)``."""
    return normal_inputs(name, input_shape, N1, N2)


def _builders(stax) -> dict:
    """``name -> (thunk building the layer, input_shape)``; builds nothing."""
    out = {}
    for seed in SEEDS:
        layers, shape = draw(seed)
        out[f"random_{seed:03d}"] = (lambda layers=layers: build_layers(stax, layers), shape)
    for seed in MIXING_SEEDS:
        layers, shape = draw_mixing(seed)
        out[f"random_mixing_{seed:02d}"] = (lambda layers=layers: build_layers(stax, layers), shape)
    return out


names, input_shape, build, architectures, options = accessors(_builders)
