"""Which drivers are searching a run now: one lease per driver, held while it runs, where every driver of
the run sees it.

* **In a folder** (the run folder, local or on NFS): a driver (one :func:`codesign.run` call)
  creates ``RUN/drivers/<host>-<pid>-<random>.json``, holds an exclusive ``flock`` on it for
  as long as it runs, and removes it when it ends. The operating system drops the lock when
  the process dies, however it dies (``kill -9`` included), so another driver can tell a
  live driver from a dead one by trying the lock: if it gets it, the owner is gone (its file
  is removed then). On NFS Linux maps ``flock`` to the server's byte-range locks, so drivers
  on several hosts that share one run folder see each other.
* **In an object store** (a run whose artifacts, or run folder, are an ``s3://`` URL, so the
  drivers' hosts may share no disk): the driver writes ``<URL>/drivers/<id>.json`` and
  rewrites it every ``LEASE_S / 4`` s from a thread. Another driver counts it live while it
  was renewed within ``LEASE_S`` s, and, on the same host, while its process lives (a driver
  killed and started again on one host sees at once that the old one is gone).

What it is for (:mod:`codesign.driver`):

* a trial left running by a *dead* driver is re-queued, one run by a live driver is not;
* SQLite takes one driver per study: a second one refuses, naming the running driver.
  The journal file (a run folder's default) and database servers take several.

Where ``fcntl`` is missing (Windows) every other driver counts as dead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import IO

from codesign.stores import LEASE_S, Renewal, StoreEntries, holder, is_url, joined, lapsed

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

FOLDER = "drivers"


@dataclasses.dataclass(frozen=True)
class DriverInfo:
    """A driver: its id (``host-pid-random``), host, process id and start time (Unix seconds)."""

    id: str
    host: str
    pid: int
    started: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on host {self.host}, started {when}"


@dataclasses.dataclass
class Lease:
    """This process's claim to be a live driver of a run folder (release it with :meth:`release`)."""

    info: DriverInfo
    path: Path
    handle: IO | None

    def release(self) -> None:
        if self.handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self.handle.close()  # closing drops the lock
            self.handle = None


@dataclasses.dataclass
class StoreLease:
    """This process's claim to be a live driver of a run kept in an object store: an entry renewed from a
    thread until :meth:`release`."""

    info: DriverInfo
    entries: StoreEntries
    renewal: Renewal | None

    def release(self) -> None:
        if self.renewal is None:
            return
        self.renewal.stop()  # no renewal lands after the removal
        self.renewal = None
        try:
            self.entries.remove(f"{self.info.id}.json")
        except OSError:  # the store failing as the driver ends: the lease lapses within LEASE_S instead
            pass


def acquire(location: str | Path, lease_s: float = LEASE_S) -> Lease | StoreLease:
    """Register this process as a driver of the run at ``location`` (a folder, or an object store URL) until
    its lease's ``release()`` (or its death)."""
    started = time.time()
    host = socket.gethostname()
    info = DriverInfo(f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}", host, os.getpid(), started)
    if is_url(location):
        entries = StoreEntries(joined(location, FOLDER))
        name = f"{info.id}.json"

        def content() -> bytes:
            return holder(id=info.id, started=info.started)

        entries.write(name, content())
        return StoreLease(info, entries, Renewal(entries, name, content, lease_s))
    path = Path(location) / FOLDER / f"{info.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
    handle.write(json.dumps(dataclasses.asdict(info)) + "\n")
    handle.flush()
    return Lease(info, path, handle)


def live_drivers(location: str | Path, exclude: str | None = None, lease_s: float = LEASE_S) -> list[DriverInfo]:
    """The drivers of the run at ``location`` (a folder, or an object store URL) that still run, but ``exclude``;
    a dead one's lease is removed."""
    if is_url(location):
        return _live_in_store(StoreEntries(joined(location, FOLDER)), exclude, lease_s)
    live = []
    for path in sorted((Path(location) / FOLDER).glob("*.json")):
        if path.stem == exclude:
            continue
        try:
            with open(path, "r+") as handle:
                if fcntl is not None and _held(handle):
                    live.append(_read(path))
                    continue
                path.unlink(missing_ok=True)  # the lock was free: its driver is gone
        except FileNotFoundError:  # it ended while we looked
            continue
    return live


def _held(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _read(path: Path) -> DriverInfo:
    try:
        data = json.loads(path.read_text())
        return DriverInfo(str(data["id"]), str(data["host"]), int(data["pid"]), float(data["started"]))
    except (ValueError, KeyError, TypeError):  # written this instant: what the name says
        return DriverInfo(path.stem, path.stem.rsplit("-", 2)[0], -1, path.stat().st_mtime)


def _live_in_store(entries: StoreEntries, exclude: str | None, lease_s: float) -> list[DriverInfo]:
    live = []
    for name in sorted(entries.names(".json")):
        if name[:-len(".json")] == exclude:
            continue
        text = entries.read(name)
        if text is None:  # it ended while we looked
            continue
        try:
            owner = json.loads(text)
            info = DriverInfo(str(owner["id"]), str(owner["host"]), int(owner["pid"]), float(owner["started"]))
        except (ValueError, KeyError, TypeError):  # not a lease this module wrote: left alone, not counted
            continue
        if lapsed(owner, lease_s):
            entries.remove(name)
        else:
            live.append(info)
    return live
