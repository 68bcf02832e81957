"""Yang & Hu 2021 (TP4) §7: Word2Vec in the exact μP limit.

A part of the ``yang21_mup`` experiment: `experiments.yang21_mup` mixes
`Word2VecFields` into its Config, `FULL` / `TINY` / `SMOKE` into its sizes and
registers `word2vec_part` with the metric spec `WORD2VEC_METRICS`. It uses the
one-hidden-layer linear network whose μP limit `ntk.mup.limits` computes
exactly (TP4 App. H); the MAML part is `experiments._yang21_maml`.

**Word2Vec** (TP4 Fig. 1 and Table 2): CBOW with negative sampling
(`ntk.mup.word2vec`),
``score(ctx, w) = α·s·e_out[w] · mean(e_in[ctx])`` with ``s = 1/n`` and
lr ``η n`` at width n, ``s = 1``, lr ``η`` and ``e_in = σ_u I`` (one-hot
basis), ``e_out = 0`` in the limit. Analogy accuracy from the embedding
Gram matrix. The NTK and GP limits of the NTK parametrization are trained
too (`ntk.mup.word2vec.train_kernel_limit`: kernel gradient descent on the
scores from an NNGP sample, same corpus and schedule); their input
embeddings keep the Gram ``I`` (TP4 Cor. 3.9: no feature learning), and
scoring analogies on the trained run's word vectors gives 0. Data:
text8 + questions-words.txt from ``data_dir``, else a generated corpus with
planted analogies (`ntk.data.text.planted_analogy_corpus`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import results
from experiments.registry import Result, Run
from ntk.data import text
from ntk.mup import limits, word2vec
from ntk.power_law import loglog_slope

#: TP4's Word2Vec analogy accuracies (%) at the last epoch, read from the
#: paper's plot (about ±0.3 points): text8 trained 15 epochs, fil9 5 epochs
#: (the fil9 rows stand beside the run's own corpus, not compared).
PAPER_W2V = {"limit": 43.31, 64: 33.4, 256: 41.6, 1024: 42.6}
PAPER_W2V_FIL9 = {"limit": 56.4, 64: 44.4, 256: 54.2, 1024: 55.7}
#: TP4's Word2Vec settings (CBOW, negative sampling; TP4's fork of word2vec.c).
#: Applied by the full size: window, negatives, epochs, subsampling t = 1e-4
#: (word2vec.c's keep probability, `ntk.mup.word2vec.keep_probability`; all
#: runs) and weight decay 1e-3 (word2vec.c's per-use L2, `cbow_step`; the μP
#: runs only, as in TP4: λ for the limit, λ/n at width n, whose rate is η n;
#: it has no NTK/GP kernel limit, so the NTK-parametrized runs have none).
#: Recorded only: the learning rate, which stays in our units. TP4's widths
#: (embeddings ũ of variance 1/n, no score multiplier, rate α) are ours
#: (σ_u = 1, scale 1/n, rate η n) with u = √n ũ and η = α per step, and its
#: limit (one-hot e_in, rate α) is ours too; but α = 0.05 is per example
#: (Hogwild SGD, one context at a time, window shrunk at random) and η acts on
#: the mean over a batch of B, so to first order η ≈ α B = 6.4 at B = 128
#: (then TP4's per-use decay factor 1 − αλ is our 1 − ηλ/B). We keep η = 15,
#: picked on the stand-in corpus. And the vocabulary: a dense limit over
#: text8's 142,582 words (142,582² matrices, 163 GB each in float64) does not
#: fit: ``w2v_max_vocab`` caps it.
PAPER_W2V_SETTINGS = {
    "window": 8,
    "negatives": 25,
    "subsampling": 1e-4,
    "learning_rate": 0.05,
    "weight_decay": 0.001,
    "epochs": {"text8": 15, "fil9": 5},
    "text8_vocab": 142_582,
}


@dataclasses.dataclass(frozen=True)
class Word2VecFields:
    """Config fields of the Word2Vec part (defaults = quick size).

    w2v_*: corpus (planted: topics × modifiers analogy words, tokens, Zipf
      exponent of word frequencies), CBOW window, negatives, batch, epochs,
      learning rate η (linearly decayed, as word2vec), widths, text8 vocab cap;
      w2v_max_steps > 0 stops each training run after that many SGD steps;
      w2v_subsample > 0: word2vec's subsampling threshold t (every run; 0:
      off); w2v_weight_decay: word2vec's per-use L2 λ of the μP runs (λ/n at
      width n; 0: off).
    data_dir: text8 location (None: the offline stand-in).
    """

    data_dir: str | None = None
    w2v_topics: int = 20
    w2v_modifiers: int = 6
    w2v_tokens: int = 50_000
    w2v_zipf: float = 1.0
    w2v_window: int = 2
    w2v_negatives: int = 5
    w2v_batch: int = 128
    w2v_epochs: int = 4
    w2v_lr: float = 15.0
    w2v_widths: tuple[int, ...] = (64, 256, 1024)
    w2v_max_vocab: int = 3_000
    w2v_max_steps: int = 0
    w2v_ntk_widths: tuple[int, ...] = (64, 1024)
    w2v_subsample: float = 0.0
    w2v_weight_decay: float = 0.0


#: The full and tiny sizes of these fields (changes to the defaults above).
FULL = dict(
    w2v_tokens=200_000,
    w2v_epochs=PAPER_W2V_SETTINGS["epochs"]["text8"],
    w2v_window=PAPER_W2V_SETTINGS["window"],
    w2v_negatives=PAPER_W2V_SETTINGS["negatives"],
    w2v_widths=(64, 128, 256, 512, 1024),
    w2v_ntk_widths=(64, 256, 1024, 4096),
    w2v_max_vocab=10_000,
    w2v_subsample=PAPER_W2V_SETTINGS["subsampling"],
    w2v_weight_decay=PAPER_W2V_SETTINGS["weight_decay"],
)
TINY = dict(
    w2v_topics=8,
    w2v_modifiers=4,
    w2v_tokens=12_000,
    w2v_epochs=3,
    w2v_widths=(256,),
    w2v_ntk_widths=(64, 1024),
)
#: ``--full --smoke``: one SGD step of each Word2Vec run.
SMOKE = dict(w2v_epochs=1, w2v_max_steps=1)

# ------------------------------------------------------------------ Word2Vec


def cbow_settings(config) -> dict:
    """The config's word2vec settings, as `ntk.mup.word2vec.train_cbow` keywords
    (all but the weight decay, which only the μP runs take: `train_cbow`)."""
    return dict(
        window=config.w2v_window,
        batch_size=config.w2v_batch,
        negatives=config.w2v_negatives,
        epochs=config.w2v_epochs,
        max_steps=config.w2v_max_steps or None,
        subsample=config.w2v_subsample or None,
    )


def train_cbow(params, corpus, config, scale, lr, seed, desc="", weight_decay=0.0):
    """`ntk.mup.word2vec.train_cbow` with the config's word2vec settings and
    ``weight_decay`` (in the units of ``lr``: ``w2v_weight_decay / n`` at μP
    width n)."""
    return word2vec.train_cbow(
        params,
        corpus,
        scale=scale,
        learning_rate=lr,
        seed=seed,
        progress=desc,
        weight_decay=weight_decay,
        **cbow_settings(config),
    )


def planted_corpus(config):
    """The offline Word2Vec corpus: planted analogies (``w2v_*`` fields)."""
    return text.planted_analogy_corpus(
        n_topics=config.w2v_topics,
        n_modifiers=config.w2v_modifiers,
        words_per_attribute=8,
        n_filler=200,
        n_tokens=config.w2v_tokens,
        filler_prob=0.5,
        zipf=config.w2v_zipf,
        seed=config.seed,
    )


def run_word2vec(config, key, progress) -> dict:
    """μP limit vs finite widths vs NTK/GP limits on analogy accuracy."""
    if config.data_dir is not None:
        try:
            corpus = text.text8(config.data_dir, max_vocab=config.w2v_max_vocab)
        except ValueError as missing:
            # data_dir may hold only the other parts' data (Omniglot): say so
            # here; the run's data line records the stand-in too.
            print(f"word2vec: {missing} Using the planted-analogy stand-in corpus.")
            corpus = None
    else:
        corpus = None
    if corpus is None:
        corpus = planted_corpus(config)
    V = len(corpus.vocab)
    out = {
        "corpus": corpus.name,
        "vocab": V,
        "tokens": int(len(corpus.tokens)),
        "questions": int(len(corpus.questions)),
    }
    # μP limit: compact zero-readout basis (h = V), e_in = W^T, e_out = C^T.
    # Weight decay (word2vec's per-use L2, TP4's μP runs): λ at the limit's
    # rate η; λ/n at width n, whose rate is η n (the same shrink per use).
    lim = limits.init_limit(V, V, 1.0, 0.0, compact=True)
    t0 = time.time()
    (e_in, e_out), loss = train_cbow(
        (lim.W.T, lim.C.T),
        corpus,
        config,
        1.0,
        config.w2v_lr,
        config.seed,
        "w2v limit",
        weight_decay=config.w2v_weight_decay,
    )
    gram = np.asarray(e_in @ e_in.T)
    out["limit"] = {
        "accuracy": 100 * text.analogy_accuracy(gram, corpus.questions),
        "output_accuracy": _output_accuracy(e_out, corpus),
        "loss": loss,
        "basis": V,
        "seconds": time.time() - t0,
    }
    out["finite"] = {}
    for i, n in enumerate(progress(config.w2v_widths, "μP n")):
        net = limits.finite_network(jax.random.fold_in(key, i), V, V, n, 1.0, 0.0)
        (e_in, _), loss = train_cbow(
            (net.u.T, net.v.T),
            corpus,
            config,
            1.0 / n,
            config.w2v_lr * n,
            config.seed,
            f"w2v n={n}",
            weight_decay=config.w2v_weight_decay / n,
        )
        gram = np.asarray(e_in @ e_in.T) / n
        out["finite"][str(n)] = {
            "accuracy": 100 * text.analogy_accuracy(gram, corpus.questions),
            "loss": loss,
        }
    # NTK parametrization at finite width (score = e_outᵀh/√n, N(0, 1)
    # embeddings, lr η): the embeddings move by ‖ΔE‖/‖E‖ = O(n^{-1/2}) —
    # measured — so in the NTK and GP limits their Gram stays σ_u² I. No weight
    # decay here: it would shrink them by O(1) and has no kernel limit
    # (`ntk.mup.word2vec.train_kernel_limit`); TP4 decays its μP runs only.
    out["ntk_finite"] = {}
    for i, n in enumerate(progress(config.w2v_ntk_widths, "NTK n")):
        k_in, k_out = jax.random.split(jax.random.fold_in(key, 500 + i))
        e_in0 = jax.random.normal(k_in, (V, n))
        e_out0 = jax.random.normal(k_out, (V, n))
        (e_in, _), loss = train_cbow(
            (e_in0, e_out0),
            corpus,
            config,
            1.0 / math.sqrt(n),
            config.w2v_lr,
            config.seed,
            f"w2v NTK n={n}",
        )
        g1 = np.asarray(e_in @ e_in.T) / n
        out["ntk_finite"][str(n)] = {
            "embedding_movement": float(jnp.linalg.norm(e_in - e_in0) / jnp.linalg.norm(e_in0)),
            "accuracy": 100 * text.analogy_accuracy(g1, corpus.questions),
            "loss": loss,
        }
    ws = [int(n) for n in out["ntk_finite"]]
    if len(ws) > 1:
        mv = [out["ntk_finite"][str(n)]["embedding_movement"] for n in ws]
        out["ntk_movement_slope"] = loglog_slope(ws, mv)
    # The NTK and GP limits themselves, trained (`ntk.mup.word2vec.train_kernel_limit`):
    # kernel gradient descent on the score matrix from an NNGP sample; the word
    # vectors (rows of e_in) stay one-hot, and analogies are scored on them.
    for i, kernel in enumerate(progress(("ntk", "gp"), "kernel limit")):
        t0 = time.time()
        (e_in, e_out), loss = word2vec.train_kernel_limit(
            corpus,
            kernel=kernel,
            key=jax.random.fold_in(key, 900 + i),
            learning_rate=config.w2v_lr,
            seed=config.seed,
            progress=f"w2v {kernel} limit",
            **cbow_settings(config),
        )
        out[f"{kernel}_limit"] = {
            "accuracy": 100 * text.analogy_accuracy(np.asarray(e_in @ e_in.T), corpus.questions),
            "output_accuracy": _output_accuracy(e_out, corpus),
            "loss": loss,
            "score_rate": word2vec.KERNEL_LIMIT_RATE[kernel] * config.w2v_lr,
            "seconds": time.time() - t0,
        }
    return out


def _output_accuracy(e_out, corpus) -> float:
    """Analogy accuracy (%) of the output embeddings' rows (cosine Gram)."""
    gram = np.asarray(e_out @ e_out.T, np.float64)
    return 100 * text.analogy_accuracy((gram + gram.T) / 2, corpus.questions)


def part_key(config):
    """This part's PRNG key: the first of the split of the experiment's key folded
    with 100 (the Word2Vec and MAML parts share that split)."""
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 100))[0]


WORD2VEC_METRICS = {
    "limits": {
        "word2vec": (
            "analogy accuracy (%) and loss of the μP limit, finite μP widths, finite NTK "
            "widths (with embedding movement) and the trained NTK and GP limits (ntk_limit, "
            "gp_limit: accuracy of the input word vectors, output_accuracy of the output "
            "embeddings, loss, score_rate); corpus facts"
        )
    }
}


def word2vec_part(run: Run) -> Result:
    """Word2Vec (CBOW-NS) in the exact μP limit vs finite widths vs NTK/GP."""
    config = run.config
    t0 = time.time()
    w2v = run_word2vec(config, part_key(config), run.progress)
    w2v["seconds_total"] = time.time() - t0

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ws = [int(n) for n in w2v["finite"]]
    ax.plot(ws, [w2v["finite"][str(n)]["accuracy"] for n in ws], "o-", label="finite μP")
    ax.axhline(w2v["limit"]["accuracy"], color="C3", ls="--", label="μP limit")
    ax.axhline(w2v["ntk_limit"]["accuracy"], color="k", ls=":", label="NTK / GP limits (trained)")
    # TP4's numbers on text8 (ours are on the run's own corpus)
    results.draw_paper(
        ax,
        "TP4, text8",
        points={k: v for k, v in PAPER_W2V.items() if isinstance(k, int)},
        lines=[("μP limit", PAPER_W2V["limit"], "--")],
    )
    ax.set(
        xscale="log",
        xlabel="width n",
        ylabel="analogy accuracy (%)",
        title=f"Word2Vec (CBOW-NS), {w2v['corpus']}",
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.set_size_inches(8, 3.8)
    fig.tight_layout()
    run.save_figure(fig, "yang21_word2vec.png")

    real = w2v["corpus"].startswith("text8")
    sub, wd = config.w2v_subsample, config.w2v_weight_decay
    ours_sub_wd = (
        f"ours: subsampling {f'{sub:g}' if sub else 'off'}, weight decay "
        f"{f'{wd:g}' if wd else 'off'} on the μP runs"
        if sub or wd
        else "ours has neither"
    )
    note = (
        f"ours on {w2v['corpus']}, {config.w2v_epochs} epochs, window "
        f"{config.w2v_window}, {config.w2v_negatives} negatives; paper: text8, 15 "
        f"epochs, window 8, 25 negatives, subsampling 1e-4, weight decay 1e-3 "
        f"({ours_sub_wd}); TP4 Word2Vec figure, read from the plot"
    )
    why = "ours on a planted-analogy stand-in corpus, the paper on text8"

    def vs_paper(quantity, paper, ours, theory):
        # 3 points: the spread of the paper's own accuracies between neighbouring
        # widths (41.6 → 42.6 → 43.3)
        if real:
            return results.comparison(quantity, paper, ours, note, theory=theory, within=3.0)
        return results.comparison(quantity, paper, ours, note, theory=theory, not_comparable=why)

    lim_acc = w2v["limit"]["accuracy"]
    # (paper key, label, ours, theory) of each setting TP4 plots that the run has
    settings = [("limit", "muP limit", lim_acc, "the width → ∞ limit of the μP rows")]
    settings += [
        (
            n,
            f"width {n}",
            w2v["finite"][str(n)]["accuracy"],
            f"→ μP limit ({lim_acc:.1f} here) as n → ∞",
        )
        for n in (64, 256, 1024)
        if str(n) in w2v["finite"]
    ]
    rows = [
        vs_paper(f"word2vec analogy acc, {label} (%)", PAPER_W2V[key], ours, theory)
        for key, label, ours, theory in settings
    ]
    # TP4's fil9 curves: the run never trains on fil9, so each is shown beside
    # the same setting on the run's own corpus, not compared
    rows += [
        results.comparison(
            f"word2vec analogy acc on fil9, {label} (%)",
            PAPER_W2V_FIL9[key],
            ours,
            f"paper: fil9, 5 epochs, TP4 Word2Vec figure, read from the plot; ours: no fil9 "
            f"run, so the run's closest setting: {label}, on {w2v['corpus']}, "
            f"{config.w2v_epochs} epochs (the row 'word2vec analogy acc, {label} (%)')",
            theory=theory,
            not_comparable=f"ours on {w2v['corpus']}, the paper on fil9",
        )
        for key, label, ours, theory in settings
    ]
    ntk_lim, gp_lim = w2v["ntk_limit"], w2v["gp_limit"]
    rows.append(
        results.comparison(
            "word2vec analogy acc, NTK/GP limit (%)",
            "≈ 0 (chance: the embeddings do not move)",
            f"{ntk_lim['accuracy']:.1f} / {gp_lim['accuracy']:.1f}",
            "the limits trained on the same corpus and schedule as the μP rows: kernel "
            "gradient descent on the CBOW scores from an NNGP sample (NTK: score rate 2η, GP: η; "
            "the input embedding's features stay at init), accuracy of its word vectors; "
            f"last-batch loss NTK {ntk_lim['loss']:.2f}, GP {gp_lim['loss']:.2f} (μP limit "
            f"{w2v['limit']['loss']:.2f}); output-embedding accuracy NTK "
            f"{ntk_lim['output_accuracy']:.1f}, GP {gp_lim['output_accuracy']:.1f} (μP limit "
            f"{w2v['limit']['output_accuracy']:.1f})",
            theory="0 (TP4 Cor. 3.9: no feature learning)",
            holds=bool(ntk_lim["accuracy"] == 0.0 and gp_lim["accuracy"] == 0.0),
            rule="both trained limits answer no analogy",
        )
    )
    if "ntk_movement_slope" in w2v:
        # ±0.1: a slope fitted to two or more widths of one training run each
        rows.append(
            results.comparison(
                "word2vec NTK-param embedding movement |dE|/|E| vs width (log-log slope)",
                "embeddings frozen in the NTK limit (TP4 Cor. 3.9); not in the paper's tables",
                w2v["ntk_movement_slope"],
                "finite NTK-parametrized CBOW; movement -> 0 means frozen embeddings in the limit",
                theory=-0.5,
                against="theory",
                within=0.1,
            )
        )
    data = f"{w2v['corpus']} (" + ("real text8" if real else "offline stand-in for text8") + ")"
    return Result(metrics={"limits": {"word2vec": w2v}}, rows=rows, data=data)
