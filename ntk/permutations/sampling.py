r"""Joint draws of the trained GP over all :math:`2^k - 1` nonzero binary inputs.

A member of the :math:`t = \infty` ensemble is :math:`f(x) = \mu(x) + z(x)`, with one centred
Gaussian process :math:`z_c \sim \mathcal{GP}(0, \Sigma)` per output coordinate :math:`c`,
independent across :math:`c` (`ntk.permutations.gp`). Here :math:`z` is drawn jointly on every
nonzero input, the :math:`(2^k-1) \times (2^k-1)` matrix :math:`\Sigma` being the obstacle.

* `dense_sampler`: :math:`z = F \xi` with :math:`F F^\top = \Sigma` from an eigendecomposition
  (clipped at 0: :math:`\Sigma` is singular, :math:`z(e_i) = 0`). :math:`O(8^k)`;
  :math:`k \le 12`.
* `structured_sampler`: exact, using the symmetry. :math:`\Sigma(x, x')` depends only
  on :math:`(|x|, |x'|, x \cdot x')`, so :math:`\Sigma` commutes with the action of the
  symmetric group :math:`S_k` on the cube. The functions on the layer
  :math:`L_s = \{|x| = s\}` split into :math:`\bigoplus_{j \le \min(s, k-s)} V_j^{(s)}`, with
  :math:`V_j^{(s)} \cong` the Specht module :math:`S^{(k-j, j)}` (the Johnson scheme),
  and by Schur's lemma

  .. math::

      \Sigma = \bigoplus_j B_j \otimes I_{\dim S^{(k-j,j)}}, \qquad
      B_j[s, s'] = \lambda_j(s, s'),

  :math:`B_j` a small :math:`(\#\text{layers}) \times (\#\text{layers})` matrix. With
  :math:`h = \prod_{i=1}^{j} (x_{a_i} - x_{b_i})` (disjoint pairs :math:`(a_i, b_i)`, a Specht
  polynomial, restricted to :math:`L_s` it spans :math:`V_j^{(s)}`), :math:`R = k - 2j`
  and a point :math:`y^*` of :math:`L_s` with :math:`h(y^*) = 1`,

  .. math::

      (\Sigma h|_{s'})(y^*) &= \sum_{p=0}^{j} \binom{j}{p} (-1)^{j-p} \sum_r \binom{s-j}{r}
      \binom{R-s+j}{s'-j-r}\, \Sigma(s, s', p+r), \\
      \lambda_j(s, s') &= (\Sigma h|_{s'})(y^*)\, \lVert h|_s \rVert / \lVert h|_{s'} \rVert,
      \qquad \lVert h|_s \rVert^2 = 2^j \binom{R}{s-j}.

  A draw: for each :math:`j`, i.i.d. normals on :math:`L_j` projected onto the
  harmonic space :math:`V_j^{(j)} = \ker(U^\top)` (:math:`U` the up operator
  :math:`(Uf)(y) = \sum_{i \in y} f(y \setminus i)`; the projection solves
  :math:`U^\top U w = U^\top \xi` by conjugate gradients, exact in :math:`j` steps since
  :math:`U^\top U` has :math:`j` distinct eigenvalues), one copy per layer, mixed by
  :math:`F_j` (:math:`F_j F_j^\top = B_j`) and lifted to layer :math:`s` by the scaled isometry
  :math:`U^{s-j}/\big((s-j)!\, \lVert h|_s \rVert / \lVert h|_j \rVert\big)`
  (:math:`U^{s-j} h|_j = (s-j)!\, h|_s`). Cost :math:`O(k^2 2^k)` per draw, memory
  :math:`O(k 2^k)`: :math:`k = 16` (65 535 inputs) takes milliseconds per draw, where
  a dense Cholesky would need a 34 GB matrix.

Both return ``sample(key, n) -> (n, 2^k − 1)``, columns in the order of
`binary_inputs`.

Example:
    >>> import jax
    >>> from ntk.permutations import structured_sampler
    >>> sample = structured_sampler(5)
    >>> sample(jax.random.PRNGKey(0), 4).shape   # (n, 2^k − 1)
    (4, 31)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.permutations.gp import covariance_fn_f64, covariance_grid
from ntk.permutations.setting import MAX_ENUM_K, check_k, check_stds

MAX_DENSE_K = 12


def dense_sampler(k: int, W_std: float = 1.0, b_std=None):
    r"""Exact joint draws from a dense factor of :math:`\Sigma` (``k <= 12``).

    Returns ``sample(key, n) -> (n, 2^k − 1)`` (columns as `binary_inputs`).

    Example:
        >>> from ntk import permutations as perms
        >>> z = perms.dense_sampler(3)(jax.random.PRNGKey(0), 4)
        >>> z.shape, bool(jnp.allclose(z[:, [0, 1, 3]], 0, atol=1e-6))   # z(e_i) = 0
        ((4, 7), True)
    """
    k = check_k(k, "dense_sampler", MAX_DENSE_K)
    W_std, b_std = check_stds(W_std, b_std, "dense_sampler")
    n = np.arange(1, 2**k, dtype=np.int64)
    x = ((n[:, None] >> np.arange(k)[None, :]) & 1).astype(np.float64)
    s = x.sum(1)
    # float64 whatever JAX's mode: Σ is singular (Σ(e_i, ·) = 0) and a float32
    # factor would put ~1e-4 noise on the interpolated training inputs.
    cov = covariance_fn_f64(k, s[:, None], s[None, :], x @ x.T, W_std, b_std)
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
    factor = jnp.asarray(evecs * np.sqrt(np.clip(evals, 0.0, None)), jnp.result_type(float))

    @jax.jit
    def _draw(normals):
        return normals @ factor.T

    def sample(key, n: int):
        n = _checks.require_int(n, "n", "dense_sampler sample")
        return _draw(jax.random.normal(key, (n, factor.shape[1]), factor.dtype))

    return sample


def _layers(k):
    """Bit masks of each layer (sorted) and the index of each mask in its layer."""
    masks = np.arange(2**k, dtype=np.int64)
    pop = (
        np.array([bin(m).count("1") for m in range(2**k)])
        if k <= 12
        else np.unpackbits(masks.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1).sum(1)
    )
    layers = [masks[pop == r] for r in range(k + 1)]
    pos = np.zeros(2**k, np.int64)
    for layer in layers:
        pos[layer] = np.arange(layer.size)
    return layers, pos


def _up_table(layers, pos, k, r):
    """(C(k,r+1), r+1): indices in layer r of the children ``y∖i`` of each y."""
    y = layers[r + 1]
    bits = (y[:, None] >> np.arange(k)[None, :]) & 1
    ones = np.argsort(-bits, axis=1, kind="stable")[:, : r + 1]
    return pos[y[:, None] ^ (1 << ones)]


def _down_table(layers, pos, k, r):
    """(C(k,r), k−r): indices in layer r+1 of the parents ``x ∪ i`` of each x."""
    x = layers[r]
    bits = (x[:, None] >> np.arange(k)[None, :]) & 1
    zeros = np.argsort(bits, axis=1, kind="stable")[:, : k - r]
    return pos[x[:, None] | (1 << zeros)]


def block_eigenvalues(k: int, j: int, W_std: float = 1.0, b_std=None, sigma=None):
    r""":math:`B_j`: :math:`\lambda_j(s, s')` over the layers
    :math:`s, s' \in [\max(j,1), k-j]`.

    ``sigma``: optional precomputed `covariance_grid` (shape ``(k+1,)*3``).
    """
    name = "block_eigenvalues"
    k = check_k(k, name)
    j = _checks.require_int(j, "j", name, minimum=0, maximum=k // 2)
    if sigma is None:
        W_std, b_std = check_stds(W_std, b_std, name)
        sig = covariance_grid(k, W_std, b_std)
    else:
        # NumPy float64 whatever JAX's mode: the blocks are factorised in float64.
        sig = _checks.require_shape(
            np.asarray(sigma, np.float64),
            (k + 1,) * 3,
            "sigma",
            name,
            "Σ(s, s', t) on the grid 0..k",
        )
    big_r = k - 2 * j
    ss = list(range(max(j, 1), k - j + 1))
    out = np.zeros((len(ss), len(ss)))
    for a, s in enumerate(ss):
        for b, sp in enumerate(ss):
            tot = 0.0
            for p in range(j + 1):
                w = math.comb(j, p) * (-1) ** (j - p)
                for r in range(0, min(s - j, sp - j) + 1):
                    cnt = math.comb(s - j, r) * math.comb(big_r - (s - j), sp - j - r)
                    if cnt:
                        tot += w * cnt * sig[s, sp, p + r]
            norm_s = math.sqrt(2**j * math.comb(big_r, s - j))
            norm_sp = math.sqrt(2**j * math.comb(big_r, sp - j))
            out[a, b] = tot * norm_s / norm_sp
    return ss, (out + out.T) / 2


def structured_sampler(k: int, W_std: float = 1.0, b_std=None):
    r"""Exact joint draws via the :math:`S_k` (Johnson-scheme) block structure of :math:`\Sigma`.

    Returns ``sample(key, n) -> (n, 2^k − 1)`` (a draw: module docstring);
    ``sample.normal_shapes`` lists, per block :math:`j`, the normals it mixes:
    :math:`(\#\text{layers of } B_j, \binom{k}{j})`.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.structured_sampler(4).normal_shapes    # j = 0, 1, 2
        [(4, 1), (3, 4), (1, 6)]
    """
    k = check_k(k, "structured_sampler", MAX_ENUM_K)
    W_std, b_std = check_stds(W_std, b_std, "structured_sampler")
    layers, pos = _layers(k)
    up = [jnp.asarray(_up_table(layers, pos, k, r)) for r in range(k)]
    down = [jnp.asarray(_down_table(layers, pos, k, r)) for r in range(k)]
    dtype = jnp.result_type(float)
    blocks = []
    sigma = covariance_grid(k, W_std, b_std)
    for j in range(k // 2 + 1):
        ss, b = block_eigenvalues(k, j, sigma=sigma)
        w, v = np.linalg.eigh(b)
        factor = v * np.sqrt(np.clip(w, 0.0, None))
        scale = [
            math.factorial(s - j) * math.sqrt(math.comb(k - 2 * j, s - j)) for s in ss
        ]  # ‖U^{s−j} ĥ_j‖ = (s−j)! ‖h_s‖ / ‖h_j‖
        blocks.append((j, ss, jnp.asarray(factor, dtype), scale))
    order = np.concatenate([layers[s] - 1 for s in range(1, k + 1)])
    inverse = jnp.asarray(np.argsort(order))

    def _harmonic(xi, j, up, down):
        """Project columns of ``xi`` (layer j) onto ker(Uᵀ), U: layer j−1 → j."""
        if j == 0:
            return xi
        u, ut = up[j - 1], down[j - 1]
        apply_u = lambda w: w[u].sum(1)
        apply_ut = lambda f: f[ut].sum(1)
        op = lambda w: apply_ut(apply_u(w))
        rhs = apply_ut(xi)

        def step(_, carry):
            w, r, p, rs = carry
            ap = op(p)
            den = (p * ap).sum(0, keepdims=True)
            alpha = jnp.where(den > 0, rs / jnp.where(den > 0, den, 1.0), 0.0)
            w = w + alpha * p
            r = r - alpha * ap
            rs_new = (r * r).sum(0, keepdims=True)
            beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
            return w, r, r + beta * p, rs_new

        # Exact after j steps (j distinct eigenvalues); the rest mops up rounding.
        w, *_ = jax.lax.fori_loop(
            0, 2 * j + 4, step, (jnp.zeros_like(rhs), rhs, rhs, (rhs * rhs).sum(0, keepdims=True))
        )
        return xi - apply_u(w)

    shapes = [(len(ss), layers[j].size) for j, ss, _, _ in blocks]

    def _linear(normals, up, down, factors, inverse):
        """The draw as a linear map of i.i.d. normals ``[(n_layers_j, C(k,j), n)]``.

        Index tables are arguments, not closure constants: XLA compiles large
        embedded constants slowly.
        """
        n = normals[0].shape[-1]
        out = [jnp.zeros((layers[s].size, n), dtype) for s in range(k + 1)]
        for (j, ss, _, scale), factor, xi in zip(blocks, factors, normals):
            n_l = len(ss)
            # One harmonic copy per layer of the block, projected in one batch.
            xi = _harmonic(xi.transpose(1, 0, 2).reshape(layers[j].size, n_l * n), j, up, down)
            xi = xi.reshape(layers[j].size, n_l, n).transpose(1, 0, 2)
            f = jnp.einsum("ab,bcn->acn", factor, xi)
            first = 0  # f holds the rows of layers ss[first:], lifted to layer r
            for r in range(j, ss[-1] + 1):
                if ss[first] == r:
                    out[r] = out[r] + f[0] / scale[first]
                    f, first = f[1:], first + 1
                if first < n_l:
                    f = f[:, up[r]].sum(2)
        z = jnp.concatenate(out[1:], axis=0)
        return z[inverse].T

    jitted = jax.jit(_linear)
    factors = [b[2] for b in blocks]

    def linear(normals):
        return jitted(list(normals), up, down, factors, inverse)

    def sample(key, n: int):
        n = _checks.require_int(n, "n", "structured_sampler sample")
        keys = jax.random.split(key, len(shapes))
        return linear([jax.random.normal(kk, sh + (n,), dtype) for kk, sh in zip(keys, shapes)])

    # Attributes a caller reads to reuse the linear map (function attributes).
    sample.linear = linear  # type: ignore[attr-defined]
    sample.normal_shapes = shapes  # type: ignore[attr-defined]
    return sample


def gp_sampler(k: int, W_std: float = 1.0, b_std=None, method: str = "auto"):
    """``sample(key, n) -> (n, 2^k − 1)`` joint draws of one output coordinate.

    ``method``: ``"dense"`` (k <= 12), ``"structured"`` (k <= 20) or ``"auto"``
    (dense for k <= 10, structured above).

    Example:
        >>> from ntk import permutations as perms
        >>> perms.gp_sampler(3)(jax.random.PRNGKey(0), 2).shape   # dense: k <= 10
        (2, 7)
    """
    _checks.require_one_of(method, ("auto", "dense", "structured"), "method", "gp_sampler")
    k = check_k(k, "gp_sampler")
    if method == "dense" or (method == "auto" and k <= 10):
        return dense_sampler(k, W_std, b_std)
    return structured_sampler(k, W_std, b_std)
