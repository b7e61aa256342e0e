"""Trials per minute of the quickstart search with each accuracy proxy: per-candidate training, population
training on the elastic network, and the weight-sharing supernet.

Every run is the quickstart experiment (its spaces, joint mode, local Ray, the same seed
and trial budget) in a fresh run folder, one after the other in this process, at the
fidelity ``--epochs``. The population run's time includes each worker's one compilation
of the elastic network; the supernet run's includes training the supernet (once, by the
first trial that needs it). Prints wall time, trials per minute, the supernet's training
time and the accuracy range each proxy reported.

    .venv/bin/python experiments/benchmarks/proxy_search.py [--trials 40] [--epochs 1]
        [--proxies trained population supernet] [--population 4] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from quickstart import make_experiment  # noqa: E402


def timed_run(experiment) -> dict:
    started = time.perf_counter()
    results = codesign.run(experiment, progress=False)
    seconds = time.perf_counter() - started
    quality = results.quality_metric  # accuracy, or a zero-cost proxy's score
    accuracies = [d.metrics[quality] for d in results.designs if quality in d.metrics]
    supernets = [json.loads(p.read_text()) for p in (experiment.folder / "accuracy_cache" / "supernets").glob("*.json")]
    return {"seconds": seconds, "trials_per_minute": 60 * len(accuracies) / seconds, "counts": results.counts(),
            "accuracy_range": [min(accuracies), max(accuracies)] if accuracies else None,
            "supernet_training_seconds": supernets[0]["seconds"] if supernets else None}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=float, default=1.0, help="the trained proxies' fidelity")
    parser.add_argument("--population", type=int, default=4, help="trials trained together by the population run")
    parser.add_argument("--proxies", nargs="+", default=["trained", "population", "supernet"],
                        choices=["trained", "population", "supernet"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = codesign.TrainConfig(epochs=args.epochs)
    choices = {f"trained, {args.epochs:g} ep": ("trained", codesign.TrainedProxy(config)),
               f"population {args.population}, {args.epochs:g} ep": (
                   "population", codesign.TrainedProxy(config, population=args.population)),
               "supernet": ("supernet", codesign.SupernetProxy())}
    proxies = {name: proxy for name, (kind, proxy) in choices.items() if kind in args.proxies}
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, proxy in proxies.items():
            experiment = dataclasses.replace(make_experiment(args.trials, str(Path(tmp) / name.replace(" ", "_"))),
                                             proxy=proxy)
            report[name] = timed_run(experiment)
            print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return report
    print(f"quickstart spaces, {args.trials} trials each")
    print(f"{'proxy':<24}{'seconds':>9}{'trials/min':>12}{'supernet s':>12}  accuracy range")
    for name, row in report.items():
        trained = row["supernet_training_seconds"]
        low, high = row["accuracy_range"] or (float("nan"), float("nan"))
        print(f"{name:<24}{row['seconds']:>9.0f}{row['trials_per_minute']:>12.1f}"
              f"{'' if trained is None else f'{trained:.0f}':>12}  {low:.3f} .. {high:.3f}")
    return report


if __name__ == "__main__":
    main()
