"""A QiskitSession's IBM credential and bearer token: the credential read from the session's
Secret, the Runtime API on it, IBM's meter read with it, and `<session>-token`, the Secret its
executor pods mount, written and rotated (never over a Secret qgov did not make for it)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from .. import metrics
from ..api import GROUP, MANAGED_BY_LABEL, SESSION_LABEL, VERSION, label_value
from ..api.specs import Backend, IbmEndpoints, SessionSpec, parse_session
from ..kubeerrors import NotFound, api_errors
from ..providers.ibm.iam import Credential, credential_from_secret, credentials_problem
from ..providers.ibm.runtime_api import RuntimeApi, RuntimeApiError
from ..sessions.status import SessionStatus
from ..sessions.tokens import TokenError, TokenManager
from ..timestamps import iso
from .jobadmission import Admission
from .kube import Kube, created, made_for, unless_gone
from .pods import token_secret_name
from .sessionview import SessionDirectory


class TokenSecretTaken(Exception):
    """`<session>-token` exists and is not this session's: it is never adopted or written over."""

    reason = "TokenSecretTaken"

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"Secret {namespace}/{name} exists and was not made by qgov for this session: the "
                         "session's token is never written over it; delete or rename that Secret")


class SessionCredentials:
    """The sessions' IBM credentials and tokens: the API (kube.Kube), the IBM token cache, the
    sessions' directory (the credentials Secret a session names or defaults to) and admission's
    backends (the endpoints a session's QiskitBackend gives)."""

    def __init__(self, clients: Kube, tokens: TokenManager, directory: SessionDirectory,
                 admission: Admission) -> None:
        self.clients, self.tokens, self.directory, self.admission = clients, tokens, directory, admission

    def load_credential(self, namespace: str, secret: str, endpoints: IbmEndpoints) -> Credential:
        """The IBM credential in a Secret of the session's namespace, for the backend's `endpoints`
        (a Secret naming others is refused); errors name the Secret, not values."""
        try:
            with api_errors():
                obj = self.clients.core.read_namespaced_secret(secret, namespace)
        except NotFound:
            raise TokenError(str(credentials_problem(secret, namespace, None)), "CredentialsMissing") from None
        return credential_from_secret(secret, obj.data or {}, endpoints)

    def runtime_api(self, namespace: str, spec: SessionSpec,
                    backend: Backend | None = None) -> tuple[Credential, RuntimeApi]:
        """The session's credential and the Runtime API on it (TokenError when the Secret is wrong).
        The endpoints are the session's QiskitBackend's (spec.ibm); if that backend is gone, IBM's
        public ones (never anything a tenant wrote)."""
        if backend is None:
            found = self.admission.load_backend(spec.backend)
            backend = found if isinstance(found, Backend) else None
        endpoints = backend.endpoints if backend is not None else IbmEndpoints()
        credential = self.load_credential(namespace, self.directory.credentials_secret(spec.credentials_secret),
                                          endpoints)
        return credential, RuntimeApi(credential, self.tokens, http=metrics.CountedSession())

    def metered_usage(self, namespace: str, session_name: str, runtime_job: str) -> tuple[Any, str]:
        """What IBM metered for `runtime_job`, read with the credential of the QiskitSession the job was
        placed in (the ledger's), and only if the Runtime job is in the Runtime session the operator
        opened for it (its status' sessionId): (Usage, '') or (None, why not)."""
        from ..providers.ibm.metering import metered_usage

        session = self.clients.get_session(namespace, session_name)
        status = SessionStatus.of(session)
        if session is None or not status.session_id:
            return None, f"session {session_name} has no Runtime session to read the meter of"
        try:
            _, api = self.runtime_api(namespace, parse_session(session.get("spec") or {}))
            return metered_usage(api, runtime_job, status.session_id)
        except (TokenError, RuntimeApiError) as exc:
            return None, f"IBM's meter could not be read ({exc})"

    def write_token_secret(self, session: dict[str, Any], token_value: str) -> None:
        """The session's bearer token, for its executor pods (created, or replaced when rotated)."""
        meta = session["metadata"]
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": token_secret_name(meta["name"]), "namespace": meta["namespace"],
                             "labels": {MANAGED_BY_LABEL: "qgov", SESSION_LABEL: label_value(meta["name"])},
                             "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "QiskitSession",
                                                  "name": meta["name"], "uid": meta["uid"], "controller": True}]},
                "data": {"token": base64.b64encode(token_value.encode()).decode()}}
        if not created(lambda: self.clients.core.create_namespaced_secret(meta["namespace"], body)):
            existing = self.clients.core.read_namespaced_secret(body["metadata"]["name"], meta["namespace"])
            if not made_for(existing.metadata, meta["uid"]):
                raise TokenSecretTaken(meta["namespace"], body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = existing.metadata.resource_version  # ours: rotated in place
            self.clients.core.replace_namespaced_secret(body["metadata"]["name"], meta["namespace"], body)

    def token_secret_free(self, session: dict[str, Any]) -> None:
        """Raise TokenSecretTaken if `<session>-token` exists and is not this session's (before
        anything is opened at IBM: a session that cannot hand its token to its pods opens nothing)."""
        meta = session["metadata"]
        name = token_secret_name(meta["name"])
        existing = unless_gone(lambda: self.clients.core.read_namespaced_secret(name, meta["namespace"]))
        if existing is None:
            return
        if not made_for(existing.metadata, meta["uid"]):
            raise TokenSecretTaken(meta["namespace"], name)

    def fresh_token(self, session: dict[str, Any], credential: Credential, force: bool = False) -> str:
        """Refresh the token when it is due and rotate the Secret (`force`: write it even if the
        token did not change); returns the token's expiry (ISO)."""
        token = self.tokens.token(credential)
        expiry = iso(datetime.fromtimestamp(token.expires_at, timezone.utc))
        if force or SessionStatus.of(session).token_expiry != expiry:
            self.write_token_secret(session, token.value)
        return expiry
