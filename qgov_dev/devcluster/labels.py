"""Label and name syntax as the API server checks it (apimachinery's validation): label keys
are an optional DNS-subdomain prefix and a name of at most 63 characters; values are at most
63 characters, empty or alphanumeric at both ends; object names are RFC 1123 subdomains
(namespaces: labels). A cluster that took any label or name would let a bad one pass every
test and fail in the first real cluster."""

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


_LABEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_RULE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                  r"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_RULE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def name_problems(name: Any, *, dns_label: bool = False) -> list[str]:
    """The API server's messages for an object name that is not an RFC 1123 subdomain (or label)."""
    if not isinstance(name, str) or not name:
        return []  # a missing name has its own message
    limit, pattern, rule = (63, _LABEL_NAME, LABEL_RULE) if dns_label else (253, _SUBDOMAIN, SUBDOMAIN_RULE)
    found = []
    if len(name) > limit:
        found.append(f'metadata.name: Invalid value: "{name}": must be no more than {limit} characters')
    if not pattern.match(name):
        found.append(f'metadata.name: Invalid value: "{name}": {rule}')
    return found
