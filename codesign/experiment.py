"""An experiment: what to search (three spaces), how to score it, and how to run the search.

:class:`Experiment` is frozen configuration, validated on construction; change a field
with ``dataclasses.replace(experiment, trials=80)`` (validated again).
:func:`codesign.run` executes it. Objectives are metric names of
:data:`codesign.metrics.METRICS` (accuracy, latency, energy, edp, area, model_size),
each maximised or minimised in its own direction unless told otherwise.

Constraints bound any metric (``Constraint("area", max=2.0)``); they are recorded on
every trial with ``trial.set_constraint`` (feasible when <= 0), so Optuna's samplers
and ``study.best_trials`` respect them.

The dataset is read when the experiment is built: the network space takes the data's
input shape and class count where it leaves them unset, and a space that cannot take
the data is an error then, before any trial. With a zero-cost proxy the quality
objective is named after the proxy (``accuracy`` in an objective or constraint means
it), so a synflow score is never shown as an accuracy.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from codesign.accuracy.datasets import Dataset, DataSpec, data_spec
from codesign.metrics import HARDWARE_METRICS, METRICS, QUALITY_METRICS, Constraint, Objective
from codesign.accuracy.proxies import TrainedProxy
from codesign.accuracy.proxy import Proxy
from codesign.artifacts import is_url, location_problem, shown_location
from codesign.stores import joined
from codesign.storage import JOURNAL, SQLITE, run_folder_storage, server_url_problem, shown_url
from codesign.accuracy.training import TrainConfig
from search_spaces.accelerators import DEFAULT_ACCELERATOR_SPACE, AcceleratorSpace
from search_spaces.compression import DEFAULT_COMPRESSION_SPACE, CompressionSpace
from search_spaces.network_space import DEFAULT_NETWORK_SPACE, NetworkSpace, NetworkVariantSpace
from search_spaces.networks import NetworkSpec

__all__ = ["Constraint", "Experiment", "HARDWARE_METRICS", "METRICS", "Objective"]

MODES = ("joint", "nested")
SAMPLERS = ("tpe", "nsga2", "random", "gp")
TORCH_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def _read_data(dataset, seed: int) -> DataSpec:
    """The dataset's :class:`DataSpec`, read once per process; a ValueError naming the field when it cannot be read."""
    if isinstance(dataset, Dataset):
        return dataset.spec
    if isinstance(dataset, os.PathLike):
        dataset = os.fspath(dataset)
    if not isinstance(dataset, str):
        raise ValueError(f"experiment: field 'dataset' must be a built-in name, a path or a Dataset "
                         f"(codesign.accuracy.datasets.from_arrays), got {type(dataset).__name__}")
    try:
        return data_spec(dataset, seed)
    except (ValueError, FileNotFoundError) as error:
        raise dataset_field_error(error) from None


def dataset_field_error(error: Exception) -> ValueError:
    """A dataset that cannot be read, as the error of the experiment's ``dataset`` field."""
    return ValueError(f"experiment: field 'dataset': {re.sub(r'^dataset:? ', '', str(error))}")


def _fit_to_data(network_space, data: DataSpec):
    """The network space as searched: unset input shape and class count taken from the data, and a ValueError
    when what it builds cannot take the data."""
    if isinstance(network_space, NetworkSpace):
        network_space = network_space.for_data(data.resolution, data.in_channels, data.num_classes,
                                               f"dataset {data.name!r}")
    probe = network_space.draw(np.random.default_rng(0))
    if not isinstance(probe, NetworkSpec):
        raise ValueError(f"experiment: field 'network_space' must build NetworkSpecs, got {type(probe).__name__}")
    shape, wanted = (probe.resolution, probe.in_channels), (data.resolution, data.in_channels)
    if shape != wanted or probe.num_classes < data.num_classes:
        raise ValueError(f"experiment: field 'network_space' builds networks for {shape[0]}x{shape[0]}x{shape[1]} "
                         f"inputs and {probe.num_classes} classes, but dataset {data.name!r} has "
                         f"{wanted[0]}x{wanted[0]}x{wanted[1]} images and {data.num_classes} classes")
    return network_space


def _integer(field: str, value, low: int, high: int | None = None, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"experiment: field {field!r} must be {'None or ' if optional else ''}an integer {bound}, "
                         f"got {value!r}")


def _number(field: str, value, low: float, optional: bool = False, allow_low: bool = False) -> None:
    if optional and value is None:
        return
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or (value < low if allow_low else value <= low):
        bound = f">= {low:g}" if allow_low else f"> {low:g}"
        raise ValueError(f"experiment: field {field!r} must be {'None or ' if optional else ''}a finite number "
                         f"{bound}, got {value!r}")


def run_name_error(name) -> str | None:
    """Why ``name`` cannot name a run (its folder ``runs/<name>`` and its study), or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a non-empty string, got {name!r}"
    if name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable() or name != name.strip():
        return f"must be a plain folder name (no '/', '\\', '.' or '..', no control characters), got {name!r}"
    if len(name.encode()) > 255:
        return "must be at most 255 bytes long (a folder name)"
    return None


def _check_types(experiment) -> None:
    """A ValueError naming the field for every field of the wrong type or out of range (the spaces, budgets,
    seeds and resources), so nothing fails later inside ``run``."""
    error = run_name_error(experiment.name)
    if error:
        raise ValueError(f"experiment: field 'name' {error}")
    for field, kinds, what in (("network_space", (NetworkSpace, NetworkVariantSpace), "a NetworkSpace or "
                                "NetworkVariantSpace"),
                               ("compression_space", (CompressionSpace, type(None)), "a CompressionSpace or None"),
                               ("accelerator_space", (AcceleratorSpace,), "an AcceleratorSpace")):
        value = getattr(experiment, field)
        if not isinstance(value, kinds):
            raise ValueError(f"experiment: field {field!r} must be {what}, got {type(value).__name__} {value!r:.60}")
    _integer("trials", experiment.trials, 1, optional=True)
    _number("timeout", experiment.timeout, 0.0, optional=True)
    _integer("seed", experiment.seed, 0, 2 ** 32 - 1)
    _integer("nested_accelerators", experiment.nested_accelerators, 1, optional=True)
    _integer("max_retries", experiment.max_retries, 0)
    _number("cpus_per_trial", experiment.cpus_per_trial, 0.0)
    _number("gpus_per_trial", experiment.gpus_per_trial, 0.0, allow_low=True)
    _integer("memory_per_trial", experiment.memory_per_trial, 1, optional=True)
    if not isinstance(experiment.save_weights, bool):
        raise ValueError(f"experiment: field 'save_weights' must be true or false, got {experiment.save_weights!r}")
    if experiment.storage is not None and (not isinstance(experiment.storage, str) or "://" not in experiment.storage):
        raise ValueError(f"experiment: field 'storage' must be None or an Optuna storage URL such as "
                         f"sqlite:///study.db or journal:///path/study.log, got {experiment.storage!r}")
    if experiment.storage is not None and not experiment.storage.startswith((JOURNAL, SQLITE)):
        problem = server_url_problem(experiment.storage)
        if problem:
            raise ValueError(f"experiment: field 'storage' {shown_url(experiment.storage)}: {problem}")
    if experiment.artifacts is not None and (problem := location_problem(experiment.artifacts)):
        raise ValueError(f"experiment: field 'artifacts' {shown_location(experiment.artifacts)}: {problem}")
    folder = experiment.run_folder
    if folder is not None and not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"experiment: field 'run_folder' must be None, a path or an object store URL, "
                         f"got {folder!r}")
    if is_url(folder):
        if problem := location_problem(folder):
            raise ValueError(f"experiment: field 'run_folder' {shown_location(folder)}: {problem}")
        if experiment.storage is None or experiment.storage.startswith((JOURNAL, SQLITE)):
            raise ValueError(f"experiment: field 'run_folder' {shown_location(folder)}: a run folder in an object "
                             f"store holds no study file; give storage= a database server's URL "
                             f"(postgresql://USER@HOST/DATABASE), got {experiment.storage!r}")
        return
    path = Path(folder) if folder is not None else Path("runs") / experiment.name
    if path.exists() and not path.is_dir():
        raise ValueError(f"experiment: field 'run_folder': {path} exists and is not a folder")


def _check_constraints_can_hold(constraints) -> None:
    """A ValueError when no value of a metric meets all its bounds together (or its own range)."""
    for metric in dict.fromkeys(c.metric for c in constraints):
        low, high = METRICS[metric].range
        bounds = []
        for c in constraints:
            if c.metric != metric:
                continue
            if c.max is not None:
                high = min(high, c.max)
                bounds.append(f"{metric} <= {c.max:g}")
            if c.min is not None:
                low = max(low, c.min)
                bounds.append(f"{metric} >= {c.min:g}")
        # bounds outside the metric's range end up crossed (low > high) too
        if low > high or (high == METRICS[metric].range[0] and METRICS[metric].positive):
            raise ValueError(f"experiment: no design can meet the constraints {' and '.join(bounds)} "
                             f"({metric} lies in {_range_text(metric)})")


def _range_text(metric: str) -> str:
    low, high = METRICS[metric].range
    left = "(" if METRICS[metric].positive else "["
    return f"{left}{low:g}, {high:g}]" if np.isfinite(high) else f"{left}{low:g}, inf)"


def _quality_named(metric: str, quality: str, proxy, role: str) -> str:
    """``metric`` with ``accuracy`` read as the proxy's quality metric; a ValueError for another proxy's score."""
    if metric not in QUALITY_METRICS or metric == quality:
        return metric
    if metric == "accuracy":
        return quality
    raise ValueError(f"experiment: {role} {metric!r} is the score of ZeroCostProxy({metric!r}), but the proxy is "
                     f"{proxy.name!r}, which reports {quality!r}; write 'accuracy' for the proxy's measure")


def _objective(item) -> Objective:
    if isinstance(item, Objective):
        return item
    if isinstance(item, str):
        return Objective(item)
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return Objective(*item)
    raise ValueError(f"experiment: an objective must be a metric name or (metric, direction), got {item!r}")


def _constraint(item) -> Constraint:
    if isinstance(item, Constraint):
        return item
    if isinstance(item, dict):
        fields = [f.name for f in dataclasses.fields(Constraint)]
        unknown = [key for key in item if key not in fields]
        if unknown:
            raise ValueError(f"experiment: a constraint has no field {unknown[0]!r}; its fields are "
                             f"{', '.join(fields)} (e.g. {{'metric': 'area', 'max': 2.0}})")
        return Constraint(**item)
    raise ValueError(f"experiment: a constraint must be a Constraint or a dict, got {item!r}")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A co-design search, ready for :func:`codesign.run` (docs/GUIDE.md describes each field)."""

    name: str = "codesign"
    network_space: NetworkSpace = DEFAULT_NETWORK_SPACE
    compression_space: CompressionSpace | None = DEFAULT_COMPRESSION_SPACE
    accelerator_space: AcceleratorSpace = DEFAULT_ACCELERATOR_SPACE
    dataset: Any = "digits"  # "digits", "mnist", "synthetic", a CIFAR-10 folder, an .npz path, or a Dataset
    proxy: Proxy = TrainedProxy(TrainConfig(epochs=3))  # any codesign.accuracy.Proxy
    objectives: tuple = ("accuracy", "latency", "energy")
    constraints: tuple = ()
    mode: str = "joint"
    nested_accelerators: int | None = 1024  # accelerators swept per candidate in nested mode (None: all)
    tie_break: str = "edp"  # nested mode: which front accelerator a trial reports
    sampler: Any = "tpe"  # "tpe", "nsga2", "random", "gp" (needs torch) or any optuna sampler object
    pruner: Any = None  # an optuna pruner; with several objectives it decides on the accuracy (storage.FIDELITY)
    trials: int | None = 40
    timeout: float | None = None  # seconds of wall time for the whole run
    storage: str | None = None  # any Optuna storage URL; default: the run folder's journal file (study.log)
    run_folder: str | os.PathLike | None = None  # default: runs/<name>
    artifacts: str | os.PathLike | None = None  # a folder or an object store URL (s3://bucket/prefix); default:
    #                                             the run folder's artifacts/
    seed: int = 0
    cpus_per_trial: float = 1.0
    memory_per_trial: int | None = None  # bytes
    gpus_per_trial: float = 0.0
    max_retries: int = 2  # Ray retries of a trial whose worker died
    save_weights: bool = True

    def __post_init__(self):
        objectives = self.objectives if isinstance(self.objectives, (list, tuple)) else (self.objectives,)
        object.__setattr__(self, "objectives", tuple(_objective(o) for o in objectives))
        if not self.objectives:
            raise ValueError("experiment: field 'objectives' needs at least one metric")
        object.__setattr__(self, "constraints", tuple(_constraint(c) for c in self.constraints))
        if self.mode not in MODES:
            raise ValueError(f"experiment: field 'mode' must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.tie_break not in HARDWARE_METRICS:
            raise ValueError(f"experiment: field 'tie_break' must be one of {', '.join(HARDWARE_METRICS)}; "
                             f"got {self.tie_break!r}")
        if not (isinstance(self.sampler, str) and self.sampler in SAMPLERS
                or isinstance(self.sampler, optuna.samplers.BaseSampler)):
            raise ValueError(f"experiment: field 'sampler' must be one of {', '.join(SAMPLERS)} or an optuna sampler; "
                             f"got {self.sampler!r}")
        if self.pruner is not None and not isinstance(self.pruner, optuna.pruners.BasePruner):
            raise ValueError(f"experiment: field 'pruner' must be None or an optuna pruner, got {self.pruner!r}")
        if self.sampler == "gp" and importlib.util.find_spec("torch") is None:
            raise ValueError(f"experiment: sampler 'gp' (Optuna's GPSampler) needs torch, which is not installed: "
                             f"{TORCH_INSTALL}")
        _check_types(self)
        if self.trials is None and self.timeout is None:
            raise ValueError("experiment: set a budget: field 'trials' and/or 'timeout'")
        if not isinstance(self.proxy, Proxy):
            raise ValueError(f"experiment: field 'proxy' must be an accuracy proxy (TrainedProxy, ZeroCostProxy, "
                             f"SupernetProxy, PredictorProxy, or any codesign.accuracy.Proxy), got {self.proxy!r}")
        quality = self.proxy.metric
        object.__setattr__(self, "objectives", tuple(dataclasses.replace(
            o, metric=_quality_named(o.metric, quality, self.proxy, "objective")) for o in self.objectives))
        object.__setattr__(self, "constraints", tuple(dataclasses.replace(
            c, metric=_quality_named(c.metric, quality, self.proxy, "constraint")) for c in self.constraints))
        _check_constraints_can_hold(self.constraints)
        if len({o.metric for o in self.objectives}) != len(self.objectives):
            raise ValueError(f"experiment: field 'objectives' repeats a metric: {[o.metric for o in self.objectives]}")
        data = _read_data(self.dataset, self.seed)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_searched_network_space", _fit_to_data(self.network_space, data))
        try:  # the proxy for these spaces; one that cannot serve them says so before any trial
            bound = self.proxy.bind(self.searched_network_space, self.compression_space,
                                    self.accuracy_cache_location)
        except ValueError as error:
            raise ValueError(f"experiment: field 'proxy' {re.sub(r'^proxy: ', '', str(error))}") from None
        object.__setattr__(self, "_bound_proxy", bound)

    # --- derived settings -----------------------------------------------------------------
    @property
    def data(self) -> DataSpec:
        """The dataset's input shape, class count, normalisation and split seed (read when the experiment was built)."""
        return self._data

    @property
    def searched_network_space(self):
        """``network_space`` with the dataset's input shape and class count where it left them unset."""
        return self._searched_network_space

    @property
    def quality_metric(self) -> str:
        """What the proxy reports: ``accuracy``, or a zero-cost proxy's score under its own name."""
        return self.proxy.metric

    @property
    def bound_proxy(self):
        """``proxy`` bound to the searched spaces and the run folder (what the workers run)."""
        return self._bound_proxy

    @property
    def folder(self) -> Path:
        """The run folder on this machine's disk (a ValueError for a run folder in an object store:
        :attr:`run_location` names either)."""
        if is_url(self.run_folder):
            raise ValueError(f"the run folder {shown_location(self.run_folder)} is in an object store, not on disk")
        return Path(self.run_folder) if self.run_folder is not None else Path("runs") / self.name

    @property
    def in_store(self) -> bool:
        """Whether the run folder is an object store URL (``s3://bucket/prefix``) rather than a folder."""
        return is_url(self.run_folder)

    @property
    def run_location(self) -> str:
        """The run folder as the study records it: an object store URL, or an absolute path."""
        return str(self.run_folder).rstrip("/") if self.in_store else str(self.folder.resolve())

    @property
    def storage_url(self) -> str:
        return self.storage or run_folder_storage(self.folder)

    @property
    def artifacts_location(self) -> str:
        """Where the trials' artifacts go: ``artifacts`` as given (an absolute folder), or the run folder's."""
        if is_url(self.artifacts):
            return self.artifacts
        if self.artifacts is None and self.in_store:
            return joined(self.run_location, "artifacts")
        return str(Path(self.artifacts if self.artifacts is not None else self.folder / "artifacts").resolve())

    @property
    def accuracy_cache_location(self) -> str:
        """Where the accuracy cache is: beside the artifacts in an object store (``<artifacts>/accuracy_cache``),
        so workers on any node share it without a shared file system; else the run folder's ``accuracy_cache``
        (in the object store when the run folder is)."""
        if is_url(self.artifacts):
            return joined(self.artifacts, "accuracy_cache")
        if self.in_store:
            return joined(self.run_location, "accuracy_cache")
        return str((self.folder / "accuracy_cache").resolve())

    @property
    def lease_location(self) -> str:
        """Where the drivers' leases are (:mod:`codesign.lease`): where every driver of the study sees them.
        Beside the artifacts when they are in an object store (every driver of a study shares its artifacts,
        though their hosts may share no disk, nor one run folder); else the run folder."""
        artifacts = self.artifacts_location
        return artifacts.rstrip("/") if is_url(artifacts) else self.run_location

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def make_sampler(self, resumed_after: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler; seeded with ``seed`` for a new study, and for a study resumed after ``resumed_after``
        trials with a seed derived from both, so a resumed run continues instead of replaying its first draws.
        A sampler object given in ``sampler`` is used as it is."""
        if not isinstance(self.sampler, str):
            return self.sampler
        seed = self.seed if not resumed_after else int(np.random.SeedSequence([self.seed, resumed_after])
                                                        .generate_state(1)[0])
        if self.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def describe(self) -> dict:
        """A JSON-ready summary, stored with the study."""
        return {"name": self.name, "mode": self.mode, "objectives": [[o.metric, o.direction] for o in self.objectives],
                "constraints": [dataclasses.asdict(c) for c in self.constraints],
                "network_space": self.searched_network_space.to_dict(), "data": self.data.to_dict(),
                "quality_metric": self.quality_metric,
                "compression_space": None if self.compression_space is None else self.compression_space.to_dict(),
                "accelerator_space": self.accelerator_space.to_dict(),
                "dataset": self.dataset if isinstance(self.dataset, str) else getattr(self.dataset, "name", "arrays"),
                "proxy": self.proxy.describe(), "sampler": self.sampler if isinstance(self.sampler, str)
                else type(self.sampler).__name__, "seed": self.seed, "tie_break": self.tie_break,
                "nested_accelerators": self.nested_accelerators}

    def to_json(self) -> str:
        return json.dumps(self.describe(), sort_keys=True, default=str)
