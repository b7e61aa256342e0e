"""SCALE-Sim 3.0.0's USER-mode memory system, replayed exactly for one array layer.

SCALE-Sim's ``USER`` interface-bandwidth mode gives the ifmap, filter and ofmap each an
SRAM of its own (double buffered, half active) and a DRAM channel of its own, and stalls
the array whenever a read misses or the ofmap buffer is full. What it computes is not what
a sensible controller would do: the read buffers prefetch along a fixed stream and, on a
miss, only slide forward around a ring, so a reference just behind the window costs a full
lap of refills. Its cycles are therefore not monotone in SRAM size. This module gives the
same numbers without SCALE-Sim's per-cycle, per-address Python loops:

1. **Streams.** The operand matrices are SCALE-Sim's im2col matrices (ifmap ``E x R*S*C``,
   filter ``R*S*C x K``, ofmap ``E x K``); per dataflow the prefetch streams and the demand
   rows are built fold by fold, in SCALE-Sim's fold order (column folds outer), with its
   skews, flips, fold prefixes and suffixes, and its partial-sum spills (on WS and IS every
   row fold writes its ofmap block).
2. **Read buffers** (``memory/read_buffer.py``). A stream is cut into sets of ``ceil(N/100)``
   valid entries forming a ring; the active window is the first ``ceil((N/2)/eps)`` sets and
   each refill slides it forward by ``ceil((N/2)/eps)`` more. The walk over misses does not
   depend on time, so it is computed first: a vectorised scan finds each missing address,
   and the number of slides until the window holds one of its copies is closed form. Refill
   ``k`` completes at ``-1 + k*(L+1)``, ``L = ceil(floor(N/2)/bw)``, whatever the array does.
3. **Ofmap write buffer** (``memory/write_buffer.py``): a drain of half the buffer, in
   ``bw``-wide lines, starts when more than half is used and the last drain has ended; the
   array stalls when the buffer fills during a drain. Walked from event to event over the
   cumulative writes, with SCALE-Sim's line packing (a partial line is flushed at each drain).
4. **Timing** (``double_buffered_scratchpad_mem.py``): row ``i`` is issued at ``i + stalls``;
   its stall is the largest of the three operands', not their sum, and read stalls follow
   SCALE-Sim's arithmetic (a positive wait is counted twice). ``Total Cycles`` is the last
   row's ofmap service cycle: the initial fill and the final drain are outside it.

Only rows where something happens are visited, so the cost is one vectorised pass over
the demanded addresses (about ``compute cycles x array side`` integers) plus a few
operations per refill and drain. Depthwise and grouped layers are, as in SCALE-Sim,
independent layers per group.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

#: SCALE-Sim's dataflows.
DATAFLOWS = ("os", "ws", "is")
#: Read port latency of SCALE-Sim's DRAM model (``read_port.py``) and its SRAM hit latency.
READ_LATENCY = 1


@dataclasses.dataclass(frozen=True)
class OperandMemories:
    """Per-operand SRAM sizes (words) and DRAM bandwidths (words per cycle), as a SCALE-Sim cfg says.

    In USER mode SCALE-Sim reads the ifmap bandwidth from ``[layout] IfmapSRAMBankBandwidth``,
    the filter bandwidth from ``[layout] FilterSRAMBankBandwidth`` and the ofmap bandwidth from
    the first entry of ``[architecture_presets] Bandwidth``; an SRAM of ``N`` kB holds ``N*1024``
    words.
    """

    ifmap_words: int
    filter_words: int
    ofmap_words: int
    ifmap_bw: int
    filter_bw: int
    ofmap_bw: int

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not 1 <= value < math.inf:
                raise ValueError(f"field {field.name!r} must be a number from 1 (word or word per cycle) up, "
                                 f"got {value!r}")

    def check_whole(self) -> None:
        """SCALE-Sim's own units: whole words and whole words per cycle (it reads them with ``int()``)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != int(value):
                raise ValueError(f"SCALE-Sim's USER mode needs whole words: field {field.name!r} is {value!r}")

    @classmethod
    def uniform(cls, sram_kb: float, bandwidth: int) -> "OperandMemories":
        """Three SRAMs of ``sram_kb`` kB (1 kB = 1024 words) and one bandwidth for every operand."""
        words = int(sram_kb * 1024)
        return cls(words, words, words, bandwidth, bandwidth, bandwidth)


#: How the memory system is timed. ``global_buffer``: the model of the Squeezelerator study (one global
#: buffer, one DRAM channel with latency, the tiling chosen for time). ``scalesim_user``: SCALE-Sim 3.0.0's
#: USER mode replayed exactly (three SRAMs and channels, its prefetch ring; Total Cycles without fill and
#: drain). ``operand_buffers``: the same architecture with a sensible controller (each operand keeps what
#: fits and re-fetches the rest once; fill and drain included). Chosen by ``evaluate(..., memory=...)``.
MEMORY_MODES = ("global_buffer", "scalesim_user", "operand_buffers")


class ScaleSimLayerCycles(NamedTuple):
    """SCALE-Sim's USER-mode numbers for one layer (summed over its channel groups)."""

    total_cycles: int  #: COMPUTE_REPORT "Total Cycles": compute plus stalls, without fill and drain
    stall_cycles: int
    compute_cycles: int  #: total_cycles - stall_cycles
    ifmap_dram_reads: int  #: words, counted as SCALE-Sim counts them (whole refills)
    filter_dram_reads: int
    ofmap_dram_writes: int  #: words written back during the layer (the final drain excluded)


# --- operand matrices -------------------------------------------------------------------------

def output_size(size: int, kernel: int, stride: int) -> int:
    """SCALE-Sim's ofmap side: ``ceil((size - kernel + stride) / stride)``."""
    return -(-(size - kernel + stride) // stride)


def _mapping(E: int, window: int, K: int, rows: int, cols: int, dataflow: str) -> tuple[int, int, int, int]:
    """SCALE-Sim's (Sr, Sc, T) of a dataflow and the demand rows of one fold (``E`` ofmap pixels,
    ``window = R*S*C``, ``K`` filters, on a ``rows x cols`` array)."""
    Sr, Sc, T = {"os": (E, K, window), "ws": (window, K, E), "is": (window, E, K)}[dataflow]
    return Sr, Sc, T, (T + rows + cols - 2 if dataflow == "os" else 2 * rows + cols + T - 2)


def _operand_matrices(H: int, W: int, R: int, S: int, C: int, K: int, stride: int):
    """SCALE-Sim's ifmap (E x R*S*C, -1 outside the input), filter (R*S*C x K) and ofmap (E x K) addresses."""
    Eh, Ew = output_size(H, R, stride), output_size(W, S, stride)
    E, window = Eh * Ew, R * S * C
    pixel = np.arange(E)[:, None]
    j = np.arange(window)[None, :]
    out_row, out_col = np.divmod(pixel, Ew)
    in_row, in_col = out_row * stride, out_col * stride
    c_row, rest = np.divmod(j, S * C)
    c_col, channel = np.divmod(rest, C)
    rows, cols = in_row + c_row, in_col + c_col
    ifmap = np.where((rows < H) & (cols < W), (rows * W + cols) * C + channel, -1)
    filt = np.arange(K)[None, :] * window + np.arange(window)[:, None]
    ofmap = np.arange(E)[:, None] * K + np.arange(K)[None, :]
    return ifmap, filt, ofmap


def _block(matrix: np.ndarray, rows: slice, cols: slice, shape: tuple[int, int]) -> np.ndarray:
    """``matrix[rows, cols]`` padded with -1 to ``shape`` (the array's unused rows or columns)."""
    part = matrix[rows, cols]
    if part.shape == shape:
        return part
    out = np.full(shape, -1, dtype=np.int64)
    out[:part.shape[0], :part.shape[1]] = part
    return out


def _skew(matrix: np.ndarray, prefix: int = 0, suffix: int = 0) -> np.ndarray:
    """SCALE-Sim's ``skew_matrix`` of ``matrix`` with ``prefix``/``suffix`` rows of -1 added first."""
    rows, cols = matrix.shape
    total = prefix + rows + suffix
    out = np.full((total + cols - 1, cols), -1, dtype=np.int64)
    col = np.arange(cols)
    out[prefix + np.arange(rows)[:, None] + col[None, :], col[None, :]] = matrix
    return out


def _pad_rows(matrix: np.ndarray, prefix: int = 0, suffix: int = 0) -> np.ndarray:
    """``matrix`` with rows of -1 before and after it (no skew)."""
    return np.concatenate([np.full((prefix, matrix.shape[1]), -1, np.int64), matrix,
                           np.full((suffix, matrix.shape[1]), -1, np.int64)])


def _anti_diagonal(matrix: np.ndarray) -> np.ndarray:
    """SCALE-Sim's anti-diagonal read of a prefetch matrix: diagonal by diagonal, bottom row first."""
    M, N = matrix.shape
    r, c = np.divmod(np.arange(M * N), N)
    order = np.lexsort((-r, r + c))
    return matrix.ravel()[order]


class _Streams(NamedTuple):
    """One layer's SCALE-Sim traffic: prefetch streams and demand matrices, fold by fold."""

    ifmap_prefetch: np.ndarray  # 1-D, in SCALE-Sim's fetch order, -1 entries kept
    filter_prefetch: np.ndarray
    ifmap_demand: list  # per fold: (rows x width) addresses
    filter_demand: list
    ofmap_demand: list
    fold_rows: int


def _streams(H, W, R, S, C, K, stride, rows: int, cols: int, dataflow: str) -> _Streams:
    """The prefetch streams and per-fold demand matrices of ``systolic_compute_{os,ws,is}.py``."""
    ifmap, filt, ofmap = _operand_matrices(H, W, R, S, C, K, stride)
    E, window = ifmap.shape
    Sr, Sc, T, fold_rows = _mapping(E, window, K, rows, cols, dataflow)
    row_folds, col_folds = -(-Sr // rows), -(-Sc // cols)
    R_blk = [slice(f * rows, min((f + 1) * rows, Sr)) for f in range(row_folds)]
    C_blk = [slice(f * cols, min((f + 1) * cols, Sc)) for f in range(col_folds)]
    every = slice(None)
    ifd, fld, ofd = [], [], []
    if dataflow == "os":
        ifmap_t = ifmap.T  # T x Sr
        if_pre = _anti_diagonal(np.concatenate([_block(ifmap_t, every, rb, (T, rows)) for rb in R_blk]))
        f_pre = _anti_diagonal(np.concatenate([_block(filt, every, cb, (T, cols)) for cb in C_blk]))
        for cb in C_blk:
            f_fold = _skew(_block(filt, every, cb, (T, cols)), suffix=rows - 1)
            for rb in R_blk:
                ifd.append(_skew(_block(ifmap_t, every, rb, (T, rows)), suffix=cols - 1))
                fld.append(f_fold)
                ofd.append(_skew(_block(ofmap, rb, cb, (rows, cols))[::-1], prefix=T - 1))
    elif dataflow == "ws":
        if_pre = _anti_diagonal(np.concatenate([_block(ifmap, every, rb, (T, rows)) for rb in R_blk]))
        f_pre = np.concatenate([_block(filt, every, cb, (window, cols)) for cb in C_blk]).ravel()
        for cb in C_blk:
            of_fold = _skew(_block(ofmap, every, cb, (T, cols)), prefix=2 * rows - 1)
            for rb in R_blk:
                ifd.append(_skew(_block(ifmap, every, rb, (T, rows)), prefix=rows, suffix=cols - 1))
                fld.append(_pad_rows(_block(filt, rb, cb, (rows, cols))[::-1], suffix=rows + cols + T - 2))
                ofd.append(of_fold)
    else:
        ifmap_t = ifmap.T  # window x E
        if_pre = np.concatenate([_block(ifmap_t, every, cb, (window, cols)) for cb in C_blk]).ravel()
        f_pre = _anti_diagonal(np.concatenate([_block(filt.T, every, rb, (T, rows)) for rb in R_blk]))
        for cb in C_blk:
            of_fold = _skew(_block(ofmap.T, every, cb, (T, cols)), prefix=2 * rows - 1)
            for rb in R_blk:
                ifd.append(_pad_rows(_block(ifmap_t, rb, cb, (rows, cols))[::-1], suffix=rows + cols + T - 2))
                fld.append(_skew(_block(filt.T, every, rb, (T, rows)), prefix=rows, suffix=cols - 1))
                ofd.append(of_fold)
    return _Streams(if_pre, f_pre, ifd, fld, ofd, fold_rows)


# --- read buffers -----------------------------------------------------------------------------

class _ReadWalk(NamedTuple):
    """A read buffer's refills: the demand row of each miss, its slides, and the refill length."""

    rows: np.ndarray  # demand row of each miss, ascending
    slides: np.ndarray  # refills until the missing address was in the window
    refill_cycles: int  # L + 1: one refill of the prefetch half, plus the port latency
    dram_reads: int


def _demand_entries(folds: list, fold_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The valid addresses of per-fold demand matrices in service order, with their global rows."""
    addresses, rows = [], []
    for index, fold in enumerate(folds):
        flat = fold.ravel()
        keep = np.flatnonzero(flat >= 0)
        addresses.append(flat[keep])
        rows.append(keep // fold.shape[1] + index * fold_rows)
    return np.concatenate(addresses), np.concatenate(rows)


def _read_walk(prefetch: np.ndarray, demand: list, fold_rows: int, words: int, bw: int) -> _ReadWalk:
    """Replay ``read_buffer.service_reads`` (custom layout off) up to timing: where it refills."""
    valid = prefetch[prefetch >= 0]
    per_set = math.ceil(words / 100)
    n_sets = len(valid) // per_set + 1  # SCALE-Sim always closes a last (possibly empty) set
    active_size, prefetch_size = math.ceil(words * 0.5), words - math.ceil(words * 0.5)
    active = min(math.ceil(active_size / per_set), n_sets)
    step = min(math.ceil(prefetch_size / per_set), n_sets - active)
    lines_per_refill = math.ceil(prefetch_size / bw)
    fetch_lines = math.ceil(len(prefetch) / bw)
    initial = min(math.ceil(active_size / bw), fetch_lines) * bw
    none = np.zeros(0, np.int64)
    if active >= n_sets:  # the whole stream is in the active window: every read hits
        return _ReadWalk(none, none, lines_per_refill + READ_LATENCY, initial)

    # Every set that holds each address (an im2col stream repeats ifmap addresses).
    set_of = np.arange(len(valid)) // per_set
    order = np.argsort(valid, kind="stable")
    sorted_addr = valid[order]
    size = int(sorted_addr[-1]) + 1
    counts = np.bincount(sorted_addr, minlength=size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    copies = int(counts.max())
    rank = np.arange(len(valid)) - starts[sorted_addr]
    occurrences = np.empty((size, copies), np.int32 if n_sets < 2**31 else np.int64)
    occurrences[:] = set_of[order][np.minimum(starts, len(valid) - 1)][:, None]  # padding: a copy again
    occurrences[sorted_addr, rank] = set_of[order]

    addresses, rows = _demand_entries(demand, fold_rows)
    miss_rows, miss_slides = [], []
    start, position, chunk = 0, 0, 256
    while position < len(addresses):
        segment = addresses[position:position + chunk]
        hit = (((occurrences[segment] - start) % n_sets) < active).any(axis=1)
        if hit.all():
            position += len(segment)
            chunk = min(chunk * 2, 1 << 16)
            continue
        first = int(np.argmin(hit))
        distance = (occurrences[segment[first]] - start) % n_sets  # all >= active
        slides = int(((distance - active) // step + 1).min())
        start = (start + slides * step) % n_sets
        miss_rows.append(rows[position + first])
        miss_slides.append(slides)
        position += first + 1
        chunk = 256
    total_slides = sum(miss_slides)
    return _ReadWalk(np.asarray(miss_rows, np.int64), np.asarray(miss_slides, np.int64),
                     lines_per_refill + READ_LATENCY, initial + total_slides * lines_per_refill * bw)


def _refills_by_row(walk: _ReadWalk) -> dict[int, tuple[int, int]]:
    """Demand row -> (its first refill's number, counted from 1; how many refills the row waits for)."""
    table, done = {}, 0
    for row, slides in zip(walk.rows.tolist(), walk.slides.tolist()):
        first, count = table.get(row, (done + 1, 0))
        table[row] = (first, count + slides)
        done += slides
    return table


def _read_stall(cycle: int, first_refill: int, slides: int, refill_cycles: int) -> int:
    """``service_reads``' stall for one row whose misses need refills ``first_refill .. + slides - 1``.

    Refill ``k`` (1-based) completes at ``-1 + k * refill_cycles``. SCALE-Sim moves the row's
    service time ``t`` (from ``cycle + 1``) to ``done + max(0, done - t)`` for each refill:
    a positive wait counts twice. The gaps then alternate, which gives the closed form.
    """
    done = -1 + first_refill * refill_cycles
    gap = max(0, done - (cycle + READ_LATENCY))
    if slides > 1:
        # After the first refill the gaps alternate: g, L+1-g, g, ... (or g, 0, L+1, 0, ...).
        second = max(0, refill_cycles - gap)
        gap = second if slides % 2 == 0 else (gap if gap <= refill_cycles else refill_cycles)
        done += (slides - 1) * refill_cycles
    return done + gap - cycle - READ_LATENCY


# --- ofmap write buffer -----------------------------------------------------------------------

class _WriteBuffer:
    """``write_buffer.service_writes`` from event to event over the cumulative writes."""

    def __init__(self, words: int, bw: int, writes_per_row: np.ndarray):
        self.size, self.bw = words, bw
        self.drain_size = words - math.ceil(words * 0.5)
        self.trigger_free = words - self.drain_size  # a drain starts when free < this
        self.lines_per_drain = math.ceil(self.drain_size / bw)
        self.cum = np.concatenate([[0], np.cumsum(writes_per_row)])  # words before row r: cum[r]
        self.rows_with_writes = np.flatnonzero(writes_per_row)
        self.writes_per_row = writes_per_row
        self.credited = 0  # words drained so far, as SCALE-Sim counts them (free = size - written + credited)
        self.drain_end = 0
        # Lines written so far: segments of full lines cut at each forced flush (start word, end word).
        self.flushed_to = 0  # words already in closed lines
        self.segments: list[list[int]] = []  # [first word, last word + 1) of undrained closed lines

    def next_event_row(self, row: int, stalls: int) -> int:
        """The first row >= ``row`` where this buffer may trigger a drain or stall (rows issued at r + stalls)."""
        n_rows = len(self.cum) - 1
        if row >= n_rows:
            return n_rows
        candidates = []
        full_word = self.size + self.credited  # the word that leaves no free space (1-based count)
        trigger_word = self.credited + self.size - self.trigger_free + 1  # free < trigger_free from this word
        if row + stalls < self.drain_end:
            r = int(np.searchsorted(self.cum, full_word, side="left")) - 1  # row holding word number full_word
            if r < n_rows and r + stalls < self.drain_end:
                candidates.append(max(r, row))
            after = max(row, self.drain_end - stalls)
        else:
            after = row
        r = int(np.searchsorted(self.cum, trigger_word, side="left")) - 1
        r = max(r, after)
        k = int(np.searchsorted(self.rows_with_writes, r))
        if k < len(self.rows_with_writes):
            candidates.append(int(self.rows_with_writes[k]))
        return min(candidates) if candidates else n_rows

    def _drain(self, cycle: int, written: int) -> None:
        """``append_to_trace_mat(force=True)`` then ``empty_drain_buf(cycle)``."""
        if written > self.flushed_to:
            self.segments.append([self.flushed_to, written])
            self.flushed_to = written
        lines, last_fill = 0, 0
        while lines < self.lines_per_drain and self.segments:
            first, end = self.segments[0]
            available = -(-(end - first) // self.bw)
            take = min(available, self.lines_per_drain - lines)
            lines += take
            taken_end = min(first + take * self.bw, end)
            last_fill = taken_end - (first + (take - 1) * self.bw)
            if taken_end >= end:
                self.segments.pop(0)
            else:
                self.segments[0][0] = taken_end
        if lines == 0:
            return
        self.credited += lines * self.bw - (self.bw - last_fill)
        self.drain_end = cycle + lines - 1

    def service_row(self, row: int, cycle: int) -> int:
        """Store the row's writes as SCALE-Sim does, element by element; return the row's stall."""
        n = int(self.writes_per_row[row])
        written = int(self.cum[row])
        current = cycle
        for _ in range(n):
            written += 1
            # Closed full lines since the last flush stay implicit until a drain needs them.
            free = self.size - written + self.credited
            if current < self.drain_end:
                if free <= 0:
                    current = self.drain_end
            elif free < self.trigger_free:
                self._close_full_lines(written)
                self._drain(current, written)
        return current - cycle

    def _close_full_lines(self, written: int) -> None:
        """Lines completed since the last flush (SCALE-Sim closes a line when it holds ``bw`` words)."""
        full_end = self.flushed_to + (written - self.flushed_to) // self.bw * self.bw
        if full_end > self.flushed_to:
            self.segments.append([self.flushed_to, full_end])
            self.flushed_to = full_end


# --- one layer --------------------------------------------------------------------------------

def demanded_addresses(H, W, R, S, C, K, stride, rows: int, cols: int, dataflow: str) -> int:
    """How many address slots the array's demand matrices hold (folds x fold rows x the three demand
    widths, ``rows + 2 * cols``): the replay's work and memory grow with it."""
    E = output_size(H, R, stride) * output_size(W, S, stride)
    Sr, Sc, _, fold_rows = _mapping(E, R * S * C, K, rows, cols, dataflow)
    return -(-Sr // rows) * -(-Sc // cols) * fold_rows * (rows + 2 * cols)


#: The most address slots one replay walks (about 2 GB of numpy arrays at its peak).
MAX_DEMANDED_ADDRESSES = 2**27


def _one_group(H, W, R, S, C, K, stride, rows, cols, dataflow, mem: OperandMemories) -> ScaleSimLayerCycles:
    work = demanded_addresses(H, W, R, S, C, K, stride, rows, cols, dataflow)
    if work > MAX_DEMANDED_ADDRESSES:
        raise ValueError(f"the layer ({H}x{W}x{C} -> {K}, {R}x{S}, stride {stride}) on a {rows}x{cols} {dataflow} "
                         f"array demands {work:,} addresses, more than the {MAX_DEMANDED_ADDRESSES:,} the exact "
                         f"SCALE-Sim replay walks; use memory='operand_buffers' (closed form) for it")
    streams = _streams(H, W, R, S, C, K, stride, rows, cols, dataflow)
    fold_rows = streams.fold_rows
    n_rows = fold_rows * len(streams.ofmap_demand)
    if_walk = _read_walk(streams.ifmap_prefetch, streams.ifmap_demand, fold_rows, mem.ifmap_words, mem.ifmap_bw)
    f_walk = _read_walk(streams.filter_prefetch, streams.filter_demand, fold_rows, mem.filter_words, mem.filter_bw)
    writes = np.concatenate([(fold >= 0).sum(axis=1) for fold in streams.ofmap_demand])
    ofmap = _WriteBuffer(mem.ofmap_words, mem.ofmap_bw, writes)

    refills = (_refills_by_row(if_walk), _refills_by_row(f_walk))
    read_rows = sorted(set(refills[0]) | set(refills[1]))

    stalls, row, k = 0, 0, 0
    last_row_issue, last_row_ofmap = None, 0  # the last row's issue cycle and ofmap wait, if it had an event
    while row < n_rows:
        next_read = read_rows[k] if k < len(read_rows) else n_rows
        row = min(next_read, ofmap.next_event_row(row, stalls))
        if row >= n_rows:
            break
        cycle = row + stalls
        worst = ofmap.service_row(row, cycle) if writes[row] else 0
        if row == n_rows - 1:
            last_row_issue, last_row_ofmap = cycle, worst
        for walk, table in zip((if_walk, f_walk), refills):
            if row in table:
                first, count = table[row]
                worst = max(worst, _read_stall(cycle, first, count, walk.refill_cycles))
        stalls += worst
        if k < len(read_rows) and read_rows[k] == row:
            k += 1
        row += 1
    # Total Cycles: the last row's ofmap service cycle (its own read stall is not in it).
    total = (n_rows - 1 + stalls) if last_row_issue is None else last_row_issue + last_row_ofmap
    return ScaleSimLayerCycles(total, stalls, total - stalls, if_walk.dram_reads, f_walk.dram_reads,
                               ofmap.credited)


def scalesim_user_cycles(H: int, W: int, R: int, S: int, C: int, K: int, stride: int, rows: int, cols: int,
                         dataflow: str, memories: OperandMemories, groups: int = 1) -> ScaleSimLayerCycles:
    """SCALE-Sim 3.0.0's USER-mode cycles of one layer: ``H x W`` already padded, ``C -> K`` channels.

    ``groups`` independent groups (a depthwise layer: ``groups = C``) are simulated as one and
    scaled, as SCALE-Sim runs each as its own layer with fresh buffers.
    """
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}; got {dataflow!r}")
    memories.check_whole()
    memories = OperandMemories(*(int(v) for v in dataclasses.astuple(memories)))
    if C % groups or K % groups:
        raise ValueError(f"groups ({groups}) must divide C ({C}) and K ({K})")
    one = _one_group(H, W, R, S, C // groups, K // groups, stride, rows, cols, dataflow, memories)
    return ScaleSimLayerCycles(*(groups * value for value in one))


# --- the same architecture with a sensible controller -------------------------------------------

class OperandBufferCycles(NamedTuple):
    """Cycles and DRAM traffic (words) of the operand-buffer mode; arrays of the broadcast shape."""

    total_cycles: np.ndarray  #: max(compute, each operand's traffic / its bandwidth): the layer's whole time
    compute_cycles: np.ndarray  #: SCALE-Sim's compute cycles (no stalls)
    ifmap_dram_reads: np.ndarray
    filter_dram_reads: np.ndarray
    ofmap_dram_writes: np.ndarray


def _valid_span(size, kernel, stride, out):
    """Sum over the kernel offsets of the output positions whose input lies inside ``size``: the valid
    im2col rows (or columns). Positions past the input come from SCALE-Sim's ceil output size."""
    # Only the last output position can fall outside (SCALE-Sim's ceil); for it, offsets from here on do.
    last_inside = np.maximum(size - (out - 1) * stride, 0)
    return kernel * out - np.maximum(0, kernel - last_inside)


def operand_buffer_cycles(H, W, R, S, C, K, stride, rows, cols, dataflow, memories: OperandMemories | dict,
                          groups=1) -> OperandBufferCycles:
    """SCALE-Sim's architecture (per-operand SRAMs and DRAM channels, im2col streams, its fold order and
    partial-sum spills) with a sensible controller, in closed form; every argument broadcasts.

    ``dataflow`` is 0, 1, 2 for os, ws, is (:data:`DATAFLOWS`). Each operand's stream is fetched
    once; a block that the fold order reads again (OS and WS: the whole ifmap once per column
    fold; OS: a column fold's filter block once per row fold; IS: the whole filter once per
    column fold) keeps what fits in its SRAM and re-fetches the rest once per extra pass. The
    ofmap is written once on OS and once per row fold on WS and IS (spilled partial sums, as in
    SCALE-Sim). Transfers overlap compute (double buffering), so the layer takes the longest of
    compute and each channel's traffic over its bandwidth, initial fill and final drain included.
    ``memories``: an :class:`OperandMemories` or a dict of its fields as arrays.
    """
    m = dataclasses.asdict(memories) if isinstance(memories, OperandMemories) else memories
    H, W, R, S, C, K, stride, rows, cols, dataflow, groups = (
        np.asarray(x, np.float64) for x in (H, W, R, S, C, K, stride, rows, cols, dataflow, groups))
    C, K = C / groups, K / groups
    Eh = np.ceil((H - R + stride) / stride)
    Ew = np.ceil((W - S + stride) / stride)
    E, window = Eh * Ew, R * S * C
    os_, ws = dataflow == 0, dataflow == 1
    Sr = np.where(os_, E, window)
    Sc = np.where(dataflow == 2, E, K)
    T = np.where(os_, window, np.where(ws, E, K))
    row_folds, col_folds = np.ceil(Sr / rows), np.ceil(Sc / cols)
    per_fold = np.where(os_, T + rows + cols - 2, 2 * rows + cols + T - 2)
    compute = row_folds * col_folds * per_fold - 1

    ifmap_stream = C * _valid_span(H, R, stride, Eh) * _valid_span(W, S, stride, Ew)
    filter_stream = window * K
    again = lambda footprint, words: np.maximum(0.0, footprint - words)  # re-fetched on each extra pass
    ifmap_reads = ifmap_stream + np.where(dataflow == 2, 0.0, (col_folds - 1) * again(ifmap_stream, m["ifmap_words"]))
    last_cols = K - (col_folds - 1) * cols  # filters in the last column fold (OS)
    os_filter = filter_stream + (row_folds - 1) * ((col_folds - 1) * again(window * cols, m["filter_words"])
                                                   + again(window * last_cols, m["filter_words"]))
    is_filter = filter_stream + (col_folds - 1) * again(filter_stream, m["filter_words"])
    filter_reads = np.where(os_, os_filter, np.where(ws, filter_stream, is_filter))
    ofmap_writes = np.where(os_, E * K, row_folds * E * K)
    total = np.maximum.reduce([compute, ifmap_reads / m["ifmap_bw"], filter_reads / m["filter_bw"],
                               ofmap_writes / m["ofmap_bw"]])
    return OperandBufferCycles(groups * total, groups * compute, groups * ifmap_reads, groups * filter_reads,
                               groups * ofmap_writes)
