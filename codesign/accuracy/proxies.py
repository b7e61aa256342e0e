"""Accuracy proxies: how the search scores a network + compression pair without full training.

* :class:`TrainedProxy` trains the compressed network (QAT and pruning masks active) for
  its fidelity (``TrainConfig.epochs``) and returns the validation accuracy. It reports
  the accuracy after every epoch to a reporter, so Optuna pruners (successive halving,
  Hyperband) can stop poor candidates early. With ``population`` above 1 it trains that
  many pairs together on one compiled elastic network (:mod:`codesign.accuracy.population`).
* :class:`ZeroCostProxy` scores the network at initialisation on one batch, in JAX:
  ``synflow`` (Tanaka et al. 2020), ``naswot`` (Mellor et al. 2021, log-determinant of
  the ReLU activation-pattern kernel), ``grad_norm``, ``snip`` (Lee et al. 2019, summed
  ``|g * w|``) and ``params`` (the compressed model's non-zero weight count, a baseline).

Both implement :class:`~codesign.accuracy.proxy.Proxy`: a higher score means a better
predicted accuracy. A zero-cost score is named after its proxy (``synflow``, ...), not
``accuracy``, in tables and storage (its ``metric``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict

from codesign.accuracy.datasets import Dataset
from codesign.accuracy.population import train_population
from codesign.accuracy.proxy import Accuracy, Pair, Reporter
from codesign.accuracy.training import TrainConfig, init_variables, train
from codesign.metrics import ZERO_COST_SCORES, quality_metric
from codesign.outcome import Status
from search_spaces.compression import apply_masks, update_masks
from search_spaces.elastic import ElasticSpace
from search_spaces.flax_models import FAST_COMPILE, ConvBN, build_model, layer_settings

ZERO_COST = ZERO_COST_SCORES
PROXIES = ("trained", "supernet", "predictor") + ZERO_COST


def _reporters(reporters, pairs) -> list[Reporter | None]:
    reporters = list(reporters) if reporters is not None else [None] * len(pairs)
    if len(reporters) != len(pairs):
        raise ValueError(f"proxy: {len(reporters)} reporters for {len(pairs)} pairs")
    return reporters


@dataclasses.dataclass(frozen=True)
class TrainedProxy:
    """Validation accuracy after training for ``config.epochs`` (the fidelity).

    ``population``: how many trials a search trains together on one worker. Above 1
    they are trained on the elastic network of the experiment's spaces (one compilation
    for the whole space instead of one per candidate, each candidate still its own
    training); an Experiment binds the spaces, used on its own call :meth:`bind` first.
    """

    config: TrainConfig = TrainConfig()
    population: int = 1
    network_space: Any = dataclasses.field(default=None, repr=False)
    compression_space: Any = dataclasses.field(default=None, repr=False)

    name = "trained"

    def __post_init__(self):
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"proxy: TrainedProxy's config must be a TrainConfig, got {self.config!r}")
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 1:
            raise ValueError(f"proxy: field 'population' must be an integer >= 1, got {self.population!r}")

    @property
    def metric(self) -> str:
        return quality_metric(self.name)

    @property
    def pairs_per_task(self) -> int:
        return self.population

    def describe(self) -> dict:
        return {"proxy": self.name, **self.config.to_dict(), **({"engine": "elastic"} if self.population > 1 else {})}

    def bind(self, network_space, compression_space, folder: Path | None = None) -> "TrainedProxy":
        """This proxy for a network space and a compression space (or None); with a population, a ValueError when
        the spaces have no elastic network."""
        if self.population > 1:
            for resolution in getattr(network_space, "resolutions", None) or (None,):
                elastic_space(network_space, compression_space, resolution)
        return dataclasses.replace(self, network_space=network_space, compression_space=compression_space)

    def evaluate(self, pairs: Sequence[Pair], dataset: Dataset, seed: int = 0,
                 reporters: Sequence[Reporter | None] | None = None) -> list[Accuracy]:
        """The pairs' accuracies, each trained on its own model or, with a population, together."""
        reporters = _reporters(reporters, pairs)
        if self.population == 1:
            return [train(spec, policy, dataset, self.config, seed, reporter)
                    for (spec, policy), reporter in zip(pairs, reporters)]
        if self.network_space is None:
            raise ValueError("proxy: a TrainedProxy with population > 1 needs its spaces; use it in an Experiment or "
                             "call .bind(network_space, compression_space) first")
        space = elastic_space(self.network_space, self.compression_space, dataset.resolution)
        return train_population(space, pairs, dataset, self.config, seed, reporters)

    def at_fidelity(self, epochs: float) -> "TrainedProxy":
        return dataclasses.replace(self, config=self.config.replace(epochs=epochs))


@functools.lru_cache(maxsize=8)
def elastic_space(network_space, compression_space, resolution: int) -> ElasticSpace:
    """The elastic space of a network space and a compression space at one resolution (built once); a ValueError
    naming what the spaces hold that an elastic network cannot."""
    try:
        return ElasticSpace.of(network_space, compression_space, resolution)
    except ValueError as error:
        raise ValueError(f"proxy: trains one elastic network for the network space, and {error}") from None


@dataclasses.dataclass(frozen=True)
class ZeroCostProxy:
    """A training-free score computed at initialisation on one batch of ``batch_size`` images."""

    name: str = "naswot"
    batch_size: int = 64

    pairs_per_task = 1

    def __post_init__(self):
        if self.name not in ZERO_COST:
            raise ValueError(f"proxy: field 'name' must be one of {', '.join(ZERO_COST)}; got {self.name!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"proxy: field 'batch_size' must be an integer >= 2, got {self.batch_size!r}")

    @property
    def metric(self) -> str:
        return quality_metric(self.name)

    def describe(self) -> dict:
        return {"proxy": self.name, "batch_size": self.batch_size}

    def bind(self, network_space, compression_space, folder: Path | None = None) -> "ZeroCostProxy":
        return self

    def evaluate(self, pairs: Sequence[Pair], dataset: Dataset, seed: int = 0,
                 reporters: Sequence[Reporter | None] | None = None) -> list[Accuracy]:
        return [self._score(spec, policy, dataset, seed) for spec, policy in pairs]

    def _score(self, spec, compression, dataset: Dataset, seed: int) -> Accuracy:
        started = time.perf_counter()
        if self.name == "params":
            workload = spec.workload(compression=compression)
            score = float(sum(layer.params * layer.w_density for layer in workload))
        else:
            score = zero_cost_score(self.name, spec, compression, dataset, seed, self.batch_size)
        seconds = time.perf_counter() - started
        if not np.isfinite(score):
            return Accuracy(Status.DIVERGED, reason=f"{self.name} score is {score} (overflow or degenerate network)",
                            seconds=seconds)
        return Accuracy(Status.COMPLETE, score, seconds=seconds)


def make_proxy(name: str = "trained", **settings):
    """A proxy by name: ``trained`` (settings are TrainConfig fields, and ``population``), ``supernet``
    (SupernetConfig fields), ``predictor`` (PredictorConfig fields) or a zero-cost one; a ValueError naming an
    unknown proxy or setting and what is allowed."""
    from codesign.accuracy.supernet import SupernetConfig, SupernetProxy

    if name == "predictor":
        return _make_predictor(settings)
    kinds = {"trained": (TrainConfig, lambda config, population=1: TrainedProxy(config, population)),
             "supernet": (SupernetConfig, lambda config: SupernetProxy(config))}
    if name in ZERO_COST:
        allowed = [f.name for f in dataclasses.fields(ZeroCostProxy) if f.name != "name"]
        _check_settings(name, settings, allowed)
        return ZeroCostProxy(name, **settings)
    if name not in kinds:
        raise ValueError(f"proxy: unknown proxy {name!r}; allowed: {', '.join(p for p in PROXIES if p in kinds or p in ZERO_COST)}")
    config_type, make = kinds[name]
    extra = {"population": settings.pop("population")} if name == "trained" and "population" in settings else {}
    _check_settings(name, settings, [f.name for f in dataclasses.fields(config_type)] +
                    (["population"] if name == "trained" else []))
    return make(config_type(**settings), **extra)


def _make_predictor(settings: dict):
    """``predictor``: PredictorConfig fields, ``teacher`` (a proxy's name, default ``trained``), the teacher's
    settings prefixed ``teacher_`` (``teacher_epochs=3`` is the default of a trained teacher) and ``file`` (a
    stored predictor's JSON record)."""
    from codesign.accuracy.predictor import PredictorConfig, PredictorProxy

    own = {k: v for k, v in settings.items() if not k.startswith("teacher_")}
    teacher_settings = {k[len("teacher_"):]: v for k, v in settings.items() if k.startswith("teacher_")}
    allowed = [f.name for f in dataclasses.fields(PredictorConfig)] + ["teacher", "teacher_<setting>", "file"]
    _check_settings("predictor", own, allowed)
    teacher, file = own.pop("teacher", "trained"), own.pop("file", None)
    if teacher not in ("trained", "supernet") + ZERO_COST:
        raise ValueError(f"proxy: 'predictor' setting 'teacher' must be one of trained, supernet, "
                         f"{', '.join(ZERO_COST)}; got {teacher!r}")
    if teacher == "trained":
        teacher_settings.setdefault("epochs", 3)
    try:
        teacher_proxy = make_proxy(teacher, **teacher_settings)
    except ValueError as error:
        raise ValueError(f"proxy: 'predictor' teacher {str(error).removeprefix('proxy: ')} (prefixed teacher_)") \
            from None
    return PredictorProxy(PredictorConfig(**own), teacher_proxy, file)


def _check_settings(name: str, settings: dict, allowed: list[str]) -> None:
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"proxy: {name!r} has no setting {unknown[0]!r}; allowed: {', '.join(allowed)}")


# --- zero-cost scores --------------------------------------------------------------------
def _setup(spec, compression, dataset, seed, batch_size):
    """Model, initial variables (pruning masks from the initial magnitudes) and one batch."""
    model = build_model(spec, compression)
    variables = init_variables(spec, compression, seed)
    if "masks" in variables:  # prune at initialisation by magnitude, as the trained model would
        settings = layer_settings(spec, compression)
        variables["masks"] = jax.tree_util.tree_map(jnp.asarray, update_masks(variables["params"], variables["masks"], settings))
        variables["params"] = apply_masks(variables["params"], variables["masks"])
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(dataset.x_train))[:batch_size]
    return model, variables, jnp.asarray(dataset.x_train[idx]), jnp.asarray(dataset.y_train[idx])


def _split(variables):
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    return params, rest


def _kernels(tree) -> list:
    return [v for path, v in flatten_dict(tree).items() if path[-1] == "kernel"]


def _score_functions(model):
    """Jitted zero-cost scores of one model: (variables, x, y) -> score."""
    def loss_grads(variables, x, y):
        params, rest = _split(variables)

        def loss(p):
            logits, _ = model.apply({"params": p, **rest}, x, train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return params, jax.grad(loss)(params)

    def grad_norm(variables, x, y):
        _, grads = loss_grads(variables, x, y)
        return jnp.sqrt(sum(jnp.sum(g ** 2) for g in _kernels(grads)))

    def snip(variables, x, y):
        params, grads = loss_grads(variables, x, y)
        return sum(jnp.sum(jnp.abs(g * w)) for g, w in zip(_kernels(grads), _kernels(params)))

    def synflow(variables, x, y):
        """Sum of |theta * dR/dtheta|, R the summed output for an all-ones input, weights |theta|."""
        params, rest = _split(variables)
        params = jax.tree_util.tree_map(jnp.abs, params)
        ones = jnp.ones((1,) + x.shape[1:], jnp.float32)

        def total(p):  # inference mode: batch norm with its initial statistics is the identity
            return jnp.sum(model.apply({"params": p, **rest}, ones, train=False))
        grads = jax.grad(total)(params)
        return sum(jnp.sum(g * w) for g, w in zip(_kernels(grads), _kernels(params)))

    def naswot(variables, x, y):
        """log|det K|, K[i, j] = number of ReLUs on which images i and j agree."""
        relu_layers = lambda module, method: isinstance(module, ConvBN) and module.relu and method == "__call__"
        _, state = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                               capture_intermediates=relu_layers)
        outputs = [v[0] if isinstance(v, tuple) else v for v in flatten_dict(state["intermediates"]).values()]
        codes = jnp.concatenate([(o.reshape(x.shape[0], -1) > 0) for o in outputs], axis=1).astype(jnp.float32)
        kernel = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
        sign, logdet = jnp.linalg.slogdet(kernel)
        return jnp.where(sign > 0, logdet, -jnp.inf)

    return {"grad_norm": jax.jit(grad_norm), "snip": jax.jit(snip), "synflow": jax.jit(synflow),
            "naswot": jax.jit(naswot)}


def zero_cost_scores(names, spec, compression, dataset, seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    """Several zero-cost scores of one pair, sharing the initialisation and the batch."""
    model, variables, x, y = _setup(spec, compression, dataset, seed, batch_size)
    functions = _score_functions(model)  # one-shot: compiled with FAST_COMPILE
    return {name: float(functions[name].lower(variables, x, y).compile(FAST_COMPILE)(variables, x, y))
            for name in names}


def zero_cost_score(name: str, spec, compression, dataset, seed, batch_size) -> float:
    return zero_cost_scores([name], spec, compression, dataset, seed, batch_size)[name]


