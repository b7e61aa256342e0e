"""The records a trial travels as: a :class:`Candidate` in, an :class:`Outcome` out.

A candidate is the three spec objects an Optuna trial was turned into; an outcome is
everything its evaluation produced (status, metrics, the chosen accelerator, the nested
front, the training history, the weights, the cost report, the reason of a failure).
Both are frozen and plain, so they travel through Ray as they are.

:meth:`Outcome.tell` and :meth:`Outcome.from_trial` are the only code that writes and
reads a trial's user attributes and artifacts: what is stored is what is read. Specs and
the front are user attributes (JSON); each metric is a user attribute of its own name
(``latency``, ...), and each constraint's violation one named ``violation <name>`` beside
``feasible``, so optuna-dashboard can sort and filter by them; the training's validation
accuracy per epoch is the trial's intermediate values (its learning curve). The weights
(Flax msgpack) and the per-layer cost report (JSON, with the cost model's version) are
artifacts in Optuna's artifact store.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jax
import optuna
from flax import serialization
from optuna.artifacts import download_artifact, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from codesign.metrics import METRICS
from cost_models import Accelerator, CostReport
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec

WEIGHTS = "weights.msgpack"
COST_REPORT = "cost_report.json"
ARTIFACTS = (WEIGHTS, COST_REPORT)
VIOLATION = "violation "  # prefix of a constraint's user attribute


class Status(str, enum.Enum):
    """How a trial ended."""

    COMPLETE = "complete"
    FAILED = "failed"  # the candidate itself is at fault (does not fit the data, cannot be built, crashed)
    DIVERGED = "diverged"  # training produced a non-finite loss
    PRUNED = "pruned"  # stopped early by the study's pruner
    INTERRUPTED = "interrupted"  # its driver died while it ran; its parameters were re-queued
    DUPLICATE = "duplicate"  # the sampler proposed a design already evaluated (not run, not counted)

    @property
    def trial_state(self) -> TrialState:
        return {Status.COMPLETE: TrialState.COMPLETE, Status.PRUNED: TrialState.PRUNED}.get(self, TrialState.FAIL)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What a trial asks to be scored. ``accelerator`` is None in nested mode (the evaluator sweeps a grid)."""

    network: NetworkSpec
    compression: CompressionPolicy | None = None
    accelerator: Accelerator | None = None


def design_key(candidate: Candidate) -> str:
    """One string per distinct design: parameters that do not change the design (a pruning granularity
    when nothing is pruned, an identity compression) give the same key."""
    compression = candidate.compression
    if compression is not None and compression.is_identity:
        compression = None
    return json.dumps([candidate.network.to_dict(), None if compression is None else compression.to_dict(),
                       None if candidate.accelerator is None else candidate.accelerator.to_dict()], sort_keys=True)


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """One accelerator of a candidate's hardware Pareto front (nested mode) and its hardware metrics."""

    accelerator: Accelerator
    metrics: Mapping[str, float]

    def to_dict(self) -> dict:
        return {"accelerator": self.accelerator.to_dict(), **self.metrics}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrontPoint":
        return cls(Accelerator.from_dict(data["accelerator"]), {k: v for k, v in data.items() if k != "accelerator"})


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What scoring one candidate produced; the proxies return the accuracy part of it."""

    status: Status
    candidate: Candidate | None = None
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    values: tuple[float, ...] = ()  # the objectives' values, in the experiment's order
    constraints: Mapping[str, float] = dataclasses.field(default_factory=dict)  # name -> violation (<= 0 holds)
    accelerator: Accelerator | None = None  # the accelerator the metrics are for
    front: tuple[FrontPoint, ...] | None = None  # nested mode: the candidate's hardware Pareto front
    cost_report: CostReport | None = None
    cost_model_version: str = ""
    history: tuple[tuple[int, float], ...] = ()  # (epoch, validation accuracy)
    weights: Any = None  # the trained variables (params, batch_stats, masks) as numpy arrays
    reason: str = ""  # why it failed, diverged or was pruned
    traceback: str = ""
    proxy_seconds: float = 0.0  # time the accuracy proxy took when it ran
    cached: bool = False  # the accuracy came from the accuracy cache
    worker: Mapping[str, Any] | None = None  # where it ran
    timing: Mapping[str, float] | None = None  # where the trial's time went (driver side)

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def ok(self) -> bool:
        return self.status == Status.COMPLETE

    @property
    def feasible(self) -> bool:
        """Every constraint holds (its violation is <= 0)."""
        return all(violation <= 0 for violation in self.constraints.values())

    def replace(self, **changes) -> "Outcome":
        return dataclasses.replace(self, **changes)

    @classmethod
    def failed(cls, reason: str, candidate: Candidate | None = None, traceback: str = "") -> "Outcome":
        return cls(Status.FAILED, candidate, reason=reason, traceback=traceback)

    # --- the storage boundary ---------------------------------------------------------
    def tell(self, study: optuna.Study, trial: optuna.Trial, store, learning_curve: bool = True) -> None:
        """Record this outcome on ``trial`` (attributes, constraints, artifacts) and finish it.

        ``learning_curve``: store the per-epoch accuracies as intermediate values (off when a
        pruner's reporter already did, from the worker).
        """
        for key, value in self._attributes().items():
            trial.set_user_attr(key, value)
        for name, violation in self.constraints.items():
            trial.set_constraint(name, violation)
        if learning_curve and self.history:
            _record_learning_curve(study, trial, self.history)
        if self.ok:
            _upload(trial, store, self._artifacts())
            study.tell(trial, list(self.values))
        else:
            study.tell(trial, state=self.status.trial_state)

    def _attributes(self) -> dict:
        attributes = {"status": self.status.value}
        if self.candidate is not None:
            attributes["network"] = self.candidate.network.to_dict()
            attributes["compression"] = None if self.candidate.compression is None else \
                self.candidate.compression.to_dict()
        attributes.update({name: float(value) for name, value in self.metrics.items()})
        if self.constraints:
            attributes["feasible"] = self.feasible
            attributes.update({f"{VIOLATION}{name}": float(v) for name, v in self.constraints.items()})
        optional = {
            "accelerator": None if self.accelerator is None else self.accelerator.to_dict(),
            "front": None if self.front is None else [p.to_dict() for p in self.front],
            "history": [list(h) for h in self.history] or None,
            "fail_reason": self.reason or None,
            "traceback": self.traceback[-2000:] or None,
            "run": _present({  # how it was computed: one attribute, one storage write
                "proxy_seconds": self.proxy_seconds if self.proxy_seconds or self.cached else None,
                "accuracy_cached": self.cached if self.ok else None,
                "cost_model_version": self.cost_model_version or None,
                "worker": None if self.worker is None else dict(self.worker),
                "timing": None if self.timing is None else dict(self.timing),
            }) or None,
        }
        attributes.update(_present(optional))
        return attributes

    def _artifacts(self) -> dict[str, bytes]:
        files = {}
        if self.cost_report is not None:
            files[COST_REPORT] = json.dumps({"cost_model_version": self.cost_model_version,
                                             **self.cost_report.to_dict()}).encode()
        if self.weights is not None:
            files[WEIGHTS] = serialization.msgpack_serialize(jax.device_get(self.weights))
        return files

    @classmethod
    def from_trial(cls, trial: FrozenTrial, store=None, artifacts: tuple[str, ...] = ARTIFACTS) -> "Outcome":
        """The outcome a finished trial recorded; ``artifacts`` names which stored files to read.

        A trial that ended without an outcome (its driver died while it ran) reads back as
        :attr:`Status.INTERRUPTED`. Studies written before outcomes had a status read back
        from the trial's state.
        """
        if not trial.state.is_finished():
            raise ValueError(f"trial {trial.number} has not finished ({trial.state.name})")
        attrs = trial.user_attrs
        run = attrs.get("run") or attrs  # studies written before the "run" attribute kept its keys at the top
        status = trial_status(trial)
        accelerator = Accelerator.from_dict(attrs["accelerator"]) if "accelerator" in attrs else None
        front = attrs.get("front")
        candidate = None
        if "network" in attrs:  # joint mode (no front): the candidate's own accelerator is the one scored
            compression = attrs.get("compression")
            candidate = Candidate(NetworkSpec.from_dict(attrs["network"]),
                                  None if compression is None else CompressionPolicy.from_dict(compression),
                                  accelerator if front is None else None)
        stored = _download(trial, store, artifacts)
        report = None
        version = run.get("cost_model_version", "")
        if COST_REPORT in stored and candidate is not None and accelerator is not None:
            data = json.loads(stored[COST_REPORT])
            version = data.get("cost_model_version", version)
            workload = candidate.network.workload(compression=candidate.compression)
            report = CostReport(workload, accelerator, tuple(data["layers"]), data["total"])
        weights = serialization.msgpack_restore(stored[WEIGHTS]) if WEIGHTS in stored else None
        return cls(status, candidate, metrics=stored_metrics(attrs), values=tuple(trial.values or ()),
                   constraints=dict(trial.constraints or {}), accelerator=accelerator,
                   front=None if front is None else tuple(FrontPoint.from_dict(p) for p in front),
                   cost_report=report, cost_model_version=version,
                   history=tuple(tuple(h) for h in attrs.get("history") or ()), weights=weights,
                   reason=attrs.get("fail_reason", ""), traceback=attrs.get("traceback", ""),
                   proxy_seconds=float(run.get("proxy_seconds") or 0.0),
                   cached=bool(run.get("accuracy_cached", False)), worker=run.get("worker"),
                   timing=run.get("timing"))


def stored_metrics(attrs: Mapping[str, Any]) -> dict[str, float]:
    """A trial's metrics from its user attributes (one per metric; runs before that kept one ``metrics`` dict)."""
    if "metrics" in attrs:
        return dict(attrs["metrics"] or {})
    return {name: attrs[name] for name in METRICS if name in attrs}


def _record_learning_curve(study: optuna.Study, trial: optuna.Trial, history) -> None:
    """The validation accuracy per epoch as the trial's intermediate values, through the storage's public
    API, because ``Trial.report`` refuses multi-objective studies."""
    storage = trial.storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                               trial.number)
    for epoch, accuracy in history:
        storage.set_trial_intermediate_value(trial_id, int(epoch), float(accuracy))


def _present(values: Mapping[str, Any]) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def trial_status(trial: FrozenTrial) -> Status | None:
    """How a trial ended (None while it runs or waits); the one reading of the ``status`` attribute."""
    if not trial.state.is_finished():
        return None
    if "status" in trial.user_attrs:
        return Status(trial.user_attrs["status"])
    if trial.state == TrialState.COMPLETE:  # a study written before outcomes had a status
        return Status.COMPLETE
    if trial.state == TrialState.PRUNED:
        return Status.PRUNED
    if "fail_reason" in trial.user_attrs and not trial.user_attrs.get("interrupted"):
        return Status.FAILED
    return Status.INTERRUPTED


def _upload(trial: optuna.Trial, store, files: Mapping[str, bytes]) -> None:
    if not files:
        return
    ids = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            ids[name] = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
    trial.set_user_attr("artifacts", ids)


def _download(trial: FrozenTrial, store, names: tuple[str, ...]) -> dict[str, bytes]:
    ids = trial.user_attrs.get("artifacts", {})
    wanted = [name for name in names if name in ids]
    if store is None or not wanted:
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            path = Path(tmp) / name
            download_artifact(artifact_store=store, file_path=str(path), artifact_id=ids[name])
            out[name] = path.read_bytes()
    return out
