"""Read and write SCALE-Sim v3 topology CSVs and ``.cfg`` files, with SCALE-Sim's meaning.

Units. SCALE-Sim 3.0.0 moves one element per word and fixes a word at one byte
(``single_layer_sim.py``: ``word_size = 1``): an ``N`` kB SRAM holds ``N*1024`` elements,
and ``Bandwidth`` / ``IfmapSRAMBankBandwidth`` / ``FilterSRAMBankBandwidth`` are elements
(words) per cycle, integers. So a plain SCALE-Sim pair reads as 8-bit layers on an
accelerator whose buffer and DRAM bandwidth are those numbers in bytes. Written files
count words of ``word_bits`` bits (the network's widest operand on export), so SCALE-Sim
sees the design's element capacity and element rate.

Topology rows are ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width,
Channels, Num Filter, Strides,`` and, in v3, ``Sparsity,``: ``N:M``, N non-zero weights
in every M, read as the layer's weight density N/M. SCALE-Sim takes the IFMAP as already
padded and computes the output as ``ceil((H - R + stride) / stride)``; a layer whose name
contains ``DP`` is depthwise (SCALE-Sim runs it channel by channel, each channel with
``Num Filter`` filters).

SCALE-Sim ignores the text after a row's last comma (it keeps ``row.split(',')[:-1]``)
and the whole first line, but fails on comment lines. So what it cannot express goes
there, after ``# codesign:``: ``KEY=VALUE`` fields of the row's :class:`Layer` that differ
from what the row says (bit widths always; exact input size and padding, the name, kind,
groups, an exact weight density), then, after ``|``, each pooling or element-wise layer
that follows the row (on the header line: those before the first row). A grouped
convolution is one SCALE-Sim row per group; the rows after the first say
``part_of=NAME``. :func:`format_topology` writes these so that :func:`parse_topology`
gives back the same workload.

A cfg's three SRAMs (double buffered) together form the global buffer; in ``USER``
interface-bandwidth mode the ifmap bank bandwidth is the DRAM-to-SRAM words per cycle,
in ``CALC`` mode bandwidth is unlimited (no stalls: compute only). The three SRAMs and
the three USER-mode channels as SCALE-Sim reads them (ifmap and filter: the ``[layout]``
bank bandwidths; ofmap: ``Bandwidth``) are also kept, as ``ScaleSimConfig.memories``,
for the memory modes of :mod:`cost_models.scalesim_memory`; SCALE-Sim's
``SparsitySupport`` is the accelerator skipping zero weights. SCALE-Sim reads only its own
sections, so a ``[codesign]`` section holds the exact accelerator (every
:class:`Accelerator` field, JSON values, and ``word_bits``): a cfg with it reads back as
that accelerator, and is refused when SCALE-Sim's keys no longer match it.

Bad input is one :class:`FormatError` (a ValueError) naming the file, the line and the
field as the file names it (``IFMAP Height``, ``ArrayHeight``, ``Bandwidth``), with the
allowed values: the ranges are those of :class:`Layer` and :class:`Accelerator`
(:data:`TOPOLOGY_LIMITS`; a cfg's ``ArrayHeight``/``ArrayWidth`` up to
:data:`~cost_models.accelerator.MAX_ARRAY_SIDE`, its three SRAMs together up to
:data:`~cost_models.accelerator.MAX_GB_BYTES`, ``Bandwidth`` from
:data:`~cost_models.accelerator.MIN_DRAM_BW` to :data:`~cost_models.accelerator.MAX_DRAM_BW`).
Files are read as UTF-8, with or without a byte-order mark; anything else is "not a text file".
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple, Sequence
from urllib.parse import quote, unquote

from cost_models.accelerator import (MAX_ARRAY_SIDE, MAX_DRAM_BW, MAX_GB_BYTES, MIN_DRAM_BW, Accelerator)
from cost_models.dataflows import FLEX, SCALESIM_DATAFLOWS, describe
from cost_models.scalesim_memory import OperandMemories
from cost_models.specs import FormatError, read_text
from cost_models.workload import MAX_CHANNELS, MAX_MAP, VECTOR_KINDS, Layer, Workload, conv_output_size, infer_kind

TOPOLOGY_HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                   "Channels", "Num Filter", "Strides")
#: SCALE-Sim v3's optional ninth topology column.
SPARSITY = "Sparsity"
#: Our dataflow -> the SCALE-Sim dataflow a cfg can express.
TO_SCALESIM = {"os_systolic": "os", "ws_systolic": "ws", "is_systolic": "is", "ws": "ws", "os": "os", "rs": "ws"}
#: The largest M of a written Sparsity ratio N:M (the smallest weight density codesign keeps is 1e-3).
MAX_SPARSITY_BLOCK = 1000
#: A comment that starts with this holds what codesign reads and SCALE-Sim cannot.
ANNOTATION = "codesign:"
#: The cfg section with the exact accelerator (SCALE-Sim reads only its own sections).
CODESIGN_SECTION = "codesign"
#: A header-only SCALE-Sim layout file: SCALE-Sim 3 needs one, with custom layouts off it reads nothing from it.
EMPTY_LAYOUT = "Layer name,\n"


#: Topology column -> its largest value (the Layer field it gives: H, W, R, S, C, K, stride; all start at 1).
TOPOLOGY_LIMITS = {"IFMAP Height": MAX_MAP, "IFMAP Width": MAX_MAP, "Filter Height": MAX_MAP, "Filter Width": MAX_MAP,
                   "Channels": MAX_CHANNELS, "Num Filter": MAX_CHANNELS, "Strides": MAX_MAP}
#: Accelerator field -> the cfg key(s) it is read from (for errors that name the field).
CONFIG_KEYS = {"rows": "ArrayHeight", "cols": "ArrayWidth", "gb_bytes": "IfmapSramSzkB",
               "dram_bw": "Bandwidth", "dataflow": "Dataflow", "name": "run_name"}

# FormatError (a ValueError naming the file, line and field) is cost_models.specs', shared with the JSON readers.


def scalesim_output_size(size: int, kernel: int, stride: int) -> int:
    return math.ceil((size - kernel + stride) / stride)


# --- topology ---------------------------------------------------------------------------------

def parse_sparsity(text: str, where: str = "<topology>") -> float:
    """The weight density N/M of a SCALE-Sim v3 Sparsity entry ``N:M`` (1 <= N <= M)."""
    numbers = text.split(":")
    try:
        n, m = (int(x) for x in numbers)
    except ValueError:
        n = m = 0
    if len(numbers) != 2 or not 1 <= n <= m:
        raise FormatError(f"{where}: field {SPARSITY!r} must be N:M with integers 1 <= N <= M (non-zero weights "
                          f"N of every M, e.g. 1:1 dense, 2:4), got {text!r}; a SCALE-Sim v2 ninth column "
                          f"(stride width) is not read")
    return n / m


def format_sparsity(density: float) -> str:
    """The Sparsity entry N:M (M <= :data:`MAX_SPARSITY_BLOCK`) equal to ``density``, or ``1:1`` if none is."""
    ratio = Fraction(density).limit_denominator(MAX_SPARSITY_BLOCK)
    if ratio.numerator < 1 or not math.isclose(ratio, density, rel_tol=1e-9):
        return "1:1"
    return f"{ratio.numerator}:{ratio.denominator}"


_LAYER_FIELDS = tuple(f.name for f in dataclasses.fields(Layer))
_TEXT_FIELDS = ("name", "kind", "w_source", "part_of")


def _format_fields(fields: dict) -> str:
    """``KEY=VALUE`` tokens; text is percent-encoded so it holds no space, comma, ``|`` or ``#``."""
    def text(value):
        if isinstance(value, str):
            return quote(value, safe="")
        return repr(float(value)) if isinstance(value, float) else str(int(value))

    return " ".join(f"{key}={text(value)}" for key, value in fields.items())


def _parse_fields(text: str, where: str) -> dict:
    allowed = _LAYER_FIELDS + ("part_of",)
    out = {}
    for token in text.split():
        key, eq, value = token.partition("=")
        if not eq or key not in allowed or key in out:
            problem = f"repeats {key!r}" if key in out else f"has {token!r}"
            raise FormatError(f"{where}: the codesign annotation {problem}; it takes KEY=VALUE once per key, "
                              f"KEY one of {', '.join(allowed)}")
        kind = str if key in _TEXT_FIELDS else float if key == "w_density" else int
        try:
            out[key] = unquote(value) if kind is str else kind(value)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise FormatError(f"{where}: codesign field {key!r} must be {what}, got {value!r}") from None
    return out


def _annotation(comment: str, where: str) -> list[dict]:
    """The parts of a ``# codesign: own | layer | layer`` comment (the row's fields, then following layers)."""
    text = comment.strip()
    if not text.startswith(ANNOTATION):
        return []
    return [_parse_fields(part, where) for part in text[len(ANNOTATION):].split("|")]


def _row_layer(fields: Sequence[str], where: str, bits: int) -> Layer:
    """The layer a topology row means to SCALE-Sim (fields as strings, without the trailing empty one)."""
    if not len(TOPOLOGY_HEADER) <= len(fields) <= len(TOPOLOGY_HEADER) + 1:
        raise FormatError(f"{where}: expected {len(TOPOLOGY_HEADER)} fields ({', '.join(TOPOLOGY_HEADER)}) "
                          f"or {len(TOPOLOGY_HEADER) + 1} (v3: and {SPARSITY}), got {len(fields)}: {', '.join(fields)!r}")
    name = fields[0]
    if not name:
        raise FormatError(f"{where}: field 'Layer name' is empty")
    values = {}
    for label, value in zip(TOPOLOGY_HEADER[1:], fields[1:len(TOPOLOGY_HEADER)]):
        high = TOPOLOGY_LIMITS[label]
        try:
            values[label] = int(value)
        except ValueError:
            raise FormatError(f"{where}: field {label!r} must be a positive integer (1 to {high}), got {value!r}") from None
        if not 1 <= values[label] <= high:
            raise FormatError(f"{where}: field {label!r} must be a positive integer from 1 to {high}, "
                              f"got {values[label]}")
    density = parse_sparsity(fields[-1], where) if len(fields) > len(TOPOLOGY_HEADER) else 1.0
    H, W = values["IFMAP Height"], values["IFMAP Width"]
    R, S = values["Filter Height"], values["Filter Width"]
    C, K, stride = values["Channels"], values["Num Filter"], values["Strides"]
    if R > H or S > W:
        raise FormatError(f"{where}: filter {R}x{S} is larger than the IFMAP {H}x{W}")
    groups = 1
    if "DP" in name:
        if C * K > MAX_CHANNELS:  # a depthwise row's layer has Channels x Num Filter output channels
            raise FormatError(f"{where}: fields 'Channels' x 'Num Filter' of a depthwise (DP) row must be at most "
                              f"{MAX_CHANNELS} output channels, got {C} x {K} = {C * K}")
        groups, K = C, C * K
    kind = "depthwise" if groups > 1 and K == C else infer_kind(C, K, H, W, R, S, groups)
    try:
        return Layer(name, kind, C, K, H, W, R, S, stride, 0, groups, P=scalesim_output_size(H, R, stride),
                     Q=scalesim_output_size(W, S, stride), w_bits=bits, a_bits=bits, w_density=density)
    except ValueError as error:
        raise FormatError(f"{where}: {error}") from None


def _vector_layer(fields: dict, where: str) -> Layer:
    if "part_of" in fields or fields.get("kind") not in VECTOR_KINDS:
        raise FormatError(f"{where}: a layer after '|' must have kind={' or kind='.join(VECTOR_KINDS)} "
                          f"(SCALE-Sim must see every array layer as a row), got {fields}")
    try:
        return Layer(**fields)
    except TypeError:
        raise FormatError(f"{where}: a layer after '|' needs name, kind, C, K, H and W, got {fields}") from None
    except ValueError as error:
        raise FormatError(f"{where}: {error}") from None


def parse_topology(text: str, source: str = "<topology>", bits: int = 8) -> Workload:
    """A Workload from the text of a SCALE-Sim topology CSV (``bits``: of rows without a codesign annotation)."""
    text = text.removeprefix("\ufeff")  # a byte-order mark (Excel's UTF-8 CSV) is not part of 'Layer name'
    layers: list[Layer] = []
    parts: dict[str, int] = {}  # grouped layer -> its further rows (part_of) still expected
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}, line {number}"
        data, _, comment = raw.partition("#")
        annotation = _annotation(comment, where)
        fields = [f.strip() for f in data.split(",")]
        if fields[-1] == "":
            fields.pop()
        if not fields:
            if annotation:
                raise FormatError(f"{where}: a codesign annotation must come after a row's last comma")
            continue
        own, following = (annotation or [{}])[0], annotation[1:]
        if not header_seen and fields[0].lower().startswith("layer"):
            header_seen = True
            if own:
                raise FormatError(f"{where}: the header's codesign annotation can only list layers, each after '|'")
        elif "part_of" in own:
            name = own["part_of"]
            array = [layer for layer in layers if layer.kind not in VECTOR_KINDS]
            if len(own) > 1 or not array or array[-1].name != name or parts.get(name, 0) < 1:
                raise FormatError(f"{where}: part_of={name!r} must be alone and follow the first row of that "
                                  f"grouped layer, once per further group")
            _row_layer(fields, where, bits)  # still a valid SCALE-Sim row
            parts[name] -= 1
        else:
            layer = _row_layer(fields, where, bits)
            try:
                layer = dataclasses.replace(layer, **own)
            except ValueError as error:
                raise FormatError(f"{where}: {error}") from None
            if layer.kind == "grouped" and "groups" in own:
                parts[layer.name] = layer.groups - 1
            layers.append(layer)
        layers.extend(_vector_layer(fields, where) for fields in following)
    missing = {name: left for name, left in parts.items() if left}
    if missing:
        raise FormatError(f"{source}: grouped layers need one row per group; rows (part_of) missing: {missing}")
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
    return parse_topology(read_text(path), str(path), bits)


def _ifmap_extent(padded: int, out: int, kernel: int, stride: int) -> int:
    """The IFMAP SCALE-Sim is given: the padded input if its output convention agrees, else the extent used."""
    return padded if scalesim_output_size(padded, kernel, stride) == out else (out - 1) * stride + kernel


def _row_name(layer: Layer) -> str:
    name = re.sub(r"[,#\s]+", "_", layer.name.strip()) or "layer"
    if layer.kind == "depthwise":
        return name if "DP" in name else f"{name}_DP"
    return name.replace("DP", "Dp")


class ScaleSimGeometry(NamedTuple):
    """An array layer as SCALE-Sim runs it: the IFMAP it is given (padded), filter, channels, stride, and
    ``groups`` independent layers of ``C // groups -> K // groups`` channels (a depthwise layer: ``C``)."""

    H: int
    W: int
    R: int
    S: int
    C: int
    K: int
    stride: int
    groups: int


def scalesim_geometry(layer: Layer) -> ScaleSimGeometry:
    """The SCALE-Sim geometry of an array layer, as its topology row says it."""
    H = _ifmap_extent(layer.H + 2 * layer.padding, layer.P, layer.R, layer.stride)
    W = _ifmap_extent(layer.W + 2 * layer.padding, layer.Q, layer.S, layer.stride)
    groups = layer.C if layer.kind == "depthwise" else layer.groups
    return ScaleSimGeometry(H, W, layer.R, layer.S, layer.C, layer.K, layer.stride, groups)


def _array_rows(layer: Layer) -> list[str]:
    """The SCALE-Sim rows of an array layer, each with its codesign annotation."""
    H, W = scalesim_geometry(layer)[:2]
    name = _row_name(layer)
    if layer.kind == "depthwise":
        entries = [(name, layer.C, layer.K // layer.C)]
    elif layer.groups > 1:
        entries = [(f"{name}_g{g}", layer.C // layer.groups, layer.K // layer.groups) for g in range(layer.groups)]
    else:
        entries = [(name, layer.C, layer.K)]
    rows = []
    for i, (row_name, C, K) in enumerate(entries):
        fields = [row_name, *map(str, (H, W, layer.R, layer.S, C, K, layer.stride)), format_sparsity(layer.w_density)]
        if i == 0:
            base = _row_layer(fields, "format_topology", 8)
            own = {k: getattr(layer, k) for k in _LAYER_FIELDS
                   if k in ("w_bits", "a_bits") or getattr(layer, k) != getattr(base, k)}
        else:
            own = {"part_of": layer.name}
        rows.append(f"{', '.join(fields)}, # {ANNOTATION} {_format_fields(own)}")
    return rows


def _vector_fields(layer: Layer) -> dict:
    """A vector layer's fields, leaving out defaults and the output size its input gives."""
    defaults = {f.name: f.default for f in dataclasses.fields(Layer) if f.default is not dataclasses.MISSING}
    derived = {"P": conv_output_size(layer.H, layer.R, layer.stride, layer.padding),
               "Q": conv_output_size(layer.W, layer.S, layer.stride, layer.padding)}
    skip = object()
    return {k: v for k, v in dataclasses.asdict(layer).items()
            if v != defaults.get(k, skip) and v != derived.get(k, skip)}


def format_topology(workload: Workload) -> str:
    """SCALE-Sim v3 topology text for ``workload``, which :func:`parse_topology` reads back exactly.

    SCALE-Sim sees the array layers (pooling and element-wise layers only in annotations).
    The IFMAP written is the padded input, or where SCALE-Sim's ceil convention would give
    another output size, the exact extent the outputs need, ``(P-1)*stride + R``; grouped
    (non-depthwise) layers become one row per group; depthwise layers get ``DP`` in their
    name; the Sparsity column is the weight density as N:M where one equals it.
    """
    header = ", ".join(TOPOLOGY_HEADER + (SPARSITY,)) + ","
    lines, following = [header], [[]]
    for layer in workload.layers:
        if layer.kind in VECTOR_KINDS:
            following[-1].append(_format_fields(_vector_fields(layer)))
            continue
        for row in _array_rows(layer):
            lines.append(row)
            following.append([])
    if following[0]:
        lines[0] += f" # {ANNOTATION}"
    else:
        lines[0] += (f" # SCALE-Sim reads each row up to its last comma; after it, '{ANNOTATION}' holds what "
                     f"it cannot express (bit widths, exact sizes, pooling and element-wise layers)")
    return "\n".join(line + "".join(f" | {layer}" for layer in after)
                     for line, after in zip(lines, following)) + "\n"


# --- cfg --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScaleSimConfig:
    """A cfg's accelerator, whether its bandwidth mode is CALC (unlimited: compute only), and
    whether the accelerator is the exact one of a ``[codesign]`` section (else SCALE-Sim's keys)."""

    accelerator: Accelerator
    calc_bandwidth: bool
    exact: bool = False
    #: The three SRAMs and DRAM channels as SCALE-Sim reads them (for the ``scalesim_user`` memory mode).
    memories: OperandMemories | None = None


def scalesim_dataflow(accelerator: Accelerator) -> str:
    """SCALE-Sim's dataflow (os, ws, is) nearest the accelerator's (flex: that of its first choice)."""
    dataflow = accelerator.flex_set[0] if accelerator.dataflow == FLEX else accelerator.dataflow
    return TO_SCALESIM[dataflow]


def operand_memories(accelerator: Accelerator, word_bits: int = 8) -> OperandMemories:
    """The SRAMs and channels SCALE-Sim gets from the cfg :func:`format_config` writes for ``accelerator``:
    the global buffer split into three SRAMs of whole Ki-words, each operand the whole DRAM bandwidth."""
    arch = _settings(accelerator, word_bits, False)["architecture_presets"]
    words, bandwidth = int(arch["IfmapSramSzkB"]) * 1024, int(arch["Bandwidth"])
    return OperandMemories(words, words, words, bandwidth, bandwidth, bandwidth)


def scalesim_words(nbytes: float, word_bits: int) -> float:
    """Bytes as SCALE-Sim words (elements) of ``word_bits`` bits."""
    return nbytes * 8 / word_bits


def _settings(accelerator: Accelerator, word_bits: int, calc_bandwidth: bool) -> dict[str, dict[str, str]]:
    """Section -> key -> value of the SCALE-Sim cfg of ``accelerator`` (words of ``word_bits`` bits)."""
    kwords = str(max(1, accelerator.gb_bytes * 8 // (word_bits * 3 * 1024)))
    bandwidth = str(max(1, math.floor(scalesim_words(accelerator.dram_bw, word_bits) + 0.5)))
    run_name = re.sub(r"[^\w.-]+", "_", accelerator.name).strip("_") or "accelerator"  # SCALE-Sim makes a folder of it
    return {
        "general": {"run_name": run_name},
        "architecture_presets": {
            "ArrayHeight": str(accelerator.rows), "ArrayWidth": str(accelerator.cols),
            "IfmapSramSzkB": kwords, "FilterSramSzkB": kwords, "OfmapSramSzkB": kwords,
            "IfmapOffset": "0", "FilterOffset": "10000000", "OfmapOffset": "20000000",
            "Bandwidth": bandwidth, "Dataflow": scalesim_dataflow(accelerator),
            "ReadRequestBuffer": "32", "WriteRequestBuffer": "32"},
        "layout": {
            "IfmapCustomLayout": "False", "IfmapSRAMBankBandwidth": bandwidth, "IfmapSRAMBankNum": "1",
            "IfmapSRAMBankPort": "2", "FilterCustomLayout": "False", "FilterSRAMBankBandwidth": bandwidth,
            "FilterSRAMBankNum": "1", "FilterSRAMBankPort": "2"},
        "sparsity": {
            "SparsitySupport": "true" if accelerator.zero_skip else "false", "SparseRep": "ellpack_block",
            "OptimizedMapping": "false", "BlockSize": "8", "RandomNumberGeneratorSeed": "40"},
        "run_presets": {"InterfaceBandwidth": "CALC" if calc_bandwidth else "USER", "UseRamulatorTrace": "False"},
    }


#: The SCALE-Sim keys that say something of the accelerator, and the Accelerator fields they come from.
_DERIVED = {
    ("architecture_presets", "ArrayHeight"): "rows", ("architecture_presets", "ArrayWidth"): "cols",
    ("architecture_presets", "IfmapSramSzkB"): "gb_bytes", ("architecture_presets", "FilterSramSzkB"): "gb_bytes",
    ("architecture_presets", "OfmapSramSzkB"): "gb_bytes", ("architecture_presets", "Bandwidth"): "dram_bw",
    ("architecture_presets", "Dataflow"): "dataflow", ("layout", "IfmapSRAMBankBandwidth"): "dram_bw",
    ("layout", "FilterSRAMBankBandwidth"): "dram_bw", ("sparsity", "SparsitySupport"): "zero_skip",
}


def _limits(accelerator: Accelerator, word_bits: int) -> list[str]:
    """What SCALE-Sim does not model of ``accelerator``, in plain words, one item a line."""
    a = accelerator
    words = scalesim_words(a.dram_bw, word_bits)
    sram = _settings(a, word_bits, False)["architecture_presets"]["IfmapSramSzkB"]
    systolic = scalesim_dataflow(a)
    items = []
    if a.dataflow == FLEX:
        items.append(f"the dataflow flex: per layer the fastest of {', '.join(a.flex_set)}. SCALE-Sim runs one "
                     f"dataflow for every layer: Dataflow = {systolic}, its systolic dataflow nearest {a.flex_set[0]}")
    elif not a.dataflow.endswith("_systolic"):
        items.append(f"the dataflow {describe(a.dataflow)}. SCALE-Sim has only its systolic os, ws and is: "
                     f"Dataflow = {systolic} is the nearest")
    whole = "" if words == int(words) else " (SCALE-Sim reads whole words per cycle)"
    skip = (", zero skipping (SparsitySupport = true is SCALE-Sim's own sparse scheme: N:M weights per layer)"
            if a.zero_skip else "")
    items += [
        f"the clock, {a.clock_mhz:g} MHz: SCALE-Sim counts cycles, not seconds",
        f"bit widths: SCALE-Sim moves one element per word; here a word is a {word_bits}-bit element, "
        f"so the SRAM sizes (kB) count Ki-elements and the bandwidths count elements per cycle",
        f"one global buffer of {a.gb_bytes} bytes: SCALE-Sim has three separate SRAMs, "
        f"here {sram} Ki-elements each",
        f"one DRAM channel of {a.dram_bw!r} bytes per cycle = {words:g} elements per cycle{whole}, shared by "
        f"every operand, {a.dram_latency:g} cycles of latency per transfer: SCALE-Sim gives ifmap, filter and "
        f"ofmap each their own bandwidth, without latency",
        f"register files ({a.rf_bytes} bytes per PE), the {a.mac_bits}-bit multipliers (wider operands take "
        f"several passes){skip}",
        f"pooling and element-wise layers, on a {a.simd_lanes or a.cols}-lane SIMD unit here: "
        f"SCALE-Sim runs only the array layers",
        f"energy ({a.energy_table} table) and area",
    ]
    return items


def format_config(accelerator: Accelerator, calc_bandwidth: bool = False, word_bits: int = 8,
                  notes: Sequence[str] = ()) -> str:
    """A SCALE-Sim v3 cfg for ``accelerator``, which :func:`parse_config` reads back as ``accelerator``.

    ``word_bits`` is the size of SCALE-Sim's word, one element (8: its units are bytes).
    The global buffer is split into three equal SRAMs. Comments say what SCALE-Sim does not
    model (``notes`` are added to them); the ``[codesign]`` section holds the exact accelerator.
    """
    if isinstance(word_bits, bool) or not isinstance(word_bits, int) or not 1 <= word_bits <= 32:
        raise ValueError(f"word_bits must be an integer from 1 to 32, got {word_bits!r}")
    section = CODESIGN_SECTION
    lines = [f"; SCALE-Sim v3 configuration of the accelerator {accelerator.name!r}, written by codesign.",
             f"; SCALE-Sim reads every section but [{section}]. `codesign cost --config` reads [{section}], the",
             "; exact accelerator, and gives its cost-model numbers exactly. It refuses the file if the keys",
             f"; SCALE-Sim reads no longer match [{section}]: edit both, or delete [{section}] to read the file",
             "; as SCALE-Sim does.",
             f"; What SCALE-Sim itself does not model (the cost model does, from [{section}]):"]
    lines += [f";  - {item}" for item in [*_limits(accelerator, word_bits), *notes]]
    for name, values in _settings(accelerator, word_bits, calc_bandwidth).items():
        lines += ["", f"[{name}]", *(f"{key} = {value}" for key, value in values.items())]
    lines += ["", f"[{section}]",
              "; Every field of codesign's Accelerator, as JSON; word_bits: the bits of one SCALE-Sim word above.",
              f"word_bits = {word_bits}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in accelerator.to_dict().items()]
    return "\n".join(lines) + "\n"


def _line_of(text: str, key: str, section: str | None = None) -> int | None:
    """The line of ``key`` (in ``section``, if given), for error messages."""
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
        elif section in (None, current) and re.split(r"[=:]", stripped, maxsplit=1)[0].strip().lower() == key.lower():
            return number
    return None


def _codesign_accelerator(parser: configparser.ConfigParser, text: str, source: str) -> tuple[Accelerator, int]:
    """The exact accelerator and the word size of a ``[codesign]`` section."""
    section = CODESIGN_SECTION
    allowed = ("word_bits",) + tuple(f.name for f in dataclasses.fields(Accelerator))
    values = {}
    for key in parser.options(section):
        if key not in allowed:
            raise FormatError(f"{source}, line {_line_of(text, key, section)}: section [{section}] has unknown "
                              f"field {key!r}; allowed: {', '.join(allowed)}")
        raw = parser.get(section, key, raw=True).strip()
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw  # a bare word; the Accelerator checks it
    missing = [key for key in allowed if key not in values]
    if missing:
        raise FormatError(f"{source}: section [{section}] is missing {', '.join(map(repr, missing))}; it holds every "
                          f"field of the accelerator, as `codesign export` writes it (or delete the section)")
    word_bits = values.pop("word_bits")
    if isinstance(word_bits, bool) or not isinstance(word_bits, int) or not 1 <= word_bits <= 32:
        raise FormatError(f"{source}, line {_line_of(text, 'word_bits', section)}: field 'word_bits' must be an "
                          f"integer from 1 to 32, got {word_bits!r}")
    try:
        return Accelerator.from_dict(values), word_bits
    except ValueError as error:
        field = re.search(r"field '(\w+)'", str(error))
        line = _line_of(text, field.group(1), section) if field else None
        raise FormatError(f"{source}{f', line {line}' if line else ''}: section [{section}]: {error}") from None


def _same(written: str, expected: str) -> bool:
    try:
        return float(written) == float(expected)
    except ValueError:
        return written.lower() == expected.lower()


def _config_number(raw: str, where: str, key: str, kind, low=None, high=None):
    """A cfg value as ``kind`` (int or float), > 0 (>= ``low`` if given) and <= ``high`` if given, else a
    FormatError at ``where`` naming ``key`` and the range."""
    what = "an integer" if kind is int else "a number"
    show = lambda x: str(int(x)) if float(x).is_integer() else f"{x:g}"
    bounds = (f"from {show(low)} to {show(high)}" if low is not None and high is not None else
              f"> 0 and at most {show(high)}" if high is not None else f">= {show(low)}" if low is not None else "> 0")
    try:
        value = kind(raw)
    except ValueError:
        raise FormatError(f"{where}: field {key!r} must be a number ({what} {bounds}), got {raw!r}") from None
    # Written this way round so that NaN fails too.
    if not ((value >= low) if low is not None else (value > 0)) or (high is not None and not value <= high):
        raise FormatError(f"{where}: field {key!r} must be {what} {bounds}, got {raw!r}")
    return value


def parse_config(text: str, source: str = "<config>") -> ScaleSimConfig:
    """The accelerator of a SCALE-Sim cfg: exact from a ``[codesign]`` section, else from SCALE-Sim's keys.

    From SCALE-Sim's keys alone, a word is a byte (SCALE-Sim's own unit), the DRAM latency
    is 0, register files 1 byte and multipliers 8 bits.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark would hide the first section header
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source)
    except configparser.Error as error:
        raise FormatError(f"{source}: {error}") from None

    def get(section, key, kind=int, default=None, low=None, high=None):
        """The value of ``key``: a string, or a number > 0 (>= ``low`` if given) and <= ``high`` if given."""
        if not parser.has_option(section, key):
            if default is not None:
                return default
            raise FormatError(f"{source}: section [{section}] is missing {key!r}")
        raw = parser.get(section, key).strip()
        if kind is str:
            return raw
        return _config_number(raw, f"{source}, line {_line_of(text, key, section)}", key, kind, low, high)

    arch = "architecture_presets"
    dataflow = get(arch, "Dataflow", str).lower()
    if dataflow not in SCALESIM_DATAFLOWS:
        raise FormatError(f"{source}, line {_line_of(text, 'Dataflow', arch)}: field 'Dataflow' must be one of "
                          f"os, ws, is; got {dataflow!r}")
    mode = get("run_presets", "InterfaceBandwidth", str, default="CALC").upper()
    if mode not in ("CALC", "USER"):
        raise FormatError(f"{source}, line {_line_of(text, 'InterfaceBandwidth', 'run_presets')}: field "
                          f"'InterfaceBandwidth' must be CALC or USER; got {mode!r}")
    sparse = get("sparsity", "SparsitySupport", str, default="false").lower()
    if sparse not in ("true", "false"):
        raise FormatError(f"{source}, line {_line_of(text, 'SparsitySupport', 'sparsity')}: field "
                          f"'SparsitySupport' must be true or false; got {sparse!r}")
    sram_keys = ("IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB")
    sram_kbs = [get(arch, key, float, high=MAX_GB_BYTES / 1024) for key in sram_keys]
    sram_kb = sum(sram_kbs)
    if not 1 <= int(sram_kb * 1024) <= MAX_GB_BYTES:  # one global buffer of the three SRAMs
        raise FormatError(f"{source}, line {_line_of(text, sram_keys[0], arch)}: fields {', '.join(map(repr, sram_keys))} "
                          f"must add up to a global buffer from 1 byte to {MAX_GB_BYTES // 1024} kB, got {sram_kb:.10g} kB")
    # SCALE-Sim's Bandwidth may list one value per operand; the first is read (its unit, a word, is a byte here).
    # In USER mode SCALE-Sim gives the ofmap channel that first value and the ifmap and filter channels the
    # [layout] bank bandwidths (single_layer_sim.py); the global-buffer model's one channel takes the ifmap's.
    ofmap_bw = _config_number(get(arch, "Bandwidth", str, default="10").split(",")[0].strip(),
                              f"{source}, line {_line_of(text, 'Bandwidth', arch)}", "Bandwidth", float,
                              MIN_DRAM_BW, MAX_DRAM_BW)
    ifmap_bw = filter_bw = ofmap_bw
    if parser.has_option("layout", "IfmapSRAMBankBandwidth"):
        ifmap_bw = get("layout", "IfmapSRAMBankBandwidth", float, low=MIN_DRAM_BW, high=MAX_DRAM_BW)
    if parser.has_option("layout", "FilterSRAMBankBandwidth"):
        filter_bw = get("layout", "FilterSRAMBankBandwidth", float, low=MIN_DRAM_BW, high=MAX_DRAM_BW)
    bandwidth = ifmap_bw
    for key, kb in zip(sram_keys, sram_kbs):
        if int(kb * 1024) < 1:  # SCALE-Sim's buffers hold whole words
            raise FormatError(f"{source}, line {_line_of(text, key, arch)}: field {key!r} must hold at least one "
                              f"word (1/1024 kB), got {kb:.10g} kB")
    memories = OperandMemories(*(int(kb * 1024) for kb in sram_kbs), ifmap_bw, filter_bw, ofmap_bw)
    rows = get(arch, "ArrayHeight", low=1, high=MAX_ARRAY_SIDE)
    cols = get(arch, "ArrayWidth", low=1, high=MAX_ARRAY_SIDE)
    try:
        accelerator = Accelerator(
            rows=rows, cols=cols, dataflow=SCALESIM_DATAFLOWS[dataflow], gb_bytes=int(sram_kb * 1024), dram_bw=bandwidth,
            dram_latency=0.0, mac_bits=8, rf_bytes=1, zero_skip=sparse == "true",
            name=parser.get("general", "run_name", raw=True, fallback=Path(source).stem).strip().replace("%%", "%"),
        )
    except ValueError as error:  # not expected after the checks above; named as the cfg names it all the same
        field = re.search(r"field '(\w+)'", str(error))
        key = CONFIG_KEYS.get(field.group(1)) if field else None
        where = f"{source}, line {_line_of(text, key)}" if key and _line_of(text, key) else source
        message = str(error).replace(field.group(0), f"field {key!r}") if key else str(error)
        raise FormatError(f"{where}: {message}") from None
    if not parser.has_section(CODESIGN_SECTION):
        return ScaleSimConfig(accelerator, mode == "CALC", memories=memories)

    exact, word_bits = _codesign_accelerator(parser, text, source)
    expected = _settings(exact, word_bits, mode == "CALC")
    for (section, key), field in _DERIVED.items():
        if parser.has_option(section, key):
            written = parser.get(section, key).split(",")[0].strip()
            if not _same(written, expected[section][key]):
                raise FormatError(
                    f"{source}, line {_line_of(text, key, section)}: field {key!r} is {written} but the accelerator "
                    f"of section [{CODESIGN_SECTION}] ({field} = {getattr(exact, field)!r}, {word_bits}-bit words) "
                    f"gives {expected[section][key]}; edit both, or delete [{CODESIGN_SECTION}] to read the file "
                    f"as SCALE-Sim does")
    return ScaleSimConfig(exact, mode == "CALC", exact=True, memories=memories)


def read_config(path: str | Path) -> ScaleSimConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return parse_config(read_text(path), str(path))


# --- export -----------------------------------------------------------------------------------

def word_bits_of(workload: Workload) -> tuple[int, tuple[int, ...]]:
    """The SCALE-Sim word for ``workload`` (its widest array-layer operand, in bits), and every width it uses."""
    widths = sorted({bits for layer in workload.layers if layer.kind not in VECTOR_KINDS
                     for bits in (layer.w_bits, layer.a_bits)})
    return (widths[-1] if widths else 8), tuple(widths)


def export_files(workload: Workload, accelerator: Accelerator, stored: str = "") -> dict[str, str]:
    """The files of a SCALE-Sim export of a design: file name -> text.

    ``topology.csv`` + ``accelerator.cfg`` (or ``accelerator.json``) read back as the
    design's workload and accelerator; ``layout.csv`` lets SCALE-Sim 3 run them;
    ``README.txt`` says how (``stored``: a line with the design's stored numbers).
    """
    word_bits, widths = word_bits_of(workload)
    notes = []
    if len(widths) > 1:
        notes.append(f"operand widths of {', '.join(map(str, widths))} bits: SCALE-Sim has one word size, "
                     f"the widest here; each layer's own widths are in topology.csv's codesign annotations")
    if any(layer.w_density < 1 for layer in workload.layers):
        notes.append("pruned weights: topology.csv's Sparsity column gives each layer's weight density as N:M; "
                     "SCALE-Sim uses it only with SparsitySupport = true")
    cfg = format_config(accelerator, word_bits=word_bits, notes=notes)
    readme = f"""SCALE-Sim v3 export of a codesign design (accelerator {accelerator.name!r}, workload {workload.name!r}).

topology.csv      the network as SCALE-Sim topology rows (v3: with the Sparsity column N:M). After each
                  row's last comma, which SCALE-Sim ignores, '# {ANNOTATION}' holds what SCALE-Sim cannot
                  express: the layer's bit widths, its exact input size and padding, an exact weight density,
                  the groups of a grouped convolution (one row per group), and the pooling and
                  element-wise layers that follow the row.
accelerator.cfg   SCALE-Sim's nearest configuration; its comments say what SCALE-Sim does not model.
                  Its [{CODESIGN_SECTION}] section, which SCALE-Sim does not read, holds the exact accelerator.
accelerator.json  the exact accelerator (codesign's Accelerator as JSON).
layout.csv        an empty SCALE-Sim layout (SCALE-Sim 3 needs one; custom layouts are off).

Each of these gives the design's cost-model numbers exactly:
    codesign cost --topology topology.csv --config accelerator.cfg
    codesign cost --topology topology.csv --accelerator accelerator.json
{stored}
SCALE-Sim itself simulates the nearest systolic array (in {word_bits}-bit words), not this design:
    python -m scalesim.scale -c accelerator.cfg -t topology.csv -l layout.csv -p scalesim_results
"""
    return {"topology.csv": format_topology(workload), "accelerator.cfg": cfg,
            "accelerator.json": accelerator.to_json(), "layout.csv": EMPTY_LAYOUT, "README.txt": readme}
