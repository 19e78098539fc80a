"""Residual units φ(x, z) of the hidden-width ResNet (Chizat 2025, Eq. 1–2).

A block sums M units, ``h ← h + α/(LM) Σ_j φ(h, z_j)``.  A unit's parameters z = (u, v) are
split into two groups with their own initial scale (σ_u, σ_v) and learning rate (η_u, η_v),
as in §4 of the paper.  The default unit is the two-layer perceptron (Eq. 2)

    φ_mlp(x, (u, v)) = v ρ(uᵀx / D),        u, v ∈ R^D  (p = 2D).

A user unit only needs ``phi(x, u, v, rho) -> (D,)``; every derivative the solvers need
(D₁φ, D₂φ, the mixed D₁,₂φ of the tangent ODE) comes from JAX autodiff, so nothing is
written by hand twice.  ``mean_phi`` is an optional batched fast path (tests compare it with
the generic vmap of ``phi``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["Unit", "MLP", "get_unit", "UNITS"]


@dataclasses.dataclass(frozen=True)
class Unit:
    """One residual unit φ(x, (u, v)).

    Attributes:
        name: label.
        phi: ``phi(x, u, v, rho)`` with x (D,), u (p_u,), v (p_v,) -> (D,); ``rho`` is the
            elementwise activation.
        sizes: ``sizes(D) -> (p_u, p_v)``, the sizes of the two parameter groups.
        mean_phi: optional ``mean_phi(H, U, V, rho)`` with H (n, D), U (P, p_u), V (P, p_v)
            -> (n, D), the average over the P units of φ(H_i, U_p, V_p).
        odd_in_v: φ(x, u, −v) = −φ(x, u, v); needed by antithetic sampling.

    Example:
        >>> import jax.numpy as jnp
        >>> lin = Unit("linear", lambda x, u, v, rho: v * jnp.dot(u, x) / x.shape[0],
        ...            lambda D: (D, D))
        >>> lin.sizes(4)
        (4, 4)
    """

    name: str
    phi: Callable
    sizes: Callable[[int], tuple[int, int]]
    mean_phi: Callable | None = None
    odd_in_v: bool = True

    def block_mean(self, H, U, V, rho):
        """(n, D): mean over the P units (rows of U, V) of φ(H_i, U_p, V_p)."""
        if self.mean_phi is not None:
            return self.mean_phi(H, U, V, rho)
        per = jax.vmap(lambda h: jax.vmap(lambda u, v: self.phi(h, u, v, rho))(U, V).mean(0))
        return per(H)

    def generic_block_mean(self, H, U, V, rho):
        """Like :meth:`block_mean` but always through ``phi`` (for tests of ``mean_phi``)."""
        return dataclasses.replace(self, mean_phi=None).block_mean(H, U, V, rho)


def _mlp_phi(x, u, v, rho):
    return v * rho(jnp.dot(u, x) / x.shape[-1])


def _mlp_mean(H, U, V, rho):
    D = H.shape[-1]
    return rho(H @ U.T / D) @ V / U.shape[0]


MLP = Unit("mlp", _mlp_phi, lambda D: (D, D), _mlp_mean, True)
UNITS = {"mlp": MLP}


def get_unit(unit) -> Unit:
    """Look up a unit by name (``"mlp"``) or pass a :class:`Unit` through."""
    if isinstance(unit, Unit):
        return unit
    if isinstance(unit, str) and unit in UNITS:
        return UNITS[unit]
    raise ValueError(f"unit: unknown unit {unit!r}; known: {sorted(UNITS)} (or pass an nfd.meanode.Unit)")
