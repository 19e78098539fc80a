"""Memory estimates, checked before any compute starts."""

from __future__ import annotations

import os

from ._errors import MemoryEstimateError

__all__ = ["available_memory_bytes", "device_memory_limit", "check_memory", "check_device_memory", "format_bytes"]


def available_memory_bytes() -> int:
    """Physical memory of this machine in bytes (the default limit for a run)."""
    env = os.environ.get("NFD_MEMORY_LIMIT_BYTES")
    if env:
        return int(float(env))
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def device_memory_limit(device) -> int:
    """Bytes an accelerator lets one program use (``memory_stats()['bytes_limit']``), or 80% of
    this machine's memory where the device does not say (host CPU devices share it)."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return int(0.8 * available_memory_bytes())


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_memory(estimate_bytes: int, *, what: str, hint: str, limit_bytes: int | None = None) -> None:
    """Raise :class:`MemoryEstimateError` if ``estimate_bytes`` exceeds the limit.

    The limit is ``limit_bytes`` if given, else 80% of physical memory (override with the
    environment variable ``NFD_MEMORY_LIMIT_BYTES``).
    """
    limit = int(limit_bytes) if limit_bytes is not None else int(0.8 * available_memory_bytes())
    if estimate_bytes > limit:
        raise MemoryEstimateError(
            f"{what} needs an estimated {format_bytes(estimate_bytes)}, more than the "
            f"{format_bytes(limit)} allowed ({hint}). Pass max_memory=... to raise the limit.",
            estimate_bytes=int(estimate_bytes),
            limit_bytes=limit,
        )


def check_device_memory(total_bytes: int, per_device_bytes: int | None = None, *, devices=None, what: str,
                        hint: str, limit_bytes: int | None = None) -> None:
    """Check a run spread over ``devices`` (``None``: JAX's default device) before it starts.

    On accelerators each device holds its share: ``per_device_bytes`` (default ``total_bytes``)
    is checked against the device's own limit (:func:`device_memory_limit`), or against
    ``limit_bytes`` if given (then a per-device limit).  Host CPU devices, simulated ones
    included, share this machine's memory: ``total_bytes`` is checked as :func:`check_memory` does.
    """
    import jax

    dev = devices[0] if devices else jax.devices()[0]
    if dev.platform == "cpu":
        check_memory(total_bytes, what=what, hint=hint, limit_bytes=limit_bytes)
        return
    per = total_bytes if per_device_bytes is None else per_device_bytes
    check_memory(per, what=f"{what} (per {dev.platform} device)", hint=hint,
                 limit_bytes=limit_bytes if limit_bytes is not None else device_memory_limit(dev))
