"""Trials per minute of the quickstart search with the supernet proxy against the 1-epoch trained proxy.

Both runs are the quickstart experiment (its spaces, joint mode, local Ray, the same
seed and trial budget) in fresh run folders, one after the other in this process. The
supernet run's time includes training the supernet (once, by the first trial that needs
it). Prints wall time, trials per minute, the supernet's training time and the accuracy
range each proxy reported.

    .venv/bin/python experiments/benchmarks/supernet_search.py [--trials 40] [--json]
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
    accuracies = [d.metrics["accuracy"] for d in results.designs if "accuracy" in d.metrics]
    supernets = [json.loads(p.read_text()) for p in (experiment.folder / "accuracy_cache" / "supernets").glob("*.json")]
    return {"seconds": seconds, "trials_per_minute": 60 * len(accuracies) / seconds, "counts": results.counts(),
            "accuracy_range": [min(accuracies), max(accuracies)] if accuracies else None,
            "supernet_training_seconds": supernets[0]["seconds"] if supernets else None}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    proxies = {"trained, 1 epoch": codesign.TrainedProxy(codesign.TrainConfig(epochs=1)),
               "supernet": codesign.SupernetProxy()}
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, proxy in proxies.items():
            experiment = dataclasses.replace(make_experiment(args.trials, str(Path(tmp) / name.split(",")[0])),
                                             proxy=proxy)
            report[name] = timed_run(experiment)
            print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return report
    print(f"quickstart spaces, {args.trials} trials each")
    print(f"{'proxy':<20}{'seconds':>9}{'trials/min':>12}{'supernet s':>12}  accuracy range")
    for name, row in report.items():
        trained = row["supernet_training_seconds"]
        low, high = row["accuracy_range"] or (float("nan"), float("nan"))
        print(f"{name:<20}{row['seconds']:>9.0f}{row['trials_per_minute']:>12.1f}"
              f"{'' if trained is None else f'{trained:.0f}':>12}  {low:.3f} .. {high:.3f}")
    return report


if __name__ == "__main__":
    main()
