"""Exceptions raised by nfd."""

from __future__ import annotations

__all__ = ["DivergenceError", "FileFormatError", "MemoryEstimateError", "SingularCovarianceError"]


class DivergenceError(FloatingPointError):
    """A run produced NaN or infinite values.

    Attributes:
        step: the first training step (0-based) whose output was not finite, or ``None`` where
            the computation has no steps (a kernel) or the step is unknown.
        seed: the seed index (for batched runs) where it happened first, or ``None``.
        quantity: what diverged (e.g. ``"output f"``).
    """

    def __init__(self, message: str, *, step: int | None, seed: int | None = None, quantity: str = ""):
        super().__init__(message)
        self.step = step
        self.seed = seed
        self.quantity = quantity


class MemoryEstimateError(MemoryError):
    """A run was refused before starting because its estimated memory exceeds the limit."""

    def __init__(self, message: str, *, estimate_bytes: int, limit_bytes: int):
        super().__init__(message)
        self.estimate_bytes = estimate_bytes
        self.limit_bytes = limit_bytes


class SingularCovarianceError(FloatingPointError):
    """A covariance matrix (Σ or Θ of the NFD recursion) became numerically singular."""

    def __init__(self, message: str, *, step: int, layer: int | None = None, which: str = ""):
        super().__init__(message)
        self.step = step
        self.layer = layer
        self.which = which


class FileFormatError(ValueError):
    """A checkpoint or result file cannot be read: missing entries, truncated, corrupted, written by
    another program or another version, or holding a type nfd does not know.

    Attributes:
        path: the file.
        reason: what is wrong with it (also in the message).
    """

    def __init__(self, path, reason: str):
        import os

        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
