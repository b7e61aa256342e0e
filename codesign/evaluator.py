"""Scoring one candidate: hardware costs (one cost-model call) plus accuracy (the cached proxy).

An :class:`Evaluator` is built once from the :class:`~codesign.experiment.Experiment` and
put in Ray's object store once; each Ray task is ``evaluator.score_batch(candidates,
reporters) -> [Outcome]``, one candidate per trial (several when the proxy takes several
pairs at once; ``evaluator(candidate, reporter)`` scores one). Hardware comes first (it is
cheap, and a workload the cost model rejects fails fast): in joint mode the candidate's
own accelerator, in nested mode the whole accelerator grid in one vectorised call, of
which the hardware Pareto front under the constraints is kept and the tie-break metric
picks the accelerator the trial reports. Then the accuracy proxy, through the shared
:class:`~codesign.accuracy.cache.AccuracyCache`; the evaluator is the one place where the
proxy's :class:`~codesign.accuracy.proxy.Accuracy` and the :class:`Hardware` result become
an :class:`~codesign.outcome.Outcome`.

The candidate's own faults (a spec that does not fit the dataset, a diverging
training, a crash) come back as an outcome with that status and the reason; the
evaluator never raises for them, so the search goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import traceback
from typing import Any, Callable, Mapping

import numpy as np

from codesign.accuracy.cache import AccuracyCache
from codesign.accuracy.datasets import BUILT_IN, Dataset, load_dataset
from codesign.accuracy.proxy import Accuracy, Proxy, Reporter
from codesign.experiment import dataset_field_error
from codesign.metrics import HARDWARE_METRICS, Constraint, Objective, hardware_metrics, model_size_kib
from codesign.outcome import Candidate, FrontPoint, Outcome
from codesign.sweep import front_of
from cost_models import Accelerator, CostReport, evaluate
from cost_models.version import COST_MODEL_VERSION
from search_spaces.accelerators import AcceleratorSpace, GridPoints


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A candidate's hardware result: the accelerator its metrics are for, the nested front, the report."""

    accelerator: Accelerator
    front: tuple[FrontPoint, ...] | None  # nested mode: the candidate's hardware Pareto front
    report: CostReport
    metrics: Mapping[str, float]  # the hardware metrics and model_size


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """Everything that scores a candidate the same way for every trial of an experiment."""

    proxy: Proxy  # bound to the experiment's spaces
    dataset: str | Dataset  # a built-in name (loaded once per worker), or the arrays (a file read by the driver)
    cache_location: str  # the accuracy cache: a folder, or an object store URL
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    tie_break: str = "edp"  # nested mode: which front accelerator the trial reports
    nested: AcceleratorSpace | None = None  # nested mode: the accelerator space swept per candidate
    nested_limit: int | None = None  # accelerators of ``nested`` swept (None: all)
    seed: int = 0
    save_weights: bool = True

    @classmethod
    def from_experiment(cls, experiment) -> "Evaluator":
        dataset = experiment.dataset
        if isinstance(dataset, os.PathLike) or (isinstance(dataset, str) and dataset not in BUILT_IN):
            # a file or folder on the driver's disk: read here, once, and shipped to the workers with the
            # evaluator through Ray's object store, so no worker reads the driver's disk for it
            try:
                dataset = load_dataset(dataset, seed=experiment.seed)
            except (ValueError, OSError) as error:
                raise dataset_field_error(error) from None
        nested = experiment.mode == "nested"
        return cls(proxy=experiment.bound_proxy, dataset=dataset,
                   cache_location=experiment.accuracy_cache_location,
                   objectives=experiment.objectives, constraints=experiment.constraints,
                   tie_break=experiment.tie_break, nested=experiment.accelerator_space if nested else None,
                   nested_limit=experiment.nested_accelerators, seed=experiment.seed,
                   save_weights=experiment.save_weights)

    @property
    def hardware_objectives(self) -> tuple[str, ...]:
        return tuple(o.metric for o in self.objectives if o.metric in HARDWARE_METRICS)

    @property
    def hardware_constraints(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.metric in HARDWARE_METRICS)

    def __call__(self, candidate: Candidate, reporter: Reporter | None = None) -> Outcome:
        """Score ``candidate``; never raises for the candidate's own faults (see the module docstring)."""
        return self.score_batch([candidate], [reporter])[0]

    def score_batch(self, candidates: list[Candidate], reporters: list[Reporter | None]) -> list[Outcome]:
        """Score several candidates: hardware one by one, accuracy in one call of the proxy.

        One candidate's fault fails that candidate only, with its reason.
        """
        outcomes: list[Outcome | None] = [None] * len(candidates)
        hardware: dict[int, Hardware] = {}
        for i, candidate in enumerate(candidates):
            hardware[i], failure = _guarded(lambda c=candidate: self._hardware(c))
            outcomes[i] = None if failure is None else failure.replace(candidate=candidate)
        todo = [i for i in hardware if outcomes[i] is None]
        if todo:
            accuracies, failure = _guarded(lambda: self._accuracies([candidates[i] for i in todo],
                                                                     [reporters[i] for i in todo]))
            for n, i in enumerate(todo):
                if failure is not None:
                    outcomes[i] = failure.replace(candidate=candidates[i])
                else:
                    outcomes[i] = self._combine(candidates[i], hardware[i], accuracies[n])
        return outcomes

    def _hardware(self, candidate: Candidate) -> Hardware:
        workload = candidate.network.workload(compression=candidate.compression)
        accelerator, front = self._accelerator(candidate, workload)
        report = evaluate(workload, accelerator)
        if report.unmappable:  # not a buildable design: a failed trial that says why, not a number on the front
            raise ValueError(report.unmappable_note())
        metrics = {name: float(value) for name, value in hardware_metrics(report.total).items()}
        metrics["model_size"] = model_size_kib(workload)
        return Hardware(accelerator, front, report, metrics)

    def _accuracies(self, candidates: list[Candidate], reporters: list[Reporter | None]) -> list[Accuracy]:
        dataset = self.dataset if isinstance(self.dataset, Dataset) else _dataset(self.dataset, self.seed)
        cache = AccuracyCache(self.cache_location)
        pairs = [(c.network, c.compression) for c in candidates]
        return cache.evaluate(pairs, dataset, self.proxy, self.seed, reporters)

    def _combine(self, candidate: Candidate, hardware: Hardware, accuracy: Accuracy) -> Outcome:
        """The trial's outcome: the hardware result and the proxy's accuracy, under the proxy's metric name."""
        outcome = Outcome(accuracy.status, candidate, accelerator=hardware.accelerator, front=hardware.front,
                          cost_report=hardware.report, cost_model_version=COST_MODEL_VERSION,
                          history=accuracy.history, weights=accuracy.weights if self.save_weights else None,
                          reason=accuracy.reason, proxy_seconds=accuracy.seconds, cached=accuracy.cached)
        if not accuracy.ok:
            return outcome
        metrics = {**hardware.metrics, self.proxy.metric: float(accuracy.score)}
        return outcome.replace(metrics=metrics, values=tuple(metrics[o.metric] for o in self.objectives),
                               constraints={name: v for c in self.constraints
                                            for name, v in c.violations(metrics).items()})

    def _accelerator(self, candidate: Candidate, workload) -> tuple[Accelerator, tuple[FrontPoint, ...] | None]:
        """Joint mode: the candidate's accelerator. Nested mode: the sweep's pick and its front."""
        if self.nested is None:
            if candidate.accelerator is None:
                raise ValueError("a joint-mode candidate needs an accelerator")
            return candidate.accelerator, None
        accelerators, stacked = _accelerator_grid(self.nested, self.nested_limit, self.seed)
        front = front_of(workload, accelerators, stacked, self.hardware_objectives, self.hardware_constraints,
                         self.tie_break)
        return front.chosen, front.points


def _guarded(work: Callable[[], Any]) -> tuple[Any, Outcome | None]:
    """``(work(), None)``, or ``(None, the failed outcome)`` when the work raises."""
    try:
        return work(), None
    except (ValueError, FileNotFoundError) as error:
        return None, Outcome.failed(f"{type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - a candidate's crash must not end the study
        return None, Outcome.failed(f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=8))


@functools.lru_cache(maxsize=4)
def _dataset(source: str, seed: int) -> Dataset:
    """A built-in dataset (or a path, for an Evaluator built by hand), loaded once per worker process."""
    return load_dataset(source, seed=seed)


@functools.lru_cache(maxsize=4)
def _accelerator_grid(space: AcceleratorSpace, limit: int | None, seed: int) -> tuple[GridPoints, Any]:
    """The nested sweep's accelerators (each built when read: a front's) and their arrays, once per worker (the
    same for every candidate)."""
    indices = space.grid_indices(limit, np.random.default_rng(seed))
    return GridPoints(space, indices), space.stacked(indices)
