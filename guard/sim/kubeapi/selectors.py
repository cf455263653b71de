"""Label and field selectors with the API server's grammar and matching rules.

Kept separate because both the HTTP list path and the controllers (Deployment -> ReplicaSet ->
Pod ownership, ``Scale.status.selector``) need exactly the same semantics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from guard.sim.kubeapi.errors import bad_request

_TERM = re.compile(r"^(?P<neg>!?)\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*(?P<rest>.*)$")
_SET_OP = re.compile(r"^(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)$")
_CMP_OP = re.compile(r"^(?P<op>==|!=|=|>|<)\s*(?P<val>[-A-Za-z0-9_.]*)$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of: =, !=, in, notin, exists, !exists, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op in ("gt", "lt"):
            try:
                number, bound = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return number > bound if self.op == "gt" else number < bound
        return False

    def render(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        sym = {"gt": ">", "lt": "<"}.get(self.op, self.op)
        return f"{self.key}{sym}{self.values[0]}"


Selector = tuple[Requirement, ...]


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in terms if t.strip()]


def parse_label_selector(text: str | None) -> Selector:
    if not text:
        return ()
    reqs: list[Requirement] = []
    for term in _split_terms(text):
        m = _TERM.match(term.strip())
        if not m:
            raise bad_request(f"unable to parse requirement: {term.strip()!r}")
        key, neg, rest = m["key"], bool(m["neg"]), m["rest"].strip()
        if not rest:
            reqs.append(Requirement(key, "!exists" if neg else "exists"))
            continue
        set_op, cmp_op = _SET_OP.match(rest), _CMP_OP.match(rest)
        if neg or not (set_op or cmp_op):
            raise bad_request(f"unable to parse requirement: {term.strip()!r}")
        if set_op:
            values = tuple(v.strip() for v in set_op["vals"].split(",") if v.strip())
            reqs.append(Requirement(key, set_op["op"], values))
        elif cmp_op:
            op = {"==": "=", ">": "gt", "<": "lt"}.get(cmp_op["op"], cmp_op["op"])
            reqs.append(Requirement(key, op, (cmp_op["val"],)))
    return tuple(reqs)


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def from_label_selector(sel: Mapping[str, Any] | None) -> Selector:
    """Convert a ``metav1.LabelSelector`` object; requirements are sorted by key like Go does."""
    if not sel:
        return ()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        reqs.append(
            Requirement(expr["key"], _OPERATORS[expr["operator"]], tuple(expr.get("values") or ()))
        )
    return tuple(sorted(reqs, key=lambda r: r.key))


def render(selector: Selector) -> str:
    return ",".join(r.render() for r in selector)


def labels_match(selector: Selector, labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in selector)


FieldGetter = Callable[[Mapping[str, Any]], str]

_COMMON_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": lambda o: str(o.get("metadata", {}).get("name", "")),
    "metadata.namespace": lambda o: str(o.get("metadata", {}).get("namespace", "")),
}
_POD_FIELDS: dict[str, FieldGetter] = {
    "status.phase": lambda o: str(o.get("status", {}).get("phase", "")),
    "spec.nodeName": lambda o: str(o.get("spec", {}).get("nodeName", "")),
    "spec.restartPolicy": lambda o: str(o.get("spec", {}).get("restartPolicy", "")),
    "status.podIP": lambda o: str(o.get("status", {}).get("podIP", "")),
}

FieldSelector = tuple[tuple[FieldGetter, bool, str], ...]


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    if not text:
        return ()
    fields = dict(_COMMON_FIELDS)
    if kind == "Pod":
        fields.update(_POD_FIELDS)
    out: list[tuple[FieldGetter, bool, str]] = []
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        getter = fields.get(m[1])
        if getter is None:
            raise bad_request(f"field label not supported: {m[1]}")
        out.append((getter, m[2] != "!=", m[3]))
    return tuple(out)


def fields_match(selector: FieldSelector, obj: Mapping[str, Any]) -> bool:
    return all((getter(obj) == value) == equal for getter, equal, value in selector)
