"""Run `guard serve` as a real child process, so tests and the demo can stop and restart it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("promoted", "rolled_back", "aborted", "failed", "refused")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GuardProcess:
    """`python -m guard serve --config FILE` on a free port; its log goes to a file."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *,
        port: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.start_timeout = start_timeout
        self.config_path = config_path
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float | None = None) -> str:
        timeout = timeout or self.start_timeout
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guard",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"guard exited with {code}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()  # not left running: a failed __enter__ gets no __exit__
        raise TimeoutError(f"guard not ready after {timeout}s: {self.log_tail()}")

    @property
    def pid(self) -> int | None:
        """The running process's id (part of its replica id, hostname-pid-random)."""
        return self._process.pid if self._process is not None else None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, as when a node dies."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(sig)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def wait_for(
        self, rollout_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll the API until the rollout reaches one of `states`; return it."""
        deadline = time.monotonic() + timeout
        rollout: dict[str, Any] = {}
        with self.client() as client:
            while time.monotonic() < deadline:
                rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
                if rollout.get("state") in states:
                    return rollout
                time.sleep(0.2)
        raise TimeoutError(f"rollout {rollout_id} not in {states} after {timeout}s: {rollout}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> GuardProcess:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
