"""Where a qgov process's Kubernetes client configuration comes from, one rule for all of them
(the CLI, the leader elector, the webhook): a named kubeconfig; else the pod's ServiceAccount
(in-cluster); else $KUBECONFIG or ~/.kube/config, as kubectl does."""

from __future__ import annotations

from typing import Any


def client_configuration(kubeconfig: str | None = None, *, retries: int | None = None) -> Any:
    """A kubernetes.client.Configuration. `retries`: urllib3's retries per request (None: its default)."""
    import kubernetes

    configuration = kubernetes.client.Configuration()
    loaded = False
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            loaded = True
        except kubernetes.config.ConfigException:
            pass
    if not loaded:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    if retries is not None:
        configuration.retries = retries
    return configuration
