"""Results of a search, reloaded from its storage: the Pareto front as ready-to-use designs.

``load(run_folder)`` (or ``load(storage=URL, study_name=NAME)``) returns
:class:`Results`; ``results.pareto_front`` is a list of :class:`Design`: metrics, the
three specs, the trial's parameters, ``model()`` (the Flax module bound to its trained
weights, ready for inference) and ``cost_report()`` (per layer: cycles, utilisation,
dataflow, energy by level). Weights and reports come from Optuna's artifact store.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from codesign.metrics import METRICS
from codesign.outcome import COST_REPORT, WEIGHTS, FrontPoint, Outcome, Status, trial_status
from codesign.storage import make_storage, run_folder_storage
from cost_models import Accelerator, CostReport, evaluate
from cost_models.version import COST_MODEL_VERSION
from search_spaces.compression import CompressionPolicy
from search_spaces.flax_models import build_model
from search_spaces.networks import NetworkSpec


@dataclasses.dataclass
class Design:
    """One completed trial: a model-accelerator pair with its metrics, read through its :class:`Outcome`."""

    trial: FrozenTrial
    artifacts: FileSystemArtifactStore | None

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
        """The trained weights (params, batch_stats, masks), or None when the proxy trained nothing."""
        return Outcome.from_trial(self.trial, self.artifacts, artifacts=(WEIGHTS,)).weights

    def model(self):
        """The Flax module bound to the trained weights: ``design.model()(x)`` gives logits."""
        if self.variables is None:
            raise ValueError(f"trial {self.number} has no stored weights (the proxy did not train, or "
                             f"save_weights was off)")
        return build_model(self.network, self.compression).bind(self.variables)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class predictions for NHWC images (normalised like the dataset)."""
        return np.asarray(self.model()(np.asarray(x, np.float32), train=False)).argmax(-1)

    @cached_property
    def _stored_report(self) -> Outcome:
        return Outcome.from_trial(self.trial, self.artifacts, artifacts=(COST_REPORT,))

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
                "accelerator": self.accelerator.to_dict()}


class Results:
    """A study and its artifacts."""

    def __init__(self, study: optuna.Study, artifacts: FileSystemArtifactStore | None,
                 timings: list[dict] | None = None):
        self.study = study
        self.artifacts = artifacts
        self.timings: list[dict] = list(timings or [])  # codesign.run's trials of that call: where their time went

    @property
    def objectives(self) -> list[str]:
        return list(self.study.user_attrs.get("codesign.objectives", []))

    @property
    def directions(self) -> list[str]:
        return [d.name.lower() for d in self.study.directions]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    @property
    def designs(self) -> list[Design]:
        """Every completed trial."""
        return [Design(t, self.artifacts) for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]

    @property
    def pareto_front(self) -> list[Design]:
        """Non-dominated feasible designs (Optuna's ``best_trials``), one per distinct design, sorted by the
        first objective."""
        if not self.designs:
            return []
        best = self.study.best_trials if len(self.study.directions) > 1 else [self.study.best_trial]
        first = 0
        reverse = self.study.directions[first] == optuna.study.StudyDirection.MAXIMIZE
        unique = {}
        for t in sorted(best, key=lambda t: t.number):  # samplers may repeat a design: keep its first trial
            unique.setdefault(json.dumps(t.params, sort_keys=True, default=str), t)
        return sorted((Design(t, self.artifacts) for t in unique.values()), key=lambda d: d.trial.values[first],
                      reverse=reverse)

    def design(self, number: int) -> Design:
        for t in self.trials:
            if t.number == number:
                if t.state != TrialState.COMPLETE:
                    outcome = Outcome.from_trial(t, artifacts=()) if t.state.is_finished() else None
                    raise ValueError(f"trial {number} did not complete ("
                                     f"{outcome.status.value if outcome else t.state.name.lower()})"
                                     f"{': ' + outcome.reason if outcome and outcome.reason else ''}")
                return Design(t, self.artifacts)
        raise ValueError(f"no trial {number} in study {self.study.study_name!r} ({len(self.trials)} trials)")

    def counts(self) -> dict[str, int]:
        """Trials by how they ended (complete, failed, diverged, pruned, interrupted) or are (running, waiting)."""
        out: dict[str, int] = {}
        for t in self.trials:
            key = _status_name(t)
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
            reasons[reason] = reasons.get(reason, 0) + 1
        return dict(sorted(reasons.items(), key=lambda item: -item[1]))

    def trial_rows(self) -> list[dict]:
        """Every trial: number, status (or state while it runs), reason, metrics."""
        return [{"trial": t.number, "status": _status_name(t), "reason": t.user_attrs.get("fail_reason", ""),
                 "metrics": t.user_attrs.get("metrics") or {}} for t in self.trials]

    def trials_table(self) -> str:
        """Every trial as a text table: status, metrics, and the reason of one that did not complete."""
        head = f"{'trial':>6} {'status':<12}" + " ".join(f"{m.heading:>15}" for m in METRICS.values()) + "  reason"
        lines = [f"{len(self.trials)} trials of {self.study.study_name!r}: {self.counts()}", head, "-" * len(head)]
        for row in self.trial_rows():
            values = " ".join(f"{row['metrics'][k]:>15.4g}" if k in row["metrics"] else f"{'':>15}" for k in METRICS)
            lines.append(f"{row['trial']:>6} {row['status']:<12}{values}  {row['reason']}".rstrip())
        return "\n".join(lines)

    def table(self) -> str:
        """The Pareto front as a text table, then the trials that did not complete, counted by reason."""
        front = self.pareto_front
        head = f"{'trial':>6} " + " ".join(f"{m.heading:>15}" for m in METRICS.values()) + "  accelerator / network"
        lines = [f"Pareto front of {self.study.study_name!r}: {len(front)} design(s) from "
                 f"{self.counts()} trials; objectives {', '.join(self.objectives)}", head, "-" * len(head)]
        for d in front:
            m = d.metrics
            acc = d.accelerator
            lines.append(f"{d.number:>6} " + " ".join(f"{m.get(k, float('nan')):>15.4g}" for k in METRICS) +
                         f"  {acc.rows}x{acc.cols} {acc.dataflow} {acc.gb_bytes // 1024}KiB; "
                         f"{'/'.join(s.block for s in d.network.stages)}")
        failures = self.failures()
        if failures:
            lines.append(f"trials that did not complete, by reason ({sum(failures.values())}):")
            lines += [f"  {count:>5} x {reason}" for reason, count in failures.items()]
        return "\n".join(lines)


def _status_name(trial: FrozenTrial) -> str:
    """How a trial ended (its :class:`Status`), or its Optuna state while it runs or waits."""
    status = trial_status(trial)
    return status.value if status is not None else trial.state.name.lower()


def load(run_folder: str | Path | None = None, storage: str | None = None, study_name: str | None = None) -> Results:
    """Results of a run folder (its study, ``study.log`` or ``study.db``, and artifacts), or of any storage + study name."""
    folder = Path(run_folder) if run_folder is not None else None
    if storage is None:
        if folder is None:
            raise ValueError("load: give a run folder, or a storage URL and a study name")
        if not any((folder / name).is_file() for name in ("study.log", "study.db")):
            raise FileNotFoundError(f"load: {folder} holds no study (study.log or study.db); pass storage= and "
                                    f"study_name= for a run kept in another storage")
        storage = run_folder_storage(folder)
    storage = make_storage(storage)
    if study_name is None:
        names = optuna.study.get_all_study_names(storage)
        if len(names) != 1:
            raise ValueError(f"load: the storage holds studies {names}; pass study_name=")
        study_name = names[0]
    study = optuna.load_study(study_name=study_name, storage=storage)
    artifacts = None
    if folder is not None and (folder / "artifacts").is_dir():
        artifacts = FileSystemArtifactStore(str(folder / "artifacts"))
    return Results(study, artifacts)
