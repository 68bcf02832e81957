r"""Finite-width validation: train :math:`M` networks by gradient descent and ensemble them.

Each member is `network` at width :math:`n` (NTK parameterisation, i.i.d.
:math:`\mathcal{N}(0, 1)` parameters), trained by full-batch gradient descent on
:math:`\tfrac{1}{2}\lVert f(X) - Y \rVert^2` with the paper's training set. In function space
the step is :math:`f \leftarrow f - \eta \hat{\Theta} (f - Y)`;
:math:`\eta = 1/\lambda_{\max}(\Theta_{dd})` (the infinite-width NTK) is stable and the
residual decays like :math:`(1 - \eta \lambda_{\min})^t`, so
:math:`\mathtt{steps}
= \lceil \log(1/\mathtt{tol}) / {-\log(1 - \eta \lambda_{\min})} \rceil`
(about :math:`\log(1/\mathtt{tol})\, \lambda_{\max}/\lambda_{\min}`) reaches ``tol``. As
:math:`n \to \infty` the members' outputs are draws of the
:math:`t = \infty` GP of `ntk.permutations.gp`
(Jacot et al. 2018; Lee et al. 2019). Members are trained in parallel with
``jax.vmap`` inside one ``jax.jit``-compiled ``lax.scan``.

Example:
    >>> import jax
    >>> from ntk import permutations as perms
    >>> perm = perms.random_permutation(jax.random.PRNGKey(1), 3)
    >>> x = perms.binary_inputs(3)                                      # (7, 3)
    >>> out = perms.train_finite_ensemble(jax.random.PRNGKey(0), perm, x, 4, width=64)
    >>> out.shape            # (members, N, k)
    (4, 7, 3)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.permutations.setting import check_perm, check_stds, network, training_set


def train_finite_ensemble(
    key,
    perm,
    x_test,
    n_members: int,
    width: int = 1024,
    W_std: float = 1.0,
    b_std=None,
    steps=None,
    learning_rate=None,
    tol: float = 1e-6,
):
    """Outputs ``(M, N, k)`` on ``x_test`` of :math:`M` finite networks trained by GD.

    Args:
      key: PRNG key (member ``m`` uses ``split(key, M)[m]``).
      perm: permutation vector ``(k,)``; x_test: ``(N, k)``.
      n_members, width: :math:`M` and the hidden width :math:`n`.
      steps, learning_rate: default from the infinite-width NTK (module doc).
      tol: residual the default number of steps aims for.

    Example (a run: module docstring; each call compiles its training loop):
        >>> from ntk import permutations as perms
        >>> perms.train_finite_ensemble(jax.random.PRNGKey(0), jnp.array([1, 2, 0]),
        ...                             jnp.ones((4, 2)), 2)     # inputs need k = 3 columns
        Traceback (most recent call last):
          ...
        ValueError: train_finite_ensemble: `x_test` must have shape (N, 3); got (4, 2).
    """
    name = "train_finite_ensemble"
    perm = check_perm(perm, name)
    k = perm.size
    n_members = _checks.require_int(n_members, "n_members", name)
    width = _checks.require_int(width, "width", name)
    W_std, b_std = check_stds(W_std, b_std, name)
    _checks.require_real(tol, "tol", name, low=0, high=1, low_open=True, high_open=True)
    x_test = _checks.as_array(x_test, "x_test", name)
    if x_test.ndim != 2 or x_test.shape[1] != k:
        raise ValueError(f"{name}: `x_test` must have shape (N, {k}); got {tuple(x_test.shape)}.")
    if steps is not None:
        steps = _checks.require_int(steps, "steps", name)
    if learning_rate is not None:
        _checks.require_positive(learning_rate, "learning_rate", name)
    init_fn, apply_fn, kernel_fn = network(k, width, W_std, b_std)
    dtype = jnp.result_type(float)
    x_train, y_train = training_set(perm, dtype)
    x_test = jnp.asarray(x_test, dtype)
    evals = np.linalg.eigvalsh(np.asarray(kernel_fn(x_train, None, "ntk"), np.float64))
    lr = 1.0 / evals[-1] if learning_rate is None else float(learning_rate)
    if steps is None:
        if not 0 < lr * evals[0] < 1:
            raise ValueError(
                f"{name}: with steps=None, `learning_rate` must be below "
                f"1/λ_min = {1 / evals[0]:.3g} of the NTK (the default "
                f"number of steps assumes a residual decaying like "
                f"(1 − η λ_min)^t); got {lr:g}. Pass `steps`."
            )
        steps = int(math.ceil(math.log(1.0 / tol) / -math.log1p(-lr * evals[0])))

    def loss(params):
        return 0.5 * jnp.sum((apply_fn(params, x_train) - y_train) ** 2)

    def train_one(member_key):
        _, params = init_fn(member_key, x_train.shape)

        def step(p, _):
            g = jax.grad(loss)(p)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None

        params, _ = jax.lax.scan(step, params, None, length=steps)
        return apply_fn(params, x_test)

    return jax.jit(jax.vmap(train_one))(jax.random.split(key, n_members))
