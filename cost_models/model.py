"""The analytical PE-array cost model: pure JAX, jitted once, vmapped over layers and accelerators.

Per layer and accelerator it computes, for every dataflow of the mapping table at
once (``dataflows.TABLE``):

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
(``_vector_cost``); every layer is costed both ways and one select keeps its own
(no branching under vmap).

``flex`` then picks per layer the fastest dataflow of the accelerator's ``flex_set``
(ties broken by energy); a single-dataflow accelerator takes its own row.

Everything is float32 except loop bounds and folds (int32). The functions are
differentiable in the continuous accelerator parameters (bandwidth, latency,
clock, unit energies).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cost_models.accelerator import AcceleratorParams
from cost_models.dataflows import DATAFLOW_CODE, DIM_INDEX, DIMS, FLEX_CODE, GEMV, RELEVANT, REDUCTION, TABLE
from cost_models.energy import LEVELS, VECTOR_OP_FRACTION, area_mm2
from cost_models.workload import KIND_CODE, LayerArrays

N_DATAFLOWS = TABLE["rows"].shape[0]
#: Multiples of the smallest feasible outer tile count tried (output channels or rows).
OUTER_TILE_MULTIPLES = np.asarray([1, 2], np.int32)
#: Tile counts tried for input channels (each split spills partial sums to DRAM).
CHANNEL_TILE_COUNTS = np.asarray([1, 2, 4, 16, 64], np.int32)
#: Tilings this close to the fastest count as equally fast; the least DRAM traffic among them wins.
TILING_TIME_TOLERANCE = 0.01


def _operand_masks():
    """Per operand, per dimension: 1 where the operand depends on it."""
    return {op: np.asarray([1 if d in dims else 0 for d in DIMS], np.int32) for op, dims in RELEVANT.items()}


_RELEVANT_MASK = _operand_masks()
_REDUCTION_MASK = np.asarray([1 if d in REDUCTION else 0 for d in DIMS], np.int32)


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
    layers: LayerCosts


def _ceil_div(a, b):
    return (a + b - 1) // b


def _prod_where(mask, dims):
    return jnp.prod(jnp.where(mask == 1, dims, 1))


def _affine(coeffs, rows, cols):
    return coeffs[0] * rows + coeffs[1] * cols + coeffs[2]


def _dataflow_cost(row, dims, layer, acc, passes):
    """Compute cycles and buffer-level access counts of one layer under one table row.

    ``passes``: MAC passes per multiply-accumulate (operands wider than the multiplier).
    """
    rows = acc.rows
    cols = acc.cols
    rows_f = rows.astype(jnp.float32)
    cols_f = cols.astype(jnp.float32)
    a_bits = layer.a_bits.astype(jnp.float32)
    rf_entries = jnp.maximum(jnp.floor(acc.rf_bytes * 8.0 / a_bits), 1.0).astype(jnp.int32)

    extent_rows = _prod_where(row["rows"], dims)
    extent_cols = _prod_where(row["cols"], dims)
    folds_rows = _ceil_div(extent_rows, rows)
    folds_cols = _ceil_div(extent_cols, cols)
    folds = (folds_rows * folds_cols).astype(jnp.float32)

    block_extent = _prod_where(row["rf_block"], dims)
    block = jnp.minimum(rf_entries, block_extent)
    block_outer = _ceil_div(block_extent, block)

    outer_mask = 1 - row["rows"] - row["cols"] - row["inner"] - row["rf_block"]
    # Outer iteration count of each dimension (rf_block dims count their blocks).
    outer_count = jnp.where(outer_mask == 1, dims, 1)
    outer_count = jnp.where(row["rf_block"] == 1, block_outer, outer_count).astype(jnp.float32)
    n_outer = jnp.prod(outer_count)

    G_runs = dims[DIM_INDEX["G"]].astype(jnp.float32)
    skip = acc.zero_skip * row["zero_skip"]
    density_time = jnp.where(skip > 0, layer.w_density, 1.0)
    inner = _prod_where(row["inner"], dims).astype(jnp.float32) * block.astype(jnp.float32)
    inner_time = inner * density_time * passes

    # Loads and write-backs move one array row per cycle, so they take as many cycles
    # as the mapping occupies rows (on average over the folds), not the array's height.
    rows_in_use = extent_rows.astype(jnp.float32) / folds_rows.astype(jnp.float32)
    hidden = row["reload_hidden"] * (rf_entries >= 2)
    reload = _affine(row["reload"], rows_in_use, cols_f) * (1.0 - hidden)
    fill = _affine(row["fill"], rows_f, cols_f)
    output_outer = jnp.prod(jnp.where(_RELEVANT_MASK["output"] == 1, outer_count, 1.0))
    writeback = row["writeback"] * rows_in_use * block.astype(jnp.float32)
    compute = folds * (n_outer * (inner_time + reload + fill) + output_outer * writeback) + row["run_offset"] * G_runs

    # Buffer accesses: refetch factors from irrelevant outer loops and folded axes.
    axis_rows_only = lambda op: jnp.all((row["rows"] == 0) | (_RELEVANT_MASK[op] == 0))
    axis_cols_only = lambda op: jnp.all((row["cols"] == 0) | (_RELEVANT_MASK[op] == 0))

    def refetch(op, stationary):
        irrelevant_outer = jnp.prod(jnp.where(_RELEVANT_MASK[op] == 0, outer_count, 1.0))
        irrelevant_outer = jnp.where(stationary > 0, 1.0, irrelevant_outer)
        fold_r = jnp.where(axis_rows_only(op), folds_rows, 1).astype(jnp.float32)
        fold_c = jnp.where(axis_cols_only(op), folds_cols, 1).astype(jnp.float32)
        return irrelevant_outer * fold_r * fold_c

    G, K, C, P, Q, R, S = (dims[DIM_INDEX[d]].astype(jnp.float32) for d in DIMS)
    w_density_storage = jnp.where(acc.zero_skip > 0, layer.w_density, 1.0)
    weights = G * K * C * R * S * w_density_storage
    inputs_sliding = G * C * layer.H.astype(jnp.float32) * layer.W.astype(jnp.float32)
    inputs_im2col = G * C * R * S * P * Q
    inputs = jnp.where(row["sliding"] > 0, jnp.minimum(inputs_sliding, inputs_im2col), inputs_im2col)
    outputs = G * K * P * Q

    reduction_outer = jnp.prod(jnp.where(_REDUCTION_MASK == 1, outer_count, 1.0))
    reduction_outer = jnp.where(row["stationary_output"] > 0, 1.0, reduction_outer)
    red_rows = jnp.all((row["rows"] == 0) | (_REDUCTION_MASK == 1))
    red_cols = jnp.all((row["cols"] == 0) | (_REDUCTION_MASK == 1))
    psum_passes = (reduction_outer
                   * jnp.where(red_rows & (extent_rows > 1), folds_rows, 1).astype(jnp.float32)
                   * jnp.where(red_cols & (extent_cols > 1), folds_cols, 1).astype(jnp.float32))

    gb_weight_words = weights * refetch("weight", row["stationary_weight"])
    gb_input_words = inputs * refetch("input", row["stationary_input"])
    gb_output_words = outputs * (2.0 * psum_passes - 1.0)

    macs = G * K * C * P * Q * R * S
    macs_executed = macs * density_time
    busy = macs_executed * passes
    return dict(
        compute=compute,
        busy=busy,
        macs=macs_executed,
        rf=macs_executed * row["rf_per_mac"],
        noc=macs_executed * row["noc_per_mac"],
        gb_weight=gb_weight_words,
        gb_input=gb_input_words,
        gb_output=gb_output_words,
    )


class _OnChip(NamedTuple):
    """A layer's work inside the chip (everything but DRAM), per dataflow: shape [N_DATAFLOWS]
    on the PE array, scalars on the SIMD unit (the same for every dataflow)."""

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


def _table_rows():
    return {k: jnp.asarray(v) for k, v in TABLE.items()}


def _array_cost(layer: LayerArrays, acc: AcceleratorParams, passes, unit) -> _OnChip:
    """A convolution or fully connected layer on the PE array, under every dataflow of the table."""
    f32 = jnp.float32
    dims = jnp.stack([layer.G, layer.K, layer.C, layer.P, layer.Q, layer.R, layer.S]).astype(jnp.int32)
    table = _table_rows()
    per_df = jax.vmap(lambda row: _dataflow_cost(row, dims, layer, acc, passes))(table)

    # Fully connected layers fall back to the GEMV mapping on dataflows that cannot spread them.
    is_fc = layer.kind == KIND_CODE["fc"]
    use_gemv = is_fc & (table["fc_gemv"] == 1)
    per_df = {k: jnp.where(use_gemv, v[DATAFLOW_CODE[GEMV]], v) for k, v in per_df.items()}

    scale_a = layer.a_bits.astype(f32) / 16.0
    scale_w = layer.w_bits.astype(f32) / 16.0
    mac_scale = (acc.mac_bits / 16.0) ** 2
    macs = per_df["macs"]
    return _OnChip(
        compute=per_df["compute"],
        busy=per_df["busy"],
        units=(acc.rows * acc.cols).astype(f32),
        macs=macs,
        ops=macs,
        ops_energy=macs * unit["mac"] * mac_scale * passes,
        rf=per_df["rf"],
        noc=per_df["noc"],
        gb=per_df["gb_weight"] + per_df["gb_input"] + per_df["gb_output"],
        gb_16bit=per_df["gb_weight"] * scale_w + (per_df["gb_input"] + per_df["gb_output"]) * scale_a,
    )


def _vector_cost(layer: LayerArrays, acc: AcceleratorParams, n_inputs, unit) -> _OnChip:
    """A pooling or element-wise layer on the 1-D SIMD unit: no MACs, no PE-array traffic."""
    f32 = jnp.float32
    is_pool = layer.kind == KIND_CODE["pool"]
    ops = jnp.where(is_pool, (layer.G * layer.C * layer.P * layer.Q * layer.R * layer.S).astype(f32),
                    (layer.G * layer.C * layer.P * layer.Q).astype(f32))
    # Per output element, one buffer word per input map read and one written.
    gb = (n_inputs + 1.0) * ops / jnp.where(is_pool, layer.R * layer.S, 1).astype(f32)
    scale_a = layer.a_bits.astype(f32) / 16.0
    zero = jnp.zeros((), f32)
    return _OnChip(
        compute=jnp.ceil(ops / acc.simd_lanes),
        busy=ops,
        units=acc.simd_lanes,
        macs=zero,
        ops=ops,
        ops_energy=ops * unit["mac"] * VECTOR_OP_FRACTION * scale_a,
        rf=zero,
        noc=zero,
        gb=gb,
        gb_16bit=gb * scale_a,
    )


def _tiling_candidates(layer, acc, is_vector, n_inputs):
    """Every candidate tiling's DRAM traffic, DRAM time, unhidden load/store time and feasibility.

    Candidates: two loop orders (0: a weight tile resident, input tiles streamed; 1: an
    input tile resident, weight tiles streamed) x tile counts of the outer dimension
    (output channels for order 0, output rows for order 1) x input-channel tile counts
    (partial sums then spill to DRAM), plus the untiled layer. For each, the smallest
    inner tile count whose double-buffered footprint fits the buffer follows in closed
    form, because the footprint is linear in its inverse.
    """
    f32 = jnp.float32
    G, K, C = layer.G.astype(f32), layer.K.astype(f32), layer.C.astype(f32)
    P, H = layer.P.astype(f32), layer.H.astype(f32)
    R, stride = layer.R.astype(f32), layer.stride.astype(f32)
    a_bytes = layer.a_bits.astype(f32) / 8.0
    density = jnp.where(acc.zero_skip > 0, layer.w_density, 1.0)
    dense_weight_bytes = jnp.where(is_vector, 0.0, G * K * C * layer.R * layer.S * layer.w_bits / 8.0)
    weight_bytes = dense_weight_bytes * density
    input_bytes = n_inputs * G * C * H * layer.W * a_bytes
    output_bytes = G * K * P * layer.Q * a_bytes
    grouped = G > 1
    half = acc.gb_bytes / 2.0

    multiples = jnp.asarray(OUTER_TILE_MULTIPLES, f32)[:, None]
    n_c = jnp.asarray(CHANNEL_TILE_COUNTS, f32)[None, :]
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
    outer = jnp.minimum(jnp.floor(base0) + 1.0, G * K) * multiples
    inv_outer = 1.0 / outer
    inputs0 = input_bytes * inv_c * jnp.where(grouped, inv_outer, 1.0)
    weights0 = weight_bytes * inv_outer * inv_c
    outputs0 = output_bytes * inv_outer
    room0 = half - weights0 - inputs0 * halo
    n_p0 = jnp.maximum(jnp.ceil((inputs0 * per_row + outputs0) / jnp.maximum(room0, 1e-9)), 1.0)
    fits0 = (room0 > 0) & (n_p0 <= P) & (outer <= G * K) & (n_c <= C)
    traffic0 = weight_bytes + input_bytes * jnp.where(grouped, 1.0, outer) + output_bytes * (2.0 * n_c - 1.0)
    tiles0 = outer * n_c * n_p0
    moved0 = weights0 + inputs0 * (halo + per_row / n_p0) + outputs0 / n_p0

    # Order 1: an input row tile resident per (n_p, n_c); weights streamed in n_k tiles.
    # The smallest n_p for which some n_k <= G*K fits: I/n_c (halo + per_row/n_p)
    # + (W/n_c + O/n_p) / (G K) <= half.
    base1 = ((input_bytes * inv_c * per_row + output_bytes / (G * K))
             / jnp.maximum(half - input_bytes * inv_c * halo - dense_weight_bytes * inv_c / (G * K), 1e-9))
    outer = jnp.minimum(jnp.floor(base1) + 1.0, P) * multiples
    inv_outer = 1.0 / outer
    inputs1 = input_bytes * inv_c * jnp.minimum(halo + per_row * inv_outer, 1.0)
    weights1 = weight_bytes * inv_c
    outputs1 = output_bytes * inv_outer
    room1 = half - inputs1
    n_k1 = jnp.maximum(jnp.ceil((weights1 + outputs1) / jnp.maximum(room1, 1e-9)), 1.0)
    fits1 = (room1 > 0) & (n_k1 <= G * K) & (outer <= P) & (n_c <= C) & ~grouped
    traffic1 = input_bytes + weight_bytes * outer + output_bytes * (2.0 * n_c - 1.0)
    tiles1 = outer * n_c * n_k1
    moved1 = inputs1 + (weights1 + outputs1) / n_k1

    untiled = weight_bytes + input_bytes + output_bytes
    traffic = jnp.concatenate([traffic0.ravel(), traffic1.ravel(), untiled[None]])
    tiles = jnp.concatenate([tiles0.ravel(), tiles1.ravel(), jnp.ones((1,), f32)])
    # Unhidden transfers: the first tile's loads and the last tile's store.
    moved = jnp.concatenate([moved0.ravel(), moved1.ravel(), untiled[None]])
    fits = jnp.concatenate([fits0.ravel(), fits1.ravel(), (untiled <= acc.gb_bytes)[None]])
    inv_bw = 1.0 / acc.dram_bw
    dram = traffic * inv_bw + tiles * acc.dram_latency
    unhidden = acc.dram_latency + moved * inv_bw
    return traffic, dram, unhidden, fits


def _pick_tiling(compute, candidates):
    """Index of the tiling to use for a given compute time, and the overflow flag.

    With double buffering, transfers overlap compute except the first load and the last
    store: total = max(compute + unhidden, DRAM time). Among the feasible tilings within
    ``TILING_TIME_TOLERANCE`` of the fastest, the one with the least DRAM traffic wins:
    a compute-bound layer should not take several times the traffic (and DRAM energy)
    to shorten its first load by a fraction of a percent. If nothing fits, the candidate
    with the least traffic is used and the layer is flagged.
    """
    traffic, dram, unhidden, fits = candidates
    total = jnp.maximum(compute + unhidden, dram)
    overflow = ~jnp.any(fits)
    fastest = jnp.min(jnp.where(fits, total, jnp.inf))
    near = fits & (total <= fastest * (1.0 + TILING_TIME_TOLERANCE))
    key = jnp.where(near, traffic + total * 1e-9, jnp.inf)
    index = jnp.where(overflow, jnp.argmin(traffic), jnp.argmin(key))
    return index, overflow.astype(jnp.float32)


def _layer_cost(layer: LayerArrays, acc: AcceleratorParams, compute_only: bool):
    """Costs of one layer on one accelerator (scalars), after the dataflow choice."""
    f32 = jnp.float32
    a_bits = layer.a_bits.astype(f32)
    is_vector = layer.kind >= KIND_CODE["pool"]
    n_inputs = jnp.where(layer.kind == KIND_CODE["eltwise"], 2.0, 1.0)
    passes = jnp.ceil(layer.w_bits / acc.mac_bits) * jnp.ceil(layer.a_bits / acc.mac_bits)
    unit = {level: acc.energy[i] for i, level in enumerate(LEVELS)}  # pJ per 16-bit access (per MAC)

    # Both are computed (no branching under vmap); one select keeps the layer's own.
    on_chip = jax.tree_util.tree_map(lambda vector, array: jnp.where(is_vector, vector, array),
                                     _vector_cost(layer, acc, n_inputs, unit), _array_cost(layer, acc, passes, unit))
    compute = on_chip.compute

    # Total time is monotone in compute time, so the fastest (dataflow, tiling) pair is
    # the fastest tiling for the fastest-computing dataflow: one tiling choice per layer.
    candidates = _tiling_candidates(layer, acc, is_vector, n_inputs)
    allowed = jnp.where(acc.dataflow == FLEX_CODE, acc.flex_mask > 0, jnp.arange(N_DATAFLOWS) == acc.dataflow)
    reference_compute = jnp.min(jnp.where(allowed, compute, jnp.inf))
    index, overflow = _pick_tiling(reference_compute, candidates)
    traffic_all, dram_all, unhidden_all, _ = candidates
    pick = jnp.arange(traffic_all.shape[0]) == index  # one-hot: cheaper than a gather under vmap
    chosen = lambda x: jnp.sum(jnp.where(pick, x, 0.0))
    traffic = jnp.broadcast_to(chosen(traffic_all), compute.shape)
    total = compute if compute_only else jnp.maximum(compute + chosen(unhidden_all), chosen(dram_all))
    dram_words = traffic * 8.0 / a_bits
    dram_16bit = traffic * 8.0 / 16.0

    # Per level (energy.LEVELS): words accessed, and energy = accesses x unit energy x width.
    scale_a = a_bits / 16.0
    accesses = {
        "mac": on_chip.ops,
        "rf": on_chip.rf,
        "noc": on_chip.noc,
        "gb": on_chip.gb + dram_words,  # PE-array traffic, plus DRAM fills and spills
        "dram": dram_words,
    }
    energy = {
        "mac": on_chip.ops_energy,
        "rf": on_chip.rf * unit["rf"] * scale_a,
        "noc": on_chip.noc * unit["noc"] * scale_a,
        "gb": (on_chip.gb_16bit + dram_16bit) * unit["gb"],
        "dram": dram_16bit * unit["dram"],
    }
    accesses = jnp.stack([accesses[level] for level in LEVELS], axis=-1)
    energy = jnp.stack([energy[level] for level in LEVELS], axis=-1)
    utilization = on_chip.busy / (on_chip.units * compute)

    # Dataflow choice: the accelerator's own, or the fastest allowed one for flex.
    energy_total = energy.sum(-1)
    allowed = acc.flex_mask > 0
    best_time = jnp.min(jnp.where(allowed, total, jnp.inf))
    near_best = allowed & (total <= best_time * (1.0 + 1e-6))
    flex_choice = jnp.argmin(jnp.where(near_best, energy_total, jnp.inf))
    choice = jnp.where(acc.dataflow == FLEX_CODE, flex_choice, acc.dataflow)

    one_hot = jnp.arange(N_DATAFLOWS) == choice
    take = lambda x: jnp.sum(jnp.where(one_hot if x.ndim == 1 else one_hot[:, None], x, 0.0), axis=0)
    return LayerCosts(
        cycles=take(total),
        compute_cycles=take(compute),
        stall_cycles=take(total - compute),
        utilization=take(utilization),
        dataflow=choice.astype(jnp.int32),
        macs=take(on_chip.macs),
        accesses=take(accesses),
        energy=take(energy),
        dram_bytes=take(traffic),
        buffer_overflow=overflow,
    )


def _network_cost(layers: LayerArrays, acc: AcceleratorParams, compute_only: bool) -> NetworkCosts:
    per_layer = jax.vmap(lambda l: _layer_cost(l, acc, compute_only))(layers)
    mask = layers.mask
    per_layer = per_layer._replace(
        **{name: getattr(per_layer, name) * (mask if getattr(per_layer, name).ndim == 1 else mask[:, None])
           for name in ("cycles", "compute_cycles", "stall_cycles", "utilization", "macs", "accesses",
                        "energy", "dram_bytes", "buffer_overflow")})
    cycles = per_layer.cycles.sum()
    compute = per_layer.compute_cycles.sum()
    energy_by_level = per_layer.energy.sum(0)
    pes = (acc.rows * acc.cols).astype(jnp.float32)
    array_layer = (layers.kind < KIND_CODE["pool"]).astype(jnp.float32) * mask
    busy = (per_layer.utilization * per_layer.compute_cycles * array_layer).sum() * pes
    utilization = busy / (pes * jnp.maximum((per_layer.cycles * array_layer).sum(), 1.0))
    area = area_mm2(acc.rows.astype(jnp.float32), acc.cols.astype(jnp.float32), acc.mac_bits,
                    acc.rf_bytes, acc.gb_bytes)
    return NetworkCosts(
        cycles=cycles,
        compute_cycles=compute,
        stall_cycles=cycles - compute,
        latency_s=cycles / acc.clock_hz,
        energy_pj=energy_by_level.sum(),
        energy_by_level=energy_by_level,
        utilization=utilization,
        area_mm2=area,
        layers=per_layer,
    )


@functools.partial(jax.jit, static_argnames=("compute_only",))
def network_costs(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool = False) -> NetworkCosts:
    """Costs of one network (padded LayerArrays) on a batch of accelerators: one jitted call.

    Returns NetworkCosts whose totals have shape [batch] and per-layer fields
    [batch, bucket].
    """
    return jax.vmap(lambda acc: _network_cost(layers, acc, compute_only))(accelerators)


@functools.partial(jax.jit, static_argnames=("compute_only",))
def networks_costs(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool = False) -> NetworkCosts:
    """Many networks (LayerArrays with a leading network axis) on a batch of accelerators.

    Totals have shape [networks, batch].
    """
    one = lambda l: jax.vmap(lambda acc: _network_cost(l, acc, compute_only))(accelerators)
    return jax.vmap(one)(layers)
