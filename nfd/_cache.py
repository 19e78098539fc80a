"""JAX's persistent compilation cache, on by default for nfd.

Every new Python process recompiles each jitted program (seconds per solver shape on a CPU), which is
often longer than the solve itself.  With JAX's persistent compilation cache the compiled programs are
written to disk and a later process running the same shapes loads them instead.  ``import nfd`` turns
the cache on in a per-user directory:

* ``$NFD_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/nfd/jax``, else ``~/.cache/nfd/jax``
  (``%LOCALAPPDATA%\\nfd\\jax`` on Windows);
* unless the user already configured a cache directory for JAX (``jax_compilation_cache_dir``, e.g.
  through ``JAX_COMPILATION_CACHE_DIR``): that one is kept untouched;
* unless the user turned JAX's cache off (``JAX_ENABLE_COMPILATION_CACHE=false``);
* unless ``NFD_NO_COMPILATION_CACHE`` is set to anything other than ``""`` or ``"0"`` (opt-out), or
  :func:`disable_compilation_cache` is called before the first compilation.

Only programs whose compilation takes at least ``jax_persistent_cache_min_compile_time_secs`` are
written; nfd lowers JAX's default of 1 s to 0.2 s (only when it sets the directory itself) so the
solvers' smaller programs are kept too.  The cache is a plain directory of files: delete it to clear it.
As JAX warns, do not share it with users you do not trust (loading an entry runs its code).

Example:
    >>> import nfd
    >>> nfd.compilation_cache_dir() is None or isinstance(nfd.compilation_cache_dir(), str)
    True
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "disable_compilation_cache", "compilation_cache_dir",
           "default_compilation_cache_dir"]

OPT_OUT_ENV = "NFD_NO_COMPILATION_CACHE"
DIR_ENV = "NFD_CACHE_DIR"
MIN_COMPILE_TIME_S = 0.2

_enabled_by_nfd = False


def default_compilation_cache_dir() -> str:
    """The per-user directory nfd uses for JAX's compilation cache (not created here)."""
    if os.environ.get(DIR_ENV):
        return str(Path(os.environ[DIR_ENV]).expanduser())
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]).expanduser()
    else:
        base = Path.home() / ".cache"
    return str(base / "nfd" / "jax")


def compilation_cache_dir() -> str | None:
    """The directory JAX's persistent compilation cache uses now (None: the cache is off)."""
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir or None


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip() not in ("", "0")


def enable_compilation_cache(path: str | os.PathLike | None = None, *, min_compile_time_secs: float | None = None
                             ) -> str:
    """Turn JAX's persistent compilation cache on in ``path`` (default: :func:`default_compilation_cache_dir`).

    An explicit call overrides a directory configured before; ``import nfd`` calls it only when none
    was configured and the opt-out variable is unset.  Programs compiled before the call are not
    written.  Returns the directory.

    Example:
        >>> import nfd, tempfile
        >>> d = nfd.enable_compilation_cache(tempfile.mkdtemp())
        >>> nfd.compilation_cache_dir() == d
        True
        >>> nfd.disable_compilation_cache()
    """
    global _enabled_by_nfd
    path = str(Path(path).expanduser()) if path is not None else default_compilation_cache_dir()
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"path: cannot create the compilation cache directory {path!r} ({e})") from None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      MIN_COMPILE_TIME_S if min_compile_time_secs is None else float(min_compile_time_secs))
    _reset_jax_cache()
    _enabled_by_nfd = True
    return path


def disable_compilation_cache() -> None:
    """Turn JAX's persistent compilation cache off for the rest of this process (files stay on disk).

    To opt out before ``import nfd`` instead, set the environment variable ``NFD_NO_COMPILATION_CACHE=1``.
    """
    global _enabled_by_nfd
    jax.config.update("jax_enable_compilation_cache", False)
    _reset_jax_cache()
    _enabled_by_nfd = False


def _reset_jax_cache():
    # JAX decides once per process, at the first compilation, whether to use the cache; forget that
    # decision so a change made after some compilation takes effect for the next one.
    try:
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()
    except Exception:  # pragma: no cover - a JAX without this module: the setting applies from the start
        pass


def _enable_on_import() -> None:
    """Called by ``import nfd``: the cache on by default, unless opted out or already configured."""
    if _opted_out() or jax.config.jax_compilation_cache_dir or not jax.config.jax_enable_compilation_cache:
        return
    try:
        enable_compilation_cache()
    except Exception:  # an unwritable home directory must not break ``import nfd``
        pass
