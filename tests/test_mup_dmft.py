"""The DMFT μP limit of a deep MLP (`ntk.mup.dmft`), checked against
independent references: the analytic NTK/NNGP of `ntk.stax` with
`ntk.predict` (γ₀ → 0), and explicitly trained finite μP networks
(convergence in width at the CLT rate N^{-1/2})."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import predict
from ntk.mup import dmft, finite, ntk_limit

P, D, T = 4, 3, 5
#: learning rates with η λ_max(Θ)/P < 1 (monotone GD in the NTK limit)
LR = {"linear": 0.5, "tanh": 1.0}
#: Monte Carlo samples of the tanh limit (kernels and responses)
S_TANH = 1024


@pytest.fixture(scope="module")
def data():
    kx, kt = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(kx, (P, D))
    y = jnp.sin(2.0 * x[:, 0]) + 0.5 * x[:, 1]
    return x, y


def solve(data, activation, gamma0, key=0, n_samples=1024):
    x, y = data
    return dmft.dmft_solve(
        x,
        y,
        depth=2,
        activation=activation,
        gamma0=gamma0,
        learning_rate=LR[activation],
        steps=T,
        n_samples=n_samples,
        key=jax.random.PRNGKey(key),
        max_iter=80,
        tol=1e-9,
    )


def ntk_predict_discrete(data, activation):
    """NTK-limit GD predictions from `ntk.predict`, mapped to discrete steps.

    Discrete GD ``f_{t+1} = f_t + (η/P) Θ (y − f_t)`` equals gradient flow
    (`gradient_descent_mse_ensemble`, ``τ = η t / P``) with the kernel
    ``Θ̃ = −(P/η) log(I − ηΘ/P)`` at integer ``t`` — exactly, on the train set.
    """
    x, y = data
    _, _, kernel_fn = ntk_limit.ntk_limit_network(2, activation)
    k = kernel_fn(x, x, ("nngp", "ntk"))
    evals, evecs = jnp.linalg.eigh(k.ntk)
    lr = LR[activation]
    theta_d = (evecs * (-(P / lr) * jnp.log1p(-lr * evals / P))[None, :]) @ evecs.T
    Kern = collections.namedtuple("Kern", "nngp ntk")

    def kernel_fn_d(x1, x2, get=None, **kw):
        out = Kern(k.nngp, theta_d)
        return getattr(out, get) if isinstance(get, str) else out

    fn = predict.gradient_descent_mse_ensemble(kernel_fn_d, x, y[:, None], learning_rate=lr)
    return fn(t=jnp.arange(T + 1.0), get="ntk")[..., 0], k


# ------------------------------------------------------------- γ₀ → 0: NTK


def test_lazy_limit_of_linear_net_equals_ntk_predict_exactly(data):
    # linear activation: the process is linear in the (whitened) sources, so
    # the limit has no Monte Carlo error; γ₀ = 1e-4 leaves O(γ₀²) ≈ 1e-8.
    out = solve(data, "linear", 1e-4)
    f_ntk, k = ntk_predict_discrete(data, "linear")
    assert out.converged
    np.testing.assert_allclose(out.f, f_ntk, atol=1e-6)
    np.testing.assert_allclose(out.ntk[0], k.ntk, rtol=1e-6)
    # the feature kernel stays at the NNGP at every time
    np.testing.assert_allclose(out.phi[-1, T, :, T, :], k.nngp, rtol=1e-6)
    np.testing.assert_allclose(out.phi[-1, 0, :, T, :], k.nngp, rtol=1e-6)


def test_lazy_limit_of_tanh_net_equals_ntk_predict_up_to_mc_noise(data):
    # tanh: the DMFT kernels are Monte Carlo estimates; across independent
    # draws the deviation from the NTK predictions must average to zero
    # (CLT: |mean| ≤ 4 σ/√k over k = 3 draws) and be small (|e| ≤ 5σ_max
    # with σ_max = 1/√S, since |tanh| ≤ 1 bounds every kernel sample).
    f_ntk, k = ntk_predict_discrete(data, "tanh")
    errs, nngp_errs = [], []
    for key in range(3):
        out = solve(data, "tanh", 1e-4, key=key, n_samples=S_TANH)
        errs.append(np.asarray(out.f - f_ntk))
        nngp_errs.append(np.asarray(out.phi[-1, T, :, T, :] - k.nngp))
    errs, nngp_errs = np.stack(errs), np.stack(nngp_errs)
    for e in (errs, nngp_errs):
        sd = e.std(0, ddof=1)
        assert np.all(np.abs(e.mean(0)) <= 4 * sd / np.sqrt(3) + 1e-4)
        assert np.max(np.abs(e)) <= 5 / np.sqrt(S_TANH)


# ------------------------------------------------------ γ₀ = O(1): features


@pytest.fixture(scope="module")
def tanh_rich(data):
    return solve(data, "tanh", 1.0, key=0, n_samples=S_TANH)


def test_feature_kernel_moves_beyond_mc_error_when_gamma0_is_order_one(data, tanh_rich):
    other = solve(data, "tanh", 1.0, key=1, n_samples=S_TANH)
    move = np.abs(tanh_rich.phi[:, T, :, T, :] - tanh_rich.phi[:, 0, :, 0, :]).max()
    mc = np.abs(tanh_rich.phi[:, T, :, T, :] - other.phi[:, T, :, T, :]).max()
    assert tanh_rich.converged
    assert move > 10 * mc, (move, mc)


def test_loss_decreases_in_the_feature_learning_limit(tanh_rich):
    loss = np.asarray(tanh_rich.loss)
    assert np.all(np.diff(loss) < 0)
    assert loss[-1] < 0.2 * loss[0]


# ---------------------------------------------- finite widths → the limit


def _per_net_error(fin, lim):
    return float(np.sqrt(np.mean((fin.f - lim.f[None]) ** 2, axis=(1, 2))).mean())


def test_finite_linear_nets_converge_to_limit_at_rate_n_minus_half(data):
    # per-network fluctuations are O(N^{-1/2}) (the seed-averaged bias is
    # O(1/N) and smaller): the rms error of single networks is what we fit.
    x, y = data
    lim = solve(data, "linear", 1.0)
    widths = (64, 256, 1024)
    err_f, err_phi = [], []
    for n in widths:
        fin = finite.finite_mlp_train(
            x,
            y,
            width=n,
            depth=2,
            activation="linear",
            gamma0=1.0,
            learning_rate=LR["linear"],
            steps=T,
            key=jax.random.PRNGKey(n),
            n_seeds=8,
            pad_to=widths[-1],
        )
        err_f.append(_per_net_error(fin, lim))
        err_phi.append(
            float(np.abs(fin.phiT - lim.phi[None, :, T, :, T, :]).max(-1).max(-1).mean())
        )
    slope_f = np.polyfit(np.log(widths), np.log(err_f), 1)[0]
    slope_phi = np.polyfit(np.log(widths), np.log(err_phi), 1)[0]
    # 8 seeds × 24 outputs: the slope's sampling error is ≈ 0.1
    print("linear: errors", err_f, err_phi, "slopes", slope_f, slope_phi)
    assert -0.75 < slope_f < -0.3, (err_f, slope_f)
    assert -0.75 < slope_phi < -0.3, (err_phi, slope_phi)


def test_finite_tanh_nets_approach_the_limit(data, tanh_rich):
    # error² ≈ c/N + c/S (the limit's own MC error acts like width ≈ S =
    # 1024): 64 → 1024 shrinks the error by ≈ √((1/64+1/1024)/(2/1024)) ≈ 2.9;
    # require 2
    x, y = data
    errs = []
    for n in (64, 1024):
        fin = finite.finite_mlp_train(
            x,
            y,
            width=n,
            depth=2,
            activation="tanh",
            gamma0=1.0,
            learning_rate=LR["tanh"],
            steps=T,
            key=jax.random.PRNGKey(n),
            n_seeds=8,
            pad_to=1024,
        )
        errs.append(_per_net_error(fin, tanh_rich))
    print("tanh: errors", errs)
    assert errs[1] < errs[0] / 2, errs


# ------------------------------------------------------------------ inputs


def test_finite_train_rejects_mismatched_targets(data):
    x, _ = data
    with pytest.raises(ValueError, match="y_train"):
        finite.finite_mlp_train(
            x,
            jnp.zeros(P + 1),
            width=8,
            depth=1,
            activation="relu",
            gamma0=1.0,
            learning_rate=0.1,
            steps=2,
            key=jax.random.PRNGKey(0),
        )


@pytest.mark.parametrize(
    "kwargs, exc, arg",
    [
        (dict(activation="gelu"), ValueError, "activation"),
        (dict(gamma0=0.0), ValueError, "gamma0"),
        (dict(depth=0), ValueError, "depth"),
        (dict(n_samples=7), ValueError, "n_samples"),
        (dict(steps=0), ValueError, "steps"),
        (dict(gamma0="big"), TypeError, "`gamma0`"),
        (dict(learning_rate=float("inf")), ValueError, "`learning_rate`"),
        (dict(tol=-1.0), ValueError, "`tol` must be a number >= 0"),
        (dict(jitter=-1e-9), ValueError, "`jitter` must be a number >= 0"),
        (dict(jac_batch=0), ValueError, "`jac_batch` must be an int >= 1"),
        (dict(damping=0.0), ValueError, r"`damping` must be a number in \(0, 1\]"),
        (dict(n_jac_samples=3), ValueError, "`n_jac_samples` must be even"),
        (dict(max_iter=1000), ValueError, r"`max_iter` must be an int in \[1, 256\]"),
    ],
)
def test_bad_solver_arguments_are_rejected_by_name(data, kwargs, exc, arg):
    x, y = data
    base = dict(depth=2, activation="tanh", gamma0=1.0, learning_rate=1.0, steps=3, n_samples=64)
    base.update(kwargs)
    with pytest.raises(exc, match=arg):
        dmft.dmft_solve(x, y, **base)


def test_bad_data_and_trainer_arguments_are_rejected_by_name(data):
    x, y = data
    kw = dict(depth=1, activation="relu", gamma0=1.0, learning_rate=0.1, steps=2)
    with pytest.raises(ValueError, match="`x_train` must be finite"):
        dmft.dmft_solve(x.at[0, 0].set(jnp.nan), y, n_samples=64, **kw)
    with pytest.raises(TypeError, match="`key` must be a PRNG key"):
        finite.finite_mlp_train(x, y, width=8, key=None, **kw)
    with pytest.raises(ValueError, match="`pad_to` must be an int >= 8"):
        finite.finite_mlp_train(x, y, width=8, key=jax.random.PRNGKey(0), pad_to=4, **kw)
    k = np.eye(P) + np.triu(np.ones((P, P)), 1)
    with pytest.raises(ValueError, match="`ntk_train` must be symmetric"):
        ntk_limit.ntk_limit_trajectory(k, y, 0.1, 3)
    with pytest.raises(ValueError, match="`steps` must be an int >= 0"):
        ntk_limit.ntk_limit_trajectory(np.eye(P), y, 0.1, -1)
    with pytest.raises(ValueError, match=r"`ntk_test_train` must have shape \(Q, 4\)"):
        ntk_limit.ntk_limit_trajectory(np.eye(P), y, 0.1, 3, np.ones((2, 3)))
    with pytest.raises(ValueError, match="`phi_tt` and `g_tt` must have one shape"):
        dmft.ntk_of_kernels(np.ones((1, 3, 3)), np.ones((1, 2, 2)), np.ones((3, 3)))


def test_ntk_limit_trajectory_is_gradient_descent_stepped_by_hand():
    # f_{t+1} = f_t + (η/P) Θ (y − f_t), f_0 = 0, on train; the test outputs move by
    # (η/P) Θ_td (y − f_t): an explicit loop, independent of the eigenbasis form
    rng = np.random.default_rng(0)
    a = rng.normal(size=(P, P))
    k, k_td = a @ a.T / P + np.eye(P), rng.normal(size=(2, P))
    y, lr = rng.normal(size=P), 0.7
    f, g, want_f, want_g = np.zeros(P), np.zeros(2), [], []
    for _ in range(T + 1):
        want_f.append(f.copy())
        want_g.append(g.copy())
        f, g = f + lr / P * k @ (y - f), g + lr / P * k_td @ (y - f)
    got_f, got_g = ntk_limit.ntk_limit_trajectory(k, y, lr, T, k_td)
    # float64 and T = 5 steps of a well-conditioned kernel: round-off only
    np.testing.assert_allclose(got_f, np.stack(want_f), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_g, np.stack(want_g), rtol=1e-10, atol=1e-12)
    assert ntk_limit.ntk_limit_trajectory(k, y, lr, T)[1] is None
