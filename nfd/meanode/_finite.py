"""Finite ResNets with embedding dimension D and M units per block, trained by full-batch GD.

The network and its training are described by :class:`nfd.MeanODEResNet` (Eq. 1, 5, 24, 25
of hidden-width-neural-mean-ode.txt)::

    h⁰ = x,   hˡ = hˡ⁻¹ + α/(LM) Σ_j φ(hˡ⁻¹, (u^{j,ℓ}, v^{j,ℓ})),     ℓ = 1..L
    L̂ = (1/n) Σ_i ½‖h^L(x_i) − y_i‖²/D
    u ← u − (LMη_u/α²) ∇_u L̂,   v ← v − (LMη_v/α²) ∇_v L̂.

Gradients come from JAX autodiff of this forward pass (the backward pass of Eq. 7 is its
reverse-mode derivative).  Many seeds run at once (vmapped, in memory-sized chunks).

The same discretised dynamics, with the M·L i.i.d. weights replaced by P particles shared by all
grid points, is the Euler scheme of the Neural Mean ODE used by :func:`nfd.meanode.solve_mean_ode`;
both run :mod:`nfd.meanode._core`, so the finite network and the limit solver cannot drift apart.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from .._divergence import find, report
from .._results import Status, result
from .._memory import check_memory
from .._model import MeanODEResNet
from .._sharding import check_divisible, make_mesh, resolve_devices, shard_along, to_host
from .._validate import check_array, check_dtype, check_seed, check_seeds
from ._core import hyper_array, jitted, jitted_run, static_of, train_bytes  # noqa: F401 (re-exported)

__all__ = ["simulate_resnet", "simulate_resnet_network", "ResNetResult", "check_vector_data", "draw_weights"]


@result
class ResNetResult:
    """What :func:`simulate_resnet` returns (numpy arrays, leading axis = seed).

    Attributes:
        outputs: (seeds, K+1, n, D) h^L(x_i; Ẑ_k) for k = 0..K (k = 0 is the initial network,
            k = K the network after K GD steps).
        losses: (seeds, K+1) L̂(Ẑ_k).
        u_displacement: (seeds, K+1) ‖û_k − û_0‖ in RMS over all units and entries
            (= (E_{j,ℓ} ‖u_k^{j,ℓ} − u_0^{j,ℓ}‖²_{2̄})^{1/2}, the quantity of Fig. 5b).
        v_displacement: (seeds, K+1) the same for v.
        forward: (seeds, S, L+1, n, D) the forward pass hˡ(x_i) at the GD steps ``forward_steps``.
        forward_steps: the S recorded steps.
        s: (L+1,) depth grid ℓ/L.
        weights: (U_K (seeds, L, M, p_u), V_K (seeds, L, M, p_v)), the weights after K steps, if
            ``keep_weights=True``; else ``None``.
        network: the :class:`~nfd.MeanODEResNet` simulated.
        config: the other arguments (steps, seeds, seed, tied, dtype) and ``wall_time_s``.
    """

    outputs: np.ndarray
    losses: np.ndarray
    u_displacement: np.ndarray
    v_displacement: np.ndarray
    forward: np.ndarray
    forward_steps: tuple
    s: np.ndarray
    weights: tuple | None
    network: MeanODEResNet
    config: dict
    status: Status = Status()

    @property
    def final(self) -> np.ndarray:
        """(seeds, n, D) outputs after the last GD step."""
        return self.outputs[:, -1]


def check_vector_data(X, Y, dim=None):
    """Validate a training set X (n, D), Y (n, D) (vector outputs in R^D) and return numpy arrays."""
    X = check_array("X", X, shape_doc="(n, D)", allow_empty=True, finite=False)  # complex refused
    Y = check_array("Y", Y, shape_doc="(n, D)", allow_empty=True, finite=False)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must have shape (n, D) with n, D ≥ 1, got shape {X.shape}")
    if Y.shape != X.shape:
        raise ValueError(f"Y must have the shape of X {X.shape} (targets in R^D), got shape {Y.shape}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"X has {X.shape[1]} columns but the network's dim is D={dim}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN or infinite values")
    return X, Y


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer (number of GD steps K), got {steps!r}")
    return int(steps)


def _check_forward_steps(forward_steps, steps):
    if forward_steps is None:
        forward_steps = (0, steps) if steps > 0 else (0,)
    try:
        fs = tuple(int(k) for k in forward_steps)
    except TypeError:
        raise ValueError(f"forward_steps must be a sequence of GD step indices, got {forward_steps!r}") from None
    for k in fs:
        if not 0 <= k <= steps:
            raise ValueError(f"forward_steps entries must lie in [0, steps={steps}], got {k}")
    return fs


def _dtype(dtype):
    return check_dtype("dtype", dtype)


def _jitted_pieces(net, L, steps, forward_steps, lazy):
    """jit-compiled ``(init, advance)`` of the core (:func:`nfd.meanode._core.jitted`)."""
    return jitted(static_of(net, L, steps, forward_steps, lazy))


def _jitted_core(net, L, steps, forward_steps, lazy, batched):
    """jit-compiled :func:`nfd.meanode._core.run` (vmapped over a leading seed axis if
    ``batched``), cached per (unit, activation, L, K, recorded steps); α and the rates are traced."""
    return jitted_run(static_of(net, L, steps, forward_steps, lazy), bool(batched))


def draw_weights(net: MeanODEResNet, seed: int, s: int, *, L: int, M: int, tied: bool = False):
    """Initial weights of seed index ``s``: U0 (L, M, p_u) ~ N(0, σ_u²), V0 (L, M, p_v) ~ N(0, σ_v²).

    Drawn with ``numpy.random.default_rng([seed, s])`` (so a seed's weights do not depend on how
    seeds are chunked, and nothing needs compiling).  ``tied=True`` repeats one set of M units at
    every layer (the weight-tied initialisation of Fig. 3).
    """
    p_u, p_v = net.param_sizes
    rng = np.random.default_rng([int(seed), int(s)])
    Lr = 1 if tied else L
    U = net.sigma_u * rng.standard_normal((Lr, M, p_u))
    V = net.sigma_v * rng.standard_normal((Lr, M, p_v))
    return np.broadcast_to(U, (L, M, p_u)), np.broadcast_to(V, (L, M, p_v))


def raise_if_diverged(outputs, losses, *, what: str, axis_name: str = "seed"):
    """Raise :class:`~nfd.DivergenceError` at the first GD step with a non-finite output."""
    report(find((outputs, losses), batched=True), what=what, quantity="output h^L", index_name=axis_name,
           hint="lower the learning rates lr_u/lr_v or the scales")


def simulate_resnet_network(net: MeanODEResNet, X, Y, *, steps: int, seeds: int = 1, seed: int = 0,
                            tied: bool = False, init=None, forward_steps=None, dtype=jnp.float32,
                            keep_weights: bool = False, max_memory: int | None = None,
                            devices=None) -> ResNetResult:
    """Train ``seeds`` independent finite ResNets described by ``net`` (depth and hidden set).

    Args:
        net: a :class:`~nfd.MeanODEResNet` with finite ``depth`` L and ``hidden`` M.
        X, Y: (n, D) training inputs and targets.
        steps: number K of full-batch GD steps.
        seeds: independent initialisations run at once; seed index s uses
            ``numpy.random.default_rng([seed, s])`` (see :func:`draw_weights`).
        tied: weight-tied initialisation (the same M units at every layer).
        init: optional explicit initial weights (U0, V0) of shape (L, M, p) or (seeds, L, M, p).
        forward_steps: GD steps at which the whole forward pass is recorded (default (0, K)).
        dtype: float32 (default) or float64.
        keep_weights: also return the weights after K steps (``.weights``).
        max_memory: memory limit in bytes (default 80% of RAM).
        devices: ``None`` (default device), ``"all"`` or a list of ``jax`` devices: split the seeds
            over them (a 1-D mesh with axis ``"seeds"``; each network lives on one device, so the
            results are identical).  ``seeds`` must be a multiple of the device count.

    Returns:
        :class:`ResNetResult`.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(3, 4)); Y = -X
        >>> net = nfd.MeanODEResNet(dim=4, depth=8, hidden=2)
        >>> simulate_resnet_network(net, X, Y, steps=5, seeds=2).outputs.shape
        (2, 6, 3, 4)
    """
    if not isinstance(net, MeanODEResNet):
        raise ValueError(f"net must be an nfd.MeanODEResNet, got {type(net).__name__}")
    if net.depth is None or net.hidden is None:
        raise ValueError("net must have finite depth and hidden width (use solve_mean_ode for the limit)")
    X, Y = check_vector_data(X, Y, net.dim)
    steps = _check_steps(steps)
    seeds = check_seeds(seeds)
    seed = check_seed(seed)
    devs = resolve_devices(devices)
    if devs is not None:
        check_divisible(seeds, devs, "seeds")
    fsteps = _check_forward_steps(forward_steps, steps)
    dt = _dtype(dtype)
    L, M = net.depth, net.hidden
    p_u, p_v = net.param_sizes
    n, D = X.shape
    if init is not None:
        try:
            U0, V0 = (jnp.asarray(a, dt) for a in init)
        except (TypeError, ValueError):
            raise ValueError("init must be a pair (U0, V0) of arrays") from None
        if U0.ndim == 3:
            U0, V0 = jnp.broadcast_to(U0, (seeds,) + U0.shape), jnp.broadcast_to(V0, (seeds,) + V0.shape)
        if U0.shape != (seeds, L, M, p_u) or V0.shape != (seeds, L, M, p_v):
            raise ValueError(f"init shapes must be (L, M, p) = ({L}, {M}, {p_u}) and ({L}, {M}, {p_v}) "
                             f"(optionally with a leading seeds axis), got {U0.shape}, {V0.shape}")
    one = train_bytes(L=L, P=M, n=n, D=D, p=p_u + p_v, steps=steps, n_forward=len(fsteps), dtype=dt)
    check_memory(one, what=f"a ResNet with L={L}, M={M}, D={D}", hint="one seed at a time",
                 limit_bytes=max_memory)
    limit = max_memory if max_memory is not None else None
    from .._memory import available_memory_bytes

    budget = limit if limit is not None else int(0.4 * available_memory_bytes())
    chunk = max(1, min(seeds, budget // max(one, 1)))
    mesh = None
    if devs is not None:
        # every chunk is split evenly over the devices (seeds is a multiple of their number)
        chunk = max(len(devs), chunk - chunk % len(devs))
        mesh = make_mesh(devs, "seeds")

    core = _jitted_core(net, L, steps, fsteps, False, True)
    Xj, Yj = jnp.asarray(X, dt), jnp.asarray(Y, dt)
    hyper = hyper_array(net, dt)
    t0 = time.perf_counter()
    parts = []
    for start in range(0, seeds, chunk):
        idx = jnp.arange(start, min(seeds, start + chunk))
        if init is None:
            ws = [draw_weights(net, seed, int(i), L=L, M=M, tied=tied) for i in idx]
            Us = jnp.asarray(np.stack([w[0] for w in ws]), dt)
            Vs = jnp.asarray(np.stack([w[1] for w in ws]), dt)
        else:
            Us, Vs = U0[idx], V0[idx]
        if mesh is not None:
            Us, Vs = shard_along(Us, mesh, 0, "seeds"), shard_along(Vs, mesh, 0, "seeds")
        out = core(Us, Vs, Xj, Yj, hyper)
        if not keep_weights:
            out = {k: v for k, v in out.items() if not k.startswith("final_")}
        parts.append(to_host(out))
    res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    wall = time.perf_counter() - t0
    raise_if_diverged(res["outputs"], res["losses"], what=f"ResNet (L={L}, M={M})")
    return ResNetResult(
        outputs=res["outputs"], losses=res["losses"], u_displacement=res["u_displacement"],
        v_displacement=res["v_displacement"], forward=res["forward"], forward_steps=fsteps,
        s=np.arange(L + 1) / L, network=net,
        weights=(res["final_u"], res["final_v"]) if keep_weights else None,
        config=dict(steps=steps, seeds=seeds, seed=int(seed), tied=bool(tied), dtype=str(dt),
                    chunk=chunk, wall_time_s=wall))


def simulate_resnet(X, Y, *, depth: int, hidden: int, steps: int, activation="tanh", unit="mlp",
                    alpha: float = 1.0, sigma_u=None, sigma_v=None, lr_u=None, lr_v=None,
                    seeds: int = 1, seed: int = 0, tied: bool = False, init=None, forward_steps=None,
                    dtype=jnp.float32, keep_weights: bool = False,
                    max_memory: int | None = None, devices=None) -> ResNetResult:
    """Train finite ResNets with hidden width M (Eq. 1/24) by full-batch GD, many seeds at once.

    Builds ``nfd.MeanODEResNet(dim=X.shape[1], depth, hidden, ...)`` (defaults: tanh, α = 1,
    σ_u = σ_v = √D, η_u = η_v = D, the setting of §2.4) and calls
    :func:`simulate_resnet_network` (which documents ``devices``).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0); X, Y = rng.normal(size=(2, 5, 3))
        >>> r = simulate_resnet(X, Y, depth=16, hidden=2, steps=10, seeds=3)
        >>> r.outputs.shape, r.losses.shape
        ((3, 11, 5, 3), (3, 11))
    """
    X, Y = check_vector_data(X, Y)
    net = MeanODEResNet(dim=X.shape[1], depth=depth, hidden=hidden, unit=unit, activation=activation,
                        alpha=alpha, sigma_u=sigma_u, sigma_v=sigma_v, lr_u=lr_u, lr_v=lr_v)
    return simulate_resnet_network(net, X, Y, steps=steps, seeds=seeds, seed=seed, tied=tied, init=init,
                                   forward_steps=forward_steps, dtype=dtype, keep_weights=keep_weights,
                                   max_memory=max_memory, devices=devices)
