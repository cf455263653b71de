"""A simulated service whose pods Prometheus scrapes, driven by the (simulated) Kubernetes API.

The guard only ever sees what a real cluster would show it: pods come and go through the
Kubernetes API, and their request/latency metrics arrive through Prometheus. So this
workload reads the same API (Service selector -> Pods) to learn which pods are serving,
and exposes the metrics an instrumented app plus Prometheus' pod discovery would produce
(``namespace``, ``pod`` and ``pod_template_hash`` labels; the scrape job honours them).

Series lifetime follows pods, not readiness: a pod that is listed but not Ready (or is
terminating) is still scraped in a real cluster, so its series stay and simply stop
growing; once the pod is gone from the API its series are dropped, which makes
Prometheus write staleness markers just as when a real pod's target disappears.

Requests are simulated in bulk with numpy and kept as plain counters; a custom Collector
renders them. That keeps 200 rps (or 10k rps) at a small fraction of one core, which a
per-request ``Histogram.observe`` in Python would not.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from guard.sim.routing import Entry, service_split

__all__ = [
    "LATENCY_BUCKETS",
    "Fleet",
    "Pod",
    "TrafficProfile",
    "Workload",
    "lognormal_params",
]

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the latency histogram; 1 s / 2 s / 3 s are the product's
#: severity thresholds, so each must be a bucket boundary for histogram_quantile.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0,
)  # fmt: skip
_BOUNDS = np.asarray(LATENCY_BUCKETS)
_LE_LABELS = [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]  # "1.0" like prometheus_client
_Z99 = 2.3263478740408408  # standard normal quantile at 0.99
_LABELS = ["namespace", "pod", "pod_template_hash", "service"]


def lognormal_params(p50: float, p99: float) -> tuple[float, float]:
    """(mu, sigma) of the log-normal whose median is p50 and 99th percentile is p99."""
    return math.log(p50), math.log(p99 / p50) / _Z99


@dataclass(frozen=True)
class TrafficProfile:
    """How one image behaves; profiles are keyed by image so a rollout changes behaviour."""

    error_rate: float = 0.002
    latency_p50_seconds: float = 0.08
    latency_p99_seconds: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")
        if not 0.0 < self.latency_p50_seconds <= self.latency_p99_seconds:
            raise ValueError("need 0 < latency_p50_seconds <= latency_p99_seconds")


@dataclass(frozen=True)
class Pod:
    name: str
    pod_template_hash: str
    image: str
    serving: bool  # Ready and not terminating: eligible for traffic


@dataclass
class _PodState:
    pod_template_hash: str
    ok: int = 0
    errors: int = 0
    buckets: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(LATENCY_BUCKETS) + 1, dtype=np.int64)
    )
    latency_sum: float = 0.0


def parse_pods(pod_list: Mapping[str, Any]) -> list[Pod]:
    """Reduce a PodList to what the simulation needs; tolerant of partial objects."""
    pods = []
    for item in pod_list.get("items") or []:
        meta = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        containers = spec.get("containers") or [{}]
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        pods.append(
            Pod(
                name=meta.get("name", ""),
                pod_template_hash=(meta.get("labels") or {}).get("pod-template-hash", ""),
                image=containers[0].get("image", ""),
                serving=ready and not meta.get("deletionTimestamp"),
            )
        )
    return sorted(pods, key=lambda p: p.name)


class Workload:
    """Serves /metrics for every pod of one Service and simulates its traffic in a thread."""

    def __init__(
        self,
        kube_url: str,
        namespace: str,
        service: str,
        requests_per_second: float = 200.0,
        tick_seconds: float = 0.1,
        seed: int | None = None,
        *,
        default_profile: TrafficProfile | None = None,
        route: str | None = None,
        preview_service: str | None = None,
        preview_requests_per_second: float = 0.0,
    ) -> None:
        self.kube_url = kube_url.rstrip("/")
        self.namespace = namespace
        self.service = service
        self.requests_per_second = requests_per_second
        # Production traffic enters through the HTTPRoute if there is one, else the Service;
        # a preview Service (blue-green) gets its own, smaller stream of test traffic.
        self.entries = [Entry(route or service, requests_per_second, route=route is not None)]
        if preview_service is not None and preview_requests_per_second > 0:
            self.entries.append(Entry(preview_service, preview_requests_per_second))
        self.tick_seconds = tick_seconds
        self.default_profile = default_profile or TrafficProfile()
        self._rng = np.random.default_rng(seed)
        self._profiles: dict[str, TrafficProfile] = {}
        self._lock = threading.Lock()
        self._pods: list[Pod] = []
        self._rates: dict[str, float] = {}  # pod name -> requests per second it receives
        self._state: dict[str, _PodState] = {}
        self._served: dict[tuple[str, str], tuple[int, int]] = {}  # (pod, hash) -> (ok, err)
        self._carry = 0.0
        self._api_healthy = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    # -- public API ---------------------------------------------------------------------

    def set_profile(self, image: str, profile: TrafficProfile) -> None:
        with self._lock:
            self._profiles[image] = profile

    def start(self) -> str:
        """Start serving and simulating; returns the scrape target ``127.0.0.1:PORT``."""
        if self._server is None:
            self._server, _ = start_wsgi_server(0, addr="127.0.0.1", registry=self._registry)
        if self._thread is None:
            self._stop.clear()
            self._refresh_pods()  # so the first scrape already sees the pods
            self._thread = threading.Thread(
                target=self._run, name=f"workload-{self.service}", daemon=True
            )
            self._thread.start()
        return self.target

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Workload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def target(self) -> str:
        if self._server is None:
            raise RuntimeError("workload not started")
        return f"127.0.0.1:{self._server.server_port}"

    def pods(self) -> list[Pod]:
        """The pods as last read from the API (for tests waiting on a state change)."""
        with self._lock:
            return list(self._pods)

    def rate_to(self, image: str) -> float:
        """Requests per second now going to serving pods that run `image`, all entries together."""
        with self._lock:
            return sum(
                self._rates.get(p.name, 0.0) for p in self._pods if p.serving and p.image == image
            )

    def requests_served(
        self, pod_template_hash: str | None = None, code: str | None = None
    ) -> dict[str, int]:
        """Requests served per pod name since start (including pods since deleted);
        ``code`` "200" or "500" narrows to successes or errors."""
        out: dict[str, int] = {}
        with self._lock:
            for (pod, pth), (ok, err) in self._served.items():
                if pod_template_hash is not None and pth != pod_template_hash:
                    continue
                out[pod] = {"200": ok, "500": err}.get(code or "", ok + err)
        return out

    # -- simulation ---------------------------------------------------------------------

    def _run(self) -> None:
        last = time.monotonic()
        with httpx.Client(timeout=max(1.0, 5 * self.tick_seconds)) as client:
            while not self._stop.wait(max(0.0, last + self.tick_seconds - time.monotonic())):
                now = time.monotonic()
                self._refresh_pods(client)
                self.tick(now - last)
                last = now

    def _refresh_pods(self, client: httpx.Client | None = None) -> None:
        """Keep the last known pods when the API fails: a flaky control plane does not stop
        a real service from serving, and the guard must not see traffic vanish because of it."""
        own = client is None
        client = client or httpx.Client(timeout=2.0)
        try:
            pods, rates = self._resolve(client)
        except (httpx.HTTPError, ValueError) as exc:
            if self._api_healthy:
                log.warning("Kubernetes API unavailable (%s); keeping last known pods", exc)
                self._api_healthy = False
            return
        finally:
            if own:
                client.close()
        if not self._api_healthy:
            log.info("Kubernetes API reachable again")
            self._api_healthy = True
        self._set_pods(pods, rates)

    def _resolve(self, client: httpx.Client) -> tuple[list[Pod], dict[str, float]]:
        """Every pod behind any entry point, and the request rate each serving pod gets."""
        pods: dict[str, Pod] = {}
        rates: dict[str, float] = {}
        for entry in self.entries:
            for service, rps in service_split(client, self.kube_url, self.namespace, entry):
                behind = self._service_pods(client, service)
                pods.update((p.name, p) for p in behind)
                serving = [p for p in behind if p.serving]
                for pod in serving:
                    rates[pod.name] = rates.get(pod.name, 0.0) + rps / len(serving)
        return sorted(pods.values(), key=lambda p: p.name), rates

    def _service_pods(self, client: httpx.Client, service: str) -> list[Pod]:
        base = f"{self.kube_url}/api/v1/namespaces/{self.namespace}"
        svc = client.get(f"{base}/services/{service}")
        if svc.status_code == 404 and service != self.service:
            return []  # a backend or preview Service that does not exist (yet) serves nothing
        svc.raise_for_status()
        selector: dict[str, str] = svc.json().get("spec", {}).get("selector") or {}
        if not selector:
            return []  # a Service without selector has no pods of its own
        sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        resp = client.get(f"{base}/pods", params={"labelSelector": sel})
        resp.raise_for_status()
        return parse_pods(resp.json())

    def _set_pods(self, pods: list[Pod], rates: dict[str, float] | None = None) -> None:
        with self._lock:
            self._pods = pods
            if rates is None:  # one entry point, spread evenly over the serving pods
                serving = [p.name for p in pods if p.serving]
                rates = {name: self.requests_per_second / len(serving) for name in serving}
            self._rates = rates
            names = {p.name for p in pods}
            for gone in set(self._state) - names:
                del self._state[gone]
            for p in pods:
                if p.name not in self._state:
                    self._state[p.name] = _PodState(p.pod_template_hash)

    def tick(self, elapsed: float) -> None:
        """Simulate ``elapsed`` seconds of traffic (public so tests can drive it directly)."""
        with self._lock:
            serving = [p for p in self._pods if p.serving and self._rates.get(p.name, 0.0) > 0]
            rate = sum(self._rates.get(p.name, 0.0) for p in serving)
            wanted = rate * elapsed + self._carry
            total = int(wanted)
            self._carry = wanted - total
            if not serving or total == 0:
                return
            shares = [self._rates[p.name] / rate for p in serving]
            per_pod = self._rng.multinomial(total, shares)
            for pod, n in zip(serving, per_pod, strict=True):
                if n:
                    self._serve(pod, int(n), self._profiles.get(pod.image, self.default_profile))

    def _serve(self, pod: Pod, n: int, profile: TrafficProfile) -> None:
        mu, sigma = lognormal_params(profile.latency_p50_seconds, profile.latency_p99_seconds)
        latencies = self._rng.lognormal(mu, sigma, n)
        errors = int(self._rng.binomial(n, profile.error_rate))
        state = self._state[pod.name]
        state.errors += errors
        state.ok += n - errors
        # side="left": a value equal to a bound belongs to that bucket (le is inclusive).
        idx = np.searchsorted(_BOUNDS, latencies, side="left")
        state.buckets += np.bincount(idx, minlength=len(_LE_LABELS))
        state.latency_sum += float(latencies.sum())
        ok, err = self._served.get((pod.name, pod.pod_template_hash), (0, 0))
        self._served[(pod.name, pod.pod_template_hash)] = (ok + n - errors, err + errors)

    # -- prometheus_client Collector protocol --------------------------------------------

    def collect(self) -> Iterable[Metric]:
        requests, duration = _families()
        self.add_samples(requests, duration)
        return [requests, duration]

    def add_samples(self, requests: CounterMetricFamily, duration: HistogramMetricFamily) -> None:
        """Add this service's pods to metric families shared with other services."""
        with self._lock:
            snapshot = [
                (name, s.pod_template_hash, s.ok, s.errors, s.buckets.cumsum(), s.latency_sum)
                for name, s in sorted(self._state.items())
            ]
        for name, pth, ok, errors, cumulative, latency_sum in snapshot:
            labels = [self.namespace, name, pth, self.service]
            # Both codes from the start so an error ratio has a denominator and numerator
            # from the same first scrape, as with a client that pre-initialises its labels.
            requests.add_metric([*labels, "200"], ok)
            requests.add_metric([*labels, "500"], errors)
            duration.add_metric(
                labels,
                [(le, float(c)) for le, c in zip(_LE_LABELS, cumulative, strict=True)],
                latency_sum,
            )


def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
    requests = CounterMetricFamily(
        "http_requests_total", "HTTP requests served.", labels=[*_LABELS, "code"]
    )
    duration = HistogramMetricFamily(
        "http_request_duration_seconds", "HTTP request latency.", labels=_LABELS
    )
    return requests, duration


class Fleet:
    """Many Services of one namespace, each with its own pods, scraped as one target.

    For a platform-sized test (hundreds of services): one thread lists the namespace's Services
    and Pods (two calls however many services, as an informer-fed service discovery would), and
    each Service's traffic is simulated as `Workload` does for one. Only Service entry points.
    """

    def __init__(
        self,
        kube_url: str,
        namespace: str,
        services: list[str],
        requests_per_second: float = 20.0,
        tick_seconds: float = 0.5,
        seed: int | None = None,
        *,
        default_profile: TrafficProfile | None = None,
    ) -> None:
        self.kube_url = kube_url.rstrip("/")
        self.namespace = namespace
        self.tick_seconds = tick_seconds
        rng = np.random.default_rng(seed)
        self.members = {
            name: Workload(
                kube_url,
                namespace,
                name,
                requests_per_second,
                tick_seconds,
                seed=int(rng.integers(2**31)),
                default_profile=default_profile,
            )
            for name in services
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def set_profile(self, image: str, profile: TrafficProfile) -> None:
        for member in self.members.values():
            member.set_profile(image, profile)

    def start(self) -> str:
        """Start serving and simulating; returns the scrape target ``127.0.0.1:PORT``."""
        if self._server is None:
            self._server, _ = start_wsgi_server(0, addr="127.0.0.1", registry=self._registry)
        if self._thread is None:
            self._stop.clear()
            with httpx.Client(timeout=10.0) as client:
                self.refresh(client)
            self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
            self._thread.start()
        return f"127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refresh(self, client: httpx.Client) -> None:
        """Each member's pods: the namespace's Pods that its Service's selector matches."""
        base = f"{self.kube_url}/api/v1/namespaces/{self.namespace}"
        services = client.get(f"{base}/services")
        pods = client.get(f"{base}/pods")
        services.raise_for_status()
        pods.raise_for_status()
        by_labels: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in pods.json().get("items") or []:
            for label in (item.get("metadata") or {}).get("labels", {}).items():
                by_labels.setdefault(label, []).append(item)
        for service in services.json().get("items") or []:
            member = self.members.get(service["metadata"]["name"])
            selector = (service.get("spec") or {}).get("selector") or {}
            if member is None or not selector:
                continue
            first, *rest = selector.items()
            matching = [
                item
                for item in by_labels.get(first, [])
                if all(item["metadata"]["labels"].get(k) == v for k, v in rest)
            ]
            member._set_pods(parse_pods({"items": matching}))

    def _run(self) -> None:
        last = time.monotonic()
        with httpx.Client(timeout=max(2.0, 5 * self.tick_seconds)) as client:
            while not self._stop.wait(max(0.0, last + self.tick_seconds - time.monotonic())):
                now = time.monotonic()
                try:
                    self.refresh(client)
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("Kubernetes API unavailable (%s); keeping last known pods", exc)
                for member in self.members.values():
                    member.tick(now - last)
                last = now

    def collect(self) -> Iterable[Metric]:
        requests, duration = _families()
        for member in self.members.values():
            member.add_samples(requests, duration)
        return [requests, duration]
