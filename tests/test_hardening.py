"""Bad input ends in one clear line, readers never write, resumed and concurrent drivers lose nothing.

The CLI cases run ``codesign.cli.main`` in-process (what the ``codesign`` script calls);
the searches use a zero-cost proxy on tiny spaces, so the file stays cheap.
"""

import errno
import hashlib
import json
import math
import os
import sqlite3
import stat
import time
from pathlib import Path

import optuna
import pytest

import codesign
from codesign import Constraint, Experiment, TrainConfig, ZeroCostProxy
from codesign import lease
from codesign.cli import error_line, main
from codesign.storage import disk_full_or
from codesign.outcome import Status, trial_status
from codesign.storage import DRIVER
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.network_space import NetworkSpace
from tiny import wrapped

TINY_NETWORKS = NetworkSpace(blocks=("dwsep",), stages=(1,), depths=(1,), widths=(8, 16), kernels=(3,),
                             stem_kernels=(3,), stem_widths=(8,))
ONE_ACCELERATOR_FIELD = AcceleratorSpace(rows=(8, 16), cols=(8,), dataflows=("ws",), rf_bytes=(16,), gb_kib=(64,),
                                         dram_gbps=(16.0,), mac_bits=(8,), zero_skip=(False,))


def tiny(folder, trials=4, **changes) -> Experiment:
    """4 distinct designs (2 networks x 2 arrays), scored in milliseconds."""
    fields = dict(name="tiny", dataset="synthetic", proxy=ZeroCostProxy("params"), compression_space=None,
                  network_space=TINY_NETWORKS, accelerator_space=ONE_ACCELERATOR_FIELD, trials=trials,
                  run_folder=str(folder), sampler="random")
    return Experiment(**{**fields, **changes})


# --- the Experiment checks every field when it is built ---------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(sampler=5), "field 'sampler' must be one of"),
    (dict(pruner="median"), "field 'pruner' must be None or an optuna pruner"),
    (dict(timeout="abc"), "field 'timeout' must be None or a finite number > 0"),
    (dict(timeout=-1), "field 'timeout'"),
    (dict(trials=0), "field 'trials' must be None or an integer >= 1"),
    (dict(seed="a"), "field 'seed' must be an integer"),
    (dict(network_space="fire"), "field 'network_space' must be a NetworkSpace"),
    (dict(accelerator_space={"rows": [8]}), "field 'accelerator_space' must be an AcceleratorSpace"),
    (dict(nested_accelerators=0), "field 'nested_accelerators' must be None or an integer >= 1"),
    (dict(cpus_per_trial=math.inf), "field 'cpus_per_trial'"),
    (dict(name=".."), "field 'name' must be a plain folder name"),
    (dict(name="a/b"), "field 'name' must be a plain folder name"),
    (dict(storage="study.db"), "field 'storage' must be None or an Optuna storage URL"),
    (dict(dataset="no-such-set"), "field 'dataset'"),
    (dict(constraints=(Constraint("area", max=0.1), Constraint("area", min=10))),
     r"no design can meet the constraints area <= 0.1 and area >= 10"),
    (dict(constraints=(Constraint("accuracy", min=1.5),), proxy=codesign.TrainedProxy()), r"accuracy lies in \[0, 1\]"),
])
def test_an_experiment_names_the_bad_field_when_it_is_built(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        tiny(tmp_path / "run", **changes)


@pytest.mark.parametrize("field", ["learning_rate", "epochs"])
def test_training_settings_must_be_finite(field):
    with pytest.raises(ValueError, match=f"field '{field}' must be a finite number"):
        TrainConfig(**{field: math.inf})


def test_a_run_folder_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        tiny(tmp_path / "run")


# --- the CLI: one line, exit code 2; --debug shows the traceback ------------------------------------------

def cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def bad_inputs(tmp: Path) -> dict[str, list]:
    (tmp / "empty.db").write_bytes(b"")
    (tmp / "garbage").mkdir()
    (tmp / "garbage" / "study.db").write_bytes(os.urandom(4096))
    (tmp / "torn").mkdir()
    (tmp / "torn" / "study.log").write_text('{"op_code": 0, "worker_id": "x", "study_name": "s", "directions": [1]}'
                                           '\nnot json at all\n{"op_code": 4\n')
    (tmp / "syntax.py").write_text("import codesign\nexperiment = codesign.Experiment(name='x'\n")
    (tmp / "keyword.py").write_text("import codesign\n\nexperiment = codesign.Experiment(nmae='x')\n")
    (tmp / "nothing.py").write_text("x = 1\n")
    (tmp / "noise").mkdir()
    (tmp / "noise" / "study.log").write_bytes(os.urandom(3000).replace(b"\n", b"x"))
    (tmp / "a_file").write_text("")
    return {
        "empty sqlite": ["show", "--storage", f"sqlite:///{tmp / 'empty.db'}"],
        "missing sqlite": ["show", "--storage", f"sqlite:///{tmp / 'missing.db'}"],
        "corrupt sqlite": ["show", tmp / "garbage"],
        "corrupt journal": ["show", tmp / "torn"],
        "journal of noise": ["show", tmp / "noise"],
        "no study": ["show", tmp],
        "syntax error": ["run", tmp / "syntax.py"],
        "unknown keyword": ["run", tmp / "keyword.py"],
        "no experiment": ["run", tmp / "nothing.py"],
        "resolution 0": ["network", "squeezenet_v1_0", "--resolution", "0"],
        "topology is a folder": ["cost", "--topology", tmp],
        "out is a file": ["sweep", "squeezenet_v1_0", "--limit", "2", "--out", tmp / "a_file"],
        "unknown network": ["network", "nonet"],
    }


def test_every_bad_input_ends_in_one_error_line_with_exit_code_2(tmp_path, capsys):
    cases = bad_inputs(tmp_path)
    for name, argv in cases.items():
        try:
            code, err = cli(argv, capsys)
        except SystemExit as exit_:  # argparse's own checks exit
            code, err = exit_.code, capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("codesign: error: "), (name, code, err)
    assert "empty file" in cli(cases["empty sqlite"], capsys)[1]
    assert "no such SQLite study database" in cli(cases["missing sqlite"], capsys)[1]
    assert not (tmp_path / "missing.db").exists()  # a reader creates nothing
    assert "file is not a database" in cli(cases["corrupt sqlite"], capsys)[1]
    assert "syntax.py, line 2" in cli(cases["syntax error"], capsys)[1]
    assert "keyword.py, line 3: TypeError" in cli(cases["unknown keyword"], capsys)[1]
    assert "not an Optuna journal: 3000 bytes without one complete record" in cli(cases["journal of noise"], capsys)[1]


def test_a_journal_cut_in_a_record_is_read_to_its_last_whole_record_and_says_so(tmp_path, caplog):
    from codesign.storage import reading_storage

    path = tmp_path / "study.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    for x in (1.0, 2.0, 3.0):
        study.enqueue_trial({"x": x})
        study.optimize(lambda t: t.suggest_float("x", 0, 5), n_trials=1)
    whole = path.read_bytes()
    path.write_bytes(whole[:-25])  # a crash in the middle of the last record (the third trial's end)
    with caplog.at_level("WARNING", logger="codesign"):
        read = optuna.load_study(study_name="s", storage=reading_storage(f"journal://{path}"))
    said = " ".join(r.getMessage() for r in caplog.records)
    records = whole.count(b"\n") - 1
    assert "its last record is cut off (" in said and f"after the last of {records} complete records" in said
    assert [t.state.name for t in read.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert path.read_bytes() == whole[:-25]  # a reader changes nothing


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ValueError, match="unknown network"):
        main(["network", "nonet", "--debug"])


def test_a_bug_is_told_apart_from_bad_input():
    line, code = error_line(KeyError("stem"))
    assert code == 1 and "a bug in codesign" in line and "--debug" in line
    line, code = error_line(OSError(errno.ENOSPC, "No space left on device", "runs/x/study.log"))
    assert code == 2 and line.startswith("disk full writing runs/x/study.log")


def test_a_full_disk_is_said_as_such(tmp_path):
    deep = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise deep
        except OSError as inner:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit") from inner
    except optuna.exceptions.StorageInternalError as error:
        said = disk_full_or(error, tmp_path, 7)
    assert isinstance(said, OSError) and said.errno == errno.ENOSPC and "trial 7" in str(said)
    other = RuntimeError("something else")
    assert disk_full_or(other, tmp_path, 7) is other


# --- searches: readers never write; resumed and concurrent drivers -------------------------------------------

def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_readers_never_write_and_work_on_a_read_only_copy(tmp_path, ray_session, capsys):
    experiment = tiny(tmp_path / "run", trials=2)
    codesign.run(experiment, progress=False)
    for storage in ("journal", "sqlite"):
        folder = tmp_path / storage
        if storage == "journal":
            folder.mkdir()
            (folder / "study.log").write_bytes((tmp_path / "run" / "study.log").read_bytes())
        else:  # the same study copied into SQLite in WAL mode, as a SQLite run keeps it; the run's results are
            # kept, so its connection closes (and checkpoints) after the digests, not at a garbage collection
            kept = codesign.run(tiny(folder, trials=2, storage=f"sqlite:///{folder / 'study.db'}"), progress=False)
        before = digest(folder)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            code, _ = cli(["show", folder], capsys), None
            assert code[0] == 0, code
            assert len(codesign.load(folder).designs) == 2
        finally:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
        assert digest(folder) == before, storage
    assert kept.counts() == {"complete": 2}


def test_a_resumed_run_continues_its_sampler_and_never_evaluates_a_design_twice(tmp_path, ray_session):
    wide = AcceleratorSpace(rows=(8, 16, 32, 64), cols=(8, 16, 32, 64), dataflows=("ws", "os"))
    first = codesign.run(tiny(tmp_path / "run", trials=3, accelerator_space=wide), progress=False)
    resumed = codesign.run(tiny(tmp_path / "run", trials=6, accelerator_space=wide), progress=False)
    params = [t.params for t in resumed.study.trials]
    assert params[3:6] != [t.params for t in first.study.trials][:3]  # a fresh seed would replay these
    # 4 designs in the tiny space: the run stops when the sampler only proposes evaluated ones
    small = codesign.run(tiny(tmp_path / "small", trials=8), progress=False)
    counts = small.counts()
    assert counts["complete"] == 4 and counts.get("duplicate", 0) >= 1, counts
    keys = [json.dumps([t.params.get(k) for k in sorted(t.params)]) for t in small.study.trials
            if t.user_attrs.get("status") == "complete"]
    assert len(keys) == len(set(keys)) == 4


def test_granularity_without_pruning_is_one_design():
    from search_spaces.compression import LayerCompression

    assert LayerCompression(8, 8, 0.0, "channel") == LayerCompression(8, 8, 0.0, "unstructured")
    assert LayerCompression(8, 8, 0.5, "channel") != LayerCompression(8, 8, 0.5, "unstructured")


def test_a_second_driver_leaves_a_live_drivers_trials_alone_and_sqlite_takes_one(tmp_path, ray_session):
    folder = tmp_path / "run"
    codesign.run(tiny(folder, trials=1), progress=False)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.log")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    alive, dead = lease.acquire(folder), lease.acquire(folder)
    dead.handle.close()  # its lock is gone, as when a driver is killed; the file stays
    for holder in (alive, dead):
        trial = study.ask()
        trial.set_user_attr(DRIVER, holder.info.id)
    try:
        results = codesign.run(tiny(folder, trials=3), progress=False)
        states = {t.user_attrs.get(DRIVER): t.state for t in results.study.trials[1:3]}
        assert states[alive.info.id] == optuna.trial.TrialState.RUNNING  # the live driver's: untouched
        assert states[dead.info.id] == optuna.trial.TrialState.FAIL  # the dead one's: re-queued
        assert not dead.path.exists()
        sqlite_run = tiny(tmp_path / "sqlite", trials=1, storage=f"sqlite:///{tmp_path / 'sqlite.db'}")
        other = lease.acquire(sqlite_run.folder)
        try:
            with pytest.raises(ValueError, match=rf"already running on this SQLite study \(driver pid {os.getpid()}"):
                codesign.run(sqlite_run, progress=False)
        finally:
            other.release()
        codesign.run(sqlite_run, progress=False)  # once it is gone, the run goes ahead
    finally:
        alive.release()
    assert sqlite3.connect(tmp_path / "sqlite.db").execute("select count(*) from trials").fetchone()[0] == 1


def gated(proxy, folder: Path):
    """``proxy``, whose first evaluation writes ``folder/started`` and waits for ``folder/go``."""
    def wait_at_the_gate():
        if not (folder / "started").exists():
            (folder / "started").touch()
            deadline = time.monotonic() + 60
            while not (folder / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    return wrapped(proxy, wait_at_the_gate)


def test_a_running_driver_requeues_the_trials_of_a_driver_that_dies_meanwhile(tmp_path, ray_session, monkeypatch):
    """Another driver, alive when this one starts, dies while this one's first trial runs: its running trial
    is re-queued by this driver (every REQUEUE_EVERY_S, 0 here), not left running for ever."""
    import threading

    monkeypatch.setattr("codesign.driver.REQUEUE_EVERY_S", 0.0)
    folder, gate = tmp_path / "run", tmp_path / "gate"
    gate.mkdir()
    codesign.run(tiny(folder, trials=1), progress=False)
    other = lease.acquire(folder)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.log")))
    optuna.load_study(study_name="tiny", storage=storage).ask().set_user_attr(DRIVER, other.info.id)

    def die_once_the_first_trial_runs():
        deadline = time.monotonic() + 120
        while not (gate / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        other.release()  # the other driver dies while this one's trial is in flight
        (gate / "go").touch()

    dying = threading.Thread(target=die_once_the_first_trial_runs)
    dying.start()
    try:
        results = codesign.run(tiny(folder, trials=3, proxy=gated(ZeroCostProxy("params"), gate)), progress=False)
    finally:
        dying.join()
        other.release()
    assert results.study.trials[1].state == optuna.trial.TrialState.FAIL  # re-queued, not left running
    assert trial_status(results.study.trials[1]) == Status.INTERRUPTED
    assert results.counts(duplicates=False) == {"complete": 3, "interrupted": 1}


def test_a_driver_counts_the_trials_another_live_driver_is_running(tmp_path, ray_session):
    """The budget is the study's: a driver starting beside a live driver with two trials in flight completes
    only what the budget leaves (test_cluster's test_two_drivers_on_one_study_stop_at_its_budget runs two real
    drivers at once, marked slow)."""
    folder = tmp_path / "run"
    codesign.run(tiny(folder, trials=1), progress=False)
    other = lease.acquire(folder)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.log")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    for _ in range(2):
        study.ask().set_user_attr(DRIVER, other.info.id)
    try:
        results = codesign.run(tiny(folder, trials=4), progress=False)
    finally:
        other.release()
    states = [t.state for t in results.study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2  # 1 before + 2 in flight elsewhere + 1 = 4
    assert states.count(optuna.trial.TrialState.RUNNING) == 2


def test_a_run_whose_every_trial_is_infeasible_says_so(tmp_path, ray_session):
    experiment = tiny(tmp_path / "run", trials=2, constraints=(Constraint("area", max=1e-6),))
    results = codesign.run(experiment, progress=False)
    assert results.pareto_front == []
    assert "no design meets the constraints: all 2 completed trial(s) violate at least one" in results.table()


def test_the_progress_bar_counts_every_trial_in_flight(tmp_path, ray_session, capsys):
    """Two CPUs, two trials at once: the bar says running=2 once both are submitted, not only after a tell."""
    codesign.run(tiny(tmp_path / "run", trials=4), progress=True)
    bar = capsys.readouterr().err
    assert "running=2" in bar and "4/4" in bar, bar[-500:]


# --- API mistakes: a ValueError naming the field and what is allowed, never a raw TypeError -----------------

def test_api_mistakes_name_the_field_and_what_is_allowed():
    from cost_models import Accelerator, Workload, conv, evaluate, evaluate_batch
    from search_spaces.networks import NetworkSpec
    from search_spaces.reference import reference_network

    workload = Workload((conv("a", 3, 8, 8),))
    spec = reference_network("squeezenet_v1_0").to_dict()
    cases = [
        (lambda: Experiment(name="x", constraints=[{"metric": "area", "maximum": 2}]),
         r"constraint has no field 'maximum'; its fields are metric, max, min"),
        (lambda: codesign.make_proxy("trained", lr=1), r"'trained' has no setting 'lr'; allowed: epochs, "),
        (lambda: evaluate(workload, "tpu"), r"accelerator must be an Accelerator .* got 'tpu'"),
        (lambda: evaluate_batch(workload, [Accelerator(), "tpu"]), r"accelerators must be Accelerator objects"),
        (lambda: NetworkSpec.from_dict({**spec, "name": 5}), r"field 'name' must be a non-empty string.* got 5"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_tables_fit_their_longest_layer_name_or_shorten_it_visibly():
    from cost_models import Accelerator, Workload, conv, evaluate
    from cost_models.text import fit

    names = ["/features/denseblock4/denselayer16/norm2/BatchNorm/conv2/Conv", "/features/denseblock4/denselayer15/"
             "norm2/BatchNorm/conv2/Conv", "a" * 30, "b"]
    workload = Workload(tuple(conv(name, 8, 8, 8, R=1) for name in names))
    lines = evaluate(workload, Accelerator(rows=8, cols=8)).table().splitlines()
    rows = lines[2:2 + len(names)]
    assert {len(line) for line in rows} == {len(lines[0])}  # every row as wide as the header: columns line up
    assert "a" * 30 + " " in rows[2] and rows[3].startswith("b ")
    assert all(name not in row and "…" in row for name, row in zip(names[:2], rows[:2]))  # 61 chars: shortened
    assert rows[0].split()[0] != rows[1].split()[0]  # and still told apart
    assert fit("x" * 100, 11) == "xxxx…xxxxx " and len(fit("short", 11)) == 11
