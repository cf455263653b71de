"""API server defaulting for the served kinds.

Defaults matter beyond looks: the Deployment controller compares pod templates to find the
current ReplicaSet, and a template patched back to an old value must compare equal to the old
ReplicaSet's (defaulted) template, exactly as on a real cluster.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from guard.sim.kubeapi.errors import bad_request
from guard.sim.kubeapi.resources import (
    DEPLOYMENTS,
    LEASES,
    NAMESPACES,
    PODS,
    REPLICASETS,
    SERVICES,
    ResourceType,
)
from guard.sim.kubeapi.util import micro_time, parse_time

JSON = dict[str, Any]


def _container(ctr: JSON) -> None:
    image = str(ctr.get("image") or "")
    if "imagePullPolicy" not in ctr and image:
        last = image.rsplit("/", 1)[-1]
        untagged = ":" not in last and "@" not in last
        ctr["imagePullPolicy"] = (
            "Always" if untagged or last.endswith(":latest") else "IfNotPresent"
        )
    ctr.setdefault("terminationMessagePath", "/dev/termination-log")
    ctr.setdefault("terminationMessagePolicy", "File")
    ctr.setdefault("resources", {})
    for port in ctr.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in ctr.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")


def pod_spec(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for kind in ("initContainers", "containers"):
        for ctr in spec.get(kind) or []:
            _container(ctr)


def _workload(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))


def deployment(obj: JSON) -> None:
    _workload(obj)
    spec = obj["spec"]
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)


class ClusterIPAllocator:
    """Hands out service IPs from the kubeadm default range, never reusing a live one."""

    def __init__(self) -> None:
        self._next = int(ipaddress.IPv4Address("10.96.0.10"))
        self._used: set[str] = set()

    def allocate(self) -> str:
        while str(ipaddress.IPv4Address(self._next)) in self._used:
            self._next += 1
        ip = str(ipaddress.IPv4Address(self._next))
        self._used.add(ip)
        return ip

    def release(self, ip: str | None) -> None:
        if ip:
            self._used.discard(ip)


def service(obj: JSON, old: JSON | None, ips: ClusterIPAllocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_spec = (old or {}).get("spec") or {}
    if "clusterIP" not in spec and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = old_spec.get("clusterIPs", [old_spec["clusterIP"]])
    if spec["type"] != "ExternalName":
        if not spec.get("clusterIP"):
            spec["clusterIP"] = ips.allocate()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


def _lease(obj: JSON) -> None:
    spec = obj.get("spec") or {}
    for key in ("acquireTime", "renewTime"):
        if isinstance(spec.get(key), str):
            try:
                spec[key] = micro_time(parse_time(spec[key]))
            except ValueError as err:
                raise bad_request(f'parsing time "{spec[key]}": {err}') from err


def apply_defaults(rt: ResourceType, obj: JSON, old: JSON | None, ips: ClusterIPAllocator) -> None:
    if rt is DEPLOYMENTS:
        deployment(obj)
    elif rt is REPLICASETS:
        _workload(obj)
    elif rt is PODS:
        pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
    elif rt is SERVICES:
        service(obj, old, ips)
    elif rt is NAMESPACES:
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif rt is LEASES:
        _lease(obj)
