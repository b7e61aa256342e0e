"""The ``codesign`` command line.

``codesign network NAME|SPEC.json [--resolution R] [--json]``: per-layer summary of a network.

``codesign cost --topology T.csv [--config C.cfg | --accelerator A.json] [--dataflow D]
[--compute-only] [--json]``: the analytical cost model on a SCALE-Sim topology.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    from pathlib import Path

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codesign", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cost = commands.add_parser("cost", help="evaluate a SCALE-Sim topology with the analytical cost model")
    cost.add_argument("--topology", required=True, help="SCALE-Sim topology CSV")
    cost.add_argument("--config", help="SCALE-Sim .cfg (array, SRAMs, dataflow, bandwidth)")
    cost.add_argument("--accelerator", help="accelerator spec as JSON (Accelerator.to_json)")
    cost.add_argument("--dataflow", choices=ALL_DATAFLOW_NAMES, help="override the dataflow")
    cost.add_argument("--compute-only", action="store_true", help="ignore memory (no stalls)")
    cost.add_argument("--json", action="store_true", help="print one JSON object {layers, total}")
    cost.set_defaults(handler=_cost)
    network = commands.add_parser("network", help="per-layer summary of a reference network or a NetworkSpec JSON")
    network.add_argument("network", help="reference name (e.g. squeezenet_v1_0) or SPEC.json")
    network.add_argument("--resolution", type=int, help="input resolution (default: the spec's)")
    network.add_argument("--json", action="store_true", help='print {"layers": [...], "total": {...}}')
    network.set_defaults(handler=_network)
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
