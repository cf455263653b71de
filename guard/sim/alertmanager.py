"""A real Alertmanager (Debian's `prometheus-alertmanager`), run as a child process for tests.

The guard's Alertmanager channel is only right if the real server accepts its alerts, shows them
under the labels users route on, and treats `endsAt` as the resolve: a fake would accept
anything. Clustering is switched off (`--cluster.listen-address=`) so parallel tests never
gossip with each other, and the storage lives in a temp directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

DEFAULT_BINARY = "/usr/bin/prometheus-alertmanager"
BINARY_ENV = "GUARD_ALERTMANAGER_BIN"


class AlertmanagerNotInstalledError(RuntimeError):
    """The binary is missing; a distinct type so callers can say how to install it."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def resolve_binary() -> str:
    candidate = os.environ.get(BINARY_ENV) or DEFAULT_BINARY
    path = candidate if os.sep in candidate else shutil.which(candidate)
    if path is None or not os.access(path, os.X_OK):
        raise AlertmanagerNotInstalledError(
            f"Alertmanager not found at {candidate!r}: apt-get install prometheus-alertmanager "
            f"(scripts/bootstrap does) or point {BINARY_ENV} at a binary"
        )
    return path


class AlertmanagerServer:
    """One Alertmanager on 127.0.0.1; `webhook_url` (optional) receives its notifications."""

    def __init__(self, *, webhook_url: str | None = None, ready_timeout: float = 30.0) -> None:
        self.webhook_url = webhook_url
        self.ready_timeout = ready_timeout
        self.port: int | None = None
        self.data_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("Alertmanager has not been started")
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        """Group nothing and wait for nothing, so notifications follow alerts within a second."""
        receiver: dict[str, Any] = {"name": "default"}
        if self.webhook_url:
            receiver["webhook_configs"] = [{"url": self.webhook_url, "send_resolved": True}]
        return {
            "route": {
                "receiver": "default",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }

    def start(self) -> str:
        binary = resolve_binary()
        self.data_dir = Path(tempfile.mkdtemp(prefix="guard-alertmanager-"))
        config_file = self.data_dir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        for attempt in range(3):
            self.port = _free_port()
            self._spawn(binary, config_file)
            try:
                self._wait_ready()
                return self.url
            except RuntimeError:
                self._stop_process()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, binary: str, config_file: Path) -> None:
        assert self.data_dir is not None
        self._log = (self.data_dir / "alertmanager.log").open("ab")
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.path={self.data_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self._proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"alertmanager not ready after {self.ready_timeout}s")

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts`: the alerts Alertmanager holds as active (not yet ended)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", params=filters, timeout=5)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def wait_for_alerts(self, condition: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.alerts()
            if condition(current):
                return current
            time.sleep(0.1)
        raise TimeoutError(f"alertmanager alerts never matched: {self.alerts()}")

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._stop_process()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> AlertmanagerServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
