r"""The top eigenvalues of the empirical NTK without forming it.

For a function :math:`f(\theta, x)` with one output the empirical NTK on a batch
:math:`X` of :math:`N` inputs is :math:`\hat\Theta = J J^\top` (:math:`N \times N`),
:math:`J = \partial_\theta f(\theta, X)` (:math:`N \times |\theta|`). Its product with
a block :math:`V` (:math:`N \times p`) is a VJP (:math:`J^\top v`) followed by a JVP
(:math:`J (J^\top v)`) per column, so the top of its spectrum follows by subspace
iteration (Golub & Van Loan, *Matrix Computations*, §8.2.4) with neither
:math:`J` nor :math:`\hat\Theta` in memory:

.. math::

    &Q_0 = \operatorname{qr}(G), \quad G \sim \mathcal{N}(0, 1)^{N \times p}; \qquad
    Q_{i+1} = \operatorname{qr}(\hat\Theta Q_i), \quad i < \mathrm{iters}; \\
    &\text{eigenvalues of the Rayleigh–Ritz matrix }
    Q_{\mathrm{iters}}^\top \hat\Theta Q_{\mathrm{iters}} \quad (p \times p).

With :math:`p = 2 \cdot \mathrm{count}` the error of the :math:`i`-th value shrinks
like :math:`(\lambda_{p+1}/\lambda_i)^{2 \cdot \mathrm{iters}}`. This is how Jacot et
al. 2018 (Fig. 3) read the top eigenvalues of :math:`\hat\Theta` on MNIST;
`ntk.empirical.empirical_ntk_fn` gives the whole matrix when it fits.

    >>> import jax
    >>> from ntk import stax
    >>> from ntk.empirical import empirical_ntk_fn, empirical_ntk_top_eigenvalues
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    >>> init_fn, apply_fn, _ = stax.serial(stax.Dense(64), stax.Relu(), stax.Dense(1))
    >>> _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    >>> top = empirical_ntk_top_eigenvalues(apply_fn, params, x, 2, 50, jax.random.PRNGKey(2))
    >>> full = np.linalg.eigvalsh(empirical_ntk_fn(apply_fn)(x, None, params))[::-1]
    >>> top.shape, bool(np.allclose(top, full[:2], rtol=1e-5))   # 1e-8 in float64
    ((2,), True)
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks

__all__ = ["empirical_ntk_top_eigenvalues"]


def empirical_ntk_top_eigenvalues(
    f: Callable,
    params,
    x,
    count: int,
    iters: int,
    key,
    output: int = 0,
    progress: Optional[Callable[[Iterable[int]], Iterable[int]]] = None,
) -> np.ndarray:
    r"""The ``count`` largest eigenvalues of :math:`\hat\Theta = J J^\top` on ``x`` (module doc).

    Args:
      f: ``f(params, inputs)`` mapping a batch ``(B, ...)`` to outputs ``(B,)``
        or ``(B, K)`` (e.g. a stax ``apply_fn``).
      params: the parameters :math:`\theta` (any pytree).
      x: ``(N, ...)`` inputs.
      count: how many eigenvalues, :math:`1 \le \mathrm{count} \le N`; the block holds
        :math:`2 \cdot \mathrm{count}` vectors.
      iters: subspace iterations, :math:`\ge 1`.
      key: PRNG key of the starting block.
      output: the output unit :math:`k` for ``(B, K)`` outputs: the NTK of :math:`f_k`
        with itself (no trace over outputs).
      progress: None, or a wrapper that reports an iterable's progress as it is
        consumed (``tqdm.tqdm``, an experiment's ``run.progress``): it wraps
        ``range(1, iters + 1)``, the iterations, each one product :math:`\hat\Theta Q`
        (at width 10,000 on 512 MNIST images, a minute and more on a CPU).

    Returns:
      ``(count,)`` float64 NumPy array, largest first: the Ritz values of
      :math:`\hat\Theta` (not divided by :math:`N`).

    Example:
      A linear model :math:`x \cdot w` has :math:`\hat\Theta = X X^\top`, here
      :math:`\operatorname{diag}(9, 4, 0)`:

      >>> import jax, numpy as np
      >>> from ntk.empirical import empirical_ntk_top_eigenvalues
      >>> x = np.array([[3., 0.], [0., 2.], [0., 0.]])
      >>> top = empirical_ntk_top_eigenvalues(lambda w, x: x @ w, np.ones(2), x, 2, 5,
      ...                                     jax.random.PRNGKey(0))
      >>> np.round(top, 4).tolist()
      [9.0, 4.0]
    """
    name = "empirical_ntk_top_eigenvalues"
    _checks.require_callable(f, "f", name, "a function f(params, inputs)")
    n = np.shape(x)[0] if np.ndim(x) else 0
    shape = jax.eval_shape(f, params, x).shape
    if len(shape) not in (1, 2) or shape[0] != n:
        raise ValueError(
            f"{name}: `f` must map the {n} inputs to outputs of shape ({n},) or ({n}, K); "
            f"got {shape}."
        )
    units = 1 if len(shape) == 1 else shape[1]
    output = _checks.require_int(output, "output", name, minimum=0, maximum=units - 1)
    count = _checks.require_int(count, "count", name, maximum=n)
    iters = _checks.require_int(iters, "iters", name)
    if progress is not None:
        _checks.require_callable(progress, "progress", name, "None or a wrapper of an iterable")

    def unit(p):
        out = f(p, x)
        return out if out.ndim == 1 else out[:, output]

    @jax.jit
    def apply_theta(p, q):
        _, vjp = jax.vjp(unit, p)
        return jax.vmap(lambda v: jax.jvp(unit, (p,), vjp(v))[1], 1, 1)(q)

    # the block must have the outputs' dtype (float64 params give float64 f)
    dtype = jax.eval_shape(unit, params).dtype
    q, _ = jnp.linalg.qr(jax.random.normal(key, (n, 2 * count), dtype))
    steps = range(1, iters + 1)
    for _ in steps if progress is None else progress(steps):
        q, _ = jnp.linalg.qr(apply_theta(params, q))
    ritz = q.T @ apply_theta(params, q)
    # symmetrised: the product is symmetric only up to round-off
    vals = np.linalg.eigvalsh(np.asarray(0.5 * (ritz + ritz.T), np.float64))[::-1]
    return vals[:count]
