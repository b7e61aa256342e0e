#!/usr/bin/env python3
"""Record SCALE-Sim v3 reference numbers for the layers in ``layers.csv``.

Run with the interpreter of the virtualenv that has SCALE-Sim installed::

    /work/peers-venv/bin/python experiments/scalesim_reference/record_scalesim.py

(the venv is made with ``python3 -m venv /work/peers-venv`` and
``/work/peers-venv/bin/pip install "scalesim==3.0.0" "numpy<2.4" six``).

This script itself only uses the standard library.  Every (layer,
configuration) pair is simulated by a *separate* child process running
``sys.executable`` (so SCALE-Sim must be importable by the interpreter that
runs this script).  Simulations run strictly one after the other.  The child
calls the SCALE-Sim Python API with ``save_disk_space=True`` so that no
per-cycle trace files are written (the ``scalesim.scale`` CLI always writes
them, which is slow); reports go to a temporary directory and are parsed from
``COMPUTE_REPORT.csv``, ``BANDWIDTH_REPORT.csv`` and
``DETAILED_ACCESS_REPORT.csv``.

Output: ``recorded.csv`` next to this file, one row per (layer, configuration),
written incrementally.  See README.md for the column meanings.

SCALE-Sim quirks handled here
-----------------------------
* The cfg must contain ``[layout]`` and ``[sparsity]`` sections, and a layout
  file must be given; a header-only CSV is enough (custom layouts are off).
* Topology rows must end with a comma: SCALE-Sim does ``row.split(',')[:-1]``.
* Layers whose name contains ``DP`` are split by SCALE-Sim into one layer per
  channel, each with Channels=1 and the row's Num Filter.  In ``layers.csv``
  the DP rows therefore carry Channels=C and Num Filter=1 (a true depthwise
  conv with multiplier 1).  We simulate a single channel (Channels=1,
  Num Filter=1) and multiply cycle and access counts by C; every channel is
  an identical, independent layer in SCALE-Sim, so this is exact.
* In USER bandwidth mode SCALE-Sim 3.0.0 takes the ifmap and filter DRAM
  bandwidth from ``[layout] IfmapSRAMBankBandwidth`` / ``FilterSRAMBankBandwidth``
  and only the ofmap bandwidth from ``[architecture_presets] Bandwidth``
  (first entry).  We set all three to the same value.  In CALC mode the
  backing bandwidths are fixed by SCALE-Sim (10 words/cycle for ifmap and
  filter reads, ArrayWidth words/cycle for ofmap writes) and never stall.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYERS_CSV = HERE / "layers.csv"

TOPOLOGY_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                   "Channels, Num Filter, Strides,")

# ---------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------


def _configs() -> list[dict]:
    """All simulated configurations, in run order."""
    cfgs = []
    # Compute-only: CALC (estimate-bandwidth) mode never stalls.
    for rows, cols in ((8, 8), (32, 32), (16, 8)):
        for df in ("os", "ws", "is"):
            cfgs.append(dict(id=f"calc_{df}_{rows}x{cols}", array_h=rows, array_w=cols,
                             dataflow=df, bandwidth_mode="CALC", bandwidth="",
                             ifmap_sram_kb=64, filter_sram_kb=64, ofmap_sram_kb=64))
    # Limited bandwidth: USER mode, small SRAMs so that some layers stall.
    for bw in (10, 2):
        for df in ("os", "ws", "is"):
            cfgs.append(dict(id=f"user_{df}_32x32_bw{bw}", array_h=32, array_w=32,
                             dataflow=df, bandwidth_mode="USER", bandwidth=bw,
                             ifmap_sram_kb=16, filter_sram_kb=16, ofmap_sram_kb=16))
    return cfgs


# Arrays that are not square (and one that is), cycled with the SRAM sizes and bandwidths.
SWEEP_ARRAYS = ((16, 8), (8, 32), (16, 16), (32, 16), (24, 12))


def _sweep_configs() -> list[dict]:
    """USER-mode runs across SRAM sizes, bandwidths, array shapes and dataflows.

    Each dataflow gets every SRAM size (12, 15, 17, 20, 24 kB per operand, none a power of
    two but 12 = 3 x 4), with the bandwidth (2, 4, 8 words/cycle) and the array shape
    rotated so that each dataflow sees every bandwidth and several shapes.  Three more runs
    show USER mode's non-monotone SRAM response: 16x16 WS, 4 words/cycle, 12/16/17 kB.
    """
    cfgs = []
    for d, df in enumerate(("os", "ws", "is")):
        for i, kb in enumerate((12, 15, 17, 20, 24)):
            bw = (2, 4, 8)[(i + d) % 3]
            rows, cols = SWEEP_ARRAYS[(i + d) % len(SWEEP_ARRAYS)]
            cfgs.append(dict(id=f"user_{df}_{rows}x{cols}_bw{bw}_{kb}kb", array_h=rows,
                             array_w=cols, dataflow=df, bandwidth_mode="USER", bandwidth=bw,
                             ifmap_sram_kb=kb, filter_sram_kb=kb, ofmap_sram_kb=kb))
    for kb in (12, 16, 17):
        cfgs.append(dict(id=f"user_ws_16x16_bw4_{kb}kb", array_h=16, array_w=16, dataflow="ws",
                         bandwidth_mode="USER", bandwidth=4,
                         ifmap_sram_kb=kb, filter_sram_kb=kb, ofmap_sram_kb=kb))
    return cfgs


CONFIG_SETS = {"reference": (_configs, "recorded.csv"),
               "user_sweep": (_sweep_configs, "recorded_user_sweep.csv")}


CFG_TEMPLATE = """\
[general]
run_name = run

[architecture_presets]
ArrayHeight = {array_h}
ArrayWidth = {array_w}
IfmapSramSzkB = {ifmap_sram_kb}
FilterSramSzkB = {filter_sram_kb}
OfmapSramSzkB = {ofmap_sram_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bw}
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bw}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bw}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = {bandwidth_mode}
UseRamulatorTrace = False
"""

# Child-process program: run SCALE-Sim through its Python API without traces.
RUNNER = r"""
import json, sys, time
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
t0 = time.perf_counter()
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout)
s.run_scale(top_path=out)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0}))
"""

# ---------------------------------------------------------------------------
# Report parsing
# ---------------------------------------------------------------------------

# (report file, SCALE-Sim header, our column name, scaled by C for DP layers?)
REPORT_FIELDS = [
    ("COMPUTE_REPORT.csv", "Total Cycles (incl. prefetch)", "total_cycles_incl_prefetch", True),
    ("COMPUTE_REPORT.csv", "Total Cycles", "total_cycles", True),
    ("COMPUTE_REPORT.csv", "Stall Cycles", "stall_cycles", True),
    ("COMPUTE_REPORT.csv", "Overall Util %", "overall_util_pct", False),
    ("COMPUTE_REPORT.csv", "Mapping Efficiency %", "mapping_eff_pct", False),
    ("COMPUTE_REPORT.csv", "Compute Util %", "compute_util_pct", False),
    ("BANDWIDTH_REPORT.csv", "Avg IFMAP SRAM BW", "avg_ifmap_sram_bw", False),
    ("BANDWIDTH_REPORT.csv", "Avg FILTER SRAM BW", "avg_filter_sram_bw", False),
    ("BANDWIDTH_REPORT.csv", "Avg OFMAP SRAM BW", "avg_ofmap_sram_bw", False),
    ("BANDWIDTH_REPORT.csv", "Avg IFMAP DRAM BW", "avg_ifmap_dram_bw", False),
    ("BANDWIDTH_REPORT.csv", "Avg FILTER DRAM BW", "avg_filter_dram_bw", False),
    ("BANDWIDTH_REPORT.csv", "Avg OFMAP DRAM BW", "avg_ofmap_dram_bw", False),
]
for _op, _OP in (("ifmap", "IFMAP"), ("filter", "Filter"), ("ofmap", "OFMAP")):
    _acc = "Writes" if _op == "ofmap" else "Reads"
    for _mem in ("SRAM", "DRAM"):
        REPORT_FIELDS += [
            ("DETAILED_ACCESS_REPORT.csv", f"{_mem} {_OP} Start Cycle",
             f"{_mem.lower()}_{_op}_start_cycle", False),
            ("DETAILED_ACCESS_REPORT.csv", f"{_mem} {_OP} Stop Cycle",
             f"{_mem.lower()}_{_op}_stop_cycle", False),
            ("DETAILED_ACCESS_REPORT.csv", f"{_mem} {_OP} {_acc}",
             f"{_mem.lower()}_{_op}_{_acc.lower()}", True),
        ]

LAYER_COLUMNS = ["layer", "ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels",
                 "num_filter", "stride", "depthwise", "scaled_from_one_channel", "scale_factor",
                 "ofmap_h", "ofmap_w", "sr", "sc", "t"]
CONFIG_COLUMNS = ["config", "array_h", "array_w", "dataflow", "bandwidth_mode", "bandwidth",
                  "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"]
RESULT_COLUMNS = (["total_cycles_incl_prefetch", "total_cycles", "stall_cycles", "compute_cycles"]
                  + [f[2] for f in REPORT_FIELDS[3:]])
TAIL_COLUMNS = ["seconds", "seconds_full_layer_est", "wall_seconds", "status"]
COLUMNS = LAYER_COLUMNS + CONFIG_COLUMNS + RESULT_COLUMNS + TAIL_COLUMNS


def _read_report(path: Path) -> dict[str, str]:
    """Parse a one-layer SCALE-Sim report (', '-separated, trailing comma)."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    header = [h.strip() for h in lines[0].split(",")]
    values = [v.strip() for v in lines[1].split(",")]
    return {h: v for h, v in zip(header, values) if h}


def _num(text: str):
    """'123' / '123.0' -> int, other floats stay float."""
    x = float(text)
    return int(x) if x.is_integer() else x


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


def read_layers(path: Path) -> list[dict]:
    """Read a SCALE-Sim conv topology CSV (rows end with a comma)."""
    layers = []
    with path.open() as f:
        next(f)  # header
        for row in f:
            row = row.strip()
            if not row:
                continue
            fields = [x.strip() for x in row.split(",")]
            if fields[-1] == "":
                fields = fields[:-1]
            name = fields[0]
            h, w, r, s, c, k, stride = (int(x) for x in fields[1:8])
            layers.append(dict(layer=name, ifmap_h=h, ifmap_w=w, filter_h=r, filter_w=s,
                               channels=c, num_filter=k, stride=stride,
                               depthwise=int("DP" in name)))
    return layers


def spatio_temporal(layer: dict, dataflow: str, channels: int, filters: int):
    """SCALE-Sim's ofmap size and (Sr, Sc, T) mapping (topology_utils.py)."""
    st = layer["stride"]
    # SCALE-Sim: ofmap = ceil((H - R + stride) / stride)   (not floor((H-R)/s)+1)
    oh = -(-(layer["ifmap_h"] - layer["filter_h"] + st) // st)
    ow = -(-(layer["ifmap_w"] - layer["filter_w"] + st) // st)
    npx, win = oh * ow, layer["filter_h"] * layer["filter_w"] * channels
    sr, sc, t = {"os": (npx, filters, win), "ws": (win, filters, npx),
                 "is": (win, npx, filters)}[dataflow]
    return oh, ow, sr, sc, t


# ---------------------------------------------------------------------------
# Running one simulation
# ---------------------------------------------------------------------------


def run_one(layer: dict, cfg: dict, workdir: Path, timeout: float) -> dict:
    """Simulate one layer under one configuration; return a recorded.csv row."""
    dp = layer["depthwise"] == 1
    sim_c = 1 if dp else layer["channels"]
    sim_k = 1 if dp else layer["num_filter"]
    scale = layer["channels"] if dp else 1

    oh, ow, sr, sc, t = spatio_temporal(layer, cfg["dataflow"], sim_c, sim_k)
    row = {k: layer[k] for k in LAYER_COLUMNS[:9]}
    row.update(scaled_from_one_channel=int(dp), scale_factor=scale,
               ofmap_h=oh, ofmap_w=ow, sr=sr, sc=sc, t=t)
    row.update({k: cfg[k if k != "config" else "id"] for k in CONFIG_COLUMNS})

    d = workdir / f"{cfg['id']}__{layer['layer']}"
    d.mkdir(parents=True, exist_ok=True)
    topo = d / "topology.csv"
    topo.write_text(TOPOLOGY_HEADER + "\n" + ", ".join(
        [layer["layer"]] + [str(x) for x in (layer["ifmap_h"], layer["ifmap_w"],
                                             layer["filter_h"], layer["filter_w"],
                                             sim_c, sim_k, layer["stride"])]) + ",\n")
    layout = d / "layout.csv"
    layout.write_text("Layer name,\n")
    cfg_file = d / "scale.cfg"
    bw = cfg["bandwidth"] if cfg["bandwidth_mode"] == "USER" else 10  # unused in CALC mode
    cfg_file.write_text(CFG_TEMPLATE.format(bw=bw, **cfg))
    out = d / "out"

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(cfg_file), str(topo),
                               str(layout), str(out)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        row.update(wall_seconds=round(time.perf_counter() - t0, 3),
                   status=f"error: timeout after {timeout:.0f}s")
        return row
    row["wall_seconds"] = round(time.perf_counter() - t0, 3)

    result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not result:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1]
        row["status"] = f"error (rc={proc.returncode}): {tail}"[:300]
        return row
    row["seconds"] = round(json.loads(result[-1][len("RESULT "):])["seconds"], 3)
    row["seconds_full_layer_est"] = round(row["seconds"] * scale, 3)

    reports = {}
    for fname, header, col, scaled in REPORT_FIELDS:
        if fname not in reports:
            reports[fname] = _read_report(out / "run" / fname)
        v = _num(reports[fname][header])
        row[col] = v * scale if scaled else v
    row["compute_cycles"] = row["total_cycles"] - row["stall_cycles"]
    row["status"] = "ok"
    return row


# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers-csv", type=Path, default=LAYERS_CSV)
    ap.add_argument("--set", choices=sorted(CONFIG_SETS), default="reference",
                    help="which configurations: the 15 of recorded.csv, or the USER-mode sweep "
                         "of recorded_user_sweep.csv")
    ap.add_argument("--out", type=Path, default=None, help="default: the set's csv here")
    ap.add_argument("--configs", default="", help="comma-separated config ids (default: all)")
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-simulation timeout [s]")
    args = ap.parse_args()

    try:
        from importlib.metadata import version
        versions = f"scalesim {version('scalesim')}, numpy {version('numpy')}"
    except Exception as exc:  # pragma: no cover - informational only
        versions = f"(versions unknown: {exc})"
    print(f"python {sys.version.split()[0]} at {sys.executable}; {versions}", flush=True)

    layers = read_layers(args.layers_csv)
    make_configs, default_out = CONFIG_SETS[args.set]
    cfgs = make_configs()
    args.out = args.out or HERE / default_out
    if args.configs:
        want = set(args.configs.split(","))
        cfgs = [c for c in cfgs if c["id"] in want]
    if args.layers:
        want = set(args.layers.split(","))
        layers = [lay for lay in layers if lay["layer"] in want]

    n, t_start = len(layers) * len(cfgs), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scalesim_ref_") as tmp, \
            args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        i = 0
        for cfg in cfgs:
            for layer in layers:
                i += 1
                row = run_one(layer, cfg, Path(tmp), args.timeout)
                writer.writerow(row)
                f.flush()
                msg = (f"total={row['total_cycles']} stall={row['stall_cycles']}"
                       if row["status"] == "ok" else row["status"])
                print(f"[{i:3d}/{n}] {cfg['id']:<22} {layer['layer']:<8} "
                      f"{row.get('seconds', float('nan')):7.2f}s  {msg}", flush=True)
    print(f"done: {n} simulations in {time.perf_counter() - t_start:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
