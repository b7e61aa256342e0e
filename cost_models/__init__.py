"""cost_models: the analytical PE-array cost model (pure JAX).

Workload + accelerator -> cycles (compute and stall), utilisation, accesses and
energy per memory level, per layer and in total, plus area. One jitted call
evaluates a network on a whole batch of accelerators.

    from cost_models import Accelerator, evaluate, conv, Workload
    wl = Workload((conv("c1", 3, 64, 224, R=7, stride=2, padding=3),))
    report = evaluate(wl, Accelerator(rows=32, cols=32, dataflow="flex"))
    print(report.table())

``evaluate(..., memory="scalesim_user")`` times the array layers as SCALE-Sim 3.0.0's USER
mode does (replayed exactly), ``memory="operand_buffers"`` with the same three SRAMs and
channels and a sensible controller (:mod:`cost_models.scalesim_memory`).

ONNX models import with ``Workload.from_onnx("model.onnx")`` (or :func:`import_onnx`,
which also says what was skipped); that needs the optional ``onnx`` package.
"""

from cost_models.accelerator import Accelerator, AcceleratorParams, gbps_to_bytes_per_cycle, grid, stack
from cost_models.dataflows import ALL_DATAFLOW_NAMES, DATAFLOWS, FLEX, describe
from cost_models.dispatch import LayerCosts, NetworkCosts, costs_over_accelerators, costs_over_networks
from cost_models.energy import ENERGY_TABLES, LEVELS
from cost_models.evaluate import MEMORY_MODES, CostReport, evaluate, evaluate_batch
from cost_models.onnx_import import ImportReport, OnnxImportError, UnsupportedOperators, from_onnx, import_onnx
from cost_models.scalesim_memory import OperandMemories, operand_buffer_cycles, scalesim_user_cycles
from cost_models.workload import KINDS, Layer, LayerArrays, Workload, conv, eltwise, fc, pool

__all__ = [
    "Accelerator", "AcceleratorParams", "gbps_to_bytes_per_cycle", "grid", "stack",
    "ALL_DATAFLOW_NAMES", "DATAFLOWS", "FLEX", "describe", "ENERGY_TABLES", "LEVELS",
    "CostReport", "evaluate", "evaluate_batch", "MEMORY_MODES", "OperandMemories", "operand_buffer_cycles",
    "scalesim_user_cycles", "LayerCosts", "NetworkCosts", "costs_over_accelerators",
    "costs_over_networks", "ImportReport", "OnnxImportError", "UnsupportedOperators", "from_onnx", "import_onnx", "KINDS", "Layer", "LayerArrays", "Workload", "conv", "eltwise", "fc", "pool",
]
