"""IAM tokens against a local server speaking IAM's protocol, over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from governance.providers.ibm.iam import Credential, iam_exchange
from governance.sessions.tokens import TokenError, TokenManager
from qgov_dev.testing.ibm_iam import LocalIam

KEY, OTHER = "k3y-SECRET-0123456789", "0ther-SECRET-abcdef"
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:def::"


def credential(iam: LocalIam, key: str = KEY) -> Credential:
    return Credential(key, CRN, iam_url=iam.url)


def test_a_token_is_exchanged_once_and_cached() -> None:
    with LocalIam({KEY: "team-a"}, lifetime=3600) as iam:
        manager = TokenManager(iam_exchange)
        first = manager.token(credential(iam))
        again = manager.token(credential(iam))
        assert first is again and iam.exchanges[KEY] == 1
        assert first.value == iam.issued[0] and first.lifetime == 3600


@pytest.mark.parametrize("lifetime, margin", [(3600, 360), (600, 360), (10_000, 1000)])
def test_refresh_happens_when_less_than_max_360s_or_10_percent_remains(lifetime: int, margin: int) -> None:
    with LocalIam({KEY: "team-a"}, lifetime=lifetime) as iam:
        offset = [0.0]
        manager = TokenManager(iam_exchange, clock=lambda: time.time() + offset[0])
        token = manager.token(credential(iam))
        offset[0] = token.expires_at - time.time() - margin - 5  # 5 s before the refresh point
        assert manager.token(credential(iam)) is token and iam.exchanges[KEY] == 1
        offset[0] = token.expires_at - time.time() - margin + 5  # 5 s after it
        refreshed = manager.token(credential(iam))
        assert refreshed is not token and iam.exchanges[KEY] == 2
        assert manager.next_refresh(credential(iam)) == pytest.approx(refreshed.expires_at - margin)


def test_one_exchange_in_flight_per_credential() -> None:
    with LocalIam({KEY: "team-a", OTHER: "team-b"}, delay=0.3) as iam:
        manager = TokenManager(iam_exchange)
        results: list[str] = []

        def ask(key: str) -> None:
            results.append(manager.token(credential(iam, key)).value)

        threads = [threading.Thread(target=ask, args=(KEY if i % 2 else OTHER,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert iam.exchanges == {KEY: 1, OTHER: 1}  # 20 callers, one exchange per credential
        assert len(set(results)) == 2
        assert iam.max_in_flight_per_key == 1  # never two exchanges for one credential at once
        assert iam.max_in_flight == 2  # but the two credentials were exchanged in parallel


def test_a_refused_key_gives_iams_reason_without_the_key() -> None:
    with LocalIam({KEY: "team-a"}) as iam:
        bad = Credential("wrong-SECRET-key", CRN, iam_url=iam.url)
        with pytest.raises(TokenError) as err:
            TokenManager(iam_exchange).token(bad)
        text = str(err.value)
        assert "BXNIM0415E Provided API key could not be found" in text and bad.fingerprint in text
        assert "wrong-SECRET-key" not in text and "SECRET" not in repr(err.value)
        assert err.value.reason == "CredentialsRefused"  # a person must fix it: not retried


def test_iam_outages_are_retried() -> None:
    with LocalIam({KEY: "team-a"}) as iam:
        iam.fail_next = 2
        token = iam_exchange(credential(iam))
        assert token.value == iam.issued[0] and iam.exchanges[KEY] == 3
        iam.fail_next = 5
        with pytest.raises(TokenError, match="after 3 attempts: HTTP 503") as err:
            iam_exchange(credential(iam))
        assert err.value.reason == "IamUnavailable"  # IBM's outage passes: the caller looks again later


def test_a_secret_without_a_key_or_instance_says_which_and_shows_no_value() -> None:
    import base64

    from governance.providers.ibm.iam import credential_from_secret

    data = {"apiKey": base64.b64encode(b"hidden-key-value").decode()}
    with pytest.raises(TokenError) as err:
        credential_from_secret("ibm-quantum", data)
    assert str(err.value).startswith("Secret ibm-quantum has no instance") and err.value.reason == "CredentialsMissing"
    assert "hidden-key-value" not in str(err.value)
    good = credential_from_secret("ibm-quantum", {**data, "instance": base64.b64encode(CRN.encode()).decode()})
    assert good.instance == CRN and good.url is None and "hidden" not in repr(good)


def test_the_endpoints_are_the_backends_and_a_secret_naming_others_is_refused() -> None:
    import base64

    from governance.api.specs import parse_backend
    from governance.providers.ibm.iam import DEFAULT_IAM_URL, credential_from_secret

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = {"apiKey": b64("hidden-key-value"), "instance": b64(CRN)}
    backend = parse_backend("ibm-private", {"provider": "ibm", "name": "ibm_torino", "ibm": {
        "url": "https://runtime.private.example", "iamUrl": "https://iam.private.example/"}})
    credential = credential_from_secret("ibm-quantum", data, backend.endpoints)
    assert (credential.url, credential.iam_url) == ("https://runtime.private.example", "https://iam.private.example")
    assert credential_from_secret("ibm-quantum", data).iam_url == DEFAULT_IAM_URL  # no spec.ibm: IBM's own
    # the Secret repeating the backend's endpoints is fine; naming another is refused, by key, never by value
    same = credential_from_secret("ibm-quantum", {**data, "url": b64("https://runtime.private.example")},
                                  backend.endpoints)
    assert same.url == "https://runtime.private.example"
    with pytest.raises(TokenError) as err:
        credential_from_secret("ibm-quantum", {**data, "iamUrl": b64("http://attacker.example:8080"),
                                               "url": b64("http://attacker.example:8080")}, backend.endpoints)
    assert err.value.reason == "EndpointNotAllowed"
    assert str(err.value).startswith("Secret ibm-quantum names url, iamUrl: IBM endpoints come from the QiskitBackend")
    assert "attacker" not in str(err.value) and "hidden-key-value" not in str(err.value)
    with pytest.raises(TokenError, match="names iamUrl"):  # without spec.ibm, only IBM's public IAM is allowed
        credential_from_secret("ibm-quantum", {**data, "iamUrl": b64("http://127.0.0.1:1")})
    # spec.ibm's URLs are absolute http(s) without user-info
    from governance.api.specs import SpecError
    with pytest.raises(SpecError, match="spec.ibm.iamUrl: an absolute http"):
        parse_backend("x", {"provider": "ibm", "name": "ibm_torino", "ibm": {"iamUrl": "https://u:p@iam.example"}})


def test_no_secret_in_reprs() -> None:
    with LocalIam({KEY: "team-a"}) as iam:
        cred = credential(iam)
        token = TokenManager(iam_exchange).token(cred)
        assert KEY not in repr(cred) and token.value not in repr(token)
        assert cred.fingerprint not in (KEY, "") and len(cred.fingerprint) == 12


def test_an_error_body_reaches_a_status_short_and_sanitised() -> None:
    from governance.providers.ibm.answers import brief

    body = ("<html><body>\x1b[31mInvalid API key eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl "
            "sent to https://user:pw@iam.example.com/identity/token?apikey=s3cretvalue</body></html>")
    text = brief(body)
    assert text == "[31mInvalid API key […] sent to https://iam.example.com/identity/token"
    assert "eyJ" not in text and "s3cret" not in text and "user:pw" not in text and "<" not in text
    assert brief("Session 0f3c9d3e-2b4a-4c1e-9a57-123456789abc is closed") == \
        "Session 0f3c9d3e-2b4a-4c1e-9a57-123456789abc is closed"  # ids stay: they say which
    assert len(brief("word " * 200)) == 160 and brief("word " * 200).endswith("…")
