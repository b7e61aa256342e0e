"""Let the co-design search rediscover SqueezeNext-style changes (Kwon et al., DAC'18, section 4.2).

    python experiments/rediscover_squeezenext.py [--trials 30] [--epochs 4] [--cifar PATH] [--fresh]

Starts from SqueezeNet v1.0's macro-architecture scaled to 32x32 inputs (7x7 first layer,
fire modules 3 / 4 / 1 between max pools, squeeze ratio 1/8, a quarter of the widths)
and a Squeezelerator-like accelerator space (8 to 32 PEs a side, WS / OS / per-layer
choice, register file of 8 or 16 entries, 128 KB, 16 GB/s, zero weights skipped). The
search is nested: Optuna samples the network (first kernel, per-stage depth and block
type: fire or squeezenext); each candidate sweeps every accelerator and keeps the
lowest-EDP one of its hardware front. Every network is trained (QAT off, 40 % zero
weights as in the paper) on the built-in digits, enlarged to 32x32, or on CIFAR-10 from
a local folder. SqueezeNet v1.0 itself is the first trial, so its accuracy comes from the
same proxy and seed.

The script then looks for a design on the Pareto front that beats SqueezeNet v1.0 on
the design's own accelerator in both latency and energy at equal or better accuracy, and
reports what it changed: first-layer kernel, stage depths and blocks, register file,
array, and which layers run on WS or OS. Exit code 0 when such a design exists, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from codesign.accuracy.datasets import load_dataset, upsampled  # noqa: E402
from codesign.storage import open_study  # noqa: E402
from cost_models import evaluate  # noqa: E402
from search_spaces.accelerators import AcceleratorSpace  # noqa: E402
from search_spaces.compression import CompressionPolicy, CompressionSpace  # noqa: E402
from search_spaces.network_space import NetworkVariantSpace  # noqa: E402
from search_spaces.networks import NetworkSpec, Stage, Stem  # noqa: E402

RESOLUTION = 32
WEIGHT_ZEROS = 0.4


def scaled_squeezenet_v1_0(in_channels: int, num_classes: int = 10) -> NetworkSpec:
    """SqueezeNet v1.0 at 32x32: the 7x7 first layer (stride 1 here, 24 filters), max pools after it and
    after fire4 and fire8, fire modules 3 / 4 / 1 of widths 32 / 96 / 128 (about 1/4 of 128-512), squeeze
    ratio 1/8, a 1x1 conv classifier. Maps: 32 -> 16 -> 8 -> 4, as the original's 111 -> 55 -> 27 -> 13."""
    return NetworkSpec(
        Stem(kernel=7, stride=1, width=24, pool="max3"),
        (Stage("fire", 3, 32, expansion=0.125, pool="max3"),
         Stage("fire", 4, 96, expansion=0.125, pool="max3"),
         Stage("fire", 1, 128, expansion=0.125)),
        head="conv", resolution=RESOLUTION, in_channels=in_channels, num_classes=num_classes,
        name="squeezenet_v1_0_32")


def make_experiment(dataset, trials: int, epochs: float, folder: str) -> codesign.Experiment:
    base = scaled_squeezenet_v1_0(dataset.in_channels, dataset.num_classes)
    return codesign.Experiment(
        name="rediscover_squeezenext",
        run_folder=folder,
        dataset=dataset,
        mode="nested",
        network_space=NetworkVariantSpace(base, stem_kernels=(3, 5, 7), depths=(1, 2, 3, 4, 5, 6),
                                          blocks=("fire", "squeezenext")),
        compression_space=CompressionSpace(w_bits=(16,), a_bits=(16,), prune_ratios=(WEIGHT_ZEROS,),
                                           granularities=("unstructured",)),
        accelerator_space=AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16, 32), dataflows=("ws", "os", "flex"),
                                           rf_bytes=(16, 32), gb_kib=(128,), dram_gbps=(16.0,), mac_bits=(16,),
                                           zero_skip=(True,)),
        nested_accelerators=None,
        proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=epochs)),
        objectives=("accuracy", "latency", "energy"),
        trials=trials,
        seed=0,
    )


def _dataflow_counts(report) -> dict[str, int]:
    return dict(Counter(row["dataflow"] for row in report.layers if row["dataflow"] != "simd"))


def compare_with_baseline(design, baseline_accuracy: float, base: NetworkSpec) -> dict:
    """The design against the base network on the design's accelerator (same compression)."""
    accelerator = design.accelerator
    compression = design.compression or CompressionPolicy.uniform(prune_ratio=WEIGHT_ZEROS)
    base_report = evaluate(base.workload(compression=compression), accelerator)
    own_report = design.cost_report()
    latency, energy = own_report.total["latency_s"], own_report.total["energy_pj"]
    base_latency, base_energy = base_report.total["latency_s"], base_report.total["energy_pj"]
    net = design.network
    return {
        "trial": design.number,
        "accuracy": design.metrics["accuracy"],
        "baseline_accuracy": baseline_accuracy,
        "latency_ms": latency * 1e3, "baseline_latency_ms": base_latency * 1e3,
        "energy_uj": energy / 1e6, "baseline_energy_uj": base_energy / 1e6,
        "speedup": base_latency / latency, "energy_ratio": base_energy / energy,
        "beats_baseline": latency < base_latency and energy < base_energy and design.metrics["accuracy"] >= baseline_accuracy,
        "changes": {
            "first_layer_kernel": [base.stem.kernel, net.stem.kernel],
            "stage_depths": [[s.depth for s in base.stages], [s.depth for s in net.stages]],
            "stage_blocks": [[s.block for s in base.stages], [s.block for s in net.stages]],
            "macs_m": [base.macs / 1e6, net.macs / 1e6],
            "accelerator": f"{accelerator.rows}x{accelerator.cols} {accelerator.dataflow}, "
                           f"register file {accelerator.rf_bytes // 2} entries",
            "dataflow_layers": [_dataflow_counts(base_report), _dataflow_counts(own_report)],
        },
    }


def describe(row: dict) -> str:
    c = row["changes"]
    return (f"trial {row['trial']}: accuracy {row['accuracy']:.3f} (SqueezeNet v1.0: {row['baseline_accuracy']:.3f}), "
            f"{row['latency_ms']:.4f} ms vs {row['baseline_latency_ms']:.4f} ms ({row['speedup']:.2f}x faster), "
            f"{row['energy_uj']:.2f} uJ vs {row['baseline_energy_uj']:.2f} uJ ({row['energy_ratio']:.2f}x less)\n"
            f"  first layer {c['first_layer_kernel'][0]}x{c['first_layer_kernel'][0]} -> "
            f"{c['first_layer_kernel'][1]}x{c['first_layer_kernel'][1]}; stage depths {c['stage_depths'][0]} -> "
            f"{c['stage_depths'][1]}; blocks {c['stage_blocks'][0]} -> {c['stage_blocks'][1]}; "
            f"MACs {c['macs_m'][0]:.2f} M -> {c['macs_m'][1]:.2f} M\n"
            f"  accelerator {c['accelerator']}; layers per dataflow {c['dataflow_layers'][0]} -> {c['dataflow_layers'][1]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=float, default=4, help="training epochs of the accuracy proxy (fractions too)")
    parser.add_argument("--cifar", type=Path, help="a local 'cifar-10-batches-py' folder (default: digits at 32x32)")
    parser.add_argument("--folder", default="runs/rediscover_squeezenext")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first (no resume)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.folder, ignore_errors=True)
    dataset = load_dataset(args.cifar) if args.cifar else upsampled(load_dataset("digits"), RESOLUTION // 8)
    experiment = make_experiment(dataset, args.trials, args.epochs, args.folder)
    space = experiment.network_space
    # The search starts where the paper did: SqueezeNet v1.0 is the first trial.
    wanted = space.base_params()
    open_study(experiment).enqueue_trial(wanted, skip_if_exists=True)
    started = time.perf_counter()
    results = codesign.run(experiment, progress=not args.json)
    elapsed = time.perf_counter() - started

    baseline = next((d for d in results.designs if all(d.params.get(k) == v for k, v in wanted.items())), None)
    if baseline is None:
        print("SqueezeNet v1.0's trial did not complete; see the failed trials with `codesign show`", file=sys.stderr)
        return 1
    rows = [compare_with_baseline(d, baseline.metrics["accuracy"], space.base) for d in results.pareto_front]
    winners = sorted((r for r in rows if r["beats_baseline"]), key=lambda r: -r["speedup"] * r["energy_ratio"])
    summary = {"dataset": dataset.summary(), "trials": results.counts(), "seconds": round(elapsed, 1),
               "baseline": {"trial": baseline.number, "accuracy": baseline.metrics["accuracy"],
                            "accelerator": baseline.accelerator.to_dict()},
               "front": rows, "winners": [r["trial"] for r in winners]}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"\n{dataset.summary()}; {results.counts()} in {elapsed:.0f} s")
        print(f"SqueezeNet v1.0 (trial {baseline.number}): accuracy {baseline.metrics['accuracy']:.3f}, "
              f"{baseline.metrics['latency']:.4f} ms, {baseline.metrics['energy']:.2f} uJ on its own "
              f"lowest-EDP accelerator")
        print(f"\nPareto front: {len(rows)} designs; {len(winners)} beat SqueezeNet v1.0 on their own accelerator "
              f"in latency and energy at equal or better accuracy")
        for row in winners or rows:
            print(describe(row))
    return 0 if winners else 1


if __name__ == "__main__":
    sys.exit(main())
