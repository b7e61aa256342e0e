"""Energy tables read from files: codesign's own per-level table, or an Accelergy ERT as Timeloop consumes it.

``Accelerator(energy_table=PATH)`` and ``codesign cost --energy FILE`` take either file:

* **codesign's table** (YAML or JSON): picojoules per access of a ``bits``-bit word at
  each level (per ``bits``-bit MAC for ``mac``; ``bits`` is 16 when left out). ``mac``
  and ``dram`` are required; ``rf``, ``noc`` and ``gb`` cost 0 when left out (an
  architecture without that level)::

      bits: 16
      mac: 0.85
      rf: 0.5
      noc: 1.0
      gb: 2.5
      dram: 320

* **Accelergy's energy reference table** (``ERT.yaml``, formats 0.3 and 0.4, or
  Timeloop's ``timeloop-mapper.ERT.yaml``) with the flattened architecture Accelergy
  writes beside it (``flattened_architecture.yaml`` or
  ``timeloop-mapper.flattened_architecture.yaml``), which gives each component's class
  and width. Each component is put on a level by its class (:data:`LEVEL_OF_CLASS`,
  matched case-insensitively as a part of the class name, first match wins); a
  component whose every action costs 0 (a dummy) is left out. The energy of a level is:

  - ``mac``: the action ``mac_random``, ``compute`` or ``mac`` (the first present),
    per MAC of the component's ``datawidth`` (0.3) or ``multiplier_width`` (0.4),
    scaled to 16 bits as bits^2;
  - memories (``rf``, ``gb``, ``dram``): the mean of ``read`` and ``write`` (``read``
    alone when there is no ``write``), each averaged over its argument variants (the
    ``average_energy`` of Accelergy's summary), per access of the component's
    ``width`` (0.4) or ``memory_width`` (0.3) in bits, scaled to 16 bits as bits;
  - ``noc``: ``transfer_random``, ``transfer`` or ``transfer_repeated`` (the first
    present) per ``datawidth`` bits, scaled to 16 bits;
  - several components on one level (Eyeriss's three scratchpads, two buffers, four
    networks): the mean of their 16-bit energies, since the cost model counts one
    access stream per level. ``mac`` and ``dram`` must each have a component.

  The ERT's energies are at its own technology node; the area estimate stays
  :func:`cost_models.energy.area_mm2`'s (the ART is not read).

* **Both**: codesign's table with ``ert: PATH`` (relative to the table's folder) takes
  the ERT's levels and sets or replaces the levels it names, in the table's ``bits``;
  for an ERT of the chip alone (Accelergy's exercises leave DRAM out)::

      ert: ref-output/ERT.yaml
      bits: 64
      dram: 1280   # pJ per 64-bit DRAM access

Every problem is one ``ValueError`` naming the file, the line and the key, with what is
allowed. A file is read again only when it, or a file it was read from (an ERT it names, the
flattened architecture), changes size or modification time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import numpy as np

from cost_models.energy import DRAM_PJ_PER_BIT, ENERGY_TABLES, LEVELS as LEVEL_NAMES

#: Levels an architecture may lack (they cost 0 then); the others must be priced.
OPTIONAL_LEVELS = ("rf", "noc", "gb")
#: Accelergy component classes -> level: a pattern found in the class name (case-insensitive), first match wins.
LEVEL_OF_CLASS = (("dram", "dram"), ("mac", "mac"), ("noc", "noc"), ("wire", "noc"), ("network", "noc"),
                  ("_rf", "rf"), ("regfile", "rf"), ("register", "rf"), ("sram", "gb"), ("buffer", "gb"),
                  ("glb", "gb"))
MAC_ACTIONS = ("mac_random", "compute", "mac")
NOC_ACTIONS = ("transfer_random", "transfer", "transfer_repeated")
SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Per-level unit energies read from a file: pJ per 16-bit access (per 16-bit MAC for ``mac``)."""

    path: str
    kind: str  # "codesign" or "accelergy"
    pj: dict  # level -> pJ per 16-bit access
    components: dict  # level -> {component: pJ per 16-bit access} of the ERT's components priced there
    digest: str  # the first 16 hex digits of the file's SHA-256
    sources: tuple[str, ...] = ()  # every file it was read from (the table, an ERT it names, architectures)

    def vector(self) -> np.ndarray:
        """The energies ordered like the cost model's levels, then 0 (the same at every buffer capacity)."""
        return np.asarray([self.pj[level] for level in LEVEL_NAMES] + [0.0], np.float32)

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "sha256": self.digest,
                "pj_per_16bit_access": dict(self.pj),
                **({"components": {k: dict(v) for k, v in self.components.items()}} if self.kind == "accelergy"
                   else {})}

    def describe(self) -> str:
        levels = ", ".join(f"{level} {self.pj[level]:.4g}" for level in LEVEL_NAMES)
        return f"{self.path} ({'Accelergy ERT' if self.kind == 'accelergy' else 'energy table'}; pJ per 16-bit " \
               f"access: {levels})"


def is_energy_file(value) -> bool:
    """Whether an ``energy_table`` value names a file rather than a built-in table."""
    return isinstance(value, (str, os.PathLike)) and (Path(value).suffix.lower() in SUFFIXES or os.sep in str(value))


def read_energy_table(path: str | os.PathLike) -> EnergyTable:
    """The table of ``path`` (module docstring), read again when a file it comes from changes; a ValueError naming
    file, line and key."""
    file = Path(path)
    try:
        file.stat()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the energy table ({error.strerror or error})") from None
    if not file.is_file():
        raise ValueError(f"{path}: the energy table is not a file")
    key = (str(path), str(file.resolve()))
    cached = _READ.get(key)
    if cached is None or cached[0] != _versions(cached[1].sources):
        table = _read(*key)
        _READ[key] = (_versions(table.sources), table)
    return _READ[key][1]


#: (given path, resolved path) -> (the versions of the files it was read from, the table).
_READ: dict[tuple[str, str], tuple[tuple, EnergyTable]] = {}


def _versions(files: tuple[str, ...]) -> tuple:
    """(size, modification time) of each file, None for one that is gone: a table is read again when they change."""
    def version(name):
        try:
            stat = Path(name).stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns
    return tuple(version(name) for name in files)


def _read(given: str, resolved: str) -> EnergyTable:
    raw = Path(resolved).read_bytes()
    data = _load_yaml(given, raw)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    if not isinstance(data, dict):
        raise ValueError(f"{given}:1: an energy table is a mapping (codesign's levels, or Accelergy's 'ERT'); "
                         f"got {type(data).__name__}")
    if "ERT" in data:
        architecture = _architecture(given)
        pj, components = _from_ert(given, data, architecture, required=("mac", "dram"))
        return EnergyTable(given, "accelergy", pj, components, digest, (resolved, *_architecture_files(architecture)))
    base = None
    if "ert" in data:
        ert = data["ert"]
        if not isinstance(ert, str) or not ert:
            raise ValueError(f"{given}:{_line(data)}: 'ert' must be the path of an Accelergy ERT, got {ert!r}")
        ert_path = str(Path(given).parent / ert)
        ert_data = _load_yaml(ert_path, _read_bytes(given, data, ert_path))
        if not isinstance(ert_data, dict) or "ERT" not in ert_data:
            raise ValueError(f"{given}:{_line(data)}: 'ert' {ert!r} is not an Accelergy ERT (no 'ERT' key)")
        ert_architecture = _architecture(ert_path)
        base = _from_ert(ert_path, ert_data, ert_architecture, required=())
        sources = (resolved, ert_path, *_architecture_files(ert_architecture))
    else:
        sources = (resolved,)
    pj = _from_levels(given, data, base[0] if base else None)
    return EnergyTable(given, "accelergy" if base else "codesign", pj, base[1] if base else {}, digest, sources)


def _architecture_files(architecture: dict) -> tuple[str, ...]:
    """The flattened architecture file(s) the components were read from."""
    return tuple(sorted({entry[3] for entry in architecture.values()}))


def _read_bytes(path: str, where: dict, target: str) -> bytes:
    try:
        return Path(target).read_bytes()
    except OSError as error:
        raise ValueError(f"{path}:{_line(where)}: cannot read 'ert' {target} ({error.strerror or error})") from None


# --- YAML with line numbers ------------------------------------------------------------------------
LINE = "__line__"  # a mapping's own line
KEY_LINES = "__key_lines__"  # key -> the line it is on


def _load_yaml(path: str, raw: bytes):
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class LineLoader(base):  # every mapping also holds its line (LINE) and its keys' (KEY_LINES)
        def construct_mapping(self, node, deep=False):
            mapping = super().construct_mapping(node, deep=deep)
            mapping[LINE] = node.start_mark.line + 1
            mapping[KEY_LINES] = {getattr(key, "value", None): key.start_mark.line + 1 for key, _ in node.value}
            return mapping

    try:
        return yaml.load(raw, Loader=LineLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML or JSON ({getattr(error, 'problem', error)})") from None


def _line(mapping, key: str | None = None) -> int | str:
    """The line of ``key`` in ``mapping`` (of the mapping itself without a key, or if the key is not there)."""
    if not isinstance(mapping, dict):
        return "?"
    return mapping.get(KEY_LINES, {}).get(key) or mapping.get(LINE, "?")


def _energy(path: str, where: dict, key: str, value) -> float:
    """A finite, non-negative energy in pJ."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{path}:{_line(where, key)}: {key!r} must be a finite energy in pJ >= 0, got {value!r}")
    return float(value)


def _positive(path: str, where: dict, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{path}:{_line(where, key)}: {key!r} must be a number of bits > 0, got {value!r}")
    return float(value)


# --- codesign's own table ---------------------------------------------------------------------------
def _from_levels(path: str, data: dict, base: dict | None = None) -> dict:
    """pJ per 16-bit access from the table's levels (in its ``bits``), over ``base``'s (an ERT's) where given."""
    allowed = ("bits", "ert") + LEVEL_NAMES
    for key in data:
        if key not in (LINE, KEY_LINES) and key not in allowed:
            raise ValueError(f"{path}:{_line(data, key)}: unknown key {key!r}; an energy table has {', '.join(allowed)} "
                             f"(or is an Accelergy ERT, under 'ERT')")
    for level in LEVEL_NAMES:
        if level not in data and level not in OPTIONAL_LEVELS and not (base and base[level]):
            raise ValueError(f"{path}:{_line(data)}: missing {level!r}"
                             + (" (its 'ert' prices no such component)" if base else "")
                             + f"; required: mac, dram (pJ per access), optional: {', '.join(OPTIONAL_LEVELS)}, bits")
    bits = _positive(path, data, "bits", data.get("bits", 16))
    given = {level: _energy(path, data, level, data[level]) * (16.0 / bits) ** (2 if level == "mac" else 1)
             for level in LEVEL_NAMES if level in data}
    return {level: given.get(level, base[level] if base else 0.0) for level in LEVEL_NAMES}


# --- Accelergy's ERT ---------------------------------------------------------------------------------
def _architecture(ert_path: str) -> dict:
    """The flattened architecture beside an ERT: component name -> (class, attributes, line)."""
    folder, name = Path(ert_path).parent, Path(ert_path).name
    prefix = name[: -len("ERT.yaml")] if name.endswith("ERT.yaml") else ""
    candidates = [folder / f"{prefix}flattened_architecture.yaml"] + sorted(folder.glob("*flattened_architecture.yaml"))
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ValueError(f"{ert_path}: an Accelergy ERT needs the flattened architecture Accelergy writes beside it "
                         f"({prefix}flattened_architecture.yaml in {folder}), for each component's class and width")
    data = _load_yaml(str(found), found.read_bytes())
    local = data.get("architecture", {}).get("local") if isinstance(data, dict) else None
    if not isinstance(local, list):
        raise ValueError(f"{found}:{_line(data)}: expected 'architecture: local:' with a list of components")
    components = {}
    for entry in local:
        if not isinstance(entry, dict) or "name" not in entry or "class" not in entry:
            raise ValueError(f"{found}:{_line(entry)}: every component needs 'name' and 'class'")
        components[str(entry["name"])] = (str(entry["class"]), entry.get("attributes") or {}, _line(entry), str(found))
    return components


def _level_of(class_name: str) -> str | None:
    lowered = class_name.lower()
    return next((level for pattern, level in LEVEL_OF_CLASS if pattern in lowered), None)


def _action_energies(path: str, table: dict) -> dict[str, float]:
    """Action name -> energy averaged over the action's argument variants."""
    actions = table.get("actions")
    if not isinstance(actions, list) or not actions:
        raise ValueError(f"{path}:{_line(table)}: component {table.get('name')!r} needs a list of 'actions'")
    sums: dict[str, list[float]] = {}
    for action in actions:
        if not isinstance(action, dict) or "name" not in action or "energy" not in action:
            raise ValueError(f"{path}:{_line(action)}: every action needs 'name' and 'energy'")
        sums.setdefault(str(action["name"]), []).append(_energy(path, action, "energy", action["energy"]))
    return {name: sum(values) / len(values) for name, values in sums.items()}


def _width(path: str, arch_entry, keys: tuple[str, ...], component: str) -> float:
    cls, attributes, line, arch_path = arch_entry
    for key in keys:
        if key in attributes:
            return _positive(arch_path, attributes, key, attributes[key])
    raise ValueError(f"{arch_path}:{line}: component {component!r} (class {cls}) has no {' or '.join(keys)} "
                     f"attribute, needed to price a 16-bit access")


def _from_ert(path: str, data: dict, architecture: dict, required: tuple[str, ...]) -> tuple[dict, dict]:
    tables = data["ERT"].get("tables") if isinstance(data["ERT"], dict) else None
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}:{_line(data)}: 'ERT' must hold 'tables', a list of components with their actions")
    per_level: dict[str, list[tuple[str, float]]] = {level: [] for level in LEVEL_NAMES}
    for table in tables:
        if not isinstance(table, dict) or "name" not in table:
            raise ValueError(f"{path}:{_line(table)}: every ERT table needs a component 'name'")
        component = str(table["name"])
        energies = _action_energies(path, table)
        if not any(energies.values()):
            continue  # a dummy component: nothing to price
        if component not in architecture:
            raise ValueError(f"{path}:{_line(table)}: component {component!r} is not in the flattened architecture "
                             f"beside it")
        cls = architecture[component][0]
        level = _level_of(cls)
        if level is None:
            raise ValueError(f"{path}:{_line(table)}: component {component!r} has class {cls!r}, which maps onto no "
                             f"level; classes are matched by a part of their name: "
                             + ", ".join(f"{p!r} -> {lv}" for p, lv in LEVEL_OF_CLASS))
        per_level[level].append((component, _per_16_bits(path, table, component, cls, level, energies,
                                                         architecture[component])))
    for level in LEVEL_NAMES:
        if not per_level[level] and level in required:
            raise ValueError(f"{path}: no component prices the {level!r} level (a class containing "
                             + " or ".join(repr(p) for p, lv in LEVEL_OF_CLASS if lv == level)
                             + "); the cost model needs mac and dram: add it, or price it in a codesign table "
                             "that names this ERT under 'ert'")
    pj = {level: (float(np.mean([e for _, e in found])) if found else 0.0) for level, found in per_level.items()}
    return pj, {level: dict(found) for level, found in per_level.items()}


def _per_16_bits(path: str, table: dict, component: str, cls: str, level: str, energies: dict, arch_entry) -> float:
    def pick(names: tuple[str, ...]) -> float:
        name = next((n for n in names if n in energies), None)
        if name is None:
            raise ValueError(f"{path}:{_line(table)}: component {component!r} (class {cls}, level {level}) has none "
                             f"of the actions {', '.join(names)}; it has {', '.join(energies)}")
        return energies[name]

    if level == "mac":
        return pick(MAC_ACTIONS) * (16.0 / _width(path, arch_entry, ("datawidth", "multiplier_width"), component)) ** 2
    if level == "noc":
        return pick(NOC_ACTIONS) * 16.0 / _width(path, arch_entry, ("datawidth", "width"), component)
    read = pick(("read",))
    access = (read + energies["write"]) / 2 if "write" in energies else read
    return access * 16.0 / _width(path, arch_entry, ("width", "memory_width"), component)


def is_builtin_name(value) -> bool:
    return isinstance(value, str) and value in ENERGY_TABLES


def energy_source(table: str, dram_type: str = "") -> dict:
    """What priced a report: ``{"name": table}`` for a built-in table, the file's :meth:`EnergyTable.to_dict`
    (path, kind, SHA-256, the energies it gave) for a file; and the DRAM type when one priced DRAM."""
    source = {"name": table} if is_builtin_name(table) else read_energy_table(table).to_dict()
    return {**source, "dram_type": dram_type, "dram_pj_per_bit": DRAM_PJ_PER_BIT[dram_type]} if dram_type else source


def describe_energy_table(table: str, dram_type: str = "") -> str:
    """One line for a report: the built-in table's name, or the file with the energies it gave; the DRAM type."""
    text = f"the {table} table" if is_builtin_name(table) else read_energy_table(table).describe()
    return f"{text}, DRAM as {dram_type} ({DRAM_PJ_PER_BIT[dram_type]:g} pJ per bit)" if dram_type else text


def energy_table_file(value) -> EnergyTable:
    """The table file an ``energy_table`` value names, read (or reused); a ValueError naming the field otherwise."""
    if not is_energy_file(value):
        raise ValueError(f"field 'energy_table' must be one of {', '.join(ENERGY_TABLES)} or the path of an energy "
                         f"table file ({', '.join(SUFFIXES)}: codesign's levels or an Accelergy ERT); got {value!r}")
    try:
        return read_energy_table(value)
    except ValueError as error:
        raise ValueError(f"field 'energy_table': {error}") from None


def check_energy_table(value) -> str:
    """``value`` as an Accelerator's ``energy_table``: a built-in name, or a readable table file (read now)."""
    if is_builtin_name(value):
        return value
    energy_table_file(value)
    return str(value)

