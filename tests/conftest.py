import jax
import pytest

# Numerics checks run in float64 where they ask for it (dtype=jnp.float64); the package's
# default stays float32.
jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long statistical checks (run with -m slow)")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
