"""The search loop's set-up and bookkeeping: Ray, the study, the budget, timing, progress.

:class:`Driver` holds what :func:`codesign.search.run` needs around its ask/tell loop:
the study (created or resumed), the artifact store, Ray (local on the loopback address
unless a cluster is given) with the evaluator in its object store once, how many trials
fit in flight, the budget left, and the progress bar. :class:`TrialClock` records where
a trial's time went, so the loop's own overhead (everything but the accuracy proxy) is
measured on every trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore

from codesign.evaluator import Evaluator
from codesign.experiment import Experiment
from codesign.metrics import pareto_mask
from codesign import lease
from codesign.cluster import start_ray
from codesign.outcome import Candidate, Outcome, Status, design_key, trial_status
from codesign.storage import (DRIVER, SQLITE, PrunerReporter, finished_count, open_study, requeue_interrupted,
                              root_cause)

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
        experiment.folder.mkdir(parents=True, exist_ok=True)
        self.lease = lease.acquire(experiment.folder)
        try:
            self._start(experiment, address, progress, stop_after)
        except BaseException:
            self.lease.release()
            raise

    def _start(self, experiment: Experiment, address: str | None, progress: bool, stop_after: int | None):
        others = lease.live_drivers(experiment.folder, exclude=self.lease.info.id)
        if others and experiment.storage_url.startswith(SQLITE):
            raise ValueError(f"{experiment.folder}: a search is already running on this SQLite study "
                             f"(driver {others[0].describe()}); SQLite takes one driver: wait for it or stop "
                             f"it. Several drivers can share a study on the journal file (the default "
                             f"storage) or a database server")
        self.study = open_study(experiment)
        requeued = requeue_interrupted(self.study, {self.lease.info.id} | {o.id for o in others}, bool(others))
        if requeued:
            log.warning("resuming %s: %d trial(s) left running by a stopped driver were re-queued",
                        experiment.name, requeued)
        self.designs = evaluated_designs(self.study)  # design key -> the trial that evaluates it
        self.duplicates_in_a_row = 0
        # its own stream: seeded like the study's sampler it would replay that sampler's random start-up draws
        asked = len(self.study.get_trials(deepcopy=False))
        explorer_seed = np.random.SeedSequence([experiment.seed, asked, 1]).generate_state(1)[0]
        self.explorer = optuna.samplers.RandomSampler(seed=int(explorer_seed))
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

    def ask(self) -> optuna.Trial:
        """A new trial, marked as this driver's (so another driver leaves it alone while this one lives)."""
        trial = self.study.ask()
        trial.set_user_attr(DRIVER, self.lease.info.id)
        return trial

    @contextlib.contextmanager
    def sampling(self):
        """Around asking a trial and suggesting its parameters: right after a duplicate, they are drawn at
        random, because a model-based sampler learns nothing from a duplicate (it is not a completed trial)
        and would propose the same design again."""
        sampler = self.study.sampler
        if self.duplicates_in_a_row:
            self.study.sampler = self.explorer
        try:
            yield
        finally:
            self.study.sampler = sampler

    def skip_if_evaluated(self, trial: optuna.Trial, candidate: Candidate, clock: TrialClock) -> bool:
        """Whether ``candidate``'s design was already evaluated (or is being); if so the trial is told
        ``duplicate`` at once: not run, and not counted in the budget."""
        key = design_key(candidate)
        first = self.designs.setdefault(key, trial.number)
        if first == trial.number:
            self.duplicates_in_a_row = 0
            return False
        self.duplicates_in_a_row += 1
        outcome = Outcome(Status.DUPLICATE, candidate, reason=f"the design of trial {first}, already evaluated")
        self._record(trial, outcome.replace(timing=clock.timing(outcome)))
        return True

    @property
    def exhausted(self) -> bool:
        """The sampler keeps proposing designs already evaluated (a small space, or a converged sampler)."""
        return self.duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW

    def room(self, in_flight: int) -> bool:
        """Whether another trial may start: within the trial budget, the time budget and ``stop_after``."""
        if self.exhausted:
            return False
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
        if outcome.status == Status.FAILED and f"[Errno {errno.ENOSPC}]" in outcome.reason:
            # the disk, not the candidate: the trial stays unfinished, so the resumed run re-queues it
            raise OSError(errno.ENOSPC, f"disk full: trial {trial.number} could not be scored "
                                        f"({outcome.reason[:200]})", str(self.experiment.folder))
        timing = clock.timing(outcome, batch)
        telling = time.perf_counter()
        self._record(trial, outcome.replace(timing=timing))
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

    def _record(self, trial: optuna.Trial, outcome: Outcome) -> None:
        """``outcome.tell``, with a full disk said as such, and a trial another driver already finished
        (it took this driver for dead) dropped with a warning instead of ending the search."""
        try:
            outcome.tell(self.study, trial, self.store, learning_curve=self.experiment.pruner is None)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was finished by another driver; this driver's result for it is dropped",
                        trial.number)
        except Exception as error:
            raise disk_full_or(error, self.experiment.folder, trial.number) from error

    def close(self):
        self.bar.close()
        self.lease.release()
        if self.exhausted:
            log.warning("%s: stopped early: the sampler proposed %d designs in a row that were already "
                        "evaluated (the space may be exhausted)", self.experiment.name, MAX_DUPLICATES_IN_A_ROW)


#: Designs proposed in a row that were already evaluated, after which a run stops (its space is exhausted).
MAX_DUPLICATES_IN_A_ROW = 100


def evaluated_designs(study: optuna.Study) -> dict[str, int]:
    """Design key -> the first trial that evaluated it, over the study's finished trials (interrupted and
    duplicate ones aside: they evaluated nothing)."""
    designs: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial_status(trial) in (None, Status.INTERRUPTED, Status.DUPLICATE) or "network" not in trial.user_attrs:
            continue
        candidate = Outcome.from_trial(trial, artifacts=()).candidate
        designs.setdefault(design_key(candidate), trial.number)
    return designs


def disk_full_or(error: BaseException, folder: Path, trial: int) -> BaseException:
    """``error``, or an ``OSError(ENOSPC)`` saying so when the disk of ``folder`` is full (a full disk shows
    up as a database or journal error deep inside the storage)."""
    cause = root_cause(error)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if getattr(cause, "errno", None) == errno.ENOSPC or "disk is full" in str(cause) or (
            free is not None and free < 1 << 20):
        where = "" if free is None else f" ({free:,} bytes free)"
        return OSError(errno.ENOSPC, f"disk full{where}: trial {trial} could not be recorded", str(folder))
    return error


def evaluate_on_worker(evaluator: Evaluator, candidates: list[Candidate], reporters: list) -> list[Outcome]:
    """The Ray task: score a batch of candidates and say where they ran and for how long."""
    import ray

    started = time.perf_counter()
    outcomes = evaluator.score_batch(candidates, reporters)
    worker = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
              "seconds": (time.perf_counter() - started) / len(candidates), "batch": len(candidates),
              "finished_at": time.time()}
    return [outcome.replace(worker=worker) for outcome in outcomes]


def task_options(experiment: Experiment) -> dict:
    """Ray resources and retries of one trial's task."""
    options = {"num_cpus": experiment.cpus_per_trial, "max_retries": experiment.max_retries,
               "retry_exceptions": False}
    if experiment.gpus_per_trial:
        options["num_gpus"] = experiment.gpus_per_trial
    if experiment.memory_per_trial:
        options["memory"] = experiment.memory_per_trial
    return options


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
