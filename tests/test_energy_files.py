"""Energy tables from files (cost_models/energy_files.py): codesign's per-level table and Accelergy's ERT.

The published ERTs under experiments/energy_reference/ are read as recorded; the unit
conversions (an access of a component's width, a MAC of its multiplier's width, to
16 bits) are checked against tables written here with known answers, and the argument
averaging against Accelergy's own summary of the same ERT.
"""

import contextlib
import json
import math
from pathlib import Path

import pytest
import yaml

from codesign.cli import main
from cost_models import Accelerator, Workload, conv, evaluate
from cost_models.energy import ENERGY_TABLES, LEVELS
from cost_models.energy_files import read_energy_table
from search_spaces.accelerators import AcceleratorSpace

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "energy_reference"
TIMELOOP_ERT = REFERENCE / "timeloop_eyeriss_like" / "timeloop-mapper.ERT.yaml"
ACCELERGY_ERT = REFERENCE / "accelergy_eyeriss_like" / "ERT.yaml"
WORKLOAD = Workload((conv("a", 16, 32, 14, R=3, padding=1, w_bits=8, a_bits=8),
                     conv("b", 32, 32, 7, R=1, w_bits=16, a_bits=16)))


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if path.suffix != ".json" else json.dumps(data))
    return path


def energies(table) -> list[dict]:
    report = evaluate(WORKLOAD, Accelerator(rows=8, cols=8, dataflow="ws", gb_bytes=32 * 1024, energy_table=str(table)))
    return [{level: row[f"energy_{level}_pj"] for level in LEVELS} for row in report.layers]


def ert(tmp_path: Path, components: list[tuple[str, str, dict, list[dict]]], name="ERT.yaml") -> Path:
    """An ERT 0.4 and its flattened architecture: (name, class, attributes, actions) per component."""
    write(tmp_path / name.replace("ERT.yaml", "flattened_architecture.yaml"),
          {"architecture": {"version": "0.4", "local": [{"name": n, "class": c, "attributes": a}
                                                        for n, c, a, _ in components]}})
    return write(tmp_path / name, {"ERT": {"version": "0.4", "tables": [{"name": n, "actions": actions}
                                                                        for n, _, _, actions in components]}})


def rw(read, write_=None, **more):
    return [{"name": "read", "arguments": None, "energy": read}, {"name": "write", "arguments": None,
                                                                  "energy": read if write_ is None else write_},
            *({"name": k, "arguments": None, "energy": v} for k, v in more.items())]


# --- codesign's own table ---------------------------------------------------------------------------------

def test_a_table_file_of_the_builtin_values_prices_like_the_builtin_table_in_any_word_width(tmp_path):
    builtin = energies("horowitz45")
    same = write(tmp_path / "h.yaml", dict(ENERGY_TABLES["horowitz45"]))
    # the same energies per 64-bit access (4x for storage and movement) and per 64-bit MAC (16x, bits^2)
    wide = write(tmp_path / "h.json", {"bits": 64, **{level: value * (16 if level == "mac" else 4)
                                                      for level, value in ENERGY_TABLES["horowitz45"].items()}})
    for table in (same, wide):
        for ours, theirs in zip(energies(table), builtin):
            assert ours == pytest.approx(theirs, rel=1e-6)


def test_levels_a_table_leaves_out_cost_nothing(tmp_path):
    table = write(tmp_path / "t.yaml", {"mac": 1.0, "dram": 100.0})
    for row in energies(table):
        assert row["rf"] == row["noc"] == row["gb"] == 0.0 and row["mac"] > 0 and row["dram"] > 0


# --- Accelergy's ERT ----------------------------------------------------------------------------------------

def test_an_ert_is_priced_per_16_bit_access_from_each_components_width(tmp_path):
    path = ert(tmp_path, [
        ("chip.DRAM[1..1]", "DRAM", {"width": 64, "datawidth": 8}, rw(512.0, leak=0.0)),
        ("chip.glb[1..1]", "smartbuffer_SRAM", {"width": 64}, rw(18.0, 14.0, leak=0.01)),
        ("chip.a_spad[1..4]", "smartbuffer_RF", {"width": 16}, rw(0.2)),
        ("chip.b_spad[1..4]", "regfile", {"width": 32}, rw(2.0, 1.0)),
        ("chip.mac[1..4]", "intmac", {"multiplier_width": 8}, [{"name": "compute", "arguments": None,
                                                                 "energy": 0.25}]),
        ("chip.noc", "XY_NoC", {"datawidth": 64}, [{"name": "transfer_random", "arguments": None, "energy": 8.0}]),
        ("chip.spatial[1..1]", "dummy_storage", {"width": 1}, rw(0.0)),
    ])
    table = read_energy_table(path)
    assert table.kind == "accelergy"
    assert table.pj == pytest.approx({"mac": 0.25 * 4, "rf": (0.2 + 1.5 * 16 / 32) / 2, "noc": 8.0 / 4,
                                      "gb": 16.0 / 4, "dram": 512.0 / 4})
    assert set(table.components["rf"]) == {"chip.a_spad[1..4]", "chip.b_spad[1..4]"}
    assert "chip.spatial[1..1]" not in str(table.components)  # a dummy prices nothing
    by_levels = write(tmp_path / "same.yaml", table.pj)  # the same numbers as codesign's table
    for ours, theirs in zip(energies(path), energies(by_levels)):
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_timeloops_eyeriss_ert_reads_as_its_summary_says():
    """The recorded Timeloop ERT (format 0.4): each component's 16-bit energy from the summary's read and write."""
    table = read_energy_table(TIMELOOP_ERT)
    summary = yaml.safe_load((TIMELOOP_ERT.parent / "timeloop-mapper.ERT_summary.yaml").read_text())
    arch = yaml.safe_load((TIMELOOP_ERT.parent / "timeloop-mapper.flattened_architecture.yaml").read_text())
    width = {c["name"]: c["attributes"].get("width") for c in arch["architecture"]["local"]}
    for entry in summary["ERT_summary"]["table_summary"]:
        actions = {a["name"]: a["energy"] for a in entry["actions"]}
        name = entry["name"]
        level = next((lv for lv, comps in table.components.items() if name in comps), None)
        if "compute" in actions:
            assert level == "mac" and table.components["mac"][name] == pytest.approx(actions["compute"] * 4)
        else:
            expected = (actions["read"] + actions["write"]) / 2 * 16 / width[name]
            assert table.components[level][name] == pytest.approx(expected)
    assert sorted(table.components) == sorted(LEVELS) and table.components["noc"] == {}
    assert table.pj["dram"] == pytest.approx(128.0)  # 512 pJ per 64-bit LPDDR4 access


def test_an_erts_argument_variants_average_as_accelergys_summary(tmp_path):
    """Format 0.3: read and write carry (address_delta, data_delta) variants; their mean is the summary's average."""
    dram = write(tmp_path / "with_dram.yaml", {"ert": str(ACCELERGY_ERT), "bits": 64, "dram": 1280.0})
    table = read_energy_table(dram)
    summary = yaml.safe_load((ACCELERGY_ERT.parent / "ERT_summary.yaml").read_text())
    arch = yaml.safe_load((ACCELERGY_ERT.parent / "flattened_architecture.yaml").read_text())
    width = {c["name"]: c["attributes"].get("memory_width") for c in arch["architecture"]["local"]}
    checked = 0
    for entry in summary["ERT_summary"]["table_summary"]:
        average = {a["name"]: a.get("average_energy") for a in entry["actions"]}
        if average.get("read") is None:
            continue
        level = next(lv for lv, comps in table.components.items() if entry["name"] in comps)
        expected = (average["read"] + average["write"]) / 2 * 16 / width[entry["name"]]
        assert table.components[level][entry["name"]] == pytest.approx(expected, rel=1e-4)
        checked += 1
    assert checked == 5  # three scratchpads, two SRAMs
    assert table.pj["dram"] == pytest.approx(320.0) and table.pj["mac"] == pytest.approx(2.20035)


def test_the_report_says_which_table_priced_it(tmp_path, capsys):
    layers = ROOT / "examples" / "layers.csv"
    code = main(["cost", "--topology", str(layers), "--energy", str(TIMELOOP_ERT), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["energy_table"]["path"] == str(TIMELOOP_ERT) and data["energy_table"]["kind"] == "accelergy"
    assert len(data["energy_table"]["sha256"]) == 16
    assert data["energy_table"]["pj_per_16bit_access"]["dram"] == pytest.approx(128.0)
    assert main(["cost", "--topology", str(layers), "--energy", "horowitz45"]) == 0
    assert "energy priced by the horowitz45 table" in capsys.readouterr().out
    assert main(["cost", "--topology", str(layers), "--energy", str(TIMELOOP_ERT)]) == 0
    assert f"energy priced by {TIMELOOP_ERT} (Accelergy ERT" in capsys.readouterr().out


def test_an_accelerator_space_searches_over_table_files(tmp_path):
    table = write(tmp_path / "t.yaml", {"mac": 1.0, "dram": 100.0})
    space = AcceleratorSpace(energy_table=("eyeriss", str(table)))
    assert {a.energy_table for a in space.grid()} == {"eyeriss", str(table)}


# --- DRAM by type ---------------------------------------------------------------------------------------------

def test_a_dram_type_prices_dram_per_bit_whatever_the_table(tmp_path):
    """Accelergy's CactiDRAM figures: LPDDR4 8 pJ/bit, HBM2 3.9; every other level stays the table's."""
    table = write(tmp_path / "t.yaml", {"mac": 1.0, "rf": 0.5, "dram": 999.0})
    for energy_table in ("eyeriss", str(table)):
        plain = evaluate(WORKLOAD, Accelerator(energy_table=energy_table))
        for dram_type, pj_per_bit in (("LPDDR4", 8.0), ("HBM2", 3.9)):
            typed = evaluate(WORKLOAD, Accelerator(energy_table=energy_table, dram_type=dram_type))
            for row, same, layer in zip(typed.layers, plain.layers, WORKLOAD.layers):
                assert row["accesses_dram"] == same["accesses_dram"]
                bits = layer.a_bits  # the accesses count words of the layer's width
                assert row["energy_dram_pj"] == pytest.approx(row["accesses_dram"] * pj_per_bit * bits, rel=1e-5)
                assert all(row[f"energy_{lv}_pj"] == same[f"energy_{lv}_pj"] for lv in LEVELS if lv != "dram")
            assert typed.to_dict()["energy_table"]["dram_pj_per_bit"] == pj_per_bit
            assert typed.table().splitlines()[-1].endswith(f"DRAM as {dram_type} ({pj_per_bit:g} pJ per bit)")
    with pytest.raises(ValueError, match=r"field 'dram_type' must be '' .* or one of LPDDR4, .*HBM2.*; got 'DDR9'"):
        Accelerator(dram_type="DDR9")


# --- bad input: one error naming the file, the line and the key ------------------------------------------

def bad_tables(tmp: Path) -> dict[str, tuple[Path, str]]:
    def text(name, body):
        (tmp / name).write_text(body)
        return tmp / name

    good_components = [("c.DRAM", "DRAM", {"width": 64}, rw(512.0)),
                       ("c.mac", "intmac", {"multiplier_width": 8}, [{"name": "compute", "energy": 0.2}])]
    (tmp / "noarch").mkdir()
    write(tmp / "noarch" / "ERT.yaml", {"ERT": {"version": "0.4", "tables": [{"name": "c.mac", "actions": []}]}})
    (tmp / "unknown_class").mkdir()
    (tmp / "no_action").mkdir()
    (tmp / "no_dram").mkdir()
    (tmp / "no_width").mkdir()
    return {
        "unknown key": (text("k.yaml", "mac: 1\ndram: 2\nsram: 3\n"), r"k\.yaml:3: unknown key 'sram'.*bits, ert, mac"),
        "negative": (text("n.yaml", "mac: 1\ndram: -2\n"), r"n\.yaml:2: 'dram' must be a finite energy in pJ >= 0"),
        "nan in json": (text("nan.json", '{"mac": NaN, "dram": 2}'), r"nan\.json:1: 'mac' must be a finite energy"),
        "nan in yaml": (text("nan.yaml", "mac: 1\nrf: .nan\ndram: 2\n"), r"nan\.yaml:2: 'rf' must be a finite energy"),
        "missing dram": (text("m.yaml", "mac: 1\n"), r"m\.yaml:1: missing 'dram'; required: mac, dram"),
        "bad bits": (text("b.yaml", "bits: 0\nmac: 1\ndram: 2\n"), r"b\.yaml:1: 'bits' must be a number of bits > 0"),
        "not yaml": (text("s.yaml", "mac: [1\n"), r"s\.yaml:2: not valid YAML or JSON"),
        "a list": (text("l.yaml", "- 1\n"), r"l\.yaml:1: an energy table is a mapping"),
        "no file": (tmp / "absent.yaml", r"absent\.yaml: cannot read the energy table"),
        "no architecture": (tmp / "noarch" / "ERT.yaml", r"needs the flattened architecture"),
        "unknown class": (ert(tmp / "unknown_class", good_components + [("c.fifo", "fifo",
                                                                         {"width": 8}, rw(1.0))]),
                          r"ERT\.yaml:\d+: component 'c\.fifo' has class 'fifo', which maps onto "
                          r"no level"),
        "no action": (ert(tmp / "no_action", good_components + [("c.glb", "SRAM", {"width": 64},
                                                                 [{"name": "fetch", "energy": 1.0}])]),
                      r"ERT\.yaml:\d+: component 'c\.glb' \(class SRAM, level gb\) has none of the actions read; "
                      r"it has fetch"),
        "no dram": (ert(tmp / "no_dram", good_components[1:]), r"ERT\.yaml: no component prices the 'dram' level"),
        "no width": (ert(tmp / "no_width", [("c.DRAM", "DRAM", {}, rw(512.0)), good_components[1]]),
                     r"flattened_architecture\.yaml:\d+: component 'c\.DRAM' \(class DRAM\) has no width or "
                     r"memory_width"),
    }


@contextlib.contextmanager
def check(case: str):
    """Names the case when its check fails."""
    try:
        yield
    except BaseException as error:
        raise AssertionError(f"{case}: {error}") from error


def test_a_bad_table_is_refused_naming_file_line_and_key(tmp_path):
    for case, (path, message) in bad_tables(tmp_path).items():
        with check(case), pytest.raises(ValueError, match="field 'energy_table': .*" + message):
            Accelerator(energy_table=str(path))
        with check(case), pytest.raises(ValueError, match=message):
            AcceleratorSpace(energy_table=(str(path),))


def test_a_bad_table_on_the_command_line_is_one_line_and_exit_code_2(tmp_path, capsys):
    layers = ROOT / "examples" / "layers.csv"
    for case, (path, message) in bad_tables(tmp_path).items():
        assert main(["cost", "--topology", str(layers), "--energy", str(path)]) == 2, case
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["cost", "--topology", str(layers), "--energy", "magic"]) == 2
    assert "eyeriss, horowitz45, horowitz45_sram or the path of an energy table file" in capsys.readouterr().err


def test_a_changed_file_is_read_again(tmp_path):
    path = write(tmp_path / "t.yaml", {"mac": 1.0, "dram": 100.0})
    first = read_energy_table(path).pj["dram"]
    write(path, {"mac": 1.0, "dram": 250.0, "rf": 0.5})
    assert (first, read_energy_table(path).pj["dram"]) == (100.0, 250.0)
    assert not math.isnan(read_energy_table(path).pj["rf"])
    # a table naming an ERT is read again when only the ERT changes
    ert_path = ert(tmp_path, [("c.DRAM", "DRAM", {"width": 64}, rw(512.0)),
                              ("c.mac", "intmac", {"multiplier_width": 8}, [{"name": "compute", "energy": 0.2}])])
    table = write(tmp_path / "over.yaml", {"ert": ert_path.name, "rf": 0.5})
    assert read_energy_table(table).pj["dram"] == pytest.approx(128.0)
    ert(tmp_path, [("c.DRAM", "DRAM", {"width": 64}, rw(640.0, 640.0, refresh=1.0)),
                   ("c.mac", "intmac", {"multiplier_width": 8}, [{"name": "compute", "energy": 0.2}])])
    assert read_energy_table(table).pj["dram"] == pytest.approx(160.0)


def test_the_eyeriss_like_reference_agrees_with_timeloop_within_the_goals():
    """experiments/energy_reference/check_energy.py: total energy within 15 %, DRAM accesses within 10 % of
    Timeloop's; the MAC level exactly (the same count, the same ERT energy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_energy", REFERENCE / "check_energy.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    result = check.compare("rs")
    assert result["theirs"]["mac"]["energy_pj"] == pytest.approx(2250969.22, rel=1e-6)  # read from the stats file
    assert result["total"]["theirs"] == pytest.approx(59.28e6, rel=1e-3)
    assert result["ours"]["mac"] == pytest.approx(result["theirs"]["mac"], rel=1e-6)
    assert abs(result["differences"]["total energy"]) <= 0.15
    assert abs(result["differences"]["dram accesses"]) <= 0.10


def test_zigzags_tpu_like_reference_agrees_on_macs_and_cycles_and_differs_in_energy_as_documented():
    """experiments/energy_reference/check_zigzag.py on ZigZag's own run of its TPU-like design and ResNet-18: the
    recorded run is the one ZigZag's test expects; the MAC energy is the same (the same 1.81 G MACs at ZigZag's
    energy), the cycles within 10 %; the total energy is the +38.5 % docs/RESULTS.md explains (the goal of 15 % is
    not met: codesign's tiling trades DRAM traffic for hidden transfers, and its weights pass through the buffer)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_zigzag", REFERENCE / "check_zigzag.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    result = check.compare("ws")
    ours, theirs = result["total"]["ours"], result["total"]["theirs"]
    assert theirs["energy"] == pytest.approx(1871436380.656, rel=1e-9) and theirs["cycles"] == 3865041
    assert ours["mac"] == pytest.approx(theirs["mac"], rel=1e-6)
    assert abs(ours["cycles"] / theirs["cycles"] - 1) <= 0.10
    assert result["difference"] == pytest.approx(0.385, abs=0.01)
