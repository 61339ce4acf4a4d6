"""Shared test helpers (fixture builders) for the Custody Ledger test suites."""
