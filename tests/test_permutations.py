"""ntk.permutations: closed forms vs ntk.predict, exact samplers, ensembles, finite width."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import permutations as P
from ntk.permutations import gp, sampling


def _perm(k, seed=0):
    return P.random_permutation(jax.random.PRNGKey(seed), k)


@pytest.fixture(scope="module")
def structured6():
    return P.structured_sampler(6)


@pytest.mark.parametrize("k,b_std", [(8, None), (5, 0.5)])
def test_closed_form_mean_matches_numerical_gp_mean(k, b_std):
    perm = _perm(k, k)
    x = P.binary_inputs(k, jnp.float64)  # every s = 1..k
    numerical = P.trained_gp(perm, x, b_std=b_std, compute_cov=False)
    np.testing.assert_allclose(
        P.closed_form_mean(perm, x, b_std=b_std), numerical, rtol=0, atol=1e-11
    )


@pytest.mark.parametrize("k", [5])
def test_closed_form_covariance_matches_numerical_gp_covariance(k):
    x = P.binary_inputs(k, jnp.float64)
    numerical = P.trained_gp(_perm(k), x).covariance
    np.testing.assert_allclose(P.closed_form_covariance(x), numerical, rtol=0, atol=1e-11)


@pytest.mark.parametrize("k", [4, 16, 64])
def test_mean_is_one_on_pi_x_and_zero_off_it_on_training_inputs(k):
    alpha, beta = P.mean_structure(k, 1)
    assert abs(float(alpha) - 1) < 1e-12 and abs(float(beta)) < 1e-12


@pytest.mark.parametrize("k", [4, 16, 64])
def test_mean_is_positive_on_pi_x_and_negative_off_it(k):
    alpha, beta = P.mean_structure(k, np.arange(2, k + 1))
    assert np.all(np.asarray(alpha) > 0) and np.all(np.asarray(beta) < 0)


def _linear_map(sample):
    tot = sum(a * b for a, b in sample.normal_shapes)
    eye, normals, o = np.eye(tot), [], 0
    for a, b in sample.normal_shapes:
        normals.append(eye[:, o : o + a * b].T.reshape(a, b, tot))
        o += a * b
    return np.asarray(sample.linear(normals))  # (tot, N)


def test_structured_sampler_has_exactly_the_gp_covariance(structured6):
    k = 6
    a = _linear_map(structured6)
    cov = np.asarray(P.closed_form_covariance(P.binary_inputs(k, jnp.float64)))
    np.testing.assert_allclose(a.T @ a, cov, rtol=0, atol=1e-12)


def test_dense_sampler_covariance_within_monte_carlo_error():
    k, n = 4, 20000
    z = np.asarray(P.dense_sampler(k)(jax.random.PRNGKey(0), n))
    cov = np.asarray(P.closed_form_covariance(P.binary_inputs(k, jnp.float64)))
    d = np.diag(cov)
    se = np.sqrt((np.outer(d, d) + cov**2) / n)
    # 1e-8: the eigen-factor of the singular Σ leaves ~1e-9 on the training inputs.
    assert np.all(np.abs(z.T @ z / n - cov) <= 5 * se + 1e-8)


def test_block_eigenvalues_sum_to_the_trace():
    # tr Σ|_{L_s} = Σ_j dim S^{(k−j,j)} λ_j(s, s), dim = C(k,j) − C(k,j−1).
    k, s = 9, 4
    sigma = gp.covariance_grid(k, 1.0, None)
    total = 0.0
    for j in range(min(s, k - s) + 1):
        ss, b = sampling.block_eigenvalues(k, j, sigma=sigma)
        dim = math.comb(k, j) - (math.comb(k, j - 1) if j else 0)
        total += dim * b[ss.index(s), ss.index(s)]
    assert abs(total - math.comb(k, s) * sigma[s, s, s]) < 1e-10


@pytest.mark.parametrize("method", ["dense", "structured"])
def test_ensemble_above_union_bound_recovers_every_nonzero_input(method, structured6):
    k = 6
    perm = _perm(k, 1)
    m = P.union_bound_complexity(k, delta=0.01)  # P(any error) <= 1%
    sampler = structured6 if method == "structured" else P.dense_sampler(k)
    members = P.draw_members(jax.random.PRNGKey(2), perm, m, sampler=sampler)
    assert bool(P.recovered(members.mean(0), perm, P.binary_inputs(k, jnp.float64)).all())


def test_single_member_fails_on_some_input():
    k = 6
    perm = _perm(k, 1)
    members = P.draw_members(jax.random.PRNGKey(3), perm, 1)
    assert not bool(P.recovered(members[0], perm, P.binary_inputs(k, jnp.float64)).all())


def test_min_ensemble_size_is_the_exact_recovery_threshold():
    k = 5
    perm = _perm(k, 2)
    x = P.binary_inputs(k, jnp.float64)
    mean, target = P.closed_form_mean(perm, x), P.apply_permutation(perm, x)
    z = P.gp_sampler(k)(jax.random.PRNGKey(4), 3 * k).reshape(3, k, -1).transpose(0, 2, 1)
    m_min = np.asarray(P.min_ensemble_sizes(z, mean, target))
    for t in range(3):
        for i in np.flatnonzero(m_min[t] > 1)[:10]:
            ok = lambda m: bool(
                jnp.all(P.round_outputs(mean[i] + z[t, i] / math.sqrt(m)) == target[i])
            )
            assert ok(m_min[t, i]) and not ok(m_min[t, i] - 1)


@pytest.mark.parametrize("s", [2, 5])
def test_per_input_success_probability_matches_monte_carlo(s):
    k, n, m = 8, 4000, 60
    perm = _perm(k, 3)
    x = jnp.zeros((1, k)).at[0, :s].set(1.0)
    sizes = P.sampled_input_min_sizes(jax.random.PRNGKey(5), perm, x, n)[:, 0]
    p = float(P.success_probability(k, s, m))
    assert abs((sizes <= m).mean() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_union_bound_controls_the_all_input_failure_rate():
    k, n, delta = 5, 300, 0.2
    sizes = P.all_input_min_sizes(jax.random.PRNGKey(6), _perm(k, 4), n).max(1)
    m = P.union_bound_complexity(k, delta)
    assert (sizes > m).mean() <= delta + 3 * math.sqrt(delta * (1 - delta) / n)


def test_sampled_inputs_beyond_enumeration_recover_at_per_input_complexity():
    k, n, delta = 32, 400, 0.1
    perm = _perm(k, 5)
    x = P.sample_binary_inputs(jax.random.PRNGKey(7), k, 64)
    m = P.per_input_complexity(k, delta)
    sizes = P.sampled_input_min_sizes(jax.random.PRNGKey(8), perm, x, n)
    assert (sizes <= m).mean(0).min() >= 1 - delta - 4 * math.sqrt(delta * (1 - delta) / n)


def test_finite_width_ensemble_matches_the_gp_in_mean_and_variance():
    k, members, width = 4, 32, 1024
    perm = _perm(k, 6)
    x = P.binary_inputs(k, jnp.float64)
    out = np.asarray(P.train_finite_ensemble(jax.random.PRNGKey(9), perm, x, members, width=width))
    gp = P.trained_gp(perm, x)
    sd = np.sqrt(np.clip(np.diag(np.asarray(gp.covariance)), 0, None))
    # Mean: CLT over members, per input and coordinate (the training inputs,
    # sd = 0, are interpolated: compare to the GD tolerance).
    err = np.abs(out.mean(0) - np.asarray(gp.mean))
    assert np.all(err <= 4.5 * sd[:, None] / math.sqrt(members) + 1e-3)
    # Variance: coordinates are i.i.d. N(0, σ²(x)) given x, pooled M·k samples.
    test = sd > 0
    resid = out - np.asarray(gp.mean)[None]
    var_hat = (resid**2).mean((0, 2))[test]
    n = members * k
    assert np.all(np.abs(var_hat - sd[test] ** 2) <= 4.5 * sd[test] ** 2 * math.sqrt(2 / n))


def test_permutation_matrix_maps_basis_vectors_as_stated():
    perm = jnp.array([2, 0, 1])
    p = P.permutation_matrix(perm)
    for i in range(3):
        np.testing.assert_array_equal(p @ jnp.eye(3)[i], jnp.eye(3)[int(perm[i])])
        np.testing.assert_array_equal(
            P.apply_permutation(perm, jnp.eye(3)[i : i + 1])[0], jnp.eye(3)[int(perm[i])]
        )


@pytest.mark.parametrize("bad", [[0, 0, 1], [1, 2, 3], [[0, 1]]])
def test_invalid_permutation_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match="perm"):
        P.training_set(jnp.array(bad))


def test_enumeration_beyond_limit_is_rejected_by_name():
    with pytest.raises(ValueError, match="`k`"):
        P.binary_inputs(21)
    with pytest.raises(ValueError, match="delta"):
        P.per_input_complexity(8, delta=1.5)


def test_network_has_no_biases_by_default_as_documented():
    # setting.py and docs/permutations.md: no biases unless b_std is given,
    # then one per layer. Oracle: the parameter shapes of the stax network.
    def shapes(**kw):
        init_fn = P.network(3, 4, **kw)[0]
        params = jax.eval_shape(lambda key: init_fn(key, (1, 3))[1], jax.random.PRNGKey(0))
        return [(w.shape, None if b is None else b.shape) for w, b in (params[0], params[2])]

    assert shapes() == [((3, 4), None), ((4, 3), None)]
    assert shapes(b_std=0.5) == [((3, 4), (4,)), ((4, 3), (3,))]


_PERM = np.array([2, 0, 1])
_X3 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: P.random_permutation(jax.random.PRNGKey(0), 0),
            ValueError,
            "`k` must be an int >= 1; got 0",
        ),
        (lambda: P.random_permutation(jax.random.PRNGKey(0), 2.0), TypeError, "`k` must be an int"),
        (lambda: P.sample_binary_inputs(jax.random.PRNGKey(0), 3, 0), ValueError, "`n` must be"),
        (lambda: P.round_outputs(np.ones(3), float("nan")), ValueError, "`threshold`"),
        (lambda: P.network(3, width=0), ValueError, "`width` must be an int >= 1"),
        (lambda: P.network(3, W_std=0.0), ValueError, "`W_std` must be a number > 0"),
        (lambda: P.network(3, b_std=-1.0), ValueError, "`b_std` must be a number >= 0"),
        (
            lambda: P.apply_permutation(_PERM, np.ones((2, 3)) * np.nan),
            ValueError,
            "`x` must be finite",
        ),
        (
            lambda: P.closed_form_mean(_PERM, _X3 * 0.5),
            ValueError,
            r"`x` must be binary \(entries 0 or 1\); got \[0.5",
        ),
        (lambda: P.closed_form_covariance(_X3, _X3 + 1), ValueError, "`x2` must be binary"),
        (
            lambda: P.covariance_fn(3, 1, 2, 2),
            ValueError,
            r"no binary vectors of length 3 have s1=1 and s2=2 ones with overlap t=2",
        ),
        (lambda: P.covariance_fn(3, 2, 2, 0), ValueError, r"s1 \+ s2 - t <= k"),
        (
            lambda: P.mean_structure(3, 4),
            ValueError,
            r"`s` must be whole numbers of ones in \[0, 3\]",
        ),
        (
            lambda: P.success_probability(4, 2.5, 100),
            ValueError,
            r"`s` must be whole numbers of ones in \[0, 4\] \(k = 4\); got \[2\.5\]",
        ),
        (lambda: P.relu_kernels(3, 1, 1, -1), ValueError, "`n12`"),
        (lambda: P.closed_form_variance(3, np.array([1, 5])), ValueError, "`s`"),
        (
            lambda: P.min_ensemble_sizes(
                np.zeros(3), np.array([0.5, -0.2, -0.2]), np.array([0.0, 0.0, 1.0])
            ),
            ValueError,
            "`mean` must be > threshold.*2 entries are on the wrong side",
        ),
        (
            lambda: P.min_ensemble_sizes(np.zeros(3), np.ones(3), np.array([1.0, 2.0, 1.0])),
            ValueError,
            "`target` must be binary",
        ),
        (
            lambda: P.recovered(np.ones((3, 3)), _PERM, _X3),
            ValueError,
            r"`f_bar` must have shape \(\.\.\., 2, 3\)",
        ),
        (lambda: P.draw_members(jax.random.PRNGKey(0), _PERM, 0), ValueError, "`n_members`"),
        (
            lambda: P.draw_ensemble_average(jax.random.PRNGKey(0), _PERM, 4, sampler=3),
            TypeError,
            "`sampler` must be a function",
        ),
        (
            lambda: P.success_probability(3, 2, 0),
            ValueError,
            "`n_members` must be ensemble sizes >= 1",
        ),
        (
            lambda: P.per_input_complexity(8, delta=1.0),
            ValueError,
            r"`delta` must be a number in \(0, 1\); got 1.0",
        ),
        (lambda: P.per_input_complexity(8, s=9), ValueError, "`s`"),
        (lambda: P.union_bound_complexity(0), ValueError, "`k`"),
        (lambda: P.empirical_complexity(np.array([])), ValueError, "`min_sizes` must not be empty"),
        (
            lambda: P.empirical_complexity(np.array([0.0, 3.0])),
            ValueError,
            "`min_sizes` must be ensemble sizes >= 1",
        ),
        (
            lambda: P.recovery_curve(np.ones(4), np.ones((2, 2))),
            ValueError,
            r"`ensemble_sizes` must have shape \(E,\)",
        ),
        (
            lambda: P.gp_sampler(3, method="fast"),
            ValueError,
            "`method` must be one of 'auto', 'dense', 'structured'",
        ),
        (lambda: P.dense_sampler(3)(jax.random.PRNGKey(0), 0), ValueError, "`n`"),
        (lambda: sampling.block_eigenvalues(4, 3), ValueError, r"`j` must be an int in \[0, 2\]"),
        (
            lambda: sampling.block_eigenvalues(4, 1, sigma=np.ones((4, 4, 4))),
            ValueError,
            r"`sigma` must have shape \(5, 5, 5\)",
        ),
        (
            lambda: P.train_finite_ensemble(jax.random.PRNGKey(0), _PERM, _X3, 2, width=0),
            ValueError,
            "`width`",
        ),
        (
            lambda: P.train_finite_ensemble(jax.random.PRNGKey(0), _PERM, _X3, 2, tol=2.0),
            ValueError,
            r"`tol` must be a number in \(0, 1\)",
        ),
        (
            lambda: P.train_finite_ensemble(jax.random.PRNGKey(0), _PERM, np.ones((2, 4)), 2),
            ValueError,
            r"`x_test` must have shape \(N, 3\)",
        ),
        (
            lambda: P.train_finite_ensemble(
                jax.random.PRNGKey(0), _PERM, _X3, 2, learning_rate=100.0
            ),
            ValueError,
            "with steps=None, `learning_rate` must be below 1/λ_min",
        ),
        (
            lambda: P.trained_gp(_PERM, _X3, kernel_fn="ntk"),
            TypeError,
            "`kernel_fn` must be a kernel_fn",
        ),
        (
            lambda: P.draw_members(jax.random.PRNGKey(0), _PERM, 4, sampler=P.gp_sampler(4)),
            ValueError,
            r"`sampler\(key, n\)` must return \(n, 2\^k − 1\) = \(n, 7\) draws .*k = 3; "
            r"got shape \(1, 15\)",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
