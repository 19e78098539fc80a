"""Eager validation of user input, before anything is traced, compiled or allocated.

Every public entry point (``nfd.simulate``, ``nfd.solve`` and its methods, the kernels,
``nfd.limit_loss_fn``, ``nfd.save``/``nfd.load``, checkpoints and the ``nfd`` command) checks its
arguments with these functions, so the same kind of argument is accepted and refused the same
way everywhere, and every message names the argument and says what would be accepted:

* integers: Python ``int`` and NumPy integer types alike; ``bool`` and floats are refused;
* real numbers: finite, with a sign rule (``"positive"``, ``"non-negative"`` or ``"any"``);
  strings, ``bool`` and complex numbers are refused;
* choices: one of a fixed tuple of strings, with a did-you-mean for near misses;
* dtypes: a floating dtype from an allowed list (``dtype="banana"`` names ``dtype``);
* seeds: integers in [0, 2**64) (:data:`SEED_RANGE`), turned into PRNG keys by :func:`seed_key`
  from all 64 bits, so that different seeds never share a key, with or without 64-bit JAX;
* parameter groups: a lone string (``frozen="input"``) means that one group;
* arrays: real, finite, of the documented shape, and representable in the compute dtype.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "check_data", "check_test_inputs", "check_seeds", "check_positive_float", "check_int", "check_float",
    "check_choice", "check_dtype", "check_seed", "seed_key", "check_groups", "check_array", "check_fits",
    "check_bytes", "check_bool", "check_output_file", "check_output_dir", "SEED_RANGE",
]

#: seeds are integers in [0, 2**64): two 32-bit words of the threefry key
SEED_RANGE = (0, 2**64)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_int(name: str, v, *, min: int | None = None, max: int | None = None, none_ok: bool = False,
              what: str | None = None):
    """``int(v)`` if ``v`` is an integer (Python or NumPy; not ``bool``) in [min, max], else a
    ``ValueError`` naming ``name``.  ``none_ok`` lets ``None`` through."""
    if v is None and none_ok:
        return None
    if what is None:
        if min is not None and max is not None:
            what = f"an integer in [{min}, {max}]"
        elif min == 1:
            what = "a positive integer"
        elif min is not None:
            what = f"an integer ≥ {min}"
        elif max is not None:
            what = f"an integer ≤ {max}"
        else:
            what = "an integer"
        if none_ok:
            what += " or None"
    if not _is_int(v) or (min is not None and v < min) or (max is not None and v > max):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return int(v)


_SIGNS = {"positive": "a positive", "non-negative": "a non-negative", "any": "a"}


def check_float(name: str, v, *, sign: str = "any", max: float | None = None, max_open: bool = False,
                none_ok: bool = False, what: str | None = None):
    """``float(v)`` if ``v`` is a real finite number obeying ``sign`` (``"positive"``,
    ``"non-negative"`` or ``"any"``) and below ``max`` (``max_open``: strictly below), else a
    ``ValueError`` naming ``name``.  Strings, ``bool`` and complex numbers are refused."""
    if v is None and none_ok:
        return None
    if what is None:
        what = f"{_SIGNS[sign]} finite number"
        if max is not None:
            what += f" {'<' if max_open else '≤'} {max}"
        if none_ok:
            what += " or None"
    ok = not isinstance(v, (str, bytes, bool, np.bool_, complex, np.complexfloating))
    if ok:
        try:
            a = np.asarray(v)
            ok = a.ndim == 0 and a.dtype.kind in "iuf"
            fv = float(a) if ok else math.nan
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise ValueError(f"{name} must be {what}, got {v!r}")
    if (not math.isfinite(fv) or (sign == "positive" and fv <= 0) or (sign == "non-negative" and fv < 0)
            or (max is not None and (fv >= max if max_open else fv > max))):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return fv


def check_positive_float(name: str, v) -> float:
    """Return ``float(v)`` if it is a positive finite number, else a ValueError naming ``name``."""
    return check_float(name, v, sign="positive")


def check_bool(name: str, v) -> bool:
    """``bool(v)`` for ``True``/``False`` (Python or NumPy), else a ``ValueError`` naming ``name``."""
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def check_choice(name: str, v, choices: Iterable[str]):
    """``v`` if it is one of ``choices``, else a ``ValueError`` naming ``name``, the choices and the
    closest one ("did you mean ...?")."""
    choices = tuple(choices)
    try:
        if v in choices:
            return v
    except TypeError:  # unhashable / uncomparable
        pass
    hint = ""
    if isinstance(v, str):
        close = difflib.get_close_matches(v, [str(c) for c in choices], n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]!r}?"
    raise ValueError(f"{name} must be one of {choices}, got {v!r}{hint}")


def check_dtype(name: str, v, allowed=("float32", "float64"), *, need_x64: bool = True):
    """``jnp.dtype(v)`` if it names one of ``allowed``, else a ``ValueError`` naming ``name``.
    With ``need_x64``, a 64-bit dtype also needs ``jax_enable_x64`` (else a ``ValueError``
    saying so, instead of JAX's silent truncation to 32 bits)."""
    import jax
    import jax.numpy as jnp

    try:
        dt = jnp.dtype(v)
        ok = dt.name in allowed
    except (TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        names = tuple(allowed)
        hint = ""
        if isinstance(v, str):
            close = difflib.get_close_matches(v, list(names), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name} must be one of {names} (a name or a jnp dtype), got {v!r}{hint}")
    if need_x64 and dt.itemsize == 8 and not jax.config.jax_enable_x64:
        raise ValueError(f"{name}={dt.name} needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) "
                         "first (or use `with jax.enable_x64(True):`)")
    return dt


# ---- seeds ---------------------------------------------------------------------------------
def check_seed(seed, name: str = "seed") -> int:
    """``int(seed)`` if it is an integer in [0, 2**64) (Python or NumPy, not ``bool``)."""
    return check_int(name, seed, min=SEED_RANGE[0], max=SEED_RANGE[1] - 1,
                     what="an integer in [0, 2**64)")


def seed_key(seed, name: str = "seed"):
    """The PRNG key of an integer ``seed`` in [0, 2**64), built from all 64 bits.

    With JAX's default threefry generator this is the key ``jax.random.PRNGKey(seed)`` gives with
    64-bit JAX on, ``[seed >> 32, seed & 0xFFFFFFFF]``; it is the same with 64-bit JAX off (where
    ``PRNGKey`` keeps only the low 32 bits, so that ``seed`` and ``seed + 2**32`` collide).  For
    seeds below 2**32 it equals ``PRNGKey(seed)`` in either mode, so existing results are kept.
    Every place that turns a seed into a key goes through this function.
    """
    import jax
    import jax.numpy as jnp

    s = check_seed(seed, name)
    hi, lo = s >> 32, s & 0xFFFFFFFF
    impl = str(jax.config.jax_default_prng_impl)
    if impl == "threefry2x32":
        return jnp.asarray(np.array([hi, lo], np.uint32))
    # another default generator: seed it with the low word, fold in the high word
    key = jax.random.PRNGKey(np.uint32(lo))
    return jax.random.fold_in(key, np.uint32(hi)) if hi else key


def check_seeds(seeds):
    """The number of independent networks/replicates: a positive integer."""
    return check_int("seeds", seeds, min=1)


# ---- parameter groups ------------------------------------------------------------------------
def check_groups(name: str, v, groups: Iterable[str]) -> tuple[str, ...]:
    """A sorted tuple of distinct names from ``groups``.  A lone string means that one group
    (``frozen="input"`` is ``("input",)``); ``()`` means none; anything else (``None`` included)
    is a ``ValueError`` naming ``name``."""
    groups = tuple(groups)
    what = f"a group name or a tuple of group names from {groups} (() for none)"
    if isinstance(v, str):
        v = (v,)
    if v is None or isinstance(v, (bytes, dict)) or not isinstance(v, Iterable):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    items = tuple(v)
    bad = [g for g in items if not isinstance(g, str) or g not in groups]
    if bad:
        hint = ""
        if isinstance(bad[0], str):
            close = difflib.get_close_matches(bad[0], list(groups), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name}: unknown parameter groups {bad}; choose from {groups}{hint}")
    return tuple(sorted(set(items)))


# ---- arrays ------------------------------------------------------------------------------------
def check_array(name: str, v, *, ndim: int | None = None, shape_doc: str = "", allow_empty: bool = False,
                finite: bool = True) -> np.ndarray:
    """``v`` as a float64 numpy array: numeric, real (complex is refused rather than truncated),
    of ``ndim`` dimensions, non-empty and finite; else a ``ValueError`` naming ``name`` (and the
    documented shape ``shape_doc``, e.g. ``"(K, d)"``)."""
    doc = f" of shape {shape_doc}" if shape_doc else ""
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real numeric array{doc}, got {type(v).__name__}") from None
    if a.dtype.kind == "c":
        raise ValueError(f"{name} must be real; got a complex array (pass {name}.real if that is meant)")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array{doc}, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s){doc}, got shape {a.shape}")
    if not allow_empty and a.size == 0:
        raise ValueError(f"{name} must be non-empty{doc}, got shape {a.shape}")
    if finite and not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        where = (f"row {bad[0]}, column {bad[1]}" if len(bad) == 2 else
                 f"index {bad[0]}" if len(bad) == 1 else f"index {bad}")
        raise ValueError(f"{name} contains NaN or infinite values (first at {where})")
    return a


def check_fits(name: str, a, dtype, *, margin: float = 1.0) -> None:
    """Refuse values of ``a`` whose magnitude does not fit ``dtype`` (times ``margin``): they
    would become ±inf on conversion and the run would 'diverge' at step 0 for no reason of its
    own (e.g. X finite in float64 but beyond float32's 3.4e38)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        return
    a = np.asarray(a)
    if a.size == 0:
        return
    big = float(np.max(np.abs(a)))
    lim = float(np.finfo(dt).max) * margin
    if big > lim:
        raise ValueError(f"{name} has values up to {big:.3g}, beyond what the compute dtype {dt.name} can hold "
                         f"(≈{lim:.3g}); rescale {name} or use dtype=float64")


def check_data(X, Y, *, loss: str = "mse", batch_size: int = 1, dtype=None):
    """Validate a training stream X (K, d) and targets Y (K,) and return them as numpy arrays.

    With ``batch_size = B > 1`` the K samples are consumed B per step (K must be a multiple of B).
    With ``dtype`` (the compute dtype), values that do not fit it are refused.
    """
    X = check_array("X", X, shape_doc="(K, d) (one row per SGD sample)", allow_empty=True, finite=False)
    Y = check_array("Y", Y, shape_doc="(K,)", allow_empty=True, finite=False)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (K, d) (one row per SGD sample), got shape {X.shape}")
    if Y.ndim != 1:
        raise ValueError(f"Y must have shape (K,), got shape {Y.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be non-empty (K ≥ 1 samples of d ≥ 1 features), got shape {X.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y disagree on the number of samples: X has {X.shape[0]}, Y has {Y.shape[0]}")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or infinite values (first at row {bad[0]}, column {bad[1]})")
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"Y contains NaN or infinite values (first at index {int(np.argmax(~np.isfinite(Y)))})")
    if loss == "logistic" and not np.all((Y == 0) | (Y == 1)):
        raise ValueError("Y must contain labels in {0, 1} for loss='logistic'")
    batch_size = check_int("batch_size", batch_size, min=1)
    if X.shape[0] % batch_size:
        raise ValueError(f"batch_size: the number of samples K={X.shape[0]} must be a multiple of "
                         f"batch_size={batch_size}")
    if dtype is not None:
        check_fits("X", X, dtype)
        check_fits("Y", Y, dtype)
    return X, Y


def check_inputs_2d(X, name: str = "X") -> np.ndarray:
    """X (K, d) with K, d ≥ 1, real and finite (what the wrappers read ``input_dim`` from)."""
    a = check_array(name, X, shape_doc="(K, d) (one row per SGD sample)", allow_empty=True, finite=False)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (K, d) (one row per SGD sample), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty (K ≥ 1 samples of d ≥ 1 features), got shape {a.shape}")
    return a


def check_test_inputs(X_test, d: int, *, dtype=None):
    """Validate extra evaluation inputs of shape (N, d); ``None`` passes through."""
    if X_test is None:
        return None
    X_test = check_array("X_test", X_test, shape_doc=f"(N, {d})", allow_empty=True)
    if X_test.ndim != 2 or X_test.shape[1] != d or X_test.shape[0] == 0:
        raise ValueError(f"X_test must have shape (N, {d}), got shape {X_test.shape}")
    if dtype is not None:
        check_fits("X_test", X_test, dtype)
    return X_test


# ---- sizes and paths ---------------------------------------------------------------------------
def check_bytes(name: str, v):
    """A byte limit: ``None`` (the default limit) or a positive number of bytes (e.g. ``8e9`` or
    ``8 * 2**30``); strings such as ``"8GB"`` are refused with a message naming ``name``."""
    if v is None:
        return None
    fv = check_float(name, v, sign="positive", what="a positive number of bytes (e.g. 8 * 2**30) or None")
    return int(fv)


def check_output_file(name: str, path, *, suffixes: tuple[str, ...] | None = None) -> str:
    """A path to be written later: not a directory, in a directory that exists (so that a long
    run is not lost to a path that cannot be written at its end)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a file path, got {path!r}")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name} must be a file path, got the directory {os.fspath(path)!r}")
    if suffixes is not None and p.suffix not in suffixes:
        raise ValueError(f"{name}: path must end in one of {suffixes}, got {os.fspath(path)!r}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{name}: the directory {str(parent)!r} of {os.fspath(path)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{name}: the directory {str(parent)!r} is not writable")
    return os.fspath(path)


def check_output_dir(name: str, path) -> Path:
    """A directory to be created (or reused) later: not an existing file, and under an existing,
    writable directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name}: {str(p)!r} exists and is not a directory")
    q = p
    while not q.exists():
        if q.parent == q:
            break
        q = q.parent
    if q.exists() and not q.is_dir():
        raise ValueError(f"{name}: cannot create {str(p)!r}: {str(q)!r} is a file")
    if q.exists() and not os.access(q, os.W_OK):
        raise ValueError(f"{name}: cannot create {str(p)!r}: {str(q)!r} is not writable")
    return p

