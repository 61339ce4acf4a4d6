"""Tests of the court outputs (ledger/court): report, verification page, CASE/UCO."""
