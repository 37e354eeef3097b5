"""Moved to the ibm provider (governance/providers/ibm/runtime_api.py); kept for
governance/handlers/sessions.py, which imports it from here."""

from ..providers.ibm.runtime_api import DEFAULT_HOST, InstanceUsage, RuntimeApi, RuntimeApiError, runtime_base_url

__all__ = ["DEFAULT_HOST", "InstanceUsage", "RuntimeApi", "RuntimeApiError", "runtime_base_url"]
