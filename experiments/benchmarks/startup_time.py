"""What a user waits for before a command does anything: ``import codesign``, ``codesign --help`` and
``codesign network NAME`` in fresh processes, beside what importing the model's libraries costs in the
same run (the baseline: what ``import codesign`` imported before its names were lazy).

    .venv/bin/python experiments/benchmarks/startup_time.py [--repeats 7]

Each line is the median (and the range) of ``--repeats`` fresh Python processes, wall clock,
after one unmeasured warm-up run of each (so the page cache holds the files).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "codesign")  # the console script pip installed

CASES = {
    "python -c 'import codesign'": [sys.executable, "-c", "import codesign"],
    "codesign --help": [CLI, "--help"],
    "codesign network squeezenet_v1_0": [CLI, "network", "squeezenet_v1_0"],
    "baseline: python -c 'import jax, flax, optuna, ray'": [sys.executable, "-c", "import jax, flax, optuna, ray"],
    "baseline: what import codesign loaded eagerly": [
        sys.executable, "-c", "import codesign.search, codesign.results, codesign.accuracy, cost_models.evaluation"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"{'command':55s} {'median s':>9s} {'min':>6s} {'max':>6s}")
    for label, command in CASES.items():
        seconds(command)
        times = [seconds(command) for _ in range(args.repeats)]
        print(f"{label:55s} {statistics.median(times):9.3f} {min(times):6.3f} {max(times):6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
