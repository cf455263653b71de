"""The three patch flavours the official client sends: JSON patch, merge patch, strategic merge.

Strategic merge is what ``patch_namespaced_*`` uses for dict bodies, so the list merge keys
below must match the Go struct tags (``patchMergeKey``) of the built-in types, otherwise patching
one container's image would wipe the other containers, which a real cluster never does.
"""

from __future__ import annotations

import copy
from typing import Any

from guard.sim.kubeapi.errors import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
_NAME_KEYED = _CONTAINER_LISTS | {"env", "volumes", "imagePullSecrets", "resourceClaims"}
_FIXED_KEYS = {
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
_PRIMITIVE_MERGE = {"finalizers"}


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


# ---------------------------------------------------------------- RFC 6902 JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _unprocessable(f"invalid array index: {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise _unprocessable(f"array index out of bounds: {idx}")
    return idx


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise _unprocessable(f"doc is missing path: {path!r}")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, allow_end=False)]
        else:
            raise _unprocessable(f"doc is missing path: {path!r}")
    return doc


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise _unprocessable(f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise _unprocessable("cannot remove the document root")
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _unprocessable(f"unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise _unprocessable(f"doc is missing path: {path!r}")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise _unprocessable(f"missing value for {kind} operation at {path!r}")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _walk(doc, _pointer(path), path)  # must exist
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "test":
            if _walk(doc, _pointer(path), path) != op["value"]:
                raise _unprocessable(f"testing value {path} failed: test failed")
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise _unprocessable(f"missing from for {kind} operation")
            value = copy.deepcopy(_walk(doc, _pointer(source), source))
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, path, value)
        else:
            raise _unprocessable(f"Unexpected kind: {kind}")
    return doc


# ---------------------------------------------------------------- RFC 7386 merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- strategic merge patch


def merge_key(field: str, path: tuple[str, ...]) -> str | None:
    if field in _NAME_KEYED:
        return "name"
    if field == "ports":
        return "containerPort" if _CONTAINER_LISTS.intersection(path) else "port"
    return _FIXED_KEYS.get(field)


def _strip(value: Any) -> Any:
    """Drop directive keys from values that have no original to merge with."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [
            _strip(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")
        ]
    return value


def _merge_map(orig: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return None
    if directive is not None:
        raise bad_request(f"Unknown patch type: {directive}")
    result = copy.deepcopy(orig)
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in (value or [])]
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            merged = _merge_map(current, value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _merge_list(current, value, key, (*path, key))
        else:
            result[key] = _strip(value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(orig: list[Any], patch: list[Any], field: str, path: tuple[str, ...]) -> list[Any]:
    if field in _PRIMITIVE_MERGE:
        return list(orig) + [v for v in patch if v not in orig]
    key = merge_key(field, path[:-1])
    if key is None:
        return [_strip(v) for v in patch]
    if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
        return [_strip(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    result = copy.deepcopy(orig)
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"unable to merge list {field}: element is not an object")
        matches = [
            i for i, x in enumerate(result) if isinstance(x, dict) and x.get(key) == item.get(key)
        ]
        if item.get("$patch") == "delete":
            result = [x for i, x in enumerate(result) if i not in matches]
        elif matches:
            merged = _merge_map(result[matches[0]], item, path)
            if merged is None:
                del result[matches[0]]
            else:
                result[matches[0]] = merged
        else:
            result.append(_strip(item))
    return result


def strategic_merge_patch(target: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch body must be a JSON object")
    merged = _merge_map(target, patch, ())
    return merged if isinstance(merged, dict) else {}


def apply_patch(content_type: str, target: dict[str, Any], body: Any) -> dict[str, Any]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        result = json_patch(target, body)
    elif media == MERGE_PATCH:
        result = merge_patch(target, body)
    elif media == STRATEGIC_MERGE_PATCH:
        result = strategic_merge_patch(target, body)
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(PATCH_TYPES)}",
        )
    if not isinstance(result, dict):
        raise _unprocessable("patch result is not an object")
    return result
