"""codesign's energy and cycles against ZigZag's on its own TPU-like reference, per level and per layer.

The reference (``zigzag_tpu_like/``, see README.md): ZigZag 3.9.1's TPU-like design
(a 32x32 MAC array, 0.04 pJ per 8-bit MAC; a 128-byte weight register and a 2-byte
output register per MAC; a 2 MiB SRAM for inputs and outputs; DRAM 700/750 pJ per 64-bit
read/write) on ResNet-18's 21 convolutions and fully connected layer (its
``resnet18.onnx``, 8-bit weights and activations), as its test
``tests/main/test_origin/test_tpu_like.py`` runs it: 1,871.4 uJ and 3,865,041 cycles.
``zigzag_resnet18.json`` holds ZigZag's per-layer and per-level figures
(``record_zigzag.py`` writes it). The same in codesign: a 32x32 weight-stationary array,
130 bytes of registers per PE, a 2 MiB buffer, 8 bytes per cycle of DRAM, and ZigZag's
energies per access as a codesign table (``tpu_like_energies.yaml``). Printed: energy per
level (MAC, register files, buffer, DRAM), DRAM bytes and cycles, ours beside ZigZag's,
and the goal (total energy within 15 %).

    .venv/bin/python experiments/energy_reference/check_zigzag.py
    .venv/bin/python experiments/energy_reference/check_zigzag.py --layers    # and per layer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from cost_models import Accelerator, Workload, evaluate  # noqa: E402

REFERENCE = HERE / "zigzag_tpu_like"
LEVELS = ("mac", "rf", "gb", "dram")
GOAL = 0.15  # total energy within 15 % of ZigZag's


def tpu_like(dataflow: str = "ws") -> Accelerator:
    """ZigZag's TPU-like design in codesign's terms (module docstring)."""
    return Accelerator(rows=32, cols=32, dataflow=dataflow, rf_bytes=128 + 2, gb_bytes=2 * 2**20, mac_bits=8,
                       dram_bw=8.0, clock_mhz=1000.0, energy_table=str(REFERENCE / "tpu_like_energies.yaml"),
                       name="tpu_like")


def resnet18() -> Workload:
    """ZigZag's ResNet-18 as ZigZag costs it: its convolutions and fully connected layer, 8-bit."""
    with warnings.catch_warnings():  # the ONNX file keeps no weights: shapes are all the model needs
        warnings.simplefilter("ignore")
        workload = Workload.from_onnx(REFERENCE / "resnet18.onnx")
    layers = tuple(dataclasses.replace(layer, w_bits=8, a_bits=8) for layer in workload.layers
                   if layer.kind in ("conv", "pointwise", "fc"))
    return Workload(layers, "resnet18")


def compare(dataflow: str = "ws") -> dict:
    theirs = json.loads((REFERENCE / "zigzag_resnet18.json").read_text())
    by_name = {layer["layer"]: layer for layer in theirs["layers"]}
    report = evaluate(resnet18(), tpu_like(dataflow))
    rows = []
    for row in report.layers:
        zz = by_name[row["layer"]]
        rows.append({"layer": row["layer"],
                     "ours": {**{level: float(row[f"energy_{level}_pj"]) for level in LEVELS},
                              "dram_bytes": float(row["dram_bytes"]), "cycles": float(row["cycles"])},
                     "theirs": {**zz["levels_pj"], "dram_bytes": zz["dram_bytes"], "cycles": zz["latency_cycles"]}})
    total = {who: {key: sum(r[who][key] for r in rows) for key in (*LEVELS, "dram_bytes", "cycles")}
             for who in ("ours", "theirs")}
    for who in total:
        total[who]["energy"] = sum(total[who][level] for level in LEVELS)
    return {"rows": rows, "total": total, "zigzag": theirs["zigzag"],
            "difference": total["ours"]["energy"] / total["theirs"]["energy"] - 1}


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs - 1:+8.1%}" if theirs else "       -"


def report(result: dict, dataflow: str, per_layer: bool = False) -> str:
    ours, theirs = result["total"]["ours"], result["total"]["theirs"]
    lines = [f"ZigZag {result['zigzag']} TPU-like reference, ResNet-18 (21 layers, 8-bit); codesign dataflow {dataflow}",
             f"{'':<12}{'ours':>14}{'ZigZag':>14}{'diff':>9}"]
    for level, label in (("mac", "MAC uJ"), ("rf", "registers uJ"), ("gb", "buffer uJ"), ("dram", "DRAM uJ"),
                         ("energy", "total uJ")):
        lines.append(f"{label:<12}{ours[level] / 1e6:>14.1f}{theirs[level] / 1e6:>14.1f}{_ratio(ours[level], theirs[level])}")
    lines.append(f"{'DRAM MB':<12}{ours['dram_bytes'] / 1e6:>14.2f}{theirs['dram_bytes'] / 1e6:>14.2f}"
                 f"{_ratio(ours['dram_bytes'], theirs['dram_bytes'])}")
    lines.append(f"{'cycles':<12}{ours['cycles']:>14,.0f}{theirs['cycles']:>14,.0f}{_ratio(ours['cycles'], theirs['cycles'])}")
    if per_layer:
        lines.append(f"{'layer':<42}{'uJ ours':>9}{'ZigZag':>9}{'DRAM KB ours':>13}{'ZigZag':>9}{'cycles ours':>13}"
                     f"{'ZigZag':>11}")
        for r in result["rows"]:
            o, t = r["ours"], r["theirs"]
            lines.append(f"{r['layer']:<42}{sum(o[lv] for lv in LEVELS) / 1e6:>9.1f}{sum(t[lv] for lv in LEVELS) / 1e6:>9.1f}"
                         f"{o['dram_bytes'] / 1e3:>13.0f}{t['dram_bytes'] / 1e3:>9.0f}{o['cycles']:>13,.0f}"
                         f"{t['cycles']:>11,.0f}")
    difference = result["difference"]
    lines.append(f"goal: total energy within {GOAL:.0%} of ZigZag's: {difference:+.1%}, "
                 f"{'met' if abs(difference) <= GOAL else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataflow", default="ws", help="codesign's dataflow for the array (default ws, ZigZag's "
                        "mapping: output channels on one side, input channels on the other)")
    parser.add_argument("--layers", action="store_true", help="print every layer too")
    args = parser.parse_args(argv)
    print(report(compare(args.dataflow), args.dataflow, args.layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
