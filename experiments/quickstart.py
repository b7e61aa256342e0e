"""The embedded default: a real co-design search on the built-in digits data (`make demo`).

Network (MobileNet-, SqueezeNet- and SqueezeNext-like blocks), compression (4/8/16-bit
weights, 8/16-bit activations, pruning) and accelerator (PE array, dataflow incl. per-layer
flex, buffers, bandwidth) are searched jointly with Optuna's TPE sampler for three minutes
of wall clock, trials running as Ray tasks on the local machine. Three objectives:
accuracy (max), latency and energy per inference (min), under an area budget.

Each candidate is trained for 3 epochs (QAT and pruning active) as a Ray task: of the
strategies measured end to end at this budget (docs/RESULTS.md, "End to end"), it gave
the finalized front with the largest mean hypervolume over two seeds, a hair ahead of
an accuracy predictor fitted on a weight-sharing supernet's scores (``--proxy
predictor``), which rates five times the designs in the same minutes. Then 5 designs
spread along the Pareto front are retrained from scratch for 10 epochs and measured on
the test split (``results.finalize``); their weights reload with
``design.model(final=True)``. Runs resume: run it again to search three more minutes.

    .venv/bin/python experiments/quickstart.py [--minutes 3] [--trials N] [--finalize 5] [--proxy trained]
        [--folder runs/quickstart] [--fresh]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from codesign.results.finalize import finals_table  # noqa: E402
from codesign.results.plots import plot_run  # noqa: E402
from search_spaces.accelerators import AcceleratorSpace  # noqa: E402
from search_spaces.compression import CompressionSpace  # noqa: E402
from search_spaces.network_space import NetworkSpace  # noqa: E402

#: The demo's accuracy strategies: 3 epochs of training per candidate (the end-to-end winner at its budget),
#: and the predictor on a supernet's scores.
PROXIES = ("trained", "predictor")


def make_proxy(name: str = "trained") -> codesign.accuracy.Proxy:
    """3 epochs of training per candidate, or the predictor on a 20-epoch supernet's scores of 100 candidates."""
    if name == "predictor":
        return codesign.make_proxy("predictor", teacher="supernet", teacher_epochs=20, fit_candidates=100)
    if name == "trained":
        return codesign.TrainedProxy(codesign.TrainConfig(epochs=3))
    raise ValueError(f"quickstart: proxy must be one of {', '.join(PROXIES)}, got {name!r}")


def make_experiment(trials: int | None, folder: str, minutes: float | None = None,
                    proxy: str = "trained") -> codesign.Experiment:
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
        proxy=make_proxy(proxy),
        objectives=("accuracy", "latency", "energy"),
        constraints=[codesign.Constraint("area", max=2.0)],
        trials=trials,
        timeout=None if minutes is None else 60.0 * minutes,
        seed=0,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="wall clock of the search (default 3)")
    parser.add_argument("--trials", type=int, default=None, help="stop after this many trials as well")
    parser.add_argument("--finalize", type=int, default=5, metavar="K",
                        help="designs spread along the front retrained for 10 epochs (0: none)")
    parser.add_argument("--proxy", choices=PROXIES, default="trained")
    parser.add_argument("--folder", default="runs/quickstart")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first (no resume)")
    args = parser.parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.folder, ignore_errors=True)
    experiment = make_experiment(args.trials, args.folder, args.minutes, args.proxy)
    started = time.perf_counter()
    results = codesign.run(experiment)
    elapsed = time.perf_counter() - started
    print()
    print(results.table())
    print(f"\n{results.counts()} in {elapsed:.0f} s; run folder {args.folder}")
    if args.finalize:
        print(f"\nretraining {args.finalize} designs spread along the front for 10 epochs ...", flush=True)
        finals = results.finalize(args.finalize, epochs=10, spread=True)
        print(finals_table(finals))
    paths = plot_run(codesign.load(args.folder), Path(args.folder) / "plots")
    for path in paths:
        print(f"plot: {path}")
    weights = "model(final=True)" if args.finalize else "model()"
    print(f"reload: codesign.load({args.folder!r}).pareto_front[0].{weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
