"""Few-shot evaluation and kernel baselines of TP4's MAML comparison (ntk.mup.maml).

The accuracy and its standard error are checked against numpy on adapt
functions whose outputs are known; the kernel baselines against an explicit
numpy solve with the closed-form one-hidden-layer kernels (arc-cosine kernel of
degree 1 for ReLU, Cho & Saul 2009), in float64 (tests/conftest.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk.mup import maml

T, N, Q, D = 2, 5, 4, 6


def _tasks(seed=0, t=T):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(t, N, D))
    ys = np.stack([rng.permutation(N) for _ in range(t)])
    xq = rng.normal(size=(t, Q, D))
    yq = rng.integers(0, N, size=(t, Q))
    return xs, ys, xq, yq


def _hand_accuracy(logits, yq):
    a = (np.argmax(logits, -1) == yq).mean(-1)
    return 100 * a.mean(), 100 * a.std(ddof=1) / np.sqrt(len(a))


def test_evaluate_gives_the_hand_computed_accuracy_and_sem():
    xs, ys, xq, yq = _tasks(t=7)
    w = np.random.default_rng(1).normal(size=(D, N))
    got = maml.evaluate(lambda p, xs, ys, xq, lr: xq @ p, w, 0.1, (xs, ys, xq, yq))
    want = _hand_accuracy(xq @ w, yq)
    assert 0 < want[0] < 100 and want[1] > 0  # neither trivial case
    # per-task accuracies are averaged in float32 (JAX's mean of booleans)
    assert (got["accuracy"], got["sem"]) == pytest.approx(want, rel=1e-6)


def test_evaluate_passes_inner_steps_and_inner_lr_to_adapt():
    # Predicts class round(lr · steps) for every query; all labels are 3.
    def adapt(p, xs, ys, xq, lr, inner_steps=1):
        return jnp.broadcast_to(jax.nn.one_hot(jnp.round(lr * inner_steps).astype(int), N), (Q, N))

    xs, ys, xq, _ = _tasks()
    tasks = (xs, ys, xq, np.full((T, Q), 3))
    assert maml.evaluate(adapt, None, 1.5, tasks, inner_steps=2)["accuracy"] == 100.0
    assert maml.evaluate(adapt, None, 1.5, tasks)["accuracy"] == 0.0


def _relu_kernels(x1, x2, w_std, b_std):
    """NNGP and NTK of Dense → ReLU → Dense (NTK parameterization), closed form."""
    d = x1.shape[-1]

    def k0(a, b):
        return w_std**2 * (a @ b.T) / d + b_std**2

    k12, k11, k22 = k0(x1, x2), np.diag(k0(x1, x1)), np.diag(k0(x2, x2))
    norm = np.sqrt(np.outer(k11, k22))
    theta = np.arccos(np.clip(k12 / norm, -1, 1))
    relu_k = norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    relu_dot = (np.pi - theta) / (2 * np.pi)
    nngp = w_std**2 * relu_k + b_std**2
    ntk = w_std**2 * k12 * relu_dot + nngp
    linear = w_std**2 * k12 + b_std**2  # Dense → Dense, NNGP
    return {"ntk": ntk, "gp": nngp, "linear": linear}


def _numpy_regression(xs, ys, xq, w_std, b_std, diag_reg):
    out = {"ntk": [], "gp": [], "linear": []}
    for s, y, q in zip(xs, ys, xq):
        target = np.eye(N)[y] - 1.0 / N
        k_dd, k_td = _relu_kernels(s, s, w_std, b_std), _relu_kernels(q, s, w_std, b_std)
        for name in out:
            k = k_dd[name]
            reg = k + diag_reg * np.mean(np.diag(k)) * np.eye(len(k))
            out[name].append(k_td[name] @ np.linalg.solve(reg, target))
    return {name: np.stack(f) for name, f in out.items()}


# Not the defaults (1.0, 0.1, 1e-4), so a keyword that is dropped or swapped
# shows; both tests share one compilation (the regressions are cached per setting).
SETTINGS = {"W_std": 1.5, "b_std": 0.2, "diag_reg": 1e-2}


def test_kernel_regression_equals_a_numpy_solve_with_the_closed_form_kernels():
    xs, ys, xq, _ = _tasks()
    got = maml.kernel_regression(xs, ys, xq, N, **SETTINGS)
    want = _numpy_regression(xs, ys, xq, *SETTINGS.values())
    for name in ("ntk", "gp", "linear"):
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=0, atol=1e-10)


def test_kernel_baselines_score_the_numpy_kernel_regression():
    xs, ys, xq, yq = _tasks()
    got = maml.kernel_baselines((xs, ys, xq, yq), N, **SETTINGS)
    want = _numpy_regression(xs, ys, xq, *SETTINGS.values())
    assert list(got) == ["ntk", "gp", "linear"]
    for name, f in want.items():
        acc, sem = _hand_accuracy(f, yq)
        assert got[name] == {"accuracy": pytest.approx(acc), "sem": pytest.approx(sem)}


def test_evaluate_rejects_tasks_of_mismatched_lengths():
    xs, ys, xq, yq = _tasks()
    with pytest.raises(
        ValueError, match=r"evaluate: `tasks` must have shapes .*same T.*\(3, 4, 6\)"
    ):
        maml.evaluate(lambda *a: a[3], None, 0.1, (xs, ys, np.zeros((3, Q, D)), yq))


def test_evaluate_rejects_tasks_that_are_not_four_arrays():
    xs, ys, xq, _ = _tasks()
    with pytest.raises(ValueError, match=r"`tasks` must be \(x_support, .*got 3 items"):
        maml.evaluate(lambda *a: a[3], None, 0.1, (xs, ys, xq))


def test_kernel_baselines_rejects_n_way_below_two():
    with pytest.raises(ValueError, match=r"kernel_baselines: `n_way` must be an int >= 2; got 1"):
        maml.kernel_baselines(_tasks(), 1)


def test_kernel_regression_rejects_labels_outside_n_way():
    xs, ys, xq, _ = _tasks()
    with pytest.raises(ValueError, match=r"`y_support` must be integer labels in \[0, 3\)"):
        maml.kernel_regression(xs, ys, xq, 3)


def test_accuracy_needs_two_tasks_for_a_standard_error():
    with pytest.raises(ValueError, match=r"at least 2 tasks .*got T = 1"):
        maml.accuracy(np.zeros((1, Q, N)), np.zeros((1, Q), int))
