"""One JSON round trip for the frozen spec dataclasses (accelerators, networks, policies, spaces).

:class:`JsonSpec` is a mixin for a frozen dataclass: ``to_json``/``from_json`` are
``to_dict``/``from_dict`` through ``json`` (keys sorted, default separators), and the
default ``to_dict``/``from_dict`` map the dataclass fields with tuples as JSON lists and
back. ``from_dict`` is strict: a field the class does not have is a ValueError naming the
class and its fields (:func:`known_fields`). A class whose fields need more than
list -> tuple (nested specs) overrides ``from_dict`` and ``to_dict`` only.

It lives in ``cost_models`` because :class:`cost_models.Accelerator` uses it and
``cost_models`` must not import ``search_spaces``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping


def known_fields(cls, data: Mapping[str, Any]) -> dict:
    """``data`` as a dict, refusing keys that are not fields of the dataclass ``cls`` (named in the error)."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; allowed: {', '.join(names)}")
    return dict(data)


class JsonSpec:
    """``to_json``/``from_json`` from ``to_dict``/``from_dict``, and strict dataclass defaults for those two."""

    def to_dict(self) -> dict:
        """The dataclass fields; tuple values become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The spec of :meth:`to_dict`'s output (lists become tuples); unknown fields are a ValueError."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in known_fields(cls, data).items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


__all__ = ["JsonSpec", "known_fields"]
