"""Search efficiency: hypervolume after N trials for TPE, NSGA-II and random search, and the
loop's overhead per trial outside the accuracy proxy.

Every sampler runs the same experiment (the quickstart spaces, joint mode, objectives
accuracy / latency / energy) with the same seeds. The accuracy proxy is a cheap one
(``--proxy params``: the compressed model's weight count, maximised, standing in for
accuracy; or any zero-cost proxy), so the loop is what is measured. Hypervolume is
computed on the normalised objectives (accuracy flipped to a loss) against the worst
point seen across all runs plus 10 %.

Overhead per trial: sampling (ask + the three spaces), the Ray round trip minus the
proxy's own time (cost model, cache, transfer), and the tell (constraints, user
attributes, artifacts). Goal: under 50 ms.

    .venv/bin/pip install -e ".[bench]"   # moocore, for the hypervolume
    .venv/bin/python experiments/benchmarks/search_efficiency.py [--trials 60] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import moocore  # exact hypervolume
except ImportError:  # pragma: no cover - an optional extra
    sys.exit('search_efficiency.py needs moocore: .venv/bin/pip install -e ".[bench]"')

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from quickstart import make_experiment  # noqa: E402


def run_one(sampler: str, seed: int, trials: int, proxy: str, folder: Path, storage: str):
    experiment = dataclasses.replace(
        make_experiment(trials, str(folder)), name=f"{sampler}-{seed}", sampler=sampler, seed=seed,
        proxy=codesign.ZeroCostProxy(proxy), save_weights=False,
        storage=f"journal:///{folder.resolve()}/study.log" if storage == "journal" else None)
    started = time.perf_counter()
    results = codesign.run(experiment, progress=False)
    wall = time.perf_counter() - started
    points = np.array([[-d.metrics["accuracy"], d.metrics["latency"], d.metrics["energy"]] for d in results.designs
                       if d.feasible]).reshape(-1, 3)
    return points, results.timings, wall


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "random"])
    parser.add_argument("--proxy", default="params")
    parser.add_argument("--storage", choices=("sqlite", "journal"), default="sqlite",
                        help="the run folder's SQLite file (the default of codesign) or an Optuna journal file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="search_efficiency_"))
    runs = {}
    try:
        for sampler in args.samplers:
            for seed in args.seeds:
                points, timings, wall = run_one(sampler, seed, args.trials, args.proxy, root / f"{sampler}-{seed}",
                                               args.storage)
                runs[(sampler, seed)] = (points, timings, wall)
                print(f"{sampler} seed {seed}: {len(points)} feasible designs in {wall:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    every = np.concatenate([p for p, _, _ in runs.values() if len(p)])
    low, high = every.min(axis=0), every.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    reference = np.full(3, 1.1)
    report = {"trials": args.trials, "seeds": args.seeds, "proxy": args.proxy, "storage": args.storage, "samplers": {}}
    for sampler in args.samplers:
        volumes, overheads, walls, parts = [], [], [], []
        for seed in args.seeds:
            points, timings, wall = runs[(sampler, seed)]
            normalised = (points - low) / scale
            volumes.append(float(moocore.hypervolume(normalised, ref=reference)) if len(points) else 0.0)
            overheads += [t["overhead_s"] for t in timings]
            parts += timings
            walls.append(wall)
        part = {k: 1e3 * float(np.median([t[k] for t in parts])) for k in ("sample_s", "roundtrip_s", "tell_s", "proxy_s")}
        report["samplers"][sampler] = {
            "hypervolume_mean": float(np.mean(volumes)), "hypervolume_std": float(np.std(volumes)),
            "hypervolumes": volumes, "overhead_ms_median": 1e3 * float(np.median(overheads)),
            "overhead_ms_p90": 1e3 * float(np.percentile(overheads, 90)), "median_ms": part,
            "wall_s_mean": float(np.mean(walls))}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.trials} trials x seeds {args.seeds}, proxy {args.proxy!r}, {args.storage} storage; hypervolume of (accuracy, latency, "
              f"energy), normalised, reference 1.1")
        print(f"{'sampler':<8}{'HV mean':>9}{'HV std':>8}{'overhead ms (median / p90)':>29}"
              f"{'sample':>8}{'roundtrip':>10}{'tell':>7}{'wall s':>8}")
        for sampler, r in report["samplers"].items():
            m = r["median_ms"]
            print(f"{sampler:<8}{r['hypervolume_mean']:>9.4f}{r['hypervolume_std']:>8.4f}"
                  f"{r['overhead_ms_median']:>19.1f} / {r['overhead_ms_p90']:<7.1f}"
                  f"{m['sample_s']:>8.1f}{m['roundtrip_s']:>10.1f}{m['tell_s']:>7.1f}{r['wall_s_mean']:>8.1f}")
        worst = max(r["overhead_ms_median"] for r in report["samplers"].values())
        print(f"goal: overhead per trial outside the proxy < 50 ms: {'met' if worst < 50 else 'NOT met'} "
              f"(worst median {worst:.1f} ms)")
    return report


if __name__ == "__main__":
    main()
