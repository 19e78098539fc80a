"""A straightforward dense reference: stores every updated weight matrix, gradients by ``jax.grad``.

This is what a user would write without nfd. It is the independent reference the tests
compare :func:`nfd.simulate` with, and the baseline of ``benchmarks/finite_resnet.py``.
It draws its initial weights from the same per-layer keys as the simulator
(:func:`~nfd.finite._simulate.init_params`), so both describe the same networks.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._losses import loss_value
from .._model import ResNet
from .._validate import seed_key
from ._simulate import _families, _keys, _layer_key

__all__ = ["simulate_dense"]


@jax.custom_vjp
def _decoupled_matvec(W, Wt, u):
    return u @ W.T


def _dm_fwd(W, Wt, u):
    return u @ W.T, (Wt, u)


def _dm_bwd(res, ct):
    Wt, u = res
    # gradient for W as usual; the input cotangent goes through the independent copy W̃ᵀ
    return ct.T @ u, jnp.zeros_like(Wt), ct @ Wt


_decoupled_matvec.defvjp(_dm_fwd, _dm_bwd)


def _forward(net: ResNet, params, x, eh, decoupled):
    """Dense forward pass. x: (B, d); eh: (L+1, B, n) zero perturbations of h_ℓ (for ∂f/∂h_ℓ).

    Returns f (B,), and diagnostics (h (L+1,B,n), fx (L,B), fdh (L,B)).
    """
    U, v, W, Wt, W0 = params["U"], params["v"], params["W"], params["Wt"], params["W0"]
    n, d = net.width, net.input_dim
    phi = net.activation.fn
    b, tau, sqn = net.branch, net.tau, math.sqrt(n)

    def mv(f, l, u):
        if decoupled:
            return _decoupled_matvec(W[f, l], Wt[f, l], u)
        return u @ W[f, l].T

    z0 = x @ U.T / math.sqrt(d)
    h = (phi(z0) if net.block == "post" else z0) + eh[0]
    hs, fxs, fdhs = [h], [], []
    rms = lambda a: jnp.sqrt(jnp.mean(a**2, axis=-1))
    for l in range(net.depth):
        if net.block == "pre":
            y = mv(0, l, phi(h))
            hn = h + (b / sqn) * y
            fx = jnp.zeros(h.shape[0], h.dtype)
            fdh = rms((b / (sqn * tau)) * (y - phi(h) @ W0[0, l].T))
        elif net.block == "post":
            y = mv(0, l, h)
            hn = h + b * phi(y / sqn)
            y0 = h @ W0[0, l].T
            fx = rms((y - y0) / sqn)
            fdh = rms((b / tau) * (phi(y / sqn) - phi(y0 / sqn)))
        elif net.block == "post_ms":
            ms = lambda a: a - jnp.mean(a, axis=-1, keepdims=True)
            y = mv(0, l, h)
            hn = h + b * ms(phi(y / sqn))
            y0 = h @ W0[0, l].T
            fx = rms((y - y0) / sqn)
            fdh = rms((b / tau) * ms(phi(y / sqn) - phi(y0 / sqn)))
        else:
            xl = mv(0, l, h) / sqn
            y2 = mv(1, l, phi(xl))
            hn = h + (b / sqn) * y2
            fx = rms(xl - h @ W0[0, l].T / sqn)
            fdh = rms((b / (sqn * tau)) * (y2 - phi(xl) @ W0[1, l].T))
        h = hn + eh[l + 1]
        hs.append(h)
        fxs.append(fx)
        fdhs.append(fdh)
    f = net.output_scale() * (h @ v)
    return f, (jnp.stack(hs), jnp.stack(fxs), jnp.stack(fdhs))


def simulate_dense(net: ResNet, X, Y, *, backward="coupled", seeds=1, seed=0, batch_size=1, dtype=jnp.float64):
    """Train ``seeds`` dense networks by SGD with ``jax.grad``; same keys as :func:`nfd.simulate`.

    Returns a dict of numpy arrays: ``outputs``, ``losses`` (seeds, K); ``features``, ``grads``
    (seeds, K, L+1, n); ``frozen_x``, ``frozen_dh`` (seeds, K, L).
    Memory is O(L·n²) per seed: this is the baseline that nfd's simulator avoids.
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    K, B = X.shape[0], batch_size
    steps = K // B
    run = _compiled_dense(net, backward, B, jnp.dtype(dtype))
    Xs = jnp.asarray(X.reshape(steps, B, -1), dtype)
    Ys = jnp.asarray(Y.reshape(steps, B), dtype)
    base = seed_key(seed)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))
    outs = jax.tree_util.tree_map(np.asarray, run(keys, Xs, Ys))
    r = lambda a: a.reshape((seeds, K) + a.shape[3:])
    return {
        "outputs": r(outs["f"]),
        "losses": r(outs["loss"]),
        "features": r(outs["h"]),
        "grads": r(outs["g"]),
        "frozen_x": r(outs["fx"]),
        "frozen_dh": r(outs["fdh"]),
    }


@functools.lru_cache(maxsize=32)
def _compiled_dense(net, backward, B, dtype):
    n, L, F = net.width, net.depth, _families(net.block)
    decoupled = backward == "decoupled"
    lrs = jnp.asarray([net.lr_hidden] if F == 1 else [net.lr_hidden_first, net.lr_hidden], dtype)

    def one_seed(seed_key, Xs, Ys):
        k_u, k_v, k_w, k_wt = _keys(seed_key)
        gen = lambda kk: jnp.stack(
            [jnp.stack([jax.random.normal(_layer_key(kk, f, l), (n, n), dtype) for l in range(L)]) for f in range(F)]
        )
        W0 = gen(k_w)
        params = {
            "U": jax.random.normal(k_u, (n, net.input_dim), dtype),
            "v": jax.random.normal(k_v, (n,), dtype),
            "W": W0,
            "Wt": gen(k_wt) if decoupled else W0,
            "W0": W0,
        }

        def step(params, xs):
            x, y = xs
            eh = jnp.zeros((L + 1, B, n), dtype)

            def batch_loss(p, eh):
                f, aux = _forward(net, p, x, eh, decoupled)
                return jnp.mean(loss_value(net.loss, f, y)), (f, aux)

            (lval, (f, (hs, fx, fdh))), (gp, geh) = jax.value_and_grad(batch_loss, argnums=(0, 1), has_aux=True)(
                params, eh
            )
            # g_ℓ = (√n/α) ∂f/∂h_ℓ; ∂(mean loss)/∂h = ℓ'(f)/B ∂f/∂h, so divide ℓ' back out.
            lp = jax.grad(lambda ff: jnp.sum(loss_value(net.loss, ff, y)))(f)
            g = geh * B / (lp[None, :, None] * net.output_scale())
            new = dict(params)
            new["U"] = params["U"] - net.lr_input * gp["U"]
            new["v"] = params["v"] - net.lr_output * gp["v"]
            dW = lrs[:, None, None, None] * gp["W"]
            if decoupled:
                dW = dW + lrs[:, None, None, None] * gp["Wt"]  # zero: Wt gets no gradient of its own
            new["W"] = params["W"] - dW
            new["Wt"] = params["Wt"] - dW if decoupled else new["W"]
            out = {
                "f": f,
                "loss": loss_value(net.loss, f, y),
                "h": hs.swapaxes(0, 1),
                "g": g.swapaxes(0, 1),
                "fx": fx.T,
                "fdh": fdh.T,
            }
            return new, out

        _, outs = jax.lax.scan(step, params, (Xs, Ys))
        return outs

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))
