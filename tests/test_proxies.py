"""Accuracy proxies and the accuracy cache: determinism, multi-fidelity reports, NaN handling,
zero-cost scores, and no pair evaluated twice (also across restarts and concurrent workers)."""

import json
import threading
import time

import jax
import numpy as np
import pytest

from codesign.accuracy.cache import AccuracyCache, cache_key
from codesign.accuracy.datasets import load_dataset
from codesign.accuracy.proxies import TrainedProxy, ZeroCostProxy, make_proxy, zero_cost_scores
from codesign.accuracy.proxy import Accuracy, Proxy
from codesign.accuracy.training import TrainConfig, accuracy, init_variables, predictor
from codesign.outcome import Status
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec, Stage, Stem

NET = NetworkSpec(Stem(3, 1, 8), (Stage("fire", 1, 16, expansion=0.25), Stage("dwsep", 1, 32, stride=2)), head="fc",
                  resolution=8, in_channels=1, num_classes=10, name="tiny")
POLICY = CompressionPolicy.uniform(8, 8, prune_ratio=0.25)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def one(proxy, spec, policy, data, seed=0, reporter=None) -> Accuracy:
    """One pair through the proxy protocol."""
    return proxy.evaluate([(spec, policy)], data, seed, [reporter])[0]


def cached(cache, spec, policy, data, proxy, seed=0, reporter=None) -> Accuracy:
    """One pair through the accuracy cache."""
    return cache.evaluate([(spec, policy)], data, proxy, seed, [reporter])[0]


def test_trained_proxy_is_determined_by_the_seed(data):
    proxy = TrainedProxy(TrainConfig(epochs=2))
    a, b = one(proxy, NET, POLICY, data, seed=3), one(proxy, NET, POLICY, data, seed=3)
    assert a.status == Status.COMPLETE and a.score == b.score and a.history == b.history
    for x, y in zip(jax.tree_util.tree_leaves(a.weights), jax.tree_util.tree_leaves(b.weights)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    c = one(proxy, NET, POLICY, data, seed=4)
    assert not all(np.array_equal(np.asarray(x), np.asarray(y))
                   for x, y in zip(jax.tree_util.tree_leaves(a.weights), jax.tree_util.tree_leaves(c.weights)))


def test_intermediate_accuracies_are_reported_and_a_pruner_can_stop_the_run(data):
    seen = []
    result = one(TrainedProxy(TrainConfig(epochs=4)), NET, None, data, reporter=lambda e, a: seen.append((e, a)) or e >= 2)
    assert result.status == Status.PRUNED and "epoch 2" in result.reason
    assert [e for e, _ in seen] == [1, 2] and list(result.history) == seen


def test_a_diverging_run_ends_early_with_its_reason(data):
    result = one(TrainedProxy(TrainConfig(epochs=5, learning_rate=1e38)), NET, None, data)
    assert result.status == Status.DIVERGED and result.score is None
    assert "loss became nan" in result.reason.lower() or "loss became inf" in result.reason.lower()
    assert result.history == ()  # stopped in the first epoch


def test_better_trained_network_scores_higher_than_untrained(data):
    """Accuracy must rise with training; zero-cost scores are taken at initialisation, so there is no such order."""
    untrained = accuracy(predictor(NET, None), init_variables(NET, None, 0), data.x_val, data.y_val)
    short = one(TrainedProxy(TrainConfig(epochs=1)), NET, None, data).score
    longer = one(TrainedProxy(TrainConfig(epochs=8)), NET, None, data).score
    assert untrained < 0.3 and longer > untrained + 0.4 and longer >= short


def test_zero_cost_proxies_are_finite_deterministic_and_see_compression(data):
    scores = zero_cost_scores(["synflow", "naswot", "grad_norm", "snip"], NET, POLICY, data, seed=0)
    again = {name: one(ZeroCostProxy(name), NET, POLICY, data, seed=0).score for name in scores}
    assert all(np.isfinite(v) for v in scores.values())
    assert all(np.isclose(scores[k], again[k], rtol=1e-5) for k in scores)
    dense = one(ZeroCostProxy("params"), NET, None, data).score
    pruned = one(ZeroCostProxy("params"), NET, CompressionPolicy.uniform(prune_ratio=0.5), data).score
    assert pruned < dense
    # synflow sums over weights: halving every weight's magnitude budget by pruning lowers it
    assert zero_cost_scores(["synflow"], NET, CompressionPolicy.uniform(prune_ratio=0.75), data)["synflow"] < \
        zero_cost_scores(["synflow"], NET, None, data)["synflow"]


def test_proxy_names_and_bad_input():
    assert make_proxy("trained", epochs=3).config.epochs == 3
    assert make_proxy("snip", batch_size=8) == ZeroCostProxy("snip", 8)
    with pytest.raises(ValueError, match="naswot"):
        make_proxy("zen")
    with pytest.raises(ValueError, match="'trained' has no setting 'lr'; allowed: epochs, batch_size, .*population"):
        make_proxy("trained", lr=1)
    with pytest.raises(ValueError, match="'optimizer' must be one of adam, adamw, sgd"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="'epochs'"):
        TrainConfig(epochs=0)


def test_mismatched_dataset_is_a_clear_error(data):
    with pytest.raises(ValueError, match="expects 32x32x3 inputs but dataset 'synthetic' has 8x8x1"):
        one(TrainedProxy(), NET.replace(resolution=32, in_channels=3), None, data)


def test_cache_second_evaluation_trains_nothing_also_after_a_restart(tmp_path, data, monkeypatch):
    proxy = TrainedProxy(TrainConfig(epochs=1))
    cache = AccuracyCache(tmp_path)
    first = cached(cache, NET, POLICY, data, proxy, seed=0)
    assert not first.cached and len(cache) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained twice")
    monkeypatch.setattr(TrainedProxy, "evaluate", no_training)
    again = cached(cache, NET, POLICY, data, proxy, seed=0)
    restarted = cached(AccuracyCache(tmp_path), NET, POLICY, data, proxy, seed=0)
    assert again.cached and restarted.cached and restarted.score == first.score
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

    name = "slow"
    metric = "accuracy"
    pairs_per_task = 1

    def __init__(self, seconds: float = 0.5):
        self.calls, self.seconds = 0, seconds

    def describe(self):
        return {"proxy": "slow"}

    def bind(self, network_space, compression_space, folder=None):
        return self

    def evaluate(self, pairs, dataset, seed=0, reporters=None):
        self.calls += len(pairs)
        time.sleep(self.seconds)
        return [Accuracy(Status.COMPLETE, 0.75, seconds=self.seconds) for _ in pairs]


def test_a_proxy_is_anything_that_follows_the_protocol():
    assert isinstance(SlowProxy(), Proxy) and isinstance(TrainedProxy(), Proxy) and isinstance(ZeroCostProxy(), Proxy)
    assert not isinstance(object(), Proxy)


def test_concurrent_workers_evaluate_a_pair_once(tmp_path, data):
    proxy = SlowProxy()
    results = []
    workers = [threading.Thread(target=lambda: results.append(
        cached(AccuracyCache(tmp_path, poll_seconds=0.05), NET, None, data, proxy, 0))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert proxy.calls == 1 and [r.score for r in results] == [0.75] * 4


def test_a_lock_left_by_a_dead_worker_is_taken_over(tmp_path, data):
    proxy = SlowProxy()
    key = cache_key(NET, None, data, proxy, 0)
    (tmp_path / f"{key}.lock").write_text(json.dumps({"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 7,
                                                       "time": time.time()}))
    result = cached(AccuracyCache(tmp_path, poll_seconds=0.05), NET, None, data, proxy, 0)
    assert result.score == 0.75 and proxy.calls == 1


def test_pruned_results_are_not_cached(tmp_path, data):
    cache = AccuracyCache(tmp_path)
    proxy = TrainedProxy(TrainConfig(epochs=3))
    result = cached(cache, NET, None, data, proxy, 0, reporter=lambda e, a: True)
    assert result.status == Status.PRUNED and len(cache) == 0
