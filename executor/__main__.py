"""`python -m executor --namespace NS --job NAME --attempt N`: one attempt of one QiskitJob, in its
executor pod. What an attempt does is executor/attempt.py's (a local session's runner,
executor/session.py, runs attempts through it too); this reads the job and its backend, runs it,
and reports how it ended in the termination log."""

from __future__ import annotations

import argparse
import sys

from governance.api import GROUP, VERSION

from .attempt import describe, load_client, report, run_attempt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        client = load_client()
        custom = client.CustomObjectsApi()
        job = custom.get_namespaced_custom_object(GROUP, VERSION, args.namespace, "qiskitjobs", args.job)
        backend = custom.get_cluster_custom_object(GROUP, VERSION, "qiskitbackends", job["spec"]["backend"])
    except Exception as exc:  # noqa: BLE001 - reported, and the operator decides about a retry
        report({"error": describe(exc), "deterministic": False})
        return 1
    outcome, code = run_attempt(client, job, backend, attempt=args.attempt)
    report(outcome)
    return code


if __name__ == "__main__":
    sys.exit(main())
