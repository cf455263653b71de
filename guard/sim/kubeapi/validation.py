"""Schema validation (official OpenAPI-derived schemas) plus the API server's semantic checks.

``kubernetes_validate.validate`` re-reads and re-parses a 1.8 MB definitions file on every
call (~8 ms); the simulator validates every write, so it builds the same strict Draft 2020-12
validator once per kind and reuses it, falling back to the library call if its layout changes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from guard.sim.kubeapi.errors import invalid
from guard.sim.kubeapi.httproutes import httproute_causes
from guard.sim.kubeapi.resources import (
    DEPLOYMENTS,
    HTTPROUTES,
    NAMESPACES,
    REPLICASETS,
    SERVICES,
    ResourceType,
)
from guard.sim.kubeapi.selectors import from_label_selector, labels_match

JSON = dict[str, Any]
Cause = tuple[str, str, str]  # (reason, field, message)

SCHEMA_VERSION: str = kubernetes_validate.latest_version()

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PERCENT = re.compile(r"^[0-9]+%$")


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    """Replicates ``kubernetes_validate.validate``'s schema lookup, but only once per kind."""
    try:
        schema_dir = f"kubernetes-json-schema/v{SCHEMA_VERSION}-local-strict"
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        schema = kv_utils.schema_contents(
            f"{schema_dir}/{kind.lower()}-{group_version}.json", SCHEMA_VERSION
        )
        definitions = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", SCHEMA_VERSION)
        registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
        registry = Resource.from_contents(definitions) @ registry
        validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
            schema, registry=registry
        )
        return validator
    except Exception:  # pragma: no cover - only if the library changes its layout
        return None


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_causes(obj: JSON) -> list[Cause]:
    validator = _validator(str(obj.get("apiVersion")), str(obj.get("kind")))
    if validator is None:
        try:
            kubernetes_validate.validate(obj, desired_version=SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            return [("FieldValueInvalid", _field(err.absolute_path), str(err.message))]
        return []
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return []
    field = _field(error.absolute_path)
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else "?"
        return [("FieldValueRequired", f"{field}.{name}" if field else name, "Required value")]
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        name = f"{field}.{extra[0]}" if field and extra else (extra[0] if extra else field)
        return [("FieldValueInvalid", name, f'unknown field "{name}"')]
    value = json.dumps(error.instance)
    return [("FieldValueInvalid", field, f"Invalid value: {value}: {error.message}")]


# ------------------------------------------------------------------------- semantic checks


def _name_causes(rt: ResourceType, obj: JSON) -> list[Cause]:
    name = str(obj.get("metadata", {}).get("name") or "")
    if not name:
        return [
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    if rt is SERVICES:
        if len(name) > 63 or not _LABEL_1035.match(name):
            return [
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": a DNS-1035 label must consist of lower '
                    "case alphanumeric characters or '-', start with an alphabetic "
                    "character, and end with an alphanumeric character",
                )
            ]
    elif rt is NAMESPACES:
        if len(name) > 63 or not _LABEL_1123.match(name):
            return [
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                    "lower case alphanumeric characters or '-', and must start and end with "
                    "an alphanumeric character",
                )
            ]
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        return [
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                "lower case alphanumeric characters, '-' or '.', and must start and end "
                "with an alphanumeric character",
            )
        ]
    return []


def _label_causes(labels: Any, field: str) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (labels or {}).items():
        prefix, _, name = str(key).rpartition("/")
        if (
            (prefix and not _SUBDOMAIN.match(prefix))
            or len(name) > 63
            or not name
            or not _LABEL_VALUE.match(name)
        ):
            causes.append(
                (
                    "FieldValueInvalid",
                    field,
                    f'Invalid value: "{key}": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.'",
                )
            )
        if len(str(value)) > 63 or not _LABEL_VALUE.match(str(value)):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{field}",
                    f'Invalid value: "{value}": a valid label must be an empty string or '
                    "consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
    return causes


def _pod_spec_causes(spec: JSON, field: str, template: bool) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("FieldValueRequired", f"{field}.containers", "Required value"))
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, ctr in enumerate(spec.get(kind) or []):
            path = f"{field}.{kind}[{i}]"
            name = str(ctr.get("name") or "")
            if not name:
                causes.append(("FieldValueRequired", f"{path}.name", "Required value"))
            elif not _LABEL_1123.match(name) or len(name) > 63:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{path}.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 label must '
                        "consist of lower case alphanumeric characters or '-'",
                    )
                )
            elif name in seen:
                causes.append(("FieldValueDuplicate", f"{path}.name", f'Duplicate value: "{name}"'))
            seen.add(name)
            if not ctr.get("image"):
                causes.append(("FieldValueRequired", f"{path}.image", "Required value"))
            for j, port in enumerate(ctr.get("ports") or []):
                number = port.get("containerPort")
                if not isinstance(number, int) or not 0 < number < 65536:
                    causes.append(
                        (
                            "FieldValueInvalid",
                            f"{path}.ports[{j}].containerPort",
                            f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                        )
                    )
    if template and spec.get("restartPolicy", "Always") != "Always":
        causes.append(
            (
                "FieldValueNotSupported",
                f"{field}.restartPolicy",
                f'Unsupported value: "{spec.get("restartPolicy")}": supported values: "Always"',
            )
        )
    return causes


def _int_or_percent(value: Any, field: str, total_allowed: bool) -> tuple[int | None, list[Cause]]:
    if isinstance(value, int):
        if value < 0:
            return value, [
                (
                    "FieldValueInvalid",
                    field,
                    f"Invalid value: {value}: must be greater than or equal to 0",
                )
            ]
        return value, []
    if isinstance(value, str) and _PERCENT.match(value):
        pct = int(value[:-1])
        if total_allowed and pct > 100:
            return pct, [
                (
                    "FieldValueInvalid",
                    field,
                    f'Invalid value: "{value}": must not be greater than 100%',
                )
            ]
        return pct, []
    return None, [
        (
            "FieldValueInvalid",
            field,
            f"Invalid value: {json.dumps(value)}: a valid percent string must be a numeric "
            "string followed by an ending '%'",
        )
    ]


def _workload_causes(rt: ResourceType, obj: JSON) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        if isinstance(spec.get(key), int) and spec[key] < 0:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"spec.{key}",
                    f"Invalid value: {spec[key]}: must be greater than or equal to 0",
                )
            )
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.selector",
                f"Invalid value: {json.dumps(selector)}: empty selector is invalid for "
                f"{rt.singular}",
            )
        )
    elif not labels_match(from_label_selector(selector), labels):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
            )
        )
    causes += _label_causes(labels, "spec.template.metadata.labels")
    causes += _pod_spec_causes(template.get("spec") or {}, "spec.template.spec", template=True)
    if rt is DEPLOYMENTS:
        causes += _strategy_causes(spec)
    return causes


def _strategy_causes(spec: JSON) -> list[Cause]:
    causes: list[Cause] = []
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type", "RollingUpdate")
    if kind == "Recreate" and strategy.get("rollingUpdate") is not None:
        causes.append(
            (
                "FieldValueForbidden",
                "spec.strategy.rollingUpdate",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
            )
        )
    elif kind == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        surge, c1 = _int_or_percent(
            ru.get("maxSurge", "25%"), "spec.strategy.rollingUpdate.maxSurge", False
        )
        unavail, c2 = _int_or_percent(
            ru.get("maxUnavailable", "25%"), "spec.strategy.rollingUpdate.maxUnavailable", True
        )
        causes += c1 + c2
        if surge == 0 and unavail == 0 and not c1 and not c2:
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                )
            )
    elif kind != "Recreate":
        causes.append(
            (
                "FieldValueNotSupported",
                "spec.strategy.type",
                f'Unsupported value: "{kind}": supported values: "Recreate", "RollingUpdate"',
            )
        )
    deadline, ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
    if isinstance(deadline, int) and isinstance(ready, int) and deadline <= ready:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.progressDeadlineSeconds",
                f"Invalid value: {deadline}: must be greater than minReadySeconds",
            )
        )
    return causes


def _service_causes(obj: JSON) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    ports = spec.get("ports") or []
    if not ports and spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(("FieldValueRequired", "spec.ports", "Required value"))
    for i, port in enumerate(ports):
        number = port.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"spec.ports[{i}].port",
                    f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                )
            )
        if len(ports) > 1 and not port.get("name"):
            causes.append(("FieldValueRequired", f"spec.ports[{i}].name", "Required value"))
    return causes


def validate(rt: ResourceType, obj: JSON, old: JSON | None = None) -> None:
    """Raise a 422 ``Invalid`` error the way the API server's strategy Validate would."""
    causes = httproute_causes(obj) if rt is HTTPROUTES else _schema_causes(obj)
    if not causes:
        causes = _name_causes(rt, obj)
        causes += _label_causes(obj.get("metadata", {}).get("labels"), "metadata.labels")
        if rt in (DEPLOYMENTS, REPLICASETS):
            causes += _workload_causes(rt, obj)
            if old is not None and old.get("spec", {}).get("selector") != obj["spec"].get(
                "selector"
            ):
                causes.append(
                    (
                        "FieldValueInvalid",
                        "spec.selector",
                        f"Invalid value: {json.dumps(obj['spec'].get('selector'))}: field "
                        "is immutable",
                    )
                )
        elif rt.kind == "Pod":
            causes += _pod_spec_causes(obj.get("spec") or {}, "spec", template=False)
        elif rt is SERVICES:
            causes += _service_causes(obj)
    if causes:
        raise invalid(rt, str(obj.get("metadata", {}).get("name") or ""), causes)
