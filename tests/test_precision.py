"""Error bars of the particle solver (issue #14): replicates, the L = ∞ extrapolation, paired differences.

References are independent of the particle solver: the Γ/C recursion at L = ∞
(``solve_gamma_c_infinite``, linear networks, exact mode), the linear one-step closed form at
L = ∞ (``nfd.kernels._linear_one_step``, both modes).  Tolerances (tests/README.md): 3 standard
errors for the L = ∞ values (the issue's criterion), rates by weighted least squares with their
standard error, the calibration by the chi-square band of a sample variance.
"""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import nfd
from nfd.kernels._linear_one_step import linear_one_step
from nfd.limits._gamma_c_infinite import richardson, solve_gamma_c_infinite
from nfd.limits._nfd import default_replicates, solve_particles

X3 = np.array([[1.0], [-0.7], [0.5]])
Y3 = np.array([0.8, -0.5, 0.3])
_RNG = np.random.default_rng(0)
X01 = np.stack([_RNG.normal(size=3), _RNG.normal(size=3)])  # (x0, x1) of tests/test_linear_one_step.py


def _wls_slope(x, y, sy):
    """Weighted least-squares slope of y on x with known standard errors sy, and its standard error."""
    w = 1.0 / np.asarray(sy) ** 2
    A = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(A.T @ (w[:, None] * A))
    beta = cov @ A.T @ (w * y)
    return beta[1], math.sqrt(cov[1, 1])


# ---- replicates ------------------------------------------------------------------------------


def test_replicates_mean_and_stderr_and_layout():
    X = np.random.default_rng(1).normal(size=(3, 2))
    Y = X[:, 0]
    sol = solve_particles(X, Y, depth=3, particles=256, activation="tanh", lr=0.5, replicates=4, X_test=X[:2],
                          record_paths=True)
    r = sol.replicate_outputs
    assert r.shape == (4, 3) and sol.config["replicates"] == 4
    np.testing.assert_allclose(sol.outputs, r.mean(0), rtol=1e-6)
    np.testing.assert_allclose(sol.outputs_stderr, r.std(0, ddof=1) / 2, rtol=1e-6)
    np.testing.assert_allclose(sol.losses_stderr, sol.replicate_losses.std(0, ddof=1) / 2, rtol=1e-6)
    np.testing.assert_allclose(sol.test_outputs_stderr, sol.replicate_test_outputs.std(0, ddof=1) / 2, rtol=1e-6)
    np.testing.assert_allclose(sol.sigma_stderr, sol.replicate_sigma.std(0, ddof=1) / 2, rtol=1e-5)
    assert sol.features.shape == (3, 4, 256)
    # replicate r's particles are the r-th block of 64: its output is E[g_L h_L] over that block
    # (the output on the first sample, before any update, is the particle mean itself)
    blk = (sol.grads[0, -1] * sol.features[0, -1]).reshape(4, 64).mean(1)
    np.testing.assert_allclose(blk, r[:, 0], rtol=1e-4, atol=1e-6)
    # replicates are independent systems: their keys differ (the outputs are not all equal)
    assert np.unique(r[:, 0]).size == 4
    # one system: no error bar, and the default at this size is 4 replicates
    one = solve_particles(X, Y, depth=3, particles=256, activation="tanh", lr=0.5, replicates=1)
    assert np.all(np.isnan(one.outputs_stderr))
    assert default_replicates(256) == 4 and default_replicates(258) == 2 and default_replicates(257) == 1
    assert default_replicates(8, samples=3) == 2  # 4 systems of 2 particles would have rank-deficient kernels


@pytest.mark.slow  # 90 s here (reverse-mode compilation)
def test_limit_loss_fn_reports_replicate_stderr():
    X = np.random.default_rng(0).normal(size=(4, 2))
    Y = np.tanh(X[:, 0])
    fn = nfd.limit_loss_fn(X, Y, depth=3, particles=256, activation="tanh", replicates=4)
    v = np.asarray(fn.replicate_values(0.5, 1.0))
    assert v.shape == (4,)
    np.testing.assert_allclose(float(fn(0.5, 1.0)), v.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(fn.stderr(0.5, 1.0)), v.std(ddof=1) / 2, rtol=1e-5)
    # each replicate's loss is the online loss of that replicate's own solve
    sol = solve_particles(X, Y, depth=3, particles=256, activation="tanh", lr=0.5, replicates=4)
    np.testing.assert_allclose(v, sol.replicate_losses.mean(1), rtol=1e-5)
    # forward and reverse mode give the same per-replicate derivatives (so the same standard errors)
    gf = nfd.limit_loss_and_grad(X, Y, lr=0.5, depth=3, particles=256, activation="tanh", replicates=4)
    gr = nfd.limit_loss_and_grad(X, Y, lr=0.5, depth=3, particles=256, activation="tanh", replicates=4,
                                 mode="reverse")
    for a, b in ((gf.d_lr, gr.d_lr), (gf.d_lr_stderr, gr.d_lr_stderr), (gf.d_T_stderr, gr.d_T_stderr)):
        np.testing.assert_allclose(a, b, rtol=1e-4)
    np.testing.assert_allclose(gf.loss_stderr, v.std(ddof=1) / 2, rtol=1e-5)
    assert gf.config["replicates"] == 4


def test_paired_difference_helper():
    a = np.array([[1.0, 2.0], [1.5, 2.5], [0.5, 1.0]])
    b = a - np.array([[0.1, 0.2], [0.12, 0.2], [0.08, 0.2]])
    d = nfd.paired_difference(a, b)
    np.testing.assert_allclose(d.difference, [0.1, 0.2])
    np.testing.assert_allclose(d.stderr, [np.std([0.1, 0.12, 0.08], ddof=1) / math.sqrt(3), 0.0], atol=1e-15)
    np.testing.assert_allclose(d.unpaired_stderr, np.hypot(a.std(0, ddof=1), b.std(0, ddof=1)) / math.sqrt(3))
    with pytest.raises(ValueError, match="b: per-replicate"):
        nfd.paired_difference(a, b[:2])
    with pytest.raises(ValueError, match="at least 2 replicates"):
        nfd.paired_difference(a[:1], b[:1])


# ---- the L = ∞ limit by extrapolation ---------------------------------------------------------


def _exact_gamma_c_reference():
    # Γ/C at L = ∞ on grids 64 and 128, Richardson-extrapolated at the scheme's order 2
    # (tests/test_gamma_c_infinite.py measures that order); its error is far below the particle SE.
    a = solve_gamma_c_infinite(X3, Y3, grid=64, lr=1.0).outputs
    b = solve_gamma_c_infinite(X3, Y3, grid=128, lr=1.0).outputs
    return richardson(a, b)


def _levels(backward, depths, *, noise_depth, particles, replicates, seed, X, Y, frozen, lr):
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Θ_L is singular by construction with v frozen
        for L in depths:
            out[L] = solve_particles(X, Y, depth=L, particles=particles, activation="identity", lr=lr,
                                     backward=backward, frozen=frozen, seed=seed, replicates=replicates,
                                     noise_depth=noise_depth, dtype=jnp.float64, eigenvalues=False).replicate_outputs
    return out


CASES = {
    # exact mode of a linear network with frozen U, v against the Γ/C recursion at L = ∞
    "exact-gamma_c": dict(backward="exact", X=X3, Y=Y3, frozen=("input", "output"), lr=1.0, k=(1, 2), fit=(1,)),
    # the linear one-step closed forms at L = ∞ (all groups trained): output on x1 after one step
    "exact-one_step": dict(backward="exact", X=X01, Y=np.array([1.0, 0.0]), frozen=(), lr=0.5, k=(1,), fit=(1,)),
    "gia-one_step": dict(backward="gia", X=X01, Y=np.array([1.0, 0.0]), frozen=(), lr=0.5, k=(1,), fit=(1,)),
}


def _reference(name):
    c = CASES[name]
    if name == "exact-gamma_c":
        return _exact_gamma_c_reference()
    bw = "coupled" if c["backward"] == "exact" else "decoupled"
    r = linear_one_step(c["X"][0], float(c["Y"][0]), c["X"], lr=c["lr"], backward=bw)
    return np.array([np.nan, r.f1[1]])


def _finite_depth(name, L):
    """The same output at depth L and infinite width from an independent recursion (deterministic)."""
    c = CASES[name]
    if name == "exact-gamma_c":
        from nfd.limits._gamma_c import solve_gamma_c

        return solve_gamma_c(X3, Y3, depth=L, lr=1.0).outputs
    bw = "coupled" if c["backward"] == "exact" else "decoupled"
    return np.array([np.nan, linear_one_step(c["X"][0], float(c["Y"][0]), c["X"], lr=c["lr"], depth=L,
                                             backward=bw).f1[1]])


def _D(f, Ls):
    """D(L) = A(L) − A(2L) of the two-level extrapolants A(L) = 2 f_2L − f_L."""
    A = {L: 2 * f[2 * L] - f[L] for L in (*Ls, 2 * Ls[-1])}
    return np.array([A[L] - A[2 * L] for L in Ls])


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", list(CASES))
def test_richardson_differences_follow_the_order_two_expansion(name):
    # The extrapolant A(L) = 2 f_2L − f_L has error a/L² + O(1/L³); its order is measured on
    # D(L) = A(L) − A(2L) (∝ L^-p), which cancels the unknown limit.  Depths 2..32 share one
    # Brownian path (noise_depth=32) and the particles (same seed and replicates), so D is paired.
    # 1. The particle D(L), L = 2, 4, 8, equals the D(L) of an independent deterministic recursion at
    #    the same depths (Γ/C at depth L, or the one-step closed form at depth L) within 4 of its
    #    standard errors (replicates): the particle extrapolation inherits that expansion exactly.
    # 2. The particle order fitted over L = 2..8 (weighted least squares, delta-method errors
    #    SE(D)/|D|) agrees within 3 of its standard errors with the deterministic order over the same
    #    depths (pre-asymptotic: 1.5–1.7 there), and the deterministic order over L = 32..256 — the
    #    asymptotic order of the same expansion — is ≥ 1.8 (issue #14).
    # FINDING: the particle order itself is not resolved at L ≥ 16 on this machine: D(16) ≈ 2e-4 (gia)
    # to 4e-3 (exact) while SE(D) falls only as ≈ 1/L (GIA) or slower (exact; 2e-3 at L = 8 with
    # 131072 particles); resolving it needs ~10× more particles (a GPU).
    c = CASES[name]
    kw = dict(particles=16 * 8192, replicates=16, seed=3, X=c["X"], Y=c["Y"], frozen=c["frozen"], lr=c["lr"])
    lev = _levels(c["backward"], (2, 4, 8, 16, 32), noise_depth=32, **kw)
    Ls = np.array([2, 4, 8])
    det = {L: _finite_depth(name, L) for L in (2, 4, 8, 16, 32, 64, 128, 256, 512)}
    for k in c["k"]:
        D = _D({L: lev[L][:, k] for L in lev}, list(Ls))  # (3, R)
        Dm, Dse = D.mean(1), D.std(1, ddof=1) / math.sqrt(D.shape[1])
        Dd = _D({L: det[L][k] for L in det}, list(Ls))
        print(f"{name} k={k}: particle D(L) = {Dm} ± {Dse}; deterministic {Dd}")
        assert np.all(np.abs(Dm - Dd) <= 4 * Dse), (Dm, Dse, Dd)
        if k not in c["fit"]:
            continue  # Γ/C output 2: D changes sign between L = 4 and 8 (its 1/L² and 1/L³ terms cancel)
        assert np.all(np.abs(Dm) > 2 * Dse), (Dm, Dse)  # sign-stable, so log|D| and its delta-method SE hold
        slope, se = _wls_slope(np.log(Ls), np.log(np.abs(Dm)), Dse / np.abs(Dm))
        slope_det = np.polyfit(np.log(Ls), np.log(np.abs(Dd)), 1)[0]
        Lb = np.array([32, 64, 128])
        slope_asym = np.polyfit(np.log(Lb), np.log(np.abs(_D({L: det[L][k] for L in det}, list(Lb)))), 1)[0]
        print(f"{name} k={k}: particle order {-slope:.3f} ± {se:.3f} (L = 2..8), deterministic {-slope_det:.3f} "
              f"(L = 2..8), {-slope_asym:.3f} (L = 32..256)")
        assert se <= 0.25, se  # precise enough to tell order 2 from order 1 (4 standard errors)
        assert abs(slope - slope_det) <= 3 * se, (slope, se, slope_det)
        assert -slope_asym >= 1.8, slope_asym


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", [  # 9 s (one-step cases) and 32 s (Γ/C, 3 levels) here
    pytest.param("exact-gamma_c", marks=pytest.mark.slow), pytest.param("exact-one_step", marks=pytest.mark.slow),
    "gia-one_step"])
def test_infinite_depth_value_within_three_standard_errors(name):
    # nfd.solve(depth=None) against the independent L = ∞ answer (Γ/C at L = ∞; the one-step closed
    # form at L = ∞): within 3 of its standard errors (issue #14).  The error bar is the replicates'
    # spread of the extrapolated values; the remaining depth bias of A(16) (≤ 1e-3 here by the
    # deterministic recursions above, except Γ/C's 8e-3 at k = 2) is counted in the 3-level check.
    c = CASES[name]
    ref = _reference(name)
    depths = (8, 16, 32) if name == "exact-gamma_c" else (16, 32)
    lim = nfd.solve(c["X"], c["Y"], depth=None, richardson_depths=depths, particles=16 * 8192, replicates=16,
                    activation="identity", lr=c["lr"], backward=c["backward"], frozen=c["frozen"], seed=11,
                    dtype=jnp.float64, eigenvalues=False, on_singular="regularize")
    assert lim.config["depths"] == depths and lim.config["noise_depth"] == depths[-1]
    for k in c["k"]:
        z = (lim.outputs[k] - ref[k]) / lim.outputs_stderr[k]
        print(f"{name} k={k}: L=∞ {lim.outputs[k]:.5f} ± {lim.outputs_stderr[k]:.5f} (bias est. "
              f"{lim.outputs_bias[k]:.2e}) vs reference {ref[k]:.5f}: z = {z:.2f}")
        assert abs(z) <= 3, (lim.outputs[k], lim.outputs_stderr[k], ref[k])


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_paired_depth_difference_has_a_fifth_of_the_unpaired_stderr():
    # Depth L and 2L with one Brownian path (noise_depth=2L) and the same seed: replicate r of both
    # runs shares its particles and path, so the depth difference's noise largely cancels.  The
    # issue's criterion: the paired standard error at most 1/5 of the unpaired one (in quadrature).
    # Setting: the study's (tanh, all groups trained, exact mode, L = 8 vs 16).
    X = np.random.default_rng(0).normal(size=(4, 3))
    Y = np.tanh(X[:, 0])
    kw = dict(particles=8 * 1024, replicates=8, activation="tanh", lr=0.5, seed=5, noise_depth=16,
              dtype=jnp.float64)
    a = solve_particles(X, Y, depth=8, **kw)
    b = solve_particles(X, Y, depth=16, **kw)
    d = nfd.paired_difference(b, a)
    ratio = d.stderr[1:] / d.unpaired_stderr[1:]  # step 0 has no training yet; it is included below too
    print("paired/unpaired SE ratio per output:", d.stderr / d.unpaired_stderr)
    assert np.all(ratio <= 0.2), ratio


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["iid", "sobol"])
def test_stderr_is_calibrated(sampling):
    # M independent solves (seeds 0..M-1) of R = 8 replicates each: t = (mean − reference)/stderr
    # is Student-t with R−1 degrees of freedom when the stderr is right (Gaussian replicate means,
    # no bias).  Mapped to a standard normal (u = Φ⁻¹(F_t(t))), the sample variance of the M values
    # lies in the chi-square band [χ²_{M−1}(0.0005), χ²_{M−1}(0.9995)]/(M−1) (a false-failure
    # rate of 1e-3).  Reference: the linear one-step closed form at the same depth (exact).
    # Bias check: with P/R = 512 particles per replicate the O(R/P) bias of the step-1 output is
    # negligible against its standard error (the same comparison with P = 64·8 would show it).
    # sampling="sobol" (issue 18: the error bar must stay calibrated under variance reduction): each
    # replicate is an independent scrambling, so the same test applies; its standard error is ≈ 7×
    # smaller here (median 2.3e-3 against 1.6e-2), so the bias check is 7× more sensitive.
    x0, x1 = X01
    L, R, M = 4, 8, 200
    ref = linear_one_step(x0, 1.0, X01, lr=0.5, depth=L, backward="coupled").f1[1]
    u = []
    for seed in range(M):
        sol = nfd.solve(X01, np.array([1.0, 0.0]), depth=L, particles=R * 512, replicates=R, activation="identity",
                        lr=0.5, seed=seed, eigenvalues=False, sampling=sampling)
        t = (sol.outputs[1] - ref) / sol.outputs_stderr[1]
        u.append(stats.norm.ppf(stats.t.cdf(t, R - 1)))
    u = np.asarray(u)
    var = u.var(ddof=1)
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], M - 1) / (M - 1)
    print(f"calibration ({sampling}): var(z) = {var:.3f} (band [{lo:.3f}, {hi:.3f}]), mean z = {u.mean():.3f}")
    assert lo <= var <= hi, (var, lo, hi)
    assert abs(u.mean()) <= 3.29 / math.sqrt(M)  # no bias beyond the same 1e-3 two-sided level
