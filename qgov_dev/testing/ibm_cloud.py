"""A local server speaking IBM Cloud's Qiskit Runtime protocol, for tests (IBM Cloud is not reachable).

It answers what qiskit-ibm-runtime 0.51 and qgov's operator call: IAM tokens (see ibm_iam),
Global Search and Global Catalog (instance discovery), `/api/v1/backends` with configuration,
properties and status (served from a qiskit fake backend, renamed), `/api/v1/instances/usage`,
`/api/v1/sessions` (create, details, `accepting_jobs=false`, cancel) and `/api/v1/jobs` (submit,
details, results, metrics, cancel). Jobs of the client-side `executor` program run on qiskit-aer
with the fake backend's noise, so payloads are the ones the real client encodes and decodes.

Every Runtime call needs a live bearer token from this IAM and the instance's CRN, as on IBM.
Sessions obey `max_ttl` (jobs waiting when it passes fail with IBM's max-time reason) and a
closed session refuses new jobs with 409. Faults can be injected: `fail_next_runtime` answers
that many Runtime calls with 503.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from .ibm_iam import LocalIam

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/local0account:local0instance::"
PLAN_ID = "local-plan-0001"
MAX_TIME_REASON_CODE = 1305  # what IBM's client reads as "session or job exceeded its max time"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Instance:
    crn: str
    name: str
    limit_seconds: int | None = None
    used_seconds: int = 0


@dataclass
class Session:
    id: str
    backend: str
    mode: str
    max_ttl: int
    instance: str
    created: float = field(default_factory=time.time)
    accepting_jobs: bool = True
    state: str = "open"  # open | active | inactive | closed
    closed_at: str | None = None
    jobs: list[str] = field(default_factory=list)
    usage_seconds: int = 0

    def deadline(self) -> float:
        return self.created + self.max_ttl


@dataclass
class Job:
    id: str
    backend: str
    program_id: str
    params: dict[str, Any]
    session_id: str | None
    instance: str
    status: str = "Queued"  # Queued | Running | Completed | Failed | Cancelled
    reason: str | None = None
    reason_code: int | None = None
    created: str = field(default_factory=_now)
    running: str | None = None
    finished: str | None = None
    result: str | None = None
    quantum_seconds: int = 0


class LocalIbmCloud(LocalIam):
    """`with LocalIbmCloud(keys={"KEY": "account"}) as ibm: ibm.url` (IAM, search, catalog and
    Runtime all on that one address; `ibm.runtime_url` is what `url` is set to)."""

    def __init__(self, keys: dict[str, str], *, lifetime: int = 3600, backends: dict[str, str] | None = None,
                 instance_limit_seconds: int | None = None, job_seconds: float = 0.0, workers: int = 2) -> None:
        super().__init__(keys, lifetime)
        self.instance = Instance(CRN, "qgov-local", instance_limit_seconds)
        # backend name -> qiskit fake backend class name (its calibration and noise are served)
        self.backend_models = backends or {"ibm_local": "FakeManilaV2"}
        self.job_seconds = job_seconds  # extra wall time per job, to keep sessions busy in tests
        self.sessions: dict[str, Session] = {}
        self.jobs: dict[str, Job] = {}
        self.calls: Counter[str] = Counter()  # "METHOD /route" -> count, Runtime calls only
        self.fail_next_runtime = 0
        self.rejected_tokens = 0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="local-ibm-job")
        self._models: dict[str, Any] = {}
        for name in self.backend_models:  # built here, in the caller's thread: qiskit's Rust core crashed
            _ = self._model(name).target  # (SIGSEGV) when a first build happened on a later server thread
        self._lock = threading.Lock()
        self._simulating = threading.Lock()  # one Aer simulation at a time: Aer and the shared fake backend
        # are not safe to drive from two threads at once (a bench run crashed in C code doing that)

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def runtime_url(self) -> str:
        return self.url

    def client_env(self) -> dict[str, str]:
        """The environment that points qiskit-ibm-runtime's IBM Cloud calls here."""
        return {"IAM_URL": self.url, "GLOBAL_SEARCH_URL": self.url, "GLOBAL_CATALOG_URL": f"{self.url}/catalog"}

    def _routes(self, app: web.Application) -> None:
        super()._routes(app)
        app.router.add_post("/v3/resources/search", self._search)
        app.router.add_get("/catalog/{entry}", self._catalog)
        api = "/api/v1"
        runtime = [
            ("GET", "/backends", self._backends), ("GET", "/backends/{name}/configuration", self._configuration),
            ("GET", "/backends/{name}/properties", self._properties), ("GET", "/backends/{name}/status", self._status),
            ("GET", "/instances/usage", self._usage), ("POST", "/sessions", self._create_session),
            ("GET", "/sessions/{id}", self._session), ("PATCH", "/sessions/{id}", self._patch_session),
            ("DELETE", "/sessions/{id}/close", self._cancel_session), ("POST", "/jobs", self._submit),
            ("GET", "/jobs/{id}", self._job), ("GET", "/jobs/{id}/results", self._results),
            ("GET", "/jobs/{id}/metrics", self._metrics), ("POST", "/jobs/{id}/cancel", self._cancel_job),
        ]
        for method, path, handler in runtime:
            app.router.add_route(method, api + path, self._guarded(f"{method} {path}", handler))

    def _guarded(self, route: str, handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            self.calls[route] += 1
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not self.valid_token(auth[len("Bearer "):]):
                self.rejected_tokens += 1
                return _error(401, "Unauthorized: the bearer token is missing, unknown or expired", 1000)
            if request.headers.get("Service-CRN") != self.instance.crn:
                return _error(403, "the Service-CRN header does not name an instance of this account", 1001)
            if self.fail_next_runtime > 0:
                self.fail_next_runtime -= 1
                return _error(503, "Service temporarily unavailable", 5000)
            self._expire_sessions()
            return await handler(request)
        return guarded

    def _model(self, name: str) -> Any:
        if name not in self._models:
            from qiskit_ibm_runtime import fake_provider

            self._models[name] = getattr(fake_provider, self.backend_models[name])()
        return self._models[name]

    def _backend_file(self, name: str, kind: str) -> dict[str, Any]:
        model = self._model(name)
        filename = model.conf_filename if kind == "conf" else model.props_filename
        data = json.loads((Path(model.dirname) / filename).read_text())
        data["backend_name"] = name
        return data

    # --- instance discovery ---------------------------------------------------------------------

    async def _search(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            return _error(401, "Unauthorized", 1000)
        return web.json_response({"items": [{
            "crn": self.instance.crn, "name": self.instance.name, "service_plan_unique_id": PLAN_ID, "tags": [],
            "doc": {"extensions": {"backends": list(self.backend_models)}}}], "search_cursor": None})

    async def _catalog(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["entry"], "overview_ui": {"en": {"display_name": "Standard"}},
                                  "metadata": {"pricing": {"type": "paid"}}})

    def _bearer_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and self.valid_token(auth[len("Bearer "):])

    # --- backends and usage ---------------------------------------------------------------------

    async def _backends(self, request: web.Request) -> web.Response:
        return web.json_response({"devices": [{"name": name, "status": {"name": "online", "reason": ""},
                                               "qubits": self._model(name).num_qubits, "queue_length": 0}
                                              for name in self.backend_models]})

    async def _configuration(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.backend_models:
            return _error(404, f"backend {name} not found", 1216)
        return web.json_response(self._backend_file(name, "conf"))

    async def _properties(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.backend_models:
            return _error(404, f"backend {name} not found", 1216)
        return web.json_response(self._backend_file(name, "props"))

    async def _status(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response({"backend_name": name, "backend_version": "1.0.0", "operational": True,
                                  "pending_jobs": sum(j.status in ("Queued", "Running") for j in self.jobs.values()),
                                  "status_msg": "active"})

    async def _usage(self, request: web.Request) -> web.Response:
        inst = self.instance
        remaining = None if inst.limit_seconds is None else max(0, inst.limit_seconds - inst.used_seconds)
        return web.json_response({"instance_id": inst.crn, "plan_id": PLAN_ID,
                                  "usage_consumed_seconds": inst.used_seconds, "usage_limit_seconds": inst.limit_seconds,
                                  "usage_remaining_seconds": remaining,
                                  "usage_limit_reached": remaining is not None and remaining <= 0})

    # --- sessions -------------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        body = await request.json()
        backend = body.get("backend")
        if backend not in self.backend_models:
            return _error(400, f"backend {backend!r} is not available to this instance", 1216)
        mode = body.get("mode", "dedicated")
        if mode not in ("dedicated", "batch"):
            return _error(400, f"unknown session mode {mode!r}", 1217)
        session = Session(uuid.uuid4().hex[:20], backend, mode, int(body.get("max_ttl") or 28800), self.instance.crn)
        self.sessions[session.id] = session
        return web.json_response({"id": session.id, "mode": mode, "backend_name": backend,
                                  "max_ttl": session.max_ttl})

    def _session_json(self, s: Session) -> dict[str, Any]:
        return {"id": s.id, "backend_name": s.backend, "mode": s.mode, "state": s.state,
                "accepting_jobs": s.accepting_jobs, "max_ttl": s.max_ttl,
                "started_at": datetime.fromtimestamp(s.created, timezone.utc).isoformat(),
                "closed_at": s.closed_at, "elapsed_time": s.usage_seconds, "jobs": list(s.jobs)}

    async def _session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "session not found", 1404)
        return web.json_response(self._session_json(session))

    async def _patch_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "session not found", 1404)
        body = await request.json()
        if body.get("accepting_jobs") is False:
            session.accepting_jobs = False
            if session.state != "closed" and not self._pending(session):
                self._close(session)
        return web.Response(status=204)

    async def _cancel_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "session not found", 1404)
        for job_id in session.jobs:
            job = self.jobs[job_id]
            if job.status in ("Queued", "Running"):
                self._finish(job, "Cancelled", "the session was cancelled", None)
        session.accepting_jobs = False
        self._close(session)
        return web.Response(status=204)

    def _pending(self, session: Session) -> list[Job]:
        return [self.jobs[j] for j in session.jobs if self.jobs[j].status in ("Queued", "Running")]

    def _close(self, session: Session) -> None:
        if session.state != "closed":
            session.state, session.closed_at = "closed", _now()

    def _expire_sessions(self) -> None:
        """IBM ends a session at max_ttl: what still waits in it fails with the max-time reason."""
        now = time.time()
        for session in self.sessions.values():
            if session.state != "closed" and now >= session.deadline():
                for job in self._pending(session):
                    if job.status == "Queued":
                        self._finish(job, "Cancelled", "the session reached its maximum time (max_ttl)",
                                     MAX_TIME_REASON_CODE)
                session.accepting_jobs = False
                self._close(session)

    # --- jobs -----------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        backend, session_id = body.get("backend"), body.get("session_id")
        if backend not in self.backend_models:
            return _error(400, f"backend {backend!r} is not available to this instance", 1216)
        inst = self.instance
        if inst.limit_seconds is not None and inst.used_seconds >= inst.limit_seconds:
            return _error(400, "This instance has met its usage limit.", 1352)
        session = self.sessions.get(session_id) if session_id else None
        if session_id and session is None:
            return _error(404, f"session {session_id} not found", 1404)
        if session is not None and (session.state == "closed" or not session.accepting_jobs):
            return _error(409, f"session {session_id} is closed and is not accepting jobs", 1229)
        if session is not None and session.backend != backend:
            return _error(400, f"session {session_id} runs on {session.backend}, not {backend}", 1230)
        job = Job(uuid.uuid4().hex[:20], backend, body.get("program_id", ""), body.get("params") or {}, session_id,
                  inst.crn)
        with self._lock:
            self.jobs[job.id] = job
            if session is not None:
                session.jobs.append(job.id)
                session.state = "active"
        asyncio.get_running_loop().run_in_executor(self._pool, self._run, job)
        return web.json_response({"id": job.id, "backend": backend, "session_id": session_id})

    def _run(self, job: Job) -> None:
        if job.status != "Queued":
            return
        session = self.sessions.get(job.session_id) if job.session_id else None
        if session is not None and time.time() >= session.deadline():
            self._expire_sessions()
            return
        job.status, job.running = "Running", _now()
        try:
            with self._simulating:
                result, shots = self._execute(job)
        except Exception as exc:  # noqa: BLE001 - the job fails as on IBM, with the reason
            self._finish(job, "Failed", f"Error in the program: {type(exc).__name__}: {exc}", 1517)
            return
        if self.job_seconds:
            time.sleep(self.job_seconds)
        if job.status != "Running":  # cancelled meanwhile
            return
        job.result = result
        job.quantum_seconds = max(1, math.ceil(shots / 10_000))
        self._finish(job, "Completed", None, None)

    def _execute(self, job: Job) -> tuple[str, int]:
        if job.program_id != "executor":
            raise ValueError(f"this server runs the client-side 'executor' program, not {job.program_id!r}")
        from qiskit_ibm_runtime.options_models import SimulatorOptions
        from qiskit_ibm_runtime.fake_provider.executor.run_quantum_program import run_quantum_program
        from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

        params = job.params
        converter = QUANTUM_PROGRAM_PARAMS_CONVERTERS[params["schema_version"]]
        program, _options = converter.decoder(converter.model.model_validate(params))
        for item in program.items:
            samplex = getattr(item, "samplex", None)
            if samplex is not None and hasattr(samplex, "finalize"):
                samplex.finalize()  # decoded samplexes come unfinalized; the service finalizes them
        result = run_quantum_program(self._model(job.backend), program, SimulatorOptions())
        return _encode_result(result, program), program.shots * max(1, len(program.items))

    def _finish(self, job: Job, status: str, reason: str | None, code: int | None) -> None:
        with self._lock:
            if job.status in ("Completed", "Failed", "Cancelled"):
                return
            job.status, job.reason, job.reason_code, job.finished = status, reason, code, _now()
            self.instance.used_seconds += job.quantum_seconds
            session = self.sessions.get(job.session_id) if job.session_id else None
            if session is not None:
                session.usage_seconds += job.quantum_seconds
                if not self._pending(session):
                    if not session.accepting_jobs:
                        self._close(session)
                    elif session.state == "active":
                        session.state = "inactive"

    async def _job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, "job not found", 1404)
        state: dict[str, Any] = {"status": job.status}
        if job.reason:
            state.update(reason=job.reason, reason_code=job.reason_code)
        return web.json_response({"id": job.id, "backend": job.backend, "program": {"id": job.program_id},
                                  "session_id": job.session_id, "state": state, "status": job.status,
                                  "created": job.created, "params": job.params, "runtime": "",
                                  "cost": 0, "private": False, "tags": []})

    async def _results(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or (job.result is None and job.reason is None):
            return _error(404, "results not found", 1404)
        if job.result is None:  # a failed or cancelled job: IBM answers with its error text
            return web.Response(text=job.reason or "", content_type="text/plain")
        return web.Response(text=job.result, content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, "job not found", 1404)
        done = job.status in ("Completed", "Failed", "Cancelled")
        return web.json_response({
            "timestamps": {"created": job.created, "running": job.running, "finished": job.finished},
            "usage": {"quantum_seconds": job.quantum_seconds, "seconds": job.quantum_seconds,
                      "status": "complete" if done else "pending"},
            "qiskit_version": "qiskit_ibm_runtime-0.51.0", "caller": "qiskit_ibm_runtime"})

    async def _cancel_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, "job not found", 1404)
        self._finish(job, "Cancelled", "cancelled by the user", None)
        return web.Response(status=204)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _encode_result(result: Any, program: Any) -> str:
    """A QuantumProgramResult as the executor program's v2.0 result JSON (what IBM returns)."""
    from ibm_quantum_schemas.common import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0 import (ItemMetadataModel, MetadataModel,
                                                          QuantumProgramResultItemModel, QuantumProgramResultModel)
    from qiskit_ibm_runtime.quantum_program.converters.converters_2_0 import passthrough_data_to_2_0

    items = [QuantumProgramResultItemModel(
        results={name: CompressedTensorModel.from_numpy(value) for name, value in item.items()},
        metadata=ItemMetadataModel()) for item in result]
    passthrough = passthrough_data_to_2_0(program.passthrough_data) if program.passthrough_data is not None else None
    model = QuantumProgramResultModel(schema_version="v2.0", data=items, metadata=MetadataModel(chunk_timing=[]),
                                      passthrough_data=passthrough,
                                      semantic_role=getattr(program, "_semantic_role", None))
    return model.model_dump_json()


def _error(status: int, message: str, code: int) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": message, "more_info": ""}], "trace": "local"},
                             status=status)
