"""Γ/C recursion versus the NFD particle solver (nfd.limits._nfd) for linear networks.

For φ = identity with U and v frozen, the particle solver's exact (coupled) mode and the Γ/C
recursion are two independent formulations of one limit: they must agree to Monte-Carlo
precision.  The GIA mode is the limit of the *decoupled* network; its step-1 output has the
closed form (ζ̃ independent of everything, so E[g^(0)_ℓ v] = 1 and Σ_{ℓ-1}[0,1] = ξ_0ξ_1(1+τ)^{ℓ-1})

    f_1^GIA = −η χ_0 ξ_0 ξ_1 ((1+τ)^L − 1),   f̊_1 (Γ/C) = −η χ_0 ξ_0 ξ_1 T (1+τ)^{L−1},

so the gap tends to η χ_0 ξ_0 ξ_1 (T = 1), not to 0, as L → ∞.  Tolerances: Z = 4 standard
errors of the mean over independent particle seeds.
"""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from nfd.limits._gamma_c import solve_gamma_c
from nfd.limits._nfd import solve_particles

# float64 throughout (round-off comparisons / the Γ/C recursion): 64-bit on for this file only
pytestmark = pytest.mark.usefixtures("x64")

Z = 4.0
X3 = np.array([[1.0], [-0.7], [0.5]])
Y3 = np.array([0.8, -0.5, 0.3])


def _particles(backward, L, runs, P, X=X3, Y=Y3, lr=1.0, frozen=("input", "output")):
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Θ_L is singular by construction with v frozen
        for s in range(runs):
            sol = solve_particles(
                X, Y, depth=L, particles=P, activation="identity", lr=lr, backward=backward, frozen=frozen,
                seed=s, dtype=jnp.float64, on_singular="regularize", eigenvalues=False,
            )
            outs.append(sol.outputs)
    outs = np.array(outs)
    return outs.mean(0), outs.std(0, ddof=1) / math.sqrt(runs)


def test_exact_particle_mode_agrees_with_gamma_c():
    L = 8
    lim = solve_gamma_c(X3, Y3, depth=L, lr=1.0).outputs
    mean, se = _particles("exact", L, runs=8, P=2048)
    assert np.all(np.abs(mean - lim) <= Z * se), (mean, lim, se)


def test_gia_particle_mode_step1_gap_closed_form():
    L, eta, tau = 8, 1.0, 1.0 / 8
    c = -eta * (-Y3[0]) * X3[0, 0] * X3[1, 0]
    lim = solve_gamma_c(X3, Y3, depth=L, lr=eta).outputs
    mean, se = _particles("gia", L, runs=8, P=2048)
    assert abs(mean[1] - c * ((1 + tau) ** L - 1)) <= Z * se[1]
    # the measured gap to Γ/C is the closed-form one (≈ 0.40 here, ≈ 0.56 = |ηχ_0ξ_0ξ_1| at L = ∞)
    gap = c * ((1 + tau) ** L - 1 - (1 + tau) ** (L - 1))
    assert abs((mean[1] - lim[1]) - gap) <= Z * se[1]


@pytest.mark.slow
@pytest.mark.parametrize("L", [4, 16, 32])
def test_exact_particle_mode_agrees_with_gamma_c_across_depths(L):
    X = np.array([[1.0], [-0.7], [0.5], [1.2]])
    Y = np.array([0.8, -0.5, 0.3, -1.0])
    lim = solve_gamma_c(X, Y, depth=L, lr=1.0).outputs
    mean, se = _particles("exact", L, runs=16, P=4096, X=X, Y=Y)
    assert np.all(np.abs(mean - lim) <= Z * se), (mean, lim, se)


@pytest.mark.slow
def test_exact_particle_mode_agrees_with_gamma_c_all_groups_trained():
    L = 8
    lim = solve_gamma_c(X3, Y3, depth=L, lr=0.3, frozen=()).outputs
    mean, se = _particles("exact", L, runs=16, P=4096, lr=0.3, frozen=())
    assert np.all(np.abs(mean - lim) <= Z * se), (mean, lim, se)
