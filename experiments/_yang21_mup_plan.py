"""Plans of yang21_mup's parts: the steps a run jits, for `python -m experiments plan`
(the Word2Vec and MAML limits' plans among them).

Each function gives one part's jitted steps with abstract arguments and call
counts (`experiments.plan`); `python -m experiments plan yang21_mup` prints them.
Registered on the experiment when `experiments.yang21_mup` is imported.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import _yang21_deep as deep
from experiments._yang21_maml import maml_array_dtype, maml_precision, maml_dataset
from experiments._yang21_word2vec import planted_corpus
from experiments.yang21_mup import (
    COORD,
    DICHOTOMY,
    EXPERIMENT,
    mlp,
)
from ntk import mup
from ntk.mup import limits, maml, word2vec


def _sgd_step(net, lr):
    """One full-batch μP SGD step on the MSE (the scan body of parts (a)–(c))."""
    opt = mup.sgd(lr, net.info)

    def step(w, s, x, t):
        def loss(w):
            return 0.5 * jnp.mean(jnp.sum((net.apply_fn(w, x) - t) ** 2, -1))

        u, s = opt.update(jax.grad(loss)(w), s, w)
        return optax.apply_updates(w, u), s

    return step, opt


def _abstract_net(net, x):
    from experiments.plan import KEY

    w = jax.eval_shape(
        lambda k, a: jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), net.init(k, a)), KEY, x
    )
    return w


@EXPERIMENT.plan("dichotomy", not_covered="loading and pooling MNIST-5k (numpy) and the slope fits")
def dichotomy_plan(config) -> list:
    from experiments.plan import Step, shaped

    x, t = shaped((config.dich_points, 196)), shaped((config.dich_points, 10))
    base = min(config.dich_widths)
    steps = []
    for label, name, depth, c in DICHOTOMY:
        p = mup.abc(name, depth, c=c)
        for n in config.dich_widths:
            net = mup.parametrize(mlp(n, depth), p, base_width=base)
            step, opt = _sgd_step(net, config.dich_lr)
            w = _abstract_net(net, x)
            steps.append(
                Step(
                    f"{label} SGD step n={n}",
                    step,
                    (w, jax.eval_shape(opt.init, w), x, t),
                    count=config.dich_seeds * config.dich_steps,
                )
            )
    return steps


@EXPERIMENT.plan("mutransfer", not_covered="loading and pooling MNIST-5k (numpy)")
def mutransfer_plan(config) -> list:
    from experiments.plan import Step, shaped

    x, t = shaped((config.mut_points, 196)), shaped((config.mut_points, 10))
    lrs = shaped((len(config.mut_log2_lrs),))
    base = min(config.mut_widths)
    steps = []
    for label, p in (
        ("SP", mup.abc("sp", 2, c=0.0)),
        ("muP", mup.abc("mup", 2, zero_readout=True)),
    ):
        for n in config.mut_widths:
            net = mup.parametrize(mlp(n, 2), p, base_width=base)
            w = _abstract_net(net, x)
            state = jax.eval_shape(mup.sgd(1.0, net.info).init, w)
            stack = lambda tree: jax.tree_util.tree_map(  # noqa: E731
                lambda a: shaped((lrs.shape[0],) + a.shape, a.dtype), tree
            )

            def vstep(ws, ss, lr, a, b, net=net):
                return jax.vmap(lambda w_, s_, r: _sgd_step(net, r)[0](w_, s_, a, b))(ws, ss, lr)

            steps.append(
                Step(
                    f"{label} SGD step × {lrs.shape[0]} LRs n={n}",
                    vstep,
                    (stack(w), stack(state), lrs, x, t),
                    count=config.mut_steps,
                )
            )
    return steps


@EXPERIMENT.plan(
    "coord_check",
    not_covered="loading MNIST-5k and the per-layer RMS bookkeeping of mup.coord_check",
)
def coord_check_plan(config) -> list:
    from experiments.plan import Step, shaped

    x, t = shaped((config.cc_points, 196)), shaped((config.cc_points, 10))
    base = min(config.cc_widths)
    steps = []
    for label, p, lr in COORD:
        for n in config.cc_widths:
            net = mup.parametrize(mlp(n, 2), p, base_width=base)
            step, opt = _sgd_step(net, lr)
            w = _abstract_net(net, x)
            steps.append(
                Step(
                    f"{label} SGD step n={n}",
                    step,
                    (w, jax.eval_shape(opt.init, w), x, t),
                    count=3 * config.cc_seeds,
                )
            )
    return steps


# ------------------------------------------------ (d) Word2Vec and MAML limits

#: text8's token count (Mahoney's 100 MB Wikipedia dump, words): the Word2Vec
#: plan's upper bound on the corpus when data_dir holds text8 (the vocabulary cap
#: drops some of them).
TEXT8_TOKENS = 17_005_207

WORD2VEC_NOT_PLANNED = (
    "building the corpus and the CBOW batches (numpy; the offline "
    "corpus is generated at plan time to learn its vocabulary) and the "
    "analogy scoring of each Gram matrix (numpy)"
)
MAML_NOT_PLANNED = (
    "sampling the tasks (numpy; the dataset is loaded at plan time for its "
    "input dimension) and the accuracy bookkeeping"
)


def _w2v_sizes(config) -> tuple[int, int]:
    """(vocabulary V, tokens per epoch) of the Word2Vec corpus: text8 capped at
    ``w2v_max_vocab`` (tokens: text8's, an upper bound) with ``data_dir``, else
    the generated corpus's own, after subsampling (``w2v_subsample``) its
    expected number of kept tokens, which is what sets the steps per epoch."""
    if config.data_dir is not None:
        return config.w2v_max_vocab, TEXT8_TOKENS
    corpus = planted_corpus(config)
    tokens = len(corpus.tokens)
    if config.w2v_subsample:
        counts = np.bincount(np.asarray(corpus.tokens), minlength=len(corpus.vocab))
        tokens = float(counts @ word2vec.keep_probability(counts, config.w2v_subsample))
    return len(corpus.vocab), int(tokens)


def word2vec_plan(config) -> list:
    """CBOW steps (`ntk.mup.word2vec.cbow_step`) of the limit (a V-dim basis),
    the μP widths and the NTK-parametrized widths: epochs × tokens / batch each
    (at most w2v_max_steps)."""
    from experiments.plan import Step, shaped

    V, tokens = _w2v_sizes(config)
    b, c = config.w2v_batch, 2 * config.w2v_window
    batch = (
        shaped((b, c), jnp.int32),
        shaped((b, c)),
        shaped((b,), jnp.int32),
        shaped((b, config.w2v_negatives), jnp.int32),
        1.0,
        0.1,
    )
    count = config.w2v_epochs * (tokens // b)
    if config.w2v_max_steps:
        count = min(count, config.w2v_max_steps)
    steps = []
    for label, n in (
        [("limit", V)]
        + [(f"μP n={n}", n) for n in config.w2v_widths]
        + [(f"NTK n={n}", n) for n in config.w2v_ntk_widths]
    ):
        emb = (shaped((V, n)), shaped((V, n)))
        steps.append(Step(f"CBOW step {label}", word2vec.cbow_step, (emb,) + batch, count=count))
    return steps


def maml_plan(config) -> list:
    """First-order MAML meta-steps of the limit and each width (maml_steps each),
    the evaluations and the kernel baselines on the test tasks (a `jax.lax.map`
    over tasks, whose body XLA's cost analysis counts once: counted per task)."""
    from experiments.plan import KEY, Step, shaped

    # only the input dimension is read, and it does not depend on how many
    # characters are drawn: a small stand-in spares rendering them all
    small = dataclasses.replace(config, maml_classes=min(config.maml_classes, 15), maml_per_class=2)
    ds = maml_dataset(small)
    d, N, Q = ds.x_train.shape[1], 5, config.maml_query
    # the part's dtype (float64 at the full size, as TP4), so that the
    # memory and bytes are those of the run
    dtype = maml_array_dtype(config)

    def tasks(T):
        return (
            shaped((T, N, d), dtype),
            shaped((T, N), jnp.int32),
            shaped((T, N * Q, d), dtype),
            shaped((T, N * Q), jnp.int32),
        )

    eps, clip = config.maml_inner_lr, config.maml_clip
    s_u, s_v = config.maml_sigma_u, config.maml_sigma_v
    with maml_precision(config):
        lim = jax.eval_shape(lambda: limits.init_limit(d, N, s_u, s_v, dtype=dtype))
        nets = {
            n: jax.eval_shape(
                lambda k, n=n: limits.finite_network(k, d, N, n, 1.0, 1.0, dtype), KEY
            )
            for n in config.maml_widths
        }
    test = tasks(config.maml_test_tasks)
    # the meta-lr is an argument of the run's compiled step (its schedule
    # changes the value, not the cost)
    steps = [
        Step(
            "limit meta-step",
            lambda s, t, lr: limits.limit_maml_step(s, t, eps, lr, clip=clip),
            (lim, tasks(config.maml_batch), shaped((), dtype)),
            count=config.maml_steps,
        ),
        Step(
            "limit evaluation (per task: lax.map)",
            lambda s, t: maml.query_logits(limits.limit_maml_adapt, s, eps, *t[:3]),
            (lim, test),
            count=2 * config.maml_test_tasks,
        ),
    ]
    for n, net in nets.items():
        steps += [
            Step(
                f"meta-step n={n}",
                lambda s, t, lr: limits.finite_maml_step(s, t, eps, lr, clip=clip),
                (net, tasks(config.maml_batch), shaped((), dtype)),
                count=config.maml_steps,
            ),
            Step(
                f"evaluation n={n} (per task)",
                lambda s, t: maml.query_logits(limits.finite_maml_adapt, s, eps, *t[:3]),
                (net, test),
                count=config.maml_test_tasks,
            ),
        ]

    def baselines(xs, ys, xq):
        return maml.kernel_regression(xs, ys, xq, N)

    steps.append(
        Step(
            "NTK/NNGP/linear kernel regression (per task)",
            baselines,
            test[:3],
            count=config.maml_test_tasks,
        )
    )
    return steps


EXPERIMENT.plan("word2vec", not_covered=WORD2VEC_NOT_PLANNED)(word2vec_plan)
EXPERIMENT.plan("maml", not_covered=MAML_NOT_PLANNED)(maml_plan)
EXPERIMENT.plan("deep", not_covered=deep.NOT_PLANNED)(deep.deep_plan)
