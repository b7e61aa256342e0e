"""A hardware-only sweep: one fixed network on every accelerator of a space, and its hardware Pareto front.

This is the architecture researcher's first question, without any training: given my
network, which accelerators are worth building? :func:`sweep` evaluates a workload on
an :class:`~search_spaces.accelerators.AcceleratorSpace` (all of it, or ``limit``
accelerators drawn from it) in one vectorised cost-model call, keeps the Pareto front of
the hardware objectives under the constraints, and picks one accelerator by the
tie-break metric. The nested mode of a search runs the same step for every candidate
network (:func:`front_of` is shared with :mod:`codesign.evaluator`).

From the shell: ``codesign sweep NETWORK`` with a reference network's name, a network
spec JSON, a SCALE-Sim topology CSV or an ONNX model; it prints the front and, with
``--out``, writes ``hardware_front.png`` and ``front.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import NamedTuple, Sequence

import numpy as np

from codesign.metrics import HARDWARE_METRICS, METRICS, Constraint, FrontPoint, hardware_metrics, pick_accelerators
from cost_models import Accelerator, Workload, evaluate_batch
from search_spaces.accelerators import DEFAULT_ACCELERATOR_SPACE, AcceleratorSpace, GridPoints


#: How an accelerator detail reads in a name, in the order details are added to tell accelerators apart.
_DETAILS = (("gb_bytes", lambda a: f"{a.gb_bytes // 1024} KiB"), ("dram_bw", lambda a: f"{a.dram_bw:g} B/cyc"),
            ("rf_bytes", lambda a: f"RF {a.rf_bytes} B"), ("mac_bits", lambda a: f"{a.mac_bits}-bit MACs"),
            ("zero_skip", lambda a: "zero-skip" if a.zero_skip else "no zero-skip"),
            ("dram_latency", lambda a: f"DRAM {a.dram_latency} cyc"), ("clock_mhz", lambda a: f"{a.clock_mhz:g} MHz"),
            ("simd_lanes", lambda a: f"{a.simd_lanes} SIMD lanes"), ("flex_set", lambda a: "/".join(a.flex_set)))


def accelerator_names(accelerators: Sequence[Accelerator]) -> list[str]:
    """``rows x cols dataflow``, with the details added (buffer, bandwidth, register file, MAC width, ...) that tell
    apart accelerators the name alone would not."""
    names = [f"{a.rows}x{a.cols} {a.dataflow}" for a in accelerators]
    for field, detail in _DETAILS:
        repeated = {n for n in names if names.count(n) > 1}
        if not repeated:
            break
        groups = {n: {getattr(a, field) for m, a in zip(names, accelerators) if m == n} for n in repeated}
        names = [f"{n}, {detail(a)}" if n in repeated and len(groups[n]) > 1 else n
                 for n, a in zip(names, accelerators)]
    return names


class HardwareFront(NamedTuple):
    """A network's hardware Pareto front over some accelerators (:func:`front_of`)."""

    points: tuple[FrontPoint, ...]  # one per distinct set of metrics
    chosen: Accelerator  # the front's lowest tie-break metric
    feasible: bool  # False: no accelerator runs the network within the constraints; the front is the least-violating
    tied: int  # accelerators left out because they equal a listed one in every metric


def front_of(workload: Workload, accelerators: Sequence[Accelerator], stacked, objectives: Sequence[str],
             constraints: Sequence[Constraint], tie_break: str) -> HardwareFront:
    """The hardware Pareto front of ``workload`` over ``accelerators`` (``stacked``: the same, stacked once) under
    the constraints. Accelerators that equal a front member in every metric (zero skipping with nothing to skip,
    a flexible dataflow that picks one dataflow everywhere) are listed once: the first in ``accelerators``."""
    costs = evaluate_batch(workload, stacked, per_layer=False)
    metrics = hardware_metrics({"latency_s": costs.latency_s, "energy_pj": costs.energy_pj,
                                "area_mm2": costs.area_mm2})
    unbuildable = np.asarray(costs.unmappable_layers).reshape(-1) > 0  # a layer fits no tiling of its buffer
    front, pick, feasible = pick_accelerators(metrics, objectives, constraints, tie_break, unbuildable)
    rows = np.stack([metrics[k][front] for k in sorted(metrics)], axis=1)
    first = np.sort(np.unique(rows, axis=0, return_index=True)[1])  # the pick is a first: argmin takes the first
    points = tuple(FrontPoint(accelerators[i], {k: float(v[i]) for k, v in metrics.items()}) for i in front[first])
    return HardwareFront(points, accelerators[pick], feasible, len(front) - len(first))


@dataclasses.dataclass(frozen=True)
class HardwareSweep:
    """A sweep's result: the front, the accelerator the tie-break picks, and what was swept."""

    network: str
    swept: int  # accelerators evaluated
    front: tuple[FrontPoint, ...]
    chosen: Accelerator
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...]
    tie_break: str
    seconds: float  # the sweep's wall time, compilation included
    feasible: bool = True  # False: no accelerator meets the constraints; the front is the least-violating one
    tied: int = 0  # accelerators equal to a front member in every metric, left out of the front

    def table(self) -> str:
        """The front as a text table, sorted by the tie-break metric; ``*`` marks the chosen accelerator."""
        columns = HARDWARE_METRICS
        front = sorted(self.front, key=lambda p: p.metrics[self.tie_break])
        names = accelerator_names([p.accelerator for p in front])
        width = max([len("accelerator")] + [len(n) for n in names]) + 2
        head = f"  {'accelerator':<{width}}" + "".join(f"{METRICS[m].heading:>14}" for m in columns)
        bounds = ", ".join(f"{c.metric}" + (f"<={c.max:g}" if c.max is not None else "") +
                           (f">={c.min:g}" if c.min is not None else "") for c in self.constraints)
        lines = [f"{self.network}: hardware Pareto front of {len(self.front)} of {self.swept} accelerators "
                 f"(objectives {', '.join(self.objectives)}{'; ' + bounds if bounds else ''}; "
                 f"* lowest {self.tie_break}) in {self.seconds:.2f} s", head, "-" * len(head)]
        if self.tied:
            lines.insert(1, f"{self.tied} more accelerator(s) equal a listed one in every metric (for example zero "
                            f"skipping with no zeros to skip) and are not listed")
        if not self.feasible:
            lines.insert(1, f"no accelerator meets {bounds or 'the network'}: shown is the least-violating one "
                            f"(an accelerator whose buffer cannot hold a layer's tiling counts as violating)")
        for point, name in zip(front, names):
            mark = "*" if point.accelerator == self.chosen else " "
            lines.append(f"{mark} {name:<{width}}" + "".join(f"{point.metrics[m]:>14.4g}" for m in columns))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"network": self.network, "swept": self.swept, "objectives": list(self.objectives),
                "constraints": [dataclasses.asdict(c) for c in self.constraints], "tie_break": self.tie_break,
                "feasible": self.feasible, "tied": self.tied, "seconds": self.seconds, "chosen": self.chosen.to_dict(),
                "front": [p.to_dict() for p in self.front]}


def sweep(workload: Workload, space: AcceleratorSpace = DEFAULT_ACCELERATOR_SPACE,
          objectives: Sequence[str] = ("latency", "energy"), constraints: Sequence[Constraint] = (),
          limit: int | None = None, tie_break: str = "edp", seed: int = 0) -> HardwareSweep:
    """Sweep ``space`` (or ``limit`` accelerators drawn from it with ``seed``) for ``workload`` (module docstring)."""
    for name, role in [(m, "objective") for m in objectives] + [(tie_break, "tie_break")]:
        if name not in HARDWARE_METRICS:
            raise ValueError(f"sweep: {role} {name!r} is not a hardware metric; allowed: {', '.join(HARDWARE_METRICS)}")
    if not objectives:
        raise ValueError(f"sweep: give at least one objective from {', '.join(HARDWARE_METRICS)}")
    constraints = tuple(constraints)
    for c in constraints:
        if c.metric not in HARDWARE_METRICS:
            raise ValueError(f"sweep: constraint on {c.metric!r}: a hardware sweep bounds hardware metrics only "
                             f"({', '.join(HARDWARE_METRICS)})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"sweep: field 'limit' must be an integer >= 1, got {limit!r}")
    started = time.perf_counter()
    indices = space.grid_indices(limit, np.random.default_rng(seed))
    accelerators = GridPoints(space, indices)  # built only for the front
    front = front_of(workload, accelerators, space.stacked(indices), tuple(objectives), constraints, tie_break)
    return HardwareSweep(workload.name, len(accelerators), front.points, front.chosen, tuple(objectives), constraints,
                         tie_break, time.perf_counter() - started, front.feasible, front.tied)


def parse_bound(text: str) -> Constraint:
    """``area<=2`` or ``latency<=0.5`` (a ``--max`` argument) as a Constraint."""
    metric, sep, value = (part.strip() for part in text.partition("<="))
    try:
        bound = float(value) if sep else None
    except ValueError:
        bound = None
    if bound is None or metric not in HARDWARE_METRICS:
        raise ValueError(f"sweep: bound {text!r} must be METRIC<=VALUE with METRIC one of "
                         f"{', '.join(HARDWARE_METRICS)} and VALUE a number")
    return Constraint(metric, max=bound)


def to_json(result: HardwareSweep) -> str:
    return json.dumps(result.to_dict(), indent=2)
