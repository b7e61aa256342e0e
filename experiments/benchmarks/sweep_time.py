"""What a hardware sweep costs the user: ``codesign sweep NETWORK`` from the command line with an empty
and then a warm compilation cache, and ``sweep()`` in a warm process, part by part, beside the
way it built its inputs and front before (run here as the baseline, on the same points).

    .venv/bin/python experiments/benchmarks/sweep_time.py [--network mobilenet_v1] [--repeats 5]

The command-line runs are fresh processes with ``CODESIGN_COMPILATION_CACHE`` set to a new
temporary folder (first run: empty; the next ones: what the first wrote). The in-process
figures are medians of ``--repeats`` calls after the first (which compiles or loads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "codesign")  # the console script pip installed
BOUND = "area<=2"


def quadratic_pareto_mask(values: np.ndarray) -> np.ndarray:
    """The baseline: every row against every other, in blocks of 512 (codesign.metrics before moocore)."""
    keep = np.ones(len(values), bool)
    for start in range(0, len(values), 512):
        block = values[start:start + 512]
        no_worse = (values[None, :, :] <= block[:, None, :]).all(-1)
        better = (values[None, :, :] < block[:, None, :]).any(-1)
        keep[start:start + 512] = ~(no_worse & better).any(1)
    return keep


def command_line(network: str, runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh ``codesign sweep`` processes sharing one new compilation cache."""
    env = dict(os.environ, CODESIGN_COMPILATION_CACHE=tempfile.mkdtemp(prefix="sweep_cache_"))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([CLI, "sweep", network, "--max", BOUND], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process(network: str, repeats: int) -> dict[str, float]:
    from codesign.metrics import hardware_metrics, pareto_mask
    from codesign.sweep import parse_bound, sweep
    from cost_models import evaluate_batch, stack
    from search_spaces.accelerators import DEFAULT_ACCELERATOR_SPACE
    from search_spaces.reference import reference_network

    workload = reference_network(network).workload()
    bound = [parse_bound(BOUND)]
    start = time.perf_counter()
    sweep(workload, constraints=bound)
    first = time.perf_counter() - start
    accelerators = tuple(DEFAULT_ACCELERATOR_SPACE.grid(None, np.random.default_rng(0)))
    stacked = stack(accelerators)
    costs = evaluate_batch(workload, stacked, per_layer=False)
    metrics = hardware_metrics({"latency_s": costs.latency_s, "energy_pj": costs.energy_pj,
                                "area_mm2": costs.area_mm2})
    points = np.stack([metrics["latency"], metrics["energy"]], axis=1)
    return {"accelerators": len(accelerators), "first call": first,
            "sweep() warm": median_seconds(lambda: sweep(workload, constraints=bound), repeats),
            "  the grid as arrays (space.stacked)": median_seconds(DEFAULT_ACCELERATOR_SPACE.stacked, repeats),
            "  cost model": median_seconds(lambda: evaluate_batch(workload, stacked, per_layer=False), repeats),
            "  Pareto front (moocore)": median_seconds(lambda: pareto_mask(points), repeats),
            "baseline parts (how sweep() built its inputs and front before)": float("nan"),
            "  grid of Accelerator objects": median_seconds(
                lambda: tuple(DEFAULT_ACCELERATOR_SPACE.grid(None, np.random.default_rng(0))), repeats),
            "  stack of the objects": median_seconds(lambda: stack(accelerators), repeats),
            "  quadratic Pareto filter": median_seconds(lambda: quadratic_pareto_mask(points), repeats)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mobilenet_v1")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cold, *warm = command_line(args.network, 1 + args.repeats)
    print(f"codesign sweep {args.network} --max '{BOUND}' (fresh processes)")
    print(f"  first run, empty compilation cache   {cold:8.2f} s")
    print(f"  later runs, warm cache (median)      {statistics.median(warm):8.2f} s  "
          f"(min {min(warm):.2f}, max {max(warm):.2f})")
    figures = in_process(args.network, args.repeats)
    print(f"sweep() in one process, {figures.pop('accelerators')} accelerators (medians)")
    for label, seconds in figures.items():
        print(label if seconds != seconds else f"  {label:37s}{seconds:9.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
