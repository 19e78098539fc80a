"""The mean-subtracted block of Tensor Programs VI (``block="post_ms"``) in the finite simulator.

h_0 = U x/√d,  h_ℓ = h_{ℓ-1} + b·MS(φ(W_ℓ h_{ℓ-1}/√n)),  MS(a) = a − mean_i a_i  (TP VI §6.3).

Checked against ``simulate_dense`` (dense weights, gradients by ``jax.grad``) to float64 round-off,
like the other blocks in tests/test_finite.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd.finite._dense import simulate_dense

RECORD = ("features", "grads", "frozen")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _data(K=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    return X, np.sin(X[:, 0]) + 0.3 * X[:, 1]


@pytest.mark.parametrize("activation, kw", [
    ("tanh", {}),
    ("relu", dict(frozen=("input", "output"))),
    ("relu", dict(T=2.0)),
])
def test_post_ms_matches_jax_grad_reference(x64, activation, kw):
    X, Y = _data()
    net = nfd.ResNet(depth=3, input_dim=3, width=8, activation=activation, lr=0.3, block="post_ms", **kw)
    r = nfd.simulate_network(net, X, Y, seeds=3, dtype=jnp.float64, record=RECORD)
    d = simulate_dense(net, X, Y, seeds=3)
    # float64 round-off: O(1) values summed in different orders, ~1e-15·(depth·width); 1e-11
    # is far above that and far below any modelling error (a missing MS changes f by O(1e-2)).
    tol = 1e-11
    np.testing.assert_allclose(r.outputs, d["outputs"], atol=tol, rtol=0)
    np.testing.assert_allclose(r.features, d["features"], atol=tol, rtol=0)
    np.testing.assert_allclose(r.grads, d["grads"], atol=1e-9, rtol=0)  # divides out ℓ'
    np.testing.assert_allclose(r.frozen_x, d["frozen_x"], atol=tol, rtol=0)
    np.testing.assert_allclose(r.frozen_dh, d["frozen_dh"], atol=tol, rtol=0)
    assert np.ptp(r.outputs[0]) > 1e-3  # training moved the outputs
    # every residual increment is mean-free: the width-mean of h_ℓ − h_{ℓ-1} is zero
    inc = np.diff(r.features, axis=2).mean(axis=-1)
    assert np.max(np.abs(inc)) < 1e-12


def test_post_ms_differs_from_post(x64):
    """The MS is really applied: ReLU without it adds a positive mean every layer."""
    X, Y = _data()
    kw = dict(depth=3, input_dim=3, width=8, activation="relu", lr=0.3)
    a = nfd.simulate_network(nfd.ResNet(block="post_ms", **kw), X, Y, seeds=2, dtype=jnp.float64)
    b = nfd.simulate_network(nfd.ResNet(block="post", **kw), X, Y, seeds=2, dtype=jnp.float64)
    assert np.max(np.abs(a.outputs - b.outputs)) > 1e-3
