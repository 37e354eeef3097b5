"""The emulator's HTTP API: Kubernetes REST paths, discovery, watch streams and Table output."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import fields, openapi, openapi_pb, paging, patches, timestamps
from .selectors import SelectorError, field_selector, label_selector
from .store import ApiError, ResourceType, Store, WatchEvent

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
TRUE = {"true", "1", "True", "TRUE", "yes"}
LogSource = Callable[[str, str, dict[str, str]], Awaitable[str]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json")


def _warn(response: web.Response, warnings: list[str]) -> web.Response:
    """Warnings as the API server sends them; kubectl prints each as `Warning: ...`."""
    for text in warnings:
        response.headers.add("Warning", '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return response


def _error(err: ApiError) -> web.Response:
    return _json(err.status(), err.code)


_JSONPATH_FILTER = re.compile(r"^(\w+)\[\?\(@\.(\w+)==[\"']([^\"']*)[\"']\)\]$")


def json_path(obj: Any, path: str) -> Any:
    """The subset of JSONPath used by printer columns: .a.b, .a[0], .a[?(@.type=="Ready")].status."""
    node = obj
    for part in [p for p in re.split(r"\.(?![^\[]*\])", path.strip().lstrip(".")) if p]:
        if m := _JSONPATH_FILTER.match(part):
            items = node.get(m[1]) if isinstance(node, dict) else None
            node = next((x for x in items or [] if isinstance(x, dict) and str(x.get(m[2])) == m[3]), None)
            continue
        if m := re.match(r"^(\w+)\[(\d+)\]$", part):
            items = node.get(m[1]) if isinstance(node, dict) else None
            node = items[int(m[2])] if isinstance(items, list) and len(items) > int(m[2]) else None
            continue
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _column(name: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": "string", "format": fmt, "description": "", "priority": priority}


def _event_times(o: dict[str, Any]) -> tuple[str, str, int]:
    """Last seen, first seen and count as the server's event printer (printEvent) works them out."""
    first = timestamps.age(o.get("firstTimestamp")) if o.get("firstTimestamp") else timestamps.age(o.get("eventTime"))
    last = timestamps.age(o.get("lastTimestamp")) if o.get("lastTimestamp") else first
    count = o.get("count") or 0
    if isinstance(o.get("series"), dict):
        last, count = timestamps.age(o["series"].get("lastObservedTime")), o["series"].get("count") or 0
    elif not count:
        count = 1  # singleton events have no count in the events.k8s.io API
    return last, first, count


def event_columns() -> list[tuple[dict[str, Any], Callable[[dict], Any]]]:
    """The server's Event table: every column, kubectl hides priority 1 unless `-o wide`."""
    def target(o: dict[str, Any]) -> str:
        ref = o.get("involvedObject") or {}
        kind = str(ref.get("kind", "")).lower()
        return f"{kind}/{ref['name']}" if ref.get("name") else kind

    def source(o: dict[str, Any]) -> str:
        src = o.get("source") or {}
        component = src.get("component") or o.get("reportingComponent") or ""
        instance = src.get("host") or o.get("reportingInstance") or ""
        return f"{component}, {instance}" if instance else component

    return [(_column("Last Seen"), lambda o: _event_times(o)[0]),
            (_column("Type"), lambda o: o.get("type", "")),
            (_column("Reason"), lambda o: o.get("reason", "")),
            (_column("Object"), target),
            (_column("Subobject", 1), lambda o: (o.get("involvedObject") or {}).get("fieldPath", "")),
            (_column("Source", 1), source),
            (_column("Message"), lambda o: str(o.get("message", "")).strip()),
            (_column("First Seen", 1), lambda o: _event_times(o)[1]),
            (_column("Count", 1), lambda o: _event_times(o)[2]),
            (_column("Name", 1, "name"), lambda o: o["metadata"]["name"])]


class ApiServer:
    def __init__(self, store: Store, *, log_source: LogSource | None = None) -> None:
        self.store = store
        self.log_source = log_source
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.address = ""

    # ------------------------------------------------------------------ routing

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as err:
            return _error(err)
        except SelectorError as err:
            return _error(ApiError(400, "BadRequest", str(err)))
        except patches.PatchError as err:
            return _error(ApiError(err.status, "Invalid" if err.status == 422 else "BadRequest", str(err)))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json({"major": "1", "minor": "32", "gitVersion": "v1.32.0-qgov-dev", "platform": "linux/amd64",
                          "goVersion": "n/a", "compiler": "qgov-dev"})
        if path == "/api":
            return _json({"kind": "APIVersions", "versions": ["v1"],
                          "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]})
        if path == "/apis":
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        if parts[:2] == ["openapi", "v3"]:
            return _json(self._openapi_v3("/".join(parts[2:])))
        if parts == ["openapi", "v2"]:
            document = openapi.v2_document(self.store)
            if "com.github.proto-openapi.spec.v2" in request.headers.get("Accept", ""):
                return web.Response(body=openapi_pb.document(document),
                                    headers={"Content-Type": openapi_pb.CONTENT_TYPE})
            return _json(document)
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 2:
            if len(parts) == 2:
                group = next((g for g in self._groups() if g["name"] == parts[1]), None)
                if group is None:
                    raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
                return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if not rest:
            return _json(self._resource_list(group, version))
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, rest[2]) in self.store.types:
            namespace, rest = rest[1], rest[2:]
        rtype = self.store.find_type(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub and sub != "status" and sub not in rtype.subresources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if sub == "status" and not rtype.status_subresource:
            raise ApiError(404, "NotFound", f"{rtype.plural} have no status subresource")
        if rtype.namespaced is False and namespace:
            raise ApiError(404, "NotFound", f"{rtype.kind} is cluster-scoped")
        return await self._handle(request, rtype, version, namespace, name, sub)

    def _openapi_v3(self, gv: str) -> dict[str, Any]:
        if not gv:
            return openapi.v3_index(self.store)
        gvs = openapi.group_versions(self.store)
        if gv not in gvs:
            raise ApiError(404, "NotFound", f"no OpenAPI document for {gv}")
        return openapi.v3_document(gv, gvs[gv])

    def _groups(self) -> list[dict[str, Any]]:
        groups: dict[str, list[str]] = {}
        for rtype in self.store.types.values():
            if rtype.group:
                versions = groups.setdefault(rtype.group, [])
                versions.extend(v for v in rtype.versions if v not in versions)
        return [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
            for g, vs in sorted(groups.items())
        ]

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        found = False
        for rtype in self.store.types.values():
            if rtype.group != group or version not in rtype.versions:
                continue
            found = True
            entry = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                     "kind": rtype.kind, "verbs": VERBS}
            if rtype.short_names:
                entry["shortNames"] = rtype.short_names
            if rtype.categories:
                entry["categories"] = rtype.categories
            resources.append(entry)
            if rtype.status_subresource:
                resources.append({"name": f"{rtype.plural}/status", "singularName": "", "namespaced": rtype.namespaced,
                                  "kind": rtype.kind, "verbs": ["get", "patch", "update"]})
            for sub in rtype.subresources:
                resources.append({"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                                  "kind": rtype.kind if sub != "log" else "Pod", "verbs": ["get"]})
        if not found:
            gv = f"{group}/{version}" if group else version
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({gv})")
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}

    # ------------------------------------------------------------------ verbs

    async def _handle(self, request: web.Request, rtype: ResourceType, version: str, namespace: str | None,
                      name: str | None, sub: str | None) -> web.StreamResponse:
        method, q = request.method, request.query
        if q.get("dryRun") and method in ("POST", "PUT", "PATCH", "DELETE"):
            # a real server admits and answers without storing; writing instead would surprise far more
            raise ApiError(400, "BadRequest", "dryRun is not supported by the qgov dev cluster: use "
                                              "`--dry-run=client`")
        table = "as=Table" in request.headers.get("Accept", "")
        if name is None:
            if method == "GET":
                if q.get("watch") in TRUE:
                    return await self._watch(request, rtype, version, namespace, table)
                return self._list(request, rtype, version, namespace, table)
            if method == "POST":
                body = await self._body(request)
                warnings = self._check_fields(request, rtype, version, body)
                obj = self.store.create(rtype, namespace, body, version)
                return _warn(_json(self._versioned(obj, rtype, version), 201), warnings)
            if method == "DELETE":
                items, _ = self.store.list(rtype, namespace, self._matcher(q, rtype))
                deleted = [self.store.delete(rtype, namespace, o["metadata"]["name"]) for o in items]
                return _json(self._list_body(rtype, version, deleted))
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if sub == "log":
            if self.log_source is None:
                raise ApiError(404, "NotFound", "no pod runner serves logs")
            self.store.get(rtype, namespace, name)
            return web.Response(text=await self.log_source(namespace or "", name, dict(q)),
                                content_type="text/plain")
        if method == "GET":
            obj = self.store.get(rtype, namespace, name)
            return _json(self._table(rtype, version, [obj]) if table else self._versioned(obj, rtype, version))
        if method == "PUT":
            body = await self._body(request)
            warnings = self._check_fields(request, rtype, version, body)
            obj = self.store.replace(rtype, namespace, name, body, subresource=sub, version=version)
            return _warn(_json(self._versioned(obj, rtype, version)), warnings)
        if method == "PATCH":
            obj, warnings = await self._patch(request, rtype, version, namespace, name, sub)
            return _warn(_json(self._versioned(obj, rtype, version)), warnings)
        if method == "DELETE":
            body = await self._body(request, optional=True) or {}
            obj = self.store.delete(rtype, namespace, name, body.get("preconditions"),
                                    body.get("propagationPolicy") or q.get("propagationPolicy"))
            return _json(self._versioned(obj, rtype, version))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    async def _body(self, request: web.Request, optional: bool = False) -> Any:
        if "protobuf" in request.headers.get("Content-Type", ""):
            raise ApiError(415, "UnsupportedMediaType",
                           "the qgov dev cluster speaks JSON, not protobuf: use `kubectl apply -f` with a manifest "
                           "(kubectl's generators such as `kubectl create configmap` send protobuf)")
        raw = await request.read()
        if not raw:
            if optional:
                return None
            raise ApiError(400, "BadRequest", "the request has no body")
        try:
            return json.loads(raw)
        except ValueError:
            try:  # kubectl and people sometimes send YAML
                import yaml

                return yaml.safe_load(raw)
            except Exception:  # noqa: BLE001
                raise ApiError(400, "BadRequest", "the body is neither JSON nor YAML") from None

    @staticmethod
    def _check_fields(request: web.Request, rtype: ResourceType, version: str, obj: Any) -> list[str]:
        """fieldValidation: Strict refuses unknown fields, Warn (the default) warns of them, Ignore drops them."""
        mode = request.query.get("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise ApiError(400, "BadRequest", f'fieldValidation must be one of "Ignore", "Strict" or "Warn", '
                                              f'not "{mode}"')
        found = [] if mode == "Ignore" else [f'unknown field "{f}"' for f in fields.unknown(rtype, version, obj)]
        if found and mode == "Strict":
            raise ApiError(400, "BadRequest", f'{rtype.kind} in version "{version}" cannot be handled as a '
                                              f'{rtype.kind}: strict decoding error: {", ".join(found)}')
        return found

    async def _patch(self, request: web.Request, rtype: ResourceType, version: str, namespace: str | None,
                     name: str, sub: str | None) -> tuple[dict[str, Any], list[str]]:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = await self._body(request)
        current = self.store.get(rtype, namespace, name)
        if ctype == "application/json-patch+json":
            new = patches.json_patch(current, body)
        elif ctype == "application/merge-patch+json":
            new = patches.merge_patch(current, body)
        elif ctype == "application/strategic-merge-patch+json":
            if rtype.group and rtype.group != "apiextensions.k8s.io":
                raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom "
                                                            "resources: use a JSON merge patch")
            new = patches.strategic_merge_patch(current, body)
        elif ctype == "application/apply-patch+yaml":
            raise ApiError(415, "UnsupportedMediaType", "server-side apply is not supported by the qgov dev cluster: "
                                                        "use client-side `kubectl apply`")
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the patch content type {ctype!r} is not supported")
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patch does not leave an object")
        # a patch whose body names a resourceVersion is conditional on it; otherwise it is not
        patched_rv = (new.get("metadata") or {}).get("resourceVersion")
        named_rv = isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion")
        if ctype == "application/json-patch+json":
            named_rv = patched_rv if patched_rv != current["metadata"]["resourceVersion"] else None
        warnings = self._check_fields(request, rtype, version, new)
        new.setdefault("metadata", {})["resourceVersion"] = named_rv or current["metadata"]["resourceVersion"]
        return self.store.replace(rtype, namespace, name, new, subresource=sub, version=version), warnings

    # ------------------------------------------------------------------ lists, tables and watches

    def _matcher(self, q: Any, rtype: ResourceType) -> Callable[[dict[str, Any]], bool]:
        labels, fields = label_selector(q.get("labelSelector")), field_selector(q.get("fieldSelector"), rtype.key)
        return lambda o: labels(o) and fields(o)

    def _versioned(self, obj: dict[str, Any], rtype: ResourceType, version: str) -> dict[str, Any]:
        if obj.get("apiVersion") == rtype.api_version(version):
            return obj
        return {**obj, "apiVersion": rtype.api_version(version)}

    def _list_body(self, rtype: ResourceType, version: str, items: list[dict[str, Any]], rv: int | None = None
                   ) -> dict[str, Any]:
        return {"apiVersion": rtype.api_version(version), "kind": f"{rtype.kind}List",
                "metadata": {"resourceVersion": str(rv if rv is not None else self.store.rv)},
                "items": [self._versioned(o, rtype, version) for o in items]}

    def _list(self, request: web.Request, rtype: ResourceType, version: str, namespace: str | None,
              table: bool) -> web.Response:
        items, rv = self.store.list(rtype, namespace, self._matcher(request.query, rtype))
        items, rv, extra = paging.page(items, rv, request.query)
        body = self._table(rtype, version, items, rv) if table else self._list_body(rtype, version, items, rv)
        body["metadata"].update(extra)
        return _json(body)

    def _columns(self, rtype: ResourceType, version: str) -> list[tuple[dict[str, Any], Callable[[dict], Any]]]:
        name_col = ({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                    lambda o: o["metadata"]["name"])
        age_col = ({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
                   lambda o: timestamps.age(o["metadata"].get("creationTimestamp")))
        if rtype.key == ("", "pods"):
            def ready(o: dict) -> str:
                statuses = (o.get("status") or {}).get("containerStatuses") or []
                total = len((o.get("spec") or {}).get("containers") or [])
                return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"

            def restarts(o: dict) -> int:
                return sum(s.get("restartCount", 0) for s in (o.get("status") or {}).get("containerStatuses") or [])

            def status(o: dict) -> str:
                st = o.get("status") or {}
                for s in st.get("containerStatuses") or []:
                    term = (s.get("state") or {}).get("terminated")
                    if term and st.get("phase") in ("Succeeded", "Failed"):
                        return term.get("reason") or st.get("phase")
                return "Terminating" if o["metadata"].get("deletionTimestamp") else st.get("phase", "Pending")

            return [name_col,
                    ({"name": "Ready", "type": "string", "format": "", "description": "", "priority": 0}, ready),
                    ({"name": "Status", "type": "string", "format": "", "description": "", "priority": 0}, status),
                    ({"name": "Restarts", "type": "integer", "format": "", "description": "", "priority": 0},
                     restarts), age_col]
        if rtype.key in (("", "configmaps"), ("", "secrets")):
            return [name_col, ({"name": "Data", "type": "integer", "format": "", "description": "", "priority": 0},
                               lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})), age_col]
        if rtype.key == ("", "events"):
            return event_columns()
        if rtype.key == ("", "namespaces"):
            return [name_col, ({"name": "Status", "type": "string", "format": "", "description": "", "priority": 0},
                               lambda o: (o.get("status") or {}).get("phase", "")), age_col]
        columns = [name_col]
        for col in rtype.printer_columns.get(version, []):
            if col.get("jsonPath") == ".metadata.creationTimestamp":
                columns.append(({"name": col["name"], "type": col.get("type", "date"), "format": "",
                                 "description": col.get("description", ""), "priority": col.get("priority", 0)},
                                age_col[1]))
                continue
            columns.append(({"name": col["name"], "type": col.get("type", "string"), "format": col.get("format", ""),
                             "description": col.get("description", ""), "priority": col.get("priority", 0)},
                            lambda o, p=col["jsonPath"], t=col.get("type"): self._cell(json_path(o, p), t)))
        if not rtype.printer_columns.get(version):
            columns.append(age_col)
        return columns

    @staticmethod
    def _cell(value: Any, kind: str | None) -> Any:
        if value is None:
            return None
        if kind == "date" and isinstance(value, str):
            return timestamps.age(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return value

    def _table(self, rtype: ResourceType, version: str, items: list[dict[str, Any]], rv: int | None = None
               ) -> dict[str, Any]:
        columns = self._columns(rtype, version)
        return {
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(rv if rv is not None else self.store.rv)},
            "columnDefinitions": [c for c, _ in columns],
            "rows": [{"cells": [f(o) for _, f in columns],
                      "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": o["metadata"]}} for o in items],
        }

    async def _watch(self, request: web.Request, rtype: ResourceType, version: str, namespace: str | None,
                     table: bool) -> web.StreamResponse:
        q = request.query
        match = self._matcher(q, rtype)
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        start_rv = q.get("resourceVersion")
        backlog: list[tuple[str, dict[str, Any]]] = []
        # register first, then read history/state: nothing written in between can be lost
        self.store.watchers[rtype.key].add(queue)
        try:
            if start_rv and start_rv != "0":
                try:
                    since = int(start_rv)
                except ValueError:
                    raise ApiError(400, "BadRequest", f"invalid resourceVersion {start_rv!r}") from None
                history = self.store.history[rtype.key]
                oldest = max(self.store.compacted, history[0].rv - 1 if len(history) == history.maxlen else 0)
                if since < oldest:
                    # past admission, a real server answers 200 and a watch event of type ERROR (the cacher's
                    # errWatcher), not an HTTP 410: clients such as kopf restart on exactly that event
                    expired = ApiError(410, "Expired", f"too old resource version: {since} ({oldest})")
                    return await self._watch_error(request, expired)
                for event in history:
                    if event.rv > since:
                        backlog += self._filtered(event, namespace, match)
                # events already in the backlog must not be sent twice from the queue
                high_water = self.store.rv
            else:
                items, high_water = self.store.list(rtype, namespace, match)
                backlog = [("ADDED", o) for o in items]
            response = web.StreamResponse(headers={"Content-Type": "application/json",
                                                   "Transfer-Encoding": "chunked"})
            await response.prepare(request)

            def line(kind: str, obj: dict[str, Any]) -> bytes:
                payload = self._table(rtype, version, [obj]) if table else self._versioned(obj, rtype, version)
                return json.dumps({"type": kind, "object": payload}, separators=(",", ":")).encode() + b"\n"

            try:
                for kind, obj in backlog:
                    await response.write(line(kind, obj))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout if timeout else None
                ended = False
                while not ended:
                    if queue.empty():
                        wait = None if deadline is None else max(0.0, deadline - loop.time())
                        try:
                            event = await (asyncio.wait_for(queue.get(), wait) if wait is not None else queue.get())
                        except asyncio.TimeoutError:
                            break
                    else:
                        event = queue.get_nowait()
                    # Every event already queued goes out in one write: in a burst a watcher is sent
                    # one chunk per turn of the loop, not one per event (each write is a system call).
                    events = [event]
                    while not queue.empty():
                        events.append(queue.get_nowait())
                    lines = []
                    for event in events:
                        if event is None:  # the resource type went away (CRD deleted), or shutdown
                            ended = True
                            break
                        if event.rv > high_water:
                            lines += [line(kind, obj) for kind, obj in self._filtered(event, namespace, match)]
                    if lines:
                        await response.write(b"".join(lines))
                    if deadline is not None and loop.time() >= deadline:
                        break
                await response.write_eof()
            except ConnectionResetError:
                pass  # the watcher went away: nothing to tell it
            return response
        finally:
            self.store.watchers.get(rtype.key, set()).discard(queue)

    @staticmethod
    async def _watch_error(request: web.Request, err: ApiError) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        await response.prepare(request)
        await response.write(json.dumps({"type": "ERROR", "object": err.status()}, separators=(",", ":")).encode()
                             + b"\n")
        await response.write_eof()
        return response

    @staticmethod
    def _filtered(event: WatchEvent, namespace: str | None, match: Callable[[dict[str, Any]], bool]
                  ) -> list[tuple[str, dict[str, Any]]]:
        """An event as a filtered watch sees it: leaving the selection is a DELETED, entering an ADDED."""
        if namespace is not None and event.obj["metadata"].get("namespace") != namespace:
            return []
        now_in = match(event.obj)
        if event.type != "MODIFIED" or event.old is None:
            return [(event.type, event.obj)] if now_in else []
        was_in = match(event.old)
        if now_in and was_in:
            return [("MODIFIED", event.obj)]
        if now_in:
            return [("ADDED", event.obj)]
        if was_in:
            return [("DELETED", event.obj)]
        return []
