"""Seeds sharded across (simulated) devices give the same networks as one device."""

import subprocess
import sys
import textwrap
from _xla import subprocess_env

SCRIPT = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp, nfd
    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3)); Y = np.sin(X[:, 0])
    kw = dict(width=16, depth=3, activation="tanh", lr=0.3, seeds=8, dtype=jnp.float64)
    one = nfd.simulate(X, Y, **kw)
    sharded = nfd.simulate(X, Y, devices="all", **kw)
    np.testing.assert_allclose(sharded.outputs, one.outputs, rtol=0, atol=1e-13)
    try:
        nfd.simulate(X, Y, devices="all", **(kw | dict(seeds=6)))
    except ValueError as e:
        assert "multiple of the number of devices" in str(e)
    else:
        raise AssertionError("expected a ValueError")
    print("OK")
    """
)


def test_seed_sharding_on_four_host_devices():
    env = subprocess_env(devices=4)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")
