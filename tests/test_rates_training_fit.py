"""The width-bias estimator of benchmarks/studies/rates_training.py on synthetic data with a known answer.

Synthetic "seeds": outputs at 5 widths and 3 steps, E f_{n,k} = a_k + c_k n^(−α) with α = 1, noise with a
component shared across widths (like the study's common random numbers) and a solver with replicates
whose mean is a_k.  Checked: the GLS χ² has its expected mean (dof) when the model is right; the
exponent estimate is unbiased within 4 of its Monte-Carlo standard errors; the 95 % profile interval
covers the truth at a rate consistent with 95 % (binomial bound); a pure-1/n model is accepted and a
wrong exponent (1/n²) is rejected on these data.
"""

import os
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks", "studies"))

import rates_training as rt  # noqa: E402

NS = np.array([32, 64, 128, 256, 512], float)
A = np.array([0.3, -1.2, 0.7])
C = np.array([2.0, -3.0, 4.0])


def _synthetic(rng, S=1000, R=16, alpha=1.0):
    K = len(A)
    shared = rng.normal(size=(S, 1, K))  # common to all widths of a seed
    own = rng.normal(size=(S, len(NS), K))
    scale = 2.0 / np.sqrt(NS)[None, :, None]  # one network's fluctuation ∝ n^-1/2
    F = A + C * NS[None, :, None] ** (-alpha) + scale * (0.7 * shared + 0.7 * own)
    fr = A + 0.05 * rng.normal(size=(R, K))
    return [F[:, i] for i in range(len(NS))], fr


def test_alpha_unbiased_and_profile_interval_covers():
    rng = np.random.default_rng(0)
    grid = np.linspace(0.4, 1.8, 141)
    N = 40
    est, cover, p1 = [], 0, []
    for _ in range(N):
        G, fr = _synthetic(rng)
        f = rt.width_bias_fit(NS, G, fr, grid=grid, n_boot=0)
        est.append(f["alpha"])
        lo, hi = f["alpha_ci95_profile"]
        cover += lo <= 1.0 <= hi
        p1.append(f["models"]["1/n"]["p"])
    est = np.array(est)
    se = est.std(ddof=1) / np.sqrt(N)
    assert abs(est.mean() - 1.0) <= 4 * se + 0.01  # + grid step
    # coverage: fewer than this many of N = 40 at a true 95 % rate has probability < 1e-3
    assert cover >= stats.binom.ppf(1e-3, N, 0.95)
    # the right model is not rejected: p-values of a correct linear GLS model are uniform
    assert np.mean(np.array(p1) < 0.05) <= stats.binom.ppf(1 - 1e-3, N, 0.05) / N


def test_wrong_exponent_is_rejected():
    rng = np.random.default_rng(1)
    G, fr = _synthetic(rng, S=4000)
    f = rt.width_bias_fit(NS, G, fr, grid=np.linspace(0.4, 2.4, 201), n_boot=20)
    lo, hi = f["alpha_ci95"]
    assert not lo <= 2.0 <= hi
    assert f["models"]["1/n"]["p"] > 1e-3  # the true model, one draw: not rejected at 1e-3
    assert f["interval_at_grid_edge"] is False
    assert f["slope"] == -f["alpha"]


def test_gls_chi2_has_mean_dof_under_the_true_model():
    """The GLS χ² of the correct linear model is χ²(dof): its mean over N draws is dof within 4 of its
    standard errors √(2 dof / N); a wrong model (1/n only, data with a 1/n² term) has a larger mean."""
    rng = np.random.default_rng(2)
    K, m = 3, (len(NS) + 1) * 3
    B = rng.normal(size=(m, m))
    Sig = B @ B.T / m * 1e-4 + 1e-6 * np.eye(m)
    W = np.linalg.inv(Sig)
    mean = np.r_[np.concatenate([A + C / n + 10 * C / n**2 for n in NS]), A]
    N = 2000
    Y = (mean[None] + (np.linalg.cholesky(Sig) @ rng.normal(size=(m, N))).T).reshape(N, len(NS) + 1, K)
    _, chi = rt._gls(NS, Y, W, (1.0, 2.0))
    dof = m - 3 * K
    assert abs(chi.mean() - dof) <= 4 * np.sqrt(2 * dof / N)
    _, chi1 = rt._gls(NS, Y, W, (1.0,))
    assert chi1.mean() > m - 2 * K + 4 * np.sqrt(2 * (m - 2 * K) / N)
