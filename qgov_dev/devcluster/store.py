"""The emulator's object store: resource types, objects, resource versions, watch history.

Everything runs on one asyncio loop, so every write is atomic with respect to lists and
watches: a list's resourceVersion and the watch history agree exactly, and a watch started
from a list's resourceVersion misses nothing. Objects are indexed by type and namespace, so
a create or a watch event costs the same at 100 or 5,000 stored objects.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import string
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import fields, labels, timestamps
from . import schema as schemas
from .jsoncopy import copy_json

HISTORY = 20_000  # watch events kept per resource type, for resuming from a resourceVersion


class ApiError(Exception):
    """An answer in the Kubernetes Status format."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


@dataclass
class ResourceType:
    group: str  # "" for the core group
    versions: list[str]
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    status_subresource: bool = False
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> openAPIV3Schema
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # version -> columns
    categories: list[str] = field(default_factory=list)
    subresources: list[str] = field(default_factory=list)  # besides status, e.g. pods/log

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str | None = None) -> str:
        v = version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v


CORE_TYPES = [
    ResourceType("", ["v1"], "namespaces", "Namespace", False, "namespace", ["ns"], status_subresource=True),
    ResourceType("", ["v1"], "pods", "Pod", True, "pod", ["po"], status_subresource=True, subresources=["log"]),
    ResourceType("", ["v1"], "configmaps", "ConfigMap", True, "configmap", ["cm"]),
    ResourceType("", ["v1"], "secrets", "Secret", True, "secret"),
    ResourceType("", ["v1"], "events", "Event", True, "event", ["ev"]),
    ResourceType("", ["v1"], "serviceaccounts", "ServiceAccount", True, "serviceaccount", ["sa"]),
    ResourceType("apiextensions.k8s.io", ["v1"], "customresourcedefinitions", "CustomResourceDefinition", False,
                 "customresourcedefinition", ["crd", "crds"], status_subresource=True),
    # stored so that what qgov installs and creates (its RBAC, each namespace's executor binding) can be
    # applied and read back; the emulator authorizes nothing (see the real control plane for that)
    ResourceType("rbac.authorization.k8s.io", ["v1"], "roles", "Role", True, "role"),
    ResourceType("rbac.authorization.k8s.io", ["v1"], "rolebindings", "RoleBinding", True, "rolebinding"),
    ResourceType("rbac.authorization.k8s.io", ["v1"], "clusterroles", "ClusterRole", False, "clusterrole"),
    ResourceType("rbac.authorization.k8s.io", ["v1"], "clusterrolebindings", "ClusterRoleBinding", False,
                 "clusterrolebinding"),
]


# core types whose strategy never sets metadata.generation (pods have it since 1.34, CRDs and CRs always)
NO_GENERATION = {("", "namespaces"), ("", "configmaps"), ("", "secrets"), ("", "events"), ("", "serviceaccounts"),
                 *(("rbac.authorization.k8s.io", plural) for plural in ("roles", "rolebindings", "clusterroles",
                                                                        "clusterrolebindings"))}
EVENT_ZERO_VALUES: dict[str, Any] = {"involvedObject": {}, "source": {}, "firstTimestamp": None,
                                     "lastTimestamp": None, "eventTime": None, "reportingComponent": "",
                                     "reportingInstance": ""}


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None  # the object before a MODIFIED, for selector transitions


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")


def crd_resource_type(crd: dict[str, Any]) -> ResourceType:
    """The resource type a CustomResourceDefinition declares (raises ApiError if malformed)."""
    try:
        spec = crd["spec"]
        names = spec["names"]
        served = [v for v in spec["versions"] if v.get("served", True)]
        if not served:
            raise KeyError("versions")
        storage = next((v for v in served if v.get("storage")), served[0])
        served.sort(key=lambda v: v is not storage)  # the storage version first: it is the preferred one
        return ResourceType(
            group=spec["group"], versions=[v["name"] for v in served], plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular", names["kind"].lower()), short_names=list(names.get("shortNames") or []),
            status_subresource=any("status" in (v.get("subresources") or {}) for v in served),
            schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in served},
            printer_columns={v["name"]: list(v.get("additionalPrinterColumns") or []) for v in served},
            categories=list(names.get("categories") or []),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ApiError(422, "Invalid", f"CustomResourceDefinition is invalid: spec.{exc}: Required value") from None


class Store:
    def __init__(self) -> None:
        self.rv = 0
        self.types: dict[tuple[str, str], ResourceType] = {}
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self.history: dict[tuple[str, str], deque[WatchEvent]] = {}
        self.watchers: dict[tuple[str, str], set[asyncio.Queue[WatchEvent | None]]] = {}
        self.by_uid: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        self.dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self.listeners: list[Callable[[ResourceType, WatchEvent], None]] = []
        self.compacted = 0  # watch history up to here is forgotten (see compact)
        for rtype in CORE_TYPES:
            self.register(rtype)
        for ns in ("default", "kube-system", "kube-public"):
            self.create(self.types[("", "namespaces")], None, {"metadata": {"name": ns}})

    # ------------------------------------------------------------------ types

    def register(self, rtype: ResourceType) -> None:
        self.types[rtype.key] = rtype
        self.objects.setdefault(rtype.key, {})
        self.history.setdefault(rtype.key, deque(maxlen=HISTORY))
        self.watchers.setdefault(rtype.key, set())

    def unregister(self, key: tuple[str, str]) -> None:
        for obj in list(self.objects.get(key, {}).values()):
            self._remove(self.types[key], obj)
        self.types.pop(key, None)
        for queue in self.watchers.pop(key, set()):
            queue.put_nowait(None)

    def end_watches(self) -> None:
        """Tell every open watch stream to finish (on shutdown)."""
        for queues in self.watchers.values():
            for queue in queues:
                queue.put_nowait(None)

    def find_type(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.types.get((group, plural))
        if rtype is None or version not in rtype.versions:
            gv = f"{group}/{version}" if group else version
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural} in {gv})")
        return rtype

    def compact(self) -> int:
        """Forget the watch history written so far, as etcd's compaction does (a test hook): a
        watch from an older resourceVersion then gets 410 Gone. Returns the compacted version."""
        self.compacted = self.rv
        for history in self.history.values():
            history.clear()
        return self.rv

    # ------------------------------------------------------------------ reads

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects[rtype.key].get((namespace or "", name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found',
                           details={"name": name, "group": rtype.group, "kind": rtype.plural})
        return obj

    def list(self, rtype: ResourceType, namespace: str | None,
             match: Callable[[dict[str, Any]], bool]) -> tuple[list[dict[str, Any]], int]:
        items = [o for (ns, _), o in self.objects[rtype.key].items()
                 if (namespace is None or ns == namespace) and match(o)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, self.rv

    # ------------------------------------------------------------------ writes

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, rtype: ResourceType, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        event = WatchEvent(self.rv, type_, obj, old)
        self.history[rtype.key].append(event)
        for queue in self.watchers[rtype.key]:
            queue.put_nowait(event)
        for listener in self.listeners:
            listener(rtype, event)

    def _check_namespace(self, rtype: ResourceType, namespace: str | None) -> None:
        if rtype.namespaced:
            if not namespace:
                raise ApiError(400, "BadRequest", f"{rtype.kind} is namespaced: a namespace is required")
            ns = self.objects[("", "namespaces")].get(("", namespace))
            if ns is None:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               details={"name": namespace, "kind": "namespaces"})
            if ns["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} because "
                                                  "it is being terminated")

    def _admit(self, rtype: ResourceType, obj: dict[str, Any], version: str | None) -> dict[str, Any]:
        """Prune, default and validate against the CRD schema; type-specific normalisation."""
        obj = fields.drop(rtype, obj)  # what decoding into the Go type loses
        schema = rtype.schemas.get(version or rtype.versions[0])
        name = obj.get("metadata", {}).get("name", "")
        problems = labels.name_problems(name, dns_label=rtype.key == ("", "namespaces"))
        problems += labels.problems((obj.get("metadata") or {}).get("labels"))
        if problems:
            what = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
            raise ApiError(422, "Invalid", f'{what} "{name}" is invalid: {", ".join(problems)}',
                           details={"name": name, "group": rtype.group, "kind": rtype.kind,
                                    "causes": [{"reason": "FieldValueInvalid", "message": m,
                                                "field": m.split(":", 1)[0]} for m in problems]})
        if schema:
            obj = schemas.prune(obj, schema, top=True)
            obj = schemas.default(obj, schema)
            errors = schemas.validate({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")},
                                      schema)
            if errors:
                causes = [{"reason": e.reason, "message": e.message, "field": e.field} for e in errors]
                text = ", ".join(f"{e.field}: {e.message}" for e in errors)
                raise ApiError(422, "Invalid", f'{rtype.kind}.{rtype.group} "{name}" is invalid: {text}',
                               details={"name": name, "group": rtype.group, "kind": rtype.kind, "causes": causes})
        binary = {("", "secrets"): "data", ("", "configmaps"): "binaryData"}.get(rtype.key)
        for key, value in ((obj.get(binary) or {}).items() if binary and isinstance(obj.get(binary), dict) else []):
            try:  # []byte fields decode as standard, padded base64 (line breaks ignored)
                base64.b64decode(str(value).replace("\r", "").replace("\n", ""), validate=True)
            except ValueError:
                raise ApiError(400, "BadRequest", f'{rtype.kind} in version "v1" cannot be handled as a '
                                                  f"{rtype.kind}: illegal base64 data in {binary}.{key}") from None
        if rtype.key == ("", "secrets") and "stringData" in obj:

            data = obj.setdefault("data", {}) or {}
            for k, v in (obj.pop("stringData") or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
        if rtype.key == ("", "events"):
            for k, v in EVENT_ZERO_VALUES.items():  # Go's encoding of an Event's unset struct fields
                obj.setdefault(k, copy_json(v))
        try:
            return timestamps.normalise(rtype.key, obj)
        except timestamps.BadTime as err:
            v = obj.get("apiVersion", "").rsplit("/", 1)[-1]
            raise ApiError(400, "BadRequest", f'{rtype.kind} in version "{v}" cannot be handled as a {rtype.kind}: '
                                              f"{err}") from None

    def create(self, rtype: ResourceType, namespace: str | None, body: dict[str, Any],
               version: str | None = None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        obj = copy_json(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if rtype.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                                  "namespace sent on the request")
            namespace = namespace or meta.get("namespace")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
            namespace = None
        if not meta.get("name"):
            if meta.get("generateName"):
                alphabet = string.ascii_lowercase + string.digits
                meta["name"] = meta["generateName"] + "".join(secrets.choice(alphabet) for _ in range(5))
            else:
                raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required value: name or "
                                               "generateName is required",
                               details={"kind": rtype.kind, "causes": [{"reason": "FieldValueRequired",
                                                                        "message": "Required value",
                                                                        "field": "metadata.name"}]})
        self._check_namespace(rtype, namespace)
        key = (namespace or "", meta["name"])
        if key in self.objects[rtype.key]:
            raise ApiError(409, "AlreadyExists",
                           f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{meta["name"]}" already exists',
                           details={"name": meta["name"], "group": rtype.group, "kind": rtype.plural})
        obj["apiVersion"], obj["kind"] = rtype.api_version(version), rtype.kind
        if rtype.status_subresource and rtype.group not in ("", "apiextensions.k8s.io"):
            obj.pop("status", None)  # status is written through /status only
        obj = self._admit(rtype, obj, version)
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        if rtype.key not in NO_GENERATION:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        meta["resourceVersion"] = self._bump()
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        if rtype.key == ("", "pods"):
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        if rtype.key == ("", "namespaces"):
            obj.setdefault("status", {})["phase"] = "Active"
        if rtype.key == CRD_KEY:
            self._register_crd(obj)
        self.objects[rtype.key][key] = obj
        self.by_uid[meta["uid"]] = (rtype.key, key)
        self._index_owners(obj)
        self._emit(rtype, "ADDED", obj, None)
        return obj

    def replace(self, rtype: ResourceType, namespace: str | None, name: str, body: dict[str, Any], *,
                subresource: str | None = None, version: str | None = None,
                ignore_status: bool | None = None) -> dict[str, Any]:
        """PUT semantics (PATCH computes the new body, then comes here)."""
        current = self.get(rtype, namespace, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {rtype.plural}{"." + rtype.group if rtype.group else ""} '
                           f'"{name}": the object has been modified; please apply your changes to the latest '
                           "version and try again", details={"name": name, "group": rtype.group, "kind": rtype.plural})
        new = copy_json(body)
        if subresource == "status":
            # only status changes; everything else stays as stored
            status = new.get("status")
            new = copy_json(current)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            if rtype.status_subresource:
                if "status" in current:
                    new["status"] = copy_json(current["status"])
                else:
                    new.pop("status", None)
            new_meta = new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace",
                      "name", "generation"):
                if k in current["metadata"]:
                    new_meta[k] = current["metadata"][k]
                else:
                    new_meta.pop(k, None)
            if current["metadata"].get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(current["metadata"].get("finalizers") or [])
                if added:
                    raise ApiError(422, "Invalid", f"metadata.finalizers: Forbidden: no new finalizers can be added "
                                                   f"if the object is being deleted, found new finalizers {sorted(added)}")
        new["apiVersion"], new["kind"] = current["apiVersion"], rtype.kind
        new = self._admit(rtype, new, version)
        spec_changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in current.items() if k not in ("metadata", "status")}
        if subresource != "status" and spec_changed and rtype.key not in NO_GENERATION:
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if rtype.key == CRD_KEY and subresource != "status":
            self._register_crd(new)
        if new == current:
            return current  # a no-op write does not bump the resourceVersion (as the API server)
        new["metadata"]["resourceVersion"] = self._bump()
        self.objects[rtype.key][(namespace or "", name)] = new
        self._unindex_owners(current)
        self._index_owners(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") \
                and rtype.key != NAMESPACES:
            self._remove(rtype, new)
            return new
        self._emit(rtype, "MODIFIED", new, current)
        if rtype.key == NAMESPACES:
            self._finish_namespace(name)
        return new

    def delete(self, rtype: ResourceType, namespace: str | None, name: str,
               preconditions: dict[str, Any] | None = None, propagation: str | None = None) -> dict[str, Any]:
        """`propagation`: what happens to the dependents (ownerReferences): Background (the default)
        deletes them after the owner, Foreground before it, Orphan keeps them."""
        obj = self.get(rtype, namespace, name)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                                            f"meta: {obj['metadata']['uid']}")
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "Precondition failed: resourceVersion does not match")
        is_namespace = rtype.key == NAMESPACES
        if is_namespace and name in ("default", "kube-system", "kube-public"):
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                                           f'Unsupported value: "{propagation}": supported values: "Foreground", '
                                           '"Background", "Orphan", "nil"')
        if propagation in ("Foreground", "Orphan") and not is_namespace and not obj["metadata"].get("deletionTimestamp"):
            return self._delete_propagating(rtype, obj, propagation)
        if obj["metadata"].get("finalizers") or is_namespace:
            # a namespace is Terminating until its contents are gone (finalizers and all), as the namespace
            # controller does it; anything else waits for its finalizers
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            new = copy_json(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = self._bump()
            if is_namespace:
                new.setdefault("status", {})["phase"] = "Terminating"
            self.objects[rtype.key][(namespace or "", name)] = new
            self._emit(rtype, "MODIFIED", new, obj)
            if is_namespace:
                self._empty_namespace(name)
            return new
        self._remove(rtype, obj)
        return obj

    def _remove(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if self.objects[rtype.key].get(key) is None:
            return
        del self.objects[rtype.key][key]
        self.by_uid.pop(meta["uid"], None)
        self._unindex_owners(obj)
        gone = copy_json(obj)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._emit(rtype, "DELETED", gone, None)
        if rtype.key == NAMESPACES:
            self._empty_namespace(meta["name"])
        elif rtype.namespaced:
            self._finish_namespace(meta.get("namespace", ""))
        if rtype.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
            self.unregister((group, plural))
        self._collect_garbage(meta["uid"])

    def _empty_namespace(self, namespace: str) -> None:
        for key, rtype in list(self.types.items()):
            if not rtype.namespaced:
                continue
            for (ns, name) in [k for k in self.objects.get(key, {}) if k[0] == namespace]:
                if (ns, name) in self.objects.get(key, {}):
                    self.delete(rtype, ns, name)
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        """A terminating namespace goes once nothing is left in it."""
        ns_obj = self.objects[NAMESPACES].get(("", namespace))
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp") or ns_obj["metadata"].get("finalizers"):
            return
        if not any(k[0] == namespace for key, t in self.types.items() if t.namespaced
                   for k in self.objects.get(key, {})):
            self._remove(self.types[NAMESPACES], ns_obj)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        rtype = crd_resource_type(crd)
        expected = f"{rtype.plural}.{rtype.group}"
        if crd["metadata"]["name"] != expected:
            raise ApiError(422, "Invalid", f'CustomResourceDefinition.apiextensions.k8s.io "{crd["metadata"]["name"]}" '
                                           f'is invalid: metadata.name: Invalid value: "{crd["metadata"]["name"]}": '
                                           f"must be spec.names.plural+\".\"+spec.group")
        self.register(rtype)
        names = crd["spec"]["names"]
        accepted = {"plural": names["plural"], "kind": names["kind"],
                    "singular": names.get("singular", names["kind"].lower()),
                    "listKind": names.get("listKind", names["kind"] + "List")}
        for extra in ("shortNames", "categories"):
            if names.get(extra):
                accepted[extra] = names[extra]
        crd["status"] = {
            "acceptedNames": accepted, "storedVersions": [rtype.versions[0]],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now_iso()}
                for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                ("Established", "InitialNamesAccepted", "the initial names have been accepted"))
            ],
        }

    # ------------------------------------------------------------------ garbage collection

    def _index_owners(self, obj: dict[str, Any]) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid"):
                self.dependents.setdefault(ref["uid"], set()).add(obj["metadata"]["uid"])

    def _unindex_owners(self, obj: dict[str, Any]) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid") in self.dependents:
                self.dependents[ref["uid"]].discard(obj["metadata"]["uid"])

    def _dependents(self, owner_uid: str) -> list[tuple[ResourceType, dict[str, Any]]]:
        found = []
        for uid in list(self.dependents.get(owner_uid, set())):
            where = self.by_uid.get(uid)
            obj = self.objects[where[0]].get(where[1]) if where else None
            if where and obj is not None:
                found.append((self.types[where[0]], obj))
        return found

    def _release(self, rtype: ResourceType, obj: dict[str, Any], owner_uid: str) -> None:
        """Drop a dependent's reference to an owner (as the garbage collector patches it)."""
        new = copy_json(obj)
        refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self.replace(rtype, new["metadata"].get("namespace"), new["metadata"]["name"], new)

    def _still_owned(self, obj: dict[str, Any], owner_uid: str) -> bool:
        """Has the dependent an owner besides `owner_uid` that exists and is not being deleted in
        the foreground?"""
        for ref in obj["metadata"].get("ownerReferences") or []:
            where = self.by_uid.get(ref.get("uid", "")) if ref.get("uid") != owner_uid else None
            if where is None:
                continue
            owner = self.objects[where[0]].get(where[1]) or {}
            if "foregroundDeletion" not in (owner.get("metadata") or {}).get("finalizers", []):
                return True
        return False

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: a dependent goes when its last owner is gone; one that has
        another owner loses its reference to the one that went."""
        for rtype, obj in self._dependents(owner_uid):
            if self._still_owned(obj, owner_uid):
                self._release(rtype, obj, owner_uid)
            else:
                self.delete(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        self.dependents.pop(owner_uid, None)

    def _delete_propagating(self, rtype: ResourceType, obj: dict[str, Any], policy: str) -> dict[str, Any]:
        """Foreground or Orphan deletion, as the API server and the garbage collector do it, at once:
        the owner is marked with the collector's finalizer (`foregroundDeletion`, `orphan`; the
        answer shows it), its dependents are deleted in the foreground (Foreground) or released
        (Orphan), then the finalizer goes, and the owner with it unless it has others.
        Simplification: a dependent held by its own finalizers does not hold its owner."""
        finalizer = "foregroundDeletion" if policy == "Foreground" else "orphan"
        meta = obj["metadata"]
        marked = copy_json(obj)
        marked["metadata"]["deletionTimestamp"] = now_iso()
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        marked["metadata"]["finalizers"] = [*(meta.get("finalizers") or []), finalizer]
        marked["metadata"]["resourceVersion"] = self._bump()
        key = (meta.get("namespace", ""), meta["name"])
        self.objects[rtype.key][key] = marked
        self._emit(rtype, "MODIFIED", marked, obj)
        for dtype, dependent in self._dependents(meta["uid"]):
            if policy == "Orphan" or self._still_owned(dependent, meta["uid"]):
                self._release(dtype, dependent, meta["uid"])
            else:
                self.delete(dtype, dependent["metadata"].get("namespace"), dependent["metadata"]["name"],
                            propagation="Foreground")
        current = self.objects[rtype.key].get(key)
        if current is not None:
            done = copy_json(current)
            done["metadata"]["finalizers"] = [f for f in current["metadata"]["finalizers"] if f != finalizer]
            self.replace(rtype, key[0] or None, key[1], done)
        return marked
