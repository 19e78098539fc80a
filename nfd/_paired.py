"""Paired differences of two replicated solves that share their randomness.

Two particle solves with the same ``seed`` and ``replicates`` give replicate r the same key, so
replicate r of both uses the same initial weights and (with a common ``noise_depth``) the same
Brownian path.  The difference of two such solves (depth L vs 2L, ``gia`` vs ``exact``, η_c vs
η_c + δ) is then estimated from the per-replicate differences: most of the Monte-Carlo noise
is common to both and cancels, so its standard error is far below the unpaired
√(SE_a² + SE_b²) that adding the two error bars in quadrature gives.

Example:
    >>> import numpy as np, nfd
    >>> X = np.random.default_rng(0).normal(size=(3, 2)); Y = X[:, 0]
    >>> kw = dict(particles=1024, activation="tanh", lr=0.5, noise_depth=8, seed=1)
    >>> a = nfd.solve(X, Y, depth=4, **kw); b = nfd.solve(X, Y, depth=8, **kw)
    >>> d = nfd.paired_difference(b, a)
    >>> d.difference.shape, bool(np.all(d.stderr[1:] < d.unpaired_stderr[1:]))
    ((3,), True)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["paired_difference", "PairedDifference"]


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """What :func:`paired_difference` returns (numpy arrays of the field's shape).

    Attributes:
        difference: mean over replicates of a_r − b_r (= mean(a) − mean(b)).
        stderr: its standard error from the per-replicate differences: std (ddof=1) / √R.
        unpaired_stderr: √(SE_a² + SE_b²), the error bar had the two solves been independent.
        replicate_differences: (R, ...) a_r − b_r.
        replicates: R.
    """

    difference: np.ndarray
    stderr: np.ndarray
    unpaired_stderr: np.ndarray
    replicate_differences: np.ndarray
    replicates: int

    @property
    def z(self) -> np.ndarray:
        """difference / stderr."""
        return self.difference / self.stderr


def _replicates(x, field, name):
    if isinstance(x, (np.ndarray, list, tuple)) or hasattr(x, "__array__") and not hasattr(x, "config"):
        return np.asarray(x, np.float64)
    arr = getattr(x, f"replicate_{field}", None)
    if arr is None:
        raise ValueError(f"{name}: a result with replicate_{field} (a solve with replicates ≥ 2) or an array "
                         f"(R, ...) of per-replicate values is needed, got {type(x).__name__}")
    return np.asarray(arr, np.float64)


def _se(a):
    return a.std(axis=0, ddof=1) / math.sqrt(a.shape[0])


def paired_difference(a, b, *, field: str = "outputs") -> PairedDifference:
    """The difference a − b of two replicated solves that share seeds, particles and paths.

    Args:
        a, b: results with per-replicate values (``replicate_outputs`` etc.: a particle solve,
            an extrapolated L = ∞ solve (``depth=None``) or a Mean ODE solve), or arrays (R, ...) of
            per-replicate values.  Results must come from the same ``seed`` and ``replicates``,
            otherwise replicate r of ``a`` is not paired with replicate r of ``b``.
        field: which quantity: ``"outputs"`` (default), ``"losses"``, ``"test_outputs"``, ``"sigma"``
            or ``"theta"`` (whatever ``replicate_<field>`` the results carry).

    Returns:
        :class:`PairedDifference`.
    """
    ra, rb = _replicates(a, field, "a"), _replicates(b, field, "b")
    if ra.shape != rb.shape:
        raise ValueError(f"b: per-replicate {field} of shape {rb.shape} does not match a's {ra.shape}")
    if ra.ndim == 0 or ra.shape[0] < 2:
        raise ValueError(f"a: paired differences need at least 2 replicates, got shape {ra.shape}")
    ca, cb = getattr(a, "config", None), getattr(b, "config", None)
    if isinstance(ca, dict) and isinstance(cb, dict):
        for key in ("seed", "replicates"):
            if key in ca and key in cb and ca[key] != cb[key]:
                raise ValueError(f"b: {key}={cb[key]!r} differs from a's {key}={ca[key]!r}; paired replicates "
                                 "need the same seed and replicates")
    d = ra - rb
    return PairedDifference(difference=d.mean(axis=0), stderr=_se(d), unpaired_stderr=np.hypot(_se(ra), _se(rb)),
                            replicate_differences=d, replicates=int(ra.shape[0]))
