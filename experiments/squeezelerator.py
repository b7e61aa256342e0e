"""Reproduce the Squeezelerator study (Kwon et al., DAC'18) on the cost model.

    python experiments/squeezelerator.py            # tables on stdout, figures and the report written
    python experiments/squeezelerator.py --json     # {"table1": ..., "table2": ...} on stdout

Table 1 (MAC shares), Table 2 (per-layer WS/OS choice against WS-only and OS-only on
the Squeezelerator preset with 40 % zero weights), the layer-type findings of section
4.1.1, Figures 1 and 3 as PNG, the SqueezeNext changes and the co-design outcome, all
beside the paper's numbers. The report (``experiments/squeezelerator.md``) is rewritten
from this run; the numbers come from ``experiments/squeezelerator_study.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezelerator_study as sq  # noqa: E402
from codesign.results.plots import plot_layer_comparison  # noqa: E402
from cost_models.physics import TILING_TIME_TOLERANCE  # noqa: E402
from search_spaces.reference import SQUEEZENEXT_VARIANTS, squeezenext_variant  # noqa: E402

NAMES = {"alexnet": "AlexNet", "mobilenet_v1": "1.0 MobileNet-224", "tiny_darknet": "Tiny Darknet",
         "squeezenet_v1_0": "SqueezeNet v1.0", "squeezenet_v1_1": "SqueezeNet v1.1", "squeezenext_23": "SqueezeNext"}
#: The paper gives no clock; DRAM time in cycles depends on it (16 GB/s fixed).
CLOCKS_MHZ = (250, 500, 1000)


def run() -> dict:
    """Every number of the report, from the cost model."""
    table2, reports = sq.table2()
    before, after = sq.variant_reports(sq.RF_ENTRIES_BEFORE), sq.variant_reports(sq.RF_ENTRIES_AFTER)
    clocks = {mhz: sq.table2(base=sq.accelerator(clock_mhz=mhz))[0] for mhz in CLOCKS_MHZ if mhz != 500}
    clocks[500] = table2
    return {
        "table1": sq.table1(),
        "table2": table2,
        "compare": sq.compare_table2(table2),
        "reports": reports,
        "layer_types": sq.layer_type_ratios(reports),
        "variants": before,
        "final": after["v5"],
        "effects": sq.squeezenext_effects(before, after),
        "outcome": sq.codesign_outcome(after["v5"], {name: reports[name]["flex"] for name in sq.PAPER_CODESIGN}),
        "clocks": dict(sorted(clocks.items())),
    }


def json_summary(results: dict) -> dict:
    """The issue's schema: table1 percentages and table2 speedups (x) / energy savings (%) by network."""
    round3 = lambda row: {k: round(float(v), 3) for k, v in row.items()}
    return {"table1": {n: round3(r) for n, r in results["table1"].items()},
            "table2": {n: round3(r) for n, r in results["table2"].items()}}


def write_figures(results: dict, folder: Path) -> dict[str, Path]:
    squeezenet = results["reports"]["squeezenet_v1_0"]
    fig1 = plot_layer_comparison(
        {"WS only": squeezenet["ws"], "OS only": squeezenet["os"], "per-layer WS/OS (Squeezelerator)": squeezenet["flex"]},
        folder / "squeezelerator_fig1.png",
        "Figure 1: SqueezeNet v1.0 per layer on the 32x32 Squeezelerator, 40 % zero weights")
    fig3 = plot_layer_comparison(
        {f"{v}: {k}x{k} first layer, blocks {list(depths)}": results["variants"][v]
         for v, (k, depths) in SQUEEZENEXT_VARIANTS.items()},
        folder / "squeezelerator_fig3.png",
        "Figure 3: 1.0-SqNxt-23 variants per layer on the Squeezelerator (per-layer WS/OS)")
    return {"fig1": fig1, "fig3": fig3}


# --- the report -------------------------------------------------------------------------------

def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table1_markdown(results: dict) -> str:
    rows = []
    for name, ours in results["table1"].items():
        paper = sq.PAPER_TABLE1[name]
        rows.append([NAMES[name]] + [f"{ours[k]:.1f} ({paper[k]})" for k in sq.TABLE1_KEYS])
    return _table(["network", "conv1", "1x1", "FxF", "DW"], rows)


def table2_markdown(results: dict) -> str:
    rows = []
    cmp = results["compare"]
    for name, ours in results["table2"].items():
        paper, ratio, ok = sq.PAPER_TABLE2[name], cmp["ratios"][name], cmp["within"][name]
        mark = lambda k: "" if ok[k] else " **miss**"
        rows.append([NAMES[name],
                     f"{ours['speedup_vs_os']:.2f}x ({paper['speedup_vs_os']:.2f}x) {ratio['speedup_vs_os']:.2f}{mark('speedup_vs_os')}",
                     f"{ours['speedup_vs_ws']:.2f}x ({paper['speedup_vs_ws']:.2f}x) {ratio['speedup_vs_ws']:.2f}{mark('speedup_vs_ws')}",
                     f"{ours['energy_saving_vs_os']:.1f} % ({paper['energy_saving_vs_os']} %)",
                     f"{ours['energy_saving_vs_ws']:.1f} % ({paper['energy_saving_vs_ws']} %)"])
    return _table(["network", "speedup vs OS (paper) ours/paper", "speedup vs WS (paper) ours/paper",
                   "energy saved vs OS (paper)", "energy saved vs WS (paper)"], rows)


def layer_types_markdown(results: dict) -> str:
    rows = []
    for kind, values in results["layer_types"].items():
        faster, low, high = sq.PAPER_LAYER_TYPES[kind]
        lo, hi = values[0], values[-1]
        rows.append([kind, faster.upper(), f"{low:g}x to {high:g}x", f"{lo[0]:.2f}x to {hi[0]:.2f}x",
                     f"{lo[1]} {lo[2]} / {hi[1]} {hi[2]}", len(values)])
    return _table(["layer type", "faster on", "paper", "ours (six networks)", "extremes (lowest / highest)", "layers"], rows)


def clocks_markdown(results: dict) -> str:
    rows = []
    for name in sq.NETWORKS:
        rows.append([NAMES[name]] + [f"{results['clocks'][mhz][name]['speedup_vs_os']:.2f}x / "
                                     f"{results['clocks'][mhz][name]['speedup_vs_ws']:.2f}x" for mhz in results["clocks"]])
    return _table(["network"] + [f"{mhz} MHz ({16e3 / mhz:.0f} B/cycle): vs OS / vs WS" for mhz in results["clocks"]], rows)


def effects_markdown(results: dict) -> str:
    rows = [[e["change"], e["variants"], f"{e['latency_ms'][0]:.3f} -> {e['latency_ms'][1]:.3f} ms",
             f"{e['latency_change_pct']:+.1f} %", f"{e['energy_uj'][0]:.0f} -> {e['energy_uj'][1]:.0f} uJ",
             f"{e['energy_change_pct']:+.1f} %"] for e in results["effects"]]
    return _table(["change", "variants", "latency", "change", "energy", "change"], rows)


def variants_markdown(results: dict) -> str:
    rows = []
    for v, (k, depths) in SQUEEZENEXT_VARIANTS.items():
        t = results["variants"][v].total
        rows.append([v, f"{k}x{k}", list(depths), f"{t['macs'] / 1e6:.0f} M", f"{t['latency_s'] * 1e3:.3f} ms",
                     f"{t['energy_pj'] / 1e6:.0f} uJ", f"{100 * t['utilization']:.0f} %"])
    return _table(["variant", "first layer", "blocks per stage", "MACs executed", "latency", "energy", "utilisation"], rows)


def outcome_markdown(results: dict) -> str:
    rows = [[NAMES[name], f"{o['speedup']:.2f}x ({o['paper_speedup']}x)", f"{o['energy_ratio']:.2f}x ({o['paper_energy_ratio']}x)"]
            for name, o in results["outcome"].items()]
    return _table(["final SqueezeNext against", "faster by (paper)", "less energy by (paper)"], rows)


def mobilenet_diagnosis(results: dict) -> dict[str, float]:
    """Why MobileNet gains more against WS than in the paper: the depthwise layers' share of time."""
    reports = results["reports"]["mobilenet_v1"]
    flex, ws = reports["flex"], reports["ws"]
    kinds = sq.table1_types(flex.workload.layers)
    dw = [i for i, k in enumerate(kinds) if k == "DW"]
    dw_flex = sum(flex.layers[i]["cycles"] for i in dw)
    dw_ws = sum(ws.layers[i]["cycles"] for i in dw)
    dw_stall = sum(flex.layers[i]["stall_cycles"] for i in dw)
    ratio = dw_ws / dw_flex
    paper_share = 100.0 * (sq.PAPER_TABLE2["mobilenet_v1"]["speedup_vs_ws"] - 1.0) / (ratio - 1.0)
    return {"dw_share": 100.0 * dw_flex / flex.total["cycles"], "dw_ratio": ratio,
            "dw_stall": 100.0 * dw_stall / dw_flex, "implied_paper_share": paper_share}


def alexnet_diagnosis(results: dict) -> dict[str, float]:
    reports = results["reports"]["alexnet"]
    flex, os_ = reports["flex"], reports["os"]
    shares = sq.time_shares(flex)
    kinds = sq.table1_types(flex.workload.layers)
    late = [i for i, (k, row) in enumerate(zip(kinds, flex.layers)) if k == "FxF" and row["dataflow"] == "ws"]
    slow = sum(os_.layers[i]["cycles"] for i in late) / max(sum(flex.layers[i]["cycles"] for i in late), 1.0)
    fc_energy = sum(r["energy_pj"] for r, k in zip(flex.layers, kinds) if k == "FC") / flex.total["energy_pj"]
    return {"fc_time": shares.get("FC", 0.0), "fc_energy": 100.0 * fc_energy, "late_os_slowdown": slow,
            "late_layers": len(late)}


def pointwise_ties(results: dict) -> dict[str, float]:
    """The 1x1 layers that run no faster on WS than on OS: how many, smallest map, DRAM stall share."""
    ties = [(name, layer) for ratio, name, layer in results["layer_types"]["1x1"] if ratio < 1.0 + TILING_TIME_TOLERANCE]
    maps, stalls = [], []
    for name, layer in ties:
        by_df = results["reports"][name]
        i = [row["layer"] for row in by_df["ws"].layers].index(layer)
        maps.append(by_df["ws"].workload.layers[i].P)
        stalls += [by_df[df].layers[i]["stall_cycles"] / by_df[df].layers[i]["cycles"] for df in ("ws", "os")]
    return {"count": len(ties), "smallest_map": min(maps, default=0),
            "stall_low": 100 * min(stalls, default=0), "stall_high": 100 * max(stalls, default=0)}


def energy_against_os(results: dict) -> dict[str, float]:
    """How the per-layer choice's energy differs from OS-only: array side (MAC, RF, inter-PE) and memory side."""
    array, memory = [], []
    for by_df in results["reports"].values():
        os_, flex = by_df["os"].total, by_df["flex"].total
        on_array = lambda t: t["energy_mac_pj"] + t["energy_rf_pj"] + t["energy_noc_pj"]
        off_array = lambda t: t["energy_gb_pj"] + t["energy_dram_pj"]
        array.append(100 * (on_array(flex) / on_array(os_) - 1))
        memory.append(100 * (off_array(flex) / off_array(os_) - 1))
    return {"array_low": min(array), "array_high": max(array), "memory_low": min(memory), "memory_high": max(memory)}


def markdown(results: dict, figures: dict[str, Path], md_path: Path) -> str:
    cmp = results["compare"]
    misses = cmp["misses"]
    mob = mobilenet_diagnosis(results)
    alex = alexnet_diagnosis(results)
    acc = sq.accelerator()
    rel = lambda p: Path(p).resolve().relative_to(md_path.parent.resolve()).as_posix()
    types = results["layer_types"]
    miss_text = ", ".join(f"{NAMES[n]} {k.replace('_', ' ')} ({cmp['ratios'][n][k]:.2f}x the paper's)" for n, k in misses)
    goal = ("**met**: every speedup is within 1.5x of the paper's" if not misses else
            f"**not met** for {len(misses)} of 12 speedups: {miss_text}")
    effects = {e["variants"]: e for e in results["effects"]}
    ties = pointwise_ties(results)
    energy = energy_against_os(results)
    clocks = results["clocks"]
    fast = max(clocks)
    first_layer_macs = (squeezenext_variant("v1").macs - squeezenext_variant("v2").macs) / 1e6
    sqnet = results["reports"]["squeezenet_v1_0"]["flex"].total
    final = results["final"].total
    stall = lambda t: 100 * t["stall_cycles"] / t["cycles"]
    lower_energy = [n for n, row in results["table2"].items()
                    if row["energy_saving_vs_os"] < sq.PAPER_TABLE2[n]["energy_saving_vs_os"]]
    ws_energy_gap = max(abs(row["energy_saving_vs_ws"] - sq.PAPER_TABLE2[n]["energy_saving_vs_ws"])
                        for n, row in results["table2"].items())
    return f"""# The Squeezelerator study on the cost model

Regenerated by `python experiments/squeezelerator.py` (numbers from
`experiments/squeezelerator_study.py`); do not edit by hand. Paper numbers: Kwon et al., DAC'18,
given in parentheses.

## Set-up

- Accelerator: the `squeezelerator` preset: {acc.rows}x{acc.cols} PEs, 16-bit MACs,
  {acc.gb_bytes // 1024} KB global buffer, register file {acc.rf_bytes // 2} entries of 16 bit,
  DRAM {acc.dram_latency:g} cycles and 16 GB/s, zero weights skipped in OS mode, Eyeriss
  unit energies (MAC 1, RF 1, inter-PE 2, buffer 6, DRAM 200). The paper gives no
  clock: we assume {acc.clock_mhz:g} MHz, which makes 16 GB/s {acc.dram_bw:g} bytes per cycle
  (sensitivity below).
- Workloads: the reference networks at their published input size, batch 1, 40 %
  zero weights in every layer (`CompressionPolicy.uniform(prune_ratio=0.4)`), 16-bit
  weights and activations. Each layer reads its input and writes its output through
  DRAM, as in the paper's layer-by-layer simulation; layers are tiled so that their
  tiles fit the double-buffered buffer and transfers overlap compute (the tiling rule
  is below).
- WS-only and OS-only are the same accelerator with `dataflow="ws"` or `"os"`; the
  Squeezelerator is `dataflow="flex"` (per layer, the faster of the two; ties go to
  the lower energy).

## Table 1: share of MACs by layer type (%)

{table1_markdown(results)}

MobileNet, Tiny Darknet and SqueezeNet v1.0/v1.1 are within 2 points. Two departures
come from the networks, not the cost model:
- AlexNet: ours counts the published two-group conv2/4/5 at their real MACs (0.72 G in
  all). The paper's 20/69 % split fits only if the grouped layers are counted at half
  their MACs; its remaining ~11 % and our {100 - sum(results['table1']['alexnet'].values()):.1f} % are the FC layers.
- SqueezeNext: 1.0-SqNxt-23 as published (0.72 M parameters) spends
  {results['table1']['squeezenext_23']['conv1']:.0f} % of its MACs in the 7x7 first layer
  against the paper's 16 %; the paper's split matches a variant about twice as wide.

## Table 2: per-layer WS/OS choice against one dataflow

Speedup (x) and energy saved (%); ours, then the paper's in parentheses, then ours /
paper for the speedups.

{table2_markdown(results)}

Goal (every speedup within 1.5x of the paper's): {goal}.

Orderings: against WS, {NAMES[cmp['most_vs_ws']]} gains most (paper: MobileNet) and
{NAMES[cmp['least_vs_ws']]} least (paper: SqueezeNet v1.1 1.18x, then AlexNet 1.19x).
Against OS, {NAMES[cmp['most_vs_os']]} gains most (paper: MobileNet) and {NAMES[cmp['least_vs_os']]}
least (paper: AlexNet, 1.00x). The per-layer choice is never slower than either single
dataflow (it picks per layer, with no switching cost).

### Where and why the model departs

- **MobileNet against WS ({results['table2']['mobilenet_v1']['speedup_vs_ws']:.1f}x, paper 6.35x).**
  WS maps one depthwise channel to one PE (a row is an input channel, a column an
  output channel), so the depthwise layers run {mob['dw_ratio']:.0f}x slower on WS than in the
  per-layer choice ({"inside" if 19 <= mob['dw_ratio'] <= 96 else "outside"} the paper's own 19x to 96x per layer). What differs is their share of
  the per-layer-choice time: {mob['dw_share']:.0f} % in ours, where the paper's 6.35x at the same
  ratio implies about {mob['implied_paper_share']:.0f} %. In ours the depthwise layers are
  memory-bound on OS: {mob['dw_stall']:.0f} % of their time is DRAM stall, because each one moves
  its whole input and output maps (up to 0.8 MB at 112x112x32) through 16 GB/s at batch 1.
  Matching 6.35x would need depthwise layers about {mob['dw_share'] / max(mob['implied_paper_share'], 1e-9):.1f}x cheaper on OS,
  i.e. a DRAM model in which maps stay on chip between layers, which the paper does not
  describe. We leave the model as it is and report the miss. A faster clock (fewer bytes
  per cycle) makes the depthwise layers costlier and brings MobileNet to
  {clocks[fast]['mobilenet_v1']['speedup_vs_ws']:.2f}x at {fast} MHz, but then SqueezeNext falls to
  {clocks[fast]['squeezenext_23']['speedup_vs_ws']:.2f}x against WS (paper 2.44x): the clock only trades one miss for others.
- **AlexNet against OS ({results['table2']['alexnet']['speedup_vs_os']:.2f}x, paper 1.00x).** The three FC layers
  take {alex['fc_time']:.0f} % of the time and {alex['fc_energy']:.0f} % of the energy in ours (paper: 73 %
  and 80 %) and run the same on both. The difference is conv3 to conv5: on 13x13 maps OS
  leaves 84 % of the 32x32 array idle and is {alex['late_os_slowdown']:.1f}x slower than WS on
  them, the effect the paper itself names for SqueezeNet's late layers. The paper's
  1.00x implies its OS ran them as fast as WS, which a 2-D output block of one map cannot
  on a 13x13 map. It stays within the 1.5x goal but means AlexNet is not the least-gaining
  network against OS in ours.
- **Energy against OS**: ours saves less than the paper for {', '.join(NAMES[n] for n in lower_energy)}
  (the paper: -2 % to 8 %). The per-layer choice moves the 1x1 layers to
  WS, which executes the zero weights that OS skips: on the array (MACs, register file,
  inter-PE transfers) it spends {energy['array_low']:+.0f} % to {energy['array_high']:+.0f} % against OS-only, and on the
  buffer and DRAM {energy['memory_low']:+.0f} % to {energy['memory_high']:+.0f} %. The paper's positive savings suggest that
  its WS mode also gated zero weights, or that its OS mode paid more for buffer reads;
  it does not say which. Energy saved against WS is within {ws_energy_gap:.0f} points of the paper's for
  every network.
- **Tiling rule.** The paper picks the tiling with the shortest time. Ours takes the
  least DRAM traffic among tilings within 1 % of the shortest time: with the strict rule
  a compute-bound layer on OS-only took up to 7.5x the DRAM traffic to shorten its first
  load by a fraction of a percent, which inflated OS-only energy (measured before the
  change: MobileNet's saving against OS read 19 % under the strict rule).

## Layer-type findings (section 4.1.1)

How much faster the paper's favoured dataflow runs each layer type, over all layers
of that type in the six networks (total time, memory included):

{layer_types_markdown(results)}

- 1x1: {ties['count']} of {len(types['1x1'])} pointwise layers run no faster on WS than on OS (within the 1 % tiling tolerance):
  all are on maps of {ties['smallest_map']}x{ties['smallest_map']} or larger, where both dataflows wait for DRAM at batch 1
  (stalls are {ties['stall_low']:.0f} % to {ties['stall_high']:.0f} % of their time). The high
  end is {types['1x1'][-1][0]:.1f}x against the paper's 7.0x.
- First layer: ours is up to {types['conv1'][-1][0]:.1f}x (paper 6.3x). With three input
  channels WS uses 3 of 32 PE rows; the largest gap is AlexNet's 11x11 first layer.
- Depthwise: inside the paper's range.

The OS model charges no cycles for loading each input channel's block: the preload
buffer fills the next block while the stream buffer broadcasts weights (section
4.1.2 describes separate preload and stream buffers). Charging a full array height
per channel instead (the model before this study, commit 8ac0754) made 1x1 layers up
to 57x slower on OS and gave speedups against OS of 1.55x to 11.7x, far from the
paper's 1.00x to 1.91x. Results leave through the bottom row after each output block,
one row per cycle, and that write-back is not hidden, as the paper says.

## Sensitivity to the clock (not given by the paper)

Speedup against OS / against WS; 16 GB/s is fewer bytes per cycle at a faster clock,
so layers become more memory-bound.

{clocks_markdown(results)}

## Figure 1: SqueezeNet v1.0 per layer under WS, OS and the per-layer choice

![Figure 1]({rel(figures['fig1'])})

Bars: time per layer (colour: the dataflow used), dotted line: PE utilisation. As in
the paper, the first layer gains most from OS, the 1x1 layers stay on WS, and OS loses
on the late 13x13 layers where most of the array is idle.

## Figure 3 and the SqueezeNext changes

![Figure 3]({rel(figures['fig3'])})

{variants_markdown(results)}

Effect of each change on the per-layer-choice Squeezelerator:

{effects_markdown(results)}

- First layer 7x7 -> 5x5: {effects['v1 -> v2']['latency_change_pct']:+.1f} % latency,
  {effects['v1 -> v2']['energy_change_pct']:+.1f} % energy; it removes {first_layer_macs:.0f} M of the first layer's MACs.
- Moving blocks from early to late stages (v2 -> v5, [6, 6, 8, 1] -> [2, 4, 14, 1]):
  {effects['v2 -> v5']['latency_change_pct']:+.1f} % latency, {effects['v2 -> v5']['energy_change_pct']:+.1f} % energy, with dense MACs
  {squeezenext_variant('v2').macs / 1e6:.0f} M -> {squeezenext_variant('v5').macs / 1e6:.0f} M: PE utilisation rises from
  {100 * results['variants']['v2'].total['utilization']:.0f} % to {100 * results['variants']['v5'].total['utilization']:.0f} % because the late stages' wider layers fill the array.
- Register file 8 -> 16 entries: {effects['v5']['latency_change_pct']:+.1f} % latency, {effects['v5']['energy_change_pct']:+.1f} % energy. In our
  OS model the register file holds partial sums of several filters, so more entries
  mean fewer buffer reads of the inputs (energy) but the same cycles; the paper
  describes this step as fine-tuning and gives no separate number.

## Co-design outcome

{outcome_markdown(results)}

The final SqueezeNext (v5 on the 16-entry Squeezelerator) against the originals on the
8-entry one. Energy against SqueezeNet v1.0 is close to the paper; the speedup is
smaller. SqueezeNet v1.0 executes {sqnet['macs'] / 1e6:.0f} M MACs and the final SqueezeNext
{final['macs'] / 1e6:.0f} M, but the latter is memory-bound: DRAM stalls are {stall(final):.0f} % of its time
against {stall(sqnet):.0f} % for SqueezeNet v1.0, because every layer's maps go through DRAM at
16 GB/s. Against AlexNet we find about half the paper's factors: our AlexNet spends
{alex['fc_time']:.0f} % of its time streaming the 58 M FC weights from DRAM, and the paper's AlexNet
evidently cost more.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print Table 1 and Table 2 as one JSON object")
    parser.add_argument("--figures", type=Path, default=ROOT / "experiments" / "figures", help="folder for the PNGs")
    parser.add_argument("--report", type=Path, default=ROOT / "experiments" / "squeezelerator.md",
                        help="markdown report to (re)write; '-' to skip")
    args = parser.parse_args(argv)
    results = run()
    if args.json:
        print(json.dumps(json_summary(results), indent=2))
    else:
        print("Table 1 (ours (paper), % of MACs)\n" + table1_markdown(results))
        print("\nTable 2\n" + table2_markdown(results))
        print("\nLayer types\n" + layer_types_markdown(results))
        print("\nSqueezeNext changes\n" + effects_markdown(results))
        print("\nCo-design outcome\n" + outcome_markdown(results))
    if str(args.report) != "-":
        figures = write_figures(results, args.figures)
        args.report.write_text(markdown(results, figures, args.report))
        if not args.json:
            print(f"\nwrote {args.report} and {', '.join(str(p) for p in figures.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
