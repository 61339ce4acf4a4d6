"""What one running API server holds: the store, the group committer, the authenticator,
the evidence and package stores and the limits. Built by :func:`api.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.auth import Authenticator
from api.committer import GroupCommitter
from api.evidence_store import EvidenceStore
from api.package_store import PackageIndex, PackageStore
from api.security import LoginThrottle, SecurityConfig
from ledger.store.base import LedgerStore


@dataclass
class Limits:
    max_event_bytes: int = 256 * 1024
    max_batch_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 64 << 30


@dataclass
class Runtime:
    store: LedgerStore
    auth: Authenticator
    committer: GroupCommitter
    evidence: EvidenceStore | None
    limits: Limits
    fallback_origin: str | None = None
    owns_store: bool = False
    #: Witnesses allowed to post cosignatures (empty: any witness may).
    witness_keys: frozenset[str] = frozenset()
    #: Evidence packages (encrypted files between agencies); None: package uploads off.
    packages: PackageStore | None = None
    #: Which organisations are party to the transfers naming each package.
    package_index: PackageIndex = field(default_factory=PackageIndex)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    login_throttle: LoginThrottle | None = None

    def ledger(self) -> dict[str, Any] | None:
        return self.store.state("ledger")

    @property
    def origin(self) -> str | None:
        rec = self.ledger()
        return str(rec["origin"]) if rec else self.fallback_origin

    @property
    def verifier_key(self) -> str | None:
        """The key that signs this server's checkpoints: the genesis log key, or on a
        Fabric network this organisation's node key."""
        node_key = getattr(self.store, "log_key", None)
        if isinstance(node_key, str):
            return node_key
        rec = self.ledger()
        return str(rec["log_key"]) if rec else None
