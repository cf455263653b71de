"""Thin adapter over the official Kubernetes client: read snapshots, send patches.

Strategies decide from plain snapshots and return actions; only this module talks to the API
server, so everything above it can be tested and replayed without a cluster.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from guard import cluster as cl
from guard.backoff import backoff_seconds
from guard.config import KubernetesConfig

if TYPE_CHECKING:  # the client itself is imported by `KubeClient`: see its docstring
    from kubernetes.client.exceptions import ApiException

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
ROLLOUT_ANNOTATION = "deploy-guard.io/rollout-id"
HASH_LABEL = "pod-template-hash"
#: Objects per page of a LIST (client-go's pager and kubectl ask for 500 too).
LIST_PAGE = 500
#: The collections the guard reads and writes, as the API server serves them.
DEPLOYMENTS = "/apis/apps/v1/namespaces/{namespace}/deployments"
REPLICA_SETS = "/apis/apps/v1/namespaces/{namespace}/replicasets"
SERVICES = "/api/v1/namespaces/{namespace}/services"
HTTPROUTES = (
    f"/apis/{cl.HTTPROUTE_GROUP}/{cl.HTTPROUTE_VERSION}/namespaces/{{namespace}}/"
    f"{cl.HTTPROUTE_PLURAL}"
)

T = TypeVar("T")


class KubeError(Exception):
    """A Kubernetes call failed; `retryable` says whether the next tick may try again."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class ReplicaSetSnapshot:
    name: str
    revision: int
    pod_template_hash: str
    template: dict[str, Any]
    replicas: int
    available_replicas: int


@dataclass(frozen=True)
class DeploymentSnapshot:
    """The facts `kubectl rollout status` looks at, plus the ReplicaSets of each revision."""

    namespace: str
    name: str
    generation: int
    observed_generation: int
    desired_replicas: int
    replicas: int
    updated_replicas: int
    available_replicas: int
    paused: bool
    revision: int
    template: dict[str, Any]
    conditions: dict[str, dict[str, Any]]
    replica_sets: list[ReplicaSetSnapshot] = field(default_factory=list)

    @property
    def images(self) -> dict[str, str]:
        containers = self.template.get("spec", {}).get("containers", [])
        return {c["name"]: c.get("image", "") for c in containers}

    @property
    def current_replica_set(self) -> ReplicaSetSnapshot | None:
        matches = [rs for rs in self.replica_sets if rs.revision == self.revision]
        return matches[0] if matches else None

    @property
    def progress_deadline_exceeded(self) -> bool:
        progressing = self.conditions.get("Progressing", {})
        return progressing.get("reason") == "ProgressDeadlineExceeded"

    @property
    def complete(self) -> bool:
        """All replicas run the current template and are available; no old pod is left."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == self.desired_replicas
            and self.replicas == self.desired_replicas
            and self.available_replicas == self.desired_replicas
        )

    def describe(self) -> str:
        return (
            f"revision {self.revision}: {self.updated_replicas}/{self.desired_replicas} updated, "
            f"{self.available_replicas} available, {self.replicas} total"
        )


@dataclass(frozen=True)
class NamespaceSnapshot:
    """One namespace as listed at the start of a tick; every rollout in it reads from this."""

    namespace: str
    deployments: dict[str, DeploymentSnapshot] = field(default_factory=dict)
    services: dict[str, cl.ServiceSnapshot] = field(default_factory=dict)
    httproutes: dict[str, cl.RouteSnapshot] = field(default_factory=dict)

    def deployment(self, name: str) -> DeploymentSnapshot | None:
        return self.deployments.get(name)

    def cluster(self, needs: cl.ClusterNeeds) -> cl.ClusterSnapshot:
        """What a strategy declared it needs; absent objects map to None, as on a GET's 404."""
        return cl.ClusterSnapshot(
            deployments={n: self.deployments.get(n) for n in needs.deployments},
            services={n: self.services.get(n) for n in needs.services},
            httproutes={n: self.httproutes.get(n) for n in needs.httproutes},
        )


def pod_template_of(template: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's template as the Deployment's, without the controller-added hash label."""
    restored = copy.deepcopy(template)
    restored.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return restored


class KubeClient:
    """Reads and patches Deployments through the official client, with bounded retries.

    Within one call, 5xx, 429, timeouts and connection errors are retried `retry_attempts`
    times with exponential backoff and jitter, so a blip of the API server costs a second,
    not a tick. A 409 Conflict is retried the same way, and every retry re-reads: patches
    carry no resourceVersion (the server applies them to the object as it is now) and the one
    read-modify-write (`set_route_weights`) reads again inside its retried unit. 409
    AlreadyExists on a create is final here; the caller updates the existing object instead.
    What still fails is raised as `KubeError`; the engine decides how long to keep trying.

    Requests go through the client's `ApiClient` (its kubeconfig and in-cluster auth, TLS,
    URL encoding and REST layer), not its typed APIs (`AppsV1Api` and the rest): since client
    37 those check every call's arguments against pydantic models, and building the models of
    the three APIs the guard used cost each process 26 MB, for answers it reads as JSON.
    """

    def __init__(
        self,
        config: KubernetesConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        # Imported here: the client (about 12 MB of modules) is needed only where a KubeClient is
        # made, and the API's process, which imports this module's snapshots, makes none until
        # a route needs one.
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config
        from kubernetes.client.exceptions import ApiException

        self._api_exception = ApiException
        settings = k8s.Configuration()
        if config.kubeconfig is None:
            k8s_config.load_incluster_config(client_configuration=settings)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(config.kubeconfig),
                context=config.context,
                client_configuration=settings,
            )
        # urllib3 would silently retry timeouts 3 times per attempt; the loop in `_call` is the
        # one place that retries, so its bound is the real one.
        settings.retries = False
        self._api = k8s.ApiClient(settings)
        self._timeout = config.request_timeout_seconds
        self._retries = config.retry_attempts
        self._backoff = config.retry_initial_backoff_seconds
        self._sleep = sleep
        self._jitter = jitter
        self.calls = 0

    def read_deployment(self, namespace: str, name: str) -> DeploymentSnapshot | None:
        try:
            raw = self._call(lambda: self._request("GET", DEPLOYMENTS, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        selector = ",".join(
            f"{k}={v}" for k, v in raw["spec"]["selector"].get("matchLabels", {}).items()
        )
        replica_sets = self._call(
            lambda: self._request(
                "GET", REPLICA_SETS, namespace, query=[("labelSelector", selector)]
            )
        )
        owned = [
            rs
            for rs in replica_sets["items"]
            if any(o.get("uid") == raw["metadata"]["uid"] for o in _owners(rs))
        ]
        return _deployment_snapshot(raw, owned)

    def read_namespace(
        self, namespace: str, *, services: bool = False, httproutes: bool = False
    ) -> NamespaceSnapshot:
        """Every Deployment with its ReplicaSets (and, if asked, Services and HTTPRoutes) of a
        namespace, in one LIST each (of `LIST_PAGE` items a page).

        A tick reads this once per namespace instead of a GET and a LIST per rollout and per
        object a strategy needs, so the calls a tick makes grow only by a page per
        `LIST_PAGE` objects, not with each rollout. Each page becomes snapshots before the next
        is read, so only one page of raw JSON is held at a time: at 1,000 Deployments the
        whole listings, parsed, were the largest part of a tick's memory.
        """
        deployments = self._list(
            DEPLOYMENTS,
            namespace,
            lambda raw: (raw["metadata"]["uid"], _deployment_snapshot(raw, [])),
        )
        replica_sets = self._list(
            REPLICA_SETS,
            namespace,
            lambda raw: (_owners(raw), _replica_set_snapshot(raw)),
        )
        owned: dict[str, list[ReplicaSetSnapshot]] = {
            uid: deployment.replica_sets for uid, deployment in deployments
        }
        for owners, replica_set in replica_sets:
            for owner in owners:
                owned.get(owner.get("uid", ""), []).append(replica_set)
        snapshot = NamespaceSnapshot(
            namespace=namespace, deployments={d.name: d for _, d in deployments}
        )
        if services:
            listed = self._list(SERVICES, namespace, cl.service_snapshot)
            snapshot.services.update({s.name: s for s in listed})
        if httproutes:
            snapshot.httproutes.update(
                {r["metadata"]["name"]: cl.route_snapshot(r) for r in self._list_routes(namespace)}
            )
        return snapshot

    def set_images(
        self, namespace: str, name: str, images: dict[str, str], rollout_id: str
    ) -> None:
        """Strategic merge patch: only the named containers' images change."""
        body = {
            "metadata": {"annotations": {ROLLOUT_ANNOTATION: rollout_id}},
            "spec": {
                "paused": False,
                "template": {
                    "spec": {"containers": [{"name": c, "image": i} for c, i in images.items()]}
                },
            },
        }
        self._call(lambda: self._patch(namespace, name, body))

    def restore_template(self, namespace: str, name: str, template: dict[str, Any]) -> None:
        """What `kubectl rollout undo` does: put the previous pod template back whole."""
        body = [
            {"op": "replace", "path": "/spec/template", "value": template},
            # "add" sets the field whether or not it is there; "replace" fails when absent.
            {"op": "add", "path": "/spec/paused", "value": False},
        ]
        self._call(lambda: self._patch(namespace, name, body))

    def set_paused(self, namespace: str, name: str, paused: bool) -> None:
        self._call(lambda: self._patch(namespace, name, {"spec": {"paused": paused}}))

    # -- more than one Deployment: what canary and blue-green read and change ------------

    def apply_deployment(
        self,
        namespace: str,
        name: str,
        template: dict[str, Any],
        selector: dict[str, str],
        replicas: int,
        rollout_id: str,
    ) -> None:
        """Create the Deployment, or bring an existing one to this template and size."""
        body: Any = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {cl.MANAGED_LABEL: "deploy-guard"},
                "annotations": {ROLLOUT_ANNOTATION: rollout_id},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": template,
            },
        }
        try:
            self._call(lambda: self._request("POST", DEPLOYMENTS, namespace, body=body))
        except KubeError as exc:
            if exc.status != 409:
                raise
            patch = [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/spec/replicas", "value": replicas},
            ]
            self._call(lambda: self._patch(namespace, name, patch))

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self._call(lambda: self._patch(namespace, name, {"spec": {"replicas": replicas}}))

    def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete with its ReplicaSets and pods; already gone is done."""
        self._ignore_404(
            lambda: self._request(
                "DELETE", DEPLOYMENTS, namespace, name, query=[("propagationPolicy", "Background")]
            )
        )

    def set_service_selector(self, namespace: str, name: str, selector: dict[str, str]) -> None:
        """Replace the selector whole, in one update: traffic moves all at once."""
        body = [{"op": "replace", "path": "/spec/selector", "value": selector}]
        self._call(lambda: self._request("PATCH", SERVICES, namespace, name, body=body))

    def apply_service(
        self, namespace: str, name: str, selector: dict[str, str], ports_from: str
    ) -> None:
        """Create a Service with the ports of `ports_from`, or re-select an existing one."""
        ports = self._read_service(namespace, ports_from).ports
        body: Any = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {cl.MANAGED_LABEL: "deploy-guard"}},
            "spec": {
                "selector": selector,
                "ports": [
                    {k: p[k] for k in ("name", "port", "targetPort", "protocol") if k in p}
                    for p in ports
                ],
            },
        }
        try:
            self._call(lambda: self._request("POST", SERVICES, namespace, body=body))
        except KubeError as exc:
            if exc.status != 409:
                raise
            self.set_service_selector(namespace, name, selector)

    def delete_service(self, namespace: str, name: str) -> None:
        self._ignore_404(lambda: self._request("DELETE", SERVICES, namespace, name))

    def set_route_weights(
        self, namespace: str, name: str, stable: str, weights: dict[str, int]
    ) -> None:
        """Set backend weights on the HTTPRoute rules that route to `stable` (see reweighted_rules).

        Read and replace run as one retried unit, so a conflicting writer costs a re-read.
        """

        def update() -> Any:
            route = self._get_route(namespace, name)
            rules = cl.reweighted_rules(route["spec"].get("rules") or [], stable, weights)
            route["spec"]["rules"] = rules
            return self._request("PUT", HTTPROUTES, namespace, name, body=route)

        self._call(update)

    def _read_service(self, namespace: str, name: str) -> cl.ServiceSnapshot:
        raw = self._call(lambda: self._request("GET", SERVICES, namespace, name))
        return cl.service_snapshot(raw)

    def _get_route(self, namespace: str, name: str) -> dict[str, Any]:
        return self._request("GET", HTTPROUTES, namespace, name)

    def _list_routes(self, namespace: str) -> list[dict[str, Any]]:
        """HTTPRoutes of a namespace; none when the Gateway API is not installed (404)."""
        try:
            listed = self._call(lambda: self._request("GET", HTTPROUTES, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return []
            raise
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    def _list(
        self,
        collection: str,
        namespace: str,
        convert: Callable[[dict[str, Any]], T],
    ) -> list[T]:
        """Every item of a namespace's LIST, `LIST_PAGE` items a page, each converted as its
        page arrives.

        The pages are one consistent list (the server serves them all at the first page's
        resourceVersion). When the server no longer holds that version (410 Expired, after a
        compaction), the list starts again from the first page, as client-go's pager does.
        """
        for attempt in range(self._retries + 1):
            converted: list[T] = []
            token: str | None = None
            try:
                while True:
                    query = [("limit", LIST_PAGE)] + ([("continue", token)] if token else [])
                    page = self._call(
                        lambda query=query: self._request(  # type: ignore[misc]
                            "GET", collection, namespace, query=query
                        )
                    )
                    converted.extend(convert(item) for item in page.get("items") or [])
                    token = (page.get("metadata") or {}).get("continue") or None
                    if token is None:
                        return converted
            except KubeError as exc:
                if exc.status != 410 or token is None or attempt == self._retries:
                    raise
        raise AssertionError("unreachable")

    def _ignore_404(self, call: Callable[[], Any]) -> None:
        try:
            self._call(call)
        except KubeError as exc:
            if exc.status != 404:
                raise

    def _patch(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        return self._request("PATCH", DEPLOYMENTS, namespace, name, body=body)

    def _request(
        self,
        method: str,
        collection: str,
        namespace: str,
        name: str | None = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """One request for a collection of a namespace, or for the object `name` in it; the
        answer parsed. A status other than 2xx raises the client's `ApiException` (`_call`
        decides whether to ask again), as its typed methods do."""
        path_params = {"namespace": namespace}
        if name is not None:
            collection += "/{name}"
            path_params["name"] = name
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = _content_type(method, body)
        request = self._api.param_serialize(
            method=method,
            resource_path=collection,
            path_params=path_params,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=self._timeout)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise self._api_exception(http_resp=response)
        parsed: dict[str, Any] = orjson.loads(data)
        return parsed

    def _call(self, call: Callable[[], T]) -> T:
        for attempt in range(1, self._retries + 2):
            self.calls += 1
            try:
                return call()
            except self._api_exception as exc:
                retryable = _retryable(exc)
                if not retryable or attempt > self._retries:
                    raise KubeError(
                        _api_message(exc), status=exc.status, retryable=retryable
                    ) from exc
            except Exception as exc:  # urllib3 connection and timeout errors
                if attempt > self._retries:
                    raise KubeError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
            self._sleep(
                backoff_seconds(attempt, initial=self._backoff, cap=5.0, jitter=self._jitter())
            )
        raise AssertionError("unreachable")


def _content_type(method: str, body: Any) -> str:
    """A list of operations is a JSON Patch; an object patches the way `kubectl patch` does
    by default for built-in kinds (strategic merge); anything else is a whole object."""
    if method != "PATCH":
        return "application/json"
    if isinstance(body, list):
        return "application/json-patch+json"
    return "application/strategic-merge-patch+json"


def _retryable(exc: ApiException) -> bool:
    """Worth asking again: the server was busy or broken, or another writer got there first.
    AlreadyExists is a 409 too, but asking again cannot change its answer."""
    if exc.status == 409:
        return _reason(exc) != "AlreadyExists"
    status = int(exc.status or 0)
    return status == 429 or status >= 500


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("reason", ""))
    except ValueError:
        return ""


def _owners(obj: dict[str, Any]) -> list[dict[str, Any]]:
    owners: list[dict[str, Any]] = obj.get("metadata", {}).get("ownerReferences") or []
    return owners


def _deployment_snapshot(
    raw: dict[str, Any], replica_sets: list[dict[str, Any]]
) -> DeploymentSnapshot:
    meta, spec, status = raw["metadata"], raw["spec"], raw.get("status") or {}
    return DeploymentSnapshot(
        namespace=meta["namespace"],
        name=meta["name"],
        generation=int(meta.get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        desired_replicas=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        paused=bool(spec.get("paused", False)),
        revision=int((meta.get("annotations") or {}).get(REVISION_ANNOTATION, 0)),
        template=spec["template"],
        conditions={c["type"]: c for c in status.get("conditions") or []},
        replica_sets=[_replica_set_snapshot(rs) for rs in replica_sets],
    )


def _replica_set_snapshot(raw: dict[str, Any]) -> ReplicaSetSnapshot:
    meta, status = raw["metadata"], raw.get("status") or {}
    labels = meta.get("labels") or {}
    return ReplicaSetSnapshot(
        name=meta["name"],
        revision=int((meta.get("annotations") or {}).get(REVISION_ANNOTATION, 0)),
        pod_template_hash=labels.get(HASH_LABEL, ""),
        template=raw["spec"]["template"],
        replicas=int(status.get("replicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
    )


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return f"Kubernetes API {exc.status}: {message}"
