"""Online backup and verified restore of a SQL ledger (issue #14 item 4).

A backup is ONE tar archive (stdlib :mod:`tarfile`, plain, PAX format)::

    manifest.json     format custody-backup/v1: backend, origin, the log verifier key,
                      the signed checkpoint note the copy ends at, its tree size and
                      root, the creation time, and the payload's name, size and SHA-256
    ledger.db         SQLite: a copy made with SQLite's online backup API in ONE step
      or              (``sqlite3.Connection.backup``, all pages at once), so it is one
    ledger.pgdump     read transaction of the source: one consistent snapshot while
                      writers keep appending in WAL mode. PostgreSQL: ``pg_dump
                      --format=custom`` run on a snapshot exported by a REPEATABLE READ
                      transaction (``pg_export_snapshot()``), the transaction in which
                      the checkpoint recorded in the manifest is read.

The checkpoint recorded is the one INSIDE the copy: for SQLite it is read from the
copied file itself, for PostgreSQL inside the very snapshot the dump copies; its
signature is checked with the home's pinned log key and its root against the copy's own
Merkle nodes before the archive is written. The archive is written to a temporary file
next to ``--out``, fsynced and then renamed (never over an existing file unless
``force``; the no-clobber rename is a hard link, so a file that appears meanwhile is not
overwritten either). Only the ledger database is in it: the home's keys and
``config.json``, the evidence and package stores of a server are not.

A restore trusts nothing in the archive but what it proves:

1. the payload is read from the archive into a scratch place (a directory beside the
   SQLite ledger, or a scratch PostgreSQL database on the same server), its SHA-256 and
   size checked against the manifest (a damaged archive is refused early);
2. the manifest must name the log key PINNED in this home (another ledger's backup is
   refused) and its checkpoint must verify with that key and be the copy's own latest;
3. the copy passes a FULL audit (:func:`ledger.store.audit_sql.audit_store`: every
   leaf, signature, rule, Merkle node, checkpoint and state-map root);
4. against the checkpoint this home KEPT (``HOME/checkpoints/latest``): a backup at
   least as large must contain it (the copy's own tree has the kept root at the kept
   size, and the same checkpoint text when it holds one of that size); an OLDER backup
   is refused (:class:`RestoreRefused`, rule ``older-backup``) unless
   ``accept_older``: then clients that kept the newer checkpoint, this home included,
   refuse the restored ledger as a rollback — the loss is detected, never served
   silently;
5. against the ledger in place: an empty or missing one is replaced; one that the
   backup provably extends (or equals) is replaced; a newer, unrelated or unreadable one
   only with ``force`` (rule ``ledger-exists``);
6. only then the swap: SQLite — the current file is checkpointed and switched out of WAL
   mode (which fails while any other connection has it open: a running server is
   refused), kept under a second name ``ledger.db.before-restore-<UTC time>`` (hard
   link) and the restored file renamed over ``ledger.db`` (one atomic rename: at every
   instant the name is the old or the new ledger); PostgreSQL — one ``psql
   --single-transaction`` session moves the ledger's objects into a schema
   ``custody_before_restore_<UTC time>`` and loads the dump (all or nothing), and the
   target is audited again.

Any failure before step 6 leaves the ledger in place untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, verify_checkpoint
from ledger.core.errors import (
    Backpressure,
    CheckpointRefused,
    IntegrityFault,
    InvalidInput,
    LedgerError,
    NotFound,
    RuleViolation,
    UpstreamError,
    VerificationError,
)
from ledger.core.trust import verify_or_refuse
from ledger.fsutil import fsync_dir
from ledger.home import Home, now_ms

FORMAT = "custody-backup/v1"
MANIFEST = "manifest.json"
SQLITE_PAYLOAD = "ledger.db"
PG_PAYLOAD = "ledger.pgdump"
#: A manifest is a few kilobytes; anything much larger is not ours.
MAX_MANIFEST = 1 << 20
CHUNK = 1 << 20

#: ``progress(phase, done, total)``: ``total`` 0 when unknown.
Progress = Callable[[str, int, int], None]
Clock = Callable[[], int]


class RestoreRefused(RuleViolation):
    """The restore (or backup) would destroy something and was not told to: ``rule`` is
    ``older-backup`` (fewer entries than the checkpoint this home kept, or than the
    ledger in place), ``ledger-exists`` (a ledger the backup does not extend is in
    place) or ``output-exists`` (the backup file exists). CLI exit 3."""

    code = "restore-refused"


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


# ---- the manifest -----------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what the archive holds and the checkpoint the copy ends at."""

    backend: str
    origin: str
    log_key: str
    checkpoint: str
    tree_size: int
    root: str
    created_ms: int
    payload: str
    payload_size: int
    payload_sha256: str
    schema_revision: str | None = None
    tool: str = "custody-ledger"

    @property
    def created(self) -> str:
        return _iso(self.created_ms)

    def to_json(self) -> dict[str, Any]:
        body = {"format": FORMAT, "backend": self.backend, "origin": self.origin,
                "log_key": self.log_key, "checkpoint": self.checkpoint,
                "tree_size": self.tree_size, "root": self.root, "created": self.created,
                "created_ms": self.created_ms, "schema_revision": self.schema_revision,
                "tool": self.tool,
                "payload": {"name": self.payload, "size": self.payload_size,
                            "sha256": self.payload_sha256}}
        return {**body, "digest": _digest(body)}

    def encode(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        """Parse and check ``manifest.json`` strictly; VerificationError otherwise."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise VerificationError("its manifest.json is not valid JSON") from None
        if not isinstance(data, dict):
            raise VerificationError("its manifest.json is not a JSON object")
        digest = data.pop("digest", None)
        try:
            ours = _digest(data)
        except LedgerError:
            ours = None
        if digest != ours:
            raise VerificationError("its manifest.json does not match its own digest")
        if data.get("format") != FORMAT:
            raise VerificationError(f"its manifest names the format {data.get('format')!r}, "
                                    f"not {FORMAT!r}")
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise VerificationError("its manifest has no payload object")
        try:
            backend = _field(data, "backend", str)
            if backend not in ("sqlite", "postgresql"):
                raise VerificationError(f"its manifest names an unknown backend {backend!r}")
            name = _field(payload, "name", str)
            if name != {"sqlite": SQLITE_PAYLOAD, "postgresql": PG_PAYLOAD}[backend]:
                raise VerificationError(f"its manifest names an unexpected payload {name!r}")
            sha = _field(payload, "sha256", str)
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise VerificationError("its manifest's payload SHA-256 is not 64 hex digits")
            revision = data.get("schema_revision")
            if revision is not None and not isinstance(revision, str):
                raise VerificationError("its manifest's schema_revision is not a string")
            return cls(backend=backend, origin=_field(data, "origin", str),
                       log_key=_field(data, "log_key", str),
                       checkpoint=_field(data, "checkpoint", str),
                       tree_size=_field(data, "tree_size", int),
                       root=_field(data, "root", str),
                       created_ms=_field(data, "created_ms", int), payload=name,
                       payload_size=_field(payload, "size", int), payload_sha256=sha,
                       schema_revision=revision, tool=str(data.get("tool", "")))
        except KeyError as exc:
            raise VerificationError(f"its manifest lacks the field {exc.args[0]!r}") from None


def _digest(body: dict[str, Any]) -> str:
    """``sha256:HEX`` of the manifest's other fields in RFC 8785 canonical JSON: any
    changed bit in the manifest (a value, a key, or its JSON syntax) is detected."""
    from ledger.core.canonical import canonical

    return "sha256:" + hashlib.sha256(canonical(body)).hexdigest()


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise VerificationError(f"its manifest's {name!r} is not a {kind.__name__}")
    if isinstance(value, int) and value < 0:
        raise VerificationError(f"its manifest's {name!r} is negative")
    return value


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] \
        + "Z"


def _stamp(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y%m%dT%H%M%SZ")


# ---- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    archive_size: int
    archive_sha256: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"path": str(self.path), "backend": m.backend, "origin": m.origin,
                "tree_size": m.tree_size, "root": m.root, "checkpoint": m.checkpoint,
                "created": m.created, "bytes": self.archive_size,
                "sha256": self.archive_sha256, "payload_sha256": m.payload_sha256,
                "payload_bytes": m.payload_size, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    entries_checked: int
    #: False for ``check_only``: everything was verified and nothing was replaced.
    restored: bool
    #: Where the ledger that was in place is kept (a file, or a PostgreSQL schema).
    previous: str | None
    #: The size of the checkpoint this home kept before the restore (None: none kept).
    kept_size: int | None
    #: The size of the ledger that was in place (None: there was none).
    current_size: int | None
    #: True when the backup has fewer entries than the kept checkpoint (``accept_older``).
    older: bool
    #: Acknowledged entries the restored ledger lacks (kept or in-place size minus its own).
    lost_entries: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"restored": self.restored, "backend": m.backend, "origin": m.origin,
                "tree_size": m.tree_size, "root": m.root, "created": m.created,
                "entries_checked": self.entries_checked, "previous": self.previous,
                "kept_size": self.kept_size, "current_size": self.current_size,
                "older": self.older, "lost_entries": self.lost_entries,
                "seconds": round(self.seconds, 3), "warnings": self.warnings}


# ---- helpers shared by both backends ----------------------------------------------------


def backend_of(home: Home) -> str:
    """``sqlite`` or ``postgresql`` for a home whose ledger database is local to it; a
    server's client home or a Fabric organisation is refused in one sentence."""
    if home.config.get("network"):
        raise InvalidInput("a Fabric organisation's log is derived from its peer's blocks, "
                           "so it is not backed up or restored here: back up the peer's "
                           "ledger instead")
    if home.config.get("server"):
        raise InvalidInput("this home uses a server: run backup and restore on the server's "
                           "machine, with the home that holds its database")
    url = home.database_url
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise InvalidInput(f"cannot back up the database {url.split(':', 1)[0]!r}: only "
                       "SQLite and PostgreSQL ledgers")


def _sqlite_file(url: str) -> Path:
    """The file of a ``sqlite:///PATH`` URL, as :func:`ledger.store.sql.sqlite_path`
    reads it (not imported here: a SQLite backup needs no SQLAlchemy)."""
    raw = url.removeprefix("sqlite:///")
    if raw.startswith("file:"):
        raw = raw[len("file:"):].split("?", 1)[0]
    if not raw or raw == ":memory:":
        raise InvalidInput("an in-memory SQLite ledger cannot be backed up or restored")
    return Path(raw)


@dataclass(frozen=True)
class _Facts:
    """What a copy says about itself: its size, latest checkpoint, root and revision."""

    size: int
    note: str | None
    root: bytes
    revision: str | None


Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def _facts(query: Query, revision_table: bool) -> _Facts:
    """Read a ledger's head size, latest checkpoint, root (from its stored Merkle nodes)
    and schema revision (when it has ``alembic_version``) through ``query`` (``?``
    parameters), all in the caller's one read transaction."""
    rows = query("SELECT size FROM head WHERE id = 1", ())
    size = int(rows[0][0]) if rows else 0
    rows = query("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", ())
    note = str(rows[0][0]) if rows else None
    found: dict[merkle.NodeId, bytes] = {}
    for level, idx in merkle.root_plan(size):
        rows = query("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx))
        if rows:  # (a hand-edited SQLite row may hold TEXT: its bytes, then)
            value = rows[0][0]
            found[(level, idx)] = value.encode() if isinstance(value, str) else bytes(value)
    try:
        root = merkle.root_at(size, found)
    except LedgerError:
        root = b""
    revision = None
    if revision_table:
        rows = query("SELECT version_num FROM alembic_version", ())
        revision = str(rows[0][0]) if rows else None
    return _Facts(size, note, root, revision)


def _checked_copy(facts: _Facts, log_key: str) -> Checkpoint:
    """The checkpoint a fresh copy ends at, after checking it against the copy."""
    if facts.note is None:
        raise NotFound("the ledger has no checkpoint yet, so there is nothing to back up")
    try:
        cp = verify_checkpoint(facts.note, log_key)
    except VerificationError as exc:
        raise VerificationError(
            f"the ledger's latest checkpoint does not verify with the log key pinned in this "
            f"home ({exc.message}); a backup of it could never be restored here, so none "
            "was written (run 'custody audit')") from None
    if cp.size != facts.size or cp.root != facts.root:
        raise IntegrityFault(
            f"the copied ledger is inconsistent (its latest checkpoint covers {cp.size} "
            f"entries, its head row says {facts.size}, or its Merkle nodes give another "
            "root); no backup was written: run 'custody audit'", kind="checkpoint")
    return cp


def _sha256_file(path: Path, progress: Progress, phase: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress(phase, done, total)
    return digest.hexdigest(), done


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what it writes and counts it (``tell`` included,
    which :mod:`tarfile` asks for)."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__()
        self.out = out
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.out.write(view)
        self.digest.update(view)
        self.count += len(view)
        return len(view)

    def tell(self) -> int:
        return self.count


class _Reading(io.RawIOBase):
    """A read-only file that reports progress as :mod:`tarfile` copies it."""

    def __init__(self, src: IO[bytes], progress: Progress, phase: str, total: int) -> None:
        super().__init__()
        self.src, self.progress, self.phase, self.total = src, progress, phase, total
        self.done = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.src.read(size)
        self.done += len(data)
        self.progress(self.phase, self.done, self.total)
        return data


# ---- backup -----------------------------------------------------------------------------


def backup(home: Home, out: Path, *, force: bool = False, progress: Progress | None = None,
           clock: Clock = now_ms) -> BackupResult:
    """Take a consistent online backup of ``home``'s ledger into the archive ``out``
    (see the module docstring). Writers may keep appending meanwhile. ``force``
    replaces an existing ``out``. Raises :class:`RestoreRefused` (rule
    ``output-exists``) when ``out`` exists, :class:`NotFound` for a ledger without a
    checkpoint, VerificationError / IntegrityFault when the copy does not check out."""
    started = time.monotonic()
    report = progress or _no_progress
    backend = backend_of(home)
    log_key = home.pinned_log_key()
    out = Path(out).expanduser().absolute()
    if out.is_dir():
        raise InvalidInput(f"--out {out} is a directory; name the backup file")
    if out.exists() and not force:
        raise RestoreRefused("output-exists", f"{out} already exists; pass --force to "
                             "replace it, or choose another file")
    if not out.parent.is_dir():
        raise NotFound(f"the folder {out.parent} does not exist")
    if backend == "sqlite":
        db = _sqlite_file(home.database_url)
        if out.resolve() in {p.resolve() for p in (db, db.with_name(db.name + "-wal"),
                                                   db.with_name(db.name + "-shm"))}:
            raise InvalidInput(f"--out {out} is the ledger database itself; choose another "
                               "file")
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        if backend == "sqlite":
            payload = scratch / SQLITE_PAYLOAD
            facts = _snapshot_sqlite(_sqlite_file(home.database_url), payload, report)
        else:
            payload = scratch / PG_PAYLOAD
            facts = _snapshot_postgres(home.database_url, payload, report)
        cp = _checked_copy(facts, log_key)
        sha, size = _sha256_file(payload, report, "Checking the copy")
        assert facts.note is not None  # noqa: S101 - checked by _checked_copy
        manifest = Manifest(backend=backend, origin=cp.origin, log_key=log_key,
                            checkpoint=facts.note, tree_size=cp.size, root=cp.root.hex(),
                            created_ms=clock(), payload=payload.name, payload_size=size,
                            payload_sha256=sha, schema_revision=facts.revision,
                            tool=f"custody-ledger {_version()}")
        archive_sha, archive_size = _write_archive(out, manifest, payload, force=force,
                                                   progress=report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return BackupResult(out, manifest, archive_size, archive_sha, time.monotonic() - started)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("custody-ledger")
    except Exception:  # not installed as a distribution
        return "unknown"


def _snapshot_sqlite(db: Path, dest: Path, progress: Progress) -> _Facts:
    """Copy the SQLite ledger ``db`` to ``dest`` with the online backup API in ONE step
    (one read transaction of the source: a consistent snapshot, writers unaffected in
    WAL mode), make the copy a self-contained rollback-journal file, and read its facts
    from the copy itself."""
    if not db.is_file():
        raise NotFound(f"no ledger database at {db}; run 'custody init' first")
    progress("Copying the ledger", 0, 0)
    try:
        src = sqlite3.connect(db, timeout=30, isolation_level=None)
        try:
            src.execute("PRAGMA busy_timeout=30000")
            dst = sqlite3.connect(dest, isolation_level=None)
            try:
                src.backup(dst, pages=-1)  # -1: every page in one step, one snapshot
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.DatabaseError as exc:
        from ledger.store.sql import describe_database_error

        raise describe_database_error(exc, f"sqlite:///{db}") from None
    os.chmod(dest, 0o600)
    with contextlib.closing(_open_ro(dest)) as conn:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(20)").fetchall()
                    if str(r[0]) != "ok"]
        if problems:
            from ledger.store.sql import damage_message

            raise IntegrityFault(damage_message(str(db), problems), kind="database")
        return _sqlite_facts(conn)


def _sqlite_facts(conn: sqlite3.Connection) -> _Facts:
    conn.execute("BEGIN")  # one read transaction for every fact
    try:
        revision = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'alembic_version'").fetchone() is not None
        return _facts(lambda sql, params: list(conn.execute(sql, params).fetchall()),
                      revision)
    finally:
        conn.execute("ROLLBACK")


def _open_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None)


def _write_archive(out: Path, manifest: Manifest, payload: Path, *, force: bool,
                   progress: Progress) -> tuple[str, int]:
    """Write manifest + payload as one tar archive to ``out`` atomically: a temporary
    file in the same folder (0600), fsync, then a rename (a hard link when not
    ``force``, so an ``out`` that appeared meanwhile is never replaced), fsync of the
    folder. Returns the archive's SHA-256 and size."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = _HashingWriter(raw)
            with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                body = manifest.encode()
                tar.addfile(_member(MANIFEST, len(body), manifest.created_ms), io.BytesIO(body))
                with payload.open("rb") as src:
                    tar.addfile(_member(payload.name, manifest.payload_size,
                                        manifest.created_ms),
                                _Reading(src, progress, "Writing the archive",
                                         manifest.payload_size))
            raw.flush()
            os.fsync(raw.fileno())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)
            except FileExistsError:
                raise RestoreRefused("output-exists", f"{out} already exists; pass --force "
                                     "to replace it, or choose another file") from None
            tmp.unlink()
        fsync_dir(out.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return writer.digest.hexdigest(), writer.count


def _member(name: str, size: int, created_ms: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = created_ms // 1000
    info.mode = 0o600
    info.type = tarfile.REGTYPE
    return info


# ---- reading an archive -----------------------------------------------------------------


def read_archive(archive: Path, dest_dir: Path,
                 progress: Progress | None = None) -> tuple[Manifest, Path]:
    """Read ``archive``'s manifest and extract its payload into ``dest_dir`` (0600),
    checking the payload's size and SHA-256 against the manifest. Only the two expected
    members are read (nothing is extracted by a name from the archive). Raises
    :class:`NotFound`, :class:`InvalidInput` (not a custody backup) or
    :class:`VerificationError` (a damaged one)."""
    report = progress or _no_progress
    archive = Path(archive)
    if not archive.exists():
        raise NotFound(f"no such backup file: {archive}")
    if not archive.is_file():
        raise InvalidInput(f"{archive} is not a file")

    def damaged(why: str) -> VerificationError:
        return VerificationError(f"the backup {archive} is damaged ({why}); nothing was "
                                 "restored")

    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by `with tar` below
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if _looks_like_ours(archive):
            raise damaged(f"it cannot be read as a tar archive: {exc}") from None
        raise InvalidInput(f"{archive} is not a custody backup (a tar archive written by "
                           "'custody backup')") from None
    try:
        with tar:
            try:
                first = tar.next()
                if first is None or first.name != MANIFEST:
                    if _looks_like_ours(archive):
                        raise damaged("its first member is not manifest.json")
                    raise InvalidInput(f"{archive} is not a custody backup (it does not "
                                       "start with manifest.json)")
                if not first.isreg() or first.size > MAX_MANIFEST:
                    raise damaged("its manifest.json is not a small regular file")
                try:
                    manifest = Manifest.decode(_read_member(tar, first))
                except VerificationError as exc:
                    raise damaged(exc.message.removeprefix("its ")) from None
                member = tar.next()
                if member is None or member.name != manifest.payload or not member.isreg():
                    raise damaged(f"it has no {manifest.payload} after its manifest")
                if member.size != manifest.payload_size:
                    raise damaged(f"{manifest.payload} holds {member.size} bytes, the manifest "
                                  f"says {manifest.payload_size}")
                target = dest_dir / manifest.payload
                digest = hashlib.sha256()
                done = 0
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - a regular member always has one
                    raise damaged(f"{manifest.payload} cannot be read")
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        done += len(chunk)
                        report("Reading the backup", done, member.size)
                    dst.flush()
                    os.fsync(dst.fileno())
                if done != manifest.payload_size:
                    raise damaged(f"{manifest.payload} is truncated")
                if digest.hexdigest() != manifest.payload_sha256:
                    raise damaged(f"the SHA-256 of {manifest.payload} is "
                                  f"{digest.hexdigest()[:16]}…, the manifest says "
                                  f"{manifest.payload_sha256[:16]}…")
                if tar.next() is not None:
                    raise damaged("it holds more than a manifest and one payload")
            except (tarfile.TarError, EOFError, zlib_errors()) as exc:
                raise damaged(str(exc) or type(exc).__name__) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise
        raise damaged(str(exc)) from None
    return manifest, target


def zlib_errors() -> type[Exception]:
    import zlib

    return zlib.error


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover
        raise VerificationError("its manifest.json cannot be read")
    data = src.read(MAX_MANIFEST + 1)
    if len(data) != member.size:
        raise VerificationError("its manifest.json is truncated")
    return data


def _looks_like_ours(archive: Path) -> bool:
    """A plain tar whose first header names manifest.json (or a compressed file): then a
    read failure means damage, not a wrong file."""
    try:
        with archive.open("rb") as src:
            head = src.read(512)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return head[257:262] == b"ustar" or head.startswith(MANIFEST.encode()) \
        or head.startswith(b"./PaxHeaders")


# ---- restore ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Current:
    """The ledger in place: None size when there is none (or it is empty)."""

    size: int | None
    note: str | None = None
    problem: str | None = None  # why it cannot be read or verified


def restore(home: Home, archive: Path, *, force: bool = False, accept_older: bool = False,
            check_only: bool = False, progress: Progress | None = None,
            clock: Clock = now_ms) -> RestoreResult:
    """Restore the backup ``archive`` into ``home``'s ledger after proving it (see the
    module docstring). ``check_only`` stops after every check, replacing nothing.
    Raises VerificationError / IntegrityFault (the backup does not prove itself, exit
    1), :class:`RestoreRefused` (an older backup without ``accept_older``, a ledger in
    place it does not extend without ``force``, exit 3), Backpressure (the ledger is
    in use by another process, exit 5)."""
    started = time.monotonic()
    report = progress or _no_progress
    backend = backend_of(home)
    log_key = home.pinned_log_key()
    archive = Path(archive).expanduser().absolute()
    if backend == "sqlite":
        db = _sqlite_file(home.database_url)
        if not db.parent.is_dir():
            raise NotFound(f"the folder of the ledger database {db.parent} does not exist")
        place = db.parent
    else:
        place = home.path
    with _restore_lock(place) as scratch:
        manifest, payload = read_archive(archive, scratch, report)
        if manifest.backend != backend:
            raise InvalidInput(f"the backup is of a {manifest.backend} ledger and this home's "
                               f"ledger is on {backend}; restore it into a home of that kind")
        cp = _check_manifest(manifest, home, log_key)
        _check_revision(manifest)
        kept_note = home.remembered_checkpoint()
        if backend == "sqlite":
            return _restore_sqlite(home, manifest, cp, payload, kept_note, log_key,
                                   force=force, accept_older=accept_older,
                                   check_only=check_only, progress=report, clock=clock,
                                   started=started)
        return _restore_postgres(home, manifest, cp, payload, kept_note, log_key,
                                 force=force, accept_older=accept_older,
                                 check_only=check_only, progress=report, clock=clock,
                                 started=started)


@contextlib.contextmanager
def _restore_lock(place: Path) -> Iterator[Path]:
    """One restore at a time per place (``flock`` on ``.custody-restore.lock``), and a
    private scratch directory beside the ledger (same file system: the final rename is
    atomic). Scratch directories left by a restore that was killed are removed first."""
    lock = place / ".custody-restore.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Backpressure(f"another restore is running in {place}; wait for it to "
                                   "finish") from None
        for stale in place.glob(".custody-restore-*"):
            shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=".custody-restore-", dir=place))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        os.close(fd)


def _check_manifest(manifest: Manifest, home: Home, log_key: str) -> Checkpoint:
    """The manifest must be of this home's ledger, and its checkpoint signed by the
    pinned log key."""
    if manifest.log_key != log_key:
        raise VerificationError(
            f"the backup is of the ledger {manifest.origin!r} with the log key "
            f"{manifest.log_key}, but this home pins {log_key}: it is another ledger's "
            "backup, so it is not restored here")
    cp = verify_or_refuse(
        manifest.checkpoint, log_key, "unverified",
        "the backup's checkpoint does not verify with the log key pinned in this home",
        "; nothing was restored")
    if cp.size != manifest.tree_size or cp.root.hex() != manifest.root \
            or cp.origin != manifest.origin or cp.origin != home.origin:
        raise VerificationError(
            "the backup's manifest disagrees with its own signed checkpoint (size, root or "
            "origin); nothing was restored")
    return cp


def _check_revision(manifest: Manifest) -> None:
    """A backup made by a newer version (a schema revision this code does not know)."""
    if manifest.schema_revision is None:
        return
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from ledger.store.sql import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
    if manifest.schema_revision not in known:
        raise InvalidInput(f"the backup's database schema is revision "
                           f"{manifest.schema_revision!r}, which this version of custody "
                           "does not know: restore it with the version that made it "
                           f"({manifest.tool or 'unknown'})")


def _audit_copy(url: str, manifest: Manifest, cp: Checkpoint, log_key: str,
                progress: Progress, what: str = "the backup") -> tuple[int, Any]:
    """Open the copy at ``url`` read-only and run the FULL audit; check that its latest
    checkpoint is the manifest's. Returns (entries checked, the open store)."""
    from ledger.store.audit_sql import audit_store
    from ledger.store.sql import SqlStore

    if not _has_ledger(url):
        raise VerificationError(f"{what} holds no ledger tables; nothing was restored")
    store = SqlStore.open(url, signer=None, clock=now_ms, verify_key=log_key)
    try:
        phase = f"Auditing {what}"
        report = audit_store(store, log_verifier_key=log_key,
                             progress=lambda done: progress(phase, done, manifest.tree_size))
        if not report.ok:
            where = "" if report.first_bad_index is None \
                else f" at index {report.first_bad_index}"
            raise VerificationError(f"{what} fails its audit{where} ({report.kind}: "
                                    f"{report.detail}); nothing was restored")
        latest = store.latest_checkpoint()
        if latest != manifest.checkpoint or report.tree_size != cp.size \
                or store.size() != cp.size:
            raise VerificationError(
                f"{what}'s own latest checkpoint (size {report.tree_size}) is not the one "
                f"its manifest records (size {cp.size}); nothing was restored")
    except BaseException:
        store.close()
        raise
    return report.entries_checked, store


def _against_kept(store: Any, cp: Checkpoint, kept_note: str | None, log_key: str,
                  accept_older: bool) -> tuple[int | None, bool, int]:
    """Compare the audited copy with the checkpoint this home kept. Returns (kept size,
    older, acknowledged entries lost)."""
    if kept_note is None:
        return None, False, 0
    kept = verify_or_refuse(
        kept_note, log_key, "kept-invalid",
        "the checkpoint this home kept does not verify with its pinned log key",
        ": the file was edited, so the backup cannot be compared with it; nothing was "
        "restored")
    if cp.size >= kept.size:
        root = store.root(kept.size)
        same = _checkpoint_at(store, kept.size)
        if root != kept.root or (same is not None and same != kept):
            raise CheckpointRefused(
                f"the backup does not contain the checkpoint this home kept (size "
                f"{kept.size}): its own tree has another root at that size, so it is a "
                "forked or rewritten log; nothing was restored", "fork")
        return kept.size, False, 0
    lost = kept.size - cp.size
    if not accept_older:
        raise RestoreRefused(
            "older-backup",
            f"the backup ends at tree size {cp.size} but this home kept a checkpoint of size "
            f"{kept.size}: restoring it would lose {lost} acknowledged "
            f"entr{'y' if lost == 1 else 'ies'} (indices {cp.size}–{kept.size - 1}), and "
            "every client that kept a newer checkpoint would refuse the ledger; pass "
            "--accept-older to restore it anyway")
    return kept.size, True, lost


def _checkpoint_at(store: Any, size: int) -> Checkpoint | None:
    try:
        note = store.checkpoint_at(size)
    except NotFound:
        return None
    return Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")


def _against_current(current: _Current, store: Any, cp: Checkpoint, log_key: str,
                     force: bool, where: str) -> int:
    """Compare the audited copy with the ledger in place; returns the entries the
    restore drops from it (0 unless ``force``)."""
    if current.size is None:
        return 0
    if current.problem is not None:
        if not force:
            raise RestoreRefused(
                "ledger-exists", f"a ledger is in place at {where} but {current.problem}, so "
                "the backup cannot be shown to extend it; pass --force to replace it "
                "(it is kept aside, not deleted)")
        return 0
    assert current.note is not None  # noqa: S101 - set whenever problem is None
    now = verify_checkpoint(current.note, log_key)
    if now.size > cp.size:
        if not force:
            raise RestoreRefused(
                "ledger-exists", f"the ledger in place at {where} has {now.size} entries, "
                f"more than the backup's {cp.size}: restoring would drop {now.size - cp.size}; "
                "pass --force to replace it anyway (it is kept aside, not deleted)")
        return now.size - cp.size
    if store.root(now.size) != now.root and not force:
        raise RestoreRefused(
            "ledger-exists", f"the ledger in place at {where} (size {now.size}) is not a "
            "prefix of the backup (another root at that size): pass --force to replace "
            "it (it is kept aside, not deleted)")
    return 0


def _has_ledger(url: str) -> bool:
    """Whether the database at ``url`` has the ledger's tables (checked on a connection
    that is closed afterwards: nothing stays connected to a database about to be
    replaced)."""
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if not path.is_file() or path.stat().st_size == 0:
            return False
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'entries'").fetchone() is not None
        except sqlite3.DatabaseError as exc:
            from ledger.store.sql import describe_database_error

            raise describe_database_error(exc, url) from None
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT to_regclass('entries')").scalar() is not None
    except sa.exc.DBAPIError as exc:
        from ledger.store.sql import describe_database_error

        raise describe_database_error(exc, url) from None
    finally:
        engine.dispose()


def _read_current(url: str, log_key: str) -> _Current:
    """What the ledger at ``url`` is: absent/empty, or its size and verified latest
    checkpoint, or why it cannot be read."""
    from ledger.store.sql import SqlStore

    try:
        if not _has_ledger(url):
            return _Current(None)
        store = SqlStore.open(url, signer=None, clock=now_ms, verify_key=log_key)
    except LedgerError as exc:
        return _Current(0, problem=f"it cannot be opened ({exc.message})")
    try:
        note = store.latest_checkpoint()
        size = store.size()
    except Exception as exc:  # a damaged database: say why, in one line
        return _Current(0, problem="it cannot be read (" + " ".join(str(exc).split())[:200]
                        + ")")
    finally:
        store.close()
    if note is None:
        return _Current(None) if size == 0 else _Current(size, problem="it has no checkpoint")
    try:
        cp = verify_checkpoint(note, log_key)
    except VerificationError as exc:
        return _Current(size, problem=f"its latest checkpoint does not verify ({exc.message})")
    if cp.size != size:
        return _Current(size, problem=f"its head row says {size} entries and its latest "
                        f"checkpoint {cp.size}")
    return _Current(size, note)


def _finish(home: Home, manifest: Manifest, store_url: str, older: bool) -> None:
    """Keep the restored checkpoint as this home's trusted one when it extends the kept
    one (through :func:`ledger.core.trust.update_trusted`); an older restore leaves the newer
    kept checkpoint in place, so this home too refuses the rolled-back ledger."""
    if older:
        return
    from ledger.store.sql import SqlStore

    store = SqlStore.open(store_url, signer=None, clock=now_ms, verify_key=home.pinned_log_key())
    try:
        home.remember_checkpoint(manifest.checkpoint, store.consistency_proof)
    finally:
        store.close()


def _loss_warnings(cp: Checkpoint, kept_size: int | None, dropped: int) -> list[str]:
    """What an older restore loses, said loudly: entries a client acknowledged (the kept
    checkpoint) or that the replaced ledger held."""
    warnings = []
    if kept_size is not None and kept_size > cp.size:
        lost = kept_size - cp.size
        warnings += [
            f"the restored ledger ends at tree size {cp.size}, OLDER than the checkpoint "
            f"this home kept (size {kept_size}): {lost} acknowledged "
            f"entr{'y is' if lost == 1 else 'ies are'} missing",
            "every client that kept a newer checkpoint, this home included, will refuse "
            "this ledger as a rollback (exit 1): the loss is detected, not served"]
    if dropped and (kept_size is None or cp.size + dropped > kept_size):
        warnings.append(f"the ledger that was in place had {cp.size + dropped} entries; "
                        f"the restored one has {cp.size} ({dropped} fewer)")
    return warnings


# ---- SQLite -----------------------------------------------------------------------------


def _restore_sqlite(home: Home, manifest: Manifest, cp: Checkpoint, payload: Path,
                    kept_note: str | None, log_key: str, *, force: bool, accept_older: bool,
                    check_only: bool, progress: Progress, clock: Clock,
                    started: float) -> RestoreResult:
    db = _sqlite_file(home.database_url)
    copy_url = f"sqlite:///{payload}"
    checked, store = _audit_copy(copy_url, manifest, cp, log_key, progress)
    try:
        kept_size, older, lost = _against_kept(store, cp, kept_note, log_key, accept_older)
        current = _read_current(home.database_url, log_key) if db.exists() else _Current(None)
        dropped = _against_current(current, store, cp, log_key, force, str(db))
    finally:
        store.close()
    warnings = _loss_warnings(cp, kept_size, dropped)
    lost = max(lost, dropped)
    if check_only:
        return RestoreResult(manifest, checked, False, None, kept_size, current.size, older,
                             lost, time.monotonic() - started, warnings)
    _self_contained(payload)
    previous = _swap_sqlite(db, payload, _stamp(clock()), progress)
    _check_swapped(db, manifest, log_key)
    _finish(home, manifest, home.database_url, older)
    return RestoreResult(manifest, checked, True, None if previous is None else str(previous),
                         kept_size, current.size, older, lost, time.monotonic() - started,
                         warnings)


def _self_contained(path: Path) -> None:
    """Fold any WAL the audit left into the copy and leave it a single rollback-journal
    file (no -wal/-shm to carry along), fsynced."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm", "-journal"):
        leftover = path.with_name(path.name + suffix)
        if leftover.exists():
            raise IntegrityFault(f"the restored copy still has a {suffix} file after it was "
                                 "closed; nothing was restored", kind="database")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_sqlite(db: Path, restored: Path, stamp: str, progress: Progress) -> Path | None:
    """Put ``restored`` in place of ``db`` atomically, keeping the old file as
    ``db.before-restore-STAMP``. The old file is first checkpointed and switched out of
    WAL mode, which SQLite only allows when no other connection has it open (a running
    server or command is refused, exit 5); then, under an exclusive lock, it gets its
    second name (a hard link) and one ``rename`` puts the restored file in its place."""
    progress("Replacing the ledger", 0, 0)
    if not db.exists():
        for suffix in ("-wal", "-shm"):  # a stale WAL must never meet the new file
            stray = db.with_name(db.name + suffix)
            if stray.exists():
                stray.rename(db.with_name(f"{db.name}.before-restore-{stamp}{suffix}"))
        os.replace(restored, db)
        fsync_dir(db.parent)
        return None
    aside = db.with_name(f"{db.name}.before-restore-{stamp}")
    n = 1
    while aside.exists() or aside.with_name(aside.name + "-wal").exists():
        n += 1
        aside = db.with_name(f"{db.name}.before-restore-{stamp}-{n}")
    busy = Backpressure(f"the ledger database {db} is in use by another process (a running "
                        "'custody serve' or command): stop it, then run the restore again")
    try:
        conn = sqlite3.connect(db, timeout=3, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        from ledger.store.sql import describe_database_error

        raise describe_database_error(exc, f"sqlite:///{db}") from None
    try:
        try:
            conn.execute("PRAGMA busy_timeout=3000")
            mode = str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
            if mode != "delete":
                raise busy
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                raise busy from None
            raise
        except sqlite3.DatabaseError:
            # A damaged file (restored with --force) cannot be checkpointed; it is kept
            # aside as it is, with whatever WAL it has.
            pass
        for suffix in ("-wal", "-shm", "-journal"):
            extra = db.with_name(db.name + suffix)
            if extra.exists():
                extra.rename(aside.with_name(aside.name + suffix))
        try:
            os.link(db, aside)
        except OSError:  # no hard links on this file system: two renames instead
            os.rename(db, aside)
        os.replace(restored, db)
        fsync_dir(db.parent)
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        conn.close()
    return aside


def _check_swapped(db: Path, manifest: Manifest, log_key: str) -> None:
    """The file now in place is the audited copy: its latest checkpoint is the one the
    manifest records and SQLite's quick check passes."""
    with contextlib.closing(_open_ro(db)) as conn:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(20)").fetchall()
                    if str(r[0]) != "ok"]
        facts = _sqlite_facts(conn)
    if problems or facts.note != manifest.checkpoint:
        raise IntegrityFault(f"the restored ledger at {db} is not the audited copy; run "
                             "'custody audit'", kind="database")


# ---- PostgreSQL -------------------------------------------------------------------------


def _pg_url(url: str, database: str | None = None) -> Any:
    import sqlalchemy as sa

    u = sa.make_url(url.replace("postgresql+psycopg://", "postgresql://", 1))
    u = u.set(drivername="postgresql")
    return u.set(database=database) if database is not None else u


def _libpq(url: str, database: str | None = None) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries
    the password (``PGPASSWORD``: never on a command line other users can read)."""
    u = _pg_url(url, database)
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    return u.set(password=None).render_as_string(hide_password=False), env


def _engine(url: str, database: str | None = None) -> Any:
    import sqlalchemy as sa

    u = _pg_url(url, database).set(drivername="postgresql+psycopg")
    return sa.create_engine(u, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _pg_tool(name: str, major: int) -> str:
    """The PostgreSQL client tool ``name`` of the server's major version (Debian keeps
    each in /usr/lib/postgresql/MAJOR/bin), else the one on PATH."""
    override = os.environ.get("CUSTODY_PG_BINDIR")
    candidates = [Path(override) / name] if override else []
    candidates.append(Path(f"/usr/lib/postgresql/{major}/bin") / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise InvalidInput(f"{name} (PostgreSQL {major}) is not installed; it comes with the "
                           "PostgreSQL client package (e.g. postgresql-client-"
                           f"{major}), or set CUSTODY_PG_BINDIR")
    return found


def _run(argv: Sequence[str], env: dict[str, str], what: str, *,
         stdin: Any = None) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(list(argv), env=env, stdin=stdin, capture_output=True,  # noqa: S603
                          check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.decode(errors="replace").splitlines()
                 if line.strip()]
        reason = " ".join(lines[0].split()) if lines else f"exit status {done.returncode}"
        raise UpstreamError(f"{what} failed: {reason}")
    return done


def _server_major(conn: Any) -> int:
    return int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000


def _snapshot_postgres(url: str, dest: Path, progress: Progress) -> _Facts:
    """``pg_dump --format=custom`` of the ledger database, run on a snapshot exported by
    a REPEATABLE READ, read-only transaction that reads the facts (latest checkpoint,
    size, root) in that same snapshot and stays open until the dump is written."""
    import sqlalchemy as sa

    progress("Dumping the ledger", 0, 0)
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            tool = _pg_tool("pg_dump", _server_major(conn))
        with engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ",
                                   postgresql_readonly=True)
            with conn.begin():
                snapshot = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
                tables = {str(n) for (n,) in conn.exec_driver_sql(
                    "SELECT c.relname FROM pg_class AS c WHERE c.relkind IN ('r', 'p') AND "
                    "pg_table_is_visible(c.oid)").all()}
                if "entries" not in tables:
                    raise NotFound("the configured database holds no ledger; run "
                                   "'custody init' first")
                facts = _facts(lambda sql, params: [tuple(r) for r in conn.exec_driver_sql(
                    sql.replace("?", "%s"), params).all()], "alembic_version" in tables)
                target, env = _libpq(url)
                _run([tool, "--format=custom", "--no-owner", "--no-privileges",
                      f"--snapshot={snapshot}", f"--file={dest}", f"--dbname={target}"],
                     env, "pg_dump")
    except sa.exc.DBAPIError as exc:
        from ledger.store.sql import describe_database_error

        raise describe_database_error(exc, url) from None
    finally:
        engine.dispose()
    os.chmod(dest, 0o600)
    return facts


def _pg_objects(tool_restore: str, dump: Path, env: dict[str, str]) -> list[tuple[str, str,
                                                                                  str]]:
    """The (kind, schema, name) of every table, view, sequence and function the dump
    creates, from its table of contents (``pg_restore --list``)."""
    listing = _run([tool_restore, "--list", str(dump)], env, "reading the dump's contents")
    found = []
    pattern = re.compile(r"^\d+; \d+ \d+ (TABLE|VIEW|SEQUENCE|FUNCTION) (\S+) (.+) \S+$")
    for line in listing.stdout.decode(errors="replace").splitlines():
        match = pattern.match(line.strip())
        if match:
            found.append((match.group(1), match.group(2), match.group(3)))
    return found


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _restore_postgres(home: Home, manifest: Manifest, cp: Checkpoint, payload: Path,
                      kept_note: str | None, log_key: str, *, force: bool, accept_older: bool,
                      check_only: bool, progress: Progress, clock: Clock,
                      started: float) -> RestoreResult:
    """Load the dump into a scratch database on the same server (``CREATE DATABASE``,
    dropped afterwards), audit it there, compare, then load it into the configured
    database in ONE psql transaction that first moves the ledger's objects in place
    into a schema ``custody_before_restore_<UTC time>``; audit the target again."""
    import sqlalchemy as sa

    url = home.database_url
    target_name = _pg_url(url).database
    if not target_name:
        raise InvalidInput("the configured PostgreSQL URL names no database")
    exists = _pg_database_exists(url, target_name)
    with _engine(url, target_name if exists else "postgres").connect() as conn:
        major = _server_major(conn)
    pg_restore, psql = _pg_tool("pg_restore", major), _pg_tool("psql", major)
    _target_uri, env = _libpq(url)
    try:
        objects = _pg_objects(pg_restore, payload, env)
    except UpstreamError as exc:
        raise VerificationError(f"the backup's dump cannot be read ({exc.message}); nothing "
                                "was restored") from None
    if not any(kind == "TABLE" and name == "entries" for kind, _s, name in objects):
        raise VerificationError("the backup's dump holds no ledger tables; nothing was "
                                "restored")
    scratch = "custody_restore_" + uuid.uuid4().hex[:12]
    admin = _engine(url, target_name if exists else "postgres")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {_quote_ident(scratch)}")
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        reason = " ".join(str(getattr(exc, "orig", exc)).split())
        raise UpstreamError(f"cannot create the scratch database the backup is audited in "
                            f"before it replaces anything ({reason}): the database user "
                            "needs the CREATEDB privilege") from None
    scratch_url = _pg_url(url, scratch).set(drivername="postgresql+psycopg") \
        .render_as_string(hide_password=False)
    try:
        scratch_uri, _ = _libpq(url, scratch)
        progress("Loading the backup into a scratch database", 0, 0)
        try:
            _run([pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
                  "--single-transaction", f"--dbname={scratch_uri}", str(payload)], env,
                 "loading the backup into a scratch database")
        except UpstreamError as exc:
            raise VerificationError(f"the backup's dump cannot be loaded ({exc.message}); "
                                    "nothing was restored") from None
        checked, store = _audit_copy(scratch_url, manifest, cp, log_key, progress)
        try:
            kept_size, older, lost = _against_kept(store, cp, kept_note, log_key,
                                                   accept_older)
            current = _read_current(url, log_key) if exists else _Current(None)
            dropped = _against_current(current, store, cp, log_key, force,
                                       f"database {target_name}")
        finally:
            store.close()
        warnings = _loss_warnings(cp, kept_size, dropped)
        lost = max(lost, dropped)
        if check_only:
            return RestoreResult(manifest, checked, False, None, kept_size, current.size,
                                 older, lost, time.monotonic() - started, warnings)
        if not exists:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {_quote_ident(target_name)}")
        previous = _load_into_target(url, target_name, payload, objects, pg_restore, psql,
                                     env, _stamp(clock()), progress)
        try:
            _audit_copy(url, manifest, cp, log_key, progress, "the restored ledger")[1].close()
        except VerificationError as exc:
            kept = f"; the previous ledger is kept in schema {previous}" if previous else ""
            raise VerificationError(exc.message.replace("; nothing was restored", "") + kept) \
                from None
        _finish(home, manifest, url, older)
        return RestoreResult(manifest, checked, True, previous, kept_size, current.size,
                             older, lost, time.monotonic() - started, warnings)
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote_ident(scratch)} "
                                 "WITH (FORCE)")
        admin.dispose()


def _pg_database_exists(url: str, name: str) -> bool:
    import sqlalchemy as sa

    engine = _engine(url, "postgres")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                {"n": name}).first() is not None
    except sa.exc.DBAPIError:
        # No access to the maintenance database: assume the configured one exists.
        return True
    finally:
        engine.dispose()


def _load_into_target(url: str, target: str, dump: Path, objects: list[tuple[str, str, str]],
                      pg_restore: str, psql: str, env: dict[str, str], stamp: str,
                      progress: Progress) -> str | None:
    """ONE transaction in one ``psql`` session: move every table, view and function the
    dump creates (and every ledger table) that already exists into a new schema, then
    run the dump's SQL (``pg_restore --file=-``, streamed). The script is wrapped in
    ``BEGIN``/``COMMIT`` by this function and ``COMMIT`` is only sent once pg_restore
    has exited successfully: a failure anywhere (psql stops at the first error) ends
    the session without a commit, so the server rolls everything back. Refuses while
    other sessions are connected to the target (a running server). Returns the schema
    that keeps the old objects, or None when nothing was in place."""
    import sqlalchemy as sa

    from ledger.store import schema as t

    engine = _engine(url, target)
    try:
        with engine.connect() as conn:
            others = int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"))
                .scalar_one())
            if others:
                raise Backpressure(f"the database {target} has {others} other open "
                                   "session(s) (a running 'custody serve' or command): stop "
                                   "them, then run the restore again")
            relations = {(str(s), str(n)): str(k) for s, n, k in conn.execute(sa.text(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class AS c JOIN "
                "pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm')"))}
            functions = {(str(s), str(sig)) for s, sig in conn.execute(sa.text(
                "SELECT n.nspname, p.proname || '(' || "
                "pg_get_function_identity_arguments(p.oid) || ')' FROM pg_proc AS p JOIN "
                "pg_namespace AS n ON n.oid = p.pronamespace"))}
            taken = {str(s) for (s,) in conn.execute(sa.text(
                "SELECT nspname FROM pg_namespace"))}
    finally:
        engine.dispose()
    schemas = {s for _k, s, _n in objects} or {"public"}
    wanted = {(s, n) for kind, s, n in objects if kind in ("TABLE", "VIEW")}
    wanted |= {(s, name) for s in schemas for name in (*t.metadata.tables, "alembic_version")}
    aside = "custody_before_restore_" + stamp.lower()
    n = 1
    while aside in taken:
        n += 1
        aside = f"custody_before_restore_{stamp.lower()}_{n}"
    keyword = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
    moves = [f"ALTER {keyword[relations[rel]]} {_quote_ident(rel[0])}.{_quote_ident(rel[1])} "
             f"SET SCHEMA {_quote_ident(aside)}" for rel in sorted(wanted) if rel in relations]
    for kind, schema_name, signature in objects:
        if kind == "FUNCTION" and (schema_name, signature) in functions:
            name, _, args = signature.partition("(")
            moves.append(f"ALTER FUNCTION {_quote_ident(schema_name)}.{_quote_ident(name)}"
                         f"({args} SET SCHEMA {_quote_ident(aside)}")
    prelude = "BEGIN;\n" + "".join(f"{sql};\n" for sql in
                                   ([f"CREATE SCHEMA {_quote_ident(aside)}", *moves]
                                    if moves else []))
    target_uri, _ = _libpq(url, target)
    progress("Loading the backup into the ledger database", 0, 0)
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as load_err:
        loader = subprocess.Popen(  # noqa: S603
            [psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-",
             f"--dbname={target_uri}"], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=load_err)
        dumper = subprocess.Popen(  # noqa: S603
            [pg_restore, "--no-owner", "--no-privileges", "--file=-", str(dump)], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=dump_err)
        assert loader.stdin is not None  # noqa: S101
        assert dumper.stdout is not None  # noqa: S101
        try:
            loader.stdin.write(prelude.encode())
            shutil.copyfileobj(dumper.stdout, loader.stdin, CHUNK)
            if dumper.wait() == 0:
                loader.stdin.write(b"COMMIT;\n")
        except BrokenPipeError:  # psql stopped at an error: nothing is committed
            pass
        finally:
            dumper.stdout.close()
            with contextlib.suppress(BrokenPipeError):
                loader.stdin.close()
            dumper.wait()
            loader.wait()
        if dumper.returncode != 0 or loader.returncode != 0:
            failed = dump_err if dumper.returncode != 0 else load_err
            failed.seek(0)
            lines = [line for line in failed.read().decode(errors="replace").splitlines()
                     if line.strip()]
            reason = " ".join(lines[0].split())[:300] if lines else "no message"
            raise UpstreamError(f"loading the backup into the database {target} failed "
                                f"({reason}); the transaction was rolled back and the "
                                "ledger in place is unchanged")
    return aside if moves else None
