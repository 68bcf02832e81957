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
2-D), ImageResize, Hermite after LayerNorm, test-mode Dropout.
``draw_masked(seed)`` composes `draw`'s units and the attention of
`draw_mixing` on padded sequences and images (``mask_constant``: positions
past a random length along one spatial axis); ``draw_graph(seed)`` composes
`Aggregate` with dense adjacency or edge lists, on node sets and grids
(one axis or both), some with padded nodes, in plain, LayerNorm, residual
and two-branch units; ``draw_elementwise(seed)`` is `draw`'s architecture
with every activation replaced by `Elementwise` with a user's dual (erf with
the derivative kernel by autodiff, sin with it given). Each architecture is
a list of ``[layer name, args, kwargs]`` records, built by `build_layers`
from either library's ``stax``.

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
  ``architectures_activations.py``);
* in the masked and graph draws, Polynomial: NT divides by the variance, NaN
  at a padded position or a node without arcs in (ours is finite there);
* edge lists after a Conv in the graph draws: NT stores a Conv's spatial axes
  reversed and indexes them with the edges' coordinates unreversed (it raises
  for one axis of a non-square grid and is silently wrong for both; NT's own
  dense adjacency of the same edges gives our kernel);

and, because NT raises: CIRCULAR padding and FanInConcat in the masked draws
(NT pools no mask with a channel axis, which its FanInConcat makes).

`SEEDS` are the first 40 draws, `MIXING_SEEDS` the first 16 of
`draw_mixing`, `MASKED_SEEDS` the first 24 valid draws of `draw_masked` and
`GRAPH_SEEDS` the first 24 of `draw_graph`, `ELEMENTWISE_SEEDS` the first 12
of `draw_elementwise` (every one a valid network whose kernel NT returns
finite); `X2_NONE` the even ones of each. At correlation 1
NT takes square roots of round-off, so its kernel of an input with itself can
be off by more than the test's 1e-6 after a deep stack (seed 21: 1.2e-6 in
one diagonal NTK entry); ours is exact there, and
``tests/test_stax_properties.py`` checks it.
Regenerate the fixture with ``scripts/nt_golden.py --family random``.
"""

from __future__ import annotations

import random
import zlib

import jax.numpy as jnp
import jax.scipy.special
import numpy as np
from _family import accessors, normal_inputs
from architectures import erf_nngp, sin_d_nngp, sin_nngp
from architectures_graph import dense_pattern, sparse_pattern

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


def _activation(
    r: random.Random, nd: int, concat: bool = False, zero_variance: bool = False
) -> list:
    """An activation; ``zero_variance``: its input may have a variance of 0
    (padding, a node without arcs in), where NT's Polynomial is NaN."""
    left_out = {"Sign"} if nd else set()
    left_out |= {"ExpNormalized"} if concat else set()
    left_out |= {"Polynomial"} if zero_variance else set()
    name, args = r.choice([a for a in ACTIVATIONS if a[0] not in left_out])
    return [name, args, {}]


def _paddings(masked: bool) -> list:
    return ["VALID", "SAME"] if masked else ["VALID", "SAME", "CIRCULAR"]


def _affine(r: random.Random, nd: int, chan: int = 3, masked: bool = False) -> list:
    kw = {"W_std": _std(r), "b_std": _b_std(r), "parameterization": r.choice(["ntk", "standard"])}
    if nd == 0:
        return ["Dense", [chan], kw]
    kind = r.choice(["Conv", "Conv", "ConvTranspose", "ConvLocal"])
    filt = [r.choice([1, 2, 3]) for _ in range(nd)]
    strides = r.choice([None, [r.choice([1, 2]) for _ in range(nd)]])
    padding = r.choice(_paddings(masked))
    if kind == "ConvLocal":
        filt = [filt[0]] * nd
        strides = None if strides is None else [strides[0]] * nd
    return [kind, [chan, filt], {"strides": strides, "padding": padding, **kw}]


def _same(r: random.Random, nd: int, chan: int, masked: bool = False) -> list:
    """An affine layer that keeps the positions (for merges)."""
    kw = {"W_std": _std(r), "b_std": _b_std(r)}
    if nd == 0:
        return ["Dense", [chan], kw]
    filt = [r.choice([1, 2, 3]) for _ in range(nd)]
    return ["Conv", [chan, filt], {"padding": r.choice(_paddings(masked)[1:]), **kw}]


def _unit(r: random.Random, nd: int, masked: bool = False) -> list:
    # Masked: no FanInConcat (NT's concatenated mask has a channel axis, and
    # NT cannot pool a mask that has one).
    weights = [5, 1, 2, not masked, 1, nd == 1]
    kind = r.choices(["plain", "norm", "res", "cat", "prod", "attn"], weights)[0]
    if kind == "plain":
        layers = [_affine(r, nd, masked=masked), _activation(r, nd, zero_variance=masked)]
        if nd and r.random() < 0.4:
            window = [r.choice([1, 2]) for _ in range(nd)]
            kw = {
                "strides": r.choice([None, window]),
                "padding": r.choice(_paddings(masked)),
            }
            pool = r.choice(["AvgPool", "SumPool"])
            if pool == "AvgPool" and kw["padding"] == "SAME":
                kw["normalize_edges"] = r.choice([True, False])
            layers.append([pool, [window], kw])
        return layers
    if kind == "norm":
        axis = r.choice([[-1], list(range(1, nd + 2))]) if nd else [-1]
        norm = ["LayerNorm", [], {"axis": axis}]
        return [_affine(r, nd, masked=masked), norm, _activation(r, nd, zero_variance=masked)]
    if kind == "res":
        main = [_activation(r, nd, zero_variance=masked), _same(r, nd, 3, masked)]
        return [
            _same(r, nd, 3, masked),
            ["branch", [main, [["Identity", [], {}]]], "FanInSum"],
            _activation(r, nd, zero_variance=masked),
        ]
    if kind in ("cat", "prod"):
        chans = (3, 2) if kind == "cat" else (3, 3)
        branches = [
            [_same(r, nd, c, masked), _activation(r, nd, kind == "cat", masked)] for c in chans
        ]
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
        if name == "Elementwise":  # the record names its activation and dual
            made.append(stax.Elementwise(*ELEMENTWISE[args[0]]))
            continue
        args = [a if name == "Polynomial" else tup(a) for a in args]
        made.append(getattr(stax, name)(*args, **{k: tup(v) for k, v in kwargs.items()}))
    return stax.serial(*made)


def _attention(r: random.Random, nd: int, masked: bool = False) -> list:
    """A 1×1 Conv, GlobalSelfAttention (any mechanism and positional embedding)
    and an activation."""
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
    return [
        ["Conv", [chan, [1] * nd], {"W_std": _std(r), "b_std": _b_std(r)}],
        ["GlobalSelfAttention", [chan, chan, chan, r.choice([1, 2])], kw],
        _activation(r, nd, zero_variance=masked),
    ]


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
            layers += _attention(r, nd)
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


#: `Elementwise` activations with their duals: erf with the derivative kernel
#: by autodiff, sin with the derivative kernel given.
ELEMENTWISE = {
    "erf": (jax.scipy.special.erf, erf_nngp),
    "sin": (jnp.sin, sin_nngp, sin_d_nngp),
}


def draw_elementwise(seed: int) -> tuple[list, tuple]:
    """`draw`'s architecture with every activation replaced by an
    `Elementwise` one of `ELEMENTWISE` (a user's dual in any composition)."""
    r = random.Random(30_000 + seed)
    names = {a[0] for a in ACTIVATIONS}

    def swap(layers):
        out = []
        for rec in layers:
            if rec[0] == "branch":
                rec = ["branch", [swap(b) for b in rec[1]], rec[2]]
            elif rec[0] in names:
                rec = ["Elementwise", [r.choice(sorted(ELEMENTWISE))], {}]
            out.append(rec)
        return out

    layers, shape = draw(seed)
    return swap(layers), shape


def draw_masked(seed: int) -> tuple[list, tuple, tuple]:
    """``(layers, input_shape, padding)`` of a network for padded inputs: one to
    three units of `draw` or of `draw_mixing`'s attention, on sequences ``(7, 3)``
    or images ``(4, 5, 2)``, ``(5, 4, 2)``. ``padding = (axis, lengths1,
    lengths2)``: in row ``i`` of ``x1`` the positions past ``lengths1[i]``
    along spatial axis ``axis`` are padding (all channels), and so for ``x2``."""
    r = random.Random(10_000 + seed)
    shape = r.choice(((7, 3), (4, 5, 2), (5, 4, 2)))
    nd = len(shape) - 1
    layers = []
    for _ in range(r.choice([1, 2, 2, 3])):
        unit = _attention if r.random() < 0.2 else _unit
        layers += unit(r, nd, masked=True)
    layers.append([r.choice(["Flatten", "GlobalAvgPool", "GlobalSumPool"]), [], {}])
    layers.append(["Dense", [2], {"W_std": _std(r), "b_std": _b_std(r)}])
    axis = r.randrange(nd)
    lengths = [r.randint(1, shape[axis]) for _ in range(N1 + N2)]
    return layers, shape, (axis, lengths[:N1], lengths[N1:])


def draw_graph(seed: int) -> tuple[list, tuple, dict]:
    """``(layers, input_shape, graph)`` of a graph network: a Dense (or, with
    dense adjacency on a grid, a Conv), then one to three units with
    `Aggregate` (plain, LayerNorm, residual, or in one of two merged
    branches), on node sets ``(6, 3)`` or ``(4, 3, 2)`` grids aggregated over
    one axis or both. ``graph = {"agg", "sparse", "masked"}``: the aggregated
    axes, edge lists (else weighted adjacency) and padded nodes."""
    r = random.Random(20_000 + seed)
    shape, aggs = r.choice((((6, 3), [(1,)]), ((4, 3, 2), [(1,), (2,), (1, 2)])))
    agg = r.choice(aggs)
    nd = len(shape) - 1
    sparse = r.random() < 0.35
    masked = r.random() < 0.3
    if len(agg) == 1:
        axis = r.choice([agg[0], agg[0] - nd - 2])  # counted from the front or the back
        if nd == 2 and r.random() < 0.3:
            axis = [agg[0]]
    else:
        axis = r.choice([list(agg), None])
    impl = "SPARSE" if sparse else "DENSE"
    aggregate = ["Aggregate", [], {"aggregate_axis": axis, "implementation": impl}]

    def affine(chan: int = 4) -> list:
        kw = {"W_std": _std(r), "b_std": _b_std(r)}
        # Edge lists only after a Dense: after a Conv NT indexes the reversed
        # spatial axes it stores (README, Aggregate).
        if nd == 1 or sparse or r.random() < 0.6:
            return ["Dense", [chan], {**kw, "parameterization": r.choice(["ntk", "standard"])}]
        filt = [r.choice([1, 2]) for _ in range(nd)]
        return ["Conv", [chan, filt], {"padding": r.choice(["SAME", "CIRCULAR"]), **kw}]

    def act(concat: bool = False) -> list:
        return _activation(r, nd, concat, zero_variance=True)

    layers = [affine()]
    for _ in range(r.choice([1, 2, 2, 3])):
        kind = r.choices(["plain", "norm", "res", "cat", "prod"], [5, 1, 2, 1, 1])[0]
        if kind == "plain":
            layers += [aggregate, act(), affine()]
        elif kind == "norm":
            norm = ["LayerNorm", [], {"axis": r.choice([[-1], list(range(1, nd + 2))])}]
            layers += [aggregate, norm, act(), affine()]
        elif kind == "res":
            layers.append(
                ["branch", [[act(), aggregate, affine()], [["Identity", [], {}]]], "FanInSum"]
            )
        else:
            chans = (3, 2) if kind == "cat" else (4, 4)
            branches = [
                [aggregate, affine(chans[0]), act(kind == "cat")],
                [affine(chans[1]), act(kind == "cat")],
            ]
            merge = "FanInConcat" if kind == "cat" else "FanInProd"
            layers += [["branch", branches, merge], affine()]
    layers.append(act())
    layers.append([r.choice(["Flatten", "GlobalAvgPool", "GlobalSumPool"]), [], {}])
    layers.append(["Dense", [2], {"W_std": _std(r), "b_std": _b_std(r)}])
    return layers, shape, {"agg": agg, "sparse": sparse, "masked": masked}


SEEDS: tuple[int, ...] = tuple(range(40))
MIXING_SEEDS: tuple[int, ...] = tuple(range(16))
# Draws 5 and 17 are not valid networks: 5 overflows (NT returns NaN, ours
# raises FloatingPointError) and 17 has a VALID filter larger than its map.
MASKED_SEEDS: tuple[int, ...] = tuple(s for s in range(26) if s not in (5, 17))
GRAPH_SEEDS: tuple[int, ...] = tuple(range(24))
ELEMENTWISE_SEEDS: tuple[int, ...] = tuple(range(12))
X2_NONE = frozenset(
    [f"random_{seed:03d}" for seed in SEEDS if seed % 2 == 0]
    + [f"random_mixing_{seed:02d}" for seed in MIXING_SEEDS if seed % 2 == 0]
    + [f"random_masked_{seed:02d}" for seed in MASKED_SEEDS if seed % 2 == 0]
    + [f"random_graph_{seed:02d}" for seed in GRAPH_SEEDS if seed % 2 == 0]
    + [f"random_elementwise_{seed:02d}" for seed in ELEMENTWISE_SEEDS if seed % 2 == 0]
)

MASK = -100.0  # the value of padding in the masked and graph draws


def _seed(name: str, kind: str):
    """The seed of a ``random_{kind}_*`` name, None for the other draws."""
    head = f"random_{kind}_"
    return int(name[len(head) :]) if name.startswith(head) else None


def draw_inputs(name: str, input_shape: tuple):
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2, *input_shape)``; in
    the masked draws, the padding (`draw_masked`) set to ``MASK``. The graph
    draws have ``N1`` rows in ``x2`` too (the fixture stacks the two patterns),
    and padded graphs the nodes past a random size (at least one) set to
    ``MASK``."""
    masked, graph = _seed(name, "masked"), _seed(name, "graph")
    x1, x2 = normal_inputs(name, input_shape, N1, N1 if graph is not None else N2)
    if masked is not None:
        axis, lengths1, lengths2 = draw_masked(masked)[2]
        for x, lengths in ((x1, lengths1), (x2, lengths2)):
            for i, n in enumerate(lengths):
                np.moveaxis(x[i], axis, 0)[n:] = MASK
    if graph is not None and draw_graph(graph)[2]["masked"]:
        rng = np.random.default_rng(zlib.crc32(("nodes/" + name).encode()))
        for x in (x1, x2):
            for i, n in enumerate(rng.integers(1, input_shape[0] + 1, len(x))):
                x[i, n:] = MASK
    return x1, x2


def kernel_kwargs(name: str, x1, x2) -> dict:
    """``mask_constant`` for the masked draws; for the graph draws the
    ``pattern`` pair (``(pattern1, pattern1)`` when ``x2`` is None), and
    ``mask_constant`` for padded graphs; nothing for the others."""
    if _seed(name, "masked") is not None:
        return {"mask_constant": MASK}
    seed = _seed(name, "graph")
    if seed is None:
        return {}
    layers, shape, graph = draw_graph(seed)
    rng = np.random.default_rng(zlib.crc32(("pattern/" + name).encode()))
    agg_shape = tuple(shape[a - 1] for a in graph["agg"])
    pattern = sparse_pattern if graph["sparse"] else dense_pattern
    p1, p2 = (pattern(rng, N1, agg_shape) for _ in range(2))
    kwargs = {"pattern": (p1, p1 if x2 is None else p2)}
    return kwargs | ({"mask_constant": MASK} if graph["masked"] else {})


def _builders(stax) -> dict:
    """``name -> (thunk building the layer, input_shape)``; builds nothing."""
    out = {}
    for seed in SEEDS:
        layers, shape = draw(seed)
        out[f"random_{seed:03d}"] = (lambda layers=layers: build_layers(stax, layers), shape)
    for seed in MIXING_SEEDS:
        layers, shape = draw_mixing(seed)
        out[f"random_mixing_{seed:02d}"] = (lambda layers=layers: build_layers(stax, layers), shape)
    for seed in MASKED_SEEDS:
        layers, shape, _ = draw_masked(seed)
        out[f"random_masked_{seed:02d}"] = (lambda layers=layers: build_layers(stax, layers), shape)
    for seed in GRAPH_SEEDS:
        layers, shape, _ = draw_graph(seed)
        out[f"random_graph_{seed:02d}"] = (lambda layers=layers: build_layers(stax, layers), shape)
    for seed in ELEMENTWISE_SEEDS:
        layers, shape = draw_elementwise(seed)
        name = f"random_elementwise_{seed:02d}"
        out[name] = (lambda layers=layers: build_layers(stax, layers), shape)
    return out


names, input_shape, build, architectures, options = accessors(_builders)
