"""Gaussian draws that compile faster on CPU and give the same numbers as ``jax.random.normal``.

``jax.random.normal(key, shape)`` numbers its draws by their flat (row-major) index: both of
JAX's threefry modes (``jax_threefry_partitionable`` on, the default, and off) hash the counter
0..prod(shape)-1 and reshape.  So ``normal(key, (prod(shape),)).reshape(shape)`` is the same
array, bit for bit, while XLA's CPU backend compiles the rank-1 generator several times faster
than a rank-3 or rank-4 one (the threefry rounds are one elementwise loop fusion whose LLVM
compile time grows with the rank of its index space, more so under ``vmap``, which adds an axis).
Measured in benchmarks/compile_time.py.

Other generators (``jax_default_prng_impl`` = "rbg", "unsafe_rbg", or typed keys of another
implementation) are not documented to number their draws this way: for them :func:`normal` is
``jax.random.normal`` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["normal", "flat_draws"]


def flat_draws(key) -> bool:
    """Whether draws from ``key`` are numbered by flat index (threefry): then a flat draw reshaped
    equals the shaped draw."""
    dt = getattr(key, "dtype", None)
    if dt is not None and jnp.issubdtype(dt, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)).endswith("threefry2x32")
    return str(jax.config.jax_default_prng_impl) == "threefry2x32"


def normal(key, shape, dtype=jnp.float32):
    """``jax.random.normal(key, shape, dtype)``, the same numbers, drawn flat and reshaped when
    the generator numbers its draws by flat index (see the module docstring)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) <= 1 or not flat_draws(key):
        return jax.random.normal(key, shape, dtype)
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)
