"""Ray for a search: a local Ray that only this machine can reach, or a cluster reached in bounded time.

:func:`start_ray` is what :class:`codesign.driver.Driver` calls. An already started Ray is
used as it is. Otherwise:

* **No address** (neither the argument nor ``RAY_ADDRESS``): a local Ray whose servers
  listen on the loopback address only, with no dashboard, no Prometheus endpoint and no
  usage statistics. ``ray.init(_node_ip_address="127.0.0.1")`` alone does not do it in
  Ray 2.60: ``ray.init`` turns a loopback node address into the machine's external one
  (``services.resolve_ip_for_localhost`` -> ``get_node_ip_address``), and every server
  (GCS, raylet, core workers, runtime-env agent, autoscaler monitor) then binds that
  address or all interfaces. :func:`loopback_environment` lists the environment
  variables that keep them on 127.0.0.1; each one is documented there.
* **An address**: the cluster must answer within ``connect_timeout`` seconds (the
  argument, else ``CODESIGN_RAY_CONNECT_TIMEOUT``, else 30 s). Ray 2.60 on its own retries
  an address that does not answer for about 14 minutes (20 attempts of some 40 s each),
  so its host:port is first checked with plain TCP connects until the deadline, and Ray's
  own connect attempts are bounded (:func:`connect_environment`). A cluster that cannot be
  reached raises :class:`ClusterUnreachable`, a ``ConnectionError`` (and a ``ValueError``,
  so the command line reports it as a usage error).

The environment variables are set in ``os.environ`` for the duration of the import of Ray
and of ``ray.init`` (:func:`default_environment`): the Ray processes it starts (GCS,
raylet, monitor, log monitor, and through the raylet the agents and every worker) inherit
them. A variable the user has already set is left as it is: the user's value wins.
Afterwards the variables codesign set are removed again, so that they do not leak into
other programs this process starts: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in its
environment, ``ray start --address=...`` refuses to start a worker node.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_ENV = "CODESIGN_RAY_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 30.0

# Read by ray._private.ray_constants at import (ENABLE_RAY_CLUSTER); see loopback_environment.
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterUnreachable(ConnectionError, ValueError):
    """No Ray cluster answered at the given address in time."""


def loopback_environment() -> dict[str, str]:
    """The environment variables (name -> value) that keep a local Ray on the loopback address and quiet.

    * ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's "no multi-node cluster" switch (meant
      for Windows/macOS, honoured on Linux too; ``ray_constants.ENABLE_RAY_CLUSTER``). With
      it ``services.get_node_ip_address`` answers 127.0.0.1 instead of the external address,
      so ``ray.init`` keeps the node address 127.0.0.1, and then the GCS, the raylet and the
      core workers (driver included) bind their gRPC servers to it (they bind all
      interfaces for any other node address), the runtime-env agent binds the node address,
      and the autoscaler monitor's and the dashboard agent's servers bind 127.0.0.1 when the
      node address is a loopback one (``autoscaler/_private/monitor.py``, ``dashboard/agent.py``).
    * ``RAY_USAGE_STATS_ENABLED=0``: no usage statistics (``ray.init`` already turns them off
      for release wheels; this makes it explicit and reaches every Ray process).
    * ``RAY_enable_metrics_collection=0``: Ray's C++ config ``enable_metrics_collection``:
      no metrics recorded or exported by the GCS, raylet and workers, and the raylet starts
      the dashboard agent with ``--disable-metrics-collection`` (no Prometheus exporter on
      the metrics export port in a ``ray[default]`` install).
    * ``RAY_AUTH_MODE=token``: the token authentication Ray enables by default for a new
      local cluster, chosen explicitly, so Ray does not warn about it on every run. Ray's
      driver reads it when ``ray`` is first imported, so :func:`start_ray` leaves it to
      Ray when the user imported ``ray`` before (servers in token mode would refuse a
      driver that read another mode).
    * ``AUTOSCALER_METRIC_PORT=-1``: the autoscaler monitor serves Prometheus metrics,
      without authentication, on a fixed port (44217) whenever ``prometheus_client`` is
      installed; ``ray.init`` offers no way to turn the monitor or its server off. Port -1
      makes ``prometheus_client.start_http_server`` fail, which the monitor catches and logs
      ("An exception occurred while starting the metrics server." in ``monitor.log``), and
      it carries on without the endpoint. Nothing of codesign's uses autoscaler metrics.
    """
    return {
        _CLUSTER_SWITCH: "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_enable_metrics_collection": "0",
        "AUTOSCALER_METRIC_PORT": "-1",
        "RAY_AUTH_MODE": "token",
    }


def connect_environment(timeout: float) -> dict[str, str]:
    """The environment variables that bound Ray's own attempts to reach a cluster's GCS to about ``timeout`` s.

    Measured with Ray 2.60: ``ray.init(address=...)`` makes up to ``RAY_NUM_REDIS_GET_RETRIES``
    (20) attempts to create its GCS client, and one attempt against a port that does not
    answer as a GCS takes two gRPC connect timeouts (GCS and pubsub channels) plus the
    cluster-ID fetch, plus a 1 s pause: 5 + 5 + 30 + 1 s by default, some 14 minutes in all.

    * ``RAY_gcs_server_port_wait_time_s=2``: the number of attempts
      (``ray._private.node.Node._init_gcs_client``; read when called).
    * ``RAY_gcs_rpc_server_connect_timeout_s``: the gRPC connect timeout (C++
      ``gcs_rpc_server_connect_timeout_s``, default 5): ``timeout / 8`` within [1, 5].
    * ``RAY_py_gcs_connect_timeout_s``: the cluster-ID fetch (C++ ``py_gcs_connect_timeout_s``,
      default 30): the rest of half of ``timeout``, at least 1; so 2 attempts take about
      ``timeout`` (at least 8 s).

    The two C++ settings are read when ``ray`` is first imported. They only matter once
    :func:`wait_for_cluster` found the port open: a port that accepts connections but is
    not (yet) a GCS.
    """
    connect = min(5, max(1, math.floor(timeout / 8)))
    attempt = max(1, math.floor(timeout / 2 - 2 * connect - 1))
    return {
        "RAY_gcs_server_port_wait_time_s": "2",
        "RAY_py_gcs_connect_timeout_s": str(attempt),
        "RAY_gcs_rpc_server_connect_timeout_s": str(connect),
    }


def set_default_environment(variables: dict[str, str]) -> dict[str, str]:
    """Set each variable in ``os.environ`` unless it is already set; returns those it set."""
    chosen = {name: value for name, value in variables.items() if name not in os.environ}
    os.environ.update(chosen)
    return chosen


@contextlib.contextmanager
def default_environment(variables: dict[str, str]):
    """Within: each variable the user has not set is set in ``os.environ``; on exit those are removed again."""
    chosen = set_default_environment(variables)
    try:
        yield chosen
    finally:
        for name, value in chosen.items():
            if os.environ.get(name) == value:
                del os.environ[name]


def resolve_connect_timeout(connect_timeout: float | None = None) -> float:
    """Seconds to wait for a cluster: ``connect_timeout``, else ``CODESIGN_RAY_CONNECT_TIMEOUT``, else 30."""
    source = "connect_timeout"
    if connect_timeout is None:
        text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
        if not text:
            return DEFAULT_CONNECT_TIMEOUT
        source = CONNECT_TIMEOUT_ENV
        try:
            connect_timeout = float(text)
        except ValueError:
            raise ValueError(f"{CONNECT_TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not math.isfinite(connect_timeout) or connect_timeout <= 0:
        raise ValueError(f"{source} must be a positive number of seconds, got {connect_timeout!r}")
    return float(connect_timeout)


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``[ray://]HOST:PORT`` address (IPv6 in brackets), or None for e.g. ``"auto"``."""
    rest = address.strip()
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def wait_for_cluster(address: str, timeout: float) -> None:
    """Return once a TCP connect to ``address``'s host:port succeeds; :class:`ClusterUnreachable` after ``timeout`` s.

    A refused connect is tried again every 0.5 s until the deadline (a head that is still
    starting answers in time); an address that does not parse as host:port is not checked.
    """
    target = host_port(address)
    if target is None:
        return
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection(target, timeout=min(left, 5.0)):
                return
        except OSError as error:  # refused, unreachable, timed out, unknown host
            last_error = error
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    raise ClusterUnreachable(
        f"could not reach a Ray cluster at {address} within {timeout:g} s (is `ray start --head` running there? "
        f"check the host and the GCS port, that a firewall lets it through, or raise the wait with "
        f"{CONNECT_TIMEOUT_ENV}); last error: {last_error}")


@contextlib.contextmanager
def _loopback_node_address():
    """Within: Ray's ``ENABLE_RAY_CLUSTER`` follows ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` as it is now.

    ``ray._private.ray_constants`` reads that variable once, when first imported; if Ray was
    imported before :func:`start_ray` set it (a test session, a notebook), the constant is
    stale and ``ray.init`` would still turn 127.0.0.1 into the external address.
    """
    from ray._private import ray_constants

    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    value = os.environ.get(_CLUSTER_SWITCH)
    if before is None or value is None:
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = value.lower() in ("1", "true")
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


#: The process names (``/proc/PID/comm``, 15 characters) of the agents a raylet starts.
AGENT_NAMES = ("ray::DashboardAg", "ray::RuntimeEnv")


def stop_orphaned_agents() -> list[int]:
    """Stop this user's Ray agents whose raylet is gone; returns their pids.

    When a driver that started a local Ray is killed (``kill -9``), its GCS, raylet and
    workers exit at once, but the raylet's two agents (dashboard agent, runtime-env agent)
    first try to tell the dead GCS, with a 60 s timeout, and linger that long. An agent
    whose parent is no longer a raylet belongs to no live Ray: stopping it loses nothing.
    Agents of a running Ray (their parent is its raylet) and other users' processes are
    left alone.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - installed with Ray
        return []
    stopped = []
    for process in psutil.process_iter(["pid", "name", "uids"]):
        try:
            if not (process.info["name"] or "").startswith(AGENT_NAMES) or process.info["uids"].real != os.getuid():
                continue
            parent = process.parent()
            if parent is not None and parent.name().startswith("raylet"):
                continue
            process.kill()
            stopped.append(process.info["pid"])
        except psutil.Error:  # gone meanwhile, or not ours
            continue
    return stopped


def running_ray():
    """The ``ray`` module if this process already started or joined a Ray, else None (without importing Ray)."""
    ray = sys.modules.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def start_ray(address: str | None, connect_timeout: float | None = None, verbose: bool = False):
    """Ray, connected to ``address`` (or ``RAY_ADDRESS``) or started locally on 127.0.0.1; a started Ray is used as is.

    ``connect_timeout``: seconds to wait for a cluster (default ``CODESIGN_RAY_CONNECT_TIMEOUT``
    or 30); a cluster that does not answer in time raises :class:`ClusterUnreachable`.
    ``verbose``: Ray's own info lines and the workers' output are shown too; otherwise Ray
    says only warnings and errors.
    Returns the ``ray`` module.

    The environment is set before Ray is imported: Ray's C++ settings (``RAY_<name>``) are
    read once, when ``ray`` is first imported, so they bound the connect attempts of this
    process only if nothing imported Ray earlier (the case of ``codesign run``); the TCP
    check, and the settings read by the processes Ray starts, do not depend on it.
    """
    ray = running_ray()
    if ray is not None:
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        timeout = resolve_connect_timeout(connect_timeout)
        wait_for_cluster(address, timeout)
        with default_environment(connect_environment(timeout)):
            import ray

            try:
                ray.init(address=address, log_to_driver=verbose, logging_level=_ray_logging_level(verbose))
            except (ConnectionError, TimeoutError) as error:
                if host_port(address) is None:  # "auto": Ray's own message says what it looked for
                    raise
                lines = str(error.__cause__ or "").strip().splitlines()
                cause = f" ({lines[-1]})" if lines else ""  # the last line of Ray's traceback text
                raise ClusterUnreachable(
                    f"could not connect to the Ray cluster at {address}: {error}{cause}. Its port accepts "
                    f"connections; is it the GCS port of `ray start --head`, and is this machine a node of that "
                    f"cluster (`ray start --address={address}`)? Ray's own attempts were bounded to about "
                    f"{timeout:g} s ({CONNECT_TIMEOUT_ENV})") from error
    else:
        stop_orphaned_agents()  # a killed driver's local Ray leaves its agents for about a minute
        environment = loopback_environment()
        if "ray" in sys.modules:  # Ray's driver read its auth mode at import; the servers it starts must agree
            environment.pop("RAY_AUTH_MODE")
        with default_environment(environment):
            import ray

            metrics = os.environ["RAY_enable_metrics_collection"].lower() in ("1", "true")
            with _loopback_node_address():
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=verbose,
                         logging_level=_ray_logging_level(verbose), _node_ip_address=LOOPBACK,
                         _system_config={"enable_metrics_collection": metrics})
    return ray


def _ray_logging_level(verbose: bool) -> int:
    import logging

    return logging.INFO if verbose else logging.WARNING


# --- the trial task --------------------------------------------------------------------------------
def evaluate_on_worker(evaluator, candidates: list, reporters: list) -> list:
    """The Ray task: score a batch of candidates (``evaluator.score_batch``) and say where they ran and for how long."""
    import ray

    from codesign.outcome import WorkerInfo

    started = time.perf_counter()
    outcomes = evaluator.score_batch(candidates, reporters)
    worker = WorkerInfo(node=ray.get_runtime_context().get_node_id(), host=socket.gethostname(), pid=os.getpid(),
                        seconds=(time.perf_counter() - started) / len(candidates), batch=len(candidates),
                        finished_at=time.time())
    return [outcome.replace(worker=worker) for outcome in outcomes]


def task_options(experiment) -> dict:
    """Ray resources and retries of one trial's task."""
    options = {"num_cpus": experiment.cpus_per_trial, "max_retries": experiment.max_retries,
               "retry_exceptions": False}
    if experiment.gpus_per_trial:
        options["num_gpus"] = experiment.gpus_per_trial
    if experiment.memory_per_trial:
        options["memory"] = experiment.memory_per_trial
    return options
