"""Pure helpers mirroring ``k8s.io/kubernetes/pkg/controller/deployment/util``.

Names follow the Go functions so the controller code can be checked against upstream line by
line; the rollout's surge/unavailability arithmetic is what the product's analysis relies on.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

from guard.sim.kubeapi.util import rfc3339

JSON = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
MAX_INT32 = 2**31 - 1
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}


def replicas(obj: JSON) -> int:
    return int(obj.get("spec", {}).get("replicas", 1))


def status_int(obj: JSON, key: str) -> int:
    return int(obj.get("status", {}).get(key, 0))


def revision(rs: JSON) -> int:
    try:
        return int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))
    except ValueError:
        return 0


def is_rolling(d: JSON) -> bool:
    return bool(d["spec"].get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate")


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    fraction = int(value.rstrip("%")) * total / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


def resolve_fenceposts(d: JSON) -> tuple[int, int]:
    rolling = d["spec"].get("strategy", {}).get("rollingUpdate") or {}
    total = replicas(d)
    surge = scaled_value(rolling.get("maxSurge", "25%"), total, True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), total, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(d: JSON) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def max_surge(d: JSON) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def sum_spec(rss: Iterable[JSON | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def sum_status(rss: Iterable[JSON | None], key: str) -> int:
    return sum(status_int(rs, key) for rs in rss if rs is not None)


def active(rss: Iterable[JSON | None]) -> list[JSON]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def template_without_hash(template: JSON) -> JSON:
    t = copy.deepcopy(template)
    labels = t.get("metadata", {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return t


def new_rs_new_replicas(d: JSON, all_rss: list[JSON | None], new_rs: JSON | None) -> int:
    if not is_rolling(d):
        return replicas(d)
    current = sum_spec(all_rss)
    new_count = replicas(new_rs) if new_rs is not None else 0
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return new_count
    return new_count + min(max_total - current, replicas(d) - new_count)


def copyable_annotations(d: JSON) -> dict[str, str]:
    annotations = d["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k not in _NOT_COPIED}


def has_progress_deadline(d: JSON) -> bool:
    deadline = d["spec"].get("progressDeadlineSeconds")
    return deadline is not None and deadline != MAX_INT32


# ------------------------------------------------------------------ conditions


def get_condition(status: JSON, kind: str) -> JSON | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def new_condition(kind: str, status: str, reason: str, message: str) -> JSON:
    stamp = rfc3339()
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def remove_condition(status: JSON, kind: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def set_condition(status: JSON, cond: JSON) -> None:
    """``SetDeploymentCondition``: same status and reason is a no-op; same status keeps LTT."""
    current = get_condition(status, cond["type"])
    if current and current["status"] == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current and current["status"] == cond["status"]:
        cond["lastTransitionTime"] = current["lastTransitionTime"]
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def deployment_complete(d: JSON, status: JSON) -> bool:
    want = replicas(d)
    return bool(
        status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
    )


def deployment_progressing(d: JSON, new: JSON) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = new.get("replicas", 0) - new.get("updatedReplicas", 0)
    return bool(
        new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
        or new_old < old_old
        or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
        or new.get("availableReplicas", 0) > old.get("availableReplicas", 0)
    )
