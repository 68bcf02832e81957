r"""Few-shot evaluation of MAML models and the kernel baselines (TP4 §8).

Yang & Hu 2021, "Feature Learning in Infinite-Width Neural Networks" (TP4)
compare first-order MAML in the μP limit (`ntk.mup.limits`) with finite μP
widths and with the NTK and GP limits, which cannot learn features, on N-way
K-shot tasks. This module is that evaluation.

**Tasks.** A batch of :math:`T` tasks is ``(x_support (T, S, d), y_support (T, S),
x_query (T, Q, d), y_query (T, Q))`` with integer labels in :math:`[0, N)`
(`ntk.data.fewshot.sample_tasks` draws them; :math:`S = N \cdot K`).

**Accuracy.** A model adapted on task :math:`t`'s support set gives query logits
:math:`f_t` ``(Q, N)``; its accuracy on the task is
:math:`a_t = (1/Q) \sum_q \mathbb{1}[\operatorname{argmax}_k f_t(x_q)_k = y_q]`.
Reported, in percent, are the mean over tasks :math:`\bar{a} = (1/T) \sum_t a_t` and
its standard error :math:`\mathrm{SEM} = s / \sqrt{T}` with
:math:`s^2 = \sum_t (a_t - \bar{a})^2 / (T - 1)`.

**MAML models** (`evaluate`): ``adapt(params, x_s, y_s, x_q, inner_lr)``
takes ``inner_steps`` SGD steps on one support set and returns the query
logits — `ntk.mup.limits.limit_maml_adapt` for the limit,
`ntk.mup.limits.finite_maml_adapt` for a width-:math:`n` network.

**Kernel baselines** (`kernel_regression`, `kernel_baselines`): a frozen
kernel :math:`K` does not meta-learn; its prediction on a task is kernel
regression on the support set with centred one-hot targets
:math:`Y = \operatorname{onehot}(y_s) - 1/N` (:math:`S \times N`),

.. math::

    f(x_q) = K(x_q, X_s) \big(K(X_s, X_s)
        + \lambda\, \overline{\operatorname{diag} K(X_s, X_s)}\, I\big)^{-1} Y,

:math:`\lambda` = ``diag_reg`` (`ntk.predict.gp_inference`, which is the infinite-time
NTK and NNGP posterior mean). The kernels are those of ``ntk.stax``'s
one-hidden-layer networks ``Dense → ReLU → Dense`` (NTK and NNGP) and
``Dense → Dense`` (the linear network TP4's μP limit is exact for; its NNGP).

Example:
    >>> import numpy as np
    >>> from ntk.mup import limits, maml
    >>> rng = np.random.default_rng(0)
    >>> xs = rng.normal(size=(4, 3, 8)); ys = np.tile(np.arange(3), (4, 1))
    >>> tasks = (xs, ys, xs + 0.1 * rng.normal(size=xs.shape), ys)   # T=4, 3-way 1-shot
    >>> lim = limits.init_limit(8, 3, sigma_u=1.0, sigma_v=1.0)
    >>> r = maml.evaluate(limits.limit_maml_adapt, lim, 1.0, tasks)   # before meta-training
    >>> round(r["accuracy"], 2), round(r["sem"], 2)                   # percent: ā, s/√T
    (91.67, 8.33)
    >>> sorted(maml.kernel_baselines(tasks, n_way=3))
    ['gp', 'linear', 'ntk']
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks, predict, stax

__all__ = ["query_logits", "accuracy", "evaluate", "kernel_regression", "kernel_baselines"]

Array = jax.Array
Adapt = Callable[..., Array]

#: The hidden layer's ``out_dim`` in the ``ntk.stax`` networks of the kernel
#: baselines. It sizes only their finite ``init_fn``/``apply_fn``: the NTK-
#: parameterized ``kernel_fn`` is the infinite-width limit and ignores it.
_HIDDEN = 512


def _shape(x) -> tuple:
    return tuple(np.shape(x))


def _check_support_query(xs, ys, xq, who: str) -> None:
    """Shapes ``(T, S, d)``, ``(T, S)``, ``(T, Q, d)`` with equal ``T`` and ``d``
    (shapes only: runs on tracers too)."""
    s_xs, s_ys, s_xq = _shape(xs), _shape(ys), _shape(xq)
    if (
        len(s_xs) != 3
        or len(s_xq) != 3
        or s_ys != s_xs[:2]
        or s_xq[0] != s_xs[0]
        or s_xq[2] != s_xs[2]
    ):
        raise ValueError(
            f"{who}: `x_support`, `y_support`, `x_query` must have shapes (T, S, d), "
            f"(T, S), (T, Q, d) with the same T and d; got {s_xs}, {s_ys}, {s_xq}."
        )


def _check_tasks(tasks, who: str) -> tuple:
    """``tasks`` as its four arrays, unchanged, after checking their shapes."""
    if not isinstance(tasks, (tuple, list)) or len(tasks) != 4:
        got = f"{len(tasks)} items" if isinstance(tasks, (tuple, list)) else type(tasks).__name__
        raise ValueError(
            f"{who}: `tasks` must be (x_support, y_support, x_query, y_query); got {got}."
        )
    xs, ys, xq, yq = tasks
    shapes = [_shape(t) for t in tasks]
    ok = (
        len(shapes[0]) == 3
        and len(shapes[2]) == 3
        and shapes[1] == shapes[0][:2]
        and shapes[3] == shapes[2][:2]
        and shapes[0][0] == shapes[2][0]
        and shapes[0][2] == shapes[2][2]
    )
    if not ok:
        raise ValueError(
            f"{who}: `tasks` must have shapes (T, S, d), (T, S), (T, Q, d), (T, Q) with "
            f"the same T and d; got {', '.join(str(s) for s in shapes)}."
        )
    return xs, ys, xq, yq


def _check_labels(y, n_way: int, arg: str, who: str) -> None:
    """Integer labels in ``[0, n_way)``, checked when concrete (a label outside
    would one-hot to zeros, or never match an argmax, silently)."""
    c = _checks.concrete(y)
    if c is None or c.size == 0:
        return
    if not np.all(c == np.round(c)) or c.min() < 0 or c.max() >= n_way:
        raise ValueError(
            f"{who}: `{arg}` must be integer labels in [0, {n_way}); "
            f"got values in [{c.min()}, {c.max()}]."
        )


@functools.partial(jax.jit, static_argnums=0)
def _query_logits(adapt, params, inner_lr, xs, ys, xq):
    # lax.map, not vmap: one task's adapted copy of the weights at a time,
    # which at large width is what fits in memory.
    return jax.lax.map(lambda t: adapt(params, *t, inner_lr), (xs, ys, xq))


def query_logits(
    adapt: Adapt, params: Any, inner_lr: float, x_support, y_support, x_query
) -> Array:
    r"""Query logits of every task after adapting on its support set (jitted).

    ``out[t] = adapt(params, x_support[t], y_support[t], x_query[t], inner_lr)``
    for each task ``t``, one task at a time (``jax.lax.map``).

    Args:
      adapt: ``adapt(params, x_s (S, d), y_s (S,), x_q (Q, d), inner_lr) → (Q, N)``,
        e.g. `ntk.mup.limits.limit_maml_adapt`; a static argument of the jit
        (the same function object reuses the compiled code).
      params: the meta-learned parameters (any pytree ``adapt`` accepts).
      inner_lr: the inner-loop learning rate :math:`\varepsilon`.
      x_support, y_support, x_query: ``(T, S, d)``, ``(T, S)``, ``(T, Q, d)``.

    Returns:
      ``(T, Q, N)`` logits.

    Example:
      >>> import numpy as np
      >>> from ntk.mup import limits, maml
      >>> xs = np.ones((2, 3, 4)); ys = np.tile(np.arange(3), (2, 1))
      >>> lim = limits.init_limit(4, 3, sigma_u=1.0, sigma_v=1.0)
      >>> maml.query_logits(limits.limit_maml_adapt, lim, 0.5, xs, ys, np.ones((2, 5, 4))).shape
      (2, 5, 3)
    """
    who = "query_logits"
    _checks.require_callable(adapt, "adapt", who, "a function adapt(params, x_s, y_s, x_q, lr)")
    _checks.require_real(inner_lr, "inner_lr", who)
    _check_support_query(x_support, y_support, x_query, who)
    return _query_logits(adapt, params, inner_lr, x_support, y_support, x_query)


def accuracy(logits, y_query) -> dict:
    r"""Accuracy (%) over tasks and its standard error of the mean.

    :math:`a_t = (1/Q) \sum_q \mathbb{1}[\operatorname{argmax}_k \mathrm{logits}[t, q, k]
    = \mathrm{y\_query}[t, q]]`;
    returns :math:`100 \cdot \bar{a}` as ``"accuracy"`` and :math:`100 \cdot s/\sqrt{T}` as
    ``"sem"``, with :math:`\bar{a}` the mean of :math:`a_t` over the :math:`T` tasks and
    :math:`s` their sample standard deviation (:math:`T - 1` in the denominator).

    Args:
      logits: ``(T, Q, N)`` query logits (`query_logits`), :math:`T \ge 2`.
      y_query: ``(T, Q)`` integer labels in :math:`[0, N)`.

    Returns:
      ``{"accuracy": float, "sem": float}``, both in percent; the :math:`a_t` are
      float32 (JAX's mean of booleans), so both carry ~1e-7 relative round-off.

    Example:
      >>> import numpy as np
      >>> from ntk.mup import maml
      >>> logits = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
      >>> maml.accuracy(logits, np.array([[0, 1], [0, 1]]))   # a_t = 1, 1/2
      {'accuracy': 75.0, 'sem': 25.0}
    """
    who = "accuracy"
    s_f, s_y = _shape(logits), _shape(y_query)
    if len(s_f) != 3 or s_y != s_f[:2]:
        raise ValueError(
            f"{who}: `logits` and `y_query` must have shapes (T, Q, N) and (T, Q); "
            f"got {s_f} and {s_y}."
        )
    if s_f[0] < 2:
        raise ValueError(
            f"{who}: `logits` must hold at least 2 tasks (the standard error divides by "
            f"T - 1); got T = {s_f[0]}."
        )
    _check_labels(y_query, s_f[2], "y_query", who)
    acc = np.asarray((jnp.argmax(logits, -1) == y_query).mean(-1))
    return {
        "accuracy": 100 * float(acc.mean()),
        "sem": 100 * float(acc.std(ddof=1) / math.sqrt(len(acc))),
    }


def evaluate(
    adapt: Adapt, params: Any, inner_lr: float, tasks: Sequence, inner_steps: int = 1
) -> dict:
    r"""Few-shot accuracy ± SEM of a MAML model after ``inner_steps`` inner steps.

    Each task's query logits come from ``adapt`` on its support set
    (`query_logits`; ``adapt(..., inner_steps=k)`` when :math:`k \ne 1`), scored by
    `accuracy`: :math:`100 \cdot \bar{a}` and :math:`100 \cdot s/\sqrt{T}` over the
    :math:`T` tasks.

    Args:
      adapt: ``adapt(params, x_s, y_s, x_q, inner_lr[, inner_steps=k]) → (Q, N)``:
        `ntk.mup.limits.limit_maml_adapt` or `ntk.mup.limits.finite_maml_adapt`.
      params: the model (a `ntk.mup.limits.LimitState`, `ntk.mup.limits.FiniteParams`...).
      inner_lr: the inner-loop learning rate :math:`\varepsilon`.
      tasks: ``(x_support (T, S, d), y_support (T, S), x_query (T, Q, d),
        y_query (T, Q))``, :math:`T \ge 2`.
      inner_steps: inner SGD steps (TP4: 1 in meta-training, 20 at evaluation).

    Returns:
      ``{"accuracy": float, "sem": float}``, both in percent.

    Example:
      >>> import numpy as np
      >>> from ntk.mup import limits, maml
      >>> rng = np.random.default_rng(0)
      >>> xs = rng.normal(size=(4, 3, 8)); ys = np.tile(np.arange(3), (4, 1))
      >>> lim = limits.init_limit(8, 3, sigma_u=1.0, sigma_v=1.0)
      >>> r = maml.evaluate(limits.limit_maml_adapt, lim, 1.0, (xs, ys, xs, ys), inner_steps=2)
      >>> round(r["accuracy"], 2), round(r["sem"], 2)   # T = 4 tasks of Q = 3 queries
      (83.33, 9.62)
    """
    who = "evaluate"
    _checks.require_callable(adapt, "adapt", who, "a function adapt(params, x_s, y_s, x_q, lr)")
    _checks.require_real(inner_lr, "inner_lr", who)
    inner_steps = _checks.require_int(inner_steps, "inner_steps", who, minimum=0)
    xs, ys, xq, yq = _check_tasks(tasks, who)
    if inner_steps != 1:
        adapt = functools.partial(adapt, inner_steps=inner_steps)
    return accuracy(query_logits(adapt, params, inner_lr, xs, ys, xq), yq)


def _check_kernel_args(n_way, W_std, b_std, diag_reg, who: str) -> int:
    n_way = _checks.require_int(n_way, "n_way", who, minimum=2)
    _checks.require_nonnegative(W_std, "W_std", who)
    _checks.require_nonnegative(b_std, "b_std", who)
    _checks.require_nonnegative(diag_reg, "diag_reg", who)
    return n_way


@functools.lru_cache(maxsize=16)
def _kernel_predictors(n_way, W_std, b_std, diag_reg):
    """The jitted per-task regressions of the three kernels. Cached so that
    repeated calls with the same settings reuse the compiled code (tracing
    ``ntk.stax`` and ``gp_inference`` takes seconds; running them, milliseconds)."""
    _, _, kernel_fn = stax.serial(
        stax.Dense(_HIDDEN, W_std, b_std), stax.Relu(), stax.Dense(1, W_std, b_std)
    )

    predict_all = _per_task_regression(kernel_fn, ("nngp", "ntk"), ("ntk", "nngp"), n_way, diag_reg)
    # The one-hidden-layer linear network's NTK is twice its NNGP up to a
    # constant σ_b² (both affine in x·x'), so its one kernel regression stands
    # for its NTK and GP limits.
    _, _, linear_fn = stax.serial(stax.Dense(_HIDDEN, W_std, b_std), stax.Dense(1, W_std, b_std))
    predict_linear = _per_task_regression(linear_fn, "nngp", ("nngp",), n_way, diag_reg)
    return predict_all, predict_linear


def _per_task_regression(kernel_fn, get, outputs, n_way, diag_reg):
    """A jitted map over tasks ``(T, ...)`` of kernel regression on each task's
    centred one-hot support labels: ``kernel_fn``'s ``get`` kernels, one query
    prediction ``(T, q, n_way)`` per name in ``outputs``."""

    @jax.jit
    def run(xs, ys, xq):
        def one(t):
            xs, ys, xq = t
            y = jax.nn.one_hot(ys, n_way) - 1.0 / n_way
            k_dd = kernel_fn(xs, None, get)
            k_td = kernel_fn(xq, xs, get)
            fn = predict.gp_inference(k_dd, y, diag_reg=diag_reg)
            return tuple(fn(get=g, k_test_train=k_td) for g in outputs)

        return jax.lax.map(one, (xs, ys, xq))

    return run


def _kernel_regression(xs, ys, xq, n_way, W_std, b_std, diag_reg) -> dict:
    settings = (n_way, W_std, b_std, diag_reg)
    try:
        predict_all, predict_linear = _kernel_predictors(*settings)
    except TypeError:  # unhashable settings (arrays): built afresh
        predict_all, predict_linear = _kernel_predictors.__wrapped__(*settings)
    f_ntk, f_gp = predict_all(xs, ys, xq)
    (f_linear,) = predict_linear(xs, ys, xq)
    return {"ntk": f_ntk, "gp": f_gp, "linear": f_linear}


def kernel_regression(
    x_support,
    y_support,
    x_query,
    n_way: int,
    *,
    W_std: float = 1.0,
    b_std: float = 0.1,
    diag_reg: float = 1e-4,
) -> dict:
    r"""Query outputs of kernel regression on each support set (TP4's NTK/GP baselines).

    Per task, with :math:`Y = \operatorname{onehot}(y_s, N) - 1/N` and :math:`\lambda` =
    ``diag_reg`` (`ntk.predict.gp_inference`):

    .. math::

        f(x_q) = K(x_q, X_s) \big(K(X_s, X_s) + \lambda \cdot
        \operatorname{mean}(\operatorname{diag} K(X_s, X_s)) \cdot I\big)^{-1} Y,

    for three analytic kernels of ``ntk.stax``:

    * ``"ntk"``, ``"gp"``: the NTK and NNGP of ``Dense(W_std, b_std) → Relu →
      Dense(W_std, b_std)`` (NTK parameterization);
    * ``"linear"``: the NNGP of ``Dense → Dense``,
      :math:`\sigma_w^2 (\sigma_w^2\, x \cdot x' / d + \sigma_b^2) + \sigma_b^2` (its NTK is
      twice that minus :math:`\sigma_b^2`).

    Args:
      x_support, y_support, x_query: ``(T, S, d)``, ``(T, S)`` integer labels in
        ``[0, n_way)``, ``(T, Q, d)``.
      n_way: the number of classes :math:`N` per task (:math:`\ge 2`).
      W_std, b_std: the layers' weight and bias standard deviations.
      diag_reg: :math:`\lambda`, relative to the mean diagonal of :math:`K(X_s, X_s)`.

    Returns:
      ``{"ntk": (T, Q, N), "gp": (T, Q, N), "linear": (T, Q, N)}``.

    Example:
      >>> import numpy as np
      >>> from ntk.mup import maml
      >>> xs = np.random.default_rng(0).normal(size=(2, 3, 4)); ys = np.tile(np.arange(3), (2, 1))
      >>> f = maml.kernel_regression(xs, ys, xs, n_way=3)
      >>> f["ntk"].shape
      (2, 3, 3)
      >>> bool(np.allclose(f["gp"], np.eye(3) - 1 / 3, atol=1e-3))   # interpolates Y
      True
    """
    who = "kernel_regression"
    n_way = _check_kernel_args(n_way, W_std, b_std, diag_reg, who)
    _check_support_query(x_support, y_support, x_query, who)
    _check_labels(y_support, n_way, "y_support", who)
    return _kernel_regression(x_support, y_support, x_query, n_way, W_std, b_std, diag_reg)


def kernel_baselines(
    tasks: Sequence,
    n_way: int,
    *,
    W_std: float = 1.0,
    b_std: float = 0.1,
    diag_reg: float = 1e-4,
) -> dict:
    r"""Accuracy ± SEM of the frozen-kernel baselines (TP4's NTK and GP rows).

    `kernel_regression` on each task's support set, scored by `accuracy` on
    its query set. A frozen kernel does not meta-learn, so these numbers are
    the same before and after meta-training.

    Args:
      tasks: ``(x_support (T, S, d), y_support (T, S), x_query (T, Q, d),
        y_query (T, Q))``, labels in ``[0, n_way)``, :math:`T \ge 2`.
      n_way: the number of classes :math:`N` per task (:math:`\ge 2`).
      W_std, b_std, diag_reg: as in `kernel_regression`.

    Returns:
      ``{"ntk": {"accuracy", "sem"}, "gp": {...}, "linear": {...}}`` (percent).

    Example:
      >>> import numpy as np
      >>> from ntk.mup import maml
      >>> xs = np.random.default_rng(0).normal(size=(2, 3, 4)); ys = np.tile(np.arange(3), (2, 1))
      >>> maml.kernel_baselines((xs, ys, xs, ys), n_way=3)["ntk"]   # query = support
      {'accuracy': 100.0, 'sem': 0.0}
    """
    who = "kernel_baselines"
    n_way = _check_kernel_args(n_way, W_std, b_std, diag_reg, who)
    xs, ys, xq, yq = _check_tasks(tasks, who)
    _check_labels(ys, n_way, "y_support", who)
    out = _kernel_regression(xs, ys, xq, n_way, W_std, b_std, diag_reg)
    return {name: accuracy(f, yq) for name, f in out.items()}
