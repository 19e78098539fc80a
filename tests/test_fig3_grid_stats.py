"""The estimators of benchmarks/studies/fig3_grid.py against synthetic grids with a known answer: the
generalised least-squares fit of a/L + b/n recovers a and b at its nominal coverage, its χ² has the
χ² law, an injected non-commuting c·L/n term is detected, the iterated extrapolations are exact on
additive data and their standard errors are the spread they have, and the delta-method covariance of
the step-averaged |error| is the one it has.  Tolerances are binomial / sampling standard errors
(stated at each assert); the generator's seed is fixed only for reproducibility."""

import os
import sys

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks", "studies"))

import fig3_grid as fg  # noqa: E402

NS = np.array([32, 64, 128, 256.0])
LS = np.array([4, 8, 16, 32.0])


def _grid():
    n, L = np.meshgrid(NS, LS, indexing="ij")
    return n.ravel(), L.ravel()


def _se(n, L):
    return 0.002 + 0.05 / np.sqrt(n)  # heteroscedastic, larger at small width (as the seeds' spread)


def test_fit_recovers_a_and_b_at_nominal_coverage_and_chi2_has_its_law():
    rng = np.random.default_rng(0)
    n, L = _grid()
    a, b = 0.05, 3.0
    se = _se(n, L)
    reps = 400
    hit_a = hit_b = 0
    chi2, p = [], []
    for _ in range(reps):
        y = a / L + b / n + se * rng.standard_normal(len(n))
        f = fg.fit_grid(n, L, y, se**2, ("1/L", "1/n"))
        hit_a += abs(f["coef"]["1/L"] - a) <= 1.96 * f["coef_se"]["1/L"]
        hit_b += abs(f["coef"]["1/n"] - b) <= 1.96 * f["coef_se"]["1/n"]
        chi2.append(f["chi2"])
        p.append(f["p_value"])
        assert f["dof"] == len(n) - 2
    tol = 4 * np.sqrt(0.95 * 0.05 / reps)  # 4 binomial s.e. of a 95 % coverage from 400 trials
    assert abs(hit_a / reps - 0.95) < tol and abs(hit_b / reps - 0.95) < tol, (hit_a, hit_b)
    # mean χ² = dof = 14, its s.e. over 400 trials √(2·14/400) = 0.26
    assert abs(np.mean(chi2) - 14) < 4 * np.sqrt(2 * 14 / reps)
    assert abs(np.mean(np.array(p) < 0.05) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / reps)


def test_normalised_residuals_and_exact_data():
    n, L = _grid()
    y = 0.05 / L + 3.0 / n
    f = fg.fit_grid(n, L, y, _se(n, L) ** 2)
    assert abs(f["coef"]["1/L"] - 0.05) < 1e-10 and abs(f["coef"]["1/n"] - 3.0) < 1e-10
    assert np.max(np.abs(f["resid_norm"])) < 1e-8 and f["chi2"] < 1e-12
    # a full covariance (shared offset, as a common f̂_∞) is used, not only its diagonal
    cov = np.diag(_se(n, L) ** 2) + 1e-4
    g = fg.fit_grid(n, L, y + 0.01, cov, ("1", "1/L", "1/n"))
    assert abs(g["coef"]["1"] - 0.01) < 1e-10


def test_injected_L_over_n_term_is_detected_and_recovered():
    rng = np.random.default_rng(1)
    n, L = _grid()
    se = _se(n, L)
    # the s.e. of c does not depend on the data: set c to 8 of them (the z > 3 detection fails with
    # probability Φ(−5) ≈ 3e-7 per trial)
    se_c = fg.fit_grid(n, L, np.zeros_like(n), se**2, ("1/L", "1/n", "L/n"))["coef_se"]["L/n"]
    c = 8 * se_c
    reps, hits = 200, 0
    for _ in range(reps):
        y = 0.05 / L + 3.0 / n + c * L / n + se * rng.standard_normal(len(n))
        fc = fg.fit_grid(n, L, y, se**2, ("1/L", "1/n", "L/n"))
        assert fc["coef"]["L/n"] / fc["coef_se"]["L/n"] > 3
        hits += abs(fc["coef"]["L/n"] - c) <= 1.96 * fc["coef_se"]["L/n"]
        # without the term the additive form does not fit (χ² with 14 dof; rejection at p < 0.01 happens in
        # most trials: checked on the mean below)
    assert abs(hits / reps - 0.95) < 4 * np.sqrt(0.95 * 0.05 / reps)
    # the additive fit's χ² is far above its dof when the term is there
    y = 0.05 / L + 3.0 / n + c * L / n
    assert fg.fit_grid(n, L, y, se**2)["chi2"] > 3 * 14


def test_iterated_limits_exact_on_additive_data_and_se_is_the_spread():
    F, a, b = 0.3, -0.05, 2.0
    n, L = np.meshgrid(NS, LS, indexing="ij")
    M = F + a / L + b / n
    V = _se(n, L) ** 2
    it = fg.iterated_limits(NS, LS, M, V)
    assert abs(it["width_first"] - F) < 1e-10 and abs(it["depth_first"] - F) < 1e-10
    assert np.allclose(it["A_L"], F + a / LS) and np.allclose(it["A_n"], F + b / NS)
    # with variances of product form V = f(n)·g(L) both orders are the same linear functional of the data
    assert np.allclose(it["coef_width_first"], it["coef_depth_first"]) and it["diff_se"] < 1e-12
    V = (0.002 + 0.05 / np.sqrt(n) + 0.02 * L / n) ** 2  # not of product form: the two orders differ
    it = fg.iterated_limits(NS, LS, M, V)
    assert it["diff_se"] > 0.05 * it["width_first_se"]
    rng = np.random.default_rng(2)
    reps = 600
    draws = np.array([[d["width_first"], d["depth_first"], d["diff"]] for d in
                      (fg.iterated_limits(NS, LS, M + np.sqrt(V) * rng.standard_normal(M.shape), V)
                       for _ in range(reps))])
    pred = np.array([it["width_first_se"], it["depth_first_se"], it["diff_se"]])
    # the sample s.d. of 600 normal draws has relative s.e. 1/√(2·599) ≈ 0.029; 4 of them
    ratio = draws.std(0, ddof=1) / pred
    assert np.all(np.abs(ratio - 1) < 4 / np.sqrt(2 * (reps - 1))), ratio
    assert np.all(np.abs(draws[:, :2].mean(0) - F) < 4 * pred[:2] / np.sqrt(reps))


def test_lin_var_matches_the_iterated_limit_se_for_one_step():
    n, L = np.meshgrid(NS, LS, indexing="ij")
    V = _se(n, L) ** 2
    it = fg.iterated_limits(NS, LS, np.zeros_like(V), V)
    cov = V[..., None, None]
    assert np.isclose(fg.lin_var(it["coef_width_first"][None], cov), it["width_first_se"] ** 2)


def test_abs_err_delta_covariance_matches_monte_carlo():
    rng = np.random.default_rng(3)
    cells, K = 5, 3
    d = np.array([[0.1, -0.2, 0.15]] * cells) * np.arange(1, cells + 1)[:, None]  # far from 0
    f = np.array([0.5, -0.3, 0.2])
    Am = rng.normal(size=(cells, K, K)) * 0.01
    cov_m = Am @ np.swapaxes(Am, 1, 2) + 1e-5 * np.eye(K)
    Af = rng.normal(size=(K, K)) * 0.01
    cov_f = Af @ Af.T + 1e-5 * np.eye(K)
    err0, cov = fg.abs_err_and_cov(f + d, cov_m, f, cov_f)
    reps = 4000
    draws = []
    for _ in range(reps):
        m = f + d + np.einsum("ckl,cl->ck", np.linalg.cholesky(cov_m), rng.standard_normal((cells, K)))
        ff = f + np.linalg.cholesky(cov_f) @ rng.standard_normal(K)
        draws.append(fg.abs_err_and_cov(m, cov_m, ff, cov_f)[0])
    emp = np.cov(np.array(draws), rowvar=False)
    sd = np.sqrt(np.diag(cov))
    # entries of a sample covariance from 4000 draws: s.e. ≈ sd_i sd_j √((1 + ρ²)/reps); 5 of them
    tol = 5 * np.outer(sd, sd) * np.sqrt(2 / reps)
    assert np.all(np.abs(emp - cov) < tol)
    assert np.allclose(err0, np.abs(d).mean(1))


def test_extrap_weights_give_the_intercept_and_chi2_pvalue_consistent():
    x = np.array([1 / 32, 1 / 64, 1 / 128, 1 / 256])
    w = fg.extrap_weights(x, np.array([4.0, 2.0, 1.0, 1.0]))
    assert abs(w.sum() - 1) < 1e-12 and abs(w @ x) < 1e-12
    g = fg.gls(np.ones((3, 1)), np.array([0.0, 1.0, 2.0]), np.ones(3))
    assert abs(g["chi2"] - 2.0) < 1e-12 and abs(g["p"] - stats.chi2.sf(2.0, 2)) < 1e-12
