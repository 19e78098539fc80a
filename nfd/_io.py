"""Save and load results together with their configuration (NPZ or JSON).

Every result object of the package is a frozen dataclass of numpy arrays, numbers, a
:class:`~nfd.ResNet` (or :class:`~nfd.MeanODEResNet`) and a ``config`` dict.  :func:`save`
writes the arrays as NPZ entries (or nested lists in JSON) and everything else, including the
type of the result and the network description, as a JSON header; :func:`load` rebuilds an
object of the same type that compares equal field by field.  Plain dicts of arrays and numbers
(e.g. benchmark records) round-trip too.  Files are read without pickle.

Example:
    >>> import numpy as np, nfd, tempfile, os
    >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
    >>> res = nfd.simulate(X, Y, width=16, depth=2, activation="tanh", lr=0.5, seeds=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
    >>> nfd.save(path, res, config={"note": "example"})
    >>> back, cfg = nfd.load(path, return_config=True)
    >>> bool(np.array_equal(back.outputs, res.outputs)), back.network == res.network, cfg["note"]
    (True, True, 'example')
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import FileFormatError

__all__ = ["save", "load", "to_jsonable", "FORMATS"]

FORMATS = (".npz", ".json")
_META = "__nfd_meta__"
_FORMAT_VERSION = 1


def _encode(obj, key: str, arrays: dict, inline: bool):
    """Turn obj into JSON-able data; arrays go to ``arrays`` (NPZ) or inline (JSON)."""
    from ._activations import Activation

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(obj, Activation):
        return {"__activation__": obj.name}
    if type(obj).__name__ == "Unit" and type(obj).__module__.startswith("nfd."):
        return {"__unit__": obj.name}
    if hasattr(obj, "__array__") and not isinstance(obj, (list, tuple, dict)):
        a = np.asarray(obj)
        if a.dtype == object:
            raise ValueError(f"save: field {key!r} is an object array, which cannot be stored without pickle")
        if inline:
            data = a.tolist() if a.dtype.kind != "f" else np.where(np.isfinite(a), a, 0).tolist()
            enc = {"__array__": {"dtype": a.dtype.str, "shape": list(a.shape), "data": data}}
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                enc["__array__"]["nonfinite"] = [[int(i), repr(float(a.flat[i]))] for i in np.flatnonzero(~np.isfinite(a))]
            return enc
        arrays[key] = a
        return {"__array__": key}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        fields = {f.name: _encode(getattr(obj, f.name), f"{key}.{f.name}" if key else f.name, arrays, inline)
                  for f in dataclasses.fields(obj)}
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}[{i}]", arrays, inline) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}[{i}]", arrays, inline) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ValueError(f"save: dict {key!r} has non-string keys {bad[:3]}")
        return {"__dict__": {k: _encode(v, f"{key}.{k}" if key else k, arrays, inline) for k, v in obj.items()}}
    raise ValueError(f"save: cannot store field {key!r} of type {type(obj).__name__}")


def _decode(data, arrays):
    if isinstance(data, list):
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if "__float__" in data:
        return float(data["__float__"])
    if "__activation__" in data:
        from ._activations import get_activation

        try:
            return get_activation(data["__activation__"])
        except ValueError:
            raise ValueError(f"load: activation {data['__activation__']!r} is not a registered activation; "
                             "custom activations are stored by name only") from None
    if "__unit__" in data:
        from .meanode._units import get_unit

        return get_unit(data["__unit__"])
    if "__array__" in data:
        spec = data["__array__"]
        if isinstance(spec, str):
            return arrays[spec]
        a = np.asarray(spec["data"], dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])
        for i, v in spec.get("nonfinite", []):
            a.flat[i] = float(v)
        return a
    if "__tuple__" in data:
        return tuple(_decode(v, arrays) for v in data["__tuple__"])
    if "__dict__" in data:
        return {k: _decode(v, arrays) for k, v in data["__dict__"].items()}
    if "__dataclass__" in data:
        mod, _, qual = data["__dataclass__"].partition(":")
        if not (mod == "nfd" or mod.startswith("nfd.")):
            raise ValueError(f"refusing to rebuild a non-nfd type {data['__dataclass__']!r}")
        try:
            cls = importlib.import_module(mod)
            for part in qual.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError):
            raise ValueError(f"unknown type {data['__dataclass__']!r} (written by another nfd version?)") from None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ValueError(f"{data['__dataclass__']!r} is not an nfd result type")
        values = {k: _decode(v, arrays) for k, v in data["fields"].items()}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in values.items() if k in init})
        for k, v in values.items():
            if k not in init:
                object.__setattr__(obj, k, v)
        return obj
    return {k: _decode(v, arrays) for k, v in data.items()}


def _open_npz(p, what):
    """``np.load`` of an NPZ archive, or :class:`~nfd.FileFormatError` naming the file."""
    try:
        z = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise FileFormatError(p, f"not a readable {what}: not an NPZ archive (random bytes, or a pickle, "
                                     "which nfd never loads)") from None
        raise FileFormatError(p, f"not a readable {what} ({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - zipfile/OSError/EOFError of damaged files
        raise FileFormatError(p, f"not a readable {what} ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise FileFormatError(p, f"not a readable {what}: a bare .npy array, not an NPZ archive")
    return z


def _check_path(path, what):
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what}: path must be a file path ending in one of {FORMATS}, got {path!r}")
    p = Path(path)
    if p.suffix not in FORMATS:
        raise ValueError(f"{what}: path must end in one of {FORMATS}, got {str(path)!r}")
    return p


def save(path, result: Any, *, config: dict | None = None) -> Path:
    """Write ``result`` (any nfd result object, or a dict of arrays and numbers) to ``path``.

    Args:
        path: file name ending in ``.npz`` (arrays stored binary, compressed) or ``.json``
            (everything as text; larger, human-readable).
        result: the object to store.
        config: optional extra configuration (JSON-able dict, e.g. the CLI config) stored with it.

    Returns:
        The path written.
    """
    p = _check_path(path, "save")
    if p.is_dir():
        raise ValueError(f"save: path must be a file, got the directory {str(path)!r}")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"config must be a dict or None, got {type(config).__name__}")
    from . import __version__

    arrays: dict[str, np.ndarray] = {}
    inline = p.suffix == ".json"
    meta = {
        "format": "nfd-result",
        "format_version": _FORMAT_VERSION,
        "nfd_version": __version__,
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": _encode(config or {}, "config", arrays, inline),
        "result": _encode(result, "", arrays, inline),
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    if inline:
        p.write_text(json.dumps(meta, indent=1))
    else:
        clash = [k for k in arrays if k == _META]
        if clash:
            raise ValueError(f"save: field name {_META!r} is reserved")
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **{_META: np.asarray(json.dumps(meta))}, **arrays)
    return p


def load(path, *, return_config: bool = False):
    """Read a file written by :func:`save`.

    Returns:
        The stored object (same type as saved), or ``(object, config)`` with ``return_config``.

    Raises:
        FileNotFoundError: no file at ``path``.
        nfd.FileFormatError: (a ``ValueError``) the file is not a readable nfd result: random
            bytes, a pickle, a truncated or corrupted archive, invalid JSON, another format
            version, or a type name nfd does not know; the message names the file and the fault.
    """
    p = _check_path(path, "load")
    if not p.exists():
        raise FileNotFoundError(f"load: no such file {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"load: path must be a file, got the directory {str(p)!r}")
    try:
        if p.suffix == ".json":
            try:
                meta = json.loads(p.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise FileFormatError(p, f"not an nfd result file: not valid JSON ({e})") from None
            arrays = {}
        else:
            z = _open_npz(p, "nfd result file")
            with z:
                if _META not in z.files:
                    raise FileFormatError(p, f"not an nfd result file (no {_META!r} entry)")
                meta = json.loads(str(z[_META]))
                arrays = {k: z[k] for k in z.files if k != _META}
        if not isinstance(meta, dict) or meta.get("format") != "nfd-result":
            raise FileFormatError(p, "not an nfd result file (no 'format': 'nfd-result' header)")
        if meta.get("format_version", _FORMAT_VERSION) != _FORMAT_VERSION:
            raise FileFormatError(p, f"nfd result format version {meta.get('format_version')!r}; this nfd reads "
                                     f"version {_FORMAT_VERSION}")
        obj = _decode(meta["result"], arrays)
        if return_config:
            return obj, _decode(meta.get("config", {"__dict__": {}}), arrays)
        return obj
    except FileFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, corrupted or foreign content: one error type
        raise FileFormatError(p, f"not a readable nfd result file ({type(e).__name__}: {e})") from None


def to_jsonable(obj) -> Any:
    """A JSON-serialisable copy of a result (arrays become nested lists, NaN becomes None)."""

    def conv(x):
        from ._activations import Activation

        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)):
            return float(x) if math.isfinite(float(x)) else None
        if isinstance(x, Activation):
            return x.name
        if hasattr(x, "__array__") and not isinstance(x, (list, tuple, dict)):
            a = np.asarray(x)
            if a.ndim == 0:
                return conv(a.item())
            if a.dtype.kind == "f":
                return [conv(v) for v in a.tolist()] if a.ndim == 1 else [conv(r) for r in a]
            return a.tolist()
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {str(k): conv(v) for k, v in x.items()}
        if hasattr(x, "name"):
            return str(x.name)
        return str(x)

    return conv(obj)
