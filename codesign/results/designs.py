"""Results of a search, reloaded from its storage: the Pareto front as ready-to-use designs.

``load(run_folder)`` (or ``load(storage=URL, study_name=NAME)``) returns
:class:`Results`; ``results.pareto_front`` is a list of :class:`Design`: metrics, the
three specs, the trial's parameters, ``model()`` (the Flax module bound to its trained
weights), ``predict(raw_images)`` (normalised as the dataset was, from the study's
record of it) and ``cost_report()`` (per layer: cycles, utilisation, dataflow, energy by
level). Weights and reports come from Optuna's artifact store.
``results.finalize(k, epochs)`` retrains the front at full fidelity and measures it on
the test split (:mod:`codesign.results.finalize`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import optuna
from flax import serialization
from optuna.artifacts import download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from codesign.accuracy.datasets import DataSpec
from codesign.results.finalize import Final, finalize, stored_finals
from codesign.metrics import METRICS, table_metrics
from codesign.outcome import (COST_REPORT, SCHEMA, WEIGHTS, FrontPoint, Outcome, Status, TrialTiming, all_hold,
                              design_key, migrate, stored_metrics, trial_status)
from codesign.artifacts import ArtifactStore, describe_artifact, is_url, open_artifact_store
from codesign.storage import (StudyRecord, folder_study, load_study_for_reading, make_storage, read_trials,
                              reading_storage)
from cost_models import Accelerator, CostReport, evaluate
from cost_models.version import COST_MODEL_VERSION
from search_spaces.compression import CompressionPolicy
from search_spaces.flax_models import build_model
from search_spaces.networks import NetworkSpec


@dataclasses.dataclass
class Design:
    """One completed trial: a model-accelerator pair with its metrics, read through its :class:`Outcome`."""

    trial: FrozenTrial
    artifacts: ArtifactStore | None
    data: DataSpec | None = None  # the dataset's shape and normalisation (None: a run from before they were stored)
    final: Final | None = None  # the design retrained at full fidelity (results.finalize), if it was

    @cached_property
    def outcome(self) -> Outcome:
        """What the trial recorded, without its artifacts (see :attr:`variables` and :meth:`cost_report`)."""
        return Outcome.from_trial(self.trial, self.artifacts, artifacts=())

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def metrics(self) -> dict:
        return dict(self.outcome.metrics)

    @property
    def params(self) -> dict:
        return dict(self.trial.params)

    @property
    def feasible(self) -> bool:
        return self.outcome.feasible

    @property
    def network(self) -> NetworkSpec:
        return self.outcome.candidate.network

    @property
    def compression(self) -> CompressionPolicy | None:
        return self.outcome.candidate.compression

    @property
    def accelerator(self) -> Accelerator:
        return self.outcome.accelerator

    @property
    def accelerator_front(self) -> tuple[FrontPoint, ...]:
        """Nested mode: the candidate's hardware Pareto front (accelerators and their metrics); empty in joint
        mode."""
        return self.outcome.front or ()

    @cached_property
    def variables(self) -> dict | None:
        """The trained weights (params, batch_stats, masks), or None when the proxy trained nothing (or the run's
        artifact store is gone: :meth:`model` says which). A missing or corrupt weights artifact is a ValueError
        naming the trial and the artifact."""
        _ = self.outcome  # the trial's record is read first, so that what fails below is the artifact
        try:
            weights = self.outcome.with_artifacts(self.trial, self.artifacts, (WEIGHTS,)).weights
        except ArtifactNotFound:
            raise ValueError(f"{self._weights_artifact()} is missing from the artifact store (deleted?)") from None
        except Exception as error:  # msgpack and flax raise several kinds on damaged bytes
            raise ValueError(f"{self._weights_artifact()} is corrupt, not Flax msgpack ({type(error).__name__}: "
                             f"{error})") from None
        if weights is not None and not isinstance(weights, dict):
            raise ValueError(f"{self._weights_artifact()} is corrupt: it holds a value of type "
                             f"{type(weights).__name__}, not the model's variables")
        return weights

    def _weights_id(self) -> str | None:
        """The id of the trial's weights artifact (None: none was stored). A stand-in trial may lack attributes."""
        return ((getattr(self.trial, "user_attrs", None) or {}).get("artifacts") or {}).get(WEIGHTS)

    def _weights_artifact(self) -> str:
        """The trial and its weights artifact, by id and, in a file-system store, by path (for messages)."""
        artifact = self._weights_id()
        where = f" ({describe_artifact(self.artifacts, artifact)})" if self.artifacts is not None and artifact else ""
        return f"trial {self.number}: its weights artifact {artifact}{where}"

    def _no_weights(self, doing: str) -> ValueError:
        """Why :attr:`variables` is None, as the error of ``doing`` something with them."""
        if self._weights_id() and self.artifacts is None:
            return ValueError(f"{self._weights_artifact()} cannot be read: there is no artifact store (the run "
                              f"folder has no artifacts/, or the study was loaded without its run folder)")
        return ValueError(f"trial {self.number} has no stored weights{doing} (the proxy did not train, or "
                          f"save_weights was off)")

    @cached_property
    def final_variables(self) -> dict:
        """The weights of the design's retraining at full fidelity (:meth:`Results.finalize`); a ValueError
        when it was not finalized with stored weights, or the artifact is missing or corrupt."""
        artifact = None if self.final is None else self.final.weights_artifact
        if artifact is None:
            raise ValueError(f"trial {self.number} has no finalized weights: retrain it first with "
                             f"results.finalize(...) (codesign finalize RUN)")
        if self.artifacts is None:
            raise ValueError(f"trial {self.number}: its finalized weights {artifact} cannot be read: there is no "
                             f"artifact store (the study was loaded without its run folder)")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "final.msgpack"
            try:
                download_artifact(artifact_store=self.artifacts, file_path=str(path), artifact_id=artifact)
            except ArtifactNotFound:
                raise ValueError(f"trial {self.number}: its finalized weights {artifact} are missing from the "
                                 f"artifact store (deleted?)") from None
            try:
                return serialization.msgpack_restore(path.read_bytes())
            except Exception as error:  # msgpack raises several kinds on damaged bytes
                raise ValueError(f"trial {self.number}: its finalized weights {artifact} are corrupt, not Flax "
                                 f"msgpack ({type(error).__name__}: {error})") from None

    def model(self, final: bool = False):
        """The Flax module bound to the trained weights: ``design.model()(x)`` gives logits; ``final=True``:
        bound to the weights of its retraining at full fidelity (:meth:`Results.finalize`)."""
        if final:
            return build_model(self.network, self.compression).bind(self.final_variables)
        if self.variables is None:
            raise self._no_weights("")
        return build_model(self.network, self.compression).bind(self.variables)

    def predict(self, images: np.ndarray, normalised: bool = False, final: bool = False) -> np.ndarray:
        """Class predictions for raw images (NHWC or NHW, the dataset's pixel scale), normalised with the
        dataset's per-channel mean and standard deviation; ``normalised=True`` takes them as they are;
        ``final=True`` predicts with the finalized weights (:meth:`model`)."""
        if normalised:
            x = np.asarray(images, np.float32)
        elif self.data is None:
            raise ValueError(f"trial {self.number}: this run did not record its dataset's normalisation; normalise "
                             f"the images yourself and pass normalised=True")
        else:
            x = self.data.normalise(images)
        return np.asarray(self.model(final)(x, train=False)).argmax(-1)

    def export_onnx(self, path, layout: str = "nhwc", weights: str | None = None) -> Path:
        """Write the trained model as an ONNX file taking raw images (normalised images when the run did not
        record its normalisation) laid out as ``layout``: ``"nhwc"`` as :meth:`predict` takes them, or
        ``"nchw"``. Batch norm folded, quantized weights as DequantizeLinear of integer codes, pruned weights
        as zeros (:func:`codesign.results.onnx_export.export_onnx`). ``weights``: ``"final"`` (the retraining
        of :meth:`Results.finalize`), ``"search"`` (the search's proxy training), or None for the finalized
        ones when they exist; the file's metadata says which (``codesign.weights``). Needs
        ``pip install -e ".[onnx]"``."""
        from codesign.results.onnx_export import check_layout, export_onnx

        check_layout(layout)
        chosen = self.exported_weights(weights)
        variables = self.final_variables if chosen == "final" else self.variables
        if variables is None:
            raise self._no_weights(" to export")
        return export_onnx(self.network, self.compression, variables, path, self.data, layout,
                           self.weights_description(chosen))

    def exported_weights(self, weights: str | None = None) -> str:
        """Which weights an export holds: ``weights`` if given (``"final"`` or ``"search"``), else ``"final"``
        when the design was finalized with stored weights and ``"search"`` otherwise."""
        if weights not in (None, "final", "search"):
            raise ValueError(f"export: field 'weights' must be final or search, got {weights!r}")
        if weights is None:
            return "final" if self.final is not None and self.final.weights_artifact else "search"
        return weights

    def weights_description(self, weights: str) -> str:
        """One line saying which weights ``weights`` ("final" or "search") are and how accurate they were."""
        if weights == "final":
            final = self.final
            return (f"finalized weights (retrained for {final.epochs:g} epochs: validation accuracy "
                    f"{final.val_accuracy}, test accuracy {final.test_accuracy})")
        accuracy = self.metrics.get("accuracy")
        scored = "" if accuracy is None else f": validation accuracy {accuracy:.6g}"
        return f"search's weights (trained by the search's proxy{scored})"

    @cached_property
    def _stored_report(self) -> Outcome:
        return self.outcome.with_artifacts(self.trial, self.artifacts, (COST_REPORT,))

    @property
    def cost_model_version(self) -> str:
        """The version of the cost model that computed the stored report ("" when the run predates versions)."""
        return self._stored_report.cost_model_version

    def cost_report(self, recompute: bool = False) -> CostReport:
        """Per-layer costs of the compressed network on the accelerator, as stored with the trial.

        The stored report is the one the search ranked the design on. When it came from
        another version of the cost model than the installed one, a warning says so;
        ``recompute=True`` evaluates the design on the installed model instead.
        """
        stored = self._stored_report
        if recompute or stored.cost_report is None:
            if stored.cost_report is None and not recompute:
                warnings.warn(f"trial {self.number} has no stored cost report; recomputed with cost model "
                              f"v{COST_MODEL_VERSION}", stacklevel=2)
            return evaluate(self.network.workload(compression=self.compression), self.accelerator)
        if stored.cost_model_version != COST_MODEL_VERSION:
            warnings.warn(f"trial {self.number}'s cost report was computed by cost model "
                          f"{'v' + stored.cost_model_version if stored.cost_model_version else 'of an older release'}; "
                          f"the installed model is v{COST_MODEL_VERSION}: design.cost_report(recompute=True) "
                          f"recomputes it", stacklevel=2)
        return stored.cost_report

    def summary(self) -> dict:
        """The design as JSON-ready data: trial number, metrics and the three specs."""
        return {"trial": self.number, "metrics": self.metrics, "network": self.network.to_dict(),
                "compression": None if self.compression is None else self.compression.to_dict(),
                "accelerator": self.accelerator.to_dict(),
                "final": None if self.final is None else self.final.to_dict()}


class Results:
    """A study and its artifacts."""

    def __init__(self, study: optuna.Study, artifacts: ArtifactStore | None,
                 timings: list[TrialTiming] | None = None, storage_url: str | None = None):
        self.study = study  # read-only when loaded (``storage_url`` then says where to write)
        self.artifacts = artifacts
        self.timings: list[TrialTiming] = list(timings or [])  # codesign.run's trials of that call: where their time went
        self.storage_url = storage_url

    def writable_study(self) -> optuna.Study:
        """The study opened for writing (``finalize`` records on it); ``study`` itself when it already is."""
        if self.storage_url is None:
            return self.study
        return optuna.load_study(study_name=self.study.study_name, storage=make_storage(self.storage_url))

    @property
    def record(self) -> StudyRecord:
        """What the search recorded on its study (experiment, objectives, dataset, run folder, finalized designs)."""
        return StudyRecord.read(self.study)

    @property
    def objectives(self) -> list[str]:
        return list(self.record.objectives)

    @property
    def quality_metric(self) -> str:
        """What the search's proxy reported: ``accuracy``, or a zero-cost proxy's score under its own name."""
        return self.record.quality_metric

    @property
    def data(self) -> DataSpec | None:
        """The searched dataset's shape, classes, normalisation and split seed (None for older runs)."""
        return self.record.data

    @property
    def finals(self) -> dict[int, Final]:
        """Designs retrained at full fidelity (:meth:`finalize`), by trial number."""
        return stored_finals(self.record)

    def finalize(self, k: int | None = None, epochs: float = 10.0, dataset=None, config=None,
                 progress=None, spread: bool = False) -> list[Final]:
        """Retrain ``k`` designs of the front (its first ``k``, or with ``spread`` ``k`` evenly spaced along it)
        for ``epochs`` and measure their test accuracy; stored with the study and read back as
        ``design.final`` (:mod:`codesign.results.finalize`)."""
        return finalize(self, k, epochs, dataset, config, progress, spread)

    def _design(self, trial: FrozenTrial, data=None, finals=None) -> Design:
        return Design(trial, self.artifacts, self.data if data is None else data,
                      (self.finals if finals is None else finals).get(trial.number))

    @property
    def directions(self) -> list[str]:
        return [d.name.lower() for d in self.study.directions]

    @property
    def trials(self) -> list[FrozenTrial]:
        """Every trial, its attributes in the current schema."""
        return read_trials(self.study)

    @property
    def designs(self) -> list[Design]:
        """Every completed trial."""
        data, finals = self.data, self.finals
        return [self._design(t, data, finals) for t in read_trials(self.study, states=(TrialState.COMPLETE,))]

    @property
    def completed(self) -> int:
        """How many trials completed."""
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    @property
    def pareto_front(self) -> list[Design]:
        """Non-dominated feasible designs (Optuna's ``best_trials``), one per distinct design, sorted by the
        first objective."""
        if not self.completed:
            return []
        record = self.record
        best = self.study.best_trials if len(self.study.directions) > 1 else [self.study.best_trial]
        if record.schema < SCHEMA:
            best = [migrate(t) for t in best]
        finals = stored_finals(record)
        unique: dict[str, Design] = {}
        for t in sorted(best, key=lambda t: t.number):  # a design evaluated twice (an older run) keeps its first
            design = self._design(t, record.data, finals)
            candidate = design.outcome.candidate
            unique.setdefault(design_key(candidate) if candidate is not None else str(t.number), design)
        reverse = self.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        return sorted(unique.values(), key=lambda d: d.trial.values[0], reverse=reverse)

    def design(self, number: int) -> Design:
        for t in self.trials:
            if t.number == number:
                if t.state != TrialState.COMPLETE:
                    outcome = Outcome.from_trial(t, artifacts=()) if t.state.is_finished() else None
                    raise ValueError(f"trial {number} did not complete ("
                                     f"{outcome.status.value if outcome else t.state.name.lower()})"
                                     f"{': ' + outcome.reason if outcome and outcome.reason else ''}")
                return self._design(t)
        raise ValueError(f"no trial {number} in study {self.study.study_name!r} ({len(self.trials)} trials)")

    def counts(self, duplicates: bool = True) -> dict[str, int]:
        """Trials by how they ended (complete, failed, diverged, pruned, interrupted, duplicate) or are (running,
        waiting); ``duplicates=False`` leaves out the trials told ``duplicate`` (never run)."""
        out: dict[str, int] = {}
        for t in self.trials:
            key = _status_name(t)
            if duplicates or key != Status.DUPLICATE.value:
                out[key] = out.get(key, 0) + 1
        return out

    def failures(self) -> dict[str, int]:
        """Trials that did not complete, counted by reason (most frequent first); the status names an empty reason."""
        reasons: dict[str, int] = {}
        for t in self.trials:
            status = trial_status(t)
            if status is None or status == Status.COMPLETE:
                continue
            reason = t.user_attrs.get("fail_reason") or status.value
            if status == Status.DUPLICATE:  # one line for all, not one per original trial
                reason = "duplicate: a design already evaluated (not run, not counted in the budget)"
            reasons[reason] = reasons.get(reason, 0) + 1
        return dict(sorted(reasons.items(), key=lambda item: -item[1]))

    def trial_rows(self) -> list[dict]:
        """Every trial: number, status (or state while it runs), reason, metrics, and under constraints whether
        it is feasible (None when it has no constraint values) and each constraint's violation (<= 0 holds)."""
        return [{"trial": t.number, "status": _status_name(t), "reason": t.user_attrs.get("fail_reason", ""),
                 "metrics": stored_metrics(t.user_attrs), "feasible": _feasible(t.constraints),
                 "violations": dict(t.constraints)} for t in self.trials]

    def trials_table(self) -> str:
        """Every trial as a text table: status, metrics, feasibility, and why it did not complete or which
        constraints it violates, by how much."""
        columns = table_metrics(self.quality_metric)
        head = (f"{'trial':>6} {'status':<12}" + " ".join(f"{METRICS[k].heading:>15}" for k in columns) +
                f" {'feasible':>8}  reason")
        lines = [f"{len(self.trials)} trials of {self.study.study_name!r}: {self.counts()}", head, "-" * len(head)]
        for row in self.trial_rows():
            values = " ".join(f"{row['metrics'][k]:>15.4g}" if k in row["metrics"] else f"{'':>15}" for k in columns)
            feasible = {True: "yes", False: "no", None: "-"}[row["feasible"]]
            broken = [f"violates {name} by {value:.4g}" for name, value in row["violations"].items() if value > 0]
            reason = "; ".join(filter(None, [row["reason"], *broken]))
            lines.append(f"{row['trial']:>6} {row['status']:<12}{values} {feasible:>8}  {reason}".rstrip())
        return "\n".join(lines)

    def table(self) -> str:
        """The Pareto front as a text table, then the trials that did not complete, counted by reason."""
        front = self.pareto_front
        columns = table_metrics(self.quality_metric)
        finals = self.finals
        final_column = f" {'test acc':>9}" if finals else ""
        head = (f"{'trial':>6} " + " ".join(f"{METRICS[k].heading:>15}" for k in columns) + final_column +
                "  accelerator / network")
        lines = [f"Pareto front of {self.study.study_name!r}: {len(front)} design(s) from "
                 f"{self.counts()} trials; objectives {', '.join(self.objectives)}", head, "-" * len(head)]
        if self.completed and not front:
            lines.insert(1, f"{no_feasible_design(self.completed)} (`codesign trials` lists their metrics)")
        for d in front:
            m = d.metrics
            acc = d.accelerator
            test = d.final.test_accuracy if d.final is not None else None
            final_value = (f" {test:>9.4f}" if test is not None else f" {'-':>9}") if finals else ""
            lines.append(f"{d.number:>6} " + " ".join(f"{m.get(k, float('nan')):>15.4g}" for k in columns) +
                         final_value + f"  {acc.rows}x{acc.cols} {acc.dataflow} {acc.gb_bytes // 1024}KiB; "
                         f"{'/'.join(s.block for s in d.network.stages)}")
        failures = self.failures()
        if failures:
            lines.append(f"trials that did not complete, by reason ({sum(failures.values())}):")
            lines += [f"  {count:>5} x {reason}" for reason, count in failures.items()]
        return "\n".join(lines)


def no_feasible_design(completed: int) -> str:
    """What a run whose completed trials all violate a constraint says (its table, and the search's log)."""
    return f"no design meets the constraints: all {completed} completed trial(s) violate at least one"


def _feasible(constraints: dict) -> bool | None:
    """Every constraint holds (None: the trial has no constraint values)."""
    return all_hold(constraints) if constraints else None


def _status_name(trial: FrozenTrial) -> str:
    """How a trial ended (its :class:`Status`), or its Optuna state while it runs or waits."""
    status = trial_status(trial)
    return status.value if status is not None else trial.state.name.lower()


def load(run_folder: str | Path | None = None, storage: str | None = None, study_name: str | None = None) -> Results:
    """Results of a run folder (the study it holds or names, and its artifacts), or of any storage + study name.

    A run folder's study is its ``study.log`` or ``study.db``, or the storage its
    ``study.json`` names. A run folder may be an object store URL (``s3://bucket/prefix``). A study loaded by its storage alone finds its artifacts in the
    run folder it recorded, when that folder is still there.
    """
    if storage is None:
        if run_folder is None:
            raise ValueError("load: give a run folder, or a storage URL and a study name")
        storage, recorded = folder_study(run_folder)
        study_name = study_name or recorded
    study = load_study_for_reading(reading_storage(storage), study_name)  # never written: read-only media work
    record = StudyRecord.read(study)
    if run_folder is None:
        run_folder = record.run_folder
    folder = None if run_folder is None or is_url(run_folder) else Path(run_folder)  # on this disk
    return Results(study, _artifact_store(folder, record), storage_url=storage)


def _artifact_store(folder: Path | None, record: StudyRecord):
    """A loaded run's artifact store: an object store the study names, or the run folder's artifacts/ (the
    folder given, so a copied run folder reads its own copy), or the folder the study names; None if none is there."""
    if record.artifacts is not None and is_url(record.artifacts):
        return open_artifact_store(record.artifacts)
    candidates = [] if folder is None else [folder / "artifacts"]
    candidates += [Path(record.artifacts)] if record.artifacts is not None else []
    here = next((path for path in candidates if path.is_dir()), None)
    return None if here is None else open_artifact_store(here)
