"""codesign.cluster: a local Ray listens on loopback only; a cluster that does not answer fails in bounded time.

The local Ray is started by a separate Python process (a driver, as `codesign run` is), so
that neither a Ray already started by other tests in this process nor the environment
:func:`codesign.cluster.start_ray` sets leaks between tests. Ray writes under a temporary
folder (RAY_TMPDIR, HOME); only the driver started here and its child processes are
inspected and stopped.
"""

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from codesign import cluster

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

DRIVER = """
import os, sys
from codesign.cluster import loopback_environment, start_ray

before = set(os.environ)
ray = start_ray(None)
print("left set", sorted(set(loopback_environment()) & (set(os.environ) - before)), flush=True)
# a task makes the raylet start a worker, whose own gRPC server is then listening too
print("worker", ray.get(ray.remote(lambda: os.getpid()).remote()), flush=True)
print("READY", flush=True)
sys.stdin.readline()
ray.shutdown()
print("DONE", flush=True)
"""


@pytest.fixture
def ray_home(monkeypatch):
    """Ray's temporary folder and HOME: a new folder under /tmp (short: Ray's socket paths have a length limit)."""
    folder = Path(tempfile.mkdtemp(prefix="rl", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(cluster.CONNECT_TIMEOUT_ENV, raising=False)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def listeners(processes: list[psutil.Process]) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, process name) of every TCP socket in LISTEN state of ``processes``."""
    names = {}
    for p in processes:
        try:
            names[p.pid] = p.name()
        except psutil.Error:
            pass
    return sorted((c.laddr.ip, c.laddr.port, c.pid, names[c.pid]) for c in psutil.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN and c.pid in names)


class Lines:
    """The lines a process prints, read by a thread: waits with a timeout, without select's buffering pitfalls."""

    def __init__(self, stream):
        self.queue: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def until(self, word: str, timeout: float):
        """Wait for a line holding ``word``; fail after ``timeout`` s or at the end of the output."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if word in line:
                return
        raise AssertionError(f"no {word!r} from the driver in {timeout} s; it printed: {''.join(self.seen)!r}")


@pytest.mark.parametrize("user_imported_ray", [False, True], ids=["codesign-first", "ray-first"])
def test_a_local_ray_listens_on_the_loopback_address_only(ray_home, user_imported_ray):
    """Also when the user imported ``ray`` before codesign started it (Ray reads its auth mode at import)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = ray_home / "driver.err"
    script = ("import ray\n" if user_imported_ray else "") + DRIVER
    with log.open("w") as err:  # a file, not a pipe nobody drains
        driver = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=err, text=True)
    output = Lines(driver.stdout)
    started: list[psutil.Process] = []
    try:
        try:
            output.until("READY", timeout=120)
        except AssertionError as error:
            raise AssertionError(f"{error}\ndriver stderr:\n{log.read_text()[-3000:]}") from None
        root = psutil.Process(driver.pid)
        time.sleep(1.0)  # the agents bind while the driver runs its first task
        started = [root, *root.children(recursive=True)]
        found = listeners(started)
        names = {name for _, _, _, name in found}
        assert {"gcs_server", "raylet"} <= names, found  # the measurement saw Ray's servers
        assert driver.pid in {pid for _, _, pid, _ in found}, found  # the driver's own gRPC server
        assert [row for row in found if row[0] not in LOOPBACK] == [], found
        # the environment is the user's again once Ray has started; Ray's own ray.init may set RAY_AUTH_MODE
        # when codesign leaves the choice to it (the user's import of ray) and the user had not set it
        left = next(line for line in output.seen if line.startswith("left set "))
        allowed = ["left set []\n"] + (["left set ['RAY_AUTH_MODE']\n"] if user_imported_ray else [])
        assert left in allowed, left

        driver.stdin.write("\n")
        driver.stdin.flush()
        output.until("DONE", timeout=60)
        assert driver.wait(timeout=30) == 0
        said = log.read_text()  # Ray's own lines are not the user's: no "Started a local Ray", and no token
        # warning unless the user's own import of ray left the auth mode to Ray
        assert "Started a local Ray instance" not in said, said
        assert user_imported_ray or "Token authentication is enabled" not in said, said
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
        _, alive = psutil.wait_procs(started[1:], timeout=15)
        for p in alive:  # only the processes this driver started
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
    assert [p.pid for p in alive] == []  # ray.shutdown() stopped everything it started


def test_an_address_that_does_not_answer_fails_in_bounded_time(ray_home, monkeypatch):
    monkeypatch.setattr(cluster, "running_ray", lambda: None)  # even if other tests started a Ray in this process
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"could not reach a Ray cluster at 127\.0\.0\.1:1 within 3 s "
                                              r"\(is `ray start --head` running there\?"):
        cluster.start_ray("127.0.0.1:1", connect_timeout=3)
    assert 2.5 < time.monotonic() - started < 10


def test_the_connect_timeout_comes_from_the_environment(ray_home, monkeypatch):
    monkeypatch.setattr(cluster, "running_ray", lambda: None)
    monkeypatch.setenv(cluster.CONNECT_TIMEOUT_ENV, "1")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(ValueError, match="within 1 s"):  # also a ValueError: the CLI reports it as a usage error
        cluster.start_ray(None)
    assert time.monotonic() - started < 5
    assert cluster.resolve_connect_timeout() == 1.0
    assert cluster.resolve_connect_timeout(2.5) == 2.5
    monkeypatch.setenv(cluster.CONNECT_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="not a number"):
        cluster.resolve_connect_timeout()
    with pytest.raises(ValueError, match="positive"):
        cluster.resolve_connect_timeout(0)


def test_addresses_and_environment():
    assert cluster.host_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert cluster.host_port("ray://head:10001") == ("head", 10001)
    assert cluster.host_port("[::1]:6379") == ("::1", 6379)
    assert cluster.host_port("auto") is None
    assert cluster.loopback_environment()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    # Ray's own attempts stay within about the timeout: 2 x (2 connects + cluster-ID fetch + 1 s pause)
    for timeout in (3, 10, 30, 120):
        env = cluster.connect_environment(timeout)
        attempt = 2 * int(env["RAY_gcs_rpc_server_connect_timeout_s"]) + int(env["RAY_py_gcs_connect_timeout_s"]) + 1
        assert int(env["RAY_gcs_server_port_wait_time_s"]) * attempt <= max(timeout, 8)


def test_a_variable_the_user_set_is_kept_and_the_others_are_removed_again(monkeypatch):
    environment = {"RAY_USAGE_STATS_ENABLED": "1"}
    monkeypatch.setattr(os, "environ", environment)  # a stand-in: nothing leaks into this process's environment
    with cluster.default_environment({"RAY_USAGE_STATS_ENABLED": "0", "RAY_enable_metrics_collection": "0"}) as chosen:
        assert chosen == {"RAY_enable_metrics_collection": "0"}
        assert environment == {"RAY_USAGE_STATS_ENABLED": "1", "RAY_enable_metrics_collection": "0"}
    assert environment == {"RAY_USAGE_STATS_ENABLED": "1"}


def test_the_agents_a_killed_driver_leaves_are_stopped_by_the_next_start(ray_home):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with (ray_home / "driver.err").open("w") as err:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=err, text=True)
    output = Lines(driver.stdout)
    started: list[psutil.Process] = []
    try:
        output.until("READY", timeout=120)
        started = psutil.Process(driver.pid).children(recursive=True)
        agents = [p for p in started if p.name().startswith(cluster.AGENT_NAMES)]
        assert len(agents) == 2, [p.name() for p in started]
        driver.kill()  # kill -9: no ray.shutdown()
        driver.wait(timeout=30)
        time.sleep(3.0)  # the GCS, the raylet and the workers are gone by now; the agents would stay ~60 s
        assert all(p.is_running() for p in agents)
        stopped = cluster.stop_orphaned_agents()
        assert {p.pid for p in agents} <= set(stopped)
        _, alive = psutil.wait_procs(agents, timeout=10)
        assert alive == []
    finally:
        for p in started:  # only what this driver started
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
