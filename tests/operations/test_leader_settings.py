"""How `qgov operator` decides whether to elect a leader, what it is called, and where it listens."""

from __future__ import annotations

import pytest

from governance.cli import main
from governance.handlers.config import listen_address
from governance.leader.replica import Election, bind_host


def test_outside_a_pod_the_operator_acts_at_once_unless_told_otherwise() -> None:
    assert not Election.from_env({}).enabled  # qgov dev, or an operator run from a kubeconfig
    assert Election.from_env({"QGOV_LEADER_ELECTION": "true"}).enabled
    assert not Election.from_env({"QGOV_LEADER_ELECTION": "false", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}).enabled


def test_the_lease_names_the_pod_and_each_start_is_a_new_candidate() -> None:
    env = {"POD_NAME": "qgov-operator-abc-12345", "POD_NAMESPACE": "platform", "QGOV_LEASE_NAME": "qgov-eu"}
    a, b = Election.from_env(env), Election.from_env(env)
    assert (a.namespace, a.name) == ("platform", "qgov-eu")
    assert a.identity.startswith("qgov-operator-abc-12345_") and a.identity != b.identity
    default = Election.from_env({"HOSTNAME": "x"})
    assert default.name == "qgov-operator" and default.identity.startswith("x_")
    assert (default.timing.duration_s, default.timing.renew_every_s, default.timing.renew_deadline_s) == (15, 3, 12)


def test_a_wrong_setting_is_one_line_and_a_failed_exit(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QGOV_LEADER_ELECTION", "maybe")
    assert main(["operator"]) == 1
    assert capsys.readouterr().err.strip() == ("qgov: error: QGOV_LEADER_ELECTION='maybe': "
                                               "expected true, false or auto")


def test_listeners_bind_to_the_pod_ip_when_the_url_says_any_address() -> None:
    assert listen_address({"POD_IP": "10.1.2.3"}) == "10.1.2.3"
    assert listen_address({"POD_IP": "10.1.2.3", "QGOV_LISTEN_ADDRESS": "0.0.0.0"}) == "0.0.0.0"
    assert bind_host("0.0.0.0", "10.1.2.3") == "10.1.2.3"
    assert bind_host("0.0.0.0", "") == "0.0.0.0"
    assert bind_host("127.0.0.1", "10.1.2.3") == "127.0.0.1"  # an explicit host is kept


def test_a_wrong_metrics_auth_setting_is_one_line_and_a_failed_exit(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QGOV_METRICS_AUTH", "open")
    assert main(["operator"]) == 1
    assert capsys.readouterr().err.strip() == ("qgov: error: QGOV_METRICS_AUTH='open': "
                                               "expected one of kubernetes, none")


def test_the_webhooks_client_ca_must_exist_and_names_need_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from governance.webhook import WebhookConfig

    monkeypatch.setenv("QGOV_WEBHOOK_PORT", "8443")
    monkeypatch.setenv("QGOV_WEBHOOK_CLIENT_NAMES", "kube-apiserver")
    with pytest.raises(ValueError, match="QGOV_WEBHOOK_CLIENT_NAMES needs QGOV_WEBHOOK_CLIENT_CA"):
        WebhookConfig.from_env()
    monkeypatch.setenv("QGOV_WEBHOOK_CLIENT_CA", str(tmp_path / "missing.crt"))
    with pytest.raises(ValueError, match="missing.crt'.*no such file"):
        WebhookConfig.from_env()
    (tmp_path / "ca.crt").write_text("")
    monkeypatch.setenv("QGOV_WEBHOOK_CLIENT_CA", str(tmp_path / "ca.crt"))
    config = WebhookConfig.from_env()
    assert config is not None and config.client_ca == str(tmp_path / "ca.crt")
    assert config.client_names == frozenset({"kube-apiserver"})
