"""Definition E.1 of Tensor Programs VI: the Γ/C recursion of the mean-subtracted nonlinear block.

The network (``block="post_ms"``, TP VI §6.3 with α = γ = ½, the paper's Depth-μP)::

    x^0 = U ξ,   x^l = x^{l-1} + √τ · MS(φ(W^l x^{l-1})),   f = Vᵀ x^L,   τ = T/L,

MS = mean subtraction over the width.  In the infinite-width limit every ket is, up to
terms that vanish as L → ∞, a linear combination ("good linear combination", App. E) of

* the initial-weight group ‖U⟩ (d components), ‖nV⟩;
* per layer m and step s the forward bases Φ^m_s = φ_c(Ẑ^m_s) = φ(Ẑ^m_s) − E φ(Ẑ^m_s), where
  Ẑ^m_s = ‖W_0^m x_s^{m-1}⟩^ is Gaussian with covariance K^m = ⟨x^{m-1}, x^{m-1}⟩, so
  Cov(Φ^m_t, Φ^m_s) = V_{φ_c}[K^m]_{ts} = E φ(z_t)φ(z_s) − E φ(z_t) E φ(z_s);
* the backward bases Ŷ^m_s = ‖W_0^{m⊤} δ̃h_s^m⟩^, δ̃h = φ'(h) ⊙ MS(δ̃x), with covariance
  V_{φ'}[K^m]_{ts} · ⟨δ̃x_t^m, δ̃x_s^m⟩, V_{φ'}[K]_{ts} = E φ'(z_t)φ'(z_s).

With Γ the coefficients divided by √τ (as in :mod:`nfd.limits._gamma_c`) the recursion is, for
step t and layer l (derivation in docs/tp6_nonlinear.md)::

    x_t^l       = x_t^{l-1} + √τ Φ^l_t + τ Σ_{s<t} δ̃x_s^l  V_{φ'}[K^l]_{ts} (Γ_{t,s,0,1}(l-1, l) − η K^l_{ts})
    δ̃x_t^{l-1} = δ̃x_t^l  + √τ Ŷ^l_t + τ Σ_{s<t} x_s^{l-1} V_{φ'}[K^l]_{ts} (Γ_{t,s,1,0}(l, l)  − η ⟨δ̃x_t^l, δ̃x_s^l⟩)

with the same initial-weight group, output and loss as the linear recursion.  For φ = identity
(V_{φ_c}[K] = K, V_{φ'} = 1) it *is* the linear recursion of Lemma C.1, term by term.

Unlike the linear case, the depth-L recursion is not the exact infinite-width limit of the
depth-L network once t ≥ 1: it drops the O(τ) Taylor remainder of φ(Ẑ + √τ·…) per layer and
replaces φ'(Ẑ_t)φ'(Ẑ_s) by its mean (App. E's heuristic).  It is exact at initialisation (the
kernel recursion K^{l+1} = K^l + τ V_{φ_c}[K^l]) and, as a discretisation of the L = ∞
equations, converges to them as L → ∞; :mod:`._gamma_c_nonlinear_infinite` solves those.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._activations import Activation, _hermite_nodes, get_activation
from .._errors import DivergenceError
from .._losses import loss_grad
from .._memory import check_memory
from .._model import ResNet
from .._validate import check_data
from ._gamma_c import GammaCResult, _cov, _group_rates, _need_x64, _set_row_col, estimate_gamma_c_memory

__all__ = [
    "solve_gamma_c_nonlinear",
    "gamma_c_nonlinear_network",
    "check_ms_network",
    "gaussian_mean",
    "centred_pair",
]

#: closed forms of E φ(u), u ~ N(0, a); odd activations have mean 0, σ(u) − ½ is odd.
_MEANS = {
    "identity": lambda a: jnp.zeros_like(a),
    "tanh": lambda a: jnp.zeros_like(a),
    "erf": lambda a: jnp.zeros_like(a),
    "relu": lambda a: jnp.sqrt(jnp.maximum(a, 0.0) / (2.0 * math.pi)),
    "abs": lambda a: jnp.sqrt(2.0 * jnp.maximum(a, 0.0) / math.pi),
    "sigmoid": lambda a: 0.5 * jnp.ones_like(a),
}

#: Gauss–Hermite order of E φ for activations without a closed-form mean (smooth φ: exponential
#: convergence; the tests compare it with the closed forms).
MEAN_QUADRATURE_ORDER = 160


def gaussian_mean(act: Activation, a, *, method: str = "auto"):
    """E φ(u) for u ~ N(0, a) (closed form where known, else 1-D Gauss–Hermite quadrature)."""
    a = jnp.asarray(a)
    if method == "auto" and act.name in _MEANS:
        return _MEANS[act.name](a)
    x, w = _hermite_nodes(MEAN_QUADRATURE_ORDER)
    dtype = jnp.result_type(a.dtype, jnp.float32)
    u = jnp.sqrt(jnp.maximum(a, 0.0))[..., None] * jnp.asarray(x, dtype)
    return jnp.sum(act.fn(u) * jnp.asarray(w, dtype), axis=-1)


def _deriv_mean(act: Activation, a):
    """E φ'(u), u ~ N(0, a), by 1-D Gauss–Hermite quadrature (only for the printed-variant comparison)."""
    x, w = _hermite_nodes(MEAN_QUADRATURE_ORDER)
    u = jnp.sqrt(jnp.maximum(a, 0.0))[..., None] * jnp.asarray(x, a.dtype)
    return jnp.sum(act.deriv(u) * jnp.asarray(w, a.dtype), axis=-1)


def centred_pair(act: Activation, a, b, c):
    """V_{φ_c}: E[(φ(u) − Eφ(u))(φ(v) − Eφ(v))], (u, v) ~ N(0, [[a, c], [c, b]])."""
    return act.expect_pair(a, b, c) - gaussian_mean(act, a) * gaussian_mean(act, b)


def check_activation_expectations(act) -> Activation:
    """Raise ValueError (naming ``activation``) unless the Gaussian expectations the recursion
    needs — E φ, E φφ, E φ'φ' — can be evaluated: φ and φ' callable, finite on Gauss–Hermite
    nodes, and the pair expectations finite on a test covariance."""
    try:
        act = get_activation(act)
    except ValueError as e:
        raise ValueError(str(e)) from None
    if not callable(act.fn) or not callable(act.deriv):
        raise ValueError(f"activation: {act.name!r} needs a callable φ and φ' for its Gaussian expectations")
    try:
        with jax.ensure_compile_time_eval():
            vals = [
                gaussian_mean(act, jnp.asarray([0.5, 2.0])),
                act.expect_pair(jnp.asarray(1.0), jnp.asarray(2.0), jnp.asarray(0.3)),
                act.expect_dpair(jnp.asarray(1.0), jnp.asarray(2.0), jnp.asarray(0.3)),
            ]
        ok = all(bool(np.all(np.isfinite(np.asarray(v)))) for v in vals)
    except Exception as e:  # noqa: BLE001 - any failure means "no usable expectations"
        raise ValueError(
            f"activation: cannot evaluate the Gaussian expectations E φ, E φφ, E φ'φ' of {act.name!r} "
            f"({type(e).__name__}: {e}); Definition E.1 needs them"
        ) from None
    if not ok:
        raise ValueError(
            f"activation: the Gaussian expectations E φ, E φφ, E φ'φ' of {act.name!r} are not finite; "
            "Definition E.1 needs them"
        )
    return act


def check_ms_network(net: ResNet) -> None:
    """Raise ValueError (naming the argument) unless Definition E.1 describes ``net``."""
    if net.parameterization != "depth_mup":
        raise ValueError(
            f"parameterization: Definition E.1 is the Depth-μP limit (branch √(T/L), μP learning "
            f"rates); got {net.parameterization!r}"
        )
    if net.block != "post_ms":
        raise ValueError(
            f"block: Definition E.1 models the mean-subtracted block 'post_ms' "
            f"(x + √τ·MS(φ(W x))), got {net.block!r}"
        )
    if net.alpha is not None:
        raise ValueError("alpha: Definition E.1 uses the μP output scale α = 1/√n; leave alpha=None")
    if net.width is not None:
        raise ValueError(f"width: the Γ/C recursion is the infinite-width limit; build the ResNet with width=None, got {net.width}")
    check_activation_expectations(net.activation)


def _vrows(act, Kprev, row, t, upto):
    """Rows t of V_{φ_c}[K] and V_{φ'}[K] where K is Kprev with row/column t replaced by ``row``."""
    diag = jnp.diagonal(Kprev)
    a_t = row[t]
    idx = jnp.arange(diag.shape[0])
    on = upto > 0
    a_s = jnp.where(on & (idx != t), diag, a_t)  # rows s > t (not yet computed): a harmless stand-in
    c = jnp.where(on, row, 0.0)
    a_t = jnp.broadcast_to(a_t, a_s.shape)
    vc = jnp.where(on, centred_pair(act, a_t, a_s, c), 0.0)
    vp = jnp.where(on, act.expect_dpair(a_t, a_s, c), 0.0)
    return vc, vp


@partial(jax.jit, static_argnames=("K", "L", "G", "loss", "act", "printed"))
def _run(X, Y, *, K, L, G, tau, eta_u, eta_w, eta_v, loss, act, printed=False):
    d = G - 1
    f64 = jnp.float64
    Ax = jnp.zeros((K, L + 1, G), f64)
    Zx = jnp.zeros((K, L + 1, K, L), f64)
    Yx = jnp.zeros((K, L + 1, K, L), f64)
    Ad = jnp.zeros((K, L + 1, G), f64)
    Zd = jnp.zeros((K, L + 1, K, L), f64)
    Yd = jnp.zeros((K, L + 1, K, L), f64)
    K0 = jnp.zeros((L + 1, K, K), f64)  # K0[m-1] = ⟨x^{m-1}, x^{m-1}⟩ = Cov(Ẑ^m); K0[L] = ⟨x^L, x^L⟩
    B0 = jnp.zeros((L, K, K), f64)  # Cov(Φ^m) = V_{φ_c}[K^m]
    Vp = jnp.zeros((L, K, K), f64)  # V_{φ'}[K^m]
    C1 = jnp.zeros((L, K, K), f64)  # ⟨δ̃x^m, δ̃x^m⟩; Cov(Ŷ^m) = Vp ⊙ C1
    gram = X @ X.T / d
    steps = jnp.arange(K)

    def one_step(t, state):
        Ax, Zx, Yx, Ad, Zd, Yd, K0, B0, Vp, C1, f, chi = state
        past = (steps < t).astype(f64)
        upto = (steps <= t).astype(f64)

        ku = eta_u * gram[t] * past
        a0 = jnp.concatenate([X[t] / math.sqrt(d), jnp.zeros((1,), f64)]) - ku @ Ad[:, 0]
        z0 = -jnp.einsum("s,sum->um", ku, Zd[:, 0])
        y0 = -jnp.einsum("s,sum->um", ku, Yd[:, 0])

        def fwd(carry, l):
            a, z, y, K0, B0, Vp = carry
            B1 = Vp * C1
            row = _cov(a, z, y, Ax[:, l - 1].at[t].set(a), Zx[:, l - 1].at[t].set(z), Yx[:, l - 1].at[t].set(y),
                       B0, B1, tau) * upto
            vc, vp = _vrows(act, K0[l - 1], row, t, upto)
            K0 = K0.at[l - 1].set(_set_row_col(K0[l - 1], t, row))
            B0 = B0.at[l - 1].set(_set_row_col(B0[l - 1], t, vc))
            Vp = Vp.at[l - 1].set(_set_row_col(Vp[l - 1], t, vp))
            kappa = vp * (y[:, l - 1] - eta_w * row) * past
            a = a + tau * kappa @ Ad[:, l]
            z = z + tau * jnp.einsum("s,sum->um", kappa, Zd[:, l])
            y = y + tau * jnp.einsum("s,sum->um", kappa, Yd[:, l])
            z = z.at[t, l - 1].add(1.0)
            return (a, z, y, K0, B0, Vp), (a, z, y)

        (aL, zL, yL, K0, B0, Vp), (As, Zs, Ys) = jax.lax.scan(fwd, (a0, z0, y0, K0, B0, Vp), jnp.arange(1, L + 1))
        Ax = Ax.at[t].set(jnp.concatenate([a0[None], As]))
        Zx = Zx.at[t].set(jnp.concatenate([z0[None], Zs]))
        Yx = Yx.at[t].set(jnp.concatenate([y0[None], Ys]))
        rowL = _cov(aL, zL, yL, Ax[:, L], Zx[:, L], Yx[:, L], B0, Vp * C1, tau) * upto
        K0 = K0.at[L].set(_set_row_col(K0[L], t, rowL))

        kv = eta_v * chi * past
        ft = aL[d] - kv @ rowL
        f = f.at[t].set(ft)
        ct = loss_grad(loss, ft, Y[t])
        chi = chi.at[t].set(ct)

        aT = ct * (jnp.zeros((G,), f64).at[d].set(1.0) - kv @ Ax[:, L])
        zT = -ct * jnp.einsum("s,sum->um", kv, Zx[:, L])
        yT = -ct * jnp.einsum("s,sum->um", kv, Yx[:, L])

        def bwd(carry, l):
            a, z, y, C1 = carry
            row = _cov(a, z, y, Ad[:, l].at[t].set(a), Zd[:, l].at[t].set(z), Yd[:, l].at[t].set(y),
                       B0, Vp * C1, tau) * upto
            C1 = C1.at[l - 1].set(_set_row_col(C1[l - 1], t, row))
            if printed:  # the printed Definition E.1: V_{φ_c|φ'} = Cov(φ', φ') on the Γ term (for comparison)
                dmean = _deriv_mean(act, jnp.diagonal(K0[l - 1]))
                kappa = (Vp[l - 1, t] - dmean[t] * dmean) * z[:, l - 1] - Vp[l - 1, t] * eta_w * row
                kappa = kappa * past
            else:
                kappa = Vp[l - 1, t] * (z[:, l - 1] - eta_w * row) * past
            a = a + tau * kappa @ Ax[:, l - 1]
            z = z + tau * jnp.einsum("s,sum->um", kappa, Zx[:, l - 1])
            y = y + tau * jnp.einsum("s,sum->um", kappa, Yx[:, l - 1])
            y = y.at[t, l - 1].add(1.0)
            return (a, z, y, C1), (a, z, y)

        (_, _, _, C1), (As, Zs, Ys) = jax.lax.scan(bwd, (aT, zT, yT, C1), jnp.arange(L, 0, -1))
        Ad = Ad.at[t].set(jnp.concatenate([As[::-1], aT[None]]))
        Zd = Zd.at[t].set(jnp.concatenate([Zs[::-1], zT[None]]))
        Yd = Yd.at[t].set(jnp.concatenate([Ys[::-1], yT[None]]))
        return Ax, Zx, Yx, Ad, Zd, Yd, K0, B0, Vp, C1, f, chi

    state = (Ax, Zx, Yx, Ad, Zd, Yd, K0, B0, Vp, C1, jnp.zeros((K,), f64), jnp.zeros((K,), f64))
    Ax, Zx, Yx, Ad, Zd, Yd, K0, B0, Vp, C1, f, chi = jax.lax.fori_loop(0, K, one_step, state)
    B1 = Vp * C1
    return f, chi, _all_covs(Ax, Zx, Yx, B0, B1, tau), _all_covs(Ad, Zd, Yd, B0, B1, tau), (Ax, Zx, Yx, Ad, Zd, Yd)


def _all_covs(A, Z, Yc, B0, B1, h):
    """(L+1, K, K) covariances at every layer index from final base covariances."""

    def one(i):
        return jax.vmap(lambda a, z, y: _cov(a, z, y, A[:, i], Z[:, i], Yc[:, i], B0, B1, h))(A[:, i], Z[:, i], Yc[:, i])

    return jax.lax.map(one, jnp.arange(A.shape[1]))


def finish(f, chi, feat, grad, gamma, net, config, return_gamma) -> GammaCResult:
    """Package the arrays as a :class:`GammaCResult` (divergence is reported with its step)."""
    f = np.asarray(f)
    bad = ~np.isfinite(f) | ~np.isfinite(np.asarray(feat)[-1]).all(axis=1)
    if bad.any():
        step = int(np.argmax(bad))
        raise DivergenceError(
            f"nonlinear Γ/C recursion diverged: f̊ or the output kernel became non-finite at step {step}; "
            f"try a smaller lr (lr={net.lr})",
            step=step, quantity="output f",
        )
    feat, grad, chi = np.asarray(feat), np.asarray(grad), np.asarray(chi)
    rms_f = np.sqrt(np.maximum(np.einsum("ltt->tl", feat), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rms_g = np.sqrt(np.maximum(np.einsum("ltt->tl", grad), 0.0)) / np.abs(chi)[:, None]
    rms_g = np.where(chi[:, None] == 0, np.nan, rms_g)
    g = None
    if return_gamma:
        names = ("x_init", "x_fwd", "x_bwd", "dx_init", "dx_fwd", "dx_bwd")
        g = {k: np.asarray(v) for k, v in zip(names, gamma)}
    return GammaCResult(
        outputs=f, chi=chi, feature_cov=feat, grad_cov=grad, output_kernel=feat[-1],
        rms_features=rms_f, rms_grads=rms_g, gamma=g, network=net, config=config,
    )


def _check_input_dim(net, X):
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")


def gamma_c_nonlinear_network(net: ResNet, X, Y, *, return_gamma: bool = False, max_memory: int | None = None,
                              _printed_backward: bool = False) -> GammaCResult:
    """Run the depth-L recursion of Definition E.1 for a ``block="post_ms"`` :class:`~nfd.ResNet`.

    Args:
        net: ``block="post_ms"``, ``parameterization="depth_mup"``, ``width=None``, any activation
            whose Gaussian expectations can be evaluated; ``net.frozen`` as in the linear solver.
        X: (K, d) one input per SGD step.  Y: (K,) targets.

    Returns:
        :class:`~nfd.limits.GammaCResult`; ``output_kernel`` (K, K) is the kernel ⟨x_s^L, x_t^L⟩
        that Claim E.1 says the final features' Gaussian process has.
    """
    check_ms_network(net)
    X, Y = check_data(X, Y, loss=net.loss)
    _check_input_dim(net, X)
    _need_x64()
    K, L = X.shape[0], net.depth
    check_memory(
        estimate_gamma_c_memory(K, L, net.input_dim, return_gamma) + 8 * 3 * L * K * K,
        what="the nonlinear Γ/C recursion", hint=f"steps K={K}, depth L={L}: memory grows as K²·L²",
        limit_bytes=max_memory,
    )
    eta_u, eta_w, eta_v = _group_rates(net)
    f, chi, feat, grad, gamma = _run(
        jnp.asarray(X), jnp.asarray(Y), K=K, L=L, G=net.input_dim + 1, tau=net.tau,
        eta_u=eta_u, eta_w=eta_w, eta_v=eta_v, loss=net.loss, act=net.activation, printed=bool(_printed_backward),
    )
    config = dict(method="gamma_c", block="post_ms", depth=L, printed_backward=bool(_printed_backward), eta_input=eta_u, eta_hidden=eta_w, eta_output=eta_v)
    return finish(f, chi, feat, grad, gamma, net, config, return_gamma)


def _net(X, Y, *, depth, activation, lr, T, frozen, loss, parameterization="depth_mup", block="post_ms"):
    X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
    if getattr(X, "ndim", None) == 1:
        X = np.asarray(X, dtype=np.float64)[:, None]
    X, Y = check_data(X, Y, loss=loss)
    net = ResNet(
        depth=depth, input_dim=X.shape[1], width=None, activation=activation, T=T, block=block,
        parameterization=parameterization, lr=lr, frozen=tuple(frozen), loss=loss,
    )
    check_ms_network(net)
    return X, Y, net


def solve_gamma_c_nonlinear(
    X,
    Y,
    *,
    depth: int,
    activation="tanh",
    lr: float = 1.0,
    T: float = 1.0,
    frozen=("input", "output"),
    loss: str = "mse",
    parameterization: str = "depth_mup",
    block: str = "post_ms",
    return_gamma: bool = False,
    max_memory: int | None = None,
) -> GammaCResult:
    """Definition E.1 at depth L for the mean-subtracted block (``nfd.solve(..., method="gamma_c",
    block="post_ms", depth=L)``).

    The finite network it describes is ``nfd.simulate(..., block="post_ms")``:
    h_0 = U x/√d, h_ℓ = h_{ℓ-1} + √(T/L)·MS(φ(W_ℓ h_{ℓ-1}/√n)), f = vᵀh_L/n, SGD rate ``lr``·n.

    Args:
        X: (K, d) inputs, one per SGD step (a 1-D array is read as d = 1).
        Y: (K,) targets.
        depth: L.
        activation: any with Gaussian expectations E φ, E φφ, E φ'φ' (closed form or quadrature).
        lr: η_c (1.0 is the paper's learning rate 1).
        T: depth horizon; branch multiplier √(T/L).
        frozen: groups not trained; the default freezes U and v as in the paper.
        loss: ``"mse"`` or ``"logistic"``.
        parameterization: must be ``"depth_mup"`` (checked, named in the error).
        block: must be ``"post_ms"`` (checked, named in the error).
        return_gamma: also return the Γ tensors.
        max_memory: byte limit; memory O(K²·L²) is checked before anything runs.

    Returns:
        :class:`~nfd.limits.GammaCResult`; ``output_kernel`` (K, K) = ⟨x_s^L, x_t^L⟩.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> import numpy as np, nfd
        >>> X = np.array([[1.0], [-0.5], [0.8]]); Y = np.array([0.5, -1.0, 0.3])
        >>> res = nfd.solve(X, Y, depth=8, activation="tanh", method="gamma_c", block="post_ms")
        >>> res.output_kernel.shape
        (3, 3)
    """
    X, Y, net = _net(X, Y, depth=depth, activation=activation, lr=lr, T=T, frozen=frozen, loss=loss,
                     parameterization=parameterization, block=block)
    return gamma_c_nonlinear_network(net, X, Y, return_gamma=return_gamma, max_memory=max_memory)
