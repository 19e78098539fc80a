"""Finite residual networks trained by SGD, simulated exactly and memory-efficiently.

A hidden weight matrix after k SGD steps is its initial value plus a sum of rank-one terms,

    W_ℓ^(k) = W_ℓ^(0) + Σ_{i<k} P_ℓ[i] Q_ℓ[i]ᵀ,

where Q_ℓ[i] is the matrix's input and P_ℓ[i] = −η ℓ'_i ∂f/∂(W_ℓ u) its scaled output
gradient at step i.  We store P, Q (O(K·L·n) numbers) instead of dense matrices, and
W_ℓ^(0) is either stored (``weights="dense"``) or regenerated from a counter-based key
per layer whenever it is needed (``weights="regenerate"``, O(L·n) memory for any depth).
Both give the same numbers, since W_ℓ^(0) is drawn from the same key.

The forward and backward passes are written by hand (tests compare them with ``jax.grad``).
``backward="decoupled"`` back-propagates through an independent copy W̃_ℓ that receives the
same increments P Q ᵀ (NFD paper, Corollary 1 and Figure 4).

The SGD loop is one compiled program whose step bounds are traced (``lax.fori_loop(s0, s1)``), so
running it in pieces (``chunk_steps``, ``progress``) or stopping after any step k, writing a
checkpoint (``checkpoint=``) and resuming later gives results bit-identical to one uninterrupted
run.  A checkpoint holds the filled part of P, Q, the current U, v and the outputs so far.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .._losses import loss_grad, loss_value
from .._memory import check_device_memory, format_bytes
from .._model import ResNet
from .._random import normal as _normal
from .. import _checkpoint, _driver
from .._divergence import check_policy, find
from .._results import Status, result
from .._sharding import check_divisible, make_mesh, place, resolve_devices, shard_along, to_host
from .._validate import (check_bool, check_bytes, check_choice, check_data, check_dtype, check_inputs_2d, check_seed,
                         check_seeds, check_test_inputs, seed_key)

__all__ = ["simulate", "simulate_network", "simulation_problem", "SimulationProblem", "SimulationResult",
           "init_params", "RECORDABLE"]

RECORDABLE = ("features", "grads", "frozen")


@result
class SimulationResult:
    """What :func:`simulate` returns.  Arrays are numpy, leading axis = seed (a JAX pytree whose
    leaves are the arrays; see :func:`nfd._results.result`).

    Attributes:
        outputs: (seeds, K) f^(k), the output on the k-th training sample before update k.
        losses: (seeds, K) ℓ(f^(k), y^(k)).
        test_outputs: (seeds, steps, N) outputs on ``X_test`` before each step, or ``None``.
        features: (seeds, K, L+1, n) h_ℓ^(k) if ``"features"`` was recorded, else ``None``.
        grads: (seeds, K, L+1, n) g_ℓ^(k) = (√n/α) ∂f/∂h_ℓ if ``"grads"`` was recorded.
        frozen_x: (seeds, K, L) ‖x_ℓ − x̃_ℓ‖/√n (Eq. 27: x̃ uses W_{ℓ,1}^(0)); two-layer blocks.
        frozen_dh: (seeds, K, L) ‖∂h_ℓ − ∂h̃_ℓ‖/√n (Eq. 33–34: ∂h̃ uses the initial last matrix
            of the block), for every block type.
        network: the :class:`ResNet` that was simulated.
        config: the remaining arguments (seed, seeds, backward, batch_size, dtype, weights).
        status: :class:`~nfd.Status`: the first non-finite step and seed index, or ``None``.
    """

    outputs: np.ndarray
    losses: np.ndarray
    test_outputs: np.ndarray | None
    features: np.ndarray | None
    grads: np.ndarray | None
    frozen_x: np.ndarray | None
    frozen_dh: np.ndarray | None
    network: ResNet
    config: dict
    status: Status = Status()

    @property
    def mean(self) -> np.ndarray:
        """(K,) mean output over seeds."""
        return self.outputs.mean(axis=0)

    @property
    def stderr(self) -> np.ndarray:
        """(K,) standard error of the mean output over seeds (NaN for one seed)."""
        s = self.outputs.shape[0]
        if s < 2:
            return np.full(self.outputs.shape[1], np.nan)
        return self.outputs.std(axis=0, ddof=1) / math.sqrt(s)


def _ms(a):
    """Mean subtraction over the width (last) axis: MS(a) = a − mean(a) (TP VI §6.3)."""
    return a - jnp.mean(a, axis=-1, keepdims=True)


def _families(block: str) -> int:
    return 2 if block == "two_layer" else 1


def _keys(seed_key):
    k_u, k_v, k_w, k_wt = jax.random.split(seed_key, 4)
    return k_u, k_v, k_w, k_wt


def _layer_key(k_w, family, layer):
    return jax.random.fold_in(jax.random.fold_in(k_w, family), layer)


def init_params(net: ResNet, seed_key, dtype=jnp.float32):
    """Initial U (n, d), v (n,) and the dense hidden weights (F, L, n, n) of one network.

    The hidden matrices are drawn from per-layer keys exactly as the simulator regenerates
    them, so a dense reference built from these parameters is the same network.
    """
    n, d, L, F = net.width, net.input_dim, net.depth, _families(net.block)
    k_u, k_v, k_w, _ = _keys(seed_key)
    U = _normal(k_u, (n, d), dtype)
    v = _normal(k_v, (n,), dtype)
    W = jnp.stack(
        [jnp.stack([_normal(_layer_key(k_w, f, l), (n, n), dtype) for l in range(L)]) for f in range(F)]
    )
    return U, v, W


@dataclasses.dataclass(frozen=True)
class _SimStatic:
    """Everything that fixes a simulation's compiled program (the network without its lr, which
    enters as a traced rate, so a learning-rate sweep compiles once)."""

    net: ResNet
    backward: str
    batch: int
    steps: int
    n_test: int
    record: tuple
    dtype: Any
    dense: bool
    same_backward_key: bool = False


# ---- the compiled simulation: module-level functions of the frozen static description ------
# (one seed; :func:`_compiled_run` vmaps them over the seeds).  ``w`` = (W0, W̃0, k_w, k_w̃): the
# initial hidden weights, stored (``dense``) or regenerated per layer from their keys.


def _scales(st: _SimStatic):
    """(b, τ, √n, output scale α, √d) of the network."""
    net = st.net
    return net.branch, net.tau, math.sqrt(net.width), net.output_scale(), math.sqrt(net.input_dim)


def _keys_of(st: _SimStatic, seed_key):
    k_u, k_v, k_w, k_wt = _keys(seed_key)
    if st.same_backward_key:
        k_wt = k_w
    return k_u, k_v, k_w, k_wt


def _weights(st: _SimStatic, seed_key):
    """The part of the state drawn from the key: W^(0) (and W̃^(0) when decoupled) if ``dense``."""
    out = {}
    if st.dense:
        n, L, F = st.net.width, st.net.depth, _families(st.net.block)
        _, _, k_w, k_wt = _keys_of(st, seed_key)
        layers = jnp.arange(L)

        def gen(kk):
            return jnp.stack(
                [jax.vmap(lambda l: _normal(_layer_key(kk, f, l), (n, n), st.dtype))(layers) for f in range(F)]
            )

        out["W0"] = gen(k_w)
        if st.backward == "decoupled":
            out["Wt0"] = gen(k_wt)
    return out


def _init_keys(st: _SimStatic, seed_key):
    """The keys of one seed's initial draws: U, v and, if ``dense``, W^(0) (and W̃^(0)) per family
    and layer (F, L, 2): the keys :func:`_init` and :func:`_weights` draw from.  They do not depend
    on the width, so :func:`_compiled_keys` is one program for every width of a depth."""
    L, F = st.net.depth, _families(st.net.block)
    k_u, k_v, k_w, k_wt = _keys_of(st, seed_key)
    out = {"U": k_u, "v": k_v}
    if st.dense:
        layers = jnp.arange(L)

        def per_layer(kk):
            return jnp.stack([jax.vmap(lambda l: _layer_key(kk, f, l))(layers) for f in range(F)])

        out["W0"] = per_layer(k_w)
        if st.backward == "decoupled":
            out["Wt0"] = per_layer(k_wt)
    return out


@functools.lru_cache(maxsize=64)
def _compiled_keys(key_static):
    """The seed-vmapped :func:`_init_keys` of the width-free description ``key_static``."""
    return jax.jit(jax.vmap(functools.partial(_init_keys, key_static)))


def _draw_init(st: _SimStatic, keys):
    """U (S, n, d), v (S, n) and W^(0) (S, F, L, n, n) (and W̃^(0)) from the keys of
    :func:`_init_keys` (leading seed axis S): the numbers of ``jax.random.normal`` of each key, each
    drawn as one flat row of a two-dimensional draw (nfd/_random.py: the same numbers, and XLA's
    CPU backend compiles a rank-2 generator much faster than the rank-4 one of a vmap over seeds
    and layers)."""
    n, d, dtype = st.net.width, st.net.input_dim, st.dtype
    out = {"U": jax.vmap(lambda k: _normal(k, (n, d), dtype))(keys["U"]),
           "v": jax.vmap(lambda k: _normal(k, (n,), dtype))(keys["v"])}
    for name in ("W0", "Wt0"):
        if name in keys:
            kk = keys[name]  # (S, F, L, 2)
            flat = jax.vmap(lambda k: _normal(k, (n * n,), dtype))(kk.reshape(-1, kk.shape[-1]))
            out[name] = flat.reshape(kk.shape[:-1] + (n, n))
    return out


def _init_batched(st: _SimStatic, keys):
    """The carry of every seed before step 0 from the keys of :func:`_init_keys` (leading seed axis)."""
    state, buf = jax.vmap(functools.partial(_init, st, draws=False))(keys["U"])
    state.update(_draw_init(st, keys))
    return state, buf


def _init(st: _SimStatic, seed_key, draws: bool = True):
    """The carry (state, per-step output buffers) of one seed before step 0 (without U, v, W^(0)
    when ``draws`` is False: :func:`_init_batched` draws them)."""
    n, d, L, F = st.net.width, st.net.input_dim, st.net.depth, _families(st.net.block)
    steps, batch, dtype = st.steps, st.batch, st.dtype
    H = steps * batch
    state = {
        "P": jnp.zeros((F, L, H, n), dtype),
        "Q": jnp.zeros((F, L, H, n), dtype),
    }
    if draws:
        k_u, k_v, _, _ = _keys_of(st, seed_key)
        state.update(U=_normal(k_u, (n, d), dtype), v=_normal(k_v, (n,), dtype), **_weights(st, seed_key))
    buf = {"f": jnp.zeros((steps, batch), dtype), "loss": jnp.zeros((steps, batch), dtype)}
    if st.n_test:
        buf["ftest"] = jnp.zeros((steps, st.n_test), dtype)
    if "features" in st.record:
        buf["h"] = jnp.zeros((steps, batch, L + 1, n), dtype)
    if "grads" in st.record:
        buf["g"] = jnp.zeros((steps, batch, L + 1, n), dtype)
    if "frozen" in st.record:
        buf["fx"] = jnp.zeros((steps, batch, L), dtype)
        buf["fdh"] = jnp.zeros((steps, batch, L), dtype)
    return state, buf


def _w0(st: _SimStatic, w, f, l, fwd=True):
    W0, Wt0, k_w, k_wt = w
    if st.dense:
        return (W0 if fwd else Wt0)[f, l]
    n = st.net.width
    return _normal(_layer_key(k_w if fwd else k_wt, f, l), (n, n), st.dtype)


def _matvec(st: _SimStatic, w, f, l, Pl, Ql, u):
    """u: (B, n) -> W^(k) u for each row; returns (total, history part)."""
    hist = (u @ Ql[f].T) @ Pl[f]
    return u @ _w0(st, w, f, l).T + hist, hist


def _rmatvec(st: _SimStatic, w, f, l, Pl, Ql, g):
    Wb = _w0(st, w, f, l, fwd=st.backward != "decoupled")
    return g @ Wb + (g @ Pl[f].T) @ Ql[f]


def _block_forward(st: _SimStatic, w, h, l, Pl, Ql):
    """One residual block: (h_ℓ, x_ℓ, frozen-weight deviations fx, fdh)."""
    phi, block = st.net.activation.fn, st.net.block
    b, tau, sqn, _, _ = _scales(st)
    if block == "pre":
        u = phi(h)
        y, hist = _matvec(st, w, 0, l, Pl, Ql, u)
        hn = h + (b / sqn) * y
        xl = jnp.zeros_like(h)
        fdh = (b / (sqn * tau)) * hist
        fx = jnp.zeros_like(h)
    elif block == "post":
        y, hist = _matvec(st, w, 0, l, Pl, Ql, h)
        xl = y / sqn
        hn = h + b * phi(xl)
        fdh = (b / tau) * (phi(xl) - phi((y - hist) / sqn))
        fx = hist / sqn
    elif block == "post_ms":  # TP VI §6.3: h + b·MS(φ(W h/√n)), MS = mean subtraction
        y, hist = _matvec(st, w, 0, l, Pl, Ql, h)
        xl = y / sqn
        hn = h + b * _ms(phi(xl))
        fdh = (b / tau) * _ms(phi(xl) - phi((y - hist) / sqn))
        fx = hist / sqn
    else:
        y1, hist1 = _matvec(st, w, 0, l, Pl, Ql, h)
        xl = y1 / sqn
        y2, hist2 = _matvec(st, w, 1, l, Pl, Ql, phi(xl))
        hn = h + (b / sqn) * y2
        fx = hist1 / sqn
        fdh = (b / (sqn * tau)) * hist2
    return hn, xl, fx, fdh


def _forward(st: _SimStatic, w, U, P, Q, x):
    """x: (B, d).  Returns z_0, h_0, h_L (B, n) and the per-layer stash."""
    phi = st.net.activation.fn
    sqd = _scales(st)[4]
    z0 = x @ U.T / sqd
    h0 = phi(z0) if st.net.block == "post" else z0

    def layer(h, xs):
        l, Pl, Ql = xs
        hn, xl, fx, fdh = _block_forward(st, w, h, l, Pl, Ql)
        rms = lambda a: jnp.sqrt(jnp.mean(a**2, axis=-1))  # noqa: E731
        return hn, (h, xl, rms(fx), rms(fdh))

    layers = jnp.arange(st.net.depth)
    hL, (hprev, xls, fxs, fdhs) = jax.lax.scan(layer, h0, (layers, P.swapaxes(0, 1), Q.swapaxes(0, 1)))
    return z0, h0, hL, hprev, xls, fxs, fdhs


def _block_backward(st: _SimStatic, w, dh, l, Pl, Ql, h, xl):
    """One block backwards: (∂f/∂h_{ℓ-1}, the output gradients dys and inputs us of its matrices)."""
    phi, dphi, block = st.net.activation.fn, st.net.activation.deriv, st.net.block
    b, _, sqn, _, _ = _scales(st)
    if block == "pre":
        dy = (b / sqn) * dh
        u = phi(h)
        dhp = dh + dphi(h) * _rmatvec(st, w, 0, l, Pl, Ql, dy)
        dys, us = (dy,), (u,)
    elif block in ("post", "post_ms"):
        dy = (b / sqn) * dphi(xl) * (_ms(dh) if block == "post_ms" else dh)
        dhp = dh + _rmatvec(st, w, 0, l, Pl, Ql, dy)
        dys, us = (dy,), (h,)
    else:
        dy2 = (b / sqn) * dh
        dx = dphi(xl) * _rmatvec(st, w, 1, l, Pl, Ql, dy2)
        dy1 = dx / sqn
        dhp = dh + _rmatvec(st, w, 0, l, Pl, Ql, dy1)
        dys, us = (dy1, dy2), (h, phi(xl))
    return dhp, jnp.stack(dys), jnp.stack(us)


def _backward(st: _SimStatic, w, v, P, Q, z0, hL, hprev, xls):
    """The hand-written backward pass: (∂f/∂z_0, ∂f/∂h_0, ∂f/∂h_ℓ (L, B, n), dys (L, F, B, n), us)."""
    s_out = _scales(st)[3]
    dhL = jnp.broadcast_to(s_out * v, hL.shape)

    def layer(dh, xs):
        l, Pl, Ql, h, xl = xs
        dhp, dys, us = _block_backward(st, w, dh, l, Pl, Ql, h, xl)
        return dhp, (dh, dys, us)

    layers = jnp.arange(st.net.depth)
    dh0, (dhs, dys, us) = jax.lax.scan(layer, dhL, (layers, P.swapaxes(0, 1), Q.swapaxes(0, 1), hprev, xls),
                                       reverse=True)
    dz0 = st.net.activation.deriv(z0) * dh0 if st.net.block == "post" else dh0
    return dz0, dh0, dhs, dys, us  # dhs[l] = ∂f/∂h_{l+1}


def _step(st: _SimStatic, w, k, carry, Xs, Ys, Xt, rates):
    """SGD step k: returns ((U, v, P, Q), buffers) with this step's outputs recorded."""
    # rates = (η_input, η_output, η_family_0[, η_family_1]): traced, so a learning-rate sweep
    # reuses one compilation
    lr_in, lr_out, lrs = rates[0], rates[1], rates[2:]
    batch, dtype = st.batch, st.dtype
    s_out, sqd = _scales(st)[3], _scales(st)[4]
    (U, v, P, Q), buf = carry
    x, y = Xs[k], Ys[k]
    z0, h0, hL, hprev, xls, fxs, fdhs = _forward(st, w, U, P, Q, x)
    f = s_out * (hL @ v)
    lp = loss_grad(st.net.loss, f, y)
    lval = loss_value(st.net.loss, f, y)
    dz0, dh0, dhs, dys, us = _backward(st, w, v, P, Q, z0, hL, hprev, xls)
    c = (lp / batch).astype(dtype)  # (B,)
    U_new = U - lr_in * (c[:, None] * dz0).T @ x / sqd
    v_new = v - lr_out * s_out * (c @ hL)
    newP = -(lrs[None, :, None, None] * c[None, None, :, None]) * dys  # (L, F, B, n)
    P_new = jax.lax.dynamic_update_slice(P, newP.swapaxes(0, 1), (0, 0, k * batch, 0))
    Q_new = jax.lax.dynamic_update_slice(Q, us.swapaxes(0, 1), (0, 0, k * batch, 0))
    out = {"f": f, "loss": lval}
    if st.n_test:
        _, _, hLt, *_ = _forward(st, w, U, P, Q, Xt)  # weights before this step's update
        out["ftest"] = s_out * (hLt @ v)
    if "features" in st.record:
        out["h"] = jnp.concatenate([hprev, hL[None]], axis=0).swapaxes(0, 1)  # (B, L+1, n)
    if "grads" in st.record:
        g = jnp.concatenate([dh0[None], dhs], axis=0) / s_out
        out["g"] = g.swapaxes(0, 1)
    if "frozen" in st.record:
        out["fx"] = fxs.T  # (B, L)
        out["fdh"] = fdhs.T
    buf = {name: jax.lax.dynamic_update_index_in_dim(buf[name], out[name].astype(dtype), k, 0) for name in buf}
    return (U_new, v_new, P_new, Q_new), buf


def _advance(st: _SimStatic, carry, s0, s1, seed_key, Xs, Ys, Xt, rates):
    """SGD steps s0..s1-1 on Xs (steps, B, d), Ys (steps, B) from ``carry``, with a ``fori_loop``
    whose bounds are traced: one compiled program serves every split of the run, so any split
    (e.g. a checkpoint after step k, then a resume) gives bit-identical results."""
    _, _, k_w, k_wt = _keys_of(st, seed_key)
    state, buf = carry
    W0 = state.get("W0")
    w = (W0, state.get("Wt0", W0), k_w, k_wt)
    loop = ((state["U"], state["v"], state["P"], state["Q"]), buf)
    (U, v, P, Q), buf = jax.lax.fori_loop(s0, s1, lambda k, c: _step(st, w, k, c, Xs, Ys, Xt, rates), loop)
    return dict(state, U=U, v=v, P=P, Q=Q), buf


@functools.lru_cache(maxsize=64)
def _compiled_run(st: _SimStatic):
    """Jitted, seed-vmapped (init, weights, advance, advance_donating) per problem description
    (repeat calls reuse them).  ``advance(carry, s0, s1, keys, Xs, Ys, Xt, rates)``; the last one
    donates its carry."""
    adv = jax.vmap(functools.partial(_advance, st), in_axes=(0, None, None, 0, None, None, None, None))
    # init: the keys (one program per depth, shared by every width), then the draws and zeros
    keys = _compiled_keys(dataclasses.replace(st, net=st.net.replace(width=None), steps=0, batch=0, n_test=0,
                                              record=(), dtype=jnp.float32))
    init_rest = jax.jit(functools.partial(_init_batched, st))

    def init(seed_keys):
        return init_rest(keys(seed_keys))

    return (init, jax.jit(jax.vmap(functools.partial(_weights, st))), jax.jit(adv), jax.jit(adv, donate_argnums=(0,)))


def estimate_memory(net: ResNet, *, steps, batch, seeds, n_test, record, dtype, dense, backward) -> int:
    """Bytes a simulation needs (history, initial weights, stash, recorded arrays)."""
    n, L, F = net.width, net.depth, _families(net.block)
    item = jnp.dtype(dtype).itemsize
    H = steps * batch
    per_seed = 2 * F * L * H * n  # P, Q
    per_seed += 4 * L * batch * n + 2 * F * L * batch * n  # stash and backward outputs
    if dense:
        per_seed += F * L * n * n * (2 if backward == "decoupled" else 1)
    else:
        # regenerated matrices in flight: random bits, normals, forward and backward copies; measured
        # 549 MiB above the runtime at width 4096 x depth 256 (benchmarks/results/finite_resnet.json)
        # against 210 MiB of stored arrays, i.e. about 5 n² floats, so count 8 n² to stay above it
        per_seed += 8 * n * n
    if "features" in record:
        per_seed += H * (L + 1) * n
    if "grads" in record:
        per_seed += H * (L + 1) * n
    per_seed += H * (2 + 2 * L) + steps * n_test
    return int(per_seed * seeds * item * 1.25)


@dataclasses.dataclass(frozen=True, eq=False)
class _Checkpoint:
    """Save and load the carry (state, buffers) of a simulation after ``step`` SGD steps.

    The file is an NPZ of the raw bytes of every array (bit-exact) plus JSON metadata with the
    problem's fingerprint.  Only what the run has produced is stored: the first ``step·B`` rows of
    the weight histories P, Q (F, L, H, n) per seed and the first ``step`` rows of the outputs (the
    rest are zeros); W^(0) is redrawn from the seed keys on load.
    """

    path: str
    batch: int
    steps: int
    mesh: Any
    init: Any
    weights: Any
    keys: Any
    fingerprint: str
    info: dict

    def save(self, step, carry) -> None:
        state, buf = carry
        rows = step * self.batch
        arrays = {}
        for k, v in state.items():
            if k in ("W0", "Wt0"):
                continue  # drawn from the keys again on load
            # P, Q: (S, F, L, H, n), only the filled rows (sliced on the host: a device slice
            # compiles per size); to_host gathers the seed shards of every process
            arrays[f"state/{k}"] = to_host(v)[:, :, :, :rows] if k in ("P", "Q") else v
        for k, v in buf.items():
            arrays[f"outs/{k}"] = to_host(v)[:, :step]
        _checkpoint.write(self.path, arrays, dict(step=int(step), fingerprint=self.fingerprint, **self.info))

    def load(self):
        """(step, carry) from the file, placed on the run's devices."""
        meta, arrays = _checkpoint.read(self.path, what="nfd.simulate", fingerprint=self.fingerprint,
                                        differs="network, data, seed or options", info=tuple(self.info))
        step = int(meta["step"])
        shapes = jax.eval_shape(self.init, self.keys)  # ShapeDtypeStructs of the full carry
        out = ({}, {})
        for name, a in arrays.items():
            g, k = name.split("/", 1)
            gi = 0 if g == "state" else 1
            full = shapes[gi][k]
            if tuple(a.shape) != tuple(full.shape):  # the filled part of P, Q or an output buffer
                b = np.zeros(full.shape, a.dtype)
                b[tuple(slice(0, m) for m in a.shape)] = a
                a = b
            out[gi][k] = a
        sh = None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec("seeds"))
        carry = jax.tree_util.tree_map(lambda a: place(a, sh), out)
        state, buf = carry
        state.update(self.weights(self.keys))  # W^(0) (dense) from the same keys as at the start
        return step, (state, buf)


@dataclasses.dataclass(frozen=True, eq=False)
class SimulationProblem(_driver.Problem):
    """A validated simulation of ``seeds`` finite networks that runs in pieces (see
    :mod:`nfd._driver`): ``init`` / ``advance`` / ``save`` / ``load`` / ``divergence`` / ``solution``.

    Built by :func:`simulation_problem`; :func:`simulate_network` runs it with
    :func:`nfd._driver.run`.  ``advance`` runs SGD steps with one compiled program whose loop
    bounds are traced, so any split of the run gives bit-identical results.

    Example:
        >>> import numpy as np, nfd
        >>> from nfd.finite import simulation_problem
        >>> X = np.random.default_rng(0).normal(size=(6, 3)); Y = np.sin(X[:, 0])
        >>> net = nfd.ResNet(depth=2, input_dim=3, width=16, activation="tanh", lr=0.5)
        >>> prob = simulation_problem(net, X, Y, seeds=2)
        >>> a = prob.solution(prob.advance(prob.advance(prob.init(), 2)))
        >>> b = prob.solution(prob.advance(prob.init()))
        >>> bool(np.array_equal(a.outputs, b.outputs))
        True
    """

    network: ResNet
    static: _SimStatic
    programs: tuple  # _compiled_run(static): (init, weights, advance, advance_donating)
    seeds: int
    keys: Any
    args: tuple  # (Xs, Ys, Xt, rates) as jax arrays
    mesh: Any
    fingerprint: str
    config: dict
    describe: str
    name = "[nfd.simulate]"

    @property
    def report_kw(self) -> dict:
        return dict(what="simulate", quantity="output f", index_name="seed index",
                    hint=f"try a smaller lr (lr={self.network.lr}) or a larger depth/width")

    def _ckpt(self, path) -> "_Checkpoint":
        init, weights, _, _ = self.programs
        net = self.network
        return _Checkpoint(path=path, batch=self.static.batch, steps=self.steps, mesh=self.mesh, init=init,
                           weights=weights, keys=self.keys, fingerprint=self.fingerprint,
                           info=dict(width=net.width, depth=net.depth, seeds=self.seeds, steps=self.steps))

    def init(self) -> _driver.State:
        return _driver.State(0, self.programs[0](self.keys), self.fingerprint)

    def advance(self, state: _driver.State, steps: int | None = None, *, donate: bool = False) -> _driver.State:
        """``steps`` more SGD steps (default: to the end); ``donate=True`` reuses the old state's memory."""
        _driver.check_state(self, state)
        n = _driver.check_steps(self, state, steps)
        if n == 0:
            return state
        fn = self.programs[3 if donate else 2]
        s0 = jnp.asarray(state.step)  # the same (default) integer type for every call: one program
        carry = fn(state.carry, s0, jnp.asarray(state.step + n, s0.dtype), self.keys, *self.args)
        return _driver.State(state.step + n, carry, self.fingerprint)

    def save(self, state: _driver.State, path) -> None:
        _driver.check_state(self, state)
        self._ckpt(path).save(state.step, state.carry)

    def load(self, path) -> _driver.State:
        step, carry = self._ckpt(path).load()
        return _driver.State(step, carry, self.fingerprint)

    def divergence(self, state: _driver.State):
        """The first step (and seed index) with a non-finite output among those done, or ``None``."""
        f = to_host(state.carry[1]["f"]).reshape(self.seeds, -1)
        return find(f, batched=True, per_step=self.static.batch, upto=state.step * self.static.batch)

    def solution(self, state: _driver.State, divergence=None) -> SimulationResult:
        _driver.check_state(self, state)
        if state.step != self.steps:
            raise ValueError(f"the run is at step {state.step} of {self.steps}; advance it to the end first")
        net, seeds, K = self.network, self.seeds, self.steps * self.static.batch
        outs = to_host(state.carry[1])
        f = outs["f"].reshape(seeds, K)
        if divergence is None:
            divergence = find(f, batched=True, per_step=self.static.batch)

        def resh(a):
            return None if a is None else a.reshape((seeds, K) + a.shape[3:])

        return SimulationResult(
            outputs=f,
            losses=outs["loss"].reshape(seeds, K),
            test_outputs=outs.get("ftest"),
            features=resh(outs.get("h")),
            grads=resh(outs.get("g")),
            frozen_x=resh(outs.get("fx")) if (net.block != "pre" and "fx" in outs) else None,
            frozen_dh=resh(outs.get("fdh")),
            network=net,
            config=dict(self.config),
            status=Status.of(divergence),
        )


def simulation_problem(
    net: ResNet,
    X,
    Y,
    *,
    backward: str = "coupled",
    seeds: int = 1,
    seed: int = 0,
    batch_size: int = 1,
    X_test=None,
    record: tuple[str, ...] = (),
    dtype=jnp.float32,
    weights: str = "auto",
    max_memory: int | None = None,
    devices=None,
    _same_backward_key: bool = False,
) -> SimulationProblem:
    """Validate a simulation of ``net`` and check its memory; nothing is compiled or run.

    See :func:`simulate_network` for the arguments (the run options ``checkpoint``,
    ``checkpoint_every``, ``progress``, ``chunk_steps`` and ``on_divergence`` belong to the
    driver, :func:`nfd._driver.run`).
    """
    if net.width is None:
        raise ValueError("width: the finite simulator needs a finite width (got width=None)")
    check_choice("backward", backward, ("coupled", "decoupled"))
    dtype = check_dtype("dtype", dtype)
    X, Y = check_data(X, Y, loss=net.loss, batch_size=batch_size, dtype=dtype)
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")
    X_test = check_test_inputs(X_test, net.input_dim, dtype=dtype)
    seeds = check_seeds(seeds)
    max_memory = check_bytes("max_memory", max_memory)
    devs = resolve_devices(devices)
    if devs is not None:
        check_divisible(seeds, devs, "seeds")
    if isinstance(record, str):
        record = (record,)
    bad = [r for r in record if r not in RECORDABLE]
    if bad:
        raise ValueError(f"record: unknown entries {bad}; choose from {RECORDABLE}")
    if "frozen" in record and net.block not in ("pre", "post", "post_ms", "two_layer"):
        raise ValueError("record='frozen' is not available for this block")
    check_choice("weights", weights, ("auto", "dense", "regenerate"))
    seed = check_seed(seed)

    K = X.shape[0]
    B = batch_size
    steps = K // B
    n_test = 0 if X_test is None else X_test.shape[0]
    F = _families(net.block)
    dense_bytes = seeds * F * net.depth * net.width**2 * dtype.itemsize * (2 if backward == "decoupled" else 1)
    dense = weights == "dense" or (weights == "auto" and dense_bytes <= 2**30)
    est_kw = dict(steps=steps, batch=B, seeds=seeds, n_test=n_test, record=record, dtype=dtype, backward=backward)
    est = estimate_memory(net, dense=dense, **est_kw)
    D = 1 if devs is None else len(devs)  # seeds are split evenly over the devices
    hint = f"width={net.width}, depth={net.depth}, steps={steps}, seeds={seeds}, weights={'dense' if dense else 'regenerate'}"
    if dense and weights == "auto":
        try:
            check_device_memory(est, est // D, devices=devs, what="simulate", hint=hint, limit_bytes=max_memory)
        except MemoryError:
            dense = False
            est = estimate_memory(net, dense=False, **est_kw)
    check_device_memory(est, est // D, devices=devs, what="simulate", hint=hint, limit_bytes=max_memory)

    # the learning rates enter as traced values, so the compiled run is keyed on the network
    # without its lr (a sweep over η_c compiles once)
    st = _SimStatic(net=net.replace(lr=0.0), backward=backward, batch=B, steps=steps, n_test=n_test,
                    record=tuple(record), dtype=dtype, dense=dense, same_backward_key=bool(_same_backward_key))
    rates_np = np.asarray([net.lr_input, net.lr_output]
                          + ([net.lr_hidden] if F == 1 else [net.lr_hidden_first, net.lr_hidden]), np.float64)
    base = seed_key(seed)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))
    Xs_np = X.reshape(steps, B, -1)
    Ys_np = Y.reshape(steps, B)
    Xt_np = X_test if X_test is not None else np.zeros((1, net.input_dim))
    mesh = None
    if devs is not None:
        mesh = make_mesh(devs, "seeds")
        keys = shard_along(keys, mesh, 0, "seeds")
    ident = (repr(st.net), rates_np.tolist(), backward, B, steps, n_test, sorted(set(record)), dtype.name, bool(dense),
             bool(_same_backward_key), int(seed), seeds)
    return SimulationProblem(
        network=net, static=st, programs=_compiled_run(st), seeds=seeds, keys=keys,
        args=tuple(jnp.asarray(a, dtype) for a in (Xs_np, Ys_np, Xt_np, rates_np)), mesh=mesh,
        fingerprint=_checkpoint.fingerprint(ident, (Xs_np, Ys_np, Xt_np)),
        config=dict(backward=backward, seeds=seeds, seed=seed, batch_size=B, dtype=str(dtype),
                    weights="dense" if dense else "regenerate", record=tuple(record)),
        describe=f"{hint}, est. memory {format_bytes(est)}",
    )


def simulate_network(
    net: ResNet,
    X,
    Y,
    *,
    backward: str = "coupled",
    seeds: int = 1,
    seed: int = 0,
    batch_size: int = 1,
    X_test=None,
    record: tuple[str, ...] = (),
    dtype=jnp.float32,
    weights: str = "auto",
    max_memory: int | None = None,
    progress: bool = False,
    on_divergence: str = "raise",
    chunk_steps: int | None = None,
    devices=None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    _same_backward_key: bool = False,
) -> SimulationResult:
    """Train ``seeds`` independent copies of ``net`` by SGD on the stream (X, Y).

    Args:
        net: the network (``net.width`` must be finite; ``net.input_dim`` must equal X's d).
        X: (K, d) training inputs, consumed in order, ``batch_size`` per step.
        Y: (K,) targets.
        backward: ``"coupled"`` (backprop) or ``"decoupled"`` (through an independent W̃).
        seeds: number of independent networks, simulated at once (vmap over keys).
        seed: base seed; network s uses ``fold_in(PRNGKey(seed), s)``.
        batch_size: samples per SGD step (the update averages their gradients).
        X_test: optional (N, d) inputs evaluated before every step (never trained on).
        record: subset of ``("features", "grads", "frozen")``.
        dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs ``jax_enable_x64``).
        weights: ``"dense"`` stores W^(0); ``"regenerate"`` redraws it per layer from its key;
            ``"auto"`` stores it when that takes under 1 GiB.
        max_memory: byte limit for the run (default 80% of physical memory).
        progress: print progress to stderr between chunks of steps (10 chunks by default); or a
            function ``progress(done, steps)`` called after each chunk instead.
        devices: ``None`` (default device), ``"all"`` or a list of devices: shard the seeds across
            them with ``jax.sharding`` (a 1-D mesh over a "seeds" axis; seeds must be a multiple
            of the device count). Each network lives on one device; results are identical.
        chunk_steps: run the compiled SGD loop this many steps at a time (results are identical
            to one long loop; the weight history is preallocated for all steps).
        checkpoint: path of a checkpoint file (NPZ).  If it exists the run resumes from it (it must
            belong to the same problem: network, data, seed, seeds and options, else ValueError);
            the state is written there (atomically) every ``checkpoint_every`` steps and at the
            end.  Any split gives results bit-identical to one uninterrupted run: the SGD loop is
            one compiled program with traced bounds.  With ``devices=`` the seed shards are
            gathered, process 0 writes, and a load places them on the devices again.
        checkpoint_every: steps between checkpoints (needs ``checkpoint``; default: only at the
            end and at the ``progress``/``chunk_steps`` stops).
        on_divergence: ``"raise"`` (default) raises :class:`~nfd.DivergenceError` naming the
            step; ``"return"`` returns the non-finite numbers with a warning on stderr.

    Returns:
        :class:`SimulationResult` with ``.outputs`` of shape (seeds, K).

    Example (a long run that survives being killed: the same call resumes it):
        >>> import numpy as np, nfd, tempfile, os
        >>> X = np.random.default_rng(0).normal(size=(8, 3)); Y = np.sin(X[:, 0])
        >>> net = nfd.ResNet(depth=4, input_dim=3, width=32, activation="tanh", lr=0.5)
        >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
        >>> res = simulate_network(net, X, Y, seeds=2, checkpoint=path, checkpoint_every=3)
        >>> again = simulate_network(net, X, Y, seeds=2, checkpoint=path)  # finished: read back
        >>> res.outputs.shape, bool(np.array_equal(res.outputs, again.outputs))
        ((2, 8), True)
    """
    check_policy(on_divergence)
    checkpoint, checkpoint_every = _checkpoint.check_options(checkpoint, checkpoint_every, what="nfd.simulate")
    if not callable(progress):
        check_bool("progress", progress)
    if chunk_steps is not None and (isinstance(chunk_steps, bool) or not isinstance(chunk_steps, (int, np.integer))
                                    or chunk_steps < 1):
        raise ValueError(f"chunk_steps must be a positive integer, got {chunk_steps!r}")
    prob = simulation_problem(net, X, Y, backward=backward, seeds=seeds, seed=seed, batch_size=batch_size,
                              X_test=X_test, record=record, dtype=dtype, weights=weights, max_memory=max_memory,
                              devices=devices, _same_backward_key=_same_backward_key)
    return _driver.run(prob, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                       on_divergence=on_divergence, chunk_steps=chunk_steps)


def simulate(
    X,
    Y,
    *,
    width: int,
    depth: int,
    activation: Any = "relu",
    lr: float = 0.1,
    T: float = 1.0,
    backward: str = "coupled",
    frozen: tuple[str, ...] = (),
    seeds: int = 1,
    seed: int = 0,
    block: str = "pre",
    parameterization: str = "depth_mup",
    alpha: float | None = None,
    depth_aware_lr: bool = False,
    loss: str = "mse",
    **kwargs,
) -> SimulationResult:
    """Simulate finite ResNets of the given width and depth trained by SGD on (X, Y).

    Builds a :class:`~nfd.ResNet` from the keyword arguments (``lr`` is η_c; the actual SGD
    rates follow the parameterisation) and calls :func:`simulate_network`, which documents
    the remaining options (``batch_size``, ``X_test``, ``record``, ``dtype``, ``weights``,
    ``max_memory``, ``progress``, ``on_divergence``, ``devices``, ``chunk_steps``,
    ``checkpoint``, ``checkpoint_every``).

    Returns:
        :class:`SimulationResult` with ``.outputs`` of shape (seeds, K).

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(8, 3)); Y = np.sin(X[:, 0])
        >>> res = nfd.simulate(X, Y, width=64, depth=8, activation="tanh", lr=0.5, seeds=4)
        >>> res.outputs.shape
        (4, 8)
    """
    X_arr = check_inputs_2d(X)
    net = ResNet(
        depth=depth, input_dim=X_arr.shape[1], width=width, activation=activation, T=T, block=block,
        parameterization=parameterization, lr=lr, alpha=alpha, depth_aware_lr=depth_aware_lr,
        frozen=frozen, loss=loss,
    )
    return simulate_network(net, X, Y, backward=backward, seeds=seeds, seed=seed, **kwargs)
