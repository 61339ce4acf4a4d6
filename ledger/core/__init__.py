"""The pure core: the custody rules, events and payloads, canonical JSON, Merkle trees and
proofs, signed notes and checkpoints, witnesses, the state map, offline bundles and their
verification, the audit replay, and the one exception tree.

Nothing in this package does I/O, reads a clock or draws randomness: time, randomness and
storage are passed in (``tests/unit/test_import_direction.py`` checks every module here).
Storage (``ledger.store``, ``ledger.fabric``), the use cases (``ledger.service``) and the
transports (``api``, ``cli``) sit above it and import it, never the other way round.
"""
