"""What the predict functions return.

`Gaussian` ``(mean, covariance)``; the ``Gaussians`` namedtuples over several
``get`` names; `ODEState`, the state of the ODE of `gradient_descent`; and the
``fx_train`` / ``fx_test`` / ``(fx_train, fx_test)`` convention of the
``predict_fn`` of `gradient_descent_mse` and `gradient_descent`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax

from ntk.kernel import record_type


class Gaussian(NamedTuple):
    """A Gaussian ``(mean, covariance)``.

    Attributes:
      mean: shape of the outputs, e.g. ``(N_test, K)`` (with leading time axes
        when times were requested).
      covariance: shape of the kernel on the test points, e.g.
        ``(N_test, N_test)``: the covariance of every output channel.

    Example:
      >>> import numpy as np
      >>> from ntk.predict import Gaussian
      >>> g = Gaussian(mean=np.zeros((3, 1)), covariance=np.eye(3))
      >>> mean, cov = g                                 # a namedtuple
      >>> g.mean.shape, cov.shape
      ((3, 1), (3, 3))
    """

    mean: jax.Array
    covariance: jax.Array


@dataclasses.dataclass
class ODEState:
    """State of the function-space ODE of `gradient_descent`.

    Attributes:
      fx_train: outputs on the training set.
      fx_test: outputs on the test set (or None).
      qx_train: velocity ``df/dt`` on the training set (momentum only).
      qx_test: velocity on the test set (momentum only).

    Example:
      A pytree: maps act on the arrays it holds, None fields stay None:

      >>> import jax, numpy as np
      >>> from ntk.predict import ODEState
      >>> s = ODEState(fx_train=np.ones((4, 1)), fx_test=np.zeros((2, 1)))
      >>> s2 = jax.tree_util.tree_map(lambda a: 2 * a, s)
      >>> s2.fx_train.shape, float(s2.fx_train[0, 0]), s2.qx_train
      ((4, 1), 2.0, None)
    """

    fx_train: Optional[jax.Array] = None
    fx_test: Optional[jax.Array] = None
    qx_train: Optional[jax.Array] = None
    qx_test: Optional[jax.Array] = None


jax.tree_util.register_dataclass(
    ODEState, data_fields=["fx_train", "fx_test", "qx_train", "qx_test"], meta_fields=[]
)


def pack(train, test):
    if train is not None and test is not None:
        return train, test
    return train if test is None else test


def named(out: dict, names: tuple, single: bool):
    if single:
        return out[names[0]]
    return record_type("Gaussians", tuple(names))(*(out[g] for g in names))
