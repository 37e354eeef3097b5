"""Chunked lists (`limit` and `continue`), so clients that page through a list are exercised.

A real server answers `limit=N` with at most N items and a `continue` token while more remain;
without this every list came back whole and a client's paging loop never ran a second time.
Unlike etcd, later pages are read from the current state (the items after the last key given),
not from a snapshot at the first page's resourceVersion, which all pages still report.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .store import ApiError


def _key(obj: dict[str, Any]) -> list[str]:
    return [obj["metadata"].get("namespace", ""), obj["metadata"]["name"]]


def _token(rv: int, last: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last}).encode()).decode()


def page(items: list[dict[str, Any]], rv: int, query: Any) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """items (sorted by namespace and name) cut to one page; the list's rv; metadata to add to the list."""
    try:
        limit = int(query.get("limit") or 0)
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid limit {query.get('limit')!r}") from None
    if query.get("continue"):
        try:
            state = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
            rv, after = int(state["rv"]), list(state["start"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise ApiError(400, "BadRequest", "continue key is not valid") from None
        items = [o for o in items if _key(o) > after]
    extra: dict[str, Any] = {}
    if 0 < limit < len(items):
        remaining = len(items) - limit
        items = items[:limit]
        extra["continue"] = _token(rv, _key(items[-1]))
        if not query.get("labelSelector") and not query.get("fieldSelector"):
            extra["remainingItemCount"] = remaining
    return items, rv, extra
