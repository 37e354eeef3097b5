"""API types of the qgov.dev/v1alpha1 resources: parsed, checked specs (pure, no kopf)."""

GROUP = "qgov.dev"
VERSION = "v1alpha1"
FINALIZER = "qgov.dev/ledger"  # on QiskitJobs that hold money in the ledger
OPERATOR_FINALIZER = "qgov.dev/operator"  # kopf's own, on objects whose handlers need one
JOB_LABEL = "qgov.dev/job"
JOB_UID_LABEL = "qgov.dev/job-uid"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"  # "qgov" on every object the operator creates
SESSION_LABEL = "qgov.dev/session"  # on a QiskitJob: the QiskitSession it runs in; on a token Secret: its session


def label_value(name: str) -> str:
    """An object's name as a label value: at most 63 characters, ending alphanumeric. A long name
    is cut, so a label finds candidates; the owner reference (or the status) says which is it."""
    return name[:63].rstrip("-_.")
