import json
import subprocess
import sys
from pathlib import Path

from cost_models import Accelerator
from cost_models.scalesim import format_config

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "experiments" / "scalesim_reference" / "layers.csv"


def run(*args):
    return subprocess.run([sys.executable, "-m", "codesign.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cost_json_has_per_layer_fields_and_totals(tmp_path):
    cfg = tmp_path / "a.cfg"
    cfg.write_text(format_config(Accelerator(rows=16, cols=16, dataflow="ws_systolic", dram_bw=4.0)))
    result = run("cost", "--topology", str(TOPOLOGY), "--config", str(cfg), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["layer"] for row in data["layers"]][:2] == ["Conv1", "Conv2"]
    for row in data["layers"]:
        assert row["dataflow"] == "ws_systolic"
        assert {"cycles", "compute_cycles", "stall_cycles", "utilization", "energy_pj"} <= set(row)
        assert row["cycles"] == row["compute_cycles"] + row["stall_cycles"]
    assert data["total"]["cycles"] == sum(row["cycles"] for row in data["layers"])


def test_cost_dataflow_override_and_compute_only(tmp_path):
    cfg = tmp_path / "a.cfg"
    cfg.write_text(format_config(Accelerator(dataflow="os_systolic", dram_bw=1.0)))
    result = run("cost", "--topology", str(TOPOLOGY), "--config", str(cfg), "--dataflow", "is_systolic",
                 "--compute-only", "--json")
    data = json.loads(result.stdout)
    assert {row["dataflow"] for row in data["layers"]} == {"is_systolic"}
    assert all(row["stall_cycles"] == 0 for row in data["layers"])


def test_cost_reports_bad_files_clearly(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Layer name,\nConv, 8, 8, 3, 3, -4, 4, 1,\n")
    result = run("cost", "--topology", str(bad))
    assert result.returncode == 2
    assert "line 2: field 'Channels'" in result.stderr and "Traceback" not in result.stderr
    missing = run("cost", "--topology", str(tmp_path / "none.csv"))
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_network_json_lists_layers_in_order_with_kinds():
    result = run("network", "mobilenet_v1", "--resolution", "32", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    kinds = {"conv", "pointwise", "depthwise", "grouped", "fc", "pool", "eltwise"}
    assert data["layers"][0]["name"] == "stem" and data["layers"][-1]["kind"] == "fc"
    assert all(layer["kind"] in kinds and {"macs", "params"} <= set(layer) for layer in data["layers"])
    assert data["total"]["macs"] == sum(layer["macs"] for layer in data["layers"])
    assert data["total"]["params"] == 4231976  # parameters do not depend on resolution


def test_network_from_spec_file_and_unknown_name(tmp_path):
    from search_spaces.reference import reference_network

    spec = tmp_path / "net.json"
    spec.write_text(reference_network("resnet18").to_json())
    table = run("network", str(spec))
    assert table.returncode == 0 and "s3b1_add" in table.stdout
    bad = run("network", "resnet19")
    assert bad.returncode == 2 and "resnet18" in bad.stderr
