"""Tests of nfd.meanode: finite hidden-width ResNets, the Neural Mean ODE and the Neural Tangent ODE.

Independent references used:
* a hand-written numpy forward/backward (Eq. 1, 6, 7) and GD step (Eq. 5) for the finite net;
* the weight-tied finite ResNet, which IS the Euler scheme of the Mean ODE with its M units as
  particles (bit-for-bit at equal grid; O(1/L) apart from a fine-grid solution);
* the Mean ODE at large α with antithetic particles for the Neural Tangent ODE (Theorem 2);
* Monte-Carlo estimates over seeds for finite-vs-limit rates (Theorem 1).
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import linregress

import nfd
from nfd.meanode import MLP, Unit, sample_particles, simulate_resnet, simulate_resnet_network, solve_mean_ode

F64 = jnp.float64
K = 6  # GD steps in every fast test (shared shapes share compilations)


def _data(n=6, D=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.normal(size=(n, D))


# ---- model description ---------------------------------------------------------------------


def test_model_defaults_and_rates():
    net = nfd.MeanODEResNet(dim=10, depth=100, hidden=4, alpha=2.0)
    assert net.sigma_u == net.sigma_v == math.sqrt(10) and net.lr_u == net.lr_v == 10.0
    assert net.residual_scale == 2.0 / 400
    assert net.gd_rates == (400 * 10 / 4.0, 400 * 10 / 4.0)
    assert net.param_sizes == (10, 10)
    b = nfd.MeanODEResNet.balanced(16, 4.0)
    assert b.sigma_v == 4.0 * 4 and b.lr_u == 16 / 16.0 and b.lr_v == 16.0
    assert nfd.MeanODEResNet.balanced(16, 0.5).lr_u == 16.0
    with pytest.raises(ValueError, match="dim"):
        nfd.MeanODEResNet(dim=0)
    with pytest.raises(ValueError, match="alpha"):
        nfd.MeanODEResNet(dim=3, alpha=-1.0)
    with pytest.raises(ValueError, match="sigma_v"):
        nfd.MeanODEResNet(dim=3, sigma_v=float("nan"))
    with pytest.raises(ValueError, match="lr_u"):
        nfd.MeanODEResNet(dim=3, lr_u=-1)
    with pytest.raises(ValueError, match="unit"):
        nfd.MeanODEResNet(dim=3, unit="attention")
    with pytest.raises(ValueError, match="residual_scale"):
        nfd.MeanODEResNet(dim=3).residual_scale


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_mlp_fast_path_matches_generic_vmap():
    rng = np.random.default_rng(1)
    H, U, V = rng.normal(size=(4, 6)), rng.normal(size=(7, 6)), rng.normal(size=(7, 6))
    a = MLP.block_mean(H, U, V, jnp.tanh)
    b = MLP.generic_block_mean(H, U, V, jnp.tanh)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


# ---- finite ResNet: against a hand-written numpy implementation of Eq. 1, 5, 6, 7 -------------


def _numpy_train(U, V, X, Y, steps, alpha, lr_u, lr_v):
    """Finite ResNet with 2LP units, GD with explicit forward/backward recursions (Eq. 6–7)."""
    L, M, D = U.shape
    U, V = U.copy(), V.copy()
    outs = []
    for _ in range(steps + 1):
        gU, gV = np.zeros_like(U), np.zeros_like(V)
        out = []
        for x, y in zip(X, Y):
            hs = [x]
            for ell in range(L):
                h = hs[-1]
                hs.append(h + alpha / (L * M) * (V[ell].T @ np.tanh(U[ell] @ h / D)))
            out.append(hs[-1])
            b = (hs[-1] - y) / D / len(X)  # ∇ of (1/n) ½‖h − y‖²/D
            for ell in range(L - 1, -1, -1):
                h = hs[ell]
                pre = U[ell] @ h / D
                a = np.tanh(pre)
                da = 1 - a**2
                vb = V[ell] @ b  # (M,)
                c = alpha / (L * M)
                gV[ell] += c * np.outer(a, b)
                gU[ell] += c * np.outer(vb * da, h) / D
                b = b + c * (U[ell].T @ (vb * da)) / D  # Eq. 7: b^{ℓ-1} = b^ℓ + c Σ D₁φᵀ b^ℓ
        outs.append(np.array(out))
        U -= L * M * lr_u / alpha**2 * gU
        V -= L * M * lr_v / alpha**2 * gV
    return np.array(outs)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_finite_resnet_matches_numpy_backprop():
    X, Y = _data()
    rng = np.random.default_rng(2)
    L, M, D = 4, 2, 5
    U0, V0 = 2 * rng.normal(size=(L, M, D)), 2 * rng.normal(size=(L, M, D))
    ref = _numpy_train(U0, V0, X, Y, steps=K, alpha=1.5, lr_u=2.0, lr_v=3.0)
    r = simulate_resnet(X, Y, depth=L, hidden=M, steps=K, alpha=1.5, lr_u=2.0, lr_v=3.0, init=(U0, V0),
                        dtype=F64)
    np.testing.assert_allclose(r.outputs[0], ref, rtol=1e-11, atol=1e-12)
    # losses consistent with outputs; forward pass ends at the outputs
    np.testing.assert_allclose(r.losses[0], 0.5 * np.mean(np.sum((ref - Y) ** 2, -1), -1) / D, rtol=1e-11)
    np.testing.assert_allclose(r.forward[0, -1, -1], r.outputs[0, -1], rtol=1e-12)
    np.testing.assert_allclose(r.forward[0, 0, 0], X, rtol=0, atol=0)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_generic_unit_equals_builtin_mlp():
    X, Y = _data()
    user = Unit("my_mlp", lambda x, u, v, rho: v * rho(jnp.dot(u, x) / x.shape[0]), lambda D: (D, D))
    a = simulate_resnet(X, Y, depth=4, hidden=2, steps=K, seeds=2, dtype=F64)
    b = simulate_resnet(X, Y, depth=4, hidden=2, steps=K, seeds=2, unit=user, dtype=F64)
    np.testing.assert_allclose(a.outputs, b.outputs, rtol=1e-11, atol=1e-12)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_seeds_are_independent_and_reproducible():
    X, Y = _data()
    r1 = simulate_resnet(X, Y, depth=4, hidden=2, steps=K, seeds=2, seed=7, dtype=F64)
    r2 = simulate_resnet(X, Y, depth=4, hidden=2, steps=K, seeds=2, seed=7, dtype=F64)
    np.testing.assert_array_equal(r1.outputs, r2.outputs)
    assert not np.allclose(r1.outputs[0, 1], r1.outputs[1, 1])
    # chunking over seeds (small memory budget) gives the same numbers
    one = 8 * (6 * 4 * 2 * 10 + 4 * 4 * 6 * 7 + (K + 1) * 30 + 2 * 5 * 30)  # train_bytes of one seed
    r3 = simulate_resnet(X, Y, depth=4, hidden=2, steps=K, seeds=2, seed=7, dtype=F64, max_memory=one + 8)
    assert r3.config["chunk"] == 1
    np.testing.assert_allclose(r1.outputs, r3.outputs, rtol=1e-12)


# ---- Mean ODE solver: weight-tied check, discretisation order, Richardson ----------------------


@pytest.mark.usefixtures("x64")  # float64 reference
def test_weight_tied_resnet_is_euler_mean_ode_and_converges_at_rate_one_over_L():
    X, Y = _data()
    net = nfd.MeanODEResNet(dim=5)
    U, V = sample_particles(net, 8, sampler="antithetic", seed=1)
    # Reference: Richardson-extrapolated solution on grid 256/512 with the same particles (its
    # error O(1/256²) is far below the smallest difference tested, ~1/32).
    ref = solve_mean_ode(X, Y, steps=K, grid=256, particles_init=(U, V), richardson=True)
    errs, Ls = [], [4, 8, 16, 32]
    for L in Ls:
        init = (np.broadcast_to(U, (L,) + U.shape), np.broadcast_to(V, (L,) + V.shape))
        fin = simulate_resnet(X, Y, depth=L, hidden=8, steps=K, init=init, dtype=F64)
        if L == 8:  # identical computation: agreement to round-off
            same = solve_mean_ode(X, Y, steps=K, grid=L, particles_init=(U, V))
            np.testing.assert_allclose(fin.outputs[0], same.outputs, rtol=1e-10, atol=1e-12)
        errs.append(np.sqrt(np.mean((fin.outputs[0] - ref.outputs) ** 2)))
    slope = linregress(np.log(Ls), np.log(errs)).slope
    # Euler is first order; the band allows the O(1/L²) next term at L = 4..32.
    assert -1.2 < slope < -0.85, (errs, slope)


def test_richardson_is_second_order():
    X, Y = _data()
    U, V = sample_particles(nfd.MeanODEResNet(dim=5), 8, sampler="iid", seed=3)
    ref = solve_mean_ode(X, Y, steps=K, grid=256, particles_init=(U, V), richardson=True)
    Ns = [8, 16, 32]
    e_euler, e_rich = [], []
    for N in Ns:
        a = solve_mean_ode(X, Y, steps=K, grid=N, particles_init=(U, V))
        b = solve_mean_ode(X, Y, steps=K, grid=N, particles_init=(U, V), richardson=True)
        e_euler.append(np.sqrt(np.mean((a.outputs - ref.outputs) ** 2)))
        e_rich.append(np.sqrt(np.mean((b.outputs - ref.outputs) ** 2)))
    s1 = linregress(np.log(Ns), np.log(e_euler)).slope
    s2 = linregress(np.log(Ns), np.log(e_rich)).slope
    assert -1.2 < s1 < -0.85, (e_euler, s1)
    assert s2 < -1.7, (e_rich, s2)
    assert all(r < e for r, e in zip(e_rich, e_euler))


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_antithetic_particles_make_the_initial_pass_exact():
    X, Y = _data()
    anti = solve_mean_ode(X, Y, steps=K, grid=8, particles=8, sampler="antithetic", replicates=2)
    iid = solve_mean_ode(X, Y, steps=K, grid=8, particles=8, sampler="iid", replicates=2)
    # E[φ(x, Z_0)] = 0, so h(s, x, Z_0) = x exactly in the limit (§1: "identity map").
    np.testing.assert_allclose(anti.outputs[0], X, atol=1e-13)
    assert np.abs(iid.outputs[0] - X).max() > 1e-3


def test_sobol_particles_have_the_right_law():
    net = nfd.MeanODEResNet(dim=4, sigma_u=2.0, sigma_v=0.5)
    U, V = sample_particles(net, 4096, sampler="sobol", seed=0)
    # Std of a sample std of 4096·4 Gaussians is ≈ σ/√(2·16384) ≈ 0.0055σ (less for QMC); 5e-2 relative
    # is > 9 standard errors.
    assert abs(U.std() / 2.0 - 1) < 5e-2 and abs(V.std() / 0.5 - 1) < 5e-2
    assert abs(U.mean()) < 5e-2 * 2.0
    # per-layer draws: N blocks of one scrambled sequence, each antithetic in v, all distinct
    Ul, Vl = sample_particles(net, 64, sampler="sobol_antithetic", seed=0, layers=3)
    assert Ul.shape == (3, 64, 4) and np.abs(Vl.sum(axis=1)).max() < 1e-12
    assert not np.allclose(Ul[0], Ul[1])


# ---- lazy-ODE regime ----------------------------------------------------------------------------


def test_mean_ode_tends_to_tangent_ode_as_alpha_grows():
    X, Y = _data()
    U, V = sample_particles(nfd.MeanODEResNet(dim=5), 8, sampler="antithetic", seed=4)
    tan = solve_mean_ode(X, Y, steps=K, grid=16, particles_init=(U, V), lazy=True)
    alphas = [10.0, 30.0, 100.0]
    errs = []
    for a in alphas:
        m = solve_mean_ode(X, Y, steps=K, grid=16, particles_init=(U, V), alpha=a)
        errs.append(np.sqrt(np.mean((m.outputs - tan.outputs) ** 2)))
    slope = linregress(np.log(alphas), np.log(errs)).slope
    # Theorem 2 bounds the gap by O(1/α).  (For the MLP unit with v-symmetric particles the first
    # order cancels and we observe O(1/α²); the test asserts at least first order.)
    assert slope < -0.9, (errs, slope)
    assert errs[-1] < 1e-3
    # the tangent ODE's output still moves: GD makes progress in the lazy regime
    assert tan.losses[-1] < 0.5 * tan.losses[0]


# ---- finite ResNet vs Mean ODE (Theorem 1) -------------------------------------------------------


@pytest.mark.usefixtures("x64")  # float64 reference
def test_finite_resnet_error_scales_with_L_and_LM():
    """Error ≈ a/L + b/√(LM): multiplying L and M by 4 divides both terms by 4."""
    X, Y = _data()
    # Richardson removes the limit's own O(1/N) error, which would otherwise be correlated with a/L.
    lim = solve_mean_ode(X, Y, steps=K, grid=128, particles=256, coupling="independent", replicates=2,
                         richardson=True)
    seeds = 12
    mse = {}
    for L, M in [(8, 2), (32, 8)]:
        f = simulate_resnet(X, Y, depth=L, hidden=M, steps=K, seeds=seeds, dtype=F64)
        mse[L] = np.mean((f.outputs[:, -1] - lim.outputs[-1]) ** 2, axis=(1, 2))  # per seed
    e1, e2 = math.sqrt(mse[8].mean()), math.sqrt(mse[32].mean())
    # The limit's own Monte-Carlo error must be negligible against the smaller error.
    assert np.sqrt(np.mean(lim.outputs_stderr[-1] ** 2)) < 0.1 * e2
    ratio = e2 / e1
    # Delta method: rel. s.e. of an RMS = ½ · rel. s.e. of the mean of the per-seed MSEs.
    rel = 0.5 * math.hypot(mse[8].std(ddof=1) / mse[8].mean(), mse[32].std(ddof=1) / mse[32].mean()) / math.sqrt(seeds)
    assert abs(ratio - 0.25) < 4 * rel * 0.25 + 0.03, (ratio, rel)  # 4 s.e. + 0.03 for O(1/L²) terms


# ---- dispatch, results, bad input ----------------------------------------------------------------


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_solve_dispatch_and_result_shapes():
    X, Y = _data()
    r = nfd.solve(X, Y, method="mean_ode", steps=K, grid=8, particles=16, replicates=3, forward_steps=(0, 2, K))
    assert r.outputs.shape == (K + 1, 6, 5) and r.losses.shape == (K + 1,)
    assert r.forward.shape == (3, 9, 6, 5) and r.s.shape == (9,)
    assert r.replicate_outputs.shape == (3, K + 1, 6, 5) and np.all(np.isfinite(r.outputs_stderr))
    np.testing.assert_allclose(r.forward[-1, -1], r.outputs[-1], rtol=1e-12)
    np.testing.assert_allclose(r.forward[:, 0], np.broadcast_to(X, (3, 6, 5)))
    assert r.losses[-1] < r.losses[0]


def test_bad_input_is_rejected_before_work():
    X, Y = _data(n=4, D=3)
    with pytest.raises(ValueError, match="Y must have the shape"):
        solve_mean_ode(X, Y[:, :2], steps=2)
    with pytest.raises(ValueError, match="X must have shape"):
        solve_mean_ode(X[0], Y, steps=2)
    with pytest.raises(ValueError, match="NaN"):
        solve_mean_ode(np.where(X > 0, np.nan, X), Y, steps=2)
    with pytest.raises(ValueError, match="steps"):
        solve_mean_ode(X, Y, steps=-1)
    with pytest.raises(ValueError, match="sampler"):
        solve_mean_ode(X, Y, steps=2, sampler="halton")
    with pytest.raises(ValueError, match="particles"):
        solve_mean_ode(X, Y, steps=2, particles=100, sampler="sobol")
    with pytest.raises(ValueError, match="particles must be even"):
        solve_mean_ode(X, Y, steps=2, particles=7, sampler="antithetic")
    with pytest.raises(ValueError, match="grid"):
        solve_mean_ode(X, Y, steps=2, grid=0)
    with pytest.raises(ValueError, match="dim"):
        simulate_resnet_network(nfd.MeanODEResNet(dim=5, depth=2, hidden=2), X, Y, steps=1)
    with pytest.raises(ValueError, match="finite depth"):
        simulate_resnet_network(nfd.MeanODEResNet(dim=3), X, Y, steps=1)
    with pytest.raises(ValueError, match="init shapes"):
        simulate_resnet(X, Y, depth=2, hidden=2, steps=1, init=(np.zeros((2, 2, 3)), np.zeros((2, 3, 3))))
    with pytest.raises(ValueError, match="seeds"):
        simulate_resnet(X, Y, depth=2, hidden=2, steps=1, seeds=0)
    with pytest.raises(nfd.MemoryEstimateError):
        solve_mean_ode(X, Y, steps=2, grid=100, particles=1024, max_memory=10**6)


def test_divergence_reports_the_step():
    X, Y = _data()
    # The exact step, by construction (float32, identity activation): the output at GD step 0 does
    # not depend on the rates, so it is finite; after one step U and V have moved by 1e30 times
    # their (generic, non-zero) gradients, and the residual branch multiplies the two, ~1e60 ≫
    # float32's 3.4e38, so the output at step 1 is not finite.
    with pytest.raises(nfd.DivergenceError) as e:
        simulate_resnet(X, Y, depth=4, hidden=2, steps=K, activation="identity", lr_u=1e30, lr_v=1e30, seeds=2,
                        dtype=jnp.float32)
    assert e.value.step == 1
