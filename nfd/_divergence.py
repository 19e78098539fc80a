"""One divergence check for every solver: find the first non-finite step, report it once.

Every stepped solver records per-step outputs; :func:`find` locates the first step whose
values are not all finite (and, for batched runs, the first seed/replicate there), and
:func:`report` applies the run's policy: ``on_divergence="raise"`` raises
:class:`~nfd.DivergenceError` with the step, ``"return"`` warns and lets the caller return
the non-finite numbers (the result's ``status`` then records the step).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ._errors import DivergenceError

__all__ = ["Divergence", "find", "report", "POLICIES", "check_policy"]

POLICIES = ("raise", "return")


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where a run first became non-finite.

    Attributes:
        step: the first step (0-based) with a non-finite value, or ``None`` for a computation
            without steps (a kernel).
        index: the batch index (seed, replicate) where it happened first, or ``None``.
    """

    step: int | None
    index: int | None = None


def check_policy(on_divergence) -> str:
    """Validate an ``on_divergence`` argument before any work."""
    if on_divergence not in POLICIES:
        raise ValueError(f"on_divergence must be one of {POLICIES}, got {on_divergence!r}")
    return on_divergence


def find(values, *, batched: bool = False, per_step: int = 1, upto: int | None = None) -> Divergence | None:
    """The first non-finite step of ``values``, or ``None`` if all are finite.

    Args:
        values: per-step values, shape (items, ...) or, with ``batched``, (batch, items, ...);
            several arrays (same leading axes) may be passed as a tuple.
        per_step: items per step (a mini-batch of B samples is B items of one step).
        upto: only look at the first ``upto`` items (the steps done so far).
    """
    arrays = values if isinstance(values, tuple) else (values,)
    bad = None
    for a in arrays:
        a = np.asarray(a)
        if not batched:
            a = a[None]
        if upto is not None:
            a = a[:, :upto]
        b = ~np.isfinite(a.reshape(a.shape[0], a.shape[1], -1)).all(-1)
        bad = b if bad is None else bad | b
    if bad is None or not bad.any():
        return None
    item = int(np.argmax(bad.any(0)))
    index = int(np.argmax(bad[:, item])) if batched else None
    return Divergence(step=item // per_step, index=index)


def report(div: Divergence | None, *, what: str, quantity: str, hint: str = "", on_divergence: str = "raise",
           index_name: str = "seed index", detail: str = "", stacklevel: int = 3) -> None:
    """Raise :class:`~nfd.DivergenceError` (``"raise"``) or warn (``"return"``) about ``div``;
    nothing if ``div`` is ``None``.  The message names ``what`` diverged, the step, the batch
    index (``index_name``) and a ``hint``."""
    if div is None:
        return
    where = "" if div.step is None else f" at step {div.step}"
    if detail:
        where += f" ({detail})"
    elif div.index is not None:
        where += f" ({index_name} {div.index})"
    msg = f"{what} diverged: the {quantity} became non-finite{where}"
    if hint:
        msg += f"; {hint}"
    if on_divergence == "raise":
        raise DivergenceError(msg, step=div.step, seed=div.index, quantity=quantity)
    warnings.warn(msg, stacklevel=stacklevel)
