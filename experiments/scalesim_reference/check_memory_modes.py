#!/usr/bin/env python3
"""Hold the memory modes to SCALE-Sim's recorded USER-mode runs; prints what it measures.

    .venv/bin/python experiments/scalesim_reference/check_memory_modes.py [--rows] [CSV ...]

For every ``status=ok`` USER row of ``recorded.csv`` and ``recorded_user_sweep.csv`` (or the
CSVs given), the layer's total cycles from each memory mode beside SCALE-Sim's "Total Cycles":

* ``scalesim_user``: the replay of SCALE-Sim's USER-mode memory system (also its DRAM reads);
* ``operand_buffers``: the same SRAMs and channels with a sensible controller (fill and drain
  included, so it is the layer's whole time, not SCALE-Sim's Total Cycles);
* ``global_buffer``: the default model (one buffer of the three SRAMs, one channel).

Then the mean per-layer error per dataflow, the replay's time beside SCALE-Sim's recorded
time on the same runs, and SCALE-Sim's non-monotone response to SRAM size on one layer.
``--rows`` prints every row.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from cost_models import Accelerator, Workload, evaluate_batch  # noqa: E402
from cost_models.scalesim import read_topology  # noqa: E402
from cost_models.scalesim_memory import (DATAFLOWS, OperandMemories, operand_buffer_cycles,  # noqa: E402
                                         scalesim_user_cycles)

CSVS = (HERE / "recorded.csv", HERE / "recorded_user_sweep.csv")


def user_rows(paths) -> list[dict]:
    """The USER-mode rows SCALE-Sim completed, from every CSV that exists."""
    rows = []
    for path in paths:
        if Path(path).exists():
            with open(path) as handle:
                rows += [r for r in csv.DictReader(handle) if r["bandwidth_mode"] == "USER" and r["status"] == "ok"]
    return rows


def geometry(row: dict) -> tuple:
    """(H, W, R, S, C, K, stride, groups) of a recorded row (a DP row is C channels of one filter each)."""
    C = int(row["channels"])
    depthwise = row["depthwise"] == "1"
    K = C if depthwise else int(row["num_filter"])
    return (int(row["ifmap_h"]), int(row["ifmap_w"]), int(row["filter_h"]), int(row["filter_w"]), C, K,
            int(row["stride"]), C if depthwise else 1)


def memories(row: dict) -> OperandMemories:
    """The row's SRAMs and channels (the recording script gives every operand the same bandwidth)."""
    words = [int(float(row[f"{op}_sram_kb"]) * 1024) for op in ("ifmap", "filter", "ofmap")]
    return OperandMemories(*words, *(int(row["bandwidth"]),) * 3)


def replay(row: dict):
    H, W, R, S, C, K, stride, groups = geometry(row)
    return scalesim_user_cycles(H, W, R, S, C, K, stride, int(row["array_h"]), int(row["array_w"]),
                                row["dataflow"], memories(row), groups)


def operand_buffers(row: dict) -> float:
    H, W, R, S, C, K, stride, groups = geometry(row)
    return float(operand_buffer_cycles(H, W, R, S, C, K, stride, int(row["array_h"]), int(row["array_w"]),
                                       DATAFLOWS.index(row["dataflow"]), memories(row), groups).total_cycles)


def accelerator_for(row: dict) -> Accelerator:
    """A recorded run's array as the default model sees it: one global buffer of the three SRAMs, one channel
    of the run's bandwidth (10 words/cycle, SCALE-Sim's CALC-mode reads, when none is recorded)."""
    kb = sum(float(row[f"{op}_sram_kb"]) for op in ("ifmap", "filter", "ofmap"))
    return Accelerator(rows=int(row["array_h"]), cols=int(row["array_w"]), dataflow=row["dataflow"] + "_systolic",
                       gb_bytes=int(kb * 1024), dram_bw=float(row["bandwidth"] or 10), dram_latency=0, mac_bits=8,
                       rf_bytes=1)


def global_buffer(row: dict, layers: dict) -> float:
    return float(evaluate_batch(Workload((layers[row["layer"]],)), [accelerator_for(row)], per_layer=False).cycles[0])


def errors(rows: list[dict], show_rows: bool = False) -> dict:
    """Per mode and dataflow: relative errors of total cycles; and the replay's seconds per row."""
    layers = {layer.name: layer for layer in read_topology(HERE / "layers.csv")}
    out = {mode: {df: [] for df in DATAFLOWS} for mode in ("scalesim_user", "operand_buffers", "global_buffer")}
    seconds, reads_exact = [], 0
    for row in rows:
        theirs = float(row["total_cycles"])
        start = time.perf_counter()
        result = replay(row)
        seconds.append(time.perf_counter() - start)
        reads_exact += (result.ifmap_dram_reads == float(row["dram_ifmap_reads"])
                        and result.filter_dram_reads == float(row["dram_filter_reads"]))
        ours = {"scalesim_user": float(result.total_cycles), "operand_buffers": operand_buffers(row),
                "global_buffer": global_buffer(row, layers)}
        for mode, value in ours.items():
            out[mode][row["dataflow"]].append(value / theirs - 1)
        if show_rows:
            print(f"  {row['config']:<26}{row['layer']:<9}SCALE-Sim {theirs:>12,.0f}  replay {ours['scalesim_user']:>12,.0f}"
                  f"  operand_buffers {ours['operand_buffers']:>12,.0f}  global_buffer {ours['global_buffer']:>12,.0f}")
    return {"errors": out, "seconds": np.asarray(seconds), "reads_exact": reads_exact}


def non_monotone() -> list[tuple[int, int]]:
    """Conv2 (18x18x16 -> 32, 3x3) on a 16x16 WS array at 4 words/cycle, SRAM per operand swept: (kB, cycles)."""
    return [(kb, scalesim_user_cycles(18, 18, 3, 3, 16, 32, 1, 16, 16, "ws", OperandMemories.uniform(kb, 4)).total_cycles)
            for kb in range(12, 25)]


def report(paths=CSVS, show_rows: bool = False) -> dict:
    rows = user_rows(paths)
    names = ", ".join(Path(p).name for p in paths if Path(p).exists())
    print(f"SCALE-Sim 3.0.0 USER-mode runs: {len(rows)} layer runs ({names})")
    result = errors(rows, show_rows)
    print(f"  {'mode':<17}" + "".join(f"{df + ' mean |err|':>16}{'max':>9}" for df in DATAFLOWS))
    for mode, per_df in result["errors"].items():
        cells = ""
        for df in DATAFLOWS:
            e = np.abs(per_df[df]) if per_df[df] else np.asarray([np.nan])
            cells += f"{np.mean(e):>16.2%}{np.max(e):>9.1%}"
        print(f"  {mode:<17}{cells}")
    exact = sum(int(np.sum(np.abs(v) == 0)) for v in result["errors"]["scalesim_user"].values())
    print(f"  scalesim_user: {exact} of {len(rows)} runs exact in total cycles, {result['reads_exact']} exact in "
          f"ifmap and filter DRAM reads")
    recorded_s = np.asarray([float(r["seconds_full_layer_est"]) for r in rows])
    s = result["seconds"]
    print(f"  time per layer: replay median {np.median(s) * 1e3:.1f} ms, max {s.max() * 1e3:.0f} ms, total {s.sum():.1f} s; "
          f"SCALE-Sim (recorded) median {np.median(recorded_s):.2f} s, max {recorded_s.max():.0f} s, total "
          f"{recorded_s.sum():.0f} s ({recorded_s.sum() / s.sum():,.0f}x)")
    recorded = {int(r["ifmap_sram_kb"]): int(r["total_cycles"]) for r in rows
                if r["config"].startswith("user_ws_16x16_bw4_") and r["layer"] == "Conv2"}
    print("  SCALE-Sim's USER mode is not monotone in SRAM size: Conv2 (18x18x16 -> 32, 3x3), 16x16 WS, "
          "4 words/cycle, kB per operand: cycles (* = also recorded by SCALE-Sim, equal):")
    print("    " + ", ".join(f"{kb} kB {cycles:,}{'*' if recorded.get(kb) == cycles else ''}"
                             for kb, cycles in non_monotone()))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="*", type=Path, help="recorded CSVs (default: recorded.csv, recorded_user_sweep.csv)")
    parser.add_argument("--rows", action="store_true", help="print every row")
    args = parser.parse_args()
    report(args.csv or CSVS, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
