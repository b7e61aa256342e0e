"""SCALE-Sim export: the exported files read back as the design, SCALE-Sim's units, and v3 files read as before.

`codesign export --format scalesim` writes topology.csv, accelerator.cfg and accelerator.json.
`codesign cost` reads them with read_topology / read_config / Accelerator.from_json, so those
are what these tests read back, and the cost model must then give the design's stored report.
`scalesim_reads` mirrors how SCALE-Sim 3.0.0 reads the same files, so the tests also check that
SCALE-Sim still accepts them (without needing SCALE-Sim installed).
"""

import configparser
import dataclasses
import json
import math
import types
from pathlib import Path

import pytest

from codesign.cli import main
from cost_models import Accelerator, Workload, conv, eltwise, evaluate, fc, gbps_to_bytes_per_cycle, pool
from cost_models.scalesim import (FormatError, export_files, format_config, format_topology, parse_config,
                                  parse_topology, read_config, read_topology)
from search_spaces.accelerators import PRESETS
from search_spaces.compression import CompressionPolicy, LayerCompression
from search_spaces.reference import reference_network

ACCELERATORS = {
    # Kwon et al.'s OS dataflow alone (SCALE-Sim has only its systolic OS), zero skipping, 500 MHz.
    "squeezelerator_os": Accelerator(rows=16, cols=16, dataflow="os", rf_bytes=16, gb_bytes=128 * 1024,
                                     dram_bw=gbps_to_bytes_per_cycle(16, 500), dram_latency=100, clock_mhz=500,
                                     mac_bits=16, zero_skip=True, name="squeezelerator_os"),
    "squeezelerator_flex": PRESETS["squeezelerator"],
    "eyeriss_rs": PRESETS["eyeriss"],
    # Systolic, 8-bit multipliers, a bandwidth that is no whole number of words, a name SCALE-Sim cannot take.
    "systolic": Accelerator(rows=32, cols=16, dataflow="is_systolic", rf_bytes=4, gb_bytes=96 * 1024 + 5,
                            dram_bw=12.5, dram_latency=20, clock_mhz=700, mac_bits=8, simd_lanes=8,
                            energy_table="horowitz45", name="sys, #1 | 50% DP"),
}

MIXED = CompressionPolicy(LayerCompression(8, 8, 0.25), stages={
    "stem": LayerCompression(8, 16), "s0": LayerCompression(4, 8, 0.5), "head": LayerCompression(16, 16, 0.7)})
CHANNELS = CompressionPolicy(LayerCompression(6, 8, 0.5, "channel"), stages={"head": LayerCompression(4, 4)})
NETWORKS = {  # pooling, element-wise, depthwise and grouped layers, padding, unstructured and channel pruning
    "resnet18": (reference_network("resnet18"), MIXED),
    "mobilenet_v1": (reference_network("mobilenet_v1").at_resolution(96), MIXED),
    "alexnet": (reference_network("alexnet"), CHANNELS),
}


def design(network, accelerator):
    spec, policy = NETWORKS[network]
    return spec.workload(compression=policy), ACCELERATORS[accelerator]


def write_export(tmp_path, workload, accelerator):
    for name, text in export_files(workload, accelerator).items():
        (tmp_path / name).write_text(text)
    return tmp_path


def scalesim_reads(cfg_text, topology_text):
    """What SCALE-Sim 3.0.0 reads (scale_config.read_conf_file, topology_utils.load_arrays_conv), as it reads it."""
    config = configparser.ConfigParser()
    config.read_string(cfg_text)
    arch, layout = "architecture_presets", "layout"
    read = {"run_name": config.get("general", "run_name"),
            "mode": config.get("run_presets", "InterfaceBandwidth"),
            "ramulator": config.get("run_presets", "UseRamulatorTrace"),
            "dataflow": config.get(arch, "Dataflow"),
            "bandwidths": [int(x.strip()) for x in config.get(arch, "Bandwidth").strip().split(",")],
            "sparsity": config.get("sparsity", "SparsitySupport").lower() == "true"}
    for key in ("ArrayHeight", "ArrayWidth", "ifmapsramszkB", "filtersramszkB", "ofmapsramszkB", "IfmapOffset",
                "FilterOffset", "OfmapOffset", "ReadRequestBuffer", "WriteRequestBuffer"):
        read[key] = int(config.get(arch, key))
    for key in ("IfmapSRAMBankBandwidth", "IfmapSRAMBankNum", "IfmapSRAMBankPort", "FilterSRAMBankBandwidth",
                "FilterSRAMBankNum", "FilterSRAMBankPort"):
        read[key] = int(config.get(layout, key))
    config.getboolean(layout, "IfmapCustomLayout"), config.getboolean(layout, "FilterCustomLayout")
    assert read["mode"] in ("USER", "CALC") and read["dataflow"] in ("os", "ws", "is")
    assert not config.has_section("network_presets")  # SCALE-Sim would read TopologyCsvLoc from the wrong section
    if read["sparsity"]:
        config.get("sparsity", "SparseRep"), config.get("sparsity", "OptimizedMapping")
        int(config.get("sparsity", "RandomNumberGeneratorSeed"))
    rows = []
    for number, row in enumerate(topology_text.splitlines()):
        row = row.strip()
        if number == 0 or row == "":
            continue
        elems = row.split(",")[:-1]
        elems = elems[0:8] + [elems[7]] + elems[8:]
        if len(elems) < 10:
            elems.append("1:1")
        ratio = elems.pop().strip().split(":")
        elems += [ratio[0], ratio[1]]
        entry = [elems[0].strip()] + [int(str(e).strip()) for e in elems[1:]]
        assert len(entry) == 11 and entry[3] <= entry[1] and entry[4] <= entry[2]
        rows.append(entry)
    return read, rows


# --- export -> read back: the stored numbers -------------------------------------------------------

@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_export_reads_back_as_the_design_and_gives_its_numbers(tmp_path, network, accelerator):
    workload, acc = design(network, accelerator)
    stored = evaluate(workload, acc)  # what the search stored (Evaluator / Design.cost_report(recompute=True))
    folder = write_export(tmp_path, workload, acc)

    again = read_topology(folder / "topology.csv")
    config = read_config(folder / "accelerator.cfg")
    assert again.layers == workload.layers  # bits, densities, padding, groups, pooling and element-wise layers
    assert config.accelerator == acc and config.exact and not config.calc_bandwidth
    assert Accelerator.from_json((folder / "accelerator.json").read_text()) == acc

    for report in (evaluate(again, config.accelerator),
                   evaluate(again, Accelerator.from_json((folder / "accelerator.json").read_text()))):
        assert report.to_dict() == stored.to_dict()  # every layer's cycles, energy, ... and the totals, exactly
        for key in ("latency_s", "energy_pj", "area_mm2", "cycles"):
            assert report.total[key] == stored.total[key]
    scalesim_reads((folder / "accelerator.cfg").read_text(), (folder / "topology.csv").read_text())


def test_cli_cost_on_the_export_prints_the_stored_report(tmp_path, capsys):
    workload, acc = design("resnet18", "squeezelerator_os")
    stored = json.loads(json.dumps(evaluate(workload, acc).to_dict()))
    folder = write_export(tmp_path, workload, acc)
    for option, name in (("--config", "accelerator.cfg"), ("--accelerator", "accelerator.json")):
        assert main(["cost", "--topology", str(folder / "topology.csv"), option, str(folder / name), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == stored
    assert main(["cost", "--topology", str(folder / "topology.csv"), "--config", str(folder / "accelerator.cfg")]) == 0
    table = capsys.readouterr().out
    total = stored["total"]
    assert f"latency {total['latency_s'] * 1e3:.4g} ms at 500 MHz, energy {total['energy_pj'] / 1e6:.4g} uJ" in table


def test_cli_export_writes_the_files_and_says_how_to_get_the_stored_numbers(tmp_path, capsys, monkeypatch):
    spec, policy = NETWORKS["mobilenet_v1"]
    acc = ACCELERATORS["squeezelerator_flex"]
    report = evaluate(spec.workload(compression=policy), acc)
    stored = types.SimpleNamespace(number=7, network=spec, compression=policy, accelerator=acc, cost_model_version="1",
                                   cost_report=lambda: report)
    monkeypatch.setattr("codesign.cli._results", lambda args: types.SimpleNamespace(design=lambda trial: stored))
    out = tmp_path / "x"
    assert main(["export", "run", "--trial", "7", "--format", "scalesim", "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["README.txt", "accelerator.cfg", "accelerator.json", "layout.csv", "topology.csv"]
    readme = (out / "README.txt").read_text()
    assert "codesign cost --topology topology.csv --accelerator accelerator.json" in readme
    assert f"latency {report.total['latency_s'] * 1e3:.6g} ms" in readme
    capsys.readouterr()
    assert main(["cost", "--topology", str(out / "topology.csv"), "--config", str(out / "accelerator.cfg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(report.to_dict()))


# --- SCALE-Sim's units and what it cannot express -------------------------------------------------

def test_cfg_is_in_scalesim_words_of_the_networks_width():
    # SCALE-Sim moves one element per one-byte word: 32 bytes per cycle of 16-bit data are 16 words per cycle.
    acc = PRESETS["squeezelerator"]  # 32 B/cycle, 128 KiB buffer
    wide = Workload((conv("c", 16, 32, 8, R=3, padding=1),))  # 16-bit
    narrow = Workload((conv("c", 16, 32, 8, R=3, padding=1, w_bits=8, a_bits=8),))
    read16, _ = scalesim_reads(export_files(wide, acc)["accelerator.cfg"], format_topology(wide))
    read8, _ = scalesim_reads(export_files(narrow, acc)["accelerator.cfg"], format_topology(narrow))
    assert read16["bandwidths"] == [16] and read16["IfmapSRAMBankBandwidth"] == read16["FilterSRAMBankBandwidth"] == 16
    assert read8["bandwidths"] == [32] and read8["IfmapSRAMBankBandwidth"] == 32
    assert read16["ifmapsramszkB"] == 128 * 1024 // 2 // 3 // 1024 and read8["ifmapsramszkB"] == 128 // 3
    # Without its [codesign] section the cfg reads as SCALE-Sim sees it: words are bytes, the systolic dataflow.
    plain = export_files(narrow, acc)["accelerator.cfg"].split("\n[codesign]\n")[0]
    seen = parse_config(plain)
    assert not seen.exact and seen.accelerator.dataflow == "ws_systolic" and seen.accelerator.dram_bw == 32.0
    assert seen.accelerator.gb_bytes == 3 * 42 * 1024 and seen.accelerator.zero_skip


def test_cfg_says_in_plain_words_what_scalesim_does_not_model():
    acc = ACCELERATORS["squeezelerator_os"]
    workload, _ = design("resnet18", "squeezelerator_os")
    comments = "\n".join(line for line in export_files(workload, acc)["accelerator.cfg"].splitlines()
                         if line.startswith(";"))
    for words in ("the dataflow os", "Dataflow = os", "the clock, 500 MHz", "16-bit element", "100 cycles of latency",
                  "register files", "zero skipping", "pooling and element-wise layers", "energy (eyeriss table) and area",
                  "operand widths of 4, 8, 16 bits", "Sparsity column"):
        assert words in comments
    systolic = format_config(ACCELERATORS["systolic"], word_bits=8)
    assert "12.5 elements per cycle (SCALE-Sim reads whole words per cycle)" in systolic
    assert "Bandwidth = 12\n" in systolic or "Bandwidth = 13\n" in systolic
    assert "run_name = sys_1_50_DP\n" in systolic  # SCALE-Sim makes a folder of it; [codesign] keeps the name


def test_topology_annotations_are_after_the_last_comma_where_scalesim_does_not_look():
    workload = Workload((
        pool("in pool", 3, 33, R=3, stride=2, w_bits=8, a_bits=8),  # before any array layer: on the header line
        conv("a,b#DP|x", 3, 8, 16, R=3, padding=1, w_bits=4, a_bits=8, w_density=0.25),
        conv("dw", 8, 8, 16, R=3, padding=1, stride=2, groups=8, w_bits=8, a_bits=8),
        conv("grouped", 8, 16, 8, R=3, padding=1, groups=4, w_bits=8, a_bits=8, w_density=0.123456789),
        eltwise("add", 16, 8), pool("gap", 16, 8, R=8, stride=8),
        fc("fc", 16, 10, w_bits=2, a_bits=2)), "odd")
    text = format_topology(workload)
    assert parse_topology(text) == dataclasses.replace(workload, name="<topology>")
    _, rows = scalesim_reads(format_config(Accelerator()), text)
    assert [row[0] for row in rows] == ["a_b_Dp|x", "dw_DP", "grouped_g0", "grouped_g1", "grouped_g2", "grouped_g3", "fc"]
    assert [row[-2:] for row in rows] == [[1, 4], [1, 1]] + [[1, 1]] * 4 + [[1, 1]]  # 0.123456789 is no N:M ratio
    assert rows[2][5:7] == [2, 4] and rows[1][5:7] == [8, 1]  # a group's channels; depthwise: one filter per channel


# --- reading SCALE-Sim v3 files -------------------------------------------------------------------

def test_sparsity_column_is_read_as_weight_density():
    # scale-sim-v3 topologies/sparsity/conv.csv
    text = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides, Sparsity,\n"
            "CONV_1,     5,            5,           3,             3,            2,        6,          1,       2:4,\n"
            "CONV_2,     5,            5,           3,             3,            2,        6,          1,       3:10,\n"
            "CONV_3,     5,            5,           3,             3,            2,        6,          1,\n")
    layers = parse_topology(text).layers
    assert [layer.w_density for layer in layers] == [0.5, 0.3, 1.0]
    assert all(layer.w_bits == layer.a_bits == 8 for layer in layers)


@pytest.mark.parametrize("value", ["2", "0:4", "5:4", "a:b", "1:2:3", ""])
def test_malformed_sparsity_is_named(value):
    text = f"Layer name,\nConv, 8, 8, 3, 3, 4, 4, 1, {value},\n"
    with pytest.raises(FormatError, match=r"line 2: field 'Sparsity' must be N:M"):
        parse_topology(text)


@pytest.mark.parametrize("annotation, message", [
    ("# codesign: w_bits=eight", r"line 2: codesign field 'w_bits' must be an integer"),
    ("# codesign: color=red", r"line 2: the codesign annotation has 'color=red'"),
    ("# codesign: w_bits=64", r"line 2: layer 'Conv': field 'w_bits' must be between 1 and 32"),
    ("# codesign: part_of=Conv", r"line 2: part_of='Conv' must be alone and follow"),
    ("# codesign: | name=p kind=conv C=4 K=4 H=6 W=6", r"line 2: a layer after '\|' must have kind=pool or kind=eltwise"),
    ("# codesign: | name=p kind=pool", r"line 2: a layer after '\|' needs name, kind, C, K, H and W"),
])
def test_malformed_annotations_are_named(annotation, message):
    with pytest.raises(FormatError, match=message):
        parse_topology(f"Layer name,\nConv, 8, 8, 3, 3, 4, 4, 1, 1:1, {annotation}\n")


def test_plain_scalesim_files_read_as_before():
    # The cfg of the recorded run user_ws_32x32_bw2 (experiments/scalesim_reference/record_scalesim.py).
    cfg = ("[general]\nrun_name = run\n\n[architecture_presets]\nArrayHeight = 32\nArrayWidth = 32\n"
           "IfmapSramSzkB = 16\nFilterSramSzkB = 16\nOfmapSramSzkB = 16\nIfmapOffset = 0\nFilterOffset = 10000000\n"
           "OfmapOffset = 20000000\nBandwidth = 2\nDataflow = ws\nReadRequestBuffer = 32\nWriteRequestBuffer = 32\n\n"
           "[layout]\nIfmapCustomLayout = False\nIfmapSRAMBankBandwidth = 2\nIfmapSRAMBankNum = 1\n"
           "IfmapSRAMBankPort = 2\nFilterCustomLayout = False\nFilterSRAMBankBandwidth = 2\nFilterSRAMBankNum = 1\n"
           "FilterSRAMBankPort = 2\n\n[sparsity]\nSparsitySupport = false\nSparseRep = ellpack_block\n"
           "OptimizedMapping = false\nBlockSize = 8\nRandomNumberGeneratorSeed = 40\n\n"
           "[run_presets]\nInterfaceBandwidth = USER\nUseRamulatorTrace = False\n")
    config = parse_config(cfg)
    assert not config.exact and not config.calc_bandwidth
    assert config.accelerator == Accelerator(rows=32, cols=32, dataflow="ws_systolic", gb_bytes=48 * 1024, dram_bw=2.0,
                                             dram_latency=0.0, mac_bits=8, rf_bytes=1, name="run")
    # scale-sim-v3 configs/sparsity.cfg style: ':' delimiters, SparsitySupport = its sparse weights (zero skipping).
    sparse = cfg.replace("SparsitySupport = false", "SparsitySupport : true").replace("\nBandwidth = 2\n", "\nBandwidth : 50\n")
    assert parse_config(sparse).accelerator.zero_skip and parse_config(sparse).accelerator.dram_bw == 2.0
    assert parse_config(cfg.replace("USER", "CALC")).calc_bandwidth
    with pytest.raises(FormatError, match=r"line 29: field 'SparsitySupport' must be true or false"):
        parse_config(cfg.replace("SparsitySupport = false", "SparsitySupport = maybe"))
    layers = read_topology(Path(__file__).parents[1] / "experiments" / "scalesim_reference" / "layers.csv")
    assert len(layers) == 18 and {(layer.w_bits, layer.a_bits, layer.w_density) for layer in layers} == {(8, 8, 1.0)}


def test_an_edited_export_cfg_is_refused_not_silently_read():
    acc = ACCELERATORS["squeezelerator_os"]
    text = format_config(acc, word_bits=16)
    assert parse_config(text).accelerator == acc
    with pytest.raises(FormatError, match=r"line \d+: field 'ArrayHeight' is 8 but the accelerator of section "
                                          r"\[codesign\] \(rows = 16, 16-bit words\) gives 16"):
        parse_config(text.replace("ArrayHeight = 16", "ArrayHeight = 8"))
    with pytest.raises(FormatError, match=r"field 'Bandwidth' is 32 .* gives 16"):
        parse_config(text.replace("Bandwidth = 16", "Bandwidth = 32"))
    with pytest.raises(FormatError, match=r"line \d+: section \[codesign\]: field 'clock_mhz' must be a number"):
        parse_config(text.replace("clock_mhz = 500.0", 'clock_mhz = "fast"'))
    with pytest.raises(FormatError, match=r"section \[codesign\] is missing 'mac_bits'"):
        parse_config(text.replace("mac_bits = 16\n", ""))
    with pytest.raises(FormatError, match=r"section \[codesign\] has unknown field 'color'"):
        parse_config(text + "color = 1\n")
    # Edited in both places, it is the new accelerator.
    both = text.replace("ArrayHeight = 16", "ArrayHeight = 8").replace("rows = 16", "rows = 8")
    assert parse_config(both).accelerator == acc.replace(rows=8)
    assert math.isclose(parse_config(both).accelerator.dram_bw, 32.0)
