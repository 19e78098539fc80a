"""Gaussian expectations of activations: closed forms vs quadrature vs Monte Carlo."""

import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd import get_activation

# (a, b, c) covariances: equal/unequal variances, positive/negative/zero/near-perfect correlation
COVS = [
    (1.0, 1.0, 0.0),
    (1.0, 1.0, 0.5),
    (2.0, 0.5, -0.6),
    (0.3, 1.7, 0.7),
    (1.5, 1.5, 1.5 * 0.999),
    (0.7, 0.7, 0.7),  # identical inputs
]


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.parametrize("name", ["identity", "erf"])
@pytest.mark.parametrize("cov", COVS)
def test_closed_form_matches_quadrature_smooth(name, cov):
    act = get_activation(name)
    a, b, c = (jnp.asarray(t, jnp.float64) for t in cov)
    for exp in (act.expect_pair, act.expect_dpair):
        closed = float(exp(a, b, c, method="closed"))
        quad = float(exp(a, b, c, method="quadrature", order=120))
        # Gauss–Hermite converges geometrically for entire functions: round-off level expected.
        assert abs(closed - quad) <= 1e-9 * max(1.0, abs(closed)), (closed, quad)


def _conditional_integral(name, deriv, a, b, c):
    """E[ψ(u) ψ(v)] for (u, v) ~ N(0, [[a, c], [c, b]]), ψ = relu/abs or its derivative, as a
    1-D adaptive integral over u of ψ(u) E[ψ(v) | u], with the inner Gaussian expectation in
    closed form (v | u ~ N(m, s²), m = c u / a, s² = b − c²/a): an independent reference."""
    from scipy import integrate
    from scipy.stats import norm

    s = np.sqrt(b - c**2 / a)

    def inner(u):
        m = c * u / a
        z = m / s
        if name == "relu":
            return norm.cdf(z) if deriv else m * norm.cdf(z) + s * norm.pdf(z)
        return 2 * norm.cdf(z) - 1 if deriv else m * (2 * norm.cdf(z) - 1) + 2 * s * norm.pdf(z)

    def outer(u):
        if name == "relu":
            psi = float(u > 0) if deriv else max(u, 0.0)
        else:
            psi = float(np.sign(u)) if deriv else abs(u)
        return psi * inner(u) * norm.pdf(u, scale=np.sqrt(a))

    sd = np.sqrt(a)
    pieces = [integrate.quad(outer, lo * sd, hi * sd, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
              for lo, hi in ((-40, 0), (0, 40))]
    return sum(pieces)


@pytest.mark.usefixtures("x64")  # float64 reference (1e-10..1e-12 tolerances)
@pytest.mark.parametrize("name", ["relu", "abs"])
@pytest.mark.parametrize("cov", COVS[:4])
def test_kinked_closed_forms_match_conditional_quadrature(name, cov):
    act = get_activation(name)
    a, b, c = cov
    ref = _conditional_integral(name, False, a, b, c)
    dref = _conditional_integral(name, True, a, b, c)
    # 1-D adaptive quadrature of a smooth integrand to ~1e-12: agreement to 1e-10 expected
    assert float(act.expect_pair(a, b, c)) == pytest.approx(ref, abs=1e-10)
    assert float(act.expect_dpair(a, b, c)) == pytest.approx(dref, abs=1e-10)


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_gauss_hermite_converges_to_kinked_closed_forms(name):
    """For kinked φ the generic quadrature still converges to the closed form, algebraically."""
    act = get_activation(name)
    a, b, c = 1.3, 0.8, 0.4
    closed = float(act.expect_pair(a, b, c))
    orders = np.array([25, 50, 100, 200])
    errs = np.array([abs(float(act.expect_pair(a, b, c, method="quadrature", order=int(o))) - closed) for o in orders])
    slope = np.polyfit(np.log(orders), np.log(errs), 1)[0]
    # A kink limits Gauss–Hermite to roughly first order in the node count (measured slope
    # about -1.0 to -1.3 on this case); a slope above -0.8 would mean it is not converging.
    assert slope < -0.8, (slope, errs)


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.parametrize("name", ["identity", "relu", "erf", "abs", "tanh", "gelu", "sigmoid"])
@pytest.mark.parametrize("cov", COVS[:5])
def test_expectations_match_monte_carlo(name, cov):
    act = get_activation(name)
    a, b, c = cov
    rng = np.random.default_rng(7)
    N = 400_000
    L = np.linalg.cholesky(np.array([[a, c], [c, b]]) + 1e-12 * np.eye(2))
    z = rng.standard_normal((N, 2)) @ L.T
    u, v = jnp.asarray(z[:, 0]), jnp.asarray(z[:, 1])
    for fn, exp in ((act.fn, act.expect_pair), (act.deriv, act.expect_dpair)):
        samples = np.asarray(fn(u) * fn(v))
        mc, se = samples.mean(), samples.std(ddof=1) / np.sqrt(N)
        ana = float(exp(jnp.float64(a), jnp.float64(b), jnp.float64(c)))
        # 5 standard errors of the Monte-Carlo mean (false-failure probability ~6e-7 per check)
        assert abs(ana - mc) <= 5 * se + 1e-12, (name, fn, ana, mc, se)


@pytest.mark.usefixtures("x64")  # float64 reference (1e-10..1e-12 tolerances)
def test_relu_and_erf_known_values():
    relu = get_activation("relu")
    # E[relu(z)^2] = q/2; E[relu'(u)relu'(v)] = 1/4 for independent u, v.
    assert float(relu.expect_pair(3.0, 3.0, 3.0)) == pytest.approx(1.5, rel=1e-12)
    assert float(relu.expect_dpair(1.0, 2.0, 0.0)) == pytest.approx(0.25, rel=1e-12)
    erf = get_activation("erf")
    # E[erf(z)^2] for z ~ N(0, q) = (2/π) arcsin(2q/(1+2q))
    q = 0.8
    assert float(erf.expect_pair(q, q, q)) == pytest.approx(2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)), rel=1e-12)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_gram_is_elementwise_and_symmetric():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3))
    K = jnp.asarray(X @ X.T / 3)
    for name in ("relu", "tanh"):
        act = get_activation(name)
        G = np.asarray(act.gram(K))
        assert np.allclose(G, G.T, atol=1e-12)  # symmetric formulas in float64: round-off only
        assert G[1, 3] == pytest.approx(float(act.expect_pair(K[1, 1], K[3, 3], K[1, 3])), rel=1e-12)
        assert np.linalg.eigvalsh(G).min() > -1e-10


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        get_activation("swishy")
    with pytest.raises(ValueError, match="activation"):
        nfd.ResNet(depth=2, input_dim=1, activation="swishy")
    with pytest.raises(ValueError, match="no closed-form"):
        get_activation("tanh").expect_pair(1.0, 1.0, 0.5, method="closed")


def test_activation_is_hashable_by_name():
    assert get_activation("relu") == get_activation("RELU")
    assert hash(get_activation("relu")) == hash(get_activation("relu"))
    assert get_activation(get_activation("erf")) is get_activation("erf")
