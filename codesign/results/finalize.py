"""The step after a search: retrain the Pareto front's designs at full fidelity and measure them on the test split.

A search ranks designs by its proxy (a few epochs, a zero-cost score, a supernet) on the
validation split. ``results.finalize(k, epochs)`` (``codesign finalize RUN``) trains each
of the front's first ``k`` designs (``spread=True``: ``k`` designs evenly spaced along
it) from scratch, with its compression, for ``epochs``
epochs on the training split, and records beside the proxy's value the validation and
the test accuracy: a :class:`Final` per design, stored in the study (user attribute
``codesign.final``) with its weights as a study artifact, read back by ``design.final``.

Finished trials cannot be changed in Optuna, so the record lives on the study, keyed by
trial number; finalizing a design again replaces its record.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import optuna
from flax import serialization
from optuna.artifacts import upload_artifact

from codesign.accuracy.datasets import Dataset, DataSpec, load_dataset
from codesign.accuracy.training import TrainConfig, accuracy, predictor, train
from codesign.storage import StudyRecord

@dataclasses.dataclass(frozen=True)
class Final:
    """One design retrained at full fidelity: its accuracies beside the search's proxy value."""

    trial: int
    epochs: float
    status: str  # "complete", or how the training ended ("diverged", ...)
    proxy_metric: str  # what the search ranked it on ("accuracy", or a zero-cost score's name)
    proxy_value: float | None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float = 0.0
    reason: str = ""
    weights_artifact: str | None = None  # the study artifact holding the retrained weights (Flax msgpack)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Final":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def stored_finals(record: StudyRecord) -> dict[int, Final]:
    """A study's finalized designs by trial number."""
    return {number: Final.from_dict(final) for number, final in record.finals.items()}


def training_config(experiment: Mapping[str, Any], epochs: float) -> TrainConfig:
    """The search's own training settings (when its proxy trained) at ``epochs``; the defaults otherwise."""
    proxy = dict(experiment.get("proxy") or {})
    if proxy.get("proxy") != "trained":
        return TrainConfig(epochs=epochs)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in proxy.items() if k in fields}).replace(epochs=epochs)


def finalize_dataset(experiment: Mapping[str, Any], recorded: DataSpec | None,
                     dataset: str | Dataset | None) -> Dataset:
    """The dataset the search ran on, split as it was: by the recorded name or path, or the one given;
    a ValueError when it cannot be found or differs from the recorded one."""
    source = dataset if dataset is not None else experiment.get("dataset")
    seed = recorded.seed if recorded is not None else int(experiment.get("seed", 0))
    if source is None or source == "arrays":
        raise ValueError("finalize: the search ran on in-memory arrays, which the run folder does not hold; "
                         "pass dataset= (the same from_arrays(...) Dataset)")
    data = load_dataset(source, seed=seed) if not isinstance(source, Dataset) else source
    if recorded is not None and (data.resolution, data.in_channels, data.num_classes) != (
            recorded.resolution, recorded.in_channels, recorded.num_classes):
        raise ValueError(f"finalize: dataset {data.name!r} is {data.resolution}x{data.resolution}x{data.in_channels} "
                         f"with {data.num_classes} classes, but the search ran on {recorded.name!r}: "
                         f"{recorded.resolution}x{recorded.resolution}x{recorded.in_channels}, "
                         f"{recorded.num_classes} classes")
    return data


def retrain(design, dataset: Dataset, config: TrainConfig, seed: int, quality: str) -> tuple[Final, Any]:
    """Train one design from scratch; its :class:`Final` and the trained weights (None unless it completed)."""
    started = time.perf_counter()
    outcome = train(design.network, design.compression, dataset, config, seed)
    final = Final(design.number, config.epochs, outcome.status.value, quality, design.metrics.get(quality),
                  reason=outcome.reason)
    if not outcome.ok:
        return dataclasses.replace(final, seconds=time.perf_counter() - started), None
    predict = predictor(design.network, design.compression)
    test = accuracy(predict, outcome.weights, dataset.x_test, dataset.y_test)
    return dataclasses.replace(final, val_accuracy=float(outcome.score), test_accuracy=float(test),
                               seconds=time.perf_counter() - started), outcome.weights


def store_final(study: optuna.Study, store, final: Final, weights) -> Final:
    """Record ``final`` on the study (and its weights as a study artifact when a store is given)."""
    if weights is not None and store is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"final_trial{final.trial}.msgpack"
            path.write_bytes(serialization.msgpack_serialize(jax.device_get(weights)))
            final = dataclasses.replace(final, weights_artifact=upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=study))
    StudyRecord.record_final(study, final.trial, final.to_dict())
    return final


def finals_table(finals: list[Final]) -> str:
    """Finalized designs as a text table: the proxy's value beside the retrained validation and test accuracy."""
    head = f"{'trial':>6} {'epochs':>7} {'proxy':>22} {'val acc':>8} {'test acc':>8} {'seconds':>8}  status"
    lines = [head, "-" * len(head)]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"
    for f in finals:
        proxy = f"{f.proxy_metric} {f.proxy_value:.4g}" if f.proxy_value is not None else f.proxy_metric
        lines.append(f"{f.trial:>6} {f.epochs:>7g} {proxy:>22} {fmt(f.val_accuracy):>8} {fmt(f.test_accuracy):>8} "
                     f"{f.seconds:>8.1f}  {f.status}{': ' + f.reason if f.reason else ''}")
    return "\n".join(lines)


def spread_over(count: int, k: int | None) -> list[int]:
    """Indices of ``k`` items evenly spaced over ``count`` sorted ones, both ends included (all when ``k`` is
    None or at least ``count``)."""
    if k is None or k >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, k)})


def finalize(results, k: int | None = None, epochs: float = 10.0, dataset: str | Dataset | None = None,
             config: TrainConfig | None = None, progress=None, spread: bool = False) -> list[Final]:
    """Retrain ``k`` designs of ``results.pareto_front`` (all when None): its first ``k`` (the best by the
    first objective), or with ``spread`` ``k`` designs evenly spaced along it, both ends included (the
    front's trade-off, not only its most accurate end); see the module docstring."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"finalize: the number of designs (k, --top) must be an integer >= 1, got {k!r}")
    experiment = dict(results.record.experiment)
    config = config or training_config(experiment, epochs)
    front = results.pareto_front
    designs = [front[i] for i in spread_over(len(front), k)] if spread else front[:k]
    if not designs:
        raise ValueError(f"finalize: study {results.study.study_name!r} has no completed design to finalize")
    data = finalize_dataset(experiment, results.data, dataset)
    seed = int(experiment.get("seed", 0))
    finals = []
    study = results.writable_study()
    for design in designs:
        final, weights = retrain(design, data, config, seed, results.quality_metric)
        finals.append(store_final(study, results.artifacts, final, weights))
        if progress is not None:
            progress(final)
    return finals
