r"""Sparse (inducing-point) deep kernel machines: cost linear in the data size.

Yang et al. 2023 (ICML, §5 and App. "sparse DKM"); Milsom et al. 2023
("Convolutional deep kernel machines") for the variational output layer.
:math:`M` inducing inputs :math:`Z` carry the learned Grams :math:`G_{ii}^l`
(:math:`M \times M`); the :math:`N` data points :math:`t` only ever appear through the
blocks

.. math::

    G_{ti}^l &= K_{ti} \tilde{K}_{ii}^{-1} G_{ii}^l, \\
    g_t^l &= k_t - \operatorname{diag}(K_{ti} \tilde{K}_{ii}^{-1} K_{it})
    + \operatorname{diag}(K_{ti} \tilde{K}_{ii}^{-1} G_{ii}^l \tilde{K}_{ii}^{-1} K_{it}),

with :math:`K = K(G^{l-1})` computed blockwise from the layer below
(``condition_layer`` in `ntk.dkm.objective`), so a pass costs :math:`O(M^3 + N M^2)`.
The KL terms act on the inducing block only. The output is a variational
GP layer :math:`q(f_{i,c}) = \mathcal{N}(L m_c, L B B^\top L^\top)`
(:math:`L = \operatorname{chol} \tilde{K}_{ii}(G_L)`) and the objective is the ELBO

.. math::

    L &= \frac{N}{|\mathrm{batch}|} \sum_{t \in \mathrm{batch}} \mathbb{E}_q \log p(y_t \mid f_t)
    - \mathrm{KL}\big(q(f_i) \,\big\|\, \mathcal{N}(0, \tilde{K}_{ii})\big) \\
    &\quad - \sum_l \nu_l\, \mathrm{KL}\big(\mathcal{N}(0, G_{ii}^l) \,\big\|\,
    \mathcal{N}(0, \tilde{K}(G_{ii}^{l-1}))\big),

an unbiased minibatch estimate of the full-batch ELBO. With the inducing
points equal to the training inputs and the optimal :math:`q`
(`SparseDKM.optimal_output`, Gaussian likelihood) it equals the full DKM
objective (Titsias 2009's bound is tight there).

Example:
  >>> import jax
  >>> import numpy as np
  >>> from ntk import dkm
  >>> rng = np.random.default_rng(0)
  >>> X = rng.normal(size=(20, 3)); Y = np.sin(X[:, :1]); X_test = X[:5] + 0.1
  >>> model = dkm.SparseDKM(dkm.relu(), num_layers=2, num_inducing=8, nu=1.0)
  >>> params = model.init(X, Y, jax.random.PRNGKey(0))
  >>> params, info = model.fit(params, X, Y, jax.random.PRNGKey(1), batch_size=10,
  ...                          steps=5)
  >>> pred = model.predict(params, X_test)          # .mean (T, C), .variance (T,)
  >>> pred.mean.shape, pred.variance.shape
  ((5, 1), (5,))
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import optax

from ntk import _checks
from ntk.dkm import objective as obj
from ntk.dkm.full import FitInfo, Prediction, check_params, init_factors
from ntk.dkm.kernels import GramKernel

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SparseDKM:
    """A sparse DKM with ``num_inducing`` inducing points.

    Attributes:
      kernel, num_layers, nu, noise_var, likelihood, jitter, num_classes,
        num_samples: as in `ntk.dkm.FullDKM`.
      num_inducing: :math:`M`, the number of inducing points.
      learn_inducing: whether the inducing inputs :math:`Z` are trained.
      learn_noise: whether ``noise_var`` is trained (Gaussian likelihood;
        it is then ``exp(params["log_noise_var"])``).

    Example (a fit and a prediction: module docstring):
      >>> import jax
      >>> import numpy as np
      >>> from ntk import dkm
      >>> X = np.random.default_rng(0).normal(size=(10, 3)); Y = np.sin(X[:, :1])
      >>> model = dkm.SparseDKM(dkm.relu(), num_layers=2, num_inducing=4)
      >>> params = model.init(X, Y, jax.random.PRNGKey(0))   # Z: 4 rows of X, A_l = I
      >>> params["inducing"].shape, params["layers"][0]["raw"].shape, params["output"]["mean"].shape
      ((4, 3), (4, 4), (4, 1))
    """

    kernel: GramKernel
    num_layers: int = 2
    num_inducing: int = 100
    nu: Union[float, Sequence[float]] = 1.0
    noise_var: float = 0.1
    likelihood: str = "gaussian"
    jitter: float = 1e-6
    num_classes: Optional[int] = None
    num_samples: int = 16
    learn_inducing: bool = True
    learn_noise: bool = False

    def __post_init__(self):
        name = "SparseDKM"
        _checks.require_int(self.num_inducing, "num_inducing", name)
        for arg in ("learn_inducing", "learn_noise"):
            _checks.require_bool(getattr(self, arg), arg, name)
        object.__setattr__(self, "nu", obj.check_model(self, name))

    def _num_outputs(self, Y):
        return self.num_classes if self.likelihood == "categorical" else Y.shape[1]

    def _check_params(self, params, name, num_outputs=None, X=None):
        """``params`` as `init` makes them (and ``X``'s width, if given)."""
        if not isinstance(params, dict) or "inducing" not in params:
            raise TypeError(
                f"{name}: `params` must be the dict made by "
                f"SparseDKM.init (with 'inducing'); got "
                f"{type(params).__name__}."
            )
        Z = _checks.as_array(
            params["inducing"], "params['inducing']", name, ndim=2, what="(M, N_0)"
        )
        _checks.require_shape(
            Z,
            (self.num_inducing, None),
            "params['inducing']",
            name,
            f"num_inducing = {self.num_inducing}",
        )
        if X is not None and X.shape[1] != Z.shape[1]:
            raise ValueError(
                f"{name}: `X` must have {Z.shape[1]} columns like the "
                f"inducing inputs; got shape {tuple(X.shape)}."
            )
        if self.learn_noise:
            if "log_noise_var" not in params:
                raise ValueError(
                    f"{name}: with learn_noise=True `params` need "
                    f"'log_noise_var' (from SparseDKM.init)."
                )
            _checks.require_shape(params["log_noise_var"], (), "params['log_noise_var']", name)
        return check_params(
            params, self.num_inducing, self.num_layers, name, output=True, num_outputs=num_outputs
        )

    # ------------------------------------------------------------ params

    def init(self, X, Y, key, Z=None, scale: float = 0.0) -> dict:
        """Parameters at the NNGP (:math:`A_l = I`), the prior output layer
        (:math:`m = 0`, :math:`B = I`) and inducing inputs ``Z`` = a random subset of
        ``X`` (or the given ``Z (M, N_0)``). Call `optimal_output` next for a
        Gaussian likelihood."""
        name = "SparseDKM.init"
        X, Y = obj.check_data(X, Y, self.likelihood, name, self.num_classes)
        _checks.require_key(key, name, "it draws the inducing points")
        _checks.require_nonnegative(scale, "scale", name)
        M = self.num_inducing
        dtype = jnp.result_type(X.dtype, float)
        kz, kp = jax.random.split(key)
        if Z is None:
            if M > X.shape[0]:
                raise ValueError(
                    f"SparseDKM.init: num_inducing={M} exceeds the "
                    f"{X.shape[0]} points of X; pass `Z` or use fewer."
                )
            Z = X[jax.random.choice(kz, X.shape[0], (M,), replace=False)]
        Z = _checks.as_array(Z, "Z", name).astype(dtype)
        if Z.shape != (M, X.shape[1]):
            raise ValueError(
                f"SparseDKM.init: `Z` must have shape ({M}, {X.shape[1]}); got {Z.shape}."
            )
        keys = (
            [None] * self.num_layers if scale == 0 else list(jax.random.split(kp, self.num_layers))
        )
        C = self.num_classes if self.likelihood == "categorical" else Y.shape[1]
        out = init_factors(M, dtype, None, 0.0)
        out["mean"] = jnp.zeros((M, C), dtype)
        params = {
            "inducing": Z,
            "layers": [init_factors(M, dtype, keys[l], scale) for l in range(self.num_layers)],
            "output": out,
        }
        if self.learn_noise:
            params["log_noise_var"] = jnp.log(jnp.asarray(self.noise_var, dtype))
        return params

    def _noise(self, params):
        if self.learn_noise:
            return jnp.exp(params["log_noise_var"])
        return self.noise_var

    # ------------------------------------------------------------ forward

    def _blocks(self, params, X):
        """Top-layer blocks and the layer KLs for data ``X (B, N_0)``."""
        Z = params["inducing"]
        if not self.learn_inducing:
            Z = jax.lax.stop_gradient(Z)
        n0 = Z.shape[1]
        G = obj.dot(Z, Z.T) / n0
        G_ti = obj.dot(X, Z.T) / n0
        g_t = jnp.sum(X**2, axis=1) / n0
        kls = []
        for layer in params["layers"]:
            G, G_ti, g_t, kl = obj.condition_layer(
                self.kernel, G, layer["raw"], layer["log_diag"], self.jitter, G_ti, g_t
            )
            kls.append(kl)
        _, L, K_ti, k_t = obj.output_blocks(self.kernel, G, self.jitter, G_ti, g_t)
        return L, K_ti, k_t, kls, G

    def inducing_grams(self, params) -> list:
        """The :math:`L` learned inducing Grams :math:`G_{ii}^l` ``(M, M)``."""
        params = self._check_params(params, "SparseDKM.inducing_grams")
        return obj.check_finite(_jit(self, "_inducing_grams", params), "SparseDKM.inducing_grams")

    def _inducing_grams(self, params):
        Z = params["inducing"]
        G = obj.dot(Z, Z.T) / Z.shape[1]
        out = []
        for layer in params["layers"]:
            G = obj.condition_layer(self.kernel, G, layer["raw"], layer["log_diag"], self.jitter)[0]
            out.append(G)
        return out

    def objective(
        self, params, X, Y, num_data: Optional[int] = None, key=None, return_terms: bool = False
    ):
        """The ELBO (module doc) on the batch ``(X, Y)`` standing for
        ``num_data`` points (default: the batch is all the data). ``key``
        drives the categorical Monte Carlo. ``return_terms`` adds
        ``(expected_loglik, output_kl, [KL_l])``."""
        name = "SparseDKM.objective"
        X, Y = obj.check_data(X, Y, self.likelihood, name, self.num_classes)
        params = self._check_params(params, name, self._num_outputs(Y), X)
        n = (
            X.shape[0]
            if num_data is None
            else _checks.require_int(num_data, "num_data", name, minimum=X.shape[0])
        )
        if self.likelihood == "categorical" and key is None:
            raise ValueError("SparseDKM.objective: a categorical likelihood needs a PRNG `key`.")
        return obj.check_finite(
            _jit(self, "_objective", params, X, Y, n, key, bool(return_terms)),
            "SparseDKM.objective",
        )

    def _objective(self, params, X, Y, n, key, return_terms=False):
        L, K_ti, k_t, kls, _ = self._blocks(params, X)
        out = params["output"]
        mean, var = obj.output_moments(L, K_ti, k_t, out["mean"], out["raw"], out["log_diag"])
        if self.likelihood == "gaussian":
            ell = obj.gaussian_expected_loglik(Y, mean, var, self._noise(params))
        else:
            ell = obj.categorical_expected_loglik(Y, mean, var, key, self.num_samples)
        ell = ell * (n / X.shape[0])
        okl = obj.output_kl(out["mean"], out["raw"], out["log_diag"])
        nu = self.nu
        assert isinstance(nu, tuple)  # made a tuple by __post_init__
        value = ell - okl - sum(v * kl for v, kl in zip(nu, kls))
        return (value, (ell, okl, kls)) if return_terms else value

    def optimal_output(self, params, X, Y) -> dict:
        r"""Set the output layer to its optimum for a Gaussian likelihood.

        In whitened coordinates :math:`f_i = L u`, :math:`q(u_c) = \mathcal{N}(m_c, S)`; with
        :math:`W = K_{ti} L^{-\top}` over all :math:`N` points the ELBO is maximised by
        :math:`S = (I + W^\top W / \sigma^2)^{-1}` and :math:`m = S W^\top Y / \sigma^2`
        (Titsias 2009). Cost :math:`O(N M^2)`.
        """
        if self.likelihood != "gaussian":
            raise ValueError("SparseDKM.optimal_output: only for a Gaussian likelihood.")
        name = "SparseDKM.optimal_output"
        X, Y = obj.check_data(X, Y, self.likelihood, name)
        params = self._check_params(params, name, Y.shape[1], X)
        return obj.check_finite(
            _jit(self, "_optimal_output", params, X, Y), "SparseDKM.optimal_output"
        )

    def _optimal_output(self, params, X, Y):
        L, K_ti, _, _, _ = self._blocks(params, X)
        W = jsl.solve_triangular(L, K_ti.T, lower=True).T  # (N, M)
        s2 = self._noise(params)
        M = L.shape[0]
        prec = jnp.eye(M, dtype=W.dtype) + obj.dot(W.T, W) / s2
        Lp = obj.cholesky(prec, "I + WᵀW/σ²", "SparseDKM.optimal_output")
        S = jsl.cho_solve((Lp, True), jnp.eye(M, dtype=W.dtype))
        B = obj.cholesky(0.5 * (S + S.T), "S", "SparseDKM.optimal_output")
        mean = jsl.cho_solve((Lp, True), obj.dot(W.T, Y)) / s2
        out = {"raw": jnp.tril(B, -1), "log_diag": jnp.log(jnp.diagonal(B)), "mean": mean}
        return {**params, "output": out}

    # ------------------------------------------------------------ fitting

    def fit(
        self,
        params,
        X,
        Y,
        key,
        batch_size: Optional[int] = None,
        steps: int = 1000,
        learning_rate: float = 1e-2,
        optimizer=None,
    ):
        r"""Minibatch stochastic maximisation of the ELBO with optax.

        Each step draws ``batch_size`` points without replacement (all points
        when None) and takes one step of ``optimizer`` (default
        ``optax.adam(learning_rate)``). All steps run in one jitted
        ``lax.scan``; cost per step :math:`O(M^3 + \mathtt{batch\_size} \cdot M^2)`.

        Returns ``(params, FitInfo)`` with the per-step ELBO estimates.
        """
        name = "SparseDKM.fit"
        X, Y = obj.check_data(X, Y, self.likelihood, name, self.num_classes)
        params = self._check_params(params, name, self._num_outputs(Y), X)
        _checks.require_key(key, name, "minibatches and Monte Carlo draws")
        N = X.shape[0]
        B = (
            N
            if batch_size is None
            else _checks.require_int(batch_size, "batch_size", name, minimum=1, maximum=N)
        )
        steps = _checks.require_int(steps, "steps", name)
        _checks.require_positive(learning_rate, "learning_rate", name)
        if optimizer is not None and not (
            hasattr(optimizer, "init") and hasattr(optimizer, "update")
        ):
            raise TypeError(
                f"{name}: `optimizer` must be an optax "
                f"GradientTransformation or None; got "
                f"{type(optimizer).__name__}."
            )
        scale = float(N * (Y.shape[1] if Y.ndim == 2 else 1))
        run = self.fit_loop(N, B, int(steps), learning_rate, optimizer)
        t0 = time.perf_counter()
        params, hist = run(params, key, X, Y, jnp.asarray(scale, X.dtype))
        hist = -np.asarray(hist) * scale
        seconds = time.perf_counter() - t0
        return params, FitInfo(hist, int(steps), False, float("nan"), seconds)

    def fit_loop(self, N: int, B: int, steps: int, learning_rate: float = 1e-2, optimizer=None):
        """The compiled loop `fit` runs: ``run(params, key, X, Y, scale) ->
        (params, per-step objective / -scale)``, ``steps`` optimiser steps on
        minibatches of ``B`` of the ``N`` training points (Adam at
        ``learning_rate`` unless an optax ``optimizer`` is given). Cached per
        model and setting; `fit` validates its arguments, this does not (it
        is what cost analyses such as ``python -m experiments plan`` trace)."""
        spec = ("adam", float(learning_rate)) if optimizer is None else optimizer
        return self._runner(spec, N, B, steps)

    @functools.lru_cache(maxsize=16)
    def _runner(self, spec, N, B, steps):
        """The compiled training loop (cached per model and setting)."""
        opt = (
            optax.adam(spec[1])
            if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "adam"
            else spec
        )

        def loss(p, xb, yb, k, scale):
            return -self._objective(p, xb, yb, N, k) / scale

        @jax.jit
        def run(params, key, X, Y, scale):  # data as arguments: no constant folding
            state = opt.init(params)

            def step(carry, k):
                params, state = carry
                kb, kmc = jax.random.split(k)
                if B == N:
                    xb, yb = X, Y
                else:
                    idx = jax.random.choice(kb, N, (B,), replace=False)
                    xb, yb = X[idx], Y[idx]
                value, grad = jax.value_and_grad(loss)(params, xb, yb, kmc, scale)
                updates, state = opt.update(grad, state, params)
                return (optax.apply_updates(params, updates), state), value

            (params, _), hist = jax.lax.scan(step, (params, state), jax.random.split(key, steps))
            return params, hist

        return run

    # ------------------------------------------------------------ prediction

    def predict(self, params, X_test, key=None) -> Prediction:
        """Predictive mean ``(T, C)`` and variance ``(T,)`` of :math:`f_*` at
        ``X_test (T, N_0)``; cost :math:`O(M^3 + T M^2)`. Categorical models also
        return MC class probabilities (``key`` default ``PRNGKey(0)``)."""
        name = "SparseDKM.predict"
        params = self._check_params(params, name)
        X_test = _checks.as_array(X_test, "X_test", name)
        n0 = params["inducing"].shape[1]
        if X_test.ndim != 2 or X_test.shape[1] != n0:
            raise ValueError(
                f"SparseDKM.predict: `X_test` must have shape (T, {n0}); got {X_test.shape}."
            )
        key = jax.random.PRNGKey(0) if key is None else key
        return obj.check_finite(_jit(self, "_predict", params, X_test, key), "SparseDKM.predict")

    def _predict(self, params, X_test, key):
        L, K_ti, k_t, _, _ = self._blocks(params, X_test)
        out = params["output"]
        mean, var = obj.output_moments(L, K_ti, k_t, out["mean"], out["raw"], out["log_diag"])
        if self.likelihood == "gaussian":
            return Prediction(mean, var)
        probs = obj.categorical_predictive(mean, var, key, max(self.num_samples, 256))
        return Prediction(mean, var, probs)


_JITTED: dict = {}


def _jit(model, method, *args):
    """``getattr(model, method)(*args)`` compiled once per model and method
    (op-by-op dispatch is ~100x slower); ints and bools are static."""
    static = tuple(i for i, a in enumerate(args) if isinstance(a, (bool, int)))
    key = (method, static)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(
            lambda m, *a: getattr(m, method)(*a), static_argnums=(0,) + tuple(i + 1 for i in static)
        )
    return _JITTED[key](model, *args)
