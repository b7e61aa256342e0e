"""The accuracy cache: no network + compression pair is ever evaluated twice.

A proxy's result depends on the network, the compression policy, the dataset (its
fingerprint), the proxy and its fidelity, and the seed: never on the accelerator. The
cache keys results by a digest of exactly those and keeps them in a folder (by default
``<run folder>/accuracy_cache``), one ``<key>.json`` per result plus ``<key>.msgpack``
with the trained weights (Flax msgpack). Files are written atomically, so the folder
can be shared by parallel workers, by restarts, and by the nodes of a cluster on a
shared file system. The cache may instead live in an object store (a URL such as
``s3://bucket/run/accuracy_cache``, through fsspec), so nodes share it without a
shared file system: each entry is one object, written whole.

While one worker evaluates a pair it holds ``<key>.lock`` (created exclusively: an
``O_EXCL`` file, or an object store's conditional write); another worker asking for the
same pair waits for the result instead of training again. The holder renews the lock
every ``lease_s / 4`` seconds; a lock not renewed for ``lease_s`` seconds (its holder
died, on whatever node) or whose owner is gone (same host, process gone) is taken
over. Results stopped by a pruner, and candidates that
failed, are not stored (they are not the proxy's value); diverged runs are, with their
reason.

An entry is an :class:`~codesign.accuracy.proxy.Accuracy` as its own record says it
(with a format number; :func:`migrate` reads older records). An entry that cannot be
read (an emptied or truncated ``<key>.json``, garbage in ``<key>.msgpack``) is a cache
miss: :meth:`AccuracyCache.get` logs a warning naming the file and deletes the entry
while holding its lock, so the pair is evaluated again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, TypeVar

import jax
from flax import serialization

from codesign.accuracy.proxy import Accuracy
from codesign.stores import LEASE_S, Renewal, entries_at, holder, joined, lapsed
from codesign.outcome import Status

T = TypeVar("T")
log = logging.getLogger(__name__)  # "codesign.accuracy.cache": under the package's "codesign" logger


class CorruptEntry(ValueError):
    """A cache entry's files cannot be read back as an outcome."""


def cache_key(spec, compression, dataset, proxy, seed: int) -> str:
    """Digest of everything a proxy result depends on."""
    if compression is not None and compression.is_identity:
        compression = None
    fields = {"network": spec.to_dict(), "compression": None if compression is None else compression.to_dict(),
              "dataset": dataset.fingerprint, "proxy": proxy.describe(), "seed": int(seed)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


class AccuracyCache:
    """Proxy results shared by every trial, worker and restart of a run: in a folder, or under an object store
    URL."""

    def __init__(self, location: str | os.PathLike, poll_seconds: float = 0.2, lease_s: float = LEASE_S):
        self.entries = entries_at(location)
        self.poll_seconds = poll_seconds
        self.lease_s = lease_s
        self._renewals: dict[str, Renewal] = {}

    # --- reading and writing ----------------------------------------------------------------
    def get(self, key: str, with_weights: bool = True) -> Accuracy | None:
        """The stored result (``cached`` set), or None; an unreadable entry is discarded (None)."""
        try:
            return self._read(key, with_weights)
        except CorruptEntry as corrupt:
            return self._discard(key, with_weights, corrupt)

    def _read(self, key: str, with_weights: bool) -> Accuracy | None:
        """The entry as stored, None when there is none, or :class:`CorruptEntry`."""
        text = self.entries.read(f"{key}.json")
        if text is None:  # also: discarded by another worker since we looked
            return None
        result = _accuracy(text, self.entries.where(f"{key}.json"))
        weights = self.entries.read(f"{key}.msgpack") if with_weights else None
        if weights is not None:  # an entry without weights has no msgpack
            result = dataclasses.replace(result, weights=_weights(weights, self.entries.where(f"{key}.msgpack")))
        return result

    def _discard(self, key: str, with_weights: bool, corrupt: CorruptEntry) -> Accuracy | None:
        """Delete an unreadable entry under its lock (a miss: the pair is evaluated again). When another worker
        holds the lock, it is computing the pair and overwrites the entry: leave it."""
        if not self._claim(key):
            log.debug("%s; left to the worker holding %s", corrupt, self.entries.where(f"{key}.lock"))
            return None
        try:
            try:  # read again under the lock: another worker may have replaced it since we looked
                return self._read(key, with_weights)
            except CorruptEntry as still:
                corrupt = still
            log.warning("accuracy cache: %s; discarding the entry and evaluating again", corrupt)
            self.entries.remove(f"{key}.json")  # first: the entry's presence is its JSON
            self.entries.remove(f"{key}.msgpack")
            return None
        finally:
            self._release(key)

    def put(self, key: str, result: Accuracy, about: dict | None = None) -> None:
        """Store ``result`` (its record as JSON, its weights as Flax msgpack)."""
        if result.weights is not None:
            arrays = jax.device_get(result.weights)  # numpy leaves, same tree
            self.entries.write(f"{key}.msgpack", serialization.msgpack_serialize(arrays))
        else:  # no weights left over from an earlier (perhaps corrupt) entry: the files stay one entry
            self.entries.remove(f"{key}.msgpack")
        record = {"format": FORMAT, **result.to_record(), "about": about or {}, "written": time.time()}
        self.entries.write(f"{key}.json", json.dumps(record, sort_keys=True).encode())

    def __contains__(self, key: str) -> bool:
        return self.entries.exists(f"{key}.json")

    def __len__(self) -> int:
        return len(self.entries.names(".json"))

    # --- evaluate once ------------------------------------------------------------------
    def evaluate(self, pairs, dataset, proxy, seed: int = 0, reporters=None) -> list[Accuracy]:
        """The proxy's result for each pair: from the cache, or computed once and stored.

        The pairs nobody has computed or is computing are claimed (their locks) and
        computed together in one ``proxy.evaluate`` call; the others are read, or waited
        for, one by one.
        """
        reporters = list(reporters) if reporters is not None else [None] * len(pairs)
        keys = [cache_key(spec, policy, dataset, proxy, seed) for spec, policy in pairs]
        results: list[Accuracy | None] = [self.get(key) for key in keys]
        claimed = [i for i, key in enumerate(keys) if results[i] is None and self._claim(key)]
        try:
            for i in claimed:  # finished by another worker between our look and our claim
                results[i] = self.get(keys[i])
            todo = [i for i in claimed if results[i] is None]
            if todo:
                computed = proxy.evaluate([pairs[i] for i in todo], dataset, seed, [reporters[i] for i in todo])
                for i, result in zip(todo, computed):
                    self._keep(keys[i], result, pairs[i][0], proxy, seed)
                    results[i] = result
        finally:
            for i in claimed:
                self._release(keys[i])
        for i, result in enumerate(results):
            if result is None:  # another worker is computing it: wait for its result
                results[i] = self._wait_or_compute(keys[i], pairs[i], dataset, proxy, seed, reporters[i])
        return results

    def _wait_or_compute(self, key, pair, dataset, proxy, seed, reporter) -> Accuracy:
        def compute() -> Accuracy:
            result = proxy.evaluate([pair], dataset, seed, [reporter])[0]
            self._keep(key, result, pair[0], proxy, seed)
            return result
        return self.once(key, lambda: self.get(key), compute)

    def _keep(self, key: str, result: Accuracy, spec, proxy, seed: int) -> None:
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
                    self._release(key)
            time.sleep(self.poll_seconds)

    def _claim(self, key: str) -> bool:
        """Take ``<key>.lock`` (renewed in the background until :meth:`_release`), or False when another worker
        holds it; a lock whose holder is gone is removed, for the next look to take."""
        name = f"{key}.lock"
        if not self.entries.create(name, holder()):
            if self._stale(name):
                self.entries.remove(name)
            return False
        self._renewals[key] = Renewal(self.entries, name, holder, self.lease_s)
        return True

    def _release(self, key: str) -> None:
        renewal = self._renewals.pop(key, None)
        if renewal is not None:  # no renewal may land after the removal
            renewal.stop()
        self.entries.remove(f"{key}.lock")

    def _stale(self, name: str) -> bool:
        text, age = self.entries.read(name), self.entries.age(name)
        if text is None or age is None:
            return False  # gone since we looked
        try:
            owner = json.loads(text or b"{}")
        except ValueError:
            owner = {}
        if not owner:  # being written right now, or its writer failed (a full disk): it had seconds to write
            return age > UNWRITTEN_LOCK_SECONDS
        return lapsed(owner, self.lease_s)


#: A lock file still without its owner after this long was left by a writer that failed (its owner is a few
#: bytes written right after the exclusive create).
UNWRITTEN_LOCK_SECONDS = 30.0


#: The format of an entry's JSON record.
FORMAT = 2


def migrate(record: dict) -> dict:
    """An entry's record in the current format. Format 1 (no ``format`` field) called a complete result ``ok``."""
    if "format" not in record and record.get("status") == "ok":
        record = {**record, "status": Status.COMPLETE.value}
    return record


def _accuracy(text: bytes, path: str) -> Accuracy:
    """An entry's JSON record as a result (no weights), or :class:`CorruptEntry` naming ``path``."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"it holds {type(data).__name__}, not a record")
        result = Accuracy.from_record(migrate(data))
    except ValueError as error:  # also json's and utf-8's errors
        raise CorruptEntry(f"entry {path} is unreadable ({error})") from None
    return dataclasses.replace(result, cached=True)


def _weights(data: bytes, path: str) -> dict:
    """An entry's trained variables (Flax msgpack ``data`` read from ``path``), or :class:`CorruptEntry` naming
    ``path``."""
    try:
        variables = serialization.msgpack_restore(data)
    except Exception as error:  # msgpack and flax raise several kinds on garbage
        raise CorruptEntry(f"entry {path} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(variables, dict):
        raise CorruptEntry(f"entry {path} is unreadable (it holds a value of type {type(variables).__name__}, "
                           f"not variables)")
    return variables


def once_per_process(memo: dict[str, T], key: str, folder: str | Path | None, load: Callable[[], T | None],
                     make: Callable[[], T], save: Callable[[T], None]) -> T:
    """``memo[key]``: this process's value; else the one stored in ``folder`` (``load``); else ``make()``'s,
    saved there, by exactly one worker (:meth:`AccuracyCache.once`). Without a folder it is made and kept in
    this process only. A trained supernet or fitted predictor is read or made once per process this way."""
    if key not in memo:
        def make_and_save() -> T:
            value = make()
            if folder is not None:
                save(value)
            return value
        memo[key] = make_and_save() if folder is None else AccuracyCache(folder).once(key, load, make_and_save)
    return memo[key]


#: The file a one-off training (a supernet) writes its progress to, beside what it will store.
PROGRESS_SUFFIX = ".progress.json"


class OneOffProgress:
    """How far a one-off training has got, in ``<folder>/<key>.progress.json``, for the driver's progress bar (the
    training runs in a Ray worker, whose output the driver does not show). Written at most every ``every_s``
    seconds, and at the last step."""

    def __init__(self, folder: str | Path, key: str, what: str, epochs: float | None = None, every_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.entries, self.name = entries_at(folder), f"{key}{PROGRESS_SUFFIX}"
        self.what, self.epochs, self.every_s, self.clock = what, epochs, every_s, clock
        self.started = self.written = clock()
        self.first_step = None  # when step 1 ended: the time per step is measured from there (step 1 compiles)

    def __call__(self, step: int, steps: int, loss=None) -> None:
        """At ``step`` of ``steps`` (0: before the first, while it compiles); ``loss``: the latest loss (a scalar
        or array, read only when written)."""
        now = self.clock()
        if step == 1:
            self.first_step = now
        if 0 < step < steps and now - self.written < self.every_s:
            return
        self.written = now
        per_step = (now - self.first_step) / (step - 1) if self.first_step is not None and step > 1 else None
        record = {"what": self.what, "step": step, "steps": steps, "epochs": self.epochs,
                  "elapsed_s": now - self.started,
                  "eta_s": None if per_step is None else per_step * (steps - step), "done": step >= steps,
                  "loss": None if loss is None else float(jax.numpy.ravel(loss)[0]), "updated": time.time()}
        self.entries.write(self.name, json.dumps(record).encode())


#: The sub-folders of an accuracy cache where one-off trainings keep what they make (and their progress).
ONE_OFF_FOLDERS = ("supernets", "predictors")


def one_offs_in_progress(location: str | os.PathLike, since: float = 0.0) -> list[dict]:
    """The progress records under ``location`` (an accuracy cache's folder or URL) of one-off trainings not done
    yet, updated after ``since`` (a time.time()); unreadable or half-written records are skipped."""
    found = []
    for sub in ONE_OFF_FOLDERS:
        entries = entries_at(joined(location, sub))
        for name in sorted(entries.names(PROGRESS_SUFFIX)):
            try:
                record = json.loads(entries.read(name) or b"null")
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and not record.get("done") and record.get("updated", 0) >= since:
                found.append(record)
    return found


def describe_progress(record: dict) -> str:
    """``supernet epoch 3.0/20 (120/800 steps), loss 1.93, 4.2 min left`` from a progress record."""
    text = f"{record['what']} {record['step']}/{record['steps']} steps"
    if record.get("epochs"):
        epoch = record["epochs"] * record["step"] / record["steps"]
        text = f"{record['what']} epoch {epoch:.1f}/{record['epochs']:g} ({record['step']}/{record['steps']} steps)"
    if record["step"] == 0:
        return text + ", compiling"
    if record.get("loss") is not None:
        text += f", loss {record['loss']:.3g}"
    if record.get("eta_s") is not None:
        eta = record["eta_s"]
        text += f", {eta / 60:.1f} min left" if eta >= 90 else f", {eta:.0f} s left"
    return text
