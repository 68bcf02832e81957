"""ntk.parallel: tiled, sharded kernels equal the single call, for any sizes."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ntk import parallel, stax

_, _, KERNEL_FN = stax.serial(stax.Dense(64, 1.4, 0.1), stax.Relu(),
                              stax.Dense(64, 1.2, 0.05), stax.Erf(), stax.Dense(1))


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


def test_spatial_outputs_are_tiled_without_mirroring():
    x = np.random.RandomState(1).randn(7, 4, 3)
    _, _, kfn = stax.serial(stax.Dense(8, 1.3, 0.1), stax.Relu(), stax.Dense(8))
    ref = kfn(x, None, "nngp")
    out = parallel.batch(kfn, 2)(x, None, "nngp")
    assert out.shape == ref.shape == (7, 7, 4)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=0)


def test_memory_budget_picks_small_tiles_for_a_small_budget():
    x1, x2 = _inputs()
    big = parallel.choose_tile(KERNEL_FN, x1, x2, ("ntk",), 1, 2 ** 30)
    small = parallel.choose_tile(KERNEL_FN, x1, x2, ("ntk",), 1, 2 ** 12)
    assert small < big
    out = parallel.batch(KERNEL_FN, memory_bytes=2 ** 12)(x1, x2, "ntk")
    np.testing.assert_allclose(out, KERNEL_FN(x1, x2, "ntk"), rtol=1e-12, atol=0)


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
    res = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
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
    procs = [subprocess.Popen([sys.executable, "-c", _MULTIHOST_SCRIPT, str(i),
                               f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        res = json.loads(out.strip().splitlines()[-1])
        assert res == {"processes": 2, "devices": 4, "err": res["err"]}
        assert res["err"] <= 1e-12
