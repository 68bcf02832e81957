"""Plans of yang23_dkm's parts: the steps a run jits, for `python -m experiments plan`.

Each function gives one part's jitted steps with abstract arguments and call
counts (`experiments.plan`); `python -m experiments plan yang23_dkm` prints them.
Registered on the experiment when `experiments.yang23_dkm` is imported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments._yang23_uci import exact_train_size
from experiments.yang23_dkm import EXPERIMENT, UCI_SHAPES
from ntk import dkm
from ntk.dkm import deep_gp


@EXPERIMENT.plan(
    "limit",
    not_covered="the DKM optimum G* (scipy L-BFGS on the ν fitter, "
    "planned in nu_sweep) and the NNGP Grams",
)
def limit_plan(config) -> list:
    """MALA on the deep GP at each width: one analysed call of the sampler's
    scan (burn-in and kept steps are its iterations) counted per step."""
    from experiments.plan import KEY, Step, shaped

    P, L = config.limit_points, config.limit_layers
    kernel = dkm.sqexp(lengthscale=config.lengthscale)
    steps = []
    for n in config.limit_widths:
        width = max(1, int(round(config.limit_nu * n)))
        sample = dkm.make_dgp_sampler(
            kernel,
            L,
            width,
            noise_var=config.noise_var,
            n_chains=config.chains,
            burn_in=1,
            n_samples=1,
            jitter=config.jitter,
        )
        steps.append(
            Step(
                f"MALA step, {config.chains} chains, N={n}",
                lambda key, g0, y, w, t, n=n, s=sample: s(key, g0, y, w, float(n), t, 0.05),
                (KEY, shaped((P, P)), shaped((P, 1)), shaped((L,), jnp.int32), shaped((L, P, P))),
                count=config.burn_in + config.samples,
            )
        )
    return steps


@EXPERIMENT.plan(
    "nu_sweep",
    not_covered="scipy's L-BFGS-B bookkeeping on the host; the "
    "objective's evaluations are counted at the "
    "optimizer's cap (5000 per ν), an upper bound",
)
def nu_sweep_plan(config) -> list:
    from experiments.plan import Step, shaped

    P, L = config.limit_points, config.limit_layers
    model = dkm.FullDKM(
        dkm.sqexp(lengthscale=config.lengthscale),
        num_layers=L,
        nu=1.0,
        noise_var=config.noise_var,
        jitter=config.jitter,
    )
    x, y = shaped((P, 13)), shaped((P, 1))
    params = jax.eval_shape(model.init, shaped((P, 13)))

    def value_and_grad(p, a, b, nu):
        def loss(p):
            _, (ll, kls) = model.objective(p, a, b, return_terms=True)
            return -(ll - nu * sum(kls))

        return jax.value_and_grad(loss)(p)

    return [
        Step(
            "DKM objective + gradient",
            value_and_grad,
            (params, x, y, shaped(())),
            count=5000 * (1 + len(config.sweep_nus)),
        )
    ]


def _uci_train_size(config, name) -> int:
    """Training points of a 90/10 split of ``name`` (cut to uci_max_train if set)."""
    n = UCI_SHAPES[name][0] - int(round(0.1 * UCI_SHAPES[name][0]))
    return min(n, config.uci_max_train) if config.uci_max_train else n


@EXPERIMENT.plan(
    "uci",
    not_covered="reading and standardising the data (numpy), scipy's "
    "L-BFGS-B loop of the SE-ARD GP (its value-and-gradient "
    "calls are counted at the cap, uci_ard_maxiter) and the float64 "
    "posteriors on the host; shapes are the datasets' "
    "(UCI_SHAPES) with 90/10 splits",
)
def uci_plan(config) -> list:
    from experiments.plan import KEY, Step, shaped

    kernel = dkm.sqexp(lengthscale=config.lengthscale)
    steps = []
    for name in config.uci_datasets:
        if name not in UCI_SHAPES:
            continue
        rows, d = UCI_SHAPES[name]
        n = _uci_train_size(config, name)
        m = int(round(0.1 * rows))  # the 90/10 split's test points
        x, y = shaped((n, d)), shaped((n, 1))
        batch = config.uci_batch if 0 < config.uci_batch < n else n
        splits = config.uci_splits
        model = dkm.SparseDKM(
            kernel,
            num_layers=config.uci_layers,
            num_inducing=min(config.uci_inducing, n),
            nu=config.uci_nu,
            noise_var=config.noise_var,
            jitter=config.jitter,
            learn_noise=True,
        )
        params = jax.eval_shape(lambda a, b, k: model.init(a, b, k), x, y, KEY)
        run = model.fit_loop(n, batch, 1, float(config.uci_learning_rate))
        steps.append(
            Step(
                f"{name}: sparse DKM Adam step",
                run,
                (params, KEY, x, y, shaped(())),
                count=splits * config.uci_steps,
            )
        )
        # deep_gp.init picks inducing points among concrete inputs; the
        # parameters' shapes depend on their number and d only, so as many
        # random rows as inducing points give them
        rng = np.random.default_rng(0)
        rows_init = min(n, config.uci_dgp_inducing)
        g_params = jax.tree_util.tree_map(
            lambda a: shaped(a.shape, a.dtype),
            deep_gp.init(
                rng.standard_normal((rows_init, d)),
                rng.standard_normal((rows_init, 1)),
                jax.random.PRNGKey(0),
                config.uci_dgp_layers,
                min(n, config.uci_dgp_inducing),
            ),
        )
        mask = jax.tree_util.tree_map(lambda a: jnp.ones((), a.dtype), g_params)

        def dgp_step(p, a, b, k, batch=batch, mask=mask, n=n):
            return deep_gp.adam_steps(
                p,
                mask,
                a,
                b,
                k,
                0.01,
                1e-5,
                steps=1,
                batch=None if batch >= n else batch,
                num_samples=5,
            )

        steps.append(
            Step(
                f"{name}: deep GP Adam step",
                dgp_step,
                (g_params, x, y, KEY),
                count=splits * config.uci_dgp_steps,
            )
        )
        ne = exact_train_size(config, n)
        steps.append(
            Step(
                f"{name}: NNGP exact GP ({ne} + {m} points)",
                lambda a, b, ne=ne: _nngp_regression_abstract(kernel, config.uci_layers, a, b, ne),
                (shaped((ne + m, d)), shaped((ne,))),
                count=splits,
            )
        )

        def ard(theta, a, b, d=d):
            def nlml(t):
                parts = deep_gp.sqexp_ard(a, a, t[d], t[:d])
                return -dkm.gaussian_log_marginal(b[:, None], parts, jnp.exp(t[d + 1]) + 1e-6)

            return jax.value_and_grad(nlml)(theta)

        steps.append(
            Step(
                f"{name}: SE-ARD GP marginal likelihood + gradient",
                ard,
                (shaped((d + 2,)), shaped((ne, d)), shaped((ne,))),
                count=splits * config.uci_ard_maxiter,
            )
        )
    return steps


def _nngp_regression_abstract(kernel, layers, x, y, n):
    """What `ntk.dkm.nngp_regression` computes (kernel, its default σ² grid,
    posterior mean and variances), with the posterior as its Cholesky solve: `predict.gp_inference`
    lowered abstractly at the UCI sizes embeds n × n constants in the program."""
    k = kernel(dkm.nngp_grams(x, kernel, layers)[-1])
    ktt, kst = k[:n, :n], k[n:, :n]
    grid = jnp.logspace(-3, 0.5, 36, dtype=k.dtype)
    lml = jax.lax.map(lambda s2: dkm.gaussian_log_marginal(y[:, None], ktt, s2), grid)
    s2 = grid[jnp.argmax(lml)]
    chol = jnp.linalg.cholesky(ktt + s2 * jnp.eye(n, dtype=k.dtype))
    solve = jax.scipy.linalg.cho_solve((chol, True), jnp.concatenate([y[:, None], kst.T], 1))
    return kst @ solve[:, 0], jnp.diag(k[n:, n:]) - jnp.sum(kst * solve[:, 1:].T, 1)
