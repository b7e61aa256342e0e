"""The ``codesign`` command line.

``codesign network NAME|SPEC.json [--resolution R] [--json]``: per-layer summary of a network.

``codesign cost --topology T.csv [--config C.cfg | --accelerator A.json] [--dataflow D]
[--compute-only] [--json]``: the analytical cost model on a SCALE-Sim topology.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cost_models import ALL_DATAFLOW_NAMES, Accelerator, describe, evaluate
from cost_models.scalesim import FormatError, read_config, read_topology


def _cost(args) -> int:
    workload = read_topology(args.topology)
    calc_bandwidth = False
    if args.config and args.accelerator:
        raise ValueError("give either --config or --accelerator, not both")
    if args.config:
        config = read_config(args.config)
        accelerator, calc_bandwidth = config.accelerator, config.calc_bandwidth
    elif args.accelerator:
        with open(args.accelerator) as handle:
            accelerator = Accelerator.from_json(handle.read())
    else:
        accelerator = Accelerator(mac_bits=8, dataflow="os_systolic")
    if args.dataflow:
        accelerator = accelerator.replace(dataflow=args.dataflow)
    report = evaluate(workload, accelerator, compute_only=args.compute_only or calc_bandwidth)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{accelerator.rows}x{accelerator.cols} PEs, {describe(accelerator.dataflow)}, "
              f"buffer {accelerator.gb_bytes / 1024:g} KiB, DRAM {accelerator.dram_bw:g} B/cycle"
              + (" (compute only)" if report.compute_only else ""))
        print(report.table())
    return 0


def _load_network(source: str):
    from search_spaces.networks import NetworkSpec
    from search_spaces.reference import REFERENCE_NETWORKS, reference_network

    if source in REFERENCE_NETWORKS:
        return reference_network(source)
    path = Path(source)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"network spec file not found: {path}")
        return NetworkSpec.from_json(path.read_text())
    raise ValueError(f"unknown network {source!r}: give a reference name ({', '.join(REFERENCE_NETWORKS)}) "
                     f"or a NetworkSpec JSON file")


def _network(args) -> int:
    from search_spaces.networks import layer_table

    spec = _load_network(args.network)
    if args.resolution:
        spec = spec.at_resolution(args.resolution)
    rows = layer_table(spec)
    layers = [{
        "name": r.layer.name, "kind": r.layer.kind, "input": list(r.in_shape), "output": list(r.out_shape),
        "kernel": [r.layer.R, r.layer.S], "stride": r.layer.stride, "groups": r.layer.groups,
        "macs": r.layer.macs, "params": r.params,
    } for r in rows]
    total = {"layers": len(layers), "macs": sum(l["macs"] for l in layers),
             "params": sum(l["params"] for l in layers), "resolution": spec.resolution}
    if args.json:
        print(json.dumps({"network": spec.name, "layers": layers, "total": total}, indent=1))
        return 0
    head = f"{'name':<22}{'kind':<10}{'input':>16}{'output':>16}{'kernel':>8}{'stride':>7}{'MACs':>15}{'params':>12}"
    print(f"{spec.name} at {spec.resolution}x{spec.resolution}")
    print(head)
    print("-" * len(head))
    for l in layers:
        shape = lambda s: "x".join(map(str, s))
        print(f"{l['name']:<22.22}{l['kind']:<10}{shape(l['input']):>16}{shape(l['output']):>16}"
              f"{shape(l['kernel']):>8}{l['stride']:>7}{l['macs']:>15,}{l['params']:>12,}")
    print("-" * len(head))
    print(f"{'total':<79}{total['macs']:>15,}{total['params']:>12,}")
    return 0


def _load_experiment(path: str):
    import runpy

    from codesign.experiment import Experiment

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no experiment file {path}; it must be a Python file that defines `experiment`")
    namespace = runpy.run_path(str(file), run_name="codesign_experiment")
    experiment = namespace.get("experiment")
    if not isinstance(experiment, Experiment):
        raise ValueError(f"{path} must define `experiment = codesign.Experiment(...)`, found {type(experiment).__name__}")
    return experiment


def _run(args) -> int:
    import dataclasses

    from codesign.search import run

    experiment = _load_experiment(args.experiment)
    if args.trials is not None:
        experiment = dataclasses.replace(experiment, trials=args.trials)  # validated again
    results = run(experiment, address=args.address, progress=not args.no_progress)
    print(results.table())
    print(f"run folder: {experiment.folder}")
    return 0


def _results(args):
    from codesign.results import load

    return load(args.run, storage=args.storage, study_name=args.study)


def _show(args) -> int:
    results = _results(args)
    if args.json:
        print(json.dumps([d.summary() for d in results.pareto_front], indent=2))
    else:
        print(results.table())
    return 0


def _trials(args) -> int:
    results = _results(args)
    if args.json:
        print(json.dumps(results.trial_rows(), indent=2))
    else:
        print(results.trials_table())
    return 0


def _finalize(args) -> int:
    from codesign.finalize import finals_table

    results = _results(args)
    if args.epochs is not None and not args.epochs > 0:
        raise ValueError(f"finalize: --epochs must be > 0, got {args.epochs}")
    say = lambda final: print(f"trial {final.trial}: {final.status}, test accuracy "
                              f"{'-' if final.test_accuracy is None else format(final.test_accuracy, '.4f')} "
                              f"({final.seconds:.0f} s)", file=sys.stderr)
    finals = results.finalize(args.top, epochs=args.epochs, dataset=args.dataset, progress=say)
    print(finals_table(finals))
    return 0


def _plot(args) -> int:
    from codesign.plots import plot_run, plot_trial

    results = _results(args)
    if not results.designs:
        raise ValueError(f"nothing to plot: no trial of {results.study.study_name!r} completed ({results.counts()}); "
                         f"`codesign trials` lists each trial's reason")
    out = Path(args.out or Path(args.run or ".") / "plots")
    if args.hardware_front and args.trial is None:
        front = results.pareto_front
        if not front:
            raise ValueError("no design on the Pareto front (no feasible trial); give --trial N")
        args.trial = front[0].number
    if args.trial is not None:
        paths = plot_trial(results, args.trial, out, hardware_front_only=args.hardware_front)
    else:
        paths = plot_run(results, out)
    for path in paths:
        print(path)
    return 0


def _export(args) -> int:
    from cost_models.scalesim import export_files
    from cost_models.version import COST_MODEL_VERSION

    design = _results(args).design(args.trial)
    out = Path(args.out or f"trial{args.trial}")
    out.mkdir(parents=True, exist_ok=True)
    if args.format == "json":
        files = {"network.json": design.network.to_json(), "accelerator.json": design.accelerator.to_json(),
                 "compression.json": "null" if design.compression is None else design.compression.to_json(),
                 "metrics.json": json.dumps(design.metrics, sort_keys=True),
                 "cost_report.json": json.dumps({"cost_model_version": design.cost_model_version,
                                                  **design.cost_report().to_dict()})}
    else:  # topology.csv + accelerator.cfg (or accelerator.json) give the design's numbers back exactly
        total = design.cost_report().total
        stored = (f"Stored for trial {args.trial} (cost model v{design.cost_model_version or '?'}; this export is "
                  f"read by v{COST_MODEL_VERSION}): latency {total['latency_s'] * 1e3:.6g} ms, "
                  f"energy {total['energy_pj'] / 1e6:.6g} uJ, area {total['area_mm2']:.6g} mm^2.\n")
        files = export_files(design.network.workload(compression=design.compression), design.accelerator, stored)
    for name, text in files.items():
        (out / name).write_text(text)
        print(out / name)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codesign")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codesign", description="Hardware-aware NAS and accelerator co-design: "
                                     "the cost model, reference networks, and searches (run, show, plot, export).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    cost = commands.add_parser("cost", help="evaluate a SCALE-Sim topology with the analytical cost model")
    cost.add_argument("--topology", required=True, help="SCALE-Sim topology CSV")
    cost.add_argument("--config", help="SCALE-Sim .cfg (array, SRAMs, dataflow, bandwidth; "
                      "the exact accelerator if it has the [codesign] section `codesign export` writes)")
    cost.add_argument("--accelerator", metavar="FILE.json",
                      help="accelerator spec as JSON (Accelerator.to_json, e.g. an export's accelerator.json)")
    cost.add_argument("--dataflow", choices=ALL_DATAFLOW_NAMES, help="override the dataflow")
    cost.add_argument("--compute-only", action="store_true", help="ignore memory (no stalls)")
    cost.add_argument("--json", action="store_true", help="print one JSON object {layers, total}")
    cost.set_defaults(handler=_cost)
    network = commands.add_parser("network", help="per-layer summary of a reference network or a NetworkSpec JSON")
    network.add_argument("network", help="reference name (e.g. squeezenet_v1_0) or SPEC.json")
    network.add_argument("--resolution", type=int, help="input resolution (default: the spec's)")
    network.add_argument("--json", action="store_true", help='print {"layers": [...], "total": {...}}')
    network.set_defaults(handler=_network)

    run = commands.add_parser("run", help="run (or resume) the search an EXPERIMENT.py file defines as `experiment`")
    run.add_argument("experiment", help="a Python file defining `experiment = codesign.Experiment(...)`")
    run.add_argument("--address", help="a Ray cluster HOST:PORT (default: RAY_ADDRESS or a local Ray)")
    run.add_argument("--trials", type=int, help="override the trial budget")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    def results_parser(name, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("run", nargs="?", help="the run folder (holding study.log or study.db, and artifacts/)")
        sub.add_argument("--storage", help="an Optuna storage URL instead of the run folder's own study")
        sub.add_argument("--study", help="the study name (when the storage holds several)")
        return sub

    show = results_parser("show", "the Pareto front of a run, and why other trials did not complete")
    show.add_argument("--json", action="store_true", help="the front's designs: trial, metrics and specs")
    show.set_defaults(handler=_show)
    trials = results_parser("trials", "every trial of a run: status, metrics, reason")
    trials.add_argument("--json", action="store_true")
    trials.set_defaults(handler=_trials)
    finalize = results_parser("finalize", "retrain the Pareto front at full fidelity and measure its test accuracy")
    finalize.add_argument("--top", type=int, help="the front's first K designs (default: all)")
    finalize.add_argument("--epochs", type=float, default=10.0, help="training epochs (default: 10)")
    finalize.add_argument("--dataset", help="the dataset, when the run folder's record of it does not find it")
    finalize.set_defaults(handler=_finalize)
    plot = results_parser("plot", "Pareto plot, hypervolume history, per-layer plot and (nested mode) the hardware "
                                  "front (PNG)")
    plot.add_argument("--trial", type=int, help="the design for the per-layer plot and the hardware front "
                      "(default: first on the front)")
    plot.add_argument("--hardware-front", action="store_true", help="only the hardware Pareto front of --trial "
                      "(nested mode; default trial: first on the front)")
    plot.add_argument("--out", help="output folder (default: RUN/plots)")
    plot.set_defaults(handler=_plot)
    export = results_parser("export", "a design's specs (json), or SCALE-Sim topology + cfg that "
                            "`codesign cost` reads back as the design (scalesim)")
    export.add_argument("--trial", type=int, required=True)
    export.add_argument("--format", choices=("json", "scalesim"), default="json")
    export.add_argument("--out", help="output folder (default: ./trialN)")
    export.set_defaults(handler=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FormatError, ValueError, FileNotFoundError) as error:
        print(f"codesign: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
