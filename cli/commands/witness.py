"""``custody witness …``: a partner agency witnesses a log it does not run.

The witness's directory (default ``HOME/witness``; ``--dir``) holds only its own things::

    DIR/witness.key         its Ed25519 key (ledger.keys format, 0600, Argon2id-encrypted)
    DIR/state.json          per log origin, the last checkpoint it cosigned (with its line)
    DIR/evidence/*.note     log-signed checkpoints it refused (rollback, split view)

``run`` needs no account on the server: it reads the public log endpoints, checks
consistency here (:func:`ledger.core.witness.decide`), saves its new state atomically, and
only then publishes the cosignature. A refused checkpoint changes nothing and is not
cosigned: exit 1 with one sentence naming both sizes and roots.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.commands.setup import new_passphrase
from cli.options import Json
from ledger.core.errors import CheckpointRefused, InvalidInput, NotFound
from ledger.fsutil import fsync_dir

if TYPE_CHECKING:
    from ledger.core.checkpoint import Checkpoint
    from ledger.core.witness import Cosigned
    from ledger.store.remote import RemoteStore

app = typer.Typer(help="Witness a log run by another agency: check that each new checkpoint "
                  "extends the last one you cosigned, then publish a C2SP tlog-cosignature.",
                  no_args_is_help=True)

KEY_FILE = "witness.key"
STATE_FILE = "state.json"

Dir = Annotated[Path | None, typer.Option(
    "--dir", metavar="DIR", help="The witness's own directory (default: HOME/witness).")]


def witness_dir(ctx: typer.Context, option: Path | None) -> Path:
    return (option or context.get(ctx).home.path / "witness").expanduser().resolve()


@app.command()
def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. "
                                      "witness.nfi.example (no spaces, no '+').")],
    dir_: Dir = None,
    no_passphrase: Annotated[bool, typer.Option("--no-passphrase", help="Store the key "
                                                "unencrypted (0600 only).")] = False,
    json_: Json = False,
) -> None:
    """Create this agency's witness key (Ed25519) and print its verifier key (type 0x04),
    which verifiers pass to --witness."""
    from ledger import keys
    from ledger.core.note import check_name
    from ledger.core.witness import witness_verifier_key

    check_name(name)
    folder = witness_dir(ctx, dir_)
    path = folder / KEY_FILE
    if path.exists():
        raise InvalidInput(f"a witness key already exists at {path}")
    seed = os.urandom(32)
    keys.write_key(path, name, seed, new_passphrase(no_passphrase, f"witness {name}"))
    vkey = witness_verifier_key(name, seed)
    if context.want_json(ctx, json_):
        context.emit_json({"name": name, "dir": str(folder), "witness_key": vkey})
        return
    context.console.print(f"Witness key {name} created in {path}", highlight=False)
    context.console.print(f"  witness verifier key: {vkey}", highlight=False, markup=False)


# ---- state ---------------------------------------------------------------------------

def _read_state(folder: Path) -> dict[str, str]:
    path = folder / STATE_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidInput(f"the witness state {path} is damaged (not JSON)") from exc
    logs = doc.get("logs") if isinstance(doc, dict) else None
    if doc.get("v") != 1 or not isinstance(logs, dict) or \
            not all(isinstance(v, str) for v in logs.values()):
        raise InvalidInput(f"the witness state {path} is damaged")
    return {str(k): v for k, v in logs.items()}


def _write_state(folder: Path, logs: dict[str, str]) -> None:
    """Replace the state file atomically (write, fsync, rename, fsync the directory)."""
    tmp = folder / (STATE_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"v": 1, "logs": logs}, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / STATE_FILE)
    fsync_dir(folder)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One round at a time per witness directory."""
    fd = os.open(folder / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInput(f"another 'custody witness run' is using {folder}") from None
        yield
    finally:
        os.close(fd)


def _keep_evidence(folder: Path, note: str, exc: CheckpointRefused, size: int, root: bytes) -> Path:
    evidence = folder / "evidence"
    evidence.mkdir(mode=0o700, exist_ok=True)
    path = evidence / f"{exc.kind}-{size}-{root.hex()[:16]}.note"
    path.write_text(note)
    return path


def _parse(note: str) -> Checkpoint:
    from ledger.core.checkpoint import Checkpoint
    from ledger.core.note import split_note

    text, _ = split_note(note)
    return Checkpoint.parse(text)


# ---- one round -----------------------------------------------------------------------

def _round(folder: Path, server: RemoteStore, origin: str, log_key: str, name: str,
           seed: bytes, vkey: str) -> tuple[Cosigned, str]:
    from ledger.core.witness import decide

    info = server.log_info()
    note = info.get("checkpoint")
    if not isinstance(note, str):
        raise NotFound(f"the server has no checkpoint of {origin} yet")
    logs = _read_state(folder)
    last = logs.get(origin)
    new = _parse(note)
    proof: list[bytes] = []
    if last is not None:
        old = _parse(last)
        if 0 < old.size < new.size:
            proof = server.consistency_proof(old.size, new.size)
    try:
        decision = decide(last, log_key, note, proof, int(time.time()),
                          witness_name=name, witness_seed=seed)
    except CheckpointRefused as exc:
        _keep_evidence(folder, note, exc, new.size, new.root)
        raise
    # The state is saved BEFORE the cosignature leaves this machine: a crash in between
    # leaves an unpublished cosignature, never a published one the state does not know.
    _write_state(folder, {**logs, origin: decision.state})
    stored = server.add_cosignature(decision.checkpoint.size, vkey, decision.line)
    return decision, stored


@app.command("run")
def run_(
    ctx: typer.Context,
    log_key: Annotated[str, typer.Option(
        "--log-key", metavar="VKEY", help="The log's verifier key (name+keyid+base64), "
        "obtained from the operator out of band.")],
    server: Annotated[str | None, typer.Option(
        envvar="CUSTODY_SERVER", help="The log's server URL (default: the global "
        "--server).")] = None,
    dir_: Dir = None,
    once: Annotated[bool, typer.Option("--once", help="One round (the default).")] = False,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds to run.")] = 1,
    interval: Annotated[float, typer.Option(min=0.0, help="Seconds between rounds.")] = 60.0,
    json_: Json = False,
) -> None:
    """Fetch the log's newest checkpoint, check it extends the one this witness cosigned
    last (RFC 9162 consistency proof), save the new state, and post the cosignature.
    A rollback or split view: exit 1, nothing saved or posted."""
    from ledger import keys
    from ledger.core.note import NoteVerifier
    from ledger.core.witness import witness_verifier_key
    from ledger.store.remote import RemoteStore

    c = context.get(ctx)
    url = server or c.server
    if not url:
        raise InvalidInput("give the log's server with --server URL")
    if once and rounds != 1:
        raise InvalidInput("--once and --rounds N > 1 contradict each other")
    origin = NoteVerifier.from_key(log_key).name
    folder = witness_dir(ctx, dir_)
    path = folder / KEY_FILE
    name = str(keys.key_info(path)["name"])
    passphrase = c.home.passphrase(f"witness {name}") if keys.is_encrypted(path) else None
    seed = keys.load_seed(path, passphrase)
    vkey = witness_verifier_key(name, seed)
    remote = RemoteStore(url, token=None)
    try:
        for n in range(rounds):
            if n:
                time.sleep(interval)
            with _locked(folder):
                decision, stored = _round(folder, remote, origin, log_key, name, seed, vkey)
            _report(ctx, json_, origin, url, vkey, decision, stored)
    finally:
        remote.close()


def _report(ctx: typer.Context, json_: bool, origin: str, url: str, vkey: str,
            decision: Cosigned, stored: str) -> None:
    cp = decision.checkpoint
    if context.want_json(ctx, json_):
        context.emit_json({"origin": origin, "size": cp.size, "root": cp.root.hex(),
                           "previous_size": decision.previous_size, "witness_key": vkey,
                           "cosignature": decision.line, "stored": stored,
                           "server": url})
        return
    since = ("its first checkpoint seen by this witness" if decision.previous_size is None
             else f"consistent with size {decision.previous_size}")
    context.console.print(f"Cosigned {origin} at size {cp.size} (root {cp.root.hex()}), "
                          f"{since}; published to {url}", highlight=False, markup=False)

