"""A WSGI app served on a port by a daemon thread of the operator, off the event loop: what /metrics
(metrics.py) and the cost API (costapi.py) are served with."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a line per request says nothing
        pass


def serve_in_thread(app: Callable[..., Any], address: str, port: int, name: str) -> WSGIServer:
    """Serve `app` on `address` ('' : every IPv4 address; an IPv6 pod address gets an AF_INET6
    socket) and `port`, in a daemon thread named `name`. Raises OSError when the port cannot be
    bound; the caller says what that costs."""
    host = address or "0.0.0.0"

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host.strip("[]"), port, app, Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def shut(server: WSGIServer) -> None:
    """Stop serving and close the port."""
    server.shutdown()
    server.server_close()
