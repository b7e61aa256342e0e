"""Opening a study's storage: URLs, the SQLite lock, resuming after a dead driver, pruner reports.

* :func:`make_storage`: an Optuna storage from a URL (``journal:///...`` for Optuna's
  journal file, the default of a run folder; ``sqlite:///...`` in WAL mode; any other
  Optuna URL as it is).
* :class:`StudyRecord`: everything codesign records on a study (the experiment, the
  objectives, the dataset's DataSpec, the run folder, the finalized designs, the schema of
  its trials' attributes), written and read here only; :func:`read_trials` gives a
  study's trials in the current schema.
* :func:`open_study`: the experiment's study, created or resumed.
* :func:`requeue_interrupted`: trials a dead driver left running are failed and their
  parameters queued again (a live driver's are left alone); :func:`finished_count`
  counts what the budget counts.
* :func:`reading_storage` / :func:`load_study_for_reading`: a study opened to read only,
  for ``show``, ``plot``, ``export`` and :func:`codesign.load`.
* :class:`PrunerDesk` / :class:`DeskReporter`: how a worker reports intermediate
  accuracies to the study's pruner: to a Ray actor on the driver's node, which alone opens
  the storage (a journal file only the driver's disk holds, a database only the driver's
  node has the password source of), and answers whether to stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState

from codesign.accuracy.datasets import DataSpec
from codesign.outcome import SCHEMA, Status, migrate, trial_status
from codesign.stores import entries_at, is_url

log = logging.getLogger("codesign")

JOURNAL = "journal://"
SQLITE = "sqlite:///"


def make_storage(url: str):
    """An Optuna storage from a URL; ``journal:///path/study.log`` is Optuna's journal file storage.

    The journal file is a run folder's default: each write is one appended, fsync'ed
    line (the loop costs less than half as much per trial as on SQLite), and it works
    for several processes on a shared file system (NFS included) without a server. SQLite
    (``sqlite:///path/study.db``) and server databases (``postgresql://...``,
    ``mysql://...``) work as well.
    """
    if isinstance(url, str) and url.startswith(JOURNAL):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        _repair_torn_tail(path)
        return JournalStorage(JournalFileBackend(str(path)))
    if isinstance(url, str) and url.startswith(SQLITE):
        return _sqlite_storage(url)
    if isinstance(url, str) and url.startswith(GRPC):
        return grpc_storage(url)
    return server_storage(url)


def reading_storage(url: str):
    """The storage at ``url`` opened to read only: nothing is created, repaired or written, so a run on
    read-only media, or a copy, can be shown. A missing, empty or corrupt study file is a ValueError naming it.

    A journal file is replayed as it is (an unfinished last write is left out, as Optuna's
    reader leaves it out, with a warning saying how much and that a resumed run starts from
    the complete records; a file without one complete record is no journal); SQLite is opened with ``mode=ro`` (``immutable=1`` where even that needs
    to write, e.g. a WAL database on a read-only file system); other URLs (database
    servers) are opened as Optuna opens them, without creating tables.
    """
    if not isinstance(url, str):
        raise ValueError(f"storage: a storage URL must be a string, got {url!r}")
    if url.startswith(JOURNAL):
        return _reading_journal(Path(url[len(JOURNAL):]))
    if url.startswith(SQLITE):
        return _reading_sqlite(Path(url[len(SQLITE):]))
    if url.startswith(GRPC):
        return grpc_storage(url)
    return server_storage(url, skip_table_creation=True)


#: Where a database server's password comes from: the client's own sources, never the URL (a command line
#: shows it to ``ps``, and a run folder, a log or an error message would keep it).
PASSWORD_SOURCES = ("the database client's own environment variable or password file (PostgreSQL: PGPASSWORD, "
                    "PGPASSFILE or ~/.pgpass; MySQL: MYSQL_PWD or an option file)")
#: Seconds a database server has to answer before the storage is said to be unreachable.
CONNECT_TIMEOUT_S = 10


#: An Optuna gRPC storage proxy's address as a storage URL: ``grpc://HOST:PORT``.
GRPC = "grpc://"


#: What a malformed ``grpc://`` storage URL is told.
GRPC_FORM = "a gRPC storage proxy's URL is grpc://HOST:PORT (a port 1 to 65535)"


def grpc_address(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``grpc://HOST:PORT`` storage URL, or None when it is not of that form."""
    host, _, port = url[len(GRPC):].rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host or "@" in host:
        return None
    return host.strip("[]"), int(port)


def grpc_storage(url: str):
    """Optuna's gRPC storage proxy at ``grpc://HOST:PORT`` (``optuna.storages.run_grpc_proxy_server`` serves
    a storage there), answering within CONNECT_TIMEOUT_S or one ValueError naming it."""
    address = grpc_address(url)
    if address is None:
        raise ValueError(f"storage {url}: {GRPC_FORM}")
    host, port = address
    with warnings.catch_warnings():  # experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
        except ImportError:
            raise ValueError(f"storage {url}: the gRPC client is not installed (pip install -e '.[grpc]', "
                             f"which installs grpcio)") from None
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise ValueError(f"storage {url}: no gRPC storage proxy answers there within {CONNECT_TIMEOUT_S} s "
                         f"(one is started with optuna.storages.run_grpc_proxy_server(storage, host=..., "
                         f"port=...))") from None
    return proxy


def server_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a database server's (or a gRPC storage proxy's) URL (not a URL, or a
    password in it), or None."""
    if url.startswith(GRPC):
        return GRPC_FORM if grpc_address(url) is None else None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as error:
        return f"not a storage URL ({error})"
    if parsed.password is not None:
        return (f"the URL holds a password; give it in {PASSWORD_SOURCES} instead, so that it never shows on a "
                f"command line, in a log or in the run folder")
    return None


def shown_url(url: str) -> str:
    """``url`` as messages show it: a password, if any, replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: nothing in it parses as a password
        return url


def server_storage(url: str, skip_table_creation: bool = False) -> optuna.storages.RDBStorage:
    """Optuna's storage on a database server, connected and checked before any trial: an unreachable
    server, refused credentials or a missing client library is one ValueError naming the server (within
    CONNECT_TIMEOUT_S), never the password."""
    if not isinstance(url, str):
        raise ValueError(f"storage: a storage URL must be a string, got {url!r}")
    problem = server_url_problem(url)
    if problem:
        raise ValueError(f"storage {shown_url(url)}: {problem}")
    options = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if url.startswith("postgresql") else {}
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=options, skip_table_creation=skip_table_creation)
        except ImportError:
            raise ValueError(f"storage {shown_url(url)}: the database client library for this URL is not "
                             f"installed (PostgreSQL: pip install -e '.[postgres]', which installs psycopg)") from None
        except Exception as error:  # noqa: BLE001 - sqlalchemy's many errors: one line naming the server
            if attempt < CREATE_ATTEMPTS and _created_meanwhile(error):
                time.sleep(0.2 * attempt)  # another process created the tables first: open what it made
                continue
            raise ValueError(f"storage {shown_url(url)}: {_server_failure(error)}") from None


#: Times a process opens a new database whose tables other processes are creating at the same moment.
CREATE_ATTEMPTS = 5


def _created_meanwhile(error: BaseException) -> bool:
    """Whether opening failed because another process created the same tables at the same moment (PostgreSQL:
    a duplicate key in its catalog, or a table that already exists)."""
    reason = str(root_cause(error))
    return "duplicate key value violates unique constraint" in reason or "already exists" in reason


def _server_failure(error: BaseException) -> str:
    reason = _first_line(error)
    if "password authentication failed" in reason or "no password supplied" in reason:
        return f"the server refused the credentials ({reason}); the password is read from {PASSWORD_SOURCES}"
    return f"cannot connect or read ({reason})"


def root_cause(error: BaseException) -> BaseException:
    """The innermost error of a chain (Optuna wraps the database's own error, which says what happened)."""
    seen = {id(error)}
    def inner_of(e):
        return e.__cause__ or (None if e.__suppress_context__ else e.__context__)

    while (inner := inner_of(error)) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return getattr(error, "orig", None) or error


def _first_line(error: BaseException) -> str:
    cause = root_cause(error)
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


def _study_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ValueError(f"{path}: no such {what}" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a {what}")


class _ReadOnlyJournal(BaseJournalBackend):
    """Optuna's journal file, read through its own reader; every write refused."""

    def __init__(self, path: Path):
        self.path = path
        self._file = JournalFileBackend(str(path))  # an existing file: its constructor writes nothing

    def read_logs(self, log_number_from: int):
        return self._file.read_logs(log_number_from)

    def append_logs(self, logs) -> None:
        raise PermissionError(f"{self.path}: opened to read only")


def _reading_journal(path: Path):
    from optuna.storages import JournalStorage

    _study_file(path, "journal file (study.log)")
    _say_a_torn_tail(path)
    try:
        return JournalStorage(_ReadOnlyJournal(path))
    except Exception as error:  # noqa: BLE001 - a corrupt line: name the file and the line, not the decoder
        raise ValueError(f"{path}: not a readable Optuna journal ({_bad_journal_line(path) or _first_line(error)})") \
            from None


def _say_a_torn_tail(path: Path) -> None:
    """A journal whose last record was cut off (a crash while writing): warn that it is left out (Optuna's reader
    skips it silently); a file without one complete record is no journal at all (a ValueError)."""
    with open(path, "rb") as journal:
        size, complete = _complete_records(journal)
    if complete == size:
        return
    if complete == 0:
        raise ValueError(f"{path}: not an Optuna journal: {size} bytes without one complete record (a journal "
                         f"holds one JSON record per line)")
    records = _count_lines(path, complete)
    log.warning("%s: its last record is cut off (%d bytes after the last of %d complete records, a write that did "
                "not finish); it is left out here, and the run resumes from the %d records when it is run again",
                path, size - complete, records, records)


def _count_lines(path: Path, end: int, block: int = 1 << 20) -> int:
    with open(path, "rb") as journal:
        count, read = 0, 0
        while read < end:
            chunk = journal.read(min(block, end - read))
            count, read = count + chunk.count(b"\n"), read + len(chunk)
    return count


def _bad_journal_line(path: Path) -> str | None:
    """Where a journal file stops being one JSON record per line (None when every line is one)."""
    with open(path, "rb") as journal:
        for number, line in enumerate(journal, start=1):
            try:
                json.loads(line)
            except ValueError:
                return f"line {number} is not a JSON record"
    return None


def _reading_sqlite(path: Path):
    import sqlalchemy

    _study_file(path, "SQLite study database")
    last = None
    for mode in ("mode=ro", "immutable=1"):
        try:
            storage = optuna.storages.RDBStorage(f"sqlite:///file:{path.resolve()}?{mode}&uri=true",
                                                 skip_table_creation=True)
            optuna.study.get_all_study_names(storage)  # reads the schema: a corrupt file fails here
            return storage
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError) as error:
            last = error
    raise ValueError(f"{path}: not a readable study database ({_first_line(last)})")


def load_study_for_reading(storage, study_name: str | None) -> optuna.Study:
    """The study ``study_name`` of a reading storage (the only one when None); a ValueError listing the
    studies the storage holds when the name is not among them."""
    names = optuna.study.get_all_study_names(storage)
    if study_name is None:
        searches = [n for n in names if not (n.endswith(FIDELITY) and n[:-len(FIDELITY)] in names)]  # not twins
        if len(searches) == 1:
            names = searches
        if len(names) != 1:
            raise ValueError(f"load: the storage holds {len(names)} studies ({', '.join(names) or 'none'}); "
                             f"pass study_name= (--study)")
        study_name = names[0]
    if study_name not in names:
        raise ValueError(f"load: no study {study_name!r} in the storage; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage)


#: A run folder whose study lives in another storage says where, in this file: {"storage": URL, "study": NAME}.
STUDY_RECORD = "study.json"


def folder_study(folder: str | Path) -> tuple[str, str | None]:
    """Where a run folder's study lives: ``(storage URL, study name or None)``, from its ``study.log`` or
    ``study.db``, or from its ``study.json`` when the run kept its study in another storage (always, for a run
    folder in an object store)."""
    if not is_url(folder) and any((Path(folder) / name).is_file() for name in ("study.log", "study.db")):
        return run_folder_storage(Path(folder)), None
    entries = entries_at(folder)
    text, where = entries.read(STUDY_RECORD), entries.where(STUDY_RECORD)
    if text is not None:
        try:
            data = json.loads(text)
            return str(data["storage"]), data.get("study")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{where}: not a study record ({type(error).__name__}: {error}); it should hold "
                             f'{{"storage": URL, "study": NAME}}') from None
    raise FileNotFoundError(f"{folder} holds no study (study.log, study.db, or {STUDY_RECORD} naming another "
                            f"storage); pass storage= and study_name= (--storage, --study) for a run kept elsewhere")


def run_folder_storage(folder: Path) -> str:
    """A run folder's storage URL: its journal file ``study.log``, or ``study.db`` for a run started on SQLite."""
    sqlite = Path(folder) / "study.db"
    if sqlite.is_file():
        return f"{SQLITE}{sqlite.resolve()}"
    return f"{JOURNAL}{(Path(folder) / 'study.log').resolve()}"


def _repair_torn_tail(path: Path) -> None:
    """Cut an unfinished last line off a journal file, under the journal's own lock.

    A write that failed part-way (a full disk) leaves a line without its newline; Optuna
    would append the next write to it and then refuse to read the file at all. The cut
    line is a write that already failed for the process that made it, so nothing
    recorded is lost.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file() or path.stat().st_size == 0:
        return
    lock = JournalFileSymlinkLock(str(path))  # the lock JournalFileBackend takes for every append
    lock.acquire()
    try:
        with open(path, "rb+") as journal:
            size, keep = _complete_records(journal)
            if keep == size:
                return
            journal.truncate(keep)
            journal.flush()
            os.fsync(journal.fileno())
        log.warning("%s: removed an unfinished last write (%d bytes) left by a failed append", path, size - keep)
    finally:
        lock.release()


def _complete_records(journal) -> tuple[int, int]:
    """(size, the end of its last complete line) of a journal file: equal when it ends with a newline."""
    size = journal.seek(0, os.SEEK_END)
    journal.seek(max(size - 1, 0))
    return size, size if journal.read(1) == b"\n" else _end_of_last_line(journal, size)


def _end_of_last_line(journal, size: int, block: int = 1 << 16) -> int:
    """The offset just after the last newline of ``journal`` (0 when it has none)."""
    end = size
    while end > 0:
        start = max(end - block, 0)
        journal.seek(start)
        found = journal.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _sqlite_storage(url: str):
    """SQLite in WAL mode: readers never block the writer, and commits cost a third less.

    ``synchronous=NORMAL`` keeps the database consistent through a crash of any process;
    only a power loss can drop the last commits. Opening is serialized across processes
    (see :func:`_schema_lock`), so a driver and a reader opening a new database at the
    same moment do not both create its tables.
    """
    import sqlalchemy

    with _schema_lock(Path(url[len(SQLITE):])):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _pragmas(connection, _record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened before the listener get the pragmas on reconnect
    return storage


@contextlib.contextmanager
def _schema_lock(db: Path):
    """Hold an exclusive ``flock`` on ``<db>.lock`` while Optuna creates or checks the schema.

    Optuna's ``RDBStorage`` creates tables and stamps the schema version with no guard
    against another process doing the same: two processes opening one new SQLite file
    at once fail with "table ... already exists" or a UNIQUE error on
    ``alembic_version``. The lock is a separate file because closing any descriptor of
    the database file itself would drop the POSIX locks SQLite holds on it in this
    process (and can corrupt a WAL database). Where ``fcntl`` is missing (Windows) the
    open is not serialized.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: The study's user attributes, by the StudyRecord field each holds.
_STUDY_KEYS = {"schema": "codesign.schema", "experiment": "codesign.experiment", "objectives": "codesign.objectives",
               "data": "codesign.data", "run_folder": "codesign.run_folder", "finals": "codesign.final",
               "artifacts": "codesign.artifacts"}


@dataclasses.dataclass(frozen=True)
class StudyRecord:
    """What codesign records on a study; :meth:`read` is the one reader, :meth:`write` and :meth:`record_final`
    the writers.

    A study without ``schema`` is of schema 1 (its trials' attributes are read through
    :func:`~codesign.outcome.migrate`); a run started before a field existed gets it
    when it resumes.
    """

    schema: int = 1
    experiment: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Experiment.describe()
    objectives: tuple[str, ...] = ()
    data: DataSpec | None = None  # design.predict normalises raw images with it
    run_folder: str | None = None  # the run folder, from any storage
    artifacts: str | None = None  # where the artifacts are (a folder or an object store URL); None: run_folder's
    finals: Mapping[int, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # finalize's records

    @property
    def quality_metric(self) -> str:
        """What the search's proxy reported: ``accuracy``, or a zero-cost score under its own name."""
        return self.experiment.get("quality_metric", "accuracy")

    @classmethod
    def read(cls, study: optuna.Study) -> "StudyRecord":
        attrs = study.user_attrs
        data = attrs.get(_STUDY_KEYS["data"])
        return cls(schema=int(attrs.get(_STUDY_KEYS["schema"], 1)),
                   experiment=dict(attrs.get(_STUDY_KEYS["experiment"]) or {}),
                   objectives=tuple(attrs.get(_STUDY_KEYS["objectives"]) or ()),
                   data=None if data is None else DataSpec.from_dict(data),
                   run_folder=attrs.get(_STUDY_KEYS["run_folder"]),
                   artifacts=attrs.get(_STUDY_KEYS["artifacts"]),
                   finals={int(k): v for k, v in (attrs.get(_STUDY_KEYS["finals"]) or {}).items()})

    @staticmethod
    def write(study: optuna.Study, experiment) -> None:
        """Record ``experiment`` on its study: each field once, the schema only on a study with no trial yet."""
        fields = {
            "experiment": lambda: json.loads(experiment.to_json()),
            "objectives": lambda: [o.metric for o in experiment.objectives],
            "data": lambda: experiment.data.to_dict(),
            "run_folder": lambda: experiment.run_location,
            "artifacts": lambda: experiment.artifacts_location,
        }
        if not study.get_trials(deepcopy=False):
            fields["schema"] = lambda: SCHEMA
        for field, value in fields.items():
            if _STUDY_KEYS[field] not in study.user_attrs:
                study.set_user_attr(_STUDY_KEYS[field], value())

    @staticmethod
    def record_final(study: optuna.Study, trial: int, final: Mapping[str, Any]) -> None:
        """Record a finalized design (a retrained trial); it replaces an earlier record of the same trial."""
        records = dict(study.user_attrs.get(_STUDY_KEYS["finals"]) or {})
        records[str(trial)] = dict(final)
        study.set_user_attr(_STUDY_KEYS["finals"], json.loads(json.dumps(records)))


def read_trials(study: optuna.Study, states=None) -> list:
    """The study's trials (``states``: those only), their attributes in the current schema."""
    trials = study.get_trials(deepcopy=False, states=states)
    if StudyRecord.read(study).schema < SCHEMA:
        trials = [migrate(t) for t in trials]
    return trials


def open_study(experiment) -> optuna.Study:
    """The experiment's study, created on first use and resumed after that."""
    if not experiment.in_store:
        experiment.folder.mkdir(parents=True, exist_ok=True)
    storage = make_storage(experiment.storage_url)  # a server that cannot be reached fails here, first
    if experiment.storage is not None:  # the folder says where its study lives
        entries_at(experiment.run_location).write(
            STUDY_RECORD, (json.dumps({"storage": experiment.storage, "study": experiment.name}) + "\n").encode())
    study = optuna.create_study(study_name=experiment.name, storage=storage,
                                directions=experiment.directions, sampler=experiment.make_sampler(),
                                pruner=experiment.pruner if len(experiment.directions) == 1 else None,  # twin's
                                load_if_exists=True)
    StudyRecord.write(study, experiment)
    with warnings.catch_warnings():  # metric names are experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names is None:
            study.set_metric_names([o.metric for o in experiment.objectives])  # optuna-dashboard shows them
    asked = len(study.get_trials(deepcopy=False))
    if asked:  # resumed: continue the sampling sequence instead of replaying the first run's draws
        study.sampler = experiment.make_sampler(resumed_after=asked)
    return study


#: The user attribute naming the driver that runs a trial (:mod:`codesign.lease`).
DRIVER = "codesign.driver"


def requeue_interrupted(study: optuna.Study, live: set[str] | frozenset[str] = frozenset(),
                        others_running: bool = False) -> int:
    """Fail the trials a dead driver left running and enqueue their parameters again.

    A running trial belongs to the driver its ``codesign.driver`` attribute names; one
    whose driver is in ``live`` is left alone. A trial without that attribute (asked by a
    version that did not record it) is taken as dead only when no other driver runs
    (``others_running`` False). The failed trial carries no outcome, so it reads back as
    ``interrupted`` and the budget does not count it; the re-queued trial names it in
    ``requeued_from``.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = [t for t in running if (t.user_attrs[DRIVER] not in live if DRIVER in t.user_attrs
                                    else not others_running)]
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
    return len(stale)


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward the budget: finished, and not interrupted."""
    done = read_trials(study, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    return sum(1 for t in done if trial_status(t) not in (Status.INTERRUPTED, Status.DUPLICATE))


#: The suffix of the companion study a pruner decides in when the experiment has several objectives.
FIDELITY = ":fidelity"
#: The user attribute giving a trial's twin in the companion study.
FIDELITY_TRIAL = "fidelity_trial"


def open_fidelity_study(experiment) -> optuna.Study | None:
    """The companion study a multi-objective experiment's pruner decides in (None without a pruner or with
    one objective, where the pruner uses the study itself).

    Optuna's pruners take one objective, and a co-design study has several. Each trial gets a twin trial
    in ``<name>:fidelity`` (one objective, the quality metric, maximised): the worker reports the
    per-epoch accuracies to the twin and asks the pruner there, and the driver tells the twin the final
    accuracy (or pruned, or failed). So the pruner compares learning curves, the accuracy alone; a
    candidate with a slow-learning network but a fast accelerator is pruned like any other.
    """
    if experiment.pruner is None or len(experiment.objectives) == 1:
        return None
    return optuna.create_study(study_name=experiment.name + FIDELITY, storage=make_storage(experiment.storage_url),
                               direction="maximize", sampler=optuna.samplers.RandomSampler(seed=experiment.seed),
                               pruner=experiment.pruner, load_if_exists=True)


class PrunerDesk:
    """The pruner's desk, run as a Ray actor on the driver's node (:func:`open_pruner_desk`): it tells a worker's
    intermediate accuracies to the trial (or its twin in the fidelity study) and asks the study's pruner whether
    to stop. It opens the storage once, on the driver's node, so no worker needs the study's storage."""

    def __init__(self, storage_url: str, pruner):
        self.storage_url, self.pruner = storage_url, pruner
        self._study_storage = None
        self._trials: dict[tuple[str, int], optuna.Trial] = {}

    def report(self, study_name: str, trial_number: int, epoch: int, accuracy: float) -> bool:
        """Report ``accuracy`` at ``epoch`` to trial ``trial_number`` of ``study_name``; True: stop it."""
        key = (study_name, trial_number)
        if key not in self._trials:
            if self._study_storage is None:
                self._study_storage = make_storage(self.storage_url)
            study = optuna.load_study(study_name=study_name, storage=self._study_storage, pruner=self.pruner)
            study_id = self._study_storage.get_study_id_from_name(study_name)
            self._trials[key] = optuna.Trial(study, self._study_storage.get_trial_id_from_study_id_trial_number(
                study_id, trial_number))
        trial = self._trials[key]
        trial.report(accuracy, epoch)
        return trial.should_prune()


def open_pruner_desk(ray, storage_url: str, pruner):
    """A :class:`PrunerDesk` actor on this (the driver's) node, taking no CPU from the trials."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=here, max_restarts=2)(PrunerDesk).remote(storage_url, pruner)


@dataclasses.dataclass(frozen=True)
class DeskReporter:
    """``reporter(epoch, accuracy) -> stop?`` for a worker: one trial's reports, sent to the driver's
    :class:`PrunerDesk`."""

    desk: Any  # the PrunerDesk actor's handle
    study_name: str
    trial_number: int

    def __call__(self, epoch: int, accuracy: float) -> bool:
        import ray

        return ray.get(self.desk.report.remote(self.study_name, self.trial_number, int(epoch), float(accuracy)))


def disk_full_or(error: BaseException, folder: str | Path, trial: int) -> BaseException:
    """``error``, or an ``OSError(ENOSPC)`` saying so when the disk of ``folder`` is full (a full disk shows
    up as a database or journal error deep inside the storage)."""
    cause = root_cause(error)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if getattr(cause, "errno", None) == errno.ENOSPC or "disk is full" in str(cause) or (
            free is not None and free < 1 << 20):
        where = "" if free is None else f" ({free:,} bytes free)"
        return OSError(errno.ENOSPC, f"disk full{where}: trial {trial} could not be recorded", str(folder))
    return error
