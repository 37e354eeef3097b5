"""`ibm`: IBM Quantum devices through Qiskit Runtime. Jobs run remotely in Runtime sessions (an
automatic batch when the job names none), authenticated with an IAM bearer token the operator
exchanges from a credentials Secret and mounts into executor pods; estimates are made on the
device's fake_provider twin (fake_torino for ibm_torino).

The HTTP clients live here too: iam.py (API key -> bearer token) and runtime_api.py (sessions,
instance usage). Importing this package imports neither: the executor image needs only the
provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from ...budget.costmodel import PriceList, Usage
from ...budget.money import MICRO
from ..registry import register
from ..base import ExecutorNeeds, ExecutorSession, Provider, RunOutcome

if TYPE_CHECKING:
    from ...api.specs import Backend, JobSpec

IBM_PAYG_USD_PER_QPU_SECOND = Decimal("1.60")
IBM_PAY_AS_YOU_GO = PriceList(per_qpu_second_micro=int(IBM_PAYG_USD_PER_QPU_SECOND * MICRO))

TOKEN_MOUNT = "/var/run/qgov/ibm"  # where an executor pod finds the session's bearer token (file `token`)
TOKEN_VOLUME = "ibm-token"


class IbmProvider(Provider):
    name: ClassVar[str] = "ibm"
    remote_sessions: ClassVar[bool] = True
    session_modes: ClassVar[tuple[str, ...]] = ("batch", "dedicated")
    needs_session: ClassVar[bool] = True
    needs_credentials: ClassVar[bool] = True
    price_preset: ClassVar[PriceList] = IBM_PAY_AS_YOU_GO

    usage_source: ClassVar[str] = ("the Runtime job's metered quantum_seconds, read by the operator from IBM's API "
                                   "(GET /jobs/{id} must name the Runtime session the operator opened for the job; "
                                   "then GET /jobs/{id}/metrics); the model's usage when the attempt names no such job")
    metered: ClassVar[bool] = True

    def charged_usage(self, modelled: Usage, metered: Usage | None, succeeded: bool) -> Usage | None:
        """IBM's meter for the job's own Runtime job. A succeeded attempt that names none the
        operator could verify is charged the model (never less): pointing at another job, or at
        none, cannot make it cheaper. A failed one without a metered job ran nothing on IBM."""
        if metered is not None:
            return metered
        return modelled if succeeded else None

    def model(self, backend_name: str, requested: str) -> str:
        """The twin estimates are made on: spec.model, else fake_<device> (ibm_torino -> fake_torino)."""
        return requested or "fake_" + backend_name.split("_", 1)[-1]

    def model_field(self, spec: Mapping[str, Any]) -> str:
        return "spec.model" if spec.get("model") else "spec.name"

    def device_model(self, backend: Backend) -> str | None:
        return backend.model

    def executor_needs(self, session: ExecutorSession | None) -> ExecutorNeeds:
        """The Runtime session to submit into and the mounted bearer token: never the API key."""
        if session is None:
            return ExecutorNeeds()
        values = {"QGOV_IBM_SESSION": session.session_id, "QGOV_IBM_SESSION_MODE": session.mode,
                  "QGOV_IBM_INSTANCE": session.instance, "QGOV_IBM_TOKEN_FILE": f"{TOKEN_MOUNT}/token",
                  "QGOV_IBM_URL": session.url, "GLOBAL_SEARCH_URL": session.search_url,
                  "GLOBAL_CATALOG_URL": session.catalog_url}
        return ExecutorNeeds(env=tuple((k, v) for k, v in values.items() if v),
                             volumes=({"name": TOKEN_VOLUME, "secret": {"secretName": session.token_secret}},),
                             mounts=({"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT, "readOnly": True},))

    def run(self, job: JobSpec, backend: Backend, circuits: list[Any]) -> RunOutcome:
        """Not here: an ibm job is submitted into the pod's Runtime session by the executor's own
        client (executor/ibm.py run_in_session, chosen by executor/attempt.py runner_of), which
        reads the environment executor_needs gives the pod. The providers never import the executor."""
        raise NotImplementedError("ibm jobs run in the executor pod: executor.ibm.run_in_session")


register(IbmProvider())
