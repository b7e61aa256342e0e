"""How the cost model runs: array layouts, dataflow groups, chunks, the jitted programs, the public calls.

:mod:`cost_models.physics` says what a layer costs on an accelerator; this module feeds it
whole batches and assembles the results. The two public calls:

* :func:`costs_over_accelerators`: one network on a batch of accelerators;
* :func:`costs_over_networks`: many networks (a leading network axis) on a batch of accelerators.

How a call is laid out: there is no vmap. A call evaluates 2-D arrays with the layers down
and the accelerators across (``[layers, accelerators]``, the accelerator axis innermost), so
every elementwise step is one long vector loop, and a quantity of the layer alone (MACs,
operand sizes, tiling extents) is a ``[layers, 1]`` column, computed once per layer. A call
with one accelerator lays its layers out ``[networks, bucket]`` instead (:func:`_column_shape`).

Before the call, the accelerator batch is split by the dataflows it may use
(:func:`dataflow_groups`: one row for a single-dataflow accelerator, the flex set for
``flex``), so a grid computes only the rows it needs, and large batches run in chunks of
:data:`CHUNK_EVALUATIONS`. Under a JAX transformation the batch cannot be split by value, so
every row is computed and each accelerator selects its own. Inputs are not checked here:
build them through :class:`~cost_models.workload.Layer` and
:class:`~cost_models.accelerator.Accelerator`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cost_models.accelerator import AcceleratorParams
from cost_models.dataflows import FLEX_CODE
from cost_models.energy import LEVELS, Levels, area_mm2, sram_scale
from cost_models.physics import (N_DATAFLOWS, AcceleratorRows, Costs, LayerColumns, Tiling, Work, choose_dataflow,
                                 dataflow_options, layer_costs, level_sum, pick_tiling, tilings, utilization)
from cost_models.workload import KIND_CODE, LayerArrays

#: Layer x accelerator evaluations per compiled call; larger batches run in chunks of about this
#: size: the fastest measured (the arrays stay in cache), bounded memory, and well below the size
#: at which XLA's CPU runtime overflows the default 8 MB stack.
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


# --- the two layouts: [layers, accelerators] and [networks, bucket] ------------------------------------

_LAYER_FIELDS = tuple(f for f in LayerColumns._fields if f != "kind")
#: AcceleratorParams' per-accelerator scalars (flex_mask and energy are per dataflow and per level).
_SCALAR_FIELDS = tuple(f for f in AcceleratorParams._fields if f not in ("flex_mask", "energy"))


def _column_shape(layers: LayerArrays, n_accelerators: int) -> tuple[int, int]:
    """[X, 1] layer columns (X = all layers of all networks), or [networks, bucket] with one accelerator.

    With one accelerator every array would be [X, 1], and the per-network sums read
    them as [networks, bucket, 1]; XLA's CPU loops over such unit axes run element by
    element, far slower per evaluation than along an accelerator axis of 16 or more.
    Laid out [networks, bucket], the same elementwise arithmetic runs along the bucket,
    and the sums read it as [networks, 1, bucket] without re-indexing.
    """
    n_networks, bucket = jnp.shape(layers.kind)
    if n_accelerators == 1 and bucket > 1:
        return n_networks, bucket
    return n_networks * bucket, 1


def _layer_columns(layers: LayerArrays, n_accelerators: int) -> LayerColumns:
    """Every layer field as a float32 column (:func:`_column_shape`); ``kind`` as int."""
    shape = _column_shape(layers, n_accelerators)
    column = lambda x: jnp.reshape(jnp.asarray(x), shape)
    return LayerColumns(**{name: column(getattr(layers, name)).astype(jnp.float32) for name in _LAYER_FIELDS},
                        kind=column(layers.kind))


def _accelerator_rows(acc: AcceleratorParams) -> AcceleratorRows:
    """Every accelerator field as a row [1, A]; per-dataflow flex flags and per-level unit energies apart."""
    row = lambda x: jnp.asarray(x)[None, :]
    return AcceleratorRows(
        **{name: row(getattr(acc, name)).astype(jnp.float32) for name in _SCALAR_FIELDS if name != "dataflow"},
        dataflow=row(acc.dataflow),
        flex=tuple(row(acc.flex_mask[:, code]) > 0 for code in range(N_DATAFLOWS)),
        unit=_unit_energies(acc, row))


def _unit_energies(acc: AcceleratorParams, row) -> Levels:
    """pJ per 16-bit access per level; a sized table's global buffer at its own capacity (energy.sram_scale)."""
    unit = {level: row(acc.energy[:, i]) for i, level in enumerate(LEVELS)}
    gb_bytes, reference = row(acc.gb_bytes).astype(jnp.float32), row(acc.energy[:, len(LEVELS)])
    # a flat table (reference 0) is scaled from its own capacity to itself: by exactly 1
    unit["gb"] = unit["gb"] * sram_scale(gb_bytes, jnp.where(reference > 0, reference, gb_bytes), xp=jnp)
    return Levels(**unit)


def _folded(layer: LayerColumns) -> bool:
    """Whether the layer columns are laid out [networks, bucket] (:func:`_column_shape`, one accelerator)."""
    return jnp.shape(layer.mask)[-1] > 1


def _results_layout(layer: LayerColumns, n_networks: int, n_accelerators: int) -> tuple[tuple[int, ...], int]:
    """The per-layer results' shape and the axis of their layers: [networks, bucket, A], or
    [networks, 1, bucket] when folded (the order of the [networks, bucket] columns, so XLA runs
    these loops along the bucket)."""
    if _folded(layer):
        return (n_networks, 1, -1), -1
    return (n_networks, -1, n_accelerators), 1


# --- one call: layers x accelerators -----------------------------------------------------------------

class _State(NamedTuple):
    """A call's choices per layer and accelerator ([X, A]): what its per-layer rows derive from."""

    work: Work  # the chosen dataflow's (or the SIMD unit's) work
    tiling: Tiling  # the chosen tiling (traffic, DRAM time, unhidden time)
    overflow: jax.Array
    dataflow: jax.Array


def _inputs(layers: LayerArrays, acc: AcceleratorParams) -> tuple[LayerColumns, AcceleratorRows]:
    return _layer_columns(layers, jnp.shape(acc.rows)[0]), _accelerator_rows(acc)


def _tiling_step(layers: LayerArrays, acc: AcceleratorParams, dataflows: tuple[int, ...] | None, has_fc: bool):
    """The tiling each layer uses on each accelerator, and the overflow flag: ``(Tiling, overflow)``."""
    layer, a = _inputs(layers, acc)
    options = dataflow_options(layer, a, dataflows, has_fc)
    return pick_tiling(options.reference, tilings(layer, a, options.shared))


def _layer_costs(state: _State, layer: LayerColumns, acc: AcceleratorRows, compute_only: bool,
                 n_networks: int) -> tuple[Costs, jax.Array]:
    """Per-layer costs and dataflow codes in the :func:`_results_layout` shape, padding layers zeroed."""
    costs = layer_costs(state.work, state.tiling, state.overflow, layer, acc, compute_only)
    costs = jax.tree_util.tree_map(lambda x: x * layer.mask, costs)
    shape, _ = _results_layout(layer, n_networks, jnp.shape(acc.rf_bytes)[-1])
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, shape), (costs, state.dataflow))


def _api_rows(costs: Costs, dataflow: jax.Array, folded: bool) -> LayerCosts:
    """Per-layer rows in the API's layout: [networks, accelerators, bucket], levels last."""
    swap = (lambda x: x) if folded else (lambda x: jnp.swapaxes(x, -1, -2))  # folded: already in that layout
    levels_last = lambda levels: jnp.stack([swap(x) for x in levels], axis=-1)
    return LayerCosts(**{k: swap(v) for k, v in costs._asdict().items() if k not in ("accesses", "energy")},
                      dataflow=swap(dataflow), accesses=levels_last(costs.accesses),
                      energy=levels_last(costs.energy))


def _totals(costs: Costs, layer: LayerColumns, acc: AcceleratorParams, n_networks: int) -> dict:
    """Sums over each network's layers: [networks, accelerators] (energy by level: levels last)."""
    f32 = jnp.float32
    n_accelerators = jnp.shape(acc.rows)[0]
    _, layers_axis = _results_layout(layer, n_networks, n_accelerators)
    total = lambda x: x.sum(axis=layers_axis)
    cycles = total(costs.cycles)
    energy_by_level = Levels(*(total(e) for e in costs.energy))
    # As float32, not an int32 product: exact for arrays up to 2**24 PEs and no wrap-around beyond.
    pes = (acc.rows.astype(f32) * acc.cols.astype(f32))[None, :]
    layer_shape, _ = _results_layout(layer, n_networks, 1)
    array_layer = jnp.reshape((layer.kind < KIND_CODE["pool"]).astype(f32) * layer.mask, layer_shape)
    busy = total(costs.utilization * costs.compute_cycles * array_layer) * pes
    area = area_mm2(acc.rows.astype(f32), acc.cols.astype(f32), acc.mac_bits, acc.rf_bytes, acc.gb_bytes)
    return dict(
        cycles=cycles,
        compute_cycles=total(costs.compute_cycles),
        stall_cycles=cycles - total(costs.compute_cycles),
        latency_s=cycles / acc.clock_hz[None, :],
        energy_pj=level_sum(energy_by_level),
        energy_by_level=jnp.stack(energy_by_level, axis=-1),
        utilization=utilization(busy, pes * jnp.maximum(total(costs.cycles * array_layer), 1.0)),
        area_mm2=jnp.broadcast_to(area[None, :], cycles.shape),
        unmappable_layers=total(costs.buffer_overflow))


def _grid(layers: LayerArrays, acc: AcceleratorParams, dataflows: tuple[int, ...] | None, compute_only: bool,
          per_layer: bool, has_fc: bool, chosen_tiling=None, return_state: bool = False) -> dict:
    """Totals [networks, accelerators] and per-layer rows (LayerCosts, [networks, accelerators, bucket]).

    The arrays are computed as [layers, accelerators] and turned at the end. ``dataflows``:
    the rows every accelerator of this call may use (all of them may use each), or None for
    a mixed batch under a JAX transformation (every row computed, each accelerator's own
    allowed rows chosen per accelerator). ``chosen_tiling``: the result of
    :func:`_tiling_step` when it ran as its own compiled step (XLA would otherwise
    recompute the 21-candidate walk inside each step that reads its result).
    ``return_state``: return the choices instead of the per-layer rows, which
    :func:`_packed_rows` then derives in a step of its own (XLA would otherwise recompute
    the whole chain inside each of the per-layer outputs, and compile for much longer).
    """
    f32 = jnp.float32
    n_networks = jnp.shape(layers.kind)[0]
    layer, a = _inputs(layers, acc)
    options = dataflow_options(layer, a, dataflows, has_fc)
    if chosen_tiling is None:
        chosen_tiling = pick_tiling(options.reference, tilings(layer, a, options.shared))
    tiling, overflow = chosen_tiling
    work, dataflow = choose_dataflow(options, tiling, layer, a, compute_only)

    shape = jnp.broadcast_shapes(jnp.shape(options.reference), (1, jnp.shape(acc.rows)[0]))
    state = _State(work=jax.tree_util.tree_map(lambda x: jnp.broadcast_to(jnp.asarray(x, f32), shape), work),
                   tiling=tiling, overflow=jnp.broadcast_to(overflow, shape),
                   dataflow=jnp.broadcast_to(dataflow, shape))
    costs, dataflow = _layer_costs(state, layer, a, compute_only, n_networks)
    totals = _totals(costs, layer, acc, n_networks)
    if return_state:
        return dict(totals=totals, state=state)
    return dict(totals=totals, layers=_api_rows(costs, dataflow, _folded(layer)) if per_layer else None)


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
    """The per-layer rows [networks, accelerators, bucket] from a call's choices."""
    unpacked = _unpack_layers(layers)
    layer, a = _inputs(unpacked, _unpack_accelerators(accelerators))
    costs, dataflow = _layer_costs(state, layer, a, compute_only, unpacked.kind.shape[0])
    return _api_rows(costs, dataflow, _folded(layer))


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
            # Every chunk of a group is padded to one size (the group's bucket, at most a chunk): one
            # program per group, where a smaller bucket would be compiled for a last, partial chunk alone.
            size = min(acc_chunk, _batch_bucket(len(index)))
            for start in range(0, len(index), acc_chunk):
                part = index[start:start + acc_chunk]
                chunk = packed[:, _padded(part, size)]
                # A flex group runs the tiling walk as its own compiled step: XLA would otherwise
                # recompute the walk inside every step that reads its result.
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


def costs_over_accelerators(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool = False,
                            per_layer: bool = True) -> NetworkCosts:
    """The costs of one network on every accelerator of a batch.

    ``layers``: one network's padded :class:`~cost_models.workload.LayerArrays` (each field
    [bucket], from :meth:`Workload.arrays <cost_models.workload.Workload.arrays>`);
    ``accelerators``: :class:`~cost_models.accelerator.AcceleratorParams` of a batch of A
    (from :func:`~cost_models.accelerator.stack`). Returns :class:`NetworkCosts` with totals
    shaped [A] (``energy_by_level`` [A, 5]) and per-layer fields [A, bucket] (``accesses``
    and ``energy`` [A, bucket, 5]; padding layers are zero). ``per_layer=False`` leaves
    ``layers`` None, which is faster; ``compute_only`` leaves the memory system out. Numpy
    arrays on concrete inputs; traceable under ``jax.grad`` and ``jax.jit``.

    >>> from cost_models import Accelerator, Workload, conv, costs_over_accelerators, grid, stack
    >>> network = Workload((conv("c1", 3, 16, 32, R=3, padding=1), conv("c2", 16, 32, 32, R=3, padding=1)))
    >>> costs = costs_over_accelerators(network.arrays(), stack(grid(Accelerator(), rows=[8, 16, 32])))
    >>> costs.cycles.shape, costs.layers.energy.shape
    ((3,), (3, 8, 5))
    """
    out = _costs(LayerArrays(*(x[None] for x in layers)), accelerators, compute_only, per_layer)
    return jax.tree_util.tree_map(lambda x: x[0], out)


def costs_over_networks(layers: LayerArrays, accelerators: AcceleratorParams, compute_only: bool = False,
                        per_layer: bool = True) -> NetworkCosts:
    """The costs of each of N networks on every accelerator of a batch.

    ``layers``: :class:`~cost_models.workload.LayerArrays` with a leading network axis (each
    field [N, bucket]: networks padded to one bucket, stacked); ``accelerators``: as for
    :func:`costs_over_accelerators` (A of them, one is fine). Returns :class:`NetworkCosts`
    with totals shaped [N, A] (``energy_by_level`` [N, A, 5]) and per-layer fields
    [N, A, bucket] (``accesses`` and ``energy`` [N, A, bucket, 5]).

    >>> import numpy as np
    >>> from cost_models import Accelerator, LayerArrays, Workload, conv, costs_over_networks, stack
    >>> networks = [Workload((conv("c", 3, k, 32, R=3, padding=1),)) for k in (8, 16, 32, 64)]
    >>> layers = LayerArrays(*(np.stack(field) for field in zip(*(w.arrays() for w in networks))))
    >>> costs = costs_over_networks(layers, stack(Accelerator()), per_layer=False)
    >>> costs.cycles.shape
    (4, 1)
    """
    return _costs(layers, accelerators, compute_only, per_layer)
