"""XLA's persistent compilation cache: compiled programs kept once per machine.

JAX compiles every program (a cost-model call, a train step) the first time it runs in
a process. With the persistent cache, a compiled program is written to a folder and
later processes load it instead: the CLI's second run, a resumed search, every Ray
worker on the machine and every test process.

The folder is the user's cache folder for codesign (``platformdirs``: on Linux
``$XDG_CACHE_HOME/codesign`` or ``~/.cache/codesign``), with one subfolder per JAX
version (JAX's own key also covers the program, the XLA flags and the backend, so an
entry never serves another program). ``CODESIGN_COMPILATION_CACHE`` overrides it: a
folder, or ``off`` to compile every time. The cache is bounded (``MAX_BYTES``, oldest
entries evicted by JAX). A folder that cannot be written is said once, in a warning,
and the run goes on without the cache; an unreadable entry is compiled again.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

ENVIRONMENT = "CODESIGN_COMPILATION_CACHE"
OFF = ("off", "none", "0", "false", "no")
#: The cache's size bound (JAX evicts the least recently used entries above it).
MAX_BYTES = 2 * 1024 ** 3
#: Programs that compile faster than this are not worth a file.
MIN_COMPILE_SECONDS = 0.2

log = logging.getLogger("codesign")
_warned: set[str] = set()


def cache_folder() -> Path | None:
    """Where compiled programs are kept on this machine (None: the cache is off)."""
    chosen = os.environ.get(ENVIRONMENT)
    if chosen is not None and chosen.strip().lower() in OFF + ("",):
        return None
    if chosen:
        root = Path(chosen).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("codesign")) / "xla"
    return root / f"jax-{_jax_version()}"


def _jax_version() -> str:
    """The installed JAX's version, read without importing JAX."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jax")
    except PackageNotFoundError:
        return "unknown"


def enable() -> Path | None:
    """Use the machine's compilation cache in this process (and the processes it starts); returns its folder.

    Before JAX is imported this only sets JAX's environment variables, so it costs
    nothing; after, it updates JAX's configuration. ``CODESIGN_COMPILATION_CACHE`` is the
    one setting: what a parent process set for JAX is replaced. Never raises: a folder
    that cannot be used is a warning (once per folder) and the process compiles as usual.
    """
    folder = cache_folder()
    if folder is not None and not _usable(folder):
        folder = None
    settings = {"jax_compilation_cache_dir": None if folder is None else str(folder),
                "jax_compilation_cache_max_size": MAX_BYTES,
                "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_SECONDS}
    if "jax" not in sys.modules:
        for name, value in settings.items():
            if folder is None:
                os.environ.pop(name.upper(), None)
            else:
                os.environ[name.upper()] = str(value)
        return folder
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir != settings["jax_compilation_cache_dir"]:
        for name, value in settings.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()  # a process that compiled before looks at the folder again
    return folder


def _usable(folder: Path) -> bool:
    """Whether ``folder`` can hold the cache; if not, a warning (once per folder)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe"):
            pass
        return True
    except OSError as error:
        if str(folder) not in _warned:
            _warned.add(str(folder))
            log.warning("compilation cache %s cannot be used (%s); compiling without it (set %s to another "
                        "folder, or to 'off')", folder, error.strerror or error, ENVIRONMENT)
        return False
