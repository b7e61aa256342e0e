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

from cost_models.exports import lazy_exports

#: Public name -> its module, imported on first use (``import cost_models`` does not import JAX).
_EXPORTS = {name: module for module, names in {
    "cost_models.accelerator": ("Accelerator", "AcceleratorParams", "gbps_to_bytes_per_cycle", "grid", "stack"),
    "cost_models.dataflows": ("ALL_DATAFLOW_NAMES", "DATAFLOWS", "FLEX", "describe"),
    "cost_models.dispatch": ("LayerCosts", "NetworkCosts", "costs_over_accelerators", "costs_over_networks"),
    "cost_models.energy": ("ENERGY_TABLES", "LEVELS"),
    "cost_models.evaluation": ("CostReport", "evaluate", "evaluate_batch"),
    "cost_models.onnx_import": ("ImportReport", "OnnxImportError", "UnsupportedOperators", "from_onnx", "import_onnx"),
    "cost_models.scalesim_memory": ("MEMORY_MODES", "OperandMemories", "operand_buffer_cycles", "scalesim_user_cycles"),
    "cost_models.workload": ("KINDS", "Layer", "LayerArrays", "Workload", "conv", "eltwise", "fc", "pool"),
}.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
