import contextlib
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from codesign.cli import main
from cost_models import Accelerator
from cost_models.scalesim import format_config, read_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "experiments" / "scalesim_reference" / "layers.csv"


def run_in_process(args: list[str]):
    """``codesign ARGS`` in this process (``main``, what the console script calls), in the working directory:
    its exit code and output, as ``returncode``, ``stdout`` and ``stderr``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors, --version and --help
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run(*args):
    """``codesign ARGS`` in this process, from the repository's root."""
    with contextlib.chdir(ROOT):
        return run_in_process(args)


def run_process(*args):
    """``python -m codesign.cli ARGS`` as its own process."""
    return subprocess.run([sys.executable, "-m", "codesign.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cost_json_matches_recorded_scalesim_compute_and_bandwidth_adds_only_stalls(tmp_path):
    # The recorded SCALE-Sim run user_ws_32x32_bw2 (experiments/scalesim_reference/recorded.csv):
    # 32x32 WS, three 16 KB SRAMs, 2 words (bytes) per cycle from DRAM.
    with open(TOPOLOGY.parent / "recorded.csv") as handle:
        recorded = {row["layer"]: float(row["compute_cycles"]) for row in csv.DictReader(handle)
                    if row["config"] == "user_ws_32x32_bw2" and row["status"] == "ok"}
    cfg = tmp_path / "a.cfg"
    cfg.write_text(format_config(Accelerator(rows=32, cols=32, dataflow="ws_systolic", gb_bytes=3 * 16 * 1024, dram_bw=2.0)))
    limited = run("cost", "--topology", str(TOPOLOGY), "--config", str(cfg), "--json")
    unlimited = run("cost", "--topology", str(TOPOLOGY), "--config", str(cfg), "--compute-only", "--json")
    assert limited.returncode == 0, limited.stderr
    assert unlimited.returncode == 0, unlimited.stderr
    data, compute_only = json.loads(limited.stdout), json.loads(unlimited.stdout)
    weights = {layer.name: layer.params for layer in read_topology(TOPOLOGY)}  # 8-bit: one byte each
    assert [row["layer"] for row in data["layers"]] == list(weights)
    assert sorted(recorded) == sorted(weights)
    for row, alone in zip(data["layers"], compute_only["layers"]):
        assert row["dataflow"] == "ws_systolic"
        assert {"cycles", "compute_cycles", "stall_cycles", "utilization", "energy_pj"} <= set(row)
        assert row["compute_cycles"] == pytest.approx(recorded[row["layer"]], rel=0.01)  # SCALE-Sim's compute cycles
        # Bandwidth leaves the compute time alone, and a layer cannot finish before its weights arrive.
        assert alone["cycles"] == alone["compute_cycles"] == row["compute_cycles"]
        assert row["cycles"] >= max(row["compute_cycles"], weights[row["layer"]] / 2.0)
    fc = next(row for row in data["layers"] if row["layer"] == "FC")
    assert weights["FC"] / 2.0 > 5 * fc["compute_cycles"]  # memory-bound: 512,000 weight bytes at 2 per cycle
    assert fc["cycles"] > fc["compute_cycles"] and fc["stall_cycles"] > 0
    assert data["total"]["compute_cycles"] == pytest.approx(sum(recorded.values()), rel=0.01)


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
    result = run_process("cost", "--topology", str(bad))  # a process: exit code 2, one line, no traceback
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
