"""The object store: the simulator's etcd plus the generic registry logic of the API server.

Everything that mutates state (HTTP handlers, ``KubeApiSimulator.apply`` and the controllers)
goes through here under one re-entrant lock, so resourceVersion ordering, generation bumps and
optimistic concurrency behave as one consistent cluster.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from guard.sim.kubeapi import errors
from guard.sim.kubeapi.defaults import ClusterIPAllocator, apply_defaults
from guard.sim.kubeapi.patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, apply_patch
from guard.sim.kubeapi.resources import ALL, NAMESPACES, PODS, SERVICES, ResourceType
from guard.sim.kubeapi.selectors import (
    fields_match,
    from_label_selector,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    render,
)
from guard.sim.kubeapi.util import new_uid, random_suffix, rfc3339
from guard.sim.kubeapi.validation import validate

JSON = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Strategic merge patch only exists for compiled-in types; custom resources reject it.
BUILT_IN_GROUPS = ("", "apps", "coordination.k8s.io")
_SERVER_FIELDS = ("uid", "creationTimestamp", "generation", "deletionTimestamp")


def strip_nulls(value: Any) -> Any:
    """JSON ``null`` decodes to a Go zero value, i.e. the field is simply absent."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value if v is not None]
    return value


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._data: dict[ResourceType, dict[tuple[str, str], JSON]] = {rt: {} for rt in ALL}
        self._rv = 0
        self._ips = ClusterIPAllocator()
        for ns in SYSTEM_NAMESPACES:
            self._ensure_namespace(ns)

    # ------------------------------------------------------------------ reads

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def peek(self, rt: ResourceType, ns: str, name: str) -> JSON | None:
        """Live reference for controllers already holding the lock; never mutate it."""
        return self._data[rt].get((ns if rt.namespaced else "", name))

    def items(self, rt: ResourceType, ns: str | None = None) -> list[JSON]:
        """Live references in etcd key order (namespace, then name)."""
        bucket = self._data[rt]
        return [bucket[k] for k in sorted(bucket) if ns is None or k[0] == ns]

    def get(self, rt: ResourceType, ns: str, name: str) -> JSON:
        with self.lock:
            obj = self.peek(rt, ns, name)
            if obj is None:
                raise errors.not_found(rt, name)
            return copy.deepcopy(obj)

    def list(
        self,
        rt: ResourceType,
        ns: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[JSON], str]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt.kind)
        with self.lock:
            found = [
                copy.deepcopy(o)
                for o in self.items(rt, ns)
                if labels_match(labels, o["metadata"].get("labels")) and fields_match(fields, o)
            ]
            return found, self.resource_version

    # ------------------------------------------------------------------ low-level writes

    def commit(self, rt: ResourceType, obj: JSON, old: JSON | None = None) -> JSON:
        """Persist ``obj``; no-op writes keep the old resourceVersion like the API server."""
        meta = obj["metadata"]
        if old is not None:
            unchanged = {**obj, "metadata": {**meta, "resourceVersion": None}} == {
                **old,
                "metadata": {**old["metadata"], "resourceVersion": None},
            }
            if unchanged:
                return old
            if rt.has_generation and old.get("spec") != obj.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._data[rt][(meta.get("namespace", "") if rt.namespaced else "", meta["name"])] = obj
        return obj

    def insert(self, rt: ResourceType, obj: JSON) -> JSON:
        """Create without validation: used by controllers whose output is trusted."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", new_uid())
        meta.setdefault("creationTimestamp", rfc3339())
        if rt.has_generation:
            meta.setdefault("generation", 1)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return self.commit(rt, obj)

    def remove(self, rt: ResourceType, ns: str, name: str) -> JSON | None:
        obj = self._data[rt].pop((ns if rt.namespaced else "", name), None)
        if obj is not None:
            self._rv += 1
            if rt is SERVICES:
                self._ips.release(obj.get("spec", {}).get("clusterIP"))
            if rt is NAMESPACES:
                for other in ALL:
                    if other.namespaced:
                        for key in [k for k in self._data[other] if k[0] == name]:
                            self.remove(other, *key)
        return obj

    def _ensure_namespace(self, ns: str) -> None:
        if ns and self.peek(NAMESPACES, "", ns) is None:
            obj: JSON = {"metadata": {"name": ns}}
            apply_defaults(NAMESPACES, obj, None, self._ips)
            self.insert(NAMESPACES, obj)

    # ------------------------------------------------------------------ API semantics

    def _check_body(self, rt: ResourceType, body: Any, ns: str, name: str | None) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                "expected an object"
            )
        obj: JSON = dict(strip_nulls(body))
        if (
            obj.get("apiVersion", rt.api_version) != rt.api_version
            or obj.get("kind", rt.kind) != rt.kind
        ):
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({rt.api_version})"
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace", ns) != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
        if name is not None and meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        if name is not None:
            meta["name"] = name
        return obj

    def create(self, rt: ResourceType, ns: str, body: Any, dry_run: bool = False) -> JSON:
        obj = self._check_body(rt, body, ns, None)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        with self.lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{random_suffix()}"
            name = str(meta.get("name") or "")
            if name and self.peek(rt, ns, name) is not None:
                raise errors.already_exists(rt, name)
            for key in (*_SERVER_FIELDS, "managedFields"):
                meta.pop(key, None)
            meta["uid"] = new_uid()
            meta["creationTimestamp"] = rfc3339()
            if rt.has_generation:
                meta["generation"] = 1
            if rt.has_status:
                obj.pop("status", None)
            apply_defaults(rt, obj, None, self._ips)
            if rt.has_status:
                obj.setdefault("status", {})
            validate(rt, obj)
            if dry_run:
                return obj
            if rt.namespaced:
                self._ensure_namespace(ns)
            return copy.deepcopy(self.commit(rt, obj))

    def update(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        obj = self._check_body(rt, body, ns, name)
        with self.lock:
            old = self.peek(rt, ns, name)
            if old is None:
                raise errors.not_found(rt, name)
            meta, old_meta = obj["metadata"], old["metadata"]
            rv = meta.get("resourceVersion")
            if rv and rv != old_meta["resourceVersion"]:
                raise errors.conflict(rt, name)
            if meta.get("uid") and meta["uid"] != old_meta["uid"]:
                raise errors.conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {meta['uid']}, UID in "
                    f"object meta: {old_meta['uid']}",
                )
            if subresource == "status":
                new = copy.deepcopy(old)
                new["status"] = obj.get("status", {})
            else:
                new = obj
                meta.pop("managedFields", None)
                for key in _SERVER_FIELDS:
                    if key in old_meta:
                        meta[key] = old_meta[key]
                    else:
                        meta.pop(key, None)
                if rt.has_status:
                    new["status"] = copy.deepcopy(old.get("status", {}))
                apply_defaults(rt, new, old, self._ips)
            new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
            validate(rt, new, old)
            if dry_run:
                return new
            return copy.deepcopy(self.commit(rt, new, old))

    def patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        if rt.group not in BUILT_IN_GROUPS and content_type.startswith(STRATEGIC_MERGE_PATCH):
            raise errors.ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}, application/apply-patch+yaml",
            )
        with self.lock:
            current = self.get(rt, ns, name)
            patched = apply_patch(content_type, current, body)
            return self.update(rt, ns, name, patched, subresource, dry_run)

    def delete(self, rt: ResourceType, ns: str, name: str, options: Any = None) -> JSON:
        pre = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
        dry_run = bool(isinstance(options, dict) and options.get("dryRun"))
        with self.lock:
            obj = self.peek(rt, ns, name)
            if obj is None:
                raise errors.not_found(rt, name)
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise errors.conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                    f"meta: {meta['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(rt, name)
            if not dry_run:
                self.remove(rt, ns, name)
            gone = copy.deepcopy(obj)
        if rt in (PODS, SERVICES, NAMESPACES):
            gone["metadata"]["deletionTimestamp"] = rfc3339()
            if rt is PODS:
                gone["metadata"]["deletionGracePeriodSeconds"] = 0
            if rt is NAMESPACES:
                gone["status"] = {"phase": "Terminating"}
            return gone
        return errors.success_status(rt, name, str(meta["uid"]))

    def apply(self, rt: ResourceType, obj: JSON) -> JSON:
        """Create-or-replace for seeding; ignores any stale resourceVersion in ``obj``."""
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        ns = str(meta.get("namespace") or "default") if rt.namespaced else ""
        with self.lock:
            if self.peek(rt, ns, str(meta.get("name", ""))) is None:
                return self.create(rt, ns, body)
            return self.update(rt, ns, str(meta["name"]), body)

    # ------------------------------------------------------------------ scale subresource

    def get_scale(self, rt: ResourceType, ns: str, name: str) -> JSON:
        obj = self.get(rt, ns, name)
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {
                "replicas": obj.get("status", {}).get("replicas", 0),
                "selector": render(from_label_selector(obj["spec"].get("selector"))),
            },
        }

    def update_scale(
        self, rt: ResourceType, ns: str, name: str, body: Any, dry_run: bool = False
    ) -> JSON:
        if not isinstance(body, dict) or body.get("kind", "Scale") != "Scale":
            raise errors.bad_request("expected a Scale object")
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        replicas = (body.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas}: must be greater than or equal to 0",
            )
        with self.lock:
            obj = self.get(rt, ns, name)
            rv = meta.get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(rt, name)
            obj["spec"]["replicas"] = replicas
            self.update(rt, ns, name, obj, dry_run=dry_run)
            return self.get_scale(rt, ns, name)

    def patch_scale(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        dry_run: bool = False,
    ) -> JSON:
        with self.lock:
            patched = apply_patch(content_type, self.get_scale(rt, ns, name), body)
            return self.update_scale(rt, ns, name, patched, dry_run)
