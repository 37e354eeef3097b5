"""Specs of QiskitBackend, QiskitBudget and QiskitJob as typed values, with field-path errors.

The CRD schemas already reject wrong types at the API server; these checks catch what a
schema cannot (values that depend on each other) and give every error its field path, so a
status condition can say exactly what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import providers
from ..budget.costmodel import PriceList
from ..budget.money import AmountError, parse_amount
from ..budget.types import BudgetSpec
from ..sessions.lifecycle import DEFAULT_MAX_TIME_S

MAX_SHOTS = 10_000_000  # above this no backend accepts a job; a typo, not a workload


class SpecError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class BackendLimits:
    max_qubits: int | None = None
    max_shots: int | None = None
    max_circuits: int | None = None


@dataclass(frozen=True)
class IbmEndpoints:
    """The IBM Cloud endpoints of an ibm backend (spec.ibm): the platform's choice, in the cluster-
    scoped QiskitBackend, never a tenant's (a credential Secret may not name them). None: IBM's
    public endpoint."""

    url: str | None = None  # Qiskit Runtime
    iam_url: str | None = None
    search_url: str | None = None
    catalog_url: str | None = None

    # the key each one has in spec.ibm (and had in credential Secrets)
    KEYS = {"url": "url", "iamUrl": "iam_url", "searchUrl": "search_url", "catalogUrl": "catalog_url"}


@dataclass(frozen=True)
class Backend:
    name: str  # the QiskitBackend's name
    provider: str  # a registered provider's name (governance/providers): aer | fake | ibm
    backend_name: str  # aer_simulator, fake_manila, ibm_torino
    prices: PriceList
    limits: BackendLimits
    model: str = ""  # ibm: the fake_provider model that estimates are made on (fake_torino for ibm_torino)
    endpoints: IbmEndpoints = IbmEndpoints()  # ibm: spec.ibm


@dataclass(frozen=True)
class SessionSpec:
    backend: str
    mode: str  # dedicated | batch
    max_time_s: int
    idle_timeout_s: int
    credentials_secret: str | None


@dataclass(frozen=True)
class JobSpec:
    backend: str
    primitive: str
    circuits: tuple[str, ...]
    shots: int
    observables: tuple[tuple[str, ...], ...]
    session: str | None
    budget: str | None
    max_cost_micro: int | None
    backoff_limit: int
    credentials_secret: str | None = None  # ibm: the Secret an automatic batch authenticates with
    # spec.parameterValues: parameter name -> values, every array N long or 1 (broadcast), as Qiskit does
    parameter_values: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @property
    def bindings(self) -> int:
        """How many bound circuits each circuit makes: the sweep's length (1 without a sweep).
        Lengths that do not broadcast are refused by parse_job; this is their longest."""
        return max((len(values) for _, values in self.parameter_values), default=1)

    def binding(self, index: int) -> dict[str, float]:
        """The values of point `index` of the sweep (a length-1 array is broadcast)."""
        return {name: values[0] if len(values) == 1 else values[index] for name, values in self.parameter_values}


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, not {type(value).__name__} {value!r}")
    return value


def parse_backend(name: str, spec: dict[str, Any]) -> Backend:
    provider = spec.get("provider")
    if not isinstance(provider, str) or provider not in providers.names():
        raise SpecError("spec.provider", f"{provider!r} is not one of {', '.join(providers.names())}")
    implementation = providers.get(provider)
    pricing = spec.get("pricing") or {}
    try:
        prices = PriceList.from_strings(**{k: str(v) for k, v in pricing.items()
                                           if k in ("currency", "perQPUSecond", "perShot", "perTask", "perCPUSecond")})
    except AmountError as exc:
        raise SpecError("spec.pricing", str(exc)) from None
    limits = spec.get("limits") or {}
    backend_name = str(spec.get("name") or "")
    model = implementation.model(backend_name, str(spec.get("model") or ""))  # ibm: ibm_torino -> fake_torino
    implementation.check(spec)
    endpoints = _endpoints(spec.get("ibm") or {})
    return Backend(name, provider, backend_name, prices, BackendLimits(
        limits.get("maxQubits"), limits.get("maxShots"), limits.get("maxCircuits")), model, endpoints)


def _endpoints(ibm: dict[str, Any]) -> IbmEndpoints:
    """spec.ibm's URLs: absolute http(s), no user-info (the CRD's pattern says the same)."""
    from urllib.parse import urlsplit

    values: dict[str, str] = {}
    for key, attribute in IbmEndpoints.KEYS.items():
        value = ibm.get(key)
        if value in (None, ""):
            continue
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise SpecError(f"spec.ibm.{key}", "an absolute http(s) URL without user-info is required")
        values[attribute] = str(value).rstrip("/")
    return IbmEndpoints(**values)


def _backend_name(spec: dict[str, Any]) -> str:
    """spec.backend of a job or a session: the name of a QiskitBackend."""
    backend = spec.get("backend")
    if not isinstance(backend, str) or not backend:
        raise SpecError("spec.backend", "a QiskitBackend name is required")
    return backend


def parse_session(spec: dict[str, Any]) -> SessionSpec:
    backend = _backend_name(spec)
    mode = spec.get("mode", "batch")
    if mode not in ("dedicated", "batch"):
        raise SpecError("spec.mode", f"{mode!r} is not one of dedicated, batch")
    max_time = _int(spec.get("maxTime", DEFAULT_MAX_TIME_S), "spec.maxTime")
    idle = _int(spec.get("idleTimeout", 300), "spec.idleTimeout")
    if max_time < 1 or idle < 1:
        raise SpecError("spec.maxTime" if max_time < 1 else "spec.idleTimeout", "must be at least 1 second")
    return SessionSpec(backend, mode, max_time, idle, spec.get("credentialsSecret") or None)


def budgets_that_may_come(items: list[dict[str, Any]]) -> dict[str, str]:
    """The QiskitBudget objects of a namespace (as listed) the ledger may still take in, name -> unit:
    not being deleted, and not found invalid (a budget whose spec the operator refused never comes)."""
    return {b["metadata"]["name"]: (b.get("spec") or {}).get("unit", "USD") for b in items
            if not b["metadata"].get("deletionTimestamp")
            and not any(c.get("reason") == "InvalidSpec" for c in (b.get("status") or {}).get("conditions") or [])}


def parse_budget(namespace: str, name: str, spec: dict[str, Any]) -> BudgetSpec:
    try:
        limit = parse_amount(str(spec.get("limit", "")), field="spec.limit")
    except AmountError as exc:
        raise SpecError("spec.limit", str(exc).removeprefix("spec.limit: ")) from None
    try:
        return BudgetSpec(namespace, name, limit, spec.get("unit", "USD"), spec.get("period", "monthly"),
                          spec.get("enforcement", "hard"), tuple(spec.get("warnAt") or ()))
    except ValueError as exc:
        raise SpecError("spec", str(exc)) from None


def parse_job(spec: dict[str, Any]) -> JobSpec:
    backend = _backend_name(spec)
    primitive = spec.get("primitive", "sampler")
    if primitive not in ("sampler", "estimator"):
        raise SpecError("spec.primitive", f"{primitive!r} is not one of sampler, estimator")
    circuits = spec.get("circuits")
    if not isinstance(circuits, list) or not circuits:
        raise SpecError("spec.circuits", "at least one OpenQASM circuit is required")
    for i, c in enumerate(circuits):
        if not isinstance(c, str) or not c.strip():
            raise SpecError(f"spec.circuits[{i}]", "must be a non-empty OpenQASM 2 or 3 string")
    shots = _int(spec.get("shots", 1024), "spec.shots")
    if shots < 1:
        raise SpecError("spec.shots", f"must be at least 1, got {shots}")
    if shots > MAX_SHOTS:
        raise SpecError("spec.shots", f"{shots} is more than the {MAX_SHOTS} shots any backend accepts")
    observables = spec.get("observables") or []
    if primitive == "estimator":
        if len(observables) != len(circuits):
            raise SpecError("spec.observables", f"the estimator needs one list of Pauli strings per circuit: "
                                                f"{len(circuits)} circuits, {len(observables)} lists")
    elif observables:
        raise SpecError("spec.observables", "observables are for the estimator; the sampler takes none")
    parsed_obs: list[tuple[str, ...]] = []
    for i, obs in enumerate(observables):
        if not isinstance(obs, list) or not obs or not all(isinstance(o, str) and o for o in obs):
            raise SpecError(f"spec.observables[{i}]", "must be a non-empty list of Pauli strings such as \"ZZ\"")
        for j, pauli in enumerate(obs):
            if set(pauli.upper()) - set("IXYZ"):
                raise SpecError(f"spec.observables[{i}][{j}]", f"{pauli!r} is not a Pauli string (I, X, Y, Z)")
        parsed_obs.append(tuple(o.upper() for o in obs))
    max_cost = None
    if spec.get("maxCost") is not None:
        try:
            max_cost = parse_amount(str(spec["maxCost"]), field="spec.maxCost")
        except AmountError as exc:
            raise SpecError("spec.maxCost", str(exc).removeprefix("spec.maxCost: ")) from None
    backoff = _int(spec.get("backoffLimit", 2), "spec.backoffLimit")
    return JobSpec(backend, primitive, tuple(circuits), shots, tuple(parsed_obs), spec.get("session") or None,
                   spec.get("budget") or None, max_cost, backoff, spec.get("credentialsSecret") or None,
                   parse_parameter_values(spec.get("parameterValues")))


MAX_PARAMETERS = 100  # the CRD's maxProperties: names a sweep may bind
MAX_SWEEP = 10_000  # the CRD's maxItems: points of a sweep


def parse_parameter_values(values: Any) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """spec.parameterValues as (name, values) pairs in name order. Whether the arrays broadcast and
    name the circuits' parameters is admission's check (admission.check_parameters)."""
    if values is None:
        return ()
    if not isinstance(values, dict):
        raise SpecError("spec.parameterValues", "must be a map of parameter name to an array of numbers")
    if len(values) > MAX_PARAMETERS:
        raise SpecError("spec.parameterValues", f"{len(values)} parameters, at most {MAX_PARAMETERS}")
    parsed: list[tuple[str, tuple[float, ...]]] = []
    for name in sorted(values):
        field = f"spec.parameterValues.{name}"
        array = values[name]
        if not isinstance(array, list) or not array:
            raise SpecError(field, "must be a non-empty array of numbers")
        if len(array) > MAX_SWEEP:
            raise SpecError(field, f"{len(array)} values, at most {MAX_SWEEP}")
        for i, v in enumerate(array):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
                raise SpecError(f"{field}[{i}]", f"must be a finite number, not {v!r}")
        parsed.append((name, tuple(float(v) for v in array)))
    return tuple(parsed)
