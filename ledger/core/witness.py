"""Witnessing the log: the witness's decision and the verifier's quorum check.

A witness (another agency) holds two things: the log's verifier key and its own Ed25519
key. Each round it is shown the log's newest checkpoint and a consistency proof from the
checkpoint it cosigned last (its *state*), and it cosigns the new checkpoint
(C2SP tlog-cosignature, ``cosignature/v1``) only if the new tree provably extends the
old one. This is the rule of C2SP tlog-witness: a witness never cosigns two checkpoints
of one log that are inconsistent with each other, and never a smaller tree after a
larger one. Two witnesses that each refuse to cosign a second branch make a split view
(the log showing different histories to different parties) detectable by anyone who
demands a quorum of their cosignatures (:func:`verify_witnessed`).

Pure: no I/O, no clock. Time is an argument; fetching, posting and saving the state
are the caller's (``cli/commands/witness.py``). The state is the log-signed note the
witness cosigned last, with its own cosignature line appended (kept as evidence).

Refusals are :class:`~ledger.core.errors.CheckpointRefused` (a VerificationError, exit 1 in
the CLI) with a stable ``kind``: ``rollback`` (the log shows a smaller tree than the one
already cosigned) or ``fork`` (a split view: same size with another root or text, or a
consistency proof that fails); the message starts with "rollback:" or "split view:".
A checkpoint that does not verify with the log key, or names another origin, is a plain
:class:`~ledger.core.errors.VerificationError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.core import _sodium
from ledger.core.checkpoint import (
    Checkpoint,
    add_cosignature,
    cosign,
    cosignature_verifier_key,
    verify_checkpoint,
    verify_cosignatures,
)
from ledger.core.errors import CheckpointRefused, InvalidInput, VerificationError
from ledger.core.merkle_verify import verify_consistency
from ledger.core.note import ALG_COSIGNATURE_V1, parse_signature_line, parse_verifier_key

#: ``CheckpointRefused.kind`` of a smaller tree than the one cosigned last.
ROLLBACK = "rollback"
#: ``CheckpointRefused.kind`` of a split view: same size with another root, or a larger
#: tree that does not extend the one cosigned last.
SPLIT_VIEW = "fork"
#: Most distinct witnesses a server keeps per checkpoint (a note carries at most 100
#: signature lines, ``ledger.core.note.MAX_SIGNATURES``).
MAX_WITNESSES = 32


@dataclass(frozen=True)
class Cosigned:
    """A positive decision: the cosignature line and the witness's new state."""

    checkpoint: Checkpoint
    line: str
    """The ``— name base64(keyid || timestamp || signature)`` line, ending in a newline."""
    state: str
    """The new state to save: the log-signed note with :attr:`line` appended."""
    previous_size: int | None
    """The size the witness had cosigned before (None on its first round)."""


@dataclass(frozen=True)
class Witnessed:
    """A checkpoint verified with the log key and a quorum of named witnesses."""

    checkpoint: Checkpoint
    witnesses: list[str]


def witness_verifier_key(name: str, seed: bytes) -> str:
    """The witness's verifier key (type 0x04, ``name+keyid+base64``) for its seed."""
    return cosignature_verifier_key(name, _sodium.public_key_from_seed(seed))


def _root(cp: Checkpoint) -> str:
    return cp.root.hex()


def check_extends(last_note: str | None, log_key: str, new_note: str,
                  proof: Sequence[bytes]) -> tuple[Checkpoint, Checkpoint | None]:
    """Check that ``new_note`` may be cosigned after ``last_note``; return both parsed.

    1. ``new_note`` verifies with ``log_key`` and names the key's origin
       (:func:`~ledger.core.checkpoint.verify_checkpoint`), else VerificationError.
    2. Without a state (first round) nothing more is checked.
    3. The state verifies with the same key (a damaged state is refused, never reset).
    4. A smaller size is a ``rollback``; the same size with another root (or other
       extension lines) is a split view (``fork``); a larger size needs the RFC 9162
       consistency proof from the old size
       (:func:`~ledger.core.merkle_verify.verify_consistency`), else ``fork``.
    """
    new = verify_checkpoint(new_note, log_key)
    if last_note is None:
        return new, None
    try:
        last = verify_checkpoint(last_note, log_key)
    except VerificationError as exc:
        raise VerificationError(f"the witness state does not verify with the log key "
                                f"given: {exc.message}") from None
    if new.size < last.size:
        raise CheckpointRefused(
            f"rollback: the log shows size {new.size} (root {_root(new)}) but this witness "
            f"already cosigned size {last.size} (root {_root(last)})", ROLLBACK)
    if new.size == last.size:
        if new.root != last.root:
            raise CheckpointRefused(
                f"split view: the log shows size {new.size} with root {_root(new)} but this "
                f"witness cosigned size {last.size} with root {_root(last)}", SPLIT_VIEW)
        if new.body() != last.body():
            raise CheckpointRefused(
                f"split view: the log signed two different checkpoints of size {new.size} "
                f"(root {_root(new)}): their extension lines differ", SPLIT_VIEW)
        return new, last
    try:
        verify_consistency(last.size, new.size, last.root, new.root, proof)
    except VerificationError as exc:
        raise CheckpointRefused(
            f"split view: size {new.size} (root {_root(new)}) is not consistent with size "
            f"{last.size} (root {_root(last)}) that this witness cosigned ({exc.message})",
            SPLIT_VIEW) from None
    return new, last


def decide(last_note: str | None, log_key: str, new_note: str, proof: Sequence[bytes],
           timestamp: int, *, witness_name: str, witness_seed: bytes) -> Cosigned:
    """The witness's decision for one round.

    Returns the cosignature over ``new_note`` at POSIX time ``timestamp`` and the new
    state, or raises (:func:`check_extends`): the caller must then keep its state and
    publish nothing. Cosigning the same checkpoint again is allowed (idempotent).
    """
    new, last = check_extends(last_note, log_key, new_note, proof)
    line = cosign(new, witness_name, witness_seed, timestamp)
    return Cosigned(new, line, add_cosignature(new_note, line),
                    None if last is None else last.size)


def check_cosignature(note: str, witness_key: str, line: str) -> str:
    """Verify that ``line`` is ``witness_key``'s valid cosignature over the checkpoint
    ``note``; return the line in canonical form (ending in a newline).

    Raises InvalidInput for a malformed key or line, InvalidSignature / VerificationError
    for a line by another key or a bad signature. The log's own signature is not checked.
    """
    name, keyid, _public = parse_verifier_key(witness_key, ALG_COSIGNATURE_V1)
    if not isinstance(line, str):
        raise InvalidInput("a cosignature line must be a string")
    try:
        sig = parse_signature_line(line.removesuffix("\n"))
    except InvalidInput as exc:
        raise InvalidInput(f"malformed cosignature line: {exc.message}") from None
    if (sig.name, sig.key_hash) != (name, keyid):
        raise VerificationError(f"the cosignature line is by {sig.name}+{sig.key_hash.hex()}, "
                                f"not by the witness key {name}+{keyid.hex()}")
    canonical = sig.render()
    verify_cosignatures(add_cosignature(note, canonical), [witness_key], 1)
    return canonical


def verify_witnessed(note: str, log_key: str, witness_keys: Sequence[str],
                     quorum: int) -> Witnessed:
    """What a verifier demanding witnesses checks: the log's signature and origin, then
    at least ``quorum`` valid cosignatures from the named ``witness_keys``
    (``--witness KEY … --quorum N``). Raises VerificationError naming how many valid
    cosignatures of how many required were found."""
    cp = verify_checkpoint(note, log_key)
    return Witnessed(cp, verify_cosignatures(note, witness_keys, quorum))
