"""One JSON round trip for the frozen spec dataclasses (accelerators, networks, policies, spaces), and file reading.

:class:`JsonSpec` is a mixin for a frozen dataclass: ``to_json``/``from_json`` are
``to_dict``/``from_dict`` through ``json`` (keys sorted, default separators), and the
default ``to_dict``/``from_dict`` map the dataclass fields with tuples as JSON lists and
back. ``from_dict`` is strict: the JSON must be an object, and a field the class does not
have, a required field left out, or a ``null`` where the field has a non-null default is a
ValueError naming the class and the field (:func:`known_fields`, :func:`checked_fields`).
A class whose fields need more than list -> tuple (nested specs) overrides ``from_dict``
and ``to_dict`` only.

Files: :meth:`JsonSpec.from_file` reads a spec from a JSON file, and every problem is one
:class:`FormatError` naming the file, the line (of the field, where the message names one)
and the field. :func:`read_text` is the text reading every file reader of ``cost_models``
shares: UTF-8 with or without a byte-order mark; anything else is "not a text file".

It lives in ``cost_models`` because :class:`cost_models.Accelerator` uses it and
``cost_models`` must not import ``search_spaces``.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Mapping


class FormatError(ValueError):
    """A malformed input file; the message names the file, the line and the field."""


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped); a binary file is a :class:`FormatError`."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # Excel and Notepad write a BOM; it is not part of the first field
    except UnicodeDecodeError as error:
        raise FormatError(f"{path}: not a text file (byte 0x{data[error.start]:02x} at offset {error.start} "
                          f"is not UTF-8); save it as UTF-8 text") from None
    if "\x00" in text:  # valid UTF-8 but binary (or UTF-16 without a BOM)
        raise FormatError(f"{path}: not a text file (it holds NUL bytes); save it as UTF-8 text")
    return text


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def known_fields(cls, data: Mapping[str, Any]) -> dict:
    """``data`` as a dict, refusing anything but a mapping of fields of the dataclass ``cls`` (named in the error)."""
    names = _field_names(cls)
    if not isinstance(data, Mapping):
        kind = "null" if data is None else "a list" if isinstance(data, (list, tuple)) else type(data).__name__
        raise ValueError(f"{cls.__name__}: must be a JSON object {{field: value, ...}} with fields from "
                         f"{', '.join(names)}; got {kind}")
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; allowed: {', '.join(names)}")
    return dict(data)


def checked_fields(cls, data: Mapping[str, Any]) -> dict:
    """:func:`known_fields`, and every required field present and no ``null`` where the default is not null."""
    data = known_fields(cls, data)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and required and f.name not in data:
            raise ValueError(f"{cls.__name__}: field {f.name!r} is missing (it has no default); "
                             f"fields: {', '.join(_field_names(cls))}")
        # A null where the field defaults to null (an optional value) is that default; elsewhere it is
        # a mistake that would surface as a TypeError deep inside the class.
        default = None if required else f.default_factory() if f.default is dataclasses.MISSING else f.default
        if data.get(f.name, 0) is None and (required or default is not None):
            hint = "" if required else f" (leave it out for the default, {_shown(default)})"
            raise ValueError(f"{cls.__name__}: field {f.name!r} must not be null{hint}")
    return data


def _shown(value) -> str:
    """A default as JSON where it is plain data (tuples as lists), else as Python shows it."""
    try:
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    except TypeError:
        return repr(value)


class JsonSpec:
    """``to_json``/``from_json``/``from_file`` from ``to_dict``/``from_dict``, and strict dataclass defaults for those two."""

    def to_dict(self) -> dict:
        """The dataclass fields; tuple values become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The spec of :meth:`to_dict`'s output (lists become tuples); unknown, missing or null fields are a ValueError."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in checked_fields(cls, data).items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path):
        """The spec in a JSON file; any problem is one :class:`FormatError` naming the file, line and field."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{cls.__name__} JSON file not found: {path}")
        return parse_json_spec(cls, read_text(path), str(path))


def parse_json_spec(cls, text: str, source: str):
    """``cls.from_dict`` of a JSON text; its errors as :class:`FormatError` naming ``source`` and the field's line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatError(f"{source}, line {error.lineno}: not valid JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise FormatError(f"{source}: not valid JSON: nested too deeply") from None
    try:
        return cls.from_dict(data)
    except ValueError as error:
        line = error_line(str(error), json_lines(text))
        raise FormatError(f"{source}{f', line {line}' if line else ''}: {error}") from None


# --- where a field is in a JSON text ---------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


def json_lines(text: str) -> dict[tuple, int]:
    """The line of every object key and array element of a (valid) JSON text, by path of keys and indices.

    ``{"stages": [{"depth": 2}]}`` on one line gives ``{("stages",): 1, ("stages", 0): 1,
    ("stages", 0, "depth"): 1}``. Error messages use it to point at the field they name.
    """
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    line_of = lambda position: bisect.bisect_right(starts, position)
    lines: dict[tuple, int] = {}
    stack: list[list] = []  # open containers: [path, "{" or "[", key or index, expecting a key]

    def value_path() -> tuple:
        if not stack:
            return ()
        path, _, at, _ = stack[-1]
        return (*path, at)

    for match in _TOKEN.finditer(text):
        token, line = match.group(), line_of(match.start())
        top = stack[-1] if stack else None
        if token in "}]":
            stack.pop()
        elif token == ",":
            if top[1] == "[":
                top[2] += 1
            else:
                top[3] = True
        elif token == ":":
            continue
        elif top is not None and top[1] == "{" and top[3]:  # a key
            top[2], top[3] = json.loads(token), False
            lines.setdefault((*top[0], top[2]), line)
        else:  # a value: an array element's line is where it starts
            if top is not None and top[1] == "[":
                lines.setdefault(value_path(), line)
            if token in "{[":
                stack.append([value_path(), token, 0 if token == "[" else None, token == "{"])
    return lines


def error_line(message: str, lines: Mapping[tuple, int]) -> int | None:
    """The line of the field an error message names (``stages[2]: field 'depth' ...``), or None.

    The message's location prefixes (``name:`` or ``name[i]:``) that are keys of the text are
    followed down from the top level, then the ``field 'x'`` (or the first unknown field) named.
    """
    field = re.search(r"field '(\w+)'|unknown field\(s\) \['(\w+)'", message)
    prefix = message[:field.start()] if field else message
    path: tuple = ()
    for name, index in re.findall(r"(\w+)(?:\[(\d+)\])?:\s", prefix):
        if (*path, name) in lines:
            path = (*path, name)
            if index and (*path, int(index)) in lines:
                path = (*path, int(index))
    if field and (*path, field.group(1) or field.group(2)) in lines:
        path = (*path, field.group(1) or field.group(2))
    return lines.get(path) if path else None


__all__ = ["FormatError", "JsonSpec", "checked_fields", "error_line", "json_lines", "known_fields",
           "parse_json_spec", "read_text"]
