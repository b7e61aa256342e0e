"""Where a run keeps named entries, a folder or an object store URL (``s3://bucket/prefix``, any fsspec
protocol), as the study record, artifact store, accuracy cache and driver leases use them: telling a URL from
a folder, a client with bounded waits, :func:`entries_at` (:class:`FolderEntries` or :class:`StoreEntries`:
read, write, an exclusive create, remove), and the lease an entry holds for a live process (:func:`holder`,
:func:`lapsed`, :class:`Renewal`). A leaf module
(fsspec is imported when a client is made), so both the results side and the accuracy room can use it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

#: Seconds an object store has to answer a request (connecting, then reading) before it counts as unreachable.
TIMEOUT_S = 10


def is_url(location) -> bool:
    """An object store URL (``s3://bucket/prefix``), not a folder."""
    return isinstance(location, str) and "://" in location


def joined(location, name: str) -> str:
    """``location/name`` for a folder or an object store URL."""
    return f"{str(location).rstrip('/')}/{name}" if is_url(location) else str(Path(location) / name)


def object_store(url: str):
    """``(file system, root path)`` of an fsspec URL: a new client (the environment's endpoint and credentials now),
    with bounded waits for S3, so an unreachable store is an error, not a hang."""
    import fsspec

    options = {"skip_instance_cache": True}
    if url.startswith("s3://"):
        options["config_kwargs"] = {"connect_timeout": TIMEOUT_S, "read_timeout": TIMEOUT_S,
                                    "retries": {"max_attempts": 2}}
    return fsspec.core.url_to_fs(url, **options)


class FolderEntries:
    """Named entries as the files of a local (or shared) folder, each written atomically."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)  # made by the first write: looking leaves no folder behind

    def where(self, name: str) -> str:
        return str(self.folder / name)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / name, data)

    def create(self, name: str, data: bytes) -> bool:
        """Write ``name`` unless it exists (atomically: one of several writers wins)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def remove(self, name: str) -> bool:
        """Remove ``name``; False when there was none."""
        try:
            (self.folder / name).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def age(self, name: str) -> float | None:
        """Seconds since ``name`` was last written, or None when it is gone."""
        try:
            return time.time() - (self.folder / name).stat().st_mtime
        except OSError:
            return None

    def names(self, suffix: str) -> list[str]:
        return [path.name for path in self.folder.glob(f"*{suffix}")]


class StoreEntries:
    """Named entries as the objects under an fsspec URL prefix (``s3://bucket/prefix``): each written whole,
    a lock by a conditional write (S3's ``If-None-Match``)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = object_store(self.url)

    def where(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def read(self, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(name))
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(name), data)

    def create(self, name: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(self._path(name), data, mode="create")
        except FileExistsError:  # s3fs: 412 Precondition Failed on If-None-Match
            return False
        return True

    def remove(self, name: str) -> bool:
        """Remove ``name``; False when there was none."""
        try:
            self.fs.rm_file(self._path(name))
        except FileNotFoundError:
            return False
        return True

    def exists(self, name: str) -> bool:
        self.fs.invalidate_cache(self._path(name))  # asked of the store, not of an earlier listing
        return self.fs.exists(self._path(name))

    def age(self, name: str) -> float | None:
        try:
            modified = self.fs.modified(self._path(name))
        except (FileNotFoundError, NotImplementedError):
            return None
        return time.time() - modified.timestamp()

    def names(self, suffix: str) -> list[str]:
        try:
            found = self.fs.ls(self.root, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [name.rsplit("/", 1)[-1] for name in found if name.endswith(suffix)]


def entries_at(location) -> FolderEntries | StoreEntries:
    """The entries at ``location``: an object store URL, or a folder."""
    return StoreEntries(str(location)) if is_url(location) else FolderEntries(location)


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole: a reader sees the old file or the new one, never part of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


#: Seconds a lease counts as held without being renewed (its holder renews it four times as often).
LEASE_S = 120.0


def holder(**fields) -> bytes:
    """A lease's content: who holds it (host, process id), when it was last renewed, and ``fields``."""
    return json.dumps({**fields, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode()


def lapsed(owner: dict, lease_s: float = LEASE_S) -> bool:
    """Whether the holder of a lease whose content is ``owner`` is gone: the lease was not renewed for
    ``lease_s`` (its holder died, on whatever node), or its holder ran on this host and its process is gone
    (seen at once, without waiting for the lease to lapse)."""
    if time.time() - float(owner.get("time", time.time())) > lease_s:
        return True
    return owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0)))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Renewal:
    """A thread rewriting a lease entry every ``lease_s / 4`` s until :meth:`stop`, which returns only once no
    renewal can land any more (so a removal after it is final)."""

    def __init__(self, entries, name: str, content, lease_s: float = LEASE_S):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(entries, name, content, lease_s), daemon=True,
                                        name=f"lease {name[:16]}")
        self._thread.start()

    def _run(self, entries, name: str, content, lease_s: float) -> None:
        while not self._stop.wait(lease_s / 4):
            try:
                entries.write(name, content())
            except OSError:  # a store that failed this once: the next renewal may land, well within the lease
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
