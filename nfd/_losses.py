"""Per-sample losses ℓ(f, y) and their derivatives ℓ'(f, y) with respect to f."""

from __future__ import annotations

import jax

__all__ = ["loss_value", "loss_grad"]


def loss_value(name: str, f, y):
    """ℓ(f, y): ``mse`` = ½(f − y)², ``logistic`` = log(1 + e^f) − y f (labels y ∈ {0, 1})."""
    if name == "mse":
        return 0.5 * (f - y) ** 2
    if name == "logistic":
        return jax.nn.softplus(f) - y * f
    raise ValueError(f"loss must be 'mse' or 'logistic', got {name!r}")


def loss_grad(name: str, f, y):
    """ℓ'(f, y) = ∂ℓ/∂f: ``mse`` → f − y, ``logistic`` → σ(f) − y."""
    if name == "mse":
        return f - y
    if name == "logistic":
        return jax.nn.sigmoid(f) - y
    raise ValueError(f"loss must be 'mse' or 'logistic', got {name!r}")
