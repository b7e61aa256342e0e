"""The accuracy cache: no network + compression pair is ever evaluated twice.

A proxy's result depends on the network, the compression policy, the dataset (its
fingerprint), the proxy and its fidelity, and the seed: never on the accelerator. The
cache keys results by a digest of exactly those and keeps them in a folder (by default
``<run folder>/accuracy_cache``), one ``<key>.json`` per result plus ``<key>.msgpack``
with the trained weights (Flax msgpack). Files are written atomically, so the folder
can be shared by parallel workers, by restarts, and by the nodes of a cluster on a
shared file system.

While one worker evaluates a pair it holds ``<key>.lock`` (created exclusively);
another worker asking for the same pair waits for the result instead of training
again. A lock whose owner died (same host, process gone) or that is older than
``stale_after`` seconds is taken over. Results stopped by a pruner, and candidates that
failed, are not stored (they are not the proxy's value); diverged runs are, with their
reason.

An entry that cannot be read (an emptied or truncated ``<key>.json``, garbage in
``<key>.msgpack``) is a cache miss: :meth:`AccuracyCache.get` logs a warning naming the
file and deletes the entry while holding its lock, so the pair is evaluated again
instead of failing on every rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import socket
import time
from pathlib import Path
from typing import Callable, TypeVar

import jax
from flax import serialization

from codesign.outcome import Outcome, Status

T = TypeVar("T")
log = logging.getLogger(__name__)  # "codesign.cache": under the package's "codesign" logger


class CorruptEntry(ValueError):
    """A cache entry's files cannot be read back as an outcome."""


def cache_key(spec, compression, dataset, proxy, seed: int) -> str:
    """Digest of everything a proxy result depends on."""
    if compression is not None and compression.is_identity:
        compression = None
    fields = {"network": spec.to_dict(), "compression": None if compression is None else compression.to_dict(),
              "dataset": dataset.fingerprint, "proxy": proxy.describe(), "seed": int(seed)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AccuracyCache:
    """A folder of proxy results shared by every trial, worker and restart of a run."""

    def __init__(self, folder: str | os.PathLike, poll_seconds: float = 0.2, stale_after: float = 6 * 3600):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.poll_seconds = poll_seconds
        self.stale_after = stale_after

    # --- reading and writing ----------------------------------------------------------------
    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / f"{key}{suffix}"

    def get(self, key: str, with_weights: bool = True) -> Outcome | None:
        """The stored accuracy outcome (``cached`` set), or None; an unreadable entry is discarded (None)."""
        try:
            return self._read(key, with_weights)
        except CorruptEntry as corrupt:
            return self._discard(key, with_weights, corrupt)

    def _read(self, key: str, with_weights: bool) -> Outcome | None:
        """The entry as stored, None when there is none, or :class:`CorruptEntry`."""
        path = self._path(key, ".json")
        try:
            text = path.read_bytes()
        except FileNotFoundError:  # also: discarded by another worker since we looked
            return None
        outcome = _outcome(text, path)
        weights = self._path(key, ".msgpack")
        if with_weights and weights.is_file():
            outcome = outcome.replace(weights=_weights(weights))
        return outcome

    def _discard(self, key: str, with_weights: bool, corrupt: CorruptEntry) -> Outcome | None:
        """Delete an unreadable entry under its lock (a miss: the pair is evaluated again). When another worker
        holds the lock, it is computing the pair and overwrites the entry: leave it."""
        if not self._claim(key):
            log.debug("%s; left to the worker holding %s", corrupt, self._path(key, ".lock"))
            return None
        try:
            try:  # read again under the lock: another worker may have replaced it since we looked
                return self._read(key, with_weights)
            except CorruptEntry as still:
                corrupt = still
            log.warning("accuracy cache: %s; discarding the entry and evaluating again", corrupt)
            self._path(key, ".json").unlink(missing_ok=True)  # first: the entry's presence is its JSON
            self._path(key, ".msgpack").unlink(missing_ok=True)
            return None
        finally:
            self._path(key, ".lock").unlink(missing_ok=True)

    def put(self, key: str, result: Outcome, about: dict | None = None) -> None:
        """Store the accuracy part of ``result`` (score, status, reason, history, weights)."""
        if result.weights is not None:
            arrays = jax.device_get(result.weights)  # numpy leaves, same tree
            atomic_write(self._path(key, ".msgpack"), serialization.msgpack_serialize(arrays))
        else:  # no weights left over from an earlier (perhaps corrupt) entry: the files stay one entry
            self._path(key, ".msgpack").unlink(missing_ok=True)
        record = {"score": result.accuracy, "status": result.status.value, "reason": result.reason,
                  "seconds": result.proxy_seconds, "history": [list(h) for h in result.history],
                  "about": about or {}, "written": time.time()}
        atomic_write(self._path(key, ".json"), json.dumps(record, sort_keys=True).encode())

    def __contains__(self, key: str) -> bool:
        return self._path(key, ".json").is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json"))

    # --- evaluate once ------------------------------------------------------------------
    def evaluate(self, spec, compression, dataset, proxy, seed: int = 0, report=None) -> Outcome:
        """The proxy's result for this pair: from the cache, or computed once and stored."""
        key = cache_key(spec, compression, dataset, proxy, seed)

        def compute() -> Outcome:
            result = proxy.evaluate(spec, compression, dataset, seed, report)
            self._keep(key, result, spec, proxy, seed)
            return result
        return self.once(key, lambda: self.get(key), compute)

    def evaluate_many(self, pairs, dataset, proxy, seed: int = 0, reports=None) -> list[Outcome]:
        """:meth:`evaluate` for several pairs: those nobody has computed or is computing are computed together
        (``proxy.evaluate_many``) under their locks; the others are read, or waited for, one by one."""
        reports = list(reports) if reports is not None else [None] * len(pairs)
        if not hasattr(proxy, "evaluate_many") or len(pairs) == 1:
            return [self.evaluate(spec, policy, dataset, proxy, seed, report)
                    for (spec, policy), report in zip(pairs, reports)]
        keys = [cache_key(spec, policy, dataset, proxy, seed) for spec, policy in pairs]
        results: list[Outcome | None] = [self.get(key) for key in keys]
        claimed = [i for i, key in enumerate(keys) if results[i] is None and self._claim(key)]
        try:
            for i in claimed:  # finished by another worker between our look and our claim
                results[i] = self.get(keys[i])
            todo = [i for i in claimed if results[i] is None]
            if todo:
                computed = proxy.evaluate_many([pairs[i] for i in todo], dataset, seed, [reports[i] for i in todo])
                for i, result in zip(todo, computed):
                    self._keep(keys[i], result, pairs[i][0], proxy, seed)
                    results[i] = result
        finally:
            for i in claimed:
                self._path(keys[i], ".lock").unlink(missing_ok=True)
        return [result if result is not None else self.evaluate(*pairs[i], dataset, proxy, seed, reports[i])
                for i, result in enumerate(results)]

    def _keep(self, key: str, result: Outcome, spec, proxy, seed: int) -> None:
        """Store a computed result, unless a pruner stopped it or the candidate failed (neither is the proxy's
        value; a failed candidate is tried again by a rerun)."""
        if result.status not in (Status.PRUNED, Status.FAILED):
            self.put(key, result, {"network": spec.name, "proxy": proxy.describe(), "seed": seed})

    def once(self, key: str, load: Callable[[], T | None], compute: Callable[[], T]) -> T:
        """``load()``'s value, or ``compute()``'s by exactly one worker while the others wait for it.

        ``compute`` runs while ``<key>.lock`` is held and must store what ``load`` reads.
        """
        while True:
            value = load()
            if value is not None:
                return value
            if self._claim(key):
                try:
                    value = load()  # finished by another worker between our look and our claim
                    return value if value is not None else compute()
                finally:
                    self._path(key, ".lock").unlink(missing_ok=True)
            time.sleep(self.poll_seconds)

    def _claim(self, key: str) -> bool:
        lock = self._path(key, ".lock")
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if self._stale(lock):
                lock.unlink(missing_ok=True)
            return False
        with os.fdopen(fd, "w") as f:
            f.write(owner)
        return True

    def _stale(self, lock: Path) -> bool:
        try:
            text, age = lock.read_text(), time.time() - lock.stat().st_mtime
        except (OSError, ValueError):
            return False  # gone, or not readable as text right now
        try:
            owner = json.loads(text or "{}")
        except ValueError:
            owner = {}
        if not owner:  # being written right now, or its writer failed (a full disk): it had seconds to write
            return age > UNWRITTEN_LOCK_SECONDS
        if time.time() - owner.get("time", time.time()) > self.stale_after:
            return True
        return owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", 0)))


#: A lock file still without its owner after this long was left by a writer that failed (its owner is a few
#: bytes written right after the exclusive create).
UNWRITTEN_LOCK_SECONDS = 30.0


def _outcome(text: bytes, path: Path) -> Outcome:
    """An entry's JSON record as an outcome (no weights), or :class:`CorruptEntry` naming ``path``."""
    try:
        data = json.loads(text)
        status = Status.COMPLETE if data["status"] == "ok" else Status(data["status"])  # "ok": written before Status
        score, seconds, reason = data["score"], data["seconds"] or 0.0, data["reason"] or ""
        history = tuple(tuple(h) for h in data["history"])
        for field, ok in (("score", score is None or _number(score)), ("seconds", _number(seconds)),
                          ("reason", isinstance(reason, str)),
                          ("history", all(len(h) == 2 and all(map(_number, h)) for h in history))):
            if not ok:
                raise ValueError(f"field {field!r} has the wrong type")
    except (ValueError, KeyError, TypeError) as error:  # also json's and utf-8's errors (ValueErrors)
        raise CorruptEntry(f"entry {path} is unreadable ({type(error).__name__}: {error})") from None
    return Outcome(status, metrics={} if score is None else {"accuracy": score}, history=history, reason=reason,
                   proxy_seconds=seconds, cached=True)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _weights(path: Path) -> dict:
    """An entry's trained variables (Flax msgpack), or :class:`CorruptEntry` naming ``path``."""
    try:
        variables = serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError:
        raise CorruptEntry(f"entry {path} vanished while its record was read") from None
    except Exception as error:  # msgpack and flax raise several kinds on garbage
        raise CorruptEntry(f"entry {path} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(variables, dict):
        raise CorruptEntry(f"entry {path} is unreadable (it holds a value of type {type(variables).__name__}, "
                           f"not variables)")
    return variables


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
