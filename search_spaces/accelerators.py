"""The accelerator search space: choices an experiment searches over, and reference presets.

The spec this space produces is :class:`cost_models.Accelerator` itself (no second
accelerator type). :class:`AcceleratorSpace` holds, per design parameter, a tuple of
allowed values; an experiment overrides the tuples it wants to explore. A space can

* turn an Optuna trial into an accelerator (:meth:`AcceleratorSpace.sample`, with
  stable parameter names ``accel.rows``, ``accel.dataflow``, ...), and rebuild the
  very same accelerator from ``trial.params`` alone (:meth:`AcceleratorSpace.from_params`);
* draw accelerators uniformly without Optuna (:meth:`AcceleratorSpace.draw`);
* enumerate its Cartesian product, or a reproducible random subset of it
  (:meth:`AcceleratorSpace.grid`), for a batched ``cost_models.evaluate_batch`` call.

Sampling, drawing and rebuilding share :meth:`AcceleratorSpace.build` and the choosers of
:mod:`search_spaces.choosers`, as the network and compression spaces do.

Units in the space are the ones people quote: the global buffer in KiB (``gb_kib``),
DRAM bandwidth in GB/s (``dram_gbps``, converted to bytes per cycle at the sampled
clock with :func:`cost_models.gbps_to_bytes_per_cycle`), clock in MHz.

:data:`PRESETS` holds published accelerators (Squeezelerator, Eyeriss, TPU v1,
ShiDianNao) as :class:`~cost_models.Accelerator` values; :func:`preset` looks one up.
:data:`DEFAULT_ACCELERATOR_SPACE` is a Squeezelerator-like space around Kwon et al. (DAC'18).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Mapping

import numpy as np

from cost_models.accelerator import Accelerator, AcceleratorParams, gbps_to_bytes_per_cycle
from cost_models.dataflows import ALL_DATAFLOW_NAMES, DATAFLOWS, FLEX, dataflow_code
from cost_models.energy import DRAM_PJ_PER_BIT, ENERGY_TABLES, energy_vector
from cost_models.energy_files import check_energy_table, is_builtin_name, is_energy_file
from cost_models.specs import JsonSpec
from search_spaces.choosers import (BOOLEANS, Allowed, Chooser, ChooserSpace, asking_only_for_choices, choices, integers,
                                    is_integer, numbers, one_of, params_chooser)

#: Prefix of every Optuna parameter this space suggests.
PARAM_PREFIX = "accel."

#: Choice field -> (its allowed values, Optuna parameter name without the prefix), in suggestion order.
_AXES = {
    "rows": (integers(1), "rows"),
    "cols": (integers(1), "cols"),
    "dataflows": (one_of(ALL_DATAFLOW_NAMES), "dataflow"),
    "rf_bytes": (integers(1), "rf_bytes"),
    "gb_kib": (integers(1), "gb_kib"),
    "dram_gbps": (numbers(0, above=True), "dram_gbps"),
    "dram_latency": (numbers(0), "dram_latency"),
    "mac_bits": (integers(1, 32), "mac_bits"),
    "zero_skip": (BOOLEANS, "zero_skip"),
    "clock_mhz": (numbers(0, above=True), "clock_mhz"),
    "energy_table": (Allowed(f"values from {', '.join(ENERGY_TABLES)} or paths of energy table files "
                             f"(.yaml, .yml, .json)", lambda v: is_builtin_name(v) or is_energy_file(v), str),
                     "energy_table"),
    "dram_type": (one_of(("",) + tuple(DRAM_PJ_PER_BIT)), "dram_type"),
}

#: Optuna parameter name -> choice field.
_FIELD_OF = {PARAM_PREFIX + name: field for field, (_, name) in _AXES.items()}


# --- the space --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AcceleratorSpace(ChooserSpace, JsonSpec):
    """Per design parameter, the tuple of values a search may pick (defaults: Squeezelerator-like).

    rows, cols: PE array size. dataflows: from ``ws os rs os_systolic ws_systolic
    is_systolic flex``; ``flex_set`` is the (fixed) set a ``flex`` accelerator picks
    from per layer. rf_bytes: register file per PE. gb_kib: global buffer in KiB.
    dram_gbps: DRAM bandwidth in GB/s; dram_latency: cycles. mac_bits: multiplier
    width. zero_skip: False and/or True. clock_mhz: clock. energy_table: names from
    :data:`cost_models.energy.ENERGY_TABLES` or paths of energy table files (read when
    the space is made; :mod:`cost_models.energy_files`). dram_type: '' (the table's DRAM)
    and/or types of :data:`cost_models.energy.DRAM_PJ_PER_BIT`. Accelerators built by the space keep
    :class:`~cost_models.Accelerator`'s default ``name`` and ``simd_lanes``.

    Every field must be non-empty; a field with one value is fixed (not suggested
    to Optuna). Lists are accepted and stored as tuples; numbers are normalised
    (``dram_gbps=(16,)`` is stored as ``(16.0,)``), so equal spaces compare equal.
    """

    OWNER = "accelerator space"

    rows: tuple[int, ...] = (8, 16, 32, 64)
    cols: tuple[int, ...] = (8, 16, 32, 64)
    dataflows: tuple[str, ...] = ("ws", "os", FLEX)
    flex_set: tuple[str, ...] = ("ws", "os")
    rf_bytes: tuple[int, ...] = (8, 16, 32)
    gb_kib: tuple[int, ...] = (32, 64, 128, 256)
    dram_gbps: tuple[float, ...] = (8.0, 16.0, 32.0)
    dram_latency: tuple[float, ...] = (100.0,)
    mac_bits: tuple[int, ...] = (8, 16)
    zero_skip: tuple[bool, ...] = (False, True)
    clock_mhz: tuple[float, ...] = (500.0,)
    energy_table: tuple[str, ...] = ("eyeriss",)
    dram_type: tuple[str, ...] = ("",)

    def __post_init__(self):
        for field, (allowed, _) in _AXES.items():
            object.__setattr__(self, field, choices(self.OWNER, field, getattr(self, field), allowed))
        for table in self.energy_table:  # a file is read now: its problem named before any search starts
            try:
                check_energy_table(table)
            except ValueError as error:
                raise ValueError(f"{self.OWNER}: {error}") from None
        flex_set = self.flex_set
        if (isinstance(flex_set, str) or not isinstance(flex_set, (tuple, list)) or not flex_set
                or any(not isinstance(d, str) or d not in DATAFLOWS for d in flex_set)):
            raise ValueError(f"{self.OWNER}: field 'flex_set' must be a non-empty tuple of values from "
                             f"{', '.join(DATAFLOWS)}; got {flex_set!r}")
        # The same canonical order Accelerator uses, so flex accelerators compare equal.
        object.__setattr__(self, "flex_set", tuple(sorted(set(flex_set), key=DATAFLOWS.index)))

    # --- structure ---

    @property
    def axes(self) -> dict[str, tuple]:
        """Choice field -> its tuple of values, in suggestion (and grid) order."""
        return {field: getattr(self, field) for field in _AXES}

    @property
    def param_names(self) -> tuple[str, ...]:
        """The Optuna parameter names :meth:`sample` suggests (fields with more than one choice)."""
        return tuple(PARAM_PREFIX + _AXES[f][1] for f, values in self.axes.items() if len(values) > 1)

    @property
    def size(self) -> int:
        """Number of accelerators in the Cartesian product of all choices."""
        return math.prod(len(values) for values in self.axes.values())

    # --- building accelerators: sample(trial), draw(rng) and from_params(params) are ChooserSpace's ---

    def build(self, choose: Chooser) -> Accelerator:
        """An accelerator from a chooser ``choose(name, choices)``, asked per field with more than one choice
        under its parameter name (``accel.rows``, ``accel.dataflow``, ...) in the order of :attr:`axes`."""
        pick = asking_only_for_choices(choose)
        picked = {field: pick(PARAM_PREFIX + name, getattr(self, field)) for field, (_, name) in _AXES.items()}
        clock = picked["clock_mhz"]
        return Accelerator(
            rows=picked["rows"], cols=picked["cols"], dataflow=picked["dataflows"], flex_set=self.flex_set,
            rf_bytes=picked["rf_bytes"], gb_bytes=picked["gb_kib"] * 1024,
            dram_bw=gbps_to_bytes_per_cycle(picked["dram_gbps"], clock), dram_latency=picked["dram_latency"],
            clock_mhz=clock, mac_bits=picked["mac_bits"], zero_skip=picked["zero_skip"],
            energy_table=picked["energy_table"], dram_type=picked["dram_type"],
        )

    def from_params(self, params: Mapping[str, Any]) -> Accelerator:
        """The accelerator :meth:`sample` built, from ``trial.params`` (keys without the ``accel.`` prefix are ignored).

        Parameters not present take the field's single value; a missing parameter of
        a field with several choices, a value outside the choices (a fixed field's
        parameter, when present, included), or an unknown ``accel.*`` name is a ValueError.
        """
        unknown = sorted(k for k in params if k.startswith(PARAM_PREFIX) and k not in _FIELD_OF)
        if unknown:
            raise ValueError(f"{self.OWNER}: unknown parameter(s) {unknown}; allowed: {sorted(_FIELD_OF)}")
        check = params_chooser(params, self.OWNER)
        for name, field in _FIELD_OF.items():
            if name in params and len(getattr(self, field)) == 1:  # fixed: never asked, but must match
                check(name, getattr(self, field))
        return super().from_params(params)

    def _at(self, index: int) -> Accelerator:
        """The ``index``-th accelerator of the product (the last field varies fastest)."""
        picked = {}
        for field, values in reversed(self.axes.items()):
            index, digit = divmod(index, len(values))
            picked[PARAM_PREFIX + _AXES[field][1]] = values[digit]
        return self.build(lambda name, options: picked[name])

    def grid(self, limit: int | None = None, rng: np.random.Generator | None = None) -> list[Accelerator]:
        """Every accelerator of the Cartesian product, in product order (last field fastest).

        With ``limit`` smaller than :attr:`size`, a subset of ``limit`` distinct
        accelerators drawn without replacement with ``rng`` (``default_rng(0)`` when
        not given, so the subset is reproducible), still in product order.
        """
        return list(GridPoints(self, self.grid_indices(limit, rng)))

    def grid_indices(self, limit: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """The product indices of :meth:`grid`'s accelerators (the same draw for the same ``limit`` and ``rng``)."""
        size = self.size
        if limit is not None:
            if not is_integer(limit) or limit < 1:
                raise ValueError(f"limit must be an integer >= 1 or None, got {limit!r}")
            if limit < size:
                rng = np.random.default_rng(0) if rng is None else rng
                return np.sort(rng.choice(size, size=int(limit), replace=False))
        return np.arange(size)

    def stacked(self, indices: np.ndarray | None = None) -> AcceleratorParams:
        """The accelerators at product ``indices`` (all when None) as the cost model's arrays: equal to
        ``stack`` of the same :meth:`grid` points, without building an :class:`Accelerator` per point.

        Every point would build: each choice of each field, and the DRAM bandwidth at its
        extremes (it depends on GB/s and the clock together), are built as accelerators first.
        """
        self._check_every_choice_builds()
        axes = self.axes
        indices = np.arange(self.size) if indices is None else np.asarray(indices, np.int64)
        digits = dict(zip(axes, np.unravel_index(indices, tuple(len(v) for v in axes.values()))))

        def column(field: str, dtype=np.float64, of=lambda value: value) -> np.ndarray:
            return np.asarray([of(value) for value in axes[field]], dtype)[digits[field]]

        # per (GB/s, clock) pair, as Accelerator computes it
        bandwidths = np.asarray([[gbps_to_bytes_per_cycle(gbps, clock) for clock in axes["clock_mhz"]]
                                 for gbps in axes["dram_gbps"]])
        clock = column("clock_mhz")
        cols = column("cols", np.int32)
        return AcceleratorParams(
            rows=column("rows", np.int32), cols=cols, dataflow=column("dataflows", np.int32, dataflow_code),
            flex_mask=np.broadcast_to(np.asarray([d in self.flex_set for d in DATAFLOWS], np.float32),
                                      (len(indices), len(DATAFLOWS))).copy(),
            rf_bytes=column("rf_bytes").astype(np.float32), gb_bytes=(column("gb_kib") * 1024).astype(np.float32),
            dram_bw=bandwidths[digits["dram_gbps"], digits["clock_mhz"]].astype(np.float32),
            dram_latency=column("dram_latency").astype(np.float32), clock_hz=(clock * 1e6).astype(np.float32),
            mac_bits=column("mac_bits").astype(np.float32), zero_skip=column("zero_skip").astype(np.float32),
            simd_lanes=cols.astype(np.float32),  # a space's accelerators give the SIMD unit one lane per column
            energy=np.stack([[energy_vector(t, d) for d in self.dram_type] for t in self.energy_table])[
                digits["energy_table"], digits["dram_type"]])

    def _check_every_choice_builds(self) -> None:
        first = {PARAM_PREFIX + name: getattr(self, field)[0] for field, (_, name) in _AXES.items()}
        trials = [{**first, PARAM_PREFIX + _AXES[field][1]: value} for field in _AXES for value in getattr(self, field)]
        trials += [{**first, PARAM_PREFIX + "dram_gbps": gbps, PARAM_PREFIX + "clock_mhz": clock}
                   for gbps in (min(self.dram_gbps), max(self.dram_gbps))
                   for clock in (min(self.clock_mhz), max(self.clock_mhz))]
        for picked in trials:
            self.build(lambda name, options, picked=picked: picked[name])

    # to_dict / from_dict / to_json / from_json: JsonSpec's (tuples as JSON lists; unknown fields refused)


class GridPoints(Sequence):
    """Accelerators of a space's product at some indices, each built when read (a sweep builds only its front)."""

    def __init__(self, space: AcceleratorSpace, indices: np.ndarray):
        self.space, self.indices = space, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Accelerator:
        return self.space._at(int(self.indices[position]))


#: A Squeezelerator-like space (Kwon et al., DAC'18: N x N PEs with N = 8 to 32, WS/OS/flex,
#: 128 KB buffer, 8 -> 16 register-file entries, 16 GB/s, 100 cycles), widened around it.
#: The squeezelerator preset is a point of it (up to its name).
DEFAULT_ACCELERATOR_SPACE = AcceleratorSpace()


# --- presets ----------------------------------------------------------------------------------

PRESETS: dict[str, Accelerator] = {
    # Kwon et al., DAC'18, section 4.1: 32 x 32 PEs, per-layer WS or OS,
    # 128 KB global buffer, 16-bit integer multipliers, register file of 8 entries of
    # 16 bit (the final design doubled it to 16 entries), DRAM modelled as 100 cycles
    # latency and 16 GB/s effective bandwidth, zero weights skipped (the paper models
    # 40 % weight sparsity). Kwon et al. (DAC'18) give no clock: 500 MHz is an assumption, which
    # makes 16 GB/s = 32 bytes per cycle.
    "squeezelerator": Accelerator(
        rows=32, cols=32, dataflow=FLEX, flex_set=("ws", "os"), rf_bytes=16, gb_bytes=128 * 1024,
        dram_bw=gbps_to_bytes_per_cycle(16, 500), dram_latency=100, clock_mhz=500, mac_bits=16,
        zero_skip=True, name="squeezelerator"),
    # Chen et al., ISCA'16 / JSSC'17: 12 x 14 = 168 PEs, row stationary, 108 KB global
    # buffer, 0.5 KB of register file / scratchpad per PE, 16-bit fixed point, 200 MHz.
    # DRAM bandwidth is not a figure of the papers' model; 4 GB/s (20 bytes per cycle,
    # an LPDDR-class channel) is our choice. Latency 100 cycles as for the others. The
    # chip clock-gates on zero activations (saves energy, not cycles): zero_skip False.
    "eyeriss": Accelerator(
        rows=12, cols=14, dataflow="rs", rf_bytes=512, gb_bytes=108 * 1024,
        dram_bw=gbps_to_bytes_per_cycle(4, 200), dram_latency=100, clock_mhz=200, mac_bits=16,
        zero_skip=False, name="eyeriss"),
    # Jouppi et al., ISCA'17: 256 x 256 systolic 8-bit MACs, weight stationary, 24 MiB
    # unified buffer, 700 MHz, 34 GB/s DDR3 weight memory. Register file: one weight
    # (double-buffered) and the partial sum per cell, taken as 4 bytes. DRAM latency
    # 100 cycles (assumed; not given by the paper).
    "tpu_v1": Accelerator(
        rows=256, cols=256, dataflow="ws_systolic", rf_bytes=4, gb_bytes=24 * 1024 * 1024,
        dram_bw=gbps_to_bytes_per_cycle(34, 700), dram_latency=100, clock_mhz=700, mac_bits=8,
        zero_skip=False, name="tpu_v1"),
    # Du et al., ISCA'15: 8 x 8 PEs, output stationary, 1 GHz, 16-bit fixed point, on-chip
    # SRAM 288 KB in total, modelled as one global buffer (NBin and NBout 64 KB each,
    # SB 128 KB; the 288 KB figure as usually quoted also counts a 32 KB instruction
    # buffer, so the data buffers alone would be 256 KB). ShiDianNao sits next to the sensor and keeps the model on chip; for a
    # shared-DRAM comparison we assume 8 GB/s and 100 cycles. Register file 64 bytes per PE
    # (assumed: a few 16-bit FIFO entries and the accumulator).
    "shidiannao": Accelerator(
        rows=8, cols=8, dataflow="os", rf_bytes=64, gb_bytes=288 * 1024,
        dram_bw=gbps_to_bytes_per_cycle(8, 1000), dram_latency=100, clock_mhz=1000, mac_bits=16,
        zero_skip=False, name="shidiannao"),
}


def preset(name: str) -> Accelerator:
    """A published accelerator by name (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown accelerator preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


__all__ = ["AcceleratorSpace", "DEFAULT_ACCELERATOR_SPACE", "PARAM_PREFIX", "PRESETS", "preset"]
