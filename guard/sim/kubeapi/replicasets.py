"""ReplicaSet controller and garbage collector.

Pod counts observed through the API during a rollout come from here, so scale-down picks
victims with upstream's ranking (not-ready first, then most recently ready, then newest).
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

from guard.sim.kubeapi.deployments import controller_of, owner_ref
from guard.sim.kubeapi.kubelet import Kubelet
from guard.sim.kubeapi.resources import DEPLOYMENTS, PODS, REPLICASETS
from guard.sim.kubeapi.selectors import from_label_selector, labels_match
from guard.sim.kubeapi.store import Store
from guard.sim.kubeapi.util import random_suffix

JSON = dict[str, Any]


def _is_ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


class ReplicaSetController:
    def __init__(self, store: Store, kubelet: Kubelet) -> None:
        self.store = store
        self.kubelet = kubelet
        self._seq = itertools.count(1)
        self._created: dict[str, int] = {}

    def sync_all(self) -> None:
        pods_by_owner: dict[str, list[JSON]] = {}
        for pod in self.store.items(PODS):
            owner = controller_of(pod)
            if owner:
                pods_by_owner.setdefault(owner, []).append(pod)
        for rs in list(self.store.items(REPLICASETS)):
            self._sync(rs, pods_by_owner.get(rs["metadata"]["uid"], []))

    def _rank(self, pod: JSON) -> tuple[Any, ...]:
        """Smaller sorts first = deleted first (``controller.ActivePodsWithRanks``)."""
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(
            pod.get("status", {}).get("phase", ""), 0
        )
        ready = _is_ready(pod)
        since = self.kubelet.ready_since(pod["metadata"]["uid"]) or 0.0
        restarts = sum(
            c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses") or []
        )
        created = self._created.get(pod["metadata"]["uid"], 0)
        return (bool(pod["spec"].get("nodeName")), phase_rank, ready, -since, -restarts, -created)

    def _sync(self, rs: JSON, pods: list[JSON]) -> None:
        want = int(rs["spec"].get("replicas", 1))
        ns = rs["metadata"]["namespace"]
        if len(pods) < want:
            for _ in range(want - len(pods)):
                pods.append(self._create_pod(rs))
        elif len(pods) > want:
            victims = sorted(pods, key=self._rank)[: len(pods) - want]
            for pod in victims:
                self.store.remove(PODS, ns, pod["metadata"]["name"])
                self._created.pop(pod["metadata"]["uid"], None)
            pods = [p for p in pods if p not in victims]
        self._write_status(rs, pods)

    def _create_pod(self, rs: JSON) -> JSON:
        template = rs["spec"]["template"]
        meta = template.get("metadata") or {}
        name = f"{rs['metadata']['name']}-{random_suffix()}"
        pod: JSON = {
            "metadata": {
                "name": name,
                "generateName": f"{rs['metadata']['name']}-",
                "namespace": rs["metadata"]["namespace"],
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": [owner_ref(rs)],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(meta["annotations"])
        stored = self.store.insert(PODS, pod)
        self._created[stored["metadata"]["uid"]] = next(self._seq)
        return stored

    def _write_status(self, rs: JSON, pods: list[JSON]) -> None:
        min_ready = float(rs["spec"].get("minReadySeconds", 0))
        mono = time.monotonic()
        template_labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        template_selector = from_label_selector({"matchLabels": template_labels})
        ready = [p for p in pods if _is_ready(p)]
        available = [
            p
            for p in ready
            if min_ready <= 0
            or mono - (self.kubelet.ready_since(p["metadata"]["uid"]) or mono) >= min_ready
        ]
        values = {
            "fullyLabeledReplicas": sum(
                labels_match(template_selector, p["metadata"].get("labels")) for p in pods
            ),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status: JSON = {"replicas": len(pods), **{k: v for k, v in values.items() if v}}
        if status != rs.get("status"):
            new = copy.deepcopy(rs)
            new["status"] = status
            self.store.commit(REPLICASETS, new, rs)


def collect_garbage(store: Store) -> None:
    """Background cascading deletion: dependents whose controller owner is gone are removed."""
    alive = {o["metadata"]["uid"] for rt in (DEPLOYMENTS, REPLICASETS) for o in store.items(rt)}
    for rt in (REPLICASETS, PODS):
        for obj in list(store.items(rt)):
            owner = controller_of(obj)
            kind = next(
                (
                    r.get("kind")
                    for r in obj["metadata"].get("ownerReferences") or []
                    if r.get("controller")
                ),
                None,
            )
            if owner and kind in ("Deployment", "ReplicaSet") and owner not in alive:
                store.remove(rt, obj["metadata"]["namespace"], obj["metadata"]["name"])
