"""Accuracy proxies: how the search scores a network + compression pair without full training.

* :class:`TrainedProxy` trains the compressed network (QAT and pruning masks active) for
  its fidelity (``TrainConfig.epochs``) and returns the validation accuracy. It reports
  the accuracy after every epoch to a ``report`` callback, so Optuna pruners
  (successive halving, Hyperband) can stop poor candidates early.
* :class:`ZeroCostProxy` scores the network at initialisation on one batch, in JAX:
  ``synflow`` (Tanaka et al. 2020), ``naswot`` (Mellor et al. 2021, log-determinant of
  the ReLU activation-pattern kernel), ``grad_norm``, ``snip`` (Lee et al. 2019, summed
  ``|g * w|``) and ``params`` (the compressed model's non-zero weight count, a baseline).

Both return an :class:`~codesign.outcome.Outcome` whose ``accuracy`` metric is the
score; a higher score means a better predicted accuracy. A search names a zero-cost
score after its proxy (``synflow``, ...), not ``accuracy``, in its tables and storage.
Results depend on network, compression, dataset, proxy settings and seed, never on the
accelerator: :mod:`codesign.cache` stores them so no pair is evaluated twice.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict

from codesign.datasets import Dataset
from codesign.metrics import ZERO_COST_SCORES
from codesign.outcome import Outcome, Status
from codesign.population import train_population
from codesign.training import TrainConfig, init_variables, train
from search_spaces.compression import CompressionPolicy, apply_masks, update_masks
from search_spaces.elastic import ElasticSpace
from search_spaces.flax_models import FAST_COMPILE, ConvBN, build_model, layer_settings
from search_spaces.networks import NetworkSpec

ZERO_COST = ZERO_COST_SCORES
PROXIES = ("trained", "supernet") + ZERO_COST


@dataclasses.dataclass(frozen=True)
class TrainedProxy:
    """Validation accuracy after training for ``config.epochs`` (the fidelity).

    ``population``: how many trials a search trains together on one worker. Above 1
    they are trained on the elastic network of the experiment's spaces
    (:mod:`codesign.population`: one compilation for the whole space instead of one per
    candidate, each candidate still its own training). An Experiment binds the spaces;
    used on its own, call :meth:`bind` first.
    """

    config: TrainConfig = TrainConfig()
    population: int = 1
    network_space: Any = dataclasses.field(default=None, repr=False)
    compression_space: Any = dataclasses.field(default=None, repr=False)

    name = "trained"

    def __post_init__(self):
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 1:
            raise ValueError(f"proxy: field 'population' must be an integer >= 1, got {self.population!r}")

    def describe(self) -> dict:
        return {"proxy": self.name, **self.config.to_dict(), **({"engine": "elastic"} if self.population > 1 else {})}

    def bind(self, network_space, compression_space) -> "TrainedProxy":
        """This proxy for a network space and a compression space (or None): the elastic network it trains on."""
        return dataclasses.replace(self, network_space=network_space, compression_space=compression_space)

    def evaluate(self, spec: NetworkSpec, compression: CompressionPolicy | None, dataset: Dataset, seed: int = 0,
                 report: Callable[[int, float], bool] | None = None) -> Outcome:
        if self.population > 1:
            return self.evaluate_many([(spec, compression)], dataset, seed, [report])[0]
        return train(spec, compression, dataset, self.config, seed, report)

    def evaluate_many(self, candidates, dataset: Dataset, seed: int = 0, reports=None) -> list[Outcome]:
        """Outcomes of several (network, compression) pairs, trained together when ``population`` > 1."""
        if self.population == 1:
            reports = reports or [None] * len(candidates)
            return [train(spec, policy, dataset, self.config, seed, report)
                    for (spec, policy), report in zip(candidates, reports)]
        if self.network_space is None:
            raise ValueError("proxy: a TrainedProxy with population > 1 needs its spaces; use it in an Experiment or "
                             "call .bind(network_space, compression_space) first")
        space = elastic_space(self.network_space, self.compression_space, dataset.resolution)
        return train_population(space, candidates, dataset, self.config, seed, reports)

    def at_fidelity(self, epochs: float) -> "TrainedProxy":
        return dataclasses.replace(self, config=self.config.replace(epochs=epochs))


@functools.lru_cache(maxsize=8)
def elastic_space(network_space, compression_space, resolution: int) -> ElasticSpace:
    """The elastic space of a network space and a compression space at one resolution (built once)."""
    return ElasticSpace.of(network_space, compression_space, resolution)


@dataclasses.dataclass(frozen=True)
class ZeroCostProxy:
    """A training-free score computed at initialisation on one batch of ``batch_size`` images."""

    name: str = "naswot"
    batch_size: int = 64

    def __post_init__(self):
        if self.name not in ZERO_COST:
            raise ValueError(f"proxy: field 'name' must be one of {', '.join(PROXIES)}; got {self.name!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"proxy: field 'batch_size' must be an integer >= 2, got {self.batch_size!r}")

    def describe(self) -> dict:
        return {"proxy": self.name, "batch_size": self.batch_size}

    def evaluate(self, spec: NetworkSpec, compression: CompressionPolicy | None, dataset: Dataset, seed: int = 0,
                 report=None) -> Outcome:
        started = time.perf_counter()
        if self.name == "params":
            workload = spec.workload(compression=compression)
            score = float(sum(layer.params * layer.w_density for layer in workload))
        else:
            score = zero_cost_score(self.name, spec, compression, dataset, seed, self.batch_size)
        seconds = time.perf_counter() - started
        if not np.isfinite(score):
            return Outcome(Status.DIVERGED, reason=f"{self.name} score is {score} (overflow or degenerate network)",
                           proxy_seconds=seconds)
        return Outcome(Status.COMPLETE, metrics={"accuracy": score}, proxy_seconds=seconds)


def make_proxy(name: str = "trained", **settings):
    """A proxy by name: ``trained`` (settings are TrainConfig fields, and ``population``), ``supernet``
    (SupernetConfig fields) or a zero-cost one."""
    if name == "trained":
        population = settings.pop("population", 1)
        return TrainedProxy(TrainConfig(**settings), population)
    if name == "supernet":
        from codesign.supernet import SupernetConfig, SupernetProxy
        return SupernetProxy(SupernetConfig(**settings))
    if name in ZERO_COST:
        return ZeroCostProxy(name, **settings)
    raise ValueError(f"proxy: unknown proxy {name!r}; allowed: {', '.join(PROXIES)}")


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


