"""The accuracy proxy protocol, and the one record every proxy returns.

A proxy says how good a network + compression pair is without the accelerator: by
training it, by a score at initialisation, by a weight-sharing supernet, by a learned
predictor. Like an Optuna sampler it is a small protocol (:class:`Proxy`): it describes
its settings, binds to the experiment's spaces, and evaluates a batch of pairs into
:class:`Accuracy` records. The search side (evaluator, driver, cache, experiment) only
calls these; a new kind of proxy plugs in by implementing them.

    >>> proxy = ZeroCostProxy("params").bind(network_space, compression_space, folder=None)
    >>> [result.score for result in proxy.evaluate([(spec, policy)], dataset)]
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from codesign.accuracy.datasets import Dataset
from codesign.outcome import Status
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec

#: ``reporter(epoch, accuracy) -> stop?``: intermediate accuracies for a pruner.
Reporter = Callable[[int, float], bool]
#: What a proxy scores: a network and its compression (None: uncompressed).
Pair = tuple[NetworkSpec, CompressionPolicy | None]
#: The statuses a proxy's result can have.
ENDINGS = (Status.COMPLETE, Status.DIVERGED, Status.PRUNED, Status.FAILED)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """What a proxy measured for one pair. Higher ``score`` is better (an accuracy, or a zero-cost score)."""

    status: Status
    score: float | None = None  # None unless complete (a pruned run keeps its last accuracy)
    history: tuple[tuple[int, float], ...] = ()  # (epoch, validation accuracy)
    weights: Any = None  # the pair's stand-alone model variables (params, batch_stats, masks), if it has them
    reason: str = ""  # why it diverged, was pruned or failed
    seconds: float = 0.0  # the proxy's time for this pair
    cached: bool = False  # read back from the accuracy cache

    def __post_init__(self):
        if self.status not in ENDINGS:
            raise ValueError(f"accuracy: status {self.status!r} is not a proxy's; allowed: "
                             f"{', '.join(s.value for s in ENDINGS)}")

    @property
    def ok(self) -> bool:
        return self.status == Status.COMPLETE

    @classmethod
    def failed(cls, reason: str, seconds: float = 0.0) -> "Accuracy":
        return cls(Status.FAILED, reason=reason, seconds=seconds)

    def to_record(self) -> dict:
        """The JSON record of this result (its weights travel apart, as Flax msgpack)."""
        return {"status": self.status.value, "score": self.score, "history": [list(h) for h in self.history],
                "reason": self.reason, "seconds": self.seconds}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> "Accuracy":
        """A result from :meth:`to_record`'s JSON; a ValueError naming the field that is missing or of the wrong
        type."""
        try:
            status = Status(data["status"])
            score, seconds, reason = data["score"], data["seconds"] or 0.0, data["reason"] or ""
            history = tuple(tuple(h) for h in data["history"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not an accuracy record ({type(error).__name__}: {error})") from None
        for field, ok in (("score", score is None or _number(score)), ("seconds", _number(seconds)),
                          ("reason", isinstance(reason, str)),
                          ("history", all(len(h) == 2 and all(map(_number, h)) for h in history))):
            if not ok:
                raise ValueError(f"not an accuracy record (field {field!r} has the wrong type)")
        return cls(status, score, history, reason=reason, seconds=float(seconds))


def record_mismatch(record: Mapping[str, Any], field: str, here) -> str | None:
    """How a stored record's ``field`` (a space as JSON) differs from ``here``: ``<field> field 'x': A in the file,
    B here`` for the first differing sub-field, or None when they agree."""
    there = record.get(field)
    if there == here:
        return None
    if isinstance(there, Mapping) and isinstance(here, Mapping):
        for name in sorted(set(there) | set(here)):
            if there.get(name) != here.get(name):
                return f"{field} field {name!r}: {there.get(name)!r} in the file, {here.get(name)!r} here"
    return f"{field}: {there!r} in the file, {here!r} here"


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@runtime_checkable
class Proxy(Protocol):
    """What the search asks of an accuracy proxy (the module docstring)."""

    name: str  # the proxy's kind: "trained", "supernet", a zero-cost score's name, ...

    @property
    def metric(self) -> str:
        """The metric its score is stored and shown under: ``accuracy``, or a score's own name."""

    @property
    def pairs_per_task(self) -> int:
        """How many pairs a search sends it at once (one Ray task)."""

    def describe(self) -> dict:
        """Its settings as JSON: part of the accuracy cache's key and of the study's record."""

    def bind(self, network_space, compression_space, folder: Path | None) -> "Proxy":
        """This proxy for an experiment's spaces, keeping what it trains once in ``folder`` (None: in memory).
        A ValueError, before any trial, when it cannot serve these spaces."""

    def evaluate(self, pairs: Sequence[Pair], dataset: Dataset, seed: int = 0,
                 reporters: Sequence[Reporter | None] | None = None) -> list[Accuracy]:
        """One :class:`Accuracy` per pair, in order. A pair's own fault is its failed result, never an exception;
        ``reporters`` (per pair, for a pruner) may stop a pair early."""
