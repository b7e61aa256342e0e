"""Unit-energy tables and the area estimate.

Energy follows the Eyeriss method (Chen et al., ISCA'16): count the accesses at each
level (MAC, register file, inter-PE network, global buffer, DRAM) and multiply each
by a unit energy. Units here are picojoules per access of a 16-bit word (per 16-bit
MAC for the MAC), and are scaled with bit width:

* multiplier energy ~ bits^2 (Lee et al., "Resource-efficient convolutional networks: a
  survey": halving the bit width makes a multiplier about 4x cheaper): a MAC of ``mac_bits`` costs ``mac * (mac_bits / 16) ** 2``;
* storage and movement ~ bits: an access of a ``b``-bit word costs ``level * b / 16``.

Three built-in tables, and any table read from a file (``energy_table=PATH``: codesign's
per-level table or an Accelergy ERT, :mod:`cost_models.energy_files`):

``eyeriss``
    Normalised to one 16-bit MAC: RF 1, inter-PE 2, global buffer 6, DRAM 200,
    MAC 1. To report picojoules, one normalised unit is taken as the energy of a
    16-bit integer MAC at 45 nm from Horowitz (ISSCC'14), 0.85 pJ (a 16-bit multiply,
    interpolated as ~bits^2 between 0.2 pJ at 8 bit and 3.1 pJ at 32 bit, plus a
    0.05 pJ add). Ratios, not absolute values, are what this table is for.
``horowitz45``
    Absolute 45 nm figures: 16-bit MAC 0.85 pJ; register file 0.5 pJ (Han et al.'s
    1 pJ per 32-bit access, halved); inter-PE hop 1.0 pJ (2x RF, the Eyeriss
    ratio); global-buffer SRAM 2.5 pJ (8 KB SRAM, 10 pJ per 64-bit read, per 16
    bits; Han et al.'s 5 pJ per 32-bit access agrees); DRAM 320 pJ (Han et al.'s
    640 pJ per 32-bit access; Horowitz gives 1.3-2.6 nJ per 64-bit word).
``horowitz45_sram``
    ``horowitz45`` with a global buffer whose access energy grows with its capacity,
    through Horowitz's (ISSCC'14, 45 nm, 0.9 V) three SRAM read energies per 64-bit word:
    8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ (:data:`SRAM_READ_PJ_64BIT`). Between and beyond
    them the energy is a power law of the capacity (straight lines in log-log, the end
    pieces extended): 2.5 pJ per 16-bit access at 8 KiB, 5 pJ at 32 KiB, 25 pJ at 1 MiB,
    so a larger buffer saves DRAM traffic but costs more per access. It is differentiable
    in ``gb_bytes``. The register file stays at 0.5 pJ (Horowitz gives no sizes for it).

Vector operations on the SIMD unit (pooling, element-wise add) cost
``VECTOR_OP_FRACTION`` of a MAC: a 16-bit add is 0.05 pJ against 0.85 pJ.

Area (mm^2, 45 nm): from Horowitz's area figures, a 16-bit integer multiplier is
about 1,000 um^2 (8-bit 282, 32-bit 3,495, ~bits^2) and a 16-bit adder about 70
um^2; with muxes and control a PE's datapath is taken as 1,600 um^2 at 16 bits,
scaled ~bits^2. Register files (flip-flop based) cost 3 um^2 per bit; SRAM with its
periphery 0.5 um^2 per bit (a 45 nm 6T cell is ~0.35 um^2). These are documented
estimates for ranking designs, not layout results.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Levels(NamedTuple):
    """One value per memory level: accesses, unit energies or energies, each under its level's name."""

    mac: Any  # the MACs (or vector operations)
    rf: Any  # the PEs' register files
    noc: Any  # the inter-PE network
    gb: Any  # the global buffer
    dram: Any  # DRAM


#: The memory levels, in the order of every per-level array axis of the cost model's results.
LEVELS = Levels._fields

PJ_PER_EYERISS_UNIT = 0.85

ENERGY_TABLES: dict[str, dict[str, float]] = {
    "eyeriss": {level: value * PJ_PER_EYERISS_UNIT for level, value in
                Levels(mac=1.0, rf=1.0, noc=2.0, gb=6.0, dram=200.0)._asdict().items()},
    "horowitz45": {"mac": 0.85, "rf": 0.5, "noc": 1.0, "gb": 2.5, "dram": 320.0},
}
# the same units; its gb entry is for SIZED_TABLES' reference capacity, scaled by sram_scale for others
ENERGY_TABLES["horowitz45_sram"] = dict(ENERGY_TABLES["horowitz45"])

#: Horowitz (ISSCC'14, 45 nm, 0.9 V): SRAM read energy per 64-bit word, (capacity in bytes, pJ).
SRAM_READ_PJ_64BIT = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
#: Tables whose global-buffer energy depends on its capacity -> the capacity their ``gb`` entry is for.
SIZED_TABLES = {"horowitz45_sram": SRAM_READ_PJ_64BIT[0][0]}


def sram_scale(capacity_bytes, reference_bytes, xp=np):
    """An SRAM's access energy at ``capacity_bytes`` over its energy at ``reference_bytes`` (log-log interpolation
    of :data:`SRAM_READ_PJ_64BIT`, the end pieces extended); ``xp``: numpy or jax.numpy."""
    def log_energy(capacity):
        (c0, e0), (c1, e1), (c2, e2) = ((np.log(c), np.log(e)) for c, e in SRAM_READ_PJ_64BIT)
        x = xp.log(capacity)
        return xp.where(x <= c1, e0 + (x - c0) * (e1 - e0) / (c1 - c0), e1 + (x - c1) * (e2 - e1) / (c2 - c1))
    return xp.exp(log_energy(capacity_bytes) - log_energy(reference_bytes))

#: DRAM energy per bit transferred (pJ) by type, as Accelergy's CactiDRAM estimator tabulates it (the
#: ``type2energy`` table of its DRAM component, ``hwcomponents``/``accelergy-cacti-plug-in``), with the
#: sources it gives: LPDDR4 "public data"; LPDDR Malladi et al., ISCA'12; DDR3 Chatterjee et al., MICRO'17;
#: GDDR5 and HBM2 (O'Connor et al., MICRO'17, give the same 14 and 3.9 pJ/bit); HMC 4.2 (ASPLOS'17,
#: doi 10.1145/3093336.3037702). ``Accelerator(dram_type=...)`` prices DRAM by it, whatever the table.
DRAM_PJ_PER_BIT = {"LPDDR4": 8.0, "LPDDR": 40.0, "DDR3": 70.0, "GDDR5": 14.0, "HBM2": 3.9, "HMC": 4.2}


def check_dram_type(dram_type) -> str:
    """``dram_type`` as an Accelerator's: '' (the energy table's DRAM) or a key of :data:`DRAM_PJ_PER_BIT`."""
    if not isinstance(dram_type, str) or (dram_type and dram_type not in DRAM_PJ_PER_BIT):
        raise ValueError(f"field 'dram_type' must be '' (the energy table's DRAM) or one of "
                         f"{', '.join(DRAM_PJ_PER_BIT)}; got {dram_type!r}")
    return dram_type


def dram_pj_per_16bit(dram_type: str) -> float:
    """A DRAM type's energy per 16-bit word (the unit of the tables' ``dram`` entries)."""
    return DRAM_PJ_PER_BIT[dram_type] * 16.0


VECTOR_OP_FRACTION = 0.06

PE_DATAPATH_UM2_16BIT = 1600.0
RF_UM2_PER_BIT = 3.0
SRAM_UM2_PER_BIT = 0.5


def energy_vector(table: str, dram_type: str = "") -> np.ndarray:
    """The unit energies of a named table or a table file (:mod:`cost_models.energy_files`) as a float32 array
    ordered like LEVELS (pJ), then the capacity the global buffer's entry is for (0: the same at every capacity;
    see :data:`SIZED_TABLES`); with ``dram_type``, DRAM priced by :data:`DRAM_PJ_PER_BIT` instead of the table."""
    if table in ENERGY_TABLES:
        vector = np.asarray([ENERGY_TABLES[table][level] for level in LEVELS] + [SIZED_TABLES.get(table, 0)],
                            dtype=np.float32)
    else:
        from cost_models.energy_files import energy_table_file

        vector = energy_table_file(table).vector()
    if check_dram_type(dram_type):
        vector[LEVELS.index("dram")] = dram_pj_per_16bit(dram_type)
    return vector


def area_mm2(rows, cols, mac_bits, rf_bytes, gb_bytes):
    """Chip area estimate in mm^2: PE datapaths + register files + global buffer."""
    pes = rows * cols
    datapath = pes * PE_DATAPATH_UM2_16BIT * (mac_bits / 16.0) ** 2
    register_files = pes * rf_bytes * 8 * RF_UM2_PER_BIT
    buffer = gb_bytes * 8 * SRAM_UM2_PER_BIT
    return (datapath + register_files + buffer) * 1e-6
