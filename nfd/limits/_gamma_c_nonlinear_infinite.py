"""Definition E.1 at L = ∞ on a grid in depth: the nonlinear analogue of Proposition C.2.

The equations (derivation and the corrections to the printed Definition E.1 in
docs/tp6_nonlinear.md) are, with K(p) = ⟨x(p), x(p)⟩ the pre-activation covariance,
V_c = V_{φ_c}[K(p)], V' = V_{φ'}[K(p)]::

    ∂_p Γ_{t,r,0,b}(p, q) =  Σ_{s<t} Γ_{s,r,1,b}(p, q) V'_{ts}(p) (Γ_{t,s,0,1}(p, p) − η K_{ts}(p))
   −∂_p Γ_{t,r,1,b}(p, q) =  Σ_{s<t} Γ_{s,r,0,b}(p, q) V'_{ts}(p) (Γ_{t,s,1,0}(p, p) − η C_{t,s,1}(p))
    ⟨u, w⟩ = Σ_{t',s'} ∫ [Γ_{u,t',·,0} V_c(q) Γ_{w,s',·,0} + Γ_{u,t',·,1} (V'(q) ⊙ C_1(q)) Γ_{w,s',·,1}] dq + init group

The scheme is that of :mod:`nfd.limits._gamma_c_infinite` (midpoint rule in q, Heun's
trapezoidal predictor–corrector in p, one-sided extrapolation of the diagonal values), with the
base covariances of a cell evaluated as V[K] of its midpoint covariance and the drift factor V'
at the nodes.  V_c, V' are smooth functions of K away from |ρ| = 1, so the scheme keeps order 2
(measured in the tests and in ``benchmarks/studies/tp6_nonlinear.py``).  For φ = identity it is
the linear scheme operation for operation.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from .._losses import loss_grad
from .._memory import check_memory
from .._model import ResNet
from .._validate import check_data
from ._gamma_c import _cov, _group_rates, _need_x64, _set_row_col, estimate_gamma_c_memory
from ._gamma_c_infinite import INFINITE_ORDER, _check_grid
from ._gamma_c_nonlinear import _check_input_dim, _net, _vrows, _all_covs, check_ms_network, finish

__all__ = ["solve_gamma_c_nonlinear_infinite", "gamma_c_nonlinear_infinite_network", "INFINITE_ORDER"]


@partial(jax.jit, static_argnames=("K", "N", "G", "loss", "act"))
def _run(X, Y, *, K, N, G, h, eta_u, eta_w, eta_v, loss, act):
    d = G - 1
    f64 = jnp.float64
    Ax = jnp.zeros((K, N + 1, G), f64)
    Zx = jnp.zeros((K, N + 1, K, N), f64)
    Yx = jnp.zeros((K, N + 1, K, N), f64)
    Ad = jnp.zeros((K, N + 1, G), f64)
    Zd = jnp.zeros((K, N + 1, K, N), f64)
    Yd = jnp.zeros((K, N + 1, K, N), f64)
    Km = jnp.zeros((N, K, K), f64)  # pre-activation covariance ⟨x, x⟩ at cell midpoints
    B0 = jnp.zeros((N, K, K), f64)  # V_{φ_c}[Km]: Cov(Φ) at midpoints
    Vm = jnp.zeros((N, K, K), f64)  # V_{φ'}[Km]
    Kn = jnp.zeros((N + 1, K, K), f64)  # ⟨x, x⟩ at nodes
    Vn = jnp.zeros((N + 1, K, K), f64)  # V_{φ'} at nodes
    C1 = jnp.zeros((N, K, K), f64)  # ⟨δ̃x, δ̃x⟩ at midpoints; Cov(Ŷ) = Vm ⊙ C1
    gram = X @ X.T / d
    steps = jnp.arange(K)

    def drift(kappa, A_node, Z_node, Y_node):
        return (kappa @ A_node, jnp.einsum("s,sum->um", kappa, Z_node), jnp.einsum("s,sum->um", kappa, Y_node))

    def _crossing(kappa, Zc, Yc, i, i_next, col):
        pz = jnp.zeros((K, N), f64).at[:, col].set(0.5 * kappa @ (Zc[:, i_next, :, col] - Zc[:, i, :, col]))
        py = jnp.zeros((K, N), f64).at[:, col].set(0.5 * kappa @ (Yc[:, i_next, :, col] - Yc[:, i, :, col]))
        return pz, py

    def one_step(t, state):
        Ax, Zx, Yx, Ad, Zd, Yd, Km, B0, Vm, Kn, Vn, C1, f, chi = state
        past = (steps < t).astype(f64)
        upto = (steps <= t).astype(f64)

        def fcov(a, z, y, i, B0):
            return _cov(a, z, y, Ax[:, i].at[t].set(a), Zx[:, i].at[t].set(z), Yx[:, i].at[t].set(y), B0, Vm * C1, h) * upto

        def fdiag(y, i):
            left = 1.5 * y[:, jnp.maximum(i - 1, 0)] - 0.5 * y[:, jnp.maximum(i - 2, 0)]
            right = 1.5 * y[:, jnp.minimum(i, N - 1)] - 0.5 * y[:, jnp.minimum(i + 1, N - 1)]
            return jnp.where(i >= 2, left, right)

        def with_cell(B0, i, krow):
            vc, _ = _vrows(act, Km[i], krow, t, upto)
            return B0.at[i].set(_set_row_col(B0[i], t, vc))

        def vp_node(i, krow):
            return _vrows(act, Kn[i], krow, t, upto)[1]

        ku = eta_u * gram[t] * past
        a0 = jnp.concatenate([X[t] / math.sqrt(d), jnp.zeros((1,), f64)]) - ku @ Ad[:, 0]
        z0 = -jnp.einsum("s,sum->um", ku, Zd[:, 0])
        y0 = -jnp.einsum("s,sum->um", ku, Yd[:, 0])
        row0 = fcov(a0, z0, y0, 0, B0)
        vp0 = vp_node(0, row0)
        Kn = Kn.at[0].set(_set_row_col(Kn[0], t, row0))
        Vn = Vn.at[0].set(_set_row_col(Vn[0], t, vp0))
        kap0 = vp0 * (fdiag(y0, 0) - eta_w * row0) * past

        def fwd(carry, i):
            a, z, y, row, row_prev, kap, Km, B0, Vm, Kn, Vn = carry
            da, dz, dy = drift(kap, Ad[:, i], Zd[:, i], Yd[:, i])
            mid = jnp.where(i >= 1, 1.5 * row - 0.5 * row_prev, row)
            B0p = with_cell(B0, i, mid)
            pz, py = _crossing(kap, Zd, Yd, i, i + 1, i)
            ap, zp, yp = a + h * da, (z + h * (dz + pz)).at[t, i].set(1.0), y + h * (dy + py)
            rowp = fcov(ap, zp, yp, i + 1, B0p)
            kapp = vp_node(i + 1, rowp) * (fdiag(yp, i + 1) - eta_w * rowp) * past
            da2, dz2, dy2 = drift(kapp, Ad[:, i + 1], Zd[:, i + 1], Yd[:, i + 1])
            a1 = a + 0.5 * h * (da + da2)
            z1 = (z + 0.5 * h * (dz + dz2)).at[t, i].set(1.0)
            y1 = y + 0.5 * h * (dy + dy2)
            row1 = fcov(a1, z1, y1, i + 1, with_cell(B0, i, 0.5 * (row + rowp)))
            kmid = 0.5 * (row + row1)
            vc, vpm = _vrows(act, Km[i], kmid, t, upto)
            Km = Km.at[i].set(_set_row_col(Km[i], t, kmid))
            B0 = B0.at[i].set(_set_row_col(B0[i], t, vc))
            Vm = Vm.at[i].set(_set_row_col(Vm[i], t, vpm))
            vp1 = vp_node(i + 1, row1)
            Kn = Kn.at[i + 1].set(_set_row_col(Kn[i + 1], t, row1))
            Vn = Vn.at[i + 1].set(_set_row_col(Vn[i + 1], t, vp1))
            kap1 = vp1 * (fdiag(y1, i + 1) - eta_w * row1) * past
            return (a1, z1, y1, row1, row, kap1, Km, B0, Vm, Kn, Vn), (a1, z1, y1)

        (aN, zN, yN, rowN, _, _, Km, B0, Vm, Kn, Vn), (As, Zs, Ys) = jax.lax.scan(
            fwd, (a0, z0, y0, row0, row0, kap0, Km, B0, Vm, Kn, Vn), jnp.arange(N)
        )
        Ax = Ax.at[t].set(jnp.concatenate([a0[None], As]))
        Zx = Zx.at[t].set(jnp.concatenate([z0[None], Zs]))
        Yx = Yx.at[t].set(jnp.concatenate([y0[None], Ys]))

        kv = eta_v * chi * past
        ft = aN[d] - kv @ rowN
        f = f.at[t].set(ft)
        ct = loss_grad(loss, ft, Y[t])
        chi = chi.at[t].set(ct)

        def bcov(a, z, y, i, C1):
            return _cov(a, z, y, Ad[:, i].at[t].set(a), Zd[:, i].at[t].set(z), Yd[:, i].at[t].set(y), B0, Vm * C1, h) * upto

        def bdiag(z, i):
            right = 1.5 * z[:, jnp.minimum(i, N - 1)] - 0.5 * z[:, jnp.minimum(i + 1, N - 1)]
            left = 1.5 * z[:, jnp.maximum(i - 1, 0)] - 0.5 * z[:, jnp.maximum(i - 2, 0)]
            return jnp.where(i <= N - 2, right, left)

        aT = ct * (jnp.zeros((G,), f64).at[d].set(1.0) - kv @ Ax[:, N])
        zT = -ct * jnp.einsum("s,sum->um", kv, Zx[:, N])
        yT = -ct * jnp.einsum("s,sum->um", kv, Yx[:, N])
        rowT = bcov(aT, zT, yT, N, C1)
        kapT = Vn[N, t] * (bdiag(zT, N) - eta_w * rowT) * past

        def bwd(carry, i):
            a, z, y, row, row_prev, kap, C1 = carry
            c = i - 1
            da, dz, dy = drift(kap, Ax[:, i], Zx[:, i], Yx[:, i])
            mid = jnp.where(i <= N - 1, 1.5 * row - 0.5 * row_prev, row)
            C1p = C1.at[c].set(_set_row_col(C1[c], t, mid))
            pz, py = _crossing(kap, Zx, Yx, i, i - 1, c)
            ap, zp, yp = a + h * da, z + h * (dz + pz), (y + h * (dy + py)).at[t, c].set(1.0)
            rowp = bcov(ap, zp, yp, i - 1, C1p)
            kapp = Vn[i - 1, t] * (bdiag(zp, i - 1) - eta_w * rowp) * past
            da2, dz2, dy2 = drift(kapp, Ax[:, i - 1], Zx[:, i - 1], Yx[:, i - 1])
            a1 = a + 0.5 * h * (da + da2)
            z1 = z + 0.5 * h * (dz + dz2)
            y1 = (y + 0.5 * h * (dy + dy2)).at[t, c].set(1.0)
            row1 = bcov(a1, z1, y1, i - 1, C1.at[c].set(_set_row_col(C1[c], t, 0.5 * (row + rowp))))
            C1n = C1.at[c].set(_set_row_col(C1[c], t, 0.5 * (row + row1)))
            kap1 = Vn[i - 1, t] * (bdiag(z1, i - 1) - eta_w * row1) * past
            return (a1, z1, y1, row1, row, kap1, C1n), (a1, z1, y1)

        (_, _, _, _, _, _, C1), (As, Zs, Ys) = jax.lax.scan(
            bwd, (aT, zT, yT, rowT, rowT, kapT, C1), jnp.arange(N, 0, -1)
        )
        Ad = Ad.at[t].set(jnp.concatenate([As[::-1], aT[None]]))
        Zd = Zd.at[t].set(jnp.concatenate([Zs[::-1], zT[None]]))
        Yd = Yd.at[t].set(jnp.concatenate([Ys[::-1], yT[None]]))
        return Ax, Zx, Yx, Ad, Zd, Yd, Km, B0, Vm, Kn, Vn, C1, f, chi

    state = (Ax, Zx, Yx, Ad, Zd, Yd, Km, B0, Vm, Kn, Vn, C1, jnp.zeros((K,), f64), jnp.zeros((K,), f64))
    Ax, Zx, Yx, Ad, Zd, Yd, Km, B0, Vm, Kn, Vn, C1, f, chi = jax.lax.fori_loop(0, K, one_step, state)
    B1 = Vm * C1
    return f, chi, _all_covs(Ax, Zx, Yx, B0, B1, h), _all_covs(Ad, Zd, Yd, B0, B1, h), (Ax, Zx, Yx, Ad, Zd, Yd)


def gamma_c_nonlinear_infinite_network(net: ResNet, X, Y, *, grid: int, return_gamma: bool = False,
                                       max_memory: int | None = None):
    """Solve Definition E.1 at L = ∞ for ``net`` (``block="post_ms"``; its depth is ignored)
    on ``grid`` cells; layer axis of the result = grid nodes p_i = i·T/grid."""
    check_ms_network(net)
    grid = _check_grid(grid)
    X, Y = check_data(X, Y, loss=net.loss)
    _check_input_dim(net, X)
    _need_x64()
    K = X.shape[0]
    check_memory(
        estimate_gamma_c_memory(K, grid, net.input_dim, return_gamma) + 8 * 6 * grid * K * K,
        what="the infinite-depth nonlinear Γ/C solver", hint=f"steps K={K}, grid N={grid}: memory grows as K²·N²",
        limit_bytes=max_memory,
    )
    eta_u, eta_w, eta_v = _group_rates(net)
    f, chi, feat, grad, gamma = _run(
        jnp.asarray(X), jnp.asarray(Y), K=K, N=grid, G=net.input_dim + 1, h=net.T / grid,
        eta_u=eta_u, eta_w=eta_w, eta_v=eta_v, loss=net.loss, act=net.activation,
    )
    config = dict(method="gamma_c", block="post_ms", depth="infinite", grid=grid, order=INFINITE_ORDER,
                  eta_input=eta_u, eta_hidden=eta_w, eta_output=eta_v)
    return finish(f, chi, feat, grad, gamma, net, config, return_gamma)


def solve_gamma_c_nonlinear_infinite(
    X,
    Y,
    *,
    grid: int = 64,
    activation="tanh",
    lr: float = 1.0,
    T: float = 1.0,
    frozen=("input", "output"),
    loss: str = "mse",
    parameterization: str = "depth_mup",
    block: str = "post_ms",
    return_gamma: bool = False,
    max_memory: int | None = None,
):
    """Definition E.1 at L = ∞ (``nfd.solve(..., method="gamma_c", block="post_ms", grid=N)``).

    Error O(N⁻²); :func:`nfd.limits._gamma_c_infinite.richardson` of N and 2N removes the leading term.
    ``output_kernel`` is the kernel Claim E.1 assigns to the Gaussian process of x^L.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> import numpy as np, nfd
        >>> X = np.array([[1.0], [-0.5], [0.8]]); Y = np.array([0.5, -1.0, 0.3])
        >>> nfd.solve(X, Y, grid=16, activation="relu", method="gamma_c", block="post_ms").outputs.shape
        (3,)
    """
    _check_grid(grid)
    X, Y, net = _net(X, Y, depth=int(grid), activation=activation, lr=lr, T=T, frozen=frozen, loss=loss,
                     parameterization=parameterization, block=block)
    return gamma_c_nonlinear_infinite_network(net, X, Y, grid=grid, return_gamma=return_gamma, max_memory=max_memory)
