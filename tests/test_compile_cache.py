"""JAX's persistent compilation cache as ``import nfd`` sets it up (nfd/_cache.py).

Each scenario runs in a fresh Python process (the cache is configured at import and JAX decides once
per process whether to use it), with its own temporary cache home so the user's cache is never read
or written.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import json, sys
    import jax
    from jax import monitoring
    events = []
    monitoring.register_event_listener(lambda name, **kw: events.append(name))
    import nfd
    d = nfd.compilation_cache_dir()
    if d is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # cache even this tiny program
    import jax.numpy as jnp
    y = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 1.25)(jnp.ones((7, 5)))
    y.block_until_ready()
    print(json.dumps(dict(dir=d, hits=events.count("/jax/compilation_cache/cache_hits"),
                          misses=events.count("/jax/compilation_cache/cache_misses"))))
""")


def _probe(tmp_path, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NFD_NO_COMPILATION_CACHE", "NFD_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR",
                        "JAX_ENABLE_COMPILATION_CACHE")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT),
               JAX_PLATFORMS="cpu", **env_extra)
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cache_is_on_by_default_and_a_second_process_hits_it(tmp_path):
    d = tmp_path / "xdg" / "nfd" / "jax"
    first = _probe(tmp_path)
    assert first["dir"] == str(d)
    assert first["hits"] == 0 and first["misses"] >= 1
    assert any(d.iterdir()), "the first process wrote no cache entry"
    second = _probe(tmp_path)
    assert second["hits"] >= 1 and second["misses"] == 0, second


def test_opt_out_and_a_user_configured_directory_are_respected(tmp_path):
    off = _probe(tmp_path, NFD_NO_COMPILATION_CACHE="1")
    assert off["dir"] is None and off["hits"] == 0
    assert not (tmp_path / "xdg" / "nfd").exists()
    mine = tmp_path / "mine"
    kept = _probe(tmp_path, JAX_COMPILATION_CACHE_DIR=str(mine))
    assert kept["dir"] == str(mine)
    assert not (tmp_path / "xdg" / "nfd").exists()


def test_default_directory_and_explicit_calls(tmp_path, monkeypatch):
    import jax

    import nfd
    from nfd import _cache

    monkeypatch.delenv("NFD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert _cache.default_compilation_cache_dir() == str(tmp_path / "x" / "nfd" / "jax")
    monkeypatch.setenv("NFD_CACHE_DIR", str(tmp_path / "y"))
    assert _cache.default_compilation_cache_dir() == str(tmp_path / "y")
    before = (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        assert nfd.enable_compilation_cache(tmp_path / "z") == str(tmp_path / "z")
        assert nfd.compilation_cache_dir() == str(tmp_path / "z") and (tmp_path / "z").is_dir()
        nfd.disable_compilation_cache()
        assert nfd.compilation_cache_dir() is None
        (tmp_path / "file").write_text("")
        with pytest.raises(ValueError, match="path"):
            nfd.enable_compilation_cache(tmp_path / "file" / "sub")
    finally:
        jax.config.update("jax_enable_compilation_cache", before[0])
        jax.config.update("jax_compilation_cache_dir", before[1])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[2])
        _cache._reset_jax_cache()
