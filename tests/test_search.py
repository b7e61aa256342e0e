"""The co-design search end to end: Optuna ask/tell with Ray tasks, constraints, artifacts, reload,
resume, failed candidates, and nested mode against an exhaustive loop."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import codesign
from codesign.accuracy.datasets import load_dataset
from codesign.progress import ParetoFront, TrialClock
from codesign.evaluator import Evaluator
from codesign.metrics import Objective, hardware_metrics, pareto_mask
from codesign.outcome import Candidate, Outcome, Status, WorkerInfo, trial_status
from codesign.storage import make_storage, open_study, run_folder_storage
from cost_models import Accelerator, evaluate
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.compression import CompressionSpace
from search_spaces.network_space import NetworkSpace
from search_spaces.networks import NetworkSpec

import tiny
from tiny import ACCELERATORS as TINY_ACCELERATORS, CHEAP, NETWORKS as TINY_NETWORKS


pytestmark = pytest.mark.usefixtures("ray_session")  # conftest.py: one local Ray for the test run


def experiment(tmp_path, **changes):
    """The tiny search (tests/tiny.py) with a compression space, in ``tmp_path / "run"``."""
    settings = dict(name="t", compression_space=CompressionSpace(w_bits=(8, 16), a_bits=(16,), prune_ratios=(0.0, 0.5)))
    return tiny.experiment(tmp_path / "run", **{**settings, **changes})


def dominated(a, b, directions):
    """b dominates a."""
    sign = [1 if d == "minimize" else -1 for d in directions]
    no_worse = all(s * y <= s * x for x, y, s in zip(a, b, sign))
    return no_worse and any(s * y < s * x for x, y, s in zip(a, b, sign))


def test_a_stepped_wall_clock_never_makes_the_wait_overlap_the_workers_time(monkeypatch):
    import time

    clock = TrialClock().submit()
    time.sleep(0.02)  # the task: two trials of 4 ms each
    worker = WorkerInfo(seconds=0.004, batch=2, finished_at=time.time())
    monkeypatch.setattr(time, "time", lambda: worker.finished_at + 3600.0)  # the clock stepped an hour ahead
    timing = clock.timing(Outcome(Status.COMPLETE, worker=worker), batch=2)
    assert timing.worker_s == 0.004 and 0 <= timing.queued_s
    assert timing.worker_s <= timing.roundtrip_s - timing.queued_s + 1e-12
    monkeypatch.setattr(time, "time", lambda: worker.finished_at - 3600.0)  # and an hour back
    assert clock.timing(Outcome(Status.COMPLETE, worker=worker), batch=2).queued_s == 0.0


def test_end_to_end_search_stores_trials_front_constraints_and_reloads_a_working_model(tmp_path, capsys):
    exp = experiment(tmp_path, proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=2)), trials=4,
                     constraints=[codesign.Constraint("area", max=0.6)])
    results = codesign.run(exp, progress=False)
    assert results.counts(duplicates=False) == {"complete": 4}
    trials = results.study.get_trials(states=(TrialState.COMPLETE,))
    for t in trials:
        outcome = Outcome.from_trial(t, results.artifacts)
        assert t.constraints["area<=0.6"] == pytest.approx(outcome.metrics["area"] - 0.6)
        assert list(t.values) == [outcome.metrics[m] for m in ("accuracy", "latency", "energy")]
        assert outcome.weights is not None and outcome.cost_report is not None
        assert outcome.cost_report.total["latency_s"] * 1e3 == pytest.approx(outcome.metrics["latency"], rel=1e-12)
        assert all(name.split(".")[0] in ("net", "compress", "accel") for name in t.params)
        # the wait on the driver is apart from the worker's time, even when the wall clock is stepped
        timing = t.user_attrs["run"]["timing"]
        assert 0 <= timing["queued_s"] and timing["worker_s"] <= timing["roundtrip_s"] - timing["queued_s"] + 1e-9
    front = results.pareto_front
    assert front
    directions = exp.directions
    for d in front:
        assert d.feasible and d.metrics["area"] <= 0.6
        assert not any(dominated(d.trial.values, t.values, directions) for t in trials if _feasible(t))
    again = codesign.load(tmp_path / "run")
    best = again.pareto_front[0]
    data = load_dataset("synthetic", seed=exp.seed)
    accuracy = float((best.predict(data.x_val, normalised=True) == data.y_val).mean())
    assert accuracy == pytest.approx(best.metrics["accuracy"], abs=1e-9)
    raw = data.x_val * np.float32(data.std) + np.float32(data.mean)  # as the images were before the dataset's split
    assert np.array_equal(best.predict(raw), best.predict(data.x_val, normalised=True))
    assert not np.array_equal(best.model()(raw, train=False), best.model()(data.x_val, train=False))
    report = best.cost_report()
    assert report.total["latency_s"] * 1e3 == pytest.approx(best.metrics["latency"], rel=1e-6)
    assert {r["dataflow"] for r in report.layers} <= {"ws", "os", "simd"}
    check_the_dashboard_shows_the_study(again, tmp_path / "run")
    check_trials_shows_feasibility_and_each_violation(again, tmp_path / "run", capsys)
    check_finalize_retrains_the_front_and_measures_the_test_split(again, data, tmp_path / "run")
    finalized = codesign.load(tmp_path / "run").pareto_front[0]
    check_the_handover_holds_every_format_and_the_onnx_model_predicts_as_the_design(finalized, raw, tmp_path / "handover")


def check_the_handover_holds_every_format_and_the_onnx_model_predicts_as_the_design(design, raw, folder):
    """A finalized design's hand-over: the finalized weights, taking raw NHWC images as design.predict does, and
    a README saying so; the search's weights and channels-first images when asked."""
    import onnx
    import onnxruntime

    from codesign.results.export import write_design

    def onnx_predictions(path, images):
        session = onnxruntime.InferenceSession(str(path))
        return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0].argmax(-1)

    def metadata(path):
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}

    names = {path.name for path in write_design(design, folder, "all")}
    assert {"model.onnx", "topology.csv", "accelerator.cfg", "accelerator.json", "network.json", "compression.json",
            "metrics.json", "cost_report.json", "cost_report.csv", "README.md"} <= names
    finalized, searched = design.predict(raw, final=True), design.predict(raw)
    assert not np.array_equal(finalized, searched)  # two sets of weights that tell apart
    assert np.array_equal(onnx_predictions(folder / "model.onnx", raw), finalized)  # raw NHWC, as design.predict
    readme = (folder / "README.md").read_text()
    assert f"# Design: trial {design.number}" in readme
    assert f"holds the finalized weights (retrained for {design.final.epochs:g} epochs" in readme and "NHWC" in readme
    assert metadata(folder / "model.onnx")["codesign.layout"] == "nhwc"
    rows = (folder / "cost_report.csv").read_text().splitlines()
    assert len(rows) == len(design.cost_report().layers) + 2 and rows[-1].startswith("total")
    write_design(design, folder / "search", "onnx", layout="nchw", weights="search")
    channels_first = raw.transpose(0, 3, 1, 2)
    assert np.array_equal(onnx_predictions(folder / "search" / "model.onnx", channels_first), searched)
    assert metadata(folder / "search" / "model.onnx")["codesign.weights"].startswith("search's weights")
    with pytest.raises(ValueError, match="field 'layout' must be one of nhwc, nchw, got 'hwc'"):
        write_design(design, folder / "bad", "onnx", layout="hwc")


def check_trials_shows_feasibility_and_each_violation(results, folder, capsys):
    """`codesign trials` (table and --json): whether each trial is feasible and by how much it violates what."""
    import json

    from codesign.cli import main

    assert main(["trials", str(folder), "--json"]) == 0
    rows = {row["trial"]: row for row in json.loads(capsys.readouterr().out)}
    assert main(["trials", str(folder)]) == 0
    printed = capsys.readouterr().out.splitlines()
    column = printed[1].index("feasible")
    lines = {int(line.split()[0]): line for line in printed[3:]}
    verdicts = set()
    for trial in results.trials:
        if trial.user_attrs["status"] != "complete":
            continue
        violation = trial.constraints["area<=0.6"]
        row = rows[trial.number]
        assert row["violations"] == {"area<=0.6": violation} and row["feasible"] == (violation <= 0)
        verdicts.add(row["feasible"])
        assert lines[trial.number][column:column + 8].strip() == ("yes" if violation <= 0 else "no")
        assert (f"violates area<=0.6 by {violation:.4g}" in lines[trial.number]) == (violation > 0)
    assert verdicts == {True, False}, "the run should have feasible and infeasible trials"


def check_the_dashboard_shows_the_study(results, folder):
    """optuna-dashboard's own API: named objectives, each metric and violation a sortable attribute, and the
    per-epoch validation accuracy as the learning curve."""
    import json
    import wsgiref.util

    from optuna_dashboard import wsgi

    storage = make_storage(run_folder_storage(folder))
    study_id = storage.get_study_id_from_name(results.study.study_name)
    environ = {"PATH_INFO": f"/api/studies/{study_id}", "QUERY_STRING": "after=0", "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(wsgi(storage)(environ, lambda code, headers, *error: status.append(code)))
    assert status[0].startswith("200"), (status, environ["wsgi.errors"].getvalue()[-800:])
    detail = json.loads(body)
    assert detail["objective_names"] == ["accuracy", "latency", "energy"]
    sortable = {a["key"] for a in detail["union_user_attrs"] if a["sortable"]}
    assert {"accuracy", "latency", "energy", "edp", "area", "model_size", "violation area<=0.6"} <= sortable
    for shown in detail["trials"]:
        trial = results.study.trials[shown["number"]]
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        if attrs["status"] == "duplicate":  # told at once, never run: no metrics
            continue
        assert float(attrs["latency"]) == Outcome.from_trial(trial).metrics["latency"]
        assert attrs["feasible"] == str(trial.constraints["area<=0.6"] <= 0)
        curve = [(v["step"], v["value"]) for v in shown["intermediate_values"]]
        assert curve == [tuple(h) for h in trial.user_attrs["history"]] and len(curve) == 2
        assert curve[-1][1] == float(attrs["accuracy"])


def check_finalize_retrains_the_front_and_measures_the_test_split(results, data, folder):
    from flax import serialization
    from optuna.artifacts import download_artifact

    from codesign.accuracy.training import accuracy, predictor

    final, = results.finalize(1, epochs=1)
    best = results.pareto_front[0]
    assert (final.trial, final.status, final.proxy_value) == (best.number, "complete", best.metrics["accuracy"])
    path = str(folder / "final.msgpack")
    download_artifact(artifact_store=results.artifacts, file_path=path, artifact_id=final.weights_artifact)
    with open(path, "rb") as f:
        weights = serialization.msgpack_restore(f.read())
    predict = predictor(best.network, best.compression)
    assert accuracy(predict, weights, data.x_test, data.y_test) == final.test_accuracy  # what was stored was measured
    assert accuracy(predict, weights, data.x_val, data.y_val) == final.val_accuracy
    reloaded = codesign.load(folder)
    assert reloaded.pareto_front[0].final == final and "test acc" in reloaded.table()
    retrained = reloaded.pareto_front[0].predict(data.x_test, normalised=True, final=True)
    assert (retrained == data.y_test).mean() == pytest.approx(final.test_accuracy)  # the finalized weights
    others = [d for d in reloaded.designs if d.final is None]
    if others:
        with pytest.raises(ValueError, match=rf"trial {others[0].number} has no finalized weights"):
            others[0].model(final=True)


def test_spread_picks_designs_evenly_along_the_front_with_both_ends():
    from codesign.results.finalize import spread_over

    assert spread_over(10, 5) == [0, 2, 4, 7, 9] and spread_over(10, 2) == [0, 9] and spread_over(10, 1) == [0]
    assert spread_over(3, 5) == [0, 1, 2] == spread_over(3, None)


def _feasible(t):
    return all(v <= 0 for v in (t.constraints or {}).values())


def test_resume_reaches_the_budget_with_no_trial_lost_or_duplicated(tmp_path):
    exp = experiment(tmp_path, trials=6)
    first = codesign.run(exp, progress=False, stop_after=2)
    assert first.counts(duplicates=False) == {"complete": 2}
    # a driver that died leaves a trial RUNNING: it is re-queued, not counted
    study = open_study(exp)
    stale = study.ask()
    exp.network_space.sample(stale)
    results = codesign.run(exp, progress=False)
    assert trial_status(results.study.get_trials()[stale.number]) == Status.INTERRUPTED
    assert results.counts(duplicates=False) == {"complete": 6, "interrupted": 1}
    counted = [t for t in results.trials if trial_status(t) != Status.INTERRUPTED]
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in counted)
    assert len({t.number for t in counted}) == 6
    requeued = [t for t in counted if "requeued_from" in t.user_attrs]
    assert [t.user_attrs["requeued_from"] for t in requeued] == [stale.number]
    assert {k: v for k, v in requeued[0].params.items() if k.startswith("net.")} == \
        {k: v for k, v in stale.params.items()}
    # a third run has nothing left to do
    assert len(codesign.run(exp, progress=False).trials) == len(results.trials)


def test_failed_candidates_are_recorded_with_their_reason_and_the_search_goes_on(tmp_path, capsys):
    from codesign.cli import main

    # wide layers on an accelerator with a 1 KiB buffer: designs that fit no tiling, each a failed trial
    wide = NetworkSpace(blocks=("dwsep",), stages=(1,), depths=(1,), widths=(512,), stem_widths=(256, 512),
                        kernels=(3,), stem_kernels=(3,))
    small_buffer = AcceleratorSpace(rows=(8,), cols=(8,), gb_kib=(1,), rf_bytes=(16,), dram_gbps=(16.0,),
                                    mac_bits=(16,), zero_skip=(False,), dataflows=("ws",))
    unbuildable = experiment(tmp_path, network_space=wide, accelerator_space=small_buffer, trials=2)
    results = codesign.run(unbuildable, progress=False)
    assert results.counts(duplicates=False) == {"failed": 2}
    reason = "ValueError: 1 layer fits no tiling of the 1 KiB global buffer, so these numbers are not buildable"
    assert all(reason in Outcome.from_trial(t).reason for t in results.trials if t.user_attrs["status"] == "failed")
    run = str(unbuildable.folder)
    assert main(["show", run]) == 0  # the empty front, then why
    shown = capsys.readouterr().out
    assert "trials that did not complete, by reason (2):" in shown and reason in shown, shown
    assert main(["trials", run]) == 0
    listed = capsys.readouterr().out.splitlines()[3:]
    assert len(listed) == 2 and all(" failed " in line and reason in line for line in listed)
    assert main(["plot", run]) == 2
    assert "nothing to plot: no trial of 't' completed ({'failed': 2})" in capsys.readouterr().err
    rng = np.random.default_rng(0)  # a dataset that is there when the experiment is built, and gone when it runs:
    path = tmp_path / "vanishing.npz"  # the driver reads it (and ships it to the workers), so one error up front
    np.savez(path, x_train=rng.normal(size=(60, 8, 8)), y_train=np.arange(60) % 3, x_test=rng.normal(size=(20, 8, 8)),
             y_test=np.arange(20) % 3)
    vanishing = experiment(tmp_path, name="v", run_folder=tmp_path / "v", dataset=str(path),
                           proxy=codesign.TrainedProxy(), trials=2)
    path.unlink()
    with pytest.raises(ValueError, match=f"experiment: field 'dataset': no file {path}"):
        codesign.run(vanishing, progress=False)
    assert not (tmp_path / "v" / "study.log").exists()
    diverging = experiment(tmp_path, name="d", run_folder=tmp_path / "d", trials=2,
                           proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=1, learning_rate=1e38)))
    results = codesign.run(diverging, progress=False)
    assert results.counts(duplicates=False) == {"diverged": 2}
    assert all(t.state == TrialState.FAIL and "diverged" in Outcome.from_trial(t).reason for t in results.trials)


def dying_proxy(folder: Path, deaths: int):
    """A proxy whose worker process dies (``os._exit``) the first ``deaths`` times it scores a pair, writing one
    ``<pair>.<pid>.died`` file in ``folder`` each time, then scores it 0.5. Defined in a function, so Ray's
    pickle carries the class itself to the workers."""
    import hashlib
    from codesign.accuracy.proxy import Accuracy

    class DyingProxy:
        name, metric, pairs_per_task = "dying", "accuracy", 1

        def describe(self) -> dict:
            return {"proxy": "dying", "deaths": deaths}

        def bind(self, network_space, compression_space, folder=None):
            return self

        def evaluate(self, pairs, dataset, seed=0, reporters=None):
            key = hashlib.sha256(repr(pairs).encode()).hexdigest()[:12]
            if len(list(folder.glob(f"{key}.*.died"))) < deaths:
                (folder / f"{key}.{os.getpid()}.died").touch()
                os._exit(1)
            return [Accuracy(Status.COMPLETE, 0.5, seconds=0.0) for _ in pairs]
    return DyingProxy()


def test_a_worker_that_dies_mid_trial_costs_a_retry_and_beyond_its_retries_fails_only_its_trial(tmp_path):
    """The local counterpart of test_cluster's test_killing_the_worker_node_loses_no_trial (marked slow: it kills
    a whole node of a two-node cluster): here the Ray worker process scoring each trial dies once; Ray runs the
    task again on a new worker and every trial completes. With no retries left the trial fails with the reason
    and the search goes on to its budget."""
    deaths = tmp_path / "deaths"
    deaths.mkdir()
    results = codesign.run(experiment(tmp_path, proxy=dying_proxy(deaths, 1), max_retries=1, trials=2,
                                      compression_space=None), progress=False)
    assert results.counts(duplicates=False) == {"complete": 2}
    files = [path.name.split(".") for path in deaths.glob("*.died")]
    assert len(files) == len({key for key, _, _ in files}) >= 1  # each candidate's first worker died ...
    died = {int(pid) for _, pid, _ in files}
    assert not died & {t.user_attrs["run"]["worker"]["pid"] for t in results.trials}  # ... and another scored it
    lost = codesign.run(experiment(tmp_path, name="lost", run_folder=tmp_path / "lost", compression_space=None,
                                   proxy=dying_proxy(deaths, 10), max_retries=0, trials=1), progress=False)
    assert lost.counts(duplicates=False) == {"failed": 1}
    reasons = [Outcome.from_trial(t).reason for t in lost.trials]
    assert all(reason.startswith("worker lost after 0 retries: ") for reason in reasons), reasons


def test_a_dataset_on_disk_reaches_the_workers_inside_the_evaluator_not_by_its_path(tmp_path):
    """The driver reads a dataset file once and the evaluator (put once into Ray's object store) carries its
    arrays, so a worker needs nothing of the driver's disk: with the file gone, the evaluator still scores."""
    from codesign.accuracy.datasets import Dataset

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=rng.normal(size=(60, 8, 8)), y_train=np.arange(60) % 3, x_test=rng.normal(size=(20, 8, 8)),
             y_test=np.arange(20) % 3)
    exp = experiment(tmp_path, dataset=str(path), trials=1)
    evaluator = Evaluator.from_experiment(exp)
    assert isinstance(evaluator.dataset, Dataset)
    assert evaluator.dataset.fingerprint == load_dataset(str(path), seed=exp.seed).fingerprint
    path.unlink()
    outcome = evaluator(Candidate(exp.searched_network_space.draw(rng), None, Accelerator()))
    assert outcome.status == Status.COMPLETE, outcome.reason


def test_nested_mode_picks_the_accelerator_an_exhaustive_loop_picks(tmp_path):
    network = TINY_NETWORKS.draw(np.random.default_rng(0))
    space = AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16), dataflows=("ws", "os", "flex"), gb_kib=(32, 128),
                             rf_bytes=(16,), dram_gbps=(8.0, 32.0), mac_bits=(16,), zero_skip=(False, True))
    constraint = codesign.Constraint("area", max=1.0)
    evaluator = Evaluator(CHEAP, "synthetic", str(tmp_path / "cache"), (Objective("latency"), Objective("energy")),
                          (constraint,), "edp", nested=space)
    out = evaluator(Candidate(network))
    assert out.status == Status.COMPLETE
    # the exhaustive loop: one cost-model call per accelerator, brute-force Pareto front, lowest EDP
    workload = network.workload()
    rows = []
    for acc in space.grid():
        total = evaluate(workload, acc).total
        m = {k: float(v) for k, v in hardware_metrics(total).items()}
        rows.append((acc, m))
    feasible = [(a, m) for a, m in rows if m["area"] <= 1.0]
    front = [(a, m) for a, m in feasible if not any(
        o["latency"] <= m["latency"] and o["energy"] <= m["energy"] and (o["latency"] < m["latency"] or o["energy"] < m["energy"])
        for _, o in feasible)]
    best = min(front, key=lambda am: am[1]["edp"])[0]
    assert out.accelerator == best
    listed = {}  # accelerators equal in every metric are listed once: the first in the grid
    for a, m in front:
        listed.setdefault(tuple(sorted(m.items())), a)
    assert [p.accelerator for p in out.front] == list(listed.values()) and len(listed) < len(front)


def test_a_design_reads_its_stored_cost_report_and_says_when_the_model_is_newer(tmp_path, monkeypatch):
    import warnings

    import codesign.results.designs as designs

    codesign.run(experiment(tmp_path, trials=2), progress=False)
    design = codesign.load(tmp_path / "run").designs[0]
    stored_totals = dict(design.cost_report().total)
    assert design.cost_model_version == designs.COST_MODEL_VERSION

    def no_recompute(*args, **kwargs):
        raise AssertionError("the stored report was recomputed")
    monkeypatch.setattr(designs, "evaluate", no_recompute)
    design = codesign.load(tmp_path / "run").designs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same version: no warning
        assert design.cost_report().total == stored_totals
    monkeypatch.undo()
    version = design.cost_model_version
    monkeypatch.setattr(designs, "COST_MODEL_VERSION", "999")
    design = codesign.load(tmp_path / "run").designs[0]
    with pytest.warns(UserWarning, match=rf"computed by cost model v{version}; the installed model is v999"):
        design.cost_report()
    assert design.cost_report(recompute=True).total == pytest.approx(stored_totals, rel=1e-12)


def test_an_outcome_reads_back_as_it_was_told(tmp_path):
    from optuna.artifacts import FileSystemArtifactStore

    network = TINY_NETWORKS.draw(np.random.default_rng(3))
    accelerator = TINY_ACCELERATORS.draw(np.random.default_rng(3))
    evaluator = Evaluator(codesign.TrainedProxy(codesign.TrainConfig(epochs=1)), "synthetic", str(tmp_path / "cache"),
                          (Objective("accuracy"), Objective("latency")), (codesign.Constraint("energy", max=1e-9),))
    told = evaluator(Candidate(network, None, accelerator))
    assert told.status == Status.COMPLETE and told.constraints["energy<=1e-09"] > 0
    study = optuna.create_study(directions=["maximize", "minimize"])
    store = FileSystemArtifactStore(str(tmp_path))
    trial = study.ask()
    told.tell(study, trial, store)
    failed = Outcome.failed("no reason", Candidate(network))
    failed.tell(study, study.ask(), store)
    read, read_failed = (Outcome.from_trial(t, store) for t in study.get_trials())
    for field in ("status", "candidate", "metrics", "values", "constraints", "accelerator", "history",
                  "cost_model_version", "reason"):
        assert getattr(read, field) == getattr(told, field), field
    assert read.cost_report.layers == told.cost_report.layers and read.cost_report.total == told.cost_report.total
    for x, y in zip(*(jax_leaves(o.weights) for o in (told, read))):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert (read_failed.status, read_failed.reason, read_failed.candidate) == (Status.FAILED, "no reason",
                                                                                Candidate(network))
    assert study.get_trials()[1].state == TrialState.FAIL


def test_a_trial_of_schema_one_reads_back_through_migrate():
    """Schema 1 kept the metrics in one attribute, how a trial was computed at the top, and no status."""
    from codesign.outcome import TrialTiming, WorkerInfo, migrate
    from codesign.storage import read_trials

    study = optuna.create_study(directions=["maximize", "minimize"])
    old = {"metrics": {"accuracy": 0.5, "latency": 1.0}, "proxy_seconds": 2.5, "accuracy_cached": True,
           "cost_model_version": "1", "worker": {"node": "n", "host": "h", "pid": 7, "seconds": 3.0},
           "timing": {"sample_s": 0.05, "roundtrip_s": 3.1, "queued_s": 0.0, "worker_s": 3.0, "proxy_s": 2.5,
                      "tell_s": 0.01, "overhead_s": 0.66}}
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0], user_attrs=old))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "too big"}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # left running by a dead driver
    read = Outcome.from_trial(migrate(study.trials[0]))
    assert (read.status, read.metrics, read.proxy_seconds, read.cached, read.cost_model_version) == (
        Status.COMPLETE, {"accuracy": 0.5, "latency": 1.0}, 2.5, True, "1")
    assert read.worker == WorkerInfo("n", "h", 7, 3.0) and read.timing.overhead_s == pytest.approx(0.66)
    assert isinstance(read.timing, TrialTiming)
    assert [trial_status(t) for t in read_trials(study)] == [Status.COMPLETE, Status.FAILED, Status.INTERRUPTED]
    assert migrate(migrate(study.trials[0])).user_attrs == migrate(study.trials[0]).user_attrs  # idempotent


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_an_experiment_is_frozen_and_replace_validates_again(tmp_path):
    exp = experiment(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.trials = 8
    assert dataclasses.replace(exp, trials=8).trials == 8
    with pytest.raises(ValueError, match="'mode'"):
        dataclasses.replace(exp, mode="serial")


@pytest.mark.parametrize("objectives", [1, 2, 3, 4])
def test_pareto_mask_matches_brute_force(objectives):
    """Ties in one objective and whole duplicate rows included (duplicates of a front row are all on it)."""
    rng = np.random.default_rng(objectives)
    values = rng.random((400, objectives))
    values[::5] = values[::5].round(1)
    values = np.vstack([values, values[:40]])
    n = len(values)
    brute = [not any((values[j] <= values[i]).all() and (values[j] < values[i]).any() for j in range(n))
             for i in range(n)]
    assert np.array_equal(pareto_mask(values), brute)
    assert pareto_mask(np.zeros((0, objectives))).shape == (0,)


def test_the_progress_bars_front_counts_what_optunas_best_trials_counts():
    rng = np.random.default_rng(1)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    front = ParetoFront(["maximize", "minimize", "minimize"])
    for step in range(300):
        values = rng.integers(0, 6, 3).astype(float).tolist()  # coarse, so equal and dominated vectors occur
        study.add_trial(optuna.trial.create_trial(values=values))
        front.add(values)
        if step % 25 == 0:
            assert len(front) == len(study.best_trials)
    resumed = ParetoFront(["maximize", "minimize", "minimize"])
    resumed.add_trials(study.best_trials)
    assert len(resumed) == len(front) == len(study.best_trials)


def test_the_gp_sampler_is_optunas_gpsampler_or_a_clear_error_without_torch(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        assert isinstance(experiment(tmp_path, sampler="gp").make_sampler(), optuna.samplers.GPSampler)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ValueError, match=r"sampler 'gp' \(Optuna's GPSampler\) needs torch, which is not installed"):
        experiment(tmp_path, sampler="gp")


@pytest.mark.parametrize("changes, field", [
    (dict(objectives=("accuracy", "speed")), "speed"),
    (dict(objectives=(("latency", "up"),)), "direction"),
    (dict(mode="serial"), "mode"),
    (dict(sampler="cmaes"), "sampler"),
    (dict(tie_break="accuracy"), "tie_break"),
    (dict(trials=None, timeout=None), "budget"),
    (dict(constraints=[codesign.Constraint("area", max=1.0), {"metric": "power", "max": 1}]), "power"),
    (dict(network_space=NetworkSpace(resolutions=(16,))), "'resolutions' is \\[16\\] but dataset 'synthetic' has 8x8"),
    (dict(network_space=NetworkSpace(in_channels=3)), "'in_channels' is 3 but dataset 'synthetic' has 1-channel"),
    (dict(network_space=NetworkSpace(num_classes=5)), "'num_classes' is 5 but dataset 'synthetic' has 10 classes"),
    (dict(dataset="no_such_data.npz"), "field 'dataset': no file no_such_data.npz"),
    (dict(objectives=("synflow", "latency")), "'synflow' is the score of ZeroCostProxy"),
])
def test_experiment_bad_input_names_the_field(tmp_path, changes, field):
    with pytest.raises(ValueError, match=field):
        experiment(tmp_path, **changes)


def test_single_objective_search_with_a_pruner_stops_poor_candidates(tmp_path):
    exp = experiment(tmp_path, objectives=("accuracy",), trials=2,
                     proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=3)),
                     pruner=optuna.pruners.ThresholdPruner(lower=0.99))  # nothing reaches 99 % after one epoch
    results = codesign.run(exp, progress=False)
    assert results.counts(duplicates=False) == {"pruned": 2}
    for t in results.trials:
        outcome = Outcome.from_trial(t)
        assert list(t.intermediate_values) == [1] and outcome.status == Status.PRUNED and "epoch 1" in outcome.reason


def test_a_multi_objective_search_prunes_on_the_accuracy_in_a_twin_study(tmp_path):
    exp = experiment(tmp_path, trials=3, proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=3)),
                     pruner=optuna.pruners.ThresholdPruner(lower=0.99))  # nothing reaches 99 % after one epoch
    results = codesign.run(exp, progress=False)
    assert results.counts(duplicates=False) == {"pruned": 3}
    storage = make_storage(run_folder_storage(tmp_path / "run"))
    twins = optuna.load_study(study_name="t:fidelity", storage=storage).trials
    assert [t.state for t in twins] == [TrialState.PRUNED] * 3
    for t in results.trials:
        twin = twins[t.user_attrs["fidelity_trial"]]
        assert list(twin.intermediate_values) == [1] and [e for e, _ in t.user_attrs["history"]] == [1]
        assert Outcome.from_trial(t).status == Status.PRUNED
    loaded = codesign.load(str(tmp_path / "run"))
    assert loaded.study.study_name == "t"  # the twin study is not a second search
    study = optuna.load_study(study_name="t", storage=storage, sampler=optuna.samplers.TPESampler(n_startup_trials=0))
    study.ask().suggest_categorical("accel.dataflow", ["ws", "os", "flex"])  # TPE reads the pruned trials


def test_cli_run_show_plot_export(tmp_path, capsys):
    from codesign.cli import main

    (tmp_path / "exp.py").write_text(
        "import codesign\n"
        "from tiny import NETWORKS as TINY_NETWORKS, ACCELERATORS as TINY_ACCELERATORS\n"
        f"experiment = codesign.Experiment(name='cli', run_folder={str(tmp_path / 'run')!r}, trials=2, dataset='synthetic',\n"
        "    network_space=TINY_NETWORKS, accelerator_space=TINY_ACCELERATORS, proxy=codesign.ZeroCostProxy('params'))\n")
    assert main(["run", str(tmp_path / "exp.py"), "--no-progress"]) == 0
    assert "Pareto front of 'cli'" in capsys.readouterr().out
    run = str(tmp_path / "run")
    assert main(["show", run, "--json"]) == 0
    shown = __import__("json").loads(capsys.readouterr().out)
    # a zero-cost score is named after its proxy, not shown as an accuracy
    assert shown and {"params", "latency", "energy"} <= set(shown[0]["metrics"]) and "accuracy" not in shown[0]["metrics"]
    assert codesign.load(run).study.metric_names == ["params", "latency", "energy"]
    design = codesign.load(run).design(shown[0]["trial"])  # the specs themselves, not their names
    assert NetworkSpec.from_dict(shown[0]["network"]) == design.network
    assert Accelerator.from_dict(shown[0]["accelerator"]) == design.accelerator
    assert main(["plot", run]) == 0
    assert all(p.endswith(".png") and os.path.getsize(p) > 1000 for p in capsys.readouterr().out.split())
    trial = shown[0]["trial"]
    assert main(["export", run, "--trial", str(trial), "--format", "scalesim", "--out", str(tmp_path / "x")]) == 0
    from cost_models.scalesim import read_config, read_topology

    assert len(read_topology(tmp_path / "x" / "topology.csv")) > 0
    read_config(tmp_path / "x" / "accelerator.cfg")
    assert main(["export", run, "--trial", str(trial), "--format", "json", "--out", str(tmp_path / "j")]) == 0
    assert (tmp_path / "j" / "network.json").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("codesign ")
    assert main(["show", str(tmp_path / "nothing")]) == 2  # a clear error, not a traceback
    assert "holds no study (study.log, study.db, or study.json naming another storage)" in capsys.readouterr().err


def test_a_run_folder_whose_study_lives_elsewhere_is_still_a_run_folder(tmp_path, capsys):
    from codesign.cli import main

    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    exp = experiment(tmp_path, storage=url, trials=2)
    codesign.run(exp, progress=False)
    assert not (exp.folder / "study.log").exists() and main(["show", str(exp.folder)]) == 0  # through study.json
    assert "Pareto front of 't'" in capsys.readouterr().out
    by_storage = codesign.load(storage=url)  # the study recorded its run folder: the artifacts are found
    assert by_storage.artifacts is not None
    assert Outcome.from_trial(by_storage.pareto_front[0].trial, by_storage.artifacts).cost_report is not None


@pytest.mark.slow
def test_rediscovery_script_starts_from_squeezenet_and_compares_on_each_designs_accelerator(tmp_path, capsys,
                                                                                             experiment_script):
    """Two trials of a 1-epoch proxy. test_rediscovery_script_in_brief runs the same with one trial of a few steps."""
    _rediscovery(tmp_path, capsys, experiment_script, 2, "1")


def test_rediscovery_script_in_brief(tmp_path, capsys, experiment_script):
    _rediscovery(tmp_path, capsys, experiment_script, 1, "0.05")


def _rediscovery(tmp_path, capsys, experiment_script, trials: int, epochs: str):
    import json

    script = experiment_script("rediscover_squeezenext.py")
    folder = tmp_path / "rediscover"
    code = script.main(["--trials", str(trials), "--epochs", epochs, "--folder", str(folder), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == (0 if summary["winners"] else 1)
    assert summary["baseline"]["trial"] == 0 and summary["trials"] == {"complete": trials}
    results = codesign.load(folder)
    baseline = next(d for d in results.designs if d.number == 0)
    assert baseline.network.stem.kernel == 7 and [s.depth for s in baseline.network.stages] == [3, 4, 1]
    itself = script.compare_with_baseline(baseline, baseline.metrics["accuracy"], script.scaled_squeezenet_v1_0(1))
    assert itself["speedup"] == pytest.approx(1.0) and itself["energy_ratio"] == pytest.approx(1.0)
    assert not itself["beats_baseline"]  # equal is not better
    for row in summary["front"]:
        assert row["beats_baseline"] == (row["speedup"] > 1 and row["energy_ratio"] > 1
                                         and row["accuracy"] >= row["baseline_accuracy"])
