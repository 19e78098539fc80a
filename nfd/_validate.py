"""Eager validation of user input, before anything is traced or allocated."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_data", "check_test_inputs", "check_seeds", "check_positive_float"]


def check_data(X, Y, *, loss: str = "mse", batch_size: int = 1):
    """Validate a training stream X (K, d) and targets Y (K,) and return them as numpy arrays.

    With ``batch_size = B > 1`` the K samples are consumed B per step (K must be a multiple of B).
    """
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("X must be a numeric array of shape (K, d)") from None
    try:
        Y = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("Y must be a numeric array of shape (K,)") from None
    if X.ndim != 2:
        raise ValueError(f"X must have shape (K, d) (one row per SGD sample), got shape {X.shape}")
    if Y.ndim != 1:
        raise ValueError(f"Y must have shape (K,), got shape {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y disagree on the number of samples: X has {X.shape[0]}, Y has {Y.shape[0]}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be non-empty, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or infinite values (first at row {bad[0]}, column {bad[1]})")
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"Y contains NaN or infinite values (first at index {int(np.argmax(~np.isfinite(Y)))})")
    if loss == "logistic" and not np.all((Y == 0) | (Y == 1)):
        raise ValueError("Y must contain labels in {0, 1} for loss='logistic'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if X.shape[0] % batch_size:
        raise ValueError(f"the number of samples K={X.shape[0]} must be a multiple of batch_size={batch_size}")
    return X, Y


def check_test_inputs(X_test, d: int):
    """Validate extra evaluation inputs of shape (N, d); ``None`` passes through."""
    if X_test is None:
        return None
    try:
        X_test = np.asarray(X_test, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("X_test must be a numeric array of shape (N, d)") from None
    if X_test.ndim != 2 or X_test.shape[1] != d or X_test.shape[0] == 0:
        raise ValueError(f"X_test must have shape (N, {d}), got shape {X_test.shape}")
    if not np.all(np.isfinite(X_test)):
        raise ValueError("X_test contains NaN or infinite values")
    return X_test


def check_seeds(seeds):
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds <= 0:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    return int(seeds)


def check_positive_float(name: str, v) -> float:
    """Return ``float(v)`` if it is a positive finite number, else a ValueError naming ``name``."""
    try:
        fv = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {v!r}") from None
    if not (fv > 0 and math.isfinite(fv)):
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return fv
