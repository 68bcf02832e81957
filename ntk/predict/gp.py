"""`gp_inference`: NNGP, NTK and NTK-GP posteriors (infinite training time)."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from ntk import _checks
from ntk._linalg import require_scale_flag
from ntk.predict._checks import as_float_array, canonical_get, has_kernel, kernel_attr
from ntk.predict._layout import Layout
from ntk.predict._linalg import Regularised, dot
from ntk.predict.results import Gaussian, named


def gp_inference(
    k_train_train,
    y_train,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Sequence[int] = (-1,),
):
    r"""NNGP, NTK and NTK-GP posteriors (infinite time) on test points.

    With :math:`K` the NNGP, :math:`\Theta` the NTK, :math:`d` training and :math:`t`
    test inputs, :math:`K_{dd}` and :math:`\Theta_{dd}` regularised by ``diag_reg``:

    * ``"nngp"`` — the exact posterior of an infinitely wide Bayesian network
      (Lee et al. 2018, "Deep neural networks as Gaussian processes", eq. 3):
      :math:`\mu = K_{td} K_{dd}^{-1} Y`,
      :math:`\Sigma = K_{tt} - K_{td} K_{dd}^{-1} K_{dt}`.
    * ``"ntk"`` — the distribution of an infinite ensemble of infinitely wide
      networks trained to convergence (Lee et al. 2019, eqs. 15-16,
      :math:`t = \infty`): :math:`\mu = \Theta_{td} \Theta_{dd}^{-1} Y`,

      .. math::

          \Sigma = K_{tt} + \Theta_{td} \Theta_{dd}^{-1} K_{dd} \Theta_{dd}^{-1} \Theta_{dt}
          - (\Theta_{td} \Theta_{dd}^{-1} K_{dt} + \mathrm{h.c.}).

    * ``"ntkgp"`` — the GP posterior with the NTK as prior covariance (He et
      al. 2020, "Bayesian deep ensembles via the NTK"): :math:`\mu` as ``"ntk"``,
      :math:`\Sigma = \Theta_{tt} - \Theta_{td} \Theta_{dd}^{-1} \Theta_{dt}`.

    Args:
      k_train_train: ``(N, N)`` kernel array, or an object with ``.nngp`` and/or
        ``.ntk`` (an `ntk.Kernel`, or the namedtuple of ``kernel_fn(...,
        get=("nngp", "ntk"))``). An array serves as every kernel asked for.
      y_train: ``(N, K)`` targets.
      diag_reg, diag_reg_absolute_scale, trace_axes: as in
        `gradient_descent_mse`.

    Returns:
      ``predict_fn(get=None, k_test_train=None, k_test_test=None)``: ``get`` is
      ``"nngp"``, ``"ntk"``, ``"ntkgp"`` or a tuple (None = ``("nngp",
      "ntk")``); ``k_test_train`` ``(M, N)`` (None: predictions on the
      training set, :math:`\mathcal{N}(Y, 0)`); ``k_test_test`` ``(M, M)`` to also get
      covariances (any non-None value when ``k_test_train`` is None). Returns
      the mean or a `Gaussian` for one name, a namedtuple ``Gaussians`` over
      the names for a tuple. The NTK covariance needs both ``nngp`` and ``ntk``
      in ``k_train_train`` and ``k_test_train``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk import predict, stax
      >>> x_train = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
      >>> y_train = jnp.sin(x_train[:, :1])
      >>> x_test = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
      >>> k_dd = kernel_fn(x_train, None, ("nngp", "ntk"))
      >>> k_td = kernel_fn(x_test, x_train, ("nngp", "ntk"))
      >>> k_tt = kernel_fn(x_test, None, "nngp")
      >>> predict_fn = predict.gp_inference(k_dd, y_train, diag_reg=1e-4)
      >>> nngp = predict_fn("nngp", k_td, k_tt)       # Gaussian(mean, covariance)
      >>> nngp.mean.shape, nngp.covariance.shape
      ((4, 1), (4, 4))
    """
    name = "gp_inference"
    y_train = as_float_array(y_train, "y_train", name)
    lay = Layout(y_train.shape, trace_axes, name)
    _checks.require_nonnegative(diag_reg, "diag_reg", name)
    require_scale_flag(diag_reg_absolute_scale, "diag_reg_absolute_scale", name)
    if k_train_train is None:
        raise ValueError(f"{name}: `k_train_train` is required; got None.")
    regs = {}

    def reg_of(g):  # g in {"nngp", "ntk"}
        if g not in regs:
            arg = "k_train_train" if hasattr(k_train_train, "shape") else f"k_train_train.{g}"
            k = kernel_attr(k_train_train, g, "k_train_train", name)
            regs[g] = Regularised(
                lay.train_kernel_2d(k, arg), diag_reg, diag_reg_absolute_scale, name, arg
            )
        return regs[g]

    def predict_fn(get=None, k_test_train=None, k_test_test=None):
        names, single = canonical_get(get, ("nngp", "ntk", "ntkgp"), name, default=("nngp", "ntk"))
        out = {}
        for g in names:
            kind = "ntk" if g == "ntkgp" else g
            reg = reg_of(kind)
            dtype = jnp.result_type(reg.k.dtype, y_train.dtype)
            y_flat = lay.flatten(y_train).astype(dtype)
            if k_test_train is None:
                mean = y_train.astype(dtype)
                out[g] = (
                    mean
                    if k_test_test is None
                    else Gaussian(mean, lay.unflatten_cov(jnp.zeros_like(reg.k), lay.nt_shape, ()))
                )
                continue
            k_td, test_shape = lay.test_kernel_2d(
                kernel_attr(k_test_train, kind, "k_test_train", name), "k_test_train"
            )
            test_nt = lay.test_nt(test_shape)
            mean = lay.unflatten(dot(k_td, reg.cho_solve(y_flat)), test_nt)
            if k_test_test is None:
                out[g] = mean
                continue
            prior = "ntk" if g == "ntkgp" else "nngp"
            k_tt = _checks.require_symmetric(
                lay.kernel_2d(
                    kernel_attr(k_test_test, prior, "k_test_test", name),
                    "k_test_test",
                    test_nt,
                    test_nt,
                ),
                "k_test_test",
                name,
            )
            if g in ("nngp", "ntkgp"):
                cov = k_tt - dot(k_td, reg.cho_solve(k_td.T))
            else:
                if not (has_kernel(k_train_train, "nngp") and has_kernel(k_test_train, "nngp")):
                    raise ValueError(
                        f"{name}: the NTK posterior covariance needs both the "
                        f"NNGP and the NTK of `k_train_train` and "
                        f"`k_test_train` (objects with .nngp and .ntk, e.g. "
                        f"kernel_fn(x1, x2, get=('nngp', 'ntk'))); got "
                        f"{type(k_train_train).__name__} and "
                        f"{type(k_test_train).__name__}."
                    )
                nngp_dd = lay.train_kernel_2d(k_train_train.nngp, "k_train_train.nngp")
                nngp_td, _ = lay.test_kernel_2d(k_test_train.nngp, "k_test_train.nngp")
                a = reg.cho_solve(k_td.T)  # Θ_dd^{-1} Θ_dt
                cross = dot(nngp_td, a)  # K_td Θ_dd^{-1} Θ_dt
                cov = k_tt + dot(a.T, dot(nngp_dd, a)) - cross - cross.T
            out[g] = Gaussian(mean, lay.unflatten_cov(cov, test_nt, ()))
        return named(out, names, single)

    return predict_fn
