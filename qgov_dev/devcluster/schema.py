"""Structural OpenAPI v3 schemas of CRDs: prune unknown fields, apply defaults, validate.

The same order as the API server: decode → prune → default → validate. Errors carry the
field path (`spec.shots`) and the API server's wording, so kubectl shows familiar messages.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueTypeInvalid
    message: str


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_TOP_LEVEL = {"apiVersion", "kind", "metadata"}


def prune(value: Any, schema: dict[str, Any], top: bool = False) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-embedded-resource")
        out = {}
        for key, item in value.items():
            if top and key in _TOP_LEVEL:
                out[key] = item
            elif props is not None and key in props:
                out[key] = prune(item, props[key])
            elif isinstance(additional, dict):
                out[key] = prune(item, additional)
            elif keep_unknown or additional is True or (props is None and schema.get("type") != "object"):
                out[key] = item
            elif props is None and not keep_unknown and schema.get("type") == "object" and additional is None:
                continue  # an object schema with no properties keeps nothing unknown
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def default(value: Any, schema: dict[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = default(value[key], sub)
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = default(value[key], schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [default(item, schema["items"]) for item in value]
    return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return f'"{type(value).__name__}"'
    return str(value)


def validate(value: Any, schema: dict[str, Any], path: str = "", top: bool = False) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(schema, dict):
        return errors
    where = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return errors
        if "type" in schema:
            return [FieldError(where, "FieldValueTypeInvalid",
                               f"Invalid value: \"null\": {where} in body must be of type {schema['type']}: \"null\"")]
        return errors
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _TYPES["integer"](value)):
            errors.append(FieldError(where, "FieldValueTypeInvalid",
                                     f"Invalid value: {_show(value)}: {where} in body must be of type int-or-string"))
        return errors
    if kind and kind in _TYPES and not _TYPES[kind](value):
        actual = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
                  float: "number"}.get(type(value), type(value).__name__)
        return [FieldError(where, "FieldValueTypeInvalid",
                           f"Invalid value: \"{actual}\": {where} in body must be of type {kind}: \"{actual}\"")]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_show(v) for v in schema["enum"])
        errors.append(FieldError(where, "FieldValueNotSupported",
                                 f"Unsupported value: {_show(value)}: supported values: {allowed}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            if schema.get("exclusiveMinimum") is True and value <= schema["minimum"]:
                errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {value}: {where} in body "
                                         f"should be greater than {schema['minimum']}"))
            elif value < schema["minimum"]:
                errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {value}: {where} in body "
                                         f"should be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema:
            if schema.get("exclusiveMaximum") is True and value >= schema["maximum"]:
                errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {value}: {where} in body "
                                         f"should be less than {schema['maximum']}"))
            elif value > schema["maximum"]:
                errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {value}: {where} in body "
                                         f"should be less than or equal to {schema['maximum']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {_show(value)}: {where} in body "
                                     f"should be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(where, "FieldValueTooLong", f"Too long: {where} in body may not be longer "
                                     f"than {schema['maxLength']}"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {_show(value)}: {where} in body "
                                     f"should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(FieldError(where, "FieldValueInvalid", f"Invalid value: {len(value)}: {where} in body "
                                     f"should have at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(FieldError(where, "FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                                     f"{schema['maxItems']} items"))
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        for req in schema.get("required") or []:
            if req not in value:
                field = f"{path}.{req}" if path else req
                errors.append(FieldError(field, "FieldValueRequired", "Required value"))
        props = schema.get("properties") or {}
        for key, item in value.items():
            if top and key in _TOP_LEVEL:
                continue
            sub = props.get(key) if key in props else schema.get("additionalProperties")
            if isinstance(sub, dict):
                errors += validate(item, sub, f"{path}.{key}" if path else key)
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(FieldError(where, "FieldValueInvalid",
                                     f"{where} in body should have at least {schema['minProperties']} properties"))
    for combinator in ("allOf",):
        for sub in schema.get(combinator) or []:
            errors += validate(value, sub, path)
    if schema.get("anyOf") and all(validate(value, sub, path) for sub in schema["anyOf"]):
        errors.append(FieldError(where, "FieldValueInvalid", f"{where} in body must match at least one schema in anyOf"))
    if schema.get("oneOf") and sum(1 for sub in schema["oneOf"] if not validate(value, sub, path)) != 1:
        errors.append(FieldError(where, "FieldValueInvalid", f"{where} in body must match exactly one schema in oneOf"))
    return errors
