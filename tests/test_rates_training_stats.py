"""The estimators of benchmarks/studies/rates_training.py against synthetic data with a known answer:
the jackknife interval of the paired depth-error slope covers the true exponent at its nominal rate,
and the control-variate mean is unbiased with the variance reduction 1/(1 − ρ²) theory gives."""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks", "studies"))

import rates_training as rt  # noqa: E402


def _synthetic(rng, R=32, depths=(1, 2, 4, 8, 16, 32, 64), K=4):
    """Per-replicate paired errors c/L + replicate noise that is shared across depths (as with a common
    f̂_∞) plus a depth-specific part shrinking like 1/L."""
    L = np.asarray(depths, float)
    c = np.array([0.0, 0.05, -0.08, 0.12])[:K]
    common = 0.002 * rng.standard_normal((R, 1, K))
    own = 0.05 * rng.standard_normal((R, len(L), K)) / L[None, :, None]
    return c[None, None, :] / L[None, :, None] + common + own


def test_jackknife_interval_covers_the_true_slope_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    depths = (1, 2, 4, 8, 16, 32, 64)
    # the population slope of the noiseless errors (the fit is on |mean| averaged over steps, exactly −1 here)
    hits, n = 0, 300
    for _ in range(n):
        f = rt.jackknife_fit(depths, _synthetic(rng), 2)
        hits += f["slope_ci95"][0] <= -1.0 <= f["slope_ci95"][1]
    # 95 % nominal; binomial s.e. at n = 300 is 0.013; the jackknife of a nonlinear statistic is approximate
    assert 0.88 <= hits / n <= 0.995, hits / n


def test_control_variate_is_unbiased_and_reduces_variance_as_theory_says():
    rng = np.random.default_rng(1)
    S, K, reps = 400, 3, 300
    rho = 0.9
    means = []
    for _ in range(reps):
        C0 = rng.standard_normal((S, K))  # mean exactly 0, like f^(0)
        F = 1.0 + rho * C0 + np.sqrt(1 - rho**2) * rng.standard_normal((S, K))
        means.append(rt.control_variate(F, C0).mean(0))
    means = np.array(means)
    se = means.std(0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(means.mean(0) - 1.0) < 4 * se)
    # variance of the CV mean ≈ (1 − ρ²)/S (plus O(K/S²) from estimating β)
    ratio = means.var(0, ddof=1) / ((1 - rho**2) / S)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio
