"""The ledger's charges as FOCUS 1.1 rows (FinOps Open Cost and Usage Specification), for FinOps tools.

One row per settled job charged in the window (costview.charges): ChargeCategory `Usage`, the
job's actual cost as BilledCost = EffectiveCost = ListCost = ContractedCost (qgov applies no
discounts or commitments), the QiskitJob as the resource, its namespace as the sub account, and
budget, backend and session in Tags, with the job's own labels at admission. Money is written as exact decimal strings from integer
micro-units. Pure: no kopf, no kubernetes.

FOCUS costs are in an ISO 4217 currency: budgets kept in QPU-seconds have none, so their jobs are
not exported (`skipped` counts them, the CLI says so).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .costview import Charge, _month_start, _next_month, rfc3339
from .money import format_amount, format_quantity

VERSION = "1.1"
CURRENCIES = ("USD",)
CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")

# the FOCUS 1.1 columns written, in order: (name, type). Types: String, DateTime, Decimal, JSON.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("BilledCost", "Decimal"),
    ("BillingAccountId", "String"),
    ("BillingAccountName", "String"),
    ("BillingCurrency", "String"),
    ("BillingPeriodStart", "DateTime"),
    ("BillingPeriodEnd", "DateTime"),
    ("ChargeCategory", "String"),
    ("ChargeClass", "String"),
    ("ChargeDescription", "String"),
    ("ChargeFrequency", "String"),
    ("ChargePeriodStart", "DateTime"),
    ("ChargePeriodEnd", "DateTime"),
    ("ConsumedQuantity", "Decimal"),
    ("ConsumedUnit", "String"),
    ("ContractedCost", "Decimal"),
    ("EffectiveCost", "Decimal"),
    ("InvoiceIssuerName", "String"),
    ("ListCost", "Decimal"),
    ("PricingCategory", "String"),
    ("PricingQuantity", "Decimal"),
    ("PricingUnit", "String"),
    ("ProviderName", "String"),
    ("PublisherName", "String"),
    ("RegionId", "String"),
    ("RegionName", "String"),
    ("ResourceId", "String"),
    ("ResourceName", "String"),
    ("ResourceType", "String"),
    ("ServiceCategory", "String"),
    ("ServiceName", "String"),
    ("SkuId", "String"),
    ("SubAccountId", "String"),
    ("SubAccountName", "String"),
    ("Tags", "JSON"),
    ("x_Budget", "String"),
    ("x_Backend", "String"),
    ("x_Session", "String"),
    ("x_EstimatedCost", "Decimal"),
    ("x_LateCharge", "String"),
)
# mandatory in FOCUS 1.1 whatever the provider (never null, except ChargeClass, which is null
# for a row that is not a correction)
MANDATORY = ("BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodStart",
             "BillingPeriodEnd", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart",
             "ChargePeriodEnd", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost",
             "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName")


@dataclass(frozen=True)
class Issuer:
    """Who the rows say bills and runs the work: the platform that runs qgov, by default `qgov`."""

    account_id: str = "qgov"
    account_name: str = "qgov"
    provider: str = "qgov"


@dataclass(frozen=True)
class Export:
    rows: list[dict[str, str]]
    skipped: int  # charges in a unit that is no currency (QPU-seconds budgets)


def _floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _ceil_second(moment: datetime) -> datetime:
    return moment if moment.microsecond == 0 else moment.replace(microsecond=0) + timedelta(seconds=1)


def row(charge: Charge, issuer: Issuer) -> dict[str, str]:
    """One charge as a FOCUS row (every value a string; "" is null)."""
    start, end = _floor_second(charge.started), _ceil_second(charge.finished)
    if end <= start:  # FOCUS wants a period with an exclusive end after its start
        end = start + timedelta(seconds=1)
    cost = format_amount(charge.actual)
    tags = dict(charge.labels)  # the job's own labels at admission (never qgov.dev/*: job_labels)
    tags |= {"qgov.dev/namespace": charge.namespace, "qgov.dev/budget": charge.budget,
            "qgov.dev/backend": charge.backend}
    if charge.session:
        tags["qgov.dev/session"] = charge.session
    consumed = "" if charge.qpu_seconds is None else format_quantity(charge.qpu_seconds)
    return {
        "BilledCost": cost, "BillingAccountId": issuer.account_id, "BillingAccountName": issuer.account_name,
        "BillingCurrency": charge.unit,
        "BillingPeriodStart": rfc3339(_month_start(charge.finished)),
        "BillingPeriodEnd": rfc3339(_next_month(charge.finished)),
        "ChargeCategory": "Usage", "ChargeClass": "",
        "ChargeDescription": f"quantum job {charge.job or charge.key} on {charge.backend or 'an unnamed backend'}",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": rfc3339(start), "ChargePeriodEnd": rfc3339(end),
        "ConsumedQuantity": consumed, "ConsumedUnit": "QPU-seconds" if consumed else "",
        "ContractedCost": cost, "EffectiveCost": cost, "InvoiceIssuerName": issuer.provider, "ListCost": cost,
        "PricingCategory": "Standard", "PricingQuantity": "1", "PricingUnit": "Jobs",
        "ProviderName": issuer.provider, "PublisherName": issuer.provider,
        "RegionId": "", "RegionName": "",
        "ResourceId": charge.key, "ResourceName": charge.job, "ResourceType": "QiskitJob",
        "ServiceCategory": "Compute", "ServiceName": "Quantum execution", "SkuId": charge.backend,
        "SubAccountId": charge.namespace, "SubAccountName": charge.namespace,
        "Tags": json.dumps(tags, sort_keys=True, separators=(",", ":")),
        "x_Budget": charge.budget, "x_Backend": charge.backend, "x_Session": charge.session,
        "x_EstimatedCost": format_amount(charge.estimate), "x_LateCharge": "true" if charge.late else "false",
    }


def export(charges: Sequence[Charge], issuer: Issuer = Issuer()) -> Export:
    rows = [row(c, issuer) for c in charges if c.unit in CURRENCIES]
    return Export(rows, sum(1 for c in charges if c.unit not in CURRENCIES))


def render_csv(rows: Sequence[dict[str, str]]) -> str:
    """A header of every column, then the rows (empty cells are nulls)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, [name for name, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def validate(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What breaks FOCUS 1.1 in `rows` (mandatory columns and the types and values the spec gives them);
    [] if nothing does. Used by the tests and by `qgov ledger export --check`."""
    problems: list[str] = []
    types = dict(COLUMNS)
    for i, r in enumerate(rows):
        for name in MANDATORY:
            if name not in r:
                problems.append(f"row {i}: mandatory column {name} is missing")
            elif r[name] in ("", None) and name != "ChargeClass":
                problems.append(f"row {i}: mandatory column {name} is null")
        for name, value in r.items():
            if value in ("", None):
                continue
            kind = types.get(name, "String")
            if kind == "Decimal" and not _is_decimal(value):
                problems.append(f"row {i}: {name} {value!r} is not a decimal")
            elif kind == "DateTime" and not _is_utc(value):
                problems.append(f"row {i}: {name} {value!r} is not an ISO 8601 UTC date-time")
            elif kind == "JSON" and not _is_object(value):
                problems.append(f"row {i}: {name} {value!r} is not a JSON object of strings")
        if r.get("ChargeCategory") not in CHARGE_CATEGORIES:
            problems.append(f"row {i}: ChargeCategory {r.get('ChargeCategory')!r} is not one of {CHARGE_CATEGORIES}")
        if r.get("ChargeClass") not in ("", None, "Correction"):
            problems.append(f"row {i}: ChargeClass {r.get('ChargeClass')!r} is neither null nor Correction")
        if r.get("BillingCurrency") and len(str(r["BillingCurrency"])) != 3:
            problems.append(f"row {i}: BillingCurrency {r['BillingCurrency']!r} is not an ISO 4217 code")
        for a, b in (("ChargePeriodStart", "ChargePeriodEnd"), ("BillingPeriodStart", "BillingPeriodEnd")):
            if _is_utc(r.get(a)) and _is_utc(r.get(b)) and not str(r[a]) < str(r[b]):
                problems.append(f"row {i}: {a} is not before {b}")
    return problems


def _is_decimal(value: Any) -> bool:
    try:
        Decimal(str(value))
    except ArithmeticError:
        return False
    text = str(value)
    return text.replace("-", "", 1).replace(".", "", 1).isdigit()


def _is_utc(value: Any) -> bool:
    if not isinstance(value, str) or not value.endswith("Z"):
        return False
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return False
    return parsed.utcoffset() == timedelta(0) and value[10] == "T"


def _is_object(value: Any) -> bool:
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return False
    return isinstance(parsed, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())
