"""Differentiable limits: AD gradients of the NFD limit loss against central finite differences.

Tolerances: the central difference D(h) = (ℒ(x+h) − ℒ(x−h))/2h has truncation error c·h² + O(h⁴)
and round-off ≈ ε·|ℒ|/h.  Comparing D(h) with D(2h) measures the truncation error of D(h) as
|D(2h) − D(h)|/3 (Richardson).  The AD derivative must agree with D(h) within 4× that estimate
plus 100 ε |ℒ|/h round-off, plus 1e-9·|D| for the h⁴ term the estimate ignores — a tolerance that
shrinks with h and has nothing to do with what AD returns.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd._grad import limit_loss_and_grad, limit_loss_fn, optimal_lr

# float64 throughout (round-off comparisons / the Γ/C recursion): 64-bit on for this file only
pytestmark = pytest.mark.usefixtures("x64")

EPS = float(jnp.finfo(jnp.float64).eps)


def _data(K=4, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    return X, np.tanh(X[:, 0] - 0.5 * X[:, 1])


def _fd_check(fn, x, ad, h):
    """Central differences of a scalar fn of one variable at x against the AD value ad."""
    d1 = (fn(x + h) - fn(x - h)) / (2 * h)
    d2 = (fn(x + 2 * h) - fn(x - 2 * h)) / (4 * h)
    trunc = abs(d2 - d1) / 3.0
    val = abs(fn(x))
    tol = 4.0 * trunc + 100.0 * EPS * val / h + 1e-9 * abs(d1)
    assert abs(ad - d1) <= tol, (ad, d1, tol)
    return d1


KW = dict(depth=2, particles=128, activation="tanh", dtype=jnp.float64)


def test_forward_mode_gradient_matches_finite_differences_exact_mode():
    X, Y = _data()
    g = limit_loss_and_grad(X, Y, lr=0.5, T=1.0, backward="exact", **KW)
    fn = limit_loss_fn(X, Y, backward="exact", **KW)
    assert g.loss == pytest.approx(float(fn(0.5, 1.0)), rel=1e-12)
    # the loss equals the solver's own online loss on the same particles
    sol = nfd.solve(X, Y, lr=0.5, T=1.0, backward="exact", seed=0, **KW)
    np.testing.assert_allclose(g.loss, np.mean(sol.losses), rtol=1e-10)
    d_lr = _fd_check(lambda a: float(fn(a, 1.0)), 0.5, g.d_lr, 1e-3)
    d_T = _fd_check(lambda t: float(fn(0.5, t)), 1.0, g.d_T, 1e-3)
    # both derivatives are genuinely non-zero here (the check is not 0 ≈ 0)
    assert abs(d_lr) > 1e-3 and abs(d_T) > 1e-3


def test_reverse_mode_jax_grad_matches_finite_differences_test_objective():
    X, Y = _data()
    rng = np.random.default_rng(1)
    Xt = rng.normal(size=(3, 2))
    Yt = np.tanh(Xt[:, 0] - 0.5 * Xt[:, 1])
    fn = limit_loss_fn(X, Y, backward="gia", objective="test", X_test=Xt, Y_test=Yt, **KW)
    g_lr, g_T = jax.jit(jax.grad(fn, argnums=(0, 1)))(0.7, 1.5)
    _fd_check(lambda a: float(fn(a, 1.5)), 0.7, float(g_lr), 1e-3)
    _fd_check(lambda t: float(fn(0.7, t)), 1.5, float(g_T), 1e-3)
    # the "test" objective is the loss after all K updates: the solver's test outputs recorded
    # before an appended (K+1)-th step are exactly those (the loss is the mean over the replicate
    # systems of each one's loss)
    sol = nfd.solve(np.concatenate([X, X[-1:]]), np.concatenate([Y, Y[-1:]]), X_test=Xt, lr=0.7, T=1.5, seed=0,
                    backward="gia", **KW)
    np.testing.assert_allclose(float(fn(0.7, 1.5)), np.mean(0.5 * (sol.replicate_test_outputs[:, -1] - Yt) ** 2),
                               rtol=1e-10)


def test_bad_input_is_rejected_before_work():
    X, Y = _data()
    with pytest.raises(ValueError, match="objective"):
        limit_loss_fn(X, Y, objective="final", **KW)
    with pytest.raises(ValueError, match="X_test"):
        limit_loss_fn(X, Y, objective="test", **KW)
    with pytest.raises(ValueError, match="backward"):
        limit_loss_fn(X, Y, backward="both", **KW)
    with pytest.raises(ValueError, match="mode"):
        limit_loss_and_grad(X, Y, lr=0.5, mode="sideways", **KW)
    with pytest.raises(ValueError, match="lr"):
        limit_loss_and_grad(X, Y, lr=-1.0, **KW)
    with pytest.raises(ValueError, match="T"):
        limit_loss_and_grad(X, Y, lr=0.5, T=0.0, **KW)
    with pytest.raises(ValueError, match="bracket"):
        optimal_lr(X, Y, bracket=(1.0, 0.5), **KW)
    with pytest.raises(nfd.MemoryEstimateError):
        limit_loss_and_grad(X, Y, lr=0.5, mode="reverse", max_memory=1000, **KW)


@pytest.mark.slow
def test_optimal_lr_is_a_stationary_point_and_beats_neighbours():
    X, Y = _data(K=8)
    opt = optimal_lr(X, Y, bracket=(0.05, 20.0), iterations=12, **KW)
    assert opt.interior
    fn = limit_loss_fn(X, Y, **KW)
    # after 12 bisections the minimiser is within a factor exp(log(400)·2^-13) ≈ 1.0007 of opt.lr,
    # so the derivative changes sign between 0.95·η* and 1.05·η* and the loss there is higher
    lo = limit_loss_and_grad(X, Y, lr=opt.lr * 0.95, **KW)
    hi = limit_loss_and_grad(X, Y, lr=opt.lr * 1.05, **KW)
    assert lo.d_lr < 0 < hi.d_lr
    for f in (0.95, 1.05):
        assert opt.loss <= float(fn(opt.lr * f, 1.0))


@pytest.mark.slow
def test_optimal_lr_treats_divergence_as_too_large():
    X, Y = _data()
    # the limit diverges (NaN) at η_c = 1e16 (checked by the DivergenceError below); the search must
    # move away from it instead of failing
    with pytest.raises(nfd.DivergenceError):
        limit_loss_and_grad(X, Y, lr=1e16, **KW)
    opt = optimal_lr(X, Y, bracket=(0.05, 1e16), grid=4, iterations=2, **KW)
    assert opt.lr < 1e16 and np.isfinite(opt.loss)


@pytest.mark.slow
def test_optimal_lr_finds_the_best_of_two_minima_on_the_scan():
    X, Y = _data(K=8)
    fn = limit_loss_fn(X, Y, **KW)
    rates = np.geomspace(0.05, 20.0, 40)
    losses = np.array([float(fn(a, 1.0)) for a in rates])
    opt = optimal_lr(X, Y, bracket=(0.05, 20.0), grid=16, iterations=10, **KW)
    # the refined optimum is at least as good as the best of a 40-point scan, up to the scan's
    # own resolution (the loss varies by less than this across one scan cell near the optimum)
    j = int(np.argmin(losses))
    cell = np.max(np.abs(np.diff(losses[max(j - 1, 0): j + 2])))
    assert opt.loss <= losses.min() + cell
