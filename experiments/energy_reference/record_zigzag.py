"""Record ZigZag's own results for its TPU-like design on ResNet-18 (the case of ZigZag's test
``tests/main/test_origin/test_tpu_like.py``), per layer and per level, into
``zigzag_tpu_like/zigzag_resnet18.json``, which ``check_zigzag.py`` compares codesign with.

Run with a Python that has zigzag-dse 3.9.1 (the ``peers`` extra, or a separate virtual
environment, since it pins numpy below 2.4); it takes about 45 s on 2 cores:

    python -m venv /tmp/zz && /tmp/zz/bin/pip install zigzag-dse==3.9.1 six
    /tmp/zz/bin/python experiments/energy_reference/record_zigzag.py

The design and mapping are ZigZag's (``zigzag/inputs/hardware/tpu_like.yaml``,
``zigzag/inputs/mapping/tpu_like.yaml``; copies beside the JSON), the workload its
``zigzag/inputs/workload/resnet18.onnx``; ZigZag's test expects 1,871,436,380.656 pJ and
3,865,041 cycles, which the run must reproduce (it is refused otherwise).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import zigzag
from zigzag.api import get_hardware_performance_zigzag

HERE = Path(__file__).resolve().parent / "zigzag_tpu_like"
EXPECTED = (1871436380.6559997, 3865041.0)  # ZigZag 3.9.1's tests/main/test_origin/test_tpu_like.py
#: ZigZag's memory levels by operand (tpu_like.yaml): weights rf_128B -> dram; inputs sram_2MB -> dram;
#: outputs rf_2B -> sram_2MB -> dram. codesign's level of each.
LEVELS = {"W": ("rf", "dram"), "I": ("gb", "dram"), "O": ("rf", "gb", "dram")}
DRAM_WORD_BITS = 64


def layer_record(path: Path) -> dict:
    data = json.loads(path.read_text())
    out, energy = data["outputs"], data["outputs"]["energy"]
    levels = {"mac": energy["operational_energy"], "rf": 0.0, "gb": 0.0, "dram": 0.0}
    for operand, per_level in energy["memory_energy_breakdown_per_level"].items():
        for level, joules in zip(LEVELS[operand], per_level):
            levels[level] += joules
    dram_words = sum(sum(out["memory"]["word_accesses"][operand][-1].values()) for operand in LEVELS)
    return {"layer": data["inputs"]["layer"]["name"], "energy_pj": energy["energy_total"], "levels_pj": levels,
            "dram_bytes": dram_words * DRAM_WORD_BITS / 8,
            "latency_cycles": out["latency"]["computation"] + out["latency"]["data_onloading"]
            + out["latency"]["data_offloading"],
            "temporal_mapping": data["inputs"]["temporal_mapping"]}


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        energy, latency, _ = get_hardware_performance_zigzag(
            str(HERE / "resnet18.onnx"), str(HERE / "tpu_like.yaml"), str(HERE / "tpu_like.mapping.yaml"),
            dump_folder=folder)
        if abs(energy / EXPECTED[0] - 1) > 1e-6 or abs(latency / EXPECTED[1] - 1) > 1e-6:
            print(f"ZigZag {zigzag.__version__} gave {energy} pJ, {latency} cycles; its test expects {EXPECTED}")
            return 1
        layers = [layer_record(p) for p in sorted(Path(folder).rglob("*_complete.json"))]
    record = {"zigzag": zigzag.__version__, "energy_pj": energy, "latency_cycles": latency, "layers": layers}
    (HERE / "zigzag_resnet18.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(layers)} layers, {energy:.6g} pJ, {latency:.6g} cycles -> {HERE / 'zigzag_resnet18.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
