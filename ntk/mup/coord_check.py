r"""Coordinate checks (TP5 §D.1, "coord check"; TP4 §3's :math:`\Delta x = \Theta(n^{-r})`).

Train the same architecture at several widths for a few steps and record, per
layer and step :math:`t`, the typical coordinate size of its preactivations
:math:`h_t` and of their change :math:`h_t - h_0`, over the batch and the width:

.. math::

    \mathrm{RMS}(v) = \Big( \frac{1}{N \cdot n} \sum_{i,\alpha} v_{i\alpha}^2 \Big)^{1/2}.

In a stable parametrization :math:`\mathrm{RMS}(h_t)` is :math:`\Theta(1)` in width; the
change is :math:`\Theta(n^{-r})` for the features (:math:`r = 0`: feature learning, μP;
:math:`r = 1/2`: NTK) and the output's change blows up with width under SP at a fixed learning
rate (TP4 Thm. 3.3 / 4.1). The log-log slope of a curve against width is its
width exponent; `ABC.predicted_slopes` gives the theory's.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from ntk import mup, stax
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (16, 4)); y = jnp.sin(x[:, :1])
    >>> mup_zero = mup.abc("mup", 2, zero_readout=True)   # TP5's readout initialisation
    >>> def make(n):
    ...     return mup.parametrize(stax.serial(stax.Dense(n), stax.Relu(),
    ...                                        stax.Dense(n), stax.Relu(),
    ...                                        stax.Dense(1)), mup_zero, base_width=64)
    >>> cc = mup.coord_check(make, (64, 256), x, y, seeds=4,   # one draw: off by up to 1
    ...                      optimizer=lambda info: mup.sgd(0.5, info), steps=2)
    >>> slopes = cc.slopes(step=2, what="delta")   # width exponents: 0 in the limit
    >>> sorted(slopes), all(abs(s) < 0.5 for s in slopes.values())   # SP's f: ≈ 1.5
    (['f', 'h^1', 'h^2'], True)
    >>> fig = cc.plot()
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk import _checks
from ntk.power_law import loglog_slope


def rms(v) -> jnp.ndarray:
    r"""Root-mean-square coordinate size :math:`\sqrt{\operatorname{mean}(v^2)}` (``v``
    non-empty).

    Example:
        >>> import jax.numpy as jnp
        >>> from ntk import mup
        >>> float(mup.rms(jnp.array([[3.0, -4.0], [0.0, 0.0]])))   # sqrt(25 / 4)
        2.5
    """
    v = _checks.as_array(v, "v", "rms", finite=False, nonempty=True)
    return jnp.sqrt(jnp.mean(jnp.square(v)))


def _loss_fn(loss):
    if callable(loss):
        return loss
    if loss == "mse":
        return lambda f, y: 0.5 * jnp.mean(jnp.sum((f - y) ** 2, axis=-1))
    if loss == "xent":
        return lambda f, y: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(f, y))
    raise ValueError(
        f"coord_check: `loss` must be 'mse', 'xent' or a callable (f, y) -> scalar; got {loss!r}."
    )


def _check_targets(loss: str, y, f_shape: tuple) -> None:
    """``y`` must fit the network's outputs ``f_shape`` without broadcasting:
    ``(N, K)`` targets for "mse", ``(N,)`` integer labels below ``K`` for "xent"."""
    y = np.asarray(y)
    if loss == "mse" and y.shape != tuple(f_shape):
        raise ValueError(
            f"coord_check: with loss='mse' `y` must have the outputs' shape "
            f"{tuple(f_shape)}; got {y.shape}."
        )
    if loss == "xent":
        classes = f_shape[-1]
        if not np.issubdtype(y.dtype, np.integer) or y.shape != tuple(f_shape[:-1]):
            raise ValueError(
                f"coord_check: with loss='xent' `y` must be integer labels of "
                f"shape {tuple(f_shape[:-1])}; got {y.dtype} of shape {y.shape}."
            )
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(
                f"coord_check: with loss='xent' the labels `y` must lie in "
                f"[0, {classes}) (the outputs' classes); got {y.min()}..{y.max()}."
            )


def _check_step(step, steps, name):
    return _checks.require_int(step, "step", name, minimum=-(steps + 1), maximum=steps)


@dataclasses.dataclass(frozen=True)
class CoordCheck:
    """Result of `coord_check`.

    Attributes:
      widths: the widths, ascending.
      steps: number of optimizer steps (records at t = 0..steps).
      layers: the recorded layer names (``h^1``…, ``f``).
      size: ``{layer: (len(widths), steps + 1)}`` RMS of :math:`h_t` (seed mean).
      delta: the same for :math:`h_t - h_0`.
      label: a title for plots.

    Example (a real check: module docstring):
        >>> import numpy as np
        >>> from ntk import mup
        >>> cc = mup.CoordCheck(widths=(64, 256), steps=1, layers=("f",),
        ...                     size={"f": np.ones((2, 2))},
        ...                     delta={"f": np.array([[0.0, 1.0], [0.0, 0.25]])})
        >>> round(cc.slope("f", step=1), 4)       # Δf ∝ n^{-1}: 1 → 1/4 over 4x width
        -1.0
    """

    widths: tuple
    steps: int
    layers: tuple
    size: dict
    delta: dict
    label: str = ""

    def slope(self, layer: str, step: int = -1, what: str = "delta") -> float:
        """Least-squares slope of log RMS against log width at ``step``."""
        _checks.require_one_of(what, ("size", "delta"), "what", "CoordCheck.slope")
        step = _check_step(step, self.steps, "CoordCheck.slope")
        if layer not in self.layers:
            raise ValueError(
                f"CoordCheck.slope: unknown layer {layer!r}; layers are {self.layers}."
            )
        v = getattr(self, what)[layer][:, step]
        # NaN when a size is zero or not finite: no rate can be read off
        return loglog_slope(self.widths, v, invalid="nan")

    def slopes(self, step: int = -1, what: str = "delta") -> dict:
        """`slope` of every layer."""
        return {l: self.slope(l, step, what) for l in self.layers}

    def plot(self, steps: Optional[Sequence[int]] = None, axes=None):
        """RMS vs width (log-log), one panel per step; rows :math:`h_t` and :math:`h_t - h_0`.

        Returns the matplotlib figure.
        """
        import matplotlib.pyplot as plt

        steps = (
            list(range(1, self.steps + 1))
            if steps is None
            else [_check_step(t, self.steps, "CoordCheck.plot") for t in steps]
        )
        if not steps:
            raise ValueError("CoordCheck.plot: `steps` must name at least one step.")
        if axes is None:
            fig, axes = plt.subplots(
                2, len(steps), figsize=(3.2 * len(steps), 5.4), squeeze=False, sharex=True
            )
        else:
            axes = np.asarray(axes).reshape(2, -1)
            fig = axes[0, 0].figure
        for j, t in enumerate(steps):
            for i, what in enumerate(("size", "delta")):
                ax = axes[i, j]
                for layer in self.layers:
                    ax.loglog(
                        self.widths, getattr(self, what)[layer][:, t], "o-", ms=3, label=layer
                    )
                ax.set_title(
                    f"{'RMS h_t' if what == 'size' else 'RMS (h_t - h_0)'}, t={t}", fontsize=9
                )
                if i == 1:
                    ax.set_xlabel("width")
        axes[0, 0].legend(fontsize=7)
        if self.label:
            fig.suptitle(self.label)
        fig.tight_layout()
        return fig


def coord_check(
    make: Callable,
    widths: Sequence[int],
    x,
    y,
    *,
    optimizer: Callable,
    steps: int = 3,
    loss: Union[str, Callable] = "mse",
    seeds: int = 1,
    key=None,
    label: str = "",
    dtype=None,
) -> CoordCheck:
    r"""Train at each width for ``steps`` full-batch steps and record coordinate sizes.

    Args:
      make: ``width -> Parametrized`` (from `mup.parametrize`; its
        ``features_fn`` names the layers).
      widths: widths to compare.
      x, y: a small training batch (``y``: targets for "mse", integer labels for
        "xent").
      optimizer: ``info -> optax.GradientTransformation``, e.g.
        ``lambda info: mup.sgd(0.1, info)`` or ``lambda info: optax.sgd(0.1)``.
      steps: optimizer steps (coordinate sizes recorded at t = 0..steps).
      loss: "mse", "xent" or ``(f, y) -> scalar``.
      seeds: independent initialisations averaged (of :math:`\mathrm{RMS}^2`; a stax/linen model
        is re-initialised, an nnx model uses its own draw every time).
      key: PRNG key (default ``PRNGKey(0)``).
      dtype: optionally cast floating inputs (token ids stay integers) and
        parameters (e.g. ``jnp.float32``).

    Returns:
      `CoordCheck`.

    A two-width run and its slopes are in the module docstring (every width
    compiles one training loop); here, the check of the arguments.

    Example:
        >>> import jax.numpy as jnp
        >>> from ntk import mup, stax
        >>> make = lambda n: mup.parametrize(stax.serial(stax.Dense(n), stax.Relu(),
        ...                                              stax.Dense(1)), "mup", base_width=8)
        >>> mup.coord_check(make, (64,), jnp.ones((4, 2)), jnp.ones((4, 1)),
        ...                 optimizer=lambda info: mup.sgd(0.1, info))
        Traceback (most recent call last):
          ...
        ValueError: coord_check: need at least 2 widths; got (64,).
    """
    name = "coord_check"
    _checks.require_callable(make, "make", name, "a function width -> Parametrized")
    _checks.require_callable(
        optimizer, "optimizer", name, "a function info -> optax.GradientTransformation"
    )
    widths = tuple(sorted(_checks.require_int(w, "widths", name) for w in widths))
    if len(widths) < 2:
        raise ValueError(f"coord_check: need at least 2 widths; got {widths}.")
    if len(set(widths)) != len(widths):
        raise ValueError(f"coord_check: `widths` must be distinct; got {widths}.")
    steps = _checks.require_int(steps, "steps", name)
    seeds = _checks.require_int(seeds, "seeds", name)
    _checks.as_array(x, "x", name, nonempty=True)
    lf = _loss_fn(loss)
    key = jax.random.PRNGKey(0) if key is None else key
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        # Integer inputs (token ids for an embedding) keep their dtype.
        x = x.astype(dtype or x.dtype)
    cast = (
        (lambda t: t)
        if dtype is None
        else (lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), t))
    )
    size, delta, layers = {}, {}, None
    for wi, width in enumerate(widths):
        net = make(width)
        if not hasattr(net, "features_fn"):
            raise TypeError(
                f"coord_check: `make(width)` must return a parametrized model "
                f"(mup.parametrize(model, ...)); got {type(net).__name__}."
            )
        if net.features_fn is None:
            raise ValueError("coord_check: the parametrized model has no features_fn.")
        opt = optimizer(net.info)

        @jax.jit
        def run(w0):
            feats0 = net.features_fn(w0, x)

            def record(w):
                feats = net.features_fn(w, x)
                return (
                    {k: rms(v) ** 2 for k, v in feats.items()},
                    {k: rms(v - feats0[k]) ** 2 for k, v in feats.items()},
                )

            def step(carry, _):
                w, s = carry
                g = jax.grad(lambda w: lf(net.apply_fn(w, x), y))(w)
                u, s = opt.update(g, s, w)
                w = optax.apply_updates(w, u)
                return (w, s), record(w)

            (_, _), hist = jax.lax.scan(step, (w0, opt.init(w0)), None, length=steps)
            first = record(w0)
            return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, hist)

        init = (
            jax.jit(lambda k: cast(net.init(k, x)))
            if net.kind != "nnx"
            else (lambda k: cast(net.init(k, x)))
        )
        acc = None
        for s_key in jax.random.split(jax.random.fold_in(key, width), seeds):
            w0 = init(s_key)
            if wi == 0 and acc is None and isinstance(loss, str):  # same outputs at every width
                _check_targets(loss, y, jax.eval_shape(net.apply_fn, w0, x).shape)
            out = jax.device_get(run(w0))
            acc = out if acc is None else jax.tree_util.tree_map(np.add, acc, out)
        sq_size, sq_delta = jax.tree_util.tree_map(lambda a: a / seeds, acc)
        if layers is None:
            layers = tuple(sorted(k for k in sq_size if k != "f")) + (
                ("f",) if "f" in sq_size else ()
            )
            size = {l: np.zeros((len(widths), steps + 1)) for l in layers}
            delta = {l: np.zeros((len(widths), steps + 1)) for l in layers}
        for l in layers:
            size[l][wi] = np.sqrt(sq_size[l])
            delta[l][wi] = np.sqrt(sq_delta[l])
    assert layers is not None  # widths is non-empty (checked above)
    return CoordCheck(widths, steps, layers, size, delta, label)
