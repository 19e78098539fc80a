"""Lazy-limit (kernel-regime) DMFT: feature/gradient kernels, the infinite-depth NTK and the
predictor dynamics (depthwise-transfer paper, Appendix G.1, in the nfd parameterisation).

Network (``parameterization="ntk"`` of :class:`~nfd.ResNet`): h_0 = U x/√d,
h_ℓ = h_{ℓ-1} + √(τ/n) W_ℓ φ(h_{ℓ-1}), f = vᵀh_L/√n (α = 1), SGD rate η_c on each trained
group.  As n → ∞ the features stay at their initial values (lazy training) and, with
Φ = E[φ(h)φ(h̄)], Φ' = E[φ'(h)φ'(h̄)] under (h, h̄) ~ N(0, H):

    dH/dt = Φ(H),            H(0) = X X2ᵀ/d                      (forward, Eq. 79)
    dG/dt = −Φ'(H) G,        G(T) = 1                            (backward, Eq. 80)
    K = η_out H(T) + η_in (X X2ᵀ/d) G(0) + η_hid ∫_0^T G(t) Φ(t) dt  (NTK, Eq. 81 + App. K.3)

(G = ⟨g g'⟩ with g = √n ∂f/∂h; the gradient-independence step is exact at initialisation
because v is zero-mean and independent.)  We solve it in one forward pass: with
A(t) = ∫_0^t Φ', G(t) = exp(A(T) − A(t)) and ∫ G Φ = exp(A(T)) ∫_0^T exp(−A) Φ dt.

At finite depth L the exact infinite-width recursion is H_ℓ = H_{ℓ-1} + τ Φ_{ℓ-1},
G_{ℓ-1} = G_ℓ (1 + τ Φ'_{ℓ-1}), K_hid = τ Σ_{ℓ=1}^L G_ℓ Φ_{ℓ-1}.

Full-batch gradient descent with mean-squared error ½(f − y)² averaged over a batch of B
samples gives, for the residual r_k = f_k − y on the training set,

    r_{k+1} = (I − K/B) r_k,    f_test,k+1 = f_test,k − K_test,train r_k / B,

(gradient flow: r(t) = exp(−K t/B) r_0), and f_0 is the NNGP Gaussian process N(0, H(T)).
"""

from __future__ import annotations

import dataclasses
import functools

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._divergence import Divergence, report
from .._model import ResNet
from ._common import (
    check_activation,
    check_depth,
    check_inputs,
    check_T,
    default_tols,
    diag_pair,
    dpair,
    memory_guard,
    pair,
)

__all__ = ["LazyKernels", "lazy_kernels", "LazyDynamics", "lazy_dynamics"]


@dataclasses.dataclass(frozen=True)
class LazyKernels:
    """Kernels of the lazy limit between inputs X (N rows) and X2 (N2 rows), numpy (N, N2).

    Attributes:
        nngp: H(T) = C_T, the NNGP kernel (also the output-layer NTK contribution).
        input: (X X2ᵀ/d) G(0), the read-in contribution to the NTK.
        hidden: ∫_0^T G Φ dt (or τ Σ_ℓ G_ℓ Φ_{ℓ-1} at finite depth), the hidden-layer part.
        grad_at_input: G(0), the gradient kernel at layer-time 0.
        T, depth: the horizon and depth (``None`` for L → ∞).
    """

    nngp: np.ndarray
    input: np.ndarray
    hidden: np.ndarray
    grad_at_input: np.ndarray
    T: float
    depth: int | None

    def ntk(self, lr_input: float = 1.0, lr_hidden: float = 1.0, lr_output: float = 1.0) -> np.ndarray:
        """The NTK weighted by per-group learning rates (0 for a frozen group)."""
        return lr_output * self.nngp + lr_input * self.input + lr_hidden * self.hidden


def _rhs(act, s):
    d1, d2, H, A, J = s
    Phi = pair(act, d1[:, None], d2[None, :], H)
    dPhi = dpair(act, d1[:, None], d2[None, :], H)
    return (diag_pair(act, d1), diag_pair(act, d2), Phi, dPhi, jnp.exp(-A) * Phi)


def _init(X, X2):
    d = X.shape[1]
    C0 = X @ X2.T / d
    z = jnp.zeros_like(C0)
    return (jnp.sum(X * X, 1) / d, jnp.sum(X2 * X2, 1) / d, C0, z, z), C0


@functools.partial(jax.jit, static_argnames=("act", "max_steps"))
def _lazy_ode(X, X2, T, rtol, atol, *, act, max_steps):
    y0, C0 = _init(X, X2)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: _rhs(act, y)),
        diffrax.Tsit5(),
        t0=jnp.zeros((), X.dtype),
        t1=T,
        dt0=None,
        y0=y0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
    )
    _, _, H, A, J = (y[-1] for y in sol.ys)
    G0 = jnp.exp(A)
    return H, C0 * G0, G0 * J, G0


@functools.partial(jax.jit, static_argnames=("act",))
def _lazy_layers(X, X2, T, depth, *, act):
    tau = T / depth
    (d1, d2, H, _, _), C0 = _init(X, X2)

    def body(_, s):
        d1, d2, H, P, S = s
        Phi = pair(act, d1[:, None], d2[None, :], H)
        P1 = P * (1.0 + tau * dpair(act, d1[:, None], d2[None, :], H))
        return (d1 + tau * diag_pair(act, d1), d2 + tau * diag_pair(act, d2), H + tau * Phi, P1, S + tau * Phi / P1)

    one = jnp.ones_like(H)
    _, _, H, P, S = jax.lax.fori_loop(0, depth, body, (d1, d2, H, one, jnp.zeros_like(H)))
    return H, C0 * P, P * S, P


def lazy_kernels(
    X,
    X2=None,
    *,
    activation,
    T: float = 1.0,
    depth: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 16384,
    max_memory: int | None = None,
) -> LazyKernels:
    """NNGP kernel, gradient kernel and NTK pieces of the lazy (α = 1) ResNet limit.

    Args:
        X: (N, d) inputs; X2: (N2, d) or ``None`` (= X).
        activation: name or :class:`~nfd.Activation`.
        T: time horizon.  depth: ``None`` for L → ∞ (diffrax ODE), or the depth L of the
            exact infinite-width layer recursion.
        rtol, atol, max_steps, max_memory: as in :func:`nfd.nngp_kernel`.

    Returns:
        :class:`LazyKernels`; ``.ntk()`` is the NTK with every group trained at rate 1.

    Example:
        >>> import numpy as np
        >>> X = np.eye(2)
        >>> k = lazy_kernels(X, activation="identity", T=1.0)
        >>> bool(np.allclose(k.ntk(), (2 + 1.0) * np.e * X @ X.T / 2, rtol=1e-4))  # (2+T)e^T XXᵀ/d
        True
    """
    act = check_activation(activation)
    Tf = check_T(T)
    depth = check_depth(depth)
    X, X2_ = check_inputs(X, X2)
    sym = X2_ is None
    X2_ = X if sym else X2_
    memory_guard(X.shape[0], X2_.shape[0], 3, X.dtype, what="lazy_kernels", max_memory=max_memory)
    Tj = jnp.asarray(Tf, X.dtype)
    if depth is None:
        r0, a0 = default_tols(X.dtype)
        out = _lazy_ode(
            X, X2_, Tj, r0 if rtol is None else float(rtol), a0 if atol is None else float(atol),
            act=act, max_steps=int(max_steps),
        )
    else:
        out = _lazy_layers(X, X2_, Tj, jnp.asarray(depth, jnp.int32), act=act)
    out = [np.asarray(o) for o in out]
    if not all(np.all(np.isfinite(o)) for o in out):
        report(Divergence(step=None), what="lazy_kernels", quantity="NTK")
    if sym:
        out = [0.5 * (o + o.T) for o in out]
    H, Kin, Khid, G0 = out
    return LazyKernels(nngp=H, input=Kin, hidden=Khid, grad_at_input=G0, T=Tf, depth=depth)


@dataclasses.dataclass(frozen=True)
class LazyDynamics:
    """Predictor dynamics of the lazy limit under full-batch GD (or gradient flow).

    Shapes: N training points, M test points, S saved steps.  Expectations are over the random
    initialisation (f_0 is the NNGP Gaussian process), so they compare with seed averages of
    finite networks.

    Attributes:
        times: (S,) step indices k (GD) or times t (flow) of the saved predictions.
        mean: (S, N) E[f_k] on the training inputs.
        var: (S, N) Var[f_k] on the training inputs.
        test_mean, test_var: (S, M) the same on the test inputs (``None`` without X_test).
        ntk: (N, N) the effective NTK (learning rates folded in); ntk_test: (M, N).
        nngp: (N, N) H(T) on the training inputs; nngp_test: (M, N); nngp_test_diag: (M,).
        kernels: the :class:`LazyKernels` of train ∪ test.
        batch: B, the number of samples the loss averages over.
        Y: (N,) targets.
        flow: True for gradient flow.
    """

    times: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    test_mean: np.ndarray | None
    test_var: np.ndarray | None
    ntk: np.ndarray
    ntk_test: np.ndarray | None
    nngp: np.ndarray
    nngp_test: np.ndarray | None
    nngp_test_diag: np.ndarray | None
    kernels: LazyKernels
    batch: int
    Y: np.ndarray
    flow: bool

    def _propagators(self):
        """P[s] = (I − K/B)^k (or exp(−Kt/B)); Q[s] = Σ_{j<k} (I − K/B)^j / B (or ∫_0^t)."""
        K = 0.5 * (self.ntk + self.ntk.T)
        lam, V = np.linalg.eigh(K)
        B = self.batch
        Ps, Qs = [], []
        for t in self.times:
            if self.flow:
                p = np.exp(-lam * t / B)
                q = np.where(np.abs(lam) > 1e-14 * max(1.0, np.abs(lam).max()),
                             -np.expm1(-lam * t / B) / np.where(lam == 0, 1.0, lam), t / B)
            else:
                a = 1.0 - lam / B
                k = int(t)
                p = a**k
                q = np.where(np.abs(lam) > 1e-14 * max(1.0, np.abs(lam).max()),
                             (1.0 - a**k) / np.where(lam == 0, 1.0, lam), k / B)
            Ps.append((V * p) @ V.T)
            Qs.append((V * q) @ V.T)
        return np.array(Ps), np.array(Qs)

    def conditional(self, f0, f0_test=None):
        """Trajectories given the initial outputs of one network.

        Args:
            f0: (..., N) initial outputs on the training inputs (e.g. per seed).
            f0_test: (..., M) initial outputs on the test inputs.

        Returns:
            (f (..., S, N), f_test (..., S, M) or ``None``): the lazy-limit prediction
            f_k = y + P_k (f_0 − y), f_test,k = f_test,0 − K_test Q_k (f_0 − y).
        """
        f0 = np.asarray(f0, np.float64)
        P, Q = self._propagators()
        r0 = f0 - self.Y
        f = self.Y + np.einsum("sij,...j->...si", P, r0)
        ft = None
        if f0_test is not None:
            if self.ntk_test is None:
                raise ValueError("f0_test given but the dynamics were computed without X_test")
            ft = np.asarray(f0_test, np.float64)[..., None, :] - np.einsum(
                "mi,sij,...j->...sm", self.ntk_test, Q, r0
            )
        return f, ft


def _check_nonneg(name, v):
    v = float(v)
    if not (v >= 0 and np.isfinite(v)):
        raise ValueError(f"{name} must be a non-negative finite number, got {v!r}")
    return v


def lazy_dynamics(
    X,
    Y,
    *,
    activation,
    lr: float,
    steps: int | None = None,
    times=None,
    T: float = 1.0,
    depth: int | None = None,
    frozen: tuple[str, ...] = (),
    X_test=None,
    batch_size: int | None = None,
    flow: bool = False,
    **kernel_kw,
) -> LazyDynamics:
    """Mean and variance of the lazy-limit predictor trained by full-batch GD on (X, Y).

    Matches ``nfd.simulate(np.tile(X, (steps, 1)), np.tile(Y, steps), parameterization="ntk",
    batch_size=N, lr=lr, ...)`` as the width grows: there ``outputs[:, k*N:(k+1)*N]`` is f_k.

    Args:
        X: (N, d) training inputs; Y: (N,) targets (MSE loss).
        activation: name or :class:`~nfd.Activation`.
        lr: η_c, the SGD rate of every trained group (``parameterization="ntk"``).
        steps: number of GD steps (saves k = 0..steps−1) — or give ``times`` instead (the
            saved step indices, or real times with ``flow=True``).
        T, depth: horizon and depth (``None`` = L → ∞).
        frozen: groups not trained, from ``("input", "hidden", "output")``.
        X_test: (M, d) inputs to predict at (never trained on).
        batch_size: B, the number of samples the MSE averages over (default N, full batch).
        flow: gradient flow df/dt = −(η/B) K (f − y) instead of discrete GD.

    Returns:
        :class:`LazyDynamics`.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> dyn = lazy_dynamics(X, Y, activation="relu", lr=0.5, steps=50)
        >>> bool(np.abs(dyn.mean[-1] - Y).max() < np.abs(Y).max())
        True
    """
    act = check_activation(activation)
    Xj, Xt = check_inputs(X, X_test, name="X", name2="X_test")
    N, d = Xj.shape
    Y = np.asarray(Y, np.float64)
    if Y.shape != (N,) or not np.all(np.isfinite(Y)):
        raise ValueError(f"Y must be a finite array of shape ({N},), got shape {Y.shape}")
    lr = _check_nonneg("lr", lr)
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (GD steps 0..steps-1) and times")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        times = np.arange(int(steps), dtype=np.float64)
    else:
        times = np.asarray(times, np.float64)
        if times.ndim != 1 or times.size == 0 or np.any(times < 0) or not np.all(np.isfinite(times)):
            raise ValueError("times must be a non-empty 1-D array of non-negative finite numbers")
        if not flow and np.any(times != np.round(times)):
            raise ValueError("times must be integer step indices unless flow=True")
    B = N if batch_size is None else batch_size
    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    net = ResNet(
        depth=depth if depth is not None else 1, input_dim=d, width=None, activation=act, T=T,
        parameterization="ntk", lr=lr, frozen=frozen,
    )
    Xall = Xj if Xt is None else jnp.concatenate([Xj, Xt], axis=0)
    ker = lazy_kernels(Xall, activation=act, T=T, depth=depth, **kernel_kw)
    Kfull = ker.ntk(net.lr_input, net.lr_hidden, net.lr_output)
    H = ker.nngp
    K, H_tr = Kfull[:N, :N], H[:N, :N]
    dyn = LazyDynamics(
        times=times, mean=None, var=None, test_mean=None, test_var=None, ntk=K,
        ntk_test=None if Xt is None else Kfull[N:, :N], nngp=H_tr,
        nngp_test=None if Xt is None else H[N:, :N], nngp_test_diag=None if Xt is None else np.diag(H)[N:],
        kernels=ker, batch=int(B), Y=Y, flow=bool(flow),
    )
    with np.errstate(over="ignore", invalid="ignore"):
        P, Q = dyn._propagators()
        mean = Y - P @ Y
        var = np.einsum("sij,jk,sik->si", P, H_tr, P)
        test_mean = test_var = None
        if Xt is not None:
            W = np.einsum("mi,sij->smj", dyn.ntk_test, Q)  # f_test,k = f_test,0 − W_k r_0
            test_mean = W @ Y
            Hx = dyn.nngp_test
            test_var = (
                dyn.nngp_test_diag[None]
                - 2 * np.einsum("smj,mj->sm", W, Hx)
                + np.einsum("smi,ij,smj->sm", W, H_tr, W)
            )
    if not (np.all(np.isfinite(mean)) and np.all(np.abs(mean) < 1e300)):
        bad = int(np.argmax(~np.all(np.isfinite(mean), axis=1)))
        report(Divergence(step=int(times[bad])), what="lazy_dynamics", quantity="lazy predictor",
               hint=f"lr={lr} exceeds 2B/λ_max(K) = {2 * B / np.linalg.eigvalsh(K)[-1]:.4g}")
    return dataclasses.replace(dyn, mean=mean, var=var, test_mean=test_mean, test_var=test_var)
