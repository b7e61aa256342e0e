"""The embedded default: a real co-design search on the built-in digits data (`make demo`).

Network (MobileNet-, SqueezeNet- and SqueezeNext-like blocks), compression (4/8/16-bit
weights, 8/16-bit activations, pruning) and accelerator (PE array, dataflow incl. per-layer
flex, buffers, bandwidth) are searched jointly with Optuna's TPE sampler; every candidate
is trained for a few epochs (QAT and pruning active) as a Ray task on the local machine.
Three objectives: accuracy (max), latency and energy per inference (min), under an area
budget. About 40 trials; a few minutes on 2 cores. Runs resume: run it again to continue.

    .venv/bin/python experiments/quickstart.py [--trials 40] [--folder runs/quickstart] [--fresh]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from codesign.results.plots import plot_run  # noqa: E402
from search_spaces.accelerators import AcceleratorSpace  # noqa: E402
from search_spaces.compression import CompressionSpace  # noqa: E402
from search_spaces.network_space import NetworkSpace  # noqa: E402


def make_experiment(trials: int, folder: str) -> codesign.Experiment:
    return codesign.Experiment(
        name="quickstart",
        run_folder=folder,
        dataset="digits",
        network_space=NetworkSpace(blocks=("dwsep", "fire", "squeezenext"), stages=(2,), depths=(1, 2),
                                   widths=(16, 32), kernels=(3,), stem_kernels=(3, 5), stem_widths=(16,)),
        compression_space=CompressionSpace(w_bits=(4, 8, 16), a_bits=(8, 16), prune_ratios=(0.0, 0.5)),
        accelerator_space=AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16, 32), dataflows=("ws", "os", "flex"),
                                           rf_bytes=(16,), gb_kib=(32, 128), dram_gbps=(16.0,), mac_bits=(8, 16),
                                           zero_skip=(True,)),
        proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=3)),
        objectives=("accuracy", "latency", "energy"),
        constraints=[codesign.Constraint("area", max=2.0)],
        trials=trials,
        seed=0,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--folder", default="runs/quickstart")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first (no resume)")
    args = parser.parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.folder, ignore_errors=True)
    experiment = make_experiment(args.trials, args.folder)
    started = time.perf_counter()
    results = codesign.run(experiment)
    elapsed = time.perf_counter() - started
    print()
    print(results.table())
    paths = plot_run(results, Path(args.folder) / "plots")
    print(f"\n{results.counts()} in {elapsed:.0f} s; run folder {args.folder}")
    for path in paths:
        print(f"plot: {path}")
    print(f"reload: codesign.load({args.folder!r}).pareto_front[0].model()")
    return 0


if __name__ == "__main__":
    sys.exit(main())
