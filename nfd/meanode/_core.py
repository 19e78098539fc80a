"""The compiled core shared by the finite hidden-width ResNet and the Neural Mean ODE solver.

K full-batch GD steps of the depth-L discretised network

    h ← h + (α/L)·mean_p φ(h, z_p),        z_p = (u_p, v_p) the units of a layer,

so P = M units per layer is the finite ResNet (Eq. 1) and P particles shared over layers is the
Euler scheme of the Mean ODE (Eq. 10): :func:`nfd.meanode.simulate_resnet` and
:func:`nfd.meanode.solve_mean_ode` both run these functions, so they cannot drift apart.  GD uses
the L²-geometry rates: Euclidean gradient × (L·P) × η/α² (Eq. 5, 11).  ``lazy=True`` is the
Neural Tangent ODE (Eq. 18–21): parameters ζ = (ζ_u, ζ_v) start at 0, the block is
h ← h + (1/L)·mean_p D₂φ(h, z_p)·ζ_p and GD is ζ ← ζ − (L·P)·η·∇_ζ.

Every function is a module-level function of a frozen :class:`CoreStatic` (what fixes the
compiled program) and arrays; :func:`jitted` caches the compiled programs per static description.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._model import MeanODEResNet

__all__ = ["CoreStatic", "run", "init", "advance", "jitted", "hyper_array", "train_bytes"]


@dataclasses.dataclass(frozen=True)
class CoreStatic:
    """What fixes the compiled core: the unit, the activation, the depth grid L, the number K of
    GD steps, the GD steps whose forward pass is recorded, and the lazy (tangent) regime.  α and
    the rates are traced arguments (:func:`hyper_array`)."""

    unit: Any
    activation: Any
    L: int
    steps: int
    forward_steps: tuple
    lazy: bool = False


def train_bytes(*, L, P, n, D, p, steps, n_forward, dtype, devices: int = 1) -> int:
    """Rough peak memory of one seed of the core in bytes (on each of ``devices`` devices when the
    P particles are split over them; the states and records are replicated)."""
    item = jnp.dtype(dtype).itemsize
    Pd = -(-P // devices)
    params = 6 * L * Pd * p  # Z0, Z, grad, update temporaries
    acts = 4 * L * n * (D + Pd)  # saved forward states and pre-activations for reverse mode
    record = (steps + 1) * n * D + n_forward * (L + 1) * n * D
    return int(item * (params + acts + record))


def hyper_array(net: MeanODEResNet, dtype):
    """(α, η_u, η_v) as a traced argument, so one compilation serves every value."""
    return jnp.asarray([net.alpha, net.lr_u, net.lr_v], dtype)


def _forward(st: CoreStatic, params, X, U0, V0, alpha):
    """(L+1, n, D): the forward pass of every layer."""
    rho = st.activation.fn

    def layer(h, layer_params):
        if st.lazy:
            zu, zv, u0, v0 = layer_params
            _, inc = jax.jvp(lambda uu, vv: st.unit.block_mean(h, uu, vv, rho), (u0, v0), (zu, zv))
        else:
            u, v = layer_params
            inc = alpha * st.unit.block_mean(h, u, v, rho)
        h = h + inc / st.L
        return h, h

    xs = (params[0], params[1], U0, V0) if st.lazy else params
    _, hs = jax.lax.scan(layer, X, xs)
    return jnp.concatenate([X[None], hs], axis=0)


def _loss(st: CoreStatic, params, X, Y, U0, V0, alpha):
    hs = _forward(st, params, X, U0, V0, alpha)
    r = hs[-1] - Y
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1)) / X.shape[-1], hs


def _rates(st: CoreStatic, U0, hyper):
    alpha, lr_u, lr_v = hyper[0], hyper[1], hyper[2]
    P = U0.shape[1]
    scale = st.L * P * (1.0 if st.lazy else 1.0 / alpha**2)
    return alpha, scale * lr_u, scale * lr_v


def _start(st: CoreStatic, U0, V0, X):
    params0 = (jnp.zeros_like(U0), jnp.zeros_like(V0)) if st.lazy else (U0, V0)
    buf0 = jnp.zeros((len(st.forward_steps), st.L + 1) + X.shape, X.dtype)
    return params0, buf0


def _step(st: CoreStatic, params, buf, k, U0, V0, X, Y, alpha, ru, rv):
    """GD step k: records the outputs of Z_k, then (for k < K) updates Z_k → Z_{k+1}."""
    (loss, hs), (gu, gv) = jax.value_and_grad(functools.partial(_loss, st), has_aux=True)(params, X, Y, U0, V0,
                                                                                           alpha)
    du = params[0] - (0.0 if st.lazy else U0)
    dv = params[1] - (0.0 if st.lazy else V0)
    disp_u = jnp.sqrt(jnp.mean(du * du)) if du.size else jnp.zeros((), X.dtype)
    disp_v = jnp.sqrt(jnp.mean(dv * dv)) if dv.size else jnp.zeros((), X.dtype)
    hit = jnp.asarray(st.forward_steps, dtype=jnp.int32) == k
    idx = jnp.argmax(hit)
    buf = jax.lax.dynamic_update_index_in_dim(buf, jnp.where(hit.any(), hs, buf[idx]), idx, 0)
    go = k < st.steps  # the last iteration only records Z_K
    params = (params[0] - jnp.where(go, ru, 0.0) * gu, params[1] - jnp.where(go, rv, 0.0) * gv)
    return params, buf, (hs[-1], loss, disp_u, disp_v)


def run(st: CoreStatic, U0, V0, X, Y, hyper) -> dict:
    """K + 1 iterations as one scan (differentiable).  U0 (L, P, p_u), V0 (L, P, p_v): the units
    of each layer.  Returns outputs (K+1, n, D), losses, u/v displacements (K+1,), the recorded
    forward passes (S, L+1, n, D) and the final parameters."""
    alpha, ru, rv = _rates(st, U0, hyper)

    def body(carry, k):
        params, buf, out = _step(st, *carry, k, U0, V0, X, Y, alpha, ru, rv)
        return (params, buf), out

    (params, buf), (outs, losses, du, dv) = jax.lax.scan(body, _start(st, U0, V0, X), jnp.arange(st.steps + 1))
    return dict(outputs=outs, losses=losses, u_displacement=du, v_displacement=dv, forward=buf,
                final_u=params[0], final_v=params[1])


def init(st: CoreStatic, U0, V0, X):
    """The carry before iteration 0: (params, forward buffer, per-iteration outputs (K+1, …))."""
    params0, buf0 = _start(st, U0, V0, X)
    K1 = st.steps + 1
    outs0 = dict(outputs=jnp.zeros((K1,) + X.shape, X.dtype), losses=jnp.zeros((K1,), X.dtype),
                 u_displacement=jnp.zeros((K1,), X.dtype), v_displacement=jnp.zeros((K1,), X.dtype))
    return params0, buf0, outs0


def advance(st: CoreStatic, carry, k0, k1, U0, V0, X, Y, hyper):
    """Iterations k0..k1-1 (of 0..K) from ``carry``; the bounds are traced, so one program serves
    every split of the run (checkpoint and resume are bit-identical)."""
    alpha, ru, rv = _rates(st, U0, hyper)

    def body(k, carry):
        params, buf, outs = carry
        params, buf, out = _step(st, params, buf, k, U0, V0, X, Y, alpha, ru, rv)
        outs = {name: jax.lax.dynamic_update_index_in_dim(outs[name], o.astype(outs[name].dtype), k, 0)
                for name, o in zip(("outputs", "losses", "u_displacement", "v_displacement"), out)}
        return params, buf, outs

    return jax.lax.fori_loop(k0, k1, body, carry)


@functools.lru_cache(maxsize=64)
def jitted_run(st: CoreStatic, batched: bool):
    """jit-compiled :func:`run` (vmapped over a leading seed axis if ``batched``)."""
    fn = functools.partial(run, st)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None, None)) if batched else fn)


@functools.lru_cache(maxsize=64)
def jitted(st: CoreStatic):
    """jit-compiled ``(init(U0, V0, X) -> carry, advance(carry, k0, k1, U0, V0, X, Y, hyper) -> carry)``
    (one replicate; ``advance`` donates its carry): the run in pieces, with traced loop bounds."""
    return jax.jit(functools.partial(init, st)), jax.jit(functools.partial(advance, st), donate_argnums=(0,))


def static_of(net: MeanODEResNet, L: int, steps: int, forward_steps, lazy: bool) -> CoreStatic:
    return CoreStatic(unit=net.unit, activation=net.activation, L=int(L), steps=int(steps),
                      forward_steps=tuple(forward_steps), lazy=bool(lazy))
