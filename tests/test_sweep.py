"""The hardware-only sweep of a fixed network: its front against a brute-force loop, constraints, and the CLI."""

import dataclasses
import json

import numpy as np
import pytest

from codesign.metrics import HARDWARE_METRICS, Constraint, hardware_metrics
from codesign.sweep import accelerator_names, parse_bound, sweep
from cost_models import evaluate
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.reference import reference_network

SPACE = AcceleratorSpace(rows=(8, 16, 32), cols=(8, 32), dataflows=("ws", "os", "flex"), gb_kib=(32, 128),
                         rf_bytes=(16,), dram_gbps=(16.0,), mac_bits=(8,), zero_skip=(True,))


def test_the_front_is_what_a_loop_over_every_accelerator_finds():
    workload = reference_network("squeezenet_v1_0").at_resolution(32, num_classes=10).workload()
    result = sweep(workload, SPACE, objectives=("latency", "energy"), constraints=[Constraint("area", max=1.5)])
    assert result.swept == SPACE.size == 36
    every = {a: {k: float(v) for k, v in hardware_metrics(evaluate(workload, a).total).items()} for a in SPACE.grid()}
    feasible = {a: m for a, m in every.items() if m["area"] <= 1.5}
    on_front = {p.accelerator for p in result.front}
    for a, m in feasible.items():
        dominated = any(o["latency"] <= m["latency"] and o["energy"] <= m["energy"] and
                        (o["latency"] < m["latency"] or o["energy"] < m["energy"]) for o in feasible.values())
        listed = a in on_front or any(every[b] == m for b in on_front)  # or tied with a listed one in every metric
        assert listed == (not dominated), a
    assert len(on_front) + result.tied == sum(1 for a, m in feasible.items() if not any(
        o["latency"] <= m["latency"] and o["energy"] <= m["energy"] and o != m for o in feasible.values()))
    for point in result.front:
        assert point.metrics == pytest.approx(every[point.accelerator], rel=1e-5)
    assert result.chosen == min(on_front, key=lambda a: every[a]["edp"]) and result.feasible
    table = result.table()
    assert f"hardware Pareto front of {len(on_front)} of 36 accelerators" in table and table.count("\n* ") == 1


def test_accelerators_that_tie_in_every_metric_are_listed_once():
    """Zero skipping on a network with no zeros costs nothing and saves nothing: each pair ties, the front lists
    the first of each (no zero-skip) and counts the others."""
    workload = reference_network("squeezenet_v1_0").at_resolution(32, num_classes=10).workload()
    both = dataclasses.replace(SPACE, zero_skip=(False, True))
    result = sweep(workload, both, objectives=("latency", "energy", "area"))
    single = sweep(workload, dataclasses.replace(SPACE, zero_skip=(False,)), objectives=("latency", "energy", "area"))
    assert [p.accelerator for p in result.front] == [p.accelerator for p in single.front]
    assert all(not p.accelerator.zero_skip for p in result.front)
    assert result.tied == len(result.front) + 2 * single.tied  # each of the single front's (ties included) twice
    assert len({tuple(sorted(p.metrics.items())) for p in result.front}) == len(result.front)
    assert f"{result.tied} more accelerator(s) equal a listed one in every metric" in result.table()


def test_an_unmeetable_constraint_says_so_and_bad_input_names_the_field():
    workload = reference_network("squeezenet_v1_0").at_resolution(32, num_classes=10).workload()
    result = sweep(workload, SPACE, constraints=[parse_bound("area<=0.001")])
    assert not result.feasible and len(result.front) == 1
    assert "no accelerator meets area<=0.001: shown is the least-violating one" in result.table()
    for call, message in ((lambda: sweep(workload, SPACE, objectives=("accuracy",)), "not a hardware metric"),
                          (lambda: sweep(workload, SPACE, limit=0), "field 'limit'"),
                          (lambda: parse_bound("area<2"), "must be METRIC<=VALUE"),
                          (lambda: parse_bound("speed<=2"), "METRIC one of latency, energy, edp, area"),
                          (lambda: parse_bound("area<=big"), "VALUE a number")):
        with pytest.raises(ValueError, match=message):
            call()


def test_names_tell_apart_accelerators_that_differ_only_in_a_detail():
    a = SPACE.grid()[0]
    twins = [a, dataclasses.replace(a, zero_skip=False), dataclasses.replace(a, rows=64)]
    names = accelerator_names(twins)
    assert names == [f"{a.rows}x{a.cols} {a.dataflow}, zero-skip", f"{a.rows}x{a.cols} {a.dataflow}, no zero-skip",
                     f"64x{a.cols} {a.dataflow}"]


def test_cli_sweep_prints_the_front_and_writes_the_plot_and_json(tmp_path, capsys):
    from codesign.cli import main

    space = tmp_path / "space.json"
    space.write_text(SPACE.to_json())
    assert main(["sweep", "squeezenet_v1_0", "--resolution", "32", "--space", str(space), "--max", "area<=1.5",
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "hardware Pareto front of" in printed and "of 36 accelerators" in printed
    front = json.loads((tmp_path / "out" / "front.json").read_text())
    assert front["swept"] == 36 and all(p["area"] <= 1.5 for p in front["front"])
    assert set(HARDWARE_METRICS) <= set(front["front"][0])
    assert (tmp_path / "out" / "hardware_front.png").stat().st_size > 1000
    assert main(["sweep", "squeezenet_v1_0", "--max", "area<2"]) == 2
    assert "must be METRIC<=VALUE" in capsys.readouterr().err
    assert np.isfinite(front["seconds"])
