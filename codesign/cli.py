"""The ``codesign`` command line.

``codesign network NAME|SPEC.json|MODEL.onnx [--resolution R] [--skip-unsupported] [--json]``:
per-layer summary of a network.

``codesign cost (--topology T.csv | --onnx MODEL.onnx [--skip-unsupported]) [--config C.cfg |
--accelerator A.json] [--dataflow D] [--energy TABLE] [--dram-type T] [--compute-only] [--json]``: the analytical cost
model on a SCALE-Sim topology or an ONNX model; ``--energy`` prices it by a built-in table or a file
(codesign's per-level energies or an Accelergy ERT).
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import traceback
from pathlib import Path

from cost_models.accelerator import Accelerator
from cost_models.dataflows import ALL_DATAFLOW_NAMES, describe
from cost_models.energy import DRAM_PJ_PER_BIT, ENERGY_TABLES
from cost_models.scalesim import FormatError, read_config, read_topology
from cost_models.scalesim_memory import MEMORY_MODES


def _cost(args) -> int:
    from cost_models.evaluation import evaluate

    skipped = ""
    if args.onnx:
        from cost_models.onnx_import import import_onnx

        imported = import_onnx(args.onnx, skip_unsupported=args.skip_unsupported)
        workload, skipped = imported.workload, imported.summary()
    elif args.skip_unsupported:
        raise ValueError("--skip-unsupported applies to --onnx models only")
    else:
        workload = read_topology(args.topology)
    calc_bandwidth, memories = False, None
    if args.config and args.accelerator:
        raise ValueError("give either --config or --accelerator, not both")
    if args.config:
        config = read_config(args.config)
        accelerator, calc_bandwidth = config.accelerator, config.calc_bandwidth
        # A plain SCALE-Sim cfg in USER mode is timed as SCALE-Sim times it; an exported one (its [codesign]
        # section) gives back the design's own numbers.
        memories = config.memories
        systolic = (args.dataflow or config.accelerator.dataflow).endswith("_systolic")
        memory = args.memory or ("scalesim_user" if systolic and not calc_bandwidth and not config.exact
                                 else "global_buffer")
    elif args.accelerator:
        accelerator = Accelerator.from_file(args.accelerator)
        memory = args.memory or "global_buffer"
    else:
        accelerator = Accelerator(mac_bits=8, dataflow="os_systolic")
        memory = args.memory or "global_buffer"
    if args.dataflow:
        accelerator = accelerator.replace(dataflow=args.dataflow)
    if args.energy:
        accelerator = accelerator.replace(energy_table=args.energy)
    if args.dram_type:
        accelerator = accelerator.replace(dram_type=args.dram_type)
    compute_only = args.compute_only or calc_bandwidth
    if compute_only and memory != "global_buffer":
        if args.memory:
            raise ValueError(f"--memory {memory} times the memory system, which "
                             f"{'--compute-only' if args.compute_only else 'a CALC-mode cfg'} leaves out")
        memory = "global_buffer"
    report = evaluate(workload, accelerator, compute_only=compute_only, memory=memory,
                      memories=memories if memory != "global_buffer" else None)
    if args.json:
        data = report.to_dict()
        if args.onnx:
            data["skipped"] = imported.skipped_counts
        print(json.dumps(data, indent=1))
    else:
        if memory == "global_buffer":
            memory_text = f"buffer {accelerator.gb_bytes / 1024:g} KiB, DRAM {accelerator.dram_bw:g} B/cycle"
        else:
            m = report.memories
            memory_text = (f"SRAMs ifmap/filter/ofmap {m.ifmap_words / 1024:g}/{m.filter_words / 1024:g}/"
                           f"{m.ofmap_words / 1024:g} Ki-words, DRAM {m.ifmap_bw:g}/{m.filter_bw:g}/{m.ofmap_bw:g} "
                           f"words/cycle")
        print(f"{accelerator.rows}x{accelerator.cols} PEs, {describe(accelerator.dataflow)}, {memory_text}"
              + (" (compute only)" if report.compute_only else ""))
        print(report.table())
        if skipped:
            print(skipped)
    return 0


def _load_network(source: str, resolution: int | None = None, skip_unsupported: bool = False):
    """A NetworkSpec (reference name or JSON file, at ``resolution`` if given), or the ImportReport of an ONNX
    model (``.onnx``); a ValueError for an option that does not apply to it."""
    from search_spaces.networks import NetworkSpec
    from search_spaces.reference import REFERENCE_NETWORKS, reference_network

    path = Path(source)
    if source not in REFERENCE_NETWORKS and path.suffix.lower() == ".onnx":
        from cost_models.onnx_import import import_onnx

        if resolution:
            raise ValueError(f"{source}: an ONNX model's input size is fixed by the model; drop --resolution")
        return import_onnx(path, skip_unsupported=skip_unsupported)
    if skip_unsupported:
        raise ValueError("--skip-unsupported applies to ONNX models only")
    if source in REFERENCE_NETWORKS:
        spec = reference_network(source)
    elif path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"network spec file not found: {path}")
        spec = NetworkSpec.from_file(path)
    else:
        raise ValueError(f"unknown network {source!r}: give a reference name ({', '.join(REFERENCE_NETWORKS)}) "
                         f"or a NetworkSpec JSON file, or an ONNX model (.onnx)")
    return spec.at_resolution(resolution) if resolution else spec


def _layer_summary(layer, in_shape, out_shape, params: int) -> dict:
    return {"name": layer.name, "kind": layer.kind, "input": list(in_shape), "output": list(out_shape),
            "kernel": [layer.R, layer.S], "stride": layer.stride, "groups": layer.groups,
            "macs": layer.macs, "params": params}


def _dataset(args) -> int:
    from codesign.accuracy.datasets import load_dataset

    data = load_dataset(args.dataset, seed=args.seed)
    print(data.summary())
    print(data.spec)
    return 0


def _network(args) -> int:
    from cost_models.onnx_import import ImportReport
    from search_spaces.networks import layer_table

    loaded = _load_network(args.network, args.resolution, args.skip_unsupported)
    skipped = ""
    if isinstance(loaded, ImportReport):
        # params: weights only (an ONNX model's biases and batch norms are folded away)
        layers = [_layer_summary(l, (l.C, l.H, l.W), (l.K, l.P, l.Q), l.params) for l in loaded.workload]
        name, skipped = loaded.workload.name, loaded.summary()
        first = loaded.workload.layers[0]
        total = {"layers": len(layers), "macs": sum(l["macs"] for l in layers),
                 "params": sum(l["params"] for l in layers), "skipped": loaded.skipped_counts}
        title = f"{name} (ONNX {loaded.source}; first layer input {first.C}x{first.H}x{first.W}, params: weights only)"
    else:
        spec = loaded
        layers = [_layer_summary(r.layer, r.in_shape, r.out_shape, r.params) for r in layer_table(spec)]
        name, title = spec.name, f"{spec.name} at {spec.resolution}x{spec.resolution}"
        total = {"layers": len(layers), "macs": sum(l["macs"] for l in layers),
                 "params": sum(l["params"] for l in layers), "resolution": spec.resolution}
    if args.json:
        print(json.dumps({"network": name, "layers": layers, "total": total}, indent=1))
        return 0
    from cost_models.text import column_width, fit

    width = column_width((l["name"] for l in layers), 22)
    head = (f"{fit('name', width)}{'kind':<10}{'input':>16}{'output':>16}{'kernel':>8}{'stride':>7}{'MACs':>15}"
            f"{'params':>12}")
    print(title)
    print(head)
    print("-" * len(head))
    for l in layers:
        shape = lambda s: "x".join(map(str, s))
        print(f"{fit(l['name'], width)}{l['kind']:<10}{shape(l['input']):>16}{shape(l['output']):>16}"
              f"{shape(l['kernel']):>8}{l['stride']:>7}{l['macs']:>15,}{l['params']:>12,}")
    print("-" * len(head))
    print(f"{'total':<{width + 57}}{total['macs']:>15,}{total['params']:>12,}")
    if skipped:
        print(skipped)
    return 0


def _load_workload(source: str, resolution: int | None, skip_unsupported: bool):
    """A network's workload and what its import skipped: a reference name, a spec JSON, an ONNX model or a
    SCALE-Sim topology CSV."""
    from cost_models.onnx_import import ImportReport

    if source.lower().endswith(".csv"):
        return read_topology(source), ""
    loaded = _load_network(source, resolution, skip_unsupported)
    if isinstance(loaded, ImportReport):
        return loaded.workload, loaded.summary()
    return loaded.workload(), ""


def _sweep(args) -> int:
    from codesign.sweep import parse_bound, sweep, to_json
    from search_spaces.accelerators import DEFAULT_ACCELERATOR_SPACE, AcceleratorSpace

    out = _output_folder(args.out) if args.out else None  # before the sweep's work
    workload, skipped = _load_workload(args.network, args.resolution, args.skip_unsupported)
    space = DEFAULT_ACCELERATOR_SPACE
    if args.space:
        path = Path(args.space)
        if not path.is_file():
            raise FileNotFoundError(f"accelerator space file not found: {path}")
        space = AcceleratorSpace.from_file(path)
    result = sweep(workload, space, tuple(args.objectives), [parse_bound(b) for b in args.max or ()], args.limit,
                   args.tie_break)
    print(to_json(result) if args.json else result.table())
    if skipped:
        print(skipped, file=sys.stderr if args.json else sys.stdout)
    if out is not None:
        from codesign.results.plots import plot_sweep

        (out / "front.json").write_text(to_json(result))
        for path in (out / "front.json", plot_sweep(result, out / "hardware_front.png")):
            print(path, file=sys.stderr if args.json else sys.stdout)
    return 0


def _load_experiment(path: str):
    import dataclasses
    import runpy

    from codesign.experiment import Experiment

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no experiment file {path}; it must be a Python file that defines `experiment`")
    try:
        namespace = runpy.run_path(str(file), run_name="codesign_experiment")
    except SyntaxError as error:
        raise ValueError(f"{path}, line {error.lineno}: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 - the user's file: say where in it, not in codesign
        said = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        if isinstance(error, TypeError) and "Experiment.__init__()" in said:
            said += f"; Experiment's fields: {', '.join(f.name for f in dataclasses.fields(Experiment))}"
        raise ValueError(f"{path}, line {_line_in(error, file)}: {said}") from None
    experiment = namespace.get("experiment")
    if not isinstance(experiment, Experiment):
        raise ValueError(f"{path} must define `experiment = codesign.Experiment(...)`, found {type(experiment).__name__}")
    return experiment


def _line_in(error: BaseException, file: Path) -> int | str:
    """The line of ``file`` the error's traceback passes through last ('?' when it does not)."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == file.resolve()]
    return lines[-1] if lines else "?"


def _output_folder(path, option: str = "--out") -> Path:
    """``path`` as an output folder (created); a ValueError when it exists as a file."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run(args) -> int:
    import dataclasses

    from codesign.search import run

    experiment = _load_experiment(args.experiment)
    overrides = {field: getattr(args, field) for field in ("trials", "storage", "artifacts", "run_folder")
                 if getattr(args, field) is not None}
    if overrides:
        experiment = dataclasses.replace(experiment, **overrides)  # validated again
    results = run(experiment, address=args.address, progress=not args.no_progress, verbose=args.verbose)
    print(results.table())
    print(f"run folder: {experiment.run_location}")
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
    from codesign.results.finalize import finals_table

    results = _results(args)  # a bad --epochs is TrainConfig's error, raised before any training
    say = lambda final: print(f"trial {final.trial}: {final.status}, test accuracy "
                              f"{'-' if final.test_accuracy is None else format(final.test_accuracy, '.4f')} "
                              f"({final.seconds:.0f} s)", file=sys.stderr)
    finals = results.finalize(args.top, epochs=args.epochs, dataset=args.dataset, progress=say, spread=args.spread)
    print(finals_table(finals))
    return 0


def _first_on_front(results):
    """The design a command takes when no ``--trial`` is given: the first on the Pareto front (`codesign show`'s)."""
    front = results.pareto_front
    if not front:
        raise ValueError("no design on the Pareto front (no feasible trial); give --trial N")
    return front[0]


def _plot(args) -> int:
    from codesign.results.plots import plot_run, plot_trial
    from codesign.stores import is_url

    results = _results(args)
    if not results.designs:
        raise ValueError(f"nothing to plot: no trial of {results.study.study_name!r} completed ({results.counts()}); "
                         f"`codesign trials` lists each trial's reason")
    out = _output_folder(args.out or Path("." if args.run is None or is_url(args.run) else args.run) / "plots")
    if args.hardware_front and args.trial is None:
        args.trial = _first_on_front(results).number
    if args.trial is not None:
        paths = plot_trial(results, args.trial, out, hardware_front_only=args.hardware_front)
    else:
        paths = plot_run(results, out)
    for path in paths:
        print(path)
    return 0


def _export(args) -> int:
    from codesign.results.export import write_design

    results = _results(args)
    if args.trial is None:
        design = _first_on_front(results)
        print(f"trial {design.number}: the first design on the Pareto front", file=sys.stderr)
    else:
        design = results.design(args.trial)
    for path in write_design(design, _output_folder(args.out or f"trial{design.number}"), args.format, args.layout,
                             args.weights):
        print(path)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codesign")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "(not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse with a usage mistake on one line, like every other error (exit code 2)."""

    def error(self, message):
        self.exit(2, f"codesign: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codesign", description="Hardware-aware NAS and accelerator co-design: "
                                     "the cost model, reference networks, and searches (run, show, plot, export).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = _Parser(add_help=False)  # --debug after the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], **kwargs)  # every command takes the common options
    cost = command("cost", help="evaluate a SCALE-Sim topology or an ONNX model with the analytical "
                               "cost model")
    model = cost.add_mutually_exclusive_group(required=True)
    model.add_argument("--topology", help="SCALE-Sim topology CSV")
    model.add_argument("--onnx", metavar="MODEL.onnx", help='an ONNX model (needs pip install -e ".[onnx]")')
    cost.add_argument("--skip-unsupported", action="store_true",
                      help="--onnx: leave out operators the cost model does not model (listed under the totals)")
    cost.add_argument("--config", help="SCALE-Sim .cfg (array, SRAMs, dataflow, bandwidth; "
                      "the exact accelerator if it has the [codesign] section `codesign export` writes)")
    cost.add_argument("--accelerator", metavar="FILE.json",
                      help="accelerator spec as JSON (Accelerator.to_json, e.g. an export's accelerator.json)")
    cost.add_argument("--dataflow", choices=ALL_DATAFLOW_NAMES, help="override the dataflow")
    cost.add_argument("--energy", metavar="TABLE",
                      help=f"price energy by a built-in table ({', '.join(ENERGY_TABLES)}) or a file: "
                           "codesign's per-level energies (.yaml/.json) or an Accelergy ERT.yaml with its "
                           "flattened_architecture.yaml beside it")
    cost.add_argument("--dram-type", choices=tuple(DRAM_PJ_PER_BIT),
                      help="price DRAM per bit by its type (Accelergy's CactiDRAM figures), whatever the table")
    cost.add_argument("--compute-only", action="store_true", help="ignore memory (no stalls)")
    cost.add_argument("--memory", choices=MEMORY_MODES,
                      help="how array layers' memory is timed: global_buffer (the default model), scalesim_user "
                           "(SCALE-Sim 3.0.0's USER mode, exactly; the default for a plain SCALE-Sim cfg in USER "
                           "mode), operand_buffers (the same SRAMs and channels, a controller that re-fetches only "
                           "what does not fit)")
    cost.add_argument("--json", action="store_true", help="print one JSON object {layers, total}")
    cost.set_defaults(handler=_cost)
    dataset = command("dataset", help="what a dataset holds as a search would read it: shape, classes, splits, "
                                      "normalisation")
    dataset.add_argument("dataset", help="digits, mnist, synthetic, an image folder (a subfolder of images per "
                         "class), a CIFAR-10 folder or an .npz")
    dataset.add_argument("--seed", type=int, default=0, help="the split's seed (default 0, an experiment's default)")
    dataset.set_defaults(handler=_dataset)
    network = command("network", help="per-layer summary of a reference network, a NetworkSpec JSON "
                                  "or an ONNX model")
    network.add_argument("network", help="reference name (e.g. squeezenet_v1_0), SPEC.json or MODEL.onnx")
    network.add_argument("--resolution", type=_positive_int, help="input resolution (default: the spec's; not for ONNX)")
    network.add_argument("--skip-unsupported", action="store_true",
                         help="ONNX: leave out operators the cost model does not model (listed under the totals)")
    network.add_argument("--json", action="store_true", help='print {"layers": [...], "total": {...}}')
    network.set_defaults(handler=_network)

    sweep = command("sweep", help="the hardware Pareto front of one fixed network over an accelerator "
                                              "space (no training)")
    sweep.add_argument("network", help="reference name, SPEC.json, MODEL.onnx or a SCALE-Sim topology .csv")
    sweep.add_argument("--resolution", type=_positive_int, help="input resolution of a reference network or spec")
    sweep.add_argument("--space", help="AcceleratorSpace JSON (AcceleratorSpace.to_json; default: the "
                                       "default space, 6,912 accelerators)")
    sweep.add_argument("--objectives", nargs="+", default=["latency", "energy"], metavar="METRIC",
                       help="hardware metrics to minimise (latency, energy, edp, area; default: latency energy)")
    sweep.add_argument("--max", action="append", metavar="METRIC<=VALUE", help="a bound, e.g. area<=2 (repeatable)")
    sweep.add_argument("--limit", type=_positive_int, help="sweep this many accelerators drawn from the space")
    sweep.add_argument("--tie-break", default="edp", help="the front's pick (default: edp)")
    sweep.add_argument("--skip-unsupported", action="store_true", help="ONNX: leave out operators the cost model "
                                                                       "does not model (they are listed)")
    sweep.add_argument("--out", help="folder for hardware_front.png and front.json")
    sweep.add_argument("--json", action="store_true", help="print the sweep as JSON")
    sweep.set_defaults(handler=_sweep)

    run = command("run", help="run (or resume) the search an EXPERIMENT.py file defines as `experiment`")
    run.add_argument("experiment", help="a Python file defining `experiment = codesign.Experiment(...)`")
    run.add_argument("--address", help="a Ray cluster HOST:PORT (default: RAY_ADDRESS or a local Ray)")
    run.add_argument("--trials", type=_positive_int, help="override the trial budget")
    run.add_argument("--storage", help="override the study's storage: an Optuna storage URL without a password "
                     "(postgresql://USER@HOST/DB; the password from PGPASSWORD or a password file)")
    run.add_argument("--artifacts", help="override where the artifacts go: a folder or an object store URL "
                     "(s3://bucket/prefix; credentials from the AWS environment or files)")
    run.add_argument("--run-folder", help="override the run folder: a path, or an object store URL "
                     "(s3://bucket/prefix, with --storage a database server's URL)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--verbose", action="store_true", help="show Ray's own log lines too (its info lines and "
                     "the workers' output)")
    run.set_defaults(handler=_run)

    def results_parser(name, help_text):
        sub = command(name, help=help_text)
        sub.add_argument("run", nargs="?", help="the run folder (holding study.log or study.db, and artifacts/), "
                         "or its object store URL (s3://bucket/prefix)")
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
    finalize.add_argument("--top", type=_positive_int, help="the front's first K designs (default: all)")
    finalize.add_argument("--spread", action="store_true",
                          help="with --top K: K designs evenly spaced along the front, both ends included")
    finalize.add_argument("--epochs", type=float, default=10.0, help="training epochs (default: 10)")
    finalize.add_argument("--dataset", help="the dataset, when the run folder's record of it does not find it")
    finalize.set_defaults(handler=_finalize)
    plot = results_parser("plot", "Pareto plot, hypervolume history, per-layer plot and (nested mode) the hardware "
                                  "front (PNG)")
    plot.add_argument("--trial", type=int, help="the design for the per-layer plot and the hardware front "
                      "(default: first on the front)")
    plot.add_argument("--hardware-front", action="store_true", help="only the hardware Pareto front of --trial "
                      "(nested mode; default trial: first on the front)")
    plot.add_argument("--out", help="output folder (default: RUN/plots; ./plots for a run in an object store)")
    plot.set_defaults(handler=_plot)
    export = results_parser("export", "a design's specs (json), SCALE-Sim topology + cfg that `codesign cost` "
                            "reads back as the design (scalesim), the trained model (onnx), or all with a README")
    export.add_argument("--trial", type=int, help="the trial to export (default: the first design on the front, "
                        "the one `codesign show` lists first)")
    export.add_argument("--format", choices=("json", "scalesim", "onnx", "all"), default="json",
                        help="json: the specs; scalesim: SCALE-Sim files; onnx: the trained model; all: everything "
                             "with a README")
    export.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc",
                        help="the ONNX model's input layout: nhwc (default, as design.predict takes images) or nchw")
    export.add_argument("--weights", choices=("final", "search"),
                        help="the weights in the ONNX model: final (the retraining of `codesign finalize`) or search "
                             "(the proxy's); default: final when the design was finalized, else search")
    export.add_argument("--out", help="output folder (default: ./trialN)")
    export.set_defaults(handler=_export)
    return parser


def error_line(error: BaseException) -> tuple[str, int]:
    """The one line a user sees for an exception, and the exit code: 2 for bad input or a failing environment
    (a file, the disk, the storage), 1 for a bug in codesign (the line says to rerun with --debug)."""
    if isinstance(error, (FormatError, ValueError)):
        return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()), 2
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            where = f" writing {error.filename}" if error.filename else ""
            return f"disk full{where}: free some space and run the command again (a search resumes)", 2
        if error.strerror:
            where = f"{error.filename}: " if error.filename else ""
            return f"{where}{error.strerror.lower()}", 2
        return str(error), 2
    return (f"internal error, {type(error).__name__}: {error} (a bug in codesign: rerun with --debug for the "
            f"traceback and report it)"), 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("codesign: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for the user; --debug shows the traceback
        if args.debug:
            raise
        line, code = error_line(error)
        print(f"codesign: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
