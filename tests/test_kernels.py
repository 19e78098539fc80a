"""NNGP kernel of the infinite-depth ResNet (NFD Proposition 3) and the Prop. 4/5 checks."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import linregress

import nfd
from nfd.kernels import (
    gp_posterior,
    kernel_regression,
    min_eigenvalue_path,
    nngp_kernel,
    nngp_kernel_path,
    rkhs_norm,
    rkhs_norm_path,
)


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(6, 3))


TS = [0.25, 0.5, 1.0, 2.0, 4.0]  # one shared time grid: one compilation per activation


def _sphere(N, d, seed):
    Z = np.random.default_rng(seed).normal(size=(N, d))
    return np.sqrt(d) * Z / np.linalg.norm(Z, axis=1, keepdims=True)  # |x|²/d = 1


def test_public_name():
    assert nfd.nngp_kernel is nngp_kernel


@pytest.mark.usefixtures("x64")  # float64 ODE tolerances (rtol 1e-7)
def test_identity_closed_form(X):
    # φ = identity: dC/dt = C, so C_T = e^T X Xᵀ/d exactly.
    for T in (0.5, 2.0):
        C = nngp_kernel(X, activation="identity", T=T)
        np.testing.assert_allclose(C, np.exp(T) * X @ X.T / 3, rtol=1e-7)


@pytest.mark.usefixtures("x64")  # rtol 1e-7 is below float32's resolution (it failed at XLA's default optimisation)
def test_relu_diagonal_closed_form(X):
    # ReLU: E[relu(h)²] = q/2, so the diagonal is q_0 e^{T/2}; the off-diagonal is tied to it by the
    # arc-cosine formula, which we check against an independent quadrature run below.
    C = nngp_kernel(X, X[:2], activation="relu", T=1.5)
    q0 = np.sum(X * X, 1) / 3
    np.testing.assert_allclose(np.diag(C[:2, :2]), q0[:2] * np.exp(0.75), rtol=1e-7)
    assert C.shape == (6, 2)


@pytest.mark.slow
def test_closed_form_and_quadrature_agree():
    X = _sphere(6, 3, 0)
    # The same ODE with E[φφ] by 2-D Gauss–Hermite quadrature must reproduce the closed-form arcsine
    # kernel. With 96² nodes the rule's error for erf is ≤ 1e-8 at variances ≤ 3 (measured against the
    # closed form; here q ≤ q_0 + T·sup E[erf²] ≤ 2), and the ODE (Lipschitz constant ≈ 1 in C, T = 1)
    # amplifies it by at most T·e^T < 3, so rtol = 1e-6 has a 30× margin.
    erf = nfd.get_activation("erf")
    erf_q = dataclasses.replace(
        erf, name="erf-quadrature", pair_closed_form=None, dpair_closed_form=None, quadrature_order=96
    )
    C1 = nngp_kernel(X, activation=erf, T=1.0)
    C2 = nngp_kernel(X, activation=erf_q, T=1.0)
    np.testing.assert_allclose(C2, C1, rtol=1e-6, atol=1e-9)


@pytest.mark.usefixtures("x64")  # float64 ODE tolerances (rtol 1e-7)
def test_cross_kernel_is_block_of_joint(X):
    # Closed-form ReLU: the cross kernel must equal the block of the joint Gram matrix up to the
    # ODE tolerance (rtol 1e-9 per step, ×e^T globally).
    C = nngp_kernel(X, activation="relu", T=1.0)
    C12 = nngp_kernel(X, X[:2], activation="relu", T=1.0)
    np.testing.assert_allclose(C12, C[:, :2], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(C, C.T)


@pytest.mark.slow
@pytest.mark.usefixtures("x64")  # rtol 1e-12 / 1e-7 are float64 round-off and ODE-tolerance bounds
def test_path_matches_single_solves(X):
    ts = [0.0, 0.7, 1.3]
    Cs = nngp_kernel_path(X, activation="relu", ts=ts)
    np.testing.assert_allclose(Cs[0], X @ X.T / 3, rtol=1e-12)
    for t, C in zip(ts[1:], Cs[1:]):
        np.testing.assert_allclose(C, nngp_kernel(X, activation="relu", T=t), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("activation", ["relu", "erf", pytest.param("tanh", marks=pytest.mark.slow)])
def test_depth_recursion_converges_at_rate_one_over_L(X, activation):
    # The depth-L recursion is the explicit Euler scheme of the ODE: global error ∝ 1/L. The fitted
    # log-log slope must be the scheme's order, -1 (band ±0.1 covers the O(1/L²) remainder at L ≥ 16).
    C = nngp_kernel(X, activation=activation, T=1.0)
    Ls = np.array([16, 32, 64, 128, 256])
    err = [np.abs(nngp_kernel(X, activation=activation, T=1.0, depth=int(L)) - C).max() for L in Ls]
    fit = linregress(np.log(Ls), np.log(err))
    assert abs(fit.slope + 1.0) < 0.1, fit.slope


@pytest.mark.usefixtures("x64")  # float64 reference
def test_depth_recursion_matches_finite_networks():
    # Finite networks with lr = 0 are forward passes at initialisation: record h_L for each input and
    # compare the seed average of ⟨h_L(a), h_L(b)⟩/n with the infinite-width depth-L recursion.
    # Tolerance: 4 standard errors of the 16-seed mean, plus 2/n for the O(1/n) finite-width bias
    # of E[φ(ĥ)φ(ĥ')] (ĥ has a fluctuating, not a fixed, covariance at finite width).
    Xp = _sphere(4, 3, 1)
    n, L, S = 128, 4, 16
    res = nfd.simulate(
        Xp, np.zeros(4), width=n, depth=L, activation="relu", lr=0.0, parameterization="ntk",
        seeds=S, record=("features",), dtype=jnp.float64,
    )
    h = res.features[:, :, -1, :]  # (S, 4, n)
    k = np.einsum("sin,sjn->sij", h, h) / n
    mean, se = k.mean(0), k.std(0, ddof=1) / np.sqrt(S)
    C = nngp_kernel(Xp, activation="relu", T=1.0, depth=L)
    assert np.all(np.abs(mean - C) <= 4 * se + 2.0 / n), (mean - C) / se


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_prop4_smallest_eigenvalue_positive_and_growing():
    # Distinct points on the sphere, N > d: for non-polynomial φ, λ_min(C_t) > 0 for t > 0 and,
    # since C_t − C_s is a PSD kernel, λ_min is non-decreasing in t. For φ = identity C_t = e^t XXᵀ/d
    # has rank d < N: its N−d smallest eigenvalues stay at round-off level.
    Xs = _sphere(6, 3, 2)
    ts = TS
    for act in ("relu",):
        lam = min_eigenvalue_path(Xs, activation=act, ts=ts)
        assert np.all(lam > 1e-6), (act, lam)
        assert np.all(np.diff(lam) > 0), (act, lam)
    Cs = nngp_kernel_path(Xs, activation="identity", ts=ts)
    for C in Cs:
        ev = np.linalg.eigvalsh(C)
        assert np.all(np.abs(ev[:-3]) < 1e-10 * ev[-1])


def test_prop5_rkhs_norms_decrease_and_kernel_differences_are_psd():
    Xs = _sphere(6, 3, 3)
    y = np.sin(Xs[:, 0]) + Xs[:, 1] * Xs[:, 2]
    ts = TS
    norms = rkhs_norm_path(Xs, y, activation="relu", ts=ts)
    assert np.all(np.diff(norms) < 0), norms
    Cs = nngp_kernel_path(Xs, activation="relu", ts=ts)
    for a, b in zip(Cs[:-1], Cs[1:]):
        # Paulsen–Raghupathi: containment ⇔ C_t − C_s is a kernel (PSD), up to round-off.
        assert np.linalg.eigvalsh(b - a)[0] > -1e-10 * np.abs(b).max()


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_gp_posterior_against_sklearn_kernel_ridge():
    from sklearn.kernel_ridge import KernelRidge

    Xs = _sphere(4, 3, 4)
    Y = np.cos(Xs[:, 0])
    Xt = _sphere(2, 3, 5)
    Xall = np.concatenate([Xs, Xt])  # (6, 3): the shape the other tests compile for
    C = nngp_kernel(Xall, activation="erf", T=1.0)
    post = gp_posterior(C[:4, :4], Y, C[4:, :4], np.diag(C)[4:], noise=0.1)
    kr = KernelRidge(alpha=0.1, kernel="precomputed").fit(C[:4, :4], Y)
    np.testing.assert_allclose(post.mean, kr.predict(C[4:, :4]), rtol=1e-8)
    assert np.all(post.var > 0) and np.all(post.var < np.diag(C)[4:])
    # The convenience call does the same.
    post2 = kernel_regression(Xs, Y, Xt, activation="erf", T=1.0, noise=0.1)
    np.testing.assert_allclose(post2.mean, post.mean, rtol=1e-8)


@pytest.mark.slow
def test_noiseless_regression_interpolates():
    Xs = _sphere(8, 3, 6)
    Y = Xs[:, 0] ** 2
    post = kernel_regression(Xs, Y, Xs, activation="relu", noise=0.0)
    np.testing.assert_allclose(post.mean, Y, atol=1e-8)
    np.testing.assert_allclose(post.var, 0.0, atol=1e-8)
    C = nngp_kernel(Xs, activation="relu")
    assert np.isclose(rkhs_norm(C, Y) ** 2, Y @ np.linalg.solve(C, Y))


@pytest.mark.default_config
@pytest.mark.slow
def test_float32_default():
    """In the user's configuration (64-bit off) the kernel is float32 and agrees with the float64
    kernel (64-bit on locally) to float32 round-off: rtol 1e-4 ≈ 800 float32 epsilons, for a
    recursion of a few hundred float32 operations per entry with O(1) condition."""
    import jax

    assert not jax.config.jax_enable_x64
    X32 = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    C = nngp_kernel(X32, activation="relu")
    assert C.dtype == np.float32
    with jax.enable_x64(True):
        ref = nngp_kernel(X32.astype(np.float64), activation="relu")
    assert ref.dtype == np.float64
    np.testing.assert_allclose(C, ref, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(X=np.ones(3)), "X must have shape"),
        (dict(X=np.array([[np.nan, 1.0]])), "NaN"),
        (dict(X=np.ones((2, 2)), X2=np.ones((2, 3))), "X2 has d=3"),
        (dict(X=np.ones((2, 2)), T=-1.0), "T must be"),
        (dict(X=np.ones((2, 2)), depth=0), "depth must be"),
        (dict(X=np.ones((2, 2)), depth=2.5), "depth must be"),
        (dict(X=np.ones((2, 2)), activation="nope"), "activation"),
    ],
)
def test_bad_input(kwargs, match):
    kw = dict(activation="relu")
    kw.update(kwargs)
    X = kw.pop("X")
    X2 = kw.pop("X2", None)
    with pytest.raises(ValueError, match=match):
        nngp_kernel(X, X2, **kw)


def test_bad_ts_and_singular_norm():
    with pytest.raises(ValueError, match="ts must"):
        nngp_kernel_path(np.ones((2, 2)), activation="relu", ts=[1.0, 0.5])
    with pytest.raises(ValueError, match="not numerically positive definite"):
        rkhs_norm(np.ones((3, 3)), np.ones(3))


def test_memory_guard():
    with pytest.raises(nfd.MemoryEstimateError):
        nngp_kernel(np.ones((300, 2)), activation="relu", max_memory=1000)
