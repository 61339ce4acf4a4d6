"""The custody home directory: configuration, keys and (embedded mode) the SQLite ledger.

Layout::

    HOME/config.json          origin, database URL or server URL, default actor
    HOME/keys/log.key         the log's checkpoint-signing key (embedded mode only)
    HOME/keys/actors/ID.key   each local actor's Ed25519 key (0600, Argon2id-encrypted)
    HOME/keys/orgs/ORG.key    an organisation's current age X25519 encryption key (its
                              identity; 0600, encrypted like the actors' keys)
    HOME/keys/orgs/ORG.KEYID.key  an earlier (retired or revoked) encryption key of ORG,
                              kept to open packages sealed to it before a rotation
    HOME/ledger.db            the SQLite ledger (embedded mode)
    HOME/checkpoints/latest   the newest checkpoint this client has accepted (0600; kept
                              outside the database so a truncated or rebuilt log is
                              noticed): it only ever advances through
                              :func:`ledger.core.trust.update_trusted`

This module is the composition root for embedded mode: the real clock and randomness
are bound here, nowhere in the core.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.core.errors import CheckpointRefused, InvalidInput, NotFound, VerificationError
from ledger.fsutil import fsync_dir

if TYPE_CHECKING:  # imported where used: a command that needs no key or store stays light
    from ledger.core.note import NoteSigner
    from ledger.core.trust import Consistency, TrustDecision
    from ledger.service import ActorKey, Custody
    from ledger.store.base import LedgerStore
    from ledger.store.lite import SqliteReader

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
        except NotADirectoryError as exc:
            raise InvalidInput(f"the custody home {self.path} is not a directory; pass "
                               "--home DIR or set CUSTODY_HOME to a directory") from exc
        except IsADirectoryError as exc:
            raise InvalidInput(f"{self.path / CONFIG} is a directory, not a file") from exc
        except PermissionError as exc:
            raise InvalidInput(f"permission denied: cannot read {self.path / CONFIG}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{self.path / CONFIG} is not valid JSON") from exc
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

    def org_key_path(self, org_id: str) -> Path:
        """The file of ``org_id``'s current encryption key (an age identity)."""
        return self.path / "keys" / "orgs" / f"{org_id}.key"

    def retired_org_key_path(self, org_id: str, key_id: str) -> Path:
        """Where an earlier encryption key of ``org_id`` is kept after a rotation."""
        return self.path / "keys" / "orgs" / f"{org_id}.{key_id}.key"

    def org_key_file(self, org_id: str, key_id: str | None = None) -> Path:
        """The file holding ``org_id``'s encryption key ``key_id`` (default: the current
        file); NotFound when this home does not hold it."""
        from ledger import keys
        from ledger.core.events import org_key_id

        current = self.org_key_path(org_id)
        if key_id is None or (current.exists() and org_key_id(
                str(keys.identity_info(current)["recipient"])) == key_id):
            if not current.exists():
                raise NotFound(f"this home holds no encryption key of organisation "
                               f"{org_id!r} (no {current})")
            return current
        older = self.retired_org_key_path(org_id, key_id)
        if not older.exists():
            raise NotFound(f"this home holds no encryption key {key_id} of organisation "
                           f"{org_id!r}")
        return older

    def org_identity(self, org_id: str, key_id: str | None = None) -> str:
        """The age identity (``AGE-SECRET-KEY-1…``) of ``org_id``'s encryption key
        ``key_id`` (default: its current key file), decrypted with the passphrase as for
        :meth:`actor`."""
        from ledger import keys

        path = self.org_key_file(org_id, key_id)
        return keys.load_identity(path, self.passphrase(f"organisation {org_id}'s "
                                  "encryption key") if keys.is_encrypted(path) else None)

    def local_org_keys(self, org_id: str) -> dict[str, Path]:
        """Every encryption key of ``org_id`` this home holds (``ORG.key`` and
        ``ORG.KEYID.key`` files whose name is ``org_id``), by key id."""
        import re

        from ledger import keys
        from ledger.core.events import org_key_id

        folder = self.path / "keys" / "orgs"
        found: dict[str, Path] = {}
        if not folder.is_dir():
            return found
        pattern = re.compile(re.escape(org_id) + r"(\.[0-9a-f]{16})?\.key")
        for path in sorted(folder.iterdir()):
            if not pattern.fullmatch(path.name):
                continue
            try:
                info = keys.identity_info(path)
            except (InvalidInput, NotFound):
                continue
            if info["name"] == org_id:
                found[org_key_id(str(info["recipient"]))] = path
        return found

    def local_actors(self) -> list[str]:
        folder = self.path / "keys" / "actors"
        return sorted(p.stem for p in folder.glob("*.key")) if folder.is_dir() else []

    def passphrase(self, what: str) -> bytes | None:
        """The passphrase of an encrypted key: ``CUSTODY_PASSPHRASE``, else asked on the
        terminal. Without either (stdin closed by ``<&-``, a pipe or a file) nothing can
        be asked: None, which :func:`ledger.keys.load_seed` refuses in one sentence
        (Unauthenticated, exit 3: the key needs a passphrase) instead of prompting."""
        env = passphrase_from_env()
        if env is not None or not _stdin_is_terminal():
            return env
        import getpass

        return getpass.getpass(f"Passphrase for {what}: ").encode()

    def _seed(self, path: Path, what: str) -> bytes:
        from ledger import keys

        return keys.load_seed(path, self.passphrase(what) if keys.is_encrypted(path) else None)

    def log_signer(self) -> NoteSigner:
        from ledger.core.note import NoteSigner

        return NoteSigner(self.origin, self._seed(self.log_key_path, "the log key"))

    def actor(self, actor_id: str | None) -> ActorKey:
        """The acting actor: ``--as``, else the configured default, else the only one."""
        from ledger.core import _sodium
        from ledger.service import ActorKey

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

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "latest"

    def pinned_log_key(self) -> str:
        """The log verifier key pinned at ``init``/``join``; every checkpoint is checked
        against it. A home without one (made by an old version) is refused rather than
        trusting the genesis key the ledger itself serves, which a rebuilt log controls."""
        vkey = self.config.get("log_key")
        if not isinstance(vkey, str) or not vkey:
            raise VerificationError(
                f"this home ({self.path}) has no pinned log key, so no checkpoint can be "
                "trusted: compare 'custody log verifier-key' with the key the ledger's "
                f"operator publishes and add it as \"log_key\" to {self.path / CONFIG}")
        return vkey

    def remember_checkpoint(self, note: str, consistency: Consistency | None = None, *,
                            older_ok: bool = False) -> TrustDecision:
        """Keep ``note`` as this client's trusted checkpoint if it verifies with the
        pinned log key and extends the one kept (:func:`ledger.core.trust.update_trusted`,
        with ``consistency(old, new)`` giving the proof, e.g. the store's
        ``consistency_proof``). A refusal raises :class:`CheckpointRefused` and leaves
        the kept file untouched; an accepted note is written atomically, mode 0600.
        Without ``consistency`` only a first checkpoint (or the same one) is accepted.
        ``older_ok``: the note is an append receipt's (see :func:`update_trusted`)."""
        from ledger.core.trust import update_trusted

        log_key = self.pinned_log_key()
        folder = self.checkpoint_path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(folder / ".lock"):
            decision = update_trusted(self.remembered_checkpoint(), note, log_key,
                                      consistency or _no_consistency, older_ok=older_ok)
            if decision.advanced:
                _write_atomically(self.checkpoint_path, decision.note)
        return decision

    def remembered_checkpoint(self) -> str | None:
        path = self.checkpoint_path
        if not path.exists():
            return None
        try:
            return path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointRefused(f"the kept checkpoint {path} is not UTF-8 text: the file "
                                    "was edited", "kept-invalid") from None


def _stdin_is_terminal() -> bool:
    """Whether a passphrase can be asked: stdin exists (``<&-`` leaves it None), is
    open, and is a terminal."""
    stdin = sys.stdin
    if stdin is None:
        return False
    try:
        return bool(stdin.isatty())
    except (ValueError, OSError):  # closed, or its descriptor is gone
        return False


def _no_consistency(old: int, new: int) -> list[bytes]:
    raise VerificationError(f"no consistency proof source was given, so the kept checkpoint "
                            f"(size {old}) cannot be advanced to size {new}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``) so two processes of this home do not
    both read the kept checkpoint and then overwrite each other's newer one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder (mkstemp
    creates it 0600, and the rename keeps that mode), fsync, ``os.replace``, then fsync
    the folder so the rename survives a crash."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def open_store(home: Home, *, writable: bool = True, create: bool = False,
               actor_id: str | None = None) -> LedgerStore:
    """The store this home points at: the local SQL ledger, or a server (reads then
    authenticate as ``actor_id``, default the home's default actor)."""
    network = home.config.get("network")
    if network:
        from ledger.fabric.store import FabricStore  # optional dependency (grpcio)

        org = home.config.get("fabric_org")
        if not isinstance(org, str) or not org:
            raise InvalidInput("this home uses a Fabric network but names no organisation "
                               "of it ('fabric_org' in config.json)")
        endorsers = home.config.get("fabric_endorsers")
        return FabricStore.open(Path(str(network)), org, clock=now_ms,
                                endorsers=endorsers if isinstance(endorsers, list) else None)
    server = home.config.get("server")
    if server:
        from ledger.store.remote import RemoteStore  # optional dependency (httpx)

        return RemoteStore.for_home(home, server, actor_id=actor_id)
    from ledger.store.sql import SqlStore

    _sqlite_file(home.database_url, create=create)
    signer = home.log_signer() if writable else None
    pinned = home.config.get("log_key")
    # A store that writes first runs SQLite's quick_check: nothing is appended to a
    # damaged file (about 0.15 s on a 50k-entry, 120 MB ledger; full integrity_check 0.65 s).
    return SqlStore.open(home.database_url, signer=signer, clock=now_ms, create=create,
                         verify_key=pinned if isinstance(pinned, str) and pinned else None,
                         check=writable and not create)


def open_quick_reader(home: Home) -> SqliteReader | None:
    """A sqlite3-only reader of this home's embedded ledger for quick read-only commands
    (:mod:`ledger.store.lite`: no SQLAlchemy), verified with the pinned log key like
    :func:`open_store`'s reader; None when the ledger is elsewhere (a server, a Fabric
    network, PostgreSQL) or the reader does not serve the file."""
    url = home.database_url
    if home.config.get("network") or home.config.get("server") \
            or not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    from ledger.store.lite import SqliteReader

    pinned = home.config.get("log_key")
    return SqliteReader.open(Path(url.removeprefix("sqlite:///").split("?", 1)[0]),
                             verify_key=pinned if isinstance(pinned, str) and pinned else None)


def _sqlite_file(url: str, *, create: bool) -> None:
    """A SQLite ledger file: never created by a read (a missing one is not found, and no
    empty file is left behind); created 0600 by ``init``, before SQLite opens it, so its
    -wal and -shm files (which SQLite gives the database file's mode) are 0600 too."""
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if not create:
        if not path.exists():
            raise NotFound(f"no ledger database at {url}; run 'custody init' first")
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def custody(home: Home, store: LedgerStore) -> Custody:
    from ledger.service import Custody

    return Custody(store, origin=home.origin, clock=now_ms, random=os.urandom)
