"""Gaussian-process posterior / kernel regression with the NNGP kernel, and the checks that
make Propositions 4 and 5 of the NFD paper visible on a finite data set.

* Proposition 4 (strict positive definiteness): for distinct inputs and a non-polynomial φ the
  Gram matrix C_t(X, X) has smallest eigenvalue > 0 for every t > 0; for the identity it has
  rank ≤ d.  Since C_t − C_s = ∫_s^t E[φφ] is a kernel (PSD), λ_min(C_t) is non-decreasing in t.
* Proposition 5 (nested RKHS): H_s is contractively contained in H_t for s ≤ t, i.e. RKHS norms
  shrink as t grows.  On a finite set Z the smallest RKHS norm of a function taking the values
  y on Z is √(yᵀ C_t(Z, Z)⁻¹ y); since C_t ⪰ C_s it is non-increasing in t.

All linear algebra runs in float64 numpy (the Gram matrices are small and often ill-conditioned).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from ._common import check_activation, check_inputs
from ._nngp import nngp_kernel, nngp_kernel_path

__all__ = [
    "GPPosterior",
    "gp_posterior",
    "kernel_regression",
    "rkhs_norm",
    "min_eigenvalue_path",
    "rkhs_norm_path",
]


@dataclasses.dataclass(frozen=True)
class GPPosterior:
    """Posterior of a zero-mean GP with observation noise.

    Attributes:
        mean: (M,) posterior mean at the test inputs.
        var: (M,) posterior variance of the latent function, or ``None`` without test diagonal.
        log_marginal_likelihood: log p(Y | X) under the prior plus noise.
    """

    mean: np.ndarray
    var: np.ndarray | None
    log_marginal_likelihood: float


def _check_square(K, name):
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"{name} must be a square (N, N) matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return 0.5 * (K + K.T)


def _check_vec(y, n, name):
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return y


def _cholesky(K, noise, what):
    try:
        return scipy.linalg.cho_factor(K + noise * np.eye(K.shape[0]), lower=True)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{what}: the Gram matrix plus noise={noise} is not numerically positive definite; "
            "pass noise > 0 (e.g. 1e-8 × its trace / N)"
        ) from None


def gp_posterior(K_train, Y, K_cross, K_test_diag=None, *, noise: float = 0.0) -> GPPosterior:
    """GP regression with a given kernel.

    Args:
        K_train: (N, N) prior covariance of the training inputs.
        Y: (N,) observations.
        K_cross: (M, N) covariance between test and training inputs.
        K_test_diag: (M,) prior variances at the test inputs (for the posterior variance).
        noise: observation-noise variance σ² ≥ 0 (0 = noiseless interpolation).

    Returns:
        :class:`GPPosterior` with mean K_cross (K_train + σ²I)⁻¹ Y and the latent variance.

    Example:
        >>> import numpy as np
        >>> post = gp_posterior(np.eye(2), np.array([1.0, -1.0]), np.eye(2), np.ones(2), noise=1.0)
        >>> np.round(post.mean, 12).tolist(), np.round(post.var, 12).tolist()
        ([0.5, -0.5], [0.5, 0.5])
    """
    K = _check_square(K_train, "K_train")
    N = K.shape[0]
    Y = _check_vec(Y, N, "Y")
    Kx = np.asarray(K_cross, dtype=np.float64)
    if Kx.ndim != 2 or Kx.shape[1] != N:
        raise ValueError(f"K_cross must have shape (M, {N}), got {Kx.shape}")
    noise = float(noise)
    if not noise >= 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")
    cf = _cholesky(K, noise, "gp_posterior")
    alpha = scipy.linalg.cho_solve(cf, Y)
    mean = Kx @ alpha
    var = None
    if K_test_diag is not None:
        kd = _check_vec(K_test_diag, Kx.shape[0], "K_test_diag")
        V = scipy.linalg.solve_triangular(cf[0], Kx.T, lower=True)
        var = kd - np.sum(V * V, axis=0)
    lml = -0.5 * Y @ alpha - np.sum(np.log(np.diag(cf[0]))) - 0.5 * N * np.log(2 * np.pi)
    return GPPosterior(mean=mean, var=var, log_marginal_likelihood=float(lml))


def kernel_regression(
    X, Y, X_test, *, activation, T: float = 1.0, depth: int | None = None, noise: float = 0.0
) -> GPPosterior:
    """NNGP posterior of the infinite-width ResNet (the Bayesian posterior of its GP limit).

    ``noise = 0`` gives kernel (ridgeless) regression, the interpolant of minimal H_T norm.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(8, 2)); Y = np.sin(X[:, 0])
        >>> post = nfd.kernels.kernel_regression(X, Y, X[:3], activation="relu", noise=1e-6)
        >>> bool(np.allclose(post.mean, Y[:3], atol=1e-3))
        True
    """
    act = check_activation(activation)
    Xj, Xt = check_inputs(X, X_test, name="X", name2="X_test")
    Y = _check_vec(Y, Xj.shape[0], "Y")
    Xall = np.concatenate([np.asarray(Xj), np.asarray(Xt)], axis=0)
    C = nngp_kernel(Xall, activation=act, T=T, depth=depth)
    N = Xj.shape[0]
    return gp_posterior(C[:N, :N], Y, C[N:, :N], np.diag(C)[N:], noise=noise)


def rkhs_norm(K, y, *, jitter: float = 0.0) -> float:
    """√(yᵀ K⁻¹ y): the smallest RKHS norm of a function with values y on the points of K.

    Raises ValueError when K (+ jitter·I) is not numerically positive definite.
    """
    K = _check_square(K, "K")
    y = _check_vec(y, K.shape[0], "y")
    cf = _cholesky(K, float(jitter), "rkhs_norm")
    return float(np.sqrt(max(y @ scipy.linalg.cho_solve(cf, y), 0.0)))


def min_eigenvalue_path(X, *, activation, ts) -> np.ndarray:
    """λ_min(C_t(X, X)) for each t in ``ts`` (shape (S,)); see Proposition 4."""
    Cs = np.asarray(nngp_kernel_path(X, activation=activation, ts=ts), dtype=np.float64)
    return np.array([np.linalg.eigvalsh(0.5 * (C + C.T))[0] for C in Cs])


def rkhs_norm_path(X, y, *, activation, ts, jitter: float = 0.0) -> np.ndarray:
    """√(yᵀ C_t(X, X)⁻¹ y) for each t in ``ts`` (shape (S,)); non-increasing by Proposition 5."""
    Cs = np.asarray(nngp_kernel_path(X, activation=activation, ts=ts), dtype=np.float64)
    return np.array([rkhs_norm(C, y, jitter=jitter) for C in Cs])
