"""Assemble the dev cluster: store + API server + pod runner on 127.0.0.1, and a kubeconfig."""

from __future__ import annotations

import os

import asyncio
import tempfile
import threading
from pathlib import Path

from aiohttp import web

from governance.loopthread import stop_loop_thread
from .bed import Bed
from .kubelet import PodRunner
from .server import ApiServer
from .store import Store

KUBECONFIG_TEMPLATE = """apiVersion: v1
kind: Config
clusters:
- name: qgov-dev
  cluster:
    server: {url}
contexts:
- name: qgov-dev
  context:
    cluster: qgov-dev
    user: qgov-dev
    namespace: default
current-context: qgov-dev
users:
- name: qgov-dev
  user: {{}}
"""


class DevCluster:
    """The API emulator and the pod runner, on this process's event loop."""

    def __init__(self, *, port: int = 0, workdir: Path | None = None, pods: bool = True) -> None:
        self.port = port
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="qgov-dev-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.store = Store()
        node_env = {"KUBECONFIG": str(self.kubeconfig)}
        if os.environ.get("PYTHONPATH"):  # a checkout that is not the installed one: its pods run it too
            node_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        # the pods' addresses, and a guardian that ends what the cluster started if this process dies
        self.bed = Bed.claim()
        self.runner = PodRunner(self.store, workdir=self.workdir / "pods", extra_env=node_env,
                                bed=self.bed) if pods else None
        self.api = ApiServer(self.store, log_source=self.runner.logs if self.runner else None)
        self._app_runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self._app_runner = web.AppRunner(self.api.app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._app_runner.setup()
        site = web.TCPSite(self._app_runner, "127.0.0.1", self.port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api.address = f"127.0.0.1:{self.port}"
        self.kubeconfig.write_text(KUBECONFIG_TEMPLATE.format(url=self.url))

    async def stop(self) -> None:
        self.store.end_watches()
        await asyncio.sleep(0.05)  # let the streams write their end
        if self.runner:
            await self.runner.close()
        if self._app_runner:
            await self._app_runner.cleanup()
        await asyncio.to_thread(self.bed.close)


class ThreadedDevCluster:
    """A DevCluster on its own event loop in a background thread (for tests and `qgov dev`)."""

    def __init__(self, **kwargs: object) -> None:
        self._kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="qgov-dev-cluster", daemon=True)
        self.cluster: DevCluster | None = None

    def __enter__(self) -> DevCluster:
        self._thread.start()

        async def make() -> DevCluster:
            cluster = DevCluster(**self._kwargs)  # type: ignore[arg-type]
            await cluster.start()
            return cluster

        self.cluster = asyncio.run_coroutine_threadsafe(make(), self.loop).result(30)
        return self.cluster

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run fn(*args) on the cluster's loop (the store is not thread-safe)."""
        async def run():  # type: ignore[no-untyped-def]
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def __exit__(self, *exc: object) -> None:
        if self.cluster:
            asyncio.run_coroutine_threadsafe(self.cluster.stop(), self.loop).result(30)
        stop_loop_thread(self.loop, self._thread)
