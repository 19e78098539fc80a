"""The finite ResNet simulator against independent references.

* ``simulate_dense``: dense weights, gradients by ``jax.grad`` (round-off agreement);
* exact finite-width identities (Var f^(0) = q_L / n for ReLU);
* the deterministic variance recursion q_ℓ = q_{ℓ-1} + τ E[φ(h)²] (Monte-Carlo tolerance).
"""

import math
import time

import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd.finite._dense import simulate_dense

# float64 throughout (round-off comparisons / the Γ/C recursion): 64-bit on for this file only
pytestmark = pytest.mark.usefixtures("x64")

RECORD = ("features", "grads", "frozen")


def _data(K=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    return X, np.sin(X[:, 0]) + 0.3 * X[:, 1]


def _compare(net, X, Y, *, backward="coupled", batch_size=1, seeds=2):
    r = nfd.simulate_network(net, X, Y, backward=backward, seeds=seeds, batch_size=batch_size, dtype=jnp.float64,
                             record=RECORD)
    d = simulate_dense(net, X, Y, backward=backward, seeds=seeds, batch_size=batch_size)
    # float64 round-off: the two implementations sum in different orders; values are O(1),
    # so agreement to ~1e-15·(depth·width) is expected; 1e-11 is far above that and far below
    # any modelling error (a wrong multiplier changes outputs at O(1e-2) or more).
    tol = 1e-11
    np.testing.assert_allclose(r.outputs, d["outputs"], atol=tol, rtol=0)
    np.testing.assert_allclose(r.losses, d["losses"], atol=tol, rtol=0)
    np.testing.assert_allclose(r.features, d["features"], atol=tol, rtol=0)
    np.testing.assert_allclose(r.grads, d["grads"], atol=1e-9, rtol=0)  # divides out ℓ' (can be small)
    np.testing.assert_allclose(r.frozen_dh, d["frozen_dh"], atol=tol, rtol=0)
    if net.block != "pre":
        np.testing.assert_allclose(r.frozen_x, d["frozen_x"], atol=tol, rtol=0)
    return r


# The default run covers every block with depth-μP (the package's default) and every other
# parameterization once (≈3 s each, mostly compilation); the slow run checks all 12 pairs.
_DEFAULT_PAIRS = {("depth_mup", "pre"), ("depth_mup", "post"), ("depth_mup", "two_layer"),
                  ("mup", "post"), ("ntk", "two_layer"), ("sp", "pre")}


@pytest.mark.parametrize("parameterization, block", [
    pytest.param(p, b, marks=() if (p, b) in _DEFAULT_PAIRS else pytest.mark.slow)
    for p in ("depth_mup", "mup", "ntk", "sp") for b in ("pre", "post", "two_layer")
])
def test_matches_jax_grad_reference(block, parameterization):
    X, Y = _data()
    net = nfd.ResNet(depth=2, input_dim=3, width=8, activation="tanh", lr=0.3, block=block,
                     parameterization=parameterization, depth_aware_lr=block == "two_layer")
    r = _compare(net, X, Y)
    assert np.ptp(r.outputs[0]) > 1e-3  # training actually moved the outputs


@pytest.mark.parametrize("block", ["pre", "post", "two_layer"])
def test_decoupled_matches_reference_with_independent_backward_copy(block):
    X, Y = _data()
    net = nfd.ResNet(depth=2, input_dim=3, width=8, activation="erf", lr=0.4, block=block)
    _compare(net, X, Y, backward="decoupled")


@pytest.mark.parametrize(
    "kw",
    [
        dict(frozen=("input", "output")),
        dict(frozen=("hidden",)),
        dict(loss="logistic"),
        dict(activation="relu", T=2.0),
    ],
)
def test_matches_reference_options(kw):
    X, Y = _data(K=6)
    if kw.get("loss") == "logistic":
        Y = (Y > 0).astype(float)
    args = dict(depth=3, input_dim=3, width=8, activation="tanh", lr=0.3) | kw
    _compare(nfd.ResNet(**args), X, Y, batch_size=2)


def test_dense_and_regenerated_initial_weights_agree():
    X, Y = _data(K=5)
    kw = dict(width=16, depth=3, activation="relu", lr=0.2, seeds=2, dtype=jnp.float64)
    a = nfd.simulate(X, Y, weights="dense", **kw)
    b = nfd.simulate(X, Y, weights="regenerate", **kw)
    # the same W^(0) from the same per-layer key; only the summation order can differ
    np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-12, rtol=0)
    assert a.config["weights"] == "dense" and b.config["weights"] == "regenerate"


def test_coupled_and_decoupled_share_f0_and_differ_after():
    X, Y = _data(K=4)
    kw = dict(width=32, depth=4, activation="tanh", lr=0.5, seeds=4, dtype=jnp.float64)
    c = nfd.simulate(X, Y, backward="coupled", **kw)
    d = nfd.simulate(X, Y, backward="decoupled", **kw)
    np.testing.assert_array_equal(c.outputs[:, 0], d.outputs[:, 0])  # same forward weights at k=0
    assert np.all(np.abs(c.outputs[:, 1:] - d.outputs[:, 1:]) > 1e-8)
    # control: a "decoupled" copy drawn from the forward key is the coupled network
    net = nfd.ResNet(depth=4, input_dim=3, width=32, activation="tanh", lr=0.5)
    same = nfd.simulate_network(net, X, Y, backward="decoupled", seeds=4, dtype=jnp.float64,
                                _same_backward_key=True)
    # same weights, same arithmetic up to summation order in the backward pass: float64 round-off
    np.testing.assert_allclose(same.outputs, c.outputs, atol=1e-13, rtol=0)


def test_seed_batch_is_a_vmap_over_independent_networks():
    X, Y = _data(K=3)
    kw = dict(width=16, depth=2, activation="relu", lr=0.2, dtype=jnp.float64, seed=11)
    many = nfd.simulate(X, Y, seeds=3, **kw)
    one = nfd.simulate(X, Y, seeds=1, **kw)
    # the same network computed inside a vmap of 3 or of 1: only float64 round-off can differ
    np.testing.assert_allclose(many.outputs[:1], one.outputs, atol=1e-14, rtol=0)
    assert not np.allclose(many.outputs[0], many.outputs[1])
    again = nfd.simulate(X, Y, seeds=3, **kw)
    np.testing.assert_array_equal(many.outputs, again.outputs)  # reproducible from the seed


def test_output_std_at_init_scales_as_inverse_sqrt_width():
    """Var f^(0) = E‖h_L‖²/n² = q_L/n exactly for ReLU, where q_L = q_0 (1 + τ/2)^L
    (E relu(h)² = E h²/2 for any symmetric h, so the variance recursion is exact at any n)."""
    x = np.array([[1.0, -0.5, 2.0]])
    y = np.zeros(1)
    L, T, S = 4, 1.0, 64
    widths = np.array([16, 32, 64, 128, 256])
    q0 = (x @ x.T).item() / 3
    qL = q0 * (1 + T / L / 2) ** L
    stds, ses = [], []
    for n in widths:
        r = nfd.simulate(x, y, width=int(n), depth=L, activation="relu", lr=0.0, T=T, seeds=S,
                         dtype=jnp.float64, seed=1)
        f0 = r.outputs[:, 0]
        var = f0.var(ddof=1)
        se_var = var * math.sqrt(2 / (S - 1))  # Gaussian f0: SE of the sample variance
        # per-width check of the exact prefactor: 4 standard errors of the sample variance
        # (f0 is a sum of n products, Gaussian to O(1/n); the 4-SE band absorbs that)
        assert abs(var - qL / n) <= 4 * se_var, (n, var, qL / n, se_var)
        stds.append(math.sqrt(var))
        ses.append(1 / math.sqrt(2 * (S - 1)))  # SE of log(std)
    slope, intercept = np.polyfit(np.log(widths), np.log(stds), 1)
    xc = np.log(widths) - np.log(widths).mean()
    slope_se = ses[0] / math.sqrt(np.sum(xc**2))
    # fitted slope within 4 standard errors of -1/2
    assert abs(slope + 0.5) <= 4 * slope_se, (slope, slope_se)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_second_moment_of_features_follows_variance_recursion(activation):
    act = nfd.get_activation(activation)
    x = np.array([[0.8, -1.2, 0.4]])
    y = np.zeros(1)
    n, L, T, S = 256, 8, 2.0, 32
    r = nfd.simulate(x, y, width=n, depth=L, activation=activation, lr=0.0, T=T, seeds=S,
                     dtype=jnp.float64, record=("features",), seed=3)
    h = r.features[:, 0]  # (S, L+1, n)
    per_seed = (h**2).mean(axis=-1)  # (S, L+1)
    mean = per_seed.mean(axis=0)
    se = per_seed.std(axis=0, ddof=1) / math.sqrt(S)
    q = [(x @ x.T).item() / 3]
    for _ in range(L):
        q.append(q[-1] + T / L * float(act.expect_sq(jnp.float64(q[-1]))))
    q = np.array(q)
    # 4 standard errors of the 32-seed mean; the finite-width bias is O(T/n) ≈ 0.008·q, below
    # one standard error here (SE ≈ q·√(2/n)/√S ≈ 0.016·q).
    assert np.all(np.abs(mean - q) <= 4 * se), (mean, q, se)


def test_post_activation_grows_while_pre_activation_stays_bounded():
    """NFD Proposition 1: post-activation ReLU ResNets (Eq. 9) grow with depth even with the
    √(T/L) branch; pre-activation ones keep E h² = q_0 (1 + τ/2)^L ≤ q_0 e^{T/2}."""
    x = np.array([[1.0, 0.5, -1.0]])
    y = np.zeros(1)
    n, S, T = 64, 16, 1.0
    c1 = 1 / math.sqrt(2 * math.pi)  # ReLU: E relu(wx) = |x|/√(2π)
    q0 = (x @ x.T).item() / 3
    post_means = []
    for L in (4, 16, 64):
        post = nfd.simulate(x, y, width=n, depth=L, activation="relu", lr=0.0, T=T, seeds=S, block="post",
                            dtype=jnp.float64, record=("features",), seed=5)
        hL = post.features[:, 0, -1]  # (S, n)
        per_seed = hL.mean(axis=-1)
        m, se = per_seed.mean(), per_seed.std(ddof=1) / math.sqrt(S)
        bound = c1 * (1 + c1 * math.sqrt(T / (L * n))) ** L * math.sqrt(q0)
        assert m >= bound - 4 * se, (L, m, bound)  # Proposition 1, within 4 standard errors
        post_means.append((m, se))

        pre = nfd.simulate(x, y, width=n, depth=L, activation="relu", lr=0.0, T=T, seeds=S, block="pre",
                           dtype=jnp.float64, record=("features",), seed=5)
        ms = (pre.features[:, 0, -1] ** 2).mean(axis=-1)
        qL = q0 * (1 + T / L / 2) ** L
        assert abs(ms.mean() - qL) <= 4 * ms.std(ddof=1) / math.sqrt(S)
        assert qL <= q0 * math.exp(T / 2)
    # growth with depth, beyond 4 standard errors at each step
    for (m1, s1), (m2, s2) in zip(post_means, post_means[1:]):
        assert m2 - m1 > 4 * math.hypot(s1, s2), post_means


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_before_compute():
    X, Y = _data()
    kw = dict(width=8, depth=2, activation="relu", lr=0.1)
    with pytest.raises(ValueError, match=r"X must have shape \(K, d\)"):
        nfd.simulate(X[:, 0], Y, **kw)
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        nfd.simulate(X, Y[:-1], **kw)
    with pytest.raises(ValueError, match=r"Y must have shape \(K,\)"):
        nfd.simulate(X, Y[:, None], **kw)
    with pytest.raises(ValueError, match="unknown activation"):
        nfd.simulate(X, Y, **(kw | dict(activation="swish2")))
    with pytest.raises(ValueError, match="width must be a positive integer"):
        nfd.simulate(X, Y, **(kw | dict(width=0)))
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        nfd.simulate(X, Y, **(kw | dict(depth=-3)))
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        nfd.simulate(X, Y, seeds=0, **kw)
    with pytest.raises(ValueError, match="T must be a positive"):
        nfd.simulate(X, Y, T=0.0, **kw)
    with pytest.raises(ValueError, match="lr must be a non-negative"):
        nfd.simulate(X, Y, **(kw | dict(lr=-1.0)))
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN.*row 2, column 1"):
        nfd.simulate(Xn, Y, **kw)
    with pytest.raises(ValueError, match="backward must be"):
        nfd.simulate(X, Y, backward="gia", **kw)
    with pytest.raises(ValueError, match="frozen: unknown parameter groups"):
        nfd.simulate(X, Y, frozen=("inputs",), **kw)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        nfd.simulate(X, Y, batch_size=3, **kw)
    with pytest.raises(ValueError, match="labels in"):
        nfd.simulate(X, Y, loss="logistic", **kw)
    with pytest.raises(ValueError, match="record: unknown"):
        nfd.simulate(X, Y, record=("kernels",), **kw)
    with pytest.raises(ValueError, match="X_test must have shape"):
        nfd.simulate(X, Y, X_test=np.ones((2, 5)), **kw)


def test_memory_estimate_refuses_impossible_runs_quickly():
    X, Y = _data(K=200)
    t0 = time.perf_counter()
    with pytest.raises(nfd.MemoryEstimateError, match="needs an estimated .*width=65536"):
        nfd.simulate(X, Y, width=65536, depth=512, activation="relu", lr=0.1, seeds=8)
    assert time.perf_counter() - t0 < 2.0  # refused before any allocation or compilation
    with pytest.raises(nfd.MemoryEstimateError):
        nfd.simulate(X[:4], Y[:4], width=64, depth=4, activation="relu", lr=0.1, max_memory=1000)


def test_divergence_is_reported_with_its_step():
    X, Y = _data(K=12)
    Y = 50 * Y
    kw = dict(width=16, depth=2, activation="relu", lr=50.0, seeds=2, dtype=jnp.float64)
    with pytest.raises(nfd.DivergenceError) as info:
        nfd.simulate(X, Y, **kw)
    r = nfd.simulate(X, Y, on_divergence="return", **kw)
    bad = ~np.isfinite(r.outputs)
    first = int(np.argmax(bad.any(axis=0)))
    assert info.value.step == first
    assert np.all(np.isfinite(r.outputs[:, :first]))
    assert f"step {first}" in str(info.value)


def test_chunked_run_with_progress_equals_one_loop(capsys):
    X, Y = _data(K=7)
    kw = dict(width=16, depth=3, activation="tanh", lr=0.3, seeds=2, dtype=jnp.float64, X_test=X[:2])
    one = nfd.simulate(X, Y, **kw)
    chunked = nfd.simulate(X, Y, chunk_steps=3, progress=True, **kw)  # 3 chunks, the last one padded
    np.testing.assert_array_equal(one.outputs, chunked.outputs)
    np.testing.assert_array_equal(one.test_outputs, chunked.test_outputs)
    err = capsys.readouterr().err
    assert "step 3/7" in err and "step 7/7" in err


def test_learning_rate_sweep_compiles_once():
    from nfd.finite._simulate import _compiled_run

    X, Y = _data(K=3)
    kw = dict(width=8, depth=2, activation="tanh", seeds=2, dtype=jnp.float64)
    nfd.simulate(X, Y, lr=0.1, **kw)
    before = _compiled_run.cache_info()
    outs = [nfd.simulate(X, Y, lr=lr, **kw).outputs for lr in (0.2, 0.4)]
    after = _compiled_run.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 2
    assert not np.allclose(outs[0][:, 1:], outs[1][:, 1:])  # the rate did reach the update
