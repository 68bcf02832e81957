"""`gradient_descent_mse_ensemble`: outputs of infinitely many MSE-trained networks.

Mean and covariance over random initialisations, at any time, computed from a
``kernel_fn``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from ntk import _checks
from ntk._linalg import require_scale_flag
from ntk.kernel import is_input_pair
from ntk.predict._checks import as_float_array, canonical_get, check_times, kernel_attr
from ntk.predict._layout import Layout
from ntk.predict._linalg import HP, Regularised, dot, expm1_filter, expm1_over_filter
from ntk.predict.results import Gaussian, named


def gradient_descent_mse_ensemble(
    kernel_fn,
    x_train,
    y_train,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Sequence[int] = (-1,),
    **kernel_fn_train_train_kwargs,
):
    r"""Mean and covariance over random initialisations of MSE-trained networks.

    The outputs of an infinitely wide network at initialisation are a centred
    GP with the NNGP :math:`K`; trained by gradient flow on
    :math:`\lVert f(X) - Y \rVert^2 / (2n)` (``n = y_train.size``,
    :math:`\tau = \eta t / n`) they stay Gaussian. With
    :math:`A_t = \Theta_{dd}^{-1}(I - e^{-\Theta_{dd} \tau})` (Lee et al. 2019,
    eqs. 14-16, any ``t``; :math:`t = \infty` gives `gp_inference`):

    * ``get="ntk"`` — all layers trained (the NTK regime):
      :math:`\mu_t(x) = \Theta_{xd} A_t Y`, and

      .. math::

          \Sigma_t(x, x') = K_{xx'} + \Theta_{xd} A_t K_{dd} A_t^\top \Theta_{dx'}
          - (\Theta_{xd} A_t K_{dx'} + \mathrm{h.c.});

      on the training set :math:`\mu_t = (I - e^{-\Theta\tau}) Y`,
      :math:`\Sigma_t = e^{-\Theta\tau} K e^{-\Theta\tau}`.
    * ``get="nngp"`` — only the readout trained, so the kernel is :math:`K`
      (Bayesian-style: the :math:`t = \infty` limit is the NNGP posterior):
      :math:`\mu_t(x) = K_{xd} K_{dd}^{-1}(I - e^{-K\tau}) Y`,
      :math:`\Sigma_t(x, x') = K_{xx'} - K_{xd} K_{dd}^{-1}(I - e^{-2K\tau}) K_{dx'}`;
      on the training set :math:`\Sigma_t = K e^{-2K\tau}`.

    ``diag_reg`` regularises the kernel that drives the dynamics
    (:math:`\Theta_{dd}`, resp. :math:`K_{dd}`), not the prior covariance
    :math:`K_{dd}` in the NTK formula.

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get, **kwargs)`` returning arrays for one
        name and an object with ``.nngp``/``.ntk`` for a tuple, e.g. the
        ``kernel_fn`` of ``ntk.stax``.
      x_train: training inputs ``(N, ...)``.
      y_train: ``(N, K)`` targets.
      learning_rate, diag_reg, diag_reg_absolute_scale, trace_axes: as in
        `gradient_descent_mse`.
      **kernel_fn_train_train_kwargs: passed to ``kernel_fn`` on the training
        inputs (and, unless overridden, on the test inputs).

    Returns:
      ``predict_fn(t=None, x_test=None, get=None, compute_cov=False,
      **kernel_fn_test_test_kwargs)``: ``t`` non-negative time(s) (leading axes
      of the outputs) or None for :math:`\infty`; ``x_test`` test inputs, None for the
      training set; ``get`` ``"nngp"``, ``"ntk"`` or a tuple (None = both);
      returns means ``(*t.shape, M, K)``, or `Gaussian` ``(mean, covariance)``
      with covariance ``(*t.shape, M, M)`` when ``compute_cov``; a namedtuple
      ``Gaussians`` over the names when ``get`` is a tuple.

    Example:
      At ``t = 0`` the outputs are the prior (mean 0, covariance ``K``);
      training moves the mean to the targets and shrinks the covariance:

      >>> import jax.numpy as jnp
      >>> from ntk import predict, stax
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1),
      ...                               stax.Erf(), stax.Dense(1, W_std=1.5))
      >>> x_train = jnp.linspace(-2., 2., 8)[:, None]
      >>> predict_fn = predict.gradient_descent_mse_ensemble(
      ...     kernel_fn, x_train, jnp.tanh(x_train), learning_rate=0.5, diag_reg=1e-6)
      >>> out = predict_fn(t=jnp.array([0., 10., 100.]), x_test=jnp.array([[0.5]]),
      ...                  get="ntk", compute_cov=True)
      >>> out.mean.shape, out.covariance.shape      # (times, M, K), (times, M, M)
      ((3, 1, 1), (3, 1, 1))
      >>> bool(out.mean[0, 0, 0] == 0), bool(jnp.all(jnp.diff(out.covariance.ravel()) < 0))
      (True, True)
    """
    name = "gradient_descent_mse_ensemble"
    _checks.require_callable(
        kernel_fn, "kernel_fn", name, "a function kernel_fn(x1, x2, get, **kwargs)"
    )
    if x_train is None:
        raise ValueError(f"{name}: `x_train` is required; got None.")
    y_train = as_float_array(y_train, "y_train", name)
    lay = Layout(y_train.shape, trace_axes, name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    _checks.require_nonnegative(diag_reg, "diag_reg", name)
    require_scale_flag(diag_reg_absolute_scale, "diag_reg_absolute_scale", name)
    n = y_train.size
    train_kwargs = dict(kernel_fn_train_train_kwargs)
    k_dd_cache: dict = {}
    regs: dict = {}

    def k_dd(g):
        if g not in k_dd_cache:
            with jax.ensure_compile_time_eval():
                k = kernel_attr(
                    kernel_fn(x_train, None, g, **train_kwargs), g, "kernel_fn(x_train, None)", name
                )
            k = lay.train_kernel_2d(k, f"kernel_fn(x_train, None, {g!r})")
            if _checks.is_concrete(k):
                k_dd_cache[g] = k
            return k
        return k_dd_cache[g]

    def reg_of(g):
        if g in regs:
            return regs[g]
        r = Regularised(
            k_dd(g), diag_reg, diag_reg_absolute_scale, name, f"kernel_fn(x_train, None, {g!r})"
        )
        if g in k_dd_cache:
            regs[g] = r
        return r

    def predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kernel_fn_test_test_kwargs):
        names, single = canonical_get(get, ("nngp", "ntk"), name, default=("nngp", "ntk"))
        compute_cov = _checks.require_bool(compute_cov, "compute_cov", name)
        has_inf = False
        if t is not None:
            t, has_inf = check_times(t, name)
        need = tuple(g for g in ("nngp", "ntk") if g in names or (g == "nngp" and compute_cov))
        dtype = jnp.result_type(*(k_dd(g).dtype for g in need), y_train.dtype)
        y_flat = lay.flatten(y_train).astype(dtype)
        k_td = k_tt = None
        if x_test is not None:
            kw_td, kw_tt = _merge_kwargs(train_kwargs, kernel_fn_test_test_kwargs, name)
            got = kernel_fn(x_test, x_train, need, **kw_td)
            k_td, test_nt = {}, None
            for g in need:
                k_td[g], test_shape = lay.test_kernel_2d(
                    kernel_attr(got, g, "kernel_fn(x_test, x_train)", name),
                    f"kernel_fn(x_test, x_train, {g!r})",
                )
                test_nt = lay.test_nt(test_shape)
            if compute_cov:
                k_tt = _checks.require_symmetric(
                    lay.kernel_2d(
                        kernel_attr(
                            kernel_fn(x_test, None, "nngp", **kw_tt),
                            "nngp",
                            "kernel_fn(x_test, None)",
                            name,
                        ),
                        "kernel_fn(x_test, None, 'nngp')",
                        test_nt,
                        test_nt,
                    ),
                    "kernel_fn(x_test, None, 'nngp')",
                    name,
                )
        else:
            test_nt = lay.nt_shape

        out = {}
        for g in names:
            reg = reg_of(g)
            # t = None is t = ∞: the same definiteness requirement, whether or
            # not test points are asked for.
            if has_inf or t is None:
                reg.check_definite()
            if t is None:
                mean, cov = _ensemble_inf(g, reg, y_flat, k_dd, k_td, k_tt, compute_cov)
                lead = ()
            else:
                lead = t.shape
                tau = (learning_rate * t.reshape(-1) / n).astype(dtype)
                mean, cov = _ensemble_t(g, reg, tau, y_flat, k_dd, k_td, k_tt, compute_cov)
            mean = lay.unflatten(mean, test_nt, lead)
            out[g] = Gaussian(mean, lay.unflatten_cov(cov, test_nt, lead)) if compute_cov else mean
        return named(out, names, single)

    return predict_fn


def _ensemble_inf(g, reg, y_flat, k_dd, k_td, k_tt, compute_cov):
    """``t = ∞``: train set ``N(Y, 0)``; test set the `gp_inference` posterior."""
    if k_td is None:
        return y_flat, (jnp.zeros_like(reg.k) if compute_cov else None)
    mean = dot(k_td[g], reg.cho_solve(y_flat))
    if not compute_cov:
        return mean, None
    a = reg.cho_solve(k_td[g].T)
    if g == "nngp":
        return mean, k_tt - dot(k_td["nngp"], a)
    cross = dot(k_td["nngp"], a)
    return mean, k_tt + dot(a.T, dot(k_dd("nngp"), a)) - cross - cross.T


def _ensemble_t(g, reg, tau, y_flat, k_dd, k_td, k_tt, compute_cov):
    """Finite times ``tau = η t / n`` (flat ``(T,)``) in the eigenbasis (`Regularised.apply`)."""
    if k_td is None:
        mean = -reg.apply(expm1_filter, tau, y_flat)
        if not compute_cov:
            return mean, None
        if g == "nngp":
            return mean, reg.apply(_decay_times_lambda, tau)
        e = reg.apply(_decay, tau)
        return mean, jnp.einsum("tpr,rs,tqs->tpq", e, k_dd("nngp"), e, precision=HP)

    mean = reg.apply(_flow_over, tau, y_flat, left=k_td[g])
    if not compute_cov:
        return mean, None
    if g == "nngp":
        return mean, k_tt[None] - reg.apply(
            _flow_over_twice, tau, k_td["nngp"].T, left=k_td["nngp"]
        )
    # M_t = A_t Θ_dt with A_t = Θ^{-1}(I - e^{-Θτ}).
    m = reg.apply(_flow_over, tau, k_td[g].T)
    cross = jnp.einsum("qp,tpr->tqr", k_td["nngp"], m, precision=HP)
    quad = jnp.einsum("tpq,pr,trs->tqs", m, k_dd("nngp"), m, precision=HP)
    return mean, k_tt[None] + quad - cross - jnp.swapaxes(cross, 1, 2)


def _decay(evals, tau):
    """``e^{-λτ}`` (1 on untrained directions, λ ≤ 0)."""
    return 1.0 + expm1_filter(evals, tau)


def _decay_times_lambda(evals, tau):
    """``λ e^{-2λτ}``, 0 for ``λ ≤ 0``: the train-set NNGP covariance."""
    lam = evals[None, :]
    return jnp.where(lam > 0, lam * (1.0 + expm1_filter(evals, 2 * tau)), 0.0)


def _flow_over(evals, tau):
    """``(1 - e^{-λτ}) / λ``: ``Θ^{-1}(I - e^{-Θτ})`` in the eigenbasis."""
    return -expm1_over_filter(evals, tau)


def _flow_over_twice(evals, tau):
    return -expm1_over_filter(evals, 2 * tau)


def _merge_kwargs(train_kwargs, test_kwargs, name):
    """kwargs of ``kernel_fn`` for (test, train) and (test, test), as NT.

    Test kwargs override train ones for the test-test kernel; for test-train,
    a pair ``(a, b)`` of arrays given for both becomes ``(test[0], train[0])``
    (per-input arrays such as masks or `Aggregate`'s patterns; ``b`` may be
    None, meaning ``a`` again, as for ``x2=None``); other arrays, and pytrees
    of arrays such as an empirical kernel's ``params``, are taken from the
    test kwargs; other values must agree.
    """
    kw_td, kw_tt = dict(train_kwargs), dict(train_kwargs)
    for key, v_tt in test_kwargs.items():
        if key in train_kwargs:
            v_dd = train_kwargs[key]
            if is_input_pair(v_dd) and is_input_pair(v_tt):
                v_td = (v_tt[0], v_dd[0])
            elif _is_array_tree(v_dd) and _is_array_tree(v_tt):
                v_td = v_tt
            elif v_dd is not v_tt and v_dd != v_tt:
                raise ValueError(
                    f"{name}: keyword argument `{key}` of "
                    f"`kernel_fn` is {v_dd!r} for the training "
                    f"kernel but {v_tt!r} for the test kernel."
                )
            else:
                v_td = v_tt
        else:
            v_td = v_tt
        kw_td[key], kw_tt[key] = v_td, v_tt
    return kw_td, kw_tt


def _is_array_tree(v) -> bool:
    """An array, or a non-empty pytree of arrays only (NT compares these by
    kind, not value: ``==`` on them is elementwise)."""
    leaves = jax.tree_util.tree_leaves(v)
    return bool(leaves) and all(hasattr(leaf, "shape") for leaf in leaves)
