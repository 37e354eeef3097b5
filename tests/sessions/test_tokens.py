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
        manager = TokenManager()
        first = manager.token(credential(iam))
        again = manager.token(credential(iam))
        assert first is again and iam.exchanges[KEY] == 1
        assert first.value == iam.issued[0] and first.lifetime == 3600


@pytest.mark.parametrize("lifetime, margin", [(3600, 360), (600, 360), (10_000, 1000)])
def test_refresh_happens_when_less_than_max_360s_or_10_percent_remains(lifetime: int, margin: int) -> None:
    with LocalIam({KEY: "team-a"}, lifetime=lifetime) as iam:
        offset = [0.0]
        manager = TokenManager(clock=lambda: time.time() + offset[0])
        token = manager.token(credential(iam))
        offset[0] = token.expires_at - time.time() - margin - 5  # 5 s before the refresh point
        assert manager.token(credential(iam)) is token and iam.exchanges[KEY] == 1
        offset[0] = token.expires_at - time.time() - margin + 5  # 5 s after it
        refreshed = manager.token(credential(iam))
        assert refreshed is not token and iam.exchanges[KEY] == 2
        assert manager.next_refresh(credential(iam)) == pytest.approx(refreshed.expires_at - margin)


def test_one_exchange_in_flight_per_credential() -> None:
    with LocalIam({KEY: "team-a", OTHER: "team-b"}, delay=0.3) as iam:
        manager = TokenManager()
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
            TokenManager().token(bad)
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
    good = credential_from_secret("ibm-quantum", {**data, "instance": base64.b64encode(CRN.encode()).decode(),
                                                  "url": base64.b64encode(b"https://private.example").decode()})
    assert good.instance == CRN and good.url == "https://private.example" and "hidden" not in repr(good)


def test_no_secret_in_reprs() -> None:
    with LocalIam({KEY: "team-a"}) as iam:
        cred = credential(iam)
        token = TokenManager().token(cred)
        assert KEY not in repr(cred) and token.value not in repr(token)
        assert cred.fingerprint not in (KEY, "") and len(cred.fingerprint) == 12
