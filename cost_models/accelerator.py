"""Accelerators: a validated spec, and the pytree of arrays the cost model takes.

:class:`Accelerator` is a frozen, hashable, JSON round-trip-exact description of a
PE-array accelerator. :func:`stack` turns one or many of them into
:class:`AcceleratorParams`, a pytree of arrays with a leading batch axis, so a whole
accelerator grid is one call of the jitted cost model.

Valid ranges (an :class:`Accelerator` outside them is a ValueError naming the field, the
value and the range):

=================  ===========================================================================
``rows``, ``cols``  1 .. :data:`MAX_ARRAY_SIDE` (4096)
``rf_bytes``        1 .. :data:`MAX_RF_BYTES` (64 KiB per PE)
``gb_bytes``        1 .. :data:`MAX_GB_BYTES` (4 GiB)
``dram_bw``         :data:`MIN_DRAM_BW` .. :data:`MAX_DRAM_BW` bytes per cycle (0.001 .. 1e6)
``dram_latency``    0 .. :data:`MAX_DRAM_LATENCY` cycles (1e6)
``clock_mhz``       :data:`MIN_CLOCK_MHZ` .. :data:`MAX_CLOCK_MHZ` (0.001 .. 1e5 MHz: 1 kHz .. 100 GHz)
``mac_bits``        1 .. :data:`MAX_MAC_BITS` (32)
``simd_lanes``      0 (= ``cols``) .. :data:`MAX_SIMD_LANES` (65536)
=================  ===========================================================================

Why these bounds. ``rows * cols`` <= 2**24: the cost model multiplies them as int32 and
as float32, and 2**24 is exact in float32 (and far inside int32). ``rf_bytes`` and
``simd_lanes`` (<= 2**16) are exact in float32 too. ``gb_bytes`` above 2**24 is rounded to
24 significant bits in float32 (a relative 6e-8): it is only compared with float32
estimates of tile footprints and priced as area, so that rounding does not matter.
``dram_bw`` >= 0.001 and ``dram_latency`` <= 1e6 keep DRAM time (bytes / bandwidth +
transfers x latency, with at most ~2**62 bytes and ~1e25 transfers a layer within the
layer ranges of :mod:`cost_models.workload`) below 1e32 cycles, far from float32's 3.4e38;
``clock_mhz`` >= 0.001 keeps latency in seconds (cycles / clock) finite and its clock in Hz
a normal float32.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from cost_models.dataflows import ALL_DATAFLOW_NAMES, DATAFLOWS, FLEX, dataflow_code
from cost_models.energy import area_mm2, check_dram_type, energy_vector
from cost_models.energy_files import check_energy_table
from cost_models.specs import JsonSpec


def gbps_to_bytes_per_cycle(gbps: float, clock_mhz: float) -> float:
    """DRAM bandwidth in bytes per cycle from GB/s (1e9 bytes/s) and the clock in MHz."""
    return float(gbps) * 1e9 / (float(clock_mhz) * 1e6)


# Valid ranges of an Accelerator's fields (see the module docstring for why these bounds).
#: Largest PE-array side (``rows``, ``cols``): 4096, so that ``rows * cols`` <= 2**24.
MAX_ARRAY_SIDE = 4096
#: Largest register file per PE, bytes.
MAX_RF_BYTES = 2**16
#: Largest global buffer, bytes (4 GiB).
MAX_GB_BYTES = 2**32
#: DRAM bandwidth range, bytes per cycle.
MIN_DRAM_BW, MAX_DRAM_BW = 1e-3, 1e6
#: Largest DRAM latency, cycles per transfer (the smallest is 0).
MAX_DRAM_LATENCY = 1e6
#: Clock range, MHz (1 kHz to 100 GHz).
MIN_CLOCK_MHZ, MAX_CLOCK_MHZ = 1e-3, 1e5
#: Widest PE multiplier, bits.
MAX_MAC_BITS = 32
#: Widest SIMD unit, lanes (0 means ``cols``).
MAX_SIMD_LANES = 2**16

#: Field -> (smallest, largest, integer) of every numeric field.
ACCELERATOR_LIMITS = {
    "rows": (1, MAX_ARRAY_SIDE, True), "cols": (1, MAX_ARRAY_SIDE, True), "rf_bytes": (1, MAX_RF_BYTES, True),
    "gb_bytes": (1, MAX_GB_BYTES, True), "dram_bw": (MIN_DRAM_BW, MAX_DRAM_BW, False),
    "dram_latency": (0.0, MAX_DRAM_LATENCY, False), "clock_mhz": (MIN_CLOCK_MHZ, MAX_CLOCK_MHZ, False),
    "mac_bits": (1, MAX_MAC_BITS, True), "simd_lanes": (0, MAX_SIMD_LANES, True),
}


def _shown(bound) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _in_range(name: str, value, low, high, integer: bool):
    """``value`` as an int (or float) if it is one from ``low`` to ``high``, else a ValueError naming the field."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    # ``not low <= value <= high`` also refuses NaN.
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValueError(f"field {name!r} must be {what} from {_shown(low)} to {_shown(high)}, got {value!r}")
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
    name from :data:`cost_models.energy.ENERGY_TABLES`, or the path of a table file
    (codesign's per-level energies or an Accelergy ERT; :mod:`cost_models.energy_files`).
    dram_type: '' (DRAM priced by the energy table) or a type of
    :data:`cost_models.energy.DRAM_PJ_PER_BIT` (LPDDR4, HBM2, ...), which prices DRAM
    per bit whatever the table.
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
    dram_type: str = ""
    name: str = "accelerator"

    def __post_init__(self):
        for field, (low, high, integer) in ACCELERATOR_LIMITS.items():
            object.__setattr__(self, field, _in_range(field, getattr(self, field), low, high, integer))
        if not isinstance(self.dataflow, str) or self.dataflow not in ALL_DATAFLOW_NAMES:
            raise ValueError(f"field 'dataflow' must be one of {', '.join(ALL_DATAFLOW_NAMES)}; got {self.dataflow!r}")
        flex_set = tuple(self.flex_set) if isinstance(self.flex_set, (list, tuple)) else ()
        if not flex_set or any(not isinstance(d, str) or d not in DATAFLOWS for d in flex_set):
            raise ValueError(f"field 'flex_set' must be a non-empty subset of {', '.join(DATAFLOWS)}; got {self.flex_set!r}")
        object.__setattr__(self, "flex_set", tuple(sorted(set(flex_set), key=DATAFLOWS.index)))
        if not isinstance(self.zero_skip, (bool, np.bool_)):
            raise ValueError(f"field 'zero_skip' must be true or false, got {self.zero_skip!r}")
        object.__setattr__(self, "zero_skip", bool(self.zero_skip))
        object.__setattr__(self, "energy_table", check_energy_table(self.energy_table))
        check_dram_type(self.dram_type)
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
    energy: np.ndarray  # float32 [batch, len(LEVELS) + 1] pJ per 16-bit access, then energy.energy_vector's capacity

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
        energy=np.stack([energy_vector(a.energy_table, a.dram_type) for a in accs]),
    )


def grid(base: Accelerator, **axes: Sequence) -> list[Accelerator]:
    """The Cartesian product of field values around ``base`` (e.g. ``rows=[8, 16, 32]``)."""
    names = list(axes)
    combos = [[]]
    for name in names:
        combos = [combo + [value] for combo in combos for value in axes[name]]
    return [dataclasses.replace(base, **dict(zip(names, combo))) for combo in combos]


#: DATAFLOWS re-exported for callers that build grids over dataflows.
__all__ = ["Accelerator", "AcceleratorParams", "stack", "grid", "gbps_to_bytes_per_cycle", "DATAFLOWS", "FLEX",
           "ACCELERATOR_LIMITS"]
