"""ntk.parallel: tiled, sharded kernels equal the single call, for any sizes."""

import functools
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import parallel, stax

_, _, KERNEL_FN = stax.serial(
    stax.Dense(64, 1.4, 0.1), stax.Relu(), stax.Dense(64, 1.2, 0.05), stax.Erf(), stax.Dense(1)
)


def _inputs(n1=23, n2=17, d=5):
    rng = np.random.RandomState(0)
    return rng.randn(n1, d), rng.randn(n2, d)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64, 0])
@pytest.mark.parametrize("device_count", [1, 3, 4])
def test_tiled_equals_single_call_for_sizes_not_divisible(batch_size, device_count):
    x1, x2 = _inputs()
    ref = KERNEL_FN(x1, x2, ("nngp", "ntk"))
    out = parallel.batch(KERNEL_FN, batch_size, device_count)(x1, x2, ("nngp", "ntk"))
    np.testing.assert_allclose(out.nngp, ref.nngp, rtol=1e-12, atol=0)
    np.testing.assert_allclose(out.ntk, ref.ntk, rtol=1e-12, atol=0)


@pytest.mark.parametrize("batch_size", [1, 4, 6, 0])
def test_symmetric_call_mirrors_upper_tiles_exactly(batch_size):
    x1, _ = _inputs()
    ref = KERNEL_FN(x1, None, "ntk")
    out = parallel.batch(KERNEL_FN, batch_size)(x1, None, "ntk")
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(out, np.asarray(out).T)


@pytest.mark.parametrize("batch_size,device_count", [(4, 1), (6, 1), (3, 4)])
def test_symmetric_call_is_exactly_symmetric_when_tiles_round_differently(batch_size, device_count):
    # A kernel whose two-argument calls carry an antisymmetric error of 1e-9,
    # as a float32 kernel's pairs (a, b) and (b, a) differ by rounding.
    def kernel_fn(x1, x2=None, get="ntk"):
        k = x1 @ (x1 if x2 is None else x2).T
        if x2 is not None:
            k = k + 1e-9 * (x1[:, :1] - x2[:, :1].T)
        return tuple(k for _ in get) if isinstance(get, tuple) else k

    x1, _ = _inputs()
    out = np.asarray(parallel.batch(kernel_fn, batch_size, device_count)(x1, None, "ntk"))
    np.testing.assert_array_equal(out, out.T)
    np.testing.assert_allclose(out, x1 @ x1.T, rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    "full_spatial, swap", [(False, (1, 0, 2, 3)), (True, (1, 0, 3, 2, 5, 4))], ids=["diag", "full"]
)
def test_spatial_kernels_of_a_stax_network_are_mirrored_in_their_layout(
    full_spatial, swap, tmp_path
):
    """A stax kernel_fn says how it stores spatial axes, so x2=None computes
    only the upper tiles (3 of the 4 tile files) and mirrors the rest with
    the batch axes swapped, and in the full layout each spatial pair too."""
    x = np.random.RandomState(1).randn(7, 4, 3, 2)
    _, _, kfn = stax.serial(
        stax.Conv(8, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
        stax.Relu(),
        stax.Conv(8, (3, 2), padding="SAME"),
    )
    kw = {"diagonal_spatial": False} if full_spatial else {}
    ref = kfn(x, None, ("nngp", "ntk"), **kw)
    out = parallel.batch(kfn, 4, 1, checkpoint_dir=tmp_path)(x, None, ("nngp", "ntk"), **kw)
    assert len(list(tmp_path.glob("tile_*.npz"))) == 3
    for name in ("nngp", "ntk"):
        o = np.asarray(getattr(out, name))
        assert o.shape == getattr(ref, name).shape
        np.testing.assert_allclose(o, getattr(ref, name), rtol=1e-12, atol=0, err_msg=name)
        np.testing.assert_array_equal(o, o.transpose(swap))


def test_spatial_kernels_of_other_functions_are_tiled_without_mirroring():
    """A plain function's (N1, N2, H) layout is unknown: every tile is
    computed. This kernel is not symmetric in the batch axes alone, so a
    mirrored tile would differ from the single call."""

    def kernel_fn(x1, x2=None, get="ntk"):
        x2 = x1 if x2 is None else x2
        k = jnp.einsum("ah,bh->abh", x1, jnp.roll(x2, 1, axis=1))
        return tuple(k for _ in get) if isinstance(get, tuple) else k

    x = np.random.RandomState(1).randn(7, 4)
    out = parallel.batch(kernel_fn, 2, 1)(x, None, "ntk")
    np.testing.assert_allclose(out, kernel_fn(x), rtol=1e-12, atol=0)


def test_memory_budget_picks_small_tiles_for_a_small_budget():
    x1, x2 = _inputs()
    big = parallel.choose_tile(KERNEL_FN, x1, x2, ("ntk",), 1, 2**30)
    small = parallel.choose_tile(KERNEL_FN, x1, x2, ("ntk",), 1, 2**12)
    assert small < big
    out = parallel.batch(KERNEL_FN, memory_bytes=2**12)(x1, x2, "ntk")
    np.testing.assert_allclose(out, KERNEL_FN(x1, x2, "ntk"), rtol=1e-12, atol=0)


def test_choose_tile_reads_lists_and_x2_none_as_the_arrays_they_stand_for():
    x1, _ = _inputs()
    ref = parallel.choose_tile(KERNEL_FN, x1, x1, ("ntk",), 1, 2**12)
    assert parallel.choose_tile(KERNEL_FN, x1.tolist(), None, ("ntk",), 1, 2**12) == ref
    with pytest.raises(ValueError, match=r"`x1` must have a batch axis.*got shape \(\)"):
        parallel.choose_tile(KERNEL_FN, 1.0, None, ("ntk",), 1, 2**12)


def test_host_output_when_not_stored_on_device():
    x1, x2 = _inputs()
    out = parallel.batch(KERNEL_FN, 5, store_on_device=False)(x1, x2, "nngp")
    assert isinstance(out, np.ndarray)


def test_bad_get_and_shapes_raise_clear_errors():
    x1, x2 = _inputs()
    b = parallel.batch(KERNEL_FN, 4)
    with pytest.raises(ValueError, match="`get` must name 'nngp' and/or 'ntk'"):
        b(x1, x2, "cov1")
    with pytest.raises(ValueError, match="agree beyond the batch axis"):
        b(x1, x2[:, :3], "ntk")
    with pytest.raises(ValueError, match="batch_size"):
        parallel.batch(KERNEL_FN, -2)


@pytest.mark.parametrize("x2_rows", [None, 9])
def test_kernel_fn_without_get_is_tiled_like_nt_batch(x2_rows):
    # NT's batch wraps any kernel_fn(x1, x2, *args): empirical_ntk_fn(x1, x2,
    # params) puts `params` where `get` would be.
    from ntk import empirical

    net = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
    x1, x2 = _inputs()
    x2 = None if x2_rows is None else x2[:x2_rows]
    _, params = net.init_fn(jax.random.PRNGKey(0), x1.shape)
    ntk_fn = empirical.empirical_ntk_fn(net.apply_fn)
    got = parallel.batch(ntk_fn, 4)(x1, x2, params)
    np.testing.assert_allclose(got, ntk_fn(x1, x2, params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x2_rows", [None, 9])
@pytest.mark.parametrize("store_on_device", [True, False])
def test_kernel_fn_called_without_get_is_called_without_one(x2_rows, store_on_device):
    # NT's batch passes on only the arguments it is given: an empirical
    # kernel with its parameters bound by keyword is called kernel_fn(x1, x2).
    # The linear model x @ W has the NTK x1 x2ᵀ at any W (outputs traced).
    from ntk import empirical

    x1, x2 = _inputs()
    x2 = None if x2_rows is None else x2[:x2_rows]
    W = np.random.default_rng(0).normal(size=(5, 3))
    ntk_fn = empirical.empirical_ntk_fn(lambda p, x: x @ p)
    bound = functools.partial(jax.jit(ntk_fn), params=W)
    got = parallel.batch(bound, 4, store_on_device=store_on_device)(x1, x2)
    np.testing.assert_allclose(got, x1 @ (x1 if x2 is None else x2).T, rtol=1e-12)
    # A stax kernel_fn with its `get` bound likewise: Dense(1)'s NNGP x1 x2ᵀ / 5.
    nngp = functools.partial(stax.Dense(1).kernel_fn, get="nngp")
    got = parallel.batch(nngp, 4, store_on_device=store_on_device)(x1, x2)
    np.testing.assert_allclose(got, x1 @ (x1 if x2 is None else x2).T / 5, rtol=1e-12)
    # A stax kernel_fn itself still gives both kernels.
    both = parallel.batch(stax.Dense(1).kernel_fn, 4)(x1, x2)
    np.testing.assert_allclose(both.ntk, x1 @ (x1 if x2 is None else x2).T / 5, rtol=1e-12)


#: Two pieces of a network whose batched kernels are composed, and the
#: keywords the first piece is called with.
_PIECES = {
    "dense": (
        stax.serial(stax.Dense(16, 1.3, 0.1), stax.Relu()),
        stax.serial(stax.Dense(3), stax.Erf(), stax.Dense(1)),
        {},
    ),
    # The pooling needs the full spatial layout, asked of the first piece.
    "conv_pool": (
        stax.serial(stax.Conv(8, (2, 2)), stax.Relu()),
        stax.serial(stax.GlobalAvgPool(), stax.Dense(10)),
        {"diagonal_spatial": False},
    ),
    "masked_conv": (
        stax.serial(stax.Conv(8, (2,), padding="SAME"), stax.Relu()),
        stax.serial(stax.GlobalAvgPool(), stax.Dense(2)),
        {"diagonal_spatial": False, "mask_constant": np.nan},
    ),
}


def _piece_inputs(name, n):
    rng = np.random.RandomState(n)
    if name == "dense":
        return rng.randn(n, 4)
    if name == "conv_pool":
        return rng.randn(n, 4, 4, 3)
    x = rng.randn(n, 5, 3)
    x[::2, 3:] = np.nan  # padding of every other sequence
    return x


def _assert_same_kernel(got, want):
    assert type(got) is type(want)
    for f in ("nngp", "ntk", "cov1", "cov2", "mask1", "mask2", "chord", "norm1", "norm2"):
        g, w = getattr(got, f), getattr(want, f)
        assert (g is None) == (w is None), f
        if w is not None:
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-12, atol=1e-15)
    for f in ("shape1", "shape2", "diagonal_spatial", "is_gaussian"):
        assert getattr(got, f) == getattr(want, f), f


@pytest.mark.parametrize("name", list(_PIECES))
@pytest.mark.parametrize("same_inputs", [True, False])
@pytest.mark.parametrize("device_count", [1, 3])
def test_whole_kernel_is_tiled_like_the_single_call(name, same_inputs, device_count):
    """get=None gives the Kernel the unbatched kernel_fn gives: every array
    (per pair, per input, masks) and the static fields."""
    block, _, kw = _PIECES[name]
    x1 = _piece_inputs(name, 7)
    x2 = None if same_inputs else _piece_inputs(name, 4)
    got = parallel.batch(block.kernel_fn, 2, device_count)(x1, x2, **kw)
    _assert_same_kernel(got, block.kernel_fn(x1, x2, **kw))


@pytest.mark.parametrize("name", list(_PIECES))
@pytest.mark.parametrize("same_inputs", [True, False])
@pytest.mark.parametrize("device_count", [1, 3])
def test_batched_pieces_of_a_network_compose_like_the_whole(name, same_inputs, device_count):
    """A Kernel is tiled as an input too: the batched second piece of the
    batched first piece's Kernel is the kernel of the whole network, as with
    NT's batch (tiles of 2 and 3 rows, so the two cuts differ)."""
    block, readout, kw = _PIECES[name]
    x1 = _piece_inputs(name, 7)
    x2 = None if same_inputs else _piece_inputs(name, 4)
    middle = parallel.batch(block.kernel_fn, 2, device_count)(x1, x2, **kw)
    got = parallel.batch(readout.kernel_fn, 3, device_count)(middle)
    mask = {k: v for k, v in kw.items() if k == "mask_constant"}
    _assert_same_kernel(got, stax.serial(block, readout).kernel_fn(x1, x2, **mask))
    ntk = parallel.batch(readout.kernel_fn, 3, device_count)(middle, None, "ntk")
    np.testing.assert_allclose(ntk, got.ntk, rtol=1e-12)


@pytest.mark.parametrize("get", ["nngp", ("nngp", "ntk")])
@pytest.mark.parametrize("same_inputs", [True, False])
def test_jitted_kernel_fns_of_several_inputs_compose_without_get(get, same_inputs):
    """NT's pattern: jit-wrapped kernel functions (no stax KernelFn to ask),
    called without `get`, of several inputs and outputs. The first returns
    Kernels, which the second takes, its `get` bound by partial; the result
    is nested as the unbatched composition's."""

    def net(n):
        return stax.parallel(stax.Dense(n), stax.parallel(stax.Dense(n + 1), stax.Dense(n + 2)))

    readin = jax.jit(net(16).kernel_fn)
    readout = jax.jit(functools.partial(net(1).kernel_fn, get=get))
    x1 = _nested_inputs(5)
    x2 = None if same_inputs else _nested_inputs(7)
    want = readout(readin(x1, x2))
    got = parallel.batch(readout, 2)(parallel.batch(readin, 2)(x1, x2))
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)  # type: ignore[operator]
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_a_kernel_input_resumes_from_its_checkpointed_tiles(tmp_path):
    """Tiles of a Kernel input are stored and reused like those of arrays,
    under a manifest that names the Kernel's static fields."""
    calls = []
    block, readout, kw = _PIECES["dense"]

    def kfn(k, x2, get):
        jax.debug.callback(lambda _: calls.append(1), k.nngp[0, 0])
        return readout.kernel_fn(k, x2, get)

    middle = block.kernel_fn(_piece_inputs("dense", 7), None)
    batched = parallel.batch(kfn, 2, 1, checkpoint_dir=tmp_path)
    first = batched(middle, None, "ntk")
    assert len(calls) == 10  # the 4 × 4 tiles on and above the diagonal
    assert "inputs_note" in json.loads((tmp_path / "manifest.json").read_text())
    again = batched(middle, None, "ntk")
    assert len(calls) == 11  # only the first tile, which is always checked
    np.testing.assert_array_equal(again, first)
    np.testing.assert_allclose(first, readout.kernel_fn(middle, None, "ntk"), rtol=1e-12)


def test_kernel_inputs_with_an_x2_or_among_several_inputs_are_refused():
    block, readout, _ = _PIECES["dense"]
    x1, x2 = _inputs()
    batched = parallel.batch(readout.kernel_fn, 4)
    k = block.kernel_fn(x1, x2)
    with pytest.raises(TypeError, match=r"`x2` must be None when `x1` is a Kernel"):
        batched(k, x2)
    with pytest.raises(TypeError, match=r"`x1` mixes Kernels with arrays"):
        batched([k, x1])
    with pytest.raises(TypeError, match=r"`x2` must be input arrays; got Kernels"):
        parallel.batch(block.kernel_fn, 4)(x1, k)
    with pytest.raises(ValueError, match=r"Kernels of `x1` must be of the same inputs"):
        batched([k, block.kernel_fn(x1, None)])
    named = parallel.batch(block.kernel_fn, 4)(x1, x2, ("nngp", "ntk"))
    with pytest.raises(TypeError, match=r"namedtuple Kernel\('nngp', 'ntk'\); a batched result"):
        batched(named)
    bad = k.replace(cov1=k.cov1[:3])
    with pytest.raises(ValueError, match=r"`cov1` must have shape \(23, \.\.\.\) .*got \(3,\)"):
        batched(bad)
    # Nested lists of numbers are one array, as before.
    got = parallel.batch(KERNEL_FN, 4)(x1.tolist(), None, "ntk")
    np.testing.assert_allclose(got, KERNEL_FN(x1, None, "ntk"), rtol=1e-12)


#: Several inputs nested as (a, (b, c)) and as many outputs, as in NT's
#: `batch` test of `parallel` networks.
_NESTED = stax.parallel(
    stax.Dense(4, 1.3, 0.1),
    stax.parallel(stax.serial(stax.Dense(8, 1.2), stax.Relu(), stax.Dense(3)), stax.Dense(2, 0.8)),
)


def _nested_inputs(n):
    rng = np.random.RandomState(n)
    return (rng.randn(n, 3), (rng.randn(n, 4), rng.randn(n, 2)))


@pytest.mark.parametrize("get", ["ntk", ("nngp", "ntk")])
@pytest.mark.parametrize("same_inputs", [True, False])
@pytest.mark.parametrize("device_count", [1, 3])
def test_several_inputs_and_outputs_are_tiled_like_the_single_call(get, same_inputs, device_count):
    """Each input is cut into the same rows, and each output's kernel is
    tiled and returned in the single call's nesting."""
    x1 = _nested_inputs(7)
    x2 = None if same_inputs else _nested_inputs(5)
    ref = _NESTED.kernel_fn(x1, x2, get)
    batched = parallel.batch(_NESTED.kernel_fn, 2, device_count)
    # NT spells x2 = x1 for several inputs as Nones nested like x1; lists
    # and tuples nest alike, as for the stax kernel_fn.
    spellings = [x2, [x2[0], list(x2[1])]] if x2 is not None else [None, (None, (None, None))]
    for y in spellings:
        out = batched(x1, y, get)
        assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(ref)
        pairs = zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref))
        for i, (o, r) in enumerate(pairs):
            np.testing.assert_allclose(o, r, rtol=1e-12, atol=0, err_msg=f"leaf {i}, x2={y}")


def test_several_outputs_resume_from_their_checkpointed_tiles(tmp_path):
    """Every output's tile is stored (one entry per leaf) and read back: a
    second run reloads them and returns the same kernels."""
    calls = []

    def kfn(x1, x2, get):
        jax.debug.callback(lambda _: calls.append(1), x1[0][0, 0])
        return _NESTED.kernel_fn(x1, x2, get)

    x1 = _nested_inputs(7)
    batched = parallel.batch(kfn, 2, 1, checkpoint_dir=tmp_path)
    first = batched(x1, None, ("nngp", "ntk"))
    assert len(calls) == 10  # the 4 × 4 tiles on and above the diagonal
    with np.load(sorted(tmp_path.glob("tile_*.npz"))[-1]) as f:
        assert sorted(f.files) == ["checksum"] + [f"out{i}" for i in range(6)]
    again = batched(x1, None, ("nngp", "ntk"))
    assert len(calls) == 11  # only the first tile, which is always checked
    for o, r in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(first)):
        np.testing.assert_array_equal(o, r)


def test_several_inputs_must_share_their_batch_size_and_nesting():
    x1 = _nested_inputs(7)
    batched = parallel.batch(_NESTED.kernel_fn, 2, 1)
    short = (x1[0], (x1[1][0][:5], x1[1][1]))
    with pytest.raises(ValueError, match=r"inputs of `x1` must share their batch size .*\(5, 4\)"):
        batched(short, None, "ntk")
    with pytest.raises(ValueError, match=r"`x1` and `x2` must have shape .*agree"):
        batched(x1, (x1[0], x1[1][0]), "ntk")


def test_kernel_that_is_not_a_function_of_each_pair_is_refused():
    # Dropout boosts K(x, x) only when both arguments are the same inputs;
    # a tile of x against a copy of its rows would lose that.
    dropout = stax.serial(stax.Dense(8), stax.Relu(), stax.Dropout(0.5), stax.Dense(1))
    assert dropout.kernel_fn.known_pairwise is False
    with pytest.raises(ValueError, match=r"parallel\.batch: the kernel of serial\(.*Dropout"):
        parallel.batch(dropout.kernel_fn, 4)


@pytest.mark.parametrize(
    "kernel_fn,device_count,exc,message",
    [
        ("kfn", -1, TypeError, r"`kernel_fn` must be a function .*got str"),
        (KERNEL_FN, -2, ValueError, r"`device_count` must be -1 .*got -2"),
        (KERNEL_FN, 1.5, TypeError, r"`device_count` must be an int .*got 1\.5"),
    ],
    ids=["kernel_fn", "device_count", "device_count-type"],
)
def test_bad_arguments_of_batch_are_named(kernel_fn, device_count, exc, message):
    with pytest.raises(exc, match=r"parallel\.batch: " + message):
        parallel.batch(kernel_fn, 4, device_count=device_count)


@pytest.mark.parametrize("name", ["x1", "x2"])
def test_non_finite_inputs_are_rejected_unless_they_are_the_mask_constant(name):
    # The tiles run compiled, where kernel_fn cannot check its inputs: a NaN
    # used to come back as NaN entries of the kernel.
    x1, x2 = _inputs()
    (x1 if name == "x1" else x2)[2, 1] = np.nan
    b = parallel.batch(KERNEL_FN, 4)
    with pytest.raises(ValueError, match=rf"`{name}` must be finite; got 1 NaN/inf entries"):
        b(x1, x2, "ntk")
    masked = b(x1, x2, "ntk", mask_constant=np.nan)
    np.testing.assert_allclose(masked, KERNEL_FN(x1, x2, "ntk", mask_constant=np.nan), rtol=1e-5)


_DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from ntk import parallel, stax
    _, _, kfn = stax.serial(stax.Dense(32, 1.4, 0.1), stax.Relu(), stax.Dense(1))
    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(29, 6), rng.randn(13, 6)
    ref = kfn(x1, x2, "ntk")
    out = parallel.batch(kfn, 3)(x1, x2, "ntk")
    sym = parallel.batch(kfn, 5)(x1, None, "ntk")
    print(json.dumps({"devices": jax.device_count(),
                      "err": float(np.max(np.abs(out - ref) / np.abs(ref).max())),
                      "err_sym": float(np.max(np.abs(sym - kfn(x1, None, "ntk"))))}))
""")


@pytest.mark.parametrize("n_devices", [1, 2, 8])
def test_result_is_independent_of_device_count(n_devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
    res = subprocess.run(
        [sys.executable, "-c", _DEVICE_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == n_devices
    assert out["err"] <= 1e-12 and out["err_sym"] <= 1e-12


_MULTIHOST_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2,
                               process_id=int(sys.argv[1]))
    import numpy as np
    from ntk import parallel, stax
    _, _, kfn = stax.serial(stax.Dense(32, 1.4, 0.1), stax.Relu(), stax.Dense(1))
    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(29, 6), rng.randn(13, 6)
    out = parallel.batch(kfn, 3)(x1, x2, "ntk")
    ref = kfn(x1, x2, "ntk")
    print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                      "err": float(np.max(np.abs(out - ref) / np.abs(ref).max()))}))
""")


def test_two_processes_on_localhost_each_get_the_whole_kernel():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MULTIHOST_SCRIPT, str(i), f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        res = json.loads(out.strip().splitlines()[-1])
        assert res == {"processes": 2, "devices": 4, "err": res["err"]}
        assert res["err"] <= 1e-12


@pytest.mark.parametrize("memory_bytes", [-1, 0, 0.5, float("nan"), float("inf")])
def test_memory_budget_below_one_byte_or_not_finite_is_rejected(memory_bytes):
    with pytest.raises(
        ValueError,
        match=r"`memory_bytes` must be a finite number of "
        r"bytes >= 1.*got " + re.escape(repr(memory_bytes)),
    ):
        parallel.batch(KERNEL_FN, memory_bytes=memory_bytes)
    x1, x2 = _inputs()
    with pytest.raises(ValueError, match="`memory_bytes` must be"):
        parallel.choose_tile(KERNEL_FN, x1, x2, ("ntk",), 1, memory_bytes)


@pytest.mark.parametrize("memory_bytes", ["1GB", [2**30], True])
def test_memory_budget_that_is_not_a_number_is_a_type_error(memory_bytes):
    with pytest.raises(TypeError, match="`memory_bytes` must be a number of bytes"):
        parallel.batch(KERNEL_FN, memory_bytes=memory_bytes)


@pytest.mark.parametrize(
    "n1,n2,name,shape",
    [(0, 17, "x1", (0, 5)), (23, 0, "x2", (0, 5)), (0, 0, "x1", (0, 5)), (0, None, "x1", (0, 5))],
    ids=["x1", "x2", "both", "symmetric"],
)
def test_empty_batch_is_rejected_naming_the_argument_and_its_shape(n1, n2, name, shape):
    x1, x2 = _inputs()
    x1, x2 = x1[:n1], None if n2 is None else x2[:n2]
    with pytest.raises(
        ValueError,
        match=rf"parallel\.batch: `{name}` must have at least one row.*"
        rf"got shape {re.escape(repr(shape))}",
    ):
        parallel.batch(KERNEL_FN, 4)(x1, x2, "ntk")


def test_stored_output_equals_the_host_output_bit_for_bit():
    # The device result adopts the host buffer on CPU: it must still be the
    # finished kernel, mirrored, and unaffected by later calls.
    x1, _ = _inputs()
    b_dev = parallel.batch(KERNEL_FN, 3)
    on_device = b_dev(x1, None, "ntk")
    on_host = parallel.batch(KERNEL_FN, 3, store_on_device=False)(x1, None, "ntk")
    b_dev(x1[::-1], None, "ntk")
    assert isinstance(on_device, jax.Array)
    np.testing.assert_array_equal(np.asarray(on_device), on_host)
    np.testing.assert_array_equal(on_host, on_host.T)


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from ntk import parallel, stax
    n, tile = 4000, 128
    _, _, kfn = stax.serial(stax.Dense(64), stax.Relu(), stax.Dense(1))
    x = np.random.RandomState(0).randn(n, 784)
    batched = parallel.batch(kfn, tile)          # default: store_on_device=True
    batched(x[:tile * jax.device_count() + 1], None, "ntk")   # compiles the step
    def status(field):
        with open("/proc/self/status") as f:
            line = next(l for l in f if l.startswith(field + ":"))
        return int(line.split()[1]) * 1024
    # Reset the high-water mark, so compilation and imports before this point
    # (whose peak depends on the machine's load) cannot count as growth.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    k = batched(x, None, "ntk")
    peak = status("VmHWM")
    print(json.dumps({"growth": peak - before, "output": k.nbytes,
                      "ok": bool(np.allclose(np.asarray(k)[:3, :3], kfn(x[:3], None, "ntk")))}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_is_the_output_plus_a_few_tiles():
    # Growth of peak RSS over the resident size before the call (compilation
    # done beforehand), for a 4000 x 4000 float64 kernel (122 MiB) in tiles of
    # 512 rows (4 devices x 128) x 128 columns. In flight besides the output:
    # a row block of inputs (512 x 784 x 8 B = 3 MiB, and again on the
    # devices), a column tile (0.8 MiB), a step's result and its host copy
    # (2 x 0.5 MiB), a mirrored tile (0.5 MiB) and the step's working memory
    # (16 x its result = 8 MiB, the model behind `choose_tile`): about 16 MiB.
    # The bound allows 24 MiB. Measured: 3-9 MiB over the output; the previous
    # version (padded copies of the inputs, a whole row strip buffered by the
    # mirror, jnp.asarray of the result): 70-85 MiB; a jnp.asarray copy of
    # the result alone: 122 MiB.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["ok"]
    assert res["growth"] <= res["output"] + 24 * 2**20, (
        f"peak grew by {res['growth'] / 2**20:.1f} MiB for a {res['output'] / 2**20:.1f} MiB output"
    )


# ------------------------------------------------------------ checkpoints


def _counting_kernel(calls, fail_after=None):
    """KERNEL_FN that records each executed step on the host (a callback runs
    once per execution, unlike Python code, which runs once per trace) and,
    with ``fail_after``, raises in the step after that many: an interruption."""

    def record(_):
        calls.append(1)
        if fail_after is not None and len(calls) > fail_after:
            raise RuntimeError("interrupted")

    def kfn(x1, x2, get):
        jax.debug.callback(record, x1[0, 0])
        return KERNEL_FN(x1, x2, get)

    kfn.name = KERNEL_FN.name  # the same kernel, for the checkpoint manifest
    return kfn


def test_resumed_run_equals_an_uninterrupted_run_and_skips_finished_tiles(tmp_path):
    x1, _ = _inputs()
    full = parallel.batch(KERNEL_FN, 4, 1)(x1, None, ("nngp", "ntk"))  # no checkpoints
    calls = []
    with pytest.raises(Exception, match="interrupted"):
        parallel.batch(_counting_kernel(calls, fail_after=5), 4, 1, checkpoint_dir=tmp_path)(
            x1, None, ("nngp", "ntk")
        )
    assert len(list(tmp_path.glob("tile_*.npz"))) == 5
    calls = []
    out = parallel.batch(_counting_kernel(calls), 4, 1, checkpoint_dir=tmp_path)(
        x1, None, ("nngp", "ntk")
    )
    # 23 inputs in tiles of 4: 6 x 6 tiles, 21 on or above the diagonal; the
    # 5 finished ones are loaded, except the first, recomputed as a check.
    assert len(calls) == 21 - 5 + 1
    np.testing.assert_array_equal(out.nngp, full.nngp)
    np.testing.assert_array_equal(out.ntk, full.ntk)
    calls = []
    again = parallel.batch(_counting_kernel(calls), 4, 1, checkpoint_dir=tmp_path)(
        x1, None, ("nngp", "ntk")
    )
    assert len(calls) == 1
    np.testing.assert_array_equal(again.ntk, full.ntk)


def test_corrupted_or_partial_tiles_are_computed_again(tmp_path):
    x1, x2 = _inputs()
    ref = parallel.batch(KERNEL_FN, 5, 1, checkpoint_dir=tmp_path)(x1, x2, "ntk")
    tiles = sorted(tmp_path.glob("tile_*.npz"))
    assert len(tiles) == 5 * 4
    data = tiles[3].read_bytes()
    tiles[3].write_bytes(data[: len(data) // 2])  # cut short
    corrupt = bytearray(tiles[7].read_bytes())
    with np.load(tiles[7]) as stored:
        at = corrupt.find(stored["ntk"].tobytes()[:8])
    assert at > 0
    corrupt[at] ^= 0x40  # one flipped bit
    tiles[7].write_bytes(bytes(corrupt))
    tiles[9].unlink()  # never finished
    calls = []
    out = parallel.batch(_counting_kernel(calls), 5, 1, checkpoint_dir=tmp_path)(x1, x2, "ntk")
    assert len(calls) == 3 + 1
    np.testing.assert_array_equal(out, ref)


def test_checkpoint_dir_of_another_job_or_kernel_is_refused(tmp_path):
    x1, x2 = _inputs()
    parallel.batch(KERNEL_FN, 5, 1, checkpoint_dir=tmp_path)(x1, x2, "ntk")
    with pytest.raises(ValueError, match=r"another job.*\['x1'\]"):
        parallel.batch(KERNEL_FN, 5, 1, checkpoint_dir=tmp_path)(x1 + 1, x2, "ntk")
    with pytest.raises(ValueError, match=r"another job.*'rows'"):
        parallel.batch(KERNEL_FN, 4, 1, checkpoint_dir=tmp_path)(x1, x2, "ntk")
    # Same name, other hyperparameters: caught by the recomputed first tile.
    _, _, other = stax.serial(
        stax.Dense(64, 1.5, 0.1), stax.Relu(), stax.Dense(64, 1.2, 0.05), stax.Erf(), stax.Dense(1)
    )
    assert other.name == KERNEL_FN.name
    with pytest.raises(ValueError, match="kernel changed"):
        parallel.batch(other, 5, 1, checkpoint_dir=tmp_path)(x1, x2, "ntk")
    with pytest.raises(TypeError, match="checkpoint_dir"):
        parallel.batch(KERNEL_FN, checkpoint_dir=3)


def test_progress_bar_counts_pairs_on_or_above_the_diagonal(tmp_path, capsys):
    x1, _ = _inputs()
    parallel.batch(KERNEL_FN, 4, 1, progress=True)(x1, None, "ntk")
    err = capsys.readouterr().err
    assert "276/276" in err and "pair/s" in err  # 23·24/2 pairs a ≤ b


def test_per_input_patterns_are_tiled_with_their_inputs():
    # NT's batch splits a per-input pair (for x1, for x2) with the inputs:
    # Aggregate's adjacency matrices over random graphs of 5 nodes.
    net = stax.serial(
        stax.Dense(8), stax.Aggregate(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
    )
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(7, 5, 3)), rng.normal(size=(5, 5, 3))
    a1, a2 = ((rng.random((n, 5, 5)) < 0.4).astype(float) for n in (7, 5))
    batched = parallel.batch(net.kernel_fn, batch_size=3, device_count=0)
    want = net.kernel_fn(x1, x2, "ntk", pattern=(a1, a2))
    np.testing.assert_allclose(batched(x1, x2, "ntk", pattern=(a1, a2)), want, rtol=1e-10)
    want = net.kernel_fn(x1, None, "ntk", pattern=(a1, None))
    np.testing.assert_allclose(batched(x1, None, "ntk", pattern=(a1, None)), want, rtol=1e-10)


def test_batch_under_a_transformation_says_to_call_it_outside():
    net = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    batched = parallel.batch(net.kernel_fn, batch_size=2, device_count=0)
    x = np.ones((4, 3))
    with pytest.raises(TypeError, match=r"`x1` is traced \(inside jax.jit, grad or vmap\)"):
        jax.jit(lambda x: batched(x, None, "ntk"))(x)
