"""The fixed set of REST resources the simulator serves.

Routing, discovery, validation and RBAC-style request logging all key off this one table, so a
resource is either fully served or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

CRUD = ("create", "delete", "get", "list", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    has_generation: bool = False
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = CRUD

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """Name used in API server messages, e.g. ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


NAMESPACES = ResourceType(
    "", "v1", "namespaces", "Namespace", False, ("status",), short_names=("ns",)
)
PODS = ResourceType("", "v1", "pods", "Pod", True, ("status",), short_names=("po",))
SERVICES = ResourceType("", "v1", "services", "Service", True, ("status",), short_names=("svc",))
EVENTS = ResourceType("", "v1", "events", "Event", True, short_names=("ev",))
DEPLOYMENTS = ResourceType(
    "apps", "v1", "deployments", "Deployment", True, ("scale", "status"), True, ("deploy",)
)
REPLICASETS = ResourceType(
    "apps", "v1", "replicasets", "ReplicaSet", True, ("scale", "status"), True, ("rs",)
)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True)
# A CRD on a real cluster (Gateway API); its shape is checked in httproutes.py.
HTTPROUTES = ResourceType(
    "gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", True, ("status",), True
)

ALL: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    SERVICES,
    EVENTS,
    DEPLOYMENTS,
    REPLICASETS,
    LEASES,
    HTTPROUTES,
)

_BY_PATH = {(rt.group, rt.version, rt.plural): rt for rt in ALL}
_BY_KIND = {(rt.api_version, rt.kind): rt for rt in ALL}


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def group_versions() -> dict[str, list[str]]:
    """Non-core groups and their versions, in discovery order."""
    out: dict[str, list[str]] = {}
    for rt in ALL:
        if rt.group and rt.version not in out.setdefault(rt.group, []):
            out[rt.group].append(rt.version)
    return out


def in_group_version(group: str, version: str) -> list[ResourceType]:
    return [rt for rt in ALL if rt.group == group and rt.version == version]
