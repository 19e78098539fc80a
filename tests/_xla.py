"""XLA settings of the test session and of the JAX processes tests start.

The default test run compiles with XLA's CPU backend at LLVM optimisation level 0
(``--xla_backend_optimization_level=0``): the programs under test are small and run once, so
compilation dominates the suite's time, and level 0 cuts it (measured on 2 cores: 29.4 s -> 13.4 s
on two test_finite tests, 830 s -> 535 s for the whole default run; tests dominated by execution
rather than compilation get somewhat slower).  XLA's graph-level passes (fusion, layout, sharding) still run; only the machine
code is less optimised, so results agree with a fully optimised build to round-off, and every
bit-identity test compares two runs compiled with the same flags.  ``NFD_TEST_XLA_OPT=default``
runs the suite (default or ``-m slow``) with XLA's default optimisation instead, as users' code and
the benchmarks run.
"""

import os

OPT_FLAG = "--xla_backend_optimization_level=0"


def session_flags() -> str:
    """XLA_FLAGS for this test session (call before jax initialises its backend)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("NFD_TEST_XLA_OPT", "low") != "default" and "xla_backend_optimization_level" not in flags:
        flags = f"{flags} {OPT_FLAG}".strip()
    return flags


def subprocess_env(devices: int | None = None, **extra) -> dict:
    """Environment for a child JAX process: the session's XLA flags, without any simulated-device
    count of the parent, plus ``devices`` simulated CPU devices if given."""
    flags = [f for f in session_flags().split() if not f.startswith("--xla_force_host_platform_device_count")]
    env = dict(os.environ, **extra)
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
        env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = " ".join(flags)
    return env
