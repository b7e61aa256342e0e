"""The search loop's state around its ask/tell loop: the study, the budget, the designs already evaluated.

:class:`Driver` is what :func:`codesign.search.run` asks and tells through: the study
(created or resumed, with its lease: :mod:`codesign.lease`), the artifact store, the
Ray task with the evaluator in Ray's object store once (:mod:`codesign.cluster`), how
many trials fit in flight and the budget left, the designs already evaluated, and the
progress bar (:mod:`codesign.progress`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import time

import numpy as np
import optuna

from codesign import lease
from codesign.accuracy.cache import describe_progress, one_offs_in_progress
from codesign.artifacts import open_artifact_store
from codesign.cluster import evaluate_on_worker, start_ray, task_options
from codesign.evaluator import Evaluator
from codesign.experiment import Experiment
from codesign.outcome import Candidate, Outcome, Status, TrialTiming, design_key, trial_status
from codesign.progress import ParetoFront, Progress, TrialClock, best_trials
from codesign.storage import (DRIVER, FIDELITY_TRIAL, SQLITE, DeskReporter, disk_full_or, finished_count,
                              open_fidelity_study, open_pruner_desk, open_study, read_trials,
                              requeue_interrupted)

log = logging.getLogger("codesign")
#: A one-off training's progress record not updated for this long is a dead worker's (it writes every 2 s).
STALE_PROGRESS_S = 300.0
#: How often a running driver re-queues the trials of other drivers that died meanwhile (seconds).
REQUEUE_EVERY_S = 60.0


class Driver:
    """One call of :func:`codesign.search.run`: the study, Ray, the budget and the progress bar."""

    def __init__(self, experiment: Experiment, address: str | None, progress: bool, stop_after: int | None,
                 verbose: bool = False):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.experiment = experiment
        # the stores answer before anything is written (an object store checked by a probe): the run folder,
        # when it is in an object store, then the artifact store (which may hold the drivers' leases)
        if experiment.in_store:
            open_artifact_store(experiment.run_location, check_writes=True, field="run_folder")
        else:
            experiment.folder.mkdir(parents=True, exist_ok=True)
        self.store = open_artifact_store(experiment.artifacts_location, check_writes=True)
        self.lease = lease.acquire(experiment.lease_location)
        try:
            self._start(experiment, address, progress, stop_after, verbose)
        except BaseException:
            self.lease.release()
            raise

    def _start(self, experiment: Experiment, address: str | None, progress: bool, stop_after: int | None,
               verbose: bool):
        others = lease.live_drivers(experiment.lease_location, exclude=self.lease.info.id)
        if others and experiment.storage_url.startswith(SQLITE):
            raise ValueError(f"{experiment.run_location}: a search is already running on this SQLite study "
                             f"(driver {others[0].describe()}); SQLite takes one driver: wait for it or stop "
                             f"it. Several drivers can share a study on the journal file (the default "
                             f"storage) or a database server")
        evaluator = Evaluator.from_experiment(experiment)  # a dataset on disk is read here, before the study
        self.study = open_study(experiment)
        requeued = requeue_interrupted(self.study, {self.lease.info.id} | {o.id for o in others}, bool(others))
        if requeued:
            log.warning("resuming %s: %d trial(s) left running by a stopped driver were re-queued",
                        experiment.name, requeued)
        self.next_requeue = time.monotonic() + REQUEUE_EVERY_S
        self.fidelity = open_fidelity_study(experiment)  # where a multi-objective pruner decides
        self.twins: dict[int, optuna.Trial] = {}  # trial number -> its twin in the fidelity study
        self.designs = evaluated_designs(self.study)  # design key -> the trial that evaluates it
        self.duplicates_in_a_row = 0
        # its own stream: seeded like the study's sampler it would replay that sampler's random start-up draws
        asked = len(self.study.get_trials(deepcopy=False))
        explorer_seed = np.random.SeedSequence([experiment.seed, asked, 1]).generate_state(1)[0]
        self.explorer = optuna.samplers.RandomSampler(seed=int(explorer_seed))
        self.ray = start_ray(address, verbose=verbose)
        self.desk = None  # the pruner desk, opened by the first trial a pruner watches
        self.task = self.ray.remote(**task_options(experiment))(evaluate_on_worker)
        self.evaluator = self.ray.put(evaluator)  # once per run: the workers share it, dataset included
        cpus = self.ray.cluster_resources().get("CPU", 1)
        self.slots = max(1, int(cpus // max(experiment.cpus_per_trial, 1e-9)))
        self.batch_size = experiment.bound_proxy.pairs_per_task  # trials per task
        self.started = time.monotonic()
        self.started_at = time.time()
        self.done_before = finished_count(self.study)
        self.stop_after = stop_after
        self.finished = self.failed = 0
        self.timings: list[TrialTiming] = []  # this call's trials, their tells included
        budget = experiment.trials
        self.bar = Progress(budget, min(self.done_before, budget or self.done_before), progress)
        self.front = ParetoFront(experiment.directions)
        if self.bar.shown:
            self.front.add_trials(best_trials(self.study))

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
        if budget is None:
            return True
        if self.done_before + self.finished + in_flight >= budget:
            return False
        return self.counted_elsewhere() + in_flight < budget

    def counted_elsewhere(self) -> int:
        """The study's trials that count toward the budget, read from the study now: every driver's finished
        trials, and the trials other live drivers of the run folder are running. This driver's own trials in
        flight are not among them (the caller adds them), so two drivers on one study stop at its budget."""
        others = {driver.id for driver in lease.live_drivers(self.experiment.lease_location, exclude=self.lease.info.id)}
        self.requeue_the_dead(others)
        running = read_trials(self.study, states=(optuna.trial.TrialState.RUNNING,)) if others else []
        return finished_count(self.study) + sum(1 for t in running if t.user_attrs.get(DRIVER) in others)

    def requeue_the_dead(self, live_others: set[str]) -> None:
        """Every REQUEUE_EVERY_S: re-queue the trials of drivers that died since this one started (a driver
        re-queues those of drivers dead before it when it starts). Trials not yet marked with their driver
        are left alone, as another driver may have just asked them."""
        if time.monotonic() < self.next_requeue:
            return
        self.next_requeue = time.monotonic() + REQUEUE_EVERY_S
        requeued = requeue_interrupted(self.study, {self.lease.info.id} | live_others, others_running=True)
        if requeued:
            log.warning("%s: %d trial(s) left running by a driver that stopped were re-queued",
                        self.experiment.name, requeued)

    def submit(self, batch: list[tuple[optuna.Trial, Candidate]]):
        """Start scoring a batch of trials' candidates as one Ray task; returns its object reference."""
        reporters = [self._reporter(trial) for trial, _ in batch]
        return self.task.remote(self.evaluator, [candidate for _, candidate in batch], reporters)

    def _reporter(self, trial: optuna.Trial) -> DeskReporter | None:
        """What the worker reports the trial's learning curve to, through the driver's pruner desk: the trial
        itself, its twin in the fidelity study (several objectives), or nothing (no pruner)."""
        experiment = self.experiment
        if experiment.pruner is None:
            return None
        if self.desk is None:
            self.desk = open_pruner_desk(self.ray, experiment.storage_url, experiment.pruner)
        if self.fidelity is None:
            return DeskReporter(self.desk, experiment.name, trial.number)
        twin = self.twins[trial.number] = self.fidelity.ask()
        trial.set_user_attr(FIDELITY_TRIAL, twin.number)
        return DeskReporter(self.desk, self.fidelity.study_name, twin.number)

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
                                        f"({outcome.reason[:200]})", self.experiment.run_location)
        timing = clock.timing(outcome, batch)
        telling = time.perf_counter()
        self._record(trial, outcome.replace(timing=timing))
        self.timings.append(dataclasses.replace(timing, tell_s=time.perf_counter() - telling))
        self.finished += 1
        if outcome.status not in (Status.COMPLETE, Status.PRUNED):
            self.failed += 1
            self.bar.write(f"trial {trial.number} {outcome.status.value}: {outcome.reason}")
        if self.bar.shown:
            if outcome.ok and outcome.feasible:
                self.front.add(outcome.values)
            self.bar.update(1, failed=self.failed, running=in_flight, front=len(self.front))

    def show_one_offs(self) -> None:
        """On the bar: how far a one-off training the trials wait for (a supernet, in a worker) has got."""
        if not self.bar.shown:
            return
        # this run's, and alive: a training that stopped writing (its worker died) is not shown
        since = max(self.started_at, time.time() - STALE_PROGRESS_S)
        records = one_offs_in_progress(self.experiment.accuracy_cache_location, since=since)
        self.bar.update(0, training="; ".join(describe_progress(r) for r in records) or None)

    def show_running(self, in_flight: int) -> None:
        """The bar's count of trials running: this driver's trials in flight, once a batch is submitted."""
        self.bar.update(0, running=in_flight)

    def _record(self, trial: optuna.Trial, outcome: Outcome) -> None:
        """``outcome.tell``, with a full disk said as such, and a trial another driver already finished
        (it took this driver for dead) dropped with a warning instead of ending the search."""
        # without a pruner the learning curve goes to the trial's intermediate values; with one, the worker
        # reported it (to the trial, or to its twin: TPE reads a pruned multi-objective trial's intermediate
        # values with a single direction, which such a study has not)
        try:
            outcome.tell(self.study, trial, self.store, learning_curve=self.experiment.pruner is None)
            self._tell_twin(trial.number, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was finished by another driver; this driver's result for it is dropped",
                        trial.number)
        except Exception as error:
            raise disk_full_or(error, self.experiment.run_location, trial.number) from error

    def _tell_twin(self, number: int, outcome: Outcome) -> None:
        """Finish the trial's twin in the fidelity study: its final quality, or pruned, or failed."""
        twin = self.twins.pop(number, None)
        if twin is None:
            return
        quality = self.experiment.quality_metric
        if outcome.ok and quality in outcome.metrics:
            self.fidelity.tell(twin, float(outcome.metrics[quality]))
        else:
            self.fidelity.tell(twin, state=optuna.trial.TrialState.PRUNED if outcome.status == Status.PRUNED
                               else optuna.trial.TrialState.FAIL)

    def close(self):
        self.bar.close()
        if self.desk is not None:
            self.ray.kill(self.desk)
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
    for trial in read_trials(study):
        if trial_status(trial) in (None, Status.INTERRUPTED, Status.DUPLICATE) or "network" not in trial.user_attrs:
            continue
        candidate = Outcome.from_trial(trial, artifacts=()).candidate
        designs.setdefault(design_key(candidate), trial.number)
    return designs


