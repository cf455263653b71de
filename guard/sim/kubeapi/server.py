"""HTTP front end: REST path routing onto the store, discovery, faults and request logging.

One catch-all route parses Kubernetes REST paths itself, because the API's URL grammar
(``/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`` and friends) maps poorly onto
per-endpoint decorators and every request must pass the same fault/log wrapper.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.requests import ClientDisconnect

from guard.sim.kubeapi import discovery, errors, resources
from guard.sim.kubeapi.errors import ApiError
from guard.sim.kubeapi.paging import Pager
from guard.sim.kubeapi.recording import Recorder, RequestRecord
from guard.sim.kubeapi.resources import ResourceType
from guard.sim.kubeapi.store import Store

JSON = dict[str, Any]
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Target:
    group: str
    version: str
    rt: ResourceType | None
    namespace: str | None
    name: str | None
    subresource: str | None
    plural: str


def resolve(path: str) -> Target | None:
    """Split a resource URL; ``None`` for non-resource URLs (discovery, health)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = resources.by_path(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    plural, name = rest[0], rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    return Target(
        group, version, resources.by_path(group, version, plural), namespace, name, sub, plural
    )


def _verb(method: str, target: Target | None, watch: bool) -> str:
    if target is None or target.name is not None:
        return {"GET": "get", "HEAD": "get", "DELETE": "delete"}.get(
            method, _VERBS.get(method, method.lower())
        )
    if method == "GET":
        return "watch" if watch else "list"
    return "deletecollection" if method == "DELETE" else _VERBS.get(method, method.lower())


class Handler:
    def __init__(self, store: Store, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder
        self.pager = Pager()

    async def __call__(self, request: Request) -> Response:
        method, path, query = request.method, request.url.path, request.query_params
        target = resolve(path)
        watch = query.get("watch", "").lower() in ("1", "true")
        verb = _verb(method, target, watch)
        try:
            # Received whole before any answer, as by an API server: a slow answer still
            # applies the change even if the client is gone by then.
            await request.body()
        except ClientDisconnect:
            return Response(status_code=499)  # gone before the request arrived: nothing done
        fault = self.recorder.take_fault(method, path)
        response: Response
        if fault is not None and fault.delay_seconds > 0:
            await asyncio.sleep(fault.delay_seconds)
        if fault is not None and fault.status:
            if fault.status == 409 and target is not None and target.rt is not None:
                err = errors.conflict(target.rt, target.name or "")
            else:
                err = errors.generic(fault.status)
            response = JSONResponse(err.status(), status_code=err.code)
        else:
            try:
                response = await self._dispatch(request, target, verb)
            except ApiError as err:
                response = JSONResponse(err.status(), status_code=err.code)
        self.recorder.record(
            RequestRecord(
                method=method,
                path=path,
                verb=verb,
                api_group=target.group if target else "",
                resource=target.plural if target else "",
                subresource=target.subresource if target else None,
                namespace=target.namespace if target else None,
                name=target.name if target else None,
                status=response.status_code,
                user_agent=request.headers.get("user-agent", ""),
            )
        )
        return response

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise errors.bad_request(f"error decoding request body: {err}") from err

    async def _dispatch(self, request: Request, target: Target | None, verb: str) -> Response:
        if target is None:
            return self._non_resource(request)
        rt = target.rt
        if rt is None or (target.name is None and target.subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if target.subresource and target.subresource not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = target.namespace or ""
        if rt.namespaced and target.namespace is None and verb != "list":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        q = request.query_params
        dry_run = q.get("dryRun") == "All"
        if verb == "watch":
            raise errors.method_not_allowed(
                "watch is not supported by the Deploy Guard simulator; poll with list"
            )
        if verb == "list":
            return JSONResponse(self._list(rt, target.namespace, q))
        if verb == "create":
            return JSONResponse(self.store.create(rt, ns, await self._body(request), dry_run), 201)
        name = target.name or ""
        sub = target.subresource
        if verb == "get":
            obj = (
                self.store.get_scale(rt, ns, name)
                if sub == "scale"
                else self.store.get(rt, ns, name)
            )
            return JSONResponse(obj)
        if verb == "update":
            body = await self._body(request)
            if sub == "scale":
                return JSONResponse(self.store.update_scale(rt, ns, name, body, dry_run))
            return JSONResponse(self.store.update(rt, ns, name, body, sub, dry_run))
        if verb == "patch":
            body = await self._body(request)
            ctype = request.headers.get("content-type", "")
            if sub == "scale":
                return JSONResponse(self.store.patch_scale(rt, ns, name, ctype, body, dry_run))
            return JSONResponse(self.store.patch(rt, ns, name, ctype, body, sub, dry_run))
        if verb == "delete" and not sub:
            options = await self._body(request)
            if dry_run:
                options = {**(options or {}), "dryRun": ["All"]}
            return JSONResponse(self.store.delete(rt, ns, name, options))
        raise errors.method_not_allowed()

    def _list(self, rt: ResourceType, namespace: str | None, q: Any) -> JSON:
        labels, fields = q.get("labelSelector"), q.get("fieldSelector")
        key = (rt.plural, namespace, labels, fields)
        limit = int(q["limit"]) if q.get("limit", "").isdigit() else 0
        filtered = bool(labels or fields)
        token = q.get("continue")
        if token:
            page = self.pager.next(key, token, limit, filtered)
        else:
            items, rv = self.store.list(rt, namespace, labels, fields)
            page = self.pager.first(key, items, rv, limit, filtered)
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, **page}

    def _non_resource(self, request: Request) -> Response:
        path = request.url.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return PlainTextResponse("ok")
        if path == "/version":
            return JSONResponse(discovery.version_info())
        if path == "/api":
            return JSONResponse(discovery.api_versions(request.url.netloc))
        if path == "/apis":
            return JSONResponse(discovery.api_group_list())
        parts = path.strip("/").split("/")
        doc: JSON | None = None
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.api_resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.api_resource_list(parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return JSONResponse(doc)


def build_app(store: Store, recorder: Recorder) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    handler = Handler(store, recorder)

    @app.api_route("/{full_path:path}", methods=_METHODS, include_in_schema=False)
    async def catch_all(request: Request) -> Response:
        return await handler(request)

    return app
