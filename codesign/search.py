"""The search loop: Optuna ask/tell in the driver, candidates scored as Ray tasks.

``run(experiment)`` opens (or resumes) the experiment's study, then keeps at most as
many trials in flight as the cluster has CPU slots for ``cpus_per_trial``:

1. ``study.ask()``; the spaces turn the trial into specs (joint mode: network,
   compression and accelerator; nested mode: network and compression, the whole
   accelerator space is swept by the worker in one cost-model call);
2. a Ray task runs :func:`codesign.evaluation.evaluate_candidate` (accuracy through
   the shared cache, so a pair is trained once, then costs);
3. ``study.tell`` with the objectives; constraints are set on the trial; specs,
   metrics and the reason of a failure are user attributes; the specs (JSON), the
   weights (Flax msgpack) and the per-layer cost report go to Optuna's artifact store.

A worker that dies costs that task a Ray retry (``max_retries``); a candidate that
fails for its own reason is told FAIL with the reason and the search goes on. Running
the same experiment again continues the study: finished trials count toward the
budget, and trials a dead driver left RUNNING are failed (marked ``interrupted``, not
counted) and re-queued with their parameters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from codesign.evaluation import Candidate, evaluate_candidate
from codesign.experiment import HARDWARE_METRICS, Experiment

log = logging.getLogger("codesign")

INTERRUPTED = "interrupted"


JOURNAL = "journal://"


def make_storage(url: str):
    """An Optuna storage from a URL; ``journal:///path/study.log`` is Optuna's journal file storage.

    Use SQLite (the default) for one driver; for several drivers at once use the journal
    file on a shared file system (works on NFS without a server) or a server database
    URL (``postgresql://...``, ``mysql://...``).
    """
    if isinstance(url, str) and url.startswith(JOURNAL):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if isinstance(url, str) and url.startswith("sqlite:///"):
        return _sqlite_storage(url)
    return url


def _sqlite_storage(url: str):
    """SQLite in WAL mode: readers never block the writer, and commits cost a third less.

    ``synchronous=NORMAL`` keeps the database consistent through a crash of any process;
    only a power loss can drop the last commits. Opening is serialized across processes
    (see :func:`_schema_lock`), so a driver and a reader opening a new database at the
    same moment do not both create its tables.
    """
    import sqlalchemy

    with _schema_lock(Path(url[len("sqlite:///"):])):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _pragmas(connection, _record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened before the listener get the pragmas on reconnect
    return storage


@contextlib.contextmanager
def _schema_lock(db: Path):
    """Hold an exclusive ``flock`` on ``<db>.lock`` while Optuna creates or checks the schema.

    Optuna's ``RDBStorage`` creates tables and stamps the schema version with no guard
    against another process doing the same: two processes opening one new SQLite file
    at once fail with "table ... already exists" or a UNIQUE error on
    ``alembic_version``. The lock is a separate file because closing any descriptor of
    the database file itself would drop the POSIX locks SQLite holds on it in this
    process (and can corrupt a WAL database). Where ``fcntl`` is missing (Windows) the
    open is not serialized.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_study(experiment: Experiment) -> optuna.Study:
    experiment.folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=experiment.name, storage=make_storage(experiment.storage_url),
                                directions=experiment.directions, sampler=experiment.make_sampler(),
                                pruner=experiment.pruner, load_if_exists=True)
    if "codesign.experiment" not in study.user_attrs:
        study.set_user_attr("codesign.experiment", json.loads(experiment.to_json()))
        study.set_user_attr("codesign.objectives", [o.metric for o in experiment.objectives])
    return study


def requeue_interrupted(study: optuna.Study) -> int:
    """Fail the trials a dead driver left running and enqueue their parameters again."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number}, skip_if_exists=False)
    return len(stale)


def finished_count(study: optuna.Study) -> int:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    return sum(1 for t in done if not t.user_attrs.get(INTERRUPTED))


def sample_candidate(experiment: Experiment, trial: optuna.Trial) -> Candidate:
    network = experiment.network_space.sample(trial)
    compression = None
    if experiment.compression_space is not None:
        compression = experiment.compression_space.sample(trial, network)
    trial.set_user_attr("network", network.to_dict())
    trial.set_user_attr("compression", None if compression is None else compression.to_dict())
    if experiment.mode == "joint":
        accelerator = experiment.accelerator_space.sample(trial)
        return Candidate(network.to_json(), compression and compression.to_json(), accelerator.to_json(),
                         seed=experiment.seed)
    return Candidate(network.to_json(), compression and compression.to_json(), None,
                     experiment.accelerator_space.to_json(), experiment.nested_accelerators, experiment.seed)


def _ray(address: str | None):
    import ray

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray


def _pruning_reporter(experiment: Experiment, trial: optuna.Trial):
    """A report callback a worker uses to talk to the study's pruner through the storage."""
    if experiment.pruner is None:
        return None
    return PrunerReporter(experiment.name, experiment.storage_url, trial._trial_id, experiment.pruner)


class PrunerReporter:
    """Reports intermediate accuracies from a worker and asks the pruner (single objective)."""

    def __init__(self, study_name, storage_url, trial_id, pruner):
        self.study_name, self.storage_url, self.trial_id, self.pruner = study_name, storage_url, trial_id, pruner
        self._trial = None

    def __call__(self, epoch: int, accuracy: float) -> bool:
        if self._trial is None:
            study = optuna.load_study(study_name=self.study_name, storage=make_storage(self.storage_url),
                                      pruner=self.pruner)
            self._trial = optuna.Trial(study, self.trial_id)
        self._trial.report(accuracy, epoch)
        return self._trial.should_prune()


class Progress:
    """A tqdm bar: trials done, failed, running, Pareto-front size, elapsed time."""

    def __init__(self, total: int | None, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="trial", dynamic_ncols=True)

    @property
    def shown(self) -> bool:
        return self.bar is not None

    def update(self, n: int, **status):
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(status, refresh=True)

    def write(self, line: str):
        if self.bar is not None:
            self.bar.write(line)
        else:
            log.warning(line)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(experiment: Experiment, address: str | None = None, progress: bool = True, stop_after: int | None = None):
    """Run (or resume) ``experiment``; returns :class:`codesign.results.Results`.

    ``address``: a Ray cluster (``HOST:PORT``); default ``RAY_ADDRESS`` or a local
    Ray. ``stop_after``: return after this many trials finished in this call (to
    interrupt a run on purpose; the next call resumes).
    """
    from codesign.results import Results

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(experiment)
    requeued = requeue_interrupted(study)
    if requeued:
        log.warning("resuming %s: %d trial(s) left running by a stopped driver were re-queued", experiment.name, requeued)
    store = FileSystemArtifactStore(str(_mkdir(experiment.folder / "artifacts")))
    cache_folder = str(_mkdir(experiment.folder / "accuracy_cache"))
    ray = _ray(address)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(experiment.cpus_per_trial, 1e-9)))
    options = {"num_cpus": experiment.cpus_per_trial, "max_retries": experiment.max_retries,
               "retry_exceptions": False}
    if experiment.gpus_per_trial:
        options["num_gpus"] = experiment.gpus_per_trial
    if experiment.memory_per_trial:
        options["memory"] = experiment.memory_per_trial
    task = ray.remote(**options)(_evaluate_on_worker)
    dataset = experiment.dataset if isinstance(experiment.dataset, (str, os.PathLike)) else ray.put(experiment.dataset)
    if isinstance(dataset, os.PathLike):
        dataset = str(Path(dataset).resolve())
    hardware_objectives = [o.metric for o in experiment.objectives if o.metric in HARDWARE_METRICS]
    hardware_constraints = [c for c in experiment.constraints if c.metric in HARDWARE_METRICS]

    started = time.monotonic()
    done_before = finished_count(study)
    budget = experiment.trials
    bar = Progress(budget, min(done_before, budget or done_before), progress)
    in_flight: dict = {}
    timings: list[dict] = []  # this call's trials, with the tell included in overhead_s
    finished_now = failed = 0

    def room() -> bool:
        if stop_after is not None and finished_now + len(in_flight) >= stop_after:
            return False
        if experiment.timeout is not None and time.monotonic() - started > experiment.timeout:
            return False
        return budget is None or done_before + finished_now + len(in_flight) < budget

    try:
        while True:
            while len(in_flight) < slots and room():
                asked = time.perf_counter()
                trial = study.ask()
                try:
                    candidate = sample_candidate(experiment, trial)
                except ValueError as error:  # a spec the space cannot build
                    _fail(study, trial, f"invalid candidate: {error}", bar)
                    finished_now += 1
                    failed += 1
                    continue
                ref = task.remote(candidate, dataset, experiment.proxy, cache_folder, hardware_objectives,
                                  hardware_constraints, experiment.tie_break, _pruning_reporter(experiment, trial),
                                  experiment.save_weights)
                in_flight[ref] = (trial, time.perf_counter() - asked, time.perf_counter())
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                trial, sample_s, submitted = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - the worker died beyond its retries
                    result = {"status": "failed", "reason": f"worker lost after {experiment.max_retries} retries: "
                                                            f"{type(error).__name__}: {str(error)[:300]}"}
                timing = _timing(sample_s, time.perf_counter() - submitted, result)
                trial.set_user_attr("timing", timing)
                telling = time.perf_counter()
                ok = _tell(study, trial, result, experiment, store, bar)
                timing["tell_s"] = time.perf_counter() - telling
                timing["overhead_s"] += timing["tell_s"]
                timings.append(timing)
                finished_now += 1
                failed += 0 if ok else 1
                if bar.shown:  # the front size reads every trial from the storage
                    bar.update(1, failed=failed, running=len(in_flight), front=_front_size(study))
    finally:
        bar.close()
    results = Results(study, store)
    results.timings = timings
    return results


def _evaluate_on_worker(*args):
    """The Ray task: score the candidate and say where it ran."""
    import socket

    import ray

    result = evaluate_candidate(*args)
    result["worker"] = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                        "pid": os.getpid()}
    return result


def _timing(sample_s: float, roundtrip_s: float, result: dict) -> dict:
    """Where a trial's time went (before the tell); ``overhead_s`` excludes the accuracy proxy."""
    proxy_s = 0.0 if result.get("accuracy_cached") else float(result.get("proxy_seconds") or 0.0)
    return {"sample_s": sample_s, "roundtrip_s": roundtrip_s, "worker_s": float(result.get("worker_seconds") or 0.0),
            "proxy_s": proxy_s, "overhead_s": sample_s + roundtrip_s - proxy_s}


def _front_size(study) -> int:
    try:
        return len(study.best_trials)
    except ValueError:
        return 0


def _fail(study, trial, reason: str, bar: Progress) -> None:
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    bar.write(f"trial {trial.number} failed: {reason}")


def _tell(study, trial, result: dict, experiment: Experiment, store, bar: Progress) -> bool:
    status = result["status"]
    for key in ("accelerator", "front", "history", "accuracy_cached", "proxy_seconds", "worker"):
        if result.get(key) is not None:
            value = json.loads(result[key]) if key == "accelerator" else result[key]
            trial.set_user_attr(key, value)
    if status == "pruned":
        trial.set_user_attr("fail_reason", result["reason"])
        study.tell(trial, state=TrialState.PRUNED)
        return True
    if status != "ok":
        if result.get("traceback"):
            trial.set_user_attr("traceback", result["traceback"][-2000:])
        _fail(study, trial, result["reason"], bar)
        return False
    metrics = result["metrics"]
    trial.set_user_attr("metrics", metrics)
    for constraint in experiment.constraints:
        for name, value in constraint.violations(metrics).items():
            trial.set_constraint(name, value)
    _store_artifacts(trial, result, store)
    study.tell(trial, [metrics[o.metric] for o in experiment.objectives])
    return True


def _store_artifacts(trial, result: dict, store) -> None:
    files = {"network.json": json.dumps(trial.user_attrs["network"], sort_keys=True).encode(),
             "compression.json": json.dumps(trial.user_attrs["compression"], sort_keys=True).encode(),
             "accelerator.json": result["accelerator"].encode(),
             "cost_report.json": json.dumps(result["cost_report"]).encode()}
    if result.get("front") is not None:
        files["accelerator_front.json"] = json.dumps(result["front"]).encode()
    if result.get("weights") is not None:
        files["weights.msgpack"] = result["weights"]
    ids = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            ids[name] = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
    trial.set_user_attr("artifacts", ids)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
