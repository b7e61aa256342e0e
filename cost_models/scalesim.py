"""Read SCALE-Sim topology CSVs and ``.cfg`` files, and format them as text, with SCALE-Sim's meaning.

Topology rows are ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter
Width, Channels, Num Filter, Strides,``. SCALE-Sim takes the IFMAP as already
padded and computes the output as ``ceil((H - R + stride) / stride)``; a layer
whose name contains ``DP`` is depthwise (SCALE-Sim runs it channel by channel, each
channel with ``Num Filter`` filters). Words are one byte, so layers read from a
topology are 8-bit.

A cfg's three SRAMs (double buffered) together form the global buffer; in ``USER``
interface-bandwidth mode the ifmap/filter bank bandwidths are the DRAM-to-SRAM words
per cycle, in ``CALC`` mode bandwidth is unlimited (no stalls: compute only).
"""

from __future__ import annotations

import configparser
import dataclasses
import math
from pathlib import Path

from cost_models.accelerator import Accelerator
from cost_models.dataflows import SCALESIM_DATAFLOWS
from cost_models.workload import Layer, Workload, infer_kind

TOPOLOGY_HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                   "Channels", "Num Filter", "Strides")
#: Our dataflow -> the SCALE-Sim dataflow a cfg can express.
TO_SCALESIM = {"os_systolic": "os", "ws_systolic": "ws", "is_systolic": "is", "ws": "ws", "os": "os", "rs": "ws"}


class FormatError(ValueError):
    """A malformed SCALE-Sim file; the message names the file, the line and the field."""


def scalesim_output_size(size: int, kernel: int, stride: int) -> int:
    return math.ceil((size - kernel + stride) / stride)


def parse_topology(text: str, source: str = "<topology>", bits: int = 8) -> Workload:
    """A Workload from the text of a SCALE-Sim topology CSV."""
    layers = []
    lines = text.splitlines()
    header_seen = False
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if fields and fields[-1] == "":
            fields = fields[:-1]
        if not header_seen and fields and fields[0].lower().startswith("layer"):
            header_seen = True
            continue
        if len(fields) < len(TOPOLOGY_HEADER):
            raise FormatError(f"{source}, line {number}: expected {len(TOPOLOGY_HEADER)} fields "
                              f"({', '.join(TOPOLOGY_HEADER)}), got {len(fields)}: {raw!r}")
        name = fields[0]
        if not name:
            raise FormatError(f"{source}, line {number}: field 'Layer name' is empty")
        values = {}
        for label, value in zip(TOPOLOGY_HEADER[1:], fields[1:len(TOPOLOGY_HEADER)]):
            try:
                values[label] = int(value)
            except ValueError:
                raise FormatError(f"{source}, line {number}: field {label!r} must be a positive integer, got {value!r}") from None
            if values[label] < 1:
                raise FormatError(f"{source}, line {number}: field {label!r} must be a positive integer, got {values[label]}")
        H, W = values["IFMAP Height"], values["IFMAP Width"]
        R, S = values["Filter Height"], values["Filter Width"]
        C, K, stride = values["Channels"], values["Num Filter"], values["Strides"]
        if R > H or S > W:
            raise FormatError(f"{source}, line {number}: filter {R}x{S} is larger than the IFMAP {H}x{W}")
        groups = 1
        if "DP" in name:
            groups, K = C, C * K
        kind = "depthwise" if groups > 1 and K == C else infer_kind(C, K, H, W, R, S, groups)
        try:
            layers.append(Layer(name, kind, C, K, H, W, R, S, stride, 0, groups,
                                P=scalesim_output_size(H, R, stride), Q=scalesim_output_size(W, S, stride),
                                w_bits=bits, a_bits=bits))
        except ValueError as error:
            raise FormatError(f"{source}, line {number}: {error}") from None
    if not layers:
        raise FormatError(f"{source}: no layer rows found")
    try:
        return Workload(tuple(layers), Path(source).stem)
    except ValueError as error:
        raise FormatError(f"{source}: {error}") from None


def read_topology(path: str | Path, bits: int = 8) -> Workload:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"topology file not found: {path}")
    return parse_topology(path.read_text(), str(path), bits)


def format_topology(workload: Workload) -> str:
    """SCALE-Sim topology text for the array layers of ``workload`` (vector layers are skipped).

    The IFMAP written is the exact extent the outputs need, ``(P-1)*stride + R``, so
    SCALE-Sim derives the same output size; grouped (non-depthwise) layers become one
    row per group; depthwise layers get ``DP`` in their name.
    """
    rows = [", ".join(TOPOLOGY_HEADER) + ","]
    for layer in workload.layers:
        if layer.kind in ("pool", "eltwise"):
            continue
        H = (layer.P - 1) * layer.stride + layer.R
        W = (layer.Q - 1) * layer.stride + layer.S
        if layer.kind == "depthwise":
            name = layer.name if "DP" in layer.name else f"{layer.name}_DP"
            entries = [(name, layer.C, layer.K // layer.C)]
        elif layer.groups > 1:
            entries = [(f"{layer.name}_g{g}", layer.C // layer.groups, layer.K // layer.groups) for g in range(layer.groups)]
        else:
            entries = [(layer.name.replace("DP", "Dp"), layer.C, layer.K)]
        for name, C, K in entries:
            rows.append(f"{name}, {H}, {W}, {layer.R}, {layer.S}, {C}, {K}, {layer.stride},")
    return "\n".join(rows) + "\n"


@dataclasses.dataclass(frozen=True)
class ScaleSimConfig:
    """A cfg's accelerator, and whether its bandwidth mode is CALC (unlimited: compute only)."""

    accelerator: Accelerator
    calc_bandwidth: bool


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.split("=")[0].strip().lower() == key.lower():
            return number
    return None


def parse_config(text: str, source: str = "<config>") -> ScaleSimConfig:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source)
    except configparser.Error as error:
        raise FormatError(f"{source}: {error}") from None

    def get(section, key, kind=int, default=None):
        if not parser.has_option(section, key):
            if default is not None:
                return default
            raise FormatError(f"{source}: section [{section}] is missing {key!r}")
        raw = parser.get(section, key).strip()
        try:
            value = kind(raw)
        except ValueError:
            raise FormatError(f"{source}, line {_line_of(text, key)}: field {key!r} must be a number, got {raw!r}") from None
        if kind is not str and value <= 0:
            raise FormatError(f"{source}, line {_line_of(text, key)}: field {key!r} must be positive, got {raw!r}")
        return value

    arch = "architecture_presets"
    dataflow = get(arch, "Dataflow", str).lower()
    if dataflow not in SCALESIM_DATAFLOWS:
        raise FormatError(f"{source}, line {_line_of(text, 'Dataflow')}: field 'Dataflow' must be one of os, ws, is; got {dataflow!r}")
    mode = get("run_presets", "InterfaceBandwidth", str, default="CALC").upper()
    if mode not in ("CALC", "USER"):
        raise FormatError(f"{source}, line {_line_of(text, 'InterfaceBandwidth')}: field 'InterfaceBandwidth' must be CALC or USER; got {mode!r}")
    sram_kb = sum(get(arch, key, float) for key in ("IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB"))
    bandwidth_text = get(arch, "Bandwidth", str, default="10").split(",")[0]
    try:
        bandwidth = float(bandwidth_text)
    except ValueError:
        raise FormatError(f"{source}, line {_line_of(text, 'Bandwidth')}: field 'Bandwidth' must be a number, got {bandwidth_text!r}") from None
    if parser.has_option("layout", "IfmapSRAMBankBandwidth"):
        bandwidth = get("layout", "IfmapSRAMBankBandwidth", float)
    accelerator = Accelerator(
        rows=get(arch, "ArrayHeight"), cols=get(arch, "ArrayWidth"),
        dataflow=SCALESIM_DATAFLOWS[dataflow], gb_bytes=int(sram_kb * 1024), dram_bw=bandwidth,
        dram_latency=0.0, mac_bits=8, rf_bytes=1,
        name=parser.get("general", "run_name", fallback=Path(source).stem).strip(),
    )
    return ScaleSimConfig(accelerator, mode == "CALC")


def read_config(path: str | Path) -> ScaleSimConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return parse_config(path.read_text(), str(path))


def format_config(accelerator: Accelerator, calc_bandwidth: bool = False) -> str:
    """A SCALE-Sim v3 cfg for ``accelerator`` (the global buffer split into three equal SRAMs)."""
    dataflow = accelerator.dataflow
    if dataflow == "flex":
        dataflow = accelerator.flex_set[0]
    kb = max(1, accelerator.gb_bytes // 3 // 1024)
    bw = f"{accelerator.dram_bw:g}"
    note = "" if dataflow.endswith("_systolic") else f"; {accelerator.dataflow} has no SCALE-Sim equivalent: nearest systolic mapping\n"
    return f"""[general]
run_name = {accelerator.name}

{note}[architecture_presets]
ArrayHeight = {accelerator.rows}
ArrayWidth = {accelerator.cols}
IfmapSramSzkB = {kb}
FilterSramSzkB = {kb}
OfmapSramSzkB = {kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bw}
Dataflow = {TO_SCALESIM[dataflow]}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bw}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bw}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = {'CALC' if calc_bandwidth else 'USER'}
UseRamulatorTrace = False
"""
