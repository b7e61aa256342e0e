"""Text tables: a name column as wide as its longest name up to a limit, longer names shortened visibly.

A name longer than the column keeps its start and its end with an ellipsis between
(``/features/denseblock4/denselayer16/norm2/conv2/Conv`` -> ``/features/denseb…m2/conv2/Conv``),
so a shortened name is never mistaken for a whole one. The column widens past the limit
as far as needed for distinct names to stay distinct.
"""

from __future__ import annotations

from typing import Iterable

ELLIPSIS = "…"


def _short(name: str, room: int) -> str:
    if len(name) <= room:
        return name
    head = (room - 1) // 2
    return name[:head] + ELLIPSIS + name[len(name) - (room - 1 - head):]


def column_width(names: Iterable[str], least: int, most: int = 48) -> int:
    """The width of a name column, a trailing space included: its longest name, at least ``least``, at most
    ``most`` unless distinct names would then read alike."""
    names = sorted({str(name) for name in names})
    longest = max([least - 1, *map(len, names)])
    room = min(longest, most)
    while room < longest and len({_short(name, room) for name in names}) < len(names):
        room += 1
    return room + 1


def fit(name: str, width: int) -> str:
    """``name`` left-aligned in ``width`` characters (one of them a trailing space), shortened with an ellipsis."""
    return _short(str(name), width - 1).ljust(width)
