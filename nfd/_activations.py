"""Activation functions that know their derivative and their Gaussian expectations.

Every kernel and limit solver in nfd needs Gaussian integrals of an activation φ:

    E[φ(u) φ(v)]   and   E[φ'(u) φ'(v)],   (u, v) ~ N(0, [[a, c], [c, b]]).

Closed forms are used where they exist (identity, ReLU arc-cosine kernels, erf, absolute
value); everything else uses tensor-product Gauss–Hermite quadrature on the Cholesky
factor of the 2×2 covariance.  ``Activation.expect_pair(..., method="quadrature")``
forces quadrature, which is how tests compare the two.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Activation", "get_activation", "ACTIVATIONS"]

_TWO_PI = 2.0 * math.pi


def _hermite_nodes(order: int):
    # Probabilists' Gauss–Hermite: ∫ f(z) N(z; 0, 1) dz ≈ Σ w_i f(x_i).
    x, w = np.polynomial.hermite_e.hermegauss(order)
    return x, w / math.sqrt(_TWO_PI)


def _safe_rho(a, b, c):
    denom = jnp.sqrt(jnp.maximum(a * b, 0.0))
    rho = jnp.where(denom > 0, c / jnp.where(denom > 0, denom, 1.0), 0.0)
    return jnp.clip(rho, -1.0, 1.0), denom


def _relu_pair(a, b, c):
    # Cho & Saul arc-cosine kernel of degree 1.
    rho, s = _safe_rho(a, b, c)
    theta = jnp.arccos(rho)
    return s / _TWO_PI * (jnp.sqrt(jnp.maximum(1.0 - rho**2, 0.0)) + (math.pi - theta) * rho)


def _relu_dpair(a, b, c):
    rho, _ = _safe_rho(a, b, c)
    return (math.pi - jnp.arccos(rho)) / _TWO_PI


def _erf_pair(a, b, c):
    return (2.0 / math.pi) * jnp.arcsin(2.0 * c / jnp.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * b)))


def _erf_dpair(a, b, c):
    # φ'(x) = 2/√π exp(-x²):  E = (4/π) / sqrt((1+2a)(1+2b) - 4c²).
    return (4.0 / math.pi) / jnp.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * b) - 4.0 * c**2)


def _abs_pair(a, b, c):
    # |u||v| = (r(u)+r(-u))(r(v)+r(-v)) with r = relu, so E = 2 k(c) + 2 k(-c).
    return 2.0 * _relu_pair(a, b, c) + 2.0 * _relu_pair(a, b, -c)


def _abs_dpair(a, b, c):
    rho, _ = _safe_rho(a, b, c)
    return (2.0 / math.pi) * jnp.arcsin(rho)


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """An activation φ with its derivative and Gaussian expectations.

    Attributes:
        name: registry name, e.g. ``"relu"``.
        fn: φ, elementwise.
        deriv: φ', elementwise (a.e. for ReLU/abs).
        pair_closed_form: ``(a, b, c) -> E[φ(u)φ(v)]`` or ``None``.
        dpair_closed_form: ``(a, b, c) -> E[φ'(u)φ'(v)]`` or ``None``.
        lipschitz: whether φ is Lipschitz (the NFD theorems assume it).

    Two activations compare equal when their names are equal, so they can be static
    arguments to ``jax.jit``.

    Example:
        >>> act = get_activation("relu")
        >>> float(act.expect_pair(1.0, 1.0, 1.0))  # E[relu(z)^2] = 1/2
        0.5
    """

    name: str
    fn: Callable
    deriv: Callable
    pair_closed_form: Callable | None = None
    dpair_closed_form: Callable | None = None
    lipschitz: bool = True
    quadrature_order: int = 48

    def __hash__(self):
        return hash(("nfd.Activation", self.name))

    def __eq__(self, other):
        return isinstance(other, Activation) and other.name == self.name

    def __repr__(self):
        return f"Activation({self.name!r})"

    def __call__(self, x):
        return self.fn(x)

    @property
    def is_linear(self) -> bool:
        return self.name == "identity"

    def _quad(self, f, a, b, c, order):
        if not (isinstance(order, int) and 2 <= order <= 300):
            raise ValueError(f"order must be an integer in [2, 300] (Gauss–Hermite nodes overflow beyond), got {order!r}")
        a, b, c = jnp.broadcast_arrays(*(jnp.asarray(t) for t in (a, b, c)))
        dtype = jnp.result_type(a.dtype, jnp.float32)
        x, w = _hermite_nodes(order)
        x = jnp.asarray(x, dtype)
        w = jnp.asarray(w, dtype)
        sa = jnp.sqrt(jnp.maximum(a, 0.0))[..., None, None]
        # v = c/√a z1 + √(b - c²/a) z2
        safe_a = jnp.where(a > 0, a, 1.0)
        l21 = jnp.where(a > 0, c / jnp.sqrt(safe_a), 0.0)[..., None, None]
        l22 = jnp.sqrt(jnp.maximum(b - jnp.where(a > 0, c**2 / safe_a, 0.0), 0.0))[..., None, None]
        z1 = x[:, None]
        z2 = x[None, :]
        u = sa * z1
        v = l21 * z1 + l22 * z2
        vals = f(u) * f(v)
        return jnp.sum(vals * (w[:, None] * w[None, :]), axis=(-2, -1))

    def expect_pair(self, a, b, c, *, method: str = "auto", order: int | None = None):
        """E[φ(u) φ(v)] for (u, v) ~ N(0, [[a, c], [c, b]]); broadcasts over a, b, c."""
        if method not in ("auto", "closed", "quadrature"):
            raise ValueError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
        if method != "quadrature" and self.pair_closed_form is not None:
            return self.pair_closed_form(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c))
        if method == "closed":
            raise ValueError(f"activation {self.name!r} has no closed-form E[φφ]")
        return self._quad(self.fn, a, b, c, order or self.quadrature_order)

    def expect_dpair(self, a, b, c, *, method: str = "auto", order: int | None = None):
        """E[φ'(u) φ'(v)] for (u, v) ~ N(0, [[a, c], [c, b]]); broadcasts over a, b, c."""
        if method not in ("auto", "closed", "quadrature"):
            raise ValueError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
        if method != "quadrature" and self.dpair_closed_form is not None:
            return self.dpair_closed_form(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c))
        if method == "closed":
            raise ValueError(f"activation {self.name!r} has no closed-form E[φ'φ']")
        return self._quad(self.deriv, a, b, c, order or self.quadrature_order)

    def expect_sq(self, q, **kw):
        """E[φ(h)²] for h ~ N(0, q)."""
        return self.expect_pair(q, q, q, **kw)

    def gram(self, K, **kw):
        """Elementwise E[φ(u_i)φ(u_j)] for u ~ N(0, K); K of shape (N, N)."""
        d = jnp.diagonal(K)
        return self.expect_pair(d[:, None], d[None, :], K, **kw)

    def dgram(self, K, **kw):
        """Elementwise E[φ'(u_i)φ'(u_j)] for u ~ N(0, K); K of shape (N, N)."""
        d = jnp.diagonal(K)
        return self.expect_dpair(d[:, None], d[None, :], K, **kw)


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)


def _gelu_deriv(x):
    cdf = 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))
    pdf = jnp.exp(-0.5 * x**2) / math.sqrt(_TWO_PI)
    return cdf + x * pdf


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(
        "identity",
        lambda x: x,
        lambda x: jnp.ones_like(x),
        lambda a, b, c: c,
        lambda a, b, c: jnp.ones_like(jnp.asarray(c)),
    ),
    "relu": Activation(
        "relu",
        jax.nn.relu,
        lambda x: (x > 0).astype(jnp.result_type(x, jnp.float32)),
        _relu_pair,
        _relu_dpair,
        quadrature_order=96,
    ),
    "erf": Activation(
        "erf",
        jax.lax.erf,
        lambda x: (2.0 / math.sqrt(math.pi)) * jnp.exp(-(x**2)),
        _erf_pair,
        _erf_dpair,
    ),
    "abs": Activation(
        "abs",
        jnp.abs,
        jnp.sign,
        _abs_pair,
        _abs_dpair,
        quadrature_order=96,
    ),
    "tanh": Activation("tanh", jnp.tanh, lambda x: 1.0 - jnp.tanh(x) ** 2),
    "gelu": Activation("gelu", _gelu, _gelu_deriv),
    "sigmoid": Activation(
        "sigmoid", jax.nn.sigmoid, lambda x: jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x))
    ),
    "softplus": Activation("softplus", jax.nn.softplus, jax.nn.sigmoid),
}


def get_activation(activation: str | Activation) -> Activation:
    """Look up an activation by name (``identity, relu, erf, abs, tanh, gelu, sigmoid,
    softplus``) or pass an :class:`Activation` through unchanged.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(activation, Activation):
        return activation
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(
            f"activation: unknown activation {activation!r}; known: {sorted(ACTIVATIONS)} "
            "(or pass an nfd.Activation)"
        )
    return ACTIVATIONS[activation.lower()]
