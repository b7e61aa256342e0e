"""Public names of a package imported from their submodules on first use (PEP 562).

``import cost_models`` and ``import codesign`` then cost milliseconds: JAX, Flax, Ray and
Optuna are imported by the first name that needs them (``codesign --help`` and
``codesign network`` never do).
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` for ``exports`` (public name -> the module defining it).

    A name is imported when first read and then kept on the package, so later reads are
    plain attribute lookups. No exported name may also be a submodule's name (importing
    the submodule would rebind it).
    """
    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
