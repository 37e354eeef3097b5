"""IBM Cloud IAM: credentials (an API key and an instance CRN, from a Secret) and the exchange of
an API key for a bearer token. The token cache and its refresh timing are the pure core's
(governance/sessions/tokens.py, TokenManager); this is the HTTP side, which only the ibm
provider needs. Keys and tokens never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...sessions.tokens import Token, TokenError
from .answers import brief

if TYPE_CHECKING:
    from ...api.specs import IbmEndpoints

GRANT = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_IAM_URL = "https://iam.cloud.ibm.com"


@dataclass(frozen=True)
class Credential:
    api_key: str = field(repr=False)
    instance: str  # the instance CRN
    iam_url: str = DEFAULT_IAM_URL
    url: str | None = None  # a private Runtime endpoint, if any
    search_url: str | None = None  # private Global Search / Global Catalog endpoints, for the client in pods
    catalog_url: str | None = None

    @property
    def fingerprint(self) -> str:
        """A stable, non-reversible name for logs and cache keys."""
        return hashlib.sha256(f"{self.iam_url}\0{self.api_key}".encode()).hexdigest()[:12]


def credentials_problem(name: str, namespace: str, keys: set[str] | frozenset[str] | None) -> str | None:
    """What is wrong with credential Secret `name` that has (non-empty) `keys`, None when it is
    absent; None when nothing is. Names keys, never values (the admission webhook asks too)."""
    if keys is None:
        return f"no Secret {name!r} in namespace {namespace!r} (it needs keys apiKey and instance)"
    missing = [k for k in ("apiKey", "instance") if k not in keys]
    if missing:
        return (f"Secret {name} has no {' and no '.join(missing)} (it needs apiKey and instance, the "
                "instance's CRN; IBM's endpoints are the QiskitBackend's spec.ibm)")
    return None


def credential_from_secret(name: str, data: dict[str, str], endpoints: IbmEndpoints | None = None) -> Credential:
    """A credential from a Secret's `data` (base64 values): apiKey and instance are required.
    The endpoints the operator calls (and sends the key to) are the QiskitBackend's (`endpoints`,
    spec.ibm, the platform's), never the Secret's: a tenant's Secret that names url, iamUrl,
    searchUrl or catalogUrl other than those is refused (EndpointNotAllowed), one that repeats them
    is fine. Errors name keys, not values."""
    decoded: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value).decode().strip()
        except (ValueError, UnicodeDecodeError):
            raise TokenError(f"Secret {name}: key {key} is not valid base64 text", "CredentialsMissing") from None
    problem = credentials_problem(name, "", {k for k, v in decoded.items() if v})
    if problem:
        raise TokenError(problem, "CredentialsMissing")
    allowed = {"url": endpoints.url if endpoints else None,
               "iamUrl": (endpoints.iam_url if endpoints else None) or DEFAULT_IAM_URL,
               "searchUrl": endpoints.search_url if endpoints else None,
               "catalogUrl": endpoints.catalog_url if endpoints else None}
    named = [key for key, value in allowed.items() if decoded.get(key) and decoded[key].rstrip("/") != value]
    if named:
        raise TokenError(f"Secret {name} names {', '.join(named)}: IBM endpoints come from the QiskitBackend "
                         f"(spec.ibm), never from a credential Secret; remove {'them' if len(named) > 1 else 'it'} "
                         "from the Secret (a platform admin sets spec.ibm)", "EndpointNotAllowed")
    return Credential(decoded["apiKey"], decoded["instance"], allowed["iamUrl"] or DEFAULT_IAM_URL, allowed["url"],
                      allowed["searchUrl"], allowed["catalogUrl"])


def _claims(jwt: str) -> dict[str, float]:
    try:
        payload = jwt.split(".")[1]
        claims: dict[str, float] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims
    except (IndexError, ValueError):
        raise TokenError("IAM answered with an access token that is not a JWT") from None


def iam_exchange(credential: Credential, *, timeout: float = 10.0, attempts: int = 3) -> Token:
    """POST the API key to IAM; retries 5xx and connection errors, not refusals."""
    body = urllib.parse.urlencode({"grant_type": GRANT, "apikey": credential.api_key}).encode()
    request = urllib.request.Request(f"{credential.iam_url.rstrip('/')}/identity/token", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "application/json"})
    problem = ""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
            token = answer["access_token"]
            claims = _claims(token)
            issued = float(claims.get("iat", time.time()))
            expires = float(claims.get("exp", issued + float(answer.get("expires_in", 0))))
            return Token(token, issued, expires)
        except urllib.error.HTTPError as exc:
            detail = _iam_error(exc)
            if exc.code < 500:
                raise TokenError(f"IAM refused the API key of credential {credential.fingerprint} "
                                 f"(HTTP {exc.code}): {detail}") from None
            problem = f"HTTP {exc.code}: {detail}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            problem = f"cannot reach IAM at {credential.iam_url}: {getattr(exc, 'reason', exc)}"
        except (KeyError, ValueError):
            raise TokenError(f"IAM's answer for credential {credential.fingerprint} has no usable access token") \
                from None
        time.sleep(min(2.0, 0.2 * 2 ** attempt))
    raise TokenError(f"no token for credential {credential.fingerprint} after {attempts} attempts: {problem}",
                     "IamUnavailable")


def _iam_error(exc: urllib.error.HTTPError) -> str:
    """IAM's error code and reason, short and sanitised (answers.brief): a body may carry anything."""
    try:
        data = json.loads(exc.read())
        return brief(f"{data.get('errorCode', '')} {data.get('errorMessage', '')}".strip() or exc.reason)
    except (ValueError, OSError, AttributeError):
        return brief(exc.reason or "no detail")
