"""`ntk.mup.parametrize`: one entry point for stax networks and Flax modules."""

from __future__ import annotations

from ntk.mup.parametrize import Parametrized, parametrize_stax


def parametrize(
    model,
    parametrization="mup",
    *,
    base_width: float = 1.0,
    base=None,
    delta=None,
    x=None,
    input_shape=None,
    annotations=None,
) -> Parametrized:
    r"""Put ``model`` in an abc-parametrization (TP4 Def. 3.1; μP is TP4 Def. 5.1).

    Args:
      model: an ``ntk.stax`` ``(init_fn, apply_fn, kernel_fn)`` triple, a Flax
        linen ``nn.Module`` or a Flax nnx ``nnx.Module`` (instance).
      parametrization: ``"sp"``, ``"ntk"``, ``"mf"``, ``"mup"`` or an `ABC`
        (``mup.abc("mup", depth=L, form="table3", zero_readout=True)`` ...).
      base_width: stax only: the base width :math:`n_0` (multipliers
        :math:`\mathrm{dim} / n_0`; 1 gives TP4's literal :math:`n^{-a}`).
      base, delta: Flax only: the same module at the base width (and at a
        third width, when the target equals the base); see `ntk.mup.flax`.
      x: linen only: an example input.
      input_shape: stax only: a shape for the dry-run init (images).
      annotations: Flax only: ``{param path: role or (role, layer)}``.

    Returns:
      `Parametrized` ``(init_fn, apply_fn, info, abc, features_fn)``; train
      ``w`` with ``mup.sgd(lr, net.info)`` / ``mup.adam(lr, net.info)``.

    Example:
      >>> import jax
      >>> from ntk import mup, stax
      >>> net = mup.parametrize(stax.serial(stax.Dense(512), stax.Relu(),
      ...                                   stax.Dense(10)), "mup", base_width=64)
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (128, 784))
      >>> _, w = net.init_fn(jax.random.PRNGKey(1), x.shape)
      >>> logits = net.apply_fn(w, x)
      >>> logits.shape
      (128, 10)
    """
    if isinstance(model, tuple):
        if base is not None or annotations is not None:
            raise ValueError(
                "parametrize: stax networks take `base_width` (roles "
                "come from layer positions), not `base`/`annotations`."
            )
        return parametrize_stax(
            model, parametrization, base_width=base_width, input_shape=input_shape
        )
    try:
        from flax import linen, nnx
    except ImportError:  # pragma: no cover - flax is a dependency
        linen = nnx = None  # type: ignore[assignment]
    if linen is not None and isinstance(model, linen.Module):
        if base is None or x is None:
            raise ValueError(
                "parametrize: a linen module needs `base` (the module "
                "at the base width) and `x` (an example input)."
            )
        from ntk.mup.flax import parametrize_linen

        return parametrize_linen(
            model, parametrization, base=base, x=x, delta=delta, annotations=annotations
        )
    if nnx is not None and isinstance(model, nnx.Module):
        if base is None:
            raise ValueError(
                "parametrize: an nnx module needs `base` (the module at the base width)."
            )
        from ntk.mup.flax import parametrize_nnx

        return parametrize_nnx(
            model, parametrization, base=base, delta=delta, annotations=annotations
        )
    raise TypeError(
        "parametrize: `model` must be an ntk.stax (init_fn, apply_fn, "
        "kernel_fn) triple, a flax.linen Module or a flax.nnx Module; "
        f"got {type(model).__name__}."
    )
