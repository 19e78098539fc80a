"""The infinite-depth Γ/C equations of Tensor Programs VI (Proposition C.2), on a grid.

At L = ∞ the Γ/C recursion becomes a system of Volterra integro-differential equations in
the depth variable p ∈ [0, T] (T = 1 in the paper), for every step t::

    ∂_p Γ_{t,r,0,b}(p, q) =  Σ_{s<t} Γ_{s,r,1,b}(p, q) κ_{t,s}(p),   κ_{t,s} = Γ_{t,s,0,1}(p, p) − η C_{t,s,0}(p)
   −∂_p Γ_{t,r,1,b}(p, q) =  Σ_{s<t} Γ_{s,r,0,b}(p, q) κ̃_{t,s}(p),  κ̃_{t,s} = Γ_{t,s,1,0}(p, p) − η C_{t,s,1}(p)
    C_{t,s,a}(p) = Σ_{t',s',b} ∫ Γ_{t,t',a,b}(p, q) C_{t',s',b}(q) Γ_{s,s',a,b}(p, q) dq

plus the sources Γ_{t,t,0,0}(p, q) = 1[q ≤ p], Γ_{t,t,1,1}(p, q) = 1[q ≥ p] and the boundary
conditions of the initial-weight group (x_t^0 = U x_t/√d − η_U Σ (x_s·x_t/d) δ̃x_s^0,
δ̃x_t^T = χ_t nV_t).  The forward equation is marched up in p, the backward one down.

Discretisation (this module; the finite-L recursion of :mod:`nfd.limits._gamma_c` is a
different, first-order one):

* p on the nodes p_i = i·h, h = T/N; functions of q are represented by their values at the
  cell midpoints q_j = (j − ½)h, and ∫ dq by the midpoint rule.  At a node p_i every function
  of q is smooth except at q = p_i, a cell boundary, so the rule is second order.
* the march from p_i to p_{i+1} is Heun's trapezoidal predictor–corrector.  The coefficient
  functions Γ_{s,·,1,·}(p, q_j) jump in p exactly at the cell midpoint p = q_j, where the
  trapezoid rule's (B₋ + B₊)/2 is still second order.
* the diagonal values Γ(p_i, p_i) (a kink in q) are extrapolated linearly from the two
  nearest cells on one side, and the base covariance of the cell being entered is
  extrapolated from the last two nodes in the predictor: both O(h²).

So the scheme is second order in h (``GammaCInfinite.order``); the tests and
``benchmarks/gamma_c.py`` measure it.  Memory and time are those of the finite recursion with
L = N (O(K²N²) and O(K³N²)).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._losses import loss_grad
from .._memory import check_memory
from .._model import ResNet
from .._validate import check_bytes, check_data
from ._gamma_c import (
    GammaCResult,
    _cov,
    _finish,
    _group_rates,
    _need_x64,
    _prepare,
    _set_row_col,
    check_linear_network,
    estimate_gamma_c_memory,
)

__all__ = ["solve_gamma_c_infinite", "gamma_c_infinite_network", "INFINITE_ORDER", "richardson"]

#: Formal order of accuracy in the grid spacing h of the infinite-depth scheme.
INFINITE_ORDER = 2


def richardson(coarse, fine, order: float = INFINITE_ORDER):
    """Richardson extrapolation of two solutions on grids N and 2N of a scheme of ``order``."""
    r = 2.0**order
    return (r * np.asarray(fine) - np.asarray(coarse)) / (r - 1.0)


def _check_grid(grid) -> int:
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 4:
        raise ValueError(f"grid must be an integer ≥ 4 (number of cells in depth), got {grid!r}")
    return int(grid)


@partial(jax.jit, static_argnames=("K", "N", "G", "loss"))
def _run(X, Y, *, K, N, G, h, eta_u, eta_w, eta_v, loss):
    d = G - 1
    f64 = jnp.float64
    Ax = jnp.zeros((K, N + 1, G), f64)
    Zx = jnp.zeros((K, N + 1, K, N), f64)
    Yx = jnp.zeros((K, N + 1, K, N), f64)
    Ad = jnp.zeros((K, N + 1, G), f64)
    Zd = jnp.zeros((K, N + 1, K, N), f64)
    Yd = jnp.zeros((K, N + 1, K, N), f64)
    C0 = jnp.zeros((N, K, K), f64)  # base covariance Cov(Ẑ) at cell midpoints
    C1 = jnp.zeros((N, K, K), f64)  # base covariance Cov(Ŷ) at cell midpoints
    gram = X @ X.T / d
    steps = jnp.arange(K)

    def drift(kappa, A_node, Z_node, Y_node):
        return (
            kappa @ A_node,
            jnp.einsum("s,sum->um", kappa, Z_node),
            jnp.einsum("s,sum->um", kappa, Y_node),
        )

    def _crossing(kappa, Zc, Yc, i, i_next, col):
        """Predictor correction in the column being crossed: ½(B(p_next) − B(p_i)) κ_i there."""
        pz = jnp.zeros((K, N), f64).at[:, col].set(0.5 * kappa @ (Zc[:, i_next, :, col] - Zc[:, i, :, col]))
        py = jnp.zeros((K, N), f64).at[:, col].set(0.5 * kappa @ (Yc[:, i_next, :, col] - Yc[:, i, :, col]))
        return pz, py

    def one_step(t, state):
        Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, f, chi = state
        past = (steps < t).astype(f64)
        upto = (steps <= t).astype(f64)

        def fcov(a, z, y, i, C0):
            return _cov(a, z, y, Ax[:, i].at[t].set(a), Zx[:, i].at[t].set(z), Yx[:, i].at[t].set(y), C0, C1, h) * upto

        def fdiag(y, i):
            # Γ_{t,s,0,1}(p_i, p_i): one-sided linear extrapolation from the two nearest cells
            left = 1.5 * y[:, jnp.maximum(i - 1, 0)] - 0.5 * y[:, jnp.maximum(i - 2, 0)]
            right = 1.5 * y[:, jnp.minimum(i, N - 1)] - 0.5 * y[:, jnp.minimum(i + 1, N - 1)]
            return jnp.where(i >= 2, left, right)

        # ---- forward march p: 0 → T
        ku = eta_u * gram[t] * past
        a0 = jnp.concatenate([X[t] / math.sqrt(d), jnp.zeros((1,), f64)]) - ku @ Ad[:, 0]
        z0 = -jnp.einsum("s,sum->um", ku, Zd[:, 0])
        y0 = -jnp.einsum("s,sum->um", ku, Yd[:, 0])
        row0 = fcov(a0, z0, y0, 0, C0)
        kap0 = (fdiag(y0, 0) - eta_w * row0) * past

        def fwd(carry, i):
            a, z, y, row, row_prev, kap, C0 = carry  # state at node i
            da, dz, dy = drift(kap, Ad[:, i], Zd[:, i], Yd[:, i])
            # predictor; cell i's base covariance extrapolated to its midpoint, and in column i
            # (whose coefficients jump at the cell midpoint) the trapezoid average of both ends
            mid = jnp.where(i >= 1, 1.5 * row - 0.5 * row_prev, row)
            C0p = C0.at[i].set(_set_row_col(C0[i], t, mid))
            pz, py = _crossing(kap, Zd, Yd, i, i + 1, i)
            ap, zp, yp = a + h * da, (z + h * (dz + pz)).at[t, i].set(1.0), y + h * (dy + py)
            rowp = fcov(ap, zp, yp, i + 1, C0p)
            kapp = (fdiag(yp, i + 1) - eta_w * rowp) * past
            da2, dz2, dy2 = drift(kapp, Ad[:, i + 1], Zd[:, i + 1], Yd[:, i + 1])
            # corrector (trapezoid)
            a1 = a + 0.5 * h * (da + da2)
            z1 = (z + 0.5 * h * (dz + dz2)).at[t, i].set(1.0)
            y1 = y + 0.5 * h * (dy + dy2)
            # node covariance with cell i's midpoint value from the predictor (its O(h²) error
            # enters with weight h), then cell i's stored value from both end nodes
            row1 = fcov(a1, z1, y1, i + 1, C0.at[i].set(_set_row_col(C0[i], t, 0.5 * (row + rowp))))
            C0n = C0.at[i].set(_set_row_col(C0[i], t, 0.5 * (row + row1)))
            kap1 = (fdiag(y1, i + 1) - eta_w * row1) * past
            return (a1, z1, y1, row1, row, kap1, C0n), (a1, z1, y1)

        (aN, zN, yN, rowN, _, _, C0), (As, Zs, Ys) = jax.lax.scan(
            fwd, (a0, z0, y0, row0, row0, kap0, C0), jnp.arange(N)
        )
        Ax = Ax.at[t].set(jnp.concatenate([a0[None], As]))
        Zx = Zx.at[t].set(jnp.concatenate([z0[None], Zs]))
        Yx = Yx.at[t].set(jnp.concatenate([y0[None], Ys]))

        # ---- output
        kv = eta_v * chi * past
        ft = aN[d] - kv @ rowN
        f = f.at[t].set(ft)
        ct = loss_grad(loss, ft, Y[t])
        chi = chi.at[t].set(ct)

        def bcov(a, z, y, i, C1):
            return _cov(a, z, y, Ad[:, i].at[t].set(a), Zd[:, i].at[t].set(z), Yd[:, i].at[t].set(y), C0, C1, h) * upto

        def bdiag(z, i):
            # Γ_{t,s,1,0}(p_i, p_i): extrapolation from the two cells right of p_i
            right = 1.5 * z[:, jnp.minimum(i, N - 1)] - 0.5 * z[:, jnp.minimum(i + 1, N - 1)]
            left = 1.5 * z[:, jnp.maximum(i - 1, 0)] - 0.5 * z[:, jnp.maximum(i - 2, 0)]
            return jnp.where(i <= N - 2, right, left)

        # ---- backward march p: T → 0
        aT = ct * (jnp.zeros((G,), f64).at[d].set(1.0) - kv @ Ax[:, N])
        zT = -ct * jnp.einsum("s,sum->um", kv, Zx[:, N])
        yT = -ct * jnp.einsum("s,sum->um", kv, Yx[:, N])
        rowT = bcov(aT, zT, yT, N, C1)
        kapT = (bdiag(zT, N) - eta_w * rowT) * past

        def bwd(carry, i):
            a, z, y, row, row_prev, kap, C1 = carry  # state at node i, moving to node i-1 (cell i-1)
            c = i - 1
            da, dz, dy = drift(kap, Ax[:, i], Zx[:, i], Yx[:, i])
            mid = jnp.where(i <= N - 1, 1.5 * row - 0.5 * row_prev, row)
            C1p = C1.at[c].set(_set_row_col(C1[c], t, mid))
            pz, py = _crossing(kap, Zx, Yx, i, i - 1, c)
            ap, zp, yp = a + h * da, z + h * (dz + pz), (y + h * (dy + py)).at[t, c].set(1.0)
            rowp = bcov(ap, zp, yp, i - 1, C1p)
            kapp = (bdiag(zp, i - 1) - eta_w * rowp) * past
            da2, dz2, dy2 = drift(kapp, Ax[:, i - 1], Zx[:, i - 1], Yx[:, i - 1])
            a1 = a + 0.5 * h * (da + da2)
            z1 = z + 0.5 * h * (dz + dz2)
            y1 = (y + 0.5 * h * (dy + dy2)).at[t, c].set(1.0)
            row1 = bcov(a1, z1, y1, i - 1, C1.at[c].set(_set_row_col(C1[c], t, 0.5 * (row + rowp))))
            C1n = C1.at[c].set(_set_row_col(C1[c], t, 0.5 * (row + row1)))
            kap1 = (bdiag(z1, i - 1) - eta_w * row1) * past
            return (a1, z1, y1, row1, row, kap1, C1n), (a1, z1, y1)

        (_, _, _, _, _, _, C1), (As, Zs, Ys) = jax.lax.scan(
            bwd, (aT, zT, yT, rowT, rowT, kapT, C1), jnp.arange(N, 0, -1)
        )
        Ad = Ad.at[t].set(jnp.concatenate([As[::-1], aT[None]]))
        Zd = Zd.at[t].set(jnp.concatenate([Zs[::-1], zT[None]]))
        Yd = Yd.at[t].set(jnp.concatenate([Ys[::-1], yT[None]]))
        return Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, f, chi

    state = (Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, jnp.zeros((K,), f64), jnp.zeros((K,), f64))
    Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, f, chi = jax.lax.fori_loop(0, K, one_step, state)

    def fc(i):
        return jax.vmap(lambda a, z, y: _cov(a, z, y, Ax[:, i], Zx[:, i], Yx[:, i], C0, C1, h))(Ax[:, i], Zx[:, i], Yx[:, i])

    def dc(i):
        return jax.vmap(lambda a, z, y: _cov(a, z, y, Ad[:, i], Zd[:, i], Yd[:, i], C0, C1, h))(Ad[:, i], Zd[:, i], Yd[:, i])

    feat = jax.lax.map(fc, jnp.arange(N + 1))
    grad = jax.lax.map(dc, jnp.arange(N + 1))
    return f, chi, feat, grad, (Ax, Zx, Yx, Ad, Zd, Yd)


def gamma_c_infinite_network(
    net: ResNet, X, Y, *, grid: int, return_gamma: bool = False, max_memory: int | None = None
) -> GammaCResult:
    """Solve Proposition C.2 (L = ∞) for ``net`` (its ``depth`` is ignored) on ``grid`` cells.

    Returns a :class:`~nfd.limits.GammaCResult` whose layer axis is the grid node
    p_i = i·T/grid, i = 0..grid (``feature_cov`` (grid+1, K, K), ``rms_features`` (K, grid+1)).
    """
    check_linear_network(net)
    grid = _check_grid(grid)
    X, Y = check_data(X, Y, loss=net.loss)
    check_bytes("max_memory", max_memory)
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")
    K = X.shape[0]
    check_memory(
        estimate_gamma_c_memory(K, grid, net.input_dim, return_gamma),
        what="the infinite-depth Γ/C solver", hint=f"steps K={K}, grid N={grid}: memory grows as K²·N²",
        limit_bytes=max_memory,
    )
    eta_u, eta_w, eta_v = _group_rates(net)
    config = dict(method="gamma_c_infinite", grid=grid, order=INFINITE_ORDER, eta_input=eta_u, eta_hidden=eta_w, eta_output=eta_v)
    with _need_x64():  # float64 whatever the global setting (restored on exit)
        f, chi, feat, grad, gamma = _run(
            jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64), K=K, N=grid, G=net.input_dim + 1, h=net.T / grid,
            eta_u=eta_u, eta_w=eta_w, eta_v=eta_v, loss=net.loss,
        )
        return _finish(f, chi, feat, grad, gamma, net, config, return_gamma)


def solve_gamma_c_infinite(
    X,
    Y,
    *,
    grid: int = 128,
    activation="identity",
    lr: float = 1.0,
    T: float = 1.0,
    frozen=("input", "output"),
    loss: str = "mse",
    return_gamma: bool = False,
    max_memory: int | None = None,
) -> GammaCResult:
    """Infinite-width, infinite-depth limit of a linear depth-μP ResNet (Proposition C.2).

    Same arguments as :func:`~nfd.limits.solve_gamma_c` with ``depth`` replaced by ``grid``
    (N cells over the depth interval [0, T]); the error is O(N⁻²) (:data:`INFINITE_ORDER`), and
    :func:`richardson` of the solutions on N and 2N removes the leading term.

    Example:
        >>> import numpy as np
        >>> from nfd.limits import solve_gamma_c_infinite
        >>> X = np.array([[1.0], [-0.5], [0.8]]); Y = np.array([0.5, -1.0, 0.3])
        >>> solve_gamma_c_infinite(X, Y, grid=32).outputs.shape
        (3,)
    """
    _check_grid(grid)
    X, Y, net = _prepare(X, Y, depth=int(grid), activation=activation, lr=lr, T=T, frozen=frozen, loss=loss)
    return gamma_c_infinite_network(net, X, Y, grid=grid, return_gamma=return_gamma, max_memory=max_memory)
