r"""The exact μP limit of a one-hidden-layer linear network (TP4 §7–8, App. H).

Yang & Hu 2021, "Feature Learning in Infinite-Width Neural Networks" (TP4),
compute the infinite-width μP limit of Word2Vec and of first-order MAML
exactly, because for a *linear* one-hidden-layer network the limit never leaves
a finite-dimensional space. This module is that construction.

**The finite μP network.** Width :math:`n`, input :math:`x \in \mathbb{R}^d`
(:math:`d = \mathrm{d\_in}`), output :math:`f(x) \in \mathbb{R}^K`
(:math:`K = \mathrm{d\_out}`), per-neuron weights :math:`u_\alpha \in \mathbb{R}^d` and
:math:`v_\alpha \in \mathbb{R}^K` stacked as ``u: (n, d)``, ``v: (n, K)``:

.. math::

    f(x) = \frac{\alpha}{n}\, v^\top u\, x, \qquad u_{\alpha i} \sim \mathcal{N}(0, \sigma_u^2),
    \quad v_{\alpha k} \sim \mathcal{N}(0, \sigma_v^2),

trained by SGD with learning rate :math:`\eta n` on both :math:`u` and :math:`v`. This
is μP for one hidden layer (TP4 Def. 5.1 up to the symmetry
:math:`(a, b, c) \to (a + \theta, b - \theta, c - 2\theta)` of abc-parametrizations):
every coordinate of :math:`u`, :math:`v` and of the hidden features :math:`h = u x`
moves by :math:`\Theta(1)` per step, and :math:`f` moves by :math:`\Theta(1)`.

**Why the limit is finite-dimensional.** Write
:math:`Z_0 = [u_0\ v_0] \in \mathbb{R}^{n \times (d+K)}`. A gradient step changes

.. math::

    u \leftarrow u - \eta\alpha\, v \chi x^\top, \qquad v \leftarrow v - \eta\alpha\, u x \chi^\top

(:math:`\chi = \partial L / \partial f`), i.e. it multiplies :math:`[u\ v]` on the
*right* by a :math:`(d+K) \times (d+K)` matrix. So at every step

.. math::

    u_t = Z_0 W_t, \quad v_t = Z_0 C_t, \qquad W_t \in \mathbb{R}^{(d+K) \times d},
    \quad C_t \in \mathbb{R}^{(d+K) \times K},

    f_t(x) = \alpha\, C_t^\top (Z_0^\top Z_0 / n)\, W_t\, x
    \;\to\; \alpha\, C_t^\top \Sigma_0 W_t\, x,

with :math:`\Sigma_0 = \mathbb{E}[Z_0^\top Z_0]/n = I` once the :math:`\sigma`'s are
folded into the initial basis coefficients :math:`W_0 = [\sigma_u I_d; 0]`
("identity-like input weights") and :math:`C_0 = [0; \sigma_v I_K]` (zero readout when
:math:`\sigma_v = 0`). The pair :math:`(W, C)` is the limit's state (`LimitState`,
basis size :math:`h = d + K`), and since the Gram matrix is replaced by its expectation
the limit's update rule is plain SGD with learning rate :math:`\eta` on the
width-:math:`h` linear network :math:`f(x) = \alpha\, x^\top W^\top C` (TP4 App. H; the
``edwardjhu/TP4`` repository's ``MetaInfLin1LP``). Finite networks differ from the
limit only through :math:`Z_0^\top Z_0/n - I = O(n^{-1/2})`, so their outputs converge
at rate :math:`n^{-1/2}`. With zero readout and no training, :math:`f \equiv 0` in the
limit, which is also the GP (initial) function of μP:
:math:`f_0(x) = \alpha\, v^\top u\, x / n = O(n^{-1/2})`.

**Sampling.** ``sample(state, width, key)`` draws
:math:`\omega \sim \mathcal{N}(0, 1)^{n \times h}` and returns the finite μP network
:math:`u = \omega W`, :math:`v = \omega C`; at initialisation this
has exactly the law of `finite_network`, and its outputs converge to the
limit's. Any first-order algorithm (SGD, first-order MAML) keeps a finite
network of this form, so it is the *same* algorithm on both sides:
`limit_sgd_step` / `finite_sgd_step`, `limit_maml_step` / `finite_maml_step`
(first-order MAML, Finn et al. 2017 with the first-order approximation).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from ntk.mup import limits
    >>> lim = limits.init_limit(3, 2, sigma_u=1.0, sigma_v=1.0)
    >>> x = jnp.ones((4, 3)); y = jnp.ones((4, 2))
    >>> lim = limits.limit_sgd_step(lim, x, y, lr=0.1)
    >>> net = limits.sample(lim, 4096, jax.random.PRNGKey(0))
    >>> bool(jnp.abs(limits.finite_apply(net, x) - limits.limit_apply(lim, x)).max() < 0.2)
    True
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks

__all__ = [
    "LimitState",
    "FiniteParams",
    "init_limit",
    "limit_apply",
    "limit_feature_kernel",
    "sample",
    "finite_network",
    "finite_apply",
    "finite_feature_kernel",
    "mse_loss",
    "softmax_cross_entropy",
    "limit_sgd_step",
    "finite_sgd_step",
    "limit_maml_step",
    "finite_maml_step",
    "limit_maml_adapt",
    "finite_maml_adapt",
    "basis_size",
]

Array = jax.Array
Loss = Callable[[Array, Array], Array]


class LimitState(NamedTuple):
    r"""The μP limit's state: coefficients in the basis :math:`Z_0 = [u_0\ v_0]`, with
    :math:`h = \mathrm{d\_in} + \mathrm{d\_out}` basis vectors (or ``d_in`` for the
    compact zero-readout basis).

    Attributes:
      W: ``(h, d_in)`` — hidden weights :math:`u = Z_0 W`; column :math:`i` is the
        limiting "embedding" of input coordinate :math:`i`.
      C: ``(h, d_out)`` — readout :math:`v = Z_0 C`.
    """

    W: Array
    C: Array


class FiniteParams(NamedTuple):
    """A finite μP network of width :math:`n`: ``u: (n, d_in)``, ``v: (n, d_out)``."""

    u: Array
    v: Array


def _check_x(x, d_in, who, arg="x"):
    x = _checks.as_array(x, arg, who)
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"{who}: `{arg}` must have shape (batch, {d_in}); got {tuple(x.shape)}.")
    return x


def _check_state(state, cls, who):
    arg = "state" if cls is LimitState else "params"
    if not isinstance(state, cls):
        raise TypeError(f"{who}: `{arg}` must be a {cls.__name__}; got {type(state).__name__}.")
    first, second = state
    if first.ndim != 2 or second.ndim != 2 or first.shape[0] != second.shape[0]:
        rows = "h" if cls is LimitState else "n"
        raise ValueError(
            f"{who}: `{arg}` must hold two matrices with equal rows "
            f"(({rows}, d_in), ({rows}, d_out)); got {tuple(first.shape)} "
            f"and {tuple(second.shape)}."
        )
    return state


def _check_step(lr, loss, alpha, who, lr_arg="lr"):
    _checks.require_real(lr, lr_arg, who)
    _checks.require_callable(loss, "loss", who, "a function loss(f, y)")
    _checks.require_real(alpha, "alpha", who)


def basis_size(state: LimitState) -> int:
    """The dimension :math:`h` of the finite basis the limit lives in."""
    _check_state(state, LimitState, "basis_size")
    return int(state.W.shape[0])


def init_limit(
    d_in: int,
    d_out: int,
    sigma_u: float = 1.0,
    sigma_v: float = 0.0,
    *,
    compact: bool = False,
    dtype=jnp.float32,
) -> LimitState:
    r"""The limit at initialisation: :math:`W_0 = [\sigma_u I; 0]`, :math:`C_0 = [0; \sigma_v I]`.

    Args:
      d_in, d_out: input and output dimensions.
      sigma_u, sigma_v: init standard deviations of :math:`u` and :math:`v`
        (:math:`\sigma_v = 0` is TP4's zero readout).
      compact: with :math:`\sigma_v = 0` the last ``d_out`` basis directions are never
        used (:math:`v_0 = 0` contributes nothing); ``compact=True`` drops them
        (:math:`h = \mathrm{d\_in}`), which Word2Vec with a large vocabulary needs.

    Returns:
      `LimitState` with ``W: (h, d_in)``, ``C: (h, d_out)``.
    """
    name = "init_limit"
    _checks.require_int(d_in, "d_in", name)
    _checks.require_int(d_out, "d_out", name)
    _checks.require_nonnegative(sigma_u, "sigma_u", name)
    _checks.require_nonnegative(sigma_v, "sigma_v", name)
    if compact and sigma_v != 0:
        raise ValueError(
            f"{name}: compact=True needs zero readout (sigma_v=0); got sigma_v={sigma_v}."
        )
    h = d_in if compact else d_in + d_out
    W = jnp.zeros((h, d_in), dtype).at[:d_in].set(sigma_u * jnp.eye(d_in, dtype=dtype))
    C = jnp.zeros((h, d_out), dtype)
    if not compact:
        C = C.at[d_in:].set(sigma_v * jnp.eye(d_out, dtype=dtype))
    return LimitState(W, C)


def limit_apply(state: LimitState, x: Array, alpha: float = 1.0) -> Array:
    r"""Limit outputs :math:`f(x) = \alpha\, x^\top W^\top C`: ``x (B, d_in) → (B, d_out)``."""
    _check_state(state, LimitState, "limit_apply")
    x = _check_x(x, state.W.shape[1], "limit_apply")
    return alpha * (x @ state.W.T) @ state.C


def limit_feature_kernel(state: LimitState) -> Array:
    r""":math:`\lim\, (1/n)\, u_i^\top u_j = (W^\top W)_{ij}`: the limit's Gram of input
    embeddings.

    For one-hot inputs (Word2Vec) this is the Gram matrix of word vectors, the
    quantity analogies are computed from. Shape ``(d_in, d_in)``.
    """
    _check_state(state, LimitState, "limit_feature_kernel")
    return state.W.T @ state.W


def finite_network(
    key: Array,
    d_in: int,
    d_out: int,
    width: int,
    sigma_u: float = 1.0,
    sigma_v: float = 0.0,
    dtype=jnp.float32,
) -> FiniteParams:
    r"""A fresh finite μP network:
    :math:`u \sim \mathcal{N}(0, \sigma_u^2)^{n \times \mathrm{d\_in}}`,
    :math:`v \sim \mathcal{N}(0, \sigma_v^2)^{n \times \mathrm{d\_out}}`."""
    name = "finite_network"
    _checks.require_int(width, "width", name)
    _checks.require_int(d_in, "d_in", name)
    _checks.require_int(d_out, "d_out", name)
    _checks.require_nonnegative(sigma_u, "sigma_u", name)
    _checks.require_nonnegative(sigma_v, "sigma_v", name)
    ku, kv = jax.random.split(key)
    return FiniteParams(
        sigma_u * jax.random.normal(ku, (width, d_in), dtype),
        sigma_v * jax.random.normal(kv, (width, d_out), dtype),
    )


def finite_apply(params: FiniteParams, x: Array, alpha: float = 1.0) -> Array:
    r"""Finite μP outputs :math:`f(x) = (\alpha/n)\, v^\top u\, x`:
    ``(B, d_in) → (B, d_out)``."""
    _check_state(params, FiniteParams, "finite_apply")
    x = _check_x(x, params.u.shape[1], "finite_apply")
    n = params.u.shape[0]
    return (alpha / n) * (x @ params.u.T) @ params.v


def finite_feature_kernel(params: FiniteParams) -> Array:
    r""":math:`(1/n)\, u^\top u`: the finite network's Gram of input embeddings."""
    _check_state(params, FiniteParams, "finite_feature_kernel")
    return params.u.T @ params.u / params.u.shape[0]


def sample(state: LimitState, width: int, key: Array) -> FiniteParams:
    r"""Map the limit to a finite μP network of width :math:`n`: :math:`u = \omega W`,
    :math:`v = \omega C`.

    :math:`\omega \sim \mathcal{N}(0, 1)^{n \times h}`. Then
    ``finite_apply(sample(s, n, k), x)`` equals
    :math:`\alpha\, C^\top (\omega^\top \omega / n) W x` and converges to
    ``limit_apply(s, x)`` at rate :math:`n^{-1/2}`;
    at initialisation ``sample(init_limit(...), n, key)`` has the law of
    `finite_network`.
    """
    _check_state(state, LimitState, "sample")
    _checks.require_int(width, "width", "sample")
    omega = jax.random.normal(key, (width, state.W.shape[0]), state.W.dtype)
    return FiniteParams(omega @ state.W, omega @ state.C)


# ------------------------------------------------------------------ losses


def mse_loss(f: Array, y: Array) -> Array:
    r""":math:`L = \sum_{b, k} (f_{bk} - y_{bk})^2 / (2B)`: mean over the batch of half
    squared error."""
    if jnp.shape(f) != jnp.shape(y):
        raise ValueError(
            f"mse_loss: `f` and `y` must have the same shape; got "
            f"{jnp.shape(f)} and {jnp.shape(y)}."
        )
    return 0.5 * jnp.sum((f - y) ** 2) / f.shape[0]


def softmax_cross_entropy(f: Array, y: Array) -> Array:
    """Mean cross-entropy of logits ``f (B, K)`` against integer labels ``y (B,)``
    in :math:`[0, K)` (checked when concrete)."""
    name = "softmax_cross_entropy"
    if jnp.ndim(f) != 2 or jnp.shape(y) != jnp.shape(f)[:1]:
        raise ValueError(
            f"{name}: `f` must be logits (B, K) and `y` labels (B,); got "
            f"{jnp.shape(f)} and {jnp.shape(y)}."
        )
    c = _checks.concrete(y)
    if (
        c is not None
        and c.size
        and (c.min() < 0 or c.max() >= f.shape[1] or not np.all(c == np.round(c)))
    ):
        raise ValueError(
            f"{name}: `y` must be integer labels in [0, {f.shape[1]}); "
            f"got values in [{c.min()}, {c.max()}]."
        )
    logp = jax.nn.log_softmax(f, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))


# ------------------------------------------------------------------ SGD


def _sgd(apply_fn, params, x, y, lr, loss):
    grads = jax.grad(lambda p: loss(apply_fn(p, x), y))(params)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def limit_sgd_step(
    state: LimitState, x: Array, y: Array, lr: float, loss: Loss = mse_loss, alpha: float = 1.0
) -> LimitState:
    r"""One step of the limit's update rule: SGD with lr :math:`\eta` on :math:`(W, C)`.

    :math:`W \leftarrow W - \eta\alpha\, C \chi^\top x`,
    :math:`C \leftarrow C - \eta\alpha\, W x^\top \chi`
    with :math:`\chi = \partial L / \partial f` (batch summed), i.e. the finite-width μP
    step with :math:`Z_0^\top Z_0 / n` replaced by :math:`I`.
    """
    _check_state(state, LimitState, "limit_sgd_step")
    _check_step(lr, loss, alpha, "limit_sgd_step")
    x = _check_x(x, state.W.shape[1], "limit_sgd_step")
    return _sgd(lambda p, x: limit_apply(p, x, alpha), state, x, y, lr, loss)


def finite_sgd_step(
    params: FiniteParams, x: Array, y: Array, lr: float, loss: Loss = mse_loss, alpha: float = 1.0
) -> FiniteParams:
    r"""One μP SGD step of a width-:math:`n` network: learning rate :math:`\eta n` on
    :math:`u` and :math:`v`."""
    _check_state(params, FiniteParams, "finite_sgd_step")
    _check_step(lr, loss, alpha, "finite_sgd_step")
    x = _check_x(x, params.u.shape[1], "finite_sgd_step")
    n = params.u.shape[0]
    return _sgd(lambda p, x: finite_apply(p, x, alpha), params, x, y, lr * n, loss)


# ------------------------------------------------------------------ first-order MAML


def _adapt(apply_fn, params, xs, ys, inner_lr, inner_steps, loss):
    for _ in range(inner_steps):
        params = _sgd(apply_fn, params, xs, ys, inner_lr, loss)
    return params


def _maml_step(apply_fn, params, tasks, inner_lr, outer_lr, inner_steps, loss, clip=None, width=1):
    xs, ys, xq, yq = tasks

    def task_grad(xs, ys, xq, yq):
        adapted = _adapt(apply_fn, params, xs, ys, inner_lr, inner_steps, loss)
        # First order: the query gradient at the adapted parameters stands in
        # for the gradient through the inner loop (Finn et al. 2017, §5.2).
        return jax.grad(lambda p: loss(apply_fn(p, xq), yq))(adapted)

    # A scan that accumulates per-task gradients, not a vmap: vmapped
    # per-task copies of (n, d) weights are slow and memory-hungry at large n.
    def body(acc, task):
        return jax.tree.map(jnp.add, acc, task_grad(*task)), None

    zero = jax.tree.map(jnp.zeros_like, params)
    total, _ = jax.lax.scan(body, zero, (xs, ys, xq, yq))
    n_tasks = xs.shape[0]
    grads = jax.tree.map(lambda g: g / n_tasks, total)
    if clip is not None:
        # Clip the meta-gradient by its norm *as a limit quantity*: the μP
        # update of a width-n network is g·n (lr η·n), and ‖ω G‖_F² / n → ‖G‖_F²,
        # so ‖n·g‖_F / √n converges to the limit's basis norm (TP4 clips at 0.5).
        norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)) * width)
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, clip / (norm + 1e-12)), grads)
    return jax.tree.map(lambda p, g: p - outer_lr * g, params, grads)


def _check_tasks(tasks, d_in, who):
    if not isinstance(tasks, (tuple, list)) or len(tasks) != 4:
        got = f"{len(tasks)} items" if isinstance(tasks, (tuple, list)) else type(tasks).__name__
        raise ValueError(
            f"{who}: `tasks` must be (x_support, y_support, x_query, y_query); got {got}."
        )
    xs, ys, xq, yq = (
        _checks.as_array(t, a, who)
        for t, a in zip(tasks, ("x_support", "y_support", "x_query", "y_query"))
    )
    for arg, x in (("x_support", xs), ("x_query", xq)):
        if x.ndim != 3 or x.shape[2] != d_in:
            raise ValueError(
                f"{who}: task inputs `{arg}` must have shape (tasks, "
                f"shots, {d_in}); got {tuple(x.shape)}."
            )
    if ys.shape[:2] != xs.shape[:2] or yq.shape[:2] != xq.shape[:2] or xs.shape[0] != xq.shape[0]:
        raise ValueError(
            f"{who}: `tasks` must agree on (tasks, shots): got "
            f"x_support {tuple(xs.shape)}, y_support {tuple(ys.shape)}, "
            f"x_query {tuple(xq.shape)}, y_query {tuple(yq.shape)}."
        )
    return xs, ys, xq, yq


def _check_maml(inner_lr, outer_lr, inner_steps, loss, alpha, clip, who):
    _check_step(inner_lr, loss, alpha, who, "inner_lr")
    _checks.require_real(outer_lr, "outer_lr", who)
    _checks.require_int(inner_steps, "inner_steps", who, minimum=0)
    if clip is not None:
        _checks.require_positive(clip, "clip", who)


def limit_maml_step(
    state: LimitState,
    tasks,
    inner_lr: float,
    outer_lr: float,
    inner_steps: int = 1,
    loss: Loss = softmax_cross_entropy,
    alpha: float = 1.0,
    clip: float | None = None,
) -> LimitState:
    r"""First-order MAML meta-step of the μP limit (TP4 §8, App. H.2).

    For each task :math:`(x_s, y_s, x_q, y_q)` (arrays with a leading task axis):
    :math:`\theta' = \theta - \varepsilon \nabla L_s(\theta)` (``inner_steps`` times,
    :math:`\varepsilon` = ``inner_lr``), then
    :math:`\theta \leftarrow \theta - \eta \cdot
    \operatorname{mean}_\mathrm{tasks} \nabla L_q(\theta')` — on :math:`\theta = (W, C)` of
    the limit.
    ``clip``: rescale the meta-gradient to Frobenius norm :math:`\le \mathrm{clip}` (in
    the basis; `finite_maml_step` uses the matching width-normalised norm).
    """
    who = "limit_maml_step"
    _check_state(state, LimitState, who)
    tasks = _check_tasks(tasks, state.W.shape[1], who)
    _check_maml(inner_lr, outer_lr, inner_steps, loss, alpha, clip, who)
    fn = lambda p, x: limit_apply(p, x, alpha)
    return _maml_step(fn, state, tasks, inner_lr, outer_lr, inner_steps, loss, clip)


def finite_maml_step(
    params: FiniteParams,
    tasks,
    inner_lr: float,
    outer_lr: float,
    inner_steps: int = 1,
    loss: Loss = softmax_cross_entropy,
    alpha: float = 1.0,
    clip: float | None = None,
) -> FiniteParams:
    """First-order MAML meta-step of a width-:math:`n` μP network (both lrs times
    :math:`n`)."""
    who = "finite_maml_step"
    _check_state(params, FiniteParams, who)
    tasks = _check_tasks(tasks, params.u.shape[1], who)
    _check_maml(inner_lr, outer_lr, inner_steps, loss, alpha, clip, who)
    n = params.u.shape[0]
    fn = lambda p, x: finite_apply(p, x, alpha)
    if clip is None:
        return _maml_step(fn, params, tasks, inner_lr * n, outer_lr * n, inner_steps, loss)
    # Clipping acts on the limit-normalised gradient n·g (norm ‖n·g‖/√n).
    scaled = _maml_step(fn, params, tasks, inner_lr * n, 1.0, inner_steps, loss, clip, n)
    return jax.tree.map(lambda p, s: p + (s - p) * outer_lr * n, params, scaled)


def _check_adapt(state, cls, x_support, x_query, inner_lr, inner_steps, loss, alpha):
    """The arguments of `limit_maml_adapt` (``cls`` `LimitState`) or
    `finite_maml_adapt` (`FiniteParams`): the checked ``(x_support, x_query)``."""
    who = "limit_maml_adapt" if cls is LimitState else "finite_maml_adapt"
    _check_state(state, cls, who)
    d = (state.W if cls is LimitState else state.u).shape[1]
    x_support = _check_x(x_support, d, who, "x_support")
    x_query = _check_x(x_query, d, who, "x_query")
    _check_maml(inner_lr, 0.0, inner_steps, loss, alpha, None, who)
    return x_support, x_query


def limit_maml_adapt(
    state: LimitState,
    x_support: Array,
    y_support: Array,
    x_query: Array,
    inner_lr: float,
    inner_steps: int = 1,
    loss: Loss = softmax_cross_entropy,
    alpha: float = 1.0,
) -> Array:
    """Query outputs of the limit after ``inner_steps`` SGD steps on one support set."""
    x_support, x_query = _check_adapt(
        state, LimitState, x_support, x_query, inner_lr, inner_steps, loss, alpha
    )
    fn = lambda p, x: limit_apply(p, x, alpha)
    adapted = _adapt(fn, state, x_support, y_support, inner_lr, inner_steps, loss)
    return fn(adapted, x_query)


def finite_maml_adapt(
    params: FiniteParams,
    x_support: Array,
    y_support: Array,
    x_query: Array,
    inner_lr: float,
    inner_steps: int = 1,
    loss: Loss = softmax_cross_entropy,
    alpha: float = 1.0,
) -> Array:
    """Query outputs of a finite μP network after inner-loop adaptation."""
    x_support, x_query = _check_adapt(
        params, FiniteParams, x_support, x_query, inner_lr, inner_steps, loss, alpha
    )
    n = params.u.shape[0]
    fn = lambda p, x: finite_apply(p, x, alpha)
    adapted = _adapt(fn, params, x_support, y_support, inner_lr * n, inner_steps, loss)
    return fn(adapted, x_query)
