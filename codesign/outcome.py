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

import copy
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

from codesign.metrics import METRICS, FrontPoint
from cost_models import Accelerator, CostReport
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec

WEIGHTS = "weights.msgpack"
COST_REPORT = "cost_report.json"
ARTIFACTS = (WEIGHTS, COST_REPORT)
VIOLATION = "violation "  # prefix of a constraint's user attribute


def all_hold(constraints: Mapping[str, float]) -> bool:
    """Every constraint holds: each violation (``trial.set_constraint``'s value) is <= 0."""
    return all(violation <= 0 for violation in constraints.values())


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
class WorkerInfo:
    """Where a trial's task ran and how long the worker took (per trial of its batch)."""

    node: str = ""
    host: str = ""
    pid: int = 0
    seconds: float = 0.0  # the task's time on the worker, divided among its batch
    batch: int = 1  # trials in the task
    finished_at: float | None = None  # the worker's wall clock when it finished (time.time())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WorkerInfo":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class TrialTiming:
    """Where one trial's time went, seen from the driver (seconds); ``overhead_s`` is the loop's own cost.

    ``roundtrip_s`` runs from the submit to the tell; ``queued_s`` is the part of it the
    finished result waited while the driver sampled and told other trials (their
    overhead, not this one's). ``overhead_s = sample_s + roundtrip_s - queued_s - proxy_s
    + tell_s``. A task of several trials gives each its share.
    """

    sample_s: float = 0.0
    roundtrip_s: float = 0.0
    queued_s: float = 0.0
    worker_s: float = 0.0
    proxy_s: float = 0.0
    tell_s: float = 0.0

    @property
    def overhead_s(self) -> float:
        return self.sample_s + self.roundtrip_s - self.queued_s - self.proxy_s + self.tell_s

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "overhead_s": self.overhead_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialTiming":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What scoring one candidate produced (the evaluator builds it from the hardware result and the proxy's
    :class:`~codesign.accuracy.proxy.Accuracy`)."""

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
    worker: WorkerInfo | None = None  # where it ran
    timing: TrialTiming | None = None  # where the trial's time went (driver side)

    @property
    def ok(self) -> bool:
        return self.status == Status.COMPLETE

    @property
    def feasible(self) -> bool:
        """Every constraint holds (:func:`all_hold`)."""
        return all_hold(self.constraints)

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
        if self.ok:  # first: a store that fails leaves the trial running with no status, to be re-queued
            _upload(trial, store, self._artifacts())
        for key, value in self._attributes().items():
            trial.set_user_attr(key, value)
        for name, violation in self.constraints.items():
            trial.set_constraint(name, violation)
        if learning_curve and self.history:
            _record_learning_curve(study, trial, self.history)
        if self.ok:
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
                "worker": None if self.worker is None else self.worker.to_dict(),
                "timing": None if self.timing is None else self.timing.to_dict(),
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
        """The outcome a finished trial recorded (attributes in the current schema: :func:`migrate` reads older
        ones), with the stored files ``artifacts`` names (:meth:`with_artifacts`).

        A trial that ended without an outcome (its driver died while it ran) reads back as
        :attr:`Status.INTERRUPTED`.
        """
        if not trial.state.is_finished():
            raise ValueError(f"trial {trial.number} has not finished ({trial.state.name})")
        attrs = trial.user_attrs
        run = attrs.get("run") or {}
        accelerator = Accelerator.from_dict(attrs["accelerator"]) if "accelerator" in attrs else None
        front = attrs.get("front")
        candidate = None
        if "network" in attrs:  # joint mode (no front): the candidate's own accelerator is the one scored
            compression = attrs.get("compression")
            candidate = Candidate(NetworkSpec.from_dict(attrs["network"]),
                                  None if compression is None else CompressionPolicy.from_dict(compression),
                                  accelerator if front is None else None)
        outcome = cls(trial_status(trial), candidate, metrics=stored_metrics(attrs), values=tuple(trial.values or ()),
                      constraints=dict(trial.constraints or {}), accelerator=accelerator,
                      front=None if front is None else tuple(FrontPoint.from_dict(p) for p in front),
                      cost_model_version=run.get("cost_model_version", ""),
                      history=tuple(tuple(h) for h in attrs.get("history") or ()),
                      reason=attrs.get("fail_reason", ""), traceback=attrs.get("traceback", ""),
                      proxy_seconds=float(run.get("proxy_seconds") or 0.0),
                      cached=bool(run.get("accuracy_cached", False)),
                      worker=WorkerInfo.from_dict(run["worker"]) if run.get("worker") else None,
                      timing=TrialTiming.from_dict(run["timing"]) if run.get("timing") else None)
        return outcome.with_artifacts(trial, store, artifacts) if artifacts else outcome

    def with_artifacts(self, trial: FrozenTrial, store, names: tuple[str, ...] = ARTIFACTS) -> "Outcome":
        """This outcome (read from ``trial``) with the stored files ``names`` names: the weights, the cost report
        (and the cost model version it carries)."""
        stored = _download(trial, store, names)
        changes = {}
        if COST_REPORT in stored and self.candidate is not None and self.accelerator is not None:
            data = json.loads(stored[COST_REPORT])
            workload = self.candidate.network.workload(compression=self.candidate.compression)
            changes["cost_report"] = CostReport(workload, self.accelerator, tuple(data["layers"]), data["total"])
            changes["cost_model_version"] = data.get("cost_model_version", self.cost_model_version)
        if WEIGHTS in stored:
            changes["weights"] = serialization.msgpack_restore(stored[WEIGHTS])
        return self.replace(**changes) if changes else self


def stored_metrics(attrs: Mapping[str, Any]) -> dict[str, float]:
    """A trial's metrics from its user attributes (one attribute per metric)."""
    return {name: attrs[name] for name in METRICS if name in attrs}


#: The format of the trials' user attributes this version writes (a study records it; :func:`migrate`).
SCHEMA = 2
#: Schema 1 kept these at the top of the user attributes; schema 2 keeps them in ``run``.
_RUN_KEYS_V1 = ("proxy_seconds", "accuracy_cached", "cost_model_version", "worker", "timing")


def migrate(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` with its user attributes in the current format (a copy; unchanged when they already are).

    Schema 1 (studies without ``codesign.schema``) kept the metrics in one ``metrics``
    attribute, how a trial was computed at the top instead of in ``run``, and no
    ``status`` (a complete or pruned trial's state said it; a failed one had its
    ``fail_reason``).
    """
    attrs = dict(trial.user_attrs)
    if "metrics" in attrs:
        attrs.update({name: float(value) for name, value in (attrs.pop("metrics") or {}).items()})
    moved = {key: attrs.pop(key) for key in _RUN_KEYS_V1 if key in attrs}
    if moved and "run" not in attrs:
        attrs["run"] = moved
    if "status" not in attrs and trial.state.is_finished():
        if trial.state == TrialState.COMPLETE:
            attrs["status"] = Status.COMPLETE.value
        elif trial.state == TrialState.PRUNED:
            attrs["status"] = Status.PRUNED.value
        elif "fail_reason" in attrs and not attrs.get("interrupted"):
            attrs["status"] = Status.FAILED.value
    if attrs == trial.user_attrs:
        return trial
    migrated = copy.copy(trial)
    migrated.user_attrs = attrs
    return migrated


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
    """How a trial ended (None while it runs or waits); a finished trial without a recorded status was left
    running by a driver that died (:func:`~codesign.storage.requeue_interrupted` failed it)."""
    if not trial.state.is_finished():
        return None
    if "status" in trial.user_attrs:
        status = Status(trial.user_attrs["status"])
        # a status recorded without its tell (the driver stopped in between; the trial was failed and re-queued)
        return status if status.trial_state == trial.state else Status.INTERRUPTED
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
