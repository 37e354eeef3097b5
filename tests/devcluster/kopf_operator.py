"""A small kopf operator for the dev-cluster tests: handlers, finalizer, timer, adopted child Pod."""

from __future__ import annotations

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "example.dev", "v1", "widgets"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = "example.dev/kopf-finalizer"
    settings.watching.server_timeout = 30
    settings.posting.level = 0
    kubernetes.config.load_kube_config()


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(spec, name, namespace, body, **_):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-child"},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "python:3.11", "command": ["python", "-c", f"print('size', {spec['size']})"]}]}}
    kopf.adopt(pod, owner=body)
    kubernetes.client.CoreV1Api().create_namespaced_pod(namespace, pod)
    return {"child": pod["metadata"]["name"]}


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.size")
def resized(new, patch, **_):
    patch.status["observedSize"] = new


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(name, namespace, **_):
    kubernetes.client.CoreV1Api().create_namespaced_config_map(
        namespace, {"metadata": {"name": f"{name}-deleted"}, "data": {"by": "kopf"}})


@kopf.timer(GROUP, VERSION, PLURAL, interval=0.5)
def tick(status, patch, **_):
    patch.status["ticks"] = (status.get("ticks") or 0) + 1
