"""Scoring one candidate: accuracy (cached proxy) plus hardware costs (one cost-model call).

:func:`evaluate_candidate` is what a Ray task runs. It takes plain data (specs as JSON,
the dataset source, the proxy, the cache folder) and returns plain data: the metrics,
the chosen accelerator, the per-layer cost report, the trained weights (Flax msgpack
bytes) and, in nested mode, the accelerators on the candidate's hardware Pareto front.
Errors of the candidate itself (a spec that does not fit the dataset, a diverging
training) come back as ``{"status": "failed", "reason": ...}``: the search goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
from typing import Any, Callable

import jax
import numpy as np
from flax import serialization

from codesign.cache import AccuracyCache
from codesign.datasets import Dataset, load_dataset
from cost_models import Accelerator, evaluate, evaluate_batch, stack
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What a trial asks to be scored (all plain data, cheap to ship to a worker)."""

    network: str  # NetworkSpec JSON
    compression: str | None  # CompressionPolicy JSON
    accelerator: str | None  # Accelerator JSON (joint mode)
    accelerators: str | None = None  # AcceleratorSpace JSON (nested mode)
    nested_limit: int | None = None
    seed: int = 0


@functools.lru_cache(maxsize=4)
def _dataset(source: str, seed: int) -> Dataset:
    return load_dataset(source, seed=seed)


@functools.lru_cache(maxsize=4)
def _accelerator_grid(space_json: str, limit: int | None, seed: int) -> tuple[tuple[Accelerator, ...], Any]:
    """The nested sweep's accelerators, built and stacked once per worker (same for every candidate of a run)."""
    accelerators = tuple(AcceleratorSpace.from_json(space_json).grid(limit, np.random.default_rng(seed)))
    return accelerators, stack(accelerators)


def model_size_kib(workload) -> float:
    """Compressed weight storage: non-zero weights x bit width."""
    return float(sum(layer.params * layer.w_density * layer.w_bits for layer in workload) / 8 / 1024)


def totals_metrics(latency_s, energy_pj, area_mm2) -> dict[str, np.ndarray]:
    latency_ms = np.asarray(latency_s) * 1e3
    energy_uj = np.asarray(energy_pj) / 1e6
    return {"latency": latency_ms, "energy": energy_uj, "edp": latency_ms * energy_uj, "area": np.asarray(area_mm2)}


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (to minimise, shape [n, m]) that no other row dominates."""
    n = len(values)
    keep = np.ones(n, bool)
    for start in range(0, n, 512):
        block = values[start:start + 512]
        no_worse = (values[None, :, :] <= block[:, None, :]).all(-1)
        better = (values[None, :, :] < block[:, None, :]).any(-1)
        keep[start:start + 512] = ~(no_worse & better).any(1)
    return keep


def pick_accelerators(metrics: dict[str, np.ndarray], objectives: list[str], constraints: list,
                      tie_break: str) -> tuple[np.ndarray, int]:
    """Indices of the hardware Pareto front under the constraints, and the tie-break's pick.

    ``objectives`` are the hardware metrics to minimise; ``constraints`` those
    :class:`~codesign.experiment.Constraint` objects on hardware metrics. With no
    feasible accelerator, the least-violating one is the front.
    """
    n = len(next(iter(metrics.values())))
    violation = np.zeros(n)
    for c in constraints:
        value = metrics[c.metric]
        if c.max is not None:
            violation += np.maximum(value - c.max, 0) / max(abs(c.max), 1e-12)
        if c.min is not None:
            violation += np.maximum(c.min - value, 0) / max(abs(c.min), 1e-12)
    feasible = np.flatnonzero(violation == 0)
    if len(feasible) == 0:
        best = int(np.argmin(violation))
        return np.array([best]), best
    names = objectives or [tie_break]
    values = np.stack([metrics[m][feasible] for m in names], axis=1)
    front = feasible[pareto_mask(values)]
    pick = int(front[np.argmin(metrics[tie_break][front])])
    return front, pick


def evaluate_candidate(candidate: Candidate, dataset_source: Any, proxy, cache_folder: str,
                       hardware_objectives: list[str], hardware_constraints: list, tie_break: str = "edp",
                       report: Callable[[int, float], bool] | None = None, save_weights: bool = True) -> dict:
    """Score one candidate; never raises for the candidate's own faults (see module docstring)."""
    started = time.perf_counter()
    try:
        out = _evaluate(candidate, dataset_source, proxy, cache_folder, hardware_objectives, hardware_constraints,
                        tie_break, report, save_weights)
    except (ValueError, FileNotFoundError) as error:
        out = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
    except Exception as error:  # noqa: BLE001 - a candidate's crash must not end the study
        out = {"status": "failed", "reason": f"{type(error).__name__}: {error}",
               "traceback": traceback.format_exc(limit=8)}
    out["worker_seconds"] = time.perf_counter() - started
    return out


def _evaluate(candidate, dataset_source, proxy, cache_folder, hardware_objectives, hardware_constraints, tie_break,
              report, save_weights) -> dict:
    network = NetworkSpec.from_json(candidate.network)
    compression = CompressionPolicy.from_json(candidate.compression) if candidate.compression else None
    dataset = dataset_source if isinstance(dataset_source, Dataset) else _dataset(str(dataset_source), candidate.seed)
    workload = network.workload(compression=compression)

    # hardware first: it is cheap, and a workload the cost model rejects fails fast
    if candidate.accelerators is not None:
        accelerators, stacked = _accelerator_grid(candidate.accelerators, candidate.nested_limit, candidate.seed)
        costs = evaluate_batch(workload, stacked)
        all_metrics = totals_metrics(costs.latency_s, costs.energy_pj, costs.area_mm2)
        front, pick = pick_accelerators(all_metrics, hardware_objectives, hardware_constraints, tie_break)
        accelerator = accelerators[pick]
        front_rows = [{"accelerator": accelerators[i].to_dict(), **{k: float(v[i]) for k, v in all_metrics.items()}}
                      for i in front]
    else:
        accelerator = Accelerator.from_json(candidate.accelerator)
        front_rows = None
    cost_report = evaluate(workload, accelerator)
    metrics = {k: float(v[0]) for k, v in totals_metrics([cost_report.total["latency_s"]],
                                                         [cost_report.total["energy_pj"]],
                                                         [cost_report.total["area_mm2"]]).items()}
    metrics["model_size"] = model_size_kib(workload)

    cache = AccuracyCache(cache_folder)
    result = cache.evaluate(network, compression, dataset, proxy, candidate.seed, report)
    out = {"accelerator": accelerator.to_json(), "cost_report": cost_report.to_dict(), "front": front_rows,
           "history": [list(h) for h in result.history], "accuracy_cached": result.cached,
           "proxy_seconds": result.seconds}
    if result.status == "diverged":
        return {**out, "status": "failed", "reason": result.reason}
    if result.status == "pruned":
        return {**out, "status": "pruned", "reason": result.reason}
    metrics["accuracy"] = float(result.score)
    out.update(status="ok", metrics=metrics)
    if save_weights and result.variables is not None:
        out["weights"] = serialization.msgpack_serialize(jax.device_get(result.variables))
    return out
