"""A real 2-node Ray cluster on loopback (a head and a worker, 1 CPU each, started with `ray start`):
trials run on both nodes, a killed worker node costs retries but no trial, a killed driver resumes.

Only the processes this module starts are stopped: each node is started with its own tag in
the environment, which every process of that node (raylet, GCS, workers) inherits, so
clusters of other runs on the same machine are left alone. Ray writes under a temporary
folder (RAY_TMPDIR, HOME)."""

import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import codesign
from codesign.outcome import Status, trial_status
from codesign.storage import make_storage, run_folder_storage
from conftest import load_experiment_module

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

#: The two-node launcher the soak benchmark uses (experiments/benchmarks/soak.py).
LocalCluster = load_experiment_module("benchmarks/soak.py").LocalCluster


class Cluster(LocalCluster):
    """A head and a worker node (1 CPU each) on loopback, under a new temporary folder; ``node_env``: environment
    only the nodes' processes get (not the drivers)."""

    def __init__(self, node_env: dict | None = None):
        self.work = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        super().__init__(self.work, node_env)

    def stop(self):
        super().stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def driver(self, folder: Path, trials: int, proxy: str = "params", source: str | None = None,
               env: dict | None = None) -> subprocess.Popen:
        """``codesign run`` of EXPERIMENT (or ``source``, an experiment file's text) on this cluster."""
        file = folder.parent / f"{folder.name}.py"
        file.write_text(source or EXPERIMENT.format(folder=str(folder), trials=trials, proxy=proxy))
        log = folder.parent / f"{folder.name}.{time.monotonic_ns()}.log"  # a file, not a pipe nobody drains
        with log.open("w") as out:
            driver = subprocess.Popen([sys.executable, "-m", "codesign.cli", "run", str(file), "--address",
                                       self.address, "--no-progress"], env=env or self.env,
                                      cwd=Path(__file__).resolve().parents[1], stdout=out, stderr=subprocess.STDOUT)
        driver.log = log
        return driver


def finish(driver: subprocess.Popen, timeout: float) -> str:
    """Wait for a driver; its exit code is in ``returncode``; returns what it printed."""
    driver.wait(timeout=timeout)
    return driver.log.read_text()


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.stop()


def study(folder: Path):
    """The run's study, opened as codesign opens it (the run folder's journal file)."""
    return optuna.load_study(study_name="cluster", storage=make_storage(run_folder_storage(folder)))


def counted(folder: Path):
    return [t for t in study(folder).get_trials() if trial_status(t) != Status.INTERRUPTED]


def completed(folder: Path) -> list:
    """Counted complete trials, in the order they completed."""
    done = [t for t in counted(folder) if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: t.datetime_complete)


def nodes_of(trials) -> list[str]:
    return [t.user_attrs["run"]["worker"]["node"] for t in trials]


def wait_until(driver: subprocess.Popen, folder: Path, condition, what: str, timeout: float = 240):
    """Wait until ``condition(completed trials)``; fail with the driver's output if it exits or stalls first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "study.log").is_file():
            try:
                if condition(completed(folder)):
                    return
            except Exception:  # noqa: BLE001 - the study is being created
                pass
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}) before {what}:\n{driver.log.read_text()}")
        time.sleep(0.5)
    driver.kill()
    driver.wait(timeout=30)
    states = [(t.number, t.state.name) for t in study(folder).get_trials()] if (folder / "study.log").is_file() else []
    raise TimeoutError(f"not {what} in {timeout} s; trials {states}; driver output:\n{driver.log.read_text()}")


@pytest.mark.slow
def test_trials_run_on_both_nodes(cluster, tmp_path):
    """A whole run on the two nodes. test_killing_the_worker_node_loses_no_trial also waits for a trial
    completed on each node, and for the driver's exit code 0, before and after it kills one."""
    driver = cluster.driver(tmp_path / "run", trials=6)
    out = finish(driver, timeout=300)
    assert driver.returncode == 0, out
    trials = counted(tmp_path / "run")
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["run"]["worker"]["node"] for t in trials}) == 2


@pytest.mark.slow
def test_killing_the_worker_node_loses_no_trial(cluster, tmp_path):
    """A whole node killed (test_search's test_a_worker_that_dies_mid_trial_costs_a_retry_and_beyond_its_retries_
    fails_only_its_trial checks a worker process that dies, on the local Ray, in every test run)."""
    folder = tmp_path / "run"
    driver = cluster.driver(folder, trials=8, proxy="synflow")  # a few seconds per trial
    wait_until(driver, folder, lambda done: len(set(nodes_of(done))) == 2, "a trial completed on each node")
    cluster.kill("worker")
    told_before_kill = len(completed(folder))
    out = finish(driver, timeout=400)
    assert driver.returncode == 0, out
    trials = counted(folder)
    assert len(trials) == 8 and len({t.number for t in trials}) == 8
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.user_attrs.get("fail_reason")) for t in trials]
    # after the kill (and one result that may have been on its way), only the head node completes trials
    after_kill = nodes_of(completed(folder))[told_before_kill + 1:]
    assert len(after_kill) >= 8 - told_before_kill - 1 and len(set(after_kill)) == 1


@pytest.mark.slow  # re-queueing a dead driver's trials is also checked locally (test_search, test_hardening)
def test_a_killed_driver_resumes_and_completes(cluster, tmp_path):
    folder = tmp_path / "run"
    driver = cluster.driver(folder, trials=8, proxy="synflow")
    wait_until(driver, folder, lambda done: len(done) >= 2, "2 trials completed")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    left_running = [t for t in study(folder).get_trials() if t.state == TrialState.RUNNING]
    again = cluster.driver(folder, trials=8, proxy="synflow")
    out = finish(again, timeout=400)
    assert again.returncode == 0, out
    trials = counted(folder)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    requeued = sorted(t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs)
    assert requeued == sorted(t.number for t in left_running)


@pytest.mark.slow
def test_two_drivers_on_one_study_stop_at_its_budget(cluster, tmp_path):
    """Two drivers started together on one run folder share its budget: together they complete exactly the
    trials it asks for, each some of them. test_hardening's
    test_a_driver_counts_the_trials_another_live_driver_is_running checks the count in every test run."""
    from codesign.storage import DRIVER

    folder = tmp_path / "run"
    drivers = [cluster.driver(folder, trials=10, proxy="synflow") for _ in range(2)]
    for driver in drivers:
        out = finish(driver, timeout=400)
        assert driver.returncode == 0, out
    trials = counted(folder)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 10 and len(trials) == 10, [(t.number, t.state.name) for t in trials]
    assert len({t.user_attrs[DRIVER] for t in done}) == 2  # both drivers took part


#: A ``sitecustomize`` for the nodes of test_a_cluster_without_a_shared_disk_...: no Python process of theirs (Ray
#: workers, the pruner desk) may open a file under CODESIGN_TEST_FORBIDDEN, the driver's run folder.
AUDIT_HOOK = """
import os
import sys

FORBIDDEN = os.environ.get("CODESIGN_TEST_FORBIDDEN")
if FORBIDDEN:
    def _refuse(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(FORBIDDEN):
            raise PermissionError(f"opened {args[0]}, on the driver's disk")
    sys.addaudithook(_refuse)
"""

#: A Ray driver that tries to open a file in the run folder from a worker of each node; prints what happened.
PROBE = """
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address={address!r}, log_to_driver=False)

@ray.remote(num_cpus=1)
def probe():
    try:
        open({folder!r} + "/probe", "w")
    except PermissionError:
        return "refused"
    return "opened"

nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
print(*ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
                for n in nodes]))
"""

NO_SHARED_DISK = """
import codesign
import optuna
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.network_space import NetworkSpace

experiment = codesign.Experiment(
    name="cluster", run_folder={folder!r}, trials={trials}, dataset="synthetic", seed=0, storage={storage!r},
    artifacts={artifacts!r}, compression_space=None,
    network_space=NetworkSpace(blocks=("dwsep", "fire"), stages=(1,), depths=(1,), widths=(8, 16), stem_widths=(8,),
                               kernels=(3,), stem_kernels=(3,)),
    accelerator_space=AcceleratorSpace(rows=(8, 16), cols=(8, 16), gb_kib=(64,), rf_bytes=(16,), dram_gbps=(16.0,)),
    proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=2)),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=1), max_retries=3)
"""


@pytest.mark.slow
def test_a_cluster_without_a_shared_disk_completes_a_study_that_two_drivers_share(tmp_path, s3_server, monkeypatch):
    """Issue 31's proof: two nodes whose processes cannot open any file in the run folder (an audit hook in
    every Python process of theirs, checked on a worker of each node first), the study in a PostgreSQL server,
    artifacts and the accuracy cache in an S3-compatible store. Two drivers started at once on the same study,
    sharing no folder (one's run folder is on its disk, the other's in the object store), share its budget; every trial completes or is pruned, no pair is trained twice, and the loaded front
    predicts with weights from the store. (test_object_store's test_workers_that_may_not_open_the_run_folder_...
    checks the same on the local Ray in every test run.)"""
    from codesign.outcome import Outcome
    from servers import start_postgres, stop_postgres

    postgres = start_postgres()
    s3_server.create_bucket("cluster")
    folder = (tmp_path / "run").resolve()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT_HOOK)
    cluster = Cluster(node_env={"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
                                "CODESIGN_TEST_FORBIDDEN": str(folder), "PGPASSWORD": postgres.password})
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE.format(address=cluster.address, folder=str(folder))],
                               env=cluster.env, capture_output=True, text=True, timeout=180)
        assert probe.stdout.split() == ["refused", "refused"], probe.stdout + probe.stderr[-2000:]
        storage = postgres.create_database("cluster")
        env = {**cluster.env, "PGPASSWORD": postgres.password}
        # one driver's run folder on its disk, the other's in the object store: the two share no folder
        drivers = [cluster.driver(tmp_path / name, 6, source=NO_SHARED_DISK.format(
            folder=run_folder, trials=6, storage=storage, artifacts="s3://cluster/run"), env=env)
            for name, run_folder in (("first", str(folder)), ("second", "s3://cluster/elsewhere"))]
        outputs = [finish(driver, timeout=900) for driver in drivers]
        assert [driver.returncode for driver in drivers] == [0, 0], outputs
        monkeypatch.setenv("PGPASSWORD", postgres.password)
        results = codesign.load(folder)
        counts = results.counts(duplicates=False)
        assert counts.get("complete", 0) + counts.get("pruned", 0) == 6, (counts, outputs)
        done = [t for t in results.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len({t.user_attrs["run"]["worker"]["node"] for t in done}) == 2
        trained = [t for t in done if t.state == TrialState.COMPLETE and not Outcome.from_trial(t).cached]
        entries = [k for k in s3_server.keys("cluster") if k.startswith("run/accuracy_cache/") and k.endswith(".json")]
        assert len(entries) == len(trained)  # each stored pair trained once, by one of the drivers' workers
        assert "elsewhere/study.json" in s3_server.keys("cluster")
        assert len(codesign.load("s3://cluster/elsewhere").trials) == len(results.trials)
        best = results.pareto_front[0]
        data = codesign.load_dataset("synthetic", seed=0)
        accuracy = float((best.predict(data.x_val, normalised=True) == data.y_val).mean())
        assert accuracy == pytest.approx(best.metrics["accuracy"], abs=1.5 / len(data.y_val))
    finally:
        cluster.stop()
        stop_postgres(postgres)
