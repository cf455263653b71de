"""A real PostgreSQL server, run as a child process, for tests and benchmarks of several replicas.

Leases rest on PostgreSQL's row locks (``FOR UPDATE SKIP LOCKED``) and its isolation, which
SQLite does not have, so the tests run Debian's ``postgresql`` package rather than a fake: initdb
into a throwaway directory, ``postgres`` on a free 127.0.0.1 port with its socket in that
directory and fsync off (the data is thrown away anyway). PostgreSQL refuses to run as root, and
CI runs as root, so then both run as the ``postgres`` user (the child drops to it itself, like
``runuser -u postgres``, but without a wrapper in between that would not pass on the shutdown
signal).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["PostgresError", "PostgresNotInstalledError", "PostgresServer", "find_bin_dir"]

BIN_ENV = "GUARD_POSTGRES_BIN"
USER = "postgres"


class PostgresError(RuntimeError):
    """PostgreSQL could not be started or used."""


class PostgresNotInstalledError(PostgresError):
    """No PostgreSQL binaries; a distinct type so callers can skip, not fail."""


def find_bin_dir() -> Path:
    """GUARD_POSTGRES_BIN, else the newest /usr/lib/postgresql/*/bin with initdb in it."""
    configured = os.environ.get(BIN_ENV)
    candidates = [configured] if configured else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )  # fmt: skip
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise PostgresNotInstalledError(
        "PostgreSQL not found in /usr/lib/postgresql/*/bin: install Debian's postgresql package "
        f"(apt-get install postgresql) or point {BIN_ENV} at the directory holding initdb"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway cluster; `create_database()` hands each test a fresh, empty database."""

    def __init__(self, *, ready_timeout_seconds: float = 60.0) -> None:
        self.ready_timeout_seconds = ready_timeout_seconds
        self.port = _free_port()
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        """A `postgresql://` URL as users write it in `store.url`."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        bin_dir = find_bin_dir()
        self._dir = Path(tempfile.mkdtemp(prefix="guard-postgres-"))
        data = self._dir / "data"
        as_user = self._as_postgres()
        if as_user:
            shutil.chown(self._dir, USER, USER)
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
             "-E", "UTF8", "--no-sync"],
            capture_output=True,
            **as_user,
        )  # fmt: skip
        if init.returncode != 0:
            raise PostgresError(f"initdb failed: {init.stderr.decode(errors='replace')}")
        self._log = (self._dir / "postgres.log").open("ab")
        self._proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self._dir), "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **as_user,
        )  # fmt: skip
        self._wait_ready()
        return self.admin_url

    def _as_postgres(self) -> dict[str, Any]:
        """Popen arguments that run the child as `postgres` when we are root."""
        if os.geteuid() != 0:
            return {}
        return {"user": USER, "group": USER, "extra_groups": [], "cwd": self._dir}

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.ready_timeout_seconds
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PostgresError(f"postgres exited: {self.log_tail()}")
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise PostgresError(f"postgres not ready after {self.ready_timeout_seconds}s")

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its `postgresql://` URL."""
        import psycopg

        name = name or f"guard_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, size: int = 4000) -> str:
        if self._dir is None:
            return ""
        try:
            return (self._dir / "postgres.log").read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # fast shutdown: do not wait for clients
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
