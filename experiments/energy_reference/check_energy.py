"""codesign's energy against Timeloop+Accelergy's on their published Eyeriss-like reference, level by level.

The reference (``timeloop_eyeriss_like/``, see README.md): Timeloop's mapper on the
Eyeriss-like design (14x12 PEs, three scratchpads per PE, a 128 KiB shared buffer,
LPDDR4) for its default layer (3x3 convolution, 3 -> 32 channels, 225x225 input without
padding, stride 2, 112x112 outputs, 8-bit inputs and weights): 59.28 uJ. The same
architecture in codesign: 12x14 PEs with the row-stationary dataflow (Eyeriss's), a
register file of the three scratchpads' bytes (24 + 384 + 32), the same buffer, and the
energies of Timeloop's own ERT (``energy_table=`` that file). Printed per level (MAC,
register files, network, buffer, DRAM): scalar accesses and energy, ours beside
Timeloop's (its ``Operational Intensity`` access totals and its levels' ``Energy (total)``
lines, leakage included), then the totals and the goals (total energy within 15 %, DRAM accesses
within 10 %).

    .venv/bin/python experiments/energy_reference/check_energy.py
    .venv/bin/python experiments/energy_reference/check_energy.py --dataflow ws
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from cost_models import Accelerator, Workload, conv, evaluate  # noqa: E402
from cost_models.energy import LEVELS  # noqa: E402
from cost_models.energy_files import read_energy_table  # noqa: E402

REFERENCE = HERE / "timeloop_eyeriss_like"
ERT = REFERENCE / "timeloop-mapper.ERT.yaml"
STATS = REFERENCE / "timeloop-mapper.stats.txt"
#: Timeloop's default problem: C3 M32 R=S=3 P=Q=112, stride 2; its input plane is 225x225 (no padding term).
LAYER = conv("eyeriss_default", 3, 32, 225, R=3, stride=2, padding=0, w_bits=8, a_bits=8)
GOALS = {"total energy": 0.15, "dram accesses": 0.10}


def eyeriss_like(dataflow: str = "rs") -> Accelerator:
    """The Eyeriss-like design in codesign's terms (module docstring)."""
    return Accelerator(rows=12, cols=14, dataflow=dataflow, rf_bytes=24 + 384 + 32, gb_bytes=16384 * 64 // 8,
                       mac_bits=8, dram_bw=8.0, clock_mhz=1000.0, energy_table=str(ERT), name="eyeriss_like")


def timeloop_levels(stats_text: str, level_of_component: dict[str, str]) -> dict[str, dict[str, float]]:
    """Timeloop's scalar accesses and energy (pJ, leakage included) per codesign level, from its stats file."""
    levels_text, intensity = stats_text.split("Operational Intensity Stats", 1)
    computes = float(re.search(r"^Computes = (\d+)", stats_text, re.M).group(1))
    accesses = dict(re.findall(r"=== (\w+) ===\n\s+Total scalar accesses\s+: (\d+)", intensity))
    out = {level: {"accesses": 0.0, "energy_pj": 0.0} for level in LEVELS}
    out["mac"]["accesses"] = computes
    for component, body in re.findall(r"^=== (\w+) ===\n(.*?)(?=^Level \d|^Networks|\Z)", levels_text, re.M | re.S):
        if component not in level_of_component:  # the dummy spatial containers: nothing stored, no energy
            continue
        level = level_of_component[component]
        # every "... Energy (total)" line: each operand's dynamic energy, temporal reduction and address
        # generation, and the level's leakage
        out[level]["energy_pj"] += sum(float(e) for e in re.findall(r"[Ee]nergy \(total\)\s+: ([\d.]+) pJ", body))
        if level != "mac":
            out[level]["accesses"] += float(accesses[component])
    return out


def codesign_levels(dataflow: str) -> dict[str, dict[str, float]]:
    row = evaluate(Workload((LAYER,)), eyeriss_like(dataflow)).layers[0]
    return {level: {"accesses": float(row[f"accesses_{level}"]), "energy_pj": float(row[f"energy_{level}_pj"])}
            for level in LEVELS}


def short_name(component: str) -> str:
    """``system_top_level.psum_spad[1..168]`` -> ``psum_spad``."""
    return component.split("[")[0].split(".")[-1]


def compare(dataflow: str = "rs") -> dict:
    """Ours and Timeloop's per level, the totals, and the goals' relative differences."""
    table = read_energy_table(ERT)
    level_of = {short_name(c): level for level, comps in table.components.items() for c in comps}
    theirs = timeloop_levels(STATS.read_text(), level_of)
    ours = codesign_levels(dataflow)
    total = {who: sum(v["energy_pj"] for v in levels.values()) for who, levels in (("ours", ours), ("theirs", theirs))}
    return {"ours": ours, "theirs": theirs, "total": total,
            "differences": {"total energy": total["ours"] / total["theirs"] - 1,
                            "dram accesses": ours["dram"]["accesses"] / theirs["dram"]["accesses"] - 1},
            "components": {level: sorted(short_name(c) for c in comps) for level, comps in table.components.items()}}


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs - 1:+8.1%}" if theirs else "       -"


def report(result: dict, dataflow: str) -> str:
    lines = [f"Eyeriss-like, Timeloop+Accelergy reference ({STATS.relative_to(HERE.parents[1])}): {LAYER.C}->{LAYER.K} "
             f"channels, {LAYER.H}x{LAYER.W} input, {LAYER.R}x{LAYER.S} stride {LAYER.stride}, 8-bit",
             f"codesign: 12x14 PEs, dataflow {dataflow}, register file 440 B per PE, buffer 128 KiB, energies of "
             f"{ERT.name}",
             f"{'level':<6}{'components':<40}{'accesses ours':>15}{'Timeloop':>13}{'diff':>9}"
             f"{'uJ ours':>10}{'Timeloop':>10}{'diff':>9}"]
    for level in LEVELS:
        o, t = result["ours"][level], result["theirs"][level]
        names = ", ".join(result["components"][level]) or "(none)"
        lines.append(f"{level:<6}{names:<40.40}{o['accesses']:>15,.0f}{t['accesses']:>13,.0f}"
                     f"{_ratio(o['accesses'], t['accesses'])}{o['energy_pj'] / 1e6:>10.3f}{t['energy_pj'] / 1e6:>10.3f}"
                     f"{_ratio(o['energy_pj'], t['energy_pj'])}")
    total = result["total"]
    lines.append(f"{'total':<46}{'':>15}{'':>13}{'':>9}{total['ours'] / 1e6:>10.3f}{total['theirs'] / 1e6:>10.3f}"
                 f"{_ratio(total['ours'], total['theirs'])}")
    for goal, bound in GOALS.items():
        difference = result["differences"][goal]
        lines.append(f"goal: {goal} within {bound:.0%} of Timeloop's: {difference:+.1%}, "
                     f"{'met' if abs(difference) <= bound else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataflow", default="rs", help="codesign's dataflow for the array (default rs, Eyeriss's)")
    args = parser.parse_args(argv)
    print(report(compare(args.dataflow), args.dataflow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
