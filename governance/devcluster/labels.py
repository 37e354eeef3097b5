"""Label syntax as the API server checks it (apimachinery's validation): keys are an optional
DNS-subdomain prefix and a name of at most 63 characters; values are at most 63 characters,
empty or alphanumeric at both ends. A cluster that took any label would let a bad one pass
every test and fail in the first real cluster."""

from __future__ import annotations

import re
from typing import Any

VALUE_REGEX = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_VALUE = re.compile(f"^{VALUE_REGEX}$")
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
              "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
              f"'12345', regex used for validation is '{VALUE_REGEX}')")


def problems(labels: Any) -> list[str]:
    """The API server's messages for what is wrong with `labels` (empty: nothing)."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return ["metadata.labels: Invalid value: must be a map of strings"]
    found = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if (prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix))) or len(name) > 63 \
                or not _NAME.match(name):
            found.append(f'metadata.labels: Invalid value: "{key}": name part must consist of alphanumeric '
                         "characters, '-', '_' or '.', and must start and end with an alphanumeric character, "
                         "at most 63 characters, with an optional DNS subdomain prefix and '/'")
        elif not isinstance(value, str):
            found.append(f'metadata.labels: Invalid value: {value!r}: must be a string')
        elif len(value) > 63:
            found.append(f'metadata.labels: Invalid value: "{value}": must be no more than 63 characters')
        elif not _VALUE.match(value):
            found.append(f'metadata.labels: Invalid value: "{value}": {VALUE_RULE}')
    return found
