"""Autodiff helpers shared by the library (internal).

Not public API. `snap` lets a value that is snapped for exactness (a chord
clipped at 0, the kernel of an input with itself set to its variance) be
differentiated as the formula it cleans up, to every order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def snap(smooth, where, target=0.0):
    """``jnp.where(where, target, smooth)``, differentiated as ``smooth``: for
    ``smooth`` with its rounding noise snapped away (clipped at 0, or set to
    what identical inputs give exactly).

    The snaps act where a quantity that is quadratic in ``x1 − x2`` (a
    chord, a squared distance) reaches its minimum: its first derivative
    vanishes there either way, but a select's or a clip's derivative drops
    (or, `jnp.maximum` at a tie, halves) its second, ∂²/∂x1∂x2 at x1 = x2:
    the covariance of the NNGP function's gradients. The input chords
    of `ntk.kernel` and every snap of ``ntk.stax``'s chords keep it so.

    Computed as ``smooth − stop_gradient(where(where, smooth − target, 0))``:
    exactly ``smooth`` where nothing is snapped, and exactly ``target`` where
    ``target`` is 0 or within a factor 2 of ``smooth`` (the differences are
    then exact, Sterbenz's lemma), as for every snap above; one subtraction
    more than the select. A `jax.custom_jvp` would cost nothing in the
    forward pass, but its rule does not survive reverse mode through
    `jax.lax.scan` to the second order (jax 0.10: the loop of a repeated
    block gave 1e-4 relative errors where the unrolled one gave 1e-8).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: snap(x * x, x * x < 0)  # jnp.maximum(x * x, 0) as value
      >>> float(jax.grad(jax.grad(f))(0.0))  # jnp.maximum alone gives 1.0
      2.0
    """
    correction = jnp.where(where, smooth - target, jnp.zeros((), jnp.result_type(smooth)))
    return smooth - jax.lax.stop_gradient(correction)
