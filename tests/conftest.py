import os

from _xla import session_flags

# Tests never read or fill the user's persistent compilation cache (nfd turns it on at import;
# tests/test_compile_cache.py checks it in fresh processes with their own directories).
os.environ.setdefault("NFD_NO_COMPILATION_CACHE", "1")

# Compile at LLVM -O0 in the default run (why, and how to turn it off: tests/_xla.py).  Must be set
# before jax initialises its CPU backend.
os.environ["XLA_FLAGS"] = session_flags()

import jax  # noqa: E402
import pytest  # noqa: E402

# The suite runs in the configuration users have by default: 64-bit types OFF (float32).  A test
# that needs float64 (round-off comparisons, the Γ/C recursion, float64 references) asks for it
# locally with the ``x64`` fixture -- ``@pytest.mark.usefixtures("x64")`` on the test, or
# ``pytestmark = pytest.mark.usefixtures("x64")`` for a whole file -- never for the whole run.
# See tests/README.md.


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long statistical checks (run with -m slow)")
    config.addinivalue_line(
        "markers",
        "default_config: checks of the user's default configuration (64-bit off, float32); "
        "`.ci/run` also runs them at XLA's default optimisation (-m default_config)")


@pytest.fixture
def x64():
    """Enable 64-bit types for this test only (``jax.enable_x64`` context)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _x64_stays_off():
    """Every test starts with 64-bit types off, and a test (or an example it runs in-process) that
    turns them on globally does not leak that into later tests."""
    if jax.config.jax_enable_x64:  # a leak that escaped the check below (e.g. at import time)
        jax.config.update("jax_enable_x64", False)
    yield
    if jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", False)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
