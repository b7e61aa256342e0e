"""Choosers: how a space's ``build(choose)`` gets each decision.

A chooser is ``choose(name, options) -> value``. An Optuna trial, a numpy generator and
a plain ``trial.params`` dict are the three sources, so ``sample``, ``draw`` and
``from_params`` of every space share one build path.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

Chooser = Callable[[str, tuple], Any]


def trial_chooser(trial) -> Chooser:
    """Decisions from an Optuna trial (``suggest_categorical`` with the decision's name)."""
    return lambda name, options: trial.suggest_categorical(name, options)


def rng_chooser(rng: np.random.Generator) -> Chooser:
    """Uniformly drawn decisions, without Optuna."""
    return lambda name, options: options[int(rng.integers(len(options)))]


def params_chooser(params: Mapping[str, Any], owner: str) -> Chooser:
    """Decisions read back from a trial's parameters; a missing or foreign value names ``owner`` and the parameter."""
    def choose(name, options):
        if name not in params:
            raise ValueError(f"{owner}: parameter {name!r} is missing from the trial's parameters")
        if params[name] not in options:
            raise ValueError(f"{owner}: parameter {name!r}={params[name]!r} is not one of {options}")
        return params[name]
    return choose


def asking_only_for_choices(choose: Chooser) -> Chooser:
    """``choose``, except that a decision with a single option takes it without asking."""
    return lambda name, options: options[0] if len(options) == 1 else choose(name, options)
