import os

from _xla import session_flags

# Compile at LLVM -O0 in the default run (why, and how to turn it off: tests/_xla.py).  Must be set
# before jax initialises its CPU backend.
os.environ["XLA_FLAGS"] = session_flags()

import jax  # noqa: E402
import pytest  # noqa: E402

# Numerics checks run in float64 where they ask for it (dtype=jnp.float64); the package's
# default stays float32.
jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long statistical checks (run with -m slow)")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
