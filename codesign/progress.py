"""What the user sees of a running search: the progress bar, the Pareto front it counts, each trial's clock.

:class:`Progress` is a tqdm bar (trials done, failed, running, front size, elapsed
time); :class:`ParetoFront` keeps the front's size as trials finish, without reading the
storage on every tell; :class:`TrialClock` times a trial from the driver's side into a
:class:`~codesign.outcome.TrialTiming`, so the loop's own overhead is measured on every
trial.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from codesign.metrics import pareto_mask
from codesign.outcome import Outcome, TrialTiming

log = logging.getLogger("codesign")


class TrialClock:
    """Times one trial from the driver's side into a :class:`~codesign.outcome.TrialTiming`.

    ``queued_s`` runs from the worker's finish (by the wall clock) to the tell; on a
    cluster it assumes the nodes' clocks agree (NTP). It is kept within what the round trip
    leaves beside the task's own time, ``[0, roundtrip_s - worker time]``: the wall clock
    can be stepped while the round trip, timed by the monotonic clock, runs.
    """

    def __init__(self):
        self.asked = time.perf_counter()
        self.sample_s = 0.0
        self.submitted = self.asked

    def submit(self) -> "TrialClock":
        self.submitted = time.perf_counter()
        self.sample_s = self.submitted - self.asked
        return self

    def timing(self, outcome: Outcome, batch: int = 1) -> TrialTiming:
        """The trial's share of its task's round trip (``batch`` trials per task) and of the proxy's time."""
        now_wall, now = time.time(), time.perf_counter()
        roundtrip = now - self.submitted
        worker = outcome.worker
        finished_at = None if worker is None else worker.finished_at
        task_s = 0.0 if worker is None else worker.seconds * worker.batch
        queued = 0.0 if finished_at is None else min(max(now_wall - finished_at, 0.0), max(roundtrip - task_s, 0.0))
        return TrialTiming(sample_s=self.sample_s, roundtrip_s=roundtrip / batch, queued_s=queued / batch,
                           worker_s=0.0 if worker is None else worker.seconds,
                           proxy_s=0.0 if outcome.cached else outcome.proxy_seconds)


def best_trials(study) -> list:
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
        self.status: dict = {}
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, unit="trial", dynamic_ncols=True)

    @property
    def shown(self) -> bool:
        return self.bar is not None

    def update(self, n: int, **status):
        """``n`` more trials done; ``status`` (failed, running, front) changes what the bar shows beside them."""
        self.status.update(status)
        self.status = {k: v for k, v in self.status.items() if v is not None}  # None: no longer shown
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(self.status, refresh=True)

    def write(self, line: str):
        if self.bar is not None:
            self.bar.write(line)
        else:
            log.warning(line)

    def close(self):
        if self.bar is not None:
            self.bar.close()
