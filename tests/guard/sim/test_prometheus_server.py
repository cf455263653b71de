"""PrometheusServer runs the real binary: start, scrape, survive restarts, fail clearly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import start_wsgi_server

from guard.sim.prometheus import (
    PrometheusError,
    PrometheusNotInstalledError,
    PrometheusServer,
    resolve_binary,
)


def _prometheus_available() -> bool:
    try:
        resolve_binary()
    except PrometheusNotInstalledError:
        return False
    return True


needs_prometheus = pytest.mark.skipif(
    not _prometheus_available(), reason="install Debian's prometheus package"
)


@pytest.fixture
def target() -> Iterator[str]:
    """A static scrape target whose sample carries its own ``job`` label."""
    registry = CollectorRegistry()
    counter = Counter("guard_test", "test counter", ["job"], registry=registry)
    counter.labels(job="from_target").inc(3)
    server, _ = start_wsgi_server(0, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def count_at(prom: PrometheusServer, at: float) -> float:
    result = prom.query("count_over_time(guard_test_total[1h])", at=at)
    return float(result[0]["value"][1]) if result else 0.0


@needs_prometheus
def test_scrapes_and_restart_keeps_port_and_data(target: str) -> None:
    with PrometheusServer([], scrape_interval_seconds=1.0) as prom:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", prom.url)
        url, data_dir = prom.url, prom.data_dir
        assert data_dir is not None and (data_dir / "prometheus.yml").exists()
        prom.set_scrape_targets([target])  # hot reload via the lifecycle API
        # honor_labels: the target's own job label wins over the scrape job's name
        prom.wait_for_series('guard_test_total{job="from_target"} == 3', 15)
        prom.wait_for_series('up{job="workload"} == 1', 15)
        prom.wait_for_series("count_over_time(guard_test_total[1h]) >= 2", 15)
        t_before = float(prom.query("time()")[0]["value"][0])
        samples_before = count_at(prom, t_before)

        assert prom.restart() == url
        assert prom.data_dir == data_dir
        assert count_at(prom, t_before) == samples_before  # TSDB survived (WAL replay)
        prom.wait_for_series(f"count_over_time(guard_test_total[1h]) > {samples_before}", 15)

        prom.pause()
        assert not prom.running
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/-/ready")
        assert prom.resume() == url
        assert count_at(prom, t_before) == samples_before
    assert not data_dir.exists()  # temp dir removed on stop


@needs_prometheus
def test_explicit_data_dir_is_kept(tmp_path: Path) -> None:
    prom = PrometheusServer(["127.0.0.1:1"], scrape_interval_seconds=0.5, data_dir=tmp_path / "p")
    with prom:
        config = (tmp_path / "p" / "prometheus.yml").read_text()
        assert "honor_labels: true" in config and "scrape_timeout: 500ms" in config
    assert not prom.running
    assert (tmp_path / "p" / "tsdb").is_dir()
    assert "--query.lookback-delta=5000ms" in (tmp_path / "p" / "prometheus.log").read_text()


def test_missing_binary_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GUARD_PROMETHEUS_BIN", str(tmp_path / "no-such-prometheus"))
    with pytest.raises(PrometheusNotInstalledError, match="install Debian's prometheus package"):
        PrometheusServer(["127.0.0.1:1"]).start()


def test_start_failure_reports_log_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\necho 'err: bad config, giving up' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GUARD_PROMETHEUS_BIN", str(fake))
    prom = PrometheusServer(["127.0.0.1:1"], data_dir=tmp_path / "data")
    with pytest.raises(PrometheusError, match=r"(?s)code 3.*bad config, giving up"):
        prom.start()
    prom.stop()
