"""Tests of the finite-depth Γ/C recursion (nfd.limits._gamma_c, TP VI Lemma C.1).

Checked against closed forms (step-1 outputs of linear networks, derived below), exact
symmetries, and Monte-Carlo estimates of coupled finite linear networks (nfd.simulate) with
tolerances of Z = 4 standard errors (a false-failure rate of ~6e-5 per Gaussian comparison) of
the n → ∞ extrapolation of seed means at several widths (the finite-width bias is removed by the
1/n fit, not covered by an allowance: see _extrapolate).

Closed forms at step 1 (f̊_0 = 0, χ_0 = −y_0, c = ξ_0 ξ_1, τ = T/L, frozen U and v): the
covariance ⟨x_1^l, x_0^l⟩ = c (1+τ)^l and Γ_{1,0,0,1}(l−1, l) = τ Σ_{l'<l} κ_{l'}, so
κ_l = Γ − η c (1+τ)^{l−1} sums to S_L = −η c L (1+τ)^{L−1} and

    f̊_1 = χ_0 τ S_L = −η χ_0 ξ_0 ξ_1 T (1 + T/L)^{L−1}            (W trained, U, v frozen)
    f̊_1 = −η χ_0 ξ_0 ξ_1 (1 + T/L)^L   per trained group of U, v  (W frozen)
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd.limits._gamma_c import estimate_gamma_c_memory, gamma_c_network, solve_gamma_c

# float64 throughout (round-off comparisons / the Γ/C recursion): 64-bit on for this file only
pytestmark = pytest.mark.usefixtures("x64")

Z = 4.0
# Finite networks are biased: E f_n = f̊ + b/n + O(1/n²) with an unknown b.  Instead of an allowance
# fitted to measured biases, the tests extrapolate in 1/n: a weighted least-squares fit of the seed
# means at several widths to a + b/n, whose intercept a estimates f̊ with a standard error that
# follows from the seed means' standard errors (two widths n, 2n: Richardson, a = 2·m_2n − m_n,
# SE² = 4·SE_2n² + SE_n²).  What the fit leaves out is the O(1/n²) term; it is assumed small next
# to the intercept's standard error at the widths used (n ≥ 256), and a failure here would say so.
X3 = np.array([[1.0], [-0.7], [0.5]])
Y3 = np.array([0.8, -0.5, 0.3])


def _se(a, axis=0):
    return a.std(axis=axis, ddof=1) / math.sqrt(a.shape[axis])


def _extrapolate(widths, means, ses):
    """Weighted least-squares fit of means[i] ≈ a + b/widths[i] (elementwise over the trailing axes,
    weights 1/ses²); returns the intercept a (the n → ∞ estimate) and its standard error."""
    x = 1.0 / np.asarray(widths, float)
    m, w = np.asarray(means), 1.0 / np.asarray(ses) ** 2
    xs = x.reshape((-1,) + (1,) * (m.ndim - 1))
    S, Sx, Sxx = w.sum(0), (w * xs).sum(0), (w * xs**2).sum(0)
    Sy, Sxy = (w * m).sum(0), (w * xs * m).sum(0)
    det = S * Sxx - Sx**2
    return (Sxx * Sy - Sx * Sxy) / det, np.sqrt(Sxx / det)


# ---------------------------------------------------------------------------------------------
# closed forms and exact structure
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1.0, 0.5])
def test_step1_closed_form_hidden_trained(T):
    L, eta = 8, 0.7
    res = solve_gamma_c(X3, Y3, depth=L, lr=eta, T=T)
    chi0 = -Y3[0]
    expected = -eta * chi0 * X3[0, 0] * X3[1, 0] * T * (1 + T / L) ** (L - 1)
    assert res.outputs[0] == 0.0
    np.testing.assert_allclose(res.outputs[1], expected, rtol=1e-12)
    np.testing.assert_allclose(res.chi, res.outputs - Y3, rtol=0, atol=1e-14)


@pytest.mark.parametrize("frozen,groups", [(("hidden",), 2), (("hidden", "output"), 1), (("hidden", "input"), 1)])
def test_step1_closed_form_input_output_trained(frozen, groups):
    L, eta = 8, 0.4
    res = solve_gamma_c(X3, Y3, depth=L, lr=eta, frozen=frozen)
    expected = -groups * eta * (-Y3[0]) * X3[0, 0] * X3[1, 0] * (1 + 1 / L) ** L
    np.testing.assert_allclose(res.outputs[1], expected, rtol=1e-12)


def test_initial_kernel_closed_form():
    # at step 0 every x_0^l is the sum of independent Gaussians: ⟨x_0^l, x_0^l⟩ = ξ_0² (1+τ)^l
    L = 8
    res = solve_gamma_c(X3, Y3, depth=L, lr=1.0)
    np.testing.assert_allclose(res.feature_cov[:, 0, 0], X3[0, 0] ** 2 * (1 + 1 / L) ** np.arange(L + 1), rtol=1e-12)
    # and the backward ⟨δ̃x_0^l, δ̃x_0^l⟩ = χ_0² (1+τ)^{L−l}
    np.testing.assert_allclose(res.grad_cov[:, 0, 0], Y3[0] ** 2 * (1 + 1 / L) ** (L - np.arange(L + 1)), rtol=1e-12)
    np.testing.assert_allclose(res.rms_grads[0], (1 + 1 / L) ** ((L - np.arange(L + 1)) / 2), rtol=1e-12)


def test_gamma_structure_matches_paper():
    # TP VI §C.3: Γ_{s,s,0,0}(l, m) = 1[m ≤ l] and Γ_{s,s,1,1}(l, m) = 1[m ≥ l+1]
    L = 8
    g = solve_gamma_c(X3, Y3, depth=L, lr=1.0, return_gamma=True).gamma
    l = np.arange(L + 1)[:, None]
    m = np.arange(1, L + 1)[None, :]
    for s in range(3):
        np.testing.assert_array_equal(g["x_fwd"][s, :, s, :], (m <= l).astype(float))
        np.testing.assert_array_equal(g["dx_bwd"][s, :, s, :], (m >= l + 1).astype(float))
        # causality: nothing depends on bases of later steps
        assert np.all(g["x_fwd"][s, :, s + 1 :, :] == 0) and np.all(g["x_bwd"][s, :, s:, :] == 0)
    # the output is the nV coefficient of x_t^L (U, v frozen)
    np.testing.assert_allclose(g["x_init"][:, -1, 1], solve_gamma_c(X3, Y3, depth=L, lr=1.0).outputs, rtol=1e-12)


def test_transpose_symmetry():
    # f = ξ vᵀ M U / n is symmetric under (U, W_1..W_L, v) ↔ (v, W_Lᵀ..W_1ᵀ, U) with the same law,
    # so training only U or only v gives the same limit (for |ξ| = 1 inputs both rates agree).
    X = np.array([[1.0], [-1.0], [1.0]])
    a = solve_gamma_c(X, Y3, depth=8, lr=0.3, frozen=("input",)).outputs
    b = solve_gamma_c(X, Y3, depth=8, lr=0.3, frozen=("output",)).outputs
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dispatch_and_scalar_inputs():
    a = nfd.solve(X3, Y3, depth=8, lr=1.0, method="gamma_c")
    b = solve_gamma_c(X3[:, 0], Y3, depth=8, lr=1.0, activation="identity", T=1.0, frozen=("input", "output"))
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert a.outputs.shape == (3,) and a.feature_cov.shape == (9, 3, 3) and a.rms_features.shape == (3, 9)
    np.testing.assert_array_equal(a.output_kernel, a.feature_cov[-1])


def test_input_dim_scaling():
    # h_0 = U x/√d with x = (ξ, ξ), d = 2 has the law of ξ U_1 and the same Gram x_s·x_t/d = ξ_s ξ_t
    Xd = np.stack([X3[:, 0], X3[:, 0]], axis=1)
    a = solve_gamma_c(Xd, Y3, depth=8, lr=0.5, frozen=()).outputs
    b = solve_gamma_c(X3, Y3, depth=8, lr=0.5, frozen=()).outputs
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_rejects_nonlinear_activation(act):
    with pytest.raises(ValueError, match="activation"):
        solve_gamma_c(X3, Y3, depth=8, lr=1.0, activation=act)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        solve_gamma_c(X3, Y3, depth=0, lr=1.0)
    with pytest.raises(ValueError, match="frozen"):
        solve_gamma_c(X3, Y3, depth=4, lr=1.0, frozen=("weights",))
    with pytest.raises(ValueError, match="X and Y"):
        solve_gamma_c(X3, Y3[:2], depth=4, lr=1.0)
    with pytest.raises(ValueError, match="lr"):
        solve_gamma_c(X3, Y3, depth=4, lr=-1.0)
    with pytest.raises(ValueError, match="width"):
        gamma_c_network(nfd.ResNet(depth=4, input_dim=1, width=16, activation="identity"), X3, Y3)
    with pytest.raises(ValueError, match="parameterization"):
        gamma_c_network(nfd.ResNet(depth=4, input_dim=1, activation="identity", parameterization="ntk"), X3, Y3)


def test_refuses_too_many_steps_for_memory():
    K, L = 2000, 512  # O(K²L²): ~ 4·K²·L² doubles ≈ 30 TB
    assert estimate_gamma_c_memory(K, L) > 10 * 2**40
    X = np.ones((K, 1))
    with pytest.raises(nfd.MemoryEstimateError, match="K²·L²"):
        solve_gamma_c(X, np.zeros(K), depth=L, lr=1.0)
    with pytest.raises(nfd.MemoryEstimateError):
        solve_gamma_c(X3, Y3, depth=8, lr=1.0, max_memory=1000)


def test_divergence_reported_with_step():
    """The exact step, by construction: f̊ at step 0 does not depend on lr or y, so it is finite;
    the first update carries lr·(y_0 − f̊_0) = 1e200·1e200 = 1e400, beyond float64's 1.8e308, so
    the output at step 1 (x_1 = x_0, hence a non-zero kernel between them) is not finite."""
    X = np.full((3, 1), 3.0)
    with pytest.raises(nfd.DivergenceError) as e:
        solve_gamma_c(X, np.array([1e200, 0.0, 0.0]), depth=8, lr=1e200)
    assert e.value.step == 1


# ---------------------------------------------------------------------------------------------
# finite coupled linear networks (the ground truth)
# ---------------------------------------------------------------------------------------------
def test_matches_coupled_finite_networks_frozen_io():
    L, S, widths = 8, 32, (256, 512)
    lim = solve_gamma_c(X3, Y3, depth=L, lr=1.0)
    f, r = [], []
    for i, n in enumerate(widths):
        sim = nfd.simulate(
            X3, Y3, width=n, depth=L, activation="identity", lr=1.0, frozen=("input", "output"),
            backward="coupled", seeds=S, seed=i, dtype=jnp.float64, record=("features",),
        )
        rms = np.sqrt((sim.features**2).mean(-1))  # (S, K, L+1)
        f.append((sim.mean, sim.stderr))
        r.append((rms.mean(0), _se(rms)))
    # Richardson in 1/n (see top): the n → ∞ estimate agrees with the limit within Z of its SEs
    a, se = _extrapolate(widths, *zip(*f))
    assert np.all(np.abs(a - lim.outputs) <= Z * se), (a - lim.outputs) / se
    a, se = _extrapolate(widths, *zip(*r))
    assert np.all(np.abs(a - lim.rms_features) <= Z * se), np.abs(a - lim.rms_features).max()


@pytest.mark.slow
def test_matches_coupled_finite_networks_all_trained():
    L, S, eta, widths = 8, 32, 0.3, (256, 512)
    lim = solve_gamma_c(X3, Y3, depth=L, lr=eta, frozen=())
    sims = [nfd.simulate(
        X3, Y3, width=n, depth=L, activation="identity", lr=eta, frozen=(), backward="coupled",
        seeds=S, seed=i, dtype=jnp.float64,
    ) for i, n in enumerate(widths)]
    # Richardson in 1/n (see top)
    a, se = _extrapolate(widths, [s.mean for s in sims], [s.stderr for s in sims])
    assert np.all(np.abs(a - lim.outputs) <= Z * se), (a - lim.outputs) / se


@pytest.mark.slow
def test_width_trend_coupled_networks():
    """Fluctuations are O(n^-1/2) and the bias O(1/n): the seed variance of the outputs falls like
    1/n (slope −1 in log-log, checked against its standard error, which must be small enough to
    tell 1/n from 1/n²) and the 1/n extrapolation of the seed means agrees with the limit."""
    X = np.array([[1.0], [-0.7], [0.5], [1.2]])
    Y = np.array([0.8, -0.5, 0.3, -1.0])
    L, S = 8, 32
    lim = solve_gamma_c(X, Y, depth=L, lr=1.0)
    widths = np.array([128, 256, 512, 1024])
    means, ses, logv, se_logv = [], [], [], []
    for i, n in enumerate(widths):
        sim = nfd.simulate(
            X, Y, width=int(n), depth=L, activation="identity", lr=1.0, frozen=("input", "output"),
            backward="coupled", seeds=S, seed=100 + i, dtype=jnp.float64,
        )
        means.append(sim.mean)
        ses.append(sim.stderr)
        out = sim.outputs[:, 1:]  # (S, K-1): the trained steps
        v = out.var(0, ddof=1).mean()  # pooled seed variance
        # jackknife over seeds (independent networks) for the SE of log v; the outputs of one
        # network are correlated, which the jackknife keeps
        jk = np.array([np.log(np.delete(out, s, 0).var(0, ddof=1).mean()) for s in range(S)])
        logv.append(np.log(v))
        se_logv.append(math.sqrt((S - 1) / S * ((jk - jk.mean()) ** 2).sum()))
    # n → ∞ extrapolation of the means (see top), over all four widths
    a, se = _extrapolate(widths, means, ses)
    assert np.all(np.abs(a - lim.outputs) <= Z * se), (a - lim.outputs) / se
    # weighted least-squares slope of log v against log n and its SE (independent widths)
    x, y, w = np.log(widths), np.array(logv), 1.0 / np.array(se_logv) ** 2
    xb = (w * x).sum() / w.sum()
    slope = (w * (x - xb) * y).sum() / (w * (x - xb) ** 2).sum()
    se_slope = 1.0 / math.sqrt((w * (x - xb) ** 2).sum())
    # one slope: 3 SEs (two-sided false-failure rate 0.3%); 3 SEs must be below 1 for the test to
    # tell 1/n (slope −1) from 1/n² (slope −2)
    assert 3 * se_slope < 1.0, se_slope
    assert abs(slope + 1.0) <= 3 * se_slope, (slope, se_slope)


def test_no_recompilation_for_new_values():
    from nfd.limits import _gamma_c

    solve_gamma_c(X3, Y3, depth=8, lr=1.0)
    before = _gamma_c._run._cache_size()
    solve_gamma_c(-X3, 2 * Y3, depth=8, lr=0.3, T=0.7, frozen=())  # same shapes: data, rates, T traced
    assert _gamma_c._run._cache_size() == before
