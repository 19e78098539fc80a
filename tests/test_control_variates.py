"""The machinery of benchmarks/control_variates.py (issue 18 item 1, control variates with known means).

Checked without the solver: the Gauss–Hermite means E[φ(u_a)φ(u_b)] against closed forms; every
control feature has its stated known mean (z-scores over independent systems within a family-wise
0.1 % bound); cross-fitting is unbiased and reaches the oracle reduction on synthetic data with a
known answer.
"""

import math
import os
import sys

import numpy as np
from scipy import special, stats

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks", "studies"))

import control_variates as cv  # noqa: E402
import variance_reduction as vr  # noqa: E402
from rates_training import data  # noqa: E402

ORDER = 192  # the script's default
# round-off bound of a 2-d quadrature: ORDER² terms, each |w_i w_j f f| ≤ 1 (weights sum to 1, |φ| ≤ Q or 1)
ROUND = ORDER**2 * np.finfo(np.float64).eps


def _Q():
    X, _ = data(vr.K, vr.D_IN, 0)
    X = np.asarray(X, np.float64)
    return X, X @ X.T / vr.D_IN


def test_gauss_pair_mean_against_closed_forms():
    _, Q = _Q()
    # identity: E[u_a u_b] = Q_ab (Gauss–Hermite of order ≥ 2 is exact for quadratics)
    got = cv.gauss_pair_mean(lambda u: u, Q, ORDER)
    assert np.max(np.abs(got - Q)) <= ROUND * np.max(np.abs(Q)) * 4
    # erf: E[erf(u_a) erf(u_b)] = (2/π) arcsin(2Q_ab / √((1 + 2Q_aa)(1 + 2Q_bb)))  (Williams 1997)
    d = np.diag(Q)
    want = 2 / np.pi * np.arcsin(2 * Q / np.sqrt(np.outer(1 + 2 * d, 1 + 2 * d)))
    got = cv.gauss_pair_mean(special.erf, Q, ORDER)
    # bound: round-off (ROUND) plus the quadrature error, estimated as the change from half the order
    # (geometric convergence for an entire function: the error at ORDER is below that change)
    half = cv.gauss_pair_mean(special.erf, Q, ORDER // 2)
    assert np.max(np.abs(got - want)) <= 2 * ROUND + np.max(np.abs(half - got))


def test_features_have_their_known_means():
    X, Q = _Q()
    Epp = cv.gauss_pair_mean(np.tanh, Q, ORDER)
    S, P = 300, 256
    rng = np.random.default_rng(20261201)
    rows = {g: [] for g in ("moments", "init", "path", "noise")}
    for _ in range(S):
        U, v, Z = vr._gaussians("probe_iid", P, rng)
        for g, x in cv.features(U, v, Z, X, Epp).items():
            rows[g].append(x)
    F = np.concatenate([np.stack(rows[g]) for g in rows], axis=1)  # (S, n)
    n = F.shape[1]
    t = F.mean(0) / (F.std(0, ddof=1) / math.sqrt(S))
    # family-wise 0.1 %: Bonferroni over the n features, Student-t with S − 1 dof
    bound = stats.t.ppf(1 - 0.001 / (2 * n), S - 1)
    assert np.max(np.abs(t)) <= bound, (np.argmax(np.abs(t)), np.max(np.abs(t)), bound)
    # power: the same draws with E[φφ] of the wrong activation (erf's instead of tanh's) are rejected
    wrong = cv.gauss_pair_mean(special.erf, Q, ORDER)
    Fw = np.stack([cv.features(*vr._gaussians("probe_iid", P, np.random.default_rng([9, s])), X, wrong)["init"]
                   for s in range(S)])
    tw = Fw.mean(0) / (Fw.std(0, ddof=1) / math.sqrt(S))
    assert np.max(np.abs(tw)) > bound


def test_crossfit_unbiased_and_reaches_the_oracle_reduction():
    rng = np.random.default_rng(7)
    S, m, K = 4000, 5, 3
    C = rng.normal(size=(S, m))  # known mean 0
    beta = rng.normal(size=(m, K))
    e = rng.normal(size=(S, K)) * np.array([0.5, 1.0, 2.0])
    f = 1.5 + C @ beta + e
    fcv = cv.crossfit(C, f)
    r = cv.reduction(f, fcv, n_boot=300)
    true_var_f = (beta**2).sum(0) + np.array([0.5, 1.0, 2.0]) ** 2
    oracle_last = math.sqrt(true_var_f[-1] / 4.0)
    oracle_rms = math.sqrt(true_var_f.mean() / np.mean(np.array([0.5, 1.0, 2.0]) ** 2))
    assert abs(r["last"] - oracle_last) <= 4 * r["last_se"], (r["last"], oracle_last, r["last_se"])
    assert abs(r["rms"] - oracle_rms) <= 4 * r["rms_se"], (r["rms"], oracle_rms, r["rms_se"])
    # unbiased: the held-out correction has mean 0 (β from other folds, controls of known mean 0)
    d = fcv - f
    z = d.mean(0) / (d.std(0, ddof=1) / math.sqrt(S))
    assert np.max(np.abs(z)) <= stats.norm.ppf(1 - 0.001 / (2 * K))
