"""The checkpoint file format shared by the particle solver, the simulator and the Mean ODE solver.

A checkpoint is an NPZ file: every array stored as its raw bytes (so any dtype, 16-bit storage
included, round-trips bit for bit) and one ``__meta__`` entry, a JSON object with the format
version, the problem's fingerprint, each array's dtype and shape, and whatever the solver adds
(its step counters and a few sizes for error messages).  It is written atomically (a temporary
file renamed into place, so a crash mid-write leaves the previous checkpoint) by process 0 after
the shards of every process have been gathered; every process must call :func:`write`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import FileFormatError
from ._io import _open_npz
from ._sharding import to_host
from ._validate import check_output_file

VERSION = 1


def write(path, arrays: dict[str, Any], meta: dict) -> None:
    """Write ``arrays`` (name → numpy or jax array; jax arrays are gathered to the host) and the
    JSON-serialisable ``meta`` to ``path``.  All processes call it; process 0 writes."""
    raw, dtypes = {}, {}
    for name, v in arrays.items():
        a = np.ascontiguousarray(to_host(v))  # a numpy array passes through unchanged
        dtypes[name] = [jnp.dtype(a.dtype).name, list(a.shape)]
        raw[name] = a.reshape(-1).view(np.uint8)
    meta = dict(meta, version=VERSION, dtypes=dtypes)
    if jax.process_index() != 0:
        return
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **raw)
    os.replace(tmp, path)


def read(path, *, what: str, fingerprint: str, differs: str, info: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(meta, arrays) of the checkpoint at ``path``, refused with a ``ValueError`` if the file is
    unreadable, damaged or of another version (:class:`~nfd.FileFormatError`, a ``ValueError``), or if its fingerprint is not ``fingerprint`` (the message
    says that ``differs`` differ and shows the checkpoint's ``info`` entries).  ``what`` names the
    solver in messages."""
    path = os.fspath(path)
    try:
        z = _open_npz(path, f"{what} checkpoint")
        if "__meta__" not in z.files:
            raise ValueError("no __meta__ entry")
        meta = json.loads(z["__meta__"].tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError("__meta__ is not a JSON object")
    except FileFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise FileFormatError(path, f"not a readable {what} checkpoint ({type(e).__name__}: {e})") from None
    with z:
        if meta.get("version") != VERSION:
            raise FileFormatError(path, f"not a readable {what} checkpoint: unknown checkpoint version "
                                        f"{meta.get('version')!r} (this nfd reads version {VERSION})")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            has = ", ".join(f"{k}={meta.get(k)}" for k in info)
            raise ValueError(f"{path}: the checkpoint belongs to a different problem ({differs} differ; it has {has}); "
                             "delete it or pass another checkpoint path")
        try:
            arrays = {}
            for name, (dt, shape) in meta["dtypes"].items():
                arrays[name] = z[name].view(jnp.dtype(dt)).reshape(shape)
        except Exception as e:  # noqa: BLE001 - truncated or inconsistent entries
            raise FileFormatError(path, f"not a readable {what} checkpoint: damaged entries "
                                        f"({type(e).__name__}: {e})") from None
    return meta, arrays


def check_file(path, *, what: str = "nfd") -> dict:
    """The meta entry of the checkpoint at ``path`` after checking, without the problem's
    fingerprint, that the file is a readable checkpoint of this version whose every entry can be
    read (else :class:`~nfd.FileFormatError` naming the file): run before any compute."""
    meta, _ = read(path, what=what, fingerprint=None, differs="")
    return meta


def check_options(checkpoint, checkpoint_every, *, what: str = "nfd") -> tuple[str | None, int | None]:
    """Validate a solver's ``checkpoint`` (a file path or ``None``) and ``checkpoint_every`` (a
    positive number of steps, only with a path) before any work; returns them normalised.  The
    path must be in an existing directory; an existing file must be a readable checkpoint
    (:func:`check_file`; ``what`` names the solver in its message)."""
    if checkpoint_every is not None:
        if (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer))
                or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive integer (steps), got {checkpoint_every!r}")
        if checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint=<path> (where to write the checkpoints)")
        checkpoint_every = int(checkpoint_every)
    if checkpoint is not None:
        # refused now, not after the run: a directory, or a file in a directory that does not exist
        checkpoint = check_output_file("checkpoint", checkpoint)
        if os.path.exists(checkpoint):
            check_file(checkpoint, what=what)
    return checkpoint, checkpoint_every


def fingerprint(ident, arrays=()) -> str:
    """sha256 (32 hex digits) of everything that fixes a run's numbers: ``ident`` (its ``repr``:
    sizes, options, seed) and the ``arrays`` (data; shapes and float64 bytes).  A checkpoint is
    resumed only by the problem with the same fingerprint.  Devices are not part of it."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((ident, VERSION)).encode())
    for a in arrays:
        a = np.ascontiguousarray(a, np.float64)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]
