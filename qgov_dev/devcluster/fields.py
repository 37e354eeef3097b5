"""Unknown fields, as the API server's field validation finds and drops them.

A real server decodes every write into its type, so a field the type does not know is dropped;
with `fieldValidation=Strict` (what `kubectl apply` and `kubectl create` send) the write is
refused instead, and with `Warn` (the default) each dropped field comes back as a warning.
Without this a typo such as `spec.warnAtt` would be stored, or dropped in silence, and pass
every test. Core types are checked at their top level and in metadata (their spec and status
are open here); custom resources against their CRD's schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import openapi
from . import schema as schemas

if TYPE_CHECKING:
    from .store import ResourceType

_TOP = {"apiVersion", "kind", "metadata"}
_META = set(openapi.OBJECT_META["properties"])


def _dropped(before: Any, after: Any, path: str) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key, value in before.items():
            where = f"{path}.{key}" if path else key
            found += [where] if key not in after else _dropped(value, after[key], where)
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after, strict=True)) for p in _dropped(b, a, f"{path}[{i}]")]
    return []


def unknown(rtype: ResourceType, version: str, obj: dict[str, Any]) -> list[str]:
    """The paths of obj's fields its type does not declare: `dta`, `metadata.lables`, `spec.warnAtt`."""
    if not isinstance(obj, dict):
        return []
    meta = obj.get("metadata")
    found = [f"metadata.{k}" for k in meta if k not in _META] if isinstance(meta, dict) else []
    if rtype.key in openapi.CORE_FIELDS:
        known = _TOP | set(openapi.CORE_FIELDS[rtype.key])
        return [k for k in obj if k not in known] + found
    schema = rtype.schemas.get(version)
    if not schema:
        return found
    return _dropped({k: v for k, v in obj.items() if k not in _TOP},
                    schemas.prune({k: v for k, v in obj.items() if k not in _TOP}, schema, top=True), "") + found


def drop(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """obj without the unknown fields of a core type or of metadata (CRD schemas prune the rest)."""
    if isinstance(obj.get("metadata"), dict):
        obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k in _META}
    if rtype.key in openapi.CORE_FIELDS:
        known = _TOP | set(openapi.CORE_FIELDS[rtype.key])
        return {k: v for k, v in obj.items() if k in known}
    return obj
