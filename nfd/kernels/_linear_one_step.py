"""Feature kernels of an infinite-width linear ResNet after one SGD step, in closed form
(depthwise-transfer paper, Appendix G.2.2, Eq. 86–93, re-derived for the nfd network).

Network: φ = identity, depth-μP (α = 1/√n, SGD rate η_c·n on each trained group),
h_0 = U x/√d, h_ℓ = h_{ℓ-1} + √(τ/n) W_ℓ h_{ℓ-1}, f = vᵀh_L/n, τ = T/L.  Train one step on
(x₀, y) with MSE; evaluate the step-1 network on inputs x_a, x_b.  Write c_{ab} = x_a·x_b/d,
χ = η_c y (the limit output at initialisation is 0, so −η_c ℓ'₀ = η_c y) and 1_in, 1_hid,
1_out ∈ {0, 1} for trained groups.

Derivation (infinite width, finite L; the Tensor-Program recursion of
``shared/notes/limit-recursions.md``).  At initialisation H⁰_ℓ = c(1+τ)^ℓ and
G⁰_ℓ = E[g_ℓ²] = (1+τ)^{L-ℓ}, with g⁰_m − g⁰_ℓ independent of g⁰_ℓ for m < ℓ, so
E[g⁰_m g⁰_{m'}] = G⁰_{max(m,m')}.  After the step every field is Gaussian and

    h¹_ℓ(a) = (init-noise part, independent of v and the backward noise) + χ Σ_{m≤ℓ} β^a_m g⁰_m,

    β^a_0 = 1_in c_{0a},   β^a_ℓ = τ (1_hid c_{0a}(1+τ)^{ℓ-1} + κ R^a_{ℓ-1}),   R^a_ℓ = Σ_{m≤ℓ} β^a_m,

where κ = 1 for the coupled network (the Tensor-Program correction ż of W_ℓ acting on a vector
that already contains g⁰: E[h¹_{ℓ-1} ζ̃_ℓ]/Θ_ℓ = χ√τ R_{ℓ-1}, the response function A of the paper)
and κ = 0 for the decoupled network (GIA).  Hence, with B_ℓ = Σ_{m,m'≤ℓ} β^a_m β^b_{m'} G⁰_{max(m,m')},

    H¹_ℓ(a, b) = (1+τ) H¹_{ℓ-1}(a, b) + χ² (B_ℓ − B_{ℓ-1}),   H¹_0 = c_{ab} + χ² B_0,
    f¹(a) = E[g¹_L h¹_L(a)] = χ (R^a_L + 1_out c_{0a} (1+τ)^L).

L → ∞ (layer-time t ∈ [0, T]): H⁰(t) = c e^t, G⁰(t) = e^{T−t}, and

    H¹(t; a, b) = c_{ab} e^t + χ² c_{0a} c_{0b} J(t),
    coupled:    J(t) = e^{T+t} [1_in + 2 (1_in(1+1_hid) t + 1_hid(1+2·1_in) t²/2 + 1_hid t³/3)],
    decoupled:  J(t) = e^{T+t} [1_in + 2·1_hid ((1_in − 1)(1 − e^{−t}) + t)],
    f¹(a) = χ c_{0a} (e^T (1_in + 1_hid T) + 1_out e^T)              (coupled; = η_c y K_NTK),
    f¹(a) = χ c_{0a} (1_in + 1_hid (e^T − 1) + 1_out e^T)             (decoupled).

With only the hidden weights trained, T = 1 and c = 1 this is H¹(t) = e^t H(0) +
2χ² e^{1+t}(t³/3 + t²/2): the paper's Eq. 92 with G₀(τ) = e^{1−τ}.  The paper prints
G₀(τ) = e^{−τ} + 1 − e^{−1}, which does not solve its own Eq. 86 (∂G₀ = −G₀, G₀(1) = 1), and its
Eq. 93 additionally has (1 + e^{−1}) where integrating Eq. 92 gives (1 − e^{−1}) and drops y²;
:func:`paper_eq93` reproduces the printed formula for comparison (docs/kernels.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._common import check_depth, check_T

__all__ = ["LinearOneStep", "linear_one_step", "paper_eq93"]


@dataclasses.dataclass(frozen=True)
class LinearOneStep:
    """Kernels of the linear ResNet before and after one SGD step (numpy, float64).

    Attributes:
        t: (S,) layer times (ℓ·τ for finite depth, S = L+1; the requested grid for L = ∞).
        H0: (S, M, M) feature kernel at initialisation, E[h⁰_t(a) h⁰_t(b)].
        H1: (S, M, M) feature kernel after the step, E[h¹_t(a) h¹_t(b)].
        G0: (S,) gradient kernel at initialisation E[g⁰_t²] (input-independent for linear nets).
        f1: (M,) the network output at x_a after the step.
        chi: η_c y.
        depth, T, backward, frozen: the configuration.
    """

    t: np.ndarray
    H0: np.ndarray
    H1: np.ndarray
    G0: np.ndarray
    f1: np.ndarray
    chi: float
    depth: int | None
    T: float
    backward: str
    frozen: tuple[str, ...]


def _flags(frozen):
    if isinstance(frozen, str):
        frozen = (frozen,)
    bad = [f for f in frozen if f not in ("input", "hidden", "output")]
    if bad:
        raise ValueError(f"frozen: unknown parameter groups {bad}; choose from ('input', 'hidden', 'output')")
    return tuple(sorted(set(frozen))), [0.0 if g in frozen else 1.0 for g in ("input", "hidden", "output")]


def linear_one_step(
    x0,
    y: float,
    X_eval=None,
    *,
    lr: float,
    T: float = 1.0,
    depth: int | None = None,
    frozen: tuple[str, ...] = (),
    backward: str = "coupled",
    ts=None,
) -> LinearOneStep:
    """Feature kernel profiles of a linear depth-μP ResNet after one SGD step on (x0, y).

    Args:
        x0: (d,) the training input.  y: its target (MSE loss).
        X_eval: (M, d) inputs at which the step-1 network is evaluated (default: x0 alone).
        lr: η_c.  T: horizon.  depth: L, or ``None`` for L → ∞.
        frozen: groups not trained, from ``("input", "hidden", "output")``.
        backward: ``"coupled"`` (ordinary backprop; the particle solver's ``"exact"``) or
            ``"decoupled"`` (independent backward weights; the particle solver's ``"gia"``).
        ts: layer times for L = ∞ (default 101 points on [0, T]).

    Returns:
        :class:`LinearOneStep`.

    Example:
        >>> import numpy as np
        >>> r = linear_one_step(np.ones(2), 1.0, lr=0.5, frozen=("input",))
        >>> t = r.t[-1]; bool(np.isclose(r.H1[-1, 0, 0], np.e + 2 * 0.25 * np.e**2 * (1/3 + 1/2)))
        True
    """
    x0 = np.asarray(x0, np.float64)
    if x0.ndim != 1 or x0.size == 0 or not np.all(np.isfinite(x0)):
        raise ValueError(f"x0 must be a finite 1-D input of shape (d,), got shape {x0.shape}")
    d = x0.size
    Xe = x0[None] if X_eval is None else np.asarray(X_eval, np.float64)
    if Xe.ndim != 2 or Xe.shape[1] != d or Xe.shape[0] == 0 or not np.all(np.isfinite(Xe)):
        raise ValueError(f"X_eval must be a finite array of shape (M, {d}), got shape {Xe.shape}")
    try:
        y = float(y)
        lr = float(lr)
    except (TypeError, ValueError):
        raise ValueError("y and lr must be numbers") from None
    if not np.isfinite(y):
        raise ValueError(f"y must be finite, got {y}")
    if not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a non-negative finite number, got {lr}")
    Tf = check_T(T)
    depth = check_depth(depth)
    if backward not in ("coupled", "decoupled"):
        raise ValueError(f"backward must be 'coupled' or 'decoupled', got {backward!r}")
    frozen, (i_in, i_hid, i_out) = _flags(frozen)
    chi = lr * y
    c0 = Xe @ x0 / d  # (M,)
    cab = Xe @ Xe.T / d  # (M, M)
    kappa = 1.0 if backward == "coupled" else 0.0
    cc = np.outer(c0, c0)

    if depth is not None:
        L = depth
        tau = Tf / L
        G0 = (1.0 + tau) ** (L - np.arange(L + 1))
        beta = i_in * c0
        R = beta.copy()
        B = np.outer(beta, beta) * G0[0]
        H1 = [cab + chi**2 * B]
        for ell in range(1, L + 1):
            beta = tau * (i_hid * c0 * (1.0 + tau) ** (ell - 1) + kappa * R)
            dB = G0[ell] * (np.outer(beta, beta) + np.outer(beta, R) + np.outer(R, beta))
            H1.append((1.0 + tau) * H1[-1] + chi**2 * dB)
            R = R + beta
        t = tau * np.arange(L + 1)
        H0 = cab[None] * ((1.0 + tau) ** np.arange(L + 1))[:, None, None]
        f1 = chi * (R + i_out * c0 * (1.0 + tau) ** L)
        H1 = np.array(H1)
    else:
        t = np.linspace(0.0, Tf, 101) if ts is None else np.asarray(ts, np.float64)
        if t.ndim != 1 or t.size == 0 or np.any(t < 0) or np.any(t > Tf) or not np.all(np.isfinite(t)):
            raise ValueError(f"ts must be a 1-D array of layer times in [0, T={Tf}]")
        if backward == "coupled":
            poly = i_in * (1 + i_hid) * t + i_hid * (1 + 2 * i_in) * t**2 / 2 + i_hid * t**3 / 3
            J = np.exp(Tf + t) * (i_in + 2 * poly)
            f1 = chi * c0 * (np.exp(Tf) * (i_in + i_hid * Tf) + i_out * np.exp(Tf))
        else:
            J = np.exp(Tf + t) * (i_in + 2 * i_hid * ((i_in - 1) * (1 - np.exp(-t)) + t))
            f1 = chi * c0 * (i_in + i_hid * (np.exp(Tf) - 1) + i_out * np.exp(Tf))
        H0 = cab[None] * np.exp(t)[:, None, None]
        H1 = H0 + chi**2 * J[:, None, None] * cc[None]
        G0 = np.exp(Tf - t)
    return LinearOneStep(
        t=t, H0=H0, H1=H1, G0=G0, f1=f1, chi=chi, depth=depth, T=Tf, backward=backward, frozen=frozen
    )


def paper_eq93(tau, *, eta_gamma: float, y: float = 1.0, H_at_0: float = 1.0) -> np.ndarray:
    """The kernel after one step exactly as printed in the depthwise-transfer paper, Eq. 93
    (T = 1, hidden weights trained), kept only to document its errors; see the module docstring.

    H(τ) = e^τ H(0) + 2 η₀²γ₀² e^τ [τ³/3 + τ²/2 + (1 + e^{−1})(τ² e^τ − τ e^τ + e^τ − 1)]
    (the printed formula has no y; ``y`` is unused and kept for a like-for-like call).
    """
    tau = np.asarray(tau, np.float64)
    e1 = np.exp(-1.0)
    brk = tau**3 / 3 + tau**2 / 2 + (1 + e1) * (tau**2 * np.exp(tau) - tau * np.exp(tau) + np.exp(tau) - 1)
    return np.exp(tau) * H_at_0 + 2 * eta_gamma**2 * np.exp(tau) * brk
