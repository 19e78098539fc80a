"""Tests of the finite-depth Γ/C recursion (nfd.limits._gamma_c, TP VI Lemma C.1).

Checked against closed forms (step-1 outputs of linear networks, derived below), exact
symmetries, and Monte-Carlo estimates of coupled finite linear networks (nfd.simulate) with
tolerances of Z = 4 standard errors of the seed mean (a false-failure rate of ~6e-5 per
Gaussian comparison) plus a finite-width bias allowance measured by the slow width-trend test.

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
# finite-width bias allowance BIAS/n.  Measured with 256 seeds at depth 8 for the configurations
# of this file (frozen U, v with lr 1 on 3 and 4 steps at n = 64, 128; all trained with lr 0.3 at
# n = 128): n·|E f − f̊| ≤ 6.0 and n·|E rms − rms̊| ≤ 6.3, each with a standard error of 0.6-2.4 in
# these units; BIAS = 10 covers the largest measured value plus about two of its standard errors
BIAS = 10.0
X3 = np.array([[1.0], [-0.7], [0.5]])
Y3 = np.array([0.8, -0.5, 0.3])


def _se(a, axis=0):
    return a.std(axis=axis, ddof=1) / math.sqrt(a.shape[axis])


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
    L, n, S = 8, 512, 32
    lim = solve_gamma_c(X3, Y3, depth=L, lr=1.0)
    sim = nfd.simulate(
        X3, Y3, width=n, depth=L, activation="identity", lr=1.0, frozen=("input", "output"),
        backward="coupled", seeds=S, seed=0, dtype=jnp.float64, record=("features",),
    )
    # Z SEs of the S-seed mean plus the O(1/n) finite-width bias allowance BIAS/n (see top)
    assert np.all(np.abs(sim.mean - lim.outputs) <= Z * sim.stderr + BIAS / n)
    rms = np.sqrt((sim.features**2).mean(-1))  # (S, K, L+1)
    assert np.all(np.abs(rms.mean(0) - lim.rms_features) <= Z * _se(rms) + BIAS / n)


@pytest.mark.slow
def test_matches_coupled_finite_networks_all_trained():
    L, n, S, eta = 8, 512, 32, 0.3
    lim = solve_gamma_c(X3, Y3, depth=L, lr=eta, frozen=())
    sim = nfd.simulate(
        X3, Y3, width=n, depth=L, activation="identity", lr=eta, frozen=(), backward="coupled",
        seeds=S, seed=0, dtype=jnp.float64,
    )
    assert np.all(np.abs(sim.mean - lim.outputs) <= Z * sim.stderr + BIAS / n)


@pytest.mark.slow
def test_width_trend_coupled_networks():
    """Mean-square error to the limit shrinks like 1/n (fluctuations O(n^-1/2), bias O(1/n))."""
    X = np.array([[1.0], [-0.7], [0.5], [1.2]])
    Y = np.array([0.8, -0.5, 0.3, -1.0])
    L, S = 8, 32
    lim = solve_gamma_c(X, Y, depth=L, lr=1.0)
    widths = np.array([128, 256, 512, 1024])
    mse = []
    for n in widths:
        sim = nfd.simulate(
            X, Y, width=int(n), depth=L, activation="identity", lr=1.0, frozen=("input", "output"),
            backward="coupled", seeds=S, seed=1, dtype=jnp.float64,
        )
        d = sim.outputs[:, 1:] - lim.outputs[1:]
        mse.append((d**2).mean())
        assert np.all(np.abs(sim.mean - lim.outputs) <= Z * sim.stderr + BIAS / n)
    slope = np.polyfit(np.log(widths), np.log(mse), 1)[0]
    # MSE = Var + bias² with Var ∝ 1/n and bias² ∝ 1/n², so the slope lies in [−2, −1]; a 32-seed
    # MSE has a relative SE of ≈ √(2/32) = 0.25 per width, ±0.35 on the fitted slope
    assert -2.35 <= slope <= -0.65, slope


def test_no_recompilation_for_new_values():
    from nfd.limits import _gamma_c

    solve_gamma_c(X3, Y3, depth=8, lr=1.0)
    before = _gamma_c._run._cache_size()
    solve_gamma_c(-X3, 2 * Y3, depth=8, lr=0.3, T=0.7, frozen=())  # same shapes: data, rates, T traced
    assert _gamma_c._run._cache_size() == before
