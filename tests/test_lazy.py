"""Lazy-limit DMFT (Appendix G.1): infinite-depth NTK and predictor dynamics vs wide α = 1 networks."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import linregress

import nfd
from nfd.kernels import lazy_dynamics, lazy_kernels


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(6, 3))


def _sim(X, Y, Xt, *, width, depth, lr, steps, seeds, activation="relu", seed=0, frozen=()):
    N = X.shape[0]
    res = nfd.simulate(
        np.tile(X, (steps, 1)), np.tile(Y, steps), width=width, depth=depth, activation=activation, lr=lr,
        parameterization="ntk", batch_size=N, X_test=Xt, seeds=seeds, seed=seed, record=(),
        dtype=jnp.float64, frozen=frozen,
    )
    return res.outputs.reshape(seeds, steps, N), res.test_outputs


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_identity_closed_form(X):
    # φ = identity: H(t) = e^t c, G(t) = e^{T−t}, so H(T) = e^T c, input part G(0) c = e^T c,
    # hidden part ∫ G Φ = T e^T c; the finite-depth recursion gives (1+τ)^L c, (1+τ)^L c, T(1+τ)^{L−1} c.
    T = 1.5
    c = X @ X.T / 3
    k = lazy_kernels(X, activation="identity", T=T)
    np.testing.assert_allclose(k.nngp, np.exp(T) * c, rtol=1e-7)
    np.testing.assert_allclose(k.input, np.exp(T) * c, rtol=1e-7)
    np.testing.assert_allclose(k.hidden, T * np.exp(T) * c, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(k.grad_at_input, np.exp(T), rtol=1e-7)
    L = 5
    kL = lazy_kernels(X, activation="identity", T=T, depth=L)
    g = (1 + T / L) ** L
    np.testing.assert_allclose(kL.nngp, g * c, rtol=1e-12)
    np.testing.assert_allclose(kL.input, g * c, rtol=1e-12)
    np.testing.assert_allclose(kL.hidden, T * (1 + T / L) ** (L - 1) * c, rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_nngp_part_matches_nngp_kernel(X):
    k = lazy_kernels(X, activation="relu", T=1.0)
    np.testing.assert_allclose(k.nngp, nfd.nngp_kernel(X, activation="relu", T=1.0), rtol=1e-7)


def test_relu_gradient_kernel_diagonal(X):
    # ReLU: E[φ'(h)²] = 1/2 for every variance, so G(0)(x, x) = e^{T/2} exactly.
    k = lazy_kernels(X, activation="relu", T=2.0)
    np.testing.assert_allclose(np.diag(k.grad_at_input), np.e, rtol=1e-7)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_finite_depth_ntk_converges_at_rate_one_over_L(X, activation):
    # The depth-L recursion is a first-order (Riemann/Euler) scheme of the ODEs: slope −1 ± 0.1.
    K = lazy_kernels(X, activation=activation).ntk()
    Ls = np.array([16, 32, 64, 128, 256])
    err = [np.abs(lazy_kernels(X, activation=activation, depth=int(L)).ntk() - K).max() for L in Ls]
    fit = linregress(np.log(Ls), np.log(err))
    assert abs(fit.slope + 1.0) < 0.1, fit.slope


def test_flow_is_the_small_step_limit_of_gd(X):
    # GD with rate η for k steps approaches gradient flow at time ηk with error O(η); halving η
    # must halve the gap (ratio 2 ± 0.2).
    Y = np.sin(X[:, 0])
    flow = lazy_dynamics(X, Y, activation="relu", lr=1.0, times=[2.0], flow=True)
    gaps = []
    for eta in (0.02, 0.01):
        gd = lazy_dynamics(X, Y, activation="relu", lr=eta, times=[round(2.0 / eta)])
        gaps.append(np.abs(gd.mean[-1] - flow.mean[-1]).max())
        assert gaps[-1] < 0.05
    assert 1.8 < gaps[0] / gaps[1] < 2.2, gaps


def test_mean_and_variance_formulas_against_sampling(X):
    # Sample f_0 ~ N(0, H) jointly on train ∪ test, push each sample through the conditional
    # (per-network) dynamics, and compare the sample mean/variance with the closed forms.
    # 4000 samples: |Δmean| < 4 sd/√4000; variance within 4·√(2/4000) relative (Gaussian sample variance).
    Y = np.cos(X[:, 1])
    Xt = X[:2] + 0.1
    dyn = lazy_dynamics(X, Y, activation="relu", lr=0.8, steps=6, X_test=Xt)
    H = dyn.kernels.nngp
    S = 4000
    f0 = np.random.default_rng(1).multivariate_normal(np.zeros(8), H, size=S)
    f, ft = dyn.conditional(f0[:, :6], f0[:, 6:])
    for sim, mean, var in ((f, dyn.mean, dyn.var), (ft, dyn.test_mean, dyn.test_var)):
        sd = np.sqrt(var)
        assert np.all(np.abs(sim.mean(0) - mean) <= 4 * sd / np.sqrt(S) + 1e-12)
        nz = var > 1e-8
        assert np.all(np.abs(sim.var(0)[nz] / var[nz] - 1) <= 4 * np.sqrt(2 / S))


@pytest.mark.usefixtures("x64")  # float64 reference
def test_wide_networks_match_lazy_mean_dynamics():
    # Mean over seeds of finite α = 1 networks (width 256, depth 4, ReLU) vs the depth-4 lazy limit.
    # The limit's E[f_k] is deterministic; finite width adds an O(1/n) bias far below the Monte-Carlo
    # error, so each (step, point) must agree within 4 standard errors of the 24-seed mean.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, 3))
    Y = np.sin(X[:, 0])
    Xt = rng.normal(size=(2, 3))
    # Half the GD stability limit 2B/λ_max(K): the limit converges and the outputs move by O(1).
    lr = 4 / np.linalg.eigvalsh(lazy_kernels(X, activation="relu", depth=4).ntk())[-1]
    f, ft = _sim(X, Y, Xt, width=256, depth=4, lr=lr, steps=6, seeds=24)
    dyn = lazy_dynamics(X, Y, activation="relu", lr=lr, steps=6, depth=4, X_test=Xt)
    se = f.std(0, ddof=1) / np.sqrt(24)
    assert np.all(np.abs(f.mean(0) - dyn.mean) <= 4 * se), (f.mean(0) - dyn.mean) / se
    se_t = ft.std(0, ddof=1) / np.sqrt(24)
    assert np.all(np.abs(ft.mean(0) - dyn.test_mean) <= 4 * se_t)
    # Per network: given its own f_0 the limit predicts its whole trajectory up to O(1/√n).
    fc, ftc = dyn.conditional(f[:, 0], ft[:, 0])
    resid = np.sqrt(np.mean((fc - f) ** 2))
    scale = np.sqrt(np.mean((f - f[:, :1]) ** 2))  # how far the outputs move during training
    assert resid < 0.25 * scale, (resid, scale)


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.slow
def test_conditional_error_shrinks_like_one_over_sqrt_width():
    # Residual of the per-network lazy prediction ∝ n^{-1/2} (NTK fluctuations and feature motion are
    # O(1/√n) in the α = 1 parameterisation). The weighted least-squares slope over n = 64..1024
    # (independent seeds per width; SE of each log-residual by a jackknife over its 16 networks) must
    # be −0.5 within 3 of its standard errors, and 3 SEs must be below 0.5 (tell n^-1/2 from n^-1).
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4, 3))
    Y = np.sin(X[:, 0])
    Xt = rng.normal(size=(2, 3))
    lr = 4 / np.linalg.eigvalsh(lazy_kernels(X, activation="relu", depth=4).ntk())[-1]
    dyn = lazy_dynamics(X, Y, activation="relu", lr=lr, steps=6, depth=4, X_test=Xt)
    widths = [64, 128, 256, 512, 1024]
    res, se_log = [], []
    for n in widths:
        f, ft = _sim(X, Y, Xt, width=n, depth=4, lr=lr, steps=6, seeds=16, seed=n)
        fc, _ = dyn.conditional(f[:, 0], ft[:, 0])
        q = np.broadcast_to((fc - f) ** 2, f.shape).reshape(f.shape[0], -1).mean(1)  # per network
        S = q.size
        res.append(np.sqrt(q.mean()))
        jk = 0.5 * np.log((q.sum() - q) / (S - 1))
        se_log.append(np.sqrt((S - 1) / S * ((jk - jk.mean()) ** 2).sum()))
    x, y, w = np.log(widths), np.log(res), 1.0 / np.array(se_log) ** 2
    xb = (w * x).sum() / w.sum()
    slope = (w * (x - xb) * y).sum() / (w * (x - xb) ** 2).sum()
    se_slope = 1.0 / np.sqrt((w * (x - xb) ** 2).sum())
    assert 3 * se_slope < 0.5, se_slope
    assert abs(slope + 0.5) <= 3 * se_slope, (slope, se_slope, res)


@pytest.mark.usefixtures("x64")  # the construction below counts float64 overflow (1.8e308)
def test_divergence_reported_with_step(X):
    """The exact step, by construction: full-batch GD on the mean predictor, f_0 = 0,
    f_{t+1} = f_t − (lr/N)·K(f_t − y), grows along K's top eigenvector by g = lr·λ_max/N − 1 per
    step.  With g ≈ 1e80: |f_3| ~ 1e240 (finite, far below the 1e300 guard), |f_4| ~ 1e320 > 1.8e308
    (not finite), so the step is 4, whatever O(1) factors the kernel carries.  The same recursion
    run in numpy float64 confirms it."""
    Y = np.ones(6)
    K = np.asarray(lazy_dynamics(X, Y, activation="relu", lr=0.1, steps=1).ntk, np.float64)
    N = X.shape[0]
    lr = 1e80 * N / np.linalg.eigvalsh(K)[-1]
    f, first = np.zeros(N), None
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, 10):
            f = f - (lr / N) * K @ (f - Y)
            if not np.all(np.isfinite(f)):
                first = t
                break
    assert first == 4
    with pytest.raises(nfd.DivergenceError) as e:
        lazy_dynamics(X, Y, activation="relu", lr=lr, steps=10)
    assert e.value.step == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=3, times=[1]), "exactly one"),
        (dict(steps=0), "steps must"),
        (dict(steps=3, frozen=("bias",)), "frozen"),
        (dict(steps=3, lr=-1.0), "lr must"),
        (dict(times=[0.5]), "integer step"),
        (dict(steps=3, batch_size=0), "batch_size"),
    ],
)
def test_bad_input(X, kwargs, match):
    kw = dict(activation="relu", lr=0.1)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lazy_dynamics(X, np.ones(6), **kw)
    with pytest.raises(ValueError, match="Y must"):
        lazy_dynamics(X, np.ones(5), activation="relu", lr=0.1, steps=2)
