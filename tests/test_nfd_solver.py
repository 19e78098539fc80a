"""Tests of the NFD particle solver (nfd.limits._nfd) against closed forms and finite networks.

Tolerances are Monte-Carlo based: the particle solver's own error is estimated from several
particle seeds (each run is an independent estimate), the finite networks' from their seeds;
a comparison passes at Z = 4 combined standard errors (a false failure rate of ~6e-5 per
comparison for Gaussian errors).
"""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd.limits import _nfd
from nfd.limits._init_sde import discrete_init_kernels

Z = 4.0


def _data(K, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def _runs(X, Y, runs, **kw):
    return np.array([nfd.solve(X, Y, seed=s, eigenvalues=False, **kw).outputs for s in range(runs)])


def _se(a):
    return a.std(axis=0, ddof=1) / math.sqrt(a.shape[0])


# ---------------------------------------------------------------------------------------------
# input validation and refusal
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(backward="coupled"), "backward"),
        (dict(particles=1), "particles"),
        (dict(particles=2.5), "particles"),
        (dict(depth=0), "depth"),
        (dict(lr=-1.0), "lr"),
        (dict(frozen=("bias",)), "frozen"),
        (dict(activation="nope"), "activation"),
        (dict(batch_size=2), "batch_size"),  # K = 3 is not a multiple of 2
        (dict(dtype=jnp.int32), "dtype"),
        (dict(on_singular="ignore"), "on_singular"),
        (dict(singular_tol=2.0), "singular_tol"),
        (dict(X_test=np.ones((2, 5))), "X_test"),
        (dict(loss="logistic"), "labels"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_bad_input_raises_value_error(kw, match):
    X, Y = _data(3)
    args = dict(depth=2, particles=64, activation="tanh", lr=0.1)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        nfd.solve(X, Y, **args)


def test_bad_network_for_the_limit():
    X, Y = _data(2)
    net = nfd.ResNet(depth=2, input_dim=3, width=16)
    with pytest.raises(ValueError, match="width"):
        _nfd.solve_particles_network(net, X, Y, particles=16)
    net = nfd.ResNet(depth=2, input_dim=3, parameterization="ntk")
    with pytest.raises(ValueError, match="parameterization"):
        _nfd.solve_particles_network(net, X, Y, particles=16)


def test_memory_estimate_refuses_impossible_runs():
    X, Y = _data(4)
    with pytest.raises(nfd.MemoryEstimateError, match="particles=100000000"):
        nfd.solve(X, Y, depth=1000, particles=100_000_000, activation="tanh", lr=0.1)
    with pytest.raises(nfd.MemoryEstimateError):
        nfd.solve(X, Y, depth=2, particles=64, activation="tanh", lr=0.1, max_memory=1000)


# ---------------------------------------------------------------------------------------------
# compilation and exact bookkeeping identities
# ---------------------------------------------------------------------------------------------
def test_one_compilation_per_problem_size():
    X, Y = _data(3)
    kw = dict(depth=2, particles=64, activation="tanh", eigenvalues=False)
    nfd.solve(X, Y, lr=0.1, seed=0, **kw)
    before = _nfd.TRACE_COUNT[0]
    nfd.solve(X + 1.0, Y * 2, lr=0.3, seed=5, **kw)
    nfd.solve(X, Y, lr=0.2, seed=1, frozen=("input",), **kw)
    assert _nfd.TRACE_COUNT[0] == before  # new data, lr, seed and frozen groups reuse the program
    nfd.solve(X, Y, lr=0.1, seed=0, **{**kw, "particles": 128})
    assert _nfd.TRACE_COUNT[0] == before + 1  # a new size compiles once


@pytest.mark.usefixtures("x64")  # float64 reference
def test_paths_reproduce_outputs_and_kernels():
    """f̂ = E[g_L h_L] and Σ, Θ are particle means of the recorded paths (exact identities)."""
    X, Y = _data(3)
    sol = nfd.solve(X, Y, depth=3, particles=256, activation="tanh", lr=0.5, backward="exact",
                    record_paths=True, dtype=jnp.float64)
    P = 256
    h, g = sol.features, sol.grads  # (K, L+1, P)
    assert h.shape == g.shape == (3, 4, P)
    np.testing.assert_allclose(np.mean(h[:, -1] * g[:, -1], axis=1), sol.outputs, rtol=1e-10, atol=1e-12)
    phi = np.tanh(h[:, :-1])  # (K, L, P)
    np.testing.assert_allclose(np.einsum("ilp,klp->lik", phi, phi) / P, sol.sigma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.einsum("ilp,klp->lik", g[:, 1:], g[:, 1:]) / P, sol.theta, rtol=1e-10, atol=1e-12)
    # Assumption 1 diagnostics are the smallest eigenvalues of these kernels
    np.testing.assert_allclose(sol.sigma_min_eig, np.linalg.eigvalsh(sol.sigma)[:, 0], rtol=1e-8, atol=1e-12)
    assert np.all(sol.sigma_min_eig > 0) and np.all(sol.theta_min_eig > 0)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_test_inputs_do_not_feed_the_update_and_share_the_law():
    X, Y = _data(4)
    kw = dict(depth=3, particles=2048, activation="tanh", lr=0.5, dtype=jnp.float64, eigenvalues=False)
    a = nfd.solve(X, Y, **kw)
    b = nfd.solve(X, Y, X_test=X, **kw)
    # evaluation never changes training (equal up to the summation order of larger matmuls)
    np.testing.assert_allclose(a.outputs, b.outputs, rtol=1e-12, atol=1e-14)
    assert b.test_outputs.shape == (4, 4)
    # the test path of x^(k) before step k has the law of the training path of x^(k):
    # the two particle estimates differ only by Monte-Carlo error (8 particle seeds).
    runs = [nfd.solve(X, Y, X_test=X, seed=s, **kw) for s in range(8)]
    diff = np.array([np.diag(r.test_outputs) - r.outputs for r in runs])
    assert np.all(np.abs(diff.mean(0)) <= Z * _se(diff) + 1e-12), (diff.mean(0), _se(diff))


@pytest.mark.usefixtures("x64")  # float64 reference
def test_frozen_everything_equals_zero_learning_rate():
    X, Y = _data(3)
    kw = dict(depth=2, particles=512, activation="tanh", dtype=jnp.float64, eigenvalues=False)
    a = nfd.solve(X, Y, lr=0.7, frozen=("input", "hidden", "output"), **kw)
    b = nfd.solve(X, Y, lr=0.0, **kw)
    np.testing.assert_array_equal(a.outputs, b.outputs)


# ---------------------------------------------------------------------------------------------
# initialisation: closed-form kernel recursion
# ---------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.parametrize("backward", ["gia", "exact"])
def test_kernels_at_initialisation_match_deterministic_recursion(backward):
    """With lr = 0 every sample sees the initial network: Σ_{ℓ-1} and Θ_ℓ over two inputs must
    equal the n → ∞ depth-L recursion (discrete_init_kernels) within the particle error."""
    X, Y = _data(2, seed=3)
    L, runs = 4, 12
    ref = discrete_init_kernels(X, depth=L, activation="tanh")
    act = nfd.get_activation("tanh")
    sig_ref = np.stack([np.asarray(act.gram(ref.Q[l])) for l in range(L)])  # E[φ(h_{ℓ-1})φ(h_{ℓ-1})ᵀ]
    the_ref = ref.Theta[1:]
    sols = [nfd.solve(X, Y, depth=L, particles=2048, activation="tanh", lr=0.0, backward=backward, seed=s,
                      dtype=jnp.float64, eigenvalues=False) for s in range(runs)]
    sig = np.array([s.sigma for s in sols])
    the = np.array([s.theta for s in sols])
    # Z standard errors of the 12-run mean (plus a float floor for the exactly-zero spread at layer 0)
    assert np.all(np.abs(sig.mean(0) - sig_ref) <= Z * _se(sig) + 1e-9)
    assert np.all(np.abs(the.mean(0) - the_ref) <= Z * _se(the) + 1e-9)


# ---------------------------------------------------------------------------------------------
# training: finite networks (fast version; the slow suite covers activations, widths, options)
# ---------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")  # float64 reference
def test_both_modes_match_their_finite_networks_and_differ_from_each_other():
    X, Y = _data(4)
    kw = dict(depth=4, activation="tanh", lr=1.0)
    lim = {m: _runs(X, Y, 4, particles=4096, backward=m, dtype=jnp.float64, **kw) for m in ("gia", "exact")}
    n1, n2 = 128, 256
    fins = {m: [nfd.simulate(X, Y, width=n, seeds=48, seed=i, backward=m, **kw) for i, n in enumerate((n1, n2))]
            for m in ("decoupled", "coupled")}
    fin = {m: f[1] for m, f in fins.items()}
    for lm, fm in (("gia", "decoupled"), ("exact", "coupled")):
        # the finite-width bias is O(1/n): Richardson in 1/n over two independent widths (distinct
        # base seeds), a = (n2 m2 − n1 m1)/(n2 − n1), SE from the seed means' SEs; compared with the
        # 4-run particle mean within Z combined standard errors (no fitted bias allowance)
        (m1, s1), (m2, s2) = [(f.mean, f.stderr) for f in fins[fm]]
        a = (n2 * m2 - n1 * m1) / (n2 - n1)
        a_se = np.sqrt((n2 * s2) ** 2 + (n1 * s1) ** 2) / (n2 - n1)
        tol = Z * np.sqrt(a_se**2 + _se(lim[lm]) ** 2)
        assert np.all(np.abs(lim[lm].mean(0) - a) <= tol), (lm, lim[lm].mean(0), a, tol)
    # the two modes are distinguishable: after three steps the paired gap (same particle seeds)
    # exceeds Z standard errors, so neither finite comparison above could pass with the other mode
    gap = lim["exact"][:, -1] - lim["gia"][:, -1]
    assert abs(gap.mean()) > Z * gap.std(ddof=1) / math.sqrt(gap.size), gap
    cross = lim["gia"].mean(0)[-1] - fin["coupled"].mean[-1]
    assert abs(cross) > Z * math.hypot(fin["coupled"].stderr[-1], _se(lim["gia"])[-1]), cross


# ---------------------------------------------------------------------------------------------
# failure handling
# ---------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")  # float64 reference
def test_duplicate_samples_are_regularised_or_raise():
    X, Y = _data(2)
    X = np.repeat(X, 2, axis=0)  # identical samples within one mini-batch: Σ and Θ are singular
    Y = np.repeat(Y, 2)
    kw = dict(depth=2, particles=512, activation="tanh", lr=0.5, batch_size=2, dtype=jnp.float64)
    with pytest.warns(UserWarning, match="near-singular"):
        sol = nfd.solve(X, Y, on_singular="warn", **kw)
    assert np.all(np.isfinite(sol.outputs))
    assert sol.dropped_pivots[0] > 0 and sol.dropped_pivots[1] > 0
    # identical samples get identical paths, hence identical outputs
    np.testing.assert_allclose(sol.outputs[0::2], sol.outputs[1::2], rtol=1e-9)
    with pytest.raises(nfd.SingularCovarianceError) as e:
        nfd.solve(X, Y, on_singular="raise", **kw)
    assert e.value.step == 0


def test_relu_zero_input_does_not_produce_nan():
    X = np.zeros((3, 2))
    X[2] = 1e-3
    Y = np.array([0.5, -0.5, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sol = nfd.solve(X, Y, depth=3, particles=256, activation="relu", lr=0.3, backward="exact")
    assert np.all(np.isfinite(sol.outputs)) and np.all(np.isfinite(sol.sigma))


def test_divergence_reports_the_step():
    """The exact step, by construction (float32): the output at step 0 does not depend on lr or
    y, so it is finite; the first update carries lr·(y_0 − f_0) ≈ 1e4·3e38, beyond float32's
    3.4e38 by a factor 1e4 (more than any O(1) kernel or 1/particles factor can take back), so
    the output at step 1 is not finite (inf, or NaN from inf·0)."""
    X, _ = _data(6)
    Y = np.zeros(6)
    Y[0] = 3e38
    kw = dict(depth=2, particles=256, activation="identity", lr=1e4, dtype=jnp.float32)
    with pytest.raises(nfd.DivergenceError) as e:
        nfd.solve(X, Y, **kw)
    assert e.value.step == 1
    with pytest.warns(UserWarning, match="diverged"):
        sol = nfd.solve(X, Y, on_divergence="return", eigenvalues=False, **kw)
    assert np.isfinite(sol.outputs[0]) and not np.isfinite(sol.outputs[1])


# ---------------------------------------------------------------------------------------------
# slow statistical checks
# ---------------------------------------------------------------------------------------------
SLOW_CASES = [
    # (activation, extra options)
    ("identity", {}),
    ("tanh", {}),
    ("relu", {}),
    ("identity", dict(frozen=("input", "output"))),
    ("tanh", dict(batch_size=2)),
    ("tanh", dict(loss="logistic")),
]


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.slow
@pytest.mark.parametrize("activation, opts", SLOW_CASES)
@pytest.mark.parametrize("mode", ["gia", "exact"])
def test_limit_matches_finite_networks_with_width_trend(activation, opts, mode):
    """Two widths (128, 512) × 96 seeds, independent (distinct base seeds); the 1/n extrapolation
    a of mean(n) = a + b/n must agree with the limit within Z combined standard errors.  (A direct
    comparison of the widest networks would need a bias allowance that nothing independent fixes,
    so there is none.)"""
    X, Y = _data(6, seed=7)
    if opts.get("loss") == "logistic":
        Y = (Y > 0).astype(float)
    L = 4
    kw = dict(depth=L, activation=activation, lr=0.4, **opts)
    lim = _runs(X, Y, 6, particles=8192, backward=mode, dtype=jnp.float64, **kw)
    fm = "decoupled" if mode == "gia" else "coupled"
    widths = (128, 512)
    fins = [nfd.simulate(X, Y, width=n, seeds=96, seed=i, backward=fm, dtype=jnp.float64, **kw)
            for i, n in enumerate(widths)]
    lm, lse = lim.mean(0), _se(lim)
    m1, m2 = fins[0].mean, fins[1].mean
    s1, s2 = fins[0].stderr, fins[1].stderr
    n1, n2 = widths
    # a = (n2 m2 − n1 m1)/(n2 − n1): the intercept of the line through (1/n1, m1), (1/n2, m2)
    a = (n2 * m2 - n1 * m1) / (n2 - n1)
    a_se = np.sqrt((n2 * s2) ** 2 + (n1 * s1) ** 2) / (n2 - n1)
    assert np.all(np.abs(a - lm) <= Z * np.sqrt(a_se**2 + lse**2)), (a, lm, a_se)


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.slow
def test_euler_maruyama_error_decays_with_fitted_order():
    """|f̂_L − f̂_64| after two updates (tanh, η_c = 1) for L = 1..8, with common random numbers
    (``noise_depth=64``: every depth is driven by the same Brownian path, so the paired
    difference carries little particle noise).  The weak Euler–Maruyama order is 1.
    Measured (8 runs of 16384 particles): errors ≈ 5.1e-3, 3.6e-3, 1.6e-3, 7e-4 with paired
    standard errors ≈ 1.1e-3, 6e-4, 1.5e-4, 1e-4; fitted slope ≈ −0.95."""
    X, Y = _data(3, seed=2)
    # backward="gia": the measurement above was of the published recursion (the default before
    # nfd.solve's default became "exact")
    kw = dict(activation="tanh", lr=1.0, particles=16384, dtype=jnp.float64, noise_depth=64, backward="gia")
    runs = 8
    ref = _runs(X, Y, runs, depth=64, **kw)[:, -1]
    Ls = [1, 2, 4, 8]
    errs, ses = [], []
    for L in Ls:
        d = _runs(X, Y, runs, depth=L, **kw)[:, -1] - ref  # paired by seed
        errs.append(abs(d.mean()))
        ses.append(d.std(ddof=1) / math.sqrt(runs))
    errs, ses = np.array(errs), np.array(ses)
    assert np.all(errs[1:] > Z * ses[1:]), (errs, ses)  # L = 2, 4, 8 resolved above the particle noise
    slope = np.polyfit(np.log(Ls), np.log(errs), 1)[0]
    # the least-squares slope is Σ c_i log e_i with c_i = (x_i − x̄)/Σ(x − x̄)²; the SE of log e_i is
    # se_i/e_i (delta method), the depths' errors are independent runs, so SE² = Σ c_i² (se_i/e_i)²;
    # theory order 1 within 3 of these SEs (the O(1/L²) remainder and f̂_64's own O(1/64) error are
    # not in this SE: FINDING, a failure here may be them rather than the order)
    x = np.log(Ls)
    c = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    se_slope = math.sqrt(((c * ses / errs) ** 2).sum())
    assert abs(slope + 1.0) <= 3 * se_slope, (slope, se_slope, errs, ses)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_noise_depth_validation_and_default():
    X, Y = _data(2)
    kw = dict(depth=2, particles=128, activation="tanh", lr=0.5, dtype=jnp.float64, eigenvalues=False)
    with pytest.raises(ValueError, match="noise_depth"):
        nfd.solve(X, Y, noise_depth=3, **kw)
    # The default is documented as noise_depth = depth (each layer's normals drawn directly).  Comparing
    # the default with an explicit noise_depth=2 (= depth) would pass by construction; instead check
    # the recorded default, and that refining the Brownian path (noise_depth=4) changes the draws.
    default = nfd.solve(X, Y, **kw)
    assert default.config["noise_depth"] == kw["depth"]
    refined = nfd.solve(X, Y, noise_depth=4, **kw)
    assert refined.config["noise_depth"] == 4
    assert not np.array_equal(default.outputs, refined.outputs)
