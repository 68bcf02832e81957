"""The exact μP limit of the one-hidden-layer linear network (ntk.mup.limits).

Finite μP networks are trained independently (fresh Gaussian init, μP SGD with
learning rate η·n) and compared with the limit trained by its own rule; their
outputs must approach the limit's with error ∝ n^{-1/2} (CLT of the Gram
matrix Z₀ᵀZ₀/n). Slopes are fitted on seed-averaged RMS errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk.data import fewshot, text
from ntk.mup import limits

D_IN, D_OUT = 5, 3
WIDTHS = (128, 512, 2048, 8192)
SEEDS = 4


def _regression_data():
    x = jax.random.normal(jax.random.PRNGKey(0), (8, D_IN)) / np.sqrt(D_IN)
    y = jax.random.normal(jax.random.PRNGKey(1), (8, D_OUT))
    x_test = jax.random.normal(jax.random.PRNGKey(2), (6, D_IN)) / np.sqrt(D_IN)
    return x, y, x_test


def _slope(widths, errors):
    return np.polyfit(np.log(widths), np.log(errors), 1)[0]


# An independent finite μP network for the convergence tests: width n_max
# arrays whose neurons beyond n are masked to zero (they get zero gradients and
# stay zero), so every width shares one compiled program. With n active
# neurons: f(x) = vᵀu x / n, SGD with learning rate η·n on u and v.
N_MAX = max(WIDTHS)


def _masked_init(key, n, sigma_v):
    ku, kv = jax.random.split(key)
    mask = (jnp.arange(N_MAX) < n)[:, None]
    return (
        jax.random.normal(ku, (N_MAX, D_IN)) * mask,
        sigma_v * jax.random.normal(kv, (N_MAX, D_OUT)) * mask,
    )


def _masked_apply(p, x, n):
    u, v = p
    return (x @ u.T) @ v / n


def _masked_grad(p, x, y, n, loss):
    return jax.grad(lambda p: loss(_masked_apply(p, x, n), y))(p)


def _seed_averaged_errors(train_and_predict, f_lim):
    """RMS distance to the limit, averaged over SEEDS networks per width."""
    keys = jax.random.split(jax.random.PRNGKey(100), SEEDS)
    widths = jnp.asarray(WIDTHS, jnp.float64)
    run = jax.jit(jax.vmap(jax.vmap(train_and_predict, (0, None)), (None, 0)))
    f = run(keys, widths)  # (widths, seeds, ...)
    rms = jnp.sqrt(jnp.mean((f - f_lim[None, None]) ** 2, axis=(2, 3)))
    return np.asarray(rms.mean(1))


@pytest.mark.parametrize("sigma_v", [1.0, 0.0])
def test_sgd_finite_outputs_converge_to_limit_like_inverse_sqrt_width(sigma_v):
    x, y, x_test = _regression_data()
    lr, steps = 0.5, 8
    lim = limits.init_limit(D_IN, D_OUT, 1.0, sigma_v, dtype=jnp.float64)
    for _ in range(steps):
        lim = limits.limit_sgd_step(lim, x, y, lr)
    f_lim = limits.limit_apply(lim, x_test)
    assert float(jnp.abs(f_lim).mean()) > 0.1  # the limit did learn something

    def train_and_predict(key, n):
        def step(_, p):
            g = _masked_grad(p, x, y, n, limits.mse_loss)
            return jax.tree.map(lambda a, b: a - lr * n * b, p, g)

        p = jax.lax.fori_loop(0, steps, step, _masked_init(key, n, sigma_v))
        return _masked_apply(p, x_test, n)

    errors = _seed_averaged_errors(train_and_predict, f_lim)
    assert abs(_slope(WIDTHS, errors) + 0.5) <= 0.15, errors


def _tasks(key, n_tasks):
    k1, k2, k3 = jax.random.split(key, 3)
    xs = jax.random.normal(k1, (n_tasks, 3, D_IN)) / np.sqrt(D_IN)
    xq = jax.random.normal(k2, (n_tasks, 6, D_IN)) / np.sqrt(D_IN)
    ys = jnp.tile(jnp.arange(3), (n_tasks, 1))
    yq = jax.random.randint(k3, (n_tasks, 6), 0, 3)
    return xs, ys, xq, yq


def _masked_maml_step(p, tasks, n, inner, outer, clip):
    """First-order MAML by hand: per-task inner SGD step, query gradient at
    the adapted weights, mean over tasks; clip ‖n·g‖/√n (the limit's norm)."""
    ce = limits.softmax_cross_entropy

    def task_grad(xs, ys, xq, yq):
        g = _masked_grad(p, xs, ys, n, ce)
        adapted = jax.tree.map(lambda a, b: a - inner * n * b, p, g)
        return _masked_grad(adapted, xq, yq, n, ce)

    g = jax.tree.map(lambda t: t.mean(0), jax.vmap(task_grad)(*tasks))
    if clip is not None:
        norm = jnp.sqrt(sum(jnp.sum((n * t) ** 2) for t in g) / n)
        g = jax.tree.map(lambda t: t * jnp.minimum(1.0, clip / norm), g)
    return jax.tree.map(lambda a, b: a - outer * n * b, p, g)


def _masked_adapt(p, xs, ys, xq, n, inner):
    g = _masked_grad(p, xs, ys, n, limits.softmax_cross_entropy)
    return _masked_apply(jax.tree.map(lambda a, b: a - inner * n * b, p, g), xq, n)


@pytest.mark.parametrize("clip", [None, 0.3])
def test_first_order_maml_finite_converges_to_limit_like_inverse_sqrt_width(clip):
    inner, outer, steps = 0.5, 0.5, 5
    batches = [_tasks(jax.random.PRNGKey(10 + t), 4) for t in range(steps)]
    xs, ys, xq, _ = _tasks(jax.random.PRNGKey(99), 3)
    lim = limits.init_limit(D_IN, D_OUT, 1.0, 1.0, dtype=jnp.float64)
    for t in batches:
        lim = limits.limit_maml_step(lim, t, inner, outer, clip=clip)
    f_lim = jax.vmap(lambda a, b, c: limits.limit_maml_adapt(lim, a, b, c, inner))(xs, ys, xq)
    f_lim = f_lim.reshape(-1, D_OUT)

    stacked = jax.tree.map(lambda *a: jnp.stack(a), *batches)

    def train_and_predict(key, n):
        p, _ = jax.lax.scan(
            lambda p, t: (_masked_maml_step(p, t, n, inner, outer, clip), None),
            _masked_init(key, n, 1.0),
            stacked,
        )
        f = jax.vmap(lambda a, b, c: _masked_adapt(p, a, b, c, n, inner))(xs, ys, xq)
        return f.reshape(-1, D_OUT)

    errors = _seed_averaged_errors(train_and_predict, f_lim)
    assert abs(_slope(WIDTHS, errors) + 0.5) <= 0.15, errors


@pytest.mark.parametrize("clip", [None, 0.05])
def test_library_finite_steps_match_the_independent_finite_network(clip):
    n = 64
    x, y, _ = _regression_data()
    u, v = _masked_init(jax.random.PRNGKey(5), N_MAX, 1.0)
    p = limits.FiniteParams(u[:n], v[:n])
    want = jax.tree.map(
        lambda a, b: a - 0.3 * n * b, tuple(p), _masked_grad(tuple(p), x, y, n, limits.mse_loss)
    )
    got = limits.finite_sgd_step(p, x, y, 0.3)
    np.testing.assert_allclose(got.u, want[0], rtol=1e-10, atol=1e-12)
    tasks = _tasks(jax.random.PRNGKey(6), 2)
    want = _masked_maml_step(tuple(p), tasks, n, 0.5, 0.4, clip)
    got = limits.finite_maml_step(p, tasks, 0.5, 0.4, clip=clip)
    np.testing.assert_allclose(got.u, want[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.v, want[1], rtol=1e-9, atol=1e-12)


def test_first_order_maml_step_equals_explicit_per_task_sgd():
    lim = limits.init_limit(D_IN, D_OUT, 1.0, 0.5, dtype=jnp.float64)
    tasks = _tasks(jax.random.PRNGKey(3), 3)
    new = limits.limit_maml_step(lim, tasks, 0.3, 0.2)
    # Brute force: inner step by hand, query gradient at the adapted point.
    grads = []
    for xs, ys, xq, yq in zip(*tasks):
        g_in = jax.grad(lambda p: limits.softmax_cross_entropy(limits.limit_apply(p, xs), ys))(lim)
        adapted = jax.tree.map(lambda p, g: p - 0.3 * g, lim, g_in)
        grads.append(
            jax.grad(lambda p: limits.softmax_cross_entropy(limits.limit_apply(p, xq), yq))(adapted)
        )
    want = jax.tree.map(lambda p, *g: p - 0.2 * sum(g) / 3, lim, *grads)
    np.testing.assert_allclose(new.W, want.W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.C, want.C, rtol=1e-10, atol=1e-12)


def test_limit_state_stays_in_basis_of_size_d_in_plus_d_out():
    x, y, _ = _regression_data()
    lim = limits.init_limit(D_IN, D_OUT, 1.0, 1.0)
    for _ in range(3):
        lim = limits.limit_sgd_step(lim, x, y, 0.5)
    assert lim.W.shape == (D_IN + D_OUT, D_IN)
    assert lim.C.shape == (D_IN + D_OUT, D_OUT)
    assert limits.basis_size(lim) == D_IN + D_OUT
    # Sampled finite networks lie in the span of the h = d_in + d_out basis
    # vectors ω: rank of [u v] is at most h however wide the network.
    net = limits.sample(lim, 512, jax.random.PRNGKey(0))
    assert np.linalg.matrix_rank(np.concatenate([net.u, net.v], 1)) <= D_IN + D_OUT


def test_zero_readout_compact_basis_keeps_dynamics():
    x, y, x_test = _regression_data()
    full = limits.init_limit(D_IN, D_OUT, 1.0, 0.0, dtype=jnp.float64)
    small = limits.init_limit(D_IN, D_OUT, 1.0, 0.0, compact=True, dtype=jnp.float64)
    for _ in range(4):
        full = limits.limit_sgd_step(full, x, y, 0.5)
        small = limits.limit_sgd_step(small, x, y, 0.5)
    assert limits.basis_size(small) == D_IN
    np.testing.assert_allclose(
        limits.limit_apply(small, x_test), limits.limit_apply(full, x_test), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("sigma_v", [0.0, 1.0])
def test_untrained_limit_is_the_zero_initial_function(sigma_v):
    _, _, x_test = _regression_data()
    lim = limits.init_limit(D_IN, D_OUT, 1.3, sigma_v)
    np.testing.assert_array_equal(limits.limit_apply(lim, x_test), 0.0)
    # ... which is where finite μP networks at init go: f₀ = vᵀu x / n → 0.
    sizes = [
        float(
            jnp.abs(
                limits.finite_apply(
                    limits.finite_network(jax.random.PRNGKey(s), D_IN, D_OUT, n, 1.3, 1.0), x_test
                )
            ).mean()
        )
        for n in (100, 10000)
        for s in range(1)
    ]
    assert sizes[1] < sizes[0] / 5


def test_sample_at_init_matches_finite_network_gram_law():
    # sample(init) has u = σ_u ω[:, :d]: its Gram uᵀu/n → σ_u² I (LLN).
    lim = limits.init_limit(D_IN, D_OUT, 2.0, 0.0)
    net = limits.sample(lim, 20000, jax.random.PRNGKey(4))
    np.testing.assert_allclose(
        limits.finite_feature_kernel(net), 4.0 * np.eye(D_IN), atol=6 * 4.0 / np.sqrt(20000)
    )
    np.testing.assert_allclose(limits.limit_feature_kernel(lim), 4.0 * np.eye(D_IN))


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="width"):
        limits.sample(limits.init_limit(2, 2), 0, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="compact"):
        limits.init_limit(2, 2, 1.0, 1.0, compact=True)
    with pytest.raises(ValueError, match="`x` must have shape"):
        limits.limit_apply(limits.init_limit(2, 2), jnp.ones((3, 5)))


# ------------------------------------------------------------------ data


def test_analogy_accuracy_is_zero_for_orthogonal_and_one_for_planted_vectors():
    corpus = text.planted_analogy_corpus(n_topics=4, n_modifiers=3, n_tokens=500)
    V = len(corpus.vocab)
    assert text.analogy_accuracy(np.eye(V), corpus.questions) == 0.0
    # Exact additive vectors e(a, b) = t_a + m_b (+ unrelated words orthogonal).
    rng = np.random.default_rng(0)
    t, m = rng.normal(size=(4, 50)), rng.normal(size=(3, 50))
    vecs = rng.normal(size=(V, 50))
    for a in range(4):
        for b in range(3):
            vecs[a * 3 + b] = t[a] + m[b]
    assert text.analogy_accuracy(vecs @ vecs.T, corpus.questions) == 1.0


def test_fewshot_tasks_use_disjoint_classes_and_permuted_labels():
    ds = fewshot.fewshot_dataset()
    assert not set(np.unique(ds.y_train)) & set(np.unique(ds.y_test))
    xs, ys, xq, yq = fewshot.sample_tasks(
        ds.x_train, ds.y_train, 3, n_way=5, k_shot=1, q_query=2, rng=np.random.default_rng(0)
    )
    assert xs.shape == (3, 5, ds.x_train.shape[1]) and xq.shape == (3, 10, xs.shape[2])
    assert sorted(ys[0]) == list(range(5))
    # No support image reappears among the queries of its task.
    assert not (np.abs(xs[0][:, None] - xq[0][None]).sum(-1) < 1e-9).any()


def test_text8_reader_keeps_top_vocab_and_in_vocab_questions(tmp_path):
    (tmp_path / "text8").write_text(" the king queen man woman the a the king man zebra")
    (tmp_path / "questions-words.txt").write_text(
        ": family\nking queen man woman\nking queen man zebra\n"
    )
    corpus = text.text8(tmp_path, max_vocab=5)
    assert corpus.vocab[0] == "the" and "zebra" not in corpus.vocab
    assert corpus.tokens.shape == (9,)  # "a" and "zebra" fall outside the top 5
    np.testing.assert_array_equal(
        corpus.questions, [[corpus.vocab.index(w) for w in ("king", "queen", "man", "woman")]]
    )
    with pytest.raises(ValueError, match="text8"):
        text.text8(tmp_path / "missing")


_LIM = limits.init_limit(2, 2)
_NET = limits.finite_network(jax.random.PRNGKey(0), 2, 2, 8)
_XB, _YB = jnp.ones((3, 2)), jnp.zeros((3, 2))
_TASKS = (
    jnp.ones((2, 3, 2)),
    jnp.zeros((2, 3), jnp.int32),
    jnp.ones((2, 4, 2)),
    jnp.zeros((2, 4), jnp.int32),
)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: limits.init_limit(0, 2), ValueError, "init_limit: `d_in` must be an int >= 1"),
        (lambda: limits.init_limit(2, 2, sigma_u=float("nan")), ValueError, "`sigma_u`"),
        (
            lambda: limits.finite_network(jax.random.PRNGKey(0), 2, 2, 8, sigma_v=-1.0),
            ValueError,
            "`sigma_v` must be a number >= 0",
        ),
        (lambda: limits.limit_apply(_NET, _XB), TypeError, "`state` must be a LimitState"),
        (lambda: limits.finite_apply(_NET, _XB * jnp.nan), ValueError, "`x` must be finite"),
        (
            lambda: limits.mse_loss(jnp.ones((3, 1)), jnp.ones(3)),
            ValueError,
            "`f` and `y` must have the same shape",
        ),
        (
            lambda: limits.softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([0, 3])),
            ValueError,
            r"`y` must be integer labels in \[0, 3\)",
        ),
        (
            lambda: limits.limit_sgd_step(_LIM, _XB, _YB, 0.1, loss="mse"),
            TypeError,
            "`loss` must be a function",
        ),
        (
            lambda: limits.finite_sgd_step(_NET, jnp.ones((3, 5)), _YB, 0.1),
            ValueError,
            r"`x` must have shape \(batch, 2\)",
        ),
        (lambda: limits.limit_maml_step(_LIM, _TASKS[:3], 0.1, 0.1), ValueError, "`tasks` must be"),
        (
            lambda: limits.limit_maml_step(_LIM, (jnp.ones((2, 3, 5)),) + _TASKS[1:], 0.1, 0.1),
            ValueError,
            r"`x_support` must have shape \(tasks, shots, 2\)",
        ),
        (
            lambda: limits.finite_maml_step(_NET, _TASKS, 0.1, 0.1, inner_steps=-1),
            ValueError,
            "`inner_steps` must be an int >= 0",
        ),
        (
            lambda: limits.finite_maml_step(_NET, _TASKS, 0.1, 0.1, clip=0.0),
            ValueError,
            "`clip` must be a number > 0",
        ),
        (
            lambda: limits.limit_maml_adapt(
                _LIM, _TASKS[0][0], _TASKS[1][0], jnp.ones((4, 3)), 0.1
            ),
            ValueError,
            r"`x_query` must have shape \(batch, 2\)",
        ),
    ],
)
def test_limit_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
