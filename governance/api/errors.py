"""One line for an error, wherever it is shown (a log, a job's status, an executor's report)."""

from __future__ import annotations

import json


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """An API error as its status and the API server's own message (what was refused and why, the
    RBAC verb and resource), never the response headers; anything else as its type and message."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if isinstance(status, int) and body:
        try:
            answer = json.loads(body)
            return f"{type(exc).__name__} ({status} {answer.get('reason', '')}): {str(answer.get('message', ''))[:limit]}"
        except (ValueError, AttributeError, TypeError):
            pass
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"
