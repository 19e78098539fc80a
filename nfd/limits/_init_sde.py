"""The forward and backward McKean–Vlasov SDEs of a depth-μP ResNet at initialisation.

NFD paper, Propositions 2 and 6: as n, L → ∞ each coordinate of h_ℓ and g_ℓ follows

    dh_t = σ_t dw_t,   σ_t² = E[φ(h_t)²],   h_0 ~ N(0, |x|²/d)              (forward)
    dg_t = φ'(h_t) σ̃_t dw̃_t,  σ̃_t² = E[g_t²],  g_T ~ N(0, 1)  (backward, from T to 0)

with independent w, w̃.  For several inputs x^a the noises are correlated across inputs.
Three descriptions of the same law are provided, so each checks the others:

* :func:`init_sde_particles`: Euler–Maruyama with P particles (McKean–Vlasov: the diffusion
  coefficient is a particle mean), h_ℓ = h_{ℓ-1} + √τ Σ_{ℓ-1}^{1/2} ξ_ℓ and
  g_{ℓ-1} = g_ℓ + √τ φ'(h_{ℓ-1}) Θ_ℓ^{1/2} ξ̃_ℓ.  This is also the exact n → ∞ limit of the
  depth-L network (the Euler–Maruyama scheme *is* the network).  Σ^{1/2} is any F with F Fᵀ = Σ
  (each gives F ξ the same law): a pivoted Cholesky factor for N ≤ 16 inputs, the symmetric
  ``eigh`` root above.
* :func:`discrete_init_kernels`: the same recursion for the covariances, deterministic
  (Gaussian expectations in closed form or by quadrature): Q_ℓ = Q_{ℓ-1} + τ E[φφ](Q_{ℓ-1}),
  Θ_{ℓ-1} = Θ_ℓ ⊙ (1 + τ E[φ'φ'](Q_{ℓ-1})).
* :func:`gaussian_init_kernels`: the continuum: h_t is Gaussian with covariance Q(t) solving
  Q' = E[φ(h)φ(h)ᵀ] (q' = E[φ(h)²] for one input), solved with diffrax; the backward kernel
  is Θ(t) = exp(∫_t^T E[φ'(h_s)φ'(h_s)ᵀ] ds) elementwise (Θ(T) = 1).

:func:`coupling_error` measures the synchronous coupling of NFD Appendix C,
E|h_{ℓ,i} − h_{t_ℓ}|², between a width-n depth-L network and the SDE.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._activations import get_activation
from .._memory import check_memory
from .._validate import check_dtype, check_positive_float, seed_key

__all__ = [
    "InitKernels",
    "InitParticles",
    "CouplingError",
    "gaussian_init_kernels",
    "discrete_init_kernels",
    "init_sde_particles",
    "coupling_error",
    "coupling_depth_error",
]


@dataclasses.dataclass(frozen=True)
class InitKernels:
    """Deterministic covariances at initialisation.

    Attributes:
        ts: (S,) times t (layer ℓ sits at t_ℓ = ℓT/L).
        Q: (S, N, N) forward covariance E[h_t^a h_t^b] over the N inputs.
        Theta: (S, N, N) backward covariance E[g_t^a g_t^b].
    """

    ts: np.ndarray
    Q: np.ndarray
    Theta: np.ndarray


@dataclasses.dataclass(frozen=True)
class InitParticles:
    """Particle (Euler–Maruyama) solution at initialisation.

    Attributes:
        ts: (L+1,) layer times.
        Q: (L+1, N, N) particle estimate of E[h_ℓ^a h_ℓ^b].
        Theta: (L+1, N, N) particle estimate of E[g_ℓ^a g_ℓ^b] (None for a forward-only solve).
        h: (L+1, N, P) forward paths, if recorded.
        g: (L+1, N, P) backward paths, if recorded.
    """

    ts: np.ndarray
    Q: np.ndarray
    Theta: np.ndarray | None
    h: np.ndarray | None = None
    g: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class CouplingError:
    """E|·|² of the synchronous coupling (NFD Appendix C), one input, at every layer.

    Attributes:
        ts: (L+1,) layer times.
        total: (L+1,) E|h^{n,L}_ℓ − h_{t_ℓ}|² (network vs continuum SDE).
        width_part: (L+1,) E|h^{n,L}_ℓ − h^L_ℓ|² (network vs its n → ∞ limit at depth L; Prop. 9).
        depth_part: (L+1,) E|h^L_ℓ − h_{t_ℓ}|², exact (no Monte Carlo; Prop. 11).
        total_stderr, width_stderr: (L+1,) standard errors of the Monte-Carlo means over seeds.
        width, depth, seeds: the configuration.
    """

    ts: np.ndarray
    total: np.ndarray
    width_part: np.ndarray
    depth_part: np.ndarray
    total_stderr: np.ndarray
    width_stderr: np.ndarray
    width: int
    depth: int
    seeds: int


@functools.partial(jax.jit, static_argnames="act")
def _esq(q, act):
    return act.expect_sq(q)


def _bucket(n):
    return max(64, 1 << (int(n) - 1).bit_length())


def _esq_np(q, act):
    """E[φ(h)²], h ~ N(0, q), for a numpy array q (padded to a few shapes to limit compiles)."""
    q = np.asarray(q, dtype=np.float64)
    flat = q.ravel()
    pad = np.ones(_bucket(flat.size))
    pad[: flat.size] = flat
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return np.asarray(_esq(jnp.asarray(pad, dt), act))[: flat.size].reshape(q.shape)


@functools.partial(jax.jit, static_argnames="act")
def _grams(Q, act):
    return act.gram(Q), act.dgram(Q)


def _check_X(X):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must have shape (N, d) with N, d ≥ 1, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    return X


def _check_pos_int(name, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {v!r}")
    return int(v)


def _check_T(T):
    return check_positive_float("T", T)


def _field(t, y, act):
    Q, _ = y
    return act.gram(Q), act.dgram(Q)


_TERM = diffrax.ODETerm(_field)  # one term object, so diffrax's compiled solve is reused


def _ode_solution(Q0, act, T, rtol, atol):
    """Solve (Q, A)' = (E[φφ](Q), E[φ'φ'](Q)) on [0, T] with diffrax (Tsit5, adaptive, dense)."""
    y0 = (Q0, jnp.zeros_like(Q0))
    return diffrax.diffeqsolve(
        _TERM, diffrax.Tsit5(), t0=0.0, t1=T, dt0=None, y0=y0, args=act,
        saveat=diffrax.SaveAt(t1=True, dense=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000,
    )


@jax.jit
def _evaluate(sol, ts):
    return jax.vmap(sol.evaluate)(ts)


def gaussian_init_kernels(X, *, activation: Any = "relu", T: float = 1.0, ts=None, rtol: float = 1e-9,
                          atol: float = 1e-11) -> InitKernels:
    """The continuum covariances Q(t), Θ(t) at initialisation, by an adaptive ODE solve.

    Q(0) = X Xᵀ/d, Q' = E[φ(u)φ(u)ᵀ] with u ~ N(0, Q) (``Activation.gram``) and
    Θ(t) = exp(A(T) − A(t)) with A' = E[φ'(u)φ'(u)ᵀ] (``Activation.dgram``), A(0) = 0.

    Args:
        X: (N, d) inputs.
        activation: name or :class:`~nfd.Activation`.
        T: time horizon.
        ts: times to report (default: 65 equally spaced points on [0, T]).
        rtol, atol: tolerances of the adaptive solver (runs in float64 when x64 is enabled).

    Example:
        >>> import numpy as np
        >>> k = gaussian_init_kernels(np.ones((1, 2)), activation="identity", ts=[0.0, 1.0])
        >>> np.round(np.asarray(k.Q[:, 0, 0], np.float64), 4).tolist()  # q' = q, q(0) = 1  ->  q(1) = e
        [1.0, 2.7183]
    """
    X = _check_X(X)
    act = get_activation(activation)
    T = _check_T(T)
    ts = np.linspace(0.0, T, 65) if ts is None else np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0 or np.any(ts < 0) or np.any(ts > T) or np.any(np.diff(ts) < 0):
        raise ValueError(f"ts must be a non-decreasing 1-d array of times in [0, T={T}]")
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    Q0 = jnp.asarray(X @ X.T / X.shape[1], dt)
    sol = _ode_solution(Q0, act, jnp.asarray(T, dt), rtol, atol)
    ts_pad = np.full(_bucket(ts.size), T)
    ts_pad[: ts.size] = ts
    Q, A = (np.asarray(a)[: ts.size] for a in _evaluate(sol, jnp.asarray(ts_pad, dt)))
    AT = np.asarray(sol.ys[1])[-1]
    Theta = np.exp(AT[None] - A)
    return InitKernels(ts=ts, Q=Q, Theta=Theta)


def discrete_init_kernels(X, *, depth: int, activation: Any = "relu", T: float = 1.0) -> InitKernels:
    r"""The n → ∞ covariances of a depth-L network at initialisation (Euler on the ODE).

    $Q_0 = XX^\top/d$, $Q_\ell = Q_{\ell-1} + \tau\,\mathbb{E}_{Q_{\ell-1}}[\phi\phi^\top]$;
    $\Theta_L = 1$, $\Theta_{\ell-1} = \Theta_\ell \odot (1 + \tau\,\mathbb{E}_{Q_{\ell-1}}[\phi'\phi'^\top])$,
    where $\mathbb{E}_Q$ is the expectation over $h \sim \mathcal{N}(0, Q)$ and $\tau = T/L$.

    Example:
        >>> import numpy as np
        >>> k = discrete_init_kernels(np.ones((1, 2)), depth=4, activation="identity")
        >>> float(np.round(k.Q[-1, 0, 0], 6))  # (1 + 1/4)^4
        2.441406
    """
    X = _check_X(X)
    act = get_activation(activation)
    T = _check_T(T)
    L = _check_pos_int("depth", depth)
    tau = T / L
    Q = [X @ X.T / X.shape[1]]
    D = []
    for _ in range(L):
        Gq, Gd = (np.asarray(a) for a in _grams(jnp.asarray(Q[-1]), act))
        D.append(Gd)
        Q.append(Q[-1] + tau * Gq)
    Th = [np.ones_like(Q[0])]
    for l in range(L, 0, -1):
        Th.append(Th[-1] * (1.0 + tau * D[l - 1]))
    return InitKernels(ts=np.linspace(0.0, T, L + 1), Q=np.stack(Q), Theta=np.stack(Th[::-1]))


def _psd_sqrt(S):
    """The symmetric square root V diag(√max(w, 0)) Vᵀ of a PSD matrix, by ``eigh``."""
    w, V = jnp.linalg.eigh(0.5 * (S + S.T))
    return (V * jnp.sqrt(jnp.maximum(w, 0.0))) @ V.T


_CHOL_MAX_N = 16  # pivoted Cholesky (N unrolled rank-one steps) up to this N; eigh above


def _psd_chol(S):
    """A square root F (F Fᵀ = S up to round-off) of a PSD N×N matrix without a solver-library call:
    Cholesky with diagonal pivoting, unrolled over the N columns (N is static), element-wise ops only.

    Step k takes the largest remaining diagonal entry d = R_jj of the Schur complement R (R = S at the
    start) and, if d > N·ε·tr S, sets column k of F to R[:, j]/√d and R ← R − F_k F_kᵀ; otherwise (a
    null direction: duplicate inputs, g_L's rank-one Θ, or round-off) column k is zero and R is kept.
    Rows already chosen are masked to zero, so F is a row permutation of a lower-triangular factor.
    Any F with F Fᵀ = S gives F ξ the law N(0, S): the particle system's law is that of the ``eigh``
    square root; its sample paths are not.

    Error: F Fᵀ = S + E with |E_ab| ≤ γ_{N+1} √(S_aa S_bb) (Cholesky's backward error, Higham Thm 10.3,
    the pivoting being a reordering; |F||F|ᵀ ≤ √(S_aa S_bb) by Cauchy–Schwarz) plus, where columns
    are dropped, the remainder R, whose entries are ≤ the dropped pivots ≤ N·ε·tr S (R is PSD up to
    round-off and every remaining diagonal entry is ≤ the largest one, which was dropped)."""
    N = S.shape[-1]
    S = 0.5 * (S + S.T)
    tol = N * jnp.finfo(S.dtype).eps * jnp.maximum(jnp.trace(S), 0.0)
    idx = jnp.arange(N)
    free = jnp.ones((N,), bool)
    R = S
    cols = []
    for _ in range(N):
        d_all = jnp.where(free, jnp.diagonal(R), -jnp.inf)
        j = jnp.argmax(d_all)
        d = jnp.max(d_all)
        keep = d > tol
        onehot = idx == j
        c = jnp.where(free & keep, jnp.sum(jnp.where(onehot[None, :], R, 0.0), axis=1), 0.0)
        c = c / jnp.sqrt(jnp.where(keep, d, 1.0))
        cols.append(c)
        R = R - c[:, None] * c[None, :]
        free = free & ~onehot
    return jnp.stack(cols, axis=1)


_FACTORS = ("auto", "chol", "eigh")


def _psd_factor(S, factor="auto"):
    """A square root of the PSD matrix S: pivoted Cholesky (:func:`_psd_chol`) for N ≤ 16 under
    ``"auto"``, the symmetric ``eigh`` root (:func:`_psd_sqrt`, a LAPACK/cuSOLVER call) otherwise."""
    if factor not in _FACTORS:
        raise ValueError(f"factor must be one of {_FACTORS}, got {factor!r}")
    if factor == "chol" or (factor == "auto" and S.shape[-1] <= _CHOL_MAX_N):
        return _psd_chol(S)
    return _psd_sqrt(S)


def init_sde_particles(X, *, depth: int, particles: int, activation: Any = "relu", T: float = 1.0, seed: int = 0,
                       dtype=jnp.float32, record_paths: bool = False, backward: bool = True,
                       max_memory: int | None = None) -> InitParticles:
    """Euler–Maruyama particle solution of the forward and backward McKean–Vlasov SDEs.

    Args:
        X: (N, d) inputs (the N paths of one particle are correlated across inputs).
        depth: L, the number of Euler–Maruyama steps (τ = T/L).
        particles: P.
        activation, T: as for :class:`~nfd.ResNet`.
        seed: PRNG seed (the forward paths do not depend on ``backward``).
        dtype: ``jnp.float32`` or ``jnp.float64``.
        record_paths: also return h (L+1, N, P) and g (L+1, N, P).
        backward: also solve the backward SDE (Θ, g).  ``False`` runs the forward SDE only: one
            scan that keeps only the current (N, P) particles and the (N, N) covariance per layer,
            O(N·P) memory instead of O(L·N·P) (unless ``record_paths``), about half the time.

    Returns:
        :class:`InitParticles` with particle covariances Q (and Θ if ``backward``) at every layer.

    Example:
        >>> import numpy as np
        >>> sol = init_sde_particles(np.ones((2, 3)), depth=8, particles=4096, activation="tanh")
        >>> sol.Q.shape
        (9, 2, 2)
        >>> init_sde_particles(np.ones((2, 3)), depth=8, particles=4096, backward=False).Theta is None
        True
    """
    X = _check_X(X)
    act = get_activation(activation)
    T = _check_T(T)
    L = _check_pos_int("depth", depth)
    P = _check_pos_int("particles", particles, 2)
    for name, v in (("record_paths", record_paths), ("backward", backward)):
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {v!r}")
    dtype = check_dtype("dtype", dtype)
    N, d = X.shape
    paths = (2 if backward else 1) * (L + 1) if (backward or record_paths) else 0
    check_memory(int(1.25 * ((paths + 4) * N * P + P * d) * dtype.itemsize), what="init_sde_particles",
                 hint=f"particles={P}, depth={L}, inputs={N}", limit_bytes=max_memory)
    out = _init_particles_jit(seed_key(seed), jnp.asarray(X, dtype), jnp.asarray(T / L, dtype),
                              L=L, P=P, act=act, backward=bool(backward), record=bool(record_paths))
    Q, Th, h, g = (None if a is None else np.asarray(a) for a in out)
    return InitParticles(ts=np.linspace(0.0, T, L + 1), Q=Q, Theta=Th, h=h, g=g)


def _forward(key, X, tau, *, L, P, act, keep_paths, factor="auto", gram="separate"):
    """The forward particles: returns Q (L+1, N, N) and, if ``keep_paths``, H (L+1, N, P).

    ``gram``: ``"separate"`` forms S = φ(h)φ(h)ᵀ/P and Q = hhᵀ/P by two (N×P)(P×N) products per
    layer; ``"stacked"`` by one product of Z = [h; φ(h)] (2N×P) with itself (one kernel instead of two
    on an accelerator; the same numbers up to the summation order).  ``factor``: :func:`_psd_factor`.

    Layout: particles on the last (minor, contiguous) axis, so every per-step operation (activation,
    the two (N×P)(P×N) Gram products, the N×N factor applied to the noise, the update) runs over
    long contiguous rows; the carry is one (N, P) array and the per-layer output is an (N, N) matrix
    unless the paths are kept."""
    N, d = X.shape
    dtype = X.dtype
    k_u, _, k_f, _ = jax.random.split(key, 4)  # the same streams with or without the backward pass
    U = jax.random.normal(k_u, (P, d), dtype)
    h0 = X @ U.T / math.sqrt(d)  # (N, P)
    st = jnp.sqrt(tau)

    if gram not in ("separate", "stacked"):
        raise ValueError(f"gram must be 'separate' or 'stacked', got {gram!r}")

    def fwd(h, l):
        u = act.fn(h)
        if gram == "stacked":
            Z = jnp.concatenate([h, u], axis=0)
            G = Z @ Z.T / P
            Qh, S = G[:N, :N], G[N:, N:]
        else:
            S = u @ u.T / P
            Qh = h @ h.T / P
        xi = jax.random.normal(jax.random.fold_in(k_f, l), (N, P), dtype)
        hn = h + st * _psd_factor(S, factor) @ xi
        return hn, ((Qh, h) if keep_paths else Qh)

    hL, ys = jax.lax.scan(fwd, h0, jnp.arange(L))
    Qs, hs = ys if keep_paths else (ys, None)
    Q = jnp.concatenate([Qs, (hL @ hL.T / P)[None]], axis=0)
    H = jnp.concatenate([hs, hL[None]], axis=0) if keep_paths else None  # (L+1, N, P)
    return Q, H


def _init_particles(key, X, tau, *, L, P, act, backward=True, record=True, factor="auto", gram="separate"):
    """(Q, Θ, H, G): Θ and G are None without ``backward``; H and G are None without ``record``.
    ``factor``: the square root of the per-layer covariances (:func:`_psd_factor`); ``gram``: see
    :func:`_forward`."""
    N, d = X.shape
    dtype = X.dtype
    Q, H = _forward(key, X, tau, L=L, P=P, act=act, keep_paths=backward or record, factor=factor,
                    gram=gram)
    if not backward:
        return Q, None, H if record else None, None
    _, k_v, _, k_b = jax.random.split(key, 4)
    st = jnp.sqrt(tau)
    v = jax.random.normal(k_v, (P,), dtype)
    gL = jnp.broadcast_to(v, (N, P))

    def bwd(g, xs):
        l, hp = xs
        Th = g @ g.T / P
        xi = jax.random.normal(jax.random.fold_in(k_b, l), (N, P), dtype)
        gn = g + st * act.deriv(hp) * (_psd_factor(Th, factor) @ xi)
        return gn, (Th, g if record else None)

    g0, (Ths, gs) = jax.lax.scan(bwd, gL, (jnp.arange(L), H[:-1]), reverse=True)
    Th = jnp.concatenate([(g0 @ g0.T / P)[None], Ths], axis=0)
    G = jnp.concatenate([g0[None], gs], axis=0) if record else None
    return Q, Th, H if record else None, G


_init_particles_jit = jax.jit(_init_particles, static_argnames=("L", "P", "act", "backward", "record", "factor",
                                                                     "gram"))


def _coupling_grid(q0, L, act, T):
    """Per-layer coefficients of the synchronous coupling (one input, variance q0)."""
    tau = T / L
    xg, wg = np.polynomial.legendre.leggauss(8)
    edges = np.linspace(0.0, T, L + 1)
    nodes = (edges[:-1, None] + 0.5 * tau * (xg[None, :] + 1.0)).ravel()
    ts = np.concatenate([edges, nodes])
    k = gaussian_init_kernels(np.full((1, 1), math.sqrt(q0)), activation=act, T=T, ts=np.sort(ts))
    qmap = dict(zip(np.sort(ts).tolist(), k.Q[:, 0, 0].tolist()))
    q_nodes = np.array([qmap[t] for t in nodes]).reshape(L, 8)
    q_edges = np.array([qmap[t] for t in edges])
    m = 0.5 * tau * (np.sqrt(_esq_np(q_nodes, act)) * wg[None, :]).sum(axis=1)  # ∫σ ds per layer
    v = np.maximum(np.diff(q_edges) - m**2 / tau, 0.0)  # Brownian-bridge remainder variance
    qL = [q0]  # the depth-L (n → ∞) variance recursion
    for _ in range(L):
        qL.append(qL[-1] + tau * float(_esq_np(np.array([qL[-1]]), act)[0]))
    sL = np.sqrt(tau * _esq_np(np.array(qL[:-1]), act))  # √τ σ^L_{ℓ-1}
    depth_part = np.concatenate([[0.0], np.cumsum((sL - m / math.sqrt(tau)) ** 2 + v)])
    return edges, sL, m / math.sqrt(tau), np.sqrt(v), depth_part


def coupling_depth_error(q0: float, *, depth: int, activation: Any = "relu", T: float = 1.0) -> np.ndarray:
    """E|h^L_ℓ − h_{t_ℓ}|² for ℓ = 0..L, exactly (no Monte Carlo): the depth-L (n → ∞) network
    against the forward SDE under the synchronous coupling of :func:`coupling_error`.

    Example:
        >>> e = coupling_depth_error(1.0, depth=8, activation="tanh")
        >>> e.shape
        (9,)
    """
    q0 = _check_q0(q0)
    return _coupling_grid(q0, _check_pos_int("depth", depth), get_activation(activation), _check_T(T))[-1]


def _check_q0(q0):
    try:
        q0 = float(q0)
    except (TypeError, ValueError):
        raise ValueError(f"q0 must be a positive number, got {q0!r}") from None
    if not (q0 > 0 and math.isfinite(q0)):
        raise ValueError(f"q0 must be a positive finite number, got {q0!r}")
    return q0


def coupling_error(q0: float, *, width: int, depth: int, activation: Any = "relu", T: float = 1.0, seeds: int = 16,
                   seed: int = 0, dtype=jnp.float64) -> CouplingError:
    """Synchronous coupling of a width-n depth-L network with the forward SDE (one input).

    At initialisation, z_ℓ = W_ℓ φ(h_{ℓ-1}) / |φ(h_{ℓ-1})| is exactly N(0, I_n) and independent
    of h_0..h_{ℓ-1} (W_ℓ is Gaussian and independent of them), so the network is, in law,
    h_ℓ = h_{ℓ-1} + √(τ/n) |φ(h_{ℓ-1})| z_ℓ (NFD Appendix C.1).  The same z drive

    * the depth-L limit  h^L_ℓ = h^L_{ℓ-1} + √τ √(E φ²(h^L_{ℓ-1})) z_ℓ, and
    * the SDE  h_t = h_0 + ∫ σ_s dw_s, whose Brownian motion has increments √τ z_ℓ on the
      layer intervals, filled in with independent Brownian bridges:
      ``∫_{t_{ℓ-1}}^{t_ℓ} σ dw = (m_ℓ/τ) √τ z_ℓ + √(v_ℓ) η_ℓ``, ``m_ℓ = ∫σ ds``, ``v_ℓ = ∫σ² ds − m_ℓ²/τ``,

    all from the same h_0 ~ N(0, q0).  σ_t² = E[φ²(h_t)] comes from the ODE q' = E[φ²]
    (:func:`gaussian_init_kernels`), m_ℓ from 8-point Gauss–Legendre per layer.

    Args:
        q0: |x|²/d, the input variance.
        width, depth: n and L of the network.
        seeds: independent networks; the mean over seeds and coordinates has a standard error.

    Returns:
        :class:`CouplingError` (per-layer mean squared distances and their standard errors).
    """
    q0 = _check_q0(q0)
    act = get_activation(activation)
    T = _check_T(T)
    n = _check_pos_int("width", width)
    L = _check_pos_int("depth", depth)
    S = _check_pos_int("seeds", seeds, 2)
    tau = T / L
    edges, sL, mc, vb, depth_part = _coupling_grid(q0, L, act, T)
    check_memory(int(1.25 * 8 * S * n * 6), what="coupling_error", hint=f"width={n}, seeds={S}")
    run = _coupling_jit(n=n, L=L, act=act)
    keys = jax.random.split(seed_key(seed), S)
    tot, wid = run(keys, jnp.asarray(q0, dtype), jnp.asarray(sL, dtype), jnp.asarray(mc, dtype),
                   jnp.asarray(vb, dtype), jnp.asarray(tau, dtype))
    tot, wid = np.asarray(tot), np.asarray(wid)  # (S, L+1): per-seed coordinate means
    se = lambda a: a.std(axis=0, ddof=1) / math.sqrt(S)
    return CouplingError(ts=edges, total=tot.mean(0), width_part=wid.mean(0), depth_part=depth_part,
                         total_stderr=se(tot), width_stderr=se(wid), width=n, depth=L, seeds=S)


def _coupling_one(key, q0, sL, mc, vb, tau, *, n, L, act):
    k0, kz, ke = jax.random.split(key, 3)
    dtype = sL.dtype
    h0 = jnp.sqrt(q0) * jax.random.normal(k0, (n,), dtype)

    def layer(carry, l):
        hn, hl, hc = carry
        z = jax.random.normal(jax.random.fold_in(kz, l), (n,), dtype)
        eta = jax.random.normal(jax.random.fold_in(ke, l), (n,), dtype)
        hn = hn + jnp.sqrt(tau / n) * jnp.linalg.norm(act.fn(hn)) * z
        hl = hl + sL[l] * z
        hc = hc + mc[l] * z + vb[l] * eta
        return (hn, hl, hc), (jnp.mean((hn - hc) ** 2), jnp.mean((hn - hl) ** 2))

    _, (tot, wid) = jax.lax.scan(layer, (h0, h0, h0), jnp.arange(L))
    z = jnp.zeros((1,), dtype)
    return jnp.concatenate([z, tot]), jnp.concatenate([z, wid])


@functools.lru_cache(maxsize=16)
def _coupling_jit(*, n, L, act):
    return jax.jit(jax.vmap(lambda k, q0, sL, mc, vb, tau: _coupling_one(k, q0, sL, mc, vb, tau, n=n, L=L, act=act),
                            in_axes=(0, None, None, None, None, None)))
