"""The analytical PE-array cost model: pure JAX, jitted, evaluated as [layers x accelerators] arrays.

Per layer and accelerator it computes, for each dataflow of the mapping table the
accelerator may use (``dataflows.ROWS``):

* compute cycles from the mapping: spatial folds of the row and column dimensions,
  outer iterations (each reloading the stationary operand), inner streamed time
  (x weight density when zeros are skipped, x passes when operands are wider than
  the MAC), pipeline fill, and write-back of results held in the PEs;
* buffer accesses from reuse: an operand is re-read from the global buffer once per
  outer iteration and per fold of an array axis that it does not depend on; the
  stationary operand stays in the PEs across outer loops it does not depend on;
  partial sums go back to the buffer once per outer or folded reduction step;
* DRAM traffic and stalls from loop tiling, chosen by enumerating tile counts over
  output channels, output rows and input channels and two loop orders (weights or
  inputs resident), keeping the fastest that fits the double-buffered global
  buffer (within 1 % of the fastest, the least traffic); time = max(compute, DRAM)
  plus the unhidden first load and last store;
* energy = accesses x unit energy per level (scaled by bit width), area from the
  accelerator's size.

Pooling and element-wise layers have no MACs: they run on the 1-D SIMD unit
(``_vector_work``); every layer is costed both ways and one select keeps its own
(no branching in the compiled program).

``flex`` then picks per layer the fastest dataflow of the accelerator's ``flex_set``
(ties broken by energy); a single-dataflow accelerator takes its own row.

How it is laid out, and why that is fast: there is no vmap. A call evaluates 2-D
arrays with the layers down and the accelerators across (``[layers, accelerators]``,
the accelerator axis innermost), so every elementwise step is one long vector loop.
A quantity of the layer alone (MACs, operand sizes, tiling extents) is a
``[layers, 1]`` column, computed once per layer, not once per accelerator. The
dataflow table is read while tracing: each row is unrolled with its dimension sets as
Python constants, so "the product of the dimensions on the PE rows" is one or two
multiplications, not a 7-element masked product. Before the call,
:func:`network_costs` splits the accelerator batch by the dataflows it may use (one
row for a single-dataflow accelerator, the flex set for ``flex``), so a grid computes
only the rows it needs, and it runs large batches in chunks of :data:`CHUNK_EVALUATIONS`.

Everything is float32. Integer quantities (loop bounds, folds, tile counts) are
exact in float32 below 2**24; the valid ranges of :class:`~cost_models.workload.Layer`
and :class:`~cost_models.accelerator.Accelerator` keep every input field (and ``rows *
cols``) below it, and every product far below float32's largest value (their module
docstrings give the arithmetic). Inputs are not checked here: build them through those
classes. The functions are differentiable in the continuous
accelerator parameters (bandwidth, latency, clock, unit energies): under a JAX
transformation the batch cannot be split by value, so every row is computed and
each accelerator selects its own.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cost_models.accelerator import AcceleratorParams
from cost_models.dataflows import DATAFLOW_CODE, DATAFLOWS, DIMS, FLEX_CODE, GEMV, RELEVANT, REDUCTION, ROWS
from cost_models.energy import LEVELS, VECTOR_OP_FRACTION, area_mm2
from cost_models.workload import KIND_CODE, LayerArrays

N_DATAFLOWS = len(DATAFLOWS)
#: Multiples of the smallest feasible outer tile count tried (output channels or rows).
OUTER_TILE_MULTIPLES = (1.0, 2.0)
#: Tile counts tried for input channels (each split spills partial sums to DRAM).
CHANNEL_TILE_COUNTS = (1.0, 2.0, 4.0, 16.0, 64.0)
#: Tilings this close to the fastest count as equally fast; the least DRAM traffic among them wins.
TILING_TIME_TOLERANCE = 0.01
#: Flex: dataflows this close to the fastest count as equally fast; the least energy among them wins.
FLEX_TIME_TOLERANCE = 1e-6
#: Layer x accelerator evaluations per compiled call; larger batches run in chunks of about this
#: size: fastest measured (the arrays stay in cache), bounded memory, and XLA's CPU runtime
#: overflowed the default 8 MB stack at 131,072 per call.
CHUNK_EVALUATIONS = 16384
#: Calls of at least this many layer evaluations are split by dataflow (smaller ones run every row).
SPLIT_FROM_EVALUATIONS = 2048


class LayerCosts(NamedTuple):
    """Per-layer results (arrays shaped [..., layers])."""

    cycles: jax.Array
    compute_cycles: jax.Array
    stall_cycles: jax.Array
    utilization: jax.Array
    dataflow: jax.Array  # int32 code of the dataflow used
    macs: jax.Array  # MACs executed (zero weights skipped where applicable)
    accesses: jax.Array  # [..., 5] per level of energy.LEVELS: MACs (or vector ops), RF, inter-PE, buffer, DRAM (words)
    energy: jax.Array  # [..., 5] pJ per level of energy.LEVELS
    dram_bytes: jax.Array
    buffer_overflow: jax.Array  # 1.0 when even the finest tiling does not fit the buffer


class NetworkCosts(NamedTuple):
    """Totals over a network (arrays shaped [...]) and the per-layer breakdown."""

    cycles: jax.Array
    compute_cycles: jax.Array
    stall_cycles: jax.Array
    latency_s: jax.Array
    energy_pj: jax.Array
    energy_by_level: jax.Array  # [..., 5] pJ per level of energy.LEVELS
    utilization: jax.Array
    area_mm2: jax.Array
    #: Layers that fit no tiling of the global buffer (LayerCosts.buffer_overflow summed): their
    #: cycles and energy are those of the least-traffic tiling, which does not fit, so a design
    #: with any is not buildable as costed and must not be ranked as if it were.
    unmappable_layers: jax.Array
    layers: LayerCosts | None  # None when only totals were asked for


# --- inputs as columns (layers) and rows (accelerators) -----------------------------------------

_LAYER_FIELDS = ("G", "K", "C", "P", "Q", "R", "S", "H", "W", "stride", "w_bits", "a_bits", "w_density", "mask")
#: AcceleratorParams' per-accelerator scalars (flex_mask and energy are per dataflow and per level).
_SCALAR_FIELDS = tuple(f for f in AcceleratorParams._fields if f not in ("flex_mask", "energy"))


def _column_shape(layers: LayerArrays, n_accelerators: int) -> tuple[int, int]:
    """[X, 1] layer columns (X = all layers of all networks), or [networks, bucket] with one accelerator.

    With one accelerator every array would be [X, 1], and the per-network sums read
    them as [networks, bucket, 1]; XLA's CPU loops over such unit axes run element by
    element, about 9x slower per evaluation than with an accelerator axis of 16 or
    more. Laid out [networks, bucket], the same elementwise arithmetic runs along the
    bucket, and the sums read it as [networks, 1, bucket] without re-indexing.
    """
    n_networks, bucket = jnp.shape(layers.kind)
    if n_accelerators == 1 and bucket > 1:
        return n_networks, bucket
    return n_networks * bucket, 1


def _layer_columns(layers: LayerArrays, n_accelerators: int) -> dict:
    """Every layer field as a float32 column (:func:`_column_shape`); ``kind`` as int."""
    shape = _column_shape(layers, n_accelerators)
    column = lambda x: jnp.reshape(jnp.asarray(x), shape)
    out = {name: column(getattr(layers, name)).astype(jnp.float32) for name in _LAYER_FIELDS}
    out["kind"] = column(layers.kind)
    return out


def _accelerator_rows(acc: AcceleratorParams) -> dict:
    """Every accelerator field as a row [1, A]; per-dataflow flex flags and per-level energies apart."""
    row = lambda x: jnp.asarray(x)[None, :]
    out = {name: row(getattr(acc, name)).astype(jnp.float32) for name in _SCALAR_FIELDS if name != "dataflow"}
    out["dataflow"] = row(acc.dataflow)
    out["flex"] = [row(acc.flex_mask[:, code]) > 0 for code in range(N_DATAFLOWS)]
    out["unit"] = {level: row(acc.energy[:, i]) for i, level in enumerate(LEVELS)}  # pJ per 16-bit access (per MAC)
    return out


def _product(*factors):
    """Left-to-right product that skips Python 1.0 factors (dimensions a mapping leaves out)."""
    out = 1.0
    for factor in factors:
        if not (isinstance(factor, float) and factor == 1.0):
            out = factor if isinstance(out, float) and out == 1.0 else out * factor
    return out


def _dims(layer: dict, letters: str):
    return _product(*(layer[d] for d in letters))


def _affine(coeffs, rows, cols):
    """``a*rows + b*cols + c`` with the zero terms left out (the table's coefficients are constants)."""
    a, b, c = (float(x) for x in coeffs)
    terms = [x if k == 1.0 else k * x for k, x in ((a, rows), (b, cols)) if k]
    if c:
        terms.append(c)
    return functools.reduce(lambda x, y: x + y, terms) if terms else 0.0


# --- work inside the chip ---------------------------------------------------------------------------

class _Work(NamedTuple):
    """A layer's work inside the chip (everything but DRAM) under one dataflow, [X, A] or broadcastable."""

    compute: jax.Array  # compute cycles
    busy: jax.Array  # unit-cycles of useful work (PE-cycles or lane-cycles)
    units: jax.Array  # units working in parallel: PEs or SIMD lanes
    macs: jax.Array  # MACs executed (0 on the SIMD unit)
    ops: jax.Array  # operations at the compute level: MACs or vector operations
    ops_energy: jax.Array  # pJ of those operations
    rf: jax.Array  # register-file accesses (words)
    noc: jax.Array  # inter-PE transfers (words)
    gb: jax.Array  # global-buffer accesses (words), not counting the DRAM fills
    gb_16bit: jax.Array  # the same in 16-bit words, the unit of the energy tables


class _Shared(NamedTuple):
    """Per layer and accelerator, what every dataflow row uses."""

    rf_entries: jax.Array  # partial sums (or filter rows) a PE's register file holds
    passes: jax.Array  # MAC passes per multiply-accumulate (operands wider than the multiplier)
    skip_density: jax.Array  # weight density where the accelerator skips zeros, else 1


def _mapping(name: str, layer: dict, acc: dict, shared: _Shared):
    """Compute cycles and buffer-level access counts of a layer under one table row (unrolled at trace time)."""
    row = ROWS[name]
    assert len(row["rf_block"]) <= 1, "the table splits at most one dimension by register-file capacity"
    extent_rows = _dims(layer, row["rows"])
    extent_cols = _dims(layer, row["cols"])
    folds_rows = jnp.ceil(extent_rows / acc["rows"])
    folds_cols = jnp.ceil(extent_cols / acc["cols"])
    folds = folds_rows * folds_cols

    if row["rf_block"]:
        block_extent = _dims(layer, row["rf_block"])
        block = jnp.minimum(shared.rf_entries, block_extent)
        block_outer = jnp.ceil(block_extent / block)
    else:
        block, block_outer = 1.0, 1.0
    mapped = row["rows"] + row["cols"] + row["inner"]
    # Outer iteration count of each dimension (the rf_block dimension counts its blocks).
    outer = {d: block_outer if d in row["rf_block"] else 1.0 if d in mapped else layer[d] for d in DIMS}
    n_outer = _product(*outer.values())

    density_time = shared.skip_density if row["zero_skip"] else 1.0
    inner = _product(_dims(layer, row["inner"]), block)
    inner_time = _product(inner, density_time) * shared.passes

    # Loads and write-backs move one array row per cycle, so they take as many cycles
    # as the mapping occupies rows (on average over the folds), not the array's height.
    rows_in_use = extent_rows / folds_rows
    reload = _affine(row["reload"], rows_in_use, acc["cols"])
    if row["reload_hidden"] and not isinstance(reload, float):
        reload = jnp.where(shared.rf_entries >= 2, 0.0, reload)
    fill = _affine(row["fill"], acc["rows"], acc["cols"])
    per_mapping = inner_time
    for term in (reload, fill):
        if not (isinstance(term, float) and term == 0.0):
            per_mapping = per_mapping + term
    compute = _product(n_outer, per_mapping)
    if row["writeback"]:
        output_outer = _product(*(outer[d] for d in RELEVANT["output"]))
        compute = compute + _product(output_outer, row["writeback"] * rows_in_use * block)
    compute = folds * compute
    if row["run_offset"]:
        compute = compute + row["run_offset"] * layer["G"]

    # Buffer accesses: refetch factors from irrelevant outer loops and folded axes.
    def refetch(op):
        factors = [] if row["stationary"] == op else [outer[d] for d in DIMS if d not in RELEVANT[op]]
        if not any(d in RELEVANT[op] for d in row["rows"]):
            factors.append(folds_rows)
        if not any(d in RELEVANT[op] for d in row["cols"]):
            factors.append(folds_cols)
        return _product(*factors)

    G, K, C, P, Q, R, S = (layer[d] for d in DIMS)
    weights = G * K * C * R * S * shared.skip_density
    inputs = G * C * R * S * P * Q
    if row["sliding"]:
        inputs = jnp.minimum(G * C * layer["H"] * layer["W"], inputs)
    outputs = G * K * P * Q

    reduction = 1.0 if row["stationary"] == "output" else _product(*(outer[d] for d in REDUCTION))
    psum_passes = [reduction]
    if all(d in REDUCTION for d in row["rows"]) and row["rows"]:
        psum_passes.append(jnp.where(extent_rows > 1, folds_rows, 1.0))
    if all(d in REDUCTION for d in row["cols"]) and row["cols"]:
        psum_passes.append(jnp.where(extent_cols > 1, folds_cols, 1.0))

    macs = _product(G * K * C * P * Q * R * S, density_time)
    return dict(
        compute=compute,
        busy=macs * shared.passes,
        macs=macs,
        rf=macs * float(row["rf_per_mac"]),
        noc=macs * float(row["noc_per_mac"]),
        gb_weight=weights * refetch("weight"),
        gb_input=_product(inputs, refetch("input")),
        gb_output=outputs * (2.0 * _product(*psum_passes) - 1.0),
    )


def _array_work(name: str, layer: dict, acc: dict, shared: _Shared, gemv: dict | None) -> _Work:
    """A convolution or fully connected layer on the PE array under one dataflow."""
    mapping = _mapping(name, layer, acc, shared)
    if ROWS[name]["fc_gemv"] and gemv is not None:
        # Fully connected layers fall back to the GEMV mapping on dataflows that cannot spread them.
        is_fc = layer["kind"] == KIND_CODE["fc"]
        mapping = {k: jnp.where(is_fc, gemv[k], v) for k, v in mapping.items()}
    scale_a = layer["a_bits"] / 16.0
    scale_w = layer["w_bits"] / 16.0
    mac_scale = (acc["mac_bits"] / 16.0) ** 2
    macs = mapping["macs"]
    return _Work(
        compute=mapping["compute"],
        busy=mapping["busy"],
        units=acc["rows"] * acc["cols"],
        macs=macs,
        ops=macs,
        ops_energy=macs * acc["unit"]["mac"] * mac_scale * shared.passes,
        rf=mapping["rf"],
        noc=mapping["noc"],
        gb=mapping["gb_weight"] + mapping["gb_input"] + mapping["gb_output"],
        gb_16bit=mapping["gb_weight"] * scale_w + (mapping["gb_input"] + mapping["gb_output"]) * scale_a,
    )


def _vector_work(layer: dict, acc: dict, n_inputs) -> _Work:
    """A pooling or element-wise layer on the 1-D SIMD unit: no MACs, no PE-array traffic."""
    is_pool = layer["kind"] == KIND_CODE["pool"]
    G, C, P, Q, R, S = (layer[d] for d in "GCPQRS")
    ops = jnp.where(is_pool, G * C * P * Q * R * S, G * C * P * Q)
    # Per output element, one buffer word per input map read and one written.
    gb = (n_inputs + 1.0) * ops / jnp.where(is_pool, R * S, 1.0)
    scale_a = layer["a_bits"] / 16.0
    return _Work(
        compute=jnp.ceil(ops / acc["simd_lanes"]),
        busy=ops,
        units=acc["simd_lanes"],
        macs=0.0,
        ops=ops,
        ops_energy=ops * acc["unit"]["mac"] * VECTOR_OP_FRACTION * scale_a,
        rf=0.0,
        noc=0.0,
        gb=gb,
        gb_16bit=gb * scale_a,
    )


# --- DRAM: tiling -------------------------------------------------------------------------------------

class _Tiling(NamedTuple):
    """One candidate tiling's DRAM traffic (bytes), DRAM time, unhidden load/store time, feasibility."""

    traffic: jax.Array
    dram: jax.Array
    unhidden: jax.Array
    fits: jax.Array


def _tilings(layer: dict, acc: dict, is_vector, n_inputs) -> _Tiling:
    """Every candidate tiling, stacked on a leading axis of 21 in a fixed order (ties go to the first).

    Candidates: two loop orders (0: a weight tile resident, input tiles streamed; 1: an
    input tile resident, weight tiles streamed) x tile counts of the outer dimension
    (output channels for order 0, output rows for order 1) x input-channel tile counts
    (partial sums then spill to DRAM), plus the untiled layer. For each, the smallest
    inner tile count whose double-buffered footprint fits the buffer follows in closed
    form, because the footprint is linear in its inverse. The candidate axis leads, so
    every step is still a long loop over the accelerators.
    """
    G, K, C, P, Q, R, S = (layer[d] for d in DIMS)
    H, stride = layer["H"], layer["stride"]
    a_bytes = layer["a_bits"] / 8.0
    density = acc["zero_skip_density"]
    dense_weight_bytes = jnp.where(is_vector, 0.0, G * K * C * R * S * layer["w_bits"] / 8.0)
    weight_bytes = dense_weight_bytes * density
    input_bytes = n_inputs * G * C * H * layer["W"] * a_bytes
    output_bytes = G * K * P * Q * a_bytes
    grouped = G > 1
    half = acc["gb_bytes"] / 2.0
    GK = G * K

    multiples = jnp.asarray(OUTER_TILE_MULTIPLES, jnp.float32)[:, None, None, None]
    n_c = jnp.asarray(CHANNEL_TILE_COUNTS, jnp.float32)[None, :, None, None]
    inv_c = 1.0 / n_c
    # Input rows needed by a tile of P/n_p output rows: ((P/n_p - 1) * stride + R) / H of the map.
    halo = jnp.maximum(R - stride, 0.0) / H
    per_row = P * stride / H

    # Order 0: weights resident per (n_k, n_c); inputs streamed in n_p row tiles. The
    # smallest n_k for which some n_p <= P fits: with one output row per tile the
    # footprint is W/(n_k n_c) + I/n_c * R/H (/ n_k if grouped) + O/(n_k P) <= half.
    rows_one = halo + per_row / P
    # (Tile counts come from the dense weight size, so the candidate set does not depend on
    # sparsity and zero weights can only make every candidate cheaper.)
    base0 = jnp.where(grouped, (dense_weight_bytes + input_bytes * rows_one) * inv_c / half + output_bytes / (P * half),
                      (dense_weight_bytes * inv_c + output_bytes / P)
                      / jnp.maximum(half - input_bytes * inv_c * rows_one, 1e-9))
    outer = jnp.minimum(jnp.floor(base0) + 1.0, GK) * multiples
    inv_outer = 1.0 / outer
    inputs0 = input_bytes * inv_c * jnp.where(grouped, inv_outer, 1.0)
    weights0 = weight_bytes * inv_outer * inv_c
    outputs0 = output_bytes * inv_outer
    room0 = half - weights0 - inputs0 * halo
    n_p0 = jnp.maximum(jnp.ceil((inputs0 * per_row + outputs0) / jnp.maximum(room0, 1e-9)), 1.0)
    fits0 = (room0 > 0) & (n_p0 <= P) & (outer <= GK) & (n_c <= C)
    traffic0 = weight_bytes + input_bytes * jnp.where(grouped, 1.0, outer) + output_bytes * (2.0 * n_c - 1.0)
    tiles0 = outer * n_c * n_p0
    moved0 = weights0 + inputs0 * (halo + per_row / n_p0) + outputs0 / n_p0

    # Order 1: an input row tile resident per (n_p, n_c); weights streamed in n_k tiles.
    # The smallest n_p for which some n_k <= G*K fits: I/n_c (halo + per_row/n_p)
    # + (W/n_c + O/n_p) / (G K) <= half.
    base1 = ((input_bytes * inv_c * per_row + output_bytes / GK)
             / jnp.maximum(half - input_bytes * inv_c * halo - dense_weight_bytes * inv_c / GK, 1e-9))
    outer = jnp.minimum(jnp.floor(base1) + 1.0, P) * multiples
    inv_outer = 1.0 / outer
    inputs1 = input_bytes * inv_c * jnp.minimum(halo + per_row * inv_outer, 1.0)
    weights1 = weight_bytes * inv_c
    outputs1 = output_bytes * inv_outer
    room1 = half - inputs1
    n_k1 = jnp.maximum(jnp.ceil((weights1 + outputs1) / jnp.maximum(room1, 1e-9)), 1.0)
    fits1 = (room1 > 0) & (n_k1 <= GK) & (outer <= P) & (n_c <= C) & ~grouped
    traffic1 = input_bytes + weight_bytes * outer + output_bytes * (2.0 * n_c - 1.0)
    tiles1 = outer * n_c * n_k1
    moved1 = inputs1 + (weights1 + outputs1) / n_k1

    untiled = weight_bytes + input_bytes + output_bytes
    shape = jnp.broadcast_shapes(jnp.shape(traffic0)[2:], jnp.shape(traffic1)[2:], jnp.shape(half))
    stacked = lambda a, b, c: jnp.concatenate([jnp.broadcast_to(a, (*a.shape[:2], *shape)).reshape(-1, *shape),
                                               jnp.broadcast_to(b, (*b.shape[:2], *shape)).reshape(-1, *shape),
                                               jnp.broadcast_to(c, shape)[None]])
    traffic = stacked(traffic0, traffic1, untiled)
    inv_bw = 1.0 / acc["dram_bw"]
    latency = acc["dram_latency"]
    return _Tiling(traffic=traffic,
                   dram=traffic * inv_bw + stacked(tiles0, tiles1, jnp.ones(shape)) * latency,
                   # Unhidden transfers: the first tile's loads and the last tile's store.
                   unhidden=latency + stacked(moved0, moved1, untiled) * inv_bw,
                   fits=stacked(fits0, fits1, untiled <= acc["gb_bytes"]))


def _pick_tiling(compute, candidates: _Tiling):
    """The tiling to use for a given compute time (traffic, DRAM time, unhidden time) and the overflow flag.

    With double buffering, transfers overlap compute except the first load and the last
    store: total = max(compute + unhidden, DRAM time). Among the feasible tilings within
    ``TILING_TIME_TOLERANCE`` of the fastest, the one with the least DRAM traffic wins:
    a compute-bound layer should not take several times the traffic (and DRAM energy)
    to shorten its first load by a fraction of a percent. If nothing fits, the candidate
    with the least traffic is used and the layer is flagged.
    """
    traffic, dram, unhidden, fits = candidates
    n = traffic.shape[0]
    total = [jnp.maximum(compute + unhidden[i], dram[i]) for i in range(n)]
    any_fits = functools.reduce(jnp.logical_or, [fits[i] for i in range(n)])
    overflow = ~any_fits
    fastest = functools.reduce(jnp.minimum, [jnp.where(fits[i], total[i], jnp.inf) for i in range(n)])
    limit = fastest * (1.0 + TILING_TIME_TOLERANCE)
    best_key = None
    for i in range(n):
        key = jnp.where(overflow, traffic[i], jnp.where(fits[i] & (total[i] <= limit), traffic[i] + total[i] * 1e-9, jnp.inf))
        if best_key is None:
            best_key, best = key, (traffic[i], dram[i], unhidden[i])
            continue
        better = key < best_key
        best_key = jnp.where(better, key, best_key)
        best = tuple(jnp.where(better, new, old) for new, old in zip((traffic[i], dram[i], unhidden[i]), best))
    return _Tiling(*best, None), overflow.astype(jnp.float32)


# --- one call: layers x accelerators -----------------------------------------------------------------

def _select(mask, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(mask, x, y), a, b)


class _Setup(NamedTuple):
    """What both steps of a call derive from the inputs (cheap, so each step derives it again)."""

    layer: dict  # layer fields as [X, 1] columns
    acc: dict  # accelerator fields as [1, A] rows
    work: dict  # dataflow code -> _Work of every layer under that row (the SIMD unit's for vector layers)
    allowed: dict  # dataflow code -> True (every accelerator may use it) or a [1, A] mask
    reference: jax.Array  # compute cycles of the fastest-computing allowed dataflow
    is_vector: jax.Array
    n_inputs: jax.Array


def _setup(layers: LayerArrays, acc: AcceleratorParams, dataflows: tuple[int, ...] | None, has_fc: bool) -> _Setup:
    layer = _layer_columns(layers, jnp.shape(acc.rows)[0])
    a = _accelerator_rows(acc)
    a["zero_skip_density"] = jnp.where(a["zero_skip"] > 0, layer["w_density"], 1.0)
    is_vector = layer["kind"] >= KIND_CODE["pool"]
    n_inputs = jnp.where(layer["kind"] == KIND_CODE["eltwise"], 2.0, 1.0)
    shared = _Shared(
        rf_entries=jnp.maximum(jnp.floor(a["rf_bytes"] * 8.0 / layer["a_bits"]), 1.0),
        passes=jnp.ceil(layer["w_bits"] / a["mac_bits"]) * jnp.ceil(layer["a_bits"] / a["mac_bits"]),
        skip_density=a["zero_skip_density"])

    rows = tuple(range(N_DATAFLOWS)) if dataflows is None else dataflows
    needs_gemv = has_fc and any(ROWS[DATAFLOWS[r]]["fc_gemv"] for r in rows)
    gemv = _mapping(GEMV, layer, a, shared) if needs_gemv else None
    vector = _vector_work(layer, a, n_inputs)
    work = {r: _select(is_vector, vector, _array_work(DATAFLOWS[r], layer, a, shared, gemv)) for r in rows}
    if dataflows is None:
        is_flex = a["dataflow"] == FLEX_CODE
        allowed = {r: jnp.where(is_flex, a["flex"][r], a["dataflow"] == r) for r in rows}
    else:
        allowed = {r: True for r in rows}
    # Total time is monotone in compute time, so the fastest (dataflow, tiling) pair is
    # the fastest tiling for the fastest-computing dataflow: one tiling choice per layer.
    reference = functools.reduce(jnp.minimum, [_masked(allowed[r], work[r].compute) for r in rows])
    return _Setup(layer, a, work, allowed, reference, is_vector, n_inputs)


def _masked(allowed, x):
    return x if allowed is True else jnp.where(allowed, x, jnp.inf)


def _tiling_step(layers: LayerArrays, acc: AcceleratorParams, dataflows: tuple[int, ...] | None, has_fc: bool):
    """The tiling each layer uses on each accelerator, and the overflow flag: ``(_Tiling, overflow)``."""
    setup = _setup(layers, acc, dataflows, has_fc)
    return _pick_tiling(setup.reference, _tilings(setup.layer, setup.acc, setup.is_vector, setup.n_inputs))


def _grid(layers: LayerArrays, acc: AcceleratorParams, dataflows: tuple[int, ...] | None, compute_only: bool,
          per_layer: bool, has_fc: bool, chosen_tiling=None, return_state: bool = False) -> dict:
    """Totals [networks, accelerators] and per-layer rows (LayerCosts, [networks, accelerators, bucket]).

    The arrays are computed as [layers, accelerators] and turned at the end. ``dataflows``: the rows every accelerator of this call may use (all of them may use
    each), or None for a mixed batch under a JAX transformation (every row computed,
    each accelerator's own allowed rows chosen per accelerator). ``chosen_tiling``: the
    result of :func:`_tiling_step` when it ran as its own compiled step (XLA would
    otherwise recompute the 21-candidate walk inside each step that reads its result).
    ``return_state``: return the choices instead of the per-layer rows, which
    :func:`_packed_rows` then derives in a step of its own (XLA would otherwise recompute
    the whole chain inside each of the 18 per-layer outputs: 3x the compilation time).
    """
    f32 = jnp.float32
    n_networks, bucket = jnp.shape(layers.kind)
    setup = _setup(layers, acc, dataflows, has_fc)
    layer, a, work, allowed, reference = setup.layer, setup.acc, setup.work, setup.allowed, setup.reference
    rows = tuple(work)
    masked = lambda r, x: _masked(allowed[r], x)
    if chosen_tiling is None:
        chosen_tiling = _pick_tiling(reference, _tilings(layer, a, setup.is_vector, setup.n_inputs))
    tiling, overflow = chosen_tiling
    time_of = functools.partial(_time, tiling=tiling, compute_only=compute_only)
    energy_of = functools.partial(_energy, tiling=tiling, layer=layer, acc=a)

    # Dataflow choice: the accelerator's own, or the fastest allowed one for flex (ties: least energy).
    if len(rows) == 1:
        (choice,) = rows
        w = work[choice]
        dataflow = jnp.full(jnp.shape(reference), choice, jnp.int32)
    else:
        times = {r: time_of(work[r]) for r in rows}
        best_time = functools.reduce(jnp.minimum, [masked(r, times[r]) for r in rows])
        limit = best_time * (1.0 + FLEX_TIME_TOLERANCE)
        keys = {r: masked(r, jnp.where(times[r] <= limit, functools.reduce(jnp.add, energy_of(work[r])), jnp.inf))
                for r in rows}
        best_key, dataflow = keys[rows[0]], jnp.int32(rows[0])
        for r in rows[1:]:
            better = keys[r] < best_key
            best_key = jnp.where(better, keys[r], best_key)
            dataflow = jnp.where(better, r, dataflow)
        if dataflows is None:
            dataflow = jnp.where(a["dataflow"] == FLEX_CODE, dataflow, a["dataflow"])
        dataflow = jnp.broadcast_to(dataflow, jnp.shape(reference)).astype(jnp.int32)
        w = functools.reduce(lambda chosen, r: _select(dataflow == r, work[r], chosen), rows[1:], work[rows[0]])

    shape = jnp.broadcast_shapes(jnp.shape(reference), (1, jnp.shape(acc.rows)[0]))
    state = _State(work=_Work(*(jnp.broadcast_to(jnp.asarray(x, f32), shape) for x in w)), tiling=tiling,
                   overflow=jnp.broadcast_to(overflow, shape), dataflow=jnp.broadcast_to(dataflow, shape))
    costs = _layer_costs(state, layer, a, compute_only, n_networks)

    layers_axis = -1 if _folded(layer) else 1
    total = lambda x: x.sum(axis=layers_axis)
    cycles = total(costs["cycles"])
    energy_by_level = tuple(total(e) for e in costs["energy"])
    # As float32, not an int32 product: exact for arrays up to 2**24 PEs and no wrap-around beyond.
    pes = (acc.rows.astype(f32) * acc.cols.astype(f32))[None, :]
    array_layer = jnp.reshape((layer["kind"] < KIND_CODE["pool"]).astype(f32) * layer["mask"],
                              (n_networks, 1, bucket) if _folded(layer) else (n_networks, bucket, 1))
    busy = total(costs["utilization"] * costs["compute_cycles"] * array_layer) * pes
    area = area_mm2(acc.rows.astype(f32), acc.cols.astype(f32), acc.mac_bits, acc.rf_bytes, acc.gb_bytes)
    totals = dict(
        cycles=cycles,
        compute_cycles=total(costs["compute_cycles"]),
        stall_cycles=cycles - total(costs["compute_cycles"]),
        latency_s=cycles / acc.clock_hz[None, :],
        energy_pj=functools.reduce(jnp.add, energy_by_level),
        energy_by_level=energy_by_level,
        utilization=busy / (pes * jnp.maximum(total(costs["cycles"] * array_layer), 1.0)),
        area_mm2=jnp.broadcast_to(area[None, :], cycles.shape),
        unmappable_layers=total(costs["buffer_overflow"]))
    totals["energy_by_level"] = jnp.stack(energy_by_level, axis=-1)
    if return_state:
        return dict(totals=totals, state=state)
    return dict(totals=totals, layers=_api_rows(costs, _folded(layer)) if per_layer else None)


class _State(NamedTuple):
    """A call's choices per layer and accelerator ([X, A]): what its per-layer rows derive from."""

    work: _Work  # the chosen dataflow's (or the SIMD unit's) work
    tiling: _Tiling  # the chosen tiling (traffic, DRAM time, unhidden time)
    overflow: jax.Array
    dataflow: jax.Array


def _time(w: _Work, tiling: _Tiling, compute_only: bool):
    return w.compute if compute_only else jnp.maximum(w.compute + tiling.unhidden, tiling.dram)


def _energy(w: _Work, tiling: _Tiling, layer: dict, acc: dict) -> tuple:
    """pJ per level of energy.LEVELS."""
    scale_a = layer["a_bits"] / 16.0
    dram_16bit = tiling.traffic * 8.0 / 16.0
    unit = acc["unit"]
    return (w.ops_energy, w.rf * unit["rf"] * scale_a, w.noc * unit["noc"] * scale_a,
            (w.gb_16bit + dram_16bit) * unit["gb"], dram_16bit * unit["dram"])


def _folded(layer: dict) -> bool:
    """Whether the layer columns are laid out [networks, bucket] (:func:`_column_shape`, one accelerator)."""
    return jnp.shape(layer["mask"])[-1] > 1


def _layer_costs(state: _State, layer: dict, acc: dict, compute_only: bool, n_networks: int) -> dict:
    """Per-layer costs [networks, bucket, A] (padding layers zeroed) from a call's choices.

    With one accelerator they are [networks, 1, bucket]: the same data, in the order of
    the [networks, bucket] layer columns, so XLA runs these loops along the bucket.
    """
    w, tiling = state.work, state.tiling
    total = _time(w, tiling, compute_only)
    dram_words = tiling.traffic * 8.0 / layer["a_bits"]
    mask = layer["mask"]
    # Capped at 1: the systolic rows count SCALE-Sim's index of the last cycle (run_offset), one less than
    # the cycles, so a layer of a few MACs on a tiny array can show fewer cycles than its MACs need, or 0
    # (then busy / 0 = inf, and inf * mask = NaN for the bucket's padding layers); busy is always > 0.
    costs = dict(
        cycles=total * mask, compute_cycles=w.compute * mask, stall_cycles=(total - w.compute) * mask,
        utilization=jnp.minimum(w.busy / (w.units * w.compute), 1.0) * mask, macs=w.macs * mask,
        dram_bytes=tiling.traffic * mask,
        buffer_overflow=state.overflow * mask,
        accesses=tuple(x * mask for x in (w.ops, w.rf, w.noc, w.gb + dram_words, dram_words)),
        energy=tuple(x * mask for x in _energy(w, tiling, layer, acc)),
        dataflow=state.dataflow)
    shape = (n_networks, 1, -1) if _folded(layer) else (n_networks, -1, jnp.shape(acc["rf_bytes"])[-1])
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, shape), costs)


def _api_rows(costs: dict, folded: bool) -> LayerCosts:
    """Per-layer rows in the API's layout: [networks, accelerators, bucket], levels last."""
    swap = (lambda x: x) if folded else (lambda x: jnp.swapaxes(x, -1, -2))  # folded: already in that layout
    levels = lambda xs: jnp.stack([swap(x) for x in xs], axis=-1)
    return LayerCosts(**{k: swap(v) for k, v in costs.items() if k not in ("accesses", "energy")},
                      accesses=levels(costs["accesses"]), energy=levels(costs["energy"]))


_compiled_grid = jax.jit(_grid, static_argnames=("dataflows", "compute_only", "per_layer", "has_fc", "return_state"))

# A call's inputs travel as two float32 matrices (one transfer each instead of one per field).
_INT_FIELDS = {"rows", "cols", "dataflow", "kind", "G", "K", "C", "H", "W", "P", "Q", "R", "S", "stride", "w_bits",
               "a_bits"}


def _pack_accelerators(acc: AcceleratorParams) -> np.ndarray:
    return np.concatenate([np.stack([np.asarray(getattr(acc, f), np.float32) for f in _SCALAR_FIELDS]),
                           np.asarray(acc.flex_mask, np.float32).T, np.asarray(acc.energy, np.float32).T])


def _unpack_accelerators(packed) -> AcceleratorParams:
    n = len(_SCALAR_FIELDS)
    fields = {f: packed[i].astype(jnp.int32) if f in _INT_FIELDS else packed[i] for i, f in enumerate(_SCALAR_FIELDS)}
    return AcceleratorParams(**fields, flex_mask=packed[n:n + N_DATAFLOWS].T, energy=packed[n + N_DATAFLOWS:].T)


def _pack_layers(layers: LayerArrays) -> np.ndarray:
    return np.stack([np.asarray(x, np.float32) for x in layers])


def _unpack_layers(packed) -> LayerArrays:
    return LayerArrays(*(packed[i].astype(jnp.int32) if f in _INT_FIELDS else packed[i]
                         for i, f in enumerate(LayerArrays._fields)))


@functools.partial(jax.jit, static_argnames=("dataflows", "has_fc"))
def _packed_tiling(layers, accelerators, dataflows, has_fc):
    return _tiling_step(_unpack_layers(layers), _unpack_accelerators(accelerators), dataflows, has_fc)


@functools.partial(jax.jit, static_argnames=("dataflows", "compute_only", "per_layer", "has_fc"))
def _packed_grid(layers, accelerators, dataflows, compute_only, per_layer, has_fc, chosen_tiling):
    """Totals, and the choices the per-layer rows derive from when ``per_layer``."""
    return _grid(_unpack_layers(layers), _unpack_accelerators(accelerators), dataflows, compute_only, False,
                 has_fc, chosen_tiling, return_state=per_layer)


@functools.partial(jax.jit, static_argnames=("compute_only",))
def _packed_rows(layers, accelerators, state: _State, compute_only):
    """The per-layer rows [networks, bucket, A] from a call's choices."""
    unpacked = _unpack_layers(layers)
    acc = _unpack_accelerators(accelerators)
    layer = _layer_columns(unpacked, jnp.shape(acc.rows)[0])
    return _api_rows(_layer_costs(state, layer, _accelerator_rows(acc), compute_only, unpacked.kind.shape[0]),
                     _folded(layer))


# --- the public calls: split by dataflow, chunk, assemble [networks, accelerators(, layers)] ------------

def _traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for tree in trees for x in jax.tree_util.tree_leaves(tree))


def dataflow_groups(accelerators: AcceleratorParams) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """The accelerators of a batch grouped by the dataflows they may use: ``[(rows, indices)]``.

    A single-dataflow accelerator uses its own row; a ``flex`` one, the rows of its flex set.
    """
    code = np.asarray(accelerators.dataflow)
    flex = np.asarray(accelerators.flex_mask) > 0
    bits = np.where(code == FLEX_CODE, (flex * (1 << np.arange(N_DATAFLOWS))).sum(-1), 1 << code)
    groups = []
    for value in np.unique(bits):
        rows = tuple(r for r in range(N_DATAFLOWS) if value & (1 << r))
        groups.append((rows, np.flatnonzero(bits == value)))
    return groups


def _batch_bucket(n: int) -> int:
    """Calls are padded to a power of two of accelerators, so few shapes are compiled."""
    return 1 << max(int(n) - 1, 0).bit_length()


def _chunk_sizes(n_networks: int, bucket: int, n_accelerators: int) -> tuple[int, int]:
    """Networks and accelerators per call: about CHUNK_EVALUATIONS layer evaluations, powers of two."""
    accelerators = min(_batch_bucket(n_accelerators), _batch_bucket(max(CHUNK_EVALUATIONS // bucket, 1) + 1) // 2)
    networks = min(_batch_bucket(n_networks), _batch_bucket(max(CHUNK_EVALUATIONS // (bucket * accelerators), 1) + 1) // 2)
    return networks, accelerators


def _padded(index: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([index, np.full(size - len(index), index[-1])])


def _costs(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool, per_layer: bool) -> NetworkCosts:
    """Networks [N, bucket] on accelerators [A]: totals [N, A], per-layer [N, A, bucket]."""
    if _traced(layers, accelerators):
        grid = _compiled_grid(layers, accelerators, dataflows=None, compute_only=compute_only,
                              per_layer=per_layer, has_fc=True)
        return NetworkCosts(**grid["totals"], layers=grid["layers"])
    layers = _pack_layers(layers)
    has_fc = bool(np.any(layers[LayerArrays._fields.index("kind")] == KIND_CODE["fc"]))
    (n_networks, bucket), n = layers.shape[1:], int(np.shape(accelerators.rows)[0])
    net_chunk, acc_chunk = _chunk_sizes(n_networks, bucket, n)
    # A small call (a trial's own accelerator) runs one program for every dataflow: one compilation
    # per workload bucket, where splitting would compile one per dataflow set for little gain.
    split = n_networks * bucket * n >= SPLIT_FROM_EVALUATIONS
    groups = dataflow_groups(accelerators) if split else [(None, np.arange(n))]
    packed = _pack_accelerators(accelerators)
    pending = []  # every chunk is dispatched before any is read back, so the host's work overlaps XLA's
    for net_start in range(0, n_networks, net_chunk):
        nets = np.arange(net_start, min(net_start + net_chunk, n_networks))
        chunk_layers = layers[:, _padded(nets, net_chunk)]
        for rows, index in groups:
            for start in range(0, len(index), acc_chunk):
                part = index[start:start + acc_chunk]
                chunk = packed[:, _padded(part, min(acc_chunk, _batch_bucket(len(part))))]
                # A flex group runs the tiling walk as its own compiled step: XLA would otherwise
                # recompute the walk inside every step that reads its result (measured: 2x slower).
                two_steps = rows is not None and len(rows) > 1
                tiling = _packed_tiling(chunk_layers, chunk, dataflows=rows, has_fc=has_fc) if two_steps else None
                grid = _packed_grid(chunk_layers, chunk, dataflows=rows, compute_only=compute_only,
                                    per_layer=per_layer, has_fc=has_fc, chosen_tiling=tiling)
                if per_layer:
                    grid = dict(totals=grid["totals"],
                                layers=_packed_rows(chunk_layers, chunk, grid.pop("state"), compute_only=compute_only))
                else:
                    grid["layers"] = None
                pending.append((nets, part, grid))
    out = None
    for nets, part, grid in pending:
        # Every array is [networks, accelerators, ...]: keep the real ones, put them in place.
        grid = jax.tree_util.tree_map(lambda x: np.asarray(x)[:len(nets), :len(part)], grid)
        if len(nets) == n_networks and len(part) == n:
            return NetworkCosts(**grid["totals"], layers=grid["layers"])  # one call held everything
        if out is None:
            out = jax.tree_util.tree_map(lambda x: np.empty((n_networks, n, *x.shape[2:]), x.dtype), grid)
        where = (slice(nets[0], nets[-1] + 1), part)
        jax.tree_util.tree_map(lambda whole, piece: whole.__setitem__(where, piece), out, grid)
    return NetworkCosts(**out["totals"], layers=out["layers"])


def network_costs(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool = False,
                  per_layer: bool = True) -> NetworkCosts:
    """Costs of one network (padded LayerArrays) on a batch of accelerators.

    Returns NetworkCosts whose totals have shape [batch] and per-layer fields
    [batch, bucket] (``layers`` is None with ``per_layer=False``, which is faster).
    Numpy arrays when called on concrete values; traceable under ``jax.grad`` / ``jit``.
    """
    out = _costs(LayerArrays(*(x[None] for x in layers)), accelerators, compute_only, per_layer)
    return jax.tree_util.tree_map(lambda x: x[0], out)


def networks_costs(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool = False,
                   per_layer: bool = True) -> NetworkCosts:
    """Many networks (LayerArrays with a leading network axis) on a batch of accelerators.

    Totals have shape [networks, batch]; per-layer fields [networks, batch, bucket].
    """
    return _costs(layers, accelerators, compute_only, per_layer)
