"""A local Kubernetes API emulator and pod runner for development and tests (`qgov dev`).

Not part of the domain core. It speaks the Kubernetes wire protocol well enough for the
real `kubernetes` client, kubectl and kopf: see docs/testbed.md "Dev cluster" for what it carries
and what it does not.
"""
