"""The NFD particle recursion: the infinite-width limit of a depth-μP ResNet trained by SGD.

This is the training-time recursion of ``shared/notes/limit-recursions.md`` (NFD paper,
Definition 1, discretised with ``depth`` = L Euler–Maruyama steps of size τ = T/L).  Each
particle p = 1..P stands for one coordinate of the width-n network as n → ∞; expectations
E[·] are particle means.  For every training sample k (mini-batches add one path per sample)
and layer ℓ the solver keeps φ(h^(k)_{ℓ-1}), g^(k)_ℓ and the standard normals ξ, ξ̃ that
drive the Gaussian parts of W_ℓ φ(h)/√n and W_ℓᵀ g/√n::

    h^(k)_0 = U_p·x^(k)/√d − η_in Σ_{i<k} ℓ'_i (x^(i)·x^(k)/d) g^(i)_0
    h^(k)_ℓ = h^(k)_{ℓ-1} + √τ (ζ^(k)_ℓ + ż^(k)_ℓ) − τ η_hid Σ_{i<k} ℓ'_i Σ_{ℓ-1}[i,k] g^(i)_ℓ
    g^(k)_L = v_p − η_out Σ_{i<k} ℓ'_i h^(i)_L,     f̂^(k) = E[g^(k)_L h^(k)_L]
    g^(k)_{ℓ-1} = g^(k)_ℓ + √τ φ'(h^(k)_{ℓ-1}) (ζ̃^(k)_ℓ + ż̃^(k)_ℓ)
                  − τ η_hid Σ_{i<k} ℓ'_i Θ_ℓ[i,k] φ(h^(i)_{ℓ-1}) φ'(h^(k)_{ℓ-1})

with Σ_{ℓ-1}[i,k] = E[φ(h^(i)_{ℓ-1}) φ(h^(k)_{ℓ-1})], Θ_ℓ[i,k] = E[g^(i)_ℓ g^(k)_ℓ],
ζ_ℓ = chol(Σ_{ℓ-1}) ξ_ℓ and ζ̃_ℓ = chol(Θ_ℓ) ξ̃_ℓ (the Cholesky factors grow by one row per
sample; their leading blocks never change, so earlier ζ stay valid).  ``ℓ'_i`` is the loss
derivative divided by the batch size, and a sum over i < k runs over samples of earlier steps.
The rates η_in, η_hid, η_out equal η_c for trained groups and 0 for frozen ones.

* ``backward="gia"``: ż = ż̃ = 0 (the published NFD, the exact n → ∞ limit of the
  *decoupled* network, whose backward pass uses an independent copy W̃_ℓ).
* ``backward="exact"``: the Tensor-Program correction terms (TP VI, Definition 4.1) of the
  ordinary coupled network, evaluated with Stein's lemma::

      ż^(k)_ℓ  = Σ_{i<k} g^(i)_ℓ E[∂φ(h^(k)_{ℓ-1})/∂ζ̃^(i)_ℓ],   E[∂F/∂ζ̃] = chol(Θ_ℓ)^{-T} E[F ξ̃]
      ż̃^(k)_ℓ = Σ_{i≤k} φ(h^(i)_{ℓ-1}) E[∂g^(k)_ℓ/∂ζ^(i)_ℓ],   E[∂F/∂ζ] = chol(Σ_{ℓ-1})^{-T} E[F ξ]

``block="post_ms"`` (Tensor Programs VI §6.3, h_ℓ = h_{ℓ-1} + √τ MS(φ(W_ℓ h_{ℓ-1}/√n)), exact mode
only; derivation in docs/tp6_nonlinear.md): W_ℓ multiplies h_{ℓ-1} and W_ℓᵀ multiplies
δ_ℓ = φ'(y_ℓ) MS(g_ℓ), and the mean subtraction becomes minus the particle mean::

    y^(k)_ℓ = ζ^(k)_ℓ + ż^(k)_ℓ − √τ η_hid Σ_{i<k} ℓ'_i Σ_{ℓ-1}[i,k] δ^(i)_ℓ,   h^(k)_ℓ = h^(k)_{ℓ-1} + √τ (φ(y) − E φ(y))
    g^(k)_{ℓ-1} = g^(k)_ℓ + √τ (ζ̃^(k)_ℓ + ż̃^(k)_ℓ) − τ η_hid Σ_{i<k} ℓ'_i Θ_ℓ[i,k] h^(i)_{ℓ-1}

with Σ = E[h h], Θ = E[δ δ] and ż, ż̃ as above with (h, δ) in place of (φ(h), g).

Near-singular Σ or Θ (identical samples, more samples than particles, ReLU paths that are
exactly zero) are handled by a positive-semidefinite Cholesky: a pivot whose Schur complement
is below ``singular_tol`` × its variance is dropped (that ζ becomes an exact combination of the
earlier ones), counted and reported in the result (``on_singular="warn"`` also warns,
``on_singular="raise"`` raises :class:`~nfd.SingularCovarianceError`).  With a frozen output
layer g^(k)_L = v for every k, so Θ_L is singular by construction and dropping is exactly right.

Cost: O(P·L·K²) time, (4·L + 2)·K·P + 4·L·K² numbers of memory (K = number of samples).  Step s
reads the histories' filled rows only (rounded up to one of ``READ_CHUNKS`` prefix lengths; on by
default for large solves, :func:`_read_chunks`), about 0.6 of the preallocated K rows on average.

Scaling out (docs/scaling.md): ``devices=`` shards the particle axis over a ``jax.sharding`` mesh
(every particle mean E[·] becomes an all-reduce, inserted by XLA's SPMD partitioner; the normals
come from counter-based threefry keys, so every device draws its own slice of the same numbers);
``storage_dtype=`` keeps the O(L·K·P) histories in bfloat16/float16; ``noise="regenerate"``
recomputes ξ, ξ̃ from their keys instead of storing them; ``sampling="sobol"`` draws every particle's
Gaussians from one point of a scrambled Sobol sequence (randomised quasi-Monte Carlo: the same
law, a smaller spread); :class:`ParticleProblem` runs the solve
in pieces with one compiled program (traced loop bounds), so checkpoint → resume is bit-identical
to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.sharding import NamedSharding, PartitionSpec

from .._errors import SingularCovarianceError
from .._losses import loss_grad, loss_value
from .._memory import check_device_memory, format_bytes
from .._model import ResNet
from .._random import normal as _flat_normal
from .. import _checkpoint, _driver
from .._divergence import check_policy, find
from .._results import Status, result
from .._sharding import check_divisible, make_mesh, place, resolve_devices, to_host
from .._validate import (check_bool, check_bytes, check_choice, check_data, check_dtype, check_float, check_inputs_2d,
                         check_int, check_seed, check_test_inputs, seed_key)

__all__ = ["solve_particles", "solve_particles_network", "particle_problem", "ParticleProblem", "ParticleState",
           "ParticleSolution", "estimate_particle_memory", "BACKWARDS", "DEFAULT_BACKWARD", "default_singular_tol"]

BACKWARDS = ("gia", "exact")
# The limit of what nfd.simulate builds by default (ordinary, coupled networks); "gia" is the
# published NFD (the limit of decoupled networks).
DEFAULT_BACKWARD = "exact"


def default_singular_tol(dtype) -> float:
    """The default ``singular_tol`` of a particle solve in ``dtype`` (the one place it is set).

    ≈100× the roundoff level of a Schur complement computed from particle Gram matrices
    (measured: −1e-6 relative in float32); ill-conditioned Θ_L (g^(k)_L = v − Σ c_i h^(i)_L with
    small c_i) otherwise amplifies roundoff until float32 runs diverge.
    """
    return 1e-4 if jnp.dtype(dtype) == jnp.float32 else 1e-10

# Pivot of a dropped (singular) direction in the stored, solve-ready Cholesky factor: large
# enough that a triangular solve gives ~0 for that component, small enough never to overflow.
_BIG = 1e30


@result
class ParticleSolution:
    """What :func:`solve_particles` returns (numpy arrays; a JAX pytree, see :func:`nfd._results.result`).

    Attributes:
        outputs: (K,) f̂^(k) = E[g^(k)_L h^(k)_L], the output on sample k before update k.
        losses: (K,) ℓ(f̂^(k), y^(k)).
        test_outputs: (steps, N) outputs on ``X_test`` before each step, or ``None``.
        sigma: (L, K, K) ``Σ_{ℓ-1}[i, k] = E[φ(h^(i)_{ℓ-1}) φ(h^(k)_{ℓ-1})]``, ℓ = 1..L (forward kernels;
            ``E[h^(i)_{ℓ-1} h^(k)_{ℓ-1}]`` for ``block="post_ms"``, whose W_ℓ multiplies h).
        theta: (L, K, K) Θ_ℓ[i, k] = E[g^(i)_ℓ g^(k)_ℓ], ℓ = 1..L (backward kernels; E[δ^(i)_ℓ δ^(k)_ℓ]
            with δ_ℓ = φ'(y_ℓ)(g_ℓ − E g_ℓ) for ``block="post_ms"``).
        sigma_min_eig: (L,) smallest eigenvalue of Σ_{ℓ-1} over all K samples (Assumption 1).
        theta_min_eig: (L,) smallest eigenvalue of Θ_ℓ.
        sigma_min_pivot: (L,) smallest Cholesky pivot ratio (Schur complement / variance) seen
            while growing chol(Σ_{ℓ-1}); near 0 means a near-singular Σ.
        theta_min_pivot: (L,) the same for Θ_ℓ.
        dropped_pivots: number of pivots dropped as singular (forward, backward).
        features: (K, L+1, P) particle paths h^(k)_ℓ if ``record_paths``, else ``None``.
        grads: (K, L+1, P) particle paths g^(k)_ℓ if ``record_paths``, else ``None``.
        network: the :class:`~nfd.ResNet` (width ``None``) that was solved.
        config: the remaining arguments (particles, backward, seed, batch_size, dtype, ...).
        status: :class:`~nfd.Status`: divergence (step, or ``None``) and dropped pivots.
        outputs_stderr: (K,) standard error of ``outputs``: the standard deviation (ddof=1) of the
            R replicate systems' outputs / √R (NaN for ``replicates=1``).  It measures the
            Monte-Carlo error only; the O(R/P) particle bias of each replicate is not in it.
        losses_stderr, test_outputs_stderr, sigma_stderr, theta_stderr: the same for ``losses``,
            ``test_outputs``, ``sigma`` and ``theta`` (each of those is the mean over replicates).
        replicate_outputs: (R, K) each replicate's outputs (for paired comparisons,
            :func:`nfd.paired_difference`).
        replicate_losses: (R, K) each replicate's losses.
        replicate_test_outputs: (R, steps, N) each replicate's test outputs, or ``None``.
        replicate_sigma, replicate_theta: (R, L, K, K) each replicate's kernels.

    With ``replicates=R`` the P particles form R independent systems of P/R particles (each with its
    own key, ``jax.random.split`` of the seed's key), run together; every reported number is the mean
    over the replicates, and ``features``/``grads`` hold all R·(P/R) particles.
    """

    outputs: np.ndarray
    losses: np.ndarray
    test_outputs: np.ndarray | None
    sigma: np.ndarray
    theta: np.ndarray
    sigma_min_eig: np.ndarray
    theta_min_eig: np.ndarray
    sigma_min_pivot: np.ndarray
    theta_min_pivot: np.ndarray
    dropped_pivots: tuple[int, int]
    features: np.ndarray | None
    grads: np.ndarray | None
    network: ResNet
    config: dict
    status: Status = Status()
    outputs_stderr: np.ndarray | None = None
    losses_stderr: np.ndarray | None = None
    test_outputs_stderr: np.ndarray | None = None
    sigma_stderr: np.ndarray | None = None
    theta_stderr: np.ndarray | None = None
    replicate_outputs: np.ndarray | None = None
    replicate_losses: np.ndarray | None = None
    replicate_test_outputs: np.ndarray | None = None
    replicate_sigma: np.ndarray | None = None
    replicate_theta: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything that fixes the compiled program (shapes and branches)."""

    P: int
    L: int
    d: int
    steps: int
    B: int
    N: int  # test inputs (0: none)
    exact: bool
    activation: Any
    loss: str
    record_paths: bool
    dtype: Any
    refine: int = 1  # Brownian refinement: each layer's normals are sums of `refine` finer ones
    storage: Any = None  # dtype of the stored particle histories (None: dtype)
    noise: str = "store"  # "store" the normals ξ, ξ̃ or "regenerate" them from their counter-based keys
    mesh: Any = None  # jax.sharding.Mesh with a "particles" axis, or None (one device)
    sampling: str = "iid"  # how the particles' Gaussians are drawn (see _draw)
    R: int = 1  # independent replicate systems of P particles each, vmapped over a leading axis
    block: str = "pre"  # "pre" (Eq. 1) or "post_ms" (TP VI §6.3, exact backward only; docs/tp6_nonlinear.md)
    # History reads at step s touch only the filled rows (< s·B, or < s·B + B for this step's
    # updated arrays), rounded up to one of ``read_chunks`` prefix lengths (:func:`_prefixes`);
    # 1 reads every preallocated row (the earlier code); None: :func:`_read_chunks` decides by size.
    # Results differ only in summation order.  Not in the repr (the checkpoint fingerprint): it
    # does not change what is computed.
    read_chunks: int | None = dataclasses.field(default=None, repr=False)


# Counts traces of the compiled solver (tests check there is one per problem size).
TRACE_COUNT = [0]


def _robust_chol(S, scale, tol):
    """Lower Cholesky factor of a small PSD block S (B, B), dropping near-zero pivots.

    A pivot whose Schur complement is ≤ tol·scale[j] gets a zero column (the direction is
    an exact linear combination of earlier ones).  Returns (D, pivot_ratio (B,), dropped (B,)).
    """
    B = S.shape[0]
    idx = jnp.arange(B)

    def body(j, carry):
        D, ratio, dropped = carry
        col = S[:, j] - D @ D[j]
        piv = col[j]
        sc = jnp.maximum(scale[j], jnp.finfo(S.dtype).tiny)
        ok = piv > tol * sc
        dj = jnp.sqrt(jnp.where(ok, piv, 1.0))
        newcol = jnp.where((idx > j) & ok, col / dj, 0.0)
        newcol = jnp.where(idx == j, jnp.where(ok, dj, 0.0), newcol)
        D = D.at[:, j].set(newcol)
        ratio = ratio.at[j].set(piv / sc)
        dropped = dropped.at[j].set(~ok)
        return D, ratio, dropped

    init = (jnp.zeros_like(S), jnp.ones((B,), S.dtype), jnp.zeros((B,), bool))
    return jax.lax.fori_loop(0, B, body, init)


def _grow(Lsolve, past_cross, new_gram, start, tol):
    """Extend a Gaussian family by B new members.

    Args:
        Lsolve: (H, H) solve-ready Cholesky factor of the existing members (rows ≥ start are
            identity rows; dropped pivots hold ``_BIG``).
        past_cross: (H, B) covariances of the existing members with the new ones (rows ≥ start 0).
        new_gram: (B, B) covariance among the new members.
        start: index of the first new member (traced).

    Returns:
        (A (H, B), D (B, B), rows_solve (B, H), pivot ratios (B,), dropped flags (B,)): the new
        members are ζ = Aᵀ ξ_old + D ξ_new, jointly Gaussian with the existing ζ = chol·ξ_old
        (the caller forms Aᵀ ξ_old, from stored or regenerated ξ); ``rows_solve`` are the new
        rows of the solve-ready factor.
    """
    A = solve_triangular(Lsolve, past_cross, lower=True)  # (H, B)
    S = new_gram - A.T @ A
    S = 0.5 * (S + S.T)
    D, ratio, dropped = _robust_chol(S, jnp.diagonal(new_gram), tol)
    Dsolve = D + jnp.diag(jnp.where(dropped, _BIG, 0.0).astype(D.dtype))
    rows_solve = jax.lax.dynamic_update_slice(A.T, Dsolve, (0, start))
    return A, D, rows_solve, ratio, dropped


def _condition_each(Lsolve, past_cross, var):
    """M extra paths (test inputs), each conditioned on the existing members only.

    Their joint law among themselves is irrelevant (each test output is a marginal mean), so
    each gets an independent fresh normal: ζ = Aᵀ ξ_old + sd ⊙ ξ_new.  past_cross (H, M),
    var (M,); returns (A (H, M), sd (M,)).
    """
    A = solve_triangular(Lsolve, past_cross, lower=True)
    s = jnp.maximum(var - jnp.sum(A * A, axis=0), 0.0)
    return A, jnp.sqrt(s)


# Arrays of the solver state whose last axis is the particle axis (sharded over "particles";
# stored in ``storage`` precision).  Everything else (kernels, Cholesky rows, loss derivatives)
# is O(L·K²) and replicated on every device.
_PARTICLE_KEYS = ("Phi", "G", "hL", "Xi", "Xit", "Hp", "D")


# ---- the compiled program: module-level functions of the frozen static description ----------
# 16-bit histories live in uint16 containers holding their bit patterns: updating a slice of a
# bfloat16/float16 array makes XLA's CPU backend widen the whole array to float32 (float
# normalisation), which would undo the saving; integer slices are updated in place.


def _sdt(st: _Static):
    """dtype of the stored particle histories."""
    return jnp.dtype(st.storage) if st.storage is not None else jnp.dtype(st.dtype)


def _cdt(st: _Static):
    """dtype of the containers of the histories (uint16 bit patterns for 16-bit storage)."""
    sdt = _sdt(st)
    return jnp.dtype(jnp.uint16) if sdt.itemsize == 2 else sdt


def _pack(st: _Static, x):
    sdt, cdt = _sdt(st), _cdt(st)
    x = x.astype(sdt)
    return jax.lax.bitcast_convert_type(x, cdt) if cdt != sdt else x


def _unpack(st: _Static, x):
    sdt, cdt = _sdt(st), _cdt(st)
    x = jax.lax.bitcast_convert_type(x, sdt) if cdt != sdt else x
    return x.astype(st.dtype)


def _rnd(st: _Static, x):
    """x as it will be stored.  Kernels are Gram matrices of stored vectors only (new rows
    included), so with a narrow ``storage`` Σ and Θ stay exactly consistent (positive
    semidefinite, with true small pivots) instead of mixing rounded and unrounded vectors."""
    return _unpack(st, _pack(st, x)) if _sdt(st) != jnp.dtype(st.dtype) else x


def _pc(st: _Static, x, axis=-1):
    """Shard ``axis`` (the particle axis) of x over the mesh; identity without one."""
    if st.mesh is None:
        return x
    spec = [None] * x.ndim
    spec[axis] = "particles"
    return jax.lax.with_sharding_constraint(x, NamedSharding(st.mesh, PartitionSpec(*spec)))


def _rep(st: _Static, x):
    if st.mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(st.mesh, PartitionSpec()))


SAMPLINGS = ("iid", "sobol")
# Dimensions of scipy's Sobol direction numbers (Joe & Kuo); later Gaussians are drawn iid (padding).
_SOBOL_MAXDIM = 21201


@functools.lru_cache(maxsize=8)
def _sobol_table(dims: int, m: int) -> np.ndarray:
    """Sobol direction numbers (dims, m) as uint32: the unscrambled point at position 2^b of each
    dimension (the first 2^m points x(p) = XOR_b bit_b(p)·V_b are the same (t, m, s)-net)."""
    from scipy.stats import qmc

    sob = qmc.Sobol(dims, scramble=False, bits=32)
    V = np.empty((dims, m), np.uint32)
    for b in range(m):
        sob.reset()
        sob.fast_forward(2**b)
        V[:, b] = np.round(sob.random(1)[0] * 2.0**32).astype(np.uint64).astype(np.uint32)
    return V


def _sobol_dims(st: _Static) -> int:
    """Gaussian coordinates of one particle: U (d), v (1), then L·refine bridge coordinates for
    each of the steps·(2B + N) rows (forward B, backward B, test N per step); see :func:`_draw`."""
    return st.d + 1 + st.steps * (2 * st.B + st.N) * st.L * st.refine


def _uniform(x, dtype):
    """uint32 digits x → the midpoints of their cells in (0, 1), never 0 or 1 in ``dtype``."""
    if jnp.dtype(dtype) == jnp.float64:
        return (x.astype(jnp.float64) + 0.5) * 2.0**-32
    return ((x >> 9).astype(dtype) + 0.5) * 2.0**-23  # 23 bits: u ≤ 1 − 2⁻²⁴ < 1 exactly in float32


def _sobol_normals(st: _Static, key, dims):
    """Standard normals (len(dims), P): coordinates ``dims`` of P points of a scrambled Sobol
    sequence (random linear matrix scramble + digital shift, Matoušek 1998 / scipy's scheme, each
    dimension randomised by ``fold_in(key, dim)``), mapped through Φ⁻¹.  Dimensions beyond the
    direction-number table get iid normals.  A pure function of (key, dims)."""
    P = st.P
    m = max(P.bit_length() - 1, 1)
    Dt = min(_sobol_dims(st), _SOBOL_MAXDIM)
    V = jnp.asarray(_sobol_table(Dt, m))[jnp.minimum(dims, Dt - 1)]  # (R, m) uint32
    bits = jax.vmap(lambda j: jax.random.bits(jax.random.fold_in(key, j), (33,), jnp.uint32))(dims)  # (R, 33)
    # lower-triangular unit-diagonal GF(2) matrix: output digit k (bit 31-k) = parity(V & mask_k)
    kk = jnp.arange(32, dtype=jnp.uint32)
    high = jnp.where(kk == 0, jnp.uint32(0), jnp.left_shift(jnp.uint32(0xFFFFFFFF), (32 - kk) % 32))
    masks = (bits[:, :32] & high) | jnp.left_shift(jnp.uint32(1), 31 - kk)  # (R, 32)
    par = jax.lax.population_count(V[:, :, None] & masks[:, None, :]) & 1  # (R, m, 32)
    Vs = jnp.sum(jnp.left_shift(par, 31 - kk), axis=-1, dtype=jnp.uint32)  # disjoint bits: sum = OR
    p = _pc(st, jnp.arange(P, dtype=jnp.uint32))
    on = (p[None, :, None] >> jnp.arange(m, dtype=jnp.uint32)) & 1 == 1  # (1, P, m): bit b of p
    x = jnp.bitwise_xor.reduce(jnp.where(on, Vs[:, None, :], jnp.uint32(0)), axis=-1)  # (R, P)
    x = x ^ bits[:, 32:33]  # the digital shift
    z = jax.scipy.special.ndtri(_uniform(x, st.dtype)).astype(st.dtype)
    if _sobol_dims(st) > _SOBOL_MAXDIM:
        kp = jax.random.fold_in(key, _SOBOL_MAXDIM)  # never a dimension key (those are < _SOBOL_MAXDIM)
        iid = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(kp, j), (P,), st.dtype))(dims)
        z = jnp.where((dims < Dt)[:, None], z, iid)
    return z


_ROW0 = {"fwd": 0, "bwd": 1, "test": 2}  # forward rows, backward rows (offset B), test rows (offset 2B)


@functools.lru_cache(maxsize=32)
def _bridge(L: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The Brownian-bridge construction of L·m standard normal increments, summed in blocks of m.

    The path W at fine times 1..n (n = L·m) is built from coordinates z_0, z_1, ...: z_0 gives
    W_n, then each interval is split at its midpoint, W_t = ((b−t)W_a + (t−a)W_b)/(b−a) +
    √((t−a)(b−t)/(b−a)) z_j, coarse intervals first, so the first coordinates carry most of the
    path's variance.  Layer l's normal is (W_{(l+1)m} − W_{lm})/√m = Σ_j M[l, j] z_j; M has
    orthonormal rows and O(log n) non-zeros each.  Returns (index (L, J), weight (L, J)) of the
    non-zeros (padded with weight 0), J the most in a row."""
    n = L * m
    A = np.zeros((n + 1, n))  # W_t = A[t] @ z, W_0 = 0
    A[n, 0] = math.sqrt(n)
    j, todo = 1, [(0, n)]
    while todo:
        nxt = []
        for a, b in todo:
            if b - a < 2:
                continue
            t = (a + b) // 2
            A[t] = ((b - t) * A[a] + (t - a) * A[b]) / (b - a)
            A[t, j] = math.sqrt((t - a) * (b - t) / (b - a))
            j += 1
            nxt += [(a, t), (t, b)]
        todo = nxt
    M = (A[m::m] - A[:-m:m]) / math.sqrt(m)  # (L, n)
    nz = np.abs(M) > 1e-12
    J = int(nz.sum(axis=1).max())
    idx = np.zeros((L, J), np.int32)
    w = np.zeros((L, J))
    for l in range(L):
        cols = np.nonzero(nz[l])[0]
        idx[l, :len(cols)] = cols
        w[l, :len(cols)] = M[l, cols]
    return idx, w


def _iid(st: _Static, key, shape):
    """``jax.random.normal(key, shape, st.dtype)``.  On one device it is drawn flat and reshaped
    (the same numbers; the rank-1 generator compiles several times faster on CPU, nfd/_random.py);
    with a particle mesh the shaped draw is kept, so that its sharding needs no reshuffle."""
    if st.mesh is None:
        return _flat_normal(key, shape, st.dtype)
    return jax.random.normal(key, shape, st.dtype)


def _draw(st: _Static, key, shape, group, l=0, s=0):
    """Standard normals of ``shape`` = (rows, P) (or (P, d) for U, (P,) for v) of ``group``
    ("U", "v", "fwd", "bwd", "test"), layer ``l``, step ``s``: iid, or for ``sampling="sobol"``
    coordinates of the particles' scrambled Sobol points: U, v the first d + 1, then each row's
    increments over depth by a Brownian bridge (:func:`_bridge`) with coordinate j of row ρ in
    dimension d + 1 + j·R + ρ (R rows in all: the first bridge coordinates of every row come first)."""
    if st.sampling == "iid":
        return _iid(st, key, shape)
    if group == "U":
        return _sobol_normals(st, key, jnp.arange(st.d)).T
    if group == "v":
        return _sobol_normals(st, key, jnp.full((1,), st.d))[0]
    rows = shape[0]
    n_rows = st.steps * (2 * st.B + st.N)
    rho = s * (2 * st.B + st.N) + _ROW0[group] * st.B + jnp.arange(rows)
    idx, w = _bridge(st.L, st.refine)
    j = jnp.asarray(idx)[l]  # (J,)
    dims = st.d + 1 + j[:, None] * n_rows + rho[None, :]  # (J, rows)
    z = _sobol_normals(st, key, dims.reshape(-1)).reshape(j.shape[0], rows, st.P)
    return jnp.einsum("j,jrp->rp", jnp.asarray(w, st.dtype)[l], z)


def _normals(st: _Static, k, l, s, rows, group="fwd"):
    """Standard normals (rows, P) of layer l, step s: the scaled sum of the normals of the m
    finer layers l·m..l·m+m-1, so runs with depth L and L·m share their Brownian paths.
    A pure function of (key, l, s): threefry is counter-based, so the same numbers come back
    when they are regenerated instead of stored, and on any number of devices."""
    m, P, dtype = st.refine, st.P, st.dtype
    if st.sampling == "iid":
        ks = jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(k, l * m + j), s))(jnp.arange(m))
        # drawn shaped (not :func:`_iid`): a flat draw here compiled no faster, and without the vmap
        # over the m keys it changed XLA's fusion of the consumers and the outputs' last bit
        z = jax.vmap(lambda kk: _pc(st, jax.random.normal(kk, (rows, P), dtype)))(ks)
        z = _pc(st, jnp.sum(z, axis=0) / math.sqrt(m))
    else:  # the bridge sums the m fine increments itself
        z = _pc(st, _draw(st, k, (rows, P), group, l, s))
    if st.noise == "store" and _sdt(st) != jnp.dtype(dtype):
        z = z.astype(_sdt(st)).astype(dtype)  # stored normals are what later steps see: use them now too
    return z


def _consts(st: _Static, key, Xs, Ys, Xt, rates, sqrt_tau, tol):
    k_u, k_v, k_fwd, k_bwd, k_test = jax.random.split(key, 5)
    U = _draw(st, k_u, (st.P, st.d), "U")
    v = _draw(st, k_v, (st.P,), "v")
    return dict(
        U=_pc(st, U, 0),
        v=_pc(st, v, 0),
        k_fwd=k_fwd, k_bwd=k_bwd, k_test=k_test, Xflat=Xs.reshape(st.steps * st.B, st.d), Xs=Xs, Ys=Ys, Xt=Xt,
        eta_in=rates[0], eta_hid=rates[1], eta_out=rates[2], sqrt_tau=sqrt_tau, tau=sqrt_tau * sqrt_tau, tol=tol,
    )


def _init_state(st: _Static):
    L, P, H, dtype = st.L, st.P, st.steps * st.B, st.dtype
    eyeH = jnp.eye(H, dtype=dtype)
    z = lambda *shape: _pc(st, jnp.zeros(shape, _cdt(st)))  # noqa: E731
    state = dict(
        Phi=z(L, H, P),  # φ(h^(i)_{ℓ-1}), ℓ = 1..L
        G=z(L + 1, H, P),  # g^(i)_ℓ, ℓ = 0..L
        hL=z(H, P),  # h^(i)_L
        LS=_rep(st, jnp.broadcast_to(eyeH, (L, H, H))),  # solve-ready chol(Σ_{ℓ-1})
        LT=_rep(st, jnp.broadcast_to(eyeH, (L, H, H))),  # solve-ready chol(Θ_ℓ)
        Sig=_rep(st, jnp.zeros((L, H, H), dtype)),  # rows of Σ (lower triangle incl. diagonal)
        The=_rep(st, jnp.zeros((L, H, H), dtype)),
        c=_rep(st, jnp.zeros((H,), dtype)),  # ℓ'_i / B
    )
    if st.noise == "store":
        state["Xi"] = z(L, H, P)  # forward normals of W_ℓ
        state["Xit"] = z(L, H, P)  # backward normals of W_ℓᵀ
    if st.record_paths:
        state["Hp"] = z(L + 1, H, P)
    if st.block == "post_ms":
        state["D"] = z(L, H, P)  # δ^(i)_ℓ = φ'(y^(i)_ℓ) MS(g^(i)_ℓ), the vector W_ℓᵀ multiplies, ℓ = 1..L
    return state


def _init_outs(st: _Static):
    steps, B, L, dtype = st.steps, st.B, st.L, st.dtype
    o = dict(f=jnp.zeros((steps, B), dtype), loss=jnp.zeros((steps, B), dtype),
             fratio=jnp.zeros((steps, L), dtype), bratio=jnp.zeros((steps, L), dtype),
             fdrop=jnp.zeros((steps,), jnp.int32), bdrop=jnp.zeros((steps,), jnp.int32))
    if st.N:
        o["ftest"] = jnp.zeros((steps, st.N), dtype)
    return {k: _rep(st, v) for k, v in o.items()}


# Filled-row reads (read_chunks > 1) compile one branch per prefix length at every read: 1-2 s
# more compilation on 2 CPU cores (benchmarks/history_reads.py), which one solve pays back only
# when its reads are large (measured: 0.7 s saved at 4.3 GB of full-row reads, 3.4 s at 35 GB).
# The default turns them on (READ_CHUNKS prefixes: ≈ 0.625 of the full rows on average) when one
# solve's full-row reads would move at least READ_BYTES; smaller solves keep the earlier program.
READ_CHUNKS = 4
READ_BYTES = 2**33


def _read_chunks(st: _Static) -> int:
    """The number of prefix lengths the history reads use (``st.read_chunks``, or by size)."""
    if st.read_chunks is not None:
        return int(st.read_chunks)
    H = st.steps * st.B
    full = st.R * st.steps * st.L * (6 + 2 * st.exact) * H * st.P * _sdt(st).itemsize
    return READ_CHUNKS if full >= READ_BYTES else 1


def _prefixes(st: _Static) -> tuple[int, int]:
    """(C, n): the history reads use the first j·C rows (clipped to H), j = 0..n, C a multiple of B.

    A read at step s needs rows < s·B (or < s·B + B): j = ⌈rows / C⌉, so at most C − 1 zero rows
    are read.  Averaged over the run the rows read are ≈ H·(1/2 + 1/(2n)) instead of H."""
    steps, B = st.steps, st.B
    n = max(1, min(_read_chunks(st), steps))
    C = B * -(-steps // n)
    return C, -(-(steps * B) // C)


def _filled(st: _Static, arr, l, rows, fn, w, zero):
    """``fn(x, w)`` of the filled prefix x (r, P) of ``arr[l]`` (``arr`` (H, P) when ``l`` is None)
    in the compute dtype, r the smallest prefix length ≥ ``rows`` (traced); zeros of shape ``zero``
    when ``rows`` is 0.  One branch per prefix length (``lax.switch``: static shapes; the index is
    not batched under the replicate vmap, so only the chosen branch runs).  Under reverse-mode
    differentiation the branches' residuals would be kept side by side (one (r, P) slice per
    branch); ``jax.checkpoint`` keeps the inputs instead (``arr`` is loop-invariant in the layer
    scan, so it is not stacked) and recomputes the read in the backward pass."""
    C, n = _prefixes(st)
    H = st.steps * st.B
    if n == 1:  # one prefix: the whole history
        return fn(_unpack(st, arr if l is None else arr[l]), w)
    P = arr.shape[-1]

    def read(arr, l, rows, w):
        def branch(j):
            r = min(j * C, H)
            if j == 0:
                return lambda: jnp.zeros(zero, st.dtype)
            if l is None:
                return lambda: fn(_unpack(st, arr[:r]), w)
            return lambda: fn(_unpack(st, jax.lax.dynamic_slice(arr, (l, 0, 0), (1, r, P))[0]), w)

        j = jnp.clip((rows + C - 1) // C, 0, n)
        return jax.lax.switch(j, [branch(j_) for j_ in range(n + 1)])

    return jax.checkpoint(read, prevent_cse=False, static_argnums=(1,) if l is None else ())(arr, l, rows, w)


def _hist_left(st: _Static, state, name, l, coef, rows):
    """coef (M, H) (or (H,)) @ history ``name`` of layer l (H, P), reading only its rows < ``rows``
    (the others are zero, so the result is the same up to summation order).  ``l=None``: a
    history without a layer axis (hL)."""
    arr = state[name]
    return _filled(st, arr, l, rows, lambda x, w: w[..., :x.shape[0]] @ x, coef, coef.shape[:-1] + arr.shape[-1:])


def _hist_right(st: _Static, state, name, l, F, rows):
    """History ``name`` of layer l (H, P) @ F.T (P, M), reading only its rows < ``rows`` (the
    result's other rows are 0)."""
    H = st.steps * st.B

    def fn(x, w):
        y = x @ w.T
        return y if x.shape[0] == H else jnp.concatenate([y, jnp.zeros((H - x.shape[0],) + y.shape[1:], y.dtype)])

    return _filled(st, state[name], l, rows, fn, F, (H, F.shape[0]))


_GROUP = {"Xi": "fwd", "Xit": "bwd"}


def _noise_left(st: _Static, state, name, key, l, s, AT):
    """AT (R, H) @ ξ_l (H, P): rows of ξ of the samples of steps < s (later rows of AT are 0)."""
    if st.noise == "store":
        return _hist_left(st, state, name, l, AT, s * st.B)
    B = st.B

    def body(j, acc):
        return acc + jax.lax.dynamic_slice_in_dim(AT, j * B, B, axis=1) @ _normals(st, key, l, j, B, _GROUP[name])

    return jax.lax.fori_loop(0, s, body, _pc(st, jnp.zeros((AT.shape[0], st.P), st.dtype)))


def _noise_right(st: _Static, state, name, key, l, s, F):
    """ξ_l (H, P) @ F.T (P, M) for the samples of steps < s (other rows 0)."""
    if st.noise == "store":
        return _hist_right(st, state, name, l, F, s * st.B)
    B = st.B

    def body(j, acc):
        return jax.lax.dynamic_update_slice_in_dim(acc, _normals(st, key, l, j, B, _GROUP[name]) @ F.T, j * B, axis=0)

    return jax.lax.fori_loop(0, s, body, jnp.zeros((st.steps * B, F.shape[0]), st.dtype))


def _forward_pass(st: _Static, state, s, x, cs):
    """The forward recursion ℓ = 1..L of step s (training samples and test inputs).

    Returns (h_L (M, P), per-layer h_{ℓ-1} and the argument of φ' in the backward (h_{ℓ-1} for
    "pre", y_ℓ for "post_ms") of the new samples, new normals, min pivot ratio, dropped pivots,
    the new rows of the state).  ``Phi`` holds the vectors W_ℓ multiplies: φ(h_{ℓ-1}) ("pre") or
    h_{ℓ-1} ("post_ms", where Σ_{ℓ-1} is then E[h h])."""
    phi, B, N, d, P = st.activation.fn, st.B, st.N, st.d, st.P
    sqrt_tau, tau, tol, eta_hid = cs["sqrt_tau"], cs["tau"], cs["tol"], cs["eta_hid"]
    start = s * B
    c = state["c"]  # zero for samples of this and later steps
    xin = jnp.concatenate([x, cs["Xt"]], axis=0) if N else x  # (M, d)
    # ---- input layer ------------------------------------------------------------
    xg = cs["Xflat"] @ xin.T / d  # (H, M)
    h0 = _pc(st, xin @ cs["U"].T / math.sqrt(d) - cs["eta_in"] * _hist_left(st, state, "G", 0, (c[:, None] * xg).T, start))

    ms = st.block == "post_ms"

    def fwd(h, l):
        u = _rnd(st, h if ms else phi(h))  # (M, P): the vector W_ℓ multiplies
        r = _hist_right(st, state, "Phi", l, u, start) / P  # (H, M): Σ[i, new], zero for i ≥ start
        snn = u[:B] @ u[:B].T / P
        xi_new = _normals(st, cs["k_fwd"], l, s, B)
        A, D, rows_solve, ratio, dropped = _grow(state["LS"][l], r[:, :B], snn, start, tol)
        zeta = _noise_left(st, state, "Xi", cs["k_fwd"], l, s, A.T) + D @ xi_new
        if N:
            xi_t = _normals(st, cs["k_test"], l, s, N, "test")
            At, sd = _condition_each(state["LS"][l], r[:, B:], jnp.mean(u[B:] ** 2, axis=1))
            zeta_t = _noise_left(st, state, "Xi", cs["k_fwd"], l, s, At.T) + sd[:, None] * xi_t
            zeta = jnp.concatenate([zeta, zeta_t], axis=0)
        if ms:
            # post_ms: y = W_ℓ h/√n = ζ + ż − √τ η Σ_{i<start} ℓ'_i Σ_{ℓ-1}[i,·] δ^(i)_ℓ,
            # h_ℓ = h_{ℓ-1} + √τ (φ(y) − E φ(y)); ż = Σ_i δ^(i)_ℓ chol(Θ_ℓ)^{-T} E[h ξ̃^(i)]
            coef = -sqrt_tau * eta_hid * (c[:, None] * r).T  # (M, H)
            if st.exact:
                Et = _noise_right(st, state, "Xit", cs["k_bwd"], l, s, u) / P  # (H, M)
                coef = coef + solve_triangular(state["LT"][l], Et, lower=True, trans="T").T
            y = zeta + _hist_left(st, state, "D", l, coef, start)
            fy = phi(y)
            hn = _pc(st, h + sqrt_tau * (fy - jnp.mean(fy, axis=-1, keepdims=True)))
            darg = y[:B]
        else:
            coef = -tau * eta_hid * (c[:, None] * r).T  # (M, H)
            if st.exact:
                # ż = Σ_{i<start} g^(i)_ℓ chol(Θ_ℓ)^{-T} E[φ(h) ξ̃^(i)]
                Et = _noise_right(st, state, "Xit", cs["k_bwd"], l, s, u) / P  # (H, M)
                coef = coef + sqrt_tau * solve_triangular(state["LT"][l], Et, lower=True, trans="T").T
            hn = _pc(st, h + sqrt_tau * zeta + _hist_left(st, state, "G", l + 1, coef, start))
            darg = h[:B]
        sig_rows = jax.lax.dynamic_update_slice(r[:, :B].T, snn, (0, start))
        out = (u[:B], h[:B], darg, xi_new, rows_solve, sig_rows, jnp.min(ratio), jnp.sum(dropped))
        return hn, out

    hLn, (u_new, hprev, darg, xi_new, LS_rows, Sig_rows, fratio, fdrop) = jax.lax.scan(fwd, h0, jnp.arange(st.L))
    new = dict(
        Phi=jax.lax.dynamic_update_slice(state["Phi"], _pack(st, u_new), (0, start, 0)),
        LS=jax.lax.dynamic_update_slice(state["LS"], LS_rows, (0, start, 0)),
        Sig=jax.lax.dynamic_update_slice(state["Sig"], Sig_rows, (0, start, 0)),
    )
    if st.noise == "store":
        new["Xi"] = jax.lax.dynamic_update_slice(state["Xi"], _pack(st, xi_new), (0, start, 0))
    return hLn, hprev, darg, xi_new, fratio, fdrop, new


def _backward_pass(st: _Static, state, new, s, gL, darg, xi_new, cs):
    """The backward recursion ℓ = L..1 of step s (training samples only).

    ``darg`` (L, B, P): the argument of φ' (h_{ℓ-1} for "pre", y_ℓ for "post_ms").  Returns
    (g_0 (B, P), per-layer g_ℓ, new normals ξ̃, Cholesky rows, Θ rows, min pivot ratio, dropped
    pivots, δ_ℓ ("post_ms"; ``None`` for "pre")).  Θ_ℓ is the kernel of the vectors W_ℓᵀ
    multiplies: g_ℓ ("pre") or δ_ℓ = φ'(y_ℓ) MS(g_ℓ) ("post_ms")."""
    dphi, B, P = st.activation.deriv, st.B, st.P
    sqrt_tau, tau, tol, eta_hid = cs["sqrt_tau"], cs["tau"], cs["tol"], cs["eta_hid"]
    start = s * B
    c = state["c"]

    ms = st.block == "post_ms"

    def bwd(g, xs_l):
        l, hp, xi_now = xs_l  # hp: (B, P) argument of φ'; xi_now: this step's forward normals
        # b: the vector W_ℓᵀ multiplies (g_ℓ, or δ_ℓ = φ'(y_ℓ) MS(g_ℓ) for post_ms, MS = minus the particle mean)
        b = dphi(hp) * (g - jnp.mean(g, axis=-1, keepdims=True)) if ms else g
        gs = _rnd(st, b)
        tr = _hist_right(st, state, "D" if ms else "G", l if ms else l + 1, gs, start) / P  # (H, B): Θ[i, new], 0 for i ≥ start
        tnn = gs @ gs.T / P
        xit_new = _normals(st, cs["k_bwd"], l, s, B, "bwd")
        A, D, rows_solve, ratio, dropped = _grow(state["LT"][l], tr, tnn, start, tol)
        zt = _noise_left(st, state, "Xit", cs["k_bwd"], l, s, A.T) + D @ xit_new
        coef = -tau * eta_hid * (c[:, None] * tr).T  # (B, H), past samples only
        if st.exact:
            # ż̃ = Σ_{i≤now} φ(h^(i)_{ℓ-1}) chol(Σ_{ℓ-1})^{-T} E[g ξ^(i)]
            # (post_ms: E[∂δ/∂ζ^(i)], with δ in place of g)
            if st.noise == "store":
                Ef = _hist_right(st, new, "Xi", l, b, start + B) / P  # (H, B), includes this step's rows
            else:
                Ef = _noise_right(st, state, "Xi", cs["k_fwd"], l, s, b)
                Ef = jax.lax.dynamic_update_slice_in_dim(Ef, xi_now @ b.T, start, axis=0) / P
            es = solve_triangular(new["LS"][l], Ef, lower=True, trans="T")
            coef = coef + sqrt_tau * es.T
        if ms:  # g_{ℓ-1} = g_ℓ + √τ W_ℓᵀ δ_ℓ/√n: φ' is inside δ
            gn = _pc(st, g + sqrt_tau * zt + _hist_left(st, new, "Phi", l, coef, start + B))
        else:
            gn = _pc(st, g + dphi(hp) * (sqrt_tau * zt + _hist_left(st, new, "Phi", l, coef, start + B)))
        the_rows = jax.lax.dynamic_update_slice(tr.T, tnn, (0, start))
        return gn, (g, xit_new, rows_solve, the_rows, jnp.min(ratio), jnp.sum(dropped), b if ms else None)

    gLB = _pc(st, jnp.broadcast_to(gL, (B, P)))
    return jax.lax.scan(bwd, gLB, (jnp.arange(st.L), darg, xi_new), reverse=True)


def _step(st: _Static, state, s, x, y, cs):
    """One SGD step s (samples s·B..s·B+B-1): returns the new state and this step's outputs."""
    B, dtype = st.B, st.dtype
    start = s * B
    c = state["c"]
    hLn, hprev, darg, xi_new, fratio, fdrop, new = _forward_pass(st, state, s, x, cs)

    # ---- output ------------------------------------------------------------------
    gL = cs["v"] - cs["eta_out"] * _hist_left(st, state, "hL", None, c, start)  # (P,)
    f_all = hLn @ gL / st.P  # (M,)
    f = f_all[:B]
    lp = loss_grad(st.loss, f, y)
    lval = loss_value(st.loss, f, y)

    g0, (g_new, xit_new, LT_rows, The_rows, bratio, bdrop, d_new) = _backward_pass(st, state, new, s, gL, darg,
                                                                                     xi_new, cs)
    G_new = jnp.concatenate([g0[None], g_new], axis=0)  # (L+1, B, P)
    new.update(
        G=jax.lax.dynamic_update_slice(state["G"], _pack(st, G_new), (0, start, 0)),
        hL=jax.lax.dynamic_update_slice(state["hL"], _pack(st, hLn[:B]), (start, 0)),
        LT=jax.lax.dynamic_update_slice(state["LT"], LT_rows, (0, start, 0)),
        The=jax.lax.dynamic_update_slice(state["The"], The_rows, (0, start, 0)),
        c=jax.lax.dynamic_update_slice(c, (lp / B).astype(dtype), (start,)),
    )
    if st.noise == "store":
        new["Xit"] = jax.lax.dynamic_update_slice(state["Xit"], _pack(st, xit_new), (0, start, 0))
    if st.block == "post_ms":
        new["D"] = jax.lax.dynamic_update_slice(state["D"], _pack(st, d_new), (0, start, 0))
    if st.record_paths:
        Hn = jnp.concatenate([hprev, hLn[None, :B]], axis=0)
        new["Hp"] = jax.lax.dynamic_update_slice(state["Hp"], _pack(st, Hn), (0, start, 0))
    new = {k: (_pc(st, v) if k in _PARTICLE_KEYS else v) for k, v in new.items()}
    out = dict(f=f, loss=lval, fratio=fratio, bratio=bratio, fdrop=jnp.sum(fdrop).astype(jnp.int32),
               bdrop=jnp.sum(bdrop).astype(jnp.int32))
    if st.N:
        out["ftest"] = f_all[B:]
    return new, out


def _run(st: _Static, key, Xs, Ys, Xt, rates, sqrt_tau, tol):
    """The whole run as one scan (differentiable; used by :meth:`ParticleProblem.loss_fn`)."""
    TRACE_COUNT[0] += 1
    cs = _consts(st, key, Xs, Ys, Xt, rates, sqrt_tau, tol)
    state, outs = jax.lax.scan(lambda S, xs: _step(st, S, xs[0], xs[1], xs[2], cs), _init_state(st),
                               (jnp.arange(st.steps), Xs, Ys))
    res = dict(outs=outs, Sig=state["Sig"], The=state["The"])
    if st.record_paths:
        res["Hp"] = state["Hp"]
        res["G"] = state["G"]
    return res


def _advance(st: _Static, carry, s0, s1, key, Xs, Ys, Xt, rates, sqrt_tau, tol):
    """Steps s0..s1-1 from the carry (state, outputs) after step s0 (traced bounds: one
    program serves every split of the run, which makes resuming bit-identical)."""
    TRACE_COUNT[0] += 1
    cs = _consts(st, key, Xs, Ys, Xt, rates, sqrt_tau, tol)

    def body(s, carry):
        state, buf = carry
        state, out = _step(st, state, s, Xs[s], Ys[s], cs)
        buf = {k: jax.lax.dynamic_update_index_in_dim(buf[k], out[k].astype(buf[k].dtype), s, 0) for k in buf}
        return state, buf

    return jax.lax.fori_loop(s0, s1, body, carry)


class _Program:
    """The compiled pieces of one problem size: ``run`` (the whole run, one scan), ``init``,
    ``advance`` and ``advance_donating`` (steps s0..s1-1 with traced bounds)."""

    def __init__(self, st: _Static):
        self.st = st
        self.H = st.steps * st.B
        self.sdt, self.cdt = _sdt(st), _cdt(st)
        self.pack = functools.partial(_pack, st)
        self.unpack = functools.partial(_unpack, st)
        self.pc = functools.partial(_pc, st)
        # every array gets a leading replicate axis (R): the replicates are vmapped, each with its
        # own key; the particle axis of each stays sharded over the mesh
        self.run = jax.jit(jax.vmap(functools.partial(_run, st), in_axes=(0,) + (None,) * 6))
        self.init = jax.jit(lambda: jax.vmap(lambda _: (_init_state(st), _init_outs(st)))(jnp.arange(st.R)))
        # (the loss function's: one rate and horizon per replicate, for per-replicate derivatives)
        self.run_rates = jax.jit(jax.vmap(functools.partial(_run, st), in_axes=(0, None, None, None, 0, 0, None)))
        adv = jax.vmap(functools.partial(_advance, st), in_axes=(0, None, None, 0) + (None,) * 6)
        self.advance = jax.jit(adv)
        self.advance_donating = jax.jit(adv, donate_argnums=(0,))

    def shardings(self, carry):
        """The sharding of every array of a carry (for placing a loaded checkpoint)."""
        st = self.st
        if st.mesh is None:
            return None
        state, buf = carry

        def spec(name, a):
            if name in _PARTICLE_KEYS:
                return NamedSharding(st.mesh, PartitionSpec(*([None] * (a.ndim - 1)), "particles"))
            return NamedSharding(st.mesh, PartitionSpec())

        return ({k: spec(k, v) for k, v in state.items()}, {k: spec("", v) for k, v in buf.items()})


@functools.lru_cache(maxsize=32)
def _program(st: _Static) -> _Program:
    return _Program(st)


def _compiled(st: _Static):
    """The whole-run program (one scan; differentiable) of a problem size."""
    return _program(st).run


def estimate_particle_memory(*, particles, depth, samples, input_dim, n_test=0, exact=False, record_paths=False,
                             itemsize=4, storage_itemsize=None, noise="store", devices=1, per_device=False,
                             replicates=1, block="pre"):
    """Bytes :func:`solve_particles` needs, estimated before anything is compiled.

    Counted: the per-sample particle histories in ``storage_itemsize`` bytes (φ(h) L, g L+1, h_L 1,
    plus the normals ξ, ξ̃ 2L with ``noise="store"``, plus L+1 with ``record_paths``; each K×P),
    four L×K×K kernel/Cholesky arrays, U (P×d) and per-layer temporaries, with 25% slack.  With
    ``devices`` = D the particle arrays are split D ways and the L×K×K arrays are replicated:
    the result is the total over devices, or (``per_device=True``) one device's share.  With
    ``replicates`` = R the ``particles`` form R systems, each with its own L×K×K arrays.

    Example:
        >>> a = estimate_particle_memory(particles=2**16, depth=64, samples=256, input_dim=10)
        >>> b = estimate_particle_memory(particles=2**16, depth=64, samples=256, input_dim=10,
        ...                              storage_itemsize=2, noise="regenerate")
        >>> round(a / b, 1)
        3.5
    """
    P, L, H = particles, depth, samples
    s_item = itemsize if storage_itemsize is None else storage_itemsize
    hist = (2 * L + 2 + (2 * L if noise == "store" else 0) + (L + 1 if record_paths else 0)
            + (L if block == "post_ms" else 0)) * H * P * s_item  # post_ms also stores δ_ℓ
    kernels = 4 * L * H * H * itemsize * max(int(replicates), 1)
    temps = (P * input_dim + 8 * (H + n_test + 8) * P + L * (H + n_test) * P // max(H, 1)) * itemsize
    if s_item != itemsize:
        temps += 2 * H * P * itemsize  # one layer's history widened to the compute precision
    del exact  # the exact mode needs no extra storage
    D = max(int(devices), 1)
    share = hist / D + kernels + temps / D
    return int(1.25 * (share if per_device else share * D))


def _sym(A):
    """Symmetric matrices from stored lower rows (…, K, K)."""
    low = np.tril(A)
    return low + np.swapaxes(np.tril(A, -1), -1, -2)


ParticleState = _driver.State
"""The state of a particle solve after ``step`` SGD steps (see :class:`ParticleProblem`): the
driver's :class:`nfd._driver.State`, whose ``carry`` holds (state, outputs) pytrees of jax arrays
(the particle histories (L, K, P), the kernels and Cholesky rows (L, K, K) and the per-step
outputs filled up to ``step``)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ParticleProblem(_driver.Problem):
    """A validated particle solve that runs in pieces: checkpoint and resume long solves.

    Built by :func:`particle_problem` (same arguments as :func:`solve_particles_network`) and run
    by :func:`nfd._driver.run` (what :func:`solve_particles` does).  ``advance`` runs SGD steps with
    one compiled program whose loop bounds are traced, so any split of the run (…→ step k → save →
    load → …) gives results bit-identical to one uninterrupted run.  :meth:`loss_fn` is the whole run
    as a pure differentiable function of (η_c, T) (what :func:`nfd.limit_loss_fn` returns).

    Example:
        >>> import numpy as np, nfd, tempfile, os
        >>> X = np.random.default_rng(0).normal(size=(6, 2)); Y = X[:, 0]
        >>> net = nfd.ResNet(depth=4, input_dim=2, activation="tanh", lr=0.5)
        >>> prob = particle_problem(net, X, Y, particles=256)
        >>> s = prob.advance(prob.init(), 4)                  # steps 0..3
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz"); prob.save(s, path)
        >>> done = prob.advance(prob.load(path))             # steps 4..5, e.g. in a new process
        >>> full = prob.advance(prob.init())
        >>> bool(np.array_equal(prob.solution(done).outputs, prob.solution(full).outputs))
        True
    """

    network: ResNet
    static: _Static
    args: tuple  # (key, Xs, Ys, Xt, rates, sqrt_tau, tol) as jax arrays
    options: dict
    fingerprint: str
    name = "solve_particles"

    @property
    def describe(self) -> str:
        return f"est. memory {self.options['config']['memory_estimate']}"

    @property
    def report_kw(self) -> dict:
        return dict(what="solve_particles", quantity="output f̂",
                    hint=f"try a smaller lr (lr={self.network.lr}) or check the data scale; if the finite network "
                         "does not diverge, the cause is roundoff in near-singular kernels: use dtype=float64 or a "
                         "larger singular_tol")

    def init(self) -> ParticleState:
        """The state before the first step (zeros; the particles' initial weights come from the seed)."""
        return ParticleState(0, _program(self.static).init(), self.fingerprint)

    def advance(self, state: ParticleState, steps: int | None = None, *, donate: bool = False) -> ParticleState:
        """Run ``steps`` more SGD steps (default: to the end).  ``donate=True`` lets the new state
        reuse the old one's memory (the old state must not be used afterwards)."""
        _driver.check_state(self, state)
        n = _driver.check_steps(self, state, steps)
        if n == 0:
            return state
        prog = _program(self.static)
        fn = prog.advance_donating if donate else prog.advance
        s0 = jnp.asarray(state.step)  # the default integer type, like the scan counter of `run`
        carry = fn(state.carry, s0, s0 + n, *self.args)
        return ParticleState(state.step + n, carry, self.fingerprint)

    def save(self, state: ParticleState, path) -> None:
        """Write ``state`` to ``path`` (NPZ, raw bytes of every array, so bit-exact in any storage
        dtype) atomically (a temporary file renamed into place).  On several hosts every process
        must call it (the particle shards are gathered); process 0 writes."""
        _driver.check_state(self, state)
        state_d, buf = state.carry
        arrays = {f"{g}/{k}": v for g, d_ in (("state", state_d), ("outs", buf)) for k, v in d_.items()}
        _checkpoint.write(path, arrays, dict(step=state.step, fingerprint=self.fingerprint, steps=self.steps,
                                             particles=self.static.P, depth=self.static.L))

    def load(self, path) -> ParticleState:
        """Read a state written by :meth:`save` (refused if it belongs to another problem).  The
        arrays are placed on this problem's devices, so a run checkpointed on D devices can resume
        on another number of devices (then equal to round-off, not bit for bit)."""
        meta, arrays = _checkpoint.read(path, what="particle solver", fingerprint=self.fingerprint,
                                        differs="network, data, seed or options",
                                        info=("particles", "depth", "steps"))
        groups = {"state": {}, "outs": {}}
        for name, a in arrays.items():
            g, k = name.split("/", 1)
            groups[g][k] = a
        carry = (groups["state"], groups["outs"])
        sh = _program(self.static).shardings(carry)
        if sh is None:
            carry = jax.tree_util.tree_map(jnp.asarray, carry)
        else:
            carry = jax.tree_util.tree_map(place, carry, sh)
        return ParticleState(int(meta["step"]), carry, self.fingerprint)

    def divergence(self, state: ParticleState):
        """The first step (of those done) whose output f̂ is not finite in any replicate, or ``None``
        (``index`` names the replicate)."""
        f = to_host(state.carry[1]["f"]).reshape(self.static.R, -1)
        return find(f, batched=True, per_step=self.static.B, upto=state.step * self.static.B)

    def loss_fn(self, objective: str = "online", *, K: int | None = None, Y_test=None):
        """The whole run as a pure function ``fn(lr, T) -> scalar`` of η_c and the horizon T.

        ``objective="online"``: the mean loss over the first ``K`` samples (default all), each
        before its update; ``"test"``: the mean loss on the test inputs, with targets ``Y_test``,
        before the last step.  Frozen groups stay frozen (rate 0); the particles are fixed by the
        seed.  Differentiable (``jax.grad``, ``jax.jacfwd``), traceable and vmappable; divergence
        shows as a NaN value.
        """
        Yt = None if Y_test is None else np.asarray(Y_test, np.float64)
        return _LossFn(self, objective, self.static.steps * self.static.B if K is None else int(K), Yt)

    def solution(self, state: ParticleState, divergence=None) -> ParticleSolution:
        """The :class:`ParticleSolution` of a finished run (``state.step == steps``).  A diverged
        run is returned with its step in ``status`` (the driver applies the divergence policy)."""
        _driver.check_state(self, state)
        if state.step != self.steps:
            raise ValueError(f"the run is at step {state.step} of {self.steps}; advance it to the end first")
        st, o = self.static, self.options
        state_d, buf = state.carry
        outs = {k: to_host(v) for k, v in buf.items()}  # (R, steps, ...) each
        B, L, R = st.B, st.L, st.R
        K = st.steps * B
        rep_f = outs["f"].reshape(R, K)
        rep_loss = outs["loss"].reshape(R, K)
        rep_test = outs.get("ftest")  # (R, steps, N) or None
        if divergence is None:
            divergence = find(rep_f, batched=True, per_step=B)

        fratio = outs["fratio"].min(axis=0)  # (steps, L), the smallest over replicates
        bratio = outs["bratio"].min(axis=0)
        fdrop, bdrop = outs["fdrop"].sum(axis=0), outs["bdrop"].sum(axis=0)  # (steps,)
        dropped = (int(fdrop.sum()), int(bdrop.sum()))
        first = None
        if dropped != (0, 0):
            sf = np.nonzero(fdrop)[0]
            sb = np.nonzero(bdrop)[0]
            first = int(min([*sf[:1], *sb[:1]]))
            which = "Σ" if (len(sf) and sf[0] == first) else "Θ"
            layer = int(np.argmin(fratio[first] if which == "Σ" else bratio[first])) + 1
            msg = (
                f"solve_particles: near-singular {which} at step {first} (layer {layer}); "
                f"{dropped[0]} forward and {dropped[1]} backward Gaussian directions were dropped as exact linear "
                "combinations of earlier ones (identical or nearly collinear samples, a small learning rate, "
                "or more samples than particles)"
            )
            if R > 1:
                msg += f" (counted over the {R} replicates)"
            if "output" in self.network.frozen or "hidden" in self.network.frozen:
                msg += "; with frozen output/hidden weights the backward kernel Θ is singular by construction"
            if o["on_singular"] == "raise":
                raise SingularCovarianceError(msg, step=first, layer=layer, which=which)
            if o["on_singular"] == "warn":
                warnings.warn(msg, stacklevel=4)

        rep_Sig = _sym(to_host(state_d["Sig"]))  # (R, L, K, K)
        rep_The = _sym(to_host(state_d["The"]))
        Sig, Sig_se = _mean_se(rep_Sig)
        The, The_se = _mean_se(rep_The)
        s_eig = t_eig = np.full(L, np.nan)
        if o["eigenvalues"]:
            s_eig, t_eig = _min_eigs(Sig), _min_eigs(The)  # NaN for layers a divergence left non-finite
        feats = grads = None
        if st.record_paths:
            prog = _program(st)

            def paths(a):  # (R, L+1, K, P/R) -> (K, L+1, R·P/R): the replicates' particles side by side
                a = np.asarray(to_host(prog.unpack(a)))
                return np.transpose(a, (2, 1, 0, 3)).reshape(K, L + 1, R * st.P)

            feats, grads = paths(state_d["Hp"]), paths(state_d["G"])
        f, f_se = _mean_se(rep_f)
        lo, lo_se = _mean_se(rep_loss)
        ft, ft_se = _mean_se(rep_test) if rep_test is not None else (None, None)
        return ParticleSolution(
            outputs=f,
            losses=lo,
            test_outputs=ft,
            sigma=Sig,
            theta=The,
            sigma_min_eig=s_eig,
            theta_min_eig=t_eig,
            sigma_min_pivot=fratio.min(axis=0),
            theta_min_pivot=bratio.min(axis=0),
            dropped_pivots=dropped,
            features=feats,
            grads=grads,
            network=self.network,
            config=dict(o["config"]),
            status=Status.of(divergence, dropped_pivots=dropped, singular_step=first),
            outputs_stderr=f_se,
            losses_stderr=lo_se,
            test_outputs_stderr=ft_se,
            sigma_stderr=Sig_se,
            theta_stderr=The_se,
            replicate_outputs=rep_f,
            replicate_losses=rep_loss,
            replicate_test_outputs=rep_test,
            replicate_sigma=rep_Sig,
            replicate_theta=rep_The,
        )


def _mean_se(a):
    """Mean over the leading (replicate) axis and its standard error, std (ddof=1) / √R; NaN for R = 1."""
    a = np.asarray(a)
    R = a.shape[0]
    mean = a.mean(axis=0)
    if R < 2:
        return mean, np.full_like(mean, np.nan, dtype=np.result_type(mean, np.float32))
    return mean, a.std(axis=0, ddof=1) / math.sqrt(R)


@dataclasses.dataclass(frozen=True, eq=False)
class _LossFn:
    """``fn(lr, T)`` of :meth:`ParticleProblem.loss_fn`.  Equal (and hashed alike) for equal problems
    and objectives, so jitted wrappers of it (``nfd.limit_loss_and_grad``) are reused."""

    problem: ParticleProblem
    objective: str
    K: int
    Y_test: np.ndarray | None

    def _key(self):
        yt = None if self.Y_test is None else self.Y_test.tobytes()
        return (self.problem.fingerprint, self.problem.static, self.objective, self.K, yt)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _LossFn) and self._key() == other._key()

    @property
    def replicates(self) -> int:
        """R, the number of independent replicate systems whose losses are averaged."""
        return self.problem.static.R

    def replicate_values(self, lr, T):
        """(R,) the loss of each replicate system at ``lr``, ``T`` (scalars, or (R,) arrays: one
        rate per replicate, so that one reverse pass gives every replicate's derivative)."""
        st = self.problem.static
        keys, Xs, Ys, Xt, _, _, tol = self.problem.args
        dtype = st.dtype
        trained = jnp.asarray([0.0 if g in self.problem.network.frozen else 1.0 for g in ("input", "hidden", "output")],
                              dtype)
        lr = jnp.broadcast_to(jnp.asarray(lr, dtype), (st.R,))
        T = jnp.broadcast_to(jnp.asarray(T, dtype), (st.R,))
        out = _program(st).run_rates(keys, Xs, Ys, Xt, lr[:, None] * trained, jnp.sqrt(T / st.L), tol)["outs"]
        if self.objective == "online":
            return jnp.mean(out["loss"].reshape(st.R, -1)[:, : self.K], axis=1)
        return jnp.mean(loss_value(st.loss, out["ftest"][:, -1], jnp.asarray(self.Y_test, dtype)), axis=-1)

    def __call__(self, lr, T):
        return jnp.mean(self.replicate_values(lr, T))

    def stderr(self, lr, T):
        """The standard error of ``fn(lr, T)``: std over the replicates (ddof=1) / √R (NaN for R = 1)."""
        v = self.replicate_values(lr, T)
        if v.shape[0] < 2:
            return jnp.asarray(jnp.nan, v.dtype)
        return jnp.std(v, ddof=1) / math.sqrt(v.shape[0])


def _min_eigs(M):
    """Smallest eigenvalue of each (K, K) matrix of M (L, K, K); NaN where M has non-finite entries."""
    M = np.asarray(M, np.float64)
    out = np.full(M.shape[0], np.nan)
    ok = np.all(np.isfinite(M), axis=(1, 2))
    if ok.any():
        out[ok] = np.linalg.eigvalsh(M[ok])[:, 0]
    return out


_STORAGE = ("float64", "float32", "bfloat16", "float16")

# The default number of replicate systems (an error bar at the same total particle count).
DEFAULT_REPLICATES = 4


def default_replicates(particles: int, devices: int = 1, samples: int = 0) -> int:
    """The ``replicates`` used when none is given: 4, else 2, else 1 — the largest that divides
    ``particles`` into systems of at least 2 particles, a multiple of ``devices`` each, and (when
    possible) more particles than ``samples``.

    Example:
        >>> default_replicates(4096), default_replicates(4098), default_replicates(4097)
        (4, 2, 1)
    """
    for R in (DEFAULT_REPLICATES, 2):
        p = particles // R
        if particles % R == 0 and p >= 2 and p % max(devices, 1) == 0 and p > samples:
            return R
    return 1


def check_replicates(replicates, particles: int, devices: int = 1, samples: int = 0) -> int:
    """``replicates`` validated against ``particles`` (``None``: :func:`default_replicates`)."""
    if replicates is None:
        return default_replicates(particles, devices, samples)
    R = check_int("replicates", replicates, min=1)
    if particles % R or particles // R < 2:
        raise ValueError(f"replicates must divide particles={particles} into systems of at least 2 particles, "
                         f"got replicates={replicates!r}")
    return R


def particle_problem(
    net: ResNet,
    X,
    Y,
    *,
    particles: int,
    backward: str = DEFAULT_BACKWARD,
    seed: int = 0,
    batch_size: int = 1,
    X_test=None,
    dtype=jnp.float32,
    record_paths: bool = False,
    max_memory: int | None = None,
    singular_tol: float | None = None,
    on_singular: str = "regularize",
    eigenvalues: bool = True,
    noise_depth: int | None = None,
    devices=None,
    storage_dtype=None,
    noise: str = "store",
    sampling: str = "iid",
    replicates: int | None = None,
) -> ParticleProblem:
    """Validate a particle solve of ``net`` (``net.width`` must be ``None``) and estimate its memory.

    See :func:`solve_particles` for the arguments (the run options ``checkpoint``,
    ``checkpoint_every``, ``progress`` and ``on_divergence`` belong to the driver,
    :func:`nfd._driver.run`).  Returns a :class:`ParticleProblem`, which runs the solve in pieces
    (``init`` / ``advance`` / ``save`` / ``load`` / ``solution``).
    """
    if net.width is not None:
        raise ValueError("width: the particle solver describes the infinite-width limit; pass a ResNet with width=None")
    if net.parameterization != "depth_mup":
        raise ValueError(
            f"parameterization: the NFD particle recursion is the limit of depth_mup networks, got {net.parameterization!r}"
        )
    if net.alpha is not None:
        raise ValueError("alpha: the NFD limit fixes α = 1/√n (depth-μP); do not override alpha")
    if net.block not in ("pre", "post_ms"):
        raise ValueError(f"block: the particle solver implements pre-activation blocks (Eq. 1) and the mean-subtracted "
                         f"block 'post_ms' (TP VI §6.3), got {net.block!r}")
    check_choice("backward", backward, BACKWARDS)
    if net.block == "post_ms" and backward != "exact":
        raise ValueError(f"backward: block='post_ms' is implemented in the exact (coupled-network) mode only, "
                         f"got backward={backward!r}")
    particles = check_int("particles", particles, min=2)
    seed = check_seed(seed)
    check_choice("on_singular", on_singular, ("warn", "regularize", "raise"))
    check_choice("noise", noise, ("store", "regenerate"))
    check_choice("sampling", sampling, SAMPLINGS)
    check_bool("record_paths", record_paths)
    check_bool("eigenvalues", eigenvalues)
    max_memory = check_bytes("max_memory", max_memory)
    dtype = check_dtype("dtype", dtype)
    X, Y = check_data(X, Y, loss=net.loss, batch_size=batch_size, dtype=dtype)
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")
    X_test = check_test_inputs(X_test, net.input_dim, dtype=dtype)
    if storage_dtype is None:
        sdt = dtype
    else:
        try:
            sdt = jnp.dtype(storage_dtype)
        except TypeError:
            sdt = None
        if sdt is None or sdt.name not in _STORAGE or sdt.itemsize > dtype.itemsize:
            raise ValueError(f"storage_dtype must be one of {_STORAGE} and no wider than dtype={dtype.name}, "
                             f"got {storage_dtype!r}")
    if singular_tol is None:
        singular_tol = default_singular_tol(dtype)
    singular_tol = check_float("singular_tol", singular_tol, sign="non-negative", max=1, max_open=True,
                               what="a number in [0, 1) or None")

    K = X.shape[0]
    B = int(batch_size)
    steps = K // B
    N = 0 if X_test is None else X_test.shape[0]
    P = int(particles)
    L = net.depth
    if noise_depth is None:
        noise_depth = L
    if not isinstance(noise_depth, (int, np.integer)) or isinstance(noise_depth, bool) or noise_depth < L or noise_depth % L:
        raise ValueError(f"noise_depth must be a multiple of depth={L}, got {noise_depth!r}")
    devs = resolve_devices(devices)
    D = 1 if devs is None else len(devs)
    R = check_replicates(replicates, P, D, K)
    if sampling == "sobol" and (P // R) & (P // R - 1):
        raise ValueError(f"particles must be a power of 2 per replicate for sampling='sobol' (each system is one "
                         f"balanced Sobol net), got particles={P}, replicates={R}")
    if devs is not None:
        check_divisible(P // R, devs, "particles per replicate (particles / replicates)")
    est_kw = dict(particles=P, replicates=R, depth=L, samples=K, input_dim=net.input_dim, n_test=N, exact=backward == "exact",
                  record_paths=record_paths, itemsize=dtype.itemsize, storage_itemsize=sdt.itemsize, noise=noise,
                  devices=D, block=net.block)
    est = estimate_particle_memory(**est_kw)
    est_dev = estimate_particle_memory(**est_kw, per_device=True)
    hint = (f"particles={P}, depth={L}, samples={K}, backward={backward!r}, devices={D}; memory grows as "
            "L·K·P + L·K²; storage_dtype='bfloat16' and noise='regenerate' reduce the L·K·P part, and more "
            "devices split it")
    check_device_memory(est, est_dev, devices=devs, what="solve_particles", hint=hint, limit_bytes=max_memory)
    if K > P // R:
        warnings.warn(
            f"solve_particles: {K} samples but only {P // R} particles per replicate (particles={P}, "
            f"replicates={R}); the particle kernels Σ, Θ have rank ≤ P/R, so later Gaussian directions are "
            "degenerate. Use particles / replicates > number of samples.",
            stacklevel=3,
        )

    st = _Static(
        P=P // R, R=R, L=L, d=net.input_dim, steps=steps, B=B, N=N, exact=backward == "exact", activation=net.activation,
        loss=net.loss, record_paths=bool(record_paths), dtype=dtype, refine=int(noise_depth) // L,
        storage=None if sdt == dtype else sdt, noise=noise, sampling=sampling, mesh=None if devs is None else make_mesh(devs, "particles"),
        block=net.block,
    )
    rates = np.asarray([0.0 if g in net.frozen else net.lr for g in ("input", "hidden", "output")], np.float64)
    Xs = X.reshape(steps, B, -1)
    Ys = Y.reshape(steps, B)
    Xt = X_test if N else np.zeros((0, net.input_dim))
    sqrt_tau = math.sqrt(net.tau)
    key = seed_key(seed)
    # one key per replicate; a single system keeps the seed's own key (the numbers of earlier versions)
    keys = key[None] if R == 1 else jax.random.split(key, R)
    args = (keys, jnp.asarray(Xs, dtype), jnp.asarray(Ys, dtype), jnp.asarray(Xt, dtype),
            jnp.asarray(rates, dtype), jnp.asarray(sqrt_tau, dtype), jnp.asarray(singular_tol, dtype))
    ident = dataclasses.replace(st, mesh=None, activation=net.activation.name)
    fingerprint = _checkpoint.fingerprint((ident, int(seed), rates.tolist(), sqrt_tau, float(singular_tol)),
                                          (Xs, Ys, Xt))
    config = dict(
        particles=P, backward=backward, seed=int(seed), batch_size=B, dtype=str(dtype),
        singular_tol=float(singular_tol), memory_estimate=format_bytes(est), noise_depth=int(noise_depth),
        storage_dtype=sdt.name, noise=noise, devices=D, replicates=R, sampling=sampling,
    )
    options = dict(on_singular=on_singular, eigenvalues=bool(eigenvalues),
                   config=config, memory_estimate_bytes=est, memory_per_device_bytes=est_dev)
    return ParticleProblem(network=net, static=st, args=args, options=options, fingerprint=fingerprint)


def solve_particles_network(
    net: ResNet,
    X,
    Y,
    *,
    particles: int,
    checkpoint=None,
    checkpoint_every: int | None = None,
    progress: bool = False,
    on_divergence: str = "raise",
    **kwargs,
) -> ParticleSolution:
    """Solve the NFD particle recursion of ``net`` (``net.width`` must be ``None``).

    See :func:`solve_particles` for the arguments: :func:`particle_problem` validates the
    problem, :func:`nfd._driver.run` runs it (checkpoints, progress, divergence policy).
    """
    checkpoint, checkpoint_every = _checkpoint.check_options(checkpoint, checkpoint_every, what="particle solver")
    check_policy(on_divergence)
    prob = particle_problem(net, X, Y, particles=particles, **kwargs)
    return _driver.run(prob, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                       on_divergence=on_divergence)


def solve_particles(
    X,
    Y,
    *,
    depth: int | None,
    particles: int,
    activation: Any = "relu",
    lr: float = 0.1,
    T: float = 1.0,
    backward: str = DEFAULT_BACKWARD,
    frozen: tuple[str, ...] = (),
    seed: int = 0,
    loss: str = "mse",
    richardson_depths: tuple[int, ...] | None = None,
    block: str = "pre",
    **kwargs,
) -> ParticleSolution:
    """The infinite-width limit of a depth-``depth`` depth-μP ResNet trained by SGD on (X, Y).

    Builds ``ResNet(width=None, parameterization="depth_mup", ...)`` and runs the NFD particle
    recursion (module docstring) with ``particles`` Monte-Carlo particles.

    Args:
        X: (K, d) training inputs, consumed in order, ``batch_size`` per step.
        Y: (K,) targets (labels in {0, 1} for ``loss="logistic"``).
        depth: L, the number of Euler–Maruyama steps = depth of the finite network described; or
            ``None`` for L = ∞: Richardson extrapolation over ``richardson_depths`` sharing one Brownian
            path (:mod:`nfd.limits._richardson`; returns a :class:`~nfd.limits.ParticleLimit`).
        richardson_depths: with ``depth=None``, 2 or 3 depths each twice the previous (default (8, 16));
            2 levels give f_∞ ≈ 2 f_{2L} − f_L (error O(1/L²)), 3 levels (8 f_{4L} − 6 f_{2L} + f_L)/3.
        particles: P, the number of particles (Monte-Carlo error O(1/√P)); use P > K.
        activation: name or :class:`~nfd.Activation`.
        lr: η_c (a finite network trains at rate η_c·n).
        T: time horizon (τ = T/L).
        backward: ``"exact"`` (default: the limit of the ordinary coupled network, with
            Tensor-Program corrections, i.e. of what :func:`nfd.simulate` builds by default) or
            ``"gia"`` (the limit of the decoupled network: the published NFD).
        frozen: parameter groups kept at initialisation, from ``("input", "hidden", "output")``.
        seed: PRNG seed of the particles; the solution is a pure function of it.
        loss: ``"mse"`` or ``"logistic"``.
        block: ``"pre"`` (Eq. 1, default) or ``"post_ms"``, the mean-subtracted block of Tensor
            Programs VI §6.3, h_ℓ = h_{ℓ-1} + √τ MS(φ(W_ℓ h_{ℓ-1}/√n)), in the limit MS(a) = a − E[a]
            (``backward="exact"`` only; derivation in docs/tp6_nonlinear.md).
        batch_size: samples per SGD step (the update averages their gradients).
        X_test: optional (N, d) inputs evaluated before every step (never trained on).
        dtype: ``jnp.float32`` (default) or ``jnp.float64``.
        record_paths: also return the particle paths h^(k)_ℓ and g^(k)_ℓ.
        max_memory: byte limit (default 80% of physical memory); larger runs are refused.
        singular_tol: relative pivot below which a Gaussian direction counts as singular
            (default 1e-4 in float32, 1e-10 in float64).
        on_singular: what to do when a direction is dropped: ``"regularize"`` (default; drop it,
            report it in ``dropped_pivots`` and the pivot/eigenvalue diagnostics), ``"warn"`` (also
            warn) or ``"raise"`` (:class:`~nfd.SingularCovarianceError`).  Dropping a direction
            whose relative Schur complement is below ``singular_tol`` changes the paths by a
            relative O(√singular_tol).
        on_divergence: ``"raise"`` (:class:`~nfd.DivergenceError` with the step) or ``"return"``
            (warn; ``status.divergence_step`` records the step).
        eigenvalues: compute the smallest eigenvalues of Σ and Θ per layer (O(L·K³)).
        noise_depth: a multiple L·m of ``depth``; the normals of each layer are then the scaled sums
            of those of m finer layers, drawn as a run with ``depth=noise_depth`` draws them, so runs at
            different depths with the same ``seed`` and ``noise_depth`` share one Brownian path
            (common random numbers: the Euler–Maruyama error is measured without particle noise).
            Default ``depth`` (m = 1).
        devices: ``None`` (default device), ``"all"`` or a list of devices: shard the particles over
            a 1-D ``jax.sharding`` mesh with axis ``"particles"`` (particle means become all-reduces;
            ``particles`` must be a multiple of the device count).  After ``jax.distributed.initialize()``
            ``"all"`` spans every host (docs/scaling.md).  Equal to the one-device solve to round-off.
        storage_dtype: precision of the stored particle histories (O(L·K·P), the bulk of the memory):
            ``None`` (= ``dtype``), ``"bfloat16"`` or ``"float16"``; arithmetic stays in ``dtype``.  The
            error this adds is measured in docs/scaling.md (well below the Monte-Carlo error there).
        noise: ``"store"`` (default) keeps the normals ξ, ξ̃ (2·L·K·P numbers); ``"regenerate"``
            recomputes them from their counter-based keys when needed (same numbers; about half the
            memory, more time).
        sampling: ``"iid"`` (default: plain Monte Carlo, error ∝ 1/√P) or ``"sobol"`` (randomised
            quasi-Monte Carlo: each particle's Gaussians U, v, ξ, ξ̃ are the Φ⁻¹ of one point of a
            scrambled Sobol sequence, with a Brownian-bridge construction of the increments over
            depth; ``particles`` must be a power of 2).  Each seed is an independent randomisation,
            so means over seeds (or replicates) and their standard errors stay valid.  Measured in
            benchmarks/variance_reduction.py (tanh, d = 3, K = L = 8, exact): the spread of f̂ over
            seeds is 4–6× smaller than with ``"iid"`` at P = 2¹⁰–2¹⁴ (17–39× less variance) at
            ≈ 1–2.5× the time per solve and a few seconds more compilation.  Dimensions beyond
            21201 (scipy's Sobol table) are drawn iid.
        replicates: R, the number of independent particle systems the ``particles`` are split into
            (P/R particles each, every one with its own key from ``jax.random.split`` of the seed's
            key, run together: vmapped on one device; with ``devices`` each system's particles are
            sharded, so P/R must be a multiple of the device count).  Every result is the mean over the
            systems and ``outputs_stderr`` (and the other ``*_stderr``) their standard deviation / √R.
            Default ``None``: 4, else 2, else 1 (:func:`default_replicates`), so results carry an error
            bar at the same total particle count.  The bias differs: each system of P/R particles has
            the O(R/P) bias of its size (R times that of one system of P; measured in
            docs/nfd_solver.md), while the Monte-Carlo error is the same.  ``replicates=1`` is one
            system of P particles (no error bar; the numbers of earlier versions).
        checkpoint: path of a checkpoint file: if it exists the solve resumes from it (it must belong
            to the same problem), and the state is written there every ``checkpoint_every`` steps and
            at the end.  A resumed run is bit-identical to an uninterrupted one on the same devices.
        checkpoint_every: steps between checkpoints (needs ``checkpoint``).
        progress: print the step, elapsed and remaining time to stderr (about 20 times per run);
            or a function ``progress(done, steps)`` called after each of those chunks instead
            (the ``nfd`` command draws its progress bar with it).

    Returns:
        :class:`ParticleSolution` with ``.outputs`` of shape (K,).

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> sol = nfd.solve(X, Y, depth=8, particles=2048, activation="tanh", lr=0.5)
        >>> sol.outputs.shape, sol.sigma.shape
        ((4,), (8, 4, 4))
    """
    if depth is None:
        from ._richardson import solve_particles_limit

        return solve_particles_limit(X, Y, richardson_depths=richardson_depths, particles=particles,
                                     activation=activation, lr=lr, T=T, backward=backward, frozen=frozen, seed=seed,
                                     loss=loss, **kwargs)
    if richardson_depths is not None:
        raise ValueError(f"richardson_depths: only used with depth=None (the L = ∞ extrapolation), got depth={depth!r}")
    X_arr = check_inputs_2d(X)
    net = ResNet(
        depth=depth, input_dim=X_arr.shape[1], width=None, activation=activation, T=T, block=block,
        parameterization="depth_mup", lr=lr, frozen=frozen, loss=loss,
    )
    return solve_particles_network(net, X, Y, particles=particles, backward=backward, seed=seed, **kwargs)

