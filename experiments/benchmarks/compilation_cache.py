"""What the machine's persistent compilation cache saves: a run started with an empty cache, then the
same run again in fresh Ray workers, with the cache kept and with it emptied. Prints what it measures.

    .venv/bin/python experiments/benchmarks/compilation_cache.py [--trials 8]

Each run is the quickstart experiment (joint mode) with the cheap ``params`` proxy, so the
time outside the proxy is mostly the workers' first compilations of the cost model. The
cache is a temporary folder (``CODESIGN_COMPILATION_CACHE``, set before codesign is
imported, so the driver and its Ray workers share it). Between runs Ray is shut down, so
the workers are new processes with empty in-memory caches; the study, artifacts and
accuracy cache are removed, so every trial is evaluated again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(tempfile.mkdtemp(prefix="compilation_cache_"))
CACHE = ROOT / "xla"
os.environ["CODESIGN_COMPILATION_CACHE"] = str(CACHE)  # before codesign is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codesign  # noqa: E402
from quickstart import make_experiment  # noqa: E402


def one_run(experiment) -> tuple[float, float]:
    """Wall seconds of the run, and the summed per-trial overhead outside the proxy."""
    import ray

    for name in ("study.log", "study.log.lock", "artifacts", "accuracy_cache"):
        path = experiment.folder / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    started = time.perf_counter()
    results = codesign.run(experiment, progress=False)
    wall = time.perf_counter() - started
    ray.shutdown()
    return wall, sum(t.overhead_s for t in results.timings)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        experiment = dataclasses.replace(make_experiment(args.trials, str(ROOT / "run")), name="cached",
                                         proxy=codesign.ZeroCostProxy("params"), save_weights=False)
        rows = [("cold (the cache is filled)", one_run(experiment))]
        files = sum(1 for path in CACHE.rglob("*") if path.is_file())
        rows.append(("again, cache kept", one_run(experiment)))
        for path in CACHE.rglob("*"):
            if path.is_file():
                path.unlink()
        rows.append(("again, cache emptied", one_run(experiment)))
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)
    print(f"{args.trials} trials, quickstart spaces, params proxy, fresh Ray workers each run; "
          f"the cache held {files} entries")
    for label, (wall, overhead) in rows:
        print(f"  {label:<28} wall {wall:6.1f} s, overhead outside the proxy {overhead:6.1f} s")


if __name__ == "__main__":
    main()
