"""A local HTTP endpoint that records what the guard posts to it: a stand-in for Slack,
PagerDuty or a webhook consumer in tests and `guard demo`.

It can go down and come back on the same port (to test retries) and answer with a chosen
status; it keeps every request, so tests can prove that nothing was sent twice.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 resets a burst of alerts


class AlertReceiver:
    """`start()` / `stop()` keep the port, so a stop then start looks like an outage."""

    def __init__(self, *, status: int = 200, port: int | None = None) -> None:
        self.status = status
        self.delay_seconds = 0.0  # answer this late, to play a slow receiver
        self.port = port or _free_port()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                answer = json.dumps({"status": receiver.status, "path": self.path}).encode()
                with contextlib.suppress(ConnectionError):  # the client gave up waiting
                    self.send_response(receiver.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(
        self, condition: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        """Poll until `condition(requests)` holds; return the requests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.requests()
            if condition(seen):
                return seen
            time.sleep(0.05)
        raise TimeoutError(f"condition not met after {timeout}s; received: {self.requests()}")

    def __enter__(self) -> AlertReceiver:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
