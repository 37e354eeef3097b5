"""What a cost query may ask for, checked without the database (the cost API, kubectl qgov report)."""

from __future__ import annotations

import re

from .errors import LedgerError

AGGREGATES = ("namespace", "budget", "backend", "session")
LABEL_AGGREGATE = "label:"  # label:KEY, by the value of the job's label KEY at admission
# a Kubernetes label key: an optional DNS subdomain prefix and a name of up to 63 characters
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


class BadQuery(LedgerError):
    """A cost query a user got wrong (window, aggregate, format): said plainly, nothing read."""


def check_aggregate(by: str) -> str | None:
    """Raise BadQuery unless `by` is an aggregate: one of AGGREGATES or label:KEY. Returns the
    label key of label:KEY, else None."""
    if by.startswith(LABEL_AGGREGATE):
        key = by[len(LABEL_AGGREGATE):]
        if not _LABEL_KEY.fullmatch(key) or len(key) > 317:
            raise BadQuery(f"bad aggregate {by!r}: {key!r} is not a label key (such as team or example.com/cost-center)")
        return key
    if by not in AGGREGATES:
        raise BadQuery(f"bad aggregate {by!r}: use one of {', '.join(AGGREGATES)}, or label:KEY")
    return None
