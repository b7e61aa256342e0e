"""Energy and area of one network against the global buffer's size: where a sized SRAM puts the optimum.

SqueezeNet v1.0 (224x224, 16-bit) on a 16x16 weight-stationary array, the global buffer
swept from 4 KiB to 4 MiB, priced by ``horowitz45`` (every buffer access costs the same)
and by ``horowitz45_sram`` (an access costs more the larger the SRAM, from Horowitz's 45 nm
SRAM reads), and with DRAM as LPDDR4 and as HBM2 (``dram_type``). Prints the table and
writes ``experiments/figures/buffer_energy.png``: energy (left axis) and area (right
axis) against the buffer size.

    .venv/bin/python experiments/buffer_energy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cost_models import Accelerator, evaluate_batch  # noqa: E402
from search_spaces.reference import reference_network  # noqa: E402

SIZES_KIB = [2 ** k for k in range(2, 13)]  # 4 KiB to 4 MiB
PRICINGS = {"horowitz45 (flat buffer)": dict(energy_table="horowitz45"),
            "horowitz45_sram": dict(energy_table="horowitz45_sram"),
            "horowitz45_sram, LPDDR4": dict(energy_table="horowitz45_sram", dram_type="LPDDR4"),
            "horowitz45_sram, HBM2": dict(energy_table="horowitz45_sram", dram_type="HBM2")}


def sweep() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Energy (uJ) per pricing and area (mm^2) per buffer size."""
    workload = reference_network("squeezenet_v1_0").workload()
    energy, area = {}, None
    for label, pricing in PRICINGS.items():
        accelerators = [Accelerator(rows=16, cols=16, dataflow="ws", gb_bytes=kib * 1024, **pricing)
                        for kib in SIZES_KIB]
        costs = evaluate_batch(workload, accelerators, per_layer=False)
        energy[label] = np.asarray(costs.energy_pj) / 1e6
        area = np.asarray(costs.area_mm2)
    return energy, area


def main() -> int:
    energy, area = sweep()
    print("SqueezeNet v1.0, 16x16 WS array: total energy (uJ) against the global buffer's size")
    print(f"{'buffer KiB':<26}" + "".join(f"{kib:>9,}" for kib in SIZES_KIB))
    for label, values in energy.items():
        best = int(np.argmin(values))
        print(f"{label:<26}" + "".join(f"{v:>9,.0f}" for v in values) + f"   optimum {SIZES_KIB[best]:,} KiB")
    print(f"{'area mm^2':<26}" + "".join(f"{a:>9.2f}" for a in area))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in energy.items():
        ax.plot(SIZES_KIB, values, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("global buffer (KiB)")
    ax.set_ylabel("energy per inference (uJ)")
    twin = ax.twinx()
    twin.plot(SIZES_KIB, area, color="grey", linestyle="--", label="area")
    twin.set_ylabel("area (mm$^2$, dashed)")
    ax.legend(fontsize=8, loc="upper center")
    ax.set_title("SqueezeNet v1.0 on a 16x16 WS array")
    fig.tight_layout()
    out = ROOT / "experiments" / "figures" / "buffer_energy.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
