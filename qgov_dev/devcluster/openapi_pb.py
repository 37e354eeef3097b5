"""OpenAPI v2 in gnostic's protobuf encoding, the only form kubectl asks /openapi/v2 for.

kubectl sends `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes
the body as an `openapi.v2.Document` (github.com/google/gnostic-models, OpenAPIv2.proto). Only
the messages a swagger document with definitions needs are encoded here, by hand: protobuf's
wire format is small, and the project needs no protobuf runtime for it. Vendor extensions and
enum/default values travel as YAML text (`Any.yaml`), as gnostic writes them; JSON is YAML.
"""

from __future__ import annotations

import json
import struct
from typing import Any

ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what kubectl asks for
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # what servers answer ('@' is no mime)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64s take ten bytes, two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(data)) + data


def _string(field: int, text: str) -> bytes:
    return _bytes(field, text.encode()) if text else b""


def _int(field: int, n: int | bool) -> bytes:
    return _tag(field, 0) + _varint(int(n)) if n else b""


def _double(field: int, x: float) -> bytes:
    return _tag(field, 1) + struct.pack("<d", float(x)) if x else b""


def _any(field: int, value: Any) -> bytes:
    """openapi.v2.Any: field 2 holds the value as YAML."""
    return _bytes(field, _string(2, json.dumps(value)))


def _named(field: int, name: str, value: bytes) -> bytes:
    return _bytes(field, _string(1, name) + _bytes(2, value))


def schema(s: dict[str, Any]) -> bytes:
    """An openapi.v2.Schema message."""
    out = bytearray()
    out += _string(1, s.get("$ref", ""))
    out += _string(2, s.get("format", ""))
    out += _string(3, s.get("title", ""))
    out += _string(4, s.get("description", ""))
    if "default" in s:
        out += _any(5, s["default"])
    for field, key in ((6, "multipleOf"), (7, "maximum")):
        if isinstance(s.get(key), (int, float)):
            out += _double(field, s[key])
    out += _int(8, s.get("exclusiveMaximum") is True)
    if isinstance(s.get("minimum"), (int, float)):
        out += _double(9, s["minimum"])
    out += _int(10, s.get("exclusiveMinimum") is True)
    for field, key in ((11, "maxLength"), (12, "minLength")):
        out += _int(field, s.get(key) or 0)
    out += _string(13, s.get("pattern", ""))
    for field, key in ((14, "maxItems"), (15, "minItems")):
        out += _int(field, s.get(key) or 0)
    out += _int(16, bool(s.get("uniqueItems")))
    for field, key in ((17, "maxProperties"), (18, "minProperties")):
        out += _int(field, s.get(key) or 0)
    for name in s.get("required") or []:
        out += _bytes(19, name.encode())
    for value in s.get("enum") or []:
        out += _any(20, value)
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        out += _bytes(21, _bytes(1, schema(extra)))
    elif isinstance(extra, bool):
        out += _bytes(21, _tag(2, 0) + _varint(int(extra)))
    if s.get("type"):
        kinds = s["type"] if isinstance(s["type"], list) else [s["type"]]
        out += _bytes(22, b"".join(_bytes(1, k.encode()) for k in kinds))
    if isinstance(s.get("items"), dict):
        out += _bytes(23, _bytes(1, schema(s["items"])))
    for sub in s.get("allOf") or []:
        out += _bytes(24, schema(sub))
    if isinstance(s.get("properties"), dict):
        out += _bytes(25, b"".join(_named(1, name, schema(sub)) for name, sub in s["properties"].items()))
    for key, value in s.items():
        if key.startswith("x-"):
            out += _named(31, key, _string(2, json.dumps(value)))
    return bytes(out)


def document(doc: dict[str, Any]) -> bytes:
    """An openapi.v2.Document: swagger, info and definitions (the paths are left out)."""
    info = doc.get("info") or {}
    out = bytearray(_string(1, doc.get("swagger", "2.0")))
    out += _bytes(2, _string(1, info.get("title", "")) + _string(2, info.get("version", "")))
    out += _bytes(9, b"".join(_named(1, name, schema(s)) for name, s in (doc.get("definitions") or {}).items()))
    return bytes(out)
