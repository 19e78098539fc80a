"""The Neural Mean ODE (Eq. 10–14) and the Neural Tangent ODE (Eq. 18–21), solved with particles.

Discretisation.  The limit is parameterised by a process Z_k(s) = (U_k(s), V_k(s)), s ∈ [0, 1],
started from a constant Z_0(s) = Z_0 ~ μ_0.  Since the update of Z_k(s, ω) depends on ω only
through Z_k(s, ω), Z_k(s) is a deterministic function of (s, Z_0): one particle z_p ~ μ_0
carries a whole curve s ↦ Z_k(s, z_p).  We represent μ_0 by P particles and s by a uniform
grid of N steps, and solve

* the forward Mean ODE ∂_s h = α E[φ(h, Z(s))] by the explicit Euler scheme,
* the backward (adjoint) Mean ODE and the mean-field gradient g_i(s, ·) by the exact reverse-mode
  derivative of that scheme (the discrete adjoint: a consistent Euler scheme for Eq. 12–13),
* GD in the L² geometry, Z_{k+1}(s) = Z_k(s) − (η/α²)∇L(Z_k) (Eq. 11), where the L² gradient of
  the discretised objective is N·P times its Euclidean gradient.

This is exactly the training of a weight-tied ResNet with L = N and M = P (see
:mod:`nfd.meanode._core`, which both share): the errors are a depth-discretisation error
O(1/N) and a Monte-Carlo error of the particle measure.  ``richardson=True`` removes the leading
O(1/N) term by combining the N- and 2N-step solutions (2·o_{2N} − o_N): on the same particles
for ``coupling="common"`` (then the extrapolation is exact up to O(1/N²)), on independent fresh
particles for ``coupling="independent"`` (the Monte-Carlo variance grows by a factor 3/2 relative
to the 2N-grid alone, and the replicate spread accounts for it).

Monte-Carlo error.  With particles shared by all grid points (``coupling="common"``, the
literal discretisation of the constant-in-s initialisation) the sampling error does not average
over depth, so it is O(1/√P) for i.i.d. particles.  It is reduced by

* ``sampler="antithetic"``: pairs (u, v), (u, −v); for units odd in v (the MLP unit) the initial
  E[φ] = 0 and E[D₁φ] = 0 are then exact and the dynamics' leading odd part cancels;
* ``sampler="sobol"``: scrambled Sobol points in the 2D-dimensional unit cube mapped through
  the Gaussian quantile (randomised quasi-Monte-Carlo);
* ``sampler="sobol_antithetic"``: both;
* ``coupling="independent"``: fresh particles at each grid point (like the finite ResNet, whose
  L·M weights are all independent), so the error also averages over the N grid points.

``replicates`` independent randomisations run at once; the result is their mean, and their
spread gives ``outputs_stderr``, an honest Monte-Carlo error bar.  The choice of defaults was
measured in ``benchmarks/mean_ode.py`` (see docs/mean_ode.md).

Lazy regime.  ``lazy=True`` solves the Neural Tangent ODE: ζ_0 = 0 and
∂_s h = E[D₂φ(h, Z_0) ζ(s)], its adjoint and ζ_{k+1} = ζ_k − (η/n)Σ_i g_i(s, Z_0, ζ_k), again by
Euler + discrete adjoint with the same particles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .._memory import check_device_memory
from .._model import MeanODEResNet
from .. import _checkpoint, _driver
from .._divergence import Divergence, check_policy, find
from .._results import Status, result
from .._validate import check_bool, check_bytes, check_choice, check_fits, check_int, check_seed
from .._sharding import check_divisible, make_mesh, place, resolve_devices, shard_along, to_host
from ._core import hyper_array, jitted, static_of, train_bytes
from ._finite import _check_forward_steps, _check_steps, _dtype, check_vector_data

__all__ = ["solve_mean_ode", "solve_mean_ode_network", "mean_ode_problem", "MeanODEProblem", "MeanODEResult",
           "sample_particles", "SAMPLERS", "COUPLINGS"]

SAMPLERS = ("iid", "antithetic", "sobol", "sobol_antithetic")
COUPLINGS = ("common", "independent")


@result
class MeanODEResult:
    """What :func:`solve_mean_ode` returns (numpy arrays; a JAX pytree, see :func:`nfd._results.result`).

    Attributes:
        outputs: (K+1, n, D) h(1, x_i, Z_k), k = 0..K (mean over replicates).
        outputs_stderr: (K+1, n, D) standard error of ``outputs`` over the replicates (NaN for one).
        losses: (K+1,) L(Z_k) = (1/n)Σ ½‖h(1, x_i, Z_k) − y_i‖²/D of the mean outputs.
        forward: (S, N+1, n, D) the forward pass h(s, x_i, Z_k) at the GD steps ``forward_steps``.
        forward_steps: the S recorded steps.
        s: (N+1,) depth grid.
        u_displacement, v_displacement: (K+1,) ‖U_k − U_0‖ and ‖V_k − V_0‖ (RMS over s, particles
            and entries); for ``lazy=True`` the RMS of ζ_u, ζ_v instead (Ẑ − Z_0 ≈ ζ/α).
        replicate_outputs: (R, K+1, n, D) each replicate's outputs.
        network: the limit :class:`~nfd.MeanODEResNet` (depth = hidden = None).
        config: grid, particles, sampler, coupling, replicates, lazy, richardson, seed, dtype,
            devices (how many the particles were split over), wall_time_s.
        status: :class:`~nfd.Status`: the first non-finite GD step and replicate, or ``None``.
    """

    outputs: np.ndarray
    outputs_stderr: np.ndarray
    losses: np.ndarray
    forward: np.ndarray
    forward_steps: tuple
    s: np.ndarray
    u_displacement: np.ndarray
    v_displacement: np.ndarray
    replicate_outputs: np.ndarray
    network: MeanODEResNet
    config: dict
    status: Status = Status()

    @property
    def final(self) -> np.ndarray:
        """(n, D) outputs after the last GD step."""
        return self.outputs[-1]


def _gauss_from_sobol(P: int, d: int, seed) -> np.ndarray:
    from scipy.special import ndtri
    from scipy.stats import qmc

    with warnings.catch_warnings():
        # N·Q points with Q = 2^m: every aligned block of Q points is balanced (a (t, m, s)-net),
        # even when N is not a power of two.
        warnings.filterwarnings("ignore", message=".*balance properties.*")
        pts = qmc.Sobol(d=d, scramble=True, seed=np.random.default_rng(seed)).random(P)
    return ndtri(np.clip(pts, 1e-15, 1 - 1e-15))


def sample_particles(net: MeanODEResNet, P: int, *, sampler: str = "sobol_antithetic",
                     seed=0, layers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """P particles (U (P, p_u), V (P, p_v)) of μ_0 = N(0, σ_u²)^{p_u} ⊗ N(0, σ_v²)^{p_v}.

    ``seed`` is anything ``numpy.random.default_rng`` accepts (e.g. a tuple (seed, replicate)).
    ``layers=N`` returns N fresh sets, shapes (N, P, p): for Sobol samplers these are N consecutive
    blocks of P (or P/2) points of one scrambled Sobol sequence, each block a (t, m, s)-net, so every
    layer is a balanced quasi-random set and the union over layers is one too.

    Example:
        >>> import nfd
        >>> U, V = sample_particles(nfd.MeanODEResNet(dim=3), 8, sampler="antithetic")
        >>> bool((V[:4] == -V[4:]).all() and (U[:4] == U[4:]).all()), U.shape
        (True, (8, 3))
    """
    p_u, p_v = net.param_sizes
    d = p_u + p_v
    anti = sampler in ("antithetic", "sobol_antithetic")
    Q = P // 2 if anti else P
    N = 1 if layers is None else int(layers)
    if sampler.startswith("sobol"):
        G = _gauss_from_sobol(N * Q, d, seed)
    else:
        G = np.random.default_rng(seed).standard_normal((N * Q, d))
    G = G.reshape(N, Q, d)
    U, V = G[..., :p_u], G[..., p_u:]
    if anti:
        U, V = np.concatenate([U, U], axis=1), np.concatenate([V, -V], axis=1)
    U, V = net.sigma_u * U, net.sigma_v * V
    return (U[0], V[0]) if layers is None else (U, V)


def _check_choice(name, val, options):
    check_choice(name, val, options)


def _pos_int(name, v):
    return check_int(name, v, min=1)


_OUT_NAMES = ("outputs", "losses", "u_displacement", "v_displacement", "forward")


@dataclasses.dataclass(frozen=True, eq=False)
class _Checkpoint:
    """A Mean ODE solve is a sequence of runs (replicates, then the 2N grid of Richardson), each of
    K + 1 GD iterations.  A checkpoint holds the results of the finished runs and, mid-run, the
    current run's carry (parameters (N, P, p), recorded forward passes, outputs so far) after
    ``it`` iterations.  NPZ of raw bytes + JSON metadata with the problem's fingerprint, written
    atomically by process 0 (the particle shards are gathered first, so every process calls it).
    """

    path: str
    fingerprint: str
    mesh: object
    info: dict

    def save(self, done, run, it, carry) -> None:
        arrays = {f"done/{i}/{k}": res[k] for i, res in enumerate(done) for k in _OUT_NAMES}
        if carry is not None:
            (pu, pv), buf, outs = carry
            arrays.update({"carry/params_u": pu, "carry/params_v": pv, "carry/forward": buf})
            arrays.update({f"carry/outs/{k}": v for k, v in outs.items()})
        _checkpoint.write(self.path, arrays, dict(fingerprint=self.fingerprint, runs_done=len(done), run=run, it=it,
                                                  **self.info))

    def load(self):
        """(done results, run index, iterations done, carry or None), the carry on the devices."""
        meta, arr = _checkpoint.read(self.path, what="solve_mean_ode", fingerprint=self.fingerprint,
                                     differs="model, data, seed or options", info=tuple(self.info))
        done = [{k: arr[f"done/{i}/{k}"] for k in _OUT_NAMES} for i in range(meta["runs_done"])]
        carry = None
        if "carry/params_u" in arr:
            if self.mesh is None:
                ps = rep = None
            else:
                ps = NamedSharding(self.mesh, PartitionSpec(None, "particles", None))
                rep = NamedSharding(self.mesh, PartitionSpec())
            outs = {k[len("carry/outs/"):]: place(v, rep) for k, v in arr.items() if k.startswith("carry/outs/")}
            carry = ((place(arr["carry/params_u"], ps), place(arr["carry/params_v"], ps)),
                     place(arr["carry/forward"], rep), outs)
        return done, int(meta["run"]), int(meta["it"]), carry


@dataclasses.dataclass(frozen=True, eq=False)
class MeanODEProblem(_driver.Problem):
    """A validated Mean ODE solve that runs in pieces (see :mod:`nfd._driver`).

    The solve is a sequence of runs (the replicates, then the 2N grid of ``richardson``), each
    one segment of K + 1 GD iterations (the last only records Z_K); ``steps`` counts the
    iterations of all runs.  The state's carry is (finished runs' results on the host, the
    current run's device carry or ``None`` between runs).  Built by :func:`mean_ode_problem`,
    run by :func:`nfd._driver.run`.
    """

    network: MeanODEResNet
    K: int
    grids: tuple  # the grid of each run
    parts: Any  # parts(t) -> (U, V) host particles of run t
    shapes: tuple  # (P, p_u, p_v)
    args: tuple  # (X, Y, hyper) as jax arrays
    Y: np.ndarray
    fsteps: tuple
    lazy: bool
    mesh: Any
    dtype: Any
    fingerprint: str
    info: dict
    config: dict
    name = "solve_mean_ode"
    report_kw = dict(what="Mean ODE solver", quantity="output h^L", index_name="replicate",
                     hint="lower the learning rates lr_u/lr_v or the scales")

    @property
    def segment(self) -> int:
        return self.K + 1

    @property
    def steps(self) -> int:
        return len(self.grids) * (self.K + 1)

    def _ckpt(self, path) -> "_Checkpoint":
        return _Checkpoint(path=path, fingerprint=self.fingerprint, mesh=self.mesh, info=self.info)

    def _particles(self, t):
        """The device particles (Ng, P, p) of run t (sharded over the mesh's "particles" axis)."""
        Ng, (U, V) = self.grids[t], self.parts(t)
        P, p_u, p_v = self.shapes
        dt = self.dtype
        if self.mesh is not None:
            # (Ng, P, p) split along the particle axis: the particle means in the jitted core
            # become all-reduces over the "particles" mesh axis (GSPMD)
            U = shard_along(np.broadcast_to(np.asarray(U, dt), (Ng, P, p_u)), self.mesh, 1, "particles")
            V = shard_along(np.broadcast_to(np.asarray(V, dt), (Ng, P, p_v)), self.mesh, 1, "particles")
            return U, V
        U, V = jnp.asarray(U, dt), jnp.asarray(V, dt)
        if U.ndim == 2:
            U, V = jnp.broadcast_to(U, (Ng, P, p_u)), jnp.broadcast_to(V, (Ng, P, p_v))
        return U, V

    def init(self) -> _driver.State:
        return _driver.State(0, ((), None), self.fingerprint)

    def advance(self, state: _driver.State, steps: int | None = None, *, donate: bool = False) -> _driver.State:
        """``steps`` more GD iterations of the current run (default: to its end)."""
        _driver.check_state(self, state)
        n = _driver.check_steps(self, state, steps)
        if n == 0:
            return state
        S = self.segment
        t, it = divmod(state.step, S)
        done, carry = state.carry
        U, V = self._particles(t)
        Xj, Yj, hyper = self.args
        init, advance = jitted(static_of(self.network, self.grids[t], self.K, self.fsteps, self.lazy))
        if carry is None:
            carry = init(U, V, Xj)
        elif not donate:
            carry = jax.tree_util.tree_map(jnp.copy, carry)
        k0 = jnp.asarray(it)  # the same (default) integer type for every call: one program
        carry = advance(carry, k0, jnp.asarray(it + n, k0.dtype), U, V, Xj, Yj, hyper)
        if it + n == S:  # the run is finished: keep its results on the host
            _, buf, o = carry
            done, carry = done + (to_host(dict(o, forward=buf)),), None
        return _driver.State(state.step + n, (done, carry), self.fingerprint)

    def save(self, state: _driver.State, path) -> None:
        _driver.check_state(self, state)
        t, it = divmod(state.step, self.segment)
        done, carry = state.carry
        self._ckpt(path).save(list(done), t, it, carry)

    def load(self, path) -> _driver.State:
        done, t, it, carry = self._ckpt(path).load()
        return _driver.State(t * self.segment + it, (tuple(done), carry), self.fingerprint)

    def divergence(self, state: _driver.State):
        """The first GD step (and the run) with a non-finite output or loss, or ``None``."""
        done, carry = state.carry
        runs = [(r["outputs"], r["losses"]) for r in done]
        it = state.step % self.segment
        if carry is not None and it:
            o = to_host(carry[2])
            runs.append((o["outputs"][:it], o["losses"][:it]))
        found = [(d.step, t) for t, r in enumerate(runs) if (d := find(r)) is not None]
        if not found:
            return None
        step, t = min(found)
        return Divergence(step=step, index=t % self.info["replicates"])

    def solution(self, state: _driver.State, divergence=None) -> "MeanODEResult":
        _driver.check_state(self, state)
        if state.step != self.steps:
            raise ValueError(f"the run is at step {state.step} of {self.steps}; advance it to the end first")
        done = state.carry[0]
        R = self.info["replicates"]
        N = self.info["grid"]
        D = self.Y.shape[1]
        res = {k: np.stack([o[k] for o in done[:R]]) for k in done[0]}
        if len(done) > R:  # richardson: 2·(grid 2N) − (grid N)
            fine = {k: np.stack([o[k] for o in done[R:]]) for k in done[0]}
            res = dict(
                outputs=2 * fine["outputs"] - res["outputs"],
                losses=None,
                u_displacement=2 * fine["u_displacement"] - res["u_displacement"],
                v_displacement=2 * fine["v_displacement"] - res["v_displacement"],
                forward=2 * fine["forward"][:, :, ::2] - res["forward"],
            )
        rep = res["outputs"]
        if divergence is None:
            divergence = self.divergence(state)
        mean = rep.mean(0)
        se = rep.std(0, ddof=1) / math.sqrt(R) if R > 1 else np.full_like(mean, np.nan)
        rr = mean - self.Y
        losses = 0.5 * np.mean(np.sum(rr * rr, -1), -1) / D
        return MeanODEResult(
            outputs=mean, outputs_stderr=se, losses=losses, forward=res["forward"].mean(0),
            forward_steps=self.fsteps, s=np.arange(N + 1) / N, u_displacement=res["u_displacement"].mean(0),
            v_displacement=res["v_displacement"].mean(0), replicate_outputs=rep, network=self.network,
            config=dict(self.config), status=Status.of(divergence))


def mean_ode_problem(net: MeanODEResNet, X, Y, *, steps: int, grid: int = 100, particles: int = 1024,
                     sampler: str = "sobol_antithetic", coupling: str = "independent", replicates: int = 4,
                     lazy: bool = False, richardson: bool = False, seed: int = 0, particles_init=None,
                     forward_steps=None, dtype=None, max_memory: int | None = None,
                     devices=None) -> MeanODEProblem:
    """Validate a Mean ODE solve of ``net`` and check its memory; nothing is compiled or run.

    See :func:`solve_mean_ode` for the arguments (the run options ``checkpoint``,
    ``checkpoint_every``, ``progress`` and ``on_divergence`` belong to the driver,
    :func:`nfd._driver.run`).
    """
    if not isinstance(net, MeanODEResNet):
        raise ValueError(f"net must be an nfd.MeanODEResNet, got {type(net).__name__}")
    net = net.replace(depth=None, hidden=None)
    X, Y = check_vector_data(X, Y, net.dim)
    steps = _check_steps(steps)
    N = _pos_int("grid", grid)
    _check_choice("sampler", sampler, SAMPLERS)
    _check_choice("coupling", coupling, COUPLINGS)
    R = _pos_int("replicates", replicates)
    seed = check_seed(seed)
    max_memory = check_bytes("max_memory", max_memory)
    check_bool("lazy", lazy)
    check_bool("richardson", richardson)
    fsteps = _check_forward_steps(forward_steps, steps)
    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    dt = _dtype(dtype)
    check_fits("X", X, dt)
    check_fits("Y", Y, dt)
    if sampler in ("antithetic", "sobol_antithetic") and not net.unit.odd_in_v:
        raise ValueError(f"sampler={sampler!r} needs a unit odd in v; use 'iid' or 'sobol'")
    p_u, p_v = net.param_sizes
    Ug = Vg = None
    if particles_init is not None:
        try:
            Ug, Vg = (np.asarray(a, np.float64) for a in particles_init)
        except (TypeError, ValueError):
            raise ValueError("particles_init must be a pair (U, V) of arrays") from None
        if Ug.ndim != 2 or Vg.ndim != 2 or Ug.shape[1] != p_u or Vg.shape[1] != p_v or len(Ug) != len(Vg):
            raise ValueError(f"particles_init must have shapes (P, {p_u}) and (P, {p_v}), "
                             f"got {Ug.shape}, {Vg.shape}")
        P, R, coupling = len(Ug), 1, "common"
    else:
        P = _pos_int("particles", particles)
        if sampler in ("antithetic", "sobol_antithetic") and P % 2:
            raise ValueError(f"particles must be even for sampler={sampler!r}, got {P}")
        if sampler.startswith("sobol"):
            Q = P // 2 if "antithetic" in sampler else P
            if Q & (Q - 1):
                raise ValueError(f"sampler={sampler!r} needs particles = 2^m"
                                 f"{' × 2' if 'antithetic' in sampler else ''} (Sobol balance), got {P}")
    devs = resolve_devices(devices)
    if devs is not None:
        check_divisible(P, devs, "particles")
    mesh = None if devs is None else make_mesh(devs, "particles")
    n, D = X.shape
    grids = (N, 2 * N) if richardson else (N,)
    for Ng in grids:
        kw = dict(L=Ng, P=P, n=n, D=D, p=p_u + p_v, steps=steps, n_forward=len(fsteps), dtype=dt)
        est = R * train_bytes(**kw)
        est_dev = R * train_bytes(**kw, devices=1 if devs is None else len(devs))
        check_device_memory(est, est_dev, devices=devs, what=f"the Mean ODE solver (grid={Ng}, particles={P}, "
                            f"replicates={R})", hint="fewer particles, grid points or replicates, or more devices",
                            limit_bytes=max_memory)

    # ---- particles of run t = (grid g, replicate r): (P, p) shared over depth, or (Ng, P, p) ----
    run_grids = tuple(Ng for Ng in grids for _ in range(R))

    def parts(t):
        g, r = divmod(t, R)
        if Ug is not None:
            return Ug, Vg
        if coupling == "common":
            return sample_particles(net, P, sampler=sampler, seed=(int(seed), r))
        # fresh draws per grid point; the 2N grid of Richardson uses a key disjoint from the N grid
        return sample_particles(net, P, sampler=sampler, seed=(int(seed), r, 1 + g * N), layers=run_grids[t])

    model = (net.dim, net.unit.name, net.unit.odd_in_v, net.param_sizes, net.activation.name, net.alpha,
             net.sigma_u, net.sigma_v, net.lr_u, net.lr_v)
    ident = (model, steps, N, P, sampler, coupling, R, bool(lazy), bool(richardson), int(seed), fsteps, dt.name,
             Ug is not None)
    fingerprint = _checkpoint.fingerprint(ident, (X, Y) + ((Ug, Vg) if Ug is not None else ()))
    return MeanODEProblem(
        network=net, K=steps, grids=run_grids, parts=functools.lru_cache(maxsize=2)(parts), shapes=(P, p_u, p_v),
        args=(jnp.asarray(X, dt), jnp.asarray(Y, dt), hyper_array(net, dt)), Y=Y, fsteps=fsteps, lazy=bool(lazy),
        mesh=mesh, dtype=dt, fingerprint=fingerprint, info=dict(steps=steps, grid=N, particles=P, replicates=R),
        config=dict(steps=steps, grid=N, particles=P, sampler=sampler, coupling=coupling, replicates=R,
                    lazy=bool(lazy), richardson=bool(richardson), seed=int(seed), dtype=str(dt),
                    devices=1 if devs is None else len(devs)))


def solve_mean_ode_network(net: MeanODEResNet, X, Y, *, steps: int, grid: int = 100, particles: int = 1024,
                           sampler: str = "sobol_antithetic", coupling: str = "independent",
                           replicates: int = 4, lazy: bool = False, richardson: bool = False,
                           seed: int = 0, particles_init=None, forward_steps=None, dtype=None,
                           max_memory: int | None = None, devices=None, checkpoint=None,
                           checkpoint_every: int | None = None, progress: bool = False,
                           on_divergence: str = "raise") -> MeanODEResult:
    """Solve the Neural Mean ODE (or, ``lazy=True``, the Neural Tangent ODE) of ``net``.

    ``net.depth`` and ``net.hidden`` are ignored (the limit depends on neither).  See
    :func:`solve_mean_ode` for the arguments; ``particles_init`` = (U (P, p_u), V (P, p_v)) uses
    given particles (one replicate, shared over depth) instead of sampling.

    Example:
        >>> import numpy as np, nfd
        >>> rng = np.random.default_rng(0); X, Y = rng.normal(size=(2, 4, 3))
        >>> net = nfd.MeanODEResNet(dim=3)
        >>> res = solve_mean_ode_network(net, X, Y, steps=3, grid=10, particles=32, replicates=2,
        ...                              devices="all")  # P = 32 split over every device
        >>> res.outputs.shape
        (4, 4, 3)
    """
    checkpoint, checkpoint_every = _checkpoint.check_options(checkpoint, checkpoint_every, what="solve_mean_ode")
    check_policy(on_divergence)
    t0 = time.perf_counter()
    prob = mean_ode_problem(net, X, Y, steps=steps, grid=grid, particles=particles, sampler=sampler,
                            coupling=coupling, replicates=replicates, lazy=lazy, richardson=richardson, seed=seed,
                            particles_init=particles_init, forward_steps=forward_steps, dtype=dtype,
                            max_memory=max_memory, devices=devices)
    res = _driver.run(prob, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                      on_divergence=on_divergence)
    res.config["wall_time_s"] = time.perf_counter() - t0
    return res


def solve_mean_ode(X, Y, *, steps: int, grid: int = 100, particles: int = 1024,
                   sampler: str = "sobol_antithetic", coupling: str = "independent", replicates: int = 4,
                   lazy: bool = False, richardson: bool = False, activation="tanh", unit="mlp",
                   alpha: float = 1.0, sigma_u=None, sigma_v=None, lr_u=None, lr_v=None, model=None,
                   seed: int = 0, particles_init=None, forward_steps=None, dtype=None,
                   max_memory: int | None = None, devices=None, checkpoint=None,
                   checkpoint_every: int | None = None, progress: bool = False,
                   on_divergence: str = "raise") -> MeanODEResult:
    """Neural Mean ODE limit (L → ∞, any M) of a ResNet trained by full-batch GD on (X, Y).

    Also reachable as ``nfd.solve(X, Y, method="mean_ode", ...)``.

    Args:
        X: (n, D) training inputs (the whole training set; one full-batch GD step uses all n).
        Y: (n, D) targets in R^D; loss_i(h) = ½‖h − y_i‖²/D.
        steps: number K of GD steps.
        grid: number N of Euler steps in depth s ∈ [0, 1].
        particles: number P of particles representing μ_0 (per replicate).
        sampler: ``"sobol_antithetic"`` (default), ``"sobol"``, ``"antithetic"`` or ``"iid"``.
        coupling: ``"independent"`` (default: fresh particles at each grid point, so the
            Monte-Carlo error also averages over depth) or ``"common"`` (the same particles at every
            depth: the literal Z_0 constant in s).  The limit depends only on the marginal laws of
            Z_0(s) (all μ_0), so both estimate the same Mean ODE.
        replicates: independent randomisations R, averaged; their spread is ``outputs_stderr``.
        lazy: solve the Neural Tangent ODE (α → ∞ limit, Eq. 18–21) instead.
        richardson: extrapolate the grid-N and grid-2N solutions (removes the O(1/N) error).
        activation, unit, alpha, sigma_u, sigma_v, lr_u, lr_v: the model, as in
            :class:`~nfd.MeanODEResNet` (defaults: tanh MLP units, α = 1, σ = √D, η = D);
            or pass ``model=`` a :class:`~nfd.MeanODEResNet` instead.
        seed: integer seed of the particle draws.
        particles_init: explicit particles (U (P, p_u), V (P, p_v)), shared over depth.
        forward_steps: GD steps at which h(s, x_i) is recorded (default (0, K)).
        dtype: float32 or float64; default float64 when ``jax_enable_x64`` is on, else float32.
        max_memory: memory limit in bytes.
        devices: ``None`` (default device), ``"all"`` or a list of ``jax`` devices: split the P
            particles over them (a 1-D mesh with axis ``"particles"``; the particle arrays
            (N, P, p) are placed with ``PartitionSpec(None, "particles", None)`` and the particle
            means become all-reduces).  P must be a multiple of the device count.  The result
            equals the single-device one up to the order of floating-point summation.
        checkpoint: path of a checkpoint file (NPZ).  If it exists the solve resumes from it (it
            must belong to the same problem: model, data, seed and options, else ValueError); the
            state is written there (atomically) every ``checkpoint_every`` GD steps of each
            replicate run and when each run ends.  The GD loop is one compiled program with traced
            bounds, so a resumed solve is bit-identical to an uninterrupted one.
        checkpoint_every: GD steps between checkpoints (needs ``checkpoint``; default: only when a
            replicate (or the 2N grid of ``richardson``) finishes, and at the ``progress`` stops).
        progress: print the iteration (over all runs), elapsed and remaining time to stderr.
        on_divergence: ``"raise"`` (default; :class:`~nfd.DivergenceError` naming the GD step,
            checked whenever the run stops) or ``"return"`` (warn; ``status`` records the step).

    Returns:
        :class:`MeanODEResult` with ``.outputs`` (K+1, n, D), ``.losses`` (K+1,),
        ``.forward`` (S, N+1, n, D), ``.outputs_stderr``.

    Example:
        >>> import numpy as np, nfd
        >>> rng = np.random.default_rng(0); X, Y = rng.normal(size=(2, 4, 3))
        >>> res = nfd.solve(X, Y, method="mean_ode", steps=5, grid=20, particles=64, replicates=2)
        >>> res.outputs.shape, res.forward.shape
        ((6, 4, 3), (2, 21, 4, 3))
    """
    X, Y = check_vector_data(X, Y)
    if model is None:
        model = MeanODEResNet(dim=X.shape[1], unit=unit, activation=activation, alpha=alpha,
                              sigma_u=sigma_u, sigma_v=sigma_v, lr_u=lr_u, lr_v=lr_v)
    return solve_mean_ode_network(model, X, Y, steps=steps, grid=grid, particles=particles, sampler=sampler,
                                  coupling=coupling, replicates=replicates, lazy=lazy, richardson=richardson,
                                  seed=seed, particles_init=particles_init, forward_steps=forward_steps,
                                  dtype=dtype, max_memory=max_memory, devices=devices, checkpoint=checkpoint,
                                  checkpoint_every=checkpoint_every, progress=progress, on_divergence=on_divergence)
