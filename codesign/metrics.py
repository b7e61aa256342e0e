"""The metrics a co-design search scores, each defined once: name, direction, unit, source.

Every table, plot, objective and constraint reads its metric from :data:`METRICS`:

=============  =========  ======  ========  ==================================================
metric         direction  unit    hardware  computed from
=============  =========  ======  ========  ==================================================
accuracy       maximize           no        the accuracy proxy (validation accuracy when
                                            trained)
latency        minimize   ms      yes       the cost report's ``latency_s``
energy         minimize   uJ      yes       the cost report's ``energy_pj``
edp            minimize   uJ*ms   yes       latency x energy
area           minimize   mm2     yes       the cost report's ``area_mm2``
model_size     minimize   KiB     no        the compressed workload: non-zero weights x bits
synflow, ...   maximize           no        a zero-cost proxy's score, named after the proxy
                                            (synflow, naswot, grad_norm, snip, params)
=============  =========  ======  ========  ==================================================

``accuracy`` and the zero-cost scores are *quality* metrics: the proxy's measure of how
good a network is. An experiment has exactly one, its proxy's (:func:`quality_metric`);
an objective or constraint that says ``accuracy`` means it.

A hardware metric depends on the accelerator (the nested sweep optimises those). The
functions work on scalars and on arrays alike, so one definition serves one accelerator
and a whole accelerator grid::

    >>> import numpy as np
    >>> hardware_metrics({"latency_s": np.array([2e-3]), "energy_pj": np.array([5e6]),
    ...                   "area_mm2": np.array([1.5])})["edp"]
    array([10.])
    >>> Constraint("area", max=2.0).violations({"area": 2.5})
    {'area<=2': 0.5}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from cost_models.accelerator import Accelerator

DIRECTIONS = ("maximize", "minimize")
#: The zero-cost proxies, each a metric of its own name (a higher score predicts a better network).
ZERO_COST_SCORES = ("synflow", "naswot", "grad_norm", "snip", "params")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: how it is named, read and compared."""

    name: str
    direction: str
    unit: str
    hardware: bool  # depends on the accelerator
    label: str  # axis label for plots
    from_totals: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None  # from a cost report's totals
    range: tuple[float, float] = (-np.inf, np.inf)  # the values it can take (constraints outside it are errors)
    positive: bool = False  # its lower end is excluded (a latency or area of 0 is impossible)

    @property
    def heading(self) -> str:
        """The column heading of a table: name and unit."""
        return f"{self.name} {self.unit}" if self.unit else self.name


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "maximize", "", False, "accuracy", range=(0.0, 1.0)),
    Metric("latency", "minimize", "ms", True, "latency (ms)", lambda t: np.asarray(t["latency_s"]) * 1e3,
           (0.0, np.inf), True),
    Metric("energy", "minimize", "uJ", True, "energy (uJ)", lambda t: np.asarray(t["energy_pj"]) / 1e6,
           (0.0, np.inf), True),
    Metric("edp", "minimize", "uJ*ms", True, "EDP (uJ x ms)",
           lambda t: np.asarray(t["latency_s"]) * 1e3 * np.asarray(t["energy_pj"]) / 1e6, (0.0, np.inf), True),
    Metric("area", "minimize", "mm2", True, "area (mm^2)", lambda t: np.asarray(t["area_mm2"]), (0.0, np.inf), True),
    Metric("model_size", "minimize", "KiB", False, "model size (KiB)", range=(0.0, np.inf), positive=True),
    *(Metric(name, "maximize", "", False, f"{name} score (zero-cost proxy)") for name in ZERO_COST_SCORES),
)}

#: The quality metrics: what an accuracy proxy reports, one per experiment.
QUALITY_METRICS = ("accuracy",) + ZERO_COST_SCORES

#: Metrics that depend on the accelerator, in table order.
HARDWARE_METRICS = tuple(name for name, m in METRICS.items() if m.hardware)


def quality_metric(proxy_name: str) -> str:
    """The quality metric a proxy reports: ``accuracy`` when it trains (or reads a supernet), else its score."""
    return proxy_name if proxy_name in ZERO_COST_SCORES else "accuracy"


def table_metrics(quality: str = "accuracy") -> tuple[str, ...]:
    """The metrics a table shows, in order: the run's quality metric, then every other non-quality metric."""
    return (quality,) + tuple(name for name in METRICS if name not in QUALITY_METRICS)


def hardware_metrics(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every hardware metric from a cost report's totals (``latency_s``, ``energy_pj``, ``area_mm2``)."""
    return {name: METRICS[name].from_totals(totals) for name in HARDWARE_METRICS}


def model_size_kib(workload) -> float:
    """Compressed weight storage in KiB: non-zero weights x bit width."""
    return float(sum(layer.params * layer.w_density * layer.w_bits for layer in workload) / 8 / 1024)


def _check_metric(name, role: str) -> None:
    if name not in METRICS:
        raise ValueError(f"experiment: {role} {name!r} is not a metric; allowed: {', '.join(METRICS)}")


@dataclasses.dataclass(frozen=True)
class Objective:
    """A metric to optimise; the direction defaults to the metric's own."""

    metric: str
    direction: str = ""

    def __post_init__(self):
        _check_metric(self.metric, "objective")
        direction = self.direction or METRICS[self.metric].direction
        if direction not in DIRECTIONS:
            raise ValueError(f"experiment: objective {self.metric!r} direction must be 'maximize' or 'minimize', "
                             f"got {self.direction!r}")
        object.__setattr__(self, "direction", direction)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """``metric <= max`` and/or ``metric >= min``."""

    metric: str
    max: float | None = None
    min: float | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"experiment: constraint on {self.metric!r}; allowed metrics: {', '.join(METRICS)}")
        if self.max is None and self.min is None:
            raise ValueError(f"experiment: constraint on {self.metric!r} needs a 'max' or a 'min'")
        for bound in ("max", "min"):
            v = getattr(self, bound)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)):
                raise ValueError(f"experiment: constraint {self.metric!r} field {bound!r} must be a finite number, "
                                 f"got {v!r}")

    def violations(self, metrics: Mapping[str, np.ndarray], normalised: bool = False) -> dict[str, np.ndarray]:
        """Bound name -> violation, <= 0 when satisfied (the form ``trial.set_constraint`` takes).

        ``normalised`` divides each violation by the bound's magnitude, so constraints
        on different scales add up (used to pick the least-violating accelerator).
        Scalars give floats, arrays give arrays.
        """
        value = metrics[self.metric]
        out = {}
        for name, bound, excess in ((f"{self.metric}<={self.max:g}" if self.max is not None else "", self.max,
                                     lambda b: value - b),
                                    (f"{self.metric}>={self.min:g}" if self.min is not None else "", self.min,
                                     lambda b: b - value)):
            if bound is None:
                continue
            v = excess(bound) / (max(abs(bound), 1e-12) if normalised else 1.0)
            out[name] = float(v) if np.ndim(v) == 0 else np.asarray(v)
        return out


def total_violation(constraints, metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sum of the normalised positive violations of ``constraints`` (0 where all hold)."""
    total = np.zeros(np.shape(next(iter(metrics.values()))))
    for constraint in constraints:
        for v in constraint.violations(metrics, normalised=True).values():
            total = total + np.maximum(v, 0)
    return total


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (to minimise, shape [n, m]) that no other row dominates; equal rows are all kept.

    moocore's non-dominated sorting: a dimension sweep in O(n log n) for up to 3 objectives
    (6,912 accelerators in 3 objectives: about a millisecond).
    """
    import moocore

    values = np.asarray(values, float)
    if len(values) == 0:
        return np.zeros(0, bool)
    return np.asarray(moocore.is_nondominated(values, keep_weakly=True), bool)


def pick_accelerators(metrics: Mapping[str, np.ndarray], objectives, constraints,
                      tie_break: str, unbuildable: np.ndarray | None = None) -> tuple[np.ndarray, int, bool]:
    """Indices of the hardware Pareto front under the constraints, the tie-break's pick, and whether any
    accelerator is feasible.

    ``objectives`` are the hardware metrics to minimise; ``constraints`` the
    :class:`Constraint` objects on hardware metrics; ``unbuildable`` marks accelerators
    that cannot run the network (a layer fits no tiling of the buffer), never feasible.
    With no feasible accelerator, the least-violating one (normalised violations summed)
    is the front.
    """
    violation = total_violation(constraints, metrics)
    if unbuildable is not None:
        violation = np.where(unbuildable, violation + 1e12, violation)
    feasible = np.flatnonzero(violation == 0)
    if len(feasible) == 0:
        best = int(np.argmin(violation))
        return np.array([best]), best, False
    names = list(objectives) or [tie_break]
    values = np.stack([metrics[m][feasible] for m in names], axis=1)
    front = feasible[pareto_mask(values)]
    pick = int(front[np.argmin(metrics[tie_break][front])])
    return front, pick, True


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
