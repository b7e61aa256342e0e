"""A run's artifacts in an S3-compatible object store (moto's server, started from its wheel on 127.0.0.1): the
trials' weights and cost reports go there, not to the run folder, and a loaded run predicts with them; the
credentials never reach the URL, the run folder or the log; an unreachable store is one clear error before
the study is touched."""

import json
import logging
import time

import optuna
import psutil
import pytest

import codesign
from codesign.outcome import Outcome, Status, trial_status
from codesign.storage import FIDELITY_TRIAL, make_storage
from servers import LOOPBACK, files_holding, free_port
from test_cli import run_in_process
from tiny import experiment as tiny, experiment_file, wrapped


@pytest.fixture(scope="module")
def s3(s3_server):
    """The test run's S3 server (conftest.py) with this module's bucket."""
    for bucket in ("runs", "alone", "other"):  # alone: test_a_search_keeps_its_artifacts_... looks at every key
        s3_server.create_bucket(bucket)
    return s3_server


@pytest.fixture
def s3_client(s3, monkeypatch):
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.mark.usefixtures("ray_session")
def test_a_search_keeps_its_artifacts_in_the_object_store_and_a_loaded_run_uses_them(s3_client, tmp_path, caplog):
    listening = {c.laddr.ip for c in psutil.Process(s3_client.process.pid).net_connections()
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {LOOPBACK}
    folder = tmp_path / "run"
    experiment = tiny(folder, proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=1)), trials=2,
                      artifacts="s3://alone/first")
    with caplog.at_level(logging.DEBUG):
        results = codesign.run(experiment, progress=False)
    assert results.counts(duplicates=False) == {"complete": 2}
    keys = s3_client.keys("alone")
    assert keys and all(key.startswith("first/") for key in keys) and not any("probe" in key for key in keys)
    assert not (folder / "artifacts").exists()
    for trial in results.trials:  # every artifact id a trial names is an object under the prefix
        assert {f"first/{i}" for i in trial.user_attrs["artifacts"].values()} <= set(keys)
    loaded = codesign.load(folder)
    best = loaded.pareto_front[0]
    outcome = Outcome.from_trial(best.trial, loaded.artifacts)
    assert outcome.weights is not None and outcome.cost_report is not None
    data = codesign.load_dataset("synthetic", seed=experiment.seed)
    accuracy = float((best.predict(data.x_val, normalised=True) == data.y_val).mean())
    assert accuracy == pytest.approx(best.metrics["accuracy"], abs=1.5 / len(data.y_val))
    # the accuracy cache is beside the artifacts, so no worker writes the run folder
    assert any(key.startswith("first/accuracy_cache/") and key.endswith(".json") for key in keys)
    assert not list(folder.glob("accuracy_cache/*.json"))
    assert files_holding(folder, s3_client.secret) == [] and s3_client.secret not in caplog.text


def test_credentials_in_the_url_and_an_unknown_protocol_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"field 'artifacts' s3://\*\*\*@runs/x: the URL holds credentials; give "
                                         r"them in .*AWS_ACCESS_KEY_ID") as refused:
        tiny(tmp_path / "run", artifacts="s3://key:hunter2@runs/x")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValueError, match=r"field 'artifacts' nope://runs/x: unknown protocol 'nope'"):
        tiny(tmp_path / "run", artifacts="nope://runs/x")


@pytest.mark.usefixtures("ray_session")
def test_an_unreachable_or_missing_store_is_one_error_before_the_study_is_touched(s3_client, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"artifacts s3://no-such-bucket/x: the object store cannot be written "
                                         r"\(.*\); credentials come from"):
        codesign.run(tiny(tmp_path / "missing", artifacts="s3://no-such-bucket/x"), progress=False)
    assert not (tmp_path / "missing" / "study.log").exists()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{LOOPBACK}:{free_port()}")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"artifacts s3://runs/x: the object store cannot be written"):
        codesign.run(tiny(tmp_path / "unreachable", artifacts="s3://runs/x"), progress=False)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "unreachable" / "study.log").exists()



@pytest.mark.usefixtures("ray_session")
def test_a_store_failing_mid_run_leaves_the_trial_unfinished_and_a_rerun_completes_it(s3_client, tmp_path,
                                                                                     monkeypatch):
    """The store refuses the trials' uploads after accepting the probe (a bucket policy change, an outage): the
    run stops with the store's error, no trial is complete without its artifacts, and running the experiment
    again re-queues the unfinished trial and completes the budget."""
    from codesign.artifacts import FsspecArtifactStore

    accepted = FsspecArtifactStore.write

    def refuse_all_but_the_probe(store, artifact_id, body):
        if not artifact_id.startswith(".codesign-probe-"):
            raise PermissionError(f"{store.url}/{artifact_id}: Access Denied")
        accepted(store, artifact_id, body)

    experiment = tiny(tmp_path / "run", trials=2, artifacts="s3://runs/failing")
    monkeypatch.setattr(FsspecArtifactStore, "write", refuse_all_but_the_probe)
    with pytest.raises(PermissionError, match="Access Denied"):
        codesign.run(experiment, progress=False)
    stopped = codesign.load(tmp_path / "run")
    assert "complete" not in stopped.counts() and stopped.pareto_front == []
    monkeypatch.setattr(FsspecArtifactStore, "write", accepted)
    results = codesign.run(experiment, progress=False)
    counts = results.counts(duplicates=False)
    assert counts["complete"] == 2 and counts["interrupted"] >= 1  # the stopped run's trials, re-queued
    keys = set(s3_client.keys("runs"))
    complete = [trial for trial in results.trials if trial_status(trial) == Status.COMPLETE]
    assert len(complete) == 2
    for trial in complete:  # counted complete: told complete, its artifacts in the store
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert {f"failing/{i}" for i in trial.user_attrs["artifacts"].values()} <= keys


@pytest.mark.usefixtures("ray_session")
def test_codesign_run_takes_the_artifact_store_from_the_command_line(s3_client, tmp_path, monkeypatch):
    """``codesign run FILE --artifacts URL`` overrides the experiment file's field (``--storage`` likewise: its
    PostgreSQL case is in test_postgres.py); a URL holding credentials is exit code 2 before anything runs."""
    path = experiment_file(tmp_path, trials=2)
    done = run_in_process(["run", str(path), "--no-progress", "--artifacts", "s3://runs/from-cli"])
    assert done.returncode == 0, done.stderr
    assert codesign.load(tmp_path / "run").counts(duplicates=False) == {"complete": 2}
    assert any(key.startswith("from-cli/") for key in s3_client.keys("runs"))
    refused = run_in_process(["run", str(path), "--artifacts", "s3://key:hunter2@runs/x"])
    assert refused.returncode == 2 and "holds credentials" in refused.stderr and "hunter2" not in refused.stderr


def test_the_accuracy_cache_in_the_object_store_evaluates_a_pair_once_and_renews_its_lease(s3_client):
    """Workers sharing a cache under an object store URL (no shared disk): a pair is evaluated once while the
    others wait, though the evaluation outlasts the lease (its holder renews it); a lock its holder stopped
    renewing (a node that died) is taken over."""
    import threading

    from codesign.accuracy.cache import AccuracyCache, cache_key
    from codesign.stores import StoreEntries
    from test_proxies import NET, SlowProxy

    data = codesign.load_dataset("synthetic")
    # an evaluation of 2.5 s outlasts a 1 s lease (renewed every 0.25 s: a store write may lag on a busy machine)
    url, proxy, results = "s3://other/cache", SlowProxy(seconds=2.5), []
    workers = [threading.Thread(target=lambda: results.append(
        AccuracyCache(url, poll_seconds=0.05, lease_s=1.0).evaluate([(NET, None)], data, proxy)[0]))
        for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert proxy.calls == 1 and [r.score for r in results] == [0.75] * 3
    key = cache_key(NET, None, data, proxy, 0)
    assert f"cache/{key}.json" in s3_client.keys("other") and not any(k.endswith(".lock") for k in s3_client.keys("other"))
    assert AccuracyCache(url).get(key).cached and len(AccuracyCache(url)) == 1
    other = cache_key(NET, None, data, proxy, 1)  # held by a node that died 10 minutes ago
    StoreEntries(url).write(f"{other}.lock", f'{{"host": "gone", "pid": 1, "time": {time.time() - 600}}}'.encode())
    assert not StoreEntries(url).create(f"{other}.lock", b"{}")  # held: a conditional write does not replace it
    proxy.seconds = 0.1
    assert AccuracyCache(url, poll_seconds=0.05).evaluate([(NET, None)], data, proxy, seed=1)[0].score == 0.75
    assert proxy.calls == 2 and len(AccuracyCache(url)) == 2


def test_a_drivers_lease_in_the_object_store_is_renewed_while_it_runs_and_lapses_when_it_stops(s3_client):
    """A driver's lease under a URL outlives its lease time while its renewal runs, and counts as gone once
    it is not renewed for that long (the driver's host died): then it is removed."""
    from codesign import lease

    url, lease_s = "s3://other/leases", 1.5  # renewed every 0.375 s: a write may take a second on a busy machine
    held = lease.acquire(url, lease_s=lease_s)
    try:
        time.sleep(2.5 * lease_s)
        assert [d.id for d in lease.live_drivers(url, lease_s=lease_s)] == [held.info.id]
        assert lease.live_drivers(url, exclude=held.info.id, lease_s=lease_s) == []
        held.renewal.stop()  # its host stops answering: no more renewals, the entry stays
        time.sleep(1.2 * lease_s)
        assert lease.live_drivers(url, lease_s=lease_s) == []
        assert not any(k.startswith("leases/drivers/") for k in s3_client.keys("other"))  # the lapsed one went
    finally:
        held.renewal = None
    again = lease.acquire(url)
    again.release()
    assert not any(k.startswith("leases/drivers/") for k in s3_client.keys("other"))


@pytest.mark.usefixtures("ray_session")
def test_drivers_that_share_no_run_folder_tell_live_from_dead_by_their_leases_beside_the_artifacts(
        s3_client, tmp_path):
    """Two hosts' drivers share the study and the object store but no disk: each has its own run folder. A
    driver leaves the trials of a driver whose lease in the object store is renewed alone (and counts them in
    the budget), and re-queues those of one whose lease lapsed."""
    from codesign import lease
    from codesign.storage import DRIVER
    from codesign.stores import LEASE_S, StoreEntries

    storage, artifacts = f"journal://{tmp_path / 'shared' / 'study.log'}", "s3://runs/two-hosts"
    codesign.run(tiny(tmp_path / "host_a", storage=storage, artifacts=artifacts, trials=1), progress=False)
    study = optuna.load_study(study_name="tiny", storage=make_storage(storage))
    elsewhere = lease.acquire(artifacts)  # a live driver on another host
    dead = {"id": "gone-7-0000", "host": "gone", "pid": 7, "started": time.time() - 3600,
            "time": time.time() - 2 * LEASE_S}  # its host died two lease times ago
    StoreEntries(f"{artifacts}/drivers").write("gone-7-0000.json", json.dumps(dead).encode())
    for driver in (elsewhere.info.id, dead["id"]):
        study.ask().set_user_attr(DRIVER, driver)
    try:
        results = codesign.run(tiny(tmp_path / "host_b", storage=storage, artifacts=artifacts, trials=4),
                               progress=False)
    finally:
        elsewhere.release()
    states = {t.user_attrs.get(DRIVER): t.state for t in results.study.trials[1:3]}
    assert states[elsewhere.info.id] == optuna.trial.TrialState.RUNNING  # the live driver's: untouched
    assert states[dead["id"]] == optuna.trial.TrialState.FAIL  # the dead one's: re-queued
    counted = [t.state for t in results.study.trials]
    assert counted.count(optuna.trial.TrialState.COMPLETE) == 3  # 1 before + 1 running elsewhere + 2 = 4
    assert not (tmp_path / "host_b" / "drivers").exists()
    assert not any("/drivers/" in key for key in s3_client.keys("runs"))  # released, and the lapsed one removed


def audited(proxy, forbidden: str):
    """``proxy``, in a worker that may not open any file under ``forbidden`` (the driver's run folder): a Python
    audit hook, installed by the first evaluation in each worker process, raises PermissionError for such an
    open, and the evaluation checks that it does."""
    def install_and_check():
        import sys

        if not getattr(sys, "_codesign_audited", False):
            def hook(event, args):
                if event == "open" and isinstance(args[0], str) and args[0].startswith(forbidden):
                    raise PermissionError(f"worker opened {args[0]} on the driver's disk")
            sys.addaudithook(hook)
            sys._codesign_audited = True
        try:
            open(f"{forbidden}/probe", "w")
        except PermissionError:
            pass
        else:
            raise AssertionError("the audit hook is not active")
    return wrapped(proxy, install_and_check)


@pytest.mark.usefixtures("ray_session")
def test_workers_that_may_not_open_the_run_folder_train_report_to_the_pruner_and_cache(s3_client, tmp_path):
    """No worker opens a file in the driver's run folder: the dataset comes inside the evaluator, the accuracy
    cache and artifacts are in the object store, and a pruner's reports go to the driver's pruner desk (the
    study here is a journal file in the run folder, which only the driver's node has)."""
    folder = tmp_path / "run"
    trained = codesign.TrainedProxy(codesign.TrainConfig(epochs=3))
    experiment = tiny(folder, proxy=audited(trained, str(folder.resolve())), trials=3, artifacts="s3://other/audited",
                      pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    results = codesign.run(experiment, progress=False)
    reasons = [Outcome.from_trial(t).reason for t in results.trials]
    assert set(results.counts(duplicates=False)) <= {"complete", "pruned"}, reasons
    twins = optuna.load_study(study_name=f"{experiment.name}:fidelity",
                              storage=make_storage(experiment.storage_url)).trials
    trained = [t for t in results.trials if not Outcome.from_trial(t).cached]  # the others read the cache
    assert trained and all(twins[t.user_attrs[FIDELITY_TRIAL]].intermediate_values for t in trained), reasons
    assert any(key.startswith("audited/accuracy_cache/") for key in s3_client.keys("other"))


def test_a_supernet_and_its_progress_are_kept_under_an_object_store_url(s3_client):
    """A run with its artifacts in an object store keeps its trained supernet (and a predictor, the same way) under
    ``<artifacts>/accuracy_cache/supernets``, so every node loads the one a worker trained; the progress a worker
    writes while it trains is what the driver's bar reads back from there."""
    import jax
    import numpy as np

    from codesign.accuracy.cache import OneOffProgress, one_offs_in_progress
    from codesign.accuracy.supernet import Supernet, SupernetConfig, load_supernet, save_supernet
    from search_spaces.elastic import ElasticSpace, init
    from tiny import COMPRESSION, ELASTIC_NETWORKS

    space, config = ElasticSpace.of(ELASTIC_NETWORKS, COMPRESSION, 8), SupernetConfig(epochs=1)
    variables = jax.device_get(init(space, 0))
    url = "s3://other/kept/accuracy_cache"
    save_supernet(f"{url}/supernets", "k", Supernet(space, variables, ELASTIC_NETWORKS, COMPRESSION, config,
                                                    {"trained_s": 1.5}))
    assert {"kept/accuracy_cache/supernets/k.json", "kept/accuracy_cache/supernets/k.msgpack"} <= set(
        s3_client.keys("other"))
    loaded = load_supernet(f"{url}/supernets", "k", ELASTIC_NETWORKS, COMPRESSION, config, 8)
    assert loaded.record == {"trained_s": 1.5, "key": "k"}
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, loaded.variables, variables))
    assert load_supernet(f"{url}/supernets", "other", ELASTIC_NETWORKS, COMPRESSION, config, 8) is None
    OneOffProgress(f"{url}/supernets", "k", "supernet", epochs=1)(0, 10)
    shown, = one_offs_in_progress(url)
    assert (shown["what"], shown["step"], shown["steps"]) == ("supernet", 0, 10)
