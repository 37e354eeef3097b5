"""The metrics module on its own: bounded labels, IAM and IBM answers counted, a taken port."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
from prometheus_client import REGISTRY

from governance import metrics
from governance.sessions.tokens import Credential, Token, TokenError, TokenManager


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_bounded_label_keeps_its_first_values_and_calls_the_rest_other() -> None:
    bounded = metrics.Bounded(3)
    assert [bounded(v) for v in ("a", "b", None, "a", "d", "e")] == ["a", "b", "none", "a", "other", "other"]


def test_token_exchanges_are_counted_by_outcome() -> None:
    answers = iter([Token("t1", 0.0, 1.0), TokenError("no", "IamUnavailable")])

    def exchange(_: Credential) -> Token:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    refreshes, failures = sample("qgov_iam_token_refreshes_total"), sample("qgov_iam_token_failures_total",
                                                                           reason="IamUnavailable")
    manager = TokenManager(metrics.counted_exchange(exchange), clock=lambda: 10.0)  # every token is due
    credential = Credential("key", "crn:v1:x")
    manager.token(credential)
    with pytest.raises(TokenError):
        manager.token(credential)
    assert sample("qgov_iam_token_refreshes_total") == refreshes + 1
    assert sample("qgov_iam_token_failures_total", reason="IamUnavailable") == failures + 1


def test_ibm_answers_are_counted_by_status_and_no_answer_as_error() -> None:
    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(503)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = sample("qgov_ibm_api_answers_total", method="GET", status="503")
    errors = sample("qgov_ibm_api_answers_total", method="GET", status="error")
    try:
        assert metrics.CountedSession().get(f"http://127.0.0.1:{server.server_port}/x").status_code == 503
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(requests.ConnectionError):
        metrics.CountedSession().get(f"http://127.0.0.1:{server.server_port}/x", timeout=2)
    assert sample("qgov_ibm_api_answers_total", method="GET", status="503") == before + 1
    assert sample("qgov_ibm_api_answers_total", method="GET", status="error") == errors + 1


def test_a_taken_port_costs_the_metrics_not_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        metrics.serve(taken.getsockname()[1])
    assert "cannot serve /metrics" in caplog.text
    metrics.stop()  # nothing was started
