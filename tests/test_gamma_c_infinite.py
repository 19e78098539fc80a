"""Tests of the infinite-depth Γ/C solver (nfd.limits._gamma_c_infinite, TP VI Proposition C.2).

Closed forms at L = ∞ (frozen U, v; the L → ∞ limits of the finite-depth forms in
tests/test_gamma_c.py): ⟨x_0^p, x_0^p⟩ = ξ_0² e^p and f̊_1 = −η χ_0 ξ_0 ξ_1 T e^T.
The scheme declares its order (INFINITE_ORDER = 2); the tests measure it.
"""

import math

import numpy as np
import pytest

from nfd.limits._gamma_c import solve_gamma_c
from nfd.limits._gamma_c_infinite import INFINITE_ORDER, richardson, solve_gamma_c_infinite

# float64 throughout (round-off comparisons / the Γ/C recursion): 64-bit on for this file only
pytestmark = pytest.mark.usefixtures("x64")

X3 = np.array([[1.0], [-0.7], [0.5]])
Y3 = np.array([0.8, -0.5, 0.3])


def _f1_exact(eta, T):
    return -eta * (-Y3[0]) * X3[0, 0] * X3[1, 0] * T * math.exp(T)


@pytest.mark.parametrize("T", [1.0, 0.5])
def test_step1_closed_form_and_order(T):
    eta = 0.7
    errs = []
    for N in (16, 32):
        res = solve_gamma_c_infinite(X3, Y3, grid=N, lr=eta, T=T)
        assert res.outputs[0] == 0.0
        errs.append(abs(res.outputs[1] - _f1_exact(eta, T)))
    observed = math.log2(errs[0] / errs[1])
    # two grids give the local order; a second-order scheme with O(h³) remainder lands in ±0.3
    assert abs(observed - INFINITE_ORDER) < 0.3, observed
    assert errs[1] < 2e-3 * abs(_f1_exact(eta, T))


def test_initial_kernel_is_exponential():
    N = 16
    res = solve_gamma_c_infinite(X3, Y3, grid=N, lr=1.0)
    p = np.arange(N + 1) / N
    # second order: |error| ≤ C h² with C = e (the scale of the solution's second derivative)
    np.testing.assert_allclose(res.feature_cov[:, 0, 0], np.exp(p), rtol=0, atol=math.e / N**2)


def test_richardson_removes_leading_error():
    a = solve_gamma_c_infinite(X3, Y3, grid=16, lr=0.7).outputs[1]
    b = solve_gamma_c_infinite(X3, Y3, grid=32, lr=0.7).outputs[1]
    exact = _f1_exact(0.7, 1.0)
    assert abs(richardson(a, b) - exact) < 0.1 * abs(b - exact)


def test_finite_depth_gap_matches_closed_form():
    # the two solvers are independent discretisations; at step 1 their difference must be the
    # closed-form gap −ηχ_0ξ_0ξ_1 T[(1+T/L)^{L-1} − e^T], up to the O(N⁻²) error of the grid solver
    eta, L = 0.7, 8
    inf = solve_gamma_c_infinite(X3, Y3, grid=32, lr=eta).outputs[1]
    fin = solve_gamma_c(X3, Y3, depth=L, lr=eta).outputs[1]
    gap = -eta * (-Y3[0]) * X3[0, 0] * X3[1, 0] * ((1 + 1 / L) ** (L - 1) - math.e)
    # grid-32 error measured in test_step1_closed_form_and_order: < 2e-3 relative to f̊_1
    assert abs((fin - inf) - gap) < 2e-3 * abs(_f1_exact(eta, 1.0))


def test_grid_validation():
    with pytest.raises(ValueError, match="grid"):
        solve_gamma_c_infinite(X3, Y3, grid=2)
    with pytest.raises(ValueError, match="grid"):
        solve_gamma_c_infinite(X3, Y3, grid=8.5)
    with pytest.raises(ValueError, match="activation"):
        solve_gamma_c_infinite(X3, Y3, grid=8, activation="relu")


@pytest.mark.slow
def test_order_on_multistep_training_with_all_groups_trained():
    X = np.array([[1.0], [-0.7], [0.5], [1.2]])
    Y = np.array([0.8, -0.5, 0.3, -1.0])
    sols = {N: solve_gamma_c_infinite(X, Y, grid=N, lr=0.3, frozen=()) for N in (16, 32, 64, 128)}
    d1 = np.abs(sols[32].outputs - sols[16].outputs).max()
    d2 = np.abs(sols[64].outputs - sols[32].outputs).max()
    d3 = np.abs(sols[128].outputs - sols[64].outputs).max()
    assert abs(math.log2(d2 / d3) - INFINITE_ORDER) < 0.25, (d1, d2, d3)
    k1 = np.abs(sols[64].output_kernel - sols[32].output_kernel).max()
    k2 = np.abs(sols[128].output_kernel - sols[64].output_kernel).max()
    assert abs(math.log2(k1 / k2) - INFINITE_ORDER) < 0.25, (k1, k2)


@pytest.mark.slow
def test_depth_convergence_rate_figure9_protocol():
    """f̊_t at depths 2^5..2^8 approach the L = ∞ solution at rate 1/L (the local rate
    log2(e_L/e_2L) rises towards 1: measured 0.74, 0.88, 0.95, 0.98 for L = 8..128 at step 2)."""
    X = np.array([[1.0], [-0.7], [0.5], [1.2]])
    Y = np.array([0.8, -0.5, 0.3, -1.0])
    coarse = solve_gamma_c_infinite(X, Y, grid=64, lr=0.7)
    fine = solve_gamma_c_infinite(X, Y, grid=128, lr=0.7)
    ref = richardson(coarse.outputs, fine.outputs)
    Ls = np.array([32, 64, 128, 256])
    err = np.array([np.abs(solve_gamma_c(X, Y, depth=int(L), lr=0.7).outputs - ref)[1:] for L in Ls])
    # reference error (|Richardson − fine| ≲ 1e-4) is < 2% of the L = 256 error
    assert np.abs(fine.outputs - ref).max() < 0.02 * err[-1].min()
    rates = -np.polyfit(np.log(Ls), np.log(err), 1)[0]
    # pre-asymptotic O(1/L²) terms bias the fitted rate below 1 by ≲ 0.1 on this range
    assert np.all(np.abs(rates - 1.0) < 0.1), (rates, err)
