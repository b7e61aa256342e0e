"""Scaling of the search loop: trials per minute with 1 and 2 Ray worker processes on this
machine, and the scheduling overhead per trial.

The experiment is the quickstart's (joint mode, three objectives) with a cheap accuracy
proxy (``--proxy params`` by default, or ``synflow`` for a few seconds of JAX work per
trial), so the loop itself is measured. Each setting gets a fresh local Ray with
``num_cpus`` = workers; Ray start-up is reported apart. "Scheduling overhead" is the
Ray round trip minus the worker's own time (submission, scheduling, result transfer);
"loop overhead" adds sampling and the tell (storage writes, artifacts).

    .venv/bin/python experiments/benchmarks/scaling.py [--trials 40] [--workers 1 2] [--proxy params]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from quickstart import make_experiment  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--proxy", default="params")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import ray

    rows = {}
    for workers in args.workers:
        folder = Path(tempfile.mkdtemp(prefix="scaling_"))
        try:
            started = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            startup = time.perf_counter() - started
            experiment = dataclasses.replace(make_experiment(args.trials, str(folder)),
                                             proxy=codesign.ZeroCostProxy(args.proxy), save_weights=False)
            started = time.perf_counter()
            results = codesign.run(experiment, progress=False)
            wall = time.perf_counter() - started
        finally:
            ray.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
        t = results.timings
        scheduling = [x.roundtrip_s - x.worker_s for x in t]
        rows[workers] = {"trials": len(t), "wall_s": wall, "ray_startup_s": startup,
                         "trials_per_minute": 60 * len(t) / wall,
                         "scheduling_ms_median": 1e3 * float(np.median(scheduling)),
                         "loop_overhead_ms_median": 1e3 * float(np.median([x.overhead_s for x in t])),
                         "worker_ms_median": 1e3 * float(np.median([x.worker_s for x in t])),
                         "proxy_ms_median": 1e3 * float(np.median([x.proxy_s for x in t]))}
        print(f"{workers} worker(s): {rows[workers]['trials_per_minute']:.1f} trials/min", file=sys.stderr)
    report = {"proxy": args.proxy, "trials": args.trials, "workers": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.trials} trials, proxy {args.proxy!r}, quickstart spaces (joint mode)")
        print(f"{'workers':>8}{'trials/min':>12}{'wall s':>8}{'ray start s':>12}{'scheduling ms':>15}"
              f"{'loop overhead ms':>18}{'worker ms':>11}{'proxy ms':>10}")
        for workers, r in rows.items():
            print(f"{workers:>8}{r['trials_per_minute']:>12.1f}{r['wall_s']:>8.1f}{r['ray_startup_s']:>12.1f}"
                  f"{r['scheduling_ms_median']:>15.1f}{r['loop_overhead_ms_median']:>18.1f}"
                  f"{r['worker_ms_median']:>11.1f}{r['proxy_ms_median']:>10.1f}")
        if len(rows) > 1:
            first, last = rows[min(rows)], rows[max(rows)]
            print(f"speed-up {max(rows)} vs {min(rows)} worker(s): "
                  f"{last['trials_per_minute'] / first['trials_per_minute']:.2f}x")
    return report


if __name__ == "__main__":
    main()
