"""Python-level entry points: evaluate a workload on one accelerator or a batch, get a report.

:func:`evaluate` returns a :class:`CostReport` (per-layer rows and totals, a printable
table, a JSON-ready dict); :func:`evaluate_batch` returns the raw
:class:`~cost_models.model.NetworkCosts` arrays for a whole accelerator grid.
Batches are padded to powers of two so the jitted function is reused.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import jax
import numpy as np

from cost_models.accelerator import Accelerator, AcceleratorParams, pad_batch, stack
from cost_models.dataflows import DATAFLOWS
from cost_models.energy import LEVELS
from cost_models.model import NetworkCosts, network_costs
from cost_models.workload import VECTOR_KINDS, Workload, as_workload, bucket_length


def evaluate_batch(workload: Workload, accelerators: Sequence[Accelerator] | AcceleratorParams,
                   compute_only: bool = False) -> NetworkCosts:
    """Costs of ``workload`` on every accelerator, as numpy arrays with a leading batch axis."""
    workload = as_workload(workload)
    params = accelerators if isinstance(accelerators, AcceleratorParams) else stack(accelerators)
    n = params.batch
    padded = pad_batch(params, bucket_length(n))
    out = network_costs(workload.arrays(), padded, compute_only=compute_only)
    n_layers = len(workload)
    out = jax.tree_util.tree_map(np.asarray, out)
    layers = out.layers._replace(**{k: v[:n, :n_layers] for k, v in out.layers._asdict().items()})
    return out._replace(**{k: v[:n] for k, v in out._asdict().items() if k != "layers"}, layers=layers)


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


def evaluate(workload: Workload | Iterable, accelerator: Accelerator, compute_only: bool = False) -> CostReport:
    """Per-layer and total costs of ``workload`` on ``accelerator``."""
    workload = as_workload(workload)
    costs = evaluate_batch(workload, [accelerator], compute_only=compute_only)
    total = {
        "cycles": float(costs.cycles[0]),
        "compute_cycles": float(costs.compute_cycles[0]),
        "stall_cycles": float(costs.stall_cycles[0]),
        "latency_s": float(costs.latency_s[0]),
        "energy_pj": float(costs.energy_pj[0]),
        "utilization": float(costs.utilization[0]),
        "area_mm2": float(costs.area_mm2[0]),
        "macs": float(costs.layers.macs[0].sum()),
        "dram_bytes": float(costs.layers.dram_bytes[0].sum()),
    }
    total.update({f"energy_{level}_pj": float(v) for level, v in zip(LEVELS, costs.energy_by_level[0])})
    return CostReport(workload, accelerator, _layer_rows(workload, costs), total, compute_only)
