"""Golden architectures of the ``attention`` family: ``GlobalSelfAttention``.

Same interface as ``architectures.py`` (read its docstring): built from either
``neural_tangents.stax`` (by ``scripts/nt_golden.py --family attention``) or
``ntk.stax`` (by ``tests/test_stax_golden.py``), importing neither.

Coverage: every attention mechanism NT has a kernel for — SOFTMAX, IDENTITY,
ABS, RELU with ``linear_scaling=True``, and IDENTITY with
``linear_scaling=False`` (the only square-root-scaled one NT can do) — times
every positional embedding (NONE, SUM, CONCAT), each on sequences ``(T, C)``
and on images ``(H, W, C)``, with ``n_heads`` 1 and 2 alternating; plus
distance-decaying embeddings (``pos_emb_decay_fn``, both ``p`` norms),
``val_pos_emb``, ``n_chan_pos_emb``, no bias, two stacked attention layers,
vector inputs (one position) and masked inputs (``mask_constant``). Every
network ends in a vector output.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from _family import accessors, normal_inputs

N1 = 4
N2 = 3
SEQ = (5, 3)  # T = 5 positions, 3 channels
IMG = (3, 2, 2)  # 6 positions, 2 channels
VEC = (4,)
MASK = 9.5  # inputs equal to it are masked (``mask_constant``)

MECHANISMS = ("SOFTMAX", "IDENTITY", "ABS", "RELU")
EMBEDDINGS = ("NONE", "SUM", "CONCAT")

X2_NONE = frozenset(
    {
        "softmax_none_seq",
        "relu_concat_img",
        "sqrt_identity_sum_seq",
        "softmax_decay_valpe_p1_seq",
        "two_layers_seq",
        "softmax_sum_decay_masked_seq",
    }
)


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal inputs seeded by the CRC32 of the name; for the
    ``masked`` architectures some positions (a trailing run, a single one, a
    whole input of ``x2``) are set to `MASK`."""
    x1, x2 = normal_inputs(name, input_shape, N1, N2)
    if "masked" in name:
        x1[0, -2:] = MASK
        x1[2, 1] = MASK
        x2[1, 0] = MASK
        x2[2] = MASK
    return x1, x2


def kernel_kwargs(name: str, x1, x2) -> dict:
    """``mask_constant`` for the masked architectures (both libraries)."""
    return {"mask_constant": MASK} if "masked" in name else {}


def _decay(d):
    """Covariance of positional embeddings at (p-norm) distance ``d``."""
    return jnp.exp(-d / 2.0)


def _attention(s, mechanism, pos_emb, heads, linear_scaling=True, **kw):
    args = dict(
        linear_scaling=linear_scaling,
        W_key_std=1.2,
        W_query_std=0.9,
        W_value_std=1.1,
        W_out_std=0.8,
        b_std=0.15,
        attention_mechanism=mechanism,
        pos_emb_type=pos_emb,
    )
    args.update(kw)
    return s.GlobalSelfAttention(4, 3, 2, heads, **args)


def _net(s, attention, spatial: bool, relu_after: bool, flatten: bool):
    first = (
        s.Conv(4, (1,) * spatial, W_std=1.3, b_std=0.2)
        if spatial
        else s.Dense(4, W_std=1.3, b_std=0.2)
    )
    tail = [s.Relu()] if relu_after else []
    pool = s.Flatten() if flatten else s.GlobalAvgPool()
    return s.serial(first, attention, *tail, pool, s.Dense(3, W_std=1.1, b_std=0.1))


def _builders(stax) -> dict:
    s = stax
    out = {}
    i = 0
    for mechanism in MECHANISMS + ("sqrt_IDENTITY",):
        sqrt = mechanism.startswith("sqrt")
        mech = "IDENTITY" if sqrt else mechanism
        for pos_emb in EMBEDDINGS:
            for where, shape in (("seq", SEQ), ("img", IMG)):
                name = f"{mechanism.lower()}_{pos_emb.lower()}_{where}"
                heads = 1 + i % 2
                spatial = len(shape) - 1
                out[name] = (
                    lambda mech=mech, pos_emb=pos_emb, heads=heads, sqrt=sqrt, spatial=spatial, i=i: (
                        _net(
                            s,
                            _attention(s, mech, pos_emb, heads, linear_scaling=not sqrt),
                            spatial,
                            relu_after=i % 3 == 0,
                            flatten=i % 2 == 0,
                        )
                    ),
                    shape,
                )
                i += 1
    out.update(
        {
            "softmax_decay_valpe_p1_seq": (
                lambda: _net(
                    s,
                    _attention(
                        s,
                        "SOFTMAX",
                        "SUM",
                        2,
                        pos_emb_decay_fn=_decay,
                        pos_emb_p_norm=1,
                        val_pos_emb=True,
                        W_pos_emb_std=0.7,
                    ),
                    1,
                    True,
                    False,
                ),
                SEQ,
            ),
            "relu_concat_decay_p2_img": (
                lambda: _net(
                    s,
                    _attention(
                        s,
                        "RELU",
                        "CONCAT",
                        2,
                        pos_emb_decay_fn=_decay,
                        pos_emb_p_norm=2,
                        n_chan_pos_emb=3,
                        W_pos_emb_std=1.3,
                    ),
                    2,
                    False,
                    True,
                ),
                IMG,
            ),
            "softmax_concat_valpe_nchan_img": (
                lambda: _net(
                    s,
                    _attention(s, "SOFTMAX", "CONCAT", 1, val_pos_emb=True, n_chan_pos_emb=5),
                    2,
                    True,
                    False,
                ),
                IMG,
            ),
            "sqrt_identity_concat_decay_valpe_img": (
                lambda: _net(
                    s,
                    _attention(
                        s,
                        "IDENTITY",
                        "CONCAT",
                        2,
                        linear_scaling=False,
                        val_pos_emb=True,
                        pos_emb_decay_fn=_decay,
                        n_chan_pos_emb=1,
                    ),
                    2,
                    False,
                    True,
                ),
                IMG,
            ),
            "abs_nobias_seq": (
                lambda: _net(s, _attention(s, "ABS", "NONE", 2, b_std=None), 1, True, True),
                SEQ,
            ),
            "two_layers_seq": (
                lambda: s.serial(
                    s.Conv(4, (2,), padding="SAME", W_std=1.2, b_std=0.1),
                    _attention(s, "SOFTMAX", "SUM", 2),
                    s.Relu(),
                    _attention(s, "IDENTITY", "NONE", 1, W_key_std=0.7),
                    s.Erf(),
                    s.GlobalAvgPool(),
                    s.Dense(3, W_std=1.1),
                ),
                SEQ,
            ),
            # Masked keys are left out of the attention (and their positional
            # embeddings zeroed); outputs at masked positions are zeroed.
            "softmax_sum_decay_masked_seq": (
                lambda: _net(
                    s,
                    _attention(s, "SOFTMAX", "SUM", 2, pos_emb_decay_fn=_decay, val_pos_emb=True),
                    1,
                    True,
                    False,
                ),
                SEQ,
            ),
            "relu_none_masked_img": (
                lambda: _net(s, _attention(s, "RELU", "NONE", 1), 2, False, True),
                IMG,
            ),
            "sqrt_identity_concat_masked_img": (
                lambda: _net(
                    s,
                    _attention(s, "IDENTITY", "CONCAT", 2, linear_scaling=False, val_pos_emb=True),
                    2,
                    True,
                    False,
                ),
                IMG,
            ),
            "softmax_vectors": (
                lambda: _net(s, _attention(s, "SOFTMAX", "NONE", 2), 0, True, True),
                VEC,
            ),
        }
    )
    return out


names, input_shape, build, architectures, options = accessors(_builders)
