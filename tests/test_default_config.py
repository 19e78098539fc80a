"""The user's default configuration: 64-bit types off (float32), explicit integer seeds.

These tests carry the ``default_config`` marker: they run in the default test run and again in
``.ci/run``'s default-configuration part, which runs them at XLA's default optimisation, i.e.
exactly as a user's ``import nfd`` does.  Each checks something that only the 64-bit-off
configuration can get wrong (see tests/README.md).
"""

import jax
import numpy as np
import pytest

import nfd

pytestmark = pytest.mark.default_config

X = np.random.default_rng(0).normal(size=(3, 4))
Y = np.tanh(X[:, 0])

RUNS = {
    "simulate": lambda seed: nfd.simulate(X, Y, width=8, depth=2, activation="tanh", lr=0.5, seeds=1,
                                          seed=seed).outputs,
    "solve_particles": lambda seed: nfd.solve(X, Y, depth=2, particles=64, activation="tanh", lr=0.5,
                                              seed=seed).outputs,
    "solve_mean_ode": lambda seed: nfd.solve(X, np.tanh(X), method="mean_ode", steps=2, grid=4, particles=16,
                                             replicates=1, sampler="iid", seed=seed).outputs,
}

# Seeds that agree modulo 2**32: a seed truncated to 32 bits (what jax.random.PRNGKey does with
# 64-bit types off) maps each pair to the same key.
PAIRS = [(7, 7 + 2**32), (-1, 2**32 - 1)]


def test_64_bit_types_are_off():
    assert not jax.config.jax_enable_x64
    res = nfd.simulate(X, Y, width=8, depth=2, activation="tanh", lr=0.5, seeds=1)
    assert np.asarray(res.outputs).dtype == np.float32


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("a, b", PAIRS)
def test_seeds_equal_modulo_2_32_do_not_collide(run, a, b):
    """``seed=a`` and ``seed=b`` (equal modulo 2**32) must give different runs, or the larger seed
    must be refused with a ValueError naming ``seed`` before any work.  Today (64-bit off) both
    give bit-identical results: two "independent" experiments are the same experiment."""
    f = RUNS[run]
    try:
        ra = np.asarray(f(a))
        assert np.array_equal(ra, np.asarray(f(a))), "same seed, different results: not reproducible"
        rb = np.asarray(f(b))
    except ValueError as e:
        assert "seed" in str(e), f"refused without naming the argument: {e!r}"
        return
    assert np.all(np.isfinite(ra)) and np.all(np.isfinite(rb))
    assert not np.array_equal(ra, rb), f"seed={a} and seed={b} give bit-identical results"
