"""Autodiff helpers shared by the library (internal).

Not public API. `with_tangent_of` lets a value that is snapped for exactness
(a chord clipped at 0, the kernel of an input with itself set to its
variance) be differentiated as the formula it cleans up, to every order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def with_tangent_of(value, smooth):
    """``value``, differentiated as ``smooth``: for a ``value`` that is
    ``smooth`` with its rounding noise snapped away (clipped at 0, or set to
    what identical inputs give exactly).

    The snaps act where a quantity that is quadratic in ``x1 − x2`` (a
    chord, a squared distance) reaches its minimum: its first derivative
    vanishes there either way, but a select's or a clip's derivative drops
    (or, `jnp.maximum` at a tie, halves) its second, ∂²/∂x1∂x2 at x1 = x2:
    the covariance of the NNGP function's gradients. The input chords
    of `ntk.kernel` and every snap of ``ntk.stax``'s chords keep it so.

    Computed as ``smooth + stop_gradient(value − smooth)``, which is
    ``value`` to the last bit wherever ``value`` is ``smooth``, 0, or within
    a factor 2 of ``smooth`` (the difference is then exact, Sterbenz's
    lemma): all the snaps above. A `jax.custom_jvp` would cost nothing in
    the forward pass, but its rule does not survive reverse mode through
    `jax.lax.scan` to the second order (jax 0.10: the scan of a repeated
    block gave 1e-4 relative errors where the unrolled one gave 1e-8).
    Where ``smooth`` is not finite, ``value`` itself.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: with_tangent_of(jnp.maximum(x * x, 0.0), x * x)
      >>> float(jax.grad(jax.grad(f))(0.0))  # jnp.maximum alone gives 1.0
      2.0
    """
    exact = smooth + jax.lax.stop_gradient(value - smooth)
    return jnp.where(jnp.isfinite(smooth), exact, value)
