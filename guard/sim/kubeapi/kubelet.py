"""A scheduler+kubelet stand-in that turns Pod objects into running (or crashing) pods.

Readiness timing is driven per image by ``ImageBehaviour`` so tests and the demo can stage
slow, fast or broken releases; the status shape matches what a real kubelet reports.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from guard.sim.kubeapi.resources import PODS
from guard.sim.kubeapi.store import Store
from guard.sim.kubeapi.util import rfc3339

JSON = dict[str, Any]
NODE_NAME = "sim-node-1"
NODE_IP = "172.18.0.2"
_MAX_BACKOFF = 10.0


@dataclass(frozen=True)
class ImageBehaviour:
    """How containers running ``image`` behave: ready after a delay, or crash-looping forever."""

    ready_delay_seconds: float = 0.5
    broken: bool = False


def _restarts(elapsed: float) -> int:
    """Crash-loop restarts after ``elapsed`` seconds: back-off doubling from 1 s, capped."""
    count, t, gap = 0, 1.0, 1.0
    while t <= elapsed:
        count += 1
        gap = min(gap * 2, _MAX_BACKOFF)
        t += gap
    return count


class Kubelet:
    def __init__(
        self, store: Store, behaviours: dict[str, ImageBehaviour], default_delay: float
    ) -> None:
        self.store = store
        self.behaviours = behaviours
        self.default_delay = default_delay
        self._started: dict[str, float] = {}
        self._ready_since: dict[str, float] = {}
        # uid -> (resourceVersion, behaviours) of a pod found ready and unchanged: its status
        # cannot change until the object or its images' behaviour does, so it is not recomputed.
        self._settled: dict[str, tuple[str, tuple[ImageBehaviour, ...]]] = {}
        self._next_ip = int(ipaddress.IPv4Address("10.244.0.10"))

    def behaviour(self, image: str) -> ImageBehaviour:
        return self.behaviours.get(image) or ImageBehaviour(self.default_delay, False)

    def ready_since(self, uid: str) -> float | None:
        return self._ready_since.get(uid)

    def sync(self) -> None:
        mono = time.monotonic()
        live: set[str] = set()
        for pod in list(self.store.items(PODS)):
            uid = pod["metadata"]["uid"]
            live.add(uid)
            behaviours = tuple(
                self.behaviour(str(c.get("image", ""))) for c in pod["spec"].get("containers", [])
            )
            settled = (pod["metadata"].get("resourceVersion", ""), behaviours)
            if self._settled.get(uid) == settled:
                continue
            started = self._started.setdefault(uid, mono)
            new = self._desired(pod, mono - started)
            ready = all(c["ready"] for c in new["status"].get("containerStatuses", []))
            if ready:
                self._ready_since.setdefault(uid, mono)
            else:
                self._ready_since.pop(uid, None)
            if new != pod:
                self.store.commit(PODS, new, pod)
            elif ready and not any(b.broken for b in behaviours):
                self._settled[uid] = settled
        for gone in set(self._started) - live:
            self._started.pop(gone, None)
            self._ready_since.pop(gone, None)
            self._settled.pop(gone, None)

    def _container_status(self, pod: JSON, ctr: JSON, elapsed: float, started_at: str) -> JSON:
        image = str(ctr.get("image", ""))
        digest = hashlib.sha256(image.encode()).hexdigest()
        cid = hashlib.sha256(f"{pod['metadata']['uid']}/{ctr['name']}".encode()).hexdigest()
        behaviour = self.behaviour(image)
        status: JSON = {
            "name": ctr["name"],
            "image": image,
            "imageID": f"{image.split(':')[0].split('@')[0]}@sha256:{digest}",
            "containerID": f"containerd://{cid}",
            "restartCount": 0,
        }
        if behaviour.broken:
            restarts = _restarts(elapsed)
            status.update(
                ready=False,
                started=False,
                restartCount=restarts,
                state={
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container {ctr['name']} in "
                        "pod {pod['metadata']['name']}",
                    }
                },
            )
            if restarts:
                status["lastState"] = {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "startedAt": started_at,
                        "finishedAt": started_at,
                        "containerID": status["containerID"],
                    }
                }
            return status
        status.update(
            ready=elapsed >= behaviour.ready_delay_seconds,
            started=True,
            state={"running": {"startedAt": started_at}},
        )
        return status

    def _desired(self, pod: JSON, elapsed: float) -> JSON:
        new = copy.deepcopy(pod)
        spec, old_status = new["spec"], pod.get("status") or {}
        spec.setdefault("nodeName", NODE_NAME)
        stamp = old_status.get("startTime") or rfc3339()
        pod_ip = old_status.get("podIP") or self._allocate_ip()
        statuses = [
            self._container_status(pod, c, elapsed, stamp) for c in spec.get("containers", [])
        ]
        not_ready = [s["name"] for s in statuses if not s["ready"]]
        old_conds = {c["type"]: c for c in old_status.get("conditions") or []}

        def cond(kind: str, ok: bool, reason: str | None = None) -> JSON:
            value = "True" if ok else "False"
            prev = old_conds.get(kind)
            out: JSON = {
                "type": kind,
                "status": value,
                "lastProbeTime": None,
                "lastTransitionTime": prev["lastTransitionTime"]
                if prev and prev["status"] == value
                else rfc3339(),
            }
            if not ok and reason:
                out.update(
                    reason=reason,
                    message=f"containers with unready status: [{' '.join(not_ready)}]",
                )
            return out

        new["status"] = {
            "phase": "Running",
            "conditions": [
                cond("PodReadyToStartContainers", True),
                cond("Initialized", True),
                cond("Ready", not not_ready, "ContainersNotReady"),
                cond("ContainersReady", not not_ready, "ContainersNotReady"),
                cond("PodScheduled", True),
            ],
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": stamp,
            "containerStatuses": statuses,
            "qosClass": old_status.get("qosClass", "BestEffort"),
        }
        return new

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return str(ipaddress.IPv4Address(self._next_ip))
