"""The ``codesign`` command line.

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FormatError, ValueError, FileNotFoundError) as error:
        print(f"codesign: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
