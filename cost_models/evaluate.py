"""Python-level entry points: evaluate a workload on one accelerator or a batch, get a report.

:func:`evaluate` returns a :class:`CostReport` (per-layer rows and totals, a printable
table, a JSON-ready dict); :func:`evaluate_batch` returns the raw
:class:`~cost_models.model.NetworkCosts` arrays for a whole accelerator grid.
Batches are split and padded to powers of two by :func:`~cost_models.model.network_costs`,
so the jitted function is reused.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from cost_models.accelerator import Accelerator, AcceleratorParams, stack
from cost_models.dataflows import DATAFLOWS
from cost_models.energy import LEVELS
from cost_models.model import NetworkCosts, network_costs
from cost_models.workload import VECTOR_KINDS, Workload, as_workload


def evaluate_batch(workload: Workload, accelerators: Sequence[Accelerator] | AcceleratorParams,
                   compute_only: bool = False, per_layer: bool = True) -> NetworkCosts:
    """Costs of ``workload`` on every accelerator, as numpy arrays with a leading batch axis.

    ``per_layer=False`` returns the totals only (``layers`` is None), which is faster.
    """
    workload = as_workload(workload)
    params = accelerators if isinstance(accelerators, AcceleratorParams) else stack(accelerators)
    out = network_costs(workload.arrays(), params, compute_only=compute_only, per_layer=per_layer)
    if out.layers is None:
        return out
    n_layers = len(workload)
    return out._replace(layers=out.layers._replace(**{k: v[:, :n_layers] for k, v in out.layers._asdict().items()}))


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Per-layer and total costs of one workload on one accelerator."""

    workload: Workload
    accelerator: Accelerator
    layers: tuple[dict, ...]
    total: dict
    compute_only: bool = False

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "total": dict(self.total)}

    def table(self) -> str:
        head = f"{'layer':<18}{'kind':<10}{'dataflow':<12}{'cycles':>12}{'compute':>12}{'stall':>12}{'util':>7}{'energy_pj':>13}"
        lines = [head, "-" * len(head)]
        for row in self.layers:
            lines.append(f"{row['layer']:<18.18}{row['kind']:<10}{row['dataflow']:<12}{row['cycles']:>12,.0f}"
                         f"{row['compute_cycles']:>12,.0f}{row['stall_cycles']:>12,.0f}{row['utilization']:>7.1%}"
                         f"{row['energy_pj']:>13,.4g}")
        t = self.total
        lines.append("-" * len(head))
        lines.append(f"{'total':<40}{t['cycles']:>12,.0f}{t['compute_cycles']:>12,.0f}{t['stall_cycles']:>12,.0f}"
                     f"{t['utilization']:>7.1%}{t['energy_pj']:>13,.4g}")
        lines.append(f"latency {t['latency_s'] * 1e3:.4g} ms at {self.accelerator.clock_mhz:g} MHz, "
                     f"energy {t['energy_pj'] / 1e6:.4g} uJ, area {t['area_mm2']:.3g} mm^2, "
                     f"{t['macs']:,.0f} MACs executed")
        return "\n".join(lines)


def _layer_rows(workload: Workload, costs: NetworkCosts) -> tuple[dict, ...]:
    lc = costs.layers
    rows = []
    for i, layer in enumerate(workload.layers):
        row = {
            "layer": layer.name,
            "kind": layer.kind,
            "dataflow": "simd" if layer.kind in VECTOR_KINDS else DATAFLOWS[int(lc.dataflow[0, i])],
            "cycles": float(lc.cycles[0, i]),
            "compute_cycles": float(lc.compute_cycles[0, i]),
            "stall_cycles": float(lc.stall_cycles[0, i]),
            "utilization": float(lc.utilization[0, i]),
            "macs": float(lc.macs[0, i]),
            "energy_pj": float(lc.energy[0, i].sum()),
            "dram_bytes": float(lc.dram_bytes[0, i]),
            "buffer_overflow": bool(lc.buffer_overflow[0, i] > 0),
        }
        row.update({f"accesses_{level}": float(v) for level, v in zip(LEVELS, lc.accesses[0, i])})
        row.update({f"energy_{level}_pj": float(v) for level, v in zip(LEVELS, lc.energy[0, i])})
        rows.append(row)
    return tuple(rows)


def _totals(workload: Workload, accelerator: Accelerator, costs: NetworkCosts) -> dict:
    """A report's totals: float64 sums of its rows, so they add up exactly and do not depend on
    the order in which the compiled program would sum float32 values."""
    layers = costs.layers
    column = lambda x: np.asarray(x[0], np.float64)
    cycles, compute = column(layers.cycles), column(layers.compute_cycles)
    energy = column(layers.energy).sum(0)
    on_array = np.asarray([layer.kind not in VECTOR_KINDS for layer in workload.layers])
    busy = (column(layers.utilization) * compute)[on_array].sum()
    total = {
        "cycles": cycles.sum(),
        "compute_cycles": compute.sum(),
        "stall_cycles": cycles.sum() - compute.sum(),
        "latency_s": cycles.sum() / (accelerator.clock_mhz * 1e6),
        "energy_pj": energy.sum(),
        "utilization": busy / max(cycles[on_array].sum(), 1.0),
        "area_mm2": costs.area_mm2[0],
        "macs": column(layers.macs).sum(),
        "dram_bytes": column(layers.dram_bytes).sum(),
    }
    total.update({f"energy_{level}_pj": v for level, v in zip(LEVELS, energy)})
    return {k: float(v) for k, v in total.items()}


def evaluate(workload: Workload | Iterable, accelerator: Accelerator, compute_only: bool = False) -> CostReport:
    """Per-layer and total costs of ``workload`` on ``accelerator``."""
    workload = as_workload(workload)
    costs = evaluate_batch(workload, [accelerator], compute_only=compute_only)
    return CostReport(workload, accelerator, _layer_rows(workload, costs), _totals(workload, accelerator, costs),
                      compute_only)
