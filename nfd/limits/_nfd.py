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

Near-singular Σ or Θ (identical samples, more samples than particles, ReLU paths that are
exactly zero) are handled by a positive-semidefinite Cholesky: a pivot whose Schur complement
is below ``singular_tol`` × its variance is dropped (that ζ becomes an exact combination of the
earlier ones), counted and reported in the result (``on_singular="warn"`` also warns,
``on_singular="raise"`` raises :class:`~nfd.SingularCovarianceError`).  With a frozen output
layer g^(k)_L = v for every k, so Θ_L is singular by construction and dropping is exactly right.

Cost: O(P·L·K²) time, (3 or 4)·L·K·P + 4·L·K² numbers of memory (K = number of samples).
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

from .._errors import DivergenceError, SingularCovarianceError
from .._losses import loss_grad, loss_value
from .._memory import check_memory, format_bytes
from .._model import ResNet
from .._validate import check_data, check_test_inputs

__all__ = ["solve_particles", "solve_particles_network", "ParticleSolution", "estimate_particle_memory", "BACKWARDS"]

BACKWARDS = ("gia", "exact")

# Pivot of a dropped (singular) direction in the stored, solve-ready Cholesky factor: large
# enough that a triangular solve gives ~0 for that component, small enough never to overflow.
_BIG = 1e30


@dataclasses.dataclass(frozen=True)
class ParticleSolution:
    """What :func:`solve_particles` returns (numpy arrays).

    Attributes:
        outputs: (K,) f̂^(k) = E[g^(k)_L h^(k)_L], the output on sample k before update k.
        losses: (K,) ℓ(f̂^(k), y^(k)).
        test_outputs: (steps, N) outputs on ``X_test`` before each step, or ``None``.
        sigma: (L, K, K) Σ_{ℓ-1}[i, k] = E[φ(h^(i)_{ℓ-1}) φ(h^(k)_{ℓ-1})], ℓ = 1..L (forward kernels).
        theta: (L, K, K) Θ_ℓ[i, k] = E[g^(i)_ℓ g^(k)_ℓ], ℓ = 1..L (backward kernels).
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


def _grow(Lsolve, past_cross, new_gram, Xi, xi_new, start, tol):
    """Extend a Gaussian family by B new members.

    Args:
        Lsolve: (H, H) solve-ready Cholesky factor of the existing members (rows ≥ start are
            identity rows; dropped pivots hold ``_BIG``).
        past_cross: (H, B) covariances of the existing members with the new ones (rows ≥ start 0).
        new_gram: (B, B) covariance among the new members.
        Xi: (H, P) standard normals of the existing members (rows ≥ start zero).
        xi_new: (B, P) fresh standard normals.
        start: index of the first new member (traced).

    Returns:
        zeta (B, P) jointly Gaussian with the existing ζ = chol·ξ, the new rows (B, H) of the
        true factor, the same rows in solve-ready form, pivot ratios (B,) and dropped flags (B,).
    """
    H = Lsolve.shape[0]
    B = new_gram.shape[0]
    A = solve_triangular(Lsolve, past_cross, lower=True)  # (H, B)
    S = new_gram - A.T @ A
    S = 0.5 * (S + S.T)
    D, ratio, dropped = _robust_chol(S, jnp.diagonal(new_gram), tol)
    zeta = A.T @ Xi + D @ xi_new
    rows = jax.lax.dynamic_update_slice(A.T, D, (0, start))
    Dsolve = D + jnp.diag(jnp.where(dropped, _BIG, 0.0).astype(D.dtype))
    rows_solve = jax.lax.dynamic_update_slice(A.T, Dsolve, (0, start))
    del H, B
    return zeta, rows, rows_solve, ratio, dropped


def _condition_each(Lsolve, past_cross, var, Xi, xi_new):
    """ζ for M extra paths (test inputs), each conditioned on the existing members only.

    Their joint law among themselves is irrelevant (each test output is a marginal mean), so
    each gets an independent fresh normal.  past_cross (H, M), var (M,), xi_new (M, P).
    """
    A = solve_triangular(Lsolve, past_cross, lower=True)
    s = jnp.maximum(var - jnp.sum(A * A, axis=0), 0.0)
    return A.T @ Xi + jnp.sqrt(s)[:, None] * xi_new


def _build(st: _Static):
    P, L, d, steps, B, N = st.P, st.L, st.d, st.steps, st.B, st.N
    H = steps * B
    M = B + N
    act = st.activation
    phi, dphi = act.fn, act.deriv
    dtype = st.dtype
    exact = st.exact

    m = st.refine

    def normals(k, l, s, rows):
        """Standard normals (rows, P) of layer l, step s: the scaled sum of the normals of the m
        finer layers l·m..l·m+m-1, so runs with depth L and L·m share their Brownian paths."""
        ks = jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(k, l * m + j), s))(jnp.arange(m))
        z = jax.vmap(lambda kk: jax.random.normal(kk, (rows, P), dtype))(ks)
        return jnp.sum(z, axis=0) / math.sqrt(m)

    def run(key, Xs, Ys, Xt, rates, sqrt_tau, tol):
        TRACE_COUNT[0] += 1
        eta_in, eta_hid, eta_out = rates[0], rates[1], rates[2]
        tau = sqrt_tau * sqrt_tau
        k_u, k_v, k_fwd, k_bwd, k_test = jax.random.split(key, 5)
        U = jax.random.normal(k_u, (P, d), dtype)
        v = jax.random.normal(k_v, (P,), dtype)
        Xflat = Xs.reshape(H, d)
        sqd = math.sqrt(d)
        eyeH = jnp.eye(H, dtype=dtype)

        state = dict(
            Phi=jnp.zeros((L, H, P), dtype),  # φ(h^(i)_{ℓ-1}), ℓ = 1..L
            G=jnp.zeros((L + 1, H, P), dtype),  # g^(i)_ℓ, ℓ = 0..L
            hL=jnp.zeros((H, P), dtype),  # h^(i)_L
            Xi=jnp.zeros((L, H, P), dtype),  # forward normals of W_ℓ
            Xit=jnp.zeros((L, H, P), dtype),  # backward normals of W_ℓᵀ
            LS=jnp.broadcast_to(eyeH, (L, H, H)),  # solve-ready chol(Σ_{ℓ-1})
            LT=jnp.broadcast_to(eyeH, (L, H, H)),  # solve-ready chol(Θ_ℓ)
            Sig=jnp.zeros((L, H, H), dtype),  # rows of Σ (lower triangle incl. diagonal)
            The=jnp.zeros((L, H, H), dtype),
            c=jnp.zeros((H,), dtype),  # ℓ'_i / B
        )
        if st.record_paths:
            state["Hp"] = jnp.zeros((L + 1, H, P), dtype)

        def step(state, xs):
            s, x, y = xs  # x (B, d), y (B,)
            start = s * B
            c = state["c"]  # zero for samples of this and later steps
            xin = jnp.concatenate([x, Xt], axis=0) if N else x  # (M, d)
            # ---- input layer ------------------------------------------------------------
            xg = Xflat @ xin.T / d  # (H, M)
            h0 = xin @ U.T / sqd - eta_in * (c[:, None] * xg).T @ state["G"][0]  # (M, P)

            # ---- forward, ℓ = 1..L --------------------------------------------------------
            def fwd(h, l):
                Phi_l = state["Phi"][l]
                Xi_l = state["Xi"][l]
                G_l = state["G"][l + 1]
                LS_l = state["LS"][l]
                u = phi(h)  # (M, P)
                r = Phi_l @ u.T / P  # (H, M): Σ[i, new], zero for i ≥ start
                snn = u[:B] @ u[:B].T / P
                xi_new = normals(k_fwd, l, s, B)
                zeta, rows, rows_solve, ratio, dropped = _grow(LS_l, r[:, :B], snn, Xi_l, xi_new, start, tol)
                if N:
                    xi_t = normals(k_test, l, s, N)
                    var_t = jnp.mean(u[B:] ** 2, axis=1)
                    zeta_t = _condition_each(LS_l, r[:, B:], var_t, Xi_l, xi_t)
                    zeta = jnp.concatenate([zeta, zeta_t], axis=0)
                coef = -tau * eta_hid * (c[:, None] * r).T  # (M, H)
                if exact:
                    # ż = Σ_{i<start} g^(i)_ℓ chol(Θ_ℓ)^{-T} E[φ(h) ξ̃^(i)]
                    Et = state["Xit"][l] @ u.T / P  # (H, M)
                    cs = solve_triangular(state["LT"][l], Et, lower=True, trans="T")
                    coef = coef + sqrt_tau * cs.T
                hn = h + sqrt_tau * zeta + coef @ G_l
                sig_rows = jax.lax.dynamic_update_slice(r[:, :B].T, snn, (0, start))
                out = (u[:B], h[:B], xi_new, rows_solve, sig_rows, jnp.min(ratio), jnp.sum(dropped))
                return hn, out

            hLn, (u_new, hprev, xi_new, LS_rows, Sig_rows, fratio, fdrop) = jax.lax.scan(fwd, h0, jnp.arange(L))
            Phi = jax.lax.dynamic_update_slice(state["Phi"], u_new, (0, start, 0))
            Xi = jax.lax.dynamic_update_slice(state["Xi"], xi_new, (0, start, 0))
            LS = jax.lax.dynamic_update_slice(state["LS"], LS_rows, (0, start, 0))
            Sig = jax.lax.dynamic_update_slice(state["Sig"], Sig_rows, (0, start, 0))

            # ---- output ------------------------------------------------------------------
            gL = v - eta_out * (c @ state["hL"])  # (P,)
            f_all = hLn @ gL / P  # (M,)
            f = f_all[:B]
            lp = loss_grad(st.loss, f, y)
            lval = loss_value(st.loss, f, y)

            # ---- backward, ℓ = L..1 (training paths only) ----------------------------------
            def bwd(g, xs_l):
                l, hp = xs_l  # hp: (B, P) = h^(new)_{ℓ-1}
                G_l = state["G"][l + 1]
                Xit_l = state["Xit"][l]
                LT_l = state["LT"][l]
                Phi_l = Phi[l]  # includes this step's rows
                tr = G_l @ g.T / P  # (H, B): Θ[i, new], zero for i ≥ start
                tnn = g @ g.T / P
                xit_new = normals(k_bwd, l, s, B)
                zt, rows, rows_solve, ratio, dropped = _grow(LT_l, tr, tnn, Xit_l, xit_new, start, tol)
                coef = -tau * eta_hid * (c[:, None] * tr).T  # (B, H), past samples only
                if exact:
                    # ż̃ = Σ_{i≤now} φ(h^(i)_{ℓ-1}) chol(Σ_{ℓ-1})^{-T} E[g ξ^(i)]
                    Ef = Xi[l] @ g.T / P  # (H, B)
                    es = solve_triangular(LS[l], Ef, lower=True, trans="T")
                    coef = coef + sqrt_tau * es.T
                gn = g + dphi(hp) * (sqrt_tau * zt + coef @ Phi_l)
                the_rows = jax.lax.dynamic_update_slice(tr.T, tnn, (0, start))
                return gn, (g, xit_new, rows_solve, the_rows, jnp.min(ratio), jnp.sum(dropped))

            gLB = jnp.broadcast_to(gL, (B, P))
            g0, (g_new, xit_new, LT_rows, The_rows, bratio, bdrop) = jax.lax.scan(
                bwd, gLB, (jnp.arange(L), hprev), reverse=True
            )
            G_new = jnp.concatenate([g0[None], g_new], axis=0)  # (L+1, B, P)
            new = dict(
                Phi=Phi,
                Xi=Xi,
                LS=LS,
                Sig=Sig,
                G=jax.lax.dynamic_update_slice(state["G"], G_new, (0, start, 0)),
                hL=jax.lax.dynamic_update_slice(state["hL"], hLn[:B], (start, 0)),
                Xit=jax.lax.dynamic_update_slice(state["Xit"], xit_new, (0, start, 0)),
                LT=jax.lax.dynamic_update_slice(state["LT"], LT_rows, (0, start, 0)),
                The=jax.lax.dynamic_update_slice(state["The"], The_rows, (0, start, 0)),
                c=jax.lax.dynamic_update_slice(c, (lp / B).astype(dtype), (start,)),
            )
            if st.record_paths:
                Hn = jnp.concatenate([hprev, hLn[None, :B]], axis=0)
                new["Hp"] = jax.lax.dynamic_update_slice(state["Hp"], Hn, (0, start, 0))
            out = dict(f=f, loss=lval, fratio=fratio, bratio=bratio, fdrop=jnp.sum(fdrop), bdrop=jnp.sum(bdrop))
            if N:
                out["ftest"] = f_all[B:]
            return new, out

        state, outs = jax.lax.scan(step, state, (jnp.arange(steps), Xs, Ys))
        res = dict(outs=outs, Sig=state["Sig"], The=state["The"])
        if st.record_paths:
            res["Hp"] = state["Hp"]
            res["G"] = state["G"]
        return res

    return jax.jit(run)


@functools.lru_cache(maxsize=32)
def _compiled(st: _Static):
    return _build(st)


def estimate_particle_memory(*, particles, depth, samples, input_dim, n_test=0, exact=False, record_paths=False, itemsize=4):
    """Bytes :func:`solve_particles` needs: the per-sample particle histories
    ((3 or 4)·L + 2 arrays of K×P, plus L+1 more with ``record_paths``), four L×K×K
    kernel/Cholesky arrays, U (P×d) and per-layer temporaries, with 25% slack."""
    P, L, H = particles, depth, samples
    n = (3 * L + 2 + (L if exact else 0)) * H * P
    if record_paths:
        n += (L + 1) * H * P
    n += 4 * L * H * H
    n += P * input_dim + 8 * (H + n_test + 8) * P + L * (H + n_test) * P // max(H, 1)
    return int(1.25 * n * itemsize)


def _sym(A):
    """Symmetric matrices from stored lower rows (…, K, K)."""
    low = np.tril(A)
    return low + np.swapaxes(np.tril(A, -1), -1, -2)


def solve_particles_network(
    net: ResNet,
    X,
    Y,
    *,
    particles: int,
    backward: str = "gia",
    seed: int = 0,
    batch_size: int = 1,
    X_test=None,
    dtype=jnp.float32,
    record_paths: bool = False,
    max_memory: int | None = None,
    singular_tol: float | None = None,
    on_singular: str = "regularize",
    on_divergence: str = "raise",
    eigenvalues: bool = True,
    noise_depth: int | None = None,
) -> ParticleSolution:
    """Solve the NFD particle recursion of ``net`` (``net.width`` must be ``None``).

    See :func:`solve_particles` for the arguments.
    """
    if net.width is not None:
        raise ValueError("width: the particle solver describes the infinite-width limit; pass a ResNet with width=None")
    if net.parameterization != "depth_mup":
        raise ValueError(
            f"parameterization: the NFD particle recursion is the limit of depth_mup networks, got {net.parameterization!r}"
        )
    if net.alpha is not None:
        raise ValueError("alpha: the NFD limit fixes α = 1/√n (depth-μP); do not override alpha")
    if net.block != "pre":
        raise ValueError(f"block: the particle solver implements pre-activation blocks (Eq. 1), got {net.block!r}")
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if isinstance(particles, bool) or not isinstance(particles, (int, np.integer)) or particles < 2:
        raise ValueError(f"particles must be an integer ≥ 2, got {particles!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if on_singular not in ("warn", "regularize", "raise"):
        raise ValueError(f"on_singular must be 'warn', 'regularize' or 'raise', got {on_singular!r}")
    if on_divergence not in ("raise", "return"):
        raise ValueError(f"on_divergence must be 'raise' or 'return', got {on_divergence!r}")
    X, Y = check_data(X, Y, loss=net.loss, batch_size=batch_size)
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")
    X_test = check_test_inputs(X_test, net.input_dim)
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype=float64 needs jax.config.update('jax_enable_x64', True) first")
    if singular_tol is None:
        # ≈100× the roundoff level of a Schur complement computed from particle Gram matrices
        # (measured: −1e-6 relative in float32); ill-conditioned Θ_L (g^(k)_L = v − Σ c_i h^(i)_L
        # with small c_i) otherwise amplifies roundoff until float32 runs diverge.
        singular_tol = 1e-4 if dtype == jnp.float32 else 1e-10
    if not (0 <= float(singular_tol) < 1):
        raise ValueError(f"singular_tol must be in [0, 1), got {singular_tol!r}")

    K = X.shape[0]
    B = int(batch_size)
    steps = K // B
    N = 0 if X_test is None else X_test.shape[0]
    P = int(particles)
    L = net.depth
    if noise_depth is None:
        noise_depth = L
    if isinstance(noise_depth, bool) or not isinstance(noise_depth, (int, np.integer)) or noise_depth % L:
        raise ValueError(f"noise_depth must be a multiple of depth={L}, got {noise_depth!r}")
    est = estimate_particle_memory(
        particles=P, depth=L, samples=K, input_dim=net.input_dim, n_test=N, exact=backward == "exact",
        record_paths=record_paths, itemsize=dtype.itemsize,
    )
    check_memory(
        est, what="solve_particles",
        hint=f"particles={P}, depth={L}, samples={K}, backward={backward!r}; memory grows as L·K·P + L·K²",
        limit_bytes=max_memory,
    )
    if K > P:
        warnings.warn(
            f"solve_particles: {K} samples but only {P} particles; the particle kernels Σ, Θ have rank ≤ P, "
            "so later Gaussian directions are degenerate. Use particles > number of samples.",
            stacklevel=2,
        )

    st = _Static(
        P=P, L=L, d=net.input_dim, steps=steps, B=B, N=N, exact=backward == "exact", activation=net.activation,
        loss=net.loss, record_paths=bool(record_paths), dtype=dtype, refine=int(noise_depth) // L,
    )
    run = _compiled(st)
    rates = jnp.asarray(
        [0.0 if g in net.frozen else net.lr for g in ("input", "hidden", "output")], dtype
    )
    Xs = jnp.asarray(X.reshape(steps, B, -1), dtype)
    Ys = jnp.asarray(Y.reshape(steps, B), dtype)
    Xt = jnp.asarray(X_test if N else np.zeros((0, net.input_dim)), dtype)
    res = run(jax.random.PRNGKey(int(seed)), Xs, Ys, Xt, rates, jnp.asarray(math.sqrt(net.tau), dtype),
              jnp.asarray(singular_tol, dtype))
    res = jax.tree_util.tree_map(np.asarray, res)
    outs = res["outs"]
    f = outs["f"].reshape(K)
    if not np.all(np.isfinite(f)):
        k = int(np.argmax(~np.isfinite(f)))
        msg = (
            f"solve_particles diverged: f̂ became non-finite at step {k // B} (sample {k}); "
            f"try a smaller lr (lr={net.lr}) or check the data scale; if the finite network does not "
            "diverge, the cause is roundoff in near-singular kernels: use dtype=float64 or a larger singular_tol"
        )
        if on_divergence == "raise":
            raise DivergenceError(msg, step=k // B, quantity="output f̂")
        warnings.warn(msg, stacklevel=2)

    fratio = outs["fratio"]  # (steps, L)
    bratio = outs["bratio"]
    dropped = (int(outs["fdrop"].sum()), int(outs["bdrop"].sum()))
    if dropped != (0, 0):
        sf = np.nonzero(outs["fdrop"])[0]
        sb = np.nonzero(outs["bdrop"])[0]
        first = int(min([*sf[:1], *sb[:1]]))
        which = "Σ" if (len(sf) and sf[0] == first) else "Θ"
        layer = int(np.argmin(fratio[first] if which == "Σ" else bratio[first])) + 1
        msg = (
            f"solve_particles: near-singular {which} at step {first} (layer {layer}); "
            f"{dropped[0]} forward and {dropped[1]} backward Gaussian directions were dropped as exact linear "
            "combinations of earlier ones (identical or nearly collinear samples, a small learning rate, "
            "or more samples than particles)"
        )
        if "output" in net.frozen or "hidden" in net.frozen:
            msg += "; with frozen output/hidden weights the backward kernel Θ is singular by construction"
        if on_singular == "raise":
            raise SingularCovarianceError(msg, step=first, layer=layer, which=which)
        if on_singular == "warn":
            warnings.warn(msg, stacklevel=3)

    Sig = _sym(res["Sig"])
    The = _sym(res["The"])
    if eigenvalues:
        s_eig = np.linalg.eigvalsh(Sig.astype(np.float64))[:, 0]
        t_eig = np.linalg.eigvalsh(The.astype(np.float64))[:, 0]
    else:
        s_eig = t_eig = np.full(L, np.nan)
    feats = grads = None
    if record_paths:
        feats = np.swapaxes(res["Hp"], 0, 1)
        grads = np.swapaxes(res["G"], 0, 1)
    return ParticleSolution(
        outputs=f,
        losses=outs["loss"].reshape(K),
        test_outputs=outs.get("ftest"),
        sigma=Sig,
        theta=The,
        sigma_min_eig=s_eig,
        theta_min_eig=t_eig,
        sigma_min_pivot=fratio.min(axis=0),
        theta_min_pivot=bratio.min(axis=0),
        dropped_pivots=dropped,
        features=feats,
        grads=grads,
        network=net,
        config=dict(
            particles=P, backward=backward, seed=int(seed), batch_size=B, dtype=str(dtype),
            singular_tol=float(singular_tol), memory_estimate=format_bytes(est), noise_depth=int(noise_depth),
        ),
    )


def solve_particles(
    X,
    Y,
    *,
    depth: int,
    particles: int,
    activation: Any = "relu",
    lr: float = 0.1,
    T: float = 1.0,
    backward: str = "gia",
    frozen: tuple[str, ...] = (),
    seed: int = 0,
    loss: str = "mse",
    **kwargs,
) -> ParticleSolution:
    """The infinite-width limit of a depth-``depth`` depth-μP ResNet trained by SGD on (X, Y).

    Builds ``ResNet(width=None, parameterization="depth_mup", ...)`` and runs the NFD particle
    recursion (module docstring) with ``particles`` Monte-Carlo particles.

    Args:
        X: (K, d) training inputs, consumed in order, ``batch_size`` per step.
        Y: (K,) targets (labels in {0, 1} for ``loss="logistic"``).
        depth: L, the number of Euler–Maruyama steps = depth of the finite network described.
        particles: P, the number of particles (Monte-Carlo error O(1/√P)); use P > K.
        activation: name or :class:`~nfd.Activation`.
        lr: η_c (a finite network trains at rate η_c·n).
        T: time horizon (τ = T/L).
        backward: ``"gia"`` (limit of the decoupled network, the published NFD) or ``"exact"``
            (limit of the ordinary coupled network, with Tensor-Program corrections).
        frozen: parameter groups kept at initialisation, from ``("input", "hidden", "output")``.
        seed: PRNG seed of the particles; the solution is a pure function of it.
        loss: ``"mse"`` or ``"logistic"``.
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
        on_divergence: ``"raise"`` (:class:`~nfd.DivergenceError` with the step) or ``"return"``.
        eigenvalues: compute the smallest eigenvalues of Σ and Θ per layer (O(L·K³)).
        noise_depth: a multiple L·m of ``depth``; the normals of each layer are then the scaled sums
            of those of m finer layers, drawn as a run with ``depth=noise_depth`` draws them, so runs at
            different depths with the same ``seed`` and ``noise_depth`` share one Brownian path
            (common random numbers: the Euler–Maruyama error is measured without particle noise).
            Default ``depth`` (m = 1).

    Returns:
        :class:`ParticleSolution` with ``.outputs`` of shape (K,).

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> sol = nfd.solve(X, Y, depth=8, particles=2048, activation="tanh", lr=0.5)
        >>> sol.outputs.shape, sol.sigma.shape
        ((4,), (8, 4, 4))
    """
    X_arr = np.asarray(X)
    if X_arr.ndim != 2:
        raise ValueError(f"X must have shape (K, d) (one row per SGD sample), got shape {X_arr.shape}")
    net = ResNet(
        depth=depth, input_dim=X_arr.shape[1], width=None, activation=activation, T=T, block="pre",
        parameterization="depth_mup", lr=lr, frozen=tuple(frozen) if not isinstance(frozen, str) else (frozen,),
        loss=loss,
    )
    return solve_particles_network(net, X, Y, particles=particles, backward=backward, seed=seed, **kwargs)
