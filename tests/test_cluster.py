"""A real 2-node Ray cluster on loopback (a head and a worker, 1 CPU each, started with `ray start`):
trials run on both nodes, a killed worker node costs retries but no trial, a killed driver resumes.

Only the processes this module starts are stopped (by their process ids and children);
Ray writes under a temporary folder (RAY_TMPDIR, HOME)."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

EXPERIMENT = """
import codesign
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.network_space import NetworkSpace

experiment = codesign.Experiment(
    name="cluster", run_folder={folder!r}, trials={trials}, dataset="synthetic", seed=0,
    network_space=NetworkSpace(blocks=("dwsep", "fire"), stages=(1,), depths=(1,), widths=(8, 16), stem_widths=(8,),
                               kernels=(3,), stem_kernels=(3,)),
    accelerator_space=AcceleratorSpace(rows=(8, 16), cols=(8, 16), gb_kib=(64,), rf_bytes=(16,), dram_gbps=(16.0,)),
    proxy=codesign.ZeroCostProxy({proxy!r}), save_weights=False, max_retries=3)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": self.tmp, "HOME": self.tmp,
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_failure_threshold": "3"}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, set[int]] = {}
        ray = str(Path(sys.executable).parent / "ray")
        self._start("head", [ray, "start", "--head", f"--port={self.port}", "--num-cpus=1",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                             f"--temp-dir={self.tmp}/ray", "--disable-usage-stats"])
        self._start("worker", [ray, "start", f"--address={self.address}", "--num-cpus=1",
                               "--node-ip-address=127.0.0.1", "--disable-usage-stats"])

    def _start(self, node: str, command: list[str]):
        before = set(psutil.pids())
        subprocess.run(command, env=self.env, check=True, capture_output=True, timeout=120)
        self.nodes[node] = {p for p in set(psutil.pids()) - before if _is_ray(p)}

    def processes(self, node: str) -> list[psutil.Process]:
        found = []
        for pid in self.nodes[node]:
            try:
                process = psutil.Process(pid)
                found += [process] + process.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        return found

    def kill(self, node: str):
        victims = self.processes(node)
        for p in victims:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)

    def stop(self):
        for node in ("worker", "head"):
            self.kill(node)

    def driver(self, folder: Path, trials: int, proxy: str = "params") -> subprocess.Popen:
        file = folder.parent / f"{folder.name}.py"
        file.write_text(EXPERIMENT.format(folder=str(folder), trials=trials, proxy=proxy))
        return subprocess.Popen([sys.executable, "-m", "codesign.cli", "run", str(file), "--address", self.address,
                                 "--no-progress"], env=self.env, cwd=Path(__file__).resolve().parents[1],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _is_ray(pid: int) -> bool:
    try:
        return "ray" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.stop()


def study(folder: Path):
    return optuna.load_study(study_name="cluster", storage=f"sqlite:///{folder / 'study.db'}")


def counted(folder: Path):
    return [t for t in study(folder).get_trials() if not t.user_attrs.get("interrupted")]


def wait_for_complete(folder: Path, n: int, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "study.db").is_file():
            try:
                if sum(t.state == TrialState.COMPLETE for t in counted(folder)) >= n:
                    return
            except Exception:  # noqa: BLE001 - the study is being created
                pass
        time.sleep(0.5)
    raise TimeoutError(f"fewer than {n} trials completed in {timeout} s")


def test_trials_run_on_both_nodes(cluster, tmp_path):
    driver = cluster.driver(tmp_path / "run", trials=6)
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out
    trials = counted(tmp_path / "run")
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"]["node"] for t in trials}) == 2


def test_killing_the_worker_node_loses_no_trial(cluster, tmp_path):
    folder = tmp_path / "run"
    driver = cluster.driver(folder, trials=8, proxy="synflow")  # a few seconds per trial
    wait_for_complete(folder, 1)
    cluster.kill("worker")
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out
    trials = counted(folder)
    assert len(trials) == 8 and len({t.number for t in trials}) == 8
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.user_attrs.get("fail_reason")) for t in trials]
    nodes = [t.user_attrs["worker"]["node"] for t in sorted(trials, key=lambda t: t.datetime_complete)]
    assert len(set(nodes)) == 2 and len(set(nodes[-4:])) == 1  # the worker node worked, then only the head did


def test_a_killed_driver_resumes_and_completes(cluster, tmp_path):
    folder = tmp_path / "run"
    driver = cluster.driver(folder, trials=8, proxy="synflow")
    wait_for_complete(folder, 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    left_running = [t for t in study(folder).get_trials() if t.state == TrialState.RUNNING]
    again = cluster.driver(folder, trials=8, proxy="synflow")
    out, _ = again.communicate(timeout=400)
    assert again.returncode == 0, out
    trials = counted(folder)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    requeued = sorted(t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs)
    assert requeued == sorted(t.number for t in left_running)
