"""Shared helpers for ``devices=`` options: a 1-D ``jax.sharding.Mesh`` over one named axis.

Every solver that can spread work over several devices does it the same way: resolve the user's
``devices`` argument to a list of ``jax.Device`` (:func:`resolve_devices`), check that the axis to
split is a multiple of the device count (:func:`check_divisible`, before any work), build a 1-D
mesh whose single axis carries a name such as ``"seeds"`` or ``"particles"`` (:func:`make_mesh`),
place the inputs with ``jax.device_put`` under a :class:`~jax.sharding.NamedSharding` that splits
that one array axis (:func:`sharding_for`, :func:`shard_along`) and let the jitted computation
follow (GSPMD turns reductions over the split axis into all-reduces).  Results come back with
:func:`to_host`, which also works when the mesh spans several processes (``jax.distributed``):
there the outputs are not fully addressable and are gathered with
``jax.experimental.multihost_utils.process_allgather``.

Example:
    >>> import jax, numpy as np
    >>> devs = resolve_devices("all")
    >>> mesh = make_mesh(devs, "particles")
    >>> check_divisible(4 * len(devs), devs, "particles")
    >>> x = shard_along(np.zeros((3, 4 * len(devs), 2)), mesh, 1, "particles")
    >>> tuple(x.sharding.spec)
    (None, 'particles', None)
    >>> to_host(x).shape == (3, 4 * len(devs), 2)
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["resolve_devices", "make_mesh", "sharding_for", "check_divisible", "shard_along", "to_host"]


def resolve_devices(devices) -> list | None:
    """``None`` → ``None`` (no sharding); ``"all"`` → ``jax.devices()`` (every device of every
    process); a list/tuple of ``jax.Device`` → that list.  Raises ValueError on anything else, an
    empty list, a non-device entry or a repeated device.

    Example:
        >>> resolve_devices(None) is None, len(resolve_devices("all")) == jax.device_count()
        (True, True)
    """
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices == "all":
            return list(jax.devices())
        raise ValueError(f"devices must be None, 'all' or a list of jax devices, got {devices!r}")
    if isinstance(devices, jax.Device):
        devices = [devices]
    try:
        devs = list(devices)
    except TypeError:
        raise ValueError(f"devices must be None, 'all' or a list of jax devices, got {devices!r}") from None
    if not devs:
        raise ValueError("devices: empty device list")
    bad = [d for d in devs if not isinstance(d, jax.Device)]
    if bad:
        raise ValueError(f"devices: entries must be jax devices (e.g. from jax.devices()), got {bad[0]!r}")
    if len(set(devs)) != len(devs):
        raise ValueError(f"devices: a device is listed twice in {devs}")
    return devs


def make_mesh(devs, axis_name) -> Mesh:
    """A 1-D :class:`~jax.sharding.Mesh` over ``devs`` with the single axis ``axis_name``."""
    return Mesh(np.array(list(devs), dtype=object), (axis_name,))


def sharding_for(mesh, ndim, axis, axis_name) -> NamedSharding:
    """NamedSharding splitting axis ``axis`` of an ``ndim``-D array over mesh axis ``axis_name``
    (all other axes replicated), e.g. ``PartitionSpec(None, "particles", None)`` for
    ``(ndim, axis) = (3, 1)``."""
    if not 0 <= axis < ndim:
        raise ValueError(f"axis {axis} out of range for an array with {ndim} dimensions")
    spec = [None] * ndim
    spec[axis] = axis_name
    return NamedSharding(mesh, PartitionSpec(*spec))


def check_divisible(n, devs, what) -> None:
    """Raise ValueError unless ``n`` (the size of the axis ``what``) is a multiple of ``len(devs)``."""
    if n % len(devs):
        raise ValueError(f"{what}={n} must be a multiple of the number of devices ({len(devs)}) to shard them")


def shard_along(array, mesh, axis, axis_name):
    """``array`` as a ``jax.Array`` split along ``axis`` over ``mesh``'s axis ``axis_name``.

    Built with ``jax.make_array_from_callback`` from a host copy, so each process only transfers
    the slices of its own devices (with several processes, each must pass the same value).
    """
    a = np.asarray(array)
    return place(a, sharding_for(mesh, a.ndim, axis, axis_name))


def place(array, sharding):
    """``array`` (host) as a ``jax.Array`` with ``sharding`` (``None``: on the default device).
    Each process transfers only the slices of its own devices."""
    a = np.asarray(array)
    if sharding is None:
        return jnp.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])


def _fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        # split over devices of several processes: a collective (every process calls it, in the
        # same order) after which each process holds the whole value
        return multihost_utils.process_allgather(x, tiled=True)
    # local, or replicated on every device (then each process reads its own copy)
    return np.asarray(x)


def to_host(tree):
    """Numpy copy of every array in ``tree``.  An array split over devices of several processes
    is gathered (``process_allgather``), so every process receives the full value; a replicated
    one is read from this process's own copy.  All processes must call it on the same tree."""
    return jax.tree_util.tree_map(_fetch, tree)
