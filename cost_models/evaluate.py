"""Python-level entry points: evaluate a workload on one accelerator or a batch, get a report.

:func:`evaluate` returns a :class:`CostReport` (per-layer rows and totals, a printable
table, a JSON-ready dict); :func:`evaluate_batch` returns the raw
:class:`~cost_models.model.NetworkCosts` arrays for a whole accelerator grid.
Batches are split and padded to powers of two by :func:`~cost_models.model.network_costs`,
so the jitted function is reused.

Unmappable layers. A layer that fits no tiling of the global buffer (even the finest
does not fit) is costed with the least-traffic tiling, which does not fit: its numbers
can look plausible, but the design cannot run it so. The cost model never raises for it
(a search evaluates millions of designs; such a design is a flagged one): it is
``NetworkCosts.unmappable_layers`` (a count per design, also with ``per_layer=False``)
and ``LayerCosts.buffer_overflow`` (1.0 per such layer); in a :class:`CostReport`, the
rows' ``buffer_overflow`` and ``buffer_needed_bytes``, ``total["unmappable_layers"]``,
and a marker and a note in :meth:`CostReport.table`.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from cost_models.accelerator import MAX_GB_BYTES, Accelerator, AcceleratorParams, stack
from cost_models.dataflows import DATAFLOWS
from cost_models.energy import LEVELS
from cost_models.model import NetworkCosts, network_costs
from cost_models.workload import VECTOR_KINDS, Workload, as_workload


def evaluate_batch(workload: Workload, accelerators: Sequence[Accelerator] | AcceleratorParams,
                   compute_only: bool = False, per_layer: bool = True) -> NetworkCosts:
    """Costs of ``workload`` on every accelerator, as numpy arrays with a leading batch axis.

    ``per_layer=False`` returns the totals only (``layers`` is None), which is faster.
    ``unmappable_layers`` [batch] counts the layers that fit no tiling of each design's global
    buffer (per layer: ``layers.buffer_overflow``); a design with any is not buildable as
    costed, so a caller ranking designs should treat it as infeasible.
    """
    workload = as_workload(workload)
    params = accelerators if isinstance(accelerators, AcceleratorParams) else stack(accelerators)
    out = network_costs(workload.arrays(), params, compute_only=compute_only, per_layer=per_layer)
    if out.layers is None:
        return out
    n_layers = len(workload)
    return out._replace(layers=out.layers._replace(**{k: v[:, :n_layers] for k, v in out.layers._asdict().items()}))


#: The table's mark on a layer that fits no tiling of the global buffer.
UNMAPPABLE_MARK = "!"


def _count(x: float) -> str:
    """A cycle count in the table's 12 characters: with thousands separators, or ``1.234e+15`` when too long."""
    return f"{x:>12,.0f}" if abs(x) < 1e9 else f"{x:>12.4g}"  # 999,999,999 is the longest that fits


def format_bytes(n: float) -> str:
    """``512 B``, ``64 KiB``, ``1.5 MiB``, ``4 GiB``."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:g} {unit}"
        n /= 1024
    return f"{n:g} GiB"


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Per-layer and total costs of one workload on one accelerator.

    ``total["unmappable_layers"]`` (present only when it is not 0, so reports of designs
    that fit keep their keys; read it with ``total.get("unmappable_layers", 0)``) counts the
    layers that fit no tiling of the global buffer; their rows say ``buffer_overflow`` and
    ``buffer_needed_bytes`` (the smallest power-of-two buffer they fit, None if even
    :data:`~cost_models.accelerator.MAX_GB_BYTES` is too small; None on rows that fit).
    """

    workload: Workload
    accelerator: Accelerator
    layers: tuple[dict, ...]
    total: dict
    compute_only: bool = False

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "total": dict(self.total)}

    @property
    def unmappable(self) -> tuple[dict, ...]:
        """The rows of layers that fit no tiling of the global buffer."""
        return tuple(row for row in self.layers if row.get("buffer_overflow"))

    def table(self) -> str:
        head = f"{'layer':<18}{'kind':<10}{'dataflow':<12}{'cycles':>12}{'compute':>12}{'stall':>12}{'util':>7}{'energy_pj':>13}"
        lines = [head, "-" * len(head)]
        for row in self.layers:
            mark = f" {UNMAPPABLE_MARK}" if row.get("buffer_overflow") else ""
            lines.append(f"{row['layer']:<18.18}{row['kind']:<10}{row['dataflow']:<12}{_count(row['cycles'])}"
                         f"{_count(row['compute_cycles'])}{_count(row['stall_cycles'])}{row['utilization']:>7.1%}"
                         f"{row['energy_pj']:>13,.4g}{mark}")
        t = self.total
        lines.append("-" * len(head))
        lines.append(f"{'total':<40}{_count(t['cycles'])}{_count(t['compute_cycles'])}{_count(t['stall_cycles'])}"
                     f"{t['utilization']:>7.1%}{t['energy_pj']:>13,.4g}")
        lines.append(f"latency {t['latency_s'] * 1e3:.4g} ms at {self.accelerator.clock_mhz:g} MHz, "
                     f"energy {t['energy_pj'] / 1e6:.4g} uJ, area {t['area_mm2']:.3g} mm^2, "
                     f"{t['macs']:,.0f} MACs executed")
        if self.unmappable:
            lines.append(f"{UNMAPPABLE_MARK} {self.unmappable_note()}")
        return "\n".join(lines)

    def unmappable_note(self) -> str:
        """The line under the totals naming the layers that fit no tiling, and the buffer each needs."""
        def need(row):
            if "buffer_needed_bytes" not in row:  # a report stored before rows said it
                return row["layer"]
            size = row["buffer_needed_bytes"]
            return f"{row['layer']} (needs {format_bytes(size) if size else f'more than {format_bytes(MAX_GB_BYTES)}'})"
        rows = self.unmappable
        return (f"{len(rows)} {'layer fits' if len(rows) == 1 else 'layers fit'} no tiling of the "
                f"{format_bytes(self.accelerator.gb_bytes)} global buffer, so these numbers are not buildable "
                f"(costed with the least-traffic tiling, which does not fit): {', '.join(map(need, rows))}")


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
            "buffer_needed_bytes": None,
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
    total = {k: float(v) for k, v in total.items()}
    unmappable = int(np.count_nonzero(np.asarray(layers.buffer_overflow[0]) > 0))
    if unmappable:  # only then: the totals of designs that fit keep their keys (and stored digests)
        total["unmappable_layers"] = unmappable
    return total


#: The buffer sizes tried for an unmappable layer: every power of two up to MAX_GB_BYTES (always the same
#: 32, so the batched call has one shape and compiles once).
_BUFFER_SIZES = tuple(1 << k for k in range(1, MAX_GB_BYTES.bit_length()))


def _buffer_needed(workload: Workload, accelerator: Accelerator, rows: tuple[dict, ...]) -> tuple[dict, ...]:
    """``rows`` with ``buffer_needed_bytes`` of each unmappable layer: the smallest power-of-two global buffer
    larger than the accelerator's that it fits (up to MAX_GB_BYTES), None if none; one batched evaluation."""
    names = {row["layer"] for row in rows if row["buffer_overflow"]}
    if not names:
        return rows
    unmappable = Workload(tuple(layer for layer in workload.layers if layer.name in names), workload.name)
    on_sizes = evaluate_batch(unmappable, [accelerator.replace(gb_bytes=size) for size in _BUFFER_SIZES])
    fits = on_sizes.layers.buffer_overflow == 0
    needed = {layer.name: next((size for size, ok in zip(_BUFFER_SIZES, fits[:, i]) if ok and size > accelerator.gb_bytes),
                               None)
              for i, layer in enumerate(unmappable.layers)}
    return tuple({**row, "buffer_needed_bytes": needed[row["layer"]]} if row["layer"] in needed else row
                 for row in rows)


def evaluate(workload: Workload | Iterable, accelerator: Accelerator, compute_only: bool = False) -> CostReport:
    """Per-layer and total costs of ``workload`` on ``accelerator`` (unmappable layers flagged: see the module)."""
    workload = as_workload(workload)
    costs = evaluate_batch(workload, [accelerator], compute_only=compute_only)
    rows = _buffer_needed(workload, accelerator, _layer_rows(workload, costs))
    return CostReport(workload, accelerator, rows, _totals(workload, accelerator, costs), compute_only)
