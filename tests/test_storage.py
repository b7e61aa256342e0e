"""Storages: several processes opening the same new study at once (a driver and a `codesign show`, or
several drivers) all succeed, on the journal file and on SQLite; a run folder's default is its journal
file, a folder started on SQLite stays on it; a journal left with an unfinished write is readable again."""

import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from codesign.storage import make_storage, run_folder_storage

OPEN_ON_GO = """
import sys, time
from pathlib import Path
import optuna
from codesign.storage import make_storage
folder = Path(sys.argv[1])
(folder / ("ready." + sys.argv[2])).touch()
while not (folder / "go").exists():
    time.sleep(0.001)
storage = make_storage(sys.argv[3])
optuna.create_study(study_name="shared", storage=storage, load_if_exists=True)
"""


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_processes_opening_one_new_study_at_once_all_succeed(tmp_path, kind):
    url = {"journal": f"journal:///{tmp_path / 'study.log'}", "sqlite": f"sqlite:///{tmp_path / 'study.db'}"}[kind]
    open_together(tmp_path, url)


def open_together(tmp_path: Path, url: str, env: dict | None = None) -> None:
    """Six processes open the new study at ``url`` at the same moment; all succeed and there is one study.
    (test_postgres.py does the same on a new PostgreSQL database.)"""
    openers = [subprocess.Popen([sys.executable, "-c", OPEN_ON_GO, str(tmp_path), str(i), url],
                                cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env) for i in range(6)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready.*"))) < len(openers) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()  # all imported: they open the new database together
    outputs = [p.communicate(timeout=120)[0] for p in openers]
    failed = [out for p, out in zip(openers, outputs) if p.returncode != 0]
    assert not failed, failed[0][-2000:]
    assert optuna.study.get_all_study_names(make_storage(url)) == ["shared"]


def test_journal_url_gives_a_journal_storage(tmp_path):
    storage = make_storage(f"journal:///{tmp_path / 'runs' / 'study.log'}")
    assert isinstance(storage, optuna.storages.JournalStorage)
    study = optuna.create_study(study_name="j", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="j", storage=make_storage(f"journal:///{tmp_path / 'runs' / 'study.log'}")).trials) == 2


def test_a_run_folder_uses_its_journal_file_unless_it_was_started_on_sqlite(tmp_path):
    assert run_folder_storage(tmp_path) == f"journal://{(tmp_path / 'study.log').resolve()}"
    optuna.create_study(study_name="old", storage=make_storage(f"sqlite:///{tmp_path / 'study.db'}"))
    assert run_folder_storage(tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"


def test_a_journal_with_an_unfinished_last_write_is_cut_back_to_its_last_whole_write(tmp_path, caplog):
    url = f"journal:///{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="j", storage=make_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    whole = (tmp_path / "study.log").read_bytes()
    with open(tmp_path / "study.log", "ab") as journal:  # a write that failed part-way, as on a full disk
        journal.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 3, "sta')
    reopened = optuna.load_study(study_name="j", storage=make_storage(url))
    assert "removed an unfinished last write (52 bytes)" in caplog.text
    assert (tmp_path / "study.log").read_bytes() == whole
    reopened.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # and it takes new writes
    assert len(optuna.load_study(study_name="j", storage=make_storage(url)).trials) == 4


GRPC_PROXY = """
import sys
import optuna
from codesign.storage import make_storage
optuna.storages.run_grpc_proxy_server(make_storage(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]))
"""


@pytest.mark.usefixtures("ray_session")
def test_a_search_keeps_its_study_behind_a_grpc_storage_proxy(tmp_path, monkeypatch):
    """``storage="grpc://HOST:PORT"``: the study is served by Optuna's gRPC proxy (here over a journal file
    only the proxy opens); the search completes, its run folder names the proxy, and the readers find the
    study through it. A malformed address and a proxy that does not answer are one error each."""
    import psutil

    import codesign
    from servers import LOOPBACK, free_port
    from test_cli import run_in_process
    from tiny import experiment as tiny

    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-c", GRPC_PROXY, f"journal://{tmp_path / 'served.log'}", str(port)],
                             cwd=Path(__file__).parents[1])
    url = f"grpc://{LOOPBACK}:{port}"
    try:
        results = codesign.run(tiny(tmp_path / "run", storage=url, trials=3), progress=False)
        assert results.counts(duplicates=False) == {"complete": 3}
        listening = {ipaddress.ip_address(c.laddr.ip) for c in psutil.Process(proxy.pid).net_connections()
                     if c.status == "LISTEN"}  # gRPC listens on IPv6 sockets, an IPv4 address mapped
        assert {str(getattr(ip, "ipv4_mapped", None) or ip) for ip in listening} == {LOOPBACK}
        assert not (tmp_path / "run" / "study.log").exists() and (tmp_path / "served.log").stat().st_size > 0
        assert len(codesign.load(tmp_path / "run").trials) == 3  # through the run folder's study.json
        done = run_in_process(["show", "--storage", url])
        assert done.returncode == 0 and "trial" in done.stdout, done.stderr
    finally:
        proxy.kill()
        proxy.wait()
    monkeypatch.setattr("codesign.storage.CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ValueError, match=r"storage grpc://127.0.0.1:\d+: no gRPC storage proxy answers there"):
        make_storage(url)
    with pytest.raises(ValueError, match=r"field 'storage' grpc://nowhere: .*grpc://HOST:PORT"):
        tiny(tmp_path / "bad", storage="grpc://nowhere")
