#!/usr/bin/env python3
"""Check the closed-form SCALE-Sim v3 formulas (README.md) against recorded.csv.

Standard library only:  python3 experiments/scalesim_reference/check_formulas.py

Checked for every row (CALC and USER): compute cycles (= Total - Stall),
mapping efficiency, compute utilisation, overall utilisation and the SRAM
read/write counters.  Checked for CALC rows only: stall cycles == 0.
"""

import csv
import math
import sys
from pathlib import Path


def fold_rows(df, r, c, t):
    """Demand-matrix rows (= cycles) per fold: OS T+R+C-2, WS/IS 2R+C+T-2."""
    return t + r + c - 2 if df == "os" else 2 * r + c + t - 2


def compute_cycles(sr, sc, t, r, c, df):
    """Stall-free 'Total Cycles' of one SCALE-Sim layer."""
    return math.ceil(sr / r) * math.ceil(sc / c) * fold_rows(df, r, c, t) - 1


def utils(sr, sc, t, r, c, df):
    """(mapping efficiency %, compute util %) as averaged per fold by SCALE-Sim."""
    me, cu = [], []
    util_cycles = t + r + c - 2 if df == "os" else 2 * r + 2 * c + t - 3
    for fc in range(math.ceil(sc / c)):
        for fr in range(math.ceil(sr / r)):
            mac = min(r, sr - fr * r) * min(c, sc - fc * c)
            me.append(mac / (r * c))
            cu.append(mac * t / (r * c * util_cycles))
    return 100 * sum(me) / len(me), 100 * sum(cu) / len(cu)


def sram_counts(sr, sc, t, r, c, df):
    """(ifmap SRAM reads, filter SRAM reads, ofmap SRAM writes) as counted by SCALE-Sim."""
    rf, cf = math.ceil(sr / r), math.ceil(sc / c)
    if df == "os":  # ofmap counter adds (R + C) per fold (a counting bug in systolic_compute_os)
        return cf * sr * t, rf * t * sc, sr * sc + rf * cf * (r + c)
    if df == "ws":
        return cf * t * sr, sr * sc, rf * t * sc
    return sr * sc, cf * sr * t, rf * sc * t


def main():
    path = Path(__file__).resolve().parent / "recorded.csv"
    bad = n = 0
    for row in csv.DictReader(path.open()):
        if row["status"] != "ok":
            continue
        n += 1
        sr, sc, t, r, c, k = (int(row[x]) for x in
                              ("sr", "sc", "t", "array_h", "array_w", "scale_factor"))
        df = row["dataflow"]
        errs = []
        if compute_cycles(sr, sc, t, r, c, df) * k != int(row["compute_cycles"]):
            errs.append("compute_cycles")
        if row["bandwidth_mode"] == "CALC" and int(row["stall_cycles"]) != 0:
            errs.append("stall_cycles")
        me, cu = utils(sr, sc, t, r, c, df)
        if abs(me - float(row["mapping_eff_pct"])) > 1e-6:
            errs.append("mapping_eff_pct")
        if abs(cu - float(row["compute_util_pct"])) > 1e-6:
            errs.append("compute_util_pct")
        ou = 100 * sr * sc * t * k / (int(row["total_cycles"]) * r * c)
        if abs(ou - float(row["overall_util_pct"])) > 1e-6:
            errs.append("overall_util_pct")
        got = tuple(int(row[x]) for x in ("sram_ifmap_reads", "sram_filter_reads",
                                          "sram_ofmap_writes"))
        if tuple(x * k for x in sram_counts(sr, sc, t, r, c, df)) != got:
            errs.append("sram_counts")
        if errs:
            bad += 1
            print("MISMATCH", row["layer"], row["config"], errs)
    print(f"{n} rows checked, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
