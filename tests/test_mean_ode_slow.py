"""Slow statistical checks of the Neural Mean ODE family (run with ``pytest -m slow``).

Sizes follow benchmarks/mean_ode.py (§2.4 setting: n = 10, D = 10, tanh MLP units)."""

import math

import jax.numpy as jnp
import numpy as np
import scipy.stats
import pytest

import nfd
from nfd.meanode import simulate_resnet, simulate_resnet_network, solve_mean_ode

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("x64")]  # float64 references: 64-bit on for this file only
F64 = jnp.float64


def _data(n=10, D=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.normal(size=(n, D))


def test_lazy_resnets_approach_the_tangent_ode_then_fluctuations_grow_like_alpha():
    """Theorem 2: error O(1/α + 1/L + α/√(LM))."""
    X, Y = _data()
    K, L, M, S = 30, 64, 256, 6
    tan = solve_mean_ode(X, Y, steps=K, lazy=True, grid=128, particles=512, replicates=2, richardson=True)
    se_tan = float(np.sqrt(np.mean(tan.outputs_stderr[-1] ** 2)))
    err, fluct, d = {}, {}, {}
    for a in (1.0, 4.0, 16.0):
        r = simulate_resnet(X, Y, depth=L, hidden=M, steps=K, seeds=S, alpha=a, dtype=F64)
        d[a] = r.outputs[:, -1] - tan.outputs[-1]  # (S, n, D)
        err[a] = math.sqrt(np.mean(d[a] ** 2))
        fluct[a] = math.sqrt(np.mean(d[a].var(0, ddof=1)))
    assert se_tan < 0.1 * err[4.0]
    # the 1/α side: at α = 1 the error is a bias ≈ 0.14 (≫ the fluctuation 0.008); at α = 4 it must
    # have dropped by more than 2 (measured ≈ 4.6×; the bias alone decays like α^-1.7).
    assert err[4.0] < 0.5 * err[1.0], err
    # the α/√(LM) side: fluctuations grow linearly in α (theory: ratio 4 from α = 4 to 16).  The
    # ratio's standard error is a jackknife over the seeds, deleting one seed from both runs at once
    # (the runs share seeds, so they are correlated, which the joint jackknife keeps); with S = 6
    # seeds the jackknife SE has S − 1 = 5 degrees of freedom, so the bound is Student's t quantile
    # for a two-sided 0.27% false-failure rate (the Gaussian 3σ rate), t = 4.9, times that SE.
    def ratio(keep):
        return math.sqrt(np.mean(d[16.0][keep].var(0, ddof=1)) / np.mean(d[4.0][keep].var(0, ddof=1)))

    R = ratio(np.arange(S))
    jk = np.array([ratio(np.delete(np.arange(S), s)) for s in range(S)])
    se_R = math.sqrt((S - 1) / S * ((jk - jk.mean()) ** 2).sum())
    t = scipy.stats.t.ppf(1 - 0.0027 / 2, S - 1)
    assert abs(R - 4.0) <= t * se_R, (R, se_R, fluct)


def test_phase_diagram_feature_movement_lazy_and_semi_complete():
    """Theorem 3: ‖U_K − U_0‖ = Θ(min(1, 1/a)), and ‖U_K − Ũ_K‖ = O(a) (Ũ: σ_v = 0 dynamics)."""
    D, L, M, K, S = 16, 200, 10, 50, 3
    X, Y = _data(D=D, seed=1)
    runs = {}
    for a in (0.0, 0.01, 0.03, 1.0, 10.0):
        net = nfd.MeanODEResNet.balanced(D, a, depth=L, hidden=M)
        runs[a] = simulate_resnet_network(net, X, Y, steps=K, seeds=S, keep_weights=True, dtype=F64)
    move = {a: float(r.u_displacement[:, -1].mean()) for a, r in runs.items()}
    # lazy side: the movement falls like 1/a (benchmark: 2.95 → 0.33, ratio 0.11).  A factor 2 band
    # around 1/10 covers the O(1) constant of Θ(·), not the seeds (s.e. of each mean < 1%).
    # FINDING: this band and the ±10% band on the linear ratio below are not derived from an
    # independent source (Theorem 3 gives rates, not constants, and no bound on the O(a²) correction);
    # they are judgement, recorded here rather than hidden.
    assert 0.05 < move[10.0] / move[1.0] < 0.2, move
    # complete movement at a = 1 is Θ(1)
    assert move[1.0] > 1.0
    # semi-complete side: distance to the σ_v = 0 dynamics is linear in a (ratio 3 for a: 0.01 → 0.03)
    dist = {a: float(np.sqrt(np.mean((runs[a].weights[0] - runs[0.0].weights[0]) ** 2))) for a in (0.01, 0.03)}
    assert 2.7 < dist[0.03] / dist[0.01] < 3.3, dist
    assert dist[0.01] < 0.05 * move[0.01]
