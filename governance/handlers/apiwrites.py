"""The writes an admission makes (the job's finalizer, its status, its executor pod), sent over a
kept-alive HTTP connection of the calling thread, without the kubernetes client's per-call
machinery.

Each admitted job costs three writes. Through the kubernetes client one took about 0.35 ms of
the operator's CPU on an idle machine: parameter checks, header selection, urllib3's pool
manager (pool key normalisation, a connection check, a header dict per request), before any
byte was sent. Sent with http.client on a connection the thread keeps, the same write takes
about 0.1 ms. The request is the same (method, path, JSON body, content type, the client's
headers and credentials, TLS settings), and so is a refusal: an ApiException (NotFound, Conflict,
...) with the status, reason, headers and body of the answer.

Anything the connection here does not handle (a proxy, a TLS server name override) makes
`connection()` return None, and the callers use the kubernetes client as before.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

from kubernetes.client import exceptions
from urllib3.util.wait import wait_for_read


class Answer:
    """An HTTP answer in the shape ApiException reads (`http_resp`)."""

    def __init__(self, response: http.client.HTTPResponse, data: bytes) -> None:
        self.status, self.reason, self.data = response.status, response.reason, data
        self._headers = response.headers

    def getheaders(self) -> Any:
        return self._headers


def refusal(answer: Answer) -> exceptions.ApiException:
    """The exception the kubernetes client raises for this answer."""
    kind = {401: exceptions.UnauthorizedException, 403: exceptions.ForbiddenException,
            404: exceptions.NotFoundException}.get(answer.status)
    if kind is None:
        kind = exceptions.ServiceException if 500 <= answer.status <= 599 else exceptions.ApiException
    return kind(http_resp=answer)


class Connection:
    """One thread's connection to the API server, made from its kubernetes ApiClient's settings."""

    def __init__(self, api_client: Any) -> None:
        cfg = api_client.configuration
        url = urlsplit(cfg.host)
        self._cfg, self._prefix = cfg, url.path.rstrip("/")
        self._sanitize = api_client.sanitize_for_serialization  # what JSON lacks (datetimes, models), as the client
        self._headers = {**api_client.default_headers, "Accept": "application/json"}
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.verify_ssl \
                else ssl._create_unverified_context()  # noqa: S323 - as configured (verify_ssl=False)
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file)
            if cfg.assert_hostname is False:
                context.check_hostname = False
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.hostname or "", url.port or 443, context=context)
        else:
            self._conn = http.client.HTTPConnection(url.hostname or "", url.port or 80)

    @staticmethod
    def supported(api_client: Any) -> bool:
        cfg = api_client.configuration
        return (urlsplit(cfg.host).scheme in ("http", "https") and not getattr(cfg, "proxy", None)
                and not getattr(cfg, "tls_server_name", None) and not getattr(cfg, "username", None))

    def request(self, method: str, path: str, body: Any, content_type: str = "application/json") -> bytes:
        """Send one request; the answer's body, or the kubernetes client's exception for a refusal."""
        headers = {**self._headers, "Content-Type": content_type}
        auth = self._cfg.auth_settings().get("BearerToken")  # refreshes an expiring token, as the client does
        if auth and auth.get("value"):
            headers["Authorization"] = auth["value"]
        sock = self._conn.sock
        if sock is not None and wait_for_read(sock, timeout=0.0):
            self._conn.close()  # the server closed the idle connection (or sent what nobody asked for)
        try:
            self._conn.request(method, self._prefix + path, body=json.dumps(body, default=self._sanitize),
                               headers=headers)
            response = self._conn.getresponse()
            data = response.read()
        except BaseException:
            self._conn.close()
            raise
        if not 200 <= response.status <= 299:
            raise refusal(Answer(response, data))
        return data


def custom_path(group: str, version: str, namespace: str, plural: str, name: str, sub: str = "") -> str:
    return (f"/apis/{group}/{version}/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"
            + (f"/{sub}" if sub else ""))


def pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods"
