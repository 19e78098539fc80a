"""The Γ/C recursion of Tensor Programs VI for linear residual networks (finite depth L).

Tensor Programs VI (Yang, Yu, Zhu, Hayou; §4, Program 1, Definition 4.1, Lemma 4.3 / C.1)
describe the infinite-width limit of a *linear* depth-μP ResNet trained by SGD exactly:
every feature ket ‖x_t^l⟩ and every normalised gradient ket ‖δ̃x_t^l⟩ is a linear
combination of independent zero-mean Gaussian "base" variables

* the initial-weight group: ‖U⟩ (d standard Gaussians, h_0 = U x/√d) and ‖nV⟩ (one);
* per layer m = 1..L and step s: the forward bases Ẑ^m_s = ‖W_0^m x_s^{m-1}⟩^ with
  Cov(Ẑ^m_t, Ẑ^m_s) = C_{t,s,0}(m/L) = ⟨x_t^{m-1}, x_s^{m-1}⟩, and the backward bases
  Ŷ^m_s = ‖W_0^{m⊤} δ̃x_s^m⟩^ with Cov(Ŷ^m_t, Ŷ^m_s) = C_{t,s,1}(m/L) = ⟨δ̃x_t^m, δ̃x_s^m⟩.

The coefficients, scaled by 1/√τ for the Ẑ, Ŷ groups, are the paper's Γ_{t,s,a,b}(p, q)
(a = 0 forward ket, a = 1 backward ket; b = 0 Ẑ, b = 1 Ŷ; p = l/L, q = m/L).  With branch
multiplier b = √τ (τ = T/L; the paper's 1/√L is T = 1) and hidden learning rate η,
Program 1 with Definition 4.1 gives, for step t and layer l (Lemma C.1)::

    x_t^l    = x_t^{l-1} + √τ Ẑ^l_t + τ Σ_{s<t} δ̃x_s^l   (Γ_{t,s,0,1}(l-1, l) − η C_{t,s,0}(l))
    δ̃x_t^{l-1} = δ̃x_t^l + √τ Ŷ^l_t + τ Σ_{s<t} x_s^{l-1} (Γ_{t,s,1,0}(l, l)  − η C_{t,s,1}(l))

with x_t^0 = U x_t/√d − η_U Σ_{s<t} (x_s·x_t/d) δ̃x_s^0, nV_t = nV_0 − η_V Σ_{s<t} χ_s x_s^L,
f̊_t = ⟨x_t^L, nV_t⟩, χ_t = ℓ'(f̊_t, y_t), δ̃x_t^L = χ_t nV_t.  Frozen U, V (the paper's §4)
set η_U = η_V = 0; trainable ones are the "s = −1" terms.  Covariances are bilinear in the
coefficients (the C line of Lemma C.1), so the whole recursion is deterministic linear
algebra: memory O(T²·L²), time O(T³·L²).

Mapping onto :class:`nfd.ResNet` (checked against finite networks in the tests): the paper's
W^l (variance 1/n) is our W_ℓ/√n, its 1/√L branch is our √(T/L) with T = 1, its nV is our v
(f = (α/√n) vᵀh_L with α = 1/√n), and its learning rate η = 1 is our ``lr`` = η_c = 1 (the
finite simulator trains W_ℓ at rate η_c·n, which is rate η_c on W_ℓ/√n).  Inputs ξ_t are the
rows of X (d = 1 in the paper; any d works here).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._divergence import find, report
from .._results import result
from .._losses import loss_grad
from .._memory import check_memory
from .._model import ResNet
from .._validate import check_bool, check_bytes, check_data

__all__ = ["GammaCResult", "solve_gamma_c", "gamma_c_network", "estimate_gamma_c_memory"]


@result
class GammaCResult:
    """Infinite-width limit of a linear ResNet trained by SGD (numpy arrays).

    K = number of SGD steps, L = depth (or the number of grid cells N for the infinite-depth
    solver, where layer index l means depth p = l·T/N).

    Attributes:
        outputs: (K,) f̊_t, the output on sample t before update t.
        chi: (K,) χ_t = ℓ'(f̊_t, y_t).
        feature_cov: (L+1, K, K) ⟨x_t^l, x_s^l⟩ for l = 0..L (C_{t,s,0}((l+1)/L) in the paper's
            indexing; l = L is the output feature kernel, the Gaussian-process kernel of the
            final features in Theorem 4.1).
        grad_cov: (L+1, K, K) ⟨δ̃x_t^l, δ̃x_s^l⟩ for l = 0..L (C_{t,s,1}(l/L) for l ≥ 1).
        output_kernel: (K, K) ⟨x_t^L, x_s^L⟩ = feature_cov[-1].
        rms_features: (K, L+1) √⟨x_t^l, x_t^l⟩, the width-limit of the root-mean-square of h_l
            at step t (the statistic of the paper's Figures 8–9).
        rms_grads: (K, L+1) √⟨g_t^l, g_t^l⟩ with g = δ̃x/χ = (√n/α)∂f/∂h (NaN where χ_t = 0).
        gamma: ``None`` unless ``return_gamma=True``; then a dict of the normalised Γ tensors
            ``"x_init" (K, L+1, d+1)``, ``"x_fwd" (K, L+1, K, L)``, ``"x_bwd"``, ``"dx_init"``,
            ``"dx_fwd"``, ``"dx_bwd"``: coefficient of ‖x_t^l⟩ (or ‖δ̃x_t^l⟩) on ‖U⟩,‖nV⟩ and
            on Ẑ^m_s, Ŷ^m_s divided by √τ, i.e. Γ_{t,s,a,b}(l/L, m/L).
        network: the :class:`~nfd.ResNet` (width ``None``) that was solved.
        config: remaining settings (method, depth or grid, learning rates per group).
    """

    outputs: np.ndarray
    chi: np.ndarray
    feature_cov: np.ndarray
    grad_cov: np.ndarray
    output_kernel: np.ndarray
    rms_features: np.ndarray
    rms_grads: np.ndarray
    gamma: dict | None
    network: ResNet
    config: dict


# ----------------------------------------------------------------------------------------
# validation and memory
# ----------------------------------------------------------------------------------------


def _group_rates(net: ResNet) -> tuple[float, float, float]:
    """(η_U, η_W, η_V) in the limit's units: η_c for a trained group, 0 for a frozen one."""
    eta = float(net.lr)
    return (
        0.0 if "input" in net.frozen else eta,
        0.0 if "hidden" in net.frozen else eta,
        0.0 if "output" in net.frozen else eta,
    )


def check_linear_network(net: ResNet) -> None:
    """Raise ValueError unless ``net`` is a network the Γ/C recursion describes."""
    if net.activation.name != "identity":
        raise ValueError(
            f"activation: the Γ/C recursion of Tensor Programs VI is for linear networks "
            f"(activation='identity'), got {net.activation.name!r}; use method='particles' "
            f"for nonlinear activations, or block='post_ms' for the mean-subtracted block of TP VI App. E"
        )
    if net.parameterization != "depth_mup":
        raise ValueError(f"parameterization: the Γ/C recursion is derived for 'depth_mup', got {net.parameterization!r}")
    if net.block not in ("pre", "post"):
        raise ValueError(f"block: the Γ/C recursion needs a one-matrix block ('pre' or 'post'), got {net.block!r}")
    if net.alpha is not None:
        raise ValueError("alpha: the Γ/C recursion uses the μP output scale α = 1/√n; leave alpha=None")
    if net.width is not None:
        raise ValueError(f"width: the Γ/C recursion is the infinite-width limit; build the ResNet with width=None, got {net.width}")


def estimate_gamma_c_memory(steps: int, layers: int, input_dim: int = 1, return_gamma: bool = False) -> int:
    """Bytes the Γ/C recursion needs (float64): 4 coefficient tensors of shape (K, L+1, K, L)
    plus the two covariance tensors (L+1, K, K), with a factor 2 for XLA's scan buffers."""
    K, L = int(steps), int(layers)
    coeff = 4 * K * (L + 1) * K * L + 2 * K * (L + 1) * (input_dim + 1)
    cov = 2 * (L + 1) * K * K
    per_layer_work = 8 * K * K * L  # per-layer temporaries of the covariance contractions
    total = 2 * (coeff + cov) + per_layer_work
    if return_gamma:
        total += coeff
    return int(8 * total)


def _prepare(X, Y, *, depth, activation, lr, T, frozen, loss):
    X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
    if getattr(X, "ndim", None) == 1:
        X = np.asarray(X, dtype=np.float64)[:, None]
    X, Y = check_data(X, Y, loss=loss)
    net = ResNet(
        depth=depth, input_dim=X.shape[1], width=None, activation=activation, T=T, block="pre",
        parameterization="depth_mup", lr=lr, frozen=frozen, loss=loss,
    )
    check_linear_network(net)
    return X, Y, net


def _need_x64():
    """Context in which the Γ/C solvers run: float64 whatever the global ``jax_enable_x64`` is
    (float32 loses the O(1/L) differences the depth study measures); the user's setting is
    left unchanged."""
    return jax.enable_x64(True)


# ----------------------------------------------------------------------------------------
# the recursion
# ----------------------------------------------------------------------------------------


def _cov(a, z, y, A_all, Z_all, Y_all, C0, C1, tau):
    """⟨u, w_s⟩ for all s, where u has coefficients (a, z, y) and w_s the rows of *_all.

    a (G,), z, y (K, L): coefficients of u; A_all (K, G), Z_all, Y_all (K, K, L);
    C0, C1 (L, K, K): base covariances per layer (Cov(Ẑ^m_t, Ẑ^m_s) = C0[m-1, t, s]).
    """
    wz = jnp.einsum("tm,mtu->um", z, C0)
    wy = jnp.einsum("tm,mtu->um", y, C1)
    return A_all @ a + tau * (jnp.einsum("um,sum->s", wz, Z_all) + jnp.einsum("um,sum->s", wy, Y_all))


def _set_row_col(C, t, row):
    """C (K, K) with row t and column t replaced by ``row`` (K,)."""
    K = C.shape[0]
    idx = jnp.arange(K)
    C = jnp.where(idx[:, None] == t, row[None, :], C)
    return jnp.where(idx[None, :] == t, row[:, None], C)


@partial(jax.jit, static_argnames=("K", "L", "G", "loss"))
def _run(X, Y, *, K, L, G, tau, eta_u, eta_w, eta_v, loss):
    """The full recursion (Lemma C.1) for K steps; shapes static, everything float64."""
    d = G - 1
    f64 = jnp.float64
    Ax = jnp.zeros((K, L + 1, G), f64)
    Zx = jnp.zeros((K, L + 1, K, L), f64)
    Yx = jnp.zeros((K, L + 1, K, L), f64)
    Ad = jnp.zeros((K, L + 1, G), f64)
    Zd = jnp.zeros((K, L + 1, K, L), f64)
    Yd = jnp.zeros((K, L + 1, K, L), f64)
    C0 = jnp.zeros((L + 1, K, K), f64)  # C0[m-1] = Cov(Ẑ^m), m = 1..L; C0[L] = ⟨x^L, x^L⟩
    C1 = jnp.zeros((L, K, K), f64)  # C1[m-1] = Cov(Ŷ^m) = ⟨δ̃x^m, δ̃x^m⟩
    gram = X @ X.T / d  # (K, K) x_s·x_t/d
    steps = jnp.arange(K)

    def one_step(t, state):
        Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, f, chi = state
        past = (steps < t).astype(f64)  # (K,) mask s < t

        # ---- x_t^0 = U x_t/√d − η_U Σ_{s<t} (x_s·x_t/d) δ̃x_s^0
        ku = eta_u * gram[t] * past
        a0 = jnp.concatenate([X[t] / math.sqrt(d), jnp.zeros((1,), f64)]) - ku @ Ad[:, 0]
        z0 = -jnp.einsum("s,sum->um", ku, Zd[:, 0])
        y0 = -jnp.einsum("s,sum->um", ku, Yd[:, 0])

        # ---- forward, l = 1..L
        def fwd(carry, l):
            a, z, y, C0 = carry  # coefficients of x_t^{l-1}; C0 with step-t rows for m < l
            A_all = Ax[:, l - 1].at[t].set(a)
            Z_all = Zx[:, l - 1].at[t].set(z)
            Y_all = Yx[:, l - 1].at[t].set(y)
            row = _cov(a, z, y, A_all, Z_all, Y_all, C0[:L], C1, tau) * (steps <= t)
            C0 = C0.at[l - 1].set(_set_row_col(C0[l - 1], t, row))
            kappa = (y[:, l - 1] - eta_w * row) * past  # Γ_{t,s,0,1}(l-1, l) − η C_{t,s,0}(l)
            a = a + tau * kappa @ Ad[:, l]
            z = z + tau * jnp.einsum("s,sum->um", kappa, Zd[:, l])
            y = y + tau * jnp.einsum("s,sum->um", kappa, Yd[:, l])
            z = z.at[t, l - 1].add(1.0)  # √τ Ẑ^l_t, normalised by √τ
            return (a, z, y, C0), (a, z, y)

        (aL, zL, yL, C0), (As, Zs, Ys) = jax.lax.scan(fwd, (a0, z0, y0, C0), jnp.arange(1, L + 1))
        Ax = Ax.at[t].set(jnp.concatenate([a0[None], As]))
        Zx = Zx.at[t].set(jnp.concatenate([z0[None], Zs]))
        Yx = Yx.at[t].set(jnp.concatenate([y0[None], Ys]))
        # output feature kernel ⟨x_t^L, x_s^L⟩ (s ≤ t)
        rowL = _cov(aL, zL, yL, Ax[:, L], Zx[:, L], Yx[:, L], C0[:L], C1, tau) * (steps <= t)
        C0 = C0.at[L].set(_set_row_col(C0[L], t, rowL))

        # ---- output: f_t = ⟨x_t^L, nV_t⟩, nV_t = nV_0 − η_V Σ_{s<t} χ_s x_s^L
        kv = eta_v * chi * past
        ft = aL[d] - kv @ rowL
        f = f.at[t].set(ft)
        ct = loss_grad(loss, ft, Y[t])
        chi = chi.at[t].set(ct)

        # ---- δ̃x_t^L = χ_t (nV_0 − η_V Σ_{s<t} χ_s x_s^L)
        aT = ct * (jnp.zeros((G,), f64).at[d].set(1.0) - kv @ Ax[:, L])
        zT = -ct * jnp.einsum("s,sum->um", kv, Zx[:, L])
        yT = -ct * jnp.einsum("s,sum->um", kv, Yx[:, L])

        # ---- backward, l = L..1
        def bwd(carry, l):
            a, z, y, C1 = carry  # coefficients of δ̃x_t^l; C1 with step-t rows for m > l
            A_all = Ad[:, l].at[t].set(a)
            Z_all = Zd[:, l].at[t].set(z)
            Y_all = Yd[:, l].at[t].set(y)
            row = _cov(a, z, y, A_all, Z_all, Y_all, C0[:L], C1, tau) * (steps <= t)
            C1 = C1.at[l - 1].set(_set_row_col(C1[l - 1], t, row))
            kappa = (z[:, l - 1] - eta_w * row) * past  # Γ_{t,s,1,0}(l, l) − η C_{t,s,1}(l)
            a = a + tau * kappa @ Ax[:, l - 1]
            z = z + tau * jnp.einsum("s,sum->um", kappa, Zx[:, l - 1])
            y = y + tau * jnp.einsum("s,sum->um", kappa, Yx[:, l - 1])
            y = y.at[t, l - 1].add(1.0)  # √τ Ŷ^l_t
            return (a, z, y, C1), (a, z, y)

        (_, _, _, C1), (As, Zs, Ys) = jax.lax.scan(bwd, (aT, zT, yT, C1), jnp.arange(L, 0, -1))
        # scan outputs are δ̃x_t^{L-1}, ..., δ̃x_t^0; store in layer order 0..L
        Ad = Ad.at[t].set(jnp.concatenate([As[::-1], aT[None]]))
        Zd = Zd.at[t].set(jnp.concatenate([Zs[::-1], zT[None]]))
        Yd = Yd.at[t].set(jnp.concatenate([Ys[::-1], yT[None]]))
        return Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, f, chi

    state = (Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, jnp.zeros((K,), f64), jnp.zeros((K,), f64))
    state = jax.lax.fori_loop(0, K, one_step, state)
    Ax, Zx, Yx, Ad, Zd, Yd, C0, C1, f, chi = state

    # covariances at every layer index 0..L, all pairs (every base covariance is final now)
    def fcov(l):
        return jax.vmap(lambda a, z, y: _cov(a, z, y, Ax[:, l], Zx[:, l], Yx[:, l], C0[:L], C1, tau))(
            Ax[:, l], Zx[:, l], Yx[:, l]
        )

    def dcov(l):
        return jax.vmap(lambda a, z, y: _cov(a, z, y, Ad[:, l], Zd[:, l], Yd[:, l], C0[:L], C1, tau))(
            Ad[:, l], Zd[:, l], Yd[:, l]
        )

    feat = jax.lax.map(fcov, jnp.arange(L + 1))
    grad = jax.lax.map(dcov, jnp.arange(L + 1))
    return f, chi, feat, grad, (Ax, Zx, Yx, Ad, Zd, Yd)


def _finish(f, chi, feat, grad, gamma, net, config, return_gamma):
    f = np.asarray(f)
    report(find(f), what="Γ/C recursion", quantity="output f̊", hint=f"try a smaller lr (lr={net.lr})")
    feat = np.asarray(feat)
    grad = np.asarray(grad)
    chi = np.asarray(chi)
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


def gamma_c_network(net: ResNet, X, Y, *, return_gamma: bool = False, max_memory: int | None = None) -> GammaCResult:
    """Run the finite-depth Γ/C recursion for a linear :class:`~nfd.ResNet` (width ``None``).

    Args:
        net: ``activation="identity"``, ``parameterization="depth_mup"``, ``width=None``;
            ``net.frozen`` says which of U ("input"), W ("hidden"), v ("output") train.
        X: (K, d) one input per SGD step (the paper's ξ_t is d = 1).
        Y: (K,) targets.
        return_gamma: also return the Γ tensors (memory O(K²·L²)).
        max_memory: byte limit (default 80% of physical memory).

    Returns:
        :class:`GammaCResult`.
    """
    check_linear_network(net)
    X, Y = check_data(X, Y, loss=net.loss)
    max_memory = check_bytes("max_memory", max_memory)
    check_bool("return_gamma", return_gamma)
    if X.shape[1] != net.input_dim:
        raise ValueError(f"X has d={X.shape[1]} columns but the network has input_dim={net.input_dim}")
    K, L = X.shape[0], net.depth
    check_memory(
        estimate_gamma_c_memory(K, L, net.input_dim, return_gamma),
        what="the Γ/C recursion", hint=f"steps K={K}, depth L={L}: memory grows as K²·L²", limit_bytes=max_memory,
    )
    eta_u, eta_w, eta_v = _group_rates(net)
    config = dict(method="gamma_c", depth=L, eta_input=eta_u, eta_hidden=eta_w, eta_output=eta_v)
    with _need_x64():
        f, chi, feat, grad, gamma = _run(
            jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64), K=K, L=L, G=net.input_dim + 1, tau=net.tau,
            eta_u=eta_u, eta_w=eta_w, eta_v=eta_v, loss=net.loss,
        )
        return _finish(f, chi, feat, grad, gamma, net, config, return_gamma)


def solve_gamma_c(
    X,
    Y,
    *,
    depth: int,
    activation="identity",
    lr: float = 1.0,
    T: float = 1.0,
    frozen=("input", "output"),
    loss: str = "mse",
    return_gamma: bool = False,
    max_memory: int | None = None,
) -> GammaCResult:
    """Infinite-width limit of a linear depth-μP ResNet of depth L by the Γ/C recursion.

    This is ``nfd.solve(X, Y, method="gamma_c", ...)``.  The network is the one
    :func:`nfd.simulate` trains with ``activation="identity"``: h_0 = U x/√d,
    h_ℓ = h_{ℓ-1} + √(T/L)/√n W_ℓ h_{ℓ-1}, f = vᵀh_L/n, SGD rate ``lr``·n; with T = 1 and
    ``lr=1.0`` it is the network of Tensor Programs VI §4 (branch 1/√L, learning rate 1).

    Args:
        X: (K, d) inputs, one per SGD step (a 1-D array is read as d = 1 scalar inputs ξ_t).
        Y: (K,) targets.
        depth: L.
        activation: must be ``"identity"`` (the recursion is exact only for linear networks).
        lr: η_c (1.0 is the paper's learning rate 1).
        T: depth horizon; branch multiplier √(T/L).
        frozen: subset of ``("input", "hidden", "output")`` that is not trained; the default
            freezes U and v as in the paper's §4.
        loss: ``"mse"`` (½(f−y)², χ = f − y) or ``"logistic"``.
        return_gamma: also return the Γ tensors.
        max_memory: byte limit; the memory O(K²·L²) is checked before anything runs.

    Returns:
        :class:`GammaCResult` with ``.outputs`` (K,) = f̊_t.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.array([[1.0], [-0.5], [0.8]]); Y = np.array([0.5, -1.0, 0.3])
        >>> res = nfd.solve(X, Y, depth=16, lr=1.0, method="gamma_c")
        >>> res.outputs.shape
        (3,)
    """
    X, Y, net = _prepare(X, Y, depth=depth, activation=activation, lr=lr, T=T, frozen=frozen, loss=loss)
    return gamma_c_network(net, X, Y, return_gamma=return_gamma, max_memory=max_memory)
