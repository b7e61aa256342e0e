"""Accelerators: a validated spec, and the pytree of arrays the cost model takes.

:class:`Accelerator` is a frozen, hashable, JSON round-trip-exact description of a
PE-array accelerator. :func:`stack` turns one or many of them into
:class:`AcceleratorParams`, a pytree of arrays with a leading batch axis, so a whole
accelerator grid is one call of the jitted cost model.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from cost_models.dataflows import ALL_DATAFLOW_NAMES, DATAFLOWS, FLEX, dataflow_code
from cost_models.energy import ENERGY_TABLES, area_mm2, energy_vector
from cost_models.specs import JsonSpec


def gbps_to_bytes_per_cycle(gbps: float, clock_mhz: float) -> float:
    """DRAM bandwidth in bytes per cycle from GB/s (1e9 bytes/s) and the clock in MHz."""
    return float(gbps) * 1e9 / (float(clock_mhz) * 1e6)


def _positive_number(name, value, *, integer=False, allow_zero=False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok or (not integer and not np.isfinite(value)):
        what = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"field {name!r} must be {what} {bound}, got {value!r}")
    return int(value) if integer else float(value)


@dataclasses.dataclass(frozen=True)
class Accelerator(JsonSpec):
    """A PE-array accelerator.

    rows, cols: PE array size. dataflow: one of ``ws os rs os_systolic ws_systolic
    is_systolic`` or ``flex`` (per layer the fastest of ``flex_set``). rf_bytes:
    register file per PE. gb_bytes: global buffer (on-chip SRAM). dram_bw: DRAM
    bandwidth in bytes per cycle (see :func:`gbps_to_bytes_per_cycle`);
    dram_latency: cycles per DRAM transfer. clock_mhz: clock. mac_bits: width of
    the PE multiplier (wider operands take several passes). zero_skip: skip zero
    weights where the dataflow streams weights. simd_lanes: width of the 1-D SIMD
    unit for pooling and element-wise layers (0 means ``cols``). energy_table: a
    name from :data:`cost_models.energy.ENERGY_TABLES`.
    """

    rows: int = 32
    cols: int = 32
    dataflow: str = "ws"
    flex_set: tuple[str, ...] = ("ws", "os")
    rf_bytes: int = 16
    gb_bytes: int = 128 * 1024
    dram_bw: float = 16.0
    dram_latency: float = 100.0
    clock_mhz: float = 1000.0
    mac_bits: int = 16
    zero_skip: bool = False
    simd_lanes: int = 0
    energy_table: str = "eyeriss"
    name: str = "accelerator"

    def __post_init__(self):
        for field in ("rows", "cols", "rf_bytes", "gb_bytes", "mac_bits"):
            _positive_number(field, getattr(self, field), integer=True)
        if self.mac_bits > 32:
            raise ValueError(f"field 'mac_bits' must be between 1 and 32, got {self.mac_bits}")
        _positive_number("simd_lanes", self.simd_lanes, integer=True, allow_zero=True)
        for field in ("dram_bw", "clock_mhz"):
            object.__setattr__(self, field, _positive_number(field, getattr(self, field)))
        object.__setattr__(self, "dram_latency", _positive_number("dram_latency", self.dram_latency, allow_zero=True))
        if self.dataflow not in ALL_DATAFLOW_NAMES:
            raise ValueError(f"field 'dataflow' must be one of {', '.join(ALL_DATAFLOW_NAMES)}; got {self.dataflow!r}")
        flex_set = tuple(self.flex_set)
        if not flex_set or any(d not in DATAFLOWS for d in flex_set):
            raise ValueError(f"field 'flex_set' must be a non-empty subset of {', '.join(DATAFLOWS)}; got {self.flex_set!r}")
        object.__setattr__(self, "flex_set", tuple(sorted(set(flex_set), key=DATAFLOWS.index)))
        if not isinstance(self.zero_skip, (bool, np.bool_)):
            raise ValueError(f"field 'zero_skip' must be true or false, got {self.zero_skip!r}")
        object.__setattr__(self, "zero_skip", bool(self.zero_skip))
        if self.energy_table not in ENERGY_TABLES:
            raise ValueError(f"field 'energy_table' must be one of {', '.join(ENERGY_TABLES)}; got {self.energy_table!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"field 'name' must be a string, got {self.name!r}")

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def dram_gbps(self) -> float:
        return self.dram_bw * self.clock_mhz * 1e6 / 1e9

    @property
    def area_mm2(self) -> float:
        return float(area_mm2(self.rows, self.cols, self.mac_bits, self.rf_bytes, self.gb_bytes))

    def replace(self, **changes) -> "Accelerator":
        return dataclasses.replace(self, **changes)

    # to_dict / from_dict / to_json / from_json: JsonSpec's (flex_set as a JSON list; unknown fields refused)


class AcceleratorParams(NamedTuple):
    """Accelerator parameters as arrays with a leading batch axis (a pytree)."""

    rows: np.ndarray  # int32
    cols: np.ndarray  # int32
    dataflow: np.ndarray  # int32 code; FLEX_CODE for flex
    flex_mask: np.ndarray  # float32 [batch, n_dataflows], 1 where flex may choose
    rf_bytes: np.ndarray  # float32
    gb_bytes: np.ndarray  # float32
    dram_bw: np.ndarray  # float32 bytes per cycle
    dram_latency: np.ndarray  # float32 cycles
    clock_hz: np.ndarray  # float32
    mac_bits: np.ndarray  # float32
    zero_skip: np.ndarray  # float32 0/1
    simd_lanes: np.ndarray  # float32
    energy: np.ndarray  # float32 [batch, len(LEVELS)] pJ per 16-bit access

    @property
    def batch(self) -> int:
        return int(np.shape(self.rows)[0])


def stack(accelerators: Accelerator | Iterable[Accelerator]) -> AcceleratorParams:
    """One or many accelerators as a batched pytree."""
    accs: Sequence[Accelerator] = [accelerators] if isinstance(accelerators, Accelerator) else list(accelerators)
    if not accs:
        raise ValueError("at least one accelerator is needed")

    def col(fn, dtype):
        return np.asarray([fn(a) for a in accs], dtype=dtype)

    f32 = np.float32
    return AcceleratorParams(
        rows=col(lambda a: a.rows, np.int32),
        cols=col(lambda a: a.cols, np.int32),
        dataflow=col(lambda a: dataflow_code(a.dataflow), np.int32),
        flex_mask=np.stack([np.asarray([d in a.flex_set for d in DATAFLOWS], f32) for a in accs]),
        rf_bytes=col(lambda a: a.rf_bytes, f32),
        gb_bytes=col(lambda a: a.gb_bytes, f32),
        dram_bw=col(lambda a: a.dram_bw, f32),
        dram_latency=col(lambda a: a.dram_latency, f32),
        clock_hz=col(lambda a: a.clock_mhz * 1e6, f32),
        mac_bits=col(lambda a: a.mac_bits, f32),
        zero_skip=col(lambda a: a.zero_skip, f32),
        simd_lanes=col(lambda a: a.simd_lanes or a.cols, f32),
        energy=np.stack([energy_vector(a.energy_table) for a in accs]),
    )


def grid(base: Accelerator, **axes: Sequence) -> list[Accelerator]:
    """The Cartesian product of field values around ``base`` (e.g. ``rows=[8, 16, 32]``)."""
    names = list(axes)
    combos = [[]]
    for name in names:
        combos = [combo + [value] for combo in combos for value in axes[name]]
    return [dataclasses.replace(base, **dict(zip(names, combo))) for combo in combos]


#: DATAFLOWS re-exported for callers that build grids over dataflows.
__all__ = ["Accelerator", "AcceleratorParams", "stack", "grid", "gbps_to_bytes_per_cycle", "DATAFLOWS", "FLEX"]
