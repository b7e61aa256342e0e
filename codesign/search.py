"""The search loop: Optuna's ask/tell in the driver, candidates scored as Ray tasks.

``run(experiment)`` opens (or resumes) the experiment's study and keeps as many trials
in flight as the cluster has CPU slots for ``cpus_per_trial``. Each trial is:

1. **ask**: ``study.ask()``;
2. **sample**: the spaces turn the trial into a :class:`~codesign.outcome.Candidate`
   (joint mode: network, compression and accelerator; nested mode: network and
   compression, the evaluator sweeps the accelerator space);
3. **submit**: a Ray task runs the experiment's :class:`~codesign.evaluator.Evaluator`
   on it;
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

import optuna

from codesign.driver import Driver, TrialClock
from codesign.experiment import Experiment
from codesign.outcome import Candidate, Outcome
from codesign.results import Results


def run(experiment: Experiment, address: str | None = None, progress: bool = True,
        stop_after: int | None = None) -> Results:
    """Run (or resume) ``experiment``; returns its :class:`~codesign.results.Results`.

    ``address``: a Ray cluster (``HOST:PORT``); default ``RAY_ADDRESS`` or a local
    Ray. ``stop_after``: return after this many trials finished in this call (to
    interrupt a run on purpose; the next call resumes).
    """
    driver = Driver(experiment, address, progress, stop_after)
    in_flight: dict = {}  # Ray reference -> (trial, candidate, clock)
    try:
        while True:
            while len(in_flight) < driver.slots and driver.room(len(in_flight)):
                clock = TrialClock()
                trial = driver.study.ask()
                try:
                    candidate = sample_candidate(experiment, trial)
                except ValueError as error:  # a spec the space cannot build
                    driver.tell(trial, Outcome.failed(f"invalid candidate: {error}"), clock, len(in_flight))
                    continue
                in_flight[driver.submit(trial, candidate)] = (trial, candidate, clock.submit())
            if not in_flight:
                break
            ready, _ = driver.ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                trial, candidate, clock = in_flight.pop(ref)
                driver.tell(trial, driver.result(ref, candidate), clock, len(in_flight))
    finally:
        driver.close()
    return Results(driver.study, driver.store, timings=driver.timings)


def sample_candidate(experiment: Experiment, trial: optuna.Trial) -> Candidate:
    """The specs an Optuna trial chooses from the experiment's spaces."""
    network = experiment.network_space.sample(trial)
    compression = None
    if experiment.compression_space is not None:
        compression = experiment.compression_space.sample(trial, network)
    accelerator = experiment.accelerator_space.sample(trial) if experiment.mode == "joint" else None
    return Candidate(network, compression, accelerator)
