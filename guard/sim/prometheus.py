"""A real Prometheus server, run as a child process, for tests and ``guard demo``.

Deploy Guard decides on real PromQL results, so tests run the real binary (Debian's
``prometheus`` package) instead of a mock: ``rate()`` extrapolation, staleness markers and
``histogram_quantile`` interpolation are exactly the behaviours a fake would get wrong.

Query lookback: Prometheus' default ``--query.lookback-delta`` is 5 minutes, which would
keep a vanished pod's last sample visible to instant queries for minutes. Tests scrape
every second and want to see changes within seconds, so the lookback defaults to five
scrape intervals (never below 5 s). Staleness markers still end series from a target that
stays up; the lookback only matters when a whole target or Prometheus itself went away.

Startup latency: Prometheus 2.42 applies scrape target updates on a fixed 5 s ticker (no
flag to change it), so the first samples arrive ~5 s after start(), resume() or a target
change, whatever the scrape interval. Wait with wait_for_series(), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

__all__ = ["PrometheusError", "PrometheusNotInstalledError", "PrometheusServer"]

log = logging.getLogger(__name__)

DEFAULT_BINARY = "/usr/bin/prometheus"
BINARY_ENV = "GUARD_PROMETHEUS_BIN"
_LOG_TAIL_BYTES = 4000


class PrometheusError(RuntimeError):
    """Prometheus could not be started, stopped or queried."""


class PrometheusNotInstalledError(PrometheusError):
    """The Prometheus binary is missing; a distinct type so callers can skip, not fail."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _duration(seconds: float) -> str:
    """Prometheus durations take integer units only, so express them in milliseconds."""
    return f"{max(1, round(seconds * 1000))}ms"


def resolve_binary() -> str:
    """Find the binary at start time so GUARD_PROMETHEUS_BIN can be set late (e.g. by tests)."""
    candidate = os.environ.get(BINARY_ENV) or DEFAULT_BINARY
    path = candidate if os.sep in candidate else shutil.which(candidate)
    if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise PrometheusNotInstalledError(
            f"Prometheus binary not found at {candidate!r}: install Debian's prometheus "
            f"package (apt-get install prometheus) or point {BINARY_ENV} at a binary"
        )
    return path


class PrometheusServer:
    """One Prometheus process bound to 127.0.0.1, with a throwaway or caller-owned TSDB.

    The port and data directory survive pause()/resume() and restart() so tests can take
    Prometheus away mid-rollout and check that the guard copes with the gap.
    """

    def __init__(
        self,
        scrape_targets: Sequence[str],
        scrape_interval_seconds: float = 1.0,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        lookback_delta_seconds: float | None = None,
        ready_timeout_seconds: float = 30.0,
        job_name: str = "workload",
    ) -> None:
        if scrape_interval_seconds <= 0:
            raise ValueError("scrape_interval_seconds must be positive")
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval_seconds = scrape_interval_seconds
        self.lookback_delta_seconds = (
            lookback_delta_seconds
            if lookback_delta_seconds is not None
            else max(5.0, 5 * scrape_interval_seconds)
        )
        self.ready_timeout_seconds = ready_timeout_seconds
        self.job_name = job_name
        self._owns_dir = data_dir is None
        self._data_dir: Path | None = None if data_dir is None else Path(data_dir)
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port is None:
            raise PrometheusError("Prometheus has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        return None if self._data_dir is None else self._data_dir / "prometheus.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> str:
        """Start (or resume) Prometheus and return its base URL once /-/ready answers 200."""
        if self.running:
            return self.url
        binary = resolve_binary()
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="guard-prometheus-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        # Another process may grab a port between probing and Prometheus binding it (pytest
        # -n); retry with a fresh port, but only when the port is not pinned by a restart.
        attempts = 1 if self._port is not None else 3
        for attempt in range(attempts):
            if attempt > 0 or self._port is None:
                self._port = _free_port()
            self._spawn(binary)
            try:
                self._wait_ready()
                return self.url
            except PrometheusError as exc:
                self._stop_process()
                if attempt + 1 < attempts and "address already in use" in str(exc):
                    log.info("port %s taken, retrying on another port", self._port)
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop Prometheus; a temp data dir created by start() is deleted with it."""
        self._stop_process()
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._port = None

    def pause(self) -> None:
        """Stop the process but keep port and TSDB, so resume() looks like an outage."""
        self._stop_process()

    def resume(self) -> str:
        if self._port is None:
            raise PrometheusError("resume() needs a server that was started before")
        return self.start()

    def restart(self) -> str:
        self.pause()
        return self.resume()

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_scrape_targets(self, targets: Sequence[str]) -> None:
        """Change targets in place: workloads often get their port after Prometheus started."""
        self.scrape_targets = list(targets)
        if self._data_dir is not None:
            self._write_config()
        if self.running:
            resp = httpx.post(f"{self.url}/-/reload", timeout=10)
            if resp.status_code != 200:
                raise PrometheusError(f"config reload failed: {resp.status_code} {resp.text}")

    # -- queries ------------------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query returning the raw ``data.result`` list (vector) or ``[value]``."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        resp = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {resp.status_code} {body}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for_series(self, promql: str, timeout: float = 30) -> None:
        """Poll until ``promql`` returns a non-empty vector; callers encode conditions as
        PromQL filters (``expr > 0``) so one helper covers "exists" and "has reached"."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                if self.query(promql):
                    return
                last = "empty result"
            except (httpx.HTTPError, PrometheusError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no series for {promql!r} after {timeout}s (last: {last})")
            time.sleep(min(0.1 * self.scrape_interval_seconds, 0.2))

    # -- internals ----------------------------------------------------------------------

    def _write_config(self) -> None:
        assert self._data_dir is not None
        interval = _duration(self.scrape_interval_seconds)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": self.job_name,
                    "honor_labels": True,
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": list(self.scrape_targets)}],
                }
            ],
        }
        tmp = self._data_dir / "prometheus.yml.tmp"
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(self._data_dir / "prometheus.yml")

    def _spawn(self, binary: str) -> None:
        assert self._data_dir is not None and self.log_path is not None
        args = [
            binary,
            f"--config.file={self._data_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self._data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            f"--query.lookback-delta={_duration(self.lookback_delta_seconds)}",
        ]
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"\n--- {time.ctime()}: {' '.join(args)}\n".encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_seconds
        url = f"http://127.0.0.1:{self._port}/-/ready"
        with httpx.Client(timeout=1.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise PrometheusError(
                        f"prometheus exited with code {code} during startup; "
                        f"log tail:\n{self._log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise PrometheusError(
                        f"prometheus not ready after {self.ready_timeout_seconds}s; "
                        f"log tail:\n{self._log_tail()}"
                    )
                time.sleep(0.05)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with self.log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode(errors="replace")

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("prometheus ignored SIGTERM; killing it")
                proc.kill()
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
