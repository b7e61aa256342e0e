"""The memory modes: SCALE-Sim's USER mode replayed exactly, and the same SRAMs with a sensible controller.

The replay is held to every USER-mode run SCALE-Sim itself recorded (experiments/scalesim_reference):
its total cycles and its DRAM reads must be equal, not close.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.cli import main as cli_main
from cost_models import Accelerator, MEMORY_MODES, OperandMemories, evaluate, evaluate_batch
from cost_models.scalesim import operand_memories, parse_config, read_topology, scalesim_geometry
from cost_models.scalesim_memory import DATAFLOWS, _operand_matrices, operand_buffer_cycles, scalesim_user_cycles

REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "scalesim_reference"
sys.path.insert(0, str(REFERENCE))
import check_memory_modes  # noqa: E402

USER_ROWS = check_memory_modes.user_rows(check_memory_modes.CSVS)


def test_the_recorded_runs_cover_what_the_mode_promises():
    """Non-square arrays, SRAMs that are not powers of two, several bandwidths, all three dataflows."""
    shapes = {(r["array_h"], r["array_w"]) for r in USER_ROWS}
    assert any(h != w for h, w in shapes)
    assert {"12", "15", "17", "20", "24"} <= {r["ifmap_sram_kb"] for r in USER_ROWS}
    assert {"2", "4", "8", "10"} <= {r["bandwidth"] for r in USER_ROWS}
    assert {r["dataflow"] for r in USER_ROWS} == {"os", "ws", "is"}
    assert len(USER_ROWS) >= 300


@pytest.mark.parametrize("config", sorted({r["config"] for r in USER_ROWS}))
def test_replay_equals_scalesim_on_every_recorded_user_run(config):
    for row in (r for r in USER_ROWS if r["config"] == config):
        result = check_memory_modes.replay(row)
        where = f"{row['layer']} on {config}"
        assert result.total_cycles == int(row["total_cycles"]), where
        assert result.stall_cycles == int(row["stall_cycles"]), where
        assert result.ifmap_dram_reads == int(row["dram_ifmap_reads"]), where
        assert result.filter_dram_reads == int(row["dram_filter_reads"]), where


def test_scalesim_cycles_are_not_monotone_in_sram_size_and_the_replay_says_so():
    """One 3x3 conv on a 16x16 WS array at 4 words/cycle, recorded by SCALE-Sim at 12, 16 and 17 kB."""
    recorded = {r["ifmap_sram_kb"]: int(r["total_cycles"]) for r in USER_ROWS
                if r["config"].startswith("user_ws_16x16_bw4_") and r["layer"] == "Conv2"}
    assert set(recorded) == {"12", "16", "17"}
    assert recorded["16"] > 2 * recorded["12"] > 4 * recorded["17"]  # more SRAM, slower, then much faster
    replayed = {kb: scalesim_user_cycles(18, 18, 3, 3, 16, 32, 1, 16, 16, "ws", OperandMemories.uniform(int(kb), 4))
                .total_cycles for kb in recorded}
    assert replayed == recorded


def test_codesign_cost_times_a_plain_user_cfg_as_scalesim(tmp_path, capsys):
    """`codesign cost --config` on a SCALE-Sim cfg in USER mode gives SCALE-Sim's recorded totals per layer."""
    config = "user_is_32x32_bw2"
    rows = [r for r in USER_ROWS if r["config"] == config]
    cfg = tmp_path / "user.cfg"
    cfg.write_text(
        "[general]\nrun_name = run\n[architecture_presets]\nArrayHeight = 32\nArrayWidth = 32\nIfmapSramSzkB = 16\n"
        "FilterSramSzkB = 16\nOfmapSramSzkB = 16\nBandwidth = 2\nDataflow = is\n[layout]\n"
        "IfmapSRAMBankBandwidth = 2\nFilterSRAMBankBandwidth = 2\n[run_presets]\nInterfaceBandwidth = USER\n")
    assert cli_main(["cost", "--topology", str(REFERENCE / "layers.csv"), "--config", str(cfg), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cycles = {layer["layer"]: layer["cycles"] for layer in report["layers"]}
    assert cycles == {r["layer"]: float(r["total_cycles"]) for r in rows}
    assert report["total"]["cycles"] == sum(float(r["total_cycles"]) for r in rows)
    assert report["memory"] == {"mode": "scalesim_user", "ifmap_words": 16384, "filter_words": 16384,
                                "ofmap_words": 16384, "ifmap_bw": 2.0, "filter_bw": 2.0, "ofmap_bw": 2.0}


def test_a_cfg_gives_each_operand_its_own_sram_and_channel():
    cfg = ("[architecture_presets]\nArrayHeight = 16\nArrayWidth = 8\nIfmapSramSzkB = 12\nFilterSramSzkB = 15\n"
           "OfmapSramSzkB = 17\nBandwidth = 4\nDataflow = ws\n[layout]\nIfmapSRAMBankBandwidth = 2\n"
           "FilterSRAMBankBandwidth = 8\n[run_presets]\nInterfaceBandwidth = USER\n")
    assert parse_config(cfg).memories == OperandMemories(12 * 1024, 15 * 1024, 17 * 1024, 2, 8, 4)
    with pytest.raises(ValueError, match="line 5: field 'FilterSramSzkB' must hold at least one word"):
        parse_config(cfg.replace("FilterSramSzkB = 15", "FilterSramSzkB = 0.0001"))


def test_the_modes_through_evaluate_and_evaluate_batch_agree():
    workload = read_topology(REFERENCE / "layers.csv")
    accelerators = [Accelerator(rows=16, cols=8, dataflow="ws_systolic", gb_bytes=3 * 12 * 1024, dram_bw=4, mac_bits=8),
                    Accelerator(rows=32, cols=16, dataflow="os_systolic", gb_bytes=3 * 20 * 1024, dram_bw=2, mac_bits=8)]
    for memory in ("scalesim_user", "operand_buffers"):
        batch = evaluate_batch(workload, accelerators, memory=memory)
        for b, accelerator in enumerate(accelerators):
            report = evaluate(workload, accelerator, memory=memory)
            assert report.memory == memory and report.memories == operand_memories(accelerator)
            assert report.total["cycles"] == pytest.approx(float(batch.cycles[b]), rel=1e-9)
            assert [row["cycles"] for row in report.layers] == pytest.approx(list(batch.layers.cycles[b]), rel=1e-9)
            assert memory in report.table()
    # The replay through evaluate is the replay of each layer's SCALE-Sim geometry.
    report = evaluate(workload, accelerators[0], memory="scalesim_user")
    mem = operand_memories(accelerators[0])
    for layer, row in zip(workload.layers, report.layers):
        g = scalesim_geometry(layer)
        expected = scalesim_user_cycles(*g[:7], 16, 8, "ws", mem, g.groups)
        assert row["cycles"] == expected.total_cycles and row["filter_dram_reads"] == expected.filter_dram_reads


def test_bad_memory_settings_are_one_clear_error(tmp_path, capsys):
    workload = read_topology(REFERENCE / "layers.csv")
    accelerator = Accelerator(mac_bits=8, dataflow="ws_systolic")
    with pytest.raises(ValueError, match="memory must be one of global_buffer, scalesim_user, operand_buffers"):
        evaluate(workload, accelerator, memory="scalesim")
    with pytest.raises(ValueError, match="compute_only"):
        evaluate(workload, accelerator, memory="operand_buffers", compute_only=True)
    with pytest.raises(ValueError, match="memories="):
        evaluate(workload, accelerator, memories=OperandMemories.uniform(16, 2))
    with pytest.raises(ValueError, match="'ifmap_bw'"):
        OperandMemories(1024, 1024, 1024, 0, 2, 2)
    with pytest.raises(ValueError, match="whole words: field 'filter_bw'"):
        scalesim_user_cycles(8, 8, 3, 3, 4, 4, 1, 4, 4, "os", OperandMemories(1024, 1024, 1024, 2, 2.5, 2))
    assert cli_main(["cost", "--topology", str(REFERENCE / "layers.csv"), "--memory", "scalesim_user",
                     "--compute-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compute-only leaves out" in err[0]
    assert set(MEMORY_MODES) == {"global_buffer", "scalesim_user", "operand_buffers"}


# --- the sensible controller -------------------------------------------------------------------

layers = st.tuples(st.integers(1, 24), st.integers(1, 24), st.integers(1, 5), st.integers(1, 5), st.integers(1, 48),
                   st.integers(1, 64), st.integers(1, 3)).filter(lambda g: g[2] <= g[0] and g[3] <= g[1])
arrays = st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2))
memories = st.tuples(*[st.integers(1, 1 << 16)] * 3, *[st.integers(1, 64)] * 3)


def _cycles(layer, array, mem):
    return float(operand_buffer_cycles(*layer, *array, OperandMemories(*mem)).total_cycles)


@settings(max_examples=150, deadline=None)
@given(layers, arrays, memories, st.integers(0, 5), st.integers(1, 8))
def test_operand_buffers_more_sram_or_bandwidth_is_never_slower(layer, array, mem, which, factor):
    more = list(mem)
    more[which] *= factor
    assert _cycles(layer, array, more) <= _cycles(layer, array, mem)


@settings(max_examples=150, deadline=None)
@given(layers, arrays, memories)
def test_operand_buffers_never_beat_compute_or_unique_traffic(layer, array, mem):
    H, W, R, S, C, K, stride = layer
    result = operand_buffer_cycles(*layer, *array, OperandMemories(*mem))
    ifmap, filt, ofmap = _operand_matrices(H, W, R, S, C, K, stride)
    unique = (len(np.unique(ifmap[ifmap >= 0])), filt.size, ofmap.size)
    total = float(result.total_cycles)
    assert total >= float(result.compute_cycles)
    for words, bandwidth in zip(unique, mem[3:]):
        assert total >= words / bandwidth - 1e-9
    # The streams it fetches hold every unique word (im2col repeats are fetched, never fewer than unique).
    assert float(result.ifmap_dram_reads) >= unique[0] and float(result.filter_dram_reads) >= unique[1]


def test_operand_buffers_compute_cycles_are_scalesims():
    """With SRAMs that hold everything and wide channels, the mode is SCALE-Sim's compute cycles (CALC runs)."""
    with open(REFERENCE / "recorded.csv") as handle:
        calc = [r for r in csv.DictReader(handle) if r["bandwidth_mode"] == "CALC"]
    for row in calc:
        g = check_memory_modes.geometry(row)
        result = operand_buffer_cycles(*g[:7], int(row["array_h"]), int(row["array_w"]),
                                       DATAFLOWS.index(row["dataflow"]),
                                       OperandMemories(*(1 << 30,) * 3, *(1 << 20,) * 3), g[7])
        assert float(result.total_cycles) == float(row["compute_cycles"]), (row["layer"], row["config"])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 2000), st.integers(1, 300), st.integers(2, 5000))
def test_a_rows_read_stall_is_scalesims_arithmetic(cycle, first, slides, refill_cycles):
    """The closed form equals read_buffer.service_reads' loop (offset += p; if p > 0: offset += p)."""
    from cost_models.scalesim_memory import _read_stall
    offset = 1
    for k in range(first, first + slides):
        potential = (-1 + k * refill_cycles) - (cycle + offset)
        offset += potential
        if potential > 0:
            offset += potential
    assert _read_stall(cycle, first, slides, refill_cycles) == offset - 1
