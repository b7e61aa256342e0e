"""Damaged files a run leaves behind: a corrupt accuracy-cache entry is a miss (warned about, deleted,
evaluated again), and a missing or corrupt weights artifact is one clear error naming the trial and the file."""

import json
import logging
import os
import socket
import time

import jax
import numpy as np
import optuna
import pytest

from codesign.artifacts import open_artifact_store
from codesign.accuracy.cache import AccuracyCache, cache_key
from codesign.accuracy.datasets import load_dataset
from codesign.accuracy.proxy import Accuracy
from codesign.outcome import WEIGHTS, Candidate, Outcome, Status
from codesign.results import Design
from codesign.accuracy.training import init_variables
from search_spaces.networks import NetworkSpec, Stage, Stem

NET = NetworkSpec(Stem(3, 1, 8), (Stage("dwsep", 1, 16),), head="fc", resolution=8, in_channels=1, num_classes=10,
                  name="tiny")


class StubProxy:
    """A proxy that returns fixed weights and counts its evaluations: the cache's path without training."""

    name, metric, pairs_per_task = "stub", "accuracy", 1

    def __init__(self):
        self.calls = 0

    def describe(self) -> dict:
        return {"proxy": "stub"}

    def bind(self, network_space, compression_space, folder=None):
        return self

    def evaluate(self, pairs, dataset, seed=0, reporters=None) -> list[Accuracy]:
        self.calls += len(pairs)
        weights = {"params": {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}}
        return [Accuracy(Status.COMPLETE, 0.75, history=((1, 0.5), (2, 0.75)), weights=weights, seconds=0.1)
                for _ in pairs]


def cached(cache, spec, policy, data, proxy):
    """One pair through the cache."""
    return cache.evaluate([(spec, policy)], data, proxy)[0]


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def truncated(raw: bytes) -> bytes:
    return raw[:len(raw) // 2]


CORRUPTIONS = {
    "emptied json": (".json", lambda raw: b""),
    "truncated json": (".json", truncated),
    "json of the wrong shape": (".json", lambda raw: b"[1, 2]"),
    "json missing a field": (".json", lambda raw: json.dumps({k: v for k, v in json.loads(raw).items()
                                                              if k != "history"}).encode()),
    "json not utf-8": (".json", lambda raw: b"\xff\xfe" + raw),
    "emptied weights": (".msgpack", lambda raw: b""),
    "truncated weights": (".msgpack", truncated),
    "garbage weights": (".msgpack", lambda raw: os.urandom(len(raw))),
    "weights not a tree": (".msgpack", lambda raw: b"\x01"),  # valid msgpack: the integer 1
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_a_corrupt_cache_entry_is_a_miss_that_is_warned_about_deleted_and_evaluated_again(tmp_path, data, caplog,
                                                                                         case):
    suffix, damage = CORRUPTIONS[case]
    cache, proxy = AccuracyCache(tmp_path), StubProxy()
    key = cache_key(NET, None, data, proxy, 0)
    stored = cached(cache, NET, None, data, proxy)  # the normal path: computed once and stored
    assert proxy.calls == 1 and cache.get(key).cached and len(cache) == 1
    damaged = tmp_path / f"{key}{suffix}"
    damaged.write_bytes(damage(damaged.read_bytes()))

    with caplog.at_level(logging.WARNING, logger="codesign.accuracy.cache"):
        assert cache.get(key) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"entry {damaged} is unreadable" in caplog.text and "discarding the entry" in caplog.text
    assert not (tmp_path / f"{key}.json").exists() and not (tmp_path / f"{key}.msgpack").exists()
    assert not (tmp_path / f"{key}.lock").exists() and len(cache) == 0

    again = cached(cache, NET, None, data, proxy)  # evaluated again and stored again
    assert proxy.calls == 2 and not again.cached
    read = cache.get(key)
    assert read.cached and read.score == stored.score == 0.75 and read.history == ((1, 0.5), (2, 0.75))
    assert np.array_equal(read.weights["params"]["dense"]["kernel"], stored.weights["params"]["dense"]["kernel"])


def test_evaluate_recomputes_a_corrupt_entry_with_one_warning(tmp_path, data, caplog):
    cache, proxy = AccuracyCache(tmp_path), StubProxy()
    key = cache_key(NET, None, data, proxy, 0)
    cached(cache, NET, None, data, proxy)
    (tmp_path / f"{key}.msgpack").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="codesign.accuracy.cache"):
        result = cached(cache, NET, None, data, proxy)
        assert cached(cache, NET, None, data, proxy).cached  # and the rerun after it reads the new entry
    assert proxy.calls == 2 and not result.cached and len(caplog.records) == 1
    many = cache.evaluate([(NET, None)] * 2, data, proxy)  # the batched path reads it as well
    assert all(r.cached for r in many) and proxy.calls == 2


def test_a_corrupt_entry_under_another_workers_lock_is_left_to_that_worker(tmp_path, data, caplog):
    cache, proxy = AccuracyCache(tmp_path), StubProxy()
    key = cache_key(NET, None, data, proxy, 0)
    cached(cache, NET, None, data, proxy)
    (tmp_path / f"{key}.json").write_bytes(b"{")
    lock = tmp_path / f"{key}.lock"  # held by a live worker: this process, as another worker would
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}))
    with caplog.at_level(logging.WARNING, logger="codesign.accuracy.cache"):
        assert cache.get(key) is None
    assert (tmp_path / f"{key}.json").exists() and lock.exists() and not caplog.records  # not deleted under its lock
    # the lock holder evaluates and stores the pair: its entry replaces the corrupt one, weights and all
    cache.put(key, Accuracy(Status.COMPLETE, 0.5))
    lock.unlink()
    read = cache.get(key)
    assert read.score == 0.5 and read.weights is None and not (tmp_path / f"{key}.msgpack").exists()


def test_a_lock_its_writer_never_filled_is_taken_over(tmp_path, data):
    """A full disk can leave the exclusive lock file created but empty; after a grace period it is stale."""
    cache, proxy = AccuracyCache(tmp_path, poll_seconds=0.01), StubProxy()
    lock = tmp_path / f"{cache_key(NET, None, data, proxy, 0)}.lock"
    lock.write_bytes(b"")
    old = time.time() - 60
    os.utime(lock, (old, old))
    assert cached(cache, NET, None, data, proxy).score == 0.75 and proxy.calls == 1
    lock.write_bytes(b"")  # a fresh empty lock is one being written now: left alone
    assert cache._stale(lock) is False


# --- weights artifacts of a stored trial ----------------------------------------------------------------
@pytest.fixture(scope="module")
def variables():
    return init_variables(NET, None, 0)


def told_trial(tmp_path, variables):
    """A study with one complete trial whose weights are an artifact in ``tmp_path/artifacts``, as a search
    stores it (:meth:`Outcome.tell`)."""
    (tmp_path / "artifacts").mkdir()
    store = open_artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(direction="maximize")
    Outcome(Status.COMPLETE, Candidate(NET), metrics={"accuracy": 0.5}, values=(0.5,),
            weights=variables).tell(study, study.ask(), store)
    trial = study.trials[0]
    artifact = trial.user_attrs["artifacts"][WEIGHTS]
    return trial, store, artifact, tmp_path / "artifacts" / artifact


def test_a_designs_weights_artifact_reloads_and_binds(tmp_path, variables):
    trial, store, _, _ = told_trial(tmp_path, variables)
    model = Design(trial, store).model()
    stored, read = (jax.tree_util.tree_leaves(tree) for tree in (variables, model.variables))
    assert len(stored) == len(read) and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(stored, read))


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.unlink(), "is missing from the artifact store"),
    (lambda path: path.write_bytes(b""), r"is corrupt, not Flax msgpack \(ValueError: Unpack failed"),
    (lambda path: path.write_bytes(truncated(path.read_bytes())), "is corrupt, not Flax msgpack"),
    (lambda path: path.write_bytes(b"garbage " * 8), "is corrupt, not Flax msgpack"),
    (lambda path: path.write_bytes(b"\x01"), "is corrupt: it holds a value of type int, not the model's variables"),
], ids=["missing", "emptied", "truncated", "garbage", "not a tree"])
def test_a_missing_or_corrupt_weights_artifact_is_one_clear_error(tmp_path, variables, damage, message):
    trial, store, artifact, path = told_trial(tmp_path, variables)
    damage(path)
    design = Design(trial, store)
    expected = rf"^trial 0: its weights artifact {artifact} \({path}\) {message}"
    with pytest.raises(ValueError, match=expected) as error:
        design.model()
    context = error.value.__context__
    assert error.value.__cause__ is None and (context is None or error.value.__suppress_context__)  # no msgpack chain
    with pytest.raises(ValueError, match=expected):
        design.export_onnx(tmp_path / "model.onnx")
    assert design.metrics == {"accuracy": 0.5} and design.network == NET  # the rest of the design still reads


def test_weights_without_their_artifact_store_say_so(tmp_path, variables):
    trial, _, artifact, _ = told_trial(tmp_path, variables)
    with pytest.raises(ValueError, match=rf"^trial 0: its weights artifact {artifact} cannot be read: there is no "
                                         rf"artifact store \(the run folder has no artifacts/"):
        Design(trial, None).model()
    untrained = optuna.create_study(direction="maximize")
    Outcome(Status.COMPLETE, Candidate(NET), metrics={"accuracy": 0.5}, values=(0.5,)).tell(
        untrained, untrained.ask(), open_artifact_store(tmp_path / "artifacts"))
    with pytest.raises(ValueError, match=r"^trial 0 has no stored weights \(the proxy did not train"):
        Design(untrained.trials[0], None).model()
