"""Accuracy proxies and the accuracy cache: determinism, multi-fidelity reports, NaN handling,
zero-cost scores, and no pair evaluated twice (also across restarts and concurrent workers)."""

import json
import threading
import time

import jax
import numpy as np
import pytest

from codesign.cache import AccuracyCache, cache_key
from codesign.datasets import load_dataset
from codesign.outcome import Outcome, Status
from codesign.proxies import TrainedProxy, ZeroCostProxy, make_proxy, zero_cost_scores
from codesign.training import TrainConfig, accuracy, init_variables, predictor
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec, Stage, Stem

NET = NetworkSpec(Stem(3, 1, 8), (Stage("fire", 1, 16, expansion=0.25), Stage("dwsep", 1, 32, stride=2)), head="fc",
                  resolution=8, in_channels=1, num_classes=10, name="tiny")
POLICY = CompressionPolicy.uniform(8, 8, prune_ratio=0.25)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def test_trained_proxy_is_determined_by_the_seed(data):
    proxy = TrainedProxy(TrainConfig(epochs=2))
    a, b = proxy.evaluate(NET, POLICY, data, seed=3), proxy.evaluate(NET, POLICY, data, seed=3)
    assert a.status == Status.COMPLETE and a.accuracy == b.accuracy and a.history == b.history
    for x, y in zip(jax.tree_util.tree_leaves(a.weights), jax.tree_util.tree_leaves(b.weights)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    c = proxy.evaluate(NET, POLICY, data, seed=4)
    assert not all(np.array_equal(np.asarray(x), np.asarray(y))
                   for x, y in zip(jax.tree_util.tree_leaves(a.weights), jax.tree_util.tree_leaves(c.weights)))


def test_intermediate_accuracies_are_reported_and_a_pruner_can_stop_the_run(data):
    seen = []
    result = TrainedProxy(TrainConfig(epochs=4)).evaluate(NET, None, data, report=lambda e, a: seen.append((e, a)) or e >= 2)
    assert result.status == Status.PRUNED and "epoch 2" in result.reason
    assert [e for e, _ in seen] == [1, 2] and list(result.history) == seen


def test_a_diverging_run_ends_early_with_its_reason(data):
    result = TrainedProxy(TrainConfig(epochs=5, learning_rate=1e38)).evaluate(NET, None, data)
    assert result.status == Status.DIVERGED and result.accuracy is None
    assert "loss became nan" in result.reason.lower() or "loss became inf" in result.reason.lower()
    assert result.history == ()  # stopped in the first epoch


def test_better_trained_network_scores_higher_than_untrained(data):
    """Accuracy must rise with training; zero-cost scores are taken at initialisation, so there is no such order."""
    untrained = accuracy(predictor(NET, None), init_variables(NET, None, 0), data.x_val, data.y_val)
    short = TrainedProxy(TrainConfig(epochs=1)).evaluate(NET, None, data).accuracy
    longer = TrainedProxy(TrainConfig(epochs=8)).evaluate(NET, None, data).accuracy
    assert untrained < 0.3 and longer > untrained + 0.4 and longer >= short


def test_zero_cost_proxies_are_finite_deterministic_and_see_compression(data):
    scores = zero_cost_scores(["synflow", "naswot", "grad_norm", "snip"], NET, POLICY, data, seed=0)
    again = {name: ZeroCostProxy(name).evaluate(NET, POLICY, data, seed=0).accuracy for name in scores}
    assert all(np.isfinite(v) for v in scores.values())
    assert all(np.isclose(scores[k], again[k], rtol=1e-5) for k in scores)
    dense = ZeroCostProxy("params").evaluate(NET, None, data).accuracy
    pruned = ZeroCostProxy("params").evaluate(NET, CompressionPolicy.uniform(prune_ratio=0.5), data).accuracy
    assert pruned < dense
    # synflow sums over weights: halving every weight's magnitude budget by pruning lowers it
    assert zero_cost_scores(["synflow"], NET, CompressionPolicy.uniform(prune_ratio=0.75), data)["synflow"] < \
        zero_cost_scores(["synflow"], NET, None, data)["synflow"]


def test_proxy_names_and_bad_input():
    assert make_proxy("trained", epochs=3).config.epochs == 3
    assert make_proxy("snip", batch_size=8) == ZeroCostProxy("snip", 8)
    with pytest.raises(ValueError, match="naswot"):
        make_proxy("zen")
    with pytest.raises(ValueError, match="'optimizer' must be one of adam, adamw, sgd"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="'epochs'"):
        TrainConfig(epochs=0)


def test_mismatched_dataset_is_a_clear_error(data):
    with pytest.raises(ValueError, match="expects 32x32x3 inputs but dataset 'synthetic' has 8x8x1"):
        TrainedProxy().evaluate(NET.replace(resolution=32, in_channels=3), None, data)


def test_cache_second_evaluation_trains_nothing_also_after_a_restart(tmp_path, data, monkeypatch):
    proxy = TrainedProxy(TrainConfig(epochs=1))
    cache = AccuracyCache(tmp_path)
    first = cache.evaluate(NET, POLICY, data, proxy, seed=0)
    assert not first.cached and len(cache) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained twice")
    monkeypatch.setattr(TrainedProxy, "evaluate", no_training)
    again = cache.evaluate(NET, POLICY, data, proxy, seed=0)
    restarted = AccuracyCache(tmp_path).evaluate(NET, POLICY, data, proxy, seed=0)
    assert again.cached and restarted.cached and restarted.accuracy == first.accuracy
    for x, y in zip(jax.tree_util.tree_leaves(first.weights), jax.tree_util.tree_leaves(restarted.weights)):
        assert np.array_equal(np.asarray(x), np.asarray(y))  # the weights come back from msgpack
    assert len(AccuracyCache(tmp_path)) == 1


def test_cache_key_covers_what_accuracy_depends_on(data):
    proxy = TrainedProxy(TrainConfig(epochs=1))
    base = cache_key(NET, POLICY, data, proxy, 0)
    assert base == cache_key(NET, CompressionPolicy.from_json(POLICY.to_json()), data, proxy, 0)
    assert cache_key(NET, None, data, proxy, 0) == cache_key(NET, CompressionPolicy(), data, proxy, 0)
    others = [cache_key(NET, None, data, proxy, 0), cache_key(NET, POLICY, data, proxy, 1),
              cache_key(NET, POLICY, data, proxy.at_fidelity(2), 0),
              cache_key(NET, POLICY, load_dataset("digits"), proxy, 0),
              cache_key(NET.replace(width_multiplier=0.5), POLICY, data, proxy, 0)]
    assert len({base, *others}) == 6


class SlowProxy:
    """A stand-in proxy that counts its evaluations (no JAX), for the locking test."""

    def __init__(self):
        self.calls = 0

    def describe(self):
        return {"proxy": "slow"}

    def evaluate(self, spec, compression, dataset, seed, report=None):
        self.calls += 1
        time.sleep(0.5)
        return Outcome(Status.COMPLETE, metrics={"accuracy": 0.75}, proxy_seconds=0.5)


def test_concurrent_workers_evaluate_a_pair_once(tmp_path, data):
    proxy = SlowProxy()
    results = []
    workers = [threading.Thread(target=lambda: results.append(
        AccuracyCache(tmp_path, poll_seconds=0.05).evaluate(NET, None, data, proxy, 0))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert proxy.calls == 1 and [r.accuracy for r in results] == [0.75] * 4


def test_a_lock_left_by_a_dead_worker_is_taken_over(tmp_path, data):
    proxy = SlowProxy()
    key = cache_key(NET, None, data, proxy, 0)
    (tmp_path / f"{key}.lock").write_text(json.dumps({"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 7,
                                                       "time": time.time()}))
    result = AccuracyCache(tmp_path, poll_seconds=0.05).evaluate(NET, None, data, proxy, 0)
    assert result.accuracy == 0.75 and proxy.calls == 1


def test_pruned_results_are_not_cached(tmp_path, data):
    cache = AccuracyCache(tmp_path)
    proxy = TrainedProxy(TrainConfig(epochs=3))
    result = cache.evaluate(NET, None, data, proxy, 0, report=lambda e, a: True)
    assert result.status == Status.PRUNED and len(cache) == 0
