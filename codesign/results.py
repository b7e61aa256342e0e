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
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np
import optuna
from flax import serialization
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import FrozenTrial, TrialState

from cost_models import Accelerator, CostReport, evaluate
from search_spaces.compression import CompressionPolicy
from search_spaces.flax_models import build_model
from search_spaces.networks import NetworkSpec


@dataclasses.dataclass
class Design:
    """One finished trial: a model-accelerator pair with its metrics."""

    trial: FrozenTrial
    artifacts: FileSystemArtifactStore | None

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def metrics(self) -> dict:
        return dict(self.trial.user_attrs.get("metrics", {}))

    @property
    def params(self) -> dict:
        return dict(self.trial.params)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in (self.trial.constraints or {}).values())

    @cached_property
    def network(self) -> NetworkSpec:
        return NetworkSpec.from_dict(self.trial.user_attrs["network"])

    @cached_property
    def compression(self) -> CompressionPolicy | None:
        data = self.trial.user_attrs.get("compression")
        return None if data is None else CompressionPolicy.from_dict(data)

    @cached_property
    def accelerator(self) -> Accelerator:
        return Accelerator.from_dict(self.trial.user_attrs["accelerator"])

    @property
    def accelerator_front(self) -> list[dict]:
        """Nested mode: the candidate's hardware Pareto front (accelerator + metrics)."""
        return list(self.trial.user_attrs.get("front") or [])

    def _artifact(self, name: str) -> bytes | None:
        ids = self.trial.user_attrs.get("artifacts", {})
        if name not in ids or self.artifacts is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            download_artifact(artifact_store=self.artifacts, file_path=str(path), artifact_id=ids[name])
            return path.read_bytes()

    @cached_property
    def variables(self) -> dict | None:
        """The trained weights (params, batch_stats, masks), or None when the proxy trained nothing."""
        data = self._artifact("weights.msgpack")
        return None if data is None else serialization.msgpack_restore(data)

    def model(self):
        """The Flax module bound to the trained weights: ``design.model()(x)`` gives logits."""
        if self.variables is None:
            raise ValueError(f"trial {self.number} has no stored weights (the proxy did not train, or "
                             f"save_weights was off)")
        return build_model(self.network, self.compression).bind(self.variables)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class predictions for NHWC images (normalised like the dataset)."""
        return np.asarray(self.model()(np.asarray(x, np.float32), train=False)).argmax(-1)

    def cost_report(self) -> CostReport:
        """Per-layer costs of the compressed network on the accelerator (recomputed, deterministic)."""
        return evaluate(self.network.workload(compression=self.compression), self.accelerator)

    def summary(self) -> dict:
        return {"trial": self.number, **self.metrics, "network": self.network.name, "accelerator":
                f"{self.accelerator.rows}x{self.accelerator.cols} {self.accelerator.dataflow}"}


class Results:
    """A study and its artifacts."""

    def __init__(self, study: optuna.Study, artifacts: FileSystemArtifactStore | None):
        self.study = study
        self.artifacts = artifacts
        self.timings: list[dict] = []  # filled by codesign.run for the trials of that call

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
                    raise ValueError(f"trial {number} did not complete ({t.state.name}): "
                                     f"{t.user_attrs.get('fail_reason', '')}")
                return Design(t, self.artifacts)
        raise ValueError(f"no trial {number} in study {self.study.study_name!r} ({len(self.trials)} trials)")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
        return out

    def table(self) -> str:
        """The Pareto front as a text table."""
        front = self.pareto_front
        metrics = ["accuracy", "latency", "energy", "edp", "area", "model_size"]
        units = {"accuracy": "", "latency": "ms", "energy": "uJ", "edp": "uJ*ms", "area": "mm2", "model_size": "KiB"}
        head = f"{'trial':>6} " + " ".join(f"{(m + (' ' + units[m] if units[m] else '')):>15}" for m in metrics) + \
            "  accelerator / network"
        lines = [f"Pareto front of {self.study.study_name!r}: {len(front)} design(s) from "
                 f"{self.counts()} trials; objectives {', '.join(self.objectives)}", head, "-" * len(head)]
        for d in front:
            m = d.metrics
            acc = d.accelerator
            lines.append(f"{d.number:>6} " + " ".join(f"{m.get(k, float('nan')):>15.4g}" for k in metrics) +
                         f"  {acc.rows}x{acc.cols} {acc.dataflow} {acc.gb_bytes // 1024}KiB; "
                         f"{'/'.join(s.block for s in d.network.stages)}")
        return "\n".join(lines)


def load(run_folder: str | Path | None = None, storage: str | None = None, study_name: str | None = None) -> Results:
    """Results of a run folder (its SQLite study and artifacts), or of any storage + study name."""
    folder = Path(run_folder) if run_folder is not None else None
    if storage is None:
        if folder is None:
            raise ValueError("load: give a run folder, or a storage URL and a study name")
        db = folder / "study.db"
        if not db.is_file():
            raise FileNotFoundError(f"load: {folder} holds no study.db; pass storage= and study_name= for a run "
                                    f"kept in another storage")
        storage = f"sqlite:///{db.resolve()}"
    from codesign.search import make_storage

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
