"""A study on a real PostgreSQL server (started from the pgserver wheel on 127.0.0.1, password authentication):
a search keeps its study there and a second driver continues it, the run folder and the commands find it, the
password never reaches the URL, the run folder or the log, and a refused password or an unreachable server is
one clear error before any trial."""

import json
import os
import logging
import time

import psutil
import pytest

import codesign
from servers import LOOPBACK, files_holding, free_port, start_postgres, stop_postgres
from test_cli import run_in_process
from tiny import experiment as tiny, experiment_file


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres()
    yield server
    stop_postgres(server)


def test_the_server_listens_on_the_loopback_address_only(postgres):
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(postgres.pid).net_connections()
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {(LOOPBACK, postgres.port)}


@pytest.mark.usefixtures("ray_session")
def test_a_search_keeps_its_study_on_the_server_and_a_second_driver_continues_it(postgres, tmp_path, monkeypatch,
                                                                                caplog):
    url = postgres.create_database("search")
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    folder = tmp_path / "run"
    with caplog.at_level(logging.DEBUG):
        first = codesign.run(tiny(folder, storage=url, trials=3), progress=False)
        assert first.counts(duplicates=False) == {"complete": 3}
        second = codesign.run(tiny(folder, storage=url, trials=5), progress=False)  # resumes the study
    assert second.counts(duplicates=False) == {"complete": 5}
    designs = [t.params for t in second.trials if t.user_attrs["status"] == "complete"]
    assert len({json.dumps(p, sort_keys=True) for p in designs}) == len(designs)  # no design evaluated twice
    assert not (folder / "study.log").exists() and not (folder / "study.db").exists()
    assert json.loads((folder / "study.json").read_text()) == {"storage": url, "study": "tiny"}
    loaded = codesign.load(folder)  # through the run folder's study.json
    assert len(loaded.trials) == len(second.trials) and loaded.pareto_front
    for command in (["show", str(folder)], ["trials", str(folder)], ["show", "--storage", url, "--study", "tiny"]):
        done = run_in_process(command)
        assert done.returncode == 0, done.stderr
    assert files_holding(folder, postgres.password) == []
    assert postgres.password not in caplog.text


def test_a_password_in_the_storage_url_is_refused_before_anything_starts(tmp_path, capsys):
    with_password = f"postgresql://codesign:secret-word@{LOOPBACK}:5432/postgres"
    with pytest.raises(ValueError, match=r"field 'storage' postgresql://codesign:\*\*\*@127.0.0.1:5432/postgres: "
                                         r"the URL holds a password; give it in .*PGPASSWORD") as refused:
        tiny(tmp_path / "run", storage=with_password)
    assert "secret-word" not in str(refused.value)
    done = run_in_process(["show", "--storage", with_password, "--study", "tiny"])
    assert done.returncode == 2 and "holds a password" in done.stderr
    assert "secret-word" not in done.stderr + done.stdout
    assert not (tmp_path / "run").exists()


def test_refused_credentials_and_an_unreachable_server_are_one_error_before_any_trial(postgres, tmp_path,
                                                                                      monkeypatch):
    url = postgres.create_database("refused")
    monkeypatch.setenv("PGPASSWORD", "not-" + postgres.password)
    with pytest.raises(ValueError, match=r"storage postgresql://codesign@127.0.0.1:\d+/refused: the server refused "
                                         r"the credentials \(.*password authentication failed.*PGPASSWORD"):
        codesign.run(tiny(tmp_path / "refused", storage=url), progress=False)
    assert not (tmp_path / "refused" / "study.json").exists()  # a folder never points at a study it could not open
    done = run_in_process(["show", "--storage", url, "--study", "tiny"])
    assert done.returncode == 2 and "refused the credentials" in done.stderr and "Traceback" not in done.stderr
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    closed = f"postgresql://codesign@{LOOPBACK}:{free_port()}/postgres"
    start = time.monotonic()
    with pytest.raises(ValueError, match=rf"storage {closed}: cannot connect or read \(.*Connection refused"):
        codesign.run(tiny(tmp_path / "unreachable", storage=closed), progress=False)
    assert time.monotonic() - start < 30



@pytest.mark.usefixtures("ray_session")
def test_codesign_run_takes_the_storage_from_the_command_line(postgres, tmp_path, monkeypatch):
    """``codesign run FILE --storage URL`` overrides the experiment file's field; a URL with a password is exit
    code 2 before anything runs, and the password is not printed."""
    url = postgres.create_database("cli")
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    path = experiment_file(tmp_path, trials=2)
    done = run_in_process(["run", str(path), "--no-progress", "--storage", url])
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "study.json").read_text())["storage"] == url
    assert codesign.load(tmp_path / "run").counts(duplicates=False) == {"complete": 2}
    with_password = url.replace("codesign@", "codesign:hunter2@")
    refused = run_in_process(["run", str(path), "--storage", with_password])
    assert refused.returncode == 2 and "holds a password" in refused.stderr and "hunter2" not in refused.stderr


@pytest.mark.usefixtures("ray_session")
def test_a_run_folder_in_the_object_store_holds_the_run_and_every_command_reads_it(postgres, s3_server, tmp_path,
                                                                                   monkeypatch):
    """``run_folder="s3://..."`` with the study on the server: the study record, the artifacts, the accuracy
    cache and the drivers' leases are under the URL and nothing is written to the local disk; ``codesign
    show/trials/export/plot/finalize`` and ``codesign.load`` read the run from the URL; a run folder in an
    object store without a database server is refused before anything starts."""
    s3_server.create_bucket("folders")
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    url, run = postgres.create_database("infolder"), "s3://folders/team/run1"
    monkeypatch.chdir(tmp_path)
    experiment = tiny("unused", run_folder=run, storage=url, trials=2,
                      proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=1)))
    assert codesign.run(experiment, progress=False).counts(duplicates=False) == {"complete": 2}
    assert list(tmp_path.iterdir()) == []
    keys = s3_server.keys("folders")
    assert "team/run1/study.json" in keys and all(k.startswith("team/run1/") for k in keys)
    assert any(k.startswith("team/run1/artifacts/") for k in keys)
    assert any(k.startswith("team/run1/accuracy_cache/") and k.endswith(".json") for k in keys)
    assert not any("/drivers/" in k for k in keys)
    loaded = codesign.load(run)
    best = loaded.pareto_front[0]
    data = codesign.load_dataset("synthetic", seed=experiment.seed)
    accuracy = float((best.predict(data.x_val, normalised=True) == data.y_val).mean())
    assert accuracy == pytest.approx(best.metrics["accuracy"], abs=1.5 / len(data.y_val))
    for command in (["show", run], ["trials", run], ["export", run, "--out", "exported"], ["plot", run],
                    ["finalize", run, "--top", "1", "--epochs", "1"]):
        done = run_in_process(command)
        assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "exported" / "accelerator.json").is_file() and list((tmp_path / "plots").glob("*.png"))
    assert codesign.load(run).finals  # finalize recorded its result on the study
    assert files_holding(tmp_path, postgres.password) == [] and files_holding(tmp_path, s3_server.secret) == []
    with pytest.raises(ValueError, match="run_folder.*holds no study file; give storage= a database server"):
        tiny("unused", run_folder=run)
    refused = run_in_process(["run", str(experiment_file(tmp_path, trials=1)), "--run-folder", run])
    assert refused.returncode == 2 and "holds no study file" in refused.stderr
    with pytest.raises(ValueError, match=r"run_folder s3://no-such-bucket/x: the object store cannot be written"):
        codesign.run(tiny("unused", run_folder="s3://no-such-bucket/x", storage=url), progress=False)


def test_processes_opening_one_new_database_at_once_all_succeed(postgres, tmp_path, monkeypatch):
    """Drivers started at once on a new database all create Optuna's tables; those that lose the race to
    PostgreSQL's catalog (a duplicate key) open the tables the winner made."""
    from test_storage import open_together

    monkeypatch.setenv("PGPASSWORD", postgres.password)
    open_together(tmp_path, postgres.create_database("race"), env=dict(os.environ))
