"""Definition E.1 (Tensor Programs VI, App. E): the Γ/C recursion of the mean-subtracted block.

* identity φ: the nonlinear recursion is the linear one (Lemma C.1 / Prop. C.2) to 1e-12;
* the L = ∞ grid solver's order in the grid size (derived 2 for smooth V[K]; measured);
* the depth-L recursion's kernel at initialisation (exact at every L) against finite networks of
  growing width, extrapolated in 1/n, within 4 combined standard errors;
* the t = 0 kernel of the recursion against a direct iteration of K^{l+1} = K^l + τ V_{φ_c}[K^l];
* bad input refused before any compute, naming the argument.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd.limits import solve_gamma_c, solve_gamma_c_infinite
from nfd.limits._gamma_c_nonlinear import centred_pair, gaussian_mean, solve_gamma_c_nonlinear
from nfd.limits._gamma_c_nonlinear_infinite import solve_gamma_c_nonlinear_infinite


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


XI = np.array([[1.0], [-0.7], [0.5]])
YI = np.array([0.8, -0.5, 0.3])


@pytest.mark.parametrize("frozen", [("input", "output"), ()])
def test_identity_reduces_to_linear_recursion_finite_depth(x64, frozen):
    a = solve_gamma_c(XI, YI, depth=6, lr=0.5, frozen=frozen)
    b = nfd.solve(XI, YI, depth=6, lr=0.5, frozen=frozen, activation="identity", method="gamma_c", block="post_ms")
    assert b.config["block"] == "post_ms"
    # identity: V_{φ_c}[K] = K, V_{φ'} = 1, E φ = 0 exactly, so the arithmetic is the same
    for name in ("outputs", "feature_cov", "grad_cov"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=1e-12, rtol=0)
    assert np.ptp(a.outputs) > 1e-2  # the check is not 0 ≈ 0


@pytest.mark.parametrize("frozen", [("input", "output"), ()])
def test_identity_reduces_to_linear_recursion_infinite_grid(x64, frozen):
    a = solve_gamma_c_infinite(XI, YI, grid=8, lr=0.5, frozen=frozen)
    b = nfd.solve(XI, YI, grid=8, lr=0.5, frozen=frozen, activation="identity", method="gamma_c", block="post_ms")
    for name in ("outputs", "feature_cov", "grad_cov"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=1e-12, rtol=0)


def test_gaussian_means_closed_form_vs_quadrature(x64):
    a = jnp.asarray([0.3, 1.0, 4.0])
    # smooth φ: 160-node Gauss–Hermite is exact to round-off; the closed forms are exact
    for name in ("tanh", "sigmoid", "erf"):
        act = nfd.get_activation(name)
        np.testing.assert_allclose(gaussian_mean(act, a, method="quadrature"), gaussian_mean(act, a), atol=1e-12)
    relu = nfd.get_activation("relu")
    np.testing.assert_allclose(gaussian_mean(relu, a), np.sqrt(np.asarray(a) / (2 * np.pi)), rtol=1e-14)
    # V_{φ_c} of ReLU at ρ = 1: Var relu(z) = a/2 − a/(2π)
    np.testing.assert_allclose(centred_pair(relu, a, a, a), np.asarray(a) * (0.5 - 1 / (2 * np.pi)), rtol=1e-12)


def _finite_kernel(activation, depth, widths, seeds, X):
    """⟨h_L(x_s), h_L(x_t)⟩/n at initialisation (lr = 0), seed means and standard errors."""
    K = X.shape[0]
    means, ses = [], []
    for n in map(int, widths):
        r = nfd.simulate(X, np.zeros(K), width=n, depth=depth, activation=activation, lr=0.0, block="post_ms",
                         seeds=seeds, dtype=jnp.float64, record=("features",), seed=7)
        hL = r.features[:, :, -1, :]  # (seeds, K, n): step t's input at the initial weights
        k = np.einsum("zsi,zti->zst", hL, hL) / n
        means.append(k.mean(0))
        ses.append(k.std(0, ddof=1) / np.sqrt(seeds))
    return np.asarray(means), np.asarray(ses)


@pytest.mark.slow  # ≈ 1 min each here (three widths compiled)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_initial_kernel_matches_finite_networks_extrapolated_in_width(x64, activation):
    """At t = 0 the depth-L recursion is exact: K^l = K^{l-1} + τ V_{φ_c}[K^{l-1}] (the MS makes
    the increments centred).  Finite networks at n = 64, 128, 256 (64 seeds each) are fitted with
    a + b/n per kernel entry (weighted least squares); |a − recursion| ≤ 4 standard errors of a."""
    X = np.array([[1.0, 0.3], [-0.6, 0.9], [0.4, -1.1]])
    L = 4
    rec = solve_gamma_c_nonlinear(X, np.zeros(3), depth=L, activation=activation, lr=0.0).feature_cov
    widths = np.array([64, 128, 256])
    m, se = _finite_kernel(activation, L, widths, 64, X)
    A = np.stack([np.ones(3), 1.0 / widths], axis=1)
    for s in range(3):
        for t in range(s, 3):
            w = 1.0 / se[:, s, t] ** 2
            cov = np.linalg.inv(A.T @ (w[:, None] * A))
            a = cov @ (A.T @ (w * m[:, s, t]))
            assert abs(a[0] - rec[-1, s, t]) <= 4.0 * np.sqrt(cov[0, 0]), (s, t, a, rec[-1, s, t])
    # the check has teeth: the kernel without MS (block 'post' adds E φ each layer for ReLU) or the
    # linear kernel would differ by far more than the standard errors
    lin = solve_gamma_c(X, np.zeros(3), depth=L, lr=0.0).feature_cov[-1]
    assert np.max(np.abs(lin - rec[-1])) > 10 * se[-1].max()


def _orders(solver, grids, **kw):
    out = [solver(grid=N, **kw) for N in grids]
    d = [max(np.max(np.abs(b.outputs - a.outputs)), np.max(np.abs(b.output_kernel - a.output_kernel)))
         for a, b in zip(out, out[1:])]
    return [float(np.log2(d[i] / d[i + 1])) for i in range(len(d) - 1)], d


@pytest.mark.slow
@pytest.mark.parametrize("activation, X", [
    ("tanh", 1.5 * np.array([[1.0], [-0.7], [0.5], [1.2]])),
    # ReLU: V_{φ'} = (π − arccos ρ)/2π is not smooth at ρ = ±1, and with d = 1 every pair of inputs
    # starts at ρ = ±1 (x^0 = Uξ), which makes the solution ∝ √p near p = 0 and the order 3/2 there;
    # with non-collinear inputs |ρ| < 1 and the derived order is 2.
    ("relu", np.array([[1.0, 0.3], [-0.6, 0.9], [0.4, -1.1], [1.2, 0.5]])),
])
def test_infinite_grid_solver_is_second_order(x64, activation, X):
    """Successive differences on N = 8, 16, 32, 64 decay as N^-p; Heun + midpoint rule on smooth
    coefficients gives p = 2; we require the measured local order ≥ 1.8 on the finest pair."""
    Y = np.array([0.8, -0.5, 0.3, -1.0])
    orders, d = _orders(solve_gamma_c_nonlinear_infinite, [8, 16, 32, 64], X=X, Y=Y, activation=activation, lr=1.0)
    assert orders[-1] >= 1.8, (orders, d)


def test_bad_input_is_refused_before_compute(x64):
    bad = nfd.Activation("nanact", lambda x: jnp.log(-jnp.abs(x) - 1.0), lambda x: jnp.zeros_like(x))
    with pytest.raises(ValueError, match="activation"):
        nfd.solve(XI, YI, depth=4, activation=bad, method="gamma_c", block="post_ms")
    with pytest.raises(ValueError, match="activation"):
        nfd.solve(XI, YI, grid=8, activation="no_such", method="gamma_c", block="post_ms")
    with pytest.raises(ValueError, match="parameterization"):
        nfd.solve(XI, YI, depth=4, activation="tanh", method="gamma_c", block="post_ms", parameterization="ntk")
    with pytest.raises(ValueError, match="parameterization"):
        solve_gamma_c_nonlinear_infinite(XI, YI, grid=8, parameterization="mup")
    with pytest.raises(ValueError, match="block"):
        nfd.solve(XI, YI, depth=4, activation="tanh", method="gamma_c", block="two_layer")
    with pytest.raises(ValueError, match="block"):
        solve_gamma_c_nonlinear(XI, YI, depth=4, block="post")
    with pytest.raises(ValueError, match="block"):
        nfd.solve(XI, YI, depth=4, particles=64, method="particles", block="two_layer")
    with pytest.raises(ValueError, match="backward"):  # the particle post_ms block is exact-mode only
        nfd.solve(XI, YI, depth=4, particles=64, method="particles", block="post_ms", backward="gia")
    with pytest.raises(ValueError, match="depth/grid"):
        nfd.solve(XI, YI, depth=4, grid=8, method="gamma_c", block="post_ms")
    with pytest.raises(ValueError, match="grid"):
        nfd.solve(XI, YI, grid=2, method="gamma_c", block="post_ms")
    with pytest.raises(ValueError, match="activation"):  # the linear solver points to post_ms
        nfd.solve(XI, YI, depth=4, activation="tanh", method="gamma_c")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_initial_kernel_equals_direct_kernel_recursion(x64, activation):
    """At lr = 0 the Γ/C bookkeeping must reproduce K^{l+1} = K^l + τ V_{φ_c}[K^l], iterated here
    directly on the (K, K) matrix (no Γ tensors).  The recursion evaluates entry (t, s), s < t,
    as V(K_tt, K_ss, K_ts) (later step first) — the 2-D Gauss–Hermite rule of tanh is not exactly
    symmetric in its arguments (differences ~1e-10) — so the direct iteration uses the same
    order (lower triangle, mirrored); then both are float64 sums of the same terms: 1e-12."""
    X = np.array([[1.0, 0.3], [-0.6, 0.9], [0.4, -1.1]])
    L = 5
    rec = solve_gamma_c_nonlinear(X, np.zeros(3), depth=L, activation=activation, lr=0.0).feature_cov
    act = nfd.get_activation(activation)
    Kl = X @ X.T / 2
    for layer in range(L + 1):
        np.testing.assert_allclose(rec[layer], Kl, atol=1e-12, rtol=0)
        d = np.diag(Kl)
        V = np.tril(np.asarray(centred_pair(act, d[:, None], d[None, :], Kl)))
        Kl = Kl + (V + np.tril(V, -1).T) / L
