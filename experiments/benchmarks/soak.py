"""A soak under random kills: a two-node local Ray cluster, a cheap study and a trained one, worker processes, the
worker node and the driver killed with SIGKILL at random moments, everything restarted automatically.

The cluster is two nodes on 127.0.0.1 (``ray start``, 1 CPU each, under a temporary
folder). Two experiments run on it one after the other: ``--cheap`` trials scored by a
zero-cost proxy (a second or so each) and ``--trained`` trials trained for one epoch. A
killer picks a random moment every ``--every`` seconds (uniform between half and one and
a half of it) and kills one of: a Ray worker process running a trial, the whole worker
node (restarted 5 s later), or the driver (started again at once, resuming the study),
until the studies reach their budgets. The same two studies also run once without kills,
as the baseline, in the same call.

Reported per setting: kills that landed (by kind), trials asked, completed, interrupted
(trials a killed driver left running, read back ``interrupted``; the budget does not
count them), re-queued (trials started from an interrupted trial's parameters), lost
(the budget less what completed or failed: work that was never redone), duplicated
(designs evaluated by more than one counted trial: the budget spent twice), failed (a
worker lost beyond its retries, say), and the wall time. The goal is 0 lost, 0
duplicated and a wall time under twice the baseline's.

    .venv/bin/python experiments/benchmarks/soak.py [--cheap 200] [--trained 20] [--every 20] [--min-kills 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_resume import audit  # noqa: E402

EXPERIMENT = """
import codesign
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.network_space import NetworkSpace

experiment = codesign.Experiment(
    name={name!r}, dataset="synthetic", proxy={proxy}, save_weights=False, seed={seed}, max_retries=5,
    network_space=NetworkSpace(blocks=("dwsep", "fire"), stages=(1, 2), depths=(1,), widths=(8, 16, 32),
                               kernels=(3,), stem_kernels=(3,), stem_widths=(8, 16)),
    accelerator_space=AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16, 32), dataflows=("ws", "os")),
    trials={trials}, run_folder={folder!r})
"""

#: The environment variable that marks every process of one node (raylet, GCS, workers inherit it).
NODE_TAG = "CODESIGN_SOAK_NODE"


class LocalCluster:
    """A head and a worker node on loopback, 1 CPU each, under ``work``; processes found and killed by their node's
    tag. ``node_env``: environment only the nodes' processes get (not the drivers, which get ``env``).
    tests/test_cluster.py starts its clusters with this class too."""

    def __init__(self, work: Path, node_env: dict | None = None):
        self.node_env = node_env or {}
        self.tmp = work / "ray"
        self.tmp.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{s.getsockname()[1]}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(self.tmp), "HOME": str(work),
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT),
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        self.ray = str(Path(sys.executable).parent / "ray")
        self.start("head")
        self.start("worker")

    def start(self, node: str) -> None:
        port = self.address.rsplit(":", 1)[1]
        command = ([self.ray, "start", "--head", f"--port={port}", f"--temp-dir={self.tmp}/session",
                    "--include-dashboard=false"] if node == "head" else [self.ray, "start", f"--address={self.address}"])
        subprocess.run(command + ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"],
                       env={**self.env, **self.node_env, NODE_TAG: f"{node}@{self.tmp}"}, check=True,
                       capture_output=True, timeout=120)

    def processes(self, node: str) -> list[psutil.Process]:
        found = {}
        for process in psutil.process_iter():
            try:
                if process.environ().get(NODE_TAG) == f"{node}@{self.tmp}":
                    found[process.pid] = process
                    # Ray's agents rename themselves, which overwrites their environment: find them as children
                    found.update({child.pid: child for child in process.children(recursive=True)})
            except psutil.Error:  # gone, or not ours to read
                pass
        return list(found.values())

    def trial_workers(self) -> list[psutil.Process]:
        """Ray worker processes of either node that are running a trial's task."""
        busy = []
        for node in ("head", "worker"):
            for process in self.processes(node):
                try:
                    if "evaluate_on_worker" in process.name() or any("evaluate_on_worker" in part
                                                                      for part in process.cmdline()):
                        busy.append(process)
                except psutil.Error:
                    pass
        return busy

    def kill(self, node: str) -> None:
        victims = self.processes(node)
        for process in victims:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=10)

    def stop(self) -> None:
        for node in ("worker", "head"):
            self.kill(node)


def driver(cluster: LocalCluster, experiment_file: Path, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "codesign.cli", "run", str(experiment_file), "--address",
                                 cluster.address, "--no-progress"], cwd=ROOT, env=cluster.env, stdout=out,
                                stderr=subprocess.STDOUT)


def soak(cluster: LocalCluster, experiment_file: Path, log: Path, rng: random.Random | None, every: float,
         kills: Counter, deadline: float) -> int:
    """Run one experiment to its budget on ``cluster``, killing something every ``every`` seconds (on average)
    when ``rng`` is given; the last driver's exit code."""
    running = driver(cluster, experiment_file, log)
    next_kill = time.monotonic() + (rng.uniform(0.5, 1.5) * every if rng else float("inf"))
    while True:
        if running.poll() is not None:
            if running.returncode == 0 or time.monotonic() > deadline:
                return running.returncode
            running = driver(cluster, experiment_file, log)  # a driver that failed: resume
        if time.monotonic() >= next_kill:
            kind = rng.choice(("worker process", "worker node", "driver"))
            if kind == "worker process" and (busy := cluster.trial_workers()):
                rng.choice(busy).kill()
                kills[kind] += 1
            elif kind == "worker node":
                cluster.kill("worker")
                kills[kind] += 1
                time.sleep(5.0)
                cluster.start("worker")
            elif kind == "driver":
                running.send_signal(signal.SIGKILL)
                running.wait()
                kills[kind] += 1
                running = driver(cluster, experiment_file, log)  # resumed automatically
            next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * every
        time.sleep(0.2)


def one_setting(args, with_kills: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="soak_"))
    rng = random.Random(args.seed) if with_kills else None
    kills: Counter = Counter()
    cluster = LocalCluster(work)
    rows = {}
    started = time.perf_counter()
    try:
        for name, proxy, trials in (("cheap", f"codesign.ZeroCostProxy({args.cheap_proxy!r})", args.cheap),
                                    ("trained", "codesign.TrainedProxy(codesign.TrainConfig(epochs=1))", args.trained)):
            folder = work / name
            experiment_file = work / f"{name}.py"
            experiment_file.write_text(EXPERIMENT.format(name=name, proxy=proxy, seed=args.seed, trials=trials,
                                                         folder=str(folder)))
            began = time.perf_counter()
            code = soak(cluster, experiment_file, work / f"{name}.log", rng, args.every, kills,
                        deadline=time.monotonic() + args.timeout)
            rows[name] = {"budget": trials, **counts(folder, trials), "exit_code": code,
                          "wall_s": round(time.perf_counter() - began, 1)}
        # the minimum number of kills: keep killing on a fresh cheap study until it is reached
        while with_kills and sum(kills.values()) < args.min_kills:
            folder = work / f"extra{sum(kills.values())}"
            experiment_file = work / f"{folder.name}.py"
            experiment_file.write_text(EXPERIMENT.format(name=folder.name, proxy=f"codesign.ZeroCostProxy("
                                                         f"{args.cheap_proxy!r})", seed=args.seed, trials=40,
                                                         folder=str(folder)))
            code = soak(cluster, experiment_file, work / f"{folder.name}.log", rng, args.every, kills,
                        deadline=time.monotonic() + args.timeout)
            rows[folder.name] = {"budget": 40, **counts(folder, 40), "exit_code": code, "wall_s": None}
    finally:
        cluster.stop()
    result = {"kills": dict(kills), "rows": rows, "wall_s": round(time.perf_counter() - started, 1),
              "folder": str(work)}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def counts(folder: Path, budget: int) -> dict:
    """fault_resume's audit (its ``lost`` are the interrupted trials), the re-queued trials, and what was lost
    for good: the budget less the trials that completed or failed."""
    import codesign

    found = audit(folder)
    trials = codesign.load(folder).study.trials
    return {**found, "interrupted": found["lost"], "requeued": sum(1 for t in trials if "requeued_from" in t.user_attrs),
            "lost": max(0, budget - found["completed"] - found["failed"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cheap", type=int, default=200, help="trials of the zero-cost study (default 200)")
    parser.add_argument("--trained", type=int, default=20, help="trials of the trained study (default 20)")
    parser.add_argument("--cheap-proxy", default="synflow", help="its zero-cost proxy (default synflow)")
    parser.add_argument("--every", type=float, default=20.0, help="mean seconds between kills (default 20)")
    parser.add_argument("--min-kills", type=int, default=10, help="kills that must land (default 10)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one study may take (default 3600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the run folders and logs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    baseline, killed = one_setting(args, with_kills=False), one_setting(args, with_kills=True)
    if args.json:
        print(json.dumps({"baseline": baseline, "killed": killed}, indent=1))
        return {"baseline": baseline, "killed": killed}
    head = (f"{'setting':<9} {'study':<8} {'budget':>6} {'asked':>5} {'completed':>9} {'interrupted':>11} "
            f"{'requeued':>8} {'lost':>4} {'duplicated':>10} {'failed':>6} {'exit':>4} {'wall s':>7}")
    print(head)
    print("-" * len(head))
    for label, setting in (("no kills", baseline), ("kills", killed)):
        for study, r in setting["rows"].items():
            print(f"{label:<9} {study:<8} {r['budget']:>6} {r['trials']:>5} {r['completed']:>9} {r['interrupted']:>11} "
                  f"{r['requeued']:>8} {r['lost']:>4} {r['duplicated']:>10} {r['failed']:>6} {r['exit_code']:>4} "
                  f"{r['wall_s'] if r['wall_s'] is not None else '-':>7}")
    print(f"kills that landed: {killed['kills']} ({sum(killed['kills'].values())}); wall time {killed['wall_s']} s "
          f"against {baseline['wall_s']} s without kills ({killed['wall_s'] / baseline['wall_s']:.2f}x)")
    return {"baseline": baseline, "killed": killed}


if __name__ == "__main__":
    main()
