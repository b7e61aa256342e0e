"""Real servers for the tests that need one, started from a wheel on 127.0.0.1 and stopped by PID.

:func:`start_postgres` runs PostgreSQL from the binaries the ``pgserver`` wheel ships
(``initdb`` and ``pg_ctl``, not pgserver's own manager, which listens on a Unix socket with
no password): a fresh data folder, a free port on the loopback address only, and
password authentication (SCRAM) for one user, so the tests see what a real server
checks. As root, the server runs as ``nobody`` (PostgreSQL refuses to run as root).
:func:`start_s3` runs moto's S3-compatible server (``moto[server]``) in its own process.
:func:`free_port` is a loopback port nothing listens on; :func:`files_holding` finds a
secret in a folder's files.

This module asserts nothing itself: ``test_postgres.py`` and ``test_object_store.py`` check
that each server listens on 127.0.0.1 only and answers with the credentials given here.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Postgres:
    """A running server: where it listens, its one user and password, and its postmaster's PID."""

    port: int
    user: str
    password: str
    pid: int
    data: Path
    binaries: Path
    folder: Path

    def url(self, database: str = "postgres") -> str:
        """The server's URL, without the password (which the client reads from PGPASSWORD)."""
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database: its URL."""
        import psycopg

        with psycopg.connect(host=LOOPBACK, port=self.port, user=self.user, password=self.password,
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (free once the probe closes)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def files_holding(folder: Path, secret: str) -> list[Path]:
    """The files under ``folder`` whose bytes contain ``secret``."""
    return [path for path in folder.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def _run_as() -> dict:
    return {"user": "nobody"} if os.geteuid() == 0 else {}


def _binaries(folder: Path) -> Path:
    """pgserver's binaries, copied under ``folder`` when the server's user cannot reach them where pip put them."""
    import pgserver

    installed = Path(pgserver.__file__).parent / "pginstall"
    if not _run_as():
        return installed
    probe = subprocess.run([str(installed / "bin" / "postgres"), "--version"], capture_output=True, **_run_as())
    if probe.returncode == 0:
        return installed
    copy = folder / "pginstall"
    shutil.copytree(installed, copy)
    return copy


def start_postgres() -> Postgres:
    """A PostgreSQL server on 127.0.0.1 with a new data folder in a temporary folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="codesign-postgres-"))
    folder.chmod(0o755)  # the server's user (nobody, as root) reaches its data and socket folders
    binaries = _binaries(folder)
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    password = secrets.token_hex(12)
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    if _run_as():
        for path in (folder, password_file, sockets):
            shutil.chown(path, "nobody")
    run = dict(capture_output=True, text=True, timeout=120, **_run_as())
    _checked(subprocess.run([str(binaries / "bin" / "initdb"), "-D", str(data), "-U", "codesign", "--auth=scram-sha-256",
                    f"--pwfile={password_file}", "--encoding=UTF8", "--no-sync"], **run))
    password_file.unlink()
    port = free_port()
    _checked(subprocess.run([str(binaries / "bin" / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(folder / "log"),
                    "-o", f"-h {LOOPBACK} -p {port} -k {sockets} -c fsync=off", "start"], **run), folder / "log")
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    return Postgres(port=port, user="codesign", password=password, pid=pid, data=data, binaries=binaries,
                    folder=folder)


def stop_postgres(server: Postgres) -> None:
    """Stop the server this test run started (a fast shutdown; killed by its PID if that fails)."""
    try:
        subprocess.run([str(server.binaries / "bin" / "pg_ctl"), "-D", str(server.data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60, check=True, **_run_as())
    except (subprocess.SubprocessError, OSError):
        try:
            os.kill(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(server.folder, ignore_errors=True)


def _checked(done: subprocess.CompletedProcess, log: Path | None = None) -> None:
    if done.returncode:
        server_log = log.read_text() if log is not None and log.is_file() else ""
        raise RuntimeError(f"{done.args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}{server_log}")


@dataclasses.dataclass(frozen=True)
class S3:
    """A running S3-compatible server: its endpoint, the credentials its clients use, and its PID."""

    endpoint: str
    key: str
    secret: str
    process: subprocess.Popen

    def environment(self) -> dict[str, str]:
        """What an S3 client reads: the endpoint and the credentials."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1"}

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                     aws_secret_access_key=self.secret, region_name="us-east-1").create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                              aws_secret_access_key=self.secret, region_name="us-east-1")
        return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def start_s3() -> S3:
    """moto's S3 server on a free port of 127.0.0.1, answering once this returns."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
            time.sleep(0.1)
    return S3(endpoint=endpoint, key="codesign-test", secret=secrets.token_hex(16), process=process)


def stop_s3(server: S3) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
