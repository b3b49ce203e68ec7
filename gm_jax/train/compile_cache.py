"""JAX's persistent compilation cache for gm_jax commands: compiled programs are kept on disk between runs,
so a second ``gm-jax sample``/``eval``/``train`` of the same model skips most of its compile time.

On by default in ``~/.cache/gm_jax/jax`` (``$XDG_CACHE_HOME`` respected). ``GM_JAX_COMPILATION_CACHE`` moves
it (a folder) or switches it off (``0``, ``off``, ``false``). JAX keys entries by the program and its own
version, so entries of another JAX version are never used; an unreadable or unwritable cache folder only
turns the cache off.
"""

from __future__ import annotations

import os

ENV = "GM_JAX_COMPILATION_CACHE"
OFF = ("0", "off", "false", "no", "")


def cache_dir() -> str | None:
    """The cache folder in force, or ``None`` when switched off."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else os.path.abspath(os.path.expanduser(value))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gm_jax", "jax")


def enable_compilation_cache(path: str | None = None, min_compile_seconds: float = 0.5) -> str | None:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`cache_dir`); returns the folder
    used, or ``None`` when off or when the folder cannot be created (never fatal)."""
    path = path or cache_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            return None
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
