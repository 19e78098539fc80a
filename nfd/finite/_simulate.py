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
import hashlib
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .._errors import DivergenceError
from .._losses import loss_grad, loss_value
from .._memory import check_device_memory, format_bytes
from .._model import ResNet
from .. import _checkpoint
from .._sharding import check_divisible, make_mesh, place, resolve_devices, shard_along, to_host
from .._validate import check_data, check_seeds, check_test_inputs

__all__ = ["simulate", "simulate_network", "SimulationResult", "init_params", "RECORDABLE"]

RECORDABLE = ("features", "grads", "frozen")


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` returns.  Arrays are numpy, leading axis = seed.

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
    U = jax.random.normal(k_u, (n, d), dtype)
    v = jax.random.normal(k_v, (n,), dtype)
    W = jnp.stack(
        [jnp.stack([jax.random.normal(_layer_key(k_w, f, l), (n, n), dtype) for l in range(L)]) for f in range(F)]
    )
    return U, v, W


def _build_run(net: ResNet, *, backward, batch, steps, n_test, record, dtype, dense, same_backward_key=False):
    """Return (init, weights, advance) for one seed.

    ``init(seed_key) -> carry`` with ``carry = (state, buf)``: the state before step 0 and zeroed
    per-step output buffers (leading axis = step).  ``weights(seed_key)`` is the part of the state
    drawn from the key (W^(0), and W̃^(0) when decoupled; empty unless ``dense``), used to rebuild
    it when a checkpoint is loaded.  ``advance(carry, s0, s1, seed_key, Xs, Ys, Xt, rates) -> carry``
    runs the SGD steps s0..s1-1 on Xs (steps, B, d), Ys (steps, B) with a ``fori_loop`` whose bounds
    are traced, so one compiled program serves every split of the run and any split (e.g. a
    checkpoint after step k, then a resume) gives bit-identical results.
    """
    n, d, L = net.width, net.input_dim, net.depth
    F = _families(net.block)
    H = steps * batch
    phi = net.activation.fn
    dphi = net.activation.deriv
    b = net.branch
    tau = net.tau
    sqn = math.sqrt(n)
    s_out = net.output_scale()
    sqd = math.sqrt(d)
    block = net.block
    rec_feat = "features" in record
    rec_grad = "grads" in record
    rec_frozen = "frozen" in record
    decoupled = backward == "decoupled"

    def keys_of(seed_key):
        k_u, k_v, k_w, k_wt = _keys(seed_key)
        if same_backward_key:
            k_wt = k_w
        return k_u, k_v, k_w, k_wt

    def weights(seed_key):
        out = {}
        if dense:
            _, _, k_w, k_wt = keys_of(seed_key)
            layers = jnp.arange(L)

            def gen(kk):
                return jnp.stack(
                    [jax.vmap(lambda l: jax.random.normal(_layer_key(kk, f, l), (n, n), dtype))(layers) for f in range(F)]
                )

            out["W0"] = gen(k_w)
            if decoupled:
                out["Wt0"] = gen(k_wt)
        return out

    def init(seed_key):
        k_u, k_v, _, _ = keys_of(seed_key)
        state = {
            "U": jax.random.normal(k_u, (n, d), dtype),
            "v": jax.random.normal(k_v, (n,), dtype),
            "P": jnp.zeros((F, L, H, n), dtype),
            "Q": jnp.zeros((F, L, H, n), dtype),
            **weights(seed_key),
        }
        buf = {"f": jnp.zeros((steps, batch), dtype), "loss": jnp.zeros((steps, batch), dtype)}
        if n_test:
            buf["ftest"] = jnp.zeros((steps, n_test), dtype)
        if rec_feat:
            buf["h"] = jnp.zeros((steps, batch, L + 1, n), dtype)
        if rec_grad:
            buf["g"] = jnp.zeros((steps, batch, L + 1, n), dtype)
        if rec_frozen:
            buf["fx"] = jnp.zeros((steps, batch, L), dtype)
            buf["fdh"] = jnp.zeros((steps, batch, L), dtype)
        return state, buf

    def advance(carry, s0, s1, seed_key, Xs, Ys, Xt, rates):
        # rates = (η_input, η_output, η_family_0[, η_family_1]): traced, so a learning-rate sweep
        # reuses one compilation
        lr_in, lr_out, lrs = rates[0], rates[1], rates[2:]
        _, _, k_w, k_wt = keys_of(seed_key)
        layers = jnp.arange(L)
        state, buf = carry
        W0 = state.get("W0")
        Wt0 = state.get("Wt0", W0)

        def w0(f, l, fwd=True):
            if dense:
                return (W0 if fwd else Wt0)[f, l]
            return jax.random.normal(_layer_key(k_w if fwd else k_wt, f, l), (n, n), dtype)

        def matvec(f, l, Pl, Ql, u):
            # u: (B, n) -> W^(k) u for each row; returns (total, history part)
            hist = (u @ Ql[f].T) @ Pl[f]
            return u @ w0(f, l).T + hist, hist

        def rmatvec(f, l, Pl, Ql, g):
            Wb = w0(f, l, fwd=not decoupled)
            return g @ Wb + (g @ Pl[f].T) @ Ql[f]

        def forward(U, P, Q, x):
            """x: (B, d). Returns h_L (B,n) and per-layer stash."""
            z0 = x @ U.T / sqd
            h0 = phi(z0) if block == "post" else z0

            def layer(h, xs):
                l, Pl, Ql = xs
                if block == "pre":
                    u = phi(h)
                    y, hist = matvec(0, l, Pl, Ql, u)
                    hn = h + (b / sqn) * y
                    xl = jnp.zeros_like(h)
                    fdh = (b / (sqn * tau)) * hist
                    fx = jnp.zeros_like(h)
                elif block == "post":
                    y, hist = matvec(0, l, Pl, Ql, h)
                    xl = y / sqn
                    hn = h + b * phi(xl)
                    fdh = (b / tau) * (phi(xl) - phi((y - hist) / sqn))
                    fx = hist / sqn
                elif block == "post_ms":  # TP VI §6.3: h + b·MS(φ(W h/√n)), MS = mean subtraction
                    y, hist = matvec(0, l, Pl, Ql, h)
                    xl = y / sqn
                    hn = h + b * _ms(phi(xl))
                    fdh = (b / tau) * _ms(phi(xl) - phi((y - hist) / sqn))
                    fx = hist / sqn
                else:
                    y1, hist1 = matvec(0, l, Pl, Ql, h)
                    xl = y1 / sqn
                    y2, hist2 = matvec(1, l, Pl, Ql, phi(xl))
                    hn = h + (b / sqn) * y2
                    fx = hist1 / sqn
                    fdh = (b / (sqn * tau)) * hist2
                rms = lambda a: jnp.sqrt(jnp.mean(a**2, axis=-1))
                return hn, (h, xl, rms(fx), rms(fdh))

            hL, (hprev, xls, fxs, fdhs) = jax.lax.scan(layer, h0, (layers, P.swapaxes(0, 1), Q.swapaxes(0, 1)))
            return z0, h0, hL, hprev, xls, fxs, fdhs

        def backward_pass(v, P, Q, z0, hL, hprev, xls):
            dhL = jnp.broadcast_to(s_out * v, hL.shape)

            def layer(dh, xs):
                l, Pl, Ql, h, xl = xs
                if block == "pre":
                    dy = (b / sqn) * dh
                    u = phi(h)
                    dhp = dh + dphi(h) * rmatvec(0, l, Pl, Ql, dy)
                    dys = (dy,)
                    us = (u,)
                elif block in ("post", "post_ms"):
                    dy = (b / sqn) * dphi(xl) * (_ms(dh) if block == "post_ms" else dh)
                    dhp = dh + rmatvec(0, l, Pl, Ql, dy)
                    dys = (dy,)
                    us = (h,)
                else:
                    dy2 = (b / sqn) * dh
                    dx = dphi(xl) * rmatvec(1, l, Pl, Ql, dy2)
                    dy1 = dx / sqn
                    dhp = dh + rmatvec(0, l, Pl, Ql, dy1)
                    dys = (dy1, dy2)
                    us = (h, phi(xl))
                return dhp, (dh, jnp.stack(dys), jnp.stack(us))

            dh0, (dhs, dys, us) = jax.lax.scan(
                layer, dhL, (layers, P.swapaxes(0, 1), Q.swapaxes(0, 1), hprev, xls), reverse=True
            )
            dz0 = dphi(z0) * dh0 if block == "post" else dh0
            return dz0, dh0, dhs, dys, us  # dhs[l] = ∂f/∂h_{l+1}; dys (L, F, B, n)

        def step(k, carry):
            (U, v, P, Q), buf = carry
            x, y = Xs[k], Ys[k]
            z0, h0, hL, hprev, xls, fxs, fdhs = forward(U, P, Q, x)
            f = s_out * (hL @ v)
            lp = loss_grad(net.loss, f, y)
            lval = loss_value(net.loss, f, y)
            dz0, dh0, dhs, dys, us = backward_pass(v, P, Q, z0, hL, hprev, xls)
            c = (lp / batch).astype(dtype)  # (B,)
            U_new = U - lr_in * (c[:, None] * dz0).T @ x / sqd
            v_new = v - lr_out * s_out * (c @ hL)
            newP = -(lrs[None, :, None, None] * c[None, None, :, None]) * dys  # (L, F, B, n)
            P_new = jax.lax.dynamic_update_slice(P, newP.swapaxes(0, 1), (0, 0, k * batch, 0))
            Q_new = jax.lax.dynamic_update_slice(Q, us.swapaxes(0, 1), (0, 0, k * batch, 0))
            out = {"f": f, "loss": lval}
            if n_test:
                _, _, hLt, *_ = forward(U, P, Q, Xt)  # weights before this step's update
                out["ftest"] = s_out * (hLt @ v)
            if rec_feat:
                out["h"] = jnp.concatenate([hprev, hL[None]], axis=0).swapaxes(0, 1)  # (B, L+1, n)
            if rec_grad:
                g = jnp.concatenate([dh0[None], dhs], axis=0) / s_out
                out["g"] = g.swapaxes(0, 1)
            if rec_frozen:
                out["fx"] = fxs.T  # (B, L)
                out["fdh"] = fdhs.T
            buf = {name: jax.lax.dynamic_update_index_in_dim(buf[name], out[name].astype(dtype), k, 0) for name in buf}
            return (U_new, v_new, P_new, Q_new), buf

        loop = ((state["U"], state["v"], state["P"], state["Q"]), buf)
        (U, v, P, Q), buf = jax.lax.fori_loop(s0, s1, step, loop)
        return dict(state, U=U, v=v, P=P, Q=Q), buf

    return init, weights, advance


@functools.lru_cache(maxsize=64)
def _compiled_run(net, backward, batch, steps, n_test, record, dtype, dense, same_backward_key):
    """Jitted, seed-vmapped (init, weights, advance) per problem description (repeat calls reuse
    them).  ``advance(carry, s0, s1, keys, Xs, Ys, Xt, rates)`` donates its carry."""
    init, weights, advance = _build_run(
        net, backward=backward, batch=batch, steps=steps, n_test=n_test, record=record, dtype=dtype, dense=dense,
        same_backward_key=same_backward_key,
    )
    return (
        jax.jit(jax.vmap(init)),
        jax.jit(jax.vmap(weights)),
        jax.jit(jax.vmap(advance, in_axes=(0, None, None, 0, None, None, None, None)), donate_argnums=(0,)),
    )


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


def _fingerprint(net, rates, *, backward, batch, steps, n_test, record, dtype, dense, same_key, seed, seeds,
                 arrays) -> str:
    """sha256 (32 hex digits) of everything that determines a simulation's numbers: a checkpoint
    is only resumed by the run it was written by.  The devices are not part of it."""
    h = hashlib.sha256()
    ident = (repr(net.replace(lr=0.0)), np.asarray(rates, np.float64).tolist(), backward, batch, steps, n_test,
             sorted(set(record)), jnp.dtype(dtype).name, bool(dense), bool(same_key), seed, seeds, _checkpoint.VERSION)
    h.update(repr(ident).encode())
    for a in arrays:
        a = np.ascontiguousarray(a, np.float64)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


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
        progress: print progress to stderr between chunks of steps (10 chunks by default).
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
    if net.width is None:
        raise ValueError("width: the finite simulator needs a finite width (got width=None)")
    if backward not in ("coupled", "decoupled"):
        raise ValueError(f"backward must be 'coupled' or 'decoupled', got {backward!r}")
    X, Y = check_data(X, Y, loss=net.loss, batch_size=batch_size)
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")
    X_test = check_test_inputs(X_test, net.input_dim)
    seeds = check_seeds(seeds)
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
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True) first")
    if dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if weights not in ("auto", "dense", "regenerate"):
        raise ValueError(f"weights must be 'auto', 'dense' or 'regenerate', got {weights!r}")
    if on_divergence not in ("raise", "return"):
        raise ValueError(f"on_divergence must be 'raise' or 'return', got {on_divergence!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    checkpoint, checkpoint_every = _checkpoint.check_options(checkpoint, checkpoint_every)

    K = X.shape[0]
    B = batch_size
    steps = K // B
    n_test = 0 if X_test is None else X_test.shape[0]
    F = _families(net.block)
    dense_bytes = seeds * F * net.depth * net.width**2 * dtype.itemsize * (2 if backward == "decoupled" else 1)
    dense = weights == "dense" or (weights == "auto" and dense_bytes <= 2**30)
    est = estimate_memory(
        net, steps=steps, batch=B, seeds=seeds, n_test=n_test, record=record, dtype=dtype, dense=dense, backward=backward
    )
    D = 1 if devs is None else len(devs)  # seeds are split evenly over the devices
    hint = f"width={net.width}, depth={net.depth}, steps={steps}, seeds={seeds}, weights={'dense' if dense else 'regenerate'}"
    if dense and weights == "auto":
        try:
            check_device_memory(est, est // D, devices=devs, what="simulate", hint=hint, limit_bytes=max_memory)
        except MemoryError:
            dense = False
            est = estimate_memory(
                net, steps=steps, batch=B, seeds=seeds, n_test=n_test, record=record, dtype=dtype, dense=False, backward=backward
            )
    check_device_memory(est, est // D, devices=devs, what="simulate", hint=hint, limit_bytes=max_memory)

    if chunk_steps is not None and (isinstance(chunk_steps, bool) or not isinstance(chunk_steps, (int, np.integer))
                                    or chunk_steps < 1):
        raise ValueError(f"chunk_steps must be a positive integer, got {chunk_steps!r}")
    C = steps if chunk_steps is None else int(chunk_steps)
    if progress and chunk_steps is None:
        C = max(1, math.ceil(steps / 10))
    E = None if checkpoint_every is None else int(checkpoint_every)
    # the learning rates enter as traced values, so the compiled run is keyed on the network
    # without its lr (a sweep over η_c compiles once)
    init, weights_fn, advance = _compiled_run(net.replace(lr=0.0), backward, B, steps, n_test, tuple(record), dtype,
                                              dense, _same_backward_key)
    rates_np = np.asarray([net.lr_input, net.lr_output]
                          + ([net.lr_hidden] if F == 1 else [net.lr_hidden_first, net.lr_hidden]), np.float64)
    rates = jnp.asarray(rates_np, dtype)
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))
    Xs_np = X.reshape(steps, B, -1)
    Ys_np = Y.reshape(steps, B)
    Xt_np = X_test if X_test is not None else np.zeros((1, net.input_dim))
    Xs, Ys, Xt = (jnp.asarray(a, dtype) for a in (Xs_np, Ys_np, Xt_np))
    mesh = None
    if devs is not None:
        mesh = make_mesh(devs, "seeds")
        keys = shard_along(keys, mesh, 0, "seeds")
    ckpt = None
    if checkpoint is not None:
        ckpt = _Checkpoint(
            path=os.fspath(checkpoint), batch=B, steps=steps, mesh=mesh, init=init, weights=weights_fn, keys=keys,
            fingerprint=_fingerprint(net, rates_np, backward=backward, batch=B, steps=steps, n_test=n_test,
                                     record=record, dtype=dtype, dense=dense, same_key=_same_backward_key,
                                     seed=int(seed), seeds=seeds, arrays=(Xs_np, Ys_np, Xt_np)),
            info=dict(width=net.width, depth=net.depth, seeds=seeds, steps=steps),
        )

    def check_div(f, upto):
        f = f.reshape(seeds, -1)[:, : upto * B]
        bad = ~np.isfinite(f)
        if not bad.any():
            return
        s_idx, k_idx = np.nonzero(bad)
        first = int(np.argmin(k_idx))
        step, sd = int(k_idx[first]) // B, int(s_idx[first])
        msg = (
            f"simulate diverged: the output f became non-finite at step {step} (seed index {sd}); "
            f"try a smaller lr (lr={net.lr}) or a larger depth/width"
        )
        if on_divergence == "raise":
            raise DivergenceError(msg, step=step, seed=sd, quantity="output f")
        print("[nfd.simulate] warning: " + msg, file=sys.stderr)

    t0 = time.perf_counter()
    if ckpt is not None and os.path.exists(ckpt.path):
        done, carry = ckpt.load()
        if progress:
            print(f"[nfd.simulate] resuming from {ckpt.path} at step {done}/{steps}", file=sys.stderr, flush=True)
    else:
        if progress:
            print(f"[nfd.simulate] {hint}, est. memory {format_bytes(est)}: compiling...", file=sys.stderr, flush=True)
        done, carry = 0, init(keys)
    step = done
    while step < steps:
        # the run stops at multiples of C (progress, chunk_steps) and of E (checkpoints)
        nxt = min(steps, (step // C + 1) * C, steps if E is None else (step // E + 1) * E)
        s0 = jnp.asarray(step)  # the same (default) integer type for every call: one program
        carry = advance(carry, s0, jnp.asarray(nxt, s0.dtype), keys, Xs, Ys, Xt, rates)
        step = nxt
        if step < steps and on_divergence == "raise":
            check_div(to_host(carry[1]["f"]), step)  # before a diverged state is saved
        if ckpt is not None and (E is None or step % E == 0 or step == steps):
            ckpt.save(step, carry)
        if progress:
            el = time.perf_counter() - t0
            print(f"[nfd.simulate] step {step}/{steps} ({el:.1f}s elapsed)", file=sys.stderr, flush=True)
    outs = to_host(carry[1])
    del carry

    f = outs["f"].reshape(seeds, K)
    losses = outs["loss"].reshape(seeds, K)
    check_div(f, steps)

    def resh(a):
        return None if a is None else a.reshape((seeds, K) + a.shape[3:])

    return SimulationResult(
        outputs=f,
        losses=losses,
        test_outputs=outs.get("ftest"),
        features=resh(outs.get("h")),
        grads=resh(outs.get("g")),
        frozen_x=resh(outs.get("fx")) if (net.block != "pre" and "fx" in outs) else None,
        frozen_dh=resh(outs.get("fdh")),
        network=net,
        config=dict(
            backward=backward, seeds=seeds, seed=seed, batch_size=B, dtype=str(dtype),
            weights="dense" if dense else "regenerate", record=tuple(record),
        ),
    )


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
    X_arr = np.asarray(X)
    if X_arr.ndim != 2:
        raise ValueError(f"X must have shape (K, d) (one row per SGD sample), got shape {X_arr.shape}")
    net = ResNet(
        depth=depth, input_dim=X_arr.shape[1], width=width, activation=activation, T=T, block=block,
        parameterization=parameterization, lr=lr, alpha=alpha, depth_aware_lr=depth_aware_lr,
        frozen=tuple(frozen), loss=loss,
    )
    return simulate_network(net, X, Y, backward=backward, seeds=seeds, seed=seed, **kwargs)
