"""The physics of the PE-array cost model: what one layer costs on one accelerator, in pure JAX.

Per layer and accelerator it computes, for each dataflow of the mapping table the
accelerator may use (:data:`~cost_models.dataflows.ROWS`, read here and only here):

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
* accesses and energy per memory level (:class:`~cost_models.energy.Levels`, one named
  line a level): energy = accesses x unit energy, scaled by bit width.

Pooling and element-wise layers have no MACs: they run on the 1-D SIMD unit
(:func:`vector_work`); every layer is costed both ways and one select keeps its own
(no branching in the compiled program). ``flex`` picks per layer the fastest dataflow
of the accelerator's ``flex_set`` (ties broken by energy).

The functions take the layer's fields as :class:`LayerColumns` and the accelerator's as
:class:`AcceleratorRows`, arrays that broadcast against each other (how they are laid out,
batched and compiled is :mod:`cost_models.dispatch`'s business). A table row is unrolled
while tracing, its dimension sets Python constants, so "the product of the dimensions on
the PE rows" is one or two multiplications, not a 7-element masked product.

Everything is float32. Integer quantities (loop bounds, folds, tile counts) are exact in
float32 below 2**24; the valid ranges of :class:`~cost_models.workload.Layer` and
:class:`~cost_models.accelerator.Accelerator` keep every input field (and ``rows * cols``)
below it, and every product far below float32's largest value (their module docstrings
give the arithmetic). The functions are differentiable in the continuous accelerator
parameters (bandwidth, latency, clock, unit energies).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cost_models.dataflows import DATAFLOWS, DIMS, FLEX_CODE, GEMV, RELEVANT, REDUCTION, ROWS
from cost_models.energy import VECTOR_OP_FRACTION, Levels
from cost_models.workload import KIND_CODE

N_DATAFLOWS = len(DATAFLOWS)
#: Multiples of the smallest feasible outer tile count tried (output channels or rows).
OUTER_TILE_MULTIPLES = (1.0, 2.0)
#: Tile counts tried for input channels (each split spills partial sums to DRAM).
CHANNEL_TILE_COUNTS = (1.0, 2.0, 4.0, 16.0, 64.0)
#: Tilings this close to the fastest count as equally fast; the least DRAM traffic among them wins.
TILING_TIME_TOLERANCE = 0.01
#: Flex: dataflows this close to the fastest count as equally fast; the least energy among them wins.
FLEX_TIME_TOLERANCE = 1e-6


# --- inputs ------------------------------------------------------------------------------------------


def ceil_div(a, b):
    """``ceil(a / b)``, exact for integer-valued operands below 2**24.

    XLA computes a division by a value shared across a batch as a multiplication by its
    reciprocal, which lands an exact integer quotient either side of it (``42 / 7`` as
    ``6.0000005``, so 7 folds); one product against ``a`` on each side puts it back.
    """
    q = jnp.ceil(a / b)
    q = jnp.where(q * b < a, q + 1.0, q)
    return jnp.where((q - 1.0) * b >= a, q - 1.0, q)


def floor_div(a, b):
    """``floor(a / b)``, exact for integer-valued operands below 2**24 (see :func:`ceil_div`)."""
    q = jnp.floor(a / b)
    q = jnp.where(q * b > a, q - 1.0, q)
    return jnp.where((q + 1.0) * b <= a, q + 1.0, q)


class LayerColumns(NamedTuple):
    """A layer's fields as float32 arrays that broadcast against :class:`AcceleratorRows` (``kind`` int32)."""

    G: jax.Array
    K: jax.Array
    C: jax.Array
    P: jax.Array
    Q: jax.Array
    R: jax.Array
    S: jax.Array
    H: jax.Array
    W: jax.Array
    stride: jax.Array
    w_bits: jax.Array
    a_bits: jax.Array
    w_density: jax.Array
    mask: jax.Array  # 1.0 for real layers, 0.0 for padding
    kind: jax.Array


class AcceleratorRows(NamedTuple):
    """An accelerator's fields as float32 arrays that broadcast against :class:`LayerColumns`."""

    rows: jax.Array
    cols: jax.Array
    rf_bytes: jax.Array
    gb_bytes: jax.Array
    dram_bw: jax.Array
    dram_latency: jax.Array
    clock_hz: jax.Array
    mac_bits: jax.Array
    zero_skip: jax.Array
    simd_lanes: jax.Array
    dataflow: jax.Array  # int32 code; FLEX_CODE for flex
    flex: tuple  # per dataflow code, True where flex may choose it
    unit: Levels  # pJ per 16-bit access (per 16-bit MAC at the MAC level)


class Shared(NamedTuple):
    """Per layer and accelerator, what every dataflow row and the tiling use."""

    rf_entries: jax.Array  # partial sums (or filter rows) a PE's register file holds
    passes: jax.Array  # MAC passes per multiply-accumulate (operands wider than the multiplier)
    skip_density: jax.Array  # weight density where the accelerator skips zeros, else 1
    is_vector: jax.Array  # the layer runs on the SIMD unit (pooling, element-wise)
    n_inputs: jax.Array  # input maps read: 2 for an element-wise sum, else 1


def shared_terms(layer: LayerColumns, acc: AcceleratorRows) -> Shared:
    return Shared(
        rf_entries=jnp.maximum(floor_div(acc.rf_bytes * 8.0, layer.a_bits), 1.0),
        passes=ceil_div(layer.w_bits, acc.mac_bits) * ceil_div(layer.a_bits, acc.mac_bits),
        skip_density=jnp.where(acc.zero_skip > 0, layer.w_density, 1.0),
        is_vector=layer.kind >= KIND_CODE["pool"],
        n_inputs=jnp.where(layer.kind == KIND_CODE["eltwise"], 2.0, 1.0))


# --- reading the table while tracing -------------------------------------------------------------------

def _product(*factors):
    """Left-to-right product that skips Python 1.0 factors (dimensions a mapping leaves out)."""
    out = 1.0
    for factor in factors:
        if not (isinstance(factor, float) and factor == 1.0):
            out = factor if isinstance(out, float) and out == 1.0 else out * factor
    return out


def _dims(layer: LayerColumns, letters: str):
    return _product(*(getattr(layer, d) for d in letters))


def _affine(coeffs, rows, cols):
    """``a*rows + b*cols + c`` with the zero terms left out (the table's coefficients are constants)."""
    a, b, c = (float(x) for x in coeffs)
    terms = [x if k == 1.0 else k * x for k, x in ((a, rows), (b, cols)) if k]
    if c:
        terms.append(c)
    return functools.reduce(lambda x, y: x + y, terms) if terms else 0.0


def _select(mask, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(mask, x, y), a, b)


# --- work inside the chip ---------------------------------------------------------------------------

class Work(NamedTuple):
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


class _Mapping(NamedTuple):
    """Cycles and access counts of a layer under one table row, before bit widths."""

    compute: jax.Array
    busy: jax.Array
    macs: jax.Array
    rf: jax.Array
    noc: jax.Array
    gb_weight: jax.Array
    gb_input: jax.Array
    gb_output: jax.Array


def _mapping(name: str, layer: LayerColumns, acc: AcceleratorRows, shared: Shared) -> _Mapping:
    """Compute cycles and buffer-level access counts of a layer under one table row (unrolled at trace time)."""
    row = ROWS[name]
    assert len(row["rf_block"]) <= 1, "the table splits at most one dimension by register-file capacity"
    extent_rows = _dims(layer, row["rows"])
    extent_cols = _dims(layer, row["cols"])
    folds_rows = ceil_div(extent_rows, acc.rows)
    folds_cols = ceil_div(extent_cols, acc.cols)
    folds = folds_rows * folds_cols

    if row["rf_block"]:
        block_extent = _dims(layer, row["rf_block"])
        block = jnp.minimum(shared.rf_entries, block_extent)
        block_outer = ceil_div(block_extent, block)
    else:
        block, block_outer = 1.0, 1.0
    mapped = row["rows"] + row["cols"] + row["inner"]
    # Outer iteration count of each dimension (the rf_block dimension counts its blocks).
    outer = {d: block_outer if d in row["rf_block"] else 1.0 if d in mapped else getattr(layer, d) for d in DIMS}
    n_outer = _product(*outer.values())

    density_time = shared.skip_density if row["zero_skip"] else 1.0
    inner = _product(_dims(layer, row["inner"]), block)
    inner_time = _product(inner, density_time) * shared.passes

    # Loads and write-backs move one array row per cycle, so they take as many cycles
    # as the mapping occupies rows (on average over the folds), not the array's height.
    rows_in_use = extent_rows / folds_rows
    reload = _affine(row["reload"], rows_in_use, acc.cols)
    if row["reload_hidden"] and not isinstance(reload, float):
        reload = jnp.where(shared.rf_entries >= 2, 0.0, reload)
    fill = _affine(row["fill"], acc.rows, acc.cols)
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
        compute = compute + row["run_offset"] * layer.G

    # Buffer accesses: refetch factors from irrelevant outer loops and folded axes.
    def refetch(op):
        factors = [] if row["stationary"] == op else [outer[d] for d in DIMS if d not in RELEVANT[op]]
        if not any(d in RELEVANT[op] for d in row["rows"]):
            factors.append(folds_rows)
        if not any(d in RELEVANT[op] for d in row["cols"]):
            factors.append(folds_cols)
        return _product(*factors)

    G, K, C, P, Q, R, S = (getattr(layer, d) for d in DIMS)
    weights = G * K * C * R * S * shared.skip_density
    inputs = G * C * R * S * P * Q
    if row["sliding"]:
        inputs = jnp.minimum(G * C * layer.H * layer.W, inputs)
    outputs = G * K * P * Q

    reduction = 1.0 if row["stationary"] == "output" else _product(*(outer[d] for d in REDUCTION))
    psum_passes = [reduction]
    if all(d in REDUCTION for d in row["rows"]) and row["rows"]:
        psum_passes.append(jnp.where(extent_rows > 1, folds_rows, 1.0))
    if all(d in REDUCTION for d in row["cols"]) and row["cols"]:
        psum_passes.append(jnp.where(extent_cols > 1, folds_cols, 1.0))

    macs = _product(G * K * C * P * Q * R * S, density_time)
    return _Mapping(
        compute=compute,
        busy=macs * shared.passes,
        macs=macs,
        rf=macs * float(row["rf_per_mac"]),
        noc=macs * float(row["noc_per_mac"]),
        gb_weight=weights * refetch("weight"),
        gb_input=_product(inputs, refetch("input")),
        gb_output=outputs * (2.0 * _product(*psum_passes) - 1.0),
    )


def array_work(name: str, layer: LayerColumns, acc: AcceleratorRows, shared: Shared,
               gemv: _Mapping | None) -> Work:
    """A convolution or fully connected layer on the PE array under one dataflow."""
    mapping = _mapping(name, layer, acc, shared)
    if ROWS[name]["fc_gemv"] and gemv is not None:
        # Fully connected layers fall back to the GEMV mapping on dataflows that cannot spread them.
        mapping = _select(layer.kind == KIND_CODE["fc"], gemv, mapping)
    scale_a = layer.a_bits / 16.0
    scale_w = layer.w_bits / 16.0
    mac_scale = (acc.mac_bits / 16.0) ** 2
    macs = mapping.macs
    return Work(
        compute=mapping.compute,
        busy=mapping.busy,
        units=acc.rows * acc.cols,
        macs=macs,
        ops=macs,
        ops_energy=macs * acc.unit.mac * mac_scale * shared.passes,
        rf=mapping.rf,
        noc=mapping.noc,
        gb=mapping.gb_weight + mapping.gb_input + mapping.gb_output,
        gb_16bit=mapping.gb_weight * scale_w + (mapping.gb_input + mapping.gb_output) * scale_a,
    )


def vector_work(layer: LayerColumns, acc: AcceleratorRows, shared: Shared) -> Work:
    """A pooling or element-wise layer on the 1-D SIMD unit: no MACs, no PE-array traffic."""
    is_pool = layer.kind == KIND_CODE["pool"]
    G, C, P, Q, R, S = (getattr(layer, d) for d in "GCPQRS")
    ops = jnp.where(is_pool, G * C * P * Q * R * S, G * C * P * Q)
    # Per output element, one buffer word per input map read and one written.
    gb = (shared.n_inputs + 1.0) * ops / jnp.where(is_pool, R * S, 1.0)
    scale_a = layer.a_bits / 16.0
    return Work(
        compute=ceil_div(ops, acc.simd_lanes),
        busy=ops,
        units=acc.simd_lanes,
        macs=0.0,
        ops=ops,
        ops_energy=ops * acc.unit.mac * VECTOR_OP_FRACTION * scale_a,
        rf=0.0,
        noc=0.0,
        gb=gb,
        gb_16bit=gb * scale_a,
    )


class DataflowOptions(NamedTuple):
    """A layer's work under every dataflow row a call computes, and which rows each accelerator may use."""

    shared: Shared
    work: dict  # dataflow code -> Work of every layer under that row (the SIMD unit's for vector layers)
    allowed: dict  # dataflow code -> True (every accelerator may use it) or a mask over the accelerators
    mixed_batch: bool  # the rows are every row and each accelerator keeps to its own dataflow or flex set
    reference: jax.Array  # compute cycles of the fastest-computing allowed dataflow


def dataflow_options(layer: LayerColumns, acc: AcceleratorRows, dataflows: tuple[int, ...] | None,
                     has_fc: bool) -> DataflowOptions:
    """The work of every row in ``dataflows`` (all of which every accelerator may use), or of every row
    with each accelerator's own allowed rows marked when ``dataflows`` is None."""
    shared = shared_terms(layer, acc)
    rows = tuple(range(N_DATAFLOWS)) if dataflows is None else dataflows
    needs_gemv = has_fc and any(ROWS[DATAFLOWS[r]]["fc_gemv"] for r in rows)
    gemv = _mapping(GEMV, layer, acc, shared) if needs_gemv else None
    vector = vector_work(layer, acc, shared)
    work = {r: _select(shared.is_vector, vector, array_work(DATAFLOWS[r], layer, acc, shared, gemv)) for r in rows}
    if dataflows is None:
        is_flex = acc.dataflow == FLEX_CODE
        allowed = {r: jnp.where(is_flex, acc.flex[r], acc.dataflow == r) for r in rows}
    else:
        allowed = {r: True for r in rows}
    # Total time is monotone in compute time, so the fastest (dataflow, tiling) pair is
    # the fastest tiling for the fastest-computing dataflow: one tiling choice per layer.
    reference = functools.reduce(jnp.minimum, [_masked(allowed[r], work[r].compute) for r in rows])
    return DataflowOptions(shared, work, allowed, dataflows is None, reference)


def _masked(allowed, x):
    return x if allowed is True else jnp.where(allowed, x, jnp.inf)


# --- DRAM: tiling -------------------------------------------------------------------------------------

class Tiling(NamedTuple):
    """One candidate tiling's DRAM traffic (bytes), DRAM time, unhidden load/store time, feasibility."""

    traffic: jax.Array
    dram: jax.Array
    unhidden: jax.Array
    fits: jax.Array


def tilings(layer: LayerColumns, acc: AcceleratorRows, shared: Shared) -> Tiling:
    """Every candidate tiling, stacked on a leading axis of 21 in a fixed order (ties go to the first).

    Candidates: two loop orders (0: a weight tile resident, input tiles streamed; 1: an
    input tile resident, weight tiles streamed) x tile counts of the outer dimension
    (output channels for order 0, output rows for order 1) x input-channel tile counts
    (partial sums then spill to DRAM), plus the untiled layer. For each, the smallest
    inner tile count whose double-buffered footprint fits the buffer follows in closed
    form, because the footprint is linear in its inverse. The candidate axis leads, so
    every step is still a long loop over the accelerators.
    """
    G, K, C, P, Q, R, S = (getattr(layer, d) for d in DIMS)
    H, stride = layer.H, layer.stride
    a_bytes = layer.a_bits / 8.0
    dense_weight_bytes = jnp.where(shared.is_vector, 0.0, G * K * C * R * S * layer.w_bits / 8.0)
    weight_bytes = dense_weight_bytes * shared.skip_density
    input_bytes = shared.n_inputs * G * C * H * layer.W * a_bytes
    output_bytes = G * K * P * Q * a_bytes
    grouped = G > 1
    half = acc.gb_bytes / 2.0
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
    inv_bw = 1.0 / acc.dram_bw
    latency = acc.dram_latency
    fits = stacked(fits0, fits1, untiled <= acc.gb_bytes)
    # A tiling that does not fit is timed by the bounds alone (used when none fits: an unmappable layer):
    # its traffic over the bandwidth plus one latency, never per-tile latencies of tiles it cannot hold.
    return Tiling(traffic=traffic,
                  dram=traffic * inv_bw + jnp.where(fits, stacked(tiles0, tiles1, jnp.ones(shape)), 1.0) * latency,
                  # Unhidden transfers: the first tile's loads and the last tile's store.
                  unhidden=latency + jnp.where(fits, stacked(moved0, moved1, untiled) * inv_bw, 0.0),
                  fits=fits)


def pick_tiling(compute, candidates: Tiling) -> tuple[Tiling, jax.Array]:
    """The tiling to use for a given compute time (traffic, DRAM time, unhidden time) and the overflow flag.

    With double buffering, transfers overlap compute except the first load and the last
    store: total = max(compute + unhidden, DRAM time). Among the feasible tilings within
    ``TILING_TIME_TOLERANCE`` of the fastest, the one with the least DRAM traffic wins:
    a compute-bound layer should not take several times the traffic (and DRAM energy)
    to shorten its first load by a fraction of a percent. If nothing fits, the candidate
    with the least traffic is used and the layer is flagged (1.0).
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
    return Tiling(*best, None), overflow.astype(jnp.float32)


# --- time, accesses, energy, utilisation ------------------------------------------------------------------

def layer_time(work: Work, tiling: Tiling, compute_only: bool):
    """Cycles of a layer: compute, or with double buffering max(compute + unhidden transfers, DRAM time)."""
    return work.compute if compute_only else jnp.maximum(work.compute + tiling.unhidden, tiling.dram)


def accesses(work: Work, tiling: Tiling, layer: LayerColumns) -> Levels:
    """Accesses per memory level: operations at the MAC level, words elsewhere; the buffer also takes the DRAM fills."""
    dram_words = tiling.traffic * 8.0 / layer.a_bits
    return Levels(mac=work.ops, rf=work.rf, noc=work.noc, gb=work.gb + dram_words, dram=dram_words)


def energy(work: Work, tiling: Tiling, layer: LayerColumns, acc: AcceleratorRows) -> Levels:
    """pJ per memory level: accesses in 16-bit words x the unit energy of the level."""
    scale_a = layer.a_bits / 16.0
    dram_16bit = tiling.traffic * 8.0 / 16.0
    unit = acc.unit
    return Levels(mac=work.ops_energy,
                  rf=work.rf * unit.rf * scale_a,
                  noc=work.noc * unit.noc * scale_a,
                  gb=(work.gb_16bit + dram_16bit) * unit.gb,
                  dram=dram_16bit * unit.dram)


def level_sum(levels: Levels):
    """The sum over the memory levels, in the order of :data:`~cost_models.energy.LEVELS`."""
    return functools.reduce(jnp.add, levels)


def utilization(busy, capacity):
    """Useful unit-cycles over available unit-cycles (``units x cycles``), at most 1.

    The one definition of utilisation, for a layer and for a whole network, on JAX arrays
    (the compiled model) and numpy arrays or scalars (the reports) alike. The cap matters for
    a layer whose cycle count is below its work: the systolic rows count SCALE-Sim's index of
    the last cycle (``run_offset``), one less than the cycles, so a layer of a few MACs on a
    tiny array can show fewer cycles than its MACs need, or 0 (busy / 0 = inf, capped to 1, so
    that a padding layer's zero mask gives 0, not NaN).
    """
    ratio = busy / capacity
    return (jnp if isinstance(ratio, jax.Array) else np).minimum(ratio, 1.0)


def choose_dataflow(options: DataflowOptions, tiling: Tiling, layer: LayerColumns, acc: AcceleratorRows,
                    compute_only: bool) -> tuple[Work, jax.Array]:
    """The work of the dataflow each layer uses on each accelerator, and its int32 code.

    A single-dataflow accelerator takes its own row; ``flex`` the fastest of its flex set
    under the chosen tiling, ties (within ``FLEX_TIME_TOLERANCE``) broken by the least energy.
    """
    work, reference = options.work, options.reference
    rows = tuple(work)
    if len(rows) == 1:
        (choice,) = rows
        return work[choice], jnp.full(jnp.shape(reference), choice, jnp.int32)
    masked = lambda r, x: _masked(options.allowed[r], x)
    times = {r: layer_time(work[r], tiling, compute_only) for r in rows}
    best_time = functools.reduce(jnp.minimum, [masked(r, times[r]) for r in rows])
    limit = best_time * (1.0 + FLEX_TIME_TOLERANCE)
    keys = {r: masked(r, jnp.where(times[r] <= limit, level_sum(energy(work[r], tiling, layer, acc)), jnp.inf))
            for r in rows}
    best_key, dataflow = keys[rows[0]], jnp.int32(rows[0])
    for r in rows[1:]:
        better = keys[r] < best_key
        best_key = jnp.where(better, keys[r], best_key)
        dataflow = jnp.where(better, r, dataflow)
    if options.mixed_batch:
        dataflow = jnp.where(acc.dataflow == FLEX_CODE, dataflow, acc.dataflow)
    dataflow = jnp.broadcast_to(dataflow, jnp.shape(reference)).astype(jnp.int32)
    chosen = functools.reduce(lambda chosen, r: _select(dataflow == r, work[r], chosen), rows[1:], work[rows[0]])
    return chosen, dataflow


class Costs(NamedTuple):
    """Per layer and accelerator: time, utilisation, work, DRAM bytes, and accesses and energy per memory level."""

    cycles: jax.Array
    compute_cycles: jax.Array
    stall_cycles: jax.Array
    utilization: jax.Array
    macs: jax.Array  # MACs executed (zero weights skipped where applicable)
    dram_bytes: jax.Array
    buffer_overflow: jax.Array  # 1.0 when even the finest tiling does not fit the buffer
    accesses: Levels  # operations at the MAC level, words elsewhere
    energy: Levels  # pJ


def layer_costs(work: Work, tiling: Tiling, overflow, layer: LayerColumns, acc: AcceleratorRows,
                compute_only: bool) -> Costs:
    """A layer's costs on an accelerator from the work of its dataflow and its tiling."""
    total = layer_time(work, tiling, compute_only)
    return Costs(cycles=total, compute_cycles=work.compute, stall_cycles=total - work.compute,
                 utilization=utilization(work.busy, work.units * work.compute), macs=work.macs,
                 dram_bytes=tiling.traffic, buffer_overflow=overflow,
                 accesses=accesses(work, tiling, layer), energy=energy(work, tiling, layer, acc))
