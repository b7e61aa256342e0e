"""The accuracy predictor proxy: a small Flax MLP that scores a candidate in microseconds.

:class:`PredictorProxy` learns a teacher proxy's scores (by default one
:class:`~codesign.accuracy.proxies.TrainedProxy` training of a few epochs per candidate;
any proxy serves, the supernet included) on ``fit_candidates`` pairs drawn from the
experiment's spaces with its own seed, then scores every other pair from its
:func:`features`: model size, MACs, bit widths and pruning as the cost model sees them,
and the network's shape (widths, kernels, depth, block types). The fit is an ensemble
of MLPs (APQ, Wang et al. 2020, fits the same kind of predictor on a supernet's scores).

Stored like a supernet: Flax msgpack of the ensemble and a JSON record of what it was
fitted on (spaces, dataset fingerprint, teacher, the fitted range of every feature)
under ``<run folder>/accuracy_cache/predictors/<key>``. ``PredictorProxy(file=...)``
reuses a stored predictor: bound to other spaces it is refused with the differing
field named, asked about another dataset every pair fails naming the fingerprints, and
a candidate outside the fitted range is scored with a warning naming the feature.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from codesign.accuracy.cache import once_per_process
from codesign.stores import entries_at, joined
from codesign.accuracy.datasets import Dataset
from codesign.accuracy.proxy import Accuracy, Pair, Proxy, Reporter, record_mismatch
from codesign.outcome import Status
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import BLOCKS, NetworkSpec, layer_table

#: The version of the features, the model and its storage; part of the key.
PREDICTOR_VERSION = "1"

#: The features a candidate is scored from, in the model's input order.
FEATURES = ("log2_params", "log2_macs", "weighted_layers", "w_bits_min", "w_bits_mean", "a_bits_min", "a_bits_mean",
            "weight_density", "channel_pruned", "log2_weight_bits", "stem_width", "stem_kernel", "width_min",
            "width_max", "kernel_max", "depth") + tuple(f"block_{b}" for b in BLOCKS)


def features(spec: NetworkSpec, policy: CompressionPolicy | None) -> np.ndarray:
    """The candidate's :data:`FEATURES` (float32): sizes and bit widths from its compressed workload, weighted by
    parameters (weights) or MACs (activations), and its shape from the spec."""
    rows = layer_table(spec)
    workload = policy.apply(rows, spec.name) if policy is not None else [row.layer for row in rows]
    layers = [layer for layer in workload if layer.macs]
    params = np.array([layer.params for layer in layers], np.float64)
    macs = np.array([layer.macs for layer in layers], np.float64)
    w_bits = np.array([layer.w_bits for layer in layers], np.float64)
    a_bits = np.array([layer.a_bits for layer in layers], np.float64)
    density = np.array([layer.w_density for layer in layers], np.float64)
    channel = _channel_pruned(rows, policy)
    blocks = [stage.block for stage in spec.stages for _ in range(stage.depth)]
    widths = [stage.width for stage in spec.stages]
    values = {
        "log2_params": math.log2(max((params * density).sum(), 1.0)),
        "log2_macs": math.log2(max(macs.sum(), 1.0)),
        "weighted_layers": len(layers),
        "w_bits_min": w_bits.min(),
        "w_bits_mean": (w_bits * params).sum() / params.sum(),
        "a_bits_min": a_bits.min(),
        "a_bits_mean": (a_bits * macs).sum() / macs.sum(),
        "weight_density": (density * params).sum() / params.sum(),
        "channel_pruned": channel,
        "log2_weight_bits": math.log2(max((params * density * w_bits).sum(), 1.0)),
        "stem_width": spec.stem.width,
        "stem_kernel": spec.stem.kernel,
        "width_min": min(widths),
        "width_max": max(widths),
        "kernel_max": max(stage.kernel for stage in spec.stages),
        "depth": len(blocks),
        **{f"block_{b}": blocks.count(b) / len(blocks) for b in BLOCKS},
    }
    return np.array([values[name] for name in FEATURES], np.float32)


def _channel_pruned(rows, policy: CompressionPolicy | None) -> float:
    """The share of the weights under channel pruning."""
    if policy is None:
        return 0.0
    settings = policy.settings(rows)
    weighted = [r for r in rows if r.layer.macs]
    pruned = sum(r.layer.params for r in weighted
                 if settings[r.layer.name].granularity == "channel" and settings[r.layer.name].pruned)
    return pruned / sum(r.layer.params for r in weighted)


@dataclasses.dataclass(frozen=True)
class PredictorConfig:
    """How the predictor is fitted: on how many drawn pairs, and the ensemble of MLPs."""

    fit_candidates: int = 24
    hidden: int = 32
    ensemble: int = 8
    steps: int = 2000
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3

    def __post_init__(self):
        for field, low in (("fit_candidates", 4), ("hidden", 1), ("ensemble", 1), ("steps", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"predictor: field {field!r} must be an integer >= {low}, got {value!r}")
        for field in ("learning_rate", "weight_decay"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (field == "learning_rate" and value == 0):
                raise ValueError(f"predictor: field {field!r} must be a finite number "
                                 f"{'> 0' if field == 'learning_rate' else '>= 0'}, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class MLP(nn.Module):
    """Two hidden ReLU layers to one output."""

    hidden: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A fitted ensemble: its parameters, the standardisation of inputs and scores, and its record."""

    params: Any  # the ensemble's MLP parameters, stacked on a leading axis
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    record: dict  # what it was fitted on (stored beside the weights as JSON)

    @property
    def hidden(self) -> int:
        return int(self.record["config"]["hidden"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted scores of feature rows ``x`` [n, features]: the ensemble's mean."""
        z = (np.asarray(x, np.float32) - self.x_mean) / self.x_std
        rows = max(8, 1 << (len(z) - 1).bit_length())  # a few batch sizes, so the model compiles a few times
        padded = np.zeros((rows, z.shape[1]), np.float32)
        padded[:len(z)] = z
        return np.asarray(_apply(self.hidden)(self.params, padded))[:len(z)] * self.y_std + self.y_mean

    def outside(self, x: np.ndarray) -> list[tuple[str, str]]:
        """The features of one row outside the fitted range: (name, ``name value (fitted lo to hi)``)."""
        ranges = self.record["ranges"]
        return [(name, f"{name} {value:g} (fitted {ranges[name][0]:g} to {ranges[name][1]:g})")
                for name, value in zip(FEATURES, np.asarray(x).tolist())
                if not ranges[name][0] - 1e-6 <= value <= ranges[name][1] + 1e-6]

    def state(self) -> dict:
        return {"params": self.params, "x_mean": self.x_mean, "x_std": self.x_std,
                "y": np.array([self.y_mean, self.y_std], np.float32)}


@functools.lru_cache(maxsize=None)
def _apply(hidden: int):
    """The jitted ensemble mean of MLPs of ``hidden`` units (one per width)."""
    model = MLP(hidden)
    return jax.jit(lambda params, z: jax.vmap(model.apply, in_axes=(0, None))(params, z).mean(axis=0))


def fit(x: np.ndarray, y: np.ndarray, config: PredictorConfig = PredictorConfig(), seed: int = 0,
        record: dict | None = None) -> Predictor:
    """An ensemble of ``config.ensemble`` MLPs fitted to scores ``y`` of feature rows ``x`` (standardised mean
    squared error, AdamW, full batch); a ValueError when there are fewer than 4 rows or a non-finite value."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if len(x) < 4 or len(x) != len(y):
        raise ValueError(f"predictor: needs at least 4 scored pairs to fit, got {len(y)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("predictor: a feature or a score to fit is not finite")
    x_mean, x_std = x.mean(axis=0), x.std(axis=0)
    x_std = np.where(x_std > 0, x_std, 1.0).astype(np.float32)
    y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
    z, t = jnp.asarray((x - x_mean) / x_std), jnp.asarray((y - y_mean) / y_std)
    model = MLP(config.hidden)
    keys = jax.random.split(jax.random.PRNGKey(seed), config.ensemble)
    params = jax.vmap(lambda k: model.init(k, z[:1])["params"])(keys)
    tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)

    @jax.jit
    def train(params):
        def loss(p):
            return jnp.mean((model.apply({"params": p}, z) - t) ** 2)

        def step(_, state):
            p, opt = state
            grads = jax.grad(loss)(p)
            changes, opt = tx.update(grads, opt, p)
            return optax.apply_updates(p, changes), opt

        return jax.vmap(lambda p: jax.lax.fori_loop(0, config.steps, step, (p, tx.init(p)))[0])(params)

    params = jax.device_get(train(params))
    params = jax.tree_util.tree_map(np.asarray, {"params": params})
    ranges = {name: [float(x[:, i].min()), float(x[:, i].max())] for i, name in enumerate(FEATURES)}
    record = {**(record or {}), "version": PREDICTOR_VERSION, "config": config.to_dict(), "features": list(FEATURES),
              "ranges": ranges, "fitted_pairs": int(len(y)), "score_range": [float(y.min()), float(y.max())]}
    return Predictor(params, x_mean.astype(np.float32), x_std, y_mean, y_std, record)


# --- stored predictors ----------------------------------------------------------------------------
def save_predictor(location: str | Path, key: str, predictor: Predictor) -> str:
    """``<location>/<key>.msgpack`` (Flax msgpack) and ``<key>.json`` (the record, written last), in a folder or
    under an object store URL; where the JSON is."""
    entries = entries_at(location)
    entries.write(f"{key}.msgpack", serialization.msgpack_serialize(predictor.state()))
    entries.write(f"{key}.json", json.dumps({**predictor.record, "key": key}, sort_keys=True, indent=1).encode())
    return entries.where(f"{key}.json")


def load_predictor(record_path: str | Path) -> Predictor:
    """The predictor whose JSON record is the file ``record_path`` (its weights beside it, ``.msgpack``); a
    ValueError naming the file when either is missing or unreadable."""
    record_path = Path(record_path)
    try:
        record_text, weights = record_path.read_bytes(), record_path.with_suffix(".msgpack").read_bytes()
    except OSError as error:
        raise ValueError(f"predictor {record_path}: not a stored predictor ({type(error).__name__}: {error})") from None
    return _predictor(record_text, weights, str(record_path))


def _predictor(record_text: bytes, weights: bytes, where: str) -> Predictor:
    """A predictor from its stored record and weights; a ValueError naming ``where`` when they are not one."""
    try:
        record = json.loads(record_text)
        if record.get("version") != PREDICTOR_VERSION or record.get("features") != list(FEATURES):
            raise ValueError(f"version {record.get('version')!r}, this codesign reads version {PREDICTOR_VERSION!r}")
        state = serialization.msgpack_restore(weights)
        params = jax.tree_util.tree_map(np.asarray, state["params"])
        x_mean, x_std = np.asarray(state["x_mean"], np.float32), np.asarray(state["x_std"], np.float32)
        y_mean, y_std = (float(v) for v in state["y"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"predictor {where}: not a stored predictor ({type(error).__name__}: {error})") from None
    return Predictor(params, x_mean, x_std, y_mean, y_std, record)


def fitted_on(network_space, compression_space, dataset_fingerprint: str, config: PredictorConfig, teacher: dict,
              seed: int) -> dict:
    """Everything a fitted predictor depends on (its key's fields, and part of its record)."""
    return {"version": PREDICTOR_VERSION, "network_space": network_space.to_dict(),
            "compression_space": None if compression_space is None else compression_space.to_dict(),
            "dataset": dataset_fingerprint, "config": config.to_dict(), "teacher": teacher, "seed": int(seed)}


#: Predictors this process has loaded or fitted, by key.
_LOADED: dict[str, Predictor] = {}
#: (predictor key, feature) pairs already warned about in this process.
_WARNED: set[tuple[str, str]] = set()


def _default_teacher() -> Proxy:
    from codesign.accuracy.proxies import TrainedProxy
    from codesign.accuracy.training import TrainConfig

    return TrainedProxy(TrainConfig(epochs=3))


@dataclasses.dataclass(frozen=True)
class PredictorProxy:
    """Accuracy predicted from a candidate's features by an MLP fitted on a teacher's scores (module docstring).

    ``teacher``: the proxy whose scores it learns (None: three epochs of training);
    ``file``: a stored predictor's JSON record to use instead of fitting one.
    """

    config: PredictorConfig = PredictorConfig()
    teacher: Any = None
    file: str | None = None
    network_space: Any = dataclasses.field(default=None, repr=False)
    compression_space: Any = dataclasses.field(default=None, repr=False)
    folder: str | None = None

    name = "predictor"
    pairs_per_task = 1

    def __post_init__(self):
        if not isinstance(self.config, PredictorConfig):
            raise ValueError(f"proxy: PredictorProxy's config must be a PredictorConfig, got {self.config!r}")
        if self.teacher is None:
            object.__setattr__(self, "teacher", _default_teacher())
        if not isinstance(self.teacher, Proxy) or isinstance(self.teacher, PredictorProxy):
            raise ValueError(f"proxy: a PredictorProxy's teacher must be an accuracy proxy other than a predictor, "
                             f"got {self.teacher!r}")

    @property
    def metric(self) -> str:
        return self.teacher.metric

    def describe(self) -> dict:
        if self.file is not None:
            return {"proxy": self.name, "file": str(self.file)}
        return {"proxy": self.name, "version": PREDICTOR_VERSION, **self.config.to_dict(),
                "teacher": self.teacher.describe()}

    def bind(self, network_space, compression_space, folder: str | Path | None = None) -> "PredictorProxy":
        """This proxy for the spaces, fitting into ``folder/predictors`` (None: in memory); with ``file``, a
        ValueError naming the first space field the stored predictor was fitted on differently."""
        if self.file is not None:
            record = _stored(self.file).record
            for field, space in (("network_space", network_space), ("compression_space", compression_space)):
                problem = record_mismatch(record, field, None if space is None else space.to_dict())
                if problem:
                    raise ValueError(f"proxy: predictor {self.file} was fitted on other spaces: {problem}")
        teacher = self.teacher.bind(network_space, compression_space, folder)
        return dataclasses.replace(self, teacher=teacher, network_space=network_space,
                                   compression_space=compression_space,
                                   folder=None if folder is None else joined(folder, "predictors"))

    def predictor(self, dataset: Dataset, seed: int = 0) -> tuple[str, Predictor]:
        """(key, predictor) for ``dataset``: the file's, this process's, the stored one, or fitted now (once)."""
        if self.file is not None:
            predictor = _stored(self.file)
            if predictor.record.get("dataset") != dataset.fingerprint:
                raise ValueError(f"predictor {self.file} was fitted on another dataset (fingerprint "
                                 f"{predictor.record.get('dataset')}, {dataset.name!r} has {dataset.fingerprint})")
            return str(self.file), predictor
        if self.network_space is None:
            raise ValueError("proxy: a PredictorProxy needs its spaces; use it in an Experiment or call "
                             ".bind(network_space, compression_space, folder) first")
        fields = fitted_on(self.network_space, self.compression_space, dataset.fingerprint, self.config,
                           self.teacher.describe(), seed)
        key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
        return key, once_per_process(_LOADED, key, self.folder,
                                     lambda: _load_if_there(self.folder, key),
                                     lambda: fit_predictor(self, dataset, seed, fields),
                                     lambda predictor: save_predictor(self.folder, key, predictor))

    def evaluate(self, pairs: Sequence[Pair], dataset: Dataset, seed: int = 0,
                 reporters: Sequence[Reporter | None] | None = None) -> list[Accuracy]:
        """Each pair's predicted score (all pairs in one call of the model); a warning, once per feature, naming a
        feature outside the fitted range."""
        started = time.perf_counter()
        try:
            key, predictor = self.predictor(dataset, seed)
        except ValueError as error:
            return [Accuracy.failed(f"ValueError: {error}", time.perf_counter() - started) for _ in pairs]
        rows: dict[int, np.ndarray] = {}
        failed: dict[int, Accuracy] = {}
        for i, (spec, policy) in enumerate(pairs):
            try:
                rows[i] = features(spec, policy)
            except ValueError as error:
                failed[i] = Accuracy.failed(f"ValueError: {error}")
        for row in rows.values():
            for feature, problem in predictor.outside(row):
                if (key, feature) not in _WARNED:
                    _WARNED.add((key, feature))
                    warnings.warn(f"predictor: feature {problem} is outside what it was fitted on; its score there "
                                  f"is an extrapolation", stacklevel=2)
        scores = predictor.predict(np.stack(list(rows.values()))) if rows else []
        seconds = (time.perf_counter() - started) / max(len(pairs), 1)
        scored = {i: Accuracy(Status.COMPLETE, float(score), seconds=seconds) for i, score in zip(rows, scores)}
        return [scored.get(i) or failed[i] for i in range(len(pairs))]


def _stored(file: str | Path) -> Predictor:
    """The predictor of a ``file=`` record, read once per process."""
    if str(file) not in _LOADED:
        _LOADED[str(file)] = load_predictor(file)
    return _LOADED[str(file)]


def _load_if_there(location: str, key: str) -> Predictor | None:
    """The predictor stored under ``key`` at ``location`` (a folder or URL), or None (also for an unreadable one,
    which is fitted again and overwritten)."""
    entries = entries_at(location)
    record_text, weights = entries.read(f"{key}.json"), entries.read(f"{key}.msgpack")
    if record_text is None or weights is None:
        return None
    try:
        return _predictor(record_text, weights, entries.where(f"{key}.json"))
    except ValueError as error:
        logging.getLogger(__name__).warning("%s; fitting it again", error)
        return None


def draw_fit_pairs(network_space, compression_space, count: int, resolution: int, seed: int) -> list[Pair]:
    """``count`` distinct pairs: the spaces' largest and smallest (so the fitted range spans the space's sizes and
    bit widths), then uniform draws (the predictor's own, seeded apart)."""
    from codesign.accuracy.supernet import distinct_pairs, draw_pair

    rng = np.random.default_rng([seed, 0x9E3779B9])
    return distinct_pairs(lambda attempt: draw_pair(network_space, compression_space, rng, resolution,
                                                    (True, False)[attempt] if attempt < 2 else None),
                          count, attempts=count * 20)


def fit_predictor(proxy: PredictorProxy, dataset: Dataset, seed: int, fields: dict) -> Predictor:
    """Score ``fit_candidates`` drawn pairs with the teacher, then fit the ensemble on their features."""
    started = time.perf_counter()
    pairs = draw_fit_pairs(proxy.network_space, proxy.compression_space, proxy.config.fit_candidates,
                           dataset.resolution, seed)
    scored = proxy.teacher.evaluate(pairs, dataset, seed)
    teacher_seconds = time.perf_counter() - started
    kept = [(pair, result.score) for pair, result in zip(pairs, scored) if result.ok]
    if len(kept) < 4:
        reasons = "; ".join(sorted({r.reason for r in scored if not r.ok}))[:300]
        raise ValueError(f"predictor: its teacher scored only {len(kept)} of {len(pairs)} pairs ({reasons})")
    x = np.stack([features(spec, policy) for (spec, policy), _ in kept])
    y = np.array([score for _, score in kept], np.float32)
    fit_started = time.perf_counter()
    predictor = fit(x, y, proxy.config, seed, {**fields, "teacher_seconds": teacher_seconds})
    predictor.record["fit_seconds"] = time.perf_counter() - fit_started
    return predictor
