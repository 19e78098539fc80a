"""Linear ResNet after one SGD step (Appendix G.2.2, re-derived): closed form vs the depth-L
recursion, the particle solver, finite networks, and the paper's printed Eq. 93."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import linregress

import nfd
from nfd.kernels import lazy_kernels
from nfd.kernels._linear_one_step import linear_one_step, paper_eq93

CONFIGS = [
    (bw, fr)
    for bw in ("coupled", "decoupled")
    for fr in ((), ("input",), ("hidden",), ("input", "output"))
]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=3), rng.normal(size=3)
    return x0, x1


@pytest.mark.parametrize("backward, frozen", CONFIGS)
def test_depth_recursion_converges_to_closed_form(data, backward, frozen):
    # The finite-L formulas are exact infinite-width recursions; their L → ∞ limit must be the
    # closed form, approached at the first-order rate: fitted slope −1 ± 0.1 over L = 32..512.
    x0, x1 = data
    Xe = np.stack([x0, x1])
    inf = linear_one_step(x0, 1.3, Xe, lr=0.5, T=1.2, frozen=frozen, backward=backward, ts=[0.6, 1.2])
    Ls = np.array([32, 64, 128, 256, 512])
    errH, errf = [], []
    for L in Ls:
        r = linear_one_step(x0, 1.3, Xe, lr=0.5, T=1.2, depth=int(L), frozen=frozen, backward=backward)
        errH.append(np.abs(r.H1[[L // 2, L]] - inf.H1).max())
        errf.append(np.abs(r.f1 - inf.f1).max())
    for err in (errH, errf):
        if max(err) < 1e-13:  # nothing to converge (e.g. all groups frozen for this quantity)
            continue
        assert abs(linregress(np.log(Ls), np.log(err)).slope + 1) < 0.1, err


@pytest.mark.usefixtures("x64")  # float64 tolerances (closed form / round-off)
def test_first_step_output_is_ntk_times_eta_y(data):
    # Coupled network: f¹(x) = η_c y K_NTK(x₀, x), the lazy NTK of the linear net ((2+T)e^T c for
    # all groups trained), computed independently by the lazy-limit ODE solver.
    x0, x1 = data
    Xe = np.stack([x0, x1])
    r = linear_one_step(x0, 0.7, Xe, lr=0.4, T=1.5)
    K = lazy_kernels(np.stack([x0, x0, x1]), activation="identity", T=1.5).ntk()
    np.testing.assert_allclose(r.f1, 0.4 * 0.7 * K[0, 1:], rtol=1e-7)


def test_paper_setting_corrected_formula_and_printed_errors():
    # Paper's setting: T = 1, only hidden weights trained, H(0) = 1 (x₀ = x, |x|²/d = 1), χ = η₀γ₀y.
    # Corrected: H(τ) = e^τ + 2χ² e^{1+τ}(τ³/3 + τ²/2), G₀(τ) = e^{1−τ}.
    x = np.ones(2)
    chi = 0.5
    tau = np.linspace(0, 1, 11)
    r = linear_one_step(x, 1.0, lr=chi, frozen=("input", "output"), ts=tau)
    corrected = np.exp(tau) + 2 * chi**2 * np.exp(1 + tau) * (tau**3 / 3 + tau**2 / 2)
    np.testing.assert_allclose(r.H1[:, 0, 0], corrected, rtol=1e-12)
    np.testing.assert_allclose(r.G0, np.exp(1 - tau), rtol=1e-12)
    # The exact depth-L recursion converges to it: the error halves from L = 1024 to 2048 (first
    # order), and the Richardson extrapolation 2H_2048 − H_1024 cancels the 1/L term, leaving
    # O(1/L²) ≈ 1e-6 here; 1e-4 is a 100× margin and still 5000× smaller than the printed error.
    H = [
        linear_one_step(x, 1.0, lr=chi, frozen=("input", "output"), depth=L).H1[-1, 0, 0]
        for L in (1024, 2048)
    ]
    assert 1.9 < (H[0] - corrected[-1]) / (H[1] - corrected[-1]) < 2.1
    assert abs(2 * H[1] - H[0] - corrected[-1]) < 1e-4
    # ...while the printed Eq. 93 is off by O(1): its G₀ = e^{−τ}+1−e^{−1} violates ∂G₀ = −G₀.
    printed = paper_eq93(tau, eta_gamma=chi)
    assert np.abs(printed[-1] - corrected[-1]) > 0.5
    G_printed = np.exp(-tau) + 1 - np.exp(-1)
    assert np.abs(np.gradient(G_printed, tau) + G_printed).max() > 0.5


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.parametrize("backward, mode", [("coupled", "exact"), ("decoupled", "gia")])
def test_against_particle_solver(data, backward, mode):
    # Particle solver (another formulation of the same infinite-width limit). Its kernels are particle
    # means: tolerance 4 standard errors of the P-particle mean of h², f = E[g h] likewise.
    from nfd.limits._nfd import solve_particles

    x0, x1 = data
    L, P, lr, y = 6, 16384, 0.5, 1.0
    X = np.stack([x0, x1])
    sol = solve_particles(
        X, np.array([y, 0.0]), depth=L, particles=P, activation="identity", lr=lr, backward=mode,
        record_paths=True, dtype=jnp.float64, seed=7,
    )
    r = linear_one_step(x0, y, X, lr=lr, depth=L, backward=backward)
    h1 = sol.features[1]  # (L+1, P)
    est = (h1**2).mean(1)
    se = (h1**2).std(1, ddof=1) / np.sqrt(P)
    assert np.all(np.abs(est - r.H1[:, 1, 1]) <= 4 * se), (est - r.H1[:, 1, 1]) / se
    gh = sol.grads[1, -1] * h1[-1]
    assert abs(sol.outputs[1] - r.f1[1]) <= 4 * gh.std(ddof=1) / np.sqrt(P)


def _finite(x0, x1, *, width, depth, seeds, backward, lr=0.5, y=1.0, frozen=(), seed=0):
    res = nfd.simulate(
        np.stack([x0, x1]), np.array([y, 0.0]), width=width, depth=depth, activation="identity", lr=lr,
        backward=backward, seeds=seeds, seed=seed, record=("features",), dtype=jnp.float64, frozen=frozen,
    )
    h = res.features[:, 1]  # (S, L+1, n): the step-1 forward pass on x1
    k = (h**2).mean(-1)
    return k, res.outputs[:, 1]


@pytest.mark.usefixtures("x64")  # float64 reference
def test_against_finite_networks_and_coupled_decoupled_gap(data):
    # Coupled width-128 networks (48 seeds) vs the depth-L formula: per-layer kernel and the output
    # within 4 standard errors of the seed mean plus 3/n for the O(1/n) finite-width bias (it enters
    # through χ² with the O(n^{-1/2}) initial output). The decoupled formula — the GIA limit — must be
    # rejected by the same data: the gap is > 8 standard errors at the last layer.
    # Second step on the same input and η_c = 1, where the gap (∝ χ² c₀₁²) is largest.
    x0, _ = data
    L, n, S = 6, 128, 48
    k, f = _finite(x0, x0, width=n, depth=L, seeds=S, backward="coupled", lr=1.0)
    r = linear_one_step(x0, 1.0, lr=1.0, depth=L)
    rd = linear_one_step(x0, 1.0, lr=1.0, depth=L, backward="decoupled")
    se = k.std(0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(k.mean(0) - r.H1[:, 0, 0]) <= 4 * se + 3 / n), (k.mean(0) - r.H1[:, 0, 0]) / se
    assert abs(f.mean() - r.f1[0]) <= 4 * f.std(ddof=1) / np.sqrt(S) + 3 / n
    assert abs(k.mean(0)[-1] - rd.H1[-1, 0, 0]) > 8 * se[-1], (k.mean(0)[-1], rd.H1[-1, 0, 0], se[-1])


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.slow
@pytest.mark.parametrize("backward, frozen", CONFIGS)
def test_against_finite_networks_all_configs(data, backward, frozen):
    x0, x1 = data
    L, n, S = 8, 256, 64
    k, f = _finite(x0, x1, width=n, depth=L, seeds=S, backward=backward, frozen=frozen, seed=11)
    r = linear_one_step(x0, 1.0, np.stack([x0, x1]), lr=0.5, depth=L, backward=backward, frozen=frozen)
    se = k.std(0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(k.mean(0) - r.H1[:, 1, 1]) <= 4 * se + 3 / n)
    assert abs(f.mean() - r.f1[1]) <= 4 * f.std(ddof=1) / np.sqrt(S) + 3 / n


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x0=np.ones((2, 2))), "x0 must"),
        (dict(X_eval=np.ones((2, 3))), "X_eval must"),
        (dict(lr=-1.0), "lr must"),
        (dict(backward="gia"), "backward must"),
        (dict(frozen=("weights",)), "frozen"),
        (dict(depth=0), "depth must"),
        (dict(ts=[2.0]), "ts must"),
        (dict(T=0.0), "T must"),
    ],
)
def test_bad_input(kwargs, match):
    kw = dict(x0=np.ones(2), y=1.0, lr=0.5)
    kw.update(kwargs)
    x0 = kw.pop("x0")
    y = kw.pop("y")
    with pytest.raises(ValueError, match=match):
        linear_one_step(x0, y, **kw)
