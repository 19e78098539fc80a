"""The antithetic partner of a finite network, used by benchmarks/studies/rates_training.py.

Identity: f(U, W, −v) = −f(U, W, v), and SGD is equivariant under the isometry v → −v, so the
network with initial weights (U, W, −v) trained on targets Y is, at every step, minus the network
(U, W, v) trained on −Y.  The study gets a seed's antithetic partner as −``nfd.simulate(X, −Y)`` of
the same seed; here the partner is trained directly, as dense weights with v negated and gradients by
``jax.grad`` (the dense reference of nfd.finite._dense, an independent path from the simulator's
hand-written backward pass), and compared to round-off (float64; the simulator-vs-dense bound of
tests/test_finite.py).  Both backward modes, an odd and a non-odd activation: the identity does not
need φ odd.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd._losses import loss_value
from nfd._validate import seed_key
from nfd.finite._dense import _forward
from nfd.finite._simulate import _keys, _layer_key

pytestmark = pytest.mark.usefixtures("x64")

TOL = 1e-11  # float64 simulator vs dense reference (tests/test_finite.py)


def _dense_partner(net, X, Y, seed, index, decoupled):
    """Outputs (K,) of seed ``index`` of ``seed`` with its readout negated, trained by jax.grad."""
    key = jax.random.fold_in(seed_key(seed), index)
    k_u, k_v, k_w, k_wt = _keys(key)
    n, L = net.width, net.depth
    gen = lambda kk: jnp.stack([jnp.stack([jax.random.normal(_layer_key(kk, 0, l), (n, n), jnp.float64)
                                           for l in range(L)])])
    W0 = gen(k_w)
    p = {"U": jax.random.normal(k_u, (n, net.input_dim), jnp.float64),
         "v": -jax.random.normal(k_v, (n,), jnp.float64),  # the partner: readout negated
         "W": W0, "Wt": gen(k_wt) if decoupled else W0, "W0": W0}
    eh = jnp.zeros((L + 1, 1, n))
    outs = []
    for x, y in zip(X, Y):
        x = jnp.asarray(x[None], jnp.float64)

        def loss(q):
            f, _ = _forward(net, q, x, eh, decoupled)
            return jnp.mean(loss_value(net.loss, f, jnp.asarray([y]))), f

        (_, f), g = jax.value_and_grad(loss, has_aux=True)(p)
        outs.append(float(f[0]))
        dW = net.lr_hidden * g["W"]
        p = {**p, "U": p["U"] - net.lr_input * g["U"], "v": p["v"] - net.lr_output * g["v"], "W": p["W"] - dW,
             "Wt": p["Wt"] - dW if decoupled else p["W"] - dW}
    return np.array(outs)


@pytest.mark.parametrize("backward,activation", [("coupled", "tanh"), ("decoupled", "relu")])
def test_partner_is_minus_the_network_trained_on_minus_y(backward, activation):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 3))
    Y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    kw = dict(width=12, depth=3, activation=activation, lr=0.5, T=1.0, backward=backward, seeds=2, seed=7,
              dtype=jnp.float64)
    plus = nfd.simulate(X, Y, **kw).outputs
    minus_on_minus_y = -np.asarray(nfd.simulate(X, -Y, **kw).outputs)
    net = nfd.ResNet(depth=3, input_dim=3, width=12, activation=activation, lr=0.5, T=1.0)
    for s in range(2):
        ref = _dense_partner(net, X, Y, 7, s, backward == "decoupled")
        np.testing.assert_allclose(minus_on_minus_y[s], ref, atol=TOL, rtol=0)
    # not vacuous: the partner differs from the seed itself after training (and at step 0 by sign)
    assert np.max(np.abs(minus_on_minus_y - plus)[:, 1:]) > 1e-3
    np.testing.assert_array_equal(minus_on_minus_y[:, 0], -np.asarray(plus)[:, 0])
