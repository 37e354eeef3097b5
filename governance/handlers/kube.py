"""The Kubernetes adapter the handlers share: reads and writes of qgov's objects and pods, with
the API server's refusals as typed errors (kubeerrors.py: NotFound, Conflict...) handled in one
place. The admission's writes go over the thread's kept-alive connection (apiwrites.py) when
there is one."""

from __future__ import annotations

import json

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
import kubernetes

from ..api import GROUP, MANAGED_BY_LABEL, VERSION
from ..jobs.events import Event
from ..kubeerrors import created as created  # the typed API errors' helpers, as the handlers know them
from ..kubeerrors import unless_gone as unless_gone
from .apiwrites import Connection, custom_path, pods_path

JOBS = "qiskitjobs"
SESSIONS = "qiskitsessions"
BUDGETS = "qiskitbudgets"
BACKENDS = "qiskitbackends"

log = logging.getLogger("qgov.kube")


def discard(answer: Any) -> None:
    """Drain and return an unparsed answer (`_preload_content=False`): the caller needs none of it,
    and parsing the whole object back costs more CPU than the call; undrained, it breaks the pool."""
    answer.read()
    answer.release_conn()


def made_for(metadata: Any, owner_uid: str) -> bool:
    """Whether an object read back (a V1ObjectMeta) is one qgov made for the owner `owner_uid`:
    labelled managed-by qgov and controlled by that owner. Anything else under a name qgov wanted
    (a tenant's Secret or ConfigMap made first) is never adopted or written over."""
    labels = metadata.labels or {}
    return labels.get(MANAGED_BY_LABEL) == "qgov" and any(
        ref.uid == owner_uid and ref.controller for ref in metadata.owner_references or ())


class Kube:
    """The API clients, one set per thread (kopf's worker threads sharing one client end up sharing
    HTTP connections: ProtocolError: ResponseNotReady), and the reads and writes of qgov's objects
    and pods the handlers make through them. Built once at start-up (startup.py) and handed to
    each object that calls the API."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _clients(self) -> Any:
        local = self._local
        if not hasattr(local, "core"):
            api = kubernetes.client.ApiClient()
            local.core, local.custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
            local.rbac = kubernetes.client.RbacAuthorizationV1Api(api)
            local.http = Connection(api) if Connection.supported(api) else None
        return local

    @property
    def core(self) -> Any:
        return self._clients().core

    @property
    def custom(self) -> Any:
        return self._clients().custom

    @property
    def rbac(self) -> Any:
        return self._clients().rbac

    @property
    def http(self) -> Connection | None:
        """The thread's connection for the admission's writes (apiwrites.py); None: use the client."""
        http: Connection | None = self._clients().http
        return http

    def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A qgov object, or None when it is gone."""
        return unless_gone(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get_object(JOBS, namespace, name)

    def get_session(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get_object(SESSIONS, namespace, name)

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge `status` into the object's status; the answer is not parsed."""
        http = self.http
        if http is not None:  # the admission's writes skip the kubernetes client's machinery (apiwrites.py)
            http.request("PATCH", custom_path(GROUP, VERSION, namespace, plural, name, "status"), {"status": status},
                         "application/merge-patch+json")
            return
        discard(self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name,
                                                                  {"status": status}, _preload_content=False))

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.patch_status(JOBS, namespace, name, status)

    def json_patch(self, plural: str, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        """A JSON patch of the object itself (its metadata); the answer is not parsed."""
        if (http := self.http) is not None:
            http.request("PATCH", custom_path(GROUP, VERSION, namespace, plural, name), ops,
                         "application/json-patch+json")
        else:
            discard(self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, ops,
                                                               _content_type="application/json-patch+json",
                                                               _preload_content=False))

    def create_pod(self, namespace: str, body: dict[str, Any]) -> str:
        """Create a pod (an ApiException when refused, 409 included; api_errors types it); returns the
        new pod's UID (what makes it the operator's own: the ledger records it, pod events are
        checked against it)."""
        http = self.http
        if http is not None:
            data = http.request("POST", pods_path(namespace), body)
        else:
            data = self.core.create_namespaced_pod(namespace, body, _preload_content=False).data
        return str(json.loads(data)["metadata"]["uid"])

    def delete_pod_uid(self, namespace: str, name: str, uid: str) -> None:
        """Delete the pod `name` only if it is still the one with `uid` (a precondition), at once."""
        unless_gone(lambda: self.core.delete_namespaced_pod(
            name, namespace, body={"preconditions": {"uid": uid}, "gracePeriodSeconds": 0}))

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod; one that is gone already is fine."""
        unless_gone(lambda: self.core.delete_namespaced_pod(name, namespace))


# ---------------------------------------------------------------------- Events

EventListener = Callable[[Mapping[str, Any], Event], None]
_listeners: list[EventListener] = []


def listen(listener: EventListener) -> None:
    """Hear every Event posted (best effort: a listener's failure is logged, the Event still posted)."""
    _listeners.append(listener)


def emit(obj: Mapping[str, Any], event: Event) -> None:
    """Post `event` on the object (a Kubernetes Event, through kopf)."""
    for listener in list(_listeners):
        try:
            listener(obj, event)
        except Exception as exc:  # noqa: BLE001 - a listener must not stop the Event
            log.warning(f"event listener: {type(exc).__name__}: {exc}")
    kopf.event(cast(Any, obj), type=event.type, reason=event.reason, message=event.message)  # kopf takes raw bodies
