"""The weight-sharing supernet proxy: one network trained once per space, every candidate scored by slicing it.

:func:`train_supernet` trains the :class:`~search_spaces.elastic.ElasticNetwork` of a
(network space, compression space) on a dataset with the **sandwich rule** (Yu & Huang,
"Universally slimmable networks", 2019; BigNAS, 2020): every step trains the largest
candidate on the labels and, on the same batch, the smallest and ``sandwich`` random
candidates on the largest one's predictions (in-place distillation). Gradients of all
of them are summed into the shared weights. The sandwich rule needs one training phase
and no schedule of phases, where Once-for-All's progressive shrinking trains the full
network first and then unlocks kernel, depth and width in turn; on this project's small
spaces and budgets one phase that sees every candidate size from the first step is the
better trade. Quantization-aware training comes with it: each random candidate draws
its bit widths from the compression space, so every bit width is trained; the smallest
takes the fewest bits and the largest pruning ratio. Pruned candidates prune the shared
weights by magnitude in the graph (``ElasticNetwork(magnitude_pruning=True)``).

A candidate's accuracy (:meth:`Supernet.score`): its encoding selects its part of the
shared weights; batch norm and the activation ranges are recalibrated on
``calibration_images`` training images (the statistics a shared network keeps are those
of no candidate in particular); then the validation split is predicted. One compilation per space serves every
candidate.
``finetune_steps`` optionally trains each candidate alone from the inherited weights
first (a fidelity knob).

:class:`SupernetProxy` is the accuracy proxy a search uses: the supernet is trained the
first time a worker needs it, stored as Flax msgpack (with a JSON record of what it was
trained on) under ``<run folder>/accuracy_cache/supernets/<key>``, and loaded by every
other worker, rerun and resume. The key is a digest of the network space, the
compression space, the dataset's fingerprint, the settings and the seed, so a supernet
trained on anything else is never reused; while one worker trains it the others wait
(the accuracy cache's lock rules).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from codesign.accuracy.cache import OneOffProgress, once_per_process
from codesign.stores import entries_at, joined
from codesign.accuracy.proxies import elastic_space
from codesign.accuracy.datasets import Dataset
from codesign.accuracy.proxy import Accuracy, record_mismatch
from codesign.outcome import Status
from codesign.accuracy.training import _check_fit, epochs, jit_for, run_length, variable_shapes
from codesign.accuracy.training import accuracy as validation_accuracy
from search_spaces.compression import FLOAT, CompressionPolicy, apply_masks, update_masks
from search_spaces.elastic import ElasticNetwork, ElasticSpace, extract, init, zero_variables
from search_spaces.flax_models import layer_settings
from search_spaces.networks import NetworkSpec, layer_table

#: The version of the supernet's training and storage (3: fire outputs in the interleaved layout); part of the key.
SUPERNET_VERSION = "3"


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """How the supernet is trained and how a candidate is scored with it."""

    epochs: float = 20.0
    batch_size: int = 32
    learning_rate: float = 1e-2
    sandwich: int = 2  # random candidates per step, beside the largest and the smallest
    distill: bool = False  # the smaller candidates learn the labels and the largest one's predictions, half each
    calibration_images: int = 256  # batch-norm recalibration of each candidate
    finetune_steps: int = 0  # per candidate, from the inherited weights (a fidelity knob)
    finetune_learning_rate: float = 1e-3
    schedule: str = "sandwich"  # or "progressive": Once-for-All's phases (PROGRESSIVE)

    def __post_init__(self):
        for field, low in (("epochs", 0.0), ("learning_rate", 0.0), ("finetune_learning_rate", 0.0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low or not math.isfinite(value):
                raise ValueError(f"supernet: field {field!r} must be a finite number > {low:g}, got {value!r}")
        for field, low in (("batch_size", 1), ("sandwich", 0), ("calibration_images", 2), ("finetune_steps", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"supernet: field {field!r} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.distill, bool):
            raise ValueError(f"supernet: field 'distill' must be true or false, got {self.distill!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"supernet: field 'schedule' must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: How the supernet is trained: every candidate size from the first step, or Once-for-All's phases.
SCHEDULES = ("sandwich", "progressive")
#: The progressive schedule: what each quarter of the epochs may vary. The first quarter trains the
#: largest candidate alone (16-bit, unpruned); then kernels and depths, then widths, then bit widths and
#: pruning (quantization-aware training of the shared weights) are drawn as well. Block types (and
#: other categorical choices) are drawn in every phase.
PROGRESSIVE = ((), ("kernel", "depth"), ("kernel", "depth", "width"), ("kernel", "depth", "width", "compression"))


def dimension(name: str) -> str | None:
    """The progressive schedule's dimension of a decision name (None: categorical, always drawn)."""
    if name.startswith("compress."):
        return "compression"
    if name.endswith("kernel"):
        return "kernel"
    if name.endswith(".depth") or name == "net.stages":
        return "depth"
    if name.endswith("width") or name.endswith("expansion") or name == "net.width_multiplier":
        return "width"
    return None


def _phase_chooser(rng: np.random.Generator, unlocked: tuple[str, ...], mode: str, resolution: int) -> Callable:
    """``mode`` "random" or "smallest" over the ``unlocked`` dimensions; the largest option everywhere else."""
    largest, smallest = _extreme_chooser(rng, True, resolution), _extreme_chooser(rng, False, resolution)

    def choose(name, options):
        if name == "net.resolution" or dimension(name) not in unlocked:
            return largest(name, options)
        if mode == "smallest":
            return smallest(name, options)
        return options[int(rng.integers(len(options)))]
    return choose


def _phase_members(network_space, compression_space, rng, resolution, unlocked: tuple[str, ...], sandwich: int):
    """A step's candidates in a progressive phase: the largest, then (once something varies) the smallest and
    ``sandwich`` random ones of what is unlocked."""
    def build(mode):
        choose = _phase_chooser(rng, unlocked, mode, resolution)
        spec = network_space.build(choose)
        return spec, (compression_space.build(choose, spec) if compression_space is not None else None)
    members = [build("largest")]
    if unlocked:
        members += [build("smallest")] + [build("random") for _ in range(sandwich)]
    return members


# --- the sandwich's extreme candidates ------------------------------------------------------------
def _extreme_chooser(rng: np.random.Generator, largest: bool, resolution: int) -> Callable:
    """Pick the largest (or smallest) option of every numeric decision; categorical ones at random.

    Larger means more: stages, depth, width, kernel, bits (float is the most); a pruning
    ratio counts the other way.
    """
    def choose(name, options):
        if name == "net.resolution":
            return resolution
        numbers = [o for o in options if isinstance(o, (int, float)) and not isinstance(o, bool)]
        if name.endswith("_bits"):
            if largest and FLOAT in options:
                return FLOAT
            return (max if largest else min)(numbers) if numbers else FLOAT
        if len(numbers) != len(options):
            return options[int(rng.integers(len(options)))]
        if name.endswith(".prune"):
            return min(numbers) if largest else max(numbers)
        return max(numbers) if largest else min(numbers)
    return choose


def draw_pair(network_space, compression_space, rng, resolution, extreme: bool | None = None):
    """A (spec, policy): uniformly drawn (``extreme`` None), or the largest (True) / smallest (False)."""
    if extreme is None:
        spec = network_space.build(_resolution_chooser(rng, resolution))
        return spec, (compression_space.draw(rng, spec) if compression_space is not None else None)
    choose = _extreme_chooser(rng, extreme, resolution)
    spec = network_space.build(choose)
    return spec, (compression_space.build(choose, spec) if compression_space is not None else None)


def distinct_pairs(draw: Callable[[int], tuple], count: int, attempts: int | None = None) -> list:
    """The first ``count`` distinct (spec, policy) pairs of ``draw(0)``, ``draw(1)``, ..., in the order drawn;
    fewer when ``attempts`` draws (None: no bound) do not give that many."""
    pairs, seen, attempt = [], set(), 0
    while len(pairs) < count and (attempts is None or attempt < attempts):
        spec, policy = draw(attempt)
        attempt += 1
        key = json.dumps([spec.to_dict(), None if policy is None else policy.to_dict()], sort_keys=True)
        if key not in seen:
            seen.add(key)
            pairs.append((spec, policy))
    return pairs


def _resolution_chooser(rng, resolution):
    def choose(name, options):
        return resolution if name == "net.resolution" else options[int(rng.integers(len(options)))]
    return choose


# --- training --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Supernet:
    """A trained supernet: its elastic space, shared variables and what it was trained on."""

    space: ElasticSpace
    variables: Any  # {"params": ..., "batch_stats": ...}
    network_space: Any
    compression_space: Any
    config: SupernetConfig
    record: dict  # what it was trained on and how long it took (stored beside the weights as JSON)

    def check(self, spec: NetworkSpec, policy: CompressionPolicy | None) -> None:
        """A ValueError naming the field and the supernet's range when the candidate is outside its space."""
        self.space.check(spec, policy)
        if policy is None or policy.is_identity:
            return
        trained = self.compression_space
        allowed = {"w_bits": trained.w_bits if trained else (FLOAT,), "a_bits": trained.a_bits if trained else (FLOAT,),
                   "prune_ratio": trained.prune_ratios if trained else (0.0,)}
        rows = layer_table(spec)
        weighted = {r.layer.name for r in rows if r.layer.macs}  # pooling and element-wise layers stay float
        for name, setting in policy.settings(rows).items():
            if name not in weighted:
                continue
            for field, options in allowed.items():
                value = getattr(setting, field)
                if value not in options:
                    raise ValueError(f"supernet: layer {name!r} {field} {value!r} was never trained; "
                                     f"the supernet's range: {', '.join(map(str, options))}")

    def score(self, candidates: Sequence[tuple[NetworkSpec, CompressionPolicy | None]], dataset: Dataset,
              seed: int = 0) -> np.ndarray:
        """Validation accuracy of every candidate (recalibrated, optionally fine-tuned)."""
        return np.asarray([self.evaluate(spec, policy, dataset, seed)[0] for spec, policy in candidates])

    def evaluate(self, spec: NetworkSpec, policy: CompressionPolicy | None, dataset: Dataset, seed: int = 0,
                 with_weights: bool = False) -> tuple[float, dict | None]:
        """A candidate's validation accuracy and, with ``with_weights``, its stand-alone model's variables
        (``params``, recalibrated ``batch_stats``, pruning ``masks``): that model predicts what the supernet did."""
        policy = None if policy is None or policy.is_identity else policy
        self.check(spec, policy)
        encoding = self.space.encode(spec, policy)
        programs = _programs(self.space, self.config)
        params = _finetune(self, encoding, dataset, seed) if self.config.finetune_steps else self.variables["params"]
        stats = programs["calibrate"](params, _calibration_images(dataset, self.config.calibration_images, seed),
                                      encoding)
        accuracy = validation_accuracy(programs["predict"], (params, stats, encoding), dataset.x_val, dataset.y_val)
        if not with_weights:
            return accuracy, None
        return accuracy, self._standalone(spec, policy, params, stats)

    def _standalone(self, spec, policy, params, stats) -> dict:
        template = variable_shapes(spec, policy)
        own = extract(self.space, spec, jax.device_get({"params": params, "batch_stats": stats}), template)
        if "masks" in template:  # the magnitude masks the supernet applied, on the candidate's own weights
            ones = jax.tree_util.tree_map(lambda a: np.ones(a.shape, np.float32), template["masks"])
            own["masks"] = update_masks(own["params"], ones, layer_settings(spec, policy))
            own["params"] = jax.device_get(apply_masks(own["params"], own["masks"]))
        return own


@functools.lru_cache(maxsize=8)
def _programs(space: ElasticSpace, config: SupernetConfig, total_steps: int = 1) -> dict:
    """The jitted programs of a space, each for one candidate at a time.

    Candidates go through one by one from Python, not in a ``jax.vmap``: a vmapped
    convolution whose kernel differs per candidate becomes a grouped convolution, which
    XLA runs 3 to 5 times slower per candidate on CPU than the plain one.
    """
    model = ElasticNetwork(space, magnitude_pruning=space.pruning)
    calibrating = ElasticNetwork(space, magnitude_pruning=space.pruning, calibrating=True)
    tx = optax.adam(optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1)))
    finetune_tx = optax.adam(config.finetune_learning_rate)
    zeros = zero_variables(space)["batch_stats"]
    # A training step calls member_grads once per sandwich member: 4 members x 160 steps (four epochs of the
    # digits, tests/tiny.py's spaces, 2-core CPU) train in 18 s fully optimised and in 35 s with FAST_COMPILE.
    jit = jit_for(total_steps * (2 + config.sandwich))

    def train_logits(params, x, encoding):
        return model.apply({"params": params, "batch_stats": zeros}, x, encoding, train=True, mutable=["batch_stats"])[0]

    @jit
    def member_grads(params, x, target, encoding, total):
        """Gradients of one sandwich member's cross-entropy against ``target`` (probabilities), added to ``total``."""
        def loss_fn(p):
            logits = train_logits(p, x, encoding)
            return optax.softmax_cross_entropy(logits, target).mean(), logits
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return jax.tree_util.tree_map(jnp.add, total, grads), loss, jax.nn.softmax(logits)

    @jit
    def update(params, opt_state, grads):
        changes, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state

    @jax.jit  # scoring programs run once per candidate, for every candidate: fully optimised
    def calibrate(params, x, encoding):
        """The candidate's batch-norm statistics and activation ranges on ``x`` (momentum 0, from zeros)."""
        _, updates = calibrating.apply({"params": params, "batch_stats": zeros}, x, encoding, train=True,
                                       mutable=["batch_stats"])
        return updates["batch_stats"]

    @jax.jit
    def predict(candidate, x):
        """Labels for ``x`` of ``candidate`` = (params, batch statistics, encoding)."""
        params, stats, encoding = candidate
        return jnp.argmax(model.apply({"params": params, "batch_stats": stats}, x, encoding), axis=-1)

    @jit
    def finetune_step(params, opt_state, x, y, encoding):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(train_logits(p, x, encoding), y).mean()
        changes, opt_state = finetune_tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, changes), opt_state

    return {"tx": tx, "member_grads": member_grads, "update": update, "calibrate": calibrate, "predict": predict,
            "finetune_tx": finetune_tx, "finetune_step": finetune_step}


def train_supernet(network_space, compression_space, dataset: Dataset, config: SupernetConfig = SupernetConfig(),
                   seed: int = 0, log: Callable[[str], None] | None = None,
                   progress: Callable[[int, int, Any], None] | None = None) -> Supernet:
    """Train the supernet of ``network_space`` x ``compression_space`` on ``dataset`` (module docstring).
    ``log`` gets a line per epoch; ``progress(step, steps, loss)`` is called before the first step (step 0, loss
    None) and after every step (the loss of the step's largest candidate, a device array: reading it waits for
    the step)."""
    started = time.perf_counter()
    space = ElasticSpace.of(network_space, compression_space, dataset.resolution)
    rng = np.random.default_rng(seed)
    probe, _ = draw_pair(network_space, compression_space, rng, dataset.resolution)
    _check_fit(probe, dataset)
    batch, total = run_length(dataset, config.batch_size, config.epochs)
    programs = _programs(space, config, total)
    variables = jax.device_get(init(space, seed))
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = programs["tx"].init(params)
    zero_grads = jax.tree_util.tree_map(np.zeros_like, params)
    losses = []
    step = 0
    if progress is not None:
        progress(0, total, None)
    for batches in epochs(dataset, batch, total, rng):
        epoch_start = len(losses)
        for x, y in batches:
            if config.schedule == "progressive":
                unlocked = PROGRESSIVE[min(len(PROGRESSIVE) * step // total, len(PROGRESSIVE) - 1)]
                members = _phase_members(network_space, compression_space, rng, dataset.resolution, unlocked,
                                         config.sandwich)
            else:
                members = [draw_pair(network_space, compression_space, rng, dataset.resolution, True),
                           draw_pair(network_space, compression_space, rng, dataset.resolution, False)]
                members += [draw_pair(network_space, compression_space, rng, dataset.resolution)
                            for _ in range(config.sandwich)]
            target = np.eye(space.num_classes, dtype=np.float32)[y]
            grads = zero_grads
            member_losses = []
            for m, (spec, policy) in enumerate(members):
                grads, loss, predicted = programs["member_grads"](params, x, target, space.encode(spec, policy), grads)
                member_losses.append(loss)
                if m == 0 and config.distill:  # in-place distillation, Once-for-All's loss with kd_ratio 1:
                    target = (target + predicted) / 2  # half the labels, half the largest one's predictions
            params, opt_state = programs["update"](params, opt_state, grads)
            losses.append(jnp.stack(member_losses))
            step += 1
            if progress is not None:
                progress(step, total, member_losses[0])
        recent = [np.asarray(step_losses) for step_losses in jax.device_get(losses[epoch_start:])]
        if not all(np.all(np.isfinite(r)) for r in recent):
            raise FloatingPointError(f"supernet training diverged: a candidate's loss became non-finite before step "
                                     f"{step} of {total}")
        final = _member_losses(recent)
        if log is not None:
            log(f"supernet step {step}/{total}: loss of the largest candidate {final['largest']:.3f}"
                + "".join(f", of the {k} {v:.3f}" for k, v in final.items() if k != "largest" and v is not None))
    record = {**trained_on(network_space, compression_space, dataset, config, seed), "steps": total,
              "final_loss": final,
              "seconds": time.perf_counter() - started}
    return Supernet(space, {"params": jax.device_get(params), "batch_stats": stats}, network_space, compression_space,
                    config, record)


def _member_losses(recent: list[np.ndarray]) -> dict:
    """Mean loss of the largest, the smallest and the random members over an epoch's steps (None: none trained)."""
    def mean(values):
        values = [v for v in values if v.size]
        return float(np.mean(np.concatenate(values))) if values else None
    return {"largest": mean([r[:1] for r in recent]), "smallest": mean([r[1:2] for r in recent]),
            "random": mean([r[2:] for r in recent])}


def _calibration_images(dataset: Dataset, count: int, seed: int) -> np.ndarray:
    """The same ``count`` training images for every candidate (the training split's order under ``seed``)."""
    order = np.random.default_rng(seed + 1).permutation(len(dataset.x_train))[:count]
    return dataset.x_train[np.sort(order)]


def _finetune(supernet: Supernet, encoding, dataset: Dataset, seed: int):
    """The candidate's own copy of the shared weights after ``finetune_steps`` steps on its own."""
    programs = _programs(supernet.space, supernet.config)
    params = supernet.variables["params"]
    opt_state = programs["finetune_tx"].init(params)
    rng = np.random.default_rng(seed + 2)
    batch = min(supernet.config.batch_size, len(dataset.x_train))
    for _ in range(supernet.config.finetune_steps):
        idx = rng.choice(len(dataset.x_train), batch, replace=False)
        params, opt_state = programs["finetune_step"](params, opt_state, dataset.x_train[idx], dataset.y_train[idx],
                                                      encoding)
    return params


# --- stored supernets ------------------------------------------------------------------------------
def trained_on(network_space, compression_space, dataset: Dataset, config: SupernetConfig, seed: int) -> dict:
    """Everything a trained supernet depends on (its key's fields, and part of its stored record)."""
    return {"version": SUPERNET_VERSION, "network_space": network_space.to_dict(),
            "compression_space": None if compression_space is None else compression_space.to_dict(),
            "dataset": dataset.fingerprint, "config": config.to_dict(), "seed": int(seed)}


def supernet_key(network_space, compression_space, dataset: Dataset, config: SupernetConfig, seed: int) -> str:
    """Digest of :func:`trained_on`."""
    fields = trained_on(network_space, compression_space, dataset, config, seed)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def save_supernet(location: str | Path, key: str, supernet: Supernet) -> None:
    """``<location>/<key>.msgpack`` (Flax msgpack of params and batch_stats) and ``<key>.json`` (what it was trained
    on, written last); ``location`` a folder or an object store URL."""
    entries = entries_at(location)
    entries.write(f"{key}.msgpack", serialization.msgpack_serialize(jax.device_get(supernet.variables)))
    entries.write(f"{key}.json", json.dumps({**supernet.record, "key": key}, sort_keys=True, indent=1).encode())


def load_supernet(location: str | Path, key: str, network_space, compression_space, config: SupernetConfig,
                  resolution: int) -> Supernet | None:
    """The supernet stored under ``key``, or None. The JSON record is written last, so its presence means done."""
    entries = entries_at(location)
    record_text, weights = entries.read(f"{key}.json"), entries.read(f"{key}.msgpack")
    if record_text is None or weights is None:
        return None
    space = ElasticSpace.of(network_space, compression_space, resolution)
    try:
        record = json.loads(record_text)
        variables = serialization.from_bytes(zero_variables(space), weights)
    except Exception as error:  # noqa: BLE001 - an emptied or truncated file: train again and overwrite it
        logging.getLogger(__name__).warning("supernet %s is unreadable (%s: %s); training it again",
                                            entries.where(f"{key}.json"), type(error).__name__, error)
        return None
    return Supernet(space, variables, network_space, compression_space, config, record)


def read_record(path: str | Path) -> dict:
    """A stored supernet's JSON record; a ValueError naming the file when it is missing or not one."""
    try:
        record = json.loads(Path(path).read_text())
        if not isinstance(record, dict) or not {"network_space", "compression_space", "dataset", "config"} <= set(record):
            raise ValueError("it lacks the fields of a supernet record")
        SupernetConfig(**record["config"])
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"supernet {path}: not a stored supernet record ({type(error).__name__}: {error})") from None
    if record.get("version") != SUPERNET_VERSION:
        raise ValueError(f"supernet {path}: version {record.get('version')!r}; this codesign reads version "
                         f"{SUPERNET_VERSION!r}")
    return record


#: Supernets this process has loaded or trained, by key (a worker loads each once).
_LOADED: dict[str, Supernet] = {}


@dataclasses.dataclass(frozen=True)
class SupernetProxy:
    """Accuracy from the space's weight-sharing supernet (module docstring).

    In an :class:`~codesign.experiment.Experiment`, the experiment's network and
    compression spaces and its run folder are filled in (:meth:`bind`); used on its own,
    bind them first. Settings are :class:`SupernetConfig` fields.
    """

    config: SupernetConfig = SupernetConfig()
    network_space: Any = None
    compression_space: Any = None
    folder: str | None = None  # where trained supernets are stored (None: kept in this process only)
    weights: bool = True  # return each candidate's stand-alone variables (its model reloads as a Design)
    file: str | None = None  # a stored supernet's JSON record, used instead of training one

    name = "supernet"
    pairs_per_task = 1

    def __post_init__(self):
        if not isinstance(self.config, SupernetConfig):
            raise ValueError(f"proxy: SupernetProxy's config must be a SupernetConfig, got {self.config!r}")

    @property
    def metric(self) -> str:
        return "accuracy"

    def bind(self, network_space, compression_space, folder: str | Path | None = None) -> "SupernetProxy":
        """This proxy for a network space, a compression space (or None) and a folder, whose ``supernets/`` keeps
        the trained supernets; a ValueError when the spaces have no elastic network."""
        for resolution in getattr(network_space, "resolutions", None) or (None,):
            elastic_space(network_space, compression_space, resolution)
        config = self.config
        if self.file is not None:
            record = read_record(self.file)
            for field, space in (("network_space", network_space), ("compression_space", compression_space)):
                problem = record_mismatch(record, field, None if space is None else space.to_dict())
                if problem:
                    raise ValueError(f"proxy: supernet {self.file} was trained on other spaces: {problem}")
            config = SupernetConfig(**record["config"])
        return dataclasses.replace(self, network_space=network_space, compression_space=compression_space,
                                   config=config, folder=None if folder is None else joined(folder, "supernets"))

    def describe(self) -> dict:
        if self.file is not None:
            return {"proxy": self.name, "file": str(self.file)}
        spaces = [None if s is None else s.to_dict() for s in (self.network_space, self.compression_space)]
        digest = hashlib.sha256(json.dumps(spaces, sort_keys=True).encode()).hexdigest()[:16]
        return {"proxy": self.name, "version": SUPERNET_VERSION, "spaces": digest, **self.config.to_dict()}

    def supernet(self, dataset: Dataset, seed: int = 0) -> Supernet:
        """The trained supernet for ``dataset``: this process's, the stored one, or trained now (once)."""
        if self.network_space is None:
            raise ValueError("proxy: a SupernetProxy needs its spaces; use it in an Experiment or call "
                             ".bind(network_space, compression_space, folder) first")
        if self.file is not None:
            return self._stored(dataset)
        key = supernet_key(self.network_space, self.compression_space, dataset, self.config, seed)
        if key in _LOADED and self.folder is not None and not entries_at(self.folder).exists(f"{key}.json"):
            save_supernet(self.folder, key, _LOADED[key])  # a run folder keeps the supernet its trials used
        progress = None if self.folder is None else OneOffProgress(self.folder, key, "supernet", self.config.epochs)
        return once_per_process(
            _LOADED, key, self.folder,
            lambda: load_supernet(self.folder, key, self.network_space, self.compression_space, self.config,
                                  dataset.resolution),
            lambda: train_supernet(self.network_space, self.compression_space, dataset, self.config, seed,
                                   progress=progress),
            lambda supernet: save_supernet(self.folder, key, supernet))

    def _stored(self, dataset: Dataset) -> Supernet:
        """The supernet of ``file``; a ValueError naming the file when it was trained on other data or is unreadable."""
        path = Path(self.file)
        record = _LOADED[str(path)].record if str(path) in _LOADED else read_record(path)
        if record.get("dataset") != dataset.fingerprint:
            raise ValueError(f"supernet {path} was trained on another dataset (fingerprint {record.get('dataset')}, "
                             f"{dataset.name!r} has {dataset.fingerprint})")
        if str(path) not in _LOADED:  # read once per process; every later candidate checks the loaded record
            supernet = load_supernet(path.parent, path.stem, self.network_space, self.compression_space, self.config,
                                     dataset.resolution)
            if supernet is None:
                raise ValueError(f"supernet {path}: its weights ({path.with_suffix('.msgpack').name}) are missing "
                                 f"or unreadable")
            _LOADED[str(path)] = supernet
        return _LOADED[str(path)]

    def evaluate(self, pairs, dataset: Dataset, seed: int = 0, reporters=None) -> list[Accuracy]:
        """Each pair's accuracy read from the supernet (trained first, once, if there is none yet); a pair outside
        the supernet's space fails with the field and the range."""
        results = []
        for spec, compression in pairs:
            started = time.perf_counter()
            try:
                _check_fit(spec, dataset)
                supernet = self.supernet(dataset, seed)
                accuracy, weights = supernet.evaluate(spec, compression, dataset, seed, with_weights=self.weights)
            except ValueError as error:
                results.append(Accuracy.failed(f"ValueError: {error}", time.perf_counter() - started))
                continue
            results.append(Accuracy(Status.COMPLETE, accuracy, weights=weights,
                                    seconds=time.perf_counter() - started))
        return results
