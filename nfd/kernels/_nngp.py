"""The infinite-depth NNGP kernel of a √(T/L)-branch ResNet (NFD paper, Proposition 3).

For inputs x, x̄ the kernel-regime (α = 1) ResNet converges, as n → ∞ and L → ∞, to a
Gaussian process with covariance C_T(x, x̄) = E[h_T h̄_T], where (h_t, h̄_t) is the centred
Gaussian pair driven by the limiting SDE dh_t = √(E φ(h_t)²) dw_t.  Over a data set the Gram
matrix solves the matrix ODE

    dC/dt = E[φ(h) φ(h̄)],  (h, h̄) ~ N(0, [[C_xx, C_xx̄], [C_xx̄, C_x̄x̄]]),   C_0 = X X2ᵀ / d,

entrywise (each entry only needs its two diagonal entries).  At finite depth L and infinite
width the same network has the exact layer recursion (the forward explicit-Euler scheme of the
ODE with step τ = T/L),

    C_ℓ = C_{ℓ-1} + τ E[φ(h)φ(h̄)]|_{C_{ℓ-1}},   ℓ = 1..L,

which converges to C_T at rate O(1/L).
"""

from __future__ import annotations

import functools

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._divergence import Divergence, report
from .._errors import DivergenceError
from .._validate import check_bytes, check_float, check_int
from ._common import (
    check_activation,
    check_depth,
    check_inputs,
    check_T,
    default_tols,
    diag_pair,
    memory_guard,
    pair,
)

__all__ = ["nngp_kernel", "nngp_kernel_path"]


def _rhs(act, state):
    d1, d2, C = state
    return (diag_pair(act, d1), diag_pair(act, d2), pair(act, d1[:, None], d2[None, :], C))


def _initial(X, X2):
    d = X.shape[1]
    return (jnp.sum(X * X, axis=1) / d, jnp.sum(X2 * X2, axis=1) / d, X @ X2.T / d)


def _blown_up(t, y, args, **kwargs):
    # |C| beyond √(largest float): E[φφ] of a superlinear φ overflows next; stop here instead of
    # grinding the step size down to max_steps
    big = jnp.sqrt(jnp.finfo(y[2].dtype).max)
    return jnp.logical_not(jnp.all(jnp.isfinite(y[2])) & (jnp.max(jnp.abs(y[2])) < big))


@functools.partial(jax.jit, static_argnames=("act", "max_steps"))
def _solve_ode(X, X2, ts, T, rtol, atol, *, act, max_steps):
    """(C at ``ts``, steps taken, success flag, time reached); never raises inside the program:
    a blow-up (event) or running out of steps is reported by the flag and handled eagerly."""
    term = diffrax.ODETerm(lambda t, y, args: _rhs(act, y))
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        t0=jnp.zeros((), X.dtype),
        t1=T,
        dt0=None,
        y0=_initial(X, X2),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(ts=ts, t1=True),
        max_steps=max_steps,
        event=diffrax.Event(_blown_up),
        throw=False,
    )
    ok = sol.result == diffrax.RESULTS.successful
    return sol.ys[2][:-1], sol.stats["num_steps"], ok, sol.ts[-1]


def _ode_failed(what, ok, steps, t_end, T, max_steps):
    """Raise :class:`~nfd.DivergenceError` for a solve that did not reach ``T``."""
    if bool(ok):
        return
    steps, t_end = int(steps), float(t_end)
    if steps >= max_steps:
        raise DivergenceError(
            f"{what}: the L → ∞ kernel ODE did not reach T={T:g} within max_steps={max_steps} adaptive steps "
            "(the step size shrank towards a singularity); the kernel blows up in finite time (the activation grows too fast for "
            "this T), or raise max_steps / loosen rtol", step=steps, quantity="NNGP kernel")
    raise DivergenceError(
        f"{what}: the kernel left the floating-point range at t={t_end:.4g} < T={T:g} after {steps} adaptive "
        "steps (the activation grows too fast for this T: the kernel ODE blows up in finite time)",
        step=steps, quantity="NNGP kernel")


@functools.partial(jax.jit, static_argnames=("act",))
def _solve_layers(X, X2, T, depth, *, act):
    # depth is traced (a while-loop bound), so every depth shares one compilation.
    tau = T / depth

    def body(_, s):
        return jax.tree_util.tree_map(lambda y, dy: y + tau * dy, s, _rhs(act, s))

    return jax.lax.fori_loop(0, depth, body, _initial(X, X2))[2]


def _check_tols(rtol, atol, max_steps):
    rtol = check_float("rtol", rtol, sign="positive", none_ok=True)
    atol = check_float("atol", atol, sign="non-negative", none_ok=True)
    max_steps = check_int("max_steps", max_steps, min=1)
    return rtol, atol, max_steps


def _finish(C, what):
    C = np.asarray(C)
    if not np.all(np.isfinite(C)):
        report(Divergence(step=None), what=what, quantity="NNGP kernel",
               hint="the activation grows too fast for this T")
    return C


def nngp_kernel(
    X,
    X2=None,
    *,
    activation,
    T: float = 1.0,
    depth: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 16384,
    max_memory: int | None = None,
) -> np.ndarray:
    """NNGP kernel C_T(X, X2) of the infinite-width ResNet with √(T/L) branch multiplier.

    Args:
        X: (N, d) inputs.
        X2: (N2, d) second set of inputs; ``None`` means X2 = X (then the result is symmetric).
        activation: name or :class:`~nfd.Activation` (closed forms for identity/relu/erf/abs,
            Gauss–Hermite quadrature otherwise).
        T: time horizon (C_0 = X X2ᵀ/d at t = 0).
        depth: ``None`` solves the L → ∞ matrix ODE dC/dt = E[φ(h)φ(h̄)] with diffrax (Tsit5,
            adaptive steps); an integer L runs the exact infinite-width recursion of the
            depth-L network C_ℓ = C_{ℓ-1} + (T/L) E[φφ].
        rtol, atol: tolerances of the adaptive solve (default 1e-9/1e-11 in float64,
            1e-5/1e-7 in float32).
        max_steps: most ODE steps before diffrax gives up.
        max_memory: byte limit for the estimated working memory.

    Returns:
        (N, N2) numpy array, float64 when x64 is on and X is float64, float32 otherwise.

    Raises:
        nfd.DivergenceError: the kernel blows up before ``T`` (its ``step`` is the number of ODE
            steps or, with ``depth``, layers taken), instead of a result with inf/NaN.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.eye(3)
        >>> C = nfd.nngp_kernel(X, activation="identity", T=1.0)  # e^T X Xᵀ / d
        >>> bool(np.allclose(C, np.e * np.eye(3) / 3, rtol=1e-4))
        True
    """
    act = check_activation(activation)
    Tf = check_T(T)
    depth = check_depth(depth)
    rtol, atol, max_steps = _check_tols(rtol, atol, max_steps)
    max_memory = check_bytes("max_memory", max_memory)
    X, X2_ = check_inputs(X, X2)
    sym = X2_ is None
    X2_ = X if sym else X2_
    memory_guard(X.shape[0], X2_.shape[0], 1, X.dtype, what="nngp_kernel", max_memory=max_memory)
    T_arr = jnp.asarray(Tf, X.dtype)
    if depth is None:
        r0, a0 = default_tols(X.dtype)
        rtol = r0 if rtol is None else rtol
        atol = a0 if atol is None else atol
        C, steps, ok, t_end = _solve_ode(X, X2_, T_arr[None], T_arr, rtol, atol, act=act, max_steps=max_steps)
        _ode_failed("nngp_kernel", ok, steps, t_end, Tf, max_steps)
        C = C[0]
    else:
        C = _solve_layers(X, X2_, T_arr, jnp.asarray(depth, jnp.int32), act=act)
    C = _finish(C, "nngp_kernel")
    if sym:
        C = 0.5 * (C + C.T)
    return C


def nngp_kernel_path(
    X,
    X2=None,
    *,
    activation,
    ts,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 16384,
    max_memory: int | None = None,
) -> np.ndarray:
    """The L → ∞ NNGP kernel C_t(X, X2) at several times t (one ODE solve).

    Args:
        ts: increasing times t ≥ 0, shape (S,).
        (others as in :func:`nngp_kernel`)

    Returns:
        (S, N, N2) numpy array; ``[i]`` is C_{ts[i]}.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(5, 3))
        >>> Cs = nfd.kernels.nngp_kernel_path(X, activation="relu", ts=[0.0, 1.0, 2.0])
        >>> Cs.shape
        (3, 5, 5)
    """
    act = check_activation(activation)
    rtol, atol, max_steps = _check_tols(rtol, atol, max_steps)
    max_memory = check_bytes("max_memory", max_memory)
    X, X2_ = check_inputs(X, X2)
    sym = X2_ is None
    X2_ = X if sym else X2_
    ts_np = np.asarray(ts, dtype=np.float64)
    if ts_np.ndim != 1 or ts_np.size == 0 or not np.all(np.isfinite(ts_np)):
        raise ValueError(f"ts must be a non-empty 1-D array of finite times, got {ts!r}")
    if ts_np[0] < 0 or np.any(np.diff(ts_np) <= 0):
        raise ValueError("ts must be non-negative and strictly increasing")
    memory_guard(
        X.shape[0], X2_.shape[0], 1, X.dtype, what="nngp_kernel_path", max_memory=max_memory,
        extra=ts_np.size * X.shape[0] * X2_.shape[0] * jnp.dtype(X.dtype).itemsize,
    )
    T = float(ts_np[-1])
    if T == 0.0:
        Xd = np.asarray(X, np.float64)
        X2d = np.asarray(X2_, np.float64)
        return np.broadcast_to(Xd @ X2d.T / X.shape[1], (1,) + (X.shape[0], X2_.shape[0])).copy()
    r0, a0 = default_tols(X.dtype)
    rtol = r0 if rtol is None else rtol
    atol = a0 if atol is None else atol
    Cs, steps, ok, t_end = _solve_ode(
        X, X2_, jnp.asarray(ts_np, X.dtype), jnp.asarray(T, X.dtype), rtol, atol, act=act,
        max_steps=max_steps,
    )
    _ode_failed("nngp_kernel_path", ok, steps, t_end, T, max_steps)
    Cs = _finish(Cs, "nngp_kernel_path")
    if sym:
        Cs = 0.5 * (Cs + np.swapaxes(Cs, 1, 2))
    return Cs
