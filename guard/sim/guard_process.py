"""Run `guard serve` as a real child process, so tests and the demo can stop and restart it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from guard.tokens import new_token, token_digest

TERMINAL = ("promoted", "rolled_back", "aborted", "failed", "refused")
ADMIN = "guard-process"
ALL_SCOPES = ("deploy", "operate", "read")

# A zygote imports everything `guard serve` needs once, then forks a fresh guard per line on its
# stdin and answers with the child's pid; children are reaped by the kernel (SIGCHLD ignored).
ZYGOTE = """
import os, signal, sys
import guard.api, guard.cli
log_path, args = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        try:
            guard.cli.app(args)
        finally:
            os._exit(0)
    sys.stdout.write(f"{pid}\\n")
    sys.stdout.flush()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Forked:
    """A guard forked by the zygote: what the rest of GuardProcess uses of a Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            self.returncode = -1  # reaped by the kernel; its status is not ours to read
        return self.returncode

    def send_signal(self, sig: signal.Signals) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return -1


class GuardProcess:
    """`python -m guard serve --config FILE` on a free port; its log goes to a file.

    It gives the guard API tokens through the `GUARD_AUTH__TOKENS` environment override (which
    replaces any `auth.tokens` of the file): `guard-process` with every scope, used by `client()`
    and `env()`, plus `tokens` (name -> scopes) for tests of narrower ones, in `self.tokens`.
    """

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *,
        port: int | None = None,
        tokens: Mapping[str, Sequence[str]] | None = None,
        standby: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        """`standby`: fork each guard from a process that has already imported the guard, so
        a restart after `kill()` costs the guard's start-up, not the interpreter's imports
        (the crash test restarts it dozens of times). The guard itself is still a new process
        running `guard serve`, and SIGKILL still ends it with nothing flushed or closed.
        """
        self.start_timeout = start_timeout
        self.config_path = config_path
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.standby = standby
        self._process: subprocess.Popen[bytes] | _Forked | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._scopes = {ADMIN: list(ALL_SCOPES), **{k: list(v) for k, v in (tokens or {}).items()}}
        self.tokens = {name: new_token() for name in self._scopes}
        self.token = self.tokens[ADMIN]

    def _args(self) -> list[str]:
        return ["serve", "--config", str(self.config_path), "--port", str(self.port)]

    def _spawn(self) -> subprocess.Popen[bytes] | _Forked:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GUARD_AUTH__TOKENS": self._tokens_yaml()}
        if not self.standby:
            with self.log_path.open("ab") as log:
                return subprocess.Popen(
                    [sys.executable, "-m", "guard", *self._args()],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
        if self._zygote is None or self._zygote.poll() is not None:
            with self.log_path.open("ab") as log:
                self._zygote = subprocess.Popen(
                    [sys.executable, "-c", ZYGOTE, str(self.log_path), *self._args()],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                )
        assert self._zygote.stdin is not None and self._zygote.stdout is not None
        self._zygote.stdin.write(b"fork\n")
        self._zygote.stdin.flush()
        line = self._zygote.stdout.readline()
        if not line:
            raise RuntimeError(f"guard zygote exited: {self.log_tail()}")
        return _Forked(int(line))

    def start(self, timeout: float | None = None) -> str:
        timeout = timeout or self.start_timeout
        self._process = self._spawn()
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

    @property
    def returncode(self) -> int | None:
        """The exit status once the guard has ended, else None (Popen's: -N for signal N; -1
        for a `standby` guard, whose status its zygote's kernel reaps)."""
        return self._process.poll() if self._process is not None else None

    def wait(self, timeout: float) -> int:
        """Wait for the guard to end by itself; its exit status (see `returncode`)."""
        assert self._process is not None, "not started"
        return self._process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, as when a node dies."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM; a zygote (with `standby`) goes too."""
        self._signal(signal.SIGTERM)
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.kill()
            zygote.wait()
            for pipe in (zygote.stdin, zygote.stdout):
                if pipe is not None:
                    pipe.close()

    def hangup(self) -> None:
        """SIGHUP: the guard reloads its config file."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(sig)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _tokens_yaml(self) -> str:
        entries = [
            {"name": name, "sha256": token_digest(self.tokens[name]), "scopes": scopes}
            for name, scopes in self._scopes.items()
        ]
        return yaml.safe_dump(entries, default_flow_style=True, width=10**6).strip()

    def client(self, token: str | None = None) -> httpx.Client:
        """An API client sending `token` (default: the all-scopes one)."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, timeout=10, headers=headers)

    def env(self) -> dict[str, str]:
        """The environment for a `guard` CLI subprocess talking to this guard."""
        return {**os.environ, "GUARD_TOKEN": self.token}

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
