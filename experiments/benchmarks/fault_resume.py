"""Faults during a search: kill the driver (``kill -9``) at random moments, resume, and count what was lost.

A ``codesign run`` of a small joint search (small spaces, a zero-cost proxy so that a
trial takes about a second and the loop itself is what gets interrupted) is
started as its own process, killed with SIGKILL after a random delay, and started again
on the same run folder, ``--kills`` times; a last run finishes the budget. Beside it,
as the baseline, the same experiment runs once without interruption.

Reported per setting:

* completed: trials that completed, against the budget;
* lost: trials a killed driver left running (read back ``interrupted``; their
  parameters were re-queued, so their design is evaluated by a later trial);
* duplicated: designs evaluated by more than one counted trial (the budget spent twice);
* skipped: trials told ``duplicate`` because their design was already evaluated (not run);
* leftover: Ray processes of this benchmark still alive 5 s after each kill (Ray's two
  agents wait about a minute for the dead GCS; the next start stops them) and 5 s after
  the last run ended; and the last run's exit code.

    .venv/bin/python experiments/benchmarks/fault_resume.py [--kills 5] [--trials 30] [--seed 0] [--proxy synflow]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

EXPERIMENT = """
import codesign
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.network_space import NetworkSpace

experiment = codesign.Experiment(
    name="faults", dataset="synthetic", proxy=codesign.ZeroCostProxy({proxy!r}), save_weights=False,
    network_space=NetworkSpace(blocks=("dwsep", "fire"), stages=(1, 2), depths=(1,), widths=(8, 16, 32),
                               kernels=(3,), stem_kernels=(3,), stem_widths=(8, 16)),
    accelerator_space=AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16, 32), dataflows=("ws", "os")),
    trials={trials}, run_folder={folder!r}, seed={seed})
"""


def ray_processes(tmpdir: str) -> list[int]:
    """Pids of live processes started under this benchmark's RAY_TMPDIR: Ray's GCS, raylet and workers by
    their command line or environment, and its agents (which overwrite both when they rename themselves) by
    the session log files they hold open."""
    import psutil

    pids = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "environ"]):
        if process.info["pid"] == os.getpid():
            continue
        try:
            text = " ".join(process.info["cmdline"] or []) + json.dumps(process.info["environ"] or {})
            if tmpdir not in text and (process.info["name"] or "").startswith("ray::"):
                text = " ".join(f.path for f in process.open_files())
        except (psutil.Error, TypeError):
            continue
        if tmpdir in text:
            pids.append(process.info["pid"])
    return pids


def start(experiment_file: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codesign.cli", "run", str(experiment_file), "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def audit(folder: Path) -> dict:
    """Counts from the run's study: completed, lost (interrupted), duplicated designs, skipped duplicates."""
    import codesign
    from codesign.outcome import Outcome, design_key

    results = codesign.load(folder)
    counts = results.counts()
    keys = Counter()
    for trial in results.study.trials:
        status = trial.user_attrs.get("status")
        if status in ("complete", "failed", "diverged", "pruned") and "network" in trial.user_attrs:
            keys[design_key(Outcome.from_trial(trial, artifacts=()).candidate)] += 1
    return {"completed": counts.get("complete", 0), "lost": counts.get("interrupted", 0),
            "duplicated": sum(n - 1 for n in keys.values() if n > 1), "skipped": counts.get("duplicate", 0),
            "failed": counts.get("failed", 0), "trials": len(results.study.trials)}


def one_setting(kills: int, trials: int, seed: int, proxy: str, rng: random.Random, low: float, high: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="faults_"))
    folder, tmpdir = work / "run", work / "ray"
    tmpdir.mkdir()
    experiment_file = work / "experiment.py"
    experiment_file.write_text(EXPERIMENT.format(trials=trials, folder=str(folder), seed=seed, proxy=proxy))
    env = {**os.environ, "RAY_TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT)}
    leftovers, landed, started = [], 0, time.perf_counter()
    for _ in range(kills):
        driver = start(experiment_file, env)
        delay = rng.uniform(low, high)
        try:
            driver.wait(timeout=delay)  # finished before the kill: nothing to interrupt
        except subprocess.TimeoutExpired:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            landed += 1
        time.sleep(5.0)  # Ray's own processes notice their driver is gone
        leftovers.append(len(ray_processes(str(tmpdir))))
    final = start(experiment_file, env)
    _, err = final.communicate(timeout=600)
    wall = time.perf_counter() - started
    time.sleep(5.0)
    left_at_end = len(ray_processes(str(tmpdir)))  # the last start stopped the killed drivers' agents
    for pid in ray_processes(str(tmpdir)):  # ours only: what this benchmark started under its RAY_TMPDIR
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {"kills": landed, "budget": trials, **audit(folder), "leftover_after_kills": leftovers,
            "leftover_at_end": left_at_end,
            "final_exit_code": final.returncode, "final_error": err.decode().strip().splitlines()[-1:],
            "wall_s": round(wall, 1), "folder": str(folder)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="times the driver is killed (default 5)")
    parser.add_argument("--trials", type=int, default=30, help="the trial budget (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="the experiment's seed and the kill times' seed")
    parser.add_argument("--proxy", default="synflow", help="the zero-cost proxy scoring a trial (default synflow: "
                                                            "about a second of JAX work per trial)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    baseline = one_setting(0, args.trials, args.seed, args.proxy, rng, 0.0, 0.0)
    # kills land between Ray's start (about 5 s) and 60 % of an uninterrupted run's time
    killed = one_setting(args.kills, args.trials, args.seed, args.proxy, rng, 5.0, max(6.0, 0.6 * baseline["wall_s"]))
    rows = [baseline, killed]
    if args.json:
        print(json.dumps(rows, indent=1))
        return {"rows": rows}
    head = (f"{'kills':>5} {'budget':>6} {'completed':>9} {'lost':>5} {'duplicated':>10} {'skipped':>7} "
            f"{'failed':>6} {'exit':>4} {'wall s':>7}  Ray processes left 5 s after each kill / at the end")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['kills']:>5} {r['budget']:>6} {r['completed']:>9} {r['lost']:>5} {r['duplicated']:>10} "
              f"{r['skipped']:>7} {r['failed']:>6} {r['final_exit_code']:>4} {r['wall_s']:>7}  "
              f"{r['leftover_after_kills'] or '-'} / {r['leftover_at_end']}")
    print("first row: the baseline, one run without a kill; kills: those that landed while the driver ran")
    return {"rows": rows}


if __name__ == "__main__":
    main()
