"""The simulated workload, checked through real Prometheus and real PromQL.

The Kubernetes API is a tiny fake REST endpoint here (Service + PodList routes only);
end-to-end tests run the same workload against the real API simulator.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from guard.sim.prometheus import PrometheusNotInstalledError, PrometheusServer, resolve_binary
from guard.sim.workload import LATENCY_BUCKETS, TrafficProfile, Workload, lognormal_params

NS, SVC = "shop", "checkout"
STABLE, CANARY = "registry/checkout:1.4.1", "registry/checkout:1.4.2"


def _prometheus_available() -> bool:
    try:
        resolve_binary()
    except PrometheusNotInstalledError:
        return False
    return True


needs_prometheus = pytest.mark.skipif(
    not _prometheus_available(), reason="install Debian's prometheus package"
)


class FakeKube:
    """Just enough of the Kubernetes REST API for the workload: one Service and its Pods."""

    def __init__(self, selector: dict[str, str]) -> None:
        self.selector = selector
        self.pods: dict[str, dict[str, Any]] = {}
        self.fail = False
        self.failed_requests = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_pod(
        self,
        name: str,
        pod_template_hash: str,
        image: str,
        *,
        ready: bool = True,
        terminating: bool = False,
        app: str = SVC,
    ) -> None:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": NS,
            "labels": {"app": app, "pod-template-hash": pod_template_hash},
        }
        if terminating:
            meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": image}]},
            "status": {"phase": "Running", "conditions": []},
        }
        with self.lock:
            self.pods[name] = pod
        self.set_ready(name, ready)

    def set_ready(self, name: str, ready: bool) -> None:
        with self.lock:
            self.pods[name]["status"]["conditions"] = [
                {"type": "Ready", "status": "True" if ready else "False"}
            ]

    def delete(self, name: str) -> None:
        with self.lock:
            del self.pods[name]

    def _respond(self, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        if self.fail:
            self.failed_requests += 1
            return 500, {"kind": "Status", "status": "Failure", "code": 500}
        if path == f"/api/v1/namespaces/{NS}/services/{SVC}":
            return 200, {"kind": "Service", "spec": {"selector": self.selector}}
        if path == f"/api/v1/namespaces/{NS}/pods":
            wanted = dict(kv.split("=", 1) for kv in query["labelSelector"][0].split(","))
            with self.lock:
                items = [
                    p
                    for p in self.pods.values()
                    if wanted.items() <= p["metadata"]["labels"].items()
                ]
                return 200, json.loads(json.dumps({"kind": "PodList", "items": items}))
        return 404, {"kind": "Status", "status": "Failure", "code": 404}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                code, body = fake._respond(parts.path, parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube({"app": SVC})
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def scalar(prom: PrometheusServer, promql: str) -> float:
    result = prom.query(promql)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def expected_histogram_quantile(q: float, profile: TrafficProfile) -> tuple[float, float, float]:
    """(bucket low, bucket high, interpolated value) PromQL reports for an infinite sample."""
    mu, sigma = lognormal_params(profile.latency_p50_seconds, profile.latency_p99_seconds)
    lo, cdf_lo = 0.0, 0.0
    for hi in LATENCY_BUCKETS:
        cdf_hi = normal_cdf((math.log(hi) - mu) / sigma)
        if cdf_hi >= q:
            return lo, hi, lo + (hi - lo) * (q - cdf_lo) / (cdf_hi - cdf_lo)
        lo, cdf_lo = hi, cdf_hi
    raise AssertionError("quantile beyond the last finite bucket")


# -- without Prometheus ---------------------------------------------------------------------


def test_lognormal_fit_matches_profile() -> None:
    profile = TrafficProfile(error_rate=0.0, latency_p50_seconds=0.08, latency_p99_seconds=0.3)
    mu, sigma = lognormal_params(profile.latency_p50_seconds, profile.latency_p99_seconds)
    draws = np.random.default_rng(1).lognormal(mu, sigma, 200_000)
    assert np.quantile(draws, 0.5) == pytest.approx(0.08, rel=0.02)
    assert np.quantile(draws, 0.99) == pytest.approx(0.3, rel=0.04)
    with pytest.raises(ValueError):
        TrafficProfile(latency_p50_seconds=0.5, latency_p99_seconds=0.3)
    with pytest.raises(ValueError):
        TrafficProfile(error_rate=1.5)


def test_traffic_goes_to_ready_pods_only(kube: FakeKube) -> None:
    for name in ("a1", "a2", "a3"):
        kube.add_pod(name, "aaa", STABLE)
    kube.add_pod("n1", "aaa", STABLE, ready=False)
    kube.add_pod("t1", "aaa", STABLE, terminating=True)
    kube.add_pod("x1", "xxx", STABLE, app="other")  # not selected by the Service
    with Workload(kube.url, NS, SVC, requests_per_second=3000, tick_seconds=0.02, seed=7) as wl:
        wait_until(lambda: sum(wl.requests_served().values()) >= 6000, what="6000 requests")
        served = wl.requests_served()
        assert set(served) == {"a1", "a2", "a3"}
        total = sum(served.values())
        sd = math.sqrt(total * (1 / 3) * (2 / 3))
        for n in served.values():
            assert abs(n - total / 3) < 5 * sd

        metrics = httpx.get(f"http://{wl.target}/metrics").text
        # listed-but-not-serving pods are scraped (zero traffic); unselected pods are not
        assert 'pod="n1"' in metrics and 'pod="t1"' in metrics and 'pod="x1"' not in metrics
        assert 'le="1.0"' in metrics and 'le="2.0"' in metrics and 'le="3.0"' in metrics

        kube.set_ready("a2", False)
        wait_until(lambda: not {p.name: p for p in wl.pods()}["a2"].serving, what="a2 unready")
        a2_before, a1_before = wl.requests_served()["a2"], wl.requests_served()["a1"]
        wait_until(lambda: wl.requests_served()["a1"] > a1_before + 1000, what="a1 traffic")
        assert wl.requests_served()["a2"] == a2_before

        kube.delete("a3")
        wait_until(lambda: "a3" not in {p.name for p in wl.pods()}, what="a3 gone")
        assert 'pod="a3"' not in httpx.get(f"http://{wl.target}/metrics").text
        assert "a3" in wl.requests_served()  # history survives the series


def test_api_outage_keeps_last_known_pods(kube: FakeKube, caplog: pytest.LogCaptureFixture) -> None:
    kube.add_pod("a1", "aaa", STABLE)
    caplog.set_level(logging.WARNING, logger="guard.sim.workload")
    with Workload(kube.url, NS, SVC, requests_per_second=2000, tick_seconds=0.02, seed=3) as wl:
        wait_until(lambda: wl.requests_served().get("a1", 0) > 0, what="first traffic")
        kube.fail = True
        wait_until(lambda: kube.failed_requests >= 5, what="failing API calls")
        before = wl.requests_served()["a1"]
        wait_until(lambda: wl.requests_served()["a1"] > before + 200, what="traffic in outage")
        warnings = [r for r in caplog.records if "Kubernetes API unavailable" in r.message]
        assert len(warnings) == 1
        kube.fail = False
        kube.add_pod("a2", "aaa", STABLE)
        wait_until(lambda: wl.requests_served().get("a2", 0) > 0, what="recovery")


def test_requests_served_filters(kube: FakeKube) -> None:
    kube.add_pod("s1", "stable", STABLE)
    kube.add_pod("c1", "canary", CANARY)
    wl = Workload(kube.url, NS, SVC, requests_per_second=1000, seed=5)
    wl.set_profile(CANARY, TrafficProfile(error_rate=0.5))
    wl.start()
    try:
        wait_until(lambda: len(wl.requests_served()) == 2, what="both pods")
    finally:
        wl.stop()
    wl.tick(20.0)  # deterministic bulk: 20 000 requests split over two pods
    assert set(wl.requests_served("canary")) == {"c1"}
    canary_total = wl.requests_served("canary")["c1"]
    canary_errors = wl.requests_served("canary", code="500")["c1"]
    assert canary_errors / canary_total == pytest.approx(0.5, abs=0.05)
    assert wl.requests_served("stable", code="500")["s1"] < 0.01 * wl.requests_served()["s1"]


# -- through real Prometheus -----------------------------------------------------------------


@needs_prometheus
def test_error_rate_p99_and_readiness_through_promql(kube: FakeKube) -> None:
    profile = TrafficProfile(error_rate=0.08, latency_p50_seconds=0.08, latency_p99_seconds=0.3)
    rps = 2000.0
    for name in ("p1", "p2", "p3"):
        kube.add_pod(name, "7d9f", CANARY)
    kube.add_pod("p4", "7d9f", CANARY, ready=False)
    wl = Workload(kube.url, NS, SVC, requests_per_second=rps, tick_seconds=0.1, seed=11)
    wl.set_profile(CANARY, profile)
    with wl, PrometheusServer([wl.start()], scrape_interval_seconds=1.0) as prom:
        # Series older than the [5s] window: otherwise rate() extrapolates only half an
        # interval towards the series start and under-reports (ratios would still hold).
        prom.wait_for_series(
            f'min(count_over_time(http_requests_total{{namespace="{NS}"}}[8s])) >= 7', 20
        )
        ratio = scalar(
            prom,
            f'sum(rate(http_requests_total{{namespace="{NS}",code=~"5.."}}[5s]))'
            f' / sum(rate(http_requests_total{{namespace="{NS}"}}[5s]))',
        )
        n = rps * 3  # the window covers ~4 s of increments; be conservative
        assert abs(ratio - 0.08) < 5 * math.sqrt(0.08 * 0.92 / n), ratio

        p99 = scalar(
            prom,
            "histogram_quantile(0.99,"
            " sum by (le) (rate(http_request_duration_seconds_bucket[10s])))",
        )
        lo, hi, interpolated = expected_histogram_quantile(0.99, profile)
        assert (lo, hi) == (0.25, 0.5)  # the true p99 (0.3 s) lies in this bucket
        assert lo < p99 <= hi and p99 == pytest.approx(interpolated, abs=0.08)

        per_pod = prom.query(f'sum by (pod) (rate(http_requests_total{{namespace="{NS}"}}[5s]))')
        rates = {r["metric"]["pod"]: float(r["value"][1]) for r in per_pod}
        assert rates["p4"] == 0.0
        for pod in ("p1", "p2", "p3"):
            assert rates[pod] == pytest.approx(rps / 3, rel=0.15)

        kube.set_ready("p2", False)
        prom.wait_for_series('sum(rate(http_requests_total{pod="p2"}[3s])) == 0', 15)
        assert scalar(prom, 'sum(rate(http_requests_total{pod="p1"}[3s]))') > rps / 4


@needs_prometheus
def test_slow_canary_resolves_severity_thresholds(kube: FakeKube) -> None:
    slow = TrafficProfile(error_rate=0.002, latency_p50_seconds=0.5, latency_p99_seconds=1.5)
    kube.add_pod("s1", "stable", STABLE)
    kube.add_pod("c1", "canary", CANARY)
    wl = Workload(kube.url, NS, SVC, requests_per_second=2000.0, seed=13)
    wl.set_profile(CANARY, slow)
    with wl, PrometheusServer([wl.start()]) as prom:
        prom.wait_for_series("min(count_over_time(http_requests_total[5s])) >= 4", 20)
        by_hash = prom.query(
            "histogram_quantile(0.99, sum by (le, pod_template_hash)"
            " (rate(http_request_duration_seconds_bucket[10s])))"
        )
        p99 = {r["metric"]["pod_template_hash"]: float(r["value"][1]) for r in by_hash}
        assert 0.25 < p99["stable"] <= 0.5
        assert 1.0 < p99["canary"] <= 2.0  # above the 1 s threshold, below 2 s
        assert expected_histogram_quantile(0.99, slow)[:2] == (1.0, 2.0)
        labels = prom.query('http_requests_total{pod="c1",code="200"}')[0]["metric"]
        assert labels["namespace"] == NS and labels["service"] == SVC
        assert labels["job"] == "workload" and labels["instance"] == wl.target


def test_fleet_serves_each_service_its_own_pods() -> None:
    """Two listings per refresh, however many Services; each Service's pods get its traffic."""
    from guard.sim.kubeapi import KubeApiSimulator
    from guard.sim.workload import Fleet

    names = ["svc-a", "svc-b", "svc-c"]
    with KubeApiSimulator(default_ready_delay_seconds=0) as sim:
        for name in names:
            labels = {"app": name}
            sim.apply(
                {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": name, "namespace": "fleet"},
                 "spec": {"selector": labels, "ports": [{"port": 80}]}}
            )  # fmt: skip
            sim.apply(
                {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": name, "namespace": "fleet"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                          "template": {"metadata": {"labels": labels},
                                       "spec": {"containers": [{"name": "app", "image": "a:1"}]}}}}
            )  # fmt: skip
        fleet = Fleet(sim.base_url, "fleet", names, requests_per_second=100, seed=1)
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                fleet.refresh(client)
                if all(m.pods() and m.pods()[0].serving for m in fleet.members.values()):
                    break
                time.sleep(0.1)
        sim.clear_requests_log()
        with httpx.Client(timeout=10) as client:
            fleet.refresh(client)
        assert len(sim.requests_log) == 2
        for member in fleet.members.values():
            member.tick(1.0)
        served = {
            sample.labels["service"]: sample.labels["pod"]
            for family in fleet.collect()
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.value > 0
        }
    assert set(served) == set(names)
    assert all(pod.startswith(service) for service, pod in served.items())
