"""Label and field selectors, parsed once and matched against objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    pass


_SET = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


def _split(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def label_selector(text: str | None) -> Matcher:
    if not text:
        return lambda obj: True
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(text):
        if m := _SET.match(part):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",") if v.strip()}
            if op == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _EQ.match(part):
            key, op, value = m[1], m[2], m[3]
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := _EXISTS.match(part):
            neg, key = m[1] == "!", m[2]
            tests.append(lambda labels, k=key, n=neg: (k in labels) != n)
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")

    def match(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


# The fields a field selector may name besides metadata.name and metadata.namespace, per resource
# (group, plural), as the API server's field label conversions have them: any other is refused
# with 400, so a selector that works here works on a real cluster. A name that is not a path of
# the object maps to its path.
SELECTABLE: dict[tuple[str, str], set[str]] = {
    ("", "pods"): {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                   "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
    ("", "events"): {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                     "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                     "reason", "reportingComponent", "source", "type"},
    ("", "secrets"): {"type"},
    ("", "namespaces"): {"status.phase"},
    ("", "nodes"): {"spec.unschedulable"},
}
METADATA_FIELDS = {"metadata.name", "metadata.namespace"}
FIELD_PATHS = {"source": "source.component"}


def field_selector(text: str | None, resource: tuple[str, str] | None = None) -> Matcher:
    """`resource` (group, plural): refuse the fields the API server does not select on for it."""
    if not text:
        return lambda obj: True
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for part in _split(text):
        m = _EQ.match(part) or re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        path, op, value = m[1], m[2], m[3]
        if resource is not None and path not in METADATA_FIELDS | SELECTABLE.get(resource, set()):
            raise SelectorError(f"field label not supported: {path}")
        path = FIELD_PATHS.get(path, path) if resource == ("", "events") else path

        def test(obj: dict[str, Any], p: str = path, o: str = op, v: str = value) -> bool:
            actual = get_path(obj, p)
            actual = "" if actual is None else str(actual)
            return (actual == v) != (o == "!=")

        tests.append(test)
    return lambda obj: all(t(obj) for t in tests)
