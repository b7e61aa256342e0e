"""Where a run's artifacts (trained weights, cost reports, finalized weights) live: a local folder, or an
object store given as a URL such as ``s3://bucket/prefix``.

* :func:`open_artifact_store`: Optuna's ``FileSystemArtifactStore`` for a folder (:class:`FolderArtifactStore`,
  which also names its folder); for a URL,
  :class:`FsspecArtifactStore`, Optuna's artifact-store protocol on an fsspec file system
  (s3fs for ``s3://``), under the URL's prefix, so several runs share a bucket (Optuna's
  ``Boto3ArtifactStore`` writes at a bucket's root). The driver checks a store it will
  write to by writing, reading and removing a probe before the first trial.
* Credentials never travel in the URL: they come from the object store client's own
  sources (for S3: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
  ``~/.aws/credentials``; an S3-compatible server's address from ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from codesign.stores import StoreEntries, is_url

#: Where an object store's credentials come from, for messages.
CREDENTIAL_SOURCES = ("the object store client's own environment or files (S3: AWS_ACCESS_KEY_ID and "
                      "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials; AWS_ENDPOINT_URL for an "
                      "S3-compatible server)")


def location_problem(location) -> str | None:
    """What makes ``location`` unusable as a run's artifact store (not a path or URL, credentials in the
    URL, an unknown protocol), or None."""
    if not isinstance(location, (str, os.PathLike)):
        return f"must be a folder or an object store URL such as s3://bucket/prefix, got {location!r}"
    if not is_url(location):
        return None
    protocol, _, rest = location.partition("://")
    if "@" in rest.split("/", 1)[0]:
        return f"the URL holds credentials; give them in {CREDENTIAL_SOURCES} instead"
    import fsspec

    if protocol not in fsspec.available_protocols():
        return f"unknown protocol {protocol!r}; fsspec knows {', '.join(sorted(fsspec.available_protocols()))}"
    if not rest.strip("/"):
        return "the URL names no bucket"
    return None


def shown_location(location) -> str:
    """``location`` as messages show it: credentials in a URL (``scheme://user:key@bucket``) replaced by ``***``."""
    if not is_url(location):
        return str(location)
    protocol, _, rest = location.partition("://")
    host, slash, path = rest.partition("/")
    return f"{protocol}://***@{host.rsplit('@', 1)[1]}{slash}{path}" if "@" in host else location


class FolderArtifactStore(FileSystemArtifactStore):
    """Optuna's ``FileSystemArtifactStore``, which also says which folder it is (for messages)."""

    def __init__(self, folder: str | os.PathLike):
        super().__init__(str(Path(folder)))
        self.folder = Path(folder)


class FsspecArtifactStore:
    """Optuna's artifact-store protocol (``open_reader``, ``write``, ``remove``) on an fsspec URL prefix."""

    def __init__(self, url: str):
        self.entries = StoreEntries(url)
        self.url = self.entries.url

    def open_reader(self, artifact_id: str) -> BinaryIO:
        data = self.entries.read(artifact_id)
        if data is None:
            raise ArtifactNotFound(f"{self.url}/{artifact_id}: no such artifact")
        return io.BytesIO(data)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.entries.write(artifact_id, content_body.read())

    def remove(self, artifact_id: str) -> None:
        if not self.entries.remove(artifact_id):
            raise ArtifactNotFound(f"{self.url}/{artifact_id}: no such artifact")


def open_artifact_store(location: str | os.PathLike, check_writes: bool = False, field: str = "artifacts"):
    """The artifact store at ``location`` (a folder or an object store URL).

    ``check_writes``, for the store a run writes to: a folder is created; an object store
    gets a probe written, read back and removed, and one that cannot is a ValueError naming
    it as the experiment's ``field`` (the object store's own reason, never a credential).
    """
    problem = location_problem(location)
    if problem:
        raise ValueError(f"{field} {shown_location(location)}: {problem}")
    if not is_url(location):
        if check_writes:
            Path(location).mkdir(parents=True, exist_ok=True)
        return FolderArtifactStore(location)
    try:
        store = FsspecArtifactStore(str(location))
    except ImportError as error:  # fsspec names the package its protocol needs
        raise ValueError(f"{field} {location}: {error} (for S3: pip install -e '.[s3]')") from None
    if check_writes:
        probe = f".codesign-probe-{uuid.uuid4().hex}"
        try:
            store.write(probe, io.BytesIO(b"probe"))
            if store.open_reader(probe).read() != b"probe":
                raise OSError("the probe read back differs from what was written")
            store.remove(probe)
        except Exception as error:  # noqa: BLE001 - every client's errors: one line naming the store
            text = str(error).strip().splitlines()
            raise ValueError(f"{field} {location}: the object store cannot be written ({type(error).__name__}: "
                             f"{text[0] if text else ''}); credentials come from {CREDENTIAL_SOURCES}") from None
    return store


def describe_artifact(store, artifact_id: str) -> str:
    """Where an artifact is, for messages: its path in a folder or its URL in an object store (an artifact id
    alone for a store of neither kind)."""
    if isinstance(store, FsspecArtifactStore):
        return f"{store.url}/{artifact_id}"
    if isinstance(store, FolderArtifactStore):
        return str(store.folder / artifact_id)
    return artifact_id


#: The stores a run's artifacts are in.
ArtifactStore = FolderArtifactStore | FsspecArtifactStore
