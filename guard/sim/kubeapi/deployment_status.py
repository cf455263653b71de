"""Deployment status as the upstream controller computes it (``calculateStatus``,
``syncRolloutStatus``, ``DeploymentTimedOut``).

``kubectl rollout status`` and the product both judge rollouts from these fields, including the
omission of zero-valued counters (they are ``omitempty`` in the Go types).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from guard.sim.kubeapi import rollout_math as rm
from guard.sim.kubeapi.util import now, parse_time

JSON = dict[str, Any]


def calculate_status(all_rss: list[JSON | None], new_rs: JSON | None, d: JSON) -> JSON:
    available = rm.sum_status(all_rss, "availableReplicas")
    values = {
        "observedGeneration": d["metadata"].get("generation", 1),
        "replicas": rm.sum_status(all_rss, "replicas"),
        "updatedReplicas": rm.sum_status([new_rs], "replicas"),
        "readyReplicas": rm.sum_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(rm.sum_spec(all_rss) - available, 0),
        "collisionCount": (d.get("status") or {}).get("collisionCount", 0),
    }
    status: JSON = {k: v for k, v in values.items() if v}
    conditions = copy.deepcopy((d.get("status") or {}).get("conditions"))
    if conditions:
        status["conditions"] = conditions
    if available >= rm.replicas(d) - rm.max_unavailable(d):
        cond = rm.new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    else:
        cond = rm.new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    rm.set_condition(status, cond)
    return status


def rollout_status(all_rss: list[JSON | None], new_rs: JSON | None, d: JSON) -> JSON:
    """``syncRolloutStatus``: the status (incl. Progressing condition) the controller writes."""
    status = calculate_status(all_rss, new_rs, d)
    if not rm.has_progress_deadline(d):
        rm.remove_condition(status, "Progressing")
    current = rm.get_condition(status, "Progressing")
    complete = (
        status.get("replicas", 0) == status.get("updatedReplicas", 0)
        and current is not None
        and current.get("reason") == "NewReplicaSetAvailable"
    )
    what = (
        f'ReplicaSet "{new_rs["metadata"]["name"]}"'
        if new_rs
        else f'Deployment "{d["metadata"]["name"]}"'
    )
    if rm.has_progress_deadline(d) and not complete:
        if rm.deployment_complete(d, status):
            cond = rm.new_condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f"{what} has successfully progressed.",
            )
            rm.set_condition(status, cond)
        elif rm.deployment_progressing(d, status):
            cond = rm.new_condition(
                "Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing."
            )
            if current is not None:
                if current["status"] == "True":
                    cond["lastTransitionTime"] = current["lastTransitionTime"]
                rm.remove_condition(status, "Progressing")
            rm.set_condition(status, cond)
        elif timed_out(d, status):
            cond = rm.new_condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f"{what} has timed out progressing.",
            )
            rm.set_condition(status, cond)
    return status


def timed_out(d: JSON, status: JSON) -> bool:
    cond = rm.get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_time(str(cond.get("lastUpdateTime")))
    return since + timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"])) < now()
