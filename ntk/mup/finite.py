r"""Finite-width μP MLPs trained by full-batch gradient descent.

The finite twin of the DMFT limit (`ntk.mup.dmft`, Bordelon & Pehlevan 2022):
the same network and training, at width :math:`N`, so that its outputs and
kernels can be compared with the limit's (error :math:`O(N^{-1/2})` per network).
The network (all weights :math:`\mathcal{N}(0, 1)`; B&P eq. 1 with
:math:`\gamma = \gamma_0 \sqrt{N}`):

.. math::

    h^1 = W^0 x / \sqrt{D}, \qquad h^{\ell+1} = W^\ell \varphi(h^\ell) / \sqrt{N}, \qquad
    f = w \cdot \varphi(h^L) / (\gamma_0 N),

trained on :math:`\sum_\mu (f_\mu - y_\mu)^2 / (2P)` with the step
:math:`-\eta \gamma_0^2 N \nabla` on every weight: μP, whose features move by
:math:`\Theta(\gamma_0)` per step at every width.

    >>> import jax, jax.numpy as jnp
    >>> from ntk.mup.finite import finite_mlp_train
    >>> x = jax.random.normal(jax.random.PRNGKey(1), (5, 3)); y = jnp.sin(x[:, 0])
    >>> out = finite_mlp_train(x, y, width=64, depth=2, activation="tanh",
    ...                        gamma0=1.0, learning_rate=1.0, steps=10,
    ...                        key=jax.random.PRNGKey(0), n_seeds=4)
    >>> out.f.shape, out.phiT.shape     # (seeds, T+1, P), (seeds, L, P, P)
    ((4, 11, 5), (4, 2, 5, 5))
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ntk import _checks
from ntk.mup import _mlp

__all__ = ["FiniteResult", "mup_mlp_init", "finite_mlp_train", "finite_mlp_trainer"]


class FiniteResult(NamedTuple):
    r"""GD training of finite μP MLPs (leading axis: seeds).

    f: ``(seeds, T+1, P)``; f_test: ``(seeds, T+1, Q)`` or None;
    phi0, phiT, g0, gT: ``(seeds, L, M, M)`` kernels
    :math:`\Phi^\ell = \varphi \cdot \varphi / N` and :math:`G^\ell = g \cdot g / N` at the
    first and last step over train+test points;
    loss: ``(seeds, T+1)``.
    """

    f: jnp.ndarray
    f_test: Optional[jnp.ndarray]
    phi0: jnp.ndarray
    phiT: jnp.ndarray
    g0: jnp.ndarray
    gT: jnp.ndarray
    loss: jnp.ndarray


def mup_mlp_init(key, d_in: int, width: int, depth: int, dtype=jnp.float32):
    r""":math:`[W^0\ (N, D),\ W^1 \ldots W^{L-1}\ (N, N),\ w\ (N,)]`, all entries
    :math:`\mathcal{N}(0, 1)`."""
    for arg, v in (("d_in", d_in), ("width", width), ("depth", depth)):
        _checks.require_int(v, arg, "mup_mlp_init")
    keys = jax.random.split(key, depth + 1)
    ws = [jax.random.normal(keys[0], (width, d_in), dtype)]
    ws += [jax.random.normal(keys[l], (width, width), dtype) for l in range(1, depth)]
    return ws + [jax.random.normal(keys[depth], (width,), dtype)]


def _forward(params, x, act, gamma0, n):
    """Pre-activations of every layer and the output (module doc's network)."""
    hs = [x @ params[0].T / jnp.sqrt(x.shape[1])]
    for w in params[1:-1]:
        hs.append(act(hs[-1]) @ w.T / jnp.sqrt(n))
    f = act(hs[-1]) @ params[-1] / (gamma0 * n)
    return hs, f


def _kernels(params, x, act, dact, gamma0, n):
    """``Φ^ℓ = φ(h^ℓ)·φ(h^ℓ)/N`` and ``G^ℓ = g^ℓ·g^ℓ/N``, ``g = φ'(h) z``."""
    hs, _ = _forward(params, x, act, gamma0, n)
    phis = [act(h) for h in hs]
    z = jnp.broadcast_to(params[-1], hs[-1].shape)
    gs = [dact(hs[-1]) * z]
    for l in range(len(hs) - 2, -1, -1):
        z = gs[0] @ params[l + 1] / jnp.sqrt(n)
        gs.insert(0, dact(hs[l]) * z)
    return (jnp.stack([p @ p.T / n for p in phis]), jnp.stack([g @ g.T / n for g in gs]))


def finite_mlp_train(
    x_train,
    y_train,
    *,
    width: int,
    depth: int,
    activation: str,
    gamma0: float,
    learning_rate: float,
    steps: int,
    key,
    n_seeds: int = 1,
    x_test=None,
    pad_to: Optional[int] = None,
) -> FiniteResult:
    r"""Train width-:math:`N` μP MLPs by full-batch GD, the finite twin of
    `ntk.mup.dmft.dmft_solve`.

    :math:`f(x) = w \cdot \varphi(h^L)/(\gamma_0 N)` with :math:`h^1 = W^0 x/\sqrt{D}`,
    :math:`h^{\ell+1} = W^\ell \varphi(h^\ell)/\sqrt{N}`, all weights
    :math:`\mathcal{N}(0,1)`; loss :math:`\sum_\mu (f_\mu - y_\mu)^2/(2P)`; every weight
    takes the step :math:`-\eta \gamma_0^2 N \nabla` (B&P eq. 1–2,
    :math:`\gamma = \gamma_0 \sqrt{N}`). ``n_seeds`` independent initialisations are
    trained in parallel (vmap).

    ``pad_to`` (≥ ``width``) computes with ``pad_to`` units of which all but
    ``width`` have zero weights in and out: since :math:`\varphi(0) = 0` for every
    activation here, their gradients vanish and they stay exactly inert, so
    the result is a width-``width`` network (the :math:`1/N` factors use
    ``width``) — and several widths share one compilation.

    Returns:
      `FiniteResult`.
    """
    fn = "finite_mlp_train"
    x_train, y_train, x_test = _mlp.check_data(x_train, y_train, x_test, fn)
    _mlp.check_common(depth, gamma0, learning_rate, steps, fn)
    act, dact = _mlp.activation(activation, fn)
    width = _checks.require_int(width, "width", fn)
    n_seeds = _checks.require_int(n_seeds, "n_seeds", fn)
    _checks.require_key(key, fn, "it draws the weights")
    P = x_train.shape[0]
    dtype = jnp.result_type(x_train.dtype, jnp.float32)
    x_all = (x_train if x_test is None else jnp.concatenate([x_train, x_test])).astype(dtype)
    n_pad = width if pad_to is None else _checks.require_int(pad_to, "pad_to", fn, minimum=width)
    train = finite_mlp_trainer(
        n_pad,
        int(depth),
        activation,
        int(steps),
        int(n_seeds),
        P,
        x_all.shape[0],
        x_all.shape[1],
        jnp.dtype(dtype).name,
    )
    fs, phi0, g0, phiT, gT = train(
        key,
        x_all,
        y_train.astype(dtype),
        jnp.asarray(gamma0, dtype),
        jnp.asarray(learning_rate, dtype),
        jnp.asarray(width, dtype),
    )
    loss = jnp.sum((fs[:, :, :P] - y_train.astype(dtype)[None, None, :]) ** 2, -1) / (2 * P)
    return FiniteResult(
        f=fs[:, :, :P],
        f_test=None if x_test is None else fs[:, :, P:],
        phi0=phi0,
        phiT=phiT,
        g0=g0,
        gT=gT,
        loss=loss,
    )


@functools.lru_cache(maxsize=64)
def finite_mlp_trainer(n_pad, depth, activation, steps, n_seeds, P, m, d, dtype_name):
    """The jitted trainer behind `finite_mlp_train`, one per static configuration
    (cached: compiled once, reused).

    `finite_mlp_train` checks its arguments, calls this and wraps the output in
    a `FiniteResult`; call it directly to trace or cost the training with
    abstract arguments (its GD steps are a ``jax.lax.scan``).

    Args (static, positional):
      n_pad: units computed (``pad_to``; the live width is an argument of the
      trainer); depth: :math:`L`; activation: a name in ``ntk.mup.dmft.ACTIVATIONS``;
      steps: :math:`T`; n_seeds: networks trained in parallel; P: training points
      (the first ``P`` of the ``m`` inputs); m: inputs :math:`M = P + Q`; d: input
      dimension :math:`D`; dtype_name: ``"float32"`` or ``"float64"``.

    Returns:
      ``train(key, x_all, y, gamma0, learning_rate, width) -> (f, Φ⁰, G⁰, Φ^T,
      G^T)`` with ``x_all (M, D)``, ``y (P,)``, scalars and ``width ≤ n_pad``:
      ``f (seeds, T+1, M)`` and the kernels ``(seeds, L, M, M)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk.mup.finite import finite_mlp_trainer
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
      >>> train = finite_mlp_trainer(32, 2, "tanh", 5, 3, 4, 6, 3, "float64")
      >>> f, phi0, g0, phiT, gT = train(jax.random.PRNGKey(1), x, jnp.sin(x[:4, 0]),
      ...                               1.0, 1.0, 16.0)   # width 16 of 32 units
      >>> f.shape, phiT.shape
      ((3, 6, 6), (3, 2, 6, 6))
    """
    act, dact = _mlp.activation(activation, "finite_mlp_train")
    dtype = jnp.dtype(dtype_name)

    @jax.jit
    def train(key, x_all, y, gamma0, learning_rate, width):
        lr = learning_rate * gamma0**2 * width
        live = (jnp.arange(n_pad) < width).astype(dtype)

        def loss_fn(params):
            _, f = _forward(params, x_all[:P], act, gamma0, width)
            return jnp.sum((f - y) ** 2) / (2 * P)

        def one(k):
            params = mup_mlp_init(k, d, n_pad, depth, dtype)
            params = (
                [params[0] * live[:, None]]
                + [w * live[:, None] * live[None, :] for w in params[1:-1]]
                + [params[-1] * live]
            )

            def step(p, _):
                _, f = _forward(p, x_all, act, gamma0, width)
                grads = jax.grad(loss_fn)(p)
                return jax.tree.map(lambda w, gw: w - lr * gw, p, grads), f

            p_T, fs = jax.lax.scan(step, params, None, length=steps)
            _, f_T = _forward(p_T, x_all, act, gamma0, width)
            k0 = _kernels(params, x_all, act, dact, gamma0, width)
            kT = _kernels(p_T, x_all, act, dact, gamma0, width)
            return jnp.concatenate([fs, f_T[None]]), k0[0], k0[1], kT[0], kT[1]

        return jax.vmap(one)(jax.random.split(key, n_seeds))

    return train
