"""API types of the qgov.dev/v1alpha1 resources: parsed, checked specs (pure, no kopf)."""

GROUP = "qgov.dev"
VERSION = "v1alpha1"
FINALIZER = "qgov.dev/ledger"
JOB_LABEL = "qgov.dev/job"
JOB_UID_LABEL = "qgov.dev/job-uid"
