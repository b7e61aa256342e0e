"""Python-level entry points: evaluate a workload on one accelerator or a batch, get a report.

:func:`evaluate` returns a :class:`CostReport` (per-layer rows and totals, a printable
table, a JSON-ready dict); :func:`evaluate_batch` returns the raw
:class:`~cost_models.dispatch.NetworkCosts` arrays for a whole accelerator grid.
Batches are split and padded to powers of two by
:func:`~cost_models.dispatch.costs_over_accelerators`, so the jitted function is reused.

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
import functools
from typing import Iterable, Sequence

import numpy as np

from cost_models.accelerator import MAX_GB_BYTES, Accelerator, AcceleratorParams, stack
from cost_models.dataflows import DATAFLOWS, SCALESIM_DATAFLOWS
from cost_models.dispatch import NetworkCosts, costs_over_accelerators
from cost_models.energy import LEVELS
from cost_models.energy_files import describe_energy_table, energy_source
from cost_models.physics import utilization
from cost_models.scalesim import ScaleSimGeometry, operand_memories, scalesim_dataflow, scalesim_geometry, word_bits_of
from cost_models.scalesim_memory import (DATAFLOWS as SCALESIM_DATAFLOW_NAMES, MEMORY_MODES, OperandMemories,
                                         ScaleSimLayerCycles, operand_buffer_cycles, scalesim_user_cycles)
from cost_models.text import column_width, fit
from cost_models.workload import VECTOR_KINDS, Workload, as_workload


#: The table's line on what a memory mode other than the default changes.
MEMORY_NOTES = {
    "scalesim_user": "memory scalesim_user: array layers timed by SCALE-Sim 3.0.0's USER-mode memory system "
                     "(its Total Cycles, without the initial fill and final drain); energy and DRAM bytes are "
                     "the global-buffer model's",
    "operand_buffers": "memory operand_buffers: array layers timed with per-operand SRAMs and DRAM channels and a "
                       "controller that re-fetches only what does not fit (fill and drain included); energy and "
                       "DRAM bytes are the global-buffer model's",
}


def _check_memory(memory: str, memories: OperandMemories | None, compute_only: bool, accelerators) -> None:
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be one of {', '.join(MEMORY_MODES)}; got {memory!r}")
    if memory == "global_buffer":
        if memories is not None:
            raise ValueError("memories= (per-operand SRAMs and channels) applies to the scalesim_user and "
                             "operand_buffers memory modes only")
        return
    if compute_only:
        raise ValueError(f"compute_only=True leaves memory out; it cannot be combined with memory={memory!r}")
    if memories is not None and not isinstance(memories, OperandMemories):
        raise ValueError(f"memories must be an OperandMemories, got {type(memories).__name__}")
    if isinstance(accelerators, AcceleratorParams):
        raise ValueError(f"memory={memory!r} needs the accelerators as Accelerator objects, not stacked parameters")
    for accelerator in accelerators:
        if accelerator.dataflow not in SCALESIM_DATAFLOWS.values():
            raise ValueError(f"memory={memory!r} times SCALE-Sim's systolic arrays: the dataflow must be one of "
                             f"{', '.join(SCALESIM_DATAFLOWS.values())}; accelerator {accelerator.name!r} has "
                             f"{accelerator.dataflow!r}")


@functools.lru_cache(maxsize=65536)
def _scalesim_user(geometry: ScaleSimGeometry, rows: int, cols: int, dataflow: str,
                   memories: OperandMemories) -> ScaleSimLayerCycles:
    """One layer's SCALE-Sim USER-mode replay, remembered (a search meets the same layer shapes again)."""
    H, W, R, S, C, K, stride, groups = geometry
    return scalesim_user_cycles(H, W, R, S, C, K, stride, rows, cols, dataflow, memories, groups)


def _memories_of(workload: Workload, accelerator: Accelerator, memories: OperandMemories | None) -> OperandMemories:
    """The SRAMs and channels a memory mode uses: ``memories`` if given, else those of the accelerator's cfg."""
    return memories or operand_memories(accelerator, word_bits_of(workload)[0])


def _memory_mode_layers(workload: Workload, accelerators: Sequence[Accelerator], memory: str,
                        memories: OperandMemories | None) -> dict[str, np.ndarray]:
    """Per accelerator and array layer (NaN on vector layers): the memory mode's cycles, compute cycles,
    SCALE-Sim dataflow code and DRAM words, as [batch, layers] arrays."""
    on_array = [i for i, layer in enumerate(workload.layers) if layer.kind not in VECTOR_KINDS]
    geometries = [scalesim_geometry(workload.layers[i]) for i in on_array]
    per_accelerator = [_memories_of(workload, a, memories) for a in accelerators]
    dataflows = [scalesim_dataflow(a) for a in accelerators]
    keys = ("cycles", "compute_cycles", "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")
    if memory == "scalesim_user":
        values = {key: np.asarray([[getattr(_scalesim_user(g, a.rows, a.cols, df, mem), name) for g in geometries]
                                   for a, df, mem in zip(accelerators, dataflows, per_accelerator)], np.float64)
                  for key, name in zip(keys, ("total_cycles", *keys[1:]))}
    else:  # closed form: one call over [accelerators, layers]
        layer_columns = np.asarray(geometries, np.float64).reshape(-1, 8).T[:, None, :]
        column = lambda values: np.asarray(values, np.float64)[:, None]
        mem = {field: column([getattr(m, field) for m in per_accelerator])
               for field in OperandMemories.__dataclass_fields__}
        result = operand_buffer_cycles(*layer_columns[:7], column([a.rows for a in accelerators]),
                                       column([a.cols for a in accelerators]),
                                       column([SCALESIM_DATAFLOW_NAMES.index(df) for df in dataflows]), mem,
                                       layer_columns[7])
        values = dict(zip(keys, result))
    out = {}
    for key in keys:
        out[key] = np.full((len(accelerators), len(workload)), np.nan)
        out[key][:, on_array] = np.broadcast_to(values[key], (len(accelerators), len(on_array)))
    out["dataflow"] = np.full((len(accelerators), len(workload)), np.nan)
    out["dataflow"][:, on_array] = np.asarray([[DATAFLOWS.index(SCALESIM_DATAFLOWS[df])] for df in dataflows])
    return out


def _with_memory_mode(accelerators: Sequence[Accelerator], costs: NetworkCosts,
                      timing: dict[str, np.ndarray]) -> NetworkCosts:
    """``costs`` with the array layers' cycles (and the totals that follow from them) of a memory mode."""
    layers = costs.layers
    on_array = ~np.isnan(timing["cycles"][0])
    cycles = np.where(on_array, timing["cycles"], np.asarray(layers.cycles, np.float64))
    compute = np.where(on_array, timing["compute_cycles"], np.asarray(layers.compute_cycles, np.float64))
    pes = np.asarray([[a.rows * a.cols] for a in accelerators], np.float64)
    macs = np.asarray(layers.macs, np.float64)
    per_layer = np.where(on_array, utilization(macs, pes * np.maximum(compute, 1.0)),
                         np.asarray(layers.utilization, np.float64))
    dataflow = np.where(on_array, timing["dataflow"], np.asarray(layers.dataflow)).astype(np.int32)
    clock_hz = np.asarray([a.clock_mhz * 1e6 for a in accelerators])
    busy = (per_layer * compute * on_array).sum(1) * pes[:, 0]
    new_layers = layers._replace(cycles=cycles, compute_cycles=compute, stall_cycles=cycles - compute,
                                 utilization=per_layer, dataflow=dataflow)
    return costs._replace(cycles=cycles.sum(1), compute_cycles=compute.sum(1), stall_cycles=(cycles - compute).sum(1),
                          latency_s=cycles.sum(1) / clock_hz,
                          utilization=utilization(busy, pes[:, 0] * np.maximum((cycles * on_array).sum(1), 1.0)),
                          layers=new_layers)


def _accelerator_list(accelerators) -> list[Accelerator]:
    """``accelerators`` (one or an iterable of them) as a list; a ValueError for anything else."""
    if isinstance(accelerators, Accelerator):
        return [accelerators]
    listed = list(accelerators) if isinstance(accelerators, Iterable) and not isinstance(accelerators,
                                                                                          (str, bytes)) else None
    wrong = accelerators if listed is None else next((a for a in listed if not isinstance(a, Accelerator)), None)
    if listed is None or wrong is not None:
        raise ValueError(f"accelerators must be Accelerator objects or an AcceleratorParams batch (e.g. "
                         f"[Accelerator(rows=16, cols=16)]), got {wrong!r}")
    return listed


def evaluate_batch(workload: Workload, accelerators: Sequence[Accelerator] | AcceleratorParams,
                   compute_only: bool = False, per_layer: bool = True, memory: str = "global_buffer",
                   memories: OperandMemories | None = None) -> NetworkCosts:
    """Costs of ``workload`` on every accelerator, as numpy arrays with a leading batch axis.

    ``per_layer=False`` returns the totals only (``layers`` is None), which is faster.
    ``unmappable_layers`` [batch] counts the layers that fit no tiling of each design's global
    buffer (per layer: ``layers.buffer_overflow``); a design with any is not buildable as
    costed, so a caller ranking designs should treat it as infeasible.

    ``memory`` (one of :data:`MEMORY_MODES`) times the array layers' memory system; the modes
    other than ``global_buffer`` replace their cycles (and the totals that follow); they need
    SCALE-Sim's systolic dataflows (os, ws, is_systolic); energy and DRAM bytes stay those of the
    global-buffer model. ``memories`` gives the per-operand SRAMs and channels; by default
    they are those of the accelerator's SCALE-Sim cfg (:func:`~cost_models.scalesim.operand_memories`).
    """
    workload = as_workload(workload)
    if not isinstance(accelerators, AcceleratorParams):
        accelerators = _accelerator_list(accelerators)
    _check_memory(memory, memories, compute_only, accelerators)
    params = accelerators if isinstance(accelerators, AcceleratorParams) else stack(accelerators)
    wants_layers = per_layer or memory != "global_buffer"
    out = costs_over_accelerators(workload.arrays(), params, compute_only=compute_only, per_layer=wants_layers)
    if out.layers is None:
        return out
    n_layers = len(workload)
    out = out._replace(layers=out.layers._replace(**{k: np.asarray(v)[:, :n_layers]
                                                     for k, v in out.layers._asdict().items()}))
    if memory != "global_buffer":
        accelerators = list(accelerators)
        out = _with_memory_mode(accelerators, out, _memory_mode_layers(workload, accelerators, memory, memories))
    return out if per_layer else out._replace(layers=None)


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
    memory: str = "global_buffer"  #: the memory mode that timed the array layers (MEMORY_MODES)
    memories: OperandMemories | None = None  #: its SRAMs and channels (None for global_buffer)

    def to_dict(self) -> dict:
        """``{"layers": [...], "total": {...}, "energy_table": {...}}`` (what priced the energy:
        :func:`~cost_models.energy_files.energy_source`), and ``"memory"`` (the mode and its SRAMs and channels) when the
        array layers were timed by a mode other than ``global_buffer``."""
        out = {"layers": list(self.layers), "total": dict(self.total),
               "energy_table": energy_source(self.accelerator.energy_table, self.accelerator.dram_type)}
        if self.memory != "global_buffer":
            out["memory"] = {"mode": self.memory, **dataclasses.asdict(self.memories)}
        return out

    @property
    def unmappable(self) -> tuple[dict, ...]:
        """The rows of layers that fit no tiling of the global buffer."""
        return tuple(row for row in self.layers if row.get("buffer_overflow"))

    def table(self) -> str:
        width = column_width((row["layer"] for row in self.layers), 18)
        head = (f"{fit('layer', width)}{'kind':<10}{'dataflow':<12}{'cycles':>12}{'compute':>12}{'stall':>12}"
                f"{'util':>7}{'energy_pj':>13}")
        lines = [head, "-" * len(head)]
        for row in self.layers:
            mark = f" {UNMAPPABLE_MARK}" if row.get("buffer_overflow") else ""
            lines.append(f"{fit(row['layer'], width)}{row['kind']:<10}{row['dataflow']:<12}{_count(row['cycles'])}"
                         f"{_count(row['compute_cycles'])}{_count(row['stall_cycles'])}{row['utilization']:>7.1%}"
                         f"{row['energy_pj']:>13,.4g}{mark}")
        t = self.total
        lines.append("-" * len(head))
        lines.append(f"{'total':<{width + 22}}{_count(t['cycles'])}{_count(t['compute_cycles'])}{_count(t['stall_cycles'])}"
                     f"{t['utilization']:>7.1%}{t['energy_pj']:>13,.4g}")
        lines.append(f"latency {t['latency_s'] * 1e3:.4g} ms at {self.accelerator.clock_mhz:g} MHz, "
                     f"energy {t['energy_pj'] / 1e6:.4g} uJ, area {t['area_mm2']:.3g} mm^2, "
                     f"{t['macs']:,.0f} MACs executed")
        lines.append(f"energy priced by "
                     f"{describe_energy_table(self.accelerator.energy_table, self.accelerator.dram_type)}")
        if self.unmappable:
            lines.append(f"{UNMAPPABLE_MARK} {self.unmappable_note()}")
        if self.memory != "global_buffer":
            lines.append(MEMORY_NOTES[self.memory])
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
    busy = (column(layers.utilization) * compute)[on_array].sum()  # in whole-array cycles
    total = {
        "cycles": cycles.sum(),
        "compute_cycles": compute.sum(),
        "stall_cycles": cycles.sum() - compute.sum(),
        "latency_s": cycles.sum() / (accelerator.clock_mhz * 1e6),
        "energy_pj": energy.sum(),
        "utilization": utilization(busy, max(cycles[on_array].sum(), 1.0)),
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


def evaluate(workload: Workload | Iterable, accelerator: Accelerator, compute_only: bool = False,
             memory: str = "global_buffer", memories: OperandMemories | None = None) -> CostReport:
    """Per-layer and total costs of ``workload`` on ``accelerator`` (unmappable layers flagged: see the module).

    ``memory`` and ``memories``: as in :func:`evaluate_batch`. In the modes other than
    ``global_buffer`` each array layer's row also says the DRAM words the mode moves
    (``ifmap_dram_reads``, ``filter_dram_reads``, ``ofmap_dram_writes``).
    """
    workload = as_workload(workload)
    if not isinstance(accelerator, Accelerator):
        raise ValueError(f"accelerator must be an Accelerator (e.g. Accelerator(rows=16, cols=16) or "
                         f"Accelerator.from_file('accelerator.json')), got {accelerator!r}")
    _check_memory(memory, memories, compute_only, [accelerator])
    costs = evaluate_batch(workload, [accelerator], compute_only=compute_only)
    if memory != "global_buffer":
        timing = _memory_mode_layers(workload, [accelerator], memory, memories)
        costs = _with_memory_mode([accelerator], costs, timing)
    rows = _buffer_needed(workload, accelerator, _layer_rows(workload, costs))
    if memory != "global_buffer":
        words = ("ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")
        rows = tuple({**row, **{key: float(timing[key][0, i]) for key in words}} if row["dataflow"] != "simd" else row
                     for i, row in enumerate(rows))
    used = None if memory == "global_buffer" else _memories_of(workload, accelerator, memories)
    return CostReport(workload, accelerator, rows, _totals(workload, accelerator, costs), compute_only, memory, used)
