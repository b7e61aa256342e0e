"""Hundreds of bad inputs through every entry point: how many end in one clear error.

Each case is a user's mistake: a field of a SCALE-Sim topology, cfg, accelerator JSON,
network spec or experiment file set to something it cannot be (zero, negative, huge,
not a number, empty, null, the wrong type, missing, unknown), a damaged or missing
file, a wrong option, a bad dataset array. The command line is run in-process
(``codesign.cli.main``); a case is *clear* when it exits with code 2 and prints exactly
one line, ``codesign: error: ...``, and no traceback. A Python call is clear when it
raises a ``ValueError`` (or ``FileNotFoundError``) with a message. Anything else, an
accepted bad input included, is listed.

    .venv/bin/python experiments/bad_inputs.py [--list]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BAD_NUMBERS = ("0", "-1", "3e9", "1e12", "abc", "", "1.5", "nan", "inf")
BAD_JSON_VALUES = (0, -1, 3e9, 1e12, "abc", None, 1.5, [1, 2], {"a": 1}, True)


def topology_cases(tmp: Path) -> list[list[str]]:
    lines = (ROOT / "examples" / "layers.csv").read_text().splitlines()
    header, row = lines[0], lines[1]
    cells = [c.strip() for c in row.rstrip(",").split(",")]
    cases = []
    for column in range(1, len(cells)):
        for value in BAD_NUMBERS:
            bad = cells[:column] + [value] + cells[column + 1:]
            path = tmp / f"topology_{column}_{len(cases)}.csv"
            path.write_text(header + "\n" + ", ".join(bad) + ",\n")
            cases.append(["cost", "--topology", path])
    for name, text in (("empty", ""), ("header only", header + "\n"), ("binary", None),
                       ("short row", header + "\nC, 1,\n"), ("unknown column", header + " Speed,\n" + row + " 3,\n")):
        path = tmp / f"topology_{name.replace(' ', '_')}.csv"
        if text is None:
            path.write_bytes(os.urandom(200))
        else:
            path.write_text(text)
        cases.append(["cost", "--topology", path])
    cases += [["cost", "--topology", tmp / "missing.csv"], ["cost", "--topology", tmp]]
    return cases


def config_cases(tmp: Path) -> list[list[str]]:
    text = (ROOT / "examples" / "scalesim.cfg").read_text()
    keys = ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB", "Bandwidth",
            "Dataflow", "IfmapSRAMBankBandwidth", "FilterSRAMBankBandwidth", "InterfaceBandwidth")
    cases = []
    for key in keys:
        line = next(l for l in text.splitlines() if l.startswith(key + " ="))
        for value in BAD_NUMBERS[:6]:
            path = tmp / f"config_{key}_{len(cases)}.cfg"
            path.write_text(text.replace(line, f"{key} = {value}"))
            cases.append(["cost", "--topology", ROOT / "examples" / "layers.csv", "--config", path])
    for name, content in (("no sections", "ArrayHeight = 8\n"), ("empty", ""), ("binary", None)):
        path = tmp / f"config_{name.replace(' ', '_')}.cfg"
        if content is None:
            path.write_bytes(os.urandom(200))
        else:
            path.write_text(content)
        cases.append(["cost", "--topology", ROOT / "examples" / "layers.csv", "--config", path])
    layers, cfg = ROOT / "examples" / "layers.csv", ROOT / "examples" / "scalesim.cfg"
    tiny = tmp / "config_tiny_sram.cfg"  # a positive size below one word
    tiny.write_text(text.replace(next(l for l in text.splitlines() if l.startswith("IfmapSramSzkB =")),
                                 "IfmapSramSzkB = 0.0001"))
    cases += [["cost", "--topology", layers, "--config", tiny],
              ["cost", "--topology", layers, "--config", cfg, "--memory", "scalesim"],
              ["cost", "--topology", layers, "--config", cfg, "--memory", "scalesim_user", "--compute-only"],
              ["cost", "--topology", layers, "--config", cfg, "--memory", "operand_buffers", "--dataflow", "flex"]]
    return cases


def accelerator_cases(tmp: Path) -> list[list[str]]:
    from cost_models import Accelerator

    base = Accelerator().to_dict()
    cases = []
    for field in ("rows", "cols", "rf_bytes", "gb_bytes", "dram_bw", "dram_latency", "clock_mhz", "mac_bits",
                  "simd_lanes", "dataflow", "zero_skip", "energy_table", "flex_set"):
        for value in BAD_JSON_VALUES:
            if field in ("dram_latency", "simd_lanes") and value == 0 or field == "zero_skip" and value is True:
                continue  # allowed values
            if field in ("dram_bw", "clock_mhz", "dram_latency") and value in (1.5, 3e9):
                continue  # within their range
            path = tmp / f"accelerator_{field}_{len(cases)}.json"
            path.write_text(json.dumps({**base, field: value}))
            cases.append(["cost", "--topology", ROOT / "examples" / "layers.csv", "--accelerator", path])
    for name, content in (("array", "[1, 2]"), ("unknown field", json.dumps({**base, "speed": 1})),
                          ("not json", "{rows: 8"), ("empty", "")):
        path = tmp / f"accelerator_{name.replace(' ', '_')}.json"
        path.write_text(content)
        cases.append(["cost", "--topology", ROOT / "examples" / "layers.csv", "--accelerator", path])
    return cases


def network_cases(tmp: Path) -> list[list[str]]:
    base = json.loads((ROOT / "examples" / "network.json").read_text())
    cases = []

    def write(data, name):
        path = tmp / f"network_{name}_{len(cases)}.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        cases.append(["network", path])

    for field in ("stem", "stages", "head", "resolution", "in_channels", "num_classes", "width_multiplier"):
        if field in ("stem", "stages"):  # the others have defaults
            write({k: v for k, v in base.items() if k != field}, f"missing_{field}")
        for value in (None, -1, "abc", [1], 0, 1e12):
            write({**base, field: value}, f"{field}")
    for field in ("kernel", "stride", "width", "pool"):
        for value in (None, -1, "abc", 0):
            write({**base, "stem": {**base["stem"], field: value}}, f"stem_{field}")
    for field in ("block", "depth", "width", "kernel", "stride", "expansion", "groups"):
        for value in (None, -1, "abc", 0):
            stages = [dict(base["stages"][0], **{field: value})] + base["stages"][1:]
            write({**base, "stages": stages}, f"stage_{field}")
    write({**base, "extra": 1}, "unknown")
    write("[1, 2]", "array")
    write("{", "not_json")
    cases += [["network", "nonet"]] + [["network", "squeezenet_v1_0", "--resolution", v] for v in ("0", "-3", "abc")]
    cases.append(["network", tmp / "missing.json"])
    return cases


EXPERIMENT = """import codesign
from search_spaces.accelerators import AcceleratorSpace
experiment = codesign.Experiment(name="bad", dataset="synthetic", proxy=codesign.ZeroCostProxy("params"),
    trials=1, run_folder={folder!r}, accelerator_space=AcceleratorSpace(rows=(8,), cols=(8,)), {field})
"""


def experiment_cases(tmp: Path) -> list[list[str]]:
    fields = {
        "sampler": ("5", "'bayes'", "None"), "timeout": ("'abc'", "-1", "0", "float('inf')"),
        "seed": ("'a'", "-1", "1.5", "2**40"), "trials": ("0", "-5", "1.5", "'10'"),
        "name": ("'..'", "'.'", "'a/b'", "''", "5"), "storage": ("'study.db'", "5"),
        "mode": ("'both'",), "tie_break": ("'speed'",), "nested_accelerators": ("0", "-1", "'all'"),
        "objectives": ("()", "('speed',)", "('latency', 'up')", "('latency', 'latency')"),
        "constraints": ("[codesign.Constraint('area', max=0.1), codesign.Constraint('area', min=10)]",
                        "[codesign.Constraint('area', max=0)]", "[5]", "[{'metric': 'speed', 'max': 1}]"),
        "dataset": ("'nope'", "'missing.npz'", "5"), "network_space": ("'fire'", "None"),
        "accelerator_space": ("{'rows': [8]}",), "compression_space": ("'none'",),
        "proxy": ("'synflow'", "codesign.TrainedProxy(codesign.TrainConfig(learning_rate=float('inf')))",
                  "codesign.TrainedProxy(codesign.TrainConfig(epochs=float('inf')))",
                  "codesign.ZeroCostProxy('magic')"),
        "cpus_per_trial": ("0", "-1", "float('nan')"), "memory_per_trial": ("1.5", "0"),
        "max_retries": ("-1",), "save_weights": ("'yes'",), "run_folder": ("5",), "nmae": ("'x'",),
        "pruner": ("'median'",),
    }
    cases = []
    for field, values in fields.items():
        for value in values:
            path = tmp / f"experiment_{field}_{len(cases)}.py"
            folder = str(tmp / "runs" / f"r{len(cases)}")
            path.write_text(EXPERIMENT.format(folder=folder, field=f"{field}={value}"))
            cases.append(["run", path])
    (tmp / "a_file").write_text("")
    path = tmp / "experiment_folder_is_file.py"
    path.write_text(EXPERIMENT.format(folder=str(tmp / "a_file"), field="seed=0"))
    cases.append(["run", path])
    for name, content in (("syntax", "experiment = codesign.Experiment(\n"), ("none", "x = 1\n"),
                          ("raises", "raise RuntimeError('mine')\n")):
        path = tmp / f"experiment_{name}.py"
        path.write_text("import codesign\n" + content)
        cases.append(["run", path])
    cases += [["run", tmp / "missing.py"], ["run", path, "--trials", "0"]]
    return cases


def results_cases(tmp: Path) -> list[list[str]]:
    (tmp / "r_empty").mkdir()
    (tmp / "r_empty" / "study.db").write_bytes(b"")
    (tmp / "r_garbage").mkdir()
    (tmp / "r_garbage" / "study.db").write_bytes(os.urandom(4096))
    (tmp / "r_journal").mkdir()
    (tmp / "r_journal" / "study.log").write_text("not json\n")
    (tmp / "r_record").mkdir()
    (tmp / "r_record" / "study.json").write_text("[1]")
    (tmp / "r_none").mkdir()
    cases = []
    for command in ("show", "trials", "plot", "finalize"):
        for folder in ("r_empty", "r_garbage", "r_journal", "r_record", "r_none", "r_missing"):
            cases.append([command, tmp / folder])
        cases.append([command, "--storage", f"sqlite:///{tmp / 'missing.db'}"])
        cases.append([command, "--storage", "nonsense"])
    cases += [["export", tmp / "r_empty", "--trial", "0"], ["export", tmp / "r_none", "--trial", "x"]]
    return cases


def sweep_cases(tmp: Path) -> list[list[str]]:
    (tmp / "space.json").write_text(json.dumps({"rows": [0]}))
    (tmp / "a_file").write_text("")
    return [["sweep", "squeezenet_v1_0", "--max", bound] for bound in ("area", "area<=x", "speed<=1", "area>=1")] + [
        ["sweep", "squeezenet_v1_0", "--limit", "0"], ["sweep", "squeezenet_v1_0", "--space", tmp / "space.json"],
        ["sweep", "squeezenet_v1_0", "--space", tmp / "missing.json"], ["sweep", "squeezenet_v1_0", "--objectives",
                                                                         "speed"],
        ["sweep", "squeezenet_v1_0", "--limit", "2", "--out", tmp / "a_file"], ["sweep", "nonet"]]


def run_cli(argv) -> tuple[bool, str]:
    from codesign.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code
        except BaseException as error:  # noqa: BLE001 - an escaped exception is what we count
            return False, f"escaped {type(error).__name__}: {error}"
    lines = err.getvalue().strip().splitlines()
    clear = code == 2 and len(lines) == 1 and lines[0].startswith("codesign: error: ") and "Traceback" not in err.getvalue()
    return clear, f"exit {code}: {' | '.join(lines)[:300]}"


def python_cases() -> list:
    import numpy as np

    import codesign
    from cost_models import Accelerator, Layer

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8, 8)), np.arange(40) % 4
    arrays = {
        "NaN pixel": (np.where(np.arange(40 * 64).reshape(40, 8, 8) == 5, np.nan, x), y),
        "Inf pixel": (np.where(np.arange(40 * 64).reshape(40, 8, 8) == 5, np.inf, x), y),
        "label 1000": (x, np.where(np.arange(40) == 3, 1000, y)), "negative label": (x, y - 1),
        "float labels": (x, y + 0.5), "one class": (x, np.zeros(40, int)), "one sample": (x[:1], y[:1]),
        "zero channels": (np.zeros((40, 8, 8, 0)), y), "2-D images": (np.zeros((40, 64)), y),
        "length mismatch": (x, y[:30]), "not square": (np.zeros((40, 8, 6)), y), "strings": (x.astype(str), y),
    }
    cases = [(f"from_arrays: {name}", lambda a=a: codesign.from_arrays(a[0], a[1], x[:10], y[:10]))
             for name, a in arrays.items()]
    for field in ("rows", "cols", "gb_bytes", "clock_mhz", "dram_bw", "mac_bits"):
        for value in (0, -1, 1e12, float("nan"), "8", None):
            cases.append((f"Accelerator({field}={value!r})", lambda f=field, v=value: Accelerator(**{f: v})))
    for field in ("C", "K", "H", "W", "R", "stride"):
        for value in (0, -1, 10 ** 7, 2.5, None):
            kwargs = dict(name="l", kind="conv", C=8, K=8, H=8, W=8, R=3, S=3)
            cases.append((f"Layer({field}={value!r})", lambda k=kwargs, f=field, v=value: Layer(**{**k, f: v})))
    from cost_models import OperandMemories, evaluate, scalesim_user_cycles
    from cost_models.workload import Workload, conv

    good = dict(ifmap_words=1024, filter_words=1024, ofmap_words=1024, ifmap_bw=2, filter_bw=2, ofmap_bw=2)
    for field in good:
        for value in (0, -1, float("nan"), float("inf"), "8", None):
            cases.append((f"OperandMemories({field}={value!r})",
                          lambda f=field, v=value: OperandMemories(**{**good, f: v})))
    net, systolic = Workload((conv("c", 8, 8, 8, R=3),)), Accelerator(dataflow="ws_systolic")
    cases += [
        ("evaluate(memory='scalesim')", lambda: evaluate(net, systolic, memory="scalesim")),
        ("evaluate(memory='scalesim_user', compute_only=True)",
         lambda: evaluate(net, systolic, memory="scalesim_user", compute_only=True)),
        ("evaluate(memory='scalesim_user') on flex", lambda: evaluate(net, Accelerator(), memory="scalesim_user")),
        ("evaluate(memories=...) without a memory mode",
         lambda: evaluate(net, systolic, memories=OperandMemories(**good))),
        ("scalesim_user_cycles(filter_bw=2.5)", lambda: scalesim_user_cycles(
            8, 8, 3, 3, 4, 4, 1, 4, 4, "os", OperandMemories(**{**good, "filter_bw": 2.5}))),
        ("scalesim_user_cycles(dataflow='rs')", lambda: scalesim_user_cycles(
            8, 8, 3, 3, 4, 4, 1, 4, 4, "rs", OperandMemories(**good))),
    ]
    for source in ("nope", "/no/such/file.npz", ""):
        cases.append((f"load_dataset({source!r})", lambda s=source: codesign.load_dataset(s)))
    return cases


def run_python(call) -> tuple[bool, str]:
    try:
        call()
    except (ValueError, FileNotFoundError) as error:
        return bool(str(error)), f"{type(error).__name__}: {str(error)[:300]}"
    except BaseException as error:  # noqa: BLE001
        return False, f"escaped {type(error).__name__}: {error}"
    return False, "accepted"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every case and its message")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    groups = {"codesign cost --topology (topology CSV)": topology_cases(tmp),
              "codesign cost --config (SCALE-Sim cfg)": config_cases(tmp),
              "codesign cost --accelerator (accelerator JSON)": accelerator_cases(tmp),
              "codesign network (network spec JSON, names, options)": network_cases(tmp),
              "codesign run (experiment files)": experiment_cases(tmp),
              "codesign show/trials/plot/finalize/export (run folders, storages)": results_cases(tmp),
              "codesign sweep (options, space files)": sweep_cases(tmp)}
    table, unclear = {}, defaultdict(list)
    for group, cases in groups.items():
        clear = 0
        for argv in cases:
            ok, said = run_cli(argv)
            clear += ok
            if args.list or not ok:
                (unclear[group] if not ok else unclear["ok"]).append(f"{' '.join(map(str, argv))}\n    {said}")
        table[group] = (len(cases), clear)
    clear = 0
    cases = python_cases()
    for name, call in cases:
        ok, said = run_python(call)
        clear += ok
        if args.list or not ok:
            (unclear["Python API"] if not ok else unclear["ok"]).append(f"{name}\n    {said}")
    table["Python API (Experiment, datasets, Accelerator, Layer)"] = (len(cases), clear)
    width = max(map(len, table))
    print(f"{'entry point':<{width}} {'tried':>6} {'clear':>6}")
    print("-" * (width + 14))
    for group, (tried, ok) in table.items():
        print(f"{group:<{width}} {tried:>6} {ok:>6}")
    total = sum(t for t, _ in table.values()), sum(c for _, c in table.values())
    print(f"{'all':<{width}} {total[0]:>6} {total[1]:>6}")
    for group, lines in unclear.items():
        if group != "ok":
            print(f"\nnot clear: {group}")
            print("\n".join(lines))
    if args.list:
        print("\nclear:")
        print("\n".join(unclear["ok"]))
    return {"table": table}


if __name__ == "__main__":
    main()
