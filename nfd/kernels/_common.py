"""Shared helpers of the kernel family: input validation and Gaussian pair expectations
evaluated in memory-bounded chunks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .._activations import Activation, get_activation
from .._memory import check_memory
from .._validate import check_array, check_fits, check_positive_float

__all__ = ["check_inputs", "check_T", "check_depth", "pair", "dpair", "default_tols"]

# Quadrature evaluates order² nodes per kernel entry; keep one chunk under this many numbers.
_QUAD_CHUNK_ELEMENTS = 2**24


def check_inputs(X, X2=None, *, name="X", name2="X2"):
    """Validate X (N, d) and optional X2 (N2, d); return jnp arrays in the default float dtype."""
    out = []
    for nm, A in ((name, X), (name2, X2)):
        if A is None:
            out.append(None)
            continue
        arr = np.asarray(check_array(nm, A, shape_doc="(N, d)", allow_empty=True, finite=False),
                         dtype=np.asarray(A).dtype if np.asarray(A).dtype.kind == "f" else np.float64)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{nm} must have shape (N, d) with N, d ≥ 1, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{nm} contains NaN or infinite values")
        out.append(arr)
    if out[1] is not None and out[1].shape[1] != out[0].shape[1]:
        raise ValueError(f"{name2} has d={out[1].shape[1]} columns but {name} has d={out[0].shape[1]}")
    dtype = jnp.float64 if jax.config.jax_enable_x64 and any(
        a is not None and a.dtype == np.float64 for a in out
    ) else jnp.float32
    for nm, a in ((name, out[0]), (name2, out[1])):
        if a is not None:
            check_fits(nm, a, dtype)
    return tuple(None if a is None else jnp.asarray(a, dtype) for a in out)


def check_T(T, name="T"):
    return check_positive_float(name, T)


def check_depth(depth):
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth <= 0:
        raise ValueError(f"depth must be None (the L → ∞ ODE) or a positive integer, got {depth!r}")
    return int(depth)


def check_activation(activation) -> Activation:
    return get_activation(activation)


def default_tols(dtype):
    """(rtol, atol) of the adaptive ODE solve: tight in float64, what float32 can resolve otherwise."""
    if jnp.dtype(dtype) == jnp.float64:
        return 1e-9, 1e-11
    return 1e-5, 1e-7


def _chunked(fn, a, b, c, order):
    """fn(a, b, c) elementwise over (N, N2) with a (N,1), b (1,N2), bounded quadrature memory."""
    N, N2 = c.shape
    rows = max(1, min(N, _QUAD_CHUNK_ELEMENTS // max(1, N2 * order * order)))
    n_chunks = -(-N // rows)
    pad = n_chunks * rows - N
    a_p = jnp.pad(a[:, 0], (0, pad), constant_values=1.0).reshape(n_chunks, rows, 1)
    c_p = jnp.pad(c, ((0, pad), (0, 0))).reshape(n_chunks, rows, N2)
    out = jax.lax.map(lambda ac: fn(ac[0], b, ac[1]), (a_p, c_p))
    return out.reshape(n_chunks * rows, N2)[:N]


def pair(act: Activation, a, b, c):
    """E[φ(u)φ(v)], (u, v) ~ N(0, [[a, c], [c, b]]), for a (N,1), b (1,N2), c (N,N2)."""
    if act.pair_closed_form is not None:
        return act.expect_pair(a, b, c)
    return _chunked(lambda x, y, z: act.expect_pair(x, y, z), a, b, c, act.quadrature_order)


def dpair(act: Activation, a, b, c):
    """E[φ'(u)φ'(v)] with the same conventions as :func:`pair`."""
    if act.dpair_closed_form is not None:
        return act.expect_dpair(a, b, c)
    return _chunked(lambda x, y, z: act.expect_dpair(x, y, z), a, b, c, act.quadrature_order)


def diag_pair(act: Activation, q):
    """E[φ(h)²] for h ~ N(0, q), q of shape (N,) (1-D quadrature when there is no closed form)."""
    if act.pair_closed_form is not None:
        return act.expect_pair(q, q, q)
    return _diag_quad(act, q, False)


def diag_dpair(act: Activation, q):
    """E[φ'(h)²] for h ~ N(0, q), q of shape (N,)."""
    if act.dpair_closed_form is not None:
        return act.expect_dpair(q, q, q)
    return _diag_quad(act, q, True)


def _diag_quad(act, q, deriv):
    # One-dimensional Gauss–Hermite for E[φ(h)²] (cheaper than the 2-D rule on the diagonal).
    x, w = np.polynomial.hermite_e.hermegauss(max(act.quadrature_order, 64))
    x = jnp.asarray(x, q.dtype)
    w = jnp.asarray(w / math.sqrt(2 * math.pi), q.dtype)
    f = act.deriv if deriv else act.fn
    vals = f(jnp.sqrt(jnp.maximum(q, 0.0))[:, None] * x[None, :]) ** 2
    return vals @ w


def estimate_state_bytes(N, N2, n_arrays, dtype, copies=12):
    """Bytes of an ODE state with n_arrays (N, N2) blocks (stages, error estimate, saves ≈ copies)."""
    return int(n_arrays * N * N2 * jnp.dtype(dtype).itemsize * copies)


def memory_guard(N, N2, n_arrays, dtype, *, what, max_memory=None, extra=0):
    est = estimate_state_bytes(N, N2, n_arrays, dtype) + int(extra)
    check_memory(est, what=what, hint=f"N={N}, N2={N2}", limit_bytes=max_memory)
