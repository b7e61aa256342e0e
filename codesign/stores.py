"""Object store URLs (``s3://bucket/prefix``, any fsspec protocol) as the run's artifact store and accuracy
cache use them: telling a URL from a folder, and a client with bounded waits. A leaf module (fsspec is
imported when a client is made), so both the results side and the accuracy room can use it.
"""

from __future__ import annotations

#: Seconds an object store has to answer a request (connecting, then reading) before it counts as unreachable.
TIMEOUT_S = 10


def is_url(location) -> bool:
    """An object store URL (``s3://bucket/prefix``), not a folder."""
    return isinstance(location, str) and "://" in location


def object_store(url: str):
    """``(file system, root path)`` of an fsspec URL: a new client (the environment's endpoint and credentials now),
    with bounded waits for S3, so an unreachable store is an error, not a hang."""
    import fsspec

    options = {"skip_instance_cache": True}
    if url.startswith("s3://"):
        options["config_kwargs"] = {"connect_timeout": TIMEOUT_S, "read_timeout": TIMEOUT_S,
                                    "retries": {"max_attempts": 2}}
    return fsspec.core.url_to_fs(url, **options)
