"""Shape checks for `gateway.networking.k8s.io/v1` HTTPRoutes.

kubernetes-validate only ships schemas of built-in kinds, so the simulator checks the parts of
the Gateway API CRD's OpenAPI schema that a traffic split touches (parentRefs, rules, matches,
backendRefs and their weights, with the CRD's limits), and rejects unknown fields there as the
API server's structural-schema pruning plus `fieldValidation=Strict` would.
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]
Cause = tuple[str, str, str]

MAX_WEIGHT = 1_000_000
_SPEC_KEYS = {"parentRefs", "hostnames", "rules"}
_RULE_KEYS = {
    "name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"
}  # fmt: skip
_BACKEND_KEYS = {"group", "kind", "name", "namespace", "port", "weight", "filters"}
_PARENT_KEYS = {"group", "kind", "namespace", "name", "sectionName", "port"}


def _unknown(obj: JSON, known: set[str], field: str) -> list[Cause]:
    return [
        ("FieldValueInvalid", f"{field}.{key}".lstrip("."), f'unknown field "{key}"')
        for key in sorted(set(obj) - known)
    ]


def _invalid(field: str, value: Any, why: str) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {json.dumps(value)}: {why}")


def _backend_causes(ref: Any, field: str) -> list[Cause]:
    if not isinstance(ref, dict):
        return [_invalid(field, ref, "must be an object")]
    causes = _unknown(ref, _BACKEND_KEYS, field)
    if not isinstance(ref.get("name"), str) or not ref.get("name"):
        causes.append(("FieldValueRequired", f"{field}.name", "Required value"))
    weight = ref.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
        causes.append(_invalid(f"{field}.weight", weight, f"must be between 0 and {MAX_WEIGHT}"))
    kind = ref.get("kind", "Service")
    port = ref.get("port")
    if kind == "Service" and ref.get("group", "") == "" and port is None:
        causes.append(
            ("FieldValueRequired", f"{field}.port", "Required value: port is required for Service")
        )
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        causes.append(_invalid(f"{field}.port", port, "must be between 1 and 65535, inclusive"))
    return causes


def _rule_causes(rule: Any, field: str) -> list[Cause]:
    if not isinstance(rule, dict):
        return [_invalid(field, rule, "must be an object")]
    causes = _unknown(rule, _RULE_KEYS, field)
    refs = rule.get("backendRefs") or []
    if not isinstance(refs, list) or len(refs) > 16:
        return [*causes, _invalid(f"{field}.backendRefs", refs, "must be a list of at most 16")]
    for i, ref in enumerate(refs):
        causes += _backend_causes(ref, f"{field}.backendRefs[{i}]")
    return causes


def httproute_causes(obj: JSON) -> list[Cause]:
    """Every shape problem of an HTTPRoute; empty when the simulator accepts it."""
    causes = _unknown(obj, {"apiVersion", "kind", "metadata", "spec", "status"}, "")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("FieldValueRequired", "spec", "Required value")]
    causes += _unknown(spec, _SPEC_KEYS, "spec")
    parents = spec.get("parentRefs") or []
    if not isinstance(parents, list) or len(parents) > 32:
        causes.append(_invalid("spec.parentRefs", parents, "must be a list of at most 32"))
    else:
        for i, parent in enumerate(parents):
            field = f"spec.parentRefs[{i}]"
            if not isinstance(parent, dict) or not parent.get("name"):
                causes.append(("FieldValueRequired", f"{field}.name", "Required value"))
            else:
                causes += _unknown(parent, _PARENT_KEYS, field)
    rules = spec.get("rules", [{}])
    if not isinstance(rules, list) or len(rules) > 16:
        return [*causes, _invalid("spec.rules", rules, "must be a list of at most 16")]
    for i, rule in enumerate(rules):
        causes += _rule_causes(rule, f"spec.rules[{i}]")
    return causes
