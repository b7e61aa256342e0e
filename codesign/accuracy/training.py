"""Training a compressed network with optax: the trained accuracy proxy's engine.

``train(spec, compression, dataset, config, seed)`` builds the Flax model of ``spec``
with the compression policy active (fake quantization with a straight-through
estimator, magnitude pruning masks on a cubic schedule), trains it with the
optimiser and learning-rate schedule of :class:`TrainConfig` and returns an
:class:`~codesign.accuracy.proxy.Accuracy`: the validation accuracy, the weights
(``params``, ``batch_stats``, ``masks``), the accuracy after every epoch, and the
status. Everything is determined by ``seed`` (initialisation, batch order,
augmentation).

A run whose loss stops being finite ends at once with status ``diverged`` and the
reason, not a number. ``report(epoch, accuracy)`` is called after every epoch (for
Optuna pruners); when it returns True the run stops with status ``pruned``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from codesign.accuracy.datasets import Dataset, augment
from codesign.accuracy.proxy import Accuracy
from codesign.outcome import Status
from search_spaces.compression import CompressionPolicy, apply_masks, pruning_progress, update_masks
from search_spaces.flax_models import FAST_COMPILE, build_model, layer_settings
from search_spaces.networks import NetworkSpec

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
EVAL_BATCH = 512


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a candidate is trained. ``epochs`` is the fidelity (fractions allowed)."""

    epochs: float = 10.0
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    schedule: str = "cosine"
    weight_decay: float = 0.0
    momentum: float = 0.9
    prune_end: float = 0.5  # pruning reaches its target ratio at this fraction of training
    mask_updates: int = 8

    def __post_init__(self):
        def number(field, low, high=math.inf, low_open=True):
            v = getattr(self, field)
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v > low if low_open else v >= low) and v <= high)
            if not ok:
                bound = f"> {low}" if low_open else f">= {low}"
                raise ValueError(f"training: field {field!r} must be a finite number {bound}" +
                                 (f" and <= {high}" if high != math.inf else "") + f", got {v!r}")
        number("epochs", 0)
        number("learning_rate", 0)
        number("weight_decay", 0, low_open=False)
        number("momentum", 0, 1, low_open=False)
        number("prune_end", 0, 1)
        for field in ("batch_size", "mask_updates"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"training: field {field!r} must be an integer >= 1, got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"training: field 'optimizer' must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"training: field 'schedule' must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax optimiser and schedule a config names."""
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1))
    else:
        lr = optax.constant_schedule(config.learning_rate)
    if config.optimizer == "sgd":
        opt = optax.sgd(lr, momentum=config.momentum, nesterov=True)
        return optax.chain(optax.add_decayed_weights(config.weight_decay), opt) if config.weight_decay else opt
    if config.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=config.weight_decay)
    opt = optax.adam(lr)
    return optax.chain(optax.add_decayed_weights(config.weight_decay), opt) if config.weight_decay else opt


def init_variables(spec: NetworkSpec, compression: CompressionPolicy | None, seed: int) -> dict:
    model = build_model(spec, compression)
    x = jnp.zeros((1, spec.resolution, spec.resolution, spec.in_channels), jnp.float32)
    # compiled once (cheaply): 2-5x faster than running the initialisers op by op
    init = jax.jit(lambda key: model.init(key, x, train=False), compiler_options=FAST_COMPILE)
    return dict(init(jax.random.key(seed, impl="rbg")))


def variable_shapes(spec: NetworkSpec, compression: CompressionPolicy | None) -> dict:
    """The stand-alone model's variable tree as shapes and dtypes (traced, not compiled)."""
    model = build_model(spec, compression)
    x = jnp.zeros((1, spec.resolution, spec.resolution, spec.in_channels), jnp.float32)
    return dict(jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"), x, train=False)))


#: Programs called at most this many times in a run compile with FAST_COMPILE.
FAST_COMPILE_CALLS = 300


def jit_for(calls: int):
    """``jax.jit`` for the programs of a run that calls each of them about ``calls`` times: with XLA's cheaper
    optimisation (FAST_COMPILE) when the run is short enough for compiling to outweigh the slower calls."""
    if calls <= FAST_COMPILE_CALLS:
        return lambda f: jax.jit(f, compiler_options=FAST_COMPILE)
    return jax.jit


def _steps(model, tx, total_steps: int = FAST_COMPILE_CALLS + 1):
    def loss_fn(params, state, masks, x, y):
        variables = {"params": params, **state, **({"masks": masks} if masks else {})}
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates

    jit = jit_for(total_steps)

    @jit
    def train_step(params, state, opt_state, masks, x, y):
        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, masks, x, y)
        changes, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, changes)
        if masks:
            params = apply_masks(params, masks)  # masked weights stay exactly zero
        return params, dict(updates), opt_state, loss

    @jit
    def predict(variables, x):
        return jnp.argmax(model.apply(variables, x, train=False), axis=-1)

    return train_step, predict


def accuracy(predict, variables, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy, in fixed-size batches (one compilation)."""
    if len(x) == 0:
        return float("nan")
    correct = 0
    batch = min(EVAL_BATCH, len(x))
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.zeros((batch - n,) + xb.shape[1:], xb.dtype)])
        pred = np.asarray(predict(variables, xb))[:n]
        correct += int((pred == y[start:start + n]).sum())
    return correct / len(x)


def predictor(spec: NetworkSpec, compression: CompressionPolicy | None) -> Callable:
    """A jitted ``predict(variables, x) -> labels`` for a network."""
    return _steps(build_model(spec, compression), optax.identity())[1]


def train(spec: NetworkSpec, compression: CompressionPolicy | None, dataset: Dataset,
          config: TrainConfig = TrainConfig(), seed: int = 0,
          report: Callable[[int, float], bool] | None = None) -> Accuracy:
    """Train ``spec`` compressed by ``compression`` on ``dataset`` (see module docstring)."""
    _check_fit(spec, dataset)
    started = time.perf_counter()
    _, total = run_length(dataset, config.batch_size, config.epochs)
    return train_together([StandaloneRun(spec, compression, config, total, seed)], dataset, config, seed, [report],
                          started)[0]


class Run(Protocol):
    """One candidate's training as :func:`train_together` drives it (its own weights and optimiser state)."""

    def step(self, x: np.ndarray, y: np.ndarray) -> jax.Array:
        """One optimiser step on the batch; returns the loss (not waited for)."""

    def prune(self, progress: float) -> None:
        """New pruning masks from the weights' magnitudes at ``progress`` of the target ratios (if it prunes)."""

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy of the current weights."""

    def weights(self) -> dict:
        """The stand-alone model's variables: ``params``, ``batch_stats`` and, if it prunes, ``masks``."""


class StandaloneRun:
    """A candidate trained on its own Flax model (one compilation per network)."""

    def __init__(self, spec: NetworkSpec, compression: CompressionPolicy | None, config: TrainConfig, total: int,
                 seed: int):
        variables = init_variables(spec, compression, seed)
        self.params = variables.pop("params")
        self.masks = variables.pop("masks", {})
        self.state = variables  # batch_stats
        tx = optimizer(config, total)
        self.opt_state = tx.init(self.params)
        self.train_step, self.predict = _steps(build_model(spec, compression), tx, total)
        self.settings = layer_settings(spec, compression) if self.masks else {}

    def step(self, x, y):
        self.params, self.state, self.opt_state, loss = self.train_step(self.params, self.state, self.opt_state,
                                                                        self.masks, x, y)
        return loss

    def prune(self, progress: float) -> None:
        if self.masks:
            self.masks = jax.tree_util.tree_map(jnp.asarray, update_masks(self.params, self.masks, self.settings,
                                                                          progress))
            self.params = apply_masks(self.params, self.masks)

    def accuracy(self, x, y) -> float:
        return accuracy(self.predict, self.weights(), x, y)

    def weights(self) -> dict:
        return {"params": self.params, **self.state, **({"masks": self.masks} if self.masks else {})}


def train_together(runs: Sequence[Run], dataset: Dataset, config: TrainConfig, seed: int,
                   reports: Sequence[Callable[[int, float], bool] | None], started: float | None = None) -> list[Accuracy]:
    """Train ``runs`` side by side on the same batches (drawn from ``seed``); one Accuracy per run.

    Every run takes each step, its masks follow the pruning schedule, and after each
    epoch its validation accuracy goes to its ``report``. A run whose loss stops being
    finite ends with status ``diverged``, one its pruner stops ends ``pruned``; the
    others go on. Each result's ``seconds`` is the time of the whole call
    divided evenly among the runs.
    """
    started = time.perf_counter() if started is None else started
    batch, total = run_length(dataset, config.batch_size, config.epochs)
    prune_end = max(1, int(total * config.prune_end))
    mask_steps = {max(1, round(prune_end * (k + 1) / config.mask_updates)) for k in range(config.mask_updates)}
    rng = np.random.default_rng(seed)
    live = list(range(len(runs)))
    history: list[list[tuple[int, float]]] = [[] for _ in runs]
    ending = [(Status.COMPLETE, "")] * len(runs)
    step, epoch = 0, 0
    for batches in epochs(dataset, batch, total, rng):
        losses = {i: [] for i in live}
        for x, y in batches:
            for i in live:
                losses[i].append(runs[i].step(x, y))
            step += 1
            if step in mask_steps:
                for i in live:
                    runs[i].prune(pruning_progress(step, total, config.prune_end))
        epoch += 1
        for i in list(live):
            values = np.asarray(jnp.stack(losses[i]))
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                ending[i] = (Status.DIVERGED, f"training diverged: the loss became {values[bad[0]]} at step "
                                              f"{step - len(values) + bad[0] + 1} of {total}")
                live.remove(i)
                continue
            acc = runs[i].accuracy(dataset.x_val, dataset.y_val)
            history[i].append((epoch, acc))
            if reports[i] is not None and step < total and reports[i](epoch, acc):
                ending[i] = (Status.PRUNED, f"stopped by the pruner after epoch {epoch}")
                live.remove(i)
        if not live:
            break
    seconds = (time.perf_counter() - started) / max(len(runs), 1)
    results = []
    for run, (status, reason), runs_history in zip(runs, ending, history):
        score = runs_history[-1][1] if status != Status.DIVERGED and runs_history else None
        results.append(Accuracy(status, score, history=tuple(runs_history), weights=run.weights(), reason=reason,
                                seconds=seconds))
    return results


def run_length(dataset: Dataset, batch_size: int, epochs: float) -> tuple[int, int]:
    """The batch size (at most the training split) and the number of steps of ``epochs`` epochs."""
    n = len(dataset.x_train)
    batch = min(batch_size, n)
    return batch, max(1, int(round(epochs * max(1, n // batch))))


def epochs(dataset: Dataset, batch: int, total: int, rng: np.random.Generator):
    """The batches ``(x, y)`` of ``total`` training steps, an epoch at a time (each epoch an iterator).

    Each epoch draws a new order of the training split from ``rng``; a batch is
    augmented (from ``rng``) as it is taken, when the dataset asks for it.
    """
    n = len(dataset.x_train)
    steps_per_epoch = max(1, n // batch)
    done = 0
    while done < total:
        order = rng.permutation(n)
        count = min(steps_per_epoch, total - done)
        yield _batches(dataset, order, batch, count, rng)
        done += count


def _batches(dataset: Dataset, order: np.ndarray, batch: int, count: int, rng: np.random.Generator):
    for b in range(count):
        idx = order[b * batch:(b + 1) * batch]
        x = dataset.x_train[idx]
        yield (augment(x, rng) if dataset.augmented else x), dataset.y_train[idx]


def _check_fit(spec: NetworkSpec, dataset: Dataset):
    if spec.in_channels != dataset.in_channels or spec.resolution != dataset.resolution:
        raise ValueError(
            f"network {spec.name!r} expects {spec.resolution}x{spec.resolution}x{spec.in_channels} inputs but dataset "
            f"{dataset.name!r} has {dataset.resolution}x{dataset.resolution}x{dataset.in_channels} images")
    if spec.num_classes < dataset.num_classes:
        raise ValueError(f"network {spec.name!r} has {spec.num_classes} outputs but dataset {dataset.name!r} has "
                         f"{dataset.num_classes} classes")
