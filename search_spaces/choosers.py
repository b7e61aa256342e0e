"""Choosers: how a space's ``build(choose)`` gets each decision, and how a space checks its choices.

A chooser is ``choose(name, options) -> value``. An Optuna trial, a numpy generator and
a plain ``trial.params`` dict are the three sources; :class:`ChooserSpace` gives every
space (network, network variants, compression, accelerator) ``sample``, ``draw`` and
``from_params`` over its one ``build(choose, *context)``, so a sampled spec is
reproducible from its parameters alone.

:func:`choices` validates a space field's tuple of options against an :class:`Allowed`
(``integers(1)``, ``numbers(0.05)``, ``one_of(BLOCKS)``, ...); its errors name the space,
the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import numpy as np

Chooser = Callable[[str, tuple], Any]


def trial_chooser(trial) -> Chooser:
    """Decisions from an Optuna trial (``suggest_categorical`` with the decision's name)."""
    return lambda name, options: trial.suggest_categorical(name, options)


def rng_chooser(rng: np.random.Generator) -> Chooser:
    """Uniformly drawn decisions, without Optuna."""
    return lambda name, options: options[int(rng.integers(len(options)))]


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def params_chooser(params: Mapping[str, Any], owner: str) -> Chooser:
    """Decisions read back from a trial's parameters; a missing or foreign value names ``owner`` and the parameter.

    A value matches an option when it is equal and both or neither are booleans (``1`` is
    not ``True``); the option itself is returned, so e.g. ``16`` for ``16.0`` builds the
    same spec as the trial did.
    """
    def choose(name, options):
        if name not in params:
            raise ValueError(f"{owner}: parameter {name!r} is missing from the trial's parameters; "
                             f"its choices are {options!r}")
        value = params[name]
        for option in options:
            if _is_bool(option) == _is_bool(value) and option == value:
                return option
        raise ValueError(f"{owner}: parameter {name!r}={value!r} is not one of {options!r}")
    return choose


def asking_only_for_choices(choose: Chooser) -> Chooser:
    """``choose``, except that a decision with a single option takes it without asking."""
    return lambda name, options: options[0] if len(options) == 1 else choose(name, options)


class ChooserSpace:
    """``sample`` / ``draw`` / ``from_params`` for a space whose ``build(choose, *context)`` walks its decisions.

    ``context`` is what a build needs besides the decisions (the compression space's
    ``network``), passed on positionally or by name. ``OWNER`` names the space in errors.
    """

    OWNER = "space"

    def build(self, choose: Chooser, *context, **named_context):
        raise NotImplementedError

    def sample(self, trial, *context, **named_context):
        """A spec from an Optuna trial (``suggest_categorical`` with stable names)."""
        return self.build(trial_chooser(trial), *context, **named_context)

    def draw(self, rng: np.random.Generator, *context, **named_context):
        """A uniformly drawn spec, without Optuna."""
        return self.build(rng_chooser(rng), *context, **named_context)

    def from_params(self, params: Mapping[str, Any], *context, **named_context):
        """The spec a trial with these parameters sampled (parameters the build does not ask for are ignored)."""
        return self.build(params_chooser(params, self.OWNER), *context, **named_context)


# --- validation of a space field's options --------------------------------------------------

def is_integer(value) -> bool:
    """A Python or numpy integer, not a boolean."""
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


def is_number(value) -> bool:
    """A finite Python or numpy number, not a boolean."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not _is_bool(value)
            and math.isfinite(float(value)))


@dataclasses.dataclass(frozen=True)
class Allowed:
    """The values a space field may offer: ``describe`` (for errors), ``check`` and the canonical ``convert``."""

    describe: str
    check: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def integers(low: int = 1, high: int | None = None, *, among: tuple[int, ...] | None = None) -> Allowed:
    """Integers >= ``low`` (and <= ``high`` when given), or only those of ``among``."""
    if among is not None:
        return Allowed("values from " + ", ".join(map(str, among)), lambda v: is_integer(v) and v in among, int)
    describe = f"integers >= {low}" if high is None else f"integers from {low} to {high}"
    return Allowed(describe, lambda v: is_integer(v) and v >= low and (high is None or v <= high), int)


def numbers(low: float, *, above: bool = False) -> Allowed:
    """Finite numbers >= ``low`` (> ``low`` with ``above``), stored as floats."""
    return Allowed(f"numbers {'>' if above else '>='} {low}",
                   lambda v: is_number(v) and (v > low if above else v >= low), float)


def one_of(options: tuple[str, ...]) -> Allowed:
    """Names from ``options``."""
    return Allowed("values from " + ", ".join(map(str, options)), lambda v: isinstance(v, str) and v in options, str)


BOOLEANS = Allowed("values from False, True", _is_bool, bool)


def choices(owner: str, field: str, values, allowed: Allowed, *, lone_value: bool = False) -> tuple:
    """``values`` as a non-empty tuple of distinct options, each checked and converted by ``allowed``.

    A list is accepted for a tuple; with ``lone_value`` a single non-sequence value is one
    option. Every error is a ValueError naming ``owner``, ``field`` and the allowed values.
    """
    need = f"{owner}: field {field!r} must be a non-empty tuple of {allowed.describe}"
    if isinstance(values, (list, tuple)):
        values = tuple(values)
    elif lone_value:
        values = (values,)
    else:
        raise ValueError(f"{need}; got {values!r}")
    if not values:
        raise ValueError(f"{need}; got an empty tuple")
    bad = [v for v in values if not allowed.check(v)]
    if bad:
        raise ValueError(f"{need}; got {', '.join(map(repr, bad))} in {values!r}")
    out = tuple(allowed.convert(v) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: field {field!r} has repeated choices {out!r}")
    return out
