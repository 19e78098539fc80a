"""What a run reports besides its numbers: :class:`Status`, shared by every solver's result."""

from __future__ import annotations

import dataclasses

__all__ = ["Status"]


@dataclasses.dataclass(frozen=True)
class Status:
    """How a run went (static metadata of a result: not a pytree leaf).

    Attributes:
        diverged: some output became non-finite (only possible with ``on_divergence="return"``).
        divergence_step: the first step with a non-finite output, or ``None``.
        divergence_index: the seed/replicate index where it happened first, or ``None``.
        dropped_pivots: (forward, backward) Gaussian directions dropped as singular by the
            particle solver, or ``None`` for solvers without pivots.
        singular_step: the first step where a pivot was dropped, or ``None``.

    Example:
        >>> Status().diverged, Status(divergence_step=3).diverged
        (False, True)
    """

    divergence_step: int | None = None
    divergence_index: int | None = None
    dropped_pivots: tuple[int, int] | None = None
    singular_step: int | None = None

    @property
    def diverged(self) -> bool:
        return self.divergence_step is not None

    @classmethod
    def of(cls, divergence=None, **kw) -> "Status":
        """A status from a :class:`nfd._divergence.Divergence` (or ``None``) and other fields."""
        if divergence is None:
            return cls(**kw)
        return cls(divergence_step=divergence.step, divergence_index=divergence.index, **kw)


class Config(dict):
    """A result's ``config``: a plain dict that also hashes (by content), so a result whose
    config is static pytree metadata can be an argument of ``jax.jit``."""

    def __hash__(self):
        return hash(repr(sorted((str(k), repr(v)) for k, v in self.items())))


# the fields of a result that are static metadata (not pytree leaves) whatever the result type
STATIC_FIELDS = ("network", "config", "status", "forward_steps", "dropped_pivots")


def to_numpy(result):
    """``result`` with every array leaf converted to a numpy array (e.g. after ``jax.jit``)."""
    import jax
    import numpy as np

    return jax.tree_util.tree_map(np.asarray, result)


def result(cls):
    """Class decorator: a frozen dataclass registered as a JAX pytree.

    Arrays (and ``None`` for absent ones) are the leaves, so a result passes through
    ``jax.tree_util``, ``jax.jit`` and ``jax.vmap``; the network, ``config``, ``status`` and other
    descriptive fields (:data:`STATIC_FIELDS`) are static metadata.  ``result.to_numpy()``
    converts the leaves back to numpy arrays.
    """
    import jax

    post = cls.__dict__.get("__post_init__")

    def __post_init__(self):
        config = getattr(self, "config", None)
        if isinstance(config, dict) and not isinstance(config, Config):
            object.__setattr__(self, "config", Config(config))
        if post is not None:
            post(self)

    cls.__post_init__ = __post_init__  # before the dataclass is made, so that __init__ calls it
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    meta = [n for n in names if n in STATIC_FIELDS]
    data = [n for n in names if n not in STATIC_FIELDS]
    cls.to_numpy = to_numpy
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    return cls
