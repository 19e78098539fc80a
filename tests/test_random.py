"""nfd/_random.py: the flat Gaussian draw is ``jax.random.normal`` bit for bit (it only compiles faster)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfd._random import flat_draws, normal


@pytest.fixture(params=[True, False], ids=["partitionable", "original"])
def threefry_mode(request):
    old = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", request.param)
    try:
        yield request.param
    finally:
        jax.config.update("jax_threefry_partitionable", old)


@pytest.mark.parametrize("shape", [(), (7,), (5, 3), (2, 3, 4), (1, 6)])
def test_flat_draw_equals_jax_normal(threefry_mode, shape):
    key = jax.random.PRNGKey(11)
    assert flat_draws(key)
    a = np.asarray(normal(key, shape))
    b = np.asarray(jax.random.normal(key, shape))
    assert a.shape == b.shape and np.array_equal(a, b)


def test_flat_draw_under_jit_and_vmap(threefry_mode):
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    f = jax.jit(jax.vmap(lambda k: normal(k, (6, 5))))
    g = jax.jit(jax.vmap(lambda k: jax.random.normal(k, (6, 5))))
    assert np.array_equal(np.asarray(f(keys)), np.asarray(g(keys)))


@pytest.mark.usefixtures("x64")
def test_flat_draw_float64(threefry_mode):
    key = jax.random.PRNGKey(2)
    a = np.asarray(normal(key, (4, 9), jnp.float64))
    assert a.dtype == np.float64 and np.array_equal(a, np.asarray(jax.random.normal(key, (4, 9), jnp.float64)))


def test_typed_keys_and_other_generators():
    k = jax.random.key(4)
    assert flat_draws(k)
    assert np.array_equal(np.asarray(normal(k, (3, 4))), np.asarray(jax.random.normal(k, (3, 4))))
    r = jax.random.key(4, impl="rbg")  # not documented to number draws by flat index: the shaped draw
    assert not flat_draws(r)
    assert np.array_equal(np.asarray(normal(r, (3, 4))), np.asarray(jax.random.normal(r, (3, 4))))
