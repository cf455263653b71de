"""Crash safety: SIGKILL the guard at random moments while many rollouts run, restart it, repeat.

One simulated cluster holds six Deployments (rolling x2, canary by replicas, canary on an
HTTPRoute, blue-green x2), each with its own Service, traffic and Prometheus series. Each lane
submits releases one after another, good and bad alternating, with an idempotency key per
release that it re-sends until the guard answers (a kill may land between the commit and the
answer). In a quarter of the guard's lives every write to the API server is 0.3 s slower, so
kills also land between storing a step and finishing its Kubernetes actions. The guard is
killed (seeded RNG; the seed is printed, `CRASH_SEED` replays it) after a random time alive,
and restarted, until at least `KILLS` kills have landed while rollouts were in flight (read from
the dead guard's database, with how many caught actions stored but not yet done); then every
rollout is left to finish and the cluster, records and alerts are checked.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from guard.sim.guard_process import TERMINAL, GuardProcess
from guard.sim.kubeapi import KubeApiSimulator
from guard.sim.prometheus import PrometheusServer
from guard.sim.receiver import AlertReceiver
from guard.sim.workload import TrafficProfile, Workload

NS = "fleet"
KILLS = 50
SLOW_WRITES = 0.25  # the share of guard lives in which every API write takes 0.3 s more
BAD_PROFILE = TrafficProfile(error_rate=0.08, latency_p50_seconds=0.08, latency_p99_seconds=0.3)
REVISION = "deployment.kubernetes.io/revision"


@dataclass
class Lane:
    """One Deployment and the releases submitted to it, in order."""

    name: str
    strategy: str
    route: bool = False
    index: int = 0
    submitted: list[tuple[str, bool]] = field(default_factory=list)  # (image, good)
    current: str | None = None  # rollout id of the release in flight
    pending_key: str | None = None  # submitted but not yet acknowledged
    ids: list[str] = field(default_factory=list)

    def image(self, number: int) -> str:
        return f"registry/{self.name}:{number}"

    @property
    def busy(self) -> bool:
        return self.current is not None or self.pending_key is not None

    def good(self, number: int) -> bool:
        return (number + self.index) % 2 == 0


LANES = [
    Lane("roll-a", "rolling", index=0),
    Lane("roll-b", "rolling", index=1),
    Lane("canary-a", "canary", index=0),
    Lane("canary-r", "canary", route=True, index=1),
    Lane("bg-a", "bluegreen", index=0),
    Lane("bg-b", "bluegreen", index=1),
]


def _manifests(lane: Lane) -> list[dict[str, Any]]:
    labels = {"app": lane.name}
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": lane.name, "namespace": NS},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": lane.name, "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 2,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": labels},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": lane.image(1)}]},
                },
            },
        },
    ]
    if lane.route:
        objects.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": lane.name, "namespace": NS},
                "spec": {
                    "parentRefs": [{"name": "gateway"}],
                    "rules": [{"backendRefs": [{"name": lane.name, "port": 80}]}],
                },
            }
        )
    return objects


@dataclass
class Fleet:
    kube: KubeApiSimulator
    prometheus: PrometheusServer
    receiver: AlertReceiver
    kubeconfig: Path


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    kube = KubeApiSimulator(default_ready_delay_seconds=0.3)
    workloads: list[Workload] = []
    prometheus: PrometheusServer | None = None
    receiver = AlertReceiver()
    try:
        url = kube.start()
        kubeconfig = tmp_path / "kubeconfig"
        kube.write_kubeconfig(kubeconfig, namespace=NS)
        for lane in LANES:
            for obj in _manifests(lane):
                kube.apply(obj)
            workload = Workload(
                kube_url=url, namespace=NS, service=lane.name, requests_per_second=120,
                route=lane.name if lane.route else None, preview_service=f"{lane.name}-preview",
                preview_requests_per_second=40, seed=lane.index, tick_seconds=0.25,
            )  # fmt: skip
            for number in range(2, 200):
                if not lane.good(number):
                    workload.set_profile(lane.image(number), BAD_PROFILE)
            workloads.append(workload)
        targets = [w.start() for w in workloads]
        prometheus = PrometheusServer(targets, data_dir=tmp_path / "prometheus")
        prometheus.start()
        prometheus.wait_for_series(
            f'count(sum by (service) (rate(http_requests_total{{namespace="{NS}"}}[5s]) > 0))'
            f" >= {len(LANES)}",
            timeout=90,
        )
        receiver.start()
        yield Fleet(kube, prometheus, receiver, kubeconfig)
    finally:
        receiver.stop()
        if prometheus is not None:
            prometheus.stop()
        for workload in workloads:
            workload.stop()
        kube.stop()


def _config(fleet: Fleet, tmp_path: Path) -> Path:
    key = tmp_path / "hmac.key"
    key.write_text("crash-test-key\n", encoding="utf-8")
    services: dict[str, Any] = {}
    for lane in LANES:
        section: dict[str, Any] = {
            "canary": {"steps": [50, 100], "intervals_per_step": 1},
            "bluegreen": {"post_promotion_intervals": 1, "scale_down_delay_seconds": 0.5},
        }
        if lane.route:
            section["router"] = {"httproute": lane.name}
        services[lane.name] = section
    config = {
        "store": {"data_dir": str(tmp_path / "data")},
        "prometheus": {"url": fleet.prometheus.url, "timeout_seconds": 2},
        "kubernetes": {"kubeconfig": str(fleet.kubeconfig), "request_timeout_seconds": 5},
        "scheduler": {"tick_seconds": 0.5},
        "analysis": {"interval_seconds": 1, "window_seconds": 5,
                     "healthy_intervals_to_promote": 2},
        "services": services,
        "alerts": {
            "receivers": {"hook": {"type": "webhook", "url": f"{fleet.receiver.url}/hook",
                                   "hmac_key_file": str(key)}},
            # A send cut short by a kill is retried once its claim's lease lapses.
            "delivery": {"poll_seconds": 0.2, "initial_backoff_seconds": 0.2,
                         "max_backoff_seconds": 1, "timeout_seconds": 2, "lease_seconds": 5},
        },
    }  # fmt: skip
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _sha(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _drive(guard: GuardProcess, lanes: list[Lane], *, submit_more: bool) -> None:
    """One pass over the lanes: learn how the release in flight is doing, submit the next."""
    try:
        auth = {"Authorization": f"Bearer {guard.token}"}
        with httpx.Client(base_url=guard.url, timeout=3, headers=auth) as client:
            for lane in lanes:
                if lane.current is not None:
                    state = client.get(f"/v1/rollouts/{lane.current}").json()["state"]
                    if state in TERMINAL:
                        lane.current = None
                if lane.current is None and lane.pending_key is None and submit_more:
                    number = len(lane.submitted) + 2
                    lane.submitted.append((lane.image(number), lane.good(number)))
                    lane.pending_key = f"{lane.name}/{number}"
                if lane.pending_key is not None:
                    image = lane.submitted[-1][0]
                    body = {
                        "namespace": NS,
                        "deployment": lane.name,
                        "strategy": lane.strategy,
                        "images": {"app": image},
                        "commit_sha": _sha(lane.pending_key),
                    }
                    answer = client.post(
                        "/v1/rollouts", json=body, headers={"Idempotency-Key": lane.pending_key}
                    )
                    assert answer.status_code in (200, 201), answer.text
                    rollout_id = answer.json()["id"]
                    if rollout_id not in lane.ids:
                        lane.ids.append(rollout_id)
                    lane.current, lane.pending_key = rollout_id, None
    except httpx.TransportError:
        pass  # killed under us, or not up yet: the next pass asks again


@pytest.mark.timeout(900)
def test_guard_killed_at_random_moments_loses_and_repeats_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash test seed: {seed} (replay with CRASH_SEED={seed})")
    rng = random.Random(seed)
    lanes = [Lane(lane.name, lane.strategy, lane.route, lane.index) for lane in LANES]
    guard = GuardProcess(_config(fleet, tmp_path), tmp_path / "guard.log", standby=True)
    database = tmp_path / "data" / "guard.db"
    kills = landed = mid_action = 0
    began = time.monotonic()
    try:
        guard.start(timeout=60)
        deadline = time.monotonic() + 420
        while landed < KILLS:
            assert time.monotonic() < deadline, f"only {landed} kills landed in time"
            fleet.kube.clear_faults()
            if rng.random() < SLOW_WRITES:
                for method in ("POST", "PUT", "PATCH", "DELETE"):
                    fleet.kube.inject_fault(method, status=0, delay_seconds=0.3, count=None)
            alive_until = time.monotonic() + rng.uniform(0.2, 1.5)
            while time.monotonic() < alive_until:
                _drive(guard, lanes, submit_more=True)
                time.sleep(0.2)
            guard.kill()
            kills += 1
            active, acting = _at_the_kill(database)
            landed += active > 0
            mid_action += acting > 0
            guard.start(timeout=60)
            if kills % 10 == 0:
                print(f"{kills} kills, {landed} in flight, {time.monotonic() - began:.0f}s")

        fleet.kube.clear_faults()
        drain = time.monotonic() + 180
        while any(lane.busy for lane in lanes):
            assert time.monotonic() < drain, [(x.name, x.current, x.pending_key) for x in lanes]
            _drive(guard, lanes, submit_more=False)
            time.sleep(0.3)
        print(
            f"crash test: {kills} kills, {landed} with rollouts in flight, {mid_action} with "
            f"Kubernetes actions committed but not yet done, {time.monotonic() - began:.0f}s"
        )
        _check(fleet, guard, lanes)
        print(f"checked after {time.monotonic() - began:.0f}s")
    finally:
        guard.stop()


def _at_the_kill(database: Path) -> tuple[int, int]:
    """Rollouts unfinished, and those with actions stored but not done, as the guard died."""
    terminal = ", ".join(f"'{state}'" for state in TERMINAL)
    with closing(sqlite3.connect(database)) as db:
        active, acting = db.execute(
            f"SELECT count(*), count(CASE WHEN pending_actions != '[]' THEN 1 END) "
            f"FROM rollouts WHERE state NOT IN ({terminal})"
        ).fetchone()
    return int(active), int(acting)


def _check(fleet: Fleet, guard: GuardProcess, lanes: list[Lane]) -> None:
    with guard.client() as client:
        rollouts = client.get("/v1/rollouts", params={"limit": 1000}).json()
        views = {r["id"]: client.get(f"/v1/rollouts/{r['id']}").json() for r in rollouts}
    outcomes: Counter[tuple[str, str]] = Counter()
    for lane in lanes:
        mine = sorted(
            (v for v in views.values() if v["request"]["deployment"] == lane.name),
            key=lambda v: v["timestamps"]["submitted_at"],
        )
        # No release ran twice, none was lost: one rollout per idempotency key, in order.
        assert [v["id"] for v in mine] == lane.ids, lane.name
        assert [v["request"]["images"]["app"] for v in mine] == [i for i, _ in lane.submitted]
        for view, (_, good) in zip(mine, lane.submitted, strict=True):
            _check_record(view, good)
            outcomes[(lane.strategy + ("+route" if lane.route else ""), view["state"])] += 1
        _check_cluster(fleet, lane)
    alerts = _check_alerts(fleet, guard, views)
    print(f"{len(views)} rollouts: {dict(sorted(outcomes.items()))}; {alerts}")


def _check_record(view: dict[str, Any], good: bool) -> None:
    expected = "promoted" if good else "rolled_back"
    assert view["state"] == expected, view
    history = [h["state"] for h in view["details"]["history"]]
    assert history[0] == "pending" and history[-1] == expected, history
    stamps = view["timestamps"]
    assert stamps["started_at"] and stamps["finished_at"], stamps
    assert view["decisions"], view
    if not good:
        assert stamps["rollback_started_at"] and stamps["rollback_verified_at"], stamps
        assert "rolling_back" in history, history


def _check_cluster(fleet: Fleet, lane: Lane) -> None:
    """The cluster is shaped as before, with the last good release, and nothing left over."""
    deployment = fleet.kube.get("apps/v1", "Deployment", NS, lane.name)
    assert deployment is not None
    goods = [image for image, good in lane.submitted if good]
    want = goods[-1] if goods else lane.image(1)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [want], lane.name
    assert not deployment["spec"].get("paused", False), lane.name
    bads = len(lane.submitted) - len(goods)
    # Rolling changes the template per release and once more per rollback; canary and
    # blue-green touch the Deployment only when they promote.
    changes = len(goods) + (bads * 2 if lane.strategy == "rolling" else 0)
    assert int(deployment["metadata"]["annotations"][REVISION]) == 1 + changes, lane.name
    scaled = [
        rs["metadata"]["name"]
        for rs in fleet.kube.list("apps/v1", "ReplicaSet", NS, f"app={lane.name}")
        if rs["spec"].get("replicas", 0) > 0
    ]
    assert len(scaled) == 1, (lane.name, scaled)
    service = fleet.kube.get("v1", "Service", NS, lane.name)
    assert service is not None and service["spec"]["selector"] == {"app": lane.name}
    if lane.route:
        route = fleet.kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", NS, lane.name)
        assert route is not None
        refs = route["spec"]["rules"][0]["backendRefs"]
        assert {r["name"] for r in refs if r.get("weight", 1) > 0} == {lane.name}, refs
    names = {d["metadata"]["name"] for d in fleet.kube.list("apps/v1", "Deployment", NS)}
    services = {s["metadata"]["name"] for s in fleet.kube.list("v1", "Service", NS)}
    assert names == {x.name for x in LANES}, names
    assert services == {x.name for x in LANES}, services


def _check_alerts(fleet: Fleet, guard: GuardProcess, views: dict[str, Any]) -> str:
    """Each rollout's alerts are in the outbox, and every delivery reached the receiver."""
    deadline = time.monotonic() + 60
    with guard.client() as client:
        while True:
            deliveries = client.get("/v1/alerts", params={"limit": 1000}).json()
            if all(d["status"] == "sent" for d in deliveries) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert all(d["status"] == "sent" for d in deliveries), deliveries
    kinds: dict[str, set[str]] = {}
    for delivery in deliveries:
        kinds.setdefault(delivery["rollout_id"], set()).add(delivery["kind"])
    for rollout_id, view in views.items():
        expected = (
            {"promoted"}
            if view["state"] == "promoted"
            else {"rollback_started", "rollback_verified"}
        )
        assert expected <= kinds.get(rollout_id, set()), (rollout_id, kinds.get(rollout_id))
    keys = {
        value
        for received in fleet.receiver.requests()
        for name, value in received.headers.items()
        if name.lower() == "idempotency-key"
    }
    missing = {d["dedup_key"] for d in deliveries} - keys
    assert not missing, missing
    received = len(fleet.receiver.requests())
    return f"{len(deliveries)} alert deliveries, {received} requests at the receiver"
