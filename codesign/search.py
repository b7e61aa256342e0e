"""The search loop: Optuna's ask/tell in the driver, candidates scored as Ray tasks.

``run(experiment)`` opens (or resumes) the experiment's study and keeps as many trials
in flight as the cluster has CPU slots for ``cpus_per_trial``. Each trial is:

1. **ask**: ``study.ask()``;
2. **sample**: the spaces turn the trial into a :class:`~codesign.outcome.Candidate`
   (joint mode: network, compression and accelerator; nested mode: network and
   compression, the evaluator sweeps the accelerator space);
3. **submit**: a Ray task runs the experiment's :class:`~codesign.evaluator.Evaluator`
   on it (with ``TrainedProxy(population=K)``, K trials asked together go in one task
   and are trained together);
4. **wait** for any task to finish;
5. **tell**: its :class:`~codesign.outcome.Outcome` records itself on the trial
   (objectives, constraints, specs, metrics, artifacts, or the reason it failed).

A worker that dies costs that task a Ray retry (``max_retries``); a candidate that
fails for its own reason is recorded with the reason and the search goes on. Running
the same experiment again continues the study: finished trials count toward the
budget, and trials a dead driver left running are failed (read back as
``interrupted``, not counted) and re-queued with their parameters. The set-up and the
bookkeeping live in :mod:`codesign.driver`.
"""

from __future__ import annotations

import logging

import optuna

from codesign.driver import Driver, TrialClock
from codesign.experiment import Experiment
from codesign.outcome import Candidate, Outcome
from codesign.results import Results, no_feasible_design

log = logging.getLogger("codesign")
#: Seconds between looks at a one-off training's progress (a supernet) while no trial finishes.
PROGRESS_POLL_S = 2.0


def run(experiment: Experiment, address: str | None = None, progress: bool = True,
        stop_after: int | None = None, verbose: bool = False) -> Results:
    """Run (or resume) ``experiment``; returns its :class:`~codesign.results.Results`.

    ``address``: a Ray cluster (``HOST:PORT``); default ``RAY_ADDRESS`` or a local
    Ray. ``stop_after``: return after this many trials finished in this call (to
    interrupt a run on purpose; the next call resumes). ``verbose``: show Ray's own
    log lines too (:func:`codesign.cluster.start_ray`).
    """
    driver = Driver(experiment, address, progress, stop_after, verbose)
    in_flight: dict = {}  # Ray reference -> its batch [(trial, candidate, clock)]
    try:
        while True:
            while len(in_flight) < driver.slots and driver.room(_trials(in_flight)):
                batch = ask_batch(driver, _trials(in_flight))
                if batch:
                    ref = driver.submit([(trial, candidate) for trial, candidate, _ in batch])
                    in_flight[ref] = [(trial, candidate, clock.submit()) for trial, candidate, clock in batch]
                    driver.show_running(_trials(in_flight))
            if not in_flight:
                break
            ready, _ = driver.ray.wait(list(in_flight), num_returns=1, timeout=PROGRESS_POLL_S)
            if not ready:
                driver.show_one_offs()
            for ref in ready:
                batch = in_flight.pop(ref)
                outcomes = driver.results(ref, [candidate for _, candidate, _ in batch])
                for (trial, _, clock), outcome in zip(batch, outcomes):
                    driver.tell(trial, outcome, clock, _trials(in_flight), len(batch))
    finally:
        driver.close()
    results = Results(driver.study, driver.store, timings=driver.timings)
    if experiment.constraints and results.completed and not results.pareto_front:
        log.warning("%s: %s", experiment.name, no_feasible_design(results.completed))
    return results


def ask_batch(driver: Driver, in_flight: int) -> list[tuple[optuna.Trial, Candidate, TrialClock]]:
    """Up to ``driver.batch_size`` new trials and their candidates, as the budget allows (one Ray task's work).

    A trial whose parameters the spaces cannot build is told failed at once, with the reason.
    """
    batch = []
    while len(batch) < driver.batch_size and driver.room(in_flight + len(batch)):
        clock, failure = TrialClock(), None
        with driver.sampling():
            trial = driver.ask()
            try:
                candidate = sample_candidate(driver.experiment, trial)
            except ValueError as error:  # a spec the space cannot build
                failure = Outcome.failed(f"invalid candidate: {error}")
        if failure is not None:
            driver.tell(trial, failure, clock, in_flight + len(batch))
            continue
        if driver.skip_if_evaluated(trial, candidate, clock):  # never spend budget on a design twice
            continue
        batch.append((trial, candidate, clock))
    return batch


def _trials(in_flight: dict) -> int:
    return sum(len(batch) for batch in in_flight.values())


def sample_candidate(experiment: Experiment, trial: optuna.Trial) -> Candidate:
    """The specs an Optuna trial chooses from the experiment's spaces."""
    network = experiment.searched_network_space.sample(trial)
    compression = None
    if experiment.compression_space is not None:
        compression = experiment.compression_space.sample(trial, network)
    accelerator = experiment.accelerator_space.sample(trial) if experiment.mode == "joint" else None
    return Candidate(network, compression, accelerator)
