"""The OpenAPI documents kubectl reads: v2 (client-side validation) and v3 (explain, field validation).

kubectl validates a `kind: List` on the client against OpenAPI v2 (a List has no PATCH endpoint
whose `fieldValidation` parameter would let it leave the job to the server), and looks every
item up by `x-kubernetes-group-version-kind`. Core types are described permissively: their
top-level fields and ObjectMeta, with spec and status left open. Custom resources carry their
CRD's schema, converted for v2 as apiextensions-apiserver does. Neither document lists PATCH
bodies for strategic merge patch, so `kubectl apply` keeps computing patches from its compiled-in
types (core) or as JSON merge patches (custom resources), as it does against a real server.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store admits writes through fields.py, which reads the schemas here
    from .store import ResourceType, Store

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
V2_REF, V3_REF = "#/definitions/", "#/components/schemas/"

_OPEN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_STRING: dict[str, Any] = {"type": "string"}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_LIST: dict[str, Any] = {"type": "array", "items": _OPEN}

OBJECT_META: dict[str, Any] = {
    "type": "object", "description": "Standard object's metadata.",
    "properties": {
        **{k: _STRING for k in ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion")},
        "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": _TIME, "deletionTimestamp": _TIME,
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": _MAP, "annotations": _MAP, "ownerReferences": _LIST, "managedFields": _LIST,
        "finalizers": {"type": "array", "items": _STRING},
    },
}

# the top-level fields of each core type (beyond apiVersion, kind and metadata)
CORE_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("", "namespaces"): {"spec": _OPEN, "status": _OPEN},
    ("", "pods"): {"spec": _OPEN, "status": _OPEN},
    ("", "configmaps"): {"data": _MAP, "binaryData": _MAP, "immutable": {"type": "boolean"}},
    ("", "secrets"): {"data": _MAP, "stringData": _MAP, "type": _STRING, "immutable": {"type": "boolean"}},
    ("", "events"): {
        "involvedObject": _OPEN, "related": _OPEN, "source": _OPEN, "series": _OPEN,
        **{k: _STRING for k in ("reason", "message", "type", "action", "reportingComponent", "reportingInstance")},
        "firstTimestamp": _TIME, "lastTimestamp": _TIME, "eventTime": {"type": "string", "format": "date-time"},
        "count": {"type": "integer", "format": "int32"}},
    ("", "serviceaccounts"): {"secrets": _LIST, "imagePullSecrets": _LIST,
                              "automountServiceAccountToken": {"type": "boolean"}},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"spec": _OPEN, "status": _OPEN},
}
_PACKAGES = {"": "io.k8s.api.core", "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"}


def definition_name(rtype: ResourceType, version: str) -> str:
    """The name a real server gives the type's schema: io.k8s.api.core.v1.Pod, dev.qgov.v1alpha1.QiskitBudget."""
    package = _PACKAGES.get(rtype.group) or ".".join(reversed(rtype.group.split(".")))
    return f"{package}.{version}.{rtype.kind}"


def _gvk(rtype: ResourceType, version: str) -> dict[str, str]:
    return {"group": rtype.group, "version": version, "kind": rtype.kind}


def _to_v2(schema: Any) -> Any:
    """A CRD's structural schema as v2 carries it (apiextensions' ToStructuralOpenAPIV2): no
    combinators, and open nodes (preserve-unknown, nullable, int-or-string) lose what kubectl
    would otherwise check in them."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("allOf", "anyOf", "oneOf", "not", "nullable"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _to_v2(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _to_v2(value)
        else:
            out[key] = value
    if schema.get("nullable") or schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if schema.get("nullable") or schema.get("x-kubernetes-preserve-unknown-fields") or \
            schema.get("x-kubernetes-embedded-resource"):
        out.pop("items", None)
        out.pop("properties", None)
    return out


def _kind_schema(rtype: ResourceType, version: str, v2: bool) -> dict[str, Any]:
    ref = (V2_REF if v2 else V3_REF) + META
    if rtype.key in CORE_FIELDS:
        schema: dict[str, Any] = {"type": "object", "properties": copy.deepcopy(CORE_FIELDS[rtype.key])}
    else:
        crd_schema = copy.deepcopy(rtype.schemas.get(version) or {})
        schema = _to_v2(crd_schema) if v2 else crd_schema
        if not schema.get("properties") and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema = {**schema, "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        schema.setdefault("type", "object")
    if "properties" in schema or rtype.key in CORE_FIELDS:
        schema.setdefault("properties", {}).update({
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this "
                                                             "representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource "
                                                       "this object represents."},
            "metadata": {"$ref": ref} if v2 else {"allOf": [{"$ref": ref}], "default": {}},
        })
    schema["x-kubernetes-group-version-kind"] = [_gvk(rtype, version)]
    return schema


def v2_document(store: Store) -> dict[str, Any]:
    """Every served kind's schema in one swagger 2.0 document (definitions only, no paths)."""
    definitions: dict[str, Any] = {META: OBJECT_META}
    for rtype in store.types.values():
        for version in rtype.versions:
            definitions[definition_name(rtype, version)] = _kind_schema(rtype, version, v2=True)
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0-qgov-dev"},
            "paths": {}, "definitions": definitions}


def group_versions(store: Store) -> dict[str, list[ResourceType]]:
    """`api/v1`, `apis/qgov.dev/v1alpha1`, ... and the types each serves."""
    gvs: dict[str, list[ResourceType]] = {}
    for rtype in store.types.values():
        for v in rtype.versions:
            gvs.setdefault(f"apis/{rtype.group}/{v}" if rtype.group else f"api/{v}", []).append(rtype)
    return gvs


def v3_document(gv: str, rtypes: list[ResourceType]) -> dict[str, Any]:
    """One group-version's OpenAPI v3: each kind's schema, and a PATCH that takes `fieldValidation`
    (so kubectl leaves field validation of single objects to the server, which does it)."""
    version = gv.rsplit("/", 1)[1]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {META: OBJECT_META}
    for rtype in rtypes:
        base = f"/{gv}/namespaces/{{namespace}}/{rtype.plural}/{{name}}" if rtype.namespaced else \
            f"/{gv}/{rtype.plural}/{{name}}"
        paths[base] = {"patch": {
            "x-kubernetes-group-version-kind": _gvk(rtype, version), "x-kubernetes-action": "patch",
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                           {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}}],
            "responses": {"200": {"description": "OK"}}}}
        schemas[definition_name(rtype, version)] = _kind_schema(rtype, version, v2=False)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0-qgov-dev"}, "paths": paths,
            "components": {"schemas": schemas}}


def v3_index(store: Store) -> dict[str, Any]:
    """/openapi/v3: each group-version's document, addressed by a hash of its content (kubectl caches by it)."""
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest(v3_document(gv, rtypes))}"}
                      for gv, rtypes in sorted(group_versions(store).items())}}


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:128].upper()
