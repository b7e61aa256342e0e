"""Training several candidates at once on one compiled network: the trained proxy for a batch of trials.

:func:`train_population` trains each candidate of a batch by the rules of
:func:`codesign.accuracy.training.train` (the same batches from the seed, optimiser, schedule,
quantization-aware training, pruning schedule, divergence and pruner rules, and its own
initialisation: LeCun-normal weights at its own shapes, drawn from the seed), but on the
:class:`~search_spaces.elastic.ElasticNetwork` of the experiment's spaces: a candidate
is an encoding of arrays, so one compiled train step and one compiled prediction serve
every candidate of the space and nothing is compiled per candidate. Its result is the
candidate's own weights, read back into its stand-alone model
(:func:`~search_spaces.elastic.extract`), so a design reloads and predicts as one
trained alone does.

The candidates take turns on each batch from Python, one call of the compiled step
each, rather than one ``jax.vmap`` over all of them: a vmapped convolution whose kernel
differs per candidate becomes a grouped convolution, which XLA runs several times
slower per candidate on CPU, and under ``vmap`` the elastic network's per-stage switch
becomes a select that computes every block type
(``experiments/benchmarks/population_training.py`` measures both). Taking turns also
makes a candidate's training independent of the others in its batch, so the accuracy
cache keeps one result per candidate.

Results agree with stand-alone training in distribution, not bit for bit. The initial
weights are the same distribution but other draws: a candidate's kernels are cut from
the elastic network's initial kernels (drawn once per seed at the space's largest
shapes) and rescaled to the candidate's own fan-in, so no initialiser is compiled per
candidate. Started from the same weights (``ElasticRun(initial=...)``), a whole epoch of
float or magnitude-pruned training matches the stand-alone one to 1e-4; quantized
training matches until the first weight lands on the other side of a rounding boundary,
and channel-pruned training keeps the same loss and masks while single gradient entries
differ by tenths of a percent where the loss is not smooth (``tests/test_population.py``).
Adam, which turns a difference in a near-zero gradient into a full step, parts them
sooner.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from codesign.accuracy.datasets import Dataset
from codesign.accuracy.proxy import Accuracy
from codesign.accuracy.training import (TrainConfig, _check_fit, accuracy, optimizer, run_length, train_together,
                               variable_shapes)
from search_spaces.compression import CompressionPolicy, apply_masks, update_masks
from search_spaces.elastic import (ElasticNetwork, ElasticSpace, embed, encode_masks, extract, first_candidate,
                                   union_names)
from search_spaces.flax_models import FAST_COMPILE, layer_settings
from search_spaces.networks import NetworkSpec


def train_population(space: ElasticSpace, candidates: Sequence[tuple[NetworkSpec, CompressionPolicy | None]],
                     dataset: Dataset, config: TrainConfig = TrainConfig(), seed: int = 0,
                     reports: Sequence[Callable[[int, float], bool] | None] | None = None) -> list[Accuracy]:
    """Train ``candidates`` together on ``space``'s elastic network; one Accuracy per candidate (module docstring).

    A candidate that does not fit the dataset or the space fails (status ``failed``, the
    reason naming the field and the range) before any training; the others are trained.
    """
    reports = list(reports) if reports is not None else [None] * len(candidates)
    if len(reports) != len(candidates):
        raise ValueError(f"population: {len(reports)} reports for {len(candidates)} candidates")
    results: list[Accuracy | None] = [None] * len(candidates)
    for i, (spec, policy) in enumerate(candidates):
        try:
            _check_fit(spec, dataset)
            space.check(spec, _policy(policy))
        except ValueError as error:
            results[i] = Accuracy.failed(f"ValueError: {error}")
    fit = [i for i, result in enumerate(results) if result is None]
    _, total = run_length(dataset, config.batch_size, config.epochs)
    programs = _programs(space, config, total)
    runs = [ElasticRun(space, programs, candidates[i][0], _policy(candidates[i][1]), seed) for i in fit]
    if runs:
        for i, result in zip(fit, train_together(runs, dataset, config, seed, [reports[i] for i in fit])):
            results[i] = result
    return results


def _policy(policy: CompressionPolicy | None) -> CompressionPolicy | None:
    return None if policy is None or policy.is_identity else policy


class ElasticRun:
    """One candidate's training on the elastic network: its own elastic weights, statistics and encoding."""

    def __init__(self, space: ElasticSpace, programs: dict, spec: NetworkSpec, policy: CompressionPolicy | None,
                 seed: int, initial: dict | None = None):
        """``initial``: the stand-alone model's variables to start from (default: drawn from ``seed``)."""
        self.space, self.programs, self.spec = space, programs, spec
        self.template = variable_shapes(spec, policy)
        self.masks = jax.tree_util.tree_map(lambda a: np.ones(a.shape, np.float32), self.template.get("masks", {}))
        base = programs["initial"](seed)
        if initial is None:
            own = extract(space, spec, base, self.template)
            own["params"] = _rescaled_kernels(own["params"], base["params"], union_names(space, spec))
        else:
            own = {"params": initial["params"], "batch_stats": initial.get("batch_stats", {})}
        variables = embed(space, spec, own, base)
        self.params, self.stats = variables["params"], variables["batch_stats"]
        self.opt_state = programs["tx"].init(self.params)
        self.settings = layer_settings(spec, policy) if self.masks else {}
        self.base_encoding = space.encode(spec, policy)
        self.encoding = self.base_encoding

    def step(self, x, y):
        self.params, self.stats, self.opt_state, loss = self.programs["train_step"](
            self.params, self.stats, self.opt_state, self.encoding, x, y)
        return loss

    def prune(self, progress: float) -> None:
        if not self.masks:
            return
        own = self._own({"params": {name: self.template["params"][name] for name in self.masks}})["params"]
        self.masks = update_masks(own, self.masks, self.settings, progress)
        self.encoding = encode_masks(self.space, self.spec, self.base_encoding, self.masks)
        self.params = self.programs["zero_pruned"](self.params, self.encoding)

    def accuracy(self, x, y) -> float:
        return accuracy(self.programs["predict"], (self.params, self.stats, self.encoding), x, y)

    def weights(self) -> dict:
        own = self._own(self.template)
        if self.masks:
            own["params"] = jax.device_get(apply_masks(own["params"], self.masks))
            own["masks"] = self.masks
        return own

    def _own(self, template) -> dict:
        """The stand-alone model's variables (those in ``template``) read out of the elastic ones."""
        return extract(self.space, self.spec, {"params": self.params, "batch_stats": self.stats}, template)


def _rescaled_kernels(own: dict, elastic: dict, names: dict[str, str]) -> dict:
    """The candidate's kernels, cut from the elastic network's initial ones, rescaled to its own fan-in.

    Every kernel starts as LeCun-normal draws (truncated normal, variance 1 / fan-in)
    at the space's largest shape; a crop of i.i.d. draws times sqrt(largest fan-in / own
    fan-in) is a LeCun-normal draw at the candidate's own shape, as its stand-alone
    model would start, without compiling that model's initialiser.
    """
    def walk(own_tree, elastic_tree):
        out = {}
        for key, value in own_tree.items():
            if isinstance(value, dict):
                out[key] = walk(value, elastic_tree[key])
            elif key == "kernel":
                largest = np.prod(np.shape(elastic_tree[key])[:-1])
                out[key] = (value * np.sqrt(largest / np.prod(value.shape[:-1]))).astype(value.dtype)
            else:
                out[key] = value
        return out
    return {name: walk(layer, elastic[names[name]]) for name, layer in own.items()}


@functools.lru_cache(maxsize=8)
def _programs(space: ElasticSpace, config: TrainConfig, total_steps: int) -> dict:
    """The compiled programs of a space at one run length: a train step, a prediction, the pruned weights zeroed."""
    model = ElasticNetwork(space)
    tx = optimizer(config, total_steps)
    x = jnp.zeros((1, space.resolution, space.resolution, space.in_channels), jnp.float32)
    some = space.encode(*first_candidate(space))
    initialise = jax.jit(lambda key: model.init(key, x, some, train=False), compiler_options=FAST_COMPILE)

    def initial(seed: int) -> dict:
        """The elastic network's initial variables from ``seed`` (every kernel LeCun-normal at its largest shape)."""
        return jax.device_get(dict(initialise(jax.random.key(seed, impl="rbg"))))

    def zero_pruned(params, encoding):
        """Pruned weights set to zero (as the stand-alone model keeps them), so a later mask update sees them as
        the smallest."""
        params = dict(params)
        for name, code in encoding["layers"].items():
            if "prune" in code and name in params:
                layer = dict(params[name])
                layer["kernel"] = layer["kernel"] * jnp.where(code["pruned"], code["prune"], 1.0)
                params[name] = layer
        return params

    @jax.jit
    def train_step(params, stats, opt_state, encoding, x, y):
        def loss_fn(p):
            logits, updates = model.apply({"params": p, "batch_stats": stats}, x, encoding, train=True,
                                          mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]
        (loss, stats_now), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = tx.update(grads, opt_state, params)
        return zero_pruned(optax.apply_updates(params, changes), encoding), stats_now, opt_state, loss

    @jax.jit
    def predict(candidate, x):
        params, stats, encoding = candidate
        return jnp.argmax(model.apply({"params": params, "batch_stats": stats}, x, encoding), axis=-1)

    return {"tx": tx, "initial": functools.lru_cache(maxsize=4)(initial), "train_step": train_step,
            "predict": predict, "zero_pruned": jax.jit(zero_pruned)}
