"""Discovery documents (``/version``, ``/api``, ``/apis``, ``APIResourceList``) for served kinds.

Generated from the resource table so that what is advertised is exactly what is served.
"""

from __future__ import annotations

from typing import Any

from guard.sim.kubeapi import resources

JSON = dict[str, Any]
K8S_MAJOR, K8S_MINOR = "1", "37"


def version_info() -> JSON:
    return {
        "major": K8S_MAJOR,
        "minor": K8S_MINOR,
        "emulationMajor": K8S_MAJOR,
        "emulationMinor": K8S_MINOR,
        "minCompatibilityMajor": K8S_MAJOR,
        "minCompatibilityMinor": str(int(K8S_MINOR) - 1),
        "gitVersion": f"v{K8S_MAJOR}.{K8S_MINOR}.0-guard-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> JSON:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in resources.group_versions().items()],
    }


def api_group(name: str) -> JSON | None:
    versions = resources.group_versions().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def api_resource_list(group: str, version: str) -> JSON | None:
    served = resources.in_group_version(group, version)
    if not served:
        return None
    out: list[JSON] = []
    for rt in served:
        entry: JSON = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        out.append(entry)
        for sub in rt.subresources:
            sub_entry: JSON = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            out.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": out,
    }
