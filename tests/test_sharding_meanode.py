"""Particles of the Neural Mean ODE solver (and seeds of the finite ResNet) split over 4 simulated
host devices give the single-device answer, and the compiled core reduces instead of gathering."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nfd._sharding import check_divisible, resolve_devices, sharding_for
from _xla import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import re
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp, nfd
    from nfd.meanode import solve_mean_ode, simulate_resnet
    from nfd.meanode._finite import _jitted_core, hyper_array
    from nfd._sharding import make_mesh, shard_along
    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3)); Y = np.tanh(X[:, ::-1])
    # Sharding only reorders the particle sums (4 partial sums + an all-reduce instead of one
    # sum): round-off of a few eps = 2.2e-16 per mean, carried through K = 6 GD steps (measured
    # max 8.9e-16 on outputs of size ~1); 1e-13 bounds that and is far below any real change.
    tol = dict(rtol=0, atol=1e-13)
    cases = [dict(coupling="common"), dict(coupling="independent"),
             dict(coupling="independent", lazy=True), dict(coupling="common", richardson=True)]
    for case in cases:
        kw = dict(steps=6, grid=8, particles=64, replicates=2, forward_steps=(0, 3, 6), dtype=jnp.float64, **case)
        one = solve_mean_ode(X, Y, **kw)
        four = solve_mean_ode(X, Y, devices="all", **kw)
        assert one.config["devices"] == 1 and four.config["devices"] == 4
        assert np.abs(one.outputs[-1] - one.outputs[0]).max() > 1e-2, case  # it trained
        for f in ("outputs", "forward", "u_displacement", "v_displacement", "losses", "replicate_outputs"):
            np.testing.assert_allclose(getattr(four, f), getattr(one, f), err_msg=f"{case} {f}", **tol)
        # a device list (two of the four) works too
        two = solve_mean_ode(X, Y, devices=jax.devices()[2:], **kw)
        np.testing.assert_allclose(two.outputs, one.outputs, **tol)

    # the jitted core keeps the particle axis split: reductions become all-reduces, nothing is gathered
    net = nfd.MeanODEResNet(dim=3)
    mesh = make_mesh(jax.devices(), "particles")
    for lazy in (False, True):
        U = shard_along(rng.normal(size=(8, 16, 3)), mesh, 1, "particles")
        V = shard_along(rng.normal(size=(8, 16, 3)), mesh, 1, "particles")
        fn = _jitted_core(net, 8, 3, (0, 3), lazy, False)
        txt = fn.lower(U, V, jnp.asarray(X[:, :3]), jnp.asarray(Y), hyper_array(net, jnp.float64)).compile().as_text()
        ops = re.findall(r"\\b(all-gather|all-reduce|all-to-all|collective-permute)(?:-start)?\\(", txt)
        assert "all-reduce" in ops and "all-gather" not in ops and "all-to-all" not in ops, (lazy, ops)
        out = fn(U, V, jnp.asarray(X), jnp.asarray(Y), hyper_array(net, jnp.float64))
        assert out["final_u"].sharding.spec == jax.sharding.PartitionSpec(None, "particles", None)

    # P not a multiple of the device count: a clear error before any work
    for bad in (dict(particles=6, sampler="iid"), dict(particles_init=(np.ones((6, 3)), np.ones((6, 3))))):
        try:
            solve_mean_ode(X, Y, steps=2, grid=4, devices="all", **bad)
        except ValueError as e:
            assert "particles=6 must be a multiple of the number of devices (4)" in str(e), e
        else:
            raise AssertionError("expected a ValueError")

    # finite ResNets: seeds over devices (each network on one device)
    kw = dict(depth=6, hidden=3, steps=5, seeds=8, dtype=jnp.float64)
    one = simulate_resnet(X, Y, **kw)
    four = simulate_resnet(X, Y, devices="all", **kw)
    np.testing.assert_allclose(four.outputs, one.outputs, **tol)
    np.testing.assert_allclose(four.losses, one.losses, **tol)
    try:
        simulate_resnet(X, Y, devices="all", **(kw | dict(seeds=6)))
    except ValueError as e:
        assert "seeds=6 must be a multiple of the number of devices (4)" in str(e), e
    else:
        raise AssertionError("expected a ValueError")
    print("OK")
    """
)


def test_mean_ode_particle_sharding_on_four_host_devices():
    env = subprocess_env(devices=4)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")


def test_resolve_devices_validates():
    import jax

    assert resolve_devices(None) is None
    assert resolve_devices("all") == jax.devices()
    assert resolve_devices(jax.devices()[:1]) == jax.devices()[:1]
    for bad, msg in [("gpu", "devices must be None, 'all'"), ([], "empty device list"), ([0], "must be jax devices"),
                     (jax.devices()[:1] * 2, "listed twice"), (3, "devices must be None, 'all'")]:
        with pytest.raises(ValueError, match=msg):
            resolve_devices(bad)
    with pytest.raises(ValueError, match="must be a multiple of the number of devices"):
        check_divisible(3, [0, 1], "particles")
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:1], dtype=object), ("particles",))
    assert sharding_for(mesh, 3, 1, "particles").spec == PartitionSpec(None, "particles", None)
    with pytest.raises(ValueError, match="out of range"):
        sharding_for(mesh, 2, 2, "particles")


def test_mean_ode_rejects_bad_devices_before_work():
    from nfd.meanode import solve_mean_ode

    X = np.ones((2, 3))
    with pytest.raises(ValueError, match="devices must be None, 'all'"):
        solve_mean_ode(X, X, steps=1, grid=2, particles=4, sampler="iid", devices="everything")
