"""The search loop's set-up and bookkeeping: Ray, the study, the budget, timing, progress.

:class:`Driver` holds what :func:`codesign.search.run` needs around its ask/tell loop:
the study (created or resumed), the artifact store, Ray (local on the loopback address
unless a cluster is given) with the evaluator in its object store once, how many trials
fit in flight, the budget left, and the progress bar. :class:`TrialClock` records where
a trial's time went, so the loop's own overhead (everything but the accuracy proxy) is
measured on every trial.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore

from codesign.evaluator import Evaluator
from codesign.experiment import Experiment
from codesign.metrics import pareto_mask
from codesign.outcome import Candidate, Outcome, Status
from codesign.storage import PrunerReporter, finished_count, open_study, requeue_interrupted

log = logging.getLogger("codesign")


class TrialClock:
    """Where one trial's time went; ``overhead_s`` is the loop's own cost of it, everything but the accuracy proxy.

    ``roundtrip_s`` runs from the submit to the tell. Part of it, ``queued_s``, is the
    time the finished result waited while the driver sampled and told other trials
    (from the worker's finish, by the wall clock, to the tell). That work is those
    trials' own overhead, so ``overhead_s`` leaves it out and counts each piece of the
    driver's work once: ``sample_s + roundtrip_s - queued_s - proxy_s + tell_s``. On a
    cluster ``queued_s`` assumes the nodes' clocks agree (NTP); it is kept within
    ``[0, roundtrip_s]``.
    """

    def __init__(self):
        self.asked = time.perf_counter()
        self.sample_s = 0.0
        self.submitted = self.asked

    def submit(self) -> "TrialClock":
        self.submitted = time.perf_counter()
        self.sample_s = self.submitted - self.asked
        return self

    def timing(self, outcome: Outcome, batch: int = 1) -> dict[str, float]:
        """The trial's share of its task's round trip (``batch`` trials per task) and of the proxy's time."""
        roundtrip = time.perf_counter() - self.submitted
        worker = outcome.worker or {}
        finished_at = worker.get("finished_at")
        queued = 0.0 if finished_at is None else min(max(time.time() - float(finished_at), 0.0), roundtrip)
        roundtrip_s, queued_s = roundtrip / batch, queued / batch
        proxy_s = 0.0 if outcome.cached else outcome.proxy_seconds
        return {"sample_s": self.sample_s, "roundtrip_s": roundtrip_s, "queued_s": queued_s,
                "worker_s": float(worker.get("seconds", 0.0)), "proxy_s": proxy_s,
                "overhead_s": self.sample_s + roundtrip_s - queued_s - proxy_s}


class Driver:
    """One call of :func:`codesign.search.run`: the study, Ray, the budget and the progress bar."""

    def __init__(self, experiment: Experiment, address: str | None, progress: bool, stop_after: int | None):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.experiment = experiment
        self.study = open_study(experiment)
        requeued = requeue_interrupted(self.study)
        if requeued:
            log.warning("resuming %s: %d trial(s) left running by a stopped driver were re-queued",
                        experiment.name, requeued)
        (experiment.folder / "artifacts").mkdir(parents=True, exist_ok=True)
        self.store = FileSystemArtifactStore(str(experiment.folder / "artifacts"))
        self.ray = start_ray(address)
        self.task = self.ray.remote(**task_options(experiment))(evaluate_on_worker)
        self.evaluator = self.ray.put(Evaluator.from_experiment(experiment))
        cpus = self.ray.cluster_resources().get("CPU", 1)
        self.slots = max(1, int(cpus // max(experiment.cpus_per_trial, 1e-9)))
        self.batch_size = getattr(experiment.proxy, "population", 1)  # trials per task
        self.started = time.monotonic()
        self.done_before = finished_count(self.study)
        self.stop_after = stop_after
        self.finished = self.failed = 0
        self.timings: list[dict] = []  # this call's trials, the tell included in overhead_s
        budget = experiment.trials
        self.bar = Progress(budget, min(self.done_before, budget or self.done_before), progress)
        self.front = ParetoFront(experiment.directions)
        if self.bar.shown:
            self.front.add_trials(_best_trials(self.study))

    def room(self, in_flight: int) -> bool:
        """Whether another trial may start: within the trial budget, the time budget and ``stop_after``."""
        if self.stop_after is not None and self.finished + in_flight >= self.stop_after:
            return False
        if self.experiment.timeout is not None and time.monotonic() - self.started > self.experiment.timeout:
            return False
        budget = self.experiment.trials
        return budget is None or self.done_before + self.finished + in_flight < budget

    def submit(self, batch: list[tuple[optuna.Trial, Candidate]]):
        """Start scoring a batch of trials' candidates as one Ray task; returns its object reference."""
        reporters = []
        for trial, _ in batch:
            reporters.append(None if self.experiment.pruner is None else PrunerReporter(
                self.experiment.name, self.experiment.storage_url, trial.number, self.experiment.pruner))
        return self.task.remote(self.evaluator, [candidate for _, candidate in batch], reporters)

    def results(self, ref, candidates: list[Candidate]) -> list[Outcome]:
        """The task's outcomes; a worker lost beyond its retries fails its trials, it does not crash the loop."""
        try:
            return self.ray.get(ref)
        except Exception as error:  # noqa: BLE001 - the worker died beyond its retries
            return [Outcome.failed(f"worker lost after {self.experiment.max_retries} retries: "
                                   f"{type(error).__name__}: {str(error)[:300]}", candidate) for candidate in candidates]

    def tell(self, trial: optuna.Trial, outcome: Outcome, clock: TrialClock, in_flight: int = 0,
             batch: int = 1) -> None:
        """Record the outcome with its timing (its share of a task of ``batch`` trials), and count it."""
        timing = clock.timing(outcome, batch)
        telling = time.perf_counter()
        outcome.replace(timing=timing).tell(self.study, trial, self.store,
                                            learning_curve=self.experiment.pruner is None)
        timing["tell_s"] = time.perf_counter() - telling
        timing["overhead_s"] += timing["tell_s"]
        self.timings.append(timing)
        self.finished += 1
        if outcome.status not in (Status.COMPLETE, Status.PRUNED):
            self.failed += 1
            self.bar.write(f"trial {trial.number} {outcome.status.value}: {outcome.reason}")
        if self.bar.shown:
            if outcome.ok and outcome.feasible:
                self.front.add(outcome.values)
            self.bar.update(1, failed=self.failed, running=in_flight, front=len(self.front))

    def close(self):
        self.bar.close()


def evaluate_on_worker(evaluator: Evaluator, candidates: list[Candidate], reporters: list) -> list[Outcome]:
    """The Ray task: score a batch of candidates and say where they ran and for how long."""
    import ray

    started = time.perf_counter()
    if evaluator.compilation_cache:
        use_compilation_cache(evaluator.compilation_cache)
    outcomes = evaluator.score_batch(candidates, reporters)
    worker = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
              "seconds": (time.perf_counter() - started) / len(candidates), "batch": len(candidates),
              "finished_at": time.time()}
    return [outcome.replace(worker=worker) for outcome in outcomes]


def use_compilation_cache(folder: str) -> None:
    """Keep this process's XLA compilations in ``folder`` (the run folder's), so a rerun or a resume
    of the run, and every worker that shares the run folder, load them instead of compiling again.

    The folder is trusted code, as JAX warns: it lives in the user's own run folder.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir == folder:
        return
    os.makedirs(folder, exist_ok=True)
    compilation_cache.set_cache_dir(folder)
    compilation_cache.reset_cache()  # a Ray worker may have served another run: start on this folder
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def task_options(experiment: Experiment) -> dict:
    """Ray resources and retries of one trial's task."""
    options = {"num_cpus": experiment.cpus_per_trial, "max_retries": experiment.max_retries,
               "retry_exceptions": False}
    if experiment.gpus_per_trial:
        options["num_gpus"] = experiment.gpus_per_trial
    if experiment.memory_per_trial:
        options["memory"] = experiment.memory_per_trial
    return options


def start_ray(address: str | None):
    """Ray, connected to ``address`` (or ``RAY_ADDRESS``) or started locally; an already started Ray is used."""
    import ray

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray


def _best_trials(study) -> list:
    try:
        return study.best_trials
    except ValueError:  # no completed trial yet
        return []


class ParetoFront:
    """The non-dominated objective vectors of the feasible completed trials, kept as trials finish.

    Its size equals ``len(study.best_trials)`` (equal vectors are all kept, as Optuna
    keeps them) without reading every trial from the storage on each tell.
    """

    def __init__(self, directions: list[str]):
        self.signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
        self.points = np.empty((0, len(directions)))  # minimised: values times signs

    def add(self, values) -> None:
        points = np.vstack([self.points, self.signs * np.asarray(values, float)])
        self.points = points[pareto_mask(points)]

    def add_trials(self, trials) -> None:
        for trial in trials:
            self.add(trial.values)

    def __len__(self) -> int:
        return len(self.points)


@dataclasses.dataclass
class Progress:
    """A tqdm bar: trials done, failed, running, Pareto-front size, elapsed time."""

    total: int | None
    initial: int
    enabled: bool

    def __post_init__(self):
        self.bar = None
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, unit="trial", dynamic_ncols=True)

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
