"""Ledger errors: each carries one clear line for a person (CLI, status condition, Event)."""


class LedgerError(Exception):
    """Base class; str(err) is the one-line message shown to users."""


class DatabaseUnavailable(LedgerError):
    pass


class SchemaBehind(LedgerError):
    pass


class UnknownBudget(LedgerError):
    pass


class UnknownReservation(LedgerError):
    pass


class InvalidTransition(LedgerError):
    """A money movement that the reservation's state forbids (e.g. settling a released one)."""
