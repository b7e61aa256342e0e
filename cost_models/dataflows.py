"""The dataflow mapping table: every dataflow is one row of data, not a code path.

A convolution is the loop nest over ``G K C P Q R S`` (groups, output channels and
input channels per group, output rows and columns, filter rows and columns). A
dataflow says which loop dimensions go to the PE rows, which to the PE columns,
which run in time inside one mapping of the array ("inner": streamed while the
stationary operand stays put) and which run in time outside it ("outer": each
iteration reloads the stationary operand). The cost model reads only this table:

``rows`` / ``cols``
    Dimensions whose product is laid out along the PE rows / columns. When the
    product exceeds the array it is folded (ceil division); when it is smaller the
    rest of the array idles.
``inner``
    Dimensions iterated in time per mapping (one MAC per PE per cycle); the others
    not on an axis are ``outer``.
``stationary``
    The operand (``weight``, ``input`` or ``output``) held in the PEs: it stays
    there across the outer loops it does not depend on, so it is not re-read from
    the buffer for them (for ``output``: partial sums leave the PEs only for the
    reduction dimensions folded over the array, not per outer reduction step).
``rf_block``
    A dimension split between outer and inner by register-file capacity: each PE
    keeps ``rf_entries`` partial sums (or filter rows) of that dimension, so one
    stationary load serves that many of them (Squeezelerator OS: a PE reuses the
    input it holds across filters; Eyeriss RS: filter rows of several filters).
``zero_skip``
    Weights are streamed one at a time, so zero weights can be skipped when the
    accelerator supports it (``inner`` time x weight density).
``fill``
    Pipeline fill/drain cycles per mapping: ``a*rows + b*cols + c``.
``reload``
    Cycles to load the stationary operand per outer iteration: ``a*rows + b*cols +
    c``, with ``rows`` the PE rows the mapping occupies (data enter one row per
    cycle); ``reload_hidden`` when the next load overlaps the current stream (WS: a
    register file of >= 2 entries double-buffers the weights; OS: the preload buffer
    fills the next input block while the stream buffer broadcasts weights, Kwon et al.,
    DAC'18, section 4.1.2). Without the OS overlap, the 1x1 layers of the six networks of
    experiments/squeezelerator.py run up to 18x slower on OS than on WS, against the
    1.4x to 7.0x the paper reports (7.5x with it).
``writeback``
    Cycles to drain results held in the PEs per mapping, per ``rf_block`` entry and
    per occupied array row (Squeezelerator OS: results leave through the bottom row;
    the paper notes this step is not hidden).
``sliding``
    Inputs are reused across neighbouring windows inside the array (OS shifts
    inputs between PEs, RS passes rows diagonally): each input is read from the
    buffer once per mapping instead of once per (window position, filter tap).
``fc_gemv``
    A fully connected layer has a 1x1 output map, which this dataflow cannot spread
    over the array; it runs as a matrix-vector product (input features on rows,
    outputs on columns), as the Squeezelerator does (Kwon et al., DAC'18: FC layers "cannot
    take advantage of either dataflow").
``rf_per_mac`` / ``noc_per_mac``
    Register-file accesses and inter-PE transfers per MAC.
``run_offset``
    Cycles added once per group (SCALE-Sim reports the index of the last cycle,
    i.e. one less than the count, and runs a depthwise layer channel by channel).

``ws`` and ``os`` follow Kwon et al. (DAC'18) section 4.1.2, ``rs`` follows Eyeriss, and the
three systolic rows follow SCALE-Sim: OS rows <- P*Q, cols <- K,
time <- R*S*C; WS rows <- R*S*C, cols <- K, time <- P*Q; IS rows <- R*S*C,
cols <- P*Q, time <- K; their fill terms reproduce SCALE-Sim's compute cycles
(see experiments/scalesim_reference).

``flex`` is not a row: it picks, per layer, the fastest of the accelerator's
``flex_set`` (the Squeezelerator's WS-or-OS choice).
"""

from __future__ import annotations

DIMS = ("G", "K", "C", "P", "Q", "R", "S")
DIM_INDEX = {d: i for i, d in enumerate(DIMS)}

#: Loop dimensions each operand depends on (reduction dims C, R, S for outputs).
RELEVANT = {
    "weight": ("G", "K", "C", "R", "S"),
    "input": ("G", "C", "P", "Q", "R", "S"),
    "output": ("G", "K", "P", "Q"),
}
REDUCTION = ("C", "R", "S")

#: One row per dataflow, keyed by name: what the cost model reads (fields described above).
ROWS = {
    "ws": dict(rows="C", cols="K", inner="PQ", stationary="weight", rf_block="", zero_skip=0,
               fill=(1, 0, 0), reload=(1, 0, 0), reload_hidden=1, writeback=0,
               sliding=0, fc_gemv=0, rf_per_mac=2, noc_per_mac=2, run_offset=0),
    "os": dict(rows="P", cols="Q", inner="RS", stationary="output", rf_block="K", zero_skip=1,
               fill=(0, 0, 0), reload=(1, 0, 0), reload_hidden=1, writeback=1,
               sliding=1, fc_gemv=1, rf_per_mac=3, noc_per_mac=2, run_offset=0),
    "rs": dict(rows="RC", cols="P", inner="SQ", stationary="weight", rf_block="K", zero_skip=0,
               fill=(1, 0, 0), reload=(0, 0, 0), reload_hidden=0, writeback=0,
               sliding=1, fc_gemv=1, rf_per_mac=3, noc_per_mac=1, run_offset=0),
    "os_systolic": dict(rows="PQ", cols="K", inner="CRS", stationary="output", rf_block="", zero_skip=0,
                        fill=(1, 1, -2), reload=(0, 0, 0), reload_hidden=0, writeback=0,
                        sliding=0, fc_gemv=0, rf_per_mac=2, noc_per_mac=2, run_offset=-1),
    "ws_systolic": dict(rows="CRS", cols="K", inner="PQ", stationary="weight", rf_block="", zero_skip=0,
                        fill=(2, 1, -2), reload=(0, 0, 0), reload_hidden=0, writeback=0,
                        sliding=0, fc_gemv=0, rf_per_mac=2, noc_per_mac=2, run_offset=-1),
    "is_systolic": dict(rows="CRS", cols="PQ", inner="K", stationary="input", rf_block="", zero_skip=0,
                        fill=(2, 1, -2), reload=(0, 0, 0), reload_hidden=0, writeback=0,
                        sliding=0, fc_gemv=0, rf_per_mac=2, noc_per_mac=2, run_offset=-1),
}

#: The single dataflows, in table order (their integer codes).
DATAFLOWS = tuple(ROWS)
DATAFLOW_CODE = {name: code for code, name in enumerate(DATAFLOWS)}
#: ``flex`` picks per layer among a set of single dataflows.
FLEX = "flex"
FLEX_CODE = len(DATAFLOWS)
ALL_DATAFLOW_NAMES = DATAFLOWS + (FLEX,)
#: SCALE-Sim's names for its three systolic dataflows.
SCALESIM_DATAFLOWS = {"os": "os_systolic", "ws": "ws_systolic", "is": "is_systolic"}

#: The mapping a fully connected layer falls back to when ``fc_gemv`` is set.
GEMV = "ws"


def describe(name: str) -> str:
    """One line saying what a dataflow maps where (for the CLI and the README)."""
    if name == FLEX:
        return "flex: per layer, the fastest of the accelerator's flex_set"
    row = ROWS[name]
    outer = "".join(d for d in DIMS if d not in row["rows"] + row["cols"] + row["inner"])
    return (f"{name}: rows <- {'*'.join(row['rows'])}, cols <- {'*'.join(row['cols'])}, "
            f"time <- {'*'.join(row['inner'])} (inner) x {'*'.join(outer) or '1'} (outer)")


def dataflow_code(name: str) -> int:
    if name == FLEX:
        return FLEX_CODE
    if name not in DATAFLOW_CODE:
        raise ValueError(f"field 'dataflow' must be one of {', '.join(ALL_DATAFLOW_NAMES)}; got {name!r}")
    return DATAFLOW_CODE[name]
