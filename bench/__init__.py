"""Benchmarks for Custody Ledger (not tests: they print JSON, they never fail on speed).

Run ``python -m bench [NAME ...|all] [--quick] [--out FILE]``.

Contract for a benchmark module ``bench/<name>.py`` (e.g. ``append``, ``audit``,
``proofs``, ``api``): it defines ``run(quick: bool) -> dict`` that returns a
JSON-serialisable dict of figures. Each figure is reported as a ratio to a physical
reference measured in the same run (use ``bench.refs``), and ``quick=True`` must
finish in a few seconds with small sizes. Write progress to stderr only: stdout
carries the JSON document. Dropping the file into ``bench/`` registers it; modules
whose names start with ``_`` and the helper modules in ``bench.registry.HELPERS``
are not benchmarks.
"""
