"""The custody home directory: configuration, keys and (embedded mode) the SQLite ledger.

Layout::

    HOME/config.json          origin, database URL or server URL, default actor
    HOME/keys/log.key         the log's checkpoint-signing key (embedded mode only)
    HOME/keys/actors/ID.key   each local actor's Ed25519 key (0600, Argon2id-encrypted)
    HOME/ledger.db            the SQLite ledger (embedded mode)
    HOME/checkpoints/latest   the newest checkpoint this client has seen (kept outside the
                              database so a truncated or rebuilt log is noticed)

This module is the composition root for embedded mode: the real clock and randomness
are bound here, nowhere in the core.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import _sodium, keys
from ledger.errors import InvalidInput, NotFound
from ledger.note import NoteSigner
from ledger.service import ActorKey, Custody
from ledger.store.base import LedgerStore

CONFIG = "config.json"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def passphrase_from_env() -> bytes | None:
    value = os.environ.get("CUSTODY_PASSPHRASE")
    return None if value is None else value.encode()


@dataclass
class Home:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, option: str | Path | None) -> Home:
        raw = option or os.environ.get("CUSTODY_HOME") or Path.home() / ".custody"
        return cls(Path(raw).expanduser().resolve())

    # ---- configuration -------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return (self.path / CONFIG).is_file()

    def load(self) -> Home:
        try:
            self.config = json.loads((self.path / CONFIG).read_text())
        except FileNotFoundError as exc:
            raise NotFound(f"no custody home at {self.path}; run 'custody init' or pass "
                           "--home / set CUSTODY_HOME") from exc
        except ValueError as exc:
            raise InvalidInput(f"{self.path / CONFIG} is not valid JSON") from exc
        return self

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path / (CONFIG + ".tmp")
        tmp.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path / CONFIG)

    @property
    def origin(self) -> str:
        return str(self.config["origin"])

    @property
    def database_url(self) -> str:
        return str(self.config.get("database") or f"sqlite:///{self.path / 'ledger.db'}")

    # ---- keys ----------------------------------------------------------------------

    @property
    def log_key_path(self) -> Path:
        return self.path / "keys" / "log.key"

    def actor_key_path(self, actor_id: str) -> Path:
        return self.path / "keys" / "actors" / f"{actor_id}.key"

    def local_actors(self) -> list[str]:
        folder = self.path / "keys" / "actors"
        return sorted(p.stem for p in folder.glob("*.key")) if folder.is_dir() else []

    def passphrase(self, what: str) -> bytes | None:
        env = passphrase_from_env()
        if env is not None or not sys.stdin.isatty():
            return env
        import getpass

        return getpass.getpass(f"Passphrase for {what}: ").encode()

    def _seed(self, path: Path, what: str) -> bytes:
        return keys.load_seed(path, self.passphrase(what) if keys.is_encrypted(path) else None)

    def log_signer(self) -> NoteSigner:
        return NoteSigner(self.origin, self._seed(self.log_key_path, "the log key"))

    def actor(self, actor_id: str | None) -> ActorKey:
        """The acting actor: ``--as``, else the configured default, else the only one."""
        if actor_id is None:
            actor_id = self.config.get("default_actor")
        if actor_id is None:
            local = self.local_actors()
            if len(local) != 1:
                raise InvalidInput("several local actors exist; choose one with --as ACTOR")
            actor_id = local[0]
        path = self.actor_key_path(actor_id)
        if not path.exists():
            raise NotFound(f"no local key for actor {actor_id!r} in {path.parent}")
        return ActorKey(actor_id, _sodium.Signer(self._seed(path, f"actor {actor_id}")))

    # ---- the client-kept checkpoint ------------------------------------------------

    def remember_checkpoint(self, note: str) -> None:
        folder = self.path / "checkpoints"
        folder.mkdir(exist_ok=True, mode=0o700)
        tmp = folder / "latest.tmp"
        tmp.write_text(note)
        os.replace(tmp, folder / "latest")

    def remembered_checkpoint(self) -> str | None:
        path = self.path / "checkpoints" / "latest"
        return path.read_text() if path.exists() else None


def open_store(home: Home, *, writable: bool = True, create: bool = False,
               actor_id: str | None = None) -> LedgerStore:
    """The store this home points at: the local SQL ledger, or a server (reads then
    authenticate as ``actor_id``, default the home's default actor)."""
    server = home.config.get("server")
    if server:
        from ledger.store.remote import RemoteStore  # optional dependency (httpx)

        return RemoteStore.for_home(home, server, actor_id=actor_id)
    from ledger.store.sql import SqlStore

    signer = home.log_signer() if writable else None
    return SqlStore.open(home.database_url, signer=signer, clock=now_ms, create=create)


def custody(home: Home, store: LedgerStore) -> Custody:
    return Custody(store, origin=home.origin, clock=now_ms, random=os.urandom)
