"""The accuracy predictor: fits what its teacher says, stores and reloads, refuses other spaces and data."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import numpy as np
import pytest
from scipy.stats import kendalltau

import codesign
import tiny
from codesign.accuracy.datasets import load_dataset
from codesign.accuracy.predictor import (FEATURES, PredictorConfig, PredictorProxy, draw_fit_pairs, features, fit,
                                         load_predictor)
from codesign.accuracy.proxies import ZeroCostProxy, make_proxy
from codesign.accuracy.proxy import Proxy
from codesign.outcome import Status
from search_spaces.compression import CompressionPolicy


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def spaces(data):
    return tiny.ELASTIC_NETWORKS.for_data(data.resolution, data.in_channels, data.num_classes), tiny.COMPRESSION


@dataclasses.dataclass(frozen=True)
class CountingTeacher:
    """The ``params`` score, counting the pairs it is asked about (in a list shared by its copies)."""

    asked: list = dataclasses.field(default_factory=list, compare=False)
    name = "params"
    metric = "params"
    pairs_per_task = 1

    def describe(self):
        return {"proxy": "counting-params"}

    def bind(self, network_space, compression_space, folder=None):
        return self

    def evaluate(self, pairs, dataset, seed=0, reporters=None):
        self.asked.extend(pairs)
        return ZeroCostProxy("params").evaluate(pairs, dataset, seed)


def test_features_see_size_bits_and_pruning(spaces, data):
    (spec, _), = draw_fit_pairs(*spaces, 1, data.resolution, seed=3)
    row = dict(zip(FEATURES, features(spec, None)))
    four = dict(zip(FEATURES, features(spec, CompressionPolicy.uniform(4, 8))))
    half = dict(zip(FEATURES, features(spec, CompressionPolicy.uniform(8, 8, 0.5, "channel"))))
    assert row["w_bits_min"] == 16 and four["w_bits_min"] == 4 and four["a_bits_mean"] == 8
    assert four["log2_weight_bits"] == pytest.approx(row["log2_weight_bits"] - 2)  # 4 of 16 bits: a quarter
    assert half["channel_pruned"] > 0 and half["log2_params"] < row["log2_params"]
    assert sum(row[f"block_{b}"] for b in ("dwsep", "fire")) == pytest.approx(1.0)


def test_fit_ranks_held_out_rows_of_a_smooth_function():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, len(FEATURES))).astype(np.float32)
    y = np.tanh(x[:, 0]) + 0.5 * x[:, 3] - 0.3 * x[:, 5] ** 2
    predictor = fit(x[:40], y[:40], PredictorConfig(steps=500), seed=0)
    assert kendalltau(predictor.predict(x[40:]), y[40:]).statistic > 0.6
    with pytest.raises(ValueError, match="at least 4"):
        fit(x[:3], y[:3])


def test_the_proxy_learns_its_teacher_stores_itself_and_reloads_without_asking_again(tmp_path, spaces, data):
    teacher = CountingTeacher()
    proxy = PredictorProxy(PredictorConfig(fit_candidates=16, steps=500), teacher).bind(*spaces, tmp_path)
    assert isinstance(proxy, Proxy) and proxy.metric == "params"
    held_out = draw_fit_pairs(*spaces, 12, data.resolution, seed=99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a held-out pair may lie past the 16 fitted ones (tested below)
        results = proxy.evaluate(held_out, data)
    assert len(teacher.asked) == 16 and all(r.ok for r in results)
    truth = [r.score for r in ZeroCostProxy("params").evaluate(held_out, data)]
    assert kendalltau([r.score for r in results], truth).statistic > 0.6
    stored, = (tmp_path / "predictors").glob("*.json")
    record = json.loads(stored.read_text())
    assert record["dataset"] == data.fingerprint and record["fitted_pairs"] == 16 and record["teacher"]

    from codesign.accuracy import predictor as module
    module._LOADED.clear()  # a new worker: reads the stored predictor, asks the teacher nothing
    again = PredictorProxy(PredictorConfig(fit_candidates=16, steps=500), teacher).bind(*spaces, tmp_path)
    assert [r.score for r in again.evaluate(held_out, data)] == pytest.approx([r.score for r in results])
    assert len(teacher.asked) == 16


def test_a_stored_predictor_is_refused_for_other_spaces_or_data_and_warns_outside_its_range(tmp_path, spaces, data):
    proxy = PredictorProxy(PredictorConfig(fit_candidates=8, steps=200), CountingTeacher()).bind(*spaces, tmp_path)
    pairs = draw_fit_pairs(*spaces, 2, data.resolution, seed=5)
    proxy.evaluate(pairs, data)
    stored, = (tmp_path / "predictors").glob("*.json")

    reused = PredictorProxy(file=str(stored)).bind(*spaces)
    assert [r.ok for r in reused.evaluate(pairs, data)] == [True, True]
    wider = dataclasses.replace(spaces[0], widths=(8, 32))
    with pytest.raises(ValueError, match=r"network_space field 'widths': \[8, 16\] in the file, \[8, 32\] here"):
        PredictorProxy(file=str(stored)).bind(wider, spaces[1])
    with pytest.raises(ValueError, match="compression_space"):
        PredictorProxy(file=str(stored)).bind(spaces[0], None)
    other = load_dataset("synthetic", seed=1)
    failed = reused.evaluate(pairs, other)
    assert all(r.status == Status.FAILED and "another dataset" in r.reason and other.fingerprint in r.reason
               for r in failed)

    big = dataclasses.replace(spaces[0], widths=(64,))
    (spec, _), = draw_fit_pairs(big, None, 1, data.resolution, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PredictorProxy(file=str(stored)).bind(*spaces).evaluate([(spec, None)], data)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"feature width_max 64 \(fitted \d+ to 16\) is outside", m) for m in messages), messages
    stored.with_suffix(".msgpack").write_bytes(b"")
    from codesign.accuracy import predictor as module
    module._LOADED.clear()
    with pytest.raises(ValueError, match=f"predictor {stored}: not a stored predictor"):
        load_predictor(stored)


def test_make_proxy_builds_a_predictor_and_names_bad_settings():
    proxy = make_proxy("predictor", teacher="trained", teacher_epochs=2, fit_candidates=10)
    assert proxy.config.fit_candidates == 10 and proxy.teacher.config.epochs == 2 and proxy.metric == "accuracy"
    assert make_proxy("predictor", teacher="synflow").metric == "synflow"
    with pytest.raises(ValueError, match="'teacher' must be one of trained, supernet"):
        make_proxy("predictor", teacher="oracle")
    with pytest.raises(ValueError, match="'predictor' has no setting 'epochs'; allowed: fit_candidates"):
        make_proxy("predictor", epochs=3)
    supernet_taught = make_proxy("predictor", teacher="supernet", teacher_epochs=5, teacher_schedule="progressive")
    assert supernet_taught.teacher.config.epochs == 5 and supernet_taught.teacher.config.schedule == "progressive"
    with pytest.raises(ValueError, match="'predictor' teacher 'supernet' has no setting 'lr'.*prefixed teacher_"):
        make_proxy("predictor", teacher="supernet", teacher_lr=0.1)
    with pytest.raises(ValueError, match="field 'fit_candidates' must be an integer >= 4"):
        PredictorConfig(fit_candidates=2)
    with pytest.raises(ValueError, match="teacher must be an accuracy proxy other than a predictor"):
        PredictorProxy(teacher=PredictorProxy())


def test_a_search_with_the_predictor_stores_its_trials(tmp_path):
    proxy = PredictorProxy(PredictorConfig(fit_candidates=6, steps=200), ZeroCostProxy("params"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 6-pair fit leaves some features at its edge
        results = codesign.run(tiny.experiment(tmp_path, proxy=proxy, trials=4))
    complete = [t for t in results.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and all(t.user_attrs.get("status") in ("complete", "duplicate") for t in results.trials)
    assert list((tmp_path / "accuracy_cache" / "predictors").glob("*.msgpack"))
