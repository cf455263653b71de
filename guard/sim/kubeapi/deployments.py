"""The Deployment controller (``pkg/controller/deployment``) reduced to its observable behaviour.

Rollout decisions in the product are made from what this writes (ReplicaSet sizes, revision
annotations, Deployment status and conditions), so the control flow deliberately follows
upstream's ``syncDeployment`` / ``rolloutRolling`` / ``rolloutRecreate`` / ``sync`` functions.
"""

from __future__ import annotations

import copy
from typing import Any

from guard.sim.kubeapi import rollout_math as rm
from guard.sim.kubeapi.deployment_status import calculate_status, rollout_status
from guard.sim.kubeapi.resources import DEPLOYMENTS, REPLICASETS
from guard.sim.kubeapi.store import Store
from guard.sim.kubeapi.util import pod_template_hash

JSON = dict[str, Any]


def controller_of(obj: JSON) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owner_ref(owner: JSON) -> JSON:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class DeploymentController:
    def __init__(self, store: Store) -> None:
        self.store = store

    def sync_all(self) -> None:
        """One pass over every Deployment, its ReplicaSets found through one owner index (as
        upstream's informer indexes do) rather than a scan of all ReplicaSets per Deployment."""
        owned: dict[str, list[JSON]] = {}
        for rs in self.store.items(REPLICASETS):
            owner = controller_of(rs)
            if owner is not None:
                owned.setdefault(owner, []).append(rs)
        for d in list(self.store.items(DEPLOYMENTS)):
            self.sync(copy.deepcopy(d), owned.get(d["metadata"]["uid"], []))

    # ------------------------------------------------------------------ plumbing

    def _write_deployment(self, d: JSON) -> JSON:
        old = self.store.peek(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"])
        stored = self.store.commit(DEPLOYMENTS, copy.deepcopy(d), old)
        d["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        return d

    def _write_rs(self, rs: JSON) -> None:
        old = self.store.peek(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
        stored = self.store.commit(REPLICASETS, copy.deepcopy(rs), old)
        rs["metadata"].update(
            resourceVersion=stored["metadata"]["resourceVersion"],
            generation=stored["metadata"].get("generation", 1),
        )

    def _scale_rs(self, rs: JSON, size: int, d: JSON) -> bool:
        annotations = rs["metadata"].setdefault("annotations", {})
        desired, most = str(rm.replicas(d)), str(rm.replicas(d) + rm.max_surge(d))
        size_changed = rm.replicas(rs) != size
        if (
            size_changed
            or annotations.get(rm.DESIRED_REPLICAS) != desired
            or annotations.get(rm.MAX_REPLICAS) != most
        ):
            rs["spec"]["replicas"] = size
            annotations[rm.DESIRED_REPLICAS], annotations[rm.MAX_REPLICAS] = desired, most
            self._write_rs(rs)
        return size_changed

    # ------------------------------------------------------------------ syncDeployment

    def sync(self, d: JSON, owned: list[JSON]) -> None:
        rss = [copy.deepcopy(rs) for rs in owned]
        rss.sort(key=lambda rs: (rs["metadata"]["creationTimestamp"], rs["metadata"]["name"]))
        self._check_paused_conditions(d)
        if d["spec"].get("paused") or self._is_scaling_event(d, rss):
            self._sync_scale(d, rss)
        elif rm.is_rolling(d):
            self._rollout_rolling(d, rss)
        else:
            self._rollout_recreate(d, rss)

    def _check_paused_conditions(self, d: JSON) -> None:
        if not rm.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = rm.get_condition(status, "Progressing")
        if cond and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        paused_cond = cond is not None and cond.get("reason") == "DeploymentPaused"
        if d["spec"].get("paused") and not paused_cond:
            new = rm.new_condition(
                "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif not d["spec"].get("paused") and paused_cond:
            new = rm.new_condition(
                "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"
            )
        else:
            return
        rm.set_condition(status, new)
        self._write_deployment(d)

    def _get_all(self, d: JSON, rss: list[JSON], create: bool) -> tuple[JSON | None, list[JSON]]:
        """``getAllReplicaSetsAndSyncRevision``: find (or create) the RS matching the template."""
        template = d["spec"]["template"]
        new_rs = next(
            (rs for rs in rss if rm.template_without_hash(rs["spec"]["template"]) == template), None
        )
        old = [rs for rs in rss if rs is not new_rs]
        new_revision = str(max((rm.revision(rs) for rs in old), default=0) + 1)
        status = d.setdefault("status", {})
        if new_rs is not None:
            meta = new_rs["metadata"]
            annotations = meta.setdefault("annotations", {})
            before = (dict(annotations), new_rs["spec"].get("minReadySeconds", 0))
            annotations.update(rm.copyable_annotations(d))
            if rm.revision(new_rs) < int(new_revision):
                annotations[rm.REVISION] = new_revision
            if d["spec"].get("minReadySeconds", 0):
                new_rs["spec"]["minReadySeconds"] = d["spec"]["minReadySeconds"]
            else:
                new_rs["spec"].pop("minReadySeconds", None)
            if before != (annotations, new_rs["spec"].get("minReadySeconds", 0)):
                self._write_rs(new_rs)
            needs_update = self._set_revision(d, annotations.get(rm.REVISION, new_revision))
            if rm.has_progress_deadline(d) and rm.get_condition(status, "Progressing") is None:
                msg = f'Found new replica set "{meta["name"]}"'
                rm.set_condition(
                    status, rm.new_condition("Progressing", "True", "FoundNewReplicaSet", msg)
                )
                needs_update = True
            if needs_update:
                self._write_deployment(d)
            return new_rs, old
        if not create:
            return None, old
        new_rs = self._create_rs(d, old, new_revision)
        return new_rs, old

    def _set_revision(self, d: JSON, revision: str) -> bool:
        annotations = d["metadata"].setdefault("annotations", {})
        if annotations.get(rm.REVISION) == revision:
            return False
        annotations[rm.REVISION] = revision
        return True

    def _create_rs(self, d: JSON, old: list[JSON], revision: str) -> JSON:
        status = d.setdefault("status", {})
        ns = d["metadata"]["namespace"]
        while True:
            collisions = int(status.get("collisionCount", 0))
            h = pod_template_hash(d["spec"]["template"], collisions)
            name = f"{d['metadata']['name']}-{h}"
            if self.store.peek(REPLICASETS, ns, name) is None:
                break
            status["collisionCount"] = collisions + 1
        template = copy.deepcopy(d["spec"]["template"])
        template["metadata"].setdefault("labels", {})[rm.HASH_LABEL] = h
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[rm.HASH_LABEL] = h
        annotations = rm.copyable_annotations(d)
        annotations.update(
            {
                rm.REVISION: revision,
                rm.DESIRED_REPLICAS: str(rm.replicas(d)),
                rm.MAX_REPLICAS: str(rm.replicas(d) + rm.max_surge(d)),
            }
        )
        spec: JSON = {
            "replicas": rm.new_rs_new_replicas(d, [*old], None),
            "selector": selector,
            "template": template,
        }
        if d["spec"].get("minReadySeconds"):
            spec["minReadySeconds"] = d["spec"]["minReadySeconds"]
        rs: JSON = {
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_ref(d)],
            },
            "spec": spec,
            "status": {"replicas": 0},
        }
        rs = copy.deepcopy(self.store.insert(REPLICASETS, rs))
        self._set_revision(d, revision)
        if rm.has_progress_deadline(d):
            msg = f'Created new replica set "{name}"'
            rm.set_condition(
                status, rm.new_condition("Progressing", "True", "NewReplicaSetCreated", msg)
            )
        self._write_deployment(d)
        return rs

    def _is_scaling_event(self, d: JSON, rss: list[JSON]) -> bool:
        new_rs, old = self._get_all(d, rss, create=False)
        for rs in rm.active([*old, new_rs]):
            desired = rs["metadata"].get("annotations", {}).get(rm.DESIRED_REPLICAS)
            if desired is not None and int(desired) != rm.replicas(d):
                return True
        return False

    # ------------------------------------------------------------------ strategies

    def _rollout_rolling(self, d: JSON, rss: list[JSON]) -> None:
        new_rs, old = self._get_all(d, rss, create=True)
        assert new_rs is not None
        all_rss: list[JSON | None] = [*old, new_rs]
        if self._reconcile_new(all_rss, new_rs, d) or self._reconcile_old(all_rss, old, new_rs, d):
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        if rm.deployment_complete(d, d.get("status") or {}):
            self._cleanup(old, d)
        self._sync_rollout_status(all_rss, new_rs, d)

    def _reconcile_new(self, all_rss: list[JSON | None], new_rs: JSON, d: JSON) -> bool:
        if rm.replicas(new_rs) == rm.replicas(d):
            return False
        if rm.replicas(new_rs) > rm.replicas(d):
            return self._scale_rs(new_rs, rm.replicas(d), d)
        return self._scale_rs(new_rs, rm.new_rs_new_replicas(d, all_rss, new_rs), d)

    def _reconcile_old(
        self, all_rss: list[JSON | None], old: list[JSON], new_rs: JSON, d: JSON
    ) -> bool:
        if rm.sum_spec(old) == 0:
            return False
        min_available = rm.replicas(d) - rm.max_unavailable(d)
        new_unavailable = rm.replicas(new_rs) - rm.status_int(new_rs, "availableReplicas")
        max_scaled_down = rm.sum_spec(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = 0
        for rs in rm.active(old):  # cleanupUnhealthyReplicas, oldest first
            if cleaned >= max_scaled_down:
                break
            unhealthy = rm.replicas(rs) - rm.status_int(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            count = min(max_scaled_down - cleaned, unhealthy)
            self._scale_rs(rs, rm.replicas(rs) - count, d)
            cleaned += count
        available = rm.sum_status(all_rss, "availableReplicas")
        scaled = 0
        if available > min_available:  # scaleDownOldReplicaSetsForRollingUpdate
            total = available - min_available
            for rs in rm.active(old):
                if scaled >= total:
                    break
                count = min(rm.replicas(rs), total - scaled)
                self._scale_rs(rs, rm.replicas(rs) - count, d)
                scaled += count
        return cleaned + scaled > 0

    def _rollout_recreate(self, d: JSON, rss: list[JSON]) -> None:
        new_rs, old = self._get_all(d, rss, create=False)
        all_rss: list[JSON | None] = [*old, new_rs]
        scaled_down = False
        for rs in rm.active(old):
            scaled_down |= self._scale_rs(rs, 0, d)
        if scaled_down or rm.sum_status(old, "replicas") > 0:
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old = self._get_all(d, rss, create=True)
            assert new_rs is not None
            all_rss = [*old, new_rs]
        if self._scale_rs(new_rs, rm.replicas(d), d):
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        if rm.deployment_complete(d, d.get("status") or {}):
            self._cleanup(old, d)
        self._sync_rollout_status(all_rss, new_rs, d)

    def _sync_scale(self, d: JSON, rss: list[JSON]) -> None:
        """``sync``: scaling events and paused deployments; no new ReplicaSet is created."""
        new_rs, old = self._get_all(d, rss, create=False)
        self._scale(d, new_rs, old)
        if d["spec"].get("paused"):
            self._cleanup(old, d)
        all_rss: list[JSON | None] = [*old, new_rs]
        status = calculate_status(all_rss, new_rs, d)
        if status != d.get("status"):
            d["status"] = status
            self._write_deployment(d)

    def _scale(self, d: JSON, new_rs: JSON | None, old: list[JSON]) -> None:
        active = rm.active([*old, new_rs])
        if len(active) <= 1:  # FindActiveOrLatest
            target = active[0] if active else (new_rs or (old[-1] if old else None))
            if target is not None and rm.replicas(target) != rm.replicas(d):
                self._scale_rs(target, rm.replicas(d), d)
            return
        saturated = (
            new_rs is not None
            and rm.replicas(new_rs) == rm.replicas(d)
            and new_rs["metadata"].get("annotations", {}).get(rm.DESIRED_REPLICAS)
            == str(rm.replicas(d))
            and rm.status_int(new_rs, "availableReplicas") == rm.replicas(d)
        )
        if saturated:
            for rs in rm.active(old):
                self._scale_rs(rs, 0, d)
            return
        if not rm.is_rolling(d):
            return
        allowed = rm.replicas(d) + rm.max_surge(d) if rm.replicas(d) > 0 else 0
        to_add = allowed - rm.sum_spec(active)
        created = {id(rs): i for i, rs in enumerate([*old, new_rs])}
        newer_first = to_add > 0
        active.sort(
            key=lambda rs: (-rm.replicas(rs), -created[id(rs)] if newer_first else created[id(rs)])
        )
        sizes, added = [], 0
        for rs in active:
            proportion = 0
            if to_add and rm.replicas(rs) and to_add != added:
                annotated = rs["metadata"].get("annotations", {}).get(rm.MAX_REPLICAS)
                base = int(annotated) if annotated else rm.status_int(d, "replicas")
                fraction = (
                    round(rm.replicas(rs) * allowed / base) - rm.replicas(rs)
                    if rm.replicas(d) and base
                    else -rm.replicas(rs)
                )
                proportion = (
                    min(fraction, to_add - added) if to_add > 0 else max(fraction, to_add - added)
                )
            sizes.append(rm.replicas(rs) + proportion)
            added += proportion
        for i, rs in enumerate(active):
            size = max(sizes[i] + (to_add - added if i == 0 else 0), 0)
            self._scale_rs(rs, size, d)

    def _cleanup(self, old: list[JSON], d: JSON) -> None:
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None or len(old) <= limit:
            return
        for rs in sorted(old, key=lambda r: (rm.revision(r), r["metadata"]["creationTimestamp"]))[
            : len(old) - limit
        ]:
            if rm.replicas(rs) or rm.status_int(rs, "replicas"):
                continue
            if rs["metadata"].get("generation", 1) > rm.status_int(rs, "observedGeneration"):
                continue
            self.store.remove(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _sync_rollout_status(
        self, all_rss: list[JSON | None], new_rs: JSON | None, d: JSON
    ) -> None:
        status = rollout_status(all_rss, new_rs, d)
        if status != d.get("status"):
            d["status"] = status
            self._write_deployment(d)
