"""Storages: several processes opening the same new SQLite study at once (a driver and a
`codesign show`, or several drivers) all succeed; the journal URL gives Optuna's journal storage."""

import subprocess
import sys
import time
from pathlib import Path

import optuna

from codesign.storage import make_storage

OPEN_ON_GO = """
import sys, time
from pathlib import Path
import optuna
from codesign.storage import make_storage
folder = Path(sys.argv[1])
(folder / ("ready." + sys.argv[2])).touch()
while not (folder / "go").exists():
    time.sleep(0.001)
storage = make_storage(f"sqlite:///{folder / 'study.db'}")
optuna.create_study(study_name="shared", storage=storage, load_if_exists=True)
"""


def test_processes_opening_one_new_sqlite_study_at_once_all_succeed(tmp_path):
    db = tmp_path / "study.db"
    openers = [subprocess.Popen([sys.executable, "-c", OPEN_ON_GO, str(tmp_path), str(i)],
                                cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for i in range(6)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready.*"))) < len(openers) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()  # all imported: they open the new database together
    outputs = [p.communicate(timeout=120)[0] for p in openers]
    failed = [out for p, out in zip(openers, outputs) if p.returncode != 0]
    assert not failed, failed[0][-2000:]
    assert optuna.study.get_all_study_names(make_storage(f"sqlite:///{db}")) == ["shared"]


def test_journal_url_gives_a_journal_storage(tmp_path):
    storage = make_storage(f"journal:///{tmp_path / 'runs' / 'study.log'}")
    assert isinstance(storage, optuna.storages.JournalStorage)
    study = optuna.create_study(study_name="j", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="j", storage=make_storage(f"journal:///{tmp_path / 'runs' / 'study.log'}")).trials) == 2
